//! Store-and-forward of a venue's noised count records: the spool file.
//!
//! Every noised [`CountRecord`] the releaser produces is appended here (write + fsync) before
//! anything tries to publish it, and stays until analytics acknowledges it
//! ([`passage_wire::CountAck`]). A broker outage, an analytics restart or an edge restart
//! therefore loses nothing: [`forward`] publishes the spooled records in order and publishes
//! again whatever is not acknowledged in time; analytics stores each record id once, so
//! at-least-once delivery plus an idempotent receiver is exactly-once in its database.
//!
//! Only noised records are ever written: the spool accepts nothing but a [`CountRecord`]
//! (which the releaser builds after adding noise), and merging (below) only adds noised
//! figures together.
//!
//! # File format
//!
//! One append-only file, `counts.spool`, in the venue's spool directory; one line per entry:
//!
//! ```text
//! R {CountRecord JSON}        a record, in release order
//! S {id} {id} ...             these records were handed to the MQTT client (fsync first)
//! A {id} {id} ...             these records were acknowledged (or refused) by analytics
//! ```
//!
//! Every line ends with `\n`; a last line without one is the torn tail of an append a crash
//! interrupted, and is dropped on load with a warning (the records before it are kept). A
//! line that does not parse is skipped with an error log. The file is rewritten atomically
//! (temporary file, fsync, rename; [`passage_policy::atomic_file`]) without its dead lines when they
//! outweigh the live ones, and after a load that found damage.
//!
//! # Size bound
//!
//! The file never grows past the configured bound. An append that would cross it first
//! compacts; if that is not enough, the oldest *never-published* records are merged, two
//! adjacent intervals of one camera at a time, into coarser records until the spool is down
//! to seven eighths of its bound (so that not every later append rewrites the file); see
//! [`merge`] for the arithmetic. Only a record never handed to the MQTT client may be merged:
//! a published one may already sit in analytics' database, and a merged record carrying its
//! figures again would count them twice. When nothing can be merged any more, the oldest
//! records are dropped, with an error log. Log lines carry the venue and sizes, never a
//! count value.

pub mod forward;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use passage_wire::{CountItem, CountRecord, DecodeError, Id, Metric};

/// The spool file's name inside a venue's spool directory.
pub const SPOOL_FILE: &str = "counts.spool";
/// Record ids per `S` or `A` line.
const IDS_PER_LINE: usize = 512;
/// Dead bytes (acknowledged records, superseded marks) that must accumulate, and outweigh
/// the live ones, before the file is compacted.
const COMPACT_MIN_DEAD_BYTES: u64 = 64 * 1024;
/// Seconds in a day: a record never spans two UTC days (totals restart at midnight).
const DAY_SECS: i64 = 86_400;

/// Why the spool could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// A file operation failed.
    #[error("spool {path}: cannot {action}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The record belongs to another venue's spool.
    #[error("a count record of venue {found} was offered to the spool of venue {expected}")]
    WrongVenue {
        /// This spool's venue.
        expected: Id,
        /// The record's venue.
        found: Id,
    },
    /// The record would not pass the wire decoder (so it could never be delivered).
    #[error("count record refused by the spool: {0}")]
    Invalid(#[source] DecodeError),
    /// A record with this id is already spooled.
    #[error("a count record with this id is already spooled")]
    DuplicateId,
    /// One record is larger than the whole spool.
    #[error("a count record of {len} bytes does not fit a spool of {max_bytes} bytes")]
    TooLarge {
        /// Bytes the record takes in the file.
        len: u64,
        /// The spool's bound.
        max_bytes: u64,
    },
}

/// What [`Spool::open`] found in the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Records waiting for acknowledgement.
    pub records: usize,
    /// Of those, records handed to the MQTT client before (they may already be delivered).
    pub published: usize,
    /// Bytes of a torn last line (a crash while appending), dropped.
    pub torn_tail_bytes: u64,
    /// Complete lines that did not parse (or named another venue), skipped.
    pub corrupt_lines: usize,
}

/// What one [`Spool::append`] had to do to stay within the bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Merges of two adjacent records into one (each leaves one record fewer).
    pub merged: u64,
    /// Oldest records dropped because nothing more could be merged.
    pub dropped: u64,
}

/// One spooled record, as the forwarder sees it.
#[derive(Debug, Clone, Copy)]
pub struct Spooled<'a> {
    /// The record id.
    pub id: &'a str,
    /// The camera (the record is published on its count topic).
    pub camera: &'a Id,
    /// The encoded record, exactly as it is published.
    pub payload: &'a Bytes,
    /// Whether it was ever handed to the MQTT client.
    pub published: bool,
}

struct Entry {
    id: String,
    camera: Id,
    /// The encoded `CountRecord` (the `R` line without its tag and newline).
    payload: Bytes,
    published: bool,
}

impl Entry {
    fn line_len(&self) -> u64 {
        self.payload.len() as u64 + 3
    }
}

/// The spool of one venue: the file and its live records in release order. All methods block
/// on file I/O; async callers run them on a blocking thread ([`forward`] does).
pub struct Spool {
    venue: Id,
    path: PathBuf,
    file: File,
    max_bytes: u64,
    /// Length of the file.
    file_bytes: u64,
    /// Live records by sequence number (release order).
    entries: BTreeMap<u64, Entry>,
    by_id: HashMap<String, u64>,
    next_seq: u64,
    /// Bytes of the live `R` lines.
    live_record_bytes: u64,
    /// `S`-line bytes the live published records need: one space and the id each.
    published_id_bytes: u64,
    n_published: usize,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("venue", &self.venue)
            .field("path", &self.path)
            .field("records", &self.entries.len())
            .field("file_bytes", &self.file_bytes)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io { action, path: path.to_owned(), source }
}

/// A record id as the wire accepts it (1-64 printable ASCII, no spaces): the `S` and `A`
/// lines separate ids by spaces.
fn is_record_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// One parsed line of the file.
enum Line<'a> {
    Record(CountRecord, &'a [u8]),
    Published(Vec<&'a str>),
    Acknowledged(Vec<&'a str>),
}

fn parse_line(line: &[u8]) -> Option<Line<'_>> {
    let (tag, rest) = match line {
        [tag, b' ', rest @ ..] => (*tag, rest),
        _ => return None,
    };
    match tag {
        b'R' => CountRecord::decode(rest).ok().map(|record| Line::Record(record, rest)),
        b'S' => parse_ids(rest).map(Line::Published),
        b'A' => parse_ids(rest).map(Line::Acknowledged),
        _ => None,
    }
}

/// The space-separated record ids of an `S` or `A` line.
fn parse_ids(rest: &[u8]) -> Option<Vec<&str>> {
    let text = std::str::from_utf8(rest).ok()?;
    let ids: Vec<&str> = text.split(' ').collect();
    ids.iter().all(|id| is_record_id(id)).then_some(ids)
}

fn id_lines(tag: u8, ids: &[&str], out: &mut Vec<u8>) {
    for chunk in ids.chunks(IDS_PER_LINE) {
        out.push(tag);
        for id in chunk {
            out.push(b' ');
            out.extend_from_slice(id.as_bytes());
        }
        out.push(b'\n');
    }
}

impl Spool {
    /// Opens the spool of `venue` in `dir` (created when absent), bounded to `max_bytes`, and
    /// loads what an earlier run left: the records not yet acknowledged, in order, with their
    /// published marks. A torn last line is dropped with a warning, a corrupt line skipped with
    /// an error log; either way the file is then rewritten clean.
    ///
    /// # Errors
    /// [`SpoolError::Io`] when the directory or file cannot be created, read or rewritten.
    pub fn open(venue: &Id, dir: &Path, max_bytes: u64) -> Result<(Spool, LoadReport), SpoolError> {
        fs::create_dir_all(dir).map_err(io_error("create the directory", dir))?;
        let path = dir.join(SPOOL_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(SpoolError::Io { action: "read", path, source }),
        };
        let mut report = LoadReport::default();
        let mut entries = BTreeMap::new();
        let mut by_id = HashMap::new();
        let mut next_seq = 0u64;
        // Every complete line ends with '\n'; what follows the last '\n' is a torn append.
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |last| last + 1);
        report.torn_tail_bytes = (bytes.len() - complete) as u64;
        for (number, line) in bytes[..complete].split_inclusive(|b| *b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            match parse_line(line) {
                Some(Line::Record(record, payload)) if record.venue == *venue => {
                    if by_id.contains_key(&record.id) {
                        tracing::error!(venue = %venue, line = number + 1, "spool line repeats a record id; skipped");
                        report.corrupt_lines += 1;
                        continue;
                    }
                    by_id.insert(record.id.clone(), next_seq);
                    entries.insert(
                        next_seq,
                        Entry {
                            id: record.id,
                            camera: record.camera,
                            payload: Bytes::copy_from_slice(payload),
                            published: false,
                        },
                    );
                    next_seq += 1;
                }
                Some(Line::Record(..)) => {
                    tracing::error!(venue = %venue, line = number + 1, "spool line holds another venue's record; skipped");
                    report.corrupt_lines += 1;
                }
                Some(Line::Published(ids)) => {
                    for id in ids {
                        if let Some(entry) = by_id.get(id).and_then(|seq| entries.get_mut(seq)) {
                            entry.published = true;
                        }
                    }
                }
                Some(Line::Acknowledged(ids)) => {
                    for id in ids {
                        if let Some(seq) = by_id.remove(id) {
                            entries.remove(&seq);
                        }
                    }
                }
                None => {
                    tracing::error!(
                        venue = %venue,
                        path = %path.display(),
                        line = number + 1,
                        line_bytes = line.len(),
                        "corrupt spool line skipped"
                    );
                    report.corrupt_lines += 1;
                }
            }
        }
        if report.torn_tail_bytes > 0 {
            tracing::warn!(
                venue = %venue,
                path = %path.display(),
                torn_bytes = report.torn_tail_bytes,
                "the spool ends with a torn line (a crash while appending): dropped it, kept the records before it"
            );
        }
        let file = open_append(&path)?;
        let mut spool = Spool {
            venue: venue.clone(),
            path,
            file,
            max_bytes,
            file_bytes: bytes.len() as u64,
            entries,
            by_id,
            next_seq,
            live_record_bytes: 0,
            published_id_bytes: 0,
            n_published: 0,
        };
        spool.recount();
        report.records = spool.entries.len();
        report.published = spool.n_published;
        if report.torn_tail_bytes > 0 || report.corrupt_lines > 0 || spool.should_compact() {
            spool.rewrite()?;
        }
        Ok((spool, report))
    }

    /// The venue this spool belongs to.
    pub fn venue(&self) -> &Id {
        &self.venue
    }

    /// Records waiting for acknowledgement.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no record is waiting.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Current length of the spool file.
    pub fn file_bytes(&self) -> u64 {
        self.file_bytes
    }

    /// The bound on [`Spool::file_bytes`].
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Whether a record with this id is waiting.
    pub fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// The waiting records, oldest first (so per camera in release order).
    pub fn records(&self) -> impl Iterator<Item = Spooled<'_>> {
        self.entries.values().map(|entry| Spooled {
            id: &entry.id,
            camera: &entry.camera,
            payload: &entry.payload,
            published: entry.published,
        })
    }

    /// Appends `record` durably (write, then fsync) and returns once it is on disk. When the
    /// file would cross its bound, it first compacts, then merges the oldest unpublished
    /// records, then (only if nothing can be merged) drops the oldest ones; see the module
    /// documentation.
    ///
    /// # Errors
    /// [`SpoolError::WrongVenue`], [`SpoolError::Invalid`], [`SpoolError::DuplicateId`] and
    /// [`SpoolError::TooLarge`] for a record that cannot be spooled (nothing is written);
    /// [`SpoolError::Io`] when the file cannot be written (the file is left as it was).
    pub fn append(&mut self, record: &CountRecord) -> Result<AppendOutcome, SpoolError> {
        if record.venue != self.venue {
            return Err(SpoolError::WrongVenue { expected: self.venue.clone(), found: record.venue.clone() });
        }
        let payload = record.encode();
        // Spool only what the loader (and analytics) will accept back.
        CountRecord::decode(&payload).map_err(SpoolError::Invalid)?;
        if self.by_id.contains_key(&record.id) {
            return Err(SpoolError::DuplicateId);
        }
        let entry = Entry {
            id: record.id.clone(),
            camera: record.camera.clone(),
            payload: Bytes::from(payload),
            published: false,
        };
        let needed = entry.line_len();
        if needed > self.max_bytes {
            return Err(SpoolError::TooLarge { len: needed, max_bytes: self.max_bytes });
        }
        let outcome =
            if self.file_bytes + needed > self.max_bytes { self.make_room(needed)? } else { AppendOutcome::default() };
        let mut line = Vec::with_capacity(needed as usize);
        line.extend_from_slice(b"R ");
        line.extend_from_slice(&entry.payload);
        line.push(b'\n');
        self.write_line(&line, true)?;
        self.insert(entry);
        Ok(outcome)
    }

    /// Marks the records `ids` as handed to the MQTT client, durably (fsync), so that they
    /// are never merged, even after a restart. Call it *before* handing them over. Unknown and
    /// already marked ids are ignored.
    ///
    /// # Errors
    /// [`SpoolError::Io`]; the records are then not marked and must not be published.
    pub fn mark_published(&mut self, ids: &[&str]) -> Result<(), SpoolError> {
        let fresh: Vec<&str> = ids
            .iter()
            .copied()
            .filter(|id| self.by_id.get(*id).and_then(|seq| self.entries.get(seq)).is_some_and(|e| !e.published))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let mut lines = Vec::new();
        id_lines(b'S', &fresh, &mut lines);
        self.write_line(&lines, true)?;
        for id in fresh {
            if let Some(entry) = self.by_id.get(id).and_then(|seq| self.entries.get_mut(seq)) {
                entry.published = true;
                self.n_published += 1;
                self.published_id_bytes += 1 + entry.id.len() as u64;
            }
        }
        Ok(())
    }

    /// Removes the records `ids` (acknowledged, or refused for good, by analytics) and
    /// returns how many were waiting. The removal is written without fsync: after a crash
    /// the worst case is that a record is published again, which analytics absorbs. Compacts
    /// the file when its dead lines outweigh the live ones.
    ///
    /// # Errors
    /// [`SpoolError::Io`] when the file cannot be written; the records are removed in memory
    /// regardless (they are delivered).
    pub fn acknowledge(&mut self, ids: &[String]) -> Result<usize, SpoolError> {
        let mut removed: Vec<&str> = Vec::new();
        for id in ids {
            if let Some(seq) = self.by_id.remove(id.as_str()) {
                if let Some(entry) = self.entries.remove(&seq) {
                    self.forget(&entry);
                    removed.push(id.as_str());
                }
            }
        }
        if removed.is_empty() {
            return Ok(0);
        }
        let n_removed = removed.len();
        let mut lines = Vec::new();
        id_lines(b'A', &removed, &mut lines);
        self.write_line(&lines, false)?;
        if self.should_compact() {
            self.rewrite()?;
        }
        Ok(n_removed)
    }

    /// Bytes the file would have if rewritten now: live records and their published marks.
    fn compacted_bytes(&self) -> u64 {
        let mark_lines = self.n_published.div_ceil(IDS_PER_LINE) as u64;
        self.live_record_bytes + self.published_id_bytes + 2 * mark_lines
    }

    fn should_compact(&self) -> bool {
        let dead = self.file_bytes.saturating_sub(self.compacted_bytes());
        dead >= COMPACT_MIN_DEAD_BYTES && dead >= self.compacted_bytes()
    }

    fn insert(&mut self, entry: Entry) {
        self.live_record_bytes += entry.line_len();
        if entry.published {
            self.n_published += 1;
            self.published_id_bytes += 1 + entry.id.len() as u64;
        }
        self.by_id.insert(entry.id.clone(), self.next_seq);
        self.entries.insert(self.next_seq, entry);
        self.next_seq += 1;
    }

    fn forget(&mut self, entry: &Entry) {
        self.live_record_bytes -= entry.line_len();
        if entry.published {
            self.n_published -= 1;
            self.published_id_bytes -= 1 + entry.id.len() as u64;
        }
    }

    /// Recomputes the derived sizes and the id index from `entries`.
    fn recount(&mut self) {
        self.live_record_bytes = self.entries.values().map(Entry::line_len).sum();
        self.n_published = self.entries.values().filter(|e| e.published).count();
        self.published_id_bytes = self.entries.values().filter(|e| e.published).map(|e| 1 + e.id.len() as u64).sum();
        self.by_id = self.entries.iter().map(|(seq, e)| (e.id.clone(), *seq)).collect();
    }

    /// Appends `bytes` (whole lines); on failure cuts the file back to its last good length so
    /// that no partial line is left for the next append to run into.
    fn write_line(&mut self, bytes: &[u8], sync: bool) -> Result<(), SpoolError> {
        let written = self.file.write_all(bytes).and_then(|()| if sync { self.file.sync_data() } else { Ok(()) });
        if let Err(source) = written {
            let _ = self.file.set_len(self.file_bytes);
            return Err(SpoolError::Io { action: "append to", path: self.path.clone(), source });
        }
        self.file_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Rewrites the file atomically with only the live records and their published marks.
    fn rewrite(&mut self) -> Result<(), SpoolError> {
        let mut out = Vec::with_capacity(self.compacted_bytes() as usize);
        for entry in self.entries.values() {
            out.extend_from_slice(b"R ");
            out.extend_from_slice(&entry.payload);
            out.push(b'\n');
        }
        let published: Vec<&str> = self.entries.values().filter(|e| e.published).map(|e| e.id.as_str()).collect();
        id_lines(b'S', &published, &mut out);
        passage_policy::atomic_file::write(&self.path, &out, passage_policy::atomic_file::Access::Private)
            .map_err(|error| SpoolError::Io { action: error.op, path: error.path, source: error.source })?;
        self.file = open_append(&self.path)?;
        self.file_bytes = out.len() as u64;
        Ok(())
    }

    /// Makes room for a line of `needed` bytes: compaction, then merging down to seven eighths
    /// of the bound, then dropping the oldest records; rewrites the file once.
    fn make_room(&mut self, needed: u64) -> Result<AppendOutcome, SpoolError> {
        let mut outcome = AppendOutcome::default();
        if self.compacted_bytes() + needed <= self.max_bytes {
            self.rewrite()?;
            return Ok(outcome);
        }
        let low_water = self.max_bytes - self.max_bytes / 8;
        let goal = if needed <= low_water { low_water } else { self.max_bytes };
        outcome.merged = self.merge_oldest(needed, goal);
        if outcome.merged > 0 {
            tracing::warn!(
                venue = %self.venue,
                records_merged = outcome.merged,
                spool_bytes = self.compacted_bytes(),
                max_bytes = self.max_bytes,
                "spool full (broker or analytics unreachable for long): merged the oldest unpublished count \
                 records into coarser intervals; totals are kept, time resolution is lost"
            );
        }
        // Drop only when the record would not fit at all; then drop down to the low-water mark
        // too, so that an outage that goes on does not rewrite the file on every append.
        let drop_goal = if self.compacted_bytes() + needed > self.max_bytes { goal } else { self.max_bytes };
        while self.compacted_bytes() + needed > drop_goal {
            let Some((_, entry)) = self.entries.pop_first() else { break };
            self.by_id.remove(&entry.id);
            self.forget(&entry);
            outcome.dropped += 1;
        }
        if outcome.dropped > 0 {
            tracing::error!(
                venue = %self.venue,
                records_dropped = outcome.dropped,
                spool_bytes = self.compacted_bytes(),
                max_bytes = self.max_bytes,
                "spool full and nothing left to merge: DROPPED the oldest count records; raise \
                 spool.max_bytes_per_venue or restore the broker and analytics"
            );
        }
        self.rewrite()?;
        Ok(outcome)
    }

    /// Merges the oldest pairs of adjacent unpublished records of one camera until the
    /// compacted file plus `needed` fits `goal`, or nothing more can be merged. Returns the
    /// number of merges.
    fn merge_oldest(&mut self, needed: u64, goal: u64) -> u64 {
        let mut order: Vec<Option<Entry>> = std::mem::take(&mut self.entries).into_values().map(Some).collect();
        // next[i]: the index of the next record of the same camera after i.
        let mut next = vec![usize::MAX; order.len()];
        let mut later: HashMap<Id, usize> = HashMap::new();
        for (i, entry) in order.iter().enumerate().rev() {
            if let Some(entry) = entry {
                if let Some(j) = later.insert(entry.camera.clone(), i) {
                    next[i] = j;
                }
            }
        }
        let mut size = self.compacted_bytes();
        let mut merges = 0;
        let mut i = 0;
        // Walk from the oldest record; a pair that cannot be merged now never can later in
        // this pass (nothing before the cursor changes), so the cursor only moves forward.
        while i < order.len() && size + needed > goal {
            let j = next[i];
            let merged = match (order.get(i).and_then(Option::as_ref), order.get(j).and_then(Option::as_ref)) {
                (Some(a), Some(b)) if !a.published && !b.published => merge_entries(a, b),
                _ => None,
            };
            match merged {
                Some(entry) => {
                    let old =
                        order[i].as_ref().map_or(0, Entry::line_len) + order[j].as_ref().map_or(0, Entry::line_len);
                    size = (size + entry.line_len()).saturating_sub(old);
                    order[i] = Some(entry);
                    order[j] = None;
                    next[i] = next[j];
                    merges += 1;
                }
                None => i += 1,
            }
        }
        self.entries = BTreeMap::new();
        self.next_seq = 0;
        for entry in order.into_iter().flatten() {
            self.entries.insert(self.next_seq, entry);
            self.next_seq += 1;
        }
        self.recount();
        merges
    }
}

fn open_append(path: &Path) -> Result<File, SpoolError> {
    let existed = path.exists();
    let file = OpenOptions::new().create(true).append(true).open(path).map_err(io_error("open", path))?;
    if !existed {
        // A new directory entry is durable only once the directory is synced.
        if let Some(dir) = path.parent() {
            if let Ok(dir) = File::open(dir) {
                let _ = dir.sync_all();
            }
        }
    }
    Ok(file)
}

fn merge_entries(a: &Entry, b: &Entry) -> Option<Entry> {
    let first = CountRecord::decode(&a.payload).ok()?;
    let second = CountRecord::decode(&b.payload).ok()?;
    let merged = merge(&first, &second)?;
    let payload = merged.encode();
    CountRecord::decode(&payload).ok()?;
    Some(Entry { id: merged.id, camera: merged.camera, payload: Bytes::from(payload), published: false })
}

/// Merges two consecutive records of one camera into one coarser record, or `None` when they
/// cannot be merged: another camera, venue, mechanism or budget, a gap between them, a
/// different set of figures, or an interval that would cross midnight UTC (running totals
/// restart there) or exceed a day.
///
/// The merged record starts at `first.start` and lasts `first.secs + second.secs`; its id is
/// derived from both ids (fresh: never seen by analytics); its `epsilon` is unchanged (adding
/// released figures is post-processing and costs no budget). Per figure:
///
/// * `crossings` and `transition` (changes over the interval): the values add up, so the
///   merged figures still add up to the day's noisy total; the noise standard deviation is
///   `sqrt(σ₁² + σ₂²)`. That is exact (and, if anything, conservative) for independent
///   per-interval noise, and an approximation for the continual-release mechanisms, whose
///   interval noises are correlated (the figures are differences of noised running totals).
///   Analytics already sums interval figures the same way in its reports.
/// * `total` and `occupancy` (levels at the end of the interval): the later record's value
///   and standard deviation.
pub fn merge(first: &CountRecord, second: &CountRecord) -> Option<CountRecord> {
    let same_stream = first.v == second.v
        && first.venue == second.venue
        && first.camera == second.camera
        && first.mechanism == second.mechanism
        && first.epsilon.to_bits() == second.epsilon.to_bits();
    let end = second.start.checked_add(i64::from(second.secs))?;
    let contiguous = first.start.checked_add(i64::from(first.secs)) == Some(second.start);
    let same_day = first.start.div_euclid(DAY_SECS) == (end - 1).div_euclid(DAY_SECS);
    if !(same_stream && contiguous && same_day) || first.items.len() != second.items.len() {
        return None;
    }
    let secs = first.secs.checked_add(second.secs)?;
    let mut items = Vec::with_capacity(first.items.len());
    for (position, earlier) in first.items.iter().enumerate() {
        let later = match second.items.get(position) {
            Some(item) if item.metric == earlier.metric => item,
            _ => second.items.iter().find(|item| item.metric == earlier.metric)?,
        };
        let item = match earlier.metric {
            Metric::Crossings { .. }
            | Metric::Transition { .. }
            | Metric::Dwell { .. }
            | Metric::Entries { .. }
            | Metric::Exits { .. } => CountItem {
                metric: earlier.metric.clone(),
                value: earlier.value.saturating_add(later.value),
                std: earlier.std.hypot(later.std),
            },
            Metric::Total { .. } | Metric::Occupancy { .. } => later.clone(),
        };
        if !item.std.is_finite() {
            return None;
        }
        items.push(item);
    }
    Some(CountRecord {
        v: first.v,
        id: merged_id(&first.id, &second.id),
        venue: first.venue.clone(),
        camera: first.camera.clone(),
        start: first.start,
        secs,
        mechanism: first.mechanism,
        epsilon: first.epsilon,
        items,
    })
}

/// A fresh id for the merge of two records: 32 hex digits of SHA-256 over both ids, so the
/// same merge after a crash gives the same id, and no merged id equals a released one.
fn merged_id(first: &str, second: &str) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(b"passage-spool-merge\0");
    context.update(first.as_bytes());
    context.update(b"\0");
    context.update(second.as_bytes());
    let digest = context.finish();
    digest.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use passage_wire::{Direction, NoiseMechanism};

    fn id(s: &str) -> Id {
        Id::new(s).expect("valid id")
    }

    const DAY: i64 = 1_700_006_400; // a midnight UTC (19676 * 86400)

    /// A noised-looking record of `camera` for the interval starting at `start`.
    fn record(n: u32, camera: &str, start: i64, crossings: i64, total: i64) -> CountRecord {
        CountRecord {
            v: 1,
            id: format!("rec-{camera}-{n:05}"),
            venue: id("arena"),
            camera: id(camera),
            start,
            secs: 60,
            mechanism: NoiseMechanism::SqrtFactorization,
            epsilon: 1.0,
            items: vec![
                CountItem {
                    metric: Metric::Crossings { line: id("gate"), dir: Direction::In },
                    value: crossings,
                    std: 3.0,
                },
                CountItem { metric: Metric::Total { line: id("gate"), dir: Direction::In }, value: total, std: 5.0 },
                CountItem {
                    metric: Metric::Transition { from: id("hall"), to: id("stand") },
                    value: crossings - 1,
                    std: 4.0,
                },
            ],
        }
    }

    /// `n` consecutive minutes of `camera` from `DAY`, with running totals.
    fn minutes(camera: &str, n: u32) -> Vec<CountRecord> {
        let mut total = 0;
        (0..n)
            .map(|i| {
                let crossings = i64::from(i % 7) - 1; // noised figures may be negative
                total += crossings;
                record(i, camera, DAY + 60 * i64::from(i), crossings, total)
            })
            .collect()
    }

    fn open(dir: &Path, max_bytes: u64) -> (Spool, LoadReport) {
        Spool::open(&id("arena"), dir, max_bytes).expect("spool opens")
    }

    fn ids(spool: &Spool) -> Vec<String> {
        spool.records().map(|r| r.id.to_owned()).collect()
    }

    fn decoded(spool: &Spool) -> Vec<CountRecord> {
        spool.records().map(|r| CountRecord::decode(r.payload).expect("valid")).collect()
    }

    fn value(record: &CountRecord, pick: fn(&Metric) -> bool) -> i64 {
        record.items.iter().find(|item| pick(&item.metric)).map(|item| item.value).expect("figure present")
    }

    fn is_crossings(metric: &Metric) -> bool {
        matches!(metric, Metric::Crossings { .. })
    }

    fn is_total(metric: &Metric) -> bool {
        matches!(metric, Metric::Total { .. })
    }

    fn is_transition(metric: &Metric) -> bool {
        matches!(metric, Metric::Transition { .. })
    }

    #[test]
    fn spool_append_load_acknowledge_compact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let records = minutes("cam-1", 40);
        {
            let (mut spool, report) = open(dir.path(), 1 << 20);
            assert_eq!(report, LoadReport::default());
            for record in &records {
                assert_eq!(spool.append(record).expect("appended"), AppendOutcome::default());
            }
            spool.mark_published(&[records[0].id.as_str(), records[1].id.as_str(), "unknown"]).expect("marked");
            let acked = spool.acknowledge(&[records[0].id.clone(), "unknown".into()]).expect("acknowledged");
            assert_eq!(acked, 1);
            assert_eq!(spool.len(), 39);
        }
        // A restart finds the same records, in order, with their published marks.
        let (mut spool, report) = open(dir.path(), 1 << 20);
        assert_eq!(report, LoadReport { records: 39, published: 1, torn_tail_bytes: 0, corrupt_lines: 0 });
        assert_eq!(ids(&spool), records[1..].iter().map(|r| r.id.clone()).collect::<Vec<_>>());
        assert_eq!(decoded(&spool), records[1..].to_vec());
        assert!(spool.records().next().is_some_and(|r| r.published));
        assert!(spool.records().skip(1).all(|r| !r.published));

        // Acknowledging everything leaves dead lines only; once they are many, the file is
        // compacted to nothing.
        let before = spool.file_bytes();
        let all: Vec<String> = ids(&spool);
        assert_eq!(spool.acknowledge(&all).expect("acknowledged"), 39);
        assert!(spool.is_empty());
        assert!(spool.file_bytes() >= before, "small dead weight is not worth a rewrite yet");
        for record in minutes("cam-2", 300) {
            spool.append(&record).expect("appended");
        }
        let all: Vec<String> = ids(&spool);
        spool.acknowledge(&all).expect("acknowledged");
        assert_eq!(spool.file_bytes(), 0, "compacted once the dead lines outweigh the live ones");
        assert_eq!(fs::metadata(dir.path().join(SPOOL_FILE)).expect("file").len(), 0);
        let (spool, report) = open(dir.path(), 1 << 20);
        assert_eq!((spool.len(), report.records), (0, 0));
    }

    #[test]
    fn spool_refuses_what_it_must_not_hold() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut spool, _) = open(dir.path(), 1 << 20);
        let mut foreign = record(0, "cam-1", DAY, 1, 1);
        foreign.venue = id("mall");
        assert!(matches!(spool.append(&foreign), Err(SpoolError::WrongVenue { .. })));
        let mut invalid = record(0, "cam-1", DAY, 1, 1);
        invalid.secs = 0;
        assert!(matches!(spool.append(&invalid), Err(SpoolError::Invalid(_))));
        let good = record(0, "cam-1", DAY, 1, 1);
        spool.append(&good).expect("appended");
        assert!(matches!(spool.append(&good), Err(SpoolError::DuplicateId)));
        let (mut tiny, _) = open(&dir.path().join("tiny"), 100);
        assert!(matches!(tiny.append(&good), Err(SpoolError::TooLarge { .. })));
        assert_eq!(spool.len(), 1);
    }

    #[test]
    fn spool_torn_tail_is_dropped_and_good_records_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let records = minutes("cam-1", 5);
        {
            let (mut spool, _) = open(dir.path(), 1 << 20);
            for record in &records[..4] {
                spool.append(record).expect("appended");
            }
            spool.mark_published(&[records[0].id.as_str()]).expect("marked");
        }
        // A crash in the middle of appending the fifth record: half a line, no newline.
        let path = dir.path().join(SPOOL_FILE);
        let mut torn = b"R ".to_vec();
        let fifth = records[4].encode();
        torn.extend_from_slice(&fifth[..fifth.len() / 2]);
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(&torn).expect("write");
        drop(file);

        let (mut spool, report) = open(dir.path(), 1 << 20);
        assert_eq!(
            report,
            LoadReport { records: 4, published: 1, torn_tail_bytes: torn.len() as u64, corrupt_lines: 0 }
        );
        assert_eq!(decoded(&spool), records[..4].to_vec());
        // The file was rewritten clean, so the next append starts on a fresh line.
        spool.append(&records[4]).expect("appended");
        drop(spool);
        let (spool, report) = open(dir.path(), 1 << 20);
        assert_eq!((report.torn_tail_bytes, report.corrupt_lines), (0, 0));
        assert_eq!(decoded(&spool), records);
    }

    #[test]
    fn spool_corrupt_line_is_skipped_with_the_rest_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let records = minutes("cam-1", 3);
        let path = dir.path().join(SPOOL_FILE);
        let mut text = Vec::new();
        for (i, record) in records.iter().enumerate() {
            text.extend_from_slice(b"R ");
            text.extend_from_slice(&record.encode());
            text.push(b'\n');
            if i == 0 {
                text.extend_from_slice(b"R {\"v\":1,\"garbage\n\xff\xfe\nS bad id with \x01\n");
            }
        }
        fs::write(&path, &text).expect("write");
        let (spool, report) = open(dir.path(), 1 << 20);
        assert_eq!(report.corrupt_lines, 3);
        assert_eq!(decoded(&spool), records);
    }

    #[test]
    fn spool_merge_keeps_the_sum_of_interval_figures_and_the_last_total() {
        let records = minutes("cam-1", 3);
        let merged = merge(&records[0], &records[1]).expect("mergeable");
        let merged = merge(&merged, &records[2]).expect("mergeable");
        assert_eq!((merged.start, merged.secs), (DAY, 180));
        let sum = |pick: fn(&Metric) -> bool| records.iter().map(|r| value(r, pick)).sum::<i64>();
        assert_eq!(value(&merged, is_crossings), sum(is_crossings));
        assert_eq!(value(&merged, is_transition), sum(is_transition));
        assert_eq!(value(&merged, is_total), value(&records[2], is_total));
        // Interval noise: sqrt(3² + 3² + 3²) and sqrt(3 × 4²); the total's is the last one's.
        let stds: Vec<f64> = merged.items.iter().map(|item| item.std).collect();
        for (got, want) in stds.iter().zip([27.0f64.sqrt(), 5.0, 48.0f64.sqrt()]) {
            assert!((got - want).abs() < 1e-12, "{stds:?}");
        }
        assert_eq!(merged.epsilon, 1.0);
        assert!(records.iter().all(|r| r.id != merged.id));
        assert_eq!(CountRecord::decode(&merged.encode()), Ok(merged.clone()));

        // Not mergeable: a gap, another camera, across midnight, another budget.
        let mut gap = records[1].clone();
        gap.start += 60;
        assert_eq!(merge(&records[0], &gap), None);
        let other = record(1, "cam-2", DAY + 60, 1, 1);
        assert_eq!(merge(&records[0], &other), None);
        let before_midnight = record(0, "cam-1", DAY - 60, 1, 1);
        assert_eq!(merge(&before_midnight, &records[0]), None);
        let mut other_budget = records[1].clone();
        other_budget.epsilon = 2.0;
        assert_eq!(merge(&records[0], &other_budget), None);
        // A whole day merges into one record of 86400 s, and no further.
        let mut day = record(0, "cam-1", DAY, 1, 1);
        day.secs = 86_400 - 60;
        let last = record(1, "cam-1", DAY + 86_400 - 60, 1, 2);
        let whole = merge(&day, &last).expect("a full day");
        assert_eq!(whole.secs, 86_400);
        assert_eq!(merge(&whole, &record(2, "cam-1", DAY + 86_400, 1, 1)), None);
    }

    #[test]
    fn spool_size_bound_merges_the_oldest_unpublished_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let line = |r: &CountRecord| r.encode().len() as u64 + 3;
        let cam1 = minutes("cam-1", 60);
        let cam2 = minutes("cam-2", 60);
        // Interleaved like a venue's releases: per interval one record per camera.
        let released: Vec<CountRecord> = cam1.iter().zip(&cam2).flat_map(|(a, b)| [a.clone(), b.clone()]).collect();
        let max_bytes = line(&released[0]) * 40;
        let (mut spool, _) = open(dir.path(), max_bytes);
        // The first two are handed to the bus: they must survive unmerged.
        spool.append(&released[0]).expect("appended");
        spool.append(&released[1]).expect("appended");
        spool.mark_published(&[released[0].id.as_str(), released[1].id.as_str()]).expect("marked");
        let mut merged = 0;
        for record in &released[2..] {
            let outcome = spool.append(record).expect("appended");
            assert_eq!(outcome.dropped, 0);
            merged += outcome.merged;
            assert!(spool.file_bytes() <= max_bytes, "{} > {max_bytes}", spool.file_bytes());
        }
        assert!(merged > 0, "the bound forced merges");
        assert_eq!(spool.len(), released.len() - merged as usize);

        let held = decoded(&spool);
        // The published records are untouched, first in line.
        assert_eq!(held[..2].to_vec(), released[..2].to_vec());
        for camera in ["cam-1", "cam-2"] {
            let original: Vec<&CountRecord> = released.iter().filter(|r| r.camera.as_str() == camera).collect();
            let spooled: Vec<&CountRecord> = held.iter().filter(|r| r.camera.as_str() == camera).collect();
            // Still covering the same time, contiguously and in order.
            for pair in spooled.windows(2) {
                assert_eq!(pair[0].start + i64::from(pair[0].secs), pair[1].start);
            }
            let secs: u32 = spooled.iter().map(|r| r.secs).sum();
            assert_eq!(secs, 60 * 60);
            // Interval figures add up as before, and the last total is the same.
            for pick in [is_crossings as fn(&Metric) -> bool, is_transition] {
                let before: i64 = original.iter().map(|r| value(r, pick)).sum();
                let after: i64 = spooled.iter().map(|r| value(r, pick)).sum();
                assert_eq!(before, after, "{camera}");
            }
            let last = |rs: &[&CountRecord]| rs.last().map(|r| value(r, is_total));
            assert_eq!(last(&original), last(&spooled), "{camera}");
            assert!(spooled.iter().any(|r| r.secs > 60), "{camera} was coarsened");
        }
        // The merge survives a restart.
        drop(spool);
        let (spool, report) = open(dir.path(), max_bytes);
        assert_eq!(report.corrupt_lines, 0);
        assert_eq!(decoded(&spool), held);
        assert_eq!(report.published, 2);
    }

    #[test]
    fn spool_never_merges_a_published_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let records = minutes("cam-1", 50);
        let max_bytes = (records[0].encode().len() as u64 + 3) * 20;
        let (mut spool, _) = open(dir.path(), max_bytes);
        let mut dropped = 0;
        for record in &records {
            let outcome = spool.append(record).expect("appended");
            dropped += outcome.dropped;
            // Everything is handed to the bus at once: nothing may ever be merged.
            spool.mark_published(&[record.id.as_str()]).expect("marked");
            assert!(spool.file_bytes() <= max_bytes);
        }
        let held = decoded(&spool);
        assert!(held.iter().all(|r| r.secs == 60), "a published record was merged");
        assert!(dropped > 0, "with nothing mergeable, the oldest are dropped");
        // What is left are the newest records, unchanged, in order.
        assert_eq!(held, records[records.len() - held.len()..].to_vec());
    }

    #[test]
    fn spool_drops_the_oldest_when_nothing_can_be_merged() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Whole-day records of one camera: no two can be merged.
        let days: Vec<CountRecord> = (0..30)
            .map(|d| {
                let mut r = record(d, "cam-1", DAY + 86_400 * i64::from(d), 1, 1);
                r.secs = 86_400;
                r
            })
            .collect();
        let max_bytes = (days[0].encode().len() as u64 + 3) * 10;
        let (mut spool, _) = open(dir.path(), max_bytes);
        let mut outcome = AppendOutcome::default();
        for record in &days {
            let step = spool.append(record).expect("never an error, never a panic");
            outcome.merged += step.merged;
            outcome.dropped += step.dropped;
            assert!(spool.file_bytes() <= max_bytes);
        }
        assert_eq!(outcome.merged, 0);
        assert_eq!(outcome.dropped as usize + spool.len(), days.len());
        assert_eq!(decoded(&spool), days[days.len() - spool.len()..].to_vec());
    }
}
