//! [`MessageQueue`]: POSIX message queues (`mq_open`), the kernel-managed
//! option: named, bounded by the kernel (`/proc/sys/fs/mqueue`), with
//! message priorities, so it is also a cross-process priority queue. The
//! kernel keeps it consistent whoever dies; it lives until `unlink`.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use outlast_ipc::mq::MessageQueue;
//! let name = format!("ipc-doc-mq-{}", std::process::id());
//! let mq = MessageQueue::create(&name, 8, 128)?;
//! mq.send(b"low", 1)?;
//! mq.send(b"high", 9)?;
//! assert_eq!(mq.receive()?, (b"high".to_vec(), 9)); // highest priority first
//! mq.unlink()?;
//! # Ok(())
//! # }
//! ```

use std::ffi::CString;
use std::io;
use std::time::Duration;

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::handle;
use crate::os::Deadline;

/// Why a queue could not be created or opened.
#[derive(Debug, thiserror::Error)]
pub enum MqOpenError {
    #[error("`{0}` is not a valid message queue name (1 to 200 bytes, no `/` or NUL)")]
    BadName(String),
    #[error("no message queue is named `{0}`")]
    NotFound(String),
    #[error("a message queue named `{0}` already exists")]
    AlreadyExists(String),
    /// Sizes above the kernel's limits (`/proc/sys/fs/mqueue/msg_max`, `msgsize_max`).
    #[error("the kernel refused these sizes: {0}")]
    Limits(io::Error),
    #[error("cannot open the message queue: {0}")]
    Os(io::Error),
}

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
pub enum MqSendError {
    #[error("the message queue is full")]
    Full,
    #[error("a message of {len} bytes exceeds the queue's {max}")]
    TooLarge { len: usize, max: usize },
    #[error("sending failed: {0}")]
    Os(io::Error),
}

/// Why a receive failed.
#[derive(Debug, thiserror::Error)]
pub enum MqRecvError {
    #[error("the message queue is empty")]
    Empty,
    #[error("receiving failed: {0}")]
    Os(io::Error),
}

/// A POSIX message queue descriptor, closed on drop.
#[derive(Debug)]
pub struct MessageQueue {
    mqd: libc::mqd_t,
    name: String,
    max_size: usize,
}

/// The deadline as the absolute `CLOCK_REALTIME` time the `mq_timed*` calls
/// take; far in the future for a deadline that never comes.
fn absolute(deadline: Deadline) -> libc::timespec {
    deadline.as_realtime().unwrap_or(libc::timespec {
        tv_sec: libc::time_t::MAX / 2,
        tv_nsec: 0,
    })
}

fn path(name: &str) -> Result<CString, MqOpenError> {
    if name.is_empty() || name.len() > 200 || name.contains('/') {
        return Err(MqOpenError::BadName(name.to_string()));
    }
    CString::new(format!("/{name}")).map_err(|_| MqOpenError::BadName(name.to_string()))
}

impl MessageQueue {
    /// Creates the queue `name` holding up to `max_messages` of up to `max_size` bytes.
    pub fn create(name: &str, max_messages: usize, max_size: usize) -> Result<Self, MqOpenError> {
        let p = path(name)?;
        // SAFETY: a zeroed mq_attr with the two sizes set.
        let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
        attr.mq_maxmsg = max_messages as libc::c_long;
        attr.mq_msgsize = max_size as libc::c_long;
        // SAFETY: mq_open with a NUL-terminated name, flags, mode and attributes.
        let mqd = unsafe {
            libc::mq_open(
                p.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                0o600 as libc::mode_t,
                &attr as *const libc::mq_attr,
            )
        };
        if mqd < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EEXIST) => MqOpenError::AlreadyExists(name.to_string()),
                Some(libc::EINVAL) | Some(libc::EMFILE) | Some(libc::ENOMEM) => {
                    MqOpenError::Limits(e)
                }
                _ => MqOpenError::Os(e),
            });
        }
        Self::wrap(mqd, name)
    }

    /// Opens the existing queue `name`.
    pub fn open(name: &str) -> Result<Self, MqOpenError> {
        let p = path(name)?;
        // SAFETY: mq_open with a NUL-terminated name and flags.
        let mqd = unsafe { libc::mq_open(p.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if mqd < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ENOENT) => MqOpenError::NotFound(name.to_string()),
                _ => MqOpenError::Os(e),
            });
        }
        Self::wrap(mqd, name)
    }

    fn wrap(mqd: libc::mqd_t, name: &str) -> Result<Self, MqOpenError> {
        let mut mq = MessageQueue {
            mqd,
            name: name.to_string(),
            max_size: 0,
        };
        mq.max_size = mq.attributes().map_err(MqOpenError::Os)?.mq_msgsize as usize;
        Ok(mq)
    }

    fn attributes(&self) -> io::Result<libc::mq_attr> {
        // SAFETY: a zeroed mq_attr for mq_getattr to fill.
        let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
        // SAFETY: our descriptor and an attr struct we own.
        if unsafe { libc::mq_getattr(self.mqd, &mut attr) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(attr)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The largest message the queue takes.
    pub fn max_message_size(&self) -> usize {
        self.max_size
    }

    /// Messages waiting now.
    pub fn len(&self) -> usize {
        self.attributes().map_or(0, |a| a.mq_curmsgs as usize)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sends, waiting while the queue is full.
    pub fn send(&self, message: &[u8], priority: u32) -> Result<(), MqSendError> {
        self.send_deadline(message, priority, Deadline::never())
    }

    pub fn try_send(&self, message: &[u8], priority: u32) -> Result<(), MqSendError> {
        self.send_deadline(message, priority, Deadline::now())
    }

    pub fn send_timeout(
        &self,
        message: &[u8],
        priority: u32,
        timeout: Duration,
    ) -> Result<(), MqSendError> {
        self.send_deadline(message, priority, Deadline::after(timeout))
    }

    fn send_deadline(
        &self,
        message: &[u8],
        priority: u32,
        deadline: Deadline,
    ) -> Result<(), MqSendError> {
        if message.len() > self.max_size {
            return Err(MqSendError::TooLarge {
                len: message.len(),
                max: self.max_size,
            });
        }
        loop {
            let at = absolute(deadline);
            // SAFETY: our descriptor, a buffer of message.len() bytes, a timespec we own.
            let rc = unsafe {
                libc::mq_timedsend(
                    self.mqd,
                    message.as_ptr().cast(),
                    message.len(),
                    priority,
                    &at,
                )
            };
            if rc == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ETIMEDOUT) | Some(libc::EAGAIN) => return Err(MqSendError::Full),
                _ => return Err(MqSendError::Os(e)),
            }
        }
    }

    /// Receives the oldest message of the highest priority, waiting for one.
    pub fn receive(&self) -> Result<(Vec<u8>, u32), MqRecvError> {
        self.receive_deadline(Deadline::never())
    }

    pub fn try_receive(&self) -> Result<(Vec<u8>, u32), MqRecvError> {
        self.receive_deadline(Deadline::now())
    }

    pub fn receive_timeout(&self, timeout: Duration) -> Result<(Vec<u8>, u32), MqRecvError> {
        self.receive_deadline(Deadline::after(timeout))
    }

    fn receive_deadline(&self, deadline: Deadline) -> Result<(Vec<u8>, u32), MqRecvError> {
        let mut buf = vec![0u8; self.max_size.max(1)];
        let mut priority = 0u32;
        loop {
            let at = absolute(deadline);
            // SAFETY: our descriptor, a buffer of buf.len() >= mq_msgsize bytes, out-pointers we own.
            let n = unsafe {
                libc::mq_timedreceive(
                    self.mqd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut priority,
                    &at,
                )
            };
            if n >= 0 {
                buf.truncate(n as usize);
                return Ok((buf, priority));
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ETIMEDOUT) | Some(libc::EAGAIN) => return Err(MqRecvError::Empty),
                _ => return Err(MqRecvError::Os(e)),
            }
        }
    }

    /// Removes the name; the queue lives on until every descriptor is closed.
    pub fn unlink(&self) -> io::Result<()> {
        let p = path(&self.name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        // SAFETY: mq_unlink with a NUL-terminated name.
        if unsafe { libc::mq_unlink(p.as_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for MessageQueue {
    fn drop(&mut self) {
        // SAFETY: closing the descriptor this value owns.
        unsafe { libc::mq_close(self.mqd) };
    }
}

/// A message queue inside a serialized Process argument: its descriptor's slot and name.
#[derive(Serialize, Deserialize)]
struct MessageQueueWire {
    slot: u32,
    name: String,
}

impl Serialize for MessageQueue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // On Linux a message queue descriptor is a file descriptor.
        let slot = handle::export_fd(self.mqd).map_err(S::Error::custom)?;
        MessageQueueWire {
            slot,
            name: self.name.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for MessageQueue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use std::os::fd::IntoRawFd;
        let wire = MessageQueueWire::deserialize(deserializer)?;
        let fd = handle::import_fd(wire.slot).map_err(D::Error::custom)?;
        MessageQueue::wrap(fd.into_raw_fd(), &wire.name).map_err(D::Error::custom)
    }
}
