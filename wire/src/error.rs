//! The one error type of every decoder in this crate.

use thiserror::Error;

/// Why a payload was rejected. Each variant names what was wrong; none carries payload bytes.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The payload is larger than the limit for its message type.
    #[error("payload of {len} bytes exceeds the {limit}-byte limit")]
    Oversize {
        /// Bytes received.
        len: usize,
        /// Bytes allowed.
        limit: usize,
    },
    /// The payload ended before a complete message was read.
    #[error("payload truncated while reading {what}")]
    Truncated {
        /// The field being read.
        what: &'static str,
    },
    /// The frame does not start with the Passage magic bytes.
    #[error("not a Passage frame (bad magic)")]
    BadMagic,
    /// The payload was produced by an unsupported protocol version.
    #[error("unsupported protocol version {found} (this build speaks {expected})")]
    UnsupportedVersion {
        /// Version found in the payload.
        found: u32,
        /// Version this build speaks.
        expected: u8,
    },
    /// The frame's message kind is not the one expected here.
    #[error("unexpected message kind {found:#04x}, expected {expected:#04x}")]
    WrongKind {
        /// Kind byte found.
        found: u8,
        /// Kind byte expected.
        expected: u8,
    },
    /// A field holds a value outside its domain.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Bytes remain after a complete message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// The JSON payload did not parse into the expected message.
    #[error("malformed JSON: {0}")]
    Json(String),
}

impl DecodeError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        DecodeError::Invalid { field, reason: reason.into() }
    }
}
