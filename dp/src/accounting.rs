//! Privacy accounting: budgets, zero-concentrated DP and its conversion to (epsilon, delta).
//!
//! The Gaussian-noise mechanisms are analysed in rho-zCDP (Bun and Steinke 2016): the discrete
//! Gaussian with L2 sensitivity Δ and scale σ is (Δ²/2σ²)-zCDP (CKS20, Theorem 14). Budgets are
//! stated as (epsilon, delta); [`zcdp_delta`] converts with the tight bound of CKS20,
//! Corollary 13, and [`rho_for`] finds the largest rho that stays within a budget.
//!
//! Floating point appears only here, to *choose* a noise scale; every choice errs towards more
//! noise, and the noise itself is drawn exactly (see the `sampler` module).

use serde::{Deserialize, Serialize};

use crate::DpError;

/// A privacy budget or cost: (epsilon, delta)-differential privacy. Pure DP has delta = 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Epsilon.
    pub epsilon: f64,
    /// Delta.
    pub delta: f64,
}

impl Budget {
    /// A pure epsilon-DP budget.
    pub fn pure(epsilon: f64) -> Budget {
        Budget { epsilon, delta: 0.0 }
    }

    /// Checks that epsilon is finite and in (0, 1000] and delta in [0, 1e-3].
    ///
    /// # Errors
    /// [`DpError::BadEpsilon`] or [`DpError::BadDelta`].
    pub fn validate(self) -> Result<Budget, DpError> {
        if !(self.epsilon.is_finite() && self.epsilon > 0.0 && self.epsilon <= 1000.0) {
            return Err(DpError::BadEpsilon(self.epsilon));
        }
        if !(self.delta.is_finite() && (0.0..=1e-3).contains(&self.delta)) {
            return Err(DpError::BadDelta(self.delta));
        }
        Ok(self)
    }

    /// Basic sequential composition: the cost of running both.
    pub fn plus(self, other: Budget) -> Budget {
        Budget { epsilon: self.epsilon + other.epsilon, delta: self.delta + other.delta }
    }

    /// Whether `self` fits within `limit` (with a relative slack of 1e-9 for rounding).
    pub fn within(self, limit: Budget) -> bool {
        self.epsilon <= limit.epsilon * (1.0 + 1e-9) && self.delta <= limit.delta * (1.0 + 1e-9)
    }

    /// What is left of `self` after spending `spent` (never negative).
    pub fn minus(self, spent: Budget) -> Budget {
        Budget { epsilon: (self.epsilon - spent.epsilon).max(0.0), delta: (self.delta - spent.delta).max(0.0) }
    }
}

/// The smallest delta such that rho-zCDP implies (epsilon, delta)-DP (CKS20, Corollary 13):
/// delta = inf over alpha > 1 of exp((alpha-1)(alpha rho - epsilon)) (1 - 1/alpha)^alpha / (alpha-1).
///
/// Any alpha gives a valid bound, so the numerical search can only make the answer larger
/// (safer), never smaller than the true infimum.
pub fn zcdp_delta(rho: f64, epsilon: f64) -> f64 {
    if rho <= 0.0 {
        return 0.0;
    }
    let bound = |alpha: f64| -> f64 {
        let log = (alpha - 1.0) * (alpha * rho - epsilon) + alpha * (-1.0 / alpha).ln_1p() - (alpha - 1.0).ln();
        log.exp()
    };
    // The log-bound is convex in alpha; its derivative is (2 alpha - 1) rho - epsilon + ln(1 - 1/alpha).
    let (mut lo, mut hi) = (1.0 + 1e-9, (epsilon + 1.0) / (2.0 * rho) + 2.0);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        let derivative = (2.0 * mid - 1.0) * rho - epsilon + (-1.0 / mid).ln_1p();
        if derivative < 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    bound(0.5 * (lo + hi)).min(1.0)
}

/// The largest rho (to within 1e-9 relative, rounded down) such that rho-zCDP implies
/// (epsilon, delta)-DP. With delta = 0 there is none: zCDP never gives pure DP.
///
/// # Errors
/// [`DpError::BadEpsilon`], [`DpError::BadDelta`] (delta must be > 0 here).
pub fn rho_for(budget: Budget) -> Result<f64, DpError> {
    let budget = budget.validate()?;
    if budget.delta <= 0.0 {
        return Err(DpError::BadDelta(budget.delta));
    }
    // zcdp_delta grows with rho; rho = epsilon^2 / 2 is always too much... find a bracket.
    let (mut lo, mut hi) = (0.0f64, budget.epsilon.max(1e-12));
    while zcdp_delta(hi, budget.epsilon) <= budget.delta {
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if zcdp_delta(mid, budget.epsilon) <= budget.delta {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo * (1.0 - 1e-9))
}

/// The Gaussian scale that makes a query of L2 sensitivity `sensitivity` rho-zCDP:
/// sigma = sensitivity / sqrt(2 rho), rounded up.
pub fn sigma_for(sensitivity: f64, rho: f64) -> f64 {
    (sensitivity / (2.0 * rho).sqrt()).next_up()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tight_conversion_beats_the_classical_one_and_is_consistent() {
        let rho = 0.02;
        let eps_classical = rho + 2.0 * (rho * (1e6f64).ln()).sqrt();
        // At the classical epsilon, the tight delta is no larger than 1e-6.
        assert!(zcdp_delta(rho, eps_classical) <= 1e-6);
        // And it is within a small factor of it (the bounds are of the same order).
        assert!(zcdp_delta(rho, eps_classical) > 1e-8);
    }

    #[test]
    fn rho_for_inverts_zcdp_delta() {
        for (epsilon, delta) in [(1.0, 1e-6), (0.5, 1e-9), (3.0, 1e-5)] {
            let rho = rho_for(Budget { epsilon, delta }).expect("valid");
            assert!(zcdp_delta(rho, epsilon) <= delta);
            assert!(zcdp_delta(rho * 1.001, epsilon) > delta, "{epsilon} {delta}: rho {rho} is not the largest");
        }
    }

    #[test]
    fn the_standard_day_budget_gives_the_expected_rho() {
        // epsilon = 1, delta = 1e-6: the classical conversion gives rho ~ 0.0177; the tight
        // one allows more.
        let rho = rho_for(Budget { epsilon: 1.0, delta: 1e-6 }).expect("valid");
        assert!(rho > 0.0177 && rho < 0.03, "{rho}");
    }

    #[test]
    fn bad_budgets_are_refused() {
        assert!(rho_for(Budget { epsilon: 1.0, delta: 0.0 }).is_err());
        assert!(rho_for(Budget { epsilon: f64::NAN, delta: 1e-6 }).is_err());
        assert!(Budget { epsilon: 1.0, delta: 0.5 }.validate().is_err());
        assert!(Budget::pure(1.0).validate().is_ok());
    }

    #[test]
    fn budgets_compose_and_compare() {
        let a = Budget { epsilon: 0.4, delta: 1e-7 };
        let sum = a.plus(a);
        assert!((sum.epsilon - 0.8).abs() < 1e-12);
        assert!(sum.within(Budget { epsilon: 0.8, delta: 2e-7 }));
        assert!(!sum.within(Budget { epsilon: 0.7, delta: 1e-6 }));
        assert_eq!(Budget::pure(1.0).minus(Budget::pure(2.0)).epsilon, 0.0);
    }
}
