//! Helpers: bus connections, a tokio runtime, a running demo, the browser checks; the
//! checkout's root and a Mosquitto on loopback come from `tests/common` (shared with the privacy
//! scan).

use std::io::{BufRead, BufReader, Lines};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

use passage_transport::{Bus, BusConfig};

#[path = "../common/mod.rs"]
mod common;
pub(crate) use common::{repo_root, stranger_crops, Mosquitto};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

pub async fn connect(port: u16, name: &str, cancel: &CancellationToken, tracker: &TaskTracker) -> Bus {
    let config = BusConfig { host: "127.0.0.1".into(), port, client_id: format!("{name}-{}", std::process::id()) };
    Bus::connect(config, cancel.child_token(), tracker).await.expect("bus connects")
}

/// Starts `passage demo` with `args`, `--data-dir data` and warn-level logs (from the repository
/// root, where `.cache/models` is), reads its stdout up to the line that starts with `label`
/// and returns the process, the first word after the label (a URL) and the lines still to come.
pub fn start_demo(args: &[&str], data: &Path, label: &str) -> (Child, String, Lines<BufReader<ChildStdout>>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_passage"));
    command.arg("demo").args(args).arg("--data-dir").arg(data);
    let (demo, rest, lines) = spawn_until(command, label);
    (demo, rest.split_whitespace().next().expect("a URL after the label").to_owned(), lines)
}

/// Spawns `command` (warn-level logs, from the repository root) and reads its stdout up to the
/// line that starts with `label`; returns the process, the rest of that line and the lines
/// still to come.
pub fn spawn_until(mut command: Command, label: &str) -> (Child, String, Lines<BufReader<ChildStdout>>) {
    let mut child = command
        .env("PASSAGE_LOG", "warn")
        .current_dir(repo_root())
        .stdout(Stdio::piped())
        .spawn()
        .expect("passage starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let rest = loop {
        let line = lines.next().unwrap_or_else(|| panic!("{command:?} prints {label}")).expect("readable");
        if let Some(rest) = line.trim().strip_prefix(label) {
            break rest.trim().to_owned();
        }
    };
    (child, rest, lines)
}

/// Whether the browser tests can run here (Chromium, playwright-core, node). When not, says
/// why and returns false, so the test returns early; under `PASSAGE_REQUIRE_BROWSER=1` (set by
/// `scripts/test`) their absence is a failure instead.
pub(crate) fn browser_available() -> bool {
    match crate::dashboard::browser_ready(&repo_root()) {
        Ok(()) => true,
        Err(why) => {
            assert!(std::env::var("PASSAGE_REQUIRE_BROWSER").as_deref() != Ok("1"), "browser test required: {why}");
            eprintln!("skipping the browser test: {why}");
            false
        }
    }
}

/// Runs `node tests/browser/{script}` with `args`, then stops `demo`; asserts that the script
/// succeeded and that its last stdout line is `{"ok": true, ...}`, which it returns.
pub(crate) fn run_browser_check(
    script: &str,
    args: impl IntoIterator<Item = impl AsRef<std::ffi::OsStr>>,
    mut demo: Child,
) -> serde_json::Value {
    let output = Command::new("node")
        .arg(repo_root().join("tests/browser").join(script))
        .args(args)
        .output()
        .expect("node runs");
    let _ = demo.kill();
    let _ = demo.wait();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    let last = stdout.lines().last().expect("a result line");
    let result: serde_json::Value = serde_json::from_str(last).expect("JSON result");
    assert_eq!(result["ok"], true, "{result}");
    result
}

/// The Nu Html Checker (errors only) on a page of the repository as served (a static file).
pub(crate) fn validate_html(page: &str) {
    let checked = Command::new("java")
        .arg("-jar")
        .arg(crate::dpia::vnu())
        .arg("--errors-only")
        .arg(repo_root().join(page))
        .output()
        .expect("java runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(
        checked.status.success(),
        "{page}: HTML validation failed:\n{}{}",
        text(&checked.stdout),
        text(&checked.stderr)
    );
}

/// `passage ticket issue --venue arena --data-dir data` with `args`: the ticket's code.
pub(crate) fn issue_ticket(data: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_passage"))
        .args(["ticket", "issue", "--venue", "arena", "--data-dir"])
        .arg(data)
        .args(args)
        .output()
        .expect("passage ticket issue runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}
