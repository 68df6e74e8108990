//! Playing a worker whose memory is corrupted: stop it, write into the
//! shared segments it holds (reopened through `/proc/<pid>/fd`, as a wild
//! pointer in the worker could write them), ring its doorbell, and let it
//! go on once the supervisor has had its chance to notice.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use outlast_ipc::shm::SharedMemory;
use outlast_ipc::spsc::raw::RawChannel;

use crate::procfs::stat_state_and_ppid;

/// A stopped worker and the segments it holds.
pub struct Victim {
    pub pid: u32,
    /// Its link segments, mapped here.
    pub segments: Vec<SharedMemory>,
    /// Their descriptor numbers in the victim.
    pub fds: Vec<u32>,
    sockets: Vec<u32>,
}

fn links_of(pid: u32) -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut out: Vec<(u32, String)> = dir
        .flatten()
        .filter_map(|e| {
            let fd: u32 = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((fd, target.to_string_lossy().into_owned()))
        })
        .collect();
    out.sort();
    out
}

impl Victim {
    /// SIGSTOPs `pid`, waits until it is stopped, and maps its segments.
    pub fn stop(pid: u32) -> Victim {
        // SAFETY: a signal to a process of this test's supervisor.
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        let started = Instant::now();
        while !matches!(stat_state_and_ppid(pid), Some(('T', _)) | None) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{pid} never stopped"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut segments = Vec::new();
        let mut fds = Vec::new();
        let mut sockets = Vec::new();
        for (fd, target) in links_of(pid) {
            if target.starts_with("socket:") {
                sockets.push(fd);
            }
            if !target.starts_with("/memfd:ipc-shm") {
                continue;
            }
            let path = format!("/proc/{pid}/fd/{fd}");
            let Ok(file) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
            else {
                continue;
            };
            if let Ok(shm) = SharedMemory::from_fd(OwnedFd::from(file)) {
                segments.push(shm);
                fds.push(fd);
            }
        }
        Victim {
            pid,
            segments,
            fds,
            sockets,
        }
    }

    /// Its results ring (the channel with an aux area: the heartbeat).
    pub fn results(&self) -> RawChannel<'_> {
        self.channels()
            .into_iter()
            .find(|c| c.aux_len() > 0)
            .expect("the victim holds its results ring")
    }

    /// Its tasks ring.
    pub fn tasks(&self) -> RawChannel<'_> {
        self.channels()
            .into_iter()
            .find(|c| c.aux_len() == 0)
            .expect("the victim holds its tasks ring")
    }

    pub fn channels(&self) -> Vec<RawChannel<'_>> {
        self.segments.iter().filter_map(RawChannel::new).collect()
    }

    /// Writes pseudo-random bytes over all of `channel`'s segment.
    pub fn scribble(channel: &RawChannel<'_>, seed: u64) {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let words = channel.len() / 8;
        for i in 0..words {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // SAFETY: inside the mapping; any bytes are what the test means to leave.
            unsafe { (channel.bytes() as *mut u64).add(i).write_volatile(x) };
        }
    }

    /// Writes a byte on every socket the victim holds (its doorbell), so
    /// the supervisor looks at once, while the victim is still stopped.
    pub fn ring(&self) {
        // SAFETY: pidfd_open/pidfd_getfd take integers and return new
        // descriptors (or fail); the write is on a descriptor we own.
        unsafe {
            let pidfd = libc::syscall(libc::SYS_pidfd_open, self.pid as libc::c_int, 0);
            if pidfd < 0 {
                return;
            }
            let pidfd = OwnedFd::from_raw_fd(pidfd as i32);
            for &fd in &self.sockets {
                let dup = libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0);
                if dup >= 0 {
                    let dup = OwnedFd::from_raw_fd(dup as i32);
                    libc::send(
                        dup.as_raw_fd(),
                        [1u8].as_ptr().cast(),
                        1,
                        libc::MSG_DONTWAIT,
                    );
                }
            }
        }
    }

    /// Rings, waits until the victim is gone or `patience` passes, then
    /// continues it (if it is still there). True if it was gone.
    pub fn release(self, patience: Duration) -> bool {
        self.ring();
        let started = Instant::now();
        loop {
            let alive = crate::procfs::is_running(self.pid);
            if !alive {
                return true;
            }
            if started.elapsed() > patience {
                // SAFETY: a signal to a process of this test's supervisor.
                unsafe { libc::kill(self.pid as i32, libc::SIGCONT) };
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// The addresses of every `ipc` segment mapped in `pid` (from its maps).
pub fn segment_mappings(pid: u32) -> Vec<(u64, u64)> {
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return Vec::new();
    };
    maps.lines()
        .filter(|l| l.contains("/memfd:ipc-shm"))
        .filter_map(|l| {
            let range = l.split_whitespace().next()?;
            let (a, b) = range.split_once('-')?;
            Some((
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            ))
        })
        .collect()
}
