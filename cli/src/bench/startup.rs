//! `supervisor bench startup`: how long the supervisor takes from its start
//! until N workers are all started and ready (the report's
//! `startup_seconds`), for N = 100, 300 and 1,000, beside Python's
//! `multiprocessing.Pool(N)` in the same run: the pool made, then one
//! no-op task through each of its workers (Python's pool has no "ready"
//! signal of its own; a task per worker is the earliest proof). Python is
//! skipped where `python3` is missing.

use std::process::Command;

use super::report::Row;
use super::stats::median;
use outlast::Supervisor;
use outlast_worker::jobs::sleep::Sleep;

/// Seconds for Python's `Pool(n)` and a no-op task per worker, or `None`.
fn python_pool_seconds(n: usize) -> Option<f64> {
    let script = format!(
        "import multiprocessing as mp, time\n\
         if __name__ == '__main__':\n\
         \x20   mp.set_start_method('fork')\n\
         \x20   t = time.perf_counter()\n\
         \x20   p = mp.Pool({n})\n\
         \x20   p.map(abs, range({n}), chunksize=1)\n\
         \x20   print(time.perf_counter() - t)\n\
         \x20   p.terminate(); p.join()\n"
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

pub fn run(runs: usize, quick: bool) -> Result<Vec<Row>, String> {
    let counts: &[usize] = if quick { &[10, 30] } else { &[100, 300, 1000] };
    let mut rows = Vec::new();
    for &n in counts {
        let mut ours = Vec::with_capacity(runs);
        let mut python = Vec::with_capacity(runs);
        for _ in 0..runs {
            // Tasks long enough that no worker finishes before the last starts.
            let report = Supervisor::new(Sleep::new(2 * n as u64, 500))
                .workers(n as u32)
                .quiet(true)
                .run()
                .map_err(|e| e.to_string())?;
            let seconds = report
                .startup_seconds
                .ok_or_else(|| format!("not all {n} workers became ready"))?;
            ours.push(seconds * 1e3);
            if let Some(s) = python_pool_seconds(n) {
                python.push(s * 1e3);
            }
        }
        let ours_ms = median(&ours);
        let python_ms = (!python.is_empty()).then(|| median(&python));
        rows.push(Row {
            bench: "startup",
            subject: format!("supervisor, {n} workers ready"),
            median_ms: Some(ours_ms),
            vs_baseline: python_ms.map(|p| ours_ms / p),
            baseline: python_ms.map(|_| "Python Pool(n) + a task each".into()),
            runs,
            ..Row::default()
        });
        if let Some(p) = python_ms {
            rows.push(Row {
                bench: "startup",
                subject: format!("Python Pool({n}) + a task each"),
                median_ms: Some(p),
                runs: python.len(),
                ..Row::default()
            });
        }
    }
    Ok(rows)
}
