//! A doorbell: a pipe that carries nothing but wake-ups, for an event loop
//! that polls many peers (the supervisor polls one per worker). The ringer
//! writes a byte without blocking; the listener's descriptor is readable
//! while rings wait, and reads end of file once every ringer is gone, so a
//! dead peer shows as a hang-up too. No buffer of its own: a thousand
//! doorbells cost a thousand pipes, nothing more.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{handle, os};

/// The end that rings.
#[derive(Debug)]
pub struct Ringer {
    fd: OwnedFd,
}

/// The end that hears rings.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
}

/// What draining a listener found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heard {
    /// No ring waiting.
    Nothing,
    /// One or more rings.
    Rang,
    /// Every ringer is gone (after any rings they left).
    Closed,
}

/// A new doorbell: (ringer, listener), both close-on-exec and non-blocking.
pub fn doorbell() -> io::Result<(Ringer, Listener)> {
    let (read, write) = os::fd::pipe_nonblocking()?;
    Ok((Ringer { fd: write }, Listener { fd: read }))
}

impl Ringer {
    /// Rings (never blocks: a full pipe already holds rings enough).
    pub fn ring(&self) {
        os::signals::ignore_default_sigpipe();
        let _ = os::fd::write_some(self.fd.as_raw_fd(), &[&[1]], false, true);
    }
}

impl Listener {
    /// The descriptor to poll for `POLLIN` (a ring or a hang-up).
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Reads every waiting ring.
    pub fn drain(&self) -> Heard {
        let mut buf = [0u8; 64];
        let mut heard = Heard::Nothing;
        loop {
            match os::fd::read_some(self.fd.as_raw_fd(), &mut buf) {
                Ok(0) => return Heard::Closed,
                Ok(_) => heard = Heard::Rang,
                Err(_) => return heard,
            }
        }
    }
}

impl crate::wait::Waitable for Listener {
    fn ready_fd(&self) -> Option<RawFd> {
        Some(self.fd())
    }
    fn ready_now(&self) -> bool {
        false
    }
}

/// A doorbell end inside a serialized Process argument: its descriptor's slot.
#[derive(Serialize, Deserialize)]
struct EndWire {
    slot: u32,
}

fn serialize_fd<S: Serializer>(fd: &OwnedFd, serializer: S) -> Result<S::Ok, S::Error> {
    let slot = handle::export_fd(fd.as_raw_fd()).map_err(S::Error::custom)?;
    EndWire { slot }.serialize(serializer)
}

fn deserialize_fd<'de, D: Deserializer<'de>>(deserializer: D) -> Result<OwnedFd, D::Error> {
    let wire = EndWire::deserialize(deserializer)?;
    let fd = handle::import_fd(wire.slot).map_err(D::Error::custom)?;
    os::fd::set_nonblocking(fd.as_raw_fd(), true).map_err(D::Error::custom)?;
    Ok(fd)
}

impl Serialize for Ringer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_fd(&self.fd, serializer)
    }
}

impl<'de> Deserialize<'de> for Ringer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_fd(deserializer).map(|fd| Ringer { fd })
    }
}

impl Serialize for Listener {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_fd(&self.fd, serializer)
    }
}

impl<'de> Deserialize<'de> for Listener {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_fd(deserializer).map(|fd| Listener { fd })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_are_heard_once_and_a_gone_ringer_closes() {
        let (ringer, listener) = doorbell().expect("doorbell");
        assert_eq!(listener.drain(), Heard::Nothing);
        ringer.ring();
        ringer.ring();
        assert_eq!(listener.drain(), Heard::Rang);
        assert_eq!(listener.drain(), Heard::Nothing);
        ringer.ring();
        drop(ringer);
        assert_eq!(listener.drain(), Heard::Closed);
    }

    #[test]
    fn a_full_pipe_never_blocks_the_ringer() {
        let (ringer, listener) = doorbell().expect("doorbell");
        for _ in 0..200_000 {
            ringer.ring();
        }
        assert_eq!(listener.drain(), Heard::Rang);
    }
}
