//! Producer/consumer through a `Queue` with an end marker, as in Python's
//! docs: the producer puts "Item-0" to "Item-4", then `None`.
//!
//! ```text
//! cargo run -p outlast-ipc --example queue_items [-- spawn]
//! ```

use outlast_ipc::queue::Queue;
use outlast_ipc::{Process, StartMethod};

fn producer(q: Queue<Option<String>>) -> usize {
    for i in 0..5 {
        let item = format!("Item-{i}");
        println!("Producing: {item}");
        if q.put(&Some(item)).is_err() {
            return i;
        }
    }
    // The end marker.
    let _ = q.put(&None);
    5
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    outlast_ipc::init();
    // fork (the default), spawn or forkserver, from the command line.
    let method: StartMethod = std::env::args()
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or_default();
    let q = Queue::<Option<String>>::new(0)?;
    let mut p = Process::new(producer, q.clone()).start_method(method);
    p.start()?;
    let mut consumed = 0;
    while let Some(item) = q.get()? {
        println!("Consuming: {item}");
        consumed += 1;
    }
    let produced = p.join()?;
    println!("produced {produced}, consumed {consumed}");
    Ok(())
}
