//! The processing register (GDPR Art. 30) as part of the deployment configuration: who the
//! controller is, which processing activities run for which purposes, on whose data, with which
//! recipients, processors and locations. The DPIA generator (`passage-dpia`) combines it with
//! the live technical parameters of the rest of the configuration.

use passage_wire::Id;
use serde::{Deserialize, Serialize};

use crate::model::id;

/// The register and the DPIA's administrative facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Register {
    /// The controller (the venue operator), as named in notices.
    pub controller: String,
    /// How data subjects reach the controller (an organisational address, not a person's).
    pub controller_contact: String,
    /// How data subjects reach the data protection officer.
    pub dpo_contact: String,
    /// Version of the DPIA this register describes; a sign-off names it.
    pub dpia_version: String,
    /// Date of that version, `YYYY-MM-DD`.
    pub dpia_date: String,
    /// Role that wrote the DPIA (CNIL: author).
    pub author: String,
    /// Role that evaluates it (CNIL: evaluator).
    pub evaluator: String,
    /// Role that validates it (CNIL: validator).
    pub validator: String,
    /// Expected visitors per day across the deployment (WP248 "large scale" when at least
    /// 5,000).
    pub expected_visitors_per_day: u32,
    /// Groups of vulnerable data subjects present (children, employees...); empty for none.
    pub vulnerable_subjects: Vec<String>,
    /// Where each component runs.
    pub locations: Vec<Location>,
    /// Processors (Art. 28) and what they do.
    pub processors: Vec<Processor>,
    /// Transfers outside the EEA, each with its safeguard; empty for none.
    pub transfers: Vec<String>,
    /// One processing activity per purpose.
    pub activities: Vec<Activity>,
}

/// Where a component runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// The component (`edge agents`, `matcher`...).
    pub component: String,
    /// Where it runs.
    pub place: String,
}

/// A processor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Processor {
    /// Name.
    pub name: String,
    /// What it does for the controller.
    pub service: String,
    /// Where.
    pub location: String,
}

/// A processing activity of the register.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Activity {
    /// The purpose (an id of `[[purposes]]`).
    pub purpose: Id,
    /// Name of the activity.
    pub name: String,
    /// Categories of data subjects.
    pub data_subjects: Vec<String>,
    /// Categories of personal data.
    pub data_categories: Vec<String>,
    /// Recipients.
    pub recipients: Vec<String>,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

impl Default for Register {
    fn default() -> Register {
        Register {
            controller: "Demo Arena Operations".into(),
            controller_contact: "privacy office, Demo Arena, 1 Stadium Way".into(),
            dpo_contact: "dpo@arena.example".into(),
            dpia_version: "1.0".into(),
            dpia_date: "2026-11-23".into(),
            author: "Venue operations lead".into(),
            evaluator: "Information security officer".into(),
            validator: "Venue director".into(),
            expected_visitors_per_day: 20_000,
            vulnerable_subjects: strings(&["children attending events (counted only; face enrolment from 16 years)"]),
            locations: vec![
                Location {
                    component: "edge agents, gates, key holder".into(),
                    place: "venue premises (on-site servers)".into(),
                },
                Location { component: "matcher".into(), place: "EU hosting provider (ciphertexts only)".into() },
                Location {
                    component: "analytics, dashboards, audit log".into(),
                    place: "venue premises or EU hosting provider".into(),
                },
            ],
            processors: vec![Processor {
                name: "EU hosting provider".into(),
                service: "runs the matcher on encrypted data; cannot decrypt".into(),
                location: "EU".into(),
            }],
            transfers: Vec::new(),
            activities: vec![
                Activity {
                    purpose: id("face-access"),
                    name: "Face access at the gates".into(),
                    data_subjects: strings(&["visitors who enrol for face access"]),
                    data_categories: strings(&[
                        "face templates (biometric, Art. 9), encrypted under the venue's key",
                        "consent evidence (notice version, time)",
                        "access decisions (gate, time, pseudonymous reference)",
                        "contact for denial notices (optional, encrypted per subject)",
                    ]),
                    recipients: strings(&[
                        "the visitor (denial reasons on their phone)",
                        "the venue's DPO (audit log)",
                    ]),
                },
                Activity {
                    purpose: id("ticket-access"),
                    name: "Ticket access at the gates".into(),
                    data_subjects: strings(&["ticket holders"]),
                    data_categories: strings(&["ticket identifier", "access decisions (gate, time)"]),
                    recipients: strings(&["venue operations"]),
                },
                Activity {
                    purpose: id("flow-analytics"),
                    name: "Crowd-flow counting".into(),
                    data_subjects: strings(&["everyone in a counted area"]),
                    data_categories: strings(&[
                        "camera frames (in memory on the edge only, never stored)",
                        "differentially private counts (anonymous aggregates)",
                    ]),
                    recipients: strings(&["venue managers (dashboard)", "venue operations (capacity alerts)"]),
                },
            ],
        }
    }
}
