//! A worker pool on a `JoinableQueue`: workers mark each task done, and the
//! main process waits with `join()` until all are, as in Python's docs.
//!
//! ```text
//! cargo run -p outlast-ipc --example joinable_pool [-- spawn]
//! ```

use std::time::Duration;

use outlast_ipc::queue::JoinableQueue;
use outlast_ipc::value::Value;
use outlast_ipc::{Process, StartMethod};

fn worker((tasks, total): (JoinableQueue<u64>, Value<u64>)) {
    // Stop after a quiet second: the pool is done by then.
    while let Ok(n) = tasks.get_timeout(Duration::from_secs(1)) {
        total.fetch_add(n);
        let _ = tasks.task_done();
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    outlast_ipc::init();
    // fork (the default), spawn or forkserver, from the command line.
    let method: StartMethod = std::env::args()
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or_default();
    let tasks = JoinableQueue::<u64>::new(0)?;
    let total = Value::new(0u64)?;
    let mut workers = Vec::new();
    for _ in 0..4 {
        let mut p = Process::new(worker, (tasks.clone(), total.clone())).start_method(method);
        p.start()?;
        workers.push(p);
    }
    for n in 1..=100 {
        tasks.put(&n)?;
    }
    // A worker killed with a task in hand is told here, not waited for.
    if let Err(e) = tasks.join_timeout(Duration::from_secs(60)) {
        return Err(format!("{} tasks never finished: {e}", tasks.unfinished()).into());
    }
    println!(
        "all tasks done: total {} (unfinished {})",
        total.load(),
        tasks.unfinished()
    );
    for p in &mut workers {
        p.join()?;
    }
    Ok(())
}
