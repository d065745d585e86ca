//! Public API behaviour: registry, seeding and determinism, shapes, grayscale, errors.

use faultline_corruptions::{
    corrupt, corrupt_batch, CorruptionKind, Error, ImageU8, ParamTable, ALL,
};

/// A deterministic, textured test image.
fn test_image(h: usize, w: usize, c: usize, salt: u32) -> ImageU8 {
    let data = (0..h * w * c)
        .map(|i| {
            let (y, x, ch) = ((i / c) / w, (i / c) % w, i % c);
            let v = (x * 7 + y * 13 + ch * 50) as u32 ^ (salt.wrapping_mul(2_654_435_761) >> 24);
            let hash = v.wrapping_mul(2_654_435_761) >> 24;
            (hash as u8 / 2).wrapping_add(((x + y) % 64) as u8 * 2)
        })
        .collect();
    ImageU8::new(h, w, c, data).unwrap()
}

#[test]
fn registry_lists_all_19_in_reference_order() {
    assert_eq!(ALL.len(), 19);
    assert_eq!(ALL[0], "gaussian_noise");
    assert_eq!(ALL[14], "jpeg_compression");
    assert_eq!(ALL[18], "saturate");
    for (name, kind) in ALL.iter().zip(CorruptionKind::ALL) {
        assert_eq!(kind.name(), *name);
        assert_eq!(kind.to_string(), *name);
        assert_eq!(name.parse::<CorruptionKind>().unwrap(), kind);
    }
    assert_eq!(
        CorruptionKind::ALL.iter().filter(|k| k.is_extra()).count(),
        4
    );
    assert_eq!(
        CorruptionKind::ALL.iter().filter(|k| k.is_random()).count(),
        11
    );
    assert!(matches!(
        "fgsm".parse::<CorruptionKind>(),
        Err(Error::UnknownName { .. })
    ));
    assert_eq!(
        "imagenet".parse::<ParamTable>().unwrap(),
        ParamTable::ImageNet
    );
}

#[test]
fn table_choice_by_size() {
    assert_eq!(ParamTable::for_size(32, 32), ParamTable::Cifar);
    assert_eq!(ParamTable::for_size(64, 64), ParamTable::Cifar);
    assert_eq!(ParamTable::for_size(84, 300), ParamTable::Cifar);
    assert_eq!(ParamTable::for_size(96, 96), ParamTable::ImageNet);
    assert_eq!(ParamTable::for_size(224, 224), ParamTable::ImageNet);
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let img = test_image(8, 8, 3, 0);
    for sev in [0u8, 6, 255] {
        assert!(matches!(
            corrupt(CorruptionKind::Fog, sev, ParamTable::Cifar, &img, 0, 0),
            Err(Error::BadSeverity(s)) if s == sev
        ));
    }
    let rgba = ImageU8::new(4, 4, 4, vec![0; 64]).unwrap();
    assert!(matches!(
        corrupt(CorruptionKind::Contrast, 1, ParamTable::Cifar, &rgba, 0, 0),
        Err(Error::UnsupportedChannels(4))
    ));
    assert!(matches!(
        ImageU8::new(0, 4, 3, vec![]),
        Err(Error::EmptyImage { .. })
    ));
    assert!(matches!(
        ImageU8::new(2, 2, 3, vec![0; 11]),
        Err(Error::BufferSize { .. })
    ));
}

#[test]
fn same_seed_same_bytes_whatever_the_call_order() {
    let imgs: Vec<ImageU8> = (0..6).map(|i| test_image(32, 32, 3, i)).collect();
    for kind in CorruptionKind::ALL {
        for sev in [1u8, 5] {
            let forward: Vec<ImageU8> = imgs
                .iter()
                .enumerate()
                .map(|(i, im)| corrupt(kind, sev, ParamTable::Cifar, im, 42, i as u64).unwrap())
                .collect();
            // Reverse order, interleaved with unrelated calls.
            for (i, im) in imgs.iter().enumerate().rev() {
                let _ = corrupt(kind, sev, ParamTable::Cifar, im, 7, 99).unwrap();
                let again = corrupt(kind, sev, ParamTable::Cifar, im, 42, i as u64).unwrap();
                assert_eq!(again, forward[i], "{kind} s{sev} image {i}");
            }
            // Batches split differently, and thread pools of different sizes.
            let whole = corrupt_batch(kind, sev, ParamTable::Cifar, &imgs, 42, 0).unwrap();
            assert_eq!(whole, forward);
            let mut split = corrupt_batch(kind, sev, ParamTable::Cifar, &imgs[..2], 42, 0).unwrap();
            split.extend(corrupt_batch(kind, sev, ParamTable::Cifar, &imgs[2..], 42, 2).unwrap());
            assert_eq!(split, forward);
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let pooled = pool
                    .install(|| corrupt_batch(kind, sev, ParamTable::Cifar, &imgs, 42, 0))
                    .unwrap();
                assert_eq!(pooled, forward, "{kind} s{sev} with {threads} threads");
            }
        }
    }
}

#[test]
fn seeds_and_sample_indices_change_random_families_only() {
    let img = test_image(32, 32, 3, 1);
    for kind in CorruptionKind::ALL {
        let a = corrupt(kind, 3, ParamTable::Cifar, &img, 1, 0).unwrap();
        let b = corrupt(kind, 3, ParamTable::Cifar, &img, 2, 0).unwrap();
        let c = corrupt(kind, 3, ParamTable::Cifar, &img, 1, 1).unwrap();
        if kind.is_random() {
            assert_ne!(a, b, "{kind}: seed has no effect");
            assert_ne!(a, c, "{kind}: sample index has no effect");
        } else {
            assert_eq!(a, b, "{kind}: deterministic family depends on the seed");
            assert_eq!(a, c);
        }
    }
}

#[test]
fn every_family_changes_the_image_and_keeps_its_shape() {
    let img = test_image(32, 32, 3, 3);
    for kind in CorruptionKind::ALL {
        for sev in 1..=5u8 {
            let out = corrupt(kind, sev, ParamTable::Cifar, &img, 0, 0).unwrap();
            assert_eq!((out.height(), out.width(), out.channels()), (32, 32, 3));
            if sev == 5 {
                assert_ne!(out, img, "{kind} s5 left the image unchanged");
            }
        }
    }
}

#[test]
fn grayscale_and_odd_sizes_work_with_both_tables() {
    let shapes = [
        (45, 37),
        (37, 45),
        (224, 224),
        (1, 1),
        (3, 200),
        (64, 9),
        (101, 300),
    ];
    for &(h, w) in &shapes {
        for c in [1usize, 3] {
            let img = test_image(h, w, c, (h * w) as u32);
            for table in [ParamTable::Cifar, ParamTable::ImageNet] {
                for kind in CorruptionKind::ALL {
                    for sev in 1..=5u8 {
                        let out = corrupt(kind, sev, table, &img, 3, 1)
                            .unwrap_or_else(|e| panic!("{kind} s{sev} {h}x{w}x{c} {table}: {e}"));
                        assert_eq!(
                            (out.height(), out.width(), out.channels()),
                            (h, w, c),
                            "{kind} s{sev} {h}x{w}x{c} {table}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn grayscale_matches_gray_rgb_where_exact() {
    // Per-channel families on a gray image equal the first channel of the same image as RGB.
    let gray = test_image(32, 32, 1, 5);
    let rgb = ImageU8::new(
        32,
        32,
        3,
        gray.as_slice().iter().flat_map(|&v| [v, v, v]).collect(),
    )
    .unwrap();
    for kind in [
        CorruptionKind::DefocusBlur,
        CorruptionKind::GaussianBlur,
        CorruptionKind::ZoomBlur,
        CorruptionKind::Contrast,
        CorruptionKind::Pixelate,
        CorruptionKind::Brightness,
        CorruptionKind::MotionBlur,
    ] {
        let g = corrupt(kind, 3, ParamTable::Cifar, &gray, 0, 0).unwrap();
        let c = corrupt(kind, 3, ParamTable::Cifar, &rgb, 0, 0).unwrap();
        let first: Vec<u8> = c.as_slice().chunks(3).map(|p| p[0]).collect();
        assert_eq!(g.as_slice(), &first[..], "{kind}");
    }
}
