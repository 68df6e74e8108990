//! Looking at processes through /proc (with `outlast_ipc::os::procfs`): who are my
//! children, is a pid alive, how much memory it holds.

use outlast_ipc::os::procfs::task_stat;

/// (pid, state letter) of every process whose parent is `parent`.
pub fn children_of(parent: u32) -> Vec<(u32, char)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = task_stat(pid)?;
        (stat.parent == parent as i32).then_some((pid, stat.state))
    })
    .collect()
}

/// State letter and parent pid from `/proc/<pid>/stat`.
pub fn stat_state_and_ppid(pid: u32) -> Option<(char, u32)> {
    let stat = task_stat(pid)?;
    Some((stat.state, u32::try_from(stat.parent).ok()?))
}

/// True while `pid` exists and is not a zombie.
pub fn is_running(pid: u32) -> bool {
    task_stat(pid).is_some_and(|s| s.is_alive())
}

/// Resident memory of process `pid`, in kB (`VmRSS`).
pub fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS")
}

/// A kB line of process `pid`'s `status` (`VmRSS`, `VmHWM`, ...).
pub fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect(field)
}

/// Minor page faults of process `pid` so far (field 10 of its `stat`):
/// pages it touched for the first time, such as a fresh buffer's.
pub fn minor_faults(pid: u32) -> u64 {
    minor_faults_in(&format!("/proc/{pid}/stat"))
}

/// Field 10 of the `stat` file at `path`: its minor page faults.
fn minor_faults_in(path: &str) -> u64 {
    let stat = std::fs::read_to_string(path).expect("stat");
    // After the command name (in parentheses, perhaps with spaces): the
    // state is field 3, so field 10 is the eighth.
    let (_, after_name) = stat.rsplit_once(')').expect("a stat line");
    after_name
        .split_whitespace()
        .nth(7)
        .and_then(|f| f.parse().ok())
        .expect("minflt")
}

/// Bytes this thread has written with `write` and its kin so far (`wchar`
/// of `/proc/thread-self/io`): a copy into a file or a memfd counts here,
/// on the thread that made it.
pub fn this_thread_written() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").expect("io");
    io.lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("wchar")
}

/// Minor page faults of this thread so far (field 10 of
/// `/proc/thread-self/stat`): pages it touched for the first time, such
/// as those of a fresh copy.
pub fn this_thread_minor_faults() -> u64 {
    minor_faults_in("/proc/thread-self/stat")
}
