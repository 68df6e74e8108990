//! `outlast_ipc::manager`: shared objects in a server process, with real client
//! processes (fork and spawn), a SIGKILLed and a SIGSTOPped manager, and
//! garbage at its socket.

use std::time::{Duration, Instant};

use outlast_ipc::manager::{Dict, List, Lock, Manager, ManagerError, Namespace, Queue as MQueue};
use outlast_ipc::{Process, StartMethod};

fn main() {
    outlast_ipc::init();
    tests::harness::run(tests::cases![
        four_processes_fetch_add_exactly_forty_thousand_fork,
        four_processes_fetch_add_exactly_forty_thousand_spawn,
        four_processes_fetch_add_exactly_forty_thousand_forkserver,
        a_dict_proxy_works_in_a_spawned_child,
        a_killed_manager_is_disconnected_for_its_clients,
        a_stopped_manager_is_a_timeout_not_a_hang,
        garbage_at_the_socket_leaves_the_manager_serving,
        four_processes_under_a_manager_lock_get_and_set_exactly,
        a_holder_killed_with_the_lock_frees_it_and_the_next_is_told,
        a_guard_released_by_a_panic_frees_the_lock_cleanly,
        lock_timeouts_and_reentrance,
        a_list_proxy_has_pythons_list_methods,
        a_batch_is_one_round_trip_of_many_operations,
        a_deeply_nested_batch_drops_its_client_not_the_server,
        announced_frames_cost_the_server_nothing_until_they_arrive,
        a_batch_larger_than_one_round_trip_is_split,
        a_reply_over_the_frame_cap_is_an_error_and_the_client_stays,
        a_request_over_the_frame_cap_is_refused_in_words_and_100_mb_fits,
        byte_vectors_larger_than_a_lane_go_there_and_back_exactly,
        large_values_travel_and_stay_in_sealed_memfds,
        a_large_value_set_over_tcp_is_sealed_where_it_lies,
        values_near_a_lanes_size_go_wherever_its_rings_stand,
        a_stopped_lock_holder_loses_the_lock_after_the_holder_timeout,
        silent_clients_filling_the_manager_make_room_for_a_new_one,
        stores_past_the_byte_budget_are_refused_and_room_comes_back,
        one_client_cannot_take_the_whole_byte_budget,
        an_idle_manager_with_three_idle_clients_uses_no_cpu,
        beside_busy_loops_every_request_is_answered_exactly,
        a_ctrl_c_leaves_the_server_to_the_program,
    ]);
}

fn add_ten_thousand(ns: Namespace) -> Result<(), String> {
    for _ in 0..10_000 {
        ns.fetch_add("count", 1).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn fetch_add_from_four(method: StartMethod) {
    // The server starts by the same method as its clients.
    let manager = Manager::start_with(method).unwrap();
    let ns = manager.namespace().unwrap();
    let mut children: Vec<_> = (0..4)
        .map(|_| Process::new(add_ten_thousand, ns.clone()).start_method(method))
        .collect();
    for c in &mut children {
        c.start().unwrap();
    }
    for c in &mut children {
        assert_eq!(c.join().unwrap(), Ok(()));
    }
    assert_eq!(ns.get::<i64>("count").unwrap(), Some(40_000));
}

fn four_processes_fetch_add_exactly_forty_thousand_fork() {
    fetch_add_from_four(StartMethod::Fork);
}

fn four_processes_fetch_add_exactly_forty_thousand_spawn() {
    fetch_add_from_four(StartMethod::Spawn);
}

fn four_processes_fetch_add_exactly_forty_thousand_forkserver() {
    fetch_add_from_four(StartMethod::ForkServer);
}

fn fill(d: Dict<String, Vec<u32>>) -> Result<u64, String> {
    for i in 0..3u32 {
        d.set(&format!("k{i}"), &vec![i; i as usize])
            .map_err(|e| e.to_string())?;
    }
    d.len().map_err(|e| e.to_string())
}

fn a_dict_proxy_works_in_a_spawned_child() {
    let manager = Manager::start().unwrap();
    let d = manager.dict::<String, Vec<u32>>().unwrap();
    let mut child = Process::new(fill, d.clone()).start_method(StartMethod::Spawn);
    child.start().unwrap();
    assert_eq!(child.join().unwrap(), Ok(3));
    assert_eq!(d.get(&"k2".into()).unwrap(), Some(vec![2, 2]));
    assert!(d.contains(&"k0".into()).unwrap());
    assert_eq!(d.keys().unwrap(), ["k0", "k1", "k2"]);
    assert_eq!(d.pop(&"k1".into()).unwrap(), Some(vec![1]));
    assert_eq!(
        d.items().unwrap(),
        [("k0".to_string(), vec![]), ("k2".to_string(), vec![2, 2])]
    );
    d.clear().unwrap();
    assert!(d.is_empty().unwrap());
}

/// Calls `ns.get` until it fails; the error, and how many calls worked.
fn call_until_it_fails(ns: Namespace) -> (String, u64) {
    let mut ok = 0;
    loop {
        match ns.get::<i64>("x") {
            Ok(_) => ok += 1,
            Err(ManagerError::Disconnected) => return ("disconnected".into(), ok),
            Err(e) => return (e.to_string(), ok),
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn a_killed_manager_is_disconnected_for_its_clients() {
    let manager = Manager::start().unwrap();
    let ns = manager.namespace().unwrap();
    ns.set("x", &1i64).unwrap();
    let mut child = Process::new(call_until_it_fails, ns.clone());
    child.start().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let pid = manager.pid().unwrap() as i32;
    // SAFETY: kill has no memory arguments.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let (error, calls) = child.join().unwrap();
    assert_eq!(error, "disconnected");
    assert!(calls > 0);
    // This process, too, and a new proxy call is no hang either.
    assert!(matches!(
        ns.get::<i64>("x"),
        Err(ManagerError::Disconnected)
    ));
}

fn a_stopped_manager_is_a_timeout_not_a_hang() {
    let manager = Manager::start().unwrap();
    let ns = manager
        .namespace()
        .unwrap()
        .with_timeout(Duration::from_millis(200));
    ns.set("x", &1i64).unwrap();
    let pid = manager.pid().unwrap() as i32;
    // SAFETY: kill has no memory arguments.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let started = Instant::now();
    assert!(matches!(ns.get::<i64>("x"), Err(ManagerError::Timeout)));
    assert!(started.elapsed() < Duration::from_secs(60));
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    // The timed-out connection was dropped; a fresh one is in step.
    assert_eq!(ns.get::<i64>("x").unwrap(), Some(1));
}

fn garbage_at_the_socket_leaves_the_manager_serving() {
    use std::io::Write;
    let manager = Manager::start().unwrap();
    let ns = manager.namespace().unwrap();
    let dir = std::fs::read_dir(std::env::var("XDG_RUNTIME_DIR").unwrap_or("/tmp".into()))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name().is_some_and(|n| {
                n.to_string_lossy()
                    .starts_with(&format!("ipc-manager-{}-", std::process::id()))
            })
        })
        .expect("the manager's directory");
    let sock = dir.join("manager.sock");
    let mut garbage = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    let _ = garbage.write_all(&[0xff; 64]);
    let _silent = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    ns.set("after", &7i64).unwrap();
    assert_eq!(ns.get::<i64>("after").unwrap(), Some(7));
}

fn locked_increments((ns, lock): (Namespace, Lock)) -> Result<(), String> {
    for _ in 0..2_500 {
        let _held = lock.acquire().map_err(|e| e.to_string())?;
        let n = ns
            .get::<i64>("count")
            .map_err(|e| e.to_string())?
            .unwrap_or(0);
        ns.set("count", &(n + 1)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn four_processes_under_a_manager_lock_get_and_set_exactly() {
    let manager = Manager::start().unwrap();
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
    assert_eq!(ns.get::<i64>("count").unwrap(), Some(10_000));
}

/// Takes the lock, says so, and waits to be killed.
fn hold_forever((lock, ns): (Lock, Namespace)) {
    let held = lock.acquire();
    if held.is_ok() {
        let _ = ns.set("held", &true);
    }
    std::thread::sleep(Duration::from_secs(3600));
    drop(held);
}

/// A child that holds `lock` (and sleeps), once it does.
fn holding(manager: &Manager, lock: &Lock) -> Process<(Lock, Namespace), ()> {
    let ns = manager.namespace().unwrap();
    let mut holder = Process::new(hold_forever, (lock.clone(), ns.clone()));
    holder.start().unwrap();
    let started = Instant::now();
    while ns.get::<bool>("held").unwrap() != Some(true) {
        assert!(started.elapsed() < Duration::from_secs(60), "never held");
        std::thread::sleep(Duration::from_millis(5));
    }
    holder
}

fn a_holder_killed_with_the_lock_frees_it_and_the_next_is_told() {
    let manager = Manager::start().unwrap();
    let lock = manager.lock().unwrap();
    let mut holder = holding(&manager, &lock);
    assert!(lock.try_acquire().unwrap().is_none(), "held by the other");
    holder.kill().unwrap();
    let _ = holder.join();
    let held = lock.acquire_timeout(Duration::from_secs(30)).unwrap();
    assert!(held.expect("freed").previous_owner_died());
    // Told once: the next holder took it from a live one.
    assert!(!lock.acquire().unwrap().previous_owner_died());
}

/// Takes the lock and panics while holding its guard.
fn panic_holding((lock, ns): (Lock, Namespace)) {
    let _held = lock.acquire().expect("the lock");
    let _ = ns.set("held", &true);
    panic!("a task that fails while it holds a manager lock");
}

/// A guard dropped as its thread unwinds releases the lock before the
/// process ends: the next taker is not told of a death (nobody died
/// holding it), and nothing waits for the server to see the exit.
fn a_guard_released_by_a_panic_frees_the_lock_cleanly() {
    let manager = Manager::start().unwrap();
    let lock = manager.lock().unwrap();
    let ns = manager.namespace().unwrap();
    let mut child = Process::new(panic_holding, (lock.clone(), ns.clone()));
    child.start().unwrap();
    assert!(child.join().is_err(), "the child panicked");
    assert_eq!(ns.get::<bool>("held").unwrap(), Some(true));
    let held = lock.acquire_timeout(Duration::from_secs(30)).unwrap();
    assert!(!held.expect("released").previous_owner_died());
}

fn hold_then_wait((lock, ns): (Lock, Namespace)) -> Option<bool> {
    let held = lock.acquire().ok()?;
    ns.set("held", &true).ok()?;
    std::thread::sleep(Duration::from_millis(300));
    held.release().ok()?;
    Some(true)
}

fn lock_timeouts_and_reentrance() {
    let manager = Manager::start().unwrap();
    let lock = manager.lock().unwrap();
    let ns = manager.namespace().unwrap();
    let mut other = Process::new(hold_then_wait, (lock.clone(), ns.clone()));
    other.start().unwrap();
    while ns.get::<bool>("held").unwrap() != Some(true) {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Busy: a short wait gives up by its deadline...
    assert!(lock
        .acquire_timeout(Duration::from_millis(20))
        .unwrap()
        .is_none());
    // ...a long one gets it once the other releases.
    let held = lock.acquire_timeout(Duration::from_secs(30)).unwrap();
    assert!(held.is_some());
    assert_eq!(other.join().unwrap(), Some(true));
    // A plain lock is not reentrant: a second take by its holder times out.
    assert!(lock.try_acquire().unwrap().is_none());
    drop(held);
    assert!(
        matches!(lock.release(), Err(ManagerError::Server(_))),
        "not held"
    );
    // The shared-memory lock's names read the same.
    let same = lock.lock().unwrap();
    assert!(lock.try_lock().unwrap().is_none());
    drop(same);
    assert!(lock.lock_timeout(Duration::from_secs(1)).unwrap().is_some());
    // Python's style: kept past the guard, released by the proxy.
    lock.acquire().unwrap().keep();
    assert!(lock.try_acquire().unwrap().is_none());
    lock.release().unwrap();
    let rlock = manager.rlock().unwrap();
    let outer = rlock.acquire().unwrap();
    let inner = rlock.acquire().unwrap();
    inner.release().unwrap();
    outer.release().unwrap();
    assert!(rlock.release().is_err());
}

fn a_list_proxy_has_pythons_list_methods() {
    let manager = Manager::start().unwrap();
    let l = manager.list::<u32>().unwrap();
    l.append(&3).unwrap();
    l.extend(&[1, 4, 1, 5]).unwrap();
    l.insert(0, &9).unwrap();
    assert_eq!(l.to_vec().unwrap(), [9, 3, 1, 4, 1, 5]);
    assert_eq!(l.get(2).unwrap(), Some(1));
    assert_eq!(l.get(99).unwrap(), None);
    l.set(0, &2).unwrap();
    assert!(l.set(99, &2).is_err());
    assert_eq!(l.slice(1..3).unwrap(), [3, 1]);
    assert_eq!(l.slice(4..100).unwrap(), [1, 5]);
    assert_eq!(l.count(&1).unwrap(), 2);
    assert_eq!(l.index(&4).unwrap(), Some(3));
    assert_eq!(l.index(&7).unwrap(), None);
    assert!(l.remove(&1).unwrap());
    assert_eq!(l.pop().unwrap(), Some(5));
    assert_eq!(l.pop_at(0).unwrap(), Some(2));
    assert_eq!(l.to_vec().unwrap(), [3, 4, 1]);
    assert_eq!(l.len().unwrap(), 3);
}

fn a_batch_is_one_round_trip_of_many_operations() {
    let manager = Manager::start().unwrap();
    let d = manager.dict::<u32, String>().unwrap();
    let items: Vec<(u32, String)> = (0..64).map(|i| (i, format!("v{i}"))).collect();
    d.update(items.iter().map(|(k, v)| (k, v))).unwrap();
    let keys: Vec<u32> = (0..70).collect();
    let got = d.get_many(&keys).unwrap();
    assert_eq!(got.len(), 70);
    assert_eq!(got[63].as_deref(), Some("v63"));
    assert_eq!(got[64], None);
    assert_eq!(d.len().unwrap(), 64);
}

/// A 40 MB value set over loopback TCP, where each frame carries a tag
/// over its whole payload, is hashed where it lies: the calling thread
/// touches the fresh pages of the value's encoding only (10,241 of them;
/// it copied the request twice more to seal it: 30,723), and the value
/// arrives whole, then a small set after it (the frames' count in step).
fn a_large_value_set_over_tcp_is_sealed_where_it_lies() {
    const LARGE: usize = 40 << 20;
    let (manager, _) = tcp_manager(b"a key of ours");
    let d = manager
        .dict::<String, serde_bytes::ByteBuf>()
        .expect("a dict");
    // A connection open already, as most of a program's are.
    d.set(&"small".into(), &serde_bytes::ByteBuf::from(vec![1]))
        .expect("a set");
    let value = serde_bytes::ByteBuf::from(vec![9u8; LARGE]);
    let before = tests::procfs::this_thread_minor_faults();
    d.set(&"large".into(), &value).expect("a large set");
    let faults = tests::procfs::this_thread_minor_faults() - before;
    let pages = (LARGE / 4096) as u64;
    // The value's encoding is one fresh copy; sealing made two more.
    assert!(
        faults < pages * 3 / 2,
        "the set touched {faults} fresh pages sending {pages}"
    );
    d.set(&"after".into(), &serde_bytes::ByteBuf::from(vec![2]))
        .expect("a set after");
    let back = d.get(&"large".into()).expect("a get").expect("the value");
    assert!(back.len() == LARGE && back.iter().all(|&b| b == 9));
    assert_eq!(d.len().expect("a len"), 3);
}

/// A manager on loopback TCP, its address and its key.
fn tcp_manager(key: &[u8]) -> (Manager, outlast_ipc::net::Address) {
    let manager = Manager::builder()
        .listen("127.0.0.1:0".parse().expect("address"))
        .authkey(key)
        .start()
        .expect("manager");
    let address = manager.address().parse().expect("its address");
    (manager, address)
}

fn alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks the process exists.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

/// The resident memory of `pid`, in kB.
/// An authenticated client sends a `Batch` nested 50,000 deep (100 KB):
/// it used to overflow the server's stack (SIGABRT). Now the frame does not
/// decode, that client is dropped, and the others are served.
fn a_deeply_nested_batch_drops_its_client_not_the_server() {
    let (manager, address) = tcp_manager(b"nested");
    let ns = manager.namespace().expect("namespace");
    ns.set("x", &1i64).expect("set");
    let pid = manager.pid().expect("pid");
    for depth in [2usize, 50_000] {
        let mut attacker = outlast_ipc::net::connect(&address, b"nested").expect("connect");
        let mut nested = [3u8, 1].repeat(depth);
        nested.extend([3, 0]);
        attacker.send_bytes(&nested).expect("send");
        // No answer, but an end: the server closed this connection.
        assert!(attacker
            .recv_bytes_timeout(Duration::from_secs(30))
            .is_err());
        assert!(alive(pid), "the manager died of a {depth}-deep batch");
        assert_eq!(ns.get::<i64>("x").expect("get"), Some(1));
    }
}

/// Sixteen authenticated clients each send only a 4-byte header announcing
/// 64 MiB: the server used to allocate 64 MiB for each at once (1 GB). Its
/// buffers grow with the bytes that arrive, so its memory stays put, and
/// it serves an honest client meanwhile.
fn announced_frames_cost_the_server_nothing_until_they_arrive() {
    use std::os::fd::AsRawFd;
    let (manager, address) = tcp_manager(b"announce");
    let ns = manager.namespace().expect("namespace");
    ns.set("x", &1i64).expect("set");
    let pid = manager.pid().expect("pid");
    let before = tests::procfs::rss_kb(pid);
    let mut silent = Vec::new();
    for _ in 0..16 {
        let conn = outlast_ipc::net::connect(&address, b"announce").expect("connect");
        let header = (64u32 << 20).to_le_bytes();
        // SAFETY: writes 4 bytes from a live array to a socket we own.
        let n = unsafe { libc::write(conn.as_raw_fd(), header.as_ptr().cast(), 4) };
        assert_eq!(n, 4);
        silent.push(conn);
    }
    // Served after all sixteen announced.
    ns.set("y", &2i64).expect("set");
    assert_eq!(ns.get::<i64>("y").expect("get"), Some(2));
    let after = tests::procfs::rss_kb(pid);
    assert!(
        after < before + 16 * 1024,
        "the server grew from {before} kB to {after} kB for 16 announced frames"
    );
}

/// `get_many` of more keys than one batch may hold goes in several round
/// trips, not as a batch the server refuses.
fn a_batch_larger_than_one_round_trip_is_split() {
    let manager = Manager::start().expect("manager");
    let d: Dict<u32, u32> = manager.dict().expect("dict");
    let keys: Vec<u32> = (0..10_000).collect();
    for &k in keys.iter().step_by(1000) {
        d.set(&k, &(k * 2)).expect("set");
    }
    let got = d.get_many(&keys).expect("get_many");
    assert_eq!(got.len(), 10_000);
    assert_eq!(got.iter().flatten().count(), 10);
    assert_eq!(got[3000], Some(6000));
}

/// A reply larger than the server's frame cap (here 1 MiB: three values of
/// 400 KB in one `items()`) is an error that says so, and the connection
/// goes on; it used to drop the client as one that "does not read its
/// replies".
fn a_reply_over_the_frame_cap_is_an_error_and_the_client_stays() {
    let options = outlast_ipc::manager::ServeOptions {
        max_frame: 1 << 20,
        ..Default::default()
    };
    let manager = with_options(options);
    let d: Dict<u8, serde_bytes::ByteBuf> = manager.dict().expect("dict");
    for k in 0..3u8 {
        d.set(&k, &serde_bytes::ByteBuf::from(vec![k; 400_000]))
            .expect("set");
    }
    match d.items() {
        Err(ManagerError::Server(why)) => {
            assert!(why.contains("over the connection's largest frame"), "{why}")
        }
        other => panic!("expected the cap's error, got {:?}", other.map(|v| v.len())),
    }
    assert_eq!(d.get(&1).expect("get").map(|v| v.len()), Some(400_000));
}

/// A process that holds a manager lock is SIGSTOPped: it used to keep the
/// lock forever (the idle timeout spared holders), and a waiter waited
/// forever. Silent past the holder timeout, it loses the lock as a dead
/// holder would, and the waiter is told so.
/// A request larger than the server takes used to close the connection
/// ("the manager is gone", and "not a request" in the server's log): the
/// client now refuses it itself, typed, and goes on. By default a 100 MB
/// value goes there and back.
fn a_request_over_the_frame_cap_is_refused_in_words_and_100_mb_fits() {
    let manager = with_options(outlast_ipc::manager::ServeOptions {
        max_frame: 1 << 20,
        ..Default::default()
    });
    let d = manager.dict::<u8, serde_bytes::ByteBuf>().unwrap();
    let big = serde_bytes::ByteBuf::from(vec![7u8; 2 << 20]);
    match d.set(&1, &big) {
        Err(ManagerError::TooLarge { len, max }) => {
            assert!(len > 2 << 20, "{len}");
            assert_eq!(max, 1 << 20);
        }
        other => panic!("a request over the cap gave {other:?}"),
    }
    let small = serde_bytes::ByteBuf::from(vec![1u8; 1000]);
    d.set(&2, &small).unwrap();
    assert_eq!(d.get(&2).unwrap(), Some(small));
    // The default cap takes a 100 MB item.
    let manager = Manager::start().unwrap();
    let d = manager.dict::<u8, serde_bytes::ByteBuf>().unwrap();
    let item = serde_bytes::ByteBuf::from(vec![9u8; 100 << 20]);
    d.set(&1, &item).unwrap();
    assert_eq!(d.get(&1).unwrap().map(|b| b.len()), Some(100 << 20));
}

/// `Vec<u8>` values past a lane's ring (copied whole, over the socket, the
/// reply's buffer kept as the value), in a dict and a list, one by one
/// and in `items()`, `values()` and `to_vec()`.
fn byte_vectors_larger_than_a_lane_go_there_and_back_exactly() {
    let manager = Manager::start().unwrap();
    let pattern = |seed: u8, len: usize| -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    };
    let d = manager.dict::<String, Vec<u8>>().unwrap();
    let values = [pattern(1, 3 << 20), Vec::new(), pattern(2, 700_000)];
    for (k, v) in values.iter().enumerate() {
        d.set(&k.to_string(), v).unwrap();
    }
    for (k, v) in values.iter().enumerate() {
        assert!(
            d.get(&k.to_string()).unwrap().as_ref() == Some(v),
            "value {k}"
        );
    }
    let items = d.items().unwrap();
    assert_eq!(items.len(), 3);
    for (k, v) in values.iter().enumerate() {
        assert!(items[k] == (k.to_string(), v.clone()), "item {k}");
    }
    assert!(d.values().unwrap() == values, "values()");
    let l = manager.list::<Vec<u8>>().unwrap();
    l.extend(values.iter()).unwrap();
    l.append(&pattern(3, 2 << 20)).unwrap();
    let all = l.to_vec().unwrap();
    assert_eq!(all.len(), 4);
    assert!(all[..3] == values, "the list's first three");
    assert!(all[3] == pattern(3, 2 << 20), "the appended one");
    assert!(l.pop().unwrap() == Some(pattern(3, 2 << 20)), "popped");
}

/// The sealed memfds `pid` holds open for large manager values.
fn sealed_values_held_by(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|link| {
                    link.to_string_lossy()
                        .starts_with("/memfd:outlast-manager-value")
                })
                .count()
        })
        .unwrap_or(0)
}

/// Where a child stores large values.
type LargeStores = (Dict<u32, Vec<u8>>, List<Vec<u8>>, MQueue<Vec<u8>>);

/// A child stores large values (a dict's, a list's, a queue's item).
fn store_large((d, l, q): LargeStores) -> Result<(), String> {
    let e = |e: ManagerError| e.to_string();
    d.set(&1, &pattern(1, 8 << 20)).map_err(e)?;
    d.set(&2, &pattern(2, 3 << 20)).map_err(e)?;
    l.append(&pattern(3, 2 << 20)).map_err(e)?;
    l.insert(0, &pattern(4, 1 << 20)).map_err(e)?;
    q.put(&pattern(5, 5 << 20)).map_err(e)?;
    Ok(())
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed ^ (i >> 12) as u8)
        .collect()
}

/// Values of a megabyte or more go beside a local client's lane in
/// sealed memfds, which the manager keeps as they are and hands to each
/// `get` (before, a 100 MB value crossed the socket both ways: set
/// 163-221 ms and get 228-245 ms, now 47-53 ms and 83-103 ms, `bench
/// async`). Stored by a child, read
/// here exactly, blocking and awaited; the server holds one memfd per
/// stored large value and lets each go when its value is replaced,
/// popped, taken or cleared. Over TCP the bytes go on the socket.
fn large_values_travel_and_stay_in_sealed_memfds() {
    let manager = Manager::start().unwrap();
    let server = manager.pid().expect("a server process");
    let d = manager.dict::<u32, Vec<u8>>().unwrap();
    let l = manager.list::<Vec<u8>>().unwrap();
    let q = manager.queue::<Vec<u8>>().unwrap();
    let mut child = Process::new(store_large, (d.clone(), l.clone(), q.clone()));
    child.start().unwrap();
    assert_eq!(child.join().unwrap(), Ok(()));
    assert_eq!(
        sealed_values_held_by(server),
        5,
        "one memfd per stored value"
    );
    assert!(d.get(&1).unwrap() == Some(pattern(1, 8 << 20)), "d[1]");
    assert!(d.get(&2).unwrap() == Some(pattern(2, 3 << 20)), "d[2]");
    assert!(l.get(0).unwrap() == Some(pattern(4, 1 << 20)), "l[0]");
    assert!(l.get(1).unwrap() == Some(pattern(3, 2 << 20)), "l[1]");
    assert!(q.get().unwrap() == pattern(5, 5 << 20), "the queue's item");
    // Replies of many values, as large: beside the lane too, whole.
    let items = d.items().unwrap();
    assert!(
        items == [(1, pattern(1, 8 << 20)), (2, pattern(2, 3 << 20))],
        "items()"
    );
    assert!(
        l.to_vec().unwrap() == [pattern(4, 1 << 20), pattern(3, 2 << 20)],
        "to_vec()"
    );
    // A small value stays in the manager's memory; a large one replaced.
    d.set(&2, &vec![7u8; 100]).unwrap();
    d.set(&1, &pattern(6, 4 << 20)).unwrap();
    assert!(
        d.get(&1).unwrap() == Some(pattern(6, 4 << 20)),
        "d[1] again"
    );
    assert_eq!(d.get(&2).unwrap(), Some(vec![7u8; 100]));
    assert_eq!(sealed_values_held_by(server), 3, "d[1], l[0], l[1]");
    // Awaited, the same way.
    let patience = Duration::from_secs(60);
    let set = tests::executor::block_on(d.set_async(&3, &pattern(8, 2 << 20)), patience);
    set.expect("in time").unwrap();
    assert_eq!(sealed_values_held_by(server), 4, "and d[3]");
    let got = tests::executor::block_on(d.get_async(&3), patience).expect("in time");
    assert!(got.unwrap() == Some(pattern(8, 2 << 20)), "d[3], awaited");
    d.set(&3, &vec![1u8; 10]).unwrap();
    l.clear().unwrap();
    assert!(d.pop(&1).unwrap() == Some(pattern(6, 4 << 20)), "popped");
    assert_eq!(sealed_values_held_by(server), 0, "all let go");
    // Over loopback TCP, the same values go on the socket.
    let (tcp, _) = tcp_manager(b"another key");
    let remote = tcp.dict::<u32, Vec<u8>>().unwrap();
    remote.set(&1, &pattern(7, 2 << 20)).unwrap();
    assert!(
        remote.get(&1).unwrap() == Some(pattern(7, 2 << 20)),
        "over TCP"
    );
    assert_eq!(sealed_values_held_by(tcp.pid().expect("a server")), 0);
}

/// Values a little under or over half a lane's ring (256 KiB), after
/// others that leave its rings anywhere: before, a 200 KB `set` after a
/// 100 KB one waited for good for room its ring could never give, and a
/// reply in the same spot dropped the client as one that "does not read
/// its replies". Each value comes back exactly, in the same connection.
fn values_near_a_lanes_size_go_wherever_its_rings_stand() {
    let manager = Manager::start().unwrap();
    let d = manager.dict::<u32, Vec<u8>>().unwrap();
    let sizes = [
        100_000, 200_000, 150_000, 250_000, 10, 240_000, 131_000, 127_000, 129_000, 60_000,
        131_072, 262_000, 90_000,
    ];
    for round in 0..3u32 {
        for (i, &len) in sizes.iter().enumerate() {
            let key = round * 100 + i as u32;
            let value: Vec<u8> = (0..len).map(|b| (b as u32 ^ key) as u8).collect();
            d.set(&key, &value).unwrap();
            assert!(d.get(&key).unwrap() == Some(value), "value {key} ({len} B)");
        }
    }
    assert_eq!(d.len().unwrap(), 3 * sizes.len() as u64);
}

fn a_stopped_lock_holder_loses_the_lock_after_the_holder_timeout() {
    let options = outlast_ipc::manager::ServeOptions {
        holder_timeout: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let manager = with_options(options);
    let lock = manager.lock().unwrap();
    let mut holder = holding(&manager, &lock);
    let pid = holder.pid().unwrap() as i32;
    // SAFETY: kill has no memory arguments.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    // A waiter: the lock comes to it, told that its holder "died".
    let got = lock.acquire_timeout(Duration::from_secs(60)).unwrap();
    assert!(got.expect("handed on").previous_owner_died());
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    holder.kill().unwrap();
    let _ = holder.join();
}

/// Authenticated clients that say nothing fill every place (here 4): a
/// new client is still served, in the place of the one silent longest
/// (before, it was refused until their idle timeout, 10 minutes).
fn silent_clients_filling_the_manager_make_room_for_a_new_one() {
    let options = outlast_ipc::manager::ServeOptions {
        max_clients: 4,
        ..Default::default()
    };
    let manager = Manager::builder()
        .listen("127.0.0.1:0".parse().expect("address"))
        .authkey(b"full")
        .options(options)
        .start()
        .expect("manager");
    let address: outlast_ipc::net::Address = manager.address().parse().expect("address");
    let silent: Vec<_> = (0..4)
        .map(|_| outlast_ipc::net::connect(&address, b"full").expect("connect"))
        .collect();
    // A fresh thread: a connection of its own.
    let served = std::thread::scope(|s| {
        s.spawn(|| {
            let ns = manager.namespace()?;
            ns.set("x", &5i64)?;
            ns.get::<i64>("x")
        })
        .join()
        .expect("thread")
    });
    assert_eq!(served.expect("served while full"), Some(5));
    drop(silent);
}

/// One client storing 8 MiB values under new keys grew a server to 3 GB,
/// never refused. With a budget of 20 MiB, the third is refused in words,
/// the server's memory stays near the budget, and popping a value makes
/// room again.
fn stores_past_the_byte_budget_are_refused_and_room_comes_back() {
    let options = outlast_ipc::manager::ServeOptions {
        max_stored_bytes: 20 << 20,
        ..Default::default()
    };
    let manager = with_options(options);
    let pid = manager.pid().expect("pid");
    let d: Dict<u32, serde_bytes::ByteBuf> = manager.dict().expect("dict");
    let value = serde_bytes::ByteBuf::from(vec![7u8; 8 << 20]);
    d.set(&0, &value).expect("first");
    d.set(&1, &value).expect("second");
    let before = tests::procfs::rss_kb(pid);
    for k in 2..20u32 {
        match d.set(&k, &value) {
            Err(ManagerError::OverBudget(why)) => assert!(why.contains("budget"), "{why}"),
            other => panic!("value {k} past the budget: {other:?}"),
        }
    }
    // The same key again replaces: no more bytes than before.
    d.set(&1, &value).expect("a replacement fits");
    let after = tests::procfs::rss_kb(pid);
    assert!(
        after < before + 64 * 1024,
        "the server grew from {before} kB to {after} kB"
    );
    assert!(d.pop(&0).expect("pop").is_some());
    d.set(&2, &value).expect("room again after a pop");
}

/// One client past its own byte budget (10 MiB here) is refused, in
/// words, while another client still stores.
fn one_client_cannot_take_the_whole_byte_budget() {
    let manager = with_options(outlast_ipc::manager::ServeOptions {
        max_client_stored_bytes: 10 << 20,
        ..Default::default()
    });
    let d: Dict<u32, serde_bytes::ByteBuf> = manager.dict().expect("dict");
    let value = serde_bytes::ByteBuf::from(vec![1u8; 8 << 20]);
    d.set(&0, &value).expect("first");
    match d.set(&1, &value) {
        Err(ManagerError::OverBudget(why)) => assert!(why.contains("a client's budget"), "{why}"),
        other => panic!("past the client's budget: {other:?}"),
    }
    // Another thread: a connection, and a budget, of its own.
    std::thread::scope(|s| {
        s.spawn(|| d.set(&1, &value))
            .join()
            .expect("thread")
            .expect("another client stores");
    });
    assert_eq!(d.len().expect("len"), 2);
}

/// A local manager with these limits.
fn with_options(options: outlast_ipc::manager::ServeOptions) -> Manager {
    Manager::builder()
        .options(options)
        .start()
        .expect("manager")
}

/// Sets one key (so the client has its connection and lane), then stays
/// connected and silent for `idle`.
fn connect_then_idle((d, key, idle): (Dict<u64, u64>, u64, Duration)) -> Result<(), String> {
    d.set(&key, &key).map_err(|e| e.to_string())?;
    std::thread::sleep(idle);
    d.get(&key).map_err(|e| e.to_string())?;
    Ok(())
}

/// A manager whose three clients are connected and silent is on a CPU for
/// under 1 % of 2 s (it sleeps in `poll` until a deadline or a request).
fn an_idle_manager_with_three_idle_clients_uses_no_cpu() {
    let manager = Manager::start().unwrap();
    let server = manager.pid().unwrap();
    let d = manager.dict::<u64, u64>().unwrap();
    let mut clients: Vec<_> = (0..3)
        .map(|key| Process::new(connect_then_idle, (d.clone(), key, Duration::from_secs(3))))
        .collect();
    for c in &mut clients {
        c.start().unwrap();
    }
    // Until all three have set their key (then they are silent).
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.len().unwrap() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    let used = tests::load::process_cpu_during(server, Duration::from_secs(2));
    for c in &mut clients {
        assert_eq!(c.join().unwrap(), Ok(()));
    }
    eprintln!("an idle manager with three idle clients was on a CPU for {used:?} of 2 s");
    assert!(
        used < Duration::from_millis(20),
        "an idle manager was on a CPU for {used:?} of 2 s"
    );
}

/// With every CPU taken by a busy loop (every wait parks), four clients'
/// 1,000 increments each come to exactly 4,000, and each request of a
/// client beside them is answered.
fn beside_busy_loops_every_request_is_answered_exactly() {
    let _load = tests::load::BusyLoops::one_per_cpu();
    let manager = Manager::start().unwrap();
    let ns = manager.namespace().unwrap();
    let mut children: Vec<_> = (0..4)
        .map(|_| Process::new(add_a_thousand, ns.clone()))
        .collect();
    for c in &mut children {
        c.start().unwrap();
    }
    let d = manager.dict::<u64, u64>().unwrap();
    for i in 0..1_000 {
        d.set(&i, &i).unwrap();
        assert_eq!(d.get(&i).unwrap(), Some(i));
    }
    for c in &mut children {
        assert_eq!(c.join().unwrap(), Ok(()));
    }
    assert_eq!(ns.get::<i64>("count").unwrap(), Some(4_000));
}

fn add_a_thousand(ns: Namespace) -> Result<(), String> {
    for _ in 0..1_000 {
        ns.fetch_add("count", 1).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A terminal's Ctrl-C reaches the whole process group, the manager's
/// server too. A program that catches it (to save its work, then stop)
/// still has its objects: the server ignores `SIGINT`, as Python's does
/// since bpo-36368. Ours died of it, and the program's next call was
/// `Disconnected`.
fn a_ctrl_c_leaves_the_server_to_the_program() {
    for method in [
        StartMethod::ForkServer,
        StartMethod::Spawn,
        StartMethod::Fork,
    ] {
        let manager = Manager::start_with(method).unwrap();
        let results = manager.dict::<String, u64>().unwrap();
        results.set(&"done".to_string(), &1).unwrap();
        let server = manager.pid().expect("a server process");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(server as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        // Delivered before the server can answer this: it would die first.
        results
            .set(&"saved".to_string(), &2)
            .unwrap_or_else(|e| panic!("{method:?}: the server did not outlive a Ctrl-C: {e}"));
        assert_eq!(results.get(&"done".to_string()).unwrap(), Some(1));
        assert_eq!(results.len().unwrap(), 2, "{method:?}");
        manager.shutdown();
    }
}
