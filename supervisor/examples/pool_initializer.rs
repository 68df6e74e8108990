//! Python's `initializer` program: each worker is given a shared factor
//! (2) once, by its initializer; 4 chunks of `range(1000)` are summed and
//! scaled: `[999000, 999000, 999000, 999000]`, total 3,996,000.
//!
//! `cargo run --example pool_initializer [fork|spawn]`

use std::sync::atomic::{AtomicU64, Ordering};

use outlast::pool::Pool;
use outlast_ipc::StartMethod;

/// Set in each worker by `init`.
static FACTOR: AtomicU64 = AtomicU64::new(0);

fn init(factor: u64) {
    FACTOR.store(factor, Ordering::Relaxed);
}

fn scaled_sum(chunk: Vec<u64>) -> u64 {
    chunk.iter().sum::<u64>() * FACTOR.load(Ordering::Relaxed)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    outlast_ipc::init();
    // fork (the default), spawn or forkserver, from the command line.
    let method: StartMethod = std::env::args()
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or_default();
    let pool = Pool::builder(2)
        .start_method(method)
        .initializer(init, 2)
        .build()?;
    let chunks: Vec<Vec<u64>> = (0..4).map(|_| (0..1000).collect()).collect();
    let sums = pool.map(scaled_sum, chunks)?;
    println!("{sums:?}");
    println!("total: {}", sums.iter().sum::<u64>());
    pool.close();
    pool.join()?;
    Ok(())
}
