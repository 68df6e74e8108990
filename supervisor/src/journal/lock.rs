//! One run writes a journal at a time: an exclusive `flock` on the file,
//! and, when another run holds it, that run's pid from `/proc/locks` for
//! the refusal's words.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::JournalError;

/// Takes the run's exclusive lock on the journal, or says who holds it.
pub(super) fn lock(file: &File, path: &Path) -> Result<(), JournalError> {
    // SAFETY: flock on a descriptor `file` owns; the lock goes with it.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Err(JournalError::InUse {
            path: path.to_path_buf(),
            holder: lock_holder(path).unwrap_or_else(|| "unknown".into()),
        });
    }
    Err(JournalError::io(path, "lock", e))
}

/// How many times `/proc/locks` is read before the holder counts as
/// unknown (it may have let go in between).
const READS: usize = 5;

/// The pid holding a lock on `path`, from `/proc/locks`.
fn lock_holder(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let file = (libc::major(meta.dev()), libc::minor(meta.dev()), meta.ino());
    (0..READS).find_map(|_| holder_in(&read_locks()?, file))
}

/// `/proc/locks` in reads as large as the kernel gives. The file is made
/// anew at each read call, and a read that starts where the last one
/// ended skips a line whenever a lock before it went in between: with
/// other runs taking and dropping locks, a small first read (as
/// `read_to_string` makes) lost the holder's line.
fn read_locks() -> Option<String> {
    let mut file = File::open("/proc/locks").ok()?;
    let mut text = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => return String::from_utf8(text).ok(),
            Ok(n) => text.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// The pid on the line of `/proc/locks` that holds (not awaits) a lock on
/// the file `(major, minor, inode)`.
fn holder_in(locks: &str, (major, minor, inode): (u32, u32, u64)) -> Option<String> {
    locks.lines().find_map(|line| {
        // `1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`; a waiter's
        // line has `->` after the number.
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) == Some(&"->") {
            return None;
        }
        let pid = fields.get(4)?;
        let mut id = fields.get(5)?.split(':');
        let on = (
            u32::from_str_radix(id.next()?, 16).ok()?,
            u32::from_str_radix(id.next()?, 16).ok()?,
            id.next()?.parse::<u64>().ok()?,
        );
        (on == (major, minor, inode)).then(|| pid.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::holder_in;

    #[test]
    fn the_holders_line_is_found_by_device_and_inode_and_waiters_are_not_holders() {
        let locks = "1: FLOCK  ADVISORY  WRITE 77 08:01:5678 0 EOF\n\
                     1: -> FLOCK  ADVISORY  WRITE 88 fe:00:1234 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 99 fe:00:1234 0 EOF\n";
        assert_eq!(holder_in(locks, (0xfe, 0, 1234)).as_deref(), Some("99"));
        assert_eq!(holder_in(locks, (8, 1, 5678)).as_deref(), Some("77"));
        assert_eq!(holder_in(locks, (8, 2, 5678)), None);
        assert_eq!(holder_in("garbage\n\n1: x", (8, 1, 5678)), None);
    }
}
