//! The cluster's view of a job: `supervisor result JOB` waits until every
//! task has a result or is a dead letter, rebuilds the job from its spec,
//! combines the stored results in task order, and says who did what;
//! `supervisor status --broker URL JOB` lists the consumers and their
//! pending entries.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use outlast_worker::work::{GaveUp, Work};

use super::job::{self, JobRecord};
use super::keys::{Keys, GROUP};
use super::link::Link;
use super::BrokerError;

/// Results read per round trip.
const SCAN_BATCH: usize = 1000;
/// Ignored entries and conflicts named one by one (the rest are counted).
const MAX_SAID: usize = 10;

/// One dead letter of the job.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ClusterDeadLetter {
    pub task: u64,
    pub failures: u32,
    pub cause: String,
    pub host: String,
}

/// What one consumer (a supervisor) did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HostCounts {
    pub stored: u64,
    pub duplicates: u64,
    pub claimed: u64,
    pub dead: u64,
}

/// The whole job's answer and account.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ClusterReport {
    pub job_id: String,
    pub job: String,
    pub description: String,
    pub result: String,
    pub summary: String,
    pub verified: Option<bool>,
    pub complete: bool,
    pub tasks: u64,
    pub results: u64,
    /// Entries taken over from supervisors that stopped.
    pub redeliveries: u64,
    /// Results computed twice (a host presumed dead that was not).
    pub duplicates: u64,
    pub dead_letters: Vec<ClusterDeadLetter>,
    /// Entries of the results hash that are no result of this job (a field
    /// that is not one of its task ids, an output that does not decode):
    /// ignored, each said in a line (the first few).
    pub ignored: Vec<String>,
    /// How many were ignored in all.
    pub ignored_count: u64,
    /// Tasks for which two supervisors stored different results: the first
    /// was kept, so the answer may be wrong (someone wrote to the hash, or
    /// the task is not deterministic).
    pub conflicts: Vec<u64>,
    /// Per consumer (`host:pid`).
    pub hosts: BTreeMap<String, HostCounts>,
    /// From the job's creation until it was first seen complete.
    pub wall_seconds: Option<f64>,
}

impl std::fmt::Display for ClusterReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.summary)?;
        writeln!(f, "job {}: {}", self.job_id, self.description)?;
        writeln!(
            f,
            "tasks: {} of {} with a result, {} dead letters, {} re-delivered, {} computed twice",
            self.results,
            self.tasks,
            self.dead_letters.len(),
            self.redeliveries,
            self.duplicates
        )?;
        if let Some(wall) = self.wall_seconds {
            writeln!(f, "wall time: {wall:.2} s")?;
        }
        for (host, c) in &self.hosts {
            writeln!(
                f,
                "  {host}: {} stored, {} duplicates, {} claimed, {} dead letters",
                c.stored, c.duplicates, c.claimed, c.dead
            )?;
        }
        for d in &self.dead_letters {
            writeln!(
                f,
                "  dead letter: task {} after {} failures ({}), on {}",
                d.task, d.failures, d.cause, d.host
            )?;
        }
        if self.ignored_count > 0 {
            writeln!(
                f,
                "ignored {} entries of the results hash that are no result of this job:",
                self.ignored_count
            )?;
            for line in &self.ignored {
                writeln!(f, "  {line}")?;
            }
        }
        if !self.conflicts.is_empty() {
            let shown: Vec<String> = self
                .conflicts
                .iter()
                .take(MAX_SAID)
                .map(u64::to_string)
                .collect();
            writeln!(
                f,
                "conflicting results (two different outputs stored; the first was kept) for task(s) {}",
                shown.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Rebuilds a job's work from its spec: (name, bytes) -> work.
pub type FromSpec<'a> = &'a dyn Fn(&str, &[u8]) -> Result<Box<dyn Work>, String>;

/// Waits (up to `timeout`) until job `job_id` is complete, then combines
/// its results.
pub fn result(
    url: &str,
    job_id: &str,
    timeout: Duration,
    from_spec: FromSpec<'_>,
) -> Result<ClusterReport, BrokerError> {
    let mut link = Link::open(url)?;
    let keys = Keys::of(job_id);
    let record = job::record(&mut link, &keys)?.ok_or_else(|| BrokerError::NoJob(job_id.into()))?;
    let deadline = Instant::now() + timeout;
    loop {
        let (done, dead) = counts(&mut link, &keys, record.total)?;
        if done + dead >= record.total {
            link.call_patiently(Duration::from_secs(10), |c| job::mark_finished(c, &keys))?;
            break;
        }
        if Instant::now() >= deadline {
            return Err(BrokerError::Timeout {
                job_id: job_id.into(),
                done: done + dead,
                total: record.total,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    combine(&mut link, &keys, job_id, &record, from_spec)
}

/// The settled tasks (see `job::settled_exactly`): exact once the quick
/// counts say the job may be complete.
fn counts(link: &mut Link, keys: &Keys, total: u64) -> Result<(u64, u64), BrokerError> {
    let patience = Duration::from_secs(10);
    let (done, dead) = link.call_patiently(patience, |c| job::settled(c, keys))?;
    if done + dead < total {
        return Ok((done, dead));
    }
    Ok(link.call_patiently(patience, |c| job::settled_exactly(c, keys, total))?)
}

fn combine(
    link: &mut Link,
    keys: &Keys,
    job_id: &str,
    record: &JobRecord,
    from_spec: FromSpec<'_>,
) -> Result<ClusterReport, BrokerError> {
    let patience = Duration::from_secs(10);
    let mut work = from_spec(&record.name, &record.bytes)
        .map_err(|why| BrokerError::UnknownJob(format!("{} ({why})", record.name)))?;
    let mut outputs: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut ignored: Vec<String> = Vec::new();
    let mut cursor = "0".to_string();
    loop {
        let (next, flat): (String, Vec<Vec<u8>>) = link.call_patiently(patience, |c| {
            redis::cmd("HSCAN")
                .arg(&keys.results)
                .arg(&cursor)
                .arg("COUNT")
                .arg(SCAN_BATCH)
                .query(c)
        })?;
        for pair in flat.chunks(2) {
            if let [field, output] = pair {
                match std::str::from_utf8(field)
                    .ok()
                    .and_then(|t| t.parse::<u64>().ok())
                {
                    Some(task) if task < record.total => outputs.push((task, output.clone())),
                    Some(task) => ignored.push(format!(
                        "task {task}: the job has tasks 0 to {}",
                        record.total.saturating_sub(1)
                    )),
                    None => ignored.push(format!(
                        "field {:?}: not a task id",
                        String::from_utf8_lossy(field)
                    )),
                }
            }
        }
        cursor = next;
        if cursor == "0" {
            break;
        }
    }
    outputs.sort_unstable_by_key(|(task, _)| *task);
    outputs.dedup_by_key(|(task, _)| *task);
    let mut bad = 0u64;
    // As a resumed run reads its journal: checked and counted, without
    // the side effects of a live run (an --exec job's printing).
    for (task, output) in &outputs {
        if let Err(e) = work.resume(*task, output) {
            bad += 1;
            ignored.push(format!("task {task}: its result is refused ({e})"));
        }
    }
    let dead_rows: Vec<(String, Vec<String>)> = link.call_patiently(patience, |c| {
        redis::cmd("XRANGE")
            .arg(&keys.dead)
            .arg("-")
            .arg("+")
            .query(c)
    })?;
    let dead_set: Vec<String> = link.call_patiently(patience, |c| {
        redis::cmd("HKEYS").arg(&keys.dead_set).query(c)
    })?;
    let mut dead_letters = Vec::new();
    for (_, fields) in dead_rows {
        let field = |name: &str| {
            fields
                .chunks(2)
                .find(|p| p.first().map(String::as_str) == Some(name))
                .and_then(|p| p.get(1).cloned())
                .unwrap_or_default()
        };
        let Ok(task) = field("task").parse::<u64>() else {
            continue;
        };
        // Only tasks still without a result.
        if !dead_set.contains(&task.to_string()) {
            continue;
        }
        let letter = ClusterDeadLetter {
            task,
            failures: field("failures").parse().unwrap_or(0),
            cause: field("cause"),
            host: field("host"),
        };
        work.gave_up(
            task,
            &GaveUp {
                failures: letter.failures,
                last_cause: letter.cause.clone(),
                exit_code: None,
                oversize: None,
            },
        );
        dead_letters.push(letter);
    }
    // Read as text: a counter someone set to "NaN" is skipped, not fatal.
    let stats: BTreeMap<String, String> = link.call_patiently(patience, |c| {
        redis::cmd("HGETALL").arg(&keys.stats).query(c)
    })?;
    let mut hosts: BTreeMap<String, HostCounts> = BTreeMap::new();
    for (field, n) in stats {
        let (Some((host, what)), Ok(n)) = (field.rsplit_once(':'), n.parse::<u64>()) else {
            continue;
        };
        let counts = hosts.entry(host.to_string()).or_default();
        match what {
            "stored" => counts.stored = n,
            "duplicates" => counts.duplicates = n,
            "claimed" => counts.claimed = n,
            "dead" => counts.dead = n,
            _ => {}
        }
    }
    let times: (Option<u64>, Option<u64>) = link.call_patiently(patience, |c| {
        redis::pipe()
            .cmd("GET")
            .arg(&keys.started)
            .cmd("GET")
            .arg(&keys.finished)
            .query(c)
    })?;
    let wall_seconds = match times {
        (Some(start), Some(end)) if end >= start => Some((end - start) as f64 / 1000.0),
        _ => None,
    };
    let conflicts: Vec<String> = link.call_patiently(patience, |c| {
        redis::cmd("HKEYS").arg(&keys.conflicts).query(c)
    })?;
    let mut conflicts: Vec<u64> = conflicts
        .iter()
        .filter_map(|t| t.parse().ok())
        .filter(|&t| t < record.total)
        .collect();
    conflicts.sort_unstable();
    let results = outputs.len() as u64 - bad;
    let complete = dead_letters.is_empty() && results == record.total;
    let ignored_count = ignored.len() as u64;
    ignored.truncate(MAX_SAID);
    let outcome = work.outcome(complete);
    Ok(ClusterReport {
        job_id: job_id.to_string(),
        job: record.name.clone(),
        description: work.describe(),
        result: outcome.value,
        summary: outcome.summary,
        verified: outcome.verified,
        complete,
        tasks: record.total,
        results,
        redeliveries: hosts.values().map(|h| h.claimed).sum(),
        duplicates: hosts.values().map(|h| h.duplicates).sum(),
        dead_letters,
        ignored,
        ignored_count,
        conflicts,
        hosts,
        wall_seconds,
    })
}

/// One consumer of the job's group, as the broker sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ConsumerStatus {
    pub name: String,
    /// Entries delivered to it and not acked.
    pub pending: u64,
    /// Since its last read or claim.
    pub idle_ms: u64,
}

/// The job's consumers and its progress: (consumers, settled, total).
pub fn status(url: &str, job_id: &str) -> Result<(Vec<ConsumerStatus>, u64, u64), BrokerError> {
    let mut link = Link::open(url)?;
    let keys = Keys::of(job_id);
    let record = job::record(&mut link, &keys)?.ok_or_else(|| BrokerError::NoJob(job_id.into()))?;
    let (done, dead) = counts(&mut link, &keys, record.total)?;
    let rows: Vec<BTreeMap<String, redis::Value>> =
        link.call_patiently(Duration::from_secs(10), |c| {
            redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(&keys.tasks)
                .arg(GROUP)
                .query(c)
        })?;
    let number = |row: &BTreeMap<String, redis::Value>, key: &str| -> u64 {
        row.get(key)
            .and_then(|v| redis::from_redis_value_ref::<u64>(v).ok())
            .unwrap_or(0)
    };
    let consumers = rows
        .iter()
        .map(|row| ConsumerStatus {
            name: row
                .get("name")
                .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
                .unwrap_or_default(),
            pending: number(row, "pending"),
            idle_ms: number(row, "idle"),
        })
        .collect();
    Ok((consumers, done + dead, record.total))
}
