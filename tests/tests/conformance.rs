//! Python's semantics, where ipc claims them: cases ported from CPython's
//! `Lib/test/_test_multiprocessing.py`, each named after the CPython test
//! it ports (class and method), run with both start methods where the
//! CPython test runs with more than one. Processes only: the fork start
//! method refuses to run beside threads, and Python's thread variants test
//! `threading`, not multiprocessing.

use std::time::{Duration, Instant};

use outlast_ipc::queue::{GetTimeoutError, JoinableQueue, PutError, PutTimeoutError, Queue};
use outlast_ipc::sync::{
    Barrier, BarrierError, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore,
};
use outlast_ipc::value::{Array, RawArray, RawValue, Value};
use outlast_ipc::{Connection, Pipe, Process, StartMethod, Waitable};
use tests::{cases, harness};

const METHODS: [StartMethod; 3] = StartMethod::ALL;
/// Long enough for any child on a loaded machine; tests never wait this long when they pass.
const PATIENCE: Duration = Duration::from_secs(30);

fn main() {
    outlast_ipc::init();
    harness::run(cases![
        process_test_process,
        process_test_terminate,
        process_test_kill,
        process_test_active_children,
        process_test_recursion,
        process_test_sentinel,
        process_test_child_fd_inflation,
        process_test_parent_process_attributes,
        process_test_parent_process,
        process_test_many_processes,
        close_fds_test_a_child_keeps_only_the_descriptors_it_was_given,
        queue_test_put_get_timeouts,
        queue_test_qsize,
        queue_test_task_done,
        queue_test_closed_queue_put_get_exceptions,
        queue_test_shutdown_empty,
        queue_test_shutdown_nonempty,
        queue_test_shutdown_immediate,
        queue_test_shutdown_immediate_with_unfinished,
        lock_test_lock,
        lock_test_rlock,
        lock_test_lock_locked_2processes,
        semaphore_test_semaphore,
        semaphore_test_bounded_semaphore,
        semaphore_test_timeout,
        condition_test_notify,
        condition_test_notify_all,
        condition_test_notify_n,
        condition_test_timeout,
        condition_test_waitfor,
        condition_test_waitfor_timeout,
        event_test_event,
        barrier_test_barrier,
        barrier_test_barrier_10,
        barrier_test_wait_return,
        barrier_test_action,
        barrier_test_abort,
        barrier_test_reset,
        barrier_test_abort_and_reset,
        barrier_test_timeout,
        barrier_test_default_timeout,
        barrier_test_single_thread,
        barrier_test_thousand,
        value_test_value,
        value_test_rawvalue,
        value_test_getobj_getlock,
        array_test_array,
        array_test_array_from_size,
        array_test_rawarray,
        array_test_getobj_getlock_obj,
        wait_test_wait,
        wait_test_wait_timeout,
        wait_test_wait_integer,
    ]);
}

/// Runs `f(method)` for fork, spawn and forkserver.
fn both(f: impl Fn(StartMethod)) {
    for method in METHODS {
        f(method);
    }
}

fn start<A, R>(f: fn(A) -> R, args: A, method: StartMethod) -> Process<A, R>
where
    A: serde::Serialize + serde::de::DeserializeOwned,
    R: serde::Serialize + serde::de::DeserializeOwned,
{
    let mut p = Process::new(f, args).start_method(method);
    p.start().expect("start the child");
    p
}

/// Waits until `f()` holds (CPython's `assertReachesEventually`).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < PATIENCE, "never: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

// ---- _TestProcess -----------------------------------------------------------

/// Reports who it is once the parent says go, so the parent can first see
/// it running (a child that returned at once made `exit_code()` racy).
fn report_self((expected_name, go): (String, Event)) -> (String, u32, u32, bool) {
    go.wait_timeout(PATIENCE);
    let me = outlast_ipc::current_process();
    (
        me.name.clone(),
        me.pid,
        me.parent_pid,
        me.name == expected_name,
    )
}

fn process_test_process() {
    both(|method| {
        let go = Event::new().expect("event");
        let args = ("P-conformance".to_string(), go.try_clone().expect("clone"));
        let mut p = Process::new(report_self, args)
            .named("P-conformance")
            .start_method(method);
        assert_eq!(p.exit_code(), None);
        assert!(!p.is_alive());
        p.start().expect("start");
        assert_eq!(p.exit_code(), None);
        assert!(p.is_alive());
        go.set();
        let pid = p.pid().expect("a pid");
        let (name, child_pid, parent_pid, named) = p.join().expect("join");
        assert_eq!(name, "P-conformance");
        assert!(named);
        assert_eq!(child_pid, pid);
        assert_eq!(parent_pid, std::process::id());
        assert_eq!(p.exit_code(), Some(0));
        assert!(!p.is_alive());
    });
}

fn sleep_on_event(event: Event) {
    event.set();
    std::thread::sleep(Duration::from_secs(100));
}

/// CPython's `_kill_process`: the child is running, then `meth` ends it.
fn kill_process(method: StartMethod, meth: fn(&mut Process<Event, ()>)) -> i32 {
    let event = Event::new().expect("event");
    let mut p = start(sleep_on_event, event.try_clone().expect("clone"), method);
    assert!(p.is_alive());
    assert!(outlast_ipc::active_children()
        .iter()
        .any(|c| Some(c.pid) == p.pid()));
    assert!(matches!(
        p.join_timeout(Duration::ZERO),
        Err(outlast_ipc::JoinTimeoutError::Timeout)
    ));
    assert!(
        event.wait_timeout(PATIENCE),
        "the child never set its event"
    );
    meth(&mut p);
    let _ = p.join();
    assert!(!p.is_alive());
    assert!(!outlast_ipc::active_children()
        .iter()
        .any(|c| Some(c.pid) == p.pid()));
    p.exit_code().expect("an exit code")
}

fn process_test_terminate() {
    both(|m| {
        let code = kill_process(m, |p| p.terminate().expect("terminate"));
        assert_eq!(code, -libc::SIGTERM);
    });
}

fn process_test_kill() {
    both(|m| {
        let code = kill_process(m, |p| p.kill().expect("kill"));
        assert_eq!(code, -libc::SIGKILL);
    });
}

fn wait_event(event: Event) {
    event.wait_timeout(PATIENCE);
}

fn process_test_active_children() {
    both(|method| {
        let event = Event::new().expect("event");
        let mut p =
            Process::new(wait_event, event.try_clone().expect("clone")).start_method(method);
        assert!(outlast_ipc::active_children().is_empty());
        p.start().expect("start");
        let pid = p.pid().expect("pid");
        assert!(outlast_ipc::active_children().iter().any(|c| c.pid == pid));
        event.set();
        p.join().expect("join");
        assert!(!outlast_ipc::active_children().iter().any(|c| c.pid == pid));
    });
}

fn recurse((mut out, id, method): (Connection, Vec<u8>, StartMethod)) {
    let _ = out.send(&id);
    if id.len() < 2 {
        for i in 0..2u8 {
            let mut next = id.clone();
            next.push(i);
            let Ok(handle) = out.try_clone() else { return };
            let mut p = Process::new(recurse, (handle, next, method)).start_method(method);
            if p.start().is_ok() {
                let _ = p.join();
            }
        }
    }
}

fn process_test_recursion() {
    both(|method| {
        let (mut rx, tx) = Pipe::simplex().expect("pipe");
        let mut p = start(recurse, (tx, Vec::new(), method), method);
        p.join().expect("join");
        let mut result = Vec::new();
        while rx.poll(Duration::ZERO).unwrap_or(false) {
            match rx.recv::<Vec<u8>>() {
                Ok(id) => result.push(id),
                Err(_) => break,
            }
        }
        let expected: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0, 0],
            vec![0, 1],
            vec![1],
            vec![1, 0],
            vec![1, 1],
        ];
        assert_eq!(result, expected, "{method:?}");
    });
}

fn process_test_sentinel() {
    both(|method| {
        let event = Event::new().expect("event");
        let mut p = start(wait_event, event.try_clone().expect("clone"), method);
        assert!(p.ready_fd().is_some(), "a sentinel while it runs");
        assert!(outlast_ipc::wait(&[&p], Some(Duration::ZERO))
            .expect("wait")
            .is_empty());
        event.set();
        assert_eq!(
            outlast_ipc::wait(&[&p], Some(PATIENCE)).expect("wait"),
            vec![0]
        );
        p.join().expect("join");
    });
}

fn count_fds((q, event): (Queue<usize>, Event)) {
    let n = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    let _ = q.put(&n);
    event.wait_timeout(PATIENCE);
}

fn process_test_child_fd_inflation() {
    // CPython skips this for fork ("a lost battle"); ipc's fork closes every
    // descriptor a child was not given, so both methods must pass.
    both(|method| {
        let q = Queue::<usize>::new(0).expect("queue");
        let event = Event::new().expect("event");
        let mut procs: Vec<_> = (0..5)
            .map(|_| {
                start(
                    count_fds,
                    (
                        q.try_clone().expect("clone"),
                        event.try_clone().expect("clone"),
                    ),
                    method,
                )
            })
            .collect();
        let counts: Vec<usize> = (0..5)
            .map(|_| q.get_timeout(PATIENCE).expect("a count"))
            .collect();
        event.set();
        for p in &mut procs {
            p.join().expect("join");
        }
        assert!(
            counts.windows(2).all(|w| w[0] == w[1]),
            "{method:?}: {counts:?}"
        );
    });
}

fn parent_attributes(_: ()) -> (u32, String) {
    match outlast_ipc::parent_process() {
        Some(parent) => (parent.pid(), parent.name().to_string()),
        None => (0, String::new()),
    }
}

fn process_test_parent_process_attributes() {
    assert!(
        outlast_ipc::parent_process().is_none(),
        "the main process has no parent_process()"
    );
    both(|method| {
        let mut p = start(parent_attributes, (), method);
        let (pid, name) = p.join().expect("join");
        assert_eq!(pid, std::process::id());
        assert_eq!(name, "MainProcess");
    });
}

/// The child starts a grandchild and exits; the grandchild sees its
/// parent die through `parent_process()`.
fn create_grandchild((out, method): (Connection, StartMethod)) {
    let mut p = Process::new(watch_parent, out)
        .start_method(method)
        .die_with_parent(false);
    if p.start().is_ok() {
        // Exit at once; the grandchild outlives us (die_with_parent off).
        std::mem::forget(p);
    }
}

fn watch_parent(mut out: Connection) {
    let alive_first = outlast_ipc::parent_process().is_some_and(|p| p.is_alive());
    let died = outlast_ipc::parent_process().is_some_and(|p| p.join_timeout(PATIENCE));
    let _ = out.send(&(alive_first, died));
}

fn process_test_parent_process() {
    both(|method| {
        let (mut rx, tx) = Pipe::simplex().expect("pipe");
        let mut p = start(create_grandchild, (tx, method), method);
        p.join().expect("join");
        let (alive_first, died): (bool, bool) = rx.recv_timeout(PATIENCE).expect("a report");
        // The child may already be gone when the grandchild first looks.
        let _ = alive_first;
        assert!(died, "{method:?}: the grandchild never saw its parent die");
    });
}

fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn process_test_many_processes() {
    both(|method| {
        let n = if method == StartMethod::Spawn { 5 } else { 50 };
        let mut procs: Vec<_> = (0..n).map(|_| start(nap, 10, method)).collect();
        for p in &mut procs {
            p.join().expect("join");
            assert_eq!(p.exit_code(), Some(0));
        }
        let mut procs: Vec<_> = (0..n).map(|_| start(nap, 100_000, method)).collect();
        for p in &mut procs {
            p.terminate().expect("terminate");
        }
        for p in &mut procs {
            let _ = p.join();
            assert_eq!(p.exit_code(), Some(-libc::SIGTERM));
        }
    });
}

/// Whether any descriptor of this process is the memfd named `name`.
fn holds_memfd(name: String) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return false;
    };
    dir.flatten()
        .any(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().contains(&name)))
}

/// CPython's `_TestCloseFds` and `close_fds`: a descriptor of the parent's
/// that lacks close-on-exec is not inherited by a child (spawned or
/// forked); only what the child was handed is open there.
fn close_fds_test_a_child_keeps_only_the_descriptors_it_was_given() {
    let name = format!("conformance-stray-{}", std::process::id());
    let cname = std::ffi::CString::new(name.clone()).expect("a name");
    // SAFETY: memfd_create with a NUL-terminated name and no flags: a new
    // descriptor we own, deliberately without close-on-exec.
    let stray = unsafe { libc::memfd_create(cname.as_ptr(), 0) };
    assert!(stray > 2);
    assert!(holds_memfd(name.clone()));
    both(|method| {
        let mut p = start(holds_memfd, name.clone(), method);
        assert!(
            !p.join().expect("join"),
            "{method:?}: the child inherited {name}"
        );
    });
    // SAFETY: closing the descriptor made above.
    unsafe { libc::close(stray) };
}

// ---- _TestQueue -------------------------------------------------------------

fn queue_test_put_get_timeouts() {
    let q = Queue::<u32>::new(2).expect("queue");
    assert!(matches!(q.try_get(), Err(GetTimeoutError::Empty)));
    let started = Instant::now();
    assert!(matches!(
        q.get_timeout(Duration::from_millis(100)),
        Err(GetTimeoutError::Empty)
    ));
    assert!(started.elapsed() >= Duration::from_millis(100));
    q.put(&1).expect("put");
    q.put(&2).expect("put");
    assert!(q.is_full());
    assert!(matches!(q.try_put(&3), Err(PutTimeoutError::Full)));
    assert!(matches!(
        q.put_timeout(&3, Duration::from_millis(50)),
        Err(PutTimeoutError::Full)
    ));
    assert_eq!(q.get().expect("get"), 1);
    assert_eq!(q.get().expect("get"), 2);
    assert!(q.is_empty());
}

fn queue_test_qsize() {
    let q = Queue::<u32>::new(0).expect("queue");
    assert_eq!(q.len(), 0);
    q.put(&1).expect("put");
    assert_eq!(q.len(), 1);
    q.put(&5).expect("put");
    assert_eq!(q.len(), 2);
    q.get().expect("get");
    assert_eq!(q.len(), 1);
    q.get().expect("get");
    assert_eq!(q.len(), 0);
}

fn task_done_worker(q: JoinableQueue<Option<u32>>) {
    q.close();
    while let Ok(Some(_)) = q.get() {
        let _ = q.task_done();
    }
}

fn queue_test_task_done() {
    both(|method| {
        let q = JoinableQueue::<Option<u32>>::new(0).expect("queue");
        let mut workers: Vec<_> = (0..4)
            .map(|_| start(task_done_worker, q.try_clone().expect("clone"), method))
            .collect();
        for i in 0..10 {
            q.put(&Some(i)).expect("put");
        }
        assert_eq!(q.join_timeout(PATIENCE), Ok(()), "every task is done");
        for _ in &workers {
            q.put(&None).expect("put");
        }
        for w in &mut workers {
            w.join().expect("join");
        }
        assert_eq!(q.unfinished(), 4, "the stop markers are not marked done");
    });
}

fn queue_test_closed_queue_put_get_exceptions() {
    let q = Queue::<u32>::new(0).expect("queue");
    q.close();
    assert!(matches!(q.put(&1), Err(PutError::Closed)));
    let jq = JoinableQueue::<u32>::new(0).expect("queue");
    jq.close();
    assert!(matches!(jq.put(&1), Err(PutError::Closed)));
}

fn join_queue(q: JoinableQueue<String>) -> bool {
    q.join_timeout(PATIENCE).is_ok()
}

fn get_one(q: Queue<String>) -> Result<String, String> {
    q.close();
    q.get_timeout(PATIENCE).map_err(|e| e.to_string())
}

fn put_one(q: Queue<String>) -> Result<(), String> {
    q.put(&"data".to_string()).map_err(|e| e.to_string())
}

fn assert_shut(q: &Queue<String>) {
    assert!(matches!(q.put(&"data".into()), Err(PutError::ShutDown)));
    assert!(matches!(q.try_put(&"data".into()), Err(e) if e.is_shut_down()));
    assert!(matches!(q.try_get(), Err(e) if e.is_shut_down()));
    // ... and in another process, too.
    let mut p = start(put_one, q.try_clone().expect("clone"), StartMethod::Fork);
    assert!(p
        .join()
        .expect("join")
        .is_err_and(|e| e.contains("shut down")));
    let mut p = start(get_one, q.try_clone().expect("clone"), StartMethod::Fork);
    assert!(p
        .join()
        .expect("join")
        .is_err_and(|e| e.contains("shut down")));
}

fn queue_test_shutdown_empty() {
    let q = Queue::<String>::new(0).expect("queue");
    q.shutdown(false);
    assert_eq!(q.len(), 0);
    assert_shut(&q);
    let jq = JoinableQueue::<String>::new(0).expect("queue");
    let mut join = start(
        join_queue,
        jq.try_clone().expect("clone"),
        StartMethod::Fork,
    );
    jq.shutdown(false);
    assert!(
        join.join().expect("join"),
        "nothing unfinished: join returns"
    );
    assert_shut(&jq);
}

fn queue_test_shutdown_nonempty() {
    let q = Queue::<String>::new(1).expect("queue");
    q.put(&"data".into()).expect("put");
    q.shutdown(false);
    assert_eq!(q.len(), 1);
    let mut p = start(get_one, q.try_clone().expect("clone"), StartMethod::Fork);
    assert_eq!(p.join().expect("join"), Ok("data".to_string()));
    assert_shut(&q);

    let jq = JoinableQueue::<String>::new(1).expect("queue");
    jq.put(&"data".into()).expect("put");
    let mut join = start(
        join_queue,
        jq.try_clone().expect("clone"),
        StartMethod::Fork,
    );
    jq.shutdown(false);
    assert_eq!(jq.get().expect("get"), "data");
    assert!(join.is_alive(), "one unfinished task: join waits");
    assert_shut(&jq);
    jq.task_done().expect("task_done");
    assert!(join.join().expect("join"));
}

fn queue_test_shutdown_immediate() {
    let q = Queue::<String>::new(0).expect("queue");
    q.put(&"data".into()).expect("put");
    q.shutdown(true);
    assert_eq!(q.len(), 0);
    assert_shut(&q);

    let jq = JoinableQueue::<String>::new(0).expect("queue");
    jq.put(&"data".into()).expect("put");
    let mut join = start(
        join_queue,
        jq.try_clone().expect("clone"),
        StartMethod::Fork,
    );
    jq.shutdown(true);
    assert!(join.join().expect("join"), "dropped items count as done");
    assert_eq!(jq.len(), 0);
    assert_shut(&jq);
    assert!(jq.task_done().is_err(), "every task is already done");
}

fn queue_test_shutdown_immediate_with_unfinished() {
    let q = JoinableQueue::<String>::new(0).expect("queue");
    q.put(&"data".into()).expect("put");
    q.put(&"data".into()).expect("put");
    let mut join = start(join_queue, q.try_clone().expect("clone"), StartMethod::Fork);
    assert_eq!(q.get().expect("get"), "data");
    q.shutdown(true);
    assert_eq!(q.len(), 0);
    assert!(join.is_alive(), "the task taken is still unfinished");
    assert_shut(&q);
    q.task_done().expect("the taken one");
    assert!(q.task_done().is_err());
    assert!(join.join().expect("join"));
}

// ---- _TestLock --------------------------------------------------------------

fn lock_test_lock() {
    let lock = Lock::new().expect("lock");
    let guard = lock.lock().expect("acquire");
    assert!(lock.is_locked());
    assert!(
        matches!(lock.try_lock(), Err(outlast_ipc::sync::LockError::Timeout)),
        "acquire(False) on a held lock is False, from its own thread too"
    );
    drop(guard);
    assert!(!lock.is_locked());
}

fn lock_test_rlock() {
    let lock = RLock::new().expect("rlock");
    let a = lock.lock().expect("acquire");
    assert!(lock.is_locked());
    let b = lock.lock().expect("again");
    let c = lock.try_lock().expect("and again");
    drop(c);
    assert!(lock.is_locked());
    drop(b);
    drop(a);
    assert!(!lock.is_locked());
}

fn lock_and_report((lock, event, res): (Lock, Event, Value<u8>)) {
    let guard = lock.lock();
    let _ = res.set(u8::from(lock.is_locked()));
    event.set();
    std::thread::sleep(Duration::from_millis(200));
    drop(guard);
}

fn lock_test_lock_locked_2processes() {
    both(|method| {
        let lock = Lock::new().expect("lock");
        let event = Event::new().expect("event");
        let res = Value::new(0u8).expect("value");
        let mut p = start(
            lock_and_report,
            (
                lock.try_clone().expect("clone"),
                event.try_clone().expect("clone"),
                res.try_clone().expect("clone"),
            ),
            method,
        );
        assert!(event.wait_timeout(PATIENCE));
        assert!(lock.is_locked());
        assert!(lock.try_lock().is_err());
        assert_eq!(res.get().expect("get"), 1);
        p.join().expect("join");
    });
}

// ---- _TestSemaphore ---------------------------------------------------------

fn semaphore_test_semaphore() {
    let sem = Semaphore::new(2).expect("semaphore");
    assert_eq!(sem.value(), 2);
    assert!(sem.try_acquire());
    assert_eq!(sem.value(), 1);
    assert!(sem.try_acquire());
    assert_eq!(sem.value(), 0);
    assert!(!sem.try_acquire());
    sem.release();
    assert_eq!(sem.value(), 1);
    sem.release();
    sem.release();
    sem.release();
    assert_eq!(sem.value(), 4);
}

fn semaphore_test_bounded_semaphore() {
    let sem = BoundedSemaphore::new(2).expect("semaphore");
    assert!(sem.try_acquire());
    assert!(sem.try_acquire());
    assert!(!sem.try_acquire());
    sem.release().expect("release");
    sem.release().expect("release");
    assert!(
        sem.release().is_err(),
        "past the bound: Python's ValueError"
    );
    assert_eq!(sem.value(), 2);
}

fn semaphore_test_timeout() {
    let sem = Semaphore::new(0).expect("semaphore");
    assert!(!sem.try_acquire());
    let started = Instant::now();
    assert!(!sem.acquire_timeout(Duration::from_millis(100)));
    assert!(started.elapsed() >= Duration::from_millis(100));
}

// ---- _TestCondition ---------------------------------------------------------

/// CPython's `f`: take the lock, say "sleeping", wait, say "woken".
fn cond_waiter((cond, sleeping, woken, timeout_ms): (Condition, Semaphore, Semaphore, u64)) {
    let Ok(guard) = cond.lock() else { return };
    sleeping.release();
    let timeout = if timeout_ms == 0 {
        PATIENCE
    } else {
        Duration::from_millis(timeout_ms)
    };
    let _ = cond.wait_timeout(guard, timeout);
    woken.release();
}

type CondSet = (Condition, Semaphore, Semaphore);

fn cond_set() -> CondSet {
    (
        Condition::new().expect("condition"),
        Semaphore::new(0).expect("semaphore"),
        Semaphore::new(0).expect("semaphore"),
    )
}

fn start_waiters(
    set: &CondSet,
    n: usize,
    timeout_ms: u64,
    method: StartMethod,
) -> Vec<Process<(Condition, Semaphore, Semaphore, u64), ()>> {
    let (cond, sleeping, woken) = set;
    let procs = (0..n)
        .map(|_| {
            start(
                cond_waiter,
                (
                    cond.try_clone().expect("clone"),
                    sleeping.try_clone().expect("clone"),
                    woken.try_clone().expect("clone"),
                    timeout_ms,
                ),
                method,
            )
        })
        .collect();
    for _ in 0..n {
        assert!(sleeping.acquire_timeout(PATIENCE), "a waiter never slept");
    }
    procs
}

fn notify(cond: &Condition, n: u32) {
    let guard = cond.lock().expect("lock");
    cond.notify(n);
    drop(guard);
}

fn condition_test_notify() {
    both(|method| {
        let set = cond_set();
        let mut procs = start_waiters(&set, 2, 0, method);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(set.2.value(), 0, "no one woke by itself");
        notify(&set.0, 1);
        eventually("one woken", || set.2.value() == 1);
        notify(&set.0, 1);
        eventually("both woken", || set.2.value() == 2);
        for p in &mut procs {
            p.join().expect("join");
        }
    });
}

fn condition_test_notify_all() {
    both(|method| {
        let set = cond_set();
        // Some that time out.
        let mut procs = start_waiters(&set, 3, 100, method);
        for _ in 0..3 {
            assert!(set.2.acquire_timeout(PATIENCE), "timed out and woke");
        }
        assert_eq!(set.2.value(), 0);
        // Some that wait to be notified.
        procs.extend(start_waiters(&set, 3, 0, method));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(set.2.value(), 0);
        let guard = set.0.lock().expect("lock");
        set.0.notify_all();
        drop(guard);
        for _ in 0..3 {
            assert!(set.2.acquire_timeout(PATIENCE), "notified and woke");
        }
        for p in &mut procs {
            p.join().expect("join");
        }
    });
}

fn condition_test_notify_n() {
    both(|method| {
        let set = cond_set();
        let mut procs = start_waiters(&set, 6, 0, method);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(set.2.value(), 0);
        notify(&set.0, 2);
        eventually("two woken", || set.2.value() == 2);
        // At most n: no third one wakes.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(set.2.value(), 2, "notify(2) woke more than 2");
        notify(&set.0, 4);
        eventually("all six woken", || set.2.value() == 6);
        notify(&set.0, 3);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(set.2.value(), 6);
        for p in &mut procs {
            p.join().expect("join");
        }
    });
}

fn condition_test_timeout() {
    let cond = Condition::new().expect("condition");
    let guard = cond.lock().expect("lock");
    let started = Instant::now();
    let (_guard, timed_out) = cond
        .wait_timeout(guard, Duration::from_millis(100))
        .expect("wait");
    assert!(timed_out);
    assert!(started.elapsed() >= Duration::from_millis(100));
}

fn waitfor_child((cond, state): (Condition, Value<i32>)) -> bool {
    let Ok(guard) = cond.lock() else { return false };
    let _ = state.set(0);
    cond.notify(1);
    match cond.wait_until(guard, PATIENCE, || state.get().is_ok_and(|v| v == 4)) {
        Ok((_guard, timed_out)) => !timed_out && state.get().is_ok_and(|v| v == 4),
        Err(_) => false,
    }
}

fn condition_test_waitfor() {
    both(|method| {
        let cond = Condition::new().expect("condition");
        let state = Value::new(-1i32).expect("value");
        let mut p = start(
            waitfor_child,
            (
                cond.try_clone().expect("clone"),
                state.try_clone().expect("clone"),
            ),
            method,
        );
        let guard = cond.lock().expect("lock");
        let (guard, timed_out) = cond
            .wait_until(guard, PATIENCE, || state.get().is_ok_and(|v| v == 0))
            .expect("wait");
        assert!(!timed_out);
        drop(guard);
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(10));
            let guard = cond.lock().expect("lock");
            let v = state.get().expect("get");
            state.set(v + 1).expect("set");
            cond.notify(1);
            drop(guard);
        }
        assert!(p.join().expect("join"), "{method:?}");
    });
}

fn waitfor_timeout_child((cond, state, sem): (Condition, Value<i32>, Semaphore)) -> bool {
    sem.release();
    let Ok(guard) = cond.lock() else { return false };
    let started = Instant::now();
    let expected = Duration::from_millis(100);
    match cond.wait_until(guard, expected, || state.get().is_ok_and(|v| v == 4)) {
        Ok((_guard, timed_out)) => timed_out && started.elapsed() >= expected,
        Err(_) => false,
    }
}

fn condition_test_waitfor_timeout() {
    both(|method| {
        let cond = Condition::new().expect("condition");
        let state = Value::new(0i32).expect("value");
        let sem = Semaphore::new(0).expect("semaphore");
        let mut p = start(
            waitfor_timeout_child,
            (
                cond.try_clone().expect("clone"),
                state.try_clone().expect("clone"),
                sem.try_clone().expect("clone"),
            ),
            method,
        );
        assert!(sem.acquire_timeout(PATIENCE));
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(10));
            let guard = cond.lock().expect("lock");
            let v = state.get().expect("get");
            state.set(v + 1).expect("set");
            cond.notify(1);
            drop(guard);
        }
        assert!(p.join().expect("join"), "{method:?}");
    });
}

// ---- _TestEvent -------------------------------------------------------------

fn set_later(event: Event) {
    std::thread::sleep(Duration::from_millis(50));
    event.set();
}

fn event_test_event() {
    both(|method| {
        let event = Event::new().expect("event");
        assert!(!event.is_set());
        assert!(!event.wait_timeout(Duration::ZERO));
        assert!(!event.wait_timeout(Duration::from_millis(50)));
        event.set();
        assert!(event.is_set());
        assert!(event.wait_timeout(Duration::ZERO));
        event.clear();
        assert!(!event.is_set());
        let mut p = start(set_later, event.try_clone().expect("clone"), method);
        assert!(event.wait_timeout(PATIENCE));
        p.join().expect("join");
    });
}

// ---- _TestBarrier -----------------------------------------------------------

const N: u32 = 5;

/// CPython's `run_threads`: `f` in N - 1 children and here.
fn run_parties<A: serde::Serialize + serde::de::DeserializeOwned>(
    f: fn(A) -> bool,
    args: impl Fn() -> A,
    method: StartMethod,
) {
    let mut procs: Vec<_> = (0..N - 1).map(|_| start(f, args(), method)).collect();
    let here = f(args());
    for p in &mut procs {
        assert!(p.join().expect("join"), "a party failed ({method:?})");
    }
    assert!(here, "this party failed ({method:?})");
}

/// A shared counter (CPython's `DummyList`, counting appends).
fn counter() -> Value<u32> {
    Value::new(0).expect("counter")
}

fn multipass((barrier, before, after, passes): (Barrier, Value<u32>, Value<u32>, u32)) -> bool {
    for i in 0..passes {
        before.fetch_add(1);
        if after.load() != i * N {
            return false;
        }
        if barrier.wait().is_err() {
            return false;
        }
        after.fetch_add(1);
        if before.load() != (i + 1) * N {
            return false;
        }
        if barrier.wait().is_err() {
            return false;
        }
    }
    barrier.n_waiting() == 0 && !barrier.is_broken()
}

fn barrier_passes(passes: u32) {
    both(|method| {
        let barrier = Barrier::new(N).expect("barrier").with_timeout(PATIENCE);
        let (before, after) = (counter(), counter());
        run_parties(
            multipass,
            || {
                (
                    barrier.try_clone().expect("clone"),
                    before.try_clone().expect("clone"),
                    after.try_clone().expect("clone"),
                    passes,
                )
            },
            method,
        );
    });
}

fn barrier_test_barrier() {
    barrier_passes(1);
}

fn barrier_test_barrier_10() {
    barrier_passes(10);
}

// Wire-level clones for parties: a handle and the index queue.
fn wait_return((barrier, q): (Barrier, Queue<u32>)) -> bool {
    match barrier.wait() {
        Ok(i) => q.put(&i).is_ok(),
        Err(_) => false,
    }
}

fn barrier_test_wait_return() {
    both(|method| {
        let barrier = Barrier::new(N).expect("barrier").with_timeout(PATIENCE);
        let q = Queue::<u32>::new(0).expect("queue");
        run_parties(
            wait_return,
            || {
                (
                    barrier.try_clone().expect("clone"),
                    q.try_clone().expect("clone"),
                )
            },
            method,
        );
        let mut results: Vec<u32> = (0..N)
            .map(|_| q.get_timeout(PATIENCE).expect("index"))
            .collect();
        results.sort_unstable();
        assert_eq!(
            results,
            (0..N).collect::<Vec<_>>(),
            "each index once, one 0"
        );
    });
}

/// The action appends to a counter in a named segment every party maps.
static ACTION_COUNT: std::sync::OnceLock<Array<u32>> = std::sync::OnceLock::new();

fn count_action() {
    if let Some(counter) = ACTION_COUNT.get() {
        counter.fetch_add(0, 1);
    }
}

fn action_party((barrier, counter): (Barrier, Array<u32>)) -> bool {
    let _ = ACTION_COUNT.set(counter);
    let passed = barrier.wait().is_ok();
    // The action ran before anyone was released.
    passed && ACTION_COUNT.get().and_then(|c| c.get(0).ok().flatten()) == Some(1)
}

fn barrier_test_action() {
    // One counter for both start methods: the action in this process uses
    // the handle it was first given (a second counter made a spawn round
    // fail whenever this process happened to arrive last).
    let counter = Array::<u32>::new(1, 0).expect("counter");
    both(|method| {
        let barrier = Barrier::new(N)
            .expect("barrier")
            .with_timeout(PATIENCE)
            .with_action(count_action);
        let mut procs: Vec<_> = (0..N - 1)
            .map(|_| {
                start(
                    action_party,
                    (
                        barrier.try_clone().expect("clone"),
                        counter.try_clone().expect("clone"),
                    ),
                    method,
                )
            })
            .collect();
        // This process's party: the action sees its own handle's counter.
        let _ = ACTION_COUNT.set(counter.try_clone().expect("clone"));
        let here = barrier.wait().is_ok();
        for p in &mut procs {
            assert!(p.join().expect("join"), "{method:?}");
        }
        assert!(here);
        assert_eq!(counter.get(0).expect("get"), Some(1), "the action ran once");
        counter.set(0, 0).expect("reset the counter");
    });
}

fn abort_party((barrier, ok, broken): (Barrier, Value<u32>, Value<u32>)) -> bool {
    match barrier.wait() {
        Ok(i) if i == N / 2 => {
            barrier.abort();
            return true;
        }
        Ok(_) => {}
        Err(_) => return false,
    }
    match barrier.wait() {
        Ok(_) => {
            ok.fetch_add(1);
        }
        Err(BarrierError::Broken) | Err(BarrierError::Timeout) => {
            broken.fetch_add(1);
        }
        Err(_) => return false,
    }
    true
}

fn barrier_test_abort() {
    both(|method| {
        let barrier = Barrier::new(N).expect("barrier").with_timeout(PATIENCE);
        let (ok, broken) = (counter(), counter());
        run_parties(
            abort_party,
            || {
                (
                    barrier.try_clone().expect("clone"),
                    ok.try_clone().expect("clone"),
                    broken.try_clone().expect("clone"),
                )
            },
            method,
        );
        assert_eq!(ok.load(), 0);
        assert_eq!(broken.load(), N - 1);
        assert!(barrier.is_broken());
    });
}

fn reset_party((barrier, r1, r2, r3): (Barrier, Value<u32>, Value<u32>, Value<u32>)) -> bool {
    let Ok(i) = barrier.wait() else { return false };
    if i == N / 2 {
        let started = Instant::now();
        while barrier.n_waiting() < N - 1 {
            if started.elapsed() > PATIENCE {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if barrier.reset().is_err() {
            return false;
        }
    } else {
        match barrier.wait() {
            Ok(_) => {
                r1.fetch_add(1);
            }
            Err(_) => {
                r2.fetch_add(1);
            }
        }
    }
    if barrier.wait().is_err() {
        return false;
    }
    r3.fetch_add(1);
    true
}

fn barrier_test_reset() {
    both(|method| {
        let barrier = Barrier::new(N).expect("barrier").with_timeout(PATIENCE);
        let (r1, r2, r3) = (counter(), counter(), counter());
        run_parties(
            reset_party,
            || {
                (
                    barrier.try_clone().expect("clone"),
                    r1.try_clone().expect("clone"),
                    r2.try_clone().expect("clone"),
                    r3.try_clone().expect("clone"),
                )
            },
            method,
        );
        assert_eq!((r1.load(), r2.load(), r3.load()), (0, N - 1, N));
    });
}

type AbortReset = (Barrier, Barrier, Value<u32>, Value<u32>, Value<u32>);

fn abort_and_reset_party((barrier, barrier2, r1, r2, r3): AbortReset) -> bool {
    match barrier.wait() {
        Ok(i) if i == N / 2 => barrier.abort(),
        Ok(_) => match barrier.wait() {
            Ok(_) => {
                r1.fetch_add(1);
            }
            Err(_) => {
                r2.fetch_add(1);
            }
        },
        Err(_) => return false,
    }
    // Everyone has left the broken barrier before the reset, and no one
    // enters it again before.
    match barrier2.wait() {
        Ok(i) if i == N / 2 => {
            if barrier.reset().is_err() {
                return false;
            }
        }
        Ok(_) => {}
        Err(_) => return false,
    }
    if barrier2.wait().is_err() || barrier.wait().is_err() {
        return false;
    }
    r3.fetch_add(1);
    true
}

fn barrier_test_abort_and_reset() {
    both(|method| {
        let barrier = Barrier::new(N).expect("barrier").with_timeout(PATIENCE);
        let barrier2 = Barrier::new(N).expect("barrier").with_timeout(PATIENCE);
        let (r1, r2, r3) = (counter(), counter(), counter());
        run_parties(
            abort_and_reset_party,
            || {
                (
                    barrier.try_clone().expect("clone"),
                    barrier2.try_clone().expect("clone"),
                    r1.try_clone().expect("clone"),
                    r2.try_clone().expect("clone"),
                    r3.try_clone().expect("clone"),
                )
            },
            method,
        );
        assert_eq!((r1.load(), r2.load(), r3.load()), (0, N - 1, N));
    });
}

fn late_party((barrier, results, explicit): (Barrier, Value<u32>, bool)) -> bool {
    let Ok(i) = barrier.wait() else { return false };
    if i == N / 2 {
        // One party is late.
        std::thread::sleep(Duration::from_millis(1000));
    }
    let second = if explicit {
        barrier.wait_timeout(Duration::from_millis(500))
    } else {
        barrier.wait()
    };
    if second.is_err() {
        results.fetch_add(1);
    }
    true
}

fn barrier_test_timeout() {
    both(|method| {
        let barrier = Barrier::new(N).expect("barrier").with_timeout(PATIENCE);
        let results = counter();
        run_parties(
            late_party,
            || {
                (
                    barrier.try_clone().expect("clone"),
                    results.try_clone().expect("clone"),
                    true,
                )
            },
            method,
        );
        assert_eq!(results.load(), N, "every party saw the barrier break");
    });
}

fn barrier_test_default_timeout() {
    both(|method| {
        let barrier = Barrier::new(N)
            .expect("barrier")
            .with_timeout(Duration::from_millis(500));
        let results = counter();
        run_parties(
            late_party,
            || {
                (
                    barrier.try_clone().expect("clone"),
                    results.try_clone().expect("clone"),
                    false,
                )
            },
            method,
        );
        assert_eq!(results.load(), N, "wait() used the default timeout");
    });
}

fn barrier_test_single_thread() {
    let b = Barrier::new(1).expect("barrier");
    assert_eq!(b.wait(), Ok(0));
    assert_eq!(b.wait(), Ok(0));
}

fn thousand_party((barrier, mut out, lock, passes): (Barrier, Connection, Lock, u32)) {
    for i in 0..passes {
        if barrier.wait().is_err() {
            return;
        }
        let _guard = lock.lock();
        let _ = out.send(&i);
    }
}

fn barrier_test_thousand() {
    both(|method| {
        let passes = 200;
        let barrier = Barrier::new(N).expect("barrier").with_timeout(PATIENCE);
        let lock = Lock::new().expect("lock");
        let (mut rx, tx) = Pipe::simplex().expect("pipe");
        let mut procs: Vec<_> = (0..N)
            .map(|_| {
                start(
                    thousand_party,
                    (
                        barrier.try_clone().expect("clone"),
                        tx.try_clone().expect("clone"),
                        lock.try_clone().expect("clone"),
                        passes,
                    ),
                    method,
                )
            })
            .collect();
        drop(tx);
        for i in 0..passes {
            for _ in 0..N {
                assert_eq!(rx.recv_timeout::<u32>(PATIENCE).expect("a pass"), i);
            }
        }
        for p in &mut procs {
            p.join().expect("join");
        }
    });
}

// ---- _TestValue, _TestArray ---------------------------------------------------

type Values = (Value<i32>, Value<f64>, Value<i16>, Value<i64>, Value<u8>);

fn set_values(v: Values) {
    let _ = v.0.set(24234);
    let _ = v.1.set(-4.25);
    let _ = v.2.set(234);
    let _ = v.3.set(1 << 34);
    let _ = v.4.set(b'y');
}

fn value_test_value() {
    both(|method| {
        let values: Values = (
            Value::new(4343).expect("i"),
            Value::new(3.625).expect("d"),
            Value::new(-232).expect("h"),
            Value::new(1 << 33).expect("q"),
            Value::new(b'x').expect("c"),
        );
        assert_eq!(values.0.get().expect("get"), 4343);
        assert_eq!(values.1.get().expect("get"), 3.625);
        let theirs = (
            values.0.try_clone().expect("clone"),
            values.1.try_clone().expect("clone"),
            values.2.try_clone().expect("clone"),
            values.3.try_clone().expect("clone"),
            values.4.try_clone().expect("clone"),
        );
        start(set_values, theirs, method).join().expect("join");
        assert_eq!(values.0.get().expect("get"), 24234);
        assert_eq!(values.1.get().expect("get"), -4.25);
        assert_eq!(values.2.get().expect("get"), 234);
        assert_eq!(values.3.get().expect("get"), 1 << 34);
        assert_eq!(values.4.get().expect("get"), b'y');
    });
}

fn set_raw((a, b): (RawValue<i32>, RawValue<f64>)) {
    a.set(24234);
    b.set(-4.25);
}

fn value_test_rawvalue() {
    both(|method| {
        let a = RawValue::new(4343i32).expect("raw");
        let b = RawValue::new(3.625f64).expect("raw");
        start(
            set_raw,
            (a.try_clone().expect("clone"), b.try_clone().expect("clone")),
            method,
        )
        .join()
        .expect("join");
        assert_eq!((a.get(), b.get()), (24234, -4.25));
    });
}

fn value_test_getobj_getlock() {
    let own = Value::new(5i32).expect("value");
    assert!(own.given_lock().is_none());
    let lock = Lock::new().expect("lock");
    let given = Value::with_lock(5i32, lock.try_clone().expect("clone")).expect("value");
    assert!(given.given_lock().is_some());
    // The given lock is the lock: holding it holds the value.
    let held = lock.lock().expect("lock");
    assert!(matches!(
        given.lock_timeout(Duration::from_millis(20)),
        Err(outlast_ipc::sync::LockError::Timeout)
    ));
    drop(held);
    *given.lock().expect("lock") += 1;
    assert_eq!(given.get().expect("get"), 6);
    // lock=False: a value with no lock at all.
    let raw: RawValue<i32> = Value::without_lock(5).expect("raw");
    assert_eq!(raw.get(), 5);
    let rlock = RLock::new().expect("rlock");
    let shared = Value::with_lock(1u32, rlock).expect("value");
    assert_eq!(shared.get().expect("get"), 1);
}

fn prefix_sums(arr: Array<i32>) {
    if let Ok(mut seq) = arr.lock() {
        for i in 1..seq.len() {
            seq[i] += seq[i - 1];
        }
    }
}

fn prefix_sums_raw(arr: RawArray<i32>) {
    for i in 1..arr.len() {
        let v = arr.get(i).unwrap_or(0) + arr.get(i - 1).unwrap_or(0);
        arr.set(i, v);
    }
}

fn expected_sums(seq: &[i32]) -> Vec<i32> {
    let mut out = seq.to_vec();
    for i in 1..out.len() {
        out[i] += out[i - 1];
    }
    out
}

const SEQ: [i32; 10] = [680, 626, 934, 821, 150, 233, 548, 982, 714, 831];

fn array_test_array() {
    both(|method| {
        let arr = Array::from_slice(&SEQ).expect("array");
        assert_eq!(arr.len(), SEQ.len());
        assert_eq!(arr.get(3).expect("get"), Some(SEQ[3]));
        let mut seq = SEQ.to_vec();
        seq[4..8].copy_from_slice(&[1, 2, 3, 4]);
        arr.lock().expect("lock")[4..8].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(arr.to_vec().expect("to_vec"), seq);
        start(prefix_sums, arr.try_clone().expect("clone"), method)
            .join()
            .expect("join");
        assert_eq!(arr.to_vec().expect("to_vec"), expected_sums(&seq));
    });
}

fn array_test_array_from_size() {
    for _ in 0..3 {
        let arr = Array::<i32>::new(10, 0).expect("array");
        assert_eq!(arr.len(), 10);
        assert_eq!(arr.to_vec().expect("to_vec"), vec![0; 10]);
        arr.copy_from_slice(&(0..10).collect::<Vec<_>>())
            .expect("copy");
        assert_eq!(arr.to_vec().expect("to_vec"), (0..10).collect::<Vec<_>>());
    }
}

fn array_test_rawarray() {
    both(|method| {
        let arr = RawArray::from_slice(&SEQ).expect("array");
        start(prefix_sums_raw, arr.try_clone().expect("clone"), method)
            .join()
            .expect("join");
        assert_eq!(arr.to_vec(), expected_sums(&SEQ));
    });
}

fn array_test_getobj_getlock_obj() {
    let own = Array::from_slice(&SEQ).expect("array");
    assert!(own.given_lock().is_none());
    let lock = Lock::new().expect("lock");
    let given = Array::with_lock(&SEQ, lock.try_clone().expect("clone")).expect("array");
    let held = lock.lock().expect("lock");
    assert!(given.lock_timeout(Duration::from_millis(20)).is_err());
    drop(held);
    assert!(given.lock().is_ok());
    let raw: RawArray<i32> = Array::without_lock(&SEQ).expect("raw");
    assert_eq!(raw.to_vec(), SEQ.to_vec());
}

// ---- TestWait (multiprocessing.connection.wait) -------------------------------

fn send_three((mut out, id): (Connection, u32)) {
    for i in 0..3 {
        std::thread::sleep(Duration::from_millis(10));
        let _ = out.send(&(id, i as u32));
    }
}

fn wait_test_wait() {
    both(|method| {
        let mut readers = Vec::new();
        let mut procs = Vec::new();
        for id in 0..4 {
            let (rx, tx) = Pipe::simplex().expect("pipe");
            procs.push(start(send_three, (tx, id), method));
            readers.push(rx);
        }
        let mut got = Vec::new();
        let mut open: Vec<bool> = vec![true; readers.len()];
        while open.iter().any(|&o| o) {
            let waiting: Vec<&dyn Waitable> = readers
                .iter()
                .zip(&open)
                .filter(|(_, &o)| o)
                .map(|(r, _)| r as &dyn Waitable)
                .collect();
            let indices: Vec<usize> = (0..readers.len()).filter(|&i| open[i]).collect();
            let ready = outlast_ipc::wait(&waiting, Some(PATIENCE)).expect("wait");
            assert!(
                !ready.is_empty(),
                "wait timed out with messages still coming"
            );
            for r in ready {
                let i = indices[r];
                match readers[i].recv::<(u32, u32)>() {
                    Ok(m) => got.push(m),
                    Err(_) => open[i] = false,
                }
            }
        }
        for p in &mut procs {
            p.join().expect("join");
        }
        got.sort_unstable();
        let expected: Vec<(u32, u32)> =
            (0..4).flat_map(|id| (0..3).map(move |i| (id, i))).collect();
        assert_eq!(got, expected, "{method:?}");
    });
}

fn wait_test_wait_timeout() {
    let (a, _a_writer) = Pipe::duplex().expect("pipe");
    let (b, mut b_writer) = Pipe::duplex().expect("pipe");
    let started = Instant::now();
    let ready = outlast_ipc::wait(&[&a, &b], Some(Duration::from_millis(100))).expect("wait");
    assert!(ready.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(100));
    b_writer.send(&1u8).expect("send");
    let ready = outlast_ipc::wait(&[&a, &b], Some(PATIENCE)).expect("wait");
    assert_eq!(ready, vec![1]);
    // Queues and rings take part too (they have no descriptor).
    let q = Queue::<u8>::new(0).expect("queue");
    assert!(
        outlast_ipc::wait(&[&a, &q], Some(Duration::from_millis(20)))
            .expect("wait")
            .is_empty()
    );
    q.put(&7).expect("put");
    assert_eq!(
        outlast_ipc::wait(&[&a, &q], Some(PATIENCE)).expect("wait"),
        vec![1]
    );
}

fn signal_then_sleep((event, ms): (Event, u64)) {
    event.set();
    std::thread::sleep(Duration::from_millis(ms));
}

fn wait_test_wait_integer() {
    both(|method| {
        let event = Event::new().expect("event");
        let mut p = start(
            signal_then_sleep,
            (event.try_clone().expect("clone"), 300),
            method,
        );
        let (a, _aw) = Pipe::duplex().expect("pipe");
        let (b, _bw) = Pipe::duplex().expect("pipe");
        assert!(event.wait_timeout(PATIENCE));
        let sentinel = outlast_ipc::Readable(p.ready_fd().expect("a sentinel"));
        assert!(
            outlast_ipc::wait(&[&a, &sentinel, &b], Some(Duration::ZERO))
                .expect("wait")
                .is_empty()
        );
        let ready = outlast_ipc::wait(&[&a, &sentinel, &b], Some(PATIENCE)).expect("wait");
        assert_eq!(ready, vec![1], "the sentinel is ready once the child exits");
        p.join().expect("join");
    });
}
