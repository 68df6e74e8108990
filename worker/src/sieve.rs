//! Counting primes in a range with a segmented sieve of Eratosthenes: the
//! computation behind the `primes` job, where each task is one range.
//!
//! Only odd numbers are stored (one byte each), and a segment of 32 Ki odd
//! numbers fits in L1 cache, so any range costs memory proportional to the
//! square root of its end, not to its length.

/// Odd numbers per segment: 32 KiB of flags.
const SEGMENT: usize = 1 << 15;

/// How many primes `p` satisfy `lo <= p < hi`.
///
/// ```
/// assert_eq!(worker::sieve::count_primes(0, 100), 25);
/// assert_eq!(worker::sieve::count_primes(0, 1_000_000), 78_498);
/// ```
pub fn count_primes(lo: u64, hi: u64) -> u64 {
    count_primes_with(lo, hi, &mut || {})
}

/// [`count_primes`], calling `after_segment` once per segment sieved (a
/// worker beats its heartbeat there, so a long range never looks like a hang).
pub fn count_primes_with(lo: u64, hi: u64, after_segment: &mut dyn FnMut()) -> u64 {
    if hi <= lo {
        return 0;
    }
    let mut count = u64::from(lo <= 2 && 2 < hi);
    // The first odd number >= max(lo, 3).
    let start = lo.max(3) | 1;
    if start >= hi {
        return count;
    }
    let base = odd_primes_up_to((hi - 1).isqrt());
    let mut composite = vec![false; SEGMENT];
    let mut seg_lo = start;
    while seg_lo < hi {
        let seg_hi = seg_lo.saturating_add(2 * SEGMENT as u64).min(hi);
        // Odd numbers seg_lo, seg_lo + 2, ... below seg_hi; flag i stands for seg_lo + 2i.
        let n = (seg_hi - seg_lo).div_ceil(2) as usize;
        let flags = &mut composite[..n];
        flags.fill(false);
        for &p in &base {
            let square = p * p;
            if square >= seg_hi {
                break;
            }
            // The first odd multiple of p that is at least max(p², seg_lo).
            let mut m = square.max(seg_lo.div_ceil(p) * p);
            if m % 2 == 0 {
                m += p;
            }
            let mut i = ((m - seg_lo) / 2) as usize;
            while i < n {
                flags[i] = true;
                i += p as usize;
            }
        }
        count += flags.iter().filter(|&&c| !c).count() as u64;
        after_segment();
        seg_lo = seg_hi + (seg_hi - seg_lo) % 2; // stays odd
    }
    count
}

/// The odd primes up to and including `limit`, by a plain sieve.
fn odd_primes_up_to(limit: u64) -> Vec<u64> {
    let limit = limit as usize;
    let mut composite = vec![false; limit + 1];
    let mut primes = Vec::new();
    let mut p = 3;
    while p <= limit {
        if !composite[p] {
            primes.push(p as u64);
            let mut m = p * p;
            while m <= limit {
                composite[m] = true;
                m += 2 * p;
            }
        }
        p += 2;
    }
    primes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_prime(n: u64) -> bool {
        n >= 2
            && (2..)
                .take_while(|d| d * d <= n)
                .all(|d| !n.is_multiple_of(d))
    }

    #[test]
    fn known_values_of_pi() {
        assert_eq!(count_primes(0, 10), 4);
        assert_eq!(count_primes(0, 1_000_000), 78_498);
        assert_eq!(count_primes(0, 10_000_000), 664_579);
    }

    #[test]
    fn tiny_and_empty_ranges() {
        assert_eq!(count_primes(0, 0), 0);
        assert_eq!(count_primes(5, 5), 0);
        assert_eq!(count_primes(9, 3), 0);
        assert_eq!(count_primes(0, 2), 0);
        assert_eq!(count_primes(2, 3), 1);
        assert_eq!(count_primes(3, 4), 1);
        assert_eq!(count_primes(4, 5), 0);
        assert_eq!(count_primes(1, 2), 0);
    }

    #[test]
    fn agrees_with_trial_division_on_many_ranges() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..120 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let lo = state % 200_000;
            let hi = lo + (state >> 40) % 20_000;
            let expected = (lo..hi).filter(|&n| is_prime(n)).count() as u64;
            assert_eq!(count_primes(lo, hi), expected, "[{lo}, {hi})");
        }
    }

    #[test]
    fn chunks_add_up_to_the_whole() {
        let total: u64 = (0..100)
            .map(|i| count_primes(i * 100_003, (i + 1) * 100_003))
            .sum();
        assert_eq!(total, count_primes(0, 100 * 100_003));
    }
}
