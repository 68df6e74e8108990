//! The report file: how a child's outcome (its return value, its panic
//! message) reaches the parent. It is a memfd the parent makes at its full
//! size (sparse, so it costs nothing until written) and seals against
//! growing: the child writes one frame at offset 0, payload first and
//! header last, so a child killed mid-write leaves no header, never a
//! half frame that looks whole. The parent reads it once the child has
//! exited: unlike a pipe, the child never waits for the parent to read, so
//! the parent sleeps once per child (until its exit), and a child cannot
//! make it hold more than the limit.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::codec::{self, HEADER_LEN};
use crate::os;

/// Room for the report's own framing around a result of the limit's size.
const FRAMING: usize = HEADER_LEN + 16;

/// A report file for a result of at most `max_result` bytes.
pub(crate) fn create(max_result: usize) -> io::Result<OwnedFd> {
    os::memory::sealed_memfd(c"ipc-child-report", max_result.saturating_add(FRAMING))
}

/// In the child: writes `frame` (header and payload), header last. A frame
/// larger than the file is an error (the parent's limit).
pub(crate) fn write(fd: RawFd, frame: &[u8]) -> io::Result<()> {
    let (header, payload) = frame.split_at(HEADER_LEN.min(frame.len()));
    match write_all_at(fd, payload, HEADER_LEN as u64) {
        // The seal refuses growth past the parent's limit.
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            let size = os::fd::file_size(&fd)?;
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!(
                    "the result takes {} bytes, more than the parent's limit of {}",
                    frame.len(),
                    size.saturating_sub(FRAMING as u64)
                ),
            ));
        }
        other => other?,
    }
    write_all_at(fd, header, 0)
}

/// In the parent, once the child has exited: the frame it wrote, or
/// `None` if it wrote none. An announced length past the limit is an error.
pub(crate) fn read(fd: &OwnedFd, max_result: usize) -> Result<Option<Vec<u8>>, String> {
    let mut header = [0u8; HEADER_LEN];
    read_exact_at(fd.as_raw_fd(), &mut header, 0).map_err(|e| e.to_string())?;
    if header == [0; HEADER_LEN] {
        return Ok(None);
    }
    let len = codec::decode_header(header, max_result + FRAMING - HEADER_LEN)
        .map_err(|e| e.to_string())?;
    let mut frame = vec![0u8; HEADER_LEN + len];
    frame[..HEADER_LEN].copy_from_slice(&header);
    read_exact_at(fd.as_raw_fd(), &mut frame[HEADER_LEN..], HEADER_LEN as u64)
        .map_err(|e| e.to_string())?;
    Ok(Some(frame))
}

fn write_all_at(fd: RawFd, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for reads of its length.
        let n = unsafe { libc::pwrite(fd, buf.as_ptr().cast(), buf.len(), offset as libc::off_t) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        buf = &buf[n as usize..];
        offset += n as u64;
    }
    Ok(())
}

fn read_exact_at(fd: RawFd, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe {
            libc::pread(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                offset as libc::off_t,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf = &mut buf[n as usize..];
        offset += n as u64;
    }
    Ok(())
}
