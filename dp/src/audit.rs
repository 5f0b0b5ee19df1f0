//! Statistical privacy audits: from many runs of a mechanism on two neighbouring inputs,
//! a lower confidence bound on the epsilon it actually provides. If that lower bound exceeds
//! the claimed epsilon, the implementation is broken (with the stated confidence).
//!
//! Method (as in black-box DP auditing, e.g. DP-Sniper, Bichsel et al. 2021): the events are
//! thresholds {y >= k} and {y <= k}. The first half of each sample picks the event with the
//! largest empirical log-ratio; the second half, independent of that choice, bounds the two
//! probabilities with Chernoff (KL) confidence intervals, so
//! epsilon >= ln((lower(P[E | x]) - delta) / upper(P[E | x'])) holds with probability
//! at least 1 - alpha.

/// Bernoulli KL divergence KL(p || q).
fn kl(p: f64, q: f64) -> f64 {
    let term = |a: f64, b: f64| if a <= 0.0 { 0.0 } else { a * (a / b).ln() };
    term(p, q) + term(1.0 - p, 1.0 - q)
}

/// A (1 - alpha) lower confidence bound on a Bernoulli probability from k successes in n
/// trials (Chernoff: P_q[p_hat >= observed] <= exp(-n KL(p_hat || q)) for q < p_hat).
pub fn lower_bound(k: u64, n: u64, alpha: f64) -> f64 {
    if n == 0 || k == 0 {
        return 0.0;
    }
    let p = k as f64 / n as f64;
    let target = (1.0 / alpha).ln() / n as f64;
    let (mut lo, mut hi) = (0.0f64, p);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if kl(p, mid) > target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// A (1 - alpha) upper confidence bound, symmetric to [`lower_bound`].
pub fn upper_bound(k: u64, n: u64, alpha: f64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    1.0 - lower_bound(n - k.min(n), n, alpha)
}

/// The outcome of an audit.
#[derive(Debug, Clone, PartialEq)]
pub struct Audit {
    /// Lower confidence bound on the mechanism's epsilon.
    pub epsilon_lower: f64,
    /// Point estimate on the held-out half for the chosen event.
    pub epsilon_point: f64,
    /// Runs per side.
    pub runs: usize,
}

/// Sorted finite values, for counting threshold events by binary search.
fn sorted(xs: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|v| v.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// How many of the sorted values are >= k (above) or <= k (below).
fn count(sorted: &[f64], k: f64, above: bool) -> u64 {
    if above {
        (sorted.len() - sorted.partition_point(|&v| v < k)) as u64
    } else {
        sorted.partition_point(|&v| v <= k) as u64
    }
}

/// ln(lower(P[E | num]) - delta) / upper(P[E | den])), or 0 when not positive.
fn epsilon_bound(c_num: u64, n_num: u64, c_den: u64, n_den: u64, delta: f64, alpha: f64) -> f64 {
    // The two one-sided bounds share alpha.
    let lower_num = lower_bound(c_num, n_num, alpha / 2.0) - delta;
    let upper_den = upper_bound(c_den, n_den, alpha / 2.0);
    if lower_num > 0.0 && upper_den > 0.0 {
        (lower_num / upper_den).ln().max(0.0)
    } else {
        0.0
    }
}

/// Audits outputs `a` (from input x) against `b` (from a neighbour x'), in both directions,
/// for a mechanism claiming (epsilon, delta); `alpha` is the allowed error probability.
pub fn audit(a: &[f64], b: &[f64], delta: f64, alpha: f64) -> Audit {
    let (a_sel, a_test) = a.split_at(a.len() / 2);
    let (b_sel, b_test) = b.split_at(b.len() / 2);
    let (a_sel, b_sel, a_test, b_test) = (sorted(a_sel), sorted(b_sel), sorted(a_test), sorted(b_test));
    // Candidate thresholds: quantiles of the pooled selection halves.
    let mut pooled: Vec<f64> = a_sel.iter().chain(&b_sel).copied().collect();
    pooled.sort_by(f64::total_cmp);
    pooled.dedup();
    let candidates: Vec<f64> =
        if pooled.len() <= 1000 { pooled } else { (0..1000).map(|i| pooled[i * (pooled.len() - 1) / 999]).collect() };
    // Choose (threshold, above?, a-over-b?) by the bound it gives on the selection halves.
    let (na, nb) = (a_sel.len() as u64, b_sel.len() as u64);
    let mut best = (f64::NEG_INFINITY, 0.0, true, true);
    for &k in &candidates {
        for above in [true, false] {
            let (ca, cb) = (count(&a_sel, k, above), count(&b_sel, k, above));
            for a_over_b in [true, false] {
                let r = if a_over_b {
                    epsilon_bound(ca, na, cb, nb, delta, alpha)
                } else {
                    epsilon_bound(cb, nb, ca, na, delta, alpha)
                };
                if r > best.0 {
                    best = (r, k, above, a_over_b);
                }
            }
        }
    }
    let (_, k, above, a_over_b) = best;
    let (num, den) = if a_over_b { (&a_test, &b_test) } else { (&b_test, &a_test) };
    let (cn, cd) = (count(num, k, above), count(den, k, above));
    let (nn, nd) = (num.len() as u64, den.len() as u64);
    let epsilon_lower = epsilon_bound(cn, nn, cd, nd, delta, alpha);
    let epsilon_point =
        if cn > 0 && cd > 0 { ((cn as f64 / nn as f64) / (cd as f64 / nd as f64)).ln() } else { f64::NAN };
    Audit { epsilon_lower, epsilon_point, runs: a.len().min(b.len()) }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::accounting::Budget;
    use crate::continual::{ContinualCounter, Mechanism};
    use crate::{Csprng, DiscreteLaplace};

    #[test]
    fn confidence_bounds_bracket_the_estimate() {
        let (lo, hi) = (lower_bound(300, 1000, 0.01), upper_bound(300, 1000, 0.01));
        assert!(lo < 0.3 && hi > 0.3 && lo > 0.25 && hi < 0.35, "{lo} {hi}");
        assert_eq!(lower_bound(0, 10, 0.01), 0.0);
        assert!(upper_bound(10, 10, 0.01) >= 0.999_999);
    }

    fn laplace_runs(epsilon: f64, count: i64, runs: usize, rng: &mut Csprng) -> Vec<f64> {
        let mech = DiscreteLaplace::new(epsilon).expect("valid");
        (0..runs).map(|_| mech.release(count, rng) as f64).collect()
    }

    #[test]
    fn the_discrete_laplace_release_keeps_its_epsilon() {
        let mut rng = Csprng::seed_from_u64(21);
        let claimed = 1.0;
        let a = laplace_runs(claimed, 5, 200_000, &mut rng);
        let b = laplace_runs(claimed, 6, 200_000, &mut rng);
        let result = audit(&a, &b, 0.0, 1e-3);
        assert!(result.epsilon_lower <= claimed, "audit says epsilon >= {} > {claimed}", result.epsilon_lower);
        // And the audit has power: the true epsilon is 1, the bound should come close.
        assert!(result.epsilon_lower > 0.8, "{result:?}");
    }

    #[test]
    fn a_mechanism_with_too_little_noise_is_caught() {
        // Negative control: claims epsilon = 1 but adds the noise of epsilon = 1.6.
        let mut rng = Csprng::seed_from_u64(22);
        let a = laplace_runs(1.6, 5, 200_000, &mut rng);
        let b = laplace_runs(1.6, 6, 200_000, &mut rng);
        let result = audit(&a, &b, 0.0, 1e-3);
        assert!(result.epsilon_lower > 1.0, "the audit must detect the overspend: {result:?}");
    }

    fn final_totals(mechanism: Mechanism, first: u64, runs: usize, rng: &mut Csprng) -> Vec<f64> {
        let proto = ContinualCounter::new(mechanism, Budget { epsilon: 1.0, delta: 1e-6 }, 4).expect("valid");
        (0..runs)
            .map(|_| {
                let mut counter = proto.fresh();
                let mut last = 0.0;
                for t in 0..4 {
                    let c = if t == 0 { first } else { 2 };
                    last = counter.push(c, rng).expect("within horizon").total;
                }
                last
            })
            .collect()
    }

    #[test]
    fn continual_mechanisms_keep_their_epsilon_on_neighbouring_streams() {
        // Streams that differ by one crossing in the first interval; the audit looks at the
        // released total of the day (a projection, so it bounds epsilon from below).
        let mut rng = Csprng::seed_from_u64(23);
        for mechanism in Mechanism::ALL {
            let a = final_totals(mechanism, 3, 60_000, &mut rng);
            let b = final_totals(mechanism, 4, 60_000, &mut rng);
            let result = audit(&a, &b, 1e-6, 1e-3);
            assert!(result.epsilon_lower <= 1.0, "{mechanism:?}: {result:?}");
        }
    }
}
