//! The manager's server: a few threads (one per two CPUs by default), each
//! serving its share of the clients with one `poll` ([`shard`]); the
//! objects behind one lock, held for one operation ([`hub`]); waits parked
//! (see [`state`]). Nothing a peer does can stall the others: handshakes
//! advance only when their bytes are there, a client's half-sent frame
//! waits in its buffer, a reply is never waited for (a client that does
//! not read its replies is dropped), and peers past the limits are refused
//! with a log line.

mod barrier;
mod client;
mod condition;
mod hub;
mod lifetimes;
mod list;
mod lock;
mod map;
mod queue;
mod shard;
mod state;
mod step;

use std::time::Duration;

use super::register::Registry;
use crate::net::Listener;
use crate::pipe::Connection;
use hub::Hub;
use shard::Front;
use state::State;

/// The longest the loop looks for new requests before it sleeps (a wake
/// costs tens of microseconds on a busy machine); within it, as long as the
/// recent gaps between requests say pays, and not at all while the CPUs
/// are oversubscribed (the spin would take the quantum a client needs).
const SPIN: Duration = Duration::from_micros(50);
/// While it looks for work, how often the loop polls its descriptors.
const POLL_EVERY: Duration = Duration::from_micros(5);
/// While lanes keep it busy, how often it still polls them.
const POLL_AT_LEAST: Duration = Duration::from_micros(200);
pub(super) use super::protocol::MAX_BATCH;
/// The most items one list, dict or queue may hold, so no client can make
/// the server allocate without bound through one object.
pub(super) const MAX_ITEMS: usize = 1 << 24;

/// A server's limits (the defaults suit a local manager; a remote one may
/// want fewer clients).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ServeOptions {
    /// Authenticated clients at once; more are refused.
    pub max_clients: usize,
    /// Handshakes under way at once; past it the oldest is dropped.
    pub max_pending: usize,
    /// How long a new connection has to prove the key.
    pub handshake_timeout: Duration,
    /// A client silent this long, holding nothing and waiting for
    /// nothing, is disconnected (a proxy reconnects by itself).
    pub idle_timeout: Option<Duration>,
    /// A client silent this long while it holds a lock (or a semaphore's
    /// unit, or a condition) and waits for nothing is disconnected as if it
    /// had died: what it holds goes to the next in line, told that the
    /// holder died. A stopped (SIGSTOP) or hung holder otherwise keeps a
    /// lock forever. Hold a lock longer than this without a request on
    /// that connection only with `None`.
    pub holder_timeout: Option<Duration>,
    /// The largest request frame, in bytes (256 MiB by default). Each
    /// client is told it when it connects and refuses a larger request
    /// itself (`ManagerError::TooLarge`); a peer that sends one anyway is
    /// dropped. A client takes no frame over its own cap, 1 GiB
    /// ([`DEFAULT_MAX_FRAME_SIZE`](crate::codec::DEFAULT_MAX_FRAME_SIZE)),
    /// whatever is set here: past it, neither requests nor replies go.
    pub max_frame: usize,
    /// The most bytes of keys, values and items the manager stores, all
    /// objects together (user-registered types aside): a request that would
    /// store more is refused with an error that says so, and the server's
    /// memory stays bounded whatever its clients send.
    pub max_stored_bytes: usize,
    /// The most bytes one client connection may add to what is stored
    /// (less what it took away): one client cannot take the whole budget.
    pub max_client_stored_bytes: usize,
    /// How long a remote process's references to anonymous objects last
    /// after its last connection closed (a local process's last until its
    /// pid is dead); past it, objects only it held are freed.
    pub remote_refs_grace: Duration,
    /// Log refused and dropped peers to stderr.
    pub log: bool,
    /// Threads serving clients (each client is served by one; objects
    /// are shared by all). 0: the `OUTLAST_MANAGER_THREADS` environment
    /// variable if it is set, else one per two CPUs this process may run
    /// on (a busy client needs a CPU as much as the thread serving it),
    /// at least 1 and at most 8.
    pub threads: usize,
}

/// The most threads a server starts by itself.
const MAX_THREADS: usize = 8;

impl ServeOptions {
    /// The threads to start.
    fn thread_count(&self) -> usize {
        if self.threads > 0 {
            return self.threads.min(256);
        }
        std::env::var("OUTLAST_MANAGER_THREADS")
            .ok()
            .and_then(|n| n.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(crate::os::contention::usable_cpus() / 2)
            .clamp(1, MAX_THREADS)
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_clients: 1024,
            max_pending: 64,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            holder_timeout: Some(Duration::from_secs(600)),
            max_frame: 256 << 20,
            max_stored_bytes: 1 << 30,
            max_client_stored_bytes: 256 << 20,
            remote_refs_grace: Duration::from_secs(3600),
            log: true,
            threads: 0,
        }
    }
}

/// A client heard from within this counts as busy with us (see
/// `ServerLane::set_peers`).
const ACTIVE: Duration = Duration::from_millis(20);

/// How often silent clients are looked for.
const IDLE_CHECK_EVERY: Duration = Duration::from_millis(250);

/// A client that leaves a reply unread this long is dropped.
const STUCK: Duration = Duration::from_secs(10);

/// Serves until `stop` (a pipe end whose other end is the manager's
/// handle) closes, or for ever without one.
pub(super) fn run(
    listener: Listener,
    registry: Registry,
    options: ServeOptions,
    stop: Option<Connection>,
) {
    let state = State::new(
        registry.factories(),
        options.max_stored_bytes,
        options.max_client_stored_bytes,
    );
    let hub = match Hub::new(state, options.thread_count()) {
        Ok(hub) => hub,
        Err(e) => {
            crate::os::stderr::line(format_args!(
                "manager[{}]: cannot start: {e}",
                std::process::id()
            ));
            return;
        }
    };
    std::thread::scope(|scope| {
        for me in 1..hub.threads() {
            let (hub, options) = (&hub, &options);
            let started = std::thread::Builder::new()
                .name(format!("manager-{me}"))
                .spawn_scoped(scope, move || shard::serve(hub, me, None, options));
            if let Err(e) = started {
                // Serve with the threads there are: no client is given to
                // one that does not run.
                if options.log {
                    crate::os::stderr::line(format_args!(
                        "manager[{}]: serving with {me} threads: {e}",
                        std::process::id()
                    ));
                }
                hub.serve_with(me);
                break;
            }
        }
        shard::serve(&hub, 0, Some(Front { listener, stop }), &options);
    });
}
