//! Python's `multiprocessing.Manager`: shared objects that live in a
//! server process, reached through typed proxies from any process that
//! has one (a proxy is a `Process` argument like any other, in fork and
//! spawn children alike).
//!
//! ```
//! use ipc::manager::{Manager, Namespace};
//!
//! fn count(ns: Namespace) -> i64 {
//!     for _ in 0..100 {
//!         ns.fetch_add("count", 1).unwrap();
//!     }
//!     0
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! ipc::init();
//! let manager = Manager::start()?;
//! let ns = manager.namespace()?;
//! let mut children: Vec<_> = (0..3).map(|_| ipc::Process::new(count, ns.clone())).collect();
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
//! Atomic updates happen on the server (`fetch_add`), so the two classic
//! Python races have a correct answer. A manager [`Lock`] whose holder's
//! process dies is released, and the next holder is told
//! ([`Acquired::previous_owner_died`]); waits for it have deadlines the
//! server keeps. When the server dies, every call
//! is [`ManagerError::Disconnected`] at once, never a hang. The server
//! listens on a Unix socket in a directory only this user can enter, and
//! every connection proves the manager's random key (see [`crate::net`]).

mod client;
mod protocol;
mod proxy;
mod server;

pub use protocol::{Kind, Op, Reply, Request};
pub use proxy::{Acquired, Dict, List, Lock, Namespace};

use std::path::PathBuf;
use std::time::Duration;

use crate::net::AuthError;
use crate::pipe::{Connection, Pipe};
use crate::{Process, StartMethod};
use client::Link;

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
    #[error("cannot encode or decode a value: {0}")]
    Encode(String),
    #[error("cannot start the manager: {0}")]
    Start(String),
}

/// A running manager: its server process and where to reach it. Dropping
/// it (or [`shutdown`](Self::shutdown)) stops the server; proxies then
/// give `Disconnected`.
pub struct Manager {
    process: Process<(PathBuf, Vec<u8>, Connection), ()>,
    dir: PathBuf,
    link: Link,
}

impl Manager {
    /// Starts a manager's server by fork.
    pub fn start() -> Result<Manager, ManagerError> {
        Manager::start_with(StartMethod::Fork)
    }

    /// Starts a manager's server with `method`.
    pub fn start_with(method: StartMethod) -> Result<Manager, ManagerError> {
        let start = |e: &dyn std::fmt::Display| ManagerError::Start(e.to_string());
        let mut key = vec![0u8; 32];
        crate::os::random::fill(&mut key).map_err(|e| start(&e))?;
        let dir = private_dir().map_err(|e| start(&e))?;
        let path = dir.join("manager.sock");
        let (mut ours, theirs) = Pipe::duplex().map_err(|e| start(&e))?;
        let mut process = Process::new(server::serve, (path.clone(), key.clone(), theirs))
            .named("manager")
            .start_method(method);
        let cleanup = |dir: &PathBuf| {
            let _ = std::fs::remove_dir_all(dir);
        };
        if let Err(e) = process.start() {
            cleanup(&dir);
            return Err(start(&e));
        }
        match ours.recv_timeout::<bool>(START_TIMEOUT) {
            Ok(true) => {}
            Ok(false) => {
                cleanup(&dir);
                return Err(ManagerError::Start("the server cannot listen".into()));
            }
            Err(e) => {
                let _ = process.kill();
                cleanup(&dir);
                return Err(start(&e));
            }
        }
        Ok(Manager {
            process,
            dir,
            link: Link {
                address: format!("unix:{}", path.display()),
                key,
            },
        })
    }

    /// A new shared namespace (Python's `manager.Namespace()`).
    pub fn namespace(&self) -> Result<Namespace, ManagerError> {
        Ok(Namespace::new(
            self.link.clone(),
            self.create(Kind::Namespace)?,
        ))
    }

    /// A new shared dict (Python's `manager.dict()`), typed.
    pub fn dict<K, V>(&self) -> Result<Dict<K, V>, ManagerError> {
        Ok(Dict::new(self.link.clone(), self.create(Kind::Dict)?))
    }

    /// A new shared list (Python's `manager.list()`), typed.
    pub fn list<T>(&self) -> Result<List<T>, ManagerError> {
        Ok(List::new(self.link.clone(), self.create(Kind::List)?))
    }

    /// A new lock (Python's `manager.Lock()`): released if its holder's
    /// process dies, the next holder told so.
    pub fn lock(&self) -> Result<Lock, ManagerError> {
        Ok(Lock::new(self.link.clone(), self.create(Kind::Lock)?))
    }

    /// A new reentrant lock (Python's `manager.RLock()`): its holder may
    /// take it again, and releases it as often.
    pub fn rlock(&self) -> Result<Lock, ManagerError> {
        Ok(Lock::new(self.link.clone(), self.create(Kind::RLock)?))
    }

    fn create(&self, kind: Kind) -> Result<u64, ManagerError> {
        match self
            .link
            .call(&Request::Create(kind), Some(START_TIMEOUT))?
        {
            Reply::Created(id) => Ok(id),
            other => Err(ManagerError::Protocol(format!("{other:?}"))),
        }
    }

    /// The server's pid.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Stops the server and removes its socket.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.join_timeout(Duration::from_secs(5));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.stop();
    }
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
