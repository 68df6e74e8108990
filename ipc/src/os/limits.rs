//! Resource limits: how many descriptors and processes this process may
//! have, and raising the soft descriptor limit to the hard one (the soft
//! limit is often 1,024 for compatibility with `select(2)`, which nothing
//! here uses).

use std::io;

use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};

/// A soft and a hard limit; `None` is unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

fn finite(value: u64) -> Option<u64> {
    (value != RLIM_INFINITY).then_some(value)
}

fn limit(resource: Resource) -> io::Result<Limit> {
    let (soft, hard) = getrlimit(resource)?;
    Ok(Limit {
        soft: finite(soft),
        hard: finite(hard),
    })
}

/// `RLIMIT_NOFILE`: descriptors per process.
pub fn open_files() -> io::Result<Limit> {
    limit(Resource::RLIMIT_NOFILE)
}

/// `RLIMIT_NPROC`: threads of this user, across all processes.
pub fn processes() -> io::Result<Limit> {
    limit(Resource::RLIMIT_NPROC)
}

/// Raises the soft descriptor limit to the hard one; returns the new soft
/// limit (`None`: unlimited). Children inherit it.
pub fn raise_open_files() -> io::Result<Option<u64>> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft != hard {
        // A hard limit of "unlimited" is refused for NOFILE; fs.nr_open is
        // the real ceiling then.
        let target = if hard == RLIM_INFINITY {
            std::fs::read_to_string("/proc/sys/fs/nr_open")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(soft)
        } else {
            hard
        };
        if target > soft {
            setrlimit(Resource::RLIMIT_NOFILE, target, hard)?;
        }
    }
    Ok(open_files()?.soft)
}
