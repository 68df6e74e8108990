//! Order statistics for benchmark samples. These machines are noisy, so
//! benchmarks report medians (and p90 for latencies), never means.

/// The value at quantile `q` (0.0 ..= 1.0) of `samples`, nearest-rank.
pub fn quantile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub fn median(samples: &[f64]) -> f64 {
    quantile(samples, 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p90_of_known_samples() {
        let s: Vec<f64> = (1..=11).map(f64::from).rev().collect();
        assert_eq!(median(&s), 6.0);
        assert_eq!(quantile(&s, 0.9), 10.0);
        assert_eq!(quantile(&s, 0.0), 1.0);
        assert!(median(&[]).is_nan());
    }
}
