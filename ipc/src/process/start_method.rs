//! How children are created, and the program's default: Python's
//! `set_start_method`, `get_start_method` and `get_all_start_methods`.
//!
//! The default is read when a [`Process`](super::Process) starts without a
//! method of its own, and when a `Pool`, a `Manager` or a supervisor is
//! configured. Reading it fixes it, as in Python: set it once, first thing in
//! `main`, or not at all.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};

/// How a child process is created.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum StartMethod {
    /// A copy of this process calls the entry directly: fastest, but refused
    /// while other threads exist.
    Fork,
    /// A fresh exec of this binary, which runs only the entry (taken over
    /// before `main`; see [`crate::init`]).
    Spawn,
    /// The default (as in Python 3.14 on Linux): a small single-threaded
    /// server, an exec of this binary started once, forks each child: safe
    /// in a program with threads (a test harness, an async runtime), nearly
    /// as fast as fork. See [`crate::forkserver`].
    #[default]
    ForkServer,
}

impl StartMethod {
    /// Every method, in Python's spelling order.
    pub const ALL: [StartMethod; 3] = [
        StartMethod::Fork,
        StartMethod::Spawn,
        StartMethod::ForkServer,
    ];

    /// Python's name for it: `fork`, `spawn`, `forkserver`.
    pub fn name(self) -> &'static str {
        match self {
            StartMethod::Fork => "fork",
            StartMethod::Spawn => "spawn",
            StartMethod::ForkServer => "forkserver",
        }
    }

    fn code(self) -> u8 {
        match self {
            StartMethod::Fork => 1,
            StartMethod::Spawn => 2,
            StartMethod::ForkServer => 3,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        StartMethod::ALL.into_iter().find(|m| m.code() == code)
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a start method.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a start method (fork, spawn, forkserver)")]
pub struct UnknownStartMethod(pub String);

impl FromStr for StartMethod {
    type Err = UnknownStartMethod;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StartMethod::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| UnknownStartMethod(s.to_string()))
    }
}

/// The default was already set (or read, which fixes it), as Python's
/// `RuntimeError('context has already been set')`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the start method was already set to {current} (force_start_method replaces it)")]
pub struct StartMethodAlreadySet {
    pub current: StartMethod,
}

/// 0 while unset, else a method's code.
static DEFAULT: AtomicU8 = AtomicU8::new(0);

/// Sets the program's default start method, once (Python's
/// `multiprocessing.set_start_method`). A second call, or a call after the
/// default was read, is an error that names the method in force.
pub fn set_start_method(method: StartMethod) -> Result<(), StartMethodAlreadySet> {
    match DEFAULT.compare_exchange(0, method.code(), Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Ok(()),
        Err(code) => Err(StartMethodAlreadySet {
            current: StartMethod::from_code(code).unwrap_or_default(),
        }),
    }
}

/// Replaces the default whatever it was (Python's `force=True`).
pub fn force_start_method(method: StartMethod) {
    DEFAULT.store(method.code(), Ordering::Release);
}

/// The program's default start method, fixed from now on (Python's
/// `get_start_method()`): the one set, else [`StartMethod::ForkServer`],
/// which works whether or not the program has threads.
pub fn get_start_method() -> StartMethod {
    let _ = DEFAULT.compare_exchange(
        0,
        StartMethod::ForkServer.code(),
        Ordering::AcqRel,
        Ordering::Acquire,
    );
    StartMethod::from_code(DEFAULT.load(Ordering::Acquire)).unwrap_or_default()
}

/// Every start method this platform has, the default first (Python's
/// `get_all_start_methods()`). Does not fix the default.
pub fn get_all_start_methods() -> Vec<StartMethod> {
    let default = StartMethod::from_code(DEFAULT.load(Ordering::Acquire)).unwrap_or_default();
    let mut all = vec![default];
    all.extend(StartMethod::ALL.into_iter().filter(|&m| m != default));
    all
}
