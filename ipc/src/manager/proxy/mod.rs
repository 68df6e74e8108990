//! Typed proxies: each call is one request to the manager and its reply.
//! Cheap to clone, and plain data, so they travel into children. Every
//! proxy has `with_timeout`, bounding each of its calls (`Timeout`);
//! operations that wait have their own `_timeout` forms, whose deadline
//! the manager keeps. A manager that keeps none (stopped, `SIGSTOP`)
//! makes them `Timeout` [`WAIT_SLACK`] after their deadline, blocking or
//! awaited alike.

mod batch;
mod dict;
mod list;
mod queue;
mod set;
mod shared;
mod sync;

pub use batch::{Batch, BatchReplies, Ticket};
pub use dict::{Dict, DictItems, DictKeys, Entry, Namespace, Nested, Value};
pub use list::{Array, List};
pub use queue::{JoinableQueue, Queue};
pub use set::Set;
pub use shared::Shared;
pub use sync::{Acquired, Barrier, Condition, Event, Held, HeldAsync, Lock, Semaphore};

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::awaited::Undo;
use super::awaited_hold::Holding;
use super::awaited_round::Until;
use super::client::Link;
use super::protocol::{Kind, Op, Reply, Request, MAX_BATCH};
use super::sealed::{SealedValue, MEMFD_NAME, SEALED_FROM};
use super::ManagerError;
use super::Payload;

/// A key's or a value's postcard bytes (a `Vec<u8>` and the other bulk
/// types copied whole, as a queue's items are: a debug build would take
/// seconds over 100 MB one element at a time).
pub(super) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, ManagerError> {
    // Room for a small key or value at once (it grew from nothing, twice).
    let mut out = Vec::with_capacity(32);
    crate::codec::encode_append(value, &mut out)
        .map_err(|e| ManagerError::Encode(e.to_string()))?;
    Ok(out)
}

/// A value to store, encoded: into a buffer, or, for a `local` manager,
/// from a megabyte on into the sealed memfd it travels in and the manager
/// keeps (see `manager::sealed`), with no buffer of the whole value in
/// between. (Over TCP the bytes go on the socket: a memfd would be one
/// more copy.)
fn encode_value<T: Serialize + ?Sized>(value: &T, local: bool) -> Result<Payload, ManagerError> {
    use crate::codec::spill_sink::{Encoded, SpillSink, SpillSinkError};
    if !local {
        return encode(value).map(Payload::Owned);
    }
    // The manager's own cap is checked as the value is sent.
    static NO_CAP: AtomicUsize = AtomicUsize::new(usize::MAX);
    let mut sink = SpillSink::new(Vec::with_capacity(32), SEALED_FROM, &NO_CAP, MEMFD_NAME);
    let encoded = crate::codec::encode_to(value, &mut sink);
    match sink.finish(encoded) {
        Ok(Encoded::Inline) => {
            let mut bytes = Vec::new();
            sink.give_back(&mut bytes, usize::MAX);
            Ok(Payload::Owned(bytes))
        }
        Ok(Encoded::Spilled { memfd, len }) => SealedValue::ours(memfd, len)
            .map(|sealed| Payload::Sealed(Arc::new(sealed)))
            .map_err(super::client::sealed_error),
        Err(SpillSinkError::Os(e)) => Err(ManagerError::Local(e)),
        Err(e) => Err(ManagerError::Encode(e.to_string())),
    }
}

/// The value at the front of `bytes` (what follows it is ignored, as
/// postcard's `from_bytes` ignores it).
pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ManagerError> {
    crate::codec::take_payload(bytes)
        .map(|(value, _rest)| value)
        .map_err(|e| ManagerError::Encode(e.to_string()))
}

/// [`decode`] of a payload the caller gives up: a `Vec<u8>` value keeps
/// its bytes (no copy of a 100 MB value).
pub(super) fn decode_owned<T: DeserializeOwned>(bytes: Payload) -> Result<T, ManagerError> {
    match bytes {
        // Read where it lies: made into a vector first, a value was
        // copied twice (a 100 MB get took 120-129 ms).
        Payload::Sealed(sealed) => crate::codec::take_payload(&sealed).map(|(value, _rest)| value),
        bytes => crate::codec::take_owned_payload(bytes.into_vec()),
    }
    .map_err(|e| ManagerError::Encode(e.to_string()))
}

pub(super) fn unexpected(reply: Reply) -> ManagerError {
    ManagerError::Protocol(format!("unexpected reply {reply:?}"))
}

/// How long past a wait's own deadline a call waits for the manager's
/// answer (the manager keeps the deadline; this only bounds a lost reply).
pub(super) const WAIT_SLACK: Duration = Duration::from_secs(10);

/// What every proxy is: where its object lives, and its calls' timeout.
#[derive(Clone, Debug, Deserialize)]
pub struct Target {
    link: Link,
    id: u64,
    timeout: Option<Duration>,
    /// Made anonymously: the manager counts the processes' proxies to it,
    /// and frees it when none is left.
    counted: bool,
    /// This process's reference, shared by the clones made here (a proxy
    /// that arrives from another process makes its own on first use).
    #[serde(skip)]
    reference: OnceLock<Arc<Reference>>,
}

/// A proxy as it travels: a child's `Process` arguments also lend this
/// process's reference, kept until that child is joined (see
/// [`crate::lend`]), so the object outlives the gap before the child's
/// first call.
impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            link: &'a Link,
            id: u64,
            timeout: Option<Duration>,
            counted: bool,
        }
        if let Some(reference) = self.reference.get() {
            crate::lend::lend(reference.clone());
        }
        Wire {
            link: &self.link,
            id: self.id,
            timeout: self.timeout,
            counted: self.counted,
        }
        .serialize(serializer)
    }
}

/// A process's reference to a counted object: told to the manager on the
/// first call through it, given back when the last proxy sharing it is
/// dropped in that process.
#[derive(Debug)]
struct Reference {
    link: Link,
    id: u64,
    /// The process the manager counts this reference for (0: none yet; a
    /// forked child's copy still names its parent).
    pid: AtomicU32,
}

impl Drop for Reference {
    fn drop(&mut self) {
        if self.pid.load(Ordering::Acquire) == crate::os::thread_id::process_id() {
            super::client::dropped(&self.link, self.id);
        }
    }
}

impl Target {
    /// A value to store in this object, encoded (see [`encode_value`]).
    pub(super) fn to_store<T: Serialize + ?Sized>(
        &self,
        value: &T,
    ) -> Result<Payload, ManagerError> {
        encode_value(value, self.link.is_local())
    }

    /// A proxy to a named or nested object (not counted: it lives until it
    /// is deleted, or with its key).
    pub(super) fn new(link: Link, id: u64) -> Self {
        Target {
            link,
            id,
            timeout: None,
            counted: false,
            reference: OnceLock::new(),
        }
    }

    /// A proxy to an object this process just made, which the manager
    /// counted with this process's first reference.
    pub(super) fn made_here(link: Link, id: u64) -> Self {
        let target = Target {
            counted: true,
            ..Target::new(link.clone(), id)
        };
        let _ = target.reference.set(Arc::new(Reference {
            link,
            id,
            pid: AtomicU32::new(crate::os::thread_id::process_id()),
        }));
        target
    }

    /// Before a counted object's first call in this process: the manager
    /// counts this process's reference.
    fn hold(&self) {
        if self.claim_reference() {
            // Refused only by a manager that is gone or full: the call
            // that follows says so.
            let _ = self.link.call(&self.request(Op::IncRef), self.timeout);
        }
    }

    /// [`hold`](Self::hold) for an awaited call.
    async fn hold_async(&self) {
        if self.claim_reference() {
            let _ = self.link.call_async(self.request(Op::IncRef)).await;
        }
    }

    /// Whether this call is the first of this process through a counted
    /// object's reference: the manager is to count it (`IncRef`).
    fn claim_reference(&self) -> bool {
        if !self.counted {
            return false;
        }
        let reference = self.reference.get_or_init(|| {
            Arc::new(Reference {
                link: self.link.clone(),
                id: self.id,
                pid: AtomicU32::new(0),
            })
        });
        let me = crate::os::thread_id::process_id();
        let had = reference.pid.load(Ordering::Acquire);
        had != me
            && reference
                .pid
                .compare_exchange(had, me, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// [`call`](Self::call), awaited: for operations that do not wait on
    /// the server (see `awaited`). The proxy's timeout is the executor's
    /// to keep (`tokio::time::timeout`).
    async fn call_async(&self, op: Op) -> Result<Reply, ManagerError> {
        self.hold_async().await;
        self.link.call_async(self.request(op)).await
    }

    /// An operation that may wait on the server, awaited on a connection
    /// of its own (see `awaited`); dropped while it waits, the manager
    /// is told, and what its reply did is undone as `undo` says.
    async fn call_waiting_async(&self, op: Op, undo: Undo) -> Result<Reply, ManagerError> {
        self.hold_async().await;
        self.link.call_waiting_async(self.request(op), undo).await
    }

    /// An event's untimed wait, or a joinable queue's join, awaited in
    /// this process's round of such waits on it (see `awaited_round`).
    async fn wait_round_async(&self, until: Until) -> Result<(), ManagerError> {
        self.hold_async().await;
        super::awaited_round::wait(&self.link, self.id, until).await
    }

    /// An acquire, awaited on a connection of its own, which holds what it
    /// took: the reply, and that connection if it holds something now
    /// (see `awaited_hold`). Dropped while it waits, the manager is told,
    /// and what it took meanwhile is released.
    async fn call_holding_async(&self, op: Op) -> Result<(Reply, Holding<'_>), ManagerError> {
        self.hold_async().await;
        let (reply, lease) = self
            .link
            .call_waiting_leased(self.request(op), Undo::Release(self.id))
            .await?;
        Ok((reply, Holding::new(lease, self.id)))
    }

    /// Several operations on this object, awaited, [`MAX_BATCH`] to a
    /// round trip.
    async fn batch_async(&self, ops: Vec<Op>) -> Result<Vec<Reply>, ManagerError> {
        self.hold_async().await;
        let mut all = Vec::with_capacity(ops.len());
        for requests in self.batches(ops) {
            let n = requests.len();
            let replies = self.link.call_async(Request::Batch(requests)).await?;
            all.extend(batch_replies(replies, n)?);
        }
        Ok(all)
    }

    /// `ops` on this object as batches of [`MAX_BATCH`] requests.
    fn batches(&self, ops: Vec<Op>) -> impl Iterator<Item = Vec<Request>> + '_ {
        let mut ops = ops.into_iter().peekable();
        std::iter::from_fn(move || {
            ops.peek()?;
            Some(
                ops.by_ref()
                    .take(MAX_BATCH)
                    .map(|op| self.request(op))
                    .collect(),
            )
        })
    }

    fn request(&self, op: Op) -> Request {
        Request::On { id: self.id, op }
    }

    fn call(&self, op: Op) -> Result<Reply, ManagerError> {
        self.hold();
        self.link.call(&self.request(op), self.timeout)
    }

    /// An operation that may wait `wait` (`None`: without end) on the server.
    fn call_waiting(&self, op: Op, wait: Option<Duration>) -> Result<Reply, ManagerError> {
        self.hold();
        let timeout = match (wait, self.timeout) {
            (Some(w), _) => Some(w.saturating_add(WAIT_SLACK)),
            (None, t) => t,
        };
        self.link.call(&self.request(op), timeout)
    }

    /// Several operations on this object, [`MAX_BATCH`] to a round trip.
    fn batch(&self, ops: Vec<Op>) -> Result<Vec<Reply>, ManagerError> {
        self.hold();
        let mut all = Vec::with_capacity(ops.len());
        for requests in self.batches(ops) {
            let n = requests.len();
            let replies = self.link.call(&Request::Batch(requests), self.timeout)?;
            all.extend(batch_replies(replies, n)?);
        }
        Ok(all)
    }

    /// A proxy to object `id`, nested in this one.
    fn nested_at(&self, id: u64) -> Target {
        Target {
            timeout: self.timeout,
            ..Target::new(self.link.clone(), id)
        }
    }

    /// The object kept at `key` of this dict, made of `kind` if free.
    fn nested(&self, key: Vec<u8>, kind: Kind) -> Result<Target, ManagerError> {
        match self.call(Op::NestedAt(key, kind))? {
            Reply::Created(id) => Ok(Target {
                timeout: self.timeout,
                ..Target::new(self.link.clone(), id)
            }),
            other => Err(unexpected(other)),
        }
    }

    fn done(&self, op: Op) -> Result<(), ManagerError> {
        expect_done(self.call(op)?)
    }

    fn value<T: DeserializeOwned>(&self, op: Op) -> Result<Option<T>, ManagerError> {
        expect_value(self.call(op)?)
    }

    fn boolean(&self, op: Op) -> Result<bool, ManagerError> {
        expect_bool(self.call(op)?)
    }

    fn count(&self, op: Op) -> Result<u64, ManagerError> {
        expect_count(self.call(op)?)
    }

    fn int(&self, op: Op) -> Result<i64, ManagerError> {
        expect_int(self.call(op)?)
    }

    fn list<T: DeserializeOwned>(&self, op: Op) -> Result<Vec<T>, ManagerError> {
        expect_list(self.call(op)?)
    }
}

/// The `n` replies of a batch.
fn batch_replies(reply: Reply, n: usize) -> Result<Vec<Reply>, ManagerError> {
    match reply {
        Reply::Batch(replies) if replies.len() == n => Ok(replies),
        other => Err(unexpected(other)),
    }
}

/// What a reply carries, by the shape the operation gives.
fn expect_bool(reply: Reply) -> Result<bool, ManagerError> {
    match reply {
        Reply::Bool(b) => Ok(b),
        other => Err(unexpected(other)),
    }
}

fn expect_count(reply: Reply) -> Result<u64, ManagerError> {
    match reply {
        Reply::Len(n) => Ok(n),
        other => Err(unexpected(other)),
    }
}

fn expect_int(reply: Reply) -> Result<i64, ManagerError> {
    match reply {
        Reply::Int(n) => Ok(n),
        other => Err(unexpected(other)),
    }
}

fn expect_list<T: DeserializeOwned>(reply: Reply) -> Result<Vec<T>, ManagerError> {
    match reply {
        Reply::Keys(items) => items.into_iter().map(decode_owned).collect(),
        other => Err(unexpected(other)),
    }
}

fn expect_done(reply: Reply) -> Result<(), ManagerError> {
    match reply {
        Reply::Done => Ok(()),
        Reply::Error(why) => Err(ManagerError::Server(why)),
        Reply::OverBudget(why) => Err(ManagerError::OverBudget(why)),
        other => Err(unexpected(other)),
    }
}

fn expect_value<T: DeserializeOwned>(reply: Reply) -> Result<Option<T>, ManagerError> {
    match reply {
        Reply::Value(None) => Ok(None),
        Reply::Value(Some(bytes)) => decode_owned(bytes).map(Some),
        Reply::Error(why) => Err(ManagerError::Server(why)),
        Reply::OverBudget(why) => Err(ManagerError::OverBudget(why)),
        other => Err(unexpected(other)),
    }
}

/// From this size on, a value an awaited read gives is decoded on a
/// thread of its own (starting one costs tens of microseconds; a megabyte
/// decodes in about half a millisecond to a few).
const OFF_THREAD_BYTES: usize = 1 << 20;

/// [`expect_value`] of an awaited call that leaves the value where it is
/// (a `get`): a large one is decoded on a thread of its own, not where
/// the future is polled (a 100 MB value held the executor 52 ms). Dropped
/// meanwhile, the call has taken nothing. (A call that takes the value
/// out, a `pop`, decodes it where it is polled: dropped at that point, it
/// would lose the value.)
async fn expect_kept_value<T: DeserializeOwned + Send + 'static>(
    reply: Reply,
) -> Result<Option<T>, ManagerError> {
    match reply {
        Reply::Value(Some(bytes)) if bytes.len() >= OFF_THREAD_BYTES => {
            decoded_off_thread(move || decode_owned::<T>(bytes).map(Some)).await
        }
        reply => expect_value(reply),
    }
}

/// [`expect_list`] of an awaited call that leaves the items where they
/// are (`keys`, `to_vec`, a slice): as [`expect_kept_value`], items of
/// [`OFF_THREAD_BYTES`] or more in all are decoded on a thread of their
/// own (a list of ten 10 MB items held the executor as one 100 MB value
/// did).
async fn expect_kept_list<T: DeserializeOwned + Send + 'static>(
    reply: Reply,
) -> Result<Vec<T>, ManagerError> {
    match reply {
        Reply::Keys(items) if items.iter().map(|i| i.len()).sum::<usize>() >= OFF_THREAD_BYTES => {
            decoded_off_thread(move || expect_list(Reply::Keys(items))).await
        }
        reply => expect_list(reply),
    }
}

/// `decode()`'s result, from a thread of its own.
async fn decoded_off_thread<T: Send + 'static>(
    decode: impl FnOnce() -> Result<T, ManagerError> + Send + 'static,
) -> Result<T, ManagerError> {
    match crate::off_thread::run_off_thread("outlast-decode", decode).await {
        Ok(decoded) => decoded,
        Err(_) => Err(ManagerError::Encode(
            "decoding the value panicked (see the message above)".into(),
        )),
    }
}

/// The wait of a `_timeout` call, in the protocol's milliseconds.
fn wait_ms(wait: Option<Duration>) -> Option<u64> {
    wait.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

mod sealed {
    /// How a manager makes a proxy (not for other crates to implement).
    pub trait Made {
        /// The kind a `Manager::open` makes when the name is free.
        fn default_kind() -> super::Kind;
        fn made(target: super::Target) -> Self;
    }
}

/// A proxy type a manager can make or open by name ([`crate::manager::Manager::open`]).
pub trait Proxy: sealed::Made {}

impl<T: sealed::Made> Proxy for T {}

pub(super) use sealed::Made;

/// Declares a proxy struct over a [`Target`], typed by `$param`s, with
/// `Clone`, `with_timeout`, the kind `open` makes, and a `Debug` that
/// names the object (`Dict(#3)`; `custom_debug`: the proxy writes its own).
macro_rules! proxy {
    ($(#[$doc:meta])* $name:ident [$($param:ident),*] = $kind:expr) => {
        super::proxy!(custom_debug $(#[$doc])* $name [$($param),*] = $kind);

        impl<$($param),*> std::fmt::Debug for $name<$($param),*> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}(#{})", stringify!($name), self.target.id)
            }
        }
    };
    (custom_debug $(#[$doc:meta])* $name:ident [$($param:ident),*] = $kind:expr) => {
        $(#[$doc])*
        #[derive(serde::Serialize, serde::Deserialize)]
        #[serde(bound = "")]
        pub struct $name<$($param),*> {
            pub(super) target: super::Target,
            #[serde(skip)]
            _types: std::marker::PhantomData<fn() -> ($($param,)*)>,
        }

        impl<$($param),*> Clone for $name<$($param),*> {
            fn clone(&self) -> Self {
                $name { target: self.target.clone(), _types: std::marker::PhantomData }
            }
        }

        impl<$($param),*> $name<$($param),*> {
            /// The same proxy, each call bounded by `timeout` (`ManagerError::Timeout`).
            pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
                self.target.timeout = Some(timeout);
                self
            }
        }

        impl<$($param),*> super::Made for $name<$($param),*> {
            fn default_kind() -> super::Kind {
                $kind
            }
            fn made(target: super::Target) -> Self {
                $name { target, _types: std::marker::PhantomData }
            }
        }
    };
}

pub(super) use proxy;
