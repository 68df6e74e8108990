//! Items and results of any size through a `Pool`, in every start method:
//! just over a worker's ring (about 1 MiB), 100 MB each way, and over the
//! cap, which is that item's own error after one attempt. The other items
//! of the same call are unaffected, and nothing hangs. Then a `Process`
//! argument and result and a `Pipe` message of 100 MB.

use std::sync::atomic::{AtomicU64, Ordering};

use outlast::pool::{Pool, PoolError, TaskError};
use outlast::{BadOutput, Job, JobOutcome, Supervisor, TaskContext};
use outlast_ipc::StartMethod;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::time::Duration;
use tests::procfs;

fn main() {
    outlast_ipc::init();
    tests::harness::run(tests::cases![
        an_item_just_over_the_ring_round_trips_ten_times_in_each_start_method,
        items_and_results_over_half_the_ring_go_wherever_the_ring_stands,
        a_hundred_megabyte_argument_and_result,
        a_hundred_megabyte_item_is_not_kept_once_it_is_done,
        a_map_of_big_items_hands_each_over_without_a_copy_in_a_batch,
        a_jobs_big_inputs_are_encoded_at_most_twice_each,
        a_big_result_goes_from_the_worker_without_a_copy_in_a_buffer,
        a_lazy_map_of_big_items_or_results_pulls_a_bounded_number_ahead,
        a_chunk_sized_on_small_results_sends_its_large_ones_as_they_come,
        a_lazy_map_whose_results_turn_large_runs_a_bounded_way_past_its_reader,
        a_lazy_map_nobody_reads_holds_nothing_back_from_join,
        an_input_over_the_cap_fails_alone_at_once,
        a_result_over_the_cap_fails_alone_after_one_run,
        a_result_that_cannot_be_encoded_spoils_no_other_item_of_its_chunk,
        an_item_that_cannot_be_encoded_fails_alone_in_imap_and_map,
        a_process_takes_and_gives_a_hundred_megabytes_in_each_start_method,
        a_process_result_is_read_out_of_its_report_once,
        a_pipe_carries_a_hundred_megabyte_message,
    ]);
}

const METHODS: [StartMethod; 3] = [
    StartMethod::Fork,
    StartMethod::Spawn,
    StartMethod::ForkServer,
];

/// A check that reads every byte, so a lost or shifted byte shows.
fn checksum(bytes: Vec<u8>) -> (usize, u64) {
    let sum = bytes
        .iter()
        .enumerate()
        .map(|(i, &b)| (i as u64 % 251) * u64::from(b))
        .sum();
    (bytes.len(), sum)
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 253) as u8).collect()
}

fn make_pattern(n: usize) -> Vec<u8> {
    pattern(n)
}

fn an_item_just_over_the_ring_round_trips_ten_times_in_each_start_method() {
    let item = pattern(1_100_000);
    let expected = checksum(item.clone());
    for method in METHODS {
        let pool = Pool::builder(2).start_method(method).build().expect("pool");
        for run in 0..10 {
            let got = pool.apply(checksum, item.clone());
            assert_eq!(got.ok(), Some(expected), "{method:?}, run {run}");
            let back = pool.apply(make_pattern, 1_100_000).expect("result");
            assert!(back == item, "{method:?}, run {run}: the result differs");
        }
        // Several at once, beside small ones, in one map.
        let items = vec![item.clone(), vec![1, 2, 3], item.clone(), Vec::new()];
        let sums = pool.map(checksum, items.clone()).expect("map");
        let want: Vec<_> = items.into_iter().map(checksum).collect();
        assert_eq!(sums, want, "{method:?}");
    }
}

/// Its input's checksum, and a pattern of `len` bytes.
fn checksum_and_pattern((input, len): (Vec<u8>, usize)) -> ((usize, u64), Vec<u8>) {
    (checksum(input), pattern(len))
}

/// A message larger than half a worker's ring (1 MiB here) that had to
/// start a new lap behind a smaller one waited for room that even an
/// empty ring could not give: a `map` whose results were 300 KB, then
/// 900 KB, hung for good. Inputs and results of sizes that put the ring's
/// position everywhere, one worker, one item per chunk, each with a
/// deadline (a hang fails in words).
fn items_and_results_over_half_the_ring_go_wherever_the_ring_stands() {
    let sizes = [
        300_000, 900_000, 600_000, 1_000_000, 10, 700_000, 550_000, 1_040_000,
    ];
    let pool = Pool::builder(1).chunksize(1).build().expect("pool");
    let mut handles = Vec::new();
    for (i, &len) in sizes.iter().enumerate() {
        let input = pattern(sizes[(i + 3) % sizes.len()]);
        let handle = pool
            .submit(checksum_and_pattern, (input, len))
            .expect("submit");
        handles.push(handle);
    }
    for (i, handle) in handles.iter().enumerate() {
        let input = pattern(sizes[(i + 3) % sizes.len()]);
        let (sum, back) = handle
            .get_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("item {i}: {e}"));
        assert_eq!(sum, checksum(input), "item {i}'s input");
        assert!(back == pattern(sizes[i]), "item {i}'s result differs");
    }
}

/// Whether every byte is `value` (a memcmp: quick in a debug build too).
fn all_are(bytes: &[u8], value: u8) -> bool {
    bytes == vec![value; bytes.len()].as_slice()
}

fn total(bytes: ByteBuf) -> (usize, bool) {
    (bytes.len(), all_are(&bytes, 2))
}

fn fill(n: usize) -> ByteBuf {
    ByteBuf::from(vec![3u8; n])
}

fn a_hundred_megabyte_argument_and_result() {
    const N: usize = 100_000_000;
    for method in METHODS {
        let pool = Pool::builder(1).start_method(method).build().expect("pool");
        let got = pool.apply(total, ByteBuf::from(vec![2u8; N]));
        assert_eq!(got.ok(), Some((N, true)), "{method:?}");
        let back = pool.apply(fill, N).expect("result");
        assert_eq!(back.len(), N, "{method:?}");
        assert!(all_are(&back, 3), "{method:?}");
    }
}

/// In a process of its own (so no other test's memory counts): this
/// process's resident kilobytes before and after a pool takes a 100 MB
/// item, then each of four small ones.
fn resident_around_a_big_item(_: ()) -> (u64, u64) {
    let resident = || outlast_ipc::os::procfs::resident_kb(std::process::id()).unwrap_or(0);
    let pool = Pool::new(1).expect("pool");
    assert_eq!(
        pool.apply(total, ByteBuf::from(vec![2u8; 10])).ok(),
        Some((10, true))
    );
    let before = resident();
    let got = pool.apply(total, ByteBuf::from(vec![2u8; 100_000_000]));
    assert_eq!(got.ok(), Some((100_000_000, true)));
    for _ in 0..4 {
        assert_eq!(
            pool.apply(total, ByteBuf::from(vec![2u8; 10])).ok(),
            Some((10, true))
        );
    }
    (before, resident())
}

fn a_hundred_megabyte_item_is_not_kept_once_it_is_done() {
    let mut p =
        outlast_ipc::Process::new(resident_around_a_big_item, ()).start_method(StartMethod::Spawn);
    p.start().expect("start");
    let (before, after) = p.join().expect("join");
    // The pool's buffers grown for it held some 290 MB for good.
    assert!(
        after < before + 30_000,
        "resident {before} kB before a 100 MB item, {after} kB after it"
    );
}

/// In a process of its own: the resident kB before a `map` over four
/// items of `SIZE` bytes (after they are made), the most resident during
/// it, and the pages of fresh memory it wrote (minor faults).
fn peak_around_a_map_of_big_items(_: ()) -> (u64, u64, u64) {
    let pool = Pool::new(2).expect("pool");
    assert_eq!(
        pool.map(total, vec![ByteBuf::from(vec![2u8; 10]); 2]).ok(),
        Some(vec![(10, true); 2])
    );
    let items: Vec<ByteBuf> = (0..4).map(|_| ByteBuf::from(vec![2u8; SIZE])).collect();
    // The peak starts again from here (`clear_refs`, Linux 4.0).
    std::fs::write("/proc/self/clear_refs", "5").expect("clear_refs");
    let before = procfs::status_kb(std::process::id(), "VmHWM");
    let faults = minor_faults();
    let got = pool.map(total, items);
    assert_eq!(got.ok(), Some(vec![(SIZE, true); 4]));
    (
        before,
        procfs::status_kb(std::process::id(), "VmHWM"),
        minor_faults() - faults,
    )
}

/// This process's minor page faults so far (every thread's): a page of
/// fresh memory written is one.
fn minor_faults() -> u64 {
    procfs::minor_faults(std::process::id())
}

const SIZE: usize = 40_000_000;

fn a_map_of_big_items_hands_each_over_without_a_copy_in_a_batch() {
    let mut p = outlast_ipc::Process::new(peak_around_a_map_of_big_items, ())
        .start_method(StartMethod::Spawn);
    p.start().expect("start");
    let (before, peak, faults) = p.join().expect("join");
    // Each item is encoded once, into the pool's store, as the caller's
    // own is dropped: about one item more at the peak (39 MB measured).
    // Each then went to a worker in a batch built for it: several at
    // once, refused by the ring as too large, then half as many, and
    // again (156 MB more at the peak, 1.4 GB copied for 160 MB of items).
    let item_kb = SIZE as u64 / 1024;
    assert!(
        peak < before + 2 * item_kb,
        "resident {before} kB before a map of four 40 MB items, at most {peak} kB during it"
    );
    // And from the store each goes straight into the memfd that carries
    // it: the encoding's pages are the only fresh ones (39,063 faults
    // measured). Copied into a batch of its own first, each was written
    // twice (78,127).
    let pages = 4 * SIZE as u64 / 4096;
    assert!(
        faults < pages + pages / 2,
        "{faults} pages written for {pages} pages of items"
    );
}

/// In a process of its own: the fresh pages (minor faults) a 40 MB
/// result cost its worker, and this process, the pool's.
fn faults_around_a_big_result(_: ()) -> (u64, u64) {
    let pool = Pool::new(1).expect("pool");
    assert_eq!(pool.apply(fill, 10).map(|b| b.len()).ok(), Some(10));
    let worker = pool.worker_pids()[0];
    let (theirs, ours) = (procfs::minor_faults(worker), minor_faults());
    let back = pool.apply(fill, SIZE).expect("result");
    let ours = minor_faults() - ours;
    assert!(back.len() == SIZE && all_are(&back, 3));
    (procfs::minor_faults(worker) - theirs, ours)
}

fn a_big_result_goes_from_the_worker_without_a_copy_in_a_buffer() {
    let mut p =
        outlast_ipc::Process::new(faults_around_a_big_result, ()).start_method(StartMethod::Spawn);
    p.start().expect("start");
    let (worker, pool) = p.join().expect("join");
    let pages = SIZE as u64 / 4096;
    // The function's vector and its encoding are the worker's only fresh
    // pages (19,534 faults measured). The message was encoded into a
    // buffer of its own before it went into its memfd (29,299).
    assert!(
        worker < 2 * pages + pages / 2,
        "the worker wrote {worker} fresh pages for a result of {pages} pages"
    );
    // Here: the message decoded out of its memfd, and the caller's own
    // vector (20,143 measured). The pool's store copied the decoded
    // output once more, under the pool's lock (29,909).
    assert!(
        pool < 2 * pages + pages / 2,
        "the pool wrote {pool} fresh pages for a result of {pages} pages"
    );
}

/// Small results for the first 3,000 items, 2 MB ones after.
fn small_then_large(i: u64) -> ByteBuf {
    ByteBuf::from(vec![6u8; if i < 3_000 { 10 } else { 2_000_000 }])
}

fn a_chunk_sized_on_small_results_sends_its_large_ones_as_they_come() {
    let pool = Pool::new(2).expect("pool");
    let mut count = 0;
    for result in pool.imap(small_then_large, 0..3_200u64) {
        let bytes = result.expect("result");
        assert!(all_are(&bytes, 6));
        count += 1;
    }
    assert_eq!(count, 3_200);
    // Chunks learnt on the quick small items hold thousands of items; one
    // that reaches the large ones sends what it has once its output holds
    // 4 MiB, and the rest run in chunks of their own (11 MB at a worker's
    // peak measured). It held them all: 396 MB at a worker's peak (1.8 GB
    // with 5 MB results, each waiting for the last before the reader saw
    // any).
    for pid in pool.worker_pids() {
        let peak_kb = procfs::status_kb(pid, "VmHWM");
        assert!(
            peak_kb < 100 * 1024,
            "worker {pid} held {peak_kb} kB at its peak for 2 MB results"
        );
    }
}

/// [`small_then_large`], each large result's run logged in `log`.
fn small_then_large_logged((i, log): (u64, String)) -> ByteBuf {
    if i >= 3_000 {
        count_run(&log);
    }
    small_then_large(i)
}

/// Waits until `log` has not grown for a second (at most a minute); its
/// runs then.
fn runs_once_quiet(log: &str) -> usize {
    let mut last = usize::MAX;
    for _ in 0..60 {
        std::thread::sleep(Duration::from_secs(1));
        let now = runs_in(log);
        if now == last {
            break;
        }
        last = now;
    }
    last
}

fn a_lazy_map_whose_results_turn_large_runs_a_bounded_way_past_its_reader() {
    let pool = Pool::new(2).expect("pool");
    for unordered in [false, true] {
        let log = run_log(&format!("ahead-{unordered}"));
        let items = (0..3_300u64).map(|i| (i, log.clone()));
        let mut results: Box<dyn Iterator<Item = Result<ByteBuf, TaskError>>> = match unordered {
            false => Box::new(pool.imap(small_then_large_logged, items)),
            true => Box::new(pool.imap_unordered(small_then_large_logged, items)),
        };
        // The reader takes the 3,000 small results and a large one, then
        // stops for a while.
        let mut large = 0;
        for result in results.by_ref().take(3_001) {
            large += usize::from(result.expect("result").len() > 10);
        }
        assert!(large >= 1);
        // 64 MiB of 2 MB results past the reader, and what the chunks
        // already cut make (43 ran ordered, 40 unordered). The window of
        // 65,536 items, sized on the small results, sent all 300 to run:
        // 600 MB waited for the reader.
        let ran = runs_once_quiet(&log);
        assert!(
            ran <= 100,
            "unordered {unordered}: {ran} of 300 large items ran with the reader {large} in"
        );
        // Reading on lets the rest go; every result comes, whole.
        let mut count = 3_001;
        for result in results {
            let bytes = result.expect("result");
            assert!(all_are(&bytes, 6));
            count += 1;
        }
        assert_eq!(count, 3_300, "unordered {unordered}");
        assert_eq!(runs_in(&log), 300, "unordered {unordered}");
        let _ = std::fs::remove_file(&log);
    }
}

fn a_lazy_map_nobody_reads_holds_nothing_back_from_join() {
    let pool = Pool::new(2).expect("pool");
    let log = run_log("join");
    let items = (0..3_300u64).map(|i| (i, log.clone()));
    let mut results = pool.imap(small_then_large_logged, items);
    assert_eq!(results.by_ref().take(3_000).count(), 3_000);
    // As Python's: join waits for every item submitted, read or not.
    pool.close();
    pool.join().expect("join");
    assert_eq!(runs_in(&log), 300);
    assert_eq!(results.filter(|r| r.is_ok()).count(), 300);
    let _ = std::fs::remove_file(&log);
}

fn a_lazy_map_of_big_items_or_results_pulls_a_bounded_number_ahead() {
    const ITEM: usize = 8_000_000;
    let pool = Pool::new(2).expect("pool");
    for unordered in [false, true] {
        let pulled = AtomicU64::new(0);
        let items = (0..100).map(|_| {
            pulled.fetch_add(1, Ordering::Relaxed);
            ByteBuf::from(vec![2u8; ITEM])
        });
        let first: Vec<_> = match unordered {
            false => pool.imap(total, items).take(3).collect(),
            true => pool.imap_unordered(total, items).take(3).collect(),
        };
        assert_eq!(first, vec![Ok((ITEM, true)); 3]);
        // 256 MiB of encoded items in flight: 33 of 8 MB (34 measured).
        // The window was 65,536 items whatever their size: all 100 were
        // taken (and an endless input of 50 MB items ran out of memory).
        let pulled = pulled.load(Ordering::Relaxed);
        assert!(
            pulled <= 48,
            "unordered {unordered}: {pulled} items of 8 MB pulled for 3 results"
        );
        // Small items whose results are 8 MB: as few ahead, by the
        // results' size (34 measured; all 100 were, as many 8 MB results
        // waiting for a reader that takes them one by one).
        let pulled = AtomicU64::new(0);
        let items = (0..100u64).map(|_| {
            pulled.fetch_add(1, Ordering::Relaxed);
            ITEM
        });
        let first: Vec<_> = match unordered {
            false => pool.imap(fill, items).take(3).collect(),
            true => pool.imap_unordered(fill, items).take(3).collect(),
        };
        assert!(first
            .iter()
            .all(|r| r.as_ref().is_ok_and(|b| b.len() == ITEM)));
        let pulled = pulled.load(Ordering::Relaxed);
        assert!(
            pulled <= 48,
            "unordered {unordered}: {pulled} items pulled for 3 results of 8 MB"
        );
    }
}

/// How many times [`BigInputs::input`] ran (in the supervisor: this
/// process).
static INPUTS_MADE: AtomicU64 = AtomicU64::new(0);

/// A user's job whose first input is small (it sizes the workers' rings)
/// and whose others are 3 MB each: too large for a ring, and of a size
/// the supervisor learns only by encoding them.
#[derive(Clone, Serialize, Deserialize)]
struct BigInputs {
    #[serde(skip)]
    total: u64,
}

impl Job for BigInputs {
    type Input = ByteBuf;
    type Output = u64;
    type Error = String;
    fn describe(&self) -> String {
        "big inputs".into()
    }
    fn task_count(&self) -> u64 {
        9
    }
    fn input(&self, id: u64) -> ByteBuf {
        INPUTS_MADE.fetch_add(1, Ordering::Relaxed);
        ByteBuf::from(vec![id as u8; if id == 0 { 10 } else { 3_000_000 }])
    }
    fn run(&self, input: ByteBuf, _: &mut TaskContext<'_>) -> Result<u64, String> {
        Ok(input.iter().map(|&b| u64::from(b)).sum())
    }
    fn combine(&mut self, _id: u64, part: u64) -> Result<(), BadOutput> {
        self.total += part;
        Ok(())
    }
    fn outcome(&self, _complete: bool) -> JobOutcome {
        JobOutcome {
            value: self.total.to_string(),
            summary: String::new(),
            verified: None,
        }
    }
}

fn a_jobs_big_inputs_are_encoded_at_most_twice_each() {
    let report = Supervisor::new(BigInputs { total: 0 })
        .workers(2)
        .quiet(true)
        .handle_signals(false)
        .run()
        .expect("run");
    assert_eq!(
        report.result,
        (3_000_000u64 * (1..9).sum::<u64>()).to_string()
    );
    // Once to size the rings; then each input is encoded into a batch,
    // and one that takes the batch past the ring is taken out and
    // encoded again alone. Batches of several were built, refused by
    // the ring and built again at half the size: 26 encodings of 9
    // (12 now).
    let made = INPUTS_MADE.load(Ordering::Relaxed);
    assert!(made <= 1 + 2 * 9, "{made} inputs made for 9 tasks");
}

/// Each run appends a line to `log` (a file, so runs in any worker and
/// any retry show in the test).
fn count_run(log: &str) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
    {
        let _ = f.write_all(b"run\n");
    }
}

fn runs_in(log: &str) -> usize {
    std::fs::read_to_string(log).map_or(0, |s| s.lines().count())
}

fn run_log(name: &str) -> String {
    let path = std::env::temp_dir().join(format!("outlast-large-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path.to_string_lossy().into_owned()
}

fn count_and_len((log, bytes): (String, ByteBuf)) -> usize {
    count_run(&log);
    bytes.len()
}

fn an_input_over_the_cap_fails_alone_at_once() {
    let log = run_log("input");
    let pool = Pool::builder(2)
        .max_message_bytes(100_000)
        .build()
        .expect("pool");
    let items = vec![
        (log.clone(), ByteBuf::from(vec![0u8; 10])),
        (log.clone(), ByteBuf::from(vec![0u8; 300_000])),
        (log.clone(), ByteBuf::from(vec![0u8; 20])),
    ];
    let results: Vec<_> = pool.imap(count_and_len, items).collect();
    assert_eq!(results[0], Ok(10));
    assert_eq!(results[2], Ok(20));
    match &results[1] {
        Err(TaskError::TooLarge { len, max: 100_000 }) if *len >= 300_000 => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(results[1]
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("100000 bytes"));
    // The oversize item never ran; the two others ran once each.
    assert_eq!(runs_in(&log), 2);
    let _ = std::fs::remove_file(&log);
    // No worker was blamed.
    assert_eq!(pool.workers_started(), 2);
}

fn big_result((log, n): (String, usize)) -> ByteBuf {
    count_run(&log);
    ByteBuf::from(vec![1u8; n])
}

fn a_result_over_the_cap_fails_alone_after_one_run() {
    for method in METHODS {
        let log = run_log(&format!("{method:?}"));
        let pool = Pool::builder(2)
            .start_method(method)
            .max_message_bytes(2_000_000)
            .build()
            .expect("pool");
        let got = pool.apply(big_result, (log.clone(), 3_000_000));
        match got {
            Err(PoolError::Task {
                error:
                    TaskError::TooLarge {
                        len,
                        max: 2_000_000,
                    },
                ..
            }) if len >= 3_000_000 => {}
            other => panic!("{method:?}: expected TooLarge, got {other:?}"),
        }
        assert_eq!(runs_in(&log), 1, "{method:?}: it ran more than once");
        // Just under the cap (and over the ring) still comes back.
        let ok = pool
            .apply(big_result, (log.clone(), 1_900_000))
            .expect("under the cap");
        assert_eq!(ok.len(), 1_900_000);
        assert_eq!(pool.workers_started(), 2, "{method:?}: a worker was blamed");
        let _ = std::fs::remove_file(&log);
    }
}

/// A value whose encoding fails for 7.
#[derive(Debug, PartialEq, serde::Deserialize)]
struct Picky(u64);

impl serde::Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 7 {
            return Err(serde::ser::Error::custom("seven cannot be encoded"));
        }
        s.serialize_u64(self.0 * 10 + 1)
    }
}

fn picky(x: u64) -> Picky {
    Picky(x)
}

fn a_result_that_cannot_be_encoded_spoils_no_other_item_of_its_chunk() {
    let pool = Pool::builder(1).chunksize(50).build().expect("pool");
    let results: Vec<_> = pool.imap(picky, 0..50u64).collect();
    for (i, r) in results.iter().enumerate() {
        if i == 7 {
            assert!(
                matches!(r, Err(TaskError::Failed(why)) if why.contains("cannot encode the result")
                    && why.contains("seven cannot be encoded")),
                "{r:?}"
            );
        } else {
            // Picky decodes what it encoded: x * 10 + 1.
            assert_eq!(r, &Ok(Picky(i as u64 * 10 + 1)), "item {i}");
        }
    }
}

/// Sends back what it got, with its first byte changed (so a result that
/// is not this child's shows).
fn process_round_trip(mut bytes: ByteBuf) -> ByteBuf {
    if let Some(first) = bytes.first_mut() {
        *first = 1;
    }
    bytes
}

fn unpick(p: Picky) -> u64 {
    p.0
}

fn an_item_that_cannot_be_encoded_fails_alone_in_imap_and_map() {
    let pool = Pool::new(2).expect("pool");
    let results: Vec<_> = pool.imap(unpick, (0..20u64).map(Picky)).collect();
    for (i, r) in results.iter().enumerate() {
        if i == 7 {
            assert!(
                matches!(r, Err(TaskError::Failed(why)) if why.contains("cannot encode the item")
                    && why.contains("seven cannot be encoded")),
                "{r:?}"
            );
        } else {
            assert_eq!(r, &Ok(i as u64 * 10 + 1), "item {i}");
        }
    }
    // map: the first failure is the error, at its index.
    match pool.map(unpick, (0..20u64).map(Picky)) {
        Err(PoolError::Task { index: 7, .. }) => {}
        other => panic!("expected item 7's error, got {other:?}"),
    }
}

fn a_process_takes_and_gives_a_hundred_megabytes_in_each_start_method() {
    const N: usize = 100_000_000;
    for method in METHODS {
        let mut child = outlast_ipc::Process::new(process_round_trip, ByteBuf::from(vec![4u8; N]))
            .start_method(method);
        child.start().unwrap_or_else(|e| panic!("{method:?}: {e}"));
        let back = child.join().unwrap_or_else(|e| panic!("{method:?}: {e}"));
        assert_eq!(back.len(), N, "{method:?}");
        assert_eq!(back[0], 1, "{method:?}");
        assert!(all_are(&back[1..], 4), "{method:?}");
    }
}

fn filled(n: usize) -> Vec<u8> {
    vec![5u8; n]
}

/// In a process of its own: the fresh pages (minor faults) that a child's
/// 40 MB result cost this process, its parent, from start to join.
fn faults_around_a_process_result(method: StartMethod) -> u64 {
    let before = minor_faults();
    let mut child = outlast_ipc::Process::new(filled, SIZE).start_method(method);
    child.start().expect("start");
    let back = child.join().expect("join");
    let faults = minor_faults() - before;
    assert!(back.len() == SIZE && all_are(&back, 5));
    faults
}

fn a_process_result_is_read_out_of_its_report_once() {
    let pages = SIZE as u64 / 4096;
    for method in METHODS {
        let mut p = outlast_ipc::Process::new(faults_around_a_process_result, method)
            .start_method(StartMethod::Spawn);
        p.start().expect("start");
        let faults = p.join().expect("join");
        // The value read from the report file into the vector returned
        // (9,782-9,825 faults measured for 9,765 pages). The whole frame
        // was read first, then the report decoded out of it, then the
        // value out of that: three copies (29,319), 400 ms for 100 MB
        // against 200 ms through a Queue.
        assert!(
            faults < pages + pages / 2,
            "{method:?}: joining a child's {pages}-page result wrote {faults} fresh pages"
        );
    }
}

fn a_pipe_carries_a_hundred_megabyte_message() {
    const N: usize = 100_000_000;
    let (mut ours, theirs) = outlast_ipc::Pipe::duplex().expect("pipe");
    let mut child = outlast_ipc::Process::new(
        |mut conn: outlast_ipc::Connection| -> usize {
            let got: ByteBuf = conn.recv().expect("recv");
            conn.send(&process_round_trip(got)).expect("send");
            N
        },
        theirs,
    );
    child.start().expect("start");
    ours.send(&ByteBuf::from(vec![8u8; N])).expect("send");
    let back: ByteBuf = ours.recv().expect("recv");
    assert_eq!(back.len(), N);
    assert_eq!(back[0], 1);
    assert!(all_are(&back[1..], 8));
    assert_eq!(child.join().expect("join"), N);
}
