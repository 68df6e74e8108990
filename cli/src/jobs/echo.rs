//! `--job echo`: its options.

use outlast_worker::jobs::echo::Echo;

use super::{args, CliJob};

/// The options of `--job echo`.
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Options of --job echo")]
pub struct EchoArgs {
    /// How many payloads.
    #[arg(long, default_value = "1000", value_parser = args::count)]
    pub tasks: u64,
    /// Bytes sent to a worker and back per task.
    #[arg(long, default_value = "64", value_parser = args::count)]
    pub payload_bytes: u64,
}

impl CliJob for Echo {
    type Args = EchoArgs;

    fn build(args: EchoArgs, _run: &super::RunContext) -> Result<Echo, String> {
        Echo::new(args.tasks, args.payload_bytes)
    }
}
