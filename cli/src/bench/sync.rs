//! `supervisor bench sync`: the shared-memory primitives, each beside a
//! baseline from the same run: uncontended `Lock` lock+unlock (vs std's
//! `Mutex`), two processes incrementing a locked `Value` and doing
//! `fetch_add` (increments/s), and `Array` bulk copy (vs a plain memcpy).

use std::time::Instant;

use outlast_ipc::sync::Lock;
use outlast_ipc::value::{Array, Value};
use outlast_ipc::Process;

use super::report::Row;
use super::stats::median;

pub fn run(runs: usize, quick: bool) -> Result<Vec<Row>, String> {
    let scale = if quick { 20 } else { 1 };
    let mut rows = Vec::new();
    rows.extend(uncontended(runs, 2_000_000 / scale)?);
    rows.push(contended(runs, 1_000_000 / scale as u64, Mode::Locked)?);
    rows.push(contended(runs, 5_000_000 / scale as u64, Mode::FetchAdd)?);
    rows.extend(bulk_copy(runs, if quick { 1 << 20 } else { 16 << 20 })?);
    Ok(rows)
}

fn uncontended(runs: usize, iterations: usize) -> Result<Vec<Row>, String> {
    let lock = Lock::new().map_err(|e| e.to_string())?;
    let std_lock = std::sync::Mutex::new(());
    let (mut ours, mut std) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let started = Instant::now();
        for _ in 0..iterations {
            drop(lock.lock().map_err(|e| e.to_string())?);
        }
        ours.push(started.elapsed().as_secs_f64() * 1e9 / iterations as f64);
        let started = Instant::now();
        for _ in 0..iterations {
            drop(std::hint::black_box(&std_lock).lock());
        }
        std.push(started.elapsed().as_secs_f64() * 1e9 / iterations as f64);
    }
    let (ours, std) = (median(&ours), median(&std));
    Ok(vec![
        Row {
            bench: "sync",
            subject: "std Mutex lock+unlock".into(),
            ns_per_op: Some(std),
            runs,
            ..Row::default()
        },
        Row {
            bench: "sync",
            subject: "ipc Lock lock+unlock".into(),
            ns_per_op: Some(ours),
            vs_baseline: Some(ours / std),
            baseline: Some("std Mutex (time)".into()),
            runs,
            ..Row::default()
        },
    ])
}

#[derive(Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Mode {
    Locked,
    FetchAdd,
}

fn increment((value, n, mode): (Value<u64>, u64, Mode)) {
    for _ in 0..n {
        match mode {
            Mode::Locked => {
                if let Ok(mut v) = value.lock() {
                    *v += 1;
                }
            }
            Mode::FetchAdd => {
                value.fetch_add(1);
            }
        }
    }
}

/// Two processes adding `n` each; increments per second.
fn contended(runs: usize, n: u64, mode: Mode) -> Result<Row, String> {
    let mut rates = Vec::new();
    for _ in 0..runs {
        let value = Value::new(0u64).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..2 {
            let clone = value.try_clone().map_err(|e| e.to_string())?;
            let mut p = Process::new(increment, (clone, n, mode));
            p.start().map_err(|e| e.to_string())?;
            workers.push(p);
        }
        for p in &mut workers {
            p.join().map_err(|e| e.to_string())?;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let total = value.get().map_err(|e| e.to_string())?;
        if total != 2 * n {
            return Err(format!("lost updates: {total} of {}", 2 * n));
        }
        rates.push(total as f64 / elapsed);
    }
    Ok(Row {
        bench: "sync",
        subject: match mode {
            Mode::Locked => "2 procs, Value under Lock".into(),
            Mode::FetchAdd => "2 procs, Value fetch_add".into(),
        },
        msgs_per_s: Some(median(&rates)),
        runs,
        ..Row::default()
    })
}

/// Array bulk copy against memcpy between two heap buffers, GB/s.
fn bulk_copy(runs: usize, bytes: usize) -> Result<Vec<Row>, String> {
    let array = Array::new(bytes, 0u8).map_err(|e| e.to_string())?;
    let src = vec![0xA5u8; bytes];
    let mut dst = vec![0u8; bytes];
    let repeats = (256 << 20) / bytes;
    let (mut ours, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let started = Instant::now();
        for _ in 0..repeats {
            array
                .copy_from_slice(std::hint::black_box(&src))
                .map_err(|e| e.to_string())?;
        }
        ours.push((bytes * repeats) as f64 / started.elapsed().as_secs_f64() / 1e6);
        let started = Instant::now();
        for _ in 0..repeats {
            dst.copy_from_slice(std::hint::black_box(&src));
            std::hint::black_box(&mut dst);
        }
        plain.push((bytes * repeats) as f64 / started.elapsed().as_secs_f64() / 1e6);
    }
    let (ours, plain) = (median(&ours), median(&plain));
    Ok(vec![
        Row {
            bench: "sync",
            subject: "memcpy heap to heap".into(),
            size_bytes: Some(bytes),
            mb_per_s: Some(plain),
            runs,
            ..Row::default()
        },
        Row {
            bench: "sync",
            subject: "Array copy_from_slice".into(),
            size_bytes: Some(bytes),
            mb_per_s: Some(ours),
            vs_baseline: Some(ours / plain),
            baseline: Some("memcpy".into()),
            runs,
            ..Row::default()
        },
    ])
}
