//! `--worker-cmd`: long-lived worker programs (Python through the shipped
//! client, and a shell script) under the supervisor's guarantees. Their
//! programs are SIGKILLed, hang past `--task-timeout`, print garbage, exit
//! after ten tasks, grow past `--max-worker-memory`: each is replaced with
//! its reason, and every answer is exact. The conformance check runs
//! against both clients.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("worker-cmd-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A Python worker program in `dir` whose task function is `body` (a
/// function `work(line)`, with `os`, `sys`, `time` imported).
fn python_worker(dir: &Path, body: &str) -> String {
    let path = dir.join("worker.py");
    let client = repo().join("clients/python");
    let program = format!(
        "import os, sys, time\nsys.path.insert(0, {client:?})\nfrom outlast_worker import serve\n{body}\nserve(work)\n"
    );
    std::fs::write(&path, program).expect("write the worker");
    format!("python3 {}", path.display())
}

/// `supervisor --worker-cmd CMD` over `inputs`, with `args`.
fn run(dir: &Path, cmd: &str, inputs: &str, args: &[&str]) -> Output {
    common::with_stdin(
        Command::new(env!("CARGO_BIN_EXE_supervisor"))
            .current_dir(dir)
            .args([
                "--quiet",
                "--json",
                "--report",
                "report.json",
                "--keep-order",
            ])
            .args(["--worker-cmd", cmd])
            .args(args),
        inputs,
    )
}

fn report(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("report.json")).expect("a report");
    serde_json::from_str(&text).expect("JSON")
}

fn numbers(n: u64) -> String {
    (1..=n).map(|i| format!("{i}\n")).collect()
}

/// The outputs, one a line, as numbers.
fn outputs(out: &Output) -> Vec<u64> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            l.trim()
                .parse()
                .unwrap_or_else(|_| panic!("not a number: {l}"))
        })
        .collect()
}

const SQUARES: &str = "def work(line):\n    return sum(i * i for i in range(int(line)))\n";

fn sum_of_squares_below(n: u64) -> u64 {
    (0..n).map(|i| i * i).sum()
}

/// The worker programs under `supervisor`: its workers' children.
fn programs_of(supervisor: u32) -> Vec<u32> {
    tests::procfs::children_of(supervisor)
        .into_iter()
        .flat_map(|(worker, _)| tests::procfs::children_of(worker))
        .filter(|&(_, state)| state != 'Z')
        .map(|(pid, _)| pid)
        .collect()
}

#[test]
fn a_python_worker_killed_three_times_gives_every_result_once() {
    use std::io::Write;
    let dir = temp_dir("kills");
    let cmd = python_worker(&dir, SQUARES);
    let mut child = Command::new(env!("CARGO_BIN_EXE_supervisor"))
        .current_dir(&dir)
        .args([
            "--quiet",
            "--json",
            "--report",
            "report.json",
            "--keep-order",
        ])
        .args(["--workers", "2", "--worker-cmd", &cmd])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the supervisor");
    let supervisor = child.id();
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(numbers(10_000).as_bytes()).expect("inputs");
    drop(stdin);
    // Three SIGKILLs of a running program, spread over the run.
    let mut kills = 0;
    let started = Instant::now();
    while kills < 3 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(&program) = programs_of(supervisor).first() {
            // SAFETY: kill(2) on a pid this test saw as a program of ours.
            if unsafe { libc::kill(program as i32, libc::SIGKILL) } == 0 {
                kills += 1;
            }
        }
    }
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = outputs(&out);
    let want: Vec<u64> = (1..=10_000).map(sum_of_squares_below).collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "every output, in order, once");
    assert_eq!(kills, 3, "the run ended before three kills");
    assert_eq!(report(&dir)["tasks"]["done"], 10_000);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A worker that misbehaves once, on input 7, in the way `body` says (a
/// flag file makes it once), then answers squares: the run is exact and
/// the event names the reason.
fn misbehaves_once(name: &str, misbehave: &str, args: &[&str], reason: &str) {
    let dir = temp_dir(name);
    let body = format!(
        "def work(line):\n    if line == '7' and not os.path.exists('flag'):\n        open('flag', 'w').close()\n{misbehave}\n    return sum(i * i for i in range(int(line)))\n"
    );
    let cmd = python_worker(&dir, &body);
    let mut all = vec!["--workers", "2"];
    all.extend_from_slice(args);
    let out = run(&dir, &cmd, &numbers(40), &all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let want: Vec<u64> = (1..=40).map(sum_of_squares_below).collect();
    assert_eq!(outputs(&out), want, "{stderr}");
    assert!(
        stderr.contains(reason),
        "{name}: no `{reason}` in: {stderr}"
    );
    let report = report(&dir);
    assert_eq!(report["tasks"]["done"], 40);
    // Its program was replaced once, inside a worker that lived on.
    assert_eq!(report["restarts"]["programs"], 1, "{report}");
    assert_eq!(report["restarts"]["crashes"], 0, "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_program_past_the_task_timeout_is_replaced() {
    misbehaves_once(
        "timeout",
        "        time.sleep(60)",
        &["--task-timeout", "1"],
        "no answer after 1.",
    );
}

#[test]
fn a_program_printing_garbage_is_replaced() {
    misbehaves_once(
        "garbage",
        "        sys.__stdout__.write('garbage\\n'); sys.__stdout__.flush(); time.sleep(60)",
        &[],
        "a line that is not a frame",
    );
}

#[test]
fn a_program_answering_another_task_is_replaced() {
    misbehaves_once(
        "other-id",
        "        sys.__stdout__.write('{\"id\": 123456, \"output\": 1}\\n'); sys.__stdout__.flush(); time.sleep(60)",
        &[],
        "which it does not hold",
    );
}

/// Input `big` answers with a string of SIZE bytes (its JSON frame a
/// little more); the others with their number.
const BIG_ANSWER: &str = "def work(line):\n    if line.startswith('big'):\n        return 'x' * int(line.split()[1])\n    return int(line)\n";

/// An 80 MB output goes through with the default caps (it passed 64 MiB,
/// --max-frame's old default, which failed it three times). Over
/// --max-message-bytes, or an explicit --max-frame, it is the task's
/// error at once, for good, as any task's output over the cap is: one
/// attempt, no retry, every other answer exact, the program replaced.
#[test]
fn a_large_output_passes_and_one_over_the_cap_fails_once() {
    let dir = temp_dir("big");
    let cmd = python_worker(&dir, BIG_ANSWER);
    let inputs = "1\nbig 80000000\n3\n";
    let out = run(&dir, &cmd, inputs, &["--workers", "2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<&[u8]> = out.stdout.split(|&b| b == b'\n').collect();
    assert_eq!(lines[0], b"1");
    assert_eq!(lines[1].len(), 80_000_002, "the string's JSON text, quoted");
    assert!(lines[1][1..80_000_001].iter().all(|&b| b == b'x'));
    assert_eq!(lines[2], b"3");

    for (args, cap, option) in [
        (
            &["--max-message-bytes", "10M"][..],
            10 << 20,
            "--max-message-bytes",
        ),
        (&["--max-frame", "100K"][..], 100 << 10, "--max-frame"),
    ] {
        let mut all = vec!["--workers", "2"];
        all.extend_from_slice(args);
        let out = run(&dir, &cmd, "1\nbig 20000000\n3\n", &all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "a dead letter: {stderr}");
        assert_eq!(outputs(&out), [1, 3], "{stderr}");
        let report = report(&dir);
        let dead = &report["dead_letters"][0];
        assert_eq!(dead["input"], "big 20000000", "{report}");
        assert_eq!(dead["failures"], 1, "not retried: {report}");
        let cause = dead["last_cause"].as_str().unwrap_or("");
        assert!(cause.contains(&cap.to_string()), "{cause}");
        assert!(
            stderr.contains(&format!("the most allowed ({option})")),
            "{stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_program_that_exits_after_ten_tasks_is_started_again() {
    let dir = temp_dir("ten");
    let body = "done = [0]\ndef work(line):\n    done[0] += 1\n    if done[0] > 10:\n        os._exit(0)\n    return sum(i * i for i in range(int(line)))\n";
    let cmd = python_worker(&dir, body);
    let out = run(&dir, &cmd, &numbers(100), &["--workers", "2"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want: Vec<u64> = (1..=100).map(sum_of_squares_below).collect();
    assert_eq!(outputs(&out), want);
    // A program answers at most 10: at least 10 ran, and each died but
    // the last of each worker.
    let report = report(&dir);
    let again = report["restarts"]["programs"].as_u64().unwrap_or(0);
    assert!(again >= 8, "{report}");
    assert_eq!(report["restarts"]["crashes"], 0, "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_program_past_max_worker_memory_gets_its_worker_recycled() {
    let dir = temp_dir("memory");
    // Each program keeps 40 MB more per task it runs: the worker's tree
    // passes 100 MB within a few tasks, and is recycled.
    let body = "kept = []\ndef work(line):\n    kept.append(b'x' * (40 * 1024 * 1024))\n    time.sleep(0.05)\n    return sum(i * i for i in range(int(line)))\n";
    let cmd = python_worker(&dir, body);
    let out = run(
        &dir,
        &cmd,
        &numbers(30),
        &["--workers", "2", "--max-worker-memory", "100M"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let want: Vec<u64> = (1..=30).map(sum_of_squares_below).collect();
    assert_eq!(outputs(&out), want);
    let report = report(&dir);
    let recycled = report["restarts"]["memory"].as_u64().unwrap_or(0);
    assert!(recycled >= 1, "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_error_is_the_tasks_and_is_retried_then_a_dead_letter() {
    let dir = temp_dir("errors");
    let body = "def work(line):\n    if line == '3':\n        raise ValueError('three is right out')\n    return int(line)\n";
    let cmd = python_worker(&dir, body);
    let out = run(
        &dir,
        &cmd,
        &numbers(5),
        &["--workers", "2", "--max-attempts", "2"],
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(outputs(&out), [1, 2, 4, 5]);
    let report = report(&dir);
    let dead = &report["dead_letters"][0];
    assert_eq!(dead["input"], "3");
    assert_eq!(dead["failures"], 2);
    assert!(
        dead["last_cause"]
            .as_str()
            .unwrap_or("")
            .contains("three is right out"),
        "{dead}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `supervisor worker-conformance CMD`: exit 0 and `passed` for a conforming worker.
fn conformance(cmd: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_supervisor"))
        .args(["worker-conformance", cmd])
        .output()
        .expect("run the conformance check")
}

#[test]
fn the_shipped_clients_pass_the_conformance_check() {
    let python = format!(
        "python3 {}",
        repo().join("clients/python/outlast_worker.py").display()
    );
    let shell = format!(
        "sh {}",
        repo().join("clients/shell/echo_worker.sh").display()
    );
    for cmd in [python, shell] {
        let out = conformance(&cmd);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{cmd}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("passed"), "{text}");
    }
}

#[test]
fn a_broken_worker_fails_the_conformance_check_in_words() {
    let dir = temp_dir("nonconforming");
    // Answers with the wrong id.
    let script = dir.join("bad.sh");
    std::fs::write(
        &script,
        "echo '{\"hello\":\"outlast\",\"protocol\":1}'\nwhile read -r line; do echo '{\"id\":999999,\"output\":1}'; done\n",
    )
    .expect("write");
    let out = conformance(&format!("sh {}", script.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL") && text.contains("does not hold"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn any_json_value_is_an_output_null_included() {
    let dir = temp_dir("values");
    let body = "def work(line):\n    print('noise', line)\n    return [None, {'n': int(line)}, 'x', 1.5, True][int(line)]\n";
    let cmd = python_worker(&dir, body);
    let out = run(&dir, &cmd, "0\n1\n2\n3\n4\n", &["--workers", "2"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "null\n{\"n\":1}\n\"x\"\n1.5\ntrue\n"
    );
    // What the function printed went to stderr, with its worker's slot.
    let stderr = String::from_utf8_lossy(&out.stderr);
    for n in 0..5 {
        assert!(
            stderr.contains(&format!("] noise {n}\n")) && stderr.contains("[worker "),
            "{stderr}"
        );
    }
    // --results: in files, not printed.
    let out = run(&dir, &cmd, "1\n2\n", &["--results", "res"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    let one = dir.join("res/1/1");
    assert_eq!(
        std::fs::read_to_string(one.join("output")).expect("output"),
        "{\"n\":1}\n"
    );
    assert_eq!(std::fs::read_to_string(one.join("seq")).expect("seq"), "1");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_program_that_never_starts_stops_the_run_and_charges_no_task() {
    let dir = temp_dir("never-starts");
    // A Python syntax error: the program complains and exits before its
    // hello, every time. Each failed start ends its worker (exit 78); the
    // restart limit (20) stops the run in seconds, with every task still
    // to do (a journal would run them all once the program is fixed),
    // and the complaint is printed once per start, not once per attempt
    // of each of the 200 tasks.
    std::fs::write(dir.join("broken.py"), "def broken(:\n").expect("write");
    let out = run(
        &dir,
        "python3 broken.py",
        &numbers(200),
        &["--workers", "2"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    let first = report(&dir);
    assert_eq!(first["tasks"]["done"], 0, "{first}");
    assert_eq!(first["tasks"]["dead"], 0, "{first}");
    assert_eq!(first["tasks"]["remaining"], 200, "{first}");
    let complaints = stderr.matches("SyntaxError").count();
    assert!((21..=30).contains(&complaints), "{complaints}: {stderr}");
    // Each failed start's complaint came out whole, its last line too
    // (the worker exited before passing it on, under load).
    every_start_failure_follows(&stderr, "] SyntaxError: invalid syntax");
    // A program that is no worker (`cat` waits for input and says
    // nothing) is given --start-timeout each time; starts failing in a
    // row, however slowly, stop the run past --max-restarts.
    let out = run(
        &dir,
        "cat",
        &numbers(3),
        &[
            "--workers",
            "1",
            "--start-timeout",
            "0.3",
            "--max-restarts",
            "2",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    let second = report(&dir);
    assert_eq!(second["tasks"]["dead"], 0, "{second}");
    assert!(
        second["reason"]
            .as_str()
            .is_some_and(|s| s.contains("could not start 3 times in a row")),
        "{second}"
    );
    // A program that says much on stderr (more than a pipe holds) before
    // it exits: all of it is passed on before its worker exits, each time.
    let out = run(
        &dir,
        "sh -c 'seq 1 30000 >&2; exit 1'",
        &numbers(3),
        &["--workers", "2", "--max-restarts", "3"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.matches("cannot start: ").count() >= 4, "{stderr}");
    every_start_failure_follows(&stderr, "] 30000");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Each `worker N: cannot start` line in `stderr` comes after worker N's
/// program wrote `last` (its complaint's last line) since its previous one.
fn every_start_failure_follows(stderr: &str, last: &str) {
    let mut seen = std::collections::HashMap::new();
    for line in stderr.lines() {
        if let Some(rest) = line.strip_prefix("[worker ") {
            if let Some((slot, _)) = rest.split_once(']') {
                if line.ends_with(last) {
                    seen.insert(slot.to_string(), true);
                }
            }
        } else if let Some(rest) = line.strip_prefix("worker ") {
            if let Some((slot, _)) = rest.split_once(": cannot start: ") {
                let complained = seen.insert(slot.to_string(), false).unwrap_or(false);
                assert!(
                    complained,
                    "worker {slot}'s start failed without its program's `{last}`: {stderr}"
                );
            }
        }
    }
}

/// A worker program given with shell syntax (`cd DIR && ...`, a
/// redirection) runs under `sh -c`: split into words, its first word was
/// `cd`, which is no program, and no worker could start.
#[test]
fn a_program_with_shell_syntax_runs_under_a_shell() {
    let dir = temp_dir("shell-syntax");
    python_worker(&dir, SQUARES);
    let cmd = format!("cd {} && python3 worker.py 2>/dev/null", dir.display());
    let out = run(&dir, &cmd, &numbers(20), &["--workers", "2"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Vec<u64> = (1..=20).map(sum_of_squares_below).collect();
    assert_eq!(outputs(&out), expected);
    let _ = std::fs::remove_dir_all(&dir);
}
