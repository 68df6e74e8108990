//! The report file: how a child's outcome (its return value, its panic
//! message) reaches the parent. It is a memfd the parent makes at its full
//! size (sparse, so it costs nothing until written) and seals against
//! growing: the child writes one frame at offset 0, payload first and
//! header last, so a child killed mid-write leaves no header, never a
//! half frame that looks whole. The parent reads it once the child has
//! exited: unlike a pipe, the child never waits for the parent to read, so
//! the parent sleeps once per child (until its exit), and a child cannot
//! make it hold more than the limit.
//!
//! A returned value goes in as the child encoded it, behind the few bytes
//! of its report's encoding that come before it, and the parent reads it
//! out alone: a 100 MB result is not copied into a frame on one side, nor
//! out of the report's decoding on the other.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::entry::ChildReport;
use crate::codec::{self, HEADER_LEN};
use crate::os;

/// Room for the report's own framing around a result of the limit's size.
const FRAMING: usize = HEADER_LEN + 16;

/// A report file for a result of at most `max_result` bytes.
pub(crate) fn create(max_result: usize) -> io::Result<OwnedFd> {
    os::memory::sealed_memfd(c"ipc-child-report", max_result.saturating_add(FRAMING))
}

/// A payload up to this size is gathered into one write (then the
/// header's), and read with its header in one read: a small report costs
/// the child two writes and the parent one read, not one per part.
const SMALL: usize = 4096;

/// In the child: writes a payload made of `parts`, one after another,
/// behind its header, header last. A payload larger than the file is an
/// error (the parent's limit), and so is one past a frame's largest.
pub(crate) fn write(fd: RawFd, parts: &[&[u8]]) -> io::Result<()> {
    let len = parts.iter().map(|p| p.len()).sum::<usize>();
    let header = codec::encode_header(len, usize::MAX)
        .map_err(|e| io::Error::new(io::ErrorKind::FileTooLarge, e.to_string()))?;
    let gathered;
    let whole;
    let parts = if len <= SMALL && parts.len() > 1 {
        gathered = parts.concat();
        whole = [gathered.as_slice()];
        &whole[..]
    } else {
        parts
    };
    let mut offset = HEADER_LEN as u64;
    for part in parts {
        match write_all_at(fd, part, offset) {
            // The seal refuses growth past the parent's limit.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                let size = os::fd::file_size(&fd)?;
                return Err(io::Error::new(
                    io::ErrorKind::FileTooLarge,
                    format!(
                        "the result takes {} bytes, more than the parent's limit of {}",
                        HEADER_LEN + len,
                        size.saturating_sub(FRAMING as u64)
                    ),
                ));
            }
            other => other?,
        }
        offset += part.len() as u64;
    }
    write_all_at(fd, &header, 0)
}

/// What the parent finds in a report file.
pub(crate) enum Report {
    /// The child wrote nothing.
    Nothing,
    /// A `Returned`: the value's bytes alone, read straight from the file.
    Returned(Vec<u8>),
    /// Any other report: its payload, to decode whole.
    Other(Vec<u8>),
}

/// In the parent, once the child has exited: what it wrote. An announced
/// length past the limit is an error.
pub(crate) fn read(fd: &OwnedFd, max_result: usize) -> Result<Report, String> {
    // The header and the payload's first bytes (all of a small one): the
    // file is never shorter than this (it is made at the limit's size).
    let mut first = [0u8; HEADER_LEN + SMALL];
    let first = &mut first[..HEADER_LEN + SMALL.min(max_result + FRAMING - HEADER_LEN)];
    read_exact_at(fd.as_raw_fd(), first, 0).map_err(|e| e.to_string())?;
    let (header, read) = first.split_at(HEADER_LEN);
    let header: [u8; HEADER_LEN] = header.try_into().map_err(|_| "a short header")?;
    if header == [0; HEADER_LEN] {
        return Ok(Report::Nothing);
    }
    let len = codec::decode_header(header, max_result + FRAMING - HEADER_LEN)
        .map_err(|e| e.to_string())?;
    let head = &read[..len.min(read.len())];
    let (start, value_len) = ChildReport::returned_span(head, len).unwrap_or((0, len));
    let bytes = match head.get(start..start + value_len) {
        Some(whole) => whole.to_vec(),
        None => {
            let mut bytes = vec![0u8; value_len];
            read_exact_at(fd.as_raw_fd(), &mut bytes, (HEADER_LEN + start) as u64)
                .map_err(|e| e.to_string())?;
            bytes
        }
    };
    Ok(if start > 0 {
        Report::Returned(bytes)
    } else {
        Report::Other(bytes)
    })
}

/// In the parent, once the child has exited: the payload's length its
/// header announces (0 if it wrote none, or none that reads as one): about
/// what a [`read`] of it will take.
pub(crate) fn announced_len(fd: &OwnedFd) -> usize {
    let mut header = [0u8; HEADER_LEN];
    if read_exact_at(fd.as_raw_fd(), &mut header, 0).is_err() {
        return 0;
    }
    codec::decode_header(header, usize::MAX).unwrap_or(0)
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
