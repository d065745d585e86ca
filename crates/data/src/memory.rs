//! A data set held in memory: images and labels handed over by a caller (the Python bindings'
//! numpy arrays) instead of read from files, so the analyses run on them unchanged.

use std::ops::Range;
use std::path::PathBuf;

use crate::{clamp_range, Batch, ChunkIter, Dataset, DatasetInfo, Error, Format, Result};

/// Float32 NCHW images in [0, 1] and their labels, in memory.
#[derive(Debug, Clone)]
pub struct MemoryDataset {
    info: DatasetInfo,
    images: Vec<f32>,
    labels: Vec<usize>,
}

impl MemoryDataset {
    /// `images` (NCHW, `labels.len()` images of `shape` = `[c, h, w]`) with their labels.
    /// `source` names the data in errors and run records (e.g. `<numpy array>`). The class
    /// names are `class_names`, or `0..=max label` when empty. Checks every pixel (finite, in
    /// [0, 1]) and every label (below the class count) up front, naming the sample at fault.
    pub fn new(
        images: Vec<f32>,
        labels: Vec<usize>,
        shape: [usize; 3],
        class_names: Vec<String>,
        source: PathBuf,
    ) -> Result<MemoryDataset> {
        let [c, h, w] = shape;
        let per = c * h * w;
        if per == 0 || images.len() != labels.len() * per {
            return Err(Error::Invalid(format!(
                "{}: {} pixel values for {} labels of {c}x{h}x{w} images",
                source.display(),
                images.len(),
                labels.len()
            )));
        }
        for (i, px) in images.chunks_exact(per).enumerate() {
            crate::npy::check_pixels(px, || source.clone(), i)?;
        }
        let class_names = if class_names.is_empty() {
            let k = labels.iter().max().map_or(0, |m| m + 1);
            (0..k).map(|i| i.to_string()).collect()
        } else {
            class_names
        };
        if let Some((i, &y)) = labels
            .iter()
            .enumerate()
            .find(|(_, &y)| y >= class_names.len())
        {
            return Err(Error::LabelOutOfRange {
                path: source,
                index: i,
                label: y as i64,
                classes: class_names.len(),
            });
        }
        Ok(MemoryDataset {
            info: DatasetInfo {
                len: labels.len(),
                channels: c,
                height: h,
                width: w,
                class_names,
                // Arrays are what a .npy file holds once read.
                format: Format::Npy,
                source,
            },
            images,
            labels,
        })
    }
}

impl Dataset for MemoryDataset {
    fn info(&self) -> &DatasetInfo {
        &self.info
    }

    fn batches(
        &self,
        batch_size: usize,
        range: Range<usize>,
    ) -> Result<Box<dyn Iterator<Item = Result<Batch>> + Send + '_>> {
        let range = clamp_range(batch_size, range, self.info.len)?;
        let per = self.info.sample_len();
        let read = move |r: Range<usize>| -> Result<Batch> {
            Ok(Batch {
                images: self.images[r.start * per..r.end * per].to_vec(),
                labels: self.labels[r.clone()].to_vec(),
                indices: r.collect(),
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_slice_the_arrays_and_bad_input_is_refused() {
        let images: Vec<f32> = (0..3 * 4).map(|v| v as f32 / 12.0).collect();
        let d = MemoryDataset::new(
            images.clone(),
            vec![0, 2, 1],
            [1, 2, 2],
            vec![],
            "<a>".into(),
        )
        .unwrap();
        assert_eq!(d.info().num_classes(), 3);
        let b: Vec<Batch> = d.batches(2, 0..3).unwrap().map(|b| b.unwrap()).collect();
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].indices, vec![2]);
        assert_eq!(b[1].labels, vec![1]);
        assert_eq!(b[1].images, images[8..12].to_vec());
        let r = d.read(&[2, 0]).unwrap();
        assert_eq!(r.labels, vec![1, 0]);
        let mut bad = images.clone();
        bad[5] = 2.0;
        let e = MemoryDataset::new(bad, vec![0, 0, 0], [1, 2, 2], vec![], "<a>".into());
        assert!(e.unwrap_err().to_string().contains("<a>: sample 1"));
        let names = vec!["a".to_string(), "b".to_string()];
        let e = MemoryDataset::new(images, vec![0, 2, 1], [1, 2, 2], names, "<a>".into());
        assert!(e.unwrap_err().to_string().contains("label 2 at sample 1"));
    }
}
