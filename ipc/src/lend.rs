//! What a process keeps alive for a child while the child may still need
//! it: a manager proxy given to a `Process` in its arguments keeps this
//! process's reference to the object until that `Process` is joined or
//! dropped, so that the object cannot be freed between `start` and the
//! child's first call (which counts the child's own reference).
//!
//! As [`crate::handle`] does for descriptors, a thread-local table is
//! active while the arguments are serialized; a proxy's `Serialize` lends
//! its reference there.

use std::any::Any;
use std::cell::RefCell;
use std::sync::Arc;

/// Something kept alive for a child.
pub(crate) type Lent = Arc<dyn Any + Send + Sync>;

thread_local! {
    static LENDING: RefCell<Option<Vec<Lent>>> = const { RefCell::new(None) };
}

/// Keeps `value` alive for the child whose arguments are being serialized
/// (outside that, nothing: a proxy sent elsewhere lends nothing).
pub(crate) fn lend(value: Lent) {
    LENDING.with(|lending| {
        if let Some(lent) = lending.borrow_mut().as_mut() {
            lent.push(value);
        }
    });
}

/// Runs `f` (which serializes a child's arguments) and returns what was
/// lent meanwhile.
pub(crate) fn collecting<T>(f: impl FnOnce() -> T) -> (T, Vec<Lent>) {
    let outer = LENDING.with(|lending| lending.borrow_mut().replace(Vec::new()));
    let out = f();
    let lent = LENDING.with(|lending| std::mem::replace(&mut *lending.borrow_mut(), outer));
    (out, lent.unwrap_or_default())
}
