//! A manager served by several threads: calls on independent objects run
//! at once, a client's death on one thread frees what a client of another
//! waits for, and a panicking handler is an error reply. Real client
//! processes, a real server process. (`scripts/test` also runs the whole
//! manager suite, exact counts under one lock and idle CPU included, with
//! three server threads.)

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use outlast_ipc::manager::{Lock, Manager, ManagerError, Namespace, ServeOptions, Shared};
use outlast_ipc::Process;
use serde::{Deserialize, Serialize};

fn main() {
    outlast_ipc::init();
    tests::harness::run(tests::cases![
        calls_on_independent_objects_are_served_at_once,
        a_holder_killed_on_one_thread_frees_the_lock_for_another,
        a_panicking_handler_is_an_error_and_the_server_serves_on,
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
        Err(ManagerError::Server(why)) => {
            assert_eq!(why, "`meeting`'s handler panicked: a handler that panics")
        }
        other => panic!("a panicking handler gave {other:?}"),
    }
    assert!(!meeting.call(&MeetingRequest::Meet(0)).unwrap());
    let d = manager.dict::<u32, u32>().unwrap();
    d.set(&1, &2).unwrap();
    assert_eq!(d.get(&1).unwrap(), Some(2));
}
