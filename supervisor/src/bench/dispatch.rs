//! `supervisor bench dispatch`: tasks through the whole supervisor (ledger,
//! batching, two worker processes, results counted once), in tasks per
//! second: no-op tasks, and the echo job's payloads of 64 B and 4 KiB, which
//! travel to the worker and back through its shared-memory queues. The user
//! chooses no chunk size: one task is one id.

use super::report::Row;
use super::stats::median;
use crate::config::RunConfig;
use crate::report::Outcome;

pub fn run(runs: usize, quick: bool) -> Result<Vec<Row>, String> {
    let tasks = if quick { "20000" } else { "2000000" };
    let echo_tasks = if quick { "5000" } else { "200000" };
    let mut rows = Vec::new();
    for (subject, args, payload) in [
        (
            "no-op tasks, 2 workers",
            vec!["--job", "sleep", "--task-ms", "0", "--tasks", tasks],
            None,
        ),
        (
            "echo 64 B, 2 workers",
            vec![
                "--job",
                "echo",
                "--payload-bytes",
                "64",
                "--tasks",
                echo_tasks,
            ],
            Some(64),
        ),
        (
            "echo 4 KiB, 2 workers",
            vec![
                "--job",
                "echo",
                "--payload-bytes",
                "4096",
                "--tasks",
                echo_tasks,
            ],
            Some(4096),
        ),
    ] {
        let mut rates = Vec::with_capacity(runs);
        let mut mbs = Vec::with_capacity(runs);
        for _ in 0..runs {
            let mut all = vec!["--workers", "2", "--quiet"];
            all.extend(&args);
            let config = RunConfig::from_args(&all).map_err(|e| e.to_string())?;
            let report = crate::run::run(&config).map_err(|e| e.to_string())?;
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
