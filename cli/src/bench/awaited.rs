//! `supervisor bench async`: what awaiting costs beside blocking, with a
//! producer or an echo in another process. A `Queue` stream of 64 B items
//! taken by `get` and by `get_async`; a round trip with a child through
//! two queues and through a `Pipe`, and a `Manager` dict's `get`, blocking
//! and awaited. The futures are
//! polled by a minimal executor here (the thread parks until a waker is
//! called), as any runtime's would be: what is measured is the future and
//! the thread that wakes it, not a runtime. Python's figure in
//! `scripts/compare-python --only async` awaits the same through
//! `loop.run_in_executor`. Then 100 MB results awaited (a `Process`'s,
//! a `Pool` item's, a `Queue` item from a child) and sent (a `Queue`
//! item to a child, a `Manager` dict's value set and read back): the
//! longest single poll, which is how long the executor's thread was held
//! at once (its other tasks waited that long), beside the blocking call's
//! whole wait; and 50 MB through a queue (inside its ring) and through a
//! pipe, both ways. Last,
//! a loop of awaits each ready at once (a queue's items already there, a
//! lazy map's results) beside another task of the same thread: the
//! longest that task waited for its turn.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use outlast::pool::Pool;
use outlast_ipc::queue::Queue;
use outlast_ipc::{Connection, Pipe, Process, StartMethod};

use super::report::Row;
use super::stats::{median, quantile};

/// How long any single wait may take before it is a failure.
const PATIENCE: Duration = Duration::from_secs(60);

/// The size of a streamed item.
const ITEM: usize = 64;

pub fn run(runs: usize, quick: bool) -> Result<Vec<Row>, String> {
    let scale = if quick { 20 } else { 1 };
    let (items, rounds) = (1_000_000 / scale, 20_000 / scale);
    let mut rows = Vec::new();

    let (mut blocking, mut awaited) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        blocking.push(stream(items, false)?);
        awaited.push(stream(items, true)?);
    }
    let base = median(&blocking);
    for (subject, samples) in [
        ("Queue get, blocking", &blocking),
        ("Queue get_async", &awaited),
    ] {
        let rate = median(samples);
        rows.push(Row {
            bench: "async",
            subject: subject.into(),
            size_bytes: Some(ITEM),
            msgs_per_s: Some(rate),
            mb_per_s: Some(rate * ITEM as f64 / 1e6),
            vs_baseline: (subject != "Queue get, blocking").then_some(rate / base),
            baseline: (subject != "Queue get, blocking").then(|| "blocking get".into()),
            runs,
            ..Row::default()
        });
    }

    for (what, measure) in [
        (
            "Queue",
            queue_round_trips as fn(usize, bool) -> Result<Vec<f64>, String>,
        ),
        ("Pipe", pipe_round_trips),
        ("Manager dict get", manager_round_trips),
        ("Manager lock take and release", manager_lock_round_trips),
    ] {
        let (mut blocking, mut awaited) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            blocking.extend(measure(rounds, false)?);
            awaited.extend(measure(rounds, true)?);
        }
        let base = median(&blocking);
        for (how, samples) in [("blocking", &blocking), ("awaited", &awaited)] {
            let p50 = median(samples);
            rows.push(Row {
                bench: "async",
                subject: format!("{what} round trip, {how}"),
                median_ms: Some(p50),
                p90_ms: Some(quantile(samples, 0.9)),
                vs_baseline: (how == "awaited").then_some(base / p50),
                baseline: (how == "awaited").then(|| "blocking".into()),
                runs,
                ..Row::default()
            });
        }
    }

    // 100 MB results; then 50 MB through a queue (a message that fits the
    // ring, 64 MiB by default, is taken out of the ring itself, not out of
    // a memfd of its own) and through a pipe (into the connection's buffer).
    let (big, half) = (100_000_000 / scale, 50_000_000 / scale);
    let large: [(usize, &str, LargeMeasure); 10] = [
        (big, "Process result, join", large_process_result),
        (big, "Pool result, get", large_pool_result),
        (big, "Queue item from a child, get", large_queue_item),
        (
            big,
            "Queue item to a child, put (encoding included)",
            large_queue_put,
        ),
        (
            big,
            "Manager dict value, set (encoding included)",
            large_manager_set,
        ),
        (
            big,
            "Manager dict value over TCP, set (encoding included)",
            large_tcp_manager_set,
        ),
        (big, "Manager dict value, get", large_manager_get),
        (
            half,
            "Queue item from a child, in the ring, get",
            large_queue_item,
        ),
        (half, "Pipe frame from a child, recv", large_pipe_frame),
        (half, "Pipe frame to a child, send", large_pipe_send),
    ];
    for (size, what, measure) in large {
        let (mut blocking, mut awaited) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            blocking.push(measure(size, false)?);
            awaited.push(measure(size, true)?);
        }
        for (how, samples) in [
            ("blocking: the whole wait", &blocking),
            ("awaited: the longest poll", &awaited),
        ] {
            rows.push(Row {
                bench: "async",
                subject: format!("{} MB {what}, {how}", size / 1_000_000),
                size_bytes: Some(size),
                median_ms: Some(median(samples)),
                runs,
                ..Row::default()
            });
        }
    }
    // A loop of awaits each ready at once, beside another task of the
    // same thread: how long that task waited at most for its turn.
    let many = 1_000_000 / scale;
    for (what, measure) in [
        (
            "Queue, items already there, a get_async loop",
            queue_drain as fn(usize) -> Result<f64, String>,
        ),
        ("Pool imap, a next_async loop", imap_drain),
    ] {
        let mut samples = Vec::new();
        for _ in 0..runs {
            samples.push(measure(many)?);
        }
        rows.push(Row {
            bench: "async",
            subject: format!("{what} of {many}: the other task's longest wait"),
            median_ms: Some(median(&samples)),
            runs,
            ..Row::default()
        });
    }
    Ok(rows)
}

/// `n` items put, then taken by awaited gets beside another task: that
/// task's longest wait (ms).
fn queue_drain(n: usize) -> Result<f64, String> {
    let q = Queue::<u64>::new(0).map_err(|e| e.to_string())?;
    for x in 0..n as u64 {
        q.put(&x).map_err(|e| e.to_string())?;
    }
    let drain = async {
        let mut sum = 0u64;
        for _ in 0..n {
            sum = sum.wrapping_add(q.get_async().await.map_err(|e| e.to_string())?);
        }
        Ok::<u64, String>(sum)
    };
    let (sum, longest) = longest_wait_beside(drain)?;
    match sum? == (n as u64) * (n as u64 - 1) / 2 {
        true => Ok(longest),
        false => Err("items went missing".into()),
    }
}

/// A no-op's results through a lazy map, awaited beside another task:
/// that task's longest wait (ms).
fn imap_drain(n: usize) -> Result<f64, String> {
    // (The fork server, as for the children above.)
    let pool = Pool::builder(2)
        .start_method(StartMethod::ForkServer)
        .build()
        .map_err(|e| e.to_string())?;
    let mut results = pool.imap(std::convert::identity::<u64>, 0..n as u64);
    let drain = async {
        let mut count = 0;
        while let Some(result) = results.next_async().await {
            result.map_err(|e| e.to_string())?;
            count += 1;
        }
        Ok::<usize, String>(count)
    };
    let (count, longest) = longest_wait_beside(drain)?;
    match count? == n {
        true => Ok(longest),
        false => Err("results went missing".into()),
    }
}

/// Polls `work` on this thread, taking turns with a task that only asks
/// to be polled again (as a ticker does), until `work` is ready: its
/// output, and the longest time (ms) the other task waited for its turn.
fn longest_wait_beside<T>(work: impl Future<Output = T>) -> Result<(T, f64), String> {
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    let mut work = std::pin::pin!(work);
    let deadline = Instant::now() + PATIENCE;
    let mut last_turn = Instant::now();
    let mut longest: f64 = 0.0;
    loop {
        if let Poll::Ready(value) = work.as_mut().poll(&mut cx) {
            // The other task's turn comes now.
            longest = longest.max(last_turn.elapsed().as_secs_f64() * 1e3);
            return Ok((value, longest));
        }
        // The other task's turn.
        let now = Instant::now();
        longest = longest.max((now - last_turn).as_secs_f64() * 1e3);
        last_turn = now;
        if now >= deadline {
            return Err("the work was not done in time".into());
        }
    }
}

/// One large value's measure: blocking (`false`) or awaited (`true`), its
/// figure in ms.
type LargeMeasure = fn(usize, bool) -> Result<f64, String>;

/// `n` zero bytes.
fn make(n: usize) -> Vec<u8> {
    vec![0u8; n]
}

/// `n` bytes written to, as a value a program made is: reading `make`'s
/// untouched pages, which the kernel has not given it yet, costs a fault
/// each, in whatever reads them first.
fn made(n: usize) -> Vec<u8> {
    vec![1u8; n]
}

/// A child returning `n` bytes, joined: the blocking join's whole time,
/// or the awaited join's longest poll (ms).
fn large_process_result(n: usize, awaited: bool) -> Result<f64, String> {
    // (The fork server: by now this process has threads, the awaited
    // futures' watcher and decoding threads, and fork refuses it.)
    let mut child = Process::new(make, n).start_method(StartMethod::ForkServer);
    child.start().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let (result, ms) = match awaited {
        true => block_on_timed(child.join_async())?,
        false => (child.join(), started.elapsed().as_secs_f64() * 1e3),
    };
    match result.map_err(|e| e.to_string())?.len() == n {
        true => Ok(ms),
        false => Err("a short result".into()),
    }
}

/// The same through a pool of one worker (a new one each time; its start
/// is not measured: a first `apply` waits for it).
fn large_pool_result(n: usize, awaited: bool) -> Result<f64, String> {
    // (The fork server, as for the children above.)
    let pool = Pool::builder(1)
        .start_method(StartMethod::ForkServer)
        .build()
        .map_err(|e| e.to_string())?;
    pool.apply(make, 1).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let (result, ms) = match awaited {
        true => {
            let item = pool.submit(make, n).map_err(|e| e.to_string())?;
            block_on_timed(item)?
        }
        false => (pool.apply(make, n), started.elapsed().as_secs_f64() * 1e3),
    };
    match result.map_err(|e| e.to_string())?.len() == n {
        true => Ok(ms),
        false => Err("a short result".into()),
    }
}

/// Puts `n` bytes once.
fn put_made((q, n): (Queue<Vec<u8>>, usize)) -> bool {
    q.put(&make(n)).is_ok()
}

/// The same as a queue item put by a child.
fn large_queue_item(n: usize, awaited: bool) -> Result<f64, String> {
    let q = Queue::<Vec<u8>>::new(0).map_err(|e| e.to_string())?;
    let mut child = Process::new(put_made, (q.clone(), n)).start_method(StartMethod::ForkServer);
    child.start().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let (item, ms) = match awaited {
        true => {
            let (item, ms) = block_on_timed(q.get_async())?;
            (item.map_err(|e| e.to_string()), ms)
        }
        false => (
            q.get_timeout(PATIENCE).map_err(|e| e.to_string()),
            started.elapsed().as_secs_f64() * 1e3,
        ),
    };
    let item = item.map_err(|e| e.to_string())?;
    child.join().map_err(|e| e.to_string())?;
    match item.len() == n {
        true => Ok(ms),
        false => Err("a short item".into()),
    }
}

/// Takes one item: its length.
fn take_item(q: Queue<Vec<u8>>) -> usize {
    q.get_timeout(PATIENCE).map_or(0, |item| item.len())
}

/// The same as a queue item put for a child, which takes it. The awaited
/// put's longest poll includes the item's encoding (done where
/// `put_async` is called, on the executor's thread).
fn large_queue_put(n: usize, awaited: bool) -> Result<f64, String> {
    let q = Queue::<Vec<u8>>::new(0).map_err(|e| e.to_string())?;
    let mut child = Process::new(take_item, q.clone()).start_method(StartMethod::ForkServer);
    child.start().map_err(|e| e.to_string())?;
    let item = made(n);
    let started = Instant::now();
    let ms = match awaited {
        true => {
            let (put, ms) = block_on_timed(async { q.put_async(&item).await })?;
            put.map_err(|e| e.to_string())?;
            ms
        }
        false => {
            q.put(&item).map_err(|e| e.to_string())?;
            started.elapsed().as_secs_f64() * 1e3
        }
    };
    match child.join().map_err(|e| e.to_string())? == n {
        true => Ok(ms),
        false => Err("the child took a short item".into()),
    }
}

/// A dict of a manager of its own, for values of bytes (a `ByteBuf` is
/// decoded by a copy, as most values are; a `Vec<u8>` keeps its bytes).
fn manager_dict() -> Result<
    (
        outlast_ipc::manager::Manager,
        outlast_ipc::manager::Dict<u64, serde_bytes::ByteBuf>,
    ),
    String,
> {
    let manager = outlast_ipc::manager::Manager::start_with(StartMethod::ForkServer)
        .map_err(|e| e.to_string())?;
    let d = manager.dict().map_err(|e| e.to_string())?;
    Ok((manager, d))
}

/// A value of `n` bytes set in a manager's dict; the awaited set's
/// longest poll includes the value's encoding.
fn large_manager_set(n: usize, awaited: bool) -> Result<f64, String> {
    let (_manager, d) = manager_dict()?;
    set_large(&d, n, awaited)
}

/// [`large_manager_set`] over loopback TCP, where each frame carries a tag
/// made over the whole value.
fn large_tcp_manager_set(n: usize, awaited: bool) -> Result<f64, String> {
    let address = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
    let manager = outlast_ipc::manager::Manager::builder()
        .start_method(StartMethod::ForkServer)
        .listen(address)
        .start()
        .map_err(|e| e.to_string())?;
    let d = manager.dict().map_err(|e| e.to_string())?;
    set_large(&d, n, awaited)
}

/// Sets a small value, then one of `n` bytes, in `d`: the second's time
/// (awaited: its longest poll).
fn set_large(
    d: &outlast_ipc::manager::Dict<u64, serde_bytes::ByteBuf>,
    n: usize,
    awaited: bool,
) -> Result<f64, String> {
    // A call on a connection already open, as most of a program's are.
    let warm = serde_bytes::ByteBuf::from(vec![1]);
    match awaited {
        true => block_on(d.set_async(&0, &warm))?,
        false => d.set(&0, &warm),
    }
    .map_err(|e| e.to_string())?;
    // Written to, as a program's value is (see `made`).
    let value = serde_bytes::ByteBuf::from(made(n));
    let started = Instant::now();
    let ms = match awaited {
        true => {
            let (set, ms) = block_on_timed(async { d.set_async(&1, &value).await })?;
            set.map_err(|e| e.to_string())?;
            ms
        }
        false => {
            d.set(&1, &value).map_err(|e| e.to_string())?;
            started.elapsed().as_secs_f64() * 1e3
        }
    };
    match d.len().map_err(|e| e.to_string())? {
        2 => Ok(ms),
        len => Err(format!("{len} values after two sets")),
    }
}

/// A value of `n` bytes read from a manager's dict.
fn large_manager_get(n: usize, awaited: bool) -> Result<f64, String> {
    let (_manager, d) = manager_dict()?;
    d.set(&1, &serde_bytes::ByteBuf::from(make(n)))
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let (got, ms) = match awaited {
        true => block_on_timed(d.get_async(&1))?,
        false => (d.get(&1), started.elapsed().as_secs_f64() * 1e3),
    };
    match got.map_err(|e| e.to_string())? {
        Some(value) if value.len() == n => Ok(ms),
        _ => Err("a short value".into()),
    }
}

/// Sends `n` bytes once.
fn send_made((mut conn, n): (Connection, usize)) -> bool {
    conn.send(&make(n)).is_ok()
}

/// The same as a frame sent by a child through a pipe.
fn large_pipe_frame(n: usize, awaited: bool) -> Result<f64, String> {
    let (mut ours, theirs) = Pipe::duplex().map_err(|e| e.to_string())?;
    let mut child = Process::new(send_made, (theirs, n)).start_method(StartMethod::ForkServer);
    child.start().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let (frame, ms) = match awaited {
        true => {
            let (frame, ms) = block_on_timed(ours.recv_async::<Vec<u8>>())?;
            (frame.map_err(|e| e.to_string()), ms)
        }
        false => (
            ours.recv_timeout::<Vec<u8>>(PATIENCE)
                .map_err(|e| e.to_string()),
            started.elapsed().as_secs_f64() * 1e3,
        ),
    };
    let frame = frame?;
    child.join().map_err(|e| e.to_string())?;
    match frame.len() == n {
        true => Ok(ms),
        false => Err("a short frame".into()),
    }
}

/// Receives one frame; its length.
fn take_frame(mut conn: Connection) -> usize {
    conn.recv::<Vec<u8>>().map_or(0, |frame| frame.len())
}

/// A frame of `n` bytes sent to a child through a pipe, which reads it
/// as it comes.
fn large_pipe_send(n: usize, awaited: bool) -> Result<f64, String> {
    let (mut ours, theirs) = Pipe::duplex().map_err(|e| e.to_string())?;
    let mut child = Process::new(take_frame, theirs).start_method(StartMethod::ForkServer);
    child.start().map_err(|e| e.to_string())?;
    let frame = made(n);
    let started = Instant::now();
    let ms = match awaited {
        true => {
            let (sent, ms) = block_on_timed(ours.send_async(&frame))?;
            sent.map_err(|e| e.to_string())?;
            ms
        }
        false => {
            ours.send(&frame).map_err(|e| e.to_string())?;
            started.elapsed().as_secs_f64() * 1e3
        }
    };
    match child.join().map_err(|e| e.to_string())? == n {
        true => Ok(ms),
        false => Err("the child read a short frame".into()),
    }
}

/// Puts `n` items of 64 B.
fn produce((q, n): (Queue<Vec<u8>>, usize)) -> usize {
    let item = vec![0xA5u8; ITEM - 8];
    (0..n).take_while(|_| q.put(&item).is_ok()).count()
}

/// Items per second taken from a producer process, by `get` or `get_async`.
fn stream(items: usize, awaited: bool) -> Result<f64, String> {
    let q = Queue::<Vec<u8>>::with_ring_bytes(0, 1 << 20).map_err(|e| e.to_string())?;
    let mut producer = Process::new(produce, (q.clone(), items)).named("bench-async-producer");
    producer.start().map_err(|e| e.to_string())?;
    q.close();
    let started = Instant::now();
    let mut taken = 0;
    if awaited {
        let all = block_on(async {
            let mut n = 0;
            while q.get_async().await.is_ok() {
                n += 1;
            }
            n
        })?;
        taken += all;
    } else {
        while q.get_timeout(PATIENCE).is_ok() {
            taken += 1;
        }
    }
    let rate = taken as f64 / started.elapsed().as_secs_f64();
    let put = producer.join().map_err(|e| e.to_string())?;
    if put != items || taken != items {
        return Err(format!("{put} put, {taken} taken of {items}"));
    }
    Ok(rate)
}

/// Echoes `rounds` numbers from `ping` to `pong`.
fn echo_queues((ping, pong, rounds): (Queue<u64>, Queue<u64>, usize)) {
    for _ in 0..rounds {
        match ping.get_timeout(PATIENCE) {
            Ok(n) if pong.put(&(n + 1)).is_ok() => {}
            _ => return,
        }
    }
}

/// Each round trip's milliseconds, through two queues with a child.
fn queue_round_trips(rounds: usize, awaited: bool) -> Result<Vec<f64>, String> {
    let ping = Queue::<u64>::with_ring_bytes(0, 64 * 1024).map_err(|e| e.to_string())?;
    let pong = Queue::<u64>::with_ring_bytes(0, 64 * 1024).map_err(|e| e.to_string())?;
    let mut child = Process::new(echo_queues, (ping.clone(), pong.clone(), rounds));
    child.start().map_err(|e| e.to_string())?;
    let mut times = Vec::with_capacity(rounds);
    let check = |n: u64, answer: u64| match answer == n + 1 {
        true => Ok(()),
        false => Err(format!("answered {answer} to {n}")),
    };
    for n in 0..rounds as u64 {
        let started = Instant::now();
        ping.put(&n).map_err(|e| e.to_string())?;
        let answer = match awaited {
            true => block_on(pong.get_async())?.map_err(|e| e.to_string()),
            false => pong.get_timeout(PATIENCE).map_err(|e| e.to_string()),
        }?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        check(n, answer)?;
    }
    child.join().map_err(|e| e.to_string())?;
    Ok(times)
}

/// Echoes numbers on `conn` until it closes.
fn echo_pipe(mut conn: Connection) {
    while let Ok(n) = conn.recv::<u64>() {
        if conn.send(&(n + 1)).is_err() {
            return;
        }
    }
}

/// Each round trip's milliseconds, through a `Pipe` with a child.
fn pipe_round_trips(rounds: usize, awaited: bool) -> Result<Vec<f64>, String> {
    let (mut ours, theirs) = Pipe::duplex().map_err(|e| e.to_string())?;
    let mut child = Process::new(echo_pipe, theirs);
    child.start().map_err(|e| e.to_string())?;
    let mut times = Vec::with_capacity(rounds);
    for n in 0..rounds as u64 {
        let started = Instant::now();
        let answer: u64 = match awaited {
            true => block_on(async {
                ours.send_async(&n).await.map_err(|e| e.to_string())?;
                ours.recv_async().await.map_err(|e| e.to_string())
            })?,
            false => {
                ours.send(&n).map_err(|e| e.to_string())?;
                ours.recv_timeout(PATIENCE).map_err(|e| e.to_string())
            }
        }?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        if answer != n + 1 {
            return Err(format!("answered {answer} to {n}"));
        }
    }
    drop(ours);
    child.join().map_err(|e| e.to_string())?;
    Ok(times)
}

/// Each `get` round trip's milliseconds, on a dict of a manager of its
/// own: blocking (its thread's connection, with its lane) or awaited (a
/// connection for awaited calls, its reply waited for by the reactor).
fn manager_round_trips(rounds: usize, awaited: bool) -> Result<Vec<f64>, String> {
    // Threads of ours run by now: the server is forked by the fork server.
    let manager = outlast_ipc::manager::Manager::start_with(StartMethod::ForkServer)
        .map_err(|e| e.to_string())?;
    let d = manager.dict::<u64, u64>().map_err(|e| e.to_string())?;
    d.set(&1, &2).map_err(|e| e.to_string())?;
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let got = match awaited {
            true => block_on(d.get_async(&1))?,
            false => d.get(&1),
        }
        .map_err(|e| e.to_string())?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        if got != Some(2) {
            return Err(format!("got {got:?} for 2"));
        }
    }
    Ok(times)
}

/// A manager lock taken and released, `rounds` times: the time of each.
/// Awaited, the guard keeps its connection; its release is awaited too.
fn manager_lock_round_trips(rounds: usize, awaited: bool) -> Result<Vec<f64>, String> {
    let manager = outlast_ipc::manager::Manager::start_with(StartMethod::ForkServer)
        .map_err(|e| e.to_string())?;
    let lock = manager.lock().map_err(|e| e.to_string())?;
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        match awaited {
            true => block_on(async {
                let held = lock.lock_async().await?;
                held.release().await
            })?,
            false => lock.lock().and_then(|held| held.release()),
        }
        .map_err(|e| e.to_string())?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok(times)
}

/// Wakes the executor's thread.
struct Unpark {
    woken: AtomicBool,
    thread: std::thread::Thread,
}

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// Polls `future` on this thread, parked between wake-ups, for at most
/// [`PATIENCE`].
fn block_on<T>(future: impl Future<Output = T>) -> Result<T, String> {
    block_on_timed(future).map(|(value, _)| value)
}

/// [`block_on`], and the longest single poll (ms): how long the future
/// held this thread at once.
fn block_on_timed<T>(future: impl Future<Output = T>) -> Result<(T, f64), String> {
    let unpark = Arc::new(Unpark {
        woken: AtomicBool::new(false),
        thread: std::thread::current(),
    });
    let waker = Waker::from(Arc::clone(&unpark));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    let deadline = Instant::now() + PATIENCE;
    let mut longest: f64 = 0.0;
    loop {
        let polled = Instant::now();
        let poll = future.as_mut().poll(&mut cx);
        longest = longest.max(polled.elapsed().as_secs_f64() * 1e3);
        if let Poll::Ready(value) = poll {
            return Ok((value, longest));
        }
        while !unpark.woken.swap(false, Ordering::Acquire) {
            let now = Instant::now();
            if now >= deadline {
                return Err("a future was not woken in time".into());
            }
            std::thread::park_timeout(deadline - now);
        }
    }
}
