//! End-to-end runs of the real `supervisor` binary with real workers: exact
//! answers in both start methods, and recovery from workers the test kills,
//! stops or makes misbehave, read back from the JSON report and exit code.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn primes_1e7_with_three_workers_forked() {
    let run = run("--workers 3 --job primes --limit 1e7 --start-method fork");
    assert_exact_primes(&run, 664_579);
    assert_eq!(run.report["start_method"], "fork");
    assert_eq!(run.report["restarts"]["crashes"], 0);
}

#[test]
fn primes_1e7_with_three_workers_spawned() {
    let run = run("--workers 3 --job primes --limit 10^7 --start-method spawn");
    assert_exact_primes(&run, 664_579);
    assert_eq!(run.report["start_method"], "spawn");
}

#[test]
fn killed_workers_are_replaced_and_the_answer_is_exact() {
    // Three kills can land on three workers running the same task (each
    // replacement takes the re-queued task first): with the default of 3
    // attempts that task would rightly be a dead letter. This test is about
    // replacement and exactness, so it allows more attempts than kills.
    let child = supervisor("-w 2 --limit 2e9 --chunk 1e6 --max-attempts 5")
        .spawn()
        .expect("start");
    let pid = child.id();
    let mut killed = Vec::new();
    for _ in 0..3 {
        let victim = wait_for_workers(pid, 1, &killed)[0];
        signal(victim, libc::SIGKILL);
        killed.push(victim);
    }
    let run = finish(child);
    // pi(2e9), from primecount.
    assert_exact_primes(&run, 98_222_287);
    assert_eq!(run.report["restarts"]["crashes"], 3, "{}", run.events);
    assert_eq!(
        run.report["restarts"]["causes"]["killed by SIGKILL (perhaps out of memory?)"],
        3
    );
    assert!(run.events.contains("killed by SIGKILL"), "{}", run.events);
    assert!(run.events.contains("replaced by pid"), "{}", run.events);
}

#[test]
fn forkserver_workers_killed_are_replaced_and_the_answer_is_exact() {
    let child =
        supervisor("-w 2 --limit 2e9 --chunk 1e6 --max-attempts 5 --start-method forkserver")
            .spawn()
            .expect("start");
    let pid = child.id();
    let mut killed = Vec::new();
    for _ in 0..2 {
        let victim = wait_for_forkserver_workers(pid, 1, &killed)[0];
        signal(victim, libc::SIGKILL);
        killed.push(victim);
    }
    let run = finish(child);
    assert_exact_primes(&run, 98_222_287);
    assert_eq!(run.report["start_method"], "forkserver");
    assert_eq!(run.report["restarts"]["crashes"], 2, "{}", run.events);
    assert!(run.events.contains("replaced by pid"), "{}", run.events);
}

#[test]
fn killing_a_forkserver_supervisor_takes_the_server_and_its_workers() {
    let mut child = supervisor("-w 3 --limit 1e12 --start-method forkserver")
        .spawn()
        .expect("start");
    let workers = wait_for_forkserver_workers(child.id(), 3, &[]);
    let servers = workers_of(child.id());
    assert_eq!(servers.len(), 1, "one fork server: {servers:?}");
    signal(child.id(), libc::SIGKILL);
    let _ = child.wait();
    let started = Instant::now();
    while workers.iter().chain(&servers).any(|&p| is_running(p)) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the server or its workers outlived their supervisor"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_stopped_worker_is_found_by_its_heartbeat_and_replaced() {
    let child = supervisor("-w 2 --limit 1e9 --chunk 1e6 --worker-timeout 0.5")
        .spawn()
        .expect("start");
    let victim = wait_for_workers(child.id(), 1, &[])[0];
    // Let it take tasks first, so there is something to re-queue.
    std::thread::sleep(Duration::from_millis(30));
    signal(victim, libc::SIGSTOP);
    let run = finish(child);
    assert_exact_primes(&run, 50_847_534);
    // The supervisor's own kill, counted apart from crashes.
    assert_eq!(run.report["restarts"]["crashes"], 0, "{}", run.events);
    assert_eq!(run.report["restarts"]["killed"], 1, "{}", run.events);
    assert_eq!(
        run.report["restarts"]["kill_causes"]["no heartbeat (--worker-timeout)"], 1,
        "{}",
        run.report
    );
    assert!(!is_running(victim));
}

#[test]
fn a_task_that_always_crashes_becomes_a_dead_letter() {
    let run = run("-w 2 --job fault --tasks 40 --task-ms 1 --crash-task 7 --max-attempts 3");
    assert_eq!(run.code, 3, "{}\n{}", run.report, run.events);
    assert_eq!(run.report["outcome"], "dead_letters");
    let dead = run.report["dead_letters"].as_array().expect("a list");
    assert_eq!(dead.len(), 1, "{}", run.report);
    assert_eq!(dead[0]["task"], 7);
    assert_eq!(dead[0]["failures"], 3);
    assert_eq!(dead[0]["exit_code"], -libc::SIGABRT);
    assert_eq!(run.report["tasks"]["done"], 39);
    assert_eq!(run.report["tasks"]["dead"], 1);
    assert_eq!(run.report["tasks"]["remaining"], 0);
    assert_eq!(run.report["restarts"]["crashes"], 3);
}

#[test]
fn every_task_crashing_hits_the_restart_limit() {
    let started = Instant::now();
    let run =
        run("-w 2 --job fault --tasks 1000 --abort-rate 1 --max-restarts 5 --restart-window 60");
    assert_eq!(run.code, 4, "{}\n{}", run.report, run.events);
    assert_eq!(run.report["outcome"], "restart_limit");
    assert_eq!(run.report["restarts"]["crashes"], 6);
    assert!(run.report["reason"]
        .as_str()
        .unwrap_or("")
        .contains("more than the restart limit of 5"));
    assert!(run.report["tasks"]["remaining"].as_u64() > Some(900));
    // No crash loop: it stopped instead of going on (generous for a loaded machine).
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn sigterm_drains_and_reports_what_remains() {
    let child = supervisor("-w 2 --job sleep --tasks 400 --task-ms 20")
        .spawn()
        .expect("start");
    let pid = child.id();
    wait_for_workers(pid, 2, &[]);
    std::thread::sleep(Duration::from_millis(300));
    signal(pid, libc::SIGTERM);
    let run = finish(child);
    assert_eq!(run.code, 130, "{}\n{}", run.report, run.events);
    assert_eq!(run.report["outcome"], "interrupted");
    let done = run.report["tasks"]["done"].as_u64().unwrap_or(0);
    let remaining = run.report["tasks"]["remaining"].as_u64().unwrap_or(0);
    assert!(done > 0 && remaining > 0, "{}", run.report);
    assert_eq!(done + remaining, 400);
    assert_eq!(run.report["tasks"]["dead"], 0);
    assert_eq!(run.report["restarts"]["crashes"], 0, "{}", run.events);
    assert!(
        run.events.contains("SIGTERM: no new tasks"),
        "{}",
        run.events
    );
}

#[test]
fn a_second_sigint_stops_at_once() {
    // Tasks of 60 s and a 60 s graceful timeout: only the second SIGINT ends this soon.
    let child = supervisor("-w 2 --job sleep --tasks 10 --task-ms 60000 --graceful-timeout 60")
        .spawn()
        .expect("start");
    let pid = child.id();
    let workers = wait_for_workers(pid, 2, &[]);
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    signal(pid, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(200));
    signal(pid, libc::SIGINT);
    let run = finish(child);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(run.code, 130, "{}\n{}", run.report, run.events);
    assert_eq!(run.report["tasks"]["remaining"], 10);
    assert!(run.events.contains("second SIGINT"), "{}", run.events);
    // The supervisor says it killed them; nothing blames memory, and the
    // tasks they held are not charged.
    assert!(
        run.events
            .contains("stopped by the supervisor: second interrupt"),
        "{}",
        run.events
    );
    assert!(!run.events.contains("out of memory"), "{}", run.events);
    assert_eq!(run.report["restarts"]["crashes"], 0, "{}", run.report);
    assert_eq!(run.report["restarts"]["stopped"], 2, "{}", run.report);
    assert_eq!(
        run.report["restarts"]["stop_causes"]["second interrupt"], 2,
        "{}",
        run.report
    );
    assert_eq!(run.report["tasks"]["dead"], 0);
    for w in workers {
        assert!(!is_running(w), "worker {w} outlived the supervisor");
    }
}

#[test]
fn killing_the_supervisor_takes_its_workers_and_leaves_no_shared_memory() {
    let shm_before = shm_entries();
    let mut child = supervisor("-w 3 --limit 1e12").spawn().expect("start");
    let workers = wait_for_workers(child.id(), 3, &[]);
    signal(child.id(), libc::SIGKILL);
    let _ = child.wait();
    let started = Instant::now();
    while workers.iter().any(|&w| is_running(w)) {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "workers outlived their supervisor by a second"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let new: Vec<String> = shm_entries()
        .into_iter()
        .filter(|e| !shm_before.contains(e))
        .collect();
    assert!(new.is_empty(), "left in /dev/shm: {new:?}");
}

fn shm_entries() -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_worker_writing_garbage_is_replaced_and_the_run_completes() {
    let run =
        run("-w 2 --job fault --tasks 300 --task-ms 0 --garbage-rate 0.02 --max-restarts 1000");
    assert_eq!(run.code, 0, "{}\n{}", run.report, run.events);
    assert_eq!(run.report["verified"], true);
    assert_eq!(run.report["tasks"]["done"], 300);
    let garbage = run.report["restarts"]["kill_causes"]["sent garbage"]
        .as_u64()
        .unwrap_or(0);
    assert!(garbage >= 1, "{}", run.report);
    assert_eq!(run.report["restarts"]["killed"], garbage);
    assert_eq!(run.report["restarts"]["crashes"], 0);
}

#[test]
fn sighup_replaces_every_worker_and_loses_nothing() {
    let child = supervisor("-w 2 --job sleep --tasks 300 --task-ms 10")
        .spawn()
        .expect("start");
    let pid = child.id();
    let first = wait_for_workers(pid, 2, &[]);
    std::thread::sleep(Duration::from_millis(200));
    signal(pid, libc::SIGHUP);
    let run = finish(child);
    assert_eq!(run.code, 0, "{}\n{}", run.report, run.events);
    assert_eq!(run.report["tasks"]["done"], 300);
    assert_eq!(run.report["restarts"]["reloaded"], 2, "{}", run.events);
    assert_eq!(run.report["restarts"]["crashes"], 0);
    for w in first {
        assert!(!is_running(w));
    }
}

#[test]
fn workers_are_recycled_after_their_task_quota() {
    let run = run(
        "-w 2 --job sleep --tasks 100 --task-ms 0 --max-tasks-per-child 20 --max-tasks-jitter 5",
    );
    assert_eq!(run.code, 0, "{}\n{}", run.report, run.events);
    assert_eq!(run.report["tasks"]["done"], 100);
    let recycled = run.report["restarts"]["recycled"].as_u64().unwrap_or(0);
    // 100 tasks at 20 to 25 per worker: at least 3 recycles, at most 5.
    assert!((3..=5).contains(&recycled), "{}", run.report);
    assert_eq!(run.report["restarts"]["crashes"], 0);
}

#[test]
fn bad_options_are_usage_errors() {
    // Each is exit code 2 with clap's error on stderr, saying what is wrong.
    for (args, says) in [
        (&["--limit", "lots"][..], "is not a whole number"),
        (&["--limit", "1e30"], "is too large"),
        (&["--workers", "0"], "must be at least 1"),
        (&["--job", "nonesuch"], "unknown job `nonesuch`"),
        (&["--chunk", "0"], "must be at least 1"),
        (
            &["--limit", "1e12", "--chunk", "10"],
            "more than the 100000000 a run may have",
        ),
        (&["--max-attempts", "0"], "--max-attempts"),
        (&["--job", "sleep", "--limit", "5"], "--limit"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_supervisor"))
            .args(args)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn a_report_that_cannot_be_written_is_an_error() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let out = Command::new(env!("CARGO_BIN_EXE_supervisor"))
        .args([
            "--job",
            "sleep",
            "--tasks",
            "3",
            "--task-ms",
            "0",
            "--quiet",
        ])
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot write the report"));
    // A reader that is gone before the report comes.
    let mut child = Command::new(env!("CARGO_BIN_EXE_supervisor"))
        .args([
            "--job",
            "sleep",
            "--tasks",
            "3",
            "--task-ms",
            "100",
            "--quiet",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot write the report"));
}

#[test]
fn counts_are_said_in_the_singular_when_one() {
    let out = Command::new(env!("CARGO_BIN_EXE_supervisor"))
        .args([
            "--job",
            "sleep",
            "--tasks",
            "1",
            "--task-ms",
            "0",
            "-w",
            "1",
            "--quiet",
        ])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 of 1 task done"), "{text}");
    assert!(text.contains("0 crashes"), "{text}");
    assert!(!text.contains("1 tasks"), "{text}");
}

#[test]
fn sigttin_adds_a_worker_and_sigttou_removes_one() {
    let child = supervisor("-w 2 --job sleep --tasks 400 --task-ms 10")
        .spawn()
        .expect("start");
    let pid = child.id();
    wait_for_workers(pid, 2, &[]);
    signal(pid, libc::SIGTTIN);
    wait_for_workers(pid, 3, &[]);
    // One at a time: two signals sent together may arrive as one.
    for left in [2, 1] {
        signal(pid, libc::SIGTTOU);
        let started = Instant::now();
        while workers_of(pid).len() != left {
            assert!(started.elapsed() < HANG, "workers were not retired");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let run = finish(child);
    assert_eq!(run.code, 0, "{}\n{}", run.report, run.events);
    assert_eq!(run.report["tasks"]["done"], 400);
    assert_eq!(run.report["restarts"]["crashes"], 0);
    assert!(run.events.contains("SIGTTOU: retiring"), "{}", run.events);
    // The added worker is said to be added, not a replacement.
    assert!(
        run.events.contains("added (SIGTTIN); started as pid"),
        "{}",
        run.events
    );
    assert!(
        !run.events.contains("added (SIGTTIN); replaced"),
        "{}",
        run.events
    );
    assert_eq!(run.report["workers"], 2);
    assert_eq!(run.report["workers_peak"], 3);
    assert_eq!(run.report["workers_at_end"], 1);
}

#[test]
fn control_signals_sent_to_workers_do_not_stop_them() {
    // `pkill -TTIN -f supervisor` reaches the workers too (same command line).
    let child = supervisor("-w 2 --job sleep --tasks 100 --task-ms 10 --worker-timeout 5")
        .spawn()
        .expect("start");
    for w in wait_for_workers(child.id(), 2, &[]) {
        for sig in [libc::SIGHUP, libc::SIGTTIN, libc::SIGTTOU, libc::SIGINT] {
            signal(w, sig);
        }
    }
    let run = finish(child);
    assert_eq!(run.code, 0, "{}\n{}", run.report, run.events);
    assert_eq!(run.report["tasks"]["done"], 100);
    assert_eq!(run.report["restarts"]["crashes"], 0, "{}", run.events);
}
