//! Typed proxies: each call is one request to the manager and its reply.
//! Cheap to clone, and plain data, so they travel into children.

use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::client::Link;
use super::protocol::{Op, Reply, Request};
use super::ManagerError;

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, ManagerError> {
    postcard::to_allocvec(value).map_err(|e| ManagerError::Encode(e.to_string()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ManagerError> {
    postcard::from_bytes(bytes).map_err(|e| ManagerError::Encode(e.to_string()))
}

fn unexpected(reply: Reply) -> ManagerError {
    ManagerError::Protocol(format!("unexpected reply {reply:?}"))
}

/// What both proxies share: the link, the object, the timeout.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Target {
    link: Link,
    id: u64,
    timeout: Option<Duration>,
}

impl Target {
    fn new(link: Link, id: u64) -> Self {
        Target {
            link,
            id,
            timeout: None,
        }
    }

    fn call(&self, op: Op) -> Result<Reply, ManagerError> {
        self.link
            .call(&Request::On { id: self.id, op }, self.timeout)
    }

    /// An operation answered `Done`.
    fn done(&self, op: Op) -> Result<(), ManagerError> {
        match self.call(op)? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// An operation answered with a value, or none.
    fn value<T: DeserializeOwned>(&self, op: Op) -> Result<Option<T>, ManagerError> {
        match self.call(op)? {
            Reply::Value(None) => Ok(None),
            Reply::Value(Some(bytes)) => decode(&bytes).map(Some),
            other => Err(unexpected(other)),
        }
    }

    /// An operation answered yes or no.
    fn boolean(&self, op: Op) -> Result<bool, ManagerError> {
        match self.call(op)? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    /// An operation answered with a count.
    fn count(&self, op: Op) -> Result<u64, ManagerError> {
        match self.call(op)? {
            Reply::Len(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    /// An operation answered with an integer.
    fn int(&self, op: Op) -> Result<i64, ManagerError> {
        match self.call(op)? {
            Reply::Int(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }
}

/// Python's `manager.Namespace()`: named fields of any serde type, and
/// `i64` counters updated on the server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Namespace {
    target: Target,
}

impl Namespace {
    pub(super) fn new(link: Link, id: u64) -> Self {
        Namespace {
            target: Target::new(link, id),
        }
    }

    /// The same proxy, its calls bounded by `timeout` (`ManagerError::Timeout`).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.target.timeout = Some(timeout);
        self
    }

    /// The field `name`, if set.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ManagerError> {
        self.target.value(Op::Get(name.as_bytes().to_vec()))
    }

    /// Sets the field `name` (`ns.name = value`).
    pub fn set<T: Serialize>(&self, name: &str, value: &T) -> Result<(), ManagerError> {
        self.target
            .done(Op::Set(name.as_bytes().to_vec(), encode(value)?))
    }

    /// Adds `delta` to the `i64` field `name` (0 if unset) on the server,
    /// atomically: the answer to `ns.count += 1` racing. The new value.
    pub fn fetch_add(&self, name: &str, delta: i64) -> Result<i64, ManagerError> {
        self.target
            .int(Op::FetchAdd(name.as_bytes().to_vec(), delta))
    }
}

/// Python's `manager.dict()`, typed: keys `K`, values `V`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Dict<K, V> {
    target: Target,
    #[serde(skip)]
    _types: PhantomData<fn(K) -> V>,
}

impl<K, V> Clone for Dict<K, V> {
    fn clone(&self) -> Self {
        Dict {
            target: self.target.clone(),
            _types: PhantomData,
        }
    }
}

impl<K, V> Dict<K, V> {
    pub(super) fn new(link: Link, id: u64) -> Self {
        Dict {
            target: Target::new(link, id),
            _types: PhantomData,
        }
    }

    /// The same proxy, its calls bounded by `timeout` (`ManagerError::Timeout`).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.target.timeout = Some(timeout);
        self
    }
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> Dict<K, V> {
    /// `d.get(key)`.
    pub fn get(&self, key: &K) -> Result<Option<V>, ManagerError> {
        self.target.value(Op::Get(encode(key)?))
    }

    /// `d[key] = value`.
    pub fn set(&self, key: &K, value: &V) -> Result<(), ManagerError> {
        self.target.done(Op::Set(encode(key)?, encode(value)?))
    }

    /// `d.pop(key, None)`.
    pub fn pop(&self, key: &K) -> Result<Option<V>, ManagerError> {
        self.target.value(Op::Pop(encode(key)?))
    }

    /// `key in d`.
    pub fn contains(&self, key: &K) -> Result<bool, ManagerError> {
        self.target.boolean(Op::Contains(encode(key)?))
    }

    /// `len(d)`.
    pub fn len(&self) -> Result<u64, ManagerError> {
        self.target.count(Op::Len)
    }

    /// `len(d) == 0`.
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        self.len().map(|n| n == 0)
    }

    /// `d.keys()`, in the order of their encoded bytes.
    pub fn keys(&self) -> Result<Vec<K>, ManagerError> {
        match self.target.call(Op::Keys)? {
            Reply::Keys(keys) => keys.iter().map(|k| decode(k)).collect(),
            other => Err(unexpected(other)),
        }
    }

    /// `d.items()`, in the order of their keys' encoded bytes.
    pub fn items(&self) -> Result<Vec<(K, V)>, ManagerError> {
        match self.target.call(Op::Items)? {
            Reply::Items(items) => items
                .iter()
                .map(|(k, v)| Ok((decode(k)?, decode(v)?)))
                .collect(),
            other => Err(unexpected(other)),
        }
    }

    /// `d.clear()`.
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.target.done(Op::Clear)
    }

    /// `d.update(items)`, in one round trip.
    pub fn set_many<'a>(
        &self,
        items: impl IntoIterator<Item = (&'a K, &'a V)>,
    ) -> Result<(), ManagerError>
    where
        K: 'a,
        V: 'a,
    {
        let requests = items
            .into_iter()
            .map(|(k, v)| {
                Ok(Request::On {
                    id: self.target.id,
                    op: Op::Set(encode(k)?, encode(v)?),
                })
            })
            .collect::<Result<Vec<_>, ManagerError>>()?;
        for reply in self.batch(requests)? {
            if reply != Reply::Done {
                return Err(unexpected(reply));
            }
        }
        Ok(())
    }

    /// Many `d.get(key)`, in one round trip.
    pub fn get_many<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a K>,
    ) -> Result<Vec<Option<V>>, ManagerError>
    where
        K: 'a,
    {
        let requests = keys
            .into_iter()
            .map(|k| {
                Ok(Request::On {
                    id: self.target.id,
                    op: Op::Get(encode(k)?),
                })
            })
            .collect::<Result<Vec<_>, ManagerError>>()?;
        self.batch(requests)?
            .into_iter()
            .map(|reply| match reply {
                Reply::Value(None) => Ok(None),
                Reply::Value(Some(bytes)) => decode(&bytes).map(Some),
                Reply::Error(why) => Err(ManagerError::Server(why)),
                other => Err(unexpected(other)),
            })
            .collect()
    }

    fn batch(&self, requests: Vec<Request>) -> Result<Vec<Reply>, ManagerError> {
        let n = requests.len();
        match self
            .target
            .link
            .call(&Request::Batch(requests), self.target.timeout)?
        {
            Reply::Batch(replies) if replies.len() == n => Ok(replies),
            other => Err(unexpected(other)),
        }
    }

    /// Adds `delta` to the `i64` value at `key` (0 if absent) on the server.
    pub fn fetch_add(&self, key: &K, delta: i64) -> Result<i64, ManagerError> {
        self.target.int(Op::FetchAdd(encode(key)?, delta))
    }
}

/// A manager lock was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acquired {
    /// Its previous holder's process died holding it: what it guarded may
    /// be half-updated (as the shared-memory locks' `OwnerDied`).
    pub previous_owner_died: bool,
}

/// How long past a lock's own deadline a call waits for the server's answer.
const LOCK_SLACK: Duration = Duration::from_secs(10);

/// A lock kept by the manager (Python's `manager.Lock()`; `manager.RLock()`
/// when made reentrant). Held by a thread's connection: a holder whose
/// process dies releases it, and the next holder is told.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Lock {
    target: Target,
}

impl Lock {
    pub(super) fn new(link: Link, id: u64) -> Self {
        Lock {
            target: Target::new(link, id),
        }
    }

    fn take(&self, wait: Option<Duration>) -> Result<Option<Acquired>, ManagerError> {
        let wait_ms = wait.map(|d| d.as_millis().min(u64::MAX as u128) as u64);
        let reply = self.target.link.call(
            &Request::On {
                id: self.target.id,
                op: Op::Acquire { wait_ms },
            },
            wait.map(|d| d + LOCK_SLACK),
        )?;
        match reply {
            Reply::Acquired { owner_died } => Ok(Some(Acquired {
                previous_owner_died: owner_died,
            })),
            Reply::Bool(false) => Ok(None),
            other => Err(unexpected(other)),
        }
    }

    /// Waits for the lock as long as the manager lives.
    pub fn acquire(&self) -> Result<Acquired, ManagerError> {
        self.take(None)?
            .ok_or(ManagerError::Protocol("a wait without end ended".into()))
    }

    /// Takes the lock if it is free now.
    pub fn try_acquire(&self) -> Result<Option<Acquired>, ManagerError> {
        self.take(Some(Duration::ZERO))
    }

    /// Waits at most `timeout` for the lock (the manager keeps the deadline).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<Acquired>, ManagerError> {
        self.take(Some(timeout))
    }

    /// Gives the lock back (an error if this thread does not hold it).
    pub fn release(&self) -> Result<(), ManagerError> {
        self.target.done(Op::Release)
    }
}

/// Python's `manager.list()`, typed: items `T`. Values are compared as
/// their encoded bytes (`remove`, `index`, `count`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct List<T> {
    target: Target,
    #[serde(skip)]
    _types: PhantomData<fn() -> T>,
}

impl<T> Clone for List<T> {
    fn clone(&self) -> Self {
        List {
            target: self.target.clone(),
            _types: PhantomData,
        }
    }
}

impl<T> List<T> {
    pub(super) fn new(link: Link, id: u64) -> Self {
        List {
            target: Target::new(link, id),
            _types: PhantomData,
        }
    }

    /// The same proxy, its calls bounded by `timeout` (`ManagerError::Timeout`).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.target.timeout = Some(timeout);
        self
    }
}

impl<T: Serialize + DeserializeOwned> List<T> {
    /// `l.append(v)`.
    pub fn append(&self, value: &T) -> Result<(), ManagerError> {
        self.target.done(Op::Append(encode(value)?))
    }

    /// `l.extend(values)`, in one round trip.
    pub fn extend<'a>(&self, values: impl IntoIterator<Item = &'a T>) -> Result<(), ManagerError>
    where
        T: 'a,
    {
        let values = values.into_iter().map(encode).collect::<Result<_, _>>()?;
        self.target.done(Op::Extend(values))
    }

    /// `l.insert(i, v)` (past the end: at the end).
    pub fn insert(&self, index: u64, value: &T) -> Result<(), ManagerError> {
        self.target.done(Op::Insert(index, encode(value)?))
    }

    /// `l[i]`, or `None` past the end.
    pub fn get(&self, index: u64) -> Result<Option<T>, ManagerError> {
        self.target.value(Op::At(index))
    }

    /// `l[i] = v` (an error past the end).
    pub fn set(&self, index: u64, value: &T) -> Result<(), ManagerError> {
        self.target.done(Op::SetAt(index, encode(value)?))
    }

    /// `l.pop()`: the last item.
    pub fn pop(&self) -> Result<Option<T>, ManagerError> {
        self.target.value(Op::PopAt(None))
    }

    /// `l.pop(i)`.
    pub fn pop_at(&self, index: u64) -> Result<Option<T>, ManagerError> {
        self.target.value(Op::PopAt(Some(index)))
    }

    /// `l[range]` (clamped to the list, as Python's slices).
    pub fn slice(&self, range: std::ops::Range<u64>) -> Result<Vec<T>, ManagerError> {
        match self.target.call(Op::Slice(range.start, range.end))? {
            Reply::Keys(items) => items.iter().map(|b| decode(b)).collect(),
            other => Err(unexpected(other)),
        }
    }

    /// `list(l)`.
    pub fn to_vec(&self) -> Result<Vec<T>, ManagerError> {
        self.slice(0..u64::MAX)
    }

    /// `l.remove(v)`: whether it was there.
    pub fn remove(&self, value: &T) -> Result<bool, ManagerError> {
        self.target.boolean(Op::Remove(encode(value)?))
    }

    /// `l.index(v)`, `None` if absent.
    pub fn index(&self, value: &T) -> Result<Option<u64>, ManagerError> {
        match self.target.call(Op::IndexOf(encode(value)?))? {
            Reply::Int(i) => Ok(u64::try_from(i).ok()),
            other => Err(unexpected(other)),
        }
    }

    /// `l.count(v)`.
    pub fn count(&self, value: &T) -> Result<u64, ManagerError> {
        self.target.count(Op::Count(encode(value)?))
    }

    /// `len(l)`.
    pub fn len(&self) -> Result<u64, ManagerError> {
        self.target.count(Op::Len)
    }

    /// `len(l) == 0`.
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        self.len().map(|n| n == 0)
    }
}
