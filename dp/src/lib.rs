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
//!
//! Map: `sampler` (exact Bernoulli, discrete Laplace, discrete Gaussian), [`DiscreteLaplace`]
//! and [`DiscreteGaussian`] (single releases), [`continual`] (running totals over a day:
//! per-interval Laplace, binary tree, square-root factorisation), [`accounting`] (budgets,
//! zCDP), [`ledger`] (per-venue per-day budget), [`postprocess`] (consistency after noise),
//! [`audit`] (statistical epsilon lower bounds from neighbouring runs).
#![deny(missing_docs)]

pub mod accounting;
pub mod audit;
pub mod continual;
pub mod ledger;
pub mod postprocess;
mod sampler;

use rand::{RngCore, SeedableRng};
use thiserror::Error;

pub use accounting::Budget;
pub use continual::{ContinualCounter, Mechanism, Release};
pub use ledger::BudgetLedger;
use sampler::{discrete_gaussian, discrete_laplace, variance_rational};

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
    /// Delta must be finite and in [0, 1e-3] (and > 0 where Gaussian noise needs it).
    #[error("delta {0} must be in [0, 1e-3], and > 0 for Gaussian noise")]
    BadDelta(f64),
    /// Sigma must be finite and positive.
    #[error("sigma {0} must be finite and in (0, 1e9]")]
    BadSigma(f64),
    /// A continual counter needs 1 to 2^20 intervals.
    #[error("horizon {0} must be between 1 and 1048576 intervals")]
    BadHorizon(usize),
    /// The counter has released all its intervals; a new horizon needs new budget.
    #[error("all {0} intervals of this horizon have been released; its budget is spent")]
    HorizonExhausted(usize),
    /// The venue's budget for the day does not cover this release.
    #[error("privacy budget exhausted for venue `{venue}` on day {day}: asked epsilon {asked}, {remaining} left")]
    BudgetExhausted {
        /// Venue.
        venue: String,
        /// Day number (days since the Unix epoch).
        day: i64,
        /// Epsilon asked for.
        asked: f64,
        /// Epsilon left.
        remaining: f64,
    },
    /// A stored ledger could not be read.
    #[error("budget ledger is malformed: {0}")]
    BadLedger(String),
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
        discrete_laplace(rng, u128::from(self.s), u128::from(self.t))
    }

    /// Releases `count` with noise added.
    pub fn release<R: RngCore>(&self, count: i64, rng: &mut R) -> i64 {
        count.saturating_add(self.sample(rng))
    }
}

/// The discrete Gaussian mechanism: releases `count + Z` with `P(Z = z)` proportional to
/// `exp(-z^2 / 2 sigma^2)`; for sensitivity-1 counts it is (1 / 2 sigma^2)-zCDP (CKS20).
#[derive(Debug, Clone, PartialEq)]
pub struct DiscreteGaussian {
    sigma: f64,
    variance: (u128, u128),
}

impl DiscreteGaussian {
    /// The mechanism with scale `sigma` (sigma^2 rounded up to a rational).
    ///
    /// # Errors
    /// [`DpError::BadSigma`] unless sigma is finite and in (0, 1e9].
    pub fn with_sigma(sigma: f64) -> Result<DiscreteGaussian, DpError> {
        if !(sigma.is_finite() && sigma > 0.0 && sigma <= 1e9) {
            return Err(DpError::BadSigma(sigma));
        }
        Ok(DiscreteGaussian { sigma, variance: variance_rational(sigma) })
    }

    /// The mechanism that makes a sensitivity-1 count (epsilon, delta)-DP.
    ///
    /// # Errors
    /// [`DpError::BadEpsilon`], [`DpError::BadDelta`] (delta must be > 0).
    pub fn for_budget(budget: Budget) -> Result<DiscreteGaussian, DpError> {
        let rho = accounting::rho_for(budget)?;
        DiscreteGaussian::with_sigma(accounting::sigma_for(1.0, rho))
    }

    /// The scale parameter sigma (an upper bound on the noise's standard deviation).
    pub fn sigma(&self) -> f64 {
        self.sigma
    }

    /// The standard deviation of the noise: the discrete Gaussian's variance, summed exactly
    /// over its support (it is slightly below sigma^2 for small sigma).
    pub fn std(&self) -> f64 {
        sampler::discrete_gaussian_variance(self.sigma).sqrt()
    }

    /// One noise sample.
    pub fn sample<R: RngCore>(&self, rng: &mut R) -> i64 {
        discrete_gaussian(rng, self.variance.0, self.variance.1)
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
    fn the_gaussian_for_a_budget_has_the_zcdp_scale() {
        let g = DiscreteGaussian::for_budget(Budget { epsilon: 1.0, delta: 1e-6 }).expect("valid");
        // rho ~ 0.0244 for (1, 1e-6): sigma = 1 / sqrt(2 rho) ~ 4.53.
        assert!(g.sigma() > 4.4 && g.sigma() < 4.7, "{}", g.sigma());
        assert!(DiscreteGaussian::with_sigma(0.0).is_err());
        let mut rng = seeded();
        let n = 50_000;
        let var = (0..n).map(|_| (g.release(10, &mut rng) - 10).pow(2) as f64).sum::<f64>() / n as f64;
        assert!((var.sqrt() / g.std() - 1.0).abs() < 0.03, "{}", var.sqrt());
    }

    #[test]
    fn epsilon_is_rounded_down() {
        let mech = DiscreteLaplace::new(0.123_456_789).expect("valid");
        assert!(mech.epsilon() <= 0.123_456_789);
        assert!(mech.epsilon() > 0.123_455);
    }
}
