//! Streaming dataset loaders for faultline.
//!
//! Robustness analyses walk a whole test set through a model, often several times (one pass
//! per attack or corruption). Holding the decoded set in memory would cost 600 MB for
//! ImageNet-sized validation sets and more for anything larger, so every loader here reads
//! lazily: [`open`] only inspects headers (and, for image folders, lists file paths), and
//! [`Dataset::batches`] decodes one batch at a time. Memory stays proportional to the batch
//! size, not to the data set. (Labels of `.npy` and IDX sets are kept in memory: a few bytes
//! per sample, needed up front to count classes and to report bad labels before a long run.)
//!
//! Every batch is float32 NCHW in [0, 1], the convention of the models faultline loads
//! (normalization, if any, lives inside the model graph).
//!
//! Supported inputs:
//! - CIFAR-10 / CIFAR-100 binary files, or the `cifar-10-batches-bin` style directory;
//! - MNIST / Fashion-MNIST IDX files, gzipped or not, or a directory holding them;
//! - image folders (one sub-folder of PNG/JPEG files per class, ordered like torchvision's
//!   `ImageFolder`), with optional torchvision-compatible `Resize` + `CenterCrop`;
//! - `.npy` / `.npz` arrays (uint8 or float32, NHWC, NCHW or `[N, H, W]`) with labels;
//! - arrays already in memory ([`MemoryDataset`], for the Python bindings).
//!
//! Errors name the file and the record or sample at fault; no input, however malformed,
//! makes the loaders panic.

use std::fmt;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

mod cifar;
mod error;
mod folder;
mod idx;
mod memory;
mod npy;
mod resize;

pub use error::{Error, Result};
pub use memory::MemoryDataset;

/// On-disk formats the loaders understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// CIFAR-10 binary: records of 1 label byte + 3072 pixel bytes.
    Cifar10,
    /// CIFAR-100 binary: records of 2 label bytes (coarse, fine) + 3072 pixel bytes.
    Cifar100,
    /// MNIST-style IDX files (images + labels), optionally gzipped.
    Idx,
    /// A directory with one sub-folder of PNG/JPEG images per class.
    ImageFolder,
    /// NumPy `.npy` or `.npz` arrays.
    Npy,
}

impl Format {
    /// The canonical name, as accepted by [`FromStr`].
    pub fn name(self) -> &'static str {
        match self {
            Format::Cifar10 => "cifar10",
            Format::Cifar100 => "cifar100",
            Format::Idx => "idx",
            Format::ImageFolder => "folder",
            Format::Npy => "npy",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses command-line spellings: `cifar10`, `cifar100`, `idx`/`mnist`, `folder`, `npy`/`npz`
/// (case-insensitive, `-` and `_` ignored so that `cifar-10` and `image_folder` work too).
impl FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Format> {
        let norm: String = s
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        Ok(match norm.as_str() {
            "cifar10" => Format::Cifar10,
            "cifar100" => Format::Cifar100,
            "idx" | "mnist" | "fashionmnist" => Format::Idx,
            "folder" | "imagefolder" => Format::ImageFolder,
            "npy" | "npz" => Format::Npy,
            _ => {
                return Err(Error::BadFormatName {
                    name: s.to_string(),
                })
            }
        })
    }
}

/// Which half of a data set to read when a directory holds both (MNIST directory,
/// `cifar-10-batches-bin`). Robustness is measured on held-out data, hence the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Split {
    /// The test split (`t10k-*`, `test_batch.bin`, `test.bin`).
    #[default]
    Test,
    /// The training split (`train-*`, `data_batch_1..5.bin`, `train.bin`).
    Train,
}

/// How to open a data set. `LoadOptions::default()` detects everything from the path.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Force a format instead of detecting it from the path.
    pub format: Option<Format>,
    /// Image folders: resize the shorter side to this many pixels (bilinear with
    /// antialiasing, as torchvision's `Resize(r)` does on PIL images), so that images of
    /// mixed sizes can be batched.
    pub resize: Option<u32>,
    /// Image folders: then crop the centre square of this size (torchvision `CenterCrop(c)`,
    /// zero padding when the image is smaller).
    pub center_crop: Option<u32>,
    /// A text file with one class name per line. It replaces the built-in or folder-derived
    /// names and fixes the class count, against which labels are checked.
    pub classes_file: Option<PathBuf>,
    /// `.npy`/`.npz` images: the labels array (`.npy`, or `.npz` with a `y`/`labels`/`y_test`
    /// entry). Without it, labels are looked for in the images' `.npz` under those keys,
    /// then beside the images file as `labels.npy`, `<stem>_labels.npy`, `y<rest>.npy` for a
    /// stem `x<rest>` (`x_test.npy` → `y_test.npy`), and the stem with `images` replaced by
    /// `labels`.
    pub labels: Option<PathBuf>,
    /// Which split to read from directories that hold both.
    pub split: Split,
}

/// What a data set holds; known once [`open`] returns, before any pixel is decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetInfo {
    /// Number of samples.
    pub len: usize,
    /// Channels per image (1 or 3).
    pub channels: usize,
    /// Image height in pixels (after any resize/crop).
    pub height: usize,
    /// Image width in pixels (after any resize/crop).
    pub width: usize,
    /// Class names; their count is the class count labels are checked against.
    pub class_names: Vec<String>,
    /// The format the data set was read as.
    pub format: Format,
    /// The path the data set was opened from.
    pub source: PathBuf,
}

impl DatasetInfo {
    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Number of f32 values per image (`channels * height * width`).
    pub fn sample_len(&self) -> usize {
        self.channels * self.height * self.width
    }
}

/// A batch of consecutive samples, float32 NCHW in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Data-set index of each sample, so results can be traced back to files and records.
    pub indices: Vec<usize>,
    /// Pixels, `len * channels * height * width` values in NCHW order.
    pub images: Vec<f32>,
    /// Class label of each sample.
    pub labels: Vec<usize>,
    /// Channels per image.
    pub channels: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
}

impl Batch {
    /// Number of samples in the batch.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether the batch holds no sample.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The pixels of sample `i` of the batch (CHW).
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.channels * self.height * self.width;
        &self.images[i * n..(i + 1) * n]
    }
}

/// A data set that can be read batch by batch.
///
/// `Send + Sync` so that one opened data set can serve several worker threads, each reading
/// its own range.
pub trait Dataset: Send + Sync {
    /// Shape, size and class names.
    fn info(&self) -> &DatasetInfo;
    /// Batches of samples `start..end` (end clamped to len), in index order. Every batch has
    /// `batch_size` samples except possibly the last. Files are opened lazily; an error
    /// (unreadable file, bad label, bad pixel) is yielded in place of the batch that hit it,
    /// and the iterator ends after it.
    fn batches(
        &self,
        batch_size: usize,
        range: Range<usize>,
    ) -> Result<Box<dyn Iterator<Item = Result<Batch>> + Send + '_>>;

    /// The file that sample `index` comes from, when each sample has its own file (image
    /// folders), so that reports can point at the image itself. `None` for formats that
    /// pack all samples into one file, whose index already locates the sample.
    fn sample_source(&self, index: usize) -> Option<PathBuf> {
        let _ = index;
        None
    }

    /// The label of every sample, in index order. The default reads every batch (decoding the
    /// images); formats that know their labels without decoding override it.
    fn labels(&self) -> Result<Vec<usize>> {
        let mut labels = Vec::with_capacity(self.info().len);
        for b in self.batches(1024, 0..self.info().len)? {
            labels.extend(b?.labels);
        }
        Ok(labels)
    }

    /// The samples `indices` (any order, repeats allowed) as one batch in that order. The
    /// default reads each run of consecutive indices with [`Dataset::batches`].
    fn read(&self, indices: &[usize]) -> Result<Batch> {
        read_runs(self, indices)
    }
}

/// [`Dataset::read`] by runs of consecutive indices, each read with [`Dataset::batches`] (the
/// default, and the fallback of formats that override it for some orders only).
fn read_runs<D: Dataset + ?Sized>(data: &D, indices: &[usize]) -> Result<Batch> {
    let info = data.info();
    let mut out = empty_batch(info, indices.len());
    let mut i = 0;
    while i < indices.len() {
        let mut j = i + 1;
        while j < indices.len() && indices[j] == indices[j - 1] + 1 {
            j += 1;
        }
        let (start, len) = (indices[i], j - i);
        if start + len > info.len {
            return Err(past_the_end(info, start + len - 1));
        }
        for b in data.batches(len, start..start + len)? {
            let b = b?;
            out.indices.extend(b.indices);
            out.images.extend(b.images);
            out.labels.extend(b.labels);
        }
        i = j;
    }
    Ok(out)
}

/// An empty batch of `info`'s image shape with room for `n` samples.
fn empty_batch(info: &DatasetInfo, n: usize) -> Batch {
    Batch {
        indices: Vec::with_capacity(n),
        images: Vec::with_capacity(n * info.sample_len()),
        labels: Vec::with_capacity(n),
        channels: info.channels,
        height: info.height,
        width: info.width,
    }
}

/// The error for sample `index` of a data set of `info.len` samples.
fn past_the_end(info: &DatasetInfo, index: usize) -> Error {
    Error::Invalid(format!(
        "{}: sample {index} is past the last of {}",
        info.source.display(),
        info.len
    ))
}

/// [`Dataset::read`] for formats that can only stream forward cheaply (gzip, deflate): ascending
/// `indices` (repeats allowed) are read from one stream opened at the first and skipped forward
/// between samples; any other order falls back to [`read_runs`]. `open(i)` returns a stream
/// positioned at sample `i`, `sample(stream, i, out)` reads the next sample (which is `i`) and
/// appends its pixels.
fn read_forward<D, S>(
    data: &D,
    indices: &[usize],
    sample_bytes: usize,
    open: impl FnOnce(usize) -> Result<S>,
    mut sample: impl FnMut(&mut S, usize, &mut Vec<f32>) -> Result<()>,
    skip: impl Fn(&mut S, u64, usize) -> Result<()>,
    label: impl Fn(usize) -> usize,
) -> Result<Batch>
where
    D: Dataset + ?Sized,
{
    let info = data.info();
    if indices.is_empty() || indices.windows(2).any(|w| w[1] < w[0]) {
        return read_runs(data, indices);
    }
    if let Some(&last) = indices.last().filter(|&&l| l >= info.len) {
        return Err(past_the_end(info, last));
    }
    let mut out = empty_batch(info, indices.len());
    let per = info.sample_len();
    let mut stream = open(indices[0])?;
    let mut next = indices[0];
    for &i in indices {
        if i + 1 == next {
            // A repeat of the sample just read.
            let from = out.images.len() - per;
            out.images.extend_from_within(from..);
        } else {
            if i > next {
                skip(&mut stream, ((i - next) * sample_bytes) as u64, next)?;
            }
            sample(&mut stream, i, &mut out.images)?;
            next = i + 1;
        }
        out.indices.push(i);
        out.labels.push(label(i));
    }
    Ok(out)
}

/// Opens a data set, detecting the format from the path (see [`detect_format`]) unless
/// `opts.format` is set.
///
/// Only headers are read here (plus the first image of an image folder, to learn the
/// image size), so opening is fast even for large sets; bad headers, truncated files and
/// missing label files are reported now rather than halfway through a run.
pub fn open(path: &Path, opts: &LoadOptions) -> Result<Box<dyn Dataset>> {
    if fs::metadata(path).is_err() {
        return Err(Error::NotFound {
            path: path.to_path_buf(),
        });
    }
    let format = match opts.format {
        Some(f) => f,
        None => detect_format(path)?,
    };
    let classes = match &opts.classes_file {
        Some(p) => Some(read_classes_file(p)?),
        None => None,
    };
    match format {
        Format::Cifar10 | Format::Cifar100 => Ok(Box::new(cifar::CifarDataset::open(
            path, format, opts, classes,
        )?)),
        Format::Idx => Ok(Box::new(idx::IdxDataset::open(path, opts, classes)?)),
        Format::ImageFolder => Ok(Box::new(folder::FolderDataset::open(path, opts, classes)?)),
        Format::Npy => Ok(Box::new(npy::NpyDataset::open(path, opts, classes)?)),
    }
}

/// Guesses the format of a path. A directory holding `*.bin` files (or a
/// `cifar-10-batches-bin` / `cifar-100-binary` sub-directory) is CIFAR, one holding
/// `*idx*-ubyte*` files is IDX, one with sub-folders is an image folder; a `.bin` file is CIFAR-10 or CIFAR-100 by its size,
/// `.npy`/`.npz` is NumPy, a name with `idx` and `ubyte` is IDX.
pub fn detect_format(path: &Path) -> Result<Format> {
    let meta = fs::metadata(path).map_err(|e| error::io_err(path, e))?;
    let unknown = |reason: &str| Error::UnknownFormat {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if meta.is_dir() {
        let mut bins = Vec::new();
        let mut has_idx = false;
        let mut has_subdir = false;
        for entry in fs::read_dir(path).map_err(|e| error::io_err(path, e))? {
            let entry = entry.map_err(|e| error::io_err(path, e))?;
            let name = entry.file_name().to_string_lossy().to_lowercase();
            let p = entry.path();
            if p.is_dir() {
                // The directory the CIFAR archives unpack to.
                if name == "cifar-10-batches-bin" {
                    return Ok(Format::Cifar10);
                }
                if name == "cifar-100-binary" {
                    return Ok(Format::Cifar100);
                }
                if !name.starts_with('.') {
                    has_subdir = true;
                }
            } else if name.ends_with(".bin") {
                bins.push(name);
            } else if is_idx_name(&name) {
                has_idx = true;
            }
        }
        if !bins.is_empty() {
            let cifar10_names = bins
                .iter()
                .any(|n| n == "test_batch.bin" || n.starts_with("data_batch_"));
            if cifar10_names {
                return Ok(Format::Cifar10);
            }
            if bins.iter().any(|n| n == "test.bin" || n == "train.bin") {
                return Ok(Format::Cifar100);
            }
            if let Some(f) = bins
                .iter()
                .filter_map(|n| cifar_by_size(&path.join(n)))
                .next()
            {
                return Ok(f);
            }
        }
        if has_idx {
            return Ok(Format::Idx);
        }
        if has_subdir {
            return Ok(Format::ImageFolder);
        }
        return Err(unknown(
            "directory holds no CIFAR .bin files, no IDX files and no class sub-folders",
        ));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if name.ends_with(".npy") || name.ends_with(".npz") {
        return Ok(Format::Npy);
    }
    if name.ends_with(".bin") {
        return cifar_by_size(path).ok_or_else(|| {
            unknown(&format!(
                ".bin file of {} bytes is neither a CIFAR-10 (3073-byte records) nor a \
                 CIFAR-100 (3074-byte records) binary file",
                meta.len()
            ))
        });
    }
    if is_idx_name(&name) {
        return Ok(Format::Idx);
    }
    Err(unknown("unrecognised file name or extension"))
}

fn is_idx_name(lower_name: &str) -> bool {
    lower_name.contains("idx") && lower_name.contains("ubyte")
}

/// CIFAR-10 if the size is a whole number of 3073-byte records, else CIFAR-100 if of 3074.
fn cifar_by_size(path: &Path) -> Option<Format> {
    let len = fs::metadata(path).ok()?.len();
    if len == 0 {
        None
    } else if len % cifar::RECORD_10 as u64 == 0 {
        Some(Format::Cifar10)
    } else if len % cifar::RECORD_100 as u64 == 0 {
        Some(Format::Cifar100)
    } else {
        None
    }
}

/// Reads a classes file: one name per line, trailing blank lines ignored. A blank line in
/// the middle is an error, because silently dropping it would shift every later label.
pub fn read_classes_file(path: &Path) -> Result<Vec<String>> {
    let text = fs::read_to_string(path).map_err(|e| error::io_err(path, e))?;
    let mut names: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
    while names.last().is_some_and(|n| n.is_empty()) {
        names.pop();
    }
    if names.is_empty() {
        return Err(Error::BadHeader {
            path: path.to_path_buf(),
            reason: "classes file holds no class name".into(),
        });
    }
    if let Some(i) = names.iter().position(|n| n.is_empty()) {
        return Err(Error::BadHeader {
            path: path.to_path_buf(),
            reason: format!("line {} of the classes file is empty", i + 1),
        });
    }
    Ok(names)
}

/// Clamps a requested range to `0..len` and checks the batch size.
fn clamp_range(batch_size: usize, range: Range<usize>, len: usize) -> Result<Range<usize>> {
    if batch_size == 0 {
        return Err(Error::Invalid("batch size must be at least 1".into()));
    }
    let end = range.end.min(len);
    let start = range.start.min(end);
    Ok(start..end)
}

/// Iterator that cuts a range into batches and asks a closure to read each one. It fuses
/// after the first error: the readers behind it are sequential streams whose position is
/// unknown once a read has failed.
struct ChunkIter<F> {
    next: usize,
    end: usize,
    batch_size: usize,
    failed: bool,
    read: F,
}

impl<F> ChunkIter<F> {
    fn new(range: Range<usize>, batch_size: usize, read: F) -> Self {
        ChunkIter {
            next: range.start,
            end: range.end,
            batch_size,
            failed: false,
            read,
        }
    }
}

impl<F: FnMut(Range<usize>) -> Result<Batch>> Iterator for ChunkIter<F> {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Result<Batch>> {
        if self.failed || self.next >= self.end {
            return None;
        }
        let start = self.next;
        let stop = (start + self.batch_size).min(self.end);
        self.next = stop;
        let r = (self.read)(start..stop);
        if r.is_err() {
            self.failed = true;
        }
        Some(r)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.failed {
            return (0, Some(0));
        }
        let n = (self.end - self.next).div_ceil(self.batch_size);
        (0, Some(n))
    }
}

/// Lookup table byte → byte/255, the conversion every uint8 format needs.
fn u8_to_unit() -> [f32; 256] {
    let mut t = [0f32; 256];
    for (i, v) in t.iter_mut().enumerate() {
        *v = i as f32 / 255.0;
    }
    t
}

/// The names from a classes file when one was given, else the built-in ones.
fn class_names_or(classes: Option<Vec<String>>, builtin: &[&str]) -> Vec<String> {
    classes.unwrap_or_else(|| builtin.iter().map(|s| s.to_string()).collect())
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read. Unlike
/// `read_exact` this tells how far a truncated stream got.
fn read_full(r: &mut dyn std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
