//! Whether a process (or one thread), named by its id and start time,
//! still runs, for callers that ask again and again: a consumer blocked on
//! a queue asks about every producer after each idle slice, an SPSC end
//! about its peer, a lock's waiter about the thread holding it.
//!
//! `/proc/<pid>/stat` answers, but it is dear for a thread that has just
//! woken: on a VM, 0.5-0.7 ms of CPU per read (against 20-30 us for a bare
//! syscall at the same moment), which made a consumer blocked on an empty
//! queue use 1 % of a core. So the first question about a process opens a
//! pidfd and checks with `/proc` that the pid still names that process;
//! later questions poll the pidfd, which turns readable once the process has
//! exited (a zombie counts as exited). A thread is watched the same way
//! through a thread pidfd (Linux 6.9 and later). Where pidfds are refused,
//! or the table is busy or full, `/proc` answers as before.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Mutex;

use super::procfs::start_time_of;

/// Processes watched through a pidfd at once; past it, the oldest is
/// dropped (it is opened again if asked about again).
const WATCHED: usize = 64;

struct Watched {
    pid: u32,
    /// 0: unknown (any process with the pid is taken for it).
    start_time: u64,
    /// A thread's pidfd (readable when that thread exits), not a process's
    /// (readable when its last thread does).
    thread: bool,
    pidfd: OwnedFd,
}

/// The watched processes, and the pid of the process whose descriptors
/// they are.
struct Table {
    owner: u32,
    watched: Vec<Watched>,
}

static TABLE: Mutex<Table> = Mutex::new(Table {
    owner: 0,
    watched: Vec::new(),
});

impl Table {
    /// The entries, valid in this process. A forked child inherits the
    /// parent's, but our fork closes every descriptor the child was not
    /// given, and the numbers are soon reused: a child forgets them,
    /// without closing descriptors that may be someone else's by now.
    fn entries(&mut self) -> &mut Vec<Watched> {
        let me = super::thread_id::process_id();
        if self.owner != me {
            for stale in self.watched.drain(..) {
                std::mem::forget(stale.pidfd);
            }
            self.owner = me;
        }
        &mut self.watched
    }
}

/// True while process `pid`, started `start_time` clock ticks after boot
/// (0: unknown, any start time), has not exited.
pub fn process_alive(pid: u32, start_time: u64) -> bool {
    alive(pid, start_time, false)
}

/// True while thread `tid` (of any process), started `start_time` clock
/// ticks after boot (0: any), has not exited.
pub fn thread_alive(tid: u32, start_time: u64) -> bool {
    alive(tid, start_time, true)
}

fn alive(id: u32, start_time: u64, thread: bool) -> bool {
    if id == 0 {
        return false;
    }
    // Never wait for the table: a forked child may have inherited it locked.
    let Ok(mut table) = TABLE.try_lock() else {
        return alive_by_proc(id, start_time);
    };
    let table = table.entries();
    if let Some(i) = table
        .iter()
        .position(|w| w.pid == id && w.start_time == start_time && w.thread == thread)
    {
        return match exited(&table[i].pidfd) {
            Some(true) => {
                table.swap_remove(i);
                false
            }
            Some(false) => true,
            None => alive_by_proc(id, start_time),
        };
    }
    let opened = if thread {
        super::process::pidfd_open_thread(id as i32)
    } else {
        super::process::pidfd_open(id as i32)
    };
    let pidfd = match opened {
        Ok(Some(fd)) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return false,
        // Refused, or out of descriptors: ask /proc every time.
        Ok(None) | Err(_) => return alive_by_proc(id, start_time),
    };
    // The pidfd names whoever had the id when it was opened: /proc, asked
    // after, says whether that is still the one meant.
    if !alive_by_proc(id, start_time) {
        return false;
    }
    if table.len() >= WATCHED {
        table.remove(0);
    }
    table.push(Watched {
        pid: id,
        start_time,
        thread,
        pidfd,
    });
    true
}

/// Whether the process behind `pidfd` has exited; `None` if poll failed.
fn exited(pidfd: &OwnedFd) -> Option<bool> {
    let mut fds = [libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    loop {
        match super::poll::poll_once(&mut fds, 0) {
            Ok(n) => return Some(n > 0 && fds[0].revents != 0),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
}

/// What `/proc` says: the pid exists, is neither a zombie nor dead, and
/// started when it should have.
fn alive_by_proc(pid: u32, start_time: u64) -> bool {
    match start_time_of(pid) {
        Some((start, state)) => {
            state != 'Z' && state != 'X' && (start_time == 0 || start == start_time)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_process_then_a_zombie_then_a_reaped_one() {
        let me = std::process::id();
        let my_start = super::super::procfs::own_start_time();
        assert!(process_alive(me, my_start));
        assert!(
            process_alive(me, my_start),
            "asked again, through the pidfd"
        );
        assert!(
            !process_alive(me, my_start + 1),
            "another process's start time"
        );
        assert!(!process_alive(0, 0));

        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep starts");
        let pid = child.id();
        let start = start_time_of(pid).expect("the child's stat").0;
        assert!(process_alive(pid, start));
        assert!(process_alive(pid, 0), "any start time");
        child.kill().expect("the child is killed");
        // A zombie until reaped: exited all the same. Its pidfd turns
        // readable as soon as the kernel has it exit.
        wait_until_ended(|| process_alive(pid, start), "still alive after a SIGKILL");
        assert!(!process_alive(pid, 0));
        let _ = child.wait();
        assert!(!process_alive(pid, start), "reaped");
    }

    #[test]
    fn a_thread_is_alive_until_it_ends() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let tid = super::super::thread_id::thread_id();
            let _ = tx.send((tid, super::super::thread_id::thread_start_time()));
            let _ = done_rx.recv();
        });
        let (tid, start) = rx.recv().expect("the thread's id");
        assert!(thread_alive(tid, start));
        assert!(thread_alive(tid, start), "asked again");
        assert!(thread_alive(tid, 0), "any start time");
        assert!(!thread_alive(tid, start + 1), "another thread's start time");
        let _ = done_tx.send(());
        thread.join().expect("the thread ends");
        // A join returns when the thread's id is cleared, a moment before
        // the kernel has it exit: ask until then.
        wait_until_ended(|| thread_alive(tid, start), "an ended thread lives on");
        assert!(!thread_alive(tid, 0), "ended, any start time");
        assert!(!thread_alive(0, 0));
    }

    /// Asks `alive` every millisecond until it says no; fails with
    /// `still` after 10 s.
    fn wait_until_ended(alive: impl Fn() -> bool, still: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while alive() {
            assert!(std::time::Instant::now() < deadline, "{still}");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Forks a child that looks at the inherited table: its exit code.
    fn child_view_of_the_table() -> i32 {
        // SAFETY: the child only takes the table with try_lock, makes
        // system calls and `_exit`s; it allocates and frees nothing.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = match TABLE.try_lock() {
                // Busy in the parent at the fork: try again.
                Err(_) => BUSY,
                Ok(mut t) => {
                    let before = t.watched.len();
                    let after = t.entries().len();
                    i32::from(!(before > 0 && after == 0 && t.owner == std::process::id()))
                }
            };
            // SAFETY: ends the forked child without running the parent's
            // destructors or atexit handlers.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "status {status:#x}");
        libc::WEXITSTATUS(status)
    }

    const BUSY: i32 = 3;

    #[test]
    fn a_forked_child_forgets_the_parents_descriptors_without_closing_them() {
        let me = std::process::id();
        assert!(process_alive(me, super::super::procfs::own_start_time()));
        let mut code = BUSY;
        for _ in 0..100 {
            code = child_view_of_the_table();
            if code != BUSY {
                break;
            }
        }
        assert_eq!(code, 0, "the child kept the parent's entries");
        let watched = TABLE.lock().map(|t| t.watched.len()).unwrap_or(0);
        assert!(watched > 0, "the parent keeps its own");
    }
}
