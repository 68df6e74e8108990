//! `supervisor manager serve`: a standalone manager server, reachable over
//! TCP (or a Unix socket) by any process that holds the key in
//! `--authkey-file`; it serves the built-in objects (dicts, lists, queues,
//! locks, ...) by name until it is stopped (TERM or INT).

use std::path::{Path, PathBuf};
use std::time::Duration;

use outlast_ipc::manager::ServeOptions;
use outlast_ipc::net::Address;

/// What `supervisor manager` can do.
#[derive(Debug, clap::Subcommand)]
pub enum ManagerCommand {
    /// Serve a manager until stopped: clients reach it with
    /// `Manager::connect(ADDRESS, key)` and share objects by name.
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Where to listen: HOST:PORT (TCP) or unix:PATH.
    #[arg(long, value_name = "ADDRESS")]
    pub listen: String,
    /// A file holding the key clients must prove (its bytes, a trailing
    /// newline dropped); it should be readable by its owner only.
    #[arg(long, value_name = "FILE")]
    pub authkey_file: PathBuf,
    /// Authenticated clients at once; more are refused.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub max_clients: usize,
    /// Disconnect a client silent this long (seconds; 0: never) that holds
    /// no lock and waits for nothing. Its proxies reconnect by themselves.
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    pub idle_timeout: u64,
    /// Disconnect a client silent this long (seconds; 0: never) while it
    /// holds a lock and waits for nothing: its locks go to the next holder,
    /// who is told their holder died (a stopped holder keeps none forever).
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    pub holder_timeout: u64,
    /// The most bytes of keys, values and items the manager stores, all
    /// objects together; a request that would store more is refused.
    #[arg(long, default_value_t = 1 << 30, value_name = "BYTES")]
    pub max_stored_bytes: usize,
    /// The most bytes one client connection may add to what is stored.
    #[arg(long, default_value_t = 256 << 20, value_name = "BYTES")]
    pub max_client_stored_bytes: usize,
    /// Seconds a new connection has to prove the key.
    #[arg(long, default_value_t = 5, value_name = "SECS")]
    pub handshake_timeout: u64,
    /// Do not log refused and dropped peers.
    #[arg(long)]
    pub quiet: bool,
    /// Seconds a remote process's references to objects it made last after
    /// its last connection closed (objects only it held are then freed).
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub remote_refs_grace: u64,
    /// Threads serving clients (0: one per two CPUs, at most 8).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub threads: usize,
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Address(#[from] outlast_ipc::net::BadAddress),
    #[error("cannot read the key from {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the key file {0} is empty")]
    EmptyKey(PathBuf),
    #[error("the key file {0} can be read by others than its owner (chmod 600 it)")]
    KeyReadable(PathBuf),
    #[error("cannot listen: {0}")]
    Listen(#[from] outlast_ipc::net::NetError),
}

/// Reads a key file: its bytes without a trailing newline, refused when
/// empty or when group or others may read it.
pub fn read_key(path: &Path) -> Result<Vec<u8>, ServeError> {
    use std::os::unix::fs::PermissionsExt;
    let failed = |source| ServeError::KeyFile {
        path: path.to_path_buf(),
        source,
    };
    let mode = std::fs::metadata(path)
        .map_err(failed)?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(ServeError::KeyReadable(path.to_path_buf()));
    }
    let mut key = std::fs::read(path).map_err(failed)?;
    while key.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        key.pop();
    }
    if key.is_empty() {
        return Err(ServeError::EmptyKey(path.to_path_buf()));
    }
    Ok(key)
}

/// Runs `supervisor manager serve` until the process is stopped.
pub fn serve(args: &ServeArgs) -> Result<(), ServeError> {
    let address: Address = args.listen.parse()?;
    let key = read_key(&args.authkey_file)?;
    let options = ServeOptions {
        max_clients: args.max_clients,
        idle_timeout: (args.idle_timeout > 0).then(|| Duration::from_secs(args.idle_timeout)),
        max_stored_bytes: args.max_stored_bytes,
        max_client_stored_bytes: args.max_client_stored_bytes,
        holder_timeout: (args.holder_timeout > 0).then(|| Duration::from_secs(args.holder_timeout)),
        handshake_timeout: Duration::from_secs(args.handshake_timeout.max(1)),
        log: !args.quiet,
        threads: args.threads,
        remote_refs_grace: Duration::from_secs(args.remote_refs_grace),
        ..ServeOptions::default()
    };
    outlast_ipc::manager::serve_forever(&address, &key, options)?;
    Ok(())
}
