//! What a manager's clients and its server say to each other. Values
//! travel as postcard bytes the server stores without knowing their types
//! (typing is the proxies' business); the only values it reads are the
//! `i64` counters of `fetch_add`. Nothing received is ever run as code.

use serde::{Deserialize, Serialize};

/// The kinds of shared object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    Namespace,
    Dict,
    Lock,
    RLock,
    List,
}

/// One request; the server answers each with one [`Reply`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Create(Kind),
    /// An operation on object `id`.
    On {
        id: u64,
        op: Op,
    },
    /// Several requests in one round trip, answered by `Reply::Batch`.
    Batch(Vec<Request>),
}

/// An operation on one object. Namespaces are dicts keyed by field name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Get(Vec<u8>),
    Set(Vec<u8>, Vec<u8>),
    Pop(Vec<u8>),
    Contains(Vec<u8>),
    Len,
    Keys,
    Items,
    Clear,
    /// Adds to the `i64` at a key (0 when absent); gives the new value.
    FetchAdd(Vec<u8>, i64),
    /// Takes a lock: at once (`wait_ms` 0), by a deadline, or whenever
    /// (`None`). Answered `Acquired` or, past the deadline, `Bool(false)`.
    Acquire {
        wait_ms: Option<u64>,
    },
    Release,
    /// Lists: `append`, `extend`, `insert(i, v)`, `l[i]`, `l[i] = v`,
    /// `pop(i)` (`None`: the last), `l[start:end]`, `remove(v)`,
    /// `index(v)`, `count(v)` (values compared as encoded bytes).
    Append(Vec<u8>),
    Extend(Vec<Vec<u8>>),
    Insert(u64, Vec<u8>),
    At(u64),
    SetAt(u64, Vec<u8>),
    PopAt(Option<u64>),
    Slice(u64, u64),
    Remove(Vec<u8>),
    IndexOf(Vec<u8>),
    Count(Vec<u8>),
}

/// The server's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    Created(u64),
    Value(Option<Vec<u8>>),
    Int(i64),
    Len(u64),
    Bool(bool),
    Keys(Vec<Vec<u8>>),
    Items(Vec<(Vec<u8>, Vec<u8>)>),
    Done,
    Batch(Vec<Reply>),
    /// A lock is the caller's; `owner_died`: its last holder's process died
    /// holding it (the state it guarded may be half-updated).
    Acquired {
        owner_died: bool,
    },
    /// The request could not be carried out (no such object, a value that
    /// is not a counter); the connection goes on.
    Error(String),
}
