//! One supervisor's part of a broker job: the local engine runs the tasks
//! this supervisor reads from the stream (`XREADGROUP`, a bounded window),
//! while between the engine's turns the loop stores results once per task
//! and acks them (one Lua script: `HSETNX` then `XACK`), keeps its entries'
//! leases alive (`XCLAIM ... JUSTID`), takes over entries idle past the
//! lease from consumers that stopped (`XAUTOCLAIM`), and watches for the
//! whole job to be complete. At-least-once delivery with results stored
//! once per task id: each task is counted once, whoever ran it.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use outlast_worker::work::AnyJob;

use super::job::{self, JobRecord};
use super::keys::{self, Keys, GROUP};
use super::link::{CallError, Link};
use super::work::{BrokerWork, Entry, Outgoing, Shared};
use super::{BrokerError, BrokerOptions, BrokerReport};
use crate::options::RunOptions;
use crate::report::RunReport;
use crate::run::Engine;

/// The longest one turn of the engine waits before the broker's turn.
const TURN: Duration = Duration::from_millis(5);
/// Results and dead letters stored per round trip.
const FLUSH_BATCH: usize = 1000;
/// How often the job's completion is checked.
const COMPLETION_EVERY: Duration = Duration::from_millis(200);
/// How long the last results may wait for a broker that is away.
const FINAL_FLUSH: Duration = Duration::from_secs(30);
/// The most entries held at once.
const MAX_WINDOW: usize = 8192;

/// Stores a batch of results, each once per task, and acks their entries.
/// A result already stored with other bytes is a conflict, noted for
/// `supervisor result` (someone wrote there, or the task is not
/// deterministic). KEYS: results, tasks, dead set, stats, conflicts. ARGV:
/// group, consumer, then (entry id, task, output) triples. Returns 1
/// (stored) or 0 (already stored) per result.
const STORE: &str = r"
local out, ids, stored, dups = {}, {}, 0, 0
for i = 3, #ARGV, 3 do
  local s = redis.call('HSETNX', KEYS[1], ARGV[i + 1], ARGV[i + 2])
  if s == 1 then
    redis.call('HDEL', KEYS[3], ARGV[i + 1])
    stored = stored + 1
  else
    dups = dups + 1
    if redis.call('HGET', KEYS[1], ARGV[i + 1]) ~= ARGV[i + 2] then
      redis.call('HSET', KEYS[5], ARGV[i + 1], ARGV[2])
    end
  end
  out[#out + 1] = s
  ids[#ids + 1] = ARGV[i]
end
if stored > 0 then redis.call('HINCRBY', KEYS[4], ARGV[2] .. ':stored', stored) end
if dups > 0 then redis.call('HINCRBY', KEYS[4], ARGV[2] .. ':duplicates', dups) end
if #ids > 0 then redis.call('XACK', KEYS[2], ARGV[1], unpack(ids)) end
return out
";

const DEAD: &str = r"
local new = 0
if redis.call('HEXISTS', KEYS[1], ARGV[3]) == 0 then
  new = redis.call('HSETNX', KEYS[3], ARGV[3], ARGV[5])
  if new == 1 then
    redis.call('XADD', KEYS[5], '*', 'task', ARGV[3], 'failures', ARGV[4], 'cause', ARGV[5], 'host', ARGV[6])
    redis.call('HINCRBY', KEYS[4], ARGV[6] .. ':dead', 1)
  end
end
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
return new
";

/// This supervisor's dealings with the broker.
struct Broker {
    link: Link,
    keys: Keys,
    consumer: String,
    total: u64,
    max_attempts: u32,
    lease: Duration,
    workers: usize,
    shared: Rc<RefCell<Shared>>,
    report: BrokerReport,
    /// No entry left that was never delivered.
    drained: bool,
    complete: bool,
    last_claim: Instant,
    last_keepalive: Instant,
    last_completion: Instant,
    /// Entries held at most now: doubles while tasks finish fast.
    window: usize,
    /// Results settled here in all, and when and at what count entries were last read.
    settled: u64,
    fetched_at: Instant,
    settled_at_fetch: u64,
    /// The store and dead-letter scripts are loaded (EVALSHA works).
    scripts_loaded: bool,
    /// The quick counts the last exact count was made at, and its result.
    last_exact: Option<((u64, u64), (u64, u64))>,
    /// The job as this supervisor knows it: made again from this if it
    /// vanishes from the broker (a Redis restarted without its data).
    wanted: JobRecord,
    last_presence: Instant,
    /// What the run should say (drained into its events by the loop).
    notes: Vec<String>,
}

/// Runs this supervisor's part of the broker job `job` until the whole
/// job is complete (or a signal drains it).
pub fn run(
    options: RunOptions,
    job: AnyJob,
    broker: &BrokerOptions,
) -> Result<RunReport, BrokerError> {
    let AnyJob {
        work: inner,
        launch,
        spec,
    } = job;
    if options.journal.is_some() {
        return Err(BrokerError::JournalWithBroker);
    }
    let spec = spec.ok_or(BrokerError::NoSpec)?;
    let total = inner.task_count();
    let mut link = Link::open(&broker.url)?;
    let keys = Keys::of(&broker.job_id);
    let wanted = JobRecord::new(&spec, total);
    let created = job::ensure(&mut link, &keys, &broker.job_id, &wanted)?;
    let job_id = broker.job_id.clone();
    let consumer = broker.consumer.clone().unwrap_or_else(default_consumer);
    let shared = Rc::new(RefCell::new(Shared::default()));
    let work = BrokerWork {
        inner,
        shared: shared.clone(),
    };
    let workers = options.worker_count() as usize;
    let max_attempts = options.max_attempts;
    let mut engine = Engine::new(options, AnyJob::from_parts(Box::new(work), launch), true)
        .map_err(BrokerError::Run)?;
    let now = Instant::now();
    let mut state = Broker {
        link,
        keys,
        consumer: consumer.clone(),
        total,
        max_attempts,
        lease: broker.lease,
        workers,
        shared,
        report: BrokerReport {
            url: String::new(),
            job_id: broker.job_id.clone(),
            consumer,
            created,
            total,
            ..BrokerReport::default()
        },
        drained: false,
        complete: false,
        last_claim: now,
        last_keepalive: now,
        last_completion: now - COMPLETION_EVERY,
        window: (2 * workers).clamp(1, MAX_WINDOW),
        settled: 0,
        fetched_at: now,
        settled_at_fetch: 0,
        scripts_loaded: false,
        last_exact: None,
        wanted,
        last_presence: now,
        notes: Vec::new(),
    };
    state.report.url = state.link.shown().to_string();
    while !engine.turn(Some(TURN)) {
        let was_complete = state.complete;
        state.step();
        if state.last_presence.elapsed() >= state.lease {
            state.last_presence = Instant::now();
            state.ensure_present(&job_id);
        }
        for note in state.notes.drain(..) {
            engine.event(&note);
        }
        if state.complete && !was_complete {
            engine.finish();
        }
    }
    state.final_flush();
    let mut report = engine.report();
    state.report.reconnects = state.link.reconnects;
    state.report.computed = state.shared.borrow().computed;
    state.report.complete = state.complete;
    if state.complete {
        report.complete = true;
    }
    report.broker = Some(state.report);
    Ok(report)
}

/// `host:pid`: unique among live supervisors, and says where each ran.
fn default_consumer() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!("{host}:{}", std::process::id())
}

impl Broker {
    /// One turn of the broker's side, between two of the engine's.
    fn step(&mut self) {
        let now = Instant::now();
        self.flush(FLUSH_BATCH);
        if !self.complete {
            self.fetch();
            if now.duration_since(self.last_claim) >= self.lease / 2 {
                self.last_claim = now;
                self.claim();
            }
        }
        if now.duration_since(self.last_keepalive) >= self.lease / 3 {
            self.last_keepalive = now;
            self.keep_alive();
        }
        // Nothing held and nothing left to read: the end may be near, so look often.
        let idle = self.drained && self.shared.borrow().holding() == 0;
        let every = if idle {
            COMPLETION_EVERY / 20
        } else {
            COMPLETION_EVERY
        };
        if now.duration_since(self.last_completion) >= every {
            self.last_completion = now;
            self.check_completion();
        }
    }

    /// How many entries to hold: two per worker while tasks are long (the
    /// rest stay in the stream for other supervisors), doubled whenever half
    /// a window settled within a few milliseconds (short tasks need many
    /// in flight to keep workers busy between round trips).
    fn window(&mut self) -> usize {
        let settled = self.settled - self.settled_at_fetch;
        if settled as usize * 2 >= self.window
            && self.fetched_at.elapsed() < Duration::from_millis(20)
        {
            self.window = (self.window * 2).min(MAX_WINDOW);
        }
        self.window.max(2 * self.workers).clamp(1, MAX_WINDOW)
    }

    /// Reads new entries while the window has room.
    fn fetch(&mut self) {
        if self.drained {
            return;
        }
        let room = self.window().saturating_sub(self.shared.borrow().holding());
        self.fetched_at = Instant::now();
        self.settled_at_fetch = self.settled;
        if room == 0 {
            return;
        }
        let (keys, consumer) = (&self.keys, &self.consumer);
        let reply = self.link.call(|c| {
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(consumer)
                .arg("COUNT")
                .arg(room)
                .arg("STREAMS")
                .arg(&keys.tasks)
                .arg(">")
                .query::<Option<Vec<(String, Vec<(String, Vec<String>)>)>>>(c)
        });
        match reply {
            Ok(Some(streams)) => {
                let entries: Vec<(String, Vec<String>)> = streams
                    .into_iter()
                    .flat_map(|(_, entries)| entries)
                    .collect();
                if entries.is_empty() {
                    self.drained = true;
                }
                for (id, _) in entries {
                    self.take(id, 1);
                }
            }
            Ok(None) => self.drained = true,
            Err(_) => {}
        }
    }

    /// Takes entry `id` (deliveries so far): to the engine, or to the
    /// dead letters when it has failed too often elsewhere.
    fn take(&mut self, id: String, deliveries: u32) {
        let Some(task) = keys::task_of(&id) else {
            // Not a task of ours: ack it so nobody trips on it again.
            self.report.garbage += 1;
            let (keys, id2) = (&self.keys, id.clone());
            let _ = self.link.call(|c| {
                redis::cmd("XACK")
                    .arg(&keys.tasks)
                    .arg(GROUP)
                    .arg(&id2)
                    .query::<()>(c)
            });
            return;
        };
        if task >= self.total {
            self.report.garbage += 1;
            return;
        }
        let failures = deliveries.saturating_sub(1);
        let mut shared = self.shared.borrow_mut();
        if failures >= self.max_attempts {
            if shared.held.insert(id.clone()) {
                shared.outbox.push(Outgoing::Dead {
                    stream_id: id,
                    task,
                    failures,
                    cause: format!("delivered {deliveries} times: its hosts died or stopped"),
                });
            }
            return;
        }
        shared.take(Entry {
            stream_id: id,
            task,
            deliveries,
        });
    }

    /// Takes over entries idle past the lease (their consumer stopped).
    fn claim(&mut self) {
        let room = self.window().saturating_sub(self.shared.borrow().holding());
        if room == 0 {
            return;
        }
        let lease_ms = self.lease.as_millis() as u64;
        let (keys, consumer) = (&self.keys, &self.consumer);
        let claimed = self.link.call(|c| {
            redis::cmd("XAUTOCLAIM")
                .arg(&keys.tasks)
                .arg(GROUP)
                .arg(consumer)
                .arg(lease_ms)
                .arg("0-0")
                .arg("COUNT")
                .arg(room)
                .query::<(String, Vec<(String, Vec<String>)>, Vec<String>)>(c)
        });
        let Ok((_, entries, _)) = claimed else {
            return;
        };
        if entries.is_empty() {
            return;
        }
        let ids: Vec<String> = entries.into_iter().map(|(id, _)| id).collect();
        let deliveries = self.deliveries_of(&ids);
        for id in ids {
            if self.shared.borrow().held.contains(&id) {
                continue;
            }
            let n = deliveries.get(&id).copied().unwrap_or(2);
            self.report.claimed += 1;
            let (keys, who) = (&self.keys, format!("{}:claimed", self.consumer));
            let _ = self.link.call(|c| {
                redis::cmd("HINCRBY")
                    .arg(&keys.stats)
                    .arg(&who)
                    .arg(1)
                    .query::<()>(c)
            });
            self.take(id, n);
        }
    }

    /// Delivery counts of entries this consumer holds at the broker.
    fn deliveries_of(&mut self, ids: &[String]) -> std::collections::HashMap<String, u32> {
        let (Some(first), Some(last)) = (
            ids.iter().min_by_key(|i| keys::task_of(i)),
            ids.iter().max_by_key(|i| keys::task_of(i)),
        ) else {
            return Default::default();
        };
        let (keys, consumer) = (&self.keys, &self.consumer);
        let pending = self.link.call(|c| {
            redis::cmd("XPENDING")
                .arg(&keys.tasks)
                .arg(GROUP)
                .arg(first)
                .arg(last)
                .arg(MAX_WINDOW)
                .arg(consumer)
                .query::<Vec<(String, String, u64, u64)>>(c)
        });
        pending
            .map(|rows| {
                rows.into_iter()
                    .map(|(id, _, _, n)| (id, u32::try_from(n).unwrap_or(u32::MAX)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Resets the idle time of every entry held, so nobody claims them.
    fn keep_alive(&mut self) {
        let held: Vec<String> = self.shared.borrow().held.iter().cloned().collect();
        for ids in held.chunks(1000) {
            let (keys, consumer) = (&self.keys, &self.consumer);
            let _ = self.link.call(|c| {
                redis::cmd("XCLAIM")
                    .arg(&keys.tasks)
                    .arg(GROUP)
                    .arg(consumer)
                    .arg(0)
                    .arg(ids)
                    .arg("JUSTID")
                    .query::<Vec<String>>(c)
            });
        }
    }

    /// Stores and acks up to `most` results and dead letters.
    fn flush(&mut self, most: usize) -> bool {
        let batch: Vec<Outgoing> = {
            let shared = self.shared.borrow();
            shared.outbox.iter().take(most).cloned().collect()
        };
        if batch.is_empty() {
            return true;
        }
        if !self.scripts_loaded {
            let loaded = self.link.call(|c| {
                redis::pipe()
                    .cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(STORE)
                    .cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(DEAD)
                    .query::<(String, String)>(c)
            });
            if loaded.is_err() {
                return false;
            }
            self.scripts_loaded = true;
        }
        let (store, dead) = (script_sha(STORE), script_sha(DEAD));
        let (keys, consumer) = (&self.keys, &self.consumer);
        let results: Vec<&Outgoing> = batch
            .iter()
            .filter(|o| matches!(o, Outgoing::Result { .. }))
            .collect();
        let deads: Vec<&Outgoing> = batch
            .iter()
            .filter(|o| matches!(o, Outgoing::Dead { .. }))
            .collect();
        let replies = self.link.call(|c| {
            let mut pipe = redis::pipe();
            if !results.is_empty() {
                let call = pipe
                    .cmd("EVALSHA")
                    .arg(&store)
                    .arg(5)
                    .arg(&keys.results)
                    .arg(&keys.tasks)
                    .arg(&keys.dead_set)
                    .arg(&keys.stats)
                    .arg(&keys.conflicts)
                    .arg(GROUP)
                    .arg(consumer);
                for out in &results {
                    if let Outgoing::Result {
                        stream_id,
                        task,
                        output,
                    } = out
                    {
                        call.arg(stream_id).arg(task).arg(output.as_slice());
                    }
                }
            }
            for out in &deads {
                if let Outgoing::Dead {
                    stream_id,
                    task,
                    failures,
                    cause,
                } = out
                {
                    pipe.cmd("EVALSHA")
                        .arg(&dead)
                        .arg(5)
                        .arg(&keys.results)
                        .arg(&keys.tasks)
                        .arg(&keys.dead_set)
                        .arg(&keys.stats)
                        .arg(&keys.dead)
                        .arg(GROUP)
                        .arg(stream_id)
                        .arg(task)
                        .arg(failures)
                        .arg(cause)
                        .arg(consumer);
                }
            }
            pipe.query::<Vec<redis::Value>>(c)
        });
        let replies = match replies {
            Ok(replies) => replies,
            // A restarted broker has forgotten the scripts: load them again.
            Err(CallError::Command(e)) if e.contains("NOSCRIPT") => {
                self.scripts_loaded = false;
                return false;
            }
            Err(CallError::Down) => {
                self.scripts_loaded = false;
                return false;
            }
            Err(CallError::Command(_)) => return false,
        };
        let mut replies = replies.into_iter();
        if !results.is_empty() {
            let stored: Vec<i64> = replies
                .next()
                .and_then(|v| redis::from_redis_value(v).ok())
                .unwrap_or_default();
            let firsts = stored.iter().filter(|&&s| s == 1).count() as u64;
            self.report.stored += firsts;
            self.report.duplicates += results.len() as u64 - firsts.min(results.len() as u64);
        }
        for reply in replies {
            if redis::from_redis_value::<i64>(reply).is_ok_and(|n| n == 1) {
                self.report.dead_letters += 1;
            }
        }
        self.settled += batch.len() as u64;
        let mut shared = self.shared.borrow_mut();
        for out in &batch {
            if let Outgoing::Dead { stream_id, .. } = out {
                // Dead letters taken straight from a claim were held only here.
                if !shared.by_local.values().any(|e| &e.stream_id == stream_id) {
                    shared.held.remove(stream_id);
                }
            }
        }
        shared.outbox.drain(..batch.len());
        true
    }

    /// Makes the job again if the broker lost it (no spec: a Redis
    /// restarted without its data, or someone deleted it): from this
    /// supervisor's own spec, with every task in a new stream. What was
    /// settled only in the lost data is computed again (each result is
    /// still stored once); nothing waits silently for a job that is gone.
    fn ensure_present(&mut self, job_id: &str) {
        if self.complete {
            return;
        }
        let keys = &self.keys;
        let present = self
            .link
            .call(|c| redis::cmd("EXISTS").arg(&keys.spec).query::<u64>(c));
        if !matches!(present, Ok(0)) {
            return;
        }
        match job::ensure(&mut self.link, &self.keys, job_id, &self.wanted) {
            Ok(_) => {
                self.notes.push(format!(
                    "broker: job {job_id} was gone from the broker (no spec, no tasks): made it again from this supervisor's spec; {} tasks to settle",
                    self.total
                ));
                self.report.recreated += 1;
                self.drained = false;
                self.scripts_loaded = false;
                self.last_exact = None;
            }
            Err(e) => self.notes.push(format!(
                "broker: job {job_id} is gone from the broker and cannot be made again: {e}"
            )),
        }
    }

    /// Whether every task has a result or is a dead letter: the quick
    /// counts first, and an exact count (task ids only) when they say so,
    /// once per change of the quick counts.
    fn check_completion(&mut self) {
        let keys = &self.keys;
        let mut counts = self.link.call(|c| job::settled(c, keys));
        if let Ok(quick) = counts {
            if quick.0 + quick.1 >= self.total {
                if self.last_exact.is_some_and(|(seen, _)| seen == quick) {
                    counts = Ok(self.last_exact.map_or(quick, |(_, exact)| exact));
                } else {
                    let total = self.total;
                    counts = self.link.call(|c| job::settled_exactly(c, keys, total));
                    if let Ok(exact) = counts {
                        self.last_exact = Some((quick, exact));
                        let foreign = quick.0 + quick.1 - (exact.0 + exact.1);
                        self.report.foreign_fields = foreign;
                    }
                }
            }
        }
        if let Ok((done, dead)) = counts {
            self.report.cluster_done = done;
            self.report.cluster_dead = dead;
            if done + dead >= self.total && !self.complete {
                self.complete = true;
                let keys = &self.keys;
                let _ = self.link.call(|c| job::mark_finished(c, keys));
            }
        }
    }

    /// After the engine: what is left in the outbox goes to the broker,
    /// waiting for it if it is away (up to a limit).
    fn final_flush(&mut self) {
        let deadline = Instant::now() + FINAL_FLUSH;
        while !self.shared.borrow().outbox.is_empty() && Instant::now() < deadline {
            if !self.flush(FLUSH_BATCH) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.check_completion();
    }
}

/// The SHA-1 Redis knows a script by.
fn script_sha(source: &str) -> String {
    redis::Script::new(source).get_hash().to_string()
}

impl From<CallError> for BrokerError {
    fn from(e: CallError) -> Self {
        BrokerError::Broker(e.to_string())
    }
}
