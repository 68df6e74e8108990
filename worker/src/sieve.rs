//! Counting primes in a range with a segmented sieve of Eratosthenes: the
//! computation behind the `primes` job, where each task is one range.
//!
//! The sieve stores numbers modulo 30: a byte covers 30 numbers and its 8 bits
//! stand for the residues coprime to 30 (1, 7, 11, 13, 17, 19, 23, 29), so
//! multiples of 2, 3 and 5 take no space and no time. Multiples of 7 to 19 are
//! copied in from a precomputed pattern instead of crossed off. Every other
//! sieving prime `p` crosses off its multiples `p * m` with `m` coprime to 30:
//! for each of the 8 residues of `m`, that is every `p`-th byte with one fixed
//! bit. Segments of 256 KiB (7.8 M numbers) stay in the L2 cache, and each
//! prime's next position is carried from one segment to the next.

use std::sync::OnceLock;

/// The longest range sieved in one go: its byte offsets must fit in u32.
const MAX_RANGE: u64 = 100_000_000_000;

/// Bytes per segment (7.8 M numbers): measured fastest here; it fits the L2
/// cache, and larger segments spread each prime's setup over more work.
const SEGMENT_BYTES: usize = 256 * 1024;

/// The residues modulo 30 that a byte's bits stand for, bit 0 first.
const RESIDUES: [u64; 8] = [1, 7, 11, 13, 17, 19, 23, 29];

/// Primes whose multiples come from [`presieve_pattern`].
const PRESIEVED: [u64; 5] = [7, 11, 13, 17, 19];
/// The pattern's period in bytes: 7 * 11 * 13 * 17 * 19.
const PATTERN_BYTES: usize = 323_323;

/// The bit standing for residue `r` (which must be coprime to 30).
fn bit_of(r: u64) -> u8 {
    match r {
        1 => 1,
        7 => 2,
        11 => 4,
        13 => 8,
        17 => 16,
        19 => 32,
        23 => 64,
        _ => 128,
    }
}

/// Byte `k` of the pattern marks which of `30k + residue` are divisible by 7..19.
fn presieve_pattern() -> &'static [u8] {
    static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    PATTERN.get_or_init(|| {
        let mut pattern = vec![0u8; PATTERN_BYTES];
        for &p in &PRESIEVED {
            for (j, &r) in RESIDUES.iter().enumerate() {
                // Numbers 30k + r divisible by p: k ≡ -r * 30^-1 (mod p).
                let first = (0..p).find(|k| (30 * k + r) % p == 0).unwrap_or(0);
                let mut k = first as usize;
                while k < PATTERN_BYTES {
                    pattern[k] |= 1 << j;
                    k += p as usize;
                }
            }
        }
        pattern
    })
}

/// How many primes `p` satisfy `lo <= p < hi`.
///
/// ```
/// assert_eq!(outlast_worker::sieve::count_primes(0, 100), 25);
/// assert_eq!(outlast_worker::sieve::count_primes(0, 1_000_000), 78_498);
/// ```
pub fn count_primes(lo: u64, hi: u64) -> u64 {
    count_primes_with(lo, hi, &mut || {})
}

/// A sieving prime and where its 8 sequences of multiples go next, as byte
/// offsets from the start of the current segment (44 bytes, so the list of
/// primes up to 10^5 stays in the L2 cache beside the segment).
struct Sieving {
    step: u32,
    next: [u32; 8],
    masks: [u8; 8],
}

/// Buffers reused from one range to the next: allocating 256 KiB per task
/// made the allocator grow and trim the heap each time (page faults in a
/// loop, 20 % of a worker's time).
#[derive(Default)]
struct Scratch {
    segment: Vec<u8>,
    sieving: Vec<Sieving>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// [`count_primes`], calling `after_segment` once per segment sieved (a
/// worker beats its heartbeat there, so a long range never looks like a hang).
pub fn count_primes_with(lo: u64, hi: u64, after_segment: &mut dyn FnMut()) -> u64 {
    if hi <= lo {
        return 0;
    }
    // 2, 3, 5 are not in the wheel, and 7..19 are marked by the pattern.
    let mut count = [2, 3, 5]
        .iter()
        .chain(&PRESIEVED)
        .filter(|&&p| lo <= p && p < hi)
        .count() as u64;
    let scratch =
        SCRATCH.try_with(|s| s.try_borrow_mut().map(|mut s| std::mem::take(&mut *s)).ok());
    let mut scratch = scratch.ok().flatten().unwrap_or_default();
    // Offsets are u32 bytes: sieve at most MAX_RANGE numbers at a time.
    let mut from = lo;
    while from < hi {
        let to = hi.min(from.saturating_add(MAX_RANGE));
        count += sieve_range(from, to, &mut scratch, after_segment);
        from = to;
    }
    let _ = SCRATCH.try_with(|s| {
        if let Ok(mut slot) = s.try_borrow_mut() {
            *slot = scratch;
        }
    });
    count
}

/// The primes in `[lo, hi)` that the wheel represents, except 7..19 (the
/// caller counts 2, 3, 5 and 7..19). The bits of 1 and of the numbers
/// outside the range are set before counting.
fn sieve_range(lo: u64, hi: u64, scratch: &mut Scratch, after_segment: &mut dyn FnMut()) -> u64 {
    let mut count = 0;
    let first_byte = lo / 30;
    let end_byte = hi.div_ceil(30);
    let Scratch { segment, sieving } = scratch;
    fill_sieving_primes(sieving, hi, first_byte);
    let pattern = presieve_pattern();
    segment.resize(SEGMENT_BYTES, 0);
    let mut seg_start = first_byte;
    while seg_start < end_byte {
        let len = (end_byte - seg_start).min(SEGMENT_BYTES as u64) as usize;
        let seg = &mut segment[..len];
        copy_pattern(seg, pattern, (seg_start % PATTERN_BYTES as u64) as usize);
        for s in sieving.iter_mut() {
            let step = s.step as usize;
            for j in 0..8 {
                let mask = s.masks[j];
                let mut i = s.next[j] as usize;
                while i < len {
                    seg[i] |= mask;
                    i += step;
                }
                // Less than `step` past this segment: fits in u32.
                s.next[j] = (i - len) as u32;
            }
        }
        // Numbers outside [lo, hi) and 1 (not a prime) do not count.
        if seg_start == first_byte {
            for (j, &r) in RESIDUES.iter().enumerate() {
                let n = first_byte * 30 + r;
                if n < lo || n == 1 {
                    seg[0] |= 1 << j;
                }
            }
        }
        if seg_start + len as u64 == end_byte {
            for (j, &r) in RESIDUES.iter().enumerate() {
                if (end_byte - 1) * 30 + r >= hi {
                    seg[len - 1] |= 1 << j;
                }
            }
        }
        count += count_zero_bits(seg);
        after_segment();
        seg_start += len as u64;
    }
    count
}

/// Fills `seg` with the pattern, starting `phase` bytes into it.
fn copy_pattern(seg: &mut [u8], pattern: &[u8], mut phase: usize) {
    let mut at = 0;
    while at < seg.len() {
        let n = (seg.len() - at).min(pattern.len() - phase);
        seg[at..at + n].copy_from_slice(&pattern[phase..phase + n]);
        at += n;
        phase = 0;
    }
}

fn count_zero_bits(seg: &[u8]) -> u64 {
    let mut chunks = seg.chunks_exact(8);
    let mut zeros: u64 = (&mut chunks)
        .map(|c| u64::from(u64::from_ne_bytes(c.try_into().unwrap_or([0xff; 8])).count_zeros()))
        .sum();
    zeros += chunks
        .remainder()
        .iter()
        .map(|b| u64::from(b.count_zeros()))
        .sum::<u64>();
    zeros
}

/// Fills `out` with the primes from 23 up to the square root of `hi`, each
/// with the first byte (counted from `first_byte`) of each of its 8
/// sequences of multiples.
fn fill_sieving_primes(out: &mut Vec<Sieving>, hi: u64, first_byte: u64) {
    let root = (hi - 1).isqrt();
    let base = first_byte * 30;
    out.clear();
    out.extend(
        odd_primes_up_to(root)
            .into_iter()
            .filter(|&p| p > 19)
            .map(|p| {
                // Multiples below p² were crossed off by smaller primes.
                let start = (p * p).max(base);
                let m0 = start.div_ceil(p);
                let mut next = [0; 8];
                let mut masks = [0; 8];
                for (j, &r) in RESIDUES.iter().enumerate() {
                    // The first m >= m0 with m ≡ r (mod 30).
                    let m = m0 + (r + 30 - m0 % 30) % 30;
                    let n = p * m;
                    // Inside the range or less than 30p past it (p < 2^32/30
                    // below 1e15), and ranges are at most MAX_RANGE long: fits u32.
                    next[j] = (n / 30 - first_byte) as u32;
                    masks[j] = bit_of(n % 30);
                }
                Sieving {
                    step: p as u32,
                    next,
                    masks,
                }
            }),
    );
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
        n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
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
    fn ranges_far_out_agree_with_trial_division() {
        let lo = 1_000_000_000_000u64;
        let expected = (lo..lo + 3_000).filter(|&n| is_prime(n)).count() as u64;
        assert_eq!(count_primes(lo, lo + 3_000), expected);
    }

    #[test]
    fn chunks_add_up_to_the_whole() {
        let total: u64 = (0..100)
            .map(|i| count_primes(i * 100_003, (i + 1) * 100_003))
            .sum();
        assert_eq!(total, count_primes(0, 100 * 100_003));
    }
}
