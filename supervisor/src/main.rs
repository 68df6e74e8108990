//! The `supervisor` command line: `supervisor --workers 8 --job primes` runs a
//! job; `supervisor bench ...` measures IPC figures.

use std::io::Write as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use supervisor::bench::{self, Bench, BenchOptions};
use supervisor::config::RunConfig;
use supervisor::report::Outcome;

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
}

fn main() -> ExitCode {
    ipc::init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Bench { what, options }) => match bench::run(what, &options) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("supervisor bench: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Jobs) => {
            for entry in worker::jobs::REGISTRY {
                let _ = writeln!(std::io::stdout(), "{:8} {}", entry.name, entry.about);
            }
            ExitCode::SUCCESS
        }
        None => run_job(&cli.run),
    }
}

fn run_job(config: &RunConfig) -> ExitCode {
    match supervisor::run::run(config) {
        Ok(report) => {
            let text = if config.json {
                report.to_json()
            } else {
                report.to_string()
            };
            // A closed stdout (`| head`) loses the report, not the exit code.
            let _ = writeln!(std::io::stdout(), "{text}");
            ExitCode::from(report.exit_code)
        }
        Err(e) => {
            eprintln!("supervisor: {e}");
            ExitCode::from(Outcome::Failed.exit_code())
        }
    }
}
