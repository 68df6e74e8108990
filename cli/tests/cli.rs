//! Drives the real `supervisor` binary: its help, and the benchmarks in
//! quick mode (their output shape, not their speed).

use std::process::Command;

fn supervisor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_supervisor"))
}

#[test]
fn help_names_the_commands() {
    let out = supervisor().arg("--help").output().expect("run supervisor");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("bench"), "{text}");
}

/// `--help` (and `-h`, and a job's own `--help`) opens with what the
/// program is, then lists every built-in job; never with a job's options'
/// own doc, which clap would take as the command's description.
#[test]
fn help_says_first_what_the_program_is_and_lists_the_jobs() {
    for args in [&["--help"][..], &["-h"], &["--job", "sleep", "--help"]] {
        let out = supervisor().args(args).output().expect("run supervisor");
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with("supervisor: keeps N worker processes alive for a job"),
            "{args:?}: {text}"
        );
        let jobs = text.split("Usage:").next().unwrap_or_default();
        for job in ["primes", "sleep", "echo", "fault", "exec"] {
            assert!(
                jobs.contains(&format!("\n  {job} ")),
                "{args:?}: {job} in {jobs}"
            );
        }
    }
}

fn bench_json(what: &str) -> Vec<serde_json::Value> {
    let out = supervisor()
        .args(["bench", what, "--quick", "--runs", "1", "--json"])
        .output()
        .expect("run supervisor bench");
    assert!(
        out.status.success(),
        "bench {what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
        .collect()
}

#[test]
fn bench_pipe_measures_three_subjects_at_three_sizes() {
    let rows = bench_json("pipe");
    assert_eq!(rows.len(), 9);
    for size in [64, 4096, 1 << 20] {
        let at_size: Vec<_> = rows.iter().filter(|r| r["size_bytes"] == size).collect();
        assert_eq!(at_size.len(), 3, "size {size}");
        for row in at_size {
            assert!(row["msgs_per_s"].as_f64().is_some_and(|v| v > 0.0), "{row}");
        }
    }
    let with_baseline = rows.iter().filter(|r| r["vs_baseline"].is_number()).count();
    assert_eq!(
        with_baseline, 6,
        "every ipc row is compared with the raw pipe"
    );
}

#[test]
fn bench_spawn_reports_every_start_method() {
    let rows = bench_json("spawn");
    let subjects: Vec<&str> = rows.iter().filter_map(|r| r["subject"].as_str()).collect();
    assert_eq!(
        subjects,
        [
            "bare fork+waitpid",
            "start+join fork",
            "start+join spawn",
            "start+join forkserver"
        ]
    );
    for row in &rows {
        let median = row["median_ms"].as_f64().unwrap_or(-1.0);
        let p90 = row["p90_ms"].as_f64().unwrap_or(-1.0);
        assert!(median > 0.0 && p90 >= median, "{row}");
    }
}

#[test]
fn bench_dispatch_runs_no_op_tasks_through_the_supervisor() {
    let rows = bench_json("dispatch");
    assert_eq!(rows.len(), 3);
    for row in &rows {
        assert_eq!(row["bench"], "dispatch");
        assert!(row["msgs_per_s"].as_f64().is_some_and(|r| r > 0.0));
    }
}

#[test]
fn bench_pool_measures_every_map_form_and_exec_beside_xargs() {
    let rows = bench_json("pool");
    let subjects: Vec<&str> = rows.iter().filter_map(|r| r["subject"].as_str()).collect();
    for form in [
        "Pool::map no-op, 20000 items",
        "Pool::map no-op, 4000 items",
        "Pool::imap no-op",
        "Pool::imap_unordered no-op",
        "submit + as_completed",
        "imap over an endless iterator",
    ] {
        let row = rows
            .iter()
            .find(|r| r["subject"].as_str().is_some_and(|s| s.starts_with(form)))
            .unwrap_or_else(|| panic!("no {form} row in {subjects:?}"));
        assert!(row["msgs_per_s"].as_f64().is_some_and(|r| r > 0.0), "{row}");
    }
    for timed in ["supervisor --exec", "xargs"] {
        let row = rows
            .iter()
            .find(|r| r["subject"].as_str().is_some_and(|s| s.starts_with(timed)))
            .unwrap_or_else(|| panic!("no {timed} row in {subjects:?}"));
        assert!(row["median_ms"].as_f64().is_some_and(|t| t > 0.0), "{row}");
    }
}

#[test]
fn bench_journal_compares_runs_with_and_without_a_journal() {
    let rows = bench_json("journal");
    let subjects: Vec<&str> = rows.iter().filter_map(|r| r["subject"].as_str()).collect();
    assert_eq!(rows.len(), 6, "{subjects:?}");
    assert_eq!(subjects[0], "no-op tasks, no journal");
    for row in &rows[1..3] {
        assert!(
            row["vs_baseline"].as_f64().is_some_and(|r| r > 0.0),
            "{row}"
        );
    }
    assert!(
        rows[3]["msgs_per_s"].as_f64().is_some_and(|r| r > 0.0),
        "the disk's sync rate"
    );
    assert!(
        rows[5]["vs_baseline"].as_f64().is_some_and(|r| r > 0.0),
        "{}",
        rows[5]
    );
}

#[test]
fn bench_sieve_compares_the_supervisor_with_one_process() {
    let rows = bench_json("sieve");
    assert_eq!(rows.len(), 2);
    assert!(rows
        .iter()
        .all(|r| r["median_ms"].as_f64().is_some_and(|t| t > 0.0)));
    assert!(rows[1]["vs_baseline"].as_f64().is_some());
}

#[test]
fn bench_large_measures_pool_arguments_results_a_queue_item_and_a_manager_value() {
    let rows = bench_json("large");
    let subjects: Vec<&str> = rows.iter().filter_map(|r| r["subject"].as_str()).collect();
    assert_eq!(
        subjects,
        [
            "Pool::apply, a 10 MB argument",
            "Pool::apply, a 10 MB result",
            "Pool::map, four 10 MB arguments",
            "Queue, a 10 MB item put here, taken by a child",
            "Manager dict, a 10 MB value set here, read by a child",
        ]
    );
    assert!(rows
        .iter()
        .all(|r| r["median_ms"].as_f64().is_some_and(|t| t > 0.0)));
}

#[test]
fn bench_sync_measures_locks_counters_and_copies() {
    let rows = bench_json("sync");
    assert_eq!(rows.len(), 6);
    let subjects: Vec<&str> = rows.iter().filter_map(|r| r["subject"].as_str()).collect();
    for expected in [
        "ipc Lock lock+unlock",
        "2 procs, Value under Lock",
        "2 procs, Value fetch_add",
        "Array copy_from_slice",
    ] {
        assert!(subjects.contains(&expected), "{subjects:?}");
    }
}

#[test]
fn bench_async_measures_awaiting_beside_blocking() {
    let rows = bench_json("async");
    let subjects: Vec<&str> = rows.iter().filter_map(|r| r["subject"].as_str()).collect();
    assert_eq!(
        subjects,
        [
            "Queue get, blocking",
            "Queue get_async",
            "Queue round trip, blocking",
            "Queue round trip, awaited",
            "Pipe round trip, blocking",
            "Pipe round trip, awaited",
            "Manager dict get round trip, blocking",
            "Manager dict get round trip, awaited",
            "Manager lock take and release round trip, blocking",
            "Manager lock take and release round trip, awaited",
            "5 MB Process result, join, blocking: the whole wait",
            "5 MB Process result, join, awaited: the longest poll",
            "5 MB Pool result, get, blocking: the whole wait",
            "5 MB Pool result, get, awaited: the longest poll",
            "5 MB Queue item from a child, get, blocking: the whole wait",
            "5 MB Queue item from a child, get, awaited: the longest poll",
            "5 MB Queue item to a child, put (encoding included), blocking: the whole wait",
            "5 MB Queue item to a child, put (encoding included), awaited: the longest poll",
            "5 MB Manager dict value, set (encoding included), blocking: the whole wait",
            "5 MB Manager dict value, set (encoding included), awaited: the longest poll",
            "5 MB Manager dict value over TCP, set (encoding included), blocking: the whole wait",
            "5 MB Manager dict value over TCP, set (encoding included), awaited: the longest poll",
            "5 MB Manager dict value, get, blocking: the whole wait",
            "5 MB Manager dict value, get, awaited: the longest poll",
            "2 MB Queue item from a child, in the ring, get, blocking: the whole wait",
            "2 MB Queue item from a child, in the ring, get, awaited: the longest poll",
            "2 MB Pipe frame from a child, recv, blocking: the whole wait",
            "2 MB Pipe frame from a child, recv, awaited: the longest poll",
            "2 MB Pipe frame to a child, send, blocking: the whole wait",
            "2 MB Pipe frame to a child, send, awaited: the longest poll",
            "Queue, items already there, a get_async loop of 50000: the other task's longest wait",
            "Pool imap, a next_async loop of 50000: the other task's longest wait",
        ]
    );
    for row in &rows[..2] {
        assert!(row["msgs_per_s"].as_f64().is_some_and(|v| v > 0.0), "{row}");
    }
    for row in &rows[2..] {
        assert!(row["median_ms"].as_f64().is_some_and(|v| v > 0.0), "{row}");
    }
    // Each awaited row is read against its blocking twin.
    let compared = rows.iter().filter(|r| r["vs_baseline"].is_number()).count();
    assert_eq!(compared, 5);
}

#[test]
fn bench_queue_measures_sizes_batches_and_ping_pong() {
    let rows = bench_json("queue");
    // With two CPUs or more, the blocking rows once more with each process
    // on a CPU of its own.
    let apart = std::thread::available_parallelism().map_or(1, |n| n.get()) > 1;
    assert_eq!(rows.len(), if apart { 16 } else { 14 });
    // The 64 B put/get is measured beside the minimal ring, in the same run.
    let reference = rows
        .iter()
        .find(|r| r["subject"] == "minimal SPSC ring (reference)")
        .expect("a reference row");
    assert!(reference["msgs_per_s"].as_f64().is_some_and(|r| r > 0.0));
    let ours = rows
        .iter()
        .find(|r| r["subject"] == "1->1 put/get" && r["size_bytes"] == 64)
        .expect("64 B put/get");
    assert!(ours["vs_baseline"].as_f64().is_some_and(|v| v > 0.0));
    for size in [64, 4096, 1 << 20] {
        let at_size = rows
            .iter()
            .filter(|r| r["size_bytes"] == size && r["msgs_per_s"].as_f64().is_some())
            .count();
        assert!(at_size >= 2, "size {size}");
    }
    assert_eq!(
        rows.iter()
            .filter(|r| r["subject"]
                .as_str()
                .is_some_and(|s| s.starts_with("ping-pong")))
            .count(),
        if apart { 5 } else { 4 }
    );
    // The blocking ping-pong is read against two bare futex words, in turns,
    // as the processes land, and again with both on one CPU.
    let floor = rows
        .iter()
        .find(|r| r["subject"] == "futex floor: 2 processes waking each other (reference)")
        .expect("a futex floor row");
    assert!(floor["median_ms"].as_f64().is_some_and(|ms| ms > 0.0));
    let blocking = rows
        .iter()
        .find(|r| r["subject"] == "ping-pong, blocking (no spin)")
        .expect("the blocking ping-pong");
    assert!(blocking["vs_baseline"].as_f64().is_some_and(|v| v > 0.0));
    let mut pinned = vec![
        "ping-pong, blocking (no spin), one CPU",
        "futex floor: 2 processes waking each other, one CPU (reference)",
    ];
    if apart {
        pinned.extend([
            "ping-pong, blocking (no spin), two CPUs",
            "futex floor: 2 processes waking each other, two CPUs (reference)",
        ]);
    }
    for subject in pinned {
        let row = rows
            .iter()
            .find(|r| r["subject"] == subject)
            .expect(subject);
        assert!(
            row["median_ms"].as_f64().is_some_and(|ms| ms > 0.0),
            "{subject}"
        );
    }
}

#[test]
fn bench_startup_measures_workers_until_ready() {
    let rows = bench_json("startup");
    let ours: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| {
            r["subject"]
                .as_str()
                .is_some_and(|s| s.starts_with("supervisor"))
        })
        .collect();
    assert_eq!(ours.len(), 2, "{rows:?}");
    for row in ours {
        assert!(row["median_ms"].as_f64().unwrap_or(-1.0) > 0.0, "{row}");
    }
}

#[test]
fn bench_broker_runs_through_its_own_redis_server_and_is_exact() {
    let rows = bench_json("broker");
    let subjects: Vec<&str> = rows.iter().filter_map(|r| r["subject"].as_str()).collect();
    assert_eq!(subjects.len(), 6, "{subjects:?}");
    assert!(subjects[1].starts_with("no-op via broker"), "{subjects:?}");
    assert!(
        subjects[5].starts_with("3 supervisors") && subjects[5].ends_with("(exact)"),
        "{subjects:?}"
    );
    for row in &rows[..3] {
        assert!(row["msgs_per_s"].as_f64().is_some_and(|v| v > 0.0), "{row}");
    }
}
