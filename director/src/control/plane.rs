//! The control plane's one owner: the service table, the counters'
//! baselines (`-Z`) and rate estimates, and the publication of every
//! accepted change to the workers and the I/O layer's filters.
//!
//! It lives on the director's main thread. The control socket and the
//! metrics endpoint hand it their requests through a channel
//! ([`ControlMsg`]); it answers each one whole, so changes are serialised
//! without locks and a listing never sees half a change.

use std::net::IpAddr;
use std::sync::Arc;

use crossbeam::channel::Sender;

use rustc_hash::FxHashSet;

use crate::config::ClusterConfig;
use crate::conn::Millis;
use crate::control::agents::{AcceptedReport, AgentShared, AgentWeights, ReceiverSettings};
use crate::control::estimator::{Estimate, PERIOD_MS};
use crate::control::proto::{
    ControlError, DaemonsView, ErrorKind, LoadServer, LoadService, LoadView, Reply, Request,
    ServerState, ServiceState, StatsView, TableView,
};
use crate::control::table::ServiceTable;
use crate::io::IoError;
use crate::pipeline::{DestIndex, Director, Snapshot, TrafficCounters, WorkerCounters};

/// What the control socket's and the metrics endpoint's threads ask the
/// main thread.
#[derive(Debug)]
pub enum ControlMsg {
    /// A request from a client, and where its reply goes: apply it only
    /// if [`take`](crate::control::socket::PendingRequest::take) gives it (its client still waits).
    Request(crate::control::socket::PendingRequest),
    /// A scrape: the metrics text goes back.
    Metrics(Sender<String>),
    /// The agents' receiver accepted a load report.
    AgentReport(crate::control::agents::AcceptedReport),
    /// The health checker saw a real server go up or down.
    Health {
        /// Which one.
        target: crate::health::TargetKey,
        /// Its new state.
        up: bool,
        /// Why, for the log.
        reason: String,
    },
}

/// What else must follow a published state: the XDP program's maps, the
/// AF_PACKET kernel filter, next-hop resolution. Implemented by the binary.
pub trait DataPlaneHooks {
    /// `snapshot` is about to be published: make the kernel's side say
    /// what it says. Called again with the running state to undo a change
    /// whose update failed, so it must make the filters say exactly what
    /// the snapshot says, whatever a failed call left behind.
    ///
    /// # Errors
    /// A filter could not be updated (which one, and the kernel's answer).
    fn published(&mut self, snapshot: &Snapshot) -> Result<(), HookError>;
}

/// Hooks that do nothing (tests, replay).
#[derive(Debug, Default)]
pub struct NoHooks;

impl DataPlaneHooks for NoHooks {
    fn published(&mut self, _snapshot: &Snapshot) -> Result<(), HookError> {
        Ok(())
    }
}

/// Why the kernel's side of the data plane could not follow a state.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The XDP program's maps (which frames reach the director).
    #[error("updating the XDP program's maps: {0}")]
    XdpMaps(#[source] IoError),
    /// The nftables table that keeps AF_PACKET interfaces' frames from the
    /// kernel.
    #[error("updating the AF_PACKET kernel filter (nftables): {0}")]
    KernelFilter(#[source] IoError),
}

/// Why a change could not be published: it was undone, and says so.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The kernel's side refused the new state; the table, the workers'
    /// state and the filters are as before the change.
    #[error(
        "{0}; the change was rolled back and nothing changed: fix the cause (see the director's log) and repeat it"
    )]
    RolledBack(#[source] HookError),
    /// The new state failed and so did putting the filters back: the table
    /// and the workers are as before, the filters may redirect more.
    #[error(
        "{failed}; the change was rolled back, but restoring the filters failed too ({restore}): the director may receive frames of the undone change until a later change succeeds"
    )]
    RestoreFailed {
        /// Why the new state failed.
        failed: Box<HookError>,
        /// Why putting the previous one back failed.
        restore: Box<HookError>,
    },
}

impl From<PublishError> for ControlError {
    fn from(e: PublishError) -> Self {
        Self::new(ErrorKind::DataPlane, e.to_string())
    }
}

/// Why a reload was refused; the running state is kept in every case.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file changes keys a running director cannot apply.
    #[error(
        "the file changes {} that only a restart applies: {}; nothing was changed: restart the director to apply {}, or set {} back in the file",
        if .0.len() == 1 { "a key" } else { "keys" },
        list_keys(.0),
        if .0.len() == 1 { "it" } else { "them" },
        if .0.len() == 1 { "it" } else { "them" }
    )]
    NeedsRestart(Vec<crate::control::reload::RestartKey>),
    /// The table refused the file's services or servers.
    #[error(transparent)]
    Refused(#[from] ControlError),
    /// The kernel's side could not follow; the change was undone.
    #[error(transparent)]
    DataPlane(#[from] PublishError),
}

fn list_keys(keys: &[crate::control::reload::RestartKey]) -> String {
    keys.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<ReloadError> for ControlError {
    fn from(e: ReloadError) -> Self {
        match e {
            ReloadError::Refused(e) => e,
            ReloadError::DataPlane(e) => e.into(),
            e @ ReloadError::NeedsRestart(_) => Self::new(ErrorKind::Reload, e.to_string()),
        }
    }
}

/// Why the configuration could not be read again for a reload.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The director runs a quick start from its command line.
    #[error("started without --config: there is no file to reload")]
    NoFile,
    /// The file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// What the file leaves out could not be learned from the kernel.
    #[error(transparent)]
    Kernel(#[from] crate::kernel::KernelError),
}

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The health checker's runtime or thread.
    #[error("starting the health checker: {0}")]
    HealthChecker(#[source] std::io::Error),
    /// The first state (servers that start down taken out) could not be
    /// given to the kernel's side.
    #[error("publishing the first state: {0}")]
    Publish(#[source] HookError),
}

/// The control plane's state.
#[derive(Debug)]
pub struct ControlPlane {
    table: ServiceTable,
    director: Arc<Director>,
    capacity: u32,
    /// Counters at the last `-Z`, per destination.
    zero: Vec<TrafficCounters>,
    dest_rates: Vec<Estimate>,
    service_rates: Vec<Estimate>,
    last_sample: Option<Millis>,
    health: crate::control::health::HealthOverrides,
    checker: Option<crate::health::HealthChecker>,
    passive: Option<Arc<crate::control::health::PassiveReporter>>,
    /// The configuration the running state came from (set by
    /// [`ControlPlane::start`]): a reload compares the keys only a restart
    /// applies against it.
    running: Option<ClusterConfig>,
    /// The real-server agents' weights (with `[agents]`).
    agents: Option<AgentWeights>,
    /// The targets the health checker last said are down, whether or not
    /// the table still holds them (the agents' `maint` may have taken them
    /// out first).
    checker_down: FxHashSet<crate::health::TargetKey>,
    /// The HA router's counters and view, with `[ha]` (the metrics).
    ha: Option<Arc<crate::ha::router::Shared>>,
    sync: Option<Arc<crate::sync::shared::SyncShared>>,
}

fn stats_view(t: TrafficCounters) -> StatsView {
    StatsView {
        conns: t.conns,
        inpkts: t.packets_in,
        outpkts: t.packets_out,
        inbytes: t.bytes_in,
        outbytes: t.bytes_out,
    }
}

fn minus(a: TrafficCounters, b: TrafficCounters) -> TrafficCounters {
    TrafficCounters {
        conns: a.conns.saturating_sub(b.conns),
        packets_in: a.packets_in.saturating_sub(b.packets_in),
        packets_out: a.packets_out.saturating_sub(b.packets_out),
        bytes_in: a.bytes_in.saturating_sub(b.bytes_in),
        bytes_out: a.bytes_out.saturating_sub(b.bytes_out),
    }
}

impl ControlPlane {
    /// The control plane over `table`, whose snapshot `director` runs.
    #[must_use]
    pub fn new(table: ServiceTable, director: Arc<Director>, capacity: u32) -> Self {
        Self {
            table,
            director,
            capacity,
            zero: Vec::new(),
            dest_rates: Vec::new(),
            service_rates: Vec::new(),
            last_sample: None,
            health: crate::control::health::HealthOverrides::default(),
            checker: None,
            passive: None,
            running: None,
            agents: None,
            checker_down: FxHashSet::default(),
            ha: None,
            sync: None,
        }
    }

    /// Shows the connection sync sharing `shared` in the metrics.
    pub fn with_sync(&mut self, shared: Arc<crate::sync::shared::SyncShared>) {
        self.sync = Some(shared);
    }

    /// The connection sync's figures, with `[sync]`.
    #[must_use]
    pub fn sync(&self) -> Option<&crate::sync::shared::SyncShared> {
        self.sync.as_deref()
    }

    /// Shows the HA router sharing `shared` in the metrics.
    pub fn with_ha(&mut self, shared: Arc<crate::ha::router::Shared>) {
        self.ha = Some(shared);
    }

    /// The HA router's counters and view, with `[ha]`.
    #[must_use]
    pub fn ha(&self) -> Option<&crate::ha::router::Shared> {
        self.ha.as_deref()
    }

    /// Makes the weights follow the agents' reports that the receiver
    /// sharing `shared` accepts; [`ControlPlane::start`] (or a reload)
    /// gives them the file's configured weights and policy.
    pub fn with_agents(&mut self, shared: Arc<AgentShared>) {
        self.agents = Some(AgentWeights::new(
            xvs_sched::feedback::WeightPolicy::default(),
            shared,
        ));
    }

    /// The agents' weights, when `[agents]` is on.
    #[must_use]
    pub fn agents(&self) -> Option<&AgentWeights> {
        self.agents.as_ref()
    }

    /// An accepted report, received at `now`: the weights follow at the
    /// next [`ControlPlane::follow_agents`].
    pub fn agent_report(&mut self, report: &AcceptedReport, now: Millis) {
        if let Some(agents) = &mut self.agents {
            agents.report(report, now);
        }
    }

    /// Recomputes the agents' weights if a report, a change or a second
    /// passed since the last time, and publishes the table if a weight in
    /// force changed. Call it on every turn of the main loop: one
    /// publication covers every report of the turn.
    pub fn follow_agents(&mut self, now: Millis, hooks: &mut dyn DataPlaneHooks) {
        if !self.agents.as_ref().is_some_and(|a| a.due(now)) {
            return;
        }
        if self.apply_agents(now) {
            self.publish_kept(hooks, "agents: the weights in force");
        }
    }

    /// The agents' weights applied to the table; true when it changed.
    fn apply_agents(&mut self, now: Millis) -> bool {
        match &mut self.agents {
            Some(agents) => agents.apply(&mut self.table, &self.health, &self.checker_down, now),
            None => false,
        }
    }

    /// Publishes a change that the workers must follow even when the
    /// kernel's filters cannot (a health transition, a weight from an
    /// agent): a failed map update leaves the old entries in place.
    fn publish_kept(&mut self, hooks: &mut dyn DataPlaneHooks, what: &str) {
        let snapshot = self.table.snapshot();
        if let Err(e) = hooks.published(&snapshot) {
            log::error!(
                "{what}: the workers follow the change, but {e}; the next successful change brings the filters up to date"
            );
        }
        self.install(snapshot);
    }

    /// Starts what the workers' first state depends on: the health checks
    /// `config` asks for, reporting to `sink`, with the real servers that
    /// start down (`alpha`, `check = "off"`) taken out of rotation, and the
    /// passive reports wired to the director. That state is published
    /// before this returns, so workers started afterwards never schedule a
    /// server that starts down ([`crate::run::start`] keeps that order).
    /// `config` is remembered as the running one for reloads.
    ///
    /// # Errors
    /// The checker's thread could not start, or the kernel's side refused
    /// the first state.
    pub fn start(
        &mut self,
        config: &ClusterConfig,
        sink: std::sync::Arc<dyn crate::health::HealthSink>,
        hooks: &mut dyn DataPlaneHooks,
    ) -> Result<(), StartError> {
        self.running = Some(config.clone());
        self.health.configure(config);
        let checker = crate::health::HealthChecker::start(crate::health::targets(config), sink)
            .map_err(StartError::HealthChecker)?;
        let mut changed = false;
        for status in checker.status() {
            if !status.up {
                self.checker_down.insert(status.key);
                log::info!(
                    "health: {} {} starts down ({})",
                    status.key.service,
                    status.key.server,
                    status.last_reason
                );
                changed |= self.health.down(&mut self.table, &status.key);
            }
        }
        // Passive checks: the workers report what they see of NAT real
        // servers' answers to SYNs.
        let reporter = Arc::new(crate::control::health::PassiveReporter::new(
            checker.passive_handle(),
        ));
        reporter.follow(&self.director.state());
        self.director
            .set_passive_sink(Arc::clone(&reporter) as Arc<dyn crate::pipeline::PassiveSink>);
        self.passive = Some(reporter);
        self.checker = Some(checker);
        if let Some(agents) = &mut self.agents {
            agents.configure(config);
        }
        if changed {
            // Nothing to roll back to: a director that cannot redirect its
            // first state must not start.
            let snapshot = self.table.snapshot();
            hooks.published(&snapshot).map_err(StartError::Publish)?;
            self.install(snapshot);
        }
        Ok(())
    }

    /// The health checker's view of every target (empty without checks).
    #[must_use]
    pub fn health_status(&self) -> Vec<crate::health::TargetStatus> {
        self.checker
            .as_ref()
            .map(crate::health::HealthChecker::status)
            .unwrap_or_default()
    }

    /// A real server went up or down: in or out of rotation.
    pub fn health_transition(
        &mut self,
        target: &crate::health::TargetKey,
        up: bool,
        reason: &str,
        now: Millis,
        hooks: &mut dyn DataPlaneHooks,
    ) {
        let changed = if up {
            self.checker_down.remove(target);
            self.health.up(&mut self.table, target)
        } else {
            self.checker_down.insert(*target);
            self.health.down(&mut self.table, target)
        };
        if changed {
            log::info!(
                "health: {} {} {} rotation ({reason})",
                target.service,
                target.server,
                if up { "back in" } else { "out of" }
            );
        }
        // A server back from its health check gets the weight its agent
        // calls for (or leaves the maintenance its agent still asks).
        let agents_changed = up && self.agents.is_some() && self.apply_agents(now);
        if changed || agents_changed {
            // Unlike an operator's change, a health transition is kept
            // when the filters cannot follow: the workers must stop
            // sending to a dead server whatever the kernel's maps say, and
            // a failed map update leaves the old entries in place (the
            // director still receives what it did).
            self.publish_kept(
                hooks,
                &format!("health: {} {}", target.service, target.server),
            );
        }
    }

    /// The table.
    #[must_use]
    pub fn table(&self) -> &ServiceTable {
        &self.table
    }

    /// The director.
    #[must_use]
    pub fn director(&self) -> &Arc<Director> {
        &self.director
    }

    /// The configuration the running state came from: the one given to
    /// [`ControlPlane::start`], then each reload's that was applied.
    #[must_use]
    pub fn running_config(&self) -> Option<&ClusterConfig> {
        self.running.as_ref()
    }

    /// Gives the workers (and the passive reporter) `snapshot`.
    fn install(&self, snapshot: Snapshot) {
        if let Some(reporter) = &self.passive {
            reporter.follow(&snapshot);
        }
        self.director.publish(snapshot);
    }

    /// Publishes the table as it is now, or, when the kernel's side cannot
    /// follow, puts the table back to `before` and the filters back to the
    /// running state: a change applies whole or not at all. The workers
    /// see the new state only once the filters say the same.
    fn publish_or_roll_back(
        &mut self,
        before: ServiceTable,
        hooks: &mut dyn DataPlaneHooks,
    ) -> Result<(), PublishError> {
        let snapshot = self.table.snapshot();
        match hooks.published(&snapshot) {
            Ok(()) => {
                self.install(snapshot);
                Ok(())
            }
            Err(failed) => {
                self.table = before;
                let running = self.director.state();
                match hooks.published(&running) {
                    Ok(()) => Err(PublishError::RolledBack(failed)),
                    Err(restore) => Err(PublishError::RestoreFailed {
                        failed: Box::new(failed),
                        restore: Box::new(restore),
                    }),
                }
            }
        }
    }

    /// Handles one request: a change is validated, applied whole and
    /// published, or refused with nothing changed. `reload` reads the
    /// configuration again for [`Request::Reload`] (the director's reads
    /// the file and fails with a [`LoadError`]); why it failed is the
    /// refusal's message.
    pub fn handle<E: std::fmt::Display>(
        &mut self,
        request: &Request,
        counters: &WorkerCounters,
        now: Millis,
        reload: &mut dyn FnMut() -> Result<ClusterConfig, E>,
        hooks: &mut dyn DataPlaneHooks,
    ) -> Reply {
        match request {
            Request::List => Reply::Table(self.table_view(counters)),
            // Walked by the socket's client thread (`control::listing`),
            // so that a long listing never holds up this thread.
            Request::Connections => Reply::Error(ControlError::new(
                ErrorKind::Invalid,
                "connection listings are streamed by the control socket, not answered by the control thread",
            )),
            Request::Timeouts => Reply::Timeouts(self.table.timeout_set()),
            Request::Load => Reply::Load(self.load_view(now)),
            // The daemon answers it from its parts' status (`daemon::root`);
            // a plane alone runs no daemon.
            Request::Daemons => Reply::Daemons(DaemonsView::default()),
            Request::StartDaemon(_) | Request::StopDaemon { .. } => {
                Reply::Error(ControlError::new(
                    ErrorKind::Invalid,
                    "this director runs no connection sync: it needs [ha] with a key, or [sync], in its config file",
                ))
            }
            Request::Zero { service } => match self.zero(*service, counters) {
                Ok(()) => Reply::Done,
                Err(e) => Reply::Error(e),
            },
            Request::Reload => match reload() {
                Ok(config) => match self.reload(&config, now, hooks) {
                    Ok(()) => {
                        log::info!("control: configuration reloaded");
                        Reply::Done
                    }
                    Err(e) => {
                        log::error!("control: reload refused, the running state is kept: {e}");
                        Reply::Error(e.into())
                    }
                },
                Err(e) => Reply::Error(ControlError::new(ErrorKind::Reload, e.to_string())),
            },
            change => {
                let (before, agents_before) = (self.table.clone(), self.agents.clone());
                match self.table.apply(change, now) {
                    Ok(()) => {
                        // The operator's weights are the configured ones;
                        // the agents' weights in force follow from them.
                        if let Some(agents) = &mut self.agents {
                            agents.note_request(change);
                        }
                        self.apply_agents(now);
                        match self.publish_or_roll_back(before, hooks) {
                            Ok(()) => {
                                log::info!("control: applied {}", describe(change));
                                Reply::Done
                            }
                            Err(e) => {
                                self.restore_agents(agents_before);
                                log::error!("control: failed {}: {e}", describe(change));
                                Reply::Error(e.into())
                            }
                        }
                    }
                    Err(e) => {
                        log::warn!("control: refused {}: {e}", describe(change));
                        Reply::Error(e)
                    }
                }
            }
        }
    }

    /// Applies a re-read config file: only what differs changes.
    ///
    /// # Errors
    /// The file changes keys only a restart applies (each is named), the
    /// table refuses what it describes, or the kernel's side cannot follow;
    /// in every case nothing changed.
    pub fn reload(
        &mut self,
        config: &ClusterConfig,
        now: Millis,
        hooks: &mut dyn DataPlaneHooks,
    ) -> Result<(), ReloadError> {
        if let Some(running) = &self.running {
            let keys = crate::control::reload::restart_keys(running, config);
            if !keys.is_empty() {
                return Err(ReloadError::NeedsRestart(keys));
            }
        }
        let (table_before, health_before, agents_before) =
            (self.table.clone(), self.health.clone(), self.agents.clone());
        self.table.reconcile(config, now)?;
        let targets = crate::health::targets(config);
        let keys: Vec<crate::health::TargetKey> = targets.iter().map(|t| t.key).collect();
        self.health.configure(config);
        self.health.reapply(&mut self.table, &keys);
        self.checker_down.retain(|k| keys.contains(k));
        // The agents keep the feedback of the servers that remain: the
        // file's weights become the configured ones, the policy follows.
        if let Some(agents) = &mut self.agents {
            agents.configure(config);
            agents.reapply(&mut self.table);
        }
        self.apply_agents(now);
        if let Err(e) = self.publish_or_roll_back(table_before, hooks) {
            self.health = health_before;
            self.restore_agents(agents_before);
            return Err(e.into());
        }
        // The receiver checks with the file's keys and skew once the
        // change holds.
        if let (Some(agents), Some(file)) = (&self.agents, &config.agents) {
            match file.read_keys() {
                Ok(keys) => agents.shared().set_settings(ReceiverSettings {
                    keys,
                    max_skew_ms: file.max_skew,
                }),
                Err(e) => log::error!("agents: the keys are kept as they were: {e}"),
            }
        }
        // The checker follows the file only once the change holds.
        if let Some(checker) = &self.checker {
            checker.update(targets);
        }
        if self.running.is_some() {
            self.running = Some(config.clone());
        }
        Ok(())
    }

    /// Puts the agents' state back after a change that was rolled back
    /// (and the receiver's list of servers with it).
    fn restore_agents(&mut self, before: Option<AgentWeights>) {
        self.agents = before;
        if let Some(agents) = &mut self.agents {
            agents.republish_servers();
        }
    }

    /// `-Z`: counters of one service (or all) start again from zero.
    fn zero(
        &mut self,
        service: Option<crate::control::proto::ServiceId>,
        counters: &WorkerCounters,
    ) -> Result<(), ControlError> {
        let slot = match service {
            Some(id) => Some(self.table.slot(id).ok_or_else(|| {
                ControlError::new(ErrorKind::NoSuchService, format!("{id}: No such service"))
            })?),
            None => None,
        };
        let snapshot = self.table.snapshot();
        self.grow(snapshot.dests.len(), snapshot.services.len());
        for (d, dest) in snapshot.dests.iter().enumerate() {
            if slot.is_none_or(|s| s == dest.service) {
                let now = counters
                    .dests
                    .get(d as DestIndex)
                    .copied()
                    .unwrap_or_default();
                self.zero[d] = now;
                self.dest_rates[d].reset(now);
            }
        }
        for (s, _) in snapshot.services.iter().enumerate() {
            if slot.is_none_or(|x| x as usize == s) {
                let total = service_total(&snapshot, s as u32, counters);
                self.service_rates[s].reset(total);
            }
        }
        Ok(())
    }

    fn grow(&mut self, dests: usize, services: usize) {
        if self.zero.len() < dests {
            self.zero.resize(dests, TrafficCounters::default());
            self.dest_rates.resize(dests, Estimate::default());
        }
        if self.service_rates.len() < services {
            self.service_rates.resize(services, Estimate::default());
        }
    }

    /// Feeds the rate estimators; call it often (it samples every two
    /// seconds, as IPVS).
    pub fn tick(&mut self, counters: &WorkerCounters, now: Millis) {
        let first = match self.last_sample {
            Some(at) if now < at + PERIOD_MS => return,
            Some(_) => false,
            None => true,
        };
        self.last_sample = Some(now);
        let snapshot = self.director.state();
        let (old_dests, old_services) = (self.dest_rates.len(), self.service_rates.len());
        self.grow(snapshot.dests.len(), snapshot.services.len());
        for d in 0..snapshot.dests.len() {
            let c = counters
                .dests
                .get(d as DestIndex)
                .copied()
                .unwrap_or_default();
            self.dest_rates[d].sample(c, first || d >= old_dests);
        }
        for s in 0..snapshot.services.len() {
            let total = service_total(&snapshot, s as u32, counters);
            self.service_rates[s].sample(total, first || s >= old_services);
        }
    }

    /// The configured real servers with their weights and agents, as
    /// `-L --load` shows them at `now`.
    #[must_use]
    pub fn load_view(&self, now: Millis) -> LoadView {
        let snapshot = self.director.state();
        let mut services = Vec::new();
        for (slot, vs) in snapshot.live_services() {
            let id = vs.params.id;
            let mut servers: Vec<LoadServer> = snapshot
                .listed_servers(slot)
                .map(|(_, rs)| (rs.addr(), rs.port(), Some(rs.weight())))
                .chain(self.agents.iter().flat_map(|a| {
                    // Configured, but out of the table (health or maint).
                    a.configured_servers(id)
                        .filter(|k| {
                            self.table
                                .server(id, k.server.ip(), k.server.port())
                                .is_none()
                        })
                        .map(|k| (k.server.ip(), k.server.port(), None))
                }))
                .map(|(addr, port, weight)| {
                    let key = crate::health::TargetKey {
                        service: id,
                        server: std::net::SocketAddr::new(addr, port),
                    };
                    let agents = self.agents.as_ref();
                    LoadServer {
                        addr,
                        port,
                        configured_weight: agents
                            .and_then(|a| a.configured(&key))
                            .or(weight)
                            .unwrap_or(0),
                        weight,
                        agent: agents.and_then(|a| a.view(addr, now)),
                    }
                })
                .collect();
            servers.sort_by_key(|s| (s.addr, s.port));
            services.push(LoadService { id, servers });
        }
        LoadView {
            agents: self.agents.is_some(),
            services,
        }
    }

    /// The table as `-L` shows it.
    #[must_use]
    pub fn table_view(&self, counters: &WorkerCounters) -> TableView {
        let snapshot = self.director.state();
        let dest_stats = |d: usize| {
            let c = counters
                .dests
                .get(d as DestIndex)
                .copied()
                .unwrap_or_default();
            minus(c, self.zero.get(d).copied().unwrap_or_default())
        };
        let mut services = Vec::new();
        for (slot, vs) in snapshot.live_services() {
            let mut servers = Vec::new();
            for (d, rs) in snapshot.listed_servers(slot) {
                let d = d as usize;
                servers.push(ServerState {
                    params: crate::control::table::server_params_in(vs, &snapshot.dests, rs),
                    active: rs.active_conns(),
                    inactive: rs.inactive_conns(),
                    persistent: rs.persistent_conns(),
                    stats: stats_view(dest_stats(d)),
                    rates: self
                        .dest_rates
                        .get(d)
                        .map(Estimate::rates)
                        .unwrap_or_default(),
                    configured_weight: self.agents.as_ref().and_then(|a| {
                        a.agents().contains_key(&rs.addr()).then_some(())?;
                        a.configured(&crate::health::TargetKey {
                            service: vs.params.id,
                            server: std::net::SocketAddr::new(rs.addr(), rs.port()),
                        })
                    }),
                });
            }
            let mut total = TrafficCounters::default();
            for (d, dest) in snapshot.dests.iter().enumerate() {
                if dest.service == slot {
                    total += dest_stats(d);
                }
            }
            services.push(ServiceState {
                params: vs.params.clone(),
                servers,
                stats: stats_view(total),
                rates: self
                    .service_rates
                    .get(slot as usize)
                    .map(Estimate::rates)
                    .unwrap_or_default(),
            });
        }
        TableView {
            conn_capacity: self.capacity,
            services,
        }
    }
}

/// A service's counters: every destination it ever had.
fn service_total(snapshot: &Snapshot, slot: u32, counters: &WorkerCounters) -> TrafficCounters {
    let mut total = TrafficCounters::default();
    for (d, dest) in snapshot.dests.iter().enumerate() {
        if dest.service == slot {
            total += counters
                .dests
                .get(d as DestIndex)
                .copied()
                .unwrap_or_default();
        }
    }
    total
}

fn addr_port(a: IpAddr, port: u16) -> String {
    match a {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// A change in a line, for the log.
#[must_use]
pub fn describe(request: &Request) -> String {
    match request {
        Request::AddService(p) => format!("add service {} ({})", p.id, p.scheduler),
        Request::EditService(p) => format!("edit service {} ({})", p.id, p.scheduler),
        Request::DeleteService { id } => format!("delete service {id}"),
        Request::Clear => "clear every service".to_owned(),
        Request::AddServer { service, server } => format!(
            "add real server {} weight {} to {service}",
            addr_port(server.addr, server.port),
            server.weight
        ),
        Request::EditServer { service, server } => format!(
            "edit real server {} of {service}: weight {}",
            addr_port(server.addr, server.port),
            server.weight
        ),
        Request::DeleteServer {
            service,
            addr,
            port,
        } => format!(
            "delete real server {} from {service}",
            addr_port(*addr, *port)
        ),
        Request::Zero { .. } => "zero counters".to_owned(),
        Request::SetTimeouts(t) => format!(
            "set timeouts tcp {} tcpfin {} udp {}",
            t.tcp, t.tcp_fin, t.udp
        ),
        Request::Batch { requests } => format!("a batch of {} changes", requests.len()),
        Request::List => "list".to_owned(),
        Request::Connections => "list connections".to_owned(),
        Request::Timeouts => "list timeouts".to_owned(),
        Request::Load => "list load".to_owned(),
        Request::Daemons => "list daemons".to_owned(),
        Request::StartDaemon(p) => format!("start the {:?} sync daemon", p.role).to_lowercase(),
        Request::StopDaemon { role } => format!("stop the {role:?} sync daemon").to_lowercase(),
        Request::Reload => "reload".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::control::proto::{ForwardMethod, Protocol, ServerParams, ServiceId, ServiceParams};
    use crate::pipeline::Neighbours;
    use crate::test_support::two_interfaces;

    const CONFIG: &str = concat!(
        r#"
[conn_table]
capacity = 4096
"#,
        two_interfaces!(),
        r#"
[[services]]
proto = "tcp"
vip = "203.0.113.10"
port = 80
scheduler = "wlc"
[[services.real_servers]]
address = "192.0.2.11"
method = "nat"
"#
    );

    /// Hooks that refuse any state that serves `refused`, and remember
    /// the VIPs of the last state they accepted (what the kernel's maps
    /// say).
    struct Refusing {
        refused: IpAddr,
        /// Also refuse putting the running state back.
        refuse_restore: bool,
        installed: Vec<IpAddr>,
        calls: usize,
    }

    impl Refusing {
        fn new(refused: &str) -> Self {
            Self {
                refused: refused.parse().unwrap(),
                refuse_restore: false,
                installed: Vec::new(),
                calls: 0,
            }
        }
    }

    fn vips(snapshot: &Snapshot) -> Vec<IpAddr> {
        snapshot.live_services().map(|(_, s)| s.vip).collect()
    }

    impl DataPlaneHooks for Refusing {
        fn published(&mut self, snapshot: &Snapshot) -> Result<(), HookError> {
            self.calls += 1;
            let wanted = vips(snapshot);
            if wanted.contains(&self.refused) || (self.refuse_restore && self.calls > 1) {
                return Err(HookError::XdpMaps(IoError::Other(
                    "services map: No space left on device".to_owned(),
                )));
            }
            self.installed = wanted;
            Ok(())
        }
    }

    fn plane(text: &str) -> ControlPlane {
        let config = ClusterConfig::parse("t.toml", text).unwrap();
        let table = ServiceTable::from_config(&config, 1).unwrap();
        let director = Arc::new(Director::with_snapshot(
            table.snapshot(),
            &config,
            9,
            Arc::new(Neighbours::new()),
        ));
        ControlPlane::new(table, director, 4096)
    }

    fn add_service(vip: &str) -> Request {
        Request::AddService(ServiceParams {
            id: ServiceId {
                proto: Protocol::Tcp,
                vip: vip.parse().unwrap(),
                port: 80,
            },
            scheduler: "rr".to_owned(),
            flags: 0,
            persistence: None,
            sloppy: false,
            fallback: None,
        })
    }

    /// Counters of no traffic, sized for the running state.
    fn counters(p: &ControlPlane) -> WorkerCounters {
        p.director().worker(0).counters
    }

    fn handle(p: &mut ControlPlane, request: &Request, hooks: &mut dyn DataPlaneHooks) -> Reply {
        let counters = counters(p);
        let mut reload = || Err(LoadError::NoFile);
        p.handle(request, &counters, 1, &mut reload, hooks)
    }

    #[test]
    fn a_change_the_filters_cannot_follow_is_rolled_back_and_reported() {
        let mut p = plane(CONFIG);
        let mut hooks = Refusing::new("203.0.113.20");
        let before = p.table_view(&counters(&p));
        let reply = handle(&mut p, &add_service("203.0.113.20"), &mut hooks);
        let Reply::Error(e) = reply else {
            panic!("a failed map update was answered {reply:?}");
        };
        assert_eq!(e.kind, ErrorKind::DataPlane);
        assert!(e.message.contains("No space left on device"), "{e}");
        assert!(e.message.contains("rolled back"), "{e}");
        // The table, the workers' state and the maps are as before.
        assert_eq!(p.table_view(&counters(&p)), before);
        assert!(
            p.table()
                .slot(match &add_service("203.0.113.20") {
                    Request::AddService(s) => s.id,
                    _ => unreachable!(),
                })
                .is_none()
        );
        let running = vips(&p.director().state());
        assert_eq!(running, ["203.0.113.10".parse::<IpAddr>().unwrap()]);
        assert_eq!(hooks.installed, running, "the maps were not put back");
        // The next change the filters can follow goes through.
        let reply = handle(&mut p, &add_service("203.0.113.30"), &mut hooks);
        assert_eq!(reply, Reply::Done);
        assert_eq!(vips(&p.director().state()).len(), 2);
    }

    #[test]
    fn a_failed_restore_says_the_filters_may_redirect_more() {
        let mut p = plane(CONFIG);
        let mut hooks = Refusing::new("203.0.113.20");
        hooks.refuse_restore = true;
        let Reply::Error(e) = handle(&mut p, &add_service("203.0.113.20"), &mut hooks) else {
            panic!("a failed map update was accepted");
        };
        assert_eq!(e.kind, ErrorKind::DataPlane);
        assert!(
            e.message.contains("restoring the filters failed too"),
            "{e}"
        );
        assert_eq!(vips(&p.director().state()).len(), 1);
    }

    #[test]
    fn a_reload_the_filters_cannot_follow_changes_nothing() {
        let mut p = plane(CONFIG);
        let mut hooks = Refusing::new("203.0.113.20");
        let file = ClusterConfig::parse("t.toml", &CONFIG.replace("203.0.113.10", "203.0.113.20"))
            .unwrap();
        let before = p.table_view(&counters(&p));
        let e = p.reload(&file, 1, &mut hooks).unwrap_err();
        assert!(matches!(e, ReloadError::DataPlane(_)), "{e:?}");
        assert_eq!(p.table_view(&counters(&p)), before);
        assert_eq!(
            vips(&p.director().state()),
            ["203.0.113.10".parse::<IpAddr>().unwrap()]
        );
    }

    struct NoSink;
    impl crate::health::HealthSink for NoSink {
        fn transition(&self, _: &crate::health::TargetKey, _: bool, _: &crate::health::Reason) {}
    }

    #[test]
    fn a_reload_that_needs_a_restart_is_refused_naming_each_key() {
        let config = ClusterConfig::parse("t.toml", CONFIG).unwrap();
        let mut p = plane(CONFIG);
        p.start(&config, Arc::new(NoSink), &mut NoHooks).unwrap();
        // A new real server (which a reload applies) beside two keys it
        // cannot apply: nothing of it may be applied.
        let file = ClusterConfig::parse(
            "t.toml",
            &format!(
                "{}[[services.real_servers]]\naddress = \"192.0.2.12\"\nmethod = \"nat\"\n",
                CONFIG
                    .replace("capacity = 4096", "capacity = 8192")
                    .replace(
                        "[conn_table]",
                        "[control]\nmetrics_listen = \"127.0.0.1:9531\"\n\n[conn_table]"
                    )
            ),
        )
        .unwrap();
        let before = p.table_view(&counters(&p));
        let e = p.reload(&file, 1, &mut NoHooks).unwrap_err();
        assert!(
            matches!(e, ReloadError::NeedsRestart(ref k) if k.len() == 2),
            "{e:?}"
        );
        let e = ControlError::from(e);
        assert_eq!(e.kind, ErrorKind::Reload);
        for said in [
            "conn_table.capacity (running 4096, file 8192)",
            "control.metrics_listen (running off, file 127.0.0.1:9531)",
            "restart the director",
        ] {
            assert!(e.message.contains(said), "{said:?} not in: {e}");
        }
        assert_eq!(p.table_view(&counters(&p)), before);
        // The same file without those keys applies, and becomes the
        // running one.
        let applicable = ClusterConfig::parse(
            "t.toml",
            &format!(
                "{CONFIG}[[services.real_servers]]\naddress = \"192.0.2.12\"\nmethod = \"nat\"\n"
            ),
        )
        .unwrap();
        p.reload(&applicable, 2, &mut NoHooks).unwrap();
        assert_eq!(p.table_view(&counters(&p)).services[0].servers.len(), 2);
        assert_eq!(p.running_config(), Some(&applicable));
    }

    #[test]
    fn a_deleted_server_leaves_the_listing_and_the_stats_file() {
        let mut p = plane(&format!(
            "{CONFIG}[[services.real_servers]]\naddress = \"192.0.2.12\"\nmethod = \"nat\"\n"
        ));
        let service = ServiceId {
            proto: Protocol::Tcp,
            vip: "203.0.113.10".parse().unwrap(),
            port: 80,
        };
        let gone: IpAddr = "192.0.2.12".parse().unwrap();
        let delete = Request::DeleteServer {
            service,
            addr: gone,
            port: 80,
        };
        assert_eq!(handle(&mut p, &delete, &mut NoHooks), Reply::Done);
        let counters = counters(&p);
        let listed: Vec<IpAddr> = p.table_view(&counters).services[0]
            .servers
            .iter()
            .map(|s| s.params.addr)
            .collect();
        let stats =
            crate::run::stats_json(p.director(), &counters, &crate::io::IoStats::default(), 1);
        let in_file: Vec<IpAddr> = stats["services"][0]["real_servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["address"].as_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(listed, ["192.0.2.11".parse::<IpAddr>().unwrap()]);
        assert_eq!(in_file, listed, "the stats file and -L --stats disagree");
        // Back again: listed by both, with the same numbers.
        let add = Request::AddServer {
            service,
            server: ServerParams {
                addr: gone,
                port: 80,
                method: ForwardMethod::Nat,
                weight: 1,
                u_threshold: 0,
                l_threshold: 0,
            },
        };
        assert_eq!(handle(&mut p, &add, &mut NoHooks), Reply::Done);
        let stats =
            crate::run::stats_json(p.director(), &counters, &crate::io::IoStats::default(), 1);
        assert_eq!(
            stats["services"][0]["real_servers"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(p.table_view(&counters).services[0].servers.len(), 2);
    }

    #[test]
    fn agents_change_the_weight_in_force_the_listing_keeps_the_configured_and_a_reload_the_feedback()
     {
        use crate::control::agents::{AcceptedReport, AgentShared, ReceiverSettings};
        use xvs_packet::load_report::{AgentState, Identity, LoadFigures};
        let mut p = plane(CONFIG);
        p.with_agents(Arc::new(AgentShared::new(ReceiverSettings {
            keys: Vec::new(),
            max_skew_ms: 5_000,
        })));
        let config = ClusterConfig::parse("t.toml", CONFIG).unwrap();
        p.start(&config, Arc::new(NoSink), &mut NoHooks).unwrap();
        let busy = AcceptedReport {
            identity: Identity::new("rs1").unwrap(),
            address: "192.0.2.11".parse().unwrap(),
            state: AgentState::Ready,
            load: LoadFigures {
                cpu_permille: Some(1000),
                ..LoadFigures::default()
            },
        };
        // Weight 1 cannot fall: configure 20 as an operator would.
        let edit = Request::EditServer {
            service: ServiceId {
                proto: Protocol::Tcp,
                vip: "203.0.113.10".parse().unwrap(),
                port: 80,
            },
            server: ServerParams {
                addr: "192.0.2.11".parse().unwrap(),
                port: 80,
                method: ForwardMethod::Nat,
                weight: 20,
                u_threshold: 0,
                l_threshold: 0,
            },
        };
        assert_eq!(handle(&mut p, &edit, &mut NoHooks), Reply::Done);
        let published = p.director().state();
        let mut now = 1_000;
        for _ in 0..30 {
            now += 1000;
            p.agent_report(&busy, now);
            p.follow_agents(now, &mut NoHooks);
        }
        assert!(!Arc::ptr_eq(&published, &p.director().state()), "published");
        let listed = |p: &ControlPlane| {
            let s = &p.table_view(&counters(p)).services[0].servers[0];
            (s.params.weight, s.configured_weight)
        };
        assert_eq!(listed(&p), (10, Some(20)), "in force, configured");
        // Nothing new: nothing published.
        let published = p.director().state();
        p.follow_agents(now + 100, &mut NoHooks);
        assert!(Arc::ptr_eq(&published, &p.director().state()));
        // A reload keeps the feedback of the servers that remain; the
        // file's weight (1) is the configured one from then on.
        p.reload(&config, now, &mut NoHooks).unwrap();
        assert_eq!(listed(&p), (1, Some(1)));
        let with_weight = ClusterConfig::parse(
            "t.toml",
            &CONFIG.replace("method = \"nat\"", "method = \"nat\"\nweight = 40"),
        )
        .unwrap();
        p.reload(&with_weight, now, &mut NoHooks).unwrap();
        assert_eq!(listed(&p), (20, Some(40)), "the capacity kept: half");
    }
}
