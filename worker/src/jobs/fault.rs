//! `fault`: fault injection for demos and tests. Each attempt of a task may,
//! at the given rates, abort, segfault, exit, hang, return an error or write
//! garbage on the worker's channel; otherwise it waits `--task-ms` and returns
//! its id. `crash_task` makes one task abort its worker on every attempt.
//! The choice depends on (seed, task, attempt), so runs repeat exactly.

use serde::{Deserialize, Serialize};

use super::{sleep_beating, tasks_done, BuiltinJob};
use crate::job::{BadOutput, Job, JobOutcome, TaskContext};
use crate::numbers::plural;

/// Exit code of a worker that the `exit` fault ends.
pub const FAULT_EXIT_CODE: i32 = 13;

/// Bytes the `garbage` fault writes: a message that decodes as no `FromWorker`.
pub const GARBAGE: &[u8] = b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xffgarbage";

/// What one attempt of a task does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Abort,
    Segv,
    Exit,
    Hang,
    Error,
    Garbage,
    Finish,
}

/// What goes wrong, and how often: each rate is the chance (0 to 1) that
/// an attempt of a task does that instead of finishing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultSpec {
    /// Chance that an attempt aborts its worker (SIGABRT).
    pub abort: f64,
    /// Chance that an attempt segfaults its worker.
    pub segv: f64,
    /// Chance that an attempt exits its worker (code 13).
    pub exit: f64,
    /// Chance that an attempt hangs without beating.
    pub hang: f64,
    /// Chance that an attempt returns an error.
    pub error: f64,
    /// Chance that an attempt writes garbage on its link.
    pub garbage: f64,
    /// This task crashes its worker (abort) on every attempt.
    pub crash_task: Option<u64>,
    /// Seeds the choice of faulty attempts, so a run can be repeated.
    pub seed: u64,
    /// Each finished task leaks this much memory, never freed (`4M`): a
    /// worker that grows, for --max-worker-memory.
    pub leak: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Fault {
    tasks: u64,
    task_ms: u64,
    faults: FaultSpec,
    #[serde(skip)]
    done: u64,
    #[serde(skip)]
    id_sum: u128,
}

impl BuiltinJob for Fault {
    const NAME: &'static str = "fault";
    const ABOUT: &'static str =
        "tasks that abort, segfault, exit, hang, fail or write garbage at given rates";
}

impl Fault {
    pub fn new(tasks: u64, task_ms: u64, faults: FaultSpec) -> Result<Self, String> {
        let f = &faults;
        let rates = [f.abort, f.segv, f.exit, f.hang, f.error, f.garbage];
        if rates.iter().any(|r| !(0.0..=1.0).contains(r)) {
            return Err("fault rates are between 0 and 1".into());
        }
        if rates.iter().sum::<f64>() > 1.0 + 1e-9 {
            return Err("fault rates add up to more than 1".into());
        }
        Ok(Fault {
            tasks,
            task_ms,
            faults,
            done: 0,
            id_sum: 0,
        })
    }

    /// What attempt `attempt` of task `id` does.
    pub fn action(&self, id: u64, attempt: u32) -> Action {
        if self.faults.crash_task == Some(id) {
            return Action::Abort;
        }
        let f = &self.faults;
        let draw = unit(self.faults.seed, id, attempt);
        let mut edge = 0.0;
        for (rate, action) in [
            (f.abort, Action::Abort),
            (f.segv, Action::Segv),
            (f.exit, Action::Exit),
            (f.hang, Action::Hang),
            (f.error, Action::Error),
            (f.garbage, Action::Garbage),
        ] {
            edge += rate;
            if draw < edge {
                return action;
            }
        }
        Action::Finish
    }
}

/// A uniform number in [0, 1) from (seed, id, attempt): splitmix64.
fn unit(seed: u64, id: u64, attempt: u32) -> f64 {
    let mut z = seed
        .wrapping_add(id.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(u64::from(attempt).wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

impl Job for Fault {
    /// The task's id.
    type Input = u64;
    /// The task's id, given back.
    type Output = u64;
    type Error = String;

    fn name(&self) -> String {
        Self::NAME.into()
    }

    fn describe(&self) -> String {
        let f = &self.faults;
        let mut text = format!(
            "{} of {} ms with faults (abort {}, segv {}, exit {}, hang {}, error {}, garbage {})",
            plural(self.tasks, "task"),
            self.task_ms,
            f.abort,
            f.segv,
            f.exit,
            f.hang,
            f.error,
            f.garbage
        );
        if let Some(id) = f.crash_task {
            text.push_str(&format!("; task {id} always crashes its worker"));
        }
        text
    }

    fn task_count(&self) -> u64 {
        self.tasks
    }

    fn input(&self, id: u64) -> u64 {
        id
    }

    fn run(&self, id: u64, ctx: &mut TaskContext<'_>) -> Result<u64, String> {
        match self.action(id, ctx.attempt()) {
            Action::Abort => std::process::abort(),
            Action::Segv => {
                let _ = outlast_ipc::os::signals::set_default(libc::SIGSEGV);
                // SAFETY: raising a signal at ourselves; with the default
                // action the process ends as a real segfault would.
                unsafe { libc::raise(libc::SIGSEGV) };
                Err("SIGSEGV did not end the process".into())
            }
            Action::Exit => std::process::exit(FAULT_EXIT_CODE),
            Action::Hang => loop {
                // No beat: the supervisor's --worker-timeout must find this.
                std::thread::sleep(std::time::Duration::from_secs(3600));
            },
            Action::Error => Err(format!("task {id} failed on purpose")),
            Action::Garbage => {
                ctx.write_garbage(GARBAGE)?;
                // A worker that wrote garbage is killed; wait for it.
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(3600));
                }
            }
            Action::Finish => {
                sleep_beating(self.task_ms, ctx);
                leak(self.faults.leak);
                Ok(id)
            }
        }
    }

    fn combine(&mut self, id: u64, output: u64) -> Result<(), BadOutput> {
        if output != id {
            return Err(format!("task {id} returned someone else's id ({output})").into());
        }
        self.done += 1;
        self.id_sum += u128::from(id);
        Ok(())
    }

    fn outcome(&self, complete: bool) -> JobOutcome {
        let n = u128::from(self.tasks);
        let expected = n * n.saturating_sub(1) / 2;
        let verified = complete.then_some(self.done == self.tasks && self.id_sum == expected);
        tasks_done(self.done, self.tasks, verified)
    }
}

/// Allocates `bytes`, touches every page (so it counts as resident), and
/// forgets it.
fn leak(bytes: u64) {
    let Ok(len) = usize::try_from(bytes) else {
        return;
    };
    if len == 0 {
        return;
    }
    let mut block = vec![0u8; len];
    for page in block.chunks_mut(4096) {
        page[0] = 1;
    }
    std::mem::forget(block);
}
