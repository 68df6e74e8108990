//! Five processes each add 1 to a shared `Value` and to every element of a
//! shared `Array`, under their locks (Python's Value/Array example).
//!
//! ```text
//! cargo run -p outlast-ipc --example value_array [-- spawn]
//! ```

use outlast_ipc::value::{Array, Value};
use outlast_ipc::{Process, StartMethod};

fn add_one((counter, numbers): (Value<i32>, Array<i32>)) {
    if let Ok(mut c) = counter.lock() {
        *c += 1;
    }
    if let Ok(mut a) = numbers.lock() {
        for x in a.iter_mut() {
            *x += 1;
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    outlast_ipc::init();
    // fork (the default), spawn or forkserver, from the command line.
    let method: StartMethod = std::env::args()
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or_default();
    let counter = Value::new(0i32)?;
    let numbers = Array::new(5, 0i32)?;
    let mut children = Vec::new();
    for _ in 0..5 {
        let mut p = Process::new(add_one, (counter.clone(), numbers.clone())).start_method(method);
        p.start()?;
        children.push(p);
    }
    for p in &mut children {
        p.join()?;
    }
    println!("Value: {}", counter.get()?);
    println!("Array: {:?}", numbers.to_vec()?);
    Ok(())
}
