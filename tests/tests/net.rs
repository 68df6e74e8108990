//! `outlast_ipc::net`: authenticated connections between unrelated processes over
//! Unix sockets and TCP. Right keys talk; a wrong key is refused on both
//! sides; a fake server cannot pass for one; garbage, a 4 GiB length and
//! silence are dropped with a typed error and the listener goes on; over
//! TCP, a relay on the path can neither inject nor replay a frame once the
//! handshake is done.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use outlast_ipc::net::{connect, Address, AuthError, Listener, NetError};
use outlast_ipc::{Process, StartMethod};
use tests::peak_alloc;

#[global_allocator]
static ALLOCATOR: peak_alloc::PeakAllocation = peak_alloc::PeakAllocation;

fn main() {
    outlast_ipc::init();
    tests::harness::run(tests::cases![
        typed_messages_over_unix_and_tcp_in_fork_and_spawn_children,
        a_wrong_key_is_refused_on_both_sides,
        a_server_without_the_key_cannot_pass_for_one,
        another_protocol_version_is_named,
        garbage_huge_lengths_and_silence_are_dropped_and_the_listener_goes_on,
        an_empty_key_is_refused,
        a_relay_cannot_inject_or_replay_a_frame_after_the_handshake,
        an_abstract_socket_serves_like_a_path_and_leaves_no_file,
        a_send_that_timed_out_before_a_byte_left_keeps_the_next_frames_authentic,
    ]);
}

/// A socket path unique to this test process (our listeners remove their
/// files when dropped; nothing is left in the temporary directory).
fn socket_path(name: &str) -> Address {
    let file = format!("ipc-net-{}-{name}", std::process::id());
    Address::Unix(std::env::temp_dir().join(file))
}

/// A client in a child: connects with `key`, sends `n`, expects `n + 1`.
fn client((address, key, n): (String, Vec<u8>, u64)) -> Result<u64, String> {
    let address: Address = address.parse().map_err(|e| format!("{e}"))?;
    let mut conn = connect(&address, &key).map_err(|e| e.to_string())?;
    conn.send(&n).map_err(|e| e.to_string())?;
    conn.recv::<u64>().map_err(|e| e.to_string())
}

/// A name in the abstract namespace, unique to this test process.
fn abstract_name(name: &str) -> Address {
    format!("@outlast-test-{}-{name}", std::process::id())
        .parse()
        .unwrap()
}

fn typed_messages_over_unix_and_tcp_in_fork_and_spawn_children() {
    for address in [
        socket_path("round.sock"),
        abstract_name("round"),
        "127.0.0.1:0".parse().unwrap(),
    ] {
        let listener = Listener::bind(&address, b"key").unwrap();
        for method in [StartMethod::Fork, StartMethod::Spawn] {
            let args = (listener.address().to_string(), b"key".to_vec(), 41);
            let mut child = Process::new(client, args).start_method(method);
            child.start().unwrap();
            let mut conn = listener.accept_timeout(Duration::from_secs(30)).unwrap();
            let n: u64 = conn.recv().unwrap();
            conn.send(&(n + 1)).unwrap();
            assert_eq!(child.join().unwrap(), Ok(42), "{address} {method:?}");
        }
    }
}

fn a_wrong_key_is_refused_on_both_sides() {
    let listener = Listener::bind(&socket_path("wrong.sock"), b"right").unwrap();
    let args = (listener.address().to_string(), b"wrong".to_vec(), 1);
    let mut child = Process::new(client, args);
    child.start().unwrap();
    match listener.accept_timeout(Duration::from_secs(30)) {
        Err(NetError::Auth(AuthError::WrongKey)) => {}
        other => panic!("{other:?}"),
    }
    let err = child.join().unwrap().unwrap_err();
    assert!(err.contains("refused our key"), "{err}");
}

/// Writes one frame as `Connection` frames it: a u32 LE length, the bytes.
fn write_frame(stream: &mut UnixStream, bytes: &[u8]) {
    stream
        .write_all(&(bytes.len() as u32).to_le_bytes())
        .unwrap();
    stream.write_all(bytes).unwrap();
}

fn read_frame(stream: &mut UnixStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut bytes = vec![0u8; u32::from_le_bytes(len) as usize];
    stream.read_exact(&mut bytes).unwrap();
    bytes
}

/// A fake server: speaks the handshake's first line, ignores the client's
/// proof, and claims success with a proof it cannot make.
fn fake_server(version: u32) -> (Address, std::thread::JoinHandle<()>) {
    let address = socket_path(&format!("fake-{version}.sock"));
    let Address::Unix(path) = &address else {
        unreachable!()
    };
    let _ = std::fs::remove_file(path);
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    let path = path.clone();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        // (A std listener leaves its file behind.)
        let _ = std::fs::remove_file(&path);
        let mut hello = b"ipc-auth".to_vec();
        hello.extend_from_slice(&version.to_le_bytes());
        hello.extend_from_slice(&[7u8; 32]);
        write_frame(&mut stream, &hello);
        if version == outlast_ipc::net::auth::PROTOCOL_VERSION {
            let _proof = read_frame(&mut stream);
            let mut welcome = b"welcome!".to_vec();
            welcome.extend_from_slice(&[0u8; 32]);
            write_frame(&mut stream, &welcome);
        }
        // Keep the socket open until the client has judged.
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    });
    (address, server)
}

fn a_server_without_the_key_cannot_pass_for_one() {
    let (address, server) = fake_server(outlast_ipc::net::auth::PROTOCOL_VERSION);
    // (A thread serves the fake: fork is refused while it runs, and the
    // client needs no process of its own to be tested.)
    match connect(&address, b"key") {
        Err(NetError::Auth(AuthError::WrongKey)) => {}
        other => panic!("{other:?}"),
    }
    server.join().unwrap();
}

fn another_protocol_version_is_named() {
    let (address, server) = fake_server(99);
    match connect(&address, b"key") {
        Err(NetError::Auth(AuthError::Version { theirs: 99 })) => {}
        other => panic!("{other:?}"),
    }
    server.join().unwrap();
}

fn garbage_huge_lengths_and_silence_are_dropped_and_the_listener_goes_on() {
    let address = socket_path("garbage.sock");
    let mut listener = Listener::bind(&address, b"key").unwrap();
    listener.set_handshake_timeout(Duration::from_millis(300));
    let Address::Unix(path) = &address else {
        unreachable!()
    };
    peak_alloc::reset();
    // Garbage: a well-formed frame of the wrong protocol.
    let mut garbage = UnixStream::connect(path).unwrap();
    write_frame(&mut garbage, b"GET / HTTP/1.1\r\n\r\n");
    match listener.accept_timeout(Duration::from_secs(30)) {
        Err(NetError::Auth(AuthError::NotOurProtocol)) => {}
        other => panic!("garbage: {other:?}"),
    }
    // A length prefix of 4 GiB: an error before any allocation.
    let mut huge = UnixStream::connect(path).unwrap();
    huge.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).unwrap();
    match listener.accept_timeout(Duration::from_secs(30)) {
        Err(NetError::Auth(AuthError::NotOurProtocol)) => {}
        other => panic!("4 GiB: {other:?}"),
    }
    assert!(
        peak_alloc::peak() < 1 << 20,
        "it allocated {} bytes for the length",
        peak_alloc::peak()
    );
    // Silence: a timeout, not a hang.
    let _silent = UnixStream::connect(path).unwrap();
    match listener.accept_timeout(Duration::from_secs(30)) {
        Err(NetError::Auth(AuthError::Timeout(_))) => {}
        other => panic!("silence: {other:?}"),
    }
    drop((garbage, huge));
    // And then an honest client is served.
    let args = (listener.address().to_string(), b"key".to_vec(), 9);
    let mut child = Process::new(client, args);
    child.start().unwrap();
    let mut conn = listener.accept_timeout(Duration::from_secs(30)).unwrap();
    let n: u64 = conn.recv().unwrap();
    conn.send(&(n + 1)).unwrap();
    assert_eq!(child.join().unwrap(), Ok(10));
}

fn an_empty_key_is_refused() {
    assert!(matches!(
        Listener::bind(&socket_path("empty.sock"), b""),
        Err(NetError::Auth(AuthError::EmptyKey))
    ));
    assert!(matches!(
        connect(&socket_path("nobody.sock"), b""),
        Err(NetError::Auth(AuthError::EmptyKey))
    ));
}

/// A TCP relay to `target` for one connection: forwards both ways, keeps
/// each chunk the client sent, and writes what is pushed on `inject`
/// toward the server.
struct Relay {
    address: Address,
    inject: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    sent: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

fn relay(target: std::net::SocketAddr) -> Relay {
    use std::sync::{Arc, Mutex};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener
        .local_addr()
        .expect("address")
        .to_string()
        .parse()
        .expect("address");
    let inject: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let sent: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let (to_inject, record) = (inject.clone(), sent.clone());
    std::thread::spawn(move || {
        let Ok((mut client, _)) = listener.accept() else {
            return;
        };
        let Ok(mut upstream) = std::net::TcpStream::connect(target) else {
            return;
        };
        let (mut up_read, mut client_write) = (
            upstream.try_clone().expect("clone"),
            client.try_clone().expect("clone"),
        );
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut up_read, &mut client_write);
        });
        client
            .set_read_timeout(Some(Duration::from_millis(10)))
            .expect("timeout");
        let mut buf = [0u8; 4096];
        loop {
            match client.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    record.lock().expect("lock").push(buf[..n].to_vec());
                    if upstream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return,
            }
            for frame in to_inject.lock().expect("lock").drain(..) {
                if upstream.write_all(&frame).is_err() {
                    return;
                }
            }
        }
    });
    Relay {
        address,
        inject,
        sent,
    }
}

/// Python's manager connections are authenticated only at the start: a
/// relay that lets the honest client through the handshake can then speak
/// in its name. Here every later TCP frame carries a tag under keys from
/// that handshake: a frame the relay makes up, or one it replays, is
/// refused as forged, never read as the client's.
fn a_relay_cannot_inject_or_replay_a_frame_after_the_handshake() {
    for attack in ["inject", "replay"] {
        let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap(), b"key").unwrap();
        let Address::Tcp(target) = listener.address().clone() else {
            panic!("not TCP")
        };
        let relay = relay(target);
        let server = std::thread::spawn(move || {
            let mut conn = listener.accept_timeout(Duration::from_secs(30)).unwrap();
            assert!(conn.is_authenticated());
            let first: u64 = conn.recv().unwrap();
            let second = conn.recv::<u64>();
            (first, second.map_err(|e| e.to_string()))
        });
        let mut conn = connect(&relay.address, b"key").unwrap();
        conn.send(&7u64).unwrap();
        // Wait until the relay has passed the honest frame on.
        let started = std::time::Instant::now();
        while relay.sent.lock().unwrap().len() < 2 {
            assert!(started.elapsed() < Duration::from_secs(30));
            std::thread::sleep(Duration::from_millis(5));
        }
        let forged = match attack {
            // A well-formed frame of our own: length, then postcard's 666.
            "inject" => {
                let payload = postcard::to_allocvec(&666u64).unwrap();
                [&(payload.len() as u32).to_le_bytes()[..], &payload].concat()
            }
            // The honest client's own frame, again.
            _ => relay.sent.lock().unwrap().last().unwrap().clone(),
        };
        relay.inject.lock().unwrap().push(forged);
        let (first, second) = server.join().unwrap();
        assert_eq!(first, 7, "{attack}");
        let why = second.expect_err("the forged frame was read");
        assert!(why.contains("failed its authentication"), "{attack}: {why}");
    }
}

/// Python's `Listener('\0name')`: spelled that way, `unix:@name` or
/// `@name`, an abstract socket listens, authenticates and serves as a path
/// does (a manager's local lanes included), and leaves no file behind.
fn an_abstract_socket_serves_like_a_path_and_leaves_no_file() {
    let pythons: Address = format!("\0outlast-test-{}-py", std::process::id())
        .parse()
        .unwrap();
    let name = format!("outlast-test-{}-py", std::process::id());
    assert_eq!(pythons, Address::Abstract(name.clone().into_bytes()));
    assert_eq!(pythons.to_string(), format!("unix:@{name}"));
    assert_eq!(pythons.to_string().parse::<Address>().unwrap(), pythons);
    assert!("@".parse::<Address>().is_err(), "an empty name");
    assert!(format!("@{}", "x".repeat(108)).parse::<Address>().is_err());
    let listener = Listener::bind(&pythons, b"key").unwrap();
    // A second listener on the same name is refused, as for a live path.
    assert!(Listener::bind(&pythons, b"key").is_err());
    let args = (pythons.to_string(), b"key".to_vec(), 1);
    let mut child = Process::new(client, args);
    child.start().unwrap();
    let mut conn = listener.accept_timeout(Duration::from_secs(30)).unwrap();
    let n: u64 = conn.recv().unwrap();
    conn.send(&(n + 1)).unwrap();
    assert_eq!(child.join().unwrap(), Ok(2));
    assert!(matches!(
        connect(&pythons, b"wrong key"),
        Err(NetError::Auth(_))
    ));
    drop(listener);
    assert!(
        connect(&pythons, b"key").is_err(),
        "nobody listens any more"
    );
    // A manager served there: its local clients get lanes.
    let at = abstract_name("manager");
    let manager = outlast_ipc::manager::Manager::serve(&at, b"manager key").unwrap();
    let remote = outlast_ipc::manager::Manager::connect(&at, b"manager key").unwrap();
    let d = remote
        .open::<outlast_ipc::manager::Dict<u32, u32>>("d")
        .unwrap();
    d.set(&1, &2).unwrap();
    let mine = manager
        .open::<outlast_ipc::manager::Dict<u32, u32>>("d")
        .unwrap();
    assert_eq!(mine.get(&1).unwrap(), Some(2));
}

/// Connects to `address` with `key`, waits for the word on `go`, then
/// reads byte frames until a 3-byte one: how many came, or why one failed.
fn read_when_told(
    (address, key, mut go): (String, Vec<u8>, outlast_ipc::Connection),
) -> Result<usize, String> {
    let address: Address = address.parse().map_err(|e| format!("{e}"))?;
    let mut conn = connect(&address, &key).map_err(|e| e.to_string())?;
    go.recv::<u8>().map_err(|e| e.to_string())?;
    let mut n = 0;
    loop {
        let frame = conn
            .recv_bytes_timeout(Duration::from_secs(30))
            .map_err(|e| format!("after {n} frames: {e}"))?;
        n += 1;
        if frame.len() == 3 {
            return Ok(n);
        }
    }
}

/// Over TCP, each frame carries a tag over a count both ends keep. A send
/// that times out before a byte of its frame left (the peer not reading),
/// blocking or awaited, takes its count back: the frames after it pass
/// their check. Before, the sender's count ran one ahead, and every later
/// frame failed its authentication at the peer ("injected, replayed or
/// altered on the way"): the connection was lost.
fn a_send_that_timed_out_before_a_byte_left_keeps_the_next_frames_authentic() {
    use std::future::Future;
    let key = b"a key of ours".to_vec();
    let address: Address = "127.0.0.1:0".parse().expect("an address");
    let listener = Listener::bind(&address, &key).expect("a listener");
    let (mut go, theirs) = outlast_ipc::Pipe::duplex().expect("a pipe");
    let mut reader = Process::new(
        read_when_told,
        (listener.address().to_string(), key.clone(), theirs),
    );
    reader.start().expect("start");
    let mut conn = listener
        .accept_timeout(Duration::from_secs(30))
        .expect("accepted");
    let frame = vec![1u8; 256 * 1024];
    let (mut sent, mut timed_out) = (0, 0);
    while timed_out < 3 && sent < 10_000 {
        match conn.send_bytes_timeout(&frame, Duration::from_millis(1)) {
            Ok(()) => sent += 1,
            Err(_) => timed_out += 1,
        }
    }
    assert_eq!(timed_out, 3, "the socket never filled");
    // An awaited send finds it full too, and is dropped.
    if !conn.has_unsent() {
        let mut waiting = Box::pin(conn.send_async(&7u64));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(
            waiting.as_mut().poll(&mut cx).is_pending(),
            "room after all"
        );
    }
    go.send(&1u8).expect("told");
    conn.send_bytes_timeout(b"end", Duration::from_secs(30))
        .expect("the last frame");
    let got = reader.join().expect("the reader ended");
    assert_eq!(got, Ok(sent + 1));
}
