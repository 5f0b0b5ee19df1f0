//! The DPIA and the audit log from the outside: `passage dpia generate` writes artifacts whose
//! CNIL file passes the structure check and whose HTML and SVG pass the Nu Html Checker; the
//! DPO page of a running demo verifies the audit log, serves the same artifacts (the SVG
//! renders in headless Chromium), and records a sign-off that `passage audit verify` then
//! checks with the rest of the log, naming the SHA-256 of the generated CNIL file.
//! `passage audit verify` names the first modified entry of a tampered log.
//!
//! The browser and validator parts need Chromium, Java and tests/browser/node_modules
//! (`scripts/browser-deps`); without them the test says so and passes, unless
//! PASSAGE_REQUIRE_BROWSER=1 (set by `scripts/test`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use passage_policy::audit::{AuditLog, Event};

fn passage(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_passage")).args(args).env("PASSAGE_LOG", "warn").output().expect("passage runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn root() -> PathBuf {
    crate::support::repo_root()
}

pub(crate) fn vnu() -> PathBuf {
    root().join("tests/browser/node_modules/vnu-jar/build/dist/vnu.jar")
}

fn tools_ready() -> Result<(), String> {
    if !Path::new("/usr/bin/chromium").exists() {
        return Err("/usr/bin/chromium is missing (scripts/browser-deps installs it)".into());
    }
    if !root().join("tests/browser/node_modules/playwright-core").exists() || !vnu().exists() {
        return Err("tests/browser/node_modules is missing playwright-core or vnu-jar (scripts/browser-deps)".into());
    }
    if Command::new("java").arg("-version").output().is_err() {
        return Err("java is not installed (scripts/browser-deps installs it)".into());
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Err("node is not installed".into());
    }
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_dpia_validates_and_its_diagram_renders_in_chromium() {
    let out = tempfile::tempdir().expect("tempdir");
    let dir = out.path().join("dpia");
    let generated = passage(&["dpia", "generate", "--out", dir.to_str().expect("utf-8 path")]);
    assert!(generated.status.success(), "{}", text(&generated.stderr));
    for name in ["dpia.cnil.json", "dpia.html", "dpia.md", "ropa.md", "dataflow.svg", "wp248.md", "action-plan.csv"] {
        assert!(dir.join(name).is_file(), "{name} missing");
        assert!(text(&generated.stdout).contains(name), "{name} not reported");
    }
    let cnil_bytes = std::fs::read(dir.join("dpia.cnil.json")).expect("read");
    let cnil: serde_json::Value = serde_json::from_slice(&cnil_bytes).expect("JSON");
    assert_eq!(passage_dpia::cnil::check(&cnil), Ok(()));

    if let Err(why) = tools_ready() {
        assert!(std::env::var("PASSAGE_REQUIRE_BROWSER").as_deref() != Ok("1"), "browser test required: {why}");
        eprintln!("skipping the validator and browser parts: {why}");
        return;
    }

    // The DPO page of a running demo. Its DPIA is generated from its running configuration,
    // which equals the default only with the default release interval.
    let data = out.path().join("data");
    let (mut demo, url, lines) = crate::support::start_demo(
        &["--exit-after", "45", "--ephemeral-ports", "--interval", "60", "--gate-every", "0.5", "--visitors", "4"],
        &data,
        "DPO page",
    );
    let reader = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    // Let the gates record a few consents and decisions first.
    std::thread::sleep(std::time::Duration::from_secs(8));
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dpo-screenshots");
    let browser = Command::new("node")
        .arg(root().join("tests/browser/dpo.mjs"))
        .args(["--url", &url, "--name", "Dana Officer", "--out"])
        .arg(&shots)
        .output()
        .expect("node runs");
    let status = demo.wait().expect("the demo exits");
    let demo_lines = reader.join().expect("reader");
    assert!(browser.status.success(), "browser checks failed\n{}\n{}", text(&browser.stdout), text(&browser.stderr));
    assert!(status.success(), "demo failed: {demo_lines:?}");
    let result: serde_json::Value =
        serde_json::from_str(text(&browser.stdout).lines().last().expect("a result line")).expect("JSON result");
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["svg_nodes"], 9, "{result}");
    assert!(result["entries_after"].as_u64() > result["entries_before"].as_u64(), "{result}");
    eprintln!("DPO page screenshots: {}", shots.display());

    // The Nu Html Checker on the generated document, the diagram and the page as served.
    let checked = Command::new("java")
        .arg("-jar")
        .arg(vnu())
        .args(["--errors-only", "--also-check-svg"])
        .arg(dir.join("dpia.html"))
        .arg(dir.join("dataflow.svg"))
        .arg(shots.join("dpo.html"))
        .output()
        .expect("java runs");
    assert!(checked.status.success(), "HTML validation failed:\n{}{}", text(&checked.stdout), text(&checked.stderr));

    // The sign-off is in the verified log and names the generated CNIL file.
    let store = data.join("audit");
    let store = store.to_str().expect("utf-8 path");
    let verified = passage(&["audit", "verify", "--store", store]);
    assert!(verified.status.success(), "{}{}", text(&verified.stdout), text(&verified.stderr));
    assert!(text(&verified.stdout).contains("entries verified"), "{}", text(&verified.stdout));
    let shown = passage(&["audit", "show", "--store", store, "--action", "dpia.signoff"]);
    let signoffs = text(&shown.stdout);
    assert_eq!(signoffs.lines().count(), 1, "{signoffs}");
    assert!(signoffs.contains("\"actor\":\"dpo:Dana Officer\""), "{signoffs}");
    assert!(signoffs.contains(&sha256_hex(&cnil_bytes)), "the sign-off names another file: {signoffs}");
    let decisions = text(&passage(&["audit", "show", "--store", store, "--action", "access.decision"]).stdout);
    assert!(decisions.lines().count() > 0, "the gates' decisions are audited");
}

#[test]
fn audit_verify_names_the_first_modified_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = AuditLog::open(dir.path()).expect("open");
        for i in 0..10 {
            log.append(Event {
                at: 1_800_000_000 + i,
                actor: "gate:arena/east-1".into(),
                action: "access.decision".into(),
                venue: Some("arena".into()),
                subject: None,
                outcome: "red: not recognised".into(),
            })
            .expect("append");
        }
    }
    let store = dir.path().to_str().expect("utf-8 path");
    let ok = passage(&["audit", "verify", "--store", store]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains("10 entries verified"), "{}", text(&ok.stdout));

    let path = dir.path().join("audit.jsonl");
    let mut lines: Vec<String> = std::fs::read_to_string(&path).expect("read").lines().map(str::to_owned).collect();
    lines[4] = lines[4].replace("red: not recognised", "green");
    std::fs::write(&path, lines.join("\n") + "\n").expect("write");
    let bad = passage(&["audit", "verify", "--store", store]);
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("entry 4: content does not match its hash"), "{}", text(&bad.stderr));

    let missing = passage(&["audit", "verify", "--store", "/nonexistent/audit"]);
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("holds no audit log"), "{}", text(&missing.stderr));
}

#[test]
fn dpia_generate_reports_a_bad_configuration_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[register]\ndpia_date = \"soon\"\n").expect("write");
    let out = dir.path().join("out");
    let run = passage(&[
        "dpia",
        "generate",
        "--config",
        config.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(!run.status.success());
    assert!(text(&run.stderr).contains("register.dpia_date"), "{}", text(&run.stderr));
    assert!(!out.exists(), "nothing is written for a bad configuration");
}
