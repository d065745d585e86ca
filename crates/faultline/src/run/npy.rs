//! Pre-sized `.npy` files written row by row at known offsets, for outputs whose rows arrive out
//! of order or across resumed runs (a streaming `.npy` writer can only append). The format is a
//! fixed header followed by raw little-endian C-order data.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{io, Result};

/// The `.npy` header (format 1.0) for `descr` (e.g. `|u1`, `<f4`, `<i8`) and `shape`.
pub fn header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple}, }}");
    // Magic (6) + version (2) + length (2) + dict + '\n' must be a multiple of 64.
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    h.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h
}

/// The little-endian `f32` data of a `.npy` file written by [`NpyRows`] (`<f4`, C order).
pub fn read_f32(path: &Path) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let bad = |why: &str| crate::error::Error::RunDir {
        path: path.to_path_buf(),
        why: why.into(),
    };
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file"));
    }
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let head = std::str::from_utf8(
        bytes
            .get(10..10 + len)
            .ok_or_else(|| bad("truncated header"))?,
    )
    .map_err(|_| bad("header is not text"))?;
    if !head.contains("'<f4'") || head.contains("'fortran_order': True") {
        return Err(bad("expected little-endian float32 in C order"));
    }
    Ok(bytes[10 + len..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// A `.npy` file of `shape` whose rows (first dimension) are written by index.
pub struct NpyRows {
    file: File,
    header: u64,
    row_bytes: u64,
    path: PathBuf,
}

impl NpyRows {
    /// Creates (or, with `keep`, reopens without truncating) a file of `shape` with elements of
    /// `width` bytes described by `descr`.
    pub fn open(
        path: &Path,
        descr: &str,
        width: usize,
        shape: &[usize],
        keep: bool,
    ) -> Result<Self> {
        let h = header(descr, shape);
        let row: usize = shape[1..].iter().product::<usize>() * width;
        let total = h.len() as u64 + (shape[0] * row) as u64;
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(!keep)
            .open(path)
            .map_err(io(path))?;
        file.set_len(total).map_err(io(path))?;
        file.seek(SeekFrom::Start(0)).map_err(io(path))?;
        file.write_all(&h).map_err(io(path))?;
        Ok(NpyRows {
            file,
            header: h.len() as u64,
            row_bytes: row as u64,
            path: path.to_path_buf(),
        })
    }

    /// Opens an existing version-1 `.npy` file of rows of `row_bytes` bytes for reading.
    pub fn existing(path: &Path, row_bytes: usize) -> Result<Self> {
        let mut file = OpenOptions::new().read(true).open(path).map_err(io(path))?;
        let mut pre = [0u8; 10];
        file.read_exact(&mut pre).map_err(io(path))?;
        if &pre[..6] != b"\x93NUMPY" || pre[6] != 1 {
            return Err(crate::Error::Invalid(format!(
                "{}: not a version-1 .npy file",
                path.display()
            )));
        }
        Ok(NpyRows {
            file,
            header: 10 + u16::from_le_bytes([pre[8], pre[9]]) as u64,
            row_bytes: row_bytes as u64,
            path: path.to_path_buf(),
        })
    }

    /// Writes consecutive rows starting at row `first`.
    pub fn write_rows(&mut self, first: usize, bytes: &[u8]) -> Result<()> {
        let p = &self.path;
        self.file
            .seek(SeekFrom::Start(self.header + first as u64 * self.row_bytes))
            .map_err(io(p))?;
        self.file.write_all(bytes).map_err(io(p))
    }

    /// Reads `count` consecutive rows starting at row `first`.
    pub fn read_rows(&mut self, first: usize, count: usize) -> Result<Vec<u8>> {
        let p = &self.path;
        self.file
            .seek(SeekFrom::Start(self.header + first as u64 * self.row_bytes))
            .map_err(io(p))?;
        let mut buf = vec![0u8; count * self.row_bytes as usize];
        self.file.read_exact(&mut buf).map_err(io(p))?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_written_out_of_order_read_back_in_order() {
        let p = std::env::temp_dir().join(format!("faultline-npy-{}.npy", std::process::id()));
        let mut f = NpyRows::open(&p, "<f4", 4, &[3, 2], false).unwrap();
        let row = |a: f32, b: f32| [a.to_le_bytes(), b.to_le_bytes()].concat();
        f.write_rows(2, &row(5.0, 6.0)).unwrap();
        f.write_rows(0, &[row(1.0, 2.0), row(3.0, 4.0)].concat())
            .unwrap();
        drop(f);
        assert_eq!(read_f32(&p).unwrap(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        std::fs::write(&p, b"not npy").unwrap();
        assert!(read_f32(&p).is_err());
        std::fs::remove_file(&p).ok();
    }
}
