//! The built-in jobs, one file each, and the registry that finds them by
//! name (for the `supervisor` binary and for rebuilding a job from its
//! spec in broker mode). Each is an ordinary [`Job`]; its command-line
//! options live with the binary. Adding one is a file here and a line in
//! [`REGISTRY`].

pub mod echo;
pub mod exec;
pub mod fault;
pub mod primes;
pub mod sleep;
#[cfg(feature = "worker-cmd")]
pub mod worker_cmd;

use crate::job::Job;
use crate::work::AnyJob;

/// A job known by name (`--job NAME` on the command line).
pub trait BuiltinJob: Job + Clone {
    /// Its name after `--job`.
    const NAME: &'static str;
    /// One line for `supervisor jobs`.
    const ABOUT: &'static str;
}

/// A job's name, a one-line description and how to rebuild it.
pub struct RegistryEntry {
    pub name: &'static str,
    pub about: &'static str,
    /// The job, from its spec's bytes (see [`JobSpec`](crate::work::JobSpec)).
    pub from_spec: fn(&[u8]) -> Result<AnyJob, String>,
}

impl RegistryEntry {
    /// The entry of job `J`.
    pub const fn of<J: BuiltinJob>() -> Self {
        RegistryEntry {
            name: J::NAME,
            about: J::ABOUT,
            from_spec: from_spec::<J>,
        }
    }
}

fn from_spec<J: BuiltinJob>(bytes: &[u8]) -> Result<AnyJob, String> {
    let (job, _): (J, _) = outlast_ipc::codec::take_payload(bytes)
        .map_err(|e| format!("undecodable {} job: {e}", J::NAME))?;
    Ok(named(job))
}

/// The job with its types erased, its spec named as the registry names it.
pub fn named<J: BuiltinJob>(job: J) -> AnyJob {
    let mut any = AnyJob::new(job);
    if let Some(spec) = any.spec.as_mut() {
        spec.name = J::NAME.to_string();
    }
    any
}

/// Every built-in job.
pub const REGISTRY: &[RegistryEntry] = &[
    RegistryEntry::of::<primes::Primes>(),
    RegistryEntry::of::<sleep::Sleep>(),
    RegistryEntry::of::<echo::Echo>(),
    RegistryEntry::of::<fault::Fault>(),
    RegistryEntry::of::<exec::Exec>(),
    #[cfg(feature = "worker-cmd")]
    RegistryEntry::of::<worker_cmd::WorkerCmd>(),
];

/// The entry named `name`.
pub fn find(name: &str) -> Option<&'static RegistryEntry> {
    REGISTRY.iter().find(|e| e.name == name)
}

/// The work of the built-in job `name` made again from its spec's bytes.
pub fn work_from_spec(name: &str, bytes: &[u8]) -> Result<Box<dyn crate::work::Work>, String> {
    let entry = find(name).ok_or_else(|| format!("no built-in job `{name}`"))?;
    (entry.from_spec)(bytes).map(|job| job.work)
}

/// The names of the built-in jobs.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|e| e.name).collect()
}

/// The outcome of a job whose answer is how many of its tasks were done.
pub(crate) fn tasks_done(done: u64, tasks: u64, verified: Option<bool>) -> crate::job::JobOutcome {
    use crate::numbers::{group_thousands, plural};
    crate::job::JobOutcome {
        value: done.to_string(),
        summary: format!(
            "{} of {} done",
            group_thousands(done),
            plural(tasks, "task")
        ),
        verified,
    }
}

/// Sleeps `ms` milliseconds in slices, beating between them.
pub(crate) fn sleep_beating(ms: u64, ctx: &crate::job::TaskContext<'_>) {
    let end = std::time::Instant::now() + std::time::Duration::from_millis(ms);
    loop {
        let now = std::time::Instant::now();
        if now >= end {
            return;
        }
        std::thread::sleep((end - now).min(std::time::Duration::from_millis(50)));
        ctx.beat();
    }
}

/// The outcome of a job whose answer is how many of its `total` inputs
/// succeeded (exec, worker-cmd). Rebuilt from its spec (`supervisor
/// result` of a broker job), such a job does not know its inputs
/// (`total` is 0): it counts, and checks nothing.
pub(crate) fn succeeded_outcome(
    succeeded: u64,
    total: u64,
    noun: &str,
    complete: bool,
) -> crate::job::JobOutcome {
    use crate::numbers::{group_thousands, plural};
    let known = total > 0;
    let summary = if known {
        format!(
            "{} of {} succeeded",
            group_thousands(succeeded),
            plural(total, noun)
        )
    } else {
        format!("{} succeeded", plural(succeeded, noun))
    };
    crate::job::JobOutcome {
        value: succeeded.to_string(),
        summary,
        verified: (complete && known).then_some(succeeded == total),
    }
}
