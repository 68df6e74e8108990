//! A program with no `outlast_ipc::init()` in `main` that starts a process
//! with the spawn method (or the one named in `argv[1]`). Its child (or the
//! fork server) is taken over before `main`, so `main` runs once, in the
//! parent, and `join` gives the entry's value.

use outlast_ipc::{Process, StartMethod};

fn entry(x: u32) -> u32 {
    x + 1
}

fn main() {
    // Deliberately no `outlast_ipc::init();` here.
    println!("main of pid {} runs", std::process::id());
    let method = std::env::args()
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or(StartMethod::Spawn);
    let mut p = Process::new(entry, 1).start_method(method);
    if let Err(e) = p.start() {
        println!("start failed: {e}");
        return;
    }
    match p.join() {
        Ok(v) => println!("join ok: {v}"),
        Err(outlast_ipc::JoinError::InitMissing) => println!("join: InitMissing"),
        Err(e) => println!("join failed otherwise: {e}"),
    }
    println!("exit code: {:?}", p.exit_code());
}
