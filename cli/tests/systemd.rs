//! systemd's notify protocol, with a real datagram socket where systemd's
//! would be: `READY=1` once the workers are up, `STATUS=` lines, then
//! `STOPPING=1` when the run ends.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::*;

#[test]
fn the_run_tells_systemd_it_is_ready_how_far_it_is_and_that_it_stops() {
    let path = std::env::temp_dir().join(format!("notify-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path).expect("bind a notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let child = supervisor("-w 2 --job sleep --tasks 300 --task-ms 10")
        .env("NOTIFY_SOCKET", &path)
        .spawn()
        .expect("start");
    let run = finish(child);
    assert_eq!(run.code, 0, "{}", run.events);
    let mut messages = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buf) {
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let _ = std::fs::remove_file(&path);
    let ready = messages
        .iter()
        .position(|m| m.starts_with("READY=1"))
        .unwrap_or_else(|| panic!("no READY=1 in {messages:?}"));
    assert!(messages[ready].contains("workers alive"), "{messages:?}");
    let stopping = messages
        .iter()
        .position(|m| m.starts_with("STOPPING=1"))
        .unwrap_or_else(|| panic!("no STOPPING=1 in {messages:?}"));
    assert!(ready < stopping, "{messages:?}");
    assert!(
        messages.iter().all(|m| m.contains("STATUS=")),
        "{messages:?}"
    );
    assert_eq!(
        messages.iter().filter(|m| m.starts_with("READY=1")).count(),
        1,
        "{messages:?}"
    );
}
