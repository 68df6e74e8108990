//! Creating a job at the broker, idempotently: the first supervisor to
//! arrive (or `supervisor submit`) stores the job's spec with `SET NX`; any
//! supervisor adds the tasks still missing from the stream, each with the
//! explicit id `0-(task+1)`, so a task is never added twice however many
//! load at once or start over; the consumer group is made once.

use std::time::Duration;

use outlast_worker::work::JobSpec;
use serde::{Deserialize, Serialize};

use super::keys::{self, Keys, GROUP};
use super::link::{CallError, Link};
use super::BrokerError;

/// Tasks added per round trip.
const LOAD_BATCH: u64 = 2000;
/// How long creating a job waits for a broker that is briefly away.
const PATIENCE: Duration = Duration::from_secs(10);

/// A job as the broker keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JobRecord {
    pub name: String,
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
    pub total: u64,
}

impl JobRecord {
    pub(crate) fn new(spec: &JobSpec, total: u64) -> Self {
        JobRecord {
            name: spec.name.clone(),
            bytes: spec.bytes.clone(),
            total,
        }
    }
}

fn call_err(e: CallError) -> BrokerError {
    BrokerError::Broker(e.to_string())
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The job's record, if the broker has one.
pub(crate) fn record(link: &mut Link, keys: &Keys) -> Result<Option<JobRecord>, BrokerError> {
    let stored: Option<Vec<u8>> = link
        .call_patiently(PATIENCE, |c| redis::cmd("GET").arg(&keys.spec).query(c))
        .map_err(call_err)?;
    match stored {
        None => Ok(None),
        Some(bytes) => postcard::from_bytes(&bytes)
            .map(Some)
            .map_err(|e| BrokerError::Broker(format!("the job's record is garbage: {e}"))),
    }
}

/// Makes sure job `keys` exists as `wanted`, with every task in its stream
/// and its consumer group. Returns whether this call created it.
pub(crate) fn ensure(
    link: &mut Link,
    keys: &Keys,
    job_id: &str,
    wanted: &JobRecord,
) -> Result<bool, BrokerError> {
    let encoded = postcard::to_allocvec(wanted).map_err(|e| BrokerError::Broker(e.to_string()))?;
    let created: bool = link
        .call_patiently(PATIENCE, |c| {
            redis::cmd("SET")
                .arg(&keys.spec)
                .arg(&encoded)
                .arg("NX")
                .query::<Option<String>>(c)
                .map(|ok| ok.is_some())
        })
        .map_err(call_err)?;
    if !created {
        match record(link, keys)? {
            Some(stored) if stored == *wanted => {}
            Some(stored) => {
                return Err(BrokerError::DifferentJob {
                    job_id: job_id.to_string(),
                    stored: stored.name,
                    total: stored.total,
                })
            }
            None => {
                return Err(BrokerError::Broker(
                    "the job vanished while joining it".into(),
                ))
            }
        }
    }
    let started = now_ms();
    link.call_patiently(PATIENCE, |c| {
        redis::cmd("SET")
            .arg(&keys.started)
            .arg(started)
            .arg("NX")
            .query::<Option<String>>(c)
    })
    .map_err(call_err)?;
    let group = link.call_patiently(PATIENCE, |c| {
        redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&keys.tasks)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query::<()>(c)
    });
    match group {
        Ok(()) => {}
        Err(CallError::Command(e)) if e.contains("BUSYGROUP") => {}
        Err(e) => return Err(call_err(e)),
    }
    load(link, keys, wanted.total)?;
    Ok(created)
}

/// Adds the tasks not in the stream yet, then marks the job loaded.
fn load(link: &mut Link, keys: &Keys, total: u64) -> Result<(), BrokerError> {
    let loaded: Option<u64> = link
        .call_patiently(PATIENCE, |c| redis::cmd("GET").arg(&keys.loaded).query(c))
        .map_err(call_err)?;
    if loaded == Some(total) {
        return Ok(());
    }
    // Bounded: each round either adds tasks or finds that someone did.
    let mut rounds = 0u64;
    loop {
        let next = present(link, keys)?;
        if next >= total {
            break;
        }
        rounds += 1;
        if rounds > 4 * total / LOAD_BATCH + 100 {
            return Err(BrokerError::Broker("cannot load the task stream".into()));
        }
        let end = (next + LOAD_BATCH).min(total);
        let added = link.call_patiently(PATIENCE, |c| {
            let mut pipe = redis::pipe();
            for t in next..end {
                pipe.cmd("XADD")
                    .arg(&keys.tasks)
                    .arg(keys::entry_id(t))
                    .arg("t")
                    .arg(t)
                    .ignore();
            }
            pipe.query::<()>(c)
        });
        match added {
            Ok(()) => {}
            // Another supervisor added some of these first: look again.
            Err(CallError::Command(e)) if e.contains("equal or smaller") => {}
            Err(e) => return Err(call_err(e)),
        }
    }
    link.call_patiently(PATIENCE, |c| {
        redis::cmd("SET")
            .arg(&keys.loaded)
            .arg(total)
            .query::<()>(c)
    })
    .map_err(call_err)
}

/// How many tasks the stream holds: the tasks `0..n` are there.
fn present(link: &mut Link, keys: &Keys) -> Result<u64, BrokerError> {
    let last: Vec<(String, Vec<String>)> = link
        .call_patiently(PATIENCE, |c| {
            redis::cmd("XREVRANGE")
                .arg(&keys.tasks)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query(c)
        })
        .map_err(call_err)?;
    Ok(last
        .first()
        .and_then(|(id, _)| keys::task_of(id))
        .map_or(0, |t| t + 1))
}

/// The settled tasks, counted exactly: (tasks `0..total` with a result,
/// tasks `0..total` given up on without one). Fields that are no task of
/// this job (anyone with access to Redis can write there) are not counted,
/// so they cannot end a job early. Reads every field of both hashes: only
/// worth it once [`settled`]'s quick counts say the job may be complete.
pub(crate) fn settled_exactly(
    c: &mut redis::Connection,
    keys: &Keys,
    total: u64,
) -> redis::RedisResult<(u64, u64)> {
    let (results, dead): (Vec<String>, Vec<String>) = redis::pipe()
        .cmd("HKEYS")
        .arg(&keys.results)
        .cmd("HKEYS")
        .arg(&keys.dead_set)
        .query(c)?;
    let ids = |fields: &[String]| -> std::collections::HashSet<u64> {
        fields
            .iter()
            .filter_map(|f| f.parse::<u64>().ok())
            .filter(|&t| t < total)
            .collect()
    };
    let done = ids(&results);
    let dead = ids(&dead).difference(&done).count() as u64;
    Ok((done.len() as u64, dead))
}

/// (tasks with a result, dead letters without one), from the hashes'
/// lengths: an upper bound (fields that are no task count too), exact
/// unless someone else wrote there. See [`settled_exactly`].
pub(crate) fn settled(c: &mut redis::Connection, keys: &Keys) -> redis::RedisResult<(u64, u64)> {
    redis::pipe()
        .cmd("HLEN")
        .arg(&keys.results)
        .cmd("HLEN")
        .arg(&keys.dead_set)
        .query(c)
}

/// Records when the job was first seen complete (whoever sees it first).
pub(crate) fn mark_finished(c: &mut redis::Connection, keys: &Keys) -> redis::RedisResult<()> {
    redis::cmd("SET")
        .arg(&keys.finished)
        .arg(now_ms())
        .arg("NX")
        .query::<Option<String>>(c)
        .map(drop)
}
