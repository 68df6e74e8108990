//! What a pool's workers run. Each task names its function and a
//! trampoline instantiated for its types (both as [`CodeRef`]s, like a
//! `Process` entry); the worker's [`PoolRunner`] decodes the arguments,
//! calls the function, catches a panic with its location, and encodes the
//! [`Reply`]. A panic is the item's answer, not a failed attempt: it is
//! not retried (the same input would panic again).

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};

use ipc::process::CodeRef;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use worker::job::TaskContext;
use worker::runner::Runner;

/// Calls the function at `func` on postcard `args`; gives the encoded [`Reply`].
pub(crate) type Trampoline = fn(func: *const (), args: &[u8]) -> Vec<u8>;
/// Runs an initializer at `func` on postcard `args`.
pub(crate) type InitTrampoline = fn(func: *const (), args: &[u8]) -> Result<(), String>;

/// What a pool's worker gives back for one item.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply<R> {
    Returned(R),
    Panicked {
        message: String,
        location: Option<String>,
    },
    /// The item could not be decoded or its result encoded.
    Failed(String),
}

/// The head of every pool task's input: which function, through which
/// trampoline. The arguments' postcard bytes follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Call {
    trampoline: CodeRef,
    func: CodeRef,
}

impl Call {
    /// `f(T) -> R`.
    pub(crate) fn one<T, R>(f: fn(T) -> R) -> Self
    where
        T: DeserializeOwned,
        R: Serialize,
    {
        Call {
            trampoline: CodeRef::new(call_one::<T, R> as Trampoline as *const ()),
            func: CodeRef::new(f as *const ()),
        }
    }

    /// `f(A, B) -> R`, given `(A, B)`.
    pub(crate) fn two<A, B, R>(f: fn(A, B) -> R) -> Self
    where
        A: DeserializeOwned,
        B: DeserializeOwned,
        R: Serialize,
    {
        Call {
            trampoline: CodeRef::new(call_two::<A, B, R> as Trampoline as *const ()),
            func: CodeRef::new(f as *const ()),
        }
    }

    /// A task's input: this call, then `args`.
    pub(crate) fn encode<T: Serialize>(&self, args: &T) -> Result<Vec<u8>, String> {
        let head = postcard::to_allocvec(self).map_err(|e| e.to_string())?;
        postcard::to_extend(args, head).map_err(|e| format!("cannot encode the item: {e}"))
    }
}

/// An initializer and its encoded arguments.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct InitCall {
    trampoline: CodeRef,
    func: CodeRef,
    args: ByteBuf,
}

impl InitCall {
    pub(crate) fn new<A>(f: fn(A), args: &A) -> Result<Self, String>
    where
        A: Serialize + DeserializeOwned,
    {
        Ok(InitCall {
            trampoline: CodeRef::new(init_one::<A> as InitTrampoline as *const ()),
            func: CodeRef::new(f as *const ()),
            args: ByteBuf::from(
                postcard::to_allocvec(args)
                    .map_err(|e| format!("cannot encode the initializer's arguments: {e}"))?,
            ),
        })
    }
}

/// The worker side of a pool: any function, per task.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct PoolRunner {
    pub(crate) init: Option<InitCall>,
}

thread_local! {
    /// Where the last panic happened, for its item's error.
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

impl Runner for PoolRunner {
    fn start(&mut self) -> Result<(), String> {
        // A panicking item is an answer sent back, not noise on stderr.
        panic::set_hook(Box::new(|info| {
            let at = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            PANIC_LOCATION.with(|slot| *slot.borrow_mut() = at);
        }));
        let Some(init) = &self.init else {
            return Ok(());
        };
        // SAFETY: the parent (trusted by its workers) made both references
        // with CodeRef::new from an InitTrampoline and the fn(A) it was
        // instantiated for, in this same executable.
        let trampoline =
            unsafe { std::mem::transmute::<*const (), InitTrampoline>(init.trampoline.address()) };
        // SAFETY: as above; the trampoline casts it back to its own fn(A).
        let func = unsafe { init.func.address() };
        trampoline(func, &init.args)
    }

    fn run_task(&self, input: &[u8], _ctx: &mut TaskContext<'_>) -> Result<Vec<u8>, String> {
        let (call, args): (Call, &[u8]) =
            postcard::take_from_bytes(input).map_err(|e| format!("not a pool task: {e}"))?;
        // SAFETY: the parent made `call` with Call::one / Call::two from a
        // Trampoline of this executable and the function it was
        // instantiated for; the parent is trusted by its workers.
        let trampoline =
            unsafe { std::mem::transmute::<*const (), Trampoline>(call.trampoline.address()) };
        // SAFETY: as above; the trampoline casts it back to its own type.
        let func = unsafe { call.func.address() };
        Ok(trampoline(func, args))
    }
}

fn call_one<T: DeserializeOwned, R: Serialize>(func: *const (), args: &[u8]) -> Vec<u8> {
    // SAFETY: `func` came from `Call::one::<T, R>`, which took it from a
    // `fn(T) -> R` and paired it with this very instantiation.
    let f = unsafe { std::mem::transmute::<*const (), fn(T) -> R>(func) };
    let reply = match postcard::from_bytes::<T>(args) {
        Ok(item) => guarded(move || f(item)),
        Err(e) => Reply::Failed(format!("cannot decode the item: {e}")),
    };
    encode_reply(&reply)
}

fn call_two<A, B, R>(func: *const (), args: &[u8]) -> Vec<u8>
where
    A: DeserializeOwned,
    B: DeserializeOwned,
    R: Serialize,
{
    // SAFETY: `func` came from `Call::two::<A, B, R>`, which took it from
    // a `fn(A, B) -> R` and paired it with this very instantiation.
    let f = unsafe { std::mem::transmute::<*const (), fn(A, B) -> R>(func) };
    let reply = match postcard::from_bytes::<(A, B)>(args) {
        Ok((a, b)) => guarded(move || f(a, b)),
        Err(e) => Reply::Failed(format!("cannot decode the item: {e}")),
    };
    encode_reply(&reply)
}

fn init_one<A: DeserializeOwned>(func: *const (), args: &[u8]) -> Result<(), String> {
    // SAFETY: `func` came from `InitCall::new::<A>`, which took it from a
    // `fn(A)` and paired it with this very instantiation.
    let f = unsafe { std::mem::transmute::<*const (), fn(A)>(func) };
    let args: A = postcard::from_bytes(args)
        .map_err(|e| format!("cannot decode the initializer's arguments: {e}"))?;
    match guarded(move || f(args)) {
        Reply::Returned(()) => Ok(()),
        Reply::Panicked { message, location } => Err(format!(
            "the initializer panicked{}: {message}",
            location.map(|l| format!(" at {l}")).unwrap_or_default()
        )),
        Reply::Failed(why) => Err(why),
    }
}

/// Runs `f`, turning a panic into its message and location.
fn guarded<R>(f: impl FnOnce() -> R) -> Reply<R> {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => Reply::Returned(value),
        Err(payload) => {
            let message = if let Some(s) = payload.downcast_ref::<&str>() {
                (*s).to_string()
            } else if let Some(s) = payload.downcast_ref::<String>() {
                s.clone()
            } else {
                "(a panic with a non-string payload)".to_string()
            };
            let location = PANIC_LOCATION.with(|slot| slot.borrow_mut().take());
            Reply::Panicked { message, location }
        }
    }
}

fn encode_reply<R: Serialize>(reply: &Reply<R>) -> Vec<u8> {
    postcard::to_allocvec(reply).unwrap_or_else(|e| {
        // A `Failed` is the same bytes whatever R is.
        postcard::to_allocvec(&Reply::<()>::Failed(format!(
            "cannot encode the result: {e}"
        )))
        .unwrap_or_default()
    })
}
