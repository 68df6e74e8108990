//! The commands that inspect and steer a running supervisor through its
//! control socket: `list`, `status`, `scale`, `kill`, `reload`, `stop`,
//! each printing words, or JSON with `--json`. With one supervisor of this
//! user running, its pid may be left out.

use std::fmt::Write as _;

use outlast::control::client::{self, ClientError};
use outlast::control::{Command, Reply, Status, WorkerRef};

/// What every steering command takes.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// Print the reply as JSON.
    #[arg(long)]
    pub json: bool,
    /// The run's control socket, when it was started with `--control PATH`.
    #[arg(long, value_name = "PATH")]
    pub control: Option<std::path::PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum SteerCommand {
    /// This user's running supervisors: pid, job, workers, progress.
    List {
        #[arg(long)]
        json: bool,
    },
    /// A running supervisor's workers (state, task, memory, CPU, restarts)
    /// and totals; with `--broker URL JOB`, a broker job's supervisors
    /// (consumers), their pending tasks and idle times.
    Status {
        /// The supervisor's pid (or, with --broker, the job's id).
        #[arg(value_name = "PID|JOB")]
        target: Option<String>,
        /// The broker of a shared job: redis://HOST:PORT/DB.
        #[arg(long, value_name = "URL")]
        broker: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Keep N workers: `scale [PID] N`.
    Scale {
        #[arg(num_args = 1..=2, value_name = "[PID] N", required = true)]
        args: Vec<u64>,
        #[command(flatten)]
        common: Common,
    },
    /// Signal one worker, by slot (as in the events): `kill [PID] WORKER`.
    /// It is replaced, and its tasks run again, as any dead worker's.
    Kill {
        #[arg(num_args = 1..=2, value_name = "[PID] WORKER", required = true)]
        args: Vec<u32>,
        /// WORKER is the worker's pid, not its slot.
        #[arg(long)]
        pid: bool,
        /// The signal, by number or name (KILL, TERM, ...).
        #[arg(long, short, default_value = "KILL")]
        signal: String,
        #[command(flatten)]
        common: Common,
    },
    /// Replace every worker one by one (as SIGHUP).
    Reload {
        pid: Option<u32>,
        #[command(flatten)]
        common: Common,
    },
    /// A live view of a running supervisor: its workers, totals, tasks/s;
    /// keys to kill a worker and to scale.
    Top {
        pid: Option<u32>,
        /// The run's control socket, when it was started with `--control PATH`.
        #[arg(long, value_name = "PATH")]
        control: Option<std::path::PathBuf>,
    },
    /// Drain: finish the tasks in flight, then stop (as SIGTERM); `--now`: stop at once.
    Stop {
        pid: Option<u32>,
        #[arg(long)]
        now: bool,
        #[command(flatten)]
        common: Common,
    },
}

/// Runs a steering command; the exit code (0, or 1 with the reason on stderr).
pub fn run(command: SteerCommand) -> u8 {
    if let SteerCommand::Top { pid, control } = command {
        return crate::top::run(pid, control);
    }
    match steer(command) {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(why) => {
            eprintln!("supervisor: {why}");
            1
        }
    }
}

fn steer(command: SteerCommand) -> Result<String, String> {
    let e = |e: ClientError| e.to_string();
    let (pid, command, common) = match command {
        SteerCommand::List { json } => return list(json),
        // Handled by `run`: it owns the terminal and its own messages.
        SteerCommand::Top { .. } => return Ok(String::new()),
        SteerCommand::Status {
            target,
            broker: Some(url),
            common,
        } => {
            let job = target.ok_or("status --broker URL needs the job's id")?;
            return broker_status(&url, &job, common.json);
        }
        SteerCommand::Status { target, common, .. } => {
            let pid = match target {
                None => None,
                Some(t) => Some(
                    t.parse::<u32>()
                        .map_err(|_| format!("`{t}` is not a pid (a job id needs --broker URL)"))?,
                ),
            };
            (pid, Command::Status, common)
        }
        SteerCommand::Scale { args, common } => {
            let (pid, n) = split(&args)?;
            (pid.map(|p| p as u32), Command::Scale { workers: n }, common)
        }
        SteerCommand::Kill {
            args,
            pid: by_pid,
            signal,
            common,
        } => {
            let (pid, worker) = split(&args)?;
            let signal = signal_number(&signal)?;
            let worker = if by_pid {
                WorkerRef::Pid(worker)
            } else {
                WorkerRef::Slot(worker as usize)
            };
            (pid, Command::Kill { worker, signal }, common)
        }
        SteerCommand::Reload { pid, common } => (pid, Command::Reload, common),
        SteerCommand::Stop { pid, now, common } => (pid, Command::Stop { now }, common),
    };
    let path = match common.control {
        Some(path) => path,
        None => client::socket_of(pid).map_err(e)?,
    };
    let reply = client::send(&path, command).map_err(e)?;
    if common.json {
        return serde_json::to_string_pretty(&reply)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string());
    }
    words(&reply)
}

/// `[PID] N` as given: the pid if there are two.
/// A broker job's consumers and progress.
fn broker_status(url: &str, job: &str, json: bool) -> Result<String, String> {
    let (consumers, settled, total) =
        outlast::broker::status(url, job).map_err(|e| e.to_string())?;
    if json {
        let value = serde_json::json!({
            "job_id": job,
            "settled": settled,
            "total": total,
            "consumers": consumers,
        });
        return Ok(format!("{value}\n"));
    }
    let mut out = format!("job {job}: {settled} of {total} tasks settled\n");
    out.push_str(&format!(
        "{:<32} {:>8} {:>10}\n",
        "consumer", "pending", "idle"
    ));
    for c in consumers {
        out.push_str(&format!(
            "{:<32} {:>8} {:>8.1} s\n",
            c.name,
            c.pending,
            c.idle_ms as f64 / 1000.0
        ));
    }
    Ok(out)
}

fn split<T: Copy>(args: &[T]) -> Result<(Option<T>, T), String> {
    match args {
        [n] => Ok((None, *n)),
        [pid, n] => Ok((Some(*pid), *n)),
        _ => Err("expected [PID] N".into()),
    }
}

fn signal_number(name: &str) -> Result<i32, String> {
    if let Ok(n) = name.parse::<i32>() {
        return Ok(n);
    }
    let bare = name.trim_start_matches("SIG").to_ascii_uppercase();
    Ok(match bare.as_str() {
        "KILL" => libc::SIGKILL,
        "TERM" => libc::SIGTERM,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "HUP" => libc::SIGHUP,
        "STOP" => libc::SIGSTOP,
        "CONT" => libc::SIGCONT,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "SEGV" => libc::SIGSEGV,
        "ABRT" => libc::SIGABRT,
        _ => return Err(format!("unknown signal `{name}`")),
    })
}

fn words(reply: &Reply) -> Result<String, String> {
    if !reply.ok {
        return Err(reply.error.clone().unwrap_or_else(|| "refused".into()));
    }
    if let Some(status) = &reply.status {
        return Ok(status_text(status));
    }
    Ok(format!(
        "{}\n",
        reply.done.clone().unwrap_or_else(|| "done".into())
    ))
}

fn list(json: bool) -> Result<String, String> {
    let mut rows = Vec::new();
    for (pid, path) in client::running().map_err(|e| e.to_string())? {
        if let Ok(Reply {
            status: Some(status),
            ..
        }) = client::send(&path, Command::Status)
        {
            rows.push((pid, status));
        }
    }
    if json {
        let list: Vec<&Status> = rows.iter().map(|(_, s)| s).collect();
        return serde_json::to_string_pretty(&list)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string());
    }
    if rows.is_empty() {
        return Ok("no supervisor of this user is running\n".into());
    }
    let mut out = format!(
        "{:>8}  {:>7}  {:>17}  job\n",
        "pid", "workers", "tasks done"
    );
    for (pid, s) in rows {
        let live = s.workers.iter().filter(|w| w.pid.is_some()).count();
        let _ = writeln!(
            out,
            "{pid:>8}  {live:>7}  {:>17}  {}",
            format!("{}/{}", s.tasks.done, s.tasks.total),
            s.job
        );
    }
    Ok(out)
}

fn status_text(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "supervisor {}: {}; {} for {:.1} s; {} workers wanted",
        s.pid, s.job, s.phase, s.elapsed_s, s.workers_target
    );
    let _ = writeln!(
        out,
        "tasks {}/{} done, {} re-queued, {} dead ({:.1}/s); IPC {} messages ({:.0}/s, {:.1} MB/s)",
        s.tasks.done,
        s.tasks.total,
        s.tasks.requeued,
        s.tasks.dead,
        s.tasks.per_s,
        s.ipc.messages,
        s.ipc.messages_per_s,
        s.ipc.mb_per_s
    );
    let _ = writeln!(
        out,
        "{:>4}  {:>8}  {:<10}  {:>8}  {:>9}  {:>8}  {:>9}  {:>5}  {:>8}  last exit",
        "slot", "pid", "state", "task", "for", "done", "rss", "cpu", "restarts"
    );
    for w in &s.workers {
        let dash = || "-".to_string();
        let _ = writeln!(
            out,
            "{:>4}  {:>8}  {:<10}  {:>8}  {:>9}  {:>8}  {:>9}  {:>5}  {:>8}  {}",
            w.slot,
            w.pid.map_or_else(dash, |p| p.to_string()),
            w.state,
            w.task.map_or_else(dash, |t| t.to_string()),
            w.task_ms.map_or_else(dash, |ms| format!("{ms} ms")),
            w.tasks_done,
            w.rss_kb
                .map_or_else(dash, |kb| format!("{:.1} MB", kb as f64 / 1024.0)),
            w.cpu_percent.map_or_else(dash, |c| format!("{c:.0}%")),
            w.restarts,
            w.last_exit.clone().unwrap_or_default()
        );
    }
    out
}
