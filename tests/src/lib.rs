//! Helpers shared by the end-to-end tests: a tiny single-threaded test
//! harness, zombie and orphan checks over /proc, and paths to built binaries.
//!
//! The `fork` start method refuses to run in a multi-threaded process, and
//! libtest runs every test on a thread of its own. So the process tests use
//! `harness = false` and [`harness::run`], which runs cases one after another
//! on the main thread, and prints libtest's summary line.

pub mod attack;
pub mod executor;
pub mod harness;
pub mod load;
pub mod peak_alloc;
pub mod procfs;
pub mod traced;

use std::path::PathBuf;

/// `target/<profile>/`, found from the running test executable
/// (`target/<profile>/deps/<test>-<hash>`).
pub fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let deps = exe.parent().map(PathBuf::from).unwrap_or_default();
    deps.parent().map(PathBuf::from).unwrap_or(deps)
}

/// Path of an example of the `ipc` crate, built by `cargo test --workspace`.
pub fn example_path(name: &str) -> PathBuf {
    target_profile_dir().join("examples").join(name)
}

/// Path of a binary of this workspace.
pub fn bin_path(name: &str) -> PathBuf {
    target_profile_dir().join(name)
}

/// Starts one child per argument, each running `f` (fork), and joins them
/// all: their results, in order. Panics if one cannot start or did not
/// return (a test helper: the failure is the test's).
pub fn run_children<A, R>(f: fn(A) -> R, args: impl IntoIterator<Item = A>) -> Vec<R>
where
    A: serde::Serialize + serde::de::DeserializeOwned,
    R: serde::Serialize + serde::de::DeserializeOwned,
{
    let mut children: Vec<_> = args
        .into_iter()
        .map(|a| outlast_ipc::Process::new(f, a))
        .collect();
    for c in &mut children {
        c.start().expect("start a child");
    }
    children
        .iter_mut()
        .map(|c| c.join().expect("the child returned"))
        .collect()
}
