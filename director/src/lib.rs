//! `xvs-director`: the director's data plane (per-frame pipeline, connection
//! table, forwarding, AF_XDP and AF_PACKET I/O) and control plane (state,
//! config and reload, health checks, the agents' load reports, metrics).
//!
//! Built so far: the cluster configuration file ([`config`]), the
//! connection state machine and table ([`conn`]), the per-frame pipeline
//! ([`pipeline`]) that live workers and `xvs-replay` share, the I/O
//! backends and our XDP program ([`io`]), what the live director learns
//! from the kernel ([`kernel`]: interface facts, neighbours), and the
//! worker threads that tie them together ([`run`]); the control plane
//! ([`control`]: the service table edited at run time, the control socket,
//! reloads, metrics, the weights that follow the real-server agents' load
//! reports) and the health-check engine ([`health`]); the
//! composition root that starts, runs and stops them all ([`daemon`]),
//! which the `xvs-director` binary calls; and, not wired in yet, the VRRP
//! election of primary and backup directors ([`ha`]) and the reliability
//! layer of the connection-state sync between them ([`sync`]). All
//! `unsafe` of the workspace lives under `src/io/`; everything else denies
//! it.
//!
//! Dependencies run one way: the data plane ([`pipeline`], [`conn`],
//! [`io`]) imports nothing of the control plane ([`config`], [`control`],
//! [`health`], [`run`]; `tests/data_plane_imports.rs` checks it). Wire
//! types both carry (a service's parameters, which snapshots keep for
//! listings) come from the `xvs-proto` crate. What both speak (interface
//! numbers and roles, verdicts, drop reasons, destination numbers) lives
//! in the leaf module [`types`]; the control plane builds the snapshots
//! the data plane reads.
#![deny(unsafe_code)]

pub mod config;
pub mod conn;
pub mod control;
pub mod daemon;
pub mod ha;
pub mod health;
#[expect(
    unsafe_code,
    reason = "STYLE.md: the packet sockets' unsafe lives here and nowhere else"
)]
pub mod io;
pub mod kernel;
pub mod pipeline;
pub mod run;
pub mod sync;
#[cfg(test)]
pub(crate) mod test_support;
pub mod types;

pub use conn::ForwardMethod;
