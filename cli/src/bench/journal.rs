//! `supervisor bench journal`: what `--journal` costs. No-op tasks through
//! the supervisor without a journal, with one synced in batches, and with
//! one synced every turn (beside this disk's own rate of small synced
//! appends, the floor of `always`); and `--exec true` over 10,000 lines
//! with and without a batched journal. Each pair runs alternately in the
//! same process and directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use outlast::journal::{JournalOptions, SyncPolicy};
use outlast::report::Outcome;
use outlast::Supervisor;
use outlast_worker::jobs::sleep::Sleep;

use super::report::Row;
use super::stats::median;

pub fn run(runs: usize, quick: bool) -> Result<Vec<Row>, String> {
    let tasks = if quick { 20_000 } else { 2_000_000 };
    let lines = if quick { 500 } else { 10_000 };
    let dir = std::env::temp_dir().join(format!("outlast-bench-journal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    let journal = dir.join("journal");
    let mut rows = Vec::new();

    let mut none = Vec::new();
    let mut batch = Vec::new();
    let mut always = Vec::new();
    for _ in 0..runs {
        none.push(noop(tasks, None)?);
        batch.push(noop(tasks, Some((&journal, SyncPolicy::Batch)))?);
        always.push(noop(tasks, Some((&journal, SyncPolicy::Always)))?);
    }
    let base = median(&none);
    rows.push(row(
        "no-op tasks, no journal".to_string(),
        Some(base),
        None,
        None,
        runs,
    ));
    for (name, rates) in [("batch", &batch), ("always", &always)] {
        let rate = median(rates);
        rows.push(row(
            format!("no-op tasks, --journal-sync {name}"),
            Some(rate),
            None,
            Some(rate / base),
            runs,
        ));
    }
    let syncs = sync_rate(&dir.join("sync-probe"))?;
    rows.push(row(
        format!("64 B append + fdatasync in {}", dir.display()),
        Some(syncs),
        None,
        None,
        1,
    ));

    let input: String = (0..lines).map(|i| format!("{i}\n")).collect();
    let mut plain = Vec::new();
    let mut journaled = Vec::new();
    for _ in 0..runs {
        plain.push(exec_true(&input, None)?);
        journaled.push(exec_true(&input, Some(&journal))?);
    }
    let plain_ms = median(&plain);
    let journaled_ms = median(&journaled);
    rows.push(row(
        format!("--exec true, {lines} lines, no journal"),
        None,
        Some(plain_ms),
        None,
        runs,
    ));
    rows.push(row(
        format!("--exec true, {lines} lines, --journal"),
        None,
        Some(journaled_ms),
        Some(plain_ms / journaled_ms),
        runs,
    ));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(rows)
}

fn row(
    subject: String,
    rate: Option<f64>,
    ms: Option<f64>,
    ratio: Option<f64>,
    runs: usize,
) -> Row {
    Row {
        bench: "journal",
        subject,
        msgs_per_s: rate,
        median_ms: ms,
        vs_baseline: ratio,
        baseline: ratio.map(|_| "no journal".into()),
        runs,
        ..Row::default()
    }
}

/// No-op tasks per second through 2 workers, with a fresh journal if asked.
fn noop(tasks: u64, journal: Option<(&Path, SyncPolicy)>) -> Result<f64, String> {
    let mut supervisor = Supervisor::new(Sleep::new(tasks, 0)).workers(2).quiet(true);
    if let Some((path, sync)) = journal {
        let _ = std::fs::remove_file(path);
        supervisor = supervisor.journal(JournalOptions::new(path).sync(sync));
    }
    let report = supervisor.run().map_err(|e| e.to_string())?;
    if report.outcome != Outcome::Success {
        return Err(format!("the run ended: {:?}", report.outcome));
    }
    Ok(report.tasks_per_second)
}

/// Milliseconds of `supervisor --exec true` over the lines of `input`.
fn exec_true(input: &str, journal: Option<&PathBuf>) -> Result<f64, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = std::process::Command::new(exe);
    command.args([
        "--exec",
        "true",
        "--workers",
        "2",
        "--quiet",
        "--report",
        "/dev/null",
    ]);
    if let Some(path) = journal {
        let _ = std::fs::remove_file(path);
        command.arg("--journal").arg(path);
    }
    super::pool::timed_with_input(&mut command, input)
}

/// Small appends each followed by `fdatasync`, per second, for 1 s.
fn sync_rate(path: &Path) -> Result<f64, String> {
    let mut file = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed().as_secs_f64() < 1.0 {
        file.write_all(&[7u8; 64]).map_err(|e| e.to_string())?;
        file.sync_data().map_err(|e| e.to_string())?;
        n += 1;
    }
    let _ = std::fs::remove_file(path);
    Ok(n as f64 / started.elapsed().as_secs_f64())
}
