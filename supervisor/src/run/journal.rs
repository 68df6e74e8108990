//! The run's side of the journal: opening it when the run starts (the
//! job's identity checked, the settled tasks read back into the work and
//! the ledger), appending each task as it settles, writing out at the end
//! of each turn, and stopping the run cleanly when the journal cannot be
//! written (a full disk): no new task goes out, and what settled before
//! stays in the journal.

use std::collections::BTreeMap;

use outlast_worker::work::{GaveUp, JobSpec, Work};

use super::{Engine, RunError};
use crate::journal::record::Record;
use crate::journal::writer::JournalWriter;
use crate::journal::{self, JournalError, JournalOptions, Replayed};
use crate::ledger::{DeadLetter, Ledger};
use crate::report::Outcome;

/// The open journal of a run.
pub(super) struct RunJournal {
    writer: JournalWriter,
    /// The error that stopped the run, once it happened.
    failed: bool,
}

/// What opening the journal did, for the run's notes.
pub(super) struct Resumed {
    pub journal: RunJournal,
    pub notes: Vec<String>,
}

/// Opens the journal of `options` for the job `spec` (whose work is
/// `work`), reading what it holds into `work` and `ledger`.
pub(super) fn open(
    options: &JournalOptions,
    spec: Option<&JobSpec>,
    work: &mut dyn Work,
    ledger: &mut Ledger,
) -> Result<Resumed, RunError> {
    let spec = spec.ok_or(JournalError::NotAJob)?;
    let tasks = work.task_count();
    let identity = journal::identity(
        &spec.name,
        work.describe(),
        &spec.bytes,
        tasks,
        &mut |id, out| work.input(id, out),
    );
    let mut unusable = 0u64;
    let mut dead = BTreeMap::new();
    let opened = journal::open(options, &identity, &mut |record| match record {
        Replayed::Done { id, output } => {
            dead.remove(&id);
            if id >= tasks || ledger.is_settled(id) {
                return;
            }
            // Settled first, so a second Done of the same id is skipped.
            match work.resume(id, &output) {
                Ok(()) => {
                    ledger.resume_done(id);
                }
                Err(_) => unusable += 1,
            }
        }
        Replayed::Dead {
            id,
            failures,
            exit_code,
            cause,
        } => {
            dead.insert(id, (failures, exit_code, cause));
        }
    })?;
    let done = ledger.resumed();
    let mut dead_count = 0u64;
    if !options.resume_failed {
        for (id, (failures, exit_code, cause)) in dead {
            let letter = DeadLetter {
                task: id,
                failures,
                last_cause: cause.clone(),
                exit_code,
                input: work.describe_task(id),
            };
            if ledger.resume_dead(letter) {
                dead_count += 1;
                work.gave_up(
                    id,
                    &GaveUp {
                        failures,
                        last_cause: cause,
                        exit_code,
                        oversize: None,
                    },
                );
            }
        }
    }
    let path = options.path.display();
    let mut notes = Vec::new();
    if let Some(dropped) = &opened.dropped {
        notes.push(format!("journal {path}: {dropped}"));
    }
    if opened.existed {
        let rerun = if options.resume_failed {
            ", dead letters run again"
        } else {
            ""
        };
        notes.push(format!(
            "resumed from journal {path}: {done} tasks done and {dead_count} dead letters kept, {} to run{rerun}",
            ledger.remaining()
        ));
    }
    if unusable > 0 {
        notes.push(format!(
            "journal {path}: {unusable} outputs the job did not take back run again"
        ));
    }
    let mut run = RunJournal {
        writer: opened.writer,
        failed: false,
    };
    let started = Record::Run {
        pid: std::process::id(),
        unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        resumed: ledger.resumed(),
    };
    run.writer.append(&started)?;
    run.writer.end_turn()?;
    Ok(Resumed {
        journal: run,
        notes,
    })
}

impl Engine {
    /// Task `id`, held by `worker` in `attempt`, was done with `output`.
    pub(super) fn journal_done(&mut self, id: u64, attempt: u32, output: &[u8]) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        let record = Record::Done {
            id,
            attempt,
            output: serde_bytes::ByteBuf::from(output.to_vec()),
        };
        if let Err(e) = journal.writer.append(&record) {
            self.journal_failed(e);
        }
    }

    /// Task `id` is a dead letter.
    pub(super) fn journal_dead(
        &mut self,
        id: u64,
        failures: u32,
        exit_code: Option<i32>,
        cause: &str,
    ) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        let record = Record::Dead {
            id,
            failures,
            exit_code,
            cause: cause.to_string(),
        };
        if let Err(e) = journal.writer.append(&record) {
            self.journal_failed(e);
        }
    }

    /// The end of a turn: the turn's records to the file (and disk).
    pub(super) fn journal_end_turn(&mut self) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        if let Err(e) = journal.writer.end_turn() {
            self.journal_failed(e);
        }
    }

    /// The run is over: everything written and synced.
    pub(super) fn journal_finish(&mut self) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        if let Err(e) = journal.writer.finish() {
            self.journal_failed(e);
        }
    }

    /// The journal cannot be written: no new task goes out (its result
    /// could not be kept), the ones in flight finish, and the run fails.
    fn journal_failed(&mut self, e: JournalError) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        if journal.failed {
            return;
        }
        journal.failed = true;
        let why = format!(
            "{e}; stopped handing out tasks (the tasks settled before stay in the journal)"
        );
        self.progress.event(&why);
        self.stop_with(Outcome::Failed, why);
        self.drain("the journal failed");
    }
}

impl From<JournalError> for RunError {
    fn from(e: JournalError) -> Self {
        RunError::Journal(e)
    }
}
