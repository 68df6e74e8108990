//! Counting primes in a range with a segmented sieve of Eratosthenes: the
//! computation behind the `primes` job, where each task is one range.
//!
//! The sieve stores numbers modulo 30: a byte covers 30 numbers and its 8 bits
//! stand for the residues coprime to 30 (1, 7, 11, 13, 17, 19, 23, 29), so
//! multiples of 2, 3 and 5 take no space and no time. Multiples of 7 to 151
//! are copied and OR-ed in from precomputed patterns instead of crossed off. Every other
//! sieving prime `p` crosses off its multiples `p * m` with `m` coprime to 30:
//! for each of the 8 residues of `m`, that is every `p`-th byte with one fixed
//! bit. Segments of a quarter of the L2 cache (256 KiB, 7.8 M numbers, on a
//! 1 MiB L2) stay in it, and each prime's next position is carried from one
//! segment to the next.

use std::sync::OnceLock;

/// The longest range sieved in one go: its byte offsets must fit in u32.
const MAX_RANGE: u64 = 100_000_000_000;

/// Bytes per segment: a quarter of the L2 cache, the rest left to the
/// sieving primes and the patterns; read once from sysfs (1 MiB of L2 when
/// it says nothing). Larger segments spread each prime's setup over more
/// work, smaller ones keep the crossing off in the cache. Measured on a
/// 1 MiB L2 at 1e10: 256 KiB 0.70-0.79 s, 128 KiB 0.76, 512 KiB 0.76-0.82,
/// 64 KiB 0.82, 1 MiB 0.82-0.93 (cutting segments further into L1-sized
/// blocks for the small primes was slower: 0.77-0.90 s).
fn segment_bytes() -> usize {
    static BYTES: OnceLock<usize> = OnceLock::new();
    *BYTES.get_or_init(|| {
        let l2 = cache_size(2, "Unified").unwrap_or(1 << 20);
        (l2 / 4).clamp(64 << 10, 4 << 20)
    })
}

/// The size in bytes of cpu0's cache of `level` and `kind`, if sysfs says.
fn cache_size(level: u32, kind: &str) -> Option<usize> {
    let dir = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
    dir.flatten().find_map(|entry| {
        let read = |name: &str| std::fs::read_to_string(entry.path().join(name)).ok();
        let found_level: u32 = read("level")?.trim().parse().ok()?;
        if found_level != level || read("type")?.trim() != kind {
            return None;
        }
        parse_size(read("size")?.trim())
    })
}

/// `32K`, `1024K`, `2M` or a plain number of bytes.
fn parse_size(text: &str) -> Option<usize> {
    let (digits, unit) = match text.strip_suffix(['K', 'k']) {
        Some(d) => (d, 1 << 10),
        None => match text.strip_suffix(['M', 'm']) {
            Some(d) => (d, 1 << 20),
            None => (text, 1),
        },
    };
    digits.parse::<usize>().ok()?.checked_mul(unit)
}

/// The residues modulo 30 that a byte's bits stand for, bit 0 first.
const RESIDUES: [u64; 8] = [1, 7, 11, 13, 17, 19, 23, 29];

/// Primes whose multiples come from precomputed patterns instead of being
/// crossed off, in groups: each group's pattern repeats every product of
/// its primes bytes. The first is copied into a segment, the others are
/// OR-ed in (a pass over the segment that vectorises, where crossing off
/// the primes 23 to 163 would be 4.4 scattered writes per byte, 40 % of
/// all). Groups stay small enough that a pattern sits in the L2 cache.
const PRESIEVED: [&[u64]; 14] = [
    &[7, 11, 13, 17, 19],
    &[23, 29, 31],
    &[37, 41, 43],
    &[47, 53],
    &[59, 61],
    &[67, 71],
    &[73, 79],
    &[83, 89],
    &[97, 101],
    &[103, 107],
    &[109, 113],
    &[127, 131],
    &[137, 139],
    &[149, 151],
];
/// The largest presieved prime: sieving primes start after it.
const LAST_PRESIEVED: u64 = 151;

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

/// One pattern per group of [`PRESIEVED`]: byte `k` marks which of
/// `30k + residue` are divisible by one of the group's primes.
fn presieve_patterns() -> &'static [Vec<u8>] {
    static PATTERNS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    PATTERNS.get_or_init(|| PRESIEVED.iter().map(|group| pattern_of(group)).collect())
}

fn pattern_of(primes: &[u64]) -> Vec<u8> {
    let period: u64 = primes.iter().product();
    let mut pattern = vec![0u8; period as usize];
    for &p in primes {
        for (j, &r) in RESIDUES.iter().enumerate() {
            // Numbers 30k + r divisible by p: k ≡ -r * 30^-1 (mod p).
            let first = (0..p).find(|k| (30 * k + r) % p == 0).unwrap_or(0);
            let mut k = first as usize;
            while k < pattern.len() {
                pattern[k] |= 1 << j;
                k += p as usize;
            }
        }
    }
    pattern
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
    // 2, 3, 5 are not in the wheel, and the presieved primes are marked by
    // their own patterns.
    let mut count = [2, 3, 5]
        .iter()
        .chain(PRESIEVED.iter().flat_map(|group| group.iter()))
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

/// The primes in `[lo, hi)` that the wheel represents, except the
/// presieved ones (the caller counts those and 2, 3, 5). The bits of 1 and of the numbers
/// outside the range are set before counting.
fn sieve_range(lo: u64, hi: u64, scratch: &mut Scratch, after_segment: &mut dyn FnMut()) -> u64 {
    let mut count = 0;
    let first_byte = lo / 30;
    let end_byte = hi.div_ceil(30);
    let Scratch { segment, sieving } = scratch;
    fill_sieving_primes(sieving, hi, first_byte);
    let patterns = presieve_patterns();
    let seg_bytes = segment_bytes();
    segment.resize(seg_bytes, 0);
    let mut seg_start = first_byte;
    while seg_start < end_byte {
        let len = (end_byte - seg_start).min(seg_bytes as u64) as usize;
        let seg = &mut segment[..len];
        for (i, pattern) in patterns.iter().enumerate() {
            let phase = (seg_start % pattern.len() as u64) as usize;
            if i == 0 {
                copy_pattern(seg, pattern, phase);
            } else {
                or_pattern(seg, pattern, phase);
            }
        }
        for s in sieving.iter_mut() {
            cross_off(seg, s);
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

/// Crosses off the multiples of one sieving prime in `seg`, and carries its
/// sequences over to the next segment. The 8 sequences all advance by
/// `step` bytes and lie within `step` bytes of each other, so while the
/// furthest of them is inside the segment, one sweep sets all 8 bits of a
/// period (about as many cache lines as one pass touches, where 8 passes
/// would touch each line 8 times); the sequences then finish one by one.
#[inline]
fn cross_off(seg: &mut [u8], s: &mut Sieving) {
    let len = seg.len();
    let step = s.step as usize;
    let next = s.next.map(|n| n as usize);
    let furthest = next.iter().copied().max().unwrap_or(0);
    let mut shift = 0;
    if furthest < len {
        let periods = (len - 1 - furthest) / step + 1;
        for _ in 0..periods {
            for (&at, &mask) in next.iter().zip(&s.masks) {
                // SAFETY: at <= furthest and shift <= (periods - 1) * step, so
                // at + shift <= furthest + (len - 1 - furthest) < len.
                unsafe { *seg.get_unchecked_mut(at + shift) |= mask };
            }
            shift += step;
        }
    }
    for ((&at, &mask), carried) in next.iter().zip(&s.masks).zip(s.next.iter_mut()) {
        let mut i = at + shift;
        while i < len {
            seg[i] |= mask;
            i += step;
        }
        // Less than `step` past this segment: fits in u32.
        *carried = (i - len) as u32;
    }
}

/// Marks in `seg` what `pattern` marks, starting `phase` bytes into it.
fn or_pattern(seg: &mut [u8], pattern: &[u8], mut phase: usize) {
    let mut at = 0;
    while at < seg.len() {
        let n = (seg.len() - at).min(pattern.len() - phase);
        for (s, p) in seg[at..at + n].iter_mut().zip(&pattern[phase..phase + n]) {
            *s |= p;
        }
        at += n;
        phase = 0;
    }
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

/// Fills `out` with the primes after the presieved ones up to the square root of `hi`, each
/// with the first byte (counted from `first_byte`) of each of its 8
/// sequences of multiples.
fn fill_sieving_primes(out: &mut Vec<Sieving>, hi: u64, first_byte: u64) {
    let root = (hi - 1).isqrt();
    let base = first_byte * 30;
    out.clear();
    out.extend(
        odd_primes_up_to(root)
            .into_iter()
            .filter(|&p| p > LAST_PRESIEVED)
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

    #[test]
    fn cache_sizes_as_sysfs_writes_them() {
        assert_eq!(parse_size("32K"), Some(32 << 10));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("lots"), None);
        let bytes = segment_bytes();
        assert!((64 << 10..=4 << 20).contains(&bytes), "{bytes}");
    }

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
    fn many_segments_and_pattern_periods() {
        // 3.3 M bytes: a dozen segments, every pattern's period crossed.
        assert_eq!(count_primes(0, 100_000_000), 5_761_455);
        // Far out, split at a segment-unaligned point: the parts add up.
        let (lo, hi) = (100_000_000_000u64, 100_020_000_000u64);
        let mid = lo + 7_777_777;
        assert_eq!(
            count_primes(lo, mid) + count_primes(mid, hi),
            count_primes(lo, hi)
        );
    }

    #[test]
    fn chunks_add_up_to_the_whole() {
        let total: u64 = (0..100)
            .map(|i| count_primes(i * 100_003, (i + 1) * 100_003))
            .sum();
        assert_eq!(total, count_primes(0, 100 * 100_003));
    }
}
