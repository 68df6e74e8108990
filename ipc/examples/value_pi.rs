//! Python's classic: a child sets a shared `Value` to 3.1415927 and negates
//! every element of a shared `Array`.
//!
//! ```text
//! cargo run -p outlast-ipc --example value_pi [-- spawn]
//! ```

use outlast_ipc::value::{Array, Value};
use outlast_ipc::{Process, StartMethod};

/// The value in Python's documentation example.
#[allow(clippy::approx_constant)]
const DOCS_PI: f64 = 3.1415927;

fn f((num, arr): (Value<f64>, Array<i32>)) {
    if let Ok(mut n) = num.lock() {
        *n = DOCS_PI;
    }
    if let Ok(mut a) = arr.lock() {
        for x in a.iter_mut() {
            *x = -*x;
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
    let num = Value::new(0.0f64)?;
    let arr = Array::from_iter(0..10i32)?;
    let mut p = Process::new(f, (num.clone(), arr.clone())).start_method(method);
    p.start()?;
    p.join()?;
    println!("{}", num.get()?);
    println!("{:?}", arr.to_vec()?);
    Ok(())
}
