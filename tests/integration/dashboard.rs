//! The dashboard in a real browser: `passage demo` runs, headless Chromium (Playwright,
//! tests/browser/dashboard.mjs) loads the venue page, waits for every chart to show data,
//! changes the time range, downloads the CSV and Parquet exports, and takes screenshots
//! (kept under the target directory, path printed).
//!
//! Needs Chromium and the pinned playwright-core (`scripts/browser-deps`, which
//! `scripts/test` runs). Without them the test says so and passes, unless
//! PASSAGE_REQUIRE_BROWSER=1 (set by `scripts/test`), which makes their absence a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) fn browser_ready(root: &Path) -> Result<(), String> {
    if !Path::new("/usr/bin/chromium").exists() {
        return Err("/usr/bin/chromium is missing (scripts/browser-deps installs it)".into());
    }
    if !root.join("tests/browser/node_modules/playwright-core").exists() {
        return Err("tests/browser/node_modules is missing (scripts/browser-deps installs it)".into());
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Err("node is not installed".into());
    }
    Ok(())
}

#[test]
fn the_dashboard_shows_live_data_in_chromium_and_follows_a_range_change() {
    let root = crate::support::repo_root();
    if let Err(why) = browser_ready(&root) {
        assert!(std::env::var("PASSAGE_REQUIRE_BROWSER").as_deref() != Ok("1"), "browser test required: {why}");
        eprintln!("skipping the browser test: {why}");
        return;
    }
    let data = tempfile::tempdir().expect("tempdir");
    let (mut demo, url, lines) = crate::support::start_demo(
        &["--exit-after", "150", "--ephemeral-ports", "--interval", "5", "--gate-every", "1", "--visitors", "4"],
        data.path(),
        "dashboard:",
    );
    std::thread::spawn(move || for _ in lines {});
    assert!(url.starts_with("https://127.0.0.1:") && url.contains("/venues/arena"), "{url}");

    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&artifacts).expect("artifact dir");
    let output = Command::new("node")
        .arg(root.join("tests/browser/dashboard.mjs"))
        .args(["--url", &url, "--wait-secs", "120"])
        .arg("--out")
        .arg(&artifacts)
        .output()
        .expect("node runs");
    let _ = demo.kill();
    let _ = demo.wait();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "browser checks failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    let last = stdout.lines().last().expect("a result line");
    let result: serde_json::Value = serde_json::from_str(last).expect("JSON result");
    assert_eq!(result["ok"], true, "{result}");
    for chart in ["zone-occupancy", "occupancy-series", "gate-throughput", "flows"] {
        assert!(result["charts"][chart].as_u64().is_some_and(|n| n > 0), "{chart}: {result}");
    }
    assert!(artifacts.join("dashboard.png").exists() && artifacts.join("dashboard-range.png").exists());
    eprintln!("dashboard screenshots: {}", artifacts.display());
}
