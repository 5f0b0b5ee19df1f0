//! Governance rules of Passage: consent, purposes, retention and audit.
//!
//! Here: the consent registry (in memory), the tamper-evident audit log ([`audit`]) and staff
//! accounts with a second factor, sessions, bearer tokens and per-venue scoping ([`accounts`]),
//! and per-subject encrypted records with crypto-shredding erasure ([`subjects`]).
//! Persistence with per-subject encryption, data-subject rights, retention sweeping, roles and
//! device identity are the governance issue's remaining work (see ARCHITECTURE.md).
#![deny(missing_docs)]

pub mod accounts;
mod atomic_file;
pub mod audit;
mod consent;
pub mod devices;
pub mod pki;
pub mod subjects;

pub use consent::{ConsentError, ConsentRegistry, Grant};
