//! What else a fork server's child takes from its creator, as a spawned
//! child would: the file mode mask, the resource limits, the CPU affinity,
//! the nice value, the user and groups, and which signals are ignored.
//!
//! The server is an exec of the creator made once, and a process keeps
//! these across `exec`, so the server has the creator's as they were when
//! it started. A program that changes one afterwards (`umask(0o077)` before
//! writing secrets, `setrlimit(RLIMIT_AS)` to cap its workers, a pinned
//! thread, a daemon that drops root, `SIGHUP` ignored) would otherwise get
//! children that differ from fork and spawn children in exactly that.
//! (Python's forkserver sends none of these: its children keep the
//! server's.)
//!
//! Only what differs from the server's start travels, and the child sets
//! only that: a few system calls in the usual case where nothing changed.
//! A child that cannot take one (a raised hard limit, a user it cannot
//! become) does not run: it fails in words, rather than run with more than
//! its creator has.

use std::io;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The creator's when it launched the server (in the launching thread).
static AT_LAUNCH: Mutex<Option<Attributes>> = Mutex::new(None);

/// Resource limits, as `getrlimit` numbers them (`RLIMIT_NLIMITS`).
const LIMITS: u32 = 16;

/// Signals whose disposition a child takes: the standard ones (but
/// `SIGKILL` and `SIGSTOP`, which cannot be set).
const SIGNALS: std::ops::Range<i32> = 1..32;

/// Signals the server sets for itself (ignores `SIGINT` and `SIGPIPE`,
/// handles `SIGCHLD`): its children always set these as the creator has them.
const SERVERS_OWN: [i32; 3] = [libc::SIGINT, libc::SIGPIPE, libc::SIGCHLD];

/// The attributes of the calling thread's process (of the thread itself,
/// for the nice value and the CPU affinity, which Linux keeps per thread
/// and a new process takes from the thread that made it). In
/// [`Changes`], a `None` (and a limit left out) is one that did not change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Attributes {
    /// `None` where `/proc` cannot say.
    umask: Option<u32>,
    limits: Vec<Limit>,
    /// `None` if it cannot be read.
    affinity: Option<Vec<u64>>,
    nice: Option<i32>,
    credentials: Option<Credentials>,
    /// Bit `n` for signal `n`.
    ignored: u64,
}

/// One resource limit, in `getrlimit`'s numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Limit {
    resource: u32,
    soft: u64,
    hard: u64,
}

/// Real, effective and saved user and group ids, and the supplementary groups.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Credentials {
    uids: [u32; 3],
    gids: [u32; 3],
    groups: Vec<u32>,
}

/// What a child sets to be as its creator is now: what changed since the
/// server started, and the ignored signals.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Changes {
    /// The attributes that changed, and every ignored signal now.
    to_set: Attributes,
    /// The signals whose disposition the child sets: changed since the
    /// launch, or set by the server for itself.
    signals_to_set: u64,
}

/// The server about to be launched from this thread takes this
/// process's attributes (and this thread's) as they are.
pub(crate) fn note_launch() {
    *AT_LAUNCH.lock().unwrap_or_else(|p| p.into_inner()) = Some(Attributes::here());
}

/// What a child started now must set to be as this thread's process is.
pub(crate) fn changes_since_launch() -> Changes {
    let now = Attributes::here();
    let at_launch = AT_LAUNCH.lock().unwrap_or_else(|p| p.into_inner());
    // No server yet: the one this start launches takes them as they are.
    now.changes_since(at_launch.as_ref().unwrap_or(&now))
}

impl Attributes {
    fn here() -> Attributes {
        Attributes {
            umask: umask(),
            limits: (0..LIMITS).filter_map(limit).collect(),
            affinity: affinity(),
            nice: nice(),
            credentials: credentials(),
            ignored: ignored_signals(),
        }
    }

    fn changes_since(&self, then: &Attributes) -> Changes {
        let mut signals_to_set = self.ignored ^ then.ignored;
        for signal in SERVERS_OWN {
            signals_to_set |= 1 << signal;
        }
        Changes {
            to_set: Attributes {
                umask: changed(&self.umask, &then.umask),
                limits: self
                    .limits
                    .iter()
                    .filter(|now| !then.limits.contains(now))
                    .copied()
                    .collect(),
                affinity: changed(&self.affinity, &then.affinity),
                nice: changed(&self.nice, &then.nice),
                credentials: changed(&self.credentials, &then.credentials),
                ignored: self.ignored,
            },
            signals_to_set,
        }
    }
}

impl Changes {
    /// In a freshly forked child of the server: becomes as the creator
    /// is. The user and groups go last, since dropping them may take the
    /// right to set the rest. An error names what could not be taken.
    pub(crate) fn enter(&self) -> Result<(), String> {
        let to = &self.to_set;
        let settable = |&s: &i32| s != libc::SIGKILL && s != libc::SIGSTOP;
        for signal in SIGNALS
            .filter(settable)
            .filter(|&s| self.signals_to_set & (1 << s) != 0)
        {
            let result = match to.ignored & (1 << signal) != 0 {
                true => crate::os::signals::ignore(signal),
                false => crate::os::signals::set_default(signal),
            };
            result.map_err(|e| format!("cannot set signal {signal} as its creator has it: {e}"))?;
        }
        if let Some(mask) = to.umask {
            // SAFETY: umask takes a number and cannot fail.
            unsafe { libc::umask(mask as libc::mode_t) };
        }
        for limit in &to.limits {
            set_limit(limit).map_err(|e| {
                format!(
                    "cannot take its creator's resource limit {} (soft {}, hard {}): {e}",
                    limit.resource, limit.soft, limit.hard
                )
            })?;
        }
        if let Some(words) = &to.affinity {
            set_affinity(words)
                .map_err(|e| format!("cannot take its creator's CPU affinity: {e}"))?;
        }
        if let Some(nice) = to.nice {
            set_nice(nice)
                .map_err(|e| format!("cannot take its creator's nice value {nice}: {e}"))?;
        }
        if let Some(credentials) = &to.credentials {
            set_credentials(credentials).map_err(|e| {
                format!(
                    "cannot become its creator's user {} and group {}: {e}",
                    credentials.uids[1], credentials.gids[1]
                )
            })?;
        }
        Ok(())
    }
}

/// `now`, if it is known and differs from `then`.
fn changed<T: Clone + PartialEq>(now: &Option<T>, then: &Option<T>) -> Option<T> {
    now.as_ref().filter(|_| now != then).cloned()
}

/// The file mode mask, from `/proc/self/status` (asking the kernel any
/// other way sets it, for a moment in which another thread's new file
/// would take the wrong mode).
fn umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
}

fn limit(resource: u32) -> Option<Limit> {
    let mut value = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: writes one rlimit into a live local; an unknown resource is
    // an error, not a write.
    let ok = unsafe { libc::getrlimit(resource as _, &mut value) } == 0;
    ok.then_some(Limit {
        resource,
        soft: value.rlim_cur,
        hard: value.rlim_max,
    })
}

fn set_limit(limit: &Limit) -> io::Result<()> {
    let value = libc::rlimit {
        rlim_cur: limit.soft,
        rlim_max: limit.hard,
    };
    // SAFETY: reads one rlimit from a live local.
    match unsafe { libc::setrlimit(limit.resource as _, &value) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

fn affinity() -> Option<Vec<u64>> {
    // SAFETY: cpu_set_t is plain bits; zeroed is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: writes at most size_of::<cpu_set_t>() bytes into `set`.
    let ok = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) } == 0;
    // SAFETY: cpu_set_t is an array of words, read as such.
    ok.then(|| unsafe { set_words(&set) }.to_vec())
}

/// The words of a CPU set.
///
/// # Safety
/// `cpu_set_t` must be made of `u64`s only (it is, on Linux).
unsafe fn set_words(set: &libc::cpu_set_t) -> &[u64] {
    let words = std::mem::size_of_val(set) / 8;
    // SAFETY: the caller's promise; the slice covers `set` exactly.
    unsafe { std::slice::from_raw_parts((set as *const libc::cpu_set_t).cast(), words) }
}

fn set_affinity(words: &[u64]) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain bits; zeroed is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let len = std::mem::size_of_val(&set) / 8;
    // SAFETY: cpu_set_t is an array of u64 words on Linux; the slice
    // covers `set` exactly, and nothing else refers to it meanwhile.
    let into = unsafe {
        std::slice::from_raw_parts_mut((&mut set as *mut libc::cpu_set_t).cast::<u64>(), len)
    };
    for (into, &bits) in into.iter_mut().zip(words) {
        *into = bits;
    }
    // SAFETY: reads size_of::<cpu_set_t>() bytes from `set`.
    match unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

fn nice() -> Option<i32> {
    // -1 is both a nice value and the error: errno tells them apart.
    // SAFETY: errno is this thread's; getpriority takes numbers.
    unsafe {
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, 0);
        (*libc::__errno_location() == 0).then_some(nice)
    }
}

fn set_nice(nice: i32) -> io::Result<()> {
    // SAFETY: takes numbers.
    match unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

fn credentials() -> Option<Credentials> {
    let (mut uids, mut gids) = ([0u32; 3], [0u32; 3]);
    let mut groups = vec![0 as libc::gid_t; 256];
    // SAFETY: each call writes into live locals of the sizes given.
    let ok = unsafe {
        let [ru, eu, su] = &mut uids;
        let [rg, eg, sg] = &mut gids;
        if libc::getresuid(ru, eu, su) != 0 || libc::getresgid(rg, eg, sg) != 0 {
            return None;
        }
        let mut n = libc::getgroups(groups.len() as i32, groups.as_mut_ptr());
        if n < 0 {
            // More than 256: ask how many, then take them.
            n = libc::getgroups(0, std::ptr::null_mut());
            groups.resize(n.max(0) as usize, 0);
            n = libc::getgroups(groups.len() as i32, groups.as_mut_ptr());
        }
        groups.truncate(n.max(0) as usize);
        n >= 0
    };
    ok.then_some(Credentials { uids, gids, groups })
}

fn set_credentials(c: &Credentials) -> io::Result<()> {
    let check = |result: libc::c_int| match result {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    };
    // SAFETY: each call reads numbers, or `groups` for its length.
    unsafe {
        // Groups first: only a privileged process may set them, and it
        // may not be one once its user is set. Unchanged, they are left.
        if credentials().is_none_or(|mine| mine.groups != c.groups) {
            check(libc::setgroups(c.groups.len(), c.groups.as_ptr()))?;
        }
        check(libc::setresgid(c.gids[0], c.gids[1], c.gids[2]))?;
        check(libc::setresuid(c.uids[0], c.uids[1], c.uids[2]))
    }
}

/// The signals this process ignores now, bit `n` for signal `n`.
fn ignored_signals() -> u64 {
    let mut ignored = 0;
    for signal in SIGNALS {
        // SAFETY: a zeroed sigaction is a valid out-buffer; a null new
        // action only queries the current one.
        let is_ignored = unsafe {
            let mut current: libc::sigaction = std::mem::zeroed();
            libc::sigaction(signal, std::ptr::null(), &mut current) == 0
                && current.sa_sigaction == libc::SIG_IGN
        };
        if is_ignored {
            ignored |= 1 << signal;
        }
    }
    ignored
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_changed_sends_only_the_signals_the_server_sets() {
        let here = Attributes::here();
        let changes = here.changes_since(&here);
        let own = SERVERS_OWN.iter().fold(0u64, |m, &s| m | 1 << s);
        assert_eq!(changes.signals_to_set, own);
        let expected = Attributes {
            ignored: here.ignored,
            ..Attributes::default()
        };
        assert_eq!(changes.to_set, expected);
    }

    #[test]
    fn a_changed_attribute_travels_alone() {
        let then = Attributes::here();
        let mut now = then.clone();
        now.umask = Some(0o077);
        now.limits[0].soft /= 2;
        now.ignored ^= 1 << libc::SIGHUP;
        let changes = now.changes_since(&then);
        assert_eq!(changes.to_set.umask, Some(0o077));
        assert_eq!(changes.to_set.limits, [now.limits[0]]);
        assert_eq!(changes.to_set.affinity, None);
        assert!(changes.signals_to_set & (1 << libc::SIGHUP) != 0);
    }

    #[test]
    fn this_process_reads_as_it_is() {
        let here = Attributes::here();
        assert_eq!(here.limits.len(), LIMITS as usize);
        assert!(here.umask.is_some(), "no Umask line in /proc/self/status");
        assert!(here
            .affinity
            .is_some_and(|words| words.iter().any(|&w| w != 0)));
        // std ignores SIGPIPE in a test binary.
        assert!(here.ignored & (1 << libc::SIGPIPE) != 0);
    }
}
