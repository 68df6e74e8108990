//! The project as a user meets it: a crate outside the workspace, made in a
//! temp dir, that depends on `outlast` by path with default features and
//! runs a `Pool` map in a debug build. What it compiles is checked with
//! `cargo tree`: none of the binary's crates may be there.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Crates only the `supervisor` binary (or an opt-in feature) may pull in.
/// serde_json among them: its `impl PartialEq<Value> for u64` (and each
/// number type) breaks type inference in the user's own code.
const BINARY_ONLY: [&str; 7] = [
    "ratatui",
    "redis",
    "prometheus-client",
    "clap",
    "indicatif",
    "hdrhistogram",
    "serde_json",
];

const MAIN: &str = r#"use outlast::pool::Pool;

fn square(x: u64) -> u64 {
    x * x
}

fn main() {
    outlast::ipc::init();
    let pool = Pool::new(2).expect("a pool of two workers");
    let squares = pool.map(square, 0..10_000u64).expect("map");
    println!("sum of squares: {}", squares.iter().sum::<u64>());
}
"#;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds the tests crate")
        .to_path_buf()
}

/// A crate named `users_program` in a fresh temp dir, locked to the
/// workspace's versions (so no registry is asked for anything new).
fn users_crate(features: &str) -> PathBuf {
    let name = format!(
        "users_pool{}",
        features.replace(|c: char| !c.is_alphanumeric(), "_")
    );
    users_program(&name, features, "", MAIN)
}

/// The same with more dependencies and a `main.rs` of its own. Each
/// program has a name of its own: they share a target dir, and the tests
/// run at once.
fn users_program(name: &str, features: &str, more_dependencies: &str, main: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("outlast-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src")).expect("make the crate's dir");
    let manifest = format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [dependencies]\noutlast = {{ path = {:?}{features} }}\n{more_dependencies}\n[workspace]\n",
        workspace().join("supervisor"),
    );
    std::fs::write(dir.join("Cargo.toml"), manifest).expect("write Cargo.toml");
    std::fs::write(dir.join("src/main.rs"), main).expect("write main.rs");
    std::fs::copy(workspace().join("Cargo.lock"), dir.join("Cargo.lock")).expect("copy the lock");
    dir
}

fn cargo(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO"))
        .args(args)
        .current_dir(dir)
        // Its own target dir (shared between runs): the workspace's is
        // locked by the `cargo test` running this.
        .env("CARGO_TARGET_DIR", workspace().join("target/users-crate"))
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo")
}

/// The crates (names) in the user's dependency graph, normal edges only.
fn tree(dir: &Path) -> Vec<String> {
    let out = cargo(
        dir,
        &[
            "tree", "--edges", "normal", "--prefix", "none", "--format", "{p}",
        ],
    );
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn a_pool_user_compiles_none_of_the_binarys_crates_and_gets_the_exact_answer() {
    let dir = users_crate("");
    let crates = tree(&dir);
    assert!(crates.iter().any(|c| c == "outlast"), "{crates:?}");
    for banned in BINARY_ONLY {
        assert!(
            !crates.iter().any(|c| c == banned),
            "a Pool user compiles {banned}: {crates:?}"
        );
    }
    let out = cargo(&dir, &["run", "--quiet"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // sum of x^2 for x < 10,000 = (n-1) n (2n-1) / 6 with n = 10,000.
    assert_eq!(stdout.trim(), "sum of squares: 333283335000");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn each_feature_brings_only_its_own_crate() {
    for (feature, brings) in [
        ("progress", "indicatif"),
        ("metrics", "prometheus-client"),
        ("broker", "redis"),
        ("control", "serde_json"),
        ("worker-cmd", "serde_json"),
    ] {
        let dir = users_crate(&format!(", features = [\"{feature}\"]"));
        let crates = tree(&dir);
        assert!(crates.iter().any(|c| c == brings), "{feature}: {crates:?}");
        for banned in BINARY_ONLY.iter().filter(|&&c| c != brings) {
            assert!(
                !crates.iter().any(|c| c == banned),
                "feature {feature} brings {banned}: {crates:?}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Code that leaves a comparison's type to inference: it compiles with
/// std alone, and must still compile once the program uses outlast (a
/// crate anywhere in the dependency graph adds its trait impls to every
/// such choice; serde_json's `PartialEq<Value>` for the number types made
/// each line below ambiguous, E0283).
const LEFT_TO_INFERENCE: &str = r#"use outlast::pool::Pool;

fn square(x: u64) -> u64 {
    x * x
}

fn main() {
    let pool = Pool::new(2).expect("a pool");
    let squares = pool.map(square, 0..100u64).expect("map");
    assert_eq!(squares.iter().sum::<u64>(), (0..100u64).map(square).sum());
    let count: i32 = 42;
    assert!(count == "42".parse().expect("a number"));
    let mean: f64 = 2.5;
    assert_eq!(mean, [2.0, 3.0].iter().sum::<f64>() / 2.0);
    assert!(squares.len() == (100u8).into());
    println!("inferred");
}
"#;

#[test]
fn code_left_to_inference_still_compiles_once_outlast_is_used() {
    let dir = users_program("users_inference", "", "", LEFT_TO_INFERENCE);
    assert_eq!(run_program(&dir).trim(), "inferred");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A run asked for a control socket by a crate built without the
/// `control` feature.
const CONTROL_WITHOUT_ITS_FEATURE: &str = r#"use outlast::control::ControlAt;
use outlast::{BadOutput, Job, JobOutcome, RunOptions, Supervisor, TaskContext};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct One;

impl Job for One {
    type Input = u64;
    type Output = u64;
    type Error = String;
    fn describe(&self) -> String { "one task".into() }
    fn task_count(&self) -> u64 { 1 }
    fn input(&self, id: u64) -> u64 { id }
    fn run(&self, x: u64, _: &mut TaskContext<'_>) -> Result<u64, String> { Ok(x) }
    fn combine(&mut self, _id: u64, _y: u64) -> Result<(), BadOutput> { Ok(()) }
    fn outcome(&self, _complete: bool) -> JobOutcome { JobOutcome::value(1) }
}

fn main() {
    let options = RunOptions { control: ControlAt::Default, quiet: true, ..RunOptions::default() };
    match Supervisor::new(One).options(options).run() {
        Ok(_) => println!("ran"),
        Err(e) => println!("{e}"),
    }
}
"#;

#[test]
fn a_control_socket_without_its_feature_is_refused_in_words() {
    let serde = "serde = { version = \"1\", features = [\"derive\"] }\n";
    let dir = users_program("users_control", "", serde, CONTROL_WITHOUT_ITS_FEATURE);
    let said = run_program(&dir);
    assert!(
        said.contains("outlast was built without its `control` feature"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A program that has threads before its pool, with no setup line and
/// default options (the forkserver start method).
const WITH_THREADS: &str = r#"use outlast::pool::Pool;

fn square(x: u64) -> u64 {
    x * x
}

fn main() {
    for _ in 0..2 {
        std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_secs(600)));
    }
    let pool = Pool::new(2).expect("a pool in a program with threads");
    let squares = pool.map(square, 0..1_000u64).expect("map");
    println!("sum of squares: {}", squares.iter().sum::<u64>());
}
"#;

/// The same under tokio's multi-thread runtime, whose threads exist before
/// the first line of `main`.
const WITH_TOKIO: &str = r#"use std::time::Duration;

use std::sync::Arc;

use outlast::ipc::queue::Queue;
use outlast::ipc::sync::{Barrier, Condition, Event, Lock};
use outlast::ipc::value::RawValue;
use outlast::ipc::{Connection, Pipe, Process};
use outlast::pool::Pool;

fn square(x: u64) -> u64 {
    x * x
}

fn produce(q: Queue<u64>) {
    for x in 0..1_000u64 {
        q.put(&square(x)).expect("put");
    }
}

fn put_later(q: Queue<u64>) {
    std::thread::sleep(Duration::from_millis(300));
    q.put(&42).expect("put");
}

fn echo(mut conn: Connection) {
    while let Ok(x) = conn.recv::<u64>() {
        if conn.send(&x).is_err() {
            break;
        }
    }
}

fn stop_later(stop: Event) {
    std::thread::sleep(Duration::from_millis(200));
    stop.set();
}

const LARGE: usize = 4 << 20;

fn put_large(q: Queue<Vec<u8>>) {
    for i in 0..2u8 {
        q.put(&vec![i; LARGE]).expect("put");
    }
}

fn send_large(mut conn: Connection) {
    for i in 0..2u8 {
        conn.send(&vec![i; LARGE]).expect("sent");
    }
}

/// Takes two large items: each one's length and whether all its bytes
/// are its first.
fn take_large(q: Queue<Vec<u8>>) -> Vec<(usize, u8, bool)> {
    (0..2)
        .map(|_| q.get().expect("a large item"))
        .map(|v| (v.len(), v[0], v.iter().all(|&b| b == v[0])))
        .collect()
}

fn add_locked((lock, total): (Lock, RawValue<u64>)) {
    for _ in 0..200 {
        let _held = lock.lock().expect("the lock");
        let seen = total.get();
        std::thread::yield_now();
        total.set(seen + 1);
    }
}

fn ready_later((cond, ready): (Condition, RawValue<u64>)) {
    std::thread::sleep(Duration::from_millis(100));
    let _held = cond.lock().expect("the lock");
    ready.set(7);
    cond.notify_all();
}

fn count_blocking(counts: outlast::ipc::manager::Dict<String, i64>) {
    for _ in 0..100 {
        counts.fetch_add(&"all".to_string(), 1).expect("an add");
    }
}

fn add_under_manager_lock((lock, total): (outlast::ipc::manager::Lock, RawValue<u64>)) {
    for _ in 0..100 {
        let held = lock.lock().expect("the manager lock");
        let seen = total.get();
        std::thread::yield_now();
        total.set(seen + 1);
        held.release().expect("a release");
    }
}

fn put_jobs(jobs: outlast::ipc::manager::Queue<u64>) {
    for job in 0..200 {
        jobs.put(&job).expect("a put");
    }
}

fn meet(barrier: Barrier) -> u32 {
    (0..10).map(|_| barrier.wait().expect("a round")).sum()
}

#[tokio::main]
async fn main() {
    let pool = Pool::new(2).expect("a pool under tokio");
    let squares = pool.map(square, 0..1_000u64).expect("map");
    println!("sum of squares: {}", squares.iter().sum::<u64>());
    // Awaited: the runtime's threads stay free meanwhile.
    let mut sum = 0;
    for x in 0..100u64 {
        sum += pool.submit(square, x).expect("submit").await.expect("awaited");
    }
    // Moved into a blocking task (a Pool is Send), and back.
    let moved = pool.clone();
    let blocking = tokio::task::spawn_blocking(move || moved.map(square, 100..1_000u64))
        .await
        .expect("joined")
        .expect("map");
    println!("awaited: {}", sum + blocking.iter().sum::<u64>());
    // A lazy map's results as they come, in order, awaited.
    let mut results = pool.imap(square, 0..1_000u64);
    let mut streamed = 0;
    while let Some(result) = results.next_async().await {
        streamed += result.expect("an item");
    }
    println!("streamed: {streamed}");
    // Fifty children awaited at once, each in a task of its own.
    let children: Vec<_> = (0..50u64)
        .map(|x| {
            let mut child = Process::new(square, x);
            child.start().expect("start");
            tokio::spawn(async move { child.join_async().await.expect("a child's square") })
        })
        .collect();
    let mut from_children = 0;
    for child in children {
        from_children += child.await.expect("the task");
    }
    println!("children: {from_children}");
    // A Queue fed by a Process, awaited, and the Process too.
    let q = Queue::<u64>::new(0).expect("queue");
    let mut producer = Process::new(produce, q.clone());
    producer.start().expect("start");
    q.close(); // this handle only takes: the end comes when the producer's does
    let mut from_queue = 0;
    while let Ok(x) = q.get_async().await {
        from_queue += x;
    }
    producer.join_async().await.expect("the producer ended well");
    println!("from a queue: {from_queue}");
    // A timeout that runs out takes nothing: the late item is still there.
    let q = Queue::<u64>::new(0).expect("queue");
    let mut late = Process::new(put_later, q.clone());
    late.start().expect("start");
    q.close();
    let timed_out = tokio::time::timeout(Duration::from_millis(50), q.get_async()).await.is_err();
    let then = q.get_async().await.expect("the late item");
    println!("timed out: {timed_out}, then {then}");
    // A pipe to a child, awaited from a task of its own (the futures are Send).
    let (mut ours, theirs) = Pipe::duplex().expect("pipe");
    let mut child = Process::new(echo, theirs);
    child.start().expect("start");
    let echoed = tokio::spawn(async move {
        let mut n = 0;
        for x in 0..100u64 {
            ours.send_async(&x).await.expect("sent");
            n += (ours.recv_async::<u64>().await.expect("echoed") == x) as u64;
        }
        n
    })
    .await
    .expect("the task");
    println!("echoed: {echoed}");
    late.join_async().await.expect("the late producer ended well");
    child.join_async().await.expect("the echo ended well");
    // A stop flag that a worker process sets, awaited beside a timer.
    let stop = Event::new().expect("event");
    let mut worker = Process::new(stop_later, stop.clone());
    worker.start().expect("start");
    let stopped = tokio::select! {
        waited = stop.wait_async() => waited.is_ok(),
        _ = tokio::time::sleep(Duration::from_secs(60)) => false,
    };
    worker.join_async().await.expect("the worker ended well");
    println!("stopped: {stopped}");
    // Large items are decoded off the runtime's threads; a timeout that
    // runs out in the middle of one loses nothing and reorders nothing.
    let q = Queue::<Vec<u8>>::new(0).expect("queue");
    let mut large = Process::new(put_large, q.clone());
    large.start().expect("start");
    large.join_async().await.expect("both in");
    let mut items = Vec::new();
    if let Ok(item) = tokio::time::timeout(Duration::from_micros(1), q.get_async()).await {
        items.push(item.expect("a large item"));
    }
    while items.len() < 2 {
        items.push(q.get_async().await.expect("a large item"));
    }
    let (mut ours, theirs) = Pipe::duplex().expect("pipe");
    let mut sender = Process::new(send_large, theirs);
    sender.start().expect("start");
    let mut frames = Vec::new();
    if let Ok(frame) = tokio::time::timeout(Duration::from_micros(1), ours.recv_async()).await {
        frames.push(frame.expect("a large frame"));
    }
    while frames.len() < 2 {
        frames.push(ours.recv_async::<Vec<u8>>().await.expect("a large frame"));
    }
    sender.join_async().await.expect("the sender ended well");
    let whole = |all: &[Vec<u8>]| {
        all.iter().enumerate().all(|(i, v)| v.len() == LARGE && v.iter().all(|&b| b == i as u8))
    };
    println!("large, in order: {} {}", whole(&items), whole(&frames));
    // Large items the other way, into a queue whose ring they do not
    // fit: a put cut by a timeout has put nothing and is made again.
    let q = Queue::<Vec<u8>>::with_ring_bytes(0, 64 * 1024).expect("queue");
    let mut taker = Process::new(take_large, q.clone());
    taker.start().expect("start");
    let first = vec![9u8; LARGE];
    if tokio::time::timeout(Duration::from_micros(1), q.put_async(&first)).await.is_err() {
        q.put_async(&first).await.expect("a large put");
    }
    q.put_async(&vec![10u8; LARGE]).await.expect("a large put");
    let took = taker.join_async().await.expect("the taker ended well");
    println!("large puts: {took:?}");
    // A lock shared with two processes, held by eight tasks across an
    // await (each may resume on another thread of the runtime); half the
    // tries run under a timeout that may cut them, taking nothing.
    let lock = Arc::new(Lock::new().expect("lock"));
    let total = Arc::new(RawValue::new(0u64).expect("value"));
    let adders: Vec<_> = (0..2)
        .map(|_| {
            let mut p = Process::new(add_locked, ((*lock).clone(), (*total).clone()));
            p.start().expect("start");
            p
        })
        .collect();
    let tasks: Vec<_> = (0..8u64)
        .map(|k| {
            let (lock, total) = (Arc::clone(&lock), Arc::clone(&total));
            tokio::spawn(async move {
                let mut cut = 0;
                for i in 0..100u64 {
                    let held = match i % 2 {
                        0 => lock.lock_async().await,
                        _ => {
                            let patience = Duration::from_micros((k * 7 + i * 13) % 50);
                            match tokio::time::timeout(patience, lock.lock_async()).await {
                                Ok(held) => held,
                                Err(_) => {
                                    cut += 1;
                                    continue;
                                }
                            }
                        }
                    };
                    let _held = held.expect("the lock");
                    let seen = total.get();
                    tokio::task::yield_now().await;
                    total.set(seen + 1);
                }
                cut
            })
        })
        .collect();
    let mut cut = 0;
    for task in tasks {
        cut += task.await.expect("the task");
    }
    for mut p in adders {
        p.join_async().await.expect("an adder ended well");
    }
    println!("locked total: {}", total.get() + cut);
    // A barrier met by two processes and this task, ten rounds.
    let barrier = Barrier::new(3).expect("barrier");
    let parties: Vec<_> = (0..2)
        .map(|_| {
            let mut p = Process::new(meet, barrier.clone());
            p.start().expect("start");
            p
        })
        .collect();
    let mut indices = 0;
    for _ in 0..10 {
        indices += barrier.wait_async().await.expect("a round");
    }
    for mut p in parties {
        indices += p.join_async().await.expect("a party ended well");
    }
    println!("barrier indices: {indices}");
    // A condition notified by a process, waited for by a task.
    let cond = Condition::new().expect("condition");
    let ready = RawValue::new(0u64).expect("value");
    let mut notifier = Process::new(ready_later, (cond.clone(), ready.clone()));
    notifier.start().expect("start");
    let mut held = cond.lock_async().await.expect("the lock");
    while ready.get() == 0 {
        held = cond.wait_async(held).await.expect("notified");
    }
    drop(held);
    notifier.join_async().await.expect("the notifier ended well");
    println!("condition: {}", ready.get());
    // A manager's dict, awaited from eight tasks beside a child's blocking calls.
    let manager = outlast::ipc::Manager::start().expect("manager");
    let counts = manager.dict::<String, i64>().expect("dict");
    let mut child = Process::new(count_blocking, counts.clone());
    child.start().expect("start");
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let counts = counts.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    counts.fetch_add_async(&"all".to_string(), 1).await.expect("an add");
                    counts.set_async(&format!("{t}-{i}"), &i).await.expect("a set");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("the task");
    }
    child.join_async().await.expect("the counter ended well");
    let all = counts.get_async(&"all".to_string()).await.expect("a get");
    println!("manager: {:?} {}", all, counts.len_async().await.expect("a len"));
    let blobs = manager.dict::<String, Vec<u8>>().expect("dict");
    let blob: Vec<u8> = (0..LARGE as u32).map(|i| (i % 251) as u8).collect();
    blobs.set_async(&"blob".to_string(), &blob).await.expect("a large set");
    let back = blobs.get_async(&"blob".to_string()).await.expect("a large get");
    println!("manager, large: {}", back == Some(blob));
    // A manager's lock, taken by a child's blocking calls and by eight
    // tasks, half of whose takes are cut short by timeouts: exact.
    let mlock = manager.lock().expect("lock");
    let mtotal = RawValue::new(0u64).expect("value");
    let mut adder = Process::new(add_under_manager_lock, (mlock.clone(), mtotal.clone()));
    adder.start().expect("start");
    let tasks: Vec<_> = (0..8u64)
        .map(|k| {
            let (lock, total) = (mlock.clone(), mtotal.clone());
            tokio::spawn(async move {
                let mut cut = 0;
                for i in 0..50u64 {
                    let patience = Duration::from_micros((k * 7 + i * 13) % 400);
                    let held = match i % 2 {
                        0 => lock.lock_async().await.expect("the manager lock"),
                        _ => match tokio::time::timeout(patience, lock.lock_async()).await {
                            Ok(held) => held.expect("the manager lock"),
                            Err(_) => {
                                cut += 1;
                                continue;
                            }
                        },
                    };
                    let seen = total.get();
                    tokio::task::yield_now().await;
                    total.set(seen + 1);
                    if i % 4 == 0 {
                        held.release().await.expect("a release");
                    }
                }
                cut
            })
        })
        .collect();
    let mut cut = 0;
    for task in tasks {
        cut += task.await.expect("the task");
    }
    adder.join_async().await.expect("the adder ended well");
    // (A guard's drop sends its release without waiting for the answer.)
    let free = mlock.lock_timeout_async(Duration::from_secs(10)).await.expect("a take");
    let free = free.is_some_and(|held| !held.previous_owner_died());
    println!("manager lock total: {}, free: {free}", mtotal.get() + cut);
    // A guard that does not borrow its proxy, released in another task.
    let owned = mlock.lock_async().await.expect("the manager lock").into_owned();
    let released = tokio::spawn(async move { owned.release().await.is_ok() });
    println!("owned guard released in a task: {}", released.await.expect("the task"));
    // A manager's queue fed by a child, taken by four tasks whose waits
    // are cut short by timeouts: each job exactly once.
    let jobs = manager.queue::<u64>().expect("queue");
    let mut feeder = Process::new(put_jobs, jobs.clone());
    feeder.start().expect("start");
    let takers: Vec<_> = (0..4u64)
        .map(|t| {
            let jobs = jobs.clone();
            tokio::spawn(async move {
                let mut taken = Vec::new();
                let mut turn = t;
                while taken.len() < 50 {
                    turn += 1;
                    let wait = Duration::from_micros(turn * 37 % 300);
                    if let Ok(job) = tokio::time::timeout(wait, jobs.get_async()).await {
                        taken.push(job.expect("a job"));
                    }
                }
                taken
            })
        })
        .collect();
    let mut all_jobs = Vec::new();
    for taker in takers {
        all_jobs.extend(taker.await.expect("the taker"));
    }
    feeder.join_async().await.expect("the feeder ended well");
    all_jobs.sort_unstable();
    println!("jobs once each: {}", all_jobs == (0..200).collect::<Vec<u64>>());
    // A manager's semaphore as the rate limiter of two thousand tasks.
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    let limit = manager.semaphore(4).expect("semaphore");
    let inside = std::sync::Arc::new(AtomicU64::new(0));
    let most = std::sync::Arc::new(AtomicU64::new(0));
    let limited: Vec<_> = (0..2000)
        .map(|_| {
            let (limit, inside, most) = (limit.clone(), inside.clone(), most.clone());
            tokio::spawn(async move {
                let held = limit.acquire_async().await.expect("a unit");
                most.fetch_max(inside.fetch_add(1, SeqCst) + 1, SeqCst);
                tokio::task::yield_now().await;
                inside.fetch_sub(1, SeqCst);
                held.release().await.expect("given back");
            })
        })
        .collect();
    for task in limited {
        task.await.expect("a limited task");
    }
    println!("at most 4 at once: {}, free again: {}", most.load(SeqCst) <= 4, limit.value().expect("value"));
    // The same with timed acquires, and tasks that give up on units that never come.
    most.store(0, SeqCst);
    let timed: Vec<_> = (0..2000)
        .map(|_| {
            let (limit, inside, most) = (limit.clone(), inside.clone(), most.clone());
            tokio::spawn(async move {
                let held = limit.acquire_timeout_async(Duration::from_secs(60)).await.expect("the manager");
                let Some(held) = held else { return false };
                most.fetch_max(inside.fetch_add(1, SeqCst) + 1, SeqCst);
                tokio::task::yield_now().await;
                inside.fetch_sub(1, SeqCst);
                held.release().await.is_ok()
            })
        })
        .collect();
    let mut all_in = true;
    for task in timed {
        all_in &= task.await.expect("a timed task");
    }
    let never = manager.semaphore(0).expect("semaphore");
    let giving_up: Vec<_> = (0..200)
        .map(|_| {
            let never = never.clone();
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let held = never.acquire_timeout_async(Duration::from_millis(50)).await.expect("the manager");
                held.is_none() && started.elapsed() >= Duration::from_millis(50)
            })
        })
        .collect();
    let mut gave_up = 0;
    for task in giving_up {
        gave_up += u32::from(task.await.expect("a task"));
    }
    println!("timed: at most 4 at once: {}, all in: {all_in}, out of time: {gave_up}", most.load(SeqCst) <= 4);
}
"#;

fn run_program(dir: &Path) -> String {
    let out = cargo(dir, &["run", "--quiet"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn programs_with_threads_use_a_pool_with_default_options() {
    // sum of x^2 for x < 1,000.
    let dir = users_program("users_threads", "", "", WITH_THREADS);
    assert_eq!(run_program(&dir).trim(), "sum of squares: 332833500");
    let _ = std::fs::remove_dir_all(&dir);
    let tokio =
        "tokio = { version = \"1\", features = [\"rt-multi-thread\", \"macros\", \"time\"] }\n";
    let dir = users_program("users_tokio", "", tokio, WITH_TOKIO);
    assert_eq!(
        run_program(&dir).trim(),
        "sum of squares: 332833500\nawaited: 332833500\nstreamed: 332833500\n\
         children: 40425\nfrom a queue: 332833500\n\
         timed out: true, then 42\nechoed: 100\nstopped: true\n\
         large, in order: true true\nlarge puts: [(4194304, 9, true), (4194304, 10, true)]\n\
         locked total: 1200\nbarrier indices: 30\ncondition: 7\nmanager: Some(300) 201\n\
         manager, large: true\nmanager lock total: 500, free: true\nowned guard released in a task: true\njobs once each: true\n\
         at most 4 at once: true, free again: 4\n\
         timed: at most 4 at once: true, all in: true, out of time: 200"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A program written as Python's `from multiprocessing import Queue, Lock,
/// Value, Manager, Pool` reads: the names at the crates' roots.
const PYTHONS_NAMES: &str = r#"use outlast::ipc::{Lock, Manager, Process, Queue, Value};
use outlast::Pool;

fn square(x: u64) -> u64 {
    x * x
}

fn add((q, total, lock): (Queue<u64>, Value<u64>, Lock)) {
    // Only takes: its handle would otherwise hold off `Disconnected`.
    q.close();
    while let Ok(n) = q.get() {
        let _held = lock.lock().expect("the lock");
        *total.lock().expect("the value") += n;
    }
}

fn main() {
    let pool = Pool::new(2).expect("a pool");
    let squares = pool.map(square, 0..1_000u64).expect("map");
    let q = Queue::new(0).expect("a queue");
    let total = Value::new(0u64).expect("a value");
    let lock = Lock::new().expect("a lock");
    let mut children: Vec<_> = (0..2)
        .map(|_| Process::new(add, (q.clone(), total.clone(), lock.clone())))
        .collect();
    for child in &mut children {
        child.start().expect("start");
    }
    for n in &squares {
        q.put(n).expect("put");
    }
    q.close();
    for child in &mut children {
        child.join().expect("join");
    }
    let manager = Manager::start().expect("a manager");
    let dict = manager.dict::<String, u64>().expect("a dict");
    dict.set(&"total".into(), &*total.lock().expect("the value")).expect("set");
    println!("total: {:?}", dict.get(&"total".into()).expect("get"));
}
"#;

#[test]
fn pythons_top_level_names_are_at_the_crates_roots() {
    let dir = users_program("users_python_names", "", "", PYTHONS_NAMES);
    // sum of x^2 for x < 1,000, through a queue, a lock and a value.
    assert_eq!(run_program(&dir).trim(), "total: Some(332833500)");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A user's own `Job` with a journal: SIGKILLed while it runs, started
/// again, it finishes with the exact answer and says what it resumed.
const WITH_A_JOURNAL: &str = r#"use outlast::journal::JournalOptions;
use outlast::{BadOutput, Job, JobOutcome, Supervisor, TaskContext};
use serde::{Deserialize, Serialize};

/// Sums the squares below n, a task per number, each taking a moment.
#[derive(Clone, Serialize, Deserialize)]
struct SlowSquares { n: u64, #[serde(skip)] sum: u64 }

impl Job for SlowSquares {
    type Input = u64;
    type Output = u64;
    type Error = String;
    fn describe(&self) -> String { format!("squares below {}", self.n) }
    fn task_count(&self) -> u64 { self.n }
    fn input(&self, id: u64) -> u64 { id }
    fn run(&self, x: u64, _: &mut TaskContext<'_>) -> Result<u64, String> {
        std::thread::sleep(std::time::Duration::from_millis(1));
        Ok(x * x)
    }
    fn combine(&mut self, _id: u64, y: u64) -> Result<(), BadOutput> { self.sum += y; Ok(()) }
    fn outcome(&self, _complete: bool) -> JobOutcome { JobOutcome::value(self.sum) }
}

fn main() {
    let journal = std::env::args().nth(1).expect("the journal's path");
    let report = Supervisor::new(SlowSquares { n: 6000, sum: 0 })
        .workers(2)
        .quiet(true)
        .journal(JournalOptions::new(journal))
        .run()
        .expect("a run");
    println!("{} resumed {} done {}", report.result, report.tasks.resumed, report.tasks.done);
}
"#;

#[test]
fn a_users_job_with_a_journal_resumes_after_kills_with_the_exact_answer() {
    let serde = "serde = { version = \"1\", features = [\"derive\"] }\n";
    let dir = users_program("users_journal", "", serde, WITH_A_JOURNAL);
    let built = cargo(&dir, &["build", "--quiet"]);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let program = workspace().join("target/users-crate/debug/users_journal");
    let journal = dir.join("journal");
    let mut killed = 0;
    for delay_ms in [150, 250, 200, 300, 350] {
        let mut child = Command::new(&program)
            .arg(&journal)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start the program");
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        if child.try_wait().expect("wait").is_none() {
            killed += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let out = Command::new(&program)
        .arg(&journal)
        .output()
        .expect("the last run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fields: Vec<&str> = stdout.split_whitespace().collect();
    // sum of x^2 for x < 6,000.
    assert_eq!(fields[0], "71982001000", "{stdout}");
    assert_eq!(fields[4], "6000", "{stdout}");
    let resumed: u64 = fields[2].parse().expect("a count");
    // 6,000 tasks of 1 ms on 2 workers outlast the five kills' delays.
    assert_eq!(killed, 5, "{stdout}");
    assert!(resumed > 0, "{stdout}: nothing resumed");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A program built with `panic = "abort"` (a common release profile): a
/// panic cannot be caught, and the process ends in the panic hook.
const WITH_PANIC_ABORT: &str = r#"use outlast::ipc::Process;
use outlast::pool::{Pool, PoolError, TaskError};

fn checked_double(x: u64) -> u64 {
    if x % 97 == 13 {
        panic!("bad item {x}");
    }
    x * 2
}

fn child(x: u64) -> u64 {
    if x == 1 {
        panic!("the child says no");
    }
    x
}

fn no_database(_: u64) {
    panic!("no database here");
}

fn main() {
    let pool = Pool::new(2).expect("a pool");
    let mut panicked = Vec::new();
    let mut sum = 0;
    for (i, outcome) in pool.imap(checked_double, 0..5000u64).enumerate() {
        match outcome {
            Ok(y) => sum += y,
            Err(TaskError::Panicked { message, location }) => {
                let line = location.unwrap_or_default();
                assert_eq!(message, format!("bad item {i}"));
                assert!(line.starts_with("src/main.rs:6:"), "{line}");
                panicked.push(i);
            }
            Err(other) => panic!("item {i}: {other:?}"),
        }
    }
    println!("panicked: {panicked:?}");
    println!("sum of the others: {sum}");
    match pool.map(checked_double, 0..100u64) {
        Err(PoolError::Task { index, error: TaskError::Panicked { message, .. } }) => {
            println!("map: item {index} panicked: {message}")
        }
        other => println!("map: {other:?}"),
    }
    let mut p = Process::new(child, 1u64);
    p.start().expect("start");
    println!("join: {:?}", p.join());
    let failing = Pool::builder(2).initializer(no_database, 0).build().expect("a pool");
    match failing.map(checked_double, 0..10u64) {
        Err(PoolError::Task { error: TaskError::Lost(why), .. }) => println!("initializer: {why}"),
        other => println!("initializer: {other:?}"),
    }
}
"#;

#[test]
fn under_panic_abort_a_panicking_item_is_its_own_answer_and_join_says_panicked() {
    let abort = "\n[profile.dev]\npanic = \"abort\"\n";
    let dir = users_program("users_panic_abort", "", abort, WITH_PANIC_ABORT);
    let out = cargo(&dir, &["run", "--quiet"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // 52 panics, each ending a worker: more than the restart limit's 20,
    // which such deaths do not count toward.
    let panicking: Vec<u64> = (0..5000).filter(|x| x % 97 == 13).collect();
    let others: u64 = (0..5000u64).filter(|x| x % 97 != 13).map(|x| x * 2).sum();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[..4],
        [
            format!("panicked: {panicking:?}"),
            format!("sum of the others: {others}"),
            "map: item 13 panicked: bad item 13".to_string(),
            "join: Err(Panicked { message: \"the child says no\" })".to_string(),
        ]
    );
    // A panicking initializer is a worker that could not start, as it is
    // when the panic unwinds (not a crash each time, with no reason given).
    let initializer = lines.get(4).copied().unwrap_or_default();
    assert!(
        initializer.starts_with(
            "initializer: workers could not start 21 times in a row, more than the restart limit of 20; last: worker "
        ) && initializer.ends_with("exited with code 78: it could not start (why: its `cannot start` line on stderr)"),
        "{stdout}"
    );
    assert!(
        stderr.lines().any(|line| line.ends_with(
            ": cannot start: the initializer panicked at src/main.rs:19:5: no database here"
        )),
        "{stderr}"
    );
    assert_eq!(lines.len(), 5, "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A user's types as they are in a codebase that also speaks JSON: an
/// internally tagged enum, a field left out when empty, a
/// `serde_json::Value`. Plain, postcard cannot read them back; wrapped in
/// `Described`, they travel through a `Pool`, a `Queue` and a `Manager`.
const WITH_SERDE_ATTRIBUTES: &str = r#"use outlast::ipc::{manager::Manager, queue::Queue, Described, Pipe};
use outlast::pool::Pool;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Shape {
    Circle { r: f64 },
    Square { side: f64 },
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Order {
    id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    shape: Shape,
    #[serde(default)]
    extra: serde_json::Value,
}

fn area(order: Described<Order>) -> f64 {
    match order.shape {
        Shape::Circle { r } => 3.0 * r * r,
        Shape::Square { side } => side * side,
    }
}

fn plain_area(order: Order) -> f64 {
    area(Described(order))
}

fn relabel(order: Described<Order>) -> Described<Order> {
    let mut order = order.into_inner();
    order.extra = serde_json::json!({ "relabelled": true, "was": order.id });
    order.note = None;
    Described(order)
}

/// Reads `Option<Box<Self>>` from anything but null by recursing forever.
#[derive(Serialize, Deserialize, Debug)]
struct Link(Option<Box<Link>>);

fn main() {
    let orders: Vec<Order> = (0..2000u64)
        .map(|i| Order {
            id: i,
            note: (i % 3 == 0).then(|| format!("note {i}")),
            shape: if i % 2 == 0 {
                Shape::Circle { r: (i % 5) as f64 }
            } else {
                Shape::Square { side: (i % 7) as f64 }
            },
            extra: if i % 4 == 0 { serde_json::json!({ "rush": i % 8 == 0 }) } else { serde_json::Value::Null },
        })
        .collect();
    let pool = Pool::new(2).expect("a pool");
    match pool.map(plain_area, orders.clone()) {
        Ok(_) => println!("plain: accepted"),
        Err(e) => println!("plain: {e}"),
    }
    let areas = pool
        .map(area, orders.iter().cloned().map(Described))
        .expect("described items");
    let expected: f64 = orders.iter().cloned().map(Described).map(area).sum();
    println!("areas: {} of {}, total matches: {}", areas.len(), orders.len(), areas.iter().sum::<f64>() == expected);
    let back = pool
        .map(relabel, orders.iter().cloned().map(Described))
        .expect("described results");
    let relabelled = back
        .iter()
        .enumerate()
        .filter(|(i, o)| o.extra["relabelled"] == true && o.extra["was"] == *i as u64 && o.note.is_none())
        .count();
    println!("relabelled: {relabelled}");
    let queue = Queue::<Described<Order>>::new(0).expect("a queue");
    for order in &orders[..10] {
        queue.put(&Described(order.clone())).expect("put");
    }
    let same = (0..10).filter(|i| queue.get().expect("get").into_inner() == orders[*i]).count();
    println!("queue: {same} of 10 the same");
    let manager = Manager::start().expect("a manager");
    let dict = manager.dict::<u64, Described<Order>>().expect("a dict");
    dict.set(&4, &Described(orders[4].clone())).expect("set");
    let got = dict.get(&4).expect("get").map(Described::into_inner);
    println!("manager: the same: {}", got.as_ref() == Some(&orders[4]));
    let (mut ours, mut theirs) = Pipe::duplex().expect("a pipe");
    let mut hostile = vec![0x81u8; 100_000];
    hostile.push(0x80);
    ours.send(&hostile).expect("send");
    match theirs.recv::<Described<Link>>() {
        Ok(_) => println!("hostile: read"),
        Err(e) => println!("hostile: {e}"),
    }
}
"#;

#[test]
fn a_users_types_with_serde_attributes_travel_described() {
    let dependencies = "serde = { version = \"1\", features = [\"derive\"] }\nserde_json = \"1\"\n";
    let dir = users_program("users_described", "", dependencies, WITH_SERDE_ATTRIBUTES);
    let out = cargo(&dir, &["run", "--quiet"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("plain: item 0: ")
            && lines[0].contains("wrap the value in `Described` (`outlast_ipc::Described`, or `outlast::ipc::Described`)"),
        "{stdout}"
    );
    assert_eq!(
        lines[1..],
        [
            "areas: 2000 of 2000, total matches: true",
            "relabelled: 2000",
            "queue: 10 of 10 the same",
            "manager: the same: true",
            "hostile: undecodable frame payload: a described value that does not read back: a value nested deeper than this thread's stack can read",
        ],
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
