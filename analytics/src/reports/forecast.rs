//! Short-horizon forecast of a level series: Holt's linear exponential smoothing.
//!
//! The smoothing recurrence is sequential, so it runs over a plain slice rather than as a
//! Polars expression. Its uncertainty is honest about two sources: the spread of the
//! one-step-ahead residuals over the observed series (growing with the horizon as for a
//! random walk with drift), and the DP noise of the level it starts from.

/// Level smoothing weight.
const ALPHA: f64 = 0.5;
/// Trend smoothing weight.
const BETA: f64 = 0.2;

/// Forecasts `horizon` steps past the end of `values` (the observed levels, oldest first).
/// Returns `(value, std)` per step, or nothing when fewer than two levels are observed.
/// `last_std` is the DP noise std of the last observed level.
pub fn holt_forecast(values: &[f64], last_std: f64, horizon: usize) -> Vec<(f64, f64)> {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.len() < 2 {
        return Vec::new();
    }
    let mut level = finite[0];
    let mut trend = finite[1] - finite[0];
    let mut squared = 0.0;
    let mut residuals = 0usize;
    for &observed in &finite[1..] {
        let predicted = level + trend;
        squared += (observed - predicted).powi(2);
        residuals += 1;
        let previous = level;
        level = ALPHA * observed + (1.0 - ALPHA) * (level + trend);
        trend = BETA * (level - previous) + (1.0 - BETA) * trend;
    }
    let sigma = (squared / residuals as f64).sqrt();
    let noise = if last_std.is_finite() { last_std } else { 0.0 };
    (1..=horizon)
        .map(|h| {
            let h = h as f64;
            let value = level + h * trend;
            // Holt's h-step variance: sigma² (1 + (h-1)(alpha² + alpha beta h + beta² h (2h-1)/6)).
            let widen = 1.0 + (h - 1.0) * (ALPHA.powi(2) + ALPHA * BETA * h + BETA.powi(2) * h * (2.0 * h - 1.0) / 6.0);
            (value, (sigma.powi(2) * widen + noise.powi(2)).sqrt())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_straight_line_is_continued_exactly() {
        let values: Vec<f64> = (0..20).map(|i| 10.0 + 3.0 * f64::from(i)).collect();
        let forecast = holt_forecast(&values, 0.0, 3);
        assert_eq!(forecast.len(), 3);
        for (h, (value, std)) in forecast.iter().enumerate() {
            let expected = 10.0 + 3.0 * (19.0 + h as f64 + 1.0);
            assert!((value - expected).abs() < 1e-9, "{value} vs {expected}");
            assert!(*std < 1e-9);
        }
    }

    #[test]
    fn uncertainty_grows_with_the_horizon_and_includes_the_noise() {
        let values: Vec<f64> = (0..50).map(|i| 100.0 + if i % 2 == 0 { 5.0 } else { -5.0 }).collect();
        let forecast = holt_forecast(&values, 4.0, 6);
        assert!(forecast.windows(2).all(|w| w[1].1 > w[0].1), "{forecast:?}");
        assert!(forecast[0].1 >= 4.0);
        assert!((forecast[0].0 - 100.0).abs() < 10.0);
    }

    #[test]
    fn too_short_a_series_gives_no_forecast() {
        assert!(holt_forecast(&[1.0], 0.0, 3).is_empty());
        assert!(holt_forecast(&[f64::NAN, 2.0], 0.0, 3).is_empty());
    }
}
