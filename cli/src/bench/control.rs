//! `supervisor bench control`: what inspecting a run costs. The latency
//! of a `status` request while 2 workers sieve flat out; then primes runs
//! without a control socket or metrics, and with both while a client asks
//! for a status and scrapes `/metrics` four times a second, in turns: the
//! wall times' medians and their ratio.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::report::Row;
use super::stats::median;
use outlast::control::{client, Command as ControlCommand};

/// Starts this binary as a supervisor with `args`.
fn start(args: &[String]) -> Result<std::process::Child, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    Command::new(me)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())
}

/// A run's wall seconds, from its JSON report.
fn wall_of(child: std::process::Child) -> Result<f64, String> {
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("no report: {e}"))?;
    if report["outcome"] != "success" {
        return Err(format!("the run ended {}", report["outcome"]));
    }
    report["wall_seconds"]
        .as_f64()
        .ok_or_else(|| "no wall time".into())
}

/// Waits until the supervisor `pid` answers on its control socket.
fn wait_for_socket(pid: u32) -> Result<std::path::PathBuf, String> {
    let path = outlast::control::default_path(pid);
    let started = Instant::now();
    while client::send(&path, ControlCommand::Status).is_err() {
        if started.elapsed() > Duration::from_secs(30) {
            return Err("the control socket never answered".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(path)
}

/// One plain HTTP GET of /metrics.
fn scrape(addr: std::net::SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").is_err() {
        return false;
    }
    let mut body = String::new();
    s.read_to_string(&mut body).is_ok() && body.starts_with("HTTP/1.1 200")
}

pub fn run(runs: usize, quick: bool) -> Result<Vec<Row>, String> {
    let limit = if quick { "1e9" } else { "1e10" };
    let base: Vec<String> = ["-w", "2", "--limit", limit, "-q", "--json"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    // Status latency while sieving (a limit far enough to outlast it).
    let mut long = base.clone();
    long[3] = "1e13".into();
    let child = start(&long)?;
    let pid = child.id();
    let path = wait_for_socket(pid)?;
    let mut latencies = Vec::new();
    let until = Instant::now() + Duration::from_secs(if quick { 1 } else { 3 });
    while Instant::now() < until {
        let started = Instant::now();
        client::send(&path, ControlCommand::Status).map_err(|e| e.to_string())?;
        latencies.push(started.elapsed().as_secs_f64() * 1e3);
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = client::send(&path, ControlCommand::Stop { now: true });
    let _ = child.wait_with_output();
    if latencies.is_empty() {
        return Err("no status answered".into());
    }
    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    let p99 = sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)];

    // Overhead: without, and with control + metrics in use, in turns.
    let mut without = Vec::new();
    let mut with = Vec::new();
    for _ in 0..runs {
        let mut args = base.clone();
        args.push("--no-control".into());
        without.push(wall_of(start(&args)?)?);

        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?;
        let mut args = base.clone();
        args.extend(["--metrics".into(), addr.to_string()]);
        let child = start(&args)?;
        let pid = child.id();
        let watcher = std::thread::spawn(move || {
            let Ok(path) = wait_for_socket(pid) else {
                return;
            };
            while client::send(&path, ControlCommand::Status).is_ok() {
                scrape(addr);
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        with.push(wall_of(child)?);
        let _ = watcher.join();
    }
    let plain = median(&without);
    let inspected = median(&with);
    Ok(vec![
        Row {
            bench: "control",
            subject: "status while 2 workers sieve (p90 column: p99)".into(),
            median_ms: Some(median(&latencies)),
            p90_ms: Some(p99),
            runs: latencies.len(),
            ..Row::default()
        },
        Row {
            bench: "control",
            subject: format!("primes {limit}, no control socket, no metrics"),
            median_ms: Some(plain * 1e3),
            runs,
            ..Row::default()
        },
        Row {
            bench: "control",
            subject: format!("primes {limit}, status + scrape 4x/s"),
            median_ms: Some(inspected * 1e3),
            vs_baseline: Some(inspected / plain),
            baseline: Some("no control (time)".into()),
            runs,
            ..Row::default()
        },
    ])
}
