//! Starts the fork server, a named (tracked) shared-memory segment and two
//! fork-server children that hold it and sleep; prints `server PID`,
//! `child PID` twice and `shm NAME`, then `ready`, and sleeps itself. The
//! creator-death test SIGKILLs this process and checks that nothing of it
//! is left: no child, no server, no segment.

use std::time::Duration;

use outlast_ipc::shm::SharedMemory;
use outlast_ipc::{Process, StartMethod};

fn hold(segment: SharedMemory) {
    let _ = segment.len();
    std::thread::sleep(Duration::from_secs(60));
}

fn main() {
    outlast_ipc::init();
    let server = match outlast_ipc::forkserver::start() {
        Ok(pid) => pid,
        Err(e) => {
            eprintln!("forkserver: {e}");
            std::process::exit(1);
        }
    };
    println!("server {server}");
    let name = format!("ipc-test-fs-creator-{}", std::process::id());
    let segment = match SharedMemory::create(&name, 4096) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("segment: {e}");
            std::process::exit(1);
        }
    };
    let mut children = Vec::new();
    for _ in 0..2 {
        let Ok(theirs) = segment.try_clone() else {
            std::process::exit(1);
        };
        let mut p = Process::new(hold, theirs).start_method(StartMethod::ForkServer);
        if let Err(e) = p.start() {
            eprintln!("start: {e}");
            std::process::exit(1);
        }
        println!("child {}", p.pid().unwrap_or(0));
        children.push(p);
    }
    println!("shm {name}");
    println!("ready");
    std::thread::sleep(Duration::from_secs(60));
}
