//! The journal: a run's settled tasks kept on disk, so that a supervisor
//! killed at any instant (SIGKILL, a reboot) resumes where it was. With
//! [`RunOptions::journal`](crate::RunOptions::journal) set, each task that
//! settles (its id, attempt, and output; or, for a dead letter, its
//! failures and cause) is appended to the file at the end of the loop's
//! turn and synced in batches. Running the same job again with the same
//! journal combines the journal's outputs (through [`Job::resume`], which
//! is `combine` unless the job says otherwise) and runs only the rest: the
//! answer is the same as an uninterrupted run's. Tasks in flight at the
//! kill run again (at least once for them, counted once, as with a
//! worker's death).
//!
//! The format is an append-only log of our own, not an embedded database:
//! a header, then frames of `length, CRC32C, postcard record`. A run needs
//! one sequential append per turn and one sync per batch, and resuming
//! reads the file once from the start; a log does exactly that at the
//! disk's speed (millions of records a second), where SQLite or redb
//! would add a B-tree per record, a C build or a second copy of every
//! output, and nothing we read back. What a log must get right is its torn
//! tail, and reading (`scan.rs`) does: the first frame cut short, with a
//! wrong checksum or undecodable, ends the valid prefix; the rest is
//! dropped with one line saying so, and the file is cut back to the prefix
//! before anything is appended.
//!
//! The first record names the job ([`JobIdentity`]: its name, task count,
//! and a digest of its bytes and its tasks' inputs); a run of another job
//! against the journal is refused with [`JournalError::OtherJob`]. A run
//! holds an exclusive lock (`flock`) on the file: two runs never write it
//! at once.
//!
//! ```
//! use outlast::journal::JournalOptions;
//! use outlast::{BadOutput, Job, JobOutcome, Supervisor, TaskContext};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Serialize, Deserialize)]
//! struct Squares { n: u64, #[serde(skip)] sum: u64 }
//!
//! impl Job for Squares {
//!     type Input = u64;
//!     type Output = u64;
//!     type Error = String;
//!     fn describe(&self) -> String { format!("squares below {}", self.n) }
//!     fn task_count(&self) -> u64 { self.n }
//!     fn input(&self, id: u64) -> u64 { id }
//!     fn run(&self, x: u64, _: &mut TaskContext<'_>) -> Result<u64, String> { Ok(x * x) }
//!     fn combine(&mut self, _id: u64, y: u64) -> Result<(), BadOutput> { self.sum += y; Ok(()) }
//!     fn outcome(&self, _complete: bool) -> JobOutcome { JobOutcome::value(self.sum) }
//! }
//!
//! let path = std::env::temp_dir().join(format!("squares-{}.journal", std::process::id()));
//! let run = || {
//!     Supervisor::new(Squares { n: 100, sum: 0 })
//!         .workers(2)
//!         .quiet(true)
//!         .journal(JournalOptions::new(&path))
//!         .run()
//!         .unwrap()
//! };
//! let first = run();
//! assert_eq!((first.result.as_str(), first.tasks.resumed), ("328350", 0));
//! // Run again (as after a kill): every task comes back from the journal.
//! let again = run();
//! assert_eq!((again.result.as_str(), again.tasks.resumed), ("328350", 100));
//! let held = outlast::journal::summary(&path).unwrap();
//! assert_eq!((held.done, held.runs), (100, 2));
//! # std::fs::remove_file(&path).unwrap();
//! ```
//!
//! [`Job::resume`]: outlast_worker::job::Job::resume

mod lock;
pub(crate) mod record;
mod scan;
mod summary;
pub(crate) mod writer;

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub use record::JobIdentity;
pub use scan::Dropped;
pub use summary::{summary, JournalDeadLetter, JournalSummary};
pub use writer::{BATCH_INTERVAL, BATCH_RECORDS};

use lock::lock;
use record::{encode_frame, header, Record};
use writer::JournalWriter;

/// When the journal's records are synced to disk (`fdatasync`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncPolicy {
    /// At the end of every turn of the run's loop that settled a task:
    /// nothing settled is ever lost, at the disk's sync rate.
    Always,
    /// At most every [`BATCH_INTERVAL`] (50 ms) or [`BATCH_RECORDS`]
    /// records: a power cut loses at most that much, which runs again.
    #[default]
    Batch,
    /// Left to the kernel. A killed supervisor still loses nothing (its
    /// writes are in the page cache); a power cut may lose any amount.
    Never,
}

/// Where a run keeps its journal, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalOptions {
    pub path: PathBuf,
    pub sync: SyncPolicy,
    /// Run the journal's dead letters again (GNU parallel's
    /// `--resume-failed`), from their first attempt; without it they stay
    /// dead letters of the resumed run.
    pub resume_failed: bool,
}

impl JournalOptions {
    /// A journal at `path`, synced in batches, dead letters kept dead.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        JournalOptions {
            path: path.into(),
            sync: SyncPolicy::Batch,
            resume_failed: false,
        }
    }

    pub fn sync(mut self, sync: SyncPolicy) -> Self {
        self.sync = sync;
        self
    }

    pub fn resume_failed(mut self, yes: bool) -> Self {
        self.resume_failed = yes;
        self
    }
}

/// Why a journal could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot {op} the journal {}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("{} is not a journal (it does not start with OUTLASTJ): refusing to touch it", .0.display())]
    NotAJournal(PathBuf),
    #[error("the journal {} is in format version {found}; this build reads version {}", path.display(), record::VERSION)]
    Version { path: PathBuf, found: u32 },
    #[error("the journal {} is in use by another run (pid {holder}): one run writes a journal at a time", path.display())]
    InUse { path: PathBuf, holder: String },
    #[error(
        "the journal {} is for another job: it holds `{}` ({}, {} tasks), and this run is `{}` ({}, {} tasks); \
         resume with the same job, or give this one another --journal path",
        path.display(), journal.name, journal.describe, journal.tasks, this.name, this.describe, this.tasks
    )]
    OtherJob {
        path: PathBuf,
        journal: Box<JobIdentity>,
        this: Box<JobIdentity>,
    },
    #[error("the journal {} cannot be written: {why}", path.display())]
    Write { path: PathBuf, why: String },
    #[error("a journal needs a job that is data (a `Job`, through `AnyJob::new`); this work cannot be made again to resume it")]
    NotAJob,
}

impl JournalError {
    pub(crate) fn io(path: &Path, op: &'static str, source: std::io::Error) -> Self {
        JournalError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    }
}

/// A record read back for a resumed run.
pub(crate) enum Replayed {
    Done {
        id: u64,
        output: Vec<u8>,
    },
    Dead {
        id: u64,
        failures: u32,
        exit_code: Option<i32>,
        cause: String,
    },
}

/// A journal opened for a run: what it held (handed to `replay`), and the
/// writer that appends from the end of its valid prefix.
pub(crate) struct Opened {
    pub writer: JournalWriter,
    /// Whether it held the job already (a resume), not just created.
    pub existed: bool,
    pub dropped: Option<Dropped>,
}

/// Opens (or creates) the journal at `options.path` for the job `this`,
/// locks it, replays its records through `replay`, cuts off a torn tail
/// and readies it for appending.
pub(crate) fn open(
    options: &JournalOptions,
    this: &JobIdentity,
    replay: &mut dyn FnMut(Replayed),
) -> Result<Opened, JournalError> {
    let path = options.path.as_path();
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| JournalError::io(path, "open", e))?;
    lock(&file, path)?;
    let mut has_job = false;
    let scanned = scan::scan(path, &mut |record, _at| {
        match record {
            Record::Job(journal) => {
                if !has_job && !journal.same_job(this) {
                    return Err(JournalError::OtherJob {
                        path: path.to_path_buf(),
                        journal: Box::new(journal),
                        this: Box::new(this.clone()),
                    });
                }
                has_job = true;
            }
            Record::Run { .. } => {}
            // Our writer puts the job first: this file was not made by it.
            _ if !has_job => return Err(JournalError::NotAJournal(path.to_path_buf())),
            Record::Done { id, output, .. } => replay(Replayed::Done {
                id,
                output: output.into_vec(),
            }),
            Record::Dead {
                id,
                failures,
                exit_code,
                cause,
            } => replay(Replayed::Dead {
                id,
                failures,
                exit_code,
                cause,
            }),
        }
        Ok(())
    })?;
    if scanned.valid_len < scanned.file_len {
        file.set_len(scanned.valid_len)
            .map_err(|e| JournalError::io(path, "cut back", e))?;
    }
    file.seek(SeekFrom::End(0))
        .map_err(|e| JournalError::io(path, "seek in", e))?;
    let existed = has_job;
    if !has_job {
        // New (or its first write was torn): the header and the job, synced
        // now, so the journal names its job from its first instant.
        let mut start = Vec::new();
        if scanned.valid_len == 0 {
            start.extend_from_slice(&header());
        }
        encode_frame(&Record::Job(this.clone()), &mut start).map_err(|e| JournalError::Write {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        file.write_all(&start)
            .and_then(|()| file.sync_data())
            .map_err(|e| JournalError::io(path, "write", e))?;
    }
    Ok(Opened {
        writer: JournalWriter::new(path, file, options.sync),
        existed,
        dropped: scanned.dropped,
    })
}

/// The identity of a job from its bytes and its inputs: `input(id, out)`
/// appends task `id`'s encoded input. Every input counts up to 100,000
/// tasks; beyond, 100,000 spread evenly from the first to the last (and
/// the count), so opening a journal of a billion tasks stays quick.
pub(crate) fn identity(
    name: &str,
    describe: String,
    spec_bytes: &[u8],
    tasks: u64,
    input: &mut InputOf<'_>,
) -> JobIdentity {
    const SAMPLED: u64 = 100_000;
    let mut digest = Fnv::default();
    digest.write(name.as_bytes());
    digest.write(&(spec_bytes.len() as u64).to_le_bytes());
    digest.write(spec_bytes);
    digest.write(&tasks.to_le_bytes());
    let mut buf = Vec::new();
    let step = tasks.div_ceil(SAMPLED).max(1);
    let mut id = 0;
    while id < tasks {
        buf.clear();
        if input(id, &mut buf).is_ok() {
            digest.write(&id.to_le_bytes());
            digest.write(&(buf.len() as u64).to_le_bytes());
            digest.write(&buf);
        }
        id = if id + step >= tasks && id != tasks - 1 {
            tasks - 1
        } else {
            id + step
        };
    }
    JobIdentity {
        name: name.to_string(),
        describe,
        tasks,
        digest: digest.0,
    }
}

/// Appends the encoded input of a task to a buffer.
pub(crate) type InputOf<'a> = dyn FnMut(u64, &mut Vec<u8>) -> Result<(), String> + 'a;

/// FNV-1a, 64 bits: stable across builds and platforms (std's hasher is
/// not promised to be), enough to tell one job from another.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests;
