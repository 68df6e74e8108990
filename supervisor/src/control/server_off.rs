//! The control socket's stand-in when outlast is built without its
//! `control` feature (whose JSON would bring serde_json into every user's
//! crate): asking a run for a socket is a setup error that says so, and
//! the run loop is otherwise the same.

use std::os::fd::RawFd;

use super::protocol::{Command, Reply};
use super::ControlAt;

/// Why the control socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no control socket: outlast was built without its `control` feature")]
    NotBuilt,
}

/// Never made: [`ControlServer::bind`] has nothing to open.
pub struct ControlServer {
    _never: std::convert::Infallible,
}

impl ControlServer {
    /// `None` for [`ControlAt::Off`]; any socket asked for is refused.
    pub fn bind(at: &ControlAt) -> Result<Option<ControlServer>, ControlError> {
        match at {
            ControlAt::Off => Ok(None),
            ControlAt::Default | ControlAt::Path(_) => Err(ControlError::NotBuilt),
        }
    }

    pub fn has_peers(&self) -> bool {
        false
    }

    pub fn fds(&self) -> Vec<RawFd> {
        Vec::new()
    }

    pub fn serve(&mut self, _handle: impl FnMut(Command) -> Reply) {}
}
