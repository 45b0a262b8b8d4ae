//! The director's process as a library: the composition root ([`Daemon`])
//! and the long-running parts it is made of, each with one lifecycle
//! ([`Part`]): built from what it needs, started, reconfigured after every
//! published change, asked for its status, stopped. The binary only
//! parses its command line into [`DaemonOptions`] and calls
//! [`Daemon::start`] and [`Daemon::run`]; a test can do the same without a
//! command line.
//!
//! # Order
//! [`Daemon::start`] loads the configuration and asks the kernel for what
//! it leaves out, builds the service table and the director, takes the
//! interface locks, installs the signal handlers and opens the data plane
//! (the XDP program, the AF_XDP and AF_PACKET sockets, the nftables filter:
//! [`data_plane`]). Then come three stages:
//!
//! 1. the parts *before the workers*, in this order: the stats file and
//!    counter log ([`stats`]), the neighbour watcher ([`neighbours`]);
//! 2. the health checks and the workers (`run::start`: health first, so
//!    that no worker schedules to a server meant to be down);
//! 3. the parts *after the workers*, in this order: the control socket
//!    ([`control_socket`]), the metrics endpoint ([`metrics`]), the agents'
//!    receiver ([`agents`], with `[agents]`), the connection sync
//!    ([`sync`], with `[sync]`: before HA, so that it stops after HA has
//!    handed the addresses over), the HA election ([`ha`], with `[ha]`:
//!    last, so that it stops first and the VIPs are released while the
//!    workers still forward).
//!
//! Shutdown runs the other way, each step once: the parts after the
//! workers in reverse (HA, sync, agents, metrics, control socket), then the workers, the XDP
//! program detached, the kernel filter removed ([`data_plane::DataPlane::stop`]),
//! then the parts before the workers in reverse (the neighbour watcher,
//! then the last write of the stats file and the last counter lines, so
//! that both hold the workers' final counts). A start that fails half-way
//! stops what it had started in the same order.
//!
//! # A new part
//! The dashboard joins (as the agent receiver, HA and the sync did) as one
//! more [`Part`]: a file in this module with a struct built from its
//! configuration (no side effects), `start` (threads, sockets), `reconfigure`
//! (the difference a published snapshot makes to it), `status` (a JSON
//! object the stats file, the logs and the dashboard can render) and `stop`
//! (idempotent). It is registered in [`Daemon::start`] with
//! `after_workers.add` when it serves or announces what the workers carry
//! (a VIP taken over, connections synced, a dashboard): it then starts once
//! the data plane runs and stops before it. A part the workers' first
//! frames depend on goes into `before_workers`. Messages for the control
//! plane reach the main loop through the `ControlMsg` channel, as the
//! control socket's and the health checker's do; no part reaches into
//! another's state.
//!
//! # Status
//! A part's status is a `serde_json::Value` rather than a typed struct:
//! the stats file is JSON already, the dashboard will serve JSON, and a
//! new part adds its fields without a change to a shared type.

pub mod agents;
pub mod control_socket;
pub mod data_plane;
mod error;
pub mod ha;
pub mod metrics;
pub mod neighbours;
pub mod options;
pub mod part;
mod root;
pub mod stats;
pub mod sync;

pub use error::Error;
pub use options::{Backend, ConfigSource, DaemonOptions};
pub use part::{Part, Parts, Running};
pub use root::Daemon;
