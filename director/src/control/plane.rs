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

use crate::config::ClusterConfig;
use crate::conn::Millis;
use crate::control::estimator::{Estimate, PERIOD_MS};
use crate::control::proto::{
    ConnView, ControlError, ErrorKind, Proto, Reply, Request, ServerState, ServiceState, StatsView,
    TableView,
};
use crate::control::table::ServiceTable;
use crate::pipeline::{DestIndex, Director, Snapshot, TrafficCounters, WorkerCounters};
use xvs_packet::IpProtocol;

/// What the control socket's and the metrics endpoint's threads ask the
/// main thread.
#[derive(Debug)]
pub enum ControlMsg {
    /// A request from a client, and where its reply goes.
    Request(Request, Sender<Reply>),
    /// A scrape: the metrics text goes back.
    Metrics(Sender<String>),
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
    /// `snapshot` was just published.
    ///
    /// # Errors
    /// A filter could not be updated (the message says which and why).
    fn published(&mut self, snapshot: &Snapshot) -> Result<(), String>;
}

/// Hooks that do nothing (tests, replay).
#[derive(Debug, Default)]
pub struct NoHooks;

impl DataPlaneHooks for NoHooks {
    fn published(&mut self, _snapshot: &Snapshot) -> Result<(), String> {
        Ok(())
    }
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
        }
    }

    /// Starts the health checks `config` asks for, reporting to `sink`;
    /// real servers that start down (`alpha`, `check = "off"`) are taken
    /// out of rotation at once.
    ///
    /// # Errors
    /// The checker's thread could not start.
    pub fn start_health(
        &mut self,
        config: &ClusterConfig,
        sink: std::sync::Arc<dyn crate::health::HealthSink>,
        hooks: &mut dyn DataPlaneHooks,
    ) -> Result<(), String> {
        self.health.configure(config);
        let checker = crate::health::HealthChecker::start(crate::health::targets(config), sink)
            .map_err(|e| format!("starting the health checker: {e}"))?;
        let mut changed = false;
        for status in checker.status() {
            if !status.up {
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
        if changed {
            self.publish(hooks);
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
        hooks: &mut dyn DataPlaneHooks,
    ) {
        let changed = if up {
            self.health.up(&mut self.table, target)
        } else {
            self.health.down(&mut self.table, target)
        };
        if changed {
            log::info!(
                "health: {} {} {} rotation ({reason})",
                target.service,
                target.server,
                if up { "back in" } else { "out of" }
            );
            self.publish(hooks);
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

    fn publish(&mut self, hooks: &mut dyn DataPlaneHooks) {
        let snapshot = self.table.snapshot();
        if let Some(reporter) = &self.passive {
            reporter.follow(&snapshot);
        }
        let hook_result = hooks.published(&snapshot);
        self.director.publish(snapshot);
        if let Err(e) = hook_result {
            log::error!("after a change: {e}");
        }
    }

    /// Handles one request: a change is validated, applied whole and
    /// published, or refused with nothing changed.
    pub fn handle(
        &mut self,
        request: &Request,
        counters: &WorkerCounters,
        now: Millis,
        reload: &mut dyn FnMut() -> Result<ClusterConfig, String>,
        hooks: &mut dyn DataPlaneHooks,
    ) -> Reply {
        match request {
            Request::List => Reply::Table(self.table_view(counters)),
            Request::Connections => Reply::Connections {
                entries: self.connections(now),
            },
            Request::Timeouts => Reply::Timeouts(self.table.timeout_set()),
            Request::Zero { service } => match self.zero(*service, counters) {
                Ok(()) => Reply::Done,
                Err(e) => Reply::Error(e),
            },
            Request::Reload => match reload() {
                Ok(config) => match self.reload(&config, now, hooks) {
                    Ok(()) => Reply::Done,
                    Err(e) => Reply::Error(e),
                },
                Err(message) => Reply::Error(ControlError::new(ErrorKind::Reload, message)),
            },
            change => match self.table.apply(change, now) {
                Ok(()) => {
                    log::info!("control: applied {}", describe(change));
                    self.publish(hooks);
                    Reply::Done
                }
                Err(e) => {
                    log::warn!("control: refused {}: {e}", describe(change));
                    Reply::Error(e)
                }
            },
        }
    }

    /// Applies a re-read config file: only what differs changes.
    ///
    /// # Errors
    /// The file describes a state the table refuses; nothing changed.
    pub fn reload(
        &mut self,
        config: &ClusterConfig,
        now: Millis,
        hooks: &mut dyn DataPlaneHooks,
    ) -> Result<(), ControlError> {
        self.table.reconcile(config, now)?;
        let targets = crate::health::targets(config);
        let keys: Vec<crate::health::TargetKey> = targets.iter().map(|t| t.key).collect();
        self.health.configure(config);
        if let Some(checker) = &self.checker {
            checker.update(targets);
        }
        self.health.reapply(&mut self.table, &keys);
        self.publish(hooks);
        Ok(())
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
            for rs in vs.sched.servers().iter() {
                let d = vs.dest_of[rs.id().index()] as usize;
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

    /// Every connection entry, as `-L -c` shows them.
    #[must_use]
    pub fn connections(&self, now: Millis) -> Vec<ConnView> {
        let mut out = Vec::new();
        self.director.table().for_each(|c| {
            let proto = match c.proto {
                IpProtocol::Tcp => Proto::Tcp,
                IpProtocol::Udp => Proto::Udp,
                _ => return,
            };
            let state = match c.proto {
                IpProtocol::Tcp => c.tcp_state.to_string(),
                _ => "UDP".to_owned(),
            };
            out.push(ConnView {
                proto,
                client: (c.client, c.cport),
                vip: (c.vip, c.vport),
                server: (c.real_server, c.rport),
                state,
                expires_secs: u32::try_from(c.deadline.saturating_sub(now) / 1000)
                    .unwrap_or(u32::MAX),
            });
        });
        out
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
        Request::Reload => "reload".to_owned(),
    }
}
