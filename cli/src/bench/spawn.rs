//! `supervisor bench spawn`: start + join latency of a process running a
//! no-op function, per start method (fork, spawn, forkserver), next to the
//! floor measured in the same run: a bare `fork()` + `_exit(0)` +
//! `waitpid()` of this very process. The fork server is started (and one
//! child run) before its samples: its own start is a one-time cost.

use std::time::Instant;

use outlast_ipc::{Process, StartMethod};

use super::report::Row;
use super::stats::{median, quantile};

fn noop(_: ()) {}

pub fn run(quick: bool) -> Result<Vec<Row>, String> {
    let plan = [
        ("fork", StartMethod::Fork, if quick { 20 } else { 300 }),
        ("spawn", StartMethod::Spawn, if quick { 10 } else { 100 }),
        (
            "forkserver",
            StartMethod::ForkServer,
            if quick { 20 } else { 300 },
        ),
    ];
    let floor_iterations = if quick { 20 } else { 300 };
    let floor: Vec<f64> = (0..floor_iterations)
        .map(|_| bare_fork_and_wait().map_err(|e| format!("bare fork: {e}")))
        .collect::<Result<_, _>>()?;
    let floor_median = median(&floor);
    let mut rows = vec![Row {
        bench: "spawn",
        subject: "bare fork+waitpid".to_string(),
        median_ms: Some(floor_median),
        p90_ms: Some(quantile(&floor, 0.9)),
        runs: floor_iterations,
        ..Row::default()
    }];
    for (name, method, iterations) in plan {
        if method == StartMethod::ForkServer {
            warm_up(method).map_err(|e| format!("{name}: {e}"))?;
        }
        let mut samples = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let started = Instant::now();
            let mut p = Process::new(noop, ()).start_method(method);
            p.start().map_err(|e| format!("{name}: {e}"))?;
            p.join().map_err(|e| format!("{name}: {e}"))?;
            samples.push(started.elapsed().as_secs_f64() * 1e3);
        }
        rows.push(Row {
            bench: "spawn",
            subject: format!("start+join {name}"),
            median_ms: Some(median(&samples)),
            p90_ms: Some(quantile(&samples, 0.9)),
            vs_baseline: (method != StartMethod::Spawn).then(|| median(&samples) / floor_median),
            baseline: (method != StartMethod::Spawn).then(|| "bare fork (time)".to_string()),
            runs: iterations,
            ..Row::default()
        });
    }
    Ok(rows)
}

/// One child, untimed: starts the fork server.
fn warm_up(method: StartMethod) -> Result<(), String> {
    let mut p = Process::new(noop, ()).start_method(method);
    p.start().map_err(|e| e.to_string())?;
    p.join().map_err(|e| e.to_string())
}

/// The floor for `fork`: the kernel's cost of copying this process and reaping it.
fn bare_fork_and_wait() -> std::io::Result<f64> {
    let started = Instant::now();
    // SAFETY: the child does nothing but _exit, which is async-signal-safe.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: leaves the child at once.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child with a valid status pointer.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return Err(std::io::Error::last_os_error());
    }
    Ok(started.elapsed().as_secs_f64() * 1e3)
}
