//! `supervisor bench sieve`: the primes job through the supervisor against
//! the same sieve over the same task ranges in one process (one thread per
//! worker), in the same run: the supervisor's overhead, as a ratio.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use outlast_worker::job::Job;
use outlast_worker::jobs::primes::{default_chunk, Primes};
use outlast_worker::sieve::count_primes;

use super::report::Row;
use super::stats::median;
use outlast::report::Outcome;
use outlast::Supervisor;

pub fn run(runs: usize, limit: u64, workers: u32) -> Result<Vec<Row>, String> {
    let mut ours = Vec::with_capacity(runs);
    let mut expected = None;
    // The supervisor first: fork refuses while the threads below exist.
    for _ in 0..runs {
        let job = Primes::new(limit, None)?;
        let report = Supervisor::new(job)
            .workers(workers)
            .quiet(true)
            .run()
            .map_err(|e| e.to_string())?;
        if report.outcome != Outcome::Success {
            return Err(format!("the primes run ended: {:?}", report.outcome));
        }
        expected = report.result.parse::<u64>().ok();
        ours.push(report.wall_seconds * 1e3);
    }
    let mut in_process = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let count = sieve_with_threads(limit, workers)?;
        in_process.push(started.elapsed().as_secs_f64() * 1e3);
        if Some(count) != expected {
            return Err(format!(
                "in-process count {count} differs from the supervisor's {expected:?}"
            ));
        }
    }
    let baseline = median(&in_process);
    Ok(vec![
        Row {
            bench: "sieve",
            subject: format!("one process, {workers} threads"),
            size_bytes: None,
            median_ms: Some(baseline),
            runs,
            ..Row::default()
        },
        Row {
            bench: "sieve",
            subject: format!("supervisor, {workers} workers"),
            median_ms: Some(median(&ours)),
            vs_baseline: Some(median(&ours) / baseline),
            baseline: Some("one process (time)".into()),
            runs,
            ..Row::default()
        },
    ])
}

/// pi(limit) over the primes job's task ranges, with `threads` threads
/// taking tasks from a shared counter.
fn sieve_with_threads(limit: u64, threads: u32) -> Result<u64, String> {
    let tasks = Primes::new(limit, None)?.task_count();
    let chunk = default_chunk(limit);
    let next = AtomicU64::new(0);
    let total = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let id = next.fetch_add(1, Ordering::Relaxed);
                if id >= tasks {
                    return;
                }
                let lo = id * chunk;
                total.fetch_add(count_primes(lo, (lo + chunk).min(limit)), Ordering::Relaxed);
            });
        }
    });
    Ok(total.into_inner())
}
