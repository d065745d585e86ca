//! `c (+)= a · b` on strided row/column views, delegating to the `gemm` crate's packed,
//! SIMD-dispatched kernels (AVX2/FMA, AVX-512, NEON), except products of few rows on AVX-512
//! CPUs, which take a hand-written kernel ([`skinny`], where its doc comment says why).
//! Shared by the engine (convolutions, MatMul/Gemm) and the training library (dense layers).

pub mod skinny;

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
    /// The view from element `(r, c)` on (its rows and columns from there; empty past the
    /// end of the data).
    pub fn at(&self, r: usize, c: usize) -> View<'a> {
        View {
            data: &self.data[(r * self.rs + c * self.cs).min(self.data.len())..],
            rs: self.rs,
            cs: self.cs,
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
    matmul_on(Route::Auto, m, n, k, c, c_rs, accumulate, a, b, parallel)
}

/// Which kernel [`matmul_on`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// [`skinny`] where it applies, else the gemm crate.
    Auto,
    /// The gemm crate (benchmarks and tests compare the two).
    Gemm,
}

/// [`matmul`] on a chosen route.
#[allow(clippy::too_many_arguments)]
pub fn matmul_on(
    route: Route,
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
    assert!(
        (m - 1) * c_rs + n <= c.len() && c_rs >= n,
        "matmul output view out of bounds"
    );
    // SAFETY: `c` holds every element of the block (asserted above), is exclusively borrowed,
    // and so aliases neither `a` nor `b`.
    unsafe {
        run(
            route,
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_rs,
            accumulate,
            a,
            b,
            parallel,
        )
    }
}

/// [`matmul`] into a block of a matrix given by a pointer to its first element: for callers
/// that have several threads write disjoint column blocks of one matrix, where a `&mut` slice
/// over each block's rows would overlap the other blocks.
///
/// # Safety
/// `c` must point to `m` rows of `n` writable elements each, `c_rs ≥ n` apart, that nothing
/// else reads or writes during the call and that do not overlap `a` or `b`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul_into(
    m: usize,
    n: usize,
    k: usize,
    c: *mut f32,
    c_rs: usize,
    accumulate: bool,
    a: View,
    b: View,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(c_rs >= n, "matmul output rows overlap");
    // SAFETY: the caller's contract covers `c`.
    unsafe { run(Route::Auto, m, n, k, c, c_rs, accumulate, a, b, false) }
}

/// The product for [`matmul_on`] and [`matmul_into`] (`m, n > 0`).
///
/// # Safety
/// As for [`matmul_into`].
#[allow(clippy::too_many_arguments)]
unsafe fn run(
    route: Route,
    m: usize,
    n: usize,
    k: usize,
    c: *mut f32,
    c_rs: usize,
    accumulate: bool,
    a: View,
    b: View,
    parallel: bool,
) {
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                // SAFETY: row `i` of the block (the caller's contract).
                unsafe { std::slice::from_raw_parts_mut(c.add(i * c_rs), n).fill(0.0) };
            }
        }
        return;
    }
    // These checks make the raw-pointer calls below sound for `a` and `b`: every element the
    // kernel reads lies inside their slices.
    assert!(
        a.fits(m, k) && b.fits(k, n),
        "matmul operand views out of bounds"
    );
    if route == Route::Auto && skinny::applies(m, &b) {
        // SAFETY: operands checked above, `c` by the caller, `k > 0`, the kernel runs here.
        unsafe { skinny::matmul(m, n, k, c, c_rs, accumulate, a, b, parallel) };
        return;
    }
    let threads = rayon::current_num_threads();
    let par = if parallel && threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: operands checked above, `c` by the caller (no aliasing).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
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

    /// The few-row kernel against its definition, bit for bit: every output is one chain of
    /// fused multiply-adds in `k` order from its starting value (so `f32::mul_add` in a loop is
    /// an exact reference), over row tails (1–9, 17, 96 rows), column tails around the 16- and
    /// 48-column tiles, sums across the 256-row blocks of `b`, transposed `a`, accumulation,
    /// a product split into column blocks, and one or two threads.
    #[test]
    fn skinny_kernel_is_an_exact_fma_chain() {
        if !skinny::available() {
            eprintln!("no AVX-512 here: the skinny kernel does not run (the gemm crate does)");
            return;
        }
        let pool2 = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for &(m, n, k) in &[
            (1, 1, 1),
            (3, 15, 7),
            (5, 16, 300),
            (7, 17, 257),
            (8, 47, 64),
            (9, 48, 513),
            (17, 49, 33),
            (96, 200, 40),
            (72, 130, 200),
        ] {
            assert!(skinny::applies(m, &View::rows(&[], n)));
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7919 % 263) as f32 - 131.0) / 97.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 104729 % 389) as f32 - 194.0) / 113.0)
                .collect();
            for ta in [false, true] {
                let av = if ta {
                    View::rows_t(&a, m)
                } else {
                    View::rows(&a, k)
                };
                let bv = View::rows(&b, n);
                for accumulate in [false, true] {
                    let start = |i: usize, j: usize| ((i * 31 + j * 17) % 23) as f32 / 7.0 - 1.5;
                    let mut want = vec![0.0f32; m * n];
                    for i in 0..m {
                        for j in 0..n {
                            let mut acc = if accumulate { start(i, j) } else { 0.0 };
                            for p in 0..k {
                                acc = av.data[i * av.rs + p * av.cs].mul_add(b[p * n + j], acc);
                            }
                            want[i * n + j] = acc;
                        }
                    }
                    let fresh = || {
                        let mut c = vec![f32::NAN; m * (n + 3)];
                        for i in 0..m {
                            for j in 0..n {
                                c[i * (n + 3) + j] = start(i, j);
                            }
                        }
                        c
                    };
                    let check = |c: &[f32], what: &str| {
                        for i in 0..m {
                            for j in 0..n + 3 {
                                let got = c[i * (n + 3) + j];
                                if j >= n {
                                    assert!(got.is_nan(), "{what}: wrote outside the view");
                                } else {
                                    assert_eq!(
                                        got.to_bits(),
                                        want[i * n + j].to_bits(),
                                        "{what} {m}x{n}x{k} ta {ta} acc {accumulate} at ({i}, {j})"
                                    );
                                }
                            }
                        }
                    };
                    let mut c = fresh();
                    matmul(m, n, k, &mut c, n + 3, accumulate, av, bv, false);
                    check(&c, "one thread");
                    let mut c = fresh();
                    pool2.install(|| matmul(m, n, k, &mut c, n + 3, accumulate, av, bv, true));
                    check(&c, "two threads");
                    // Column blocks of 20: each block is a product of its own.
                    let mut c = fresh();
                    for j0 in (0..n).step_by(20) {
                        let w = 20.min(n - j0);
                        let bj = View {
                            data: &b[j0..],
                            rs: n,
                            cs: 1,
                        };
                        matmul(m, w, k, &mut c[j0..], n + 3, accumulate, av, bj, false);
                    }
                    check(&c, "column blocks");
                }
            }
        }
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
