//! Continual release of a running total: one count per interval goes in, a noisy running total
//! (and, for [`PerInterval`](Mechanism::PerInterval), a noisy interval count) comes out, for a
//! horizon of `T` intervals (a day of 1-minute intervals is T = 1440).
//!
//! Privacy unit: one event (a crossing) in one interval, i.e. neighbouring streams differ by one
//! in one interval's count. Each mechanism spends its whole budget over the horizon:
//!
//! * [`Mechanism::PerInterval`]: discrete Laplace noise (epsilon) on every interval count; the
//!   total is their sum. An event touches one interval, so the day is epsilon-DP; the total's
//!   error grows like sqrt(t).
//! * [`Mechanism::BinaryTree`]: the binary mechanism (Chan, Shi and Song 2011; Dwork et al.
//!   2010). Each interval lies in one node per level, L = ceil(log2 T) + 1 levels; every node
//!   gets discrete Laplace noise at epsilon / L, and the total at t is the sum of the
//!   popcount(t) nodes that tile [1, t]. Pure epsilon-DP.
//! * [`Mechanism::SqrtFactorization`], the default: the square-root factorisation of the
//!   all-ones lower-triangular matrix A = C C with C Toeplitz, c_k = binom(2k, k) / 4^k
//!   (Henzinger, Upadhyay and Upadhyay 2023; Fichtenberger, Henzinger and Upadhyay 2023).
//!   The mechanism noises w = C x with discrete Gaussian noise and releases C w, so the total
//!   at t has error C z: about sqrt(ln t / pi) times the noise scale instead of sqrt(t).
//!   (epsilon, delta)-DP through zCDP.
//!
//! Exactness of the factorisation mechanism: C x is computed in integers, with c_k rounded to
//! fixed point (40 fractional bits) and the result scaled by 2^16 and floored, so the noised
//! query is integer-valued and its L2 sensitivity is bounded exactly:
//! ||floor(s C' x) - floor(s C' x')||_2 <= s ||c'||_2 + sqrt(T). Discrete Gaussian noise on that
//! integer vector is zCDP (CKS20, Theorem 14); everything after is post-processing, done in f64.

use rand::RngCore;
use zeroize::Zeroize;

use crate::accounting::{rho_for, sigma_for, Budget};
use crate::sampler::{discrete_gaussian, variance_rational};
use crate::{DiscreteGaussian, DiscreteLaplace, DpError};

/// Which continual-release mechanism to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// Independent discrete Laplace noise per interval, totals by summation.
    PerInterval,
    /// Independent discrete Gaussian noise per interval ((epsilon, delta) via zCDP), totals by
    /// summation.
    PerIntervalGaussian,
    /// The binary-tree mechanism.
    BinaryTree,
    /// The square-root (Toeplitz) matrix factorisation: the default.
    SqrtFactorization,
}

impl Mechanism {
    /// All mechanisms, default first.
    pub const ALL: [Mechanism; 4] =
        [Mechanism::SqrtFactorization, Mechanism::BinaryTree, Mechanism::PerInterval, Mechanism::PerIntervalGaussian];

    /// A stable lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::PerInterval => "per_interval_laplace",
            Mechanism::PerIntervalGaussian => "per_interval_gaussian",
            Mechanism::BinaryTree => "binary_tree",
            Mechanism::SqrtFactorization => "sqrt_factorization",
        }
    }
}

/// What one step releases.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Release {
    /// Noisy count of this interval: for the continual mechanisms, the difference of
    /// successive totals (post-processing).
    pub interval: f64,
    /// Noisy running total since the start of the horizon.
    pub total: f64,
    /// Standard deviation of the noise in `total`.
    pub total_std: f64,
    /// Standard deviation of the noise in `interval`.
    pub interval_std: f64,
}

/// Fixed-point fraction bits of the factorisation coefficients.
const COEFF_BITS: u32 = 40;
/// Scale of the integer query floor(SCALE * C x).
const SCALE_BITS: u32 = 16;

/// c_k = binom(2k, k) / 4^k for k < n: the coefficients of the square root of the all-ones
/// lower-triangular matrix.
pub fn sqrt_coefficients(n: usize) -> Vec<f64> {
    let mut c = Vec::with_capacity(n);
    let mut v = 1.0f64;
    for k in 0..n {
        if k > 0 {
            v *= (2 * k - 1) as f64 / (2 * k) as f64;
        }
        c.push(v);
    }
    c
}

enum State {
    PerInterval {
        noise: DiscreteLaplace,
        total: i64,
    },
    PerIntervalGaussian {
        noise: DiscreteGaussian,
        total: i64,
    },
    Tree {
        /// Noise per node: discrete Laplace at epsilon / levels.
        noise: DiscreteLaplace,
        /// True partial sums per level (RAM only).
        alpha: Vec<i64>,
        /// Noisy partial sums per level.
        noisy: Vec<i64>,
    },
    Factorization {
        /// c_k in fixed point (COEFF_BITS fraction bits).
        coeffs_fixed: Vec<u128>,
        /// c_k in f64, for the post-processing C w.
        coeffs: Vec<f64>,
        /// sigma^2 of the integer noise as num/den.
        variance: (u128, u128),
        /// sigma of the noise in units of the released total.
        sigma_total: f64,
        /// The day's counts so far (RAM only, zeroized on drop).
        counts: Vec<u64>,
        /// Index of the first non-zero count: the convolution C' x skips the zeros before it
        /// (an agent starting late in the day fast-forwards through thousands of them).
        first_count: Option<usize>,
        /// The noised integer vector w so far.
        noised: Vec<f64>,
    },
}

/// A continual counter over a fixed horizon. Raw counts live only inside it (in RAM) and are
/// zeroized when it is dropped.
pub struct ContinualCounter {
    mechanism: Mechanism,
    horizon: usize,
    budget: Budget,
    t: usize,
    last_total: f64,
    state: State,
}

impl std::fmt::Debug for ContinualCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never prints counts (invariant 1).
        f.debug_struct("ContinualCounter")
            .field("mechanism", &self.mechanism)
            .field("horizon", &self.horizon)
            .field("t", &self.t)
            .finish_non_exhaustive()
    }
}

impl Drop for ContinualCounter {
    fn drop(&mut self) {
        match &mut self.state {
            State::PerInterval { total, .. } | State::PerIntervalGaussian { total, .. } => total.zeroize(),
            State::Tree { alpha, noisy, .. } => {
                alpha.zeroize();
                noisy.zeroize();
            }
            State::Factorization { counts, first_count, noised, .. } => {
                counts.zeroize();
                *first_count = None;
                noised.zeroize();
            }
        }
    }
}

/// Number of tree levels for a horizon: ceil(log2 T) + 1.
fn tree_levels(horizon: usize) -> usize {
    (usize::BITS - (horizon.max(1) - 1).leading_zeros()) as usize + 1
}

impl ContinualCounter {
    /// A counter for `horizon` intervals spending `budget` over the whole horizon. Pure-DP
    /// mechanisms ignore `budget.delta` (and spend none of it); the factorisation mechanism
    /// needs delta > 0.
    ///
    /// # Errors
    /// [`DpError::BadEpsilon`], [`DpError::BadDelta`], [`DpError::BadHorizon`].
    pub fn new(mechanism: Mechanism, budget: Budget, horizon: usize) -> Result<ContinualCounter, DpError> {
        let budget = budget.validate()?;
        if horizon == 0 || horizon > 1 << 20 {
            return Err(DpError::BadHorizon(horizon));
        }
        let (state, budget) = match mechanism {
            Mechanism::PerInterval => {
                let noise = DiscreteLaplace::new(budget.epsilon)?;
                let spent = Budget::pure(noise.epsilon());
                (State::PerInterval { noise, total: 0 }, spent)
            }
            Mechanism::PerIntervalGaussian => {
                let noise = DiscreteGaussian::for_budget(budget)?;
                (State::PerIntervalGaussian { noise, total: 0 }, budget)
            }
            Mechanism::BinaryTree => {
                let levels = tree_levels(horizon);
                let noise = DiscreteLaplace::new(budget.epsilon / levels as f64)?;
                let spent = Budget::pure(noise.epsilon() * levels as f64);
                (State::Tree { noise, alpha: vec![0; levels], noisy: vec![0; levels] }, spent)
            }
            Mechanism::SqrtFactorization => {
                let rho = rho_for(budget)?;
                let coeffs = sqrt_coefficients(horizon);
                let coeffs_fixed: Vec<u128> =
                    coeffs.iter().map(|c| (c * (1u64 << COEFF_BITS) as f64).round() as u128).collect();
                // L2 sensitivity of floor(2^SCALE_BITS * C' x / 2^COEFF_BITS): the column norm of
                // the fixed-point C' scaled, plus one per coordinate for the floor.
                let col_norm =
                    coeffs_fixed.iter().map(|&c| (c as f64 / (1u64 << COEFF_BITS) as f64).powi(2)).sum::<f64>().sqrt();
                let sensitivity = (col_norm * (1u64 << SCALE_BITS) as f64 + (horizon as f64).sqrt()).next_up();
                let sigma = sigma_for(sensitivity, rho);
                let variance = variance_rational(sigma);
                let sigma_total = sigma / (1u64 << SCALE_BITS) as f64;
                let state = State::Factorization {
                    coeffs_fixed,
                    coeffs,
                    variance,
                    sigma_total,
                    counts: Vec::with_capacity(horizon),
                    first_count: None,
                    noised: Vec::with_capacity(horizon),
                };
                (state, budget)
            }
        };
        Ok(ContinualCounter { mechanism, horizon, budget, t: 0, last_total: 0.0, state })
    }

    /// A counter with the same mechanism, budget, horizon and noise scale that has released
    /// nothing: cheaper than [`new`](Self::new), which calibrates the noise (for the
    /// factorisation, a numerical search for rho and the coefficients of C).
    pub fn fresh(&self) -> ContinualCounter {
        let state = match &self.state {
            State::PerInterval { noise, .. } => State::PerInterval { noise: noise.clone(), total: 0 },
            State::PerIntervalGaussian { noise, .. } => State::PerIntervalGaussian { noise: noise.clone(), total: 0 },
            State::Tree { noise, alpha, .. } => {
                State::Tree { noise: noise.clone(), alpha: vec![0; alpha.len()], noisy: vec![0; alpha.len()] }
            }
            State::Factorization { coeffs_fixed, coeffs, variance, sigma_total, .. } => State::Factorization {
                coeffs_fixed: coeffs_fixed.clone(),
                coeffs: coeffs.clone(),
                variance: *variance,
                sigma_total: *sigma_total,
                counts: Vec::with_capacity(self.horizon),
                first_count: None,
                noised: Vec::with_capacity(self.horizon),
            },
        };
        ContinualCounter {
            mechanism: self.mechanism,
            horizon: self.horizon,
            budget: self.budget,
            t: 0,
            last_total: 0.0,
            state,
        }
    }

    /// The mechanism.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The budget the whole horizon spends (after any rounding towards more privacy).
    pub fn budget(&self) -> Budget {
        self.budget
    }

    /// The horizon T.
    pub fn horizon(&self) -> usize {
        self.horizon
    }

    /// Intervals released so far.
    pub fn released(&self) -> usize {
        self.t
    }

    /// The standard deviation of the noise in the total released at step `t` (1-based).
    pub fn total_std_at(&self, t: usize) -> f64 {
        match &self.state {
            State::PerInterval { noise, .. } => noise.std() * (t as f64).sqrt(),
            State::PerIntervalGaussian { noise, .. } => noise.std() * (t as f64).sqrt(),
            State::Tree { noise, .. } => noise.std() * f64::from(t.count_ones()).sqrt(),
            State::Factorization { coeffs, sigma_total, .. } => {
                sigma_total * coeffs.iter().take(t).map(|c| c * c).sum::<f64>().sqrt()
            }
        }
    }

    /// The standard deviation of the noise in the interval value released at step `t`
    /// (1-based): for the continual mechanisms, of total_t - total_(t-1).
    pub fn interval_std_at(&self, t: usize) -> f64 {
        match &self.state {
            State::PerInterval { noise, .. } => noise.std(),
            State::PerIntervalGaussian { noise, .. } => noise.std(),
            State::Tree { noise, .. } => {
                // Nodes are (level j, prefix t >> j) for the set bits j of t; count the nodes
                // in exactly one of the two decompositions.
                let nodes = |t: usize| -> Vec<(u32, usize)> {
                    (0..usize::BITS).filter(|&j| t >> j & 1 == 1).map(|j| (j, t >> j)).collect()
                };
                let (a, b) = (nodes(t), nodes(t.saturating_sub(1)));
                let only = a.iter().filter(|n| !b.contains(n)).count() + b.iter().filter(|n| !a.contains(n)).count();
                noise.std() * (only as f64).sqrt()
            }
            State::Factorization { coeffs, sigma_total, .. } => {
                let sum: f64 = (0..t.min(coeffs.len()))
                    .map(|k| if k == 0 { coeffs[0] } else { coeffs[k] - coeffs[k - 1] })
                    .map(|d| d * d)
                    .sum();
                sigma_total * sum.sqrt()
            }
        }
    }

    /// The largest [`total_std_at`](Self::total_std_at) over the horizon, and where it is.
    pub fn max_total_std(&self) -> (usize, f64) {
        (1..=self.horizon)
            .map(|t| (t, self.total_std_at(t)))
            .fold((1, 0.0), |best, x| if x.1 > best.1 { x } else { best })
    }

    /// Feeds the next interval's true count and returns the noisy release.
    ///
    /// # Errors
    /// [`DpError::HorizonExhausted`] after `horizon` steps: the budget is spent.
    pub fn push<R: RngCore>(&mut self, count: u64, rng: &mut R) -> Result<Release, DpError> {
        self.advance(count, rng)?;
        let t = self.t;
        let total = self.current_total();
        let interval = total - self.last_total;
        self.last_total = total;
        Ok(Release { interval, total, total_std: self.total_std_at(t), interval_std: self.interval_std_at(t) })
    }

    /// Advances through `n` intervals in which nothing was counted (the agent was not running)
    /// without releasing them: the noise is drawn exactly as `n` pushes of zero would draw it,
    /// so later releases have the same distribution, but no intermediate total is computed.
    /// For the factorisation mechanism this turns a late start, thousands of intervals into
    /// the day, from quadratic into linear work.
    ///
    /// # Errors
    /// [`DpError::HorizonExhausted`] when fewer than `n` intervals are left; nothing is
    /// skipped then.
    pub fn skip<R: RngCore>(&mut self, n: usize, rng: &mut R) -> Result<(), DpError> {
        if n > self.horizon - self.t {
            return Err(DpError::HorizonExhausted(self.horizon));
        }
        if n == 0 {
            return Ok(());
        }
        for _ in 0..n {
            self.advance(0, rng)?;
        }
        self.last_total = self.current_total();
        Ok(())
    }

    /// One interval in: updates the state (and draws its noise), computes no release.
    fn advance<R: RngCore>(&mut self, count: u64, rng: &mut R) -> Result<(), DpError> {
        if self.t >= self.horizon {
            return Err(DpError::HorizonExhausted(self.horizon));
        }
        self.t += 1;
        let t = self.t;
        let count_i = i64::try_from(count).unwrap_or(i64::MAX);
        match &mut self.state {
            State::PerInterval { noise, total } => {
                *total = total.saturating_add(noise.release(count_i, rng));
            }
            State::PerIntervalGaussian { noise, total } => {
                *total = total.saturating_add(noise.release(count_i, rng));
            }
            State::Tree { noise, alpha, noisy } => {
                // The node closing at t is at level i = trailing zeros of t; it absorbs the
                // partial sums of the levels below.
                let i = t.trailing_zeros() as usize;
                let mut sum = count_i;
                for j in 0..i {
                    sum = sum.saturating_add(alpha[j]);
                    alpha[j] = 0;
                    noisy[j] = 0;
                }
                alpha[i] = sum;
                noisy[i] = sum.saturating_add(noise.sample(rng));
            }
            State::Factorization { coeffs_fixed, variance, counts, first_count, noised, .. } => {
                if count > 0 && first_count.is_none() {
                    *first_count = Some(counts.len());
                }
                counts.push(count);
                // (C' x)_t in fixed point, exactly: sum_j c'_{t-j} x_j (the zeros before the
                // first count contribute nothing).
                let exact: u128 = match *first_count {
                    None => 0,
                    Some(first) => counts[first..]
                        .iter()
                        .rev()
                        .zip(coeffs_fixed.iter())
                        .fold(0u128, |acc, (&x, &c)| acc.saturating_add(c.saturating_mul(u128::from(x)))),
                };
                let query = exact.saturating_mul(1 << SCALE_BITS) >> COEFF_BITS;
                let query = i128::try_from(query).unwrap_or(i128::MAX);
                let w = query.saturating_add(i128::from(discrete_gaussian(rng, variance.0, variance.1)));
                noised.push(w as f64 / (1u64 << SCALE_BITS) as f64);
            }
        }
        Ok(())
    }

    /// The noisy running total after the intervals fed so far (post-processing only).
    fn current_total(&self) -> f64 {
        let t = self.t;
        match &self.state {
            State::PerInterval { total, .. } | State::PerIntervalGaussian { total, .. } => *total as f64,
            State::Tree { noisy, .. } => {
                (0..noisy.len()).filter(|&j| t >> j & 1 == 1).map(|j| noisy[j]).sum::<i64>() as f64
            }
            // total_t = (C w)_t.
            State::Factorization { noised, coeffs, .. } => {
                noised.iter().rev().zip(coeffs.iter()).map(|(w, c)| w * c).sum()
            }
        }
    }
}

/// Measured against theory: the error of a mechanism's running total over many simulated
/// horizons (the counts themselves do not change the noise, which is additive).
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorReport {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// Horizon.
    pub horizon: usize,
    /// The budget actually spent over the horizon.
    pub budget: Budget,
    /// Where the theoretical std of the total is largest (1-based step).
    pub worst_step: usize,
    /// The theoretical std of the total at `worst_step`.
    pub theoretical_std: f64,
    /// The measured std of (released total - true total) at `worst_step`.
    pub empirical_std: f64,
    /// The theoretical std of the last total of the horizon.
    pub final_theoretical_std: f64,
    /// The measured std of the last total.
    pub final_empirical_std: f64,
    /// Horizons simulated.
    pub runs: usize,
}

/// Runs `runs` horizons of `counts` through fresh counters and measures the error of the
/// released totals. `progress` is called after every run (for progress output).
///
/// # Errors
/// As [`ContinualCounter::new`]; `counts` must have `horizon` entries.
pub fn measure_error<R: RngCore>(
    mechanism: Mechanism,
    budget: Budget,
    counts: &[u64],
    runs: usize,
    rng: &mut R,
    mut progress: impl FnMut(usize),
) -> Result<ErrorReport, DpError> {
    let horizon = counts.len();
    let probe = ContinualCounter::new(mechanism, budget, horizon)?;
    let (worst_step, theoretical_std) = probe.max_total_std();
    let (mut sq_worst, mut sq_final) = (0.0, 0.0);
    for run in 0..runs {
        let mut counter = probe.fresh();
        let mut truth = 0u64;
        for (i, &c) in counts.iter().enumerate() {
            truth += c;
            let r = counter.push(c, rng)?;
            let err = r.total - truth as f64;
            if i + 1 == worst_step {
                sq_worst += err * err;
            }
            if i + 1 == horizon {
                sq_final += err * err;
            }
        }
        progress(run + 1);
    }
    let n = runs.max(1) as f64;
    Ok(ErrorReport {
        mechanism,
        horizon,
        budget: probe.budget(),
        worst_step,
        theoretical_std,
        empirical_std: (sq_worst / n).sqrt(),
        final_theoretical_std: probe.total_std_at(horizon),
        final_empirical_std: (sq_final / n).sqrt(),
        runs,
    })
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::Csprng;

    fn day_budget() -> Budget {
        Budget { epsilon: 1.0, delta: 1e-6 }
    }

    #[test]
    fn coefficients_square_to_the_all_ones_matrix() {
        // (C C)_{t,0} = sum_{k<=t} c_k c_{t-k} = 1 for every t.
        let c = sqrt_coefficients(64);
        for t in 0..64 {
            let s: f64 = (0..=t).map(|k| c[k] * c[t - k]).sum();
            assert!((s - 1.0).abs() < 1e-12, "t={t}: {s}");
        }
    }

    #[test]
    fn tree_levels_cover_the_horizon() {
        assert_eq!(tree_levels(1), 1);
        assert_eq!(tree_levels(2), 2);
        assert_eq!(tree_levels(1024), 11);
        assert_eq!(tree_levels(1440), 12);
    }

    #[test]
    fn totals_are_unbiased() {
        // Mean of the error is zero for every mechanism: check the last total over many days.
        let mut rng = Csprng::seed_from_u64(3);
        let horizon = 64;
        let counts: Vec<u64> = (0..horizon).map(|i| (i * 7 % 5) as u64).collect();
        let truth: u64 = counts.iter().sum();
        for mechanism in Mechanism::ALL {
            let runs = 400;
            let mut errors = Vec::with_capacity(runs);
            let mut std = 0.0;
            let proto = ContinualCounter::new(mechanism, day_budget(), horizon).expect("valid");
            for _ in 0..runs {
                let mut counter = proto.fresh();
                let mut last = None;
                for &c in &counts {
                    last = Some(counter.push(c, &mut rng).expect("within horizon"));
                }
                let last = last.expect("released");
                errors.push(last.total - truth as f64);
                std = last.total_std;
            }
            let mean = errors.iter().sum::<f64>() / runs as f64;
            assert!(mean.abs() < 5.0 * std / (runs as f64).sqrt(), "{mechanism:?}: mean error {mean}, std {std}");
        }
    }

    #[test]
    fn empirical_std_matches_theory_for_every_mechanism() {
        let mut rng = Csprng::seed_from_u64(11);
        let horizon = 100;
        for mechanism in Mechanism::ALL {
            let runs = 1500;
            let probe = ContinualCounter::new(mechanism, day_budget(), horizon).expect("valid");
            let (t_star, theory) = probe.max_total_std();
            let mut sq = 0.0;
            for _ in 0..runs {
                let mut counter = probe.fresh();
                let mut truth = 0u64;
                for t in 1..=t_star {
                    let c = (t % 3) as u64;
                    truth += c;
                    let r = counter.push(c, &mut rng).expect("within horizon");
                    if t == t_star {
                        sq += (r.total - truth as f64).powi(2);
                    }
                }
            }
            let empirical = (sq / runs as f64).sqrt();
            assert!((empirical / theory - 1.0).abs() < 0.1, "{mechanism:?}: {empirical} vs {theory}");
        }
    }

    #[test]
    fn interval_std_matches_theory() {
        let mut rng = Csprng::seed_from_u64(12);
        let horizon = 12;
        for mechanism in Mechanism::ALL {
            let runs = 4000;
            let mut sq = vec![0.0; horizon];
            let proto = ContinualCounter::new(mechanism, day_budget(), horizon).expect("valid");
            for _ in 0..runs {
                let mut counter = proto.fresh();
                for s in sq.iter_mut() {
                    let r = counter.push(1, &mut rng).expect("within horizon");
                    *s += (r.interval - 1.0).powi(2);
                }
            }
            let probe = ContinualCounter::new(mechanism, day_budget(), horizon).expect("valid");
            for (t, s) in sq.iter().enumerate() {
                let (empirical, theory) = ((s / runs as f64).sqrt(), probe.interval_std_at(t + 1));
                assert!((empirical / theory - 1.0).abs() < 0.1, "{mechanism:?} t={}: {empirical} vs {theory}", t + 1);
            }
        }
    }

    #[test]
    fn a_day_of_minutes_has_the_documented_error_ranking() {
        let std = |m| ContinualCounter::new(m, day_budget(), 1440).expect("valid").max_total_std().1;
        let (fact, tree, lap) =
            (std(Mechanism::SqrtFactorization), std(Mechanism::BinaryTree), std(Mechanism::PerInterval));
        assert!(fact < tree / 3.0, "factorisation {fact} vs tree {tree}");
        assert!(lap > 45.0 && lap < 60.0, "per-interval {lap}");
        assert!(fact > 10.0 && fact < 20.0, "factorisation {fact}");
    }

    #[test]
    fn measured_error_agrees_with_theory() {
        let mut rng = Csprng::seed_from_u64(5);
        let counts: Vec<u64> = (0..48).map(|i| (i % 4) as u64).collect();
        let mut calls = 0;
        let report = measure_error(Mechanism::SqrtFactorization, day_budget(), &counts, 800, &mut rng, |_| calls += 1)
            .expect("valid");
        assert_eq!(calls, 800);
        assert!((report.empirical_std / report.theoretical_std - 1.0).abs() < 0.1, "{report:?}");
        assert!((report.final_empirical_std / report.final_theoretical_std - 1.0).abs() < 0.1, "{report:?}");
    }

    #[test]
    fn skipping_draws_the_same_noise_as_pushing_zeros() {
        for mechanism in Mechanism::ALL {
            let template = ContinualCounter::new(mechanism, day_budget(), 1440).expect("counter");
            for (before, gap) in [(0, 700), (3, 250), (0, 1)] {
                let mut pushed = template.fresh();
                let mut skipped = template.fresh();
                let mut rng_a = Csprng::seed_from_u64(7);
                let mut rng_b = Csprng::seed_from_u64(7);
                for count in 0..before {
                    pushed.push(count + 2, &mut rng_a).expect("push");
                    skipped.push(count + 2, &mut rng_b).expect("push");
                }
                for _ in 0..gap {
                    pushed.push(0, &mut rng_a).expect("push");
                }
                skipped.skip(gap, &mut rng_b).expect("skip");
                assert_eq!(skipped.released(), pushed.released());
                for count in [5, 0, 9] {
                    let a = pushed.push(count, &mut rng_a).expect("push");
                    let b = skipped.push(count, &mut rng_b).expect("push");
                    assert_eq!(a, b, "{mechanism:?} after {before} counts and a gap of {gap}");
                }
            }
            let mut counter = template.fresh();
            assert!(counter.skip(1441, &mut Csprng::seed_from_u64(8)).is_err(), "{mechanism:?}");
            assert_eq!(counter.released(), 0, "a refused skip skips nothing");
        }
    }

    #[test]
    fn the_horizon_is_enforced() {
        let mut rng = Csprng::seed_from_u64(1);
        let mut counter = ContinualCounter::new(Mechanism::BinaryTree, day_budget(), 2).expect("valid");
        assert!(counter.push(1, &mut rng).is_ok());
        assert!(counter.push(1, &mut rng).is_ok());
        assert_eq!(counter.push(1, &mut rng), Err(DpError::HorizonExhausted(2)));
        assert!(ContinualCounter::new(Mechanism::BinaryTree, day_budget(), 0).is_err());
    }

    #[test]
    fn debug_output_shows_no_counts() {
        let mut rng = Csprng::seed_from_u64(1);
        let mut counter = ContinualCounter::new(Mechanism::SqrtFactorization, day_budget(), 4).expect("valid");
        counter.push(987_654, &mut rng).expect("within horizon");
        assert!(!format!("{counter:?}").contains("987654"));
    }
}
