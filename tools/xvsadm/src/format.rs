//! The text of ipvsadm's listings, from plain views of the table.
//!
//! Every function returns the whole output, newline-terminated lines, byte
//! for byte what ipvsadm 1.31 prints for the same table (layouts from
//! ipvs-behaviour.md §8.4–§8.6; where it is silent, from ipvsadm 1.31's
//! `print_title`, `print_service_entry`, `print_largenum`, `print_conn` and
//! `list_timeout`):
//!
//! | ipvsadm | here |
//! |---|---|
//! | `-L [-n]`, `--stats`, `--rate`, `--thresholds`, `--persistent-conn`, `--tun-info`, `--exact`, `--nosort` | [`list_table`] |
//! | `-L -t ADDR:PORT` | [`list_service`] (no version line) |
//! | `-S [-n]` | [`save`] |
//! | `-L -c [--persistent-conn]` | [`list_connections`] |
//! | `-L --timeout` | [`list_timeouts`] |
//! | `-L --daemon` | [`sync_lines`] (the sync's roles, ipvsadm's lines extended), [`ha_line`] (the HA election); [`list_daemons`] is ipvsadm's own form |
//!
//! # Details ipvs-behaviour.md does not spell out (taken from ipvsadm 1.31)
//! - **Column headers** of `--stats`/`--rate`: `Prot LocalAddress:Port`
//!   padded to 33, then the five names right-aligned in 8 columns; second
//!   line `  -> RemoteAddress:Port`. `--thresholds` and `--persistent-conn`
//!   left-align theirs (10/10/10/10 and 9/11/10/10). `--tun-info` keeps the
//!   default header with `TunnelInfo    ` after `Forward`.
//! - **Service lines in `--thresholds` and `--persistent-conn`** are the
//!   default ones (scheduler, flags, persistence); in `--stats`/`--rate` the
//!   name is padded to 33 and followed by the five numbers.
//! - **Numbers** ([`largenum`]): 9 columns, right-aligned; from 10⁸ on
//!   divided and suffixed: `K` (÷10³) below 10⁹, `M` (÷10⁶) below 10¹¹, `G`
//!   (÷10⁹) below 10¹⁴, else `T` (÷10¹²), in 8 columns plus the letter.
//!   `--exact` prints every digit, in 9 columns or one more than the
//!   digits. A real server's `CPS`, `InPPS` and `OutPPS` in `--rate` are
//!   never abbreviated (ipvsadm prints them with `%8llu`); its `InBPS`,
//!   `OutBPS`, and every service rate, are.
//! - **Truncation**: an IPv4 service's `PROT  addr:port` is cut at 33
//!   bytes and a real server's `addr:port` at 28 (only reachable with long
//!   host names); IPv6 is never cut.
//! - **Flags**: ` (sh-fallback,sh-port)` after the scheduler when any of
//!   the three scheduler flags is set (named per scheduler; `flag-3` under
//!   `sh`/`mh` has no name and prints ` ()`), then ` persistent T`, ` mask
//!   M` (not /32 or /128), ` pe NAME` (those three only when persistent),
//!   then ` ops`.
//! - **`-S`**: `-A SVC -s SCHED [-p T [-M MASK]] [--pe NAME] [-o] [-b
//!   FLAGS]`; a sched flag without a name under `sh`/`mh` prints ` -b `
//!   and nothing (an ipvsadm bug, kept: the output must match).
//! - **Sorting** ([`sort_services`], [`sort_servers`]): ipvsadm's comparators
//!   subtract 32-bit unsigned values and read the result as a signed int,
//!   so 10.0.0.1 sorts after 192.168.0.1 (§8.3). Such a comparator is not a
//!   total order, so Rust's `sort_by` may not be used with it; the sort here
//!   is glibc's `qsort` merge sort (halve, sort each half, merge taking the
//!   left element on ≤ 0), which gives glibc's order for any comparator.
//!   One consequence, shared with ipvsadm: when fwmarks or addresses differ
//!   by 2³¹ or more, saving a table restored from a save can list the same
//!   lines in another order.
//! - **`-c`**: ipvsadm reads `/proc/net/ip_vs_conn`; here the director's
//!   entries are given as [`ConnectionView`]s, in the order to print.
//!   With `--persistent-conn`, entries that carry persistence-engine data
//!   get two more columns, as in ipvsadm.
//! - **IPv6 text** is Rust's (RFC 5952), which is glibc's `inet_ntop` except
//!   for IPv4-compatible addresses (`::1.2.3.4`), which glibc writes
//!   dotted.

use core::cmp::Ordering;
use core::fmt::Write as _;
use core::net::{IpAddr, SocketAddr};

use super::args::{DaemonSpec, DaemonState};
use super::{
    AddressFamily, Encapsulation, IpvsProtocol, Netmask, SchedFlags, ServerMethod, ServiceKey,
    Timeouts,
};

/// The director's identity in the first line of `-L`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableInfo {
    /// IPVS version (major, minor, patch); xvs reports the kernel's 1.2.1.
    pub version: (u8, u8, u8),
    /// Connection hash table size.
    pub conn_table_size: u32,
}

impl Default for TableInfo {
    /// What a stock kernel prints: `IP Virtual Server version 1.2.1
    /// (size=4096)`.
    fn default() -> Self {
        Self {
            version: (1, 2, 1),
            conn_table_size: 4096,
        }
    }
}

/// Which columns `-L` shows; ipvsadm takes the first given of `--stats`,
/// `--rate`, `--thresholds`, `--persistent-conn`, `--tun-info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Columns {
    /// Forward Weight ActiveConn InActConn.
    #[default]
    Default,
    /// `--stats`: Conns InPkts OutPkts InBytes OutBytes.
    Stats,
    /// `--rate`: CPS InPPS OutPPS InBPS OutBPS.
    Rate,
    /// `--thresholds`: Uthreshold Lthreshold ActiveConn InActConn.
    Thresholds,
    /// `--persistent-conn`: Weight PersistConn ActiveConn InActConn.
    PersistentConn,
    /// `--tun-info`: Forward TunnelInfo Weight ActiveConn InActConn.
    TunInfo,
}

/// How a listing is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListFormat {
    /// `-n`: addresses and ports as numbers.
    pub numeric: bool,
    /// `--exact`: no K/M/G/T abbreviation.
    pub exact: bool,
    /// Sorted (the default; `--nosort` turns it off).
    pub sort: bool,
    /// The columns.
    pub columns: Columns,
}

impl Default for ListFormat {
    /// Plain `ipvsadm -L`: names resolved, abbreviated numbers, sorted.
    fn default() -> Self {
        Self {
            numeric: false,
            exact: false,
            sort: true,
            columns: Columns::Default,
        }
    }
}

/// Cumulative counters (`--stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets in (client → server).
    pub inpkts: u64,
    /// Packets out (server → client, seen with NAT only).
    pub outpkts: u64,
    /// Bytes in.
    pub inbytes: u64,
    /// Bytes out.
    pub outbytes: u64,
}

/// Rate estimates per second (`--rate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rates {
    /// Connections per second.
    pub cps: u64,
    /// Packets in per second.
    pub inpps: u64,
    /// Packets out per second.
    pub outpps: u64,
    /// Bytes in per second.
    pub inbps: u64,
    /// Bytes out per second.
    pub outbps: u64,
}

/// A real server as listings show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerView {
    /// Address and port.
    pub addr: SocketAddr,
    /// Forwarding method.
    pub method: ServerMethod,
    /// Weight in force.
    pub weight: u32,
    /// The configured weight when it differs from the one in force by an
    /// agent's load reports (what `-S` saves; `None`: `weight`).
    pub configured_weight: Option<u32>,
    /// Active connections.
    pub active_conns: u32,
    /// Inactive connections.
    pub inactive_conns: u32,
    /// Persistence templates pointing at it.
    pub persistent_conns: u32,
    /// Upper connection threshold, 0 = none.
    pub u_threshold: u32,
    /// Lower connection threshold, 0 = none.
    pub l_threshold: u32,
    /// Counters.
    pub stats: Stats,
    /// Rates.
    pub rates: Rates,
}

/// A virtual service and its real servers as listings show them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    /// Which service.
    pub key: ServiceKey,
    /// Scheduler name.
    pub scheduler: String,
    /// Scheduler flags.
    pub sched_flags: SchedFlags,
    /// Persistence timeout in seconds, `None` = not persistent.
    pub persistent: Option<u32>,
    /// Persistence granularity.
    pub netmask: Netmask,
    /// Persistence engine name.
    pub persistence_engine: Option<String>,
    /// One-packet scheduling.
    pub one_packet: bool,
    /// Real servers, in the director's order (listings sort them unless
    /// `--nosort`).
    pub servers: Vec<ServerView>,
    /// Counters.
    pub stats: Stats,
    /// Rates.
    pub rates: Rates,
}

/// One connection entry for `-c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionView {
    /// IpvsProtocol.
    pub protocol: IpvsProtocol,
    /// Client address and port.
    pub client: SocketAddr,
    /// Virtual address and port.
    pub virtual_addr: SocketAddr,
    /// Real server address and port.
    pub destination: SocketAddr,
    /// The state as the kernel names it (`ESTABLISHED`, `SYN_RECV`,
    /// `UDP`, …).
    pub state: String,
    /// Seconds until it expires.
    pub expires_secs: u32,
    /// Persistence engine name and data, for templates of a `--pe` service.
    pub persistence_engine: Option<(String, String)>,
}

/// Reverse lookups for listings without `-n` (ipvsadm uses
/// `gethostbyaddr` and `getservbyport`). `None` prints the number.
pub trait Names {
    /// A host name for an address.
    fn host(&self, addr: IpAddr) -> Option<String>;
    /// A service name for a port under a protocol (`http`).
    fn service(&self, port: u16, protocol: IpvsProtocol) -> Option<String>;
}

/// [`Names`] that knows none: every listing is numeric.
#[derive(Debug, Clone, Copy, Default)]
pub struct Numeric;

impl Names for Numeric {
    fn host(&self, _addr: IpAddr) -> Option<String> {
        None
    }
    fn service(&self, _port: u16, _protocol: IpvsProtocol) -> Option<String> {
        None
    }
}

/// A counter as ipvsadm's `print_largenum` prints it (see the module doc).
pub fn largenum(value: u64, exact: bool) -> String {
    if exact {
        let digits = value.to_string();
        let width = if digits.len() <= 8 {
            9
        } else {
            digits.len() + 1
        };
        return format!("{digits:>width$}");
    }
    match value {
        0..100_000_000 => format!("{value:>9}"),
        100_000_000..1_000_000_000 => format!("{:>8}K", value / 1_000),
        1_000_000_000..100_000_000_000 => format!("{:>8}M", value / 1_000_000),
        100_000_000_000..100_000_000_000_000 => format!("{:>8}G", value / 1_000_000_000),
        _ => format!("{:>8}T", value / 1_000_000_000_000),
    }
}

/// `ipvsadm -L`: the version line, the column headers, every service.
pub fn list_table(
    info: &TableInfo,
    services: &[ServiceView],
    format: &ListFormat,
    names: &dyn Names,
) -> String {
    let (major, minor, patch) = info.version;
    let mut out = format!(
        "IP Virtual Server version {major}.{minor}.{patch} (size={})\n",
        info.conn_table_size
    );
    out.push_str(&title(format.columns));
    for service in ordered_services(services, format.sort) {
        service_entry(&mut out, service, format, names);
    }
    out
}

/// `ipvsadm -L -t ADDR:PORT`: the column headers and one service.
pub fn list_service(service: &ServiceView, format: &ListFormat, names: &dyn Names) -> String {
    let mut out = title(format.columns);
    service_entry(&mut out, service, format, names);
    out
}

/// `ipvsadm -S [-n]` (ipvsadm-save): the table as `-A` and `-a` commands,
/// sorted. Thresholds are not saved; `Local` servers are saved as `-g`.
pub fn save(services: &[ServiceView], numeric: bool, names: &dyn Names) -> String {
    let mut out = String::new();
    for service in ordered_services(services, true) {
        let address = |protocol: IpvsProtocol, addr: SocketAddr| {
            format!(
                "{} {}",
                protocol.save_option(),
                addr_port(addr, protocol, numeric, names)
            )
        };
        let svc = match service.key {
            ServiceKey::Fwmark { mark, family } => match family {
                AddressFamily::Inet => format!("-f {mark}"),
                AddressFamily::Inet6 => format!("-f {mark} -6"),
            },
            ServiceKey::Supported(id) => address(IpvsProtocol::Supported(id.proto), id.addr()),
            ServiceKey::Sctp(addr) => address(IpvsProtocol::Sctp, addr),
        };
        let _ = write!(out, "-A {svc} -s {}", service.scheduler);
        if let Some(timeout) = service.persistent {
            let _ = write!(out, " -p {timeout}");
            if let Some(mask) = non_default_mask(service) {
                let _ = write!(out, " -M {mask}");
            }
        }
        if let Some(engine) = &service.persistence_engine {
            let _ = write!(out, " --pe {engine}");
        }
        if service.one_packet {
            out.push_str(" -o");
        }
        if !service.sched_flags.is_empty() {
            let _ = write!(out, " -b {}", service.sched_flags.names(&service.scheduler));
        }
        out.push('\n');
        for server in ordered_servers(&service.servers, true) {
            let dest = addr_port(server.addr, service.key.protocol(), numeric, names);
            let _ = write!(
                out,
                "-a {svc} -r {dest} {} -w {}",
                server.method.save_option(),
                server.configured_weight.unwrap_or(server.weight)
            );
            if let Some(tunnel) = server.method.tunnel_type() {
                let _ = write!(out, " --tun-type {tunnel}");
            }
            if let ServerMethod::Encapsulated(encapsulation) = server.method {
                match encapsulation {
                    Encapsulation::Gue { port, checksum } => {
                        let _ = write!(out, " --tun-port {port} {}", checksum.option());
                    }
                    Encapsulation::Gre { checksum } => {
                        let _ = write!(out, " {}", checksum.option());
                    }
                }
            }
            out.push('\n');
        }
    }
    out
}

/// `ipvsadm -L -c [-n] [--persistent-conn]`: connection entries, in the
/// order given (ipvsadm prints `/proc/net/ip_vs_conn` unsorted).
pub fn list_connections(
    connections: &[ConnectionView],
    format: &ListFormat,
    names: &dyn Names,
) -> String {
    let mut out = connections_header(format);
    for conn in connections {
        connection_line(&mut out, conn, format, names);
    }
    out
}

/// The lines `ipvsadm -L -c` prints before the entries (a streamed
/// listing prints them first, then [`connection_line`] per entry).
pub fn connections_header(format: &ListFormat) -> String {
    let mut out = String::from("IPVS connection entries\n");
    if format.columns == Columns::PersistentConn {
        let _ = writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} {:<18} {:<16} pe_data",
            "state", "source", "virtual", "destination", "pe name"
        );
    } else {
        let _ = writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} destination",
            "state", "source", "virtual"
        );
    }
    out
}

/// One entry of `ipvsadm -L -c`, appended to `out` with its newline.
pub fn connection_line(
    out: &mut String,
    conn: &ConnectionView,
    format: &ListFormat,
    names: &dyn Names,
) {
    let with_pe = format.columns == Columns::PersistentConn;
    let source = addr_port(conn.client, conn.protocol, format.numeric, names);
    let virt = addr_port(conn.virtual_addr, conn.protocol, format.numeric, names);
    let dest = addr_port(conn.destination, conn.protocol, format.numeric, names);
    let expire = format!(
        "{:02}:{:02}",
        conn.expires_secs / 60,
        conn.expires_secs % 60
    );
    let proto = conn.protocol.name();
    match (&conn.persistence_engine, with_pe) {
        (Some((pe_name, pe_data)), true) => {
            let _ = writeln!(
                out,
                "{proto:<3} {expire:<6} {:<11} {source:<18} {virt:<18} {dest:<16} {pe_name:<18} {pe_data}",
                conn.state
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "{proto:<3} {expire:<6} {:<11} {source:<18} {virt:<18} {dest}",
                conn.state
            );
        }
    }
}

/// `ipvsadm -L --timeout`.
pub fn list_timeouts(timeouts: &Timeouts) -> String {
    format!(
        "Timeout (tcp tcpfin udp): {} {} {}\n",
        timeouts.tcp, timeouts.tcp_fin, timeouts.udp
    )
}

/// `ipvsadm -L --daemon`: one line per running sync daemon.
pub fn list_daemons(daemons: &[DaemonSpec]) -> String {
    let mut out = String::new();
    for daemon in daemons {
        let kind = match daemon.state {
            DaemonState::Master => "master",
            DaemonState::Backup => "backup",
        };
        let _ = write!(
            out,
            "{kind} sync daemon (mcast={}, syncid={}",
            daemon.mcast_interface.as_deref().unwrap_or("eth0"),
            daemon.syncid.unwrap_or(0)
        );
        if let Some(maxlen) = daemon.sync_maxlen {
            let _ = write!(out, ", maxlen={maxlen}");
        }
        if let Some(group) = daemon.mcast_group {
            let _ = write!(out, ", group={group}");
        }
        if let Some(port) = daemon.mcast_port {
            let _ = write!(out, ", port={port}");
        }
        if let Some(ttl) = daemon.mcast_ttl {
            let _ = write!(out, ", ttl={ttl}");
        }
        out.push_str(")\n");
    }
    out
}

/// The sync lines of `-L --daemon`: ipvsadm's `master sync daemon (…)`
/// and `backup sync daemon (…)`, one per role running, each extended
/// with what it is doing.
pub fn sync_lines(sync: &xvs_proto::control::SyncView) -> String {
    let mut out = String::new();
    let peer = sync.peer.as_deref().unwrap_or("not heard yet");
    let heard = sync
        .last_heard_ms
        .map(|ms| format!(" {:.1}s ago", ms as f64 / 1000.0))
        .unwrap_or_default();
    if sync.master {
        let _ = writeln!(
            out,
            "master sync daemon ({}): peer {peer}{heard}, sent {} (resent {}, dropped {}), queued {}, lag {} ms, records {}, transfers sent {}, events dropped {}",
            sync.options,
            sync.sent,
            sync.resent,
            sync.dropped,
            sync.queued,
            sync.lag_ms,
            sync.records_sent,
            sync.transfers_sent,
            sync.feed_dropped
        );
    }
    if sync.backup {
        let _ = writeln!(
            out,
            "backup sync daemon ({}): {}, peer {peer}{heard}, received {} (lost {}, repaired {}), transfers received {}, connections applied {}, refused {}",
            sync.options,
            if sync.in_sync {
                "in sync"
            } else {
                "NOT in sync"
            },
            sync.received,
            sync.lost,
            sync.repaired,
            sync.transfers_received,
            sync.imported,
            sync.refused
        );
    }
    out
}

/// The HA line of `-L --daemon` (ipvsadm's listing extended with the
/// director's role): `HA <node>: <STATE> (vrid, priority, how adverts go,
/// auth) since <time>: <reason>`, then who is master when backup, and the
/// addresses held.
pub fn ha_line(ha: &xvs_proto::control::HaView) -> String {
    let node = ha.node.as_deref().unwrap_or("?");
    let mode = match &ha.interface {
        Some(i) => format!("{} {} on {i}", ha.family, ha.mode),
        None => format!("{} {}", ha.family, ha.mode),
    };
    let mut out = format!(
        "HA {node}: {} (vrid {}, priority {}, {mode}, advert {} ms, auth {}) since {:.1}s: {}\n",
        ha.state.to_uppercase(),
        ha.vrid,
        ha.priority,
        ha.advert_interval_ms,
        ha.auth,
        ha.since_ms as f64 / 1000.0,
        ha.reason
    );
    if let Some(master) = &ha.master {
        let _ = write!(
            out,
            "  master {} (priority {})",
            master.address, master.priority
        );
        if let Some(age) = ha.last_advert_ms {
            let _ = write!(out, ", last advert {age} ms ago");
        }
        out.push('\n');
    }
    if !ha.held.is_empty() {
        let _ = writeln!(out, "  holds {}", ha.held.join(", "));
    }
    out
}

/// Services in ipvsadm's listing order (see the module doc on sorting).
pub fn sort_services(services: &mut [&ServiceView]) {
    merge_sort(services, &|a, b| compare_services(a, b));
}

/// Real servers in ipvsadm's listing order.
pub fn sort_servers(servers: &mut [&ServerView]) {
    merge_sort(servers, &|a, b| compare_addrs(a.addr, b.addr));
}

fn ordered_services(services: &[ServiceView], sort: bool) -> Vec<&ServiceView> {
    let mut ordered: Vec<&ServiceView> = services.iter().collect();
    if sort {
        sort_services(&mut ordered);
    }
    ordered
}

fn ordered_servers(servers: &[ServerView], sort: bool) -> Vec<&ServerView> {
    let mut ordered: Vec<&ServerView> = servers.iter().collect();
    if sort {
        sort_servers(&mut ordered);
    }
    ordered
}

fn title(columns: Columns) -> String {
    const LOCAL: &str = "Prot LocalAddress:Port";
    const REMOTE: &str = "  -> RemoteAddress:Port";
    match columns {
        Columns::Stats => format!(
            "{LOCAL:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n{REMOTE}\n",
            "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        ),
        Columns::Rate => format!(
            "{LOCAL:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n{REMOTE}\n",
            "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
        ),
        Columns::Thresholds => format!(
            "{LOCAL:<33} {:<10} {:<10} {:<10} {:<10}\n{REMOTE}\n",
            "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        ),
        Columns::PersistentConn => format!(
            "{LOCAL:<33} {:<9} {:<11} {:<10} {:<10}\n{REMOTE}\n",
            "Weight", "PersistConn", "ActiveConn", "InActConn"
        ),
        Columns::TunInfo => format!(
            "{LOCAL} Scheduler Flags\n{REMOTE}           Forward TunnelInfo    Weight ActiveConn InActConn\n"
        ),
        Columns::Default => format!(
            "{LOCAL} Scheduler Flags\n{REMOTE}           Forward Weight ActiveConn InActConn\n"
        ),
    }
}

/// `addr:port`, `[v6]:port`, names unless numeric (ipvsadm's
/// `addrport_to_anyname`).
pub(crate) fn addr_port(
    addr: SocketAddr,
    protocol: IpvsProtocol,
    numeric: bool,
    names: &dyn Names,
) -> String {
    let (host, port) = if numeric {
        (addr.ip().to_string(), addr.port().to_string())
    } else {
        (
            names
                .host(addr.ip())
                .unwrap_or_else(|| addr.ip().to_string()),
            names
                .service(addr.port(), protocol)
                .unwrap_or_else(|| addr.port().to_string()),
        )
    };
    match addr {
        SocketAddr::V4(_) => format!("{host}:{port}"),
        SocketAddr::V6(_) => format!("[{host}]:{port}"),
    }
}

/// The first `max` bytes of `text` (fewer if that would split a character).
fn truncated(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

fn non_default_mask(service: &ServiceView) -> Option<Netmask> {
    (service.netmask != Netmask::host(service.key.family())).then_some(service.netmask)
}

fn service_entry(out: &mut String, service: &ServiceView, format: &ListFormat, names: &dyn Names) {
    let name = match (service.key, service.key.protocol_addr()) {
        (ServiceKey::Fwmark { mark, family }, _) => match family {
            AddressFamily::Inet => format!("FWM  {mark}"),
            AddressFamily::Inet6 => format!("FWM  {mark} IPv6"),
        },
        // Only a firewall mark has no address.
        (ServiceKey::Supported(_) | ServiceKey::Sctp(_), None) => String::new(),
        (ServiceKey::Supported(_) | ServiceKey::Sctp(_), Some((protocol, addr))) => {
            let name = format!(
                "{:<4} {}",
                protocol.name(),
                addr_port(addr, protocol, format.numeric, names)
            );
            if addr.is_ipv4() {
                truncated(name, 33)
            } else {
                name
            }
        }
    };
    let exact = format.exact;
    match format.columns {
        Columns::Stats => {
            let s = &service.stats;
            let _ = write!(out, "{name:<33}");
            for value in [s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes] {
                out.push_str(&largenum(value, exact));
            }
        }
        Columns::Rate => {
            let r = &service.rates;
            let _ = write!(out, "{name:<33}");
            for value in [r.cps, r.inpps, r.outpps, r.inbps, r.outbps] {
                out.push_str(&largenum(value, exact));
            }
        }
        Columns::Default | Columns::Thresholds | Columns::PersistentConn | Columns::TunInfo => {
            let _ = write!(out, "{name} {}", service.scheduler);
            if !service.sched_flags.is_empty() {
                let _ = write!(out, " ({})", service.sched_flags.names(&service.scheduler));
            }
            if let Some(timeout) = service.persistent {
                let _ = write!(out, " persistent {timeout}");
                if let Some(mask) = non_default_mask(service) {
                    let _ = write!(out, " mask {mask}");
                }
                if let Some(engine) = &service.persistence_engine {
                    let _ = write!(out, " pe {engine}");
                }
            }
            if service.one_packet {
                out.push_str(" ops");
            }
        }
    }
    out.push('\n');

    for server in ordered_servers(&service.servers, format.sort) {
        let dest = addr_port(server.addr, service.key.protocol(), format.numeric, names);
        let dest = if server.addr.is_ipv4() {
            truncated(dest, 28)
        } else {
            dest
        };
        let _ = write!(out, "  -> {dest:<28}");
        match format.columns {
            Columns::Stats => {
                let s = &server.stats;
                for value in [s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes] {
                    out.push_str(&largenum(value, exact));
                }
            }
            Columns::Rate => {
                let r = &server.rates;
                let _ = write!(out, " {:>8} {:>8} {:>8}", r.cps, r.inpps, r.outpps);
                out.push_str(&largenum(r.inbps, exact));
                out.push_str(&largenum(r.outbps, exact));
            }
            Columns::Thresholds => {
                let _ = write!(
                    out,
                    " {:<10} {:<10} {:<10} {:<10}",
                    server.u_threshold,
                    server.l_threshold,
                    server.active_conns,
                    server.inactive_conns
                );
            }
            Columns::PersistentConn => {
                let _ = write!(
                    out,
                    " {:<9} {:<11} {:<10} {:<10}",
                    server.weight,
                    server.persistent_conns,
                    server.active_conns,
                    server.inactive_conns
                );
            }
            Columns::TunInfo => {
                let _ = write!(
                    out,
                    " {:<7} {:<13} {:<6} {:<10} {:<10}",
                    server.method.name(),
                    tunnel_info(server.method),
                    server.weight,
                    server.active_conns,
                    server.inactive_conns
                );
            }
            Columns::Default => {
                let _ = write!(
                    out,
                    " {:<7} {:<6} {:<10} {:<10}",
                    server.method.name(),
                    server.weight,
                    server.active_conns,
                    server.inactive_conns
                );
            }
        }
        out.push('\n');
    }
}

/// The `--tun-info` column: `ipip`, `gue:PORT:-c`, `gre:+c`, or `n/a`.
fn tunnel_info(method: ServerMethod) -> String {
    match method {
        ServerMethod::IPIP => "ipip".to_owned(),
        ServerMethod::Encapsulated(Encapsulation::Gue { port, checksum }) => {
            format!("gue:{port}:{}", checksum.short())
        }
        ServerMethod::Encapsulated(Encapsulation::Gre { checksum }) => {
            format!("gre:{}", checksum.short())
        }
        ServerMethod::MASQ | ServerMethod::Local | ServerMethod::ROUTE => "n/a".to_owned(),
    }
}

/// `a − b` as C computes `int r = (u32)a - (u32)b`.
fn c_diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// An address as the four 32-bit words of the kernel's `nf_inet_addr`
/// union, host order (IPv4 fills the first).
fn addr_words(addr: IpAddr) -> [u32; 4] {
    match addr {
        IpAddr::V4(v4) => [u32::from(v4), 0, 0, 0],
        IpAddr::V6(v6) => {
            let s = v6.segments();
            [0, 1, 2, 3].map(|i| (u32::from(s[2 * i]) << 16) | u32::from(s[2 * i + 1]))
        }
    }
}

/// libipvs `ipvs_cmp_dests`: address (4 words if the first is IPv6, else
/// 1), then port.
fn compare_addrs(a: SocketAddr, b: SocketAddr) -> i32 {
    let (wa, wb) = (addr_words(a.ip()), addr_words(b.ip()));
    let words = if a.is_ipv6() { 4 } else { 1 };
    let r = (0..words)
        .map(|i| c_diff(wa[i], wb[i]))
        .find(|r| *r != 0)
        .unwrap_or(0);
    if r != 0 {
        return r;
    }
    i32::from(a.port()) - i32::from(b.port())
}

/// libipvs `ipvs_cmp_services`: fwmark, family, protocol, address, port.
fn compare_services(a: &ServiceView, b: &ServiceView) -> i32 {
    let fwmark = |s: &ServiceView| match s.key {
        ServiceKey::Fwmark { mark, .. } => mark,
        ServiceKey::Supported(_) | ServiceKey::Sctp(_) => 0,
    };
    // AF_INET = 2, AF_INET6 = 10.
    let family = |s: &ServiceView| match s.key.family() {
        AddressFamily::Inet => 2,
        AddressFamily::Inet6 => 10,
    };
    let r = c_diff(fwmark(a), fwmark(b));
    if r != 0 {
        return r;
    }
    let r = family(a) - family(b);
    if r != 0 {
        return r;
    }
    let r = i32::from(a.key.protocol().number()) - i32::from(b.key.protocol().number());
    if r != 0 {
        return r;
    }
    match (a.key.protocol_addr(), b.key.protocol_addr()) {
        (Some((_, x)), Some((_, y))) => compare_addrs(x, y),
        // Two fwmark services with the same mark and family.
        _ => 0,
    }
}

/// glibc `msort`: stable top-down merge sort that trusts the comparator
/// only for "left ≤ right", so it terminates with some order even when the
/// comparator is not a total order.
fn merge_sort<T: Copy>(items: &mut [T], compare: &dyn Fn(T, T) -> i32) {
    let n = items.len();
    if n <= 1 {
        return;
    }
    let (left, right) = items.split_at_mut(n / 2);
    merge_sort(left, compare);
    merge_sort(right, compare);
    let mut merged = Vec::with_capacity(n);
    let (mut i, mut j) = (0, 0);
    while i < left.len() && j < right.len() {
        if compare(left[i], right[j]).cmp(&0) != Ordering::Greater {
            merged.push(left[i]);
            i += 1;
        } else {
            merged.push(right[j]);
            j += 1;
        }
    }
    merged.extend_from_slice(&left[i..]);
    merged.extend_from_slice(&right[j..]);
    items.copy_from_slice(&merged);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::TunnelChecksum;

    fn sock(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn tcp(addr: &str) -> ServiceKey {
        ServiceKey::address(IpvsProtocol::TCP, sock(addr))
    }

    fn udp(addr: &str) -> ServiceKey {
        ServiceKey::address(IpvsProtocol::UDP, sock(addr))
    }

    fn service(key: ServiceKey, scheduler: &str, servers: Vec<ServerView>) -> ServiceView {
        ServiceView {
            key,
            scheduler: scheduler.to_owned(),
            sched_flags: SchedFlags::NONE,
            persistent: None,
            netmask: Netmask::host(key.family()),
            persistence_engine: None,
            one_packet: false,
            servers,
            stats: Stats::default(),
            rates: Rates::default(),
        }
    }

    /// weight, active, inactive.
    fn server(addr: &str, method: ServerMethod, counts: (u32, u32, u32)) -> ServerView {
        ServerView {
            addr: sock(addr),
            method,
            weight: counts.0,
            configured_weight: None,
            active_conns: counts.1,
            inactive_conns: counts.2,
            persistent_conns: 0,
            u_threshold: 0,
            l_threshold: 0,
            stats: Stats::default(),
            rates: Rates::default(),
        }
    }

    fn with<T>(mut value: T, change: impl FnOnce(&mut T)) -> T {
        change(&mut value);
        value
    }

    fn numeric(columns: Columns) -> ListFormat {
        ListFormat {
            numeric: true,
            exact: false,
            sort: true,
            columns,
        }
    }

    /// The table of ipvs-behaviour.md §8.4/§8.5, in an unsorted order.
    fn reference_table() -> Vec<ServiceView> {
        vec![
            with(
                service(
                    ServiceKey::Fwmark {
                        mark: 7,
                        family: AddressFamily::Inet,
                    },
                    "sh",
                    vec![server("192.168.1.13:0", ServerMethod::IPIP, (2, 0, 0))],
                ),
                |s| s.sched_flags = SchedFlags::FLAG_1 | SchedFlags::FLAG_2,
            ),
            service(
                udp("10.0.0.100:53"),
                "rr",
                vec![server("192.168.1.11:53", ServerMethod::ROUTE, (1, 0, 4))],
            ),
            with(
                service(
                    tcp("10.0.0.100:80"),
                    "wlc",
                    vec![
                        server("192.168.1.12:80", ServerMethod::MASQ, (1, 0, 1)),
                        server("192.168.1.11:80", ServerMethod::MASQ, (3, 2, 5)),
                    ],
                ),
                |s| {
                    s.persistent = Some(360);
                    s.netmask = Netmask::V4("255.255.255.0".parse().unwrap());
                },
            ),
        ]
    }

    #[test]
    fn list_numeric_matches_the_reference() {
        // Verbatim from ipvs-behaviour.md §8.4, trailing blanks included.
        let expected = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.0.0.100:80 wlc persistent 360 mask 255.255.255.0
  -> 192.168.1.11:80              Masq    3      2          5         
  -> 192.168.1.12:80              Masq    1      0          1         
UDP  10.0.0.100:53 rr
  -> 192.168.1.11:53              Route   1      0          4         
FWM  7 sh (sh-fallback,sh-port)
  -> 192.168.1.13:0               Tunnel  2      0          0         
";
        let out = list_table(
            &TableInfo::default(),
            &reference_table(),
            &numeric(Columns::Default),
            &Numeric,
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn save_matches_the_reference() {
        // Verbatim from ipvs-behaviour.md §8.5.
        let expected = "\
-A -t 10.0.0.100:80 -s wlc -p 360 -M 255.255.255.0
-a -t 10.0.0.100:80 -r 192.168.1.11:80 -m -w 3
-a -t 10.0.0.100:80 -r 192.168.1.12:80 -m -w 1
-A -u 10.0.0.100:53 -s rr
-a -u 10.0.0.100:53 -r 192.168.1.11:53 -g -w 1
-A -f 7 -s sh -b sh-fallback,sh-port
-a -f 7 -r 192.168.1.13:0 -i -w 2 --tun-type ipip
";
        assert_eq!(save(&reference_table(), true, &Numeric), expected);
    }

    #[test]
    fn list_one_service_has_no_version_line() {
        let table = reference_table();
        let expected = "\
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
UDP  10.0.0.100:53 rr
  -> 192.168.1.11:53              Route   1      0          4         
";
        assert_eq!(
            list_service(&table[1], &numeric(Columns::Default), &Numeric),
            expected
        );
    }

    /// Counters and rates straddling every abbreviation boundary.
    fn counters_table() -> Vec<ServiceView> {
        let masq = with(
            server("192.168.1.11:80", ServerMethod::MASQ, (1, 0, 0)),
            |r| {
                r.stats = Stats {
                    conns: 5,
                    inpkts: 999_999_999,
                    outpkts: 99_999_999_999,
                    inbytes: 100_000_000_000,
                    outbytes: 99_999_999_999_999,
                };
                r.rates = Rates {
                    cps: 123_456_789_012,
                    inpps: 7,
                    outpps: 0,
                    inbps: 100_000_000,
                    outbps: 5,
                };
            },
        );
        let web = with(service(tcp("10.0.0.100:80"), "wlc", vec![masq]), |s| {
            s.stats = Stats {
                conns: 12_345,
                inpkts: 99_999_999,
                outpkts: 100_000_000,
                inbytes: 1_000_000_000,
                outbytes: 123_456_789_012_345,
            };
            s.rates = Rates {
                cps: 1,
                inpps: 150_000_000,
                outpps: 0,
                inbps: 2_500_000_000,
                outbps: 42,
            };
        });
        let dns = service(
            udp("[2001:db8::1]:53"),
            "rr",
            vec![server("[2001:db8::2]:53", ServerMethod::ROUTE, (1, 0, 0))],
        );
        vec![dns, web]
    }

    /// The counters table listed with `columns`, abbreviated and then with
    /// `--exact`.
    fn assert_abbreviated_and_exact(columns: Columns, abbreviated: &str, exact: &str) {
        let table = counters_table();
        let info = TableInfo::default();
        let format = numeric(columns);
        assert_eq!(list_table(&info, &table, &format, &Numeric), abbreviated);
        let format = ListFormat {
            exact: true,
            ..format
        };
        assert_eq!(list_table(&info, &table, &format, &Numeric), exact);
    }

    #[test]
    fn stats_abbreviate_and_exact_does_not() {
        let abbreviated = "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n  -> RemoteAddress:Port\nTCP  10.0.0.100:80                   12345 99999999  100000K    1000M     123T\n  -> 192.168.1.11:80                     5  999999K   99999M     100G   99999G\nUDP  [2001:db8::1]:53                    0        0        0        0        0\n  -> [2001:db8::2]:53                    0        0        0        0        0\n";
        let exact = "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n  -> RemoteAddress:Port\nTCP  10.0.0.100:80                   12345 99999999 100000000 1000000000 123456789012345\n  -> 192.168.1.11:80                     5 999999999 99999999999 100000000000 99999999999999\nUDP  [2001:db8::1]:53                    0        0        0        0        0\n  -> [2001:db8::2]:53                    0        0        0        0        0\n";
        assert_abbreviated_and_exact(Columns::Stats, abbreviated, exact);
    }

    #[test]
    fn rates_abbreviate_except_server_cps_and_pps() {
        let abbreviated = "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n  -> RemoteAddress:Port\nTCP  10.0.0.100:80                       1  150000K        0    2500M       42\n  -> 192.168.1.11:80              123456789012        7        0  100000K        5\nUDP  [2001:db8::1]:53                    0        0        0        0        0\n  -> [2001:db8::2]:53                    0        0        0        0        0\n";
        let exact = "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n  -> RemoteAddress:Port\nTCP  10.0.0.100:80                       1 150000000        0 2500000000       42\n  -> 192.168.1.11:80              123456789012        7        0 100000000        5\nUDP  [2001:db8::1]:53                    0        0        0        0        0\n  -> [2001:db8::2]:53                    0        0        0        0        0\n";
        assert_abbreviated_and_exact(Columns::Rate, abbreviated, exact);
    }

    #[test]
    fn largenum_boundaries() {
        let cases: [(u64, &str, &str); 12] = [
            (0, "        0", "        0"),
            (99_999_999, " 99999999", " 99999999"),
            (100_000_000, "  100000K", " 100000000"),
            (999_999_999, "  999999K", " 999999999"),
            (1_000_000_000, "    1000M", " 1000000000"),
            (99_999_999_999, "   99999M", " 99999999999"),
            (100_000_000_000, "     100G", " 100000000000"),
            (99_999_999_999_999, "   99999G", " 99999999999999"),
            (100_000_000_000_000, "     100T", " 100000000000000"),
            (99_999_999_999_999_999, "   99999T", " 99999999999999999"),
            (100_000_000_000_000_000, "  100000T", " 100000000000000000"),
            (u64::MAX, "18446744T", " 18446744073709551615"),
        ];
        for (value, abbreviated, exact) in cases {
            assert_eq!(largenum(value, false), abbreviated, "{value}");
            assert_eq!(largenum(value, true), exact, "{value} exact");
        }
    }

    /// Thresholds, persistence details, tunnel kinds, a wrapping sort.
    fn details_table() -> Vec<ServiceView> {
        let route = with(
            server("192.168.1.12:80", ServerMethod::ROUTE, (0, 7, 3)),
            |r| {
                r.persistent_conns = 2;
                r.u_threshold = 100;
                r.l_threshold = 50;
            },
        );
        let gre = with(
            server(
                "10.0.0.5:80",
                ServerMethod::Encapsulated(Encapsulation::Gre {
                    checksum: TunnelChecksum::None,
                }),
                (1, 1, 2),
            ),
            |r| r.persistent_conns = 3,
        );
        let gue = server(
            "192.168.1.11:80",
            ServerMethod::Encapsulated(Encapsulation::Gue {
                port: 6080,
                checksum: TunnelChecksum::Checksum,
            }),
            (5, 0, 0),
        );
        let web = with(
            service(tcp("10.0.0.100:80"), "rr", vec![route, gre, gue]),
            |s| s.persistent = Some(300),
        );
        let sip = with(
            service(
                udp("10.0.0.100:53"),
                "sh",
                vec![server("192.168.1.11:53", ServerMethod::MASQ, (1, 0, 9))],
            ),
            |s| {
                s.sched_flags = SchedFlags::FLAG_3;
                s.persistent = Some(60);
                s.persistence_engine = Some("sip".into());
                s.one_packet = true;
            },
        );
        vec![sip, web]
    }

    #[test]
    fn column_modes() {
        let header = "IP Virtual Server version 1.2.1 (size=4096)\n";
        let cases = [
            (
                Columns::Thresholds,
                "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n  -> RemoteAddress:Port\nTCP  10.0.0.100:80 rr persistent 300\n  -> 192.168.1.11:80              0          0          0          0         \n  -> 192.168.1.12:80              100        50         7          3         \n  -> 10.0.0.5:80                  0          0          1          2         \nUDP  10.0.0.100:53 sh () persistent 60 pe sip ops\n  -> 192.168.1.11:53              0          0          0          9         \n",
            ),
            (
                Columns::PersistentConn,
                "Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn \n  -> RemoteAddress:Port\nTCP  10.0.0.100:80 rr persistent 300\n  -> 192.168.1.11:80              5         0           0          0         \n  -> 192.168.1.12:80              0         2           7          3         \n  -> 10.0.0.5:80                  1         3           1          2         \nUDP  10.0.0.100:53 sh () persistent 60 pe sip ops\n  -> 192.168.1.11:53              1         0           0          9         \n",
            ),
            (
                Columns::TunInfo,
                "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\nTCP  10.0.0.100:80 rr persistent 300\n  -> 192.168.1.11:80              Tunnel  gue:6080:+c   5      0          0         \n  -> 192.168.1.12:80              Route   n/a           0      7          3         \n  -> 10.0.0.5:80                  Tunnel  gre:-c        1      1          2         \nUDP  10.0.0.100:53 sh () persistent 60 pe sip ops\n  -> 192.168.1.11:53              Masq    n/a           1      0          9         \n",
            ),
            (
                Columns::Default,
                "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\nTCP  10.0.0.100:80 rr persistent 300\n  -> 192.168.1.11:80              Tunnel  5      0          0         \n  -> 192.168.1.12:80              Route   0      7          3         \n  -> 10.0.0.5:80                  Tunnel  1      1          2         \nUDP  10.0.0.100:53 sh () persistent 60 pe sip ops\n  -> 192.168.1.11:53              Masq    1      0          9         \n",
            ),
        ];
        let table = details_table();
        for (columns, body) in cases {
            let out = list_table(&TableInfo::default(), &table, &numeric(columns), &Numeric);
            assert_eq!(out, format!("{header}{body}"), "{columns:?}");
        }
    }

    #[test]
    fn nosort_keeps_the_directors_order() {
        let format = ListFormat {
            sort: false,
            ..numeric(Columns::Default)
        };
        let out = list_table(&TableInfo::default(), &details_table(), &format, &Numeric);
        let lines: Vec<&str> = out.lines().skip(3).map(str::trim_end).collect();
        assert_eq!(
            lines,
            [
                "UDP  10.0.0.100:53 sh () persistent 60 pe sip ops",
                "  -> 192.168.1.11:53              Masq    1      0          9",
                "TCP  10.0.0.100:80 rr persistent 300",
                "  -> 192.168.1.12:80              Route   0      7          3",
                "  -> 10.0.0.5:80                  Tunnel  1      1          2",
                "  -> 192.168.1.11:80              Tunnel  5      0          0",
            ]
        );
    }

    #[test]
    fn save_details() {
        let local = server("10.0.0.100:5060", ServerMethod::Local, (1, 0, 0));
        let gue = server(
            "192.168.1.20:5060",
            ServerMethod::Encapsulated(Encapsulation::Gue {
                port: 6080,
                checksum: TunnelChecksum::Remote,
            }),
            (3, 0, 0),
        );
        let gre = with(
            server(
                "192.168.1.21:5060",
                ServerMethod::Encapsulated(Encapsulation::Gre {
                    checksum: TunnelChecksum::Checksum,
                }),
                (4, 0, 0),
            ),
            |r| r.u_threshold = 9,
        );
        let table = vec![
            with(
                service(
                    tcp("[2001:db8::1]:443"),
                    "wlc",
                    vec![with(
                        server("[2001:db8::10]:443", ServerMethod::MASQ, (2, 0, 0)),
                        |r| {
                            r.u_threshold = 10;
                            r.l_threshold = 5;
                        },
                    )],
                ),
                |s| {
                    s.persistent = Some(1800);
                    s.netmask = Netmask::V6(64);
                },
            ),
            service(
                ServiceKey::Fwmark {
                    mark: 9,
                    family: AddressFamily::Inet6,
                },
                "rr",
                vec![],
            ),
            with(
                service(udp("10.0.0.100:5060"), "sh", vec![local, gue, gre]),
                |s| {
                    s.persistent = Some(60);
                    s.persistence_engine = Some("sip".into());
                    s.one_packet = true;
                    s.sched_flags = SchedFlags::FLAG_3;
                },
            ),
            with(service(tcp("10.0.0.1:80"), "rr", vec![]), |s| {
                // A mask without persistence is not saved.
                s.netmask = Netmask::V4("255.255.0.0".parse().unwrap());
            }),
        ];
        let expected = "\
-A -t 10.0.0.1:80 -s rr
-A -u 10.0.0.100:5060 -s sh -p 60 --pe sip -o -b 
-a -u 10.0.0.100:5060 -r 192.168.1.20:5060 -i -w 3 --tun-type gue --tun-port 6080 --tun-remcsum
-a -u 10.0.0.100:5060 -r 192.168.1.21:5060 -i -w 4 --tun-type gre --tun-csum
-a -u 10.0.0.100:5060 -r 10.0.0.100:5060 -g -w 1
-A -t [2001:db8::1]:443 -s wlc -p 1800 -M 64
-a -t [2001:db8::1]:443 -r [2001:db8::10]:443 -m -w 2
-A -f 9 -6 -s rr
";
        assert_eq!(save(&table, true, &Numeric), expected);
    }

    #[test]
    fn services_sort_as_ipvsadm_with_wrapping_addresses() {
        let table = vec![
            service(
                ServiceKey::Fwmark {
                    mark: 1,
                    family: AddressFamily::Inet,
                },
                "rr",
                vec![],
            ),
            service(tcp("[::1]:80"), "rr", vec![]),
            service(udp("10.0.0.1:53"), "rr", vec![]),
            service(tcp("10.0.0.1:80"), "rr", vec![]),
            service(tcp("192.168.0.1:80"), "rr", vec![]),
            service(tcp("192.168.0.1:22"), "rr", vec![]),
        ];
        // 10.0.0.1 after 192.168.0.1: 0x0a000001 - 0xc0a80001 wraps positive.
        let expected = "\
-A -t 192.168.0.1:22 -s rr
-A -t 192.168.0.1:80 -s rr
-A -t 10.0.0.1:80 -s rr
-A -u 10.0.0.1:53 -s rr
-A -t [::1]:80 -s rr
-A -f 1 -s rr
";
        assert_eq!(save(&table, true, &Numeric), expected);
    }

    #[test]
    fn names_replace_numbers_and_long_ones_are_cut() {
        struct Fixed;
        impl Names for Fixed {
            fn host(&self, addr: IpAddr) -> Option<String> {
                match addr.to_string().as_str() {
                    "203.0.113.10" => Some("a-very-long-host-name.example".into()),
                    "192.168.1.11" => Some("backend-number-one.example".into()),
                    _ => None,
                }
            }
            fn service(&self, port: u16, protocol: IpvsProtocol) -> Option<String> {
                (port == 80 && protocol == IpvsProtocol::TCP).then(|| "http".into())
            }
        }
        let table = vec![service(
            tcp("203.0.113.10:80"),
            "wlc",
            vec![server("192.168.1.11:80", ServerMethod::ROUTE, (1, 0, 0))],
        )];
        let expected = "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\nTCP  a-very-long-host-name.exampl wlc\n  -> backend-number-one.example:h Route   1      0          0         \n";
        let format = ListFormat::default();
        assert_eq!(
            list_table(&TableInfo::default(), &table, &format, &Fixed),
            expected
        );
        // -n ignores the names; -S without -n uses them, uncut.
        assert!(
            list_table(
                &TableInfo::default(),
                &table,
                &numeric(Columns::Default),
                &Fixed
            )
            .contains("TCP  203.0.113.10:80 wlc\n")
        );
        assert_eq!(
            save(&table, false, &Fixed),
            "-A -t a-very-long-host-name.example:http -s wlc\n-a -t a-very-long-host-name.example:http -r backend-number-one.example:http -g -w 1\n"
        );
    }

    fn connections() -> Vec<ConnectionView> {
        let conn =
            |protocol, client: &str, virt: &str, dest: &str, state: &str, expires| ConnectionView {
                protocol,
                client: sock(client),
                virtual_addr: sock(virt),
                destination: sock(dest),
                state: state.to_owned(),
                expires_secs: expires,
                persistence_engine: None,
            };
        vec![
            conn(
                IpvsProtocol::TCP,
                "203.0.113.7:40001",
                "10.0.0.100:80",
                "192.168.1.11:80",
                "ESTABLISHED",
                899,
            ),
            conn(
                IpvsProtocol::UDP,
                "198.51.100.2:53000",
                "10.0.0.100:53",
                "192.168.1.11:53",
                "UDP",
                5,
            ),
            conn(
                IpvsProtocol::TCP,
                "[2001:db8:1::7]:40002",
                "[2001:db8::1]:80",
                "[2001:db8::2]:80",
                "SYN_RECV",
                3725,
            ),
        ]
    }

    #[test]
    fn the_ha_line_names_the_state_the_master_and_the_addresses() {
        let mut ha = xvs_proto::control::HaView {
            node: Some("director2".into()),
            state: "backup".into(),
            since_ms: 2_140,
            reason: "started, listening for a master".into(),
            vrid: 51,
            priority: 100,
            family: "ipv4".into(),
            interface: Some("d-cli".into()),
            source: Some("198.51.100.12".into()),
            mode: "multicast".into(),
            auth: "hmac".into(),
            advert_interval_ms: 100,
            master: Some(xvs_proto::control::HaPeer {
                address: "198.51.100.11".into(),
                priority: 150,
            }),
            last_advert_ms: Some(40),
            held: Vec::new(),
        };
        assert_eq!(
            ha_line(&ha),
            "HA director2: BACKUP (vrid 51, priority 100, ipv4 multicast on d-cli, advert 100 ms, auth hmac) since 2.1s: started, listening for a master\n  master 198.51.100.11 (priority 150), last advert 40 ms ago\n"
        );
        ha.state = "master".into();
        ha.master = None;
        ha.held = vec!["203.0.113.10/32".into(), "192.0.2.1/24".into()];
        assert!(ha_line(&ha).starts_with("HA director2: MASTER "));
        assert!(ha_line(&ha).ends_with("\n  holds 203.0.113.10/32, 192.0.2.1/24\n"));
    }

    #[test]
    fn connection_entries() {
        let expected = "IPVS connection entries\npro expire state       source             virtual            destination\nTCP 14:59  ESTABLISHED 203.0.113.7:40001  10.0.0.100:80      192.168.1.11:80\nUDP 00:05  UDP         198.51.100.2:53000 10.0.0.100:53      192.168.1.11:53\nTCP 62:05  SYN_RECV    [2001:db8:1::7]:40002 [2001:db8::1]:80   [2001:db8::2]:80\n";
        assert_eq!(
            list_connections(&connections(), &numeric(Columns::Default), &Numeric),
            expected
        );
    }

    #[test]
    fn connection_entries_with_persistence_engine() {
        let mut conns = connections();
        conns.truncate(1);
        conns.push(ConnectionView {
            protocol: IpvsProtocol::UDP,
            client: sock("198.51.100.2:5060"),
            virtual_addr: sock("10.0.0.100:5060"),
            destination: sock("192.168.1.11:5060"),
            state: "UDP".into(),
            expires_secs: 60,
            persistence_engine: Some(("sip".into(), "call-42@example".into())),
        });
        let expected = "IPVS connection entries\npro expire state       source             virtual            destination        pe name          pe_data\nTCP 14:59  ESTABLISHED 203.0.113.7:40001  10.0.0.100:80      192.168.1.11:80\nUDP 01:00  UDP         198.51.100.2:5060  10.0.0.100:5060    192.168.1.11:5060 sip                call-42@example\n";
        assert_eq!(
            list_connections(&conns, &numeric(Columns::PersistentConn), &Numeric),
            expected
        );
        // Without --persistent-conn the engine data is not shown.
        assert!(!list_connections(&conns, &numeric(Columns::Default), &Numeric).contains("sip"));
    }

    #[test]
    fn timeouts_and_daemons() {
        assert_eq!(
            list_timeouts(&Timeouts::default()),
            "Timeout (tcp tcpfin udp): 900 120 300\n"
        );
        assert_eq!(
            list_timeouts(&Timeouts {
                tcp: 7200,
                tcp_fin: 0,
                udp: 1
            }),
            "Timeout (tcp tcpfin udp): 7200 0 1\n"
        );
        let master = DaemonSpec {
            state: DaemonState::Master,
            mcast_interface: Some("eth0".into()),
            syncid: Some(0),
            sync_maxlen: None,
            mcast_group: None,
            mcast_port: None,
            mcast_ttl: None,
        };
        let backup = DaemonSpec {
            state: DaemonState::Backup,
            mcast_interface: Some("eth1".into()),
            syncid: Some(9),
            sync_maxlen: Some(1472),
            mcast_group: Some("224.0.0.81".parse().unwrap()),
            mcast_port: Some(8848),
            mcast_ttl: Some(1),
        };
        assert_eq!(
            list_daemons(&[master, backup]),
            "master sync daemon (mcast=eth0, syncid=0)\nbackup sync daemon (mcast=eth1, syncid=9, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x5027_ab1e),
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        })]

        /// The merge sort returns a permutation whatever the comparator
        /// does, and when every address is below 2^31 (no wrap) the order
        /// is plain (address, port) ascending.
        #[test]
        fn server_sort(addrs in proptest::collection::vec((proptest::prelude::any::<u32>(), 0u16..4), 0..40),
                       low in proptest::prelude::any::<bool>()) {
            let servers: Vec<ServerView> = addrs
                .iter()
                .map(|&(ip, port)| {
                    let ip = if low { ip >> 1 } else { ip };
                    let addr = SocketAddr::new(IpAddr::V4(ip.into()), port);
                    server(&addr.to_string(), ServerMethod::ROUTE, (1, 0, 0))
                })
                .collect();
            let mut sorted: Vec<&ServerView> = servers.iter().collect();
            sort_servers(&mut sorted);
            let mut got: Vec<SocketAddr> = sorted.iter().map(|s| s.addr).collect();
            let mut want: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
            if low {
                want.sort();
                proptest::prop_assert_eq!(&got, &want);
            } else {
                got.sort();
                want.sort();
                proptest::prop_assert_eq!(got, want);
            }
        }
    }
}
