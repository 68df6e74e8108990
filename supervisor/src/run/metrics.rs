//! The run's numbers in Prometheus's text format, built afresh for each
//! scrape from what the loop knows (counters are the run's totals so far).

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::Engine;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Cause {
    cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct State {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Direction {
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerSlot {
    slot: String,
}

fn labelled<
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (L, u64)>,
) {
    let family = Family::<L, Counter>::default();
    for (label, n) in values {
        family.get_or_create(&label).inc_by(n);
    }
    registry.register(name, help, family);
}

/// A counter with no labels, at `value`.
fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

impl Engine {
    /// The metrics text a scrape gets.
    pub(super) fn metrics_text(&self) -> String {
        let status = self.status();
        let mut registry = Registry::default();
        let outcome = |o: &str| Outcome { outcome: o.into() };
        labelled(
            &mut registry,
            "supervisor_tasks",
            "Tasks finished, by outcome",
            [
                (outcome("done"), status.tasks.done),
                (outcome("dead"), status.tasks.dead),
            ],
        );
        counter(
            &mut registry,
            "supervisor_task_requeues",
            "Tasks put back in the queue because their worker died",
            status.tasks.requeued,
        );
        counter(
            &mut registry,
            "supervisor_dead_letters",
            "Tasks given up after --max-attempts",
            status.tasks.dead,
        );
        let remaining = Gauge::<i64>::default();
        let left = status
            .tasks
            .total
            .saturating_sub(status.tasks.done + status.tasks.dead);
        remaining.set(i64::try_from(left).unwrap_or(i64::MAX));
        registry.register(
            "supervisor_tasks_remaining",
            "Tasks not finished yet",
            remaining,
        );
        let r = &self.restarts;
        let cause = |c: &str| Cause { cause: c.into() };
        labelled(
            &mut registry,
            "supervisor_restarts",
            "Workers replaced, by cause (program: a --worker-cmd program that died or was killed inside its worker)",
            [
                (cause("crash"), r.crashes),
                (cause("killed"), r.killed),
                (cause("recycled"), r.recycled),
                (cause("memory"), r.memory),
                (cause("reloaded"), r.reloaded),
                (cause("program"), r.programs),
            ],
        );
        let workers = Family::<State, Gauge>::default();
        for state in ["starting", "idle", "busy", "stopping", "restarting"] {
            // Every state is shown, at 0 when no worker is in it.
            let _ = workers.get_or_create(&State {
                state: state.into(),
            });
        }
        for w in &status.workers {
            if w.state != "closed" {
                workers
                    .get_or_create(&State {
                        state: w.state.clone(),
                    })
                    .inc();
            }
        }
        registry.register("supervisor_workers", "Worker slots, by state", workers);
        let t = &self.traffic;
        let direction = |d: &str| Direction {
            direction: d.into(),
        };
        labelled(
            &mut registry,
            "supervisor_ipc_messages",
            "Messages between the supervisor and its workers",
            [
                (direction("sent"), t.sent),
                (direction("received"), t.received),
            ],
        );
        labelled(
            &mut registry,
            "supervisor_ipc_bytes",
            "Bytes between the supervisor and its workers",
            [
                (direction("sent"), t.bytes_sent),
                (direction("received"), t.bytes_received),
            ],
        );
        let latency = Histogram::new(exponential_buckets(0.000_25, 2.0, 14));
        for ms in &self.replacement_ms {
            latency.observe(ms / 1e3);
        }
        registry.register(
            "supervisor_replacement_seconds",
            "From a crashed worker's exit to its replacement's ready",
            latency,
        );
        let rss = Family::<WorkerSlot, Gauge>::default();
        for w in &status.workers {
            if let Some(kb) = w.rss_kb {
                rss.get_or_create(&WorkerSlot {
                    slot: w.slot.to_string(),
                })
                .set(i64::try_from(kb.saturating_mul(1024)).unwrap_or(i64::MAX));
            }
        }
        registry.register(
            "supervisor_worker_resident_bytes",
            "Each worker's resident memory",
            rss,
        );
        let mut out = String::new();
        let _ = encode(&mut out, &registry);
        out
    }
}
