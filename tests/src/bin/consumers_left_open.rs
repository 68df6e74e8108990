//! Two consumer processes that take until `Disconnected`. With `stuck`
//! they keep their queue handles open (so each is still a producer) and
//! the parent puts three items and closes: nothing can end their gets, and
//! one of them says why on stderr. With `slow` they close their handles
//! first, as the docs say a consumer should, and the parent, still open
//! and not getting, waits past the hint's delay before it puts and closes:
//! nobody is stuck, and nothing is said.

use std::time::Duration;

use outlast_ipc::{Process, Queue};

fn take_all(q: Queue<u64>) -> u64 {
    let mut sum = 0;
    while let Ok(n) = q.get() {
        sum += n;
    }
    sum
}

fn close_then_take_all(q: Queue<u64>) -> u64 {
    q.close();
    take_all(q)
}

fn main() {
    let slow = std::env::args().nth(1).as_deref() == Some("slow");
    let q = Queue::new(0).expect("a queue");
    let entry = if slow { close_then_take_all } else { take_all };
    let mut children: Vec<_> = (0..2).map(|_| Process::new(entry, q.clone())).collect();
    for child in &mut children {
        child.start().expect("start a consumer");
    }
    if slow {
        std::thread::sleep(Duration::from_secs(12));
    }
    for n in 1..=3 {
        q.put(&n).expect("put");
    }
    q.close();
    let mut sum = 0;
    for child in &mut children {
        sum += child.join().expect("a consumer ends");
    }
    println!("sum: {sum}");
}
