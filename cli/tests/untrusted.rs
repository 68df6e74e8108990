//! A worker is untrusted: these tests stop a real worker, write into its
//! shared segments through `/proc/<pid>/fd` (what a wild pointer in it
//! could write), ring its doorbell, and let it go on. Whatever was written,
//! the supervisor lives, the worker is replaced (or its write refused),
//! the answer is exact, and nothing hangs.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use outlast_ipc::spsc::raw::RawChannel;
use outlast_worker::heartbeat::WorkerState;
use tests::attack::{segment_mappings, Victim};

const PRIMES: &str = "-w 2 --limit 2e9 --chunk 1e6";
const PI_2E9: u64 = 98_222_287;

/// Runs the primes job, does `harm` to one stopped worker, and returns
/// the finished run, whether the worker was gone before it was continued,
/// and its pid.
fn attack(harm: impl FnOnce(&Victim)) -> (Run, bool, u32) {
    let child = supervisor(PRIMES).spawn().expect("start the supervisor");
    let victim_pid = wait_for_workers(child.id(), 2, &[])[0];
    // A worker exists before it maps its rings: wait for them, not a guess.
    wait_for_rings(victim_pid);
    // Let it take tasks first, so there is something to re-queue.
    std::thread::sleep(Duration::from_millis(30));
    let victim = Victim::stop(victim_pid);
    assert_eq!(victim.channels().len(), 2, "a worker holds its two rings");
    harm(&victim);
    let gone = victim.release(Duration::from_secs(2));
    let run = finish(child);
    (run, gone, victim_pid)
}

/// Waits until `worker` maps its two rings.
fn wait_for_rings(worker: u32) {
    wait_until("the worker to map its two rings", || {
        (segment_mappings(worker).len() >= 2).then_some(())
    });
}

fn assert_exact(run: &Run) {
    assert_eq!(run.code, 0, "{}\n{}", run.report, run.events);
    assert_eq!(run.report["result"], PI_2E9.to_string(), "{}", run.report);
    assert_eq!(run.report["tasks"]["done"], run.report["tasks"]["total"]);
    assert_eq!(run.report["tasks"]["dead"], 0);
}

/// Exact, and the victim was replaced: killed by the supervisor, or dead
/// of its own corrupted link (its exit is a crash then).
fn assert_replaced(run: &Run, victim: u32) {
    assert_exact(run);
    assert!(!is_running(victim), "the victim still runs");
    let killed = run.report["restarts"]["killed"].as_u64().unwrap_or(0);
    let crashes = run.report["restarts"]["crashes"].as_u64().unwrap_or(0);
    assert!(killed + crashes >= 1, "{}\n{}", run.report, run.events);
}

fn assert_killed_for(run: &Run, victim: u32, kind: &str) {
    assert_replaced(run, victim);
    assert_eq!(
        run.report["restarts"]["kill_causes"][kind], 1,
        "{}\n{}",
        run.report, run.events
    );
}

#[test]
fn no_segment_can_be_truncated() {
    let (run, gone, _) = attack(|victim| {
        for shm in &victim.segments {
            let shrunk = nix::unistd::ftruncate(shm.as_fd(), 0);
            assert_eq!(
                shrunk,
                Err(nix::errno::Errno::EPERM),
                "sealed against shrinking"
            );
            let grown = nix::unistd::ftruncate(shm.as_fd(), 1 << 30);
            assert_eq!(
                grown,
                Err(nix::errno::Errno::EPERM),
                "sealed against growing"
            );
        }
    });
    assert!(!gone, "nothing to notice: the worker goes on");
    assert_exact(&run);
    assert_eq!(run.report["restarts"]["killed"], 0, "{}", run.events);
    assert_eq!(run.report["restarts"]["crashes"], 0, "{}", run.events);
}

#[test]
fn random_bytes_over_either_ring_get_the_worker_replaced() {
    for seed in 1..=3u64 {
        for results in [true, false] {
            let (run, _, pid) = attack(|victim| {
                let channel = if results {
                    victim.results()
                } else {
                    victim.tasks()
                };
                Victim::scribble(&channel, seed);
            });
            assert_replaced(&run, pid);
        }
    }
}

#[test]
fn a_record_length_of_all_ones_is_a_corrupted_link() {
    let (run, _, pid) = attack(|victim| {
        let results = victim.results();
        let tail = results.tail().load(Ordering::Acquire);
        let word = (tail as usize % results.capacity()) / 8;
        results.ring()[word].store(RawChannel::message_header(u32::MAX), Ordering::Release);
        results.tail().store(tail + 8, Ordering::Release);
    });
    assert_killed_for(&run, pid, "corrupted its link");
}

#[test]
fn a_tail_moved_backwards_far_ahead_or_unaligned_is_a_corrupted_link() {
    type Change = fn(u64, u64) -> u64;
    let changes: [(&str, Change); 3] = [
        ("backwards", |tail, _cap| tail.saturating_sub(8)),
        ("far ahead", |tail, cap| tail + 4 * cap),
        ("unaligned near the end", |tail, cap| {
            (tail / cap + 1) * cap - 4
        }),
    ];
    for (name, change) in changes {
        let (run, _, pid) = attack(|victim| {
            let results = victim.results();
            let tail = results.tail().load(Ordering::Acquire);
            assert!(tail >= 8, "the worker said Ready");
            let cap = results.capacity() as u64;
            results.tail().store(change(tail, cap), Ordering::Release);
        });
        assert_killed_for(&run, pid, "corrupted its link");
        println!("{name}: killed as expected");
    }
}

#[test]
fn a_head_moved_anywhere_never_steers_the_supervisor() {
    type Change = fn(u64, u64) -> u64;
    let changes: [Change; 3] = [
        |head, _cap| head.saturating_sub(64),
        |head, cap| head + 8 * cap,
        |head, cap| (head / cap + 1) * cap - 4,
    ];
    for change in changes {
        let (run, _, _) = attack(|victim| {
            let tasks = victim.tasks();
            let head = tasks.head().load(Ordering::Acquire);
            let cap = tasks.capacity() as u64;
            tasks.head().store(change(head, cap), Ordering::Release);
        });
        // The supervisor kills it on its next send, or the worker's own
        // next take overwrites the word: either way the answer is exact.
        assert_exact(&run);
    }
}

#[test]
fn wild_heartbeat_values_are_forgeries() {
    // Words of the slot: pid, state (with the current task + 1 above its
    // low 8 bits), reserved, tasks done, last beat.
    for (word, value) in [
        (4usize, u64::MAX), // a beat in the far future
        (1, 77),            // an unknown state
        (0, 1),             // another pid
    ] {
        let (run, gone, pid) = attack(|victim| {
            victim.results().aux()[word].store(value, Ordering::Release);
        });
        assert!(gone, "killed while still stopped");
        assert_killed_for(&run, pid, "forged its heartbeat");
    }
    // Busy with a task it does not hold.
    let (run, gone, pid) = attack(|victim| {
        let results = victim.results();
        let busy = outlast_worker::heartbeat::pack(WorkerState::Busy, Some(1 << 40));
        results.aux()[1].store(busy, Ordering::Release);
    });
    assert!(gone);
    assert_killed_for(&run, pid, "forged its heartbeat");
}

#[test]
fn a_heartbeat_of_zero_blames_only_its_own_worker() {
    // What once got an innocent sibling killed over and over: a stale beat
    // is now only ever in the writer's own slot.
    let (run, _, pid) = attack(|victim| {
        victim.results().aux()[4].store(0, Ordering::Release);
    });
    assert_exact(&run);
    let killed = run.report["restarts"]["killed"].as_u64().unwrap_or(0);
    assert!(killed <= 1, "only the writer may be killed: {}", run.events);
    let _ = pid;
}

#[test]
fn a_worker_maps_no_segment_but_its_own() {
    let child = supervisor("-w 3 --limit 2e9 --chunk 1e6")
        .spawn()
        .expect("start");
    let supervisor_pid = child.id();
    let workers = wait_for_workers(supervisor_pid, 3, &[]);
    wait_for_rings(workers[0]);
    wait_until("the supervisor to map its three workers' rings", || {
        (segment_mappings(supervisor_pid).len() >= 6).then_some(())
    });
    let victim = Victim::stop(workers[0]);
    let own = segment_mappings(victim.pid);
    assert_eq!(own.len(), 2, "its two rings and nothing else: {own:?}");
    // Where the supervisor maps its other workers' rings, the victim has
    // nothing: a write there through its own memory fails.
    let theirs: Vec<(u64, u64)> = segment_mappings(supervisor_pid)
        .into_iter()
        .filter(|m| !own.contains(m))
        .collect();
    assert!(
        theirs.len() >= 4,
        "the supervisor maps its workers' rings: {theirs:?}"
    );
    let mem = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{}/mem", victim.pid))
        .expect("open the victim's memory");
    for (start, _) in &theirs {
        use std::os::unix::fs::FileExt;
        assert!(
            mem.write_at(&[0xff; 64], *start).is_err(),
            "address {start:#x} is mapped in the victim"
        );
    }
    drop(mem);
    victim.release(Duration::ZERO);
    let run = finish(child);
    assert_exact(&run);
}

#[test]
fn a_flood_of_well_formed_records_with_the_head_rewound_is_taken_in_turns() {
    let (run, _, _) = attack(|victim| {
        let results = victim.results();
        let ready = postcard::to_allocvec(&outlast_worker::protocol::FromWorker::Ready {
            protocol: outlast_worker::protocol::PROTOCOL_VERSION,
            pid: victim.pid,
        })
        .expect("encode");
        let mut tail = results.tail().load(Ordering::Acquire);
        let head = results.head().load(Ordering::Acquire);
        let cap = results.capacity() as u64;
        let record = 8 + ready.len().next_multiple_of(8) as u64;
        // Fill the ring with records the supervisor accepts.
        while tail + record - head <= cap && tail % cap + record <= cap {
            let at = (tail % cap) as usize / 8;
            let ring = results.ring();
            ring[at].store(
                RawChannel::message_header(ready.len() as u32),
                Ordering::Release,
            );
            let mut payload = ready.clone();
            payload.resize(ready.len().next_multiple_of(8), 0);
            for (i, chunk) in payload.chunks(8).enumerate() {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                ring[at + 1 + i].store(u64::from_le_bytes(word), Ordering::Release);
            }
            tail += record;
        }
        results.tail().store(tail, Ordering::Release);
        results.head().store(0, Ordering::Release);
    });
    assert_exact(&run);
}
