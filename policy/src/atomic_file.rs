//! Crash-safe replacement of a small file: a temporary file beside it (created with the final
//! mode before any byte is written), fsync, rename over, directory fsync. A crash leaves the
//! old file or the new one, never a torn one. Used for the accounts file, subject keys and
//! certificates here, and for the edge's key store, DP budget ledger and spool compaction.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A failed step of [`write`].
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {}: {source}", path.display())]
pub struct AtomicWriteError {
    /// What was being done ("create", "write", "sync", "rename over", "sync the directory of").
    pub op: &'static str,
    /// The file it was done to.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

/// Who may read the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Mode 0600: keys, accounts, the edge's state.
    Private,
    /// Mode 0644: certificates and revocation lists, which a broker running as another user
    /// must read.
    Public,
}

fn fail<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> AtomicWriteError + 'a {
    move |source| AtomicWriteError { op, path: path.to_owned(), source }
}

/// Replaces `path` with `bytes` atomically.
///
/// # Errors
/// [`AtomicWriteError`] naming the step that failed; the target is then unchanged.
pub fn write(path: &Path, bytes: &[u8], access: Access) -> Result<(), AtomicWriteError> {
    // `{name}.tmp` beside the target, so different targets never share a temporary.
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    {
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(match access {
                Access::Private => 0o600,
                Access::Public => 0o644,
            });
        }
        #[cfg(not(unix))]
        let _ = access;
        let mut file = options.open(&tmp).map_err(fail("create", &tmp))?;
        file.write_all(bytes).map_err(fail("write", &tmp))?;
        file.sync_all().map_err(fail("sync", &tmp))?;
    }
    fs::rename(&tmp, path).map_err(fail("rename over", path))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(fail("sync the directory of", path))?;
    }
    Ok(())
}

/// [`write`] with [`Access::Private`], as an I/O error.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write(path, bytes, Access::Private).map_err(|e| e.source)
}

/// [`write`] with [`Access::Public`], as an I/O error.
pub(crate) fn write_public(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write(path, bytes, Access::Public).map_err(|e| e.source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_with_its_mode_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        write(&path, b"one", Access::Public).expect("first write");
        write(&path, b"two", Access::Private).expect("second write");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        assert!(!dir.path().join("state.json.tmp").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // The mode of the newest temporary (renamed over) is the file's mode.
            assert_eq!(fs::metadata(&path).expect("stat").permissions().mode() & 0o777, 0o600);
        }
        let error = write(&dir.path().join("missing/x"), b"x", Access::Private).expect_err("no such directory");
        assert_eq!(error.op, "create");
    }
}
