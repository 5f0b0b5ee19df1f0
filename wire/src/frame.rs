//! The compact binary frame used by messages that carry ciphertexts.
//!
//! ```text
//! offset 0..3   magic  b"PSG"
//! offset 3      protocol version (u8)
//! offset 4      message kind (u8)
//! offset 5..    fields, little-endian; strings and blobs are u32-length-prefixed
//! ```
//!
//! Every length is checked against a per-field limit *before* anything is allocated, so a
//! hostile length prefix cannot make a decoder reserve memory. A frame must be consumed
//! exactly: trailing bytes are an error.

use crate::{DecodeError, Id, PROTOCOL_VERSION};

/// The three bytes every binary frame starts with.
pub const MAGIC: [u8; 3] = *b"PSG";
/// Bytes before the first field: magic, version, kind.
pub const HEADER_LEN: usize = 5;

/// Builds a binary frame field by field.
#[derive(Debug)]
pub struct FrameWriter {
    bytes: Vec<u8>,
}

impl FrameWriter {
    /// Starts a frame of the given message kind.
    pub fn new(kind: u8) -> FrameWriter {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(&MAGIC);
        bytes.push(PROTOCOL_VERSION);
        bytes.push(kind);
        FrameWriter { bytes }
    }

    /// Appends one byte.
    pub fn u8(&mut self, value: u8) -> &mut Self {
        self.bytes.push(value);
        self
    }

    /// Appends a little-endian u32.
    pub fn u32(&mut self, value: u32) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// Appends a little-endian i32.
    pub fn i32(&mut self, value: i32) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// Appends a little-endian u64.
    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// Appends a length-prefixed UTF-8 string.
    pub fn str(&mut self, value: &str) -> &mut Self {
        self.blob(value.as_bytes())
    }

    /// Appends a length-prefixed byte string.
    ///
    /// # Panics
    /// If `value` is longer than `u32::MAX` bytes (no message of this protocol comes close).
    pub fn blob(&mut self, value: &[u8]) -> &mut Self {
        let len = u32::try_from(value.len()).expect("blob longer than 4 GiB");
        self.u32(len);
        self.bytes.extend_from_slice(value);
        self
    }

    /// The finished frame.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }
}

/// Reads a binary frame field by field, checking bounds at every step.
#[derive(Debug)]
pub struct FrameReader<'a> {
    rest: &'a [u8],
}

impl<'a> FrameReader<'a> {
    /// Checks the header of `bytes` (size limit, magic, version, kind) and positions the reader
    /// on the first field.
    pub fn open(bytes: &'a [u8], kind: u8, limit: usize) -> Result<FrameReader<'a>, DecodeError> {
        if bytes.len() > limit {
            return Err(DecodeError::Oversize { len: bytes.len(), limit });
        }
        if bytes.len() < HEADER_LEN {
            if !bytes.is_empty() && !MAGIC.starts_with(&bytes[..bytes.len().min(3)]) {
                return Err(DecodeError::BadMagic);
            }
            return Err(DecodeError::Truncated { what: "frame header" });
        }
        if bytes[..3] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        if bytes[3] != PROTOCOL_VERSION {
            return Err(DecodeError::UnsupportedVersion { found: u32::from(bytes[3]), expected: PROTOCOL_VERSION });
        }
        if bytes[4] != kind {
            return Err(DecodeError::WrongKind { found: bytes[4], expected: kind });
        }
        Ok(FrameReader { rest: &bytes[HEADER_LEN..] })
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated { what });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    /// Reads a little-endian u32.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// Reads a little-endian i32.
    pub fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }

    /// Reads a little-endian u64.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Reads a length-prefixed byte string of at most `limit` bytes.
    pub fn blob(&mut self, what: &'static str, limit: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(what)? as usize;
        if len > limit {
            return Err(DecodeError::Oversize { len, limit });
        }
        self.take(len, what)
    }

    /// Reads a length-prefixed UTF-8 string of at most `limit` bytes.
    pub fn str(&mut self, what: &'static str, limit: usize) -> Result<&'a str, DecodeError> {
        let bytes = self.blob(what, limit)?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError::invalid(what, "not UTF-8"))
    }

    /// Reads an [`Id`].
    pub fn id(&mut self, what: &'static str) -> Result<Id, DecodeError> {
        let s = self.str(what, crate::ids::MAX_ID_LEN)?;
        Id::new(s).map_err(|error| DecodeError::invalid(what, error.to_string()))
    }

    /// Succeeds only if the whole frame has been read.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(self.rest.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_length_prefix_is_refused_before_allocation() {
        let mut frame = FrameWriter::new(7).finish();
        frame.extend_from_slice(&u32::MAX.to_le_bytes());
        let mut reader = FrameReader::open(&frame, 7, 1024).expect("header is valid");
        assert_eq!(reader.blob("probe", 100), Err(DecodeError::Oversize { len: u32::MAX as usize, limit: 100 }));
    }

    #[test]
    fn header_errors_are_specific() {
        assert_eq!(FrameReader::open(b"", 1, 10).err(), Some(DecodeError::Truncated { what: "frame header" }));
        assert_eq!(FrameReader::open(b"XYZ\x01\x01", 1, 10).err(), Some(DecodeError::BadMagic));
        assert_eq!(
            FrameReader::open(b"PSG\x09\x01", 1, 10).err(),
            Some(DecodeError::UnsupportedVersion { found: 9, expected: PROTOCOL_VERSION })
        );
        assert_eq!(
            FrameReader::open(b"PSG\x01\x02", 1, 10).err(),
            Some(DecodeError::WrongKind { found: 2, expected: 1 })
        );
        assert_eq!(FrameReader::open(&[0u8; 11], 1, 10).err(), Some(DecodeError::Oversize { len: 11, limit: 10 }));
    }
}
