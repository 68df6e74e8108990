//! `Pool`, `Process` and the `Manager` inside ordinary `#[test]` functions,
//! under the default test harness (its threads, its output capture), with
//! no setup line: a spawned child and the fork server are taken over
//! before the harness's `main`, so a child runs only its entry.
//!
//! Fork copies a process with threads only when allowed: here the harness's
//! other threads wait on [`ONE_AT_A_TIME`] (a futex, no lock held) while a
//! test forks.

use std::process::Command;
use std::sync::Mutex;

use outlast::ipc::manager::Manager;
use outlast::ipc::{Process, StartMethod};
use outlast::pool::{Pool, PoolError};
use outlast::run::RunError;

/// The tests of this file, one after another (see the module doc).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const METHODS: [StartMethod; 3] = [
    StartMethod::ForkServer,
    StartMethod::Spawn,
    StartMethod::Fork,
];

fn square(x: u64) -> u64 {
    x * x
}

/// Sum of x^2 for x < 1,000.
const SQUARES_BELOW_1000: u64 = 332_833_500;

fn pool_in(method: StartMethod) -> Pool {
    Pool::builder(2)
        .start_method(method)
        .allow_threads(method == StartMethod::Fork)
        .build()
        .unwrap_or_else(|e| panic!("{method}: {e}"))
}

#[test]
fn a_pool_with_default_options_maps_exactly() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let pool = Pool::new(2).expect("pool");
    let out = pool.map(square, 0..1000u64).expect("map");
    assert_eq!(out.iter().sum::<u64>(), SQUARES_BELOW_1000);
}

#[test]
fn a_pool_maps_exactly_in_every_start_method() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for method in METHODS {
        let out = pool_in(method).map(square, 0..1000u64).expect("map");
        assert_eq!(out.iter().sum::<u64>(), SQUARES_BELOW_1000, "{method}");
    }
}

#[test]
fn fork_in_a_process_with_threads_is_one_typed_error_at_build() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = std::time::Instant::now();
    match Pool::builder(2).start_method(StartMethod::Fork).build() {
        Err(PoolError::Start(RunError::ThreadsPresent { threads })) => assert!(threads >= 2),
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("fork was allowed with threads present"),
    }
    // At once: not after a restart loop of workers that cannot start.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

fn add_one(x: u64) -> u64 {
    x + 1
}

#[test]
fn a_process_joins_with_its_value_in_every_start_method() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for method in METHODS {
        let mut p = Process::new(add_one, 41)
            .start_method(method)
            .allow_threads(method == StartMethod::Fork);
        p.start().unwrap_or_else(|e| panic!("{method}: {e}"));
        assert_eq!(p.join().expect("join"), 42, "{method}");
    }
}

fn record((d, k): (outlast::ipc::manager::Dict<String, u64>, u64)) {
    d.set(&format!("k{k}"), &(k * k)).expect("set");
}

#[test]
fn manager_proxies_reach_children_in_every_start_method() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let manager = Manager::start().expect("manager");
    let d = manager.dict::<String, u64>().expect("dict");
    for (k, method) in METHODS.into_iter().enumerate() {
        let mut p = Process::new(record, (d.clone(), k as u64))
            .start_method(method)
            .allow_threads(method == StartMethod::Fork);
        p.start().unwrap_or_else(|e| panic!("{method}: {e}"));
        p.join().expect("join");
    }
    for k in 0..3u64 {
        assert_eq!(d.get(&format!("k{k}")).expect("get"), Some(k * k));
    }
}

/// Runs this test binary again on one test, output not captured: children
/// that ran the harness would print its `running N test` line again.
#[test]
fn children_never_run_the_test_harness() {
    let out = Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--exact",
            "a_pool_maps_exactly_in_every_start_method",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(stdout.matches("running 1 test").count(), 1, "{stdout}");
    assert!(stdout.contains("1 passed"), "{stdout}");
}

#[test]
fn join_before_close_and_calls_after_close_are_their_own_errors() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let pool = Pool::new(1).expect("pool");
    assert!(matches!(pool.join(), Err(PoolError::StillRunning)));
    pool.close();
    assert!(matches!(pool.map(square, [1u64]), Err(PoolError::Closed)));
    pool.join().expect("join after close");
}

fn abort_always(_: u64) -> u64 {
    std::process::abort()
}

/// A function that kills every worker ends the pool with the restart limit,
/// said in the library's words (no command-line flag in it).
#[test]
fn a_crash_loop_stops_the_pool_in_the_librarys_words() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Attempts far above the limit: no item is given up on before it trips.
    let pool = Pool::builder(2)
        .max_attempts(100)
        .max_restarts(2, std::time::Duration::from_secs(600))
        .build()
        .expect("pool");
    let err = pool
        .map(abort_always, 0..10u64)
        .expect_err("every item kills its worker");
    let text = err.to_string();
    assert!(text.contains("more than the restart limit of 2"), "{text}");
    assert!(!text.contains("--"), "{text}");
}
