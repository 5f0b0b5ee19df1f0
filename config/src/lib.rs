//! The deployment configuration: venues, gates, cameras, counting lines and zones,
//! capacities, purposes, retention, the DP budget, matching, broker and storage.
//!
//! One TOML file describes a deployment; [`Config::default`] is a complete demo deployment so
//! no file is needed to try Passage. [`Config::from_toml`] reports *every* problem it finds
//! (syntax, types, and cross-references such as a camera naming an unknown line), each with its
//! line and column, so an operator fixes a file in one pass.
//!
//! This crate does no I/O: the caller reads the file.
#![deny(missing_docs)]

mod check;
mod model;
mod register;
mod spans;

pub use check::{ConfigError, ConfigErrors};
pub use model::*;
pub use register::*;
