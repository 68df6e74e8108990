//! A pool's initializer (Python's `initializer`, `initargs`): a `fn(A)`
//! run once in every worker, replacements included, before its first item.
//!
//! Its arguments are encoded each time a worker starts, as part of that
//! worker's start arguments, and decoded as the worker takes them in: so
//! handles among them (a `Value`, a `Queue`, a `Lock`, a `Connection`)
//! reach every worker as they reach a `Process`, which is how CPython's
//! `initargs=(counter,)` pattern works here too. The function runs later,
//! from the worker's `start`, where a panic is caught and reported.

use std::sync::{Arc, Mutex, PoisonError};

use outlast_ipc::process::CodeRef;
use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_bytes::ByteBuf;

use super::call::{guarded, Reply};

/// Decodes the arguments of the `fn(A)` at `func` from `args`: the call,
/// ready to run.
type Prepare = fn(func: *const (), args: &[u8]) -> Result<Prepared, String>;

/// An initializer with its arguments decoded, run once.
type Prepared = Box<dyn FnOnce() -> Result<(), String> + Send>;

/// Encodes the arguments (handles included) for one worker's start.
type Encode = Arc<dyn Fn() -> Result<Vec<u8>, String> + Send + Sync>;

/// An initializer: in the parent, its function and typed arguments; in a
/// worker, the call decoded from them.
#[derive(Clone)]
pub(crate) struct InitCall {
    prepare: CodeRef,
    func: CodeRef,
    args: Args,
}

#[derive(Clone)]
enum Args {
    Encode(Encode),
    /// Taken by the first `run`.
    Ready(Arc<Mutex<Option<Prepared>>>),
}

impl std::fmt::Debug for InitCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitCall").finish_non_exhaustive()
    }
}

impl InitCall {
    pub(crate) fn new<A>(f: fn(A), args: A) -> Self
    where
        A: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let encode: Encode = Arc::new(move || {
            let mut encoded = Vec::new();
            outlast_ipc::codec::encode_append(&args, &mut encoded)
                .map_err(|e| format!("cannot encode the initializer's arguments: {e}"))?;
            Ok(encoded)
        });
        InitCall {
            prepare: CodeRef::new(prepare::<A> as Prepare as *const ()),
            func: CodeRef::new(f as *const ()),
            args: Args::Encode(encode),
        }
    }

    /// In a worker: runs the initializer (the first call only).
    pub(crate) fn run(&self) -> Result<(), String> {
        match &self.args {
            Args::Ready(call) => {
                let call = call.lock().unwrap_or_else(PoisonError::into_inner).take();
                call.map_or(Ok(()), |call| call())
            }
            Args::Encode(_) => {
                Err("the initializer did not come with the worker's arguments".into())
            }
        }
    }
}

/// An initializer as it travels to a worker.
#[derive(Serialize, Deserialize)]
struct Wire {
    prepare: CodeRef,
    func: CodeRef,
    args: ByteBuf,
}

impl Serialize for InitCall {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Args::Encode(encode) = &self.args else {
            return Err(S::Error::custom(
                "an initializer already in a worker is not handed on",
            ));
        };
        Wire {
            prepare: self.prepare,
            func: self.func,
            args: ByteBuf::from(encode().map_err(S::Error::custom)?),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for InitCall {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(deserializer)?;
        // SAFETY: the parent (trusted by its workers) made both references
        // with CodeRef::new from a `Prepare` instantiated for the `fn(A)`
        // it paired it with, in this same executable.
        let prepare = unsafe { std::mem::transmute::<*const (), Prepare>(wire.prepare.address()) };
        // SAFETY: as above; `prepare` casts it back to its own `fn(A)`.
        let func = unsafe { wire.func.address() };
        // Decoded now, while the handles the arguments refer to are being
        // handed over (they are gone once the worker's arguments are in).
        let call = prepare(func, &wire.args).map_err(D::Error::custom)?;
        Ok(InitCall {
            prepare: wire.prepare,
            func: wire.func,
            args: Args::Ready(Arc::new(Mutex::new(Some(call)))),
        })
    }
}

fn prepare<A: DeserializeOwned + Send + 'static>(
    func: *const (),
    args: &[u8],
) -> Result<Prepared, String> {
    // SAFETY: `func` came from `InitCall::new::<A>`, which took it from a
    // `fn(A)` and paired it with this very instantiation.
    let f = unsafe { std::mem::transmute::<*const (), fn(A)>(func) };
    let (args, _): (A, _) = outlast_ipc::codec::take_payload(args)
        .map_err(|e| format!("cannot decode the initializer's arguments: {e}"))?;
    Ok(Box::new(move || match guarded(move || f(args)) {
        Reply::Returned(()) => Ok(()),
        Reply::Panicked { message, location } => {
            Err(initializer_panicked(&message, location.as_deref()))
        }
        Reply::Failed(why) | Reply::Err(why) => Err(why),
    }))
}

/// Why a worker whose initializer panicked could not start.
pub(crate) fn initializer_panicked(message: &str, location: Option<&str>) -> String {
    let at = location.map(|l| format!(" at {l}")).unwrap_or_default();
    format!("the initializer panicked{at}: {message}")
}
