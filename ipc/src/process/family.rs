//! Who is related to this process, in `multiprocessing` terms:
//! [`active_children`] (the children started here with [`Process`](super::Process)
//! that have not exited) and [`parent_process`] (in a child, the process
//! that started it, with a sentinel that becomes readable when it exits).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::os::{self, Deadline};

/// Children started by this process and not reaped yet: (pid, name).
static CHILDREN: Mutex<Vec<(i32, String)>> = Mutex::new(Vec::new());
/// In a child: the parent, as it was when this child started.
static PARENT: Mutex<Option<ParentProcess>> = Mutex::new(None);

/// A child of this process, as [`active_children`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildInfo {
    pub pid: u32,
    pub name: String,
}

/// Python's `multiprocessing.active_children()`: the children started by
/// this process with `Process` that are still running (a child that has
/// exited but is not joined yet is not listed; joining it stays yours).
pub fn active_children() -> Vec<ChildInfo> {
    let children = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
    children
        .iter()
        .filter(|(pid, _)| !os::process::has_exited(*pid))
        .map(|(pid, name)| ChildInfo {
            pid: *pid as u32,
            name: name.clone(),
        })
        .collect()
}

pub(crate) fn started(pid: i32, name: &str) {
    let mut children = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
    children.push((pid, name.to_string()));
}

pub(crate) fn reaped(pid: i32) {
    let mut children = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
    children.retain(|(p, _)| *p != pid);
}

/// In a child, first thing: its parent's children are not its own, and its
/// parent is the process that started it.
pub(crate) fn become_child(parent_pid: i32, parent_name: String) {
    if let Ok(mut children) = CHILDREN.try_lock() {
        children.clear();
    }
    let sentinel = os::process::pidfd_open(parent_pid)
        .ok()
        .flatten()
        .map(Arc::new);
    let parent = ParentProcess {
        pid: parent_pid as u32,
        name: parent_name,
        sentinel,
    };
    if let Ok(mut slot) = PARENT.try_lock() {
        // Our parent's own parent record names a descriptor this child
        // does not have (every descriptor not handed over was closed):
        // forget it, never close it.
        if let Some(grandparent) = slot.replace(parent) {
            std::mem::forget(grandparent);
        }
    }
}

/// Python's `multiprocessing.parent_process()`: `None` in a process that
/// ipc did not start.
pub fn parent_process() -> Option<ParentProcess> {
    PARENT.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The process that started this one.
#[derive(Clone, Debug)]
pub struct ParentProcess {
    pid: u32,
    name: String,
    /// Its pidfd: readable once it has exited.
    sentinel: Option<Arc<OwnedFd>>,
}

impl ParentProcess {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its name ("MainProcess" for a program's first process).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A descriptor that becomes readable when the parent exits (Python's
    /// `sentinel`), for [`wait`](crate::wait) or an event loop.
    pub fn sentinel(&self) -> Option<RawFd> {
        self.sentinel.as_ref().map(|fd| fd.as_raw_fd())
    }

    /// Whether the parent still runs.
    pub fn is_alive(&self) -> bool {
        !self.join_timeout(Duration::ZERO)
    }

    /// Waits at most `timeout` for the parent to exit; true once it has.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        let deadline = Deadline::after(timeout);
        match &self.sentinel {
            Some(fd) => os::poll::poll_one(fd.as_raw_fd(), libc::POLLIN, deadline)
                .is_ok_and(|ready| ready.any()),
            // No pidfds: look at /proc every few milliseconds.
            None => loop {
                let alive = os::procfs::task_stat(self.pid).is_some_and(|s| s.is_alive());
                if !alive {
                    return true;
                }
                if deadline.passed() {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(5));
            },
        }
    }
}
