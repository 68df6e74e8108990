//! Why the supervisor killed a worker. Kills are the supervisor's own
//! doing, so they are reported as such, never as a crash: a worker killed
//! for a fault (its heartbeat, its link) is replaced and counted apart from
//! crashes; workers killed to end the run are not restarts at all.

use std::fmt;
use std::time::Duration;

/// One reason the supervisor sent SIGKILL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KillCause {
    /// Silent past `--worker-timeout` (stopped, deadlocked, spinning).
    NoHeartbeat { silent: Duration, task: Option<u64> },
    /// Its heartbeat slot held words no honest worker writes.
    ForgedHeartbeat(String),
    /// Its link's positions or records were impossible.
    CorruptedLink(String),
    /// Its link could not be mapped in the supervisor (out of memory?).
    LinkUnavailable(String),
    /// A record that is no protocol message.
    SentGarbage(String),
    /// A well-formed message it had no business sending (another protocol
    /// version, a result for a task it does not hold).
    ProtocolViolation(String),
    /// Ending the run: a second SIGINT.
    SecondInterrupt,
    /// Ending the run: SIGQUIT.
    Quit,
    /// Ending the run: the restart limit was reached.
    RestartLimit,
    /// Ending the run: it did not exit in time after being told to stop.
    ShutdownTimeout,
    /// Ending the run: a pool's `terminate` (or its drop).
    Terminated,
    /// Ending the run: the job asked to stop now (`--halt now,...`).
    Halted,
}

impl KillCause {
    /// The worker misbehaved (it is replaced); otherwise the run is ending.
    #[cfg(test)]
    pub fn is_fault(&self) -> bool {
        !self.ends_run()
    }

    /// Killed because the run is ending, not for anything it did.
    pub fn ends_run(&self) -> bool {
        matches!(
            self,
            KillCause::SecondInterrupt
                | KillCause::Terminated
                | KillCause::Quit
                | KillCause::RestartLimit
                | KillCause::ShutdownTimeout
                | KillCause::Halted
        )
    }

    /// The cause without its figures, so causes group in the report.
    pub fn kind(&self) -> &'static str {
        match self {
            KillCause::NoHeartbeat { .. } => "no heartbeat (--worker-timeout)",
            KillCause::ForgedHeartbeat(_) => "forged its heartbeat",
            KillCause::CorruptedLink(_) => "corrupted its link",
            KillCause::LinkUnavailable(_) => "link not mappable",
            KillCause::SentGarbage(_) => "sent garbage",
            KillCause::ProtocolViolation(_) => "broke the protocol",
            KillCause::SecondInterrupt => "second interrupt",
            KillCause::Quit => "SIGQUIT",
            KillCause::RestartLimit => "restart limit reached",
            KillCause::ShutdownTimeout => "did not stop in time",
            KillCause::Terminated => "pool terminated",
            KillCause::Halted => "halted (--halt now)",
        }
    }
}

impl fmt::Display for KillCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KillCause::NoHeartbeat { silent, task } => {
                write!(f, "killed: no heartbeat for {:.1} s", silent.as_secs_f64())?;
                if let Some(task) = task {
                    write!(f, " during task {task}")?;
                }
                // Named for both: a command line's `--worker-timeout`, a
                // program's `worker_timeout` or `item_timeout`.
                write!(f, " (the worker timeout)")
            }
            KillCause::ForgedHeartbeat(why) => write!(f, "killed: {why}"),
            KillCause::CorruptedLink(why) => write!(f, "killed: corrupted its link ({why})"),
            KillCause::LinkUnavailable(why) => {
                write!(f, "killed: its link could not be mapped here ({why})")
            }
            KillCause::SentGarbage(why) => write!(f, "killed: sent garbage ({why})"),
            KillCause::ProtocolViolation(why) => write!(f, "killed: {why}"),
            KillCause::SecondInterrupt => write!(f, "stopped by the supervisor: second interrupt"),
            KillCause::Quit => write!(f, "stopped by the supervisor: SIGQUIT"),
            KillCause::RestartLimit => {
                write!(f, "stopped by the supervisor: restart limit reached")
            }
            KillCause::ShutdownTimeout => write!(
                f,
                "stopped by the supervisor: it did not exit in time after SIGTERM"
            ),
            KillCause::Terminated => write!(f, "stopped: the pool was terminated"),
            KillCause::Halted => {
                write!(f, "stopped by the supervisor: the job halted (--halt now)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kills_say_who_killed_and_never_blame_memory() {
        for cause in [
            KillCause::SecondInterrupt,
            KillCause::Quit,
            KillCause::NoHeartbeat {
                silent: Duration::from_secs(30),
                task: Some(4),
            },
            KillCause::CorruptedLink("tail 3".into()),
        ] {
            let text = cause.to_string();
            assert!(!text.contains("out of memory"), "{text}");
            assert!(text.starts_with("killed") || text.starts_with("stopped by the supervisor"));
        }
        assert!(KillCause::SecondInterrupt.ends_run());
        assert!(KillCause::CorruptedLink(String::new()).is_fault());
        assert_eq!(
            KillCause::NoHeartbeat {
                silent: Duration::from_millis(30_500),
                task: Some(7)
            }
            .to_string(),
            "killed: no heartbeat for 30.5 s during task 7 (the worker timeout)"
        );
    }
}
