//! Many supervisors on one job through a real redis-server (started here,
//! on loopback): the exact answer when a supervisor is SIGKILLed mid-run or
//! the broker itself is killed and restarted, dead letters for a task that
//! crashes every worker, a job id started twice, and the broker's errors.

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::*;
use outlast::broker::local_server::RedisServer;

/// pi(1e10).
const PI_1E10: u64 = 455_052_511;

fn broker_run(url: &str, job_id: &str, rest: &str) -> std::process::Command {
    supervisor(&format!(
        "--broker {url} --job-id {job_id} --quiet --lease 1 {rest}"
    ))
}

/// Waits until the job has at least `n` results. If instead a supervisor
/// in `runs` exits, or the wait outlasts [`HANG`], every one is stopped and
/// the panic says what each printed (a bare "never reached" said nothing
/// about why).
fn wait_for_results(redis: &RedisServer, job_id: &str, n: u64, runs: &mut [&mut Child]) {
    let key = format!("supervisor:{job_id}:results");
    let started = Instant::now();
    loop {
        let have = redis.number(&["HLEN", &key]);
        if have >= n {
            return;
        }
        let exited = runs
            .iter_mut()
            .position(|c| matches!(c.try_wait(), Ok(Some(_))));
        if exited.is_some() || started.elapsed() > HANG {
            let mut said = String::new();
            for (i, child) in runs.iter_mut().enumerate() {
                let _ = child.kill();
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                }
                let tail: String = stderr.lines().rev().take(20).collect::<Vec<_>>().join("\n");
                said.push_str(&format!(
                    "\nsupervisor {i} ({status}), last lines reversed:\n{tail}"
                ));
            }
            panic!(
                "the job reached {have} of {n} results in {:.1?} (a supervisor exited: {}){said}",
                started.elapsed(),
                exited.is_some()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `supervisor result JOB --broker URL --json`: (exit code, report).
fn cluster_result(url: &str, job_id: &str) -> (i32, serde_json::Value) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_supervisor"))
        .args([
            "result",
            job_id,
            "--broker",
            url,
            "--json",
            "--timeout",
            "120",
        ])
        .output()
        .expect("supervisor result");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no JSON from supervisor result ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

fn spawn(cmd: &mut std::process::Command) -> Child {
    cmd.spawn().expect("start a supervisor")
}

#[test]
fn three_supervisors_one_sigkilled_the_answer_is_exact() {
    let redis = RedisServer::start().expect("the broker tests need redis-server");
    let url = redis.url();
    let job = "three-one-killed";
    let args = "-w 2 --job primes --limit 1e10 --chunk 1e8";
    let mut victim = spawn(&mut broker_run(&url, job, args));
    let mut others: Vec<Child> = (0..2)
        .map(|_| spawn(&mut broker_run(&url, job, args)))
        .collect();
    {
        let mut all: Vec<&mut Child> = std::iter::once(&mut victim)
            .chain(others.iter_mut())
            .collect();
        wait_for_results(&redis, job, 15, &mut all);
    }
    let workers = workers_of(victim.id());
    signal(victim.id(), libc::SIGKILL);
    let _ = victim.wait();
    for run in others.into_iter().map(finish) {
        assert_eq!(run.code, 0, "{}\n{}", run.report, run.events);
        assert_eq!(run.report["broker"]["complete"], true, "{}", run.report);
    }
    let (code, report) = cluster_result(&url, job);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["result"], PI_1E10.to_string(), "{report}");
    assert_eq!(report["verified"], true);
    assert_eq!(report["results"], 100);
    let hosts = report["hosts"].as_object().expect("hosts");
    assert_eq!(hosts.len(), 3, "{report}");
    let stored: u64 = hosts
        .values()
        .map(|h| h["stored"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(stored, 100, "each task stored once: {report}");
    assert!(
        report["redeliveries"].as_u64().unwrap_or(0) > 0,
        "the dead supervisor's tasks were taken over: {report}"
    );
    assert_eq!(
        redis.number(&["XLEN", &format!("supervisor:{job}:tasks")]),
        100
    );
    for w in workers {
        assert!(!is_running(w), "a worker of the killed supervisor lives on");
    }
}

#[test]
fn a_task_that_crashes_every_worker_is_a_dead_letter_the_rest_exact() {
    let redis = RedisServer::start().expect("the broker tests need redis-server");
    let url = redis.url();
    let job = "crashing-task";
    let args = "-w 2 --job fault --tasks 40 --task-ms 1 --crash-task 7 --max-attempts 3";
    let runs: Vec<Child> = (0..2)
        .map(|_| spawn(&mut broker_run(&url, job, args)))
        .collect();
    for run in runs.into_iter().map(finish) {
        assert!(run.report["broker"]["complete"] == true, "{}", run.report);
    }
    let (code, report) = cluster_result(&url, job);
    assert_eq!(code, 3, "dead letters: exit 3: {report}");
    assert_eq!(report["results"], 39, "{report}");
    let dead = report["dead_letters"].as_array().expect("dead letters");
    assert_eq!(dead.len(), 1, "{report}");
    assert_eq!(dead[0]["task"], 7);
    assert_eq!(dead[0]["failures"], 3);
    assert!(
        dead[0]["cause"].as_str().unwrap_or("").contains("SIGABRT"),
        "{report}"
    );
    let stream = redis.cli(&["XRANGE", &format!("supervisor:{job}:dead"), "-", "+"]);
    assert!(stream.contains("task") && stream.contains('7'), "{stream}");
}

#[test]
fn the_broker_killed_and_restarted_mid_run_loses_nothing() {
    let mut redis = RedisServer::start().expect("the broker tests need redis-server");
    let url = redis.url();
    let job = "broker-restart";
    let mut child = spawn(&mut broker_run(
        &url,
        job,
        "-w 2 --job primes --limit 1e10 --chunk 1e8",
    ));
    wait_for_results(&redis, job, 20, &mut [&mut child]);
    redis.kill();
    std::thread::sleep(Duration::from_millis(300));
    redis.restart().expect("restart redis-server");
    let run = finish(child);
    assert_eq!(run.code, 0, "{}\n{}", run.report, run.events);
    assert!(
        run.report["broker"]["reconnects"].as_u64().unwrap_or(0) >= 1,
        "{}",
        run.report
    );
    let (code, report) = cluster_result(&url, job);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["result"], PI_1E10.to_string(), "{report}");
    assert_eq!(report["results"], 100);
}

#[test]
fn the_same_job_id_twice_adds_no_tasks_and_another_job_is_refused() {
    let redis = RedisServer::start().expect("the broker tests need redis-server");
    let url = redis.url();
    let job = "twice";
    let args = "-w 2 --job primes --limit 1e8 --chunk 1e6";
    for _ in 0..2 {
        let run = finish(spawn(&mut broker_run(&url, job, args)));
        assert_eq!(run.code, 0, "{}\n{}", run.report, run.events);
    }
    assert_eq!(
        redis.number(&["XLEN", &format!("supervisor:{job}:tasks")]),
        100
    );
    let (_, report) = cluster_result(&url, job);
    assert_eq!(report["result"], "5761455");
    let other = broker_run(&url, job, "-w 2 --job primes --limit 1e9")
        .output()
        .expect("run");
    assert_eq!(other.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert!(
        stderr.contains("exists at the broker as a different job"),
        "{stderr}"
    );
}

/// A loopback server that answers every connection as a web server would.
fn http_server() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            use std::io::Write;
            let mut stream = stream;
            let _ = stream.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n<html>nope</html>");
        }
    });
    addr
}

#[test]
fn broker_errors_are_clear_and_never_show_the_password() {
    let redis = RedisServer::start_with_password(Some("s3cret-pw"))
        .expect("the broker tests need redis-server");
    let port = redis.port();
    let cases = [
        (
            format!("redis://:wrong-pw@127.0.0.1:{port}/0"),
            "refused the password",
        ),
        (
            "redis://127.0.0.1:1/0".to_string(),
            "cannot reach the broker",
        ),
        ("http://nowhere".to_string(), "is not a broker URL"),
        (
            format!("redis://{}", http_server()),
            "is not a Redis server",
        ),
    ];
    for (url, says) in cases {
        let out = broker_run(&url, "errors", "-w 1 --job sleep --tasks 2 --task-ms 1")
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{url}: {stderr}");
        assert!(stderr.contains(says), "{url}: {stderr}");
        assert!(
            !stderr.contains("wrong-pw"),
            "the password was printed: {stderr}"
        );
    }
    // The right password, from the environment: works.
    let out = broker_run(
        &redis.url(),
        "errors",
        "-w 1 --job sleep --tasks 2 --task-ms 1",
    )
    .env("SUPERVISOR_BROKER_PASSWORD", "s3cret-pw")
    .output()
    .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Before any supervisor runs, someone with access to Redis writes a
/// well-formed false result for task 5, fields that are no task of the
/// job, and a "NaN" counter. The run still settles every real task (the
/// stray fields used to end it early, "complete" with 103 of 100), and
/// `supervisor result` exits non-zero: the answer contradicts the known
/// value, task 5 is named as a conflict, the stray fields as ignored.
#[test]
fn forged_and_garbage_results_in_the_hash_are_named_and_fail_the_result() {
    let redis = RedisServer::start().expect("the broker tests need redis-server");
    let url = redis.url();
    let job = "forged";
    let results = format!("supervisor:{job}:results");
    // Task 5's count as postcard's varint: 1, a well-formed lie.
    redis.cli(&["HSET", &results, "5", "\u{1}"]);
    redis.cli(&["HSET", &results, "abc", "garbage"]);
    redis.cli(&["HSET", &results, "100", "\u{1}"]);
    redis.cli(&["HSET", &results, "99999", "\u{2}"]);
    redis.cli(&[
        "HSET",
        &format!("supervisor:{job}:stats"),
        "evil:stored",
        "NaN",
    ]);
    let run = finish(spawn(&mut broker_run(
        &url,
        job,
        "-w 2 --job primes --limit 1e9 --chunk 1e7",
    )));
    assert_eq!(run.report["broker"]["complete"], true, "{}", run.report);
    assert_eq!(run.report["broker"]["cluster_done"], 100, "{}", run.report);
    assert_eq!(run.report["broker"]["foreign_fields"], 3, "{}", run.report);
    let (code, report) = cluster_result(&url, job);
    assert_eq!(code, 1, "a wrong answer must not exit 0: {report}");
    assert_eq!(report["verified"], false, "{report}");
    assert_eq!(report["conflicts"], serde_json::json!([5]), "{report}");
    assert_eq!(report["ignored_count"], 3, "{report}");
    let ignored = report["ignored"].to_string();
    assert!(
        ignored.contains("abc") && ignored.contains("99999"),
        "{report}"
    );
}

/// Redis loses every key mid-run (as a restart without its data does):
/// the supervisors used to sit idle for minutes, saying nothing. Within a
/// lease one of them makes the job again from its own spec, both say so,
/// and the job ends with the exact answer.
#[test]
fn a_broker_that_lost_the_job_gets_it_again_and_the_answer_is_exact() {
    let redis = RedisServer::start().expect("the broker tests need redis-server");
    let url = redis.url();
    let job = "wiped";
    let args = "-w 1 --job primes --limit 1e10 --chunk 1e8";
    let mut runs: Vec<Child> = (0..2)
        .map(|_| spawn(&mut broker_run(&url, job, args)))
        .collect();
    wait_for_results(&redis, job, 20, &mut runs.iter_mut().collect::<Vec<_>>());
    redis.cli(&["FLUSHALL"]);
    let started = Instant::now();
    let finished: Vec<Run> = runs.into_iter().map(finish).collect();
    assert!(started.elapsed() < HANG);
    let recreated: u64 = finished
        .iter()
        .map(|r| r.report["broker"]["recreated"].as_u64().unwrap_or(0))
        .sum();
    assert!(recreated >= 1, "nobody made the job again");
    for run in &finished {
        assert_eq!(run.code, 0, "{}\n{}", run.report, run.events);
        assert_eq!(run.report["broker"]["complete"], true, "{}", run.report);
    }
    let (code, report) = cluster_result(&url, job);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["result"], PI_1E10.to_string(), "{report}");
    assert_eq!(report["results"], 100);
}

#[test]
fn long_lived_worker_programs_share_a_job_through_the_broker() {
    let redis = RedisServer::start().expect("the broker tests need redis-server");
    let url = redis.url();
    let dir = std::env::temp_dir().join(format!("broker-worker-cmd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let inputs = dir.join("inputs");
    let lines: String = (1..=300).map(|i| format!("{i}\n")).collect();
    std::fs::write(&inputs, lines).expect("inputs");
    let program = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../clients/python/examples/squares.py");
    let run = |_: usize| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_supervisor"));
        cmd.args([
            "--broker",
            &url,
            "--job-id",
            "worker-cmd",
            "--quiet",
            "--lease",
            "1",
        ])
        .args([
            "--workers",
            "2",
            "--json",
            "--report",
            "/dev/null",
            "--input",
        ])
        .arg(&inputs)
        .arg("--worker-cmd")
        .arg(format!("python3 {}", program.display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
        spawn(&mut cmd)
    };
    let hosts: Vec<Child> = (0..2).map(run).collect();
    let mut printed = Vec::new();
    for host in hosts {
        let out = host.wait_with_output().expect("a host");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        printed.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| l.parse::<u64>().expect("an output")),
        );
    }
    // Every output printed by one host or the other, once.
    printed.sort_unstable();
    let mut want: Vec<u64> = (1..=300u64).map(|n| (0..n).map(|i| i * i).sum()).collect();
    want.sort_unstable();
    assert_eq!(printed, want);
    let (code, report) = cluster_result(&url, "worker-cmd");
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["result"], "300", "{report}");
    assert_eq!(report["complete"], true, "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}
