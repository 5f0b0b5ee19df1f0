//! Post-processing of noisy releases. It only ever sees noised values, so it cannot weaken the
//! guarantee; it makes the figures consistent for readers: no negative counts, running totals
//! that never go down, and zone occupancy that returns to zero when the venue closes.

/// Clamps every value to be at least zero.
pub fn clamp_non_negative(values: &mut [f64]) {
    for v in values {
        if *v < 0.0 || v.is_nan() {
            *v = 0.0;
        }
    }
}

/// The least-squares non-decreasing fit (isotonic regression, pool-adjacent-violators), for a
/// day of noisy running totals; the result is also clamped at zero.
pub fn isotonic_non_decreasing(values: &[f64]) -> Vec<f64> {
    // Blocks of (sum, length); merge while the previous mean exceeds the current.
    let mut blocks: Vec<(f64, usize)> = Vec::with_capacity(values.len());
    for &v in values {
        let v = if v.is_finite() { v } else { 0.0 };
        blocks.push((v, 1));
        while blocks.len() >= 2 {
            let (s2, n2) = blocks[blocks.len() - 1];
            let (s1, n1) = blocks[blocks.len() - 2];
            if s1 / n1 as f64 <= s2 / n2 as f64 {
                break;
            }
            blocks.pop();
            let last = blocks.len() - 1;
            blocks[last] = (s1 + s2, n1 + n2);
        }
    }
    let mut out = Vec::with_capacity(values.len());
    for (sum, n) in blocks {
        out.extend(std::iter::repeat_n((sum / n as f64).max(0.0), n));
    }
    out
}

/// Online version for live figures: each released total is at least the previous one and at
/// least zero (a running maximum), so a live chart never shows people "un-entering".
#[derive(Debug, Default, Clone, Copy)]
pub struct Monotone {
    last: f64,
}

impl Monotone {
    /// The consistent value to show for the next noisy total.
    pub fn next(&mut self, noisy_total: f64) -> f64 {
        if noisy_total.is_finite() && noisy_total > self.last {
            self.last = noisy_total;
        }
        self.last
    }
}

/// Occupancy from noisy cumulative entries and exits, clamped to `[0, capacity]` when a
/// capacity is known; `closed` forces zero (everyone has left when the venue closes).
pub fn occupancy(entries_total: f64, exits_total: f64, capacity: Option<f64>, closed: bool) -> f64 {
    if closed {
        return 0.0;
    }
    let mut o = (entries_total - exits_total).max(0.0);
    if let Some(cap) = capacity {
        o = o.min(cap.max(0.0));
    }
    if o.is_finite() {
        o
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn pav_pools_violators() {
        assert_eq!(isotonic_non_decreasing(&[1.0, 3.0, 2.0, 4.0]), vec![1.0, 2.5, 2.5, 4.0]);
        assert_eq!(isotonic_non_decreasing(&[-3.0, -1.0, 5.0]), vec![0.0, 0.0, 5.0]);
        assert!(isotonic_non_decreasing(&[]).is_empty());
    }

    #[test]
    fn monotone_never_goes_down() {
        let mut m = Monotone::default();
        let shown: Vec<f64> = [-2.0, 3.0, 2.0, f64::NAN, 5.0].into_iter().map(|v| m.next(v)).collect();
        assert_eq!(shown, vec![0.0, 3.0, 3.0, 3.0, 5.0]);
    }

    #[test]
    fn occupancy_is_clamped_and_zero_at_close() {
        assert_eq!(occupancy(10.0, 12.0, None, false), 0.0);
        assert_eq!(occupancy(100.0, 10.0, Some(50.0), false), 50.0);
        assert_eq!(occupancy(100.0, 10.0, Some(500.0), true), 0.0);
    }

    proptest! {
        #[test]
        fn isotonic_fit_is_monotone_and_preserves_the_sum_of_non_negative_input(values in proptest::collection::vec(0.0f64..1e6, 0..200)) {
            let fit = isotonic_non_decreasing(&values);
            prop_assert_eq!(fit.len(), values.len());
            for w in fit.windows(2) {
                prop_assert!(w[0] <= w[1] + 1e-9);
            }
            let (a, b): (f64, f64) = (values.iter().sum(), fit.iter().sum());
            prop_assert!((a - b).abs() <= 1e-6 * a.max(1.0));
        }
    }
}
