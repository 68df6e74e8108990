//! Python's `Pool.map(f, [1, 2, 3])`: prints `[1, 4, 9]`.
//!
//! `cargo run --example pool_map [fork|spawn]`

use outlast::pool::Pool;
use outlast_ipc::StartMethod;

fn square(x: u64) -> u64 {
    x * x
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    outlast_ipc::init();
    // fork (the default), spawn or forkserver, from the command line.
    let method: StartMethod = std::env::args()
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or_default();
    let pool = Pool::builder(2).start_method(method).build()?;
    println!("{:?}", pool.map(square, [1, 2, 3])?);
    Ok(())
}
