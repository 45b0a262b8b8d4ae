//! The real-server agents' load reports, on the control plane's side: the
//! checks a report passes before it counts ([`Receiver`], run by the
//! receiver's thread, `daemon::agents`), and the weights that follow the
//! accepted ones ([`AgentWeights`], owned by the control plane on the main
//! thread).
//!
//! # Who does what
//! The receiver's thread only authenticates: length, magic and version,
//! the key id, the MAC, the report's address against the configured real
//! servers, then freshness (a [`ReplayGuard`] per identity and address).
//! What passes is handed whole to the main thread
//! ([`ControlMsg::AgentReport`](crate::control::plane::ControlMsg::AgentReport)):
//! a report is about 60 bytes, so even 10,000 agents are 600 kB/s on the
//! channel, and the policy needs what only the control plane knows — each
//! server's configured weight, its health, the operator's changes —
//! which the thread would otherwise have to mirror. The main thread folds
//! the reports into each address's [`AgentFeedback`] as they arrive and
//! recomputes weights at most once per turn of its loop (about 100 ms),
//! publishing one snapshot for all the changes of that turn, and only
//! when an effective weight actually changed: with the default rate limit
//! a server's weight changes at most once per report.
//!
//! # The weight in force and the configured weight
//! The service table holds the weight in force (what the scheduler uses,
//! what `xvsadm -L -n` shows, as ipvsadm shows the weight a feedback
//! daemon set); [`AgentWeights`] keeps the configured one per real server
//! — from the file, then from the operator's `-a`/`-e` — which `-S` saves
//! and the policy starts from. A server whose address has no agent keeps
//! its configured weight untouched.
//!
//! # Health, drain and maintenance
//! A server its health check holds down stays as the health check left
//! it. `drain` is weight 0 (established connections go on). `maint` takes
//! the server out as a failed health check does (quiesced in a
//! `quiescent` service, else deleted from the table until the agent says
//! `ready` again), through a second set of [`HealthOverrides`], so that a
//! server both down and in maintenance comes back only when both agree.
//!
//! Nothing on the hot path of the receiver allocates: the datagram is read
//! into a stack buffer, the checks work on it in place, and the replay
//! guards' table grows only with the authentic senders of configured
//! servers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::{Value, json};
use xvs_packet::load_report::{
    AgentState, Freshness, Identity, LoadFigures, ReplayGuard, ReportError, ReportKey, ReportPacket,
};
use xvs_sched::feedback::{AgentFeedback, DownBy, Weight, WeightPolicy};

use crate::config::ClusterConfig;
use crate::conn::Millis;
use crate::control::health::HealthOverrides;
use crate::control::proto::{AgentView, Request, ServerParams, ServiceId};
use crate::control::table::ServiceTable;
use crate::health::TargetKey;

/// What the receiver checks reports with; replaced whole by a reload.
#[derive(Debug)]
pub struct ReceiverSettings {
    /// The accepted keys (two during a rotation).
    pub keys: Vec<ReportKey>,
    /// How far a report's timestamp may be from the director's clock.
    pub max_skew_ms: u64,
}

/// Why a report was refused; none changes any state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not a report of this version: length, magic or version (or an
    /// authentic report with a field no agent writes).
    Malformed,
    /// Signed with a key id the director does not have.
    UnknownKey,
    /// The MAC does not match (forged, corrupted, or another key).
    BadMac,
    /// Authentic, but for an address that is no configured real server.
    UnknownServer,
    /// Its sequence number is not above the last one accepted.
    Replayed,
    /// Its timestamp is outside the allowed skew.
    Stale,
}

impl Rejection {
    /// Every reason, in the order the checks run.
    pub const ALL: [Self; 6] = [
        Self::Malformed,
        Self::UnknownKey,
        Self::BadMac,
        Self::UnknownServer,
        Self::Replayed,
        Self::Stale,
    ];

    /// Its name in metrics and the stats file.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnknownKey => "unknown_key",
            Self::BadMac => "bad_mac",
            Self::UnknownServer => "unknown_server",
            Self::Replayed => "replayed",
            Self::Stale => "stale",
        }
    }

    /// What was wrong, for the log.
    #[must_use]
    pub const fn describe(self) -> &'static str {
        match self {
            Self::Malformed => {
                "not a load report of this version (length, magic, version or field)"
            }
            Self::UnknownKey => "signed with a key id not in [agents] keys",
            Self::BadMac => "its MAC does not match the key (forged, corrupted or another key)",
            Self::UnknownServer => "authentic, but its address is no configured real server",
            Self::Replayed => "its sequence number is not above the last accepted (a replay)",
            Self::Stale => "its timestamp is outside [agents] max_skew of the director's clock",
        }
    }
}

/// Reports by result, counted by the receiver's thread.
#[derive(Debug, Default)]
pub struct ReceiverCounters {
    accepted: AtomicU64,
    rejected: [AtomicU64; Rejection::ALL.len()],
}

impl ReceiverCounters {
    /// Reports accepted.
    #[must_use]
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Reports refused for `reason`.
    #[must_use]
    pub fn rejected(&self, reason: Rejection) -> u64 {
        self.rejected[reason as usize].load(Ordering::Relaxed)
    }

    fn count(&self, result: Result<(), Rejection>) {
        let counter = match result {
            Ok(()) => &self.accepted,
            Err(reason) => &self.rejected[reason as usize],
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// As the stats file and the part's status show them.
    #[must_use]
    pub fn json(&self) -> Value {
        let mut rejected = serde_json::Map::new();
        for reason in Rejection::ALL {
            rejected.insert(reason.name().to_owned(), self.rejected(reason).into());
        }
        json!({ "accepted": self.accepted(), "rejected": rejected })
    }
}

/// What the control plane and the receiver's thread share: settings and
/// the configured servers' addresses published by the control plane (the
/// thread reads them, never writes), and the thread's counters.
#[derive(Debug)]
pub struct AgentShared {
    settings: ArcSwap<ReceiverSettings>,
    servers: ArcSwap<FxHashSet<IpAddr>>,
    /// Reports by result.
    pub counters: ReceiverCounters,
    rows: ArcSwap<Vec<AgentRow>>,
}

impl AgentShared {
    /// Checks with `settings`; no server known yet.
    #[must_use]
    pub fn new(settings: ReceiverSettings) -> Self {
        Self {
            settings: ArcSwap::from_pointee(settings),
            servers: ArcSwap::from_pointee(FxHashSet::default()),
            counters: ReceiverCounters::default(),
            rows: ArcSwap::from_pointee(Vec::new()),
        }
    }

    /// Replaces the keys and the skew (a reload).
    pub fn set_settings(&self, settings: ReceiverSettings) {
        self.settings.store(Arc::new(settings));
    }

    /// The agents as last recomputed, for the stats file.
    #[must_use]
    pub fn rows(&self) -> Arc<Vec<AgentRow>> {
        self.rows.load_full()
    }

    /// The receiver's counters and every agent's figures at `now` (the
    /// control plane's clock), as the stats file holds them.
    #[must_use]
    pub fn json(&self, now: Millis) -> Value {
        let agents: Vec<Value> = self.rows().iter().map(|r| r.json(now)).collect();
        json!({ "reports": self.counters.json(), "agents": agents })
    }
}

/// A report that passed every check, as the main thread takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptedReport {
    /// The agent's name.
    pub identity: Identity,
    /// The real server's address (inside the signed bytes).
    pub address: IpAddr,
    /// What the agent asks.
    pub state: AgentState,
    /// Its figures.
    pub load: LoadFigures,
}

/// The checks, in order, with the per-sender replay guards: one per
/// receiver thread.
#[derive(Debug)]
pub struct Receiver {
    shared: Arc<AgentShared>,
    guards: FxHashMap<(Identity, IpAddr), ReplayGuard>,
    /// The skew the guards were last given.
    skew: u64,
}

impl Receiver {
    /// A receiver reading settings and servers from `shared`.
    #[must_use]
    pub fn new(shared: Arc<AgentShared>) -> Self {
        let skew = shared.settings.load().max_skew_ms;
        Self {
            shared,
            guards: FxHashMap::default(),
            skew,
        }
    }

    /// Checks one datagram received when the wall clock said `now_unix_ms`
    /// and counts the result.
    ///
    /// # Errors
    /// The first check it failed; nothing changed but that count.
    pub fn receive(
        &mut self,
        datagram: &[u8],
        now_unix_ms: u64,
    ) -> Result<AcceptedReport, Rejection> {
        let result = self.check(datagram, now_unix_ms);
        self.shared.counters.count(result.map(|_| ()));
        result
    }

    fn check(&mut self, datagram: &[u8], now_unix_ms: u64) -> Result<AcceptedReport, Rejection> {
        let packet = ReportPacket::new_checked(datagram).map_err(|_| Rejection::Malformed)?;
        let settings = self.shared.settings.load();
        let key = settings
            .keys
            .iter()
            .find(|k| k.id() == packet.key_id())
            .ok_or(Rejection::UnknownKey)?;
        let report = packet.verify(key).map_err(|e| match e {
            ReportError::BadTag => Rejection::BadMac,
            _ => Rejection::Malformed,
        })?;
        if !self.shared.servers.load().contains(&report.address) {
            return Err(Rejection::UnknownServer);
        }
        if settings.max_skew_ms != self.skew {
            self.skew = settings.max_skew_ms;
            for guard in self.guards.values_mut() {
                guard.set_max_skew(self.skew);
            }
        }
        let skew = self.skew;
        self.guards
            .entry((report.identity, report.address))
            .or_insert_with(|| ReplayGuard::new(skew))
            .accept(&report, now_unix_ms)
            .map_err(|e| match e {
                Freshness::Replayed => Rejection::Replayed,
                Freshness::Skewed => Rejection::Stale,
            })?;
        Ok(AcceptedReport {
            identity: report.identity,
            address: report.address,
            state: report.state,
            load: report.load,
        })
    }
}

/// One agent as the control plane last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRow {
    /// The real server's address.
    pub address: IpAddr,
    /// The agent's name.
    pub identity: Identity,
    /// What it asks.
    pub state: AgentState,
    /// Its last figures.
    pub load: LoadFigures,
    /// When its last report was accepted (control plane's clock).
    pub last_report: Millis,
    /// The capacity in force, permille of the configured weight.
    pub capacity_permille: u16,
    /// Each of its real servers: service, port, configured weight and the
    /// weight in force (`None`: out of the table).
    pub servers: Vec<(ServiceId, u16, u32, Option<u32>)>,
}

impl AgentRow {
    fn json(&self, now: Millis) -> Value {
        let l = &self.load;
        let servers: Vec<Value> = self
            .servers
            .iter()
            .map(|(service, port, configured, effective)| {
                json!({
                    "service": service.to_string(),
                    "port": port,
                    "configured_weight": configured,
                    "effective_weight": effective,
                })
            })
            .collect();
        json!({
            "address": self.address.to_string(),
            "identity": self.identity.as_str(),
            "state": self.state.as_str(),
            "report_age_ms": now.saturating_sub(self.last_report),
            "capacity_permille": self.capacity_permille,
            "cpu_permille": l.cpu_permille,
            "memory_permille": l.memory_permille,
            "rx_packets_per_s": l.rx_packets_per_s,
            "tx_packets_per_s": l.tx_packets_per_s,
            "disk_reads_per_s": l.disk_reads_per_s,
            "disk_writes_per_s": l.disk_writes_per_s,
            "load1_centi": l.load1_centi,
            "established": l.established,
            "real_servers": servers,
        })
    }
}

/// One address's agent: the policy's state and the last report.
#[derive(Debug, Clone)]
pub struct AgentEntry {
    /// The policy's state.
    pub feedback: AgentFeedback,
    /// The agent's name.
    pub identity: Identity,
    /// Its last figures.
    pub load: LoadFigures,
}

/// The configured weights, the agents' feedback and the servers taken
/// out for maintenance: the control plane's part of the agents.
#[derive(Debug, Clone)]
pub struct AgentWeights {
    policy: WeightPolicy,
    shared: Arc<AgentShared>,
    agents: FxHashMap<IpAddr, AgentEntry>,
    /// What the file or the operator configured, per real server.
    configured: HashMap<TargetKey, u32>,
    /// Servers out because their agent said `maint`.
    maintenance: HealthOverrides,
    /// A report arrived since the last recomputation.
    dirty: bool,
    last_apply: Option<Millis>,
}

/// How often silences are looked for when no report arrives.
const SWEEP_EVERY: Millis = 1000;

/// The shortest time between two recomputations for reports: the main
/// loop may turn once per message, and a thousand reports a second must
/// not become a thousand publications.
const APPLY_GAP: Millis = 100;

fn target(service: ServiceId, server: &ServerParams) -> TargetKey {
    TargetKey {
        service,
        server: std::net::SocketAddr::new(server.addr, server.port),
    }
}

impl AgentWeights {
    /// The agents of `config` (which has `[agents]`), sharing `shared`
    /// with the receiver.
    #[must_use]
    pub fn new(policy: WeightPolicy, shared: Arc<AgentShared>) -> Self {
        Self {
            policy,
            shared,
            agents: FxHashMap::default(),
            configured: HashMap::new(),
            maintenance: HealthOverrides::default(),
            dirty: false,
            last_apply: None,
        }
    }

    /// What the receiver shares with the control plane.
    #[must_use]
    pub fn shared(&self) -> &Arc<AgentShared> {
        &self.shared
    }

    /// The policy in force.
    #[must_use]
    pub const fn policy(&self) -> &WeightPolicy {
        &self.policy
    }

    /// Every agent heard from, by address.
    #[must_use]
    pub fn agents(&self) -> &FxHashMap<IpAddr, AgentEntry> {
        &self.agents
    }

    /// The configured real servers of `service`.
    pub fn configured_servers(&self, service: ServiceId) -> impl Iterator<Item = &TargetKey> {
        self.configured.keys().filter(move |k| k.service == service)
    }

    /// The agent of `address` at `now`, as `-L --load` shows it.
    #[must_use]
    pub fn view(&self, address: IpAddr, now: Millis) -> Option<AgentView> {
        let agent = self.agents.get(&address)?;
        let l = &agent.load;
        Some(AgentView {
            identity: agent.identity.as_str().to_owned(),
            state: agent.feedback.state().as_str().to_owned(),
            age_ms: now.saturating_sub(agent.feedback.last_report().unwrap_or(now)),
            capacity_permille: agent.feedback.capacity(&self.policy, now),
            cpu_permille: l.cpu_permille,
            memory_permille: l.memory_permille,
            rx_packets_per_s: l.rx_packets_per_s,
            tx_packets_per_s: l.tx_packets_per_s,
            disk_reads_per_s: l.disk_reads_per_s,
            disk_writes_per_s: l.disk_writes_per_s,
            load1_centi: l.load1_centi,
            established: l.established,
        })
    }

    /// The configured weight of a real server, if it is one.
    #[must_use]
    pub fn configured(&self, target: &TargetKey) -> Option<u32> {
        self.configured.get(target).copied()
    }

    /// Takes the file's configured weights, policy and quiescence (start
    /// and every reload); keys and skew are set by the caller.
    pub fn configure(&mut self, config: &ClusterConfig) {
        if let Some(agents) = &config.agents {
            self.policy = agents.policy();
        }
        self.maintenance.configure(config);
        self.configured.clear();
        for svc in &config.services {
            let id = svc.id();
            for server in crate::control::table::server_params_of(svc) {
                self.configured.insert(target(id, &server), server.weight);
            }
        }
        self.publish_servers();
        self.dirty = true;
    }

    /// After a reload reconciled the table: forgets maintenance of servers
    /// the file no longer has, takes the others out again.
    pub fn reapply(&mut self, table: &mut ServiceTable) {
        let keys: Vec<TargetKey> = self.configured.keys().copied().collect();
        self.maintenance.reapply(table, &keys);
    }

    /// An operator's change was applied to the table: its weights become
    /// the configured ones.
    pub fn note_request(&mut self, request: &Request) {
        match request {
            Request::AddServer { service, server } | Request::EditServer { service, server } => {
                self.configured
                    .insert(target(*service, server), server.weight);
            }
            Request::DeleteServer {
                service,
                addr,
                port,
            } => {
                self.configured.remove(&TargetKey {
                    service: *service,
                    server: std::net::SocketAddr::new(*addr, *port),
                });
            }
            Request::DeleteService { id } => self.configured.retain(|k, _| k.service != *id),
            Request::Clear => self.configured.clear(),
            Request::Batch { requests } => {
                for r in requests {
                    self.note_request(r);
                }
            }
            _ => return,
        }
        self.publish_servers();
        self.dirty = true;
    }

    /// Gives the receiver this state's list of servers again (after a
    /// rolled-back change put an older state back).
    pub fn republish_servers(&self) {
        self.publish_servers();
    }

    /// The configured servers' addresses, for the receiver.
    fn publish_servers(&self) {
        let servers: FxHashSet<IpAddr> = self.configured.keys().map(|k| k.server.ip()).collect();
        self.shared.servers.store(Arc::new(servers));
    }

    /// Takes an accepted report, received at `now`.
    pub fn report(&mut self, report: &AcceptedReport, now: Millis) {
        let entry = self
            .agents
            .entry(report.address)
            .or_insert_with(|| AgentEntry {
                feedback: AgentFeedback::new(),
                identity: report.identity,
                load: report.load,
            });
        entry
            .feedback
            .report(&self.policy, report.state, &report.load, now);
        entry.identity = report.identity;
        entry.load = report.load;
        self.dirty = true;
    }

    /// True when [`AgentWeights::apply`] has something to do at `now`: a
    /// report or a change since the last time (at most every
    /// 100 ms), or a second gone (a silence begins with no event).
    #[must_use]
    pub fn due(&self, now: Millis) -> bool {
        let Some(at) = self.last_apply else {
            return true;
        };
        let since = now.saturating_sub(at);
        (self.dirty && since >= APPLY_GAP) || since >= SWEEP_EVERY
    }

    /// Makes the table's weights what the policy says at `now` for every
    /// configured server with an agent; `health` says which ones their
    /// health check holds down. Returns true when the table changed.
    pub fn apply(
        &mut self,
        table: &mut ServiceTable,
        health: &HealthOverrides,
        checker_down: &FxHashSet<TargetKey>,
        now: Millis,
    ) -> bool {
        self.dirty = false;
        self.last_apply = Some(now);
        let mut changed = false;
        let mut rows: FxHashMap<IpAddr, AgentRow> = FxHashMap::default();
        let mut targets: Vec<(&TargetKey, &u32)> = self.configured.iter().collect();
        targets.sort_by_key(|(k, _)| (k.server, k.service.vip, k.service.port));
        for (key, &configured) in targets {
            let Some(agent) = self.agents.get(&key.server.ip()) else {
                continue;
            };
            let healthy = !health.is_down(key) && !checker_down.contains(key);
            match agent
                .feedback
                .weight(&self.policy, configured, healthy, now)
            {
                // The health check has it (or will have it back).
                Weight::Down(DownBy::HealthCheck) => {}
                Weight::Down(DownBy::Maintenance) => {
                    if self.maintenance.down(table, key) {
                        log::info!(
                            "agents: {} {} out of rotation: its agent {} says maint",
                            key.service,
                            key.server,
                            agent.identity
                        );
                        changed = true;
                    }
                }
                Weight::Up(weight) => {
                    if self.maintenance.is_down(key) && self.maintenance.up(table, key) {
                        log::info!(
                            "agents: {} {} back in rotation: its agent {} says {}",
                            key.service,
                            key.server,
                            agent.identity,
                            agent.feedback.state()
                        );
                        changed = true;
                    }
                    if let Some(params) =
                        table.server(key.service, key.server.ip(), key.server.port())
                        && params.weight != weight
                    {
                        let edited = ServerParams { weight, ..params };
                        changed |= table.edit_server(key.service, &edited).is_ok();
                    }
                }
            }
            let in_force = table
                .server(key.service, key.server.ip(), key.server.port())
                .map(|p| p.weight);
            let row = rows.entry(key.server.ip()).or_insert_with(|| AgentRow {
                address: key.server.ip(),
                identity: agent.identity,
                state: agent.feedback.state(),
                load: agent.load,
                last_report: agent.feedback.last_report().unwrap_or(0),
                capacity_permille: agent.feedback.capacity(&self.policy, now),
                servers: Vec::new(),
            });
            row.servers
                .push((key.service, key.server.port(), configured, in_force));
        }
        let mut rows: Vec<AgentRow> = rows.into_values().collect();
        rows.sort_by_key(|r| r.address);
        self.shared.rows.store(Arc::new(rows));
        changed
    }
}

#[cfg(test)]
mod tests {
    use xvs_packet::load_report::{LoadReport, REPORT_LEN};

    use super::*;
    use crate::test_support::two_interfaces;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_790_000_000_000;

    fn shared(servers: &[&str]) -> Arc<AgentShared> {
        let shared = Arc::new(AgentShared::new(ReceiverSettings {
            keys: vec![ReportKey::new(1, SECRET).unwrap()],
            max_skew_ms: 5_000,
        }));
        shared.servers.store(Arc::new(
            servers.iter().map(|s| s.parse().unwrap()).collect(),
        ));
        shared
    }

    fn report(address: &str, sequence: u64) -> LoadReport {
        LoadReport {
            key_id: 1,
            identity: Identity::new("rs1").unwrap(),
            address: address.parse().unwrap(),
            timestamp_ms: NOW,
            sequence,
            interval_ms: 1000,
            state: AgentState::Ready,
            load: LoadFigures {
                cpu_permille: Some(900),
                ..LoadFigures::default()
            },
        }
    }

    fn signed(r: &LoadReport, key: &ReportKey) -> [u8; REPORT_LEN] {
        let mut buf = [0; REPORT_LEN];
        r.encode(key, &mut buf).unwrap();
        buf
    }

    #[test]
    fn each_check_refuses_and_counts_by_reason() {
        let shared = shared(&["192.0.2.11"]);
        let mut rx = Receiver::new(Arc::clone(&shared));
        let key = ReportKey::new(1, SECRET).unwrap();
        let good = signed(&report("192.0.2.11", 10), &key);
        let other_key = ReportKey::new(2, SECRET).unwrap();
        let forged = ReportKey::new(1, b"not the cluster key at all......").unwrap();
        let mut stale = report("192.0.2.11", 11);
        stale.timestamp_ms -= 5_001;
        for (what, datagram, want) in [
            ("truncated", good[..100].to_vec(), Err(Rejection::Malformed)),
            (
                "bad magic",
                [b"XXXX", &good[4..]].concat(),
                Err(Rejection::Malformed),
            ),
            (
                "unknown key",
                signed(&report("192.0.2.11", 10), &other_key).to_vec(),
                Err(Rejection::UnknownKey),
            ),
            (
                "forged",
                signed(&report("192.0.2.11", 10), &forged).to_vec(),
                Err(Rejection::BadMac),
            ),
            (
                "unknown server",
                signed(&report("192.0.2.99", 10), &key).to_vec(),
                Err(Rejection::UnknownServer),
            ),
            (
                "stale",
                signed(&stale, &key).to_vec(),
                Err(Rejection::Stale),
            ),
            ("good", good.to_vec(), Ok(())),
            ("replayed", good.to_vec(), Err(Rejection::Replayed)),
        ] {
            assert_eq!(rx.receive(&datagram, NOW).map(|_| ()), want, "{what}");
        }
        let c = &shared.counters;
        assert_eq!(c.accepted(), 1);
        for (reason, n) in [
            (Rejection::Malformed, 2),
            (Rejection::UnknownKey, 1),
            (Rejection::BadMac, 1),
            (Rejection::UnknownServer, 1),
            (Rejection::Replayed, 1),
            (Rejection::Stale, 1),
        ] {
            assert_eq!(c.rejected(reason), n, "{reason:?}");
        }
    }

    #[test]
    fn two_keys_are_accepted_during_a_rotation_and_a_reload_replaces_them() {
        let shared = shared(&["192.0.2.11"]);
        let new_key = ReportKey::new(2, b"the new cluster key, 32 bytes...").unwrap();
        shared.set_settings(ReceiverSettings {
            keys: vec![ReportKey::new(1, SECRET).unwrap(), new_key.clone()],
            max_skew_ms: 5_000,
        });
        let mut rx = Receiver::new(Arc::clone(&shared));
        let old = ReportKey::new(1, SECRET).unwrap();
        assert!(
            rx.receive(&signed(&report("192.0.2.11", 1), &old), NOW)
                .is_ok()
        );
        assert!(
            rx.receive(&signed(&report("192.0.2.11", 2), &new_key), NOW)
                .is_ok()
        );
        shared.set_settings(ReceiverSettings {
            keys: vec![new_key],
            max_skew_ms: 5_000,
        });
        assert_eq!(
            rx.receive(&signed(&report("192.0.2.11", 3), &old), NOW),
            Err(Rejection::UnknownKey)
        );
    }

    // ---- the weights in the control plane, on a fake clock ----------------

    const CONFIG: &str = concat!(
        two_interfaces!(),
        r#"
[[services]]
proto = "tcp"
vip = "203.0.113.10"
port = 80
QUIESCENT
[[services.real_servers]]
address = "192.0.2.11"
method = "nat"
weight = 10
[[services.real_servers]]
address = "192.0.2.12"
method = "nat"
weight = 10

[[services]]
proto = "tcp"
vip = "203.0.113.10"
port = 443
[[services.real_servers]]
address = "192.0.2.11"
method = "nat"
weight = 4
"#
    );

    struct Plane {
        table: ServiceTable,
        weights: AgentWeights,
        health: HealthOverrides,
        checker_down: FxHashSet<TargetKey>,
        now: Millis,
    }

    fn svc(port: u16) -> ServiceId {
        ServiceId {
            proto: crate::control::proto::Protocol::Tcp,
            vip: "203.0.113.10".parse().unwrap(),
            port,
        }
    }

    fn key(port: u16, server: &str) -> TargetKey {
        TargetKey {
            service: svc(port),
            server: std::net::SocketAddr::new(server.parse().unwrap(), port),
        }
    }

    impl Plane {
        fn new(quiescent: bool) -> Self {
            let text = CONFIG.replace(
                "QUIESCENT",
                if quiescent {
                    "[services.health]\nquiescent = true\ncheck = \"off\""
                } else {
                    ""
                },
            );
            let config = ClusterConfig::parse("t.toml", &text).unwrap();
            let table = ServiceTable::from_config(&config, 1).unwrap();
            let mut weights = AgentWeights::new(WeightPolicy::default(), shared(&[]));
            weights.configure(&config);
            let mut health = HealthOverrides::default();
            health.configure(&config);
            Self {
                table,
                weights,
                health,
                checker_down: FxHashSet::default(),
                now: 1_000,
            }
        }

        /// One report a second from 192.0.2.11's agent, then the
        /// recomputation the main loop does; true when the table changed.
        fn report(&mut self, state: AgentState, cpu: u16) -> bool {
            self.now += 1000;
            let r = AcceptedReport {
                identity: Identity::new("rs1").unwrap(),
                address: "192.0.2.11".parse().unwrap(),
                state,
                load: LoadFigures {
                    cpu_permille: Some(cpu),
                    ..LoadFigures::default()
                },
            };
            self.weights.report(&r, self.now);
            self.apply()
        }

        fn apply(&mut self) -> bool {
            self.weights
                .apply(&mut self.table, &self.health, &self.checker_down, self.now)
        }

        fn weight(&self, port: u16, server: &str) -> Option<u32> {
            self.table
                .server(svc(port), server.parse().unwrap(), port)
                .map(|p| p.weight)
        }
    }

    #[test]
    fn the_weight_in_force_follows_load_on_every_service_of_the_address() {
        let mut p = Plane::new(false);
        assert!(p.report(AgentState::Ready, 1000), "first step down");
        assert_eq!(p.weight(80, "192.0.2.11"), Some(9));
        assert_eq!(p.weight(443, "192.0.2.11"), Some(4), "round(4 × 0.9)");
        for _ in 0..30 {
            p.report(AgentState::Ready, 1000);
        }
        assert_eq!(p.weight(80, "192.0.2.11"), Some(5), "the floor");
        assert_eq!(p.weight(443, "192.0.2.11"), Some(2));
        assert_eq!(p.weight(80, "192.0.2.12"), Some(10), "no agent: untouched");
        assert_eq!(p.weights.configured(&key(80, "192.0.2.11")), Some(10));
        // Unchanged figures change nothing: no publication.
        assert!(!p.report(AgentState::Ready, 1000));
        for _ in 0..30 {
            p.report(AgentState::Ready, 0);
        }
        assert_eq!(p.weight(80, "192.0.2.11"), Some(10), "back to configured");
    }

    #[test]
    fn an_operators_weight_is_the_new_configured_one() {
        let mut p = Plane::new(false);
        for _ in 0..30 {
            p.report(AgentState::Ready, 1000);
        }
        assert_eq!(p.weight(80, "192.0.2.11"), Some(5));
        let mut edited = p
            .table
            .server(svc(80), "192.0.2.11".parse().unwrap(), 80)
            .unwrap();
        edited.weight = 40;
        let request = Request::EditServer {
            service: svc(80),
            server: edited,
        };
        p.table.apply(&request, p.now).unwrap();
        p.weights.note_request(&request);
        assert!(p.apply());
        assert_eq!(p.weights.configured(&key(80, "192.0.2.11")), Some(40));
        assert_eq!(
            p.weight(80, "192.0.2.11"),
            Some(20),
            "the policy goes on from it"
        );
    }

    #[test]
    fn silence_restores_the_configured_weight_or_quiesces() {
        let mut p = Plane::new(false);
        for _ in 0..30 {
            p.report(AgentState::Ready, 1000);
        }
        assert_eq!(p.weight(80, "192.0.2.11"), Some(5));
        p.now += 4_999;
        assert!(!p.apply(), "not yet silent");
        p.now += 1;
        assert!(p.apply());
        assert_eq!(p.weight(80, "192.0.2.11"), Some(10), "restored");
        p.weights.policy.on_silence = xvs_sched::feedback::OnSilence::Quiesce;
        assert!(p.apply());
        assert_eq!(p.weight(80, "192.0.2.11"), Some(0), "quiesced");
        assert_eq!(p.weight(443, "192.0.2.11"), Some(0));
    }

    #[test]
    fn drain_is_weight_zero() {
        let mut p = Plane::new(false);
        assert!(p.report(AgentState::Drain, 0));
        assert_eq!(p.weight(80, "192.0.2.11"), Some(0));
        assert!(p.report(AgentState::Ready, 0));
        assert_eq!(p.weight(80, "192.0.2.11"), Some(10));
    }

    #[test]
    fn maint_takes_the_server_out_as_a_failed_health_check_does() {
        // Not quiescent: deleted from the table, back when ready.
        let mut p = Plane::new(false);
        assert!(p.report(AgentState::Maint, 0));
        assert_eq!(p.weight(80, "192.0.2.11"), None);
        assert_eq!(p.weight(443, "192.0.2.11"), None);
        assert!(p.report(AgentState::Ready, 0));
        assert_eq!(p.weight(80, "192.0.2.11"), Some(10));
        assert_eq!(p.weight(443, "192.0.2.11"), Some(4));
        // Quiescent: weight 0, then its weight again.
        let mut p = Plane::new(true);
        assert!(p.report(AgentState::Maint, 0));
        assert_eq!(p.weight(80, "192.0.2.11"), Some(0));
        assert_eq!(p.weight(443, "192.0.2.11"), None, "443 is not quiescent");
        assert!(p.report(AgentState::Ready, 0));
        assert_eq!(p.weight(80, "192.0.2.11"), Some(10));
    }

    #[test]
    fn health_checks_win_whatever_the_agent_says() {
        let mut p = Plane::new(false);
        let k = key(80, "192.0.2.11");
        assert!(p.health.down(&mut p.table, &k));
        p.checker_down.insert(k);
        for state in [AgentState::Ready, AgentState::Drain, AgentState::Maint] {
            p.report(state, 0);
            assert_eq!(p.weight(80, "192.0.2.11"), None, "{state}");
        }
        // In maintenance when the check failed, the agent's `ready` does not
        // bring it back while the check says down.
        p.report(AgentState::Ready, 0);
        assert_eq!(p.weight(80, "192.0.2.11"), None);
        assert!(p.health.up(&mut p.table, &k));
        p.checker_down.remove(&k);
        p.apply();
        assert_eq!(p.weight(80, "192.0.2.11"), Some(10));
        // Out for maintenance first, then the check fails: `ready` alone
        // does not bring it back.
        p.report(AgentState::Maint, 0);
        assert_eq!(p.weight(80, "192.0.2.11"), None);
        p.checker_down.insert(k);
        assert!(!p.health.down(&mut p.table, &k), "already out");
        p.report(AgentState::Ready, 0);
        assert_eq!(
            p.weight(80, "192.0.2.11"),
            None,
            "the check still says down"
        );
        p.checker_down.remove(&k);
        p.apply();
        assert_eq!(p.weight(80, "192.0.2.11"), Some(10));
    }

    #[test]
    fn reports_are_folded_in_at_most_every_gap_and_silence_looked_for_every_second() {
        let mut p = Plane::new(false);
        p.report(AgentState::Ready, 1000);
        let at = p.now;
        let r = AcceptedReport {
            identity: Identity::new("rs1").unwrap(),
            address: "192.0.2.11".parse().unwrap(),
            state: AgentState::Ready,
            load: LoadFigures::default(),
        };
        assert!(!p.weights.due(at), "nothing new");
        p.weights.report(&r, at + 10);
        assert!(!p.weights.due(at + 99), "a report, but within the gap");
        assert!(p.weights.due(at + 100));
        p.now = at + 100;
        p.apply();
        assert!(!p.weights.due(at + 1099));
        assert!(
            p.weights.due(at + 1100),
            "a second: a silence may have begun"
        );
    }

    #[test]
    fn the_stats_file_holds_reports_by_result_and_each_agents_figures() {
        let mut p = Plane::new(false);
        for _ in 0..3 {
            p.report(AgentState::Ready, 1000);
        }
        let mut rx = Receiver::new(Arc::clone(p.weights.shared()));
        assert_eq!(rx.receive(&[0; 3], NOW), Err(Rejection::Malformed));
        let doc = p.weights.shared().json(p.now + 250);
        assert_eq!(doc["reports"]["accepted"], 0);
        assert_eq!(doc["reports"]["rejected"]["malformed"], 1);
        assert_eq!(doc["reports"]["rejected"]["stale"], 0);
        let agent = &doc["agents"][0];
        assert_eq!(agent["address"], "192.0.2.11");
        assert_eq!(agent["identity"], "rs1");
        assert_eq!(agent["state"], "ready");
        assert_eq!(agent["report_age_ms"], 250);
        assert_eq!(agent["cpu_permille"], 1000);
        assert_eq!(agent["memory_permille"], Value::Null, "not measured");
        assert_eq!(agent["capacity_permille"], 700);
        let servers = agent["real_servers"].as_array().unwrap();
        assert_eq!(servers.len(), 2, "{servers:?}");
        assert_eq!(servers[0]["configured_weight"], 10);
        assert_eq!(servers[0]["effective_weight"], 7);
    }

    #[test]
    fn the_receiver_knows_the_configured_servers() {
        let p = Plane::new(false);
        let servers = p.weights.shared().servers.load();
        assert!(servers.contains(&"192.0.2.11".parse::<IpAddr>().unwrap()));
        assert!(servers.contains(&"192.0.2.12".parse::<IpAddr>().unwrap()));
        assert_eq!(servers.len(), 2);
    }
}
