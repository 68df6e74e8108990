//! The control socket's requests and replies, as JSON.

use serde::{Deserialize, Serialize};

/// A request: `{"version": 1, "command": "status"}`,
/// `{"version": 1, "command": "scale", "workers": 4}`, ...
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(not(feature = "control"), allow(dead_code))]
pub struct Request {
    pub version: u32,
    #[serde(flatten)]
    pub command: Command,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    Status,
    /// Keep this many workers.
    Scale {
        workers: u64,
    },
    /// Send `signal` to one worker (it is replaced as any dead worker).
    Kill {
        worker: WorkerRef,
        signal: i32,
    },
    /// Replace every worker, one by one (as SIGHUP).
    Reload,
    /// Drain (as SIGTERM), or with `now` stop at once (as a second SIGINT).
    Stop {
        now: bool,
    },
    /// A status now, then one every `every_ms` (at least 100), for as long
    /// as the client reads them.
    Subscribe {
        every_ms: u64,
    },
}

/// A worker, by its slot (1-based, as in the events) or its pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerRef {
    Slot(usize),
    Pid(u32),
}

/// The reply: `{"ok": true, ...}` or `{"ok": false, "error": "..."}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub version: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the command did, in words (`scale`, `kill`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

impl Reply {
    pub fn error(why: impl Into<String>) -> Self {
        Reply {
            version: super::VERSION,
            ok: false,
            error: Some(why.into()),
            done: None,
            status: None,
        }
    }

    pub fn done(what: impl Into<String>) -> Self {
        Reply {
            version: super::VERSION,
            ok: true,
            error: None,
            done: Some(what.into()),
            status: None,
        }
    }

    pub fn status(status: Status) -> Self {
        Reply {
            version: super::VERSION,
            ok: true,
            error: None,
            done: None,
            status: Some(status),
        }
    }
}

/// A running supervisor, seen now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    pub job: String,
    /// `running`, `draining`, `stopping`.
    pub phase: String,
    pub elapsed_s: f64,
    /// Workers the fleet is meant to have.
    pub workers_target: u64,
    pub tasks: TaskStatus,
    pub ipc: IpcStatus,
    pub workers: Vec<WorkerStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub done: u64,
    pub total: u64,
    pub requeued: u64,
    pub dead: u64,
    pub per_s: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IpcStatus {
    pub messages: u64,
    pub bytes: u64,
    pub messages_per_s: f64,
    pub mb_per_s: f64,
}

/// One worker slot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// 1-based, as in the events.
    pub slot: usize,
    pub pid: Option<u32>,
    /// `starting`, `idle`, `busy`, `stopping`, `restarting` (waiting out a
    /// backoff), `closed`.
    pub state: String,
    /// The task it runs now, and for how long.
    pub task: Option<u64>,
    pub task_ms: Option<u64>,
    pub tasks_done: u64,
    pub rss_kb: Option<u64>,
    /// Its CPU time over its life, in percent of one CPU.
    pub cpu_percent: Option<f64>,
    /// Workers this slot has had after the first.
    pub restarts: u64,
    pub last_exit: Option<String>,
}
