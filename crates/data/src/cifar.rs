//! CIFAR-10 / CIFAR-100 binary files. Records have a fixed size, so any sample can be reached
//! by seeking; a data set may span several files (the five training batches).

use std::fs::{self, File};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::io_err;
use crate::{
    clamp_range, class_names_or, Batch, ChunkIter, Dataset, DatasetInfo, Error, Format,
    LoadOptions, Result, Split,
};

const PIXELS: usize = 3 * 32 * 32;
/// CIFAR-10 record: 1 label byte + pixels.
pub(crate) const RECORD_10: usize = 1 + PIXELS;
/// CIFAR-100 record: coarse and fine label bytes + pixels.
pub(crate) const RECORD_100: usize = 2 + PIXELS;

const CIFAR10_CLASSES: [&str; 10] = [
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

/// The 100 fine labels of CIFAR-100, in label order (`fine_label_names` of the Python
/// version's `meta` file).
const CIFAR100_CLASSES: [&str; 100] = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];

struct CifarFile {
    path: PathBuf,
    /// Index of this file's first record in the data set.
    first: usize,
    records: usize,
}

pub(crate) struct CifarDataset {
    info: DatasetInfo,
    files: Vec<CifarFile>,
    /// 1 for CIFAR-10, 2 for CIFAR-100 (the fine label is the last label byte).
    label_bytes: usize,
}

impl CifarDataset {
    pub(crate) fn open(
        path: &Path,
        format: Format,
        opts: &LoadOptions,
        classes: Option<Vec<String>>,
    ) -> Result<Self> {
        let (record, kind, builtin, label_bytes): (usize, &str, &[&str], usize) = match format {
            Format::Cifar100 => (RECORD_100, "CIFAR-100", &CIFAR100_CLASSES, 2),
            _ => (RECORD_10, "CIFAR-10", &CIFAR10_CLASSES, 1),
        };
        let paths = if path.is_dir() {
            split_files(path, format, opts.split)?
        } else {
            vec![path.to_path_buf()]
        };
        let mut files = Vec::new();
        let mut total = 0;
        for p in paths {
            let size = fs::metadata(&p).map_err(|e| io_err(&p, e))?.len();
            if size % record as u64 != 0 || size == 0 {
                return Err(Error::BadLength {
                    path: p,
                    size,
                    record_size: record,
                    kind,
                });
            }
            let records = (size / record as u64) as usize;
            files.push(CifarFile {
                path: p,
                first: total,
                records,
            });
            total += records;
        }
        let class_names = class_names_or(classes, builtin);
        Ok(CifarDataset {
            info: DatasetInfo {
                len: total,
                channels: 3,
                height: 32,
                width: 32,
                class_names,
                format,
                source: path.to_path_buf(),
            },
            files,
            label_bytes,
        })
    }

    fn record_size(&self) -> usize {
        self.label_bytes + PIXELS
    }
}

/// The files of one split inside a CIFAR directory, in canonical order.
fn split_files(dir: &Path, format: Format, split: Split) -> Result<Vec<PathBuf>> {
    // Accept the archive's top directory too (cifar-10-batches-bin inside the extract dir).
    let candidates: Vec<&str> = match (format, split) {
        (Format::Cifar100, Split::Test) => vec!["test.bin"],
        (Format::Cifar100, Split::Train) => vec!["train.bin"],
        (_, Split::Test) => vec!["test_batch.bin"],
        (_, Split::Train) => vec![
            "data_batch_1.bin",
            "data_batch_2.bin",
            "data_batch_3.bin",
            "data_batch_4.bin",
            "data_batch_5.bin",
        ],
    };
    for base in [
        dir.to_path_buf(),
        dir.join("cifar-10-batches-bin"),
        dir.join("cifar-100-binary"),
    ] {
        let found: Vec<PathBuf> = candidates
            .iter()
            .map(|n| base.join(n))
            .filter(|p| p.is_file())
            .collect();
        if !found.is_empty() {
            return Ok(found);
        }
    }
    Err(Error::UnknownFormat {
        path: dir.to_path_buf(),
        reason: format!(
            "{} directory without the {:?} split: expected {}",
            format,
            split,
            candidates.join(", ")
        ),
    })
}

impl Dataset for CifarDataset {
    fn info(&self) -> &DatasetInfo {
        &self.info
    }

    fn batches(
        &self,
        batch_size: usize,
        range: Range<usize>,
    ) -> Result<Box<dyn Iterator<Item = Result<Batch>> + Send + '_>> {
        let range = clamp_range(batch_size, range, self.info.len)?;
        let lut = crate::u8_to_unit();
        let classes = self.info.class_names.len();
        let rec = self.record_size();
        let mut buf = vec![0u8; rec];
        // Current open file: (index into self.files, reader positioned at `next` sample).
        let mut cur: Option<(usize, BufReader<File>)> = None;
        let mut next_pos = usize::MAX;
        let read = move |r: Range<usize>| -> Result<Batch> {
            let n = r.len();
            let mut images = Vec::with_capacity(n * PIXELS);
            let mut labels = Vec::with_capacity(n);
            for i in r.clone() {
                let fi = self.files.partition_point(|f| f.first + f.records <= i);
                let file = &self.files[fi];
                let local = i - file.first;
                let mut reader = match cur.take() {
                    Some((idx, r)) if idx == fi && next_pos == i => r,
                    _ => {
                        let f = File::open(&file.path).map_err(|e| io_err(&file.path, e))?;
                        let mut br = BufReader::with_capacity(1 << 16, f);
                        br.seek(SeekFrom::Start((local * rec) as u64))
                            .map_err(|e| io_err(&file.path, e))?;
                        br
                    }
                };
                reader
                    .read_exact(&mut buf)
                    .map_err(|e| io_err(&file.path, e))?;
                next_pos = i + 1;
                cur = Some((fi, reader));
                let label = buf[self.label_bytes - 1] as usize;
                if label >= classes {
                    return Err(Error::LabelOutOfRange {
                        path: file.path.clone(),
                        index: local,
                        label: label as i64,
                        classes,
                    });
                }
                labels.push(label);
                images.extend(buf[self.label_bytes..].iter().map(|&b| lut[b as usize]));
            }
            Ok(Batch {
                indices: r.collect(),
                images,
                labels,
                channels: 3,
                height: 32,
                width: 32,
            })
        };
        Ok(Box::new(ChunkIter::new(range, batch_size, read)))
    }
}
