//! Value parsers for job options on the command line: counts as people
//! write them (`1e9`), rates between 0 and 1, seconds.

use std::time::Duration;

use outlast_worker::numbers::parse_count;

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

/// A size in bytes: `512M`, `1G`, `64K`, `1.5G` (powers of 1024; a
/// trailing `B` or `iB` allowed), or a plain number of bytes.
pub fn bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (number, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c.to_ascii_uppercase()),
        _ => (t, ' '),
    };
    let scale: u64 = match unit {
        ' ' => 1,
        'K' => 1 << 10,
        'M' => 1 << 20,
        'G' => 1 << 30,
        'T' => 1 << 40,
        _ => return Err(format!("`{text}` is not a size (512M, 1G, ...)")),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (512M, 1G, ...)"))?;
    let total = n * scale as f64;
    if !(0.0..=u64::MAX as f64).contains(&total) {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(total as u64)
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

#[cfg(test)]
mod tests {
    use super::bytes;

    #[test]
    fn sizes_as_people_write_them() {
        assert_eq!(bytes("512M"), Ok(512 << 20));
        assert_eq!(bytes("1G"), Ok(1 << 30));
        assert_eq!(bytes("1.5G"), Ok(3 << 29));
        assert_eq!(bytes("64KiB"), Ok(64 << 10));
        assert_eq!(bytes("100MB"), Ok(100 << 20));
        assert_eq!(bytes("4096"), Ok(4096));
        assert!(bytes("12X").is_err());
        assert!(bytes("-1M").is_err());
        assert!(bytes("M").is_err());
    }
}
