//! What a manager's clients and its server say to each other. Values
//! travel as postcard bytes the server stores without knowing their types
//! (typing is the proxies' business); the only values it reads are the
//! `i64` counters of `fetch_add` and `update_with`. Nothing received is
//! ever run as code: a user-registered type is chosen by name from the
//! types the server was started with, and only its data travels.

use std::cell::Cell;

use serde::de::{Error as _, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::payload::Payload;

/// The most requests (or replies) one batch may hold. Checked while it is
/// decoded, so a frame of a million empty requests is refused before it
/// becomes a million decoded ones.
pub const MAX_BATCH: usize = 4096;

/// The kinds of shared object, with what each is made from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    Namespace,
    Dict,
    /// Python's `manager.set()` (3.14): a dict whose values are empty.
    Set,
    List,
    Lock,
    RLock,
    /// A counting semaphore; `bounded`: releasing past `value` is an error;
    /// `owned`: the units a client holds come back when it disconnects
    /// (Python's semaphores have no owner: `false`).
    Semaphore {
        value: u64,
        bounded: bool,
        owned: bool,
    },
    Event,
    /// A condition variable with its own reentrant lock.
    Condition,
    Barrier {
        parties: u64,
    },
    /// A FIFO queue (`maxsize` 0: unbounded); `joinable` adds
    /// `task_done` and `join`.
    Queue {
        maxsize: u64,
        joinable: bool,
    },
    /// One value.
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A fixed-length array of values.
    Array(#[serde(with = "super::byte_lists::list")] Vec<Vec<u8>>),
    /// A type registered with the manager, by its name, from its initial
    /// state.
    User {
        type_name: String,
        #[serde(with = "serde_bytes")]
        state: Vec<u8>,
    },
}

impl Kind {
    /// Whether an existing object of kind `self` serves a request to open
    /// one of kind `other` by name (parameters aside).
    pub fn same_kind(&self, other: &Kind) -> bool {
        match (self, other) {
            (Kind::User { type_name: a, .. }, Kind::User { type_name: b, .. }) => a == b,
            (Kind::Queue { joinable: a, .. }, Kind::Queue { joinable: b, .. }) => a == b,
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }

    /// Whether `other` is this kind made with the same parameters (initial
    /// contents aside: a value's, an array's, a registered type's state).
    pub fn same_parameters(&self, other: &Kind) -> bool {
        match (self, other) {
            (Kind::Semaphore { .. }, Kind::Semaphore { .. })
            | (Kind::Barrier { .. }, Kind::Barrier { .. })
            | (Kind::Queue { .. }, Kind::Queue { .. }) => self == other,
            _ => self.same_kind(other),
        }
    }
}

/// One request; the server answers each with one [`Reply`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Create(Kind),
    /// The object called `name`, made of `kind` if it does not exist yet
    /// (how clients of a remote manager share objects). An existing one
    /// of another kind is `WrongKind`; with `exact`, so is one made with
    /// other parameters (a semaphore's value, a queue's size).
    Open {
        name: String,
        kind: Kind,
        exact: bool,
    },
    /// An operation on object `id`.
    On {
        id: u64,
        op: Op,
    },
    /// Several requests in one round trip, answered by `Reply::Batch`: at
    /// most [`MAX_BATCH`], none of them a batch (refused as it is decoded:
    /// a batch nested 50,000 deep must not take the decoder's stack).
    Batch(#[serde(deserialize_with = "flat_batch")] Vec<Request>),
    /// A local client asks for a fast lane: answered `Lane`, its rings'
    /// descriptors attached, or `Error` (no lane: the socket serves).
    OpenLane,
    /// How many objects the manager keeps now: `Len`.
    Objects,
    /// Frees the object called this (and what is nested in it): `Bool`,
    /// whether there was one.
    Delete(String),
    /// The connection belongs to the client process that calls itself
    /// this (a random number of its own): the references its proxies hold
    /// are that process's, and outlive this one connection. Answered
    /// `Len`: the largest request frame the server takes.
    Owner(u64),
    /// Ends the wait of this connection's parked request, if one is
    /// parked, as its deadline would (a queue's `Take` gets `Value(None)`,
    /// a `Put` or a lock's `Acquire` `Bool(false)`); a condition's wait
    /// and a barrier's arrival are left to wait. That reply comes first,
    /// then this one's: `Done`. (How an awaited call that was dropped
    /// stops waiting; not in a batch.)
    Cancel,
    /// `On { id, op }` whose op's value (left empty in `op`: a set's, an
    /// append's, an insert's, a set at an index, a queue's put) is the
    /// sealed memfd of `len` bytes handed over on the lane's spill port
    /// just before. Only on a lane.
    OnSealed {
        id: u64,
        op: Op,
        len: u64,
    },
}

/// An atomic update of an `i64` on the server (`update_with`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Update {
    Add(i64),
    Sub(i64),
    Mul(i64),
    Min(i64),
    Max(i64),
}

impl Update {
    /// The value after the update (wrapping, as `fetch_add` does).
    pub fn apply(self, now: i64) -> i64 {
        match self {
            Update::Add(n) => now.wrapping_add(n),
            Update::Sub(n) => now.wrapping_sub(n),
            Update::Mul(n) => now.wrapping_mul(n),
            Update::Min(n) => now.min(n),
            Update::Max(n) => now.max(n),
        }
    }
}

/// An operation on one object. Namespaces are dicts keyed by field name;
/// a `Value` is a dict of one key (the empty key). `wait_ms`: `Some(0)`
/// tries once, `Some(ms)` waits at most that long (the server keeps the
/// deadline), `None` waits as long as it takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    // ---- dicts, namespaces, values ----
    Get(#[serde(with = "serde_bytes")] Vec<u8>),
    Set(#[serde(with = "serde_bytes")] Vec<u8>, Payload),
    Pop(#[serde(with = "serde_bytes")] Vec<u8>),
    Contains(#[serde(with = "serde_bytes")] Vec<u8>),
    /// `d.setdefault(k, v)`: the value there, after setting `v` if absent.
    SetDefault(
        #[serde(with = "serde_bytes")] Vec<u8>,
        #[serde(with = "serde_bytes")] Vec<u8>,
    ),
    Len,
    Keys,
    Values,
    Items,
    Clear,
    /// Adds to the `i64` at a key (0 when absent); gives the new value.
    FetchAdd(#[serde(with = "serde_bytes")] Vec<u8>, i64),
    /// Applies an update to the `i64` at a key (0 when absent); the new value.
    UpdateWith(#[serde(with = "serde_bytes")] Vec<u8>, Update),
    /// Sets the key to `new` (`None`: removes it) only if it holds
    /// `expected` (`None`: absent) now. Answered `Bool`.
    CompareAndSet {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        expected: Option<Vec<u8>>,
        #[serde(with = "serde_bytes")]
        new: Option<Vec<u8>>,
    },
    /// The object kept at a key of a dict (made of `kind` if the key is
    /// free): `Created(id)`.
    NestedAt(#[serde(with = "serde_bytes")] Vec<u8>, Kind),
    /// Python's `popitem()`: the key set last and its value, as `Items`
    /// (none: the dict is empty).
    PopItem,
    /// Every key with its value or the nested object it holds, in
    /// insertion order: `Entries`.
    Entries,
    /// A set's `intersection_update`: keeps only these keys (`Done`).
    RetainKeys(#[serde(with = "super::byte_lists::list")] Vec<Vec<u8>>),
    /// A set's `symmetric_difference_update`: each of these keys is
    /// removed if there, added (with an empty value) if not (`Done`).
    ToggleKeys(#[serde(with = "super::byte_lists::list")] Vec<Vec<u8>>),
    /// One page of an iteration in insertion order: the keys after place
    /// `after` (`None`: from the first), with their values if `values`,
    /// while the dict is at `version` (`None`: the first page). `Page`, or
    /// `Changed` if a key was added or removed since the first page.
    Page {
        after: Option<u64>,
        version: Option<u64>,
        values: bool,
    },

    // ---- lists and arrays ----
    /// `append`, `extend`, `insert(i, v)`, `l[i]`, `l[i] = v`, `pop(i)`
    /// (`None`: the last), `l[start:end]`, `remove(v)`, `index(v)`,
    /// `count(v)` (values compared as encoded bytes).
    Append(Payload),
    Extend(#[serde(with = "super::byte_lists::list")] Vec<Vec<u8>>),
    Insert(u64, Payload),
    At(u64),
    SetAt(u64, Payload),
    PopAt(Option<u64>),
    Slice(u64, u64),
    Remove(#[serde(with = "serde_bytes")] Vec<u8>),
    IndexOf(#[serde(with = "serde_bytes")] Vec<u8>),
    Count(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The list and its version (`Versioned`).
    Snapshot,
    /// Replaces the whole list if its version is still `version`; `Bool`.
    /// (How `sort` stays atomic: sorted by the client, swapped in whole.)
    ReplaceIf(u64, #[serde(with = "super::byte_lists::list")] Vec<Vec<u8>>),

    // ---- locks, semaphores, conditions ----
    /// Answered `Acquired` or, past the deadline, `Bool(false)`.
    Acquire {
        wait_ms: Option<u64>,
    },
    Release,
    /// Condition: releases its lock, waits for a notify (or the
    /// deadline), takes the lock back: `Notified`.
    Wait {
        wait_ms: Option<u64>,
    },
    /// Condition: wakes at most `n` waiters.
    Notify(u64),
    NotifyAll,

    // ---- events ----
    SetFlag,
    ClearFlag,
    IsSet,
    /// Event: `Bool(true)` once set, `Bool(false)` at the deadline.
    WaitSet {
        wait_ms: Option<u64>,
    },

    // ---- barriers ----
    /// `Int(index)` once all parties arrive; `Broken` if it breaks.
    Arrive {
        wait_ms: Option<u64>,
    },
    Abort,
    Reset,
    /// `Len` of parties waiting now.
    Waiting,
    IsBroken,

    // ---- queues ----
    /// `Done`, or `Bool(false)` if still full at the deadline.
    Put(Payload, Option<u64>),
    /// `Value(Some)`, or `Value(None)` if still empty at the deadline.
    Take(Option<u64>),
    IsFull,
    TaskDone,
    /// `Done` once every item put was marked done; `Bool(false)` at the deadline.
    Join(Option<u64>),

    // ---- lifetimes (objects made anonymously; others ignore them) ----
    /// One more proxy to it in the caller's process (`Done`).
    IncRef,
    /// One fewer (`Done`); the last one of every process frees it.
    DecRef,

    // ---- registered user types ----
    /// A request for a user type, in its own encoding.
    Call(#[serde(with = "serde_bytes")] Vec<u8>),

    // ---- queues, continued ----
    /// Puts back at the front an item this connection took but will not
    /// use (its awaited get was dropped after the item was sent): `Done`.
    /// A joinable queue's item is no longer this connection's to mark
    /// done.
    Unget(#[serde(with = "serde_bytes")] Vec<u8>),
}

impl Op {
    /// How long it may wait: `None` not at all (it has no wait),
    /// `Some(None)` without end, `Some(Some(ms))` at most `ms`.
    pub fn wait_of(&self) -> Option<Option<u64>> {
        match self {
            Op::Acquire { wait_ms }
            | Op::Wait { wait_ms }
            | Op::WaitSet { wait_ms }
            | Op::Arrive { wait_ms } => Some(*wait_ms),
            Op::Put(_, wait_ms) | Op::Take(wait_ms) | Op::Join(wait_ms) => Some(*wait_ms),
            _ => None,
        }
    }

    /// Whether it may end up parked on the server (batches refuse those).
    pub fn may_wait(&self) -> bool {
        matches!(self, Op::Wait { .. }) || self.wait_of().is_some_and(|w| w != Some(0))
    }

    /// Whether its answer hands the caller something that is then the
    /// caller's: an item or entry taken out, a lock or a unit, a
    /// condition's lock taken back, a barrier passed, a registered type's
    /// result (which may be anything).
    pub(crate) fn hands_over(&self) -> bool {
        matches!(
            self,
            Op::Pop(_)
                | Op::PopItem
                | Op::PopAt(_)
                | Op::Take(_)
                | Op::Acquire { .. }
                | Op::Wait { .. }
                | Op::Arrive { .. }
                | Op::Call(_)
        )
    }

    /// The one value it brings to store, if it brings one: a set's, an
    /// append's, an insert's, a set at an index, a queue's put.
    pub fn value(&self) -> Option<&Payload> {
        match self {
            Op::Set(_, value)
            | Op::Append(value)
            | Op::Insert(_, value)
            | Op::SetAt(_, value)
            | Op::Put(value, _) => Some(value),
            _ => None,
        }
    }

    /// It, with the value it brings left out (empty), if it brings one.
    pub fn without_value(&self) -> Option<Op> {
        let empty = Payload::default;
        Some(match self {
            Op::Set(key, _) => Op::Set(key.clone(), empty()),
            Op::Append(_) => Op::Append(empty()),
            Op::Insert(at, _) => Op::Insert(*at, empty()),
            Op::SetAt(at, _) => Op::SetAt(*at, empty()),
            Op::Put(_, wait_ms) => Op::Put(empty(), *wait_ms),
            _ => return None,
        })
    }

    /// The value it brings, to fill in (see [`value`](Self::value)).
    pub fn value_mut(&mut self) -> Option<&mut Payload> {
        match self {
            Op::Set(_, value)
            | Op::Append(value)
            | Op::Insert(_, value)
            | Op::SetAt(_, value)
            | Op::Put(value, _) => Some(value),
            _ => None,
        }
    }
}

/// What a dict's key holds, as `Entries` says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyHolds {
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    /// An object nested there: its id and kind.
    Nested(u64, Kind),
}

/// The server's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    Created(u64),
    Value(Option<Payload>),
    Int(i64),
    Len(u64),
    Bool(bool),
    Keys(#[serde(with = "super::byte_lists::list")] Vec<Payload>),
    Items(#[serde(with = "super::byte_lists::pairs")] Vec<(Vec<u8>, Payload)>),
    Versioned(u64, #[serde(with = "super::byte_lists::list")] Vec<Payload>),
    /// A page of an iteration: the dict's version, the place of the last
    /// key given (`None`: no more), and the keys with their values (`None`
    /// for a nested object, or when values were not asked for).
    Page {
        version: u64,
        last: Option<u64>,
        #[serde(with = "super::byte_lists::pairs_maybe")]
        items: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    },
    /// The dict changed size since the iteration began.
    Changed,
    /// A dict's keys with what each holds.
    Entries(#[serde(with = "super::byte_lists::keyed")] Vec<(Vec<u8>, KeyHolds)>),
    /// A store past the manager's byte budget, or past this client's share
    /// of it, was refused; nothing changed.
    OverBudget(String),
    /// The name is taken by an object of another kind (or, opened exactly,
    /// made with other parameters).
    WrongKind(String),
    Done,
    Batch(#[serde(deserialize_with = "flat_batch")] Vec<Reply>),
    /// A lock is the caller's; `owner_died`: its last holder's process died
    /// holding it (the state it guarded may be half-updated).
    Acquired {
        owner_died: bool,
    },
    /// A condition wait ended with the lock held again: `notified` false
    /// when it was the deadline that ended it.
    Notified {
        notified: bool,
        owner_died: bool,
    },
    /// A barrier broke (aborted, a waiter timed out, or died).
    Broken,
    /// The client's lane, encoded (its descriptors came with this reply).
    Lane(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Sent on the lane: the reply did not fit, it follows on the socket.
    OnSocket,
    /// The request could not be carried out (no such object, a value that
    /// is not a counter); the connection goes on.
    Error(String),
    /// Sent on the lane: `Value(Some(..))`, the value being the sealed
    /// memfd of `len` bytes handed over on the lane's spill port just
    /// before.
    SealedValue(u64),
    /// Sent on the lane: the reply, `len` bytes encoded, is in the sealed
    /// memfd handed over on the lane's spill port just before (a large
    /// one other than a single value: `items()`, a list's `to_vec()`).
    SealedReply(u64),
}

thread_local! {
    /// How many batches the decoder of this thread is inside.
    static BATCH_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Leaves a batch: the depth goes back down however decoding ended.
struct InBatch;

impl Drop for InBatch {
    fn drop(&mut self) {
        BATCH_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// A batch's members: at most [`MAX_BATCH`], and no batch among them.
fn flat_batch<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    if BATCH_DEPTH.with(|d| d.replace(d.get() + 1)) > 0 {
        BATCH_DEPTH.with(|d| d.set(d.get() - 1));
        return Err(D::Error::custom("batches do not nest"));
    }
    let _leave = InBatch;
    deserializer.deserialize_seq(Members(std::marker::PhantomData))
}

struct Members<T>(std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for Members<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a batch of at most {MAX_BATCH}")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let announced = seq.size_hint().unwrap_or(0);
        if announced > MAX_BATCH {
            return Err(A::Error::custom(format!(
                "a batch of {announced} (at most {MAX_BATCH})"
            )));
        }
        let mut members = Vec::with_capacity(announced);
        while let Some(member) = seq.next_element()? {
            if members.len() == MAX_BATCH {
                return Err(A::Error::custom(format!(
                    "a batch holds at most {MAX_BATCH}"
                )));
            }
            members.push(member);
        }
        Ok(members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[Batch, 1 member]` repeated: a batch nested `depth` deep.
    fn nested(depth: usize) -> Vec<u8> {
        let mut bytes = [3u8, 1].repeat(depth);
        bytes.extend([3, 0]);
        bytes
    }

    #[test]
    fn a_deeply_nested_batch_is_refused_without_recursing() {
        assert_eq!(
            postcard::from_bytes::<Request>(&nested(0)).expect("flat"),
            Request::Batch(Vec::new())
        );
        for depth in [1, 2, 50_000] {
            let e = postcard::from_bytes::<Request>(&nested(depth)).expect_err("nested");
            assert!(format!("{e:?}").len() < 200, "{depth}: {e:?}");
        }
        // The decoder's depth is back to zero after a refusal.
        assert!(postcard::from_bytes::<Request>(&nested(0)).is_ok());
    }

    #[test]
    fn a_batch_announcing_more_than_its_cap_is_refused_before_allocating() {
        // Batch of 2^32 members, announced; none present.
        let bytes = [3u8, 0x80, 0x80, 0x80, 0x80, 0x10];
        assert!(postcard::from_bytes::<Request>(&bytes).is_err());
        let ok = Request::Batch(vec![Request::OpenLane; MAX_BATCH]);
        let encoded = postcard::to_allocvec(&ok).expect("encode");
        assert_eq!(
            postcard::from_bytes::<Request>(&encoded).expect("decode"),
            ok
        );
        let over = Request::Batch(vec![Request::OpenLane; MAX_BATCH + 1]);
        let encoded = postcard::to_allocvec(&over).expect("encode");
        assert!(postcard::from_bytes::<Request>(&encoded).is_err());
    }
}
