//! `supervisor top` in a real terminal (tmux, 80x24): the screen shows the
//! worker table of a running supervisor, its keys kill a worker and scale
//! the fleet, and when the supervisor ends the view exits with the
//! terminal restored (out of the alternate screen).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux").args(args).output().expect("run tmux");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn screen(session: &str) -> String {
    tmux(&["capture-pane", "-p", "-t", session])
}

/// Waits until `what` holds of the screen.
fn wait_screen(session: &str, what: &str, holds: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let text = screen(session);
        if holds(&text) {
            return text;
        }
        assert!(
            started.elapsed() < HANG,
            "never {what}; the screen:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `status --json` of `pid`, once it answers.
fn status(pid: u32) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_supervisor"))
        .args(["status", &pid.to_string(), "--json"])
        .output()
        .expect("status");
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .map_or(serde_json::Value::Null, |v| v["status"].clone())
}

fn wait_status(pid: u32, what: &str, holds: impl Fn(&serde_json::Value) -> bool) {
    let started = Instant::now();
    while !holds(&status(pid)) {
        assert!(started.elapsed() < HANG, "never {what}: {}", status(pid));
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn top_shows_the_workers_steers_them_and_restores_the_terminal() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("SKIPPED: tmux is not installed (.ci/run installs it)");
        return;
    }
    let child = supervisor("-w 2 --job sleep --tasks 1000000 --task-ms 1")
        .spawn()
        .expect("start");
    let pid = child.id();
    wait_status(pid, "two workers", |s| {
        s["workers"]
            .as_array()
            .is_some_and(|w| w.iter().filter(|w| w["pid"].is_u64()).count() == 2)
    });
    let session = format!("top-test-{}", std::process::id());
    let command = format!(
        "sh -c '{} top {pid}; echo EXIT=$?; sleep 120'",
        env!("CARGO_BIN_EXE_supervisor")
    );
    tmux(&[
        "new-session",
        "-d",
        "-x",
        "80",
        "-y",
        "24",
        "-s",
        &session,
        &command,
    ]);
    let text = wait_screen(&session, "the worker table", |t| {
        t.contains("workers") && t.contains("slot") && t.contains(&format!("supervisor {pid}"))
    });
    assert!(text.lines().count() <= 24, "{text}");
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
    // x kills the selected (first) worker; + adds one.
    tmux(&["send-keys", "-t", &session, "x"]);
    wait_status(pid, "worker 1 replaced", |s| {
        s["workers"][0]["restarts"] == 1
    });
    tmux(&["send-keys", "-t", &session, "+"]);
    wait_status(pid, "three workers wanted", |s| s["workers_target"] == 3);
    wait_screen(&session, "the third worker", |t| {
        t.lines()
            .any(|l| l.trim_start_matches('│').starts_with("3 "))
    });
    // The supervisor ends: top says so and leaves the terminal as it was.
    let out = Command::new(env!("CARGO_BIN_EXE_supervisor"))
        .args(["stop", &pid.to_string(), "--now"])
        .output()
        .expect("stop");
    assert!(out.status.success());
    let text = wait_screen(&session, "top's exit", |t| t.contains("EXIT="));
    assert!(text.contains(&format!("supervisor {pid} ended")), "{text}");
    assert!(text.contains("EXIT=0"), "{text}");
    assert_eq!(
        tmux(&["display", "-p", "-t", &session, "#{alternate_on}"]).trim(),
        "0"
    );
    tmux(&["kill-session", "-t", &session]);
    let run = finish(child);
    assert!(
        run.events.contains("control: sent SIGKILL to worker 1"),
        "{}",
        run.events
    );
    assert!(
        run.events.contains("control: adding 1 worker (2 -> 3)"),
        "{}",
        run.events
    );
}
