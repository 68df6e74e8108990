//! Two consumer processes that take until `Disconnected`, in four modes:
//!
//! - `stuck`: they keep their queue handles open (so each is still a
//!   producer) and the parent puts three items and closes: nothing can end
//!   their gets, and one of them says why on stderr.
//! - `joined`: Python's classic. They keep their handles open, the parent
//!   puts three items and waits in `join()` without closing or putting an
//!   end marker: one of them says that the join waits for them.
//! - `slow`: they close their handles first, as the docs say a consumer
//!   should, and the parent, still open and not getting, waits past the
//!   hint's delay before it puts and closes: nobody is stuck, nothing is
//!   said.
//! - `joins-producer`: they close first; the parent, its handle open,
//!   waits in `join()` for a producer child that sleeps past the hint's
//!   delay, then puts; the parent then closes and joins them: the
//!   producer could put all along, so nothing is said.

use std::time::Duration;

use outlast_ipc::{Process, Queue};

/// Longer than the hint's 10 s.
const PAST_THE_HINT: Duration = Duration::from_secs(12);

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

fn put_later(q: Queue<u64>) {
    std::thread::sleep(PAST_THE_HINT);
    for n in 1..=3 {
        q.put(&n).expect("put");
    }
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let q = Queue::new(0).expect("a queue");
    let entry = match mode.as_str() {
        "stuck" | "joined" => take_all,
        _ => close_then_take_all,
    };
    let mut children: Vec<_> = (0..2).map(|_| Process::new(entry, q.clone())).collect();
    for child in &mut children {
        child.start().expect("start a consumer");
    }
    match mode.as_str() {
        "slow" => std::thread::sleep(PAST_THE_HINT),
        "joins-producer" => {
            let mut producer = Process::new(put_later, q.clone());
            producer.start().expect("start the producer");
            producer.join().expect("the producer ends");
        }
        _ => {}
    }
    if mode != "joins-producer" {
        for n in 1..=3 {
            q.put(&n).expect("put");
        }
    }
    if mode != "joined" {
        q.close();
    }
    let mut sum = 0;
    for child in &mut children {
        sum += child.join().expect("a consumer ends");
    }
    println!("sum: {sum}");
}
