//! A user's test suite as `cargo test` runs it: ordinary `#[test]`
//! functions on the harness's threads, all at once, each starting its own
//! pools, processes, queues and managers through the one fork server of
//! the default start method, with large items; nothing taken one at a
//! time. Each checks an exact answer.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use outlast::ipc::manager::{Dict, Manager};
use outlast::ipc::{Process, Queue};
use outlast::pool::Pool;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Job {
    id: u64,
    payload: Vec<u8>,
}

fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().map(|&b| u64::from(b)).sum()
}

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn a_pool_maps_exactly() {
    let pool = Pool::new(2).expect("a pool");
    let squares = pool.map(square, 0..50_000u64).expect("map");
    assert_eq!(
        squares.iter().sum::<u64>(),
        (0..50_000u64).map(square).sum::<u64>()
    );
}

#[test]
fn two_pools_made_by_two_threads_at_once_map_exactly() {
    std::thread::scope(|s| {
        for k in 0..2u64 {
            s.spawn(move || {
                let pool = Pool::new(2).expect("a pool");
                let from = k * 1_000;
                let squares = pool.map(square, from..from + 5_000).expect("map");
                assert_eq!(
                    squares,
                    (from..from + 5_000).map(square).collect::<Vec<_>>()
                );
            });
        }
    });
}

fn sum_jobs(q: Queue<Option<Job>>) -> u64 {
    let mut total = 0;
    while let Ok(Some(job)) = q.get() {
        total += checksum(&job.payload) + job.id;
    }
    total
}

#[test]
fn large_jobs_through_a_queue_reach_a_child_whole() {
    let q: Queue<Option<Job>> = Queue::new(0).expect("a queue");
    let mut child = Process::new(sum_jobs, q.clone());
    child.start().expect("start");
    let mut expected = 0;
    for id in 0..3u64 {
        let payload = vec![id as u8 + 1; 40 << 20];
        expected += checksum(&payload) + id;
        q.put(&Some(Job { id, payload })).expect("put");
    }
    q.put(&None).expect("the end");
    assert_eq!(child.join().expect("join"), expected);
}

fn sum_values((d, n): (Dict<u64, Vec<u8>>, u64)) -> Result<u64, String> {
    let mut total = 0;
    for k in 0..n {
        let value = d.get(&k).map_err(|e| e.to_string())?.ok_or("missing")?;
        total += checksum(&value);
    }
    Ok(total)
}

#[test]
fn a_manager_filled_by_threads_is_read_whole_by_a_child() {
    let manager = Manager::start().expect("a manager");
    let d = manager.dict::<u64, Vec<u8>>().expect("a dict");
    std::thread::scope(|s| {
        for k in 0..4u64 {
            let d = d.clone();
            s.spawn(move || d.set(&k, &vec![k as u8; 3 << 20]).expect("set"));
        }
    });
    let mut child = Process::new(sum_values, (d.clone(), 4));
    child.start().expect("start");
    let expected: u64 = (0..4u64).map(|k| k * (3 << 20)).sum();
    assert_eq!(child.join().expect("join"), Ok(expected));
}

#[test]
fn a_semaphore_shared_by_threads_ends_with_its_units() {
    let manager = Manager::start().expect("a manager");
    let units = manager.semaphore(2).expect("a semaphore");
    let (inside, most) = (AtomicU32::new(0), AtomicU32::new(0));
    std::thread::scope(|s| {
        for _ in 0..4 {
            let (units, inside, most) = (units.clone(), &inside, &most);
            s.spawn(move || {
                for _ in 0..200 {
                    let held = units.acquire_timeout(Duration::from_secs(30));
                    let held = held.expect("the manager").expect("a unit in time");
                    most.fetch_max(inside.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                    std::thread::yield_now();
                    inside.fetch_sub(1, Ordering::SeqCst);
                    held.release().expect("given back");
                }
            });
        }
    });
    assert!(most.load(Ordering::SeqCst) <= 2, "more holders than units");
    let deadline = Instant::now() + Duration::from_secs(10);
    while units.value().expect("the value") != 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(units.value().expect("the value"), 2);
}

fn fail(_: ()) -> u64 {
    panic!("a bug in the child")
}

#[test]
fn a_panicking_child_is_reported_in_its_words() {
    let mut child = Process::new(fail, ());
    child.start().expect("start");
    let why = child.join().expect_err("it panicked").to_string();
    assert!(why.contains("a bug in the child"), "{why}");
}
