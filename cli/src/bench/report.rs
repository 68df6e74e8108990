//! How benchmark results are shown: an aligned table for people, or one JSON
//! object per line (`--json`) for scripts such as `scripts/compare-python`.

use serde::Serialize;

/// One measured row. Fields that do not apply to a benchmark are `None` and
/// left out of the JSON.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Row {
    pub bench: &'static str,
    /// What was measured: "raw pipe", "ipc Pipe::simplex", "fork", ...
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msgs_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mb_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub median_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p90_ms: Option<f64>,
    /// Nanoseconds per operation, for operations far below a millisecond.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ns_per_op: Option<f64>,
    /// This row's rate divided by the baseline's rate measured in the same run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_baseline: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    pub runs: usize,
    /// Busy processes that ran beside the measurement (`--load`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<usize>,
}

pub fn print(rows: &[Row], json: bool) {
    if json {
        for row in rows {
            match serde_json::to_string(row) {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("cannot encode a result row: {e}"),
            }
        }
        return;
    }
    println!(
        "{:<8} {:<28} {:>7} {:>14} {:>9} {:>10} {:>8} {:>7} {:>16}",
        "bench",
        "subject",
        "size",
        "msgs|tasks/s",
        "MB/s",
        "median ms",
        "p90 ms",
        "ns/op",
        "vs baseline"
    );
    for r in rows {
        println!(
            "{:<8} {:<28} {:>7} {:>14} {:>9} {:>10} {:>8} {:>7} {:>16}",
            r.bench,
            r.subject,
            r.size_bytes.map(human_size).unwrap_or_default(),
            r.msgs_per_s.map(|v| format!("{v:.0}")).unwrap_or_default(),
            r.mb_per_s.map(|v| format!("{v:.0}")).unwrap_or_default(),
            r.median_ms.map(millis).unwrap_or_default(),
            r.p90_ms.map(millis).unwrap_or_default(),
            r.ns_per_op.map(|v| format!("{v:.1}")).unwrap_or_default(),
            match (&r.vs_baseline, &r.baseline) {
                (Some(x), Some(b)) => format!("{:.0} % of {b}", x * 100.0),
                _ => String::new(),
            }
        );
    }
}

/// A time in milliseconds, in microseconds when it is below 0.1 ms (so a
/// sub-millisecond figure never prints as 0.000).
fn millis(ms: f64) -> String {
    if ms < 0.1 {
        format!("{:.2} us", ms * 1e3)
    } else {
        format!("{ms:.3}")
    }
}

fn human_size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}
