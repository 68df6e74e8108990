//! Ten processes each make 100,000 increments of one shared counter under
//! its lock: exactly 1,000,000, never a lost update.
//!
//! ```text
//! cargo run --release -p outlast-ipc --example locked_counter [-- spawn]
//! ```

use outlast_ipc::value::Value;
use outlast_ipc::{Process, StartMethod};

const PROCESSES: u64 = 10;
const INCREMENTS: u64 = 100_000;

fn increment(counter: Value<u64>) -> u64 {
    let mut done = 0;
    for _ in 0..INCREMENTS {
        match counter.lock() {
            Ok(mut c) => *c += 1,
            // A previous holder died: the count it left is still whole
            // (one store), so go on with it.
            Err(e) => match e.recover() {
                Ok(mut c) => *c += 1,
                Err(_) => continue,
            },
        }
        done += 1;
    }
    done
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    outlast_ipc::init();
    // fork (the default), spawn or forkserver, from the command line.
    let method: StartMethod = std::env::args()
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or_default();
    let counter = Value::new(0u64)?;
    let mut children = Vec::new();
    for _ in 0..PROCESSES {
        let mut p = Process::new(increment, counter.clone()).start_method(method);
        p.start()?;
        children.push(p);
    }
    let mut reported = 0;
    for p in &mut children {
        reported += p.join()?;
    }
    println!(
        "{PROCESSES} processes x {INCREMENTS} increments: counter = {}, reported {reported}",
        counter.get()?
    );
    Ok(())
}
