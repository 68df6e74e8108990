//! In a child forked by ipc: the parent's mappings it unmapped (see
//! `mappings`), and a `SIGSEGV` handler that says so when the child
//! touches one. A Python habit, a `Queue` or `Value` in a global used by
//! a forked child, otherwise ends the child with a bare "signal 11" and
//! nothing else to go on.
//!
//! The child still ends by `SIGSEGV` (nothing can resume the faulting
//! access), but first its stderr gets a line naming the cause and the
//! cure. Faults anywhere else go to the handler that was there before
//! (std's stack overflow report, or the default action).

use std::sync::atomic::{AtomicUsize, Ordering};

/// How many unmapped ranges the handler knows; a child that had more
/// (past this many, in the parent's order) gets the bare signal for them.
const MAX_RANGES: usize = 256;

static STARTS: [AtomicUsize; MAX_RANGES] = [const { AtomicUsize::new(0) }; MAX_RANGES];
static ENDS: [AtomicUsize; MAX_RANGES] = [const { AtomicUsize::new(0) }; MAX_RANGES];
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// The handler before ours, stored once, before ours is installed.
static mut PREVIOUS: Option<libc::sigaction> = None;

const MESSAGE: &[u8] = b"outlast-ipc: this forked child used shared memory of a handle \
it was not given (a Queue, Value, Array, lock or SharedMemory of its parent's, kept in a \
static or from before the fork). A child started by fork has only the handles in its \
arguments: pass them, as in Process::new(f, (queue.clone(), value.clone())). \
Ending with SIGSEGV.\n";

/// Remembers the range `[start, start + len)`, unmapped in this child.
pub(super) fn remember(start: usize, len: usize) {
    let at = COUNT.load(Ordering::Relaxed);
    if at < MAX_RANGES {
        STARTS[at].store(start, Ordering::Relaxed);
        ENDS[at].store(start.saturating_add(len), Ordering::Relaxed);
        COUNT.store(at + 1, Ordering::Release);
    }
}

/// Installs the handler, once the ranges are remembered. Called in the
/// forked child while it has one thread, before its entry runs.
pub(super) fn install_handler() {
    if COUNT.load(Ordering::Acquire) == 0 {
        return;
    }
    // SAFETY: sigaction with a zeroed struct (a valid empty mask and no
    // flags) and a handler of the right signature; `PREVIOUS` is written
    // here only, while this child has its one thread and before the
    // handler that reads it is installed.
    unsafe {
        let mut ours: libc::sigaction = std::mem::zeroed();
        ours.sa_sigaction = on_fault as *const () as usize;
        ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut ours.sa_mask);
        let mut previous: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGSEGV, std::ptr::null(), &mut previous) != 0 {
            return;
        }
        *std::ptr::addr_of_mut!(PREVIOUS) = Some(previous);
        libc::sigaction(libc::SIGSEGV, &ours, std::ptr::null_mut());
    }
}

fn in_forgotten(address: usize) -> bool {
    let count = COUNT.load(Ordering::Acquire).min(MAX_RANGES);
    (0..count).any(|i| {
        let start = STARTS[i].load(Ordering::Relaxed);
        address >= start && address < ENDS[i].load(Ordering::Relaxed)
    })
}

/// The handler: async-signal-safe (atomics, `write`, `sigaction`).
extern "C" fn on_fault(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for a SA_SIGINFO handler.
    let address = unsafe { (*info).si_addr() } as usize;
    if in_forgotten(address) {
        // SAFETY: write(2) from a static buffer, then the default action
        // back: returning repeats the access, which now ends the process.
        unsafe {
            libc::write(2, MESSAGE.as_ptr().cast(), MESSAGE.len());
            libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        }
        return;
    }
    // SAFETY: `PREVIOUS` was written before this handler was installed and
    // is never written again.
    let previous = unsafe { *std::ptr::addr_of!(PREVIOUS) };
    match previous {
        Some(p) if p.sa_sigaction != libc::SIG_DFL && p.sa_sigaction != libc::SIG_IGN => {
            if p.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the handler installed before ours, with the
                // signature its SA_SIGINFO flag promises.
                let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(p.sa_sigaction) };
                handler(signal, info, context);
            } else {
                // SAFETY: as above, a plain handler.
                let handler: extern "C" fn(libc::c_int) =
                    unsafe { std::mem::transmute(p.sa_sigaction) };
                handler(signal);
            }
        }
        // SAFETY: the default action back; returning repeats the fault.
        _ => unsafe {
            libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        },
    }
}
