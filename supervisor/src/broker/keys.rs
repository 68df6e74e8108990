//! Where one job lives in Redis: every key of job `ID` starts with
//! `supervisor:ID:`, so jobs never see each other's data.

/// The consumer group every supervisor of a job reads tasks through.
pub(crate) const GROUP: &str = "workers";

/// The keys of one job.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    /// The job as data (name, postcard bytes, task count): set once.
    pub spec: String,
    /// The task stream: entry `0-(t+1)` is task `t`.
    pub tasks: String,
    /// Set to the task count once every task is in the stream.
    pub loaded: String,
    /// Task id -> its output, stored once (`HSETNX`).
    pub results: String,
    /// Task id -> why it was given up, for tasks without a result.
    pub dead_set: String,
    /// The dead letters, with their reasons, in the order they died.
    pub dead: String,
    /// Task id -> the consumer that computed a result different from the
    /// one stored first.
    pub conflicts: String,
    /// `consumer:stored`, `consumer:duplicates`, `consumer:claimed`, `consumer:dead` counters.
    pub stats: String,
    /// When the job was created, and when it was first seen complete (ms since the epoch).
    pub started: String,
    pub finished: String,
}

impl Keys {
    pub(crate) fn of(job_id: &str) -> Self {
        let key = |what: &str| format!("supervisor:{job_id}:{what}");
        Keys {
            spec: key("spec"),
            tasks: key("tasks"),
            loaded: key("loaded"),
            results: key("results"),
            dead_set: key("dead-set"),
            dead: key("dead"),
            stats: key("stats"),
            conflicts: key("conflicts"),
            started: key("started"),
            finished: key("finished"),
        }
    }
}

/// The stream entry id of task `t`.
pub(crate) fn entry_id(task: u64) -> String {
    format!("0-{}", task + 1)
}

/// The task of stream entry `id` (`None`: not one of ours).
pub(crate) fn task_of(id: &str) -> Option<u64> {
    let (ms, seq) = id.split_once('-')?;
    if ms != "0" {
        return None;
    }
    seq.parse::<u64>().ok()?.checked_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_and_tasks_round_trip_and_garbage_is_none() {
        assert_eq!(entry_id(0), "0-1");
        assert_eq!(task_of(&entry_id(41)), Some(41));
        for garbage in [
            "0-0",
            "1-5",
            "x",
            "0-",
            "0-abc",
            "",
            "0-18446744073709551616",
        ] {
            assert_eq!(task_of(garbage), None, "{garbage}");
        }
    }
}
