//! What the creator and its fork server say to each other over their
//! socketpair: postcard frames, descriptors beside them (`SCM_RIGHTS`).

use serde::{Deserialize, Serialize};

use super::attributes::Changes;
use super::surroundings::Surroundings;
use crate::process::entry::PortableEntry;

/// Bumped whenever a message changes shape.
pub(crate) const PROTOCOL_VERSION: u32 = 5;

/// The server's first message, once it runs its loop.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Hello {
    Ready {
        protocol: u32,
        pid: i32,
    },
    /// It cannot serve (threads started before `outlast_ipc::init()`, ...).
    Refused(String),
}

/// Fork one child. Descriptors, in order: the report file, the
/// status pipe's write end, the creator's stdout and stderr, then the
/// handles of the arguments in slot order; then, if `args_apart`, a
/// sealed memfd of exactly that many bytes holding the arguments (the
/// entry's own are empty); then, for `RequestFrame::InMemfd`, the request.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StartRequest {
    pub entry: PortableEntry,
    /// Arguments this large travel in a memfd of their own, written once
    /// and mapped by the server: not copied into the request, nor read
    /// out of it.
    pub args_apart: Option<u64>,
    pub die_with_parent: bool,
    /// The creator's working directory and environment, if they are no
    /// longer the server's.
    pub surroundings: Option<Surroundings>,
    /// The creator's umask, limits, affinity, nice value, user and ignored
    /// signals, where they differ from the server's.
    pub attributes: Changes,
}

/// What a request's frame holds: the request, or word that it is in a
/// sealed memfd, the request's last descriptor (a request with a large
/// argument, which would otherwise be one huge frame through the socket).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum RequestFrame {
    Inline(Box<StartRequest>),
    InMemfd,
}

/// Requests above this many bytes travel in a memfd.
pub(crate) const INLINE_REQUEST_MAX: usize = 1 << 20;

/// Arguments above this many bytes travel apart, in a memfd.
pub(crate) const ARGS_APART_MIN: usize = 256 << 10;

/// The descriptors in a request before its handles.
pub(crate) const FIXED_FDS: usize = 4;

/// The answer to a [`StartRequest`]. `Started` carries the child's pidfd
/// when the kernel has them.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum StartReply {
    Started { pid: i32 },
    Failed(String),
}
