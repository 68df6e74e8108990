//! End-to-end tests of `outlast_ipc::queue` with real processes: close and producer
//! death lead to `Disconnected` after draining; typed errors; and the torture
//! test, where producers and consumers are SIGKILLed at random and replaced
//! while a million checksummed messages go through.

use std::time::{Duration, Instant};

use outlast_ipc::queue::{
    GetError, GetTimeoutError, JoinQueueTimeoutError, JoinableQueue, LostItems, PutError,
    PutTimeoutError, Queue, SimpleQueue,
};
use outlast_ipc::sync::Lock;
use outlast_ipc::value::{Array, Value};
use outlast_ipc::{Process, StartMethod};
use serde::{Deserialize, Serialize};
use tests::{cases, harness};

fn main() {
    outlast_ipc::init();
    harness::run(cases![
        close_lets_consumers_drain_then_disconnect,
        handles_clone_like_pythons_objects_share_and_cost_no_descriptor,
        a_child_counts_as_a_producer_before_it_runs,
        a_dead_producer_disconnects_after_draining,
        a_queue_that_outlived_hundreds_of_killed_producers_still_disconnects,
        full_oversized_and_timeouts_are_typed_errors,
        messages_of_every_size_cross_in_both_methods,
        joinable_queue_join_waits_for_task_done,
        join_reports_items_whose_taker_died_once_the_rest_are_done,
        a_put_that_nobody_can_take_from_says_why,
        a_waiting_join_sleeps_until_the_last_task_is_done,
        a_producer_killed_inside_put_leaves_join_working,
        simple_queue_round_trip,
        posix_message_queue_orders_by_priority_across_processes,
        torture_with_only_producers_killed_loses_nothing,
        torture_with_producers_and_consumers_killed,
        torture_one_to_one_kills_the_lock_free_owners,
        torture_with_large_messages_killed_in_flight,
        messages_larger_than_the_ring_keep_their_order_in_every_method,
        a_message_larger_than_the_ring_is_encoded_into_its_memfd,
        a_message_over_a_handles_cap_is_its_own_error,
        threads_and_a_forked_copy_share_one_handle_safely,
        a_consumer_blocked_on_an_empty_queue_uses_no_cpu,
        beside_busy_loops_a_ping_pong_loses_no_wake_up,
        a_consumer_fed_slowly_learns_not_to_spin,
        beside_busy_loops_the_cpus_count_as_oversubscribed,
        a_child_that_put_its_items_joins_before_they_are_taken,
        consumers_that_keep_their_handles_open_are_told_why_nothing_ends,
    ]);
}

fn produce_items((q, n): (Queue<String>, usize)) {
    for i in 0..n {
        if q.put(&format!("Item-{i}")).is_err() {
            return;
        }
    }
    q.close();
}

fn descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Adds `n` to the counter under the lock, and puts a word on the queue.
fn add_under_lock((q, total, lock, n): (Queue<String>, Value<u64>, Lock, u64)) {
    for _ in 0..n {
        let _held = lock.lock().expect("the lock");
        total.store(total.load() + 1);
    }
    let _ = q.put(&format!("added {n}"));
}

/// Python passes `q` to `Process(args=(q,))` and goes on using it; here
/// `q.clone()` does the same (it was `try_clone()?`, and `clone` did not
/// exist: the compiler suggested `close`).
fn handles_clone_like_pythons_objects_share_and_cost_no_descriptor() {
    let q: Queue<String> = Queue::new(0).expect("queue");
    let total = Value::<u64>::new(0).expect("value");
    let lock = Lock::new().expect("lock");
    let mut children: Vec<_> = (0..3)
        .map(|_| {
            let mut child = Process::new(
                add_under_lock,
                (q.clone(), total.clone(), lock.clone(), 500),
            );
            child.start().expect("start");
            child
        })
        .collect();
    for child in &mut children {
        child.join().expect("joined");
    }
    assert_eq!(total.load(), 1500, "every child added under one lock");
    let words: Vec<String> = (0..3).map(|_| q.get().expect("a word")).collect();
    assert_eq!(words, ["added 500"; 3]);

    // A clone in this process shares the mapping: no descriptor, and it
    // still counts as a producer of its own until it is closed.
    let before = descriptors();
    let clones: Vec<Queue<String>> = (0..100).map(|_| q.clone()).collect();
    let values: Vec<Value<u64>> = (0..100).map(|_| total.clone()).collect();
    assert_eq!(
        descriptors(),
        before,
        "100 clones of each took no descriptor"
    );
    drop(values);
    q.close();
    for clone in &clones[1..] {
        clone.close();
    }
    assert!(
        matches!(q.try_get(), Err(GetTimeoutError::Empty)),
        "one clone is still open: not disconnected"
    );
    clones[0].put(&"last".into()).expect("the open clone puts");
    drop(clones);
    assert_eq!(q.get().expect("drained"), "last");
    assert!(matches!(q.get(), Err(GetError::Disconnected)));
}

fn drain(q: &Queue<String>) -> (Vec<String>, bool) {
    let mut got = Vec::new();
    loop {
        match q.get_timeout(Duration::from_secs(30)) {
            Ok(item) => got.push(item),
            Err(GetTimeoutError::Get(GetError::Disconnected)) => return (got, true),
            Err(_) => return (got, false),
        }
    }
}

fn a_child_counts_as_a_producer_before_it_runs() {
    // The only other handle is closed at once: the child must still count,
    // from the moment it was handed its handle, until it closes.
    for method in [StartMethod::Fork, StartMethod::Spawn] {
        let q = Queue::<String>::new(0).expect("queue");
        let mut p =
            Process::new(produce_items, (q.try_clone().expect("clone"), 5)).start_method(method);
        p.start().expect("start");
        q.close();
        let (got, disconnected) = drain(&q);
        assert_eq!(got.len(), 5, "{method:?}: {got:?}");
        assert!(disconnected);
        p.join().expect("join");
    }
}

fn close_lets_consumers_drain_then_disconnect() {
    let q = Queue::<String>::new(0).expect("queue");
    let mut p = Process::new(produce_items, (q.try_clone().expect("clone"), 5));
    p.start().expect("start");
    // This process only consumes: it says so, as a Python reader would.
    q.close();
    p.join().expect("join");
    let (got, disconnected) = drain(&q);
    assert_eq!(got, ["Item-0", "Item-1", "Item-2", "Item-3", "Item-4"]);
    assert!(disconnected);
}

fn produce_then_hang(q: Queue<String>) {
    for i in 0..3 {
        let _ = q.put(&format!("Item-{i}"));
    }
    std::thread::sleep(Duration::from_secs(3600));
}

fn a_dead_producer_disconnects_after_draining() {
    let q = Queue::<String>::new(0).expect("queue");
    let mut p = Process::new(produce_then_hang, q.try_clone().expect("clone"));
    p.start().expect("start");
    q.close();
    let started = Instant::now();
    while q.len() < 3 {
        assert!(started.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(1));
    }
    // Alive and silent: not disconnected, just empty after the three.
    assert_eq!(q.get().expect("0"), "Item-0");
    p.kill().expect("kill");
    let _ = p.join();
    let (got, disconnected) = drain(&q);
    assert_eq!(got, ["Item-1", "Item-2"]);
    assert!(disconnected);
}

fn put_one_then_hang(q: Queue<u64>) {
    let _ = q.put(&1);
    std::thread::sleep(Duration::from_secs(3600));
}

fn a_queue_that_outlived_hundreds_of_killed_producers_still_disconnects() {
    // More killed producers than the table has slots (256), none of whose
    // deaths a waiting get noticed: each item was there when asked for.
    let q = Queue::<u64>::new(0).expect("queue");
    let mut got = 0;
    for _ in 0..300 {
        let mut p = Process::new(put_one_then_hang, q.try_clone().expect("clone"));
        p.start().expect("start");
        got += q.get_timeout(Duration::from_secs(30)).expect("its item");
        p.kill().expect("kill");
        let _ = p.join();
    }
    assert_eq!(got, 300);
    q.close();
    // Every producer is dead: the get says so. With the table full of the
    // dead (freed only while a get waited), it waited out its timeout.
    match q.get_timeout(Duration::from_secs(20)) {
        Err(GetTimeoutError::Get(GetError::Disconnected)) => {}
        other => panic!("after 300 killed producers: {other:?}"),
    }
}

fn full_oversized_and_timeouts_are_typed_errors() {
    let q = Queue::<u64>::with_ring_bytes(2, 4096).expect("queue");
    q.try_put(&1).expect("room");
    q.try_put(&2).expect("room");
    assert!(q.is_full());
    assert!(matches!(q.try_put(&3), Err(PutTimeoutError::Full)));
    assert!(matches!(
        q.put_timeout(&3, Duration::from_millis(5)),
        Err(PutTimeoutError::Full)
    ));
    assert_eq!(q.get_many(10, Duration::ZERO).expect("two"), [1, 2]);
    assert!(matches!(q.try_get(), Err(GetTimeoutError::Empty)));
    assert!(matches!(
        q.get_timeout(Duration::from_millis(5)),
        Err(GetTimeoutError::Empty)
    ));

    let bytes = Queue::<Vec<u8>>::with_ring_bytes(0, 4096).expect("queue");
    bytes.set_max_message_bytes(8000);
    let big = vec![7u8; 8192];
    assert!(matches!(
        bytes.try_put(&big),
        Err(PutTimeoutError::Put(PutError::TooLarge {
            len: 8194,
            max: 8000
        }))
    ));
    // Garbage in the ring's payload (raw bytes that are no Vec<u8> of that shape).
    bytes
        .put_bytes(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
        .expect("raw");
    assert!(matches!(
        bytes.try_get(),
        Err(GetTimeoutError::Get(GetError::Decode(_)))
    ));
    bytes.close();
    assert!(matches!(bytes.put(&vec![1]), Err(PutError::Closed)));
}

fn echo_sizes((inq, outq): Echoing) {
    inq.close();
    let mut buf = Vec::new();
    // Raw bytes: the sizes go up to 64 MiB, and this is a debug build.
    while inq.get_bytes(&mut buf, Duration::from_secs(60)).is_ok() {
        if outq.put_bytes(&buf).is_err() {
            return;
        }
    }
    outq.close();
}

/// A pair of byte queues: in, then out.
type Echoing = (Queue<Vec<u8>>, Queue<Vec<u8>>);

/// A child of `method` echoing what `inq` brings into `outq`.
fn start_echo(
    inq: &Queue<Vec<u8>>,
    outq: &Queue<Vec<u8>>,
    method: StartMethod,
) -> Process<Echoing, ()> {
    let handles = (
        inq.try_clone().expect("clone"),
        outq.try_clone().expect("clone"),
    );
    let mut p = Process::new(echo_sizes, handles).start_method(method);
    p.start().expect("start");
    p
}

fn messages_of_every_size_cross_in_both_methods() {
    for method in [StartMethod::Fork, StartMethod::Spawn] {
        let inq = Queue::<Vec<u8>>::new(0).expect("queue");
        let outq = Queue::<Vec<u8>>::new(0).expect("queue");
        let mut p = start_echo(&inq, &outq, method);
        // 40 MiB after 20 MiB: more than half the ring, starting mid-ring, so
        // it must skip to the next lap on its own; 64 MiB is the frame limit.
        let sizes = [
            0usize,
            1,
            7,
            8,
            9,
            64,
            4096,
            1 << 20,
            20 << 20,
            40 << 20,
            64 << 20,
        ];
        let mut back = Vec::new();
        for &size in &sizes {
            let mut m = vec![(size % 251) as u8; size];
            if let Some(last) = m.last_mut() {
                *last = 0x5a;
            }
            inq.put_bytes(&m).expect("put");
            outq.get_bytes(&mut back, Duration::from_secs(60))
                .expect("echo");
            assert!(back == m, "size {size} came back altered");
        }
        inq.close();
        p.join().expect("join");
    }
}

/// A labelled item with a long run of bytes, as a user's might be.
type Labelled = (u64, Vec<u8>, String);

/// Takes `n` items: each one's number, length, label, and whether its
/// bytes are the ones `labelled` made.
fn take_labelled((q, n): (Queue<Labelled>, usize)) -> Vec<(u64, usize, String, bool)> {
    (0..n)
        .map(|_| q.get_timeout(Duration::from_secs(60)).expect("an item"))
        .map(|(k, bytes, label)| {
            let intact = bytes == numbered(bytes.len(), k as usize);
            (k, bytes.len(), label, intact)
        })
        .collect()
}

/// A message too large for the ring goes from the item into the memfd it
/// travels in as it is encoded, by `put` and by `put_async`: encoded into
/// a fresh buffer and then copied there, a 40 MB one touched 10,240 fresh
/// pages of the putting thread (and a 100 MB blocking put took 100 ms, 38
/// of them the memfd's writes). A child takes each one whole; one over the
/// handle's cap is refused with its whole length.
fn a_message_larger_than_the_ring_is_encoded_into_its_memfd() {
    use tests::procfs::this_thread_minor_faults;
    // Over glibc's largest mmap threshold: such a buffer is fresh pages.
    const LARGE: usize = 40 << 20;
    let q = Queue::<Labelled>::with_ring_bytes(0, 1 << 20).expect("a queue");
    let mut taker = Process::new(take_labelled, (q.clone(), 2));
    taker.start().expect("start");
    for (k, awaited) in [(1u64, false), (2, true)] {
        let item = (k, numbered(LARGE, k as usize), format!("item {k}"));
        let before = this_thread_minor_faults();
        match awaited {
            false => q.put(&item).expect("put"),
            true => tests::executor::block_on(q.put_async(&item), Duration::from_secs(60))
                .expect("in time")
                .expect("put_async"),
        }
        let faults = this_thread_minor_faults() - before;
        let pages = (LARGE / 4096) as u64;
        assert!(
            faults < pages / 10,
            "item {k}: the putting thread touched {faults} fresh pages putting {pages}"
        );
    }
    let taken = taker.join().expect("join");
    assert_eq!(
        taken,
        [
            (1, LARGE, "item 1".to_string(), true),
            (2, LARGE, "item 2".to_string(), true)
        ]
    );

    q.set_max_message_bytes(LARGE / 2);
    let item = (3, vec![0u8; LARGE], "item 3".to_string());
    let mut expected = Vec::new();
    outlast_ipc::codec::encode_append(&item, &mut expected).expect("encode");
    for refused in [
        q.put(&item),
        tests::executor::block_on(q.put_async(&item), Duration::from_secs(60)).expect("in time"),
    ] {
        match refused {
            Err(PutError::TooLarge { len, max }) => {
                assert_eq!((len, max), (expected.len(), LARGE / 2))
            }
            other => panic!("a put over the cap: {other:?}"),
        }
    }
    assert!(q.is_empty(), "a refused put left something");
}

fn numbered(size: usize, n: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 31 + n * 7) as u8).collect()
}

/// Messages under, at and over a 64 KiB ring's largest, put all at once
/// (so spilled ones wait beside inline ones), come back whole and in order
/// through a child of each start method; and a 100 MB message through the
/// default ring.
fn messages_larger_than_the_ring_keep_their_order_in_every_method() {
    for method in [
        StartMethod::Fork,
        StartMethod::Spawn,
        StartMethod::ForkServer,
    ] {
        let inq = Queue::<Vec<u8>>::with_ring_bytes(0, 64 * 1024).expect("queue");
        let outq = Queue::<Vec<u8>>::with_ring_bytes(0, 64 * 1024).expect("queue");
        let inline = inq.ring_message_bytes();
        let sizes = [
            10,
            inline + 1,
            5,
            inline,
            200_000,
            0,
            3 << 20,
            inline - 1,
            1 << 20,
        ];
        let mut p = start_echo(&inq, &outq, method);
        let messages: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(n, &s)| numbered(s, n))
            .collect();
        let slices: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let mut back = Vec::new();
        std::thread::scope(|scope| {
            // Put them all in one call while this thread takes the echoes:
            // the child waits for room in either ring as often as it must.
            let putter = scope.spawn(|| inq.put_many_bytes(&slices, Duration::from_secs(60)));
            for (n, m) in messages.iter().enumerate() {
                outq.get_bytes(&mut back, Duration::from_secs(60))
                    .expect("echo");
                assert!(
                    back == *m,
                    "{method:?}: message {n} ({} bytes) came back altered",
                    m.len()
                );
            }
            let put = putter.join().expect("putter").expect("put");
            assert_eq!(put, sizes.len());
        });
        // 100 MB, through the default 64 MiB ring.
        let huge = numbered(100_000_000, 3);
        let big_in = Queue::<Vec<u8>>::new(0).expect("queue");
        big_in.put_bytes(&huge).expect("put");
        let mut got = Vec::new();
        big_in
            .get_bytes(&mut got, Duration::from_secs(60))
            .expect("get");
        assert!(got == huge, "{method:?}: 100 MB came back altered");
        inq.close();
        p.join().expect("join");
    }
}

/// A consumer whose cap is below a message gets a typed error naming both
/// sizes for that message alone; the next one comes through.
fn a_message_over_a_handles_cap_is_its_own_error() {
    let q = Queue::<Vec<u8>>::with_ring_bytes(0, 4096).expect("queue");
    let consumer = q.try_clone().expect("clone");
    consumer.set_max_message_bytes(10_000);
    q.put(&vec![1u8; 20_000]).expect("put");
    q.put(&vec![2u8; 9_000]).expect("put");
    q.put(&vec![3u8; 20]).expect("put");
    match consumer.get_timeout(Duration::from_secs(10)) {
        Err(GetTimeoutError::Get(GetError::TooLarge {
            len: 20_003,
            max: 10_000,
        })) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(consumer.get().expect("second"), vec![2u8; 9_000]);
    assert_eq!(consumer.get().expect("third"), vec![3u8; 20]);
    // A put over the handle's cap fails the same way.
    assert!(matches!(
        consumer.put(&vec![0u8; 10_001]),
        Err(PutError::TooLarge {
            len: 10_003,
            max: 10_000
        })
    ));
}

fn work_and_mark_done(q: JoinableQueue<u32>) -> u32 {
    let mut done = 0;
    while let Ok(_item) = q.get_timeout(Duration::from_millis(300)) {
        std::thread::sleep(Duration::from_millis(2));
        if q.task_done().is_ok() {
            done += 1;
        }
    }
    done
}

fn put_forever(q: JoinableQueue<u64>) {
    for i in 0.. {
        if q.put(&i).is_err() {
            return;
        }
    }
}

/// A producer SIGKILLed while it puts as fast as it can (so the kill
/// usually lands inside a put): whatever it committed is received and
/// marked done, and then `join` returns. Five rounds.
fn a_producer_killed_inside_put_leaves_join_working() {
    for round in 0..5 {
        let q = JoinableQueue::<u64>::with_ring_bytes(0, 1 << 20).expect("queue");
        let mut p = Process::new(put_forever, q.try_clone().expect("clone"));
        p.start().expect("start");
        // Let it put a while (the ring fills and it waits for room too).
        std::thread::sleep(Duration::from_millis(20 + 7 * round));
        let _ = p.kill();
        let _ = p.join();
        q.close();
        let mut next = 0u64;
        loop {
            match q.get_timeout(Duration::from_secs(10)) {
                Ok(i) => {
                    assert_eq!(i, next, "round {round}: out of order");
                    next += 1;
                    q.task_done().expect("task_done");
                }
                Err(GetTimeoutError::Get(GetError::Disconnected)) => break,
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert!(next > 0, "round {round}: the producer put nothing");
        assert!(
            q.join_timeout(Duration::from_secs(5)).is_ok(),
            "round {round}: join stuck with {} unfinished after {next} items",
            q.unfinished()
        );
        assert!(q.task_done().is_err());
    }
}

fn joinable_queue_join_waits_for_task_done() {
    let q = JoinableQueue::<u32>::new(0).expect("queue");
    let mut workers: Vec<_> = (0..2)
        .map(|_| {
            let mut p = Process::new(work_and_mark_done, q.try_clone().expect("clone"));
            p.start().expect("start");
            p
        })
        .collect();
    for i in 0..20 {
        q.put(&i).expect("put");
    }
    assert!(
        q.join_timeout(Duration::from_secs(30)).is_ok(),
        "join timed out with {} unfinished",
        q.unfinished()
    );
    assert_eq!(q.unfinished(), 0);
    let done: u32 = workers.iter_mut().map(|p| p.join().expect("join")).sum();
    assert_eq!(done, 20);
    assert!(q.task_done().is_err());
}

fn simple_queue_round_trip() {
    let q = SimpleQueue::<(u32, String)>::new().expect("queue");
    q.put(&(1, "a".into())).expect("put");
    assert!(!q.empty());
    assert_eq!(q.get().expect("get"), (1, "a".to_string()));
    assert!(q.empty());
}

fn receive_all(mq: outlast_ipc::mq::MessageQueue) -> Vec<(Vec<u8>, u32)> {
    let mut got = Vec::new();
    while let Ok(m) = mq.receive_timeout(Duration::from_millis(500)) {
        got.push(m);
    }
    got
}

fn posix_message_queue_orders_by_priority_across_processes() {
    use outlast_ipc::mq::{MessageQueue, MqOpenError, MqRecvError, MqSendError};
    let name = format!("ipc-test-mq-{}", std::process::id());
    let mq = MessageQueue::create(&name, 4, 64).expect("create");
    assert!(matches!(
        MessageQueue::create(&name, 4, 64),
        Err(MqOpenError::AlreadyExists(_))
    ));
    assert!(matches!(
        MessageQueue::open("ipc-test-no-such-mq"),
        Err(MqOpenError::NotFound(_))
    ));
    assert!(matches!(
        MessageQueue::open("a/b"),
        Err(MqOpenError::BadName(_))
    ));
    assert!(matches!(
        mq.try_send(&[0; 65], 0),
        Err(MqSendError::TooLarge { len: 65, max: 64 })
    ));
    assert!(matches!(mq.try_receive(), Err(MqRecvError::Empty)));
    for (msg, prio) in [
        (b"low".as_slice(), 1),
        (b"high", 9),
        (b"mid", 5),
        (b"low2", 1),
    ] {
        mq.send(msg, prio).expect("send");
    }
    assert!(matches!(mq.try_send(b"x", 0), Err(MqSendError::Full)));
    let opened = MessageQueue::open(&name).expect("open");
    let mut p = Process::new(receive_all, opened).start_method(StartMethod::Spawn);
    p.start().expect("start");
    let got = p.join().expect("join");
    let order: Vec<(&[u8], u32)> = got.iter().map(|(m, p)| (m.as_slice(), *p)).collect();
    assert_eq!(
        order,
        [
            (b"high".as_slice(), 9),
            (b"mid", 5),
            (b"low", 1),
            (b"low2", 1)
        ]
    );
    mq.unlink().expect("unlink");
}

// ---- torture ------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct Message {
    id: u64,
    payload: [u8; 32],
    checksum: u64,
    /// `Torture::pad` bytes, each the id's low byte: large enough, the
    /// message no longer fits the ring and travels beside it.
    padding: Vec<u8>,
}

fn checksum(id: u64, payload: &[u8; 32]) -> u64 {
    payload
        .iter()
        .fold(id.wrapping_mul(0x9E37_79B9_7F4A_7C15), |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
}

/// What every producer and consumer shares: the queue, the next message id,
/// which ids had `put` return, and how often each id was received.
#[derive(Serialize, Deserialize)]
struct Torture {
    queue: Queue<Message>,
    next_id: Value<u64>,
    total: u64,
    put_returned: Array<u32>,
    received: Array<u32>,
    corrupted: Value<u64>,
    pad: usize,
}

impl Torture {
    fn new(total: u64, ring: usize, pad: usize) -> Self {
        Torture {
            pad,
            queue: Queue::with_ring_bytes(0, ring).expect("queue"),
            next_id: Value::new(0).expect("value"),
            total,
            put_returned: Array::new(total as usize, 0).expect("array"),
            received: Array::new(total as usize, 0).expect("array"),
            corrupted: Value::new(0).expect("value"),
        }
    }

    fn try_clone(&self) -> Torture {
        Torture {
            queue: self.queue.try_clone().expect("clone"),
            next_id: self.next_id.try_clone().expect("clone"),
            total: self.total,
            put_returned: self.put_returned.try_clone().expect("clone"),
            received: self.received.try_clone().expect("clone"),
            corrupted: self.corrupted.try_clone().expect("clone"),
            pad: self.pad,
        }
    }
}

fn producer(t: Torture) {
    loop {
        let id = t.next_id.fetch_add(1);
        if id >= t.total {
            t.queue.close();
            return;
        }
        let mut payload = [0u8; 32];
        for (i, b) in payload.iter_mut().enumerate() {
            *b = (id as u8).wrapping_add(i as u8);
        }
        let m = Message {
            id,
            payload,
            checksum: checksum(id, &payload),
            padding: vec![id as u8; t.pad],
        };
        if t.queue.put(&m).is_err() {
            return;
        }
        t.put_returned.fetch_add(id as usize, 1);
    }
}

fn consumer(t: Torture) {
    t.queue.close();
    loop {
        // One at a time: a consumer killed right after a get loses that one message.
        match t.queue.get_timeout(Duration::from_secs(60)) {
            Ok(m) => {
                let padded = m.padding.len() == t.pad && m.padding.iter().all(|&b| b == m.id as u8);
                if m.id >= t.total || m.checksum != checksum(m.id, &m.payload) || !padded {
                    t.corrupted.fetch_add(1);
                } else {
                    t.received.fetch_add(m.id as usize, 1);
                }
            }
            Err(GetTimeoutError::Get(GetError::Decode(_))) => {
                t.corrupted.fetch_add(1);
            }
            // A large message whose consumer was killed holding it: lost,
            // said so, and counted as missing below.
            Err(GetTimeoutError::Get(GetError::Spilled(_))) => {}
            Err(_) => return,
        }
    }
}

fn start(role: fn(Torture), t: &Torture) -> Process<Torture, ()> {
    let mut p = Process::new(role, t.try_clone());
    p.start().expect("start");
    p
}

/// Runs `each` producers and `each` consumers over `total` messages,
/// SIGKILLing and replacing a random one every few milliseconds for `kills`
/// kills; returns the shared state, the kills made, and how many of them
/// were consumers.
fn run_torture(
    total: u64,
    kills: usize,
    kill_consumers: bool,
    each: usize,
) -> (Torture, usize, usize) {
    run_torture_with(
        Torture::new(total, 64 * 1024, 0),
        kills,
        kill_consumers,
        each,
    )
}

fn run_torture_with(
    t: Torture,
    kills: usize,
    kill_consumers: bool,
    each: usize,
) -> (Torture, usize, usize) {
    let total = t.total;
    let mut producers: Vec<_> = (0..each).map(|_| start(producer, &t)).collect();
    let mut consumers: Vec<_> = (0..each).map(|_| start(consumer, &t)).collect();
    // The test process only watches; its children hold their own handles.
    t.queue.close();
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut consumer_kills = 0;
    let mut made = 0;
    for _ in 0..kills {
        std::thread::sleep(Duration::from_millis(3));
        if t.next_id.load() >= total {
            break;
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let i = (rng % each as u64) as usize;
        made += 1;
        if kill_consumers && rng % 2 == 0 {
            let _ = consumers[i].kill();
            let _ = consumers[i].join();
            consumer_kills += 1;
            consumers[i] = start(consumer, &t);
        } else {
            let _ = producers[i].kill();
            let _ = producers[i].join();
            producers[i] = start(producer, &t);
        }
    }
    for p in producers.iter_mut().chain(consumers.iter_mut()) {
        p.join().expect("every producer and consumer ends");
    }
    eprintln!("torture: {made} kills, {consumer_kills} of consumers");
    (t, made, consumer_kills)
}

/// (received twice or more, put returned but never received, in flight and received).
fn tally(t: &Torture) -> (usize, usize, usize) {
    let put = t.put_returned.to_vec().expect("read");
    let got = t.received.to_vec().expect("read");
    let duplicates = got.iter().filter(|&&n| n > 1).count();
    let missing = put
        .iter()
        .zip(&got)
        .filter(|(&p, &g)| p == 1 && g == 0)
        .count();
    let in_flight_received = put
        .iter()
        .zip(&got)
        .filter(|(&p, &g)| p == 0 && g == 1)
        .count();
    (duplicates, missing, in_flight_received)
}

fn torture_with_only_producers_killed_loses_nothing() {
    let (t, kills, _) = run_torture(300_000, 60, false, 4);
    assert!(kills >= 10, "only {kills} kills happened");
    let (duplicates, missing, in_flight) = tally(&t);
    assert_eq!(t.corrupted.get().expect("read"), 0);
    assert_eq!(duplicates, 0);
    assert_eq!(
        missing, 0,
        "a message whose put returned was never received"
    );
    // Only the message a killed producer was putting may be either way.
    assert!(in_flight <= 60);
    assert!(t.queue.is_empty());
}

fn torture_with_producers_and_consumers_killed() {
    let (t, kills, consumer_kills) = run_torture(1_000_000, 150, true, 4);
    assert!(
        kills >= 20 && consumer_kills >= 5,
        "only {kills} kills ({consumer_kills} consumers)"
    );
    assert_killed_safely(&t, consumer_kills);
}

/// One producer and one consumer at a time: each soon owns its side of the
/// ring and works without the lock (see `outlast_ipc::queue`), so most kills land
/// on an owner, often in the middle of a put or a get, and the replacement
/// must take the side over from a dead owner.
fn torture_one_to_one_kills_the_lock_free_owners() {
    let (t, kills, consumer_kills) = run_torture(400_000, 80, true, 1);
    assert!(
        kills >= 10 && consumer_kills >= 3,
        "only {kills} kills ({consumer_kills} consumers)"
    );
    assert_killed_safely(&t, consumer_kills);
}

/// The same with every message too large for the (4 KiB) ring, so each
/// travels in a memfd beside it: a producer killed between handing one over
/// and publishing its record, or a consumer killed holding one, must never
/// make another consumer take the wrong message.
fn torture_with_large_messages_killed_in_flight() {
    let t = Torture::new(6_000, 4096, 5_000);
    let (t, kills, consumer_kills) = run_torture_with(t, 60, true, 2);
    assert!(
        kills >= 10 && consumer_kills >= 3,
        "only {kills} kills ({consumer_kills} consumers)"
    );
    assert_killed_safely(&t, consumer_kills);
}

fn assert_killed_safely(t: &Torture, consumer_kills: usize) {
    let (duplicates, missing, _) = tally(t);
    assert_eq!(t.corrupted.get().expect("read"), 0, "corrupted messages");
    assert_eq!(duplicates, 0, "messages delivered twice");
    // At most the one message each killed consumer had just taken.
    assert!(
        missing <= consumer_kills,
        "{missing} missing after {consumer_kills} consumer kills"
    );
    assert!(t.queue.is_empty());
}

/// Puts `(source, seq)` as 16 raw bytes (no allocation: safe in a child
/// forked from a process with threads).
fn put_numbered(q: &Queue<()>, source: u64, seq: u64) -> bool {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&source.to_le_bytes());
    bytes[8..].copy_from_slice(&seq.to_le_bytes());
    matches!(q.put_many_bytes(&[&bytes], Duration::from_secs(10)), Ok(1))
}

/// Two threads put through one shared handle while a raw `fork` of this
/// process puts through its copy of the same handle, and this thread, which
/// owned the producers' side before the fork, keeps putting. The lock-free
/// owner is only ever one thread: every source's numbers arrive complete,
/// once each, in order.
fn threads_and_a_forked_copy_share_one_handle_safely() {
    const EACH: u64 = 100_000;
    const SOURCES: usize = 4;
    let q = std::sync::Arc::new(Queue::<()>::with_ring_bytes(0, 64 * 1024).expect("queue"));
    let reader = q.try_clone().expect("clone");
    let consumer = std::thread::spawn(move || {
        let mut next = [0u64; SOURCES];
        let mut wrong = 0u64;
        let mut buf = Vec::new();
        for _ in 0..SOURCES as u64 * EACH {
            match reader.get_bytes(&mut buf, Duration::from_secs(10)) {
                Ok(16) => {
                    let source = u64::from_le_bytes(buf[..8].try_into().unwrap_or_default());
                    let seq = u64::from_le_bytes(buf[8..].try_into().unwrap_or_default());
                    match next.get_mut(source as usize) {
                        Some(n) if *n == seq => *n += 1,
                        _ => wrong += 1,
                    }
                }
                Ok(_) => wrong += 1,
                Err(_) => break,
            }
        }
        (next, wrong)
    });
    // Long enough a streak for this thread to own the side.
    for seq in 0..1_000 {
        assert!(put_numbered(&q, 0, seq));
    }
    // SAFETY: the child only puts raw bytes through the queue (no
    // allocation, no lock another thread could hold) and then _exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let all = (0..EACH).all(|seq| put_numbered(&q, 3, seq));
        // SAFETY: leaving the forked child without running destructors.
        unsafe { libc::_exit(if all { 0 } else { 1 }) };
    }
    assert!(pid > 0, "fork failed");
    // Alone with the child for a while: the child's copy carries this
    // thread's token, which must not let it in.
    for seq in 1_000..EACH / 2 {
        assert!(put_numbered(&q, 0, seq));
    }
    let threads: Vec<_> = [1u64, 2]
        .into_iter()
        .map(|source| {
            let q = std::sync::Arc::clone(&q);
            std::thread::spawn(move || (0..EACH).all(|seq| put_numbered(&q, source, seq)))
        })
        .collect();
    for seq in EACH / 2..EACH {
        assert!(put_numbered(&q, 0, seq));
    }
    for t in threads {
        assert_eq!(t.join().ok(), Some(true), "a thread's put failed");
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the forked child's puts failed: status {status:#x}"
    );
    let (next, wrong) = consumer.join().expect("consumer");
    assert_eq!(wrong, 0, "messages out of order, twice, or garbled");
    assert_eq!(next, [EACH; SOURCES]);
}

/// Blocked 2 s on an empty queue, a consumer is on a CPU for a sliver of
/// it (the bound is 1 % of a core; it spins microseconds per liveness
/// slice, then sleeps on a futex).
fn a_consumer_blocked_on_an_empty_queue_uses_no_cpu() {
    let q: Queue<u64> = Queue::new(0).unwrap();
    let before = tests::load::thread_cpu();
    let waited = Instant::now();
    assert!(matches!(
        q.get_timeout(Duration::from_secs(2)),
        Err(GetTimeoutError::Empty)
    ));
    assert!(waited.elapsed() >= Duration::from_secs(2));
    let used = Duration::from_nanos(tests::load::thread_cpu() - before);
    eprintln!("a consumer blocked 2 s was on a CPU for {used:?}");
    assert!(
        used < Duration::from_millis(20),
        "a blocked consumer was on a CPU for {used:?} of 2 s"
    );
}

/// Echoes `n` numbers from `from` to `to`.
fn echo((from, to, n): (Queue<u64>, Queue<u64>, u64)) -> Result<(), String> {
    for _ in 0..n {
        let x = from.get().map_err(|e| e.to_string())?;
        to.put(&x).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// With every CPU taken by a busy loop, 2,000 round trips through two
/// queues with a child come back exactly, none lost to a missed wake-up
/// (every wait parks there: the CPUs are oversubscribed).
fn beside_busy_loops_a_ping_pong_loses_no_wake_up() {
    const ROUNDS: u64 = 2_000;
    let _load = tests::load::BusyLoops::one_per_cpu();
    let (ping, pong) = (Queue::<u64>::new(0).unwrap(), Queue::<u64>::new(0).unwrap());
    let mut child = Process::new(
        echo,
        (ping.try_clone().unwrap(), pong.try_clone().unwrap(), ROUNDS),
    );
    child.start().unwrap();
    for i in 0..ROUNDS {
        ping.put(&i).unwrap();
        assert_eq!(pong.get_timeout(Duration::from_secs(30)).unwrap(), i);
    }
    assert_eq!(child.join().unwrap(), Ok(()));
}

/// Puts `n` numbers, `every` apart.
fn trickle((q, n, every): (Queue<u64>, u64, Duration)) -> Result<(), String> {
    for i in 0..n {
        std::thread::sleep(every);
        q.put(&i).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A consumer allowed to spin 1 ms before it sleeps, fed a message every
/// 5 ms, learns that spinning does not pay: after a few waits it spins a
/// couple of microseconds, not the millisecond, per message. Asserted on
/// its CPU time (a consumer that always spins its bound uses over 1 ms per
/// message), with a wide margin.
fn a_consumer_fed_slowly_learns_not_to_spin() {
    const MESSAGES: u64 = 60;
    let q: Queue<u64> = Queue::new(0).unwrap();
    q.set_spin(Duration::from_millis(1));
    let mut child = Process::new(
        trickle,
        (q.try_clone().unwrap(), MESSAGES, Duration::from_millis(5)),
    );
    child.start().unwrap();
    // The first waits teach it.
    for i in 0..10 {
        assert_eq!(q.get_timeout(Duration::from_secs(30)).unwrap(), i);
    }
    let before = tests::load::thread_cpu();
    for i in 10..MESSAGES {
        assert_eq!(q.get_timeout(Duration::from_secs(30)).unwrap(), i);
    }
    let per_message = Duration::from_nanos((tests::load::thread_cpu() - before) / (MESSAGES - 10));
    assert_eq!(child.join().unwrap(), Ok(()));
    assert!(
        per_message < Duration::from_micros(300),
        "{per_message:?} on a CPU per message 5 ms apart: the consumer spins its whole bound"
    );
}

/// Beside two busy loops per CPU, the CPUs count as oversubscribed (and
/// every wait in this crate parks rather than spins) within a second.
fn beside_busy_loops_the_cpus_count_as_oversubscribed() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let _load = tests::load::BusyLoops::start(2 * cpus);
    let deadline = Instant::now() + Duration::from_secs(1);
    while !outlast_ipc::os::contention::oversubscribed() {
        assert!(
            Instant::now() < deadline,
            "{} runnable on {cpus} CPUs, not counted as oversubscribed",
            outlast_ipc::os::contention::runnable()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Puts three 15 MB items and returns.
fn put_three_large(q: Queue<Vec<u8>>) {
    for n in 0..3u8 {
        let _ = q.put(&vec![n; 15 << 20]);
    }
}

/// Python's documented deadlock, "joining processes that use queues": a
/// child that put items cannot end until its feeder thread has written
/// them, so joining it before draining the queue hangs. Here a put that
/// returned is in shared memory (items within the ring's room), and the
/// child ends at once: joined before any get, in every start method.
fn a_child_that_put_its_items_joins_before_they_are_taken() {
    for method in StartMethod::ALL {
        let q = Queue::<Vec<u8>>::new(0).expect("a queue");
        let mut child =
            Process::new(put_three_large, q.try_clone().expect("a clone")).start_method(method);
        child.start().expect("start");
        child
            .join_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{method:?}: joined before the items were taken: {e}"));
        for n in 0..3u8 {
            let item = q.get_timeout(Duration::from_secs(10)).expect("an item");
            assert_eq!((item.len(), item[0]), (15 << 20, n), "{method:?}");
        }
    }
}

/// The line starting with `prefix` that a stuck program prints on stderr:
/// it must come within a minute and not before ten seconds, and no second
/// one may follow within three. The program is killed then (its fork
/// server ends its children).
fn the_one_hint(mut stuck: std::process::Child, prefix: &'static str) -> String {
    use std::io::{BufRead, BufReader};
    let stderr = stuck.stderr.take().expect("its stderr");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with(prefix) {
                let _ = lines_tx.send(line);
            }
        }
    });
    let started = Instant::now();
    let hint = lines.recv_timeout(Duration::from_secs(60));
    let waited = started.elapsed();
    let second = lines.recv_timeout(Duration::from_secs(3));
    let _ = stuck.kill();
    let _ = stuck.wait();
    let hint = hint.expect("a line on stderr within a minute");
    assert!(waited >= Duration::from_secs(10), "said after {waited:?}");
    assert!(second.is_err(), "a second line: {second:?}");
    hint
}

/// Consumers that loop `while let Ok(n) = q.get()` and a parent that
/// puts, in the two ways a first program hangs (Python's hang without a
/// word): the parent closes, but each consumer's own handle still counts
/// as a producer; or the parent waits in `join()` with no end marker.
/// Past ten seconds one consumer says so on stderr, once, naming what to
/// do. Two runs where an open handle is merely slow to put (the parent
/// sleeps 12 s first; the parent waits in `join()` for a producer child
/// that sleeps 12 s) say nothing and end with the exact sum.
fn consumers_that_keep_their_handles_open_are_told_why_nothing_ends() {
    use std::process::{Command, Stdio};
    let program = env!("CARGO_BIN_EXE_consumers_left_open");
    let start = move |mode: &str| {
        Command::new(program)
            .arg(mode)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the program")
    };
    let slow = start("slow");
    let joins_producer = start("joins-producer");
    let stuck = std::thread::spawn(move || the_one_hint(start("stuck"), "outlast:"));
    let joined = start("joined");
    let joiner = joined.id();
    let joined = the_one_hint(joined, "outlast:");
    let stuck = stuck.join().expect("the stuck run");
    assert!(
        stuck.contains("every handle still open on that queue is itself waiting in a get")
            && stuck.contains("close()")
            && stuck.contains("shutdown(false)"),
        "{stuck}"
    );
    assert!(
        joined.contains(&format!("waiting in join() (pid {joiner})"))
            && joined.contains("end marker for each consumer")
            && joined.contains("shutdown(false)"),
        "{joined}"
    );
    for run in [slow, joins_producer] {
        let out = run.wait_with_output().expect("the program ends");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "sum: 6");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    }
}

/// Closes its handle (it only takes), takes `n` items, then dies by
/// `SIGKILL` before marking any done.
fn take_then_die((q, n): (JoinableQueue<u32>, usize)) {
    q.close();
    for _ in 0..n {
        let _ = q.get();
    }
    // SAFETY: signals this very process.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}

/// Takes `n` items, then panics before marking any done.
fn take_then_panic((q, n): (JoinableQueue<u32>, usize)) {
    for _ in 0..n {
        let _ = q.get();
    }
    panic!("a consumer's bug");
}

/// Marks each item done, slowly, and counts them; takes them through one
/// handle and marks them through another (a second thread's, say).
fn work_slowly((q, done): (JoinableQueue<u32>, Value<u32>)) {
    let marker = q.clone();
    while let Ok(_item) = q.get_timeout(Duration::from_millis(500)) {
        std::thread::sleep(Duration::from_millis(20));
        done.fetch_add(1);
        marker.task_done().expect("task_done");
    }
}

/// Python's `join` waits forever for an item whose consumer died before
/// `task_done`. Here `join` waits for every other item, then says how many
/// were lost and by whom, once (they count as done from then on), and a
/// later `join` waits for what was put since. A consumer that panicked
/// (its handle dropped) loses its items the same way; items taken through
/// one handle and marked through another are not lost.
fn join_reports_items_whose_taker_died_once_the_rest_are_done() {
    let q = JoinableQueue::<u32>::new(0).expect("queue");
    for i in 0..10 {
        q.put(&i).expect("put");
    }
    let mut killed = Process::new(take_then_die, (q.clone(), 3));
    killed.start().expect("start");
    let killed_pid = killed.pid().expect("a pid");
    assert!(killed.join().is_err(), "it was killed");
    let done = Value::new(0u32).expect("a value");
    let mut slow = Process::new(work_slowly, (q.clone(), done.clone()));
    slow.start().expect("start");
    // Only once the seven others are done.
    assert_eq!(
        q.join(),
        Err(LostItems {
            items: 3,
            pid: killed_pid
        })
    );
    assert_eq!(done.load(), 7, "join returned before the rest were done");
    assert_eq!(q.unfinished(), 0);
    assert_eq!(q.join(), Ok(()), "reported once");
    slow.join().expect("the slow consumer");

    // A panic drops the handle: its items are lost too.
    for i in 0..4 {
        q.put(&i).expect("put");
    }
    let mut panicked = Process::new(take_then_panic, (q.clone(), 1));
    panicked.start().expect("start");
    let panicked_pid = panicked.pid().expect("a pid");
    assert!(panicked.join().is_err());
    let mut slow = Process::new(work_slowly, (q.clone(), done.clone()));
    slow.start().expect("start");
    assert_eq!(
        q.join_timeout(Duration::from_secs(60)),
        Err(JoinQueueTimeoutError::Lost(LostItems {
            items: 1,
            pid: panicked_pid
        }))
    );
    assert_eq!(done.load(), 10);
    slow.join().expect("the slow consumer");
    assert_eq!(q.join_timeout(Duration::ZERO), Ok(()));
}

/// A producer whose consumers panicked (their handles went with them):
/// its put into the full queue waits forever, as Python's does; past ten
/// seconds it says, once, that nobody can take. A consumer that is merely
/// slow to start (its handle open) gets no such line, and the sum is exact.
fn a_put_that_nobody_can_take_from_says_why() {
    use std::process::{Command, Stdio};
    let program = env!("CARGO_BIN_EXE_producer_left_alone");
    let slow = Command::new(program)
        .arg("slow")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the slow program");
    let gone = Command::new(program)
        .arg("gone")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the program");
    // (The consumers' panics come first, on the same stderr.)
    let hint = the_one_hint(gone, "outlast: a Queue put");
    assert!(
        hint.contains("nobody can take") && hint.contains("put_timeout()"),
        "{hint}"
    );
    let out = slow.wait_with_output().expect("the slow program ends");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "sum: 55");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

/// Times this thread went to sleep (voluntary context switches).
fn own_sleeps() -> u64 {
    std::fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("voluntary_ctxt_switches:"))
                .and_then(|l| l.split(':').nth(1)?.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Takes one item, works on it a moment, marks it done.
fn take_and_mark_later(q: JoinableQueue<u32>) {
    q.close();
    if q.get().is_ok() {
        std::thread::sleep(Duration::from_millis(300));
        let _ = q.task_done();
    }
}

/// A join that waits sleeps on a futex until a `task_done` may have ended
/// it, waking only to look for dead holders (10 times a second): it polled
/// every millisecond, some 2,000 wake-ups in 2 s. The last `task_done`,
/// in another process, still ends it.
fn a_waiting_join_sleeps_until_the_last_task_is_done() {
    let q = JoinableQueue::<u32>::new(0).expect("queue");
    q.put(&1).expect("put");
    let before = own_sleeps();
    assert_eq!(
        q.join_timeout(Duration::from_secs(2)),
        Err(JoinQueueTimeoutError::Timeout)
    );
    let sleeps = own_sleeps() - before;
    assert!(sleeps < 100, "{sleeps} wake-ups in 2 s");
    let mut p = Process::new(take_and_mark_later, q.clone());
    p.start().expect("start");
    assert_eq!(q.join_timeout(Duration::from_secs(30)), Ok(()));
    p.join().expect("join");
}
