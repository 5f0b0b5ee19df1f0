//! The edge agent: everything that runs on the venue's premises, next to the cameras and
//! gates, in RAM only.
//!
//! * Count path ([`count`]): tracked positions → line crossings and zone transitions →
//!   exact discrete Laplace noise → [`passage_wire::CountRecord`]. Raw tallies and track ids
//!   never leave the process.
//! * Face path: [`face`] turns frames into at most one embedding per person per approach
//!   (detection, liveness, alignment, embedding through [`passage_vision::face`]); the venue's
//!   FHE key holder ([`keyholder`]) quantises and encrypts them as probes, decrypts the
//!   matcher's encrypted scores and decides.
//! * [`gate`]: the gate end to end: a frame (faces or a QR ticket) or a scanned ticket in,
//!   green or red out, checked against consent, tickets, zone capacity and the clock; the
//!   kiosk's live state; denial notices to the visitor's own device ([`notices`]).
//! * [`evidence`]: evidence mode (off by default): anonymised frames kept for hours, then
//!   deleted by the agent.
//! * [`frames`]: frame sources (still images, image directories, video files and streams
//!   through an `ffmpeg` pipe), RAM only.
//! * [`spool`]: store-and-forward of the noised records: spooled on disk before they are
//!   published, deleted once analytics acknowledges them.
//! * [`portal`]: the visitor portal (HTTPS page and API): consent against the venue's
//!   versioned notice, enrolment from a photo, and the visitor's own export, withdrawal and
//!   erasure across every store.
//! * [`retention`]: the sweeper that applies the venues' retention rules to the subject store.
//! * [`sim`]: a scene and face simulator with ground truth; [`agents`]: the tasks that run
//!   them in `passage demo`.
#![deny(missing_docs)]

pub mod agents;
pub mod count;
pub mod enrolment;
pub mod evidence;
pub mod face;
pub mod frames;
pub mod gate;
pub mod keyholder;
pub mod keystore;
pub mod notices;
pub mod portal;
pub mod retention;
pub mod sim;
pub mod spool;

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Locks `m`, taking the data of a poisoned lock (every holder leaves it consistent).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
