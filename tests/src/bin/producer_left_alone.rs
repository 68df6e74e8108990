//! A producer that puts ten items into a queue of two, in two modes:
//!
//! - `gone`: its two consumers each take one item and then panic (a bug):
//!   their handles go with them, the ring fills, and nobody can take; the
//!   producer's put says why on stderr, once, and waits on.
//! - `slow`: one consumer waits past the hint's delay before it takes
//!   everything: its handle was open all along, so nothing is said, and
//!   the sum is exact.

use std::time::Duration;

use outlast_ipc::{Process, Queue};

fn take_one_then_panic(q: Queue<u64>) -> u64 {
    q.close();
    let _ = q.get();
    panic!("a consumer's bug");
}

fn take_all_later(q: Queue<u64>) -> u64 {
    q.close();
    std::thread::sleep(Duration::from_secs(12));
    let mut sum = 0;
    while let Ok(n) = q.get() {
        sum += n;
    }
    sum
}

fn main() {
    let slow = std::env::args().nth(1).as_deref() == Some("slow");
    let q = Queue::new(2).expect("a queue");
    let entry = if slow {
        take_all_later
    } else {
        take_one_then_panic
    };
    let mut children: Vec<_> = (0..if slow { 1 } else { 2 })
        .map(|_| Process::new(entry, q.clone()))
        .collect();
    for child in &mut children {
        child.start().expect("start a consumer");
    }
    for n in 1..=10 {
        q.put(&n).expect("put");
    }
    q.close();
    let sum: u64 = children.iter_mut().filter_map(|c| c.join().ok()).sum();
    println!("sum: {sum}");
}
