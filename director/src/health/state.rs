//! The check state machine of one (service, real server) target: up or
//! down, consecutive failures and successes, and why.
//!
//! # Contract
//! * Pure: no clock is read and nothing is scheduled here; every call takes
//!   `now`, so tests drive it with a fake clock (an [`Instant`] plus offsets).
//! * A target that is up goes down after `failures` consecutive failed checks
//!   (ldirectord's `failurecount`, keepalived's `retry`); one that is down
//!   comes back after `successes` consecutive passed checks (keepalived's
//!   `rise`). Any result of the other kind resets the count, so a server that
//!   flaps faster than the counts never changes the rotation.
//! * `alpha` (keepalived): the target starts down and its *first* passed
//!   check brings it up — it was never in rotation, so there is nothing to
//!   flap. Without `alpha` it starts up, as ldirectord adds servers.
//! * Passive reports (what the data path saw: a refused or unanswered SYN)
//!   count as failures with the same counts, and can take a target down.
//!   They never bring one up: a server that is down gets no new
//!   connections, so what the data path still sees of it is old flows;
//!   coming back is the active check's call. A passive success only clears
//!   the failure count of a target that is up.

use core::fmt;
use std::time::{Duration, Instant};

/// Why a check passed or failed; the last one is kept per target, logged on
/// every transition and passed to the transition hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// No check has finished yet.
    NotChecked,
    /// The check passed.
    Passed,
    /// `check = "on"`: always up, never checked.
    CheckOn,
    /// `check = "off"`: always down, never checked.
    CheckOff,
    /// No answer in time.
    Timeout(Phase),
    /// The TCP connection was refused (RST to the SYN).
    Refused,
    /// The host or network is unreachable (ICMP error, no route).
    Unreachable,
    /// The server reset the connection after accepting it.
    Reset,
    /// The server closed the connection before answering.
    Closed,
    /// An HTTP status other than the expected ones.
    WrongStatus {
        /// The status the server sent.
        got: u16,
    },
    /// The answer did not contain the `receive` text.
    WrongContent,
    /// The answer is not HTTP.
    NotHttp,
    /// The TLS handshake failed (certificate or protocol).
    Tls(String),
    /// The external command exited non-zero, was killed, or could not run.
    CommandFailed(String),
    /// Any other socket error.
    Io(String),
    /// The data path saw a connection to the server fail.
    PassiveFailure,
    /// The data path saw a connection to the server succeed.
    PassiveSuccess,
}

/// The part of a check that timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// The TCP connect.
    Connect,
    /// The TLS handshake, request and answer of a negotiate check.
    Answer,
    /// The echo reply of a ping.
    Ping,
    /// The external command.
    Command,
}

impl Reason {
    /// Whether this reason is a passing result.
    #[must_use]
    pub fn is_pass(&self) -> bool {
        matches!(self, Self::Passed | Self::CheckOn | Self::PassiveSuccess)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotChecked => f.write_str("not checked yet"),
            Self::Passed => f.write_str("check passed"),
            Self::CheckOn => f.write_str("check = on"),
            Self::CheckOff => f.write_str("check = off"),
            Self::Timeout(Phase::Connect) => f.write_str("timeout: no answer to the connect"),
            Self::Timeout(Phase::Answer) => {
                f.write_str("timeout: no complete answer to the request")
            }
            Self::Timeout(Phase::Ping) => f.write_str("timeout: no echo reply"),
            Self::Timeout(Phase::Command) => {
                f.write_str("timeout: the check command did not finish")
            }
            Self::Refused => f.write_str("connection refused"),
            Self::Unreachable => f.write_str("unreachable"),
            Self::Reset => f.write_str("connection reset"),
            Self::Closed => f.write_str("connection closed before an answer"),
            Self::WrongStatus { got } => write!(f, "wrong status code {got}"),
            Self::WrongContent => {
                f.write_str("wrong content: the expected text is not in the answer")
            }
            Self::NotHttp => f.write_str("the answer is not HTTP"),
            Self::Tls(e) => write!(f, "TLS: {e}"),
            Self::CommandFailed(e) => write!(f, "command failed: {e}"),
            Self::Io(e) => write!(f, "{e}"),
            Self::PassiveFailure => f.write_str("the data path saw a connection fail"),
            Self::PassiveSuccess => f.write_str("the data path saw a connection succeed"),
        }
    }
}

/// How many consecutive results of a kind change the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Counts {
    /// Consecutive failures that take an up target down (≥ 1).
    pub failures: u32,
    /// Consecutive successes that bring a down target up (≥ 1).
    pub successes: u32,
}

impl Default for Counts {
    fn default() -> Self {
        Self {
            failures: 1,
            successes: 1,
        }
    }
}

/// Where a result came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// An active check of the health checker.
    Active,
    /// A report of the data path.
    Passive,
}

/// A change of state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The new state.
    pub up: bool,
    /// The result that caused it.
    pub reason: Reason,
    /// When.
    pub at: Instant,
}

/// The state of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetState {
    /// In rotation or not.
    pub up: bool,
    /// Consecutive failed results (reset by a success).
    pub failures: u32,
    /// Consecutive passed results (reset by a failure).
    pub successes: u32,
    /// Started down under `alpha` and not yet up once: the first success
    /// brings it up.
    pub awaiting_first_success: bool,
    /// The last result's reason.
    pub last_reason: Reason,
    /// How long the last active check took (to its result or its timeout).
    pub last_latency: Option<Duration>,
    /// When the last result arrived.
    pub last_result_at: Option<Instant>,
    /// When the state last changed (or the target was created).
    pub since: Instant,
    /// How many times the state changed.
    pub transitions: u64,
    /// Active checks finished.
    pub checks: u64,
    /// Active checks that failed.
    pub failed_checks: u64,
}

impl TargetState {
    /// A new target: down under `alpha`, up otherwise.
    #[must_use]
    pub fn new(alpha: bool, now: Instant) -> Self {
        Self {
            up: !alpha,
            failures: 0,
            successes: 0,
            awaiting_first_success: alpha,
            last_reason: Reason::NotChecked,
            last_latency: None,
            last_result_at: None,
            since: now,
            transitions: 0,
            checks: 0,
            failed_checks: 0,
        }
    }

    /// A target whose state is fixed (`check = "on"` / `"off"`).
    #[must_use]
    pub fn fixed(up: bool, now: Instant) -> Self {
        let mut s = Self::new(false, now);
        s.up = up;
        s.last_reason = if up {
            Reason::CheckOn
        } else {
            Reason::CheckOff
        };
        s
    }

    /// Records one result; returns the transition it causes, if any.
    pub fn record(
        &mut self,
        reason: Reason,
        source: Source,
        latency: Option<Duration>,
        counts: Counts,
        now: Instant,
    ) -> Option<Transition> {
        let passed = reason.is_pass();
        self.last_reason = reason.clone();
        self.last_result_at = Some(now);
        if source == Source::Active {
            self.checks += 1;
            if !passed {
                self.failed_checks += 1;
            }
            if latency.is_some() {
                self.last_latency = latency;
            }
        }
        if passed {
            self.failures = 0;
            if source == Source::Passive && !self.up {
                return None;
            }
            self.successes = self.successes.saturating_add(1);
            let enough = self.awaiting_first_success || self.successes >= counts.successes.max(1);
            if !self.up && enough {
                return Some(self.change(true, reason, now));
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.up && self.failures >= counts.failures.max(1) {
                return Some(self.change(false, reason, now));
            }
        }
        None
    }

    /// Forces a state (a reload to `check = "on"`/`"off"`); a transition if
    /// it differs.
    pub fn force(&mut self, up: bool, reason: Reason, now: Instant) -> Option<Transition> {
        self.last_reason = reason.clone();
        self.failures = 0;
        self.successes = 0;
        (self.up != up).then(|| self.change(up, reason, now))
    }

    /// Clears the consecutive counts (a reload changed how the target is
    /// checked; the state itself is kept).
    pub fn reset_counts(&mut self) {
        self.failures = 0;
        self.successes = 0;
    }

    fn change(&mut self, up: bool, reason: Reason, now: Instant) -> Transition {
        self.up = up;
        self.failures = 0;
        self.successes = 0;
        self.awaiting_first_success = false;
        self.since = now;
        self.transitions += 1;
        Transition {
            up,
            reason,
            at: now,
        }
    }
}

/// The shortest interval the checker keeps, whatever a spec says: a spec
/// built by hand with 0 must not make a target's checks spin.
pub const MIN_INTERVAL: Duration = Duration::from_millis(1);
/// The longest interval the checker keeps (one day), so that the next
/// check's time cannot overflow.
pub const MAX_INTERVAL: Duration = Duration::from_secs(86_400);

/// When the check after one that started at `started` and finished at
/// `finished` starts: one interval after the start, or at once if the check
/// took longer than that (checks of one target never overlap). The
/// interval is clamped to [`MIN_INTERVAL`]..=[`MAX_INTERVAL`].
#[must_use]
pub fn next_check(started: Instant, finished: Instant, interval: Duration) -> Instant {
    let interval = interval.clamp(MIN_INTERVAL, MAX_INTERVAL);
    started
        .checked_add(interval)
        .unwrap_or(finished)
        .max(finished)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake clock: a fixed origin and offsets from it.
    struct Clock(Instant);

    impl Clock {
        fn at(&self, ms: u64) -> Instant {
            self.0 + Duration::from_millis(ms)
        }
    }

    fn clock() -> Clock {
        Clock(Instant::now())
    }

    const fn counts(failures: u32, successes: u32) -> Counts {
        Counts {
            failures,
            successes,
        }
    }

    fn active(s: &mut TargetState, reason: Reason, c: Counts, now: Instant) -> Option<Transition> {
        s.record(
            reason,
            Source::Active,
            Some(Duration::from_millis(3)),
            c,
            now,
        )
    }

    #[test]
    fn an_up_target_goes_down_after_the_failure_count_and_a_success_resets_it() {
        let t = clock();
        let c = counts(3, 1);
        let mut s = TargetState::new(false, t.at(0));
        assert!(s.up);
        assert_eq!(active(&mut s, Reason::Refused, c, t.at(10)), None);
        assert_eq!(active(&mut s, Reason::Refused, c, t.at(20)), None);
        assert_eq!(s.failures, 2);
        assert_eq!(active(&mut s, Reason::Passed, c, t.at(30)), None);
        assert_eq!(s.failures, 0, "a success resets the failure count");
        assert_eq!(active(&mut s, Reason::Refused, c, t.at(40)), None);
        assert_eq!(active(&mut s, Reason::Refused, c, t.at(50)), None);
        let down = active(&mut s, Reason::Timeout(Phase::Answer), c, t.at(60)).unwrap();
        assert_eq!(
            down,
            Transition {
                up: false,
                reason: Reason::Timeout(Phase::Answer),
                at: t.at(60)
            }
        );
        assert!(!s.up);
        assert_eq!((s.transitions, s.since, s.failures), (1, t.at(60), 0));
        assert_eq!((s.checks, s.failed_checks), (6, 5));
        assert_eq!(s.last_latency, Some(Duration::from_millis(3)));
        assert_eq!(
            active(&mut s, Reason::Refused, c, t.at(70)),
            None,
            "already down"
        );
        assert_eq!(s.transitions, 1);
    }

    #[test]
    fn a_down_target_comes_back_after_the_success_count() {
        let t = clock();
        let c = counts(1, 3);
        let mut s = TargetState::new(false, t.at(0));
        assert!(active(&mut s, Reason::WrongStatus { got: 500 }, c, t.at(1)).is_some());
        assert_eq!(active(&mut s, Reason::Passed, c, t.at(2)), None);
        assert_eq!(active(&mut s, Reason::Passed, c, t.at(3)), None);
        assert_eq!(
            active(&mut s, Reason::WrongContent, c, t.at(4)),
            None,
            "a failure while down resets the success count"
        );
        assert_eq!(s.successes, 0);
        assert_eq!(active(&mut s, Reason::Passed, c, t.at(5)), None);
        assert_eq!(active(&mut s, Reason::Passed, c, t.at(6)), None);
        let up = active(&mut s, Reason::Passed, c, t.at(7)).unwrap();
        assert!(up.up && s.up);
        assert_eq!(
            (up.reason, up.at, s.transitions),
            (Reason::Passed, t.at(7), 2)
        );
        assert_eq!(s.last_reason, Reason::Passed);
    }

    #[test]
    fn alpha_starts_down_and_the_first_success_brings_it_up() {
        let t = clock();
        let c = counts(2, 5);
        let mut s = TargetState::new(true, t.at(0));
        assert!(!s.up);
        assert_eq!(s.last_reason, Reason::NotChecked);
        assert_eq!(active(&mut s, Reason::Refused, c, t.at(1)), None);
        assert!(
            active(&mut s, Reason::Passed, c, t.at(2)).unwrap().up,
            "one success, not five"
        );
        assert_eq!(active(&mut s, Reason::Refused, c, t.at(3)), None);
        assert!(!active(&mut s, Reason::Refused, c, t.at(4)).unwrap().up);
        for ms in 5..9 {
            assert_eq!(
                active(&mut s, Reason::Passed, c, t.at(ms)),
                None,
                "after its first time up, the success count applies"
            );
        }
        assert!(active(&mut s, Reason::Passed, c, t.at(9)).unwrap().up);
    }

    #[test]
    fn without_alpha_a_target_starts_up_and_the_first_success_changes_nothing() {
        let t = clock();
        let mut s = TargetState::new(false, t.at(0));
        assert!(s.up && !s.awaiting_first_success);
        assert_eq!(active(&mut s, Reason::Passed, counts(1, 1), t.at(1)), None);
        assert_eq!(s.transitions, 0);
    }

    /// A server that alternates between failing and passing every interval
    /// never reaches counts above 1: with failures = 2 the rotation never
    /// changes, and with 1/1 it changes at every check — at most as often as
    /// the counts allow.
    #[test]
    fn a_flapping_server_changes_the_rotation_at_most_as_often_as_the_counts_allow() {
        let t = clock();
        let flapping = |c: Counts| {
            let mut s = TargetState::new(false, t.at(0));
            let mut changes = Vec::new();
            for i in 0..100u64 {
                let reason = if i % 2 == 0 {
                    Reason::Refused
                } else {
                    Reason::Passed
                };
                if let Some(tr) = active(&mut s, reason, c, t.at(i * 100)) {
                    changes.push(tr.at);
                }
            }
            changes
        };
        assert!(flapping(counts(2, 1)).is_empty());
        assert!(flapping(counts(1, 2)).len() <= 1, "down once, never back");
        assert_eq!(flapping(counts(1, 1)).len(), 100);

        // Down for three checks, up for three: with counts 3/3 every change
        // needs three results in a row, so changes are ≥ 3 intervals apart.
        let mut s = TargetState::new(false, t.at(0));
        let mut changes = Vec::new();
        for i in 0..60u64 {
            let reason = if (i / 3) % 2 == 0 {
                Reason::Refused
            } else {
                Reason::Passed
            };
            if let Some(tr) = active(&mut s, reason, counts(3, 3), t.at(i * 100)) {
                changes.push(tr.at);
            }
        }
        assert_eq!(changes.len(), 20);
        assert!(
            changes
                .windows(2)
                .all(|w| w[1] - w[0] >= Duration::from_millis(300))
        );
    }

    /// The bound: a server that dies just after a passed check is
    /// down within interval × failures + timeout of its death.
    #[test]
    fn a_dead_server_is_detected_within_interval_times_failures_plus_timeout() {
        let t = clock();
        let interval = Duration::from_millis(1000);
        let timeout = Duration::from_millis(300);
        for failures in 1..=4u32 {
            let c = counts(failures, 1);
            let mut s = TargetState::new(false, t.at(0));
            let died = t.at(1);
            let mut start = t.at(0);
            let mut detected = None;
            for _ in 0..20 {
                let (reason, finished) = if start < died {
                    (Reason::Passed, start + Duration::from_millis(1))
                } else {
                    (Reason::Timeout(Phase::Answer), start + timeout)
                };
                if let Some(tr) = active(&mut s, reason, c, finished) {
                    detected = Some(tr.at);
                    break;
                }
                start = next_check(start, finished, interval);
            }
            let detected = detected.unwrap();
            assert!(
                detected - died <= interval * failures + timeout,
                "failures {failures}: {:?}",
                detected - died
            );
        }
    }

    #[test]
    fn checks_never_overlap_and_keep_their_interval() {
        let t = clock();
        let i = Duration::from_millis(100);
        assert_eq!(next_check(t.at(0), t.at(5), i), t.at(100));
        assert_eq!(next_check(t.at(0), t.at(250), i), t.at(250));
        assert_eq!(
            next_check(t.at(0), t.at(0), Duration::ZERO),
            t.at(1),
            "an interval of 0 does not spin"
        );
        assert_eq!(
            next_check(t.at(0), t.at(0), Duration::MAX),
            t.at(0) + MAX_INTERVAL
        );
    }

    #[test]
    fn passive_failures_count_with_the_same_counts_and_never_bring_a_server_up() {
        let t = clock();
        let c = counts(2, 1);
        let mut s = TargetState::new(false, t.at(0));
        let passive =
            |s: &mut TargetState, r: Reason, ms| s.record(r, Source::Passive, None, c, t.at(ms));
        assert_eq!(passive(&mut s, Reason::PassiveFailure, 1), None);
        assert_eq!(passive(&mut s, Reason::PassiveSuccess, 2), None);
        assert_eq!(
            s.failures, 0,
            "a passive success clears the failures of an up target"
        );
        assert_eq!(passive(&mut s, Reason::PassiveFailure, 3), None);
        let down = passive(&mut s, Reason::PassiveFailure, 4).unwrap();
        assert_eq!((down.up, down.reason), (false, Reason::PassiveFailure));
        assert_eq!((s.checks, s.last_latency), (0, None), "not active checks");
        for ms in 5..10 {
            assert_eq!(passive(&mut s, Reason::PassiveSuccess, ms), None);
        }
        assert!(!s.up);
        assert!(active(&mut s, Reason::Passed, c, t.at(10)).unwrap().up);
        // An active failure and a passive one add up.
        assert_eq!(active(&mut s, Reason::Refused, c, t.at(11)), None);
        assert!(passive(&mut s, Reason::PassiveFailure, 12).is_some());
    }

    #[test]
    fn forcing_a_state_is_a_transition_only_when_it_changes() {
        let t = clock();
        let mut s = TargetState::new(false, t.at(0));
        assert_eq!(s.force(true, Reason::CheckOn, t.at(1)), None);
        assert_eq!(s.last_reason, Reason::CheckOn);
        let tr = s.force(false, Reason::CheckOff, t.at(2)).unwrap();
        assert_eq!(
            (tr.up, tr.reason, s.transitions),
            (false, Reason::CheckOff, 1)
        );
        let fixed = TargetState::fixed(false, t.at(0));
        assert!(!fixed.up);
        assert_eq!(fixed.last_reason, Reason::CheckOff);
    }

    #[test]
    fn zero_counts_behave_as_one() {
        let t = clock();
        let mut s = TargetState::new(false, t.at(0));
        assert!(active(&mut s, Reason::Refused, counts(0, 0), t.at(1)).is_some());
        assert!(active(&mut s, Reason::Passed, counts(0, 0), t.at(2)).is_some());
    }

    #[test]
    fn reasons_read_as_an_operator_expects() {
        assert_eq!(
            Reason::WrongStatus { got: 503 }.to_string(),
            "wrong status code 503"
        );
        assert_eq!(Reason::Refused.to_string(), "connection refused");
        assert!(
            Reason::Timeout(Phase::Answer)
                .to_string()
                .starts_with("timeout")
        );
        assert!(Reason::Passed.is_pass() && !Reason::Refused.is_pass());
    }
}
