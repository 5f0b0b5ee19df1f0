//! Answers to every question of the CNIL PIA structure (sections 1 to 3), keyed by the CNIL
//! tool's question references (section digit, item digit, question number).

use passage_config::Config;

use crate::content::{legal_basis, Facts, Measure, RiskAssessment, Status};

/// An answer's content, as the CNIL tool types it.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// Free text.
    Text(String),
    /// A list of short items.
    List(Vec<String>),
    /// A 1..=4 level with its justification.
    Gauge(u8, String),
}

/// One answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// CNIL question reference (111 ... 346).
    pub reference: u32,
    /// The question, in English.
    pub question: &'static str,
    /// The answer.
    pub body: Body,
}

/// A question: (reference, title).
pub type Question = (u32, &'static str);

/// An item of the CNIL structure: (section, item, title, questions).
pub type Item = (u32, u32, &'static str, &'static [Question]);

/// The CNIL structure.
pub const STRUCTURE: &[Item] = &[
    (
        1,
        1,
        "Overview",
        &[
            (111, "What is the processing under consideration?"),
            (112, "What are the responsibilities linked to the processing?"),
            (113, "Are there standards applicable to the processing?"),
        ],
    ),
    (
        1,
        2,
        "Data, processes and supporting assets",
        &[
            (121, "What are the data processed?"),
            (122, "How does the life cycle of data and processes work?"),
            (123, "What are the data supporting assets?"),
        ],
    ),
    (
        2,
        1,
        "Proportionality and necessity",
        &[
            (211, "Are the processing purposes specified, explicit and legitimate?"),
            (212, "What are the legal basis making the processing lawful?"),
            (213, "Are the data collected adequate, relevant and limited to what is necessary (minimisation)?"),
            (214, "Are the data accurate and kept up to date?"),
            (215, "What are the storage durations of the data?"),
        ],
    ),
    (
        2,
        2,
        "Controls to protect the personal rights of data subjects",
        &[
            (221, "How are the data subjects informed about the processing?"),
            (222, "If applicable, how is the consent of data subjects obtained?"),
            (223, "How can data subjects exercise their rights of access and to data portability?"),
            (224, "How can data subjects exercise their rights to rectification and erasure?"),
            (225, "How can data subjects exercise their rights to restriction and to object?"),
            (226, "Are the obligations of the processors clearly identified and governed by a contract?"),
            (227, "In the case of data transfer outside the European Union, are the data adequately protected?"),
        ],
    ),
    (3, 2, "Illegitimate access to data", RISK_QUESTIONS[0]),
    (3, 3, "Unwanted modification of data", RISK_QUESTIONS[1]),
    (3, 4, "Data disappearance", RISK_QUESTIONS[2]),
];

const RISK_QUESTIONS: [&[Question]; 3] = [
    &[
        (321, "What could be the main impacts on the data subjects if the risk were to occur?"),
        (322, "What are the main threats that could lead to the risk?"),
        (323, "What are the risk sources?"),
        (324, "Which of the identified controls contribute to addressing the risk?"),
        (325, "How do you estimate the risk severity, especially according to potential impacts and planned controls?"),
        (326, "How do you estimate the likelihood of the risk, especially in respect of threats, sources of risk and planned controls?"),
    ],
    &[
        (331, "What could be the main impacts on the data subjects if the risk were to occur?"),
        (332, "What are the main threats that could lead to the risk?"),
        (333, "What are the risk sources?"),
        (334, "Which of the identified controls contribute to addressing the risk?"),
        (335, "How do you estimate the risk severity, especially according to potential impacts and planned controls?"),
        (336, "How do you estimate the likelihood of the risk, especially in respect of threats, sources of risk and planned controls?"),
    ],
    &[
        (341, "What could be the main impacts on the data subjects if the risk were to occur?"),
        (342, "What are the main threats that could lead to the risk?"),
        (343, "What are the risk sources?"),
        (344, "Which of the identified controls contribute to addressing the risk?"),
        (345, "How do you estimate the risk severity, especially according to potential impacts and planned controls?"),
        (346, "How do you estimate the likelihood of the risk, especially in respect of threats, sources of risk and planned controls?"),
    ],
];

fn question(reference: u32) -> &'static str {
    STRUCTURE.iter().flat_map(|(_, _, _, qs)| qs.iter()).find(|(r, _)| *r == reference).map_or("", |(_, q)| q)
}

fn join(items: &[String]) -> String {
    items.join("; ")
}

/// Every answer, in reference order.
pub fn answers(config: &Config, facts: &Facts, measures: &[Measure], risks: &[RiskAssessment]) -> Vec<Answer> {
    let r = &config.register;
    let venues = config.venues.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", ");
    let purposes = config
        .purposes
        .iter()
        .map(|p| format!("{} ({}): {}", p.id, if p.biometric { "biometric" } else { "non-biometric" }, p.description))
        .collect::<Vec<_>>()
        .join("; ");
    let bases = config
        .purposes
        .iter()
        .map(|p| format!("{}: {}", p.id, legal_basis(p.legal_basis)))
        .collect::<Vec<_>>()
        .join("; ");
    let categories =
        r.activities.iter().map(|a| format!("{}: {}", a.name, join(&a.data_categories))).collect::<Vec<_>>().join(". ");
    let processors = if r.processors.is_empty() {
        "No processor is involved.".to_owned()
    } else {
        r.processors
            .iter()
            .map(|p| format!("{} ({}, {}): bound by an Art. 28 contract", p.name, p.service, p.location))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let transfers = if r.transfers.is_empty() {
        "No personal data is transferred outside the EEA.".to_owned()
    } else {
        join(&r.transfers)
    };
    let locations = r.locations.iter().map(|l| format!("{}: {}", l.component, l.place)).collect::<Vec<_>>().join("; ");
    let text =
        |reference: u32, body: String| Answer { reference, question: question(reference), body: Body::Text(body) };
    let mut out = vec![
        text(
            111,
            format!(
                "{}: {} at {venues}. Purposes: {purposes}. Visitors who consent are admitted by face at the gates; everyone else uses a ticket. Cameras count line crossings and zone occupancy; only differentially private counts leave the edge.",
                config.deployment.name, r.controller
            ),
        ),
        text(
            112,
            format!(
                "Controller: {} (contact: {}); DPO: {}. {processors}. The matcher's operator sees ciphertexts only.",
                r.controller, r.controller_contact, r.dpo_contact
            ),
        ),
        text(
            113,
            "GDPR (Art. 5, 6, 9, 25, 30, 32, 35); EDPB Guidelines 3/2019 on video devices and 05/2022 on facial recognition; WP248 rev.01; ISO/IEC 27001 controls for the hosting; TLS 1.2/1.3.".into(),
        ),
        text(121, format!("{categories}.")),
        text(
            122,
            format!(
                "Enrolment: the visitor accepts the privacy notice, the key holder encrypts the template and the matcher stores the ciphertext. Access: the gate encrypts a probe, the matcher evaluates it against the encrypted gallery, the key holder decrypts the result and the gate shows green or red; a refused visitor gets the reason on their phone. Counting: frames are analysed in memory at the edge, counts are noised ({}) and published; analytics aggregates them for dashboards. Retention: {}.",
                facts.dp_statement(),
                facts.retention_statement()
            ),
        ),
        text(
            123,
            format!(
                "{locations}. {} gate(s) and {} camera(s) with edge agents; an MQTT broker; the matcher; the analytics service (DuckDB file); the audit log.",
                facts.gates, facts.cameras
            ),
        ),
        text(211, format!("{purposes}. Each purpose is explicit in the privacy notice and displayed on signage.")),
        text(212, format!("{bases}.")),
        text(
            213,
            format!(
                "Face access is optional (ticket alternative always available). Templates are {}-dimensional embeddings quantised to {} bits and encrypted; no photo is kept. Counting keeps no image, no track and no raw count: {}.",
                facts.fhe.dim,
                facts.fhe.quant_bits,
                facts.dp_statement()
            ),
        ),
        text(
            214,
            format!(
                "Templates are refreshed by re-enrolment; a key rotation forces it. Match threshold cosine {}; decisions agree with the plaintext computation exactly (tested). Counts carry their noise standard deviation and are flagged below {} times it.",
                facts.threshold, config.privacy.flag_below_std_multiple
            ),
        ),
        text(215, format!("{}.", facts.retention_statement())),
        text(
            221,
            "Signage at every entrance and counted area (generated per venue in English and German), the privacy notice shown before enrolment, and the denial reason on the visitor's phone.".into(),
        ),
        text(
            222,
            "Explicit consent per venue and purpose against the current versioned privacy notice, recorded before any biometric processing; withdrawal takes effect for the next match; a new notice version voids older grants.".into(),
        ),
        text(
            223,
            format!("On request to {}; a self-service export is in the action plan.", r.dpo_contact),
        ),
        text(
            224,
            "Erasure removes the subject's template from the matcher's memory and gallery file at once; rectification is re-enrolment. Self-service erasure with crypto-shredding is in the action plan.".into(),
        ),
        text(
            225,
            "Withdrawing consent stops face matching immediately; the ticket alternative remains. Objection to counting is met by the anonymity of the released counts (no individual is singled out).".into(),
        ),
        text(226, processors),
        text(227, transfers),
    ];
    for assessment in risks {
        let base = 300 + assessment.risk.item() * 10;
        let controls: Vec<String> = measures
            .iter()
            .filter(|m| m.risks.contains(&assessment.risk))
            .map(|m| if m.status == Status::Planned { format!("{} (planned)", m.title) } else { m.title.to_owned() })
            .collect();
        let list = |n: u32, items: Vec<String>| Answer {
            reference: base + n,
            question: question(base + n),
            body: Body::List(items),
        };
        out.push(list(1, assessment.impacts.clone()));
        out.push(list(2, assessment.threats.clone()));
        out.push(list(3, assessment.sources.clone()));
        out.push(list(4, controls));
        out.push(Answer {
            reference: base + 5,
            question: question(base + 5),
            body: Body::Gauge(assessment.severity, assessment.severity_why.clone()),
        });
        out.push(Answer {
            reference: base + 6,
            question: question(base + 6),
            body: Body::Gauge(assessment.likelihood, assessment.likelihood_why.clone()),
        });
    }
    out
}
