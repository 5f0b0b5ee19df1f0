//! Personal data at rest about data subjects (consent evidence, a contact for denial notices),
//! encrypted with one key per subject so that erasure is crypto-shredding: destroying the key
//! makes every copy of the subject's records unreadable, backups included.
//!
//! A directory holds
//! * `subject-keys.json` (mode 0600, replaced atomically): one AES-256-GCM key per subject;
//! * `subject-data.jsonl`: one encrypted record per line, `{subject, nonce, sealed}`.
//!
//! Erasure removes the key and rewrites the data file without the subject's lines. A restore
//! of an old backup would bring the key back, so the caller keeps tombstones where a restore
//! does not reach (the audit log: `subject.erased` entries) and [`SubjectStore::open`]
//! destroys, again, every key that has one.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

const KEYS: &str = "subject-keys.json";
const DATA: &str = "subject-data.jsonl";

/// What is kept about a subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SubjectRecord {
    /// Consent given or withdrawn, as evidence.
    Consent {
        /// Venue.
        venue: String,
        /// Purpose.
        purpose: String,
        /// Privacy notice version shown and accepted.
        notice: u32,
        /// Given (true) or withdrawn (false).
        granted: bool,
        /// When, Unix seconds.
        at: i64,
    },
    /// Where the evidence of a consent given outside the portal is kept (a signed form at a
    /// registration desk: `passage enrol --consent-ref`), by the venue's own reference.
    ConsentForm {
        /// Venue.
        venue: String,
        /// The venue's reference of the signed form.
        reference: String,
        /// When it was recorded, Unix seconds.
        at: i64,
    },
    /// A ticket the visitor linked to their registration (the gate checks its conditions).
    Ticket {
        /// Venue.
        venue: String,
        /// The ticket identifier as printed in its QR code.
        ticket: String,
        /// When it was linked, Unix seconds.
        at: i64,
    },
    /// Where denial notices are sent (a phone push token, an e-mail address...).
    Contact {
        /// The contact.
        value: String,
        /// When it was given, Unix seconds.
        at: i64,
    },
}

#[derive(Serialize, Deserialize)]
struct Line {
    subject: String,
    nonce: String,
    sealed: String,
}

/// A failure of the subject store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubjectError {
    /// A file could not be read or written.
    #[error("subject store {path}: cannot {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file is malformed.
    #[error("subject store {0}: malformed")]
    Malformed(PathBuf),
    /// Encryption or decryption failed (a damaged record).
    #[error("a record of the subject could not be decrypted")]
    Crypto,
    /// The subject was erased (its key is gone).
    #[error("no data: the subject was erased or never stored")]
    NoKey,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SubjectError + 'a {
    move |source| SubjectError::Io { op, path: path.to_owned(), source }
}

/// What a retention sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retained {
    /// Records removed from the data file.
    pub records_removed: usize,
    /// Subjects whose key was destroyed (nothing left to keep).
    pub subjects_shredded: usize,
}

/// The store of one service.
pub struct SubjectStore {
    dir: PathBuf,
    keys: BTreeMap<String, Zeroizing<String>>,
    random: SystemRandom,
}

impl std::fmt::Debug for SubjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectStore").field("dir", &self.dir).field("subjects", &self.keys.len()).finish()
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SubjectError> {
    crate::atomic_file::write_private(path, bytes).map_err(io("replace", path))
}

impl SubjectStore {
    /// Opens (or creates) the store in `dir`, destroying the key of every subject for which
    /// `erased` holds (tombstones kept outside the store); returns the store and how many keys
    /// it destroyed that way.
    ///
    /// # Errors
    /// I/O errors or a malformed key file.
    pub fn open(dir: &Path, erased: impl Fn(&str) -> bool) -> Result<(SubjectStore, usize), SubjectError> {
        fs::create_dir_all(dir).map_err(io("create", dir))?;
        let path = dir.join(KEYS);
        let keys: BTreeMap<String, Zeroizing<String>> = match fs::read(&path) {
            Ok(bytes) => {
                let plain: BTreeMap<String, String> =
                    serde_json::from_slice(&bytes).map_err(|_| SubjectError::Malformed(path.clone()))?;
                plain.into_iter().map(|(k, v)| (k, Zeroizing::new(v))).collect()
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(error) => return Err(io("read", &path)(error)),
        };
        let mut store = SubjectStore { dir: dir.to_owned(), keys, random: SystemRandom::new() };
        let stale: Vec<String> = store.keys.keys().filter(|s| erased(s)).cloned().collect();
        for subject in &stale {
            store.erase(subject)?;
        }
        Ok((store, stale.len()))
    }

    fn save_keys(&self) -> Result<(), SubjectError> {
        let plain: BTreeMap<&String, &str> = self.keys.iter().map(|(k, v)| (k, v.as_str())).collect();
        let bytes = Zeroizing::new(serde_json::to_vec(&plain).unwrap_or_default());
        write_atomic(&self.dir.join(KEYS), &bytes)
    }

    fn key(&self, subject: &str) -> Result<LessSafeKey, SubjectError> {
        let hex_key = self.keys.get(subject).ok_or(SubjectError::NoKey)?;
        let bytes = Zeroizing::new(hex::decode(hex_key.as_str()).map_err(|_| SubjectError::Crypto)?);
        let unbound = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| SubjectError::Crypto)?;
        Ok(LessSafeKey::new(unbound))
    }

    /// Appends `record` about `subject`, encrypted under its key (created on first use).
    ///
    /// # Errors
    /// I/O or randomness failures.
    pub fn put(&mut self, subject: &str, record: &SubjectRecord) -> Result<(), SubjectError> {
        if !self.keys.contains_key(subject) {
            let mut key = Zeroizing::new([0u8; 32]);
            self.random.fill(key.as_mut()).map_err(|_| SubjectError::Crypto)?;
            self.keys.insert(subject.to_owned(), Zeroizing::new(hex::encode(key.as_ref())));
            self.save_keys()?;
        }
        let key = self.key(subject)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).map_err(|_| SubjectError::Crypto)?;
        let mut sealed = Zeroizing::new(serde_json::to_vec(record).unwrap_or_default());
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(subject.as_bytes()), &mut *sealed)
            .map_err(|_| SubjectError::Crypto)?;
        let line = Line { subject: subject.to_owned(), nonce: hex::encode(nonce), sealed: hex::encode(&*sealed) };
        let mut text = serde_json::to_vec(&line).unwrap_or_default();
        text.push(b'\n');
        let path = self.dir.join(DATA);
        let mut file = OpenOptions::new().create(true).append(true).open(&path).map_err(io("open", &path))?;
        file.write_all(&text).map_err(io("append to", &path))?;
        file.sync_data().map_err(io("sync", &path))?;
        Ok(())
    }

    fn lines(&self) -> Result<Vec<Line>, SubjectError> {
        let path = self.dir.join(DATA);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(io("read", &path)(error)),
        };
        // A line torn by a crash is skipped: it was never acknowledged to anyone.
        Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
    }

    /// Everything kept about `subject`, decrypted, oldest first (the data-subject export).
    ///
    /// # Errors
    /// [`SubjectError::NoKey`] for an erased or unknown subject; a damaged record.
    pub fn export(&self, subject: &str) -> Result<Vec<SubjectRecord>, SubjectError> {
        let key = self.key(subject)?;
        let mut out = Vec::new();
        for line in self.lines()?.into_iter().filter(|l| l.subject == subject) {
            let nonce: [u8; NONCE_LEN] =
                hex::decode(&line.nonce).ok().and_then(|n| n.try_into().ok()).ok_or(SubjectError::Crypto)?;
            let mut sealed = Zeroizing::new(hex::decode(&line.sealed).map_err(|_| SubjectError::Crypto)?);
            let plain = key
                .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(subject.as_bytes()), &mut sealed)
                .map_err(|_| SubjectError::Crypto)?;
            out.push(serde_json::from_slice(plain).map_err(|_| SubjectError::Crypto)?);
        }
        Ok(out)
    }

    /// Erases `subject`: destroys its key (every copy of its records becomes unreadable) and
    /// rewrites the data file without its lines. Returns the number of records removed.
    ///
    /// # Errors
    /// I/O errors (the key is destroyed first, so a failure later still leaves nothing
    /// readable).
    pub fn erase(&mut self, subject: &str) -> Result<usize, SubjectError> {
        self.keys.remove(subject);
        self.save_keys()?;
        let lines = self.lines()?;
        let before = lines.len();
        let kept: Vec<Line> = lines.into_iter().filter(|l| l.subject != subject).collect();
        let removed = before - kept.len();
        if removed > 0 {
            let mut text = Vec::new();
            for line in &kept {
                text.extend(serde_json::to_vec(line).unwrap_or_default());
                text.push(b'\n');
            }
            write_atomic(&self.dir.join(DATA), &text)?;
        }
        Ok(removed)
    }

    /// Applies retention: `keep` gets each subject's records (oldest first) and says which
    /// are still within retention. Expired records are removed from the data file (rewritten
    /// atomically); a subject left with none loses its key (crypto-shredding), and lines
    /// whose key is already gone are dropped.
    ///
    /// # Errors
    /// I/O errors; a damaged record (nothing is changed then).
    pub fn retain(&mut self, keep: impl Fn(&str, &[SubjectRecord]) -> Vec<bool>) -> Result<Retained, SubjectError> {
        let lines = self.lines()?;
        let mut by_subject: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, line) in lines.iter().enumerate() {
            by_subject.entry(line.subject.as_str()).or_default().push(i);
        }
        let mut kept = vec![false; lines.len()];
        let mut shred = Vec::new();
        for (subject, indices) in &by_subject {
            if !self.keys.contains_key(*subject) {
                continue;
            }
            let records = self.export(subject)?;
            let flags = keep(subject, &records);
            let mut any = false;
            for (n, &i) in indices.iter().enumerate() {
                let k = flags.get(n).copied().unwrap_or(true);
                kept[i] = k;
                any |= k;
            }
            if !any {
                shred.push((*subject).to_owned());
            }
        }
        // Keys without any line (never used, or every line already gone) are shredded too.
        for subject in self.keys.keys() {
            if !by_subject.contains_key(subject.as_str()) {
                shred.push(subject.clone());
            }
        }
        let removed = kept.iter().filter(|k| !**k).count();
        for subject in &shred {
            self.keys.remove(subject);
        }
        if !shred.is_empty() {
            self.save_keys()?;
        }
        if removed > 0 {
            let mut text = Vec::new();
            for (line, _) in lines.iter().zip(&kept).filter(|(_, k)| **k) {
                text.extend(serde_json::to_vec(line).unwrap_or_default());
                text.push(b'\n');
            }
            write_atomic(&self.dir.join(DATA), &text)?;
        }
        Ok(Retained { records_removed: removed, subjects_shredded: shred.len() })
    }

    /// Subjects with a key.
    pub fn subjects(&self) -> usize {
        self.keys.len()
    }

    /// The pseudonyms of the subjects with a key.
    pub fn subject_ids(&self) -> Vec<String> {
        self.keys.keys().cloned().collect()
    }

    /// Whether a key exists for `subject`.
    pub fn knows(&self, subject: &str) -> bool {
        self.keys.contains_key(subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy_dir(from: &Path, to: &Path) {
        fs::create_dir_all(to).expect("mkdir");
        for entry in fs::read_dir(from).expect("read dir") {
            let entry = entry.expect("entry");
            fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }

    fn all_bytes(dir: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).expect("read dir") {
            out.extend(fs::read(entry.expect("entry").path()).expect("read"));
        }
        out
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn records_are_encrypted_exported_and_erasure_shreds_them_even_in_a_restored_backup() {
        let dir = tempfile::tempdir().expect("tempdir");
        let live = dir.path().join("live");
        let contact = "+49 170 5550123";
        let (mut store, _) = SubjectStore::open(&live, |_| false).expect("open");
        let consent = SubjectRecord::Consent {
            venue: "arena".into(),
            purpose: "face-access".into(),
            notice: 2,
            granted: true,
            at: 5,
        };
        store.put("subj-0001", &consent).expect("put");
        store.put("subj-0001", &SubjectRecord::Contact { value: contact.into(), at: 6 }).expect("put");
        store.put("subj-0002", &SubjectRecord::Contact { value: "+49 170 5550999".into(), at: 7 }).expect("put");
        assert!(!contains(&all_bytes(&live), contact.as_bytes()), "nothing in the clear at rest");
        assert!(!contains(&all_bytes(&live), b"face-access"));
        assert_eq!(store.export("subj-0001").expect("export").len(), 2);

        let backup = dir.path().join("backup");
        copy_dir(&live, &backup);

        assert_eq!(store.erase("subj-0001").expect("erase"), 2);
        assert!(matches!(store.export("subj-0001"), Err(SubjectError::NoKey)));
        assert_eq!(store.export("subj-0002").expect("others keep theirs").len(), 1);
        assert!(!contains(&all_bytes(&live), b"subj-0001"), "no line and no key of the erased subject remains");

        // The backup still has the key; reopening it against the tombstones destroys it again.
        let (restored, shredded) = SubjectStore::open(&backup, |s| s == "subj-0001").expect("open backup");
        assert_eq!(shredded, 1);
        assert!(!restored.knows("subj-0001"));
        assert!(matches!(restored.export("subj-0001"), Err(SubjectError::NoKey)));
        assert!(!contains(&all_bytes(&backup), b"subj-0001"));
        assert_eq!(restored.export("subj-0002").expect("intact").len(), 1);
    }

    #[test]
    fn a_damaged_record_or_key_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut store, _) = SubjectStore::open(dir.path(), |_| false).expect("open");
        store.put("s", &SubjectRecord::Contact { value: "x@example.org".into(), at: 1 }).expect("put");
        let path = dir.path().join(DATA);
        let text = fs::read_to_string(&path).expect("read");
        let flipped = text.replacen("\"sealed\":\"", "\"sealed\":\"00", 1);
        fs::write(&path, flipped).expect("write");
        assert!(matches!(store.export("s"), Err(SubjectError::Crypto)));
        fs::write(dir.path().join(KEYS), "{not json").expect("write");
        assert!(matches!(SubjectStore::open(dir.path(), |_| false), Err(SubjectError::Malformed(_))));
    }

    #[test]
    fn retention_removes_expired_records_and_shreds_subjects_left_with_none() {
        use crate::retention::{keep, SubjectRules};
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut store, _) = SubjectStore::open(dir.path(), |_| false).expect("open");
        let consent = |granted, at| SubjectRecord::Consent {
            venue: "arena".into(),
            purpose: "face-access".into(),
            notice: 1,
            granted,
            at,
        };
        store.put("gone", &consent(true, 0)).expect("put");
        store.put("gone", &SubjectRecord::Contact { value: "push:gone-device".into(), at: 0 }).expect("put");
        store.put("gone", &consent(false, 100)).expect("put");
        store.put("stays", &consent(true, 0)).expect("put");
        store.put("stays", &SubjectRecord::Contact { value: "push:stays-device".into(), at: 0 }).expect("put");
        let rules = SubjectRules { consent_evidence_secs: 1000, notice_secs: 10 };
        let sweep = |store: &mut SubjectStore, now| {
            store.retain(|_, records| keep(records, now, |_| Some(rules), rules)).expect("retain")
        };
        assert_eq!(sweep(&mut store, 105), Retained::default(), "nothing expired yet");
        assert_eq!(sweep(&mut store, 200), Retained { records_removed: 1, subjects_shredded: 0 }, "the contact went");
        assert_eq!(store.export("gone").expect("evidence kept").len(), 2);
        assert_eq!(sweep(&mut store, 1100), Retained { records_removed: 2, subjects_shredded: 1 });
        assert!(matches!(store.export("gone"), Err(SubjectError::NoKey)));
        assert_eq!(store.export("stays").expect("active consent").len(), 2);
        assert_eq!(store.subjects(), 1);
    }
}
