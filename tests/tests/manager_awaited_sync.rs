//! A manager's locks, semaphores, conditions and barriers awaited
//! (`lock_async`, `acquire_async`, `Condition::wait_async`,
//! `Barrier::wait_async`) beside real processes that use the blocking
//! calls: exact counts under the lock, futures dropped while they wait
//! (or while they are granted) that leave nothing held, a dropped wait's
//! notify passed on, a dropped barrier party that leaves its round, and a
//! holder killed while a future waits.

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use outlast_ipc::manager::{Barrier, Condition, HeldAsync, Lock, Manager, ManagerError, Semaphore};
use outlast_ipc::value::{RawValue, Value};
use outlast_ipc::{Connection, Pipe, Process};
use tests::executor::{block_on, join_all, poll_once, Task};
use tests::{cases, harness};

fn main() {
    outlast_ipc::init();
    harness::run(cases![
        awaited_manager_locks_exclude_tasks_and_processes,
        awaited_acquires_dropped_at_any_point_leave_nothing_held,
        a_dropped_guard_releases_and_an_explicit_release_answers,
        awaited_semaphore_units_are_never_over_given_nor_lost,
        awaited_condition_waits_take_each_notify_once_and_pass_on_a_dropped_ones,
        an_awaited_condition_wait_times_out_holding_its_lock,
        awaited_barrier_waits_meet_processes_and_a_dropped_party_leaves,
        an_awaited_lock_takes_over_from_a_killed_holder,
        a_dropped_wait_long_for_its_lock_holds_up_no_other_drop,
        awaited_locks_over_tcp_exclude_and_dropped_acquires_leave_nothing_held,
        five_hundred_tasks_awaiting_two_units_wait_in_line_on_a_few_connections,
        five_hundred_timed_acquires_wait_in_line_and_those_out_of_time_take_nothing,
        a_timed_acquire_in_line_behind_waits_that_do_not_end_times_out_there,
        timed_and_untimed_acquires_in_line_cut_at_any_point_keep_the_count,
        waits_in_line_on_a_killed_manager_all_end_disconnected,
        awaited_timed_waits_on_a_stopped_manager_are_timeouts_not_hangs,
    ]);
}

/// Each future here can move to another thread of a runtime (tokio's
/// `spawn` asks for `Send`): checked when this file compiles.
#[allow(dead_code)]
fn futures_are_send(lock: &Lock, s: &Semaphore, c: &Condition, b: &Barrier) {
    fn send<T: Send>(_: T) {}
    send(lock.lock_async());
    send(lock.try_lock_async());
    send(s.acquire_async());
    send(c.acquire_async());
    send(b.wait_async());
    send(async {
        let mut held = c.acquire_async().await?;
        c.notify_async(&mut held, 1).await?;
        let held = c.wait_async(held).await?;
        held.release().await
    });
}

/// How long any future here may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(60);

/// Gives the executor its thread back once (another task runs between a
/// read and a write, where a lost update would show).
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if std::mem::replace(&mut yielded, true) {
            return Poll::Ready(());
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// Polls `call` up to `polls` times (a short rest between) and drops it.
fn poll_then_drop<F: Future>(call: F, polls: u32) {
    let mut call = Box::pin(call);
    for _ in 0..polls {
        if poll_once(&mut call).is_ready() {
            break;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// Adds one to `counter` `n` times under the manager `lock` (blocking),
/// with a yield between the read and the write.
fn add_under_lock((lock, counter, n): (Lock, RawValue<u64>, u64)) -> Result<(), String> {
    for _ in 0..n {
        let held = lock.lock().map_err(|e| e.to_string())?;
        let seen = counter.get();
        std::thread::yield_now();
        counter.set(seen + 1);
        held.release().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Two processes add under a manager lock with the blocking `lock` while
/// four futures of this thread add under it with `lock_async`, each
/// holding it across an `.await` (and releasing by drop or by `release`,
/// in turns): the total is exact.
fn awaited_manager_locks_exclude_tasks_and_processes() {
    const EACH: u64 = 150;
    let manager = Manager::start().expect("a manager");
    let lock = manager.lock().expect("a lock");
    let counter = RawValue::new(0u64).expect("a counter");
    let mut adders: Vec<Process<_, Result<(), String>>> = (0..2)
        .map(|_| {
            let mut p = Process::new(add_under_lock, (lock.clone(), counter.clone(), EACH));
            p.start().expect("start");
            p
        })
        .collect();
    let futures: Vec<Task<'_, Result<u64, String>>> = (0..4)
        .map(|_| -> Task<'_, Result<u64, String>> {
            let (lock, counter) = (&lock, &counter);
            Box::pin(async move {
                for i in 0..EACH {
                    let held = lock.lock_async().await.map_err(|e| e.to_string())?;
                    let seen = counter.get();
                    yield_once().await;
                    counter.set(seen + 1);
                    match i % 2 {
                        0 => drop(held),
                        _ => held.release().await.map_err(|e| e.to_string())?,
                    }
                }
                Ok(EACH)
            })
        })
        .collect();
    let joined = join_all(futures, PATIENCE);
    for p in &mut adders {
        assert_eq!(p.join().expect("an adder ended"), Ok(()));
    }
    for output in &joined.outputs {
        assert_eq!(output, &Some(Ok(EACH)), "{:?}", joined.outputs);
    }
    assert_eq!(counter.get(), 6 * EACH, "an update was lost");
    let held = lock
        .lock_timeout(Duration::from_secs(10))
        .expect("the manager");
    let held = held.expect("the lock is free at the end");
    assert!(!held.previous_owner_died());
}

/// Takes and gives back `lock` `n` times as fast as it can (blocking);
/// how many takes waited out ten seconds (none, unless a dropped future
/// kept the lock).
fn churn_lock((lock, n): (Lock, u32)) -> Result<u32, String> {
    let mut stuck = 0;
    for _ in 0..n {
        match lock.lock_timeout(Duration::from_secs(10)) {
            Ok(Some(held)) => held.release().map_err(|e| e.to_string())?,
            Ok(None) => stuck += 1,
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(stuck)
}

/// Awaited acquires dropped after 0 to 3 polls, hundreds of times, while a
/// child takes and gives back the same lock in a loop (so some are
/// dropped while parked, some just as the manager grants them): the
/// child's takes never wait out their time, and at the end the lock is
/// free, its last holder not dead. A try that finds it taken takes
/// nothing; one dropped while the lock is free is released by our thread.
fn awaited_acquires_dropped_at_any_point_leave_nothing_held() {
    const DROPS: u32 = 400;
    let manager = Manager::start().expect("a manager");
    let lock = manager.lock().expect("a lock");
    let mut churn = Process::new(churn_lock, (lock.clone(), 4_000));
    churn.start().expect("start");
    for i in 0..DROPS {
        poll_then_drop(lock.lock_async(), i % 4);
    }
    assert_eq!(churn.join().expect("the churn ended"), Ok(0));

    let held = lock.lock().expect("the lock");
    let tried = block_on(lock.try_lock_async(), PATIENCE).expect("in time");
    assert!(
        tried.expect("the manager").is_none(),
        "a taken lock was tried"
    );
    drop(held);
    // One granted at once, dropped unread: our thread gives it back.
    for polls in [1, 2] {
        poll_then_drop(lock.lock_async(), polls);
        let held = lock
            .lock_timeout(Duration::from_secs(10))
            .expect("the manager");
        let held = held.expect("a dropped acquire kept the lock");
        assert!(
            !held.previous_owner_died(),
            "released by a close, not a release"
        );
    }
}

/// A guard dropped inside a task releases without waiting (a blocking
/// taker in another process gets it); an owned guard is released from
/// another thread; and `release` answers with the manager's word: a
/// bounded semaphore released past its bound says so.
fn a_dropped_guard_releases_and_an_explicit_release_answers() {
    let manager = Manager::start().expect("a manager");
    let lock = manager.lock().expect("a lock");
    let held = block_on(lock.lock_async(), PATIENCE)
        .expect("in time")
        .expect("the lock");
    assert!(!held.previous_owner_died());
    let mut taker = Process::new(churn_lock, (lock.clone(), 1));
    taker.start().expect("start");
    std::thread::sleep(Duration::from_millis(100));
    drop(held);
    assert_eq!(taker.join().expect("the taker ended"), Ok(0));

    // An owned guard moves to another thread, its proxy staying here.
    let owned = block_on(lock.lock_async(), PATIENCE)
        .expect("in time")
        .expect("the lock")
        .into_owned();
    let mut taker = Process::new(try_lock, lock.clone());
    taker.start().expect("start");
    assert_eq!(taker.join().expect("the taker"), Ok(false), "not held");
    let released = std::thread::spawn(move || block_on(owned.release(), PATIENCE));
    let released = released.join().expect("the thread").expect("in time");
    assert!(released.is_ok(), "{released:?}");
    let mut taker = Process::new(try_lock, lock.clone());
    taker.start().expect("start");
    assert_eq!(taker.join().expect("the taker"), Ok(true), "still held");

    let bounded = manager.bounded_semaphore(1).expect("a semaphore");
    let held = block_on(bounded.acquire_async(), PATIENCE)
        .expect("in time")
        .expect("a unit");
    bounded.release().expect("a release by another hand");
    let answered = block_on(held.release(), PATIENCE).expect("in time");
    assert!(
        matches!(answered, Err(ManagerError::Server(_))),
        "a release past the bound: {answered:?}"
    );
    assert_eq!(bounded.value().expect("the value"), 1);
}

/// Whether `lock` could be taken within a second (given back at once).
fn try_lock(lock: Lock) -> Result<bool, String> {
    match lock.lock_timeout(Duration::from_secs(1)) {
        Ok(Some(held)) => held.release().map(|()| true).map_err(|e| e.to_string()),
        Ok(None) => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

/// Takes a unit of `s` and gives it back `n` times (blocking); the most
/// units that `inside` counted taken at once.
fn churn_units((s, inside, n): (Semaphore, Value<i64>, u32)) -> Result<i64, String> {
    let mut most = 0;
    for _ in 0..n {
        let held = s
            .acquire_timeout(Duration::from_secs(10))
            .map_err(|e| e.to_string())?
            .ok_or("a unit was kept by someone")?;
        let now = inside.fetch_add(1) + 1;
        most = most.max(now);
        std::thread::yield_now();
        inside.fetch_add(-1);
        held.release().map_err(|e| e.to_string())?;
    }
    Ok(most)
}

/// Holds one of a semaphore's units across a yield, counted in `inside`
/// (the most at once in `most`), then releases it by drop.
async fn hold_across_a_yield(held: HeldAsync<'_>, inside: &Value<i64>, most: &AtomicI64) {
    let now = inside.fetch_add(1) + 1;
    most.fetch_max(now, Ordering::Relaxed);
    yield_once().await;
    inside.fetch_add(-1);
    drop(held);
}

/// After tasks took `s`'s two units beside a child's `churn_units`: every
/// task ended well, never more than two held a unit at once (here, at
/// most `most`; in the child, what it says), and the count is two again
/// once the releases sent without waiting have arrived.
fn two_units_kept(
    s: &Semaphore,
    joined: tests::executor::Joined<Result<(), String>>,
    most: &AtomicI64,
    mut child: Process<(Semaphore, Value<i64>, u32), Result<i64, String>>,
) {
    for output in &joined.outputs {
        assert_eq!(output, &Some(Ok(())), "{:?}", joined.outputs);
    }
    let child_most = child.join().expect("the child ended").expect("its units");
    assert!(
        most.load(Ordering::Relaxed) <= 2 && child_most <= 2,
        "more holders than units: {} here, {child_most} in the child",
        most.load(Ordering::Relaxed)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.value().expect("the value") != 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(s.value().expect("the value"), 2, "units lost or doubled");
}

/// A semaphore of two units, taken by a child in a loop and by six
/// futures that hold a unit across an `.await`: never more than two
/// holders at once, and after hundreds of acquires dropped at any point
/// the count is two again, not one (a unit lost) nor three (a unit given
/// back twice).
fn awaited_semaphore_units_are_never_over_given_nor_lost() {
    const EACH: u64 = 100;
    let manager = Manager::start().expect("a manager");
    let s = manager.semaphore(2).expect("a semaphore");
    let inside = Value::new(0i64).expect("a count");
    let mut child = Process::new(churn_units, (s.clone(), inside.clone(), 1_000));
    child.start().expect("start");
    let most = AtomicI64::new(0);
    let futures: Vec<Task<'_, Result<(), String>>> = (0..6)
        .map(|t| -> Task<'_, Result<(), String>> {
            let (s, inside, most) = (&s, &inside, &most);
            Box::pin(async move {
                for i in 0..EACH {
                    if (i + t) % 3 == 0 {
                        poll_then_drop(s.acquire_async(), (i % 4) as u32);
                        continue;
                    }
                    let held = s.acquire_async().await.map_err(|e| e.to_string())?;
                    hold_across_a_yield(held, inside, most).await;
                }
                Ok(())
            })
        })
        .collect();
    two_units_kept(&s, join_all(futures, PATIENCE), &most, child);
    let value = block_on(s.value_async(), PATIENCE).expect("in time");
    assert_eq!(value.expect("the value"), 2, "units lost or doubled");
    let two = (
        s.try_acquire().expect("a try"),
        s.try_acquire().expect("a try"),
    );
    assert!(two.0.is_some() && two.1.is_some());
    assert!(s.try_acquire().expect("a try").is_none(), "a third unit");
}

/// Produces `n` items under `cond` (blocking): one at a time, a notify
/// each, then the end with a notify to all.
fn produce_under_condition(
    (cond, items, done, n): (Condition, RawValue<u64>, RawValue<u64>, u64),
) -> Result<(), String> {
    for i in 0..n {
        if i % 20 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        let held = cond.acquire().map_err(|e| e.to_string())?;
        items.set(items.get() + 1);
        cond.notify(1).map_err(|e| e.to_string())?;
        held.release().map_err(|e| e.to_string())?;
    }
    let held = cond.acquire().map_err(|e| e.to_string())?;
    done.set(1);
    cond.notify_all().map_err(|e| e.to_string())?;
    held.release().map_err(|e| e.to_string())
}

/// Four futures consume what a child produces under a manager
/// `Condition`, each waiting with `wait_async` while nothing is there:
/// every item is taken exactly once. Then a notify given to the older of
/// two waiting futures, which is dropped before it is answered, goes on to
/// the other; a wait dropped before any notify leaves nothing held.
fn awaited_condition_waits_take_each_notify_once_and_pass_on_a_dropped_ones() {
    const ITEMS: u64 = 200;
    let manager = Manager::start().expect("a manager");
    let cond = manager.condition().expect("a condition");
    let items = RawValue::new(0u64).expect("a count");
    let done = RawValue::new(0u64).expect("a flag");
    let mut producer = Process::new(
        produce_under_condition,
        (cond.clone(), items.clone(), done.clone(), ITEMS),
    );
    producer.start().expect("start");
    let consumers: Vec<Task<'_, Result<u64, String>>> = (0..4)
        .map(|_| -> Task<'_, Result<u64, String>> {
            let (cond, items, done) = (&cond, &items, &done);
            Box::pin(async move {
                let mut taken = 0;
                loop {
                    let mut held = cond.acquire_async().await.map_err(|e| e.to_string())?;
                    while items.get() == 0 && done.get() == 0 {
                        held = cond.wait_async(held).await.map_err(|e| e.to_string())?;
                    }
                    if items.get() == 0 {
                        return Ok(taken);
                    }
                    items.set(items.get() - 1);
                    taken += 1;
                    drop(held);
                    yield_once().await;
                }
            })
        })
        .collect();
    let joined = join_all(consumers, PATIENCE);
    assert_eq!(producer.join().expect("the producer ended"), Ok(()));
    let taken: Vec<u64> = joined
        .outputs
        .iter()
        .map(|o| o.clone().expect("in time").expect("a consumer"))
        .collect();
    assert_eq!(taken.iter().sum::<u64>(), ITEMS, "{taken:?}");
    assert_eq!(items.get(), 0);

    // Two waiting futures; the notify goes to the older, which is dropped.
    let block = |f| block_on(f, PATIENCE).expect("in time");
    let held = block(cond.acquire_async()).expect("the lock");
    let mut first = Box::pin(cond.wait_async(held));
    let held = wait_until_parked(&mut first, &cond);
    let mut second = Box::pin(cond.wait_async(held));
    drop(wait_until_parked(&mut second, &cond));
    {
        let held = cond.acquire().expect("the lock");
        cond.notify(1).expect("a notify");
        held.release().expect("a release");
    }
    drop(first);
    let held = block_on(second, PATIENCE).expect("the dropped waiter's notify was passed on");
    let held = held.expect("the lock");
    assert!(!held.previous_owner_died());
    drop(held);

    // A wait dropped before any notify: the lock is taken back by our
    // thread and released, not left to a close.
    let held = block(cond.acquire_async()).expect("the lock");
    poll_then_drop(cond.wait_async(held), 3);
    let held = cond
        .acquire_timeout(Duration::from_secs(10))
        .expect("the manager");
    let held = held.expect("a dropped wait kept the lock");
    assert!(!held.previous_owner_died());
}

/// Polls `wait` until the manager has parked it (it gave its lock up: an
/// awaited try takes the lock), and gives back that try's guard.
fn wait_until_parked<'a, F>(
    wait: &mut std::pin::Pin<Box<F>>,
    cond: &'a Condition,
) -> outlast_ipc::manager::HeldAsync<'a>
where
    F: Future<Output = Result<outlast_ipc::manager::HeldAsync<'a>, ManagerError>>,
{
    assert!(
        poll_once(wait).is_pending(),
        "a wait without a notify ended"
    );
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(
            poll_once(wait).is_pending(),
            "a wait without a notify ended"
        );
        let tried = block_on(cond.try_acquire_async(), PATIENCE).expect("in time");
        if let Some(held) = tried.expect("the manager") {
            return held;
        }
        assert!(Instant::now() < deadline, "the wait never gave its lock up");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A holder in another process waits with a timeout: `wait_timeout_async`
/// gives the guard back with the lock taken again (a child's try fails
/// meanwhile) and says that no notify came.
fn an_awaited_condition_wait_times_out_holding_its_lock() {
    let manager = Manager::start().expect("a manager");
    let cond = manager.condition().expect("a condition");
    let held = block_on(cond.acquire_async(), PATIENCE)
        .expect("in time")
        .expect("the lock");
    let waited = block_on(
        cond.wait_timeout_async(held, Duration::from_millis(100)),
        PATIENCE,
    )
    .expect("in time");
    let (held, notified) = waited.expect("the wait");
    assert!(!notified, "no one notified");
    let mut other = Process::new(try_condition, cond.clone());
    other.start().expect("start");
    assert_eq!(
        other.join().expect("the child"),
        Ok(false),
        "the lock was not held"
    );
    drop(held);
    let mut other = Process::new(try_condition, cond.clone());
    other.start().expect("start");
    assert_eq!(
        other.join().expect("the child"),
        Ok(true),
        "a dropped guard kept it"
    );

    // Python's `wait_for`: a predicate that never holds runs out its time
    // with the lock held; one a child makes true ends the wait.
    let held = block_on(cond.acquire_async(), PATIENCE)
        .expect("in time")
        .expect("the lock");
    let waited = block_on(
        cond.wait_for_async(held, || false, Some(Duration::from_millis(100))),
        PATIENCE,
    )
    .expect("in time");
    let (held, ready) = waited.expect("the wait");
    assert!(!ready, "a predicate that never holds");
    let flag = RawValue::new(0u64).expect("a flag");
    let mut setter = Process::new(set_flag_and_notify, (cond.clone(), flag.clone()));
    setter.start().expect("start");
    let waited = block_on(
        cond.wait_for_async(held, || flag.get() == 1, None),
        PATIENCE,
    );
    let (held, ready) = waited.expect("in time").expect("the wait");
    assert!(ready);
    drop(held);
    assert_eq!(setter.join().expect("the setter"), Ok(()));

    let lock = manager.lock().expect("another lock");
    let mut guard = block_on(lock.lock_async(), PATIENCE)
        .expect("in time")
        .expect("a lock");
    let wrong = block_on(cond.notify_async(&mut guard, 1), PATIENCE).expect("in time");
    assert!(matches!(wrong, Err(ManagerError::WrongGuard)), "{wrong:?}");
}

/// Sets `flag` under `cond`'s lock, notifying every waiter, a few times
/// (the first notifies may come before the waiter waits).
fn set_flag_and_notify((cond, flag): (Condition, RawValue<u64>)) -> Result<(), String> {
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(20));
        let held = cond.acquire().map_err(|e| e.to_string())?;
        flag.set(1);
        cond.notify_all().map_err(|e| e.to_string())?;
        held.release().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Whether `cond`'s lock could be taken within a second.
fn try_condition(cond: Condition) -> Result<bool, String> {
    match cond.acquire_timeout(Duration::from_secs(1)) {
        Ok(Some(held)) => held.release().map(|()| true).map_err(|e| e.to_string()),
        Ok(None) => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

/// Waits at `barrier` `rounds` times (blocking); the arrival indices.
fn barrier_rounds((barrier, rounds): (Barrier, u32)) -> Result<Vec<u64>, String> {
    (0..rounds)
        .map(|_| barrier.wait().map_err(|e| e.to_string()))
        .collect()
}

/// Three parties, two processes and this thread's future, meet 30 rounds:
/// each round's indices are 0, 1 and 2. Then on a barrier of two, a wait
/// dropped while it waits leaves the round (nobody counted waiting, not
/// broken) and a child and a second future meet; a wait past its
/// deadline breaks it, as Python's does.
fn awaited_barrier_waits_meet_processes_and_a_dropped_party_leaves() {
    const ROUNDS: u32 = 30;
    let manager = Manager::start().expect("a manager");
    let barrier = manager.barrier(3).expect("a barrier");
    let mut children: Vec<Process<_, Result<Vec<u64>, String>>> = (0..2)
        .map(|_| {
            let mut p = Process::new(barrier_rounds, (barrier.clone(), ROUNDS));
            p.start().expect("start");
            p
        })
        .collect();
    let ours = block_on(
        async {
            let mut indices = Vec::new();
            for _ in 0..ROUNDS {
                indices.push(barrier.wait_async().await?);
            }
            Ok::<_, ManagerError>(indices)
        },
        PATIENCE,
    )
    .expect("in time")
    .expect("every round passed");
    let theirs: Vec<Vec<u64>> = children
        .iter_mut()
        .map(|c| c.join().expect("a child").expect("its rounds"))
        .collect();
    for round in 0..ROUNDS as usize {
        let mut seen = [ours[round], theirs[0][round], theirs[1][round]];
        seen.sort_unstable();
        assert_eq!(seen, [0, 1, 2], "round {round}");
    }

    let pair = manager.barrier(2).expect("a barrier");
    let mut left = Box::pin(pair.wait_async());
    assert!(poll_once(&mut left).is_pending());
    let deadline = Instant::now() + PATIENCE;
    // Polled on until its request is out (a first poll may only start the
    // opening of its connection, on a thread of ours).
    while pair.n_waiting().expect("waiting") != 1 {
        assert!(Instant::now() < deadline, "the arrival never counted");
        std::thread::sleep(Duration::from_millis(1));
        assert!(poll_once(&mut left).is_pending(), "a party alone passed");
    }
    drop(left);
    while pair.n_waiting().expect("waiting") != 0 {
        assert!(Instant::now() < deadline, "a dropped party still waits");
        std::thread::sleep(Duration::from_millis(1));
    }
    let awaited = block_on(
        async {
            let counts = (pair.parties_async().await?, pair.n_waiting_async().await?);
            Ok::<_, ManagerError>((counts, pair.broken_async().await?))
        },
        PATIENCE,
    );
    assert_eq!(
        awaited.map(|r| r.map_err(|e| e.to_string())),
        Some(Ok(((2, 0), false))),
        "a dropped party broke it, or still counts"
    );
    let mut child = Process::new(barrier_rounds, (pair.clone(), 1));
    child.start().expect("start");
    let index = block_on(pair.wait_async(), PATIENCE).expect("in time");
    let index = index.expect("the round passes");
    let theirs = child.join().expect("the child").expect("its round");
    let mut both = [index, theirs[0]];
    both.sort_unstable();
    assert_eq!(both, [0, 1]);

    let late = block_on(pair.wait_timeout_async(Duration::from_millis(50)), PATIENCE);
    assert!(
        matches!(late, Some(Err(ManagerError::BrokenBarrier))),
        "{late:?}"
    );
    assert!(pair.broken().expect("broken"));
    let reset = block_on(pair.reset_async(), PATIENCE).expect("in time");
    assert!(reset.is_ok(), "{reset:?}");
    assert!(!pair.broken().expect("broken"), "a reset left it broken");
}

/// Takes `lock`, says so on `conn`, and holds it until killed.
fn hold_until_killed((lock, mut conn): (Lock, Connection)) -> Result<(), String> {
    let held = lock.lock().map_err(|e| e.to_string())?;
    conn.send(&1u8).map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_secs(600));
    held.release().map_err(|e| e.to_string())
}

/// A child holds the manager lock and is `SIGKILL`ed while a future of
/// this thread waits for it: the future gets the lock, told that its
/// previous holder died.
fn an_awaited_lock_takes_over_from_a_killed_holder() {
    let manager = Manager::start().expect("a manager");
    let lock = manager.lock().expect("a lock");
    let (mut ours, theirs) = Pipe::duplex().expect("a pipe");
    let mut holder = Process::new(hold_until_killed, (lock.clone(), theirs));
    holder.start().expect("start");
    let _: u8 = ours.recv().expect("the holder has the lock");
    let got = std::thread::scope(|s| {
        let waiter = s.spawn(|| block_on(lock.lock_async(), PATIENCE));
        std::thread::sleep(Duration::from_millis(200));
        holder.kill().expect("kill the holder");
        waiter.join().expect("the waiting thread")
    });
    let _ = holder.join();
    let held = got.expect("in time").expect("the lock");
    assert!(held.previous_owner_died(), "not told of the holder's death");
    drop(held);
    let again = lock
        .lock_timeout(Duration::from_secs(10))
        .expect("the manager");
    assert!(!again.expect("free again").previous_owner_died());
}

/// Takes `cond`'s lock, says so on `conn`, and holds it until `conn`
/// says to let go.
fn hold_condition((cond, mut conn): (Condition, Connection)) -> Result<(), String> {
    let held = cond.acquire().map_err(|e| e.to_string())?;
    conn.send(&1u8).map_err(|e| e.to_string())?;
    let _: u8 = conn.recv().map_err(|e| e.to_string())?;
    held.release().map_err(|e| e.to_string())
}

/// A condition wait dropped while a child holds the lock it must take
/// back waits, on our cancel thread, until the child lets go; meanwhile a
/// manager queue's get dropped with its item is read by that thread at
/// once, and the item is taken again while the child still holds the
/// lock (before, the thread read its connections a batch at a time, and
/// the get's item waited for the condition's lock, up to 30 s). Once the
/// child lets go, the condition's lock is taken back and released.
fn a_dropped_wait_long_for_its_lock_holds_up_no_other_drop() {
    let manager = Manager::start().expect("a manager");
    let cond = manager.condition().expect("a condition");
    let q = manager.queue::<u64>().expect("a queue");
    let held = block_on(cond.acquire_async(), PATIENCE)
        .expect("in time")
        .expect("the lock");
    let mut wait = Box::pin(cond.wait_async(held));
    drop(wait_until_parked(&mut wait, &cond));
    let (mut ours, theirs) = Pipe::duplex().expect("a pipe");
    let mut holder = Process::new(hold_condition, (cond.clone(), theirs));
    holder.start().expect("start");
    let _: u8 = ours.recv().expect("the child holds the lock");
    // The wait is cancelled; taking its lock back waits for the child.
    drop(wait);

    // A get parked on the empty queue is sent the item a put brings, and
    // dropped unread (its first polls may not have sent it yet: then the
    // item stays in the queue, and the round is tried again).
    let mut handed = false;
    for _ in 0..50 {
        let mut get = Box::pin(q.get_async());
        for _ in 0..20 {
            assert!(
                poll_once(&mut get).is_pending(),
                "a get of an empty queue ended"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        q.put(&42).expect("a put");
        handed = q.len().expect("a length") == 0;
        drop(get);
        let again = block_on(q.get_async(), Duration::from_secs(10));
        assert_eq!(
            again.map(|got| got.map_err(|e| e.to_string())),
            Some(Ok(42)),
            "the dropped get's item did not come back while the condition's lock was held"
        );
        if handed {
            break;
        }
    }
    assert!(handed, "no get was sent the item in 50 rounds");
    ours.send(&1u8).expect("tell the child to let go");
    assert_eq!(holder.join().expect("the child"), Ok(()));
    let held = cond
        .acquire_timeout(Duration::from_secs(10))
        .expect("the manager");
    let held = held.expect("the dropped wait's lock was not released");
    assert!(!held.previous_owner_died());
}

/// The same over loopback TCP (no shared-memory lane: every request,
/// release and cancel goes on the socket, each frame with its tag): four
/// futures and a child add under one lock, exactly; 100 acquires dropped
/// after 0 to 3 polls while the child takes and gives back the lock leave
/// it free, its last holder not dead.
fn awaited_locks_over_tcp_exclude_and_dropped_acquires_leave_nothing_held() {
    const EACH: u64 = 50;
    let address = "127.0.0.1:0".parse().expect("an address");
    let remote = Manager::serve(&address, b"a key of ours").expect("a TCP manager");
    let lock = remote.lock().expect("a lock");
    let counter = RawValue::new(0u64).expect("a counter");
    let mut adder = Process::new(add_under_lock, (lock.clone(), counter.clone(), EACH));
    adder.start().expect("start");
    let futures: Vec<Task<'_, Result<(), String>>> = (0..4)
        .map(|_| -> Task<'_, Result<(), String>> {
            let (lock, counter) = (&lock, &counter);
            Box::pin(async move {
                for _ in 0..EACH {
                    let held = lock.lock_async().await.map_err(|e| e.to_string())?;
                    let seen = counter.get();
                    yield_once().await;
                    counter.set(seen + 1);
                    drop(held);
                }
                Ok(())
            })
        })
        .collect();
    let joined = join_all(futures, PATIENCE);
    assert!(
        joined.outputs.iter().all(|o| o == &Some(Ok(()))),
        "{:?}",
        joined.outputs
    );
    assert_eq!(adder.join().expect("the adder"), Ok(()));
    assert_eq!(counter.get(), 5 * EACH, "an update was lost");

    let mut churn = Process::new(churn_lock, (lock.clone(), 1_000));
    churn.start().expect("start");
    for i in 0..100 {
        poll_then_drop(lock.lock_async(), i % 4);
    }
    assert_eq!(churn.join().expect("the churn ended"), Ok(0));
    let held = lock
        .lock_timeout(Duration::from_secs(10))
        .expect("the manager");
    assert!(!held.expect("the lock is free").previous_owner_died());
}

/// The descriptors this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Five hundred tasks share a semaphore of two units, as an async rate
/// limiter does. Each waiting acquire used to open a connection of its
/// own, three descriptors each: 1,500 here, and past a process's usual
/// 1,024, most acquires failed ("too many open files"; 41 of 500 and
/// 1,069 of 2,000 in a user's program). Now most wait in line in this
/// process: every task gets its unit, never more than two at once, and
/// the descriptors stay a handful.
fn five_hundred_tasks_awaiting_two_units_wait_in_line_on_a_few_connections() {
    const TASKS: usize = 500;
    let manager = Manager::start().expect("a manager");
    let s = manager.semaphore(2).expect("a semaphore");
    let inside = AtomicI64::new(0);
    let most = AtomicI64::new(0);
    let before = open_fds();
    let most_fds = std::sync::atomic::AtomicUsize::new(before);
    let futures: Vec<Task<'_, Result<(), String>>> = (0..TASKS)
        .map(|_| -> Task<'_, Result<(), String>> {
            let (s, inside, most, most_fds) = (&s, &inside, &most, &most_fds);
            Box::pin(async move {
                let held = s.acquire_async().await.map_err(|e| e.to_string())?;
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                most_fds.fetch_max(open_fds(), Ordering::SeqCst);
                yield_once().await;
                inside.fetch_sub(1, Ordering::SeqCst);
                held.release().await.map_err(|e| e.to_string())
            })
        })
        .collect();
    let joined = join_all(futures, PATIENCE);
    all_were(&joined, Result::is_ok, "ended well");
    assert!(most.load(Ordering::SeqCst) <= 2, "more holders than units");
    let grew = most_fds.load(Ordering::SeqCst).saturating_sub(before);
    assert!(
        grew <= 200,
        "{grew} descriptors opened for {TASKS} waiting tasks"
    );
    assert_eq!(s.value().expect("the value"), 2, "units lost or doubled");
}

/// The tasks of [`five_hundred_timed_acquires_wait_in_line_and_those_out_of_time_take_nothing`]:
/// each acquires one of `s`'s units for at most `wait`, holds it across a
/// yield, and says whether it got one; `inside`'s second counts the most
/// holders at once, `most_fds` the most descriptors open.
fn timed_takers<'a>(
    s: &'a Semaphore,
    n: usize,
    wait: Duration,
    inside: &'a (AtomicI64, AtomicI64),
    most_fds: &'a std::sync::atomic::AtomicUsize,
) -> Vec<Task<'a, Result<bool, String>>> {
    (0..n)
        .map(|_| -> Task<'a, Result<bool, String>> {
            Box::pin(async move {
                let started = Instant::now();
                let taken = s
                    .acquire_timeout_async(wait)
                    .await
                    .map_err(|e| e.to_string())?;
                most_fds.fetch_max(open_fds(), Ordering::SeqCst);
                let Some(held) = taken else {
                    if started.elapsed() < wait {
                        return Err(format!("gave up after {:?}", started.elapsed()));
                    }
                    return Ok(false);
                };
                let now = inside.0.fetch_add(1, Ordering::SeqCst) + 1;
                inside.1.fetch_max(now, Ordering::SeqCst);
                yield_once().await;
                inside.0.fetch_sub(1, Ordering::SeqCst);
                held.release().await.map_err(|e| e.to_string())?;
                Ok(true)
            })
        })
        .collect()
}

/// That every one of `joined`'s tasks ended, and as `well` says (`what`).
fn all_were<T: std::fmt::Debug>(
    joined: &tests::executor::Joined<T>,
    well: impl Fn(&T) -> bool,
    what: &str,
) {
    let other: Vec<_> = joined
        .outputs
        .iter()
        .filter(|o| !o.as_ref().is_some_and(&well))
        .collect();
    assert!(
        other.is_empty(),
        "{} of {} tasks not {what} (None: still waiting), the first: {:?}",
        other.len(),
        joined.outputs.len(),
        other[0]
    );
}

/// Five hundred tasks take two units with `acquire_timeout_async`, then
/// three hundred wait 300 ms for units that never come. Each timed
/// acquire went to the manager at once, on a connection of its own
/// (three descriptors each, and past a process's usual 1,024 most failed);
/// they now wait in line here as the untimed ones do: every task of the
/// first round gets its unit, never more than two at once, every one of
/// the second gives up after its 300 ms having taken nothing, and the
/// descriptors stay a handful.
fn five_hundred_timed_acquires_wait_in_line_and_those_out_of_time_take_nothing() {
    let manager = Manager::start().expect("a manager");
    let s = manager.semaphore(2).expect("a semaphore");
    let before = open_fds();
    let most_fds = std::sync::atomic::AtomicUsize::new(before);
    let inside = (AtomicI64::new(0), AtomicI64::new(0));
    let joined = join_all(
        timed_takers(&s, 500, PATIENCE, &inside, &most_fds),
        PATIENCE,
    );
    all_were(&joined, |o| o == &Ok(true), "with a unit");
    assert!(
        inside.1.load(Ordering::SeqCst) <= 2,
        "more holders than units"
    );
    assert_eq!(s.value().expect("the value"), 2, "units lost or doubled");

    let none = manager.semaphore(0).expect("a semaphore");
    let joined = join_all(
        timed_takers(&none, 300, Duration::from_millis(300), &inside, &most_fds),
        PATIENCE,
    );
    all_were(&joined, |o| o == &Ok(false), "given up");
    assert_eq!(
        none.value().expect("the value"),
        0,
        "a unit came from nowhere"
    );
    let grew = most_fds.load(Ordering::SeqCst).saturating_sub(before);
    assert!(grew <= 200, "{grew} descriptors opened for timed acquires");
}

/// Eight untimed acquires wait at the manager for units nobody gives, so
/// fifty timed ones wait in line here: their 200 ms run out there, and
/// each says so without having gone to the manager (an alarm of ours ends
/// the wait in line; without one they would wait for ever). Twenty more,
/// dropped in line before them, hold nobody up. The eight then take the
/// units given them.
fn a_timed_acquire_in_line_behind_waits_that_do_not_end_times_out_there() {
    const TIMED: usize = 50;
    let manager = Manager::start().expect("a manager");
    let s = manager.semaphore(0).expect("a semaphore");
    let timed_out = std::sync::atomic::AtomicUsize::new(0);
    let mut futures: Vec<Task<'_, Result<(), String>>> = (0..8)
        .map(|_| -> Task<'_, Result<(), String>> {
            let s = &s;
            Box::pin(async move {
                let held = s.acquire_async().await.map_err(|e| e.to_string())?;
                held.release().await.map_err(|e| e.to_string())
            })
        })
        .collect();
    // The eight go to the manager; twenty timed ones stand in line, each
    // with its alarm set, and are dropped there: they leave the line, and
    // their alarms go with them.
    for untimed in &mut futures {
        assert!(poll_once(untimed).is_pending(), "a unit that nobody gave");
    }
    for _ in 0..20 {
        let mut dropped = Box::pin(s.acquire_timeout_async(PATIENCE));
        assert!(poll_once(&mut dropped).is_pending(), "not in line");
    }
    let wait = Duration::from_millis(200);
    futures.extend((0..TIMED).map(|_| -> Task<'_, Result<(), String>> {
        let (s, timed_out) = (&s, &timed_out);
        Box::pin(async move {
            let started = Instant::now();
            match s.acquire_timeout_async(wait).await {
                Ok(None) if started.elapsed() >= wait => {
                    timed_out.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
                other => Err(format!("after {:?}: {other:?}", started.elapsed())),
            }
        })
    }));
    let joined = std::thread::scope(|scope| {
        // Once every timed one has given up, the eight get their units.
        scope.spawn(|| {
            let deadline = Instant::now() + PATIENCE;
            while timed_out.load(Ordering::SeqCst) < TIMED && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            for _ in 0..8 {
                s.release().expect("a release");
            }
        });
        join_all(futures, PATIENCE)
    });
    all_were(&joined, Result::is_ok, "ended well");
    assert_eq!(timed_out.load(Ordering::SeqCst), TIMED);
    assert_eq!(s.value().expect("the value"), 8, "units lost or doubled");
    // Nobody dropped is left in line ahead of a newcomer.
    let taken = block_on(s.acquire_timeout_async(Duration::from_secs(10)), PATIENCE);
    let held = taken.expect("in time").expect("the manager");
    assert!(
        held.is_some(),
        "a free unit not taken: the line kept the dropped"
    );
}

/// Twenty-four futures, three times the manager's share of one object, so
/// most wait in line here, take a semaphore's two units beside a child's
/// blocking takes: timed acquires that run out (in line or at the
/// manager), timed and untimed acquires dropped at any point, and
/// untimed ones held across an `.await`. Never more than two holders, and
/// the count is two at the end.
fn timed_and_untimed_acquires_in_line_cut_at_any_point_keep_the_count() {
    const TASKS: u64 = 24;
    const EACH: u64 = 40;
    let manager = Manager::start().expect("a manager");
    let s = manager.semaphore(2).expect("a semaphore");
    let inside = Value::new(0i64).expect("a count");
    let mut child = Process::new(churn_units, (s.clone(), inside.clone(), 500));
    child.start().expect("start");
    let most = AtomicI64::new(0);
    let futures: Vec<Task<'_, Result<(), String>>> = (0..TASKS)
        .map(|t| -> Task<'_, Result<(), String>> {
            let (s, inside, most) = (&s, &inside, &most);
            Box::pin(async move {
                for i in 0..EACH {
                    let held = match (i + t) % 4 {
                        0 => {
                            let wait = Duration::from_millis(1 + (i * 7 + t) % 4);
                            s.acquire_timeout_async(wait).await
                        }
                        1 => {
                            poll_then_drop(s.acquire_timeout_async(PATIENCE), (i % 4) as u32);
                            continue;
                        }
                        2 => {
                            poll_then_drop(s.acquire_async(), (i % 4) as u32);
                            continue;
                        }
                        _ => s.acquire_async().await.map(Some),
                    };
                    let Some(held) = held.map_err(|e| e.to_string())? else {
                        continue;
                    };
                    hold_across_a_yield(held, inside, most).await;
                }
                Ok(())
            })
        })
        .collect();
    two_units_kept(&s, join_all(futures, PATIENCE), &most, child);
}

/// A hundred tasks wait on a manager, most of them in this process's
/// lines (acquires, timed and untimed, and queue gets), when the manager
/// is SIGKILLed: every one ends, disconnected, and none waits out its
/// deadline (two minutes, past the test's patience) in line.
fn waits_in_line_on_a_killed_manager_all_end_disconnected() {
    let manager = Manager::start().expect("a manager");
    let s = manager.semaphore(0).expect("a semaphore");
    let q = manager.queue::<u64>().expect("a queue");
    let long = Duration::from_secs(120);
    let mut futures: Vec<Task<'_, Result<(), ManagerError>>> = Vec::new();
    for i in 0..100 {
        let (s, q) = (&s, &q);
        futures.push(match i % 3 {
            0 => Box::pin(async move { s.acquire_async().await.map(drop) }),
            1 => Box::pin(async move { s.acquire_timeout_async(long).await.map(drop) }),
            _ => Box::pin(async move { q.get_async().await.map(drop) }),
        });
    }
    let pid = manager.pid().expect("the manager's pid") as i32;
    let joined = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            // SAFETY: kill has no memory arguments.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        });
        join_all(futures, PATIENCE)
    });
    let other: Vec<_> = joined
        .outputs
        .iter()
        .enumerate()
        .filter(|(_, o)| !matches!(o, Some(Err(ManagerError::Disconnected))))
        .collect();
    assert!(
        other.is_empty(),
        "{} of 100 did not end disconnected (None: still waiting), the first: {:?}",
        other.len(),
        other[0]
    );
}

/// The manager keeps a timed wait's deadline; one stopped (SIGSTOP) keeps
/// none. An awaited timed acquire, a lock's and a barrier's timed waits
/// and a condition's then end `Timeout` after their slack, as the
/// blocking ones do; they waited for ever. Once it runs again, nothing
/// they asked for is held.
fn awaited_timed_waits_on_a_stopped_manager_are_timeouts_not_hangs() {
    let manager = Manager::start().expect("a manager");
    let s = manager.semaphore(0).expect("a semaphore");
    let lock = manager.lock().expect("a lock");
    let barrier = manager.barrier(2).expect("a barrier");
    let cond = manager.condition().expect("a condition");
    // Connections for awaited calls, made while the manager answers.
    let tried = block_on(s.try_acquire_async(), PATIENCE).expect("in time");
    assert!(tried.expect("a try").is_none());
    let in_cond = block_on(cond.acquire_async(), PATIENCE).expect("in time");
    let in_cond = in_cond.expect("the condition's lock");
    let held = lock.lock().expect("the lock");
    let pid = manager.pid().expect("the manager's pid") as i32;
    // SAFETY: kill has no memory arguments.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let wait = Duration::from_millis(200);
    let futures: Vec<Task<'_, String>> = vec![
        Box::pin(async {
            format!(
                "{:?}",
                s.acquire_timeout_async(wait).await.map(|h| h.is_some())
            )
        }),
        Box::pin(async {
            format!(
                "{:?}",
                lock.lock_timeout_async(wait).await.map(|h| h.is_some())
            )
        }),
        Box::pin(async { format!("{:?}", barrier.wait_timeout_async(wait).await) }),
        Box::pin(async {
            let waited = cond.wait_timeout_async(in_cond, wait).await;
            format!("{:?}", waited.map(|(_, notified)| notified))
        }),
    ];
    let joined = join_all(futures, PATIENCE);
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let timeout = format!("{:?}", Err::<(), _>(ManagerError::Timeout));
    for output in &joined.outputs {
        assert_eq!(
            output.as_deref(),
            Some(timeout.as_str()),
            "{:?}",
            joined.outputs
        );
    }
    drop(held);
    // The acquires, told to stop once the manager reads them, took nothing.
    let free = within_20_s(|| lock.try_lock().expect("the manager"));
    assert!(free.is_some(), "the lock stayed taken");
    // The condition's wait, dropped, took its lock back and released it.
    let cond_free = within_20_s(|| cond.try_acquire().expect("the manager"));
    assert!(cond_free.is_some(), "the condition's lock stayed taken");
    assert_eq!(s.value().expect("the value"), 0, "a unit from nowhere");
}

/// What `try_take` gives once it gives something, tried every 10 ms for
/// 20 s at most (a release sent without waiting arrives a moment later).
fn within_20_s<T>(mut try_take: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match try_take() {
            Some(taken) => return Some(taken),
            None if Instant::now() > deadline => return None,
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}
