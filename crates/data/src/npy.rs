//! NumPy `.npy` and `.npz` image arrays with integer labels.
//!
//! The image array is never loaded whole: the `.npy` header is parsed with npyz, and samples
//! are then read straight from the file (seeking to the first one requested). Inside an
//! `.npz`, the entry's compressed bytes are located in the zip archive and decompressed as a
//! stream, so `savez_compressed` files work without unpacking them. Labels are small and are
//! read whole at open time, to count classes and reject bad labels before a run.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use flate2::read::DeflateDecoder;
use npyz::{DType, Endianness, NpyHeader, Order, TypeChar};

use crate::error::io_err;
use crate::{
    clamp_range, read_full, Batch, ChunkIter, Dataset, DatasetInfo, Error, Format, LoadOptions,
    Result,
};

const IMAGE_KEYS: [&str; 4] = ["x", "images", "x_test", "data"];
const LABEL_KEYS: [&str; 3] = ["y", "labels", "y_test"];

/// Where an array's bytes live.
#[derive(Clone)]
enum Source {
    /// A `.npy` file; `data_offset` is where the raw data starts.
    Npy { path: PathBuf, data_offset: u64 },
    /// An entry of an `.npz` archive.
    Npz { path: PathBuf, entry: ZipEntry },
}

#[derive(Clone)]
struct ZipEntry {
    name: String,
    data_start: u64,
    compressed_size: u64,
    deflated: bool,
}

impl Source {
    fn path(&self) -> &Path {
        match self {
            Source::Npy { path, .. } | Source::Npz { path, .. } => path,
        }
    }

    /// How the array is named in messages: the file, plus the entry for `.npz`.
    fn describe(&self) -> PathBuf {
        match self {
            Source::Npy { path, .. } => path.clone(),
            Source::Npz { path, entry } => {
                PathBuf::from(format!("{}[{}]", path.display(), entry.name))
            }
        }
    }

    /// A stream positioned `skip` bytes into the raw data (after the header).
    fn stream(&self, skip: u64) -> Result<Box<dyn Read + Send>> {
        match self {
            Source::Npy { path, data_offset } => {
                let mut f = File::open(path).map_err(|e| io_err(path, e))?;
                f.seek(SeekFrom::Start(data_offset.saturating_add(skip)))
                    .map_err(|e| io_err(path, e))?;
                Ok(Box::new(BufReader::with_capacity(1 << 16, f)))
            }
            Source::Npz { path, entry } => {
                let mut r = entry_stream(path, entry)?;
                read_header(&mut r, &self.describe())?;
                let n = io::copy(&mut (&mut r).take(skip), &mut io::sink())
                    .map_err(|e| io_err(path, e))?;
                if n < skip {
                    return Err(Error::BadHeader {
                        path: self.describe(),
                        reason: "array data ends before the size its header declares".into(),
                    });
                }
                Ok(r)
            }
        }
    }
}

/// The decompressed bytes of a zip entry, from the start of its `.npy` header.
fn entry_stream(path: &Path, entry: &ZipEntry) -> Result<Box<dyn Read + Send>> {
    let mut f = File::open(path).map_err(|e| io_err(path, e))?;
    f.seek(SeekFrom::Start(entry.data_start))
        .map_err(|e| io_err(path, e))?;
    let raw = BufReader::with_capacity(1 << 16, f).take(entry.compressed_size);
    if entry.deflated {
        Ok(Box::new(BufReader::with_capacity(
            1 << 16,
            DeflateDecoder::new(raw),
        )))
    } else {
        Ok(Box::new(raw))
    }
}

fn bad_npy(path: &Path, e: io::Error) -> Error {
    Error::BadHeader {
        path: path.to_path_buf(),
        reason: format!("not a valid .npy array: {e}"),
    }
}

/// Finds the first of `keys` in an `.npz` archive. `Ok(None)` when none is there; the
/// second value lists the archive's arrays for error messages.
fn find_npz_entry(path: &Path, keys: &[&str]) -> Result<(Option<ZipEntry>, Vec<String>)> {
    let f = File::open(path).map_err(|e| io_err(path, e))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(f)).map_err(|e| Error::BadHeader {
        path: path.to_path_buf(),
        reason: format!("not a valid .npz (zip) archive: {e}"),
    })?;
    let names: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok())
        .map(|n| n.trim_end_matches(".npy").to_string())
        .collect();
    for key in keys {
        let file_name = format!("{key}.npy");
        if zip.index_for_name(&file_name).is_none() {
            continue;
        }
        let zf = zip.by_name(&file_name).map_err(|e| Error::BadHeader {
            path: path.to_path_buf(),
            reason: format!("cannot read array '{key}': {e}"),
        })?;
        if zf.encrypted() {
            return Err(Error::BadHeader {
                path: path.to_path_buf(),
                reason: format!("array '{key}' is encrypted"),
            });
        }
        let deflated = match zf.compression() {
            zip::CompressionMethod::Stored => false,
            zip::CompressionMethod::Deflated => true,
            other => {
                return Err(Error::BadHeader {
                    path: path.to_path_buf(),
                    reason: format!(
                        "array '{key}' uses zip compression {other}; numpy writes stored or \
                         deflated entries only"
                    ),
                })
            }
        };
        let data_start = zf.data_start().ok_or_else(|| Error::BadHeader {
            path: path.to_path_buf(),
            reason: format!("cannot locate the data of array '{key}'"),
        })?;
        let entry = ZipEntry {
            name: key.to_string(),
            data_start,
            compressed_size: zf.compressed_size(),
            deflated,
        };
        return Ok((Some(entry), names));
    }
    Ok((None, names))
}

fn is_npz(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npz"))
}

/// Opens an array (a `.npy` file, or the first of `keys` in an `.npz`) and parses its header.
/// `Ok(None)` when an `.npz` has none of the keys.
/// Reads a `.npy` header, leaving `r` at the array data. numpy writes a flat dict (`{'descr':
/// …, 'fortran_order': …, 'shape': (…), }`); a header nested deeper than that is refused before
/// it reaches npyz's parser, which backtracks exponentially on nested brackets (a fuzzed
/// header of 100 `{` ran for minutes).
fn read_header(r: &mut impl Read, path: &Path) -> Result<NpyHeader> {
    let bad = |reason: String| Error::BadHeader {
        path: path.to_path_buf(),
        reason,
    };
    let mut pre = [0u8; 8];
    r.read_exact(&mut pre)
        .map_err(|_| bad("not a .npy file (shorter than its preamble)".into()))?;
    let mut bytes = pre.to_vec();
    let len = if pre[6] == 1 {
        let mut l = [0u8; 2];
        r.read_exact(&mut l)
            .map_err(|_| bad("truncated .npy preamble".into()))?;
        bytes.extend_from_slice(&l);
        u16::from_le_bytes(l) as usize
    } else {
        let mut l = [0u8; 4];
        r.read_exact(&mut l)
            .map_err(|_| bad("truncated .npy preamble".into()))?;
        bytes.extend_from_slice(&l);
        u32::from_le_bytes(l) as usize
    };
    if len > 1 << 16 {
        return Err(bad(format!(
            "a .npy header of {len} bytes (numpy writes under 64 KiB)"
        )));
    }
    let mut text = vec![0u8; len];
    r.read_exact(&mut text)
        .map_err(|_| bad("file ends inside the .npy header".into()))?;
    let (mut depth, mut deepest) = (0i32, 0i32);
    for &b in &text {
        match b {
            b'{' | b'(' | b'[' => depth += 1,
            b'}' | b')' | b']' => depth -= 1,
            _ => {}
        }
        deepest = deepest.max(depth);
    }
    if deepest > 2 {
        return Err(bad(
            "the .npy header nests brackets deeper than a plain array's (structured or corrupt)"
                .into(),
        ));
    }
    bytes.extend_from_slice(&text);
    NpyHeader::from_reader(&mut io::Cursor::new(bytes)).map_err(|e| bad_npy(path, e))
}

fn open_array(path: &Path, keys: &[&str]) -> Result<Option<(Source, NpyHeader)>> {
    if is_npz(path) {
        let (Some(entry), _) = find_npz_entry(path, keys)? else {
            return Ok(None);
        };
        let mut r = entry_stream(path, &entry)?;
        let src = Source::Npz {
            path: path.to_path_buf(),
            entry,
        };
        let header = read_header(&mut r, &src.describe())?;
        Ok(Some((src, header)))
    } else {
        let f = File::open(path).map_err(|e| io_err(path, e))?;
        let mut r = BufReader::new(f);
        let header = read_header(&mut r, path)?;
        let data_offset = r.stream_position().map_err(|e| io_err(path, e))?;
        Ok(Some((
            Source::Npy {
                path: path.to_path_buf(),
                data_offset,
            },
            header,
        )))
    }
}

fn npz_keys(path: &Path) -> Vec<String> {
    find_npz_entry(path, &[])
        .map(|(_, names)| names)
        .unwrap_or_default()
}

/// Pixel element types accepted for images.
#[derive(Clone, Copy, Debug)]
enum Elem {
    U8,
    F32 { big: bool },
    F64 { big: bool },
}

impl Elem {
    fn size(self) -> usize {
        match self {
            Elem::U8 => 1,
            Elem::F32 { .. } => 4,
            Elem::F64 { .. } => 8,
        }
    }
}

fn plain_type(dtype: &DType) -> Option<(TypeChar, usize, bool)> {
    match dtype {
        DType::Plain(ts) => Some((
            ts.type_char(),
            ts.num_bytes()?,
            ts.endianness() == Endianness::Big,
        )),
        _ => None,
    }
}

fn dtype_name(dtype: &DType) -> String {
    match dtype {
        DType::Plain(ts) => ts.to_string(),
        _ => "a structured dtype".into(),
    }
}

/// Image layout on disk.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Layout {
    /// `[N, H, W, C]`: pixels need transposing to CHW.
    Nhwc,
    /// `[N, C, H, W]` or `[N, H, W]`: already CHW.
    Nchw,
}

pub(crate) struct NpyDataset {
    info: DatasetInfo,
    source: Source,
    elem: Elem,
    layout: Layout,
    labels: Vec<usize>,
}

/// Candidate label files for an images file, in the order they are tried.
fn label_candidates(images: &Path) -> Vec<PathBuf> {
    let dir = images.parent().unwrap_or(Path::new("."));
    let stem = images
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut c = vec![
        dir.join("labels.npy"),
        dir.join(format!("{stem}_labels.npy")),
    ];
    if let Some(rest) = stem.strip_prefix('x') {
        c.push(dir.join(format!("y{rest}.npy")));
    }
    if stem.contains("images") {
        c.push(dir.join(format!("{}.npy", stem.replacen("images", "labels", 1))));
    }
    c
}

/// Reads a 1-D integer array (or `[N, 1]`) whole.
fn read_labels(src: &Source, header: &NpyHeader) -> Result<Vec<i64>> {
    let path = src.describe();
    let (tc, size, big) = plain_type(&header.dtype()).ok_or_else(|| Error::BadHeader {
        path: path.clone(),
        reason: "labels must be a plain integer array".into(),
    })?;
    if !matches!(tc, TypeChar::Int | TypeChar::Uint) || ![1, 2, 4, 8].contains(&size) {
        return Err(Error::BadHeader {
            path,
            reason: format!(
                "labels have dtype {}, expected integers (int64, int32 or uint8)",
                dtype_name(&header.dtype())
            ),
        });
    }
    let shape = header.shape();
    let n = match shape {
        [n] => *n,
        [n, 1] => *n,
        _ => {
            return Err(Error::BadHeader {
                path,
                reason: format!("labels have shape {shape:?}, expected a 1-D array"),
            })
        }
    } as usize;
    // Grown as data arrives, so a corrupt header cannot make us allocate gigabytes.
    let want = (n as u64).saturating_mul(size as u64);
    let mut bytes = Vec::new();
    let mut r = src.stream(0)?;
    (&mut r)
        .take(want)
        .read_to_end(&mut bytes)
        .map_err(|e| io_err(src.path(), e))?;
    if (bytes.len() as u64) < want {
        return Err(Error::BadHeader {
            path,
            reason: format!(
                "file ends after {} of the {n} labels its header declares",
                bytes.len() / size
            ),
        });
    }
    let signed = tc == TypeChar::Int;
    Ok(bytes
        .chunks_exact(size)
        .map(|c| {
            let mut b = [0u8; 8];
            if big {
                b[8 - size..].copy_from_slice(c);
                b.reverse();
            } else {
                b[..size].copy_from_slice(c);
            }
            let u = u64::from_le_bytes(b);
            if signed {
                // Sign-extend from `size` bytes.
                let shift = 64 - 8 * size as u32;
                ((u << shift) as i64) >> shift
            } else {
                u as i64
            }
        })
        .collect())
}

/// The most classes labels may imply without a classes file.
const MAX_CLASSES: i64 = 1 << 20;

impl NpyDataset {
    pub(crate) fn open(
        path: &Path,
        opts: &LoadOptions,
        classes: Option<Vec<String>>,
    ) -> Result<Self> {
        let (source, header) = match open_array(path, &IMAGE_KEYS)? {
            Some(x) => x,
            None => {
                return Err(Error::BadHeader {
                    path: path.to_path_buf(),
                    reason: format!(
                        "no image array in the archive: expected one of {}, found {}",
                        IMAGE_KEYS.join(", "),
                        npz_keys(path).join(", ")
                    ),
                })
            }
        };
        let desc = source.describe();
        if header.order() == Order::Fortran {
            return Err(Error::BadHeader {
                path: desc,
                reason: "Fortran-ordered array; save it with np.ascontiguousarray(x)".into(),
            });
        }
        let elem = match plain_type(&header.dtype()) {
            Some((TypeChar::Uint, 1, _)) => Elem::U8,
            Some((TypeChar::Float, 4, big)) => Elem::F32 { big },
            Some((TypeChar::Float, 8, big)) => Elem::F64 { big },
            _ => {
                return Err(Error::BadHeader {
                    path: desc,
                    reason: format!(
                        "images have dtype {}, expected uint8 (0..255) or float32 (0..1)",
                        dtype_name(&header.dtype())
                    ),
                })
            }
        };
        let shape: Vec<usize> = header.shape().iter().map(|&d| d as usize).collect();
        let (n, c, h, w, layout) = match shape[..] {
            [n, h, w] => (n, 1, h, w, Layout::Nchw),
            [n, a, h, w] if (a == 1 || a == 3) && !(w == 1 || w == 3) => (n, a, h, w, Layout::Nchw),
            [n, h, w, c] if c == 1 || c == 3 => (n, c, h, w, Layout::Nhwc),
            _ => {
                return Err(Error::BadHeader {
                    path: desc,
                    reason: format!(
                        "images have shape {shape:?}; expected [N, H, W, C] or [N, C, H, W] \
                         with C = 1 or 3, or [N, H, W]"
                    ),
                })
            }
        };
        if h == 0 || w == 0 {
            return Err(Error::BadHeader {
                path: desc,
                reason: format!("images have shape {shape:?}, with an empty image size"),
            });
        }
        if h.saturating_mul(w) > crate::idx::MAX_PIXELS {
            return Err(Error::BadHeader {
                path: desc,
                reason: format!("images have shape {shape:?}, an implausible image size"),
            });
        }
        let sample_bytes = c * h * w * elem.size();
        if let Source::Npy { path, data_offset } = &source {
            let size = std::fs::metadata(path).map_err(|e| io_err(path, e))?.len();
            let have = size.saturating_sub(*data_offset) / sample_bytes as u64;
            if have < n as u64 {
                return Err(Error::BadHeader {
                    path: desc,
                    reason: format!(
                        "truncated: header declares {n} images, data ends after {have}"
                    ),
                });
            }
        }

        // Labels.
        let (lsrc, lheader) = find_labels(path, opts, &source)?;
        let raw = read_labels(&lsrc, &lheader)?;
        let lpath = lsrc.describe();
        if raw.len() != n {
            return Err(Error::Mismatch {
                path: lpath,
                reason: format!(
                    "{} labels for the {n} images of {}",
                    raw.len(),
                    desc.display()
                ),
            });
        }
        let classes_known = classes.as_ref().map(|c| c.len());
        let max = raw.iter().copied().max().unwrap_or(-1);
        // Without a classes file the largest label sets the class count; one so large that its
        // names would not fit in memory is a corrupt file, not a data set (found by fuzzing).
        if classes_known.is_none() && max >= MAX_CLASSES {
            let i = raw.iter().position(|&l| l == max).unwrap_or(0);
            return Err(Error::BadHeader {
                path: lpath,
                reason: format!(
                    "label {max} at index {i} implies more than {MAX_CLASSES} classes; \
                     pass --classes FILE if the data set really has that many"
                ),
            });
        }
        let num_classes = classes_known.unwrap_or((max + 1).max(0) as usize);
        if let Some((i, &l)) = raw
            .iter()
            .enumerate()
            .find(|(_, &l)| l < 0 || l as u64 >= num_classes as u64)
        {
            return Err(Error::LabelOutOfRange {
                path: lpath,
                index: i,
                label: l,
                classes: num_classes,
            });
        }
        let class_names =
            classes.unwrap_or_else(|| (0..num_classes).map(|i| i.to_string()).collect());
        Ok(NpyDataset {
            info: DatasetInfo {
                len: n,
                channels: c,
                height: h,
                width: w,
                class_names,
                format: Format::Npy,
                source: path.to_path_buf(),
            },
            source,
            elem,
            layout,
            labels: raw.into_iter().map(|l| l as usize).collect(),
        })
    }

    /// Converts one sample's raw bytes into CHW floats, checking float values.
    fn convert(
        &self,
        raw: &[u8],
        index: usize,
        lut: &[f32; 256],
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let (c, hw) = (self.info.channels, self.info.height * self.info.width);
        let start = out.len();
        match self.elem {
            Elem::U8 => out.extend(raw.iter().map(|&b| lut[b as usize])),
            Elem::F32 { big } => out.extend(raw.chunks_exact(4).map(|b| {
                let b = [b[0], b[1], b[2], b[3]];
                if big {
                    f32::from_be_bytes(b)
                } else {
                    f32::from_le_bytes(b)
                }
            })),
            Elem::F64 { big } => out.extend(raw.chunks_exact(8).map(|b| {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                (if big {
                    f64::from_be_bytes(a)
                } else {
                    f64::from_le_bytes(a)
                }) as f32
            })),
        }
        let px = &mut out[start..];
        if !matches!(self.elem, Elem::U8) {
            self.check_floats(px, index)?;
        }
        if self.layout == Layout::Nhwc && c > 1 {
            let hwc = px.to_vec();
            for (p, chunk) in hwc.chunks_exact(c).enumerate() {
                for (ch, &v) in chunk.iter().enumerate() {
                    px[ch * hw + p] = v;
                }
            }
        }
        Ok(())
    }

    fn check_floats(&self, px: &[f32], index: usize) -> Result<()> {
        check_pixels(px, || self.source.describe(), index)
    }
}

/// Locates the labels array, by the rules documented on [`crate::LoadOptions::labels`]:
/// the explicit file, then the `y`/`labels`/`y_test` entry of an `.npz`, then sibling files.
fn find_labels(images: &Path, opts: &LoadOptions, src: &Source) -> Result<(Source, NpyHeader)> {
    if let Some(lp) = &opts.labels {
        if !lp.exists() {
            return Err(Error::NotFound { path: lp.clone() });
        }
        return open_array(lp, &LABEL_KEYS)?.ok_or_else(|| Error::BadHeader {
            path: lp.clone(),
            reason: format!(
                "no labels array in the archive: expected one of {}, found {}",
                LABEL_KEYS.join(", "),
                npz_keys(lp).join(", ")
            ),
        });
    }
    if let Source::Npz { path, .. } = src {
        if let Some(found) = open_array(path, &LABEL_KEYS)? {
            return Ok(found);
        }
    }
    let candidates = label_candidates(images);
    for c in &candidates {
        if c.is_file() {
            if let Some(found) = open_array(c, &LABEL_KEYS)? {
                return Ok(found);
            }
        }
    }
    let mut tried = Vec::new();
    if is_npz(images) {
        tried.extend(
            LABEL_KEYS
                .iter()
                .map(|k| PathBuf::from(format!("{}[{k}]", images.display()))),
        );
    }
    tried.extend(candidates);
    Err(Error::MissingLabels {
        path: images.to_path_buf(),
        tried,
    })
}

impl Dataset for NpyDataset {
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
        let sample_bytes = self.info.sample_len() * self.elem.size();
        let mut buf = vec![0u8; sample_bytes];
        let mut stream: Option<Box<dyn Read + Send>> = None;
        let read = move |r: Range<usize>| -> Result<Batch> {
            // Taken out and put back after the batch; an error drops it, and the iterator
            // ends there anyway.
            let mut s = match stream.take() {
                Some(s) => s,
                None => self
                    .source
                    .stream((r.start as u64).saturating_mul(sample_bytes as u64))?,
            };
            let mut images = Vec::with_capacity(r.len() * self.info.sample_len());
            for i in r.clone() {
                let got =
                    read_full(&mut *s, &mut buf).map_err(|e| io_err(self.source.path(), e))?;
                if got < sample_bytes {
                    return Err(Error::BadHeader {
                        path: self.source.describe(),
                        reason: format!(
                            "truncated: header declares {} images, data ends in sample {i}",
                            self.info.len
                        ),
                    });
                }
                self.convert(&buf, i, &lut, &mut images)?;
            }
            stream = Some(s);
            Ok(Batch {
                labels: self.labels[r.clone()].to_vec(),
                indices: r.collect(),
                images,
                channels: self.info.channels,
                height: self.info.height,
                width: self.info.width,
            })
        };
        Ok(Box::new(ChunkIter::new(range, batch_size, read)))
    }

    fn labels(&self) -> Result<Vec<usize>> {
        Ok(self.labels.clone())
    }

    /// An `.npz` entry is read from one stream skipped forward between ascending samples
    /// (re-opening it per run of consecutive samples would inflate its head each time).
    fn read(&self, indices: &[usize]) -> Result<Batch> {
        if matches!(self.source, Source::Npy { .. }) {
            return crate::read_runs(self, indices);
        }
        let lut = crate::u8_to_unit();
        let sample_bytes = self.info.sample_len() * self.elem.size();
        let mut buf = vec![0u8; sample_bytes];
        let truncated = |i: usize| Error::BadHeader {
            path: self.source.describe(),
            reason: format!(
                "truncated: header declares {} images, data ends in sample {i}",
                self.info.len
            ),
        };
        crate::read_forward(
            self,
            indices,
            sample_bytes,
            |i| {
                self.source
                    .stream((i as u64).saturating_mul(sample_bytes as u64))
            },
            |s, i, out| {
                let got =
                    read_full(&mut **s, &mut buf).map_err(|e| io_err(self.source.path(), e))?;
                if got < sample_bytes {
                    return Err(truncated(i));
                }
                self.convert(&buf, i, &lut, out)
            },
            |s, n, at| {
                let skipped = io::copy(&mut (&mut **s).take(n), &mut io::sink())
                    .map_err(|e| io_err(self.source.path(), e))?;
                if skipped < n {
                    return Err(truncated(at + skipped as usize / sample_bytes.max(1)));
                }
                Ok(())
            },
            |i| self.labels[i],
        )
    }
}

/// Refuses a non-finite pixel or one outside [0, 1] of sample `index` of the data set at `path`,
/// with a hint at the usual cause (pixels on the 0–255 scale, normalised data).
pub(crate) fn check_pixels(px: &[f32], path: impl Fn() -> PathBuf, index: usize) -> Result<()> {
    let bad = |reason: String| Error::BadPixel {
        path: path(),
        index,
        reason,
    };
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for (i, &v) in px.iter().enumerate() {
        if !v.is_finite() {
            return Err(bad(format!(
                "non-finite pixel value {v} at element {i}; the images are corrupt"
            )));
        }
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if hi > 1.0 {
        let hint = if hi <= 255.0 {
            "values up to 255: save uint8 or divide by 255"
        } else {
            "pixels must lie in [0, 1]"
        };
        return Err(bad(format!("pixel value {hi} is outside [0, 1] ({hint})")));
    }
    if lo < 0.0 {
        return Err(bad(format!(
            "pixel value {lo} is outside [0, 1] (negative values suggest mean/std \
             normalised data: save pixels in [0, 1] and leave normalisation to the model)"
        )));
    }
    Ok(())
}
