//! Prometheus metrics over HTTP (`--metrics-listen ADDR`, off by default):
//! `GET /metrics` in the Prometheus text format.
//!
//! Where node_exporter's `ipvs` collector has a metric, xvs exports it
//! under the same name and labels, so dashboards built for IPVS work
//! unchanged: `node_ipvs_connections_total`,
//! `node_ipvs_incoming_packets_total`, `node_ipvs_outgoing_packets_total`,
//! `node_ipvs_incoming_bytes_total`, `node_ipvs_outgoing_bytes_total`, and
//! per real server `node_ipvs_backend_connections_active`,
//! `node_ipvs_backend_connections_inactive`, `node_ipvs_backend_weight`
//! (labels `local_address`, `local_port`, `local_mark`, `proto`,
//! `remote_address`, `remote_port`). xvs's own metrics are named `xvs_*`:
//! per-real-server traffic, drops by reason, connection-table fill and
//! capacity, per-worker frames and polls, neighbour misses, partial
//! checksums completed per interface, XDP counters, failed reads of
//! the kernel's counters, and with `[agents]` the agents' reports by
//! result and, per real server, the configured and effective weights,
//! the report's age, the agent's state and each load figure
//! (`xvs_agent_*`).
//!
//! A scrape is answered by the main thread (it owns the counters); the
//! HTTP thread only carries the text.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::channel::{Sender, bounded};
use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::control::plane::{ControlMsg, ControlPlane};
use crate::control::proto::{Protocol, ServiceId};
use crate::io::IoStats;
use crate::io::xdp::XdpCounters;
use crate::pipeline::{DropReason, WorkerCounters};

/// One worker's I/O figures for the metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerFigures {
    /// Frames the pipeline saw.
    pub frames: u64,
    /// Receive rounds (polls of its sockets).
    pub polls: u64,
    /// Times it slept waiting for frames.
    pub sleeps: u64,
}

const BACKEND_LABELS: [&str; 6] = [
    "local_address",
    "local_port",
    "local_mark",
    "proto",
    "remote_address",
    "remote_port",
];

/// The [`BACKEND_LABELS`] values of real server `server` of `service`
/// (`local_mark` is empty: no firewall-mark services).
fn backend_labels(service: ServiceId, server: SocketAddr) -> [String; 6] {
    let proto = match service.proto {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    };
    [
        service.vip.to_string(),
        service.port.to_string(),
        String::new(),
        proto.to_owned(),
        server.ip().to_string(),
        server.port().to_string(),
    ]
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition");
    registry
        .register(Box::new(g.clone()))
        .expect("each name registered once");
    g
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
    registry
        .register(Box::new(c.clone()))
        .expect("each name registered once");
    c
}

/// `xvs_ha_*`, with `[ha]`: the state (one series per state, 1 for the
/// current one), transitions, adverts sent, received and refused by
/// reason, late adverts, announcements, the last advert's age and the
/// addresses held.
fn ha_metrics(registry: &Registry, plane: &ControlPlane) {
    use crate::ha::machine::State;
    use crate::ha::router::Rejection;
    let Some(ha) = plane.ha() else {
        return;
    };
    let view = ha.view.lock().clone();
    let c = &ha.counters;
    let state = gauge(
        registry,
        "xvs_ha_state",
        "The HA state of this director: 1 for the current state, 0 for the others.",
        &["state"],
    );
    for s in [State::Init, State::Backup, State::Master, State::Fault] {
        state
            .with_label_values(&[s.as_str().to_lowercase().as_str()])
            .set(i64::from(view.state == s));
    }
    for (name, help, value) in [
        (
            "xvs_ha_transitions_total",
            "Changes of HA state.",
            &c.transitions,
        ),
        ("xvs_ha_adverts_sent_total", "VRRP adverts sent.", &c.sent),
        (
            "xvs_ha_advert_send_errors_total",
            "VRRP adverts that could not be sent.",
            &c.send_errors,
        ),
        (
            "xvs_ha_adverts_received_total",
            "VRRP adverts of this virtual router accepted.",
            &c.received,
        ),
        (
            "xvs_ha_adverts_other_vrid_total",
            "VRRP adverts of other virtual routers, ignored.",
            &c.other_vrid,
        ),
        (
            "xvs_ha_late_adverts_total",
            "Times a backup heard nothing from the master for warn_time.",
            &c.late,
        ),
        (
            "xvs_ha_announcements_total",
            "Gratuitous ARPs and unsolicited neighbour advertisements sent.",
            &c.announcements,
        ),
        (
            "xvs_ha_address_errors_total",
            "Addresses that could not be added, removed or announced.",
            &c.address_errors,
        ),
    ] {
        counter(registry, name, help, &[])
            .with_label_values(&[] as &[&str])
            .inc_by(value.load(Ordering::Relaxed));
    }
    let rejected = counter(
        registry,
        "xvs_ha_adverts_rejected_total",
        "VRRP adverts refused, by reason.",
        &["reason"],
    );
    for reason in Rejection::ALL {
        rejected
            .with_label_values(&[reason.as_str()])
            .inc_by(c.rejected(reason));
    }
    let held = gauge(
        registry,
        "xvs_ha_addresses_held",
        "Addresses this director holds for the pair (VIPs and gateways).",
        &[],
    );
    held.with_label_values(&[] as &[&str])
        .set(view.held.len() as i64);
    if let Some(at) = view.last_advert {
        let age = prometheus::Gauge::new(
            "xvs_ha_last_advert_age_seconds",
            "Time since the last accepted VRRP advert.",
        )
        .expect("static metric definition");
        age.set(at.elapsed().as_secs_f64());
        registry
            .register(Box::new(age))
            .expect("each name registered once");
    }
}

/// `xvs_sync_*`, with `[sync]`: whether the table holds the peer's,
/// messages and records sent and received, lost and repaired, full
/// transfers, the lag and the queues, refusals by reason.
fn sync_metrics(registry: &Registry, plane: &ControlPlane) {
    use crate::sync::shared::Dropped;
    use crate::sync::table::Refused;
    let Some(sync) = plane.sync() else {
        return;
    };
    let s = sync.stats.lock().clone();
    for (name, help, value) in [
        (
            "xvs_sync_in_sync",
            "1 when this director holds the peer's whole connection table (its backup role received a whole transfer since it last lost sync).",
            i64::from(s.in_sync),
        ),
        (
            "xvs_sync_queued_messages",
            "Sync messages sent and not yet acknowledged by the peer.",
            s.queued as i64,
        ),
        (
            "xvs_sync_lag_milliseconds",
            "How long the oldest unacknowledged sync message has waited.",
            i64::try_from(s.lag_ms).unwrap_or(i64::MAX),
        ),
        (
            "xvs_sync_feed_queued_events",
            "Connection events waiting for the sync (main queue and half-open queue).",
            (s.feed_len.0 + s.feed_len.1) as i64,
        ),
    ] {
        gauge(registry, name, help, &[])
            .with_label_values(&[] as &[&str])
            .set(value);
    }
    for (name, help, value) in [
        (
            "xvs_sync_messages_sent_total",
            "Sync data messages sent (first transmissions).",
            s.sender.sent,
        ),
        (
            "xvs_sync_messages_resent_total",
            "Sync data messages sent again for the peer's negative acknowledgements.",
            s.sender.resent,
        ),
        (
            "xvs_sync_messages_dropped_total",
            "Sync data messages dropped unacknowledged from the full resend queue (repaired by a full transfer).",
            s.sender.dropped,
        ),
        (
            "xvs_sync_records_sent_total",
            "Connection records sent to the peer (events, refreshes and transfers).",
            s.records_sent,
        ),
        (
            "xvs_sync_transfers_sent_total",
            "Whole connection tables sent to the peer.",
            s.transfers_sent,
        ),
        (
            "xvs_sync_messages_received_total",
            "Sync data messages received from the peer.",
            s.receiver.received,
        ),
        (
            "xvs_sync_messages_lost_total",
            "Sync data messages found missing (a gap in the sequence).",
            s.receiver.lost,
        ),
        (
            "xvs_sync_messages_repaired_total",
            "Missing sync data messages that arrived later (resent).",
            s.receiver.repaired,
        ),
        (
            "xvs_sync_transfers_received_total",
            "Whole connection tables received from the peer.",
            s.receiver.bulks_completed,
        ),
        (
            "xvs_sync_connections_received_total",
            "Connections inserted, updated or deleted by the peer's records.",
            s.import.inserted + s.import.updated + s.import.deleted,
        ),
        (
            "xvs_sync_feed_dropped_total",
            "Connection events the workers' full queues dropped (repaired by the next refresh).",
            s.feed_dropped.0 + s.feed_dropped.1,
        ),
    ] {
        counter(registry, name, help, &[])
            .with_label_values(&[] as &[&str])
            .inc_by(value);
    }
    let refused = counter(
        registry,
        "xvs_sync_records_refused_total",
        "The peer's connection records not applied, by reason.",
        &["reason"],
    );
    for reason in Refused::ALL {
        refused
            .with_label_values(&[reason.name()])
            .inc_by(s.import.refused_for(reason));
    }
    refused.with_label_values(&["own_newer"]).inc_by(s.kept);
    let dropped = counter(
        registry,
        "xvs_sync_datagrams_dropped_total",
        "Sync datagrams refused before reading, by reason.",
        &["reason"],
    );
    for (reason, n) in Dropped::ALL.iter().zip(s.dropped) {
        dropped.with_label_values(&[reason.name()]).inc_by(n);
    }
}

/// `xvs_agent_*`, with `[agents]`: reports by result, and per real server
/// the configured and effective weights, the report's age, the capacity,
/// the agent's state and each load figure it could measure (a figure it
/// could not is absent, not 0).
fn agent_metrics(registry: &Registry, plane: &ControlPlane, now: crate::conn::Millis) {
    let Some(agents) = plane.agents() else {
        return;
    };
    let reports = counter(
        registry,
        "xvs_agent_reports_total",
        "Load reports received from real-server agents, by result (accepted, or why refused).",
        &["result"],
    );
    let counters = &agents.shared().counters;
    reports
        .with_label_values(&["accepted"])
        .inc_by(counters.accepted());
    for reason in crate::control::agents::Rejection::ALL {
        reports
            .with_label_values(&[reason.name()])
            .inc_by(counters.rejected(reason));
    }
    let g = |name: &str, help: &str| gauge(registry, name, help, &BACKEND_LABELS);
    let configured = g(
        "xvs_agent_configured_weight",
        "The weight the file or the operator configured for the real server.",
    );
    let effective = g(
        "xvs_agent_effective_weight",
        "The weight in force (absent while the server is out of the table).",
    );
    let age = prometheus::GaugeVec::new(
        Opts::new(
            "xvs_agent_report_age_seconds",
            "Time since the real server's agent's last accepted report.",
        ),
        &BACKEND_LABELS,
    )
    .expect("static metric definition");
    registry
        .register(Box::new(age.clone()))
        .expect("each name registered once");
    let figures = [
        (
            "xvs_agent_capacity_permille",
            "The capacity in force, permille of the configured weight.",
        ),
        (
            "xvs_agent_cpu_permille",
            "CPU utilisation the agent reported, permille.",
        ),
        (
            "xvs_agent_memory_permille",
            "Memory utilisation the agent reported, permille.",
        ),
        (
            "xvs_agent_rx_packets_per_second",
            "Packets received per second, as the agent reported.",
        ),
        (
            "xvs_agent_tx_packets_per_second",
            "Packets sent per second, as the agent reported.",
        ),
        (
            "xvs_agent_disk_reads_per_second",
            "Disk reads per second, as the agent reported.",
        ),
        (
            "xvs_agent_disk_writes_per_second",
            "Disk writes per second, as the agent reported.",
        ),
        (
            "xvs_agent_load1_centi",
            "The 1-minute load average × 100, as the agent reported.",
        ),
        (
            "xvs_agent_established_connections",
            "Established connections to the service ports, as the agent reported.",
        ),
    ]
    .map(|(name, help)| g(name, help));
    let mut state_labels = BACKEND_LABELS.to_vec();
    state_labels.push("state");
    let state = gauge(
        registry,
        "xvs_agent_state",
        "1 for the state the real server's agent asks (ready, drain, maint).",
        &state_labels,
    );
    for svc in plane.load_view(now).services {
        for rs in svc.servers {
            let owned = backend_labels(svc.id, SocketAddr::new(rs.addr, rs.port));
            let labels = owned.each_ref().map(String::as_str);
            configured
                .with_label_values(&labels)
                .set(i64::from(rs.configured_weight));
            if let Some(w) = rs.weight {
                effective.with_label_values(&labels).set(i64::from(w));
            }
            let Some(a) = rs.agent else {
                continue;
            };
            age.with_label_values(&labels).set(a.age_ms as f64 / 1000.0);
            let values = [
                Some(u32::from(a.capacity_permille)),
                a.cpu_permille.map(u32::from),
                a.memory_permille.map(u32::from),
                a.rx_packets_per_s,
                a.tx_packets_per_s,
                a.disk_reads_per_s,
                a.disk_writes_per_s,
                a.load1_centi,
                a.established,
            ];
            for (metric, value) in figures.iter().zip(values) {
                if let Some(v) = value {
                    metric.with_label_values(&labels).set(i64::from(v));
                }
            }
            let mut with_state = labels.to_vec();
            with_state.push(a.state.as_str());
            state.with_label_values(&with_state).set(1);
        }
    }
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The metrics text for the state and counters given.
#[must_use]
pub fn render(
    plane: &ControlPlane,
    counters: &WorkerCounters,
    io: &IoStats,
    xdp: Option<&XdpCounters>,
    xdp_read_failures: u64,
    workers: &[WorkerFigures],
    now: crate::conn::Millis,
) -> String {
    let registry = Registry::new();
    let table = plane.table_view(counters);

    let totals = [
        (
            "node_ipvs_connections_total",
            "The total number of connections made.",
        ),
        (
            "node_ipvs_incoming_packets_total",
            "The total number of incoming packets.",
        ),
        (
            "node_ipvs_outgoing_packets_total",
            "The total number of outgoing packets.",
        ),
        (
            "node_ipvs_incoming_bytes_total",
            "The total amount of incoming data.",
        ),
        (
            "node_ipvs_outgoing_bytes_total",
            "The total amount of outgoing data.",
        ),
    ]
    .map(|(name, help)| counter(&registry, name, help, &[]));
    let mut sum = [0u64; 5];
    for s in &table.services {
        sum[0] += s.stats.conns;
        sum[1] += s.stats.inpkts;
        sum[2] += s.stats.outpkts;
        sum[3] += s.stats.inbytes;
        sum[4] += s.stats.outbytes;
    }
    for (c, v) in totals.iter().zip(sum) {
        c.with_label_values::<&str>(&[]).inc_by(v);
    }

    let active = gauge(
        &registry,
        "node_ipvs_backend_connections_active",
        "The current active connections by local and remote address.",
        &BACKEND_LABELS,
    );
    let inactive = gauge(
        &registry,
        "node_ipvs_backend_connections_inactive",
        "The current inactive connections by local and remote address.",
        &BACKEND_LABELS,
    );
    let weight = gauge(
        &registry,
        "node_ipvs_backend_weight",
        "The current backend weight by local and remote address.",
        &BACKEND_LABELS,
    );
    let per_backend = [
        (
            "xvs_backend_connections_total",
            "Connections scheduled to the real server.",
        ),
        (
            "xvs_backend_incoming_packets_total",
            "Packets forwarded to the real server.",
        ),
        (
            "xvs_backend_outgoing_packets_total",
            "Packets from the real server (NAT).",
        ),
        (
            "xvs_backend_incoming_bytes_total",
            "Bytes forwarded to the real server.",
        ),
        (
            "xvs_backend_outgoing_bytes_total",
            "Bytes from the real server (NAT).",
        ),
    ]
    .map(|(name, help)| counter(&registry, name, help, &BACKEND_LABELS));
    for s in &table.services {
        for rs in &s.servers {
            let owned = backend_labels(
                s.params.id,
                std::net::SocketAddr::new(rs.params.addr, rs.params.port),
            );
            let labels = owned.each_ref().map(String::as_str);
            active.with_label_values(&labels).set(i64::from(rs.active));
            inactive
                .with_label_values(&labels)
                .set(i64::from(rs.inactive));
            weight
                .with_label_values(&labels)
                .set(i64::from(rs.params.weight));
            let values = [
                rs.stats.conns,
                rs.stats.inpkts,
                rs.stats.outpkts,
                rs.stats.inbytes,
                rs.stats.outbytes,
            ];
            for (c, v) in per_backend.iter().zip(values) {
                c.with_label_values(&labels).inc_by(v);
            }
        }
    }

    let health = plane.health_status();
    if !health.is_empty() {
        let up = gauge(
            &registry,
            "xvs_backend_up",
            "1 while the real server passes its health check, 0 while it is down.",
            &BACKEND_LABELS,
        );
        let latency = prometheus::GaugeVec::new(
            Opts::new(
                "xvs_backend_check_latency_seconds",
                "How long the last health check took.",
            ),
            &BACKEND_LABELS,
        )
        .expect("static metric definition");
        registry
            .register(Box::new(latency.clone()))
            .expect("each name registered once");
        let transitions = counter(
            &registry,
            "xvs_backend_health_transitions_total",
            "Up/down changes of the real server's health.",
            &BACKEND_LABELS,
        );
        for t in &health {
            let owned = backend_labels(t.key.service, t.key.server);
            let labels = owned.each_ref().map(String::as_str);
            up.with_label_values(&labels).set(i64::from(t.up));
            if let Some(l) = t.last_latency {
                latency.with_label_values(&labels).set(l.as_secs_f64());
            }
            transitions.with_label_values(&labels).inc_by(t.transitions);
        }
    }

    agent_metrics(&registry, plane, now);
    ha_metrics(&registry, plane);
    sync_metrics(&registry, plane);

    let drops = counter(
        &registry,
        "xvs_drops_total",
        "Frames dropped by the pipeline, by reason.",
        &["reason"],
    );
    for &reason in DropReason::ALL {
        drops
            .with_label_values(&[reason.name()])
            .inc_by(counters.dropped(reason));
    }
    let frames = counter(
        &registry,
        "xvs_frames_total",
        "Frames the pipeline decided, by verdict.",
        &["verdict"],
    );
    frames
        .with_label_values(&["transmit"])
        .inc_by(counters.transmitted);
    frames.with_label_values(&["pass"]).inc_by(counters.passed);
    let dropped: u64 = counters.drops.iter().sum();
    frames.with_label_values(&["drop"]).inc_by(dropped);

    let director = plane.director();
    let partial = counter(
        &registry,
        "xvs_partial_checksum_completed_total",
        "Frames forwarded whose partial TCP/UDP checksum (the sender's checksum offload) was completed, by receiving interface.",
        &["interface"],
    );
    for (iface, n) in director
        .state()
        .interfaces
        .iter()
        .zip(&counters.partial_checksum_completed)
    {
        partial.with_label_values(&[iface.name.as_str()]).inc_by(*n);
    }
    let conn = gauge(
        &registry,
        "xvs_conn_table_entries",
        "Connections in the table.",
        &[],
    );
    conn.with_label_values::<&str>(&[])
        .set(as_i64(director.table().len() as u64));
    let cap = gauge(
        &registry,
        "xvs_conn_table_capacity",
        "Connections the table can hold.",
        &[],
    );
    cap.with_label_values::<&str>(&[])
        .set(as_i64(director.table().capacity() as u64));
    counter(
        &registry,
        "xvs_conn_table_refused_total",
        "New connections refused because the table was full.",
        &[],
    )
    .with_label_values::<&str>(&[])
    .inc_by(director.table().refused_full());

    let worker_frames = counter(
        &registry,
        "xvs_worker_frames_total",
        "Frames each worker processed.",
        &["worker"],
    );
    let worker_polls = counter(
        &registry,
        "xvs_worker_polls_total",
        "Receive rounds of each worker.",
        &["worker"],
    );
    let worker_sleeps = counter(
        &registry,
        "xvs_worker_sleeps_total",
        "Times each worker slept waiting for frames (adaptive polling).",
        &["worker"],
    );
    for (i, w) in workers.iter().enumerate() {
        let id = i.to_string();
        worker_frames
            .with_label_values(&[id.as_str()])
            .inc_by(w.frames);
        worker_polls
            .with_label_values(&[id.as_str()])
            .inc_by(w.polls);
        worker_sleeps
            .with_label_values(&[id.as_str()])
            .inc_by(w.sleeps);
    }

    let neighbours = counter(
        &registry,
        "xvs_neighbour_misses_total",
        "Frames dropped because the next hop's MAC was not known yet.",
        &[],
    );
    neighbours
        .with_label_values::<&str>(&[])
        .inc_by(counters.dropped(DropReason::NeighbourUnresolved));
    counter(
        &registry,
        "xvs_neighbour_requests_lost_total",
        "Neighbour resolution requests lost (queue full).",
        &[],
    )
    .with_label_values::<&str>(&[])
    .inc_by(director.neighbours().requests_lost());

    let io_counter = counter(
        &registry,
        "xvs_io_frames_total",
        "Frames through the sockets, by direction.",
        &["direction"],
    );
    io_counter.with_label_values(&["rx"]).inc_by(io.rx_frames);
    io_counter.with_label_values(&["tx"]).inc_by(io.tx_frames);
    io_counter
        .with_label_values(&["tx_dropped"])
        .inc_by(io.tx_dropped);
    io_counter
        .with_label_values(&["kernel_rx_dropped"])
        .inc_by(io.kernel_rx_dropped);
    if let Some(x) = xdp {
        let c = counter(
            &registry,
            "xvs_xdp_frames_total",
            "Frames the XDP program saw, by where they went.",
            &["to"],
        );
        let delivered = x.to_director.saturating_sub(x.no_socket);
        c.with_label_values(&["director"]).inc_by(delivered);
        c.with_label_values(&["kernel"])
            .inc_by(x.frames.saturating_sub(delivered));
        counter(
            &registry,
            "xvs_xdp_no_socket_total",
            "Frames for the director that arrived on a receive queue without a director socket \
             and went to the kernel (which resets new connections to a VIP).",
            &[],
        )
        .with_label_values::<&str>(&[])
        .inc_by(x.no_socket);
    }
    // A counter the kernel would not give is not left out silently: the
    // failures are counted here (and the last value read stands in).
    let failures = counter(
        &registry,
        "xvs_counter_read_failures_total",
        "Reads of the kernel's counters that failed, by counter.",
        &["counter"],
    );
    failures
        .with_label_values(&["xdp_program"])
        .inc_by(xdp_read_failures);
    failures
        .with_label_values(&["socket_statistics"])
        .inc_by(io.stats_read_failures);

    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut out) {
        log::warn!("encoding metrics: {e}");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Why the metrics endpoint could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The address cannot be bound.
    #[error("metrics endpoint: cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// What the HTTP server said.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The server bound something that is not an IP address.
    #[error("metrics endpoint: {0} is not an IP address")]
    NotIp(SocketAddr),
    /// The server's thread could not be started.
    #[error("starting the metrics thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// The HTTP endpoint; stopped on drop.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr` and answers `GET /metrics` by asking the main
    /// thread through `to_main`.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub fn bind(addr: SocketAddr, to_main: Sender<ControlMsg>) -> Result<Self, BindError> {
        let server =
            tiny_http::Server::http(addr).map_err(|source| BindError::Listen { addr, source })?;
        let bound = server.server_addr().to_ip().ok_or(BindError::NotIp(addr))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("xvs-metrics".to_owned())
            .spawn(move || serve(&server, &to_main, &thread_stop))
            .map_err(BindError::Thread)?;
        Ok(Self {
            addr: bound,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(server: &tiny_http::Server, to_main: &Sender<ControlMsg>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let request = match server.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                log::warn!("metrics endpoint: {e}");
                continue;
            }
        };
        let path = request.url().split('?').next().unwrap_or("");
        let response = if *request.method() != tiny_http::Method::Get {
            tiny_http::Response::from_string("only GET\n").with_status_code(405)
        } else if path != "/metrics" {
            tiny_http::Response::from_string("see /metrics\n").with_status_code(404)
        } else {
            let (tx, rx) = bounded(1);
            let text = to_main
                .send(ControlMsg::Metrics(tx))
                .ok()
                .and_then(|()| rx.recv_timeout(Duration::from_secs(10)).ok());
            match text {
                Some(text) => {
                    let content_type = tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        &b"text/plain; version=0.0.4; charset=utf-8"[..],
                    )
                    .expect("a valid static header");
                    tiny_http::Response::from_string(text).with_header(content_type)
                }
                None => tiny_http::Response::from_string("the director did not answer\n")
                    .with_status_code(503),
            }
        };
        if let Err(e) = request.respond(response) {
            log::debug!("metrics endpoint: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use xvs_packet::load_report::{AgentState, Identity, LoadFigures};

    use super::*;
    use crate::config::ClusterConfig;
    use crate::control::agents::{AcceptedReport, AgentShared, ReceiverSettings};
    use crate::control::plane::NoHooks;
    use crate::control::table::ServiceTable;
    use crate::pipeline::{Director, Neighbours};
    use crate::test_support::two_interfaces;

    const CONFIG: &str = concat!(
        two_interfaces!(),
        r#"
[[services]]
proto = "tcp"
vip = "203.0.113.10"
port = 80
[[services.real_servers]]
address = "192.0.2.11"
method = "nat"
weight = 20
[[services.real_servers]]
address = "192.0.2.12"
method = "nat"
weight = 3
"#
    );

    #[test]
    fn ha_metrics_show_the_state_and_the_adverts_by_reason() {
        use crate::ha::machine::State;
        use crate::ha::router::{Rejection, Shared};
        use std::sync::atomic::Ordering;
        let config = ClusterConfig::parse("t.toml", CONFIG).unwrap();
        let table = ServiceTable::from_config(&config, 1).unwrap();
        let director = Arc::new(Director::with_snapshot(
            table.snapshot(),
            &config,
            9,
            Arc::new(Neighbours::new()),
        ));
        let mut plane = ControlPlane::new(table, Arc::clone(&director), 4096);
        let counters = director.worker(0).counters;
        let text = render(&plane, &counters, &IoStats::default(), None, 0, &[], 0);
        assert!(!text.contains("xvs_ha_"), "no [ha], no HA metrics");
        let shared = Arc::new(Shared::new(std::time::Instant::now()));
        shared.view.lock().state = State::Master;
        shared.view.lock().held = vec!["203.0.113.10/32".parse().unwrap()];
        shared.counters.sent.store(12, Ordering::Relaxed);
        shared.counters.rejected[Rejection::ALL
            .iter()
            .position(|r| *r == Rejection::Forged)
            .unwrap()]
        .store(3, Ordering::Relaxed);
        plane.with_ha(shared);
        let text = render(&plane, &counters, &IoStats::default(), None, 0, &[], 0);
        for line in [
            "xvs_ha_state{state=\"master\"} 1",
            "xvs_ha_state{state=\"backup\"} 0",
            "xvs_ha_adverts_sent_total 12",
            "xvs_ha_adverts_rejected_total{reason=\"forged\"} 3",
            "xvs_ha_adverts_rejected_total{reason=\"replayed\"} 0",
            "xvs_ha_addresses_held 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn sync_metrics_show_the_figures_the_sync_publishes() {
        use crate::sync::shared::{Dropped, SyncShared};
        use crate::sync::table::Refused;
        let config = ClusterConfig::parse("t.toml", CONFIG).unwrap();
        let table = ServiceTable::from_config(&config, 1).unwrap();
        let director = Arc::new(Director::with_snapshot(
            table.snapshot(),
            &config,
            9,
            Arc::new(Neighbours::new()),
        ));
        let mut plane = ControlPlane::new(table, Arc::clone(&director), 4096);
        let counters = director.worker(0).counters;
        let text = render(&plane, &counters, &IoStats::default(), None, 0, &[], 0);
        assert!(!text.contains("xvs_sync_"), "no sync, no sync metrics");
        let shared = Arc::new(SyncShared::new(false));
        {
            let mut s = shared.stats.lock();
            s.in_sync = true;
            s.sender.sent = 41;
            s.receiver.lost = 5;
            s.receiver.repaired = 4;
            s.receiver.bulks_completed = 2;
            s.import.inserted = 100;
            s.import.updated = 7;
            s.import.refused[Refused::UnknownService as usize] = 3;
            s.kept = 9;
            s.dropped[Dropped::Auth as usize] = 6;
            s.queued = 12;
        }
        plane.with_sync(shared);
        let text = render(&plane, &counters, &IoStats::default(), None, 0, &[], 0);
        for line in [
            "xvs_sync_in_sync 1",
            "xvs_sync_messages_sent_total 41",
            "xvs_sync_messages_lost_total 5",
            "xvs_sync_messages_repaired_total 4",
            "xvs_sync_transfers_received_total 2",
            "xvs_sync_connections_received_total 107",
            "xvs_sync_records_refused_total{reason=\"unknown_service\"} 3",
            "xvs_sync_records_refused_total{reason=\"own_newer\"} 9",
            "xvs_sync_datagrams_dropped_total{reason=\"auth\"} 6",
            "xvs_sync_queued_messages 12",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn agent_metrics_per_real_server_and_reports_by_result() {
        let config = ClusterConfig::parse("t.toml", CONFIG).unwrap();
        let table = ServiceTable::from_config(&config, 1).unwrap();
        let director = Arc::new(Director::with_snapshot(
            table.snapshot(),
            &config,
            9,
            Arc::new(Neighbours::new()),
        ));
        let mut plane = ControlPlane::new(table, Arc::clone(&director), 4096);
        let shared = Arc::new(AgentShared::new(ReceiverSettings {
            keys: Vec::new(),
            max_skew_ms: 5_000,
        }));
        plane.with_agents(Arc::clone(&shared));
        struct NoSink;
        impl crate::health::HealthSink for NoSink {
            fn transition(&self, _: &crate::health::TargetKey, _: bool, _: &crate::health::Reason) {
            }
        }
        plane
            .start(&config, Arc::new(NoSink), &mut NoHooks)
            .unwrap();
        let report = AcceptedReport {
            identity: Identity::new("rs1").unwrap(),
            address: "192.0.2.11".parse().unwrap(),
            state: AgentState::Drain,
            load: LoadFigures {
                cpu_permille: Some(425),
                established: Some(42),
                ..LoadFigures::default()
            },
        };
        plane.agent_report(&report, 2_000);
        plane.follow_agents(2_000, &mut NoHooks);
        // Two refusals, as the receiver's thread counts them.
        let mut rx = crate::control::agents::Receiver::new(Arc::clone(&shared));
        assert!(rx.receive(b"short", 0).is_err());
        assert!(rx.receive(b"XVSL", 0).is_err());
        let counters = director.worker(0).counters;
        let text = render(&plane, &counters, &IoStats::default(), None, 0, &[], 3_500);
        let labels = |rs: &str| {
            format!(
                "local_address=\"203.0.113.10\",local_mark=\"\",local_port=\"80\",proto=\"TCP\",remote_address=\"{rs}\",remote_port=\"80\""
            )
        };
        let (rs1, rs2) = (labels("192.0.2.11"), labels("192.0.2.12"));
        for line in [
            "xvs_agent_reports_total{result=\"malformed\"} 2".to_owned(),
            "xvs_agent_reports_total{result=\"bad_mac\"} 0".to_owned(),
            format!("xvs_agent_configured_weight{{{rs1}}} 20"),
            format!("xvs_agent_effective_weight{{{rs1}}} 0"),
            format!("xvs_agent_configured_weight{{{rs2}}} 3"),
            format!("xvs_agent_effective_weight{{{rs2}}} 3"),
            format!("xvs_agent_report_age_seconds{{{rs1}}} 1.5"),
            format!("xvs_agent_cpu_permille{{{rs1}}} 425"),
            format!("xvs_agent_established_connections{{{rs1}}} 42"),
            format!("xvs_agent_state{{{rs1},state=\"drain\"}} 1"),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
        assert!(
            !text.contains(&format!("xvs_agent_memory_permille{{{rs1}}}")),
            "a figure the agent could not measure is absent"
        );
        assert!(!text.contains(&format!("xvs_agent_report_age_seconds{{{rs2}}}")));
    }
}
