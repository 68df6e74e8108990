//! End-to-end tests of `outlast_ipc::Process`: real children, real signals, both
//! start methods. Runs under the single-threaded harness (see `tests::harness`),
//! which also fails any case that leaves a child process behind.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use outlast_ipc::{
    ExitStatus, JoinError, JoinTimeoutError, Pipe, Process, StartError, StartMethod,
};
use tests::{cases, harness, procfs};

const METHODS: [StartMethod; 3] = StartMethod::ALL;

fn main() {
    outlast_ipc::init();
    harness::run(cases![
        returns_value_and_exit_code_zero,
        process_exit_code_is_reported,
        panic_message_comes_back,
        sigkill_is_minus_nine,
        a_child_whose_starting_thread_ended_says_so,
        a_child_whose_starting_thread_ends_at_once_dies_every_time,
        terminate_is_minus_fifteen,
        join_timeout_times_out_then_joins,
        child_sees_its_name_and_parent,
        pipe_end_as_argument_in_both_methods,
        fork_refuses_with_threads_unless_allowed,
        a_fork_waits_for_a_passing_thread_of_ours_to_end,
        dropping_a_running_process_kills_and_reaps_it,
        second_join_says_already_joined,
        children_die_with_their_parent,
        spawn_without_init_runs_only_the_entry,
        a_process_that_ignores_sigchld_still_joins_its_children,
        children_start_with_no_signal_blocked,
        a_forked_child_that_uses_a_handle_it_was_not_given_says_so,
        a_forked_childs_stack_overflow_is_still_said_by_std,
        a_forged_report_is_a_bad_report_in_words,
        results_of_every_size_around_the_first_read_come_back_whole,
    ]);
}

fn add_one(x: u64) -> u64 {
    x + 1
}

fn exit_three(_: ()) {
    std::process::exit(3);
}

fn panics(what: String) -> u8 {
    panic!("boom: {what}");
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn returns_value_and_exit_code_zero() {
    for method in METHODS {
        let mut p = Process::new(add_one, 41).start_method(method);
        p.start().expect("start");
        assert!(p.pid().is_some());
        assert_eq!(p.join().expect("join"), 42, "{method:?}");
        assert_eq!(p.exit_code(), Some(0));
        assert!(!p.is_alive());
    }
}

fn process_exit_code_is_reported() {
    for method in METHODS {
        let mut p = Process::new(exit_three, ()).start_method(method);
        p.start().expect("start");
        match p.join() {
            Err(JoinError::Exited { code: 3 }) => {}
            other => panic!("{method:?}: expected Exited {{ code: 3 }}, got {other:?}"),
        }
        assert_eq!(p.exit_code(), Some(3));
    }
}

fn panic_message_comes_back() {
    for method in METHODS {
        let mut p = Process::new(panics, "the message".to_string()).start_method(method);
        p.start().expect("start");
        match p.join() {
            Err(JoinError::Panicked { message }) => assert_eq!(message, "boom: the message"),
            other => panic!("{method:?}: expected a panic, got {other:?}"),
        }
        assert_eq!(p.exit_code(), Some(1));
    }
}

fn sigkill_is_minus_nine() {
    for method in METHODS {
        let mut p = Process::new(sleep_ms, 60_000).start_method(method);
        p.start().expect("start");
        assert!(p.is_alive());
        p.kill().expect("kill");
        match p.join() {
            Err(JoinError::Signaled(status)) => {
                assert_eq!(status.code(), -9);
                assert!(status.to_string().contains("SIGKILL"), "{status}");
            }
            other => panic!("{method:?}: expected SIGKILL, got {other:?}"),
        }
        assert_eq!(p.exit_code(), Some(-9));
    }
}

/// Linux sends a child its parent-death signal when the *thread* that
/// started it exits. A fork or spawn child started by a thread that then
/// ends is killed, and its join says why in words (it said "perhaps out of
/// memory?"); a fork server child, or one with `die_with_parent(false)`,
/// runs on and returns.
fn a_child_whose_starting_thread_ended_says_so() {
    for (method, die_with_parent) in [
        (StartMethod::Fork, true),
        (StartMethod::Spawn, true),
        (StartMethod::ForkServer, true),
        (StartMethod::Spawn, false),
    ] {
        let mut p = std::thread::spawn(move || {
            let (mut ours, theirs) = Pipe::duplex().expect("pipe");
            let mut p = Process::new(say_ready_then_sleep, theirs)
                .start_method(method)
                .allow_threads(true)
                .die_with_parent(die_with_parent);
            p.start().expect("start");
            // The child's entry runs after it asked for its parent-death
            // signal: the thread ends only then (before, the kernel has
            // no signal to send, and the child lives on).
            let ready: u8 = ours.recv_timeout(Duration::from_secs(60)).expect("ready");
            assert_eq!(ready, 1);
            p
        })
        .join()
        .expect("the starting thread");
        let joined = p.join();
        if method == StartMethod::ForkServer || !die_with_parent {
            assert_eq!(joined.expect("runs on"), 500, "{method:?}");
            continue;
        }
        match joined {
            Err(JoinError::Signaled(status)) => {
                assert_eq!(status, ExitStatus::KilledWithStartingThread, "{method:?}");
                assert_eq!(status.code(), -9);
                assert!(
                    status
                        .to_string()
                        .contains("the thread that started it ended"),
                    "{status}"
                );
            }
            other => panic!("{method:?}: expected a kill with its thread, got {other:?}"),
        }
    }
}

/// The starting thread ends at once after `start`, perhaps before the
/// child asked for its parent-death signal (then the kernel has nothing to
/// send): the child checks for the thread itself, so it dies every time
/// (under load it used to run on, now and then).
fn a_child_whose_starting_thread_ends_at_once_dies_every_time() {
    for method in [StartMethod::Fork, StartMethod::Spawn] {
        for round in 0..20 {
            let mut p = std::thread::spawn(move || {
                let mut p = Process::new(sleep_ms, 60_000)
                    .start_method(method)
                    .allow_threads(true);
                p.start().expect("start");
                p
            })
            .join()
            .expect("the starting thread");
            match p.join_timeout(Duration::from_secs(30)) {
                Err(JoinTimeoutError::Join(JoinError::Signaled(status))) => {
                    assert_eq!(
                        status,
                        ExitStatus::KilledWithStartingThread,
                        "{method:?} round {round}"
                    );
                }
                other => panic!("{method:?} round {round}: it ran on: {other:?}"),
            }
        }
    }
}

fn say_ready_then_sleep(mut conn: outlast_ipc::Connection) -> u64 {
    let _ = conn.send(&1u8);
    sleep_ms(500)
}

fn terminate_is_minus_fifteen() {
    for method in METHODS {
        let mut p = Process::new(sleep_ms, 60_000).start_method(method);
        p.start().expect("start");
        p.terminate().expect("terminate");
        assert!(matches!(p.join(), Err(JoinError::Signaled(_))));
        assert_eq!(p.exit_code(), Some(-15));
        // Signalling an ended child is a no-op, not an error.
        p.kill().expect("kill after exit");
    }
}

fn join_timeout_times_out_then_joins() {
    let mut p = Process::new(sleep_ms, 300);
    p.start().expect("start");
    assert!(matches!(
        p.join_timeout(Duration::from_millis(10)),
        Err(JoinTimeoutError::Timeout)
    ));
    assert!(p.is_alive());
    assert_eq!(p.exit_code(), None);
    assert_eq!(p.join_timeout(Duration::from_secs(60)).expect("join"), 300);
}

/// What the kernel calls this process (`ps -o comm`, `top`, `pgrep`).
fn kernel_name() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .unwrap_or_default()
        .trim_end()
        .to_string()
}

fn whoami(_: ()) -> (String, u32, u32, String) {
    let me = outlast_ipc::current_process();
    (me.name, me.pid, me.parent_pid, kernel_name())
}

fn child_sees_its_name_and_parent() {
    for method in METHODS {
        let mut p = Process::new(whoami, ()).named("bob").start_method(method);
        p.start().expect("start");
        let pid = p.pid().expect("pid");
        let (name, child_pid, parent_pid, comm) = p.join().expect("join");
        assert_eq!(name, "bob");
        assert_eq!(child_pid, pid);
        assert_eq!(parent_pid, std::process::id());
        // The program's name, in every start method: not `exe`, the name
        // of the `/proc/self/exe` that spawn and the fork server exec.
        assert_eq!(comm, kernel_name(), "{method:?}");
    }
    assert_eq!(outlast_ipc::current_process().name, "MainProcess");
}

fn echo_doubled(mut conn: outlast_ipc::Connection) -> usize {
    let mut n = 0;
    while let Ok(v) = conn.recv::<Vec<u32>>() {
        let doubled: Vec<u32> = v.iter().map(|x| x * 2).collect();
        if conn.send(&doubled).is_err() {
            break;
        }
        n += 1;
    }
    n
}

fn pipe_end_as_argument_in_both_methods() {
    for method in METHODS {
        let (mut ours, theirs) = Pipe::duplex().expect("pipe");
        let mut p = Process::new(echo_doubled, theirs).start_method(method);
        p.start().expect("start");
        for i in 0..100u32 {
            ours.send(&vec![i, i + 1]).expect("send");
            let back: Vec<u32> = ours.recv_timeout(Duration::from_secs(30)).expect("recv");
            assert_eq!(back, vec![2 * i, 2 * i + 2]);
        }
        drop(ours);
        // The parent's copy of the child's end was closed at start, so the
        // child sees end of file as soon as `ours` is dropped.
        assert_eq!(
            p.join_timeout(Duration::from_secs(30)).expect("join"),
            100,
            "{method:?}"
        );
    }
}

/// A thread of ours that ends once its one piece of work is done (an
/// awaited large join's reader, a decode, a free) does not make a fork
/// fail: the fork waits for it to end. A fork right after an awaited large
/// join failed with `ThreadsPresent` now and then, its reader not yet
/// gone. Any other thread still refuses it at once.
fn a_fork_waits_for_a_passing_thread_of_ours_to_end() {
    for name in ["outlast-join", "outlast-decode", "outlast-free"] {
        // (Its name is set once it runs.)
        let (running, started) = std::sync::mpsc::channel::<()>();
        let passing = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _ = running.send(());
                std::thread::sleep(Duration::from_millis(30));
            })
            .expect("a thread");
        started.recv().expect("the thread runs");
        let mut p = Process::new(add_one, 1).start_method(StartMethod::Fork);
        p.start().unwrap_or_else(|e| panic!("beside {name}: {e}"));
        assert_eq!(p.join().expect("join"), 2);
        passing.join().expect("the thread");
    }
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let other = std::thread::Builder::new()
        .name("user-work".into())
        .spawn(move || {
            let _ = rx.recv();
        })
        .expect("a thread");
    let mut p = Process::new(add_one, 1).start_method(StartMethod::Fork);
    assert!(matches!(p.start(), Err(StartError::ThreadsPresent { .. })));
    drop(tx);
    other.join().expect("the thread");
}

fn fork_refuses_with_threads_unless_allowed() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let _ = rx.recv();
    });
    let mut p = Process::new(add_one, 1).start_method(StartMethod::Fork);
    match p.start() {
        Err(StartError::ThreadsPresent { threads }) => assert!(threads >= 2),
        other => panic!("expected ThreadsPresent, got {other:?}"),
    }
    assert!(p.pid().is_none());
    // Spawn is fine with threads; fork is fine once explicitly allowed.
    let mut s = Process::new(add_one, 2).start_method(StartMethod::Spawn);
    s.start().expect("spawn start");
    assert_eq!(s.join().expect("spawn join"), 3);
    let mut f = Process::new(add_one, 3)
        .start_method(StartMethod::Fork)
        .allow_threads(true);
    f.start().expect("fork start");
    assert_eq!(f.join().expect("fork join"), 4);
    let _ = tx.send(());
    thread.join().expect("thread");
}

fn dropping_a_running_process_kills_and_reaps_it() {
    for method in METHODS {
        let pid = {
            let mut p = Process::new(sleep_ms, 60_000).start_method(method);
            p.start().expect("start");
            p.pid().expect("pid")
        };
        // Reaped synchronously by drop: no zombie, no running child.
        assert!(!procfs::is_running(pid));
        assert!(harness::leftover_children().is_empty());
    }
}

fn second_join_says_already_joined() {
    let mut p = Process::new(add_one, 1);
    assert!(matches!(p.join(), Err(JoinError::NotStarted)));
    p.start().expect("start");
    assert_eq!(p.join().expect("join"), 2);
    assert!(matches!(p.join(), Err(JoinError::AlreadyJoined(_))));
    assert!(matches!(p.start(), Err(StartError::AlreadyStarted)));
}

fn children_die_with_their_parent() {
    let binary = env!("CARGO_BIN_EXE_parent_of_sleeper");
    for method in ["fork", "spawn", "forkserver"] {
        let mut parent = Command::new(binary)
            .arg(method)
            .stdout(Stdio::piped())
            .spawn()
            .expect("run parent_of_sleeper");
        let mut line = String::new();
        let stdout = parent.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read child pid");
        let child: u32 = line.trim().parse().expect("child pid");
        assert!(
            procfs::is_running(child),
            "{method}: child {child} should run"
        );
        parent.kill().expect("SIGKILL the parent");
        parent.wait().expect("reap the parent");
        let deadline = Instant::now() + Duration::from_secs(5);
        while procfs::is_running(child) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            !procfs::is_running(child),
            "{method}: child {child} outlived its parent"
        );
    }
}

fn spawn_without_init_runs_only_the_entry() {
    // A main with no `init()`: the spawned child is taken over before its
    // main, so main runs once (in the parent) and the entry's value comes back.
    let output = Command::new(env!("CARGO_BIN_EXE_no_init"))
        .output()
        .expect("run no_init");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stdout.matches("main of pid").count(),
        1,
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stdout.contains("join ok: 2"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("exit code: Some(0)"), "{stdout}");
}

/// Ignores SIGCHLD (as daemons do: the kernel then reaps children as they
/// end), and joins a child that returns and one that exits, in `fork` and
/// `spawn`: what each join said, and each child's exit code.
fn join_with_sigchld_ignored(_: ()) -> Vec<String> {
    // SAFETY: sets one signal's disposition in this (single-threaded) child.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    let mut said = Vec::new();
    for method in [StartMethod::Fork, StartMethod::Spawn] {
        let mut returns = Process::new(add_one, 1).start_method(method);
        let joined = match returns.start().map(|()| returns.join()) {
            Ok(Ok(value)) => value.to_string(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("start: {e}"),
        };
        said.push(format!("{joined} (code {:?})", returns.exit_code()));
        let mut exits = Process::new(exit_three, ()).start_method(method);
        let joined = match exits.start().map(|()| exits.join()) {
            Ok(Ok(())) => "()".to_string(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("start: {e}"),
        };
        said.push(format!("{joined} (code {:?})", exits.exit_code()));
    }
    said
}

/// With SIGCHLD ignored, no `waitpid` can see how a child ended. The
/// child's result still comes back, and a child that gave none is said to
/// have ended in a way nobody could see, instead of "No child processes".
fn a_process_that_ignores_sigchld_still_joins_its_children() {
    let mut p = Process::new(join_with_sigchld_ignored, ());
    p.start().expect("start");
    let said = p.join().expect("join");
    let unseen = "the process was ended, but how is not known: this process ignores SIGCHLD, \
                  so the kernel reaped the child at once (leave SIGCHLD at its default, or \
                  use the forkserver start method) (code Some(-1))";
    assert_eq!(
        said,
        ["2 (code Some(-1))", unseen, "2 (code Some(-1))", unseen]
    );
}

/// The signals `pid` blocks (its `SigBlk` in /proc), or the error.
fn blocked_signals(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("SigBlk:"))
                .unwrap_or("none")
                .trim()
                .to_string()
        })
        .unwrap_or_else(|e| e.to_string())
}

/// Blocks what a signalfd user blocks (TERM, INT, HUP, CHLD), then, in
/// each start method, starts a child that sleeps, terminates it, and
/// joins it: the signals the child blocked, and what the join said.
fn terminate_with_signals_blocked(_: ()) -> Vec<String> {
    // SAFETY: an emptied sigset_t with four members added, and this (only)
    // thread's mask set from it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGCHLD] {
            libc::sigaddset(&mut set, signal);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let mut said = Vec::new();
    for method in METHODS {
        let (mut ours, theirs) = Pipe::duplex().expect("a pipe");
        let mut p = Process::new(say_ready_then_sleep, theirs).start_method(method);
        if let Err(e) = p.start() {
            said.push(format!("{method:?}: start: {e}"));
            continue;
        }
        let _ = ours.recv_timeout::<u8>(Duration::from_secs(20));
        let blocked = p.pid().map_or("no pid".to_string(), blocked_signals);
        let _ = p.terminate();
        let joined = match p.join_timeout(Duration::from_secs(20)) {
            Ok(ms) => format!("returned {ms}"),
            Err(e) => e.to_string(),
        };
        said.push(format!("{method:?}: blocked {blocked}; {joined}"));
    }
    said
}

/// A child starts with no signal blocked, as `std::process::Command`'s
/// do, whatever its parent blocks: the mask survives fork and exec, and a
/// parent blocking SIGTERM left children `terminate()` could not end (and,
/// blocking SIGCHLD, a fork server that never heard its children end).
fn children_start_with_no_signal_blocked() {
    let mut p = Process::new(terminate_with_signals_blocked, ());
    p.start().expect("start");
    let said = p.join().expect("join");
    let expected: Vec<String> = METHODS
        .iter()
        .map(|m| format!("{m:?}: blocked 0000000000000000; the process was killed by SIGTERM"))
        .collect();
    assert_eq!(said, expected);
}

/// A queue and a value in statics, as Python programs keep them in
/// globals: a forked child has copies of the handles, not their mappings.
static PARENTS_QUEUE: std::sync::OnceLock<outlast_ipc::queue::Queue<u64>> =
    std::sync::OnceLock::new();
static PARENTS_VALUE: std::sync::OnceLock<outlast_ipc::value::Value<u64>> =
    std::sync::OnceLock::new();

/// Sends its stderr into `err`, then touches the static `which`.
fn touch_a_parents_handle((err, which): (outlast_ipc::Connection, String)) -> u64 {
    use std::os::fd::AsRawFd;
    // SAFETY: dup2 onto this process's own stderr.
    unsafe { libc::dup2(err.as_raw_fd(), 2) };
    match which.as_str() {
        "queue" => PARENTS_QUEUE.get().map_or(0, |q| q.len() as u64),
        _ => PARENTS_VALUE.get().map_or(0, |v| v.load()),
    }
}

/// All a child wrote to `err` until it ended.
fn read_to_end(err: &outlast_ipc::Connection) -> String {
    use std::os::fd::AsRawFd;
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reads into a live buffer from our own descriptor.
        let n = unsafe { libc::read(err.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return String::from_utf8_lossy(&all).into_owned();
        }
        all.extend_from_slice(&buf[..n as usize]);
    }
}

/// A forked child has only the handles in its arguments; one that uses
/// a copy of another (kept in a static) ends by SIGSEGV, but says why on
/// its stderr first (before, the parent saw a bare signal 11).
fn a_forked_child_that_uses_a_handle_it_was_not_given_says_so() {
    PARENTS_QUEUE.get_or_init(|| outlast_ipc::queue::Queue::new(0).expect("a queue"));
    PARENTS_VALUE.get_or_init(|| outlast_ipc::value::Value::new(5).expect("a value"));
    for which in ["queue", "value"] {
        let (read_end, write_end) = Pipe::simplex().expect("a pipe");
        let mut p = Process::new(touch_a_parents_handle, (write_end, which.to_string()))
            .start_method(StartMethod::Fork);
        p.start().expect("a forked child");
        let said = read_to_end(&read_end);
        match p.join() {
            Err(JoinError::Signaled(status)) => {
                assert_eq!(status.code(), -libc::SIGSEGV, "{which}: {said}")
            }
            other => panic!("{which}: {other:?}, stderr: {said}"),
        }
        assert!(
            said.contains("used shared memory of a handle it was not given"),
            "{which}: stderr said: {said:?}"
        );
    }
    // Under the other start methods the static is empty in the child: it
    // runs no `main`.
    let (_read_end, write_end) = Pipe::simplex().expect("a pipe");
    let mut p = Process::new(touch_a_parents_handle, (write_end, "queue".to_string()))
        .start_method(StartMethod::ForkServer);
    p.start().expect("a child");
    assert_eq!(p.join().expect("it returned"), 0);
}

/// Recurses until the stack runs out.
fn overflow(depth: u64) -> u64 {
    let pad = std::hint::black_box([depth; 64]);
    if depth == u64::MAX {
        return pad[0];
    }
    overflow(depth + 1).wrapping_add(pad[1])
}

/// Overflows its stack, its stderr into `err`.
fn overflow_the_stack(err: outlast_ipc::Connection) -> u64 {
    use std::os::fd::AsRawFd;
    // SAFETY: dup2 onto this process's own stderr.
    unsafe { libc::dup2(err.as_raw_fd(), 2) };
    overflow(0)
}

/// Faults that are not the parent's mappings go to the handler that was
/// there before ours: std's stack overflow report still comes.
fn a_forked_childs_stack_overflow_is_still_said_by_std() {
    PARENTS_QUEUE.get_or_init(|| outlast_ipc::queue::Queue::new(0).expect("a queue"));
    let (read_end, write_end) = Pipe::simplex().expect("a pipe");
    let mut p = Process::new(overflow_the_stack, write_end).start_method(StartMethod::Fork);
    p.start().expect("a forked child");
    let said = read_to_end(&read_end);
    assert!(matches!(p.join(), Err(JoinError::Signaled(_))));
    assert!(
        said.contains("has overflowed its stack"),
        "stderr said: {said:?}"
    );
    assert!(!said.contains("not given"), "stderr said: {said:?}");
}

/// A hostile child: writes `frame` over its own report file (found among
/// its descriptors by the memfd's name) and leaves at once with code 0,
/// as if it had returned.
fn forge_report(frame: Vec<u8>) -> Vec<String> {
    for entry in std::fs::read_dir("/proc/self/fd").expect("fds").flatten() {
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        if !target.to_string_lossy().contains("ipc-child-report") {
            continue;
        }
        let fd: i32 = entry.file_name().to_string_lossy().parse().expect("fd");
        // SAFETY: `frame` is valid for reads of its length; `fd` is ours.
        let n = unsafe { libc::pwrite(fd, frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(n, frame.len() as isize, "pwrite");
        // SAFETY: leaves before the real report is written.
        unsafe { libc::_exit(0) };
    }
    panic!("no report file among the child's descriptors");
}

/// A report frame: its header (the payload's length, as announced) and
/// the payload.
fn frame(announced: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = announced.to_le_bytes().to_vec();
    frame.extend_from_slice(payload);
    frame
}

fn a_forged_report_is_a_bad_report_in_words() {
    let mut garbage_value = vec![0u8, 18];
    garbage_value.extend_from_slice(&[0xff; 18]);
    let cases: [(&str, Vec<u8>, &str); 5] = [
        // Past the parent's limit (1 MiB here): refused from the header.
        (
            "announced past the limit",
            frame(64 << 20, &[0, 0x80, 0x80, 0x40]),
            "above the maximum",
        ),
        // A returned value of the right length whose bytes are no Vec<String>.
        (
            "a value that does not decode",
            frame(20, &garbage_value),
            "varint",
        ),
        // A returned value's length that does not end where the payload does.
        (
            "a value's length past the payload",
            frame(20, &[0, 200, 1]),
            "end of buffer",
        ),
        // A whole payload of zeros: a returned empty value, then trailing bytes.
        ("trailing bytes", frame(1000, &[]), "998 trailing bytes"),
        // An unknown report kind.
        ("an unknown kind", frame(3, &[9, 1, 2]), "variant index"),
    ];
    for method in METHODS {
        for (what, forged, words) in &cases {
            let mut p = Process::new(forge_report, forged.clone())
                .start_method(method)
                .max_result_size(1 << 20);
            p.start().expect("start");
            match p.join() {
                Err(JoinError::BadReport(why)) => {
                    assert!(why.contains(words), "{method:?}, {what}: {why}")
                }
                other => panic!("{method:?}, {what}: {other:?}"),
            }
        }
    }
}

fn numbered_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn results_of_every_size_around_the_first_read_come_back_whole() {
    // The parent reads a report's header and first 4 KiB at once, and the
    // rest of a larger value apart; the child gathers a small one into one
    // write. Sizes on both sides of each edge, the value's length prefix
    // taking one, two and three bytes.
    let sizes = [
        0,
        1,
        127,
        128,
        4000,
        4088,
        4089,
        4090,
        4091,
        4092,
        4093,
        4094,
        4095,
        4096,
        4097,
        8192,
        16_383,
        16_384,
        1 << 20,
    ];
    for method in [StartMethod::Fork, StartMethod::ForkServer] {
        for n in sizes {
            let mut p = Process::new(numbered_bytes, n).start_method(method);
            p.start().expect("start");
            let back = p
                .join()
                .unwrap_or_else(|e| panic!("{method:?}, {n} bytes: {e}"));
            assert_eq!(back, numbered_bytes(n), "{method:?}, {n} bytes");
        }
    }
}
