//! `supervisor bench dispatch`: tasks through the whole supervisor (ledger,
//! batching, two worker processes, results counted once), in tasks per
//! second: no-op tasks, and the echo job's payloads of 64 B and 4 KiB, which
//! travel to the worker and back through its shared-memory queues. The user
//! chooses no chunk size: one task is one id.

use super::report::Row;
use super::stats::median;
use outlast::report::Outcome;
use outlast::Supervisor;
use outlast_worker::jobs::echo::Echo;
use outlast_worker::jobs::sleep::Sleep;

pub fn run(runs: usize, quick: bool) -> Result<Vec<Row>, String> {
    let tasks = if quick { 20_000 } else { 2_000_000 };
    let echo_tasks = if quick { 5_000 } else { 200_000 };
    let mut rows = Vec::new();
    for (subject, payload) in [
        ("no-op tasks, 2 workers", None),
        ("echo 64 B, 2 workers", Some(64)),
        ("echo 4 KiB, 2 workers", Some(4096)),
    ] {
        let mut rates = Vec::with_capacity(runs);
        let mut mbs = Vec::with_capacity(runs);
        for _ in 0..runs {
            let supervisor = match payload {
                None => Supervisor::new(Sleep::new(tasks, 0)),
                Some(bytes) => Supervisor::new(Echo::new(echo_tasks, bytes as u64)?),
            };
            let report = supervisor
                .workers(2)
                .quiet(true)
                .run()
                .map_err(|e| e.to_string())?;
            if report.outcome != Outcome::Success {
                return Err(format!("the dispatch run ended: {:?}", report.outcome));
            }
            rates.push(report.tasks_per_second);
            mbs.push(report.ipc.megabytes_per_second);
        }
        rows.push(Row {
            bench: "dispatch",
            subject: subject.to_string(),
            size_bytes: payload,
            msgs_per_s: Some(median(&rates)),
            mb_per_s: payload.map(|_| median(&mbs)),
            runs,
            ..Row::default()
        });
    }
    Ok(rows)
}
