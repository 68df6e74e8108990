//! `supervisor bench spawn`: start + join latency of a process running a
//! no-op function, per start method.

use std::time::Instant;

use ipc::{Process, StartMethod};

use super::report::Row;
use super::stats::{median, quantile};

fn noop(_: ()) {}

pub fn run(quick: bool) -> Result<Vec<Row>, String> {
    let plan = [
        ("fork", StartMethod::Fork, if quick { 20 } else { 300 }),
        ("spawn", StartMethod::Spawn, if quick { 10 } else { 100 }),
    ];
    let mut rows = Vec::new();
    for (name, method, iterations) in plan {
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
            runs: iterations,
            ..Row::default()
        });
    }
    Ok(rows)
}
