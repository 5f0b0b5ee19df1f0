//! Evidence mode (off by default, `faces.evidence` in the configuration): anonymised frames
//! of gate decisions kept on the edge for a bounded time, then deleted by the agent itself.
//!
//! Only [`AnonymisedFrame`]s can be stored (the type is made only by the anonymiser), as PNG
//! files written atomically with mode 0600 in a directory of mode 0700. A file's name carries
//! the time it was taken (`{unix ms}-{gate}.png`); [`EvidenceStore::sweep`] deletes every file
//! older than the expiry (the venue's `retention.evidence_image_hours`, at most 6 h) and any
//! stray file the store did not make, so nothing outlives its rule even across restarts.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use passage_policy::atomic_file::{self, Access};
use passage_vision::anonymize::AnonymisedFrame;
use passage_vision::decode::{encode, OutputFormat};
use passage_wire::Id;

/// Why evidence could not be stored or swept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// A file system operation failed.
    #[error("evidence store: cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The frame could not be encoded.
    #[error("evidence store: cannot encode the frame: {0}")]
    Encode(String),
}

/// Evidence mode at a venue's gates: the frames of their decisions, anonymised by `anonymiser`,
/// kept in `store` until it expires them.
#[derive(Debug, Clone)]
pub struct GateEvidence {
    /// Where the anonymised frames go.
    pub store: EvidenceStore,
    /// What mosaics their faces first.
    pub anonymiser: std::sync::Arc<passage_vision::anonymize::Anonymiser>,
}

/// Anonymised evidence frames of one venue, with an expiry.
#[derive(Debug, Clone)]
pub struct EvidenceStore {
    dir: PathBuf,
    expiry: Duration,
}

impl EvidenceStore {
    /// Opens (creating it with mode 0700) the store in `dir`, and sweeps it at `now`.
    ///
    /// # Errors
    /// [`EvidenceError::Io`].
    pub fn open(dir: &Path, expiry: Duration, now: SystemTime) -> Result<EvidenceStore, EvidenceError> {
        std::fs::create_dir_all(dir).map_err(|source| EvidenceError::Io {
            op: "create",
            path: dir.to_owned(),
            source,
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|source| EvidenceError::Io { op: "restrict", path: dir.to_owned(), source })?;
        }
        let store = EvidenceStore { dir: dir.to_owned(), expiry };
        store.sweep(now)?;
        Ok(store)
    }

    /// Stores one anonymised frame taken at `at` by `gate`; returns its path.
    ///
    /// # Errors
    /// [`EvidenceError`].
    pub fn save(&self, frame: &AnonymisedFrame, gate: &Id, at: SystemTime) -> Result<PathBuf, EvidenceError> {
        let (w, h, rgb) = frame.pixels();
        let png = encode(rgb, w, h, OutputFormat::Png).map_err(|e| EvidenceError::Encode(e.to_string()))?;
        let ms = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
        let path = self.dir.join(format!("{ms}-{gate}.png"));
        atomic_file::write(&path, &png, Access::Private).map_err(|e| EvidenceError::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        })?;
        Ok(path)
    }

    /// Deletes every file older than the expiry at `now`, and every file the store did not
    /// make; returns how many were deleted.
    ///
    /// # Errors
    /// [`EvidenceError::Io`] when the directory cannot be listed or a file cannot be deleted.
    pub fn sweep(&self, now: SystemTime) -> Result<usize, EvidenceError> {
        let cutoff = now
            .checked_sub(self.expiry)
            .unwrap_or(UNIX_EPOCH)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let mut deleted = 0;
        for entry in std::fs::read_dir(&self.dir).map_err(io("list", &self.dir))? {
            let path = entry.map_err(io("list", &self.dir))?.path();
            let taken = path
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|n| n.ends_with(".png"))
                .and_then(|n| n.split('-').next())
                .and_then(|ms| ms.parse::<u128>().ok());
            if taken.is_none_or(|ms| ms < cutoff) {
                std::fs::remove_file(&path).map_err(io("delete", &path))?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

impl EvidenceStore {
    /// Sweeps every `every` until `cancel` fires (the agent's own deletion of expired
    /// evidence). A failed sweep is logged without paths or contents and retried next time.
    pub async fn sweep_every(&self, every: Duration, cancel: tokio_util::sync::CancellationToken) {
        let mut ticks = tokio::time::interval(every);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticks.tick() => {
                    match self.sweep(SystemTime::now()) {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(deleted = n, "evidence images past their retention deleted"),
                        Err(error) => tracing::warn!(op = error_op(&error), "evidence sweep failed; retrying at the next tick"),
                    }
                }
            }
        }
    }
}

fn error_op(error: &EvidenceError) -> &'static str {
    match error {
        EvidenceError::Io { op, .. } => op,
        EvidenceError::Encode(_) => "encode",
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> EvidenceError + 'a {
    move |source| EvidenceError::Io { op, path: path.to_owned(), source }
}

#[cfg(test)]
mod tests {
    use passage_vision::anonymize::{anonymize_frame, AnonymizeConfig};
    use passage_vision::face::Face;
    use zeroize::Zeroizing;

    use super::*;

    #[test]
    fn frames_are_kept_until_their_expiry_and_strays_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let store =
            EvidenceStore::open(&dir.path().join("evidence"), Duration::from_secs(6 * 3600), t0).expect("opens");
        let face = Face { bbox: [2.0, 2.0, 6.0, 6.0], score: 1.0, landmarks: None };
        let frame = |v: u8| {
            anonymize_frame(
                Zeroizing::new(vec![v; 8 * 8 * 3]),
                8,
                8,
                std::slice::from_ref(&face),
                &AnonymizeConfig::default(),
            )
            .expect("anonymises")
        };
        let gate = Id::new("north-1").expect("id");
        let early = store.save(&frame(10), &gate, t0).expect("saved");
        let late = store.save(&frame(20), &gate, t0 + Duration::from_secs(3600)).expect("saved");
        std::fs::write(dir.path().join("evidence/stray.jpg"), b"not ours").expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&early).expect("stat").permissions().mode() & 0o777, 0o600);
            assert_eq!(
                std::fs::metadata(dir.path().join("evidence")).expect("stat").permissions().mode() & 0o777,
                0o700
            );
        }
        // Five hours on: only the stray goes.
        assert_eq!(store.sweep(t0 + Duration::from_secs(5 * 3600)).expect("sweeps"), 1);
        assert!(early.exists() && late.exists());
        // Six hours after the first frame: it goes, the later one stays.
        assert_eq!(store.sweep(t0 + Duration::from_secs(6 * 3600 + 1)).expect("sweeps"), 1);
        assert!(!early.exists() && late.exists());
        // The agent's own sweeper task deletes on its first tick and stops when cancelled.
        let sweeper_dir = dir.path().join("swept");
        let sweeper = EvidenceStore::open(&sweeper_dir, Duration::from_secs(1), SystemTime::now()).expect("opens");
        let old = sweeper.save(&frame(30), &gate, SystemTime::now() - Duration::from_secs(60)).expect("saved");
        let cancel = tokio_util::sync::CancellationToken::new();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        runtime.block_on(async {
            let task = {
                let cancel = cancel.clone();
                let sweeper = sweeper.clone();
                tokio::spawn(async move { sweeper.sweep_every(Duration::from_millis(20), cancel).await })
            };
            tokio::time::sleep(Duration::from_millis(100)).await;
            cancel.cancel();
            task.await.expect("sweeper stops");
        });
        assert!(!old.exists());
        // Reopened after a long stop: the sweep at open removes the rest.
        EvidenceStore::open(
            &dir.path().join("evidence"),
            Duration::from_secs(6 * 3600),
            t0 + Duration::from_secs(86_400),
        )
        .expect("opens");
        assert!(!late.exists());
    }
}
