//! A manager's objects from async code (tokio here; any executor will do):
//! two worker processes add to a shared count under a manager lock with
//! the blocking calls, while four tasks of this process add under the
//! same lock with `lock_async`, holding it across their awaited reads and
//! writes. A take cut short by a timeout holds nothing; all meet at a
//! barrier, and the count is exact.
//!
//! `cargo run --example async_manager [fork|spawn|forkserver]`

use std::time::Duration;

use outlast_ipc::manager::{Barrier, Dict, Lock, Manager, ManagerError};
use outlast_ipc::{Process, StartMethod};

const EACH: i64 = 100;

type Shared = (Dict<String, i64>, Lock, Barrier);

/// A worker process: blocking calls, as in any program (its error goes
/// back to the parent as words).
fn worker((counts, lock, done): Shared) -> Result<(), String> {
    let key = "count".to_string();
    let add = || -> Result<(), ManagerError> {
        for _ in 0..EACH {
            let held = lock.acquire()?;
            let seen = counts.get(&key)?.unwrap_or(0);
            counts.set(&key, &(seen + 1))?;
            held.release()?;
        }
        done.wait().map(|_| ())
    };
    add().map_err(|e| e.to_string())
}

/// A task: the same read and write, awaited, under the same lock.
async fn add(counts: Dict<String, i64>, lock: Lock) -> Result<(), ManagerError> {
    let key = "count".to_string();
    for _ in 0..EACH {
        // Held by this guard's own connection, wherever the task runs.
        let held = lock.lock_async().await?;
        let seen = counts.get_async(&key).await?.unwrap_or(0);
        counts.set_async(&key, &(seen + 1)).await?;
        held.release().await?;
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    outlast_ipc::init();
    let method: StartMethod = std::env::args()
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or_default();
    let manager = Manager::start()?;
    let shared: Shared = (manager.dict()?, manager.lock()?, manager.barrier(3)?);
    let (counts, lock, done) = shared.clone();

    // Started before the first awaited call: a fork start refuses once
    // threads run (ours that wait for awaited replies, or a runtime's).
    let mut workers = Vec::new();
    for _ in 0..2 {
        let mut p = Process::new(worker, shared.clone()).start_method(method);
        p.start()?;
        workers.push(p);
    }
    // Held here: a take bounded by the executor's timeout gives up, and
    // takes nothing.
    let held = lock.lock_async().await?;
    let cut = tokio::time::timeout(Duration::from_millis(20), lock.lock_async()).await;
    println!("a take timed out while the lock was held: {}", cut.is_err());
    held.release().await?;
    let tasks: Vec<_> = (0..4)
        .map(|_| tokio::spawn(add(counts.clone(), lock.clone())))
        .collect();
    for task in tasks {
        task.await??;
    }
    // The workers' and this process's adds are all in once the workers
    // reach the barrier too.
    let index = done.wait_async().await?;
    println!("barrier passed (this task's arrival index: {index})");
    for mut p in workers {
        p.join_async().await??;
    }
    let count = counts.get_async(&"count".to_string()).await?;
    println!("count: {}", count.unwrap_or(0));
    Ok(())
}
