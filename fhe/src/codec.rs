//! Bounded binary encoding of keys and ciphertexts.
//!
//! Every encoding starts with a 4-byte tag, a version byte and the parameter id, so a
//! ciphertext made for other parameters (or of another kind) is refused before anything is
//! allocated; lengths are implied by the parameters, never read from the input.

use thiserror::Error;

/// Format version of every encoding in this crate.
pub(crate) const FORMAT_VERSION: u8 = 1;

/// Why bytes could not be decoded into a key or ciphertext.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    /// Wrong tag: the bytes are another kind of object.
    #[error("not a {expected} (tag mismatch)")]
    WrongKind {
        /// What was expected.
        expected: &'static str,
    },
    /// Unknown format version.
    #[error("unsupported {what} format version {found}")]
    Version {
        /// The object.
        what: &'static str,
        /// Version found.
        found: u8,
    },
    /// Made for other scheme parameters.
    #[error("{what} was made for other parameters")]
    WrongParams {
        /// The object.
        what: &'static str,
    },
    /// Length differs from the one the parameters imply.
    #[error("{what} must be {expected} bytes, got {found}")]
    Length {
        /// The object.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Actual length.
        found: usize,
    },
    /// A field holds an impossible value.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The object.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
}

pub(crate) const HEADER_LEN: usize = 4 + 1 + 8;

pub(crate) fn header(tag: &[u8; 4], params_id: u64, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + capacity);
    out.extend_from_slice(tag);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&params_id.to_le_bytes());
    out
}

/// Checks the header and the total length; returns the body.
pub(crate) fn open<'a>(
    bytes: &'a [u8],
    tag: &[u8; 4],
    what: &'static str,
    params_id: u64,
    body_len: usize,
) -> Result<&'a [u8], CodecError> {
    if bytes.len() < HEADER_LEN || &bytes[..4] != tag {
        return Err(CodecError::WrongKind { expected: what });
    }
    if bytes[4] != FORMAT_VERSION {
        return Err(CodecError::Version { what, found: bytes[4] });
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[5..13]);
    if u64::from_le_bytes(id) != params_id {
        return Err(CodecError::WrongParams { what });
    }
    let expected = HEADER_LEN + body_len;
    if bytes.len() != expected {
        return Err(CodecError::Length { what, expected, found: bytes.len() });
    }
    Ok(&bytes[HEADER_LEN..])
}

pub(crate) fn put_u64s(out: &mut Vec<u8>, words: &[u64]) {
    for w in words {
        out.extend_from_slice(&w.to_le_bytes());
    }
}

pub(crate) fn get_u64s(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .collect()
}
