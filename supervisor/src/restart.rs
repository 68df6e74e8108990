//! The restart policy, OTP/systemd style: a crashed worker is replaced at
//! once, a slot that keeps crashing without finishing a task backs off
//! exponentially, and more than `max_restarts` crashes within
//! `restart_window` stop the run instead of looping forever.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The first delay once a slot has crashed twice in a row; it doubles after.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct RestartPolicy {
    max_restarts: u32,
    window: Duration,
    recent: VecDeque<Instant>,
}

/// What to do after a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Replace the worker after this delay (zero: at once).
    RestartAfter(Duration),
    /// Too many crashes within the window: stop the run.
    GiveUp { crashes: u32, window: Duration },
}

impl RestartPolicy {
    pub fn new(max_restarts: u32, window: Duration) -> Self {
        RestartPolicy {
            max_restarts,
            window,
            recent: VecDeque::new(),
        }
    }

    /// Records a crash at `now` of a slot that has now crashed
    /// `consecutive` times in a row without finishing a task.
    pub fn on_crash(&mut self, now: Instant, consecutive: u32) -> Verdict {
        self.recent.push_back(now);
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            self.recent.pop_front();
        }
        let crashes = self.recent.len() as u32;
        if crashes > self.max_restarts {
            return Verdict::GiveUp {
                crashes,
                window: self.window,
            };
        }
        Verdict::RestartAfter(backoff(consecutive))
    }
}

/// No delay for a first crash; 10 ms, 20 ms, 40 ms, ... up to 1 s after.
pub fn backoff(consecutive: u32) -> Duration {
    if consecutive <= 1 {
        return Duration::ZERO;
    }
    let doublings = (consecutive - 2).min(16);
    (FIRST_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::ZERO);
        assert_eq!(backoff(2), Duration::from_millis(10));
        assert_eq!(backoff(3), Duration::from_millis(20));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }

    #[test]
    fn too_many_crashes_in_the_window_give_up() {
        let mut policy = RestartPolicy::new(2, Duration::from_secs(10));
        let t = Instant::now();
        assert_eq!(policy.on_crash(t, 1), Verdict::RestartAfter(Duration::ZERO));
        assert!(matches!(policy.on_crash(t, 1), Verdict::RestartAfter(_)));
        assert!(matches!(
            policy.on_crash(t, 1),
            Verdict::GiveUp { crashes: 3, .. }
        ));
    }

    #[test]
    fn old_crashes_leave_the_window() {
        let mut policy = RestartPolicy::new(1, Duration::from_secs(1));
        let t = Instant::now();
        assert!(matches!(policy.on_crash(t, 1), Verdict::RestartAfter(_)));
        let later = t + Duration::from_secs(5);
        assert!(matches!(
            policy.on_crash(later, 1),
            Verdict::RestartAfter(_)
        ));
    }
}
