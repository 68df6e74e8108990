//! The manager's server: one thread, one `poll` over the listener, the
//! handshakes under way and every client; requests answered in arrival
//! order, waits parked (see [`state`]). Nothing a peer does can stall the
//! others: handshakes advance only when their bytes are there, a client's
//! half-sent frame waits in its buffer, a reply is never waited for
//! (a client that does not read its replies is dropped), and peers past
//! the limits are refused with a log line.

mod barrier;
mod client;
mod condition;
mod list;
mod lock;
mod map;
mod queue;
mod state;
mod step;

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::register::Registry;
use crate::net::{Address, Advance, Listener, NetError, Pending};
use crate::pipe::{Connection, SendTimeoutError};
use crate::spin::SpinBudget;
use crate::{Readable, Waitable};
use client::{Client, Leaving};
use state::State;
use step::ClientId;

/// The longest the loop looks for new requests before it sleeps (a wake
/// costs tens of microseconds on a busy machine); within it, as long as the
/// recent gaps between requests say pays, and not at all while the CPUs
/// are oversubscribed (the spin would take the quantum a client needs).
const SPIN: Duration = Duration::from_micros(50);
/// While it looks for work, how often the loop polls its descriptors.
const POLL_EVERY: Duration = Duration::from_micros(5);
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
    /// The largest request frame, in bytes.
    pub max_frame: usize,
    /// The most bytes of keys, values and items the manager stores, all
    /// objects together (user-registered types aside): a request that would
    /// store more is refused with an error that says so, and the server's
    /// memory stays bounded whatever its clients send.
    pub max_stored_bytes: usize,
    /// The most bytes one client connection may add to what is stored
    /// (less what it took away): one client cannot take the whole budget.
    pub max_client_stored_bytes: usize,
    /// Log refused and dropped peers to stderr.
    pub log: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_clients: 1024,
            max_pending: 64,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            holder_timeout: Some(Duration::from_secs(600)),
            max_frame: 64 << 20,
            max_stored_bytes: 1 << 30,
            max_client_stored_bytes: 256 << 20,
            log: true,
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

/// What a ready descriptor of a client is.
#[derive(Clone, Copy)]
enum Source {
    Socket,
    Bell,
}

/// Serves until `stop` (a pipe end whose other end is the manager's
/// handle) closes, or for ever without one.
pub(super) fn run(
    listener: Listener,
    registry: Registry,
    options: ServeOptions,
    stop: Option<Connection>,
) {
    let log = |what: String| {
        if options.log {
            eprintln!("manager[{}]: {what}", std::process::id());
        }
    };
    // Lanes are shared memory: for clients on this machine only.
    let local = matches!(listener.address(), Address::Unix(_));
    let mut state = State::new(
        registry.factories(),
        options.max_stored_bytes,
        options.max_client_stored_bytes,
    );
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut clients: BTreeMap<ClientId, Client> = BTreeMap::new();
    let mut next_client: ClientId = 1;
    let mut last_idle_check = Instant::now();
    let budget = SpinBudget::default();
    loop {
        let now = Instant::now();
        let mut wake_at = now + Duration::from_secs(1);
        if let Some(d) = state.next_deadline() {
            wake_at = wake_at.min(d);
        }
        if let Some(p) = pending.front() {
            wake_at = wake_at.min(p.started() + options.handshake_timeout);
        }
        if clients.values().any(|c| c.conn.has_unsent()) {
            wake_at = wake_at.min(now + Duration::from_millis(1));
        }
        // What to wait for: each client's socket (unless a reply to it is
        // still going out: it is not read until it takes that) and bell.
        let sources: Vec<(ClientId, Source)> = clients
            .iter()
            .flat_map(|(&id, c)| {
                let socket = (!c.conn.has_unsent()).then_some((id, Source::Socket));
                let bell = c.lane.is_some().then_some((id, Source::Bell));
                socket.into_iter().chain(bell)
            })
            .collect();
        let ready = {
            let listening = Readable(listener.as_raw_fd());
            let stopping = stop.as_ref().map(|s| Readable(s.as_raw_fd()));
            let fds: Vec<Readable> = sources
                .iter()
                .filter_map(|&(id, source)| {
                    let c = clients.get(&id)?;
                    Some(match source {
                        Source::Socket => Readable(c.conn.as_raw_fd()),
                        Source::Bell => Readable(c.lane.as_ref()?.doorbell.fd()),
                    })
                })
                .collect();
            let mut waitables: Vec<&dyn Waitable> = vec![&listening];
            waitables.push(stopping.as_ref().map_or(&listening as &dyn Waitable, |s| s));
            waitables.extend(pending.iter().map(|p| p as &dyn Waitable));
            waitables.extend(fds.iter().map(|f| f as &dyn Waitable));
            wait_for_work(&waitables, &clients, wake_at, &budget)
        };
        let pending_count = pending.len();
        let mut gone: Vec<ClientId> = Vec::new();
        let dropped = |id: ClientId,
                       why: Leaving,
                       clients: &BTreeMap<ClientId, Client>,
                       gone: &mut Vec<ClientId>| {
            let peer = clients.get(&id).map_or("a client", |c| c.peer.as_str());
            match why {
                Leaving::Left => {}
                Leaving::Garbage => log(format!(
                    "dropped {peer}: it sent something that is not a request"
                )),
                Leaving::NotReading => log(format!("dropped {peer}: it does not read its replies")),
                Leaving::Corrupted(why) => {
                    log(format!("dropped {peer}: its lane is corrupted ({why})"))
                }
            }
            gone.push(id);
        };
        let mut ready_pending = Vec::new();
        for index in ready {
            match index {
                0 => accept(&listener, &mut pending, options.max_pending, &log),
                1 if stop.is_some() => {
                    // Our creator let go of us (or died): stop serving.
                    return;
                }
                1 => {}
                i if i < 2 + pending_count => ready_pending.push(i - 2),
                i => {
                    let (id, source) = sources[i - 2 - pending_count];
                    let served = clients.get_mut(&id).map(|client| {
                        client.last_heard = Instant::now();
                        match source {
                            Source::Socket => client.serve_socket(&mut state, id),
                            Source::Bell if !client.heard() => Err(Leaving::Left),
                            // Served below, with every lane that holds requests.
                            Source::Bell => Ok(()),
                        }
                    });
                    if let Some(Err(why)) = served {
                        dropped(id, why, &clients, &mut gone);
                    }
                }
            }
        }
        // Every lane with requests, rung or not (a look at memory each).
        // Each is told how many threads are busy with us lately (this one
        // and the clients heard from), so that it knows whether yielding
        // to them pays.
        let peers = 1 + clients
            .values()
            .filter(|c| now.saturating_duration_since(c.last_heard) < ACTIVE)
            .count();
        let mut broken = Vec::new();
        for (&id, client) in clients.iter_mut() {
            if client.lane_pending() && !gone.contains(&id) {
                client.last_heard = Instant::now();
                if let Some(lane) = &client.lane {
                    lane.set_peers(peers);
                }
                if let Err(why) = client.serve_lane(&mut state, id) {
                    broken.push((id, why));
                }
            }
        }
        for (id, why) in broken {
            dropped(id, why, &clients, &mut gone);
        }
        // Handshakes: the ready ones advance, the late ones are dropped.
        let now = Instant::now();
        let mut still = VecDeque::with_capacity(pending.len());
        for (i, p) in pending.drain(..).enumerate() {
            if !ready_pending.contains(&i) {
                if now.duration_since(p.started()) >= options.handshake_timeout {
                    log(format!(
                        "dropped {}: no handshake within {:?}",
                        p.peer(),
                        options.handshake_timeout
                    ));
                } else {
                    still.push_back(p);
                }
                continue;
            }
            let peer = p.peer().to_string();
            if clients.len() >= options.max_clients {
                // Full: the client silent longest that holds and waits for
                // nothing makes room (its proxies reconnect when next
                // used); if every client is involved, the new one is
                // refused before the welcome, so it knows.
                let idlest = clients
                    .iter()
                    .filter(|(id, _)| !gone.contains(id) && !state.involves(**id))
                    .min_by_key(|(_, c)| c.last_heard)
                    .map(|(&id, c)| (id, c.peer.clone()));
                match idlest {
                    Some((id, idle_peer)) => {
                        log(format!(
                            "dropped {idle_peer}: the idlest of {} clients, for {peer}",
                            clients.len()
                        ));
                        if clients.remove(&id).is_some() {
                            state.client_gone(id);
                        }
                    }
                    None => {
                        log(format!("refused {peer}: {} clients already", clients.len()));
                        continue;
                    }
                }
            }
            match p.advance() {
                Ok(Advance::NotYet(p)) => still.push_back(p),
                Ok(Advance::Authenticated(mut conn, peer)) => {
                    conn.set_max_frame_size(options.max_frame);
                    clients.insert(next_client, Client::new(conn, peer, now, local));
                    next_client += 1;
                }
                Err(e) => log(format!("refused {peer}: {e}")),
            }
        }
        pending = still;
        // Replies left half-sent go on; once one is out, the requests
        // that came meanwhile are answered.
        let mut stuck = Vec::new();
        for (&id, client) in clients.iter_mut() {
            if !client.conn.has_unsent() {
                client.stuck_since = None;
                continue;
            }
            let since = *client.stuck_since.get_or_insert(now);
            match client.conn.flush_timeout(Duration::ZERO) {
                Ok(()) if !client.conn.has_unsent() => {
                    client.stuck_since = None;
                    if let Err(why) = client.serve_socket(&mut state, id) {
                        stuck.push((id, why));
                    }
                }
                Ok(()) | Err(SendTimeoutError::Timeout) if now.duration_since(since) < STUCK => {}
                Ok(()) | Err(SendTimeoutError::Timeout) => stuck.push((id, Leaving::NotReading)),
                Err(_) => stuck.push((id, Leaving::Left)),
            }
        }
        for (id, why) in stuck {
            dropped(id, why, &clients, &mut gone);
        }
        state.expire(now);
        if now.duration_since(last_idle_check) >= IDLE_CHECK_EVERY {
            last_idle_check = now;
            for (&id, client) in &clients {
                let silent = now.duration_since(client.last_heard);
                if options.idle_timeout.is_some_and(|idle| silent >= idle) && !state.involves(id) {
                    log(format!("dropped {}: idle for {silent:.0?}", client.peer));
                    gone.push(id);
                } else if options.holder_timeout.is_some_and(|hold| silent >= hold)
                    && state.holds(id)
                    && !state.waits(id)
                {
                    log(format!(
                        "dropped {}: silent for {silent:.0?} while holding a lock; what it holds goes on as a dead holder's",
                        client.peer
                    ));
                    gone.push(id);
                }
            }
        }
        // A client's death can grant a lock, whose reply can find another
        // client dead: until nothing changes.
        loop {
            for id in gone.drain(..) {
                if clients.remove(&id).is_some() {
                    state.client_gone(id);
                }
            }
            for (id, reply) in std::mem::take(&mut state.owed) {
                let sent = clients
                    .get_mut(&id)
                    .is_some_and(|c| c.reply(&reply).is_ok());
                if !sent {
                    gone.push(id);
                }
            }
            if gone.is_empty() {
                break;
            }
        }
    }
}

/// Waits for something to do: looks for what `budget` allows of [`SPIN`]
/// (lanes, a look at memory, all the while; descriptors, a system call,
/// every [`POLL_EVERY`]), then sleeps until `wake_at`, unless a lane holds
/// a request. The indices of the ready waitables (none: a lane, or the
/// time, is up).
fn wait_for_work(
    waitables: &[&dyn Waitable],
    clients: &BTreeMap<ClientId, Client>,
    wake_at: Instant,
    budget: &SpinBudget,
) -> Vec<usize> {
    let lanes_pending = || clients.values().any(Client::lane_pending);
    let spun = Instant::now();
    let spin = budget.limit(SPIN);
    // Not spinning: the blocking poll below sees what is ready at once.
    let mut polled: Option<Instant> = spin.is_zero().then_some(spun);
    loop {
        if lanes_pending() {
            budget.record(spun.elapsed());
            return Vec::new();
        }
        if polled.is_none_or(|at| at.elapsed() >= POLL_EVERY) {
            let ready = crate::wait(waitables, Some(Duration::ZERO)).unwrap_or_default();
            if !ready.is_empty() {
                budget.record(spun.elapsed());
                return ready;
            }
            polled = Some(Instant::now());
        }
        if spun.elapsed() >= spin {
            break;
        }
        std::hint::spin_loop();
    }
    // About to sleep: a lane's next request must ring, and one published
    // before the bells were cleared is seen now.
    for client in clients.values() {
        if let Some(lane) = &client.lane {
            lane.clear_bell();
        }
    }
    if lanes_pending() {
        return Vec::new();
    }
    let wait = wake_at.saturating_duration_since(Instant::now());
    let ready = crate::wait(waitables, Some(wait)).unwrap_or_default();
    budget.record(spun.elapsed());
    ready
}

/// Takes every connection waiting at the listener into a handshake.
fn accept(listener: &Listener, pending: &mut VecDeque<Pending>, max: usize, log: &impl Fn(String)) {
    loop {
        match listener.accept_pending() {
            Ok(p) => {
                if pending.len() >= max {
                    if let Some(oldest) = pending.pop_front() {
                        log(format!(
                            "dropped {}: too many handshakes at once",
                            oldest.peer()
                        ));
                    }
                }
                pending.push_back(p);
            }
            Err(NetError::Timeout(_)) => return,
            Err(NetError::Auth(e)) => log(format!("refused a peer: {e}")),
            // Out of descriptors, say: try again on the next turn.
            Err(NetError::Io(e)) => {
                log(format!("cannot accept: {e}"));
                return;
            }
        }
    }
}
