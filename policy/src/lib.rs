//! Governance rules of Passage: consent, purposes, retention and audit.
//!
//! Here: the consent registry (in memory, rebuilt at start from the evidence in [`subjects`]), the tamper-evident audit log ([`audit`]) and staff
//! accounts with a second factor, sessions, bearer tokens and per-venue scoping ([`accounts`]),
//! per-subject encrypted records with crypto-shredding erasure ([`subjects`]), device
//! identity ([`devices`], [`pki`]) and crash-safe file replacement ([`atomic_file`]), which the
//! edge agent's state files use too, per-address rate limiting ([`ratelimit`]) and the
//! retention rules for what the subject store keeps ([`retention`]), signed entry tickets
//! ([`tickets`]) and the gate's access rules with their reason codes ([`access`]).
#![deny(missing_docs)]

pub mod access;
pub mod accounts;
pub mod atomic_file;
pub mod audit;
mod consent;
pub mod devices;
pub mod pki;
pub mod ratelimit;
pub mod retention;
pub mod subjects;
pub mod tickets;

pub use consent::{ConsentError, ConsentRegistry, Grant};
