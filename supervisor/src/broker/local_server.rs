//! A `redis-server` of our own, for `supervisor bench broker` and the
//! broker tests: started on loopback, on a free port, with its own
//! temporary directory and an append-only file (fsync on every write),
//! killed and removed when dropped. Whoever needs one is told clearly when
//! it cannot start.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One redis-server process (restartable on the same port and data).
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    password: Option<String>,
}

impl RedisServer {
    /// Starts a server, or says why it cannot.
    pub fn start() -> Result<Self, String> {
        Self::start_with_password(None)
    }

    /// Starts a server that requires `password`.
    pub fn start_with_password(password: Option<&str>) -> Result<Self, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("no free port for redis-server: {e}"))?;
        let dir =
            std::env::temp_dir().join(format!("supervisor-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("temp dir for redis-server: {e}"))?;
        let mut server = RedisServer {
            child: None,
            port,
            dir,
            password: password.map(str::to_string),
        };
        server.launch()?;
        Ok(server)
    }

    fn launch(&mut self) -> Result<(), String> {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--bind",
            "127.0.0.1",
            "--protected-mode",
            "no",
            "--save",
            "",
        ])
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .arg("--port")
        .arg(self.port.to_string())
        .arg("--dir")
        .arg(&self.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        let child = cmd.spawn().map_err(|e| {
            format!(
                "cannot start redis-server ({e}): install it (apt-get install redis-server; \
                 .ci/run does)"
            )
        })?;
        self.child = Some(child);
        let started = Instant::now();
        while !self.answers() {
            if started.elapsed() > Duration::from_secs(20) {
                return Err(format!(
                    "redis-server on port {} did not answer within 20 s",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Whether it answers PING (a server still loading its AOF does not).
    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let ping = match &self.password {
            Some(p) => format!("AUTH {p}\r\nPING\r\n"),
            None => "PING\r\n".to_string(),
        };
        if s.write_all(ping.as_bytes()).is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        let mut got = String::new();
        while let Ok(n @ 1..) = s.read(&mut buf) {
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
            if got.contains("PONG") || got.contains('-') {
                break;
            }
        }
        got.contains("+PONG")
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// SIGKILLs the server (its data stays in the append-only file).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.launch()
    }

    /// Runs `redis-cli` against it; its output, trimmed (empty if it
    /// cannot run).
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.arg("-p").arg(self.port.to_string());
        if let Some(p) = &self.password {
            cmd.args(["-a", p, "--no-auth-warning"]);
        }
        match cmd.args(args).output() {
            Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_string(),
            Err(_) => String::new(),
        }
    }

    /// `redis-cli` answering a number (0 when it does not).
    pub fn number(&self, args: &[&str]) -> u64 {
        self.cli(args).parse().unwrap_or(0)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
