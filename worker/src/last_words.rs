//! A task's last words. Under `panic = "abort"` a panic ends the worker
//! process right after the panic hook: nothing unwinds back to the worker
//! loop, and whatever the task had done dies with it. A runner whose task
//! holds many items (a pool's chunk) can still send what it has, from its
//! panic hook, through [`send`]: the worker loop lends its link for the
//! length of each task (`lend`), on the thread that runs it.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use crate::heartbeat::WorkerState;
use crate::link::WorkerLink;
use crate::protocol::{FromWorker, TaskOutput, TaskResult};
use crate::runtime::IDLE_BEAT;

/// How long last words may wait for room in the results ring: the
/// supervisor drains it within milliseconds unless it is stopped itself.
const PATIENCE: Duration = Duration::from_secs(10);

thread_local! {
    /// The task this thread runs and the link its loop lent for it.
    static LENT: Cell<Option<(u64, *const RefCell<WorkerLink>)>> = const { Cell::new(None) };
}

/// Runs `f` (task `task`) with `link` lent to [`send`] on this thread.
pub(crate) fn lend<R>(link: &RefCell<WorkerLink>, task: u64, f: impl FnOnce() -> R) -> R {
    /// Puts back what was lent before, however `f` ends.
    struct Restore(Option<(u64, *const RefCell<WorkerLink>)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = LENT.try_with(|lent| lent.set(self.0));
        }
    }
    let _restore = Restore(LENT.replace(Some((task, link as *const _))));
    f()
}

/// Why last words were not sent.
#[derive(Debug, PartialEq, Eq)]
pub enum LastWordsError {
    /// This thread runs no task (a thread of the task's own, or no task).
    NoTask,
    /// The link was in use when the panic came (from inside it).
    LinkBusy,
    /// The supervisor is gone, or its ring stayed full.
    NotSent(String),
}

/// From a panic hook on the thread running a task: sends `output` as that
/// task's output, after marking the worker as aborting (its slot must not
/// claim a task the supervisor has counted). The process ends right after;
/// the supervisor takes the output as it takes any other, then sees the
/// death as the cost of that answer rather than a crash.
pub fn send(output: Vec<u8>) -> Result<(), LastWordsError> {
    let (task, link) = LENT
        .try_with(Cell::get)
        .ok()
        .flatten()
        .ok_or(LastWordsError::NoTask)?;
    // SAFETY: `lend` stored this pointer from a reference that outlives
    // its call and takes it back before returning; a panic hook runs on
    // the panicking thread, deeper in that very call, so it is live.
    let link = unsafe { &*link };
    let mut link = link
        .try_borrow_mut()
        .map_err(|_| LastWordsError::LinkBusy)?;
    link.heartbeat().beat(WorkerState::Aborting, None);
    let message = FromWorker::Results(vec![TaskResult {
        id: task,
        output: TaskOutput::Done(output),
    }]);
    link.send(&message, IDLE_BEAT, PATIENCE)
        .map_err(|e| LastWordsError::NotSent(e.to_string()))
}
