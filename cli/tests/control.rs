//! The control socket of a real `supervisor` run, driven by the real
//! `supervisor status`/`scale`/`kill`/`stop` commands: the workers it
//! lists are the processes the test sees, the fleet follows `scale`, a
//! worker killed by slot is replaced and the answer stays exact; garbage,
//! a 4 GiB length and silence get an error or a closed connection, a peer
//! of another uid is refused by its credentials; no socket file outlives
//! a run, and a stale one is replaced.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Runs `supervisor ARGS`; its exit code and stdout.
fn steer(args: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_supervisor"))
        .args(args.split_whitespace())
        .output()
        .expect("run the command");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `supervisor status PID --json`, once the run answers.
fn status(pid: u32) -> Value {
    let started = Instant::now();
    loop {
        let (code, out) = steer(&format!("status {pid} --json"));
        if code == 0 {
            let reply: Value = serde_json::from_str(&out).expect("JSON");
            return reply["status"].clone();
        }
        assert!(
            started.elapsed() < HANG,
            "the control socket never answered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pids of the live workers a status lists.
fn listed_pids(status: &Value) -> Vec<u32> {
    let mut pids: Vec<u32> = status["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .filter_map(|w| w["pid"].as_u64().map(|p| p as u32))
        .collect();
    pids.sort();
    pids
}

/// Waits until the run lists `n` live workers and the test sees `n` processes.
fn wait_for_fleet(pid: u32, n: usize) -> Value {
    let started = Instant::now();
    loop {
        let s = status(pid);
        let mut seen = workers_of(pid);
        seen.sort();
        if listed_pids(&s).len() == n && seen.len() == n && listed_pids(&s) == seen {
            return s;
        }
        assert!(started.elapsed() < HANG, "the fleet never became {n}: {s}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn status_lists_exactly_the_live_workers_and_the_fleet_follows_scale() {
    let child = supervisor("-w 2 --job sleep --tasks 1000000 --task-ms 1")
        .spawn()
        .expect("start");
    let pid = child.id();
    let s = wait_for_fleet(pid, 2);
    assert_eq!(s["pid"], pid);
    assert_eq!(s["phase"], "running");
    for w in s["workers"].as_array().unwrap() {
        let state = w["state"].as_str().unwrap();
        assert!(["busy", "idle", "starting"].contains(&state), "{w}");
        assert!(w["rss_kb"].as_u64().unwrap() > 0, "{w}");
    }
    let (code, out) = steer(&format!("scale {pid} 4"));
    assert_eq!(code, 0, "{out}");
    let s = wait_for_fleet(pid, 4);
    assert_eq!(s["workers_target"], 4);
    let (code, _) = steer(&format!("scale {pid} 1"));
    assert_eq!(code, 0);
    wait_for_fleet(pid, 1);
    // Human words too.
    let (code, out) = steer(&format!("status {pid}"));
    assert_eq!(code, 0);
    assert!(
        out.contains("slot") && out.contains("busy") || out.contains("idle"),
        "{out}"
    );
    let (code, out) = steer(&format!("stop {pid}"));
    assert_eq!(code, 0, "{out}");
    let run = finish(child);
    assert_eq!(run.code, 130, "{}", run.events);
    assert!(run.events.contains("control: stop"), "{}", run.events);
    let done = run.report["tasks"]["done"].as_u64().unwrap();
    let remaining = run.report["tasks"]["remaining"].as_u64().unwrap();
    assert_eq!(done + remaining, 1_000_000);
}

#[test]
fn a_worker_killed_by_slot_is_replaced_and_the_answer_is_exact() {
    let child = supervisor("-w 2 --limit 2e9 --chunk 1e6")
        .spawn()
        .expect("start");
    let pid = child.id();
    let s = wait_for_fleet(pid, 2);
    let first = s["workers"][0]["pid"].as_u64().unwrap();
    let (code, out) = steer(&format!("kill {pid} 1"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("sent SIGKILL to worker 1"), "{out}");
    let started = Instant::now();
    loop {
        let s = status(pid);
        let now = s["workers"][0]["pid"].as_u64();
        if now.is_some() && now != Some(first) {
            assert_eq!(s["workers"][0]["restarts"], 1, "{s}");
            assert!(
                s["workers"][0]["last_exit"]
                    .as_str()
                    .is_some_and(|e| e.contains("SIGKILL")),
                "{s}"
            );
            break;
        }
        assert!(started.elapsed() < HANG, "worker 1 was never replaced");
        std::thread::sleep(Duration::from_millis(10));
    }
    // A slot that does not exist is an error.
    let (code, _) = steer(&format!("kill {pid} 9"));
    assert_eq!(code, 1);
    let run = finish(child);
    assert_exact_primes(&run, 98_222_287);
    assert_eq!(run.report["restarts"]["crashes"], 1, "{}", run.events);
    assert!(
        run.events.contains("control: sent SIGKILL to worker 1"),
        "{}",
        run.events
    );
}

/// One raw request on the socket at `path`: the reply, or `None` if the
/// supervisor closed the connection.
fn raw(path: &Path, bytes: &[u8]) -> Option<Value> {
    let mut s = UnixStream::connect(path).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let mut header = [0u8; 4];
    s.read_exact(&mut header).ok()?;
    let mut body = vec![0u8; u32::from_le_bytes(header) as usize];
    s.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

#[test]
fn garbage_a_huge_length_and_silence_are_refused() {
    let child = supervisor("-w 2 --job sleep --tasks 3000 --task-ms 2")
        .spawn()
        .expect("start");
    let pid = child.id();
    wait_for_fleet(pid, 2);
    let path = outlast::control::default_path(pid);
    // Bytes that are not JSON: an error reply.
    let garbage = b"\x05\x00\x00\x00hello";
    let reply = raw(&path, garbage).expect("a reply");
    assert_eq!(reply["ok"], false, "{reply}");
    // Another protocol version: an error reply naming it.
    let json = br#"{"version":99,"command":"status"}"#;
    let mut framed = (json.len() as u32).to_le_bytes().to_vec();
    framed.extend_from_slice(json);
    let reply = raw(&path, &framed).expect("a reply");
    assert!(reply["error"].as_str().unwrap().contains("99"), "{reply}");
    // A 4 GiB length: refused before anything is read.
    let reply = raw(&path, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).expect("a reply");
    assert!(
        reply["error"].as_str().unwrap().contains("at most"),
        "{reply}"
    );
    // Silence: the connection is closed.
    let started = Instant::now();
    assert!(raw(&path, b"").is_none());
    assert!(started.elapsed() < Duration::from_secs(10));
    // The run went on, untouched, to the end.
    let run = finish(child);
    assert_eq!(run.code, 0, "{}", run.events);
    assert_eq!(run.report["tasks"]["done"], 3000);
}

#[test]
fn a_peer_of_another_uid_is_refused_by_its_credentials() {
    // SAFETY: getuid touches no memory.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("SKIPPED: dropping to uid 65534 needs root; run the tests as root to check this");
        return;
    }
    // A socket anyone may connect to (the file's mode opened up), so
    // that only the credential check stands between nobody and the run.
    let dir = std::env::temp_dir().join(format!("control-uid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = dir.join("run.sock");
    let args = format!(
        "-w 2 --job sleep --tasks 2000 --task-ms 2 --control {}",
        path.display()
    );
    let child = supervisor(&args).spawn().expect("start");
    let started = Instant::now();
    // Opened up only once the run has made it its owner's alone (bind,
    // then chmod 0600): opened before, the run's chmod closed it again,
    // and nobody's connect was refused by the file's mode instead.
    let owner_only = || {
        std::fs::metadata(&path).is_ok_and(|m| {
            std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777 == 0o600
        })
    };
    while !owner_only() {
        assert!(started.elapsed() < HANG, "no socket");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let as_nobody = |command: &str| {
        Command::new(env!("CARGO_BIN_EXE_supervisor"))
            .args([command, "--control"])
            .arg(&path)
            .uid(65534)
            .gid(65534)
            .output()
            .expect("run as nobody")
    };
    // The command says in words that the socket is another user's...
    let out = as_nobody("stop");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refused: the socket"),
        "{out:?}"
    );
    // ...and a raw `stop --now` request from that user gets no reply: the
    // run closes the connection by its credentials.
    let request = serde_json::json!({"version": 1, "command": "stop", "now": true});
    let mut framed = (request.to_string().len() as u32).to_le_bytes().to_vec();
    framed.extend(request.to_string().bytes());
    let hex: String = framed.iter().map(|b| format!("{b:02x}")).collect();
    let raw = Command::new("python3")
        .args([
            "-c",
            // The run may close the connection before, during or after the
            // request is written: any of these is "no reply".
            "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ntry:\n    s.sendall(bytes.fromhex(sys.argv[2]))\n    s.settimeout(10)\n    print(len(s.recv(100)))\nexcept OSError:\n    print(0)",
        ])
        .arg(&path)
        .arg(&hex)
        .uid(65534)
        .gid(65534)
        .output()
        .expect("python3 as nobody");
    assert_eq!(String::from_utf8_lossy(&raw.stdout).trim(), "0", "{raw:?}");
    // The same command from this uid is answered.
    let (code, out) = steer(&format!("status --control {} --json", path.display()));
    assert_eq!(code, 0, "{out}");
    let run = finish(child);
    assert_eq!(
        run.code, 0,
        "the refused stop stopped the run: {}",
        run.events
    );
    assert_eq!(run.report["tasks"]["done"], 2000);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_socket_outlives_a_run_and_a_stale_one_is_replaced() {
    // A normal end.
    let child = supervisor("-w 1 --job sleep --tasks 20 --task-ms 1")
        .spawn()
        .expect("start");
    let pid = child.id();
    let run = finish(child);
    assert_eq!(run.code, 0);
    assert!(!outlast::control::default_path(pid).exists());
    // A TERM drain.
    let child = supervisor("-w 1 --job sleep --tasks 100000 --task-ms 1")
        .spawn()
        .expect("start");
    let pid = child.id();
    wait_for_fleet(pid, 1);
    signal(pid, libc::SIGTERM);
    let run = finish(child);
    assert_eq!(run.code, 130);
    assert!(!outlast::control::default_path(pid).exists());
    // SIGKILL leaves the file; the next run at that path replaces it.
    let dir = std::env::temp_dir().join(format!("control-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path: PathBuf = dir.join("run.sock");
    let args = format!(
        "-w 1 --job sleep --tasks 100000 --task-ms 1 --control {}",
        path.display()
    );
    let mut child = supervisor(&args).spawn().expect("start");
    let started = Instant::now();
    while !path.exists() {
        assert!(started.elapsed() < HANG, "no socket at {}", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
    signal(child.id(), libc::SIGKILL);
    let _ = child.wait();
    assert!(path.exists(), "a SIGKILLed run cannot remove its socket");
    let child = supervisor(&format!(
        "-w 1 --job sleep --tasks 20 --task-ms 1 --control {}",
        path.display()
    ))
    .spawn()
    .expect("start");
    let run = finish(child);
    assert_eq!(run.code, 0, "{}", run.events);
    assert!(!path.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn workers_name_themselves_after_their_slot_and_job_in_fork_and_spawn() {
    for method in ["fork", "spawn"] {
        let child = supervisor(&format!(
            "-w 2 --job sleep --tasks 100000 --task-ms 1 --start-method {method}"
        ))
        .spawn()
        .expect("start");
        let pid = child.id();
        let s = wait_for_fleet(pid, 2);
        for w in s["workers"].as_array().unwrap() {
            let worker = w["pid"].as_u64().unwrap();
            // A worker is listed once it exists; it names itself (comm,
            // then the title over its command line) a moment later, after
            // its exec when spawned. Wait for the title, the last of the two.
            let title = common::wait_until("the worker to set its title", || {
                let cmdline = std::fs::read(format!("/proc/{worker}/cmdline")).ok()?;
                let text = String::from_utf8_lossy(&cmdline).into_owned();
                text.starts_with("supervisor: ").then_some(text)
            });
            let comm = std::fs::read_to_string(format!("/proc/{worker}/comm")).unwrap();
            assert_eq!(comm.trim(), format!("w{} sleep", w["slot"]), "{method}");
            assert!(
                title.starts_with(&format!("supervisor: worker {} (sleep)", w["slot"])),
                "{method}: {title:?}"
            );
        }
        let own = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert_eq!(own.trim(), "supervisor");
        let (code, _) = steer(&format!("stop {pid} --now"));
        assert_eq!(code, 0);
        let run = finish(child);
        assert_eq!(run.code, 130, "{}", run.events);
    }
}

#[test]
fn a_subscription_streams_snapshots_until_the_run_ends() {
    let child = supervisor("-w 2 --job sleep --tasks 400 --task-ms 5")
        .spawn()
        .expect("start");
    let pid = child.id();
    wait_for_fleet(pid, 2);
    let path = outlast::control::default_path(pid);
    let stream =
        outlast::control::client::subscribe(&path, Duration::from_millis(100)).expect("subscribe");
    let mut elapsed = Vec::new();
    let mut ended_with_error = false;
    for reply in stream {
        match reply {
            Ok(reply) => elapsed.push(reply.status.expect("a status").elapsed_s),
            Err(_) => ended_with_error = true,
        }
    }
    let run = finish(child);
    assert_eq!(run.code, 0, "{}", run.events);
    assert!(ended_with_error, "the stream ends with the run");
    assert!(elapsed.len() >= 3, "{elapsed:?}");
    assert!(elapsed.windows(2).all(|w| w[0] < w[1]), "{elapsed:?}");
}

/// A runtime directory of this test's own, with `supervisor` in it made
/// by `prepare`: what a run and `list` do there.
fn in_runtime_dir(name: &str, prepare: impl FnOnce(&Path)) -> (PathBuf, Command, Command) {
    let runtime = std::env::temp_dir().join(format!("ctl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&runtime);
    std::fs::create_dir_all(&runtime).expect("runtime dir");
    prepare(&runtime.join("supervisor"));
    let mut run = Command::new(env!("CARGO_BIN_EXE_supervisor"));
    run.args([
        "-w",
        "1",
        "--job",
        "sleep",
        "--tasks",
        "2",
        "--task-ms",
        "1",
    ])
    .env("XDG_RUNTIME_DIR", &runtime);
    let mut list = Command::new(env!("CARGO_BIN_EXE_supervisor"));
    list.arg("list").env("XDG_RUNTIME_DIR", &runtime);
    (runtime, run, list)
}

fn refused(cmd: &mut Command, words: &str) {
    let out = cmd.output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "ran anyway: {stderr}");
    assert!(
        stderr.contains("refused") && stderr.contains(words),
        "not refused in words ({words}): {stderr}"
    );
}

/// Someone made the sockets' directory first, open to all (0777): a run
/// refuses to bind there and `list` to look there, each saying why.
#[test]
fn a_sockets_directory_open_to_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let (runtime, mut run, mut list) = in_runtime_dir("wide", |dir| {
        std::fs::create_dir(dir).expect("mkdir");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    });
    refused(&mut run, "mode 0777");
    refused(&mut list, "mode 0777");
    let _ = std::fs::remove_dir_all(runtime);
}

/// The sockets' directory is a symlink to someone else's directory holding
/// a stale-looking `123.sock`: `list` refuses, and deletes nothing there.
#[test]
fn a_symlinked_sockets_directory_is_refused_and_nothing_is_deleted() {
    let elsewhere = std::env::temp_dir().join(format!("ctl-theirs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&elsewhere);
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    let theirs = elsewhere.join("123.sock");
    std::fs::write(&theirs, b"not ours").expect("their file");
    let target = elsewhere.clone();
    let (runtime, mut run, mut list) = in_runtime_dir("link", move |dir| {
        std::os::unix::fs::symlink(&target, dir).expect("symlink");
    });
    refused(&mut list, "symlink");
    refused(&mut run, "symlink");
    assert!(theirs.exists(), "list deleted a file it does not own");
    let _ = std::fs::remove_dir_all(runtime);
    let _ = std::fs::remove_dir_all(elsewhere);
}

/// As root, a private directory that belongs to another user is not ours
/// either (skipped for other users: they cannot make one).
#[test]
fn a_sockets_directory_of_another_owner_is_refused() {
    // SAFETY: getuid cannot fail and touches no memory.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("skipped: only root can give a directory to another user");
        return;
    }
    let (runtime, mut run, _) = in_runtime_dir("owner", |dir| {
        std::fs::create_dir(dir).expect("mkdir");
        std::os::unix::fs::chown(dir, Some(65534), Some(65534)).expect("chown");
    });
    refused(&mut run, "belongs to uid 65534");
    let _ = std::fs::remove_dir_all(runtime);
}

/// `status PID` does not talk to a socket in a directory others can write.
#[test]
fn status_refuses_a_socket_in_a_directory_open_to_others() {
    use std::os::unix::fs::PermissionsExt;
    let (runtime, _, _) = in_runtime_dir("status", |dir| {
        std::fs::create_dir(dir).expect("mkdir");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    });
    // A fake supervisor's socket, as someone else could have put there.
    let fake =
        std::os::unix::net::UnixListener::bind(runtime.join("supervisor/4242.sock")).expect("bind");
    let mut status = Command::new(env!("CARGO_BIN_EXE_supervisor"));
    status
        .args(["status", "4242"])
        .env("XDG_RUNTIME_DIR", &runtime);
    refused(&mut status, "mode 0777");
    drop(fake);
    let _ = std::fs::remove_dir_all(runtime);
}

/// `scale PID 100000` on a run of 1,000 tasks: the reply says what was
/// asked and what it was capped at, `status` keeps answering while the new
/// workers start a batch per turn, no honest worker is killed as a forger
/// (a heartbeat read after a slow turn used to look "in the future"), and
/// the answer is exact.
#[test]
fn scaling_far_past_the_tasks_left_is_capped_and_keeps_the_answer_exact() {
    let child = supervisor("-w 2 --limit 2e9 --chunk 2e6")
        .spawn()
        .expect("start");
    let pid = child.id();
    wait_for_fleet(pid, 2);
    let (code, out) = steer(&format!("scale {pid} 100000"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("100000 asked"), "{out}");
    assert!(
        out.contains("tasks are left") || out.contains("this machine holds"),
        "{out}"
    );
    // Answered while they start.
    let s = status(pid);
    assert!(s["workers"].as_array().is_some_and(|w| w.len() > 2), "{s}");
    let run = finish(child);
    assert_exact_primes(&run, 98_222_287);
    assert!(!run.events.contains("forged"), "{}", run.events);
    assert!(!run.events.contains("in the future"), "{}", run.events);
    assert_eq!(run.report["restarts"]["crashes"], 0, "{}", run.events);
}

/// A stopped (SIGSTOP) supervisor: `status` says it did not answer within
/// its timeout, in those words (it used to print "Resource temporarily
/// unavailable (os error 11)").
#[test]
fn a_status_that_times_out_says_so_in_words() {
    let child = supervisor("-w 1 --job sleep --tasks 100000 --task-ms 1")
        .spawn()
        .expect("start");
    let pid = child.id();
    status(pid);
    signal(pid, libc::SIGSTOP);
    let out = Command::new(env!("CARGO_BIN_EXE_supervisor"))
        .args(["status", &pid.to_string()])
        .output()
        .expect("status");
    signal(pid, libc::SIGCONT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("did not answer within 5 s"), "{stderr}");
    assert!(!stderr.contains("os error"), "{stderr}");
    let (code, out) = steer(&format!("stop {pid} --now"));
    assert_eq!(code, 0, "{out}");
    let _ = finish(child);
}

/// 500 connections that say nothing take every place the control socket
/// has, again and again: `status` is still answered (a new client takes
/// the place of the one silent longest; before, it waited behind them all
/// for their 2 s each and timed out).
#[test]
fn five_hundred_silent_connections_do_not_keep_status_out() {
    let child = supervisor("-w 1 --job sleep --tasks 1000000 --task-ms 1")
        .spawn()
        .expect("start");
    let pid = child.id();
    status(pid);
    let path = outlast::control::default_path(pid);
    let silent: Vec<UnixStream> = (0..500)
        .filter_map(|_| UnixStream::connect(&path).ok())
        .collect();
    assert_eq!(silent.len(), 500);
    for round in 0..2 {
        let (code, out) = steer(&format!("status {pid} --json"));
        assert_eq!(code, 0, "round {round}: {out}");
    }
    drop(silent);
    let (code, out) = steer(&format!("stop {pid} --now"));
    assert_eq!(code, 0, "{out}");
    let _ = finish(child);
}
