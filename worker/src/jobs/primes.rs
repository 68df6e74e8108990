//! `primes`: counts the primes below a limit. Task `i` is the range
//! `[i * chunk, (i + 1) * chunk)`; its output is the count in that range.

use super::read_u64;
use crate::job::{Job, JobOutcome, JobSpec, TaskContext};
use crate::numbers::{group_thousands, short_count};
use crate::sieve;

/// pi(10^k) for k = 0..=12.
pub const KNOWN_PI: [u64; 13] = [
    0,
    4,
    25,
    168,
    1_229,
    9_592,
    78_498,
    664_579,
    5_761_455,
    50_847_534,
    455_052_511,
    4_118_054_813,
    37_607_912_018,
];

/// The known value of pi(limit), when `limit` is a power of ten up to 10^12.
pub fn known_pi(limit: u64) -> Option<u64> {
    (0..KNOWN_PI.len() as u32)
        .find(|&k| 10u64.pow(k) == limit)
        .map(|k| KNOWN_PI[k as usize])
}

/// The chunk used when none is given: about 256 tasks, each at least 10^6
/// numbers (below that, dispatch costs more than sieving) and at most 10^9.
pub fn default_chunk(limit: u64) -> u64 {
    limit.div_ceil(256).clamp(1_000_000, 1_000_000_000)
}

pub struct Primes {
    limit: u64,
    chunk: u64,
    count: u64,
}

impl Primes {
    pub fn new(spec: &JobSpec) -> Result<Self, String> {
        let chunk = if spec.chunk == 0 {
            default_chunk(spec.limit)
        } else {
            spec.chunk
        };
        if spec.limit > 1_000_000_000_000_000 {
            return Err("--limit above 1e15 would take years".into());
        }
        Ok(Primes {
            limit: spec.limit,
            chunk,
            count: 0,
        })
    }

    fn range(&self, id: u64) -> (u64, u64) {
        let lo = id.saturating_mul(self.chunk).min(self.limit);
        (lo, lo.saturating_add(self.chunk).min(self.limit))
    }
}

impl Job for Primes {
    fn describe(&self) -> String {
        format!(
            "count the primes below {} in {} tasks of {} numbers",
            short_count(self.limit),
            group_thousands(self.task_count()),
            short_count(self.chunk)
        )
    }

    fn task_count(&self) -> u64 {
        self.limit.div_ceil(self.chunk)
    }

    fn task_input(&self, id: u64) -> Vec<u8> {
        let (lo, hi) = self.range(id);
        let mut input = lo.to_le_bytes().to_vec();
        input.extend_from_slice(&hi.to_le_bytes());
        input
    }

    fn run(&self, input: &[u8], ctx: &mut TaskContext<'_>) -> Result<Vec<u8>, String> {
        let (Some(lo), Some(hi)) = (read_u64(input, 0), read_u64(input, 8)) else {
            return Err(format!(
                "a primes task input is 16 bytes, not {}",
                input.len()
            ));
        };
        let count = sieve::count_primes_with(lo, hi, &mut || ctx.beat());
        Ok(count.to_le_bytes().to_vec())
    }

    fn combine(&mut self, id: u64, output: &[u8]) -> Result<(), String> {
        let (lo, hi) = self.range(id);
        match read_u64(output, 0) {
            Some(count) if output.len() == 8 && count <= hi - lo => {
                self.count += count;
                Ok(())
            }
            _ => Err(format!("not a prime count for [{lo}, {hi})")),
        }
    }

    fn outcome(&self, complete: bool) -> JobOutcome {
        let limit = short_count(self.limit);
        let count = group_thousands(self.count);
        let known = known_pi(self.limit);
        let (summary, verified) = match (complete, known) {
            (false, _) => (format!("pi({limit}) >= {count} (incomplete)"), None),
            (true, Some(k)) if k == self.count => (
                format!("pi({limit}) = {count}, which matches the known value"),
                Some(true),
            ),
            (true, Some(k)) => (
                format!(
                    "pi({limit}) = {count}, but the known value is {}",
                    group_thousands(k)
                ),
                Some(false),
            ),
            (true, None) => (format!("pi({limit}) = {count}"), None),
        };
        JobOutcome {
            value: self.count.to_string(),
            summary,
            verified,
        }
    }
}
