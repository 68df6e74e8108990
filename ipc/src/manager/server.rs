//! The manager's server process: one thread, one `poll` over the listener
//! and every client, requests answered in arrival order. A lock request
//! that must wait is parked and answered when the lock is granted or its
//! deadline passes; a client that disconnects (its process died) gives up
//! every lock it held, and the next holder is told so. A client that
//! sends garbage is dropped.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::protocol::{Kind, Op, Reply, Request};
use crate::net::{Address, Listener};
use crate::pipe::{Connection, TryRecvError};
use crate::{Readable, Waitable};

/// Each accepted client gets this long to authenticate (the loop waits
/// for it meanwhile).
const HANDSHAKE: Duration = Duration::from_secs(1);
/// How long the loop looks for new requests before it sleeps.
const SPIN: Duration = Duration::from_micros(50);
/// The most requests one batch may hold.
const MAX_BATCH: usize = 4096;

type ClientId = u64;

/// A lock on the server.
#[derive(Default)]
struct LockState {
    reentrant: bool,
    holder: Option<ClientId>,
    /// How many times the holder took it (an `RLock` counts).
    depth: u32,
    /// Clients waiting, oldest first, with their deadlines.
    waiters: VecDeque<(ClientId, Option<Instant>)>,
    /// The last holder died holding it; told to the next one.
    owner_died: bool,
}

/// A shared object on the server.
enum Object {
    /// Keys in order, so `keys()` and `items()` are stable.
    Map(BTreeMap<Vec<u8>, Vec<u8>>),
    Lock(LockState),
    List(Vec<Vec<u8>>),
}

/// What the server knows.
#[derive(Default)]
struct State {
    objects: HashMap<u64, Object>,
    next_id: u64,
    /// Replies owed to parked clients, to send once this turn is over.
    owed: Vec<(ClientId, Reply)>,
}

/// What the server process runs: `(socket path, key, ready)`; `ready`
/// gets `true` once it listens (or `false` and it exits).
pub(super) fn serve((path, key, mut ready): (std::path::PathBuf, Vec<u8>, Connection)) {
    let mut listener = match Listener::bind(&Address::Unix(path), &key) {
        Ok(l) => l,
        Err(_) => {
            let _ = ready.send(&false);
            return;
        }
    };
    listener.set_handshake_timeout(HANDSHAKE);
    if ready.send(&true).is_err() {
        return;
    }
    drop(ready);
    let mut state = State {
        next_id: 1,
        ..State::default()
    };
    let mut clients: BTreeMap<ClientId, Connection> = BTreeMap::new();
    let mut next_client: ClientId = 1;
    loop {
        let wait = state.next_deadline().map_or(Duration::from_secs(1), |d| {
            d.saturating_duration_since(Instant::now())
        });
        let ids: Vec<ClientId> = clients.keys().copied().collect();
        let ready = {
            let listening = Readable(listener.as_raw_fd());
            let mut waitables: Vec<&dyn Waitable> = vec![&listening];
            waitables.extend(clients.values().map(|c| c as &dyn Waitable));
            // A client that just had its answer usually asks again at once:
            // look for a while before sleeping (a wake costs tens of us).
            let spun = Instant::now();
            let mut ready = Vec::new();
            while ready.is_empty() && spun.elapsed() < SPIN {
                ready = crate::wait(&waitables, Some(Duration::ZERO)).unwrap_or_default();
            }
            if ready.is_empty() {
                ready = crate::wait(&waitables, Some(wait)).unwrap_or_default();
            }
            ready
        };
        let mut gone = Vec::new();
        for index in ready {
            if index == 0 {
                if let Ok(conn) = listener.accept_timeout(Duration::ZERO) {
                    clients.insert(next_client, conn);
                    next_client += 1;
                }
                continue;
            }
            let id = ids[index - 1];
            let Some(client) = clients.get_mut(&id) else {
                continue;
            };
            loop {
                match client.try_recv::<Request>() {
                    Ok(request) => {
                        if let Some(reply) = state.handle(id, request) {
                            if client.send(&reply).is_err() {
                                gone.push(id);
                                break;
                            }
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    // Gone, or garbage: either way it is dropped.
                    Err(_) => {
                        gone.push(id);
                        break;
                    }
                }
            }
        }
        state.expire(Instant::now());
        // A client's death can grant a lock, whose reply can find another
        // client dead: until nothing changes.
        loop {
            for id in gone.drain(..) {
                if clients.remove(&id).is_some() {
                    state.client_gone(id);
                }
            }
            for (id, reply) in std::mem::take(&mut state.owed) {
                let sent = clients.get_mut(&id).is_some_and(|c| c.send(&reply).is_ok());
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

impl State {
    /// The reply to `request` from `client`, or `None` if it waits.
    fn handle(&mut self, client: ClientId, request: Request) -> Option<Reply> {
        Some(match request {
            Request::Create(kind) => {
                let id = self.next_id;
                self.next_id += 1;
                let object = match kind {
                    Kind::Namespace | Kind::Dict => Object::Map(BTreeMap::new()),
                    Kind::List => Object::List(Vec::new()),
                    Kind::Lock | Kind::RLock => Object::Lock(LockState {
                        reentrant: kind == Kind::RLock,
                        ..LockState::default()
                    }),
                };
                self.objects.insert(id, object);
                Reply::Created(id)
            }
            Request::On { id, op } => match self.objects.get_mut(&id) {
                Some(Object::Map(map)) => apply(map, op),
                Some(Object::Lock(lock)) => return lock_op(lock, client, op, &mut self.owed),
                Some(Object::List(list)) => list_op(list, op),
                None => Reply::Error(format!("no object {id}")),
            },
            Request::Batch(requests) if requests.len() > MAX_BATCH => {
                Reply::Error(format!("a batch holds at most {MAX_BATCH} requests"))
            }
            Request::Batch(requests) => Reply::Batch(
                requests
                    .into_iter()
                    .map(|r| match r {
                        Request::Batch(_) => Reply::Error("batches do not nest".into()),
                        Request::On {
                            op: Op::Acquire { .. },
                            ..
                        } => Reply::Error("a batch cannot wait for a lock".into()),
                        r => self
                            .handle(client, r)
                            .unwrap_or_else(|| Reply::Error("a batch cannot wait".into())),
                    })
                    .collect(),
            ),
        })
    }

    /// The earliest deadline of a parked request.
    fn next_deadline(&self) -> Option<Instant> {
        self.objects
            .values()
            .filter_map(|o| match o {
                Object::Lock(lock) => lock.waiters.iter().filter_map(|w| w.1).min(),
                Object::Map(_) | Object::List(_) => None,
            })
            .min()
    }

    /// Parked requests past their deadline are answered "not acquired".
    fn expire(&mut self, now: Instant) {
        for object in self.objects.values_mut() {
            if let Object::Lock(lock) = object {
                lock.waiters.retain(|&(client, deadline)| {
                    let late = deadline.is_some_and(|d| d <= now);
                    if late {
                        self.owed.push((client, Reply::Bool(false)));
                    }
                    !late
                });
            }
        }
    }

    /// `client` disconnected: what it held is released (and marked), what
    /// it waited for is forgotten.
    fn client_gone(&mut self, client: ClientId) {
        for object in self.objects.values_mut() {
            if let Object::Lock(lock) = object {
                lock.waiters.retain(|w| w.0 != client);
                if lock.holder == Some(client) {
                    lock.holder = None;
                    lock.depth = 0;
                    lock.owner_died = true;
                    if let Some((next, reply)) = grant_next(lock) {
                        self.owed.push((next, reply));
                    }
                }
            }
        }
    }
}

/// Gives a free lock to its oldest waiter.
fn grant_next(lock: &mut LockState) -> Option<(ClientId, Reply)> {
    let (next, _) = lock.waiters.pop_front()?;
    lock.holder = Some(next);
    lock.depth = 1;
    let owner_died = std::mem::take(&mut lock.owner_died);
    Some((next, Reply::Acquired { owner_died }))
}

/// A lock operation; `None` if the caller waits. Grants to others are
/// pushed on `owed`.
fn lock_op(
    lock: &mut LockState,
    client: ClientId,
    op: Op,
    owed: &mut Vec<(ClientId, Reply)>,
) -> Option<Reply> {
    match op {
        Op::Acquire { wait_ms } => {
            match lock.holder {
                None => {
                    lock.holder = Some(client);
                    lock.depth = 1;
                    let owner_died = std::mem::take(&mut lock.owner_died);
                    Some(Reply::Acquired { owner_died })
                }
                Some(h) if h == client && lock.reentrant => {
                    lock.depth = lock.depth.saturating_add(1);
                    Some(Reply::Acquired { owner_died: false })
                }
                // A plain Lock taken again by its holder waits, as Python's
                // does (a deadlock unless it has a timeout).
                Some(_) if wait_ms == Some(0) => Some(Reply::Bool(false)),
                Some(_) => {
                    let deadline = wait_ms.map(|ms| Instant::now() + Duration::from_millis(ms));
                    lock.waiters.push_back((client, deadline));
                    None
                }
            }
        }
        Op::Release => {
            if lock.holder != Some(client) {
                return Some(Reply::Error("release of a lock not held".into()));
            }
            lock.depth -= 1;
            if lock.depth > 0 {
                return Some(Reply::Done);
            }
            lock.holder = None;
            // The releaser's reply goes now; the next holder's is owed.
            if let Some(grant) = grant_next(lock) {
                owed.push(grant);
            }
            Some(Reply::Done)
        }
        _ => Some(Reply::Error("not an operation on a lock".into())),
    }
}

fn apply(map: &mut BTreeMap<Vec<u8>, Vec<u8>>, op: Op) -> Reply {
    match op {
        Op::Get(key) => Reply::Value(map.get(&key).cloned()),
        Op::Set(key, value) => {
            map.insert(key, value);
            Reply::Done
        }
        Op::Pop(key) => Reply::Value(map.remove(&key)),
        Op::Contains(key) => Reply::Bool(map.contains_key(&key)),
        Op::Len => Reply::Len(map.len() as u64),
        Op::Keys => Reply::Keys(map.keys().cloned().collect()),
        Op::Items => Reply::Items(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        Op::Clear => {
            map.clear();
            Reply::Done
        }
        Op::FetchAdd(key, delta) => {
            let now = match map.get(&key) {
                None => 0,
                Some(bytes) => match postcard::from_bytes::<i64>(bytes) {
                    Ok(n) => n,
                    Err(_) => return Reply::Error("the value there is not an i64".into()),
                },
            };
            let new = now.wrapping_add(delta);
            match postcard::to_allocvec(&new) {
                Ok(bytes) => {
                    map.insert(key, bytes);
                    Reply::Int(new)
                }
                Err(e) => Reply::Error(e.to_string()),
            }
        }
        _ => Reply::Error("not an operation on a dict".into()),
    }
}

/// The most items a list may hold, so no client can make the server
/// allocate without bound through one object.
const MAX_LIST: usize = 1 << 24;

fn list_op(list: &mut Vec<Vec<u8>>, op: Op) -> Reply {
    let index = |i: u64, len: usize| usize::try_from(i).ok().filter(|&i| i < len);
    match op {
        Op::Append(v) if list.len() < MAX_LIST => {
            list.push(v);
            Reply::Done
        }
        Op::Extend(vs) if list.len().saturating_add(vs.len()) <= MAX_LIST => {
            list.extend(vs);
            Reply::Done
        }
        Op::Insert(i, v) if list.len() < MAX_LIST => {
            let at = usize::try_from(i).unwrap_or(usize::MAX).min(list.len());
            list.insert(at, v);
            Reply::Done
        }
        Op::Append(_) | Op::Extend(_) | Op::Insert(..) => {
            Reply::Error(format!("a list holds at most {MAX_LIST} items"))
        }
        Op::At(i) => Reply::Value(index(i, list.len()).map(|i| list[i].clone())),
        Op::SetAt(i, v) => match index(i, list.len()) {
            Some(i) => {
                list[i] = v;
                Reply::Done
            }
            None => Reply::Error(format!("index {i} out of range")),
        },
        Op::PopAt(None) => Reply::Value(list.pop()),
        Op::PopAt(Some(i)) => Reply::Value(index(i, list.len()).map(|i| list.remove(i))),
        Op::Slice(start, end) => {
            let len = list.len();
            let start = usize::try_from(start).unwrap_or(len).min(len);
            let end = usize::try_from(end).unwrap_or(len).clamp(start, len);
            Reply::Keys(list[start..end].to_vec())
        }
        Op::Remove(v) => match list.iter().position(|x| *x == v) {
            Some(i) => {
                list.remove(i);
                Reply::Bool(true)
            }
            None => Reply::Bool(false),
        },
        Op::IndexOf(v) => match list.iter().position(|x| *x == v) {
            Some(i) => Reply::Int(i as i64),
            None => Reply::Int(-1),
        },
        Op::Count(v) => Reply::Len(list.iter().filter(|x| **x == v).count() as u64),
        Op::Len => Reply::Len(list.len() as u64),
        Op::Clear => {
            list.clear();
            Reply::Done
        }
        _ => Reply::Error("not an operation on a list".into()),
    }
}
