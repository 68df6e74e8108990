//! `ipc::manager`: shared objects in a server process, with real client
//! processes (fork and spawn), a SIGKILLed and a SIGSTOPped manager, and
//! garbage at its socket.

use std::time::{Duration, Instant};

use ipc::manager::{Dict, Manager, ManagerError, Namespace};
use ipc::{Process, StartMethod};

fn main() {
    ipc::init();
    tests::harness::run(tests::cases![
        four_processes_fetch_add_exactly_forty_thousand_fork,
        four_processes_fetch_add_exactly_forty_thousand_spawn,
        a_dict_proxy_works_in_a_spawned_child,
        a_killed_manager_is_disconnected_for_its_clients,
        a_stopped_manager_is_a_timeout_not_a_hang,
        garbage_at_the_socket_leaves_the_manager_serving,
    ]);
}

fn add_ten_thousand(ns: Namespace) -> Result<(), String> {
    for _ in 0..10_000 {
        ns.fetch_add("count", 1).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn fetch_add_from_four(method: StartMethod) {
    let manager = Manager::start().unwrap();
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
