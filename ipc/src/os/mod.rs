//! The OS layer: the system calls of every crate in this workspace, in one
//! place, so each Linux mechanism (pidfds, futexes, memfd seals,
//! `membarrier`, `/proc`, `PR_SET_PDEATHSIG`) has exactly one home and a
//! port to another kernel is a bounded job: replace these files.
//!
//! Built on `nix` where it covers a call, `rustix` for futexes, `libc`
//! where neither does. Everything here either returns an `io::Result` or
//! documents why it cannot fail; nothing panics.
//!
//! * [`clock`]: deadlines, the monotonic clocks (precise and coarse);
//! * [`fd`]: pipes, socketpairs, descriptor flags, reads and writes,
//!   descriptor hygiene for children;
//! * [`poll`]: `poll(2)` with a deadline; `epoll`: one thread waiting on
//!   many descriptors (crate-internal);
//! * [`process`]: pidfds, `waitpid`, signals to children, the parent-death
//!   signal, the executable's identity;
//! * [`liveness`]: whether a process named by pid and start time still
//!   runs, asked often (a pidfd polled, `/proc` read once);
//! * [`procfs`]: what `/proc` says (thread counts, start times, states, RSS,
//!   available memory, processes of a user);
//! * [`memory`]: memfds, seals, shared mappings, `MADV_DONTFORK`;
//! * [`futex`]: shared futex words; `membarrier` fences (crate-internal);
//! * [`signals`]: signal dispositions and the self-pipe of an event loop;
//! * [`spawn`]: a program started as `posix_spawn` starts one (no fork),
//!   in its own process group, with the parent-death signal;
//! * [`limits`]: resource limits (descriptors, processes);
//! * [`contention`]: whether more threads are runnable than CPUs (spinning
//!   cannot pay);
//! * [`stderr`]: diagnostic lines in one write each, whole among other
//!   processes' lines.

pub mod clock;
pub mod contention;
pub(crate) mod epoll;
pub mod fd;
pub mod futex;
pub mod limits;
pub mod liveness;
pub(crate) mod membarrier;
pub mod memory;
pub mod poll;
pub mod process;
pub mod procfs;
pub mod random;
pub mod rights;
pub mod signals;
pub mod spawn;
pub mod stack;
pub mod stderr;
pub(crate) mod thread_id;

pub use clock::Deadline;
