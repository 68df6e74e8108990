//! `--metrics ADDR`: `/metrics` fetched over real HTTP from a running
//! supervisor parses as Prometheus text under promtool's rules (and passes
//! `promtool check metrics` itself where it is installed), its counts are
//! the final report's once the run stands still; HEAD, bare-LF heads and
//! OpenMetrics on request; slow and silent scrapers cannot keep an honest
//! one out.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// A free loopback port (bound, then let go).
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// An HTTP/1.1 GET (or another method): the status code and the body.
fn http(addr: SocketAddr, method: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))?
        .trim()
        .parse()
        .ok()?;
    assert_eq!(body.len(), length, "Content-Length is the body's");
    Some((code, body.to_string()))
}

/// Parses the text exposition format strictly, as promtool does: every
/// sample's family has HELP and TYPE lines first under the sample's own
/// name (a histogram's `_bucket`, `_sum` and `_count` aside), names and
/// labels are well formed, counters end in `_total`, values are numbers,
/// and there is no OpenMetrics `# EOF`. Samples by `name{labels}`.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut helped = std::collections::BTreeSet::new();
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(name_ok(name), "bad name {name}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "bad type {kind}"
            );
            types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap_or("").to_string());
            continue;
        }
        assert_ne!(line, "# EOF", "OpenMetrics' end in Prometheus text");
        assert!(!line.starts_with('#'), "unknown comment: {line}");
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let name = series.split('{').next().unwrap();
        assert!(name_ok(name), "bad sample name in {line}");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for pair in labels[1..labels.len() - 1].split(',') {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    assert!(name_ok(k), "bad label {k}");
                    assert!(v.starts_with('"') && v.ends_with('"'), "unquoted {line}");
                }
            }
        }
        let family = if types.contains_key(name) {
            name
        } else {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    let base = name.strip_suffix(suffix)?;
                    (types.get(base).map(String::as_str) == Some("histogram")).then_some(base)
                })
                .unwrap_or_else(|| panic!("no TYPE for {name} under its own name"))
        };
        assert!(helped.contains(family), "no HELP for {family}");
        if types[family] == "counter" {
            assert!(name.ends_with("_total"), "a counter named {name}");
        }
        samples.insert(series.to_string(), value);
    }
    samples
}

#[test]
fn metrics_parse_and_match_the_final_report() {
    let addr = free_addr();
    // Tasks now and then hang (without beating, and the timeout is long):
    // once both workers hang, the run stands still and can be compared.
    let child = supervisor(&format!(
        "-w 2 --job fault --tasks 5000 --task-ms 1 --hang-rate 0.02 --seed 7 --worker-timeout 600 --metrics {addr}"
    ))
    .spawn()
    .expect("start");
    let pid = child.id();
    let started = Instant::now();
    let mut last: Option<BTreeMap<String, f64>> = None;
    let still = loop {
        assert!(started.elapsed() < HANG, "the run never stood still");
        std::thread::sleep(Duration::from_millis(300));
        let Some((200, body)) = http(addr, "GET", "/metrics") else {
            continue;
        };
        let now = parse_prometheus(&body);
        let done =
            |m: &BTreeMap<String, f64>| m.get(r#"supervisor_tasks_total{outcome="done"}"#).copied();
        if let Some(before) = &last {
            if done(before).is_some()
                && done(before) == done(&now)
                && now[r#"supervisor_workers{state="busy"}"#] == 2.0
            {
                break now;
            }
        }
        last = Some(now);
    };
    // Other paths and methods.
    assert_eq!(http(addr, "GET", "/").map(|r| r.0), Some(404));
    assert_eq!(http(addr, "POST", "/metrics").map(|r| r.0), Some(405));
    // HEAD: the head alone, its length the body's.
    let head = raw_request(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").expect("HEAD");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "HEAD sent a body: {head}");
    // A head ended by bare LFs (as `printf 'GET /metrics\n\n' | nc` sends).
    let bare = raw_request(addr, b"GET /metrics HTTP/1.0\n\n").expect("bare LF");
    assert!(bare.starts_with("HTTP/1.1 200"), "{bare}");
    // OpenMetrics, when asked for.
    let open = raw_request(
        addr,
        b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n",
    )
    .expect("OpenMetrics");
    assert!(open.contains("application/openmetrics-text"), "{open}");
    assert!(open.trim_end().ends_with("# EOF"), "{open}");
    if let Some(verdict) = promtool_check(&http(addr, "GET", "/metrics").expect("scrape").1) {
        assert!(verdict.is_empty(), "promtool check metrics: {verdict}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_supervisor"))
        .args(["stop", &pid.to_string(), "--now"])
        .output()
        .expect("stop");
    assert!(out.status.success(), "{out:?}");
    let run = finish(child);
    let report = &run.report;
    assert_eq!(
        still[r#"supervisor_tasks_total{outcome="done"}"#],
        report["tasks"]["done"].as_f64().unwrap(),
        "{report}"
    );
    assert_eq!(
        still[r#"supervisor_tasks_total{outcome="dead"}"#],
        report["tasks"]["dead"].as_f64().unwrap()
    );
    assert_eq!(
        still[r#"supervisor_restarts_total{cause="crash"}"#],
        report["restarts"]["crashes"].as_f64().unwrap()
    );
    // Stopping at once puts the hung workers' tasks back: only more.
    assert!(
        still["supervisor_task_requeues_total"] <= report["tasks"]["requeued"].as_f64().unwrap()
    );
    assert!(still
        .keys()
        .any(|k| k.starts_with("supervisor_worker_resident_bytes{slot=")));
    assert!(still.contains_key("supervisor_replacement_seconds_count"));
}

/// Sends `request` as it is; the whole response, if one came in 10 s.
fn raw_request(addr: SocketAddr, request: &[u8]) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(request).ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    Some(raw)
}

/// What `promtool check metrics` says of `text` (empty: clean); `None`
/// where promtool is not installed (Debian's `prometheus` package has it).
fn promtool_check(text: &str) -> Option<String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(text.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(if out.status.success() {
        String::new()
    } else {
        said
    })
}

/// 64 scrapers that connect and trickle a byte now and then, never
/// finishing a request (slowloris), fill every place the endpoint has; an
/// honest scrape still gets its answer at once (before, it waited behind
/// them for their 5 s patience, each time).
#[test]
fn slow_scrapers_cannot_keep_an_honest_one_out() {
    let addr = free_addr();
    let child = supervisor(&format!(
        "-w 1 --job sleep --tasks 1000000 --task-ms 1 --metrics {addr}"
    ))
    .spawn()
    .expect("start");
    let started = Instant::now();
    while http(addr, "GET", "/metrics").is_none() {
        assert!(started.elapsed() < HANG, "the endpoint never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut slow: Vec<TcpStream> = (0..64)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    assert_eq!(slow.len(), 64);
    for s in &mut slow {
        let _ = s.write_all(b"GET /metr");
    }
    for round in 0..3 {
        for s in &mut slow {
            let _ = s.write_all(b"i");
        }
        let mut honest = TcpStream::connect(addr).expect("connect");
        // Far longer than a turn of the loop, far shorter than the 5 s a
        // slow peer is given.
        honest
            .set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        honest
            .write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
            .expect("send");
        let mut reply = String::new();
        let _ = honest.read_to_string(&mut reply);
        assert!(
            reply.starts_with("HTTP/1.1 200"),
            "round {round}: the honest scrape got {reply:?}"
        );
    }
    drop(slow);
    let out = Command::new(env!("CARGO_BIN_EXE_supervisor"))
        .args(["stop", &child.id().to_string(), "--now"])
        .output()
        .expect("stop");
    assert!(out.status.success(), "{out:?}");
    let _ = finish(child);
}
