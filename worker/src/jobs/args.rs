//! Value parsers for job options on the command line: counts as people
//! write them (`1e9`), rates between 0 and 1, seconds.

use std::time::Duration;

use crate::numbers::parse_count;

/// `1e9`, `10^9`, `1_000_000_000`.
pub fn count(text: &str) -> Result<u64, String> {
    parse_count(text).map_err(|e| e.to_string())
}

/// A count that must be at least 1.
pub fn positive_count(text: &str) -> Result<u64, String> {
    match count(text)? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

/// A chance between 0 and 1.
pub fn rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("`{text}` is not a rate between 0 and 1")),
    }
}

/// Seconds, fractions allowed, with or without a trailing `s`.
pub fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(0.0..=1e9).contains(&secs) {
        return Err(format!("`{text}` is out of range (0 to 1e9 seconds)"));
    }
    Ok(Duration::from_secs_f64(secs))
}
