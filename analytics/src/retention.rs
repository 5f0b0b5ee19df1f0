//! The retention sweeper: deletes what each venue's retention rules say has expired and
//! logs what it deleted (the `sweep_log` table, served at `/api/v1/retention`).
//!
//! Count records and items of a venue are kept `retention.counts_days` days after their
//! interval ends. Quarantine entries and alert history (operational data, no personal data)
//! are kept as long as the shortest count retention of any venue.
//!
//! The same task then compacts the hourly rollup (each insert appends its own partial sums;
//! see [`Store::compact_rollup`]).

use std::sync::Arc;
use std::time::Duration;

use passage_config::Config;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{now_unix, AnalyticsError, Store, SweepEntry};

/// How often the sweeper runs (it also runs once at start).
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// One sweep at time `now`: every venue's counts, then the operational tables.
pub fn sweep(store: &mut Store, config: &Config, now: i64) -> Result<Vec<SweepEntry>, AnalyticsError> {
    let mut done = Vec::new();
    for venue in &config.venues {
        let cutoff = now - i64::from(venue.retention.counts_days) * 86_400;
        done.push(store.sweep_counts(&venue.id, cutoff)?);
    }
    let shortest = config.venues.iter().map(|v| v.retention.counts_days).min().unwrap_or(400);
    done.extend(store.sweep_operational(now - i64::from(shortest) * 86_400)?);
    Ok(done)
}

/// Spawns the sweeper on `tracker`: a sweep at start and every [`SWEEP_EVERY`] until
/// `cancel`.
pub fn spawn_sweeper(
    config: Arc<Config>,
    store: Store,
    audit: Option<Arc<passage_policy::audit::AuditLog>>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    let store = Arc::new(std::sync::Mutex::new(store));
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = tick.tick() => {}
            }
            let (store, config, audit) = (store.clone(), config.clone(), audit.clone());
            let swept = tokio::task::spawn_blocking(move || {
                // The audit store the DPO page writes to: entries past the audit retention go
                // behind a signed base (the pruning is itself audited).
                if let Some(log) = &audit {
                    log.apply_retention(config.audit_retention_secs());
                }
                let mut store = store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let entries = sweep(&mut store, &config, now_unix())?;
                let merged = store.compact_rollup()?;
                Ok::<_, AnalyticsError>((entries, merged))
            })
            .await;
            match swept {
                Ok(Ok((entries, merged))) => {
                    let rows: i64 = entries.iter().map(|e| e.rows).sum();
                    tracing::info!(rows, rollup_rows_merged = merged, "retention sweep done");
                }
                Ok(Err(error)) => tracing::error!(%error, "retention sweep failed"),
                Err(error) => tracing::error!(%error, "retention sweep worker failed"),
            }
        }
    });
}
