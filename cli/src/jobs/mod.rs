//! The built-in jobs on the command line: each job's options (clap), one
//! file a job, and the table that finds them by name. The jobs themselves
//! live in the `outlast-worker` library; only how they are asked for on a
//! command line lives here.

pub mod args;
mod echo;
mod exec;
mod fault;
mod primes;
mod sleep;
mod worker_cmd;

use outlast_worker::jobs::{named, BuiltinJob};
use outlast_worker::work::AnyJob;

/// A built-in job as the command line builds it.
pub trait CliJob: BuiltinJob {
    /// Its own options.
    type Args: clap::Args + clap::FromArgMatches;
    /// The job, from its options and what the run around it says.
    fn build(args: Self::Args, run: &RunContext) -> Result<Self, String>;
}

/// A job's name, a one-line description, its options and how to build it.
pub struct CliEntry {
    pub name: &'static str,
    pub about: &'static str,
    /// Adds the job's options to a command.
    pub augment: fn(clap::Command) -> clap::Command,
    /// The job, from parsed options.
    pub build: fn(&clap::ArgMatches) -> Result<AnyJob, String>,
}

impl CliEntry {
    const fn of<J: CliJob>() -> Self {
        CliEntry {
            name: J::NAME,
            about: J::ABOUT,
            augment: <J::Args as clap::Args>::augment_args,
            build: build_from::<J>,
        }
    }
}

/// What a job's options may depend on in the run's own options.
pub struct RunContext {
    /// The run resumes a journal that holds something (`--journal` of a
    /// non-empty file): logs are appended to, not started again.
    pub resuming: bool,
}

impl RunContext {
    fn of(matches: &clap::ArgMatches) -> Self {
        let journal = matches
            .try_get_one::<std::path::PathBuf>("journal")
            .ok()
            .flatten();
        RunContext {
            resuming: journal.is_some_and(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0)),
        }
    }
}

fn build_from<J: CliJob>(matches: &clap::ArgMatches) -> Result<AnyJob, String> {
    let args =
        <J::Args as clap::FromArgMatches>::from_arg_matches(matches).map_err(|e| e.to_string())?;
    J::build(args, &RunContext::of(matches)).map(named::<J>)
}

/// Every built-in job, in the order `supervisor jobs` lists them.
pub const JOBS: &[CliEntry] = &[
    CliEntry::of::<outlast_worker::jobs::primes::Primes>(),
    CliEntry::of::<outlast_worker::jobs::sleep::Sleep>(),
    CliEntry::of::<outlast_worker::jobs::echo::Echo>(),
    CliEntry::of::<outlast_worker::jobs::fault::Fault>(),
    CliEntry::of::<outlast_worker::jobs::exec::Exec>(),
    CliEntry::of::<outlast_worker::jobs::worker_cmd::WorkerCmd>(),
];

/// The entry named `name`.
pub fn find(name: &str) -> Option<&'static CliEntry> {
    JOBS.iter().find(|e| e.name == name)
}
