//! The worker loop: what a supervised worker process runs from start to exit.
//!
//! It builds its job, says `Ready`, then runs the tasks it is sent in order
//! and reports results in batches: after each task that took a while, after
//! 256 quick ones, or when it has nothing left to run. It beats its heartbeat
//! slot between tasks, inside long tasks (the job calls `beat`), and while idle.
//!
//! Signals: `SIGTERM` lets the current task finish, reports, and exits
//! (tasks held but not started go back to the supervisor's queue). `SIGINT` is
//! ignored: a Ctrl-C on the terminal reaches the whole process group, and the
//! supervisor decides what it means. `SIGHUP`, `SIGTTIN` and `SIGTTOU` are the
//! supervisor's control signals and are ignored here too.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ipc::queue::GetTimeoutError;
use serde::{Deserialize, Serialize};

use crate::heartbeat::{monotonic_ns, HeartbeatTable, WorkerState};
use crate::job::{self, JobSpec, TaskContext};
use crate::link::Link;
use crate::protocol::{FromWorker, Task, TaskResult, ToWorker, PROTOCOL_VERSION};

/// How often an idle worker beats.
const IDLE_BEAT: Duration = Duration::from_millis(100);
/// Results are sent at least this often while tasks run back to back.
const REPORT_EVERY: Duration = Duration::from_millis(2);
/// ... and at least every this many results.
const REPORT_BATCH: usize = 256;
/// With fewer tasks than this held, look for new messages before each task;
/// with more, only every `LOOK_EVERY` tasks.
const LOW_WATER: usize = 32;
const LOOK_EVERY: u32 = 64;

/// Exit code of a worker that could not build its job.
pub const EXIT_BAD_JOB: i32 = 78;
/// Exit code of a worker whose link broke (supervisor gone, or garbage from it).
pub const EXIT_CHANNEL: i32 = 79;

/// A worker's arguments, handed over by the supervisor at start.
#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerArgs {
    /// The worker's number in the fleet, for logs.
    pub worker: u32,
    /// Its heartbeat slot in `heartbeat`.
    pub slot: u32,
    pub job: JobSpec,
    pub link: Link,
    pub heartbeat: HeartbeatTable,
}

/// What a worker returns when it exits normally.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerExit {
    pub tasks_run: u64,
    /// Why it stopped: `stop message`, `SIGTERM`, `supervisor gone`.
    pub reason: String,
}

static TERM_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigterm(_: libc::c_int) {
    TERM_REQUESTED.store(true, Ordering::Relaxed);
}

/// Puts the signal dispositions of a worker in place: its own SIGTERM
/// handler, SIGINT and the control signals ignored, the rest as the defaults (a forked worker
/// inherits the supervisor's handlers, which must not run here), and every
/// signal unblocked.
fn install_signal_handling() {
    use ipc::os::signals;
    let _ = signals::set_handler(libc::SIGTERM, on_sigterm);
    // `pkill -HUP -f supervisor` also reaches forked workers (same command
    // line): the supervisor's control signals must not stop or kill them.
    for sig in [libc::SIGINT, libc::SIGHUP, libc::SIGTTIN, libc::SIGTTOU] {
        let _ = signals::ignore(sig);
    }
    for sig in [libc::SIGQUIT, libc::SIGCHLD, libc::SIGUSR1, libc::SIGUSR2] {
        let _ = signals::set_default(sig);
    }
    let _ = signals::unblock_all();
}

/// The entry of every worker process (`ipc::Process::new(worker_main, args)`).
pub fn worker_main(args: WorkerArgs) -> WorkerExit {
    install_signal_handling();
    let WorkerArgs {
        slot,
        job,
        mut link,
        heartbeat,
        ..
    } = args;
    let slot = slot as usize;
    // The worker only takes from its task queue; when the supervisor's
    // handle is gone too, the queue reports Disconnected.
    link.tasks.close();
    let job = match job::build(&job) {
        Ok(job) => job,
        Err(e) => {
            eprintln!("worker: {e}");
            std::process::exit(EXIT_BAD_JOB);
        }
    };
    let pid = std::process::id();
    heartbeat.set_pid(slot, pid);
    heartbeat.beat(slot, WorkerState::Idle, None);
    if link
        .send(&FromWorker::Ready {
            protocol: PROTOCOL_VERSION,
            pid,
        })
        .is_err()
    {
        std::process::exit(EXIT_CHANNEL);
    }

    let mut held: VecDeque<Task> = VecDeque::new();
    let mut results: Vec<TaskResult> = Vec::new();
    let mut last_report = monotonic_ns();
    let mut since_look = 0u32;
    let mut stop_when_idle = false;
    let mut tasks_run = 0u64;
    let finish = |reason: &str, tasks_run: u64| WorkerExit {
        tasks_run,
        reason: reason.to_string(),
    };

    loop {
        if TERM_REQUESTED.load(Ordering::Relaxed) {
            heartbeat.beat(slot, WorkerState::Stopping, None);
            let _ = report(&mut link, &mut results);
            return finish("SIGTERM", tasks_run);
        }
        // Take in whatever the supervisor sent, waiting only with nothing to
        // do. With plenty held, look only now and then: each look is a syscall.
        since_look += 1;
        let look = held.len() < LOW_WATER || since_look >= LOOK_EVERY || stop_when_idle;
        if look {
            since_look = 0;
        }
        while look || held.is_empty() {
            let message = if held.is_empty() && results.is_empty() && !stop_when_idle {
                match link.receive(IDLE_BEAT) {
                    Ok(m) => m,
                    Err(GetTimeoutError::Empty) => {
                        heartbeat.beat(slot, WorkerState::Idle, None);
                        break;
                    }
                    // The supervisor is gone, or sent garbage.
                    Err(GetTimeoutError::Get(_)) => std::process::exit(EXIT_CHANNEL),
                }
            } else {
                match link.receive(Duration::ZERO) {
                    Ok(m) => m,
                    Err(GetTimeoutError::Empty) => break,
                    Err(GetTimeoutError::Get(_)) => std::process::exit(EXIT_CHANNEL),
                }
            };
            match message {
                ToWorker::Tasks(tasks) => held.extend(tasks),
                ToWorker::Stop => stop_when_idle = true,
            }
        }
        let Some(task) = held.pop_front() else {
            if report(&mut link, &mut results).is_err() {
                return finish("supervisor gone", tasks_run);
            }
            if stop_when_idle {
                heartbeat.beat(slot, WorkerState::Stopping, None);
                return finish("stop message", tasks_run);
            }
            continue;
        };

        heartbeat.beat(slot, WorkerState::Busy, Some(task.id));
        let started = monotonic_ns();
        let beat = || heartbeat.touch(slot);
        let mut ctx = TaskContext {
            id: task.id,
            attempt: task.attempt,
            beat: &beat,
            link: &mut link,
        };
        let output = job.run(&task.input, &mut ctx);
        tasks_run += 1;
        heartbeat.add_done(slot, 1);
        results.push(TaskResult {
            id: task.id,
            output: output.into(),
        });
        let now = monotonic_ns();
        let every = REPORT_EVERY.as_nanos() as u64;
        let long_task = now.saturating_sub(started) >= every;
        if held.is_empty()
            || long_task
            || results.len() >= REPORT_BATCH
            || now.saturating_sub(last_report) >= every
        {
            if report(&mut link, &mut results).is_err() {
                return finish("supervisor gone", tasks_run);
            }
            last_report = now;
        }
        heartbeat.beat(slot, WorkerState::Idle, None);
    }
}

/// Sends the results gathered so far, if any.
fn report(link: &mut Link, results: &mut Vec<TaskResult>) -> Result<(), ipc::queue::PutError> {
    if results.is_empty() {
        return Ok(());
    }
    let batch = FromWorker::Results(std::mem::take(results));
    link.send(&batch)
}
