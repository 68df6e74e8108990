//! A manager reached over TCP by separate programs: a server and two
//! clients sharing a queue of jobs and a dict of results, by name (Python's
//! `BaseManager(address, authkey)` with `register('get_queue', ...)`).
//!
//! `cargo run --example manager_remote` runs all three on this machine
//! over loopback: it serves a manager on 127.0.0.1, starts this program
//! twice more as clients (`manager_remote client ADDRESS`, the key in
//! `IPC_MANAGER_KEY`), puts 20 jobs and prints what the clients computed.
//! Across machines, run `supervisor manager serve --listen 0.0.0.0:50000
//! --authkey-file KEY` on one and the clients, pointed at it, on others.

use std::process::Command;
use std::time::Duration;

use outlast_ipc::manager::{Dict, Manager, Queue};

const JOBS: u64 = 20;
const CLIENTS: usize = 2;

/// A client: takes jobs until it gets `None`, squares each, stores it.
fn client(address: &str, key: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
    let manager = Manager::connect(&address.parse()?, key)?;
    let jobs = manager.open::<Queue<Option<u64>>>("jobs")?;
    let results = manager.open::<Dict<u64, (u64, u32)>>("results")?;
    let me = std::process::id();
    while let Some(n) = jobs.get()? {
        results.set(&n, &(n * n, me))?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    outlast_ipc::init();
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("client") {
        let address = args.get(2).ok_or("usage: manager_remote client ADDRESS")?;
        let key = std::env::var("IPC_MANAGER_KEY")?;
        return client(address, key.as_bytes());
    }
    // The key only the three programs know (a file, in real use).
    let mut raw = [0u8; 16];
    outlast_ipc::os::random::fill(&mut raw)?;
    let key: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let manager = Manager::serve(&"127.0.0.1:0".parse()?, key.as_bytes())?;
    println!("manager serving on {}", manager.address());
    let jobs = manager.open::<Queue<Option<u64>>>("jobs")?;
    let results = manager.open::<Dict<u64, (u64, u32)>>("results")?;
    let me = std::env::current_exe()?;
    let mut clients = (0..CLIENTS)
        .map(|_| {
            Command::new(&me)
                .args(["client", manager.address()])
                .env("IPC_MANAGER_KEY", &key)
                .spawn()
        })
        .collect::<Result<Vec<_>, _>>()?;
    for n in 1..=JOBS {
        jobs.put(&Some(n))?;
    }
    for _ in 0..CLIENTS {
        jobs.put(&None)?;
    }
    for c in &mut clients {
        let status = c.wait()?;
        if !status.success() {
            return Err(format!("a client failed: {status}").into());
        }
    }
    // In order of the job, not of arrival (two clients race).
    let mut items = results.items()?;
    items.sort_by_key(|(n, _)| *n);
    let sum: u64 = items.iter().map(|(_, (square, _))| square).sum();
    let mut by_client: Vec<u32> = items.iter().map(|(_, (_, pid))| *pid).collect();
    by_client.sort();
    by_client.dedup();
    println!(
        "results: {} entries, from {} of the {CLIENTS} clients",
        items.len(),
        by_client.len()
    );
    println!("sum of squares: {sum}");
    for (n, (square, _)) in items.iter().take(3) {
        println!("  {n}^2 = {square}");
    }
    // A wrong key is refused, by name.
    match Manager::connect(&manager.address().parse()?, b"a guess") {
        Err(e) => println!("a wrong key: {e}"),
        Ok(_) => return Err("a wrong key was let in".into()),
    }
    manager.shutdown();
    std::thread::sleep(Duration::from_millis(10));
    Ok(())
}
