//! Many operations, on several objects of one manager, in one round trip:
//! each is added with the proxy it is for and gives a ticket; the replies
//! are taken by ticket, typed. The operations run one after the other on
//! the server, nobody else's in between; none may wait.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::super::client::Link;
use super::super::protocol::{Op, Reply, Request, MAX_BATCH};
use super::super::ManagerError;
use super::{encode, expect_done, expect_value, unexpected, Dict, List, Namespace, Queue, Target};

/// A batch being filled ([`crate::manager::Manager::batch`]).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// outlast_ipc::init();
/// let manager = outlast_ipc::manager::Manager::start()?;
/// let ns = manager.namespace()?;
/// let d = manager.dict::<String, u32>()?;
/// let mut batch = manager.batch();
/// let count = batch.fetch_add(&ns, "count", 1)?;
/// batch.set(&d, &"a".into(), &7)?;
/// let a = batch.get(&d, &"a".into())?;
/// let replies = batch.run()?;
/// assert_eq!(replies.take(count)?, 1);
/// assert_eq!(replies.take(a)?, Some(7));
/// # Ok(())
/// # }
/// ```
#[derive(Default)]
pub struct Batch {
    /// The manager, known from the first operation's proxy.
    link: Option<Link>,
    requests: Vec<Request>,
}

/// Where one operation's reply will be in a batch's replies.
pub struct Ticket<T> {
    index: usize,
    read: fn(Reply) -> Result<T, ManagerError>,
}

// Copy by hand: `T` need not be `Copy`.
impl<T> Clone for Ticket<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Ticket<T> {}

/// The replies of a batch that ran.
pub struct BatchReplies {
    replies: Vec<Reply>,
}

impl Batch {
    /// An empty batch, for the manager of the first proxy added (a process
    /// that has proxies only, a child say, needs no `Manager`).
    pub fn new() -> Self {
        Batch::default()
    }

    fn push<T>(
        &mut self,
        target: &Target,
        op: Op,
        read: fn(Reply) -> Result<T, ManagerError>,
    ) -> Result<Ticket<T>, ManagerError> {
        let link = self.link.get_or_insert_with(|| target.link.clone());
        if target.link != *link {
            return Err(ManagerError::Server(
                "a batch holds objects of one manager".into(),
            ));
        }
        self.requests.push(Request::On { id: target.id, op });
        Ok(Ticket {
            index: self.requests.len() - 1,
            read,
        })
    }

    /// `d.get(key)`.
    pub fn get<K: Serialize, V: DeserializeOwned>(
        &mut self,
        d: &Dict<K, V>,
        key: &K,
    ) -> Result<Ticket<Option<V>>, ManagerError> {
        self.push(&d.target, Op::Get(encode(key)?), expect_value::<V>)
    }

    /// `d[key] = value`.
    pub fn set<K: Serialize, V: Serialize>(
        &mut self,
        d: &Dict<K, V>,
        key: &K,
        value: &V,
    ) -> Result<Ticket<()>, ManagerError> {
        self.push(
            &d.target,
            Op::Set(encode(key)?, encode(value)?.into()),
            expect_done,
        )
    }

    /// Adds `delta` to the `i64` at `key` of a dict.
    pub fn dict_fetch_add<K: Serialize, V>(
        &mut self,
        d: &Dict<K, V>,
        key: &K,
        delta: i64,
    ) -> Result<Ticket<i64>, ManagerError> {
        self.push(&d.target, Op::FetchAdd(encode(key)?, delta), expect_int)
    }

    /// Adds `delta` to the namespace's `i64` field `name`.
    pub fn fetch_add(
        &mut self,
        ns: &Namespace,
        name: &str,
        delta: i64,
    ) -> Result<Ticket<i64>, ManagerError> {
        self.push(
            &ns.target,
            Op::FetchAdd(name.as_bytes().to_vec(), delta),
            expect_int,
        )
    }

    /// `l.append(value)`.
    pub fn append<T: Serialize>(
        &mut self,
        l: &List<T>,
        value: &T,
    ) -> Result<Ticket<()>, ManagerError> {
        self.push(&l.target, Op::Append(encode(value)?.into()), expect_done)
    }

    /// Puts `item` if the queue has room now: whether it did.
    pub fn put<T: Serialize>(
        &mut self,
        q: &Queue<T>,
        item: &T,
    ) -> Result<Ticket<bool>, ManagerError> {
        self.push(
            &q.target,
            Op::Put(encode(item)?.into(), Some(0)),
            expect_put,
        )
    }

    /// Takes the queue's oldest item if it has one now.
    pub fn try_get<T: DeserializeOwned>(
        &mut self,
        q: &Queue<T>,
    ) -> Result<Ticket<Option<T>>, ManagerError> {
        self.push(&q.target, Op::Take(Some(0)), expect_value::<T>)
    }

    /// How many operations it holds.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Sends them all, in one round trip, and waits for the replies.
    pub fn run(self) -> Result<BatchReplies, ManagerError> {
        self.run_within(None)
    }

    /// [`run`](Self::run), waiting at most `timeout` (`ManagerError::Timeout`).
    pub fn run_timeout(self, timeout: std::time::Duration) -> Result<BatchReplies, ManagerError> {
        self.run_within(Some(timeout))
    }

    fn run_within(
        self,
        timeout: Option<std::time::Duration>,
    ) -> Result<BatchReplies, ManagerError> {
        let n = self.requests.len();
        if n > MAX_BATCH {
            return Err(ManagerError::Server(format!(
                "a batch holds at most {MAX_BATCH} operations, not {n}"
            )));
        }
        let Some(link) = self.link else {
            return Ok(BatchReplies {
                replies: Vec::new(),
            });
        };
        match link.call(&Request::Batch(self.requests), timeout)? {
            Reply::Batch(replies) if replies.len() == n => Ok(BatchReplies { replies }),
            other => Err(unexpected(other)),
        }
    }
}

impl BatchReplies {
    /// The reply of the operation `ticket` stands for (an operation the
    /// server refused is its error alone; the others stand).
    pub fn take<T>(&self, ticket: Ticket<T>) -> Result<T, ManagerError> {
        let reply = self
            .replies
            .get(ticket.index)
            .cloned()
            .ok_or_else(|| ManagerError::Protocol("a ticket of another batch".into()))?;
        (ticket.read)(reply)
    }
}

fn expect_int(reply: Reply) -> Result<i64, ManagerError> {
    match reply {
        Reply::Int(n) => Ok(n),
        Reply::Error(why) => Err(ManagerError::Server(why)),
        Reply::OverBudget(why) => Err(ManagerError::OverBudget(why)),
        other => Err(unexpected(other)),
    }
}

fn expect_put(reply: Reply) -> Result<bool, ManagerError> {
    match reply {
        Reply::Done => Ok(true),
        Reply::Bool(b) => Ok(b),
        Reply::Error(why) => Err(ManagerError::Server(why)),
        Reply::OverBudget(why) => Err(ManagerError::OverBudget(why)),
        other => Err(unexpected(other)),
    }
}
