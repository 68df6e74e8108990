//! `supervisor bench queue`: `outlast_ipc::queue::Queue` between processes. One
//! producer process and the measuring consumer at 64 B, 4 KiB and 1 MiB,
//! one message per call and in batches; two producers and two consumers at
//! 64 B; the blocking ping-pong round trip (p50, p99); and, as references,
//! a minimal SPSC ring (`spsc_ring`) beside the 64 B put/get and two bare
//! futex words (`futex_floor`) beside the blocking ping-pong. Raw bytes
//! (`put_bytes` / `get_many_bytes_with`), so the figures are the queue's,
//! not serde's.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use outlast_ipc::queue::Queue;
use outlast_ipc::Process;

use super::report::Row;
use super::stats::median;

/// How long any single wait in a benchmark may take before it is a failure.
const PATIENCE: Duration = Duration::from_secs(60);

pub fn run(runs: usize, quick: bool) -> Result<Vec<Row>, String> {
    let scale = if quick { 50 } else { 1 };
    let mut rows = Vec::new();
    for (size, count, ring) in [
        (64usize, 4_000_000u64 / scale, 1usize << 20),
        (4096, 400_000 / scale, 4 << 20),
        (1 << 20, 4_000 / scale, 16 << 20),
    ] {
        for batch in [1usize, 64] {
            // At 64 B one at a time, the minimal ring runs right after each
            // of ours: what the machine allows at that moment, side by side.
            let with_reference = size == 64 && batch == 1;
            let mut rates = Vec::new();
            let mut references = Vec::new();
            for _ in 0..runs {
                rates.push(one_to_one(size, count, ring, batch)?);
                if with_reference {
                    references.push(super::spsc_ring::rate(count)?);
                }
            }
            let rate = median(&rates);
            let reference = (!references.is_empty()).then(|| median(&references));
            rows.push(Row {
                bench: "queue",
                subject: if batch == 1 {
                    "1->1 put/get".into()
                } else {
                    format!("1->1 batches of {batch}")
                },
                size_bytes: Some(size),
                msgs_per_s: Some(rate),
                mb_per_s: Some(rate * size as f64 / 1e6),
                vs_baseline: reference.map(|r| rate / r),
                baseline: reference.map(|_| "minimal SPSC ring".to_string()),
                runs,
                ..Row::default()
            });
            if let Some(reference) = reference {
                rows.push(Row {
                    bench: "queue",
                    subject: "minimal SPSC ring (reference)".into(),
                    size_bytes: Some(size),
                    msgs_per_s: Some(reference),
                    mb_per_s: Some(reference * size as f64 / 1e6),
                    runs,
                    ..Row::default()
                });
            }
        }
    }
    let rates = (0..runs)
        .map(|_| two_to_two(64, 2_000_000 / scale, 1 << 20))
        .collect::<Result<Vec<f64>, String>>()?;
    rows.push(Row {
        bench: "queue",
        subject: "2->2 put/get".into(),
        size_bytes: Some(64),
        msgs_per_s: Some(median(&rates)),
        mb_per_s: Some(median(&rates) * 64.0 / 1e6),
        runs,
        ..Row::default()
    });
    // Enough rounds, even in --quick, that the first ones (page faults, a
    // cold futex) do not decide the median.
    let rounds = (20_000 / scale as usize).max(5_000);
    // The blocking ping-pong can be no faster than two processes waking
    // each other: the two are measured in turns, three times each, and
    // their medians compared. (Right after a busy benchmark the CPUs are
    // not yet idle and a wake-up is several times cheaper: in turns, both
    // see the same.) Then again with both processes on one CPU, where a
    // wake-up is a context switch rather than an idle CPU's, and with each
    // on a CPU of its own, where it is always an idle CPU's (left to the
    // scheduler, the bare futexes often land on one CPU and the queue's
    // pair on two, and the first comparison reads 20x).
    rows.extend(blocking_rows(rounds, None, None)?);
    let mine = super::affinity::get()?;
    let cpu = super::affinity::current_cpu();
    super::affinity::pin(cpu)?;
    let pinned = blocking_rows(rounds, cpu, cpu);
    let apart = cpu
        .and_then(|c| super::affinity::another_cpu(&mine, c))
        .map(|other| blocking_rows(rounds, cpu, Some(other)));
    super::affinity::set(&mine)?;
    rows.extend(pinned?);
    if let Some(apart) = apart {
        rows.extend(apart?);
    }
    for (mode, spin) in [
        ("default (20 us spin)", outlast_ipc::queue::DEFAULT_SPIN),
        ("spin-then-park (1 ms)", Duration::from_millis(1)),
    ] {
        let (p50, p99) = ping_pong(rounds, spin, None)?;
        rows.push(Row {
            bench: "queue",
            subject: format!("ping-pong, {mode}"),
            size_bytes: Some(8),
            median_ms: Some(p50 / 1e3),
            p90_ms: None,
            baseline: Some(format!("round trip p50 {p50:.2} us, p99 {p99:.2} us")),
            runs: 1,
            ..Row::default()
        });
    }
    Ok(rows)
}

fn produce((q, size, count, batch): (Queue<()>, usize, u64, usize)) -> Result<(), String> {
    let payload = vec![0xA5u8; size];
    let messages: Vec<&[u8]> = vec![payload.as_slice(); batch];
    let mut sent = 0u64;
    while sent < count {
        let n = ((count - sent) as usize).min(batch);
        let put = if n == 1 {
            q.put_bytes(&payload).map(|_| 1)
        } else {
            q.put_many_bytes(&messages[..n], PATIENCE)
        };
        sent += put.map_err(|e| e.to_string())? as u64;
    }
    Ok(())
}

/// Messages per second from one producer process to this process.
fn one_to_one(size: usize, count: u64, ring: usize, batch: usize) -> Result<f64, String> {
    let q = Queue::<()>::with_ring_bytes(0, ring).map_err(|e| e.to_string())?;
    let theirs = q.try_clone().map_err(|e| e.to_string())?;
    let mut p = Process::new(produce, (theirs, size, count, batch));
    p.start().map_err(|e| e.to_string())?;
    let mut received = 0u64;
    let mut bytes = 0usize;
    let mut started = None;
    while received < count {
        let n = q
            .get_many_bytes_with(batch, PATIENCE, &mut |m| bytes += m.len())
            .map_err(|e| e.to_string())?;
        started.get_or_insert_with(Instant::now);
        received += n as u64;
    }
    let elapsed = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    p.join().map_err(|e| e.to_string())??;
    if bytes != size * count as usize {
        return Err(format!(
            "received {bytes} bytes, expected {}",
            size * count as usize
        ));
    }
    Ok((count - 1) as f64 / elapsed.max(1e-9))
}

fn consume((q, count): (Queue<()>, u64)) -> u64 {
    let mut got = 0;
    while got < count {
        match q.get_many_bytes_with(1, PATIENCE, &mut |_| {}) {
            Ok(n) => got += n as u64,
            Err(_) => break,
        }
    }
    got
}

/// Two producer processes, two consumer processes; total messages per second.
fn two_to_two(size: usize, count: u64, ring: usize) -> Result<f64, String> {
    let q = Queue::<()>::with_ring_bytes(0, ring).map_err(|e| e.to_string())?;
    let clone = || q.try_clone().map_err(|e| e.to_string());
    let started = Instant::now();
    let mut consumers = Vec::new();
    for _ in 0..2 {
        let mut c = Process::new(consume, (clone()?, count / 2));
        c.start().map_err(|e| e.to_string())?;
        consumers.push(c);
    }
    let mut producers = Vec::new();
    for _ in 0..2 {
        let mut p = Process::new(produce, (clone()?, size, count / 2, 1));
        p.start().map_err(|e| e.to_string())?;
        producers.push(p);
    }
    for p in &mut producers {
        p.join().map_err(|e| e.to_string())??;
    }
    let mut got = 0;
    for c in &mut consumers {
        got += c.join().map_err(|e| e.to_string())?;
    }
    if got != count / 2 * 2 {
        return Err(format!("consumers got {got} of {count}"));
    }
    Ok(got as f64 / started.elapsed().as_secs_f64())
}

/// The blocking ping-pong and, in turns with it, the futex floor: two
/// rows; this process on `ours` if given (the caller pinned it there), the
/// other on `theirs`.
fn blocking_rows(
    rounds: usize,
    ours: Option<usize>,
    theirs: Option<usize>,
) -> Result<Vec<Row>, String> {
    let cpu = theirs;
    let place = match (ours, theirs) {
        (Some(a), Some(b)) if a == b => ", one CPU",
        (Some(_), Some(_)) => ", two CPUs",
        _ => "",
    };
    let mut rows = Vec::new();
    let mut floors = Vec::new();
    let mut floor_tails = Vec::new();
    let mut blocking = Vec::new();
    let mut blocking_tails = Vec::new();
    for _ in 0..3 {
        let (p50, p99) = super::futex_floor::round_trip(rounds as u32, cpu)?;
        floors.push(p50);
        floor_tails.push(p99);
        let (p50, p99) = ping_pong(rounds, Duration::ZERO, cpu)?;
        blocking.push(p50);
        blocking_tails.push(p99);
    }
    let (floor_p50, floor_p99) = (median(&floors), median(&floor_tails));
    let (p50, p99) = (median(&blocking), median(&blocking_tails));
    rows.push(Row {
        bench: "queue",
        subject: format!("ping-pong, blocking (no spin){place}"),
        size_bytes: Some(8),
        median_ms: Some(p50 / 1e3),
        p90_ms: None,
        vs_baseline: Some(p50 / floor_p50.max(1e-3)),
        baseline: Some(format!(
            "the futex floor (round trip p50 {p50:.2} us, p99 {p99:.2} us){}",
            match place {
                ", one CPU" => String::new(),
                _ => super::futex_floor::halt_polling_note(),
            }
        )),
        runs: 3,
        ..Row::default()
    });
    rows.push(Row {
        bench: "queue",
        subject: format!("futex floor: 2 processes waking each other{place} (reference)"),
        size_bytes: Some(4),
        median_ms: Some(floor_p50 / 1e3),
        p90_ms: None,
        baseline: Some(format!(
            "round trip p50 {floor_p50:.2} us, p99 {floor_p99:.2} us"
        )),
        runs: 3,
        ..Row::default()
    });
    Ok(rows)
}

fn pong((ping, pong, rounds, spin, cpu): (Queue<u64>, Queue<u64>, usize, Duration, Option<usize>)) {
    if super::affinity::pin(cpu).is_err() {
        return;
    }
    ping.set_spin(spin);
    pong.set_spin(spin);
    for _ in 0..rounds {
        match ping.get_timeout(PATIENCE) {
            Ok(n) => {
                if pong.put(&(n + 1)).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// Blocking round trips through two queues: (p50, p99) in microseconds.
fn ping_pong(rounds: usize, spin: Duration, cpu: Option<usize>) -> Result<(f64, f64), String> {
    let ping = Queue::<u64>::with_ring_bytes(0, 64 * 1024).map_err(|e| e.to_string())?;
    let back = Queue::<u64>::with_ring_bytes(0, 64 * 1024).map_err(|e| e.to_string())?;
    ping.set_spin(spin);
    back.set_spin(spin);
    let args = (
        ping.try_clone().map_err(|e| e.to_string())?,
        back.try_clone().map_err(|e| e.to_string())?,
        rounds,
        spin,
        cpu,
    );
    let mut p = Process::new(pong, args);
    p.start().map_err(|e| e.to_string())?;
    let mut histogram = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    // The first tenth warms both sides up and is not recorded.
    let warm_up = rounds as u64 / 10;
    for n in 0..rounds as u64 {
        let started = Instant::now();
        ping.put(&n).map_err(|e| e.to_string())?;
        let answer = back.get_timeout(PATIENCE).map_err(|e| e.to_string())?;
        if answer != n + 1 {
            return Err(format!("ping-pong answered {answer} to {n}"));
        }
        if n >= warm_up {
            let _ = histogram.record(started.elapsed().as_nanos() as u64);
        }
    }
    p.join().map_err(|e| e.to_string())?;
    Ok((
        histogram.value_at_quantile(0.5) as f64 / 1e3,
        histogram.value_at_quantile(0.99) as f64 / 1e3,
    ))
}
