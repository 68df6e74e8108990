//! # outlast-ipc: Python's `multiprocessing`, in Rust, for real OS processes
//!
//! Part of [outlast](https://docs.rs/outlast): this crate has the processes
//! and the ways they talk; `outlast` has `Pool` and the supervisor on top
//! (and re-exports this crate as `outlast::ipc`). Start with [`Process`]
//! and [`Pipe`] below, then the table: each Python name and its Rust one.
//!
//! Start processes with `fork`, `spawn` or `forkserver`, talk to them over pipes and
//! queues, share memory, values and locks with them, and get their results or a precise
//! account of how they died: never a hang, even when a process is SIGKILLed
//! holding a lock.
//!
//! ```
//! use outlast_ipc::{Connection, Pipe, Process};
//!
//! fn greeter(mut conn: Connection) -> String {
//!     let name: String = conn.recv().unwrap_or_default();
//!     format!("hello {name}")
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (mut ours, theirs) = Pipe::duplex()?;
//! let mut child = Process::new(greeter, theirs);
//! child.start()?;
//! ours.send("bob")?;
//! assert_eq!(child.join()?, "hello bob");
//! # Ok(())
//! # }
//! ```
//!
//! ## From Python
//!
//! | Python `multiprocessing` | `outlast_ipc` |
//! |---|---|
//! | `from multiprocessing import Queue, Lock, Value, Manager` | `use outlast_ipc::{Queue, Lock, Value, Manager};` (each also in its module) |
//! | `if __name__ == '__main__':` guard | nothing: a child never runs `main` (it is taken over before it) |
//! | `Process(target=f, args=(x,), name="bob")` | `Process::new(f, x).named("bob")` (`f` is a plain `fn(A) -> R`) |
//! | `Process(target=f, args=(q, v, lock))`, then go on using them | `Process::new(f, (q.clone(), v.clone(), lock.clone()))`: handles are `Clone`, sharing this process's mapping |
//! | `get_context("fork")` | `.start_method(StartMethod::Fork)` per process |
//! | `set_start_method("forkserver")`, `get_start_method()`, `get_all_start_methods()` | [`set_start_method`], [`get_start_method`], [`get_all_start_methods`] |
//! | `p.start()`, `p.join()`, `p.join(timeout)` | `p.start()?`, `p.join()?` (gives `f`'s return value), `p.join_timeout(d)` |
//! | `p.exitcode` (`-9` after SIGKILL) | `p.exit_code()` (same convention), `p.exit_status()` |
//! | `p.is_alive()`, `p.pid`, `p.terminate()`, `p.kill()` | `p.is_alive()`, `p.pid()`, `p.terminate()`, `p.kill()` |
//! | `current_process().name`, `.pid` | `outlast_ipc::current_process().name`, `.pid` |
//! | `active_children()`, `parent_process()` | [`active_children`], [`parent_process`] |
//! | `connection.wait([...], timeout)` | [`wait`]`(&[&conn, &process, &queue], Some(timeout))?` |
//! | `a, b = Pipe()` | `let (a, b) = Pipe::duplex()?;` |
//! | `r, w = Pipe(duplex=False)` | `let (r, w) = Pipe::simplex()?;` |
//! | `conn.send(obj)`, `conn.recv()` | `conn.send(&value)?`, `conn.recv::<T>()?` (serde, not pickle) |
//! | `conn.send_bytes(b)`, `conn.recv_bytes()` | `conn.send_bytes(&b)?`, `conn.recv_bytes()?`, `recv_bytes_into(&mut buf, offset)` |
//! | `conn.poll(timeout)` | `conn.poll(d)?` |
//! | `EOFError` from `recv` | `RecvError::Disconnected` (also when the peer was killed) |
//! | blocking forever on a dead peer | every call has `try_` / `_timeout` forms |
//! | `Value('d', 0.0)`, `Array('i', range(10))` | `value::Value::new(0.0f64)?`, `value::Array::from_iter(0..10i32)?` |
//! | `with v.get_lock(): v.value += 1` | `*v.lock()? += 1` (a dead holder is `LockError::OwnerDied`, not a hang) |
//! | `RawValue`, `RawArray` | `value::RawValue`, `value::RawArray` |
//! | (none) | `v.fetch_add(1)`, `v.compare_exchange(a, b)` for integers, no lock |
//! | `Lock()`, `RLock()` | `sync::Lock::new()?`, `sync::RLock::new()?`: `lock`, `try_lock`, `lock_timeout` |
//! | `Semaphore(n)`, `BoundedSemaphore(n)` | `sync::Semaphore::new(n)?`, `sync::BoundedSemaphore::new(n)?` |
//! | `Event()`, `Condition()`, `Barrier(n)` | `sync::Event`, `sync::Condition`, `sync::Barrier` (`abort`, `reset`, broken state) |
//! | `shared_memory.SharedMemory(name, create=True, size=n)` | `shm::SharedMemory::create(name, n)?` (unlinked after a SIGKILL of its creator) |
//! | `SharedMemory(name)`, `.unlink()`, `track=False` | `SharedMemory::open(name)?`, `.unlink()?`, `SharedMemory::create_untracked` |
//! | `Queue(maxsize)`: `put`, `get`, `get(timeout=)`, `put_nowait` | `queue::Queue::new(maxsize)?`: `put`, `get`, `get_timeout`, `try_put`, plus `put_many` / `get_many` |
//! | a Queue corrupted by a killed process (Python's docs warn) | kill-safe: nothing half-written is ever visible, nobody blocks on the dead |
//! | `q.close()`; consumers of a dead producer wait forever | `q.close()`; once every producer closed or died, `get` drains then gives `Disconnected` |
//! | `await loop.run_in_executor(None, q.get)` (a cancelled wait's thread still takes the next item) | `q.get_async().await?`, `q.put_async(&x).await?`, `conn.recv_async::<T>().await?`, `conn.send_async(&x).await?`, `p.join_async().await?`, `lock.lock_async().await`, `cond.wait_async(held).await`, `barrier.wait_async().await?`, a manager queue's `mq.get_async().await?`: any executor, cancel-safe |
//! | `JoinableQueue`: `task_done`, `join` (forever, if a consumer died holding an item) | `queue::JoinableQueue`: `task_done()?`, `join()?` (`LostItems` once the rest are done), `join_timeout(d)` |
//! | `q.shutdown(immediate)`, `ShutDown` (3.13) | `q.shutdown(immediate)`, `PutError::ShutDown`, `GetError::ShutDown` |
//! | `Barrier(n, action, timeout)` | `sync::Barrier::new(n)?.with_action(f).with_timeout(t)` |
//! | `Value('i', 0, lock=RLock())`, `lock=False` | `value::Value::with_lock(0, rlock)?`, `Value::without_lock(0)?` |
//! | `SimpleQueue` | `queue::SimpleQueue` |
//! | (posix_ipc's `MessageQueue`) | `mq::MessageQueue`: POSIX message queues with priorities |
//! | `Manager()`, `.Namespace()`, `.dict()`, `.set()`, `.Queue()`, `.Lock()`, ... | [`manager::Manager`]: typed proxies, dicts in insertion order, atomic `fetch_add`/`update_with`, nested `list_at`, objects freed when no process holds a proxy, locks freed when their holder dies, `Disconnected` when it dies |
//! | `with manager_lock:` | `let _held = lock.acquire()?;` ([`manager::Held`] releases when dropped) |
//! | `BaseManager(address, authkey)`, `register` | [`manager::Manager::serve`], [`manager::Manager::connect`], [`manager::SharedType`] |
//! | `connection.Listener(address, authkey)`, `Client(address, authkey)` | [`net::Listener`], [`net::connect`]: mutual HMAC-SHA256 authentication, Unix socket or TCP |
//!
//! ## Start methods
//!
//! * **forkserver** (the default, as in Python 3.14 on Linux): a small
//!   single-threaded server, an exec of this binary started on first use
//!   (or by [`forkserver::start`]), forks each child. Safe whatever threads
//!   the program has; a start costs about what a fork does.
//! * **fork**: the child is a copy of the parent. Refused with
//!   [`StartError::ThreadsPresent`] when other threads exist, because a lock
//!   held by one of them (the allocator's, stdout's) would stay held forever in
//!   the child; `allow_threads(true)` takes that risk knowingly. The child
//!   keeps only stdio and the handles it was given: a stray pipe end inherited
//!   by a sibling can never keep a reader from seeing end of file.
//! * **spawn**: the child is a new exec of the same binary, which runs only
//!   the child's entry.
//!
//! A spawned child and the fork server take over before `main` (a
//! constructor runs [`init`]), so a binary's `main` needs no line for them,
//! a test binary included: a child never runs the test harness. Calling
//! [`init`] first thing in `main` does no harm.
//!
//! ## Handles
//!
//! A [`Connection`] inside a process's arguments is handed to the child: its
//! descriptor stays open across fork or exec, and nothing else does. The
//! parent's copy is closed once the child has started.
//!
//! ## Trust
//!
//! The processes sharing a `Queue`, a `Lock` or a `Value` are one trust
//! domain, as threads sharing a heap are. Still, no word written into a
//! segment makes this crate write outside it, die by a signal, or wait
//! past a deadline: segments are sealed memfds, locks are lock words of
//! our own with no pointer in shared memory, and positions are checked
//! before use. For a peer that is *not* trusted (a supervised worker),
//! [`spsc`] is a ring whose reader checks everything its writer publishes.
//! Named segments cannot be sealed: share them only among trusting processes.
//!
//! ## Bad bytes and dead peers
//!
//! Frames are a little-endian `u32` length and postcard bytes ([`codec`]). A
//! length above the maximum frame size (1 GiB unless set per connection) is
//! an error before any allocation; a payload that does not decode is an error
//! and the stream goes on with the next frame.

pub mod codec;
pub mod coop;
mod handle;
mod lend;
pub mod manager;
pub mod mq;
pub mod net;
mod off_thread;
pub mod os;
pub mod pipe;
mod prefetch;
pub mod process;
pub mod queue;
pub mod shm;
mod spin;
pub mod spsc;
pub mod sync;
pub mod value;
mod wait;
mod watch;

pub use codec::Described;
pub use handle::HandleError;
pub use pipe::{
    Connection, Pipe, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError,
};
pub use process::forkserver;
pub use process::{
    active_children, current_process, force_start_method, get_all_start_methods, get_start_method,
    parent_process, set_start_method, signal_name, ChildInfo, ExitStatus, JoinError,
    JoinTimeoutError, ParentProcess, Process, ProcessInfo, StartError, StartMethod,
    StartMethodAlreadySet, UnknownStartMethod, EXIT_CHILD_FAILED, EXIT_INIT_MISSING,
};
pub use wait::{wait, Readable, Waitable};

// Python's top-level names (`multiprocessing.Queue`, `.Lock`, `.Value`,
// `.Manager`, ...), so `use outlast_ipc::{Queue, Lock}` works as a Python
// user first writes it; each stays in its module too.
pub use manager::Manager;
pub use queue::{JoinableQueue, Queue, SimpleQueue};
pub use shm::SharedMemory;
pub use sync::{Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore};
pub use value::{Array, RawArray, RawValue, Value};

/// What makes a spawned child or the fork server take over: done before
/// `main` by a constructor, so calling it is optional.
///
/// In the parent it does nothing. In a child started with
/// [`StartMethod::Spawn`] it runs the child's entry and exits, and in the
/// fork server ([`StartMethod::ForkServer`]) it serves until its creator is
/// gone: in both it never returns. The constructor does this before `main`
/// (and before a test harness or an async runtime starts its threads), so
/// a program needs no line of its own; calling `init()` first thing in
/// `main` is harmless, and it is what to do on a platform where
/// constructors do not run.
pub fn init() {
    process::run_if_spawned();
    process::forkserver::run_if_server();
}

/// Runs [`init`] before `main`: a child of any binary that links this
/// crate, a test binary included, runs only its entry, and the fork server
/// starts with no thread but its own.
///
/// The work it may do there (decode a bootstrap, run a child's entry)
/// uses the standard library before `main`; the child then runs without
/// what Rust's `main` sets up (the main thread's name and its stack
/// overflow message), and SIGPIPE is set ignored as that `main` would.
#[ctor::ctor(unsafe)]
fn take_over_before_main() {
    init();
}
