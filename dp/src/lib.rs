//! Differential-privacy mechanisms for counts, with exact samplers.
//!
//! Noise never comes from floating-point arithmetic (Mironov 2012 shows how textbook
//! floating-point Laplace leaks): every sample is drawn with integer arithmetic from uniform
//! integers of a CSPRNG, by the algorithms of Canonne, Kamath and Steinke, "The Discrete
//! Gaussian for Differential Privacy" (NeurIPS 2020), Algorithms 1 and 2. Floating point is
//! used only to *report* a noise scale, never to produce noise.
//!
//! The library does no I/O; the caller passes the random generator in. Services use
//! [`Csprng`], a ChaCha20 generator seeded from the operating system.
#![deny(missing_docs)]

use rand::{Rng, RngCore, SeedableRng};
use thiserror::Error;

/// The CSPRNG every release uses: ChaCha20 seeded from the operating system.
pub type Csprng = rand_chacha::ChaCha20Rng;

/// A fresh CSPRNG seeded from the operating system's entropy source.
pub fn csprng() -> Csprng {
    Csprng::from_os_rng()
}

/// Why a mechanism could not be built.
#[derive(Debug, Error, PartialEq)]
#[non_exhaustive]
pub enum DpError {
    /// Epsilon must be finite and in (0, 1000].
    #[error("epsilon {0} must be finite and in (0, 1000]")]
    BadEpsilon(f64),
}

/// Exact Bernoulli(num/den) for integers 0 <= num <= den, den > 0.
fn bernoulli_rational<R: RngCore>(rng: &mut R, num: u64, den: u64) -> bool {
    debug_assert!(den > 0 && num <= den);
    rng.random_range(0..den) < num
}

/// Exact Bernoulli(exp(-num/den)) (CKS20, Algorithm 1).
fn bernoulli_exp_neg<R: RngCore>(rng: &mut R, num: u64, den: u64) -> bool {
    debug_assert!(den > 0);
    if num <= den {
        // gamma in [0, 1]: K <- 1; while Bernoulli(gamma / K) K += 1; return K odd.
        let mut k: u64 = 1;
        loop {
            let Some(kden) = den.checked_mul(k) else { return k % 2 == 1 };
            if !bernoulli_rational(rng, num, kden) {
                break;
            }
            k += 1;
        }
        k % 2 == 1
    } else {
        for _ in 0..num / den {
            if !bernoulli_exp_neg(rng, 1, 1) {
                return false;
            }
        }
        bernoulli_exp_neg(rng, num % den, den)
    }
}

/// Discrete Laplace sample with P(x) proportional to exp(-|x| * s / t) (CKS20, Algorithm 2):
/// the scale is t/s.
fn discrete_laplace<R: RngCore>(rng: &mut R, s: u64, t: u64) -> i64 {
    loop {
        let u = rng.random_range(0..t);
        if !bernoulli_exp_neg(rng, u, t) {
            continue;
        }
        let mut v: u64 = 0;
        while bernoulli_exp_neg(rng, 1, 1) {
            v += 1;
        }
        let x = u.saturating_add(t.saturating_mul(v));
        let y = (x / s) as i64;
        let negative = rng.random::<bool>();
        if negative && y == 0 {
            continue;
        }
        return if negative { -y } else { y };
    }
}

/// Denominator used to turn a floating-point epsilon into an exact rational.
const EPSILON_DENOMINATOR: u64 = 1_000_000;

/// The discrete Laplace mechanism for counting queries of sensitivity 1: releases
/// `count + Z` with `P(Z = z)` proportional to `exp(-epsilon * |z|)`, which is
/// epsilon-differentially private for one added or removed event.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscreteLaplace {
    /// epsilon = s / t exactly; the noise scale is t / s.
    s: u64,
    t: u64,
}

impl DiscreteLaplace {
    /// Builds the mechanism for `epsilon`, rounded *down* to a multiple of 1e-6 so the
    /// guarantee never exceeds the one asked for.
    ///
    /// # Errors
    /// [`DpError::BadEpsilon`] unless epsilon is finite and in (0, 1000].
    pub fn new(epsilon: f64) -> Result<DiscreteLaplace, DpError> {
        if !(epsilon.is_finite() && epsilon > 0.0 && epsilon <= 1000.0) {
            return Err(DpError::BadEpsilon(epsilon));
        }
        let s = (epsilon * EPSILON_DENOMINATOR as f64).floor() as u64;
        if s == 0 {
            return Err(DpError::BadEpsilon(epsilon));
        }
        Ok(DiscreteLaplace { s, t: EPSILON_DENOMINATOR })
    }

    /// The epsilon actually guaranteed (after rounding down).
    pub fn epsilon(&self) -> f64 {
        self.s as f64 / self.t as f64
    }

    /// Standard deviation of the noise: for `P(z) ∝ exp(-eps |z|)`, the variance is
    /// `2 e^-eps / (1 - e^-eps)^2`.
    pub fn std(&self) -> f64 {
        let q = (-self.epsilon()).exp();
        (2.0 * q).sqrt() / (1.0 - q)
    }

    /// One noise sample.
    pub fn sample<R: RngCore>(&self, rng: &mut R) -> i64 {
        discrete_laplace(rng, self.s, self.t)
    }

    /// Releases `count` with noise added.
    pub fn release<R: RngCore>(&self, count: i64, rng: &mut R) -> i64 {
        count.saturating_add(self.sample(rng))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeded() -> Csprng {
        Csprng::seed_from_u64(7)
    }

    #[test]
    fn bernoulli_exp_matches_its_probability() {
        let mut rng = seeded();
        for (num, den) in [(1u64, 2u64), (1, 1), (3, 2), (5, 1)] {
            let n = 200_000;
            let hits = (0..n).filter(|_| bernoulli_exp_neg(&mut rng, num, den)).count() as f64;
            let p = (-(num as f64) / den as f64).exp();
            let sd = (p * (1.0 - p) / n as f64).sqrt();
            assert!((hits / n as f64 - p).abs() < 5.0 * sd, "exp(-{num}/{den}): {} vs {p}", hits / n as f64);
        }
    }

    #[test]
    fn discrete_laplace_has_the_claimed_distribution() {
        let mut rng = seeded();
        for epsilon in [0.1, 0.5, 1.0, 2.0] {
            let mech = DiscreteLaplace::new(epsilon).expect("valid epsilon");
            let n = 200_000;
            let samples: Vec<i64> = (0..n).map(|_| mech.sample(&mut rng)).collect();
            let mean = samples.iter().sum::<i64>() as f64 / n as f64;
            let var = samples.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n as f64;
            let std = mech.std();
            assert!(mean.abs() < 5.0 * std / (n as f64).sqrt(), "eps {epsilon}: mean {mean}");
            assert!((var.sqrt() / std - 1.0).abs() < 0.02, "eps {epsilon}: std {} vs {std}", var.sqrt());
            // P(0) = (1 - q) / (1 + q) with q = exp(-eps).
            let q = (-epsilon).exp();
            let p0 = (1.0 - q) / (1.0 + q);
            let f0 = samples.iter().filter(|&&x| x == 0).count() as f64 / n as f64;
            assert!((f0 - p0).abs() < 5.0 * (p0 * (1.0 - p0) / n as f64).sqrt(), "eps {epsilon}: P(0) {f0} vs {p0}");
        }
    }

    #[test]
    fn bad_epsilons_are_refused() {
        for epsilon in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-9, 1e4] {
            assert!(DiscreteLaplace::new(epsilon).is_err(), "{epsilon}");
        }
    }

    #[test]
    fn epsilon_is_rounded_down() {
        let mech = DiscreteLaplace::new(0.123_456_789).expect("valid");
        assert!(mech.epsilon() <= 0.123_456_789);
        assert!(mech.epsilon() > 0.123_455);
    }
}
