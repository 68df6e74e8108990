//! `primes`: counts the primes below a limit. Task `i` is the range
//! `[i * chunk, (i + 1) * chunk)`; its output is the count in that range.

use serde::{Deserialize, Serialize};

use super::BuiltinJob;
use crate::job::{BadOutput, Job, JobOutcome, TaskContext};
use crate::numbers::{group_thousands, plural, short_count};
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

/// The most tasks a run may have: past this the ledger and the report
/// cost more than the sieving.
pub const MAX_TASKS: u64 = 100_000_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Primes {
    limit: u64,
    chunk: u64,
    /// Supervisor side: the primes counted so far.
    #[serde(skip)]
    count: u64,
}

impl Primes {
    /// Counts the primes below `limit` in tasks of `chunk` numbers
    /// (`None`: [`default_chunk`]).
    pub fn new(limit: u64, chunk: Option<u64>) -> Result<Self, String> {
        if limit > 1_000_000_000_000_000 {
            return Err("--limit above 1e15 would take years".into());
        }
        let chunk = match chunk {
            None => default_chunk(limit),
            Some(0) => return Err("--chunk must be at least 1".into()),
            Some(chunk) => chunk,
        };
        let tasks = limit.div_ceil(chunk);
        if tasks > MAX_TASKS {
            return Err(format!(
                "--chunk {chunk} makes {tasks} tasks, more than the {MAX_TASKS} a run may have: use --chunk {} or more",
                limit.div_ceil(MAX_TASKS)
            ));
        }
        Ok(Primes {
            limit,
            chunk,
            count: 0,
        })
    }

    fn range(&self, id: u64) -> (u64, u64) {
        let lo = id.saturating_mul(self.chunk).min(self.limit);
        (lo, lo.saturating_add(self.chunk).min(self.limit))
    }
}

impl BuiltinJob for Primes {
    const NAME: &'static str = "primes";
    const ABOUT: &'static str = "count the primes below --limit, in ranges of --chunk numbers";
}

impl Job for Primes {
    /// The range `[lo, hi)`.
    type Input = (u64, u64);
    /// The primes in it.
    type Output = u64;
    type Error = std::convert::Infallible;

    fn name(&self) -> String {
        Self::NAME.into()
    }

    fn describe(&self) -> String {
        format!(
            "count the primes below {} in {} of {} numbers",
            short_count(self.limit),
            plural(self.task_count(), "task"),
            short_count(self.chunk)
        )
    }

    fn task_count(&self) -> u64 {
        self.limit.div_ceil(self.chunk)
    }

    fn input(&self, id: u64) -> (u64, u64) {
        self.range(id)
    }

    fn run(
        &self,
        (lo, hi): (u64, u64),
        ctx: &mut TaskContext<'_>,
    ) -> Result<u64, std::convert::Infallible> {
        Ok(sieve::count_primes_with(lo, hi, &mut || ctx.beat()))
    }

    fn combine(&mut self, id: u64, count: u64) -> Result<(), BadOutput> {
        let (lo, hi) = self.range(id);
        if count > hi - lo {
            return Err(format!("{count} is not a prime count for [{lo}, {hi})").into());
        }
        self.count += count;
        Ok(())
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
