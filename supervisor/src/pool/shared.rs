//! What a pool's handles and its thread share, and the thread itself.
//!
//! The pool's thread owns the engine and turns it: it hands items to
//! workers, takes their results, replaces the dead, and after each turn
//! wakes whoever waits on what settled: threads blocked in a call
//! (a condition variable), futures awaited by an executor (their wakers),
//! and done callbacks (run on this thread, as CPython's result handler
//! runs them). The handles ([`Pool`](super::Pool), `AsyncResult`, the
//! maps) only lock the [`State`], submit, and wait: so a pool is
//! `Send + Sync`, and results arrive while nobody is inside a call.
//!
//! Handles wake the thread through a doorbell it polls with the workers'
//! descriptors, so a submission is dispatched at once, not at the next tick.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::Duration;

use outlast_ipc::spsc::doorbell::{self, Listener, Ringer};
use outlast_worker::launch::Launcher;
use outlast_worker::work::AnyJob;

use super::call::PoolRunner;
use super::init::InitCall;
use super::store::{PoolWork, Store};
use super::stream::StreamId;
use super::PoolError;
use crate::options::RunOptions;
use crate::run::Engine;

/// The longest the pool's thread waits in one turn when nothing happens.
const TURN: Duration = Duration::from_millis(100);

/// A done callback, ready to run.
pub(crate) type Callback = Box<dyn FnOnce() + Send>;

/// What the pool's thread is asked to do to its engine.
pub(crate) enum Command {
    /// Let the workers finish and exit (after `join`'s wait).
    Finish,
    /// Kill the workers now; what is unsettled is lost.
    Terminate,
}

/// Everything under the pool's one lock.
pub(crate) struct State {
    pub(crate) store: Store,
    /// No more submissions (`close`, `terminate`).
    pub(crate) closed: bool,
    /// The engine is over, and why: nothing will settle any more.
    pub(crate) stopped: Option<String>,
    pub(crate) commands: Vec<Command>,
    /// The engine's workers as of its last turn.
    pub(crate) pids: Vec<u32>,
    pub(crate) started: u64,
    /// Futures waiting for an item to settle, or for any of a stream's.
    pub(crate) wakers: Vec<(Awaited, Waker)>,
    /// Done callbacks waiting for an item, by item id.
    pub(crate) callbacks: Vec<(u64, Callback)>,
}

/// What a waiting future waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Awaited {
    /// This item to settle (an `AsyncResult`, an ordered map's next).
    Item(u64),
    /// Any item of this unordered map to settle.
    Stream(StreamId),
}

impl Awaited {
    fn is_due(self, store: &Store) -> bool {
        match self {
            Awaited::Item(id) => store.is_settled(id),
            Awaited::Stream(stream) => store.peek_stream(stream).is_some(),
        }
    }
}

/// Leaves `waker` in `state` until `awaited` is due (replacing the one a
/// future left for the same before).
pub(crate) fn wait_for(state: &mut State, awaited: Awaited, waker: &Waker) {
    match state.wakers.iter_mut().find(|(a, _)| *a == awaited) {
        Some((_, existing)) => existing.clone_from(waker),
        None => state.wakers.push((awaited, waker.clone())),
    }
}

/// The shared part: the state, its condition variable, the doorbell.
pub(crate) struct Inner {
    state: Mutex<State>,
    changed: Condvar,
    bell: Ringer,
    /// A ring the pool's thread has not taken yet: more submissions
    /// meanwhile need no write of their own (a `write(2)` per `submit`
    /// was most of its cost).
    rung: AtomicBool,
}

impl Inner {
    /// The state, locked. A panic while it was held (ours: callbacks run
    /// outside it) leaves it usable: each change is whole before unlock.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for the next change, at most `timeout`.
    pub(crate) fn wait<'a>(
        &self,
        guard: MutexGuard<'a, State>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, State> {
        match timeout {
            None => self
                .changed
                .wait(guard)
                .unwrap_or_else(PoisonError::into_inner),
            Some(t) => {
                self.changed
                    .wait_timeout(guard, t)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        }
    }

    /// Wakes the pool's thread (something was submitted or commanded).
    pub(crate) fn wake_engine(&self) {
        if !self.rung.swap(true, Ordering::SeqCst) {
            self.bell.ring();
        }
    }

    /// The pool's thread took the rings: it looks at the store after this,
    /// so what was submitted before is seen, and what comes after rings.
    fn rings_taken(&self, listener: &Listener) {
        listener.drain();
        self.rung.store(false, Ordering::SeqCst);
    }

    pub(crate) fn command(&self, command: Command) {
        self.lock().commands.push(command);
        self.wake_engine();
    }

    /// Waits until the pool's thread has stopped its engine.
    pub(crate) fn wait_stopped(&self) {
        let mut state = self.lock();
        while state.stopped.is_none() {
            state = self.wait(state, Some(TURN));
        }
    }
}

thread_local! {
    static ON_POOL_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Whether this is a pool's own thread (inside a done callback): a wait
/// here would wait for itself.
pub(crate) fn on_pool_thread() -> bool {
    ON_POOL_THREAD.with(Cell::get)
}

/// How to start a pool's thread.
pub(crate) struct Start {
    pub(crate) options: RunOptions,
    pub(crate) init: Option<InitCall>,
    pub(crate) workers: u32,
    pub(crate) chunksize: Option<usize>,
}

/// Starts the pool's thread and its workers: the shared part and the
/// thread, once a worker has started (or why none could).
pub(crate) fn start(start: Start) -> Result<(Arc<Inner>, std::thread::JoinHandle<()>), PoolError> {
    let (bell, listener) = doorbell::doorbell()
        .map_err(|e| PoolError::Stopped(format!("cannot make the pool's doorbell: {e}")))?;
    let inner = Arc::new(Inner {
        state: Mutex::new(State {
            store: Store::new(start.workers, start.chunksize),
            closed: false,
            stopped: None,
            commands: Vec::new(),
            pids: Vec::new(),
            started: 0,
            wakers: Vec::new(),
            callbacks: Vec::new(),
        }),
        changed: Condvar::new(),
        bell,
        rung: AtomicBool::new(false),
    });
    let (ready_tx, ready_rx) = mpsc::channel();
    let theirs = Arc::clone(&inner);
    let thread = std::thread::Builder::new()
        .name("outlast-pool".into())
        .spawn(move || run(theirs, listener, start, ready_tx))
        .map_err(|e| PoolError::Stopped(format!("cannot start the pool's thread: {e}")))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok((inner, thread)),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(PoolError::Stopped(
                "the pool's thread ended at start".into(),
            ))
        }
    }
}

/// The pool's thread: makes the engine (it lives and dies here, so it
/// need not be `Send`), starts the workers, then turns until it is over.
fn run(
    inner: Arc<Inner>,
    listener: Listener,
    start: Start,
    ready: mpsc::Sender<Result<(), PoolError>>,
) {
    ON_POOL_THREAD.with(|on| on.set(true));
    let work = PoolWork {
        shared: Arc::clone(&inner),
        workers: start.workers,
    };
    let runner = PoolRunner { init: start.init };
    let job = AnyJob::from_parts(Box::new(work), Box::new(Launcher::new(runner)));
    let mut options = start.options;
    options.workers = Some(start.workers);
    let mut engine = match Engine::new(options, job, true) {
        Ok(engine) => engine,
        Err(e) => {
            let _ = ready.send(Err(PoolError::Start(e)));
            return;
        }
    };
    engine.wake_on(listener.fd());
    // Starts the workers: a pool that cannot start says so now.
    while engine.workers_started() == 0 && !engine.is_over() {
        engine.turn(Some(Duration::ZERO));
    }
    if engine.is_over() {
        let why = engine
            .stop_reason()
            .unwrap_or_else(|| "no worker started".into());
        let _ = ready.send(Err(PoolError::Stopped(why)));
        return;
    }
    publish(&inner, &engine, None);
    let _ = ready.send(Ok(()));
    drop(ready);
    let mut why_over: Option<String> = None;
    loop {
        let commands = std::mem::take(&mut inner.lock().commands);
        for command in commands {
            match command {
                Command::Finish => engine.finish(),
                Command::Terminate => {
                    why_over.get_or_insert_with(|| "the pool was terminated".into());
                    engine.terminate();
                }
            }
        }
        let over = engine.turn(Some(TURN));
        inner.rings_taken(&listener);
        let why = over.then(|| {
            why_over
                .clone()
                .or_else(|| engine.stop_reason())
                .unwrap_or_else(|| "its workers are gone".into())
        });
        publish(&inner, &engine, why);
        if over {
            return;
        }
    }
}

/// After a turn: the workers as they are, the engine's end if it came,
/// then everyone waiting on something that settled is woken.
fn publish(inner: &Inner, engine: &Engine, over: Option<String>) {
    let mut state = inner.lock();
    state.pids = engine.worker_pids();
    state.started = engine.workers_started();
    if let Some(why) = over {
        state.store.lose_all(&why);
        state.stopped = Some(why);
    }
    let everything = state.stopped.is_some();
    let (wake, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut state.wakers)
        .into_iter()
        .partition(|(awaited, _)| everything || awaited.is_due(&state.store));
    state.wakers = wait;
    let (run, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut state.callbacks)
        .into_iter()
        .partition(|(id, _)| everything || state.store.is_settled(*id));
    state.callbacks = keep;
    drop(state);
    inner.changed.notify_all();
    for (_, waker) in wake {
        waker.wake();
    }
    for (_, callback) in run {
        run_callback(callback);
    }
}

/// Runs a done callback; one that panics is reported, and the pool goes on.
pub(crate) fn run_callback(callback: Callback) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(callback)) {
        let message = outlast_ipc::process::panic_message(panic.as_ref());
        outlast_ipc::os::stderr::line(format_args!(
            "outlast: a pool's done callback panicked: {message}"
        ));
    }
}
