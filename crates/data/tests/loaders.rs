//! Loader tests on the shared real data (CIFAR-10, MNIST, Fashion-MNIST, the CIFAR JPEG
//! folder) and on small files written here, including one test per error path.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use faultline_data::{open, Batch, Dataset, Error, Format, LoadOptions, Split};
use npyz::WriterBuilder;

fn shared(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")).join(rel)
}

fn all_batches(ds: &dyn Dataset, bs: usize) -> Vec<Batch> {
    ds.batches(bs, 0..usize::MAX)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn first_error(ds: &dyn Dataset, bs: usize) -> Error {
    match ds.batches(bs, 0..usize::MAX).unwrap().find_map(|b| b.err()) {
        Some(e) => e,
        None => panic!("expected an error while reading batches"),
    }
}

fn open_err(path: &Path, opts: &LoadOptions) -> Error {
    match open(path, opts) {
        Ok(_) => panic!("expected {} to fail to open", path.display()),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------- CIFAR

#[test]
fn cifar_first100_labels_and_pixels() {
    let path = shared("cifar10/test_batch_first100.bin");
    let raw = fs::read(&path).unwrap();
    let ds = open(&path, &LoadOptions::default()).unwrap();
    let info = ds.info();
    assert_eq!(info.format, Format::Cifar10);
    assert_eq!(
        (info.len, info.channels, info.height, info.width),
        (100, 3, 32, 32)
    );
    assert_eq!(info.class_names[0], "airplane");
    assert_eq!(info.class_names[9], "truck");
    let batches = all_batches(ds.as_ref(), 32);
    assert_eq!(batches.len(), 4);
    assert_eq!(batches[3].len(), 4);
    assert_eq!(&batches[0].labels[..10], &[3, 8, 8, 0, 6, 6, 1, 6, 3, 1]);
    let indices: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
    assert_eq!(indices, (0..100).collect::<Vec<_>>());
    // (sample, channel, y, x) → byte in the record.
    for &(s, c, y, x) in &[
        (0, 0, 0, 0),
        (0, 2, 31, 31),
        (5, 1, 10, 20),
        (37, 0, 16, 3),
        (99, 2, 7, 30),
    ] {
        let byte = raw[s * 3073 + 1 + c * 1024 + y * 32 + x];
        let b = &batches[s / 32];
        let v = b.image(s % 32)[c * 1024 + y * 32 + x];
        assert_eq!(v, byte as f32 / 255.0, "sample {s} c{c} y{y} x{x}");
    }
    // A sub-range, end clamped to len.
    let tail: Vec<Batch> = ds
        .batches(4, 95..1000)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(tail.len(), 2);
    assert_eq!(tail[0].indices, vec![95, 96, 97, 98]);
    assert_eq!(tail[1].indices, vec![99]);
    assert_eq!(tail[1].image(0), batches[3].image(3));
}

#[test]
fn cifar_directory_splits_and_cifar100() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("cifar-10-batches-bin");
    fs::create_dir(&d).unwrap();
    let raw = fs::read(shared("cifar10/test_batch_first100.bin")).unwrap();
    fs::write(d.join("test_batch.bin"), &raw[..3073 * 10]).unwrap();
    fs::write(d.join("data_batch_1.bin"), &raw[..3073 * 3]).unwrap();
    fs::write(d.join("data_batch_2.bin"), &raw[3073 * 3..3073 * 7]).unwrap();
    let test = open(&d, &LoadOptions::default()).unwrap();
    assert_eq!(test.info().len, 10);
    // The directory the archive unpacks into is recognised too.
    assert_eq!(
        faultline_data::detect_format(dir.path()).unwrap(),
        Format::Cifar10
    );
    assert_eq!(
        open(dir.path(), &LoadOptions::default())
            .unwrap()
            .info()
            .len,
        10
    );
    let train = open(
        &d,
        &LoadOptions {
            split: Split::Train,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(train.info().len, 7);
    // Batches cross the file boundary.
    let b = all_batches(train.as_ref(), 5);
    assert_eq!(b[0].labels, vec![3, 8, 8, 0, 6]);
    assert_eq!(b[1].labels, vec![6, 1]);
    // Reading from the middle of the second file.
    let mid: Vec<Batch> = train
        .batches(2, 4..6)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(mid[0].labels, vec![6, 6]);
    assert_eq!(mid[0].image(1), b[1].image(0));

    // CIFAR-100: coarse + fine label bytes; the fine one counts.
    let mut rec = vec![0u8; 3074 * 2];
    rec[0] = 11;
    rec[1] = 42;
    rec[3074] = 4;
    rec[3075] = 99;
    rec[3074 + 2] = 255;
    let p = dir.path().join("c100.bin");
    fs::write(&p, &rec).unwrap();
    let ds = open(&p, &LoadOptions::default()).unwrap();
    assert_eq!(ds.info().format, Format::Cifar100);
    assert_eq!(ds.info().class_names.len(), 100);
    assert_eq!(ds.info().class_names[99], "worm");
    let b = all_batches(ds.as_ref(), 10);
    assert_eq!(b[0].labels, vec![42, 99]);
    assert_eq!(b[0].image(1)[0], 1.0);
}

#[test]
fn error_cifar_wrong_length() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("broken.bin");
    fs::write(&p, vec![0u8; 3073 * 2 + 5]).unwrap();
    let e = open_err(
        &p,
        &LoadOptions {
            format: Some(Format::Cifar10),
            ..Default::default()
        },
    );
    let msg = e.to_string();
    assert!(matches!(e, Error::BadLength { size: 6151, .. }), "{msg}");
    assert!(
        msg.contains("broken.bin") && msg.contains("6151") && msg.contains("3073"),
        "{msg}"
    );
    // Undetectable without a format: the error lists what is supported.
    let msg = open_err(&p, &LoadOptions::default()).to_string();
    assert!(
        msg.contains("broken.bin") && msg.contains("supported formats"),
        "{msg}"
    );
}

#[test]
fn error_cifar_label_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad_label.bin");
    let mut raw = fs::read(shared("cifar10/test_batch_first100.bin")).unwrap();
    raw[57 * 3073] = 12;
    fs::write(&p, &raw).unwrap();
    let ds = open(&p, &LoadOptions::default()).unwrap();
    let msg = first_error(ds.as_ref(), 50).to_string();
    assert!(msg.contains("bad_label.bin"), "{msg}");
    assert!(
        msg.contains("label 12 at sample 57 is out of range for 10 classes"),
        "{msg}"
    );
}

// ---------------------------------------------------------------- IDX

#[test]
fn mnist_t10k_gz_streams_in_batches() {
    let path = shared("mnist/t10k-images-idx3-ubyte.gz");
    let ds = open(&path, &LoadOptions::default()).unwrap();
    let info = ds.info();
    assert_eq!(info.format, Format::Idx);
    assert_eq!(
        (info.len, info.channels, info.height, info.width),
        (10000, 1, 28, 28)
    );
    assert_eq!(
        info.class_names,
        (0..10).map(|i| i.to_string()).collect::<Vec<_>>()
    );
    let mut raw = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(fs::File::open(&path).unwrap()),
        &mut raw,
    )
    .unwrap();
    let mut count = 0;
    for (k, b) in ds.batches(1000, 0..10000).unwrap().enumerate() {
        let b = b.unwrap();
        assert_eq!(b.indices, (k * 1000..(k + 1) * 1000).collect::<Vec<_>>());
        assert_eq!(b.images.len(), 1000 * 784);
        if k == 0 {
            assert_eq!(b.labels[0], 7);
            assert_eq!(&b.labels[..5], &[7, 2, 1, 0, 4]);
        }
        // Spot-check one image per batch against the raw bytes.
        let s = k * 1000 + 321;
        let want: Vec<f32> = raw[16 + s * 784..16 + (s + 1) * 784]
            .iter()
            .map(|&v| v as f32 / 255.0)
            .collect();
        assert_eq!(b.image(321), &want[..]);
        count += b.len();
    }
    assert_eq!(count, 10000);
    // A range starting in the middle skips through the gzip stream.
    let b = ds.batches(3, 9998..20000).unwrap().next().unwrap().unwrap();
    assert_eq!(b.indices, vec![9998, 9999]);
}

#[test]
fn fashion_mnist_directory_names_and_split() {
    let dir = shared("fashion-mnist");
    let ds = open(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(ds.info().format, Format::Idx);
    assert_eq!(ds.info().len, 10000);
    assert_eq!(ds.info().class_names[0], "T-shirt/top");
    assert_eq!(ds.info().class_names[9], "Ankle boot");
    let train = open(
        &dir,
        &LoadOptions {
            split: Split::Train,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(train.info().len, 60000);
    let b = train.batches(8, 0..8).unwrap().next().unwrap().unwrap();
    assert_eq!(b.labels[0], 9); // first training image is an ankle boot
}

/// Writes an uncompressed IDX pair with `n` declared images but only `data_images` present.
fn write_idx(dir: &Path, n: u32, data_bytes: usize, labels: &[u8]) -> PathBuf {
    let mut img = Vec::new();
    for v in [0x803u32, n, 28, 28] {
        img.extend(v.to_be_bytes());
    }
    img.extend((0..data_bytes).map(|i| (i % 251) as u8));
    let p = dir.join("t10k-images-idx3-ubyte");
    fs::write(&p, &img).unwrap();
    let mut lab = Vec::new();
    for v in [0x801u32, labels.len() as u32] {
        lab.extend(v.to_be_bytes());
    }
    lab.extend(labels);
    fs::write(dir.join("t10k-labels-idx1-ubyte"), &lab).unwrap();
    p
}

#[test]
fn error_truncated_idx() {
    let dir = tempfile::tempdir().unwrap();
    // Uncompressed: detected at open from the file size.
    let p = write_idx(dir.path(), 10, 784 * 7 + 300, &[1; 10]);
    let msg = open_err(&p, &LoadOptions::default()).to_string();
    assert!(msg.contains(&p.display().to_string()), "{msg}");
    assert!(
        msg.contains("header says 10 images of 28x28, data ends after 7"),
        "{msg}"
    );

    // Gzipped: detected when the stream ends early.
    let gz = dir.path().join("t10k-images-idx3-ubyte.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&fs::read(&p).unwrap()).unwrap();
    let bytes = enc.finish().unwrap();
    fs::write(&gz, &bytes).unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&fs::read(dir.path().join("t10k-labels-idx1-ubyte")).unwrap())
        .unwrap();
    fs::write(
        dir.path().join("t10k-labels-idx1-ubyte.gz"),
        enc.finish().unwrap(),
    )
    .unwrap();
    let ds = open(&gz, &LoadOptions::default()).unwrap();
    let e = first_error(ds.as_ref(), 4);
    let msg = e.to_string();
    assert!(
        matches!(e, Error::TruncatedIdx { complete: 7, .. }),
        "{msg}"
    );
    assert!(msg.contains("t10k-images-idx3-ubyte.gz"), "{msg}");
    assert!(
        msg.contains("header says 10 images of 28x28, data ends after 7"),
        "{msg}"
    );

    // A gzip file cut in the middle of its compressed stream.
    fs::write(&gz, &bytes[..bytes.len() / 2]).unwrap();
    let ds = open(&gz, &LoadOptions::default()).unwrap();
    let msg = first_error(ds.as_ref(), 4).to_string();
    assert!(msg.contains("t10k-images-idx3-ubyte.gz"), "{msg}");
}

#[test]
fn error_idx_bad_magic_count_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_idx(dir.path(), 3, 784 * 3, &[1, 2]);
    let msg = open_err(&p, &LoadOptions::default()).to_string();
    assert!(
        msg.contains("t10k-labels-idx1-ubyte") && msg.contains("2 labels"),
        "{msg}"
    );

    let p = write_idx(dir.path(), 3, 784 * 3, &[1, 12, 2]);
    let msg = open_err(&p, &LoadOptions::default()).to_string();
    assert!(msg.contains("t10k-labels-idx1-ubyte"), "{msg}");
    assert!(
        msg.contains("label 12 at sample 1 is out of range for 10 classes"),
        "{msg}"
    );

    let mut bytes = fs::read(&p).unwrap();
    bytes[3] = 0x02;
    fs::write(&p, &bytes).unwrap();
    let msg = open_err(&p, &LoadOptions::default()).to_string();
    assert!(msg.contains("magic") && msg.contains("0x00000802"), "{msg}");

    fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
    write_idx(dir.path(), 3, 784 * 3, &[1, 2, 3]);
    fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
    let e = open_err(&p, &LoadOptions::default());
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("t10k-labels-idx1-ubyte"), "{e}");
}

// ---------------------------------------------------------------- image folders

#[test]
fn cifar_jpeg_folder() {
    let root = shared("cifar10/jpg/test");
    let ds = open(&root, &LoadOptions::default()).unwrap();
    let info = ds.info();
    assert_eq!(info.format, Format::ImageFolder);
    assert_eq!(info.len, 10000);
    assert_eq!((info.channels, info.height, info.width), (3, 32, 32));
    let names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ];
    assert_eq!(info.class_names, names);
    let mut it = ds.batches(64, 0..10000).unwrap();
    let b0 = it.next().unwrap().unwrap();
    assert_eq!(b0.indices, (0..64).collect::<Vec<_>>());
    assert!(b0.labels.iter().all(|&l| l == 0));
    assert!(b0.images.iter().all(|v| (0.0..=1.0).contains(v)));
    assert_eq!(
        ds.sample_source(0).unwrap().file_name().unwrap(),
        "0000.jpg"
    );
    // Single image decoded directly agrees with the batch.
    let one = ds.batches(1, 1..2).unwrap().next().unwrap().unwrap();
    assert_eq!(one.image(0), b0.image(1));
    let last = ds
        .batches(64, 9990..10000)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(last.labels, vec![9; 10]);
    let mid = ds.batches(8, 4998..5006).unwrap().next().unwrap().unwrap();
    assert_eq!(mid.labels, vec![4, 4, 5, 5, 5, 5, 5, 5]);
}

fn save_rgb(path: &Path, w: u32, h: u32, seed: u8) {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 7 + y) as u8 ^ seed, (y * 5) as u8, seed])
    });
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
}

#[test]
fn error_folder_image_of_wrong_size() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    save_rgb(&root.join("a/0.png"), 32, 32, 1);
    save_rgb(&root.join("a/1.png"), 28, 28, 2);
    save_rgb(&root.join("b/0.png"), 32, 32, 3);
    let ds = open(root, &LoadOptions::default()).unwrap();
    assert_eq!(ds.info().class_names, vec!["a", "b"]);
    let e = first_error(ds.as_ref(), 3);
    let msg = e.to_string();
    assert!(
        msg.contains(&root.join("a/1.png").display().to_string()),
        "{msg}"
    );
    assert!(
        msg.contains("is 28x28, expected 32x32 like the first image; use --resize/--center-crop"),
        "{msg}"
    );
}

#[test]
fn folder_resize_and_center_crop() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    save_rgb(&root.join("cat/x.png"), 40, 30, 1);
    save_rgb(&root.join("cat/sub/y.jpg"), 64, 48, 2);
    save_rgb(&root.join("dog/z.png"), 50, 60, 3);
    // Grayscale later image gets 3 channels like the first.
    image::GrayImage::from_fn(20, 20, |x, _| image::Luma([x as u8 * 10]))
        .save(root.join("dog/w.png"))
        .unwrap();
    let opts = LoadOptions {
        resize: Some(24),
        center_crop: Some(20),
        ..Default::default()
    };
    let ds = open(root, &opts).unwrap();
    let info = ds.info();
    assert_eq!((info.channels, info.height, info.width), (3, 20, 20));
    let b = all_batches(ds.as_ref(), 8);
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].labels, vec![0, 0, 1, 1]);
    // Files are walked like os.walk: cat/ then cat/sub/, and sorted within each dir.
    assert!(ds.sample_source(1).unwrap().ends_with("cat/sub/y.jpg"));
    assert!(ds.sample_source(2).unwrap().ends_with("dog/w.png"));
    assert_eq!(b[0].images.len(), 4 * 3 * 20 * 20);
    // The grayscale image's channels are equal.
    let g = b[0].image(2);
    assert_eq!(&g[..400], &g[400..800]);

    // Resize without crop: mixed aspect ratios cannot be batched.
    let opts = LoadOptions {
        resize: Some(24),
        ..Default::default()
    };
    let ds = open(root, &opts).unwrap();
    assert_eq!((ds.info().width, ds.info().height), (32, 24));
    let msg = first_error(ds.as_ref(), 8).to_string();
    assert!(msg.contains("z.png") || msg.contains("w.png"), "{msg}");
    assert!(msg.contains("center-crop"), "{msg}");

    // Crop alone.
    let opts = LoadOptions {
        center_crop: Some(16),
        ..Default::default()
    };
    let ds = open(root, &opts).unwrap();
    let b = all_batches(ds.as_ref(), 3);
    assert_eq!(b.iter().map(|b| b.len()).sum::<usize>(), 4);
    assert_eq!(b[0].height, 16);
}

#[test]
fn folder_classes_file_maps_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("imgs");
    save_rgb(&root.join("cat/x.png"), 8, 8, 1);
    save_rgb(&root.join("ship/x.png"), 8, 8, 2);
    let cf = dir.path().join("classes.txt");
    fs::write(
        &cf,
        "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n",
    )
    .unwrap();
    let ds = open(
        &root,
        &LoadOptions {
            classes_file: Some(cf),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ds.info().class_names.len(), 10);
    assert_eq!(all_batches(ds.as_ref(), 4)[0].labels, vec![3, 8]);
}

// ---------------------------------------------------------------- npy / npz

fn write_npy<T: npyz::AutoSerialize + Copy>(path: &Path, shape: &[u64], data: &[T]) {
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(std::io::BufWriter::new(fs::File::create(path).unwrap()))
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
}

#[test]
fn npy_uint8_nhwc_with_sibling_labels() {
    let dir = tempfile::tempdir().unwrap();
    let (n, h, w, c) = (5usize, 4usize, 6usize, 3usize);
    let data: Vec<u8> = (0..n * h * w * c).map(|i| (i * 37 % 256) as u8).collect();
    let p = dir.path().join("images.npy");
    write_npy(&p, &[n as u64, h as u64, w as u64, c as u64], &data);
    write_npy(
        &dir.path().join("labels.npy"),
        &[n as u64],
        &[4i64, 0, 2, 1, 3],
    );
    let ds = open(&p, &LoadOptions::default()).unwrap();
    let info = ds.info();
    assert_eq!(info.format, Format::Npy);
    assert_eq!(
        (info.len, info.channels, info.height, info.width),
        (5, 3, 4, 6)
    );
    assert_eq!(info.class_names, vec!["0", "1", "2", "3", "4"]);
    let b = all_batches(ds.as_ref(), 2);
    assert_eq!(b.len(), 3);
    assert_eq!(b[0].labels, vec![4, 0]);
    for s in 0..n {
        let img = b[s / 2].image(s % 2);
        for (y, x, ch) in [(0, 0, 0), (3, 5, 2), (1, 2, 1)] {
            let want = data[((s * h + y) * w + x) * c + ch] as f32 / 255.0;
            assert_eq!(img[(ch * h + y) * w + x], want);
        }
    }
    // Start in the middle.
    let m = ds.batches(10, 3..5).unwrap().next().unwrap().unwrap();
    assert_eq!(m.image(0), b[1].image(1));
}

#[test]
fn npy_float32_nchw_and_grayscale() {
    let dir = tempfile::tempdir().unwrap();
    let (n, c, h, w) = (3usize, 3usize, 4usize, 5usize);
    let data: Vec<f32> = (0..n * c * h * w).map(|i| (i % 97) as f32 / 96.0).collect();
    let p = dir.path().join("x_adv.npy");
    write_npy(&p, &[n as u64, c as u64, h as u64, w as u64], &data);
    write_npy(
        &dir.path().join("x_adv_labels.npy"),
        &[n as u64],
        &[1i32, 1, 0],
    );
    let ds = open(&p, &LoadOptions::default()).unwrap();
    assert_eq!(
        (ds.info().channels, ds.info().height, ds.info().width),
        (3, 4, 5)
    );
    let b = all_batches(ds.as_ref(), 8);
    assert_eq!(b[0].images, data);
    assert_eq!(b[0].labels, vec![1, 1, 0]);

    // 3-D grayscale uint8, labels given explicitly, class count from a classes file.
    let g: Vec<u8> = (0..2 * 3 * 3).map(|i| i as u8 * 10).collect();
    let gp = dir.path().join("gray.npy");
    write_npy(&gp, &[2, 3, 3], &g);
    let lp = dir.path().join("my_labels.npy");
    write_npy(&lp, &[2], &[7u8, 2]);
    let cf = dir.path().join("classes.txt");
    fs::write(&cf, (0..10).map(|i| format!("c{i}\n")).collect::<String>()).unwrap();
    let ds = open(
        &gp,
        &LoadOptions {
            labels: Some(lp),
            classes_file: Some(cf),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        (ds.info().channels, ds.info().height, ds.info().width),
        (1, 3, 3)
    );
    assert_eq!(ds.info().class_names.len(), 10);
    let b = all_batches(ds.as_ref(), 8);
    assert_eq!(b[0].labels, vec![7, 2]);
    assert_eq!(b[0].image(1)[0], 90.0 / 255.0);
}

fn npy_bytes<T: npyz::AutoSerialize + Copy>(shape: &[u64], data: &[T]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut buf)
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
    buf
}

/// An .npz archive (a zip of .npy members), stored or deflated, written with the `zip` crate.
fn write_npz(path: &Path, deflate: bool, x_key: &str, x_shape: &[u64], x: &[u8], y: &[i64]) {
    use std::io::Write;
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let opts = zip::write::SimpleFileOptions::default().compression_method(method);
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    z.start_file(format!("{x_key}.npy"), opts).unwrap();
    z.write_all(&npy_bytes(x_shape, x)).unwrap();
    z.start_file("y.npy", opts).unwrap();
    z.write_all(&npy_bytes(&[y.len() as u64], y)).unwrap();
    z.finish().unwrap();
}

#[test]
fn npz_stored_and_deflated() {
    let dir = tempfile::tempdir().unwrap();
    let n = 7usize;
    let x: Vec<u8> = (0..n * 8 * 8 * 3).map(|i| (i * 13 % 256) as u8).collect();
    let y: Vec<i64> = (0..n as i64).map(|i| i % 3).collect();
    for (deflate, key) in [(false, "x"), (true, "x_test"), (true, "images")] {
        let p = dir.path().join(format!("set_{deflate}_{key}.npz"));
        write_npz(&p, deflate, key, &[n as u64, 8, 8, 3], &x, &y);
        let ds = open(&p, &LoadOptions::default()).unwrap();
        assert_eq!((ds.info().len, ds.info().channels), (n, 3));
        assert_eq!(ds.info().class_names.len(), 3);
        let b = all_batches(ds.as_ref(), 3);
        let labels: Vec<usize> = b.iter().flat_map(|b| b.labels.clone()).collect();
        assert_eq!(labels, vec![0, 1, 2, 0, 1, 2, 0]);
        // Sample 4, pixel (y=2, x=5), channel 1.
        let want = x[((4 * 8 + 2) * 8 + 5) * 3 + 1] as f32 / 255.0;
        assert_eq!(b[1].image(1)[64 + 2 * 8 + 5], want);
        let late = ds.batches(2, 5..7).unwrap().next().unwrap().unwrap();
        assert_eq!(late.image(0), b[1].image(2));
    }
    // No known image key: the error lists the arrays found.
    let p = dir.path().join("odd.npz");
    write_npz(&p, false, "pixels", &[n as u64, 8, 8, 3], &x, &y);
    let msg = open_err(&p, &LoadOptions::default()).to_string();
    assert!(msg.contains("odd.npz") && msg.contains("pixels"), "{msg}");
}

#[test]
fn error_npy_label_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("imgs.npy");
    write_npy(&p, &[60, 2, 2], &vec![0u8; 240]);
    let mut labels = vec![3i64; 60];
    labels[57] = 12;
    write_npy(&dir.path().join("labels.npy"), &[60], &labels);
    let cf = dir.path().join("classes.txt");
    fs::write(&cf, (0..10).map(|i| format!("{i}\n")).collect::<String>()).unwrap();
    let e = open_err(
        &p,
        &LoadOptions {
            classes_file: Some(cf),
            ..Default::default()
        },
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&dir.path().join("labels.npy").display().to_string()),
        "{msg}"
    );
    assert!(
        msg.contains("label 12 at sample 57 is out of range for 10 classes"),
        "{msg}"
    );
    // Negative labels are rejected even without a classes file.
    labels[57] = 3;
    labels[9] = -1;
    write_npy(&dir.path().join("labels.npy"), &[60], &labels);
    let msg = open_err(&p, &LoadOptions::default()).to_string();
    assert!(msg.contains("label -1 at sample 9"), "{msg}");
    // Count mismatch.
    write_npy(&dir.path().join("labels.npy"), &[59], &labels[..59]);
    let msg = open_err(&p, &LoadOptions::default()).to_string();
    assert!(msg.contains("59 labels for the 60 images"), "{msg}");
}

#[test]
fn error_npy_nan_and_out_of_range_floats() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("adv.npy");
    let mut data = vec![0.5f32; 4 * 3 * 2 * 2];
    data[2 * 12 + 5] = f32::NAN;
    write_npy(&p, &[4, 3, 2, 2], &data);
    write_npy(&dir.path().join("labels.npy"), &[4], &[0i64, 1, 0, 1]);
    let ds = open(&p, &LoadOptions::default()).unwrap();
    let e = first_error(ds.as_ref(), 3);
    let msg = e.to_string();
    assert!(matches!(e, Error::BadPixel { index: 2, .. }), "{msg}");
    assert!(
        msg.contains("adv.npy") && msg.contains("sample 2") && msg.contains("NaN"),
        "{msg}"
    );
    // The first batch (samples 0..2) is fine with batch size 2.
    let mut it = ds.batches(2, 0..4).unwrap();
    assert!(it.next().unwrap().is_ok());
    assert!(it.next().unwrap().is_err());
    assert!(it.next().is_none());

    data[2 * 12 + 5] = 200.0;
    write_npy(&p, &[4, 3, 2, 2], &data);
    let ds = open(&p, &LoadOptions::default()).unwrap();
    let msg = first_error(ds.as_ref(), 4).to_string();
    assert!(
        msg.contains("values up to 255: save uint8 or divide by 255"),
        "{msg}"
    );
}

// ---------------------------------------------------------------- general

#[test]
fn error_missing_file() {
    let p = Path::new("/nonexistent/dir/test_batch.bin");
    let e = open_err(p, &LoadOptions::default());
    assert!(matches!(e, Error::NotFound { .. }));
    assert!(
        e.to_string().contains("/nonexistent/dir/test_batch.bin"),
        "{e}"
    );

    // Missing labels for a .npy says where it looked.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x_test.npy");
    write_npy(&p, &[1, 2, 2], &[0u8; 4]);
    let msg = open_err(&p, &LoadOptions::default()).to_string();
    assert!(
        msg.contains("x_test.npy") && msg.contains("y_test.npy"),
        "{msg}"
    );
    // ...and finds y_test.npy once it exists.
    write_npy(&dir.path().join("y_test.npy"), &[1], &[0i64]);
    assert_eq!(open(&p, &LoadOptions::default()).unwrap().info().len, 1);
}

#[test]
fn format_names_and_detection() {
    assert_eq!("cifar10".parse::<Format>().unwrap(), Format::Cifar10);
    assert_eq!("CIFAR-100".parse::<Format>().unwrap(), Format::Cifar100);
    assert_eq!("mnist".parse::<Format>().unwrap(), Format::Idx);
    assert_eq!("idx".parse::<Format>().unwrap(), Format::Idx);
    assert_eq!("folder".parse::<Format>().unwrap(), Format::ImageFolder);
    assert_eq!("npz".parse::<Format>().unwrap(), Format::Npy);
    let msg = "jpeg".parse::<Format>().unwrap_err().to_string();
    assert!(
        msg.contains("jpeg") && msg.contains("supported formats"),
        "{msg}"
    );
    let d = faultline_data::detect_format;
    assert_eq!(d(&shared("mnist")).unwrap(), Format::Idx);
    assert_eq!(d(&shared("cifar10/jpg/test")).unwrap(), Format::ImageFolder);
    assert_eq!(
        d(&shared("cifar10/test_batch_first100.bin")).unwrap(),
        Format::Cifar10
    );
    assert_eq!(
        d(&shared("mnist/t10k-images-idx3-ubyte.gz")).unwrap(),
        Format::Idx
    );
    let msg = d(&shared("frost/frost1.png")).unwrap_err().to_string();
    assert!(
        msg.contains("frost1.png") && msg.contains("supported formats"),
        "{msg}"
    );
}

#[test]
fn batch_size_zero_is_an_error() {
    let ds = open(
        &shared("cifar10/test_batch_first100.bin"),
        &LoadOptions::default(),
    )
    .unwrap();
    assert!(ds.batches(0, 0..10).is_err());
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = 50..20;
    assert_eq!(ds.batches(10, reversed).unwrap().count(), 0);
    assert_eq!(ds.batches(10, 200..300).unwrap().count(), 0);
}

// ---------------------------------------------------------------- read / labels

/// `Dataset::read` (any order, repeats) and `Dataset::labels` agree with the batches of every
/// format, including the streamed ones (gzip IDX, deflated and stored `.npz`) read forward
/// from one stream.
#[test]
fn read_and_labels_agree_with_the_batches() {
    let dir = tempfile::tempdir().unwrap();
    let n = 9usize;
    let x: Vec<u8> = (0..n * 4 * 4 * 3).map(|i| (i * 29 % 256) as u8).collect();
    let y: Vec<i64> = (0..n as i64).map(|i| (i * 7) % 4).collect();
    let mut paths = vec![
        shared("cifar10/test_batch_first100.bin"),
        shared("mnist/t10k-images-idx3-ubyte.gz"),
        shared("cifar10/jpg/test"),
    ];
    for deflate in [false, true] {
        let p = dir.path().join(format!("s{deflate}.npz"));
        write_npz(&p, deflate, "x", &[n as u64, 4, 4, 3], &x, &y);
        paths.push(p);
    }
    let p = dir.path().join("x.npy");
    write_npy(&p, &[n as u64, 4, 4, 3], &x);
    write_npy(&dir.path().join("x_labels.npy"), &[n as u64], &y);
    paths.push(p);
    for path in &paths {
        let ds = open(path, &LoadOptions::default()).unwrap();
        let len = ds.info().len;
        let head = len.min(120);
        let all: Vec<Batch> = ds
            .batches(64, 0..head)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let image = |i: usize| all[i / 64].image(i % 64).to_vec();
        let label = |i: usize| all[i / 64].labels[i % 64];
        let labels = ds.labels().unwrap();
        assert_eq!(labels.len(), len, "{}", path.display());
        for (i, &l) in labels.iter().take(head).enumerate() {
            assert_eq!(l, label(i), "{} label {i}", path.display());
        }
        let last = head - 1;
        for list in [
            vec![0, 1, 1, 4, last - 1, last],
            vec![last, 2, 5, 2, 0],
            vec![3],
            vec![1, 2, 3, 7, 8],
        ] {
            let b = ds.read(&list).unwrap();
            assert_eq!(b.indices, list, "{}", path.display());
            for (k, &i) in list.iter().enumerate() {
                assert_eq!(b.labels[k], label(i), "{} {list:?}", path.display());
                assert_eq!(b.image(k), &image(i)[..], "{} {list:?}", path.display());
            }
        }
        let msg = ds.read(&[1, len]).unwrap_err().to_string();
        assert!(msg.contains(&format!("sample {len}")), "{msg}");
    }
}
