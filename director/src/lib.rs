//! `xvs-director`: the director's data plane (per-frame pipeline, connection
//! table, forwarding, AF_XDP and AF_PACKET I/O) and control plane (state,
//! config and reload, health checks, metrics).
//!
//! Built so far: the cluster configuration file ([`config`]), the
//! connection state machine and table ([`conn`]), the per-frame pipeline
//! ([`pipeline`]) that live workers and `xvs-replay` share, the I/O
//! backends and our XDP program ([`io`]), what the live director learns
//! from the kernel ([`kernel`]: interface facts, neighbours), and the
//! worker threads that tie them together ([`run`]); the control plane
//! ([`control`]: the service table edited at run time, the control socket,
//! reloads, metrics) and the health-check engine ([`health`]); the
//! composition root that starts, runs and stops them all ([`daemon`]),
//! which the `xvs-director` binary calls. All `unsafe` of the workspace lives
//! under `src/io/`; everything else denies it.
#![deny(unsafe_code)]

pub mod config;
pub mod conn;
pub mod control;
pub mod daemon;
pub mod health;
#[expect(
    unsafe_code,
    reason = "STYLE.md: the packet sockets' unsafe lives here and nowhere else"
)]
pub mod io;
pub mod kernel;
pub mod pipeline;
pub mod run;

pub use conn::ForwardMethod;
