//! `passage demo --exit-after`: the whole data flow in one process, checked from outside.

use std::process::Command;

#[test]
fn the_demo_runs_the_whole_flow_and_exits_cleanly() {
    let data = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_passage"))
        .args([
            "demo",
            "--exit-after",
            "25",
            "--ephemeral-ports",
            "--interval",
            "5",
            "--gate-every",
            "0.5",
            "--visitors",
            "8",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .env("PASSAGE_LOG", "warn")
        .output()
        .expect("passage runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status);
    assert!(stdout.contains("dashboard:    https://127.0.0.1:"), "{stdout}");
    // A healthy run logs no error, the embedded broker's included (its start-up check once
    // made it log one).
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(errors.is_empty(), "errors logged:\n{}", errors.join("\n"));
    let last = stdout.lines().last().expect("a summary line");
    let summary: serde_json::Value = serde_json::from_str(last).expect("the last line is JSON");
    let n = |path: &str| {
        summary.pointer(path).and_then(serde_json::Value::as_u64).unwrap_or_else(|| panic!("{path} in {summary}"))
    };
    // On a failure, the summary and the warnings that explain it.
    let summary = format!("{summary}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(n("/counts_published") >= 6, "{summary}");
    assert!(n("/counts_ingested") >= 3, "{summary}");
    assert_eq!(n("/counts_quarantined"), 0, "{summary}");
    assert_eq!(n("/enrolled"), 8, "{summary}");
    assert!(n("/matches_answered") >= 5, "{summary}");
    // The demo's east gate matches in decision mode (its key was published to the matcher).
    assert!(n("/matches_requested_in_decision_mode") >= 1, "{summary}");
    let decided = n("/decisions/green") + n("/decisions/red");
    assert!(n("/decisions/agreeing_with_ground_truth") * 10 >= decided * 9, "{summary}");
    // The demo's files: a DuckDB database, a gallery of ciphertexts, the public certificate.
    assert!(data.path().join("analytics.duckdb").exists());
    assert!(data.path().join("galleries").join("arena.gallery").exists());
    assert!(data.path().join("galleries").join("arena.decision-key").exists());
}

#[test]
fn config_check_reports_every_error_with_its_location() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[privacy]\nepsilon_per_day = 0.0\n\n[[venues]]\nid = \"v\"\nname = \"V\"\n[[venues.cameras]]\nid = \"c\"\nzones = [\"nowhere\"]\n",
    )
    .expect("write");
    let output =
        Command::new(env!("CARGO_BIN_EXE_passage")).args(["config", "check"]).arg(&file).output().expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.toml:2:19: privacy.epsilon_per_day"), "{stderr}");
    assert!(stderr.contains("bad.toml:9:9: venues[0].cameras[0].zones: unknown zone `nowhere`"), "{stderr}");

    let good = dir.path().join("good.toml");
    let default = Command::new(env!("CARGO_BIN_EXE_passage")).args(["config", "default"]).output().expect("runs");
    std::fs::write(&good, &default.stdout).expect("write");
    let output =
        Command::new(env!("CARGO_BIN_EXE_passage")).args(["config", "check"]).arg(&good).output().expect("runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}
