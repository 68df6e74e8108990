//! Shared memory segments, handed to children like any other handle (as a
//! `Process` argument, in fork and spawn alike).
//!
//! * [`SharedMemory::anonymous`]: a memfd mapped `MAP_SHARED`. It never
//!   appears in `/dev/shm`, so nothing leaks when its users are SIGKILLed:
//!   the kernel frees it with the last descriptor and mapping.
//! * [`SharedMemory::create`] / [`open`](SharedMemory::open) /
//!   [`unlink`](SharedMemory::unlink): named segments, Python's
//!   `shared_memory.SharedMemory(name, create=True, size=n)`. A resource
//!   tracker process unlinks the names a process created once that process
//!   is gone, even after a SIGKILL; [`create_untracked`](SharedMemory::create_untracked)
//!   opts out (Python 3.13's `track=False`).
//!
//! Typed views (`Value`, `Array`, locks) are built on top.
//!
//! # What a holder of a segment can and cannot do
//!
//! * Anonymous segments are memfds **sealed** against shrinking and growing
//!   once sized: no holder of the descriptor, not even a process that
//!   corrupted its own memory, can truncate the file under another
//!   process's mapping, so a mapped length stays valid (no SIGBUS).
//! * Named segments cannot be sealed: any process that can open the name
//!   can `ftruncate` it, and every process mapping it then faults (SIGBUS)
//!   past the new end. Use them among processes that trust each other.
//! * A child started with ipc's `fork` keeps only the mappings of the
//!   handles it was given: right after the fork it unmaps every other
//!   mapping this crate made in the parent, as it closes every other
//!   descriptor. A raw `libc::fork` keeps them all, as `fork(2)` does.
//!   Such a child that touches another (a queue of its parent's kept in a
//!   static) ends by `SIGSEGV`, after a line on its stderr that says why.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let shm = outlast_ipc::shm::SharedMemory::anonymous(4096)?;
//! assert_eq!(shm.len(), 4096);
//! // Fresh segments are zeroed.
//! // SAFETY: the mapping is 4096 bytes long and nothing else writes to it yet.
//! assert_eq!(unsafe { *shm.as_ptr() }, 0);
//! # Ok(())
//! # }
//! ```

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{handle, os};

pub(crate) mod cell;
mod forgotten;
mod mappings;
mod named;
mod tracker;

pub(crate) use mappings::forget_parent_mappings;

/// A shared mapping of an anonymous memory file. Clones of it in children
/// (through `Process` arguments) map the same pages.
#[derive(Debug)]
pub struct SharedMemory {
    fd: OwnedFd,
    ptr: NonNull<u8>,
    len: usize,
    /// The name of a named segment (without the leading `/`).
    name: Option<String>,
    /// The process that mapped it: only that process unmaps it (a forked
    /// child either never had the mapping or dropped it right after fork).
    mapped_by: u32,
}

// SAFETY: the mapping is plain shared memory owned by this value; moving it to
// another thread changes nothing about who may touch it.
unsafe impl Send for SharedMemory {}
// SAFETY: &SharedMemory only hands out raw pointers; data races are the
// caller's to prevent (with atomics), exactly as across processes.
unsafe impl Sync for SharedMemory {}

/// Why a segment could not be created, opened or used as asked.
#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    #[error("a shared memory segment cannot be empty")]
    Empty,
    /// Names are 1 to 200 bytes, without `/` or NUL.
    #[error("`{0}` is not a valid shared memory name (1 to 200 bytes, no `/` or NUL)")]
    BadName(String),
    #[error("no shared memory segment is named `{0}`")]
    NotFound(String),
    #[error("a shared memory segment named `{0}` already exists")]
    AlreadyExists(String),
    /// The segment is too small for what it was opened as.
    #[error("the segment has {found} bytes, but {expected} are needed")]
    WrongSize { expected: usize, found: usize },
    /// The segment holds another kind of object (a Lock opened as an Array, ...).
    #[error("the segment holds another kind of shared object")]
    WrongKind,
    /// An `Array<T>` opened with a `T` of another size than it was made with.
    #[error("the segment holds elements of {found} bytes, not {expected}")]
    WrongType { expected: usize, found: usize },
    /// The file system of named segments (`/dev/shm`) has no room for
    /// the segment's pages. Without this check, the first touch of a page
    /// it cannot give would kill the process with `SIGBUS`.
    #[error("/dev/shm has no room for the {len} bytes of segment `{name}` ({available} bytes free; a container's /dev/shm is 64 MB unless `--shm-size` gives more), and touching its pages would end this process with SIGBUS")]
    NoSpace {
        name: String,
        len: usize,
        available: u64,
    },
    #[error("cannot create or map shared memory: {0}")]
    Os(#[from] io::Error),
}

impl SharedMemory {
    /// A zero-filled segment of `len` bytes, close-on-exec, sealed
    /// against any change of size.
    pub fn anonymous(len: usize) -> Result<Self, ShmError> {
        if len == 0 {
            return Err(ShmError::Empty);
        }
        let fd = os::memory::sealed_memfd(c"ipc-shm", len)?;
        Self::map(fd, len)
    }

    pub(crate) fn map(fd: OwnedFd, len: usize) -> Result<Self, ShmError> {
        let ptr = os::memory::map_shared(&fd, len)?;
        mappings::register(ptr, len);
        Ok(SharedMemory {
            fd,
            ptr,
            len,
            name: None,
            mapped_by: std::process::id(),
        })
    }

    /// Maps the whole file behind `fd` (a memfd or a shm segment someone
    /// handed over, or one reopened through `/proc/<pid>/fd`).
    pub fn from_fd(fd: OwnedFd) -> Result<Self, ShmError> {
        let len = usize::try_from(os::fd::file_size(&fd)?).unwrap_or(0);
        if len == 0 {
            return Err(ShmError::Empty);
        }
        Self::map(fd, len)
    }

    /// Keeps this mapping out of every child forked from now on, by any
    /// means (`MADV_DONTFORK`): for an object only this process may use
    /// (one end of a link), which a forked copy could only misuse.
    pub fn exclude_from_forks(&self) -> Result<(), ShmError> {
        os::memory::keep_out_of_forks(self.ptr, self.len)?;
        mappings::exclude_from_forks(self.ptr);
        Ok(())
    }

    /// Whether no holder can change the segment's size (anonymous segments:
    /// always; named ones: never).
    pub fn is_sealed(&self) -> bool {
        os::memory::is_sealed_against_shrinking(&self.fd)
    }

    /// The descriptor behind the mapping (for tests that play a hostile holder).
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// A second handle on the same memory: a duplicated descriptor and a new
    /// mapping of the same pages (for example, to hand one to a child).
    pub fn try_clone(&self) -> Result<Self, ShmError> {
        let fd = self.fd.try_clone()?;
        let mut copy = Self::map(fd, self.len)?;
        copy.name.clone_from(&self.name);
        Ok(copy)
    }

    /// The name of a named segment.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The first byte of the mapping (page-aligned).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: segments are never empty.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl SharedMemory {
    /// Unmaps the segment but keeps its descriptor: it can be mapped again
    /// later, or handed to a child, and costs this process no mapping
    /// meanwhile (a process with thousands of mappings forks slowly).
    pub fn unmap(self) -> UnmappedSegment {
        let this = std::mem::ManuallyDrop::new(self);
        if this.mapped_by == std::process::id() {
            mappings::unregister(this.ptr);
            // SAFETY: the mapping this value made, in the process that made
            // it; `this` is never used or dropped after this.
            unsafe { os::memory::unmap(this.ptr.as_ptr(), this.len) };
        }
        // SAFETY: each field is moved out exactly once and `this` is never
        // dropped, so nothing is freed twice.
        let (fd, name) = unsafe { (std::ptr::read(&this.fd), std::ptr::read(&this.name)) };
        drop(name);
        UnmappedSegment { fd, len: this.len }
    }
}

/// A segment's descriptor and length, not mapped in this process. Handed
/// to a child, it arrives as a [`SharedMemory`] (mapped there).
#[derive(Debug)]
pub struct UnmappedSegment {
    fd: OwnedFd,
    len: usize,
}

impl UnmappedSegment {
    /// Maps it (again).
    pub fn map(self) -> Result<SharedMemory, ShmError> {
        SharedMemory::map(self.fd, self.len)
    }

    pub fn try_clone(&self) -> Result<Self, ShmError> {
        Ok(UnmappedSegment {
            fd: self.fd.try_clone()?,
            len: self.len,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

impl Serialize for UnmappedSegment {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let slot = handle::export_fd(self.fd.as_raw_fd()).map_err(S::Error::custom)?;
        SharedMemoryWire {
            slot,
            len: self.len as u64,
            name: None,
        }
        .serialize(serializer)
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        if self.mapped_by != std::process::id() {
            // A copy in a forked child: the mapping is not (or no longer)
            // ours to unmap; the address may belong to another mapping now.
            return;
        }
        mappings::unregister(self.ptr);
        // SAFETY: unmapping exactly the mapping this value made, in the
        // process that made it; nothing borrows it past this value.
        unsafe { os::memory::unmap(self.ptr.as_ptr(), self.len) };
    }
}

/// A segment inside a serialized Process argument: its descriptor's slot and length.
#[derive(Serialize, Deserialize)]
struct SharedMemoryWire {
    slot: u32,
    len: u64,
    name: Option<String>,
}

impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let slot = handle::export_fd(self.fd.as_raw_fd()).map_err(S::Error::custom)?;
        SharedMemoryWire {
            slot,
            len: self.len as u64,
            name: self.name.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = SharedMemoryWire::deserialize(deserializer)?;
        let fd = handle::import_fd(wire.slot).map_err(D::Error::custom)?;
        let len = usize::try_from(wire.len).map_err(D::Error::custom)?;
        // The length came from the parent; a file shorter than it would fault
        // on access, so check it against the real size.
        let real = os::fd::file_size(&fd).map_err(D::Error::custom)?;
        if len == 0 || u64::try_from(len).map_or(true, |l| l > real) {
            return Err(D::Error::custom(format!(
                "shared memory of {len} bytes announced, but the segment has {real}"
            )));
        }
        let mut shm = SharedMemory::map(fd, len).map_err(D::Error::custom)?;
        shm.name = wire.name;
        Ok(shm)
    }
}
