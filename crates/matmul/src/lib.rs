//! `c (+)= a · b` on strided row/column views, delegating to the `gemm` crate's packed,
//! SIMD-dispatched kernels (AVX2/FMA, AVX-512, NEON) rather than a hand-written microkernel.
//! Nothing here is hand-written except the bound checks that make the call sound. Shared by
//! the engine (convolutions, MatMul/Gemm) and the training library (dense layers).

/// A read-only matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
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
/// `parallel` lets the gemm crate split the product over the current rayon pool's threads; it
/// splits the output, never the `k` sum, so results do not depend on the thread count.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
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

    #[test]
    fn matmul_is_bitwise_identical_on_one_and_two_threads() {
        // The training library's largest products (the notebook net): dW = dZᵀ·X (512×512,
        // k = 5000) and a forward layer (5000×512, k = 512).
        let (m, n, k) = (512, 512, 5000);
        let a: Vec<f32> = (0..k * m)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 5 % 17) as f32 - 8.0) / 9.0)
            .collect();
        let run = |threads: usize, m: usize, n: usize, k: usize, a: View, b: View| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut c = vec![0.0; m * n];
            pool.install(|| matmul(m, n, k, &mut c, n, false, a, b, true));
            c
        };
        let (at, bv) = (View::rows_t(&a, m), View::rows(&b, n));
        assert_eq!(run(1, m, n, k, at, bv), run(2, m, n, k, at, bv));
        let (av, wt) = (
            View::rows(&a[..5000 * 512], 512),
            View::rows_t(&b[..512 * 512], 512),
        );
        assert_eq!(
            run(1, 5000, 512, 512, av, wt),
            run(2, 5000, 512, 512, av, wt)
        );
    }

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
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let av = if ta {
                    View::rows_t(&a, m)
                } else {
                    View::rows(&a, k)
                };
                let bv = if tb {
                    View::rows_t(&b, k)
                } else {
                    View::rows(&b, n)
                };
                let want = naive(m, n, k, av, bv);
                for par in [false, true] {
                    // Written into the left half of rows twice as wide: the row stride counts.
                    let mut c = vec![1.0; m * 2 * n];
                    matmul(m, n, k, &mut c, 2 * n, false, av, bv, par);
                    let mut c2 = vec![1.0; m * 2 * n];
                    matmul(m, n, k, &mut c2, 2 * n, true, av, bv, par);
                    for i in 0..m {
                        for j in 0..2 * n {
                            let (x, x2) = (c[i * 2 * n + j], c2[i * 2 * n + j]);
                            if j >= n {
                                assert_eq!((x, x2), (1.0, 1.0), "wrote outside the view");
                                continue;
                            }
                            let y = want[i * n + j];
                            assert!(
                                (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                                "{m}x{n}x{k}: {x} vs {y}"
                            );
                            assert!((x2 - (y + 1.0)).abs() <= 1e-4 * (1.0 + y.abs()));
                        }
                    }
                }
            }
        }
    }
}
