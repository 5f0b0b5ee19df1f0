//! Governance rules of Passage: consent, purposes, retention and audit.
//!
//! Here: the consent registry (in memory) and the tamper-evident audit log ([`audit`]).
//! Persistence with per-subject encryption, data-subject rights, retention sweeping, roles and
//! device identity are the governance issue's remaining work (see ARCHITECTURE.md).
#![deny(missing_docs)]

pub mod audit;
mod consent;

pub use consent::{ConsentError, ConsentRegistry, Grant};
