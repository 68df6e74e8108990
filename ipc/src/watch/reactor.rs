//! The reactor: one thread per process that waits, in one `epoll`, on
//! every descriptor a future waits for (a connection's end, a child's
//! pidfd or status pipe), and wakes the futures of each one that is ready.
//!
//! A thousand awaited connections or processes cost one thread, asleep
//! in the kernel until one of them moves (a thread each, polling every
//! 10 ms, before). The same thread keeps [`Alarm`]s, wakers woken at a
//! moment (a timed wait that waits in a line of ours, not in the kernel,
//! has no other clock). Each [`Source`] holds a duplicate of its descriptor,
//! armed one shot whenever a future waits on it; dropping the source
//! takes the duplicate out and closes it at once, so the peer sees the
//! end then. The thread starts with the first wait and ends after a
//! second with none.
//!
//! A forked child does not use its copy of its parent's reactor (whose
//! descriptors it closed, and whose locks another thread may have held at
//! the fork): the reactor knows its process, and a child makes its own.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::os::epoll::{self, Bell, Epoll};
use crate::os::Deadline;

use super::{spawn_named, wake_all, Waiter, IDLE_EXIT};

/// What a source waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// Something to read, or the end (`POLLIN`).
    Readable,
    /// Room to write, or the end (`POLLOUT`).
    Writable,
}

impl Readiness {
    fn epoll_events(self) -> u32 {
        match self {
            Readiness::Readable => libc::EPOLLIN as u32,
            Readiness::Writable => libc::EPOLLOUT as u32,
        }
    }
}

/// The thread's name (after the watch threads' prefix).
const NAME: &str = "reactor";

/// This process's reactor, made by the first source.
static CURRENT: Mutex<Option<Arc<Reactor>>> = Mutex::new(None);

/// One descriptor that futures wait on, in this process's reactor; taken
/// out and closed when dropped.
#[derive(Debug)]
pub(crate) struct Source {
    key: u64,
    reactor: Arc<Reactor>,
}

impl Source {
    /// Watches a duplicate of `fd` (its owner may close its own) for `readiness`.
    pub(crate) fn new(fd: impl AsFd, readiness: Readiness) -> io::Result<Arc<Source>> {
        let fd = fd.as_fd().try_clone_to_owned()?;
        let reactor = Reactor::of_this_process()?;
        let key = {
            let mut state = reactor.lock();
            let key = state.next_key;
            state.next_key += 1;
            state.sources.insert(
                key,
                Entry {
                    fd,
                    events: readiness.epoll_events(),
                    added: false,
                    armed: false,
                    waiters: Vec::new(),
                },
            );
            key
        };
        Ok(Arc::new(Source { key, reactor }))
    }

    /// Wakes `waker` once the descriptor is ready (at once if it is now).
    /// An error if it cannot be armed or the thread cannot start.
    pub(crate) fn wait(&self, ticket: u64, waker: &Waker) -> io::Result<()> {
        let reactor = &self.reactor;
        let mut state = reactor.lock();
        let Reactors { sources, .. } = &mut *state;
        let Some(entry) = sources.get_mut(&self.key) else {
            // Gone only once dropped: no future of ours can be here.
            waker.wake_by_ref();
            return Ok(());
        };
        if !entry.armed {
            let raw = entry.fd.as_raw_fd();
            reactor
                .epoll
                .arm(raw, entry.events, self.key, !entry.added)?;
            entry.added = true;
            entry.armed = true;
        }
        let added = match entry.waiters.iter_mut().find(|w| w.ticket == ticket) {
            Some(waiter) => {
                waiter.waker.clone_from(waker);
                false
            }
            None => {
                entry.waiters.push(Waiter {
                    ticket,
                    seen: 0,
                    waker: waker.clone(),
                });
                true
            }
        };
        if added {
            state.waiting += 1;
        }
        if !added && state.thread_running {
            return Ok(());
        }
        match reactor.stir(&mut state) {
            Ok(()) => Ok(()),
            Err(e) => {
                drop(state);
                self.forget(ticket);
                Err(e)
            }
        }
    }

    /// The future holding `ticket` waits no more.
    pub(crate) fn forget(&self, ticket: u64) {
        let mut state = self.reactor.lock();
        let Reactors {
            sources, waiting, ..
        } = &mut *state;
        if let Some(entry) = sources.get_mut(&self.key) {
            let before = entry.waiters.len();
            entry.waiters.retain(|w| w.ticket != ticket);
            *waiting -= before - entry.waiters.len();
        }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        let entry = {
            let mut state = self.reactor.lock();
            let entry = state.sources.remove(&self.key);
            if let Some(entry) = &entry {
                state.waiting -= entry.waiters.len();
                if entry.added {
                    self.reactor.epoll.remove(entry.fd.as_raw_fd());
                }
            }
            entry
        };
        // Its duplicate closes here, and any future still waiting (none
        // can be: they borrow the handle that owned this) is told to look.
        if let Some(entry) = entry {
            wake_all(entry.waiters);
        }
    }
}

/// A waker that this process's reactor wakes once `at` has passed (at
/// most a millisecond late); dropped, it is forgotten.
#[derive(Debug)]
pub(crate) struct Alarm {
    at: Instant,
    key: u64,
    reactor: Arc<Reactor>,
}

impl Alarm {
    /// Wakes `waker` once `at` has passed. An error if the thread cannot
    /// start.
    pub(crate) fn new(at: Instant, waker: &Waker) -> io::Result<Alarm> {
        let reactor = Reactor::of_this_process()?;
        let mut state = reactor.lock();
        let key = state.next_key;
        state.next_key += 1;
        state.alarms.insert((at, key), waker.clone());
        // A thread asleep until sooner than `at` sees it when it wakes: a
        // ring for every alarm woke it at every timed call.
        let sooner = state.sleeps_until.is_none_or(|until| at < until);
        if sooner || !state.thread_running {
            if let Err(e) = reactor.stir(&mut state) {
                state.alarms.remove(&(at, key));
                return Err(e);
            }
        }
        drop(state);
        Ok(Alarm { at, key, reactor })
    }

    /// Wakes `waker` instead (a future polled by another task's waker).
    pub(crate) fn set_waker(&self, waker: &Waker) {
        if let Some(kept) = self.reactor.lock().alarms.get_mut(&(self.at, self.key)) {
            kept.clone_from(waker);
        }
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        // (Gone already if it went off.)
        self.reactor.lock().alarms.remove(&(self.at, self.key));
    }
}

/// One process's epoll and the descriptors in it.
struct Reactor {
    /// The process it belongs to: a forked child makes its own.
    pid: u32,
    epoll: Epoll,
    /// Rung when a future starts to wait while the thread sleeps (key
    /// [`BELL_KEY`]); see [`Source::wait`].
    bell: Bell,
    state: Mutex<Reactors>,
}

/// The bell's key in the epoll (sources count up from 0).
const BELL_KEY: u64 = u64::MAX;

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor").field("pid", &self.pid).finish()
    }
}

/// What the reactor's lock guards.
struct Reactors {
    sources: HashMap<u64, Entry>,
    next_key: u64,
    /// Futures waiting, over every source: the thread ends only at none
    /// (and no alarm).
    waiting: usize,
    /// Alarms by when they go off (then the order they were set).
    alarms: BTreeMap<(Instant, u64), Waker>,
    /// Until when the thread sleeps at the latest (`None`: until woken).
    sleeps_until: Option<Instant>,
    thread_running: bool,
    /// The thread is in (or about to enter) its wait, and nobody rang.
    asleep: bool,
}

/// One source's descriptor and the futures waiting on it.
struct Entry {
    fd: OwnedFd,
    events: u32,
    /// In the epoll (armed or not).
    added: bool,
    /// Will be reported once when ready (one shot, not yet reported).
    armed: bool,
    waiters: Vec<Waiter>,
}

/// Reports taken from the kernel in one go.
const REPORTS_PER_WAIT: usize = 64;

impl Reactor {
    /// This process's reactor, made on first use (and again in a forked child).
    fn of_this_process() -> io::Result<Arc<Reactor>> {
        // No fork while the slot is locked: a child finds it free.
        let _no_fork_now = super::fork_gate_read();
        let mut current = CURRENT.lock().unwrap_or_else(PoisonError::into_inner);
        let pid = std::process::id();
        if let Some(reactor) = current.as_ref().filter(|r| r.pid == pid) {
            return Ok(Arc::clone(reactor));
        }
        let epoll = Epoll::new()?;
        let bell = Bell::new()?;
        epoll.add_readable(bell.as_raw_fd(), BELL_KEY)?;
        let reactor = Arc::new(Reactor {
            pid,
            epoll,
            bell,
            state: Mutex::new(Reactors {
                sources: HashMap::new(),
                next_key: 0,
                waiting: 0,
                alarms: BTreeMap::new(),
                sleeps_until: None,
                thread_running: false,
                asleep: false,
            }),
        });
        // A parent's copy, in a forked child: never touched again (its
        // descriptors were closed at the fork, their numbers may be
        // another's now, and its lock may have been held), so never dropped.
        if let Some(parents) = current.replace(Arc::clone(&reactor)) {
            std::mem::forget(parents);
        }
        Ok(reactor)
    }

    fn lock(&self) -> MutexGuard<'_, Reactors> {
        // A panic cannot leave `Reactors` half-changed: go on with it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Something new to wait for: the thread starts, or, asleep, is woken
    /// to wait for it too (an alarm sooner than its sleep, say). As the
    /// watch threads were woken: on an idle machine a reply that finds it
    /// long asleep wakes it slowly. Measured on this VM (tokio's
    /// current-thread runtime, a round trip through a Pipe with a child,
    /// medians): 52-57 us without the ring, 5-6 us with it, as before the
    /// reactor; with a busy process per CPU, 5 us either way.
    fn stir(self: &Arc<Self>, state: &mut Reactors) -> io::Result<()> {
        if state.thread_running {
            if std::mem::replace(&mut state.asleep, false) {
                self.bell.ring();
            }
            return Ok(());
        }
        let thread = Arc::clone(self);
        spawn_named(NAME, move || thread.run())?;
        state.thread_running = true;
        Ok(())
    }

    /// The thread: waits for reports, wakes the futures of each reported
    /// source, and ends after [`IDLE_EXIT`] with no future waiting.
    fn run(self: Arc<Self>) {
        let mut reports = [epoll::NO_REPORT; REPORTS_PER_WAIT];
        let mut idle_since: Option<Instant> = None;
        loop {
            let deadline = {
                let mut state = self.lock();
                state.asleep = true;
                let next_alarm = state.alarms.keys().next().map(|&(at, _)| at);
                let until = if state.waiting > 0 || next_alarm.is_some() {
                    idle_since = None;
                    next_alarm
                } else {
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    let left = IDLE_EXIT.saturating_sub(since.elapsed());
                    if left.is_zero() {
                        state.thread_running = false;
                        return;
                    }
                    Instant::now().checked_add(left)
                };
                state.sleeps_until = until;
                until.map_or(Deadline::never(), Deadline::at)
            };
            let reported = match self.epoll.wait(&mut reports, deadline) {
                Ok(n) => n,
                Err(_) => {
                    // Cannot wait (ENOMEM): every future looks for itself,
                    // and waits again, a moment later.
                    self.wake_everyone();
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            let mut due = Vec::new();
            {
                let mut state = self.lock();
                let Reactors {
                    sources,
                    waiting,
                    asleep,
                    alarms,
                    ..
                } = &mut *state;
                *asleep = false;
                let now = Instant::now();
                while let Some(alarm) = alarms.first_entry() {
                    if alarm.key().0 > now {
                        break;
                    }
                    due.push(Waiter {
                        ticket: 0,
                        seen: 0,
                        waker: alarm.remove(),
                    });
                }
                for report in &reports[..reported] {
                    if epoll::key_of(report) == BELL_KEY {
                        self.bell.quiet();
                        continue;
                    }
                    if let Some(entry) = sources.get_mut(&epoll::key_of(report)) {
                        entry.armed = false;
                        *waiting -= entry.waiters.len();
                        due.append(&mut entry.waiters);
                    }
                }
            }
            wake_all(due);
        }
    }

    /// Wakes every waiting future (each tries its call again).
    fn wake_everyone(&self) {
        let mut due = Vec::new();
        {
            let mut state = self.lock();
            for entry in state.sources.values_mut() {
                entry.armed = false;
                due.append(&mut entry.waiters);
            }
            state.waiting = 0;
        }
        wake_all(due);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{until, Flag};
    use super::*;
    use std::sync::atomic::Ordering;

    fn pipe() -> (OwnedFd, OwnedFd) {
        crate::os::fd::pipe_cloexec().expect("a pipe")
    }

    #[test]
    fn a_waiter_is_woken_when_its_descriptor_is_ready_and_not_before() {
        let (read, write) = pipe();
        let source = Source::new(&read, Readiness::Readable).expect("a source");
        let flag = Arc::new(Flag::default());
        source.wait(1, &Waker::from(flag.clone())).expect("armed");
        std::thread::sleep(Duration::from_millis(50));
        assert!(!flag.0.load(Ordering::SeqCst), "woken with nothing to read");
        crate::os::fd::write_all_blocking(write.as_raw_fd(), b"x").expect("written");
        assert!(until(|| flag.0.load(Ordering::SeqCst)), "never woken");
        // Armed again by the next wait: still readable, so woken again.
        let again = Arc::new(Flag::default());
        source.wait(2, &Waker::from(again.clone())).expect("armed");
        assert!(until(|| again.0.load(Ordering::SeqCst)), "not woken again");
    }

    #[test]
    fn a_forgotten_waiter_is_not_woken() {
        let (read, write) = pipe();
        let source = Source::new(&read, Readiness::Readable).expect("a source");
        let gone = Arc::new(Flag::default());
        let stays = Arc::new(Flag::default());
        source.wait(1, &Waker::from(gone.clone())).expect("armed");
        source.wait(2, &Waker::from(stays.clone())).expect("armed");
        source.forget(1);
        crate::os::fd::write_all_blocking(write.as_raw_fd(), b"x").expect("written");
        assert!(until(|| stays.0.load(Ordering::SeqCst)), "never woken");
        assert!(
            !gone.0.load(Ordering::SeqCst),
            "a forgotten waiter was woken"
        );
    }

    /// An alarm goes off once its moment has passed, not before; a sooner
    /// one set while the thread sleeps toward a later one goes off first;
    /// a dropped one never does.
    #[test]
    fn alarms_go_off_at_their_moment_and_not_once_dropped() {
        let now = Instant::now();
        let late = Arc::new(Flag::default());
        let _late = Alarm::new(now + Duration::from_secs(30), &Waker::from(late.clone()))
            .expect("an alarm");
        let dropped = Arc::new(Flag::default());
        let gone = Alarm::new(
            now + Duration::from_millis(150),
            &Waker::from(dropped.clone()),
        )
        .expect("an alarm");
        drop(gone);
        // The thread is asleep toward the 30 s alarm now, or soon.
        std::thread::sleep(Duration::from_millis(20));
        let soon = Arc::new(Flag::default());
        let set = Instant::now();
        let _soon = Alarm::new(
            set + Duration::from_millis(300),
            &Waker::from(Arc::new(Flag::default())),
        )
        .expect("an alarm");
        _soon.set_waker(&Waker::from(soon.clone()));
        assert!(until(|| soon.0.load(Ordering::SeqCst)), "never went off");
        assert!(
            set.elapsed() >= Duration::from_millis(300),
            "went off early"
        );
        assert!(
            !dropped.0.load(Ordering::SeqCst),
            "a dropped alarm went off"
        );
        assert!(!late.0.load(Ordering::SeqCst), "the 30 s alarm went off");
    }

    /// The reactor thread's voluntary context switches so far.
    fn reactor_wakes() -> u64 {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return 0;
        };
        tasks
            .flatten()
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| c.trim() == format!("{}{NAME}", super::super::THREAD_PREFIX))
            })
            .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
            .flat_map(|status| {
                status
                    .lines()
                    .filter_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                    .filter_map(|n| n.trim().parse::<u64>().ok())
                    .collect::<Vec<_>>()
            })
            .sum()
    }

    /// Alarms later than the one the thread sleeps toward do not wake it:
    /// it sees them when it wakes (a wake for every timed call cost a
    /// switch each, 7,796 for 5,000 waiting timed acquires in a probe).
    #[test]
    fn a_later_alarm_does_not_wake_the_thread() {
        let first =
            Alarm::new(Instant::now() + Duration::from_secs(30), Waker::noop()).expect("an alarm");
        // Asleep toward it now, or soon.
        std::thread::sleep(Duration::from_millis(50));
        let before = reactor_wakes();
        // Apart, as timed calls come: each finds the thread asleep again.
        let later: Vec<Alarm> = (0..50)
            .map(|i| {
                std::thread::sleep(Duration::from_millis(2));
                let at = Instant::now() + Duration::from_secs(60 + i);
                Alarm::new(at, Waker::noop()).expect("an alarm")
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        // (Other tests of this process may wake it meanwhile: a bound, not 0.)
        let woken = reactor_wakes() - before;
        assert!(woken < 25, "50 later alarms woke the thread {woken} times");
        drop((first, later));
    }

    #[test]
    fn a_dropped_source_closes_its_duplicate_at_once() {
        let (read, write) = pipe();
        let source = Source::new(&read, Readiness::Readable).expect("a source");
        source.wait(1, Waker::noop()).expect("armed");
        drop(read);
        drop(source);
        // No reader is left, the duplicate included: the write end says
        // so at once (not a second later, when the thread would end).
        let mut probe = [libc::pollfd {
            fd: write.as_raw_fd(),
            events: 0,
            revents: 0,
        }];
        let n = crate::os::poll::poll_many(&mut probe, Deadline::after(Duration::from_secs(5)))
            .expect("polled");
        assert_eq!(n, 1, "the write end saw no reader leave");
        assert_ne!(probe[0].revents & libc::POLLERR, 0);
    }
}
