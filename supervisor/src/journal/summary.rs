//! What a journal holds, for people and scripts (`supervisor journal
//! PATH [--json]`): its job, how many tasks are done, its dead letters,
//! its runs and when it was last written, and what a torn tail dropped.
//! Reading never writes: a torn tail is reported, not cut.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::record::{JobIdentity, Record};
use super::scan::{scan, Dropped};
use super::JournalError;

/// A dead letter as the journal has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JournalDeadLetter {
    pub task: u64,
    pub failures: u32,
    pub exit_code: Option<i32>,
    pub cause: String,
}

/// What a journal holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JournalSummary {
    pub path: String,
    /// `None` for an empty (or new) journal.
    pub job: Option<JobIdentity>,
    /// Tasks done (each once, however many runs).
    pub done: u64,
    /// Which: `[first, last]` ranges of task ids, in order (few: tasks
    /// settle nearly in order).
    pub done_ranges: Vec<(u64, u64)>,
    /// Dead letters not done since (a `--resume-failed` run may do them).
    pub dead: Vec<JournalDeadLetter>,
    /// Runs that wrote to it.
    pub runs: u64,
    /// Pid of the last run, and when it started (ms since the epoch).
    pub last_run_pid: Option<u32>,
    pub last_run_started_unix_ms: Option<u64>,
    /// When the file was last written (ms since the epoch).
    pub last_write_unix_ms: Option<u64>,
    /// Its size, and the end of its valid records.
    pub bytes: u64,
    pub valid_bytes: u64,
    pub dropped: Option<Dropped>,
}

/// Reads the journal at `path`.
pub fn summary(path: &Path) -> Result<JournalSummary, JournalError> {
    let mut job = None;
    let mut done_ids = BTreeMap::new();
    let mut done = 0u64;
    let mut dead = BTreeMap::new();
    let mut runs = 0;
    let mut last_run = None;
    let scanned = scan(path, &mut |record, _at| {
        match record {
            Record::Job(identity) => {
                job.get_or_insert(identity);
            }
            Record::Run { pid, unix_ms, .. } => {
                runs += 1;
                last_run = Some((pid, unix_ms));
            }
            Record::Done { id, .. } => {
                if add(&mut done_ids, id) {
                    done += 1;
                }
                dead.remove(&id);
            }
            Record::Dead {
                id,
                failures,
                exit_code,
                cause,
            } => {
                dead.insert(
                    id,
                    JournalDeadLetter {
                        task: id,
                        failures,
                        exit_code,
                        cause,
                    },
                );
            }
        }
        Ok(())
    })?;
    let last_write_unix_ms = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64);
    Ok(JournalSummary {
        path: path.display().to_string(),
        job,
        done,
        done_ranges: done_ids.into_iter().collect(),
        dead: dead.into_values().collect(),
        runs,
        last_run_pid: last_run.map(|(pid, _)| pid),
        last_run_started_unix_ms: last_run.map(|(_, at)| at),
        last_write_unix_ms,
        bytes: scanned.file_len,
        valid_bytes: scanned.valid_len,
        dropped: scanned.dropped,
    })
}

impl std::fmt::Display for JournalSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "journal {}", self.path)?;
        match &self.job {
            Some(job) => {
                writeln!(f, "  job        {}: {}", job.name, job.describe)?;
                writeln!(
                    f,
                    "  tasks      {} done, {} dead, {} not settled, of {}",
                    self.done,
                    self.dead.len(),
                    job.tasks.saturating_sub(self.done + self.dead.len() as u64),
                    job.tasks
                )?;
            }
            None => writeln!(f, "  job        none yet (an empty journal)")?,
        }
        writeln!(f, "  runs       {}", self.runs)?;
        if let (Some(pid), Some(at)) = (self.last_run_pid, self.last_run_started_unix_ms) {
            writeln!(f, "  last run   pid {pid}, started {}", unix_ms_text(at))?;
        }
        if let Some(at) = self.last_write_unix_ms {
            writeln!(f, "  last write {}", unix_ms_text(at))?;
        }
        writeln!(f, "  size       {} bytes", self.bytes)?;
        if let Some(dropped) = &self.dropped {
            writeln!(f, "  torn       {dropped} (a resumed run cuts them off)")?;
        }
        for d in self.dead.iter().take(20) {
            writeln!(
                f,
                "  dead       task {}: failed {} times, last: {}",
                d.task, d.failures, d.cause
            )?;
        }
        if self.dead.len() > 20 {
            writeln!(
                f,
                "  dead       ... and {} more (--json lists all)",
                self.dead.len() - 20
            )?;
        }
        Ok(())
    }
}

/// Adds `id` to `ranges` (first id -> last id of each run of consecutive
/// ids), merging neighbours; false if it was there. Memory goes with the
/// runs, not the ids.
fn add(ranges: &mut BTreeMap<u64, u64>, id: u64) -> bool {
    let before = ranges.range(..=id).next_back().map(|(&s, &e)| (s, e));
    if matches!(before, Some((_, end)) if id <= end) {
        return false;
    }
    let after = id
        .checked_add(1)
        .and_then(|n| ranges.get(&n).copied().map(|e| (n, e)));
    match (before, after) {
        (Some((start, end)), Some((next, last))) if end + 1 == id => {
            ranges.remove(&next);
            ranges.insert(start, last);
        }
        (Some((start, end)), _) if end + 1 == id => {
            ranges.insert(start, id);
        }
        (_, Some((next, last))) => {
            ranges.remove(&next);
            ranges.insert(id, last);
        }
        _ => {
            ranges.insert(id, id);
        }
    }
    true
}

/// `2026-12-04 23:20:20.123 UTC` from milliseconds since the epoch.
fn unix_ms_text(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    )
}

/// The Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn done_ids_become_ranges() {
        let mut ranges = std::collections::BTreeMap::new();
        for id in [5, 0, 1, 2, 7, 6, 9, 3] {
            assert!(super::add(&mut ranges, id));
        }
        assert!(!super::add(&mut ranges, 6), "there already");
        let got: Vec<(u64, u64)> = ranges.into_iter().collect();
        assert_eq!(got, [(0, 3), (5, 7), (9, 9)]);
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(super::unix_ms_text(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(
            super::unix_ms_text(1_796_426_533_761),
            "2026-12-04 23:22:13.761 UTC"
        );
    }
}
