//! Governance rules of Passage: consent, purposes, retention and audit.
//!
//! Foundation scope: the consent registry below (in memory). Persistence with per-subject
//! encryption, data-subject rights, retention sweeping, roles, device identity and the
//! tamper-evident audit log are the governance issue's work (see ARCHITECTURE.md).
#![deny(missing_docs)]

mod consent;

pub use consent::{ConsentError, ConsentRegistry, Grant};
