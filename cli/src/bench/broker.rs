//! `supervisor bench broker`: what sharing a job through Redis Streams
//! costs, against a redis-server this bench starts on loopback. No-op
//! tasks through the broker with one supervisor (tasks/s: the whole run,
//! loading the stream included, and the run alone), beside the same tasks
//! without a broker; primes with 2 workers with and without the broker, in
//! turns (wall-time medians and their ratio); and three supervisors sharing
//! one primes job (tasks each stored).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::report::Row;
use super::stats::median;
use outlast::broker::local_server::RedisServer;
use outlast::broker::{self, BrokerOptions};
use outlast::report::Outcome;
use outlast::RunOptions;
use outlast::Supervisor;
use outlast_worker::jobs::primes::Primes;
use outlast_worker::jobs::sleep::Sleep;
use outlast_worker::work::AnyJob;

fn options(workers: u32) -> RunOptions {
    RunOptions {
        workers: Some(workers),
        quiet: true,
        handle_signals: false,
        control: outlast::control::ControlAt::Off,
        ..RunOptions::default()
    }
}

fn job_id(what: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("bench-{what}-{}-{n}", std::process::id())
}

/// One broker run of `job`: (whole seconds, the run's own tasks/s).
fn through_broker(url: &str, job: AnyJob, workers: u32) -> Result<(f64, f64), String> {
    let started = Instant::now();
    let broker = BrokerOptions {
        url: url.to_string(),
        job_id: job_id("run"),
        lease: Duration::from_secs(5),
        consumer: None,
    };
    let report = broker::run(options(workers), job, &broker).map_err(|e| e.to_string())?;
    if !report.broker.as_ref().is_some_and(|b| b.complete) {
        return Err(format!(
            "the broker run ended incomplete: {:?}",
            report.outcome
        ));
    }
    Ok((started.elapsed().as_secs_f64(), report.tasks_per_second))
}

fn plain(job: AnyJob, workers: u32) -> Result<(f64, f64), String> {
    let started = Instant::now();
    let report = Supervisor::from_any(job)
        .options(options(workers))
        .run()
        .map_err(|e| e.to_string())?;
    if report.outcome != Outcome::Success {
        return Err(format!("the run ended {:?}", report.outcome));
    }
    Ok((started.elapsed().as_secs_f64(), report.tasks_per_second))
}

pub fn run(runs: usize, quick: bool) -> Result<Vec<Row>, String> {
    let redis = RedisServer::start()?;
    let url = redis.url();
    let mut rows = Vec::new();

    let tasks = if quick { 20_000 } else { 300_000 };
    let (mut whole, mut alone, mut local) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let (secs, rate) = through_broker(&url, AnyJob::new(Sleep::new(tasks, 0)), 2)?;
        whole.push(tasks as f64 / secs);
        alone.push(rate);
        local.push(plain(AnyJob::new(Sleep::new(tasks, 0)), 2)?.1);
    }
    let base = median(&local);
    rows.push(Row {
        bench: "broker",
        subject: format!("no-op tasks, no broker, 2 workers ({tasks})"),
        msgs_per_s: Some(base),
        runs,
        ..Row::default()
    });
    for (subject, rates) in [
        ("no-op via broker, whole run incl. loading", &whole),
        ("no-op via broker, the run alone", &alone),
    ] {
        let m = median(rates);
        rows.push(Row {
            bench: "broker",
            subject: subject.to_string(),
            msgs_per_s: Some(m),
            vs_baseline: Some(m / base),
            baseline: Some("no broker".into()),
            runs,
            ..Row::default()
        });
    }

    let limit: u64 = if quick {
        1_000_000_000
    } else {
        100_000_000_000
    };
    let primes = || Primes::new(limit, None).map(AnyJob::new);
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        without.push(plain(primes()?, 2)?.0 * 1e3);
        with.push(through_broker(&url, primes()?, 2)?.0 * 1e3);
    }
    let base = median(&without);
    rows.push(Row {
        bench: "broker",
        subject: format!("primes {limit:.0e}, 2 workers, no broker"),
        median_ms: Some(base),
        runs,
        ..Row::default()
    });
    let m = median(&with);
    rows.push(Row {
        bench: "broker",
        subject: format!("primes {limit:.0e}, 2 workers, via broker"),
        median_ms: Some(m),
        vs_baseline: Some(m / base),
        baseline: Some("no broker (time)".into()),
        runs,
        ..Row::default()
    });

    rows.push(share_three(&url, if quick { "1e9" } else { "1e11" })?);
    Ok(rows)
}

/// Three supervisor processes (2 workers each) on one primes job: the
/// tasks each stored, from the cluster's account.
fn share_three(url: &str, limit: &str) -> Result<Row, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let id = job_id("share");
    let started = Instant::now();
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(&me)
                .args([
                    "-w",
                    "2",
                    "--job",
                    "primes",
                    "--limit",
                    limit,
                    "--quiet",
                    "--no-control",
                ])
                .args(["--broker", url, "--job-id", &id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    for mut child in children {
        child.wait().map_err(|e| e.to_string())?;
    }
    let wall = started.elapsed().as_secs_f64();
    let report = broker::result(
        url,
        &id,
        Duration::from_secs(600),
        &outlast_worker::jobs::work_from_spec,
    )
    .map_err(|e| e.to_string())?;
    let counts: Vec<String> = report
        .hosts
        .values()
        .map(|h| h.stored.to_string())
        .collect();
    Ok(Row {
        bench: "broker",
        subject: format!(
            "3 supervisors x 2 workers, primes {limit}: tasks stored {} ({})",
            counts.join(" / "),
            if report.verified == Some(true) {
                "exact"
            } else {
                "NOT exact"
            }
        ),
        median_ms: Some(wall * 1e3),
        runs: 1,
        ..Row::default()
    })
}
