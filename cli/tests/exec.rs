//! `supervisor --exec`: any command as the job. Failures, hangs past
//! `--task-timeout` and deaths by signal run as often as `--retries` asks,
//! then are dead-lettered with their status; outputs of megabytes come out
//! whole and never interleave, one over `--max-message-bytes` fails once;
//! `--keep-order` holds; a SIGKILLed supervisor leaves no command running.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Runs `supervisor --exec CMD ARGS...` with `lines` on stdin; its exit
/// code, the commands' stdout, and the JSON report.
fn exec(command: &str, args: &[&str], lines: &str) -> (i32, String, Value) {
    let dir = std::env::temp_dir().join(format!(
        "exec-test-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let report = dir.join("report.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_supervisor"))
        .args(["--exec", command, "--json", "--quiet", "--report"])
        .arg(&report)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the supervisor");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(lines.as_bytes()).expect("write lines");
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    let text = std::fs::read_to_string(&report).unwrap_or_else(|e| {
        panic!(
            "no report ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        serde_json::from_str(text.trim()).expect("JSON report"),
    )
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn numbered(n: usize) -> String {
    (0..n).map(|i| format!("{i}\n")).collect()
}

#[test]
fn every_line_runs_once_and_its_output_comes_whole() {
    // Each command prints 50 lines; another command's lines never land
    // between them.
    let script = "i=0; while [ $i -lt 50 ]; do echo \"$1 $i\"; i=$((i+1)); done";
    let (code, stdout, report) = exec(
        &format!("sh -c '{script}' sh {{}}"),
        &["--workers", "4"],
        &numbered(40),
    );
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["tasks"]["done"], 40);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 40 * 50);
    for block in lines.chunks(50) {
        let task = block[0].split(' ').next().unwrap_or("");
        for (k, line) in block.iter().enumerate() {
            assert_eq!(*line, format!("{task} {k}"), "interleaved output");
        }
    }
}

#[test]
fn keep_order_prints_in_input_order() {
    // Later lines finish first (shorter sleeps); the output is still in order.
    let lines: String = (0..12)
        .map(|i| format!("{}\n", (12 - i) as f64 / 100.0))
        .collect();
    let (code, stdout, _) = exec(
        "sh -c 'sleep $1; echo $1' sh {}",
        &["--workers", "4", "--keep-order"],
        &lines,
    );
    assert_eq!(code, 0);
    assert_eq!(stdout, lines);
}

#[test]
fn failures_are_retried_as_asked_then_dead_letters_with_their_status() {
    let lines = "ok\nexit7\nsegv\nhang\n";
    let script = "case $1 in ok) echo fine;; exit7) echo bad >&2; exit 7;; segv) kill -SEGV $$;; hang) sleep 60;; esac";
    let started = Instant::now();
    let (code, stdout, report) = exec(
        &format!("sh -c '{script}' sh {{}}"),
        &["--workers", "2", "--retries", "2", "--task-timeout", "0.5"],
        lines,
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(code, 3, "{report}");
    assert_eq!(stdout, "fine\n");
    assert_eq!(report["tasks"]["done"], 1);
    let dead = report["dead_letters"].as_array().expect("dead letters");
    assert_eq!(dead.len(), 3, "{report}");
    let cause_of = |line: &str| -> String {
        let d = dead
            .iter()
            .find(|d| d["input"] == line)
            .unwrap_or_else(|| panic!("no dead letter for {line}: {report}"));
        assert_eq!(d["failures"], 2);
        d["last_cause"].as_str().unwrap_or("").to_string()
    };
    let exit7 = cause_of("exit7");
    assert!(
        exit7.contains("exited with code 7") && exit7.contains("stderr: bad"),
        "{exit7}"
    );
    assert!(cause_of("segv").contains("killed by SIGSEGV"));
    assert!(cause_of("hang").contains("timed out after"));
}

#[test]
fn a_killed_supervisor_leaves_no_command_running() {
    // A marker no other process has, to find the commands by.
    let marker = format!("{}.{}", 900 + std::process::id() % 97, std::process::id());
    let mut child = Command::new(env!("CARGO_BIN_EXE_supervisor"))
        .args(["--exec", "sleep", "--workers", "2", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "{marker}\n{marker}\n{marker}").expect("lines");
    drop(stdin);
    let running = || {
        common::all_pids()
            .into_iter()
            .filter(|&pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&marker))
            })
            .count()
    };
    let started = Instant::now();
    while running() < 2 {
        assert!(
            started.elapsed() < common::HANG,
            "the commands never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill has no memory arguments.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    let started = Instant::now();
    while running() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a command outlived the supervisor"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_large_output_is_printed_whole_and_one_over_the_message_cap_fails_once() {
    // 3 MB per command, a line each of its own digit, from 4 commands on 2
    // workers: every byte printed, no output cut into another's.
    let script = "sh -c 'yes $0 | head -c 3000000' {}";
    let (code, stdout, report) = exec(script, &["--workers", "2"], "1\n2\n3\n4\n");
    assert_eq!(code, 0, "{report}");
    assert_eq!(stdout.len(), 4 * 3_000_000);
    for digit in ["1", "2", "3", "4"] {
        let lines = stdout.lines().filter(|l| *l == digit).count();
        assert_eq!(lines, 1_500_000, "lines of {digit}");
    }
    // Over --max-message-bytes: killed, a dead letter after one run, not
    // three (running it again would write as much).
    let dir = std::env::temp_dir().join(format!("exec-cap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let runs = dir.join("runs");
    let script = format!(
        "sh -c 'echo run >> {}; yes | head -c 500000' {{}}",
        runs.display()
    );
    let (code, stdout, report) = exec(&script, &["--max-message-bytes", "100K"], "a\n");
    assert_eq!(code, 3, "{report}");
    assert_eq!(stdout, "");
    let dead = &report["dead_letters"][0];
    assert_eq!(dead["failures"], 1, "{report}");
    assert!(
        dead["last_cause"]
            .as_str()
            .is_some_and(|c| c.contains("over the largest message allowed")),
        "{report}"
    );
    assert_eq!(
        std::fs::read_to_string(&runs)
            .expect("runs")
            .lines()
            .count(),
        1
    );
    let _ = std::fs::remove_dir_all(&dir);
}
