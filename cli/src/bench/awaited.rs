//! `supervisor bench async`: what awaiting costs beside blocking, with a
//! producer or an echo in another process. A `Queue` stream of 64 B items
//! taken by `get` and by `get_async`; a round trip with a child through
//! two queues and through a `Pipe`, blocking and awaited. The futures are
//! polled by a minimal executor here (the thread parks until a waker is
//! called), as any runtime's would be: what is measured is the future and
//! the thread that wakes it, not a runtime. Python's figure in
//! `scripts/compare-python --only async` awaits the same through
//! `loop.run_in_executor`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use outlast_ipc::queue::Queue;
use outlast_ipc::{Connection, Pipe, Process};

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
    Ok(rows)
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
    let unpark = Arc::new(Unpark {
        woken: AtomicBool::new(false),
        thread: std::thread::current(),
    });
    let waker = Waker::from(Arc::clone(&unpark));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return Ok(value);
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
