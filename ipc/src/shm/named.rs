//! Named segments in `/dev/shm` (`shm_open`), Python's
//! `shared_memory.SharedMemory(name=..., create=True, size=n)`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::{tracker, SharedMemory, ShmError};

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

impl SharedMemory {
    /// Creates the segment `name` of `len` zeroed bytes. The resource tracker
    /// unlinks it when this process is gone, unless [`unlink`](Self::unlink)
    /// did so first.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use ipc::shm::{SharedMemory, ShmError};
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
        let size =
            libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: shm_open with a NUL-terminated path and flags; it returns a new descriptor.
        let raw = unsafe {
            libc::shm_open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                0o600,
            )
        };
        if raw < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EEXIST) => ShmError::AlreadyExists(name.to_string()),
                Some(libc::EINVAL) | Some(libc::ENAMETOOLONG) => {
                    ShmError::BadName(name.to_string())
                }
                _ => ShmError::Os(e),
            });
        }
        // SAFETY: shm_open returned a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: ftruncate on our descriptor.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } != 0 {
            let e = io::Error::last_os_error();
            // SAFETY: removing the name we just created.
            unsafe { libc::shm_unlink(path.as_ptr()) };
            return Err(e.into());
        }
        let mut shm = SharedMemory::map(fd, len).inspect_err(|_| {
            // SAFETY: removing the name we just created.
            unsafe { libc::shm_unlink(path.as_ptr()) };
        })?;
        shm.name = Some(name.to_string());
        Ok(shm)
    }

    /// Opens the existing segment `name`, at its full size.
    pub fn open(name: &str) -> Result<Self, ShmError> {
        let path = shm_path(name)?;
        // SAFETY: shm_open with a NUL-terminated path; it returns a new descriptor.
        let raw = unsafe { libc::shm_open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC, 0) };
        if raw < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ENOENT) => ShmError::NotFound(name.to_string()),
                _ => ShmError::Os(e),
            });
        }
        // SAFETY: shm_open returned a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fstat fills `stat` for our descriptor.
        if unsafe { libc::fstat(fd.as_raw_fd(), stat.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error().into());
        }
        // SAFETY: fstat succeeded.
        let len = usize::try_from(unsafe { stat.assume_init() }.st_size).unwrap_or(0);
        if len == 0 {
            return Err(ShmError::Empty);
        }
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
        // SAFETY: shm_unlink with a NUL-terminated path.
        if unsafe { libc::shm_unlink(path.as_ptr()) } != 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ENOENT) => ShmError::NotFound(name.clone()),
                _ => ShmError::Os(e),
            });
        }
        tracker::unregister(name);
        Ok(())
    }
}
