//! End-to-end tests of `outlast_ipc::sync` and `outlast_ipc::value` with real processes:
//! holders and waiters SIGKILLed at the worst moment, exact counts under
//! contention, and typed errors for bad segments. Single-threaded harness.

use std::time::{Duration, Instant};

use outlast_ipc::sync::{
    Barrier, BarrierError, BoundedSemaphore, Condition, Event, Lock, LockError, RLock, Semaphore,
};
use outlast_ipc::value::{Array, RawValue, Value};
use outlast_ipc::{Process, StartMethod};
use tests::{cases, harness};

fn main() {
    outlast_ipc::init();
    harness::run(cases![
        a_lock_whose_holder_is_killed_is_owner_died_then_normal,
        an_rlock_whose_holder_is_killed_is_owner_died_then_normal,
        a_killed_condition_waiter_leaves_the_others_working,
        a_condition_holder_killed_is_owner_died,
        a_barrier_party_that_dies_breaks_it_after_the_timeout,
        abort_releases_barrier_waiters,
        reset_releases_barrier_waiters_and_makes_it_new,
        a_barrier_passes_every_party_in_both_methods,
        semaphores_count_across_processes,
        an_event_wakes_a_waiting_process,
        locked_increments_are_exact_under_contention,
        fetch_add_is_exact_across_processes,
        a_value_array_round_trip_with_a_child,
    ]);
}

/// Waits until `done` or fails after a generous bound.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what}: never happened"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn hold_lock_forever((lock, ready): (Lock, Event)) {
    let _guard = lock.lock().or_else(|e| e.recover());
    ready.set();
    std::thread::sleep(Duration::from_secs(3600));
}

fn a_lock_whose_holder_is_killed_is_owner_died_then_normal() {
    let lock = Lock::new().expect("lock");
    let ready = Event::new().expect("event");
    let mut holder = Process::new(
        hold_lock_forever,
        (
            lock.try_clone().expect("clone"),
            ready.try_clone().expect("clone"),
        ),
    );
    holder.start().expect("start");
    assert!(
        ready.wait_timeout(Duration::from_secs(30)),
        "the holder never locked"
    );
    assert!(matches!(lock.try_lock(), Err(LockError::Timeout)));
    holder.kill().expect("kill");
    let _ = holder.join();
    match lock.lock_timeout(Duration::from_secs(30)) {
        Err(LockError::OwnerDied(died)) => drop(died.into_inner()),
        Err(e) => panic!("expected OwnerDied, got {e}"),
        Ok(_) => panic!("expected OwnerDied, got a clean lock"),
    }
    // Repaired: normal from now on.
    assert!(lock.lock().is_ok());
    assert!(lock.try_lock().is_ok());
}

fn hold_rlock_twice((lock, ready): (RLock, Event)) {
    let _a = lock.lock().or_else(|e| e.recover());
    let _b = lock.lock().or_else(|e| e.recover());
    ready.set();
    std::thread::sleep(Duration::from_secs(3600));
}

fn an_rlock_whose_holder_is_killed_is_owner_died_then_normal() {
    let lock = RLock::new().expect("rlock");
    let ready = Event::new().expect("event");
    let mut holder = Process::new(
        hold_rlock_twice,
        (
            lock.try_clone().expect("clone"),
            ready.try_clone().expect("clone"),
        ),
    )
    .start_method(StartMethod::Spawn);
    holder.start().expect("start");
    assert!(ready.wait_timeout(Duration::from_secs(30)));
    holder.kill().expect("kill");
    let _ = holder.join();
    let guard = lock.lock_timeout(Duration::from_secs(30));
    assert!(
        matches!(&guard, Err(e) if e.is_owner_died()),
        "{guard:?}",
        guard = guard.as_ref().err()
    );
    drop(guard);
    // Recursive as before.
    let a = lock.lock().expect("clean");
    let b = lock.lock().expect("again, same thread");
    drop((a, b));
}

/// Waits on the condition until the flag is set; returns how many wake-ups it took.
fn wait_for_flag((cond, flag, waiting): (Condition, RawValue<u32>, Semaphore)) -> u32 {
    let mut guard = match cond.lock() {
        Ok(g) => g,
        Err(e) => match e.recover() {
            Ok(g) => g,
            Err(_) => return 0,
        },
    };
    waiting.release();
    let mut wakeups = 0;
    while flag.get() == 0 {
        guard = match cond.wait_timeout(guard, Duration::from_secs(60)) {
            Ok((g, _)) => g,
            Err(e) => match e.recover() {
                Ok((g, _)) => g,
                Err(_) => return wakeups,
            },
        };
        wakeups += 1;
    }
    wakeups
}

fn a_killed_condition_waiter_leaves_the_others_working() {
    let cond = Condition::new().expect("condition");
    let flag = RawValue::new(0u32).expect("flag");
    let waiting = Semaphore::new(0).expect("semaphore");
    let mut waiters: Vec<Process<_, u32>> = (0..3)
        .map(|_| {
            let args = (
                cond.try_clone().expect("clone"),
                flag.try_clone().expect("clone"),
                waiting.try_clone().expect("clone"),
            );
            let mut p = Process::new(wait_for_flag, args);
            p.start().expect("start");
            p
        })
        .collect();
    for _ in 0..3 {
        assert!(waiting.acquire_timeout(Duration::from_secs(30)));
    }
    // Every waiter is inside wait() (or about to be): kill one.
    std::thread::sleep(Duration::from_millis(50));
    waiters[1].kill().expect("kill");
    let _ = waiters[1].join();
    {
        let _guard = cond
            .lock_timeout(Duration::from_secs(30))
            .expect("the lock is free");
        flag.set(1);
        cond.notify_all();
    }
    for i in [0, 2] {
        let wakeups = waiters[i]
            .join_timeout(Duration::from_secs(30))
            .expect("woken");
        assert!(wakeups >= 1);
    }
}

fn hold_condition((cond, ready): (Condition, Event)) {
    let _g = cond.lock().or_else(|e| e.recover());
    ready.set();
    std::thread::sleep(Duration::from_secs(3600));
}

fn a_condition_holder_killed_is_owner_died() {
    let cond = Condition::new().expect("condition");
    let ready = Event::new().expect("event");
    let mut p = Process::new(
        hold_condition,
        (
            cond.try_clone().expect("clone"),
            ready.try_clone().expect("clone"),
        ),
    );
    p.start().expect("start");
    assert!(ready.wait_timeout(Duration::from_secs(30)));
    p.kill().expect("kill");
    let _ = p.join();
    let r = cond.lock_timeout(Duration::from_secs(30));
    assert!(matches!(&r, Err(e) if e.is_owner_died()));
    drop(r);
    let g = cond.lock().expect("normal again");
    cond.notify_all();
    drop(g);
}

fn wait_at_barrier((barrier, timeout_ms): (Barrier, u64)) -> Result<u32, String> {
    barrier
        .wait_timeout(Duration::from_millis(timeout_ms))
        .map_err(|e| format!("{e:?}"))
}

fn dawdle_then_wait((barrier, dawdle_ms): (Barrier, u64)) -> Result<u32, String> {
    std::thread::sleep(Duration::from_millis(dawdle_ms));
    wait_at_barrier((barrier, 60_000))
}

fn a_barrier_party_that_dies_breaks_it_after_the_timeout() {
    let barrier = Barrier::new(3).expect("barrier");
    // The third party is killed on its way to the barrier.
    let mut doomed = Process::new(
        dawdle_then_wait,
        (barrier.try_clone().expect("clone"), 60_000),
    );
    doomed.start().expect("start");
    std::thread::sleep(Duration::from_millis(20));
    doomed.kill().expect("kill");
    let _ = doomed.join();
    let mut other = Process::new(
        wait_at_barrier,
        (barrier.try_clone().expect("clone"), 60_000),
    );
    other.start().expect("start");
    let started = Instant::now();
    let mine = barrier.wait_timeout(Duration::from_millis(300));
    assert_eq!(mine, Err(BarrierError::Timeout));
    assert!(started.elapsed() >= Duration::from_millis(250));
    // The other party is told the barrier broke, long before its own 60 s.
    let theirs = other.join_timeout(Duration::from_secs(30)).expect("joined");
    assert_eq!(theirs, Err("Broken".to_string()));
    assert!(barrier.is_broken());
    assert_eq!(barrier.wait(), Err(BarrierError::Broken));
}

fn abort_releases_barrier_waiters() {
    let barrier = Barrier::new(2).expect("barrier");
    let mut waiter = Process::new(
        wait_at_barrier,
        (barrier.try_clone().expect("clone"), 600_000),
    );
    waiter.start().expect("start");
    eventually("the waiter arrives", || barrier.n_waiting() == 1);
    barrier.abort();
    let result = waiter
        .join_timeout(Duration::from_secs(30))
        .expect("joined");
    assert_eq!(result, Err("Broken".to_string()));
}

fn reset_releases_barrier_waiters_and_makes_it_new() {
    let barrier = Barrier::new(3).expect("barrier");
    let mut waiter = Process::new(
        wait_at_barrier,
        (barrier.try_clone().expect("clone"), 600_000),
    );
    waiter.start().expect("start");
    eventually("the waiter arrives", || barrier.n_waiting() == 1);
    barrier.reset().expect("reset");
    let result = waiter
        .join_timeout(Duration::from_secs(30))
        .expect("joined");
    assert_eq!(
        result,
        Err("Broken".to_string()),
        "a waiter at reset is told"
    );
    assert!(!barrier.is_broken());
    assert_eq!(barrier.n_waiting(), 0);
    // A broken barrier is new again after a reset, too.
    barrier.abort();
    assert!(barrier.is_broken());
    barrier.reset().expect("reset");
    assert!(!barrier.is_broken());
    // And all three parties pass, each with its own index.
    assert_eq!(
        pass_with_children(&barrier, [StartMethod::Fork, StartMethod::Fork]),
        [0, 1, 2]
    );
}

fn a_barrier_passes_every_party_in_both_methods() {
    let barrier = Barrier::new(3).expect("barrier");
    assert_eq!(
        pass_with_children(&barrier, [StartMethod::Fork, StartMethod::Spawn]),
        [0, 1, 2]
    );
}

/// This process and one child per start method wait at `barrier`; their
/// arrival indices, sorted.
fn pass_with_children<const N: usize>(barrier: &Barrier, methods: [StartMethod; N]) -> Vec<u32> {
    let mut parties: Vec<Process<_, Result<u32, String>>> = methods
        .into_iter()
        .map(|m| {
            let mut p = Process::new(
                wait_at_barrier,
                (barrier.try_clone().expect("clone"), 60_000),
            )
            .start_method(m);
            p.start().expect("start");
            p
        })
        .collect();
    let mut indices = vec![barrier
        .wait_timeout(Duration::from_secs(60))
        .expect("passes")];
    for p in &mut parties {
        indices.push(p.join().expect("joined").expect("passes"));
    }
    indices.sort_unstable();
    indices
}

fn take_and_give((sem, n): (Semaphore, u32)) -> u32 {
    let mut taken = 0;
    for _ in 0..n {
        if sem.acquire_timeout(Duration::from_secs(30)) {
            taken += 1;
        }
    }
    taken
}

fn semaphores_count_across_processes() {
    let sem = Semaphore::new(0).expect("semaphore");
    let mut p = Process::new(take_and_give, (sem.try_clone().expect("clone"), 5));
    p.start().expect("start");
    for _ in 0..5 {
        sem.release();
    }
    assert_eq!(p.join().expect("joined"), 5);
    assert_eq!(sem.value(), 0);
    let bounded = BoundedSemaphore::new(2).expect("bounded");
    assert!(bounded.try_acquire() && bounded.try_acquire() && !bounded.try_acquire());
    assert!(bounded.release().is_ok() && bounded.release().is_ok());
    assert!(bounded.release().is_err());
    assert_eq!(bounded.value(), 2);
}

fn wait_for_event(ev: Event) -> bool {
    ev.wait_timeout(Duration::from_secs(30))
}

fn an_event_wakes_a_waiting_process() {
    let ev = Event::new().expect("event");
    let mut p = Process::new(wait_for_event, ev.try_clone().expect("clone"))
        .start_method(StartMethod::Spawn);
    p.start().expect("start");
    std::thread::sleep(Duration::from_millis(20));
    ev.set();
    assert!(p.join().expect("joined"));
}

fn increment_locked((value, n): (Value<u64>, u64)) {
    for _ in 0..n {
        match value.lock() {
            Ok(mut v) => *v += 1,
            Err(e) => panic!("lock failed: {e}"),
        }
    }
}

fn locked_increments_are_exact_under_contention() {
    let value = Value::new(0u64).expect("value");
    let mut workers: Vec<_> = (0..4)
        .map(|_| {
            let mut p = Process::new(
                increment_locked,
                (value.try_clone().expect("clone"), 25_000),
            );
            p.start().expect("start");
            p
        })
        .collect();
    for p in &mut workers {
        p.join().expect("joined");
    }
    assert_eq!(value.get().expect("get"), 100_000);
}

fn add_atomically((value, n): (Value<i64>, i64)) {
    for _ in 0..n {
        value.fetch_add(1);
    }
}

fn fetch_add_is_exact_across_processes() {
    let value = Value::new(0i64).expect("value");
    let mut workers: Vec<_> = (0..2)
        .map(|_| {
            let mut p = Process::new(add_atomically, (value.try_clone().expect("clone"), 200_000));
            p.start().expect("start");
            p
        })
        .collect();
    for p in &mut workers {
        p.join().expect("joined");
    }
    assert_eq!(value.load(), 400_000);
    assert_eq!(value.compare_exchange(400_000, 7), Ok(400_000));
    assert_eq!(value.compare_exchange(400_000, 8), Err(7));
}

/// The value Python's documentation example stores.
#[allow(clippy::approx_constant)]
const DOCS_PI: f64 = 3.1415927;

fn negate((num, arr): (Value<f64>, Array<i32>)) {
    if let Ok(mut n) = num.lock() {
        *n = DOCS_PI;
    }
    if let Ok(mut a) = arr.lock() {
        for x in a.iter_mut() {
            *x = -*x;
        }
    }
}

fn a_value_array_round_trip_with_a_child() {
    for method in [StartMethod::Fork, StartMethod::Spawn] {
        let num = Value::new(0.0f64).expect("value");
        let arr = Array::from_iter(0..10i32).expect("array");
        let mut p = Process::new(
            negate,
            (
                num.try_clone().expect("clone"),
                arr.try_clone().expect("clone"),
            ),
        )
        .start_method(method);
        p.start().expect("start");
        p.join().expect("joined");
        assert_eq!(num.get().expect("get"), DOCS_PI);
        assert_eq!(
            arr.to_vec().expect("to_vec"),
            (0..10).map(|i| -i).collect::<Vec<i32>>()
        );
    }
}
