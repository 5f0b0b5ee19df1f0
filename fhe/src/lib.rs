//! The Passage FHE matching scheme: packed encrypted inner products under TFHE.
//!
//! Shared by the key holder (the venue's gate controller, which has the secret key) and the
//! matcher (which has only ciphertexts). No I/O, no clock, no threads of its own beyond the
//! rayon pool the caller sizes, and randomness is passed in ([`FheRng`]).
//!
//! # The scheme (see `docs/fhe.md` for the derivations)
//! * Templates: L2-normalised embeddings quantised to signed 4-bit integers ([`Quantizer`]),
//!   each encrypted by the key holder as a seeded GLWE ciphertext (k = 1, N = 2048) with the
//!   template in coefficients `0..d`, scaled by Δ = 2^48 ([`EncryptedTemplate`]).
//! * Gallery: the matcher rotates template `j` of a group by `X^(d·j)` (exact, noiseless) and
//!   sums `N/d` of them into one GLWE; it precomputes the signed gadget decomposition of that
//!   GLWE in the Fourier domain once ([`Gallery`]).
//! * Probe: the key holder encrypts `P(X) = p_0 - Σ_{i≥1} p_i X^(N-i)` as a GGSW ciphertext
//!   ([`EncryptedProbe`]). The external product `GGSW(P) ⊡ GLWE(T)` has, at coefficient
//!   `d·j`, Δ·⟨t_j, p⟩ — the negacyclic product puts no cross-template term there.
//! * Response: per group, the output mask and the `d·j` body coefficients, modulus-switched
//!   to 24 bits and packed ([`ScoreResult`]); the key holder decrypts one exact integer score per
//!   template ([`SecretKey::decrypt_scores`]).
//! * Decision mode: with the key holder's [`DecisionKey`] (key-switching and bootstrapping
//!   keys), the matcher turns each score into `[score ≥ threshold]` with one key switch and
//!   one programmable bootstrap, and sums the bits of 8 templates into one LWE ciphertext
//!   ([`Gallery::evaluate_decisions`], [`DecisionResult`]); the key holder learns only which
//!   templates matched ([`SecretKey::decrypt_decisions`]).
#![deny(missing_docs)]

mod codec;
mod decision;
mod gallery;
mod keys;
mod params;
mod probe;
mod quant;
mod result;
mod template;
#[cfg(test)]
mod tests;

pub use codec::CodecError;
pub use decision::{
    DecisionKey, DecisionResult, DecryptedDecisions, PreparedDecisionKey, DECISION_BLOCK, SMALL_LWE_DIMENSION,
};
pub use gallery::{Gallery, GalleryError, SlotId, Target};
pub use keys::{FheRng, SecretKey};
pub use params::{Params, SECURITY_NOTE};
pub use probe::{EncryptedProbe, PreparedProbe};
pub use quant::{plain_score, QuantizedVector, Quantizer};
pub use result::{DecryptedScores, ScoreResult};
pub use template::EncryptedTemplate;
