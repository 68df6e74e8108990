//! The `supervisor` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use supervisor::bench::{self, Bench, BenchOptions};

/// Keeps N worker processes alive for a job: dispatches tasks with nothing lost
/// when workers die, shows progress and IPC throughput, and reports the result.
#[derive(Debug, Parser)]
#[command(name = "supervisor", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
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
        None => {
            eprintln!("supervisor: running jobs is not built yet; try `supervisor bench pipe`");
            ExitCode::from(2)
        }
    }
}
