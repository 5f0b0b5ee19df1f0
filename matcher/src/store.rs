//! Crash-safe persistence of a venue's encrypted gallery.
//!
//! One file per venue: a header, then one record per enrolment, each
//! `len u32 | crc32 u32 | subject | template`, appended and fsynced before the enrolment is
//! acknowledged. A kill -9 can leave at most a torn last record, which the checksum exposes:
//! loading drops it and truncates the file, so the gallery is always a prefix of acknowledged
//! enrolments. Erasure rewrites the file without the subject to a temporary file, fsyncs it and
//! renames it over the old one (atomic on POSIX), so no copy of an erased template survives
//! in the gallery files. The files hold ciphertexts only.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use passage_fhe::{EncryptedTemplate, Params};
use passage_wire::Id;

const MAGIC: &[u8; 4] = b"PGAL";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 4 + 1 + 8;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// File system error, with the file concerned.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file is not a gallery for these parameters.
    #[error("{path} is not a gallery for these parameters: {reason}")]
    Foreign {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io { op, path: path.to_owned(), source }
}

/// CRC-32 (IEEE), bitwise: records are small and written rarely.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

fn record(subject: &Id, template: &EncryptedTemplate) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.push(subject.as_str().len() as u8);
    payload.extend_from_slice(subject.as_str().as_bytes());
    payload.extend_from_slice(&template.to_bytes());
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// The gallery file of one venue.
#[derive(Debug)]
pub struct GalleryStore {
    path: PathBuf,
    params: Params,
    file: File,
}

impl GalleryStore {
    /// Opens (or creates) the gallery file at `path` and loads every intact record. A torn
    /// tail record is dropped and the file truncated to the last intact record.
    pub fn open(path: &Path, params: Params) -> Result<(GalleryStore, Vec<(Id, EncryptedTemplate)>), StoreError> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_error("create directory for", path))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_error("open", path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_error("read", path))?;
        if bytes.is_empty() {
            file.write_all(&header(&params)).map_err(io_error("write", path))?;
            file.sync_all().map_err(io_error("sync", path))?;
            return Ok((GalleryStore { path: path.to_owned(), params, file }, Vec::new()));
        }
        if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC || bytes[4] != VERSION {
            return Err(StoreError::Foreign { path: path.to_owned(), reason: "bad header".into() });
        }
        if bytes[5..13] != params.id().to_le_bytes() {
            return Err(StoreError::Foreign {
                path: path.to_owned(),
                reason: "made for other scheme parameters".into(),
            });
        }
        let template_len = EncryptedTemplate::encoded_len(&params);
        let mut entries = Vec::new();
        let mut at = HEADER_LEN;
        let mut good = at;
        while bytes.len() - at >= 8 {
            let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
            let crc = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
            if len > 1 + 48 + template_len || bytes.len() - at - 8 < len {
                break;
            }
            let payload = &bytes[at + 8..at + 8 + len];
            if crc32(payload) != crc {
                break;
            }
            let Some(entry) = parse_payload(payload, params) else { break };
            entries.push(entry);
            at += 8 + len;
            good = at;
        }
        if good != bytes.len() {
            tracing::warn!(path = %path.display(), dropped_bytes = bytes.len() - good, "gallery file had a torn tail record; truncated");
            file.set_len(good as u64).map_err(io_error("truncate", path))?;
            file.sync_all().map_err(io_error("sync", path))?;
        }
        file.seek(SeekFrom::End(0)).map_err(io_error("seek", path))?;
        Ok((GalleryStore { path: path.to_owned(), params, file }, entries))
    }

    /// Appends an enrolment and waits until it is on disk.
    pub fn append(&mut self, subject: &Id, template: &EncryptedTemplate) -> Result<(), StoreError> {
        let rec = record(subject, template);
        self.file.write_all(&rec).map_err(io_error("append to", &self.path))?;
        self.file.sync_data().map_err(io_error("sync", &self.path))
    }

    /// Replaces the file's contents with `entries` atomically (temporary file, fsync, rename,
    /// directory fsync).
    pub fn rewrite(&mut self, entries: &[(Id, &EncryptedTemplate)]) -> Result<(), StoreError> {
        let mut buffer = header(&self.params);
        for (subject, template) in entries {
            buffer.extend_from_slice(&record(subject, template));
        }
        write_atomically(&self.path, &buffer)?;
        let mut file =
            OpenOptions::new().read(true).write(true).open(&self.path).map_err(io_error("reopen", &self.path))?;
        file.seek(SeekFrom::End(0)).map_err(io_error("seek", &self.path))?;
        self.file = file;
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename over,
/// directory fsync. A crash leaves either the old file or the new one, never a torn one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    // `{name}.tmp` beside the target: distinct per target file (`v.gallery.tmp`,
    // `v.decision-key.tmp`), so writes of different files never share a temporary.
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    {
        let mut out = File::create(&tmp).map_err(io_error("create", &tmp))?;
        out.write_all(bytes).map_err(io_error("write", &tmp))?;
        out.sync_all().map_err(io_error("sync", &tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_error("rename over", path))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn header(params: &Params) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&params.id().to_le_bytes());
    out
}

fn parse_payload(payload: &[u8], params: Params) -> Option<(Id, EncryptedTemplate)> {
    let len = usize::from(*payload.first()?);
    let subject = std::str::from_utf8(payload.get(1..1 + len)?).ok()?;
    let subject = Id::new(subject).ok()?;
    let template = EncryptedTemplate::from_bytes(params, payload.get(1 + len..)?).ok()?;
    Some((subject, template))
}

#[cfg(test)]
mod tests {
    use passage_fhe::{FheRng, QuantizedVector, SecretKey};

    use super::*;

    fn templates(n: usize) -> Vec<(Id, EncryptedTemplate)> {
        let params = Params::DEFAULT;
        let mut rng = FheRng::from_seed([1; 16]);
        let key = SecretKey::generate(params, &mut rng).expect("valid");
        (0..n)
            .map(|i| {
                let v = QuantizedVector::from_coefficients(vec![(i % 7) as i8; params.dim]);
                (Id::new(&format!("s{i}")).expect("valid"), key.encrypt_template(&v, &mut rng).expect("dim"))
            })
            .collect()
    }

    #[test]
    fn appends_survive_reopen_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("arena.gallery");
        let entries = templates(3);
        {
            let (mut store, loaded) = GalleryStore::open(&path, Params::DEFAULT).expect("open");
            assert!(loaded.is_empty());
            for (s, t) in &entries {
                store.append(s, t).expect("append");
            }
        }
        // Simulate a kill -9 in the middle of a fourth append: half a record at the end.
        let extra = record(&entries[0].0, &entries[0].1);
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(&extra[..extra.len() / 2]).expect("write");
        drop(f);
        let (_, loaded) = GalleryStore::open(&path, Params::DEFAULT).expect("reopen");
        assert_eq!(loaded, entries);
        let (_, again) = GalleryStore::open(&path, Params::DEFAULT).expect("reopen after truncation");
        assert_eq!(again, entries);
    }

    #[test]
    fn a_flipped_bit_is_caught_by_the_checksum() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v.gallery");
        let entries = templates(2);
        {
            let (mut store, _) = GalleryStore::open(&path, Params::DEFAULT).expect("open");
            for (s, t) in &entries {
                store.append(s, t).expect("append");
            }
        }
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 10;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).expect("write");
        let (_, loaded) = GalleryStore::open(&path, Params::DEFAULT).expect("reopen");
        assert_eq!(loaded, entries[..1].to_vec());
    }

    #[test]
    fn rewrite_removes_every_byte_of_an_erased_template() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v.gallery");
        let entries = templates(3);
        let (mut store, _) = GalleryStore::open(&path, Params::DEFAULT).expect("open");
        for (s, t) in &entries {
            store.append(s, t).expect("append");
        }
        let erased = entries[1].1.to_bytes();
        let keep: Vec<(Id, &EncryptedTemplate)> =
            [&entries[0], &entries[2]].iter().map(|(s, t)| (s.clone(), t)).collect();
        store.rewrite(&keep).expect("rewrite");
        let bytes = fs::read(&path).expect("read");
        let needle = &erased[erased.len() - 64..];
        assert!(!bytes.windows(needle.len()).any(|w| w == needle), "erased ciphertext bytes survive");
        let (_, loaded) = GalleryStore::open(&path, Params::DEFAULT).expect("reopen");
        assert_eq!(loaded.len(), 2);
        assert!(!dir.path().join("v.gallery.tmp").exists());
    }

    #[test]
    fn a_foreign_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v.gallery");
        fs::write(&path, b"not a gallery at all").expect("write");
        assert!(matches!(GalleryStore::open(&path, Params::DEFAULT), Err(StoreError::Foreign { .. })));
        GalleryStore::open(&dir.path().join("w.gallery"), Params::with_dim(64)).expect("create");
        assert!(matches!(
            GalleryStore::open(&dir.path().join("w.gallery"), Params::DEFAULT),
            Err(StoreError::Foreign { .. })
        ));
    }
}
