//! `passage bench dp`: the continual-release mechanisms measured against their theory, one JSON
//! line per mechanism on stdout, progress on stderr.

use std::time::Instant;

use clap::Args;
use passage_dp::continual::{measure_error, Mechanism};
use passage_dp::Budget;

/// Options of `passage bench dp`.
#[derive(Debug, Args)]
pub struct DpArgs {
    /// Days in the horizon (1-minute intervals: T = 1440 per day).
    #[arg(long, default_value_t = 1)]
    days: usize,
    /// Epsilon per horizon.
    #[arg(long, default_value_t = 1.0)]
    epsilon: f64,
    /// Delta for the Gaussian (factorisation) mechanism; the Laplace ones are pure DP.
    #[arg(long, default_value_t = 1e-6)]
    delta: f64,
    /// Simulated horizons per mechanism (the std estimate's relative error is about 1/sqrt(2 runs)).
    #[arg(long, default_value_t = 2000)]
    runs: usize,
    /// Interval length in seconds.
    #[arg(long, default_value_t = 60)]
    interval_secs: u32,
}

/// A day's worth of per-interval crossings shaped like a venue's day (the noise does not depend
/// on them; they make the totals realistic).
fn day_profile(horizon: usize, interval_secs: u32) -> Vec<u64> {
    (0..horizon)
        .map(|i| {
            let hour = (i as f64 * f64::from(interval_secs) / 3600.0) % 24.0;
            let busy = (-(hour - 13.0).powi(2) / 18.0).exp() + 0.6 * (-(hour - 19.0).powi(2) / 4.0).exp();
            (busy * 12.0 * f64::from(interval_secs) / 60.0).round() as u64
        })
        .collect()
}

/// Runs the benchmark.
pub fn run_dp(args: &DpArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.days >= 1 && args.days <= 30, "--days must be between 1 and 30");
    anyhow::ensure!(args.runs >= 10, "--runs must be at least 10");
    anyhow::ensure!(args.interval_secs > 0 && 86_400 % args.interval_secs == 0, "--interval-secs must divide a day");
    let horizon = args.days * (86_400 / args.interval_secs as usize);
    let counts = day_profile(horizon, args.interval_secs);
    let budget = Budget { epsilon: args.epsilon, delta: args.delta };
    let mut rng = passage_dp::csprng();
    let mut tree_std = None;
    let mut results = Vec::new();
    for mechanism in [Mechanism::PerInterval, Mechanism::BinaryTree, Mechanism::SqrtFactorization] {
        let started = Instant::now();
        let every = (args.runs / 10).max(1);
        let report = measure_error(mechanism, budget, &counts, args.runs, &mut rng, |done| {
            if done % every == 0 {
                eprintln!(
                    "bench dp: {} {done}/{} horizons ({:.1} s)",
                    mechanism.name(),
                    args.runs,
                    started.elapsed().as_secs_f64()
                );
            }
        })?;
        if mechanism == Mechanism::BinaryTree {
            tree_std = Some(report.theoretical_std);
        }
        results.push((report, started.elapsed().as_secs_f64()));
    }
    for (report, secs) in results {
        let line = serde_json::json!({
            "mechanism": report.mechanism.name(),
            "T": report.horizon,
            "epsilon": report.budget.epsilon,
            "delta": report.budget.delta,
            "theoretical_std": report.theoretical_std,
            "empirical_std": report.empirical_std,
            "relative_difference": report.empirical_std / report.theoretical_std - 1.0,
            "at_step": report.worst_step,
            "final_theoretical_std": report.final_theoretical_std,
            "final_empirical_std": report.final_empirical_std,
            "ratio_to_binary_tree": tree_std.map(|t| report.theoretical_std / t),
            "runs": report.runs,
            "seconds": secs,
        });
        println!("{line}");
    }
    Ok(())
}
