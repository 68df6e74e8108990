//! A task distributor: one scheduler puts tasks on a queue, several worker
//! processes take them and put results on another queue; the scheduler
//! collects every result.
//!
//! ```text
//! cargo run -p outlast-ipc --example task_distributor [-- spawn]
//! ```

use serde::{Deserialize, Serialize};

use outlast_ipc::queue::{GetError, Queue};
use outlast_ipc::{Process, StartMethod};

const WORKERS: usize = 3;
const TASKS: u64 = 30;

#[derive(Serialize, Deserialize)]
struct Done {
    task: u64,
    square: u64,
    worker: usize,
}

fn worker((me, tasks, results): (usize, Queue<u64>, Queue<Done>)) -> usize {
    // Workers only take tasks: their handle on the task queue puts nothing.
    tasks.close();
    let mut handled = 0;
    loop {
        match tasks.get() {
            Ok(task) => {
                if results
                    .put(&Done {
                        task,
                        square: task * task,
                        worker: me,
                    })
                    .is_err()
                {
                    return handled;
                }
                handled += 1;
            }
            // The scheduler closed the task queue and it is drained.
            Err(GetError::Disconnected) | Err(_) => return handled,
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    outlast_ipc::init();
    // fork (the default), spawn or forkserver, from the command line.
    let method: StartMethod = std::env::args()
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or_default();
    let tasks = Queue::<u64>::new(8)?;
    let results = Queue::<Done>::new(0)?;
    let mut workers = Vec::new();
    for me in 0..WORKERS {
        let mut p = Process::new(worker, (me, tasks.clone(), results.clone())).start_method(method);
        p.start()?;
        workers.push(p);
    }
    for task in 1..=TASKS {
        tasks.put(&task)?;
    }
    tasks.close();
    results.close();
    let mut sum = 0;
    let mut per_worker = [0usize; WORKERS];
    for _ in 0..TASKS {
        let done = results.get()?;
        sum += done.square;
        per_worker[done.worker.min(WORKERS - 1)] += 1;
        let _ = done.task;
    }
    let handled: usize = workers.iter_mut().map(|p| p.join().unwrap_or(0)).sum();
    println!("{TASKS} tasks, {handled} handled by {WORKERS} workers, sum of squares {sum}");
    println!("per worker: {per_worker:?}");
    Ok(())
}
