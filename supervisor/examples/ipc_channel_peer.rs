//! servo's ipc-channel (a Rust peer) moving byte messages from one forked
//! process to another, at the sizes of `supervisor bench queue`; one JSON
//! object per size on stdout. `scripts/compare-python` prints it beside our
//! `Queue` in the same run.
//!
//! ```text
//! cargo run --release -p outlast --example ipc_channel_peer [-- --quick]
//! ```

use std::time::Instant;

use ipc_channel::ipc;

fn rate(size: usize, count: u64) -> Result<f64, String> {
    let (tx, rx) = ipc::bytes_channel().map_err(|e| e.to_string())?;
    // SAFETY: this example is single-threaded here; the child only sends and
    // leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    if pid == 0 {
        let payload = vec![0xA5u8; size];
        let mut code = 0;
        for _ in 0..count {
            if tx.send(&payload).is_err() {
                code = 1;
                break;
            }
        }
        // SAFETY: leaving the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    drop(tx);
    rx.recv().map_err(|e| format!("{e:?}"))?;
    let started = Instant::now();
    for _ in 1..count {
        rx.recv().map_err(|e| format!("{e:?}"))?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    Ok((count - 1) as f64 / elapsed)
}

fn main() -> Result<(), String> {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 20 } else { 1 };
    for (size, count) in [(64usize, 400_000u64), (4096, 100_000), (1 << 20, 1_000)] {
        let r = rate(size, (count / scale).max(10))?;
        println!("{{\"peer\":\"ipc-channel\",\"size_bytes\":{size},\"msgs_per_s\":{r}}}");
    }
    Ok(())
}
