//! The messages of the protocol and their codecs.

use serde::{Deserialize, Serialize};

use crate::frame::{FrameReader, FrameWriter};
use crate::{DecodeError, Id, MAX_JSON_BYTES, PROTOCOL_VERSION};

/// Largest encrypted probe accepted (a GGSW ciphertext of the probe polynomial).
pub const MAX_PROBE_BYTES: usize = 512 * 1024;
/// Largest encrypted result accepted (scores or decision bits for a whole gallery).
pub const MAX_RESULT_BYTES: usize = 96 * 1024 * 1024;
/// Largest encrypted template accepted at enrolment.
pub const MAX_TEMPLATE_BYTES: usize = 128 * 1024;
/// Largest decision-mode evaluation key (about 30 MB at the default parameters).
pub const MAX_DECISION_KEY_BYTES: usize = 48 * 1024 * 1024;
/// Largest human-readable detail string in a response. Details never carry personal data.
pub const MAX_DETAIL_BYTES: usize = 256;
/// Most count items in one record.
pub const MAX_COUNT_ITEMS: usize = 512;

const KIND_MATCH_REQUEST: u8 = 0x01;
const KIND_MATCH_RESPONSE: u8 = 0x02;
const KIND_ENROL_REQUEST: u8 = 0x03;
const KIND_ENROL_RESPONSE: u8 = 0x04;
const KIND_DECISION_KEY: u8 = 0x05;

fn check_version(v: u32) -> Result<(), DecodeError> {
    if v == u32::from(PROTOCOL_VERSION) {
        Ok(())
    } else {
        Err(DecodeError::UnsupportedVersion { found: v, expected: PROTOCOL_VERSION })
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() > MAX_JSON_BYTES {
        return Err(DecodeError::Oversize { len: bytes.len(), limit: MAX_JSON_BYTES });
    }
    // Look at the version before the shape, so that a newer message says "version", not
    // "missing field".
    #[derive(Deserialize)]
    struct Versioned {
        v: u32,
    }
    let versioned: Versioned = serde_json::from_slice(bytes).map_err(|error| DecodeError::Json(error.to_string()))?;
    check_version(versioned.v)?;
    serde_json::from_slice(bytes).map_err(|error| DecodeError::Json(error.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Counts (edge -> analytics), JSON.

/// How the noise of a released count was produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseMechanism {
    /// Independent discrete Laplace noise per interval.
    DiscreteLaplace,
    /// Independent discrete Gaussian noise per interval.
    DiscreteGaussian,
    /// Continual release by the binary-tree mechanism.
    BinaryTree,
    /// Continual release by the square-root (Toeplitz) matrix factorisation.
    SqrtFactorization,
}

/// Direction of a line crossing, relative to the line's configured orientation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Entering (crossing from the line's outside to its inside).
    In,
    /// Leaving.
    Out,
}

/// What a count measures.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Metric {
    /// Crossings of a counting line during the interval.
    Crossings {
        /// The line.
        line: Id,
        /// The direction.
        dir: Direction,
    },
    /// Running total of crossings since the start of the day (continual release).
    Total {
        /// The line.
        line: Id,
        /// The direction.
        dir: Direction,
    },
    /// People in a zone at the end of the interval.
    Occupancy {
        /// The zone.
        zone: Id,
    },
    /// Moves from one zone to another during the interval: entering `to` when the last zone
    /// the person was in was `from` (whatever lies between the two zones).
    Transition {
        /// Zone left.
        from: Id,
        /// Zone entered.
        to: Id,
    },
    /// People entering a zone during the interval.
    Entries {
        /// The zone.
        zone: Id,
    },
    /// People leaving a zone during the interval.
    Exits {
        /// The zone.
        zone: Id,
    },
    /// People who left a zone during the interval after staying in it for a time in dwell
    /// bucket `bucket` (see [`DWELL_BUCKET_SECS`]).
    Dwell {
        /// The zone.
        zone: Id,
        /// Index into [`DWELL_BUCKET_SECS`]; the last bucket is "at least the last bound".
        bucket: u8,
    },
}

/// Upper bounds (exclusive) of the dwell-time buckets, in seconds: under 1 min, 1-5 min,
/// 5-15 min, 15-30 min, 30-60 min, and (bucket 5) an hour or more.
pub const DWELL_BUCKET_SECS: [u32; 5] = [60, 300, 900, 1800, 3600];

/// Number of dwell buckets.
pub const DWELL_BUCKETS: usize = DWELL_BUCKET_SECS.len() + 1;

/// The dwell bucket of a stay of `secs` seconds.
pub fn dwell_bucket(secs: f64) -> u8 {
    DWELL_BUCKET_SECS.iter().position(|&bound| secs < f64::from(bound)).unwrap_or(DWELL_BUCKET_SECS.len()) as u8
}

/// One noised figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountItem {
    /// What it measures.
    pub metric: Metric,
    /// The released value: true count plus DP noise, then post-processed. Never a raw count.
    pub value: i64,
    /// Standard deviation of the noise in `value`, for uncertainty bands.
    pub std: f64,
}

/// The noised counts one camera releases for one interval. The only count message there is:
/// raw counts never leave the edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountRecord {
    /// Protocol version.
    pub v: u32,
    /// Unique message id (idempotent ingest).
    pub id: String,
    /// Venue.
    pub venue: Id,
    /// Camera that counted.
    pub camera: Id,
    /// Interval start, seconds since the Unix epoch.
    pub start: i64,
    /// Interval length in seconds.
    pub secs: u32,
    /// How the noise was produced.
    pub mechanism: NoiseMechanism,
    /// Privacy budget this release spent.
    pub epsilon: f64,
    /// The figures.
    pub items: Vec<CountItem>,
}

impl CountRecord {
    /// Encodes as JSON.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes and validates a JSON count record.
    pub fn decode(bytes: &[u8]) -> Result<CountRecord, DecodeError> {
        let record: CountRecord = decode_json(bytes)?;
        record.validate()?;
        Ok(record)
    }

    fn validate(&self) -> Result<(), DecodeError> {
        if !is_record_id(&self.id) {
            return Err(DecodeError::invalid("id", "must be 1-64 printable ASCII characters"));
        }
        if self.secs == 0 || self.secs > 86_400 {
            return Err(DecodeError::invalid("secs", format!("{} is outside 1..=86400", self.secs)));
        }
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return Err(DecodeError::invalid("epsilon", "must be finite and positive"));
        }
        if self.items.len() > MAX_COUNT_ITEMS {
            return Err(DecodeError::invalid("items", format!("more than {MAX_COUNT_ITEMS}")));
        }
        for item in &self.items {
            if !(item.std.is_finite() && item.std >= 0.0) {
                return Err(DecodeError::invalid("std", "must be finite and non-negative"));
            }
            if let Metric::Dwell { bucket, .. } = item.metric {
                if usize::from(bucket) >= DWELL_BUCKETS {
                    return Err(DecodeError::invalid("bucket", format!("{bucket} is not below {DWELL_BUCKETS}")));
                }
            }
        }
        Ok(())
    }
}

/// Whether `id` is a valid record id: 1-64 printable ASCII characters (no spaces).
fn is_record_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Most record ids one [`CountAck`] lists (`ids` and `refused` together): at 64 characters an
/// id, a full acknowledgement stays well under [`MAX_JSON_BYTES`].
pub const MAX_ACK_IDS: usize = 512;

/// The receiver's acknowledgement of a camera's count records (analytics → edge, JSON), sent
/// after the database transaction that stored them has committed. A record id listed here will
/// never be lost by the receiver, so the edge may delete it from its spool; re-sending it would
/// be harmless (the receiver stores each id once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountAck {
    /// Protocol version.
    pub v: u32,
    /// Venue of the records.
    pub venue: Id,
    /// Camera of the records.
    pub camera: Id,
    /// Records committed: stored by this batch or already stored before (duplicates).
    pub ids: Vec<String>,
    /// Records the receiver refused for good (quarantined: the message is valid but does not
    /// fit the receiver's configuration). Sending them again would not help.
    #[serde(default)]
    pub refused: Vec<String>,
}

impl CountAck {
    /// Encodes as JSON.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes and validates a JSON acknowledgement.
    pub fn decode(bytes: &[u8]) -> Result<CountAck, DecodeError> {
        let ack: CountAck = decode_json(bytes)?;
        if ack.ids.len() + ack.refused.len() > MAX_ACK_IDS {
            return Err(DecodeError::invalid("ids", format!("more than {MAX_ACK_IDS}")));
        }
        if !ack.ids.iter().chain(&ack.refused).all(|id| is_record_id(id)) {
            return Err(DecodeError::invalid("ids", "each must be 1-64 printable ASCII characters"));
        }
        Ok(ack)
    }
}

/// Whether a zone's capacity alert was raised or cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The zone's noised occupancy reached the high mark: gates into it close.
    Raised,
    /// It fell back to the low mark: gates into it open again.
    Cleared,
}

impl AlertState {
    /// The JSON name (`raised`, `cleared`).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Raised => "raised",
            AlertState::Cleared => "cleared",
        }
    }
}

/// A zone crossed its capacity threshold (or came back under it): published by analytics on
/// `passage/v1/{venue}/alerts/{zone}`, POSTed to the venue's alert webhook, followed by the
/// gates into that zone (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityAlert {
    /// Protocol version.
    pub v: u32,
    /// Venue.
    pub venue: Id,
    /// Zone.
    pub zone: Id,
    /// Raised or cleared.
    pub state: AlertState,
    /// Noised occupancy that caused the transition.
    pub occupancy: f64,
    /// Its noise standard deviation.
    pub std: f64,
    /// The zone's configured capacity.
    pub capacity: u32,
    /// When, seconds since the Unix epoch.
    pub at: i64,
}

impl CapacityAlert {
    /// Encodes as JSON.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a JSON capacity alert (size, version, identifiers, state and figures checked).
    pub fn decode(bytes: &[u8]) -> Result<CapacityAlert, DecodeError> {
        let alert: CapacityAlert = decode_json(bytes)?;
        if !alert.occupancy.is_finite() {
            return Err(DecodeError::invalid("occupancy", "must be finite"));
        }
        if !(alert.std.is_finite() && alert.std >= 0.0) {
            return Err(DecodeError::invalid("std", "must be finite and non-negative"));
        }
        Ok(alert)
    }
}

/// A request to erase one enrolled template from a venue's gallery (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EraseRequest {
    /// Protocol version.
    pub v: u32,
    /// Venue.
    pub venue: Id,
    /// Pseudonymous subject reference the template was enrolled under.
    pub subject: Id,
}

impl EraseRequest {
    /// Encodes as JSON.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a JSON erase request.
    pub fn decode(bytes: &[u8]) -> Result<EraseRequest, DecodeError> {
        decode_json(bytes)
    }
}

/// Largest gallery index accepted (about 40 bytes per enrolled subject).
pub const MAX_INDEX_BYTES: usize = 16 * 1024 * 1024;

/// The slot -> subject map of a venue's gallery at one epoch, so the key holder can tell whom a
/// decrypted slot belongs to. Subjects are pseudonymous references, never names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GalleryIndex {
    /// Protocol version.
    pub v: u32,
    /// Venue.
    pub venue: Id,
    /// Gallery epoch (see [`MatchResponse::epoch`]).
    pub epoch: u64,
    /// Subject of each slot, in slot order.
    pub subjects: Vec<Id>,
}

impl GalleryIndex {
    /// Encodes as JSON.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a JSON gallery index.
    pub fn decode(bytes: &[u8]) -> Result<GalleryIndex, DecodeError> {
        if bytes.len() > MAX_INDEX_BYTES {
            return Err(DecodeError::Oversize { len: bytes.len(), limit: MAX_INDEX_BYTES });
        }
        let index: GalleryIndex =
            serde_json::from_slice(bytes).map_err(|error| DecodeError::Json(error.to_string()))?;
        check_version(index.v)?;
        Ok(index)
    }
}

// ---------------------------------------------------------------------------------------------
// Matching (gate <-> matcher), binary.

/// What the matcher returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchMode {
    /// One encrypted score per template; the key holder decrypts and thresholds.
    Score,
    /// One encrypted match bit per template, computed by bootstrapping.
    Decision,
}

/// Which templates a probe is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchTarget {
    /// Every template of the venue's gallery (1:N identification).
    Gallery,
    /// One gallery slot, named by the visitor's ticket (1:1 verification).
    Slot(u32),
}

/// An encrypted probe for a venue's gallery. The matcher sees only ciphertexts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchRequest {
    /// Venue whose gallery to search.
    pub venue: Id,
    /// Gate asking.
    pub gate: Id,
    /// Result mode.
    pub mode: MatchMode,
    /// 1:N or 1:1.
    pub target: MatchTarget,
    /// Threshold applied under encryption in decision mode (ignored in score mode).
    pub threshold: i32,
    /// The encrypted probe, in the FHE scheme's own bounded encoding.
    pub probe: Vec<u8>,
}

impl MatchRequest {
    /// Encodes as a binary frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = FrameWriter::new(KIND_MATCH_REQUEST);
        w.str(self.venue.as_str()).str(self.gate.as_str());
        w.u8(match self.mode {
            MatchMode::Score => 0,
            MatchMode::Decision => 1,
        });
        match self.target {
            MatchTarget::Gallery => w.u8(0).u32(0),
            MatchTarget::Slot(slot) => w.u8(1).u32(slot),
        };
        w.i32(self.threshold).blob(&self.probe);
        w.finish()
    }

    /// Decodes a binary frame, checking every bound.
    pub fn decode(bytes: &[u8]) -> Result<MatchRequest, DecodeError> {
        let mut r = FrameReader::open(bytes, KIND_MATCH_REQUEST, MAX_PROBE_BYTES + 1024)?;
        let venue = r.id("venue")?;
        let gate = r.id("gate")?;
        let mode = match r.u8("mode")? {
            0 => MatchMode::Score,
            1 => MatchMode::Decision,
            other => return Err(DecodeError::invalid("mode", format!("unknown mode {other}"))),
        };
        let target = match (r.u8("target")?, r.u32("slot")?) {
            (0, _) => MatchTarget::Gallery,
            (1, slot) => MatchTarget::Slot(slot),
            (other, _) => return Err(DecodeError::invalid("target", format!("unknown target {other}"))),
        };
        let threshold = r.i32("threshold")?;
        let probe = r.blob("probe", MAX_PROBE_BYTES)?.to_vec();
        r.finish()?;
        Ok(MatchRequest { venue, gate, mode, target, threshold, probe })
    }
}

/// Outcome of a match request, as far as the matcher knows it (never the match itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchStatus {
    /// `result` holds the encrypted scores or decisions.
    Ok,
    /// The matcher's queue is full; try again shortly.
    Busy,
    /// No gallery exists for this venue.
    UnknownVenue,
    /// The venue's gallery has no templates.
    EmptyGallery,
    /// The slot named by a 1:1 request does not exist.
    UnknownSlot,
    /// The request was malformed (see `detail`).
    BadRequest,
    /// The matcher failed; nothing was evaluated.
    Internal,
    /// Decision mode was asked for, but the key holder has not published its decision key.
    NoDecisionKey,
}

impl MatchStatus {
    fn to_byte(self) -> u8 {
        match self {
            MatchStatus::Ok => 0,
            MatchStatus::Busy => 1,
            MatchStatus::UnknownVenue => 2,
            MatchStatus::EmptyGallery => 3,
            MatchStatus::UnknownSlot => 4,
            MatchStatus::BadRequest => 5,
            MatchStatus::Internal => 6,
            MatchStatus::NoDecisionKey => 7,
        }
    }

    fn from_byte(byte: u8) -> Result<MatchStatus, DecodeError> {
        Ok(match byte {
            0 => MatchStatus::Ok,
            1 => MatchStatus::Busy,
            2 => MatchStatus::UnknownVenue,
            3 => MatchStatus::EmptyGallery,
            4 => MatchStatus::UnknownSlot,
            5 => MatchStatus::BadRequest,
            6 => MatchStatus::Internal,
            7 => MatchStatus::NoDecisionKey,
            other => return Err(DecodeError::invalid("status", format!("unknown status {other}"))),
        })
    }
}

/// The matcher's answer: encrypted results only the key holder can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchResponse {
    /// Outcome.
    pub status: MatchStatus,
    /// Gallery epoch the result refers to (changes on every enrolment and erasure), so the key
    /// holder maps result slots to the right subjects.
    pub epoch: u64,
    /// Number of templates evaluated.
    pub n_templates: u32,
    /// Encrypted result in the FHE scheme's encoding (empty unless `status` is `Ok`).
    pub result: Vec<u8>,
    /// Short reason for a non-`Ok` status; never personal data.
    pub detail: String,
}

impl MatchResponse {
    /// A response carrying no result.
    pub fn failed(status: MatchStatus, detail: impl Into<String>) -> MatchResponse {
        let mut detail = detail.into();
        detail.truncate(MAX_DETAIL_BYTES);
        MatchResponse { status, epoch: 0, n_templates: 0, result: Vec::new(), detail }
    }

    /// Encodes as a binary frame.
    pub fn encode(&self) -> Vec<u8> {
        FrameWriter::new(KIND_MATCH_RESPONSE)
            .u8(self.status.to_byte())
            .u64(self.epoch)
            .u32(self.n_templates)
            .blob(&self.result)
            .str(&self.detail)
            .finish()
    }

    /// Decodes a binary frame, checking every bound.
    pub fn decode(bytes: &[u8]) -> Result<MatchResponse, DecodeError> {
        let mut r = FrameReader::open(bytes, KIND_MATCH_RESPONSE, MAX_RESULT_BYTES + 1024)?;
        let status = MatchStatus::from_byte(r.u8("status")?)?;
        let epoch = r.u64("epoch")?;
        let n_templates = r.u32("n_templates")?;
        let result = r.blob("result", MAX_RESULT_BYTES)?.to_vec();
        let detail = r.str("detail", MAX_DETAIL_BYTES)?.to_owned();
        r.finish()?;
        Ok(MatchResponse { status, epoch, n_templates, result, detail })
    }
}

/// An encrypted template to add to a venue's gallery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolRequest {
    /// Venue.
    pub venue: Id,
    /// Pseudonymous subject reference (links to the consent record, not to a person).
    pub subject: Id,
    /// The encrypted template, in the FHE scheme's own bounded encoding.
    pub template: Vec<u8>,
}

impl EnrolRequest {
    /// Encodes as a binary frame.
    pub fn encode(&self) -> Vec<u8> {
        FrameWriter::new(KIND_ENROL_REQUEST)
            .str(self.venue.as_str())
            .str(self.subject.as_str())
            .blob(&self.template)
            .finish()
    }

    /// Decodes a binary frame, checking every bound.
    pub fn decode(bytes: &[u8]) -> Result<EnrolRequest, DecodeError> {
        let mut r = FrameReader::open(bytes, KIND_ENROL_REQUEST, MAX_TEMPLATE_BYTES + 1024)?;
        let venue = r.id("venue")?;
        let subject = r.id("subject")?;
        let template = r.blob("template", MAX_TEMPLATE_BYTES)?.to_vec();
        r.finish()?;
        Ok(EnrolRequest { venue, subject, template })
    }
}

/// Outcome of an enrolment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrolStatus {
    /// Stored durably; `slot` and `epoch` are set.
    Ok,
    /// Queue full; try again.
    Busy,
    /// The template was malformed or for other parameters (see `detail`).
    Rejected,
    /// No gallery for this venue.
    UnknownVenue,
    /// The matcher failed; nothing was stored.
    Internal,
}

/// The matcher's answer to an enrolment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolResponse {
    /// Outcome.
    pub status: EnrolStatus,
    /// Gallery slot assigned.
    pub slot: u32,
    /// Gallery epoch after the enrolment.
    pub epoch: u64,
    /// Short reason for a non-`Ok` status; never personal data.
    pub detail: String,
}

impl EnrolResponse {
    /// Encodes as a binary frame.
    pub fn encode(&self) -> Vec<u8> {
        let status = match self.status {
            EnrolStatus::Ok => 0,
            EnrolStatus::Busy => 1,
            EnrolStatus::Rejected => 2,
            EnrolStatus::UnknownVenue => 3,
            EnrolStatus::Internal => 4,
        };
        FrameWriter::new(KIND_ENROL_RESPONSE).u8(status).u32(self.slot).u64(self.epoch).str(&self.detail).finish()
    }

    /// Decodes a binary frame, checking every bound.
    pub fn decode(bytes: &[u8]) -> Result<EnrolResponse, DecodeError> {
        let mut r = FrameReader::open(bytes, KIND_ENROL_RESPONSE, MAX_DETAIL_BYTES + 64)?;
        let status = match r.u8("status")? {
            0 => EnrolStatus::Ok,
            1 => EnrolStatus::Busy,
            2 => EnrolStatus::Rejected,
            3 => EnrolStatus::UnknownVenue,
            4 => EnrolStatus::Internal,
            other => return Err(DecodeError::invalid("status", format!("unknown status {other}"))),
        };
        let slot = r.u32("slot")?;
        let epoch = r.u64("epoch")?;
        let detail = r.str("detail", MAX_DETAIL_BYTES)?.to_owned();
        r.finish()?;
        Ok(EnrolResponse { status, slot, epoch, detail })
    }
}

/// The key holder's decision-mode evaluation key for a venue (public material: it decrypts
/// nothing). The matcher stores it and answers with an [`EnrolResponse`] (slot and epoch 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionKeyUpload {
    /// Venue.
    pub venue: Id,
    /// The key, in the FHE scheme's own bounded encoding.
    pub key: Vec<u8>,
}

impl DecisionKeyUpload {
    /// Encodes as a binary frame.
    pub fn encode(&self) -> Vec<u8> {
        FrameWriter::new(KIND_DECISION_KEY).str(self.venue.as_str()).blob(&self.key).finish()
    }

    /// Decodes a binary frame, checking every bound.
    pub fn decode(bytes: &[u8]) -> Result<DecisionKeyUpload, DecodeError> {
        let mut r = FrameReader::open(bytes, KIND_DECISION_KEY, MAX_DECISION_KEY_BYTES + 1024)?;
        let venue = r.id("venue")?;
        let key = r.blob("key", MAX_DECISION_KEY_BYTES)?.to_vec();
        r.finish()?;
        Ok(DecisionKeyUpload { venue, key })
    }
}

#[cfg(test)]
mod dwell_tests {
    use super::*;

    #[test]
    fn dwell_buckets_split_at_their_bounds() {
        assert_eq!(dwell_bucket(0.0), 0);
        assert_eq!(dwell_bucket(59.9), 0);
        assert_eq!(dwell_bucket(60.0), 1);
        assert_eq!(dwell_bucket(3599.0), 4);
        assert_eq!(dwell_bucket(1e9), 5);
        assert_eq!(dwell_bucket(f64::NAN), 5);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn id() -> impl Strategy<Value = Id> {
        "[a-z0-9_-]{1,48}".prop_map(|s| Id::new(&s).expect("strategy yields valid ids"))
    }

    fn metric() -> impl Strategy<Value = Metric> {
        let dir = prop_oneof![Just(Direction::In), Just(Direction::Out)];
        prop_oneof![
            (id(), dir.clone()).prop_map(|(line, dir)| Metric::Crossings { line, dir }),
            (id(), dir).prop_map(|(line, dir)| Metric::Total { line, dir }),
            id().prop_map(|zone| Metric::Occupancy { zone }),
            (id(), id()).prop_map(|(from, to)| Metric::Transition { from, to }),
            (id(), 0u8..6).prop_map(|(zone, bucket)| Metric::Dwell { zone, bucket }),
            id().prop_map(|zone| Metric::Entries { zone }),
            id().prop_map(|zone| Metric::Exits { zone }),
        ]
    }

    fn count_record() -> impl Strategy<Value = CountRecord> {
        let item =
            (metric(), any::<i64>(), 0.0f64..1e9).prop_map(|(metric, value, std)| CountItem { metric, value, std });
        let mechanism = prop_oneof![
            Just(NoiseMechanism::DiscreteLaplace),
            Just(NoiseMechanism::DiscreteGaussian),
            Just(NoiseMechanism::BinaryTree),
            Just(NoiseMechanism::SqrtFactorization),
        ];
        (
            "[a-f0-9-]{1,64}",
            id(),
            id(),
            any::<i64>(),
            1u32..=86_400,
            mechanism,
            1e-9f64..100.0,
            prop::collection::vec(item, 0..20),
        )
            .prop_map(|(id, venue, camera, start, secs, mechanism, epsilon, items)| CountRecord {
                v: 1,
                id,
                venue,
                camera,
                start,
                secs,
                mechanism,
                epsilon,
                items,
            })
    }

    fn count_ack() -> impl Strategy<Value = CountAck> {
        let ids = prop::collection::vec("[!-~]{1,64}", 0..200);
        (id(), id(), ids.clone(), ids).prop_map(|(venue, camera, ids, refused)| CountAck {
            v: 1,
            venue,
            camera,
            ids,
            refused,
        })
    }

    fn match_request() -> impl Strategy<Value = MatchRequest> {
        let mode = prop_oneof![Just(MatchMode::Score), Just(MatchMode::Decision)];
        let target = prop_oneof![Just(MatchTarget::Gallery), any::<u32>().prop_map(MatchTarget::Slot)];
        (id(), id(), mode, target, any::<i32>(), prop::collection::vec(any::<u8>(), 0..2048)).prop_map(
            |(venue, gate, mode, target, threshold, probe)| MatchRequest {
                venue,
                gate,
                mode,
                target,
                threshold,
                probe,
            },
        )
    }

    fn match_response() -> impl Strategy<Value = MatchResponse> {
        let status = (0u8..8).prop_map(|b| MatchStatus::from_byte(b).expect("in range"));
        (status, any::<u64>(), any::<u32>(), prop::collection::vec(any::<u8>(), 0..2048), "[ -~]{0,256}").prop_map(
            |(status, epoch, n_templates, result, detail)| MatchResponse { status, epoch, n_templates, result, detail },
        )
    }

    fn enrol_request() -> impl Strategy<Value = EnrolRequest> {
        (id(), id(), prop::collection::vec(any::<u8>(), 0..2048)).prop_map(|(venue, subject, template)| EnrolRequest {
            venue,
            subject,
            template,
        })
    }

    fn enrol_response() -> impl Strategy<Value = EnrolResponse> {
        let status = prop_oneof![
            Just(EnrolStatus::Ok),
            Just(EnrolStatus::Busy),
            Just(EnrolStatus::Rejected),
            Just(EnrolStatus::UnknownVenue),
            Just(EnrolStatus::Internal),
        ];
        (status, any::<u32>(), any::<u64>(), "[ -~]{0,256}").prop_map(|(status, slot, epoch, detail)| EnrolResponse {
            status,
            slot,
            epoch,
            detail,
        })
    }

    proptest! {
        #[test]
        fn count_record_round_trips(record in count_record()) {
            prop_assert_eq!(CountRecord::decode(&record.encode()), Ok(record));
        }

        #[test]
        fn count_ack_round_trips(ack in count_ack()) {
            let bytes = ack.encode();
            prop_assert!(bytes.len() <= MAX_JSON_BYTES);
            prop_assert_eq!(CountAck::decode(&bytes), Ok(ack));
        }

        #[test]
        fn match_request_round_trips(request in match_request()) {
            prop_assert_eq!(MatchRequest::decode(&request.encode()), Ok(request));
        }

        #[test]
        fn match_response_round_trips(response in match_response()) {
            prop_assert_eq!(MatchResponse::decode(&response.encode()), Ok(response));
        }

        #[test]
        fn enrol_request_round_trips(request in enrol_request()) {
            prop_assert_eq!(EnrolRequest::decode(&request.encode()), Ok(request));
        }

        #[test]
        fn decision_key_upload_round_trips(venue in id(), key in prop::collection::vec(any::<u8>(), 0..4096)) {
            let upload = DecisionKeyUpload { venue, key };
            prop_assert_eq!(DecisionKeyUpload::decode(&upload.encode()), Ok(upload));
        }

        #[test]
        fn enrol_response_round_trips(response in enrol_response()) {
            prop_assert_eq!(EnrolResponse::decode(&response.encode()), Ok(response));
        }

        #[test]
        fn capacity_alert_round_trips(
            venue in id(),
            zone in id(),
            raised in any::<bool>(),
            occupancy in -1e6f64..1e6,
            std in 0f64..1e3,
            capacity in any::<u32>(),
            at in any::<i64>(),
        ) {
            let state = if raised { AlertState::Raised } else { AlertState::Cleared };
            let alert = CapacityAlert { v: u32::from(PROTOCOL_VERSION), venue, zone, state, occupancy, std, capacity, at };
            let bytes = alert.encode();
            let expected = format!("\"state\":\"{}\"", state.as_str());
            prop_assert!(String::from_utf8_lossy(&bytes).contains(&expected), "state as a word");
            prop_assert_eq!(CapacityAlert::decode(&bytes), Ok(alert));
        }

        /// Every strict prefix of a valid frame is an error, never a panic or a success.
        #[test]
        fn truncated_frames_are_errors(request in match_request(), cut in 0usize..4096) {
            let bytes = request.encode();
            let cut = cut % bytes.len();
            prop_assert!(MatchRequest::decode(&bytes[..cut]).is_err());
        }

        /// Arbitrary bytes never panic any decoder.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = MatchRequest::decode(&bytes);
            let _ = MatchResponse::decode(&bytes);
            let _ = EnrolRequest::decode(&bytes);
            let _ = EnrolResponse::decode(&bytes);
            let _ = DecisionKeyUpload::decode(&bytes);
            let _ = CountRecord::decode(&bytes);
            let _ = CountAck::decode(&bytes);
            let _ = CapacityAlert::decode(&bytes);
            let _ = EraseRequest::decode(&bytes);
            let _ = GalleryIndex::decode(&bytes);
        }

        /// Flipping any one byte of a valid frame either still decodes or yields an error.
        #[test]
        fn mutated_frames_never_panic(request in match_request(), at in any::<usize>(), byte in any::<u8>()) {
            let mut bytes = request.encode();
            let at = at % bytes.len();
            bytes[at] = byte;
            let _ = MatchRequest::decode(&bytes);
        }
    }

    /// A corpus of malformed payloads, each of which must be refused with a specific error.
    #[test]
    fn malformed_corpus_is_refused() {
        let good = MatchRequest {
            venue: Id::new("arena").expect("valid"),
            gate: Id::new("north-1").expect("valid"),
            mode: MatchMode::Score,
            target: MatchTarget::Gallery,
            threshold: 0,
            probe: vec![1, 2, 3],
        }
        .encode();
        let mut trailing = good.clone();
        trailing.push(0);
        let mut bad_mode = good.clone();
        bad_mode[5 + 4 + 5 + 4 + 7] = 9; // after magic/header, "arena", "north-1"
        let mut huge_probe = good[..good.len() - 7].to_vec();
        huge_probe.extend_from_slice(&(MAX_PROBE_BYTES as u32 + 1).to_le_bytes());
        let mut bad_id = good.clone();
        bad_id[9] = b'A';
        let oversize = vec![0u8; MAX_PROBE_BYTES + 2048];

        let cases: Vec<(&str, Vec<u8>, DecodeError)> = vec![
            ("trailing byte", trailing, DecodeError::TrailingBytes(1)),
            ("unknown mode", bad_mode, DecodeError::invalid("mode", "unknown mode 9")),
            (
                "probe length over limit",
                huge_probe,
                DecodeError::Oversize { len: MAX_PROBE_BYTES + 1, limit: MAX_PROBE_BYTES },
            ),
            (
                "uppercase venue",
                bad_id,
                DecodeError::invalid("venue", "identifier contains 'A'; only a-z, 0-9, '-' and '_' are allowed"),
            ),
            (
                "whole payload oversize",
                oversize,
                DecodeError::Oversize { len: MAX_PROBE_BYTES + 2048, limit: MAX_PROBE_BYTES + 1024 },
            ),
        ];
        for (name, bytes, expected) in cases {
            assert_eq!(MatchRequest::decode(&bytes).err(), Some(expected), "case {name}");
        }

        let json_cases: Vec<(&str, &[u8])> = vec![
            ("future version", br#"{"v":2,"id":"a","venue":"x","camera":"c","start":0,"secs":60,"mechanism":"binary_tree","epsilon":1,"items":[]}"#),
            ("zero interval", br#"{"v":1,"id":"a","venue":"x","camera":"c","start":0,"secs":0,"mechanism":"binary_tree","epsilon":1,"items":[]}"#),
            ("negative epsilon", br#"{"v":1,"id":"a","venue":"x","camera":"c","start":0,"secs":60,"mechanism":"binary_tree","epsilon":-1,"items":[]}"#),
            ("bad venue id", br#"{"v":1,"id":"a","venue":"X/Y","camera":"c","start":0,"secs":60,"mechanism":"binary_tree","epsilon":1,"items":[]}"#),
            ("unknown mechanism", br#"{"v":1,"id":"a","venue":"x","camera":"c","start":0,"secs":60,"mechanism":"float_laplace","epsilon":1,"items":[]}"#),
            ("negative std", br#"{"v":1,"id":"a","venue":"x","camera":"c","start":0,"secs":60,"mechanism":"binary_tree","epsilon":1,"items":[{"metric":{"type":"occupancy","zone":"z"},"value":1,"std":-1}]}"#),
            ("not json", b"\xff\xfe"),
            ("empty", b""),
        ];
        for (name, bytes) in json_cases {
            assert!(CountRecord::decode(bytes).is_err(), "case {name} was accepted");
        }
        assert_eq!(
            CountRecord::decode(json_cases_future()).err(),
            Some(DecodeError::UnsupportedVersion { found: 2, expected: PROTOCOL_VERSION })
        );
    }

    /// Capacity alerts: the state is one of two words, the zone an identifier, the version known.
    #[test]
    fn malformed_capacity_alerts_are_refused() {
        let good = br#"{"v":1,"venue":"arena","zone":"concourse","state":"raised","occupancy":812.5,"std":3.2,"capacity":800,"at":1}"#;
        let alert = CapacityAlert::decode(good).expect("a valid alert");
        assert_eq!((alert.zone.as_str(), alert.state), ("concourse", AlertState::Raised));
        let cases: Vec<(&str, &[u8])> = vec![
            ("unknown state", br#"{"v":1,"venue":"arena","zone":"concourse","state":"full","occupancy":1,"std":1,"capacity":8,"at":1}"#),
            ("zone not an identifier", br#"{"v":1,"venue":"arena","zone":"../x","state":"raised","occupancy":1,"std":1,"capacity":8,"at":1}"#),
            ("negative capacity", br#"{"v":1,"venue":"arena","zone":"z","state":"cleared","occupancy":1,"std":1,"capacity":-8,"at":1}"#),
            ("negative std", br#"{"v":1,"venue":"arena","zone":"z","state":"raised","occupancy":1,"std":-1,"capacity":8,"at":1}"#),
            ("occupancy not a number", br#"{"v":1,"venue":"arena","zone":"z","state":"raised","occupancy":"many","std":1,"capacity":8,"at":1}"#),
            ("no state", br#"{"v":1,"venue":"arena","zone":"z","occupancy":1,"std":1,"capacity":8,"at":1}"#),
            ("future version", br#"{"v":2,"venue":"arena","zone":"z","state":"raised","occupancy":1,"std":1,"capacity":8,"at":1}"#),
        ];
        for (name, bytes) in cases {
            assert!(CapacityAlert::decode(bytes).is_err(), "case {name} was accepted");
        }
    }

    /// Acknowledgements: bounded, ids checked like record ids, refusals optional.
    #[test]
    fn malformed_acks_are_refused() {
        let full = CountAck {
            v: 1,
            venue: Id::new("arena").expect("valid"),
            camera: Id::new("cam-1").expect("valid"),
            ids: (0..MAX_ACK_IDS).map(|i| format!("{i:064}")).collect(),
            refused: Vec::new(),
        };
        assert!(full.encode().len() <= MAX_JSON_BYTES);
        assert_eq!(CountAck::decode(&full.encode()), Ok(full.clone()));
        let mut too_many = full.clone();
        too_many.refused.push("x".into());
        assert_eq!(
            CountAck::decode(&too_many.encode()).err(),
            Some(DecodeError::invalid("ids", format!("more than {MAX_ACK_IDS}")))
        );
        let without_refused = br#"{"v":1,"venue":"arena","camera":"cam-1","ids":["a","b"]}"#;
        assert_eq!(CountAck::decode(without_refused).map(|ack| ack.ids.len()), Ok(2));
        let cases: Vec<(&str, &[u8])> = vec![
            ("space in id", br#"{"v":1,"venue":"arena","camera":"cam-1","ids":["a b"]}"#),
            ("empty id", br#"{"v":1,"venue":"arena","camera":"cam-1","ids":[""]}"#),
            ("bad refused id", br#"{"v":1,"venue":"arena","camera":"cam-1","ids":[],"refused":["\n"]}"#),
            ("bad camera", br#"{"v":1,"venue":"arena","camera":"cam/1","ids":[]}"#),
            ("future version", br#"{"v":2,"venue":"arena","camera":"cam-1","ids":[]}"#),
            ("ids not a list", br#"{"v":1,"venue":"arena","camera":"cam-1","ids":"a"}"#),
        ];
        for (name, bytes) in cases {
            assert!(CountAck::decode(bytes).is_err(), "case {name} was accepted");
        }
    }

    fn json_cases_future() -> &'static [u8] {
        br#"{"v":2,"future_field":true}"#
    }
}
