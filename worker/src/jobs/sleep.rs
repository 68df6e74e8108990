//! `sleep`: tasks that only wait, an IO-bound stand-in (and, with
//! `--task-ms 0`, the no-op task of `supervisor bench dispatch`).

use super::{sleep_beating, tasks_done};
use crate::job::{Job, JobOutcome, JobSpec, TaskContext};
use crate::numbers::group_thousands;

pub struct Sleep {
    tasks: u64,
    task_ms: u64,
    done: u64,
}

impl Sleep {
    pub fn new(spec: &JobSpec) -> Result<Self, String> {
        Ok(Sleep {
            tasks: spec.tasks,
            task_ms: spec.task_ms,
            done: 0,
        })
    }
}

impl Job for Sleep {
    fn describe(&self) -> String {
        format!(
            "{} tasks that each wait {} ms",
            group_thousands(self.tasks),
            self.task_ms
        )
    }

    fn task_count(&self) -> u64 {
        self.tasks
    }

    fn task_input(&self, _id: u64) -> Vec<u8> {
        Vec::new()
    }

    fn run(&self, _input: &[u8], ctx: &mut TaskContext<'_>) -> Result<Vec<u8>, String> {
        if self.task_ms > 0 {
            sleep_beating(self.task_ms, ctx);
        }
        Ok(Vec::new())
    }

    fn combine(&mut self, _id: u64, output: &[u8]) -> Result<(), String> {
        if !output.is_empty() {
            return Err("a sleep task returns nothing".into());
        }
        self.done += 1;
        Ok(())
    }

    fn outcome(&self, complete: bool) -> JobOutcome {
        tasks_done(
            self.done,
            self.tasks,
            complete.then_some(self.done == self.tasks),
        )
    }
}
