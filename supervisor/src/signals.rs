//! The signals the supervisor acts on, delivered into its event loop by
//! `outlast_ipc::os::signals::SelfPipe` (a byte per signal on a pipe it polls).

use outlast_ipc::os::signals::SelfPipe;

/// The signals the supervisor acts on.
pub const HANDLED: [libc::c_int; 7] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGHUP,
    libc::SIGTTIN,
    libc::SIGTTOU,
    libc::SIGCHLD,
];

/// Installs the supervisor's handlers: one per process.
pub fn install() -> std::io::Result<SelfPipe> {
    SelfPipe::install(&HANDLED)
}
