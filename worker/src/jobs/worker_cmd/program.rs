//! One long-lived worker program, as a worker process holds it: started
//! (in a process group of its own, SIGKILLed if its worker dies), greeted,
//! handed one task at a time, read back within the task's time, its stderr
//! passed through (by a thread) with the slot in front of each line, and shut down by
//! closing its stdin. Its stdout is read without blocking into a buffer
//! bounded by the frame cap: a program that writes without end, or never
//! ends a line, costs at most that much.

use std::io::{BufRead, Read, Write};
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use super::protocol::{parse_frame, task_frame, Frame, PROTOCOL};

/// How often a worker waiting on its program beats.
const BEAT_EVERY: Duration = Duration::from_millis(100);
/// How long a program shut down gets to exit before SIGKILL.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// What a task's answer was.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// The output value's JSON text.
    Output(String),
    /// The program's error message.
    Error(String),
}

/// A running worker program.
pub struct Program {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    /// Bytes of stdout after the last complete line.
    pending: Vec<u8>,
    /// How many of `pending` are known to hold no line end: each read is
    /// searched once (searching all of it after every read made an 80 MB
    /// answer take a minute).
    scanned: usize,
    max_frame: usize,
    /// The option that set `max_frame`, for the error that names it.
    frame_option: &'static str,
    /// Bytes of a frame that passed `max_frame`, once one has.
    over_cap: Option<usize>,
    /// The thread passing its stderr on; joined when it is dropped.
    stderr_forwarder: Option<std::thread::JoinHandle<()>>,
    /// Its worker's slot, for the lines it says about the program.
    slot: u32,
    /// While waiting for the hello: when to say that it is slow to come.
    hello_hint_at: Option<Instant>,
}

/// A program silent this long after its start is told about (it may not
/// be a worker program at all: `cat` waits for its input forever).
const HELLO_HINT_AFTER: Duration = Duration::from_secs(5);

impl Program {
    /// Starts `argv` for worker `slot` and waits (beating) for its hello.
    pub fn start(
        argv: &[String],
        slot: u32,
        (max_frame, frame_option): (usize, &'static str),
        start_timeout: Duration,
        beat: &mut dyn FnMut(),
    ) -> Result<Program, String> {
        let (program, rest) = argv.split_first().ok_or("an empty --worker-cmd")?;
        let mut command = contained(program, rest);
        command
            .env("OUTLAST_WORKER_SLOT", slot.to_string())
            .stdin(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start `{program}`: {e}"))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            kill_group(&child);
            let _ = child.wait();
            return Err("the program's pipes were not made".into());
        };
        if let Err(e) = outlast_ipc::os::fd::set_nonblocking(stdout.as_raw_fd(), true) {
            kill_group(&child);
            let _ = child.wait();
            return Err(format!("cannot read the program's output: {e}"));
        }
        let stderr_forwarder = forward_stderr(stderr, slot);
        let mut started = Program {
            child,
            stdin: Some(stdin),
            stdout,
            pending: Vec::new(),
            scanned: 0,
            max_frame,
            frame_option,
            over_cap: None,
            stderr_forwarder,
            slot,
            hello_hint_at: Some(Instant::now() + HELLO_HINT_AFTER),
        };
        let deadline = Instant::now() + start_timeout;
        let hello = started.next_frame(Some(deadline), "its hello", "--start-timeout", beat);
        started.hello_hint_at = None;
        match hello? {
            Frame::Hello { protocol } if protocol == PROTOCOL => Ok(started),
            Frame::Hello { protocol } => Err(format!(
                "it speaks protocol {protocol}; this supervisor speaks {PROTOCOL}"
            )),
            other => Err(format!("its first frame is not a hello: {other:?}")),
        }
    }

    /// Closes its stdin (no more tasks) and waits for it to exit by
    /// itself within `within`: how it ended, or `Err` if it did not.
    pub fn finish(mut self, within: Duration) -> Result<String, String> {
        drop(self.stdin.take());
        let until = Instant::now() + within;
        while Instant::now() < until {
            match self.child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                _ => return Ok(self.how_it_ended()),
            }
        }
        Err(format!(
            "it did not exit within {:.0} s of its stdin closing",
            within.as_secs_f64()
        ))
    }

    /// The bytes seen of a frame that passed the frame cap, once one has:
    /// the same input would do it again.
    pub fn frame_over_cap(&self) -> Option<u64> {
        self.over_cap.map(|len| len as u64)
    }

    /// Whether it has exited (it is then reaped).
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Runs task `id` on `input`, waiting (beating) until `timeout`.
    pub fn call(
        &mut self,
        id: u64,
        input: &str,
        timeout: Option<Duration>,
        beat: &mut dyn FnMut(),
    ) -> Result<Answer, String> {
        let frame = task_frame(id, input);
        let stdin = self.stdin.as_mut().ok_or("its stdin is closed")?;
        stdin
            .write_all(frame.as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("cannot hand it the task: {e}"))?;
        let started = Instant::now();
        let deadline = timeout.map(|t| started + t);
        loop {
            match self.next_frame(deadline, "the task's answer", "--task-timeout", beat)? {
                Frame::Beat => {}
                Frame::Output { id: got, value } if got == id => return Ok(Answer::Output(value)),
                Frame::Error { id: got, message } if got == id => {
                    return Ok(Answer::Error(message))
                }
                Frame::Output { id: got, .. } | Frame::Error { id: got, .. } => {
                    return Err(format!(
                        "it answered task {got}, which it does not hold (it holds {id})"
                    ))
                }
                Frame::Hello { .. } => return Err("a second hello".into()),
            }
        }
    }

    /// The next frame from its stdout, by `deadline` (the option named
    /// `limit` sets it). `Err` for a line that is no frame, a frame over
    /// the cap, its stdout closed, or the deadline.
    fn next_frame(
        &mut self,
        deadline: Option<Instant>,
        waiting_for: &str,
        limit: &str,
        beat: &mut dyn FnMut(),
    ) -> Result<Frame, String> {
        let started = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let unsearched = self.pending.get(self.scanned..).unwrap_or_default();
            if let Some(at) = unsearched.iter().position(|&b| b == b'\n') {
                let end = self.scanned + at;
                self.scanned = 0;
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return parse_frame(&line);
            }
            self.scanned = self.pending.len();
            if self.pending.len() > self.max_frame {
                self.over_cap = Some(self.pending.len());
                return Err(format!(
                    "a frame over {} bytes, the most allowed ({})",
                    self.max_frame, self.frame_option
                ));
            }
            let mut wait = BEAT_EVERY;
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(format!(
                        "no answer after {:.1} s ({limit}) while waiting for {waiting_for}",
                        started.elapsed().as_secs_f64()
                    ));
                }
                wait = wait.min(left);
            }
            if self.hello_hint_at.is_some_and(|at| Instant::now() >= at) {
                self.hello_hint_at = None;
                let left = deadline.map_or(String::new(), |d| {
                    format!(
                        "; waiting {:.0} s more ({limit})",
                        d.saturating_duration_since(Instant::now()).as_secs_f64()
                    )
                });
                outlast_ipc::os::stderr::line(format_args!(
                    "[worker {}] the program has said nothing for {} s: a worker program \
                     says hello first (docs/worker-protocol.md){left}",
                    self.slot,
                    HELLO_HINT_AFTER.as_secs()
                ));
            }
            let mut fds = [libc::pollfd {
                fd: self.stdout.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            let _ = outlast_ipc::os::poll::poll_once(&mut fds, wait.as_millis() as i32);
            beat();
            // Read at most up to the cap (and a line end) before parsing.
            let room = (self.max_frame + 1)
                .saturating_sub(self.pending.len())
                .max(1);
            let take = room.min(buf.len());
            match self.stdout.read(&mut buf[..take]) {
                Ok(0) => {
                    return Err(format!(
                        "its stdout closed ({}) while waiting for {waiting_for}",
                        self.how_it_ended()
                    ));
                }
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("cannot read its stdout: {e}")),
            }
        }
    }

    /// How the program ended, if it did within a moment: `exited with
    /// code 0`, `killed by SIGKILL`, or `still running`.
    fn how_it_ended(&mut self) -> String {
        let until = Instant::now() + Duration::from_millis(200);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    use std::os::unix::process::ExitStatusExt;
                    return match (status.code(), status.signal()) {
                        (Some(code), _) => format!("it exited with code {code}"),
                        (None, Some(sig)) => format!("killed by {}", outlast_ipc::signal_name(sig)),
                        _ => status.to_string(),
                    };
                }
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(2)),
                _ => return "it is still running".into(),
            }
        }
    }
}

impl Drop for Program {
    /// No more tasks: its stdin closes, it gets a moment to exit, then
    /// its process group is killed. What it wrote to stderr is passed on
    /// before this returns (its last lines, a Python traceback's
    /// `SyntaxError` among them, were lost when the worker exited first).
    fn drop(&mut self) {
        drop(self.stdin.take());
        let until = Instant::now() + EXIT_GRACE;
        let mut exited = false;
        while !exited && Instant::now() < until {
            exited = !matches!(self.child.try_wait(), Ok(None));
            if !exited {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        kill_group(&self.child);
        if !exited {
            let _ = self.child.wait();
        }
        // Its stderr ends once no process of its group holds it (a
        // descendant outside the group could keep it open: bounded).
        if let Some(forwarder) = self.stderr_forwarder.take() {
            let until = Instant::now() + STDERR_DRAIN;
            while !forwarder.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(2));
            }
            if forwarder.is_finished() {
                let _ = forwarder.join();
            }
        }
    }
}

/// How long a program's stderr may take to end after the program did.
const STDERR_DRAIN: Duration = Duration::from_secs(1);

/// Copies the program's stderr to ours on a thread of its own, a line at
/// a time with `[worker N]` in front, for as long as it is open: a program
/// that logs while it waits for its next task never blocks on a full pipe.
/// A line that never ends is cut every 4 KiB. The thread ends with the
/// pipe (the program and whatever inherited its stderr gone).
fn forward_stderr(stderr: ChildStderr, slot: u32) -> Option<std::thread::JoinHandle<()>> {
    let spawned = std::thread::Builder::new()
        .name(format!("stderr-{slot}"))
        .spawn(move || {
            let mut reader = std::io::BufReader::new(stderr);
            let mut line = Vec::new();
            loop {
                line.clear();
                let read = std::io::Read::by_ref(&mut reader)
                    .take(4096)
                    .read_until(b'\n', &mut line);
                match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let mut out = format!("[worker {slot}] ").into_bytes();
                        out.extend_from_slice(&line);
                        if !line.ends_with(b"\n") {
                            out.push(b'\n');
                        }
                        let _ = std::io::stderr().lock().write_all(&out);
                    }
                }
            }
        });
    match spawned {
        Ok(forwarder) => Some(forwarder),
        Err(e) => {
            outlast_ipc::os::stderr::line(format_args!(
                "[worker {slot}] cannot pass the program's stderr through: {e}"
            ));
            None
        }
    }
}

/// `program rest...` with its stdout and stderr piped, in a process group
/// of its own (so the group can be killed whole), and SIGKILLed when the
/// worker that starts it dies.
fn contained(program: &str, rest: &[String]) -> Command {
    let mut command = Command::new(program);
    command
        .args(rest)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    die_with_parent(&mut command);
    command
}

/// Kills the command's whole process group.
fn kill_group(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = outlast_ipc::os::process::send_signal(-pid, libc::SIGKILL);
    }
}

/// The command gets SIGKILL when the worker that started it dies.
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as i32;
    // SAFETY: the closure runs in the child between fork and exec and
    // calls only async-signal-safe functions (prctl, getppid, _exit).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The worker died before the prctl: do not run orphaned.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}
