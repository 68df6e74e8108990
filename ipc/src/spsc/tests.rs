//! The channel against a peer that corrupts what it can write: every
//! impossible word or record is `Corrupted`, nothing is read or written
//! outside the ring, and good traffic survives laps of wrapping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::layout::{Header, KIND_MESSAGE};
use super::*;

fn cell(tx: &Sender) -> &crate::shm::cell::ShmCell<Header> {
    tx.end.seg.cell().expect("an open end")
}

fn header(tx: &Sender) -> &Header {
    cell(tx).state()
}

fn ring_word(tx: &Sender, at: usize) -> &AtomicU64 {
    assert!(at + 8 <= tx.end.cap && at % 8 == 0);
    // SAFETY: inside the ring, 8-aligned; atomics only.
    unsafe { &*(cell(tx).extra_ptr().add(tx.end.aux_bytes + at) as *const AtomicU64) }
}

#[test]
fn messages_of_every_size_come_back_intact_over_many_laps() {
    let (mut tx, mut rx) = channel(1024, 2).expect("channel");
    assert_eq!(tx.capacity(), 1024);
    let mut out = Vec::new();
    let mut x = 7u64;
    for i in 0..5000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 300) as usize;
        let message: Vec<u8> = (0..len).map(|j| (i as u8).wrapping_add(j as u8)).collect();
        tx.try_send(&message).expect("room: the receiver keeps up");
        assert!(rx.try_recv_into(&mut out).expect("receive"));
        assert_eq!(out, message, "message {i}");
    }
    assert!(!rx.try_recv_into(&mut out).expect("empty"));
}

/// A record larger than half the ring, where it would have to start a
/// new lap that it cannot fit behind: before, it waited for room that an
/// empty ring could never give (a pool's 900 KB result after a 300 KB
/// one hung for good). Now the lap's end is skipped and the record goes
/// once the receiver has taken the skip, at every position in the ring.
#[test]
fn a_record_over_half_the_ring_goes_from_any_position() {
    let (mut tx, mut rx) = channel(1024, 0).expect("channel");
    let mut out = Vec::new();
    for first in (0..1000).step_by(8) {
        // Somewhere in the ring, then empty again.
        tx.try_send(&vec![1u8; first]).expect("room");
        assert!(rx.try_recv_into(&mut out).expect("receive"));
        for big in [520, 900, 1016] {
            let message: Vec<u8> = (0..big).map(|i| i as u8).collect();
            let mut tries = 0;
            while let Err(e) = tx.try_send(&message) {
                assert!(matches!(e, TrySendError::Full), "{e:?}");
                tries += 1;
                assert!(tries <= 1, "{big} B after {first} B: never fits");
                // Takes the skipped lap's end: no message there.
                assert!(!rx.try_recv_into(&mut out).expect("the skip"));
            }
            assert!(rx.try_recv_into(&mut out).expect("receive"));
            assert_eq!(out, message, "{big} B after {first} B");
        }
    }
}

#[test]
fn a_full_ring_says_full_and_a_huge_message_too_large() {
    let (mut tx, mut rx) = channel(256, 0).expect("channel");
    let mut sent = 0;
    while tx.try_send(&[1u8; 40]).is_ok() {
        sent += 1;
    }
    assert_eq!(sent, 256 / 48);
    assert!(matches!(tx.try_send(&[0u8; 40]), Err(TrySendError::Full)));
    assert!(matches!(
        tx.try_send(&[0u8; 300]),
        Err(TrySendError::TooLarge { .. })
    ));
    let mut buf = Vec::new();
    assert_eq!(rx.drain(100, &mut buf, &mut |_| {}), Ok(sent));
    assert!(tx.try_send(&[1u8; 40]).is_ok());
}

#[test]
fn impossible_tails_are_corrupted_and_stay_so() {
    for bad in [4u64, 2000, u64::MAX] {
        let (tx, mut rx) = channel(1024, 0).expect("channel");
        header(&tx).tail.0.store(bad, Ordering::Release);
        let mut out = Vec::new();
        assert!(
            matches!(rx.try_recv_into(&mut out), Err(SpscError::Corrupted(_))),
            "tail {bad}"
        );
        header(&tx).tail.0.store(0, Ordering::Release);
        assert!(matches!(
            rx.try_recv_into(&mut out),
            Err(SpscError::Corrupted(_))
        ));
    }
    // A tail moved backwards after it was seen.
    let (mut tx, mut rx) = channel(1024, 0).expect("channel");
    tx.try_send(b"one").expect("send");
    tx.try_send(b"two").expect("send");
    let mut out = Vec::new();
    assert!(rx.try_recv_into(&mut out).expect("first"));
    header(&tx).tail.0.store(16, Ordering::Release);
    assert!(rx
        .try_recv_into(&mut out)
        .expect("second, from what was seen"));
    assert!(matches!(
        rx.try_recv_into(&mut out),
        Err(SpscError::Corrupted(_))
    ));
}

#[test]
fn wild_records_are_corrupted() {
    for word in [
        u64::from(u32::MAX) | (u64::from(KIND_MESSAGE) << 32),
        2000 | (u64::from(KIND_MESSAGE) << 32),
        5 | (0xdead_beef << 32),
    ] {
        let (mut tx, mut rx) = channel(1024, 0).expect("channel");
        tx.try_send(b"hello").expect("send");
        ring_word(&tx, 0).store(word, Ordering::Release);
        let mut out = Vec::new();
        assert!(
            matches!(rx.try_recv_into(&mut out), Err(SpscError::Corrupted(_))),
            "{word:#x}"
        );
    }
    // A length that fits the ring but not what the tail vouches for.
    let (mut tx, mut rx) = channel(1024, 0).expect("channel");
    tx.try_send(b"hello").expect("send");
    ring_word(&tx, 0).store(100 | (u64::from(KIND_MESSAGE) << 32), Ordering::Release);
    let mut out = Vec::new();
    assert!(matches!(
        rx.try_recv_into(&mut out),
        Err(SpscError::Corrupted(_))
    ));
}

#[test]
fn impossible_heads_are_corrupted_for_the_sender() {
    for bad in [4u64, 8, 4096, u64::MAX - 7] {
        let (mut tx, _rx) = channel(1024, 0).expect("channel");
        header(&tx).head.0.store(bad, Ordering::Release);
        assert!(
            matches!(
                tx.try_send(b"x"),
                Err(TrySendError::Failed(SpscError::Corrupted(_)))
            ),
            "head {bad}"
        );
    }
}

#[test]
fn a_flood_is_taken_a_bounded_number_at_a_time() {
    let (mut tx, mut rx) = channel(1 << 16, 0).expect("channel");
    let mut sent = 0;
    while tx.try_send(&[3u8; 8]).is_ok() {
        sent += 1;
    }
    let mut buf = Vec::new();
    let mut total = 0;
    loop {
        let n = rx.drain(64, &mut buf, &mut |_| {}).expect("drain");
        assert!(n <= 64);
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(total, sent);
}

#[test]
fn a_dropped_sender_disconnects_after_the_last_record() {
    let (mut tx, mut rx) = channel(1024, 0).expect("channel");
    tx.try_send(b"last words").expect("send");
    drop(tx);
    let mut out = Vec::new();
    assert_eq!(
        rx.recv_timeout_into(&mut out, Duration::from_secs(5)),
        Ok(true)
    );
    assert_eq!(out, b"last words");
    assert_eq!(
        rx.recv_timeout_into(&mut out, Duration::from_secs(5)),
        Err(SpscError::Disconnected)
    );
}

#[test]
fn a_receive_times_out_on_an_empty_ring() {
    let (_tx, mut rx) = channel(1024, 0).expect("channel");
    let mut out = Vec::new();
    assert_eq!(
        rx.recv_timeout_into(&mut out, Duration::from_millis(30)),
        Ok(false)
    );
}

#[test]
fn the_aux_words_are_shared_by_both_ends() {
    let (tx, rx) = channel(1024, 3).expect("channel");
    assert_eq!(tx.aux().len(), 8, "rounded up to a cache line");
    tx.aux()[2].store(42, Ordering::Release);
    assert_eq!(rx.aux()[2].load(Ordering::Acquire), 42);
}

#[test]
fn the_segment_is_sealed() {
    let (tx, _rx) = channel(1024, 0).expect("channel");
    assert!(cell(&tx).segment().is_sealed());
    let fd = cell(&tx).segment().as_fd();
    assert!(
        nix::unistd::ftruncate(fd, 0).is_err(),
        "a sealed memfd cannot shrink"
    );
}

#[test]
fn a_parked_end_refuses_until_opened_and_its_peer_sees_nothing_until_then() {
    let (mut tx, mut rx) =
        channel_parked(1024, 1, |aux| aux[0].store(7, Ordering::Release)).expect("channel");
    assert!(!tx.is_open() && !rx.is_open());
    assert!(tx.aux().is_empty());
    assert!(matches!(
        tx.try_send(b"x"),
        Err(TrySendError::Failed(SpscError::Parked))
    ));
    let mut out = Vec::new();
    assert_eq!(rx.try_recv_into(&mut out), Err(SpscError::Parked));
    tx.open().expect("open");
    rx.open().expect("open");
    assert_eq!(
        rx.aux()[0].load(Ordering::Acquire),
        7,
        "aux set up before parking"
    );
    tx.try_send(b"now").expect("send");
    assert!(rx.try_recv_into(&mut out).expect("receive"));
    assert_eq!(out, b"now");
}

thread_local! {
    /// How many times this thread's sender woke a sleeping receiver.
    pub(super) static RECEIVER_WAKES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A receiver that raised its flag and has not run since (woken, but on
/// one CPU it runs only when the sender stops) costs its sender one
/// wake-up call, not one per message. Played here by raising the flag as
/// a receiver about to sleep does.
#[test]
fn a_receiver_slow_to_run_costs_its_sender_one_wake_up() {
    const MESSAGES: u64 = 1_000;
    let (mut tx, mut rx) = channel(64 * 1024, 0).expect("channel");
    header(&tx).receiver_sleeping.0.store(1, Ordering::SeqCst);
    let before = RECEIVER_WAKES.with(|n| n.get());
    for n in 0..MESSAGES {
        tx.try_send(&n.to_le_bytes()).expect("room");
    }
    let wakes = RECEIVER_WAKES.with(|n| n.get()) - before;
    assert_eq!(wakes, 1, "{wakes} wake-ups for {MESSAGES} sends");
    let mut out = Vec::new();
    for n in 0..MESSAGES {
        assert!(rx.try_recv_into(&mut out).expect("a message"));
        assert_eq!(out, n.to_le_bytes());
    }
}

/// A receiver asleep on an empty ring wakes for the next message, and for
/// its sender's end, each time.
#[test]
fn a_sleeping_receiver_wakes_for_each_message_and_for_the_end() {
    let (mut tx, mut rx) = channel(64 * 1024, 0).expect("channel");
    let receiver = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut got = Vec::new();
        loop {
            match rx.recv_timeout_into(&mut out, Duration::from_secs(30)) {
                Ok(true) => got.push(u64::from_le_bytes(out[..8].try_into().expect("8 bytes"))),
                Ok(false) => return Err("timed out: a wake-up was missed".to_string()),
                Err(SpscError::Disconnected) => return Ok(got),
                Err(e) => return Err(e.to_string()),
            }
        }
    });
    for n in 0..200u64 {
        // Let the receiver fall asleep before each message.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while header(&tx).receiver_sleeping.0.load(Ordering::Acquire) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the receiver never slept"
            );
            std::thread::yield_now();
        }
        tx.try_send(&n.to_le_bytes()).expect("room");
    }
    drop(tx);
    let got = receiver
        .join()
        .expect("the receiver")
        .expect("every message, then the end");
    assert_eq!(got, (0..200).collect::<Vec<u64>>());
}
