//! The audit's report page in headless Chromium (Debian's `chromium`): it loads without console
//! errors, every section is in the rendered DOM, and the screenshot is kept beside the page
//! (`target/tmp/report-browser/audit/report.png`, a CI artifact). Skipped with a printed reason
//! when no Chromium is installed, unless `FAULTLINE_BROWSER_CHECKS=required` (CI), which makes a
//! missing browser a failure.

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

use util::{run, shared, stderr};

/// Every section of the page, as the library lists them.
const PAGE_IDS: &[&str] = faultline::report::html::SECTION_IDS;

/// The Chromium binary on PATH, if any.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

fn headless(browser: &Path, extra: &[&str], page: &Path) -> std::process::Output {
    Command::new(browser)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--disable-dev-shm-usage",
        ])
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs")
}

#[test]
fn report_page_renders_in_headless_chromium() {
    let Some(browser) = chromium() else {
        let required = std::env::var("FAULTLINE_BROWSER_CHECKS").as_deref() == Ok("required");
        assert!(
            !required,
            "FAULTLINE_BROWSER_CHECKS=required but no chromium on PATH (apt-get install chromium)"
        );
        eprintln!("skipped: no chromium on PATH (apt-get install chromium to run this check)");
        return;
    };
    // A directory that outlives the test, so the screenshot stays as an artifact.
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-browser");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let model = shared("models/mnist/mnist-lenet5-clean.onnx");
    let data = shared("data/mnist");
    let o = run(
        &root,
        &[
            "audit",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--limit",
            "20",
            "--batch-size",
            "20",
            "--threads",
            "2",
            "-o",
            "audit",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = root.join("audit").canonicalize().unwrap();
    let page = dir.join("report.html");
    let shot = dir.join("report.png");

    let o = headless(
        &browser,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,4000",
            "--hide-scrollbars",
        ],
        &page,
    );
    assert!(
        o.status.success(),
        "chromium --screenshot failed: {}",
        stderr(&o)
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );

    let o = headless(
        &browser,
        &["--enable-logging=stderr", "--v=0", "--dump-dom"],
        &page,
    );
    assert!(
        o.status.success(),
        "chromium --dump-dom failed: {}",
        stderr(&o)
    );
    let dom = String::from_utf8_lossy(&o.stdout);
    for id in PAGE_IDS {
        assert!(
            dom.contains(&format!("id=\"{id}\"")),
            "section {id} missing from the DOM"
        );
    }
    assert!(dom.contains("<svg") && dom.contains("data:image/png;base64,"));
    // Page problems Chromium logs: console messages (there is no script, so any is an error),
    // uncaught exceptions and resources that failed to load.
    let log = stderr(&o);
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("CONSOLE") || l.contains("Uncaught") || l.contains("Failed to load resource")
        })
        .collect();
    assert!(bad.is_empty(), "console errors:\n{}", bad.join("\n"));
}
