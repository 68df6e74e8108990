//! What a fork server's child takes from its creator besides the entry:
//! the working directory and the environment as they are at the start.
//! The server is an exec of the creator made once, so without this a
//! child would run where the creator was, with the variables it had, when
//! the server started: a `set_current_dir` or `set_var` in the creator
//! after that would reach fork and spawn children but not these. (Python's
//! forkserver sends the working directory the same way.)
//!
//! Most programs change neither once the server runs: then nothing is
//! sent, and the child does nothing (a fork server start is some 0.3 ms,
//! and entering them cost about 0.04 ms of it).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The creator's when it launched the server: the server's own.
static AT_LAUNCH: Mutex<Option<Surroundings>> = Mutex::new(None);

/// The creator's working directory and environment at one start.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Surroundings {
    /// `None` if the creator's is gone (the child keeps the server's).
    #[serde(with = "serde_bytes")]
    cwd: Option<Vec<u8>>,
    /// `name=value` entries, each ended by a NUL byte, as in `environ`.
    #[serde(with = "serde_bytes")]
    env: Vec<u8>,
}

impl Surroundings {
    /// This process's, now.
    pub(crate) fn here() -> Self {
        let cwd = std::env::current_dir()
            .ok()
            .map(|dir| dir.into_os_string().into_encoded_bytes());
        let mut env = Vec::new();
        for (name, value) in std::env::vars_os() {
            env.extend_from_slice(name.as_bytes());
            env.push(b'=');
            env.extend_from_slice(value.as_bytes());
            env.push(0);
        }
        Surroundings { cwd, env }
    }

    /// The server about to be launched takes this process's as they are.
    pub(crate) fn note_launch() {
        let now = Surroundings::here();
        *AT_LAUNCH.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
    }

    /// This process's now, if they differ from the server's.
    pub(crate) fn changed_since_launch() -> Option<Self> {
        let now = Surroundings::here();
        let at_launch = AT_LAUNCH.lock().unwrap_or_else(|p| p.into_inner());
        (at_launch.as_ref() != Some(&now)).then_some(now)
    }

    /// In a freshly forked child of the single-threaded server (no other
    /// thread reads the environment): makes them this process's. Only what
    /// differs is written (mostly nothing: each write would copy pages
    /// the child shares with the server). A directory that cannot be
    /// entered (removed since) leaves the server's.
    pub(crate) fn enter(&self) {
        if let Some(cwd) = &self.cwd {
            let cwd = OsStr::from_bytes(cwd);
            if std::env::current_dir().map_or(true, |here| here.as_os_str() != cwd) {
                let _ = std::env::set_current_dir(cwd);
            }
        }
        let wanted: Vec<(&OsStr, &OsStr)> = self.variables().collect();
        for (name, _) in std::env::vars_os() {
            if !wanted.iter().any(|(n, _)| *n == name.as_os_str()) {
                std::env::remove_var(&name);
            }
        }
        for (name, value) in wanted {
            if std::env::var_os(name).as_deref() != Some(value) {
                std::env::set_var(name, value);
            }
        }
    }

    /// The environment's `(name, value)` pairs.
    fn variables(&self) -> impl Iterator<Item = (&OsStr, &OsStr)> {
        self.env.split(|&b| b == 0).filter_map(|entry| {
            // A name may begin with '=' (std reads `environ` so).
            let at = entry.iter().skip(1).position(|&b| b == b'=')? + 1;
            Some((
                OsStr::from_bytes(&entry[..at]),
                OsStr::from_bytes(&entry[at + 1..]),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_split_at_the_first_equals_sign_after_the_name() {
        let s = Surroundings {
            cwd: None,
            env: b"A=1\0B=x=y\0=C=2\0\0broken\0".to_vec(),
        };
        let parsed: Vec<(&[u8], &[u8])> = s
            .variables()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        assert_eq!(
            parsed,
            [(&b"A"[..], &b"1"[..]), (b"B", b"x=y"), (b"=C", b"2"),]
        );
    }
}
