//! `Pool` with real processes killed for real: SIGKILLs from outside
//! during `map`, an item that segfaults, a panicking item, an endless
//! `imap`, initializers and recycling, dropping a pool mid-flight, SIGINT
//! to a program mid-`map`, and a user's own `Job` under the supervisor.
//! Single-threaded cases (fork needs that), each checked for leftover
//! children by the harness.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use outlast::pool::{as_completed, wait, Pool, ReturnWhen, TaskError};
use outlast::{BadOutput, Job, JobOutcome, Supervisor, TaskContext};
use outlast_ipc::value::Value;
use outlast_ipc::{Process, StartMethod};
use serde::{Deserialize, Serialize};
use tests::procfs;
use tests::traced::traced;

fn main() {
    outlast_ipc::init();
    // The SIGINT case runs this binary again as the program to interrupt.
    if std::env::args().nth(1).as_deref() == Some("--pool-until-interrupted") {
        pool_until_interrupted();
    }
    tests::harness::run(tests::cases![
        map_is_exact_while_workers_are_killed_fork,
        map_is_exact_while_workers_are_killed_spawn,
        map_is_exact_while_workers_and_their_fork_server_are_killed,
        an_item_that_segfaults_is_an_error_alone,
        a_panicking_item_gives_its_message_and_the_pool_goes_on,
        a_result_nested_past_the_stack_fails_alone_instead_of_aborting,
        imap_over_an_endless_iterator_takes_what_it_needs,
        imap_unordered_gives_every_item_once,
        a_dropped_lazy_map_runs_none_of_its_items_no_worker_started,
        initializer_runs_in_every_worker_and_recycling_replaces_them,
        submit_as_completed_and_wait,
        dropping_a_pool_mid_flight_leaves_no_process,
        sigint_mid_map_ends_the_program_and_its_workers,
        a_users_job_is_exact_under_the_supervisor_with_a_worker_killed,
        a_users_job_through_the_broker_is_exact,
        manager_proxies_work_as_pool_task_arguments,
        a_quick_result_arrives_while_its_worker_runs_a_long_item,
        a_pool_is_a_handle_that_threads_share,
        a_result_is_a_future_an_executor_awaits,
        awaited_imap_results_come_once_each_and_a_dropped_wait_takes_none,
        an_awaited_lazy_map_pulls_a_bounded_batch_of_its_input_per_poll,
        a_large_awaited_result_is_decoded_off_the_polling_thread,
        done_callbacks_run_once_each_and_cannot_wait_on_their_pool,
        callbacks_of_dropped_handles_still_get_their_values,
        map_async_gives_the_whole_list_later_with_a_timeout_a_future_or_a_callback,
        join_timeout_leaves_a_busy_pool_running,
        a_fallible_functions_err_is_its_items_error_in_words,
        imap_and_as_completed_wait_at_most_a_timeout_and_queued_items_cancel,
        starmap_takes_tuples_of_one_to_six,
        an_initializer_hands_a_shared_counter_to_every_worker,
        as_completed_misses_nothing_that_settles_while_it_starts,
        a_failing_initializer_ends_the_map_with_its_cause_not_a_hang,
        workers_are_named_after_the_program_in_every_start_method,
        an_item_may_run_past_the_worker_timeout_unless_an_item_timeout_bounds_it,
        a_worker_stopped_in_a_long_item_is_replaced_and_the_item_runs_again,
    ]);
}

/// Busy for about `micros`, so items take real time.
fn spin(micros: u64) {
    let end = Instant::now() + Duration::from_micros(micros);
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

fn triple_slowly(x: u64) -> u64 {
    spin(20);
    x * 3
}

/// A process outside the pool: SIGKILLs a random live child or grandchild
/// of `parent` (other than itself) every `every_ms`, up to `kills` times,
/// counting in `killed`. Grandchildren are a fork server's workers; the
/// server itself is a child, and fair game.
fn killer((parent, kills, every_ms, killed): (u32, u32, u64, Value<u32>)) {
    let me = std::process::id();
    let mut rng = u64::from(me) | 1;
    let live = |of: u32| -> Vec<u32> {
        procfs::children_of(of)
            .into_iter()
            .filter(|&(p, state)| p != me && state != 'Z')
            .map(|(p, _)| p)
            .collect()
    };
    while killed.load() < kills {
        std::thread::sleep(Duration::from_millis(every_ms));
        let children = live(parent);
        let grandchildren: Vec<u32> = children.iter().flat_map(|&c| live(c)).collect();
        let victims: Vec<u32> = children.into_iter().chain(grandchildren).collect();
        if victims.is_empty() {
            continue;
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let victim = victims[(rng % victims.len() as u64) as usize];
        // SAFETY: kill has no memory arguments.
        if unsafe { libc::kill(victim as i32, libc::SIGKILL) } == 0 {
            killed.fetch_add(1);
        }
    }
}

/// The killer process: (parent, kills, every_ms, counter).
type Killer = Process<(u32, u32, u64, Value<u32>), ()>;

/// Starts [`killer`]; stop it with [`stop_killer`].
fn start_killer(kills: u32, every_ms: u64) -> (Killer, Value<u32>) {
    let killed = Value::new(0u32).expect("counter");
    let mut chaos = Process::new(
        killer,
        (
            std::process::id(),
            kills,
            every_ms,
            killed.try_clone().expect("counter"),
        ),
    )
    // A child of this process, beside the workers it hunts (under the
    // default, forkserver, it would be the server's child). The pool's
    // own thread is running: the killer touches nothing it could hold.
    .start_method(StartMethod::Fork)
    .allow_threads(true);
    chaos.start().expect("killer");
    (chaos, killed)
}

/// Stops the killer; how many it killed.
fn stop_killer(mut chaos: Killer, killed: &Value<u32>) -> u32 {
    let _ = chaos.kill();
    let _ = chaos.join();
    killed.load()
}

fn map_while_killed(method: StartMethod) {
    let pool = Pool::builder(2)
        .start_method(method)
        .max_attempts(10)
        .build()
        .expect("pool");
    let (chaos, counter) = start_killer(4, 40);
    let n = 100_000u64;
    let out = pool.map(triple_slowly, 0..n).expect("map");
    let killed = stop_killer(chaos, &counter);
    assert_eq!(out.len(), n as usize);
    for (i, v) in out.iter().enumerate() {
        assert_eq!(*v, i as u64 * 3, "item {i}");
    }
    assert!(killed > 0, "the killer killed nobody");
    assert!(
        pool.workers_started() >= 2 + u64::from(killed),
        "{} started for {killed} kills",
        pool.workers_started()
    );
}

fn map_is_exact_while_workers_are_killed_fork() {
    map_while_killed(StartMethod::Fork);
}

fn map_is_exact_while_workers_are_killed_spawn() {
    map_while_killed(StartMethod::Spawn);
}

fn map_is_exact_while_workers_and_their_fork_server_are_killed() {
    map_while_killed(StartMethod::ForkServer);
    // The next cases' killers must find only their own workers.
    outlast_ipc::forkserver::stop();
    assert_eq!(outlast_ipc::forkserver::pid(), None);
}

fn segfault_on_13(x: u64) -> u64 {
    if x == 13 {
        let _ = outlast_ipc::os::signals::set_default(libc::SIGSEGV);
        // SAFETY: raising a signal at ourselves, to die as a segfault does.
        unsafe { libc::raise(libc::SIGSEGV) };
    }
    x + 1
}

fn an_item_that_segfaults_is_an_error_alone() {
    let pool = Pool::builder(2).max_attempts(3).build().expect("pool");
    let results: Vec<Result<u64, TaskError>> = pool.imap(segfault_on_13, 0..50u64).collect();
    for (i, r) in results.iter().enumerate() {
        if i == 13 {
            match r {
                Err(TaskError::WorkerDied {
                    attempts,
                    cause,
                    exit_code,
                }) => {
                    assert_eq!(*attempts, 3);
                    assert_eq!(*exit_code, Some(-11), "{cause}");
                    assert!(cause.contains("SIGSEGV"), "{cause}");
                }
                other => panic!("item 13: {other:?}"),
            }
        } else {
            assert_eq!(r.as_ref().ok(), Some(&(i as u64 + 1)), "item {i}");
        }
    }
    // map says which item failed.
    match pool.map(segfault_on_13, [12, 13, 14]) {
        Err(outlast::pool::PoolError::Task { index, .. }) => assert_eq!(index, 1),
        other => panic!("{other:?}"),
    }
    // So does map_async, every time it is asked. (A pool of its own: each
    // map above cost up to six crashes, and a pool that sees more than 20
    // within 10 s stops.)
    let pool = Pool::builder(2).max_attempts(3).build().expect("pool");
    let later = pool
        .map_async(segfault_on_13, [11, 12, 13, 14])
        .expect("map_async");
    for _ in 0..2 {
        match later.get() {
            Err(outlast::pool::PoolError::Task {
                index,
                error: TaskError::WorkerDied { .. },
            }) => assert_eq!(index, 2),
            other => panic!("{other:?}"),
        }
    }
    // Unordered, the error comes once among the others' values (results
    // are taken in runs: the pool's error must stay with its own item).
    let pool = Pool::builder(2).max_attempts(3).build().expect("pool");
    let mut values = Vec::new();
    let mut died = 0;
    for r in pool.imap_unordered(segfault_on_13, 0..50u64) {
        match r {
            Ok(v) => values.push(v),
            Err(TaskError::WorkerDied { attempts: 3, .. }) => died += 1,
            Err(other) => panic!("{other:?}"),
        }
    }
    values.sort_unstable();
    assert_eq!(died, 1);
    assert_eq!(
        values,
        (0..50u64)
            .filter(|&x| x != 13)
            .map(|x| x + 1)
            .collect::<Vec<_>>()
    );
}

fn panic_on_7(x: u32) -> u32 {
    if x == 7 {
        panic!("seven is not allowed");
    }
    x
}

fn a_panicking_item_gives_its_message_and_the_pool_goes_on() {
    let pool = Pool::new(2).expect("pool");
    let results: Vec<_> = pool.imap(panic_on_7, 0..10u32).collect();
    match &results[7] {
        Err(TaskError::Panicked { message, location }) => {
            assert_eq!(message, "seven is not allowed");
            let at = location.as_deref().unwrap_or("");
            assert!(at.contains("pool.rs"), "{at}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 9);
    // A panic is not a crash: no worker was replaced.
    assert_eq!(pool.workers_started(), 2);
    assert_eq!(pool.map(panic_on_7, [1, 2, 3]).expect("map"), [1, 2, 3]);
}

/// A recursive result type, as a user may have. `Forged(n)` is a worker
/// lying: it writes the bytes of a chain `n` links deep, flat, without
/// building one, and a reader that recursed once per link would overflow
/// its stack on them.
#[derive(Debug, Deserialize)]
enum Chain {
    End,
    Link(Box<Chain>),
    #[serde(skip_deserializing)]
    Forged(usize),
}

impl Serialize for Chain {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut links = 0;
        let mut at = self;
        while let Chain::Link(next) = at {
            links += 1;
            at = next;
        }
        if let Chain::Forged(n) = at {
            links += n;
        }
        // postcard: a variant is its index, a tuple its members in a row.
        let mut t = s.serialize_tuple(links + 1)?;
        for _ in 0..links {
            t.serialize_element(&1u8)?;
        }
        t.serialize_element(&0u8)?;
        t.end()
    }
}

fn forge_chain(links: usize) -> Chain {
    Chain::Forged(links)
}

fn chain_length(mut chain: &Chain) -> usize {
    let mut n = 0;
    while let Chain::Link(next) = chain {
        n += 1;
        chain = next;
    }
    n
}

fn a_result_nested_past_the_stack_fails_alone_instead_of_aborting() {
    let pool = Pool::new(2).expect("pool");
    let results: Vec<_> = pool.imap(forge_chain, [10, 5_000_000, 20]).collect();
    match &results[1] {
        Err(TaskError::Failed(why)) => assert!(why.contains("nested more than"), "{why}"),
        other => panic!("{other:?}"),
    }
    let lengths: Vec<_> = [&results[0], &results[2]]
        .iter()
        .map(|r| r.as_ref().map(chain_length).expect("a short chain decodes"))
        .collect();
    assert_eq!(lengths, [10, 20]);
    // The worker is not blamed, and the pool goes on.
    assert_eq!(pool.workers_started(), 2);
    assert_eq!(pool.map(double, [1, 2]).expect("map"), [2, 4]);
}

fn double(x: u64) -> u64 {
    x * 2
}

fn imap_over_an_endless_iterator_takes_what_it_needs() {
    let pool = Pool::new(2).expect("pool");
    let pulled = std::cell::Cell::new(0u64);
    let endless = (0u64..).inspect(|_| pulled.set(pulled.get() + 1));
    let got: Vec<u64> = pool
        .imap(double, endless)
        .take(1000)
        .map(|r| r.expect("item"))
        .collect();
    assert_eq!(got, (0..1000).map(|x| x * 2).collect::<Vec<_>>());
    // Lazy: it read a bounded window past what was taken, not forever.
    assert!(pulled.get() < 1000 + 100_000, "pulled {}", pulled.get());
    pool.close();
    pool.join().expect("join");
}

fn imap_unordered_gives_every_item_once() {
    let pool = Pool::builder(2).chunksize(1).build().expect("pool");
    let mut got: Vec<u64> = pool
        .imap_unordered(double, 0..5000u64)
        .map(|r| r.expect("item"))
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..5000).map(|x| x * 2).collect::<Vec<_>>());
}

/// Sleeps 20 ms, then appends a line to `log` (a file: runs in any
/// worker show in the test).
fn slow_logged((x, log): (u64, String)) -> u64 {
    use std::io::Write;
    std::thread::sleep(Duration::from_millis(20));
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&log)
    {
        let _ = f.write_all(b"run\n");
    }
    x
}

fn a_dropped_lazy_map_runs_none_of_its_items_no_worker_started() {
    for unordered in [false, true] {
        let pool = Pool::new(2).expect("pool");
        let log = std::env::temp_dir().join(format!(
            "outlast-dropped-map-{}-{unordered}",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&log);
        let items = (0..1_000u64).map(|x| (x, log.to_string_lossy().into_owned()));
        let first: Vec<u64> = match unordered {
            false => pool
                .imap(slow_logged, items)
                .take(3)
                .map(Result::unwrap)
                .collect(),
            true => pool
                .imap_unordered(slow_logged, items)
                .take(3)
                .map(Result::unwrap)
                .collect(),
        };
        assert_eq!(first.len(), 3);
        // The pool goes on with other work at once.
        assert_eq!(pool.map(double, 0..100u64).expect("map").len(), 100);
        pool.close();
        pool.join().expect("join");
        // What workers had started (a chunk of one 20 ms item each, four
        // open per worker) ran; the rest of the window did not. All
        // 1,000 were pulled and ran, 10 s of work nobody would read.
        let ran = std::fs::read_to_string(&log).map_or(0, |s| s.lines().count());
        assert!(
            (3..=3 + 2 * 8).contains(&ran),
            "unordered {unordered}: {ran} items ran for 3 taken"
        );
        let _ = std::fs::remove_file(&log);
    }
}

static FACTOR: AtomicU64 = AtomicU64::new(0);

fn set_factor(f: u64) {
    FACTOR.store(f, Ordering::Relaxed);
}

fn factor_and_pid(_: u32) -> (u64, u32) {
    (FACTOR.load(Ordering::Relaxed), std::process::id())
}

fn initializer_runs_in_every_worker_and_recycling_replaces_them() {
    let pool = Pool::builder(2)
        .initializer(set_factor, 2)
        .max_tasks_per_child(10)
        .build()
        .expect("pool");
    let out = pool.map(factor_and_pid, 0..100u32).expect("map");
    assert!(out.iter().all(|(f, _)| *f == 2), "{out:?}");
    let mut per_pid = std::collections::HashMap::<u32, usize>::new();
    for (_, pid) in &out {
        *per_pid.entry(*pid).or_default() += 1;
    }
    // Counted in items (not chunks): no worker ran more than 10; all but
    // the two alive at the end ran exactly 10 (those two share the rest).
    assert!(per_pid.values().all(|&n| n <= 10), "{per_pid:?}");
    let short = per_pid.values().filter(|&&n| n < 10).count();
    assert!(short <= 2, "{per_pid:?}");
    assert!(per_pid.len() >= 10, "{per_pid:?}");
    assert!(pool.workers_started() >= 10);
    // 0 is refused, as Python refuses it.
    assert!(matches!(
        Pool::builder(1).max_tasks_per_child(0).build(),
        Err(outlast::pool::PoolError::InvalidOption(_))
    ));
    // No size: one worker per CPU this process may use.
    let pool = Pool::per_cpu().expect("pool");
    let deadline = Instant::now() + Duration::from_secs(20);
    while (pool.worker_pids().len() as u32) < outlast::pool::cpu_count()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(pool.worker_pids().len() as u32, outlast::pool::cpu_count());
}

fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(20 * (10 - x.min(9))));
    x * x
}

fn submit_as_completed_and_wait() {
    let pool = Pool::new(2).expect("pool");
    let futures: Vec<_> = (0..10u64)
        .map(|x| pool.submit(slow_square, x).expect("submit"))
        .collect();
    let (done, _) = wait(&futures, None, ReturnWhen::FirstCompleted);
    assert!(!done.is_empty());
    let mut seen: Vec<u64> = as_completed(&futures)
        .map(|f| f.result().expect("result"))
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..10).map(|x| x * x).collect::<Vec<_>>());
    let (done, not_done) = wait(&futures, None, ReturnWhen::AllCompleted);
    assert_eq!((done.len(), not_done.len()), (10, 0));
    assert!(futures.iter().all(|f| f.successful() == Some(true)));
    assert_eq!(futures[3].get().expect("again"), 9);
    let slow = pool.apply_async(sleep_ms, 5000).expect("apply_async");
    assert!(matches!(
        slow.get_timeout(Duration::from_millis(50)),
        Err(outlast::pool::PoolError::Timeout)
    ));
    assert_eq!(pool.apply(double, 21).expect("apply"), 42);
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn dropping_a_pool_mid_flight_leaves_no_process() {
    let pool = Pool::new(2).expect("pool");
    let pending: Vec<_> = (0..4)
        .map(|_| pool.apply_async(sleep_ms, 60_000).expect("apply_async"))
        .collect();
    let pids = pool.worker_pids();
    assert_eq!(pids.len(), 2);
    let started = Instant::now();
    drop(pending);
    drop(pool);
    assert!(started.elapsed() < Duration::from_secs(30));
    // Reaped: not even zombies (the harness checks every child too).
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{pid}"
        );
    }
}

/// The program interrupted by the SIGINT case: prints its workers' pids,
/// then maps slow items until killed.
fn pool_until_interrupted() -> ! {
    // A program started by a shell's background job (`cmd &` without job
    // control) inherits SIGINT ignored, and so does everything it execs:
    // this case is about SIGINT's default action, so ask for it.
    // SAFETY: signal() with SIG_DFL installs no handler and touches no memory.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
    let pool = Pool::new(2).expect("pool");
    let pids: Vec<String> = pool.worker_pids().iter().map(u32::to_string).collect();
    println!("{}", pids.join(" "));
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let _ = pool.map(sleep_ms, (0..10_000).map(|_| 100u64));
    std::process::exit(0)
}

fn sigint_mid_map_ends_the_program_and_its_workers() {
    let exe = std::env::current_exe().expect("exe");
    let mut child = Command::new(exe)
        .arg("--pool-until-interrupted")
        .stdout(Stdio::piped())
        .spawn()
        .expect("program");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("pids");
    let workers: Vec<i32> = line
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    assert_eq!(workers.len(), 2, "{line}");
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: kill has no memory arguments.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().expect("wait");
    assert!(!status.success(), "{status:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    for pid in workers {
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            assert!(
                Instant::now() < deadline,
                "worker {pid} outlived its program"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A user's job, defined here and not in the worker crate: the sum of
/// 0..n in tasks of 100 numbers, each task slowed a little.
#[derive(Clone, Serialize, Deserialize)]
struct SlowSum {
    n: u64,
    #[serde(skip)]
    sum: u64,
    #[serde(skip)]
    combined: u64,
}

impl Job for SlowSum {
    type Input = (u64, u64);
    type Output = u64;
    type Error = String;
    fn describe(&self) -> String {
        format!("the sum below {}", self.n)
    }
    fn task_count(&self) -> u64 {
        self.n.div_ceil(100)
    }
    fn input(&self, id: u64) -> (u64, u64) {
        (id * 100, ((id + 1) * 100).min(self.n))
    }
    fn run(&self, (lo, hi): (u64, u64), ctx: &mut TaskContext<'_>) -> Result<u64, String> {
        std::thread::sleep(Duration::from_millis(2));
        ctx.beat();
        Ok((lo..hi).sum())
    }
    fn combine(&mut self, _id: u64, part: u64) -> Result<(), BadOutput> {
        self.sum += part;
        self.combined += 1;
        Ok(())
    }
    fn outcome(&self, complete: bool) -> JobOutcome {
        let expected = self.n * (self.n - 1) / 2;
        JobOutcome {
            value: self.sum.to_string(),
            summary: format!("{} tasks combined", self.combined),
            verified: complete.then_some(self.sum == expected),
        }
    }
}

fn a_users_job_is_exact_under_the_supervisor_with_a_worker_killed() {
    let (chaos, counter) = start_killer(2, 100);
    let n = 100_000;
    let report = Supervisor::new(SlowSum {
        n,
        sum: 0,
        combined: 0,
    })
    .workers(2)
    .max_attempts(10)
    .quiet(true)
    .handle_signals(false)
    .run()
    .expect("run");
    let killed = stop_killer(chaos, &counter);
    assert_eq!(report.result, (n * (n - 1) / 2).to_string());
    assert_eq!(report.verified, Some(true));
    assert_eq!(report.summary, "1000 tasks combined");
    assert!(killed > 0);
    assert!(
        report.restarts.crashes >= u64::from(killed),
        "{}",
        report.restarts.crashes
    );
}

/// Records `x` in the manager's dict from a pool worker: the proxy came
/// in the task's arguments.
fn record_square((squares, x): (outlast_ipc::manager::Dict<u64, u64>, u64)) -> bool {
    squares.set(&x, &(x * x)).is_ok()
}

fn manager_proxies_work_as_pool_task_arguments() {
    for method in [StartMethod::Fork, StartMethod::Spawn] {
        let manager = outlast_ipc::manager::Manager::start().expect("manager");
        let squares = manager.dict::<u64, u64>().expect("dict");
        let pool = Pool::builder(2).start_method(method).build().expect("pool");
        let stored = pool
            .map(record_square, (0..100u64).map(|x| (squares.clone(), x)))
            .expect("map");
        assert!(stored.iter().all(|ok| *ok));
        drop(pool);
        assert_eq!(squares.len().expect("len"), 100);
        assert_eq!(squares.get(&9).expect("get"), Some(81));
        assert_eq!(
            squares.values().expect("values").iter().sum::<u64>(),
            (0..100u64).map(|x| x * x).sum::<u64>()
        );
    }
}

/// The same user's job, shared through a real redis-server: this process's
/// supervisor runs it, and the cluster's answer is made from the job's
/// stored spec with the user's type. (The broker tests kill supervisors
/// and workers; a random killer here could hit the redis-server, a child
/// of this process too.)
#[cfg(not(feature = "broker"))]
fn a_users_job_through_the_broker_is_exact() {
    println!("(built without the broker feature: `cargo test --workspace` turns it on)");
}

#[cfg(feature = "broker")]
fn a_users_job_through_the_broker_is_exact() {
    use outlast::broker::{self, local_server::RedisServer, BrokerOptions};
    let redis = RedisServer::start().expect("this case needs redis-server");
    let options = BrokerOptions {
        url: redis.url(),
        job_id: "users-job".into(),
        lease: Duration::from_secs(1),
        consumer: None,
    };
    let n = 100_000;
    let run_options = outlast::RunOptions {
        workers: Some(2),
        max_attempts: 10,
        quiet: true,
        handle_signals: false,
        control: outlast::control::ControlAt::Off,
        ..outlast::RunOptions::default()
    };
    let job = SlowSum {
        n,
        sum: 0,
        combined: 0,
    };
    let mine = broker::run(run_options, outlast::AnyJob::new(job), &options).expect("broker run");
    let part = mine.broker.as_ref().expect("a broker section");
    assert!(part.complete, "{part:?}");
    assert_eq!(part.stored, 1000, "{part:?}");
    let all = broker::result(
        &options.url,
        "users-job",
        Duration::from_secs(60),
        &broker::typed_work::<SlowSum>,
    )
    .expect("the cluster's result");
    assert_eq!(all.result, (n * (n - 1) / 2).to_string());
    assert_eq!(all.verified, Some(true));
    assert_eq!(all.results, 1000);
    assert_eq!(all.hosts.len(), 1);
    drop(redis);
}

/// One worker: a quick item, then one that blocks for seconds. The quick
/// item's result must not wait for the long one (CPython's
/// `test_first_completed` shape).
fn a_quick_result_arrives_while_its_worker_runs_a_long_item() {
    let pool = Pool::new(1).expect("pool");
    let quick = pool.submit(double, 21).expect("submit");
    let long = pool.submit(sleep_ms, 5_000).expect("submit");
    assert_eq!(quick.get_timeout(Duration::from_secs(3)).ok(), Some(42));
    assert!(!long.ready(), "the long item cannot be done yet");
    // FIRST_COMPLETED among both: the quick one, at once.
    let futures = [quick, long];
    let (done, pending) = wait(
        &futures,
        Some(Duration::from_secs(3)),
        ReturnWhen::FirstCompleted,
    );
    assert_eq!((done.len(), pending.len()), (1, 1));
    pool.terminate();
}

/// `ps` and `top` show a pool's workers as this program's: `w1 pool`, and
/// the title `<program>: worker 1 (pool)`; never `exe` (what the kernel
/// names a process exec'd as `/proc/self/exe`), nor another program's name.
fn workers_are_named_after_the_program_in_every_start_method() {
    let exe = std::fs::read_link("/proc/self/exe").expect("exe");
    let program = exe
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    for method in StartMethod::ALL {
        let pool = Pool::builder(2).start_method(method).build().expect("pool");
        assert_eq!(pool.map(double, 0..10u64).expect("map")[9], 18);
        let expected = [
            ("w1 pool".to_string(), format!("{program}: worker 1 (pool)")),
            ("w2 pool".to_string(), format!("{program}: worker 2 (pool)")),
        ];
        // One worker may still be starting (it names itself first thing).
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut names = worker_names(&pool);
        while names != expected && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            names = worker_names(&pool);
        }
        assert_eq!(names, expected, "{method:?}");
        pool.terminate();
    }
}

/// (comm, title) of each of `pool`'s workers, in slot order.
fn worker_names(pool: &Pool) -> Vec<(String, String)> {
    let mut names: Vec<(String, String)> = pool
        .worker_pids()
        .into_iter()
        .map(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let title = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let title = String::from_utf8_lossy(&title);
            (
                comm.trim_end().to_string(),
                title.trim_end_matches('\0').to_string(),
            )
        })
        .collect();
    names.sort();
    names
}

fn a_pool_is_a_handle_that_threads_share() {
    fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<Pool>();
    send_and_sync::<outlast::pool::AsyncResult<u64>>();
    let pool = Pool::new(2).expect("pool");
    // Moved into another thread and used there while this one maps too.
    let theirs = pool.clone();
    let other = std::thread::spawn(move || theirs.map(double, 0..5_000u64));
    let ours = pool.map(double, 5_000..10_000u64).expect("map");
    let theirs = other.join().expect("thread").expect("map");
    assert_eq!(theirs, (0..5_000).map(|x| x * 2).collect::<Vec<u64>>());
    assert_eq!(ours, (5_000..10_000).map(|x| x * 2).collect::<Vec<u64>>());
    // Four threads applying one item at a time, at once.
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                (0..100u64)
                    .map(|x| pool.apply(double, t * 1_000 + x).expect("apply"))
                    .sum::<u64>()
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    let expected: u64 = (0..4u64)
        .flat_map(|t| (0..100u64).map(move |x| 2 * (t * 1_000 + x)))
        .sum();
    assert_eq!(total, expected);
}

/// The smallest executor: polls on this thread, parks between wakes.
fn block_on<F: std::future::Future>(future: F) -> (F::Output, u32) {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    let mut polls = 0;
    loop {
        polls += 1;
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return (out, polls);
        }
        std::thread::park_timeout(Duration::from_secs(30));
    }
}

fn a_result_is_a_future_an_executor_awaits() {
    let pool = Pool::new(1).expect("pool");
    let (out, polls) = block_on(pool.submit(sleep_ms, 300).expect("submit"));
    assert_eq!(out.ok(), Some(300));
    // Woken once it settled, not polled in a loop.
    assert!(polls <= 5, "polled {polls} times");
    let (out, _) = block_on(pool.submit(panic_on_7, 7).expect("submit"));
    assert!(matches!(
        out,
        Err(outlast::pool::PoolError::Task {
            error: TaskError::Panicked { .. },
            ..
        })
    ));
}

/// An awaited result of a megabyte or more (an item's, a lazy map's) is
/// decoded on a thread of its own, a smaller one where it is awaited; a
/// wait dropped while its result is decoded takes nothing.
fn a_large_awaited_result_is_decoded_off_the_polling_thread() {
    const LARGE: usize = 2 << 20;
    let here = tests::traced::this_thread();
    let pool = Pool::new(2).expect("pool");
    // A result of a megabyte or more is decoded on a thread of its own:
    // a 100 MB one held a current-thread tokio runtime for 61-64 ms.
    let (large, _) = block_on(pool.submit(traced, LARGE).expect("submit"));
    let large = large.expect("result");
    assert_eq!(large.bytes.len(), LARGE);
    assert!(large.bytes.iter().all(|&b| b == 5));
    assert_eq!(large.decoded_on, "outlast-decode");
    let (small, _) = block_on(pool.submit(traced, 10).expect("submit"));
    assert_eq!(small.expect("result").decoded_on, here);
    // Lazy maps' awaited results alike, in order and as they finish.
    let sizes = [10, LARGE, 20, LARGE + 1];
    let mut ordered = pool.imap(traced, sizes);
    for size in sizes {
        let (next, _) = block_on(ordered.next_async());
        let next = next.expect("a result").expect("an item");
        assert_eq!(next.bytes.len(), size);
        let thread = if size >= LARGE {
            "outlast-decode"
        } else {
            &here
        };
        assert_eq!(next.decoded_on, thread, "a result of {size} bytes");
    }
    assert!(block_on(ordered.next_async()).0.is_none());
    let mut unordered = pool.imap_unordered(traced, sizes);
    let mut lens = Vec::new();
    while let (Some(next), _) = block_on(unordered.next_async()) {
        let next = next.expect("an item");
        assert_eq!(
            next.decoded_on == "outlast-decode",
            next.bytes.len() >= LARGE
        );
        lens.push(next.bytes.len());
    }
    lens.sort_unstable();
    assert_eq!(lens, [10, 20, LARGE, LARGE + 1]);
    // A wait dropped while its result is decoded takes nothing: the next
    // call gives that result (whole, decoded where it is asked for).
    let mut ordered = pool.imap(traced, [LARGE, 30]);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    // The first poll submits the items, the second (once they ran)
    // starts the decoding.
    for poll in 0..2 {
        let mut next = std::pin::pin!(ordered.next_async());
        let polled = std::future::Future::poll(next.as_mut(), &mut cx);
        assert!(polled.is_pending(), "poll {poll}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let first = ordered.next().expect("a result").expect("an item");
    assert_eq!(first.bytes.len(), LARGE);
    assert!(first.bytes.iter().all(|&b| b == 5));
    assert_eq!(
        ordered
            .next()
            .expect("a result")
            .expect("an item")
            .bytes
            .len(),
        30
    );
    assert!(ordered.next().is_none());
}

/// An awaited lazy map pulls and submits at most a sixteenth of its
/// window of input items in one poll (4,096 with two workers), as a
/// blocking one does once running: its first fill pulled the whole
/// window (65,532 items) in one poll and held the executor's thread
/// 0.8-1.8 ms. Every result still comes, in order.
fn an_awaited_lazy_map_pulls_a_bounded_batch_of_its_input_per_poll() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const ITEMS: u64 = 200_000;
    let pool = Pool::new(2).expect("pool");
    let pulled = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&pulled);
    let input = (0..ITEMS).inspect(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let mut map = pool.imap(double, input);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let (mut most, mut next_expected) = (0, 0u64);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let before = pulled.load(Ordering::Relaxed);
        let polled = {
            let mut next = std::pin::pin!(map.next_async());
            std::future::Future::poll(next.as_mut(), &mut cx)
        };
        most = most.max(pulled.load(Ordering::Relaxed) - before);
        match polled {
            std::task::Poll::Ready(Some(result)) => {
                assert_eq!(result.expect("an item"), next_expected * 2);
                next_expected += 1;
            }
            std::task::Poll::Ready(None) => break,
            std::task::Poll::Pending => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "stuck at {next_expected}"
                );
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
    assert_eq!(next_expected, ITEMS, "every result, in order");
    assert!(most <= 4096, "one poll pulled {most} input items");
}

/// `imap(..).next_async()` and `imap_unordered(..).next_async()` under an
/// executor: every result once (in order for `imap`), each future woken
/// rather than polled in a loop; a wait dropped before its result came
/// has taken nothing; and a pool terminated under a waiting future ends
/// that wait with the cause.
fn awaited_imap_results_come_once_each_and_a_dropped_wait_takes_none() {
    let pool = Pool::builder(2).chunksize(7).build().expect("pool");
    let mut ordered = pool.imap(double, 0..5_000u64);
    let mut got = Vec::new();
    let mut polls = 0;
    loop {
        let (next, p) = block_on(ordered.next_async());
        polls += p;
        match next {
            Some(result) => got.push(result.expect("an item")),
            None => break,
        }
    }
    assert!(
        got.iter().copied().eq((0..5_000).map(|x| x * 2)),
        "in order"
    );
    assert!(polls < 3 * 5_000, "{polls} polls for 5,000 results");

    let mut unordered = pool.imap_unordered(double, 0..2_000u64);
    let mut got = Vec::new();
    while let (Some(result), _) = block_on(unordered.next_async()) {
        got.push(result.expect("an item"));
    }
    got.sort_unstable();
    assert!(
        got.iter().copied().eq((0..2_000).map(|x| x * 2)),
        "each once"
    );

    // Pending, then dropped: the result is the next call's.
    let mut slow = pool.imap(sleep_ms, [300u64, 1]);
    {
        let mut next = std::pin::pin!(slow.next_async());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let polled = std::future::Future::poll(next.as_mut(), &mut cx);
        assert!(polled.is_pending(), "300 ms to go");
    }
    assert_eq!(slow.next().map(|r| r.ok()), Some(Some(300)));
    assert_eq!(block_on(slow.next_async()).0.map(|r| r.ok()), Some(Some(1)));
    assert!(block_on(slow.next_async()).0.is_none());

    // A pool terminated while a future waits: the wait ends, with why.
    let mut endless = pool.imap_unordered(sleep_ms, std::iter::repeat(60_000u64));
    let terminator = {
        let pool = pool.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            pool.terminate();
        })
    };
    let (next, _) = block_on(endless.next_async());
    terminator.join().expect("terminated");
    assert!(
        matches!(&next, Some(Err(TaskError::Lost(why))) if !why.is_empty()),
        "{next:?}"
    );
}

fn done_callbacks_run_once_each_and_cannot_wait_on_their_pool() {
    use std::sync::{Arc, Mutex};
    let pool = Pool::new(2).expect("pool");
    let values = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let mut results = Vec::new();
    for x in 0..20u32 {
        let (values, errors) = (Arc::clone(&values), Arc::clone(&errors));
        let r = pool
            .apply_async_with(
                panic_on_7,
                x,
                move |v| values.lock().expect("lock").push(v),
                move |e| errors.lock().expect("lock").push(e.to_string()),
            )
            .expect("apply_async");
        results.push(r);
    }
    for r in &results {
        r.wait();
    }
    // Callbacks run on the pool's thread right after it settles: give them a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while values.lock().expect("lock").len() + errors.lock().expect("lock").len() < 20
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut got = values.lock().expect("lock").clone();
    got.sort_unstable();
    let want: Vec<u32> = (0..20).filter(|&x| x != 7).collect();
    assert_eq!(got, want, "each value once");
    let errors = errors.lock().expect("lock").clone();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("panicked"), "{errors:?}");
    // On a settled result, a callback runs at once, here.
    let here = std::thread::current().id();
    let ran_on = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&ran_on);
    results[0].add_done_callback(move |_| {
        *slot.lock().expect("lock") = Some(std::thread::current().id())
    });
    assert_eq!(*ran_on.lock().expect("lock"), Some(here));
    // A callback that waits on its pool gets an error, not a hang.
    let waited = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&waited);
    let inner = pool.clone();
    let r = pool.submit(sleep_ms, 1_000).expect("submit");
    r.add_done_callback(move |_| {
        *slot.lock().expect("lock") = Some(inner.map(double, 0..3u64).map_err(|e| e.to_string()));
    });
    r.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while waited.lock().expect("lock").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let waited = waited.lock().expect("lock").clone();
    assert!(
        matches!(&waited, Some(Err(e)) if e.contains("cannot wait on its pool")),
        "{waited:?}"
    );
    // join and terminate from a callback: an error and a request, no hang.
    let other = Pool::new(1).expect("pool");
    let joined = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&joined);
    let inner = other.clone();
    // (Long enough to be pending when the callback is added: one added
    // to a settled result runs at once on this thread instead.)
    let r = other.submit(sleep_ms, 1_000).expect("submit");
    other.close();
    r.add_done_callback(move |_| {
        let join = inner.join().map_err(|e| e.to_string());
        inner.terminate();
        *slot.lock().expect("lock") = Some(join);
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while joined.lock().expect("lock").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let joined = joined.lock().expect("lock").clone();
    assert!(
        matches!(&joined, Some(Err(e)) if e.contains("cannot wait on its pool")),
        "{joined:?}"
    );
    drop(r);
    other.terminate();
}

/// Python's usual callback use drops the handle at once:
/// `pool.apply_async(f, (x,), callback=results.append)`, then `close`,
/// `join`. Each callback still gets its value (the results are kept for
/// them), and no value is kept once they ran.
fn callbacks_of_dropped_handles_still_get_their_values() {
    use std::sync::mpsc;
    let pool = Pool::new(2).expect("pool");
    let (tx, rx) = mpsc::channel();
    for x in 0..200u32 {
        let (ok, failed) = (tx.clone(), tx.clone());
        // The handle is dropped here, before its item settles.
        pool.apply_async_with(
            panic_on_7,
            x,
            move |v| ok.send(Ok(v)).expect("send"),
            move |e| failed.send(Err(e.to_string())).expect("send"),
        )
        .expect("apply_async_with");
    }
    let (ok, failed) = (tx.clone(), tx.clone());
    pool.map_async_with(
        double,
        0..1_000u64,
        move |v| ok.send(Ok(v.iter().sum::<u64>() as u32)).expect("send"),
        move |e| failed.send(Err(e.to_string())).expect("send"),
    )
    .expect("map_async_with");
    drop(tx);
    pool.close();
    pool.join_timeout(Duration::from_secs(60)).expect("join");
    let got: Vec<Result<u32, String>> = rx.iter().collect();
    assert_eq!(got.len(), 201, "each callback once");
    let mut values: Vec<u32> = got.iter().filter_map(|r| r.clone().ok()).collect();
    values.sort_unstable();
    let mut want: Vec<u32> = (0..200).filter(|&x| x != 7).collect();
    want.push(999_000);
    want.sort_unstable();
    assert_eq!(values, want, "every value, the map's sum among them");
    let errors: Vec<String> = got.into_iter().filter_map(Result::err).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("panicked"), "{errors:?}");
}

fn map_async_gives_the_whole_list_later_with_a_timeout_a_future_or_a_callback() {
    use outlast::pool::PoolError;
    let pool = Pool::new(2).expect("pool");
    // The whole list, as often as asked; ready and successful say so.
    let doubled = pool.map_async(double, 0..20_000u64).expect("map_async");
    assert_eq!(doubled.len(), 20_000);
    let want: Vec<u64> = (0..20_000u64).map(|x| x * 2).collect();
    assert_eq!(doubled.get().expect("get"), want);
    assert!(doubled.ready());
    assert_eq!(doubled.successful(), Some(true));
    assert_eq!(doubled.get().expect("again"), want, "kept for a second get");
    // A map that cannot be done in 100 ms: a timeout, the map goes on,
    // and a later get has every value.
    let slow = pool
        .map_async(sleep_ms, [400u64, 400, 1, 2])
        .expect("map_async");
    let early = slow.get_timeout(Duration::from_millis(100));
    assert!(matches!(early, Err(PoolError::Timeout)), "{early:?}");
    assert!(!slow.ready());
    assert_eq!(slow.successful(), None, "not ready yet");
    assert!(!slow.wait_timeout(Duration::from_millis(10)));
    assert_eq!(
        slow.get_timeout(Duration::from_secs(60)).expect("later"),
        [400, 400, 1, 2]
    );
    // The first failed item in input order is the error; the others ran.
    let failing = pool.map_async(panic_on_7, 0..20u32).expect("map_async");
    failing.wait();
    assert_eq!(failing.successful(), Some(false));
    match failing.get() {
        Err(PoolError::Task {
            index: 7,
            error: TaskError::Panicked { message, .. },
        }) => {
            assert!(message.contains("seven"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // starmap_async, and an empty map (ready at once).
    let sums = pool
        .starmap_async(add, (0..100u64).map(|x| (x, 1000)))
        .expect("starmap_async");
    let empty = pool.map_async(double, Vec::<u64>::new()).expect("empty");
    assert!(empty.is_empty() && empty.ready());
    assert_eq!(empty.get().expect("empty"), Vec::<u64>::new());
    // Awaited: the executor's thread is not blocked meanwhile.
    let (awaited, polls) = block_on(sums);
    assert_eq!(
        awaited.expect("awaited"),
        (1000..1100u64).collect::<Vec<_>>()
    );
    // Woken as items settle, not polled in a loop.
    assert!((1..=110).contains(&polls), "polled {polls} times");
    // A terminated pool ends a waiting map with why, and refuses new ones.
    let endless = pool
        .map_async(sleep_ms, [60_000u64, 60_000])
        .expect("map_async");
    let terminator = {
        let pool = pool.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            pool.terminate();
        })
    };
    let ended = endless.get_timeout(Duration::from_secs(60));
    terminator.join().expect("terminator");
    assert!(
        matches!(
            &ended,
            Err(PoolError::Task {
                error: TaskError::Lost(_),
                ..
            }) | Err(PoolError::Stopped(_))
        ),
        "{ended:?}"
    );
    assert!(matches!(
        pool.map_async(double, [1u64]),
        Err(PoolError::Closed)
    ));
}

/// A function as a user writes it: `io::Result`, `?` inside.
fn file_len(path: String) -> std::io::Result<u64> {
    Ok(std::fs::metadata(path)?.len())
}

/// An `anyhow` function with context, and a panic for 13.
fn checked_half(x: u64) -> anyhow::Result<u64> {
    use anyhow::Context;
    if x == 13 {
        panic!("thirteen");
    }
    let even = if x % 2 == 0 { Some(x / 2) } else { None };
    even.with_context(|| format!("halving {x}"))
        .context("the checked half")
}

/// `try_map` and the other `try_` forms take functions that return
/// `io::Result` or `anyhow::Result`, whose errors cannot cross processes
/// as they are: an `Err` is that item's `TaskError::Returned` with the
/// error's words (an anyhow chain included), every other item runs, and a
/// panic stays a panic.
fn a_fallible_functions_err_is_its_items_error_in_words() {
    use outlast::pool::PoolError;
    let pool = Pool::new(2).expect("pool");
    let dir = std::env::temp_dir().join(format!("outlast-try-map-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let present = dir.join("five");
    std::fs::write(&present, b"12345").expect("a file");
    let present = present.to_string_lossy().into_owned();
    let missing = dir.join("missing").to_string_lossy().into_owned();
    assert_eq!(
        pool.try_map(file_len, [present.clone(), present.clone()])
            .expect("both"),
        [5, 5]
    );
    match pool.try_map(
        file_len,
        [present.clone(), missing.clone(), present.clone()],
    ) {
        Err(PoolError::Task {
            index: 1,
            error: TaskError::Returned(why),
        }) => {
            assert!(why.contains("No such file or directory"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    // Each item's own outcome, lazily and as they finish.
    let halves: Vec<Result<u64, TaskError>> = pool.try_imap(checked_half, 0..6u64).collect();
    assert_eq!(halves.len(), 6);
    for (x, half) in halves.iter().enumerate() {
        match half {
            Ok(h) => assert_eq!(*h, x as u64 / 2),
            Err(TaskError::Returned(why)) => {
                assert!(x % 2 == 1, "{x}: {why}");
                assert_eq!(why, &format!("the checked half: halving {x}"));
            }
            other => panic!("{x}: {other:?}"),
        }
    }
    let mut unordered: Vec<u64> = pool
        .try_imap_unordered(checked_half, (0..100u64).map(|x| x * 2))
        .map(|r| r.expect("even"))
        .collect();
    unordered.sort_unstable();
    assert_eq!(unordered, (0..100).collect::<Vec<u64>>());
    // A panic is still a panic; one item's error and a whole map's.
    let panicked = pool
        .try_apply_async(checked_half, 13)
        .expect("submit")
        .get();
    assert!(
        matches!(&panicked, Err(PoolError::Task { error: TaskError::Panicked { message, .. }, .. }) if message.contains("thirteen")),
        "{panicked:?}"
    );
    let odd = pool.try_apply_async(checked_half, 7).expect("submit").get();
    assert!(
        matches!(
            &odd,
            Err(PoolError::Task {
                error: TaskError::Returned(_),
                ..
            })
        ),
        "{odd:?}"
    );
    let later = pool
        .try_map_async(checked_half, [2u64, 4, 5])
        .expect("map_async");
    assert!(
        matches!(
            later.get(),
            Err(PoolError::Task {
                index: 2,
                error: TaskError::Returned(_)
            })
        ),
        "the third item's error"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

/// `join_timeout` on a pool whose items outlast it: a timeout, the items
/// still settle, and a later join ends the pool.
fn join_timeout_leaves_a_busy_pool_running() {
    use outlast::pool::PoolError;
    let pool = Pool::new(1).expect("pool");
    let busy = pool.submit(sleep_ms, 500).expect("submit");
    let early = pool.join_timeout(Duration::from_millis(10));
    assert!(matches!(early, Err(PoolError::StillRunning)), "{early:?}");
    pool.close();
    let early = pool.join_timeout(Duration::from_millis(50));
    assert!(matches!(early, Err(PoolError::Timeout)), "{early:?}");
    assert_eq!(busy.get().expect("still settles"), 500);
    pool.join_timeout(Duration::from_secs(60)).expect("join");
    assert!(matches!(pool.map(double, [1u64]), Err(PoolError::Closed)));
}

fn imap_and_as_completed_wait_at_most_a_timeout_and_queued_items_cancel() {
    use outlast::pool::PoolError;
    let pool = Pool::new(1).expect("pool");
    // imap: the first item takes 400 ms; a 50 ms wait times out and
    // leaves it for the next call.
    let mut items = pool.imap(sleep_ms, [400u64, 1, 2]);
    assert!(matches!(
        items.next_timeout(Duration::from_millis(50)),
        Err(PoolError::Timeout)
    ));
    assert_eq!(
        items
            .next_timeout(Duration::from_secs(20))
            .expect("in time"),
        Some(Ok(400))
    );
    assert_eq!(items.next(), Some(Ok(1)));
    assert_eq!(items.next(), Some(Ok(2)));
    assert_eq!(items.next(), None);
    drop(items);
    // as_completed: the same.
    let futures: Vec<_> = [300u64, 10]
        .iter()
        .map(|&ms| pool.submit(sleep_ms, ms).expect("submit"))
        .collect();
    let mut finished = as_completed(&futures);
    assert!(matches!(
        finished.next_timeout(Duration::from_millis(50)),
        Err(PoolError::Timeout)
    ));
    let mut got = Vec::new();
    while let Some(f) = finished
        .next_timeout(Duration::from_secs(20))
        .expect("in time")
    {
        got.push(f.get().expect("value"));
    }
    got.sort_unstable();
    assert_eq!(got, [10, 300]);
    drop(finished);
    // cancel: with the one worker busy, items queued behind it come back.
    let marker = std::env::temp_dir().join(format!("outlast-running-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let long = pool
        .submit(
            mark_then_sleep,
            (marker.to_string_lossy().into_owned(), 500),
        )
        .expect("submit");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !marker.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = std::fs::remove_file(&marker);
    let queued: Vec<_> = (0..50u64)
        .map(|i| pool.submit(sleep_ms, i % 2).expect("submit"))
        .collect();
    let last = queued.last().expect("queued");
    assert!(last.cancel(), "the last queued item was already handed out");
    assert!(last.cancelled());
    assert!(matches!(
        last.get(),
        Err(PoolError::Task {
            error: TaskError::Cancelled,
            ..
        })
    ));
    assert!(!long.cancel(), "a running item cannot be cancelled");
    assert_eq!(long.get().ok(), Some(500));
    for (i, q) in queued.iter().enumerate().take(49) {
        assert_eq!(q.get().ok(), Some(i as u64 % 2), "item {i}");
    }
}

/// Says it runs (creates `path`), then sleeps `ms`.
fn mark_then_sleep((path, ms): (String, u64)) -> u64 {
    let _ = std::fs::write(path, b"running");
    sleep_ms(ms)
}

fn one(a: u64) -> u64 {
    a
}
fn sum3(a: u64, b: u32, c: u8) -> u64 {
    a + u64::from(b) + u64::from(c)
}
fn sum4(a: u64, b: u64, c: u64, d: String) -> String {
    format!("{}{d}", a + b + c)
}
fn sum5(a: u64, b: u64, c: u64, d: u64, e: u64) -> u64 {
    a + b + c + d + e
}
fn sum6(a: u64, b: u64, c: u64, d: u64, e: u64, f: Vec<u64>) -> u64 {
    a + b + c + d + e + f.iter().sum::<u64>()
}

fn starmap_takes_tuples_of_one_to_six() {
    let pool = Pool::new(2).expect("pool");
    assert_eq!(
        pool.starmap1(one, (0..5u64).map(|x| (x,))).expect("1"),
        [0, 1, 2, 3, 4]
    );
    assert_eq!(
        pool.starmap(|a: u64, b: u64| a * b, [(2, 3), (4, 5)])
            .expect("2"),
        [6, 20]
    );
    assert_eq!(
        pool.starmap3(sum3, [(1, 2, 3), (10, 20, 30)]).expect("3"),
        [6, 60]
    );
    assert_eq!(
        pool.starmap4(sum4, [(1, 2, 3, "x".to_string())])
            .expect("4"),
        ["6x"]
    );
    assert_eq!(pool.starmap5(sum5, [(1, 2, 3, 4, 5)]).expect("5"), [15]);
    assert_eq!(
        pool.starmap6(sum6, (0..100u64).map(|i| (i, 1, 1, 1, 1, vec![i; 3])))
            .expect("6"),
        (0..100u64).map(|i| 4 * i + 4).collect::<Vec<_>>()
    );
}

thread_local! {
    /// In each worker: the counter its initializer was given.
    static COUNTER: std::cell::RefCell<Option<Value<u64>>> = const { std::cell::RefCell::new(None) };
}

fn keep_counter(counter: Value<u64>) {
    COUNTER.with(|c| *c.borrow_mut() = Some(counter));
}

fn count_one(x: u64) -> u64 {
    COUNTER.with(|c| {
        if let Some(counter) = c.borrow().as_ref() {
            counter.fetch_add(1);
        }
    });
    x
}

/// CPython's `Pool(initializer=init, initargs=(counter,))`: a shared
/// `Value` handed to every worker, replacements included.
fn an_initializer_hands_a_shared_counter_to_every_worker() {
    let counter = Value::new(0u64).expect("value");
    let pool = Pool::builder(2)
        .initializer(keep_counter, counter.try_clone().expect("clone"))
        .max_tasks_per_child(50)
        .build()
        .expect("pool");
    let out = pool.map(count_one, 0..500u64).expect("map");
    assert_eq!(out.len(), 500);
    assert_eq!(counter.load(), 500);
    // Recycled every 50 items: the replacements got the counter too.
    assert!(pool.workers_started() >= 10);
}

/// Items settle on the pool's thread while `as_completed` looks at the
/// futures: none of those may be missed (one was: a hang, seen in
/// `bench pool` under load).
fn as_completed_misses_nothing_that_settles_while_it_starts() {
    use outlast::pool::PoolError;
    let pool = Pool::new(2).expect("pool");
    for round in 0..30 {
        let futures: Vec<_> = (0..20_000u64)
            .map(|x| pool.submit(double, x).expect("submit"))
            .collect();
        let mut finished = as_completed(&futures);
        let mut seen = 0;
        loop {
            match finished.next_timeout(Duration::from_secs(20)) {
                Ok(Some(_)) => seen += 1,
                Ok(None) => break,
                Err(PoolError::Timeout) => panic!("round {round}: stuck after {seen} of 20000"),
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert_eq!(seen, 20_000, "round {round}");
    }
}

fn failing_init(_: u64) {
    panic!("no database here");
}

/// Python's `Pool` respawns workers whose initializer raises, forever, and
/// `map` never returns. Here the restart limit ends the pool's run: `map`
/// fails, saying why, and no item was charged for it.
fn a_failing_initializer_ends_the_map_with_its_cause_not_a_hang() {
    let pool = Pool::builder(2)
        .initializer(failing_init, 0)
        .build()
        .expect("pool");
    let started = Instant::now();
    let out = pool.map(double, 0..10u64);
    let Err(outlast::pool::PoolError::Task {
        error: TaskError::Lost(why),
        ..
    }) = out
    else {
        panic!("{out:?}");
    };
    assert!(why.contains("could not start"), "{why}");
    assert!(started.elapsed() < Duration::from_secs(60), "{why}");
}

/// Sleeps `ms`, then says which attempt this is by the worker's pid.
fn sleep_then_pid(ms: u64) -> (u64, u32) {
    std::thread::sleep(Duration::from_millis(ms));
    (ms, std::process::id())
}

fn an_item_may_run_past_the_worker_timeout_unless_an_item_timeout_bounds_it() {
    // An item that runs three worker timeouts: Python's Pool waits for it,
    // and so does ours. It was killed as hung, three times, and failed.
    let pool = Pool::builder(1)
        .worker_timeout(Duration::from_secs(1))
        .build()
        .expect("pool");
    let (ms, _) = pool
        .apply(sleep_then_pid, 3_000)
        .expect("a long item is no hang");
    assert_eq!(ms, 3_000);
    assert_eq!(pool.workers_started(), 1, "its worker was never replaced");
    // Bounded on purpose: the worker is killed, the item charged.
    let bounded = Pool::builder(1)
        .item_timeout(Duration::from_secs(1))
        .max_attempts(2)
        .build()
        .expect("pool");
    match bounded.map(sleep_then_pid, [3_000]) {
        Err(outlast::pool::PoolError::Task {
            error: TaskError::WorkerDied {
                attempts, cause, ..
            },
            ..
        }) => {
            assert_eq!(attempts, 2);
            assert!(cause.contains("no heartbeat"), "{cause}");
        }
        other => panic!("an item past its item timeout: {other:?}"),
    }
    // Short items are untouched by it.
    assert_eq!(
        bounded.map(sleep_then_pid, [1, 2]).map(|r| r.len()).ok(),
        Some(2)
    );
}

fn a_worker_stopped_in_a_long_item_is_replaced_and_the_item_runs_again() {
    let pool = Pool::builder(1)
        .worker_timeout(Duration::from_secs(1))
        .build()
        .expect("pool");
    assert_eq!(
        pool.apply(sleep_then_pid, 1).map(|(ms, _)| ms).ok(),
        Some(1)
    );
    let first = pool.worker_pids()[0];
    let result = pool.apply_async(sleep_then_pid, 1_500).expect("submit");
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: a signal to our own worker.
    assert_eq!(unsafe { libc::kill(first as i32, libc::SIGSTOP) }, 0);
    // Stopped, it beats no more and runs nothing: replaced after the
    // worker timeout, and the item runs again on the new worker.
    let (ms, ran_in) = result
        .get_timeout(Duration::from_secs(30))
        .expect("the item, on a replacement");
    assert_eq!(ms, 1_500);
    assert_ne!(ran_in, first, "finished by the replacement");
    assert_eq!(pool.workers_started(), 2);
}
