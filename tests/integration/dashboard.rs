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
    if !crate::support::browser_available() {
        return;
    }
    let data = tempfile::tempdir().expect("tempdir");
    let (demo, url, lines) = crate::support::start_demo(
        &["--exit-after", "150", "--ephemeral-ports", "--interval", "5", "--gate-every", "1", "--visitors", "4"],
        data.path(),
        "dashboard:",
    );
    std::thread::spawn(move || for _ in lines {});
    assert!(url.starts_with("https://127.0.0.1:") && url.contains("/venues/arena"), "{url}");

    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&artifacts).expect("artifact dir");
    let args: [&std::ffi::OsStr; 6] =
        ["--url".as_ref(), url.as_ref(), "--wait-secs".as_ref(), "120".as_ref(), "--out".as_ref(), artifacts.as_ref()];
    let result = crate::support::run_browser_check("dashboard.mjs", args, demo);
    for chart in ["zone-occupancy", "occupancy-series", "gate-throughput", "flows"] {
        assert!(result["charts"][chart].as_u64().is_some_and(|n| n > 0), "{chart}: {result}");
    }
    assert!(artifacts.join("dashboard.png").exists() && artifacts.join("dashboard-range.png").exists());
    eprintln!("dashboard screenshots: {}", artifacts.display());
}
