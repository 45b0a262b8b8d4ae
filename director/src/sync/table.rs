//! The connection table's side of the sync: what a director sends of its
//! table and templates ([`export_chunk`], [`export_templates`],
//! [`event_record`]) and how the peer applies it ([`import`]).
//!
//! **Export.** A full transfer (and the periodic refresh of long-lived
//! idle connections) walks the table in chunks: [`export_chunk`] examines
//! a bounded number of entries, returns the live connections among them as
//! [`Record::Upsert`]s and a cursor to resume from, so that the daemon can
//! stream a table of 100,000 connections a message at a time while the
//! workers go on (the walk takes no lock; see `ConnTable::walk`). Each
//! record carries what the peer needs to forward the next packet as this
//! director would: the key, the real server, the method and TCP state as
//! their codes, ACTIVE and NO_OUTPUT, and the time left until the entry
//! expires here (deadline − now).
//!
//! **Import.** [`import`] applies one record to the director's table. An
//! upsert names its service by (protocol, VIP, virtual port) and its real
//! server by (address, port): both are looked up in the director's current
//! snapshot, and a record that names either unknown, or a method or TCP
//! state code this build does not know, is refused with a [`Refused`]
//! reason ([`ImportCounts`] counts them): a peer with another config is an
//! operator's matter, not an error of the sync. A known connection is
//! updated in place (state, flags, timer); a new one is inserted flagged
//! [`ConnFlags::SYNCED`]: it is in both indexes at once (a NAT reply finds
//! it), but it counts in neither `activeconns` nor `inactconns` of its real
//! server — the schedulers (lc, wlc…) of the backup do not see the
//! master's load — until the backup forwards a packet on it: the pipeline
//! then binds it, in the counter its state says (as IPVS treats synced
//! connections). A delete removes the connection if the table has it.
//!
//! **Persistence templates** live in the schedulers' template stores
//! (one per persistent service), not in the connection table:
//! [`export_templates`] walks them in chunks (taking each service's lock
//! for one chunk at a time) and writes each as an upsert flagged
//! `template` (client network, VIP, the template's port, the real server,
//! the time left); [`import`] gives the peer's to the same service's store
//! (`Templates::upsert`), so that a client's new connections on this
//! director go to the real server the peer pinned it to. Templates of
//! fwmark services have no VIP to name them and are not exported; a
//! template is never deleted by the peer (each side's timer frees it).

use core::net::IpAddr;
use core::ops::ControlFlow;

use xvs_packet::sync::{ConnKey, ConnState, Record};
use xvs_packet::{FlowKey, IpProtocol};
use xvs_sched::{TemplateKey, TemplateVaddr};

use crate::conn::{
    ConnEvent, ConnEventKind, ConnFlags, ConnTable, Connection, ForwardMethod, InsertError, Millis,
    NewConnection, TcpState,
};
use crate::pipeline::Director;

/// Where a walk of the persistence templates resumes: a service's slot
/// and a template's slot in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TemplateCursor {
    service: usize,
    slot: usize,
}

impl TemplateCursor {
    /// The first service's first template.
    pub const START: Self = Self {
        service: 0,
        slot: 0,
    };
}

/// Up to `max` upserts for the live persistence templates of the live
/// persistent services of `director`'s current snapshot, from `cursor` on
/// (at most `max` template slots examined per service lock taken), and
/// where to resume: `None` once every service was walked.
#[must_use]
pub fn export_templates(
    director: &Director,
    cursor: TemplateCursor,
    max: usize,
    now: Millis,
) -> (Vec<Record>, Option<TemplateCursor>) {
    let st = director.state();
    let mut records = Vec::with_capacity(max.min(1024));
    let mut at = cursor;
    while at.service < st.services.len() {
        if records.len() >= max {
            return (records, Some(at));
        }
        let svc = &st.services[at.service];
        let persistent = svc.sched.config().persistence.is_some();
        let next = if svc.live && persistent {
            let servers = svc.sched.servers();
            let budget = max - records.len();
            svc.templates.lock().walk(at.slot, budget, |t| {
                let TemplateVaddr::Addr(vip) = t.key.vaddr else {
                    return;
                };
                let Some(rs) = servers.get(t.server) else {
                    return;
                };
                let Some(dest) = st.dests.get(svc.dest_of[t.server.index()]) else {
                    return;
                };
                if t.expires <= now {
                    return;
                }
                records.push(template_upsert(t, vip, rs, dest.method, now));
            })
        } else {
            None
        };
        at = match next {
            Some(slot) => TemplateCursor {
                service: at.service,
                slot,
            },
            None => TemplateCursor {
                service: at.service + 1,
                slot: 0,
            },
        };
    }
    (records, None)
}

/// The upsert of template `t` (of VIP `vip`, pinning to `rs` by
/// `method`), with the time it has left at `now`.
fn template_upsert(
    t: &xvs_sched::Template,
    vip: IpAddr,
    rs: &xvs_sched::RealServer,
    method: ForwardMethod,
    now: Millis,
) -> Record {
    Record::Upsert(ConnState {
        key: ConnKey {
            proto: IpProtocol::from(t.key.proto),
            client: t.key.client_net,
            cport: 0,
            vip,
            vport: t.key.vport,
            template: true,
        },
        real_server: rs.addr(),
        rport: rs.port(),
        method: method.code(),
        tcp_state: TcpState::None.code(),
        active: false,
        no_output: false,
        timeout_ms: u32::try_from(t.expires.saturating_sub(now)).unwrap_or(u32::MAX),
    })
}

/// The upsert of the persistence template that pins the client of `flow`
/// (an inbound key: client to VIP) when its service is persistent: sent
/// with a new connection's record, so that the peer sends the client's
/// next connections where this director does at once, not after the next
/// refresh (IPVS syncs the controlling template alongside too). `None`:
/// not a persistent service, or no live template.
#[must_use]
pub fn template_record(director: &Director, flow: &FlowKey, now: Millis) -> Option<Record> {
    let st = director.state();
    let svc = &st.services[st.find_service(flow.proto, flow.dst, flow.dport)? as usize];
    let persist = svc.sched.config().persistence?;
    let key = svc.sched.template_key(&persist, flow);
    let TemplateVaddr::Addr(vip) = key.vaddr else {
        return None;
    };
    let templates = svc.templates.lock();
    let t = templates.get(templates.find(&key)?)?;
    if t.expires <= now {
        return None;
    }
    let servers = svc.sched.servers();
    let rs = servers.get(t.server)?;
    let dest = st.dests.get(svc.dest_of[t.server.index()])?;
    Some(template_upsert(t, vip, rs, dest.method, now))
}

/// Where a walk of the table resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExportCursor(usize);

impl ExportCursor {
    /// The start of the table.
    pub const START: Self = Self(0);
}

/// Entries [`export_chunk`] examines at most per record it may return:
/// bounds the time of a call on a sparsely used table.
pub const EXAMINED_PER_RECORD: usize = 16;

/// The upsert that tells the peer about `conn`, with the time it has left
/// at `now` (0 once its deadline has passed; the peer's lookups then no
/// longer see it either).
#[must_use]
pub fn upsert_of(conn: &Connection, now: Millis) -> Record {
    let left = conn.deadline.saturating_sub(now);
    Record::Upsert(ConnState {
        key: key_of(conn),
        real_server: conn.real_server,
        rport: conn.rport,
        method: conn.method.code(),
        tcp_state: conn.tcp_state.code(),
        active: conn.flags.contains(ConnFlags::ACTIVE),
        no_output: conn.flags.contains(ConnFlags::NO_OUTPUT),
        timeout_ms: u32::try_from(left).unwrap_or(u32::MAX),
    })
}

/// The key that names `conn` in both directors' tables.
#[must_use]
pub fn key_of(conn: &Connection) -> ConnKey {
    ConnKey {
        proto: conn.proto,
        client: conn.client,
        cport: conn.cport,
        vip: conn.vip,
        vport: conn.vport,
        template: conn.is_template(),
    }
}

/// Up to `max` upserts for the live connections from `cursor` on (at most
/// `max * EXAMINED_PER_RECORD` entries examined), and where to resume:
/// `None` once the whole table was walked. Expired connections that the
/// sweeper has not reclaimed yet are skipped. `max` 0 asks for nothing
/// and gets the same cursor back: a caller that loops asks for 1 or more.
#[must_use]
pub fn export_chunk(
    table: &ConnTable,
    cursor: ExportCursor,
    max: usize,
    now: Millis,
) -> (Vec<Record>, Option<ExportCursor>) {
    export_chunk_where(table, cursor, max, now, |_| true)
}

/// [`export_chunk`] of the live connections `keep` accepts only (the
/// periodic refresh sends the connections this director forwards, not the
/// copies the peer sent it).
#[must_use]
pub fn export_chunk_where(
    table: &ConnTable,
    cursor: ExportCursor,
    max: usize,
    now: Millis,
    keep: impl Fn(&Connection) -> bool,
) -> (Vec<Record>, Option<ExportCursor>) {
    let mut records = Vec::with_capacity(max.min(1024));
    if max == 0 {
        return (records, Some(cursor));
    }
    let budget = max.saturating_mul(EXAMINED_PER_RECORD);
    let next = table.walk(cursor.0, budget, |conn| {
        if conn.deadline > now && keep(conn) {
            records.push(upsert_of(conn, now));
        }
        if records.len() >= max {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    (records, next.map(ExportCursor))
}

/// The record that carries a worker's event to the peer: the connection's
/// state as the table holds it now for a creation or a state change
/// (`None` when it is gone or expired since: its removal follows, or the
/// peer's copy expires on the same timer), a delete for a removal.
#[must_use]
pub fn event_record(table: &ConnTable, event: &ConnEvent, now: Millis) -> Option<Record> {
    match event.kind {
        ConnEventKind::Created | ConnEventKind::StateChanged => {
            let conn = table.get(event.handle)?;
            (conn.deadline > now).then(|| upsert_of(&conn, now))
        }
        ConnEventKind::Removed => Some(Record::Delete(ConnKey {
            proto: event.key.proto,
            client: event.key.src,
            cport: event.key.sport,
            vip: event.key.dst,
            vport: event.key.dport,
            template: false,
        })),
    }
}

/// What [`import`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Applied {
    /// A new connection entered the table (flagged SYNCED).
    Inserted,
    /// The connection was there: its state and timer were updated.
    Updated,
    /// The connection was there with another real server or method: it
    /// was removed and the peer's inserted.
    Replaced,
    /// The connection was removed.
    Deleted,
    /// A delete for a connection the table does not have.
    Absent,
}

/// Why [`import`] refused a record (counted, not an error: the peer's
/// config may differ from this director's for a while).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refused {
    /// No live service with this (protocol, VIP, virtual port).
    UnknownService,
    /// The service has no available real server with this address and
    /// port.
    UnknownRealServer,
    /// A forwarding method code this build does not know.
    UnknownMethod,
    /// A TCP state code this build does not know.
    UnknownTcpState,
    /// The deletion of a persistence template (see the module notes).
    Template,
    /// A persistence template for a service that is not persistent here.
    NotPersistent,
    /// The connection table is full.
    TableFull,
}

impl Refused {
    /// Every reason, in [`ImportCounts::refused`] order.
    pub const ALL: [Self; 7] = [
        Self::UnknownService,
        Self::UnknownRealServer,
        Self::UnknownMethod,
        Self::UnknownTcpState,
        Self::Template,
        Self::NotPersistent,
        Self::TableFull,
    ];

    /// The metric label.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::UnknownService => "unknown_service",
            Self::UnknownRealServer => "unknown_real_server",
            Self::UnknownMethod => "unknown_method",
            Self::UnknownTcpState => "unknown_tcp_state",
            Self::Template => "template",
            Self::NotPersistent => "not_persistent",
            Self::TableFull => "table_full",
        }
    }
}

/// What a stream of imports did, for the daemon's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportCounts {
    /// Connections inserted (replacements included).
    pub inserted: u64,
    /// Connections updated in place.
    pub updated: u64,
    /// Connections removed by a delete.
    pub deleted: u64,
    /// Deletes for connections the table did not have.
    pub absent: u64,
    /// Refused records, by [`Refused::ALL`] position.
    pub refused: [u64; Refused::ALL.len()],
}

impl ImportCounts {
    /// Counts one [`import`] outcome.
    pub fn count(&mut self, outcome: Result<Applied, Refused>) {
        match outcome {
            Ok(Applied::Inserted | Applied::Replaced) => self.inserted += 1,
            Ok(Applied::Updated) => self.updated += 1,
            Ok(Applied::Deleted) => self.deleted += 1,
            Ok(Applied::Absent) => self.absent += 1,
            Err(r) => self.refused[r as usize] += 1,
        }
    }

    /// Records refused for `reason`.
    #[must_use]
    pub const fn refused_for(&self, reason: Refused) -> u64 {
        self.refused[reason as usize]
    }
}

/// The method with this code, if this build knows it
/// (`ForwardMethod::from_code` reads unknown codes as NAT: a table entry
/// only ever holds known ones, a peer's record may not).
fn method_of(code: u8) -> Option<ForwardMethod> {
    [
        ForwardMethod::Nat,
        ForwardMethod::DirectRouting,
        ForwardMethod::Tunnel,
    ]
    .into_iter()
    .find(|m| m.code() == code)
}

fn inbound_key(key: &ConnKey) -> FlowKey {
    FlowKey {
        proto: key.proto,
        src: key.client,
        dst: key.vip,
        sport: key.cport,
        dport: key.vport,
    }
}

/// Applies one of the peer's records to `director`'s table at `now` (see
/// the module notes).
///
/// # Errors
/// [`Refused`] when the record names what this director does not have or
/// know, or the table is full; nothing was changed then.
pub fn import(director: &Director, record: &Record, now: Millis) -> Result<Applied, Refused> {
    match record {
        Record::Upsert(c) => upsert(director, c, now),
        Record::Delete(key) => {
            if key.template {
                return Err(Refused::Template);
            }
            let found = director
                .table()
                .lookup_inbound(&inbound_key(key), now)
                .and_then(|conn| director.remove_connection(conn.handle));
            Ok(if found.is_some() {
                Applied::Deleted
            } else {
                Applied::Absent
            })
        }
    }
}

fn upsert_template(director: &Director, c: &ConnState, now: Millis) -> Result<Applied, Refused> {
    let st = director.state();
    let service = st
        .find_service(c.key.proto, c.key.vip, c.key.vport)
        .ok_or(Refused::UnknownService)?;
    let svc = &st.services[service as usize];
    let persist = svc
        .sched
        .config()
        .persistence
        .ok_or(Refused::NotPersistent)?;
    let servers = svc.sched.servers();
    let server = servers
        .find(c.real_server, c.rport)
        .filter(|s| s.is_available())
        .ok_or(Refused::UnknownRealServer)?
        .id();
    let key = TemplateKey {
        proto: u8::from(c.key.proto),
        client_net: c.key.client,
        vaddr: TemplateVaddr::Addr(c.key.vip),
        vport: c.key.vport,
    };
    let expires = now.saturating_add(Millis::from(c.timeout_ms));
    let mut templates = svc.templates.lock();
    let known = templates
        .find(&key)
        .and_then(|id| templates.get(id))
        .is_some_and(|t| t.server == server);
    templates.upsert(key, server, persist.timeout, expires, servers);
    Ok(if known {
        Applied::Updated
    } else {
        Applied::Inserted
    })
}

fn upsert(director: &Director, c: &ConnState, now: Millis) -> Result<Applied, Refused> {
    let method = method_of(c.method).ok_or(Refused::UnknownMethod)?;
    let tcp_state = TcpState::from_code(c.tcp_state).ok_or(Refused::UnknownTcpState)?;
    if c.key.template {
        return upsert_template(director, c, now);
    }
    let st = director.state();
    let service = st
        .find_service(c.key.proto, c.key.vip, c.key.vport)
        .ok_or(Refused::UnknownService)?;
    let svc = &st.services[service as usize];
    let servers = svc.sched.servers();
    let by_server = servers
        .find(c.real_server, c.rport)
        .or_else(|| servers.find(c.real_server, 0))
        .filter(|s| s.is_available())
        .map(|s| svc.dest_of[s.id().index()]);
    // The service's fallback takes connections too when nothing else can.
    let by_fallback = || {
        svc.fallback.filter(|&fb| {
            st.dests
                .get(fb)
                .is_some_and(|d| d.addr == c.real_server && (d.port == c.rport || d.port == 0))
        })
    };
    let dest_index = by_server
        .or_else(by_fallback)
        .ok_or(Refused::UnknownRealServer)?;
    let mut flags = ConnFlags::EMPTY;
    if c.active {
        flags = flags.union(ConnFlags::ACTIVE);
    }
    if c.no_output {
        flags = flags.union(ConnFlags::NO_OUTPUT);
    }
    let deadline = now.saturating_add(Millis::from(c.timeout_ms));
    let table = director.table();
    let mut applied = Applied::Inserted;
    if let Some(old) = table.lookup_inbound(&inbound_key(&c.key), now) {
        if old.real_server == c.real_server
            && old.rport == c.rport
            && old.method == method
            && old.server_id == dest_index
        {
            if let Ok((was, is)) = table.sync_update(old.handle, tcp_state, flags, deadline) {
                let moved = was.contains(ConnFlags::ACTIVE) != is.contains(ConnFlags::ACTIVE);
                if moved
                    && !was.contains(ConnFlags::SYNCED)
                    && let Some(server) = st.dests.get(dest_index).and_then(|d| d.server)
                {
                    servers.conn_activity_changed(
                        server,
                        was.contains(ConnFlags::ACTIVE),
                        is.contains(ConnFlags::ACTIVE),
                    );
                }
                return Ok(Applied::Updated);
            }
            // Gone meanwhile: insert the peer's.
        } else {
            director.remove_connection(old.handle);
            applied = Applied::Replaced;
        }
    }
    let new = NewConnection {
        proto: c.key.proto,
        client: c.key.client,
        cport: c.key.cport,
        vip: c.key.vip,
        vport: c.key.vport,
        real_server: c.real_server,
        rport: c.rport,
        server_id: dest_index,
        method,
        template: false,
    };
    match table.insert_synced(&new, tcp_state, flags, deadline) {
        Ok(_) => Ok(applied),
        Err(InsertError::Full) => Err(Refused::TableFull),
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::Arc;

    use etherparse::PacketBuilder;
    use xvs_packet::IpProtocol;

    use super::*;
    use crate::config::ClusterConfig;
    use crate::conn::ConnFeed;
    use crate::pipeline::{HEADROOM, Verdict, Worker};
    use crate::types::IfaceId;

    const CONFIG: &str = concat!(
        "[conn_table]\ncapacity = 64\n",
        crate::test_support::two_interfaces!(
            c0 { r#"addresses = ["198.51.100.1/24", "2001:db8:1::1/64"]"# },
            s0 { r#"addresses = ["192.0.2.1/24", "2001:db8:2::1/64"]"# }
        ),
        r#"

[[services]]
proto = "tcp"
vip = "203.0.113.10"
port = 80
scheduler = "rr"
[[services.real_servers]]
address = "192.0.2.11"
port = 8080
method = "nat"
[[services.real_servers]]
address = "192.0.2.12"
port = 8080
method = "nat"

[[services]]
proto = "udp"
vip = "203.0.113.10"
port = 53
scheduler = "rr"
[[services.real_servers]]
address = "192.0.2.11"
port = 5353
method = "nat"

[[services]]
proto = "tcp"
vip = "203.0.113.20"
port = 80
scheduler = "wlc"
[[services.real_servers]]
address = "192.0.2.13"
method = "dr"
[[services.real_servers]]
address = "192.0.2.14"
method = "dr"

[[services]]
proto = "tcp"
vip = "203.0.113.30"
port = 80
scheduler = "rr"
[[services.real_servers]]
address = "192.0.2.15"
method = "tun"

[[services]]
proto = "tcp"
vip = "203.0.113.50"
port = 80
scheduler = "rr"
persistence = { timeout = 300 }
[[services.real_servers]]
address = "192.0.2.11"
method = "nat"
[[services.real_servers]]
address = "192.0.2.12"
method = "nat"

[[services]]
proto = "tcp"
vip = "2001:db8::10"
port = 80
scheduler = "rr"
[[services.real_servers]]
address = "2001:db8:2::11"
port = 8080
method = "nat"

[[neighbours]]
interface = "c0"
address = "198.51.100.7"
mac = "02:00:00:00:00:07"
[[neighbours]]
interface = "c0"
address = "2001:db8:1::7"
mac = "02:00:00:00:00:07"
[[neighbours]]
interface = "s0"
address = "192.0.2.11"
mac = "02:00:00:00:00:11"
[[neighbours]]
interface = "s0"
address = "192.0.2.12"
mac = "02:00:00:00:00:12"
[[neighbours]]
interface = "s0"
address = "192.0.2.13"
mac = "02:00:00:00:00:13"
[[neighbours]]
interface = "s0"
address = "192.0.2.14"
mac = "02:00:00:00:00:14"
[[neighbours]]
interface = "s0"
address = "192.0.2.15"
mac = "02:00:00:00:00:15"
[[neighbours]]
interface = "s0"
address = "2001:db8:2::11"
mac = "02:00:00:00:00:61"
"#
    );

    const CLIENT: IfaceId = IfaceId(0);
    const SERVER: IfaceId = IfaceId(1);
    const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 7];
    const CLIENT_IF_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
    const SERVER_IF_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];

    fn director(seed: u64) -> (Director, Worker) {
        let config = ClusterConfig::parse("sync.toml", CONFIG).unwrap();
        let d = Director::new(&config, 0, seed).unwrap();
        let w = d.worker(1);
        (d, w)
    }

    /// A frame from `src:sport` to `dst:dport`: TCP with tcpdump's flag
    /// letters (S, A, F, P), or UDP when `flags` is "udp".
    fn frame(
        macs: ([u8; 6], [u8; 6]),
        (src, sport): (IpAddr, u16),
        (dst, dport): (IpAddr, u16),
        flags: &str,
        payload: &[u8],
    ) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2(macs.0, macs.1);
        let ip = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
            _ => panic!("mixed families"),
        };
        let mut out = Vec::new();
        if flags == "udp" {
            ip.udp(sport, dport).write(&mut out, payload).unwrap();
            return out;
        }
        let mut t = ip.tcp(sport, dport, 1000, 64240);
        for f in flags.chars() {
            t = match f {
                'S' => t.syn(),
                'A' => t.ack(5000),
                'F' => t.fin(),
                'P' => t.psh(),
                'R' => t.rst(),
                _ => panic!("flag {f}"),
            };
        }
        t.write(&mut out, payload).unwrap();
        out
    }

    /// Runs one frame through `d`: the verdict and the frame as it left.
    fn once(
        d: &Director,
        w: &mut Worker,
        input: &[u8],
        rx: IfaceId,
        now: Millis,
    ) -> (Verdict, Vec<u8>) {
        let mut buf = vec![0u8; HEADROOM + input.len()];
        buf[HEADROOM..].copy_from_slice(input);
        let out = d.process(w, &mut buf, HEADROOM, input.len(), rx, now);
        let sent = match out.verdict {
            Verdict::Transmit { start, len, .. } => buf[start..start + len].to_vec(),
            _ => Vec::new(),
        };
        (out.verdict, sent)
    }

    struct Flow {
        proto: IpProtocol,
        client: (IpAddr, u16),
        vip: (IpAddr, u16),
        nat: bool,
        /// Left after its SYN (SYN_RECV), as connections opened just
        /// before a takeover are.
        half_open: bool,
    }

    fn addr(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn flows() -> Vec<Flow> {
        let tcp = |client: &str, cport, vip: &str, nat, half_open| Flow {
            proto: IpProtocol::Tcp,
            client: (addr(client), cport),
            vip: (addr(vip), 80),
            nat,
            half_open,
        };
        vec![
            tcp("198.51.100.7", 40001, "203.0.113.10", true, false),
            tcp("198.51.100.7", 40002, "203.0.113.10", true, false),
            tcp("198.51.100.7", 40003, "203.0.113.10", true, true),
            tcp("198.51.100.7", 40004, "203.0.113.20", false, false),
            tcp("198.51.100.7", 40005, "203.0.113.20", false, false),
            tcp("198.51.100.7", 40006, "203.0.113.20", false, true),
            tcp("198.51.100.7", 40007, "203.0.113.30", false, false),
            tcp("2001:db8:1::7", 40008, "2001:db8::10", true, false),
            Flow {
                proto: IpProtocol::Udp,
                client: (addr("198.51.100.7"), 40009),
                vip: (addr("203.0.113.10"), 53),
                nat: true,
                half_open: false,
            },
        ]
    }

    fn client_frame(f: &Flow, flags: &str, payload: &[u8]) -> Vec<u8> {
        let flags = if f.proto == IpProtocol::Udp {
            "udp"
        } else {
            flags
        };
        frame((CLIENT_MAC, CLIENT_IF_MAC), f.client, f.vip, flags, payload)
    }

    /// The real server's answer to `f`, as it sends it to the director.
    fn server_frame(d: &Director, f: &Flow, flags: &str, payload: &[u8], now: Millis) -> Vec<u8> {
        let key = FlowKey {
            proto: f.proto,
            src: f.client.0,
            dst: f.vip.0,
            sport: f.client.1,
            dport: f.vip.1,
        };
        let conn = d
            .table()
            .lookup_inbound(&key, now)
            .expect("the flow's entry");
        let rs_mac = match conn.real_server {
            IpAddr::V4(a) => [2, 0, 0, 0, 0, a.octets()[3]],
            IpAddr::V6(_) => [2, 0, 0, 0, 0, 0x61],
        };
        let flags = if f.proto == IpProtocol::Udp {
            "udp"
        } else {
            flags
        };
        frame(
            (rs_mac, SERVER_IF_MAC),
            (conn.real_server, conn.rport),
            f.client,
            flags,
            payload,
        )
    }

    /// (active, inactive) of every real server of every service.
    fn counters(d: &Director) -> Vec<(IpAddr, u16, u32, u32)> {
        let st = d.state();
        st.services
            .iter()
            .flat_map(|s| {
                s.sched
                    .servers()
                    .iter()
                    .map(|rs| (rs.addr(), rs.port(), rs.active_conns(), rs.inactive_conns()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Opens every flow on `d`: the handshake through it (a NAT server's
    /// SYN-ACK through it too), or only the SYN for a half-open one.
    fn open_all(d: &Director, w: &mut Worker, flows: &[Flow], now: Millis) {
        for f in flows {
            let (v, _) = once(d, w, &client_frame(f, "S", b""), CLIENT, now);
            assert!(matches!(v, Verdict::Transmit { .. }), "SYN: {v:?}");
            if f.half_open || f.proto == IpProtocol::Udp {
                continue;
            }
            if f.nat {
                let synack = server_frame(d, f, "SA", b"", now);
                let (v, _) = once(d, w, &synack, SERVER, now);
                assert!(matches!(v, Verdict::Transmit { .. }), "SYN-ACK: {v:?}");
            }
            let (v, _) = once(d, w, &client_frame(f, "A", b""), CLIENT, now);
            assert!(matches!(v, Verdict::Transmit { .. }), "ACK: {v:?}");
        }
    }

    /// `records` sent as the daemon will send them: in signed data
    /// messages of the default `--sync-maxlen`, checked, verified and read
    /// back on the other side.
    fn through_the_wire(records: &[Record]) -> Vec<Record> {
        use xvs_packet::sync::{AuthKey, Flags, Header, Kind, MaxLen, MessageBuilder, Packet};
        let key = AuthKey::new(1, &[0x5a; 32]).unwrap();
        let mut received = Vec::new();
        let mut rest = records;
        let mut sequence = 1;
        while !rest.is_empty() {
            let header = Header {
                kind: Kind::Data,
                syncid: 0,
                flags: Flags::EMPTY,
                epoch: 7,
                sequence,
                peer_epoch: 8,
                ack: 0,
            };
            let mut buf = vec![0u8; MaxLen::DEFAULT.get()];
            let mut b = MessageBuilder::new(&mut buf, MaxLen::DEFAULT, &header).unwrap();
            let mut taken = 0;
            while taken < rest.len() && b.push(&rest[taken]) {
                taken += 1;
            }
            assert!(taken > 0, "a record fits an empty message");
            let len = b.sign(&key);
            let packet = Packet::new_checked(&buf[..len]).unwrap();
            packet.verify(&key).unwrap();
            received.extend(packet.records());
            rest = &rest[taken..];
            sequence += 1;
        }
        received
    }

    fn export_all(table: &ConnTable, max: usize, now: Millis) -> Vec<Record> {
        let mut all = Vec::new();
        let mut cursor = Some(ExportCursor::START);
        let mut calls = 0;
        while let Some(c) = cursor {
            let (records, next) = export_chunk(table, c, max, now);
            assert!(records.len() <= max);
            all.extend(records);
            cursor = next;
            calls += 1;
            assert!(calls <= table.capacity() + 1, "the walk ends");
        }
        all
    }

    #[test]
    fn an_imported_table_forwards_the_next_packet_of_each_flow_as_the_master_does() {
        let (master, mut mw) = director(7);
        let (backup, mut bw) = director(8);
        let flows = flows();
        open_all(&master, &mut mw, &flows, 1000);
        assert_eq!(master.table().len(), flows.len());

        let exported = export_all(master.table(), 2, 2000);
        assert_eq!(
            exported.len(),
            flows.len(),
            "every connection exported once"
        );
        let records = through_the_wire(&exported);
        assert_eq!(records, exported);
        let mut counts = ImportCounts::default();
        for r in &records {
            let Record::Upsert(c) = r else {
                panic!("an export is upserts: {r:?}")
            };
            assert!(!c.key.template);
            counts.count(import(&backup, r, 2000));
        }
        assert_eq!(counts.inserted, flows.len() as u64, "{counts:?}");
        assert_eq!(backup.table().len(), flows.len());
        assert!(
            counters(&backup).iter().all(|c| (c.2, c.3) == (0, 0)),
            "synced connections count nowhere before traffic: {:?}",
            counters(&backup)
        );
        let mut synced = 0;
        backup
            .table()
            .for_each(|c| synced += usize::from(c.is_synced()));
        assert_eq!(synced, flows.len());

        // The next packet of every flow, both ways for NAT: forwarded by
        // the backup exactly as by the master. Fresh workers on both, so
        // that per-worker state (the tunnels' IP ident) starts alike.
        let mut mw = master.worker(1);
        let now = 3000;
        for f in &flows {
            let next = client_frame(f, "PA", b"next");
            let m = once(&master, &mut mw, &next, CLIENT, now);
            let b = once(&backup, &mut bw, &next, CLIENT, now);
            assert!(matches!(m.0, Verdict::Transmit { .. }), "{:?}", m.0);
            assert_eq!(
                b, m,
                "client {:?}: the backup forwards as the master",
                f.client
            );
            if f.nat {
                let reply = server_frame(&master, f, "PA", b"reply", now);
                assert_eq!(
                    reply,
                    server_frame(&backup, f, "PA", b"reply", now),
                    "the same real server"
                );
                let m = once(&master, &mut mw, &reply, SERVER, now);
                let b = once(&backup, &mut bw, &reply, SERVER, now);
                assert!(matches!(m.0, Verdict::Transmit { .. }), "{:?}", m.0);
                assert_eq!(
                    b, m,
                    "reply to {:?}: rewritten as the master does",
                    f.client
                );
            }
        }
        assert_eq!(
            counters(&backup),
            counters(&master),
            "bound at their first packet, in the counters the master has"
        );
        let mut synced = 0;
        backup
            .table()
            .for_each(|c| synced += usize::from(c.is_synced()));
        assert_eq!(synced, 0);

        // A second export finds the backup's entries in the master's state.
        let again: Vec<Record> = export_all(master.table(), 64, 3000);
        let mut counts = ImportCounts::default();
        for r in &again {
            counts.count(import(&backup, r, 3000));
        }
        assert_eq!(counts.updated, flows.len() as u64, "{counts:?}");
        assert_eq!(
            counters(&backup),
            counters(&master),
            "updates keep the counts"
        );

        // The master's deletions remove them, and they leave their counters.
        for r in &again {
            let Record::Upsert(c) = r else { unreachable!() };
            assert_eq!(
                import(&backup, &Record::Delete(c.key), 3000),
                Ok(Applied::Deleted)
            );
            assert_eq!(
                import(&backup, &Record::Delete(c.key), 3000),
                Ok(Applied::Absent)
            );
        }
        assert_eq!(backup.table().len(), 0);
        assert!(counters(&backup).iter().all(|c| (c.2, c.3) == (0, 0)));
    }

    #[test]
    fn synced_templates_send_a_clients_new_connections_where_the_master_does() {
        let (master, mut mw) = director(7);
        let (backup, mut bw) = director(8);
        let vip = (addr("203.0.113.50"), 80);
        let syn = |client: &str, cport| {
            frame(
                (CLIENT_MAC, CLIENT_IF_MAC),
                (addr(client), cport),
                vip,
                "S",
                b"",
            )
        };
        // rr pins the first client to the first server, the second to
        // the second.
        for (client, cport) in [("198.51.100.7", 41000), ("198.51.100.8", 41001)] {
            let (v, _) = once(&master, &mut mw, &syn(client, cport), CLIENT, 1000);
            assert!(matches!(v, Verdict::Transmit { .. }), "{v:?}");
        }
        let mut exported = Vec::new();
        let mut cursor = Some(TemplateCursor::START);
        while let Some(c) = cursor {
            let (records, next) = export_templates(&master, c, 1, 2000);
            assert!(records.len() <= 1);
            exported.extend(records);
            cursor = next;
        }
        assert_eq!(exported.len(), 2, "{exported:?}");
        // A new connection's template, as the sync sends it with the
        // connection: the same record as the walk's.
        for (client, cport) in [("198.51.100.7", 41000), ("198.51.100.8", 41001)] {
            let flow = FlowKey {
                proto: IpProtocol::Tcp,
                src: addr(client),
                dst: vip.0,
                sport: cport,
                dport: vip.1,
            };
            let record = template_record(&master, &flow, 2000).expect("its template");
            assert!(exported.contains(&record), "{record:?}");
        }
        let not_persistent = FlowKey {
            proto: IpProtocol::Tcp,
            src: addr("198.51.100.7"),
            dst: addr("203.0.113.10"),
            sport: 41000,
            dport: 80,
        };
        assert_eq!(template_record(&master, &not_persistent, 2000), None);
        for r in &exported {
            let Record::Upsert(c) = r else { unreachable!() };
            assert!(c.key.template && c.key.cport == 0 && c.key.vport == 80);
            assert_eq!(u64::from(c.timeout_ms), 300_000 - 1000);
        }
        let mut counts = ImportCounts::default();
        for r in through_the_wire(&exported) {
            counts.count(import(&backup, &r, 2000));
        }
        assert_eq!(counts.inserted, 2, "{counts:?}");
        for r in &exported {
            assert_eq!(import(&backup, r, 2000), Ok(Applied::Updated));
        }
        // The second client's next connection: to its pinned server on
        // both, not the one the backup's own rr would pick first (the
        // first client's).
        let pinned = |client: &str| {
            exported
                .iter()
                .find_map(|r| match r {
                    Record::Upsert(c) if c.key.client == addr(client) => Some(c.real_server),
                    _ => None,
                })
                .unwrap()
        };
        let second = pinned("198.51.100.8");
        assert_ne!(second, pinned("198.51.100.7"));
        let IpAddr::V4(second) = second else {
            unreachable!()
        };
        let next = syn("198.51.100.8", 42000);
        let m = once(&master, &mut mw, &next, CLIENT, 3000);
        let b = once(&backup, &mut bw, &next, CLIENT, 3000);
        // The fixture's MACs spell the address's last octet in hex digits.
        let mac = u8::from_str_radix(&second.octets()[3].to_string(), 16).unwrap();
        assert_eq!(m.1[..6], [2, 0, 0, 0, 0, mac], "to {second}");
        assert_eq!(b, m);
        // A template for a service that is not persistent here.
        let Record::Upsert(mut c) = exported[0] else {
            unreachable!()
        };
        c.key.vip = addr("203.0.113.10");
        c.real_server = addr("192.0.2.11");
        c.rport = 8080;
        assert_eq!(
            import(&backup, &Record::Upsert(c), 3000),
            Err(Refused::NotPersistent)
        );
    }

    #[test]
    fn an_export_reports_state_code_method_flags_and_time_left() {
        let (master, mut mw) = director(7);
        let flows = flows();
        open_all(&master, &mut mw, &flows[3..6], 1000);
        let records = export_all(master.table(), 1, 1500);
        assert_eq!(records.len(), 3);
        let established = master.state().timeouts.tcp_ms(TcpState::Established);
        let syn_recv = master.state().timeouts.tcp_ms(TcpState::SynRecv);
        for r in records {
            let Record::Upsert(c) = r else { unreachable!() };
            assert_eq!(c.method, ForwardMethod::DirectRouting.code());
            assert!(c.active, "SYN_RECV and ESTABLISHED count as active");
            if c.key.cport == 40006 {
                assert_eq!(c.tcp_state, TcpState::SynRecv.code());
                assert_eq!(u64::from(c.timeout_ms), syn_recv - 500);
            } else {
                assert_eq!(c.tcp_state, TcpState::Established.code());
                assert_eq!(u64::from(c.timeout_ms), established - 500);
                assert!(c.no_output, "no reply seen on DR");
            }
        }
        // An expired connection the sweeper has not reclaimed is not sent.
        assert!(export_all(master.table(), 8, 1000 + established + 1).is_empty());
    }

    #[test]
    fn records_naming_what_the_backup_lacks_are_refused_and_counted() {
        let (master, mut mw) = director(7);
        let (backup, _) = director(8);
        open_all(&master, &mut mw, &flows()[..1], 1000);
        let Record::Upsert(good) = export_all(master.table(), 8, 1000)[0] else {
            unreachable!()
        };
        let mut bad_service = good;
        bad_service.key.vport = 81;
        let mut bad_server = good;
        bad_server.real_server = addr("192.0.2.99");
        let mut bad_port = good;
        bad_port.rport = 8081;
        let mut bad_method = good;
        bad_method.method = 7;
        let mut bad_state = good;
        bad_state.tcp_state = 11;
        let mut template = good;
        template.key.template = true;
        let mut counts = ImportCounts::default();
        for (c, want) in [
            (bad_service, Refused::UnknownService),
            (bad_server, Refused::UnknownRealServer),
            (bad_port, Refused::UnknownRealServer),
            (bad_method, Refused::UnknownMethod),
            (bad_state, Refused::UnknownTcpState),
            (template, Refused::NotPersistent),
        ] {
            let got = import(&backup, &Record::Upsert(c), 1000);
            assert_eq!(got, Err(want), "{c:?}");
            counts.count(got);
        }
        assert_eq!(backup.table().len(), 0, "nothing inserted");
        assert_eq!(counts.refused_for(Refused::UnknownRealServer), 2);
        assert_eq!(counts.refused.iter().sum::<u64>(), 6);
        assert_eq!(
            import(&backup, &Record::Upsert(good), 1000),
            Ok(Applied::Inserted)
        );
        // Another real server for the same flow replaces the entry.
        let mut moved = good;
        moved.real_server = if good.real_server == addr("192.0.2.11") {
            addr("192.0.2.12")
        } else {
            addr("192.0.2.11")
        };
        assert_eq!(
            import(&backup, &Record::Upsert(moved), 1000),
            Ok(Applied::Replaced)
        );
        assert_eq!(backup.table().len(), 1);
    }

    #[test]
    fn a_full_table_refuses_an_import() {
        let (master, mut mw) = director(7);
        let config = ClusterConfig::parse(
            "sync.toml",
            &CONFIG.replace("capacity = 64", "capacity = 1"),
        )
        .unwrap();
        let backup = Director::new(&config, 0, 8).unwrap();
        open_all(&master, &mut mw, &flows()[..2], 1000);
        let records = export_all(master.table(), 8, 1000);
        assert_eq!(import(&backup, &records[0], 1000), Ok(Applied::Inserted));
        assert_eq!(import(&backup, &records[1], 1000), Err(Refused::TableFull));
    }

    #[test]
    fn workers_report_creations_state_changes_and_removals_while_sync_is_on() {
        let (master, mut mw) = director(7);
        let flows = flows();
        // Off: nothing to report into.
        open_all(&master, &mut mw, &flows[..1], 1000);
        assert!(master.feed().is_none());

        let feed = Arc::new(ConnFeed::new(16, 16));
        master.set_feed(Some(Arc::clone(&feed)));
        let f = &flows[1];
        once(&master, &mut mw, &client_frame(f, "S", b""), CLIENT, 1000);
        let created = feed.pop_half_open().expect("a half-open creation");
        assert_eq!(created.kind, ConnEventKind::Created);
        assert!(created.is_half_open());
        assert!(feed.pop().is_none(), "half-open creations wait apart");
        let synack = server_frame(&master, f, "SA", b"", 1000);
        once(&master, &mut mw, &synack, SERVER, 1000);
        once(&master, &mut mw, &client_frame(f, "A", b""), CLIENT, 1001);
        let changed = feed.pop().expect("the handshake's end");
        assert_eq!(changed.kind, ConnEventKind::StateChanged);
        assert_eq!(changed.tcp_state, TcpState::Established);
        assert!(feed.pop().is_none(), "one event per state change");
        let Some(Record::Upsert(c)) = event_record(master.table(), &changed, 1001) else {
            panic!("an upsert")
        };
        assert_eq!(c.tcp_state, TcpState::Established.code());
        assert_eq!((c.key.client, c.key.cport), f.client);
        // An ACK of an established flow changes nothing: no event.
        once(
            &master,
            &mut mw,
            &client_frame(f, "A", b"data"),
            CLIENT,
            1002,
        );
        assert!(feed.is_empty());

        // A UDP flow is created in the main queue.
        once(
            &master,
            &mut mw,
            &client_frame(&flows[8], "", b"q"),
            CLIENT,
            1003,
        );
        let udp = feed.pop().expect("created");
        assert!(!udp.is_half_open());

        // A removal is: a reset flow's client port used again by a new
        // SYN replaces the old entry.
        let g = &flows[0];
        once(&master, &mut mw, &client_frame(g, "S", b""), CLIENT, 1004);
        once(&master, &mut mw, &client_frame(g, "R", b""), CLIENT, 1005);
        while feed.pop().or_else(|| feed.pop_half_open()).is_some() {}
        once(&master, &mut mw, &client_frame(g, "S", b""), CLIENT, 1006);
        let removed = feed.pop().expect("the old entry's removal");
        assert_eq!(removed.kind, ConnEventKind::Removed);
        assert!(matches!(
            event_record(master.table(), &removed, 1006),
            Some(Record::Delete(_))
        ));
        while feed.pop().or_else(|| feed.pop_half_open()).is_some() {}
        // An expiry is not reported: the peer's copy expires on its own
        // timer.
        let reclaimed = master.housekeeping(10_000_000, 1024);
        assert_eq!(reclaimed, 3);
        assert!(feed.is_empty(), "no event for an expiry");
        assert_eq!(
            event_record(master.table(), &changed, 10_000_000),
            None,
            "a change to a connection gone since sends nothing"
        );

        // A full queue drops and counts.
        let small = Arc::new(ConnFeed::new(1, 1));
        master.set_feed(Some(Arc::clone(&small)));
        for f in &flows[3..6] {
            once(
                &master,
                &mut mw,
                &client_frame(f, "S", b""),
                CLIENT,
                20_000_000,
            );
        }
        assert_eq!(small.dropped_half_open(), 2);
        assert_eq!(small.dropped(), 0);
        for f in &flows[3..5] {
            once(
                &master,
                &mut mw,
                &client_frame(f, "A", b""),
                CLIENT,
                20_000_000,
            );
        }
        assert_eq!(small.dropped(), 1);

        // Off again: the workers stop reporting at their next frame.
        master.set_feed(None);
        once(
            &master,
            &mut mw,
            &client_frame(&flows[5], "A", b""),
            CLIENT,
            20_000_001,
        );
        assert_eq!(small.len(), (1, 1));
    }

    /// What sync is not needed for: a flow the new master never heard of
    /// continues on the real server the old master chose when its service
    /// uses `mh` (the same Maglev table from the same config, whatever the
    /// director's own seed) and `sloppy` (an entry from any segment, not
    /// only a SYN), in NAT and DR; without `sloppy` its next segment is
    /// dropped (no entry, not a SYN).
    #[test]
    fn without_sync_mh_and_sloppy_keep_a_flow_on_its_real_server() {
        let config = |sloppy: bool| {
            let mut c = String::from(crate::test_support::two_interfaces!());
            for (vip, method) in [("203.0.113.10", "nat"), ("203.0.113.20", "dr")] {
                c.push_str(&format!(
                    "\n[[services]]\nproto = \"tcp\"\nvip = \"{vip}\"\nport = 80\nscheduler = \"mh\"\nsched_flags = [\"mh-port\"]\nsloppy = {sloppy}\n"
                ));
                for rs in 11..=14 {
                    c.push_str(&format!(
                        "[[services.real_servers]]\naddress = \"192.0.2.{rs}\"\nmethod = \"{method}\"\n"
                    ));
                }
            }
            for rs in 11..=14 {
                c.push_str(&format!(
                    "\n[[neighbours]]\ninterface = \"s0\"\naddress = \"192.0.2.{rs}\"\nmac = \"02:00:00:00:00:{rs}\"\n"
                ));
            }
            c.push_str("\n[[neighbours]]\ninterface = \"c0\"\naddress = \"198.51.100.7\"\nmac = \"02:00:00:00:00:07\"\n");
            ClusterConfig::parse("mh.toml", &c).unwrap()
        };
        let now = 1_000;
        for sloppy in [true, false] {
            let config = config(sloppy);
            let old = Director::new(&config, 0, 11).unwrap();
            let new = Director::new(&config, 0, 97).unwrap();
            let (mut w_old, mut w_new) = (old.worker(1), new.worker(2));
            let mut servers = std::collections::BTreeSet::new();
            let seg = |vip: &str, cport: u16, flags: &str| {
                frame(
                    (CLIENT_MAC, CLIENT_IF_MAC),
                    (addr("198.51.100.7"), cport),
                    (addr(vip), 80),
                    flags,
                    if flags == "S" { b"" } else { b"data" },
                )
            };
            let key = |vip: &str, cport: u16| FlowKey {
                proto: IpProtocol::Tcp,
                src: addr("198.51.100.7"),
                dst: addr(vip),
                sport: cport,
                dport: 80,
            };
            let flows: Vec<(&str, u16)> = ["203.0.113.10", "203.0.113.20"]
                .into_iter()
                .flat_map(|vip| (41_000..41_040).map(move |p| (vip, p)))
                .collect();
            let mut chosen = Vec::new();
            for &(vip, cport) in &flows {
                let (v, _) = once(&old, &mut w_old, &seg(vip, cport, "S"), CLIENT, now);
                assert!(matches!(v, Verdict::Transmit { .. }));
                let rs = old
                    .table()
                    .lookup_inbound(&key(vip, cport), now)
                    .unwrap()
                    .real_server;
                servers.insert(rs);
                chosen.push(rs);
            }
            // The old master is gone; the next segments reach the new one,
            // which has no entry for them, in another order.
            for (&(vip, cport), rs) in flows.iter().zip(&chosen).rev() {
                let (v, _) = once(&new, &mut w_new, &seg(vip, cport, "PA"), CLIENT, now + 10);
                if sloppy {
                    assert!(
                        matches!(v, Verdict::Transmit { .. }),
                        "{vip}:{cport}: {v:?}"
                    );
                    let conn = new
                        .table()
                        .lookup_inbound(&key(vip, cport), now + 10)
                        .unwrap();
                    assert_eq!(conn.real_server, *rs, "{vip} port {cport}");
                } else {
                    assert!(!matches!(v, Verdict::Transmit { .. }), "{v:?}");
                    assert!(
                        new.table()
                            .lookup_inbound(&key(vip, cport), now + 10)
                            .is_none()
                    );
                }
            }
            assert!(servers.len() > 1, "the flows spread: {servers:?}");
        }
    }
}
