//! The fuzz targets: each turns bytes into files a parser reads (a model, a data set), runs
//! the parser as faultline does, and returns a short outcome signature (`ok …` or the error's
//! first words without numbers) that the driver uses to keep inputs reaching new outcomes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Every target, by name (`faultline-fuzz list`).
pub const TARGETS: &[&str] = &[
    "onnx",
    "onnx-external",
    "idx",
    "cifar",
    "npy",
    "npz",
    "png",
    "jpeg",
    "cli",
];

/// One input of a target: the bytes of one file, which the target places among fixed files.
pub struct Target {
    pub name: &'static str,
    /// Valid files to start from.
    pub seeds: Vec<Vec<u8>>,
    /// The longest input the mutator may build.
    pub max_len: usize,
    /// The working directory the target's files live in.
    pub dir: PathBuf,
    /// The repository's `../shared` (models and data for seeds).
    shared: PathBuf,
}

fn read(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("reading seed {}", p.display()))
}

/// `first` samples of an IDX pair, uncompressed: (images, labels).
fn idx_seed(shared: &Path, first: usize) -> Result<(Vec<u8>, Vec<u8>)> {
    use std::io::Read;
    let gz = |name: &str| -> Result<Vec<u8>> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&read(&shared.join("data/mnist").join(name))?[..])
            .read_to_end(&mut out)?;
        Ok(out)
    };
    let images = gz("t10k-images-idx3-ubyte.gz")?;
    let labels = gz("t10k-labels-idx1-ubyte.gz")?;
    let mut im = images[..16].to_vec();
    im[4..8].copy_from_slice(&(first as u32).to_be_bytes());
    im.extend_from_slice(&images[16..16 + first * 784]);
    let mut lb = labels[..8].to_vec();
    lb[4..8].copy_from_slice(&(first as u32).to_be_bytes());
    lb.extend_from_slice(&labels[8..8 + first]);
    Ok((im, lb))
}

/// A `.npy` file of `u8` or `f32` values with the given shape.
fn npy(shape: &[usize], descr: &str, body: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(body);
    out
}

/// Images and labels of a small data set as npy files.
fn npy_seeds(shared: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let (im, lb) = idx_seed(shared, 12)?;
    let labels: Vec<u8> = lb[8..]
        .iter()
        .flat_map(|&l| (l as i64).to_le_bytes())
        .collect();
    let u8s = npy(&[12, 1, 28, 28], "|u1", &im[16..]);
    let floats: Vec<u8> = im[16..]
        .iter()
        .flat_map(|&p| (p as f32 / 255.0).to_le_bytes())
        .collect();
    let f32s = npy(&[12, 28, 28], "<f4", &floats);
    let y = npy(&[12], "<i8", &labels);
    Ok(vec![(u8s, y.clone()), (f32s, y)])
}

fn zip_of(entries: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        w.start_file(*name, zip::write::SimpleFileOptions::default())?;
        w.write_all(bytes)?;
    }
    Ok(w.finish()?.into_inner())
}

/// A small image of each seed kind, encoded.
fn image_seeds(format: image::ImageFormat) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for (w, h, grey) in [(32u32, 32u32, false), (28, 28, true), (17, 9, false)] {
        let mut buf = std::io::Cursor::new(Vec::new());
        if grey {
            image::GrayImage::from_fn(w, h, |x, y| image::Luma([(x * 7 + y * 3) as u8]))
                .write_to(&mut buf, format)?;
        } else {
            image::RgbImage::from_fn(w, h, |x, y| {
                image::Rgb([(x * 8) as u8, (y * 8) as u8, ((x + y) * 4) as u8])
            })
            .write_to(&mut buf, format)?;
        }
        out.push(buf.into_inner());
    }
    Ok(out)
}

impl Target {
    /// The target `name` working in `dir`, with seeds from `shared`.
    pub fn new(name: &str, dir: &Path, shared: &Path) -> Result<Target> {
        std::fs::create_dir_all(dir)?;
        let name = *TARGETS
            .iter()
            .find(|t| **t == name)
            .with_context(|| format!("unknown target '{name}'; one of {}", TARGETS.join(", ")))?;
        let models = shared.join("models");
        let dynamo = models.join("cifar10/resnet20-dynamo/cifar10-resnet20-dynamo.onnx");
        let (seeds, max_len) = match name {
            "onnx" => (
                vec![
                    read(&models.join("third-party-onnx/Convnet_maxpool.onnx"))?,
                    read(&dynamo)?,
                ],
                1 << 20,
            ),
            // The external data file of the dynamo export, read through its model.
            "onnx-external" => (vec![read(&dynamo.with_extension("onnx.data"))?], 2 << 20),
            "idx" => {
                let (im, lb) = idx_seed(shared, 20)?;
                std::fs::write(dir.join("t10k-labels-idx1-ubyte"), &lb)?;
                (vec![im], 1 << 16)
            }
            "cifar" => {
                let all = read(&shared.join("data/cifar10/test_batch_first100.bin"))?;
                (vec![all[..3073 * 10].to_vec()], 1 << 16)
            }
            "npy" => {
                let seeds = npy_seeds(shared)?;
                std::fs::write(dir.join("labels.npy"), &seeds[0].1)?;
                (seeds.into_iter().map(|s| s.0).collect(), 1 << 16)
            }
            "npz" => {
                let seeds = npy_seeds(shared)?;
                let z = |s: &(Vec<u8>, Vec<u8>)| zip_of(&[("x.npy", &s.0), ("y.npy", &s.1)]);
                (vec![z(&seeds[0])?, z(&seeds[1])?], 1 << 16)
            }
            "png" => (image_seeds(image::ImageFormat::Png)?, 1 << 14),
            "jpeg" => (image_seeds(image::ImageFormat::Jpeg)?, 1 << 14),
            "cli" => (crate::cli::seeds(), 1 << 10),
            _ => unreachable!(),
        };
        Ok(Target {
            name,
            seeds,
            max_len,
            dir: dir.to_path_buf(),
            shared: shared.to_path_buf(),
        })
    }

    /// Writes `input` where the parser expects it and runs the parser.
    pub fn exec(&self, input: &[u8]) -> String {
        let r = match self.name {
            "onnx" => {
                let p = self.dir.join("model.onnx");
                // The dynamo seed needs its external data beside it.
                let data = self.dir.join("cifar10-resnet20-dynamo.onnx.data");
                if !data.exists() {
                    let src = self
                        .shared
                        .join("models/cifar10/resnet20-dynamo/cifar10-resnet20-dynamo.onnx.data");
                    let _ = std::fs::copy(src, &data);
                }
                write(&p, input).and_then(|_| model(&p))
            }
            "onnx-external" => {
                let src = self
                    .shared
                    .join("models/cifar10/resnet20-dynamo/cifar10-resnet20-dynamo.onnx");
                let p = self.dir.join("cifar10-resnet20-dynamo.onnx");
                if !p.exists() {
                    let _ = std::fs::copy(src, &p);
                }
                write(&self.dir.join("cifar10-resnet20-dynamo.onnx.data"), input)
                    .and_then(|_| model(&p))
            }
            "idx" => {
                let p = self.dir.join("t10k-images-idx3-ubyte");
                write(&p, input).and_then(|_| data(&p))
            }
            "cifar" => {
                let p = self.dir.join("test_batch.bin");
                write(&p, input).and_then(|_| data(&p))
            }
            "npy" => {
                let p = self.dir.join("images.npy");
                write(&p, input).and_then(|_| data(&p))
            }
            "npz" => {
                let p = self.dir.join("data.npz");
                write(&p, input).and_then(|_| data(&p))
            }
            "png" | "jpeg" => {
                // Two classes; the mutated image is one of class b's two files.
                let root = self.dir.join("folder");
                let ext = if self.name == "png" { "png" } else { "jpg" };
                let good = &self.seeds[0];
                let r = (|| -> Result<()> {
                    std::fs::create_dir_all(root.join("a"))?;
                    std::fs::create_dir_all(root.join("b"))?;
                    std::fs::write(root.join("a").join(format!("0.{ext}")), good)?;
                    std::fs::write(root.join("b").join(format!("0.{ext}")), good)?;
                    std::fs::write(root.join("b").join(format!("1.{ext}")), input)?;
                    Ok(())
                })();
                r.and_then(|_| data(&root))
            }
            "cli" => crate::cli::exec(input, &self.dir, &self.shared),
            _ => unreachable!(),
        };
        match r {
            Ok(s) => s,
            Err(e) => signature(&format!("{e:#}")),
        }
    }
}

fn write(p: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(p, bytes).with_context(|| format!("writing {}", p.display()))
}

/// The first words of an error without digits and paths: inputs that reach a new kind of
/// error are kept in the corpus.
pub fn signature(msg: &str) -> String {
    let words: Vec<String> = msg
        .split_whitespace()
        .filter(|w| !w.contains('/'))
        .take(8)
        .map(|w| w.chars().filter(|c| !c.is_ascii_digit()).collect())
        .collect();
    format!("err {}", words.join(" "))
}

/// Loads a model as faultline does, prepares it for its declared image shape when that is
/// small, and runs a forward and backward pass on one image.
fn model(p: &Path) -> Result<String> {
    let (mut m, _) = faultline_onnx::load(p)?;
    let dims = m.declared_input().to_vec();
    let image = match dims.as_slice() {
        [_, Some(c), Some(h), Some(w)] if c * h * w <= 3 * 64 * 64 && *c > 0 => [*c, *h, *w],
        _ => [3, 32, 32],
    };
    m.prepare(image, None)?;
    let x = vec![0.5f32; image.iter().product()];
    let logits = m.logits(&x)?;
    let labels = [0usize];
    let g = m.loss_grad(
        &x,
        &faultline_engine::Loss::CrossEntropy { labels: &labels },
    )?;
    Ok(format!("ok {} logits, grad {}", logits.len(), g.grad.len()))
}

/// Opens a data set as faultline does (format detected from the path) and reads every sample.
fn data(p: &Path) -> Result<String> {
    let d = faultline_data::open(p, &faultline_data::LoadOptions::default())?;
    let n = d.info().len.min(64);
    let mut seen = 0;
    for b in d.batches(16, 0..n)? {
        seen += b?.labels.len();
    }
    let labels = d.labels()?;
    Ok(format!("ok {seen} samples, {} labels", labels.len().min(1)))
}

/// Writes a 12-image MNIST data set as `images.npy` and `labels.npy` into `dir`.
pub fn write_npy_set(shared: &Path, dir: &Path) -> Result<()> {
    let seeds = npy_seeds(shared)?;
    write(&dir.join("images.npy"), &seeds[0].0)?;
    write(&dir.join("labels.npy"), &seeds[0].1)
}
