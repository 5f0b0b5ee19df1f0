//! Scheme parameters and the security statement.

/// Where the security level and failure probability come from. Printed by `passage bench
/// match` and quoted in the DPIA.
pub const SECURITY_NOTE: &str = "GLWE k=1, N=2048, q=2^64, binary key, TUniform noise bound 2^17: \
the GLWE parameters of tfhe 1.8.2's default PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128, \
which tfhe documents as >= 128-bit secure (Lattice Estimator, BDGL16 cost model); \
tfhe's noise_formulas::secure_noise gives bound 2^17 as the minimum for 132 bits at N=2048 (checked by a test). \
Per-score failure probability from the measured noise std (see docs/fhe.md) is far below 2^-64.";

/// Parameters of the packed matching scheme. All sizes are checked by [`Params::validate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Polynomial size N.
    pub polynomial_size: usize,
    /// Embedding dimension d (a power of two dividing N): N/d templates per GLWE.
    pub dim: usize,
    /// log2 of the GLWE TUniform noise bound.
    pub glwe_noise_bound_log2: u32,
    /// log2 of Δ, the scale of template coefficients.
    pub delta_log: u32,
    /// Gadget decomposition base (log2) of the probe GGSW.
    pub decomp_base_log: usize,
    /// Gadget decomposition levels of the probe GGSW.
    pub decomp_levels: usize,
    /// Bits kept per coefficient of a response (modulus switch 2^64 -> 2^bits).
    pub response_bits: u32,
    /// Quantisation: bits per coefficient (signed).
    pub quant_bits: u32,
}

impl Params {
    /// The default: N = 2048, d = 128 (16 templates per GLWE), int4, Δ = 2^48, GGSW
    /// decomposition 2^16 x 2, 24-bit responses (the least that keeps 8 bits of noise margin
    /// below Δ: see `docs/fhe.md`).
    pub const DEFAULT: Params = Params {
        polynomial_size: 2048,
        dim: 128,
        glwe_noise_bound_log2: 17,
        delta_log: 48,
        decomp_base_log: 16,
        decomp_levels: 2,
        response_bits: 24,
        quant_bits: 4,
    };

    /// The default with another embedding dimension.
    ///
    /// Larger dimensions need a larger message space (Δ shrinks so that `d · 64` still fits)
    /// and a finer decomposition (a third level), because the decomposition rounding error
    /// is multiplied by the probe polynomial, whose weight grows with `d`.
    pub fn with_dim(dim: usize) -> Params {
        let dim_log = dim.max(1).ilog2();
        let delta_log = Params::DEFAULT.delta_log.min(56u32.saturating_sub(dim_log));
        let decomp_levels = if dim >= 512 { 3 } else { Params::DEFAULT.decomp_levels };
        // A smaller Δ needs as many more response bits to keep the same margin.
        let response_bits = Params::DEFAULT.response_bits.max(64 - delta_log + 8);
        Params { dim, delta_log, decomp_levels, response_bits, ..Params::DEFAULT }
    }

    /// Templates packed in one GLWE ciphertext.
    pub fn templates_per_glwe(&self) -> usize {
        self.polynomial_size / self.dim
    }

    /// Largest |score| the message space holds without wrapping.
    pub fn max_abs_score(&self) -> i64 {
        1i64 << (64 - self.delta_log - 1)
    }

    /// Largest |score| two quantised vectors can have: d * 2^(2(bits-1)).
    pub fn worst_case_score(&self) -> i64 {
        let m = 1i64 << (self.quant_bits - 1);
        self.dim as i64 * m * m
    }

    /// Checks the internal consistency of the parameters.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.polynomial_size;
        if !n.is_power_of_two() || !(256..=8192).contains(&n) {
            return Err(format!("polynomial size {n} must be a power of two in 256..=8192"));
        }
        if !self.dim.is_power_of_two() || self.dim < 16 || self.dim > n {
            return Err(format!("dimension {} must be a power of two in 16..={n}", self.dim));
        }
        if !(2..=8).contains(&self.quant_bits) {
            return Err(format!("quantisation bits {} must be in 2..=8", self.quant_bits));
        }
        if self.worst_case_score() >= self.max_abs_score() {
            return Err(format!(
                "scores up to {} do not fit the message space of Δ = 2^{}",
                self.worst_case_score(),
                self.delta_log
            ));
        }
        if self.decomp_base_log * self.decomp_levels > 64 || self.decomp_levels == 0 {
            return Err("decomposition must use 1..=64 bits".into());
        }
        if !(20..=32).contains(&self.response_bits) || self.response_bits < 64 - self.delta_log + 8 {
            return Err(format!("response bits {} leave no noise margin", self.response_bits));
        }
        Ok(())
    }

    /// A short stable identifier, written into every ciphertext so that a ciphertext for other
    /// parameters is refused.
    pub fn id(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for x in [
            self.polynomial_size as u64,
            self.dim as u64,
            u64::from(self.glwe_noise_bound_log2),
            u64::from(self.delta_log),
            self.decomp_base_log as u64,
            self.decomp_levels as u64,
            u64::from(self.response_bits),
            u64::from(self.quant_bits),
        ] {
            h ^= x;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_consistent_and_other_dims_too() {
        for dim in [64, 128, 256, 512] {
            assert_eq!(Params::with_dim(dim).validate(), Ok(()), "dim {dim}");
        }
        assert_eq!(Params::DEFAULT.templates_per_glwe(), 16);
    }

    #[test]
    fn the_noise_bound_meets_tfhe_secure_noise_formula() {
        use tfhe::core_crypto::commons::noise_formulas::secure_noise::minimal_glwe_bound_for_132_bits_security_tuniform;
        use tfhe::core_crypto::prelude::{GlweDimension, PolynomialSize};
        let p = Params::DEFAULT;
        let minimal = minimal_glwe_bound_for_132_bits_security_tuniform(
            GlweDimension(1),
            PolynomialSize(p.polynomial_size),
            2f64.powi(64),
        );
        assert!(p.glwe_noise_bound_log2 >= minimal, "bound 2^{} < secure 2^{minimal}", p.glwe_noise_bound_log2);
    }
}
