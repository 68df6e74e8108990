//! `supervisor manager serve`: the standalone manager over loopback TCP,
//! started as a real process, with honest clients beside hostile peers
//! (a wrong key, garbage, a 4 GiB length, silence, 200 connections at
//! once, half a frame, a client that never reads): each refused or
//! dropped with a log line, the honest client served throughout, the
//! server's memory bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outlast_ipc::manager::{Dict, Manager, ManagerError, Queue};
use outlast_ipc::net::{Address, AuthError};

const PATIENCE: Duration = Duration::from_secs(30);

struct Server {
    child: Child,
    address: Address,
    key: Vec<u8>,
    log: Arc<Mutex<Vec<String>>>,
    dir: PathBuf,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        Server::start_at("127.0.0.1:0", extra)
    }

    fn start_at(listen: &str, extra: &[&str]) -> Server {
        let dir = std::env::temp_dir().join(format!(
            "manager-serve-test-{}-{}",
            std::process::id(),
            extra.len() as u64 * 1000 + rand_tag()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let key_file = dir.join("key");
        let key = format!("test-key-{}", rand_tag()).into_bytes();
        std::fs::write(&key_file, [key.as_slice(), b"\n"].concat()).unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_supervisor"))
            .args(["manager", "serve", "--listen", listen, "--authkey-file"])
            .arg(&key_file)
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send(addr.to_string());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let address = rx
            .recv_timeout(PATIENCE)
            .expect("the server never listened");
        Server {
            child,
            address: address.parse().unwrap(),
            key,
            log,
            dir,
        }
    }

    fn connect(&self) -> Manager {
        Manager::connect(&self.address, &self.key).unwrap()
    }

    fn tcp(&self) -> TcpStream {
        let Address::Tcp(addr) = self.address else {
            panic!("not TCP")
        };
        TcpStream::connect(addr).unwrap()
    }

    /// Waits until a log line contains `what`.
    fn logged(&self, what: &str) -> bool {
        let started = Instant::now();
        while started.elapsed() < PATIENCE {
            if self.log.lock().unwrap().iter().any(|l| l.contains(what)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    fn rss_kb(&self) -> u64 {
        outlast_ipc::os::procfs::resident_kb(self.child.id()).expect("the server's memory")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_tag() -> u64 {
    let mut b = [0u8; 8];
    outlast_ipc::os::random::fill(&mut b).unwrap();
    u64::from_le_bytes(b) % 1_000_000
}

/// 100 set+get round trips on `results`, each checked.
fn honest_round_trips(manager: &Manager, tag: u64) {
    let d = manager.open::<Dict<u64, u64>>("results").unwrap();
    for i in 0..100 {
        d.set(&(tag * 1000 + i), &i).unwrap();
        assert_eq!(d.get(&(tag * 1000 + i)).unwrap(), Some(i));
    }
}

#[test]
fn two_remote_clients_share_a_queue_and_a_dict_by_name() {
    let server = Server::start(&[]);
    let producer = server.connect();
    let jobs = producer.open::<Queue<Option<u64>>>("jobs").unwrap();
    for n in 1..=50 {
        jobs.put(&Some(n)).unwrap();
    }
    jobs.put(&None).unwrap();
    jobs.put(&None).unwrap();
    let address = server.address.clone();
    let key = server.key.clone();
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let (address, key) = (address.clone(), key.clone());
            std::thread::spawn(move || {
                let m = Manager::connect(&address, &key).unwrap();
                let jobs = m.open::<Queue<Option<u64>>>("jobs").unwrap();
                let results = m.open::<Dict<u64, u64>>("squares").unwrap();
                let mut done = 0;
                while let Some(n) = jobs.get().unwrap() {
                    results.set(&n, &(n * n)).unwrap();
                    done += 1;
                }
                done
            })
        })
        .collect();
    let done: u64 = consumers.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(done, 50);
    let results = producer.open::<Dict<u64, u64>>("squares").unwrap();
    assert_eq!(results.len().unwrap(), 50);
    assert_eq!(results.values().unwrap().iter().sum::<u64>(), 42_925);
}

#[test]
fn a_wrong_key_is_refused_both_ways_and_logged() {
    let server = Server::start(&[]);
    let honest = server.connect();
    honest_round_trips(&honest, 1);
    // Client side: this process holds a connection to the same address
    // already; a wrong key must still prove itself, and fail.
    match Manager::connect(&server.address, b"wrong key") {
        Err(ManagerError::Auth(AuthError::Refused)) => {}
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a wrong key was let in"),
    }
    assert!(server.logged("the peer does not know the key"));
    // Server side: an honest listener with another key refuses us...
    let other =
        outlast_ipc::net::Listener::bind(&"127.0.0.1:0".parse().unwrap(), b"other key").unwrap();
    let other_address = other.address().clone();
    let answering = std::thread::spawn(move || {
        let _ = other.accept();
    });
    assert!(matches!(
        Manager::connect(&other_address, &server.key),
        Err(ManagerError::Auth(AuthError::Refused))
    ));
    answering.join().unwrap();
    // ...and a lying one, which welcomes anybody, cannot pass for the
    // manager: it cannot prove the key back.
    let liar = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let liar_address: Address = liar.local_addr().unwrap().to_string().parse().unwrap();
    let lying = std::thread::spawn(move || {
        let (mut s, _) = liar.accept().unwrap();
        let frame = |payload: &[u8]| [&(payload.len() as u32).to_le_bytes()[..], payload].concat();
        let mut hello = b"ipc-auth".to_vec();
        hello.extend_from_slice(&outlast_ipc::net::PROTOCOL_VERSION.to_le_bytes());
        hello.extend_from_slice(&[5; 32]);
        s.write_all(&frame(&hello)).unwrap();
        let mut answer = [0u8; 4 + 8 + 4 + 64];
        s.read_exact(&mut answer).unwrap();
        let mut welcome = b"welcome!".to_vec();
        welcome.extend_from_slice(&[0; 32]);
        s.write_all(&frame(&welcome)).unwrap();
    });
    match Manager::connect(&liar_address, &server.key) {
        Err(ManagerError::Auth(AuthError::WrongKey)) => {}
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a fake server fooled the client"),
    }
    lying.join().unwrap();
    honest_round_trips(&honest, 2);
}

#[test]
fn garbage_a_huge_length_and_silence_are_dropped_with_log_lines() {
    let server = Server::start(&["--handshake-timeout", "1"]);
    let honest = server.connect();
    let mut garbage = server.tcp();
    garbage.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut huge = server.tcp();
    huge.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).unwrap();
    let silent = server.tcp();
    honest_round_trips(&honest, 3);
    assert!(server.logged("does not speak this protocol"));
    assert!(server.logged("no handshake within"));
    // Each was closed by the server: reading gives end of file (or a reset).
    for mut stream in [garbage, huge, silent] {
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    }
    honest_round_trips(&honest, 4);
}

#[test]
fn two_hundred_connections_at_once_leave_the_honest_client_served_in_bounded_memory() {
    let server = Server::start(&["--handshake-timeout", "2"]);
    let honest = server.connect();
    honest_round_trips(&honest, 5);
    let before = server.rss_kb();
    let crowd: Vec<TcpStream> = (0..200).map(|_| server.tcp()).collect();
    // Half of them start a frame and stop.
    for (i, mut s) in crowd.iter().enumerate() {
        if i % 2 == 0 {
            let _ = s.write_all(&[200, 0]);
        }
    }
    honest_round_trips(&honest, 6);
    // A new honest client gets in while the crowd is there.
    let late = server.connect();
    honest_round_trips(&late, 7);
    assert!(server.logged("too many handshakes at once"));
    let after = server.rss_kb();
    assert!(
        after < before + 16 * 1024,
        "the server grew from {before} kB to {after} kB"
    );
    drop(crowd);
    honest_round_trips(&honest, 8);
}

#[test]
fn a_client_that_never_reads_its_replies_stalls_nobody_and_is_dropped() {
    use outlast_ipc::manager::{Kind, Op, Reply, Request};
    use std::os::fd::{AsRawFd, BorrowedFd};
    let server = Server::start(&[]);
    let honest = server.connect();
    // Authenticated, makes a list of 600 kB, then asks for it over and
    // over without reading a reply.
    let mut rude = outlast_ipc::net::connect(&server.address, &server.key).unwrap();
    rude.send(&Request::Create(Kind::List)).unwrap();
    let Reply::Created(id) = rude.recv::<Reply>().unwrap() else {
        panic!("no list made");
    };
    rude.send(&Request::On {
        id,
        op: Op::Extend(vec![vec![7; 60_000]; 10]),
    })
    .unwrap();
    assert_eq!(rude.recv::<Reply>().unwrap(), Reply::Done);
    let whole = Request::On {
        id,
        op: Op::Slice(0, u64::MAX),
    };
    for _ in 0..50 {
        if rude
            .send_timeout(&whole, Duration::from_millis(100))
            .is_err()
        {
            break;
        }
    }
    // Another sends the first byte of a frame's header and stops.
    let half = outlast_ipc::net::connect(&server.address, &server.key).unwrap();
    // SAFETY: the descriptor is `half`'s, open for as long as `half` lives.
    let fd = unsafe { BorrowedFd::borrow_raw(half.as_raw_fd()) };
    nix::unistd::write(fd, &[9]).unwrap();
    honest_round_trips(&honest, 9);
    assert!(server.logged("does not read its replies"));
    honest_round_trips(&honest, 10);
    drop((rude, half));
}

#[test]
fn an_idle_client_is_dropped_and_its_proxy_reconnects() {
    let server = Server::start(&["--idle-timeout", "1"]);
    let m = server.connect();
    let d = m.open::<Dict<String, u32>>("idle").unwrap();
    d.set(&"a".into(), &1).unwrap();
    assert!(server.logged("idle for"));
    // The proxy's connection was closed meanwhile; the call still works.
    assert_eq!(d.get(&"a".into()).unwrap(), Some(1));
    // A lock holder is never dropped for being idle.
    let lock = m.open::<outlast_ipc::manager::Lock>("held").unwrap();
    let held = lock.acquire().unwrap();
    let before = server.log.lock().unwrap().len();
    std::thread::sleep(Duration::from_millis(2500));
    let idle_drops = server.log.lock().unwrap()[before..]
        .iter()
        .filter(|l| l.contains("idle for"))
        .count();
    assert_eq!(idle_drops, 0, "a lock holder was dropped as idle");
    held.release().unwrap();
}

/// Past `--max-clients`, the client silent longest that holds nothing
/// makes room for a new one; when every client holds something, the new
/// one is refused and told.
#[test]
fn past_the_client_limit_the_idlest_makes_room_and_a_busy_server_refuses() {
    let server = Server::start(&["--max-clients", "1"]);
    let first = server.connect();
    honest_round_trips(&first, 11);
    let connect = || {
        let (address, key) = (server.address.clone(), server.key.clone());
        std::thread::spawn(move || Manager::connect(&address, &key).map(|_| ()))
    };
    assert!(
        connect().join().unwrap().is_ok(),
        "an idle client kept a new one out"
    );
    assert!(server.logged("the idlest of"));
    // This thread's client comes back (making room again) and holds a lock:
    // now nobody can be let go for a newcomer.
    let lock = first.open::<outlast_ipc::manager::Lock>("busy").unwrap();
    let _held = lock.acquire().unwrap();
    assert!(matches!(
        connect().join().unwrap(),
        Err(ManagerError::Auth(_))
    ));
    assert!(server.logged("clients already"));
    lock.release().unwrap();
    honest_round_trips(&first, 12);
}

#[test]
fn a_bad_key_file_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("manager-key-{}", rand_tag()));
    std::fs::create_dir_all(&dir).unwrap();
    let open_key = dir.join("open");
    std::fs::write(&open_key, "k").unwrap();
    std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let empty = dir.join("empty");
    std::fs::write(&empty, "\n").unwrap();
    std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o600)).unwrap();
    for (file, says) in [
        (open_key, "can be read by others"),
        (empty, "is empty"),
        (dir.join("missing"), "cannot read the key"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_supervisor"))
            .args([
                "manager",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--authkey-file",
            ])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_local_client_that_corrupts_its_lane_is_dropped_alone() {
    use outlast_ipc::manager::{Reply, Request};
    use outlast_ipc::shm::SharedMemory;
    use outlast_ipc::spsc::raw::RawChannel;
    use std::os::fd::AsRawFd;
    let socket = std::env::temp_dir().join(format!("manager-lane-{}.sock", rand_tag()));
    let listen = format!("unix:{}", socket.display());
    let server = Server::start_at(&listen, &[]);
    let honest = server.connect();
    honest_round_trips(&honest, 13);
    for seed in 1..=3u64 {
        // A client that takes a lane, then scribbles over its rings.
        let mut rogue = outlast_ipc::net::connect(&server.address, &server.key).unwrap();
        rogue.send(&Request::OpenLane).unwrap();
        let (bytes, fds) = rogue.recv_bytes_with_fds(PATIENCE).unwrap();
        assert!(matches!(
            postcard::from_bytes::<Reply>(&bytes),
            Ok(Reply::Lane(_))
        ));
        // A lane is two ring segments, a doorbell pipe and a spill socket.
        let mut segments = Vec::new();
        let mut bell = None;
        let mut spill_ports = 0;
        for fd in fds {
            let target = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            if target.starts_with("/memfd:") {
                segments.push(SharedMemory::from_fd(fd).expect("a ring segment"));
            } else if target.starts_with("pipe:") {
                bell = Some(fd);
            } else if target.starts_with("socket:") {
                spill_ports += 1;
            }
        }
        assert_eq!(segments.len(), 2, "a lane is two rings");
        assert_eq!(spill_ports, 1, "a lane has one spill port");
        let bell = bell.expect("a lane has a doorbell pipe");
        for shm in &segments {
            let ring = RawChannel::new(shm).expect("a ring");
            tests::attack::Victim::scribble(&ring, seed);
        }
        // SAFETY: one byte from a valid buffer to a descriptor we own.
        let rung = unsafe { libc::write(bell.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
        let why = std::io::Error::last_os_error();
        // A server still polling its lanes may have found the scribbles and
        // closed the lane before the ring: a broken pipe says just that.
        assert!(
            rung == 1 || why.raw_os_error() == Some(libc::EPIPE),
            "the doorbell rings: {why}"
        );
        honest_round_trips(&honest, 14 + seed);
        drop(segments);
        drop(rogue);
    }
    assert!(
        server.logged("its lane is corrupted") || server.logged("not a request"),
        "no log line for the corrupted lanes"
    );
    honest_round_trips(&honest, 20);
    let _ = std::fs::remove_file(&socket);
}

/// A raw client of `server`'s for the hostile tests, with the ids of the
/// honest client's "units" semaphore and "big" list (8 MB: a reply the
/// socket cannot take at once).
struct Rogue {
    conn: outlast_ipc::Connection,
    units: u64,
    big: u64,
}

impl Rogue {
    fn connect(server: &Server) -> Rogue {
        use outlast_ipc::manager::Kind;
        let conn = outlast_ipc::net::connect(&server.address, &server.key).unwrap();
        let mut rogue = Rogue {
            conn,
            units: 0,
            big: 0,
        };
        let one_unit = Kind::Semaphore {
            value: 1,
            bounded: false,
            owned: false,
        };
        rogue.units = rogue.open("units", one_unit);
        rogue.big = rogue.open("big", Kind::List);
        rogue
    }

    /// Opens `name` (made as `kind` if new): its id.
    fn open(&mut self, name: &str, kind: outlast_ipc::manager::Kind) -> u64 {
        use outlast_ipc::manager::{Reply, Request};
        let open = Request::Open {
            name: name.into(),
            kind,
            exact: false,
        };
        self.conn.send(&open).unwrap();
        match self.conn.recv_timeout::<Reply>(PATIENCE) {
            Ok(Reply::Created(id)) => id,
            other => panic!("{name} by name: {other:?}"),
        }
    }

    /// Opens its lane: the lane's descriptors.
    fn open_lane(&mut self) -> Vec<std::os::fd::OwnedFd> {
        self.conn
            .send(&outlast_ipc::manager::Request::OpenLane)
            .unwrap();
        let (_, fds) = self.conn.recv_bytes_with_fds(PATIENCE).unwrap();
        assert_eq!(fds.len(), 4, "two rings, a doorbell and a spill port");
        fds
    }

    /// Asks for the 8 MB list and reads nothing: the server, its reply
    /// half sent, reads no more of this socket until it is read.
    fn stall(&mut self) {
        use outlast_ipc::manager::{Op, Request};
        let snapshot = Request::On {
            id: self.big,
            op: Op::Snapshot,
        };
        self.conn.send(&snapshot).unwrap();
    }
}

/// The server of the hostile tests, on a Unix socket (lanes are local),
/// with an honest client that made the "units" semaphore (of one unit)
/// and the 8 MB "big" list.
fn server_with_units_and_a_big_list(tag: &str) -> (Server, PathBuf, Manager) {
    let socket = std::env::temp_dir().join(format!("manager-{tag}-{}.sock", rand_tag()));
    let server = Server::start_at(&format!("unix:{}", socket.display()), &[]);
    let honest = server.connect();
    honest
        .open::<outlast_ipc::manager::Semaphore>("units")
        .unwrap();
    let big = honest
        .open::<outlast_ipc::manager::List<Vec<u8>>>("big")
        .unwrap();
    big.append(&vec![1u8; 8 << 20]).unwrap();
    (server, socket, honest)
}

/// A client that stops reading (a large reply half sent, so the server
/// reads no more of its socket), sends a semaphore's release and a queue
/// get behind it, then closes everything, with and without a lane: the
/// release still counts and the get takes nothing. Before, the release
/// went with the connection, a unit lost for good (a dropped awaited guard
/// releases this way just before its connection may close).
#[test]
fn a_gone_clients_last_release_counts_and_its_last_get_takes_nothing() {
    use outlast_ipc::manager::{Kind, Op, Reply, Request, Semaphore};
    let (server, socket, honest) = server_with_units_and_a_big_list("gone");
    let units = honest.open::<Semaphore>("units").unwrap();
    let jobs = honest.open::<Queue<u64>>("jobs").unwrap();
    jobs.put(&7).unwrap();
    for with_lane in [false, true] {
        let mut rogue = Rogue::connect(&server);
        let queue = Kind::Queue {
            maxsize: 0,
            joinable: false,
        };
        let jobs_id = rogue.open("jobs", queue);
        let take_unit = Request::On {
            id: rogue.units,
            op: Op::Acquire { wait_ms: Some(0) },
        };
        rogue.conn.send(&take_unit).unwrap();
        assert!(matches!(
            rogue.conn.recv_timeout::<Reply>(PATIENCE),
            Ok(Reply::Acquired { .. })
        ));
        assert_eq!(units.value().unwrap(), 0, "the rogue holds the unit");
        let lane_fds = if with_lane {
            rogue.open_lane()
        } else {
            Vec::new()
        };
        rogue.stall();
        let release = Request::On {
            id: rogue.units,
            op: Op::Release,
        };
        rogue.conn.send(&release).unwrap();
        let take = Request::On {
            id: jobs_id,
            op: Op::Take(Some(0)),
        };
        rogue.conn.send(&take).unwrap();
        drop(lane_fds);
        drop(rogue);
        let deadline = Instant::now() + PATIENCE;
        while units.value().unwrap() != 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            units.value().unwrap(),
            1,
            "the release counts (lane: {with_lane})"
        );
        assert_eq!(jobs.len().unwrap(), 1, "the item stays (lane: {with_lane})");
    }
    assert_eq!(jobs.get_timeout(Duration::ZERO).unwrap(), Some(7));
    honest_round_trips(&honest, 30);
    let _ = std::fs::remove_file(&socket);
}

/// A client that stops reading, queues 3,000 releases of a semaphore on its
/// socket, and closes its doorbell alone (its socket stays open): the
/// manager reads its last words, 1,024 requests and no more, and drops it.
#[test]
fn a_gone_client_is_read_no_further_than_its_last_words() {
    use outlast_ipc::manager::{Op, Request, Semaphore};
    use std::os::fd::AsRawFd;
    let (server, socket, honest) = server_with_units_and_a_big_list("words");
    let units = honest.open::<Semaphore>("units").unwrap();
    let held = units.acquire().unwrap();
    assert_eq!(units.value().unwrap(), 0);
    let mut rogue = Rogue::connect(&server);
    let mut fds = rogue.open_lane();
    rogue.stall();
    let release = Request::On {
        id: rogue.units,
        op: Op::Release,
    };
    // 3,000 frames in one write, straight to the socket (a waiting send of
    // ours would take the stalled reply in; a Unix socket takes few small
    // writes).
    let frame = outlast_ipc::codec::encode_frame(&release, 1 << 20).unwrap();
    let frames = frame.repeat(3000);
    let mut written = 0;
    while written < frames.len() {
        let rest = &frames[written..];
        // SAFETY: writes from a live buffer to a descriptor the rogue owns.
        let n = unsafe { libc::write(rogue.conn.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
        assert!(n > 0, "{}", std::io::Error::last_os_error());
        written += n as usize;
    }
    // The doorbell's write end closed, the socket kept open.
    let bell = fds.iter().position(|fd| {
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .is_ok_and(|t| t.to_string_lossy().starts_with("pipe:"))
    });
    drop(fds.remove(bell.expect("a lane has a doorbell pipe")));
    // The manager closes the socket once it has read the last words. Its
    // reply's start is left unread here: taken in, it would let the
    // manager send the rest and read on while it is still a client.
    let mut closed = libc::pollfd {
        fd: rogue.conn.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one live pollfd.
    let ready = unsafe { libc::poll(&mut closed, 1, 30_000) };
    assert!(ready == 1 && closed.revents & (libc::POLLRDHUP | libc::POLLHUP) != 0);
    assert_eq!(units.value().unwrap(), 1024, "its last words, no more");
    honest_round_trips(&honest, 40);
    held.release().unwrap();
    assert_eq!(units.value().unwrap(), 1025);
    let _ = std::fs::remove_file(&socket);
}
