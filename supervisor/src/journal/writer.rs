//! Appending to a journal: records are encoded into a buffer as tasks
//! settle, the buffer goes to the file at the end of each turn of the run's
//! loop (one `write` for the turn's records, so a SIGKILL of the supervisor
//! loses at most the turn it was in), and the file is synced as the
//! [`SyncPolicy`] says. A write or sync that fails is kept and returned by
//! every later call: the run stops handing out tasks, and what was written
//! before stays valid (a torn last frame is dropped on the next read).

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::record::{encode_frame, Record};
use super::{JournalError, SyncPolicy};

/// With [`SyncPolicy::Batch`], records are synced at least this often.
pub const BATCH_INTERVAL: Duration = Duration::from_millis(50);
/// And at least every this many records.
pub const BATCH_RECORDS: u64 = 65_536;
/// The buffer goes to the file early once it holds this much.
const FLUSH_BYTES: usize = 1 << 20;

pub(crate) struct JournalWriter {
    path: PathBuf,
    file: File,
    policy: SyncPolicy,
    buf: Vec<u8>,
    /// Records in `buf`.
    buffered: u64,
    /// Records written to the file but not synced yet.
    unsynced: u64,
    last_sync: Instant,
    /// Records appended in all.
    appended: u64,
    /// Syncs made.
    syncs: u64,
    failed: Option<String>,
}

impl JournalWriter {
    /// Appends to `file`, whose valid content ends at its current length.
    pub(crate) fn new(path: &Path, file: File, policy: SyncPolicy) -> Self {
        JournalWriter {
            path: path.to_path_buf(),
            file,
            policy,
            buf: Vec::with_capacity(64 * 1024),
            buffered: 0,
            unsynced: 0,
            last_sync: Instant::now(),
            appended: 0,
            syncs: 0,
            failed: None,
        }
    }

    /// Adds `record`; it reaches the file at the turn's end.
    pub(crate) fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        self.check()?;
        if let Err(e) = encode_frame(record, &mut self.buf) {
            return Err(self.fail(format!("cannot encode a record: {e}")));
        }
        self.appended += 1;
        self.buffered += 1;
        if self.buf.len() >= FLUSH_BYTES {
            self.write_out()?;
        }
        Ok(())
    }

    /// The end of a turn: what was appended goes to the file, and is
    /// synced if the policy says it is time.
    pub(crate) fn end_turn(&mut self) -> Result<(), JournalError> {
        self.check()?;
        self.write_out()?;
        let due = match self.policy {
            SyncPolicy::Always => self.unsynced > 0,
            SyncPolicy::Batch => {
                self.unsynced >= BATCH_RECORDS
                    || (self.unsynced > 0 && self.last_sync.elapsed() >= BATCH_INTERVAL)
            }
            SyncPolicy::Never => false,
        };
        if due {
            self.sync()?;
        }
        Ok(())
    }

    /// Everything to the file and synced (unless the policy is `Never`).
    pub(crate) fn finish(&mut self) -> Result<(), JournalError> {
        self.check()?;
        self.write_out()?;
        if self.policy != SyncPolicy::Never && self.unsynced > 0 {
            self.sync()?;
        }
        Ok(())
    }

    /// Records appended so far, and syncs made.
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.appended, self.syncs)
    }

    fn write_out(&mut self) -> Result<(), JournalError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all(&self.buf) {
            return Err(self.fail(format!("cannot write: {e}")));
        }
        self.unsynced += self.buffered;
        self.buffered = 0;
        self.buf.clear();
        Ok(())
    }

    fn sync(&mut self) -> Result<(), JournalError> {
        // SAFETY: fdatasync on a descriptor this struct owns.
        if unsafe { libc::fdatasync(self.file.as_raw_fd()) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(self.fail(format!("cannot sync: {e}")));
        }
        self.unsynced = 0;
        self.syncs += 1;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Keeps `why`: every later call fails with it.
    fn fail(&mut self, why: String) -> JournalError {
        self.failed = Some(why.clone());
        JournalError::Write {
            path: self.path.clone(),
            why,
        }
    }

    fn check(&self) -> Result<(), JournalError> {
        match &self.failed {
            Some(why) => Err(JournalError::Write {
                path: self.path.clone(),
                why: why.clone(),
            }),
            None => Ok(()),
        }
    }
}
