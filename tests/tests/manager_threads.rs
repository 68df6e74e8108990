//! A manager served by several threads: calls on independent objects run
//! at once, a lock released by a client of one thread grants a waiter of
//! another, a client's death on one thread frees what another waits for,
//! a panicking handler is an error reply, and idle threads sleep. Real
//! client processes, a real server process.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use outlast_ipc::manager::{Lock, Manager, ManagerError, Namespace, ServeOptions, Shared};
use outlast_ipc::Process;
use serde::{Deserialize, Serialize};

fn main() {
    outlast_ipc::init();
    tests::harness::run(tests::cases![
        calls_on_independent_objects_are_served_at_once,
        four_processes_under_one_lock_across_threads_count_exactly,
        a_holder_killed_on_one_thread_frees_the_lock_for_another,
        a_panicking_handler_is_an_error_and_the_server_serves_on,
        idle_server_threads_use_no_cpu,
    ]);
}

fn threaded(threads: usize) -> Manager {
    Manager::builder()
        .register::<Meeting>()
        .options(ServeOptions {
            threads,
            ..ServeOptions::default()
        })
        .start()
        .expect("manager")
}

/// Callers that wait, in the server, for one another: a call returns
/// whether the other arrived within the wait. A server that makes one call
/// at a time makes the first wait out its time alone.
#[derive(Serialize, Deserialize)]
struct Meeting;

#[derive(Serialize, Deserialize)]
enum MeetingRequest {
    /// Arrive and wait this many milliseconds for the second caller.
    Meet(u64),
    Panic,
}

/// Arrivals in the server process, all meetings together.
static ARRIVED: Mutex<u32> = Mutex::new(0);
static MET: Condvar = Condvar::new();

impl outlast_ipc::manager::SharedType for Meeting {
    const NAME: &'static str = "meeting";
    type Request = MeetingRequest;
    type Reply = bool;
    fn handle(&mut self, request: MeetingRequest) -> bool {
        match request {
            MeetingRequest::Meet(ms) => {
                let mut arrived = ARRIVED.lock().unwrap_or_else(|p| p.into_inner());
                *arrived += 1;
                MET.notify_all();
                let (arrived, _) = MET
                    .wait_timeout_while(arrived, Duration::from_millis(ms), |n| *n < 2)
                    .unwrap_or_else(|p| p.into_inner());
                *arrived >= 2
            }
            MeetingRequest::Panic => panic!("a handler that panics"),
        }
    }
}

fn meet(meeting: Shared<Meeting>) -> Result<bool, String> {
    meeting
        .call(&MeetingRequest::Meet(20_000))
        .map_err(|e| e.to_string())
}

/// Two clients call two different objects, each call waiting in the
/// server for the other: both meet, so the calls ran at once (one thread
/// would have run them one after the other, the first alone for 20 s).
fn calls_on_independent_objects_are_served_at_once() {
    let manager = threaded(3);
    let mut callers: Vec<_> = (0..2)
        .map(|_| Process::new(meet, manager.shared(&Meeting).unwrap()))
        .collect();
    for c in &mut callers {
        c.start().unwrap();
    }
    for c in &mut callers {
        assert_eq!(c.join().unwrap(), Ok(true));
    }
}

fn locked_increments((ns, lock): (Namespace, Lock)) -> Result<(), String> {
    for _ in 0..1_000 {
        let _held = lock.acquire().map_err(|e| e.to_string())?;
        let n: i64 = ns.get("count").map_err(|e| e.to_string())?.unwrap_or(0);
        ns.set("count", &(n + 1)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Four processes, spread over three server threads, take turns at one
/// lock to read and write a count: exactly 4,000, no hang (each grant to a
/// waiter of another thread goes through that thread's inbox).
fn four_processes_under_one_lock_across_threads_count_exactly() {
    let manager = threaded(3);
    let ns = manager.namespace().unwrap();
    let lock = manager.lock().unwrap();
    let mut children: Vec<_> = (0..4)
        .map(|_| Process::new(locked_increments, (ns.clone(), lock.clone())))
        .collect();
    for c in &mut children {
        c.start().unwrap();
    }
    for c in &mut children {
        assert_eq!(c.join().unwrap(), Ok(()));
    }
    assert_eq!(ns.get::<i64>("count").unwrap(), Some(4_000));
}

fn take_and_hold((lock, ns): (Lock, Namespace)) {
    if let Ok(_held) = lock.acquire() {
        let _ = ns.set("held", &true);
        std::thread::sleep(Duration::from_secs(60));
    }
}

fn wait_for_lock(lock: Lock) -> Result<bool, String> {
    let acquired = lock
        .acquire_timeout(Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    Ok(acquired.is_some_and(|a| a.previous_owner_died()))
}

/// A holder is SIGKILLed while a client of another thread waits for its
/// lock: the waiter gets it, told that the holder died.
fn a_holder_killed_on_one_thread_frees_the_lock_for_another() {
    let manager = threaded(2);
    let ns = manager.namespace().unwrap();
    let lock = manager.lock().unwrap();
    let mut holder = Process::new(take_and_hold, (lock.clone(), ns.clone()));
    holder.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ns.get::<bool>("held").unwrap() != Some(true) {
        assert!(Instant::now() < deadline, "the holder never took the lock");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut waiter = Process::new(wait_for_lock, lock.clone());
    waiter.start().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    holder.kill().unwrap();
    let _ = holder.join();
    assert_eq!(waiter.join().unwrap(), Ok(true));
}

/// A registered type's handler that panics gives its caller an error in
/// words; the server, and that object, serve on.
fn a_panicking_handler_is_an_error_and_the_server_serves_on() {
    let manager = threaded(2);
    let meeting = manager.shared(&Meeting).unwrap();
    match meeting.call(&MeetingRequest::Panic) {
        Err(ManagerError::Server(why)) => assert!(why.contains("panicked"), "{why}"),
        other => panic!("a panicking handler gave {other:?}"),
    }
    assert!(!meeting.call(&MeetingRequest::Meet(0)).unwrap());
    let d = manager.dict::<u32, u32>().unwrap();
    d.set(&1, &2).unwrap();
    assert_eq!(d.get(&1).unwrap(), Some(2));
}

fn set_then_idle((d, key): (outlast_ipc::manager::Dict<u64, u64>, u64)) -> Result<(), String> {
    d.set(&key, &key).map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_secs(3));
    d.get(&key).map_err(|e| e.to_string())?;
    Ok(())
}

/// Four server threads, three connected silent clients: the server is on
/// a CPU for under 1 % of 2 s.
fn idle_server_threads_use_no_cpu() {
    let manager = threaded(4);
    let server = manager.pid().unwrap();
    let d = manager.dict::<u64, u64>().unwrap();
    let mut clients: Vec<_> = (0..3)
        .map(|key| Process::new(set_then_idle, (d.clone(), key)))
        .collect();
    for c in &mut clients {
        c.start().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.len().unwrap() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    let used = tests::load::process_cpu_during(server, Duration::from_secs(2));
    for c in &mut clients {
        assert_eq!(c.join().unwrap(), Ok(()));
    }
    eprintln!("four idle server threads were on a CPU for {used:?} of 2 s");
    assert!(
        used < Duration::from_millis(20),
        "idle server threads were on a CPU for {used:?} of 2 s"
    );
}
