//! What the DPIA says, built from the configuration: the live technical parameters, the
//! measures (each existing one names the tests that prove it), the three CNIL risks and the
//! answers to every question of the CNIL PIA structure.

use passage_config::{Config, LegalBasis, MatchLink, MatchingMode};
use passage_fhe::{Params, SECURITY_NOTE};
use passage_wire::NoiseMechanism;

/// Whether a measure is in place or still to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Implemented and tested.
    Existing,
    /// In the action plan.
    Planned,
}

/// The three CNIL risks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Risk {
    /// Illegitimate access to data (CNIL 3.2).
    Access,
    /// Unwanted modification of data (CNIL 3.3).
    Modification,
    /// Data disappearance (CNIL 3.4).
    Disappearance,
}

impl Risk {
    /// All three, in CNIL order.
    pub const ALL: [Risk; 3] = [Risk::Access, Risk::Modification, Risk::Disappearance];

    /// CNIL item number (2, 3, 4 of section 3).
    pub fn item(self) -> u32 {
        match self {
            Risk::Access => 2,
            Risk::Modification => 3,
            Risk::Disappearance => 4,
        }
    }

    /// English title.
    pub fn title(self) -> &'static str {
        match self {
            Risk::Access => "Illegitimate access to data",
            Risk::Modification => "Unwanted modification of data",
            Risk::Disappearance => "Data disappearance",
        }
    }
}

/// A technical or organisational measure.
#[derive(Debug, Clone, PartialEq)]
pub struct Measure {
    /// Stable number (the CNIL measure id; evaluations refer to `3.1.<number>`).
    pub number: u32,
    /// Short code.
    pub code: &'static str,
    /// Title.
    pub title: &'static str,
    /// What it is, with the live parameters.
    pub description: String,
    /// In place or planned.
    pub status: Status,
    /// Risks it addresses.
    pub risks: Vec<Risk>,
    /// Tests proving the claim, as `path::test_name` (empty for planned measures).
    pub evidence: Vec<&'static str>,
    /// For planned measures: what remains and where it is tracked.
    pub action: Option<&'static str>,
}

/// A risk as assessed.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskAssessment {
    /// Which.
    pub risk: Risk,
    /// Main impacts on data subjects.
    pub impacts: Vec<String>,
    /// Main threats.
    pub threats: Vec<String>,
    /// Risk sources.
    pub sources: Vec<String>,
    /// Severity 1..=4 with the measures in place.
    pub severity: u8,
    /// Why.
    pub severity_why: String,
    /// Likelihood 1..=4 with the measures in place.
    pub likelihood: u8,
    /// Why.
    pub likelihood_why: String,
    /// Likelihood once the planned measures are done.
    pub residual_likelihood: u8,
}

/// Names of the CNIL gauge levels.
pub fn gauge_name(level: u8) -> &'static str {
    match level {
        1 => "Negligible",
        2 => "Limited",
        3 => "Significant",
        4 => "Maximum",
        _ => "Undefined",
    }
}

/// The live technical parameters, read from the configuration and the FHE scheme.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    /// FHE parameter set.
    pub fhe: Params,
    /// Security statement of the parameter set.
    pub fhe_security: &'static str,
    /// Default matching mode.
    pub matching_mode: &'static str,
    /// Cosine threshold.
    pub threshold: f64,
    /// How the gates send encrypted probes to the matcher (`matching.link`).
    pub match_link: MatchLink,
    /// ε per venue per day for one crossing.
    pub epsilon_per_day: f64,
    /// δ per venue per day.
    pub delta_per_day: f64,
    /// Whether δ is spent (Gaussian mechanisms).
    pub uses_delta: bool,
    /// Mechanism name.
    pub mechanism: &'static str,
    /// Release interval.
    pub interval_secs: u32,
    /// Crossings per person-day of the person-day statement.
    pub max_crossings: u32,
    /// ε per person-day.
    pub person_day_epsilon: f64,
    /// Retention per venue: (venue name, consent days, denial hours, image hours, count days,
    /// audit days).
    pub retention: Vec<(String, u32, u32, u32, u32, u32)>,
    /// Gates and cameras in total.
    pub gates: usize,
    /// Cameras in total.
    pub cameras: usize,
}

fn mechanism_name(mechanism: NoiseMechanism) -> &'static str {
    match mechanism {
        NoiseMechanism::DiscreteLaplace => "discrete Laplace per interval",
        NoiseMechanism::DiscreteGaussian => "discrete Gaussian per interval",
        NoiseMechanism::BinaryTree => "binary-tree continual release (discrete Laplace)",
        NoiseMechanism::SqrtFactorization => "square-root matrix factorisation (discrete Gaussian, zCDP)",
    }
}

impl Facts {
    /// How encrypted probes and results travel between the gates and the matcher.
    pub fn match_link_statement(&self) -> &'static str {
        match self.match_link {
            MatchLink::Mqtt => "probes and results over the MQTT broker",
            MatchLink::Https => {
                "probes and results straight to the matcher's HTTPS API (mutual TLS, the edge's certificate); enrolments and erasures over the MQTT broker"
            }
        }
    }

    /// Reads the facts of `config`.
    pub fn of(config: &Config) -> Facts {
        let p = &config.privacy;
        let uses_delta = matches!(p.mechanism, NoiseMechanism::DiscreteGaussian | NoiseMechanism::SqrtFactorization);
        Facts {
            fhe: Params::DEFAULT,
            fhe_security: SECURITY_NOTE,
            matching_mode: match config.matching.mode {
                MatchingMode::Score => "score (the key holder decrypts one score per template)",
                MatchingMode::Decision => "decision (the key holder decrypts match bits only)",
            },
            threshold: config.matching.threshold,
            match_link: config.matching.link,
            epsilon_per_day: p.epsilon_per_day,
            delta_per_day: p.delta_per_day,
            uses_delta,
            mechanism: mechanism_name(p.mechanism),
            interval_secs: p.interval_secs,
            max_crossings: p.max_crossings_per_person_day,
            person_day_epsilon: p.epsilon_per_day * f64::from(p.max_crossings_per_person_day),
            retention: config
                .venues
                .iter()
                .map(|v| {
                    let r = &v.retention;
                    (
                        v.name.clone(),
                        r.consent_evidence_days,
                        r.denial_notice_hours,
                        r.evidence_image_hours,
                        r.counts_days,
                        r.audit_days,
                    )
                })
                .collect(),
            gates: config.venues.iter().map(|v| v.gates.len()).sum(),
            cameras: config.venues.iter().map(|v| v.cameras.len()).sum(),
        }
    }

    /// "ε = 1 per venue per day (δ = 1e-6)" and the person-day statement.
    pub fn dp_statement(&self) -> String {
        let delta = if self.uses_delta { format!(", δ = {:e}", self.delta_per_day) } else { String::new() };
        format!(
            "ε = {} per venue per day for one line crossing{delta}; for a person crossing at most {} times a day, ε = {} per person-day; mechanism: {}; released every {} s",
            self.epsilon_per_day, self.max_crossings, self.person_day_epsilon, self.mechanism, self.interval_secs
        )
    }

    /// One sentence of retention per venue.
    pub fn retention_statement(&self) -> String {
        self.retention
            .iter()
            .map(|(venue, consent, denial, image, counts, audit)| {
                format!(
                    "{venue}: consent evidence {consent} days, denial notices {denial} hours, evidence images {image} hours, noised counts {counts} days, audit log {audit} days"
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The FHE parameter sentence.
    pub fn fhe_statement(&self) -> String {
        let p = &self.fhe;
        format!(
            "TFHE (tfhe-rs) GLWE N = {}, {}-dimensional templates quantised to {} bits, {} templates per ciphertext, parameter set id {:016x}; {}",
            p.polynomial_size,
            p.dim,
            p.quant_bits,
            p.templates_per_glwe(),
            p.id(),
            self.fhe_security
        )
    }
}

/// The measures, existing and planned.
pub fn measures(config: &Config, facts: &Facts) -> Vec<Measure> {
    use Risk::{Access, Disappearance, Modification};
    use Status::Existing;
    let mode = facts.matching_mode;
    let threshold = facts.threshold;
    let mut out = vec![
        Measure {
            number: 1,
            code: "FHE",
            title: "Encrypted face matching",
            description: format!(
                "Templates and probes are encrypted under the venue's key before they leave the gate; the matcher computes on ciphertexts only and never holds a key that decrypts them. {}. Result mode: {mode}; match threshold: cosine {threshold}.",
                facts.fhe_statement()
            ),
            status: Existing,
            risks: vec![Access],
            evidence: vec![
                "fhe/src/tests.rs::scores_equal_the_plaintext_computation",
                "fhe/src/tests.rs::decisions_equal_the_plaintext_comparison",
                "fhe/src/params.rs::the_noise_bound_meets_tfhe_secure_noise_formula",
            ],
            action: None,
        },
        Measure {
            number: 2,
            code: "KEYS",
            title: "Key holder on the premises, secret key encrypted at rest",
            description: "Only the venue's key holder (beside the gates) holds the FHE secret key, encrypted at rest under a passphrase (Argon2id, AES-256-GCM); rotation destroys the old key and forces re-enrolment.".into(),
            status: Existing,
            risks: vec![Access, Modification],
            evidence: vec![
                "edge-agent/src/keystore.rs::a_stored_key_round_trips_and_is_encrypted_at_rest",
                "edge-agent/src/keystore.rs::wrong_passphrase_tampering_and_moving_are_refused",
                "tests/integration/keys.rs::keys_are_stored_encrypted_and_rotation_forces_re_enrolment",
            ],
            action: None,
        },
        Measure {
            number: 3,
            code: "DP",
            title: "Differentially private counts",
            description: format!(
                "Counts leave the edge only with noise from exact samplers fed by a CSPRNG, within a per-venue daily budget kept in a ledger: {}.",
                facts.dp_statement()
            ),
            status: Existing,
            risks: vec![Access],
            evidence: vec![
                "dp/src/audit.rs::continual_mechanisms_keep_their_epsilon_on_neighbouring_streams",
                "dp/src/lib.rs::discrete_laplace_has_the_claimed_distribution",
                "dp/src/ledger.rs::charges_beyond_the_day_budget_are_refused_and_days_are_separate",
                "edge-agent/src/count/release.rs::a_spent_day_releases_nothing_and_the_next_day_does",
            ],
            action: None,
        },
        Measure {
            number: 4,
            code: "EDGE",
            title: "Frames, detections and tracks stay in memory at the edge",
            description: "Camera frames, detection boxes and track identifiers exist only in the edge agent's memory; they are never written, logged or published, and their debug output shows no boxes, ids or counts.".into(),
            status: Existing,
            risks: vec![Access],
            evidence: vec![
                "edge-agent/src/count/track.rs::debug_prints_no_ids_or_positions",
                "edge-agent/src/count/detect.rs::debug_output_shows_no_boxes",
                "dp/src/continual.rs::debug_output_shows_no_counts",
            ],
            action: None,
        },
        Measure {
            number: 5,
            code: "CONSENT",
            title: "Explicit consent per venue, with a non-biometric alternative",
            description: "Face matching runs only for a subject with a current explicit grant (Art. 9(2)(a)) for that venue and purpose, against the current privacy notice; withdrawal takes effect for the next match. The configuration is refused when a biometric purpose lacks explicit consent or a non-biometric access alternative.".into(),
            status: Existing,
            risks: vec![Access],
            evidence: vec![
                "policy/src/consent.rs::consent_is_per_venue_and_purpose_and_withdrawal_is_immediate",
                "policy/src/consent.rs::a_new_notice_voids_old_grants",
                "config/src/check.rs::biometric_purposes_need_explicit_consent",
            ],
            action: None,
        },
        Measure {
            number: 6,
            code: "ERASE",
            title: "Erasure removes every byte of a template",
            description: "Erasing a subject frees their gallery slot and rewrites the gallery file so that no byte of the template remains.".into(),
            status: Existing,
            risks: vec![Access],
            evidence: vec!["matcher/src/store.rs::rewrite_removes_every_byte_of_an_erased_template"],
            action: None,
        },
        Measure {
            number: 7,
            code: "AUDIT",
            title: "Tamper-evident audit log",
            description: "Consents, enrolments, access decisions and DPIA sign-offs are appended to a SHA-256 hash chain with signed Ed25519 checkpoints, holding pseudonymous references only; `passage audit verify` names the first modified, removed or reordered entry.".into(),
            status: Existing,
            risks: vec![Modification],
            evidence: vec![
                "policy/src/audit/chain.rs::an_intact_chain_verifies_and_each_kind_of_change_is_found_at_its_index",
                "policy/src/audit/chain.rs::checkpoints_catch_a_rewritten_tail_truncation_and_forged_signatures",
                "policy/src/audit/store.rs::a_log_survives_reopening_and_a_modified_entry_is_reported_at_its_index",
            ],
            action: None,
        },
        Measure {
            number: 8,
            code: "TLS",
            title: "TLS on every HTTP interface",
            description: "The matcher and analytics APIs and the dashboards are served over TLS 1.2/1.3 only (rustls).".into(),
            status: Existing,
            risks: vec![Access, Modification],
            evidence: vec!["tests/integration/dashboard.rs::the_dashboard_shows_live_data_in_chromium_and_follows_a_range_change"],
            action: None,
        },
        Measure {
            number: 9,
            code: "RETAIN",
            title: "Retention of counts enforced",
            description: format!(
                "The analytics service deletes noised counts older than their retention period every hour and logs what it deleted ({}).",
                facts.retention.iter().map(|r| format!("{}: {} days", r.0, r.4)).collect::<Vec<_>>().join(", ")
            ),
            status: Existing,
            risks: vec![Access],
            evidence: vec!["analytics/src/store/queries.rs::the_retention_sweep_deletes_what_expired_and_logs_it"],
            action: None,
        },
        Measure {
            number: 10,
            code: "INTEGRITY",
            title: "Checksummed, crash-safe storage",
            description: "Galleries are append-only files with per-record checksums; a torn or flipped record is detected; analytics keeps every acknowledged record exactly once across a kill -9.".into(),
            status: Existing,
            risks: vec![Modification, Disappearance],
            evidence: vec![
                "matcher/src/store.rs::appends_survive_reopen_and_a_torn_tail_is_dropped",
                "matcher/src/store.rs::a_flipped_bit_is_caught_by_the_checksum",
                "tests/integration/analytics.rs::kill_9_during_ingest_keeps_every_acknowledged_record_exactly_once",
            ],
            action: None,
        },
        Measure {
            number: 11,
            code: "SPOOL",
            title: "Store-and-forward of counts",
            description: format!(
                "Noised counts are spooled at the edge (at most {} MiB per venue) and republished until acknowledged, so a broker outage loses nothing.",
                config.spool.max_bytes_per_venue / (1024 * 1024)
            ),
            status: Existing,
            risks: vec![Disappearance],
            evidence: vec!["tests/integration/spool.rs::store_and_forward_loses_and_duplicates_nothing_across_a_broker_outage"],
            action: None,
        },
        Measure {
            number: 12,
            code: "INPUT",
            title: "Bounded decoding of untrusted input",
            description: "Every message is length-checked before allocation and decoded strictly; malformed input is refused and quarantined without quoting its content.".into(),
            status: Existing,
            risks: vec![Modification],
            evidence: vec![
                "wire/src/frame.rs::a_hostile_length_prefix_is_refused_before_allocation",
                "wire/src/messages.rs::malformed_corpus_is_refused",
                "analytics/src/ingest.rs::undecodable_payloads_are_refused_without_quoting_them",
            ],
            action: None,
        },
        Measure {
            number: 13,
            code: "BUSY",
            title: "Back-pressure instead of overload",
            description: format!(
                "The matcher queues at most {} requests and answers \"busy\" beyond; the gate then offers the ticket alternative.",
                config.matching.queue
            ),
            status: Existing,
            risks: vec![Disappearance],
            evidence: vec!["tests/integration/broker.rs::the_matcher_answers_busy_when_its_queue_is_full"],
            action: None,
        },
        Measure {
            number: 14,
            code: "ACCOUNTS",
            title: "Staff accounts with a second factor, per-venue scoping",
            description: "Operator, venue manager and DPO accounts with Argon2id passwords and TOTP (one use per step), hashed session and bearer tokens, per-account lockout and per-address rate limits, and per-venue scoping of every page and API (the dashboard, the DPO page and their APIs, in `passage analytics serve` and `passage demo` with `--accounts`). Visitors reach only their own data with their access key; the matcher's API admits devices by certificate only.".into(),
            status: Existing,
            risks: vec![Access],
            evidence: vec![
                "tests/integration/auth.rs::logins_need_a_fresh_code_and_venues_and_roles_are_enforced",
                "tests/integration/auth.rs::the_demo_puts_its_dashboard_and_dpo_page_behind_staff_login",
                "policy/src/accounts.rs::login_needs_password_and_a_fresh_code_and_a_replayed_code_is_refused",
                "policy/src/accounts.rs::five_failures_lock_the_account_for_fifteen_minutes",
            ],
            action: None,
        },
        Measure {
            number: 15,
            code: "MTLS",
            title: "Device certificates and topic ACLs",
            description: "One client certificate per gate, camera, edge agent and service from the deployment's own CA (`passage pki`: ECDSA P-256, revocation list). The device gateway in front of the broker requires mutual TLS, checks the revocation list, binds each MQTT client id to its certificate and lets each device publish and subscribe only on its own topics; a revocation closes the device's open connections. The matcher API requires a client certificate. For Mosquitto, the same rules are generated as its ACL file.".into(),
            status: Existing,
            risks: vec![Access, Modification],
            evidence: vec![
                "tests/integration/pki.rs::the_gateway_enforces_certificates_topic_rules_and_revocation",
                "tests/integration/pki.rs::mosquitto_with_the_generated_acl_refuses_another_cameras_topic",
                "tests/integration/pki.rs::https_listeners_that_require_client_certificates_check_the_crl",
                "policy/src/devices.rs::a_camera_publishes_only_its_own_counts",
            ],
            action: None,
        },
        Measure {
            number: 16,
            code: "SHRED",
            title: "Per-subject encryption, crypto-shredding and self-service rights",
            description: "Consent evidence, contacts and linked tickets encrypted per subject; erasure destroys the key with a tombstone in the audit log (a restored backup cannot bring it back); visitors export, withdraw (the template is erased before the answer) and erase themselves on the portal with their access key.".into(),
            status: Existing,
            risks: vec![Access],
            evidence: vec![
                "tests/integration/portal.rs::a_visitor_registers_with_a_photo_is_recognised_exports_withdraws_and_erases",
                "tests/integration/portal.rs::the_registration_page_works_in_chromium_and_erasure_leaves_nothing_readable",
            ],
            action: None,
        },
        Measure {
            number: 17,
            code: "SWEEP",
            title: "Retention sweepers for every category",
            description: format!(
                "Sweepers for consent evidence, denial notices and evidence images in every service, and pruning of the audit log behind a signed base checkpoint ({}).",
                facts.retention_statement()
            ),
            status: Existing,
            risks: vec![Access],
            evidence: vec![
                "policy/src/subjects.rs::retention_removes_expired_records_and_shreds_subjects_left_with_none",
                "edge-agent/src/notices.rs::notices_expire_are_bounded_and_forgotten",
                "edge-agent/src/evidence.rs::frames_are_kept_until_their_expiry_and_strays_are_removed",
                "analytics/src/store/queries.rs::the_retention_sweep_deletes_what_expired_and_logs_it",
                "policy/src/audit/store.rs::pruning_keeps_the_rest_verifiable_behind_a_signed_base",
            ],
            action: None,
        },
        Measure {
            number: 18,
            code: "SCAN",
            title: "End-to-end privacy scan",
            description: "After a demo run with real photos through the portal and the gates, every file, log line and MQTT message is scanned for image bytes and pixels, embeddings (binary at every width and alignment, and as text), names, contacts, ticket codes and access keys; a build that logs the probe embedding must be caught.".into(),
            status: Existing,
            risks: vec![Access],
            evidence: vec!["tests/privacy_scan/main.rs::a_demo_run_with_real_faces_leaves_no_personal_data_anywhere"],
            action: None,
        },
        Measure {
            number: 19,
            code: "ANON",
            title: "Images leave the edge only anonymised; evidence images expire",
            description: format!(
                "The only image type the edge can write or send is an anonymised frame: every face found by two detectors (at eager thresholds, repeated until a pass finds none) is replaced by a coarse mosaic over its box enlarged by 30%. Evidence mode is {}; evidence images are kept at most {} hour(s) and deleted by the agent itself, stray files included.",
                if config.faces.evidence { "on" } else { "off (the default)" },
                config.venues.iter().map(|v| v.retention.evidence_image_hours).max().unwrap_or(0)
            ),
            status: Existing,
            risks: vec![Access],
            evidence: vec![
                "tests/integration/faces.rs::anonymised_images_show_no_face_to_any_detector",
                "tests/integration/faces.rs::anonymised_video_shows_no_face_to_any_detector",
                "edge-agent/src/evidence.rs::frames_are_kept_until_their_expiry_and_strays_are_removed",
                "tests/integration/gate.rs::faces_and_tickets_open_the_gate_under_every_condition",
            ],
            action: None,
        },
    ];
    out.sort_by_key(|m| m.number);
    out
}

/// The three risks, assessed with the measures in place.
pub fn risks(measures: &[Measure]) -> Vec<RiskAssessment> {
    let open = |risk: Risk| measures.iter().filter(|m| m.status == Status::Planned && m.risks.contains(&risk)).count();
    let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    Risk::ALL
        .iter()
        .map(|&risk| {
            let open = open(risk);
            let (likelihood, residual) = if open > 0 { (2, 1) } else { (1, 1) };
            let likelihood_why = if open > 0 {
                format!("{open} planned measure(s) still open (see the action plan); with them in place: {}", gauge_name(residual))
            } else {
                "Every measure against this risk is in place and tested.".into()
            };
            match risk {
                Risk::Access => RiskAssessment {
                    risk,
                    impacts: strings(&[
                        "visitors identified or tracked across visits",
                        "biometric templates exposed",
                        "attendance revealed to third parties",
                    ]),
                    threats: strings(&[
                        "compromise of the matcher host or its provider",
                        "theft of a disk or backup",
                        "network interception",
                        "staff browsing dashboards beyond their venue",
                    ]),
                    sources: strings(&["external attackers", "hosting provider staff", "venue staff"]),
                    severity: 2,
                    severity_why: "Templates and probes are ciphertexts outside the key holder and counts are differentially private, so a breach of the matcher or analytics yields no usable biometric data and no individual movements; what remains is the key holder's premises and consent evidence.".into(),
                    likelihood,
                    likelihood_why,
                    residual_likelihood: residual,
                },
                Risk::Modification => RiskAssessment {
                    risk,
                    impacts: strings(&["a visitor wrongly refused or admitted", "a falsified audit trail"]),
                    threats: strings(&[
                        "forged match requests or responses",
                        "tampering with the audit log",
                        "corrupted storage",
                    ]),
                    sources: strings(&["external attackers", "compromised devices", "malicious insiders"]),
                    severity: 2,
                    severity_why: "A wrong decision is visible at the gate and the ticket alternative always exists; audit entries cannot be changed undetected by anyone without the signing key.".into(),
                    likelihood,
                    likelihood_why,
                    residual_likelihood: residual,
                },
                Risk::Disappearance => RiskAssessment {
                    risk,
                    impacts: strings(&["a visitor must enrol again or use a ticket", "gaps in occupancy figures"]),
                    threats: strings(&["disk failure", "broker outage", "accidental deletion"]),
                    sources: strings(&["hardware failure", "operator error"]),
                    severity: 1,
                    severity_why: "Losing a template only means re-enrolling or using the ticket; counts are anonymous aggregates.".into(),
                    likelihood,
                    likelihood_why,
                    residual_likelihood: residual,
                },
            }
        })
        .collect()
}

/// Art. 6 / Art. 9 wording of a legal basis.
pub fn legal_basis(basis: LegalBasis) -> &'static str {
    match basis {
        LegalBasis::Consent => "consent, Art. 6(1)(a)",
        LegalBasis::Contract => "performance of a contract, Art. 6(1)(b)",
        LegalBasis::LegalObligation => "legal obligation, Art. 6(1)(c)",
        LegalBasis::LegitimateInterests => "legitimate interests, Art. 6(1)(f)",
        LegalBasis::ExplicitConsent => "explicit consent, Art. 6(1)(a) and Art. 9(2)(a)",
    }
}
