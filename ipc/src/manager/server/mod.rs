//! The manager's server: one thread, one `poll` over the listener, the
//! handshakes under way and every client; requests answered in arrival
//! order, waits parked (see [`state`]). Nothing a peer does can stall the
//! others: handshakes advance only when their bytes are there, a client's
//! half-sent frame waits in its buffer, a reply is never waited for
//! (a client that does not read its replies is dropped), and peers past
//! the limits are refused with a log line.

mod barrier;
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

use super::protocol::{Reply, Request};
use super::register::Registry;
use crate::net::{Advance, Listener, NetError, Pending};
use crate::pipe::{Connection, RecvError, SendTimeoutError, TryRecvError};
use crate::{Readable, Waitable};
use state::State;
use step::ClientId;

/// How long the loop looks for new requests before it sleeps (a wake
/// costs tens of microseconds on a busy machine).
const SPIN: Duration = Duration::from_micros(50);
/// The most requests one batch may hold.
pub(super) const MAX_BATCH: usize = 4096;
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
    /// The largest request frame, in bytes.
    pub max_frame: usize,
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
            max_frame: 64 << 20,
            log: true,
        }
    }
}

struct Client {
    conn: Connection,
    peer: String,
    last_heard: Instant,
    /// Since when a reply has been waiting to go out whole.
    stuck_since: Option<Instant>,
}

/// A client that leaves a reply unread this long is dropped.
const STUCK: Duration = Duration::from_secs(10);

/// Why a client is dropped.
enum Leaving {
    /// It closed its end (or its process died): normal, not logged.
    Left,
    Garbage,
    NotReading,
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
    let mut state = State::new(registry.factories());
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut clients: BTreeMap<ClientId, Client> = BTreeMap::new();
    let mut next_client: ClientId = 1;
    let mut last_idle_check = Instant::now();
    loop {
        let now = Instant::now();
        let mut wake_at = now + Duration::from_secs(1);
        if let Some(d) = state.next_deadline() {
            wake_at = wake_at.min(d);
        }
        if let Some(p) = pending.front() {
            wake_at = wake_at.min(p.started() + options.handshake_timeout);
        }
        let flushing = clients.values().any(|c| c.conn.has_unsent());
        if flushing {
            wake_at = wake_at.min(now + Duration::from_millis(1));
        }
        // Who to read: a client with a reply still going out is not read
        // from until it takes it.
        let readers: Vec<ClientId> = clients
            .iter()
            .filter(|(_, c)| !c.conn.has_unsent())
            .map(|(&id, _)| id)
            .collect();
        let ready = {
            let listening = Readable(listener.as_raw_fd());
            let stopping = stop.as_ref().map(|s| Readable(s.as_raw_fd()));
            let fds: Vec<Readable> = readers
                .iter()
                .filter_map(|id| clients.get(id))
                .map(|c| Readable(c.conn.as_raw_fd()))
                .collect();
            let mut waitables: Vec<&dyn Waitable> = vec![&listening];
            waitables.push(stopping.as_ref().map_or(&listening as &dyn Waitable, |s| s));
            waitables.extend(pending.iter().map(|p| p as &dyn Waitable));
            waitables.extend(fds.iter().map(|f| f as &dyn Waitable));
            let spun = Instant::now();
            let mut ready = Vec::new();
            while ready.is_empty() && spun.elapsed() < SPIN {
                ready = crate::wait(&waitables, Some(Duration::ZERO)).unwrap_or_default();
            }
            if ready.is_empty() {
                let wait = wake_at.saturating_duration_since(Instant::now());
                ready = crate::wait(&waitables, Some(wait)).unwrap_or_default();
            }
            ready
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
                    let id = readers[i - 2 - pending_count];
                    let served = clients.get_mut(&id).map(|client| {
                        client.last_heard = Instant::now();
                        serve_client(&mut state, id, client)
                    });
                    if let Some(Err(why)) = served {
                        dropped(id, why, &clients, &mut gone);
                    }
                }
            }
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
                // Before the welcome, so the peer knows it was refused.
                log(format!("refused {peer}: {} clients already", clients.len()));
                continue;
            }
            match p.advance() {
                Ok(Advance::NotYet(p)) => still.push_back(p),
                Ok(Advance::Authenticated(mut conn, peer)) => {
                    conn.set_max_frame_size(options.max_frame);
                    clients.insert(
                        next_client,
                        Client {
                            conn,
                            peer,
                            last_heard: now,
                            stuck_since: None,
                        },
                    );
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
                    if let Err(why) = serve_client(&mut state, id, client) {
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
        if let Some(idle) = options.idle_timeout {
            if now.duration_since(last_idle_check) >= Duration::from_secs(1) {
                last_idle_check = now;
                for (&id, client) in &clients {
                    if now.duration_since(client.last_heard) >= idle && !state.involves(id) {
                        log(format!("dropped {}: idle for {idle:?}", client.peer));
                        gone.push(id);
                    }
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
                    .is_some_and(|c| send(&mut c.conn, &reply));
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

/// Answers every whole request a client has sent; why it is to go, if it is.
fn serve_client(state: &mut State, id: ClientId, client: &mut Client) -> Result<(), Leaving> {
    loop {
        match client.conn.try_recv::<Request>() {
            Ok(request) => {
                if let Some(reply) = state.handle(id, request) {
                    if !send(&mut client.conn, &reply) {
                        return Err(Leaving::NotReading);
                    }
                    if client.conn.has_unsent() {
                        // Read no more until it has taken this one.
                        return Ok(());
                    }
                }
            }
            Err(TryRecvError::Empty) => return Ok(()),
            Err(TryRecvError::Recv(RecvError::Disconnected)) => return Err(Leaving::Left),
            Err(_) => return Err(Leaving::Garbage),
        }
    }
}

/// Sends without waiting: what does not fit goes out on later turns; a
/// client whose buffer is full (it does not read) fails.
fn send(conn: &mut Connection, reply: &Reply) -> bool {
    conn.send_timeout(reply, Duration::ZERO).is_ok()
}
