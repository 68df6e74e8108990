//! `--journal`: the supervisor itself SIGKILLed at random moments and
//! started again with the same command finishes with the exact answer,
//! never running a settled task again; a torn journal, a full disk,
//! another job's journal and `--resume-failed` behave as documented.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("journal-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A small xorshift, seeded from the clock: kills land at new moments
/// each run, and the seed is printed to replay one.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        eprintln!("seed {seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// `supervisor journal PATH --json`.
fn journal_summary(path: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_supervisor"))
        .arg("journal")
        .arg(path)
        .arg("--json")
        .output()
        .expect("supervisor journal");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// The task ids a journal has done.
fn done_ids(summary: &Value) -> BTreeSet<u64> {
    let mut ids = BTreeSet::new();
    for range in summary["done_ranges"].as_array().expect("ranges") {
        let first = range[0].as_u64().expect("first");
        let last = range[1].as_u64().expect("last");
        ids.extend(first..=last);
    }
    ids
}

/// The JSON report a run wrote to `dir/report.json`.
fn report_in(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("report.json")).expect("a report");
    serde_json::from_str(&text).expect("a JSON report")
}

/// Asserts a run exited 0, showing its stderr if not.
fn succeeded(out: &std::process::Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How many times each line is in `path`.
fn line_counts(path: &Path) -> BTreeMap<u64, u64> {
    let mut counts = BTreeMap::new();
    let text = std::fs::read_to_string(path).unwrap_or_default();
    for line in text.lines() {
        let n: u64 = line.trim().parse().expect("a number per line");
        *counts.entry(n).or_insert(0) += 1;
    }
    counts
}

/// Waits until `path` stops growing (the killed run's commands are gone).
fn settle(path: &Path) {
    let mut last = u64::MAX;
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = std::fs::metadata(path).map_or(0, |m| m.len());
        if now == last {
            return;
        }
        last = now;
    }
}

/// Starts `args`, lets it run until `until` says so (or it ends), then
/// SIGKILLs it. True if it was still running when killed.
fn kill_when(mut cmd: Command, until: &mut dyn FnMut() -> bool) -> bool {
    let mut child = cmd.spawn().expect("start the supervisor");
    let started = Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if until() {
            break;
        }
        assert!(started.elapsed() < common::HANG, "the supervisor hung");
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
    true
}

fn exec_command(dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_supervisor"));
    cmd.current_dir(dir)
        .args([
            "--workers",
            "2",
            "--quiet",
            "--json",
            "--report",
            "report.json",
        ])
        .args(["--exec", "sh -c 'echo $0 >> out'", "--input", "lines"])
        .args(["--journal", "journal"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

#[test]
fn a_supervisor_killed_five_times_finishes_exec_with_every_line_and_none_settled_twice() {
    let dir = temp_dir("exec");
    let lines: String = (0..1000).map(|i| format!("{i}\n")).collect();
    std::fs::write(dir.join("lines"), lines).expect("lines");
    let out = dir.join("out");
    let mut rng = Rng::new();
    // At each kill: how often each line was written, and what was settled.
    let mut kills: Vec<(BTreeMap<u64, u64>, BTreeSet<u64>)> = Vec::new();
    for round in 0..5u64 {
        // Somewhere in this round's fifth of the lines.
        let target = round * 200 + 20 + rng.below(160);
        let killed = kill_when(exec_command(&dir, &[]), &mut || {
            std::fs::read(&out).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count()) as u64
                >= target
        });
        assert!(killed, "round {round}: the run ended before line {target}");
        settle(&out);
        let summary = journal_summary(&dir.join("journal"));
        kills.push((line_counts(&out), done_ids(&summary)));
    }
    let run = exec_command(&dir, &[]).output().expect("the last run");
    succeeded(&run);
    let report = report_in(&dir);
    assert_eq!(report["result"], "1000", "{report}");
    assert_eq!(report["tasks"]["done"], 1000);
    let settled_last = kills.last().map_or(0, |(_, s)| s.len() as u64);
    assert_eq!(report["tasks"]["resumed"], settled_last, "{report}");
    let counts = line_counts(&out);
    for line in 0..1000 {
        assert!(
            counts.get(&line).copied().unwrap_or(0) >= 1,
            "line {line} never ran"
        );
    }
    for (k, (at_kill, settled)) in kills.iter().enumerate() {
        assert!(!settled.is_empty(), "kill {k}: nothing settled");
        for id in settled {
            // Settled before kill k: never run again after it.
            assert_eq!(
                counts.get(id),
                at_kill.get(id),
                "line {id}, settled before kill {k}, ran again"
            );
        }
    }
    // Before the first kill nothing had run twice.
    for id in &kills[0].1 {
        assert_eq!(counts.get(id), Some(&1), "line {id}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn primes_resumed_after_five_kills_is_exact() {
    let dir = temp_dir("primes");
    let journal = dir.join("journal");
    let args = [
        "--workers",
        "2",
        "--job",
        "primes",
        "--limit",
        "1e10",
        "--quiet",
        "--json",
    ];
    let mut rng = Rng::new();
    let mut kills = 0;
    for _ in 0..5 {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_supervisor"));
        cmd.args(args)
            .arg("--journal")
            .arg(&journal)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let done_before = if journal.exists() {
            journal_summary(&journal)["done"].as_u64().unwrap_or(0)
        } else {
            0
        };
        // Killed once a few more tasks have settled (or when it ends).
        let more = 1 + rng.below(40);
        let mut checked = Instant::now();
        if kill_when(cmd, &mut || {
            if checked.elapsed() < Duration::from_millis(20) || !journal.exists() {
                return false;
            }
            checked = Instant::now();
            journal_summary(&journal)["done"].as_u64().unwrap_or(0) >= done_before + more
        }) {
            kills += 1;
        }
    }
    let summary = journal_summary(&journal);
    let settled = summary["done"].as_u64().expect("done");
    let run = Command::new(env!("CARGO_BIN_EXE_supervisor"))
        .args(args)
        .arg("--journal")
        .arg(&journal)
        .output()
        .expect("the last run");
    let report: Value = serde_json::from_slice(&run.stdout).expect("JSON report");
    assert_eq!(run.status.code(), Some(0), "{report}");
    assert_eq!(report["result"], "455052511", "{report}");
    assert_eq!(report["verified"], true);
    assert_eq!(report["tasks"]["resumed"], settled, "{report}");
    assert!(
        kills >= 3,
        "only {kills} runs were killed before they ended"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_torn_journal_is_cut_back_said_and_resumed() {
    let dir = temp_dir("torn");
    let lines: String = (0..50).map(|i| format!("{i}\n")).collect();
    std::fs::write(dir.join("lines"), lines).expect("lines");
    let first = exec_command(&dir, &[]).output().expect("run");
    assert_eq!(first.status.code(), Some(0));
    let journal = dir.join("journal");
    let len = std::fs::metadata(&journal).expect("journal").len();
    // Its last record cut in the middle, then garbage after it.
    let mut bytes = std::fs::read(&journal).expect("read");
    bytes.truncate(len as usize - 5);
    bytes.extend_from_slice(b"garbage");
    std::fs::write(&journal, &bytes).expect("write");
    let summary = journal_summary(&journal);
    assert!(summary["dropped"]["why"].is_string(), "{summary}");
    let done = summary["done"].as_u64().expect("done");
    assert!(done < 50, "{summary}");
    let again = exec_command(&dir, &[]).output().expect("run");
    let events = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(0), "{events}");
    let report = report_in(&dir);
    assert_eq!(report["tasks"]["done"], 50);
    assert_eq!(report["tasks"]["resumed"], done);
    let notes = report["notes"].to_string();
    assert!(notes.contains("dropped"), "{notes}");
    assert_eq!(journal_summary(&journal)["dropped"], Value::Null);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn another_jobs_journal_is_refused_in_words() {
    let dir = temp_dir("other");
    std::fs::write(dir.join("lines"), "a\nb\n").expect("lines");
    let first = exec_command(&dir, &["--joblog", "log"])
        .output()
        .expect("run");
    assert_eq!(first.status.code(), Some(0));
    let log = std::fs::read_to_string(dir.join("log")).expect("joblog");
    std::fs::write(dir.join("lines"), "a\nc\n").expect("other lines");
    let other = exec_command(&dir, &["--joblog", "log"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert_eq!(other.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is for another job"), "{stderr}");
    // The refused run leaves the first run's joblog as it was.
    assert_eq!(
        std::fs::read_to_string(dir.join("log")).expect("joblog"),
        log
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_journal_with_a_broker_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_supervisor"))
        .args([
            "--job",
            "sleep",
            "--journal",
            "j",
            "--broker",
            "redis://127.0.0.1:1/0",
        ])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--journal") && stderr.contains("--broker"),
        "{stderr}"
    );
}

#[test]
fn a_full_disk_stops_the_run_cleanly_and_keeps_what_settled() {
    let dir = temp_dir("full");
    let lines: String = (0..400).map(|i| format!("{i}\n")).collect();
    std::fs::write(dir.join("lines"), lines).expect("lines");
    // The journal on a 2 MiB tmpfs of its own (a mount namespace: no
    // root needed where user namespaces are allowed), 400 outputs of 64
    // KiB to keep: it fills mid-run. The journal is copied out after.
    let supervisor = env!("CARGO_BIN_EXE_supervisor");
    let script = format!(
        "mkdir -p small && mount -t tmpfs -o size=2m none small && cd small && \
         {supervisor} --workers 2 --quiet --json --report ../report.json --input ../lines \
         --shell --exec 'head -c 65536 /dev/zero; : {{}}' --journal journal; code=$?; \
         cp journal ../journal; exit $code"
    );
    let out = Command::new("unshare")
        .current_dir(&dir)
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("unshare (util-linux) runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let report = report_in(&dir);
    let reason = report["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("cannot be written"), "{report}");
    assert!(
        report["tasks"]["done"].as_u64().unwrap_or(0) < 400,
        "{report}"
    );
    // What it kept is readable, and a run with room finishes the rest.
    let kept = journal_summary(&dir.join("journal"))["done"]
        .as_u64()
        .expect("done");
    let again = Command::new(supervisor)
        .current_dir(&dir)
        .args([
            "--workers",
            "2",
            "--quiet",
            "--json",
            "--report",
            "report.json",
        ])
        .args([
            "--input",
            "lines",
            "--shell",
            "--exec",
            "head -c 65536 /dev/zero; : {}",
        ])
        .args(["--journal", "journal"])
        .stdout(Stdio::null())
        .output()
        .expect("run");
    succeeded(&again);
    let report = report_in(&dir);
    assert_eq!(report["tasks"]["done"], 400);
    assert_eq!(report["tasks"]["resumed"], kept);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dead_letters_stay_dead_unless_resume_failed() {
    let dir = temp_dir("failed");
    let lines: String = (0..20).map(|i| format!("{i}\n")).collect();
    std::fs::write(dir.join("lines"), lines).expect("lines");
    // Line 7 fails until the file `fixed` exists.
    let run = |extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_supervisor"));
        cmd.current_dir(&dir)
            .args([
                "--workers",
                "2",
                "--quiet",
                "--json",
                "--report",
                "report.json",
            ])
            .args(["--retries", "2", "--input", "lines", "--journal", "journal"])
            .args([
                "--exec",
                "sh -c 'echo $0 >> out; [ $0 != 7 ] || [ -e fixed ]'",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let status = cmd.status().expect("run");
        let report = report_in(&dir);
        (status.code(), report)
    };
    let (code, report) = run(&[]);
    assert_eq!(code, Some(3), "{report}");
    assert_eq!(report["tasks"]["dead"], 1);
    std::fs::write(dir.join("fixed"), "").expect("fix");
    // Resumed without --resume-failed: still a dead letter, nothing runs.
    let (code, report) = run(&[]);
    assert_eq!(code, Some(3), "{report}");
    assert_eq!(report["tasks"]["dead"], 1);
    assert_eq!(report["tasks"]["resumed"], 20);
    assert_eq!(report["dead_letters"][0]["task"], 7);
    assert_eq!(
        line_counts(&dir.join("out")).get(&7),
        Some(&2),
        "two attempts, once"
    );
    let (code, report) = run(&["--resume-failed"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["tasks"]["done"], 20);
    assert_eq!(report["tasks"]["dead"], 0);
    assert_eq!(report["tasks"]["resumed"], 19);
    assert_eq!(line_counts(&dir.join("out")).get(&7), Some(&3));
    let summary = journal_summary(&dir.join("journal"));
    assert_eq!(summary["done"], 20);
    assert_eq!(summary["dead"], Value::Array(vec![]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_resumed_run_appends_to_its_joblog() {
    let dir = temp_dir("joblog");
    std::fs::write(dir.join("lines"), "a\nb\nc\n").expect("lines");
    let first = exec_command(&dir, &["--joblog", "log"])
        .output()
        .expect("run");
    succeeded(&first);
    let rows = || {
        std::fs::read_to_string(dir.join("log"))
            .expect("joblog")
            .lines()
            .count()
    };
    assert_eq!(rows(), 4, "a header and three commands");
    // Resumed: nothing runs again, and the log keeps what it had.
    let again = exec_command(&dir, &["--joblog", "log"])
        .output()
        .expect("run");
    succeeded(&again);
    assert_eq!(report_in(&dir)["tasks"]["resumed"], 3);
    assert_eq!(rows(), 4);
    let _ = std::fs::remove_dir_all(&dir);
}
