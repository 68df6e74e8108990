//! Who this process is, in `multiprocessing` terms: `outlast_ipc::current_process()`
//! gives the name the parent chose ("MainProcess" for the root) and the pid.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

static NAME: Mutex<String> = Mutex::new(String::new());
static CHILDREN_STARTED: AtomicU64 = AtomicU64::new(0);

/// This process, as `outlast_ipc::current_process()` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    /// "MainProcess", or the name given to `Process::named` in the parent.
    pub name: String,
    pub pid: u32,
    /// The process that started this one (for a fork-server child: the
    /// process that asked, not the server that forked it).
    pub parent_pid: u32,
}

/// Python's `multiprocessing.current_process()`.
pub fn current_process() -> ProcessInfo {
    let name = match NAME.lock() {
        Ok(n) if !n.is_empty() => n.clone(),
        Ok(_) => "MainProcess".to_string(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    ProcessInfo {
        name,
        pid: std::process::id(),
        parent_pid: super::family::parent_process()
            .map_or_else(|| crate::os::process::parent_pid() as u32, |p| p.pid()),
    }
}

pub(crate) fn set_current_name(name: &str) {
    let mut guard = NAME.lock().unwrap_or_else(|p| p.into_inner());
    *guard = name.to_string();
}

/// "Process-1", "Process-2", ... as Python numbers its children.
pub(crate) fn default_child_name() -> String {
    let n = CHILDREN_STARTED.fetch_add(1, Ordering::Relaxed) + 1;
    format!("Process-{n}")
}
