//! Everything the server keeps: the objects, their names, and the requests
//! parked until an object lets them through. A parked request is tried
//! again, oldest first, after every change to its object; past its
//! deadline it gets its "no" (or, for a condition's wait, takes its lock
//! back first). A client that disconnects gives back what it held.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::super::protocol::{KeyHolds, Kind, Op, Reply, Request};
use super::super::register::{ErasedShared, Factories};
use super::barrier::{Barrier, Event};
use super::condition::Condition;
use super::lifetimes::{Lifetimes, Token};
use super::list::List;
use super::lock::{LockCore, Semaphore};
use super::map::{Map, Slot};
use super::queue::Queue;
use super::step::{may_wait, refuse, timed_out, wait_of, ClientId, Step};
use super::{MAX_BATCH, MAX_ITEMS};

/// The most objects one manager keeps, so no client can make it allocate
/// without bound by creating them.
const MAX_OBJECTS: usize = 1 << 20;

enum Object {
    Map(Map),
    List(List),
    Lock(LockCore),
    Semaphore(Semaphore),
    Condition(Condition),
    Event(Event),
    Barrier(Barrier),
    Queue(Queue),
    /// Behind a lock of its own: a call is made outside the objects' lock
    /// (it may take long), one at a time on each object.
    User(Arc<Mutex<Box<dyn ErasedShared>>>),
}

/// What became of a request.
pub(super) enum Handled {
    Reply(Reply),
    /// Parked: its reply is owed later (see [`State::owed`]).
    Parked,
    /// A call on a registered type, for the caller to make once the
    /// objects' lock is let go.
    Call(UserCall),
}

/// A call on a registered type's object.
pub(super) struct UserCall {
    object: Arc<Mutex<Box<dyn ErasedShared>>>,
    request: Vec<u8>,
}

impl UserCall {
    /// Makes the call; a handler that panics is an error reply (see
    /// `register`), and its object stays as the panic left it.
    pub fn run(self) -> Reply {
        let mut object = self
            .object
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match object.call(&self.request) {
            Ok(reply) => Reply::Value(Some(reply.into())),
            Err(why) => Reply::Error(why),
        }
    }
}

struct Parked {
    client: ClientId,
    op: Op,
    deadline: Option<Instant>,
    /// Its client cancelled it (a condition's wait, which still takes its
    /// lock back): the cancel's `Done` follows its reply.
    then_done: bool,
}

impl Parked {
    /// Owes `reply` to its client, and the cancel's `Done` after it.
    fn answer(&self, owed: &mut Vec<(ClientId, Reply)>, reply: Reply) {
        owed.push((self.client, reply));
        if self.then_done {
            owed.push((self.client, Reply::Done));
        }
    }
}

pub(super) struct State {
    objects: HashMap<u64, (Kind, Object)>,
    names: HashMap<String, u64>,
    next_id: u64,
    /// Requests waiting on each object, oldest first.
    parked: HashMap<u64, VecDeque<Parked>>,
    /// Objects a dead client may hold something of.
    holdable: Vec<u64>,
    /// Replies owed to parked clients, to send once this turn is over.
    pub owed: Vec<(ClientId, Reply)>,
    factories: Factories,
    /// Bytes of every stored key, value and item (user types aside), and
    /// the most it may reach.
    stored: usize,
    budget: usize,
    /// Bytes each connected client's requests have added (less what they
    /// took away), and the most one client may reach.
    stored_by: HashMap<ClientId, usize>,
    client_budget: usize,
    /// Who holds proxies to the objects made anonymously.
    lifetimes: Lifetimes,
}

impl State {
    pub fn new(factories: Factories, budget: usize, client_budget: usize) -> Self {
        State {
            stored: 0,
            budget,
            stored_by: HashMap::new(),
            client_budget,
            objects: HashMap::new(),
            names: HashMap::new(),
            next_id: 1,
            parked: HashMap::new(),
            holdable: Vec::new(),
            owed: Vec::new(),
            factories,
            lifetimes: Lifetimes::default(),
        }
    }

    /// Takes `request` from `client`: answered, parked, or a call on a
    /// registered type for the caller to make outside this lock.
    pub fn take(&mut self, client: ClientId, request: Request) -> Handled {
        let user = match &request {
            Request::On {
                id,
                op: Op::Call(_),
            } => match self.objects.get(id) {
                Some((_, Object::User(object))) => Some(object.clone()),
                _ => None,
            },
            _ => None,
        };
        let request = match (user, request) {
            (
                Some(object),
                Request::On {
                    op: Op::Call(bytes),
                    ..
                },
            ) => {
                return Handled::Call(UserCall {
                    object,
                    request: bytes,
                })
            }
            (_, request) => request,
        };
        match self.handle(client, request) {
            Some(reply) => Handled::Reply(reply),
            None => Handled::Parked,
        }
    }

    /// The reply to `request` from `client`, or `None` if it waits (a
    /// call on a registered type is made here, under the lock: a batch).
    pub fn handle(&mut self, client: ClientId, request: Request) -> Option<Reply> {
        Some(match request {
            Request::Create(kind) => match self.create(kind) {
                Ok(id) => {
                    self.lifetimes.made(client, id);
                    Reply::Created(id)
                }
                Err(refused) => refused,
            },
            Request::Objects => Reply::Len(self.objects.len() as u64),
            Request::Delete(name) => match self.names.remove(&name) {
                Some(id) => {
                    self.free(id);
                    Reply::Bool(true)
                }
                None => Reply::Bool(false),
            },
            // The connection says it before anything else (see `Client`).
            Request::Owner(_) => Reply::Error("the owner is told once, first".into()),
            Request::Open { name, kind, exact } => self.open(name, kind, exact),
            Request::On { id, op } => return self.on(client, id, op),
            // The loop opens lanes; one asked for where none can be.
            Request::OpenLane => Reply::Error("no lane here".into()),
            // The lane's loop takes a sealed value and asks `On`.
            Request::OnSealed { .. } => {
                Reply::Error("a sealed value comes alone, on a lane".into())
            }
            // Both replies owed, in order: the parked request's, then this.
            Request::Cancel => {
                self.cancel(client);
                return None;
            }
            Request::Batch(requests) if requests.len() > MAX_BATCH => {
                Reply::Error(format!("a batch holds at most {MAX_BATCH} requests"))
            }
            Request::Batch(requests) => Reply::Batch(
                requests
                    .into_iter()
                    .map(|r| match r {
                        Request::Batch(_) => Reply::Error("batches do not nest".into()),
                        Request::OpenLane | Request::Owner(_) | Request::Cancel => {
                            Reply::Error("not in a batch".into())
                        }
                        Request::On { ref op, .. } if may_wait(op) => {
                            Reply::Error("a batch cannot wait (give it a timeout of zero)".into())
                        }
                        r => self
                            .handle(client, r)
                            .unwrap_or_else(|| Reply::Error("a batch cannot wait".into())),
                    })
                    .collect(),
            ),
        })
    }

    fn create(&mut self, kind: Kind) -> Result<u64, Reply> {
        if self.objects.len() >= MAX_OBJECTS {
            return Err(Reply::Error(format!(
                "a manager keeps at most {MAX_OBJECTS} objects"
            )));
        }
        let incoming = match &kind {
            Kind::Value(v) => v.len(),
            Kind::Array(items) => items.iter().map(Vec::len).sum(),
            _ => 0,
        };
        self.admit(incoming).map_err(Reply::OverBudget)?;
        let object = match &kind {
            Kind::Namespace | Kind::Dict | Kind::Set => Object::Map(Map::default()),
            Kind::Value(v) => Object::Map(Map::cell(v.clone())),
            Kind::List => Object::List(List::new(Vec::new(), false)),
            Kind::Array(items) if items.len() > MAX_ITEMS => {
                return Err(Reply::Error(format!(
                    "an array holds at most {MAX_ITEMS} items"
                )))
            }
            Kind::Array(items) => Object::List(List::new(items.clone(), true)),
            Kind::Lock => Object::Lock(LockCore::new(false)),
            Kind::RLock => Object::Lock(LockCore::new(true)),
            Kind::Semaphore {
                value,
                bounded,
                owned,
            } => Object::Semaphore(Semaphore::new(*value, *bounded, *owned)),
            Kind::Condition => Object::Condition(Condition::new()),
            Kind::Event => Object::Event(Event::default()),
            Kind::Barrier { parties: 0 } => {
                return Err(Reply::Error("a barrier needs one party or more".into()))
            }
            Kind::Barrier { parties } => Object::Barrier(Barrier::new(*parties)),
            Kind::Queue { maxsize, joinable } => Object::Queue(Queue::new(*maxsize, *joinable)),
            Kind::User { type_name, state } => Object::User(Arc::new(Mutex::new(
                self.factories
                    .make(type_name, state)
                    .map_err(Reply::Error)?,
            ))),
        };
        self.stored = self.stored.saturating_add(bytes_of(&object));
        let id = self.next_id;
        self.next_id += 1;
        let holdable = match &object {
            Object::Lock(_) | Object::Semaphore(_) | Object::Condition(_) | Object::Barrier(_) => {
                true
            }
            Object::Queue(q) => q.is_joinable(),
            _ => false,
        };
        if holdable {
            self.holdable.push(id);
        }
        // Kept without their initial contents: only the kind is compared.
        let kind = match kind {
            Kind::Value(_) => Kind::Value(Vec::new()),
            Kind::Array(_) => Kind::Array(Vec::new()),
            Kind::User { type_name, .. } => Kind::User {
                type_name,
                state: Vec::new(),
            },
            kind => kind,
        };
        self.objects.insert(id, (kind, object));
        Ok(id)
    }

    fn open(&mut self, name: String, kind: Kind, exact: bool) -> Reply {
        if let Some(&id) = self.names.get(&name) {
            return match self.objects.get(&id) {
                Some((have, _)) if exact && have.same_parameters(&kind) => Reply::Created(id),
                Some((have, _)) if !exact && have.same_kind(&kind) => Reply::Created(id),
                Some((have, _)) => {
                    Reply::WrongKind(format!("`{name}` is a {have:?}, not a {kind:?}"))
                }
                None => Reply::Error(format!("`{name}` is gone")),
            };
        }
        match self.create(kind) {
            Ok(id) => {
                self.names.insert(name, id);
                Reply::Created(id)
            }
            Err(refused) => refused,
        }
    }

    fn on(&mut self, client: ClientId, id: u64, mut op: Op) -> Option<Reply> {
        match op {
            Op::NestedAt(key, kind) => return Some(self.nested(id, key, kind)),
            Op::Entries => return Some(self.entries(id)),
            Op::IncRef => {
                return Some(match self.lifetimes.incref(client, id) {
                    Ok(()) => Reply::Done,
                    Err(why) => Reply::Error(why),
                })
            }
            Op::DecRef => {
                if self.lifetimes.decref(client, id) {
                    self.free(id);
                }
                return Some(Reply::Done);
            }
            _ => {}
        }
        let freed = self
            .objects
            .get(&id)
            .map_or(0, |(_, o)| freed_bytes(o, &op));
        let adds = incoming_bytes(&op).saturating_sub(freed);
        if let Err(why) = self
            .admit(adds)
            .and_then(|()| self.admit_client(client, adds))
        {
            return Some(Reply::OverBudget(why));
        }
        // Shared from here on: a queue's put that waits, or an item a
        // reply carries, is not copied.
        if let Some(value) = op.value_mut() {
            *value = std::mem::take(value).stored();
        }
        let step = match self.objects.get_mut(&id) {
            Some((_, object)) => {
                let before = bytes_of(object);
                let step = match (&mut *object, &mut op) {
                    // The value is moved in, not copied (it may be 100 MB):
                    // a set never waits, so its op is not needed again.
                    (Object::Map(map), Op::Set(key, value)) => {
                        map.insert(std::mem::take(key), std::mem::take(value))
                    }
                    // Likewise the items a list op brings.
                    (Object::List(list), op) => list.op(op),
                    (object, op) => attempt(object, client, op),
                };
                let after = bytes_of(object);
                self.stored = (self.stored + after).saturating_sub(before);
                charge(&mut self.stored_by, client, before, after);
                step
            }
            None => refuse(format!("no object {id}")),
        };
        self.free_orphans(id);
        let reply = match step {
            Step::Reply(reply) => Some(reply),
            Step::Wait => {
                let deadline = wait_of(&op)
                    .flatten()
                    .map(|ms| Instant::now() + Duration::from_millis(ms));
                self.parked.entry(id).or_default().push_back(Parked {
                    client,
                    op,
                    deadline,
                    then_done: false,
                });
                None
            }
        };
        self.retry(id);
        reply
    }

    /// Dict `id`'s keys with their values or nested objects (and kinds).
    fn entries(&self, id: u64) -> Reply {
        let Some((_, Object::Map(map))) = self.objects.get(&id) else {
            return Reply::Error(format!("object {id} is not a dict"));
        };
        let entries = map
            .in_order_slots()
            .filter_map(|(key, slot)| {
                let held = match slot {
                    Slot::Value(v) => KeyHolds::Value(v.to_vec()),
                    Slot::Nested(n) => KeyHolds::Nested(*n, self.objects.get(n)?.0.clone()),
                };
                Some((key.clone(), held))
            })
            .collect();
        Reply::Entries(entries)
    }

    /// The object at `key` of dict `id`, made if the key is free.
    fn nested(&mut self, id: u64, key: Vec<u8>, kind: Kind) -> Reply {
        let held = match self.objects.get(&id) {
            Some((_, Object::Map(map))) => match map.slot(&key) {
                Some(Slot::Nested(n)) => Some(*n),
                Some(Slot::Value(_)) => {
                    return Reply::Error("that key holds a value, not an object".into())
                }
                None => None,
            },
            Some(_) => return Reply::Error("only a dict holds nested objects".into()),
            None => return Reply::Error(format!("no object {id}")),
        };
        if let Some(n) = held {
            return match self.objects.get(&n) {
                Some((have, _)) if have.same_kind(&kind) => Reply::Created(n),
                _ => Reply::Error("that key holds another kind of object".into()),
            };
        }
        let new = match self.create(kind) {
            Ok(new) => new,
            Err(refused) => return refused,
        };
        if let Some((_, Object::Map(map))) = self.objects.get_mut(&id) {
            self.stored = self.stored.saturating_add(key.len());
            map.insert_nested(key, new);
        }
        Reply::Created(new)
    }

    /// Tries the requests parked on `id` again, oldest first, until none
    /// gets through (one getting through may let another through).
    fn retry(&mut self, id: u64) {
        let Some(queue) = self.parked.get_mut(&id) else {
            return;
        };
        let Some((_, object)) = self.objects.get_mut(&id) else {
            return;
        };
        loop {
            let mut progress = false;
            let mut i = 0;
            while i < queue.len() {
                let before = bytes_of(object);
                let step = attempt(object, queue[i].client, &queue[i].op);
                let after = bytes_of(object);
                self.stored = (self.stored + after).saturating_sub(before);
                charge(&mut self.stored_by, queue[i].client, before, after);
                if let Step::Reply(reply) = step {
                    if let Some(done) = queue.remove(i) {
                        done.answer(&mut self.owed, reply);
                    }
                    progress = true;
                } else {
                    i += 1;
                }
            }
            if !progress {
                break;
            }
        }
        if queue.is_empty() {
            self.parked.remove(&id);
        }
    }

    /// Ends the waits of `client`'s parked requests as their deadlines
    /// would, and owes the cancel's `Done` after their replies. A
    /// condition's wait stops waiting for a notify but still takes its
    /// lock back before it is answered (as Python's asyncio `Condition`
    /// does when its waiter is cancelled); a barrier's party leaves the
    /// round without breaking it (as asyncio's `Barrier` does), where a
    /// deadline breaks it.
    fn cancel(&mut self, client: ClientId) {
        let mut left_behind = Vec::new();
        for (&id, queue) in self.parked.iter_mut() {
            let mut object = self.objects.get_mut(&id).map(|(_, o)| o);
            let owed = &mut self.owed;
            queue.retain_mut(|p| {
                if p.client != client {
                    return true;
                }
                match (&mut object, &p.op) {
                    (Some(Object::Condition(c)), Op::Wait { .. }) => {
                        c.cancel(client);
                        p.deadline = None;
                        p.then_done = true;
                        left_behind.push(id);
                        true
                    }
                    (Some(Object::Barrier(b)), Op::Arrive { .. }) => {
                        b.leave(client);
                        owed.push((client, Reply::Broken));
                        false
                    }
                    _ => {
                        owed.push((client, timed_out(&p.op)));
                        false
                    }
                }
            });
        }
        self.parked.retain(|_, q| !q.is_empty());
        match left_behind.is_empty() {
            true => self.owed.push((client, Reply::Done)),
            // Answered (its `Done` after) once it has its lock back.
            false => {
                for id in left_behind {
                    self.retry(id);
                }
            }
        }
    }

    /// The earliest deadline of a parked request.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.parked
            .values()
            .flat_map(|q| q.iter().filter_map(|p| p.deadline))
            .min()
    }

    /// Parked requests past their deadline are answered.
    pub fn expire(&mut self, now: Instant) {
        let late: Vec<u64> = self
            .parked
            .iter()
            .filter(|(_, q)| q.iter().any(|p| p.deadline.is_some_and(|d| d <= now)))
            .map(|(&id, _)| id)
            .collect();
        for id in late {
            let (Some(queue), Some((_, object))) =
                (self.parked.get_mut(&id), self.objects.get_mut(&id))
            else {
                continue;
            };
            queue.retain_mut(|p| {
                if p.deadline.is_none_or(|d| d > now) {
                    return true;
                }
                let answer = match (&mut *object, &p.op) {
                    // Still to take its lock back: stays parked, without deadline.
                    (Object::Condition(c), Op::Wait { .. }) => {
                        c.expire(p.client);
                        p.deadline = None;
                        return true;
                    }
                    (Object::Barrier(b), _) => b.expire(p.client),
                    // (A condition's acquire says no, as a lock's does.)
                    _ => timed_out(&p.op),
                };
                p.answer(&mut self.owed, answer);
                false
            });
            self.retry(id);
        }
    }

    /// Connection `client` belongs to process `token` (its pid, if local).
    pub fn announce(&mut self, client: ClientId, token: Token, pid: Option<u32>) -> Reply {
        match self.lifetimes.announce(client, token, pid) {
            Ok(()) => Reply::Done,
            Err(why) => Reply::Error(why),
        }
    }

    /// Frees the objects of processes gone without a word (see
    /// [`Lifetimes::sweep`]).
    pub fn sweep(&mut self, now: Instant, grace: Duration) {
        for id in self.lifetimes.sweep(now, grace) {
            self.free(id);
        }
    }

    /// Frees object `id` and what is nested in it: its bytes leave the
    /// budget, a request parked on it is told, its id is never served again.
    fn free(&mut self, id: u64) {
        let mut doomed = vec![id];
        while let Some(id) = doomed.pop() {
            let Some((_, object)) = self.objects.remove(&id) else {
                continue;
            };
            self.lifetimes.forget(id);
            self.stored = self.stored.saturating_sub(bytes_of(&object));
            if let Object::Map(map) = &object {
                doomed.extend(map.nested());
            }
            if let Some(parked) = self.parked.remove(&id) {
                for p in parked {
                    p.answer(
                        &mut self.owed,
                        Reply::Error(format!("object {id} was freed")),
                    );
                }
            }
            self.holdable.retain(|&h| h != id);
        }
    }

    /// Objects nested in `id` whose keys were overwritten or cleared.
    fn free_orphans(&mut self, id: u64) {
        let orphans = match self.objects.get_mut(&id) {
            Some((_, Object::Map(map))) => map.take_orphans(),
            _ => return,
        };
        for n in orphans {
            self.free(n);
        }
    }

    /// `client` disconnected: what it held is released (and marked), what
    /// it waited for is forgotten, and the objects it alone kept are freed.
    pub fn client_gone(&mut self, client: ClientId) {
        for id in self.lifetimes.client_gone(client, Instant::now()) {
            self.free(id);
        }
        // What it stored stays (shared objects), counted in the total.
        self.stored_by.remove(&client);
        for queue in self.parked.values_mut() {
            queue.retain(|p| p.client != client);
        }
        self.parked.retain(|_, q| !q.is_empty());
        let mut changed = Vec::new();
        for &id in &self.holdable {
            let gave_back = match self.objects.get_mut(&id) {
                Some((_, Object::Lock(lock))) => lock.gone(client),
                Some((_, Object::Semaphore(s))) => s.gone(client),
                Some((_, Object::Condition(c))) => c.gone(client),
                Some((_, Object::Barrier(b))) => b.gone(client),
                Some((_, Object::Queue(q))) => q.gone(client),
                _ => false,
            };
            if gave_back {
                changed.push(id);
            }
        }
        for id in changed {
            self.retry(id);
        }
    }

    /// Whether `client` holds a lock or a semaphore, or waits for anything
    /// (the idle timeout must not take those from it).
    pub fn involves(&self, client: ClientId) -> bool {
        self.waits(client) || self.holds(client) || self.lifetimes.connection_holds_refs(client)
    }

    /// Whether `client` waits for something (a request of its is parked).
    pub fn waits(&self, client: ClientId) -> bool {
        self.parked
            .values()
            .any(|q| q.iter().any(|p| p.client == client))
    }

    /// Whether `client` holds a lock, a semaphore's unit, a condition or
    /// a joinable queue's items.
    pub fn holds(&self, client: ClientId) -> bool {
        self.holdable.iter().any(|id| match self.objects.get(id) {
            Some((_, Object::Lock(lock))) => lock.holder == Some(client),
            Some((_, Object::Semaphore(s))) => s.holds(client),
            Some((_, Object::Condition(c))) => c.holds(client),
            Some((_, Object::Queue(q))) => q.holds(client),
            _ => false,
        })
    }
}

impl State {
    /// Whether `incoming` more bytes fit the byte budget, in words if not.
    fn admit(&self, incoming: usize) -> Result<(), String> {
        if incoming > 0 && self.stored.saturating_add(incoming) > self.budget {
            return Err(format!(
                "the manager holds {} bytes; {incoming} more would pass its budget of {} bytes",
                self.stored, self.budget
            ));
        }
        Ok(())
    }

    /// Whether `client` may add `incoming` more bytes, in words if not.
    fn admit_client(&self, client: ClientId, incoming: usize) -> Result<(), String> {
        let had = self.stored_by.get(&client).copied().unwrap_or(0);
        if incoming > 0 && had.saturating_add(incoming) > self.client_budget {
            return Err(format!(
                "this client has stored {had} bytes; {incoming} more would pass a client's budget of {} bytes",
                self.client_budget
            ));
        }
        Ok(())
    }
}

/// Counts what a request changed to its client: what it added, less what
/// it took away.
fn charge(stored_by: &mut HashMap<ClientId, usize>, client: ClientId, before: usize, after: usize) {
    if before == after {
        return;
    }
    let mine = stored_by.entry(client).or_default();
    *mine = (*mine + after).saturating_sub(before);
}

/// Bytes an object's keys, values and items take.
fn bytes_of(object: &Object) -> usize {
    match object {
        Object::Map(map) => map.bytes(),
        Object::List(list) => list.bytes(),
        Object::Queue(queue) => queue.bytes(),
        _ => 0,
    }
}

/// Bytes a request brings to store (at most: a replaced value frees some).
fn incoming_bytes(op: &Op) -> usize {
    match op {
        Op::Set(k, v) => k.len() + v.len(),
        Op::SetDefault(k, v) => k.len() + v.len(),
        Op::Append(v) | Op::Insert(_, v) | Op::SetAt(_, v) | Op::Put(v, _) => v.len(),
        Op::Extend(vs) | Op::ReplaceIf(_, vs) | Op::ToggleKeys(vs) => vs.iter().map(Vec::len).sum(),
        Op::CompareAndSet {
            key, new: Some(v), ..
        } => key.len() + v.len(),
        _ => 0,
    }
}

/// Bytes `op` frees as it stores (what it replaces), so that a
/// replacement is judged by what it adds.
fn freed_bytes(object: &Object, op: &Op) -> usize {
    match (object, op) {
        (Object::Map(map), Op::Set(key, _) | Op::CompareAndSet { key, .. }) => {
            match map.slot(key) {
                Some(Slot::Value(v)) => key.len() + v.len(),
                _ => 0,
            }
        }
        (Object::List(list), Op::SetAt(i, _)) => list.len_at(*i),
        (Object::List(list), Op::ReplaceIf(..)) => list.bytes(),
        _ => 0,
    }
}

/// One attempt at `op` on `object` for `client`.
fn attempt(object: &mut Object, client: ClientId, op: &Op) -> Step {
    match object {
        Object::Map(map) => map.op(op),
        // Never parked (a list does not wait), so never retried: a copy
        // of the op is made only to keep this total.
        Object::List(list) => list.op(&mut op.clone()),
        Object::Lock(lock) => lock
            .op(client, op)
            .unwrap_or_else(|| refuse("not an operation on a lock")),
        Object::Semaphore(s) => s.op(client, op),
        Object::Condition(c) => c.op(client, op),
        Object::Event(e) => e.op(op),
        Object::Barrier(b) => b.op(client, op),
        Object::Queue(q) => q.op(client, op),
        Object::User(user) => match op {
            Op::Call(request) => Step::Reply(
                UserCall {
                    object: user.clone(),
                    request: request.clone(),
                }
                .run(),
            ),
            _ => refuse("a registered type takes calls only"),
        },
    }
}
