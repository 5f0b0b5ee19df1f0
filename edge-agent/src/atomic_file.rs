//! Crash-safe file replacement for the edge's small state files (the key store, the DP budget
//! ledger): a temporary file beside the target, fsync, rename over, directory fsync. A crash
//! leaves either the old file or the new one, never a torn one.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A failed step of [`write`].
#[derive(Debug)]
pub(crate) struct AtomicWriteError {
    /// What was being done ("create", "write", "sync", "rename over").
    pub(crate) op: &'static str,
    /// The file it was done to.
    pub(crate) path: PathBuf,
    /// The cause.
    pub(crate) source: std::io::Error,
}

fn fail<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> AtomicWriteError + 'a {
    move |source| AtomicWriteError { op, path: path.to_owned(), source }
}

/// Replaces `path` with `bytes` atomically; with `private`, the file is created with mode 0600
/// (on Unix) before any byte is written.
pub(crate) fn write(path: &Path, bytes: &[u8], private: bool) -> Result<(), AtomicWriteError> {
    // `{name}.tmp` beside the target, so different targets never share a temporary.
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    {
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        let mut file = options.open(&tmp).map_err(fail("create", &tmp))?;
        file.write_all(bytes).map_err(fail("write", &tmp))?;
        file.sync_all().map_err(fail("sync", &tmp))?;
    }
    fs::rename(&tmp, path).map_err(fail("rename over", path))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
