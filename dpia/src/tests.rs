use std::path::PathBuf;

use passage_config::Config;
use serde_json::Value;

use super::*;

fn repo() -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("..")
}

fn cnil_json(artifacts: &Artifacts) -> Value {
    serde_json::from_str(&artifacts.get("dpia.cnil.json").expect("json").text).expect("parses")
}

fn answer(json: &Value, reference: u64) -> String {
    json["answers"]
        .as_array()
        .expect("answers")
        .iter()
        .find(|a| a["reference_to"] == reference)
        .map(|a| a["data"].to_string())
        .expect("answered")
}

#[test]
fn the_default_deployment_gives_every_artifact_and_a_valid_cnil_file() {
    let config = Config::default();
    let artifacts = generate(&config);
    for name in ["dpia.cnil.json", "dpia.html", "dpia.md", "ropa.md", "dataflow.svg", "wp248.md", "action-plan.csv"] {
        assert!(artifacts.get(name).is_some_and(|a| !a.text.is_empty()), "{name}");
    }
    assert!(artifacts.get("signage-arena.en.md").is_some() && artifacts.get("signage-arena.de.md").is_some());
    let json = cnil_json(&artifacts);
    assert_eq!(cnil::check(&json), Ok(()));
    assert_eq!(json["answers"].as_array().map(Vec::len), Some(36));
    assert_eq!(generate(&config), artifacts, "generation is deterministic");
}

#[test]
fn the_cnil_check_finds_what_the_tool_would_mangle() {
    let mut json = cnil_json(&generate(&Config::default()));
    // Evaluations exist for planned measures only, and the default deployment has none left:
    // add two as the generator writes them, to break.
    let created = json["measures"][0]["created_at"].clone();
    let evaluation = |id: u32, reference: &str| {
        serde_json::json!({
            "id": id, "pia_id": 1, "reference_to": reference, "status": 2, "global_status": 1,
            "action_plan_comment": "to implement", "evaluation_comment": "planned",
            "gauges": { "x": 0, "y": 0 }, "estimated_implementation_date": null,
            "person_in_charge": "author", "evaluation_date": null, "created_at": created.clone(),
        })
    };
    json["evaluations"] = Value::Array(vec![evaluation(1, "3.1.14"), evaluation(2, "3.1.17")]);
    assert!(cnil::check(&json).is_ok(), "the added evaluations are well formed");
    json["answers"][0]["reference_to"] = Value::String("111".into());
    json["answers"][22]["data"]["gauge"] = Value::from(7);
    json["evaluations"][0]["reference_to"] = Value::String("3.1.999".into());
    json["evaluations"][1]["reference_to"] = Value::from(3);
    json["measures"][1]["id"] = json["measures"][0]["id"].clone();
    let problems = cnil::check(&json).expect_err("broken");
    let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(has("answers[0].reference_to: must be a number"), "{problems:#?}");
    assert!(has("answers: question 111 is not answered"), "{problems:#?}");
    assert!(has("answers[22].data.gauge: question 325 needs a level 1..=4"), "{problems:#?}");
    assert!(has("evaluations[0].reference_to: \"3.1.999\""), "{problems:#?}");
    assert!(has("evaluations[1].reference_to: must be a string"), "{problems:#?}");
    assert!(has("measures[1].id"), "{problems:#?}");
    assert!(cnil::check(&Value::Null).is_err());
}

#[test]
fn retention_and_epsilon_changes_show_in_the_right_places() {
    let base = Config::default();
    let mut changed = base.clone();
    changed.venues[0].retention.counts_days = 123;
    changed.privacy.epsilon_per_day = 0.25;
    let (a, b) = (generate(&base), generate(&changed));
    let (ja, jb) = (cnil_json(&a), cnil_json(&b));
    assert!(answer(&jb, 215).contains("noised counts 123 days"));
    assert!(!answer(&ja, 215).contains("123 days"));
    assert!(answer(&jb, 213).contains("ε = 0.25 per venue per day"));
    assert!(answer(&jb, 213).contains("ε = 1 per person-day"), "0.25 × 4 crossings");
    assert_eq!(answer(&ja, 111), answer(&jb, 111), "the overview does not change");
    assert_eq!(answer(&ja, 212), answer(&jb, 212), "legal bases do not change");
    let dp = jb["measures"].as_array().expect("measures").iter().find(|m| m["id"] == 3).expect("DP measure");
    assert!(dp["content"].as_str().is_some_and(|c| c.contains("ε = 0.25")));
    let text = |arts: &Artifacts, name: &str| arts.get(name).expect(name).text.clone();
    assert!(text(&b, "dpia.md").contains("noised counts 123 days"));
    assert!(text(&b, "dpia.html").contains("noised counts 123 days"));
    assert!(text(&b, "ropa.md").contains("noised counts 123 days"));
    assert!(text(&b, "signage-arena.en.md").contains("kept for 123 days"));
    assert!(text(&b, "signage-arena.de.md").contains("123 Tage"));
    assert!(text(&b, "signage-arena.en.md").contains("ε = 0.25 per day"));
    assert!(text(&b, "dataflow.svg").contains("ε = 0.25 / venue / day"));
    assert!(text(&b, "dataflow.svg").contains("retention 123 days"));
    assert_eq!(text(&a, "wp248.md"), text(&b, "wp248.md"), "the screening does not depend on either");
}

#[test]
fn the_match_link_shows_in_the_parameters_and_the_data_flow() {
    let base = Config::default();
    let mut https = base.clone();
    https.matching.link = passage_config::MatchLink::Https;
    let (a, b) = (generate(&base), generate(&https));
    let text = |arts: &Artifacts, name: &str| arts.get(name).expect(name).text.clone();
    assert!(text(&a, "dpia.md").contains("probes and results over the MQTT broker"));
    assert!(text(&b, "dpia.md").contains("probes and results straight to the matcher's HTTPS API"));
    assert!(!text(&b, "dpia.md").contains("probes and results over the MQTT broker"));
    assert!(text(&a, "dataflow.svg").contains("encrypted probes, templates, results"));
    assert!(text(&b, "dataflow.svg").contains("encrypted probes, results (HTTPS, mTLS)"));
    assert!(!text(&b, "dataflow.svg").contains("encrypted probes, templates, results"));
}

#[test]
fn the_wp248_screening_follows_the_configuration() {
    let config = Config::default();
    let applying: Vec<u8> = reports::wp248_criteria(&config).iter().filter(|c| c.applies).map(|c| c.number).collect();
    assert_eq!(applying, vec![2, 3, 4, 5, 7, 8]);
    let mut small = config.clone();
    small.register.expected_visitors_per_day = 800;
    small.register.vulnerable_subjects.clear();
    small.purposes.retain(|p| !p.biometric);
    let applying: Vec<u8> = reports::wp248_criteria(&small).iter().filter(|c| c.applies).map(|c| c.number).collect();
    assert_eq!(applying, vec![3], "counting only, small venue, no vulnerable group");
}

#[test]
fn the_action_plan_lists_exactly_the_planned_measures_as_csv() {
    let config = Config::default();
    let csv = generate(&config).get("action-plan.csv").expect("csv").text.clone();
    let rows: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    let planned = measures(&config).iter().filter(|m| m.status == content::Status::Planned).count();
    assert_eq!(rows.len(), planned + 1);
    assert!(rows[0].starts_with("measure,title,risks,action"));
    assert!(rows[1..].iter().all(|r| r.ends_with(",open,1.0")), "{rows:#?}");
}

/// Every test an existing measure names as its proof exists in the repository.
#[test]
fn every_measure_claim_names_tests_that_exist() {
    for evidence in evidence(&Config::default()) {
        let (path, name) = evidence.split_once("::").expect("path::test");
        let source = std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        let found = source.contains(&format!("fn {name}()"));
        assert!(found, "{evidence}: no test of that name");
        let test_attribute = source
            .split(&format!("fn {name}()"))
            .next()
            .and_then(|before| before.trim_end().rsplit('\n').next())
            .is_some_and(|line| line.contains("#[test]") || line.contains("#[tokio::test"));
        assert!(test_attribute, "{evidence}: not marked #[test]");
    }
}

/// `docs/dpia/` holds the artifacts of the default deployment; regenerate them with
/// `passage dpia generate --out docs/dpia` when this fails.
#[test]
fn the_committed_artifacts_are_current() {
    let dir = repo().join("docs/dpia");
    let artifacts = generate(&Config::default());
    let mut stale = Vec::new();
    for file in &artifacts.files {
        match std::fs::read_to_string(dir.join(&file.name)) {
            Ok(text) if text == file.text => {}
            Ok(_) => stale.push(format!("{} differs", file.name)),
            Err(_) => stale.push(format!("{} is missing", file.name)),
        }
    }
    assert!(
        stale.is_empty(),
        "docs/dpia is stale ({}); run `cargo run -- dpia generate --out docs/dpia`",
        stale.join(", ")
    );
    let rationale = std::fs::read_to_string(dir.join("README.md")).expect("docs/dpia/README.md");
    for evidence in evidence(&Config::default()) {
        assert!(rationale.contains(evidence), "docs/dpia/README.md does not list {evidence}");
    }
}

#[test]
fn the_privacy_notice_version_follows_its_content() {
    let mut config = Config::default();
    let venue = config.venues[0].clone();
    let first = privacy_notice(&config, &venue);
    assert_eq!(first, privacy_notice(&config, &venue), "deterministic");
    assert!(first.en.markdown().contains("explicit consent") && first.de.markdown().contains("Einwilligung"));
    config.venues[0].retention.denial_notice_hours = 12;
    let venue = config.venues[0].clone();
    let changed = privacy_notice(&config, &venue);
    assert_ne!(first.version, changed.version, "a quoted retention changed: a new notice");
    assert!(changed.en.markdown().contains("12 hours"));
}
