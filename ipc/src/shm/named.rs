//! Named segments in `/dev/shm` (`shm_open`), Python's
//! `shared_memory.SharedMemory(name=..., create=True, size=n)`.

use std::ffi::CString;

use super::{tracker, SharedMemory, ShmError};
use crate::os;

/// The longest name accepted (Linux allows 255 for the file in /dev/shm).
const MAX_NAME: usize = 200;

/// `/name` as a C string, after checking the name.
fn shm_path(name: &str) -> Result<CString, ShmError> {
    let bad = || ShmError::BadName(name.to_string());
    if name.is_empty() || name.len() > MAX_NAME || name.contains('/') || name == "." || name == ".."
    {
        return Err(bad());
    }
    CString::new(format!("/{name}")).map_err(|_| bad())
}

/// Gives the segment's pages now: no room is an error here, not a
/// `SIGBUS` at the first touch.
fn reserve(fd: &std::os::fd::OwnedFd, name: &str, len: usize) -> Result<(), ShmError> {
    os::memory::reserve(fd, len).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOSPC) => ShmError::NoSpace {
            name: name.to_string(),
            len,
            available: os::memory::free_bytes(fd).unwrap_or(0),
        },
        _ => ShmError::Os(e),
    })
}

impl SharedMemory {
    /// Creates the segment `name` of `len` zeroed bytes. The resource tracker
    /// unlinks it when this process is gone, unless [`unlink`](Self::unlink)
    /// did so first.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use outlast_ipc::shm::{SharedMemory, ShmError};
    /// let name = format!("ipc-doc-{}", std::process::id());
    /// let shm = SharedMemory::create(&name, 4096)?;
    /// let again = SharedMemory::open(&name)?;
    /// assert_eq!(again.len(), 4096);
    /// shm.unlink()?;
    /// assert!(matches!(SharedMemory::open(&name), Err(ShmError::NotFound(_))));
    /// # Ok(())
    /// # }
    /// ```
    pub fn create(name: &str, len: usize) -> Result<Self, ShmError> {
        let shm = Self::create_untracked(name, len)?;
        if let Err(e) = tracker::register(name) {
            let _ = shm.unlink();
            return Err(e.into());
        }
        Ok(shm)
    }

    /// Like [`create`](Self::create), but nothing unlinks the name unless
    /// someone calls [`unlink`](Self::unlink) (Python's `track=False`).
    pub fn create_untracked(name: &str, len: usize) -> Result<Self, ShmError> {
        if len == 0 {
            return Err(ShmError::Empty);
        }
        let path = shm_path(name)?;
        let fd = os::memory::shm_open(&path, true).map_err(|e| match e.raw_os_error() {
            Some(libc::EEXIST) => ShmError::AlreadyExists(name.to_string()),
            Some(libc::EINVAL) | Some(libc::ENAMETOOLONG) => ShmError::BadName(name.to_string()),
            _ => ShmError::Os(e),
        })?;
        let sized = os::memory::set_len(&fd, len)
            .map_err(ShmError::from)
            .and_then(|()| reserve(&fd, name, len))
            .and_then(|()| SharedMemory::map(fd, len));
        let mut shm = sized.inspect_err(|_| {
            let _ = os::memory::shm_unlink(&path);
        })?;
        shm.name = Some(name.to_string());
        Ok(shm)
    }

    /// Opens the existing segment `name`, at its full size.
    pub fn open(name: &str) -> Result<Self, ShmError> {
        let path = shm_path(name)?;
        let fd = os::memory::shm_open(&path, false).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => ShmError::NotFound(name.to_string()),
            _ => ShmError::Os(e),
        })?;
        let len = usize::try_from(os::fd::file_size(&fd)?).unwrap_or(0);
        if len == 0 {
            return Err(ShmError::Empty);
        }
        // Its creator may not have reserved its pages (Python does not).
        reserve(&fd, name, len)?;
        let mut shm = SharedMemory::map(fd, len)?;
        shm.name = Some(name.to_string());
        Ok(shm)
    }

    /// Removes the name (Python's `unlink()`): later `open`s fail, mappings
    /// that exist stay valid. Not for anonymous segments.
    pub fn unlink(&self) -> Result<(), ShmError> {
        let Some(name) = &self.name else {
            return Err(ShmError::BadName(String::new()));
        };
        let path = shm_path(name)?;
        os::memory::shm_unlink(&path).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => ShmError::NotFound(name.clone()),
            _ => ShmError::Os(e),
        })?;
        tracker::unregister(name);
        Ok(())
    }
}
