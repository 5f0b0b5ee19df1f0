//! Image models for the edge agent (people for counting, faces for the gate), run in this
//! process through tract.
//!
//! * [`image`]: resizing packed RGB frames into model input tensors (pure).
//! * [`ssd`]: SSD anchor generation, box decoding and non-maximum suppression (pure).
//! * [`person`]: the pedestrian SSDLite person detector (reads its model file once).
//! * [`inventory`]: the models Passage uses, where they come from and their sha256 pins.
//! * [`onnx`]: loading ONNX files into tract (pin check, weight folding, fixed input shapes).
//! * [`warp`]: affine sampling into model inputs and 5-point face alignment (pure).
//! * [`face`]: face detection, liveness, alignment and embedding.
//! * [`anonymize`]: irreversible mosaics over faces, the only way an image leaves the edge.
//! * [`decode`]: bounded JPEG/PNG decoding of untrusted bytes, and encoding.
//!
//! Frames and the tensors made from them live in RAM only and are zeroized after use
//! (privacy invariant 1); nothing here logs or writes anything.

pub mod anonymize;
pub mod decode;
pub mod face;
pub mod image;
pub mod inventory;
pub mod onnx;
pub mod person;
pub mod ssd;
mod tract_ops;
pub mod warp;

pub use person::{PersonBox, PersonDetector};

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VisionError {
    /// The model file could not be read.
    #[error("cannot read model file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The model file is not the pinned one.
    #[error("model file {path} has sha256 {got}, expected {expected}; run `passage models fetch` again")]
    Checksum {
        /// The file.
        path: String,
        /// What it hashed to.
        got: String,
        /// The pin.
        expected: String,
    },
    /// tract could not load, optimise or run the model.
    #[error("model runtime: {0}")]
    Runtime(String),
    /// The image buffer does not hold `w * h` packed RGB pixels.
    #[error("image buffer of {got} bytes does not match {w}x{h} RGB")]
    BadImage {
        /// Buffer length.
        got: usize,
        /// Claimed width.
        w: u32,
        /// Claimed height.
        h: u32,
    },
}

impl VisionError {
    pub(crate) fn runtime(error: impl std::fmt::Display) -> VisionError {
        VisionError::Runtime(format!("{error:#}"))
    }
}

/// The sha256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// Reads a model file and checks it against its pin.
///
/// # Errors
/// [`VisionError::Read`] or [`VisionError::Checksum`].
pub fn read_pinned(path: &std::path::Path, spec: &inventory::ModelSpec) -> Result<Vec<u8>, VisionError> {
    let bytes = std::fs::read(path).map_err(|source| VisionError::Read { path: path.display().to_string(), source })?;
    let got = sha256_hex(&bytes);
    if got != spec.sha256 {
        return Err(VisionError::Checksum { path: path.display().to_string(), got, expected: spec.sha256.to_owned() });
    }
    Ok(bytes)
}
