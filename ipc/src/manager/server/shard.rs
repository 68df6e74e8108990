//! One of the server's threads: one `poll` over its clients' sockets and
//! bells and its inbox (the first thread also over the listener, the
//! handshakes under way and the stop pipe); requests answered in arrival
//! order, waits parked (see [`super::state`]). Nothing a peer does can
//! stall the others: handshakes advance only when their bytes are there, a
//! client's half-sent frame waits in its buffer, a reply is never waited
//! for (a client that does not read its replies is dropped), and peers past
//! the limits are refused with a log line.

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::client::{Client, Leaving};
use super::hub::{Hub, Message};
use super::step::ClientId;
use super::{ServeOptions, ACTIVE, IDLE_CHECK_EVERY, POLL_AT_LEAST, POLL_EVERY, SPIN, STUCK};
use crate::net::{Advance, Listener, NetError, Pending};
use crate::pipe::{Connection, SendTimeoutError};
use crate::spin::SpinBudget;
use crate::{Readable, Waitable};

/// What the first thread has beside its clients.
pub(super) struct Front {
    pub listener: Listener,
    /// A pipe end whose other end is the manager's handle: closed, we stop.
    pub stop: Option<Connection>,
}

/// What a ready descriptor is.
#[derive(Clone, Copy)]
enum Ready {
    Inbox,
    Listener,
    Stop,
    Socket(ClientId),
    Bell(ClientId),
}

/// Serves this thread's clients until the hub stops (the first thread
/// stops it when `stop` closes).
pub(super) fn serve(hub: &Hub, me: usize, front: Option<Front>, options: &ServeOptions) {
    let log = |what: String| {
        if options.log {
            crate::os::stderr::line(format_args!("manager[{}]: {what}", std::process::id()));
        }
    };
    // Lanes are shared memory: for clients on this machine only.
    let local = front
        .as_ref()
        .is_some_and(|f| f.listener.address().is_local());
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut clients: BTreeMap<ClientId, Client> = BTreeMap::new();
    let mut next_sequence: u64 = 1;
    let mut last_idle_check = Instant::now();
    let mut last_poll = Instant::now();
    let budget = SpinBudget::default();
    loop {
        if hub.stopping.load(Ordering::SeqCst) {
            return;
        }
        let now = Instant::now();
        let mut wake_at = now + Duration::from_secs(1);
        if let Some(d) = hub.state().next_deadline() {
            wake_at = wake_at.min(d);
        }
        if let Some(p) = pending.front() {
            wake_at = wake_at.min(p.started() + options.handshake_timeout);
        }
        if clients.values().any(|c| c.conn.has_unsent()) {
            wake_at = wake_at.min(now + Duration::from_millis(1));
        }
        // What to wait for: the inbox; the listener and the stop pipe; each
        // client's socket (unless a reply to it is still going out: it is
        // not read until it takes that) and bell; the handshakes, last.
        let mut what = vec![Ready::Inbox];
        let mut fds = vec![Readable(hub.inbox(me).listener.fd())];
        if let Some(front) = &front {
            what.push(Ready::Listener);
            fds.push(Readable(front.listener.as_raw_fd()));
            if let Some(stop) = &front.stop {
                what.push(Ready::Stop);
                fds.push(Readable(stop.as_raw_fd()));
            }
        }
        for (&id, c) in &clients {
            if !c.conn.has_unsent() {
                what.push(Ready::Socket(id));
                fds.push(Readable(c.conn.as_raw_fd()));
            }
            if let Some(lane) = &c.lane {
                what.push(Ready::Bell(id));
                fds.push(Readable(lane.doorbell.fd()));
            }
        }
        let ready = {
            let mut waitables: Vec<&dyn Waitable> =
                fds.iter().map(|f| f as &dyn Waitable).collect();
            waitables.extend(pending.iter().map(|p| p as &dyn Waitable));
            wait_for_work(&waitables, &clients, wake_at, &budget, &mut last_poll)
        };
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
        let mut inbox_rang = false;
        for index in ready {
            let Some(&source) = what.get(index) else {
                ready_pending.push(index - what.len());
                continue;
            };
            match source {
                Ready::Inbox => inbox_rang = true,
                Ready::Listener => {
                    if let Some(front) = &front {
                        accept(&front.listener, &mut pending, options.max_pending, &log);
                    }
                }
                Ready::Stop => {
                    // Our creator let go of us (or died): stop serving.
                    hub.stop();
                    return;
                }
                // Already gone (its socket and its bell both said so).
                Ready::Socket(id) | Ready::Bell(id) if gone.contains(&id) => {}
                Ready::Socket(id) | Ready::Bell(id) => {
                    let served = clients.get_mut(&id).map(|client| {
                        client.hear(hub, Instant::now());
                        let served = match source {
                            Ready::Socket(_) => client.serve_socket(hub, id),
                            _ if !client.heard() => Err(Leaving::Left),
                            // Served below, with every lane that holds requests.
                            _ => Ok(()),
                        };
                        client.unless_gone(hub, id, served)
                    });
                    if let Some(Err(why)) = served {
                        dropped(id, why, &clients, &mut gone);
                    }
                }
            }
        }
        if inbox_rang {
            for message in hub.inbox(me).take() {
                match message {
                    Message::Adopt(id, client) => {
                        clients.insert(id, *client);
                    }
                    Message::Reply(id, reply) => {
                        if let Some(client) = clients.get_mut(&id) {
                            let sent = client.reply(&reply);
                            if let Err(why) = client.unless_gone(hub, id, sent) {
                                dropped(id, why, &clients, &mut gone);
                            }
                        }
                    }
                    Message::Evict(id) => gone.push(id),
                }
            }
        }
        // Every lane with requests, rung or not (a look at memory each).
        // Each is told how many threads are busy with us lately (the
        // server's busy threads and the clients heard from), so that it
        // knows whether yielding to them pays.
        let active = clients
            .values()
            .filter(|c| now.saturating_duration_since(c.last_heard) < ACTIVE)
            .count();
        let peers = hub.set_active(me, active);
        let mut broken = Vec::new();
        for (&id, client) in clients.iter_mut() {
            if client.lane_pending() && !gone.contains(&id) {
                client.hear(hub, Instant::now());
                if let Some(lane) = &client.lane {
                    lane.set_peers(peers);
                }
                let served = client.serve_lane(hub, id);
                if let Err(why) = client.unless_gone(hub, id, served) {
                    broken.push((id, why));
                }
            }
        }
        for (id, why) in broken {
            dropped(id, why, &clients, &mut gone);
        }
        if front.is_some() {
            let pending_now = std::mem::take(&mut pending);
            pending = handshakes(
                hub,
                me,
                pending_now,
                &ready_pending,
                &mut clients,
                &mut gone,
                &mut next_sequence,
                local,
                options,
                &log,
            );
        }
        // Replies left half-sent go on; once one is out, the requests
        // that came meanwhile are answered.
        let now = Instant::now();
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
                    let served = client.serve_socket(hub, id);
                    if let Err(why) = client.unless_gone(hub, id, served) {
                        stuck.push((id, why));
                    }
                }
                Ok(()) | Err(SendTimeoutError::Timeout) if now.duration_since(since) < STUCK => {}
                Ok(()) | Err(SendTimeoutError::Timeout) => stuck.push((id, Leaving::NotReading)),
                Err(_) => stuck.push((id, client.last_words(hub, id))),
            }
        }
        for (id, why) in stuck {
            dropped(id, why, &clients, &mut gone);
        }
        hub.state().expire(now);
        if now.duration_since(last_idle_check) >= IDLE_CHECK_EVERY {
            last_idle_check = now;
            let mut state = hub.state();
            if me == 0 {
                state.sweep(now, options.remote_refs_grace);
            }
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
        settle(hub, me, &mut clients, gone);
    }
}

/// Drops the clients `gone` and sends the replies owed (a client's death
/// can grant a lock, whose reply can find another client dead): until
/// nothing changes. Replies owed to another thread's clients go to its
/// inbox.
fn settle(hub: &Hub, me: usize, clients: &mut BTreeMap<ClientId, Client>, mut gone: Vec<ClientId>) {
    loop {
        for id in gone.drain(..) {
            if clients.remove(&id).is_some() {
                hub.leave(id);
                hub.state().client_gone(id);
            }
        }
        let owed = std::mem::take(&mut hub.state().owed);
        for (id, reply) in owed {
            if hub.owner(id) != me {
                hub.send(id, Message::Reply(id, reply));
                continue;
            }
            if let Some(client) = clients.get_mut(&id) {
                let sent = client.reply(&reply);
                if client.unless_gone(hub, id, sent).is_err() {
                    gone.push(id);
                }
            }
        }
        if gone.is_empty() {
            break;
        }
    }
}

/// Handshakes: the ready ones advance, the late ones are dropped; an
/// authenticated client goes to the thread serving fewest. The ones still
/// under way.
#[allow(clippy::too_many_arguments)]
fn handshakes(
    hub: &Hub,
    me: usize,
    pending: VecDeque<Pending>,
    ready: &[usize],
    clients: &mut BTreeMap<ClientId, Client>,
    gone: &mut Vec<ClientId>,
    next_sequence: &mut u64,
    local: bool,
    options: &ServeOptions,
    log: &impl Fn(String),
) -> VecDeque<Pending> {
    let now = Instant::now();
    let mut still = VecDeque::with_capacity(pending.len());
    for (i, p) in pending.into_iter().enumerate() {
        if !ready.contains(&i) {
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
        let connected = hub.client_count();
        if connected >= options.max_clients {
            // Full: the client silent longest that holds and waits for
            // nothing makes room (its proxies reconnect when next used);
            // if every client is involved, the new one is refused before
            // the welcome, so it knows.
            match hub.evict_idlest() {
                Some((id, idle_peer)) => {
                    log(format!(
                        "dropped {idle_peer}: the idlest of {connected} clients, for {peer}"
                    ));
                    if hub.owner(id) == me {
                        gone.push(id);
                    } else {
                        hub.send(id, Message::Evict(id));
                    }
                }
                None => {
                    log(format!("refused {peer}: {connected} clients already"));
                    continue;
                }
            }
        }
        match p.advance() {
            Ok(Advance::NotYet(p)) => still.push_back(p),
            Ok(Advance::Authenticated(mut conn, peer)) => {
                conn.set_max_frame_size(options.max_frame);
                let (id, presence) = hub.join(*next_sequence, peer.clone());
                *next_sequence += 1;
                let client = Client::new(conn, peer, presence, now, local);
                if hub.owner(id) == me {
                    clients.insert(id, client);
                } else {
                    hub.send(id, Message::Adopt(id, Box::new(client)));
                }
            }
            Err(e) => log(format!("refused {peer}: {e}")),
        }
    }
    still
}

/// Waits for something to do: looks for what `budget` allows of [`SPIN`]
/// (lanes, a look at memory, all the while; descriptors, a system call,
/// every [`POLL_EVERY`]), then sleeps until `wake_at`, unless a lane holds
/// a request. The indices of the ready waitables (none: a lane, or the
/// time, is up). While lanes keep it busy, the descriptors are still
/// looked at every [`POLL_AT_LEAST`], so that sockets, the inbox and new
/// connections are not starved.
fn wait_for_work(
    waitables: &[&dyn Waitable],
    clients: &BTreeMap<ClientId, Client>,
    wake_at: Instant,
    budget: &SpinBudget,
    last_poll: &mut Instant,
) -> Vec<usize> {
    let lanes_pending = || clients.values().any(Client::lane_pending);
    let spun = Instant::now();
    if spun.saturating_duration_since(*last_poll) >= POLL_AT_LEAST {
        *last_poll = spun;
        let ready = crate::wait(waitables, Some(Duration::ZERO)).unwrap_or_default();
        if !ready.is_empty() {
            return ready;
        }
    }
    let spin = budget.limit(SPIN);
    // Not spinning: the blocking poll below sees what is ready at once.
    // Spinning for lanes alone: their next request is a look at memory
    // away, and a poll now (a system call over every descriptor) would
    // stand between it and its answer; the descriptors wait
    // [`POLL_EVERY`]. A client on its socket alone is polled for at once.
    let lanes_only = clients.values().all(|c| c.lane.is_some());
    let mut polled: Option<Instant> = (spin.is_zero() || lanes_only).then_some(spun);
    loop {
        if lanes_pending() {
            budget.record(spun.elapsed());
            return Vec::new();
        }
        if polled.is_none_or(|at| at.elapsed() >= POLL_EVERY) {
            let ready = crate::wait(waitables, Some(Duration::ZERO)).unwrap_or_default();
            let at = Instant::now();
            *last_poll = at;
            if !ready.is_empty() {
                budget.record(spun.elapsed());
                return ready;
            }
            polled = Some(at);
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
    *last_poll = Instant::now();
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
