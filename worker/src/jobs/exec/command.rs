//! Running one command in a worker: in a process group of its own (a
//! timeout ends the group with GNU parallel's `--termseq`), with SIGKILL when its worker dies (so none
//! outlives the run), its stdout and stderr read to their ends (past the
//! task's largest output it is killed), beating the worker's heartbeat
//! while it runs.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use outlast_ipc::os::process::has_exited;

use serde_bytes::ByteBuf;

use super::CommandOutput;

/// Bytes of a failed command's stderr kept for its error.
const STDERR_TAIL: usize = 2048;
/// How often a worker waiting for its command beats.
const BEAT_EVERY: Duration = Duration::from_millis(100);

/// Runs `argv` to its end (or `timeout`), beating while it runs, and
/// gives its output and how it ended, whatever its exit status (the
/// supervisor side judges it: see [`CommandOutput::failure`]). Past
/// `timeout` its group is ended as GNU parallel ends it (SIGTERM, 200 ms,
/// SIGTERM, 100 ms, SIGTERM, 50 ms, SIGKILL), and the output says so
/// (exit code -1, and the signal it died of), with what it wrote until
/// then, as GNU parallel logs and prints a timed-out job. Past `max_output` bytes of stdout and
/// stderr together it is killed too, and the output gives what was read
/// (over `max_output`: the worker refuses it as too large, for good).
/// `Err` when it could not run.
pub fn run_command(
    argv: &[String],
    timeout: Option<Duration>,
    max_output: u64,
    beat: &mut dyn FnMut(),
) -> Result<CommandOutput, String> {
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let started = Instant::now();
    let program = argv.first().ok_or("an empty command")?;
    // Started without a fork (see `outlast_ipc::os::spawn`): a forked
    // worker paid for copying itself at every command.
    let (pid, stdout, stderr) = outlast_ipc::os::spawn::spawn_contained(argv)
        .map_err(|e| format!("cannot run `{program}`: {e}"))?
        .into_files();
    let child = Running { pid };
    let deadline = timeout.map(|t| Instant::now() + t);
    let collected = collect(stdout, stderr, deadline, max_output, beat);
    let (exit_code, signal, stdout, stderr) = match collected {
        Ok(Collected::Ended(stdout, stderr)) => {
            let (code, signal) = child
                .wait()
                .map_err(|e| format!("cannot wait for it: {e}"))?;
            (code, signal, stdout, stderr)
        }
        Ok(Collected::TimedOut(stdout, stderr)) => {
            let signal = terminate_group(&child);
            (TIMED_OUT, signal, stdout, stderr)
        }
        Ok(Collected::TooMuch(stdout, stderr)) => {
            child.kill_group();
            let _ = child.wait();
            (0, libc::SIGKILL, stdout, stderr)
        }
        Err(e) => {
            child.kill_group();
            let _ = child.wait();
            return Err(e);
        }
    };
    Ok(CommandOutput {
        stdout: ByteBuf::from(stdout),
        stderr: ByteBuf::from(stderr),
        exit_code,
        signal,
        started_unix,
        runtime: started.elapsed().as_secs_f64(),
        slot: 0,
    })
}

/// The exit code of a command killed for running past its timeout (GNU
/// parallel's joblog says -1 too; a process's own exit code is 0-255).
pub const TIMED_OUT: i32 = -1;

/// How reading a command's output ended: stdout and stderr.
enum Collected {
    /// Both reached their end: the command is done (or about to be).
    Ended(Vec<u8>, Vec<u8>),
    /// Its deadline came first.
    TimedOut(Vec<u8>, Vec<u8>),
    /// It wrote more than the task's output may take.
    TooMuch(Vec<u8>, Vec<u8>),
}

/// A command started by [`run_command`], the leader of its process group.
struct Running {
    pid: i32,
}

impl Running {
    /// Waits for it to end: its exit code and the signal that ended it.
    fn wait(&self) -> std::io::Result<(i32, i32)> {
        use outlast_ipc::ExitStatus;
        Ok(match outlast_ipc::os::process::reap(self.pid, true)? {
            Some(ExitStatus::Exited(code)) => (code, 0),
            Some(ExitStatus::Signaled { signal, .. }) => (0, signal),
            _ => (0, 0),
        })
    }

    /// Kills its whole process group.
    fn kill_group(&self) {
        let _ = outlast_ipc::os::process::send_signal(-self.pid, libc::SIGKILL);
    }
}

/// `how`, followed by the end of `stderr` if there is any.
pub(super) fn with_stderr_tail(how: String, stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim_end();
    if text.is_empty() {
        return how;
    }
    let mut start = text.len().saturating_sub(STDERR_TAIL);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("{how}; stderr: {}", &text[start..])
}

/// GNU parallel's default `--termseq`: each signal, then how long to wait
/// for the command to end before the next.
const TERM_SEQUENCE: [(i32, Duration); 4] = [
    (libc::SIGTERM, Duration::from_millis(200)),
    (libc::SIGTERM, Duration::from_millis(100)),
    (libc::SIGTERM, Duration::from_millis(50)),
    (libc::SIGKILL, Duration::from_millis(25)),
];

/// Ends the command's process group as GNU parallel ends a timed-out
/// job ([`TERM_SEQUENCE`]), so a command may clean up on SIGTERM; what is
/// left of the group then gets SIGKILL. Gives the signal the command
/// died of (0 when it exited by itself).
fn terminate_group(child: &Running) -> i32 {
    let pid = child.pid;
    for (signal, grace) in TERM_SEQUENCE {
        let _ = outlast_ipc::os::process::send_signal(-pid, signal);
        let until = Instant::now() + grace;
        while !has_exited(pid) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        if has_exited(pid) {
            break;
        }
    }
    // Before the leader is reaped, so the group id is still its.
    child.kill_group();
    child.wait().map_or(libc::SIGKILL, |(_, signal)| signal)
}

/// Reads the command's stdout and stderr to their ends, by `deadline`.
fn collect(
    stdout: std::fs::File,
    stderr: std::fs::File,
    deadline: Option<Instant>,
    max_output: u64,
    beat: &mut dyn FnMut(),
) -> Result<Collected, String> {
    let mut stdout = Some(stdout);
    let mut stderr = Some(stderr);
    for fd in [
        stdout.as_ref().map(|s| s.as_raw_fd()),
        stderr.as_ref().map(|s| s.as_raw_fd()),
    ]
    .into_iter()
    .flatten()
    {
        outlast_ipc::os::fd::set_nonblocking(fd, true)
            .map_err(|e| format!("cannot read the command's output: {e}"))?;
    }
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while stdout.is_some() || stderr.is_some() {
        let mut fds = Vec::with_capacity(2);
        for stream in [
            stdout.as_ref().map(|s| s.as_raw_fd()),
            stderr.as_ref().map(|s| s.as_raw_fd()),
        ]
        .into_iter()
        .flatten()
        {
            fds.push(libc::pollfd {
                fd: stream,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let mut wait = BEAT_EVERY;
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Collected::TimedOut(out, err));
            }
            wait = wait.min(left);
        }
        let _ = outlast_ipc::os::poll::poll_once(&mut fds, wait.as_millis() as i32);
        beat();
        if let Some(s) = stdout.as_mut() {
            if read_some(s, &mut buf, &mut out)? {
                stdout = None;
            }
        }
        if let Some(s) = stderr.as_mut() {
            if read_some(s, &mut buf, &mut err)? {
                stderr = None;
            }
        }
        if (out.len() + err.len()) as u64 > max_output {
            return Ok(Collected::TooMuch(out, err));
        }
    }
    Ok(Collected::Ended(out, err))
}

/// Reads what `stream` has now into `into`; true at end of file.
fn read_some(stream: &mut impl Read, buf: &mut [u8], into: &mut Vec<u8>) -> Result<bool, String> {
    loop {
        match stream.read(buf) {
            Ok(0) => return Ok(true),
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read the command's output: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_command_says_how_with_its_stderr() {
        let argv: Vec<String> = ["sh", "-c", "echo oops >&2; exit 3"]
            .map(String::from)
            .to_vec();
        let out = run_command(&argv, None, u64::MAX, &mut || {}).unwrap();
        assert_eq!((out.exit_code, out.signal), (3, 0));
        assert_eq!(
            out.failure().as_deref(),
            Some("exited with code 3; stderr: oops")
        );
        let argv: Vec<String> = ["sh", "-c", "kill -9 $$"].map(String::from).to_vec();
        let out = run_command(&argv, None, u64::MAX, &mut || {}).unwrap();
        assert_eq!((out.exit_code, out.signal), (0, 9));
        assert_eq!(out.failure().as_deref(), Some("killed by SIGKILL"));
    }

    fn run_with_a_300_ms_timeout(argv: &[String]) -> CommandOutput {
        run_command(argv, Some(Duration::from_millis(300)), u64::MAX, &mut || {}).unwrap()
    }

    #[test]
    fn a_command_past_its_timeout_gets_sigterm_and_keeps_what_it_wrote() {
        let argv: Vec<String> = ["sh", "-c", "echo started; exec sleep 30"]
            .map(String::from)
            .to_vec();
        let out = run_with_a_300_ms_timeout(&argv);
        assert_eq!((out.exit_code, out.signal), (TIMED_OUT, libc::SIGTERM));
        assert_eq!(out.stdout.as_slice(), b"started\n");
        let why = out.failure().unwrap_or_default();
        assert!(why.starts_with("timed out after"), "{why}");
    }

    #[test]
    fn a_command_that_ignores_sigterm_gets_sigkill_and_its_group_goes_too() {
        let dir = std::env::temp_dir().join(format!("outlast-termseq-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let pidfile = dir.join("grandchild");
        // The command ignores TERM, and leaves a grandchild (in its group)
        // that ignores it too.
        let script = format!(
            "trap '' TERM; sh -c 'trap \"\" TERM; echo $$ > {0}; exec sleep 30' & \
             while [ ! -s {0} ]; do sleep 0.01; done; echo started; sleep 30",
            pidfile.display()
        );
        let argv: Vec<String> = vec!["sh".into(), "-c".into(), script];
        let out = run_with_a_300_ms_timeout(&argv);
        assert_eq!((out.exit_code, out.signal), (TIMED_OUT, libc::SIGKILL));
        assert_eq!(out.stdout.as_slice(), b"started\n");
        let grandchild: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Killed with its group: gone (or a zombie of init) within a moment.
        let gone = (0..200).any(|_| {
            let state = std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
                .map(|s| s.rsplit(')').next().unwrap_or("").trim().starts_with('Z'));
            if state.unwrap_or(true) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
            false
        });
        assert!(
            gone,
            "the grandchild {grandchild} outlived its group's kill"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
