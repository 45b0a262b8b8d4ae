//! Health checks: what ldirectord and keepalived's checkers did, built in.
//!
//! A real server that stops serving leaves the rotation before clients
//! notice, and comes back on its own when it recovers. This module is the
//! engine; the control plane owns what a transition does to the tables
//! (weight 0 when the service is [`quiescent`], removal otherwise, the
//! fallback server when all are down).
//!
//! * [`config`]: the `[services.health]` tables as written (with
//!   per-real-server overrides): deserialisation, defaults, validation.
//! * [`spec`]: what they resolve to, one [`CheckSpec`] per target.
//! * [`state`]: the pure state machine — up/down, consecutive failures and
//!   successes (anti-flapping), `alpha`, reasons — tested on a fake clock.
//! * the checks: TCP connect, negotiate (HTTP, HTTPS over rustls with
//!   optional certificate verification, raw TCP), ICMP echo (IPv4, IPv6),
//!   external command; plus the transition hook.
//! * [`HealthChecker`]: the running engine the control plane starts with
//!   its targets, reloads with [`update`](HealthChecker::update), lists with
//!   [`status`](HealthChecker::status) and hears from through a
//!   [`HealthSink`]; the data path may add passive reports.
//!
//! # Why one thread and a small runtime
//! Checks spend their life waiting — on connects, answers, timers and
//! child processes. A current-thread tokio runtime waits on all of them
//! with one epoll on one thread: thousands of real servers cost thousands
//! of small tasks, not thousands of threads, and a hung server costs one
//! timer. The checks run from the host's own stack (kernel sockets), off
//! the data path.

mod check;
pub mod config;
mod engine;
mod ping;
pub mod spec;
pub mod state;

pub use check::HOOK_TIMEOUT;
pub use config::{CheckKind, HealthConfig, MAX_ANSWER, NegotiateService};
pub use engine::{
    FIRST_ROUND_SPREAD, HealthChecker, HealthSink, MAX_CONCURRENT_CHECKS, PASSIVE_QUEUE,
    PassiveHandle, TargetStatus,
};
pub use spec::{
    Check, CheckSpec, HttpCheck, Negotiate, Protocol, Target, TargetKey, TlsCheck, quiescent,
    resolve, targets,
};
pub use state::{Counts, Phase, Reason, TargetState, Transition};
