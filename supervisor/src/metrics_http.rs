//! `--metrics ADDR`: a Prometheus scrape endpoint served from the run
//! loop itself (a thread would keep the fork start method from working):
//! a non-blocking listener in the loop's `poll`, requests read and
//! answered a turn at a time, never waited on. `GET /metrics` (or `HEAD`)
//! gets Prometheus' text format, or OpenMetrics when the scraper's
//! `Accept:` asks for it; anything else a 404 or 405; a request past 8
//! KiB, or slower than 5 s, a closed connection. When every place is
//! taken, a new scraper takes the place of the one that has waited
//! longest without finishing its request, so slow or silent peers cannot
//! keep an honest scraper out. A head may end with CRLF CRLF or bare LFs.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use crate::metrics_format::{
    prometheus_text, wants_openmetrics, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE,
};

/// How long a scraper has to send its request and take the reply.
const PATIENCE: Duration = Duration::from_secs(5);
/// The largest request head read.
const MAX_REQUEST: usize = 8 << 10;
/// Scrapers served at once.
const MAX_PEERS: usize = 16;
/// Connections accepted per turn at most (the rest wait in the backlog).
const ACCEPTS_PER_TURN: usize = 64;

/// What a scrape is answered with unless it asks for OpenMetrics.
pub const CONTENT_TYPE: &str = PROMETHEUS_CONTENT_TYPE;

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
    /// metrics, in OpenMetrics, when one asks for them), writes what it
    /// can. Never waits.
    pub fn serve(&mut self, mut body: impl FnMut() -> String) {
        for _ in 0..ACCEPTS_PER_TURN {
            let Ok((stream, _)) = self.listener.accept() else {
                break;
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            if self.peers.len() >= MAX_PEERS && !self.evict_the_slowest() {
                continue; // every place is a reply on its way out
            }
            self.peers.push(Peer {
                stream,
                request: Vec::new(),
                reply: Vec::new(),
                answered: false,
                since: Instant::now(),
            });
        }
        for peer in &mut self.peers {
            if !peer.answered {
                read_request(peer);
                if let Some(reply) = answer(&peer.request, &mut body) {
                    peer.answered = true;
                    peer.reply = reply;
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

    /// Drops the peer that has waited longest without a whole request;
    /// false if every peer has one (their replies are going out).
    fn evict_the_slowest(&mut self) -> bool {
        let oldest = self
            .peers
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.answered)
            .min_by_key(|(_, p)| p.since)
            .map(|(i, _)| i);
        match oldest {
            Some(i) => {
                self.peers.swap_remove(i);
                true
            }
            None => false,
        }
    }
}

/// Reads what the peer sent, up to just past the request-size limit.
fn read_request(peer: &mut Peer) {
    let mut buf = [0u8; 2048];
    while peer.request.len() <= MAX_REQUEST {
        match peer.stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => peer.request.extend_from_slice(&buf[..n]),
        }
    }
}

/// The reply to a request head, once the head is whole.
fn answer(request: &[u8], body: &mut impl FnMut() -> String) -> Option<Vec<u8>> {
    if request.len() > MAX_REQUEST {
        return Some(response(
            "431 Request Header Fields Too Large",
            "text/plain",
            "",
            true,
        ));
    }
    let whole =
        request.windows(4).any(|w| w == b"\r\n\r\n") || request.windows(2).any(|w| w == b"\n\n");
    if !whole {
        return None;
    }
    let first = request.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = first.strip_suffix(b"\r").unwrap_or(first);
    let words: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let (method, path) = match words[..] {
        [method, path, ..] => (method, path),
        _ => return Some(response("400 Bad Request", "text/plain", "", true)),
    };
    let with_body = method == b"GET";
    if !(with_body || method == b"HEAD") {
        return Some(response("405 Method Not Allowed", "text/plain", "", true));
    }
    if !(path == b"/metrics" || path.starts_with(b"/metrics?")) {
        return Some(response(
            "404 Not Found",
            "text/plain",
            "try /metrics\n",
            with_body,
        ));
    }
    let text = body();
    Some(if wants_openmetrics(request) {
        response("200 OK", OPENMETRICS_CONTENT_TYPE, &text, with_body)
    } else {
        response("200 OK", CONTENT_TYPE, &prometheus_text(&text), with_body)
    })
}

/// A whole response; for `HEAD`, its head alone (with the body's length).
fn response(status: &str, content_type: &str, body: &str, with_body: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if with_body {
        out.push_str(body);
    }
    out.into_bytes()
}
