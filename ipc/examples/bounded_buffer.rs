//! Producer/consumer over a bounded buffer built from a `Condition`: the
//! producer waits while the buffer is full, the consumer while it is empty.
//! The buffer is a `RawArray` ring guarded by the condition's lock.
//!
//! ```text
//! cargo run -p outlast-ipc --example bounded_buffer [-- spawn]
//! ```

use std::time::Duration;

use outlast_ipc::sync::Condition;
use outlast_ipc::value::{RawArray, RawValue};
use outlast_ipc::{Process, StartMethod};

const CAPACITY: usize = 4;
const ITEMS: u64 = 1000;
/// No wait in this example should take this long; if one does, give up.
const PATIENCE: Duration = Duration::from_secs(30);

/// The shared buffer: a ring of slots and its head/length, all under `cond`'s lock.
type Buffer = (Condition, RawArray<u64>, RawValue<u64>, RawValue<u64>);

fn put(buf: &Buffer, item: u64) -> bool {
    let (cond, slots, head, len) = buf;
    let Ok(guard) = cond.lock() else { return false };
    let Ok((_guard, timed_out)) = cond.wait_until(guard, PATIENCE, || len.get() < CAPACITY as u64)
    else {
        return false;
    };
    if timed_out {
        return false;
    }
    let at = (head.get() + len.get()) as usize % CAPACITY;
    slots.set(at, item);
    len.set(len.get() + 1);
    cond.notify_all();
    true
}

fn take(buf: &Buffer) -> Option<u64> {
    let (cond, slots, head, len) = buf;
    let guard = cond.lock().ok()?;
    let (_guard, timed_out) = cond.wait_until(guard, PATIENCE, || len.get() > 0).ok()?;
    if timed_out {
        return None;
    }
    let item = slots.get(head.get() as usize)?;
    head.set((head.get() + 1) % CAPACITY as u64);
    len.set(len.get() - 1);
    cond.notify_all();
    Some(item)
}

fn consumer(buf: Buffer) -> (u64, u64) {
    let (mut count, mut sum) = (0, 0);
    while let Some(item) = take(&buf) {
        if item == u64::MAX {
            break; // the end marker
        }
        count += 1;
        sum += item;
    }
    (count, sum)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    outlast_ipc::init();
    // fork (the default), spawn or forkserver, from the command line.
    let method: StartMethod = std::env::args()
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or_default();
    let buf: Buffer = (
        Condition::new()?,
        RawArray::from_slice(&[0u64; CAPACITY])?,
        RawValue::new(0u64)?,
        RawValue::new(0u64)?,
    );
    let theirs = (buf.0.clone(), buf.1.clone(), buf.2.clone(), buf.3.clone());
    let mut child = Process::new(consumer, theirs).start_method(method);
    child.start()?;
    for item in 1..=ITEMS {
        if !put(&buf, item) {
            return Err("the consumer stopped taking items".into());
        }
    }
    put(&buf, u64::MAX);
    let (count, sum) = child.join()?;
    println!(
        "consumed {count} items through {CAPACITY} slots, sum {sum} (expected {})",
        ITEMS * (ITEMS + 1) / 2
    );
    Ok(())
}
