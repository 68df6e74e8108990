//! `exec`: any program as the job. Each input line is a task; the command
//! is run once per line with the line in place of `{}` (GNU parallel's
//! replacement strings), without a shell unless `--shell`. A non-zero exit,
//! a signal or `--task-timeout` fails the attempt (retried, then a dead
//! letter with its status and the tail of its stderr). Each task's output
//! is printed whole by the supervisor, never interleaved with another's,
//! in input order with `--keep-order`.
//!
//! A command runs in a process group of its own (a timeout kills the
//! group), and gets SIGKILL when its worker dies, so none outlives the run.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::BuiltinJob;
use crate::job::{BadOutput, Job, JobOutcome, TaskContext};
use crate::numbers::{group_thousands, plural};
use crate::work::GaveUp;

/// Bytes of a failed command's stderr kept for its error.
const STDERR_TAIL: usize = 2048;
/// How often a worker waiting for its command beats.
const BEAT_EVERY: Duration = Duration::from_millis(100);
/// The most output (stdout and stderr together) one command may give.
pub const MAX_OUTPUT: usize = 512 * 1024;

/// What a command gave.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CommandOutput {
    pub stdout: ByteBuf,
    pub stderr: ByteBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Exec {
    template: String,
    shell: bool,
    task_timeout: Option<Duration>,
    /// Supervisor side from here on: workers are sent only their line.
    #[serde(skip)]
    lines: Vec<String>,
    #[serde(skip)]
    keep_order: bool,
    /// With --keep-order: the next line to print, and outputs waiting for it
    /// (`None` for a line that gave up).
    #[serde(skip)]
    next_to_print: u64,
    #[serde(skip)]
    waiting: BTreeMap<u64, Option<CommandOutput>>,
    #[serde(skip)]
    succeeded: u64,
}

impl BuiltinJob for Exec {
    const NAME: &'static str = "exec";
    const ABOUT: &'static str =
        "--exec COMMAND once per input line (stdin or --input), as GNU parallel";
}

impl Exec {
    /// Runs `template` once per line of `lines` (empty lines skipped by the CLI).
    pub fn new(template: &str, lines: Vec<String>) -> Result<Self, String> {
        if split_words(template)?.is_empty() {
            return Err("--exec needs a command".into());
        }
        Ok(Exec {
            template: template.to_string(),
            shell: false,
            task_timeout: None,
            lines,
            keep_order: false,
            next_to_print: 0,
            waiting: BTreeMap::new(),
            succeeded: 0,
        })
    }

    /// Runs through `sh -c`.
    pub fn shell(mut self, shell: bool) -> Self {
        self.shell = shell;
        self
    }

    /// Prints outputs in input order.
    pub fn keep_order(mut self, keep: bool) -> Self {
        self.keep_order = keep;
        self
    }

    /// Kills a command that runs longer.
    pub fn task_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.task_timeout = timeout;
        self
    }

    /// The program and its arguments for `line`.
    pub fn command_for(&self, line: &str) -> Result<Vec<String>, String> {
        if self.shell {
            let quoted = |s: &str| shell_quote(s);
            let (script, used) = substitute(&self.template, line, &quoted);
            let script = if used {
                script
            } else {
                format!("{script} {}", shell_quote(line))
            };
            return Ok(vec!["sh".into(), "-c".into(), script]);
        }
        let mut any = false;
        let mut words = Vec::new();
        for word in split_words(&self.template)? {
            let (word, used) = substitute(&word, line, &|s: &str| s.to_string());
            any |= used;
            words.push(word);
        }
        if !any {
            words.push(line.to_string());
        }
        Ok(words)
    }

    fn print(output: &CommandOutput) {
        // Whole, under the stream's lock: outputs never interleave.
        let _ = std::io::stdout().lock().write_all(&output.stdout);
        if !output.stderr.is_empty() {
            let _ = std::io::stderr().lock().write_all(&output.stderr);
        }
    }

    /// Prints what --keep-order held back and may go now.
    fn print_ready(&mut self) {
        while let Some(entry) = self.waiting.remove(&self.next_to_print) {
            if let Some(output) = entry {
                Self::print(&output);
            }
            self.next_to_print += 1;
        }
        let _ = std::io::stdout().flush();
    }

    fn settle(&mut self, id: u64, output: Option<CommandOutput>) {
        if self.keep_order {
            self.waiting.insert(id, output);
            self.print_ready();
        } else if let Some(output) = output {
            Self::print(&output);
            let _ = std::io::stdout().flush();
        }
    }
}

impl Job for Exec {
    type Input = String;
    type Output = CommandOutput;
    type Error = String;

    fn name(&self) -> String {
        Self::NAME.into()
    }

    fn describe(&self) -> String {
        format!(
            "`{}` for each of {}{}",
            self.template,
            plural(self.lines.len() as u64, "line"),
            if self.shell { " (with sh -c)" } else { "" }
        )
    }

    fn task_count(&self) -> u64 {
        self.lines.len() as u64
    }

    fn input(&self, id: u64) -> String {
        self.lines.get(id as usize).cloned().unwrap_or_default()
    }

    fn run(&self, line: String, ctx: &mut TaskContext<'_>) -> Result<CommandOutput, String> {
        let argv = self.command_for(&line)?;
        run_command(&argv, self.task_timeout, &mut || ctx.beat())
    }

    fn combine(&mut self, id: u64, output: CommandOutput) -> Result<(), BadOutput> {
        self.succeeded += 1;
        self.settle(id, Some(output));
        Ok(())
    }

    /// Counted, not printed again: it was printed by the run that did it.
    fn resume(&mut self, id: u64, _output: CommandOutput) -> Result<(), BadOutput> {
        self.succeeded += 1;
        if self.keep_order {
            self.waiting.insert(id, None);
            self.print_ready();
        }
        Ok(())
    }

    fn describe_task(&self, id: u64) -> Option<String> {
        self.lines.get(id as usize).cloned()
    }

    fn gave_up(&mut self, id: u64, _why: &GaveUp) {
        self.settle(id, None);
    }

    fn outcome(&self, complete: bool) -> JobOutcome {
        let total = self.lines.len() as u64;
        JobOutcome {
            value: self.succeeded.to_string(),
            summary: format!(
                "{} of {} succeeded",
                group_thousands(self.succeeded),
                plural(total, "command")
            ),
            verified: complete.then_some(self.succeeded == total),
        }
    }
}

/// Runs `argv` to its end (or `timeout`), beating while it runs, and
/// gives its output; a failure says how it ended with its stderr's tail.
pub fn run_command(
    argv: &[String],
    timeout: Option<Duration>,
    beat: &mut dyn FnMut(),
) -> Result<CommandOutput, String> {
    let (program, rest) = argv.split_first().ok_or("an empty command")?;
    let mut command = Command::new(program);
    command
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    die_with_parent(&mut command);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    let deadline = timeout.map(|t| Instant::now() + t);
    let collected = collect(&mut child, deadline, beat);
    let status = match &collected {
        Ok(_) => child
            .wait()
            .map_err(|e| format!("cannot wait for it: {e}"))?,
        Err(_) => {
            // Before the leader is reaped, so the group id is still its.
            kill_group(&child);
            let _ = child.wait();
            return Err(collected.err().unwrap_or_default());
        }
    };
    let output = collected?;
    if status.success() {
        return Ok(output);
    }
    use std::os::unix::process::ExitStatusExt;
    let how = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("killed by {}", outlast_ipc::signal_name(sig)),
        _ => status.to_string(),
    };
    Err(with_stderr_tail(how, &output.stderr))
}

/// `how`, followed by the end of `stderr` if there is any.
fn with_stderr_tail(how: String, stderr: &[u8]) -> String {
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

/// Reads the command's stdout and stderr to their ends, by `deadline`.
fn collect(
    child: &mut Child,
    deadline: Option<Instant>,
    beat: &mut dyn FnMut(),
) -> Result<CommandOutput, String> {
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
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
    let started = Instant::now();
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
                let secs = started.elapsed().as_secs_f64();
                return Err(with_stderr_tail(
                    format!("timed out after {secs:.1} s (--task-timeout): killed"),
                    &err,
                ));
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
        if out.len() + err.len() > MAX_OUTPUT {
            return Err(format!(
                "its output passed {MAX_OUTPUT} bytes, the most a task may give: killed"
            ));
        }
    }
    Ok(CommandOutput {
        stdout: ByteBuf::from(out),
        stderr: ByteBuf::from(err),
    })
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

/// `template` with the replacement strings filled in from `line`, each
/// passed through `quote`; and whether any was there.
fn substitute(template: &str, line: &str, quote: &dyn Fn(&str) -> String) -> (String, bool) {
    let path = std::path::Path::new(line);
    let base = path
        .file_name()
        .map_or(line.to_string(), |b| b.to_string_lossy().into_owned());
    let dir = match path.parent().map(|d| d.to_string_lossy().into_owned()) {
        Some(d) if !d.is_empty() => d,
        _ => ".".to_string(),
    };
    let strip = |s: &str| match s.rfind('.') {
        Some(dot) if dot > 0 && !s[dot..].contains('/') => s[..dot].to_string(),
        _ => s.to_string(),
    };
    // Longest first, so `{/.}` is not read as `{/}` and a `.`.
    let forms: [(&str, String); 5] = [
        ("{//}", dir),
        ("{/.}", strip(&base)),
        ("{/}", base),
        ("{.}", strip(line)),
        ("{}", line.to_string()),
    ];
    let mut out = String::with_capacity(template.len() + line.len());
    let mut used = false;
    let mut rest = template;
    'scan: while !rest.is_empty() {
        for (form, value) in &forms {
            if let Some(after) = rest.strip_prefix(form) {
                out.push_str(&quote(value));
                used = true;
                rest = after;
                continue 'scan;
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    (out, used)
}

/// `s` as one word for `sh`.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Splits a command into words as `sh` would for plain words, quotes and
/// backslashes (no expansions).
fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("--exec has an unclosed ' quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("--exec has an unclosed \" quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("--exec has an unclosed \" quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacement_strings_follow_gnu_parallel() {
        let exec = Exec::new("convert {} {.}.png {/} {//} {/.}", vec![]).unwrap();
        assert_eq!(
            exec.command_for("dir/a b.jpg").unwrap(),
            [
                "convert",
                "dir/a b.jpg",
                "dir/a b.png",
                "a b.jpg",
                "dir",
                "a b"
            ]
        );
    }

    #[test]
    fn without_a_replacement_the_line_is_the_last_argument() {
        let exec = Exec::new("echo 'x y'", vec![]).unwrap();
        assert_eq!(exec.command_for("z").unwrap(), ["echo", "x y", "z"]);
    }

    #[test]
    fn a_shell_gets_the_line_quoted() {
        let exec = Exec::new("echo {}", vec![]).unwrap().shell(true);
        assert_eq!(
            exec.command_for("it's; rm -rf /").unwrap(),
            ["sh", "-c", r"echo 'it'\''s; rm -rf /'"]
        );
    }

    #[test]
    fn a_failed_command_says_how_with_its_stderr() {
        let argv: Vec<String> = ["sh", "-c", "echo oops >&2; exit 3"]
            .map(String::from)
            .to_vec();
        let err = run_command(&argv, None, &mut || {}).unwrap_err();
        assert_eq!(err, "exited with code 3; stderr: oops");
    }

    #[test]
    fn a_command_past_its_timeout_is_killed() {
        let argv: Vec<String> = ["sleep", "30"].map(String::from).to_vec();
        let err = run_command(&argv, Some(Duration::from_millis(100)), &mut || {}).unwrap_err();
        assert!(err.starts_with("timed out after"), "{err}");
    }
}
