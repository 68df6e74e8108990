//! `supervisor bench ...`: IPC and process figures measured on this machine,
//! with a baseline measured in the same run so that ratios survive noise.

mod affinity;
mod awaited;
mod broker;
mod control;
mod dispatch;
mod futex_floor;
mod journal;
mod large;
mod load;
mod manager;
mod pipe;
mod pool;
mod queue;
mod report;
mod sieve;
mod spawn;
mod spsc_ring;
mod startup;
mod stats;
mod sync;

pub use report::Row;

/// What `supervisor bench` can measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Bench {
    /// Pipe throughput at 64 B, 4 KiB, 1 MiB against raw pipe writes.
    Pipe,
    /// Process start + join latency, fork and spawn.
    Spawn,
    /// No-op tasks through the supervisor with 2 workers (tasks/s).
    Dispatch,
    /// The primes job through the supervisor against the same sieve in one process.
    Sieve,
    /// Lock, locked and atomic counters across processes, Array bulk copy.
    Sync,
    /// outlast_ipc::queue::Queue: 1->1 at 64 B, 4 KiB, 1 MiB (single and batched), 2->2, ping-pong.
    Queue,
    /// Start-up: 100, 300 and 1,000 workers until all are ready, beside Python's Pool(n).
    Startup,
    /// Pool::map / imap / submit with 2 workers, imap memory, --exec beside xargs -P2.
    Pool,
    /// outlast_ipc::manager dict round trips: 1 and 4 clients, batches of 64.
    Manager,
    /// Pool::apply with a 100 MB argument and with a 100 MB result; Pool::map over four; a 100 MB Queue item to a child.
    Large,
    /// A status request's latency while 2 workers sieve; primes with and
    /// without the control socket and metrics in use.
    Control,
    /// What --journal costs: no-op tasks and --exec true with and without
    /// one, beside this disk's rate of synced appends.
    Journal,
    /// No-op tasks and primes through a Redis Streams broker (a
    /// redis-server started here), beside the same without; three
    /// supervisors sharing one job.
    Broker,
    /// Awaiting beside blocking: a Queue stream taken by get and by
    /// get_async; Queue and Pipe round trips with a child, both ways.
    Async,
}

/// Options shared by every benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// Print one JSON object per result line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Repetitions per measurement; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Small message counts: seconds instead of tens of seconds (for tests).
    #[arg(long)]
    pub quick: bool,
    /// sieve: count the primes below this.
    #[arg(long, default_value = "1e10", value_parser = |s: &str| outlast_worker::numbers::parse_count(s).map_err(|e| e.to_string()))]
    pub limit: u64,
    /// sieve: worker processes, and threads for the in-process run.
    #[arg(long, default_value_t = 2)]
    pub workers: u32,
    /// Run N busy processes beside the measurement (`--load` alone: one
    /// per CPU), as on a machine whose cores are all taken.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "0")]
    pub load: Option<usize>,
}

/// Runs one benchmark and prints its rows.
pub fn run(bench: Bench, options: &BenchOptions) -> Result<Vec<Row>, String> {
    let runs = options.runs.max(1);
    let load = options.load.map(load::Load::start).transpose()?;
    let mut rows = match bench {
        Bench::Pipe => pipe::run(runs, options.quick)?,
        Bench::Spawn => spawn::run(options.quick)?,
        Bench::Dispatch => dispatch::run(runs, options.quick)?,
        Bench::Sync => sync::run(runs, options.quick)?,
        Bench::Queue => queue::run(runs, options.quick)?,
        Bench::Startup => startup::run(runs, options.quick)?,
        Bench::Pool => pool::run(runs, options.quick)?,
        Bench::Large => large::run(runs, options.quick)?,
        Bench::Manager => manager::run(runs, options.quick)?,
        Bench::Control => control::run(runs, options.quick)?,
        Bench::Broker => broker::run(runs, options.quick)?,
        Bench::Journal => journal::run(runs, options.quick)?,
        Bench::Async => awaited::run(runs, options.quick)?,
        Bench::Sieve => {
            let limit = if options.quick {
                options.limit.min(10_000_000)
            } else {
                options.limit
            };
            sieve::run(runs, limit, options.workers)?
        }
    };
    if let Some(load) = load {
        let busy = load.count();
        drop(load);
        for row in &mut rows {
            row.load = Some(busy);
        }
        if !options.json {
            println!("(beside {busy} busy processes)");
        }
    }
    report::print(&rows, options.json);
    Ok(rows)
}
