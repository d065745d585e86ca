//! `report.html`: one self-contained page — inline CSS, inline SVG charts ([`crate::plot`]),
//! gallery PNGs as `data:` URIs, no script and no reference outside the file. A section whose
//! run is missing says so, so every section id is always present.

use std::fmt::Write;
use std::path::Path;

use base64::Engine;
use serde_json::Value;

use crate::eps::eps_label;
use crate::error::{io, Result};
use crate::plot::{self, Series};
use crate::report::{Findings, Run, Sources};
use crate::run::audit::duration;

/// The id of every section of the page, in order.
pub const SECTION_IDS: &[&str] = &[
    "summary",
    "robustness",
    "stages",
    "corruptions",
    "classes",
    "margins",
    "gallery",
    "metrics",
    "weak",
    "runs",
];

const STYLE: &str = "body{font-family:sans-serif;max-width:1200px;margin:0 auto;padding:0 16px;color:#222}\
h1{font-size:24px}h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}\
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}\
th{background:#f4f4f4}td.l,th.l{text-align:left}.headline{display:flex;flex-wrap:wrap;gap:12px}\
.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:150px}\
.card b{display:block;font-size:22px}.warn{color:#a40000}nav a{margin-right:10px}\
.charts{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}.charts svg{max-width:100%;height:auto}\
.gallery{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0;border:1px solid #ddd;padding:6px}\
figure img{width:96px;height:96px;image-rendering:pixelated}figcaption{font-size:12px;max-width:96px}\
.row{display:flex;gap:6px}.muted{color:#777}code{background:#f4f4f4;padding:0 3px}";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `82.0 %`, or `–` for a missing figure.
fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{:.1} %", 100.0 * v))
}

/// An SVG chart for inline use: the XML namespace is implied in HTML, so the page holds no URL.
fn inline_svg(svg: &str) -> String {
    let start = svg.find("<svg").unwrap_or(0);
    svg[start..].replace(r#" xmlns="http://www.w3.org/2000/svg""#, "")
}

fn missing(what: &str) -> String {
    format!("<p class=\"muted\">No {what} among the runs reported on.</p>")
}

/// Reads the run directories `dirs` and writes their page to `path`; returns the findings.
pub fn build(dirs: &[std::path::PathBuf], path: &Path) -> Result<Findings> {
    let s = Sources::read(dirs)?;
    let f = Findings::of(&s);
    write(&s, &f, path)?;
    Ok(f)
}

/// Writes the page to `path`.
pub fn write(s: &Sources, f: &Findings, path: &Path) -> Result<()> {
    let page = render(s, f);
    std::fs::write(path, page).map_err(io(path))
}

/// The page.
pub fn render(s: &Sources, f: &Findings) -> String {
    let mut h = String::new();
    let model = [
        &s.eval,
        &s.attack,
        &s.classwise,
        &s.margins,
        &s.metrics,
        &s.weak,
    ]
    .iter()
    .filter_map(|r| r.as_ref())
    .find_map(|r| r.json["model"]["path"].as_str().map(String::from))
    .unwrap_or_default();
    let data = [&s.eval, &s.attack, &s.classwise, &s.margins]
        .iter()
        .filter_map(|r| r.as_ref())
        .find_map(|r| r.json["data"]["path"].as_str().map(String::from))
        .unwrap_or_default();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>faultline report: {}</title><style>{STYLE}</style></head><body>\n",
        esc(&model)
    );
    let preset = s
        .audit
        .as_ref()
        .and_then(|a| a.json["preset"].as_str())
        .map_or(String::new(), |p| format!(", preset <b>{}</b>", esc(p)));
    let _ = write!(
        h,
        "<h1>faultline report</h1><p>model <code>{}</code>, data <code>{}</code>{}{preset}</p><nav>",
        esc(&model),
        esc(&data),
        f.samples.map_or(String::new(), |n| format!(", {n} samples"))
    );
    for id in SECTION_IDS {
        let _ = write!(h, "<a href=\"#{id}\">{id}</a>");
    }
    h.push_str("</nav>\n");
    summary(&mut h, f);
    robustness(&mut h, s, f);
    stages(&mut h, s);
    corruptions(&mut h, s);
    classes(&mut h, s);
    margins(&mut h, s, f);
    gallery(&mut h, s);
    metrics(&mut h, s);
    weak(&mut h, s);
    runs(&mut h, s);
    h.push_str("</body></html>\n");
    h
}

fn open(h: &mut String, id: &str, title: &str) {
    let _ = writeln!(h, "<section id=\"{id}\"><h2>{}</h2>", esc(title));
}

fn close(h: &mut String) {
    h.push_str("</section>\n");
}

fn summary(h: &mut String, f: &Findings) {
    open(h, "summary", "Summary");
    h.push_str("<div class=\"headline\">");
    let mut card = |label: &str, value: String| {
        let _ = write!(
            h,
            "<div class=\"card\">{}<b>{}</b></div>",
            esc(label),
            esc(&value)
        );
    };
    if f.clean_accuracy.is_some() {
        card("clean accuracy", pct(f.clean_accuracy));
    }
    for p in &f.robust {
        card(
            &format!("robust accuracy, ε = {}", p.label),
            pct(Some(p.robust_accuracy)),
        );
    }
    if let Some(r) = f.robust_after_escape {
        card("robust after the escape", pct(Some(r)));
    }
    if f.mean_corruption_accuracy.is_some() {
        card("mean corruption accuracy", pct(f.mean_corruption_accuracy));
    }
    if let Some(a) = f.threshold.as_ref().and_then(|t| t.auroc) {
        card("logit-margin AUROC", format!("{a:.3}"));
    }
    h.push_str("</div>\n");
    if let Some(a) = &f.attack {
        let _ = write!(h, "<p>Attack: {}.</p>", esc(a));
    }
    if !f.masking.is_empty() {
        h.push_str("<p class=\"warn\"><b>Gradient-masking warnings:</b></p><ul class=\"warn\">");
        for w in &f.masking {
            let _ = write!(h, "<li>{}</li>", esc(w));
        }
        h.push_str("</ul>");
    }
    h.push_str("<h3>Recommendations</h3>");
    if f.recommendations.is_empty() {
        h.push_str(&missing("finding to recommend from"));
    } else {
        h.push_str("<ol>");
        for r in &f.recommendations {
            let _ = write!(h, "<li>{}</li>", code_spans(&esc(r)));
        }
        h.push_str("</ol>");
    }
    if !f.weakest_classes.is_empty() {
        h.push_str("<h3>Most vulnerable classes</h3><table><tr><th class=\"l\">class</th><th>clean</th><th>under attack</th><th>under corruptions (mean)</th></tr>");
        for c in &f.weakest_classes {
            let _ = write!(
                h,
                "<tr><td class=\"l\">{}</td><td>{}</td><td>{}{}</td><td>{}</td></tr>",
                esc(&c.name),
                pct(c.clean_accuracy),
                pct(c.attack_accuracy),
                c.attack
                    .as_ref()
                    .map_or(String::new(), |a| format!(" ({})", esc(a))),
                pct(c.corruption_accuracy)
            );
        }
        h.push_str("</table>");
    }
    if !f.look_at.is_empty() {
        h.push_str("<h3>Samples to look at</h3><table><tr><th class=\"l\">why</th><th class=\"l\">data-set indices</th></tr>");
        for l in &f.look_at {
            let ids: Vec<String> = l.indices.iter().map(|i| i.to_string()).collect();
            let _ = write!(
                h,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td></tr>",
                esc(&l.why),
                ids.join(", ")
            );
        }
        h.push_str("</table>");
    }
    close(h);
}

/// Text between backticks as `<code>`.
fn code_spans(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in s.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

fn robustness(h: &mut String, s: &Sources, f: &Findings) {
    open(h, "robustness", "Robust accuracy against ε");
    let Some(a) = &s.attack else {
        h.push_str(&missing("attack run"));
        return close(h);
    };
    let mut pts = Vec::new();
    if let Some(c) = f.clean_accuracy.or(a.json["clean_accuracy"].as_f64()) {
        pts.push([0.0, c]);
    }
    pts.extend(f.robust.iter().map(|p| [p.eps as f64, p.robust_accuracy]));
    let chart = plot::xy_chart(
        &format!("robust accuracy, {}", f.attack.clone().unwrap_or_default()),
        &format!("ε ({})", a.json["norm"].as_str().unwrap_or("")),
        "accuracy",
        &[Series {
            name: "robust accuracy".into(),
            points: pts,
            line: true,
        }],
        None,
    );
    let _ = write!(h, "<div class=\"charts\">{}</div>", inline_svg(&chart));
    h.push_str("<table><tr><th>ε</th><th>robust accuracy</th><th>forward passes</th><th>backward passes</th></tr>");
    for p in a.json["results"]["curve"].as_array().into_iter().flatten() {
        let eps = p["eps"].as_f64().unwrap_or(0.0) as f32;
        let sum = |k: &str| -> Option<u64> {
            p["stages"]
                .as_array()
                .map(|st| st.iter().filter_map(|x| x[k].as_u64()).sum())
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            eps_label(eps),
            pct(p["robust_accuracy"].as_f64()),
            sum("forward").map_or("–".into(), |v| v.to_string()),
            sum("backward").map_or("–".into(), |v| v.to_string()),
        );
    }
    h.push_str("</table>");
    if let Some(sane) = a.json.get("sanity").filter(|v| !v.is_null()) {
        let g = &sane["gradients"];
        let _ =
            write!(
            h,
            "<p>Sanity checks: {} monotonicity violation(s); the unbounded attack left {} of {} \
             checked sample(s) robust; {} zero and {} non-finite gradient(s) among {} checked.</p>",
            sane["monotone"]["violations"].as_array().map_or(0, Vec::len),
            sane["unbounded"]["still_robust"].as_array().map_or(0, Vec::len),
            sane["unbounded"]["checked"].as_u64().unwrap_or(0),
            g["zero"].as_array().map_or(0, Vec::len),
            g["non_finite"].as_array().map_or(0, Vec::len),
            g["checked"].as_u64().unwrap_or(0),
        );
    }
    if let (Some(e), Some(b)) = (&s.escape, f.escape_broken) {
        let _ = write!(
            h,
            "<p>Escape ({}): {} sample(s) with a zero gradient attacked again, {b} broken.</p>",
            esc(&e.dir.display().to_string()),
            s.escape_records.len()
        );
    }
    close(h);
}

fn stages(h: &mut String, s: &Sources) {
    open(h, "stages", "Robust accuracy after each ensemble stage");
    let curve = s
        .attack
        .as_ref()
        .and_then(|a| a.json["results"]["curve"].as_array().cloned())
        .unwrap_or_default();
    let names: Vec<String> = curve
        .first()
        .and_then(|p| p["stages"].as_array())
        .map(|st| {
            st.iter()
                .map(|x| x["attack"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        h.push_str(&missing("ensemble attack run"));
        return close(h);
    }
    let series: Vec<(String, Vec<f64>)> = curve
        .iter()
        .map(|p| {
            (
                format!("ε = {}", eps_label(p["eps"].as_f64().unwrap_or(0.0) as f32)),
                p["stages"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|x| x["robust_accuracy"].as_f64().unwrap_or(0.0))
                    .collect(),
            )
        })
        .collect();
    let chart = plot::bars("robust accuracy after each stage", &names, &series);
    let _ = write!(h, "<div class=\"charts\">{}</div>", inline_svg(&chart));
    h.push_str("<table><tr><th>ε</th>");
    for n in &names {
        let _ = write!(h, "<th>{}</th>", esc(n));
    }
    h.push_str("</tr>");
    for p in &curve {
        let _ = write!(
            h,
            "<tr><td>{}</td>",
            eps_label(p["eps"].as_f64().unwrap_or(0.0) as f32)
        );
        for x in p["stages"].as_array().into_iter().flatten() {
            let _ = write!(h, "<td>{}</td>", pct(x["robust_accuracy"].as_f64()));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
    close(h);
}

fn corruptions(h: &mut String, s: &Sources) {
    open(h, "corruptions", "Corruptions × severity");
    let table = s
        .eval
        .as_ref()
        .and_then(|e| e.json["corruptions"]["table"].as_array().cloned())
        .unwrap_or_default();
    if table.is_empty() {
        h.push_str(&missing("corruption evaluation"));
        return close(h);
    }
    let mut fams: Vec<String> = Vec::new();
    let mut sevs: Vec<u64> = Vec::new();
    for r in &table {
        let f = r["corruption"].as_str().unwrap_or("?").to_string();
        if !fams.contains(&f) {
            fams.push(f);
        }
        let sv = r["severity"].as_u64().unwrap_or(0);
        if !sevs.contains(&sv) {
            sevs.push(sv);
        }
    }
    sevs.sort_unstable();
    let acc = |f: &str, sv: u64| {
        table
            .iter()
            .find(|r| r["corruption"] == f && r["severity"].as_u64() == Some(sv))
            .and_then(|r| r["accuracy"].as_f64())
    };
    let err: Vec<Vec<f64>> = fams
        .iter()
        .map(|f| {
            sevs.iter()
                .map(|&sv| acc(f, sv).map_or(0.0, |a| 1.0 - a))
                .collect()
        })
        .collect();
    let text: Vec<Vec<String>> = fams
        .iter()
        .map(|f| {
            sevs.iter()
                .map(|&sv| acc(f, sv).map_or(String::new(), |a| format!("{:.0}", 100.0 * a)))
                .collect()
        })
        .collect();
    let cols: Vec<String> = sevs.iter().map(|s| format!("s{s}")).collect();
    let chart = plot::heatmap_text(
        "accuracy % under each corruption (colour: error rate)",
        &err,
        Some(&text),
        &fams,
        &cols,
        "corruption",
        "severity",
        true,
    );
    let _ = write!(h, "<div class=\"charts\">{}</div>", inline_svg(&chart));
    if let Some(e) = &s.eval {
        let _ = write!(
            h,
            "<p>Clean accuracy {}, mean accuracy over the corruptions {}.</p>",
            pct(e.json["clean_accuracy"].as_f64()),
            pct(e.json["mean_corruption_accuracy"].as_f64())
        );
    }
    close(h);
}

fn classes(h: &mut String, s: &Sources) {
    open(
        h,
        "classes",
        "Per class: accuracy, CFPS, targeted reachability",
    );
    let Some(c) = &s.classwise else {
        h.push_str(&missing("classwise run"));
        return close(h);
    };
    let names = s.class_names();
    // Accuracy per class (columns) under clean, each attack radius and each corruption family.
    let mut rows: Vec<String> = Vec::new();
    let mut m: Vec<Vec<f64>> = Vec::new();
    let mut text: Vec<Vec<String>> = Vec::new();
    let conds = c.json["classwise"].as_array().into_iter().flatten();
    let fams = c.json["corruption_families"]
        .as_array()
        .into_iter()
        .flatten();
    for r in conds
        .filter(|r| !r["condition"].as_str().unwrap_or("").contains(" s"))
        .chain(fams)
    {
        let acc: Vec<Option<f64>> = r["class_accuracy"]
            .as_array()
            .into_iter()
            .flatten()
            .map(Value::as_f64)
            .collect();
        rows.push(r["condition"].as_str().unwrap_or("?").to_string());
        m.push(acc.iter().map(|a| a.map_or(0.0, |a| 1.0 - a)).collect());
        text.push(
            acc.iter()
                .map(|a| a.map_or(String::new(), |a| format!("{:.0}", 100.0 * a)))
                .collect(),
        );
    }
    if !rows.is_empty() {
        let chart = plot::heatmap_text(
            "accuracy % per class (colour: error rate)",
            &m,
            Some(&text),
            &rows,
            &names,
            "condition",
            "class",
            names.len() <= 12,
        );
        let _ = write!(h, "<div class=\"charts\">{}</div>", inline_svg(&chart));
    }
    h.push_str("<div class=\"charts\">");
    for file in ["cfps.svg", "targeted.svg"] {
        if let Some(svg) = c.file(file) {
            h.push_str(&inline_svg(&svg));
        }
    }
    h.push_str("</div>");
    let targeted = c.json["targeted"].as_array().cloned().unwrap_or_default();
    if !targeted.is_empty() {
        h.push_str("<table><tr><th class=\"l\">target class</th><th>attacked</th><th>targeted success</th></tr>");
        for t in &targeted {
            let k = t["target"].as_u64().unwrap_or(0) as usize;
            let _ = write!(
                h,
                "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(names.get(k).map_or("?", String::as_str)),
                t["attacked"].as_u64().unwrap_or(0),
                pct(t["success_rate"].as_f64())
            );
        }
        h.push_str("</table>");
    }
    close(h);
}

fn margins(h: &mut String, s: &Sources, f: &Findings) {
    open(
        h,
        "margins",
        "Margins: brittle inputs and a deployable threshold",
    );
    let Some(m) = &s.margins else {
        h.push_str(&missing("margins run"));
        return close(h);
    };
    h.push_str("<div class=\"charts\">");
    for file in ["margins_scatter.svg", "roc.svg"] {
        if let Some(svg) = m.file(file) {
            h.push_str(&inline_svg(&svg));
        }
    }
    h.push_str("</div>");
    if let Some(t) = &f.threshold {
        let _ = write!(
            h,
            "<table><tr><th class=\"l\">flag when logit margin ≤</th><th>attacked</th>\
             <th>non-robust ({} {})</th><th>flagged</th><th>caught</th><th>precision</th><th>recall</th>\
             <th>AUROC</th><th>Kendall τ</th></tr><tr><td class=\"l\">{:.4}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
            esc(&t.norm),
            eps_label(t.eps),
            t.flag_below,
            t.samples,
            t.non_robust,
            t.flagged,
            t.caught,
            pct(t.precision),
            pct(t.recall),
            t.auroc.map_or("–".into(), |v| format!("{v:.3}")),
            t.kendall_tau.map_or("–".into(), |v| format!("{v:.3}")),
        );
    }
    close(h);
}

fn gallery(h: &mut String, s: &Sources) {
    open(h, "gallery", "Gallery: clean, adversarial and corrupted");
    let items: Vec<Value> = s
        .gallery
        .as_ref()
        .and_then(|g| std::fs::read_to_string(g.join("gallery.json")).ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let (Some(dir), false) = (&s.gallery, items.is_empty()) else {
        h.push_str(&missing("gallery (an audit writes one) or broken sample"));
        return close(h);
    };
    let img = |file: &str| -> Option<String> {
        let bytes = std::fs::read(dir.join(file)).ok()?;
        Some(format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ))
    };
    let names = s.class_names();
    let name = |c: &Value| {
        let k = c.as_u64().unwrap_or(0) as usize;
        esc(names.get(k).map_or("?", String::as_str))
    };
    h.push_str("<div class=\"gallery\">");
    for it in &items {
        let _ = write!(
            h,
            "<div><p>sample {} ({})</p><div class=\"row\">",
            it["index"],
            name(&it["label"])
        );
        let mut fig = |file: &Value, caption: String| {
            if let Some(src) = file.as_str().and_then(img) {
                let _ = write!(
                    h,
                    "<figure><img src=\"{src}\" alt=\"{caption}\"><figcaption>{caption}</figcaption></figure>"
                );
            }
        };
        fig(
            &it["clean"],
            format!("clean → {}", name(&it["clean_prediction"])),
        );
        for key in ["adversarial", "corrupted"] {
            let x = &it[key];
            if !x.is_null() {
                fig(
                    &x["file"],
                    format!(
                        "{} → {}",
                        esc(x["condition"].as_str().unwrap_or("")),
                        name(&x["prediction"])
                    ),
                );
            }
        }
        h.push_str("</div></div>");
    }
    h.push_str("</div>");
    close(h);
}

fn metrics(h: &mut String, s: &Sources) {
    open(h, "metrics", "Metric suite");
    let Some(m) = &s.metrics else {
        h.push_str(&missing("metrics run (standard and thorough presets)"));
        return close(h);
    };
    h.push_str("<table><tr><th class=\"l\">metric</th><th>value</th></tr>");
    for (k, v) in m.json["metrics"].as_object().into_iter().flatten() {
        let val = v.as_f64().or(v["mean"].as_f64());
        let shown = match val {
            Some(x) => format!("{x:.4}"),
            None => m.json["notes"][k]
                .as_str()
                .map_or("–".into(), |n| format!("– ({})", esc(n))),
        };
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td>{shown}</td></tr>",
            esc(k)
        );
    }
    h.push_str("</table>");
    close(h);
}

fn weak(h: &mut String, s: &Sources) {
    open(h, "weak", "Weak-robust training samples");
    let Some(w) = &s.weak else {
        h.push_str(&missing("weak run (audit --train)"));
        return close(h);
    };
    let j = &w.json;
    let _ = write!(
        h,
        "<p>Weak set: {} of {} clean-correct training samples ({}).</p>",
        j["weak_count"].as_u64().unwrap_or(0),
        j["scored"].as_u64().unwrap_or(0),
        pct(j["weak_fraction"].as_f64())
    );
    h.push_str("<table><tr><th class=\"l\">perturbation</th><th>weak set</th><th>random subset</th><th>test</th></tr>");
    for c in j["weak_vs_random"].as_array().into_iter().flatten() {
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(c["perturbation"].as_str().unwrap_or("?")),
            pct(c["weak"].as_f64()),
            pct(c["random"].as_f64()),
            pct(c["test"].as_f64())
        );
    }
    h.push_str("</table>");
    close(h);
}

fn runs(h: &mut String, s: &Sources) {
    open(h, "runs", "Runs and cost");
    h.push_str("<table><tr><th class=\"l\">run</th><th class=\"l\">command</th><th>seconds</th><th>forward passes</th><th>backward passes</th></tr>");
    let all: [&Option<Run>; 7] = [
        &s.eval,
        &s.attack,
        &s.escape,
        &s.classwise,
        &s.margins,
        &s.metrics,
        &s.weak,
    ];
    for r in all.iter().filter_map(|r| r.as_ref()) {
        let rt = &r.json["runtime"];
        let num = |v: &Value| v.as_u64().map_or("–".into(), |x| x.to_string());
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.dir.display().to_string()),
            esc(r.command()),
            rt["seconds"]
                .as_f64()
                .or(r.json["seconds"].as_f64())
                .map_or("–".into(), |x| format!("{x:.1}")),
            num(&rt["forward_passes"]),
            num(&rt["backward_passes"]),
        );
    }
    h.push_str("</table>");
    if let Some(a) = &s.audit {
        let e = &a.json["estimate"];
        if let Some(secs) = e["seconds"].as_f64() {
            let _ = write!(
                h,
                "<p>Estimated before the run (upper bound): {} ({} forward, {} forward + gradient \
                 passes); the audit took {}.</p>",
                duration(secs),
                e["forward"].as_u64().unwrap_or(0),
                e["backward"].as_u64().unwrap_or(0),
                a.json["seconds"].as_f64().map_or("–".into(), duration)
            );
        }
    }
    close(h);
}
