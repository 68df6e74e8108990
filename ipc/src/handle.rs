//! Handing file-descriptor-backed handles (Pipe ends today; queues, shared
//! memory and locks later) to a child process through ordinary serde.
//!
//! While a process's arguments are serialized, a thread-local *export table*
//! is active: a handle's `Serialize` impl registers its descriptor there and
//! writes only the slot number. The start method then makes exactly those
//! descriptors available in the child (inheritance today, `SCM_RIGHTS` for a
//! forkserver later), and the child deserializes with an *import table* that
//! turns slot numbers back into owned descriptors. Outside those two scopes a
//! handle refuses to serialize, with an error saying where handles may go.

use std::cell::RefCell;
use std::os::fd::{OwnedFd, RawFd};

thread_local! {
    static EXPORTS: RefCell<Option<Vec<RawFd>>> = const { RefCell::new(None) };
    static IMPORTS: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
}

/// Why a handle could not cross a process boundary.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandleError {
    #[error(
        "handles (Pipe ends and other OS-backed objects) can only be sent as Process arguments"
    )]
    NoExportScope,
    #[error("a handle was deserialized outside a child's bootstrap")]
    NoImportScope,
    #[error("handle slot {0} does not exist or was already taken")]
    BadSlot(u32),
}

/// Registers `fd` for the child being prepared; returns its slot number.
pub(crate) fn export_fd(fd: RawFd) -> Result<u32, HandleError> {
    EXPORTS.with(|cell| match cell.borrow_mut().as_mut() {
        Some(fds) => {
            fds.push(fd);
            Ok((fds.len() - 1) as u32)
        }
        None => Err(HandleError::NoExportScope),
    })
}

/// Takes ownership of the descriptor in `slot` (each slot can be taken once).
pub(crate) fn import_fd(slot: u32) -> Result<OwnedFd, HandleError> {
    IMPORTS.with(|cell| match cell.borrow_mut().as_mut() {
        Some(fds) => fds
            .get_mut(slot as usize)
            .and_then(Option::take)
            .ok_or(HandleError::BadSlot(slot)),
        None => Err(HandleError::NoImportScope),
    })
}

/// Runs `f` (a serialization) with an export table, returning the descriptors
/// the serialized value refers to, in slot order.
pub(crate) fn collecting_handles<T>(f: impl FnOnce() -> T) -> (T, Vec<RawFd>) {
    let previous = EXPORTS.with(|cell| cell.borrow_mut().replace(Vec::new()));
    let out = f();
    let fds = EXPORTS.with(|cell| std::mem::replace(&mut *cell.borrow_mut(), previous));
    (out, fds.unwrap_or_default())
}

/// Runs `f` (a deserialization) with `fds` as the import table. Descriptors the
/// value did not claim are closed when this returns.
pub(crate) fn providing_handles<T>(fds: Vec<OwnedFd>, f: impl FnOnce() -> T) -> T {
    let table = fds.into_iter().map(Some).collect();
    let previous = IMPORTS.with(|cell| cell.borrow_mut().replace(table));
    let out = f();
    IMPORTS.with(|cell| *cell.borrow_mut() = previous);
    out
}
