//! The connection to Redis, kept through restarts: a call made while the
//! broker is away fails at once as [`CallError::Down`] (the supervisor's
//! loop goes on with the tasks it holds), and the link reconnects with
//! backoff. Credentials come from the URL or `SUPERVISOR_BROKER_PASSWORD`
//! and are never printed: every message names the URL without them.

use std::time::{Duration, Instant};

use redis::IntoConnectionInfo;

/// The password, when the URL has none.
pub const PASSWORD_ENV: &str = "SUPERVISOR_BROKER_PASSWORD";
/// How long one connection attempt or one reply may take.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnection backoff: from this, doubling, up to the maximum.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Why the broker could not be used at all (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("`{0}` is not a broker URL (redis://HOST:PORT/DB): {1}")]
    BadUrl(String, String),
    #[error("the broker at {0} refused the password (from the URL or {PASSWORD_ENV})")]
    Auth(String),
    #[error("cannot reach the broker at {0}: {1}")]
    Unreachable(String, String),
    /// Something answered there, but not in Redis' protocol (an HTTP
    /// server, say).
    #[error("what answers at {0} is not a Redis server ({1})")]
    NotRedis(String, String),
}

/// A call that did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The broker is away (restarting, unreachable); try again later.
    #[error("the broker is away")]
    Down,
    /// It answered with an error.
    #[error("the broker said: {0}")]
    Command(String),
}

pub(crate) struct Link {
    client: redis::Client,
    conn: Option<redis::Connection>,
    retry_at: Instant,
    backoff: Duration,
    /// The URL without credentials, for messages.
    shown: String,
    /// Connections made after the first.
    pub reconnects: u64,
}

/// `url` without its user and password.
pub fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://{}", &url[at + 1..]),
        _ => url.to_string(),
    }
}

impl Link {
    /// Connects to `url`; a first connection must succeed.
    pub(crate) fn open(url: &str) -> Result<Self, LinkError> {
        let shown = redacted(url);
        let bad = |e: redis::RedisError| LinkError::BadUrl(shown.clone(), e.to_string());
        let mut info = url.into_connection_info().map_err(bad)?;
        if info.redis_settings().password().is_none() {
            if let Ok(password) = std::env::var(PASSWORD_ENV) {
                let settings = info.redis_settings().clone().set_password(password);
                info = info.set_redis_settings(settings);
            }
        }
        let client = redis::Client::open(info).map_err(bad)?;
        let mut link = Link {
            client,
            conn: None,
            retry_at: Instant::now(),
            backoff: FIRST_BACKOFF,
            shown,
            reconnects: 0,
        };
        let conn = link.connect().map_err(|e| link.classify(e))?;
        link.conn = Some(conn);
        Ok(link)
    }

    /// The URL without credentials.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let mut conn = self.client.get_connection_with_timeout(IO_TIMEOUT)?;
        conn.set_read_timeout(Some(IO_TIMEOUT))?;
        conn.set_write_timeout(Some(IO_TIMEOUT))?;
        // A broker still loading its AOF answers LOADING: not ready yet.
        redis::cmd("PING").query::<()>(&mut conn)?;
        Ok(conn)
    }

    fn classify(&self, e: redis::RedisError) -> LinkError {
        let text = e.to_string();
        if matches!(e.kind(), redis::ErrorKind::AuthenticationFailed)
            || text.contains("WRONGPASS")
            || text.contains("NOAUTH")
        {
            LinkError::Auth(self.shown.clone())
        } else if text.contains("Parse error") || text.contains("Unexpected") {
            let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
            LinkError::NotRedis(self.shown.clone(), one_line)
        } else {
            LinkError::Unreachable(self.shown.clone(), text)
        }
    }

    /// Whether `e` means the broker is away rather than that it refused.
    fn is_transient(e: &redis::RedisError) -> bool {
        e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || matches!(
                e.code(),
                Some("LOADING") | Some("MASTERDOWN") | Some("TRYAGAIN")
            )
    }

    /// Runs `f` on the connection, reconnecting first if it is down and
    /// its backoff is over.
    pub(crate) fn call<T>(
        &mut self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, CallError> {
        if self.conn.is_none() {
            if Instant::now() < self.retry_at {
                return Err(CallError::Down);
            }
            match self.connect() {
                Ok(conn) => {
                    self.conn = Some(conn);
                    self.backoff = FIRST_BACKOFF;
                    self.reconnects += 1;
                }
                Err(_) => {
                    self.retry_at = Instant::now() + self.backoff;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                    return Err(CallError::Down);
                }
            }
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(CallError::Down);
        };
        match f(conn) {
            Ok(value) => Ok(value),
            Err(e) if Self::is_transient(&e) => {
                self.conn = None;
                self.retry_at = Instant::now() + self.backoff;
                Err(CallError::Down)
            }
            Err(e) => Err(CallError::Command(e.to_string())),
        }
    }

    /// As [`call`](Self::call), retrying while the broker is away, up to `patience`.
    pub(crate) fn call_patiently<T>(
        &mut self,
        patience: Duration,
        mut f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, CallError> {
        let deadline = Instant::now() + patience;
        loop {
            match self.call(&mut f) {
                Err(CallError::Down) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn credentials_never_show() {
        assert_eq!(
            redacted("redis://:secret@127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(redacted("redis://user:pw@h:1/2"), "redis://h:1/2");
        assert_eq!(redacted("redis://h:1/2"), "redis://h:1/2");
    }
}
