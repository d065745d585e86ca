//! MNIST-style IDX files: an images file (magic 0x00000803, `[N, H, W]` unsigned bytes) and
//! a labels file (magic 0x00000801, `[N]` bytes), each optionally gzipped.
//!
//! Gzip streams cannot seek, so a batch iterator opens its own stream, skips to the first
//! requested sample once, and then reads sequentially. Labels (one byte per sample) are
//! read at open time, which also validates them before a run starts.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::error::io_err;
use crate::{
    clamp_range, read_full, Batch, ChunkIter, Dataset, DatasetInfo, Error, Format, LoadOptions,
    Result, Split,
};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;
/// Largest image accepted from a header (2^28 pixels): a corrupt header must yield an error,
/// not an attempt to allocate its claimed size.
pub(crate) const MAX_PIXELS: usize = 1 << 28;

const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

pub(crate) struct IdxDataset {
    info: DatasetInfo,
    images: PathBuf,
    gz: bool,
    height: usize,
    width: usize,
    labels: Vec<u8>,
}

fn is_gz(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// Opens a file as a byte stream, decompressing gzip when the name ends in `.gz`.
fn open_stream(path: &Path) -> Result<Box<dyn Read + Send>> {
    let f = File::open(path).map_err(|e| io_err(path, e))?;
    if is_gz(path) {
        Ok(Box::new(BufReader::with_capacity(
            1 << 16,
            MultiGzDecoder::new(BufReader::new(f)),
        )))
    } else {
        Ok(Box::new(BufReader::with_capacity(1 << 16, f)))
    }
}

/// Reads the big-endian u32 header words of an IDX file.
fn read_header(r: &mut dyn Read, path: &Path, words: usize) -> Result<Vec<u32>> {
    let mut buf = vec![0u8; words * 4];
    let got = read_full(r, &mut buf).map_err(|e| io_err(path, e))?;
    if got < buf.len() {
        return Err(Error::BadHeader {
            path: path.to_path_buf(),
            reason: format!(
                "not an IDX file: {got} bytes, shorter than the {}-byte header",
                buf.len()
            ),
        });
    }
    Ok(buf
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Finds the images file of a split inside a directory (`t10k-images-idx3-ubyte[.gz]`,
/// also the `t10k-images.idx3-ubyte` spelling of some mirrors).
fn find_in_dir(dir: &Path, split: Split) -> Result<PathBuf> {
    let prefixes: &[&str] = match split {
        Split::Test => &["t10k", "test"],
        Split::Train => &["train"],
    };
    let mut found: Vec<PathBuf> = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name().to_string_lossy().to_lowercase();
        if prefixes.iter().any(|p| name.starts_with(p))
            && name.contains("idx3")
            && name.contains("ubyte")
        {
            found.push(entry.path());
        }
    }
    // Prefer the uncompressed file when both exist: it can seek.
    found.sort_by_key(|p| (is_gz(p), p.clone()));
    found
        .into_iter()
        .next()
        .ok_or_else(|| Error::UnknownFormat {
            path: dir.to_path_buf(),
            reason: format!(
                "IDX directory without a {:?}-split images file ({}-images-idx3-ubyte[.gz])",
                split, prefixes[0]
            ),
        })
}

/// The labels file that goes with an images file.
fn labels_path(images: &Path) -> Option<PathBuf> {
    let name = images.file_name()?.to_str()?;
    for (from, to) in [
        ("images-idx3", "labels-idx1"),
        ("images.idx3", "labels.idx1"),
    ] {
        if name.contains(from) {
            return Some(images.with_file_name(name.replacen(from, to, 1)));
        }
    }
    None
}

impl IdxDataset {
    pub(crate) fn open(
        path: &Path,
        opts: &LoadOptions,
        classes: Option<Vec<String>>,
    ) -> Result<Self> {
        let mut images = if path.is_dir() {
            find_in_dir(path, opts.split)?
        } else {
            path.to_path_buf()
        };
        // Given the labels file by mistake: use its images file.
        if let Some(name) = images.file_name().and_then(|n| n.to_str()) {
            if name.contains("labels-idx1") {
                images = images.with_file_name(name.replacen("labels-idx1", "images-idx3", 1));
            }
        }
        let labels_file = labels_path(&images).ok_or_else(|| Error::UnknownFormat {
            path: images.clone(),
            reason: "IDX images file name must contain 'images-idx3' so that the labels file \
                     ('labels-idx1') can be found"
                .into(),
        })?;
        let gz = is_gz(&images);

        // Images header.
        let mut r = open_stream(&images)?;
        let h = read_header(&mut *r, &images, 4)?;
        if h[0] != IMAGES_MAGIC {
            return Err(Error::BadHeader {
                path: images,
                reason: format!(
                    "bad IDX magic number 0x{:08x}, expected 0x{IMAGES_MAGIC:08x} (ubyte images, 3 \
                     dimensions){}",
                    h[0],
                    if h[0] == 0x1f8b_0800 || h[0] >> 16 == 0x1f8b {
                        "; the file is gzipped but its name does not end in .gz"
                    } else {
                        ""
                    }
                ),
            });
        }
        let (n, height, width) = (h[1] as usize, h[2] as usize, h[3] as usize);
        if height == 0 || width == 0 || height * width > MAX_PIXELS {
            return Err(Error::BadHeader {
                path: images,
                reason: format!("IDX header gives an implausible image size {height}x{width}"),
            });
        }
        drop(r);
        if !gz {
            // Uncompressed: the size tells at once whether all images are there.
            let size = fs::metadata(&images).map_err(|e| io_err(&images, e))?.len();
            let have = (size.saturating_sub(16) / (height * width) as u64) as usize;
            if have < n {
                return Err(Error::TruncatedIdx {
                    path: images,
                    declared: n,
                    what: format!("images of {height}x{width}"),
                    complete: have,
                });
            }
        }

        // Labels: small, read whole.
        if !labels_file.exists() {
            return Err(Error::NotFound { path: labels_file });
        }
        let mut r = open_stream(&labels_file)?;
        let h = read_header(&mut *r, &labels_file, 2)?;
        if h[0] != LABELS_MAGIC {
            return Err(Error::BadHeader {
                path: labels_file,
                reason: format!(
                    "bad IDX magic number 0x{:08x}, expected 0x{LABELS_MAGIC:08x} (ubyte labels)",
                    h[0]
                ),
            });
        }
        let n_labels = h[1] as usize;
        if n_labels != n {
            return Err(Error::Mismatch {
                path: labels_file,
                reason: format!(
                    "{n_labels} labels, but the images file {} holds {n} images",
                    images.display()
                ),
            });
        }
        // Grown as data arrives, so a corrupt header cannot make us allocate gigabytes.
        let mut labels = Vec::new();
        (&mut r)
            .take(n as u64)
            .read_to_end(&mut labels)
            .map_err(|e| io_err(&labels_file, e))?;
        let got = labels.len();
        if got < n {
            return Err(Error::TruncatedIdx {
                path: labels_file,
                declared: n,
                what: "labels".into(),
                complete: got,
            });
        }
        let class_names = match classes {
            Some(c) => c,
            None => {
                let fashion = images.to_string_lossy().to_lowercase().contains("fashion");
                if fashion {
                    FASHION_CLASSES.iter().map(|s| s.to_string()).collect()
                } else {
                    (0..10).map(|i| i.to_string()).collect()
                }
            }
        };
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= class_names.len())
        {
            return Err(Error::LabelOutOfRange {
                path: labels_file,
                index: i,
                label: l as i64,
                classes: class_names.len(),
            });
        }
        Ok(IdxDataset {
            info: DatasetInfo {
                len: n,
                channels: 1,
                height,
                width,
                class_names,
                format: Format::Idx,
                source: path.to_path_buf(),
            },
            images,
            gz,
            height,
            width,
            labels,
        })
    }

    /// A stream positioned at the pixels of sample `start`.
    fn stream_at(&self, start: usize) -> Result<Box<dyn Read + Send>> {
        let px = self.height * self.width;
        let offset = 16 + (start * px) as u64;
        if !self.gz {
            let mut f = File::open(&self.images).map_err(|e| io_err(&self.images, e))?;
            f.seek(SeekFrom::Start(offset))
                .map_err(|e| io_err(&self.images, e))?;
            return Ok(Box::new(BufReader::with_capacity(1 << 16, f)));
        }
        let mut r = open_stream(&self.images)?;
        let skipped =
            io::copy(&mut (&mut r).take(offset), &mut io::sink()).map_err(|e| self.read_err(e))?;
        if skipped < offset {
            return Err(self.truncated((skipped.saturating_sub(16) / px as u64) as usize));
        }
        Ok(r)
    }

    fn truncated(&self, complete: usize) -> Error {
        Error::TruncatedIdx {
            path: self.images.clone(),
            declared: self.info.len,
            what: format!("images of {}x{}", self.height, self.width),
            complete,
        }
    }

    fn read_err(&self, e: io::Error) -> Error {
        io_err(&self.images, e)
    }
}

impl Dataset for IdxDataset {
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
        let px = self.height * self.width;
        let mut buf = vec![0u8; px];
        let mut stream: Option<Box<dyn Read + Send>> = None;
        let read = move |r: Range<usize>| -> Result<Batch> {
            // Taken out and put back after the batch; an error drops it, and the iterator
            // ends there anyway.
            let mut s = match stream.take() {
                Some(s) => s,
                None => self.stream_at(r.start)?,
            };
            let mut images = Vec::with_capacity(r.len() * px);
            for i in r.clone() {
                let got = match read_full(&mut *s, &mut buf) {
                    Ok(g) => g,
                    // A gzip stream cut short reports an I/O error rather than a clean end.
                    Err(e) if self.gz && e.kind() == io::ErrorKind::UnexpectedEof => 0,
                    Err(e) => return Err(self.read_err(e)),
                };
                if got < px {
                    return Err(self.truncated(i));
                }
                images.extend(buf.iter().map(|&b| lut[b as usize]));
            }
            stream = Some(s);
            Ok(Batch {
                labels: self.labels[r.clone()].iter().map(|&l| l as usize).collect(),
                indices: r.collect(),
                images,
                channels: 1,
                height: self.height,
                width: self.width,
            })
        };
        Ok(Box::new(ChunkIter::new(range, batch_size, read)))
    }

    fn labels(&self) -> Result<Vec<usize>> {
        Ok(self.labels.iter().map(|&l| l as usize).collect())
    }

    /// A gzipped file is read from one stream skipped forward between ascending samples
    /// (re-opening it per run of consecutive samples would decompress its head each time).
    fn read(&self, indices: &[usize]) -> Result<Batch> {
        if !self.gz {
            return crate::read_runs(self, indices);
        }
        let lut = crate::u8_to_unit();
        let px = self.height * self.width;
        let mut buf = vec![0u8; px];
        crate::read_forward(
            self,
            indices,
            px,
            |i| self.stream_at(i),
            |s, i, out| {
                let got = match read_full(&mut **s, &mut buf) {
                    Ok(g) => g,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
                    Err(e) => return Err(self.read_err(e)),
                };
                if got < px {
                    return Err(self.truncated(i));
                }
                out.extend(buf.iter().map(|&b| lut[b as usize]));
                Ok(())
            },
            |s, n, at| {
                let skipped = io::copy(&mut (&mut **s).take(n), &mut io::sink())
                    .map_err(|e| self.read_err(e))?;
                if skipped < n {
                    return Err(self.truncated(at + skipped as usize / px));
                }
                Ok(())
            },
            |i| self.labels[i] as usize,
        )
    }
}
