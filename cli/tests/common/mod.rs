//! What the end-to-end tests of the real `supervisor` binary share:
//! starting it with `--json`, waiting for it (with a hang limit), reading
//! its report, finding its workers.

#![allow(dead_code, unused_imports)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
pub use tests::procfs::{children_of, is_running};

/// Any run taking longer than this has hung: fail rather than wait.
pub const HANG: Duration = Duration::from_secs(120);

/// The supervisor with these options (split at spaces) and `--json`.
pub fn supervisor(args: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_supervisor"));
    cmd.args(args.split_whitespace()).arg("--json");
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// A finished run: its exit code, report and event lines.
pub struct Run {
    pub code: i32,
    pub report: Value,
    pub events: String,
}

pub fn finish(mut child: Child) -> Run {
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() > HANG => {
                let _ = child.kill();
                panic!("the supervisor hung");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for the supervisor: {e}"),
        }
    }
    let out = child.wait_with_output().expect("collect the output");
    let events = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {stdout}\nstderr: {events}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        report,
        events,
    }
}

pub fn run(args: &str) -> Run {
    finish(supervisor(args).spawn().expect("start the supervisor"))
}

/// Live (not zombie) children of `pid`.
pub fn workers_of(pid: u32) -> Vec<u32> {
    children_of(pid)
        .into_iter()
        .filter(|(_, state)| *state != 'Z')
        .map(|(pid, _)| pid)
        .collect()
}

/// The live workers of a supervisor whose workers start by forkserver:
/// the children of its children (the server's).
pub fn forkserver_workers_of(pid: u32) -> Vec<u32> {
    workers_of(pid).into_iter().flat_map(workers_of).collect()
}

/// Waits until the supervisor has `n` live workers, none of them in `not`.
pub fn wait_for_workers(pid: u32, n: usize, not: &[u32]) -> Vec<u32> {
    wait_for(|| workers_of(pid), n, not)
}

/// As [`wait_for_workers`], for workers started by forkserver.
pub fn wait_for_forkserver_workers(pid: u32, n: usize, not: &[u32]) -> Vec<u32> {
    wait_for(|| forkserver_workers_of(pid), n, not)
}

fn wait_for(list: impl Fn() -> Vec<u32>, n: usize, not: &[u32]) -> Vec<u32> {
    wait_until("workers to appear", || {
        let workers: Vec<u32> = list().into_iter().filter(|w| !not.contains(w)).collect();
        (workers.len() >= n).then_some(workers)
    })
}

/// Polls `probe` until it gives a value, for at most [`HANG`]; a fresh
/// process does what a test reads in `/proc` some time after it exists.
pub fn wait_until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(started.elapsed() < HANG, "{what}: still not after {HANG:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn signal(pid: u32, signal: i32) {
    // SAFETY: sending a signal to a process this test started.
    let rc = unsafe { libc::kill(pid as i32, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal})");
}

pub fn assert_exact_primes(run: &Run, expected: u64) {
    assert_eq!(run.code, 0, "{}\n{}", run.report, run.events);
    assert_eq!(run.report["result"], expected.to_string(), "{}", run.report);
    assert_eq!(run.report["tasks"]["done"], run.report["tasks"]["total"]);
    if expected == 664_579 || expected == 50_847_534 {
        // Powers of ten are checked against the known value by the report itself.
        assert_eq!(run.report["verified"], true);
    }
}

/// Every pid on the machine.
pub fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `cmd` with `input` on its stdin (stdout and stderr collected).
pub fn with_stdin(cmd: &mut Command, input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the supervisor");
    let mut stdin = child.stdin.take().expect("its stdin");
    stdin.write_all(input.as_bytes()).expect("write its input");
    drop(stdin);
    child.wait_with_output().expect("wait for it")
}
