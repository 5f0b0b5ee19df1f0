//! The edge's retention sweeper for the subject store (consent evidence, contacts for denial
//! notices, linked tickets), by each venue's `[retention]` rules through
//! [`passage_policy::retention::keep`]. What it removed is reported in the audit log
//! (`retention.sweep`, counts only) and the service log.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use passage_config::Config;
use passage_policy::audit::AuditLog;
use passage_policy::retention::{keep, SubjectRules};
use passage_policy::subjects::{Retained, SubjectError, SubjectStore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::now_secs;

/// How often the sweeper runs (it also runs once at start).
pub const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// The rules of every venue of `config`; a venue no longer configured gets the strictest.
fn rules(config: &Config) -> (Vec<(String, SubjectRules)>, SubjectRules) {
    let of = |r: &passage_config::Retention| SubjectRules {
        consent_evidence_secs: i64::from(r.consent_evidence_days) * 86_400,
        notice_secs: i64::from(r.denial_notice_hours) * 3600,
    };
    let venues: Vec<(String, SubjectRules)> =
        config.venues.iter().map(|v| (v.id.to_string(), of(&v.retention))).collect();
    let strictest = SubjectRules {
        consent_evidence_secs: venues.iter().map(|(_, r)| r.consent_evidence_secs).min().unwrap_or(0),
        notice_secs: venues.iter().map(|(_, r)| r.notice_secs).min().unwrap_or(0),
    };
    (venues, strictest)
}

/// One sweep of `store` at `now` (Unix seconds).
///
/// # Errors
/// The store's I/O errors or a damaged record (nothing is changed then).
pub fn sweep_subjects(store: &mut SubjectStore, config: &Config, now: i64) -> Result<Retained, SubjectError> {
    let (venues, fallback) = rules(config);
    let lookup = |venue: &str| venues.iter().find(|(id, _)| id == venue).map(|(_, r)| *r);
    store.retain(|_, records| keep(records, now, lookup, fallback))
}

/// Spawns the sweeper on `tracker`: a sweep of the subject store (and a pruning of `audit`,
/// when given) at start and every `every` until `cancel`.
pub fn spawn_subject_sweeper(
    store: Arc<Mutex<SubjectStore>>,
    config: Arc<Config>,
    audit: Option<Arc<AuditLog>>,
    every: Duration,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = tick.tick() => {}
            }
            let (store, config, audit) = (store.clone(), config.clone(), audit.clone());
            let swept = tokio::task::spawn_blocking(move || {
                let done =
                    sweep_subjects(&mut store.lock().unwrap_or_else(PoisonError::into_inner), &config, now_secs())?;
                if done != Retained::default() {
                    if let Some(log) = &audit {
                        let outcome = format!(
                            "{} records removed, {} subjects shredded",
                            done.records_removed, done.subjects_shredded
                        );
                        if let Err(error) = log.record("system:edge", "retention.sweep", None, None, &outcome) {
                            tracing::warn!(%error, "retention report not audited");
                        }
                    }
                }
                if let Some(log) = &audit {
                    log.apply_retention(config.audit_retention_secs());
                }
                Ok::<_, SubjectError>(done)
            })
            .await;
            match swept {
                Ok(Ok(done)) if done != Retained::default() => tracing::info!(
                    records = done.records_removed,
                    subjects = done.subjects_shredded,
                    "subject records past their retention removed"
                ),
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::error!(%error, "subject retention sweep failed"),
                Err(error) => tracing::error!(%error, "subject retention sweep worker failed"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use passage_policy::subjects::SubjectRecord;

    #[test]
    fn the_venues_rules_decide_and_an_unknown_venue_gets_the_strictest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut store, _) = SubjectStore::open(dir.path(), |_| false).expect("open");
        let mut config = Config::default();
        config.venues[0].retention.consent_evidence_days = 10;
        config.venues[0].retention.denial_notice_hours = 1;
        let arena = config.venues[0].id.to_string();
        let consent = |venue: &str, granted, at| SubjectRecord::Consent {
            venue: venue.into(),
            purpose: "face-access".into(),
            notice: 1,
            granted,
            at,
        };
        store.put("a", &consent(&arena, true, 0)).expect("put");
        store.put("a", &SubjectRecord::Contact { value: "push:a".into(), at: 0 }).expect("put");
        store.put("a", &consent(&arena, false, 1000)).expect("put");
        store.put("b", &consent("closed-venue", true, 0)).expect("put");
        store.put("b", &consent("closed-venue", false, 1000)).expect("put");
        let day = 86_400;
        let done = sweep_subjects(&mut store, &config, 1000 + 2 * 3600).expect("sweep");
        assert_eq!(done, Retained { records_removed: 1, subjects_shredded: 0 }, "a's contact after an hour");
        let done = sweep_subjects(&mut store, &config, 1000 + 11 * day).expect("sweep");
        assert_eq!(done.subjects_shredded, 2, "arena's 10 days; the closed venue gets the strictest (10 days)");
        assert_eq!(store.subjects(), 0);
    }
}
