//! The DPIA as the CNIL PIA tool's export file (`{pia, answers, measures, evaluations,
//! comments}`), and a structural check of such a file that is stricter than the tool's own
//! importer (which accepts wrong types and silently drops what it cannot read).
//!
//! Format facts (from the tool's import code and its example files): answers refer to a
//! question by a numeric `reference_to` (111 ... 346) with `data: {text, gauge, list}`;
//! measures carry numeric ids that evaluations refer to as the string `"3.1.<id>"`; risk
//! evaluations are `"3.2"` ... `"3.4"` with residual `gauges: {x: severity, y: likelihood}`;
//! evaluation `status` is 0 pending, 1 to correct, 2 improvable, 3 acceptable.

use serde_json::{json, Map, Value};

use crate::answers::{Answer, Body, STRUCTURE};
use crate::content::{Measure, RiskAssessment, Status};

/// The export file.
pub fn export(
    name: &str,
    register: &passage_config::Register,
    answers: &[Answer],
    measures: &[Measure],
    risks: &[RiskAssessment],
) -> Value {
    let date = format!("{}T00:00:00.000Z", register.dpia_date);
    let answers: Vec<Value> = answers
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let data = match &a.body {
                Body::Text(text) => json!({ "text": text, "gauge": null, "list": [] }),
                Body::List(items) => json!({ "text": null, "gauge": null, "list": items }),
                Body::Gauge(level, why) => json!({ "text": why, "gauge": level, "list": [] }),
            };
            json!({ "id": i + 1, "pia_id": 1, "reference_to": a.reference, "data": data, "created_at": date })
        })
        .collect();
    let measures_json: Vec<Value> = measures
        .iter()
        .map(|m| {
            let mut content = m.description.clone();
            if m.status == Status::Planned {
                content.push_str(" [Planned]");
            }
            if !m.evidence.is_empty() {
                content.push_str(" Proved by: ");
                content.push_str(&m.evidence.join(", "));
                content.push('.');
            }
            json!({
                "id": m.number,
                "pia_id": 1,
                "title": m.title,
                "content": content,
                "placeholder": "measures.default_placeholder",
                "created_at": date,
            })
        })
        .collect();
    let mut evaluations = Vec::new();
    for m in measures.iter().filter(|m| m.status == Status::Planned) {
        evaluations.push(json!({
            "id": evaluations.len() + 1,
            "pia_id": 1,
            "reference_to": format!("3.1.{}", m.number),
            "status": 2,
            "global_status": 1,
            "action_plan_comment": m.action.unwrap_or("to implement"),
            "evaluation_comment": "Planned measure: not yet implemented and tested.",
            "gauges": { "x": 0, "y": 0 },
            "estimated_implementation_date": null,
            "person_in_charge": register.author,
            "evaluation_date": null,
            "created_at": date,
        }));
    }
    for r in risks.iter().filter(|r| r.residual_likelihood < r.likelihood) {
        evaluations.push(json!({
            "id": evaluations.len() + 1,
            "pia_id": 1,
            "reference_to": format!("3.{}", r.risk.item()),
            "status": 2,
            "global_status": 1,
            "action_plan_comment": "Complete the planned measures that address this risk (see 3.1).",
            "evaluation_comment": r.likelihood_why,
            "gauges": { "x": r.severity, "y": r.residual_likelihood },
            "estimated_implementation_date": null,
            "person_in_charge": register.author,
            "evaluation_date": null,
            "created_at": date,
        }));
    }
    json!({
        "pia": {
            "id": 1,
            "name": name,
            "status": 0,
            "category": "Access control and crowd analytics",
            "author_name": register.author,
            "evaluator_name": register.evaluator,
            "validator_name": register.validator,
            "dpos_names": register.dpo_contact,
            "dpo_status": 0,
            "dpo_opinion": "",
            "concerned_people_searched_opinion": false,
            "concerned_people_searched_content": "",
            "people_names": "",
            "concerned_people_status": 0,
            "concerned_people_opinion": "",
            "rejection_reason": "",
            "applied_adjustments": "",
            "created_at": date,
            "updated_at": date,
            "structure_id": null,
        },
        "answers": answers,
        "measures": measures_json,
        "evaluations": evaluations,
        "comments": [],
    })
}

/// Answer type of each question reference: `t` text, `l` list, `g` gauge.
fn answer_type(reference: u64) -> Option<char> {
    let known = STRUCTURE.iter().flat_map(|(_, _, _, qs)| qs.iter()).any(|(r, _)| u64::from(*r) == reference);
    if !known {
        return None;
    }
    if reference >= 300 {
        Some(if reference % 10 >= 5 { 'g' } else { 'l' })
    } else {
        Some('t')
    }
}

fn is_iso_datetime(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && text.ends_with('Z')
        && [0..4, 5..7, 8..10, 11..13, 14..16, 17..19].iter().all(|r| b[r.clone()].iter().all(u8::is_ascii_digit))
}

/// Checks `file` against the structure the CNIL tool expects; returns every problem found.
///
/// # Errors
/// The list of problems, each naming where it is (`answers[3].data.gauge: ...`).
pub fn check(file: &Value) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let mut say = |p: String| problems.push(p);
    let Some(root) = file.as_object() else {
        return Err(vec!["the file is not a JSON object".into()]);
    };
    for key in root.keys() {
        if !["pia", "answers", "measures", "evaluations", "comments"].contains(&key.as_str()) {
            say(format!("{key}: unknown top-level key"));
        }
    }
    let empty = Map::new();
    let pia = root.get("pia").and_then(Value::as_object).unwrap_or_else(|| {
        say("pia: missing or not an object".into());
        &empty
    });
    match pia.get("name").and_then(Value::as_str) {
        Some(name) if !name.trim().is_empty() => {}
        _ => say("pia.name: must be a non-empty string".into()),
    }
    for key in
        ["author_name", "evaluator_name", "validator_name", "dpos_names", "dpo_opinion", "concerned_people_opinion"]
    {
        if !pia.get(key).is_some_and(Value::is_string) {
            say(format!("pia.{key}: must be a string"));
        }
    }
    if pia.get("status").and_then(Value::as_u64).is_none_or(|s| s > 5) {
        say("pia.status: must be an integer 0..=5".into());
    }
    for key in ["dpo_status", "concerned_people_status"] {
        if pia.get(key).and_then(Value::as_u64).is_none_or(|s| s > 1) {
            say(format!("pia.{key}: must be 0 or 1"));
        }
    }
    for key in ["created_at", "updated_at"] {
        if !pia.get(key).and_then(Value::as_str).is_some_and(is_iso_datetime) {
            say(format!("pia.{key}: must be an ISO 8601 UTC date-time"));
        }
    }
    if pia.get("structure_id").is_some_and(|v| !v.is_null()) {
        say("pia.structure_id: must be null (the standard CNIL structure)".into());
    }

    let array = |key: &str, say: &mut dyn FnMut(String)| -> Vec<Value> {
        match root.get(key).and_then(Value::as_array) {
            Some(items) => items.clone(),
            None => {
                say(format!("{key}: missing or not an array"));
                Vec::new()
            }
        }
    };
    let answers = array("answers", &mut say);
    let mut seen = std::collections::BTreeSet::new();
    for (i, answer) in answers.iter().enumerate() {
        let at = format!("answers[{i}]");
        let Some(reference) = answer.get("reference_to").and_then(Value::as_u64) else {
            say(format!("{at}.reference_to: must be a number (a string never shows in the tool)"));
            continue;
        };
        let Some(kind) = answer_type(reference) else {
            say(format!("{at}.reference_to: {reference} is not a question of the CNIL structure"));
            continue;
        };
        if !seen.insert(reference) {
            say(format!("{at}.reference_to: question {reference} answered twice"));
        }
        let data = answer.get("data").and_then(Value::as_object).unwrap_or(&empty);
        let text = data.get("text").and_then(Value::as_str).unwrap_or("");
        let list = data.get("list").and_then(Value::as_array);
        if !list.is_some_and(|l| l.iter().all(Value::is_string)) {
            say(format!("{at}.data.list: must be an array of strings"));
        }
        match kind {
            't' if text.trim().is_empty() => say(format!("{at}.data.text: question {reference} needs text")),
            'l' if list.is_none_or(Vec::is_empty) => say(format!("{at}.data.list: question {reference} needs items")),
            'g' => {
                if !data.get("gauge").and_then(Value::as_u64).is_some_and(|g| (1..=4).contains(&g)) {
                    say(format!("{at}.data.gauge: question {reference} needs a level 1..=4"));
                }
                if text.trim().is_empty() {
                    say(format!("{at}.data.text: question {reference} needs a justification"));
                }
            }
            _ => {}
        }
    }
    for (_, _, _, questions) in STRUCTURE {
        for (reference, _) in *questions {
            if !seen.contains(&u64::from(*reference)) {
                say(format!("answers: question {reference} is not answered"));
            }
        }
    }

    let measures = array("measures", &mut say);
    let mut ids = std::collections::BTreeSet::new();
    for (i, measure) in measures.iter().enumerate() {
        let at = format!("measures[{i}]");
        match measure.get("id").and_then(Value::as_u64) {
            Some(id) if ids.insert(id) => {}
            Some(id) => say(format!("{at}.id: {id} is used twice")),
            None => say(format!("{at}.id: must be a number")),
        }
        if measure.get("title").and_then(Value::as_str).is_none_or(|t| t.trim().is_empty()) {
            say(format!("{at}.title: must be a non-empty string"));
        }
        if !measure.get("content").is_some_and(Value::is_string) {
            say(format!("{at}.content: must be a string"));
        }
    }

    for (i, evaluation) in array("evaluations", &mut say).iter().enumerate() {
        let at = format!("evaluations[{i}]");
        let Some(reference) = evaluation.get("reference_to").and_then(Value::as_str) else {
            say(format!("{at}.reference_to: must be a string (the tool stops importing evaluations otherwise)"));
            continue;
        };
        let valid = match reference.split('.').collect::<Vec<_>>().as_slice() {
            ["1", "1" | "2"] | ["3", "2" | "3" | "4"] => true,
            ["2", item @ ("1" | "2"), q] => q
                .parse::<u64>()
                .is_ok_and(|q| q / 10 == 20 + item.parse::<u64>().unwrap_or(0) && answer_type(q).is_some()),
            ["3", "1", id] => id.parse::<u64>().is_ok_and(|id| ids.contains(&id)),
            _ => false,
        };
        if !valid {
            say(format!("{at}.reference_to: {reference:?} names no item, question or measure"));
        }
        let status = evaluation.get("status").and_then(Value::as_u64);
        if status.is_none_or(|s| s > 3) {
            say(format!("{at}.status: must be 0..=3"));
        }
        let comment = |key: &str| evaluation.get(key).and_then(Value::as_str).is_some_and(|c| !c.trim().is_empty());
        if status == Some(1) && !comment("evaluation_comment") {
            say(format!("{at}.evaluation_comment: needed for status 1 (to correct)"));
        }
        if status == Some(2) && !comment("action_plan_comment") {
            say(format!("{at}.action_plan_comment: needed for status 2 (improvable)"));
        }
        let gauge = |axis: &str| evaluation.get("gauges").and_then(|g| g.get(axis)).and_then(Value::as_u64);
        let (x, y) = (gauge("x"), gauge("y"));
        if !(x.is_some_and(|x| x <= 4) && y.is_some_and(|y| y <= 4)) {
            say(format!("{at}.gauges: x and y must be 0..=4"));
        }
        if status == Some(2) && reference.starts_with("3.") && reference.len() == 3 && (x == Some(0) || y == Some(0)) {
            say(format!("{at}.gauges: an improvable risk needs residual severity and likelihood"));
        }
    }
    if !root.get("comments").is_some_and(Value::is_array) {
        say("comments: missing or not an array".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}
