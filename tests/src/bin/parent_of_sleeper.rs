//! Starts one child (fork, spawn or forkserver, from `argv[1]`) that sleeps for a minute,
//! prints the child's pid, and then sleeps itself. The orphan test SIGKILLs
//! this process and checks that the child dies with it.

use std::time::Duration;

use outlast_ipc::{Process, StartMethod};

fn sleeper(seconds: u64) {
    std::thread::sleep(Duration::from_secs(seconds));
}

fn main() {
    outlast_ipc::init();
    let method = std::env::args()
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or(StartMethod::Fork);
    let mut p = Process::new(sleeper, 60).start_method(method);
    if let Err(e) = p.start() {
        eprintln!("start failed: {e}");
        std::process::exit(1);
    }
    println!("{}", p.pid().unwrap_or(0));
    std::thread::sleep(Duration::from_secs(60));
}
