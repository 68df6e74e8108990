//! The forkserver start method, end to end: children of a threaded parent,
//! handles through `SCM_RIGHTS`, exit reporting through the server, the
//! creator or the server SIGKILLed, and nobody else able to use the server.
//! Runs under the single-threaded harness, which also fails a case that
//! leaves a child (of this process or of the server) behind.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use outlast_ipc::forkserver::ForkServerError;
use outlast_ipc::queue::Queue;
use outlast_ipc::{Connection, ExitStatus, JoinError, Pipe, Process, StartError, StartMethod};
use tests::{cases, harness, procfs};

const FS: StartMethod = StartMethod::ForkServer;

fn main() {
    outlast_ipc::init();
    harness::run(cases![
        a_threaded_parent_gets_forkserver_children_but_no_fork,
        exits_are_reported_through_the_server,
        the_child_is_the_servers_and_knows_its_creator,
        killing_the_server_between_starts_costs_at_most_one_start,
        the_creator_sigkilled_leaves_nothing,
        no_other_process_can_reach_the_server,
        a_main_without_init_gets_forkserver_children,
        join_timeout_and_wait_see_a_forkserver_child,
        the_default_start_method_is_set_once,
        a_stopped_server_does_not_stop_join,
        a_child_killed_with_its_server_is_gone_when_join_returns,
        a_child_runs_where_its_creator_is_now_with_its_variables,
        a_child_takes_its_creators_mask_limits_affinity_nice_signals_and_user,
        large_arguments_travel_apart_with_their_handles,
    ]);
}

fn add_one(x: u64) -> u64 {
    x + 1
}

fn exit_with(code: i32) {
    std::process::exit(code);
}

fn panics(what: String) -> u8 {
    panic!("boom: {what}");
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Reads a number from the pipe, writes back its square, and puts its
/// triple on the queue.
fn square_and_triple((mut conn, queue): (Connection, Queue<u64>)) -> u64 {
    let x: u64 = conn.recv().expect("a number from the parent");
    conn.send(&(x * x)).expect("send the square");
    queue.put(&(3 * x)).expect("put the triple");
    x
}

/// Four threads busy until dropped.
struct BusyThreads {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl BusyThreads {
    fn start(n: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                })
            })
            .collect();
        BusyThreads { stop, threads }
    }
}

impl Drop for BusyThreads {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn a_threaded_parent_gets_forkserver_children_but_no_fork() {
    let busy = BusyThreads::start(4);
    assert!(outlast_ipc::os::procfs::thread_count().expect("threads") >= 5);
    let queue: Queue<u64> = Queue::new(16).expect("queue");
    let mut children = Vec::new();
    let mut ours = Vec::new();
    for x in [2u64, 5, 7] {
        let (mine, theirs) = Pipe::duplex().expect("pipe");
        let mut p = Process::new(
            square_and_triple,
            (theirs, queue.try_clone().expect("queue clone")),
        )
        .start_method(FS);
        p.start().expect("forkserver start with threads running");
        ours.push((x, mine));
        children.push(p);
    }
    for (x, conn) in &mut ours {
        conn.send(x).expect("send");
        let square: u64 = conn
            .recv_timeout(Duration::from_secs(30))
            .expect("square back");
        assert_eq!(square, *x * *x);
    }
    let mut returned: Vec<u64> = children
        .iter_mut()
        .map(|p| p.join().expect("join"))
        .collect();
    returned.sort_unstable();
    assert_eq!(returned, [2, 5, 7]);
    let mut triples: Vec<u64> = (0..3)
        .map(|_| queue.get_timeout(Duration::from_secs(30)).expect("triple"))
        .collect();
    triples.sort_unstable();
    assert_eq!(triples, [6, 15, 21]);
    // The same parent, asking for fork, is refused.
    let mut forked = Process::new(add_one, 1).start_method(StartMethod::Fork);
    match forked.start() {
        Err(StartError::ThreadsPresent { threads }) => assert!(threads >= 5),
        other => panic!("fork with threads: {other:?}"),
    }
    drop(busy);
}

fn exits_are_reported_through_the_server() {
    let mut p = Process::new(add_one, 41).start_method(FS);
    p.start().expect("start");
    assert_eq!(p.join().expect("join"), 42);
    assert_eq!(p.exit_code(), Some(0));
    assert!(!p.is_alive());

    let mut p = Process::new(exit_with, 3).start_method(FS);
    p.start().expect("start");
    assert!(matches!(p.join(), Err(JoinError::Exited { code: 3 })));
    assert_eq!(p.exit_code(), Some(3));

    let mut p = Process::new(panics, "in the child".to_string()).start_method(FS);
    p.start().expect("start");
    match p.join() {
        Err(JoinError::Panicked { message }) => assert_eq!(message, "boom: in the child"),
        other => panic!("panic: {other:?}"),
    }
    assert_eq!(p.exit_code(), Some(1));

    for (signal, code) in [(libc::SIGKILL, -9), (libc::SIGTERM, -15)] {
        let mut p = Process::new(sleep_ms, 60_000).start_method(FS);
        p.start().expect("start");
        assert!(p.is_alive());
        if signal == libc::SIGKILL {
            p.kill().expect("kill");
        } else {
            p.terminate().expect("terminate");
        }
        assert!(matches!(p.join(), Err(JoinError::Signaled(_))));
        assert_eq!(p.exit_code(), Some(code));
        // Signals after the end reach nobody and are no error.
        p.kill().expect("kill after the end");
    }
}

fn report_family(_: ()) -> (u32, u32, String) {
    let parent = outlast_ipc::parent_process().expect("a parent");
    (
        parent.pid(),
        outlast_ipc::os::process::parent_pid() as u32,
        outlast_ipc::current_process().name,
    )
}

/// [`report_family`] once the parent says go: alive until then.
fn report_family_when_told(mut go: Connection) -> (u32, u32, String) {
    let _ = go.recv::<()>();
    report_family(())
}

fn the_child_is_the_servers_and_knows_its_creator() {
    let server = outlast_ipc::forkserver::start().expect("server");
    assert_eq!(
        outlast_ipc::forkserver::start().expect("again"),
        server,
        "one server"
    );
    // The child waits to be told, so it is certainly alive when listed
    // (active_children drops the children that have ended, as Python's).
    let (mut go, theirs) = Pipe::duplex().expect("pipe");
    let mut p = Process::new(report_family_when_told, theirs)
        .named("fs-child")
        .start_method(FS);
    p.start().expect("start");
    let child = p.pid().expect("pid");
    let listed = outlast_ipc::active_children();
    assert!(listed.iter().any(|c| c.pid == child), "{listed:?}");
    go.send(&()).expect("go");
    let (creator, os_parent, name) = p.join().expect("join");
    assert_eq!(
        creator,
        std::process::id(),
        "parent_process() is the creator"
    );
    assert_eq!(os_parent, server, "the OS parent is the server");
    assert_eq!(name, "fs-child");
    assert!(outlast_ipc::active_children()
        .iter()
        .all(|c| c.pid != child));
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn killing_the_server_between_starts_costs_at_most_one_start() {
    // Killed and seen dead: the next start simply works, on a new server.
    let old = outlast_ipc::forkserver::start().expect("server");
    outlast_ipc::os::process::send_signal(old as i32, libc::SIGKILL).expect("kill the server");
    wait_until("the server to die", || {
        procfs::stat_state_and_ppid(old).is_none_or(|(state, _)| state == 'Z')
    });
    let mut p = Process::new(add_one, 1).start_method(FS);
    p.start().expect("the start after a dead server");
    assert_eq!(p.join().expect("join"), 2);
    let new = outlast_ipc::forkserver::pid().expect("a new server");
    assert_ne!(new, old);
    assert!(
        procfs::stat_state_and_ppid(old).is_none(),
        "the old server was reaped"
    );

    // Killed just before a start: that start works or says the server
    // was lost; the one after works.
    for _ in 0..5 {
        let server = outlast_ipc::forkserver::start().expect("server");
        outlast_ipc::os::process::send_signal(server as i32, libc::SIGKILL)
            .expect("kill the server");
        let mut p = Process::new(add_one, 10).start_method(FS);
        match p.start() {
            Ok(()) => assert_eq!(p.join().expect("join"), 11),
            Err(StartError::ForkServer(ForkServerError::Lost { .. })) => {
                let mut again = Process::new(add_one, 20).start_method(FS);
                again.start().expect("the start after a lost one");
                assert_eq!(again.join().expect("join"), 21);
            }
            Err(e) => panic!("start after killing the server: {e}"),
        }
    }

    // Killed while a child runs: the child dies with it, and its join says SIGKILL.
    let server = outlast_ipc::forkserver::start().expect("server");
    let mut p = Process::new(sleep_ms, 60_000).start_method(FS);
    p.start().expect("start");
    let child = p.pid().expect("pid");
    outlast_ipc::os::process::send_signal(server as i32, libc::SIGKILL).expect("kill the server");
    assert!(matches!(p.join(), Err(JoinError::Signaled(_))));
    assert_eq!(p.exit_code(), Some(-9));
    wait_until("the orphan to go", || !procfs::is_running(child));
}

fn the_creator_sigkilled_leaves_nothing() {
    let mut creator = Command::new(env!("CARGO_BIN_EXE_forkserver_creator"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("run forkserver_creator");
    let stdout = creator.stdout.take().expect("stdout");
    let mut server = None;
    let mut children = Vec::new();
    let mut shm = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("a line");
        match line.split_once(' ') {
            Some(("server", pid)) => server = pid.parse::<u32>().ok(),
            Some(("child", pid)) => children.extend(pid.parse::<u32>().ok()),
            Some(("shm", name)) => shm = Some(name.to_string()),
            _ if line == "ready" => break,
            _ => {}
        }
    }
    let server = server.expect("the server's pid");
    let shm = shm.expect("the segment's name");
    assert_eq!(children.len(), 2);
    let segment = std::path::Path::new("/dev/shm").join(&shm);
    assert!(segment.exists());
    for &child in &children {
        assert!(procfs::is_running(child));
        assert_eq!(
            procfs::stat_state_and_ppid(child).map(|s| s.1),
            Some(server)
        );
    }
    creator.kill().expect("SIGKILL the creator");
    creator.wait().expect("reap the creator");
    for pid in children.iter().copied().chain([server]) {
        wait_until("every child and the server to go", || {
            !procfs::is_running(pid)
        });
    }
    wait_until("the segment to be unlinked", || !segment.exists());
}

/// In another process of this user: every way in to the server we can
/// think of. A socketpair has no name to connect to, and a socket cannot
/// be opened through /proc.
fn try_to_reach(server: u32) -> Vec<String> {
    let mut ways_in = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{server}/fd")) else {
        return vec!["cannot list the server's descriptors".into()];
    };
    let mut inodes = Vec::new();
    for entry in dir.flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy().to_string();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
        {
            inodes.push(inode.to_string());
            if std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(entry.path())
                .is_ok()
            {
                ways_in.push(format!("opened {target} through /proc"));
            }
        }
    }
    if inodes.is_empty() {
        ways_in.push("the server has no socket?".into());
    }
    // /proc/net/unix: "Num RefCount Protocol Flags Type St Inode [Path]".
    let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    for row in table.lines().skip(1) {
        let fields: Vec<&str> = row.split_whitespace().collect();
        if fields.len() > 7 && inodes.iter().any(|i| i == fields[6]) {
            ways_in.push(format!("the server's socket has an address: {}", fields[7]));
        }
    }
    ways_in
}

fn no_other_process_can_reach_the_server() {
    let server = outlast_ipc::forkserver::start().expect("server");
    let before = procfs::children_of(server).len();
    let mut intruder = Process::new(try_to_reach, server).start_method(StartMethod::Spawn);
    intruder.start().expect("start the intruder");
    let ways_in = intruder.join().expect("join the intruder");
    assert!(ways_in.is_empty(), "{ways_in:?}");
    assert_eq!(procfs::children_of(server).len(), before);
    // The intruder also cannot borrow ours: a spawned child of this
    // process holds no copy of the socket, so it starts a server of its own.
    let mut p = Process::new(server_of_child, ()).start_method(StartMethod::Spawn);
    p.start().expect("start");
    let theirs = p.join().expect("join");
    assert_ne!(theirs, server);
}

fn server_of_child(_: ()) -> u32 {
    let mut p = Process::new(add_one, 1).start_method(FS);
    p.start().expect("start in a child");
    assert_eq!(p.join().expect("join in a child"), 2);
    let pid = outlast_ipc::forkserver::pid().unwrap_or(0);
    outlast_ipc::forkserver::stop();
    pid
}

fn a_main_without_init_gets_forkserver_children() {
    // The server (an exec of that binary) is taken over before its main.
    let output = Command::new(env!("CARGO_BIN_EXE_no_init"))
        .arg("forkserver")
        .output()
        .expect("run no_init");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.matches("main of pid").count(), 1, "stdout: {stdout}");
    assert!(stdout.contains("join ok: 2"), "stdout: {stdout}");
}

fn join_timeout_and_wait_see_a_forkserver_child() {
    let mut p = Process::new(sleep_ms, 300).start_method(FS);
    p.start().expect("start");
    assert!(matches!(
        p.join_timeout(Duration::from_millis(1)),
        Err(outlast_ipc::JoinTimeoutError::Timeout)
    ));
    assert!(p.exit_fd().is_some());
    let ready = outlast_ipc::wait(
        &[&p as &dyn outlast_ipc::Waitable],
        Some(Duration::from_secs(30)),
    )
    .expect("wait");
    assert_eq!(ready, [0]);
    assert_eq!(p.join().expect("join"), 300);
}

fn the_default_start_method_is_set_once() {
    // Unset, the default is forkserver (Python 3.14's on Linux).
    assert_eq!(outlast_ipc::get_all_start_methods()[0], FS);
    outlast_ipc::set_start_method(StartMethod::Spawn).expect("first set");
    assert_eq!(
        outlast_ipc::set_start_method(FS),
        Err(outlast_ipc::StartMethodAlreadySet {
            current: StartMethod::Spawn
        })
    );
    assert_eq!(outlast_ipc::get_start_method(), StartMethod::Spawn);
    assert_eq!(
        outlast_ipc::get_all_start_methods(),
        [StartMethod::Spawn, StartMethod::Fork, FS]
    );
    outlast_ipc::force_start_method(FS);
    let mut p = Process::new(report_family, ());
    assert_eq!(p.method(), FS);
    p.start().expect("start with the default");
    let (_, os_parent, _) = p.join().expect("join");
    assert_eq!(Some(os_parent), outlast_ipc::forkserver::pid());
    outlast_ipc::force_start_method(StartMethod::Fork);
    assert_eq!(outlast_ipc::get_start_method(), StartMethod::Fork);
    assert_eq!("forkserver".parse::<StartMethod>(), Ok(FS));
    assert!("threads".parse::<StartMethod>().is_err());
}

/// The fork server is SIGSTOPped while its child runs: the child ends, the
/// server cannot relay how, and `join` used to wait forever. The child's
/// pidfd says it ended; its report still gives its result, and the status
/// says that the server did not tell. A server killed while its child runs
/// is named as such (not "perhaps out of memory").
fn a_stopped_server_does_not_stop_join() {
    let server = outlast_ipc::forkserver::start().expect("server");
    let mut p = Process::new(sleep_ms, 300).start_method(FS);
    p.start().expect("start");
    outlast_ipc::os::process::send_signal(server as i32, libc::SIGSTOP).expect("stop the server");
    let joined = p.join_timeout(Duration::from_secs(60));
    outlast_ipc::os::process::send_signal(server as i32, libc::SIGCONT).expect("continue it");
    assert_eq!(joined.expect("join with the server stopped"), 300);
    let status = p.exit_status().expect("a status");
    assert!(
        status == ExitStatus::NotRelayed || status == ExitStatus::Exited(0),
        "{status}"
    );

    let server = outlast_ipc::forkserver::start().expect("server");
    let mut p = Process::new(sleep_ms, 60_000).start_method(FS);
    p.start().expect("start");
    outlast_ipc::os::process::send_signal(server as i32, libc::SIGKILL).expect("kill the server");
    let e = p.join().expect_err("killed with the server");
    assert!(e.to_string().contains("killed with its fork server"), "{e}");
    assert!(!e.to_string().contains("out of memory"), "{e}");
}

/// The server's end of the relay closes before the kernel sends its
/// children their parent-death SIGKILL, so `join` used to say "killed with
/// its fork server" while the child still ran (CI saw it left behind). It
/// now returns once the child has ended, each of many times.
fn a_child_killed_with_its_server_is_gone_when_join_returns() {
    for round in 0..40 {
        let server = outlast_ipc::forkserver::start().expect("server");
        let mut p = Process::new(sleep_ms, 60_000).start_method(FS);
        p.start().expect("start");
        let child = p.pid().expect("a pid");
        outlast_ipc::os::process::send_signal(server as i32, libc::SIGKILL)
            .expect("kill the server");
        let e = p.join().expect_err("killed with the server");
        assert!(e.to_string().contains("killed with its fork server"), "{e}");
        assert!(
            !procfs::is_running(child),
            "round {round}: join returned while the child {child} still ran"
        );
    }
}

/// Where a child runs and what `OUTLAST_TEST_SETTING` says there.
fn whereabouts(_: ()) -> (String, Option<String>) {
    let cwd = std::env::current_dir().map_or_else(|e| e.to_string(), |d| d.display().to_string());
    (cwd, std::env::var("OUTLAST_TEST_SETTING").ok())
}

/// A creator that starts its server, then moves and changes a variable
/// (after the server started, as a program does once its pool runs), and
/// starts a second child: what each child saw.
fn moving_creator(dir: String) -> Vec<(String, Option<String>)> {
    let see = || {
        let mut p = Process::new(whereabouts, ()).start_method(FS);
        p.start().expect("start");
        p.join().expect("join")
    };
    std::env::set_var("OUTLAST_TEST_SETTING", "before");
    let first = see();
    std::env::set_current_dir(&dir).expect("move");
    std::env::set_var("OUTLAST_TEST_SETTING", "after");
    let second = see();
    std::env::remove_var("OUTLAST_TEST_SETTING");
    vec![first, second, see()]
}

fn a_child_runs_where_its_creator_is_now_with_its_variables() {
    // The creator is a spawned process of its own, with a server of its
    // own: this test process keeps its directory.
    let dir = std::env::temp_dir().canonicalize().expect("the temp dir");
    let here = std::env::current_dir().expect("cwd").display().to_string();
    let dir = dir.display().to_string();
    assert_ne!(here, dir, "the test must move somewhere else");
    let mut creator = Process::new(moving_creator, dir.clone()).start_method(StartMethod::Spawn);
    creator.start().expect("start the creator");
    let seen = creator.join().expect("the creator's report");
    assert_eq!(
        seen,
        [
            (here, Some("before".to_string())),
            (dir.clone(), Some("after".to_string())),
            (dir, None),
        ]
    );
}

/// What a process is, besides where it runs: what a spawned child takes
/// from the thread that starts it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Traits {
    umask: String,
    open_files: (u64, u64),
    core_size: (u64, u64),
    cpus: Vec<usize>,
    nice: i32,
    hup_ignored: bool,
    term_default: bool,
    /// Real, effective and saved.
    uids: [u32; 3],
    gids: [u32; 3],
    groups: Vec<u32>,
}

fn limit_of(resource: libc::__rlimit_resource_t) -> (u64, u64) {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: writes one rlimit into a live local.
    assert_eq!(unsafe { libc::getrlimit(resource, &mut l) }, 0);
    (l.rlim_cur, l.rlim_max)
}

fn disposition(signal: i32) -> libc::sighandler_t {
    // SAFETY: a null new action only queries into a zeroed out-buffer.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(signal, std::ptr::null(), &mut current), 0);
        current.sa_sigaction
    }
}

fn traits(_: ()) -> Traits {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let umask = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .expect("Umask");
    // SAFETY: plain queries into live locals.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set),
            0
        );
        let cpus = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect();
        let (mut uids, mut gids) = ([0; 3], [0; 3]);
        libc::getresuid(&mut uids[0], &mut uids[1], &mut uids[2]);
        libc::getresgid(&mut gids[0], &mut gids[1], &mut gids[2]);
        let mut groups = vec![0; 1024];
        let n = libc::getgroups(1024, groups.as_mut_ptr());
        groups.truncate(n.max(0) as usize);
        Traits {
            umask: umask.trim().to_string(),
            open_files: limit_of(libc::RLIMIT_NOFILE),
            core_size: limit_of(libc::RLIMIT_CORE),
            cpus,
            nice: libc::getpriority(libc::PRIO_PROCESS, 0),
            hup_ignored: disposition(libc::SIGHUP) == libc::SIG_IGN,
            term_default: disposition(libc::SIGTERM) == libc::SIG_DFL,
            uids,
            gids,
            groups,
        }
    }
}

extern "C" fn on_term(_: libc::c_int) {}

/// The traits a child started by `method` has.
fn childs_traits(method: StartMethod) -> Traits {
    let mut p = Process::new(traits, ()).start_method(method);
    p.start().expect("start");
    p.join().expect("join")
}

/// A creator whose server started before it changed its umask, two
/// resource limits, its CPUs, its nice value and two signals' dispositions
/// and (as root) its user and groups, as a daemon does once it runs: what
/// it was before the change, a child of each start method, and what it
/// is then. A child after the change of user is checked in the creator.
fn changing_creator(_: ()) -> (Traits, Vec<(StartMethod, Traits)>, Traits) {
    outlast_ipc::forkserver::start().expect("the server, before the change");
    let before = traits(());
    let open_files = limit_of(libc::RLIMIT_NOFILE);
    let cpus = &before.cpus;
    // SAFETY: plain calls that change this process (a child of the test).
    unsafe {
        libc::umask(0o027);
        let l = libc::rlimit {
            rlim_cur: open_files.0.min(512) - 11,
            rlim_max: open_files.1,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &l), 0);
        let l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 4096,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_CORE, &l), 0);
        // One CPU of those it had (the same one if it had one).
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpus[cpus.len() - 1], &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set),
            0
        );
        assert_eq!(libc::setpriority(libc::PRIO_PROCESS, 0, before.nice + 3), 0);
    }
    outlast_ipc::os::signals::ignore(libc::SIGHUP).expect("ignore HUP");
    outlast_ipc::os::signals::set_handler(libc::SIGTERM, on_term).expect("handle TERM");
    let mut children = Vec::new();
    for method in [StartMethod::Fork, StartMethod::Spawn, FS] {
        children.push((method, childs_traits(method)));
    }
    let now = traits(());
    // As root: a daemon that drops to `nobody` after its server started.
    if before.uids[1] == 0 {
        // SAFETY: plain calls that change this process's user for good.
        unsafe {
            assert_eq!(libc::setgroups(1, [65533].as_ptr()), 0);
            assert_eq!(libc::setresgid(65534, 65534, 65534), 0);
            assert_eq!(libc::setresuid(65534, 65534, 65534), 0);
        }
        let nobody = traits(());
        assert_eq!(nobody.uids, [65534; 3]);
        assert_eq!(nobody.groups, [65533]);
        for method in [StartMethod::Fork, FS] {
            let expected = Traits {
                term_default: method != StartMethod::Fork,
                ..nobody.clone()
            };
            assert_eq!(
                childs_traits(method),
                expected,
                "{method:?} after dropping root"
            );
        }
    }
    (before, children, now)
}

fn a_child_takes_its_creators_mask_limits_affinity_nice_signals_and_user() {
    // The creator is a spawned process of its own, with a server of its
    // own: this test process keeps its traits.
    let mut creator = Process::new(changing_creator, ()).start_method(StartMethod::Spawn);
    creator.start().expect("start the creator");
    let (before, children, now) = creator.join().expect("the creator's report");
    // Each trait did change, so the comparison below means something.
    assert_eq!(now.umask, "0027");
    assert_ne!(now.open_files, before.open_files);
    assert_eq!(now.core_size, (0, 4096));
    assert_eq!(now.cpus.len(), 1);
    assert_eq!(now.nice, before.nice + 3);
    assert!(now.hup_ignored && !now.term_default);
    for (method, child) in children {
        // A child's SIGTERM handler is its own: exec (spawn) and the fork
        // server give it the default, fork keeps the creator's.
        let expected = Traits {
            term_default: method != StartMethod::Fork,
            ..now.clone()
        };
        assert_eq!(child, expected, "{method:?}");
    }
}

/// Sends the sum of `bytes` on `conn`; returns their count.
fn sum_over_the_pipe((mut conn, bytes): (Connection, Vec<u8>)) -> usize {
    let sum: u64 = bytes.iter().map(|&b| u64::from(b)).sum();
    conn.send(&sum).expect("send the sum");
    bytes.len()
}

fn large_arguments_travel_apart_with_their_handles() {
    // Either side of the size past which arguments go in a memfd of their
    // own (256 KiB), and far past it; with a handle beside them, so the
    // descriptors' order is checked too.
    for len in [(256 << 10) - 64, 256 << 10, 3_000_000] {
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let expected: u64 = bytes.iter().map(|&b| u64::from(b)).sum();
        let (mut ours, theirs) = Pipe::duplex().expect("pipe");
        let mut p = Process::new(sum_over_the_pipe, (theirs, bytes)).start_method(FS);
        p.start().expect("start");
        let sum: u64 = ours.recv().expect("the sum");
        assert_eq!(sum, expected, "{len} bytes");
        assert_eq!(p.join().expect("join"), len);
    }
}
