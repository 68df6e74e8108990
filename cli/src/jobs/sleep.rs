//! `--job sleep`: its options.

use outlast_worker::jobs::sleep::Sleep;

use super::{args, CliJob};

/// The options of `--job sleep`.
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Options of --job sleep")]
pub struct SleepArgs {
    /// How many tasks.
    #[arg(long, default_value = "1000", value_parser = args::count)]
    pub tasks: u64,
    /// Milliseconds each task waits (0: a no-op task).
    #[arg(long, default_value = "10", value_parser = args::count)]
    pub task_ms: u64,
}

impl CliJob for Sleep {
    type Args = SleepArgs;

    fn build(args: SleepArgs, _run: &super::RunContext) -> Result<Sleep, String> {
        Ok(Sleep::new(args.tasks, args.task_ms))
    }
}
