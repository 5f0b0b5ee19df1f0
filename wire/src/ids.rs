//! Identifiers of venues, gates, cameras, lines and zones.
//!
//! They appear inside MQTT topic levels, so they are restricted to a safe alphabet: lowercase
//! ASCII letters, digits, `-` and `_`, 1 to 48 characters. That rules out the MQTT wildcards
//! `+` and `#`, the level separator `/` and anything that could smuggle personal data in
//! free text.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Longest identifier accepted.
pub const MAX_ID_LEN: usize = 48;

/// A validated identifier (venue, gate, camera, line or zone name).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(String);

/// Why a string is not a valid [`Id`].
#[derive(Debug, Error, PartialEq, Eq)]
pub enum IdError {
    /// Empty string.
    #[error("identifier is empty")]
    Empty,
    /// More than [`MAX_ID_LEN`] characters.
    #[error("identifier is longer than {MAX_ID_LEN} characters")]
    TooLong,
    /// A character outside `[a-z0-9_-]`.
    #[error("identifier contains {0:?}; only a-z, 0-9, '-' and '_' are allowed")]
    BadChar(char),
}

impl Id {
    /// Validates `s` as an identifier.
    pub fn new(s: &str) -> Result<Id, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.len() > MAX_ID_LEN {
            return Err(IdError::TooLong);
        }
        if let Some(bad) = s.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
        {
            return Err(IdError::BadChar(bad));
        }
        Ok(Id(s.to_owned()))
    }

    /// The identifier as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.0)
    }
}

impl std::str::FromStr for Id {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Id, IdError> {
        Id::new(s)
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Id, D::Error> {
        let s = String::deserialize(deserializer)?;
        Id::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_safe_alphabet() {
        assert_eq!(Id::new("north-gate_2").map(|id| id.to_string()), Ok("north-gate_2".into()));
    }

    #[test]
    fn rejects_topic_metacharacters_and_free_text() {
        assert_eq!(Id::new("a/b"), Err(IdError::BadChar('/')));
        assert_eq!(Id::new("+"), Err(IdError::BadChar('+')));
        assert_eq!(Id::new("#"), Err(IdError::BadChar('#')));
        assert_eq!(Id::new("Jane Doe"), Err(IdError::BadChar('J')));
        assert_eq!(Id::new(""), Err(IdError::Empty));
        assert_eq!(Id::new(&"a".repeat(49)), Err(IdError::TooLong));
    }
}
