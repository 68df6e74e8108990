//! [`Pool`]: Python's `multiprocessing.Pool` and `ProcessPoolExecutor` for
//! plain Rust functions, on the supervisor's engine: the same ledger,
//! restart policy and heartbeats as the `supervisor` binary. A worker
//! killed by anything: its items run again on a replacement. An item that
//! killed `max_attempts` workers: an error for that item alone. A panic: an
//! error for that item, with its message and location. No call hangs on a
//! dead worker.
//!
//! ```
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = outlast::pool::Pool::new(2)?;
//! assert_eq!(pool.map(square, [1, 2, 3])?, [1, 4, 9]);
//! # Ok(())
//! # }
//! ```
//!
//! The pool has a thread of its own, which hands items to workers, takes
//! their results and replaces workers that die: results arrive while the
//! caller does something else. A `Pool` is a handle, `Send + Sync` and
//! cheap to clone: share it between threads, move it into
//! `spawn_blocking`, `.await` an item's [`AsyncResult`], which is a
//! [`std::future::Future`] under any executor, or await a lazy map's
//! results one by one ([`Imap::next_async`], [`ImapUnordered::next_async`]).
//!
//! # Sizes
//!
//! Items and results may be as large as memory allows: what fits a
//! worker's ring (about 1 MiB) goes through it, anything larger in a sealed
//! memfd. [`PoolBuilder::max_message_bytes`] (1 GiB by default) caps what
//! a worker may send back; an item or result over it is that item's
//! [`TaskError::TooLarge`], after one attempt. A `Vec<u8>`, `Vec<i8>`,
//! `Vec<f32>` or `Vec<f64>` anywhere in an item or result is copied whole,
//! even in a debug build (serde alone would hand it over element by
//! element).
//!
//! # Errors
//!
//! A function that returns `std::io::Result<R>` or `anyhow::Result<R>`
//! cannot go to [`map`](Pool::map) (its error is not a serde type): give
//! it to [`try_map`](Pool::try_map), [`try_imap`](Pool::try_imap),
//! [`try_imap_unordered`](Pool::try_imap_unordered),
//! [`try_apply_async`](Pool::try_apply_async) or
//! [`try_map_async`](Pool::try_map_async). An `Err` it returns is that
//! item's [`TaskError::Returned`], with the error's text (`{:#}`: an
//! anyhow error's causes too); a panic is [`TaskError::Panicked`].
//!
//! # Closures
//!
//! The function runs in another process, so it is a plain `fn`: a closure
//! that captures does not coerce to one. Pass what it would capture with
//! each item ([`starmap`](Pool::starmap) over `(x, factor)` pairs), or once
//! per worker with [`PoolBuilder::initializer`] into a `thread_local!`:
//!
//! ```
//! use std::cell::Cell;
//! thread_local! { static FACTOR: Cell<u64> = const { Cell::new(1) }; }
//!
//! fn set_factor(f: u64) { FACTOR.with(|c| c.set(f)); }
//! fn scale(x: u64) -> u64 { x * FACTOR.with(Cell::get) }
//! fn scale_by((x, f): (u64, u64)) -> u64 { x * f }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = outlast::pool::Pool::builder(2).initializer(set_factor, 10).build()?;
//! assert_eq!(pool.map(scale, [1, 2, 3])?, [10, 20, 30]);
//! assert_eq!(pool.map(scale_by, [(1, 5), (2, 5)])?, [5, 10]);
//! # Ok(())
//! # }
//! ```
//!
//! A pool leaves the process's signals alone: Ctrl-C ends the program as
//! usual, and its workers die with it (they ignore SIGINT and get SIGKILL
//! when their parent dies).

mod call;
mod error;
mod handles;
mod imap;
mod imap_future;
mod init;
mod map_result;
mod offload;
mod shared;
mod store;
mod stream;
mod taken;

pub use error::{PoolError, TaskError};
pub use handles::{as_completed, wait, AsCompleted, AsyncResult, Future, ReturnWhen};
pub use imap::{Imap, ImapUnordered};
pub use imap_future::{ImapNext, ImapUnorderedNext};
pub use map_result::MapResult;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use outlast_ipc::StartMethod;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::options::RunOptions;
use call::{Call, Reply};
use init::InitCall;
use shared::{Command, Inner, State};
use store::{Encoded, Settled, Store};
use stream::StreamId;

/// How to build a [`Pool`].
pub struct PoolBuilder {
    workers: u32,
    options: RunOptions,
    init: Option<InitCall>,
    chunksize: Option<usize>,
}

impl PoolBuilder {
    /// Runs `f(args)` once in every worker before its first item,
    /// replacements included (Python's `initializer`, `initargs`). Handles
    /// in `args` (a `Value`, a `Queue`, a `Lock`) reach every worker, as
    /// they reach a `Process`; the pool keeps `args` while it lives.
    pub fn initializer<A>(mut self, f: fn(A), args: A) -> Self
    where
        A: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        self.init = Some(InitCall::new(f, args));
        self
    }

    /// Replaces a worker after this many items (Python's
    /// `maxtasksperchild`). Items go to workers one at a time then (a
    /// chunk of several would overshoot the count). 0 is refused at
    /// [`build`](Self::build), as Python refuses it.
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.options.max_tasks_per_child = Some(n);
        self
    }

    /// How workers start (default: [`outlast_ipc::get_start_method`], which
    /// is forkserver unless the program set another).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.options.start_method = method;
        self
    }

    /// Stops the pool when more than `n` workers crash within `window`
    /// (default: 20 within 10 s), so a function that kills every worker at
    /// start ends in [`PoolError::Stopped`] instead of a crash loop.
    pub fn max_restarts(mut self, n: u32, window: Duration) -> Self {
        self.options.max_restarts = n;
        self.options.restart_window = window;
        self
    }

    /// Lets the fork start method copy a process that has other threads,
    /// such as a `#[test]` under the default test harness (see
    /// [`RunOptions::allow_threads`]). Without it, asking for fork in a
    /// process with threads fails at [`build`](Self::build).
    pub fn allow_threads(mut self, allow: bool) -> Self {
        self.options.allow_threads = allow;
        self
    }

    /// The largest item or result, in bytes (default 1 GiB, as
    /// [`DEFAULT_MAX_MESSAGE_BYTES`](crate::DEFAULT_MAX_MESSAGE_BYTES)).
    /// One over it is that item's [`TaskError::TooLarge`], at once and
    /// after one attempt; the others are unaffected. Items and results of
    /// any size up to it work: those over about 1 MiB travel in a sealed
    /// memfd instead of the worker's ring.
    pub fn max_message_bytes(mut self, bytes: u64) -> Self {
        self.options.max_message_bytes = bytes;
        self
    }

    /// Workers an item may kill (or hang) before it is given up on (default 3).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.options.max_attempts = n.max(1);
        self
    }

    /// A worker stopped this long (`SIGSTOP`) while it runs an item, or
    /// silent this long between items, is killed and replaced,
    /// and its item charged an attempt (default 30 s). An item itself may
    /// run as long as it needs, as in Python's `Pool`: bound it with
    /// [`item_timeout`](Self::item_timeout).
    pub fn worker_timeout(mut self, timeout: Duration) -> Self {
        self.options.worker_timeout = timeout;
        self
    }

    /// An item still running after `timeout` (for a chunk of small items:
    /// 64 items in a row) has its worker killed and replaced, and is
    /// charged an attempt, as if it had killed the worker: after
    /// `max_attempts` it is that item's `TaskError::WorkerDied`. This is
    /// also the worker timeout. Default: none; an item runs as long as it
    /// needs.
    pub fn item_timeout(mut self, timeout: Duration) -> Self {
        self.options.worker_timeout = timeout;
        self.options.long_tasks_allowed = false;
        self
    }

    /// Items per task sent to a worker (Python's `chunksize`). Default:
    /// adaptive, from 1 up to what keeps a worker busy for about 2 ms (at
    /// most 4096). 1 balances long items best. Progress and errors are per
    /// item whatever the chunk size.
    pub fn chunksize(mut self, n: usize) -> Self {
        self.chunksize = Some(n.clamp(1, store::MAX_CHUNK));
        self
    }

    /// A progress bar of items done, with items/s, and a line per worker
    /// lost and replaced (on a terminal only; default off).
    pub fn progress(mut self, on: bool) -> Self {
        self.options.quiet = !on;
        self
    }

    /// Starts the pool's thread and its workers.
    pub fn build(self) -> Result<Pool, PoolError> {
        if self.workers == 0 {
            return Err(PoolError::Start(crate::run::RunError::NoWorkers));
        }
        let init = self.init;
        let mut options = self.options;
        let mut chunksize = self.chunksize;
        if let Some(n) = options.max_tasks_per_child {
            if n == 0 {
                return Err(PoolError::InvalidOption(
                    "max_tasks_per_child must be at least 1".into(),
                ));
            }
            // The engine counts tasks; a task is then one item.
            chunksize = Some(1);
        }
        // Checked here, on the caller's thread: the pool's own thread
        // forks workers while this one waits in a call or runs on.
        crate::run::refuse_fork_with_threads(&options)?;
        if options.start_method == StartMethod::Fork {
            options.allow_threads = true;
        }
        let (inner, thread) = shared::start(shared::Start {
            options,
            init,
            workers: self.workers,
            chunksize,
        })?;
        Ok(Pool {
            shared: Arc::new(Shared {
                inner,
                thread: Mutex::new(Some(thread)),
                workers: self.workers as usize,
                next_stream: AtomicU64::new(0),
            }),
        })
    }
}

/// A pool of worker processes running plain `fn(T) -> R` functions.
///
/// A handle: `Send + Sync`, cheap to clone, shared by every clone and by
/// the results it gave. When the last one goes, the workers are killed and
/// reaped (see [`close`](Self::close) and [`join`](Self::join) to let them
/// finish first).
#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    inner: Arc<Inner>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    workers: usize,
    next_stream: AtomicU64,
}

impl Shared {
    /// Items a lazy stream keeps in flight: every worker's open chunks at
    /// the largest chunk size, twice (it refills at half).
    fn window(&self) -> usize {
        (self.workers * 2 * store::OPEN_PER_WORKER * store::MAX_CHUNK).max(1024)
    }

    /// Waits for the pool's thread to end (not from that thread itself).
    fn join_thread(&self) {
        if shared::on_pool_thread() {
            return;
        }
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.inner.command(Command::Terminate);
        self.join_thread();
    }
}

impl Pool {
    /// `n` workers, started now, with the defaults (forkserver, 3 attempts, 30 s
    /// worker timeout, adaptive chunks).
    pub fn new(n: u32) -> Result<Pool, PoolError> {
        Pool::builder(n).build()
    }

    /// One worker per CPU this process may use (Python's `Pool()`, which
    /// uses `os.process_cpu_count()`): see [`cpu_count`].
    pub fn per_cpu() -> Result<Pool, PoolError> {
        Pool::builder(cpu_count()).build()
    }

    /// A pool of `n` workers to set up first.
    pub fn builder(n: u32) -> PoolBuilder {
        PoolBuilder {
            workers: n,
            options: RunOptions {
                quiet: true,
                handle_signals: false,
                // Tasks are chunks: a worker holding more than its share
                // would leave the others idle.
                max_window: Some(store::OPEN_PER_WORKER),
                // An item may run for minutes, as in Python's Pool.
                long_tasks_allowed: true,
                ..RunOptions::default()
            },
            init: None,
            chunksize: None,
        }
    }

    /// `[f(x) for x in items]`, in order. The first item that failed is
    /// the error (every other item still ran); see [`imap`](Self::imap) for
    /// each item's own outcome.
    pub fn map<T, R>(
        &self,
        f: fn(T) -> R,
        items: impl IntoIterator<Item = T>,
    ) -> Result<Vec<R>, PoolError>
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.map_call(Call::one(f), items)
    }

    /// `[f(a, b) for (a, b) in items]`, in order.
    pub fn starmap<A, B, R>(
        &self,
        f: fn(A, B) -> R,
        items: impl IntoIterator<Item = (A, B)>,
    ) -> Result<Vec<R>, PoolError>
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.map_call(Call::two(f), items)
    }

    /// `[f(a) for (a,) in items]`: `starmap` over 1-tuples.
    pub fn starmap1<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = (A,)>,
    ) -> Result<Vec<R>, PoolError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.map_call(Call::star_one(f), items)
    }

    /// `[f(a, b, c) for (a, b, c) in items]`, in order.
    pub fn starmap3<A, B, C, R>(
        &self,
        f: fn(A, B, C) -> R,
        items: impl IntoIterator<Item = (A, B, C)>,
    ) -> Result<Vec<R>, PoolError>
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        C: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.map_call(Call::three(f), items)
    }

    /// `starmap` over 4-tuples.
    pub fn starmap4<A, B, C, D, R>(
        &self,
        f: fn(A, B, C, D) -> R,
        items: impl IntoIterator<Item = (A, B, C, D)>,
    ) -> Result<Vec<R>, PoolError>
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        C: Serialize + DeserializeOwned,
        D: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.map_call(Call::four(f), items)
    }

    /// `starmap` over 5-tuples.
    pub fn starmap5<A, B, C, D, E, R>(
        &self,
        f: fn(A, B, C, D, E) -> R,
        items: impl IntoIterator<Item = (A, B, C, D, E)>,
    ) -> Result<Vec<R>, PoolError>
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        C: Serialize + DeserializeOwned,
        D: Serialize + DeserializeOwned,
        E: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.map_call(Call::five(f), items)
    }

    /// `starmap` over 6-tuples.
    #[allow(clippy::type_complexity)]
    pub fn starmap6<A, B, C, D, E, F, R>(
        &self,
        f: fn(A, B, C, D, E, F) -> R,
        items: impl IntoIterator<Item = (A, B, C, D, E, F)>,
    ) -> Result<Vec<R>, PoolError>
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        C: Serialize + DeserializeOwned,
        D: Serialize + DeserializeOwned,
        E: Serialize + DeserializeOwned,
        F: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.map_call(Call::six(f), items)
    }

    /// [`map`](Self::map) of a fallible function, such as one that returns
    /// `std::io::Result<R>` or `anyhow::Result<R>` (whose errors cannot
    /// travel between processes as they are): the first item whose call
    /// returned `Err`, in input order, is the error, as
    /// [`TaskError::Returned`] with the error's text (every other item still
    /// ran), as an exception raised in a worker is Python's.
    ///
    /// ```
    /// use outlast::pool::{Pool, PoolError, TaskError};
    ///
    /// fn file_len(path: String) -> std::io::Result<u64> {
    ///     Ok(std::fs::metadata(path)?.len())
    /// }
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = Pool::new(2)?;
    /// let lens = pool.try_map(file_len, ["/proc/self/status".to_string()])?;
    /// assert_eq!(lens.len(), 1);
    /// match pool.try_map(file_len, ["/etc".into(), "/no/such/file".into()]) {
    ///     Err(PoolError::Task { index: 1, error: TaskError::Returned(why) }) => {
    ///         assert!(why.contains("No such file"), "{why}")
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_map<T, R, E>(
        &self,
        f: fn(T) -> Result<R, E>,
        items: impl IntoIterator<Item = T>,
    ) -> Result<Vec<R>, PoolError>
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        E: std::fmt::Display,
    {
        self.map_call(Call::fallible(f), items)
    }

    /// A map is an [`Imap`] collected: items are encoded while workers
    /// run the ones before, and memory holds only the window and results.
    fn map_call<T: Serialize, R: DeserializeOwned>(
        &self,
        call: Call,
        items: impl IntoIterator<Item = T>,
    ) -> Result<Vec<R>, PoolError> {
        // The call itself is refused, as Python's "Pool not running".
        if self.state().closed {
            return Err(PoolError::Closed);
        }
        let items = items.into_iter();
        let mut out = Vec::with_capacity(items.size_hint().0);
        let mut failed = None;
        let mut index = 0;
        Imap::new(self.clone(), call, items).for_each_result(|result| {
            match result {
                Ok(value) => out.push(value),
                Err(error) if failed.is_none() => failed = Some(PoolError::Task { index, error }),
                Err(_) => {}
            }
            index += 1;
        });
        match failed {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// `map_async(f, items)`: every item is encoded and submitted now (as
    /// Python's `map_async` lists its input first); the handle gives the
    /// whole list later, as [`map`](Self::map) would, with a timeout if
    /// asked ([`MapResult::get_timeout`]) or awaited. For an input too
    /// large to hold, or endless, [`imap`](Self::imap) takes it lazily.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = outlast::pool::Pool::new(2)?;
    /// let squares = pool.map_async(square, 0..1000)?;
    /// // ... something else meanwhile ...
    /// let all = squares.get_timeout(Duration::from_secs(60))?;
    /// assert_eq!(all[999], 998_001);
    /// # Ok(())
    /// # }
    /// ```
    pub fn map_async<T, R>(
        &self,
        f: fn(T) -> R,
        items: impl IntoIterator<Item = T>,
    ) -> Result<MapResult<R>, PoolError>
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        MapResult::submit(self, Call::one(f), items)
    }

    /// [`map_async`](Self::map_async) of a fallible function (see
    /// [`try_map`](Self::try_map)).
    pub fn try_map_async<T, R, E>(
        &self,
        f: fn(T) -> Result<R, E>,
        items: impl IntoIterator<Item = T>,
    ) -> Result<MapResult<R>, PoolError>
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        E: std::fmt::Display,
    {
        MapResult::submit(self, Call::fallible(f), items)
    }

    /// `starmap_async(f, pairs)`: [`map_async`](Self::map_async) of a
    /// two-argument function over pairs.
    pub fn starmap_async<A, B, R>(
        &self,
        f: fn(A, B) -> R,
        items: impl IntoIterator<Item = (A, B)>,
    ) -> Result<MapResult<R>, PoolError>
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        MapResult::submit(self, Call::two(f), items)
    }

    /// `map_async(f, items, callback=..., error_callback=...)`: once every
    /// item is settled, `callback` gets the whole list or `error_callback`
    /// the first failed item's error, exactly one of them, once, on the
    /// pool's thread (see [`AsyncResult::add_done_callback`]).
    pub fn map_async_with<T, R>(
        &self,
        f: fn(T) -> R,
        items: impl IntoIterator<Item = T>,
        callback: impl FnOnce(Vec<R>) + Send + 'static,
        error_callback: impl FnOnce(PoolError) + Send + 'static,
    ) -> Result<MapResult<R>, PoolError>
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        let result = self.map_async(f, items)?;
        result.when_done(move |done| match done.collect() {
            Ok(values) => callback(values),
            Err(e) => error_callback(e),
        });
        Ok(result)
    }

    /// `f(arg)` in a worker, waiting for it.
    pub fn apply<T, R>(&self, f: fn(T) -> R, arg: T) -> Result<R, PoolError>
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.apply_async(f, arg)?.get()
    }

    /// `f(arg)` in a worker; the handle gives the result later.
    pub fn apply_async<T, R>(&self, f: fn(T) -> R, arg: T) -> Result<AsyncResult<R>, PoolError>
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let mut input = Encoded::default();
        input.push(&arg).map_err(PoolError::Encode)?;
        let id = self.submit_items(Call::one(f), input, None)?;
        Ok(AsyncResult::new(self.clone(), id))
    }

    /// `apply_async(f, (arg,), callback=..., error_callback=...)`: `f(arg)`
    /// in a worker; once it is settled, `callback` gets its value or
    /// `error_callback` its error, exactly one of them, once, on the pool's
    /// thread (see [`AsyncResult::add_done_callback`]).
    pub fn apply_async_with<T, R>(
        &self,
        f: fn(T) -> R,
        arg: T,
        callback: impl FnOnce(R) + Send + 'static,
        error_callback: impl FnOnce(PoolError) + Send + 'static,
    ) -> Result<AsyncResult<R>, PoolError>
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        let result = self.apply_async(f, arg)?;
        result.add_done_callback(move |done| match done.get() {
            Ok(value) => callback(value),
            Err(e) => error_callback(e),
        });
        Ok(result)
    }

    /// [`apply_async`](Self::apply_async) of a fallible function (see
    /// [`try_map`](Self::try_map)): an `Err` it returns is the result's
    /// [`TaskError::Returned`].
    pub fn try_apply_async<T, R, E>(
        &self,
        f: fn(T) -> Result<R, E>,
        arg: T,
    ) -> Result<AsyncResult<R>, PoolError>
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        E: std::fmt::Display,
    {
        let mut input = Encoded::default();
        input.push(&arg).map_err(PoolError::Encode)?;
        let id = self.submit_items(Call::fallible(f), input, None)?;
        Ok(AsyncResult::new(self.clone(), id))
    }

    /// `ProcessPoolExecutor.submit`: the same as [`apply_async`](Self::apply_async).
    pub fn submit<T, R>(&self, f: fn(T) -> R, arg: T) -> Result<Future<R>, PoolError>
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.apply_async(f, arg)
    }

    /// `f(x)` for each item, in order, lazily: items are taken from `items`
    /// as workers free up, with a bounded number in flight (and at most
    /// about 256 MiB of them, or of their results, beyond two per
    /// worker), so an endless iterator works in bounded memory. Items
    /// whose results would lie more than about 64 MiB past the one read
    /// next wait for the reader, until [`close`](Self::close). Dropped
    /// before its end, the map drops its items that no worker started.
    pub fn imap<T, R, I>(&self, f: fn(T) -> R, items: I) -> Imap<T, R, I::IntoIter>
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = T>,
    {
        Imap::new(self.clone(), Call::one(f), items.into_iter())
    }

    /// [`imap`](Self::imap) of a fallible function (see
    /// [`try_map`](Self::try_map)): an item whose call returned `Err` is
    /// `Err(TaskError::Returned(..))`.
    pub fn try_imap<T, R, E, I>(
        &self,
        f: fn(T) -> Result<R, E>,
        items: I,
    ) -> Imap<T, R, I::IntoIter>
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        E: std::fmt::Display,
        I: IntoIterator<Item = T>,
    {
        Imap::new(self.clone(), Call::fallible(f), items.into_iter())
    }

    /// [`imap_unordered`](Self::imap_unordered) of a fallible function
    /// (see [`try_imap`](Self::try_imap)).
    pub fn try_imap_unordered<T, R, E, I>(
        &self,
        f: fn(T) -> Result<R, E>,
        items: I,
    ) -> ImapUnordered<T, R, I::IntoIter>
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        E: std::fmt::Display,
        I: IntoIterator<Item = T>,
    {
        ImapUnordered::new(self.clone(), Call::fallible(f), items.into_iter())
    }

    /// As [`imap`](Self::imap), in the order items finish.
    pub fn imap_unordered<T, R, I>(
        &self,
        f: fn(T) -> R,
        items: I,
    ) -> ImapUnordered<T, R, I::IntoIter>
    where
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = T>,
    {
        ImapUnordered::new(self.clone(), Call::one(f), items.into_iter())
    }

    /// No more submissions; workers stay until [`join`](Self::join).
    pub fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        // A lazy map nobody reads holds no item back now: `join` waits
        // for every item, as Python's does.
        state.store.lift_holds();
        drop(state);
        self.shared.inner.wake_engine();
    }

    /// After [`close`](Self::close): waits for every item, then for every
    /// worker to exit.
    pub fn join(&self) -> Result<(), PoolError> {
        self.join_until(None)
    }

    fn join_until(&self, deadline: Option<Instant>) -> Result<(), PoolError> {
        if !self.state().closed {
            return Err(PoolError::StillRunning);
        }
        if shared::on_pool_thread() {
            // A done callback: the thread it runs on is the one to stop.
            return Err(PoolError::WouldDeadlock);
        }
        let outcome = self.pump(deadline, |store| store.unsettled() == 0);
        if let Err(PoolError::Timeout) = outcome {
            return outcome;
        }
        self.shared.inner.command(Command::Finish);
        self.shared.inner.wait_stopped();
        self.shared.join_thread();
        match outcome {
            // Stopped after every item settled: that is the finish.
            Err(PoolError::Stopped(_)) if self.state().store.unsettled() == 0 => Ok(()),
            other => other,
        }
    }

    /// [`join`](Self::join), waiting at most `timeout` for the items:
    /// `PoolError::Timeout` if some are still unsettled then (the pool
    /// goes on; join again, or [`terminate`](Self::terminate)).
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), PoolError> {
        self.join_until(Some(Instant::now() + timeout))
    }

    /// Kills every worker now; unfinished items are lost. From a done
    /// callback it only asks: the pool stops once the callback returns.
    pub fn terminate(&self) {
        self.state().closed = true;
        self.shared.inner.command(Command::Terminate);
        if shared::on_pool_thread() {
            return;
        }
        self.shared.inner.wait_stopped();
        self.shared.join_thread();
    }

    /// The pids of the workers alive now.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.state().pids.clone()
    }

    /// Worker processes started so far, replacements included.
    pub fn workers_started(&self) -> u64 {
        self.state().started
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.inner.lock()
    }

    /// Hands encoded items of `call` to the store; the first's id. They
    /// go to workers, in chunks, as soon as the pool's thread wakes.
    fn submit_items(
        &self,
        call: Call,
        inputs: Encoded,
        stream: Option<StreamId>,
    ) -> Result<u64, PoolError> {
        let first = {
            let mut state = self.state();
            if state.closed {
                return Err(PoolError::Closed);
            }
            if let Some(why) = &state.stopped {
                return Err(PoolError::Stopped(why.clone()));
            }
            state.store.submit(call, inputs, stream)
        };
        self.shared.inner.wake_engine();
        Ok(first)
    }

    /// A new lazy map's name in the store.
    fn new_stream(&self, unordered: bool) -> StreamId {
        StreamId {
            number: self.shared.next_stream.fetch_add(1, Ordering::Relaxed),
            unordered,
        }
    }

    /// Wakes the pool's thread if a take let a lazy map's held items go.
    fn wake_if_released(&self, mut state: MutexGuard<'_, State>) {
        let released = state.store.take_released();
        drop(state);
        if released {
            self.shared.inner.wake_engine();
        }
    }

    /// Waits until `done` holds, `deadline` passes, or the pool stops.
    fn pump(
        &self,
        deadline: Option<Instant>,
        mut done: impl FnMut(&Store) -> bool,
    ) -> Result<(), PoolError> {
        let inner = &self.shared.inner;
        let mut state = inner.lock();
        loop {
            if done(&state.store) {
                return Ok(());
            }
            if let Some(why) = &state.stopped {
                return Err(PoolError::Stopped(why.clone()));
            }
            if shared::on_pool_thread() {
                return Err(PoolError::WouldDeadlock);
            }
            let wait = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(PoolError::Timeout);
                    }
                    Some(left)
                }
                None => None,
            };
            state = inner.wait(state, wait);
        }
    }
}

/// The CPUs this process may run on: its affinity mask (`taskset`,
/// `sched_setaffinity`), and a cgroup CPU quota when one is lower (as
/// [`std::thread::available_parallelism`]); at least 1.
pub fn cpu_count() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
}

/// A settled item as its function's result.
fn decode<R: DeserializeOwned>(settled: Option<Settled>) -> Result<R, TaskError> {
    match settled {
        None => Err(TaskError::Failed("its result was already taken".into())),
        Some(Err(e)) => Err(*e),
        Some(Ok(bytes)) => decode_reply(bytes.as_slice()),
    }
}

/// An encoded [`Reply`] as its function's result.
#[inline(always)]
fn decode_reply<R: DeserializeOwned>(bytes: &[u8]) -> Result<R, TaskError> {
    match bytes.split_first() {
        // Reply::Returned is variant 0 and then the value: decoded with
        // `take_payload`, which copies a byte vector whole.
        Some((0, value)) => outlast_ipc::codec::take_payload::<R>(value)
            .map(|(value, _)| value)
            .map_err(|e| TaskError::Failed(format!("its worker sent an undecodable result: {e}"))),
        _ => match postcard::from_bytes::<Reply<R>>(bytes) {
            Ok(Reply::Returned(value)) => Ok(value),
            Ok(Reply::Panicked { message, location }) => {
                Err(TaskError::Panicked { message, location })
            }
            Ok(Reply::Failed(why)) => Err(TaskError::Failed(why)),
            Ok(Reply::Err(why)) => Err(TaskError::Returned(why)),
            Err(e) => Err(TaskError::Failed(format!(
                "its worker sent an undecodable result: {e}"
            ))),
        },
    }
}

/// Whether a settled item is a success, without decoding it.
fn succeeded(settled: &Settled) -> bool {
    // Reply::Returned is variant 0: its first byte.
    matches!(settled, Ok(bytes) if bytes.as_slice().first() == Some(&0))
}
