//! A minimal test harness for tests that fork: every case runs on the main
//! thread, one after another, under an `alarm(2)` so that a hang fails the run
//! instead of stalling it. After each case it checks that the case left no
//! child process behind, running or zombie (the fork server's children
//! count as the case's). With `OUTLAST_TEST_LOAD` set, the cases run beside
//! one busy process per CPU.

use std::panic::{self, AssertUnwindSafe};
use std::sync::OnceLock;
use std::time::Instant;

use crate::load::BusyLoops;
use crate::procfs;

/// One named test case.
pub struct Case {
    pub name: &'static str,
    pub run: fn(),
}

/// Seconds a case may take before SIGALRM ends the whole run.
const CASE_ALARM_SECS: u32 = 120;

/// Runs the cases named on the command line (substring match; all if none)
/// and exits with libtest's conventions: a summary line, code 101 on failure.
pub fn run(cases: &[Case]) -> ! {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let selected: Vec<&Case> = cases
        .iter()
        .filter(|c| filters.is_empty() || filters.iter().any(|f| c.name.contains(f.as_str())))
        .collect();
    // OUTLAST_TEST_LOAD: every case beside one busy process per CPU.
    let load = std::env::var_os("OUTLAST_TEST_LOAD").map(|_| BusyLoops::one_per_cpu());
    if let Some(load) = &load {
        let _ = LOAD_PIDS.set(load.pids());
    }
    let started = Instant::now();
    println!("\nrunning {} tests", selected.len());
    if let Some(load) = &load {
        println!("(beside {} busy processes, one per CPU)", load.pids().len());
    }
    let mut failed = Vec::new();
    for case in &selected {
        // SAFETY: alarm only arms a timer; its default action ends the process.
        unsafe { libc::alarm(CASE_ALARM_SECS) };
        let outcome = panic::catch_unwind(AssertUnwindSafe(case.run));
        // SAFETY: as above; 0 disarms the timer.
        unsafe { libc::alarm(0) };
        let leftovers = leftover_children();
        let verdict = match (&outcome, leftovers.is_empty()) {
            (Ok(()), true) => "ok".to_string(),
            (Ok(()), false) => format!("FAILED (left child processes behind: {leftovers:?})"),
            (Err(_), _) => "FAILED".to_string(),
        };
        println!("test {} ... {verdict}", case.name);
        if verdict != "ok" {
            failed.push(case.name);
        }
    }
    let passed = selected.len() - failed.len();
    if !failed.is_empty() {
        println!("\nfailures:");
        for name in &failed {
            println!("    {name}");
        }
    }
    println!(
        "\ntest result: {}. {passed} passed; {} failed; 0 ignored; 0 measured; {} filtered out; finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        cases.len() - selected.len(),
        started.elapsed().as_secs_f64()
    );
    drop(load);
    std::process::exit(if failed.is_empty() { 0 } else { 101 })
}

/// `cases![a, b, c]` builds the case list from test function names.
#[macro_export]
macro_rules! cases {
    ($($f:path),* $(,)?) => {
        &[$($crate::harness::Case { name: stringify!($f), run: $f }),*]
    };
}

/// The busy loops of `OUTLAST_TEST_LOAD`: children that are not a case's.
static LOAD_PIDS: OnceLock<Vec<u32>> = OnceLock::new();

/// This process's children, and the fork server's, except the fork server
/// itself (it serves every case, and goes when this process does) and the
/// busy loops of `OUTLAST_TEST_LOAD`.
pub fn leftover_children() -> Vec<(u32, char)> {
    let server = outlast_ipc::forkserver::pid();
    let load = LOAD_PIDS.get().map_or(&[][..], Vec::as_slice);
    let mut children: Vec<_> = procfs::children_of(std::process::id())
        .into_iter()
        .filter(|(pid, _)| Some(*pid) != server && !load.contains(pid))
        .collect();
    if let Some(server) = server {
        children.extend(procfs::children_of(server));
    }
    children
}
