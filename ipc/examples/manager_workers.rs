//! Python's Manager program: three processes `Worker-0..2`, each under a
//! manager lock, add 1 to `namespace.count`, append their name to a shared
//! list and set `dict[name]` to the time; the parent prints the count, the
//! names and the dict.
//!
//! `cargo run --example manager_workers [fork|spawn]`

use std::time::{SystemTime, UNIX_EPOCH};

use outlast_ipc::manager::{Dict, List, Lock, Manager, Namespace};
use outlast_ipc::{Process, StartMethod};

type Shared = (Namespace, List<String>, Dict<String, f64>, Lock);

fn worker((ns, names, times, lock): Shared) -> Result<(), String> {
    let name = outlast_ipc::current_process().name;
    let e = |e: outlast_ipc::manager::ManagerError| e.to_string();
    // Held until `held` is dropped (Python's `with lock:`).
    let held = lock.acquire().map_err(e)?;
    ns.fetch_add("count", 1).map_err(e)?;
    names.append(&name).map_err(e)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    times.set(&name, &now).map_err(e)?;
    held.release().map_err(e)?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    outlast_ipc::init();
    // fork (the default), spawn or forkserver, from the command line.
    let method: StartMethod = std::env::args()
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or_default();
    let manager = Manager::start()?;
    let shared: Shared = (
        manager.namespace()?,
        manager.list()?,
        manager.dict()?,
        manager.lock()?,
    );
    let mut workers = Vec::new();
    for i in 0..3 {
        let mut p = Process::new(worker, shared.clone())
            .named(format!("Worker-{i}"))
            .start_method(method);
        p.start()?;
        workers.push(p);
    }
    for mut p in workers {
        p.join()??;
    }
    let (ns, names, times, _) = shared;
    println!("count: {}", ns.get::<i64>("count")?.unwrap_or(0));
    let mut names = names.to_vec()?;
    names.sort();
    println!("names: {names:?}");
    let times = times.items()?;
    println!("dict: {} entries", times.len());
    for (name, at) in times {
        println!("  {name}: {at:.3}");
    }
    Ok(())
}
