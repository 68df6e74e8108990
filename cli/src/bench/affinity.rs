//! Pinning a bench's processes to one CPU, for the rows that measure two
//! processes waking each other there: a wake-up on the same CPU is a
//! context switch, one on another CPU can wait for the hypervisor to wake
//! an idle CPU (tens of microseconds on some VMs), and the scheduler picks
//! either from one run to the next.

/// The CPU this thread runs on now.
pub fn current_cpu() -> Option<usize> {
    // SAFETY: sched_getcpu has no arguments and only reads.
    let cpu = unsafe { libc::sched_getcpu() };
    usize::try_from(cpu).ok()
}

/// This thread's CPUs, to give back with [`set`].
pub fn get() -> Result<libc::cpu_set_t, String> {
    // SAFETY: a zeroed cpu_set_t is an empty set, and sched_getaffinity
    // writes at most its size into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(format!(
                "sched_getaffinity: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(set)
    }
}

/// Runs this thread on the CPUs of `set` only.
pub fn set(set: &libc::cpu_set_t) -> Result<(), String> {
    // SAFETY: `set` is a valid cpu_set_t of the size given.
    let done = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
    if done != 0 {
        return Err(format!(
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// A CPU of `set` other than `cpu`, if it has one.
pub fn another_cpu(set: &libc::cpu_set_t, cpu: usize) -> Option<usize> {
    (0..8 * std::mem::size_of::<libc::cpu_set_t>())
        // SAFETY: CPU_ISSET reads a bit of `set`; `c` is inside it.
        .find(|&c| c != cpu && unsafe { libc::CPU_ISSET(c, set) })
}

/// Runs this thread on `cpu` only (`None`: leaves it as it is).
pub fn pin(cpu: Option<usize>) -> Result<(), String> {
    let Some(cpu) = cpu else {
        return Ok(());
    };
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET stays inside it
    // for any cpu below its size, which is checked first.
    let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
        return Err(format!("cpu {cpu} is past the largest cpu set"));
    }
    // SAFETY: cpu is inside the set (checked above).
    unsafe { libc::CPU_SET(cpu, &mut one) };
    set(&one)
}
