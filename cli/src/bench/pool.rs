//! `supervisor bench pool`: `Pool` throughput with 2 workers: `map` of a
//! no-op function over 1,000,000 and 200,000 items, `imap` and
//! `imap_unordered` over 1,000,000, `submit` +
//! `as_completed`, the resident memory of this process across an `imap`
//! over an endless iterator, and `--exec true` over 10,000 lines beside
//! `xargs -P2 -n1 true` on the same lines. Python's rows come from
//! `scripts/compare-python`.

use std::process::{Command, Stdio};
use std::time::Instant;

use super::report::Row;
use super::stats::median;
use outlast::pool::{as_completed, Pool};

fn noop(x: u64) -> u64 {
    x
}

/// Resident memory of this process, in kB.
fn rss_kb() -> Option<f64> {
    outlast_ipc::os::procfs::resident_kb(std::process::id()).map(|kb| kb as f64)
}

pub fn run(runs: usize, quick: bool) -> Result<Vec<Row>, String> {
    let items: u64 = if quick { 20_000 } else { 1_000_000 };
    // Where Python's default chunksize (8 chunks) costs it least.
    let fewer: u64 = if quick { 4_000 } else { 200_000 };
    let submits: u64 = if quick { 2_000 } else { 200_000 };
    let endless: u64 = if quick { 100_000 } else { 10_000_000 };
    let lines: usize = if quick { 200 } else { 10_000 };
    let pool = Pool::new(2).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();

    let mut map_rates = Vec::new();
    let mut fewer_rates = Vec::new();
    let mut imap_rates = Vec::new();
    let mut unordered_rates = Vec::new();
    let mut submit_rates = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let out = pool.map(noop, 0..items).map_err(|e| e.to_string())?;
        map_rates.push(items as f64 / started.elapsed().as_secs_f64());
        if out.len() as u64 != items || out.last() != Some(&(items - 1)) {
            return Err("map gave a wrong result".into());
        }
        let started = Instant::now();
        let out = pool.map(noop, 0..fewer).map_err(|e| e.to_string())?;
        fewer_rates.push(fewer as f64 / started.elapsed().as_secs_f64());
        if out.len() as u64 != fewer || out.last() != Some(&(fewer - 1)) {
            return Err("map gave a wrong result".into());
        }
        let started = Instant::now();
        for (n, r) in (0u64..).zip(pool.imap(noop, 0..items)) {
            if r.map_err(|e| e.to_string())? != n {
                return Err("imap gave a wrong result".into());
            }
        }
        imap_rates.push(items as f64 / started.elapsed().as_secs_f64());
        let started = Instant::now();
        let mut sum = 0u64;
        for r in pool.imap_unordered(noop, 0..items) {
            sum += r.map_err(|e| e.to_string())?;
        }
        unordered_rates.push(items as f64 / started.elapsed().as_secs_f64());
        if sum != items * (items - 1) / 2 {
            return Err("imap_unordered gave a wrong result".into());
        }
        let started = Instant::now();
        let futures = (0..submits)
            .map(|x| pool.submit(noop, x))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let done = as_completed(&futures)
            .filter(|f| f.result().is_ok())
            .count();
        submit_rates.push(submits as f64 / started.elapsed().as_secs_f64());
        if done as u64 != submits {
            return Err("as_completed lost futures".into());
        }
    }
    let map_median = median(&map_rates);
    for (subject, rates) in [
        (
            format!("Pool::map no-op, {items} items, 2 workers"),
            &map_rates,
        ),
        (
            format!("Pool::map no-op, {fewer} items, 2 workers"),
            &fewer_rates,
        ),
        (
            format!("Pool::imap no-op, {items} items, 2 workers"),
            &imap_rates,
        ),
        (
            format!("Pool::imap_unordered no-op, {items} items, 2 workers"),
            &unordered_rates,
        ),
    ] {
        let rate = median(rates);
        rows.push(Row {
            bench: "pool",
            subject,
            msgs_per_s: Some(rate),
            vs_baseline: Some(rate / map_median),
            baseline: Some("Pool::map".into()),
            runs,
            ..Row::default()
        });
    }
    rows.push(Row {
        bench: "pool",
        subject: format!("submit + as_completed, {submits} tasks, 2 workers"),
        msgs_per_s: Some(median(&submit_rates)),
        runs,
        ..Row::default()
    });

    // Memory across an endless imap: sampled at 10 % and at the end.
    let before = rss_kb();
    let mut at_tenth = None;
    let started = Instant::now();
    for (i, r) in pool.imap(noop, 0u64..).enumerate() {
        r.map_err(|e| e.to_string())?;
        if i as u64 == endless / 10 {
            at_tenth = rss_kb();
        }
        if i as u64 + 1 == endless {
            break;
        }
    }
    let rate = endless as f64 / started.elapsed().as_secs_f64();
    let after = rss_kb();
    rows.push(Row {
        bench: "pool",
        subject: format!(
            "imap over an endless iterator, {endless} items: RSS {:.0} kB before, {:.0} kB at 10 %, {:.0} kB at the end",
            before.unwrap_or(0.0),
            at_tenth.unwrap_or(0.0),
            after.unwrap_or(0.0)
        ),
        msgs_per_s: Some(rate),
        runs: 1,
        ..Row::default()
    });
    drop(pool);

    // --exec true against xargs -P2 -n1 true, on the same lines.
    let input: String = (0..lines).map(|i| format!("{i}\n")).collect();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut ours = Vec::new();
    let mut xargs = Vec::new();
    for _ in 0..runs {
        ours.push(timed_with_input(
            Command::new(&exe).args([
                "--exec",
                "true",
                "--workers",
                "2",
                "--quiet",
                "--report",
                "/dev/null",
            ]),
            &input,
        )?);
        xargs.push(timed_with_input(
            Command::new("xargs").args(["-P2", "-n1", "true"]),
            &input,
        )?);
    }
    let xargs_ms = median(&xargs);
    rows.push(Row {
        bench: "pool",
        subject: format!("xargs -P2 -n1 true, {lines} lines"),
        median_ms: Some(xargs_ms),
        runs,
        ..Row::default()
    });
    let ours_ms = median(&ours);
    rows.push(Row {
        bench: "pool",
        subject: format!("supervisor --exec true --workers 2, {lines} lines"),
        median_ms: Some(ours_ms),
        vs_baseline: Some(xargs_ms / ours_ms),
        baseline: Some("xargs -P2".into()),
        runs,
        ..Row::default()
    });
    Ok(rows)
}

/// Milliseconds `command` takes with `input` on its stdin.
pub(super) fn timed_with_input(command: &mut Command, input: &str) -> Result<f64, String> {
    use std::io::Write;
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("{command:?} failed: {status}"));
    }
    Ok(started.elapsed().as_secs_f64() * 1e3)
}
