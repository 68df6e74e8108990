//! Mutual authentication of a new connection with a shared key, before
//! any other byte is trusted: each side proves it holds the key by an
//! HMAC-SHA256 of the other's fresh random nonce (as Python 3.12's
//! `multiprocessing.connection` does, in both directions), and the key
//! itself never travels. The two proofs are domain-separated, so one side's
//! proof can never be replayed as the other's.
//!
//! ```text
//! server -> client   MAGIC, version, nonce_s
//! client -> server   MAGIC, version, nonce_c, HMAC(key, "client", nonce_s, nonce_c)
//! server -> client   WELCOME, HMAC(key, "server", nonce_c, nonce_s)   (or FAILURE)
//! ```
//!
//! Every message is a frame of at most `MAX_HANDSHAKE` bytes, and the
//! whole exchange has a deadline: a silent or slow peer is a timeout.
//!
//! Both sides then hold [`FrameKeys`], one per direction, derived from the
//! key and both nonces (`HMAC(key, "frames client->server", nonce_s,
//! nonce_c)` and the other way): a TCP connection seals every later frame
//! with them (`pipe::mac`), so nobody on the path can add, replay or alter
//! one after the handshake.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::pipe::{Connection, RecvTimeoutError};

/// Opens every handshake, so a stray peer (an HTTP client, say) is told
/// apart from a wrong key.
const MAGIC: &[u8; 8] = b"ipc-auth";
/// Changes when the handshake or what follows it changes (2: frames
/// sealed after the handshake over TCP).
pub const PROTOCOL_VERSION: u32 = 2;
const NONCE: usize = 32;
const TAG: usize = 32;
const WELCOME: &[u8; 8] = b"welcome!";
const FAILURE: &[u8; 8] = b"failure!";
/// The largest handshake frame either side accepts.
const MAX_HANDSHAKE: usize = 256;

/// Why a handshake failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// The peer's proof did not match our key: it has another key.
    #[error("the peer does not know the key")]
    WrongKey,
    /// We proved our key and the peer refused it.
    #[error("the peer refused our key")]
    Refused,
    /// The peer speaks this handshake in another version.
    #[error("the peer speaks protocol {theirs}, not {PROTOCOL_VERSION}")]
    Version { theirs: u32 },
    /// Bytes that are not this handshake at all.
    #[error("the peer does not speak this protocol")]
    NotOurProtocol,
    #[error("the handshake took longer than {0:?}")]
    Timeout(Duration),
    #[error("the peer closed the connection during the handshake")]
    Disconnected,
    #[error("the key is empty")]
    EmptyKey,
    #[error("cannot draw random bytes: {0}")]
    Random(String),
}

type HmacSha256 = Hmac<Sha256>;

/// The two frame keys of one authenticated connection.
#[derive(Clone)]
pub struct FrameKeys {
    pub client_to_server: [u8; 32],
    pub server_to_client: [u8; 32],
}

impl FrameKeys {
    fn derive(key: &[u8], server_nonce: &[u8], client_nonce: &[u8]) -> Result<Self, AuthError> {
        let one = |role: &[u8]| -> Result<[u8; 32], AuthError> {
            let tag = proof(key, role, server_nonce, client_nonce)?
                .finalize()
                .into_bytes();
            let mut out = [0u8; 32];
            out.copy_from_slice(&tag);
            Ok(out)
        };
        Ok(FrameKeys {
            client_to_server: one(b"frames client->server")?,
            server_to_client: one(b"frames server->client")?,
        })
    }
}

fn proof(key: &[u8], role: &[u8], first: &[u8], second: &[u8]) -> Result<HmacSha256, AuthError> {
    let mut mac = HmacSha256::new_from_slice(key).map_err(|_| AuthError::EmptyKey)?;
    mac.update(role);
    mac.update(first);
    mac.update(second);
    Ok(mac)
}

fn nonce() -> Result<[u8; NONCE], AuthError> {
    let mut bytes = [0u8; NONCE];
    crate::os::random::fill(&mut bytes).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(bytes)
}

/// Receives one handshake frame by `deadline`.
fn recv(
    conn: &mut Connection,
    timeout: Duration,
    started: std::time::Instant,
) -> Result<Vec<u8>, AuthError> {
    let left = timeout.saturating_sub(started.elapsed());
    if left.is_zero() {
        return Err(AuthError::Timeout(timeout));
    }
    match conn.recv_bytes_timeout(left) {
        Ok(bytes) => Ok(bytes),
        Err(RecvTimeoutError::Timeout) => Err(AuthError::Timeout(timeout)),
        Err(RecvTimeoutError::Recv(crate::pipe::RecvError::Disconnected)) => {
            Err(AuthError::Disconnected)
        }
        Err(RecvTimeoutError::Recv(_)) => Err(AuthError::NotOurProtocol),
    }
}

fn send(conn: &mut Connection, bytes: &[u8], timeout: Duration) -> Result<(), AuthError> {
    conn.send_bytes_timeout(bytes, timeout)
        .map_err(|e| match e {
            crate::pipe::SendTimeoutError::Timeout => AuthError::Timeout(timeout),
            _ => AuthError::Disconnected,
        })
}

/// Reads MAGIC and the version at the front of `frame`; the rest.
fn opening(frame: &[u8]) -> Result<&[u8], AuthError> {
    let rest = frame.strip_prefix(MAGIC).ok_or(AuthError::NotOurProtocol)?;
    let version = rest.get(..4).ok_or(AuthError::NotOurProtocol)?;
    let theirs = u32::from_le_bytes(version.try_into().map_err(|_| AuthError::NotOurProtocol)?);
    if theirs != PROTOCOL_VERSION {
        return Err(AuthError::Version { theirs });
    }
    Ok(&rest[4..])
}

/// Runs `f` with the connection's frame limit lowered to the handshake's.
fn limited<T>(conn: &mut Connection, f: impl FnOnce(&mut Connection) -> T) -> T {
    let before = conn.max_frame_size();
    conn.set_max_frame_size(MAX_HANDSHAKE);
    let out = f(conn);
    conn.set_max_frame_size(before);
    out
}

/// The accepting side: challenges the client, then proves itself.
pub fn serve(conn: &mut Connection, key: &[u8], timeout: Duration) -> Result<FrameKeys, AuthError> {
    let started = std::time::Instant::now();
    let challenge = Challenge::send(conn, key, timeout)?;
    let answer = limited(conn, |conn| recv(conn, timeout, started))?;
    challenge.check(conn, &answer, timeout)
}

/// The accepting side's handshake, split where it waits for the client, so
/// a server can hold many handshakes at once and let none stall it.
pub struct Challenge {
    key: Vec<u8>,
    ours: [u8; NONCE],
}

impl Challenge {
    /// Sends the opening (nonce and version) to a new connection.
    pub fn send(conn: &mut Connection, key: &[u8], timeout: Duration) -> Result<Self, AuthError> {
        if key.is_empty() {
            return Err(AuthError::EmptyKey);
        }
        let ours = nonce()?;
        let mut hello = MAGIC.to_vec();
        hello.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        hello.extend_from_slice(&ours);
        send(conn, &hello, timeout)?;
        Ok(Challenge {
            key: key.to_vec(),
            ours,
        })
    }

    /// The client's answer, if a whole one has arrived (frames past the
    /// handshake's size limit are refused, so a hostile length costs nothing).
    pub fn poll_answer(conn: &mut Connection) -> Result<Option<Vec<u8>>, AuthError> {
        limited(conn, |conn| match conn.recv_bytes_timeout(Duration::ZERO) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Recv(crate::pipe::RecvError::Disconnected)) => {
                Err(AuthError::Disconnected)
            }
            Err(RecvTimeoutError::Recv(_)) => Err(AuthError::NotOurProtocol),
        })
    }

    /// Checks the client's answer and, if it proves the key, proves ours.
    pub fn check(
        self,
        conn: &mut Connection,
        answer: &[u8],
        timeout: Duration,
    ) -> Result<FrameKeys, AuthError> {
        let rest = opening(answer)?;
        if rest.len() != NONCE + TAG {
            return Err(AuthError::NotOurProtocol);
        }
        let (theirs, tag) = rest.split_at(NONCE);
        if proof(&self.key, b"client", &self.ours, theirs)?
            .verify_slice(tag)
            .is_err()
        {
            let _ = send(conn, FAILURE, timeout);
            return Err(AuthError::WrongKey);
        }
        let mut welcome = WELCOME.to_vec();
        welcome.extend_from_slice(
            &proof(&self.key, b"server", theirs, &self.ours)?
                .finalize()
                .into_bytes(),
        );
        send(conn, &welcome, timeout)?;
        FrameKeys::derive(&self.key, &self.ours, theirs)
    }
}

/// The connecting side: answers the server's challenge, then checks the
/// server's own proof (a server without the key cannot pass for one).
pub fn answer(
    conn: &mut Connection,
    key: &[u8],
    timeout: Duration,
) -> Result<FrameKeys, AuthError> {
    if key.is_empty() {
        return Err(AuthError::EmptyKey);
    }
    let started = std::time::Instant::now();
    limited(conn, |conn| {
        let hello = recv(conn, timeout, started)?;
        let theirs = opening(&hello)?;
        if theirs.len() != NONCE {
            return Err(AuthError::NotOurProtocol);
        }
        let ours = nonce()?;
        let mut reply = MAGIC.to_vec();
        reply.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        reply.extend_from_slice(&ours);
        reply.extend_from_slice(
            &proof(key, b"client", theirs, &ours)?
                .finalize()
                .into_bytes(),
        );
        send(conn, &reply, timeout)?;
        let verdict = recv(conn, timeout, started)?;
        if verdict.as_slice() == FAILURE {
            return Err(AuthError::Refused);
        }
        let tag = verdict
            .strip_prefix(WELCOME)
            .ok_or(AuthError::NotOurProtocol)?;
        proof(key, b"server", &ours, theirs)?
            .verify_slice(tag)
            .map_err(|_| AuthError::WrongKey)?;
        FrameKeys::derive(key, theirs, &ours)
    })
}
