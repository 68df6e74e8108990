//! Types of the user's own, kept by a manager: the data-only form of
//! Python's `BaseManager.register`. A type says how it answers a request
//! (a serde enum in, a serde reply out, `&mut self` on the server); the
//! manager is started knowing the types it may make, and a client names
//! one and sends its initial state and requests as data. Nothing a client
//! sends is run as code: an unknown name is an error, a request that does
//! not decode is an error.

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::process::CodeRef;

/// A type a manager can keep and serve (see [`crate::manager::Shared`]).
///
/// ```
/// use outlast_ipc::manager::SharedType;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Tally { seen: Vec<String> }
///
/// #[derive(Serialize, Deserialize)]
/// enum TallyRequest { Add(String), Count }
///
/// impl SharedType for Tally {
///     const NAME: &'static str = "tally";
///     type Request = TallyRequest;
///     type Reply = usize;
///     fn handle(&mut self, request: TallyRequest) -> usize {
///         match request {
///             TallyRequest::Add(name) => { self.seen.push(name); self.seen.len() }
///             TallyRequest::Count => self.seen.len(),
///         }
///     }
/// }
/// ```
pub trait SharedType: Serialize + DeserializeOwned + Send + 'static {
    /// The name clients ask for it by; unique among a manager's types.
    const NAME: &'static str;
    type Request: Serialize + DeserializeOwned;
    type Reply: Serialize + DeserializeOwned;
    /// Answers one request, on the server, one request at a time.
    fn handle(&mut self, request: Self::Request) -> Self::Reply;
}

/// A registered object on the server, its types erased to bytes.
pub(super) trait ErasedShared: Send {
    fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, String>;
}

struct Held<T>(T);

impl<T: SharedType> ErasedShared for Held<T> {
    fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, String> {
        let (request, _): (T::Request, _) = codec::take_payload(request)
            .map_err(|e| format!("a request for `{}` that does not decode: {e}", T::NAME))?;
        // A handler that panics is an error reply in words, its object
        // left as the panic left it (under `panic = "abort"` the server
        // ends here instead: nothing can be caught).
        let reply = panic::catch_unwind(AssertUnwindSafe(|| self.0.handle(request))).map_err(
            |payload| {
                let message = crate::process::panic_message(payload.as_ref());
                format!("`{}`'s handler panicked: {message}", T::NAME)
            },
        )?;
        let mut encoded = Vec::new();
        codec::encode_append(&reply, &mut encoded).map_err(|e| e.to_string())?;
        Ok(encoded)
    }
}

/// Makes a `T` from its encoded initial state.
type Factory = fn(&[u8]) -> Result<Box<dyn ErasedShared>, String>;

fn make<T: SharedType>(state: &[u8]) -> Result<Box<dyn ErasedShared>, String> {
    let (value, _): (T, _) = codec::take_payload(state)
        .map_err(|e| format!("a `{}` state that does not decode: {e}", T::NAME))?;
    Ok(Box::new(Held(value)))
}

/// The types a manager may make, as they travel to its server process:
/// names and code references (the server runs this same executable).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct Registry {
    types: Vec<(String, CodeRef)>,
}

impl Registry {
    pub(super) fn add<T: SharedType>(&mut self) {
        let factory: Factory = make::<T>;
        self.types.retain(|(name, _)| name != T::NAME);
        self.types
            .push((T::NAME.to_string(), CodeRef::new(factory as *const ())));
    }

    /// The factories by name, in the server process.
    pub(super) fn factories(&self) -> Factories {
        let by_name = self
            .types
            .iter()
            .map(|(name, code)| {
                // SAFETY: the registry is a `Process` argument written by the
                // manager's creator, which runs this executable, from
                // `Factory` pointers (`add`); no client's bytes reach it.
                let factory = unsafe { std::mem::transmute::<*const (), Factory>(code.address()) };
                (name.clone(), factory)
            })
            .collect();
        Factories { by_name }
    }
}

/// The server's table of registered types.
pub(super) struct Factories {
    by_name: HashMap<String, Factory>,
}

impl Factories {
    pub(super) fn make(
        &self,
        type_name: &str,
        state: &[u8],
    ) -> Result<Box<dyn ErasedShared>, String> {
        let factory = self
            .by_name
            .get(type_name)
            .ok_or_else(|| format!("no type `{type_name}` is registered with this manager"))?;
        factory(state)
    }
}
