//! End-to-end tests across crates, against real brokers and services on loopback.
//! Built as one test binary (see Cargo.toml).

mod analytics;
mod auth;
mod broker;
mod dashboard;
mod demo;
mod dpia;
mod faces;
mod gate;
mod keys;
mod pki;
mod portal;
mod spool;
mod standalone;
mod support;
mod video;
