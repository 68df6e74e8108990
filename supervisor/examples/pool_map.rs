//! Python's `Pool.map(f, [1, 2, 3])`: prints `[1, 4, 9]`.
//!
//! `cargo run --example pool_map [fork|spawn]`

use ipc::StartMethod;
use supervisor::pool::Pool;

fn square(x: u64) -> u64 {
    x * x
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    ipc::init();
    let method = match std::env::args().nth(1).as_deref() {
        Some("spawn") => StartMethod::Spawn,
        _ => StartMethod::Fork,
    };
    let pool = Pool::builder(2).start_method(method).build()?;
    println!("{:?}", pool.map(square, [1, 2, 3])?);
    Ok(())
}
