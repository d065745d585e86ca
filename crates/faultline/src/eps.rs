//! Radii as people write them: parsing `8/255` or `0.03`, and printing them back the same way.

use crate::error::{setting, Result};

/// A radius as people write it: a short decimal (`0.5`, `0.2`) when it has one, else a
/// fraction of 255 (`8/255`) when it is one, else the decimal.
pub fn eps_label(e: f32) -> String {
    let s = format!("{e}");
    let k = e * 255.0;
    if s.len() > 6 && (k - k.round()).abs() < 1e-4 && k.round() > 0.0 {
        format!("{}/255", k.round())
    } else {
        s
    }
}

/// Parses a radius: a decimal (`0.031`) or a fraction (`8/255`).
pub fn parse_eps(s: &str) -> Result<f32> {
    parse_fraction("--eps", s)
}

/// Parses a non-negative decimal or fraction given with `flag` (errors name the flag).
pub fn parse_fraction(flag: &'static str, s: &str) -> Result<f32> {
    let bad = || {
        setting(
            flag,
            format!("'{s}': use a number such as 0.03 or a fraction such as 8/255"),
        )
    };
    let v = match s.trim().split_once('/') {
        Some((a, b)) => {
            let (a, b): (f64, f64) = (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            );
            if b == 0.0 {
                return Err(bad());
            }
            a / b
        }
        None => s.trim().parse::<f64>().map_err(|_| bad())?,
    };
    if !(v.is_finite() && v >= 0.0) {
        return Err(bad());
    }
    Ok(v as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eps_accepts_fractions() {
        assert_eq!(parse_eps("8/255").unwrap(), 8.0 / 255.0);
        assert_eq!(parse_eps("0.5").unwrap(), 0.5);
        assert!(parse_eps("1/0").is_err());
        assert!(parse_eps("-1").is_err());
        assert!(parse_eps("abc").unwrap_err().to_string().contains("8/255"));
        assert_eq!(eps_label(parse_eps("8/255").unwrap()), "8/255");
        assert_eq!(eps_label(0.2), "0.2");
        assert_eq!(eps_label(0.5), "0.5");
        assert_eq!(eps_label(0.0123456), "0.0123456");
    }
}
