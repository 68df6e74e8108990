//! [`wait`]: Python's `multiprocessing.connection.wait`: block until any of
//! several objects is ready (a [`Connection`](crate::Connection) has
//! something to read or its peer hung up, a [`Process`](crate::Process)
//! has exited, a [`Queue`](crate::queue::Queue) has a message or is
//! done, a parent process is gone, a raw descriptor is readable), or the
//! timeout passes; returns the indices of the ready ones.
//!
//! Objects with a descriptor are waited on with one `poll(2)`. A queue or
//! an SPSC ring has no descriptor (its messages move through shared memory
//! without a system call); while one is in the list, `wait` looks at it
//! between polls of at most a few milliseconds, so its readiness is seen
//! within that much.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! let (mut a, b) = outlast_ipc::Pipe::duplex()?;
//! let (c, _d) = outlast_ipc::Pipe::duplex()?;
//! assert!(outlast_ipc::wait(&[&b, &c], Some(Duration::from_millis(10)))?.is_empty());
//! a.send(&1u8)?;
//! assert_eq!(outlast_ipc::wait(&[&b, &c], None)?, vec![0]);
//! # Ok(())
//! # }
//! ```

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use crate::os::{self, Deadline};

/// Something [`wait`] can wait for.
pub trait Waitable {
    /// A descriptor that becomes readable (or hangs up) when this is ready.
    fn ready_fd(&self) -> Option<RawFd>;
    /// Ready now, without a system call (buffered data, a known exit, a
    /// non-empty queue).
    fn ready_now(&self) -> bool;
}

/// A bare descriptor: ready when readable (Python's `wait` takes integers too).
#[derive(Clone, Copy, Debug)]
pub struct Readable(pub RawFd);

impl Waitable for Readable {
    fn ready_fd(&self) -> Option<RawFd> {
        Some(self.0)
    }
    fn ready_now(&self) -> bool {
        false
    }
}

/// The longest pause between two looks at objects without a descriptor.
const MAX_LOOK_EVERY: Duration = Duration::from_millis(5);

/// Waits until at least one of `objects` is ready, or `timeout` passes
/// (`None`: no timeout); the indices of those ready, in order (empty on
/// timeout).
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> io::Result<Vec<usize>> {
    let deadline = timeout.map_or(Deadline::never(), Deadline::after);
    let fdless = objects.iter().any(|o| o.ready_fd().is_none());
    let mut look_every = Duration::from_micros(50);
    loop {
        let mut ready: Vec<usize> = (0..objects.len())
            .filter(|&i| objects[i].ready_now())
            .collect();
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let mut owners: Vec<usize> = Vec::new();
        for (i, o) in objects.iter().enumerate() {
            if let Some(fd) = o.ready_fd() {
                fds.push(libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                });
                owners.push(i);
            }
        }
        // With something ready already, only look (poll with no wait).
        let step = if !ready.is_empty() {
            Deadline::now()
        } else if fdless {
            deadline.min(Deadline::after(look_every))
        } else {
            deadline
        };
        if !fds.is_empty() {
            os::poll::poll_many(&mut fds, step)?;
        } else if ready.is_empty() {
            if let Some(left) = step.remaining() {
                std::thread::sleep(left);
            }
        }
        for (pfd, &i) in fds.iter().zip(&owners) {
            if os::poll::ready_of(pfd.revents).any() && !ready.contains(&i) {
                ready.push(i);
            }
        }
        if !ready.is_empty() {
            ready.sort_unstable();
            return Ok(ready);
        }
        if deadline.passed() {
            return Ok(Vec::new());
        }
        look_every = (look_every * 2).min(MAX_LOOK_EVERY);
    }
}
