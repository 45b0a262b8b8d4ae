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
//! | `-L --daemon` | [`list_daemons`] |
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
    AddressFamily, ForwardMethod, Netmask, Protocol, SchedFlags, ServiceKey, Timeouts, TunnelType,
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
    pub method: ForwardMethod,
    /// Weight.
    pub weight: u32,
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
    /// Protocol.
    pub protocol: Protocol,
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
    fn service(&self, port: u16, protocol: Protocol) -> Option<String>;
}

/// [`Names`] that knows none: every listing is numeric.
#[derive(Debug, Clone, Copy, Default)]
pub struct Numeric;

impl Names for Numeric {
    fn host(&self, _addr: IpAddr) -> Option<String> {
        None
    }
    fn service(&self, _port: u16, _protocol: Protocol) -> Option<String> {
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
        let svc = match service.key {
            ServiceKey::Fwmark { mark, family } => match family {
                AddressFamily::Inet => format!("-f {mark}"),
                AddressFamily::Inet6 => format!("-f {mark} -6"),
            },
            ServiceKey::Address { protocol, addr } => format!(
                "{} {}",
                protocol.save_option(),
                addr_port(addr, protocol, numeric, names)
            ),
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
                server.weight
            );
            if let ForwardMethod::Tunnel(tunnel) = server.method {
                let _ = write!(out, " --tun-type {}", tunnel.name());
                match tunnel {
                    TunnelType::Ipip => {}
                    TunnelType::Gue { port, checksum } => {
                        let _ = write!(out, " --tun-port {port} {}", checksum.option());
                    }
                    TunnelType::Gre { checksum } => {
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
    let with_pe = format.columns == Columns::PersistentConn;
    let mut out = String::from("IPVS connection entries\n");
    if with_pe {
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
    for conn in connections {
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
    out
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
            daemon.mcast_interface, daemon.syncid
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
fn addr_port(addr: SocketAddr, protocol: Protocol, numeric: bool, names: &dyn Names) -> String {
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
    let name = match service.key {
        ServiceKey::Fwmark { mark, family } => match family {
            AddressFamily::Inet => format!("FWM  {mark}"),
            AddressFamily::Inet6 => format!("FWM  {mark} IPv6"),
        },
        ServiceKey::Address { protocol, addr } => {
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
fn tunnel_info(method: ForwardMethod) -> String {
    match method {
        ForwardMethod::Tunnel(TunnelType::Ipip) => "ipip".to_owned(),
        ForwardMethod::Tunnel(TunnelType::Gue { port, checksum }) => {
            format!("gue:{port}:{}", checksum.short())
        }
        ForwardMethod::Tunnel(TunnelType::Gre { checksum }) => format!("gre:{}", checksum.short()),
        ForwardMethod::Masq | ForwardMethod::Local | ForwardMethod::Route => "n/a".to_owned(),
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
        ServiceKey::Address { .. } => 0,
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
    match (a.key, b.key) {
        (ServiceKey::Address { addr: x, .. }, ServiceKey::Address { addr: y, .. }) => {
            compare_addrs(x, y)
        }
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
