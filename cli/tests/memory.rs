//! `--max-worker-memory`: workers whose tasks leak memory are replaced once
//! their resident memory passes the limit, and nothing is lost.

mod common;

use common::*;

#[test]
fn leaking_workers_are_recycled_past_the_limit_and_every_task_counts_once() {
    // Each task leaks 1 MiB; a worker passes 48 MiB after a few dozen.
    let run = run("-w 2 --job fault --tasks 400 --task-ms 2 --leak 1M --max-worker-memory 48M");
    assert_eq!(run.code, 0, "{}", run.events);
    assert_eq!(run.report["tasks"]["done"], 400, "{}", run.report);
    assert_eq!(run.report["tasks"]["dead"], 0);
    // The fault job checks the sum of the ids it got back: each once.
    assert_eq!(run.report["verified"], true, "{}", run.report);
    let recycled = run.report["restarts"]["memory"].as_u64().unwrap();
    assert!(recycled >= 2, "{recycled} recycled: {}", run.events);
    assert_eq!(run.report["restarts"]["crashes"], 0, "{}", run.events);
    assert!(
        run.events.contains("past --max-worker-memory 48.0 MB"),
        "{}",
        run.events
    );
}

#[test]
fn a_size_that_is_not_one_is_a_usage_error() {
    let run = supervisor("--max-worker-memory 12X").output().expect("run");
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("not a size"));
}
