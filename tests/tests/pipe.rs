//! End-to-end tests of `outlast_ipc::Pipe` between real processes: peers killed in
//! the middle of a send or a receive, garbage and wild lengths on the wire,
//! and the timeout forms. Single-threaded harness (these tests fork).

use std::os::fd::AsRawFd;
use std::time::Duration;

use outlast_ipc::codec::{self, DecodeError, EncodeError};
use outlast_ipc::{
    Connection, Pipe, Process, RecvError, RecvTimeoutError, SendError, SendTimeoutError,
    StartMethod, TryRecvError,
};
use tests::{cases, harness, peak_alloc};

#[global_allocator]
static ALLOCATOR: peak_alloc::PeakAllocation = peak_alloc::PeakAllocation;

const LONG: Duration = Duration::from_secs(30);

fn main() {
    outlast_ipc::init();
    harness::run(cases![
        peer_killed_mid_send_is_disconnected,
        peer_killed_in_the_middle_of_a_large_frame,
        peer_killed_while_receiving_is_disconnected,
        wild_length_is_an_error_before_allocation,
        undecodable_payload_is_skipped,
        random_garbage_never_panics_or_hangs,
        writer_exit_drains_then_disconnects,
        timeouts_and_polls,
        send_timeout_on_a_full_pipe_keeps_frames_whole,
        a_large_frame_left_unsent_goes_out_whole_in_many_writes,
        a_connection_keeps_no_large_buffer_once_a_frame_is_out,
        direction_and_size_errors,
        buffered_messages_travel_with_the_handle,
        try_recv_on_a_socket_takes_partial_frames_wild_lengths_and_death,
        recv_bytes_into_a_slice_at_an_offset_as_pythons,
        a_large_frame_asks_for_a_large_send_buffer,
        ends_that_send_everything_before_they_receive_do_not_wait_for_each_other,
        two_ends_that_send_100_mb_at_once_both_get_through,
        a_cloned_end_takes_in_nothing_while_it_waits_to_send,
        a_waiting_send_takes_in_a_bounded_amount,
    ]);
}

/// Sends each of its messages, then exits.
fn send_each((mut conn, messages): (Connection, Vec<Vec<u8>>)) -> Result<(), String> {
    for m in &messages {
        conn.send_bytes(m).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Python's `conn.recv_bytes_into(buf, offset)`: the message lands at the
/// offset; one longer than the room is `BufferTooShort` with the message
/// whole, and the next message is still there; an offset past the end is
/// refused before anything is taken.
fn recv_bytes_into_a_slice_at_an_offset_as_pythons() {
    use outlast_ipc::pipe::RecvIntoError;
    let (ours, theirs) = Pipe::duplex().unwrap();
    let long = vec![7u8; 100_000];
    let messages = vec![
        b"hello".to_vec(),
        long.clone(),
        b"after".to_vec(),
        Vec::new(),
    ];
    let mut sender = Process::new(send_each, (theirs, messages));
    sender.start().unwrap();
    let mut conn = ours;
    let mut buf = [0u8; 16];
    assert!(matches!(
        conn.recv_bytes_into(&mut buf, 17),
        Err(RecvIntoError::OffsetOutOfBounds {
            offset: 17,
            len: 16
        })
    ));
    assert_eq!(conn.recv_bytes_into(&mut buf, 11).unwrap(), 5);
    assert_eq!(&buf[11..], b"hello");
    match conn.recv_bytes_into(&mut buf, 0) {
        Err(RecvIntoError::BufferTooShort(message)) => assert_eq!(message, long),
        other => panic!("a long message gave {other:?}"),
    }
    assert_eq!(
        conn.recv_bytes_into_timeout(&mut buf, 16 - 5, Duration::from_secs(30))
            .unwrap(),
        5
    );
    assert_eq!(&buf[11..], b"after");
    // An empty message fits at the very end.
    assert_eq!(conn.recv_bytes_into(&mut buf, 16).unwrap(), 0);
    assert_eq!(sender.join().unwrap(), Ok(()));
    assert!(matches!(
        conn.recv_bytes_into_timeout(&mut buf, 0, Duration::from_millis(50)),
        Err(RecvIntoError::Recv(RecvError::Disconnected))
    ));
}

/// Writes raw bytes on the connection and optionally dies by SIGKILL.
fn write_raw_then(args: (Connection, Vec<u8>, bool)) {
    let (conn, bytes, die) = args;
    let mut rest: &[u8] = &bytes;
    while !rest.is_empty() {
        // SAFETY: writing from a valid slice to our own descriptor.
        let n = unsafe { libc::write(conn.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() != std::io::ErrorKind::WouldBlock {
                return; // the reader is gone
            }
            let mut pfd = libc::pollfd {
                fd: conn.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, 1000) };
            continue;
        }
        rest = &rest[n as usize..];
    }
    if die {
        // SAFETY: raising a signal against ourselves.
        unsafe { libc::raise(libc::SIGKILL) };
    }
}

/// Sends numbered messages until the pipe breaks.
fn numbered_sender(mut conn: Connection) {
    for i in 0u64.. {
        if conn.send(&(i, format!("message {i}"))).is_err() {
            return;
        }
    }
}

fn peer_killed_mid_send_is_disconnected() {
    for method in [StartMethod::Fork, StartMethod::Spawn] {
        // Half a frame: a header announcing 100 bytes, then 10 of them, then death.
        let mut bytes = 100u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[1u8; 10]);
        let (mut rx, tx) = Pipe::simplex().expect("pipe");
        let mut p = Process::new(write_raw_then, (tx, bytes, true)).start_method(method);
        p.start().expect("start");
        match rx.recv_timeout::<Vec<u8>>(LONG) {
            Err(RecvTimeoutError::Recv(RecvError::Disconnected)) => {}
            other => panic!("{method:?}: expected Disconnected, got {other:?}"),
        }
        assert!(p.join().is_err());
        assert_eq!(p.exit_code(), Some(-9));
    }

    // A real kill from outside, while the child is busy sending.
    let (mut rx, tx) = Pipe::simplex().expect("pipe");
    let mut p = Process::new(numbered_sender, tx);
    p.start().expect("start");
    for expected in 0..1000u64 {
        let (i, text): (u64, String) = rx.recv_timeout(LONG).expect("message");
        assert_eq!((i, text), (expected, format!("message {expected}")));
    }
    p.kill().expect("kill");
    assert!(p.join().is_err());
    let mut next = 1000u64;
    loop {
        match rx.recv_timeout::<(u64, String)>(LONG) {
            Ok((i, text)) => {
                assert_eq!(
                    (i, text),
                    (next, format!("message {next}")),
                    "in order and intact"
                );
                next += 1;
            }
            Err(e) => {
                assert!(e.is_disconnected(), "expected Disconnected, got {e:?}");
                break;
            }
        }
    }
}

fn send_big(mut conn: Connection) -> bool {
    conn.send_bytes(&vec![7u8; 8 << 20]).is_ok()
}

fn peer_killed_in_the_middle_of_a_large_frame() {
    let (mut rx, tx) = Pipe::simplex().expect("pipe");
    let mut p = Process::new(send_big, tx);
    p.start().expect("start");
    // Data in the pipe: the 8 MiB frame has started and cannot have finished.
    assert!(rx.poll(LONG).expect("poll"));
    p.kill().expect("kill");
    assert!(matches!(p.join(), Err(outlast_ipc::JoinError::Signaled(_))));
    match rx.recv_bytes_timeout(LONG) {
        Err(RecvTimeoutError::Recv(RecvError::Disconnected)) => {}
        other => panic!("expected Disconnected, got {:?}", other.map(|v| v.len())),
    }
}

fn block_in_recv(mut conn: Connection) -> u32 {
    conn.recv::<u32>().unwrap_or(0)
}

fn peer_killed_while_receiving_is_disconnected() {
    for duplex in [false, true] {
        let (mut ours, theirs) = if duplex {
            let (a, b) = Pipe::duplex().expect("pipe");
            (a, b)
        } else {
            let (r, w) = Pipe::simplex().expect("pipe");
            (w, r)
        };
        let mut p = Process::new(block_in_recv, theirs);
        p.start().expect("start");
        p.kill().expect("kill");
        assert!(p.join().is_err());
        // No SIGPIPE kills us: the dead reader is an error value.
        let payload = vec![0u8; 1 << 20];
        match ours.send_bytes_timeout(&payload, LONG) {
            Err(e) if e.is_disconnected() => {}
            other => panic!("duplex={duplex}: expected Disconnected, got {other:?}"),
        }
        if duplex {
            assert!(matches!(ours.recv::<u32>(), Err(RecvError::Disconnected)));
        }
    }
}

fn wild_length_is_an_error_before_allocation() {
    let (mut rx, tx) = Pipe::simplex().expect("pipe");
    let mut header = 0xFFFF_FFF0u32.to_le_bytes().to_vec();
    header.extend_from_slice(&[0u8; 64]);
    let mut p = Process::new(write_raw_then, (tx, header, false));
    p.start().expect("start");
    peak_alloc::reset();
    match rx.recv_timeout::<Vec<u8>>(LONG) {
        Err(RecvTimeoutError::Recv(RecvError::Frame(DecodeError::TooLarge { len, max }))) => {
            assert_eq!(len, 0xFFFF_FFF0);
            assert_eq!(max, codec::DEFAULT_MAX_FRAME_SIZE);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let peak = peak_alloc::peak();
    assert!(
        peak <= 1 << 20,
        "a wild length led to a {peak}-byte allocation"
    );
    // The stream cannot be resynchronized: the error stays.
    assert!(matches!(
        rx.try_recv::<Vec<u8>>(),
        Err(TryRecvError::Recv(RecvError::Frame(_)))
    ));
    p.join().expect("join");

    // A smaller per-connection maximum is enforced the same way.
    let (mut rx, tx) = Pipe::simplex().expect("pipe");
    rx.set_max_frame_size(1024);
    let frame = codec::encode_frame(&vec![1u8; 2000], usize::MAX).expect("encode");
    let mut p = Process::new(write_raw_then, (tx, frame, false));
    p.start().expect("start");
    assert!(matches!(
        rx.recv_timeout::<Vec<u8>>(LONG),
        Err(RecvTimeoutError::Recv(RecvError::Frame(
            DecodeError::TooLarge { max: 1024, .. }
        )))
    ));
    p.join().expect("join");
}

fn undecodable_payload_is_skipped() {
    let mut bytes = 3u32.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[0xFF, 0xFF, 0xFF]);
    bytes.extend(codec::encode_frame(&7u32, 1024).expect("encode"));
    let (mut rx, tx) = Pipe::simplex().expect("pipe");
    let mut p = Process::new(write_raw_then, (tx, bytes, false));
    p.start().expect("start");
    match rx.recv_timeout::<String>(LONG) {
        Err(RecvTimeoutError::Recv(RecvError::Frame(DecodeError::Malformed(_)))) => {}
        other => panic!("expected Malformed, got {other:?}"),
    }
    assert_eq!(rx.recv_timeout::<u32>(LONG).expect("the next frame"), 7);
    assert!(rx
        .recv_timeout::<u32>(LONG)
        .is_err_and(|e| e.is_disconnected()));
    p.join().expect("join");
}

fn random_garbage_never_panics_or_hangs() {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for round in 0..20 {
        let len = 1 + (round * 997) % 20_000;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let (mut rx, tx) = Pipe::simplex().expect("pipe");
        rx.set_max_frame_size(64 * 1024);
        let mut p = Process::new(write_raw_then, (tx, bytes, false));
        p.start().expect("start");
        let mut ended = false;
        for _ in 0..100_000 {
            match rx.recv_timeout::<(u32, String, Vec<u16>)>(LONG) {
                Ok(_)
                | Err(RecvTimeoutError::Recv(RecvError::Frame(DecodeError::Malformed(_))))
                | Err(RecvTimeoutError::Recv(RecvError::Frame(DecodeError::TrailingBytes {
                    ..
                }))) => {}
                Err(RecvTimeoutError::Recv(RecvError::Disconnected))
                | Err(RecvTimeoutError::Recv(RecvError::Frame(DecodeError::TooLarge { .. }))) => {
                    ended = true;
                    break;
                }
                Err(other) => panic!("round {round}: unexpected {other:?}"),
            }
        }
        assert!(ended, "round {round}: garbage never ended the stream");
        drop(rx);
        p.join().expect("join");
    }
}

fn send_three(mut conn: Connection) {
    for word in ["a", "b", "c"] {
        let _ = conn.send(word);
    }
}

fn writer_exit_drains_then_disconnects() {
    let (mut rx, tx) = Pipe::simplex().expect("pipe");
    let mut p = Process::new(send_three, tx);
    p.start().expect("start");
    p.join().expect("join");
    let got: Vec<String> = (0..3).map(|_| rx.recv().expect("message")).collect();
    assert_eq!(got, ["a", "b", "c"]);
    assert!(matches!(rx.recv::<String>(), Err(RecvError::Disconnected)));
    assert!(
        rx.poll(Duration::ZERO).expect("poll"),
        "end of file counts as ready"
    );
}

fn timeouts_and_polls() {
    let (mut a, mut b) = Pipe::duplex().expect("pipe");
    assert!(matches!(a.try_recv::<u32>(), Err(TryRecvError::Empty)));
    assert!(a
        .recv_timeout::<u32>(Duration::from_millis(20))
        .is_err_and(|e| e.is_timeout()));
    assert!(!a.poll(Duration::from_millis(5)).expect("poll"));
    b.send(&5u32).expect("send");
    assert!(a.poll(LONG).expect("poll"));
    assert_eq!(a.try_recv::<u32>().expect("ready"), 5);
}

fn send_timeout_on_a_full_pipe_keeps_frames_whole() {
    for duplex in [false, true] {
        let (mut rx, mut tx) = if duplex {
            Pipe::duplex().expect("pipe")
        } else {
            Pipe::simplex().expect("pipe")
        };
        let message = |i: u32| vec![(i % 251) as u8; 10_000];
        let mut sent = 0u32;
        loop {
            match tx.send_timeout(&message(sent), Duration::from_millis(20)) {
                Ok(()) => sent += 1,
                Err(SendTimeoutError::Timeout) => break,
                Err(e) => panic!("duplex={duplex}: unexpected {e:?}"),
            }
            assert!(sent < 100_000, "a pipe nobody reads never filled up");
        }
        assert!(sent > 0);
        // A message that timed out after starting is kept and finished first.
        let pending = tx.has_unsent();
        let mut received = 0u32;
        while received < sent {
            let got: Vec<u8> = rx.recv_timeout(LONG).expect("message");
            assert_eq!(got, message(received), "duplex={duplex}");
            received += 1;
            if pending {
                tx.flush_timeout(Duration::from_millis(1)).ok();
            }
        }
        tx.send(&message(sent)).expect("send after draining");
        assert_eq!(rx.recv::<Vec<u8>>().expect("last"), message(sent));
    }
}

/// A server's way of replying: never waiting, so a 24 MB frame goes out
/// in many writes as a slow reader makes room, each from where the last
/// stopped; the frame and the one after it arrive whole and in order.
fn a_large_frame_left_unsent_goes_out_whole_in_many_writes() {
    let (mut rx, mut tx) = Pipe::duplex().expect("pipe");
    let large: Vec<u8> = (0..24_000_000u32).map(|i| (i % 253) as u8).collect();
    tx.send_timeout(&large, Duration::ZERO).expect("started");
    assert!(tx.has_unsent(), "24 MB fit a socket's buffer at once");
    let reader = std::thread::spawn(move || {
        let first: Vec<u8> = rx.recv_timeout(LONG).expect("the large frame");
        let second: u32 = rx.recv_timeout(LONG).expect("the next frame");
        (first, second)
    });
    let mut flushes = 0;
    while tx.has_unsent() {
        let _ = tx.flush_timeout(Duration::ZERO);
        flushes += 1;
        std::thread::sleep(Duration::from_micros(200));
        assert!(flushes < 1_000_000, "the reader stopped reading");
    }
    tx.send(&7u32).expect("the next frame");
    let (first, second) = reader.join().expect("reader");
    assert!(first == large, "the large frame changed on the way");
    assert_eq!(second, 7);
}

/// After a 20 MB message has gone out (whole, or through a timed-out send
/// and its flush), the sending connection holds no buffer of that size.
fn a_connection_keeps_no_large_buffer_once_a_frame_is_out() {
    let (mut rx, mut tx) = Pipe::duplex().expect("pipe");
    let reader = std::thread::spawn(move || {
        // Each as raw bytes: a value's encoding adds its length (4 bytes).
        for extra in [4, 4, 0, 4] {
            let got = rx.recv_bytes().expect("a message");
            assert_eq!(got.len(), (20 << 20) + extra);
        }
    });
    let before = peak_alloc::held();
    for value in [true, false] {
        // As a value (encoded into the connection's buffer) and as bytes.
        let message = vec![9u8; 20 << 20];
        if value {
            tx.send(&message).expect("sent whole");
        } else {
            tx.send_bytes(&message).expect("sent whole");
        }
        // Started once the reader has made room: a send buffer still full
        // of the message before (4 MiB asked for a large frame) takes no
        // byte, which is a timeout with nothing kept.
        loop {
            match tx.send_timeout(&message, Duration::ZERO) {
                Ok(()) => break,
                Err(SendTimeoutError::Timeout) => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => panic!("not started: {e}"),
            }
        }
        while tx.has_unsent() {
            let _ = tx.flush_timeout(Duration::from_millis(10));
        }
    }
    let kept = peak_alloc::held() - before;
    assert!(kept < 1 << 20, "the connection kept {kept} bytes");
    reader.join().expect("reader");
}

fn direction_and_size_errors() {
    let (mut rx, mut tx) = Pipe::simplex().expect("pipe");
    assert!(matches!(rx.send(&1u8), Err(SendError::NotWritable)));
    assert!(matches!(tx.recv::<u8>(), Err(RecvError::NotReadable)));
    tx.set_max_frame_size(100);
    match tx.send_bytes(&[0u8; 101]) {
        Err(SendError::Encode(EncodeError::TooLarge { len: 101, max: 100 })) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    match tx.send(&vec![0u8; 200]) {
        Err(SendError::Encode(EncodeError::TooLarge { max: 100, .. })) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // Nothing was written by the refused sends.
    tx.send_bytes(b"fits").expect("send");
    assert_eq!(rx.recv_bytes().expect("recv"), b"fits");
    // A handle outside a Process argument refuses to serialize.
    assert!(codec::encode_frame(&rx, 1024).is_err());
}

fn receive_rest(mut conn: Connection) -> Vec<String> {
    let mut got = Vec::new();
    while let Ok(word) = conn.recv::<String>() {
        got.push(word);
    }
    got
}

fn buffered_messages_travel_with_the_handle() {
    for method in [StartMethod::Fork, StartMethod::Spawn] {
        let (mut rx, mut tx) = Pipe::simplex().expect("pipe");
        for word in ["one", "two", "three"] {
            tx.send(word).expect("send");
        }
        drop(tx);
        // One read pulls all three frames into rx's buffer; two stay unread.
        assert_eq!(rx.recv::<String>().expect("first"), "one");
        let mut p = Process::new(receive_rest, rx).start_method(method);
        p.start().expect("start");
        assert_eq!(p.join().expect("join"), ["two", "three"], "{method:?}");
    }
}

/// `try_recv` on a socket reads without polling first (one `recv` with
/// `MSG_DONTWAIT`): half a frame is `Empty` until the rest comes, a wild
/// length is an error without a big allocation, a killed peer is
/// `Disconnected`.
fn try_recv_on_a_socket_takes_partial_frames_wild_lengths_and_death() {
    let frame = codec::encode_frame(&"whole".to_string(), usize::MAX).expect("encode");
    let (mut rx, tx) = Pipe::duplex().expect("socketpair");
    let mut p = Process::new(write_raw_then, (tx, frame[..3].to_vec(), false));
    p.start().expect("start");
    p.join().expect("join");
    // Half a frame, then the writer gone: disconnected, not "empty" for ever.
    assert!(matches!(
        rx.try_recv::<String>(),
        Err(TryRecvError::Recv(RecvError::Disconnected))
    ));

    let (mut rx, tx) = Pipe::duplex().expect("socketpair");
    let (first, rest) = frame.split_at(3);
    let mut p = Process::new(
        write_raw_then,
        (tx.try_clone().expect("clone"), first.to_vec(), false),
    );
    p.start().expect("start");
    p.join().expect("join");
    assert!(matches!(rx.try_recv::<String>(), Err(TryRecvError::Empty)));
    let mut p = Process::new(write_raw_then, (tx, rest.to_vec(), true));
    p.start().expect("start");
    let _ = p.join();
    drop(p);
    assert!(rx.poll(LONG).expect("poll"));
    assert_eq!(rx.try_recv::<String>().expect("the whole frame"), "whole");
    assert!(matches!(
        rx.try_recv::<String>(),
        Err(TryRecvError::Recv(RecvError::Disconnected))
    ));

    let (mut rx, tx) = Pipe::duplex().expect("socketpair");
    let mut p = Process::new(
        write_raw_then,
        (tx, vec![0xF0, 0xFF, 0xFF, 0xFF, 1, 2], false),
    );
    p.start().expect("start");
    p.join().expect("join");
    assert!(rx.poll(LONG).expect("poll"));
    peak_alloc::reset();
    assert!(matches!(
        rx.try_recv::<Vec<u8>>(),
        Err(TryRecvError::Recv(RecvError::Frame(
            DecodeError::TooLarge { .. }
        )))
    ));
    assert!(peak_alloc::peak() <= 1 << 20);
}

/// The socket's send buffer in bytes, as the kernel reports it.
fn send_buffer(conn: &Connection) -> usize {
    let mut size: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `size`, an int.
    let rc = unsafe {
        libc::getsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&mut size as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "getsockopt");
    usize::try_from(size).expect("a size")
}

/// With the default send buffer (about 200 KiB) a 100 MB frame crossed a
/// socket in some 500 turns of writer and reader waking each other; the
/// first frame of 1 MiB or more asks for 4 MiB (capped by the kernel at
/// `net.core.wmem_max`, then doubled, as it reports it), small ones
/// leave the default alone.
fn a_large_frame_asks_for_a_large_send_buffer() {
    let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_max")
        .expect("wmem_max")
        .trim()
        .parse()
        .expect("a number");
    let (mut ours, theirs) = Pipe::duplex().unwrap();
    let default = send_buffer(&ours);
    let mut reader = Process::new(count_bytes, theirs);
    reader.start().unwrap();
    ours.send_bytes(&vec![1u8; 1000]).unwrap();
    assert_eq!(send_buffer(&ours), default, "a small frame changes nothing");
    ours.send_bytes(&vec![2u8; 8 << 20]).unwrap();
    assert_eq!(send_buffer(&ours), 2 * wmem_max.min(4 << 20));
    drop(ours);
    assert_eq!(reader.join().unwrap(), 1000 + (8 << 20));
}

/// Bytes of every message until the other end closes.
fn count_bytes(mut conn: Connection) -> usize {
    let mut total = 0;
    while let Ok(m) = conn.recv_bytes() {
        total += m.len();
    }
    total
}

/// Sends back each number it receives, doubled, until the end of file.
fn echo_doubled(mut conn: Connection) {
    while let Ok(n) = conn.recv::<u64>() {
        if conn.send(&(n * 2)).is_err() {
            break;
        }
    }
}

/// A first program's shape: every task sent, then every result read. Past
/// the sockets' buffers each side waited for the other to read (Python's
/// pipes still do); a waiting send now takes the results in meanwhile.
fn ends_that_send_everything_before_they_receive_do_not_wait_for_each_other() {
    let (mut ours, theirs) = Pipe::duplex().expect("pipe");
    let mut p = Process::new(echo_doubled, theirs);
    p.start().expect("start");
    // About 2 MB each way, ten times the sockets' buffers.
    let n = 300_000u64;
    for i in 0..n {
        ours.send(&i).expect("send");
    }
    let mut total = 0u64;
    for i in 0..n {
        let got: u64 = ours.recv_timeout(LONG).expect("a result");
        assert_eq!(got, i * 2, "in order");
        total += got;
    }
    assert_eq!(total, n * (n - 1));
    drop(ours);
    p.join().expect("join");
}

const SWAPPED: usize = 100 << 20;

/// Sends `SWAPPED` bytes of `fill`, then receives the other side's: true
/// if they are all `!fill`.
fn swap_big((mut conn, fill): (Connection, u8)) -> bool {
    if conn.send_bytes(&vec![fill; SWAPPED]).is_err() {
        return false;
    }
    conn.recv_bytes()
        .is_ok_and(|got| got.len() == SWAPPED && got.iter().all(|&b| b == !fill))
}

/// Both ends send a 100 MB message before either receives: each send
/// takes the other's frame in whole (a frame that has begun is not cut at
/// the bound), so both finish.
fn two_ends_that_send_100_mb_at_once_both_get_through() {
    let (ours, theirs) = Pipe::duplex().expect("pipe");
    let mut p = Process::new(swap_big, (theirs, 0x0f));
    p.start().expect("start");
    assert!(swap_big((ours, 0xf0)), "ours arrived whole");
    assert!(p.join().expect("join"), "theirs arrived whole");
}

/// With a second handle on the same end, a waiting send takes nothing in:
/// what it took would be the other handle's to receive. One thread sends
/// every task through one handle while another reads every result through
/// its clone.
fn a_cloned_end_takes_in_nothing_while_it_waits_to_send() {
    let (mut ours, theirs) = Pipe::duplex().expect("pipe");
    let mut reader = ours.try_clone().expect("clone");
    let mut p = Process::new(echo_doubled, theirs);
    p.start().expect("start");
    let n = 300_000u64;
    let results = std::thread::spawn(move || {
        let mut total = 0u64;
        for _ in 0..n {
            match reader.recv_timeout::<u64>(LONG) {
                Ok(got) => total += got,
                Err(e) => return Err(format!("after {total}: {e}")),
            }
        }
        Ok(total)
    });
    for i in 0..n {
        ours.send(&i).expect("send");
    }
    assert_eq!(results.join().expect("reader"), Ok(n * (n - 1)));
    drop(ours);
    p.join().expect("join");
}

/// Writes numbered 1 MiB frames straight to the socket until its peer is
/// gone; never receives (a `Connection` that waits to send would take in).
fn flood(conn: Connection) {
    use std::io::Write;
    let Ok(fd) = nix::unistd::dup(&conn) else {
        return;
    };
    let mut socket = std::os::unix::net::UnixStream::from(fd);
    for i in 0u32.. {
        let mut frame = vec![0u8; 4 + (1 << 20)];
        frame[..4].copy_from_slice(&(1u32 << 20).to_le_bytes());
        frame[4..8].copy_from_slice(&i.to_le_bytes());
        if socket.write_all(&frame).is_err() {
            return;
        }
    }
}

/// A peer that sends without end and never reads: a waiting send takes in
/// at most 64 MiB (and the frame that has begun), then only waits, and
/// what it took comes out of the next receives whole and in order.
fn a_waiting_send_takes_in_a_bounded_amount() {
    let (mut ours, theirs) = Pipe::duplex().expect("pipe");
    let mut p = Process::new(flood, theirs);
    p.start().expect("start");
    let message = vec![1u8; 16 << 20];
    let before = peak_alloc::held();
    // It never reads: the send runs out of time, with its tail kept.
    let sent = ours.send_bytes_timeout(&message, Duration::from_secs(3));
    assert!(
        matches!(sent, Ok(()) | Err(SendTimeoutError::Timeout)),
        "{sent:?}"
    );
    // The inbox, and the message's tail if part of it went.
    let held = peak_alloc::held() - before;
    assert!(
        (32 << 20..(81 << 20)).contains(&held),
        "took in {held} bytes"
    );
    p.kill().expect("kill");
    let _ = p.join();
    // What was taken in, then what the kernel still held, then the end.
    let mut received = 0u32;
    loop {
        match ours.recv_bytes_timeout(LONG) {
            Ok(got) => {
                assert_eq!(got.len(), 1 << 20);
                assert_eq!(got[..4], received.to_le_bytes(), "whole and in order");
                received += 1;
            }
            Err(e) => {
                assert!(e.is_disconnected(), "{e:?}");
                break;
            }
        }
    }
    assert!((40..90).contains(&received), "{received} messages");
}
