//! Ping-pong over a duplex pipe: the parent sends a number, the child sends
//! it back plus one, a thousand times; then the parent reports the round trip.
//!
//! ```text
//! cargo run -p outlast-ipc --example ping_pong [-- spawn]
//! ```

use std::time::{Duration, Instant};

use outlast_ipc::{Connection, Pipe, Process, StartMethod};

const ROUNDS: u64 = 1000;

fn ponger(mut conn: Connection) -> u64 {
    let mut answered = 0;
    // Stops when the parent closes its end.
    while let Ok(n) = conn.recv::<u64>() {
        if conn.send(&(n + 1)).is_err() {
            break;
        }
        answered += 1;
    }
    answered
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    outlast_ipc::init();
    // fork (the default), spawn or forkserver, from the command line.
    let method: StartMethod = std::env::args()
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or_default();
    let (mut ours, theirs) = Pipe::duplex()?;
    let mut child = Process::new(ponger, theirs)
        .named("ponger")
        .start_method(method);
    child.start()?;

    let started = Instant::now();
    let mut n = 0u64;
    for _ in 0..ROUNDS {
        ours.send(&n)?;
        n = ours.recv_timeout(Duration::from_secs(10))?;
    }
    let elapsed = started.elapsed();
    drop(ours);
    let answered = child.join()?;
    println!("ping-pong: {ROUNDS} rounds, final value {n}, child answered {answered}");
    println!(
        "round trip: {:.1} us on average",
        elapsed.as_secs_f64() * 1e6 / ROUNDS as f64
    );
    Ok(())
}
