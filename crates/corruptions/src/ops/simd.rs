//! Runtime-dispatched vector loops. The same Rust code is compiled twice, once for the baseline
//! target and once with AVX2 enabled; Rust never fuses `a * b + c` into an FMA, so both versions
//! round identically and results do not depend on the CPU.

#[inline(always)]
fn axpy_generic(out: &mut [f64], a: f64, x: &[f64]) {
    for (o, v) in out.iter_mut().zip(x) {
        *o += a * v;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn axpy_avx2(out: &mut [f64], a: f64, x: &[f64]) {
    axpy_generic(out, a, x)
}

/// `out[i] += a · x[i]` for `i < min(out.len(), x.len())`.
#[inline]
pub fn axpy(out: &mut [f64], a: f64, x: &[f64]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { axpy_avx2(out, a, x) };
            return;
        }
    }
    axpy_generic(out, a, x)
}
