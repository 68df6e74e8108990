//! What `/proc` says about processes and the machine: thread counts, a
//! thread's start time and state (which with its id names it uniquely, as
//! a recycled id gets another start time), resident memory, available
//! memory, and how many processes a user runs. Every reader returns `None`
//! or an error on a file it cannot parse: `/proc` of another process may
//! vanish between two reads.

use std::io;

/// Number of threads in this process.
pub fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// How many of this process's threads are alive and have a name that
/// does not start with `prefix`. A thread that ends while it is counted
/// (its name can no longer be read) is not.
pub fn threads_not_named(prefix: &str) -> io::Result<usize> {
    let mut others = 0;
    each_thread_name(|name| others += usize::from(!name.starts_with(prefix)))?;
    Ok(others)
}

/// Shows `each` the name of every thread of this process alive now (one
/// that ends meanwhile, whose name can no longer be read, is left out).
pub fn each_thread_name(mut each: impl FnMut(&str)) -> io::Result<()> {
    for task in std::fs::read_dir("/proc/self/task")?.flatten() {
        let mut buf = [0u8; 32];
        let path = format!("{}/comm", task.path().display());
        if let Some(name) = read_small(&path, &mut buf) {
            each(name.trim_end());
        }
    }
    Ok(())
}

/// Whether thread `tid` of this process still exists.
pub fn thread_exists(tid: u32) -> bool {
    std::path::Path::new(&format!("/proc/self/task/{tid}")).exists()
}

/// A small `/proc` file read into `buf` without allocating (for readers
/// called often); `None` if it cannot be read or is not text.
pub(crate) fn read_small<'a>(path: &str, buf: &'a mut [u8]) -> Option<&'a str> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    std::str::from_utf8(&buf[..len]).ok()
}

/// A process or thread as its `stat` file describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskStat {
    /// `R`, `S`, `D`, `T`, `Z`, `X`, ...
    pub state: char,
    /// Clock ticks after boot at which it started (field 22).
    pub start_time: u64,
    pub parent: i32,
    /// User + system CPU time in clock ticks (fields 14 and 15).
    pub cpu_ticks: u64,
    /// Resident pages (field 24).
    pub rss_pages: u64,
}

impl TaskStat {
    /// Alive: neither a zombie nor dead.
    pub fn is_alive(&self) -> bool {
        self.state != 'Z' && self.state != 'X'
    }
}

/// `/proc/<id>/stat` of a process or thread (any thread id works there).
pub fn task_stat(id: u32) -> Option<TaskStat> {
    #[cfg(test)]
    STAT_READS.with(|n| n.set(n.get() + 1));
    let stat = std::fs::read_to_string(format!("/proc/{id}/stat")).ok()?;
    parse_stat(&stat)
}

#[cfg(test)]
thread_local! {
    /// How many times this thread read a `/proc/<id>/stat`.
    pub(crate) static STAT_READS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

fn parse_stat(stat: &str) -> Option<TaskStat> {
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field n overall is index n - 3 here.
    let field = |n: usize| fields.get(n - 3).copied();
    Some(TaskStat {
        state: field(3)?.chars().next()?,
        parent: field(4)?.parse().ok()?,
        cpu_ticks: field(14)?.parse::<u64>().ok()? + field(15)?.parse::<u64>().ok()?,
        start_time: field(22)?.parse().ok()?,
        rss_pages: field(24)?.parse().ok()?,
    })
}

/// This process's start time, read from `/proc` once per process (a forked
/// child reads its own): with the pid it names the process uniquely.
pub fn own_start_time() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    // (pid << 40 | 1) once known: a forked child sees another pid and reads again.
    static CACHED: AtomicU64 = AtomicU64::new(0);
    static START: AtomicU64 = AtomicU64::new(0);
    let pid = u64::from(std::process::id());
    if CACHED.load(Ordering::Acquire) == (pid << 1) | 1 {
        return START.load(Ordering::Relaxed);
    }
    let start = start_time_of(pid as u32).map_or(0, |(s, _)| s);
    START.store(start, Ordering::Relaxed);
    CACHED.store((pid << 1) | 1, Ordering::Release);
    start
}

/// (start time, state) of a process or thread, the pair that names it.
pub fn start_time_of(id: u32) -> Option<(u64, char)> {
    task_stat(id).map(|s| (s.start_time, s.state))
}

/// Bytes of memory the kernel could give without swapping (`MemAvailable`).
pub fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The kernel's process-wide limits: (`pid_max`, `threads-max`).
pub fn kernel_task_limits() -> (Option<u64>, Option<u64>) {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    };
    (
        read("/proc/sys/kernel/pid_max"),
        read("/proc/sys/kernel/threads-max"),
    )
}

/// Threads of every process whose real user is `uid` (what
/// `RLIMIT_NPROC` counts), read from `/proc/<pid>/status`.
pub fn tasks_of_user(uid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut tasks = 0;
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let field = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        };
        if field("Uid:") == Some(u64::from(uid)) {
            tasks += field("Threads:").unwrap_or(1);
        }
    }
    tasks
}

/// Threads of every process on the machine (what pid_max and threads-max bound).
pub fn task_count() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("Threads:"))
                        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                })
                .unwrap_or(1)
        })
        .sum()
}

/// The page size, for RSS in bytes.
pub fn page_size() -> u64 {
    // SAFETY: sysconf takes an integer and touches no memory.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096).max(1)
}

/// A process's resident memory in kB (`VmRSS` in `/proc/PID/status`);
/// `None` once it is gone (or a kernel thread).
pub fn resident_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The children of process `pid` (of each of its threads), from
/// `/proc/PID/task/TID/children`; empty when unreadable.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    out
}

/// Resident memory (kB) of `pid` and all its descendants: what a worker
/// costs with the programs it started. `None` if `pid` itself is gone.
/// At most 4,096 processes are counted (a fork bomb is not walked).
pub fn tree_resident_kb(pid: u32) -> Option<u64> {
    let mut total = resident_kb(pid)?;
    let mut queue = children(pid);
    let mut seen = 1usize;
    while let Some(next) = queue.pop() {
        seen += 1;
        if seen > 4096 {
            break;
        }
        total += resident_kb(next).unwrap_or(0);
        queue.extend(children(next));
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_counts_its_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep");
        let own = resident_kb(std::process::id()).expect("own");
        let with = tree_resident_kb(std::process::id()).expect("tree");
        assert!(children(std::process::id()).contains(&child.id()));
        assert!(with > own, "{with} kB with a child, {own} kB alone");
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn a_command_name_with_spaces_and_parentheses_parses() {
        let line = "42 (a (b) c) S 7 42 42 0 -1 4194560 100 0 0 0 11 5 0 0 20 0 1 0 12345 1000000 250 18446744073709551615";
        let stat = parse_stat(line).expect("parses");
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.parent, 7);
        assert_eq!(stat.cpu_ticks, 16);
        assert_eq!(stat.start_time, 12345);
        assert_eq!(stat.rss_pages, 250);
    }

    #[test]
    fn this_process_is_alive_and_garbage_is_none() {
        let me = task_stat(std::process::id()).expect("our own stat");
        assert!(me.is_alive());
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S"), None);
    }
}
