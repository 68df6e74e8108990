//! The command line: the run's options ([`RunConfig`]), the subcommands,
//! and the chosen job's own options, which only that job has: the job is
//! found first (`--job NAME`, or `--exec`), then its options are added to
//! the command and everything is parsed at once, so `--job sleep --help`
//! shows the sleep job's options and a usage error is clap's (exit code 2).

use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use outlast_worker::work::AnyJob;

use crate::bench::{Bench, BenchOptions};
use crate::config::RunConfig;
use crate::jobs::{self, CliEntry};
use crate::manager_serve::ManagerCommand;
use crate::steer::SteerCommand;

/// Keeps N worker processes alive for a job: dispatches tasks with nothing lost
/// when workers die, shows progress and IPC throughput, and reports the result.
///
/// Signals: TERM or INT drain (a second INT or a QUIT stops at once), HUP
/// replaces every worker one by one, TTIN / TTOU add / remove a worker.
///
/// Exit codes: 0 success, 1 could not run, 2 usage error, 3 finished with
/// dead letters, 4 restart limit reached, 130 interrupted.
#[derive(Debug, Parser)]
#[command(
    name = "supervisor",
    version,
    about,
    long_about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunConfig,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure IPC and process figures on this machine, with a baseline from the same run.
    Bench {
        /// What to measure.
        #[arg(value_enum)]
        what: Bench,
        #[command(flatten)]
        options: BenchOptions,
    },
    /// List the built-in jobs.
    Jobs,
    /// Run a standalone manager server (shared dicts, queues, locks over TCP).
    Manager {
        #[command(subcommand)]
        command: ManagerCommand,
    },
    #[command(flatten)]
    Steer(SteerCommand),
    /// Show what a journal (--journal FILE) holds: its job, the tasks done
    /// and dead, its runs, its last write, and any torn tail.
    Journal {
        /// The journal file.
        path: std::path::PathBuf,
        /// Print it as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Check that a worker program speaks the worker protocol (any
    /// client: run it with the client's echo worker).
    WorkerConformance {
        /// The program, as given to --worker-cmd.
        command: String,
    },
    /// Wait until a broker job is complete, then print its exact answer and
    /// the cluster's report (tasks per host, re-deliveries, dead letters).
    Result {
        /// The job's id (as given to --job-id, or shown in a run's report).
        job_id: String,
        /// The broker: redis://HOST:PORT/DB.
        #[arg(long, value_name = "URL")]
        broker: String,
        /// Seconds to wait for the job to complete.
        #[arg(long, default_value = "3600", value_parser = crate::jobs::args::seconds)]
        timeout: std::time::Duration,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// What the command line asks for.
pub enum Invocation {
    /// Run `job` with `config`.
    Run {
        config: Box<RunConfig>,
        job: AnyJob,
        /// Its registry name.
        name: String,
    },
    Bench {
        what: Bench,
        options: BenchOptions,
    },
    Jobs,
    Manager(ManagerCommand),
    Steer(SteerCommand),
    Journal {
        path: std::path::PathBuf,
        json: bool,
    },
    WorkerConformance {
        command: String,
    },
    Result {
        job_id: String,
        broker: String,
        timeout: std::time::Duration,
        json: bool,
    },
}

/// Parses `argv` (program name first). Errors are clap's: print them with
/// `exit()` (usage errors exit with code 2).
pub fn parse<I, T>(argv: I) -> Result<Invocation, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let name = job_named(&argv);
    let mut command = Cli::command();
    let entry = jobs::find(&name);
    if let Some(entry) = entry {
        command = (entry.augment)(command);
    }
    // A job's options bring their own doc as `about`: say what the program
    // is instead, and which jobs there are.
    let command = &mut with_about(command);
    let matches = command.clone().try_get_matches_from(&argv)?;
    let cli = Cli::from_arg_matches(&matches)?;
    match cli.command {
        Some(Command::Bench { what, options }) => Ok(Invocation::Bench { what, options }),
        Some(Command::Jobs) => Ok(Invocation::Jobs),
        Some(Command::Manager { command }) => Ok(Invocation::Manager(command)),
        Some(Command::Steer(command)) => Ok(Invocation::Steer(command)),
        Some(Command::Journal { path, json }) => Ok(Invocation::Journal { path, json }),
        Some(Command::WorkerConformance { command }) => {
            Ok(Invocation::WorkerConformance { command })
        }
        Some(Command::Result {
            job_id,
            broker,
            timeout,
            json,
        }) => Ok(Invocation::Result {
            job_id,
            broker,
            timeout,
            json,
        }),
        None => {
            let Some(entry) = entry else {
                return Err(command.error(
                    clap::error::ErrorKind::InvalidValue,
                    format!(
                        "unknown job `{name}`; the jobs are: {}",
                        jobs::JOBS
                            .iter()
                            .map(|e| e.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            };
            let job = build(entry, &matches, command)?;
            let mut run = cli.run;
            // `--retries N` (--exec, as GNU parallel) runs a failing command
            // up to N times: the run allows a task that many attempts.
            if let Ok(Some(&retries)) = matches.try_get_one::<u32>("retries") {
                run.max_attempts = run.max_attempts.max(retries);
            }
            Ok(Invocation::Run {
                config: Box::new(run),
                job,
                name: entry.name.to_string(),
            })
        }
    }
}

fn build(
    entry: &CliEntry,
    matches: &clap::ArgMatches,
    command: &mut clap::Command,
) -> Result<AnyJob, clap::Error> {
    (entry.build)(matches).map_err(|why| {
        command.error(
            clap::error::ErrorKind::ValueValidation,
            format!("--job {}: {why}", entry.name),
        )
    })
}

/// The program's own description, then the built-in jobs.
fn with_about(command: clap::Command) -> clap::Command {
    let jobs: String = jobs::JOBS
        .iter()
        .map(|job| format!("\n  {:8} {}", job.name, job.about))
        .collect();
    let about = format!(
        "supervisor: keeps N worker processes alive for a job, replaces the ones that die, \
         and finishes with the exact answer (nothing lost, nothing counted twice).\n\n\
         Jobs (--job NAME; `--job NAME --help` shows its options):{jobs}"
    );
    let long_about = format!(
        "{about}\n\n\
         Signals: TERM or INT drain (a second INT or a QUIT stops at once), HUP replaces \
         every worker one by one, TTIN / TTOU add / remove a worker.\n\n\
         Exit codes: 0 success, 1 could not run, 2 usage error, 3 finished with dead \
         letters, 4 restart limit reached, 130 interrupted."
    );
    command.about(about).long_about(long_about)
}

/// The job the arguments name: `--job NAME` (or `-j`), `exec` when
/// `--exec` is given, `worker-cmd` for `--worker-cmd`, else the default.
fn job_named(argv: &[OsString]) -> String {
    let mut named = None;
    let mut exec = None;
    let mut args = argv.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == "--job" || arg == "-j" {
            named = args.next().map(|v| v.into_owned());
        } else if let Some(v) = arg.strip_prefix("--job=") {
            named = Some(v.to_string());
        } else if let Some(v) = arg.strip_prefix("-j").filter(|v| !v.is_empty()) {
            named = Some(v.trim_start_matches('=').to_string());
        } else {
            for (flag, job) in [("--exec", "exec"), ("--worker-cmd", "worker-cmd")] {
                if arg == flag || arg.starts_with(&format!("{flag}=")) {
                    exec = Some(job);
                    if arg == flag {
                        // Its value may look like an option: never read it as one.
                        let _ = args.next();
                    }
                }
            }
        }
    }
    match (named, exec) {
        (Some(name), _) => name,
        (None, Some(job)) => job.into(),
        (None, None) => "primes".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job_of(args: &[&str]) -> String {
        let argv: Vec<OsString> = std::iter::once("supervisor")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        job_named(&argv)
    }

    #[test]
    fn the_job_is_found_before_parsing() {
        assert_eq!(job_of(&[]), "primes");
        assert_eq!(job_of(&["--job", "sleep"]), "sleep");
        assert_eq!(job_of(&["--job=echo"]), "echo");
        assert_eq!(job_of(&["-jfault"]), "fault");
        assert_eq!(job_of(&["--exec", "--job x", "--workers", "2"]), "exec");
        assert_eq!(job_of(&["--worker-cmd", "python3 w.py"]), "worker-cmd");
    }
}
