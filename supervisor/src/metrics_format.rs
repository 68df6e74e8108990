//! The two text formats a scrape may ask for. The registry writes
//! OpenMetrics, where a counter's family is named without its `_total`
//! (`# TYPE supervisor_tasks counter`, samples `supervisor_tasks_total`)
//! and the text ends with `# EOF`. Prometheus' own text format (0.0.4,
//! what a scraper gets unless it asks for OpenMetrics, and what `promtool
//! check metrics` reads) names the family as its samples are named, has
//! no `# UNIT` and no `# EOF`: the same figures, relabelled here.

/// OpenMetrics, for scrapers that ask for it (`Accept:`).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Prometheus' text format, for everyone else.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `openmetrics` in Prometheus' 0.0.4 text format.
pub fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 64);
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(line.trim_end()),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Whether a request head asks for OpenMetrics.
pub fn wants_openmetrics(head: &[u8]) -> bool {
    String::from_utf8_lossy(head).lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("accept:") && l.contains("application/openmetrics-text")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: &str = "# HELP supervisor_tasks Tasks finished, by outcome.\n\
# TYPE supervisor_tasks counter\n\
supervisor_tasks_total{outcome=\"done\"} 5\n\
# HELP supervisor_tasks_remaining Tasks not finished yet.\n\
# TYPE supervisor_tasks_remaining gauge\n\
supervisor_tasks_remaining 3\n\
# EOF\n";

    #[test]
    fn counters_are_named_as_their_samples_and_eof_goes() {
        let text = prometheus_text(OPEN);
        assert_eq!(
            text,
            "# HELP supervisor_tasks_total Tasks finished, by outcome.\n\
# TYPE supervisor_tasks_total counter\n\
supervisor_tasks_total{outcome=\"done\"} 5\n\
# HELP supervisor_tasks_remaining Tasks not finished yet.\n\
# TYPE supervisor_tasks_remaining gauge\n\
supervisor_tasks_remaining 3\n"
        );
    }

    #[test]
    fn the_accept_header_chooses() {
        assert!(wants_openmetrics(
            b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0\r\n\r\n"
        ));
        assert!(!wants_openmetrics(
            b"GET /metrics HTTP/1.1\r\nAccept: text/plain\r\n\r\n"
        ));
    }
}
