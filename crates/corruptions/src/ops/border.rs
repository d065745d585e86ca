//! Out-of-range index handling of the border modes the reference libraries use.

/// Border modes, named after their SciPy / OpenCV meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Border {
    /// Repeat the edge value: `a a | a b c d | d d` (SciPy `nearest`, OpenCV `BORDER_REPLICATE`).
    Nearest,
    /// Half-sample symmetric: `b a | a b c d | d c` (SciPy `reflect`, OpenCV `BORDER_REFLECT`).
    Reflect,
    /// Whole-sample symmetric: `c b | a b c d | c b` (OpenCV `BORDER_REFLECT_101`, SciPy `mirror`).
    Reflect101,
}

impl Border {
    /// Maps any integer index onto `0..n` (`n ≥ 1`).
    #[inline]
    pub fn index(self, i: isize, n: usize) -> usize {
        let n = n as isize;
        if (0..n).contains(&i) {
            return i as usize;
        }
        match self {
            Border::Nearest => i.clamp(0, n - 1) as usize,
            Border::Reflect => {
                let period = 2 * n;
                let m = i.rem_euclid(period);
                (if m < n { m } else { period - 1 - m }) as usize
            }
            Border::Reflect101 => {
                if n == 1 {
                    return 0;
                }
                let period = 2 * n - 2;
                let m = i.rem_euclid(period);
                (if m < n { m } else { period - m }) as usize
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn border_modes() {
        let r: Vec<usize> = (-3..7).map(|i| Border::Reflect.index(i, 4)).collect();
        assert_eq!(r, [2, 1, 0, 0, 1, 2, 3, 3, 2, 1]);
        let r: Vec<usize> = (-3..7).map(|i| Border::Reflect101.index(i, 4)).collect();
        assert_eq!(r, [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
        let r: Vec<usize> = (-2..6).map(|i| Border::Nearest.index(i, 4)).collect();
        assert_eq!(r, [0, 0, 0, 1, 2, 3, 3, 3]);
        assert_eq!(Border::Reflect101.index(-5, 1), 0);
    }
}
