//! `c (+)= a · b` on strided row/column views, delegating to the `gemm` crate's packed,
//! SIMD-dispatched kernels (AVX2/FMA, AVX-512, NEON) rather than a hand-written microkernel.

/// A read-only matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    /// Row-major matrix with `cols` columns.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        View {
            data,
            rs: cols,
            cs: 1,
        }
    }
    /// The transpose of a row-major matrix with `cols` columns.
    pub fn rows_t(data: &'a [f32], cols: usize) -> Self {
        View {
            data,
            rs: 1,
            cs: cols,
        }
    }
    fn fits(&self, r: usize, c: usize) -> bool {
        r == 0 || c == 0 || (r - 1) * self.rs + (c - 1) * self.cs < self.data.len()
    }
}

/// `c[m×n] = a[m×k] · b[k×n]` (`accumulate`: `c += …`), `c` row-major with row stride `c_rs`.
/// `parallel` lets the gemm crate split the product over rayon's threads.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    m: usize,
    n: usize,
    k: usize,
    c: &mut [f32],
    c_rs: usize,
    accumulate: bool,
    a: View,
    b: View,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                c[i * c_rs..i * c_rs + n].fill(0.0);
            }
        }
        return;
    }
    // These checks make the raw-pointer call below sound: every element the kernel touches
    // lies inside the slices.
    assert!(
        a.fits(m, k) && b.fits(k, n),
        "matmul operand views out of bounds"
    );
    assert!(
        (m - 1) * c_rs + n <= c.len() && c_rs >= n,
        "matmul output view out of bounds"
    );
    let threads = rayon::current_num_threads();
    let par = if parallel && threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: bounds checked above; `c` is exclusively borrowed and does not alias `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            c_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: View, b: View) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    c[i * n + j] += a.data[i * a.rs + p * a.cs] * b.data[p * b.rs + j * b.cs];
                }
            }
        }
        c
    }

    #[test]
    fn matches_naive_product_on_odd_and_transposed_shapes() {
        for &(m, n, k) in &[(1, 1, 1), (3, 5, 7), (17, 33, 9), (64, 1, 65), (2, 100, 3)] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0)
                .collect();
            for &ta in &[false, true] {
                let av = if ta {
                    View::rows_t(&a, m)
                } else {
                    View::rows(&a, k)
                };
                let bv = View::rows(&b, n);
                let want = naive(m, n, k, av, bv);
                for &par in &[false, true] {
                    let mut c = vec![1.0; m * n];
                    matmul(m, n, k, &mut c, n, false, av, bv, par);
                    for (x, y) in c.iter().zip(&want) {
                        assert!(
                            (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                            "{m}x{n}x{k}: {x} vs {y}"
                        );
                    }
                    let mut c2 = vec![1.0; m * n];
                    matmul(m, n, k, &mut c2, n, true, av, bv, par);
                    for (x, y) in c2.iter().zip(&want) {
                        assert!((x - (y + 1.0)).abs() <= 1e-4 * (1.0 + y.abs()));
                    }
                }
            }
        }
    }
}
