//! `--job primes`: its options.

use outlast_worker::jobs::primes::Primes;

use super::{args, CliJob};

/// The options of `--job primes`.
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Options of --job primes")]
pub struct PrimesArgs {
    /// Count the primes below this (1e9, 10^9 and 1_000_000_000 all work).
    #[arg(long, default_value = "1e9", value_parser = args::count)]
    pub limit: u64,
    /// Numbers per task [default: about limit/256, at least 1e6].
    #[arg(long, value_parser = args::positive_count)]
    pub chunk: Option<u64>,
}

impl CliJob for Primes {
    type Args = PrimesArgs;

    fn build(args: PrimesArgs, _run: &super::RunContext) -> Result<Primes, String> {
        Primes::new(args.limit, args.chunk)
    }
}
