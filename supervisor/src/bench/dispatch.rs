//! `supervisor bench dispatch`: no-op tasks through the whole supervisor
//! (ledger, batching, two worker processes, results counted once), in
//! tasks per second. The user chooses no chunk size: one task is one id.

use super::report::Row;
use super::stats::median;
use crate::config::RunConfig;
use crate::report::Outcome;

pub fn run(runs: usize, quick: bool) -> Result<Vec<Row>, String> {
    let tasks = if quick { "20000" } else { "2000000" };
    let mut rates = Vec::with_capacity(runs);
    for _ in 0..runs {
        let config = RunConfig::from_args(&[
            "--workers",
            "2",
            "--job",
            "sleep",
            "--task-ms",
            "0",
            "--tasks",
            tasks,
            "--quiet",
        ])
        .map_err(|e| e.to_string())?;
        let report = crate::run::run(&config).map_err(|e| e.to_string())?;
        if report.outcome != Outcome::Success {
            return Err(format!("the dispatch run ended: {:?}", report.outcome));
        }
        rates.push(report.tasks_per_second);
    }
    Ok(vec![Row {
        bench: "dispatch",
        subject: "no-op tasks, 2 workers".to_string(),
        msgs_per_s: Some(median(&rates)),
        runs,
        ..Row::default()
    }])
}
