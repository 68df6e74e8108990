//! `supervisor bench manager`: `outlast_ipc::manager` dict round trips from local
//! clients (their shared-memory lanes, the Unix socket beside them):
//! `set` + `get` from one client and from four client processes at once
//! (on one dict each, with a server of one thread and of one thread per
//! CPU, at least 2), and batches of 64 operations per round trip; then the same from
//! one client over loopback TCP. Python's
//! `Manager().dict()` comes from `scripts/compare-python`.

use std::time::Instant;

use outlast_ipc::manager::{Dict, Manager, ServeOptions};
use outlast_ipc::Process;

use super::report::Row;
use super::stats::median;

/// `set` + `get` round trips per second on `d`, `n` of each.
fn round_trips((d, n): (Dict<u64, u64>, u64)) -> Result<f64, String> {
    let started = Instant::now();
    for i in 0..n {
        d.set(&i, &i).map_err(|e| e.to_string())?;
        if d.get(&i).map_err(|e| e.to_string())? != Some(i) {
            return Err(format!("lost key {i}"));
        }
    }
    Ok(2.0 * n as f64 / started.elapsed().as_secs_f64())
}

/// Batches of 64 `set`s then 64 `get`s: operations per second.
fn batched_rate(d: &Dict<u64, u64>, n: u64) -> Result<f64, String> {
    let keys: Vec<u64> = (0..64).collect();
    let items: Vec<(u64, u64)> = keys.iter().map(|&k| (k, k)).collect();
    let rounds = n / 16;
    let started = Instant::now();
    for _ in 0..rounds {
        d.update(items.iter().map(|(k, v)| (k, v)))
            .map_err(|e| e.to_string())?;
        let got = d.get_many(&keys).map_err(|e| e.to_string())?;
        if got.len() != 64 {
            return Err("a batch lost replies".into());
        }
    }
    Ok(rounds as f64 * 128.0 / started.elapsed().as_secs_f64())
}

/// Four client processes at once, one dict each: operations per second.
fn four_clients(manager: &Manager, n: u64) -> Result<f64, String> {
    let mut clients = Vec::new();
    for _ in 0..4 {
        let d = manager.dict::<u64, u64>().map_err(|e| e.to_string())?;
        let mut p = Process::new(round_trips, (d, n));
        p.start().map_err(|e| e.to_string())?;
        clients.push(p);
    }
    let started = Instant::now();
    for mut p in clients {
        p.join().map_err(|e| e.to_string())??;
    }
    Ok(4.0 * 2.0 * n as f64 / started.elapsed().as_secs_f64())
}

pub fn run(runs: usize, quick: bool) -> Result<Vec<Row>, String> {
    let n: u64 = if quick { 2_000 } else { 20_000 };
    let manager = Manager::start().map_err(|e| e.to_string())?;
    let with_threads = |threads: usize| {
        Manager::builder()
            .options(ServeOptions {
                threads,
                ..ServeOptions::default()
            })
            .start()
            .map_err(|e| e.to_string())
    };
    let one_thread = with_threads(1)?;
    let threads = outlast_ipc::os::contention::usable_cpus().clamp(2, 8);
    let many_threads = with_threads(threads)?;
    let mut key = [0u8; 16];
    outlast_ipc::os::random::fill(&mut key).map_err(|e| e.to_string())?;
    let loopback = "127.0.0.1:0"
        .parse()
        .map_err(|e: outlast_ipc::net::BadAddress| e.to_string())?;
    let tcp = Manager::serve(&loopback, &key).map_err(|e| e.to_string())?;
    let mut tcp_one = Vec::new();
    let mut tcp_batched = Vec::new();
    let mut one = Vec::new();
    let mut four = Vec::new();
    let mut four_one_thread = Vec::new();
    let mut batched = Vec::new();
    for _ in 0..runs {
        let d = manager.dict::<u64, u64>().map_err(|e| e.to_string())?;
        one.push(round_trips((d, n))?);

        four_one_thread.push(four_clients(&one_thread, n)?);
        four.push(four_clients(&many_threads, n)?);

        let d = manager.dict::<u64, u64>().map_err(|e| e.to_string())?;
        batched.push(batched_rate(&d, n)?);

        let d = tcp.dict::<u64, u64>().map_err(|e| e.to_string())?;
        tcp_one.push(round_trips((d.clone(), n))?);
        tcp_batched.push(batched_rate(&d, n)?);
    }
    let one_rate = median(&one);
    Ok(vec![
        Row {
            bench: "manager",
            subject: "dict set+get, 1 client, local (lane)".into(),
            msgs_per_s: Some(one_rate),
            runs,
            ..Row::default()
        },
        Row {
            bench: "manager",
            subject: "dict set+get, 4 clients, 1 server thread".into(),
            msgs_per_s: Some(median(&four_one_thread)),
            vs_baseline: Some(median(&four_one_thread) / one_rate),
            baseline: Some("1 client".into()),
            runs,
            ..Row::default()
        },
        Row {
            bench: "manager",
            subject: format!("dict set+get, 4 clients, {threads} server threads"),
            msgs_per_s: Some(median(&four)),
            vs_baseline: Some(median(&four) / one_rate),
            baseline: Some("1 client".into()),
            runs,
            ..Row::default()
        },
        Row {
            bench: "manager",
            subject: "dict set/get in batches of 64, 1 client".into(),
            msgs_per_s: Some(median(&batched)),
            runs,
            ..Row::default()
        },
        Row {
            bench: "manager",
            subject: "dict set+get, 1 client, loopback TCP".into(),
            msgs_per_s: Some(median(&tcp_one)),
            vs_baseline: Some(median(&tcp_one) / one_rate),
            baseline: Some("local".into()),
            runs,
            ..Row::default()
        },
        Row {
            bench: "manager",
            subject: "dict batches of 64, loopback TCP".into(),
            msgs_per_s: Some(median(&tcp_batched)),
            runs,
            ..Row::default()
        },
    ])
}
