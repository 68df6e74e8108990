//! Numbers as people write them: `1e9`, `10^9`, `1_000_000_000`, `2.5e6`
//! on the way in, `50,847,534` on the way out.

/// Why a count could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseCountError {
    #[error("`{text}` is not a whole number (try 1000000, 1_000_000, 1e6 or 10^6)")]
    NotANumber { text: String },
    #[error("`{text}` is too large (the most is 18,446,744,073,709,551,615, about 1.8e19)")]
    TooLarge { text: String },
}

/// Reads a non-negative whole number written plainly, with `_` or `,`
/// separators, in scientific notation (`1e9`, `2.5e6`) or as a power (`10^9`).
///
/// ```
/// use outlast_worker::numbers::{parse_count, ParseCountError};
/// assert_eq!(parse_count("1e9"), Ok(1_000_000_000));
/// assert_eq!(parse_count("10^9"), Ok(1_000_000_000));
/// assert_eq!(parse_count("1_000_000_000"), Ok(1_000_000_000));
/// assert_eq!(parse_count("2.5e3"), Ok(2_500));
/// assert!(matches!(parse_count("1.5"), Err(ParseCountError::NotANumber { .. })));
/// assert!(matches!(parse_count("1e30"), Err(ParseCountError::TooLarge { .. })));
/// ```
pub fn parse_count(text: &str) -> Result<u64, ParseCountError> {
    let not_a_number = || ParseCountError::NotANumber {
        text: text.to_string(),
    };
    let too_large = || ParseCountError::TooLarge {
        text: text.to_string(),
    };
    let cleaned: String = text
        .trim()
        .chars()
        .filter(|c| *c != '_' && *c != ',')
        .collect();
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    // Digits that do not fit a u64 are too large, not malformed.
    let whole = |s: &str| {
        if !all_digits(s) {
            return Err(not_a_number());
        }
        s.parse::<u64>().map_err(|_| too_large())
    };
    if let Some((base, exponent)) = cleaned.split_once('^') {
        let base = whole(base)?;
        let exponent = whole(exponent)?;
        let exponent = u32::try_from(exponent).map_err(|_| too_large())?;
        return base.checked_pow(exponent).ok_or_else(too_large);
    }
    if let Some((mantissa, exponent)) = cleaned.split_once(['e', 'E']) {
        let exponent = whole(exponent)?;
        let (int_part, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if int_part.is_empty() && fraction.is_empty() {
            return Err(not_a_number());
        }
        let digits = format!("{int_part}{fraction}");
        let digits = whole(&digits)?;
        // 2.5e6 = 25 * 10^(6 - 1): shift the point right, exactly.
        let shift = exponent
            .checked_sub(fraction.len() as u64)
            .ok_or_else(not_a_number)?;
        if digits == 0 {
            return Ok(0);
        }
        let shift = u32::try_from(shift).map_err(|_| too_large())?;
        return 10u64
            .checked_pow(shift)
            .and_then(|scale| digits.checked_mul(scale))
            .ok_or_else(too_large);
    }
    whole(&cleaned)
}

/// `1 task`, `2 tasks`, `1,000 tasks`: a count with its noun (plural in `s`).
///
/// ```
/// use outlast_worker::numbers::plural;
/// assert_eq!(plural(1, "crash"), "1 crash");
/// assert_eq!(plural(2, "crash"), "2 crashes");
/// assert_eq!(plural(1000, "task"), "1,000 tasks");
/// ```
pub fn plural(n: u64, noun: &str) -> String {
    let count = group_thousands(n);
    if n == 1 {
        return format!("{count} {noun}");
    }
    let ends_in_s = ["s", "sh", "ch", "x", "z"]
        .iter()
        .any(|e| noun.ends_with(e));
    if ends_in_s {
        format!("{count} {noun}es")
    } else {
        format!("{count} {noun}s")
    }
}

/// `50847534` as `50,847,534`.
///
/// ```
/// assert_eq!(outlast_worker::numbers::group_thousands(50_847_534), "50,847,534");
/// assert_eq!(outlast_worker::numbers::group_thousands(999), "999");
/// ```
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1000000000` as `1e9` when it is a power of ten times a small number, else grouped.
pub fn short_count(n: u64) -> String {
    if n >= 1000 {
        let mut m = n;
        let mut e = 0;
        while m % 10 == 0 {
            m /= 10;
            e += 1;
        }
        if m < 10 && e >= 3 {
            return format!("{m}e{e}");
        }
    }
    group_thousands(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_of_a_billion() {
        for text in [
            "1000000000",
            "1e9",
            "1E9",
            "10^9",
            "1_000_000_000",
            "1,000,000,000",
            "0.001e12",
        ] {
            assert_eq!(parse_count(text), Ok(1_000_000_000), "{text}");
        }
    }

    #[test]
    fn refusals() {
        for text in [
            "", "-5", "1.5", "1e", "e9", "10^99", "1e30", "abc", "1.25e1",
        ] {
            assert!(parse_count(text).is_err(), "{text}");
        }
    }

    #[test]
    fn short_forms() {
        assert_eq!(short_count(1_000_000_000), "1e9");
        assert_eq!(short_count(20_000_000), "2e7");
        assert_eq!(short_count(1234), "1,234");
        assert_eq!(short_count(7), "7");
    }
}
