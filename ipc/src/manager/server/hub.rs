//! What the server's threads share: the objects (one lock, held for one
//! operation and never across a system call), who is connected and when
//! each was last heard, and each thread's inbox.
//!
//! Clients are spread over the threads; a client's socket and lane are
//! served only by its own thread, so what one thread reads, decodes,
//! encodes and writes runs beside the others. A reply owed to a client of
//! another thread (a lock granted by a release here) goes to that thread's
//! inbox, which rings it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::super::protocol::Reply;
use super::client::Client;
use super::state::State;
use super::step::ClientId;
use crate::spsc::doorbell::{self, Listener, Ringer};

/// What one thread is handed by another.
pub(super) enum Message {
    /// A new client, authenticated, for this thread to serve.
    Adopt(ClientId, Box<Client>),
    /// A reply owed to a client of this thread.
    Reply(ClientId, Reply),
    /// Drop this client, to make room for a new one.
    Evict(ClientId),
}

/// One thread's inbox: messages, and a doorbell it polls.
pub(super) struct Inbox {
    messages: Mutex<Vec<Message>>,
    ringer: Ringer,
    pub listener: Listener,
}

impl Inbox {
    fn new() -> std::io::Result<Inbox> {
        let (ringer, listener) = doorbell::doorbell()?;
        Ok(Inbox {
            messages: Mutex::new(Vec::new()),
            ringer,
            listener,
        })
    }

    /// Everything waiting, oldest first.
    pub fn take(&self) -> Vec<Message> {
        // Read the rings first: a message pushed after the take rings again.
        let _ = self.listener.drain();
        std::mem::take(&mut *lock(&self.messages))
    }

    fn push(&self, message: Message) {
        lock(&self.messages).push(message);
        self.ringer.ring();
    }
}

/// A connected client as every thread may see it: whom to evict first
/// when the server is full.
pub(super) struct Presence {
    pub peer: String,
    /// When it was last heard, in milliseconds since the server started.
    heard_ms: AtomicU64,
}

pub(super) struct Hub {
    state: Mutex<State>,
    inboxes: Vec<Inbox>,
    clients: Mutex<BTreeMap<ClientId, Arc<Presence>>>,
    /// Clients each thread has heard from lately (see `ServerLane::set_peers`).
    active: Vec<AtomicUsize>,
    /// The threads that run (fewer than the inboxes if one could not start).
    serving: AtomicUsize,
    started: Instant,
    pub stopping: AtomicBool,
}

/// Takes a lock whether or not a thread panicked holding it: every
/// structure behind these locks is left whole between statements.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Hub {
    pub fn new(state: State, threads: usize) -> std::io::Result<Hub> {
        let threads = threads.max(1);
        Ok(Hub {
            state: Mutex::new(state),
            inboxes: (0..threads)
                .map(|_| Inbox::new())
                .collect::<Result<_, _>>()?,
            clients: Mutex::new(BTreeMap::new()),
            active: (0..threads).map(|_| AtomicUsize::new(0)).collect(),
            serving: AtomicUsize::new(threads),
            started: Instant::now(),
            stopping: AtomicBool::new(false),
        })
    }

    /// The threads serving clients.
    pub fn threads(&self) -> usize {
        self.serving.load(Ordering::Relaxed).max(1)
    }

    /// Only the first `threads` run (set before any client joins).
    pub fn serve_with(&self, threads: usize) {
        self.serving
            .store(threads.clamp(1, self.inboxes.len()), Ordering::Relaxed);
    }

    /// The thread that serves `client` (ids are made so: see [`Hub::join`]).
    pub fn owner(&self, client: ClientId) -> usize {
        (client % self.threads() as u64) as usize
    }

    pub fn inbox(&self, thread: usize) -> &Inbox {
        &self.inboxes[thread % self.inboxes.len()]
    }

    /// The objects, for one operation.
    pub fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Connected clients, all threads together.
    pub fn client_count(&self) -> usize {
        lock(&self.clients).len()
    }

    /// Registers a new client, numbered `sequence`, with the thread that
    /// serves fewest: its id, and that thread.
    pub fn join(&self, sequence: u64, peer: String) -> (ClientId, Arc<Presence>) {
        let threads = self.threads() as u64;
        let mut clients = lock(&self.clients);
        let mut load = vec![0usize; self.threads()];
        for &id in clients.keys() {
            load[(id % threads) as usize] += 1;
        }
        let thread = (0..load.len()).min_by_key(|&t| load[t]).unwrap_or(0) as u64;
        let id = sequence * threads + thread;
        let presence = Arc::new(Presence {
            peer,
            heard_ms: AtomicU64::new(self.ms(Instant::now())),
        });
        clients.insert(id, presence.clone());
        (id, presence)
    }

    /// `client` is gone from its thread.
    pub fn leave(&self, client: ClientId) {
        lock(&self.clients).remove(&client);
    }

    /// The client silent longest that holds and waits for nothing, taken
    /// off the roll (its thread is told to drop it): room for a new one.
    /// Between this choice and its thread's drop, the client may take a
    /// lock; it is then released as a dead holder's, as for any drop.
    pub fn evict_idlest(&self) -> Option<(ClientId, String)> {
        let mut clients = lock(&self.clients);
        let idlest = {
            let state = self.state();
            clients
                .iter()
                .filter(|(id, _)| !state.involves(**id))
                .min_by_key(|(_, p)| p.heard_ms.load(Ordering::Relaxed))
                .map(|(&id, p)| (id, p.peer.clone()))
        };
        if let Some((id, _)) = &idlest {
            clients.remove(id);
        }
        idlest
    }

    /// Hands `message` about `client` to the thread that serves it.
    pub fn send(&self, client: ClientId, message: Message) {
        self.inbox(self.owner(client)).push(message);
    }

    /// Tells every thread to stop.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for inbox in &self.inboxes {
            inbox.ringer.ring();
        }
    }

    /// Records how many clients `thread` heard from lately; the threads
    /// busy with us, all together (each busy server thread and client).
    pub fn set_active(&self, thread: usize, clients: usize) -> usize {
        if let Some(a) = self.active.get(thread) {
            a.store(clients, Ordering::Relaxed);
        }
        self.active
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .filter(|&n| n > 0)
            .map(|n| n + 1)
            .sum::<usize>()
            .max(1)
    }

    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_millis() as u64
    }
}

impl Presence {
    pub fn heard(&self, hub: &Hub, at: Instant) {
        self.heard_ms.store(hub.ms(at), Ordering::Relaxed);
    }
}
