//! What a new user tries first: more workers than the machine holds, more
//! workers than tasks, and Ctrl-C while hundreds of workers start.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn more_workers_than_tasks_are_capped_to_the_tasks() {
    let run = run("--workers 100000 --job sleep --tasks 3 --task-ms 1");
    assert_eq!(run.code, 0, "{}\n{}", run.report, run.events);
    assert_eq!(run.report["workers"], 3);
    assert_eq!(run.report["workers_started"], 3);
    let notes = run.report["notes"].to_string();
    assert!(
        notes.contains("100,000 workers asked for 3 tasks"),
        "{notes}"
    );
    assert!(
        run.events
            .contains("note: 100,000 workers asked for 3 tasks"),
        "{}",
        run.events
    );
}

/// The supervisor with these options, its descriptor limit set to `nofile`.
fn with_open_files(args: &str, nofile: u64) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_supervisor"));
    cmd.args(args.split_whitespace())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: nofile,
                rlim_max: nofile,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().expect("run the supervisor")
}

#[test]
fn workers_beyond_the_descriptor_limit_are_refused_with_the_limit_named() {
    let out = with_open_files("--workers 100 --job sleep --tasks 1000 --task-ms 1", 256);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("100 workers are more than this machine can hold"),
        "{stderr}"
    );
    assert!(stderr.contains("descriptors"), "{stderr}");
    assert!(stderr.contains("it holds at most 24"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one clear message: {stderr}");
    // As many as it names do run.
    let out = with_open_files(
        "--workers 24 --job sleep --tasks 100 --task-ms 1 --quiet",
        256,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_hundred_thousand_workers_are_refused_or_capped_at_once() {
    let out = Command::new(env!("CARGO_BIN_EXE_supervisor"))
        .args("--workers 100000 --job sleep --tasks 1e6 --task-ms 0 --json".split(' '))
        .output()
        .expect("run the supervisor");
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        // This machine: refused, naming the limit.
        Some(1) => {
            assert!(
                stderr.contains("are more than this machine can hold"),
                "{stderr}"
            );
            assert!(stderr.contains("at most"), "{stderr}");
            assert!(!stderr.contains("Too many open files"), "{stderr}");
        }
        // A machine that holds them all runs them.
        Some(0) => {}
        other => panic!("exit {other:?}: {stderr}"),
    }
}

#[test]
fn an_interrupt_while_workers_start_stops_the_starting() {
    // As many workers as this machine's descriptor limit allows, up to 1,000.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we own.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    let workers = (limit.rlim_max.saturating_sub(200) / 8).min(1000);
    assert!(workers >= 100, "descriptor limit {}", limit.rlim_max);
    let child = supervisor(&format!(
        "--workers {workers} --job sleep --tasks 1e6 --task-ms 1000"
    ))
    .spawn()
    .expect("start");
    let pid = child.id();
    wait_for_workers(pid, 1, &[]);
    signal(pid, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(50));
    signal(pid, libc::SIGINT);
    let run = finish(child);
    assert_eq!(run.code, 130, "{}\n{}", run.report, run.events);
    let started = run.report["workers_started"].as_u64().unwrap_or(u64::MAX);
    assert!(
        started < workers,
        "all {workers} started after the interrupt: {}",
        run.events
    );
    assert!(children_of(pid).is_empty());
}
