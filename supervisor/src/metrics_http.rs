//! `--metrics ADDR`: a Prometheus scrape endpoint served from the run
//! loop itself (a thread would keep the fork start method from working):
//! a non-blocking listener in the loop's `poll`, requests read and
//! answered a turn at a time, never waited on. `GET /metrics` gets the
//! text exposition format; anything else a 404; a request past 8 KiB, or
//! slower than 5 s, a closed connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// How long a scraper has to send its request and take the reply.
const PATIENCE: Duration = Duration::from_secs(5);
/// The largest request head read.
const MAX_REQUEST: usize = 8 << 10;
/// Scrapers served at once.
const MAX_PEERS: usize = 16;

/// What a scrape is answered with.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

struct Peer {
    stream: TcpStream,
    request: Vec<u8>,
    reply: Vec<u8>,
    answered: bool,
    since: Instant,
}

pub struct MetricsServer {
    listener: TcpListener,
    peers: Vec<Peer>,
}

impl MetricsServer {
    pub fn bind(addr: SocketAddr) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(MetricsServer {
            listener,
            peers: Vec::new(),
        })
    }

    /// The listener's descriptor and each scraper's.
    pub fn fds(&self) -> Vec<RawFd> {
        std::iter::once(self.listener.as_raw_fd())
            .chain(self.peers.iter().map(|p| p.stream.as_raw_fd()))
            .collect()
    }

    pub fn has_peers(&self) -> bool {
        !self.peers.is_empty()
    }

    /// Accepts, reads, answers whole requests (`body()` builds the
    /// metrics when one asks for them), writes what it can. Never waits.
    pub fn serve(&mut self, mut body: impl FnMut() -> String) {
        while self.peers.len() < MAX_PEERS {
            let Ok((stream, _)) = self.listener.accept() else {
                break;
            };
            if stream.set_nonblocking(true).is_ok() {
                self.peers.push(Peer {
                    stream,
                    request: Vec::new(),
                    reply: Vec::new(),
                    answered: false,
                    since: Instant::now(),
                });
            }
        }
        for peer in &mut self.peers {
            if !peer.answered {
                let mut buf = [0u8; 2048];
                loop {
                    match peer.stream.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => peer.request.extend_from_slice(&buf[..n]),
                        Err(_) => break,
                    }
                    if peer.request.len() > MAX_REQUEST {
                        break;
                    }
                }
                if peer.request.len() > MAX_REQUEST {
                    peer.answered = true;
                    peer.reply = response("431 Request Header Fields Too Large", "text/plain", "");
                } else if peer.request.windows(4).any(|w| w == b"\r\n\r\n") {
                    peer.answered = true;
                    let line = peer.request.split(|&b| b == b'\r').next().unwrap_or(&[]);
                    peer.reply = match line.split(|&b| b == b' ').collect::<Vec<_>>()[..] {
                        [b"GET", path, ..]
                            if path == b"/metrics" || path.starts_with(b"/metrics?") =>
                        {
                            response("200 OK", CONTENT_TYPE, &body())
                        }
                        [b"GET", ..] => response("404 Not Found", "text/plain", "try /metrics\n"),
                        _ => response("405 Method Not Allowed", "text/plain", ""),
                    };
                }
            }
            if !peer.reply.is_empty() {
                match peer.stream.write(&peer.reply) {
                    Ok(n) => {
                        peer.reply.drain(..n);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => peer.reply.clear(),
                }
            }
        }
        self.peers.retain(|p| {
            let done = p.answered && p.reply.is_empty();
            !(done || p.since.elapsed() > PATIENCE)
        });
    }
}

fn response(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
