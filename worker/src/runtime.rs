//! The worker loop: what a supervised worker process runs from start to exit.
//!
//! It starts its runner (a job's `start_worker`, a pool's initializer), says `Ready`, then runs the tasks it is sent in order
//! and reports results in batches: after each task that took a while, after
//! 256 quick ones, when it has nothing left to run, or after every task for
//! a runner that asks (a pool: its tasks are chunks). It beats its heartbeat
//! slot between tasks, inside long tasks (the job calls `beat`), and while idle.
//!
//! Signals: `SIGTERM` lets the current task finish, reports, and exits
//! (tasks held but not started go back to the supervisor's queue). `SIGINT` is
//! ignored: a Ctrl-C on the terminal reaches the whole process group, and the
//! supervisor decides what it means. `SIGHUP`, `SIGTTIN` and `SIGTTOU` are the
//! supervisor's control signals and are ignored here too.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt::Display;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::heartbeat::{monotonic_ns, WorkerState};
use crate::job::TaskContext;
use crate::last_words;
use crate::link::{LinkSendError, Received, WorkerLink};
use crate::protocol::{FromWorker, Task, TaskOutput, TaskResult, PROTOCOL_VERSION};
use crate::runner::Runner;

/// How often an idle worker beats (and a worker waiting for room to send).
pub(crate) const IDLE_BEAT: Duration = Duration::from_millis(100);
/// How long a worker waits for room in its results ring before it gives up.
const SEND_PATIENCE: Duration = Duration::from_secs(3600);
/// Results are sent at least this often while tasks run back to back.
const REPORT_EVERY: Duration = Duration::from_millis(2);
/// ... and at least every this many results.
const REPORT_BATCH: usize = 256;
/// Bytes a result takes in a batch besides its output (id, tags, lengths).
const RESULT_OVERHEAD: usize = 64;
/// With fewer tasks than this held, look for new messages before each task;
/// with more, only every `LOOK_EVERY` tasks.
const LOW_WATER: usize = 32;
const LOOK_EVERY: u32 = 64;

/// Exit code of a worker whose runner could not start (a job's
/// `start_worker` or a pool's initializer failed, or a `--worker-cmd`
/// program never said hello). The supervisor charges no task for it: the
/// tasks it held go back, and its restart limit stops a run whose workers
/// never start.
pub const EXIT_START_FAILED: i32 = 78;
/// Exit code of a worker whose link broke (supervisor gone, or garbage from it).
pub const EXIT_CHANNEL: i32 = 79;

/// A worker's arguments, handed over by the supervisor at start.
#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerArgs<W> {
    /// The worker's number in the fleet, for logs.
    pub worker: u32,
    /// What runs the tasks: the job's copy for this worker.
    pub runner: W,
    /// Its link to the supervisor, heartbeat slot included.
    pub link: WorkerLink,
}

/// What a worker returns when it exits normally.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerExit {
    pub tasks_run: u64,
    /// Why it stopped: `stop message`, `SIGTERM`, `supervisor gone`.
    pub reason: String,
}

static TERM_REQUESTED: AtomicBool = AtomicBool::new(false);

/// This worker's number in the fleet, for [`exit_cannot_start`]'s line.
static WORKER_NUMBER: AtomicU32 = AtomicU32::new(0);

/// Ends this worker as one that could not start: a line on stderr saying
/// `why`, then [`EXIT_START_FAILED`]. For a runner that finds out where it
/// cannot return an error (in a panic hook under `panic = "abort"`, or
/// when the program it starts for its first task fails).
pub fn exit_cannot_start(why: impl Display) -> ! {
    let worker = WORKER_NUMBER.load(Ordering::Relaxed);
    outlast_ipc::os::stderr::line(format_args!("worker {worker}: cannot start: {why}"));
    std::process::exit(EXIT_START_FAILED)
}

extern "C" fn on_sigterm(_: libc::c_int) {
    TERM_REQUESTED.store(true, Ordering::Relaxed);
}

/// Puts the signal dispositions of a worker in place: its own SIGTERM
/// handler, SIGINT and the control signals ignored, the rest as the defaults (a forked worker
/// inherits the supervisor's handlers, which must not run here), and every
/// signal unblocked.
fn install_signal_handling() {
    use outlast_ipc::os::signals;
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

/// The entry of every worker process (`outlast_ipc::Process::new(worker_main::<W>, args)`).
pub fn worker_main<W: Runner>(args: WorkerArgs<W>) -> WorkerExit {
    install_signal_handling();
    let WorkerArgs {
        runner: mut job,
        link,
        worker,
    } = args;
    // Shared, not owned, while a task runs: a runner's panic hook may send
    // the task's last words through it (see `last_words`).
    let link = RefCell::new(link);
    WORKER_NUMBER.store(worker, Ordering::Relaxed);
    name_this_process(worker, &job.name());
    if let Err(e) = job.start() {
        exit_cannot_start(e);
    }
    let pid = std::process::id();
    link.borrow().heartbeat().set_pid(pid);
    link.borrow().heartbeat().beat(WorkerState::Idle, None);
    let ready = FromWorker::Ready {
        protocol: PROTOCOL_VERSION,
        pid,
    };
    if link
        .borrow_mut()
        .send(&ready, IDLE_BEAT, SEND_PATIENCE)
        .is_err()
    {
        std::process::exit(EXIT_CHANNEL);
    }

    let mut held: VecDeque<Task> = VecDeque::new();
    let mut results: Vec<TaskResult> = Vec::new();
    let mut last_report = monotonic_ns();
    // The coarse clock, read once a task (and after each wait).
    let mut clock = last_report;
    let mut since_look = 0u32;
    let mut stop_when_idle = false;
    let mut tasks_run = 0u64;
    let mut pending_bytes = 0usize;
    let each_task = job.report_each_task();
    let finish = |reason: &str, tasks_run: u64| WorkerExit {
        tasks_run,
        reason: reason.to_string(),
    };

    loop {
        if TERM_REQUESTED.load(Ordering::Relaxed) {
            link.borrow().heartbeat().beat(WorkerState::Stopping, None);
            let _ = report(&link, &mut results);
            return finish("SIGTERM", tasks_run);
        }
        // Take in whatever the supervisor sent, waiting only with nothing to
        // do. With plenty held, look only now and then.
        since_look += 1;
        let look = held.len() < LOW_WATER || since_look >= LOOK_EVERY || stop_when_idle;
        if look {
            since_look = 0;
        }
        while look || held.is_empty() {
            let idle = held.is_empty() && results.is_empty() && !stop_when_idle;
            let wait = if idle { IDLE_BEAT } else { Duration::ZERO };
            let received = link.borrow_mut().receive(&mut held, wait);
            if !wait.is_zero() {
                clock = monotonic_ns();
            }
            let message = match received {
                Ok(Some(m)) => m,
                Ok(None) => {
                    if idle {
                        link.borrow()
                            .heartbeat()
                            .beat_at(WorkerState::Idle, None, clock);
                    }
                    break;
                }
                // The supervisor is gone, or sent garbage.
                Err(_) => std::process::exit(EXIT_CHANNEL),
            };
            if message == Received::Stop {
                stop_when_idle = true;
            }
        }
        let Some(task) = held.pop_front() else {
            if report(&link, &mut results).is_err() {
                return finish("supervisor gone", tasks_run);
            }
            if stop_when_idle {
                link.borrow().heartbeat().beat(WorkerState::Stopping, None);
                return finish("stop message", tasks_run);
            }
            continue;
        };

        let task_id = task.id;
        link.borrow()
            .heartbeat()
            .beat_at(WorkerState::Busy, Some(task.id), clock);
        let started = clock;
        let mut ctx = TaskContext {
            id: task.id,
            attempt: task.attempt,
            worker,
            link: &link,
            too_large: None,
        };
        let output = last_words::lend(&link, task_id, || job.run_task(&task.input, &mut ctx));
        let too_large = ctx.too_large;
        drop(task);
        tasks_run += 1;
        link.borrow().heartbeat().add_done(1);
        // An output over the link's cap is that task's error, final: the
        // supervisor would refuse it, and running it again changes nothing.
        let output = match (too_large, output) {
            (Some((len, max)), _) => TaskOutput::TooLarge { len, max },
            (None, Ok(bytes)) if bytes.len() as u64 > link.borrow().max_message => {
                TaskOutput::TooLarge {
                    len: bytes.len() as u64,
                    max: link.borrow().max_message,
                }
            }
            (None, other) => TaskOutput::from(other),
        };
        let size = match &output {
            TaskOutput::Done(bytes) => bytes.len() + RESULT_OVERHEAD,
            _ => RESULT_OVERHEAD,
        };
        // Results gathered go in one ring record; one too large for the
        // ring goes alone (spilled), so send those before it first.
        let max = link.borrow().results.max_message();
        if pending_bytes + size > max && !results.is_empty() {
            if report(&link, &mut results).is_err() {
                return finish("supervisor gone", tasks_run);
            }
            pending_bytes = 0;
        }
        pending_bytes += size;
        match output {
            TaskOutput::Done(bytes) => TaskResult::push_done(&mut results, task_id, bytes),
            output => results.push(TaskResult {
                id: task_id,
                output,
            }),
        }
        // Idle before the result can reach the supervisor: once it has
        // counted the task, the slot never claims it again.
        clock = monotonic_ns();
        link.borrow()
            .heartbeat()
            .beat_at(WorkerState::Idle, None, clock);
        let now = clock;
        let every = REPORT_EVERY.as_nanos() as u64;
        let long_task = now.saturating_sub(started) >= every;
        // A batch past a quarter of the ring goes now, so rings never fill
        // with one record.
        let full = pending_bytes >= max / 4;
        if held.is_empty()
            || each_task
            || long_task
            || full
            || results.len() >= REPORT_BATCH
            || now.saturating_sub(last_report) >= every
        {
            if report(&link, &mut results).is_err() {
                return finish("supervisor gone", tasks_run);
            }
            last_report = now;
            pending_bytes = 0;
        }
    }
}

/// Sends the results gathered so far, if any.
fn report(link: &RefCell<WorkerLink>, results: &mut Vec<TaskResult>) -> Result<(), LinkSendError> {
    if results.is_empty() {
        return Ok(());
    }
    let batch = FromWorker::Results(std::mem::take(results));
    let sent = link.borrow_mut().send(&batch, IDLE_BEAT, SEND_PATIENCE);
    // The vector comes back for the next batch: a fresh one grew (and was
    // copied) from nothing each time.
    if let FromWorker::Results(mut sent_ones) = batch {
        sent_ones.clear();
        *results = sent_ones;
    }
    sent
}

/// Names the worker's process: `w3 primes` (its slot and job; the kernel
/// keeps 15 bytes) for `ps -o comm` and `top`, and the title `supervisor:
/// worker 3 (primes)` for `ps` (over its own copy of the command line, so
/// as long as that is), so workers are told from the supervisor in fork
/// and spawn mode alike.
fn name_this_process(worker: u32, job: &str) {
    outlast_ipc::os::process::set_name(&format!("w{worker} {job}"));
    // The program's own name first: a user's program's workers are its
    // (`myapp: worker 1 (pool)`), as the supervisor's are its own.
    let program = outlast_ipc::os::process::program_name().unwrap_or_else(|| "worker".into());
    set_title(&format!("{program}: worker {worker} ({job})"));
}

extern "C" {
    /// glibc's pointer to `argv[0]`, where the command line's strings begin.
    static program_invocation_name: *mut libc::c_char;
}

/// Writes `title` over this process's command line (as `setproctitle`):
/// only after checking that the memory at `argv[0]` holds exactly what
/// `/proc/self/cmdline` says, and never past its end.
fn set_title(title: &str) {
    let Ok(cmdline) = std::fs::read("/proc/self/cmdline") else {
        return;
    };
    if cmdline.len() < 2 {
        return;
    }
    // SAFETY: reading a pointer-sized static glibc sets before main.
    let start = unsafe { program_invocation_name } as *mut u8;
    if start.is_null() {
        return;
    }
    // SAFETY: the kernel says the command line is `cmdline.len()` bytes
    // from argv[0]; we only read them if argv[0] is their start, which the
    // comparison below checks byte by byte before anything is written.
    let here = unsafe { std::slice::from_raw_parts(start, cmdline.len()) };
    if here != cmdline.as_slice() {
        return;
    }
    let mut bytes = title.as_bytes().to_vec();
    bytes.truncate(cmdline.len() - 1);
    bytes.resize(cmdline.len(), 0);
    // SAFETY: the same `cmdline.len()` bytes, checked above to be this
    // process's own command line (its copy, after fork or exec).
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), start, bytes.len()) };
}
