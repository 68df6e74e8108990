//! A manager's objects live as long as someone can reach them: an object
//! made anonymously goes when no live process holds a proxy to it (a
//! process SIGKILLed with proxies gives them back by dying), a nested one
//! goes with its key, a named one when it is deleted; a million made and
//! dropped leave the server's memory where the first ten thousand did.
//! Real client processes, a real server process, the wire protocol where a
//! hand-made client is the point.

use std::time::{Duration, Instant};

use outlast_ipc::manager::{Dict, Kind, Manager, ManagerError, Op, Reply, Request};
use outlast_ipc::Process;

fn main() {
    outlast_ipc::init();
    tests::harness::run(tests::cases![
        a_dict_nobody_holds_any_more_is_freed,
        a_proxy_in_a_child_keeps_the_object_after_the_parent_drops_its_own,
        a_proxy_moved_into_a_child_outlives_the_parents_next_calls,
        a_killed_process_gives_its_objects_back,
        a_thread_that_ends_takes_nothing_with_it,
        nested_objects_go_with_their_key_and_named_ones_when_deleted,
        a_million_objects_made_and_dropped_leave_the_memory_bounded,
    ]);
}

/// Until `manager` keeps `n` objects, or 20 s (the server sees a death a
/// moment after it happens).
fn settles_at(manager: &Manager, n: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = manager.object_count().unwrap();
        if now == n || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn a_dict_nobody_holds_any_more_is_freed() {
    let manager = Manager::start().unwrap();
    let base = manager.object_count().unwrap();
    let d = manager.dict::<u32, String>().unwrap();
    d.set(&1, &"x".repeat(1000)).unwrap();
    let copy = d.clone();
    assert_eq!(manager.object_count().unwrap(), base + 1);
    drop(d);
    // A clone still reaches it.
    assert_eq!(copy.get(&1).unwrap().map(|s| s.len()), Some(1000));
    assert_eq!(manager.object_count().unwrap(), base + 1);
    drop(copy);
    assert_eq!(manager.object_count().unwrap(), base, "freed");
}

/// Uses the dict it was given, then waits to be told to finish.
fn use_and_wait((d, done): (Dict<u32, u32>, outlast_ipc::manager::Event)) -> Result<u32, String> {
    d.set(&2, &3).map_err(|e| e.to_string())?;
    done.wait_timeout(Duration::from_secs(60))
        .map_err(|e| e.to_string())?;
    d.get(&2)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "the dict was freed under its user".to_string())
}

fn a_proxy_in_a_child_keeps_the_object_after_the_parent_drops_its_own() {
    let manager = Manager::start().unwrap();
    let done = manager.event().unwrap();
    let base = manager.object_count().unwrap();
    let d = manager.dict::<u32, u32>().unwrap();
    let mut child = Process::new(use_and_wait, (d.clone(), done.clone()));
    child.start().unwrap();
    // Until the child has used it (and so holds its reference).
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.get(&2).unwrap().is_none() {
        assert!(Instant::now() < deadline, "the child never used the dict");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(d);
    assert_eq!(
        manager.object_count().unwrap(),
        base + 1,
        "the child holds it"
    );
    done.set().unwrap();
    assert_eq!(child.join().unwrap(), Ok(3));
    // The child exited: its reference went with it.
    assert_eq!(settles_at(&manager, base), base);
}

/// Waits for `go`, then uses the dict it was given.
fn wait_then_use(
    (d, go): (Dict<u32, u32>, outlast_ipc::manager::Event),
) -> Result<Option<u32>, String> {
    go.wait_timeout(Duration::from_secs(60))
        .map_err(|e| e.to_string())?;
    d.set(&1, &5).map_err(|e| e.to_string())?;
    d.get(&1).map_err(|e| e.to_string())
}

/// `Process::new(f, d)` moves the parent's only proxy into the child; the
/// parent's next calls tell the manager it dropped it, before the child's
/// first call. The `Process` keeps the parent's reference until it is
/// joined, so the child finds its dict (it found "no object 1" before:
/// `supervisor bench manager` did exactly this).
fn a_proxy_moved_into_a_child_outlives_the_parents_next_calls() {
    let manager = Manager::start().unwrap();
    let go = manager.event().unwrap();
    let base = manager.object_count().unwrap();
    let d = manager.dict::<u32, u32>().unwrap();
    let mut child = Process::new(wait_then_use, (d, go.clone()));
    child.start().unwrap();
    for _ in 0..3 {
        drop(manager.dict::<u8, u8>().unwrap());
    }
    assert_eq!(
        manager.object_count().unwrap(),
        base + 1,
        "the lent dict stays"
    );
    go.set().unwrap();
    assert_eq!(child.join().unwrap(), Ok(Some(5)));
    // Joined: the parent's lent reference goes with its next call, and
    // the child's went with the child.
    assert_eq!(settles_at(&manager, base), base);
}

/// Reaches the manager at `address` with `key`, makes `n` dicts and keeps
/// them, says so, and waits to be killed.
fn make_and_hang(
    (address, key, ns, n): (String, Vec<u8>, outlast_ipc::manager::Namespace, u32),
) -> Result<(), String> {
    let address: outlast_ipc::net::Address = address.parse().map_err(|e| format!("{e}"))?;
    let manager = Manager::connect(&address, &key).map_err(|e| e.to_string())?;
    let made = (0..n)
        .map(|_| manager.dict::<u32, u32>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    ns.set("made", &(made.len() as u32))
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_secs(3600));
    drop(made);
    Ok(())
}

fn a_killed_process_gives_its_objects_back() {
    let manager = Manager::start().unwrap();
    let ns = manager.namespace().unwrap();
    let base = manager.object_count().unwrap();
    let args = (
        manager.address().to_string(),
        manager.authkey().to_vec(),
        ns.clone(),
        100,
    );
    let mut child = Process::new(make_and_hang, args);
    child.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while ns.get::<u32>("made").unwrap() != Some(100) {
        assert!(Instant::now() < deadline, "the child never made its dicts");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(manager.object_count().unwrap(), base + 100);
    child.kill().unwrap();
    let _ = child.join();
    assert_eq!(
        settles_at(&manager, base),
        base,
        "the dead child's dicts stayed"
    );
}

fn a_thread_that_ends_takes_nothing_with_it() {
    let manager = Manager::start().unwrap();
    let base = manager.object_count().unwrap();
    // A thread makes a dict on its own connection and hands it over.
    let d = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let d = manager.dict::<u32, u32>().unwrap();
                d.set(&1, &1).unwrap();
                d
            })
            .join()
            .unwrap()
    });
    // That thread's connection closed; the process, and the dict, live.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.get(&1).unwrap(), Some(1));
    assert_eq!(manager.object_count().unwrap(), base + 1);
    drop(d);
    assert_eq!(manager.object_count().unwrap(), base);
}

fn nested_objects_go_with_their_key_and_named_ones_when_deleted() {
    let manager = Manager::start().unwrap();
    let base = manager.object_count().unwrap();
    let d = manager.dict::<String, u32>().unwrap();
    let inner = d.list_at::<u32>(&"inner".into()).unwrap();
    inner.append(&1).unwrap();
    assert_eq!(manager.object_count().unwrap(), base + 2);
    // The key set to a plain value: the list it held goes.
    d.set(&"inner".into(), &7).unwrap();
    assert_eq!(manager.object_count().unwrap(), base + 1);
    assert!(matches!(inner.len(), Err(ManagerError::Server(_))));
    let again = d.dict_at::<u8, u8>(&"deep".into()).unwrap();
    again.set(&1, &1).unwrap();
    assert_eq!(manager.object_count().unwrap(), base + 2);
    // The parent freed: what is nested in it too.
    drop((d, again, inner));
    assert_eq!(manager.object_count().unwrap(), base);
    // A named object stays without proxies, until deleted.
    drop(manager.open::<Dict<u8, u8>>("kept").unwrap());
    assert_eq!(manager.object_count().unwrap(), base + 1);
    assert!(manager.delete("kept").unwrap());
    assert!(!manager.delete("kept").unwrap());
    assert_eq!(manager.object_count().unwrap(), base);
}

/// A hand-made client (the wire protocol, batches of 1,000) makes a
/// million dicts, each with a 100-byte value, and drops each batch: the
/// server's resident memory at the end is within 2x of what it was after
/// the first ten thousand.
fn a_million_objects_made_and_dropped_leave_the_memory_bounded() {
    let manager = Manager::start().unwrap();
    let server = manager.pid().unwrap();
    let address = manager.address().parse().unwrap();
    let mut conn = outlast_ipc::net::connect(&address, manager.authkey()).unwrap();
    conn.send(&Request::Owner(0x5eed)).unwrap();
    // Answered with the largest request the server takes.
    assert!(matches!(conn.recv::<Reply>().unwrap(), Reply::Len(_)));
    let mut call = |request: Request| -> Vec<Reply> {
        conn.send(&request).unwrap();
        match conn.recv::<Reply>().unwrap() {
            Reply::Batch(replies) => replies,
            other => panic!("{other:?}"),
        }
    };
    let mut after_ten_thousand = 0;
    for round in 0..1_000 {
        let made = call(Request::Batch(vec![Request::Create(Kind::Dict); 1_000]));
        let ids: Vec<u64> = made
            .into_iter()
            .map(|r| match r {
                Reply::Created(id) => id,
                other => panic!("{other:?}"),
            })
            .collect();
        let fill = ids
            .iter()
            .map(|&id| Request::On {
                id,
                op: Op::Set(vec![1], vec![7; 100]),
            })
            .collect();
        assert!(call(Request::Batch(fill)).iter().all(|r| *r == Reply::Done));
        let dropped = ids
            .iter()
            .map(|&id| Request::On { id, op: Op::DecRef })
            .collect();
        assert!(call(Request::Batch(dropped))
            .iter()
            .all(|r| *r == Reply::Done));
        if round == 9 {
            after_ten_thousand = tests::procfs::rss_kb(server);
        }
    }
    let at_the_end = tests::procfs::rss_kb(server);
    eprintln!(
        "server RSS: {after_ten_thousand} kB after 10,000 dicts, {at_the_end} kB after 1,000,000"
    );
    assert!(
        at_the_end <= 2 * after_ten_thousand,
        "{at_the_end} kB at the end against {after_ten_thousand} kB after 10,000"
    );
    assert_eq!(manager.object_count().unwrap(), 0);
}
