//! The audit log's hash chain and signed checkpoints, with no I/O.
//!
//! Entry `i` carries `hash_i = SHA-256("passage-audit-v1" ‖ hash_{i-1} ‖ body_i)` where
//! `hash_{-1}` is 32 zero bytes and `body_i` is the entry's canonical JSON without its hashes.
//! Changing, inserting, removing or reordering any entry changes every later hash; a signed
//! checkpoint (Ed25519 over the size and the head hash) pins the chain so that rewriting what
//! it covers, or truncating below it, is detected too, by anyone who does not hold the signing
//! key. What no file-local check can catch is a consistent rollback (log and checkpoints cut
//! back together): for that, compare with a size and head recorded elsewhere (the DPO's
//! sign-off record, a copy of `passage audit verify`'s output).
//!
//! Entries hold pseudonymous references (principal ids, venue ids, subject references), no
//! names, contacts, images or templates. A subject reference is still personal data in the
//! GDPR's sense while the controller can link it; erasing a subject removes that link (their
//! template and records) and leaves the log, and its verification, intact.

use ring::digest::{Context, SHA256};
use ring::signature::{Ed25519KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

/// Longest accepted text field of an entry, in bytes.
pub const MAX_FIELD: usize = 256;

const ENTRY_DOMAIN: &[u8] = b"passage-audit-v1";
const CHECKPOINT_DOMAIN: &[u8] = b"passage-audit-checkpoint-v1";

/// What happened, as the caller reports it (the chain adds sequence number and hashes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Seconds since the Unix epoch.
    pub at: i64,
    /// Who acted: a principal reference such as `dpo:alice`, `gate:arena/east-1`, `system`.
    pub actor: String,
    /// What was done, dotted: `consent.grant`, `match.decision`, `dpia.signoff`, ...
    pub action: String,
    /// The venue concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub venue: Option<String>,
    /// A pseudonymous reference to the data subject or object concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The outcome or a short non-personal detail (`granted`, `refused: no consent`, a version).
    pub outcome: String,
}

/// Why an event cannot be logged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventError {
    /// A field is empty where it must not be, too long, or holds control characters.
    #[error("audit field {field} is invalid: {why}")]
    Field {
        /// Which field.
        field: &'static str,
        /// What is wrong.
        why: &'static str,
    },
}

impl Event {
    /// Checks field sizes and characters.
    ///
    /// # Errors
    /// The first invalid field.
    pub fn validate(&self) -> Result<(), EventError> {
        let check = |field: &'static str, value: &str, required: bool| {
            if required && value.is_empty() {
                return Err(EventError::Field { field, why: "empty" });
            }
            if value.len() > MAX_FIELD {
                return Err(EventError::Field { field, why: "longer than 256 bytes" });
            }
            if value.chars().any(char::is_control) {
                return Err(EventError::Field { field, why: "control characters" });
            }
            Ok(())
        };
        check("actor", &self.actor, true)?;
        check("action", &self.action, true)?;
        check("outcome", &self.outcome, false)?;
        if let Some(venue) = &self.venue {
            check("venue", venue, true)?;
        }
        if let Some(subject) = &self.subject {
            check("subject", subject, true)?;
        }
        Ok(())
    }
}

/// One entry of the log as stored (one JSON line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Position in the log, from 0.
    pub seq: u64,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
    /// Hex SHA-256 of the previous entry (64 zeros for the first).
    pub prev: String,
    /// Hex SHA-256 of this entry.
    pub hash: String,
}

/// The hash of the (empty) chain before its first entry.
pub const GENESIS: [u8; 32] = [0; 32];

#[derive(Serialize)]
struct Body<'a> {
    seq: u64,
    #[serde(flatten)]
    event: &'a Event,
}

/// The hash of entry `seq` holding `event` after an entry hashed `prev`.
pub fn entry_hash(prev: &[u8; 32], seq: u64, event: &Event) -> [u8; 32] {
    // Serialising a struct of strings and integers cannot fail.
    let body = serde_json::to_vec(&Body { seq, event }).unwrap_or_default();
    let mut ctx = Context::new(&SHA256);
    ctx.update(ENTRY_DOMAIN);
    ctx.update(prev);
    ctx.update(&body);
    let mut out = [0; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Builds the entry that follows a chain of `seq` entries whose last hash is `prev`.
pub fn seal(prev: &[u8; 32], seq: u64, event: Event) -> (Entry, [u8; 32]) {
    let hash = entry_hash(prev, seq, &event);
    (Entry { seq, event, prev: hex::encode(prev), hash: hex::encode(hash) }, hash)
}

/// A signed statement "the log had `size` entries and its last one hashed `head`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Number of entries covered.
    pub size: u64,
    /// Hex hash of entry `size - 1` (of the genesis for size 0).
    pub head: String,
    /// When it was signed, seconds since the Unix epoch.
    pub at: i64,
    /// Hex Ed25519 signature.
    pub signature: String,
}

fn checkpoint_message(size: u64, head: &[u8; 32], at: i64) -> Vec<u8> {
    let mut message = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 48);
    message.extend_from_slice(CHECKPOINT_DOMAIN);
    message.extend_from_slice(&size.to_le_bytes());
    message.extend_from_slice(head);
    message.extend_from_slice(&at.to_le_bytes());
    message
}

/// Signs a checkpoint.
pub fn sign_checkpoint(key: &Ed25519KeyPair, size: u64, head: &[u8; 32], at: i64) -> Checkpoint {
    let signature = key.sign(&checkpoint_message(size, head, at));
    Checkpoint { size, head: hex::encode(head), at, signature: hex::encode(signature.as_ref()) }
}

/// Why a log failed verification. `index` is the 0-based entry (or checkpoint) at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Broken {
    /// An entry line is not a well-formed entry.
    #[error("entry {index}: unreadable ({why})")]
    Unreadable {
        /// The entry.
        index: u64,
        /// Parser message.
        why: String,
    },
    /// An entry's sequence number is not its position.
    #[error("entry {index}: sequence number {found} out of place")]
    Sequence {
        /// The entry.
        index: u64,
        /// The sequence number it carries.
        found: u64,
    },
    /// An entry does not follow its predecessor.
    #[error("entry {index}: does not follow entry {} (previous hash differs)", index.wrapping_sub(1))]
    Link {
        /// The entry.
        index: u64,
    },
    /// An entry's content does not match its hash: it was modified.
    #[error("entry {index}: content does not match its hash (modified)")]
    Content {
        /// The entry.
        index: u64,
    },
    /// A checkpoint's signature is invalid.
    #[error("checkpoint {index}: signature invalid")]
    Signature {
        /// The checkpoint.
        index: u64,
    },
    /// A checkpoint does not match the chain at its size: some entry from `from` (the first
    /// one no earlier checkpoint vouches for) to `to` (the checkpoint's last) was rewritten.
    #[error("entry {from}: entries {from} to {to} differ from signed checkpoint {index} (rewritten)")]
    Rewritten {
        /// The checkpoint.
        index: u64,
        /// The first entry not covered by an earlier valid checkpoint.
        from: u64,
        /// The last entry the checkpoint covers.
        to: u64,
    },
    /// The log's end is not covered by a checkpoint although the writer signs one every
    /// [`super::store::CHECKPOINT_EVERY`] entries: checkpoints were removed.
    #[error("entry {from}: entries {from} to {to} are covered by no signed checkpoint (checkpoints removed)")]
    Unsigned {
        /// The first unsigned entry.
        from: u64,
        /// The last entry.
        to: u64,
    },
    /// A checkpoint covers more entries than the log holds.
    #[error("entry {size}: missing, but signed checkpoint {index} covers more entries (truncated)")]
    Truncated {
        /// The checkpoint.
        index: u64,
        /// Entries the log holds (the first missing entry's index).
        size: u64,
    },
}

impl Broken {
    /// The first entry at fault (for a bad signature, the checkpoint's index).
    pub fn index(&self) -> u64 {
        match *self {
            Broken::Unreadable { index, .. }
            | Broken::Sequence { index, .. }
            | Broken::Link { index }
            | Broken::Content { index }
            | Broken::Signature { index } => index,
            Broken::Rewritten { from, .. } | Broken::Unsigned { from, .. } => from,
            Broken::Truncated { size, .. } => size,
        }
    }
}

/// The first line of a pruned log: a signed checkpoint over the entries removed (their number
/// and the hash of the last one), from which the chain of the entries kept continues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Base {
    /// The checkpoint of the removed prefix.
    pub base: Checkpoint,
}

/// A successful verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// Entries whose chain was checked, counting the pruned ones (whose count and last hash
    /// the signed base vouches for).
    pub entries: u64,
    /// Entries removed by retention before the base (0 for a log never pruned).
    pub pruned: u64,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
    /// Entries covered by the latest valid checkpoint.
    pub signed_through: u64,
    /// Hex hash of the last entry.
    pub head: String,
}

/// Incremental verifier: feed entry lines in order, then checkpoints, then finish.
#[derive(Debug)]
pub struct Verifier {
    prev: [u8; 32],
    /// Entries before the base of a pruned log, and the hash of the last of them.
    offset: u64,
    base_head: [u8; 32],
    heads: Vec<[u8; 32]>,
    signed: u64,
}

impl Default for Verifier {
    fn default() -> Verifier {
        Verifier::new()
    }
}

fn decode_hash(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text).ok()?;
    bytes.try_into().ok()
}

impl Verifier {
    /// A verifier at the start of the log.
    pub fn new() -> Verifier {
        Verifier { prev: GENESIS, offset: 0, base_head: GENESIS, heads: Vec::new(), signed: 0 }
    }

    /// Entries accepted so far, the pruned ones before a base included.
    pub fn len(&self) -> u64 {
        self.offset + self.heads.len() as u64
    }

    /// Whether no entry was accepted yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries removed before the base (0 without one).
    pub fn pruned(&self) -> u64 {
        self.offset
    }

    /// Starts a pruned log at its signed base: the chain continues from the base's head, at
    /// the base's size.
    ///
    /// # Errors
    /// [`Broken::Signature`] (index 0) for a bad signature, [`Broken::Sequence`] when entries
    /// were already accepted.
    pub fn base(&mut self, base: &Checkpoint, public_key: &[u8]) -> Result<(), Broken> {
        if !self.is_empty() {
            return Err(Broken::Sequence { index: self.len(), found: base.size });
        }
        let head = decode_hash(&base.head).ok_or(Broken::Signature { index: 0 })?;
        let signature = hex::decode(&base.signature).map_err(|_| Broken::Signature { index: 0 })?;
        UnparsedPublicKey::new(&ED25519, public_key)
            .verify(&checkpoint_message(base.size, &head, base.at), &signature)
            .map_err(|_| Broken::Signature { index: 0 })?;
        (self.prev, self.offset, self.base_head, self.signed) = (head, base.size, head, base.size);
        Ok(())
    }

    /// The hash of the last accepted entry (the genesis hash before any).
    pub fn head(&self) -> [u8; 32] {
        self.prev
    }

    /// Checks the next entry line.
    ///
    /// # Errors
    /// How the entry is broken.
    pub fn entry_line(&mut self, line: &str) -> Result<Entry, Broken> {
        let index = self.len();
        let entry: Entry =
            serde_json::from_str(line).map_err(|error| Broken::Unreadable { index, why: error.to_string() })?;
        self.entry(&entry)?;
        Ok(entry)
    }

    /// Checks the next entry.
    ///
    /// # Errors
    /// How the entry is broken.
    pub fn entry(&mut self, entry: &Entry) -> Result<(), Broken> {
        let index = self.len();
        if entry.seq != index {
            return Err(Broken::Sequence { index, found: entry.seq });
        }
        if decode_hash(&entry.prev) != Some(self.prev) {
            return Err(Broken::Link { index });
        }
        if entry.event.validate().is_err() {
            return Err(Broken::Content { index });
        }
        let hash = entry_hash(&self.prev, index, &entry.event);
        if decode_hash(&entry.hash) != Some(hash) {
            return Err(Broken::Content { index });
        }
        self.prev = hash;
        self.heads.push(hash);
        Ok(())
    }

    /// Entries covered by the largest checkpoint verified so far.
    pub fn signed_through(&self) -> u64 {
        self.signed
    }

    /// Checks checkpoint number `index` against the entries seen so far (feed checkpoints in
    /// the order they were signed).
    ///
    /// # Errors
    /// A bad signature, a checkpoint beyond the end of the log, or a rewritten entry.
    pub fn checkpoint(&mut self, index: u64, checkpoint: &Checkpoint, public_key: &[u8]) -> Result<(), Broken> {
        let head = decode_hash(&checkpoint.head).ok_or(Broken::Signature { index })?;
        let signature = hex::decode(&checkpoint.signature).map_err(|_| Broken::Signature { index })?;
        UnparsedPublicKey::new(&ED25519, public_key)
            .verify(&checkpoint_message(checkpoint.size, &head, checkpoint.at), &signature)
            .map_err(|_| Broken::Signature { index })?;
        if checkpoint.size > self.len() {
            return Err(Broken::Truncated { index, size: self.len() });
        }
        if checkpoint.size < self.offset {
            // It covers entries pruned behind the base, which vouches for them now.
            return Ok(());
        }
        let expected = match checkpoint.size - self.offset {
            0 => self.base_head,
            // In range: offset < size <= len was checked above.
            n => self.heads[(n - 1) as usize],
        };
        if expected != head {
            let to = checkpoint.size.saturating_sub(1);
            return Err(Broken::Rewritten { index, from: self.signed.min(to), to });
        }
        self.signed = self.signed.max(checkpoint.size);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::KeyPair;

    fn event(i: u64) -> Event {
        Event {
            at: 1_700_000_000 + i as i64,
            actor: "gate:arena/east-1".into(),
            action: "match.decision".into(),
            venue: Some("arena".into()),
            subject: Some(format!("ref-{i}")),
            outcome: if i.is_multiple_of(2) { "admitted".into() } else { "refused".into() },
        }
    }

    fn chain(n: u64) -> Vec<Entry> {
        let mut prev = GENESIS;
        (0..n)
            .map(|i| {
                let (entry, hash) = seal(&prev, i, event(i));
                prev = hash;
                entry
            })
            .collect()
    }

    fn key() -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("key");
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parse")
    }

    fn verify(entries: &[Entry]) -> Result<u64, Broken> {
        let mut v = Verifier::new();
        for e in entries {
            v.entry_line(&serde_json::to_string(e).expect("json"))?;
        }
        Ok(v.len())
    }

    #[test]
    fn an_intact_chain_verifies_and_each_kind_of_change_is_found_at_its_index() {
        let good = chain(10);
        assert_eq!(verify(&good), Ok(10));

        let mut modified = good.clone();
        modified[6].event.outcome = "refused".into();
        assert_eq!(verify(&modified), Err(Broken::Content { index: 6 }));

        let mut removed = good.clone();
        removed.remove(4);
        assert_eq!(verify(&removed), Err(Broken::Sequence { index: 4, found: 5 }));

        let mut swapped = good.clone();
        swapped.swap(2, 3);
        assert_eq!(verify(&swapped).map_err(|b| b.index()), Err(2));

        // A forger who recomputes the hash of entry 6 still breaks the link of entry 7.
        let mut forged = good.clone();
        forged[6].event.outcome = "refused".into();
        let prev = decode_hash(&forged[6].prev).expect("hex");
        forged[6].hash = hex::encode(entry_hash(&prev, 6, &forged[6].event));
        assert_eq!(verify(&forged), Err(Broken::Link { index: 7 }));

        assert!(matches!(Verifier::new().entry_line("{not json"), Err(Broken::Unreadable { index: 0, .. })));
    }

    #[test]
    fn checkpoints_catch_a_rewritten_tail_truncation_and_forged_signatures() {
        let key = key();
        let public = key.public_key().as_ref().to_vec();
        let good = chain(8);
        let head = decode_hash(&good[7].hash).expect("hex");
        let cp = sign_checkpoint(&key, 8, &head, 5);

        let mut v = Verifier::new();
        good.iter().try_for_each(|e| v.entry(e)).expect("intact");
        assert_eq!(v.checkpoint(0, &cp, &public), Ok(()));

        // The whole chain recomputed from entry 5 on is internally consistent, but differs
        // from what was signed.
        let mut rewritten = good[..5].to_vec();
        let mut prev = decode_hash(&good[4].hash).expect("hex");
        for i in 5..8 {
            let mut e = event(i);
            e.outcome = "admitted".into();
            let (entry, hash) = seal(&prev, i, e);
            rewritten.push(entry);
            prev = hash;
        }
        let mut v = Verifier::new();
        rewritten.iter().try_for_each(|e| v.entry(e)).expect("self-consistent");
        assert_eq!(v.checkpoint(0, &cp, &public), Err(Broken::Rewritten { index: 0, from: 0, to: 7 }));
        // With an earlier checkpoint at 5 that still matches, the rewrite is narrowed to 5..=7.
        let cp5 = sign_checkpoint(&key, 5, &decode_hash(&good[4].hash).expect("hex"), 4);
        let mut v = Verifier::new();
        rewritten.iter().try_for_each(|e| v.entry(e)).expect("self-consistent");
        assert_eq!(v.checkpoint(0, &cp5, &public), Ok(()));
        assert_eq!(v.checkpoint(1, &cp, &public), Err(Broken::Rewritten { index: 1, from: 5, to: 7 }));

        let mut v = Verifier::new();
        good[..6].iter().try_for_each(|e| v.entry(e)).expect("prefix");
        assert_eq!(v.checkpoint(0, &cp, &public), Err(Broken::Truncated { index: 0, size: 6 }));

        let mut forged = cp.clone();
        forged.size = 7;
        let mut v = Verifier::new();
        good.iter().try_for_each(|e| v.entry(e)).expect("intact");
        assert_eq!(v.checkpoint(3, &forged, &public), Err(Broken::Signature { index: 3 }));
        let other = key_public_other();
        assert_eq!(v.checkpoint(0, &cp, &other), Err(Broken::Signature { index: 0 }));
    }

    fn key_public_other() -> Vec<u8> {
        key().public_key().as_ref().to_vec()
    }

    #[test]
    fn events_with_oversize_or_control_fields_are_refused() {
        let mut e = event(0);
        e.outcome = "x".repeat(MAX_FIELD + 1);
        assert!(e.validate().is_err());
        let mut e = event(0);
        e.actor = "a\nb".into();
        assert!(e.validate().is_err());
        let mut e = event(0);
        e.action = String::new();
        assert!(e.validate().is_err());
        assert!(event(0).validate().is_ok());
    }
}
