//! Image folders: `root/<class>/<...>/<file>.png|jpg|jpeg`, ordered like torchvision's
//! `ImageFolder` so that label indices agree with models trained on the same directory:
//! classes are the sub-folder names sorted byte-wise, and each class's files are found by a
//! recursive walk whose directories and file names are sorted (`sorted(os.walk(...))`).
//!
//! Only the file paths are held; a batch's files are decoded in parallel with rayon.

use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::io_err;
use crate::resize::{center_crop, resize_bilinear, resized_size, Image8};
use crate::{
    clamp_range, Batch, ChunkIter, Dataset, DatasetInfo, Error, Format, LoadOptions, Result,
};

const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

pub(crate) struct FolderDataset {
    info: DatasetInfo,
    /// (file, label) in sample order.
    entries: Vec<(PathBuf, usize)>,
    resize: Option<usize>,
    crop: Option<usize>,
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_string_lossy().starts_with('.')
}

/// All image files under `dir`, in the order of Python's
/// `for root, _, files in sorted(os.walk(dir, followlinks=True)): for f in sorted(files)`.
fn walk_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = vec![dir.to_path_buf()];
    let mut i = 0;
    // Breadth-first collection of every directory; sorted by path string afterwards, which
    // is exactly what sorting os.walk's tuples does.
    while i < dirs.len() {
        let d = dirs[i].clone();
        for entry in fs::read_dir(&d).map_err(|e| io_err(&d, e))? {
            let entry = entry.map_err(|e| io_err(&d, e))?;
            let p = entry.path();
            if !is_hidden(&entry.file_name()) && p.is_dir() {
                dirs.push(p);
            }
        }
        i += 1;
        if dirs.len() > 1_000_000 {
            return Err(Error::Invalid(format!(
                "{}: more than a million sub-directories (symlink loop?)",
                dir.display()
            )));
        }
    }
    dirs.sort_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    let mut files = Vec::new();
    for d in dirs {
        let mut here: Vec<PathBuf> = Vec::new();
        for entry in fs::read_dir(&d).map_err(|e| io_err(&d, e))? {
            let entry = entry.map_err(|e| io_err(&d, e))?;
            let p = entry.path();
            if is_image(&p) && !is_hidden(&entry.file_name()) && p.is_file() {
                here.push(p);
            }
        }
        here.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        files.extend(here);
    }
    Ok(files)
}

/// Decodes a PNG/JPEG into 8-bit interleaved pixels with 1 (L, LA) or 3 (RGB, RGBA) channels,
/// dropping alpha as PIL's `convert` does.
fn decode(path: &Path) -> Result<Image8> {
    let bytes = fs::read(path).map_err(|e| io_err(path, e))?;
    let failed = |reason: String| Error::Decode {
        path: path.to_path_buf(),
        reason,
    };
    let img = contain_panics(|| image::load_from_memory(&bytes))
        .map_err(|why| {
            failed(format!(
                "the decoder failed on it ({why}); is the file corrupt?"
            ))
        })?
        .map_err(|e| failed(e.to_string()))?;
    let (width, height) = (img.width() as usize, img.height() as usize);
    let (channels, data) = if img.color().has_color() {
        (3, img.into_rgb8().into_raw())
    } else {
        (1, img.into_luma8().into_raw())
    };
    Ok(Image8 {
        width,
        height,
        channels,
        data,
    })
}

thread_local! {
    /// Whether this thread is inside [`contain_panics`].
    static CONTAINED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs a third-party decoder, turning a panic inside it into an error. zune-jpeg 0.5.15 (the
/// `image` crate's JPEG decoder, its latest release) panics on some malformed files (an
/// `unwrap` in its AVX2 IDCT, found by `faultline-fuzz`); such a file must be a one-line error
/// naming it, not a crash. The panic's own message is kept off stderr: the hook installed here
/// stays silent for panics on a thread inside this function and hands every other panic to the
/// previous hook.
fn contain_panics<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CONTAINED.with(|c| c.get()) {
                previous(info);
            }
        }));
    });
    CONTAINED.with(|c| c.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CONTAINED.with(|c| c.set(false));
    r.map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into())
    })
}

/// Converts between 1 and 3 channels: gray is replicated; colour becomes gray with PIL's
/// ITU-R 601 weights in fixed point (`L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16`).
fn to_channels(img: Image8, channels: usize) -> Image8 {
    if img.channels == channels {
        return img;
    }
    let data = if channels == 3 {
        img.data.iter().flat_map(|&v| [v, v, v]).collect()
    } else {
        img.data
            .chunks_exact(3)
            .map(|p| {
                ((19595 * p[0] as u32 + 38470 * p[1] as u32 + 7471 * p[2] as u32 + 0x8000) >> 16)
                    as u8
            })
            .collect()
    };
    Image8 {
        channels,
        data,
        ..img
    }
}

impl FolderDataset {
    pub(crate) fn open(
        root: &Path,
        opts: &LoadOptions,
        classes: Option<Vec<String>>,
    ) -> Result<Self> {
        if !root.is_dir() {
            return Err(Error::UnknownFormat {
                path: root.to_path_buf(),
                reason: "an image folder must be a directory with one sub-folder per class".into(),
            });
        }
        let mut folders: Vec<std::ffi::OsString> = Vec::new();
        for entry in fs::read_dir(root).map_err(|e| io_err(root, e))? {
            let entry = entry.map_err(|e| io_err(root, e))?;
            if entry.path().is_dir() && !is_hidden(&entry.file_name()) {
                folders.push(entry.file_name());
            }
        }
        folders.sort();
        if folders.is_empty() {
            return Err(Error::UnknownFormat {
                path: root.to_path_buf(),
                reason: "image folder without class sub-folders".into(),
            });
        }
        let folder_names: Vec<String> = folders
            .iter()
            .map(|f| f.to_string_lossy().into_owned())
            .collect();
        // Label of each folder: by name when a classes file lists every folder (robust to
        // subsets of classes), by sorted position otherwise.
        let (class_names, folder_labels): (Vec<String>, Vec<usize>) = match classes {
            None => (folder_names.clone(), (0..folder_names.len()).collect()),
            Some(names) => {
                let by_name: Option<Vec<usize>> = folder_names
                    .iter()
                    .map(|f| names.iter().position(|n| n == f))
                    .collect();
                match by_name {
                    Some(labels) => (names, labels),
                    None if names.len() == folder_names.len() => {
                        (names, (0..folder_names.len()).collect())
                    }
                    None => {
                        let path = opts.classes_file.clone().unwrap_or_default();
                        return Err(Error::Mismatch {
                            path,
                            reason: format!(
                                "the classes file lists {} classes and not all of the {} \
                                 folder names of {}, so folders cannot be matched to classes",
                                names.len(),
                                folder_names.len(),
                                root.display()
                            ),
                        });
                    }
                }
            }
        };
        let mut entries = Vec::new();
        for (folder, &label) in folders.iter().zip(&folder_labels) {
            let dir = root.join(folder);
            let files = walk_sorted(&dir)?;
            if files.is_empty() {
                return Err(Error::UnknownFormat {
                    path: dir,
                    reason: "class folder holds no PNG/JPEG file".into(),
                });
            }
            entries.extend(files.into_iter().map(|f| (f, label)));
        }
        let resize = opts.resize.map(|r| r as usize);
        let crop = opts.center_crop.map(|c| c as usize);
        if resize == Some(0) || crop == Some(0) {
            return Err(Error::Invalid(
                "resize and centre-crop sizes must be at least 1".into(),
            ));
        }
        // The first image fixes channels and size.
        let first = decode(&entries[0].0)?;
        let channels = first.channels;
        let first = transform(first, resize, crop);
        Ok(FolderDataset {
            info: DatasetInfo {
                len: entries.len(),
                channels,
                height: first.height,
                width: first.width,
                class_names,
                format: Format::ImageFolder,
                source: root.to_path_buf(),
            },
            entries,
            resize,
            crop,
        })
    }

    /// Decodes, converts and transforms one file into CHW floats.
    fn load(&self, path: &Path) -> Result<Vec<f32>> {
        let img = decode(path)?;
        let img = to_channels(img, self.info.channels);
        let (w0, h0) = (img.width, img.height);
        let img = transform(img, self.resize, self.crop);
        if img.width != self.info.width || img.height != self.info.height {
            let hint = if self.resize.is_none() && self.crop.is_none() {
                "use --resize/--center-crop"
            } else {
                "add --center-crop so that all images end up square"
            };
            let (width, height) = if self.resize.is_some() {
                (img.width, img.height)
            } else {
                (w0, h0)
            };
            return Err(Error::ImageSize {
                path: path.to_path_buf(),
                width,
                height,
                expected_width: self.info.width,
                expected_height: self.info.height,
                hint,
            });
        }
        let lut = crate::u8_to_unit();
        let (c, hw) = (img.channels, img.width * img.height);
        let mut out = vec![0f32; c * hw];
        for (p, px) in img.data.chunks_exact(c).enumerate() {
            for (ch, &v) in px.iter().enumerate() {
                out[ch * hw + p] = lut[v as usize];
            }
        }
        Ok(out)
    }
}

fn transform(img: Image8, resize: Option<usize>, crop: Option<usize>) -> Image8 {
    let img = match resize {
        Some(r) => {
            let (w, h) = resized_size(img.width, img.height, r);
            if (w, h) == (img.width, img.height) {
                img
            } else {
                resize_bilinear(&img, w, h)
            }
        }
        None => img,
    };
    match crop {
        Some(c) => center_crop(&img, c),
        None => img,
    }
}

impl Dataset for FolderDataset {
    fn info(&self) -> &DatasetInfo {
        &self.info
    }

    fn sample_source(&self, index: usize) -> Option<PathBuf> {
        self.entries.get(index).map(|(p, _)| p.clone())
    }

    fn batches(
        &self,
        batch_size: usize,
        range: Range<usize>,
    ) -> Result<Box<dyn Iterator<Item = Result<Batch>> + Send + '_>> {
        let range = clamp_range(batch_size, range, self.info.len)?;
        let read = move |r: Range<usize>| -> Result<Batch> {
            let decoded: Vec<Result<Vec<f32>>> = self.entries[r.clone()]
                .par_iter()
                .map(|(p, _)| self.load(p))
                .collect();
            let mut images = Vec::with_capacity(r.len() * self.info.sample_len());
            for d in decoded {
                images.extend(d?);
            }
            Ok(Batch {
                labels: self.entries[r.clone()].iter().map(|(_, l)| *l).collect(),
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
        Ok(self.entries.iter().map(|(_, l)| *l).collect())
    }

    /// Decodes the files of `indices` in parallel, whatever their order.
    fn read(&self, indices: &[usize]) -> Result<Batch> {
        let entries = indices
            .iter()
            .map(|&i| {
                self.entries.get(i).ok_or_else(|| {
                    Error::Invalid(format!(
                        "{}: sample {i} is past the last of {}",
                        self.info.source.display(),
                        self.info.len
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let decoded: Vec<Result<Vec<f32>>> =
            entries.par_iter().map(|(p, _)| self.load(p)).collect();
        let mut images = Vec::with_capacity(indices.len() * self.info.sample_len());
        for d in decoded {
            images.extend(d?);
        }
        Ok(Batch {
            labels: entries.iter().map(|(_, l)| *l).collect(),
            indices: indices.to_vec(),
            images,
            channels: self.info.channels,
            height: self.info.height,
            width: self.info.width,
        })
    }
}
