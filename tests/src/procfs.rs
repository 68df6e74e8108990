//! Looking at processes through /proc: who are my children, is a pid alive.

use std::fs;

/// (pid, state letter) of every process whose parent is `parent`.
pub fn children_of(parent: u32) -> Vec<(u32, char)> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let (state, ppid) = stat_state_and_ppid(pid)?;
        (ppid == parent).then_some((pid, state))
    })
    .collect()
}

/// State letter and parent pid from /proc/<pid>/stat.
pub fn stat_state_and_ppid(pid: u32) -> Option<(char, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: parse after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// True while `pid` exists and is not a zombie.
pub fn is_running(pid: u32) -> bool {
    matches!(stat_state_and_ppid(pid), Some((state, _)) if state != 'Z' && state != 'X')
}
