//! What an object does with one operation: answer it, or have the caller
//! wait (the server parks the request and tries it again whenever the
//! object changes, until it is answered or its deadline passes).

use super::super::protocol::{Op, Reply};

/// Clients by the server's number for their connection.
pub(super) type ClientId = u64;

/// The outcome of one attempt at an operation.
pub(super) enum Step {
    Reply(Reply),
    /// Not now: park it (only for an operation that may wait).
    Wait,
}

impl From<Reply> for Step {
    fn from(reply: Reply) -> Self {
        Step::Reply(reply)
    }
}

/// An error reply.
pub(super) fn refuse(why: impl Into<String>) -> Step {
    Step::Reply(Reply::Error(why.into()))
}

/// How long an operation may wait (see [`Op::wait_of`]).
pub(super) fn wait_of(op: &Op) -> Option<Option<u64>> {
    op.wait_of()
}

/// Whether a request may end up parked (batches refuse those).
pub(super) fn may_wait(op: &Op) -> bool {
    op.may_wait()
}

/// The answer to a waiting operation whose deadline passed, for the kinds
/// whose answer is plain "no".
pub(super) fn timed_out(op: &Op) -> Reply {
    match op {
        Op::Take(_) => Reply::Value(None),
        _ => Reply::Bool(false),
    }
}
