//! Small self-contained SVG charts: heatmaps, grouped bars, labelled scatter plots and x–y
//! charts with axes (point clouds and curves).
//! Written directly rather than with `plotters`, whose text layout needs a system font backend
//! (font-kit); these three chart kinds only need rectangles, circles and `<text>`.

use std::fmt::Write;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// White → dark red for t in [0, 1].
fn heat(t: f64) -> String {
    let t = t.clamp(0.0, 1.0);
    let r = 255.0 - 75.0 * t;
    let g = 255.0 - 235.0 * t;
    let b = 255.0 - 225.0 * t;
    format!("rgb({},{},{})", r as u8, g as u8, b as u8)
}

const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// A heatmap of `m` (rows × cols) with row and column labels; cells show their value when
/// `annotate` (formatted with `fmt`). Colour is scaled to the largest value.
pub fn heatmap(
    title: &str,
    m: &[Vec<f64>],
    rows: &[String],
    cols: &[String],
    row_axis: &str,
    col_axis: &str,
    annotate: bool,
) -> String {
    heatmap_text(title, m, None, rows, cols, row_axis, col_axis, annotate)
}

/// Approximate width in pixels of `s` at font size 11 (sans-serif averages about 6.2 px per
/// character), so labels get the room they need instead of a fixed margin.
fn text_width(s: &str) -> f64 {
    6.2 * s.chars().count() as f64
}

/// [`heatmap`] with the text of each annotated cell given (e.g. a share and the count behind
/// it); `None` prints the value.
#[allow(clippy::too_many_arguments)]
pub fn heatmap_text(
    title: &str,
    m: &[Vec<f64>],
    text: Option<&[Vec<String>]>,
    rows: &[String],
    cols: &[String],
    row_axis: &str,
    col_axis: &str,
    annotate: bool,
) -> String {
    let cell = if cols.len() > 20 { 14.0 } else { 40.0 };
    // Room for the longest row label, the rotated column labels and the axis names.
    let left = 30.0 + rows.iter().map(|r| text_width(r)).fold(60.0, f64::max);
    let bottom = 40.0 + 0.71 * cols.iter().map(|c| text_width(c)).fold(40.0, f64::max);
    let top = 60.0;
    let w = (left + cell * cols.len() as f64 + 20.0).max(text_width(title) * 1.3 + 20.0);
    let h = top + cell * rows.len() as f64 + bottom;
    let max = m
        .iter()
        .flatten()
        .copied()
        .fold(0.0f64, f64::max)
        .max(1e-300);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="20" font-size="14" text-anchor="middle">{}</text>"#,
        w / 2.0,
        esc(title)
    );
    for (i, row) in m.iter().enumerate() {
        let y = top + cell * i as f64;
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 4.0,
            y + cell * 0.6,
            esc(&rows[i])
        );
        for (j, &v) in row.iter().enumerate() {
            let x = left + cell * j as f64;
            let _ = write!(
                s,
                r##"<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{}" stroke="#ddd"><title>{} → {}: {v}</title></rect>"##,
                heat(v / max),
                esc(&rows[i]),
                esc(&cols[j])
            );
            if annotate && cell >= 30.0 {
                let txt = match text {
                    Some(t) => t[i][j].clone(),
                    None if v.fract() == 0.0 => format!("{v:.0}"),
                    None => format!("{v:.2}"),
                };
                let color = if v / max > 0.6 { "white" } else { "black" };
                let _ = write!(
                    s,
                    r#"<text x="{}" y="{}" text-anchor="middle" fill="{color}" font-size="10">{}</text>"#,
                    x + cell / 2.0,
                    y + cell * 0.6,
                    esc(&txt)
                );
            }
        }
    }
    let yb = top + cell * rows.len() as f64;
    for (j, c) in cols.iter().enumerate() {
        let x = left + cell * j as f64 + cell / 2.0;
        let _ = write!(
            s,
            r#"<text x="{x}" y="{}" text-anchor="end" transform="rotate(-45 {x} {})">{}</text>"#,
            yb + 12.0,
            yb + 12.0,
            esc(c)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        left + cell * cols.len() as f64 / 2.0,
        h - 8.0,
        esc(col_axis)
    );
    let _ = write!(
        s,
        r#"<text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle">{}</text>"#,
        top + yb / 2.0 - top / 2.0,
        top + yb / 2.0 - top / 2.0,
        esc(row_axis)
    );
    s.push_str("</svg>\n");
    s
}

/// Grouped vertical bars: one group per category, one bar per series, values in [0, 1].
pub fn bars(title: &str, categories: &[String], series: &[(String, Vec<f64>)]) -> String {
    let (left, top, ph) = (50.0, 50.0, 220.0);
    let gw = 14.0 * series.len().max(1) as f64 + 10.0;
    let w = left + gw * categories.len() as f64 + 160.0;
    let h = top + ph + 90.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="20" font-size="14" text-anchor="middle">{}</text>"#,
        w / 2.0,
        esc(title)
    );
    for t in 0..=4 {
        let v = t as f64 / 4.0;
        let y = top + ph * (1.0 - v);
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{y}" y2="{y}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{v:.2}</text>"##,
            w - 160.0,
            left - 4.0,
            y + 4.0
        );
    }
    for (ci, c) in categories.iter().enumerate() {
        let gx = left + gw * ci as f64 + 5.0;
        for (si, (name, vals)) in series.iter().enumerate() {
            let v = vals.get(ci).copied().unwrap_or(0.0).clamp(0.0, 1.0);
            let x = gx + 14.0 * si as f64;
            let _ = write!(
                s,
                r#"<rect x="{x}" y="{}" width="12" height="{}" fill="{}"><title>{}: {} = {v:.4}</title></rect>"#,
                top + ph * (1.0 - v),
                ph * v,
                PALETTE[si % 10],
                esc(c),
                esc(name)
            );
        }
        let x = gx + gw / 2.0 - 5.0;
        let _ = write!(
            s,
            r#"<text x="{x}" y="{}" text-anchor="end" transform="rotate(-45 {x} {})">{}</text>"#,
            top + ph + 12.0,
            top + ph + 12.0,
            esc(c)
        );
    }
    for (si, (name, _)) in series.iter().enumerate() {
        let y = top + 16.0 * si as f64;
        let _ = write!(
            s,
            r#"<rect x="{}" y="{y}" width="10" height="10" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            w - 150.0,
            PALETTE[si % 10],
            w - 136.0,
            y + 9.0,
            esc(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A scatter plot of labelled points coloured by group (`group[i]` indexes `names`).
pub fn scatter(
    title: &str,
    points: &[[f64; 2]],
    group: &[usize],
    names: &[String],
    labels: &[Option<String>],
) -> String {
    let (w, h, m) = (560.0, 460.0, 50.0);
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for p in points {
        x0 = x0.min(p[0]);
        x1 = x1.max(p[0]);
        y0 = y0.min(p[1]);
        y1 = y1.max(p[1]);
    }
    let (sx, sy) = ((x1 - x0).max(1e-12), (y1 - y0).max(1e-12));
    let px = |p: &[f64; 2]| {
        (
            m + (p[0] - x0) / sx * (w - 2.0 * m - 100.0),
            h - m - (p[1] - y0) / sy * (h - 2.0 * m),
        )
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="20" font-size="14" text-anchor="middle">{}</text>"#,
        w / 2.0,
        esc(title)
    );
    for (i, p) in points.iter().enumerate() {
        let (x, y) = px(p);
        let g = group.get(i).copied().unwrap_or(0);
        let r = if labels.get(i).is_some_and(|l| l.is_some()) {
            7.0
        } else {
            2.0
        };
        let _ = write!(
            s,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="{r}" fill="{}" fill-opacity="0.8"/>"#,
            PALETTE[g % 10]
        );
        if let Some(Some(l)) = labels.get(i) {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                x + 9.0,
                y + 4.0,
                esc(l)
            );
        }
    }
    for (gi, n) in names.iter().enumerate() {
        let y = m + 16.0 * gi as f64;
        let _ = write!(
            s,
            r#"<circle cx="{}" cy="{}" r="5" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            w - 130.0,
            y,
            PALETTE[gi % 10],
            w - 120.0,
            y + 4.0,
            esc(n)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// One series of an [`xy_chart`].
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// Points `[x, y]`; non-finite points are skipped.
    pub points: Vec<[f64; 2]>,
    /// Joined by a line (a curve) rather than drawn as dots.
    pub line: bool,
}

/// "Nice" tick values covering `[lo, hi]` (about five).
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    // Multiples of the step, rounded to its precision so labels read 0.6 rather than 0.6000…01.
    let digits = (-(step.log10().floor()) + 2.0).clamp(0.0, 15.0) as i32;
    let round = |v: f64| {
        let m = 10f64.powi(digits);
        (v * m).round() / m
    };
    (first..=last).map(|i| round(i as f64 * step)).collect()
}

/// An x–y chart with axes, ticks, axis labels and a legend: dots for point series, polylines for
/// curves. `bounds` fixes `[x0, x1, y0, y1]` (e.g. the unit square of a ROC curve); otherwise
/// the data's range is used.
pub fn xy_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    bounds: Option<[f64; 4]>,
) -> String {
    let (w, h, ml, mr, mt, mb) = (620.0, 460.0, 64.0, 170.0, 36.0, 48.0);
    let [x0, x1, y0, y1] = bounds.unwrap_or_else(|| {
        let mut b = [
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        for p in series.iter().flat_map(|s| &s.points) {
            if p[0].is_finite() && p[1].is_finite() {
                b = [
                    b[0].min(p[0]),
                    b[1].max(p[0]),
                    b[2].min(p[1]),
                    b[3].max(p[1]),
                ];
            }
        }
        if !b[0].is_finite() {
            return [0.0, 1.0, 0.0, 1.0];
        }
        let (px, py) = (
            0.03 * (b[1] - b[0]).max(1e-9),
            0.03 * (b[3] - b[2]).max(1e-9),
        );
        [b[0] - px, b[1] + px, b[2] - py, b[3] + py]
    });
    let (pw, ph) = (w - ml - mr, h - mt - mb);
    let sx = |x: f64| ml + (x - x0) / (x1 - x0).max(1e-300) * pw;
    let sy = |y: f64| mt + ph - (y - y0) / (y1 - y0).max(1e-300) * ph;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="20" font-size="14" text-anchor="middle">{}</text>"#,
        ml + pw / 2.0,
        esc(title)
    );
    let _ = write!(
        s,
        r##"<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##
    );
    for t in ticks(x0, x1) {
        let x = sx(t);
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#444"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            mt + ph,
            mt + ph + 4.0,
            mt + ph + 16.0,
            fmt_tick(t)
        );
    }
    for t in ticks(y0, y1) {
        let y = sy(t);
        let _ = write!(
            s,
            r##"<line x1="{}" y1="{y:.1}" x2="{ml}" y2="{y:.1}" stroke="#444"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            ml - 4.0,
            ml - 6.0,
            y + 4.0,
            fmt_tick(t)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        ml + pw / 2.0,
        h - 10.0,
        esc(x_label)
    );
    let _ = write!(
        s,
        r#"<text transform="translate(16,{}) rotate(-90)" text-anchor="middle">{}</text>"#,
        mt + ph / 2.0,
        esc(y_label)
    );
    let inside = |p: &[f64; 2]| {
        p[0].is_finite() && p[1].is_finite() && p[0] >= x0 && p[0] <= x1 && p[1] >= y0 && p[1] <= y1
    };
    for (si, ser) in series.iter().enumerate() {
        let c = PALETTE[si % 10];
        if ser.line {
            let pts: Vec<String> = ser
                .points
                .iter()
                .filter(|p| inside(p))
                .map(|p| format!("{:.1},{:.1}", sx(p[0]), sy(p[1])))
                .collect();
            let _ = write!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="1.6"/>"#,
                pts.join(" ")
            );
        } else {
            for p in ser.points.iter().filter(|p| inside(p)) {
                let _ = write!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="1.8" fill="{c}" fill-opacity="0.6"/>"#,
                    sx(p[0]),
                    sy(p[1])
                );
            }
        }
        let ly = mt + 8.0 + 16.0 * si as f64;
        let _ = write!(
            s,
            r#"<rect x="{}" y="{}" width="10" height="10" fill="{c}"/><text x="{}" y="{}">{}</text>"#,
            w - mr + 12.0,
            ly - 8.0,
            w - mr + 26.0,
            ly + 1.0,
            esc(&ser.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// ROC curves (false- against true-positive rate) with the chance diagonal. The axes run
/// slightly past [0, 1] so that a perfect detector's curve, which follows the left and top
/// edges, is drawn inside the frame instead of hidden by it.
pub fn roc_chart(title: &str, mut curves: Vec<Series>) -> String {
    curves.push(Series {
        name: "chance".into(),
        points: vec![[0.0, 0.0], [1.0, 1.0]],
        line: true,
    });
    xy_chart(
        title,
        "false-positive rate",
        "true-positive rate",
        &curves,
        Some([-0.02, 1.02, -0.02, 1.02]),
    )
}

fn fmt_tick(t: f64) -> String {
    let a = t.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e4).contains(&a) {
        format!("{t:.1e}")
    } else {
        let s = format!("{t:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_well_formed_svg_with_escaped_labels() {
        let names = vec!["a<b".to_string(), "c".to_string()];
        let h = heatmap(
            "t",
            &[vec![1.0, 2.0], vec![0.0, 3.0]],
            &names,
            &names,
            "true",
            "pred",
            true,
        );
        assert!(h.starts_with("<svg") && h.trim_end().ends_with("</svg>"));
        assert!(h.contains("a&lt;b") && !h.contains("a<b"));
        assert_eq!(h.matches("<rect").count(), 4);
        let b = bars(
            "t",
            &names,
            &[
                ("clean".into(), vec![0.5, 1.0]),
                ("pgd".into(), vec![0.1, 0.2]),
            ],
        );
        assert_eq!(b.matches("<title>").count(), 4);
        let sc = scatter(
            "t",
            &[[0.0, 0.0], [1.0, 1.0]],
            &[0, 1],
            &names,
            &[Some("x".into()), None],
        );
        assert_eq!(sc.matches("<circle").count(), 4);
        let xy = xy_chart(
            "roc <1>",
            "fpr",
            "tpr",
            &[
                Series {
                    name: "a".into(),
                    points: vec![[0.0, 0.0], [0.5, 0.9], [1.0, 1.0]],
                    line: true,
                },
                Series {
                    name: "b".into(),
                    points: vec![[0.2, 0.3], [f64::NAN, 1.0], [2.0, 0.5]],
                    line: false,
                },
            ],
            Some([0.0, 1.0, 0.0, 1.0]),
        );
        assert!(xy.contains("roc &lt;1&gt;") && xy.trim_end().ends_with("</svg>"));
        // One dot inside the bounds (the NaN and the out-of-range point are skipped).
        assert_eq!(xy.matches("<circle").count(), 1);
        assert_eq!(xy.matches("<polyline").count(), 1);
        assert_eq!(ticks(0.0, 1.0), vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
    }

    /// Long row labels get the room they need (the CFPS map clipped "gaussian_noise s5 …").
    #[test]
    fn heatmap_rows_have_room_for_their_labels() {
        let rows = vec!["gaussian_noise, all severities (1234 errors)".to_string()];
        let cols = vec!["airplane".to_string(), "automobile".to_string()];
        let h = heatmap_text(
            "t",
            &[vec![0.25, 0.75]],
            Some(&[vec!["1".into(), "3".into()]]),
            &rows,
            &cols,
            "perturbation",
            "class",
            true,
        );
        let x: f64 = h
            .split(r#"<text x=""#)
            .find_map(|t| {
                t.contains(r#"text-anchor="end">gaussian_noise"#)
                    .then(|| t.split('"').next().unwrap().parse().unwrap())
            })
            .unwrap();
        assert!(
            x - text_width(&rows[0]) >= 20.0,
            "label starts at {}",
            x - text_width(&rows[0])
        );
        // The given cell texts replace the values.
        assert!(h.contains(">3</text>") && !h.contains(">0.75</text>"));
    }

    /// A perfect detector's ROC curve runs along the left and top edges of the unit square; it
    /// must be drawn inside the frame, not on it (roc.svg looked empty).
    #[test]
    fn a_perfect_roc_curve_is_drawn_inside_the_frame() {
        let svg = roc_chart(
            "t",
            vec![Series {
                name: "perfect".into(),
                points: vec![[0.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
                line: true,
            }],
        );
        let frame: Vec<f64> = svg
            .split(r#"<rect x=""#)
            .nth(1)
            .unwrap()
            .split('"')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .take(4)
            .map(|(_, v)| v.parse().unwrap())
            .collect();
        let (x0, y0) = (frame[0], frame[1]);
        let (x1, y1) = (x0 + frame[2], y0 + frame[3]);
        let curve = svg.split(r#"<polyline points=""#).nth(1).unwrap();
        let pts: Vec<(f64, f64)> = curve
            .split('"')
            .next()
            .unwrap()
            .split(' ')
            .map(|p| {
                let (a, b) = p.split_once(',').unwrap();
                (a.parse().unwrap(), b.parse().unwrap())
            })
            .collect();
        assert_eq!(pts.len(), 3);
        for (x, y) in pts {
            assert!(
                x > x0 + 2.0 && x < x1 - 2.0 && y > y0 + 2.0 && y < y1 - 2.0,
                "{x},{y}"
            );
        }
        assert_eq!(svg.matches("<polyline").count(), 2, "curve and chance line");
    }
}
