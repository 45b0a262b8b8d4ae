//! `xvs-sched`: every IPVS scheduling algorithm with the kernel's decisions,
//! decision for decision, plus the pieces of the kernel's scheduling entry
//! point that decide *which* server a new connection gets: persistence
//! templates, connection accounting and OVERLOAD thresholds.
//!
//! Pure: no I/O, no clock (time is always an argument, [`Millis`] since an
//! arbitrary epoch), no floats in any selection (ratios are compared by
//! cross-multiplication), seeded or injected randomness only.
//!
//! # Shape
//! * [`ServerList`]: a service's real servers in the kernel's order (newest
//!   first) with their weights, thresholds and shared atomic counters;
//!   deleted servers wait in a trash and come back with their id.
//! * [`Scheduler`]: one implementation per algorithm, one file each, named
//!   as ipvsadm names it ([`rr`], [`wrr`], [`lc`], [`wlc`], [`sed`], [`nq`],
//!   [`dh`], [`sh`], [`mh`], [`lblc`], [`lblcr`], [`fo`], [`ovf`],
//!   [`twos`]); [`create_scheduler`] builds one by name.
//! * [`Service`]: a virtual service = configuration + server list +
//!   scheduler; its `add_server` / `edit_server` / `remove_server` run the
//!   kernel's hooks, [`Service::schedule_connection`] is the kernel's
//!   `ip_vs_schedule` (FTP-data and port checks, persistence, binding) and
//!   [`Service::real_port`] the destination port the connection then uses.
//! * [`Templates`]: persistence templates (`-p`, `-M`), re-armed on reuse,
//!   kept alive while connections depend on them.
//! * [`feedback`]: weights that follow the real-server agents' load
//!   reports — the capacity formula and the per-server policy (smoothing,
//!   rate limit, bounds, silence, drain, maint, health-check precedence).
//!
//! # Concurrency: how the director shares a service with its workers
//! Control operations take `&mut self`; scheduling takes `&self`. The
//! director keeps a master [`Service`], applies each change to it (hooks
//! run there, tables for sh/dh/mh are rebuilt there, off the hot path) and
//! publishes `Arc::new(master.clone())` to the workers by an atomic swap:
//! a snapshot is immutable except for
//! * the per-server counters and OVERLOAD flag: atomics behind an `Arc`
//!   that every snapshot shares, so counts never fork;
//! * rr's cursor and wrr's (cursor, current weight) pair: one atomic word
//!   each, advanced by compare-and-swap, so concurrent workers see a
//!   linearisable sequence — the same sequence the kernel produces under
//!   its `sched_lock`, without a lock;
//! * lblc/lblcr's destination cache: a `Mutex` shared by all snapshots of a
//!   service (the kernel takes `sched_lock` there too); those two
//!   algorithms allocate cache entries and are not lock-free.
//!
//! Every other algorithm is a pure function of the snapshot and the flow
//! and never allocates in `schedule`. Persistence templates belong to the
//! director's connection state and are driven with `&mut` [`Templates`]
//! (one per service; shard or lock as the connection table does).
//!
//! # Connection accounting
//! The director binds every connection it creates with
//! [`ServerList::bind_conn`] (done by [`Service::schedule_connection`]),
//! reports active↔inactive changes with
//! [`ServerList::conn_activity_changed`] (use [`counts_as_active`] /
//! [`TcpState::is_active`]: SYN_RECV, SYN_SENT, SYNACK and ESTABLISHED are
//! active; UDP is never active) and unbinds it with
//! [`ServerList::unbind_conn`] when it expires, releasing its template with
//! [`Templates::release`]. Timers — persistence templates and the lblc/lblcr
//! garbage collection — run when the director calls
//! [`Templates::expire`] and [`Service::run_timers`] with the current time.
#![forbid(unsafe_code)]

pub mod feedback;
pub mod hash;
pub mod persist;
pub mod random;
pub mod registry;
pub mod server;
pub mod service;

pub mod dh;
pub mod fo;
pub mod lblc;
pub mod lblcr;
pub mod lc;
pub mod mh;
pub mod nq;
pub mod ovf;
pub mod rr;
pub mod sed;
pub mod sh;
pub mod twos;
pub mod wlc;
pub mod wrr;

mod util;

use xvs_packet::FlowKey;

pub use persist::{PersistConfig, Template, TemplateId, TemplateKey, TemplateVaddr, Templates};
pub use random::{FixedDraws, RandomSource, SplitMix64};
pub use registry::{
    MhTableSize, SCHEDULER_NAMES, SchedError, SchedFlags, SchedOptions, create_scheduler,
};
pub use server::{
    RealServer, RealServerId, RealServerSpec, ServerError, ServerList, TcpState, counts_as_active,
};
pub use service::{NotScheduled, Scheduled, Service, ServiceConfig};

/// Time in milliseconds since an epoch the caller chooses (monotonic).
pub type Millis = u64;

/// What a scheduler may use besides the servers and the flow: the current
/// time (lblc/lblcr stamp their cache entries) and a source of random draws
/// (twos).
pub struct SchedContext<'a> {
    /// Now.
    pub now: Millis,
    /// Random draws for twos.
    pub random: &'a mut dyn RandomSource,
}

impl core::fmt::Debug for SchedContext<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SchedContext")
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// One IPVS scheduling algorithm bound to one service (the kernel's
/// `struct ip_vs_scheduler` plus its per-service `sched_data`).
///
/// Hooks take `&mut self` and run on the control plane after the server
/// list changed (the list passed in is already the new one); `schedule`
/// takes `&self` and may run on many workers at once.
pub trait Scheduler: Send + Sync + core::fmt::Debug {
    /// The ipvsadm name (`"wlc"`).
    fn name(&self) -> &'static str;

    /// Picks a real server for a new connection of `flow` (the client's
    /// packet: `src` = client, `dst` = virtual address), or `None` when no
    /// server may take it.
    fn schedule(
        &self,
        servers: &ServerList,
        flow: &FlowKey,
        ctx: &mut SchedContext<'_>,
    ) -> Option<RealServerId>;

    /// `add_dest`: `id` was just inserted at the head of `servers`.
    fn server_added(&mut self, servers: &ServerList, id: RealServerId) {
        let _ = (servers, id);
    }

    /// `del_dest`: `id` was just unlinked from `servers`, where it was at
    /// `position` (kernel order).
    fn server_removed(&mut self, servers: &ServerList, id: RealServerId, position: usize) {
        let _ = (servers, id, position);
    }

    /// `upd_dest`: weight or thresholds of `id` were edited.
    fn server_updated(&mut self, servers: &ServerList, id: RealServerId) {
        let _ = (servers, id);
    }

    /// Runs the scheduler's periodic timers that are due at or before
    /// `now` (lblc/lblcr cache collection). Others do nothing.
    fn run_timers(&self, now: Millis) {
        let _ = now;
    }

    /// A copy for a new snapshot of the service (see the crate docs for
    /// what is shared and what is copied).
    fn clone_box(&self) -> Box<dyn Scheduler>;
}

impl Clone for Box<dyn Scheduler> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}
