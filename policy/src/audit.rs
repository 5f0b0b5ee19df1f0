//! The tamper-evident audit log: a SHA-256 hash chain of pseudonymous entries with signed
//! Ed25519 checkpoints ([`chain`], no I/O), kept in an append-only directory ([`store`]).

pub mod chain;
pub mod store;

pub use chain::{Base, Broken, Checkpoint, Entry, Event, EventError, Verified};
pub use store::{read, read_public_key, verify, AuditError, AuditLog};
