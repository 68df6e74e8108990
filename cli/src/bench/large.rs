//! `supervisor bench large`: one `Pool::apply` round trip with a 100 MB
//! argument (a byte buffer, as Python's `bytes`), one with a 100 MB
//! result, a `Pool::map` over four 100 MB arguments, with 2 workers in
//! the default start method, a 100 MB `Queue` item put here and taken
//! by a child, and a 100 MB value set in a `Manager` dict here and read
//! by a child. Python's rows (`Pool.apply` with a 100 MB `bytes` each
//! way, `Pool.map` over four, a `multiprocessing.Queue` item, a
//! `Manager().dict()` value) come from `scripts/compare-python`.

use std::time::Instant;

use serde_bytes::ByteBuf;

use super::report::Row;
use super::stats::median;
use outlast::ipc::manager::{Dict, Manager};
use outlast::ipc::queue::Queue;
use outlast::ipc::{Process, StartMethod};
use outlast::pool::Pool;

/// How long a child waits for an item before it gives up.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// Checks the argument cheaply: its length and two bytes.
fn take(bytes: ByteBuf) -> (usize, u8, u8) {
    (
        bytes.len(),
        bytes.first().copied().unwrap_or(0),
        bytes.last().copied().unwrap_or(0),
    )
}

fn give(n: usize) -> ByteBuf {
    ByteBuf::from(vec![7u8; n])
}

/// Takes `n` items from `items`, answering each with its check on `acks`.
fn take_items((items, acks, n): (Queue<ByteBuf>, Queue<(usize, u8, u8)>, usize)) {
    for _ in 0..n {
        let Ok(item) = items.get_timeout(PATIENCE) else {
            return;
        };
        if acks.put(&take(item)).is_err() {
            return;
        }
    }
}

/// A `size`-byte item put into a queue and taken by a child, `runs`
/// times: from each put's start until the child says it has it (ms).
fn queue_item_ms(size: usize, runs: usize) -> Result<Vec<f64>, String> {
    let items = Queue::<ByteBuf>::new(0).map_err(|e| e.to_string())?;
    let acks = Queue::<(usize, u8, u8)>::new(0).map_err(|e| e.to_string())?;
    // (The fork server, as Python's side: the pool's threads keep fork out.)
    let mut child = Process::new(take_items, (items.clone(), acks.clone(), runs))
        .start_method(StartMethod::ForkServer);
    child.start().map_err(|e| e.to_string())?;
    let mut ms = Vec::new();
    for _ in 0..runs {
        let put = |data: &ByteBuf| items.put(data).map_err(|e| e.to_string());
        ms.push(until_acked(size, "queue item", &acks, put)?);
    }
    child.join().map_err(|e| e.to_string())?;
    Ok(ms)
}

/// One round: `size` bytes of ones made, then from `send`'s start until
/// `acks` says the child has them whole (ms).
fn until_acked(
    size: usize,
    what: &str,
    acks: &Queue<(usize, u8, u8)>,
    send: impl FnOnce(&ByteBuf) -> Result<(), String>,
) -> Result<f64, String> {
    let data = ByteBuf::from(vec![1u8; size]);
    let started = Instant::now();
    send(&data)?;
    let got = acks.get_timeout(PATIENCE).map_err(|e| e.to_string())?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    match got == (size, 1, 1) {
        true => Ok(ms),
        false => Err(format!("the {what} arrived as {got:?}")),
    }
}

/// What a child reading a manager's values is handed.
type Reader = (
    Dict<u32, ByteBuf>,
    Queue<u32>,
    Queue<(usize, u8, u8)>,
    usize,
);

/// Reads the value at each of the `n` keys `keys` names, answering each
/// with its check.
fn read_values((dict, keys, acks, n): Reader) {
    for _ in 0..n {
        let Ok(key) = keys.get_timeout(PATIENCE) else {
            return;
        };
        let check = match dict.get(&key) {
            Ok(Some(value)) => take(value),
            _ => (0, 0, 0),
        };
        if acks.put(&check).is_err() {
            return;
        }
    }
}

/// A `size`-byte value set in a manager's dict here and read by a child,
/// `runs` times: from each set's start until the child says it has it
/// (ms).
fn manager_value_ms(size: usize, runs: usize) -> Result<Vec<f64>, String> {
    let manager = Manager::start_with(StartMethod::ForkServer).map_err(|e| e.to_string())?;
    let dict = manager.dict::<u32, ByteBuf>().map_err(|e| e.to_string())?;
    let keys = Queue::<u32>::new(0).map_err(|e| e.to_string())?;
    let acks = Queue::<(usize, u8, u8)>::new(0).map_err(|e| e.to_string())?;
    let reader = (dict.clone(), keys.clone(), acks.clone(), runs);
    let mut child = Process::new(read_values, reader).start_method(StartMethod::ForkServer);
    child.start().map_err(|e| e.to_string())?;
    let mut ms = Vec::new();
    for run in 0..runs as u32 {
        let set = |data: &ByteBuf| {
            dict.set(&run, data).map_err(|e| e.to_string())?;
            keys.put(&run).map_err(|e| e.to_string())
        };
        ms.push(until_acked(size, "manager's value", &acks, set)?);
        // One value kept at a time, as Python's side.
        dict.clear().map_err(|e| e.to_string())?;
    }
    child.join().map_err(|e| e.to_string())?;
    Ok(ms)
}

pub fn run(runs: usize, quick: bool) -> Result<Vec<Row>, String> {
    let size: usize = if quick { 10_000_000 } else { 100_000_000 };
    let pool = Pool::new(2).map_err(|e| e.to_string())?;
    // Warm: both workers up, their first pages touched.
    pool.apply(give, 1000).map_err(|e| e.to_string())?;
    let mut argument_ms = Vec::new();
    let mut result_ms = Vec::new();
    let mut map_ms = Vec::new();
    for _ in 0..runs {
        let data = ByteBuf::from(vec![1u8; size]);
        let started = Instant::now();
        let got = pool.apply(take, data).map_err(|e| e.to_string())?;
        argument_ms.push(started.elapsed().as_secs_f64() * 1e3);
        if got != (size, 1, 1) {
            return Err(format!("the argument arrived as {got:?}"));
        }
        let started = Instant::now();
        let back = pool.apply(give, size).map_err(|e| e.to_string())?;
        result_ms.push(started.elapsed().as_secs_f64() * 1e3);
        if back.len() != size || back.last() != Some(&7) {
            return Err("the result came back wrong".into());
        }
        drop(back);
        let four: Vec<ByteBuf> = (0..4).map(|_| ByteBuf::from(vec![1u8; size])).collect();
        let started = Instant::now();
        let got = pool.map(take, four).map_err(|e| e.to_string())?;
        map_ms.push(started.elapsed().as_secs_f64() * 1e3);
        if got != [(size, 1, 1); 4] {
            return Err(format!("the map's arguments arrived as {got:?}"));
        }
    }
    let queue_ms = queue_item_ms(size, runs)?;
    let manager_ms = manager_value_ms(size, runs)?;
    let mb = size as f64 / 1e6;
    // One row: `moved` MB in each run of `ms`.
    let row = |subject: String, ms: &[f64], moved: f64| Row {
        bench: "large",
        subject,
        size_bytes: Some(size),
        median_ms: Some(median(ms)),
        mb_per_s: Some(moved / (median(ms) / 1e3)),
        runs,
        ..Row::default()
    };
    Ok(vec![
        row(
            format!("Pool::apply, a {mb:.0} MB argument"),
            &argument_ms,
            mb,
        ),
        row(format!("Pool::apply, a {mb:.0} MB result"), &result_ms, mb),
        row(
            format!("Pool::map, four {mb:.0} MB arguments"),
            &map_ms,
            4.0 * mb,
        ),
        row(
            format!("Queue, a {mb:.0} MB item put here, taken by a child"),
            &queue_ms,
            mb,
        ),
        row(
            format!("Manager dict, a {mb:.0} MB value set here, read by a child"),
            &manager_ms,
            mb,
        ),
    ])
}
