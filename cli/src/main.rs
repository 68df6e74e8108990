//! The `supervisor` command line: `supervisor --workers 8 --job primes` runs a
//! job; `supervisor --exec 'CMD {}' < lines` runs a command per line;
//! `supervisor bench ...` measures IPC figures.
//!
//! The binary's parts live here, over the `outlast` library: the command
//! line ([`cli`], [`config`], [`jobs`]), the benches, `supervisor top`, the
//! control commands ([`steer`]) and `supervisor manager serve`.

mod bench;
mod cli;
mod config;
mod conformance;
mod jobs;
mod manager_serve;
mod steer;
mod top;

use std::io::Write as _;
use std::process::ExitCode;

use cli::Invocation;
use config::RunConfig;
use manager_serve::ManagerCommand;
use outlast::report::Outcome;
use outlast::{broker, Supervisor};
use outlast_worker::work::AnyJob;

fn main() -> ExitCode {
    // This binary has no thread of its own: fork, the fastest start, is
    // its default (the library's is forkserver); `--start-method` and the
    // benches' own choices still pick per use.
    let _ = outlast_ipc::set_start_method(outlast_ipc::StartMethod::Fork);
    let invocation = match cli::parse(std::env::args_os()) {
        Ok(invocation) => invocation,
        Err(e) => e.exit(),
    };
    match invocation {
        Invocation::Bench { what, options } => match bench::run(what, &options) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("supervisor bench: {e}");
                ExitCode::FAILURE
            }
        },
        Invocation::Jobs => {
            let mut out = std::io::stdout().lock();
            for entry in jobs::JOBS {
                if writeln!(out, "{:8} {}", entry.name, entry.about).is_err() {
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Invocation::Manager(ManagerCommand::Serve(args)) => match manager_serve::serve(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("supervisor manager serve: {e}");
                ExitCode::FAILURE
            }
        },
        Invocation::Steer(command) => ExitCode::from(steer::run(command)),
        Invocation::Journal { path, json } => show_journal(&path, json),
        Invocation::WorkerConformance { command } => ExitCode::from(conformance::run(&command)),
        Invocation::Result {
            job_id,
            broker,
            timeout,
            json,
        } => cluster_result(&broker, &job_id, timeout, json),
        Invocation::Run { config, job, name } => {
            let to = match (&config.report, name.as_str()) {
                (Some(path), _) => ReportTo::File(path.clone()),
                (None, "exec" | "worker-cmd") => ReportTo::Stderr,
                (None, _) => ReportTo::Stdout,
            };
            run_job(&config, job, &to)
        }
    }
}

/// Where the report goes.
enum ReportTo {
    Stdout,
    Stderr,
    File(std::path::PathBuf),
}

fn run_job(config: &RunConfig, job: AnyJob, to: &ReportTo) -> ExitCode {
    let ran = match &config.broker {
        Some(url) => broker_run(config, url, job),
        None => Supervisor::from_any(job)
            .options(config.options())
            .run()
            .map_err(|e| e.to_string()),
    };
    let report = match ran {
        Ok(report) => report,
        Err(e) => {
            eprintln!("supervisor: {e}");
            return ExitCode::from(Outcome::Failed.exit_code());
        }
    };
    let text = if config.json {
        serde_json::to_string(&report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    } else {
        report.to_string()
    };
    match write_report(&text, to) {
        Ok(()) => ExitCode::from(report.exit_code),
        Err(e) => {
            eprintln!("supervisor: cannot write the report: {e}");
            // The run's own failure code if it has one, else 1.
            ExitCode::from(report.exit_code.max(Outcome::Failed.exit_code()))
        }
    }
}

/// This supervisor's part of a job shared through the broker at `url`.
fn broker_run(
    config: &RunConfig,
    url: &str,
    job: AnyJob,
) -> Result<outlast::report::RunReport, String> {
    let job_id = match (&config.job_id, &job.spec) {
        (Some(id), _) => id.clone(),
        (None, Some(spec)) => broker::default_job_id(spec, job.work.task_count()),
        (None, None) => return Err(broker::BrokerError::NoSpec.to_string()),
    };
    let options = broker::BrokerOptions {
        url: url.to_string(),
        job_id,
        lease: config.lease,
        consumer: None,
    };
    broker::run(config.options(), job, &options).map_err(|e| e.to_string())
}

/// `supervisor journal PATH [--json]`.
fn show_journal(path: &std::path::Path, json: bool) -> ExitCode {
    match outlast::journal::summary(path) {
        Ok(summary) => {
            let text = if json {
                serde_json::to_string(&summary).unwrap_or_default()
            } else {
                summary.to_string()
            };
            match write_report(text.trim_end(), &ReportTo::Stdout) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            }
        }
        Err(e) => {
            eprintln!("supervisor journal: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `supervisor result JOB --broker URL`.
fn cluster_result(url: &str, job_id: &str, timeout: std::time::Duration, json: bool) -> ExitCode {
    match broker::result(url, job_id, timeout, &outlast_worker::jobs::work_from_spec) {
        Ok(report) => {
            let text = if json {
                serde_json::to_string(&report).unwrap_or_default()
            } else {
                report.to_string()
            };
            if write_report(text.trim_end(), &ReportTo::Stdout).is_err() {
                return ExitCode::FAILURE;
            }
            if report.verified == Some(false) || !report.conflicts.is_empty() {
                // The combined answer contradicts the known value, or rests
                // on a result someone else computed differently: whatever
                // else, that is a failure.
                ExitCode::from(Outcome::Failed.exit_code())
            } else if report.complete {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(Outcome::DeadLetters.exit_code())
            }
        }
        Err(e) => {
            eprintln!("supervisor result: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes the report, failing when it cannot be written (full disk,
/// closed descriptor, a reader gone).
fn write_report(text: &str, to: &ReportTo) -> std::io::Result<()> {
    let fd = match to {
        ReportTo::Stdout => libc::STDOUT_FILENO,
        ReportTo::Stderr => libc::STDERR_FILENO,
        ReportTo::File(path) => {
            let mut file = std::fs::File::create(path)?;
            writeln!(file, "{text}")?;
            return file.flush();
        }
    };
    // (A descriptor closed at exec, `>&-`, is /dev/null by now: Rust's
    // runtime reopens 0, 1 and 2 there before main.)
    if fd == libc::STDERR_FILENO {
        let mut out = std::io::stderr().lock();
        writeln!(out, "{text}")?;
        return out.flush();
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}
