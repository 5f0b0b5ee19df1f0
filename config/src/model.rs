//! The configuration model and its defaults.

use std::path::PathBuf;

use passage_wire::{Id, NoiseMechanism};
use serde::{Deserialize, Serialize};

use crate::register::Register;

pub(crate) fn id(s: &str) -> Id {
    Id::new(s).unwrap_or_else(|error| panic!("built-in identifier {s:?} is invalid: {error}"))
}

/// A whole deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Name and storage.
    #[serde(default)]
    pub deployment: Deployment,
    /// MQTT broker.
    #[serde(default)]
    pub broker: Broker,
    /// HTTP(S) listeners.
    #[serde(default)]
    pub http: Http,
    /// Differential privacy of counts.
    #[serde(default)]
    pub privacy: Privacy,
    /// Encrypted face matching.
    #[serde(default)]
    pub matching: Matching,
    /// The edge's face path at the gates: detection, liveness, de-duplication, evidence mode.
    #[serde(default)]
    pub faces: Faces,
    /// The edge's store-and-forward spool of noised count records.
    #[serde(default)]
    pub spool: Spool,
    /// The analytics service: capacity alerts, forecasts, reports.
    #[serde(default)]
    pub analytics: Analytics,
    /// Purposes of processing (the processing register's spine).
    #[serde(default = "default_purposes")]
    pub purposes: Vec<Purpose>,
    /// The venues.
    #[serde(default = "default_venues")]
    pub venues: Vec<Venue>,
    /// The processing register (Art. 30) and the DPIA's administrative facts.
    #[serde(default)]
    pub register: Register,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            deployment: Deployment::default(),
            broker: Broker::default(),
            http: Http::default(),
            privacy: Privacy::default(),
            matching: Matching::default(),
            faces: Faces::default(),
            spool: Spool::default(),
            analytics: Analytics::default(),
            purposes: default_purposes(),
            venues: default_venues(),
            register: Register::default(),
        }
    }
}

impl Config {
    /// Looks a venue up by id.
    pub fn venue(&self, venue: &Id) -> Option<&Venue> {
        self.venues.iter().find(|v| &v.id == venue)
    }

    /// How long the audit log keeps an entry, in seconds: the longest `retention.audit_days` of
    /// any venue (one log serves them all), three years without venues.
    pub fn audit_retention_secs(&self) -> i64 {
        i64::from(self.venues.iter().map(|v| v.retention.audit_days).max().unwrap_or(3 * 365)) * 86_400
    }
}

/// Deployment name and where services keep their state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Deployment {
    /// Human-readable name.
    pub name: String,
    /// Directory for galleries, key stores, the analytics database, spools and logs. When
    /// absent, `passage demo` uses a fresh temporary directory.
    pub data_dir: Option<PathBuf>,
}

impl Default for Deployment {
    fn default() -> Deployment {
        Deployment { name: "Passage demo deployment".into(), data_dir: None }
    }
}

/// The MQTT broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Broker {
    /// Start an embedded broker (rumqttd). When false, connect to `host:port`.
    pub embedded: bool,
    /// Broker host (loopback for the embedded broker).
    pub host: String,
    /// Broker port; 0 lets the embedded broker pick a free one.
    pub port: u16,
    /// An external broker is reached over mTLS with the certificates of the data directory's
    /// device CA (`{data_dir}/pki`): give the broker that CA, a server certificate from
    /// `passage pki server --dir {data_dir}/pki` and the ACL of `passage pki acl`. The
    /// embedded broker always sits behind the mTLS device gateway.
    pub tls: bool,
}

impl Default for Broker {
    fn default() -> Broker {
        Broker { embedded: true, host: "127.0.0.1".into(), port: 1883, tls: false }
    }
}

/// HTTP(S) listeners.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Analytics API and dashboard.
    pub analytics: String,
    /// Matcher API.
    pub matcher: String,
    /// The edge agent's visitor portal (registration, consent, export, erasure).
    pub portal: String,
}

impl Default for Http {
    fn default() -> Http {
        Http { analytics: "127.0.0.1:8443".into(), matcher: "127.0.0.1:8444".into(), portal: "127.0.0.1:8445".into() }
    }
}

/// Differential privacy of released counts. The privacy unit is one line crossing (event
/// level); a person-day guarantee holds for people who cross at most
/// `max_crossings_per_person_day` times a day, at `epsilon_per_day * max_crossings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Privacy {
    /// Budget per venue per day for one crossing.
    pub epsilon_per_day: f64,
    /// Delta per venue per day, spent only by the Gaussian mechanisms (square-root
    /// factorisation, discrete Gaussian); the Laplace ones are pure DP.
    pub delta_per_day: f64,
    /// Release interval in seconds; must divide a day.
    pub interval_secs: u32,
    /// Mechanism for running totals and occupancy.
    pub mechanism: NoiseMechanism,
    /// Crossings per person per day assumed by the person-day statement.
    pub max_crossings_per_person_day: u32,
    /// Cells whose noisy value is below this multiple of the noise std are flagged.
    pub flag_below_std_multiple: f64,
}

impl Default for Privacy {
    fn default() -> Privacy {
        Privacy {
            epsilon_per_day: 1.0,
            delta_per_day: 1e-6,
            interval_secs: 60,
            mechanism: NoiseMechanism::SqrtFactorization,
            max_crossings_per_person_day: 4,
            flag_below_std_multiple: 2.0,
        }
    }
}

/// Result mode of encrypted matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchingMode {
    /// The key holder decrypts scores and thresholds them.
    Score,
    /// The matcher bootstraps a match bit per template.
    Decision,
}

/// How the gates' key holders send match requests to the matcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchLink {
    /// Over the MQTT bus, as every other message (request and response through the broker).
    #[default]
    Mqtt,
    /// Straight to the matcher's HTTPS API (`http.matcher`, mutual TLS with the edge's
    /// certificate): one hop instead of two through the broker, for large galleries whose
    /// score responses are tens of megabytes.
    Https,
}

/// Encrypted face matching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Matching {
    /// Result mode.
    pub mode: MatchingMode,
    /// Cosine similarity at or above which a probe matches a template.
    pub threshold: f64,
    /// Requests waiting before the matcher answers "busy".
    pub queue: usize,
    /// Evaluation threads; 0 means one per core.
    pub threads: usize,
    /// How the gates send match requests: `mqtt` (default) or `https`.
    pub link: MatchLink,
}

impl Default for Matching {
    fn default() -> Matching {
        Matching { mode: MatchingMode::Score, threshold: 0.5, queue: 32, threads: 0, link: MatchLink::Mqtt }
    }
}

/// The edge's face path at the gates (see docs/faces.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faces {
    /// Minimum detector score (CenterFace heatmap) to keep a face.
    pub min_detection_score: f64,
    /// Longest side of the detector's input; larger frames are scaled down.
    pub detect_max_side: u32,
    /// Faces smaller than this (shorter box side, pixels) are not embedded.
    pub min_face_px: u32,
    /// Liveness score a face needs to be probed; absent: liveness not required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_liveness: Option<f64>,
    /// A face within this many seconds of a probed one, and as similar as
    /// `same_person_cosine`, is the same person still approaching: not probed again.
    pub approach_window_secs: u32,
    /// Cosine above which two faces in the window are the same person.
    pub same_person_cosine: f64,
    /// Evidence mode: anonymised frames of gate decisions kept on the edge for the venue's
    /// `retention.evidence_image_hours`, then deleted by the agent. Off by default.
    pub evidence: bool,
}

impl Default for Faces {
    fn default() -> Faces {
        Faces {
            min_detection_score: 0.5,
            detect_max_side: 320,
            min_face_px: 40,
            min_liveness: None,
            approach_window_secs: 10,
            same_person_cosine: 0.5,
            evidence: false,
        }
    }
}

/// The edge's store-and-forward spool: every noised count record is written to disk before it
/// is published and kept until analytics acknowledges it, so a broker outage loses nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Spool {
    /// Largest spool file per venue, in bytes (1 MiB to 1 GiB). When it is reached, the oldest
    /// unpublished records are merged into coarser ones (totals survive), and only when nothing
    /// can be merged are the oldest records dropped.
    pub max_bytes_per_venue: u64,
    /// Seconds to wait for analytics' acknowledgement before a record is published again
    /// (doubling on every retry, up to eight times this), 1 to 600.
    pub ack_timeout_secs: u32,
}

/// Smallest accepted [`Spool::max_bytes_per_venue`]: room for many of the largest records.
pub const MIN_SPOOL_BYTES: u64 = 1024 * 1024;
/// Largest accepted [`Spool::max_bytes_per_venue`] (the spool is held in memory while open).
pub const MAX_SPOOL_BYTES: u64 = 1024 * 1024 * 1024;

impl Default for Spool {
    fn default() -> Spool {
        Spool { max_bytes_per_venue: 64 * 1024 * 1024, ack_timeout_secs: 10 }
    }
}

/// The analytics service's capacity alerts and reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Analytics {
    /// A zone's capacity alert is raised when its noised occupancy reaches this fraction of
    /// its capacity (0 < alert_low < alert_high <= 2).
    pub alert_high: f64,
    /// A raised alert is cleared only when the occupancy falls to this fraction (hysteresis:
    /// noise around one threshold does not make the alert flap).
    pub alert_low: f64,
    /// How often the alert task looks at the latest occupancy, in seconds (1 to 3600).
    pub alert_every_secs: u32,
    /// An `http://` or `https://` URL each alert is also POSTed to as JSON (besides MQTT).
    pub alert_webhook: Option<String>,
    /// Buckets ahead the occupancy forecast covers (1 to 48).
    pub forecast_buckets: u32,
}

impl Default for Analytics {
    fn default() -> Analytics {
        Analytics { alert_high: 0.9, alert_low: 0.8, alert_every_secs: 10, alert_webhook: None, forecast_buckets: 6 }
    }
}

/// Legal basis of a purpose (GDPR article and paragraph).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LegalBasis {
    /// Art. 6(1)(a) consent.
    #[serde(rename = "art6-1-a")]
    Consent,
    /// Art. 6(1)(b) contract.
    #[serde(rename = "art6-1-b")]
    Contract,
    /// Art. 6(1)(c) legal obligation.
    #[serde(rename = "art6-1-c")]
    LegalObligation,
    /// Art. 6(1)(f) legitimate interests.
    #[serde(rename = "art6-1-f")]
    LegitimateInterests,
    /// Art. 9(2)(a) explicit consent (required for biometric identification).
    #[serde(rename = "art9-2-a")]
    ExplicitConsent,
}

/// A purpose of processing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Purpose {
    /// Identifier.
    pub id: Id,
    /// What the processing is for.
    pub description: String,
    /// Legal basis.
    pub legal_basis: LegalBasis,
    /// Whether special-category (biometric) data is processed.
    #[serde(default)]
    pub biometric: bool,
}

fn default_purposes() -> Vec<Purpose> {
    vec![
        Purpose {
            id: id("face-access"),
            description: "Admit registered visitors by encrypted face matching at the gates".into(),
            legal_basis: LegalBasis::ExplicitConsent,
            biometric: true,
        },
        Purpose {
            id: id("ticket-access"),
            description: "Admit visitors by QR ticket (the non-biometric alternative)".into(),
            legal_basis: LegalBasis::Contract,
            biometric: false,
        },
        Purpose {
            id: id("flow-analytics"),
            description: "Differentially private counts of crossings and zone occupancy".into(),
            legal_basis: LegalBasis::LegitimateInterests,
            biometric: false,
        },
    ]
}

/// A point in a camera's image, in pixels.
pub type Point = [f64; 2];

/// A venue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Venue {
    /// Identifier.
    pub id: Id,
    /// Display name.
    pub name: String,
    /// Zones.
    #[serde(default)]
    pub zones: Vec<Zone>,
    /// Counting lines.
    #[serde(default)]
    pub lines: Vec<Line>,
    /// Access gates.
    #[serde(default)]
    pub gates: Vec<Gate>,
    /// Cameras.
    #[serde(default)]
    pub cameras: Vec<Camera>,
    /// Retention rules.
    #[serde(default)]
    pub retention: Retention,
}

/// A polygonal zone with a capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    /// Identifier.
    pub id: Id,
    /// Display name.
    pub name: String,
    /// People allowed at once.
    pub capacity: u32,
    /// Outline, at least three points.
    pub polygon: Vec<Point>,
    /// Detector classes counted in this zone (`person`; `car`, `truck`... in a car park,
    /// where the detector reports them).
    #[serde(default = "default_classes")]
    pub classes: Vec<String>,
}

/// The classes counted when a line or zone configures none: people.
pub fn default_classes() -> Vec<String> {
    vec!["person".to_owned()]
}

/// A directed counting line: crossing it from its left to its right (looking from `from` to
/// `to`) counts as "in".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    /// Identifier.
    pub id: Id,
    /// Display name.
    pub name: String,
    /// Start point.
    pub from: Point,
    /// End point.
    pub to: Point,
    /// Detector classes counted on this line.
    #[serde(default = "default_classes")]
    pub classes: Vec<String>,
}

/// An access gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    /// Identifier.
    pub id: Id,
    /// Display name.
    pub name: String,
    /// Zone the gate admits to (its capacity is checked at the gate).
    pub zone: Id,
    /// Result mode for this gate; the deployment's `matching.mode` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matching: Option<MatchingMode>,
}

/// A counting camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Camera {
    /// Identifier.
    pub id: Id,
    /// Lines it counts.
    #[serde(default)]
    pub lines: Vec<Id>,
    /// Zones it watches.
    #[serde(default)]
    pub zones: Vec<Id>,
}

/// Retention per data category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Consent evidence, in days.
    pub consent_evidence_days: u32,
    /// Denial notices, in hours.
    pub denial_notice_hours: u32,
    /// Blurred evidence images, in hours (at most 6).
    pub evidence_image_hours: u32,
    /// Noised counts, in days.
    pub counts_days: u32,
    /// Audit log, in days.
    pub audit_days: u32,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            consent_evidence_days: 3 * 365,
            denial_notice_hours: 24,
            evidence_image_hours: 6,
            counts_days: 400,
            audit_days: 3 * 365,
        }
    }
}

/// The demo venue: an arena with two entrance gates, a concourse and two stands, in the
/// coordinates of a 1280x720 scene that the simulator walks people through.
fn default_venues() -> Vec<Venue> {
    let rect = |x0: f64, y0: f64, x1: f64, y1: f64| vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1]];
    vec![Venue {
        id: id("arena"),
        name: "Demo Arena".into(),
        zones: vec![
            Zone {
                id: id("concourse"),
                name: "Concourse".into(),
                capacity: 400,
                polygon: rect(0.0, 200.0, 1280.0, 420.0),
                classes: default_classes(),
            },
            Zone {
                id: id("stand-a"),
                name: "Stand A".into(),
                capacity: 150,
                polygon: rect(0.0, 440.0, 620.0, 720.0),
                classes: default_classes(),
            },
            Zone {
                id: id("stand-b"),
                name: "Stand B".into(),
                capacity: 150,
                polygon: rect(660.0, 440.0, 1280.0, 720.0),
                classes: default_classes(),
            },
        ],
        lines: vec![
            Line {
                id: id("north-gate"),
                name: "North entrance".into(),
                from: [100.0, 180.0],
                to: [600.0, 180.0],
                classes: default_classes(),
            },
            Line {
                id: id("east-gate"),
                name: "East entrance".into(),
                from: [700.0, 180.0],
                to: [1200.0, 180.0],
                classes: default_classes(),
            },
        ],
        gates: vec![
            Gate { id: id("north-1"), name: "North turnstile 1".into(), zone: id("concourse"), matching: None },
            Gate {
                id: id("east-1"),
                name: "East turnstile 1".into(),
                zone: id("concourse"),
                matching: Some(MatchingMode::Decision),
            },
        ],
        cameras: vec![
            Camera { id: id("cam-north"), lines: vec![id("north-gate")], zones: vec![] },
            Camera { id: id("cam-east"), lines: vec![id("east-gate")], zones: vec![] },
            Camera { id: id("cam-bowl"), lines: vec![], zones: vec![id("concourse"), id("stand-a"), id("stand-b")] },
        ],
        retention: Retention::default(),
    }]
}
