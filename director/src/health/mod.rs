//! Health checks: what ldirectord and keepalived's checkers did, built in.
//!
//! A real server that stops serving leaves the rotation before clients
//! notice, and comes back on its own when it recovers.
//!
//! * [`config`]: the `[services.health]` tables (with per-real-server
//!   overrides) and their resolution into one [`CheckSpec`] per target.
//! * [`state`]: the pure state machine — up/down, consecutive failures and
//!   successes (anti-flapping), `alpha`, reasons — tested on a fake clock.

pub mod config;
pub mod state;

pub use config::{
    Check, CheckKind, CheckSpec, HealthConfig, HttpCheck, MAX_ANSWER, Negotiate, NegotiateService,
    Protocol, ServiceKey, Target, TargetKey, TlsCheck, quiescent, resolve, targets,
};
pub use state::{Counts, Phase, Reason, TargetState, Transition};
