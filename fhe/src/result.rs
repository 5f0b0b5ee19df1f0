//! Encrypted match results and their decryption by the key holder.

use crate::codec::{self, CodecError};
use crate::{Params, SecretKey, SlotId};

const TAG: &[u8; 4] = b"PSR1";

/// The result of one packed external product, modulus-switched: the output mask polynomial and
/// the body coefficients of the evaluated templates.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct GroupResult {
    /// Slot of the first evaluated template.
    pub(crate) first_slot: SlotId,
    /// Position (0..N/d) of that template inside its packed GLWE.
    pub(crate) first_position: u16,
    /// Output mask, N coefficients.
    pub(crate) mask: Vec<u32>,
    /// Body coefficients d·j for j = first_position .. first_position + bodies.len().
    pub(crate) bodies: Vec<u32>,
}

/// Encrypted scores: what the matcher returns. Only the key holder can read them.
#[derive(Clone, PartialEq, Eq)]
pub struct ScoreResult {
    pub(crate) params: Params,
    pub(crate) groups: Vec<GroupResult>,
}

impl std::fmt::Debug for ScoreResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScoreResult(templates={})", self.n_templates())
    }
}

/// Decrypted scores, in slot order, with the measured noise.
#[derive(Debug, Clone, PartialEq)]
pub struct DecryptedScores {
    /// (slot, integer score) for every evaluated template.
    pub scores: Vec<(SlotId, i32)>,
    /// Largest |noise| / Δ seen; decryption is exact while it stays below 0.5.
    pub max_noise_fraction: f64,
}

impl ScoreResult {
    /// Number of templates the result covers.
    pub fn n_templates(&self) -> usize {
        self.groups.iter().map(|g| g.bodies.len()).sum()
    }

    /// Size of the encoding in bytes.
    pub fn encoded_len(&self) -> usize {
        codec::HEADER_LEN + 4 + self.groups.iter().map(|g| 8 + 4 * (g.mask.len() + g.bodies.len())).sum::<usize>()
    }

    /// Encodes for the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = codec::header(TAG, self.params.id(), self.encoded_len());
        out.extend_from_slice(&(self.groups.len() as u32).to_le_bytes());
        for g in &self.groups {
            out.extend_from_slice(&g.first_slot.to_le_bytes());
            out.extend_from_slice(&g.first_position.to_le_bytes());
            out.extend_from_slice(&(g.bodies.len() as u16).to_le_bytes());
            for w in g.mask.iter().chain(&g.bodies) {
                out.extend_from_slice(&w.to_le_bytes());
            }
        }
        out
    }

    /// Decodes a result, checking every count against the parameters before reading it.
    ///
    /// # Errors
    /// On a wrong tag, version, parameter set, an impossible count or a length mismatch.
    pub fn from_bytes(params: Params, bytes: &[u8]) -> Result<ScoreResult, CodecError> {
        const WHAT: &str = "score result";
        // The length depends on the counts inside; check the header with the body it claims.
        let body_len = bytes.len().saturating_sub(codec::HEADER_LEN);
        let body = codec::open(bytes, TAG, WHAT, params.id(), body_len)?;
        let n = params.polynomial_size;
        let per = params.templates_per_glwe();
        let invalid = |reason: String| CodecError::Invalid { what: WHAT, reason };
        let mut rest = body;
        let mut take = |len: usize| -> Result<&[u8], CodecError> {
            if rest.len() < len {
                return Err(CodecError::Length { what: WHAT, expected: len, found: rest.len() });
            }
            let (head, tail) = rest.split_at(len);
            rest = tail;
            Ok(head)
        };
        let read_u32 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let n_groups = read_u32(take(4)?) as usize;
        // Each group takes at least 8 + 4N bytes: refuse counts the input cannot hold.
        if n_groups == 0 || n_groups > body.len() / (8 + 4 * n) {
            return Err(invalid(format!("{n_groups} groups cannot fit in {} bytes", body.len())));
        }
        let mut groups = Vec::with_capacity(n_groups);
        for _ in 0..n_groups {
            let head = take(8)?;
            let first_slot = read_u32(&head[..4]);
            let first_position = u16::from_le_bytes([head[4], head[5]]);
            let count = usize::from(u16::from_le_bytes([head[6], head[7]]));
            if count == 0 || usize::from(first_position) + count > per {
                return Err(invalid(format!(
                    "{count} templates from position {first_position} exceed {per} per ciphertext"
                )));
            }
            let words = take(4 * (n + count))?;
            let mut values = words.chunks_exact(4).map(read_u32);
            let mask = values.by_ref().take(n).collect();
            let bodies = values.collect();
            groups.push(GroupResult { first_slot, first_position, mask, bodies });
        }
        if !rest.is_empty() {
            return Err(invalid(format!("{} trailing bytes", rest.len())));
        }
        Ok(ScoreResult { params, groups })
    }
}

impl SecretKey {
    /// Decrypts every score of `result`.
    ///
    /// For a packed output (A, B) modulus-switched to 2^w, the phase at coefficient m is
    /// `B_m - Σ_{i≤m} A_{m-i}·s_i + Σ_{i>m} A_{N+m-i}·s_i` (negacyclic), and the score is the
    /// phase rounded to a multiple of Δ' = 2^(w - (64 - log Δ)).
    ///
    /// # Errors
    /// If the result was made for other parameters.
    pub fn decrypt_scores(&self, result: &ScoreResult) -> Result<DecryptedScores, String> {
        let p = self.params;
        if result.params != p {
            return Err("result parameters do not match the key".into());
        }
        let n = p.polynomial_size;
        let ones: Vec<usize> = (0..n).filter(|&i| self.bit(i) == 1).collect();
        let message_bits = 64 - p.delta_log;
        let delta_shift = p.response_bits - message_bits;
        let modulus_mask: u64 = if p.response_bits == 64 { u64::MAX } else { (1u64 << p.response_bits) - 1 };
        let mut scores = Vec::with_capacity(result.n_templates());
        let mut max_noise: f64 = 0.0;
        for g in &result.groups {
            for (k, &b) in g.bodies.iter().enumerate() {
                let m = p.dim * (usize::from(g.first_position) + k);
                let mut phase = u64::from(b);
                for &i in &ones {
                    if i <= m {
                        phase = phase.wrapping_sub(u64::from(g.mask[m - i]));
                    } else {
                        phase = phase.wrapping_add(u64::from(g.mask[n + m - i]));
                    }
                }
                let phase = phase & modulus_mask;
                let rounded = (phase + (1u64 << (delta_shift - 1))) >> delta_shift;
                // Signed message in [-2^(bits-1), 2^(bits-1)).
                let message = rounded & ((1u64 << message_bits) - 1);
                let score = if message >= 1u64 << (message_bits - 1) {
                    message as i64 - (1i64 << message_bits)
                } else {
                    message as i64
                };
                let noise = phase.wrapping_sub((score as u64) << delta_shift) & modulus_mask;
                let noise = if noise >= 1u64 << (p.response_bits - 1) {
                    noise as i64 - (1i64 << p.response_bits)
                } else {
                    noise as i64
                };
                max_noise = max_noise.max((noise as f64 / (1u64 << delta_shift) as f64).abs());
                scores.push((g.first_slot + k as SlotId, score as i32));
            }
        }
        Ok(DecryptedScores { scores, max_noise_fraction: max_noise })
    }
}
