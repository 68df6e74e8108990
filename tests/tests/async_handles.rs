//! End-to-end tests of the futures of `Queue` (`get_async`, `put_async`)
//! and `Connection` (`recv_async`, `send_async` and their byte forms),
//! with real processes, polled by a minimal executor of the tests' own
//! (`tests::executor`; the user-crate test runs them under tokio): exact
//! counts across processes, cancellation that loses nothing (Python's
//! `run_in_executor(None, q.get)` under `wait_for` loses the item), a
//! SIGKILLed producer seen by a waiting future, 100 MB frames, a frame
//! cut in half by its writer, no polling in a loop while waiting, and
//! little CPU while idle.

use std::future::Future;
use std::os::fd::AsRawFd;
use std::task::Poll;
use std::time::{Duration, Instant};

use outlast_ipc::queue::{GetError, Queue};
use outlast_ipc::{Connection, Pipe, Process};
use tests::executor::{block_on, join_all, poll_once, Task};
use tests::traced::traced;
use tests::{cases, harness};

fn main() {
    outlast_ipc::init();
    harness::run(cases![
        awaited_gets_take_every_item_of_four_producers_exactly_once,
        a_get_cancelled_while_waiting_takes_nothing,
        a_waiting_get_learns_that_its_producer_was_killed,
        a_waiting_put_goes_in_once_there_is_room_and_a_cancelled_one_puts_nothing,
        awaited_pipe_messages_cross_whole_both_ways_up_to_100_mb,
        awaited_sends_of_every_task_before_any_result_do_not_wait_for_each_other,
        a_receive_cancelled_inside_a_frame_keeps_its_first_half,
        a_connection_dropped_after_a_wait_shows_its_end_at_once,
        idle_waits_leave_the_cpu_alone,
        an_awaited_join_gives_the_result_in_every_start_method,
        a_large_awaited_join_is_read_off_the_polling_thread,
        a_large_awaited_queue_item_is_decoded_off_the_polling_thread,
        a_large_awaited_joinable_queue_item_is_decoded_off_the_polling_thread_and_counted,
        a_large_awaited_put_is_written_into_its_memfd_once,
        awaited_gets_dropped_in_the_middle_of_large_items_lose_and_reorder_nothing,
        a_large_awaited_frame_is_decoded_off_the_polling_thread,
        a_loop_of_ready_gets_lets_the_other_tasks_of_its_thread_run,
        an_event_set_by_another_process_wakes_every_waiting_future,
        awaited_acquires_take_each_released_unit_once,
        awaited_locks_exclude_processes_and_take_over_a_killed_holders_lock,
        awaited_barrier_waits_meet_processes_and_a_dropped_one_leaves,
        awaited_condition_waits_take_each_notify_once_and_pass_on_a_dropped_ones,
        awaited_manager_calls_stay_in_step_when_dropped_and_end_with_the_manager,
        large_awaited_manager_values_are_neither_copied_nor_decoded_on_the_polling_thread,
        awaited_manager_queue_gets_dropped_while_waiting_lose_no_item,
        five_hundred_awaited_gets_on_one_manager_queue_take_one_item_each,
        awaited_gets_and_puts_on_one_manager_queue_never_wait_behind_each_other,
        five_hundred_tasks_awaiting_one_manager_event_share_one_wait,
        awaited_set_calls_meet_a_childs_blocking_ones,
        awaited_list_array_and_dict_calls_say_what_blocking_ones_say,
        a_loop_of_awaited_manager_calls_lets_the_other_tasks_of_its_thread_run,
        many_awaited_connections_and_children_share_one_sleeping_thread,
        many_awaited_queues_events_and_semaphores_share_few_sleeping_threads,
        a_forked_child_awaits_with_a_reactor_of_its_own,
    ]);
}

/// Every future here can move to another thread of a runtime (tokio's
/// `spawn` asks for `Send`): checked when this file compiles.
#[allow(dead_code)]
fn futures_are_send(q: &Queue<u64>, conn: &mut Connection, p: &mut Process<u64, u64>) {
    fn send<T: Send>(_: T) {}
    send(q.get_async());
    send(q.put_async(&1));
    send(conn.recv_async::<u64>());
    send(conn.send_async(&1u64));
    send(p.join_async());
    let event = outlast_ipc::sync::Event::new().expect("an event");
    send(event.wait_async());
    let semaphore = outlast_ipc::sync::Semaphore::new(1).expect("a semaphore");
    send(semaphore.acquire_async());
    let lock = outlast_ipc::sync::Lock::new().expect("a lock");
    send(lock.lock_async());
    let barrier = outlast_ipc::sync::Barrier::new(2).expect("a barrier");
    send(barrier.wait_async());
    let cond = outlast_ipc::sync::Condition::new().expect("a condition");
    send(cond.lock_async());
    let held = cond.lock().map_err(|e| e.to_string()).expect("the lock");
    send(cond.wait_async(held));
}

/// The same for a manager's awaited calls (each borrows its proxy).
#[allow(dead_code)]
fn manager_futures_are_send(
    d: &outlast_ipc::manager::Dict<String, u64>,
    l: &outlast_ipc::manager::List<u64>,
    q: &outlast_ipc::manager::Queue<u64>,
    jq: &outlast_ipc::manager::JoinableQueue<u64>,
    e: &outlast_ipc::manager::Event,
    set: &outlast_ipc::manager::Set<u64>,
) {
    fn send<T: Send>(_: T) {}
    send(q.get_async());
    send(q.put_async(&1));
    send(jq.join_async());
    send(jq.task_done_async());
    send(e.wait_async());
    send(e.set_async());
    let key = String::new();
    send(d.get_async(&key));
    send(d.set_async(&key, &1));
    send(d.update_async([(&key, &1)]));
    send(l.append_async(&1));
    send(l.to_vec_async());
    send(d.items_async());
    send(d.len_async());
    send(set.add_async(&1));
    send(set.members_async());
}

/// How long any future here may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(60);

/// Puts `n` numbers from `from`, resting a moment every thousand, so
/// consumers catch up and wait.
fn produce((q, from, n): (Queue<u64>, u64, u64)) {
    for x in from..from + n {
        q.put(&x).expect("room in the queue");
        if x % 1_000 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Eight futures on one thread take 200,000 numbers from four producer
/// processes: each exactly once, then every future sees the end; and
/// while they wait they are woken, not polled in a loop.
fn awaited_gets_take_every_item_of_four_producers_exactly_once() {
    const EACH: u64 = 50_000;
    const PRODUCERS: u64 = 4;
    let q = Queue::<u64>::new(0).expect("a queue");
    let mut producers: Vec<_> = (0..PRODUCERS)
        .map(|p| Process::new(produce, (q.clone(), p * EACH, EACH)))
        .collect();
    for p in &mut producers {
        p.start().expect("a producer starts");
    }
    q.close(); // this handle only takes
    let consumers: Vec<Task<'_, Vec<u64>>> = (0..8)
        .map(|_| {
            let q = &q;
            let task: Task<'_, Vec<u64>> = Box::pin(async move {
                let mut got = Vec::new();
                loop {
                    match q.get_async().await {
                        Ok(x) => got.push(x),
                        Err(GetError::Disconnected) => return got,
                        Err(e) => panic!("a get failed: {e}"),
                    }
                }
            });
            task
        })
        .collect();
    let joined = join_all(consumers, PATIENCE);
    let mut all: Vec<u64> = joined
        .outputs
        .into_iter()
        .flat_map(|got| got.expect("every consumer saw the end"))
        .collect();
    all.sort_unstable();
    assert_eq!(all.len() as u64, PRODUCERS * EACH);
    assert!(all.iter().copied().eq(0..PRODUCERS * EACH), "each once");
    // Each item costs a poll or two; a future that woke itself in a loop
    // while waiting would cost millions.
    assert!(
        joined.polls < 4 * PRODUCERS * EACH,
        "{} polls for {} items",
        joined.polls,
        PRODUCERS * EACH
    );
    for mut p in producers {
        p.join().expect("a producer ended well");
    }
}

/// Puts 42 after a pause.
fn put_later((q, pause): (Queue<u64>, Duration)) {
    std::thread::sleep(pause);
    q.put(&42).expect("room");
}

/// A get dropped while it waits (a timeout ran out) takes nothing: the
/// item put later is there for the next get. (Python's usual answer,
/// `run_in_executor(None, q.get)` under `wait_for`, leaves a thread
/// blocked in `get` that takes it.)
fn a_get_cancelled_while_waiting_takes_nothing() {
    let q = Queue::<u64>::new(0).expect("a queue");
    let mut producer = Process::new(put_later, (q.clone(), Duration::from_millis(300)));
    producer.start().expect("start");
    q.close();
    {
        let mut get = q.get_async();
        assert!(poll_once(&mut get).is_pending(), "nothing put yet");
        // Dropped here: its wait with it.
    }
    let timed_out = block_on(q.get_async(), Duration::from_millis(50));
    assert!(timed_out.is_none(), "nothing put yet: {timed_out:?}");
    producer.join().expect("the producer ended well");
    assert_eq!(
        block_on(q.get_async(), PATIENCE).map(|r| r.ok()),
        Some(Some(42)),
        "the item waited for the next get"
    );
    let end = block_on(q.get_async(), PATIENCE).expect("ready");
    assert!(matches!(end, Err(GetError::Disconnected)), "{end:?}");
}

/// Puts three, then waits to be killed.
fn put_three_then_hang(q: Queue<u64>) {
    for x in 0..3 {
        q.put(&x).expect("room");
    }
    std::thread::sleep(Duration::from_secs(600));
}

/// A producer SIGKILLed never closes its handle: a future waiting on the
/// emptied queue still ends, with `Disconnected`.
fn a_waiting_get_learns_that_its_producer_was_killed() {
    let q = Queue::<u64>::new(0).expect("a queue");
    let mut producer = Process::new(put_three_then_hang, q.clone());
    producer.start().expect("start");
    q.close();
    let got: Vec<u64> = (0..3)
        .map(|_| {
            block_on(q.get_async(), PATIENCE)
                .expect("in time")
                .expect("an item")
        })
        .collect();
    assert_eq!(got, [0, 1, 2]);
    let mut waiting = Box::pin(q.get_async());
    assert!(matches!(poll_once(&mut waiting), Poll::Pending));
    producer.kill().expect("SIGKILL");
    let _ = producer.join();
    let end = block_on(waiting, PATIENCE).expect("the waiting get ended");
    assert!(matches!(end, Err(GetError::Disconnected)), "{end:?}");
}

/// Takes `n` items after a pause, and returns them.
fn take_later((q, n, pause): (Queue<u64>, usize, Duration)) -> Vec<u64> {
    std::thread::sleep(pause);
    (0..n).map(|_| q.get().expect("an item")).collect()
}

/// On a full queue (maxsize 2), a put dropped while it waits puts
/// nothing; a put awaited goes in once a consumer process makes room.
fn a_waiting_put_goes_in_once_there_is_room_and_a_cancelled_one_puts_nothing() {
    let q = Queue::<u64>::new(2).expect("a queue");
    q.put(&1).expect("room");
    q.put(&2).expect("room");
    {
        let mut cancelled = q.put_async(&99);
        assert!(poll_once(&mut cancelled).is_pending(), "the queue is full");
    }
    let mut consumer = Process::new(take_later, (q.clone(), 3, Duration::from_millis(200)));
    consumer.start().expect("start");
    block_on(q.put_async(&3), PATIENCE)
        .expect("in time")
        .expect("the put went in");
    assert_eq!(consumer.join().expect("the consumer"), [1, 2, 3]);
    assert!(q.is_empty(), "the cancelled put left nothing: {}", q.len());
}

/// Echoes every byte message back until the other end goes.
fn echo(mut conn: Connection) {
    while let Ok(message) = conn.recv_bytes() {
        if conn.send_bytes(&message).is_err() {
            return;
        }
    }
}

/// With a child that echoes: 2,000 values and then a 100 MB message
/// (larger than any socket buffer: its send waits for the child to read,
/// and the echo for its reply) come back whole, one future at a time;
/// the large message is sent from where it lies, not copied.
fn awaited_pipe_messages_cross_whole_both_ways_up_to_100_mb() {
    let (mut ours, theirs) = Pipe::duplex().expect("a pipe");
    let mut child = Process::new(echo, theirs);
    child.start().expect("start");
    let round_trips = async {
        for n in 0..2_000u64 {
            ours.send_async(&(n, format!("message {n}")))
                .await
                .expect("sent");
            let back: (u64, String) = ours.recv_async().await.expect("echoed");
            assert_eq!(back, (n, format!("message {n}")));
        }
        let big: Vec<u8> = (0..100u32 << 20).map(|i| (i % 251) as u8).collect();
        // Written from where it lies: copied into a frame of its own, it
        // touched 25,600 fresh pages where the future was polled.
        let before = tests::procfs::this_thread_minor_faults();
        ours.send_bytes_async(&big).await.expect("100 MB sent");
        let faults = tests::procfs::this_thread_minor_faults() - before;
        assert!(faults < 25_600 / 4, "sending touched {faults} fresh pages");
        let back = ours.recv_bytes_async().await.expect("100 MB echoed");
        assert!(back == big, "the 100 MB came back changed");
    };
    block_on(round_trips, PATIENCE).expect("in time");
    drop(ours);
    child.join().expect("the echo ended");
}

/// Sends back each number it receives, doubled, until the end of file,
/// through a second handle: a cloned end takes nothing in while its send
/// waits, so only our side can undo the wait.
fn echo_doubled(mut conn: Connection) {
    let Ok(mut sender) = conn.try_clone() else {
        return;
    };
    while let Ok(n) = conn.recv::<u64>() {
        if sender.send(&(n * 2)).is_err() {
            return;
        }
    }
}

/// Every task sent, then every result read, awaited: past the sockets'
/// buffers the child's sends wait for ours to be read and ours for the
/// child's; an awaited send takes the results in while it waits, as a
/// blocking one does.
fn awaited_sends_of_every_task_before_any_result_do_not_wait_for_each_other() {
    let (mut ours, theirs) = Pipe::duplex().expect("a pipe");
    let mut child = Process::new(echo_doubled, theirs);
    child.start().expect("start");
    let n = 300_000u64;
    let tasks_then_results = async {
        for i in 0..n {
            ours.send_async(&i).await.expect("sent");
        }
        let mut total = 0u64;
        for i in 0..n {
            let got: u64 = ours.recv_async().await.expect("a result");
            assert_eq!(got, i * 2, "in order");
            total += got;
        }
        total
    };
    assert_eq!(block_on(tasks_then_results, PATIENCE), Some(n * (n - 1)));
    drop(ours);
    child.join().expect("the echo ended");
}

/// Writes half a frame of `len` bytes by hand, pauses, then the rest.
fn write_in_halves((conn, len, pause): (Connection, usize, Duration)) {
    let mut frame = Vec::with_capacity(len + 16);
    frame.extend_from_slice(&outlast_ipc::codec::encode_header(len, usize::MAX).expect("a header"));
    frame.extend((0..len).map(|i| (i % 253) as u8));
    let half = frame.len() / 2;
    write_all(conn.as_raw_fd(), &frame[..half]);
    std::thread::sleep(pause);
    write_all(conn.as_raw_fd(), &frame[half..]);
}

fn write_all(fd: i32, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: writes from a live buffer to a descriptor this process owns.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        assert!(n > 0, "write: {}", std::io::Error::last_os_error());
        bytes = &bytes[n as usize..];
    }
}

/// A receive dropped after it had read half a frame loses nothing: the
/// half stays buffered, and the next receive returns the whole message.
fn a_receive_cancelled_inside_a_frame_keeps_its_first_half() {
    const LEN: usize = 1 << 20;
    let (mut ours, theirs) = Pipe::duplex().expect("a pipe");
    let mut writer = Process::new(write_in_halves, (theirs, LEN, Duration::from_millis(300)));
    writer.start().expect("start");
    // Until the first half is in: then the future reads it and waits.
    let deadline = Instant::now() + PATIENCE;
    while !ours.poll(Duration::from_millis(10)).expect("poll") {
        assert!(Instant::now() < deadline, "the first half never came");
    }
    {
        let mut recv = ours.recv_bytes_async();
        assert!(poll_once(&mut recv).is_pending(), "only half is there");
    }
    let whole = block_on(ours.recv_bytes_async(), PATIENCE)
        .expect("in time")
        .expect("the whole message");
    assert_eq!(whole.len(), LEN);
    assert!(whole.iter().enumerate().all(|(i, &b)| b == (i % 253) as u8));
    writer.join().expect("the writer ended well");
}

/// A connection whose receive waited (so a thread polled a duplicate of
/// its descriptor) and is then dropped: the peer sees the end of file at
/// once, not when that thread would have ended on its own (a second).
fn a_connection_dropped_after_a_wait_shows_its_end_at_once() {
    let (mut ours, mut theirs) = Pipe::duplex().expect("a pipe");
    {
        let mut recv = ours.recv_async::<u64>();
        assert!(poll_once(&mut recv).is_pending());
    }
    drop(ours);
    let end = theirs.recv_timeout::<u64>(Duration::from_millis(500));
    assert!(
        matches!(&end, Err(e) if e.is_disconnected()),
        "the peer did not see the end at once: {end:?}"
    );
}

/// A future waiting 2 s on an empty queue and one on a silent pipe (each
/// with a thread of its handle asleep for it) cost this process little
/// CPU: the threads sleep in the kernel, they do not spin.
fn idle_waits_leave_the_cpu_alone() {
    let q = Queue::<u64>::new(0).expect("a queue");
    let (mut ours, _theirs) = Pipe::duplex().expect("a pipe");
    let me = std::process::id();
    let before = tests::load::process_cpu(me);
    let waiting: Vec<Task<'_, bool>> = vec![
        Box::pin(async { q.get_async().await.is_ok() }),
        Box::pin(async { ours.recv_async::<u64>().await.is_ok() }),
    ];
    let started = Instant::now();
    let joined = join_all(waiting, Duration::from_secs(2));
    assert!(started.elapsed() >= Duration::from_secs(2));
    let used = Duration::from_nanos(tests::load::process_cpu(me) - before);
    eprintln!(
        "two futures waiting 2 s: {used:?} on a CPU, {} polls",
        joined.polls
    );
    assert!(joined.outputs.iter().all(Option::is_none), "nothing came");
    assert!(joined.polls < 50, "{} polls while waiting", joined.polls);
    assert!(
        used < Duration::from_millis(100),
        "two waiting futures were on a CPU for {used:?} of 2 s"
    );
}

/// Returns `x + 1` after a pause.
fn add_one_later((x, pause): (u64, Duration)) -> u64 {
    std::thread::sleep(pause);
    x + 1
}

/// A report of a megabyte or more, awaited, is read and decoded on a
/// thread of its own (a 100 MB one held a current-thread tokio runtime
/// for 54-78 ms); a join future dropped meanwhile takes nothing.
fn a_large_awaited_join_is_read_off_the_polling_thread() {
    use outlast_ipc::{JoinError, StartMethod};
    const LARGE: usize = 2 << 20;
    let here = tests::traced::this_thread();
    for method in StartMethod::ALL {
        let mut child = Process::new(traced, LARGE).start_method(method);
        child.start().expect("start");
        let got = block_on(child.join_async(), PATIENCE).expect("in time");
        let got = got.expect("its result");
        assert_eq!(got.bytes.len(), LARGE, "{method:?}");
        assert!(got.bytes.iter().all(|&b| b == 5));
        assert_eq!(got.decoded_on, "outlast-join", "{method:?}");
        assert!(matches!(child.join(), Err(JoinError::AlreadyJoined(_))));

        let mut child = Process::new(traced, 10).start_method(method);
        child.start().expect("start");
        let got = block_on(child.join_async(), PATIENCE).expect("in time");
        assert_eq!(got.expect("its result").decoded_on, here, "{method:?}");
    }
    let mut child = Process::new(traced, LARGE);
    child.start().expect("start");
    while child.is_alive() {
        std::thread::sleep(Duration::from_millis(10));
    }
    {
        let mut join = child.join_async();
        assert!(poll_once(&mut join).is_pending(), "reading on its thread");
    }
    let got = child.join().expect("the result is still there");
    assert_eq!(got.bytes.len(), LARGE);
    assert_eq!(got.decoded_on, here);
}

/// Puts a large item, then a small one.
fn put_large_then_small((q, len): (Queue<tests::traced::Traced>, usize)) -> bool {
    q.put(&traced(len)).is_ok() && q.put(&traced(10)).is_ok()
}

/// A large queue item, awaited, is decoded on a thread of its own, both
/// one too large for the ring (it comes in a memfd of its own; a 100 MB
/// one held the polling thread for 70 ms) and one inside the ring (a
/// 50 MB one held it for 30 ms); a get future dropped meanwhile leaves it
/// to the handle's next get, in order, whether that get blocks or awaits.
fn a_large_awaited_queue_item_is_decoded_off_the_polling_thread() {
    const LARGE: usize = 2 << 20;
    let here = tests::traced::this_thread();
    for (ring, travels) in [(64 * 1024, "beside the ring"), (16 << 20, "in the ring")] {
        let q = Queue::<tests::traced::Traced>::with_ring_bytes(0, ring).expect("a queue");
        let mut producer = Process::new(put_large_then_small, (q.clone(), LARGE));
        producer.start().expect("start");
        let large = block_on(q.get_async(), PATIENCE).expect("in time");
        let large = large.expect("an item");
        assert_eq!(large.bytes.len(), LARGE, "{travels}");
        assert!(large.bytes.iter().all(|&b| b == 5), "{travels}");
        assert_eq!(large.decoded_on, "outlast-decode", "{travels}");
        let small = block_on(q.get_async(), PATIENCE).expect("in time");
        assert_eq!(small.expect("an item").decoded_on, here, "{travels}");
        assert!(producer.join().expect("join"));

        for next_get_awaits in [false, true] {
            let mut producer = Process::new(put_large_then_small, (q.clone(), LARGE));
            producer.start().expect("start");
            assert!(producer.join().expect("join"), "both are in");
            {
                let mut get = q.get_async();
                assert!(
                    poll_once(&mut get).is_pending(),
                    "{travels}: decoding on its thread"
                );
            }
            let (first, second) = match next_get_awaits {
                false => (q.get_timeout(PATIENCE), q.get_timeout(PATIENCE)),
                true => {
                    let first = block_on(q.get_async(), PATIENCE).expect("in time");
                    let second = block_on(q.get_async(), PATIENCE).expect("in time");
                    (
                        Ok(first.expect("the large item")),
                        Ok(second.expect("then the small one")),
                    )
                }
            };
            let first = first.expect("the large item is still there");
            assert_eq!(first.bytes.len(), LARGE, "{travels}");
            assert!(first.bytes.iter().all(|&b| b == 5), "{travels}");
            if next_get_awaits {
                assert_eq!(first.decoded_on, "outlast-decode", "{travels}");
            }
            let second = second.expect("then the small one");
            assert_eq!(second.bytes.len(), 10, "{travels}");
        }
    }
}

/// Takes `n` items, the first after `pause`: their lengths and whether
/// each was all fives.
fn take_traced(
    (q, n, pause): (Queue<tests::traced::Traced>, usize, Duration),
) -> Vec<(usize, bool)> {
    std::thread::sleep(pause);
    (0..n)
        .map(|_| q.get_timeout(PATIENCE).expect("an item"))
        .map(|item| (item.bytes.len(), item.bytes.iter().all(|&b| b == 5)))
        .collect()
}

/// Puts a large item, then a small one, into a joinable queue.
fn put_large_then_small_joinable(
    (q, len): (
        outlast_ipc::queue::JoinableQueue<tests::traced::Traced>,
        usize,
    ),
) -> bool {
    q.put(&traced(len)).is_ok() && q.put(&traced(10)).is_ok()
}

/// Awaits one item of a joinable queue, then dies by `SIGKILL` before
/// marking it done.
fn take_awaited_then_die(q: outlast_ipc::queue::JoinableQueue<tests::traced::Traced>) {
    q.close();
    let _taken = block_on(q.get_async(), PATIENCE);
    // SAFETY: signals this very process.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}

/// A `JoinableQueue`'s large item inside its ring, awaited, is decoded on
/// a thread of its own too (it was decoded where the future was polled:
/// a 50 MB one held the executor 30 ms), and the take is counted: marked
/// done, `join` finds nothing lost, also when the future was dropped
/// while the item was decoded and the handle's next get gave it; taken so
/// by a process killed before marking it, `join` says it was lost.
fn a_large_awaited_joinable_queue_item_is_decoded_off_the_polling_thread_and_counted() {
    use outlast_ipc::queue::{JoinQueueTimeoutError, JoinableQueue, LostItems};
    const LARGE: usize = 2 << 20;
    let here = tests::traced::this_thread();
    let q = JoinableQueue::<tests::traced::Traced>::with_ring_bytes(0, 16 << 20).expect("a queue");
    for dropped in [false, true] {
        let mut producer = Process::new(put_large_then_small_joinable, (q.clone(), LARGE));
        producer.start().expect("start");
        assert!(producer.join().expect("join"), "both are in");
        if dropped {
            let mut get = q.get_async();
            assert!(poll_once(&mut get).is_pending(), "decoding on its thread");
        }
        let large = block_on(q.get_async(), PATIENCE).expect("in time");
        let large = large.expect("the large item");
        assert_eq!(large.bytes.len(), LARGE, "dropped: {dropped}");
        assert!(large.bytes.iter().all(|&b| b == 5), "dropped: {dropped}");
        assert_eq!(large.decoded_on, "outlast-decode", "dropped: {dropped}");
        let small = block_on(q.get_async(), PATIENCE).expect("in time");
        let small = small.expect("the small item");
        assert_eq!((small.bytes.len(), small.decoded_on), (10, here.clone()));
        assert_eq!(q.unfinished(), 2, "dropped: {dropped}");
        q.task_done().expect("the large one done");
        q.task_done().expect("the small one done");
        match q.join_timeout(PATIENCE) {
            Ok(()) => {}
            Err(e) => panic!("dropped: {dropped}: {e}"),
        }
        assert!(q.task_done().is_err(), "a third task_done was refused");
    }

    q.put(&traced(LARGE)).expect("put");
    let mut killed = Process::new(take_awaited_then_die, q.clone());
    killed.start().expect("start");
    let killed_pid = killed.pid().expect("a pid");
    assert!(killed.join().is_err(), "it was killed");
    assert_eq!(
        q.join_timeout(PATIENCE),
        Err(JoinQueueTimeoutError::Lost(LostItems {
            items: 1,
            pid: killed_pid
        }))
    );
}

/// An awaited put of an item too large for the ring writes it into its
/// memfd once, as `put_async` encodes it, even while the queue is full:
/// the polls write none of its bytes (each poll of a full queue wrote all
/// 8 MB again, and a 100 MB one held the executor 50 ms longer than its
/// encoding). Dropped before it is in, it puts nothing; a closed handle
/// and a message over the cap are refused.
fn a_large_awaited_put_is_written_into_its_memfd_once() {
    use tests::procfs::this_thread_written;
    const LARGE: usize = 8 << 20;
    let q = Queue::<tests::traced::Traced>::with_ring_bytes(1, 64 * 1024).expect("a queue");
    let item = traced(LARGE);

    // Into a queue with room; a child takes it.
    let mut taker = Process::new(take_traced, (q.clone(), 1, Duration::ZERO));
    taker.start().expect("start");
    let put = q.put_async(&item);
    let before = this_thread_written();
    block_on(put, PATIENCE).expect("in time").expect("put");
    let written = this_thread_written() - before;
    assert!(
        written < 1 << 20,
        "the polling thread wrote {written} bytes"
    );
    assert_eq!(taker.join().expect("join"), [(LARGE, true)]);

    // Into a full queue (`maxsize` 1): it waits, polled again and again,
    // and goes in after the small item is taken.
    q.put(&traced(10)).expect("room");
    let mut taker = Process::new(take_traced, (q.clone(), 2, Duration::from_millis(300)));
    taker.start().expect("start");
    let mut put = std::pin::pin!(q.put_async(&item));
    let before = this_thread_written();
    let mut polls = 0;
    let deadline = Instant::now() + PATIENCE;
    let put = loop {
        polls += 1;
        if let Poll::Ready(put) = poll_once(&mut put) {
            break put;
        }
        assert!(Instant::now() < deadline, "the put never went in");
        std::thread::sleep(Duration::from_millis(5));
    };
    put.expect("put once there was room");
    let written = this_thread_written() - before;
    assert!(polls > 3, "the queue was full for {polls} polls");
    assert!(
        written < 1 << 20,
        "the polling thread wrote {written} bytes"
    );
    assert_eq!(taker.join().expect("join"), [(10, true), (LARGE, true)]);

    // Dropped at its first poll (unless that put it in), and while the
    // queue is full.
    let went_in = match poll_once(&mut q.put_async(&item)) {
        Poll::Pending => false,
        Poll::Ready(put) => put.is_ok(),
    };
    if went_in {
        let got = q.get_timeout(PATIENCE).expect("the put that went in");
        assert_eq!(got.bytes.len(), LARGE);
    }
    q.put(&traced(10)).expect("room");
    {
        let mut put = q.put_async(&item);
        let deadline = Instant::now() + Duration::from_millis(200);
        while Instant::now() < deadline {
            assert!(poll_once(&mut put).is_pending(), "the queue is full");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert_eq!(
        q.get_timeout(PATIENCE).expect("the small item").bytes.len(),
        10
    );
    assert!(
        matches!(
            q.get_timeout(Duration::from_millis(300)),
            Err(outlast_ipc::queue::GetTimeoutError::Empty)
        ),
        "the dropped puts put nothing"
    );

    // Refused before a copy.
    q.set_max_message_bytes(LARGE / 2);
    let refused = block_on(q.put_async(&item), PATIENCE).expect("in time");
    assert!(
        matches!(refused, Err(outlast_ipc::queue::PutError::TooLarge { .. })),
        "{refused:?}"
    );
    q.set_max_message_bytes(LARGE * 2);
    q.close();
    let refused = block_on(q.put_async(&item), PATIENCE).expect("in time");
    assert!(
        matches!(refused, Err(outlast_ipc::queue::PutError::Closed)),
        "{refused:?}"
    );
}

/// A large value an awaited manager call sets goes out from where it
/// lies, not copied into its request where the future is polled, over a
/// socket or over TCP (each set of 40 MB touched 40 MB of fresh pages on
/// the polling thread; a
/// 100 MB one held the executor 50 ms more than its encoding); one an
/// awaited read gives (a dict's, a list's, a value's `get_async`) is
/// decoded on a thread of its own (a 100 MB one held it 52 ms), and so
/// are large items that a dict's `items_async` or `keys_async`, a list's
/// `to_vec_async` or an array's `slice_async` give. A small one, and one
/// a `pop` takes out (dropped while decoding elsewhere, it would be
/// lost), are decoded where the future is polled.
fn large_awaited_manager_values_are_neither_copied_nor_decoded_on_the_polling_thread() {
    use outlast_ipc::manager::Manager;
    use tests::procfs::this_thread_minor_faults;
    use tests::traced::Traced;
    // Over glibc's largest mmap threshold: every such buffer is fresh pages.
    const LARGE: usize = 40 << 20;
    let here = tests::traced::this_thread();
    // Over loopback TCP too, where the frame's tag covers the whole value:
    // it was copied into one buffer to be hashed where the future was
    // polled (a 100 MB set held the executor's thread 270-363 ms).
    let address = "127.0.0.1:0".parse().expect("an address");
    let remote = Manager::serve(&address, b"a key of ours").expect("a TCP manager");
    let rd = remote.dict::<String, Traced>().expect("a dict");
    let manager = Manager::start().expect("a manager");
    let d = manager.dict::<String, Traced>().expect("a dict");
    let key = "large".to_string();

    for (round, d) in [&rd, &d, &d].into_iter().enumerate() {
        let value = traced(LARGE);
        let set = d.set_async(&key, &value);
        let before = this_thread_minor_faults();
        block_on(set, PATIENCE).expect("in time").expect("set");
        let faults = this_thread_minor_faults() - before;
        let pages = (LARGE / 4096) as u64;
        assert!(
            faults < pages / 4,
            "round {round}: the polling thread touched {faults} fresh pages sending {pages}"
        );
        let got = block_on(d.get_async(&key), PATIENCE).expect("in time");
        let got = got.expect("get").expect("the value");
        assert_eq!(got.bytes.len(), LARGE);
        assert!(got.bytes.iter().all(|&b| b == 5));
        assert_eq!(got.decoded_on, "outlast-decode", "round {round}");
    }

    d.set(&"small".into(), &traced(10)).expect("set");
    let small = block_on(d.get_async(&"small".into()), PATIENCE).expect("in time");
    assert_eq!(small.expect("get").expect("the value").decoded_on, here);
    // Every item of a large listing is decoded off the polling thread, the
    // small one with the large (one thread for the whole reply).
    let decoded_on = |items: Vec<Traced>| -> Vec<(usize, String)> {
        let mut seen: Vec<_> = items
            .into_iter()
            .map(|t| (t.bytes.len(), t.decoded_on))
            .collect();
        seen.sort();
        seen
    };
    let items = block_on(d.items_async(), PATIENCE).expect("in time");
    let values = items.expect("items").into_iter().map(|(_, v)| v).collect();
    let off = "outlast-decode".to_string();
    assert_eq!(
        decoded_on(values),
        [(10, off.clone()), (LARGE, off.clone())]
    );
    let large_keys = manager.dict::<Traced, u8>().expect("a dict");
    large_keys.set(&traced(LARGE), &1).expect("set");
    let keys = block_on(large_keys.keys_async(), PATIENCE).expect("in time");
    assert_eq!(decoded_on(keys.expect("keys")), [(LARGE, off.clone())]);
    let small_items = manager.dict::<String, Traced>().expect("a dict");
    small_items.set(&"small".into(), &traced(10)).expect("set");
    let items = block_on(small_items.items_async(), PATIENCE).expect("in time");
    assert_eq!(items.expect("items")[0].1.decoded_on, here);

    let l = manager.list::<Traced>().expect("a list");
    l.append(&traced(LARGE)).expect("append");
    let at = block_on(l.get_async(0), PATIENCE).expect("in time");
    assert_eq!(
        at.expect("get").expect("item 0").decoded_on,
        "outlast-decode"
    );
    let all = block_on(l.to_vec_async(), PATIENCE).expect("in time");
    assert_eq!(decoded_on(all.expect("to_vec")), [(LARGE, off.clone())]);
    let a = manager
        .array(&[traced(10), traced(LARGE)])
        .expect("an array");
    let both = block_on(a.slice_async(0..2), PATIENCE).expect("in time");
    assert_eq!(
        decoded_on(both.expect("slice")),
        [(10, off.clone()), (LARGE, off.clone())]
    );
    let first = block_on(a.slice_async(0..1), PATIENCE).expect("in time");
    assert_eq!(decoded_on(first.expect("slice")), [(10, here.clone())]);
    let popped = block_on(l.pop_async(), PATIENCE).expect("in time");
    let popped = popped.expect("pop").expect("the item");
    assert_eq!(
        (popped.bytes.len(), popped.decoded_on.as_str()),
        (LARGE, here.as_str())
    );
    assert_eq!(l.len().expect("len"), 0);

    let v = manager.value(&traced(LARGE)).expect("a value");
    let got = block_on(v.get_async(), PATIENCE).expect("in time");
    assert_eq!(got.expect("get").decoded_on, "outlast-decode");
}

/// Two connected ends: a pipe's, or an authenticated loopback TCP
/// connection's (whose frames carry tags).
fn connected(transport: &str) -> (Connection, Connection) {
    if transport == "pipe" {
        return Pipe::duplex().expect("a pipe");
    }
    let address = "127.0.0.1:0".parse().expect("an address");
    let listener = outlast_ipc::net::Listener::bind(&address, b"key").expect("a listener");
    let address = listener.address().clone();
    let connecting = std::thread::spawn(move || outlast_ipc::net::connect(&address, b"key"));
    let ours = listener.accept_timeout(PATIENCE).expect("accepted");
    let theirs = connecting.join().expect("no panic").expect("connected");
    (ours, theirs)
}

/// A large frame, awaited, is opened and decoded on a thread of its own
/// (a 50 MB one held the polling thread 30 ms), on a pipe and on an
/// authenticated TCP connection; a receive dropped meanwhile leaves the
/// frame for the next receive, in order, and the tags' count stays right.
fn a_large_awaited_frame_is_decoded_off_the_polling_thread() {
    use tests::traced::Traced;
    const LARGE: usize = 2 << 20;
    let here = tests::traced::this_thread();
    for transport in ["pipe", "tcp"] {
        let (mut ours, mut theirs) = connected(transport);
        let (all_of_the_second_sent, sent) = std::sync::mpsc::channel();
        let sender = std::thread::spawn(move || {
            let send = |theirs: &mut Connection, len: usize| theirs.send(&traced(len));
            send(&mut theirs, LARGE).expect("sent");
            send(&mut theirs, 10).expect("sent");
            send(&mut theirs, LARGE).expect("sent");
            let _ = all_of_the_second_sent.send(());
            send(&mut theirs, 10).expect("sent");
            theirs.send_bytes(&vec![7u8; LARGE]).expect("sent");
            send(&mut theirs, 10).expect("sent");
            theirs
        });
        let large = block_on(ours.recv_async::<Traced>(), PATIENCE).expect("in time");
        let large = large.expect("a frame");
        assert_eq!(large.bytes.len(), LARGE, "{transport}");
        assert!(large.bytes.iter().all(|&b| b == 5), "{transport}");
        assert_eq!(large.decoded_on, "outlast-decode", "{transport}");
        let small = block_on(ours.recv_async::<Traced>(), PATIENCE).expect("in time");
        assert_eq!(small.expect("a frame").decoded_on, here, "{transport}");

        // Receives dropped after one poll: once the whole second frame is
        // sent, the next poll finds it whole and starts its thread.
        loop {
            let whole = sent.try_recv().is_ok();
            let mut recv = ours.recv_async::<Traced>();
            assert!(
                poll_once(&mut recv).is_pending(),
                "{transport}: a thread reads it"
            );
            drop(recv);
            if whole {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let second = ours
            .recv_timeout::<Traced>(PATIENCE)
            .expect("the large one, left");
        assert_eq!(second.bytes.len(), LARGE, "{transport}");
        assert!(second.bytes.iter().all(|&b| b == 5), "{transport}");
        let small = ours
            .recv_timeout::<Traced>(PATIENCE)
            .expect("then the small one");
        assert_eq!(small.bytes.len(), 10, "{transport}");
        let bytes = block_on(ours.recv_bytes_async(), PATIENCE).expect("in time");
        assert!(bytes.expect("a frame") == vec![7u8; LARGE], "{transport}");
        let last = block_on(ours.recv_async::<Traced>(), PATIENCE).expect("in time");
        assert_eq!(last.expect("the last frame").bytes.len(), 10, "{transport}");
        drop(sender.join().expect("the sender ended"));
    }
}

/// A loop that awaits items that are already there gives the executor its
/// thread back now and then, so the other tasks of that thread run while
/// it drains (a 1 ms ticker waited 42-68 ms behind a loop over a lazy
/// map's 2 M results; behind a queue's, as long as items came).
fn a_loop_of_ready_gets_lets_the_other_tasks_of_its_thread_run() {
    const ITEMS: u64 = 100_000;
    let q = Queue::<u64>::new(0).expect("a queue");
    for x in 0..ITEMS {
        q.put(&x).expect("room");
    }
    let ticks = std::cell::Cell::new(0u64);
    let drained = std::cell::Cell::new(false);
    let drain: Task<'_, u64> = Box::pin(async {
        let mut sum = 0;
        for _ in 0..ITEMS {
            sum += q.get_async().await.expect("an item");
        }
        assert_eq!(sum, ITEMS * (ITEMS - 1) / 2);
        drained.set(true);
        ticks.get()
    });
    let ticker: Task<'_, u64> = Box::pin(std::future::poll_fn(|cx| {
        if drained.get() {
            return Poll::Ready(0);
        }
        ticks.set(ticks.get() + 1);
        cx.waker().wake_by_ref();
        Poll::Pending
    }));
    let joined = join_all(vec![drain, ticker], PATIENCE);
    let ticks_while_draining = joined.outputs[0].expect("drained in time");
    assert!(
        ticks_while_draining > 0,
        "the other task never ran while {ITEMS} items were taken"
    );
}

/// A loop of awaited manager calls, each answered within the poll that
/// sent it (the lane's spin), still gives the executor's thread to the
/// other task at least every half millisecond: at most 1,000 calls in a
/// row (a round trip takes a microsecond at the least; 160-170 here in a
/// debug build). Before, only a
/// reply slow enough to be waited for gave it back: thousands of calls
/// in a row on an idle machine, and a ticker of a current-thread tokio
/// runtime waited 16 ms.
fn a_loop_of_awaited_manager_calls_lets_the_other_tasks_of_its_thread_run() {
    const CALLS: u64 = 20_000;
    let manager = outlast_ipc::manager::Manager::start().expect("a manager");
    let d = manager.dict::<u64, u64>().expect("a dict");
    let made = std::cell::Cell::new(0u64);
    let done = std::cell::Cell::new(false);
    let calls: Task<'_, u64> = Box::pin(async {
        for i in 0..CALLS {
            d.set_async(&(i % 10), &i).await.expect("a set");
            made.set(made.get() + 1);
        }
        done.set(true);
        0
    });
    // The most calls made between two of its turns.
    let (mut seen, mut most) = (0u64, 0u64);
    let ticker: Task<'_, u64> = Box::pin(std::future::poll_fn(|cx| {
        let now = made.get();
        most = most.max(now - seen);
        seen = now;
        if done.get() {
            return Poll::Ready(most);
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }));
    let joined = join_all(vec![calls, ticker], PATIENCE);
    let in_a_row = joined.outputs[1].expect("done in time");
    assert!(
        in_a_row <= 1_000,
        "{in_a_row} awaited calls in a row without the other task"
    );
}

/// Puts `n` items, numbered in their first bytes, every third one large.
fn put_numbered((q, n): (Queue<tests::traced::Traced>, usize)) -> bool {
    (0..n).all(|i| {
        let mut item = traced(if i % 3 == 0 { 1 << 20 } else { 16 });
        item.bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
        q.put(&item).is_ok()
    })
}

/// Large and small items in the ring, taken by awaited gets of which
/// every other one is dropped after its first poll (while its thread may
/// still be taking the item), and by blocking gets: every item exactly
/// once, in the order put.
fn awaited_gets_dropped_in_the_middle_of_large_items_lose_and_reorder_nothing() {
    const ITEMS: usize = 60;
    let q = Queue::<tests::traced::Traced>::with_ring_bytes(0, 64 << 20).expect("a queue");
    let mut producer = Process::new(put_numbered, (q.clone(), ITEMS));
    producer.start().expect("start");
    // All in first (20 MiB), so each get finds its item at hand.
    assert!(producer.join().expect("join"));
    let number = |item: &tests::traced::Traced| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&item.bytes[..8]);
        u64::from_le_bytes(b) as usize
    };
    let mut got = Vec::new();
    let mut dropped_while_taking = 0;
    for turn in 0.. {
        if got.len() == ITEMS {
            break;
        }
        assert!(turn < 100 * ITEMS, "the items stopped coming: {got:?}");
        match turn % 4 {
            0 | 2 => {
                let mut get = q.get_async();
                match poll_once(&mut get) {
                    Poll::Ready(item) => got.push(number(&item.expect("an item"))),
                    Poll::Pending => dropped_while_taking += 1,
                }
            }
            1 => {
                let item = block_on(q.get_async(), PATIENCE).expect("in time");
                got.push(number(&item.expect("an item")));
            }
            _ => got.push(number(&q.get_timeout(PATIENCE).expect("an item"))),
        }
    }
    assert_eq!(got, (0..ITEMS).collect::<Vec<_>>());
    assert!(
        dropped_while_taking > 0,
        "no get was dropped with an item at hand"
    );
}

/// An awaited join gives the child's result once it ends, in each start
/// method; one dropped while the child runs changes nothing; a killed
/// child's join says so.
fn an_awaited_join_gives_the_result_in_every_start_method() {
    use outlast_ipc::{JoinError, StartMethod};
    // A future waits all along, so its thread is there at every fork:
    // fork does not count it (it refused before).
    let q = Queue::<u64>::new(0).expect("a queue");
    let mut waiting = q.get_async();
    assert!(poll_once(&mut waiting).is_pending());
    let waited_just_now = || assert!(waiting_threads() > 0, "a waiting thread is there");
    for method in [
        StartMethod::Fork,
        StartMethod::Spawn,
        StartMethod::ForkServer,
    ] {
        let mut child =
            Process::new(add_one_later, (41, Duration::from_millis(300))).start_method(method);
        waited_just_now();
        child.start().expect("start");
        {
            let mut join = child.join_async();
            assert!(
                poll_once(&mut join).is_pending(),
                "{method:?}: still running"
            );
        }
        let got = block_on(child.join_async(), PATIENCE).expect("in time");
        assert_eq!(got.ok(), Some(42), "{method:?}");

        let mut doomed =
            Process::new(add_one_later, (0, Duration::from_secs(600))).start_method(method);
        waited_just_now();
        doomed.start().expect("start");
        let pid = doomed.pid().expect("a pid") as i32;
        let mut join = Box::pin(doomed.join_async());
        assert!(poll_once(&mut join).is_pending());
        // SAFETY: a signal to our own child, not yet reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        let end = block_on(join, PATIENCE).expect("in time");
        assert!(
            matches!(&end, Err(JoinError::Signaled(s)) if s.code() == -9),
            "{method:?}: {end:?}"
        );
    }
    assert!(poll_once(&mut waiting).is_pending(), "nothing was put");
}

/// This process's threads that wait for futures (named `ipcw-...`).
fn waiting_threads() -> usize {
    waiting_thread_dirs().len()
}

/// `/proc/self/task/TID` of each thread that waits for futures.
fn waiting_thread_dirs() -> Vec<std::path::PathBuf> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
        .map(|t| t.path())
        .filter(|t| std::fs::read_to_string(t.join("comm")).is_ok_and(|n| n.starts_with("ipcw-")))
        .collect()
}

/// How many times each thread that waits for futures has woken so far
/// (context switches, voluntary or not, per `/proc/self/task/TID/status`),
/// by thread.
fn waiting_threads_wakeups() -> std::collections::HashMap<std::path::PathBuf, u64> {
    waiting_thread_dirs()
        .into_iter()
        .filter_map(|t| {
            let status = std::fs::read_to_string(t.join("status")).ok()?;
            let switches = status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split(':').nth(1)?.trim().parse::<u64>().ok())
                .sum();
            Some((t, switches))
        })
        .collect()
}

/// Wake-ups since `before` of the threads there then and now: a thread
/// that ended meanwhile (an earlier case's, after its idle second) takes
/// its count with it, and must not hide the others'.
fn wakeups_since(before: &std::collections::HashMap<std::path::PathBuf, u64>) -> u64 {
    waiting_threads_wakeups()
        .into_iter()
        .filter_map(|(t, now)| Some(now.saturating_sub(*before.get(&t)?)))
        .sum()
}

/// Joins `tasks` while another thread lets them wait half a second, then
/// counts the threads that wait for futures and their wake-ups over a
/// second with nothing moving, then calls `answer` to make every task
/// ready: each task's output, the threads, the wake-ups.
fn idle_second_then<T>(
    tasks: Vec<Task<'_, T>>,
    answer: impl FnOnce() + Send + 'static,
) -> (Vec<T>, usize, u64) {
    let looker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        let threads = waiting_threads();
        let before = waiting_threads_wakeups();
        std::thread::sleep(Duration::from_secs(1));
        let wakeups = wakeups_since(&before);
        answer();
        (threads, wakeups)
    });
    let joined = join_all(tasks, PATIENCE);
    let (threads, wakeups) = looker.join().expect("the looker ended well");
    let outputs = joined
        .outputs
        .into_iter()
        .map(|v| v.expect("every future ready"))
        .collect();
    (outputs, threads, wakeups)
}

/// Waits for one number on `conn` and returns it plus one.
fn answer_plus_one(mut conn: Connection) -> u64 {
    conn.recv::<u64>().expect("a number") + 1
}

/// 300 connections and 30 child processes (spawned and from the fork
/// server), each awaited by a future: one thread of ours waits for all of
/// them, asleep while nothing moves, and every future gets its own value.
/// (A thread per awaited descriptor, each polling every 10 ms, before:
/// 330 threads and some 33,000 wake-ups a second.)
fn many_awaited_connections_and_children_share_one_sleeping_thread() {
    use outlast_ipc::StartMethod;
    const CONNECTIONS: u64 = 300;
    const CHILDREN: u64 = 30;
    let (ours, mut theirs): (Vec<Connection>, Vec<Connection>) = (0..CONNECTIONS)
        .map(|_| Pipe::duplex().expect("a pipe"))
        .unzip();
    let mut to_children = Vec::new();
    let mut children: Vec<Process<Connection, u64>> = (0..CHILDREN)
        .map(|i| {
            let (to_child, childs) = Pipe::duplex().expect("a pipe");
            to_children.push(to_child);
            let method = if i % 3 == 0 {
                StartMethod::Spawn
            } else {
                StartMethod::ForkServer
            };
            let mut child = Process::new(answer_plus_one, childs).start_method(method);
            child.start().expect("a child starts");
            child
        })
        .collect();
    let mut tasks: Vec<Task<'_, u64>> = Vec::new();
    for conn in theirs.iter_mut() {
        tasks.push(Box::pin(async move {
            conn.recv_async::<u64>().await.expect("a number")
        }));
    }
    for child in children.iter_mut() {
        tasks.push(Box::pin(async move {
            child.join_async().await.expect("the child's answer")
        }));
    }
    // Another thread looks while every future waits, then answers all.
    let (got, threads, wakeups) = idle_second_then(tasks, move || {
        for (i, mut conn) in ours.into_iter().enumerate() {
            conn.send(&(i as u64)).expect("sent");
        }
        for (i, mut conn) in to_children.into_iter().enumerate() {
            conn.send(&(1_000 + i as u64)).expect("sent to a child");
        }
    });
    let expected: Vec<u64> = (0..CONNECTIONS)
        .chain((0..CHILDREN).map(|i| 1_001 + i))
        .collect();
    assert_eq!(got, expected);
    eprintln!(
        "{} awaited: {threads} waiting threads, {wakeups} wake-ups in 1 s idle",
        CONNECTIONS + CHILDREN
    );
    // One reactor; a queue's watch from an earlier case may linger a second.
    assert!(threads <= 3, "{threads} threads wait for 330 futures");
    assert!(
        wakeups < 100,
        "{wakeups} wake-ups in 1 s with nothing moving"
    );
}

/// Puts `first + i` into queue `i`, sets each event and releases each
/// semaphore, from another process.
#[allow(clippy::type_complexity)]
fn answer_every_object(
    (first, queues, events, units): (
        u64,
        Vec<Queue<u64>>,
        Vec<outlast_ipc::sync::Event>,
        Vec<outlast_ipc::sync::Semaphore>,
    ),
) {
    for (i, q) in queues.iter().enumerate() {
        q.put(&(first + i as u64)).expect("room");
    }
    for event in &events {
        event.set();
    }
    for unit in &units {
        unit.release();
    }
}

/// 200 queues, 30 events and 30 semaphores, each awaited by a future:
/// the watcher threads (127 objects each, in one `futex_waitv`) sleep
/// through a second with nothing moving but their liveness looks, and
/// each future gets exactly its object's answer from another process.
/// Before: a thread per object, each woken every 10 ms (19,803 wake-ups
/// in 2 s for 100 queues).
fn many_awaited_queues_events_and_semaphores_share_few_sleeping_threads() {
    use outlast_ipc::sync::{Event, Semaphore};
    const QUEUES: usize = 200;
    const OTHERS: usize = 30;
    let queues: Vec<Queue<u64>> = (0..QUEUES)
        .map(|_| Queue::new(0).expect("a queue"))
        .collect();
    let events: Vec<Event> = (0..OTHERS)
        .map(|_| Event::new().expect("an event"))
        .collect();
    let units: Vec<Semaphore> = (0..OTHERS)
        .map(|_| Semaphore::new(0).expect("a semaphore"))
        .collect();
    let mut tasks: Vec<Task<'_, u64>> = Vec::new();
    for q in &queues {
        tasks.push(Box::pin(
            async move { q.get_async().await.expect("a number") },
        ));
    }
    for event in &events {
        tasks.push(Box::pin(async move {
            event.wait_async().await.expect("set");
            1
        }));
    }
    for unit in &units {
        tasks.push(Box::pin(async move {
            unit.acquire_async().await.expect("a unit");
            2
        }));
    }
    // Several answering processes: one's handles must fit a message.
    let mut answers = vec![(0, Vec::new(), events.clone(), units.clone())];
    for (n, chunk) in queues.chunks(50).enumerate() {
        answers.push((
            1_000 + 50 * n as u64,
            chunk.to_vec(),
            Vec::new(),
            Vec::new(),
        ));
    }
    let (got, threads, wakeups) = idle_second_then(tasks, move || {
        for answer in answers {
            let mut answerer = Process::new(answer_every_object, answer);
            answerer.start().expect("an answering process starts");
            answerer.join().expect("it answered");
        }
    });
    let expected: Vec<u64> = (0..QUEUES as u64)
        .map(|i| 1_000 + i)
        .chain(std::iter::repeat_n(1, OTHERS))
        .chain(std::iter::repeat_n(2, OTHERS))
        .collect();
    assert_eq!(got, expected);
    assert!(queues.iter().all(|q| q.try_get().is_err()), "an item left");
    assert!(units.iter().all(|u| u.value() == 0), "a unit left");
    eprintln!(
        "{} awaited objects: {threads} waiting threads, {wakeups} wake-ups in 1 s idle",
        QUEUES + 2 * OTHERS
    );
    // Three watchers; the reactor from an earlier case may linger a second.
    assert!(threads <= 4, "{threads} threads wait for 260 futures");
    assert!(
        wakeups < 200,
        "{wakeups} wake-ups in 1 s with nothing moving"
    );
}

/// Sets `event` after `after`, from another process.
fn set_later((event, after): (outlast_ipc::sync::Event, Duration)) {
    std::thread::sleep(after);
    event.set();
}

/// Eight futures wait on an event that a child process sets: each is
/// ready, after few polls (each wait leaves its waker, none polls in a
/// loop); one dropped while waiting changes nothing; a cleared event makes
/// a new future wait again, and a set from a thread wakes it.
fn an_event_set_by_another_process_wakes_every_waiting_future() {
    use outlast_ipc::sync::Event;
    let stop = Event::new().expect("an event");
    {
        let mut early = stop.wait_async();
        assert!(poll_once(&mut early).is_pending(), "nothing set yet");
    }
    let mut setter = Process::new(set_later, (stop.clone(), Duration::from_millis(300)));
    setter.start().expect("start");
    let futures: Vec<Task<'_, std::io::Result<()>>> = (0..8)
        .map(|_| -> Task<'_, std::io::Result<()>> { Box::pin(stop.wait_async()) })
        .collect();
    let joined = join_all(futures, PATIENCE);
    setter.join().expect("the setter ended well");
    assert!(
        joined.outputs.iter().all(|o| matches!(o, Some(Ok(())))),
        "{:?}",
        joined.outputs
    );
    // Each polled once before the set, once after (a spurious wake-up
    // of the watch thread may add a round).
    assert!(
        joined.polls <= 8 * 4,
        "{} polls for 8 futures",
        joined.polls
    );
    assert!(stop.is_set());
    stop.clear();
    let again = stop.clone();
    let waiter = std::thread::scope(|s| {
        let waiter = s.spawn(|| block_on(again.wait_async(), PATIENCE));
        std::thread::sleep(Duration::from_millis(100));
        stop.set();
        waiter.join().expect("the waiting thread")
    });
    assert!(matches!(waiter, Some(Ok(()))), "{waiter:?}");
}

/// Releases `units` of `semaphore` from another process, one at a time.
fn release_units((semaphore, units): (outlast_ipc::sync::Semaphore, u32)) {
    for _ in 0..units {
        std::thread::sleep(Duration::from_millis(20));
        semaphore.release();
    }
}

/// Six futures wait on an empty semaphore; a child process releases six
/// units one by one: each future takes one, none is left over, and a
/// future dropped while waiting took nothing. Then, while a future waits
/// (its watch thread asleep on the count), a thread blocked in `acquire`
/// still gets the unit a release gives, though the future is never polled
/// again: a release wakes every sleeper while a watch thread sleeps.
fn awaited_acquires_take_each_released_unit_once() {
    use outlast_ipc::sync::Semaphore;
    let units = Semaphore::new(0).expect("a semaphore");
    {
        let mut early = units.acquire_async();
        assert!(poll_once(&mut early).is_pending(), "no unit yet");
    }
    let mut releaser = Process::new(release_units, (units.clone(), 6));
    releaser.start().expect("start");
    let futures: Vec<Task<'_, std::io::Result<()>>> = (0..6)
        .map(|_| -> Task<'_, std::io::Result<()>> { Box::pin(units.acquire_async()) })
        .collect();
    let joined = join_all(futures, PATIENCE);
    releaser.join().expect("the releaser ended well");
    assert!(
        joined.outputs.iter().all(|o| matches!(o, Some(Ok(())))),
        "{:?}",
        joined.outputs
    );
    assert_eq!(units.value(), 0, "a unit left over, or taken twice");
    // A future waits, never polled again; a thread blocks; one release.
    let mut waiting = units.acquire_async();
    assert!(poll_once(&mut waiting).is_pending());
    std::thread::sleep(Duration::from_millis(50));
    let blocked = units.clone();
    let got = std::thread::scope(|s| {
        let blocked = s.spawn(move || blocked.acquire_timeout(PATIENCE));
        std::thread::sleep(Duration::from_millis(50));
        units.release();
        blocked.join().expect("the blocked thread")
    });
    drop(waiting);
    assert!(got, "the blocked acquirer missed the released unit");
    assert_eq!(units.value(), 0);
}

/// Awaits one number on `conn` (in a forked child) and returns it doubled.
fn await_and_double(mut conn: Connection) -> u64 {
    let got = block_on(conn.recv_async::<u64>(), PATIENCE).expect("in time");
    got.expect("a number") * 2
}

/// A child forked while its parent awaits a connection (so the parent's
/// reactor runs, with its epoll and its thread) awaits one of its own:
/// it makes its own reactor rather than use its copy of the parent's,
/// whose descriptors it closed at the fork and whose thread it has not.
fn a_forked_child_awaits_with_a_reactor_of_its_own() {
    use outlast_ipc::StartMethod;
    let (mut ours, _silent) = Pipe::duplex().expect("a pipe");
    let mut waiting = Box::pin(ours.recv_async::<u64>());
    assert!(poll_once(&mut waiting).is_pending());
    assert!(waiting_threads() > 0, "the parent's reactor thread runs");
    for round in 0..3u64 {
        let (mut to_child, childs) = Pipe::duplex().expect("a pipe");
        let mut child = Process::new(await_and_double, childs).start_method(StartMethod::Fork);
        child.start().expect("a forked child");
        std::thread::sleep(Duration::from_millis(100)); // it waits by now
        to_child.send(&(21 + round)).expect("sent");
        let got = child.join_timeout(PATIENCE);
        assert_eq!(got.ok(), Some(42 + 2 * round), "round {round}");
    }
    assert!(poll_once(&mut waiting).is_pending(), "nothing was sent");
}

/// Ready at its second poll: gives the executor its turn, as an `.await`
/// inside a critical section would.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Adds one to `counter` `n` times, each under `lock`, with a yield
/// between the read and the write (a lost update shows in the total).
fn add_under_lock(
    (lock, counter, n): (
        outlast_ipc::sync::Lock,
        outlast_ipc::value::RawValue<u64>,
        u64,
    ),
) {
    for _ in 0..n {
        let held = lock.lock().map_err(|e| e.to_string()).expect("the lock");
        let seen = counter.get();
        std::thread::yield_now();
        counter.set(seen + 1);
        drop(held);
    }
}

/// Takes `lock`, says so on `conn`, and holds it until killed.
fn hold_until_killed((lock, mut conn): (outlast_ipc::sync::Lock, Connection)) {
    let held = lock.lock().map_err(|e| e.to_string()).expect("the lock");
    conn.send(&1u8).expect("tell the parent");
    std::thread::sleep(Duration::from_secs(600));
    drop(held);
}

/// Two processes add under a lock with the blocking `lock` while four
/// futures of this thread add under the same lock with `lock_async`, each
/// holding it across an `.await`: the total is exact (no update lost
/// between processes or between tasks of one thread). A future dropped
/// while waiting took nothing. Then a child takes the lock and is
/// `SIGKILL`ed while an awaited lock waits: the future gets `OwnerDied`
/// with the lock held (the watch's look at the holder), where it waited
/// forever before.
fn awaited_locks_exclude_processes_and_take_over_a_killed_holders_lock() {
    use outlast_ipc::sync::{Lock, LockError};
    use outlast_ipc::value::RawValue;
    const EACH: u64 = 300;
    let lock = Lock::new().expect("a lock");
    let counter = RawValue::new(0u64).expect("a counter");
    {
        let held = lock.lock().map_err(|e| e.to_string()).expect("the lock");
        let mut early = lock.lock_async();
        assert!(poll_once(&mut early).is_pending(), "held: the future waits");
        drop(early);
        drop(held);
        assert!(!lock.is_locked(), "a dropped future took the lock");
    }
    let mut adders: Vec<Process<_, ()>> = (0..2)
        .map(|_| {
            let mut p = Process::new(add_under_lock, (lock.clone(), counter.clone(), EACH));
            p.start().expect("start");
            p
        })
        .collect();
    let futures: Vec<Task<'_, u64>> = (0..4)
        .map(|_| -> Task<'_, u64> {
            let (lock, counter) = (&lock, &counter);
            Box::pin(async move {
                let mut added = 0;
                for _ in 0..EACH {
                    let held = lock.lock_async().await.map_err(|e| e.to_string());
                    let held = held.expect("the lock");
                    let seen = counter.get();
                    YieldOnce(false).await;
                    counter.set(seen + 1);
                    drop(held);
                    added += 1;
                }
                added
            })
        })
        .collect();
    let joined = join_all(futures, PATIENCE);
    for p in &mut adders {
        p.join().expect("an adder ended well");
    }
    assert!(
        joined.outputs.iter().all(|o| *o == Some(EACH)),
        "{:?}",
        joined.outputs
    );
    assert_eq!(counter.get(), 6 * EACH, "an update was lost");
    assert!(!lock.is_locked());

    let (mut ours, theirs) = Pipe::duplex().expect("a pipe");
    let mut holder = Process::new(hold_until_killed, (lock.clone(), theirs));
    holder.start().expect("start");
    let _: u8 = ours.recv().expect("the holder has the lock");
    let got = std::thread::scope(|s| {
        let waiter = s.spawn(|| block_on(lock.lock_async(), PATIENCE));
        std::thread::sleep(Duration::from_millis(200));
        holder.kill().expect("kill the holder");
        waiter.join().expect("the waiting thread")
    });
    let _ = holder.join();
    match got {
        Some(Err(LockError::OwnerDied(held))) => drop(held.into_inner()),
        Some(other) => panic!("expected OwnerDied, got {:?}", other.map(|_| ())),
        None => panic!("the awaited lock still waits for a killed holder"),
    }
    assert!(!lock.is_locked(), "the taken-over lock was not released");
}

/// Waits at `barrier` `rounds` times; the arrival indices.
fn wait_rounds((barrier, rounds): (outlast_ipc::sync::Barrier, u32)) -> Vec<u32> {
    (0..rounds)
        .map(|_| barrier.wait().expect("every round passes"))
        .collect()
}

/// Waits at `barrier` once, at most `PATIENCE`; the arrival index.
fn wait_once(barrier: outlast_ipc::sync::Barrier) -> Option<u32> {
    barrier.wait_timeout(PATIENCE).ok()
}

/// Two processes wait at a barrier of three with the blocking `wait` for
/// 40 rounds while this thread awaits `wait_async`: each round passes,
/// with the indices 0, 1 and 2 given once each. A future dropped after it
/// was counted in leaves: the barrier still waits for two more parties
/// (before, a child's single wait passed at once, with the dropped
/// party's place). An `abort` from another thread ends a waiting future
/// with `Broken`.
fn awaited_barrier_waits_meet_processes_and_a_dropped_one_leaves() {
    use outlast_ipc::sync::{Barrier, BarrierError};
    const ROUNDS: u32 = 40;
    let barrier = Barrier::new(3).expect("a barrier");
    let mut parties: Vec<Process<_, Vec<u32>>> = (0..2)
        .map(|_| {
            let mut p = Process::new(wait_rounds, (barrier.clone(), ROUNDS));
            p.start().expect("start");
            p
        })
        .collect();
    let ours = block_on(
        async {
            let mut indices = Vec::new();
            for _ in 0..ROUNDS {
                indices.push(barrier.wait_async().await.expect("the round passes"));
            }
            indices
        },
        PATIENCE,
    )
    .expect("every round passed in time");
    let theirs: Vec<Vec<u32>> = parties
        .iter_mut()
        .map(|p| p.join().expect("a party ended well"))
        .collect();
    for round in 0..ROUNDS as usize {
        let mut met = vec![ours[round], theirs[0][round], theirs[1][round]];
        met.sort_unstable();
        assert_eq!(met, [0, 1, 2], "round {round}");
    }

    let pair = Barrier::new(2).expect("a barrier");
    {
        let mut left = pair.wait_async();
        assert!(poll_once(&mut left).is_pending(), "one of two: it waits");
        assert_eq!(pair.n_waiting(), 1);
    }
    assert_eq!(pair.n_waiting(), 0, "the dropped party is still counted");
    let mut other = Process::new(wait_once, pair.clone());
    other.start().expect("start");
    let mine = pair.wait_timeout(PATIENCE);
    let theirs = other.join().expect("the other party ended well");
    let mut met = vec![mine.expect("this party passes"), theirs.expect("it passes")];
    met.sort_unstable();
    assert_eq!(met, [0, 1]);

    let got = std::thread::scope(|s| {
        let waiter = s.spawn(|| block_on(pair.wait_async(), PATIENCE));
        std::thread::sleep(Duration::from_millis(100));
        pair.abort();
        waiter.join().expect("the waiting thread")
    });
    assert_eq!(got, Some(Err(BarrierError::Broken)));
}

/// Puts `n` items one at a time (a count under `cond`'s lock), notifying
/// one waiter each, then says it is done and notifies everyone.
fn produce_under_condition(
    (cond, items, done, n): (
        outlast_ipc::sync::Condition,
        outlast_ipc::value::RawValue<u64>,
        outlast_ipc::value::RawValue<u64>,
        u64,
    ),
) {
    for i in 0..n {
        if i % 20 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        let held = cond.lock().map_err(|e| e.to_string()).expect("the lock");
        items.set(items.get() + 1);
        cond.notify(1);
        drop(held);
    }
    let held = cond.lock().map_err(|e| e.to_string()).expect("the lock");
    done.set(1);
    cond.notify_all();
    drop(held);
}

/// Four futures of this thread consume what a child process produces
/// under a `Condition`, each waiting with `wait_async` while nothing is
/// there: every item is taken exactly once. Then a notify given to the
/// oldest of two waiting futures, which is dropped before it is polled
/// again, goes on to the other (before, it was spent on the one that
/// left, and the other waited on); a future dropped before any notify
/// left its place (a notify then finds nobody); and the guard given to a
/// wait never polled is let go with it.
fn awaited_condition_waits_take_each_notify_once_and_pass_on_a_dropped_ones() {
    use outlast_ipc::sync::Condition;
    use outlast_ipc::value::RawValue;
    const ITEMS: u64 = 200;
    let cond = Condition::new().expect("a condition");
    let items = RawValue::new(0u64).expect("a count");
    let done = RawValue::new(0u64).expect("a flag");
    let mut producer = Process::new(
        produce_under_condition,
        (cond.clone(), items.clone(), done.clone(), ITEMS),
    );
    producer.start().expect("start");
    let consumers: Vec<Task<'_, u64>> = (0..4)
        .map(|_| -> Task<'_, u64> {
            let (cond, items, done) = (&cond, &items, &done);
            Box::pin(async move {
                let mut taken = 0;
                loop {
                    let mut held = cond.lock_async().await.map_err(|e| e.to_string());
                    while items.get() == 0 && done.get() == 0 {
                        let guard = held.expect("the lock");
                        held = cond.wait_async(guard).await.map_err(|e| e.to_string());
                    }
                    let held = held.expect("the lock");
                    if items.get() == 0 {
                        return taken;
                    }
                    items.set(items.get() - 1);
                    taken += 1;
                    drop(held);
                    YieldOnce(false).await;
                }
            })
        })
        .collect();
    let joined = join_all(consumers, PATIENCE);
    producer.join().expect("the producer ended well");
    let taken: Vec<u64> = joined
        .outputs
        .iter()
        .map(|o| o.expect("a consumer ended in time"))
        .collect();
    assert_eq!(taken.iter().sum::<u64>(), ITEMS, "{taken:?}");
    assert_eq!(items.get(), 0);

    let guard = cond.lock().map_err(|e| e.to_string()).expect("the lock");
    let mut first = Box::pin(cond.wait_async(guard));
    assert!(poll_once(&mut first).is_pending());
    let guard = cond.lock().map_err(|e| e.to_string()).expect("the lock");
    let mut second = Box::pin(cond.wait_async(guard));
    assert!(poll_once(&mut second).is_pending());
    assert_eq!(cond.notify(1), 1, "the oldest waiter is chosen");
    drop(first);
    match poll_once(&mut second) {
        Poll::Ready(Ok(held)) => drop(held),
        Poll::Ready(Err(e)) => panic!("{e}"),
        Poll::Pending => panic!("the dropped waiter's notify was not passed on"),
    }
    drop(second);

    let guard = cond.lock().map_err(|e| e.to_string()).expect("the lock");
    let mut left = Box::pin(cond.wait_async(guard));
    assert!(poll_once(&mut left).is_pending());
    drop(left);
    assert_eq!(cond.notify(1), 0, "a dropped waiter still holds a place");
    let guard = cond.lock().map_err(|e| e.to_string()).expect("the lock");
    drop(cond.wait_async(guard));
    assert!(
        cond.lock_timeout(Duration::ZERO).is_ok(),
        "an unpolled wait kept the lock"
    );
}

/// Adds `from..to` to `s` with the blocking calls.
fn add_members((s, from, to): (outlast_ipc::manager::Set<u64>, u64, u64)) -> Result<(), String> {
    (from..to).try_for_each(|m| s.add(&m).map_err(|e| e.to_string()))
}

/// A manager set filled by a child's blocking `add`s and four tasks'
/// `add_async`s at once holds each member once; the awaited reads, a
/// discard, a remove of what is not there (`NotFound`), an update of
/// 70,000 members (two batches) and a clear say what the blocking ones
/// would.
fn awaited_set_calls_meet_a_childs_blocking_ones() {
    use outlast_ipc::manager::{Manager, ManagerError};
    let manager = Manager::start().expect("a manager");
    let s = manager.set::<u64>().expect("a set");
    let mut child = Process::new(add_members, (s.clone(), 0, 500));
    child.start().expect("start");
    let adders: Vec<Task<'_, Result<(), ManagerError>>> = (0..4u64)
        .map(|t| -> Task<'_, Result<(), ManagerError>> {
            let s = &s;
            Box::pin(async move {
                for m in (500 + t * 125)..(500 + (t + 1) * 125) {
                    s.add_async(&m).await?;
                    assert!(s.contains_async(&m).await?, "{m} just added");
                }
                Ok(())
            })
        })
        .collect();
    let joined = join_all(adders, PATIENCE);
    assert!(joined.outputs.iter().all(|o| matches!(o, Some(Ok(())))));
    assert_eq!(child.join().expect("the child"), Ok(()));
    let checks = async {
        let mut members = s.members_async().await?;
        members.sort_unstable();
        assert_eq!(members, (0..1_000).collect::<Vec<u64>>());
        assert_eq!(s.len_async().await?, 1_000);
        assert!(s.discard_async(&7).await?);
        assert!(!s.discard_async(&7).await?);
        assert!(matches!(
            s.remove_async(&7).await,
            Err(ManagerError::NotFound)
        ));
        s.remove_async(&8).await?;
        let many: Vec<u64> = (500..70_500).collect();
        s.update_async(&many).await?;
        assert_eq!(s.len_async().await?, 70_500 - 2);
        s.clear_async().await?;
        assert_eq!(s.len_async().await?, 0);
        Ok::<_, ManagerError>(())
    };
    block_on(checks, PATIENCE)
        .expect("in time")
        .expect("the checks");
    assert_eq!(s.len().expect("a len"), 0);
}

/// Extends `l` with `0..n` (blocking).
fn extend_list((l, n): (outlast_ipc::manager::List<u64>, u64)) -> Result<(), String> {
    let items: Vec<u64> = (0..n).collect();
    l.extend(&items).map_err(|e| e.to_string())
}

/// Every awaited call of a manager list, array, dict and namespace, each checked
/// against what the blocking calls then read, on objects a child filled.
fn awaited_list_array_and_dict_calls_say_what_blocking_ones_say() {
    use outlast_ipc::manager::{Manager, ManagerError};
    let manager = Manager::start().expect("a manager");
    let l = manager.list::<u64>().expect("a list");
    let mut child = Process::new(extend_list, (l.clone(), 10));
    child.start().expect("start");
    assert_eq!(child.join().expect("the child"), Ok(()));
    let a = manager.array(&[0u64; 4]).expect("an array");
    let d = manager.dict::<String, u64>().expect("a dict");
    let ns = manager.namespace().expect("a namespace");
    let key = |k: &str| k.to_string();
    let calls = async {
        l.extend_async(&[10, 11]).await?;
        l.insert_async(0, &100).await?;
        l.set_async(1, &70).await?;
        assert_eq!(l.pop_at_async(2).await?, Some(1));
        assert_eq!(l.slice_async(0..3).await?, vec![100, 70, 2]);
        assert!(l.remove_async(&70).await?);
        assert!(!l.remove_async(&70).await?);
        assert_eq!(l.index_async(&11).await?, Some(10));
        assert_eq!(l.index_async(&99).await?, None);
        assert_eq!(l.count_async(&100).await?, 1);
        a.set_async(2, &5).await?;
        assert_eq!(a.get_async(2).await?, Some(5));
        assert_eq!(a.get_async(9).await?, None);
        assert_eq!(a.len_async().await?, 4);
        assert_eq!(a.slice_async(1..3).await?, vec![0, 5]);
        assert_eq!(a.to_vec_async().await?, vec![0, 0, 5, 0]);
        assert_eq!(d.setdefault_async(&key("x"), &1).await?, 1);
        assert_eq!(d.setdefault_async(&key("x"), &2).await?, 1);
        assert!(
            !d.compare_and_set_async(&key("x"), Some(&9), Some(&3))
                .await?
        );
        assert!(
            d.compare_and_set_async(&key("x"), Some(&1), Some(&3))
                .await?
        );
        assert!(d.compare_and_set_async(&key("y"), None, Some(&4)).await?);
        assert_eq!(d.values_async().await?, vec![3, 4]);
        assert_eq!(d.popitem_async().await?, Some((key("y"), 4)));
        d.clear_async().await?;
        assert_eq!(d.popitem_async().await?, None);
        ns.set_async("a", &1u8).await?;
        ns.set_async("b", &2u8).await?;
        assert_eq!(ns.fields_async().await?, ["a", "b"]);
        assert!(ns.delete_async("a").await?);
        assert!(!ns.delete_async("a").await?);
        Ok::<_, ManagerError>(())
    };
    block_on(calls, PATIENCE)
        .expect("in time")
        .expect("the calls");
    assert_eq!(
        l.to_vec().expect("the list"),
        vec![100, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    );
    block_on(l.clear_async(), PATIENCE)
        .expect("in time")
        .expect("a clear");
    assert_eq!(l.len().expect("a len"), 0);
    assert_eq!(a.to_vec().expect("the array"), vec![0, 0, 5, 0]);
    assert_eq!(d.len().expect("a len"), 0);
    assert_eq!(ns.fields().expect("the fields"), ["b"]);
}

/// Polls `call` up to `polls` times (a short rest between) and drops it;
/// how many polls found it pending.
fn poll_then_drop<F: Future>(call: F, polls: u32) -> u32 {
    let mut call = Box::pin(call);
    let mut pending = 0;
    for _ in 0..polls {
        if poll_once(&mut call).is_ready() {
            break;
        }
        pending += 1;
        std::thread::sleep(Duration::from_micros(50));
    }
    pending
}

/// Puts `0..n` on `q`, resting a millisecond every 50 items.
fn put_numbers((q, n): (outlast_ipc::manager::Queue<u64>, u64)) -> Result<(), String> {
    for i in 0..n {
        q.put(&i).map_err(|e| e.to_string())?;
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(())
}

/// Five hundred tasks each await one item of a manager queue that a
/// child fills: each takes exactly one, and the descriptors stay a
/// handful. A waiting get used to hold a connection of its own, three
/// descriptors each: past a process's usual 1,024, gets failed.
fn five_hundred_awaited_gets_on_one_manager_queue_take_one_item_each() {
    const TASKS: u64 = 500;
    let manager = outlast_ipc::manager::Manager::start().expect("a manager");
    let q = manager.queue::<u64>().expect("a queue");
    let open_fds = || std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    let before = open_fds();
    let most_fds = std::sync::atomic::AtomicUsize::new(before);
    let futures: Vec<Task<'_, Result<u64, String>>> = (0..TASKS)
        .map(|_| -> Task<'_, Result<u64, String>> {
            let (q, most_fds) = (&q, &most_fds);
            Box::pin(async move {
                let item = q.get_async().await.map_err(|e| e.to_string());
                most_fds.fetch_max(open_fds(), std::sync::atomic::Ordering::SeqCst);
                item
            })
        })
        .collect();
    let mut producer = Process::new(put_numbers, (q.clone(), TASKS));
    producer.start().expect("start");
    let joined = join_all(futures, PATIENCE);
    producer
        .join()
        .expect("the producer ended")
        .expect("its puts worked");
    let mut got: Vec<u64> = joined
        .outputs
        .into_iter()
        .map(|o| o.expect("in time").expect("an item"))
        .collect();
    got.sort_unstable();
    assert_eq!(
        got,
        (0..TASKS).collect::<Vec<u64>>(),
        "each item exactly once"
    );
    let grew = most_fds
        .load(std::sync::atomic::Ordering::SeqCst)
        .saturating_sub(before);
    assert!(
        grew <= 200,
        "{grew} descriptors opened for {TASKS} waiting gets"
    );
    assert_eq!(q.len().expect("a len"), 0);
}

/// Twenty awaited puts and twenty awaited gets of one process on one
/// manager queue, more of each than wait at the manager at once: the puts
/// to a full queue of two, then the gets that make room; the gets on an
/// empty queue, then the puts that fill it. Gets in line behind puts
/// waiting for room (or puts behind gets waiting for items) would wait
/// for ever: each kind has a line of its own.
fn awaited_gets_and_puts_on_one_manager_queue_never_wait_behind_each_other() {
    const EACH: u64 = 20;
    let manager = outlast_ipc::manager::Manager::start().expect("a manager");
    for (q, puts_first) in [
        (manager.bounded_queue::<u64>(2).expect("a queue"), true),
        (manager.queue::<u64>().expect("a queue"), false),
    ] {
        let q = &q;
        let puts = (0..EACH).map(|i| -> Task<'_, Result<Option<u64>, String>> {
            Box::pin(async move {
                q.put_async(&i).await.map_err(|e| e.to_string())?;
                Ok(None)
            })
        });
        let gets = (0..EACH).map(|_| -> Task<'_, Result<Option<u64>, String>> {
            Box::pin(async move { q.get_async().await.map(Some).map_err(|e| e.to_string()) })
        });
        let futures: Vec<_> = match puts_first {
            true => puts.chain(gets).collect(),
            false => gets.chain(puts).collect(),
        };
        let joined = join_all(futures, PATIENCE);
        let mut got: Vec<u64> = joined
            .outputs
            .into_iter()
            .filter_map(|o| o.expect("in time").expect("a put or a get"))
            .collect();
        got.sort_unstable();
        assert_eq!(
            got,
            (0..EACH).collect::<Vec<u64>>(),
            "puts first: {puts_first}"
        );
    }
}

/// A manager queue's awaited gets and puts: a get dropped after the
/// manager sent it an item gives the item back (the next get has it); one
/// dropped while parked takes nothing (the next put goes to the next
/// get); 500 dropped at once keep a few connections; 1,500 items a child puts are each taken exactly once by gets of
/// which most are dropped after 0 to 3 polls; a joinable queue's
/// `join_async` ends once a child marked every item done (300 of them,
/// sharing one wait and a few descriptors); and a hundred
/// gets waiting at once leave the other awaited calls free.
fn awaited_manager_queue_gets_dropped_while_waiting_lose_no_item() {
    use outlast_ipc::manager::{JoinableQueue, Manager, ManagerError};
    let manager = Manager::start().expect("a manager");
    let q = manager.queue::<u64>().expect("a queue");

    // A waiting get's connection, kept for the next one.
    q.put(&6).expect("a put");
    let first = block_on(q.get_async(), PATIENCE).expect("in time");
    assert_eq!(first.expect("an item"), 6);

    // The item comes while the get waits; the get is dropped unpolled.
    let mut get = Box::pin(q.get_async());
    assert!(poll_once(&mut get).is_pending());
    std::thread::sleep(Duration::from_millis(20));
    q.put(&7).expect("a put");
    std::thread::sleep(Duration::from_millis(50));
    drop(get);
    assert_eq!(
        q.get_timeout(PATIENCE).expect("a get"),
        Some(7),
        "the item sent to a dropped get"
    );

    // Dropped while parked: it takes nothing that comes after.
    let mut get = Box::pin(q.get_async());
    assert!(poll_once(&mut get).is_pending());
    std::thread::sleep(Duration::from_millis(20));
    drop(get);
    std::thread::sleep(Duration::from_millis(50));
    q.put(&8).expect("a put");
    assert_eq!(q.get_timeout(PATIENCE).expect("a get"), Some(8));
    assert_eq!(q.len().expect("a len"), 0);

    // 500 gets dropped after one poll each, as a `select!` beside a short
    // timer drops them (most while their connection opens or waits):
    // a few connections, reused, not one a drop (a probe of that loop
    // had the manager log "too many handshakes at once" and took 41-108 s
    // for 10,000 items, 1 s after).
    let open_fds = || std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    let before = open_fds();
    let mut most_cancel_threads = 0;
    for _ in 0..500 {
        poll_then_drop(q.get_async(), 1);
        most_cancel_threads = most_cancel_threads.max(threads_named("outlast-cancel"));
    }
    assert!(
        most_cancel_threads <= 1,
        "{most_cancel_threads} threads reading cancels"
    );
    // Once our threads have read every cancelled get and opened every
    // connection asked for (slower on a loaded machine), at most sixteen
    // are kept for waiting calls (`MAX_OPEN`), and the rest closed: five
    // descriptors each (the socket, the lane's two rings, its doorbell and
    // its spill socket). Counted 200 ms after the drops, as this test did,
    // a loaded machine had not yet closed the rest: 66-76 descriptors
    // against a bound of 64 (sixteen of four, before the spill socket),
    // in 5 of 10 runs beside two busy loops.
    let settled = Instant::now() + PATIENCE;
    while (threads_named("outlast-cancel") > 0 || threads_named("outlast-connect") > 0)
        && Instant::now() < settled
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let grew = open_fds().saturating_sub(before);
    assert!(grew <= 16 * 5, "{grew} descriptors after 500 dropped gets");
    q.put(&9).expect("a put");
    assert_eq!(q.get_timeout(PATIENCE).expect("a get"), Some(9));

    // A child puts 1,500 items; gets, most of them dropped, take them.
    const N: u64 = 1500;
    let mut producer = Process::new(put_numbers, (q.clone(), N));
    producer.start().expect("start");
    let started = Instant::now();
    let mut got = Vec::new();
    let mut dropped = 0;
    let mut turn = 0u64;
    while (got.len() as u64) < N && started.elapsed() < PATIENCE {
        turn += 1;
        let mut get = Box::pin(q.get_async());
        let mut done = false;
        for _ in 0..turn % 4 {
            match poll_once(&mut get) {
                Poll::Ready(item) => {
                    got.push(item.expect("an item"));
                    done = true;
                    break;
                }
                Poll::Pending => std::thread::sleep(Duration::from_micros(100)),
            }
        }
        if !done {
            dropped += 1;
            drop(get);
            // Now and then a get awaited to its end.
            if turn % 7 == 0 {
                let item = block_on(q.get_async(), PATIENCE).expect("in time");
                got.push(item.expect("an item"));
            }
        }
    }
    producer
        .join()
        .expect("the producer ended")
        .expect("its puts worked");
    got.sort_unstable();
    assert_eq!(got, (0..N).collect::<Vec<u64>>(), "each item exactly once");
    assert!(dropped > 100, "{dropped} gets dropped");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(q.try_get().expect("a get"), None, "an item taken twice");

    // A bounded queue's put waits for room: dropped while it waits, it
    // puts nothing; awaited, it goes in once a get makes room.
    let bounded = manager.bounded_queue::<u64>(1).expect("a bounded queue");
    bounded.put(&1).expect("a put");
    let warm = block_on(bounded.put_async(&2), Duration::from_millis(50));
    assert!(warm.is_none(), "a put into a full queue: {warm:?}");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(bounded.len().expect("a len"), 1, "a dropped put went in");
    let mut put = Box::pin(bounded.put_async(&3));
    assert!(poll_once(&mut put).is_pending());
    assert_eq!(bounded.get().expect("a get"), 1);
    let put = block_on(put, PATIENCE);
    assert!(matches!(put, Some(Ok(()))), "{put:?}");
    assert_eq!(bounded.get().expect("a get"), 3);
    assert_eq!(bounded.len().expect("a len"), 0);

    // A manager's event: waits awaited, one dropped, the others woken
    // when a child sets it.
    let event = manager.event().expect("an event");
    let mut dropped_wait = Box::pin(event.wait_async());
    assert!(poll_once(&mut dropped_wait).is_pending());
    drop(dropped_wait);
    let mut setter = Process::new(set_manager_event_later, event.clone());
    setter.start().expect("start");
    let waits: Vec<Task<'_, Result<(), ManagerError>>> = (0..3)
        .map(|_| -> Task<'_, Result<(), ManagerError>> { Box::pin(event.wait_async()) })
        .collect();
    let woken = join_all(waits, PATIENCE);
    assert!(
        woken.outputs.iter().all(|o| matches!(o, Some(Ok(())))),
        "{:?}",
        woken.outputs
    );
    setter.join().expect("the setter ended");
    let flags = block_on(
        async {
            let set = event.is_set_async().await?;
            event.clear_async().await?;
            Ok::<_, ManagerError>((set, event.is_set_async().await?))
        },
        PATIENCE,
    );
    assert!(matches!(flags, Some(Ok((true, false)))), "{flags:?}");

    // join_async ends once a child marked every item done, for each of
    // three hundred futures (which share one wait at the manager: each
    // used to hold a connection of its own), a dropped one among them.
    let jq: JoinableQueue<u64> = manager.joinable_queue().expect("a joinable queue");
    for i in 0..20 {
        jq.put(&i).expect("a put");
    }
    let open_fds = || std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    let before = open_fds();
    let mut dropped = Box::pin(jq.join_async());
    assert!(poll_once(&mut dropped).is_pending());
    let mut joins: Vec<Task<'_, Result<(), ManagerError>>> = (0..300)
        .map(|_| -> Task<'_, _> { Box::pin(jq.join_async()) })
        .collect();
    for _ in 0..10 {
        for join in &mut joins {
            assert!(poll_once(join).is_pending(), "not joined yet");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(dropped);
    let grew = open_fds().saturating_sub(before);
    assert!(grew <= 40, "{grew} descriptors for 300 joins");
    let mut worker = Process::new(take_and_mark_done, (jq.clone(), 20));
    worker.start().expect("start");
    let joined = join_all(joins, PATIENCE);
    assert!(
        joined.outputs.iter().all(|o| matches!(o, Some(Ok(())))),
        "{:?}",
        joined.outputs.first()
    );
    worker.join().expect("ended").expect("its calls worked");

    // A hundred gets waiting at once: the other awaited calls still go.
    let many = manager.queue::<u64>().expect("a queue");
    let d = manager.dict::<String, u64>().expect("a dict");
    let mut tasks: Vec<Task<'_, Result<u64, ManagerError>>> = (0..100)
        .map(|_| -> Task<'_, Result<u64, ManagerError>> { Box::pin(many.get_async()) })
        .collect();
    let (many_ref, d_ref) = (&many, &d);
    tasks.push(Box::pin(async move {
        // Behind the gets, which are polled first and wait for items.
        for _ in 0..10 {
            yield_once().await;
        }
        d_ref.set_async(&"k".to_string(), &1).await?;
        for i in 0..100 {
            many_ref.put_async(&i).await?;
        }
        Ok(u64::MAX)
    }));
    let joined = join_all(tasks, PATIENCE);
    let mut items: Vec<u64> = joined
        .outputs
        .into_iter()
        .map(|o| match o {
            Some(Ok(item)) => item,
            other => panic!("{other:?}"),
        })
        .collect();
    items.sort_unstable();
    let mut expected: Vec<u64> = (0..100).collect();
    expected.push(u64::MAX);
    assert_eq!(items, expected);

    // Over loopback TCP (no lane: the cancel goes on the socket).
    let address = "127.0.0.1:0".parse().expect("an address");
    let remote = Manager::serve(&address, b"a key of ours").expect("a TCP manager");
    let rq = remote.queue::<u64>().expect("a queue");
    rq.put(&1).expect("a put");
    let first = block_on(rq.get_async(), PATIENCE).expect("in time");
    assert_eq!(first.expect("an item"), 1);
    let mut get = Box::pin(rq.get_async());
    assert!(poll_once(&mut get).is_pending());
    std::thread::sleep(Duration::from_millis(20));
    rq.put(&2).expect("a put");
    std::thread::sleep(Duration::from_millis(50));
    drop(get);
    assert_eq!(rq.get_timeout(PATIENCE).expect("a get"), Some(2));

    // A get waiting when its manager is killed says so.
    let pid = manager.pid().expect("the manager's pid") as i32;
    let mut get = Box::pin(q.get_async());
    assert!(poll_once(&mut get).is_pending());
    // SAFETY: kill has no memory arguments.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let after = block_on(get, PATIENCE);
    assert!(
        matches!(after, Some(Err(ManagerError::Disconnected))),
        "{after:?}"
    );
}

/// Pending once, then ready: lets the other tasks of a `join_all` run.
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// How many threads of this process have this name.
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |tasks| {
        tasks
            .filter_map(|t| t.ok())
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
            })
            .count()
    })
}

/// Five hundred tasks await one manager event, as every task of a server
/// awaits its shutdown beside its work. Each used to wait at the manager
/// on a connection of its own: 300 held 1,600 descriptors in a user's
/// program, and 2,000 failed with "too many open files". Now the waits of
/// a process share one: a set by a child ends them all; waits dropped on
/// the way (the one that drove the shared wait among them) end nothing of
/// the others'; and once every wait is dropped, the next one starts
/// afresh.
fn five_hundred_tasks_awaiting_one_manager_event_share_one_wait() {
    const TASKS: usize = 500;
    let manager = outlast_ipc::manager::Manager::start().expect("a manager");
    let event = manager.event().expect("an event");
    let open_fds = || std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    let before = open_fds();
    // The first two are polled, then the first, which drove the shared
    // wait, is dropped: the second goes on with the rest.
    let mut first = Box::pin(event.wait_async());
    let mut second = Box::pin(event.wait_async());
    assert!(poll_once(&mut first).is_pending());
    assert!(poll_once(&mut second).is_pending());
    drop(first);
    let mut waits: Vec<Task<'_, Result<(), outlast_ipc::manager::ManagerError>>> = (0..TASKS)
        .map(|_| -> Task<'_, _> { Box::pin(event.wait_async()) })
        .collect();
    // Polled for a while, long enough for any connections they ask for to
    // open (each opens on a thread of ours).
    for _ in 0..20 {
        for wait in &mut waits {
            assert!(poll_once(wait).is_pending(), "not set yet");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let grew = open_fds().saturating_sub(before);
    // Fifty of them are dropped while they wait.
    waits.truncate(TASKS - 50);
    assert!(
        grew <= 40,
        "{grew} descriptors for {TASKS} waits on one event"
    );
    waits.push(second);
    let mut setter = Process::new(set_manager_event_later, event.clone());
    setter.start().expect("start");
    let joined = join_all(waits, PATIENCE);
    setter.join().expect("the setter");
    let ended = joined
        .outputs
        .iter()
        .filter(|o| matches!(o, Some(Ok(()))))
        .count();
    assert_eq!(ended, TASKS - 50 + 1, "{:?}", joined.outputs.first());
    event.clear().expect("a clear");
    // Every wait dropped: the shared one was too; the next starts anew.
    let mut dropped = Box::pin(event.wait_async());
    assert!(poll_once(&mut dropped).is_pending());
    drop(dropped);
    let mut setter = Process::new(set_manager_event_later, event.clone());
    setter.start().expect("start");
    let again = block_on(event.wait_async(), PATIENCE).expect("in time");
    assert!(again.is_ok(), "{again:?}");
    setter.join().expect("the setter");
}

/// Sets a manager's `event` after a moment.
fn set_manager_event_later(event: outlast_ipc::manager::Event) {
    std::thread::sleep(Duration::from_millis(50));
    if let Err(e) = event.set() {
        panic!("a set: {e}");
    }
}

/// Takes `n` items from `q`, marking each done.
fn take_and_mark_done(
    (q, n): (outlast_ipc::manager::JoinableQueue<u64>, u64),
) -> Result<(), String> {
    for _ in 0..n {
        q.get().map_err(|e| e.to_string())?;
        q.task_done().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Adds 1 to `counter` in `d` `n` times with the blocking call.
fn add_blocking((d, n): (outlast_ipc::manager::Dict<String, i64>, u64)) -> Result<(), String> {
    for _ in 0..n {
        d.fetch_add(&"counter".to_string(), 1)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A manager's proxies, awaited: four futures of this thread set, get and
/// count on one dict while a child process counts there with blocking
/// calls (the count is exact, every key reads back); a hundred calls at
/// once open a bounded number of connections; 300 calls dropped
/// after a few polls each, some with their request out, leave the replies
/// of the calls after them in step (a reply owed to a dropped call is read
/// and dropped, not given to the next); the calls reach a manager over
/// loopback TCP; and once the manager is killed, an awaited call says
/// `Disconnected` instead of waiting.
fn awaited_manager_calls_stay_in_step_when_dropped_and_end_with_the_manager() {
    use outlast_ipc::manager::{Manager, ManagerError};
    const EACH: u64 = 200;
    let manager = Manager::start().expect("a manager");
    let d = manager.dict::<String, i64>().expect("a dict");
    let counter = "counter".to_string();
    let mut adder = Process::new(add_blocking, (d.clone(), EACH));
    adder.start().expect("start");
    let futures: Vec<Task<'_, Result<u64, ManagerError>>> = (0..4u64)
        .map(|task| -> Task<'_, Result<u64, ManagerError>> {
            let (d, counter) = (&d, &counter);
            Box::pin(async move {
                let mut read_back = 0;
                for i in 0..EACH {
                    let key = format!("{task}-{i}");
                    d.set_async(&key, &(i as i64)).await?;
                    d.fetch_add_async(counter, 1).await?;
                    if d.get_async(&key).await? == Some(i as i64) {
                        read_back += 1;
                    }
                }
                Ok(read_back)
            })
        })
        .collect();
    let joined = join_all(futures, PATIENCE);
    adder
        .join()
        .expect("the adder ended")
        .expect("its calls worked");
    for out in &joined.outputs {
        assert!(matches!(out, Some(Ok(n)) if *n == EACH), "{out:?}");
    }
    let total = d.get(&counter).expect("a get");
    assert_eq!(total, Some(5 * EACH as i64));
    assert_eq!(d.len().expect("a len"), 4 * EACH + 1);

    // A hundred calls at once share at most sixteen connections (each
    // with its socket, its lane's doorbell and a duplicate of the socket
    // in the reactor while a reply on it is awaited).
    let open_fds = || std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    let before = open_fds();
    let key = "0-0".to_string();
    let many: Vec<Task<'_, Result<Option<i64>, ManagerError>>> = (0..100)
        .map(|_| -> Task<'_, Result<Option<i64>, ManagerError>> { Box::pin(d.get_async(&key)) })
        .collect();
    let joined = join_all(many, PATIENCE);
    assert!(
        joined
            .outputs
            .iter()
            .all(|o| matches!(o, Some(Ok(Some(0))))),
        "{:?}",
        joined.outputs
    );
    let grew = open_fds().saturating_sub(before);
    assert!(grew <= 64, "{grew} descriptors for 100 calls at once");

    // Dropped calls, some with their request out and no reply yet: the
    // manager is stopped (SIGSTOP) while each is polled 0 to 3 times, so a
    // call past its first poll waits for its reply (or for the replies
    // owed before it, or for a connection) when it is dropped. A third of
    // them read a value too large for the lane, whose reply comes on the
    // socket, announced on the lane.
    let big = manager.dict::<String, Vec<u8>>().expect("a dict");
    let large = vec![7u8; 300 << 10];
    big.set(&"big".to_string(), &large).expect("a set");
    big.set(&"other".to_string(), &vec![1u8; 300 << 10])
        .expect("a set");
    let manager_pid = manager.pid().expect("the manager's pid") as i32;
    let mut started = 0;
    for round in 0..30u32 {
        // SAFETY: kill has no memory arguments.
        unsafe { libc::kill(manager_pid, libc::SIGSTOP) };
        for i in 0..10u32 {
            let polls = (round + i) % 4;
            started += match i % 3 {
                0 => poll_then_drop(big.get_async(&"other".to_string()), polls),
                _ => poll_then_drop(d.fetch_add_async(&counter, 1), polls),
            };
        }
        // SAFETY: as above.
        unsafe { libc::kill(manager_pid, libc::SIGCONT) };
        std::thread::sleep(Duration::from_micros(200));
    }
    assert!(started > 0);
    // Sixteen at once lease every kept connection, each with what it
    // owes: a stale "other" read here would be a reply out of step.
    let key = "big".to_string();
    let reads: Vec<Task<'_, Result<Option<Vec<u8>>, ManagerError>>> = (0..16)
        .map(|_| -> Task<'_, Result<Option<Vec<u8>>, ManagerError>> {
            Box::pin(big.get_async(&key))
        })
        .collect();
    let joined = join_all(reads, PATIENCE);
    for out in &joined.outputs {
        assert!(
            matches!(out, Some(Ok(Some(v))) if *v == large),
            "a large value read after the dropped calls: {:?}",
            out.as_ref()
                .map(|o| o.as_ref().map(|v| v.as_ref().map(|v| v[0])))
        );
    }
    // And in turn, on a manager of its own (so one connection): a read of
    // a large value dropped with its request out, then another read.
    let second = Manager::start().expect("a manager");
    let values = second.dict::<String, Vec<u8>>().expect("a dict");
    values.set(&"big".to_string(), &large).expect("a set");
    values
        .set(&"other".to_string(), &vec![1u8; 300 << 10])
        .expect("a set");
    let second_pid = second.pid().expect("its pid") as i32;
    let first = block_on(values.len_async(), PATIENCE);
    assert!(matches!(first, Some(Ok(2))), "{first:?}");
    // SAFETY: kill has no memory arguments.
    unsafe { libc::kill(second_pid, libc::SIGSTOP) };
    let pending = poll_then_drop(values.get_async(&"other".to_string()), 1);
    // SAFETY: as above.
    unsafe { libc::kill(second_pid, libc::SIGCONT) };
    assert_eq!(
        pending, 1,
        "the read was answered while its manager was stopped"
    );
    let next = block_on(values.get_async(&"big".to_string()), PATIENCE);
    assert!(
        matches!(&next, Some(Ok(Some(v))) if *v == large),
        "the read after a dropped one: {:?}",
        next.as_ref()
            .map(|o| o.as_ref().map(|v| v.as_ref().map(|v| v[0])))
    );
    drop(second);

    let after_drops = d.get(&counter).expect("a get").expect("a count");
    assert!((5 * EACH as i64..=5 * EACH as i64 + 300).contains(&after_drops));
    let in_step = block_on(
        async {
            d.set_async(&"x".to_string(), &7).await?;
            let x = d.get_async(&"x".to_string()).await?;
            let n = d.fetch_add_async(&counter, 0).await?;
            let keys = d.len_async().await?;
            Ok::<_, ManagerError>((x, n, keys))
        },
        PATIENCE,
    )
    .expect("in time")
    .expect("the calls after the dropped ones");
    let settled = d.get(&counter).expect("a get").expect("a count");
    assert_eq!(in_step, (Some(7), settled, 4 * EACH + 2));

    let address = "127.0.0.1:0".parse().expect("an address");
    let remote = Manager::serve(&address, b"a key of ours").expect("a TCP manager");
    let list = remote.list::<u64>().expect("a list");
    let got = block_on(
        async {
            for x in 0..10u64 {
                list.append_async(&x).await?;
            }
            Ok::<_, ManagerError>((list.len_async().await?, list.to_vec_async().await?))
        },
        PATIENCE,
    )
    .expect("in time")
    .expect("the calls over TCP");
    assert_eq!(got, (10, (0..10).collect::<Vec<u64>>()));

    // SAFETY: kill has no memory arguments.
    unsafe { libc::kill(manager_pid, libc::SIGKILL) };
    let after = block_on(d.get_async(&"x".to_string()), PATIENCE);
    assert!(
        matches!(after, Some(Err(ManagerError::Disconnected))),
        "{after:?}"
    );
}
