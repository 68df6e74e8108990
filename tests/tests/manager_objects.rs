//! The manager's objects beyond dicts and locks: semaphores, conditions,
//! events, barriers, queues, values, arrays, nested objects and atomic
//! updates, each driven from real child processes, and each waiting
//! object's behaviour when a holder or a waiter is SIGKILLed.

use std::time::Duration;

use outlast_ipc::manager::{
    Array, Barrier, Condition, Dict, Event, JoinableQueue, List, Manager, ManagerError, Namespace,
    Queue, Semaphore, Update, Value,
};
use outlast_ipc::{Process, StartMethod};

const PATIENCE: Duration = Duration::from_secs(30);

fn main() {
    outlast_ipc::init();
    tests::harness::run(tests::cases![
        a_semaphore_of_two_lets_at_most_two_in,
        an_owned_semaphore_unit_held_by_a_killed_process_comes_back,
        a_semaphore_counts_across_processes_as_pythons,
        a_bounded_semaphore_refuses_a_release_too_many,
        a_condition_wakes_its_waiter_and_times_out_without_notify,
        a_condition_holder_killed_frees_its_lock,
        an_event_wakes_waiters_in_other_processes,
        a_barrier_lets_three_through_with_distinct_indices,
        a_barrier_party_killed_while_waiting_breaks_it_for_the_others,
        a_barrier_wait_that_times_out_breaks_it,
        a_queue_carries_items_in_order_between_processes,
        a_bounded_queue_is_full_and_an_empty_one_times_out,
        a_joinable_queue_joins_when_every_item_is_done,
        a_joinable_queues_join_reports_what_a_killed_consumer_held,
        a_consumer_blocked_on_a_killed_manager_is_disconnected,
        a_value_and_an_array_are_shared,
        compare_and_set_from_four_processes_counts_exactly,
        update_with_setdefault_and_values,
        a_dict_keeps_insertion_order_as_pythons,
        iterating_a_dict_sees_a_change_by_another_process,
        a_set_has_pythons_set_methods_across_processes,
        entries_give_nested_objects_as_proxies,
        a_namespace_field_is_deleted_and_its_debug_names_its_fields,
        a_nested_list_sees_every_process_append,
        sort_is_atomic_beside_appends,
        named_objects_are_shared_and_kinds_checked,
        a_batch_refuses_an_operation_that_waits,
        values_larger_than_the_lane_travel_on_the_socket,
        a_large_value_is_sent_from_where_the_server_keeps_it,
        a_mixed_batch_is_one_step_nobody_else_cuts_into,
        a_registered_type_round_trips_in_fork_and_spawn,
        an_unregistered_type_or_a_garbage_call_is_refused,
    ]);
}

fn err(e: ManagerError) -> String {
    e.to_string()
}

// ---- dicts -------------------------------------------------------------------

/// Insertion order, `popitem` and a change during iteration, each as
/// Python's `SyncManager().dict()` gives them (python3 3.11 says:
/// ['b', 'a', 'c']; ['a', 'c', 'b'] with ('a', 2), ('c', 1), ('b', 3);
/// popitem ('b', 3); RuntimeError on a key added while iterating, none on
/// a value set again; KeyError from popitem on an empty dict).
fn a_dict_keeps_insertion_order_as_pythons() {
    let manager = Manager::start().unwrap();
    let d = manager.dict::<String, i64>().unwrap();
    for k in ["b", "a", "c"] {
        d.set(&k.into(), &1).unwrap();
    }
    d.set(&"a".into(), &2).unwrap();
    assert_eq!(
        d.keys().unwrap(),
        ["b", "a", "c"],
        "a value set again keeps its place"
    );
    d.pop(&"b".into()).unwrap();
    d.set(&"b".into(), &3).unwrap();
    assert_eq!(
        d.keys().unwrap(),
        ["a", "c", "b"],
        "removed and set again goes last"
    );
    assert_eq!(
        d.items().unwrap(),
        [("a".into(), 2), ("c".into(), 1), ("b".into(), 3)]
    );
    assert_eq!(d.values().unwrap(), [2, 1, 3]);
    assert_eq!(d.popitem().unwrap(), Some(("b".into(), 3)));
    assert_eq!(d.keys().unwrap(), ["a", "c"]);
    // A value set again while iterating is no change of size...
    let mut seen = Vec::new();
    for k in d.iter() {
        let k = k.unwrap();
        d.set(&"a".into(), &5).unwrap();
        seen.push(k);
    }
    assert_eq!(seen, ["a", "c"]);
    // ...a key added is.
    let mut keys = d.iter();
    assert_eq!(keys.next().unwrap().unwrap(), "a");
    d.set(&"new".into(), &0).unwrap();
    // The first page was fetched whole; the change shows at the next page.
    let rest: Vec<_> = keys.collect();
    assert!(
        matches!(rest.last(), Some(Err(ManagerError::ChangedDuringIteration))),
        "{rest:?}"
    );
    let empty = manager.dict::<String, i64>().unwrap();
    assert_eq!(empty.popitem().unwrap(), None);
    // Many pages, in order, keys and items alike.
    let big = manager.dict::<u32, u32>().unwrap();
    let order: Vec<u32> = (0..5_000u32).map(|i| (i * 7_919) % 5_000).collect();
    big.update(order.iter().map(|k| (k, k))).unwrap();
    let keys: Vec<u32> = big.iter().map(Result::unwrap).collect();
    assert_eq!(keys, order);
    let items: Vec<(u32, u32)> = big.iter_items().map(Result::unwrap).collect();
    assert_eq!(items.len(), 5_000);
    assert!(items.iter().zip(&order).all(|((k, v), o)| k == o && v == o));
}

/// Adds one key to the dict it is given.
fn add_a_key(d: Dict<u32, u32>) -> Result<(), String> {
    d.set(&1_000_000, &0).map_err(err)
}

/// A key added by another process between two pages ends the iteration
/// with `ChangedDuringIteration`; a new iteration sees the key.
fn iterating_a_dict_sees_a_change_by_another_process() {
    let manager = Manager::start().unwrap();
    let d = manager.dict::<u32, u32>().unwrap();
    let keys: Vec<u32> = (0..3_000).collect();
    d.update(keys.iter().map(|k| (k, k))).unwrap();
    let mut it = d.iter();
    assert_eq!(it.next().unwrap().unwrap(), 0);
    let mut child = Process::new(add_a_key, d.clone());
    child.start().unwrap();
    assert_eq!(child.join().unwrap(), Ok(()));
    let rest: Vec<_> = it.collect();
    let taken = rest.iter().filter(|r| r.is_ok()).count();
    assert_eq!(taken, 1_023, "the rest of the first page, then the change");
    assert!(matches!(
        rest.last(),
        Some(Err(ManagerError::ChangedDuringIteration))
    ));
    assert_eq!(d.iter().count(), 3_001);
}

/// Adds its members to the set.
fn add_members(
    (s, members): (outlast_ipc::manager::Set<String>, Vec<String>),
) -> Result<(), String> {
    for m in &members {
        s.add(m).map_err(err)?;
    }
    Ok(())
}

/// Python 3.14's `manager.set()`: `add` (twice is once), `discard`,
/// `remove` of a missing member (`KeyError` there, `NotFound` here), `in`,
/// `len`, `pop` (here the member added last), `update`,
/// `difference_update`, iteration; members added by other processes.
fn a_set_has_pythons_set_methods_across_processes() {
    let manager = Manager::start().unwrap();
    let s = manager.set::<String>().unwrap();
    let groups: Vec<Vec<String>> = vec![
        vec!["a".into(), "b".into(), "c".into()],
        vec!["c".into(), "d".into(), "a".into()],
    ];
    for outcome in tests::run_children(add_members, groups.into_iter().map(|g| (s.clone(), g))) {
        assert_eq!(outcome, Ok(()));
    }
    assert_eq!(s.len().unwrap(), 4, "a member added twice is there once");
    let mut members = s.members().unwrap();
    members.sort();
    assert_eq!(members, ["a", "b", "c", "d"]);
    assert!(s.contains(&"d".into()).unwrap());
    assert!(s.discard(&"d".into()).unwrap());
    assert!(!s.discard(&"d".into()).unwrap());
    assert!(matches!(s.remove(&"d".into()), Err(ManagerError::NotFound)));
    s.update(&["x".to_string(), "y".to_string()]).unwrap();
    assert_eq!(s.pop().unwrap(), Some("y".to_string()));
    s.difference_update(&["a".to_string(), "zzz".to_string()])
        .unwrap();
    let mut left: Vec<String> = s.iter().map(Result::unwrap).collect();
    left.sort();
    assert_eq!(left, ["b", "c", "x"]);
    // {b, c, x} ^= {x, q, q}: {b, c, q}; &= {b, q, zzz}: {b, q}.
    let names = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    s.symmetric_difference_update(&names(&["x", "q", "q"]))
        .unwrap();
    let mut now = s.members().unwrap();
    now.sort();
    assert_eq!(now, ["b", "c", "q"]);
    s.intersection_update(&names(&["b", "q", "zzz"])).unwrap();
    let mut now = s.members().unwrap();
    now.sort();
    assert_eq!(now, ["b", "q"]);
    assert!(s.is_superset(&names(&["q"])).unwrap());
    assert!(!s.is_superset(&names(&["q", "zzz"])).unwrap());
    assert!(s.is_disjoint(&names(&["zzz", "a"])).unwrap());
    assert!(!s.is_disjoint(&names(&["b"])).unwrap());
    s.clear().unwrap();
    assert!(s.is_empty().unwrap());
    assert_eq!(s.pop().unwrap(), None);
    // A dict's name is not a set's.
    let _named = manager
        .open::<outlast_ipc::manager::Set<u8>>("tags")
        .unwrap();
    assert!(matches!(
        manager.open::<Dict<u8, u8>>("tags"),
        Err(ManagerError::WrongKind(_))
    ));
}

/// Python's `d.items()` gives the proxies of nested objects among the
/// values: `entries` does, each turned into its proxy by its kind.
fn entries_give_nested_objects_as_proxies() {
    use outlast_ipc::manager::{Entry, List};
    let manager = Manager::start().unwrap();
    let d = manager.dict::<String, u32>().unwrap();
    d.set(&"a".into(), &1).unwrap();
    d.list_at::<String>(&"names".into())
        .unwrap()
        .append(&"x".into())
        .unwrap();
    d.set(&"b".into(), &2).unwrap();
    let entries = d.entries().unwrap();
    let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["a", "names", "b"]);
    let mut entries = entries.into_iter();
    assert!(matches!(entries.next(), Some((_, Entry::Value(1)))));
    let Some((_, Entry::Nested(nested))) = entries.next() else {
        panic!("no nested list");
    };
    assert!(matches!(nested.kind(), outlast_ipc::manager::Kind::List));
    let names: List<String> = nested.into_proxy().unwrap();
    assert_eq!(names.get(0).unwrap().as_deref(), Some("x"));
    // The same nested object asked for as another kind: refused.
    let again = d.entries().unwrap().into_iter().nth(1).unwrap().1;
    let Entry::Nested(again) = again else {
        panic!("no nested list");
    };
    assert!(matches!(
        again.into_proxy::<Dict<u8, u8>>(),
        Err(ManagerError::WrongKind(_))
    ));
}

/// `del ns.x` and a `Debug` that says which fields are set.
fn a_namespace_field_is_deleted_and_its_debug_names_its_fields() {
    let manager = Manager::start().unwrap();
    let ns = manager.namespace().unwrap();
    ns.set("name", &"job").unwrap();
    ns.set("count", &3i64).unwrap();
    assert_eq!(ns.fields().unwrap(), ["name", "count"]);
    let shown = format!("{ns:?}");
    assert!(shown.ends_with("{ name, count }"), "{shown}");
    assert!(ns.delete("name").unwrap());
    assert!(!ns.delete("name").unwrap(), "gone already");
    assert_eq!(ns.get::<String>("name").unwrap(), None);
    assert_eq!(ns.fields().unwrap(), ["count"]);
    let d = manager.dict::<u8, u8>().unwrap();
    assert!(format!("{d:?}").starts_with("Dict(#"), "{d:?}");
}

// ---- semaphores -------------------------------------------------------------

/// Holds the semaphore a moment, counting who is inside at once.
fn inside((sem, ns): (Semaphore, Namespace)) -> Result<(), String> {
    for _ in 0..20 {
        let held = sem.acquire().map_err(err)?;
        let now = ns.fetch_add("inside", 1).map_err(err)?;
        ns.update_with("most", Update::Max(now)).map_err(err)?;
        std::thread::sleep(Duration::from_millis(1));
        ns.fetch_add("inside", -1).map_err(err)?;
        held.release().map_err(err)?;
    }
    Ok(())
}

fn a_semaphore_of_two_lets_at_most_two_in() {
    let manager = Manager::start().unwrap();
    let sem = manager.semaphore(2).unwrap();
    let ns = manager.namespace().unwrap();
    for outcome in tests::run_children(inside, (0..4).map(|_| (sem.clone(), ns.clone()))) {
        assert_eq!(outcome, Ok(()));
    }
    let most = ns.get::<i64>("most").unwrap().unwrap();
    assert!((1..=2).contains(&most), "{most} inside at once");
    assert_eq!(ns.get::<i64>("inside").unwrap(), Some(0));
    assert_eq!(sem.value().unwrap(), 2);
}

fn take_and_hang((sem, ready): (Semaphore, Event)) {
    let held = sem.acquire();
    if held.is_ok() && ready.set().is_ok() {
        std::thread::sleep(Duration::from_secs(600));
    }
}

/// An owned semaphore (not Python's): the unit a killed process held
/// comes back, and the next taker is told.
fn an_owned_semaphore_unit_held_by_a_killed_process_comes_back() {
    let manager = Manager::start().unwrap();
    let sem = manager.owned_semaphore(1).unwrap();
    let ready = manager.event().unwrap();
    let mut child = Process::new(take_and_hang, (sem.clone(), ready.clone()));
    child.start().unwrap();
    assert!(ready.wait_timeout(PATIENCE).unwrap());
    assert!(sem.try_acquire().unwrap().is_none());
    child.kill().unwrap();
    child.join_timeout(PATIENCE).ok();
    let taken = sem
        .acquire_timeout(PATIENCE)
        .unwrap()
        .expect("the unit came back");
    assert!(taken.previous_owner_died());
}

/// Takes one unit and keeps it past its guard: a consumer counting what
/// it took, as with Python's `sem.acquire()` and no `release()`.
fn take_one_and_exit(sem: Semaphore) -> Result<(), String> {
    sem.acquire().map_err(err)?.keep();
    Ok(())
}

fn release_one(sem: Semaphore) -> Result<(), String> {
    sem.release().map_err(err)
}

fn take_one_and_hang((sem, ready): (Semaphore, Event)) {
    if let Ok(held) = sem.acquire() {
        held.keep();
        if ready.set().is_ok() {
            std::thread::sleep(Duration::from_secs(600));
        }
    }
}

/// Python's semaphore is a count with no owner: a unit taken by a process
/// that then exits stays taken; another process releases it; a unit taken
/// by a killed process stays taken too. Each count as Python's
/// `SyncManager().Semaphore(2)` gives: 2, 1, 2, 1.
fn a_semaphore_counts_across_processes_as_pythons() {
    let manager = Manager::start().unwrap();
    let sem = manager.semaphore(2).unwrap();
    assert_eq!(sem.value().unwrap(), 2);
    let mut taker = Process::new(take_one_and_exit, sem.clone());
    taker.start().unwrap();
    assert_eq!(taker.join().unwrap(), Ok(()));
    assert_eq!(
        sem.value().unwrap(),
        1,
        "the taker's exit gave nothing back"
    );
    let mut releaser = Process::new(release_one, sem.clone());
    releaser.start().unwrap();
    assert_eq!(releaser.join().unwrap(), Ok(()));
    assert_eq!(sem.value().unwrap(), 2, "another process released it");
    let ready = manager.event().unwrap();
    let mut killed = Process::new(take_one_and_hang, (sem.clone(), ready.clone()));
    killed.start().unwrap();
    assert!(ready.wait_timeout(PATIENCE).unwrap());
    killed.kill().unwrap();
    killed.join_timeout(PATIENCE).ok();
    // Its connection is closed once the server has seen the death; the
    // count does not move either way.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(sem.value().unwrap(), 1, "a killed taker's unit stays taken");
}

fn a_bounded_semaphore_refuses_a_release_too_many() {
    let manager = Manager::start().unwrap();
    let sem = manager.bounded_semaphore(1).unwrap();
    assert!(matches!(sem.release(), Err(ManagerError::Server(_))));
    let held = sem.try_acquire().unwrap();
    assert!(held.is_some());
    assert!(sem.try_acquire().unwrap().is_none());
    drop(held);
    assert!(matches!(sem.release(), Err(ManagerError::Server(_))));
    // An unbounded one just grows.
    let open = manager.semaphore(0).unwrap();
    open.release().unwrap();
    assert_eq!(open.value().unwrap(), 1);
}

// ---- conditions and events ----------------------------------------------------

/// Waits under the condition until the namespace's `ready` is set.
fn wait_ready((cond, ns): (Condition, Namespace)) -> Result<i64, String> {
    let held = cond.acquire().map_err(err)?;
    let ready = || ns.get::<i64>("ready").ok().flatten().is_some();
    if !cond.wait_for(ready, Some(PATIENCE)).map_err(err)? {
        return Err("never ready".into());
    }
    let value = ns.get::<i64>("ready").map_err(err)?.unwrap_or(-1);
    held.release().map_err(err)?;
    Ok(value)
}

fn a_condition_wakes_its_waiter_and_times_out_without_notify() {
    let manager = Manager::start().unwrap();
    let cond = manager.condition().unwrap();
    let ns = manager.namespace().unwrap();
    let mut children: Vec<_> = (0..2)
        .map(|_| Process::new(wait_ready, (cond.clone(), ns.clone())))
        .collect();
    for c in &mut children {
        c.start().unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    {
        let _held = cond.acquire().unwrap();
        ns.set("ready", &7i64).unwrap();
        cond.notify_all().unwrap();
    }
    for c in &mut children {
        assert_eq!(c.join().unwrap(), Ok(7));
    }
    // No notify: false, with the lock held again (reentrant: twice).
    let outer = cond.acquire().unwrap();
    let inner = cond.acquire().unwrap();
    assert!(!cond.wait_timeout(Duration::from_millis(30)).unwrap());
    inner.release().unwrap();
    outer.release().unwrap();
    assert!(matches!(cond.release(), Err(ManagerError::Server(_))));
    // Waiting or notifying without the lock is an error, as in Python.
    assert!(matches!(cond.notify(1), Err(ManagerError::Server(_))));
    assert!(matches!(
        cond.wait_timeout(Duration::from_millis(1)),
        Err(ManagerError::Server(_))
    ));
}

fn hold_condition((cond, ready): (Condition, Event)) {
    let held = cond.acquire();
    if held.is_ok() && ready.set().is_ok() {
        std::thread::sleep(Duration::from_secs(600));
    }
}

fn a_condition_holder_killed_frees_its_lock() {
    let manager = Manager::start().unwrap();
    let cond = manager.condition().unwrap();
    let ready = manager.event().unwrap();
    let mut child = Process::new(hold_condition, (cond.clone(), ready.clone()));
    child.start().unwrap();
    assert!(ready.wait_timeout(PATIENCE).unwrap());
    assert!(cond.try_acquire().unwrap().is_none());
    child.kill().unwrap();
    let taken = cond.acquire_timeout(PATIENCE).unwrap().expect("freed");
    assert!(taken.previous_owner_died());
}

fn wait_event(event: Event) -> Result<bool, String> {
    event.wait_timeout(PATIENCE).map_err(err)
}

fn an_event_wakes_waiters_in_other_processes() {
    let manager = Manager::start().unwrap();
    let event = manager.event().unwrap();
    assert!(!event.is_set().unwrap());
    assert!(!event.wait_timeout(Duration::from_millis(20)).unwrap());
    let mut children: Vec<_> = [StartMethod::Fork, StartMethod::Spawn]
        .into_iter()
        .map(|m| Process::new(wait_event, event.clone()).start_method(m))
        .collect();
    for c in &mut children {
        c.start().unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    event.set().unwrap();
    for c in &mut children {
        assert_eq!(c.join().unwrap(), Ok(true));
    }
    assert!(event.is_set().unwrap());
    event.clear().unwrap();
    assert!(!event.is_set().unwrap());
}

// ---- barriers ---------------------------------------------------------------

fn pass_barrier(barrier: Barrier) -> Result<u64, String> {
    barrier.wait_timeout(PATIENCE).map_err(err)
}

fn a_barrier_lets_three_through_with_distinct_indices() {
    let manager = Manager::start().unwrap();
    let barrier = manager.barrier(3).unwrap();
    assert_eq!(barrier.parties().unwrap(), 3);
    let mut children: Vec<_> = (0..2)
        .map(|_| Process::new(pass_barrier, barrier.clone()))
        .collect();
    for c in &mut children {
        c.start().unwrap();
    }
    let mut indices = vec![barrier.wait_timeout(PATIENCE).unwrap()];
    for c in &mut children {
        indices.push(c.join().unwrap().unwrap());
    }
    indices.sort();
    assert_eq!(indices, [0, 1, 2]);
    assert!(!barrier.broken().unwrap());
}

fn wait_at_barrier(barrier: Barrier) -> String {
    match barrier.wait() {
        Ok(i) => format!("passed {i}"),
        Err(ManagerError::BrokenBarrier) => "broken".into(),
        Err(e) => e.to_string(),
    }
}

fn a_barrier_party_killed_while_waiting_breaks_it_for_the_others() {
    let manager = Manager::start().unwrap();
    let barrier = manager.barrier(3).unwrap();
    let mut doomed = Process::new(wait_at_barrier, barrier.clone());
    let mut other = Process::new(wait_at_barrier, barrier.clone());
    doomed.start().unwrap();
    other.start().unwrap();
    let started = std::time::Instant::now();
    while barrier.n_waiting().unwrap() < 2 {
        assert!(started.elapsed() < PATIENCE, "the parties never arrived");
        std::thread::sleep(Duration::from_millis(2));
    }
    doomed.kill().unwrap();
    // The survivor is told, instead of waiting for a party that cannot come.
    assert_eq!(other.join().unwrap(), "broken");
    assert!(barrier.broken().unwrap());
    assert!(matches!(barrier.wait(), Err(ManagerError::BrokenBarrier)));
    barrier.reset().unwrap();
    assert!(!barrier.broken().unwrap());
}

fn a_barrier_wait_that_times_out_breaks_it() {
    let manager = Manager::start().unwrap();
    let barrier = manager.barrier(2).unwrap();
    assert!(matches!(
        barrier.wait_timeout(Duration::from_millis(20)),
        Err(ManagerError::BrokenBarrier)
    ));
    assert!(barrier.broken().unwrap());
    barrier.reset().unwrap();
    barrier.abort().unwrap();
    assert!(matches!(
        barrier.wait_timeout(PATIENCE),
        Err(ManagerError::BrokenBarrier)
    ));
}

// ---- queues -----------------------------------------------------------------

fn produce(q: Queue<(u32, String)>) -> Result<(), String> {
    for i in 0..1000 {
        q.put(&(i, format!("item {i}"))).map_err(err)?;
    }
    Ok(())
}

fn a_queue_carries_items_in_order_between_processes() {
    let manager = Manager::start().unwrap();
    let q = manager.queue::<(u32, String)>().unwrap();
    let mut producer = Process::new(produce, q.clone()).start_method(StartMethod::Spawn);
    producer.start().unwrap();
    for i in 0..1000 {
        assert_eq!(q.get().unwrap(), (i, format!("item {i}")));
    }
    assert_eq!(producer.join().unwrap(), Ok(()));
    assert!(q.is_empty().unwrap());
    assert_eq!(q.try_get().unwrap(), None);
}

fn fill_later((q, n): (Queue<u32>, u32)) {
    std::thread::sleep(Duration::from_millis(50));
    for i in 0..n {
        let _ = q.put(&i);
    }
}

fn a_bounded_queue_is_full_and_an_empty_one_times_out() {
    let manager = Manager::start().unwrap();
    let q = manager.bounded_queue::<u32>(2).unwrap();
    q.put(&1).unwrap();
    q.put(&2).unwrap();
    assert!(q.is_full().unwrap());
    assert!(!q.put_timeout(&3, Duration::from_millis(20)).unwrap());
    assert_eq!(q.len().unwrap(), 2);
    assert_eq!(q.get().unwrap(), 1);
    assert!(q.put_timeout(&3, Duration::ZERO).unwrap());
    assert_eq!(q.get().unwrap(), 2);
    assert_eq!(q.get().unwrap(), 3);
    assert_eq!(q.get_timeout(Duration::from_millis(20)).unwrap(), None);
    // A get that waits is answered by a put from another process.
    let mut child = Process::new(fill_later, (q.clone(), 1));
    child.start().unwrap();
    assert_eq!(q.get_timeout(PATIENCE).unwrap(), Some(0));
    child.join().unwrap();
}

fn work_off(q: JoinableQueue<u64>) -> Result<u64, String> {
    let mut sum = 0;
    while let Some(n) = q.get_timeout(Duration::from_millis(200)).map_err(err)? {
        sum += n;
        q.task_done().map_err(err)?;
    }
    Ok(sum)
}

fn a_joinable_queue_joins_when_every_item_is_done() {
    let manager = Manager::start().unwrap();
    let q = manager.joinable_queue::<u64>().unwrap();
    assert!(q.join_timeout(Duration::ZERO).unwrap());
    for n in 1..=100 {
        q.put(&n).unwrap();
    }
    assert!(!q.join_timeout(Duration::from_millis(10)).unwrap());
    let mut workers: Vec<_> = (0..2).map(|_| Process::new(work_off, q.clone())).collect();
    for w in &mut workers {
        w.start().unwrap();
    }
    assert!(q.join_timeout(PATIENCE).unwrap());
    let total: u64 = workers.iter_mut().map(|w| w.join().unwrap().unwrap()).sum();
    assert_eq!(total, 5050);
    assert!(matches!(q.task_done(), Err(ManagerError::Server(_))));
}

/// Takes `n` items, then dies by `SIGKILL` before marking any done.
fn take_then_die((q, n): (JoinableQueue<u64>, usize)) {
    for _ in 0..n {
        let _ = q.get();
    }
    // SAFETY: signals this very process.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}

/// A consumer killed with two items in hand: Python's `join` waits for
/// them forever. The manager's waits for the three others, then says so
/// once (they count as done), and the next `join` returns at once.
fn a_joinable_queues_join_reports_what_a_killed_consumer_held() {
    let manager = Manager::start().unwrap();
    let q = manager.joinable_queue::<u64>().unwrap();
    for n in 1..=5 {
        q.put(&n).unwrap();
    }
    let mut killed = Process::new(take_then_die, (q.clone(), 2));
    killed.start().unwrap();
    assert!(killed.join().is_err(), "it was killed");
    // The other three are not done yet: join keeps waiting for them.
    assert!(!q.join_timeout(Duration::from_millis(200)).unwrap());
    let mut worker = Process::new(work_off, q.clone());
    worker.start().unwrap();
    match q.join_timeout(PATIENCE) {
        Err(ManagerError::Server(why)) => assert!(
            why.starts_with("2 item(s) taken from the queue will never be marked done"),
            "{why}"
        ),
        other => panic!("expected the lost items, got {other:?}"),
    }
    assert_eq!(worker.join().unwrap(), Ok(3 + 4 + 5));
    assert!(q.join_timeout(Duration::ZERO).unwrap(), "reported once");
}

fn block_on_get((q, ready): (Queue<u32>, Event)) -> String {
    // Connected (and counted) before the manager is killed.
    if let Err(e) = ready.set() {
        return e.to_string();
    }
    match q.get() {
        Ok(n) => format!("got {n}"),
        Err(ManagerError::Disconnected) => "disconnected".into(),
        Err(e) => e.to_string(),
    }
}

fn a_consumer_blocked_on_a_killed_manager_is_disconnected() {
    let manager = Manager::start().unwrap();
    let q = manager.queue::<u32>().unwrap();
    let ready = manager.event().unwrap();
    let mut child = Process::new(block_on_get, (q.clone(), ready.clone()));
    child.start().unwrap();
    assert!(ready.wait_timeout(PATIENCE).unwrap());
    std::thread::sleep(Duration::from_millis(100));
    let pid = manager.pid().unwrap() as i32;
    // SAFETY: kill has no memory arguments.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(child.join().unwrap(), "disconnected");
}

// ---- values, arrays, atomic updates ------------------------------------------

fn bump((v, a): (Value<i64>, Array<u32>)) -> Result<(), String> {
    for _ in 0..500 {
        v.fetch_add(1).map_err(err)?;
    }
    let me = outlast_ipc::current_process().pid % 4;
    a.set(u64::from(me), &me).map_err(err)
}

fn a_value_and_an_array_are_shared() {
    let manager = Manager::start().unwrap();
    let v = manager.value(&0i64).unwrap();
    let a = manager.array(&[9u32; 4]).unwrap();
    for outcome in tests::run_children(bump, (0..4).map(|_| (v.clone(), a.clone()))) {
        assert_eq!(outcome, Ok(()));
    }
    assert_eq!(v.get().unwrap(), 2000);
    assert!(v.compare_and_set(&2000, &5).unwrap());
    assert!(!v.compare_and_set(&2000, &6).unwrap());
    assert_eq!(v.update_with(Update::Mul(3)).unwrap(), 15);
    assert_eq!(a.len().unwrap(), 4);
    assert_eq!(a.get(4).unwrap(), None);
    assert!(matches!(a.set(4, &1), Err(ManagerError::Server(_))));
    let text = manager.value(&"hello".to_string()).unwrap();
    text.set(&"world".into()).unwrap();
    assert_eq!(text.get().unwrap(), "world");
}

/// Increments `d["n"]` by compare-and-set: read, then swap only if unchanged.
fn cas_increments(d: Dict<String, u64>) -> Result<u64, String> {
    let key = "n".to_string();
    let mut retries = 0;
    for _ in 0..500 {
        loop {
            let now = d.get(&key).map_err(err)?;
            let next = now.unwrap_or(0) + 1;
            if d.compare_and_set(&key, now.as_ref(), Some(&next))
                .map_err(err)?
            {
                break;
            }
            retries += 1;
        }
    }
    Ok(retries)
}

fn compare_and_set_from_four_processes_counts_exactly() {
    let manager = Manager::start().unwrap();
    let d = manager.dict::<String, u64>().unwrap();
    let mut children: Vec<_> = (0..4)
        .map(|_| Process::new(cas_increments, d.clone()))
        .collect();
    for c in &mut children {
        c.start().unwrap();
    }
    for c in &mut children {
        assert!(c.join().unwrap().is_ok());
    }
    assert_eq!(d.get(&"n".into()).unwrap(), Some(2000));
    // Absent to present, present to absent.
    assert!(d.compare_and_set(&"m".into(), None, Some(&1)).unwrap());
    assert!(!d.compare_and_set(&"m".into(), None, Some(&2)).unwrap());
    assert!(d.compare_and_set(&"m".into(), Some(&1), None).unwrap());
    assert!(!d.contains(&"m".into()).unwrap());
}

fn update_with_setdefault_and_values() {
    let manager = Manager::start().unwrap();
    let d = manager.dict::<String, i64>().unwrap();
    assert_eq!(d.setdefault(&"a".into(), &5).unwrap(), 5);
    assert_eq!(d.setdefault(&"a".into(), &9).unwrap(), 5);
    assert_eq!(d.update_with(&"a".into(), Update::Add(10)).unwrap(), 15);
    assert_eq!(d.update_with(&"a".into(), Update::Min(3)).unwrap(), 3);
    assert_eq!(d.update_with(&"b".into(), Update::Sub(2)).unwrap(), -2);
    assert_eq!(d.values().unwrap(), [3, -2]);
    let text = manager.dict::<String, String>().unwrap();
    text.set(&"t".into(), &"not a number".into()).unwrap();
    assert!(matches!(
        text.fetch_add(&"t".into(), 1),
        Err(ManagerError::Server(_))
    ));
}

fn append_to_nested(d: Dict<String, u8>) -> Result<(), String> {
    let list = d.list_at::<u32>(&"shared".into()).map_err(err)?;
    for i in 0..100 {
        list.append(&i).map_err(err)?;
    }
    Ok(())
}

fn a_nested_list_sees_every_process_append() {
    let manager = Manager::start().unwrap();
    let d = manager.dict::<String, u8>().unwrap();
    for outcome in tests::run_children(append_to_nested, (0..3).map(|_| d.clone())) {
        assert_eq!(outcome, Ok(()));
    }
    let list = d.list_at::<u32>(&"shared".into()).unwrap();
    assert_eq!(list.len().unwrap(), 300);
    assert_eq!(list.count(&7).unwrap(), 3);
    // The key holds an object, not a value; it is listed as a key.
    assert!(matches!(
        d.get(&"shared".into()),
        Err(ManagerError::Server(_))
    ));
    assert_eq!(d.keys().unwrap(), ["shared"]);
    // Another kind of object at that key is refused; a dict nests too.
    assert!(d.dict_at::<u8, u8>(&"shared".into()).is_err());
    let inner = d.dict_at::<String, u32>(&"inner".into()).unwrap();
    inner.set(&"x".into(), &1).unwrap();
    assert_eq!(
        d.dict_at::<String, u32>(&"inner".into())
            .unwrap()
            .get(&"x".into())
            .unwrap(),
        Some(1)
    );
}

fn append_many(list: List<i32>) -> Result<(), String> {
    for i in 0..300 {
        list.append(&(1000 + i)).map_err(err)?;
    }
    Ok(())
}

fn sort_is_atomic_beside_appends() {
    let manager = Manager::start().unwrap();
    let list = manager.list::<i32>().unwrap();
    list.extend(&[5, 3, 9, 1]).unwrap();
    list.sort().unwrap();
    assert_eq!(list.to_vec().unwrap(), [1, 3, 5, 9]);
    list.sort_by_key(|n| -n).unwrap();
    assert_eq!(list.to_vec().unwrap(), [9, 5, 3, 1]);
    let mut child = Process::new(append_many, list.clone());
    child.start().unwrap();
    for _ in 0..20 {
        list.sort().unwrap();
    }
    assert_eq!(child.join().unwrap(), Ok(()));
    // Nothing an append added was lost to a sort's swap.
    assert_eq!(list.len().unwrap(), 304);
    list.sort().unwrap();
    let items = list.to_vec().unwrap();
    assert!(items.windows(2).all(|w| w[0] <= w[1]));
}

fn named_objects_are_shared_and_kinds_checked() {
    let manager = Manager::start().unwrap();
    let a = manager.open::<Queue<String>>("jobs").unwrap();
    let b = manager.open::<Queue<String>>("jobs").unwrap();
    a.put(&"one".into()).unwrap();
    assert_eq!(b.get().unwrap(), "one");
    assert!(matches!(
        manager.open::<Dict<String, u8>>("jobs"),
        Err(ManagerError::WrongKind(_))
    ));
    let slots = |value| outlast_ipc::manager::Kind::Semaphore {
        value,
        bounded: true,
        owned: false,
    };
    let sem = manager.open_as::<Semaphore>("slots", slots(3)).unwrap();
    assert_eq!(sem.value().unwrap(), 3);
    // Opened exactly with another size: an error, not the first one
    // silently; with the same parameters, or by name alone, the same one.
    match manager.open_as::<Semaphore>("slots", slots(9)) {
        Err(ManagerError::WrongKind(why)) => assert!(why.contains("slots"), "{why}"),
        other => panic!("another size gave {:?}", other.map(|_| ())),
    }
    sem.acquire().unwrap().keep();
    let same = manager.open_as::<Semaphore>("slots", slots(3)).unwrap();
    assert_eq!(same.value().unwrap(), 2);
    let by_name = manager.open::<Semaphore>("slots").unwrap();
    assert_eq!(by_name.value().unwrap(), 2);
}

fn a_batch_refuses_an_operation_that_waits() {
    use outlast_ipc::manager::{Kind, Op, Reply, Request};
    let manager = Manager::start().unwrap();
    // Through the wire protocol, as a hand-made client would send it.
    let address = manager.address().parse().unwrap();
    let mut conn = outlast_ipc::net::connect(&address, manager.authkey()).unwrap();
    conn.send(&Request::Create(Kind::Lock)).unwrap();
    let Reply::Created(id) = conn.recv::<Reply>().unwrap() else {
        panic!("no lock made");
    };
    let waits = Request::On {
        id,
        op: Op::Acquire { wait_ms: None },
    };
    let tries = Request::On {
        id,
        op: Op::Acquire { wait_ms: Some(0) },
    };
    conn.send(&Request::Batch(vec![waits, tries.clone(), tries]))
        .unwrap();
    let Reply::Batch(replies) = conn.recv::<Reply>().unwrap() else {
        panic!("no batch reply");
    };
    assert!(matches!(replies[0], Reply::Error(_)));
    assert_eq!(replies[1], Reply::Acquired { owner_died: false });
    assert_eq!(replies[2], Reply::Bool(false));
    // A wrong key is refused.
    assert!(outlast_ipc::net::connect(&address, b"not the key").is_err());
}

/// A local client's requests and replies go through shared-memory rings;
/// what does not fit them (here 1 MiB each way) goes over the socket.
fn values_larger_than_the_lane_travel_on_the_socket() {
    let manager = Manager::start().unwrap();
    let d = manager.dict::<u32, Vec<u8>>().unwrap();
    let big = vec![7u8; 1 << 20];
    let small = vec![1u8; 100 << 10];
    d.set(&1, &big).unwrap();
    d.set(&2, &small).unwrap();
    for _ in 0..3 {
        assert_eq!(d.get(&1).unwrap().as_deref(), Some(&big[..]));
        assert_eq!(d.get(&2).unwrap().as_deref(), Some(&small[..]));
    }
    assert_eq!(d.items().unwrap().len(), 2);
    assert_eq!(d.len().unwrap(), 2);
}

/// A dict's 64 MiB value is sent from where the server keeps it: each get
/// touches one fresh 64 MiB on the server (the reply's frame), not three
/// (a copy of the value to reply with, an encoding of the reply for the
/// lane it does not fit, and another for the socket); a list's items
/// likewise; and a client's set encodes the value once. Counted in page
/// faults, so it holds however loaded the machine is.
fn a_large_value_is_sent_from_where_the_server_keeps_it() {
    const LEN: usize = 64 << 20;
    let manager = Manager::start().unwrap();
    let server = manager.pid().expect("a local manager has a pid");
    let d = manager.dict::<u32, Vec<u8>>().unwrap();
    d.set(&1, &vec![7u8; LEN]).unwrap();
    let read = |d: &Dict<u32, Vec<u8>>| {
        let value = d.get(&1).unwrap().expect("the value");
        assert!(value.len() == LEN && value.iter().all(|&b| b == 7));
    };
    read(&d);
    let before = tests::procfs::minor_faults(server);
    for _ in 0..4 {
        read(&d);
    }
    let touched = tests::procfs::minor_faults(server) - before;
    let pages_per_value = (LEN / 4096) as u64;
    assert!(
        touched < 4 * pages_per_value * 3 / 2,
        "4 gets touched {touched} pages on the server ({pages_per_value} a value)"
    );
    // `items()` and `pop` hand the value over the same way.
    assert_eq!(d.items().unwrap()[0].1.len(), LEN);
    assert_eq!(d.pop(&1).unwrap().map(|v| v.len()), Some(LEN));

    // A list's item likewise, and an append moves it in: the request
    // is received (one fresh 64 MiB) and decoded (another), not copied
    // a third time to be kept.
    let l = manager.list::<Vec<u8>>().unwrap();
    let before = tests::procfs::minor_faults(server);
    for _ in 0..2 {
        l.append(&vec![7u8; LEN]).unwrap();
    }
    let touched = tests::procfs::minor_faults(server) - before;
    assert!(
        touched < 2 * pages_per_value * 5 / 2,
        "2 appends touched {touched} pages on the server ({pages_per_value} an item)"
    );
    let before = tests::procfs::minor_faults(server);
    for _ in 0..4 {
        let items = l.to_vec().unwrap();
        assert!(items.len() == 2 && items.iter().all(|v| v.len() == LEN));
    }
    let touched = tests::procfs::minor_faults(server) - before;
    assert!(
        touched < 8 * pages_per_value * 3 / 2,
        "4 reads of 2 items touched {touched} pages on the server ({pages_per_value} an item)"
    );

    // The client sends a value as encoded, behind its request's first
    // bytes: one fresh 64 MiB a set (the encoding), not two.
    let value = vec![7u8; LEN];
    let me = std::process::id();
    let before = tests::procfs::minor_faults(me);
    for _ in 0..4 {
        d.set(&2, &value).unwrap();
    }
    let touched = tests::procfs::minor_faults(me) - before;
    assert!(
        touched < 4 * pages_per_value * 3 / 2,
        "4 sets touched {touched} pages in the client ({pages_per_value} a value)"
    );
    assert_eq!(d.get(&2).unwrap().map(|v| v.len()), Some(LEN));
}

// ---- mixed batches ------------------------------------------------------------

/// Batches of two `fetch_add`s and an append: the two counts a batch gets
/// must be consecutive (nobody else's operation ran between them).
fn batched_steps((ns, list): (Namespace, List<i64>)) -> Result<u32, String> {
    let mut torn = 0;
    for _ in 0..200 {
        let mut batch = outlast_ipc::manager::Batch::new();
        let first = batch.fetch_add(&ns, "n", 1).map_err(err)?;
        let second = batch.fetch_add(&ns, "n", 1).map_err(err)?;
        let appended = batch.append(&list, &0).map_err(err)?;
        let replies = batch.run().map_err(err)?;
        let (a, b) = (
            replies.take(first).map_err(err)?,
            replies.take(second).map_err(err)?,
        );
        replies.take(appended).map_err(err)?;
        if b != a + 1 {
            torn += 1;
        }
    }
    Ok(torn)
}

fn a_mixed_batch_is_one_step_nobody_else_cuts_into() {
    let manager = Manager::start().unwrap();
    let ns = manager.namespace().unwrap();
    let list = manager.list::<i64>().unwrap();
    let args = (ns.clone(), list.clone());
    let mut children: Vec<_> = (0..3)
        .map(|_| Process::new(batched_steps, args.clone()))
        .collect();
    for c in &mut children {
        c.start().unwrap();
    }
    for c in &mut children {
        assert_eq!(c.join().unwrap(), Ok(0), "a batch was cut into");
    }
    assert_eq!(ns.get::<i64>("n").unwrap(), Some(1200));
    assert_eq!(list.len().unwrap(), 600);
    // An operation the server refuses is its own error; the rest stand.
    let d = manager.dict::<String, String>().unwrap();
    d.set(&"text".into(), &"x".into()).unwrap();
    let mut batch = manager.batch();
    let bad = batch.dict_fetch_add(&d, &"text".into(), 1).unwrap();
    let good = batch.set(&d, &"other".into(), &"y".into()).unwrap();
    let replies = batch.run().unwrap();
    assert!(matches!(replies.take(bad), Err(ManagerError::Server(_))));
    assert!(replies.take(good).is_ok());
    // Objects of two managers do not mix.
    let other = Manager::start().unwrap();
    let foreign = other.namespace().unwrap();
    let mut batch = manager.batch();
    batch.fetch_add(&ns, "n", 1).unwrap();
    assert!(batch.fetch_add(&foreign, "n", 1).is_err());
    assert_eq!(
        outlast_ipc::manager::Batch::new()
            .run()
            .unwrap()
            .take(first_of_nothing())
            .ok(),
        None
    );
}

/// A ticket no batch gave (reading it from an empty batch's replies is an error).
fn first_of_nothing() -> outlast_ipc::manager::Ticket<i64> {
    let manager = Manager::start().unwrap();
    let ns = manager.namespace().unwrap();
    let mut batch = outlast_ipc::manager::Batch::new();
    batch.fetch_add(&ns, "x", 1).unwrap()
}

// ---- user-registered types ---------------------------------------------------

/// A type of "the user's own": names seen, and a total.
#[derive(serde::Serialize, serde::Deserialize)]
struct Tally {
    seen: Vec<String>,
    total: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
enum TallyRequest {
    Add(String, u64),
    Report,
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
enum TallyReply {
    Added(usize),
    Report { names: Vec<String>, total: u64 },
}

impl outlast_ipc::manager::SharedType for Tally {
    const NAME: &'static str = "tally";
    type Request = TallyRequest;
    type Reply = TallyReply;
    fn handle(&mut self, request: TallyRequest) -> TallyReply {
        match request {
            TallyRequest::Add(name, n) => {
                self.seen.push(name);
                self.total += n;
                TallyReply::Added(self.seen.len())
            }
            TallyRequest::Report => TallyReply::Report {
                names: self.seen.clone(),
                total: self.total,
            },
        }
    }
}

fn add_to_tally(
    (tally, name): (outlast_ipc::manager::Shared<Tally>, String),
) -> Result<(), String> {
    for n in 1..=10 {
        tally
            .call(&TallyRequest::Add(name.clone(), n))
            .map_err(err)?;
    }
    Ok(())
}

fn a_registered_type_round_trips_in_fork_and_spawn() {
    for server_method in [StartMethod::Fork, StartMethod::Spawn] {
        let manager = Manager::builder()
            .register::<Tally>()
            .start_method(server_method)
            .start()
            .unwrap();
        let tally = manager
            .shared(&Tally {
                seen: vec!["start".into()],
                total: 0,
            })
            .unwrap();
        let mut children: Vec<_> = [("fork", StartMethod::Fork), ("spawn", StartMethod::Spawn)]
            .into_iter()
            .map(|(name, m)| {
                Process::new(add_to_tally, (tally.clone(), name.to_string())).start_method(m)
            })
            .collect();
        for c in &mut children {
            c.start().unwrap();
        }
        for c in &mut children {
            assert_eq!(c.join().unwrap(), Ok(()));
        }
        let TallyReply::Report { names, total } = tally.call(&TallyRequest::Report).unwrap() else {
            panic!("not a report");
        };
        assert_eq!(total, 110);
        assert_eq!(names.len(), 21);
        assert_eq!(names.iter().filter(|n| *n == "spawn").count(), 10);
        // Awaited: four futures of this thread add beside each other.
        let adders: Vec<tests::executor::Task<'_, Result<(), ManagerError>>> = (0..4)
            .map(|i| -> tests::executor::Task<'_, Result<(), ManagerError>> {
                let tally = &tally;
                Box::pin(async move {
                    for n in 1..=10 {
                        tally
                            .call_async(&TallyRequest::Add(format!("task {i}"), n))
                            .await?;
                    }
                    Ok(())
                })
            })
            .collect();
        let joined = tests::executor::join_all(adders, Duration::from_secs(60));
        assert!(joined.outputs.iter().all(|o| matches!(o, Some(Ok(())))));
        let report = tests::executor::block_on(
            tally.call_async(&TallyRequest::Report),
            Duration::from_secs(60),
        );
        let Some(Ok(TallyReply::Report { names, total })) = report else {
            panic!("not a report: {report:?}");
        };
        assert_eq!((total, names.len()), (110 + 4 * 55, 21 + 40));
        // Opened by name, the same object.
        let again = manager
            .open_shared(
                "t",
                &Tally {
                    seen: vec![],
                    total: 5,
                },
            )
            .unwrap();
        assert_eq!(
            again.call(&TallyRequest::Add("x".into(), 1)).unwrap(),
            TallyReply::Added(1)
        );
        let same = manager
            .open_shared(
                "t",
                &Tally {
                    seen: vec![],
                    total: 0,
                },
            )
            .unwrap();
        assert_eq!(
            same.call(&TallyRequest::Report).unwrap(),
            TallyReply::Report {
                names: vec!["x".into()],
                total: 6
            }
        );
    }
}

fn an_unregistered_type_or_a_garbage_call_is_refused() {
    use outlast_ipc::manager::{Kind, Op, Reply, Request};
    let manager = Manager::builder().register::<Tally>().start().unwrap();
    let plain = Manager::start().unwrap();
    assert!(matches!(
        plain.shared(&Tally {
            seen: vec![],
            total: 0
        }),
        Err(ManagerError::Server(_))
    ));
    // Bytes that are not a Tally, and a call that is not a TallyRequest:
    // errors, and the manager goes on.
    let address = manager.address().parse().unwrap();
    let mut conn = outlast_ipc::net::connect(&address, manager.authkey()).unwrap();
    conn.send(&Request::Create(Kind::User {
        type_name: "tally".into(),
        state: vec![0xff; 3],
    }))
    .unwrap();
    assert!(matches!(conn.recv::<Reply>().unwrap(), Reply::Error(_)));
    let tally = manager
        .shared(&Tally {
            seen: vec![],
            total: 0,
        })
        .unwrap();
    conn.send(&Request::Create(Kind::User {
        type_name: "tally".into(),
        state: postcard::to_allocvec(&Tally {
            seen: vec![],
            total: 0,
        })
        .unwrap(),
    }))
    .unwrap();
    let Reply::Created(id) = conn.recv::<Reply>().unwrap() else {
        panic!("not made");
    };
    conn.send(&Request::On {
        id,
        op: Op::Call(vec![9, 9, 9]),
    })
    .unwrap();
    assert!(matches!(conn.recv::<Reply>().unwrap(), Reply::Error(_)));
    assert_eq!(
        tally.call(&TallyRequest::Add("ok".into(), 2)).unwrap(),
        TallyReply::Added(1)
    );
}
