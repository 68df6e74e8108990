//! [`Watch`]: the futures waiting on one object (a queue's side, an
//! event's word), and the [`watcher`] threads that wait for every watched
//! object of the process at once (up to 127 each, in one `futex_waitv`)
//! and wake the futures of each one that moves; and the [`reactor`], one
//! thread that does the same for every awaited descriptor of the process
//! (a pipe's end, a child's pidfd).
//!
//! Our futures need no runtime: a queue's messages move through shared
//! memory with a futex to sleep on, which no executor's reactor can watch,
//! and a pipe's frames may already sit whole in our own buffer. So a
//! future never blocks and never takes anything in another thread: it
//! tries the non-waiting operation itself, and only when that finds
//! nothing does it leave its waker here, with the object's *epoch* (a word
//! that moves whenever a waiter may have become ready, such as a ring's
//! position) read before it tried. The watcher wakes every future whose
//! epoch moved, sleeps on the objects otherwise, and ends after a while
//! with nothing to watch. A future dropped mid-wait has taken nothing, so
//! cancelling one (`tokio::time::timeout`, `select!`) loses no message,
//! unlike a blocking call moved to another thread.

mod reactor;
mod watcher;
mod within;

pub(crate) use reactor::{Alarm, Readiness, Source};
pub(crate) use within::within;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, RwLockWriteGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::os::futex::AnyWord;
use watcher::Watcher;

/// What a [`Watch`] waits for.
pub(crate) trait Watched: Send + Sync + 'static {
    /// A word that moves whenever a waiter may have become ready; read by
    /// a future before it tries, and by the watcher before it looks.
    fn epoch(&self) -> u64;
    /// Ready whatever the epoch (a shutdown, nobody left to put), looked
    /// at after [`epoch`](Self::epoch).
    fn ready_now(&self) -> bool;
    /// Gets ready to sleep until the epoch moves from `seen`: raises or
    /// counts whatever makes the next mover wake the word it returns.
    /// [`disarm`](Self::disarm) follows every call, after the sleep.
    fn arm(&self, seen: u64) -> Arm<'_>;
    /// After the sleep that [`arm`](Self::arm) prepared.
    fn disarm(&self) {}
    /// After a long wait with nothing seen: the costly look (are the
    /// processes that could make it ready still alive?). True if ready.
    fn look_harder(&self) -> bool {
        false
    }
    /// Whether [`look_harder`](Self::look_harder) can find anything: if
    /// not, the watcher takes no look, and sleeps on the object's word
    /// for as long as [`NOTHING_TO_LOOK_FOR`].
    fn has_costly_look(&self) -> bool {
        false
    }
}

/// What to sleep on until a watched object's epoch moves.
pub(crate) enum Arm<'a> {
    /// This word, while it holds `value`. `unfenced`: its mover may not
    /// see the flag just raised until a global memory barrier (a queue
    /// side's bias owner publishes with no fence of its own), so the sleep
    /// is short until one was made.
    Word {
        word: &'a AtomicU32,
        value: u32,
        unfenced: bool,
    },
    /// It moved already: look again now.
    Moved,
    /// Nothing to sleep on: look again after a slice.
    Poll,
}

/// The longest the watcher sleeps on an object that gives no word to
/// sleep on ([`Arm::Poll`]); a tenth of it is how soon futures that were
/// woken for a readiness their epoch did not show, and found nothing
/// (another future's brief hold of a lock), are woken again.
const SLICE: Duration = Duration::from_millis(10);

/// How often the costly look ([`Watched::look_harder`]) is taken while
/// futures wait and nothing moves: as often as a blocking wait checks
/// that its peers live.
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// The longest the watcher sleeps on an object with no costly look: a
/// bound, should a wake-up ever be missed, on how long its futures wait.
const NOTHING_TO_LOOK_FOR: Duration = Duration::from_secs(1);

/// How long a watcher thread stays with nothing to watch before it ends.
const IDLE_EXIT: Duration = Duration::from_secs(1);

/// What every watch thread's name starts with. `fork` does not count
/// them among the threads that could hold a lock its child needs: they run
/// no code of anyone else's but wakers, and never while [`FORK_GATE`] is
/// held (nor do they once they are ending).
pub(crate) const THREAD_PREFIX: &str = "ipcw-";

/// Read-held by a watch thread while it calls wakers (a runtime's code,
/// which may take that runtime's locks); write-held by `fork` across the
/// fork, so no watch thread is inside a waker at that instant.
static FORK_GATE: RwLock<()> = RwLock::new(());

/// Holds every watch thread out of wakers until dropped (across a fork;
/// the child drops its copy too).
pub(crate) fn quiet_for_fork() -> RwLockWriteGuard<'static, ()> {
    FORK_GATE.write().unwrap_or_else(PoisonError::into_inner)
}

/// Holds off any fork until dropped.
fn fork_gate_read() -> std::sync::RwLockReadGuard<'static, ()> {
    FORK_GATE.read().unwrap_or_else(PoisonError::into_inner)
}

/// Starts a watch thread named `name` (after [`THREAD_PREFIX`]) running `run`.
fn spawn_named(name: &str, run: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    let name = format!("{THREAD_PREFIX}{name}");
    // A fork waits for this: the new thread is never without its name
    // (which it would only take on itself once it runs).
    let _named_before_any_fork = fork_gate_read();
    let thread = std::thread::Builder::new()
        .name(name.clone())
        .stack_size(256 * 1024)
        .spawn(run)?;
    name_now(&thread, &name);
    Ok(())
}

/// What a future waits on: an object's own watch thread, or a descriptor
/// in the process's reactor.
#[derive(Clone, Debug)]
pub(crate) enum WaitOn {
    Watch(Arc<Watch>),
    Descriptor(Arc<Source>),
}

impl From<Arc<Watch>> for WaitOn {
    fn from(watch: Arc<Watch>) -> WaitOn {
        WaitOn::Watch(watch)
    }
}

impl From<Arc<Source>> for WaitOn {
    fn from(source: Arc<Source>) -> WaitOn {
        WaitOn::Descriptor(source)
    }
}

/// The watch of one object in this process, started by the first future
/// that waits on it and shared by the handles cloned from one another;
/// stopped when the last of them is dropped (its thread lets go of the
/// object then, not after its idle wait).
#[derive(Default)]
pub(crate) struct LazyWatch(std::sync::OnceLock<Arc<Watch>>);

impl LazyWatch {
    /// The watch, made with `object` and `name` on first use.
    pub(crate) fn get_or_init(
        &self,
        name: &'static str,
        object: impl FnOnce() -> Arc<dyn Watched>,
    ) -> &Arc<Watch> {
        self.0.get_or_init(|| Watch::new(object(), name))
    }
}

impl Drop for LazyWatch {
    fn drop(&mut self) {
        if let Some(watch) = self.0.get() {
            watch.stop();
        }
    }
}

/// A future's place in the watch, freed when the future is dropped.
#[derive(Debug)]
struct Ticket(u64);

/// Tickets of every registration in this process.
static NEXT_TICKET: AtomicU64 = AtomicU64::new(0);

/// One future's wait on a [`Watch`] or a [`Source`]: forgotten when
/// dropped (the future is ready, or dropped).
#[derive(Debug)]
pub(crate) struct Registration {
    on: WaitOn,
    ticket: Ticket,
}

impl Registration {
    /// A place for one future in `on`.
    pub(crate) fn new(on: impl Into<WaitOn>) -> Registration {
        let ticket = Ticket(NEXT_TICKET.fetch_add(1, Ordering::Relaxed));
        Registration {
            on: on.into(),
            ticket,
        }
    }

    /// Wakes `waker` once the object may be ready after `seen` (its
    /// epoch before the failed try; a descriptor has none). An error only
    /// if the thread cannot start (or the descriptor cannot be armed).
    pub(crate) fn wait(&self, seen: u64, waker: &Waker) -> std::io::Result<()> {
        match &self.on {
            WaitOn::Watch(watch) => watch.wait(&self.ticket, seen, waker),
            WaitOn::Descriptor(source) => source.wait(self.ticket.0, waker),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        match &self.on {
            WaitOn::Watch(watch) => watch.forget(&self.ticket),
            WaitOn::Descriptor(source) => source.forget(self.ticket.0),
        }
    }
}

/// The futures waiting on one object; a member of one [`Watcher`] of
/// this process from its first wait until it is stopped.
pub(crate) struct Watch {
    object: Arc<dyn Watched>,
    name: &'static str,
    state: Mutex<Waiting>,
    /// The object's handles are gone: the watcher lets go of it.
    stopped: AtomicBool,
    /// The watcher this watch belongs to, from its first wait.
    watcher: OnceLock<Arc<Watcher>>,
}

#[derive(Default)]
struct Waiting {
    futures: Vec<Waiter>,
    /// The epoch at which the futures were last woken for a readiness
    /// their epoch did not show.
    woken_ready_at: Option<u64>,
    /// When the costly look was last taken (or the futures began to wait).
    looked: Option<Instant>,
    /// A global fence has made sure, since the flag was raised for this
    /// epoch, that the mover sees it: the sleep may be long.
    fenced_at: Option<u64>,
}

struct Waiter {
    ticket: u64,
    seen: u64,
    waker: Waker,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").field("name", &self.name).finish()
    }
}

/// What the watcher is to do about one watch after a look.
enum Look<'a> {
    /// No future waits on it.
    Idle,
    /// Look again at once (futures were woken, or the epoch moved).
    Again,
    /// Sleep until `word` is woken (if any) or `until`.
    Sleep {
        word: Option<AnyWord<'a>>,
        until: Instant,
        /// The word's mover may miss the flag until a global fence.
        unfenced: bool,
        epoch: u64,
        /// The object was armed: disarm it after the sleep.
        armed: bool,
    },
}

impl Watch {
    /// A watch over `object` (`name` says what it is, in debug output);
    /// its watcher starts with the first future that waits.
    pub(crate) fn new(object: Arc<dyn Watched>, name: &'static str) -> Arc<Watch> {
        Arc::new(Watch {
            object,
            name,
            state: Mutex::new(Waiting::default()),
            stopped: AtomicBool::new(false),
            watcher: OnceLock::new(),
        })
    }

    /// See [`Registration::wait`].
    fn wait(self: &Arc<Self>, ticket: &Ticket, seen: u64, waker: &Waker) -> std::io::Result<()> {
        if self.object.epoch() != seen {
            // It moved since the future's try: no need to wait for the
            // watcher, which may be asleep on the newer epoch.
            self.forget(ticket);
            waker.wake_by_ref();
            return Ok(());
        }
        let added = {
            let mut state = self.lock();
            match state.futures.iter_mut().find(|w| w.ticket == ticket.0) {
                Some(waiter) => {
                    waiter.seen = seen;
                    waiter.waker.clone_from(waker);
                    false
                }
                None => {
                    if state.futures.is_empty() {
                        state.looked = Some(Instant::now());
                    }
                    state.futures.push(Waiter {
                        ticket: ticket.0,
                        seen,
                        waker: waker.clone(),
                    });
                    true
                }
            }
        };
        let watcher = self.watcher.get_or_init(|| Watcher::adopt(self));
        match watcher.arrived(added) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.forget(ticket);
                Err(e)
            }
        }
    }

    /// The future holding `ticket` waits no more (it is ready, or dropped).
    fn forget(&self, ticket: &Ticket) {
        self.lock().futures.retain(|w| w.ticket != ticket.0);
    }

    /// Lets go of the object now: its handles are gone, and with them any
    /// future that could wait. The watcher drops it at its next turn.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(watcher) = self.watcher.get() {
            watcher.release(self);
        }
    }

    fn has_futures(&self) -> bool {
        !self.lock().futures.is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, Waiting> {
        // A panic cannot leave `Waiting` half-changed: go on with it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a watcher thread runs for this watch now (for tests).
    #[cfg(test)]
    fn watched_now(&self) -> bool {
        self.watcher.get().is_some_and(|w| w.running())
    }

    /// Wakes the futures whose epoch moved (all of them if the object is
    /// ready), takes the costly look when it is due, and otherwise arms
    /// the object: what the watcher is to do about it now.
    fn look(&self, now: Instant, fence_works: bool) -> Look<'_> {
        let mut state = self.lock();
        if state.futures.is_empty() || self.stopped.load(Ordering::SeqCst) {
            return Look::Idle;
        }
        // Epoch first: a move after this read ends the sleep on the word.
        let epoch = self.object.epoch();
        let ready = self.object.ready_now();
        if ready && state.woken_ready_at == Some(epoch) {
            // Woken for this same readiness, they are back: they found
            // nothing though it looks ready (another holds a lock they
            // need). They are woken again shortly, not in a loop with us.
            state.woken_ready_at = None;
            return Look::Sleep {
                word: None,
                until: now + SLICE / 10,
                unfenced: false,
                epoch,
                armed: false,
            };
        }
        let before = state.futures.len();
        wake_where(&mut state.futures, |w| ready || w.seen != epoch);
        state.woken_ready_at = ready.then_some(epoch);
        if ready || state.futures.len() < before {
            return Look::Again;
        }
        let until = match self.object.has_costly_look() {
            true => {
                let looked = *state.looked.get_or_insert(now);
                if now.saturating_duration_since(looked) >= LOOK_EVERY {
                    state.looked = Some(now);
                    if self.object.look_harder() {
                        wake_where(&mut state.futures, |_| true);
                        return Look::Again;
                    }
                }
                state.looked.unwrap_or(now) + LOOK_EVERY
            }
            false => now + NOTHING_TO_LOOK_FOR,
        };
        let fenced = state.fenced_at == Some(epoch);
        drop(state);
        match self.object.arm(epoch) {
            Arm::Moved => {
                self.object.disarm();
                Look::Again
            }
            Arm::Poll => Look::Sleep {
                word: None,
                until: until.min(now + SLICE),
                unfenced: false,
                epoch,
                armed: true,
            },
            Arm::Word {
                word,
                value,
                unfenced,
            } => {
                let unfenced = unfenced && !fenced;
                Look::Sleep {
                    word: Some(AnyWord {
                        word,
                        expected: value,
                    }),
                    // Without a fence to rule out a missed wake-up, a
                    // short sleep bounds what one would cost.
                    until: match unfenced && !fence_works {
                        true => until.min(now + Duration::from_millis(1)),
                        false => until,
                    },
                    unfenced,
                    epoch,
                    armed: true,
                }
            }
        }
    }

    /// A global fence was made after this watch was armed at `epoch`.
    fn fenced(&self, epoch: u64) {
        self.lock().fenced_at = Some(epoch);
    }

    /// Its word was woken: every future looks again (a wake can mean a
    /// readiness its epoch does not show).
    fn woken(&self) {
        wake_where(&mut self.lock().futures, |_| true);
    }
}

/// Gives `thread` its `name` from this side.
fn name_now(thread: &std::thread::JoinHandle<()>, name: &str) {
    use std::os::unix::thread::JoinHandleExt;
    if let Ok(name) = std::ffi::CString::new(name) {
        // SAFETY: a live thread's handle (it is not joined or detached
        // before this returns) and a NUL-terminated name under 16 bytes.
        unsafe { libc::pthread_setname_np(thread.as_pthread_t(), name.as_ptr()) };
    }
}

/// Wakes `waiters` (taken out of their lists, whose lock is let go).
fn wake_all(waiters: Vec<Waiter>) {
    if waiters.is_empty() {
        return;
    }
    let _not_while_forking = fork_gate_read();
    for waiter in waiters {
        waiter.waker.wake();
    }
}

/// Wakes and removes the waiters that `due` picks.
fn wake_where(futures: &mut Vec<Waiter>, due: impl Fn(&Waiter) -> bool) {
    let _not_while_forking = fork_gate_read();
    futures.retain(|w| {
        if due(w) {
            w.waker.wake_by_ref();
            false
        } else {
            true
        }
    });
}

/// What the tests of the watch and the reactor share.
#[cfg(test)]
mod test_support {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::task::Wake;
    use std::time::{Duration, Instant};

    /// A waker that records it was called.
    #[derive(Default)]
    pub(super) struct Flag(pub(super) AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// Whether `what` comes true within 20 s.
    pub(super) fn until(what: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if what() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{until, Flag};
    use super::*;

    /// An epoch moved by hand, a futex word as the watcher sleeps on.
    #[derive(Default)]
    struct Counter {
        epoch: AtomicU32,
        ready: AtomicBool,
        /// Arms not yet disarmed.
        armed: AtomicU32,
    }

    impl Counter {
        fn bump(&self) {
            self.epoch.fetch_add(1, Ordering::SeqCst);
            crate::os::futex::wake_all(&self.epoch);
        }
    }

    impl Watched for Counter {
        fn epoch(&self) -> u64 {
            u64::from(self.epoch.load(Ordering::SeqCst))
        }
        fn ready_now(&self) -> bool {
            self.ready.load(Ordering::SeqCst)
        }
        fn arm(&self, seen: u64) -> Arm<'_> {
            self.armed.fetch_add(1, Ordering::SeqCst);
            Arm::Word {
                word: &self.epoch,
                value: seen as u32,
                unfenced: false,
            }
        }
        fn disarm(&self) {
            self.armed.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_future_is_woken_when_the_epoch_moves_and_not_before() {
        let counter = Arc::new(Counter::default());
        let watch = Watch::new(counter.clone(), "test-watch");
        let flag = Arc::new(Flag::default());
        let waker = Waker::from(flag.clone());
        let future = Registration::new(Arc::clone(&watch));
        future.wait(counter.epoch(), &waker).expect("a thread");
        std::thread::sleep(SLICE * 3);
        assert!(!flag.0.load(Ordering::SeqCst), "woken with nothing moved");
        counter.bump();
        assert!(until(|| flag.0.load(Ordering::SeqCst)), "never woken");
    }

    #[test]
    fn a_future_that_saw_an_older_epoch_is_woken_at_once() {
        let counter = Arc::new(Counter::default());
        let watch = Watch::new(counter.clone(), "test-watch");
        let seen = counter.epoch();
        counter.bump(); // between the future's try and its wait
        let flag = Arc::new(Flag::default());
        let future = Registration::new(Arc::clone(&watch));
        future
            .wait(seen, &Waker::from(flag.clone()))
            .expect("a thread");
        // At once, in the call: the thread may be asleep on the newer epoch.
        assert!(flag.0.load(Ordering::SeqCst), "not woken in the call");
        assert!(!watch.watched_now(), "a thread for nothing");
    }

    #[test]
    fn a_future_that_comes_and_goes_does_not_end_the_idle_thread() {
        let counter = Arc::new(Counter::default());
        let watch = Watch::new(counter.clone(), "test-watch");
        let come_and_go = || {
            let future = Registration::new(Arc::clone(&watch));
            future
                .wait(counter.epoch(), Waker::noop())
                .expect("a thread");
        };
        come_and_go();
        std::thread::sleep(SLICE * 5);
        // Its arrival wakes the idle thread, which found it gone: before,
        // the thread ended there, and the next wait started another.
        come_and_go();
        std::thread::sleep(SLICE * 5);
        assert!(watch.watched_now(), "the thread ended early");
    }

    #[test]
    fn a_forgotten_future_is_not_woken_and_the_thread_ends() {
        let counter = Arc::new(Counter::default());
        let watch = Watch::new(counter.clone(), "test-watch");
        let flag = Arc::new(Flag::default());
        let future = Registration::new(Arc::clone(&watch));
        future
            .wait(counter.epoch(), &Waker::from(flag.clone()))
            .expect("a thread");
        drop(future);
        counter.bump();
        assert!(
            until(|| !watch.watched_now()),
            "the thread stayed with nothing to watch"
        );
        assert!(
            !flag.0.load(Ordering::SeqCst),
            "a forgotten future was woken"
        );
        // And it starts again for the next one.
        counter.ready.store(true, Ordering::SeqCst);
        let future = Registration::new(Arc::clone(&watch));
        future
            .wait(counter.epoch(), &Waker::from(flag.clone()))
            .expect("a thread");
        assert!(until(|| flag.0.load(Ordering::SeqCst)), "never woken");
    }
}
