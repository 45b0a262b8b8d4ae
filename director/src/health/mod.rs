//! Health checks: what ldirectord and keepalived's checkers did, built in.
//!
//! A real server that stops serving leaves the rotation before clients
//! notice, and comes back on its own when it recovers.
//!
//! * [`state`]: the pure state machine — up/down, consecutive failures and
//!   successes (anti-flapping), `alpha`, reasons — tested on a fake clock.

pub mod state;

pub use state::{Counts, Phase, Reason, TargetState, Transition};
