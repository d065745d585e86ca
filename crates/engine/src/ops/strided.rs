//! One mechanism for the data-movement operators: an output element at multi-index `i` reads
//! the input at `base + Σ i[d]·stride[d]`. Transpose permutes strides, Slice offsets and
//! scales them, Expand sets them to zero on broadcast axes; each gradient is the matching
//! scatter-add.

/// Copies the strided view of `src` described by `base`/`strides` into a new buffer of
/// `shape`'s size.
pub(crate) fn gather<T: Copy>(
    src: &[T],
    base: isize,
    strides: &[isize],
    shape: &[usize],
) -> Vec<T> {
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    let r = shape.len();
    if r == 0 {
        out.push(src[base as usize]);
        return out;
    }
    let inner = shape[r - 1];
    let is = strides[r - 1];
    let mut idx = vec![0usize; r];
    let mut off = base;
    for _ in 0..n / inner {
        if is == 1 {
            out.extend_from_slice(&src[off as usize..off as usize + inner]);
        } else if is > 1 {
            // A forward step (a stride-2 subsample): one bounds check per run, and a loop
            // over whole steps that vectorizes.
            let (o, is) = (off as usize, is as usize);
            let run = &src[o..o + inner * is - (is - 1)];
            out.extend(run.chunks(is).map(|c| c[0]));
        } else {
            for j in 0..inner as isize {
                out.push(src[(off + j * is) as usize]);
            }
        }
        for d in (0..r - 1).rev() {
            idx[d] += 1;
            off += strides[d];
            if idx[d] < shape[d] {
                break;
            }
            off -= strides[d] * idx[d] as isize;
            idx[d] = 0;
        }
    }
    out
}

/// The adjoint of [`gather`]: adds `vals` (of `shape`) into `dst` at the view's positions.
pub(crate) fn scatter_add(
    vals: &[f32],
    dst: &mut [f32],
    base: isize,
    strides: &[isize],
    shape: &[usize],
) {
    let n: usize = shape.iter().product();
    if n == 0 {
        return;
    }
    let r = shape.len();
    if r == 0 {
        dst[base as usize] += vals[0];
        return;
    }
    let inner = shape[r - 1];
    let is = strides[r - 1];
    let mut idx = vec![0usize; r];
    let mut off = base;
    for chunk in vals.chunks(inner) {
        for (j, v) in chunk.iter().enumerate() {
            dst[(off + j as isize * is) as usize] += v;
        }
        for d in (0..r - 1).rev() {
            idx[d] += 1;
            off += strides[d];
            if idx[d] < shape[d] {
                break;
            }
            off -= strides[d] * idx[d] as isize;
            idx[d] = 0;
        }
    }
}
