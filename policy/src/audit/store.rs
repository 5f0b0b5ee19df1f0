//! The audit log on disk: a directory holding
//!
//! * `audit.jsonl`: one [`Entry`] per line, appended and synced before `append` returns; after
//!   retention pruned it ([`AuditLog::prune`]), its first line is a signed [`Base`]: the
//!   number of entries removed and the hash of the last of them, from which the chain of the
//!   entries kept continues (one atomic file replacement, so a crash leaves the old log or
//!   the pruned one);
//! * `checkpoints.jsonl`: signed [`Checkpoint`]s, one every [`CHECKPOINT_EVERY`] entries and
//!   one when the log is closed;
//! * `signing.key` (mode 0600, PKCS#8 Ed25519) and `signing.pub` (hex public key), created with
//!   the log and never replaced: a store whose key went missing is refused, not re-keyed.
//!   Copy `signing.pub` somewhere the log's writer cannot change it and verify against that
//!   copy (`passage audit verify --public-key FILE`): whoever can read the signing key could
//!   re-sign a rewritten log, so against the host's own administrator the checkpoints only
//!   help when the key lives elsewhere (the governance issue's device PKI).
//! * `audit.lock`: held (advisory lock) by the one process that appends.
//!
//! Opening a log verifies it first and refuses a broken one (fail closed). A final line torn
//! by a crash (no newline) is cut off, in either file, and the cut is itself logged. A failed
//! write is rolled back to the last complete entry.

use std::fs::TryLockError;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};

use super::chain::{seal, sign_checkpoint, Base, Broken, Checkpoint, Entry, Event, EventError, Verified, Verifier};

/// Entries between two automatic checkpoints.
pub const CHECKPOINT_EVERY: u64 = 64;

const LOG: &str = "audit.jsonl";
const CHECKPOINTS: &str = "checkpoints.jsonl";
const KEY: &str = "signing.key";
const PUBLIC: &str = "signing.pub";
const LOCK: &str = "audit.lock";

/// Longest accepted line of either file (an entry is far smaller).
const MAX_LINE: usize = 8 * 1024;

/// A failure of the audit store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A file could not be read or written.
    #[error("audit store {path}: cannot {op}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The log failed verification.
    #[error("audit log {path} is broken: {broken}")]
    Broken {
        /// The log file.
        path: PathBuf,
        /// The first fault.
        broken: Broken,
    },
    /// The signing key or the public key file is malformed.
    #[error("audit store {path}: malformed key")]
    Key {
        /// The file.
        path: PathBuf,
    },
    /// The event was refused.
    #[error(transparent)]
    Event(#[from] EventError),
    /// Another process appends to this log.
    #[error("audit store {path}: another process holds its lock")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The store has entries or a public key but no signing key: it will not be re-keyed.
    #[error("audit store {path}: the signing key is missing but the store is not new; restore the key (a new key would make a rewritten log verify)")]
    KeyMissing {
        /// The missing key file.
        path: PathBuf,
    },
    /// A line is longer than any valid entry.
    #[error("audit store {path}: line {line} is longer than {MAX_LINE} bytes")]
    LineTooLong {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
    },
}

impl AuditError {
    /// The verification fault, if that is what this is.
    pub fn broken(&self) -> Option<&Broken> {
        match self {
            AuditError::Broken { broken, .. } => Some(broken),
            _ => None,
        }
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> AuditError + 'a {
    move |source| AuditError::Io { op, path: path.to_owned(), source }
}

struct State {
    file: File,
    checkpoints: File,
    prev: [u8; 32],
    len: u64,
    signed: u64,
    /// Length of `audit.jsonl` after the last complete entry (a failed write is cut back).
    bytes: u64,
    /// Length of `checkpoints.jsonl` after the last complete checkpoint.
    checkpoint_bytes: u64,
}

/// An open, append-only audit log. Appends from many threads are serialised; one process
/// appends at a time (`audit.lock`).
pub struct AuditLog {
    dir: PathBuf,
    key: Ed25519KeyPair,
    state: Mutex<State>,
    _lock: File,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("dir", &self.dir).finish_non_exhaustive()
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

fn non_empty(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.len() > 0)
}

fn load_or_create_key(dir: &Path) -> Result<Ed25519KeyPair, AuditError> {
    let path = dir.join(KEY);
    match fs::read(&path) {
        Ok(bytes) => Ed25519KeyPair::from_pkcs8(&bytes).map_err(|_| AuditError::Key { path }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if non_empty(&dir.join(LOG)) || non_empty(&dir.join(CHECKPOINTS)) || dir.join(PUBLIC).exists() {
                return Err(AuditError::KeyMissing { path });
            }
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .map_err(|_| AuditError::Key { path: path.clone() })?;
            let mut file = private_options().open(&path).map_err(io("create", &path))?;
            file.write_all(pkcs8.as_ref()).map_err(io("write", &path))?;
            file.sync_all().map_err(io("sync", &path))?;
            let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| AuditError::Key { path })?;
            let public = dir.join(PUBLIC);
            let mut file =
                OpenOptions::new().write(true).create_new(true).open(&public).map_err(io("create", &public))?;
            file.write_all((hex::encode(key.public_key().as_ref()) + "\n").as_bytes()).map_err(io("write", &public))?;
            Ok(key)
        }
        Err(error) => Err(io("read", &path)(error)),
    }
}

/// Reads a public key file (hex, as `signing.pub`).
///
/// # Errors
/// Unreadable or malformed file.
pub fn read_public_key(path: &Path) -> Result<Vec<u8>, AuditError> {
    let text = fs::read_to_string(path).map_err(io("read", path))?;
    let key = hex::decode(text.trim()).map_err(|_| AuditError::Key { path: path.to_owned() })?;
    if key.len() != 32 {
        return Err(AuditError::Key { path: path.to_owned() });
    }
    Ok(key)
}

/// Cuts a torn final line of `torn` bytes off `path`; returns the length that remains.
fn cut_torn_tail(path: &Path, torn: usize) -> Result<u64, AuditError> {
    let len = match fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(io("stat", path)(error)),
    };
    let keep = len.saturating_sub(torn as u64);
    if torn > 0 {
        let file = OpenOptions::new().write(true).open(path).map_err(io("open", path))?;
        file.set_len(keep).map_err(io("truncate", path))?;
        file.sync_all().map_err(io("sync", path))?;
    }
    Ok(keep)
}

/// Splits a file into complete lines; returns them and the length of a torn final line.
fn read_lines(path: &Path) -> Result<(Vec<String>, usize), AuditError> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut file) => {
            file.read_to_end(&mut bytes).map_err(io("read", path))?;
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(error) => return Err(io("open", path)(error)),
    }
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let torn = bytes.len() - complete;
    let mut lines = Vec::new();
    if complete == 0 {
        return Ok((lines, torn));
    }
    for (n, line) in bytes[..complete - 1].split(|&b| b == b'\n').enumerate() {
        if line.len() > MAX_LINE {
            return Err(AuditError::LineTooLong { path: path.to_owned(), line: n as u64 + 1 });
        }
        lines.push(String::from_utf8_lossy(line).into_owned());
    }
    Ok((lines, torn))
}

/// Verifies the log in `dir` against `public_key` (the store's own `signing.pub` when `None`).
/// For a log that is being appended to, prefer [`AuditLog::verify`], which holds the writer's
/// lock.
///
/// # Errors
/// [`AuditError::Broken`] naming the first bad entry, or an I/O or key error.
pub fn verify(dir: &Path, public_key: Option<&[u8]>) -> Result<Verified, AuditError> {
    let log = dir.join(LOG);
    let public = match public_key {
        Some(key) => key.to_vec(),
        None => read_public_key(&dir.join(PUBLIC))?,
    };
    // Checkpoints first: one signed after the log was read would cover entries not read.
    let (checkpoints, _) = read_lines(&dir.join(CHECKPOINTS))?;
    let (lines, torn) = read_lines(&log)?;
    let verifier = check(dir, &lines, &checkpoints, &public)?;
    if torn > 0 {
        let broken = Broken::Unreadable { index: verifier.len(), why: format!("torn final line of {torn} bytes") };
        return Err(AuditError::Broken { path: log, broken });
    }
    Ok(Verified {
        entries: verifier.len(),
        pruned: verifier.pruned(),
        checkpoints: checkpoints.len() as u64,
        signed_through: verifier.signed_through(),
        head: hex::encode(verifier.head()),
    })
}

/// Checks complete entry lines against the checkpoint lines: the chain, every signature, and
/// that no more than a checkpoint interval of entries is unsigned.
fn check(dir: &Path, lines: &[String], checkpoints: &[String], public: &[u8]) -> Result<Verifier, AuditError> {
    let log = dir.join(LOG);
    let mut verifier = Verifier::new();
    let broken = |broken| AuditError::Broken { path: log.clone(), broken };
    let mut lines = lines.iter();
    if let Some(first) = lines.clone().next().filter(|l| l.starts_with("{\"base\"")) {
        let base: Base = serde_json::from_str(first)
            .map_err(|error| broken(Broken::Unreadable { index: 0, why: format!("the base: {error}") }))?;
        verifier.base(&base.base, public).map_err(broken)?;
        lines.next();
    }
    for line in lines {
        verifier.entry_line(line).map_err(broken)?;
    }
    for (index, line) in checkpoints.iter().enumerate() {
        let index = index as u64;
        let checkpoint: Checkpoint = serde_json::from_str(line)
            .map_err(|_| AuditError::Broken { path: dir.join(CHECKPOINTS), broken: Broken::Signature { index } })?;
        verifier.checkpoint(index, &checkpoint, public).map_err(broken)?;
    }
    if verifier.len() - verifier.signed_through() >= CHECKPOINT_EVERY {
        let broken = Broken::Unsigned { from: verifier.signed_through(), to: verifier.len() - 1 };
        return Err(AuditError::Broken { path: log, broken });
    }
    Ok(verifier)
}

/// Reads the log's entries (unverified; use [`verify`] for that), keeping those `keep`
/// accepts, at most the last `limit`.
///
/// # Errors
/// I/O errors; unreadable lines are skipped.
pub fn read(dir: &Path, limit: usize, keep: impl Fn(&Entry) -> bool) -> Result<Vec<Entry>, AuditError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let path = dir.join(LOG);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io("open", &path)(error)),
    };
    let mut kept = std::collections::VecDeque::new();
    for line in BufReader::new(file).split(b'\n') {
        let line = line.map_err(io("read", &path))?;
        if let Ok(entry) = serde_json::from_slice::<Entry>(&line) {
            if keep(&entry) {
                if kept.len() == limit {
                    kept.pop_front();
                }
                kept.push_back(entry);
            }
        }
    }
    Ok(kept.into())
}

/// When the first entry of the log at `path` (after a base) was recorded; `None` without one.
fn first_entry_at(path: &Path) -> Result<Option<i64>, AuditError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io("open", path)(error)),
    };
    for line in BufReader::new(file).split(b'\n').take(2) {
        let line = line.map_err(io("read", path))?;
        if let Ok(entry) = serde_json::from_slice::<Entry>(&line) {
            return Ok(Some(entry.event.at));
        }
    }
    Ok(None)
}

impl AuditLog {
    /// Opens (or creates) the log in `dir`, verifying what is there.
    ///
    /// # Errors
    /// A broken log, an unreadable key, or I/O errors.
    pub fn open(dir: &Path) -> Result<AuditLog, AuditError> {
        fs::create_dir_all(dir).map_err(io("create", dir))?;
        let lock_path = dir.join(LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("open", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(AuditError::Locked { path: lock_path }),
            Err(TryLockError::Error(error)) => return Err(io("lock", &lock_path)(error)),
        }
        let key = load_or_create_key(dir)?;
        let log = dir.join(LOG);
        let checkpoints_path = dir.join(CHECKPOINTS);
        let (lines, torn) = read_lines(&log)?;
        let (checkpoints, torn_checkpoint) = read_lines(&checkpoints_path)?;
        let verifier = check(dir, &lines, &checkpoints, key.public_key().as_ref())?;
        let bytes = cut_torn_tail(&log, torn)?;
        let checkpoint_bytes = cut_torn_tail(&checkpoints_path, torn_checkpoint)?;
        let file = OpenOptions::new().create(true).append(true).open(&log).map_err(io("open", &log))?;
        let checkpoints = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&checkpoints_path)
            .map_err(io("open", &checkpoints_path))?;
        let audit = AuditLog {
            dir: dir.to_owned(),
            key,
            state: Mutex::new(State {
                file,
                checkpoints,
                prev: verifier.head(),
                len: verifier.len(),
                signed: verifier.signed_through(),
                bytes,
                checkpoint_bytes,
            }),
            _lock: lock,
        };
        for (what, cut) in [("audit log", torn), ("checkpoint file", torn_checkpoint)] {
            if cut > 0 {
                audit.append(Event {
                    at: now(),
                    actor: "system".into(),
                    action: "audit.recovered".into(),
                    venue: None,
                    subject: None,
                    outcome: format!(
                        "a torn final line of {cut} bytes in the {what} (crash during a write) was cut off"
                    ),
                })?;
            }
        }
        Ok(audit)
    }

    /// Verifies the whole log while holding the writer's lock (no append can interleave),
    /// against `public_key` (a pinned copy) or this log's own key.
    ///
    /// # Errors
    /// As [`verify`].
    pub fn verify(&self, public_key: Option<&[u8]>) -> Result<Verified, AuditError> {
        let _state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let own = self.key.public_key().as_ref().to_vec();
        verify(&self.dir, Some(public_key.unwrap_or(&own)))
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Hex of the public key that verifies the checkpoints.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.public_key().as_ref())
    }

    /// Appends an event; returns its sequence number once it is on disk.
    ///
    /// # Errors
    /// An invalid event or a failed write. A failed write is cut back to the last complete
    /// entry, so the log stays verifiable and nothing is appended.
    pub fn append(&self, event: Event) -> Result<u64, AuditError> {
        event.validate()?;
        let log = self.dir.join(LOG);
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let seq = state.len;
        let (entry, hash) = seal(&state.prev, seq, event);
        let mut line = serde_json::to_vec(&entry).unwrap_or_default();
        line.push(b'\n');
        let written = state.file.write_all(&line).and_then(|()| state.file.sync_data());
        if let Err(error) = written {
            if let Err(cut) = state.file.set_len(state.bytes) {
                tracing::error!(%cut, "a failed audit append could not be cut back; the log needs recovery");
            }
            return Err(io("append to", &log)(error));
        }
        state.bytes += line.len() as u64;
        state.prev = hash;
        state.len += 1;
        if state.len - state.signed >= CHECKPOINT_EVERY {
            // The entry is committed; a failed checkpoint is retried with the next append.
            if let Err(error) = self.checkpoint_locked(&mut state) {
                tracing::warn!(%error, "audit checkpoint not written; retried with the next entry");
            }
        }
        Ok(seq)
    }

    /// Appends an event now, from its parts.
    ///
    /// # Errors
    /// As [`AuditLog::append`].
    pub fn record(
        &self,
        actor: &str,
        action: &str,
        venue: Option<&str>,
        subject: Option<&str>,
        outcome: &str,
    ) -> Result<u64, AuditError> {
        self.append(Event {
            at: now(),
            actor: actor.into(),
            action: action.into(),
            venue: venue.map(Into::into),
            subject: subject.map(Into::into),
            outcome: outcome.into(),
        })
    }

    /// Signs a checkpoint over everything appended so far (if anything is unsigned).
    ///
    /// # Errors
    /// A failed write.
    pub fn checkpoint(&self) -> Result<(), AuditError> {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.len > state.signed {
            self.checkpoint_locked(&mut state)?;
        }
        Ok(())
    }

    fn checkpoint_locked(&self, state: &mut State) -> Result<(), AuditError> {
        let path = self.dir.join(CHECKPOINTS);
        let checkpoint = sign_checkpoint(&self.key, state.len, &state.prev, now());
        let mut line = serde_json::to_vec(&checkpoint).unwrap_or_default();
        line.push(b'\n');
        let written = state.checkpoints.write_all(&line).and_then(|()| state.checkpoints.sync_data());
        if let Err(error) = written {
            let _ = state.checkpoints.set_len(state.checkpoint_bytes);
            return Err(io("append to", &path)(error));
        }
        state.checkpoint_bytes += line.len() as u64;
        state.signed = state.len;
        Ok(())
    }

    /// Retention: removes the entries recorded before `before` (seconds since the Unix epoch)
    /// from the start of the log, behind a signed base (their number and the hash of the last
    /// of them), so what is kept still verifies from the base on. The log is replaced in one
    /// atomic rename; checkpoints that covered only removed entries are dropped after it. The
    /// pruning itself is then audited (`audit.prune`). Returns how many entries were removed.
    ///
    /// # Errors
    /// A broken log (nothing is removed then) or a failed write.
    pub fn prune(&self, before: i64) -> Result<u64, AuditError> {
        let log = self.dir.join(LOG);
        let checkpoints_path = self.dir.join(CHECKPOINTS);
        // The sweepers call this often; nothing to remove is the usual case and costs one line
        // read, without the lock (appends only add at the end; a prune replaces the file whole).
        if first_entry_at(&log)?.is_none_or(|at| at >= before) {
            return Ok(0);
        }
        let (removed, base) = {
            let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let (lines, _) = read_lines(&log)?;
            let (checkpoints, _) = read_lines(&checkpoints_path)?;
            // Verify before removing anything: a broken log is evidence, kept as it is.
            let verifier = check(&self.dir, &lines, &checkpoints, self.key.public_key().as_ref())?;
            let first = usize::from(lines.first().is_some_and(|l| l.starts_with("{\"base\"")));
            let mut last_removed: Option<Entry> = None;
            let mut cut = first;
            for line in &lines[first..] {
                let entry: Entry = serde_json::from_str(line).map_err(|error| AuditError::Broken {
                    path: log.clone(),
                    broken: Broken::Unreadable { index: verifier.pruned(), why: error.to_string() },
                })?;
                if entry.event.at >= before {
                    break;
                }
                last_removed = Some(entry);
                cut += 1;
            }
            let Some(last) = last_removed else { return Ok(0) };
            let head: [u8; 32] = hex::decode(&last.hash)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| AuditError::Broken { path: log.clone(), broken: Broken::Content { index: last.seq } })?;
            let size = last.seq + 1;
            let base = Base { base: sign_checkpoint(&self.key, size, &head, now()) };
            let mut text = serde_json::to_vec(&base).unwrap_or_default();
            text.push(b'\n');
            for line in &lines[cut..] {
                text.extend_from_slice(line.as_bytes());
                text.push(b'\n');
            }
            crate::atomic_file::write_private(&log, &text).map_err(io("replace", &log))?;
            state.file = OpenOptions::new().append(true).open(&log).map_err(io("open", &log))?;
            state.bytes = text.len() as u64;
            // Checkpoints of removed entries only: the base vouches for them now.
            let mut kept = Vec::new();
            for line in &checkpoints {
                if serde_json::from_str::<Checkpoint>(line).is_ok_and(|c| c.size >= size) {
                    kept.extend_from_slice(line.as_bytes());
                    kept.push(b'\n');
                }
            }
            crate::atomic_file::write_private(&checkpoints_path, &kept).map_err(io("replace", &checkpoints_path))?;
            state.checkpoints =
                OpenOptions::new().append(true).open(&checkpoints_path).map_err(io("open", &checkpoints_path))?;
            state.checkpoint_bytes = kept.len() as u64;
            state.signed = state.signed.max(size);
            (size - verifier.pruned(), size)
        };
        self.append(Event {
            at: now(),
            actor: "system".into(),
            action: "audit.prune".into(),
            venue: None,
            subject: None,
            outcome: format!("{removed} entries recorded before {before} removed; the log now starts at entry {base}"),
        })?;
        Ok(removed)
    }

    /// Retention run by the services' sweepers: [`AuditLog::prune`] of what is older than
    /// `keep_secs` now; the outcome is logged, a failure never stops the sweeper.
    pub fn apply_retention(&self, keep_secs: i64) {
        match self.prune(now().saturating_sub(keep_secs)) {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "audit entries past their retention pruned behind a signed base"),
            Err(error) => tracing::error!(%error, "audit log pruning failed"),
        }
    }

    /// Entries appended so far.
    pub fn len(&self) -> u64 {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        if let Err(error) = self.checkpoint() {
            tracing::warn!(%error, "could not sign the audit log's closing checkpoint");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: u64) -> Event {
        Event {
            at: 1_700_000_000,
            actor: "dpo:demo".into(),
            action: "dpia.signoff".into(),
            venue: Some("arena".into()),
            subject: None,
            outcome: format!("version {i}"),
        }
    }

    fn rewrite_line(path: &Path, index: usize, edit: impl Fn(&str) -> String) {
        let text = fs::read_to_string(path).expect("read");
        let lines: Vec<String> =
            text.lines().enumerate().map(|(i, l)| if i == index { edit(l) } else { l.to_owned() }).collect();
        fs::write(path, lines.join("\n") + "\n").expect("write");
    }

    #[test]
    fn a_log_survives_reopening_and_a_modified_entry_is_reported_at_its_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let log = AuditLog::open(dir.path()).expect("open");
            for i in 0..100 {
                assert_eq!(log.append(event(i)).expect("append"), i);
            }
        }
        {
            let log = AuditLog::open(dir.path()).expect("reopen verifies");
            assert_eq!(log.len(), 100);
            log.append(event(100)).expect("append");
        }
        let verified = verify(dir.path(), None).expect("intact");
        assert_eq!((verified.entries, verified.signed_through), (101, 101));
        assert_eq!(verified.checkpoints, 3, "one at 64, one at close (100), one at close (101)");

        rewrite_line(&dir.path().join(LOG), 37, |l| l.replace("version 37", "version 38"));
        let error = verify(dir.path(), None).expect_err("modified");
        assert_eq!(error.broken().map(Broken::index), Some(37), "{error}");
        assert!(error.to_string().contains("entry 37"), "{error}");
        assert!(AuditLog::open(dir.path()).is_err(), "a broken log is not appended to");
    }

    #[test]
    fn pruning_keeps_the_rest_verifiable_behind_a_signed_base() {
        let dir = tempfile::tempdir().expect("tempdir");
        let at = |i: u64| Event { at: 1_700_000_000 + i as i64 * 86_400, ..event(i) };
        {
            let log = AuditLog::open(dir.path()).expect("open");
            for i in 0..150 {
                log.append(at(i)).expect("append");
            }
            // Entries of days 0..100 go; nothing before day 0 is there to prune the second time.
            assert_eq!(log.prune(1_700_000_000 + 100 * 86_400).expect("prune"), 100);
            assert_eq!(log.prune(1_600_000_000).expect("nothing older"), 0);
            assert_eq!(log.len(), 151, "sequence numbers continue (the prune itself is entry 150)");
            log.append(at(151)).expect("append after pruning");
        }
        let verified = verify(dir.path(), None).expect("the pruned log verifies");
        assert_eq!((verified.entries, verified.pruned), (152, 100));
        let kept = read(dir.path(), usize::MAX, |_| true).expect("read");
        assert_eq!(kept.first().map(|e| e.seq), Some(100));
        assert!(kept.iter().any(|e| e.event.action == "audit.prune" && e.event.outcome.starts_with("100 entries")));
        assert!(!fs::read_to_string(dir.path().join(LOG)).expect("log").contains("version 99\""));
        // Reopened, pruned again (a base replaced by a later one), still verifiable.
        {
            let log = AuditLog::open(dir.path()).expect("reopen");
            assert_eq!(log.prune(1_700_000_000 + 120 * 86_400).expect("prune"), 20);
        }
        let verified = verify(dir.path(), None).expect("verifies");
        assert_eq!(verified.pruned, 120);

        // A forged base (another count, or another head) is caught by its signature.
        let path = dir.path().join(LOG);
        let original = fs::read_to_string(&path).expect("log");
        rewrite_line(&path, 0, |l| l.replacen("\"size\":120", "\"size\":119", 1));
        let error = verify(dir.path(), None).expect_err("forged base");
        assert!(matches!(error.broken(), Some(Broken::Signature { .. })), "{error}");
        fs::write(&path, &original).expect("restore");
        // Removing the base and the entries after it is a broken chain, not a shorter log.
        let without_base: Vec<&str> = original.lines().skip(1).collect();
        fs::write(&path, without_base.join("\n") + "\n").expect("write");
        assert!(verify(dir.path(), None).is_err(), "a log without its base does not verify");
    }

    #[test]
    fn truncation_is_detected_and_a_torn_last_line_is_cut_and_logged() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(AuditLog::open(dir.path()).map(|log| (0..10).try_for_each(|i| log.append(event(i)).map(drop))));
        let path = dir.path().join(LOG);
        let text = fs::read_to_string(&path).expect("read");
        let kept: Vec<&str> = text.lines().take(7).collect();
        fs::write(&path, kept.join("\n") + "\n").expect("truncate");
        let error = verify(dir.path(), None).expect_err("truncated");
        assert!(matches!(error.broken(), Some(Broken::Truncated { size: 7, .. })), "{error}");

        let dir = tempfile::tempdir().expect("tempdir");
        {
            let log = AuditLog::open(dir.path()).expect("open");
            (0..3).for_each(|i| drop(log.append(event(i))));
        }
        let mut file = OpenOptions::new().append(true).open(dir.path().join(LOG)).expect("open");
        file.write_all(b"{\"seq\":3,\"at\":17").expect("torn write");
        drop(file);
        assert!(verify(dir.path(), None).is_err(), "a torn line fails verification until the log is reopened");
        let log = AuditLog::open(dir.path()).expect("recovers");
        assert_eq!(log.len(), 4);
        drop(log);
        let entries = read(dir.path(), 10, |e| e.event.action == "audit.recovered").expect("read");
        assert_eq!(entries.len(), 1);
        assert_eq!(verify(dir.path(), None).expect("intact").entries, 4);
    }

    #[test]
    fn removed_checkpoints_a_missing_key_and_a_second_writer_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let log = AuditLog::open(dir.path()).expect("open");
            assert!(matches!(AuditLog::open(dir.path()), Err(AuditError::Locked { .. })), "one writer at a time");
            (0..70).for_each(|i| drop(log.append(event(i))));
        }
        fs::write(dir.path().join(CHECKPOINTS), "").expect("remove the checkpoints");
        let error = verify(dir.path(), None).expect_err("unsigned");
        assert!(matches!(error.broken(), Some(Broken::Unsigned { from: 0, to: 69 })), "{error}");

        let dir = tempfile::tempdir().expect("tempdir");
        drop(AuditLog::open(dir.path()).map(|log| log.append(event(0))));
        fs::remove_file(dir.path().join(KEY)).expect("remove the key");
        assert!(matches!(AuditLog::open(dir.path()), Err(AuditError::KeyMissing { .. })), "no silent re-keying");
    }

    #[test]
    fn a_torn_checkpoint_line_is_cut_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(AuditLog::open(dir.path()).map(|log| log.append(event(0))));
        let mut file = OpenOptions::new().append(true).open(dir.path().join(CHECKPOINTS)).expect("open");
        file.write_all(b"{\"size\":1,\"he").expect("torn write");
        drop(file);
        {
            let log = AuditLog::open(dir.path()).expect("recovers");
            log.append(event(1)).expect("append");
        }
        let verified = verify(dir.path(), None).expect("intact");
        assert_eq!((verified.entries, verified.signed_through), (3, 3), "two events and the recovery note");
    }

    #[test]
    fn verification_against_another_public_key_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let log = AuditLog::open(dir.path()).expect("open");
            log.append(event(0)).expect("append");
        }
        let other = tempfile::tempdir().expect("tempdir");
        drop(AuditLog::open(other.path()).expect("open"));
        let foreign = read_public_key(&other.path().join(PUBLIC)).expect("key");
        let error = verify(dir.path(), Some(&foreign)).expect_err("wrong key");
        assert!(matches!(error.broken(), Some(Broken::Signature { index: 0 })), "{error}");
        assert!(log_has_mode_0600(&dir.path().join(KEY)));
    }

    #[cfg(unix)]
    fn log_has_mode_0600(path: &Path) -> bool {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).map(|m| m.permissions().mode() & 0o777 == 0o600).unwrap_or(false)
    }

    #[cfg(not(unix))]
    fn log_has_mode_0600(_: &Path) -> bool {
        true
    }
}
