//! The matcher: holds each venue's encrypted gallery and evaluates encrypted probes against it.
//!
//! **Architecture invariant:** this crate handles ciphertexts only. It has no secret key and
//! no way to get one; it never sees an embedding, a score or a decision in the clear. It may
//! run in someone else's cloud.
//!
//! Requests arrive over MQTT 5 (request/response with response topic and correlation data,
//! shared subscriptions so several matchers can split the load) and over HTTPS. Evaluation
//! runs on a dedicated rayon pool, one request at a time using every core; a bounded queue
//! in front of it answers "busy" instead of growing.
#![deny(missing_docs)]

mod http;
mod service;
mod store;

pub use http::{app, serve};
pub use service::{Matcher, MatcherError, MatcherOptions, MatcherStats};
pub use store::{GalleryStore, StoreError};
