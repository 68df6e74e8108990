//! Python's `multiprocessing.Manager`: shared objects that live in a
//! server process, reached through typed proxies from any process that
//! has one (a proxy is a `Process` argument like any other, in fork and
//! spawn children alike).
//!
//! ```
//! use outlast_ipc::manager::{Manager, Namespace};
//!
//! fn count(ns: Namespace) -> i64 {
//!     for _ in 0..100 {
//!         ns.fetch_add("count", 1).unwrap();
//!     }
//!     0
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! outlast_ipc::init();
//! let manager = Manager::start()?;
//! let ns = manager.namespace()?;
//! let mut children: Vec<_> = (0..3).map(|_| outlast_ipc::Process::new(count, ns.clone())).collect();
//! for c in &mut children { c.start()?; }
//! for c in &mut children { c.join()?; }
//! assert_eq!(ns.get::<i64>("count")?, Some(300)); // no lost update, unlike `ns.count += 1`
//! let d = manager.dict::<String, u32>()?;
//! d.set(&"a".to_string(), &1)?;
//! assert_eq!(d.get(&"a".to_string())?, Some(1));
//! # Ok(())
//! # }
//! ```
//!
//! Objects: [`Dict`], [`List`], [`Namespace`], [`Lock`] (and reentrant),
//! [`Semaphore`] (and bounded), [`Condition`], [`Event`], [`Barrier`],
//! [`Queue`], [`JoinableQueue`], [`Value`], [`Array`], and types of your
//! own ([`SharedType`], [`Shared`]). Atomic updates happen on the server
//! (`fetch_add`, `update_with`, `compare_and_set`), and objects nest
//! (`dict.list_at(key)`), so the two classic Python races have a correct
//! answer; [`Batch`] sends operations on several objects in one round
//! trip. `acquire()` on a [`Lock`], [`Semaphore`] or [`Condition`]
//! returns a guard ([`Held`]) that releases it when dropped, as Python's
//! `with lock:`; `held.keep()` then `release()` is Python's other style.
//! A manager [`Lock`] or [`Condition`] whose holder's process dies is
//! released, and the next holder is told ([`Held::previous_owner_died`]);
//! a [`Semaphore`] is a count with no owner, as Python's (an
//! [`owned_semaphore`](Manager::owned_semaphore) gives back a dead
//! holder's units); a [`Barrier`] party that dies breaks the barrier;
//! waits have deadlines the server keeps. When the
//! server dies, every call is [`ManagerError::Disconnected`] at once,
//! never a hang.
//!
//! A local manager listens on a Unix socket in a directory only this user
//! can enter, and every connection proves the manager's random key (see
//! [`crate::net`]). Each local client then gets a fast lane: two
//! shared-memory rings the server hands over the socket, so a round trip
//! costs no system call while both sides are awake; the server checks
//! everything a client writes there, as it checks the socket. A value of
//! a megabyte or more goes beside the lane, encoded straight into a
//! sealed memfd, which the server keeps as it is and hands to each reader
//! (a 100 MB dict set and get: 0.13-0.16 s, where the socket took
//! 0.39-0.47 s).
//!
//! Remote: [`Manager::serve`] listens on TCP with a key of your choosing,
//! [`Manager::connect`] reaches it from another machine, and both sides
//! share objects by name ([`Manager::open`]).
//!
//! Async code awaits a [`Dict`]'s, [`Namespace`]'s, [`Value`]'s and
//! [`List`]'s calls (`d.get_async(&k).await?`, ...), a [`Queue`]'s
//! `get_async` and `put_async` and an [`Event`]'s `wait_async`, with any
//! executor; a waiting call dropped (a timeout, a `select!`) tells the
//! manager at once, and an item already sent to it goes back to the
//! front of its queue ([`Queue::get_async`]). A large value set goes
//! out from where it was encoded, and one of a megabyte or more that a
//! `get_async` reads (or a listing, `items_async`, `to_vec_async`, of a
//! megabyte or more in all) is decoded on a thread of its own, not the
//! executor's. A [`Set`]'s calls are awaited the same way. A [`Lock`],
//! [`Semaphore`] or [`Condition`] is taken as a future
//! (`lock.lock_async().await?`) into a [`HeldAsync`] guard, which keeps
//! the connection that holds it; a condition's `wait_async` takes that
//! guard, and a [`Barrier`]'s party waits with `wait_async`. A dropped
//! acquire or wait leaves nothing held. Thousands of tasks may wait at
//! once: past eight per object, a process's acquires (timed or not),
//! gets and puts wait in line in the process, and its waits on one event
//! share one wait at the manager, so they hold a few connections, not
//! one each.

mod awaited;
mod awaited_cancel;
mod awaited_gate;
mod awaited_hold;
mod awaited_lane;
mod awaited_round;
mod byte_lists;
mod client;
mod lane;
mod payload;
mod protocol;
mod proxy;
mod register;
mod sealed;
mod server;

pub use payload::Payload;
pub use protocol::{KeyHolds, Kind, Op, Reply, Request, Update, MAX_BATCH};
pub use proxy::{
    Acquired, Array, Barrier, Batch, BatchReplies, Condition, Dict, DictItems, DictKeys, Entry,
    Event, Held, HeldAsync, JoinableQueue, List, Lock, Namespace, Nested, Proxy, Queue, Semaphore,
    Set, Shared, Ticket, Value,
};
pub use register::SharedType;
pub use server::ServeOptions;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::net::{Address, AuthError, Listener, NetError};
use crate::pipe::{Connection, Pipe};
use crate::{Process, StartMethod};
use client::Link;
use proxy::{Made, Target};
use register::Registry;

/// How long the server has to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a manager call failed.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// The manager is gone (its process exited or was killed).
    #[error("the manager is gone")]
    Disconnected,
    #[error("the manager did not answer in time")]
    Timeout,
    /// The manager, or what answered at its address, did not share our key.
    #[error("the manager refused us: {0}")]
    Auth(AuthError),
    /// The manager answered with something that is not this protocol.
    #[error("the manager's answer is not understood: {0}")]
    Protocol(String),
    /// The manager could not carry the request out.
    #[error("the manager says: {0}")]
    Server(String),
    /// A barrier broke while (or before) this party waited.
    #[error("the barrier is broken")]
    BrokenBarrier,
    /// A store would pass the manager's byte budget
    /// ([`ServeOptions::max_stored_bytes`]) or this client's share of it;
    /// nothing was stored, and the manager serves on.
    #[error("{0}")]
    OverBudget(String),
    /// A request of `len` bytes is over the manager's largest frame
    /// ([`ServeOptions::max_frame`]): refused before anything was sent.
    #[error("a request of {len} bytes is over the manager's largest frame of {max} bytes (ServeOptions::max_frame)")]
    TooLarge { len: usize, max: usize },
    /// A member or key that is not there (Python's `KeyError`).
    #[error("no such member")]
    NotFound,
    /// A condition's awaited wait or notify was given the guard of another
    /// lock (see [`HeldAsync`]).
    #[error("that guard holds another lock than this condition's")]
    WrongGuard,
    /// A name is taken by an object of another kind, or (opened with
    /// [`Manager::open_as`]) made with other parameters.
    #[error("{0}")]
    WrongKind(String),
    /// A key was added to or removed from a dict while it was iterated
    /// (Python's "dictionary changed size during iteration").
    #[error("the dict changed size during iteration")]
    ChangedDuringIteration,
    #[error("cannot encode or decode a value: {0}")]
    Encode(String),
    #[error("cannot start the manager: {0}")]
    Start(String),
    /// This process could not open what a connection to the manager needs:
    /// it is at its limit of open descriptors (`ulimit -n`) or of the
    /// system's. The manager may be well; the call can be made again once
    /// descriptors are closed.
    #[error("this process cannot connect to the manager: {0}")]
    Local(std::io::Error),
}

/// What the server process is given.
type ServerArgs = (String, Vec<u8>, Registry, ServeOptions, Connection);

/// The manager's server process, when this handle started it.
struct ServerProcess {
    process: Process<ServerArgs, ()>,
    /// Closing it tells the server to stop.
    control: Connection,
    /// The private directory of a local manager's socket.
    dir: Option<PathBuf>,
}

/// How a manager is started: its start method, its address and key, its
/// limits, and the user types it may make.
pub struct ManagerBuilder {
    method: StartMethod,
    address: Option<Address>,
    key: Option<Vec<u8>>,
    options: ServeOptions,
    registry: Registry,
}

impl ManagerBuilder {
    /// How the server process starts (default: [`get_start_method`](crate::get_start_method)).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = method;
        self
    }

    /// Listen at `address` (TCP to be reached from other machines) instead
    /// of a private Unix socket.
    pub fn listen(mut self, address: Address) -> Self {
        self.address = Some(address);
        self
    }

    /// The key clients must prove (default: 32 random bytes, handed to
    /// children inside the proxies).
    pub fn authkey(mut self, key: &[u8]) -> Self {
        self.key = Some(key.to_vec());
        self
    }

    /// The server's limits.
    pub fn options(mut self, options: ServeOptions) -> Self {
        self.options = options;
        self
    }

    /// Lets the manager make `T`s ([`Manager::shared`]).
    pub fn register<T: SharedType>(mut self) -> Self {
        self.registry.add::<T>();
        self
    }

    /// Starts the server process.
    pub fn start(self) -> Result<Manager, ManagerError> {
        let start = |e: &dyn std::fmt::Display| ManagerError::Start(e.to_string());
        let key = match self.key {
            Some(key) if key.is_empty() => return Err(start(&AuthError::EmptyKey)),
            Some(key) => key,
            None => {
                let mut key = vec![0u8; 32];
                crate::os::random::fill(&mut key).map_err(|e| start(&e))?;
                key
            }
        };
        let (address, dir) = match self.address {
            Some(address) => (address, None),
            None => {
                let dir = private_dir().map_err(|e| start(&e))?;
                (Address::Unix(dir.join("manager.sock")), Some(dir))
            }
        };
        let cleanup = |dir: &Option<PathBuf>| {
            if let Some(dir) = dir {
                let _ = std::fs::remove_dir_all(dir);
            }
        };
        let (mut control, theirs) = Pipe::duplex().map_err(|e| start(&e))?;
        let args = (
            address.to_string(),
            key.clone(),
            self.registry,
            self.options,
            theirs,
        );
        let mut process = Process::new(serve_in_child, args)
            .named("manager")
            .start_method(self.method);
        if let Err(e) = process.start() {
            cleanup(&dir);
            return Err(start(&e));
        }
        let bound = match control.recv_timeout::<Result<String, String>>(START_TIMEOUT) {
            Ok(Ok(bound)) => bound,
            Ok(Err(why)) => {
                let _ = process.join_timeout(START_TIMEOUT);
                cleanup(&dir);
                return Err(ManagerError::Start(why));
            }
            Err(e) => {
                let _ = process.kill();
                let _ = process.join_timeout(START_TIMEOUT);
                cleanup(&dir);
                return Err(start(&e));
            }
        };
        Ok(Manager {
            server: Some(ServerProcess {
                process,
                control,
                dir,
            }),
            link: Link {
                address: bound,
                key,
            },
        })
    }
}

/// A manager: a handle on its server, started here ([`start`](Self::start),
/// [`serve`](Self::serve)) or elsewhere ([`connect`](Self::connect)).
/// Dropping one that started its server (or [`shutdown`](Self::shutdown))
/// stops it; proxies then give `Disconnected`.
pub struct Manager {
    server: Option<ServerProcess>,
    link: Link,
}

impl Manager {
    /// Starts a manager's server with the default start method, on a
    /// private Unix socket.
    pub fn start() -> Result<Manager, ManagerError> {
        Manager::builder().start()
    }

    /// Starts a manager's server with `method`.
    pub fn start_with(method: StartMethod) -> Result<Manager, ManagerError> {
        Manager::builder().start_method(method).start()
    }

    /// A manager to configure before it starts.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder {
            method: crate::get_start_method(),
            address: None,
            key: None,
            options: ServeOptions::default(),
            registry: Registry::default(),
        }
    }

    /// Starts a server reachable at `address` (e.g. `0.0.0.0:50000`) by
    /// anyone with `key` (Python's `BaseManager(address, authkey).start()`).
    pub fn serve(address: &Address, key: &[u8]) -> Result<Manager, ManagerError> {
        Manager::builder()
            .listen(address.clone())
            .authkey(key)
            .start()
    }

    /// Reaches a manager served elsewhere (Python's `BaseManager(address,
    /// authkey).connect()`); a wrong key on either side is `Auth`, nobody
    /// there is `Disconnected`.
    pub fn connect(address: &Address, key: &[u8]) -> Result<Manager, ManagerError> {
        let manager = Manager {
            server: None,
            link: Link {
                address: address.to_string(),
                key: key.to_vec(),
            },
        };
        // An empty batch: proves the address, the key and the protocol.
        match manager
            .link
            .call(&Request::Batch(Vec::new()), Some(START_TIMEOUT))?
        {
            Reply::Batch(_) => Ok(manager),
            other => Err(ManagerError::Protocol(format!("{other:?}"))),
        }
    }

    /// Where the server listens (a TCP port 0 resolved).
    pub fn address(&self) -> &str {
        &self.link.address
    }

    /// The key its clients prove (Python's `authkey`): what another
    /// process needs, beside the address, to [`connect`](Self::connect).
    pub fn authkey(&self) -> &[u8] {
        &self.link.key
    }

    fn make<P: Made>(&self, kind: Kind) -> Result<P, ManagerError> {
        let id = self.create(&Request::Create(kind))?;
        Ok(P::made(Target::made_here(self.link.clone(), id)))
    }

    fn target(&self, id: u64) -> Target {
        Target::new(self.link.clone(), id)
    }

    fn create(&self, request: &Request) -> Result<u64, ManagerError> {
        match self.link.call(request, Some(START_TIMEOUT))? {
            Reply::Created(id) => Ok(id),
            Reply::WrongKind(why) => Err(ManagerError::WrongKind(why)),
            other => Err(ManagerError::Protocol(format!("{other:?}"))),
        }
    }

    /// The object called `name`, made (of its default kind: an unbounded
    /// queue, a one-party barrier, a semaphore of 1) if nobody made it yet:
    /// how clients of one manager share objects without passing proxies.
    pub fn open<P: Proxy>(&self, name: &str) -> Result<P, ManagerError> {
        let id = self.create(&Request::Open {
            name: name.to_string(),
            kind: P::default_kind(),
            exact: false,
        })?;
        Ok(P::made(self.target(id)))
    }

    /// [`open`](Self::open), made of `kind` if it does not exist yet; an
    /// existing one made with other parameters (a semaphore of another
    /// value, a queue of another size) is [`ManagerError::WrongKind`].
    pub fn open_as<P: Proxy>(&self, name: &str, kind: Kind) -> Result<P, ManagerError> {
        let id = self.create(&Request::Open {
            name: name.to_string(),
            kind,
            exact: true,
        })?;
        Ok(P::made(self.target(id)))
    }

    /// Operations on several of this manager's objects, sent in one round
    /// trip ([`Batch`]; `Batch::new()` does the same from proxies alone).
    pub fn batch(&self) -> Batch {
        Batch::new()
    }

    /// A new shared namespace (Python's `manager.Namespace()`).
    pub fn namespace(&self) -> Result<Namespace, ManagerError> {
        self.make(Kind::Namespace)
    }

    /// A new shared dict (Python's `manager.dict()`), typed.
    pub fn dict<K, V>(&self) -> Result<Dict<K, V>, ManagerError> {
        self.make(Kind::Dict)
    }

    /// A new shared set (Python's `manager.set()`, 3.14), typed.
    pub fn set<T>(&self) -> Result<Set<T>, ManagerError> {
        self.make(Kind::Set)
    }

    /// A new shared list (Python's `manager.list()`), typed.
    pub fn list<T>(&self) -> Result<List<T>, ManagerError> {
        self.make(Kind::List)
    }

    /// A new lock (Python's `manager.Lock()`): released if its holder's
    /// process dies, the next holder told so.
    pub fn lock(&self) -> Result<Lock, ManagerError> {
        self.make(Kind::Lock)
    }

    /// A new reentrant lock (Python's `manager.RLock()`): its holder may
    /// take it again, and releases it as often.
    pub fn rlock(&self) -> Result<Lock, ManagerError> {
        self.make(Kind::RLock)
    }

    /// Python's `manager.Semaphore(value)`: a count with no owner. A unit
    /// taken by one process may be released by another (a producer counts
    /// what a consumer takes), and one taken by a process that exits or
    /// dies stays taken, as in Python.
    pub fn semaphore(&self, value: u64) -> Result<Semaphore, ManagerError> {
        self.make(Kind::Semaphore {
            value,
            bounded: false,
            owned: false,
        })
    }

    /// Python's `manager.BoundedSemaphore(value)`: a release past `value`
    /// is an error.
    pub fn bounded_semaphore(&self, value: u64) -> Result<Semaphore, ManagerError> {
        self.make(Kind::Semaphore {
            value,
            bounded: true,
            owned: false,
        })
    }

    /// A semaphore whose units are held by the connections that took them
    /// (not in Python): the units a process holds come back when it exits
    /// or dies, and the next taker is told (`previous_owner_died`). For a
    /// pool of `value` resources that a killed holder must not leak.
    pub fn owned_semaphore(&self, value: u64) -> Result<Semaphore, ManagerError> {
        self.make(Kind::Semaphore {
            value,
            bounded: true,
            owned: true,
        })
    }

    /// Python's `manager.Event()`.
    pub fn event(&self) -> Result<Event, ManagerError> {
        self.make(Kind::Event)
    }

    /// Python's `manager.Condition()`, with its own reentrant lock.
    pub fn condition(&self) -> Result<Condition, ManagerError> {
        self.make(Kind::Condition)
    }

    /// Python's `manager.Barrier(parties)`.
    pub fn barrier(&self, parties: u64) -> Result<Barrier, ManagerError> {
        self.make(Kind::Barrier { parties })
    }

    /// Python's `manager.Queue()`, unbounded.
    pub fn queue<T>(&self) -> Result<Queue<T>, ManagerError> {
        self.bounded_queue(0)
    }

    /// Python's `manager.Queue(maxsize)` (0: unbounded).
    pub fn bounded_queue<T>(&self, maxsize: u64) -> Result<Queue<T>, ManagerError> {
        self.make(Kind::Queue {
            maxsize,
            joinable: false,
        })
    }

    /// Python's `manager.JoinableQueue()`.
    pub fn joinable_queue<T>(&self) -> Result<JoinableQueue<T>, ManagerError> {
        self.make(Kind::Queue {
            maxsize: 0,
            joinable: true,
        })
    }

    /// Python's `manager.Value(typecode, value)`, typed.
    pub fn value<T: Serialize>(&self, value: &T) -> Result<Value<T>, ManagerError> {
        self.make(Kind::Value(proxy::encode(value)?))
    }

    /// Python's `manager.Array(typecode, items)`, typed: its length is fixed.
    pub fn array<T: Serialize>(&self, items: &[T]) -> Result<Array<T>, ManagerError> {
        let items = items.iter().map(proxy::encode).collect::<Result<_, _>>()?;
        self.make(Kind::Array(items))
    }

    /// A new `T` on the server, from `state` (`T` registered with
    /// [`ManagerBuilder::register`]).
    pub fn shared<T: SharedType>(&self, state: &T) -> Result<Shared<T>, ManagerError> {
        let kind = Self::user_kind(state)?;
        let id = self.create(&Request::Create(kind))?;
        Ok(Shared::new(Target::made_here(self.link.clone(), id)))
    }

    /// How many objects the manager keeps now (Python's
    /// `_number_of_objects()`): one made anonymously goes when no process
    /// holds a proxy to it any more; a named one stays until deleted.
    pub fn object_count(&self) -> Result<u64, ManagerError> {
        match self.link.call(&Request::Objects, Some(START_TIMEOUT))? {
            Reply::Len(n) => Ok(n),
            other => Err(ManagerError::Protocol(format!("{other:?}"))),
        }
    }

    /// Frees the object called `name` (a named object otherwise lives as
    /// long as the manager): whether there was one. Proxies to it left
    /// anywhere get an error in words.
    pub fn delete(&self, name: &str) -> Result<bool, ManagerError> {
        match self
            .link
            .call(&Request::Delete(name.to_string()), Some(START_TIMEOUT))?
        {
            Reply::Bool(b) => Ok(b),
            other => Err(ManagerError::Protocol(format!("{other:?}"))),
        }
    }

    /// The `T` called `name`, made from `state` if nobody made it yet.
    pub fn open_shared<T: SharedType>(
        &self,
        name: &str,
        state: &T,
    ) -> Result<Shared<T>, ManagerError> {
        let id = self.create(&Request::Open {
            name: name.to_string(),
            kind: Self::user_kind(state)?,
            exact: false,
        })?;
        Ok(Shared::new(self.target(id)))
    }

    fn user_kind<T: SharedType>(state: &T) -> Result<Kind, ManagerError> {
        Ok(Kind::User {
            type_name: T::NAME.to_string(),
            state: proxy::encode(state)?,
        })
    }

    /// The server's pid, if this handle started it.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().and_then(|s| s.process.pid())
    }

    /// Stops the server (if this handle started it) and removes its socket.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        // Closing the control pipe asks it to stop; a server that does not
        // within a moment is killed.
        drop(server.control);
        if server.process.join_timeout(Duration::from_secs(2)).is_err() {
            let _ = server.process.kill();
            let _ = server.process.join_timeout(Duration::from_secs(5));
        }
        if let Some(dir) = &server.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        client::forget(&self.link);
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the server process runs: binds, says where (or why not) on the
/// control pipe, serves until that pipe closes.
fn serve_in_child((address, key, registry, options, mut control): ServerArgs) {
    // A terminal's Ctrl-C reaches the whole process group: the program may
    // catch it and still want its objects (save, then stop). The server
    // goes when the program does, or when told (Python's, since bpo-36368).
    let _ = crate::os::signals::ignore(libc::SIGINT);
    // Each client holds a socket and its lane's doorbell and spill port,
    // and each large value kept a memfd: a soft limit of 1,024 is reached
    // well before `max_clients`. The server's own process only.
    let _ = crate::os::limits::raise_open_files();
    let bound = address
        .parse::<Address>()
        .map_err(|e| e.to_string())
        .and_then(|a| Listener::bind(&a, &key).map_err(|e| e.to_string()));
    match bound {
        Ok(listener) => {
            if control
                .send(&Ok::<String, String>(listener.address().to_string()))
                .is_ok()
            {
                server::run(listener, registry, options, Some(control));
            }
        }
        Err(why) => {
            let _ = control.send(&Err::<String, String>(why));
        }
    }
}

/// Serves a manager in this process until it is killed: the standalone
/// server (`supervisor manager serve`). No user types: a standalone
/// server holds the built-in objects only.
pub fn serve_forever(address: &Address, key: &[u8], options: ServeOptions) -> Result<(), NetError> {
    let listener = Listener::bind(address, key)?;
    if options.log {
        crate::os::stderr::line(format_args!(
            "manager[{}]: listening on {}",
            std::process::id(),
            listener.address()
        ));
    }
    server::run(listener, Registry::default(), options, None);
    Ok(())
}

/// A fresh directory only this user can enter, for the manager's socket.
fn private_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let mut tag = [0u8; 8];
    crate::os::random::fill(&mut tag)?;
    let name: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    let dir = base.join(format!("ipc-manager-{}-{name}", std::process::id()));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}
