//! Counting primes in a range with a segmented sieve of Eratosthenes: the
//! computation behind the `primes` job, where each task is one range.
//!
//! The sieve stores numbers modulo 30: a byte covers 30 numbers and its 8 bits
//! stand for the residues coprime to 30 (1, 7, 11, 13, 17, 19, 23, 29), so
//! multiples of 2, 3 and 5 take no space and no time. Multiples of 7 to 151
//! are copied and OR-ed in from precomputed patterns instead of crossed off.
//! Every other sieving prime `p` crosses off its multiples `p * m` with `m`
//! coprime to 30, in groups of 8 (one per bit) `p` bytes apart.
//!
//! The layout follows primesieve's, sized from the machine's caches (sysfs):
//! a segment is about twice the square root of the limit in bytes (at most
//! half the L2 cache), cut into blocks of the L1 data cache. The small primes
//! (at least 5 multiples per block), which make most of all crossings, cross
//! off block by block while the block is in L1; the others over the whole
//! segment. Measured at 1e10 on one core with a 48 KiB L1d and a 2 MiB L2:
//! 2.0 s with the former single 512 KiB segment, 1.05 s with this layout
//! (blocks of half the L1: 1.15 s; small primes up to a tenth of a block
//! 1.10 s, up to 0.4 of it 1.11 s; segments of 1x or 8x the square root
//! 1.36 s and 1.09 s), and primesieve 12 `-t1` takes 0.97 s there.

use std::sync::OnceLock;

/// The longest range sieved in one go: its byte offsets must fit in u32.
const MAX_RANGE: u64 = 100_000_000_000;

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

/// A group's pattern: byte `k` marks which of `30k + residue` are divisible
/// by one of the group's primes. It repeats every `period` bytes, and is
/// stored with a block's worth more so that a block reads it in one piece.
struct Pattern {
    period: u64,
    bytes: Vec<u8>,
}

/// One pattern per group of [`PRESIEVED`], each `extra` bytes longer than
/// its period (the block size; patterns are built once per process).
fn presieve_patterns(extra: usize) -> &'static Patterns {
    static PATTERNS: OnceLock<Patterns> = OnceLock::new();
    PATTERNS.get_or_init(|| Patterns {
        extra,
        groups: PRESIEVED
            .iter()
            .map(|group| pattern_of(group, extra))
            .collect(),
    })
}

struct Patterns {
    extra: usize,
    groups: Vec<Pattern>,
}

fn pattern_of(primes: &[u64], extra: usize) -> Pattern {
    let period: u64 = primes.iter().product();
    let mut bytes = vec![0u8; period as usize + extra];
    for &p in primes {
        for (j, &r) in RESIDUES.iter().enumerate() {
            // Numbers 30k + r divisible by p: k ≡ -r * 30^-1 (mod p).
            let first = (0..p).find(|k| (30 * k + r) % p == 0).unwrap_or(0);
            let mut k = first as usize;
            while k < bytes.len() {
                bytes[k] |= 1 << j;
                k += p as usize;
            }
        }
    }
    Pattern { period, bytes }
}

/// How many primes `p` satisfy `lo <= p < hi`.
///
/// ```
/// assert_eq!(outlast_worker::sieve::count_primes(0, 100), 25);
/// assert_eq!(outlast_worker::sieve::count_primes(0, 1_000_000), 78_498);
/// ```
///
/// Exact for any range below 10^15 (the `primes` job's cap); the sieving
/// primes take memory and time in proportion to the square root of `hi`.
pub fn count_primes(lo: u64, hi: u64) -> u64 {
    count_primes_with(lo, hi, &mut || {})
}

/// The residues of [`RESIDUES`] followed by 31, the first residue of the
/// next group: multiples `p * m` of a sieving prime are walked with `m`
/// running through these, 30 apart from one group to the next.
const WALK: [usize; 9] = [1, 7, 11, 13, 17, 19, 23, 29, 31];

/// For a prime `p = 30 * sp + c` with `c = RESIDUES[k]`, the multiple
/// `p * (30 * q + WALK[j])` sits in byte `p * q + sp * WALK[j] + CARRY[k][j]`
/// (`CARRY[k][j]` is `c * WALK[j] / 30`) at bit `BIT[k][j]`.
const CARRY: [[usize; 9]; 8] = carries();
const BIT: [[u8; 8]; 8] = bits();

const fn carries() -> [[usize; 9]; 8] {
    let mut table = [[0; 9]; 8];
    let mut k = 0;
    while k < 8 {
        let mut j = 0;
        while j < 9 {
            table[k][j] = RESIDUES[k] as usize * WALK[j] / 30;
            j += 1;
        }
        k += 1;
    }
    table
}

const fn bits() -> [[u8; 8]; 8] {
    let mut table = [[0; 8]; 8];
    let mut k = 0;
    while k < 8 {
        let mut j = 0;
        while j < 8 {
            let residue = RESIDUES[k] as usize * WALK[j] % 30;
            let mut bit = 0;
            while RESIDUES[bit] as usize != residue {
                bit += 1;
            }
            table[k][j] = 1 << bit;
            j += 1;
        }
        k += 1;
    }
    table
}

/// A sieving prime `30 * sp + RESIDUES[k]` (its `k` is the list it is kept
/// in) and its next multiple to cross off: byte `at` of the current block,
/// the `step`-th of its group of 8 (12 bytes, so the thousand small primes
/// fit in the L1 cache beside the block they cross off in).
#[derive(Clone, Copy)]
struct Sieving {
    sp: u32,
    at: u32,
    step: u8,
}

/// Sieving primes sorted by their residue modulo 30, so that each list is
/// crossed off by code specialised for its residue (constant offsets and
/// bits, no per-prime dispatch).
#[derive(Default)]
struct ByResidue([Vec<Sieving>; 8]);

impl ByResidue {
    fn clear(&mut self) {
        self.0.iter_mut().for_each(Vec::clear);
    }

    /// Crosses off every prime's multiples in `block` and carries each to
    /// the next block.
    fn cross_off(&mut self, block: &mut [u8]) {
        let [r1, r7, r11, r13, r17, r19, r23, r29] = &mut self.0;
        cross_off::<0>(block, r1);
        cross_off::<1>(block, r7);
        cross_off::<2>(block, r11);
        cross_off::<3>(block, r13);
        cross_off::<4>(block, r17);
        cross_off::<5>(block, r19);
        cross_off::<6>(block, r23);
        cross_off::<7>(block, r29);
    }
}

/// Buffers reused from one range to the next: allocating the segment per
/// task made the allocator grow and trim the heap each time (page faults in
/// a loop, 20 % of a worker's time).
#[derive(Default)]
struct Scratch {
    segment: Vec<u8>,
    /// Primes crossed off block by block (L1-sized), while the block is
    /// in the L1 cache: most of all crossings.
    small: ByResidue,
    /// The others, over the whole segment at once.
    medium: ByResidue,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// [`count_primes`], calling `after_segment` once per segment sieved (a
/// worker beats its heartbeat there, so a long range never looks like a hang).
pub fn count_primes_with(lo: u64, hi: u64, after_segment: &mut dyn FnMut()) -> u64 {
    count_sized(lo, hi, Sizes::for_limit, after_segment)
}

/// [`count_primes_with`] with segments, blocks and small primes sized by
/// `sizes` from the range's end (tests use tiny ones, to cross many seams).
fn count_sized(lo: u64, hi: u64, sizes: fn(u64) -> Sizes, after_segment: &mut dyn FnMut()) -> u64 {
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
        count += sieve_range(from, to, &sizes(to), &mut scratch, after_segment);
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
fn sieve_range(
    lo: u64,
    hi: u64,
    sizes: &Sizes,
    scratch: &mut Scratch,
    after_segment: &mut dyn FnMut(),
) -> u64 {
    let mut count = 0;
    let first_byte = lo / 30;
    let end_byte = hi.div_ceil(30);
    let Scratch {
        segment,
        small,
        medium,
    } = scratch;
    fill_sieving_primes(small, medium, sizes.small_limit, hi, first_byte);
    let patterns = presieve_patterns(sizes.block);
    segment.resize(sizes.segment, 0);
    let mut seg_start = first_byte;
    while seg_start < end_byte {
        let len = (end_byte - seg_start).min(sizes.segment as u64) as usize;
        let seg = &mut segment[..len];
        let mut block_start = seg_start;
        for block in seg.chunks_mut(sizes.block) {
            presieve(block, patterns, block_start);
            small.cross_off(block);
            block_start += block.len() as u64;
        }
        medium.cross_off(seg);
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

/// Crosses off in `block` the multiples of each prime of residue
/// `RESIDUES[K]` in `primes`, and carries each prime to the next block.
///
/// A prime's multiples come in groups of 8, one per bit, `p` bytes apart
/// from one group to the next. The group under way is finished one multiple
/// at a time, then whole groups are crossed off with 8 writes at offsets
/// fixed for the prime, then what fits of the last group (the layout of
/// primesieve's EratSmall, after Achim Flammenkamp).
#[inline(always)]
fn cross_off<const K: usize>(block: &mut [u8], primes: &mut [Sieving]) {
    let len = block.len();
    let carry = &CARRY[K];
    let bit = &BIT[K];
    for prime in primes {
        let sp = prime.sp as usize;
        let mut at = prime.at as usize;
        let mut step = prime.step as usize;
        // Bytes from a multiple to the next one in the walk.
        let gap = |j: usize| sp * (WALK[j + 1] - WALK[j]) + carry[j + 1] - carry[j];
        'block: {
            while step != 0 {
                if at >= len {
                    break 'block;
                }
                block[at] |= bit[step];
                at += gap(step);
                step = (step + 1) & 7;
            }
            // Offsets of a group's 8 multiples from its first one.
            let offset = |j: usize| sp * (WALK[j] - 1) + carry[j];
            let (o1, o2, o3, o4, o5, o6, o7) = (
                offset(1),
                offset(2),
                offset(3),
                offset(4),
                offset(5),
                offset(6),
                offset(7),
            );
            let group = 30 * sp + RESIDUES[K] as usize;
            while at + o7 < len {
                // SAFETY: every offset is at most o7 and at + o7 < len.
                unsafe {
                    *block.get_unchecked_mut(at) |= bit[0];
                    *block.get_unchecked_mut(at + o1) |= bit[1];
                    *block.get_unchecked_mut(at + o2) |= bit[2];
                    *block.get_unchecked_mut(at + o3) |= bit[3];
                    *block.get_unchecked_mut(at + o4) |= bit[4];
                    *block.get_unchecked_mut(at + o5) |= bit[5];
                    *block.get_unchecked_mut(at + o6) |= bit[6];
                    *block.get_unchecked_mut(at + o7) |= bit[7];
                }
                at += group;
            }
            // The last group does not fit whole: its 8th multiple at the
            // latest is past the block.
            while at < len {
                block[at] |= bit[step];
                at += gap(step);
                step += 1;
            }
        }
        // Less than a group (p bytes) past the block: fits in u32.
        prime.at = (at - len) as u32;
        prime.step = step as u8;
    }
}

/// Sets in `block` the bits of the multiples of the presieved primes, for
/// a block starting at byte `start` of the number line: up to 4 patterns
/// per pass (primesieve's way), each pass a loop that vectorises.
fn presieve(block: &mut [u8], patterns: &Patterns, start: u64) {
    let mut piece_start = start;
    // Blocks are at most the patterns' extra length; pieces make sure.
    for piece in block.chunks_mut(patterns.extra.max(1)) {
        let len = piece.len();
        let mut windows: [&[u8]; PRESIEVED.len()] = [&[]; PRESIEVED.len()];
        for (window, pattern) in windows.iter_mut().zip(&patterns.groups) {
            let phase = (piece_start % pattern.period) as usize;
            *window = &pattern.bytes[phase..phase + len];
        }
        let [a, b, c, d, rest @ ..] = windows;
        copy_or4(piece, [a, b, c, d]);
        for parts in rest.chunks(4) {
            match *parts {
                [a, b, c, d] => or4(piece, [a, b, c, d]),
                [a, b, c] => or4(piece, [a, b, c, c]),
                [a, b] => or4(piece, [a, b, b, b]),
                [a] => or4(piece, [a, a, a, a]),
                _ => {}
            }
        }
        piece_start += len as u64;
    }
}

/// Stores in `piece` the OR of 4 windows of its length.
fn copy_or4(piece: &mut [u8], [a, b, c, d]: [&[u8]; 4]) {
    let parts = a.iter().zip(b).zip(c).zip(d);
    for (s, (((a, b), c), d)) in piece.iter_mut().zip(parts) {
        *s = a | b | c | d;
    }
}

/// ORs into `piece` 4 windows of its length.
fn or4(piece: &mut [u8], [a, b, c, d]: [&[u8]; 4]) {
    let parts = a.iter().zip(b).zip(c).zip(d);
    for (s, (((a, b), c), d)) in piece.iter_mut().zip(parts) {
        *s |= a | b | c | d;
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

/// Fills `small` (primes up to `small_limit`) and `medium` with the primes
/// after the presieved ones up to the square root of `hi`, each with its
/// first multiple from `first_byte` on that is at least its square.
fn fill_sieving_primes(
    small: &mut ByResidue,
    medium: &mut ByResidue,
    small_limit: u64,
    hi: u64,
    first_byte: u64,
) {
    let root = (hi - 1).isqrt();
    let base = first_byte * 30;
    small.clear();
    medium.clear();
    for p in odd_primes_up_to(root) {
        if p <= LAST_PRESIEVED {
            continue;
        }
        // Multiples below p² were crossed off by smaller primes.
        let start = (p * p).max(base);
        let m0 = start.div_ceil(p);
        // The first m >= m0 coprime to 30, and its place in the walk.
        let (step, m) = (0..8)
            .map(|j| (j, m0 + (RESIDUES[j] + 30 - m0 % 30) % 30))
            .min_by_key(|&(_, m)| m)
            .unwrap_or((0, m0));
        let k = RESIDUES.iter().position(|&r| r == p % 30).unwrap_or(0);
        // Inside the range or less than 30p past it (p < 2^32/30 below
        // 1e15), and ranges are at most MAX_RANGE long: fits u32.
        let sieving = Sieving {
            sp: (p / 30) as u32,
            at: (p * m / 30 - first_byte) as u32,
            step: step as u8,
        };
        let list = if p <= small_limit {
            &mut *small
        } else {
            &mut *medium
        };
        list.0[k].push(sieving);
    }
}

/// How a range is cut: segments (counted at once), blocks (crossed off by
/// the small primes while in the L1 cache), and which primes are small.
struct Sizes {
    segment: usize,
    block: usize,
    small_limit: u64,
}

impl Sizes {
    /// As primesieve sizes them: blocks of the L1 cache; the small primes
    /// are those with at least 5 multiples per block; a segment is twice
    /// the square root of `hi` in bytes (so a medium prime has some 60
    /// multiples in it, spreading its setup), a whole number of blocks,
    /// and at most half the L2 cache.
    fn for_limit(hi: u64) -> Self {
        let (l1, l2) = cache_sizes();
        let block = l1;
        let wanted = (hi.isqrt() as usize).saturating_mul(2);
        let segment = (wanted - wanted % block).clamp(block, (l2 / 2).max(block));
        Sizes {
            segment,
            block,
            small_limit: (block as u64) / 5,
        }
    }
}

/// The L1 data and L2 cache sizes of cpu0, read once from sysfs (48 KiB
/// and 1 MiB when it says nothing), within sane bounds.
fn cache_sizes() -> (usize, usize) {
    static SIZES: OnceLock<(usize, usize)> = OnceLock::new();
    *SIZES.get_or_init(|| {
        let l1 = cache_size(1, "Data")
            .unwrap_or(48 << 10)
            .clamp(16 << 10, 1 << 20);
        let l2 = cache_size(2, "Unified")
            .unwrap_or(1 << 20)
            .clamp(l1, 16 << 20);
        (l1, l2)
    })
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
        let (l1, l2) = cache_sizes();
        assert!((16 << 10..=1 << 20).contains(&l1), "{l1}");
        assert!((l1..=16 << 20).contains(&l2), "{l2}");
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

    /// `count` pseudo-random ranges (xorshift from `seed`) starting below
    /// `max_lo`, each shorter than `max_len`.
    fn random_ranges(seed: u64, count: usize, max_lo: u64, max_len: u64) -> Vec<(u64, u64)> {
        let mut state = seed;
        (0..count)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let lo = state % max_lo;
                (lo, lo + (state >> 40) % max_len)
            })
            .collect()
    }

    #[test]
    fn agrees_with_trial_division_on_many_ranges() {
        for (lo, hi) in random_ranges(0x9E37_79B9_7F4A_7C15, 120, 200_000, 20_000) {
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

    /// Blocks of 64 bytes, segments of 4 blocks, small primes up to 400:
    /// every prime meets block and segment ends in small ranges.
    fn tiny(_hi: u64) -> Sizes {
        Sizes {
            segment: 256,
            block: 64,
            small_limit: 400,
        }
    }

    #[test]
    fn tiny_blocks_and_segments_agree_with_trial_division() {
        for (lo, hi) in random_ranges(0x2545_F491_4F6C_DD1D, 60, 3_000_000, 40_000) {
            let expected = (lo..hi).filter(|&n| is_prime(n)).count() as u64;
            assert_eq!(
                count_sized(lo, hi, tiny, &mut || {}),
                expected,
                "[{lo}, {hi})"
            );
        }
        // Many segments, all three kinds of seams, against the known pi(10^7).
        assert_eq!(count_sized(0, 10_000_000, tiny, &mut || {}), 664_579);
    }

    /// Deterministic Miller-Rabin for every u64 (the first 12 primes as bases).
    fn is_prime_mr(n: u64) -> bool {
        const BASES: [u64; 12] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];
        if n < 2 {
            return false;
        }
        if let Some(&p) = BASES.iter().find(|&&p| n % p == 0) {
            return n == p;
        }
        let mul = |a: u64, b: u64| (u128::from(a) * u128::from(b) % u128::from(n)) as u64;
        let pow = |mut b: u64, mut e: u64| {
            let mut r = 1;
            while e > 0 {
                if e & 1 == 1 {
                    r = mul(r, b);
                }
                b = mul(b, b);
                e >>= 1;
            }
            r
        };
        let s = (n - 1).trailing_zeros();
        let d = (n - 1) >> s;
        BASES.iter().all(|&a| {
            let mut x = pow(a, d);
            if x == 1 || x == n - 1 {
                return true;
            }
            (1..s).any(|_| {
                x = mul(x, x);
                x == n - 1
            })
        })
    }

    #[test]
    fn primes_larger_than_a_segment_cross_off_right() {
        // Sieving primes up to 10^7, whose groups of multiples are far
        // longer than a segment: most meet a segment without a multiple.
        let lo = 100_000_000_000_000u64;
        let expected = (lo..lo + 30_000).filter(|&n| is_prime_mr(n)).count() as u64;
        assert_eq!(count_primes(lo, lo + 30_000), expected);
        assert_eq!(count_sized(lo, lo + 30_000, tiny, &mut || {}), expected);
    }

    #[test]
    fn chunks_add_up_to_the_whole() {
        let total: u64 = (0..100)
            .map(|i| count_primes(i * 100_003, (i + 1) * 100_003))
            .sum();
        assert_eq!(total, count_primes(0, 100 * 100_003));
    }
}
