//! The proxy of a user-registered type: requests of the type's own
//! request enum, answered by its `handle` on the server.

use std::marker::PhantomData;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::super::protocol::Op;
use super::super::register::SharedType;
use super::super::ManagerError;
use super::{encode, expect_value, Target};

/// An object of a type registered with the manager
/// ([`crate::manager::ManagerBuilder::register`]), made by
/// [`crate::manager::Manager::shared`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Shared<T> {
    target: Target,
    #[serde(skip)]
    _types: PhantomData<fn() -> T>,
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared {
            target: self.target.clone(),
            _types: PhantomData,
        }
    }
}

impl<T: SharedType> Shared<T> {
    pub(in crate::manager) fn new(target: Target) -> Self {
        Shared {
            target,
            _types: PhantomData,
        }
    }

    /// The same proxy, each call bounded by `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.target.timeout = Some(timeout);
        self
    }

    /// Sends `request` to the object; its reply.
    pub fn call(&self, request: &T::Request) -> Result<T::Reply, ManagerError> {
        self.target
            .value(Op::Call(encode(request)?))?
            .ok_or_else(|| ManagerError::Protocol("a call gave nothing".into()))
    }

    /// [`call`](Self::call), awaited (on one of the process's connections
    /// for awaited calls, as [`Dict::get_async`](super::Dict::get_async)):
    /// a handler that takes long holds that connection, not the
    /// executor's thread. Dropped once the request is out, the handler
    /// still runs, and its reply is read and dropped.
    pub async fn call_async(&self, request: &T::Request) -> Result<T::Reply, ManagerError> {
        let reply = self.target.call_async(Op::Call(encode(request)?)).await?;
        expect_value(reply)?.ok_or_else(|| ManagerError::Protocol("a call gave nothing".into()))
    }
}
