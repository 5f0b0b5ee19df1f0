//! The Passage wire protocol: every message that crosses a process boundary, the MQTT topic
//! layout, and the codecs that turn them into bytes and back.
//!
//! This crate is the only one every component shares. It does no I/O. Decoders treat their
//! input as untrusted: they reject unknown protocol versions, oversize and malformed payloads
//! with a [`DecodeError`] and never panic (property tests and fuzz targets hold them to that).
//!
//! Two encodings are used (see `docs/protocol.md`):
//! * JSON for small, human-inspectable records ([`CountRecord`], [`CountAck`], [`CapacityAlert`],
//!   [`MatchReply`] summaries) with an explicit `"v"` field;
//! * a compact binary frame ([`frame`]) for everything that carries ciphertexts
//!   ([`MatchRequest`], [`MatchResponse`], [`EnrolRequest`], [`EnrolResponse`]).
#![deny(missing_docs)]

mod error;
pub mod frame;
mod ids;
mod messages;
pub mod topics;

pub use error::DecodeError;
pub use ids::{Id, IdError};
pub use messages::{
    dwell_bucket, AlertState, CapacityAlert, CountAck, CountItem, CountRecord, DecisionKeyUpload, Direction,
    EnrolRequest, EnrolResponse, EnrolStatus, EraseRequest, GalleryIndex, MatchMode, MatchRequest, MatchResponse,
    MatchStatus, MatchTarget, Metric, NoiseMechanism, DWELL_BUCKETS, DWELL_BUCKET_SECS, MAX_ACK_IDS,
    MAX_DECISION_KEY_BYTES, MAX_PROBE_BYTES, MAX_RESULT_BYTES, MAX_TEMPLATE_BYTES,
};

/// The protocol version this build speaks. Every message carries it; decoders reject others.
pub const PROTOCOL_VERSION: u8 = 1;

/// Largest JSON payload any decoder accepts, in bytes.
pub const MAX_JSON_BYTES: usize = 64 * 1024;
