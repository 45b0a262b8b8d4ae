//! The composition root: [`Daemon`] builds the director from its options,
//! starts the data plane and the parts in order, runs the main loop, and
//! stops everything in the reverse order.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, unbounded};
use log::{error, info, warn};
use serde_json::Value;

use crate::config::ClusterConfig;
use crate::control::agents::{AgentShared, ReceiverSettings};
use crate::control::health::ChannelSink;
use crate::control::plane::{ControlMsg, ControlPlane, LoadError};
use crate::control::proto::{DEFAULT_SOCKET, DaemonsView, HaView, Reply, Request, SyncView};
use crate::control::socket::ConnSource;
use crate::control::table::ServiceTable;
use crate::io::KernelCounter;
use crate::io::xdp::XdpCounters;
use crate::kernel;
use crate::pipeline::{Director, Neighbours, Snapshot};
use crate::run::{self, Clock, InterfaceLock, Live, PollMode, WorkerOptions};

use super::Error;
use super::agents::AgentPart;
use super::control_socket::ControlSocketPart;
use super::data_plane::{self, DataPlane, Opened};
use super::ha::{HaInterface, HaPart};
use super::metrics::MetricsPart;
use super::neighbours::NeighbourPart;
use super::options::{ConfigSource, DaemonOptions};
use super::part::{Parts, Running};
use super::stats::StatsPart;
use super::sync::SyncPart;
use crate::config::{SyncConfig, SyncRole};
use crate::sync::shared::SyncShared;
use xvs_packet::sync::AuthKey;

/// How often the main loop turns when no message arrives.
const TURN: Duration = Duration::from_millis(100);

/// The most messages answered in one turn of the main loop.
const BURST: usize = 1024;

/// How often `autoreload` looks at the file.
const FILE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// The running director: its data plane, its control plane, and the parts
/// around them.
#[derive(Debug)]
pub struct Daemon {
    clock: Clock,
    director: Arc<Director>,
    plane: ControlPlane,
    data: DataPlane,
    /// Started before the workers, stopped after them.
    before_workers: Parts,
    /// Started after the workers, stopped before them.
    after_workers: Parts,
    from_threads: Receiver<ControlMsg>,
    xdp_counters: KernelCounter<XdpCounters>,
    reloader: Reloader,
    /// SIGTERM or SIGINT.
    term: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
    /// The state the parts last heard of.
    published: Arc<Snapshot>,
    /// The connection sync's figures (with `[sync]`).
    sync: Option<Arc<SyncShared>>,
    /// Held until the daemon is dropped.
    _locks: Vec<InterfaceLock>,
}

impl Daemon {
    /// Starts the director: the configuration (with what the kernel
    /// knows), the interface locks, the signal handlers, the data plane's
    /// sockets and filters, the parts that come before the workers, the
    /// health checks and the workers, then the parts that come after them.
    ///
    /// # Errors
    /// Whatever could not start; what was started is stopped again (in
    /// reverse order) before this returns.
    pub fn start(options: DaemonOptions) -> Result<Self, Error> {
        let (mut config, file) = match &options.config {
            ConfigSource::File(path) => (ClusterConfig::load(path)?, Some(path.clone())),
            ConfigSource::Given(config) => ((**config).clone(), None),
        };
        // What the configuration leaves out (MACs, MTUs, addresses,
        // gateways) comes from the kernel, as it is in this network
        // namespace.
        let facts = kernel::discover(&mut config)?;
        for (iface, net) in config.drop_floating_addresses() {
            info!(
                "ha: {net} on {iface} floats between the directors: not one of this director's own addresses"
            );
        }
        let clock = Clock::start();
        let seed = {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(std::process::id())
        };
        let table = ServiceTable::from_config(&config, clock.now())?;
        let director = Arc::new(Director::with_snapshot(
            table.snapshot(),
            &config,
            seed,
            Arc::new(Neighbours::new()),
        ));

        let names: Vec<String> = config.interfaces.iter().map(|i| i.name.clone()).collect();
        let locks = names
            .iter()
            .map(|n| InterfaceLock::take(n))
            .collect::<Result<Vec<_>, _>>()?;
        let (term, hup) = signals()?;
        let Opened {
            ios,
            attachments,
            mut hooks,
        } = data_plane::open(
            &names,
            &facts,
            &director.state(),
            &options,
            config.ha.is_some(),
        )?;

        // The XDP program's counters, as last read (a failed read is
        // counted and logged, not hidden).
        let mut xdp_counters = KernelCounter::new("the XDP program's counters");
        // The agents' receiver shares its keys, skew and known servers
        // with the control plane, which keeps them up to date, and its
        // counters and figures with the stats file.
        let agents = match &config.agents {
            Some(a) => {
                let shared = Arc::new(AgentShared::new(ReceiverSettings {
                    keys: a.read_keys()?,
                    max_skew_ms: a.max_skew,
                }));
                Some((a.listen, shared))
            }
            None => None,
        };
        // The HA router's view and counters, shared by the part, the
        // stats file and the metrics.
        let ha_shared = config
            .ha
            .as_ref()
            .map(|_| Arc::new(crate::ha::router::Shared::new(Instant::now())));
        // The connection sync's figures and its "in sync" flag, shared by
        // the part, the HA part (a preemption waits on it), the stats file
        // and the metrics.
        let sync_setup = sync_setup(&config)?;
        let sync_shared = sync_setup
            .as_ref()
            .map(|(s, _)| Arc::new(SyncShared::new(!s.has(SyncRole::Backup))));
        let mut before_workers = Parts::new();
        before_workers.add(Box::new(
            StatsPart::new(
                Arc::clone(&director),
                options.stats_file.clone(),
                options.stats_interval,
                options.log_interval,
                agents
                    .as_ref()
                    .map(|(_, shared)| (Arc::clone(shared), clock)),
                ha_shared.clone(),
            )
            .with_sync(sync_shared.clone()),
        ));
        // Neighbours: learned from the kernel and followed; the real
        // servers' and gateways' are asked for at once.
        before_workers.add(Box::new(NeighbourPart::new(
            Arc::clone(director.neighbours()),
            facts.iter().map(|k| (k.id, k.ifindex)).collect(),
            director.state().next_hops(),
        )));
        before_workers.start(&mut Running {
            live: None,
            program: hooks.program(),
            xdp_counters: &mut xdp_counters,
        })?;

        // What the command line overrides counts as the running config's
        // value, so that a reload compares what is really in use.
        let reloader = Reloader {
            file,
            control_socket: options.control_socket.clone(),
            metrics_listen: options.metrics_listen,
        };
        reloader.override_in(&mut config);

        // The control plane; the health checks and the passive reports
        // start with the workers (`run::start`: before them). Requests
        // from the control socket, the metrics endpoint and the checker
        // reach the main thread through `to_main`.
        let (to_main, from_threads) = unbounded::<ControlMsg>();
        let health_sink = Arc::new(ChannelSink(to_main.clone()));
        let mut plane = ControlPlane::new(table, Arc::clone(&director), config.conn_table.capacity);
        if let Some((_, shared)) = &agents {
            plane.with_agents(Arc::clone(shared));
        }
        let worker_options = WorkerOptions {
            poll: options.poll,
            cpus: options.cpus.clone(),
        };
        let live = match run::start(
            &mut plane,
            &config,
            health_sink,
            &mut hooks,
            clock,
            ios,
            &worker_options,
        ) {
            Ok(live) => live,
            Err(e) => {
                before_workers.stop(&mut Running {
                    live: None,
                    program: hooks.program(),
                    xdp_counters: &mut xdp_counters,
                });
                return Err(e.into());
            }
        };
        for fact in &facts {
            info!("{fact}");
        }
        log_startup(&config, &director, &live, options.poll);

        // The control socket xvsadm talks to, and the metrics.
        let mut after_workers = Parts::new();
        after_workers.add(Box::new(ControlSocketPart::new(
            control_socket_path(options.control_socket.as_ref(), &config),
            to_main.clone(),
            ConnSource {
                director: Arc::clone(&director),
                clock,
            },
        )));
        if let Some(addr) = config.control.metrics_listen {
            after_workers.add(Box::new(MetricsPart::new(addr, to_main.clone())));
        }
        if let Some((listen, shared)) = agents {
            after_workers.add(Box::new(AgentPart::new(listen, shared, to_main.clone())));
        }
        // The interfaces as the sync and HA parts need them.
        let part_interfaces: Vec<HaInterface> = {
            let state = director.state();
            state
                .interfaces
                .iter()
                .filter_map(|iface| {
                    let fact = facts.iter().find(|f| f.id == iface.id)?;
                    Some(HaInterface {
                        name: iface.name.clone(),
                        ifindex: fact.ifindex,
                        role: iface.role,
                        mac: iface.mac.0,
                        addresses: iface.addresses.clone(),
                    })
                })
                .collect()
        };
        // The connection sync before HA: it stops after HA has handed the
        // addresses over, and its "in sync" flag exists when HA starts.
        // It runs with `[sync]`; with `[ha]`'s key alone it is there but
        // idle until `xvsadm --start-daemon`.
        if let (Some((sync, key)), Some(shared)) = (&sync_setup, &sync_shared) {
            plane.with_sync(Arc::clone(shared));
            after_workers.add(Box::new(SyncPart::new(
                sync.clone(),
                config.ha.as_ref().and_then(|h| h.interface.clone()),
                key.clone(),
                part_interfaces.clone(),
                Arc::clone(&director),
                clock,
                ha_shared.clone(),
                Arc::clone(shared),
            )));
        }
        // HA last: it stops first, so the VIPs are released (and the
        // backup told, priority 0) while the workers still forward.
        if let (Some(ha), Some(shared)) = (&config.ha, &ha_shared) {
            let state = director.state();
            let interfaces = part_interfaces;
            plane.with_ha(Arc::clone(shared));
            // With the sync's backup role, a preemption waits for the
            // peer's table (at most transfer_timeout).
            let sync_gate = sync_setup
                .as_ref()
                .map(|(s, _)| s)
                .zip(sync_shared.as_ref())
                .map(|(s, shared)| {
                    (
                        Arc::clone(shared),
                        Duration::from_millis(s.transfer_timeout),
                    )
                });
            after_workers.add(Box::new(
                HaPart::new(ha.clone(), interfaces, &state, Arc::clone(shared))
                    .with_sync_gate(sync_gate),
            ));
        }
        drop(to_main);

        let mut daemon = Self {
            sync: sync_shared,
            clock,
            published: director.state(),
            director,
            plane,
            data: DataPlane::new(live, attachments, hooks),
            before_workers,
            after_workers,
            from_threads,
            xdp_counters,
            reloader,
            term,
            hup,
            _locks: locks,
        };
        let started = daemon.after_workers.start(&mut Running {
            live: Some(&daemon.data.live),
            program: daemon.data.hooks.program(),
            xdp_counters: &mut daemon.xdp_counters,
        });
        if let Err(e) = started {
            daemon.stop();
            return Err(e);
        }
        Ok(daemon)
    }

    /// Serves until SIGTERM or SIGINT, or until a worker fails: control
    /// requests, metrics scrapes and health transitions from the parts'
    /// threads, reloads on SIGHUP and (with `autoreload`) when the file
    /// changes, every part reconfigured after each published change and
    /// ticked on every turn. Then stops everything in order.
    ///
    /// # Errors
    /// A worker stopped on an error.
    pub fn run(mut self) -> Result<(), Error> {
        let mut stamp_seen = self.reloader.file.as_deref().and_then(file_stamp);
        let mut checked_file_at = Instant::now();
        // The first write of the stats file.
        self.tick_parts();
        let mut failure = None;
        while !self.term.load(Ordering::Relaxed) {
            self.handle_message();
            let mut reload_now = self.hup.swap(false, Ordering::Relaxed);
            if reload_now {
                info!("SIGHUP: reloading the configuration");
            }
            // `autoreload` follows the file: a reload may turn it on or off.
            let autoreload = self.reloader.file.is_some()
                && self
                    .plane
                    .running_config()
                    .is_some_and(|c| c.control.autoreload);
            if autoreload && checked_file_at.elapsed() >= FILE_CHECK_EVERY {
                checked_file_at = Instant::now();
                let stamp = self.reloader.file.as_deref().and_then(file_stamp);
                if stamp != stamp_seen {
                    stamp_seen = stamp;
                    info!("the configuration file changed: reloading");
                    reload_now = true;
                }
            }
            if reload_now {
                match self.reloader.load() {
                    Ok(new) => {
                        if self.plane.running_config().is_some_and(|c| c.ha != new.ha) {
                            warn!(
                                "reload: [ha] changed; the election keeps the settings it started with until the director restarts (the services' VIPs follow at once)"
                            );
                        }
                        if self
                            .plane
                            .running_config()
                            .is_some_and(|c| c.sync != new.sync)
                        {
                            warn!(
                                "reload: [sync] changed; the sync keeps the settings it started with until the director restarts"
                            );
                        }
                        match self
                            .plane
                            .reload(&new, self.clock.now(), &mut self.data.hooks)
                        {
                            Ok(()) => info!("configuration reloaded"),
                            Err(e) => error!("reload refused, the running state is kept: {e}"),
                        }
                    }
                    Err(e) => error!("reload refused, the running state is kept: {e}"),
                }
            }
            let (counters, _) = self.data.live.counters();
            self.plane.tick(&counters, self.clock.now());
            self.plane
                .follow_agents(self.clock.now(), &mut self.data.hooks);
            self.follow_published();
            if let Some(f) = self.data.live.failure() {
                failure = Some(f);
                break;
            }
            self.tick_parts();
        }
        self.stop();
        match failure {
            Some(f) => Err(Error::Worker(f)),
            None => {
                info!("stopped cleanly");
                Ok(())
            }
        }
    }

    /// The flag SIGTERM and SIGINT set: setting it makes [`Daemon::run`]
    /// stop the director at its next turn, as those signals do (a program
    /// that embeds the daemon, or a test, stops it this way).
    #[must_use]
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.term)
    }

    /// Every part's status under its name, with one line per worker.
    #[must_use]
    pub fn status(&self) -> Value {
        let mut doc = self.before_workers.status();
        if let (Value::Object(all), Value::Object(after)) = (&mut doc, self.after_workers.status())
        {
            all.extend(after);
            all.insert("workers".to_owned(), self.data.live.descriptions().into());
        }
        doc
    }

    /// The daemons' listing (`xvsadm -L --daemon`): the HA part's status.
    fn daemons_view(&self) -> DaemonsView {
        let status = self.after_workers.status();
        DaemonsView {
            ha: status
                .get("ha")
                .filter(|s| s.get("state").is_some())
                .and_then(|s| serde_json::from_value::<HaView>(s.clone()).ok())
                .map(Box::new),
            sync: self.sync.as_deref().map(|s| Box::new(sync_view(s))),
        }
    }

    /// Waits up to one turn for a message from the parts' threads and
    /// answers it, then the ones already queued behind it (at most
    /// [`BURST`]): the agents' reports arrive by the thousand a second, and
    /// the rest of a turn (the counters' sums, the parts' ticks) need not
    /// run once per report.
    fn handle_message(&mut self) {
        let Ok(first) = self.from_threads.recv_timeout(TURN) else {
            return;
        };
        self.dispatch(first);
        for _ in 1..BURST {
            match self.from_threads.try_recv() {
                Ok(message) => self.dispatch(message),
                Err(_) => break,
            }
        }
    }

    /// Answers one message from the parts' threads.
    fn dispatch(&mut self, message: ControlMsg) {
        match message {
            ControlMsg::Request(pending) => {
                // Applied only if its client still waits for the answer
                // (control::proto, "Timeouts"); the socket's thread logs
                // the ones dropped.
                if let Some((request, reply_to)) = pending.take() {
                    if matches!(request, Request::Daemons) {
                        let _ = reply_to.send(Reply::Daemons(self.daemons_view()));
                        return;
                    }
                    if let Some(reply) = self.after_workers.command(&request) {
                        let _ = reply_to.send(reply);
                        return;
                    }
                    let (counters, _) = self.data.live.counters();
                    let reloader = &self.reloader;
                    let mut reload = || reloader.load();
                    let reply = self.plane.handle(
                        &request,
                        &counters,
                        self.clock.now(),
                        &mut reload,
                        &mut self.data.hooks,
                    );
                    // The parts follow before the client hears that the
                    // change is in force.
                    self.follow_published();
                    let _ = reply_to.send(reply);
                }
            }
            ControlMsg::Metrics(reply_to) => {
                let (counters, io) = self.data.live.counters();
                let xdp = Running {
                    live: Some(&self.data.live),
                    program: self.data.hooks.program(),
                    xdp_counters: &mut self.xdp_counters,
                }
                .xdp();
                let text = crate::control::metrics::render(
                    &self.plane,
                    &counters,
                    &io,
                    xdp.as_ref(),
                    self.xdp_counters.failures(),
                    &self.data.live.worker_counters(),
                    self.clock.now(),
                );
                let _ = reply_to.send(text);
            }
            ControlMsg::Health { target, up, reason } => {
                self.plane.health_transition(
                    &target,
                    up,
                    &reason,
                    self.clock.now(),
                    &mut self.data.hooks,
                );
                self.follow_published();
            }
            // Folded in now; the weights follow once per turn
            // (`follow_agents`), however many reports the turn brings.
            ControlMsg::AgentReport(report) => {
                self.plane.agent_report(&report, self.clock.now());
            }
        }
    }

    /// Reconfigures every part if a change was published since they last
    /// heard.
    fn follow_published(&mut self) {
        let state = self.director.state();
        if !Arc::ptr_eq(&state, &self.published) {
            self.before_workers.reconfigure(&state);
            self.after_workers.reconfigure(&state);
            self.published = state;
        }
    }

    fn tick_parts(&mut self) {
        let mut running = Running {
            live: Some(&self.data.live),
            program: self.data.hooks.program(),
            xdp_counters: &mut self.xdp_counters,
        };
        self.before_workers.tick(&mut running);
        self.after_workers.tick(&mut running);
    }

    /// The orderly shutdown: the parts after the workers (metrics, then
    /// the control socket), then the workers, the XDP attachments and the
    /// kernel filter, then the parts before the workers (the neighbour
    /// watcher, then the last stats); once, however often it is called.
    fn stop(&mut self) {
        self.after_workers.stop(&mut Running {
            live: Some(&self.data.live),
            program: self.data.hooks.program(),
            xdp_counters: &mut self.xdp_counters,
        });
        self.data.stop();
        self.before_workers.stop(&mut Running {
            live: Some(&self.data.live),
            program: self.data.hooks.program(),
            xdp_counters: &mut self.xdp_counters,
        });
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The sync's settings and key: `[sync]`'s; without it, with `[ha]`'s
/// key, ipvsadm's defaults and no role (`--start-daemon` starts one);
/// `None` without either.
fn sync_setup(config: &ClusterConfig) -> Result<Option<(SyncConfig, AuthKey)>, Error> {
    if let Some(sync) = &config.sync {
        let key = sync
            .read_key(config.ha.as_ref())
            .map_err(|e| Error::Sync(format!("[sync] key_file: {e}")))?;
        return Ok(Some((sync.clone(), key)));
    }
    let Some(Ok(Some(key))) = config.ha.as_ref().map(crate::config::HaConfig::read_key) else {
        return Ok(None);
    };
    let mut idle: SyncConfig =
        toml::from_str("").map_err(|e| Error::Sync(format!("the default settings: {e}")))?;
    idle.roles.clear();
    Ok(Some((idle, key)))
}

/// The sync's figures as `-L --daemon` shows them.
fn sync_view(shared: &SyncShared) -> SyncView {
    let s = shared.stats.lock().clone();
    SyncView {
        master: s.master,
        backup: s.backup,
        options: s.describe.clone(),
        peer: s.peer.map(|p| p.to_string()),
        last_heard_ms: s
            .last_heard
            .map(|t| t.elapsed().as_millis().try_into().unwrap_or(u64::MAX)),
        in_sync: s.in_sync,
        sent: s.sender.sent,
        resent: s.sender.resent,
        dropped: s.sender.dropped,
        queued: s.queued as u64,
        lag_ms: s.lag_ms,
        records_sent: s.records_sent,
        transfers_sent: s.transfers_sent,
        received: s.receiver.received,
        lost: s.receiver.lost,
        repaired: s.receiver.repaired,
        transfers_received: s.receiver.bulks_completed,
        imported: s.import.inserted + s.import.updated + s.import.deleted,
        refused: s.import.refused.iter().sum(),
        feed_dropped: s.feed_dropped.0 + s.feed_dropped.1,
    }
}

/// Reads the configuration file again for a reload, with the command
/// line's overrides.
#[derive(Debug)]
struct Reloader {
    file: Option<PathBuf>,
    control_socket: Option<PathBuf>,
    metrics_listen: Option<SocketAddr>,
}

impl Reloader {
    fn load(&self) -> Result<ClusterConfig, LoadError> {
        let Some(path) = &self.file else {
            return Err(LoadError::NoFile);
        };
        let mut config = ClusterConfig::load(path)?;
        kernel::discover(&mut config)?;
        config.drop_floating_addresses();
        self.override_in(&mut config);
        Ok(config)
    }

    /// What the command line overrides counts as the running config's
    /// value, so that a reload compares what is really in use.
    fn override_in(&self, config: &mut ClusterConfig) {
        config.control.socket = Some(control_socket_path(self.control_socket.as_ref(), config));
        config.control.metrics_listen = self.metrics_listen.or(config.control.metrics_listen);
    }
}

/// The control socket's path: `--control-socket`, else the config's, else
/// the default.
fn control_socket_path(given: Option<&PathBuf>, config: &ClusterConfig) -> PathBuf {
    given
        .cloned()
        .or_else(|| config.control.socket.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// SIGTERM and SIGINT set the first flag, SIGHUP the second.
fn signals() -> Result<(Arc<AtomicBool>, Arc<AtomicBool>), Error> {
    let term = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&term)).map_err(Error::Signal)?;
    }
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup))
        .map_err(Error::Signal)?;
    Ok((term, hup))
}

/// What tells a file changed: its modification time and size.
fn file_stamp(path: &Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn log_startup(config: &ClusterConfig, director: &Director, live: &Live, poll: PollMode) {
    info!("xvs-director {} starting", env!("CARGO_PKG_VERSION"));
    for iface in &director.state().interfaces {
        let addrs: Vec<String> = iface.addresses.iter().map(|n| n.to_string()).collect();
        info!(
            "interface {} ({:?} side): mac {}, mtu {}, addresses [{}]",
            iface.name,
            iface.role,
            iface.mac,
            iface.mtu,
            addrs.join(", ")
        );
    }
    for line in live.descriptions() {
        info!("worker: {line}");
    }
    info!(
        "poll mode {poll:?}, connection table {} entries",
        config.conn_table.capacity
    );
    for svc in &director.state().services {
        let servers: Vec<String> = svc
            .sched
            .servers()
            .iter()
            .map(|rs| format!("{}:{} w{}", rs.addr(), rs.port(), rs.weight()))
            .collect();
        info!(
            "service {:?} {}:{} {}: {}",
            svc.proto,
            svc.vip,
            svc.port,
            svc.sched.scheduler().name(),
            servers.join(", ")
        );
    }
}
