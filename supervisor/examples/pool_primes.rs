//! Python's `ProcessPoolExecutor` primes program: 8 ranges of 100,000
//! numbers, `submit` + `as_completed`, each range's count printed as it
//! finishes, then the total, pi(800,000) = 63,951.
//!
//! `cargo run --example pool_primes [fork|spawn]`

use outlast::pool::{as_completed, Pool};
use outlast_ipc::StartMethod;

fn count_primes((lo, hi): (u64, u64)) -> u64 {
    (lo..hi).filter(|&n| is_prime(n)).count() as u64
}

fn is_prime(n: u64) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    outlast_ipc::init();
    // fork (the default), spawn or forkserver, from the command line.
    let method: StartMethod = std::env::args()
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or_default();
    let pool = Pool::builder(4).start_method(method).build()?;
    let ranges: Vec<(u64, u64)> = (0..8).map(|i| (i * 100_000, (i + 1) * 100_000)).collect();
    let mut futures = Vec::new();
    for &range in &ranges {
        futures.push(pool.submit(count_primes, range)?);
    }
    let mut total = 0;
    for future in as_completed(&futures) {
        let index = futures
            .iter()
            .position(|f| std::ptr::eq(f, future))
            .unwrap_or(0);
        let count = future.result()?;
        let (lo, hi) = ranges[index];
        println!("primes in [{lo}, {hi}): {count}");
        total += count;
    }
    println!("total: {total}");
    Ok(())
}
