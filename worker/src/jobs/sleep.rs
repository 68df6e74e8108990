//! `sleep`: tasks that only wait, an IO-bound stand-in (and, with
//! `--task-ms 0`, the no-op task of `supervisor bench dispatch`).

use serde::{Deserialize, Serialize};

use super::{sleep_beating, tasks_done, BuiltinJob};
use crate::job::{BadOutput, Job, JobOutcome, TaskContext};
use crate::numbers::plural;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sleep {
    tasks: u64,
    task_ms: u64,
    #[serde(skip)]
    done: u64,
}

impl Sleep {
    pub fn new(tasks: u64, task_ms: u64) -> Self {
        Sleep {
            tasks,
            task_ms,
            done: 0,
        }
    }
}

impl BuiltinJob for Sleep {
    const NAME: &'static str = "sleep";
    const ABOUT: &'static str = "--tasks tasks that each wait --task-ms (an IO-bound stand-in)";
}

impl Job for Sleep {
    type Input = ();
    type Output = ();
    type Error = std::convert::Infallible;

    fn name(&self) -> String {
        Self::NAME.into()
    }

    fn describe(&self) -> String {
        format!(
            "{} that each wait {} ms",
            plural(self.tasks, "task"),
            self.task_ms
        )
    }

    fn task_count(&self) -> u64 {
        self.tasks
    }

    fn input(&self, _id: u64) {}

    fn run(&self, _input: (), ctx: &mut TaskContext<'_>) -> Result<(), std::convert::Infallible> {
        if self.task_ms > 0 {
            sleep_beating(self.task_ms, ctx);
        }
        Ok(())
    }

    fn combine(&mut self, _id: u64, _output: ()) -> Result<(), BadOutput> {
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
