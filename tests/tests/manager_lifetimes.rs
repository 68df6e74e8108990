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
        managers_used_in_turn_leave_no_descriptor_behind,
        out_of_descriptors_is_said_and_passes,
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
                op: Op::Set(vec![1], vec![7; 100].into()),
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

/// This process's open descriptors.
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Lowers this process's descriptor limit to `n` (as `ulimit -n`).
fn limit_descriptors(n: u64) -> Result<(), String> {
    let limit = libc::rlimit {
        rlim_cur: n,
        rlim_max: libc::RLIM_INFINITY,
    };
    let mut old = limit;
    // SAFETY: reads this process's limit into a valid rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) } != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    let limit = libc::rlimit {
        rlim_max: old.rlim_max,
        ..limit
    };
    // SAFETY: lowers the soft limit only, below the hard one.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    Ok(())
}

/// In a process limited to 64 descriptors, starts, uses and stops
/// `count` managers one after another: the descriptors open after the
/// first and after the last, or the first failure in words.
fn use_managers_in_turn(count: u32) -> Result<(usize, usize), String> {
    limit_descriptors(64)?;
    let mut after_the_first = 0;
    for i in 0..count {
        let manager = Manager::start().map_err(|e| format!("manager {i}: {e}"))?;
        let d = manager
            .dict::<String, u64>()
            .map_err(|e| format!("manager {i}'s dict: {e}"))?;
        d.set(&"n".to_string(), &u64::from(i))
            .map_err(|e| format!("manager {i}'s set: {e}"))?;
        if d.get(&"n".to_string()).map_err(|e| e.to_string())? != Some(u64::from(i)) {
            return Err(format!("manager {i} lost its value"));
        }
        drop(d);
        drop(manager);
        if i == 0 {
            after_the_first = open_descriptors();
        }
    }
    Ok((after_the_first, open_descriptors()))
}

/// A thread's kept connection to a manager that ended is closed: before,
/// each kept its socket, its lane's two rings and a pipe, and a process
/// limited to 1,024 descriptors could not reach its 254th manager (here,
/// limited to 64, the 15th).
fn managers_used_in_turn_leave_no_descriptor_behind() {
    let mut child = Process::new(use_managers_in_turn, 100);
    child.start().unwrap();
    let (after_the_first, after_the_last) = child.join().unwrap().unwrap();
    assert_eq!(
        after_the_first, after_the_last,
        "descriptors open after the first manager and after the hundredth"
    );
}

/// With no descriptor left, a new connection to a live manager fails: what
/// it said, and whether the manager answered once descriptors were freed.
fn connect_with_no_descriptor_left(_: ()) -> Result<(String, bool), String> {
    let manager = Manager::start().map_err(|e| e.to_string())?;
    limit_descriptors(64)?;
    let before = open_descriptors();
    // Each try leaves room for a few descriptors: the socket, or the
    // socket and some of the lane's three.
    let mut said = Vec::new();
    for room in 0..4 {
        let mut files = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            files.push(f);
        }
        files.truncate(files.len().saturating_sub(room));
        // A thread of its own, so no kept connection serves the call.
        let outcome = std::thread::scope(|s| {
            s.spawn(|| manager.dict::<u32, u32>().map(drop))
                .join()
                .map_err(|_| "the thread panicked".to_string())
        })?;
        drop(files);
        match outcome {
            Err(ManagerError::Local(e)) => said.push(e.to_string()),
            other => return Err(format!("with room for {room}: {other:?}")),
        }
    }
    said.dedup();
    // Descriptors that arrived before the kernel cut the rest off are
    // closed with the failure.
    if open_descriptors() != before {
        return Err(format!(
            "{} descriptors open, {before} before",
            open_descriptors()
        ));
    }
    let answers = manager.dict::<u32, u32>().is_ok();
    Ok((said.join(" | "), answers))
}

/// Out of descriptors is said as such, not as a gone manager or a
/// garbled answer ("No buffer space available" when the lane's
/// descriptors were cut off, and those that did arrive were never closed).
fn out_of_descriptors_is_said_and_passes() {
    let mut child = Process::new(connect_with_no_descriptor_left, ());
    child.start().unwrap();
    let (said, answers) = child.join().unwrap().unwrap();
    assert_eq!(said, "Too many open files (os error 24)");
    assert!(answers, "the manager answers once descriptors are freed");
}
