//! The privacy-budget ledger on disk: JSON (venue ids, day numbers, budgets; no personal
//! data), rewritten atomically after every charge so a restart cannot spend a day twice.

use std::fs;
use std::path::{Path, PathBuf};

use passage_dp::{Budget, BudgetLedger};

/// Why the ledger file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LedgerFileError {
    /// Reading or writing failed.
    #[error("budget ledger {path}: cannot {action}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a ledger.
    #[error("budget ledger {path}: {source}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: passage_dp::DpError,
    },
}

/// Loads the ledger at `path`, or starts one with `limit` when there is no file. A ledger
/// written with another limit keeps its spending and takes the new limit.
///
/// # Errors
/// [`LedgerFileError`] when the file exists but cannot be read or parsed: the agent must not
/// start releasing with a forgotten budget.
pub fn load(path: &Path, limit: Budget) -> Result<BudgetLedger, LedgerFileError> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let stored = BudgetLedger::from_json(&text)
                .map_err(|source| LedgerFileError::Malformed { path: path.to_owned(), source })?;
            Ok(stored
                .with_limit(limit)
                .map_err(|source| LedgerFileError::Malformed { path: path.to_owned(), source })?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            BudgetLedger::new(limit).map_err(|source| LedgerFileError::Malformed { path: path.to_owned(), source })
        }
        Err(source) => Err(LedgerFileError::Io { action: "read", path: path.to_owned(), source }),
    }
}

/// Writes the ledger atomically (temporary file, fsync, rename).
///
/// # Errors
/// [`LedgerFileError::Io`].
pub fn save(path: &Path, ledger: &BudgetLedger) -> Result<(), LedgerFileError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|source| LedgerFileError::Io {
            action: "create the directory of",
            path: path.to_owned(),
            source,
        })?;
    }
    passage_policy::atomic_file::write(path, ledger.to_json().as_bytes(), passage_policy::atomic_file::Access::Private)
        .map_err(|e| LedgerFileError::Io { action: e.op, path: e.path, source: e.source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spending_survives_a_reload_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dp-ledger.json");
        let limit = Budget { epsilon: 1.0, delta: 1e-6 };
        let mut ledger = load(&path, limit).expect("fresh");
        ledger.charge("arena", 7, limit).expect("fits");
        save(&path, &ledger).expect("saved");
        let mut again = load(&path, limit).expect("reloaded");
        assert!(again.charge("arena", 7, Budget::pure(0.1)).is_err(), "the day stays spent after a restart");
        fs::write(&path, b"not json").expect("write");
        assert!(matches!(load(&path, limit), Err(LedgerFileError::Malformed { .. })));
    }
}
