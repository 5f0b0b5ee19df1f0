//! Encrypted match results and their decryption by the key holder.

use rayon::prelude::*;
use zeroize::Zeroizing;

use crate::codec::{self, CodecError};
use crate::{Params, SecretKey, SlotId};

const TAG: &[u8; 4] = b"PSR1";

/// The result of one packed external product, modulus-switched to `response_bits` and kept as
/// it travels: the output mask and the body coefficients of the evaluated templates, packed.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct GroupResult {
    /// Slot of the first evaluated template.
    pub(crate) first_slot: SlotId,
    /// Position (0..N/d) of that template inside its packed GLWE.
    pub(crate) first_position: u16,
    /// Templates evaluated (body coefficients d·j for j = first_position ..
    /// first_position + count).
    pub(crate) count: u16,
    /// The N mask words, then the `count` body words, packed by [`pack_words`].
    pub(crate) packed: Vec<u8>,
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
        self.groups.iter().map(|g| usize::from(g.count)).sum()
    }

    /// Size of the encoding in bytes.
    pub fn encoded_len(&self) -> usize {
        codec::HEADER_LEN + 4 + self.groups.iter().map(|g| 8 + g.packed.len()).sum::<usize>()
    }

    /// Encodes for the wire: per group its first slot, position and count, then the mask and
    /// the bodies as `response_bits`-bit words packed little-endian (the group's last byte
    /// padded with zero bits), as the evaluation left them.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = codec::header(TAG, self.params.id(), self.encoded_len());
        out.extend_from_slice(&(self.groups.len() as u32).to_le_bytes());
        for g in &self.groups {
            out.extend_from_slice(&g.first_slot.to_le_bytes());
            out.extend_from_slice(&g.first_position.to_le_bytes());
            out.extend_from_slice(&g.count.to_le_bytes());
            out.extend_from_slice(&g.packed);
        }
        out
    }

    /// Decodes a result, checking every count against the parameters before reading it.
    ///
    /// # Errors
    /// On a wrong tag, version, parameter set, an impossible count, a length mismatch or
    /// non-zero padding bits.
    pub fn from_bytes(params: Params, bytes: &[u8]) -> Result<ScoreResult, CodecError> {
        const WHAT: &str = "score result";
        // The length depends on the counts inside; check the header with the body it claims.
        let body_len = bytes.len().saturating_sub(codec::HEADER_LEN);
        let body = codec::open(bytes, TAG, WHAT, params.id(), body_len)?;
        let n = params.polynomial_size;
        let bits = params.response_bits;
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
        // Each group takes at least 8 bytes plus its packed mask: refuse counts the input
        // cannot hold.
        if n_groups == 0 || n_groups > body.len() / (8 + packed_len(n, bits)) {
            return Err(invalid(format!("{n_groups} groups cannot fit in {} bytes", body.len())));
        }
        let mut groups = Vec::with_capacity(n_groups);
        for _ in 0..n_groups {
            let head = take(8)?;
            let first_slot = read_u32(&head[..4]);
            let first_position = u16::from_le_bytes([head[4], head[5]]);
            let count = u16::from_le_bytes([head[6], head[7]]);
            if count == 0 || usize::from(first_position) + usize::from(count) > per {
                return Err(invalid(format!(
                    "{count} templates from position {first_position} exceed {per} per ciphertext"
                )));
            }
            let words = n + usize::from(count);
            let packed = take(packed_len(words, bits))?;
            if !padding_is_zero(packed, words, bits) {
                return Err(invalid("non-zero padding bits".into()));
            }
            groups.push(GroupResult { first_slot, first_position, count, packed: packed.to_vec() });
        }
        if !rest.is_empty() {
            return Err(invalid(format!("{} trailing bytes", rest.len())));
        }
        Ok(ScoreResult { params, groups })
    }
}

/// Bytes taken by `count` words of `bits` bits, packed.
pub(crate) fn packed_len(count: usize, bits: u32) -> usize {
    (count * bits as usize).div_ceil(8)
}

/// Writes `words` (each below 2^bits) into `out` (zeroed, exactly [`packed_len`] bytes) as a
/// little-endian bit stream; the last byte's unused bits stay zero.
pub(crate) fn pack_words(out: &mut [u8], words: impl Iterator<Item = u32>, bits: u32) {
    // Whole bytes: the widths the parameters use, written without the bit accumulator.
    match bits {
        24 => {
            for (dst, w) in out.chunks_exact_mut(3).zip(words) {
                let b = w.to_le_bytes();
                dst.copy_from_slice(&[b[0], b[1], b[2]]);
            }
            return;
        }
        32 => {
            for (dst, w) in out.chunks_exact_mut(4).zip(words) {
                dst.copy_from_slice(&w.to_le_bytes());
            }
            return;
        }
        _ => {}
    }
    let mut acc: u64 = 0;
    let mut filled = 0u32;
    let mut at = 0;
    for w in words {
        acc |= u64::from(w) << filled;
        filled += bits;
        while filled >= 8 {
            out[at] = acc as u8;
            at += 1;
            acc >>= 8;
            filled -= 8;
        }
    }
    if filled > 0 {
        out[at] = acc as u8;
    }
}

/// Whether the bits after `count` words of `bits` bits in `bytes` (exactly [`packed_len`]
/// bytes) are zero: every result has one encoding.
fn padding_is_zero(bytes: &[u8], count: usize, bits: u32) -> bool {
    let used = (count * bits as usize) % 8;
    used == 0 || bytes.last().is_some_and(|&last| last >> used == 0)
}

/// Reads `count` words of `bits` bits from [`packed_len`] bytes into `out` (cleared first).
fn unpack_words(bytes: &[u8], count: usize, bits: u32, out: &mut Vec<u32>) {
    out.clear();
    match bits {
        24 => out.extend(bytes.chunks_exact(3).take(count).map(|c| u32::from_le_bytes([c[0], c[1], c[2], 0]))),
        32 => out.extend(bytes.chunks_exact(4).take(count).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
        _ => {
            let mask = (1u64 << bits) - 1;
            let mut acc: u64 = 0;
            let mut filled = 0u32;
            let mut input = bytes.iter();
            for _ in 0..count {
                while filled < bits {
                    acc |= u64::from(input.next().copied().unwrap_or(0)) << filled;
                    filled += 8;
                }
                out.push((acc & mask) as u32);
                acc >>= bits;
                filled -= bits;
            }
        }
    }
}

impl SecretKey {
    /// Decrypts every score of `result`, on the current rayon pool.
    ///
    /// For a packed output (A, B) modulus-switched to 2^w, the phase at coefficient m is
    /// `B_m - Σ_{i≤m} A_{m-i}·s_i + Σ_{i>m} A_{N+m-i}·s_i` (negacyclic), and the score is the
    /// phase rounded to a multiple of Δ' = 2^(w - (64 - log Δ)). The phase is computed modulo
    /// 2^32 (w ≤ 32) as two masked sums against a row of key bits per position, which the
    /// compiler vectorises.
    ///
    /// # Errors
    /// If the result was made for other parameters.
    pub fn decrypt_scores(&self, result: &ScoreResult) -> Result<DecryptedScores, String> {
        let p = self.params;
        if result.params != p {
            return Err("result parameters do not match the key".into());
        }
        let rows = PhaseRows::new(self);
        // Each group writes its scores straight into its part of the one output (no copies of
        // scores are left behind in freed memory; the caller wipes the output).
        let mut scores = vec![(0 as SlotId, 0i32); result.n_templates()];
        let mut rest = scores.as_mut_slice();
        let mut parts = Vec::with_capacity(result.groups.len());
        for g in &result.groups {
            let (part, tail) = std::mem::take(&mut rest).split_at_mut(usize::from(g.count));
            parts.push((g, part));
            rest = tail;
        }
        // One buffer of unpacked words per worker, reused across its groups.
        let max_noise = parts
            .into_par_iter()
            .map_init(Vec::new, |words, (g, out)| rows.decrypt(g, out, words))
            .reduce(|| 0.0, f64::max);
        Ok(DecryptedScores { scores, max_noise_fraction: max_noise })
    }
}

/// The key's bits arranged for decryption: for each template position `k` of a packed GLWE
/// (coefficient `m = d·k`), a row with all ones at `j` where the phase takes `A_j`: `s_{m-j}`
/// for `j ≤ m` (subtracted), `s_{N+m-j}` for `j > m` (added). Key material: zeroized on drop.
struct PhaseRows {
    params: Params,
    rows: Zeroizing<Vec<u32>>,
}

impl PhaseRows {
    fn new(key: &SecretKey) -> PhaseRows {
        let p = key.params;
        let n = p.polynomial_size;
        let per = p.templates_per_glwe();
        let mut rows = Zeroizing::new(vec![0u32; per * n]);
        for (k, row) in rows.chunks_exact_mut(n).enumerate() {
            let m = p.dim * k;
            for (j, r) in row.iter_mut().enumerate() {
                let bit = if j <= m { key.bit(m - j) } else { key.bit(n + m - j) };
                *r = if bit == 1 { u32::MAX } else { 0 };
            }
        }
        PhaseRows { params: p, rows }
    }

    /// Writes the scores of one group into `out` (one per template), unpacking its words into
    /// `words`, and returns the largest |noise| / Δ among them.
    fn decrypt(&self, g: &GroupResult, out: &mut [(SlotId, i32)], words: &mut Vec<u32>) -> f64 {
        let p = self.params;
        let n = p.polynomial_size;
        let message_bits = 64 - p.delta_log;
        let delta_shift = p.response_bits - message_bits;
        let modulus_mask: u64 = (1u64 << p.response_bits) - 1;
        unpack_words(&g.packed, n + usize::from(g.count), p.response_bits, words);
        let (mask, bodies) = words.split_at(n);
        let mut max_noise: f64 = 0.0;
        for (k, (&b, score_out)) in bodies.iter().zip(out.iter_mut()).enumerate() {
            let position = usize::from(g.first_position) + k;
            let m = p.dim * position;
            let row = &self.rows[position * n..][..n];
            let phase = b
                .wrapping_sub(masked_sum(&mask[..=m], &row[..=m]))
                .wrapping_add(masked_sum(&mask[m + 1..], &row[m + 1..]));
            let phase = u64::from(phase) & modulus_mask;
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
            *score_out = (g.first_slot + k as SlotId, score as i32);
        }
        max_noise
    }
}

/// `Σ a_j & mask_j` modulo 2^32.
fn masked_sum(a: &[u32], mask: &[u32]) -> u32 {
    a.iter().zip(mask).fold(0u32, |sum, (x, m)| sum.wrapping_add(x & m))
}

#[cfg(test)]
mod tests {
    use super::{pack_words, packed_len, padding_is_zero, unpack_words};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn packed_words_round_trip(bits in 20u32..=32, seed in proptest::collection::vec(any::<u32>(), 0..100)) {
            let words: Vec<u32> = seed.iter().map(|w| if bits == 32 { *w } else { w & ((1 << bits) - 1) }).collect();
            let mut bytes = vec![0u8; packed_len(words.len(), bits)];
            pack_words(&mut bytes, words.iter().copied(), bits);
            prop_assert!(padding_is_zero(&bytes, words.len(), bits));
            let mut back = Vec::new();
            unpack_words(&bytes, words.len(), bits, &mut back);
            prop_assert_eq!(back, words);
        }
    }

    #[test]
    fn padding_bits_must_be_zero() {
        // Three 25-bit words take 75 bits: the last 5 bits of the 10th byte are padding.
        let mut bytes = vec![0u8; packed_len(3, 25)];
        assert_eq!(bytes.len(), 10);
        pack_words(&mut bytes, [1, 2, 3].into_iter(), 25);
        assert!(padding_is_zero(&bytes, 3, 25));
        bytes[9] |= 0x80;
        assert!(!padding_is_zero(&bytes, 3, 25));
        // Whole bytes have no padding.
        assert!(padding_is_zero(&[0xff; 9], 3, 24));
    }
}
