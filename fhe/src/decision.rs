//! Decision mode: `[score ≥ threshold]` under encryption.
//!
//! For every evaluated template the matcher extracts the score's LWE sample from the packed
//! external product, shifts it so that its sign is the decision, key-switches it to a small LWE
//! key and runs **one** programmable bootstrap whose test polynomial outputs the decision bit at
//! the template's position in a block of [`DECISION_BLOCK`] templates. The bootstrapped samples
//! of a block are summed into one LWE ciphertext: the key holder decrypts a bit mask of the
//! block's matches and learns nothing else — no score, no distance to the threshold.
//!
//! Key switch and bootstrap use the LWE/GLWE parameters of tfhe 1.8.2's
//! `PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128` (small LWE n = 918 with TUniform noise 2^45,
//! key switch base 2^4 × 4 levels, bootstrap base 2^23 × 1 level, GLWE k = 1, N = 2048 with
//! TUniform noise 2^17): the bootstrap's output key is the venue's GLWE key, so nothing but the
//! key holder's secret key decrypts a decision.

use rayon::prelude::*;
use tfhe::core_crypto::commons::math::random::{CompressionSeed, Seed};
use tfhe::core_crypto::prelude::*;
use zeroize::Zeroize;

use crate::codec::{self, CodecError};
use crate::gallery::{external_product, Workspace};
use crate::{FheRng, Gallery, GalleryError, Params, PreparedProbe, Quantizer, SecretKey, SlotId, Target};

/// Dimension of the small LWE key the scores are key-switched to before bootstrapping.
pub const SMALL_LWE_DIMENSION: usize = 918;
/// log2 of the TUniform noise bound of the key-switching key (under the small key).
const SMALL_LWE_NOISE_BOUND_LOG2: u32 = 45;
const KS_BASE_LOG: usize = 4;
const KS_LEVELS: usize = 4;
const PBS_BASE_LOG: usize = 23;
const PBS_LEVELS: usize = 1;
/// Templates whose decisions share one response ciphertext (a bit mask of this many bits).
///
/// The sum of `K` bootstrapped samples carries `sqrt(K)` times the bootstrap's output noise
/// (measured ≈ 2^49.5 on the 2^64 torus); the mask's unit is 2^(64-K). With K = 8 the margin is
/// 2^55 / 2^51 = 16 standard deviations (see `docs/fhe.md`).
pub const DECISION_BLOCK: usize = 8;
/// Bits kept per response coefficient after the final modulus switch.
const RESPONSE_BITS: u32 = 32;

const KEY_TAG: &[u8; 4] = b"PDK1";
const RESULT_TAG: &[u8; 4] = b"PDR1";

fn ksk_words(params: &Params) -> usize {
    params.polynomial_size * KS_LEVELS
}

fn bsk_words(params: &Params) -> usize {
    SMALL_LWE_DIMENSION * PBS_LEVELS * 2 * params.polynomial_size
}

/// The evaluation material for decision mode, made by the key holder and published to the
/// matcher: a key-switching key (venue GLWE key → a fresh small LWE key) and a bootstrapping
/// key (small LWE key → venue GLWE key), both with their masks compressed to seeds. It is
/// public material: it decrypts nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct DecisionKey {
    pub(crate) params: Params,
    ksk_seed: u128,
    ksk: Vec<u64>,
    bsk_seed: u128,
    bsk: Vec<u64>,
}

impl std::fmt::Debug for DecisionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DecisionKey({} bytes)", self.encoded_len())
    }
}

impl SecretKey {
    /// Makes the decision-mode evaluation material. A fresh small LWE key is drawn, used for
    /// both keys and zeroized; it is never stored. Takes a few seconds (the bootstrapping key
    /// is generated on the current rayon pool).
    pub fn generate_decision_key(&self, rng: &mut FheRng) -> DecisionKey {
        let p = self.params;
        let n = p.polynomial_size;
        let mut secret = SecretRandomGenerator::<DefaultRandomGenerator>::new(rng.seed());
        let mut small = LweSecretKey::generate_new_binary(LweDimension(SMALL_LWE_DIMENSION), &mut secret);
        let big = self.glwe.as_lwe_secret_key();

        let ksk_seed = rng.seed();
        let mut ksk = SeededLweKeyswitchKeyOwned::new(
            0u64,
            DecompositionBaseLog(KS_BASE_LOG),
            DecompositionLevelCount(KS_LEVELS),
            big.lwe_dimension(),
            small.lwe_dimension(),
            CompressionSeed::from(ksk_seed),
            CiphertextModulus::new_native(),
        );
        let ks_noise = DynamicDistribution::<u64>::new_t_uniform(SMALL_LWE_NOISE_BOUND_LOG2);
        generate_seeded_lwe_keyswitch_key(&big, &small, &mut ksk, ks_noise, rng.seeder());

        let bsk_seed = rng.seed();
        let mut bsk = SeededLweBootstrapKeyOwned::new(
            0u64,
            GlweSize(2),
            PolynomialSize(n),
            DecompositionBaseLog(PBS_BASE_LOG),
            DecompositionLevelCount(PBS_LEVELS),
            small.lwe_dimension(),
            CompressionSeed::from(bsk_seed),
            CiphertextModulus::new_native(),
        );
        par_generate_seeded_lwe_bootstrap_key(&small, &self.glwe, &mut bsk, self.noise(), rng.seeder());
        small.as_mut().zeroize();
        DecisionKey {
            params: p,
            ksk_seed: ksk_seed.0,
            ksk: ksk.into_container(),
            bsk_seed: bsk_seed.0,
            bsk: bsk.into_container(),
        }
    }
}

impl DecisionKey {
    /// Size of the encoding (about 30 MB at the default parameters).
    pub fn encoded_len(&self) -> usize {
        Self::encoded_len_for(&self.params)
    }

    /// Size of the encoding for `params`.
    pub fn encoded_len_for(params: &Params) -> usize {
        codec::HEADER_LEN + 32 + 8 * (ksk_words(params) + bsk_words(params))
    }

    /// Encodes for transfer to the matcher and for its storage.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = codec::header(KEY_TAG, self.params.id(), self.encoded_len());
        out.extend_from_slice(&self.ksk_seed.to_le_bytes());
        out.extend_from_slice(&self.bsk_seed.to_le_bytes());
        codec::put_u64s(&mut out, &self.ksk);
        codec::put_u64s(&mut out, &self.bsk);
        out
    }

    /// Decodes a key for `params`; the length is implied by the parameters.
    ///
    /// # Errors
    /// On a wrong tag, version, parameter set or length.
    pub fn from_bytes(params: Params, bytes: &[u8]) -> Result<DecisionKey, CodecError> {
        let body_len = Self::encoded_len_for(&params) - codec::HEADER_LEN;
        let body = codec::open(bytes, KEY_TAG, "decision key", params.id(), body_len)?;
        let seed = |b: &[u8]| {
            let mut w = [0u8; 16];
            w.copy_from_slice(b);
            u128::from_le_bytes(w)
        };
        let ksk_end = 32 + 8 * ksk_words(&params);
        Ok(DecisionKey {
            params,
            ksk_seed: seed(&body[..16]),
            bsk_seed: seed(&body[16..32]),
            ksk: codec::get_u64s(&body[32..ksk_end]),
            bsk: codec::get_u64s(&body[ksk_end..]),
        })
    }

    /// The parameters the key was made for.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Expands the seeds and converts the bootstrapping key to the Fourier domain, on the
    /// current rayon pool (about 120 MB of RAM at the default parameters).
    pub fn prepare(&self) -> PreparedDecisionKey {
        let p = self.params;
        let n = p.polynomial_size;
        let seeded_ksk = SeededLweKeyswitchKey::from_container(
            self.ksk.as_slice(),
            DecompositionBaseLog(KS_BASE_LOG),
            DecompositionLevelCount(KS_LEVELS),
            LweSize(SMALL_LWE_DIMENSION + 1),
            CompressionSeed::from(Seed(self.ksk_seed)),
            CiphertextModulus::new_native(),
        );
        let ksk = seeded_ksk.par_decompress_into_lwe_keyswitch_key();
        let seeded_bsk = SeededLweBootstrapKey::from_container(
            self.bsk.as_slice(),
            GlweSize(2),
            PolynomialSize(n),
            DecompositionBaseLog(PBS_BASE_LOG),
            DecompositionLevelCount(PBS_LEVELS),
            CompressionSeed::from(Seed(self.bsk_seed)),
            CiphertextModulus::new_native(),
        );
        let bsk = seeded_bsk.par_decompress_into_lwe_bootstrap_key();
        let mut fourier = FourierLweBootstrapKey::new(
            LweDimension(SMALL_LWE_DIMENSION),
            GlweSize(2),
            PolynomialSize(n),
            DecompositionBaseLog(PBS_BASE_LOG),
            DecompositionLevelCount(PBS_LEVELS),
        );
        par_convert_standard_lwe_bootstrap_key_to_fourier(&bsk, &mut fourier);
        PreparedDecisionKey { params: p, ksk, bsk: fourier }
    }
}

/// The decision key expanded for evaluation (matcher side, RAM only).
pub struct PreparedDecisionKey {
    params: Params,
    ksk: LweKeyswitchKeyOwned<u64>,
    bsk: FourierLweBootstrapKeyOwned,
}

impl std::fmt::Debug for PreparedDecisionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreparedDecisionKey")
    }
}

impl PreparedDecisionKey {
    /// The parameters the key was made for.
    pub fn params(&self) -> &Params {
        &self.params
    }
}

/// How a score becomes the sign the bootstrap reads: `φ = (score − threshold + ½)·Δ·2^shift`.
#[derive(Debug, Clone, Copy)]
struct Shift {
    offset: u64,
    shift: u32,
}

/// Chooses the largest left shift that keeps `(score − threshold + ½)·Δ` inside the half
/// torus for every score two quantised unit vectors can have: the shift multiplies the score's
/// distance to the threshold before the key switch and the modulus switch, whose rounding
/// noise (≈ 2^-9.5 of the torus) is what limits the precision near the threshold.
fn shift_for(params: &Params, threshold: i32) -> Result<Shift, String> {
    let bound = Quantizer::new(params).score_bound() + i64::from(threshold).abs() + 1;
    let room = 63 - i64::from(params.delta_log);
    let needed = 64 - i64::from(bound.leading_zeros());
    if needed > room {
        return Err(format!("threshold {threshold} is outside the score range of the parameters"));
    }
    let shift = (room - needed) as u32;
    let delta_log = params.delta_log;
    let offset = ((i64::from(threshold) as u64) << delta_log).wrapping_sub(1u64 << (delta_log - 1));
    Ok(Shift { offset, shift })
}

/// Encrypted decisions: one LWE ciphertext (under the venue key, modulus-switched to 32 bits)
/// per block of up to [`DECISION_BLOCK`] templates, decrypting to the block's match bit mask.
#[derive(Clone, PartialEq, Eq)]
pub struct DecisionResult {
    pub(crate) params: Params,
    pub(crate) blocks: Vec<DecisionBlock>,
}

#[derive(Clone, PartialEq, Eq)]
pub(crate) struct DecisionBlock {
    /// Slot of bit 0.
    pub(crate) first_slot: SlotId,
    /// Templates covered (bits 0..count).
    pub(crate) count: u8,
    /// LWE mask (N coefficients) then body, each modulus-switched to 32 bits.
    pub(crate) lwe: Vec<u32>,
}

impl std::fmt::Debug for DecisionResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DecisionResult(templates={})", self.n_templates())
    }
}

/// What the key holder learns from a decision result.
#[derive(Debug, Clone, PartialEq)]
pub struct DecryptedDecisions {
    /// Slots whose template matched, ascending.
    pub matches: Vec<SlotId>,
    /// Number of templates evaluated.
    pub evaluated: usize,
    /// Largest |noise| / (mask unit) over the blocks; decryption is exact while below 0.5.
    pub max_noise_fraction: f64,
}

impl DecisionResult {
    /// Number of templates the result covers.
    pub fn n_templates(&self) -> usize {
        self.blocks.iter().map(|b| usize::from(b.count)).sum()
    }

    /// Size of the encoding in bytes.
    pub fn encoded_len(&self) -> usize {
        codec::HEADER_LEN + 4 + self.blocks.len() * (5 + 4 * (self.params.polynomial_size + 1))
    }

    /// Encodes for the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = codec::header(RESULT_TAG, self.params.id(), self.encoded_len());
        out.extend_from_slice(&(self.blocks.len() as u32).to_le_bytes());
        for b in &self.blocks {
            out.extend_from_slice(&b.first_slot.to_le_bytes());
            out.push(b.count);
            for w in &b.lwe {
                out.extend_from_slice(&w.to_le_bytes());
            }
        }
        out
    }

    /// Decodes a result, checking the block count against the input length before reading.
    ///
    /// # Errors
    /// On a wrong tag, version, parameter set, impossible count or length mismatch.
    pub fn from_bytes(params: Params, bytes: &[u8]) -> Result<DecisionResult, CodecError> {
        const WHAT: &str = "decision result";
        let body_len = bytes.len().saturating_sub(codec::HEADER_LEN);
        let body = codec::open(bytes, RESULT_TAG, WHAT, params.id(), body_len)?;
        let block_len = 5 + 4 * (params.polynomial_size + 1);
        if body.len() < 4 {
            return Err(CodecError::Length { what: WHAT, expected: 4, found: body.len() });
        }
        let n_blocks = u32::from_le_bytes([body[0], body[1], body[2], body[3]]) as usize;
        let expected = 4 + n_blocks.saturating_mul(block_len);
        if n_blocks == 0 || body.len() != expected {
            return Err(CodecError::Invalid {
                what: WHAT,
                reason: format!("{n_blocks} blocks need {expected} bytes, got {}", body.len()),
            });
        }
        let mut blocks = Vec::with_capacity(n_blocks);
        for chunk in body[4..].chunks_exact(block_len) {
            let first_slot = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            let count = chunk[4];
            if count == 0 || usize::from(count) > DECISION_BLOCK {
                return Err(CodecError::Invalid { what: WHAT, reason: format!("block of {count} templates") });
            }
            let lwe = chunk[5..].chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])).collect();
            blocks.push(DecisionBlock { first_slot, count, lwe });
        }
        Ok(DecisionResult { params, blocks })
    }
}

impl SecretKey {
    /// Decrypts the match bit mask of every block.
    ///
    /// # Errors
    /// If the result was made for other parameters.
    pub fn decrypt_decisions(&self, result: &DecisionResult) -> Result<DecryptedDecisions, String> {
        if result.params != self.params {
            return Err("result parameters do not match the key".into());
        }
        let n = self.params.polynomial_size;
        let unit_shift = RESPONSE_BITS - DECISION_BLOCK as u32;
        let mut matches = Vec::new();
        let mut max_noise: f64 = 0.0;
        for block in &result.blocks {
            let (mask, body) = block.lwe.split_at(n);
            let mut phase = body[0];
            for (i, &a) in mask.iter().enumerate() {
                if self.bit(i) == 1 {
                    phase = phase.wrapping_sub(a);
                }
            }
            let value = phase.wrapping_add(1 << (unit_shift - 1)) >> unit_shift;
            let noise = phase.wrapping_sub(value << unit_shift) as i32;
            max_noise = max_noise.max((f64::from(noise) / f64::from(1u32 << unit_shift)).abs());
            for bit in 0..usize::from(block.count) {
                if value >> bit & 1 == 1 {
                    matches.push(block.first_slot + bit as SlotId);
                }
            }
        }
        matches.sort_unstable();
        Ok(DecryptedDecisions { matches, evaluated: result.n_templates(), max_noise_fraction: max_noise })
    }
}

/// Scratch space for the decision pipeline of one thread.
struct DecisionWorkspace {
    product: Workspace,
    big: LweCiphertextOwned<u64>,
    small: LweCiphertextOwned<u64>,
    bootstrapped: LweCiphertextOwned<u64>,
    buffers: ComputationBuffers,
}

impl DecisionWorkspace {
    fn new(params: &Params) -> DecisionWorkspace {
        let n = params.polynomial_size;
        let product = Workspace::new(params);
        let mut buffers = ComputationBuffers::new();
        buffers.resize(
            programmable_bootstrap_lwe_ciphertext_mem_optimized_requirement::<u64>(
                GlweSize(2),
                PolynomialSize(n),
                product.fft.as_view(),
            )
            .unaligned_bytes_required(),
        );
        let native = CiphertextModulus::new_native();
        DecisionWorkspace {
            product,
            big: LweCiphertext::new(0u64, LweSize(n + 1), native),
            small: LweCiphertext::new(0u64, LweSize(SMALL_LWE_DIMENSION + 1), native),
            bootstrapped: LweCiphertext::new(0u64, LweSize(n + 1), native),
            buffers,
        }
    }
}

/// Removes the mean of the bootstrap's modulus-switch error. The bootstrap rounds every mask
/// coefficient `a_i` to `log2(2N)` bits; the rounding errors `e_i` are public, and with a
/// binary key (mean ½) the phase moves by `−Σ e_i·s_i`, whose expectation `−Σ e_i / 2` we add
/// back to the body. This halves the variance of the error that limits the precision near the
/// threshold.
fn center_modulus_switch(lwe: &mut LweCiphertextOwned<u64>, polynomial_size: usize) {
    let drop = 64 - (2 * polynomial_size).ilog2();
    let half = 1u64 << (drop - 1);
    let mut sum: i128 = 0;
    for &a in lwe.get_mask().as_ref() {
        let rounded = (a.wrapping_add(half) >> drop) << drop;
        sum += i128::from(rounded.wrapping_sub(a) as i64);
    }
    let body = lwe.get_mut_body();
    *body.data = body.data.wrapping_add((sum / 2) as i64 as u64);
}

/// Test polynomials: for bit `i` of a block, every coefficient is `2^(63 - K + i)`, so the
/// negacyclic bootstrap outputs `+c` for a non-negative phase and `−c` for a negative one.
fn test_polynomials(params: &Params) -> Vec<GlweCiphertextOwned<u64>> {
    let n = params.polynomial_size;
    (0..DECISION_BLOCK)
        .map(|bit| {
            let c = 1u64 << (63 - DECISION_BLOCK + bit);
            let mut acc = GlweCiphertext::new(0u64, GlweSize(2), PolynomialSize(n), CiphertextModulus::new_native());
            acc.get_mut_body().as_mut().fill(c);
            acc
        })
        .collect()
}

impl Gallery {
    /// Evaluates `probe` against `target` in decision mode: the result holds, per block of
    /// templates, an encrypted bit mask of `[score ≥ threshold]`. One key switch and one
    /// bootstrap per template, in parallel on the current rayon pool.
    ///
    /// # Errors
    /// On a parameter mismatch, an empty gallery, an unknown slot or a threshold outside the
    /// score range.
    pub fn evaluate_decisions(
        &self,
        probe: &PreparedProbe,
        target: Target,
        key: &PreparedDecisionKey,
        threshold: i32,
    ) -> Result<DecisionResult, GalleryError> {
        let params = *self.params();
        if probe.params != params || key.params != params {
            return Err(GalleryError::ParamsMismatch);
        }
        if self.is_empty() {
            return Err(GalleryError::Empty);
        }
        let shift = shift_for(&params, threshold).map_err(GalleryError::Threshold)?;
        let tests = test_polynomials(&params);
        let n_templates = self.len();
        // Ranges of slots whose decisions share a block, each with the bit of its first slot.
        let ranges: Vec<(usize, usize)> = match target {
            Target::All => (0..n_templates)
                .step_by(DECISION_BLOCK)
                .map(|start| (start, (start + DECISION_BLOCK).min(n_templates)))
                .collect(),
            Target::Slot(slot) => {
                let index = slot as usize;
                if index >= n_templates {
                    return Err(GalleryError::UnknownSlot(slot));
                }
                vec![(index, index + 1)]
            }
        };
        let blocks = ranges
            .par_iter()
            .map_init(
                || (DecisionWorkspace::new(&params), None::<usize>),
                |(ws, cached_group), &(start, end)| {
                    self.decide_block(probe, key, &tests, shift, ws, cached_group, start, end)
                },
            )
            .collect();
        Ok(DecisionResult { params, blocks })
    }

    #[allow(clippy::too_many_arguments)]
    fn decide_block(
        &self,
        probe: &PreparedProbe,
        key: &PreparedDecisionKey,
        tests: &[GlweCiphertextOwned<u64>],
        shift: Shift,
        ws: &mut DecisionWorkspace,
        cached_group: &mut Option<usize>,
        start: usize,
        end: usize,
    ) -> DecisionBlock {
        let params = self.params();
        let n = params.polynomial_size;
        let per = params.templates_per_glwe();
        let mut sum = vec![0u64; n + 1];
        for slot in start..end {
            let group = slot / per;
            if *cached_group != Some(group) {
                external_product(params, self.group(group), probe, &mut ws.product);
                *cached_group = Some(group);
            }
            let position = params.dim * (slot % per);
            let glwe = GlweCiphertext::from_container(
                ws.product.out.as_slice(),
                PolynomialSize(n),
                CiphertextModulus::new_native(),
            );
            extract_lwe_sample_from_glwe_ciphertext(&glwe, &mut ws.big, MonomialDegree(position));
            let body = ws.big.get_mut_body();
            *body.data = body.data.wrapping_sub(shift.offset);
            for x in ws.big.as_mut() {
                *x = x.wrapping_shl(shift.shift);
            }
            keyswitch_lwe_ciphertext(&key.ksk, &ws.big, &mut ws.small);
            center_modulus_switch(&mut ws.small, n);
            let bit = slot - start;
            programmable_bootstrap_lwe_ciphertext_mem_optimized(
                &ws.small,
                &mut ws.bootstrapped,
                &tests[bit],
                &key.bsk,
                ws.product.fft.as_view(),
                ws.buffers.stack(),
            );
            for (acc, x) in sum.iter_mut().zip(ws.bootstrapped.as_ref()) {
                *acc = acc.wrapping_add(*x);
            }
            // ±c + c: 2c = 2^(64-K+bit) when the score reaches the threshold, 0 otherwise.
            sum[n] = sum[n].wrapping_add(1u64 << (63 - DECISION_BLOCK + bit));
        }
        let drop_bits = 64 - RESPONSE_BITS;
        let lwe = sum.iter().map(|&x| (x.wrapping_add(1u64 << (drop_bits - 1)) >> drop_bits) as u32).collect();
        DecisionBlock { first_slot: start as SlotId, count: (end - start) as u8, lwe }
    }
}
