//! The cluster configuration file (TOML): interfaces, virtual services and
//! their real servers, connection-table capacity, timeouts and — for replay
//! and tests — static neighbours. `director/CONFIG.md` documents every key.
//!
//! # Contract
//! * [`ClusterConfig::load`] / [`ClusterConfig::parse`] return a config that
//!   has passed every check below, or a [`ConfigError`] naming the file,
//!   the line and column, the field path (`services[1].real_servers[0].weight`),
//!   what is wrong and what to do. Unknown keys are errors
//!   (`deny_unknown_fields`), so a typo never silently means "default".
//! * Value checks (ranges, MAC and address syntax, method words) run while
//!   deserialising and carry toml's span; cross-field checks (duplicates,
//!   address families, DR/TUN ports, interface references, thresholds)
//!   run afterwards and find their line by the field's path.
//! * The rules follow ipvsadm and the kernel: a real server's port
//!   defaults to the service's; DR and TUN cannot change the port; NAT and
//!   DR need the real server in the VIP's address family (only tunnelling
//!   may cross families); a port-0 service must be persistent; a lower
//!   threshold above the upper one is refused; `sh-*`/`mh-*` flags need
//!   their scheduler. The scheduler name is kept as written; the registry of
//!   the scheduler crate validates it when services are built.
//! * `health` tables (`[services.health]` and a real server's overrides)
//!   are [`crate::health::config`]'s: their values are checked while
//!   deserialising, their combinations by
//!   [`check_service`](crate::health::config::check_service).
//! * [`ClusterConfig::to_toml`] writes a config back in the same format, so
//!   `parse(to_toml(c)) == c`.

pub mod location;

use core::fmt;
use core::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use crate::conn::ForwardMethod;
use crate::conn::state::{TcpState, Timeouts};
use crate::health::config::{HealthConfig, HealthProblem};
use location::{LineCol, PathStep, line_col, offset_of, path_at, render_path};

// ---- the configuration ------------------------------------------------------

/// The whole cluster configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The director's interfaces, in order (pcapng interface numbers in
    /// `xvs-replay` follow this order).
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    /// Connection-table sizing.
    #[serde(default)]
    pub conn_table: ConnTableConfig,
    /// Protocol timeouts.
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// Virtual services, in order.
    #[serde(default)]
    pub services: Vec<VirtualService>,
    /// Static neighbours (IP → MAC per interface) for replay and tests.
    #[serde(default)]
    pub neighbours: Vec<Neighbour>,
    /// The control socket, reloading, metrics.
    #[serde(default)]
    pub control: ControlConfig,
}

/// How the live director is operated (`[control]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// The control socket `xvsadm` talks to (default
    /// `/run/xvs/control.sock`; `--control-socket` overrides it).
    #[serde(default)]
    pub socket: Option<std::path::PathBuf>,
    /// Reload the file when it changes (ldirectord's `autoreload`), as
    /// well as on SIGHUP.
    #[serde(default)]
    pub autoreload: bool,
    /// Serve Prometheus metrics over HTTP on this address (off unless
    /// given; `--metrics-listen` overrides it).
    #[serde(default)]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// Which side of the director an interface faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InterfaceRole {
    /// Towards the clients (VIPs live here).
    Client,
    /// Towards the real servers.
    Server,
}

/// One network interface of the director.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    /// Kernel name (`eth0`).
    pub name: String,
    /// Its MAC address; absent: the live director reads it from the
    /// kernel (`xvs-replay` needs it written).
    #[serde(
        default,
        with = "opt_mac_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub mac: Option<MacAddr>,
    /// Client side or server side.
    pub role: InterfaceRole,
    /// Its addresses with prefix lengths (`198.51.100.1/24`); empty: the
    /// live director reads them from the kernel.
    #[serde(default)]
    pub addresses: Vec<IpNet>,
    /// MTU in bytes (68–65535); absent: the kernel's in the live director,
    /// [`DEFAULT_MTU`] in `xvs-replay`.
    #[serde(
        default,
        deserialize_with = "de_opt_mtu",
        skip_serializing_if = "Option::is_none"
    )]
    pub mtu: Option<u16>,
    /// Next hops (at most one per address family) for destinations that
    /// are on no interface's subnet: the router towards clients, or towards
    /// real servers on other subnets (VS/TUN). Empty: the live director
    /// takes the kernel's default routes through this interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<IpAddr>,
}

/// The MTU of an interface whose `mtu` neither the config nor the kernel
/// gave (replay and tests).
pub const DEFAULT_MTU: u16 = 1500;

impl Interface {
    /// The MTU to use: the configured (or discovered) one, else
    /// [`DEFAULT_MTU`].
    #[must_use]
    pub fn effective_mtu(&self) -> u16 {
        self.mtu.unwrap_or(DEFAULT_MTU)
    }
}

/// Connection-table settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnTableConfig {
    /// How many connections (and persistence templates) the table holds;
    /// fixed at start. Default 1 048 576 (about 104 MiB).
    #[serde(default = "default_capacity", deserialize_with = "de_capacity")]
    pub capacity: u32,
    /// IPVS's `expire_nodest_conn`: when on, a packet of a connection
    /// whose real server was deleted expires that connection (the client
    /// must reconnect); when off (the default, as in IPVS) such
    /// connections keep going to the deleted server until they end.
    #[serde(default)]
    pub expire_nodest_conn: bool,
    /// How many destinations (real servers and fallbacks, each distinct
    /// address:port of each service ever configured) the director can
    /// number; fixed at start, as every worker's per-destination counters
    /// are allocated for all of them. Default
    /// [`DEFAULT_MAX_DESTINATIONS`](crate::pipeline::DEFAULT_MAX_DESTINATIONS).
    #[serde(
        default = "default_max_destinations",
        deserialize_with = "de_max_destinations"
    )]
    pub max_destinations: u32,
}

const fn default_capacity() -> u32 {
    1 << 20
}

const fn default_max_destinations() -> u32 {
    crate::pipeline::DEFAULT_MAX_DESTINATIONS
}

/// The largest `max_destinations`: 40 bytes of counters per destination
/// and worker, so 40 MiB per worker at this bound.
pub const MAX_MAX_DESTINATIONS: u32 = 1 << 20;

impl Default for ConnTableConfig {
    fn default() -> Self {
        Self {
            capacity: default_capacity(),
            expire_nodest_conn: false,
            max_destinations: default_max_destinations(),
        }
    }
}

/// Timeouts in seconds, with `ipvsadm --set tcp tcpfin udp` semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// ESTABLISHED timeout (ipvsadm's `tcp`); 0 keeps the default (900).
    #[serde(default)]
    pub tcp: u32,
    /// FIN_WAIT timeout (ipvsadm's `tcpfin`); 0 keeps the default (120).
    #[serde(default)]
    pub tcpfin: u32,
    /// UDP timeout (ipvsadm's `udp`); 0 keeps the default (300).
    #[serde(default)]
    pub udp: u32,
    /// ICMP echo timeout; 0 keeps the default (60).
    #[serde(default)]
    pub icmp: u32,
    /// Per-state TCP overrides; `tcp`/`tcpfin` win over `established`/`fin_wait`.
    #[serde(default)]
    pub tcp_states: TcpStateTimeouts,
}

/// Optional per-state TCP timeouts in seconds (0 or absent = default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(
    missing_docs,
    reason = "one field per IPVS TCP state, named as ipvsadm -Lc prints them"
)]
pub struct TcpStateTimeouts {
    #[serde(default)]
    pub none: u32,
    #[serde(default)]
    pub established: u32,
    #[serde(default)]
    pub syn_sent: u32,
    #[serde(default)]
    pub syn_recv: u32,
    #[serde(default)]
    pub fin_wait: u32,
    #[serde(default)]
    pub time_wait: u32,
    #[serde(default)]
    pub close: u32,
    #[serde(default)]
    pub close_wait: u32,
    #[serde(default)]
    pub last_ack: u32,
    #[serde(default)]
    pub listen: u32,
    #[serde(default)]
    pub synack: u32,
}

impl TimeoutsConfig {
    /// The effective timeouts: kernel defaults, then per-state overrides,
    /// then `tcp`/`tcpfin`/`udp` as `ipvsadm --set` applies them.
    #[must_use]
    pub fn effective(&self) -> Timeouts {
        let mut t = Timeouts::default();
        let s = &self.tcp_states;
        let overrides = [
            (TcpState::None, s.none),
            (TcpState::Established, s.established),
            (TcpState::SynSent, s.syn_sent),
            (TcpState::SynRecv, s.syn_recv),
            (TcpState::FinWait, s.fin_wait),
            (TcpState::TimeWait, s.time_wait),
            (TcpState::Close, s.close),
            (TcpState::CloseWait, s.close_wait),
            (TcpState::LastAck, s.last_ack),
            (TcpState::Listen, s.listen),
            (TcpState::SynAck, s.synack),
        ];
        for (state, secs) in overrides {
            if secs != 0 {
                t.tcp[state as usize] = secs;
            }
        }
        if self.icmp != 0 {
            t.icmp = self.icmp;
        }
        t.set(self.tcp, self.tcpfin, self.udp);
        t
    }
}

/// Transport protocol of a virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceProtocol {
    /// `-t`.
    Tcp,
    /// `-u`.
    Udp,
}

/// Scheduler flags (`ipvsadm -b`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SchedFlag {
    /// sh: fall back to another server when the hashed one is unavailable.
    #[serde(rename = "sh-fallback")]
    ShFallback,
    /// sh: hash the source port too.
    #[serde(rename = "sh-port")]
    ShPort,
    /// mh: fall back to another server when the hashed one is unavailable.
    #[serde(rename = "mh-fallback")]
    MhFallback,
    /// mh: hash the source port too.
    #[serde(rename = "mh-port")]
    MhPort,
}

impl SchedFlag {
    /// The ipvsadm word.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::ShFallback => "sh-fallback",
            Self::ShPort => "sh-port",
            Self::MhFallback => "mh-fallback",
            Self::MhPort => "mh-port",
        }
    }

    /// The scheduler the flag belongs to.
    #[must_use]
    pub const fn scheduler(self) -> &'static str {
        match self {
            Self::ShFallback | Self::ShPort => "sh",
            Self::MhFallback | Self::MhPort => "mh",
        }
    }
}

/// Persistence (`ipvsadm -p TIMEOUT -M NETMASK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persistence {
    /// Template timeout in seconds, 1–2678400 (31 days); default 360 as ipvsadm.
    #[serde(default = "default_persistence", deserialize_with = "de_persistence")]
    pub timeout: u32,
    /// Client netmask as a prefix length. Written as a dotted IPv4 mask
    /// (`"255.255.255.0"`) or a prefix length (`24`, `64`); default: the
    /// whole address (32 or 128).
    #[serde(default, deserialize_with = "de_netmask")]
    pub netmask: Option<u8>,
}

const fn default_persistence() -> u32 {
    360
}

/// A virtual service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualService {
    /// `tcp` or `udp`.
    pub proto: ServiceProtocol,
    /// Virtual address, IPv4 or IPv6.
    pub vip: IpAddr,
    /// Virtual port; 0 = every port (the service must then be persistent).
    #[serde(deserialize_with = "de_port")]
    pub port: u16,
    /// Scheduler name as ipvsadm spells it; default `wlc`.
    #[serde(default = "default_scheduler")]
    pub scheduler: String,
    /// Scheduler flags.
    #[serde(default)]
    pub sched_flags: Vec<SchedFlag>,
    /// Persistence, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<Persistence>,
    /// Schedule on any packet, not only a TCP SYN (`sloppy_tcp`; needed
    /// after a failover).
    #[serde(default)]
    pub sloppy: bool,
    /// The server used when no real server is available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<RealServer>,
    /// Real servers, in the order written.
    #[serde(default)]
    pub real_servers: Vec<RealServer>,
    /// How its real servers are health-checked (`[services.health]`);
    /// absent: not checked, always in rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthConfig>,
}

fn default_scheduler() -> String {
    "wlc".to_owned()
}

/// A real server (or a fallback server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealServer {
    /// Its address.
    pub address: IpAddr,
    /// Its port; absent = the service's port.
    #[serde(
        default,
        deserialize_with = "de_opt_port",
        skip_serializing_if = "Option::is_none"
    )]
    pub port: Option<u16>,
    /// Forwarding method: `nat`, `dr` or `tun` (ipvsadm's `masq`, `route`,
    /// `gate`, `tunnel`, `ipip` too); default `dr` as ipvsadm.
    #[serde(default = "default_method", with = "method_serde")]
    pub method: ForwardMethod,
    /// Weight 0–65535, default 1; 0 quiesces the server.
    #[serde(default = "default_weight", deserialize_with = "de_weight")]
    pub weight: u16,
    /// Upper connection threshold (`-x`), 0 = none.
    #[serde(default, deserialize_with = "de_threshold")]
    pub u_threshold: u32,
    /// Lower connection threshold (`-y`), 0 = none.
    #[serde(default, deserialize_with = "de_threshold")]
    pub l_threshold: u32,
    /// This server's overrides of the service's health table
    /// (`[services.real_servers.health]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthConfig>,
}

const fn default_method() -> ForwardMethod {
    ForwardMethod::DirectRouting
}

const fn default_weight() -> u16 {
    1
}

impl RealServer {
    /// The port connections go to: its own, else the service's.
    #[must_use]
    pub fn effective_port(&self, service_port: u16) -> u16 {
        self.port.unwrap_or(service_port)
    }
}

/// A static neighbour entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Neighbour {
    /// The interface it is reached on (one of `interfaces[].name`).
    pub interface: String,
    /// Its IP address.
    pub address: IpAddr,
    /// Its MAC address.
    #[serde(with = "mac_text")]
    pub mac: MacAddr,
}

/// MAC addresses are the packet layer's type, written as text
/// (`02:00:5e:00:53:01`) in the file.
pub use xvs_packet::ethernet::MacAddr;

mod opt_mac_text {
    use super::{Deserializer, MacAddr, Serializer};

    pub fn serialize<S: Serializer>(mac: &Option<MacAddr>, s: S) -> Result<S::Ok, S::Error> {
        match mac {
            Some(mac) => super::mac_text::serialize(mac, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<MacAddr>, D::Error> {
        super::mac_text::deserialize(d).map(Some)
    }
}

mod mac_text {
    use super::{Deserialize, Deserializer, MacAddr, Serializer, de};

    pub fn serialize<S: Serializer>(mac: &MacAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(mac)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MacAddr, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|e| de::Error::custom(format!("\"{text}\" is {e}")))
    }
}

/// An interface address with its prefix length (`198.51.100.1/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length (≤ 32 for IPv4, ≤ 128 for IPv6).
    pub prefix_len: u8,
}

impl IpNet {
    /// Whether `other` is inside this network.
    #[must_use]
    pub fn contains(&self, other: IpAddr) -> bool {
        match (self.addr, other) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl core::str::FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)));
        let addr: IpAddr = addr.parse().map_err(|_| {
            format!("\"{s}\" is not an address: write an IPv4 or IPv6 address with its prefix length, like \"198.51.100.1/24\" or \"2001:db8::1/64\"")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("\"{s}\" has a bad prefix length: use 0 to {max}"))?,
        };
        Ok(Self { addr, prefix_len })
    }
}

impl Serialize for IpNet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// `nat`/`dr`/`tun` and ipvsadm's words for them.
mod method_serde {
    use super::*;

    pub(super) fn serialize<S: Serializer>(m: &ForwardMethod, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match m {
            ForwardMethod::Nat => "nat",
            ForwardMethod::DirectRouting => "dr",
            ForwardMethod::Tunnel => "tun",
        })
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ForwardMethod, D::Error> {
        let s = String::deserialize(d)?;
        parse_method(&s).ok_or_else(|| {
            de::Error::custom(format!(
                "\"{s}\" is not a forwarding method: use \"nat\", \"dr\" or \"tun\" (ipvsadm's masq, route/gate, tunnel/ipip are accepted too)"
            ))
        })
    }
}

/// Parses a forwarding method word (`nat`, `masq`, `dr`, `route`, `gate`,
/// `tun`, `tunnel`, `ipip`; any case).
#[must_use]
pub fn parse_method(word: &str) -> Option<ForwardMethod> {
    match word.to_ascii_lowercase().as_str() {
        "nat" | "masq" | "masquerading" => Some(ForwardMethod::Nat),
        "dr" | "route" | "gate" | "gatewaying" | "direct" => Some(ForwardMethod::DirectRouting),
        "tun" | "tunnel" | "ipip" => Some(ForwardMethod::Tunnel),
        _ => None,
    }
}

// ---- value checks with operator messages ----------------------------------------

fn int_in<'de, D: Deserializer<'de>>(
    d: D,
    min: i64,
    max: i64,
    what: &str,
) -> Result<i64, D::Error> {
    let v = i64::deserialize(d)?;
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(de::Error::custom(format!(
            "{v} is not a valid {what}: use an integer from {min} to {max}"
        )))
    }
}

fn de_weight<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    int_in(d, 0, 65535, "weight").map(|v| v as u16)
}

fn de_port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    int_in(d, 0, 65535, "port").map(|v| v as u16)
}

fn de_opt_port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    de_port(d).map(Some)
}

fn de_threshold<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    int_in(d, 0, i64::from(i32::MAX), "connection threshold").map(|v| v as u32)
}

fn de_opt_mtu<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    int_in(d, 68, 65535, "MTU").map(|v| Some(v as u16))
}

fn de_capacity<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = i64::deserialize(d)?;
    if v == 0 {
        return Err(de::Error::custom(
            "a connection table of capacity 0 cannot hold any connection: use at least 1 (e.g. 1048576)",
        ));
    }
    let max = i64::from(crate::conn::ConnTable::MAX_CAPACITY);
    if (1..=max).contains(&v) {
        Ok(v as u32)
    } else {
        Err(de::Error::custom(format!(
            "{v} is not a valid capacity: use an integer from 1 to {max}"
        )))
    }
}

fn de_max_destinations<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    int_in(
        d,
        1,
        i64::from(MAX_MAX_DESTINATIONS),
        "number of destinations",
    )
    .map(|v| v as u32)
}

fn de_persistence<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    int_in(d, 1, 2_678_400, "persistence timeout (seconds)").map(|v| v as u32)
}

fn de_netmask<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Mask {
        Prefix(i64),
        Dotted(String),
    }
    let bad = |what: &str| {
        de::Error::custom(format!(
            "{what} is not a netmask: write a dotted IPv4 mask like \"255.255.255.0\" or a prefix length from 0 to 128"
        ))
    };
    match Mask::deserialize(d)? {
        Mask::Prefix(p) => u8::try_from(p)
            .ok()
            .filter(|&p| p <= 128)
            .map(Some)
            .ok_or_else(|| bad(&p.to_string())),
        Mask::Dotted(s) => {
            let mask: core::net::Ipv4Addr = s.parse().map_err(|_| bad(&format!("\"{s}\"")))?;
            let bits = u32::from(mask);
            let prefix = bits.leading_ones();
            if bits.checked_shl(prefix).unwrap_or(0) != 0 {
                return Err(bad(&format!("\"{s}\" (its ones are not contiguous)")));
            }
            Ok(Some(prefix as u8))
        }
    }
}

// ---- errors ---------------------------------------------------------------------

/// What is wrong at one place of the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// TOML syntax, a wrong type, an unknown key or a value out of range
    /// (toml's or our value check's message).
    #[error("{0}")]
    Value(String),
    /// Two services with the same (proto, VIP, port).
    #[error(
        "{proto} {vip} port {port} is already defined at line {first_line}: merge the two services or change one"
    )]
    DuplicateService {
        /// Protocol.
        proto: String,
        /// VIP.
        vip: IpAddr,
        /// Port.
        port: u16,
        /// Where the first one is.
        first_line: usize,
    },
    /// Two real servers with the same (address, port) in one service.
    #[error(
        "{address} port {port} is already a real server of this service (line {first_line}): remove one"
    )]
    DuplicateRealServer {
        /// Address.
        address: IpAddr,
        /// Port.
        port: u16,
        /// Where the first one is.
        first_line: usize,
    },
    /// Two interfaces with the same name.
    #[error(
        "interface \"{name}\" is already defined at line {first_line}: give each interface its own name"
    )]
    DuplicateInterface {
        /// Name.
        name: String,
        /// Where the first one is.
        first_line: usize,
    },
    /// A gateway that no subnet of its interface reaches.
    #[error(
        "gateway {gateway} is on none of interface \"{interface}\"'s subnets: a next hop must be on-link; add the subnet to its addresses or fix the gateway"
    )]
    GatewayNotOnLink {
        /// Interface.
        interface: String,
        /// The gateway.
        gateway: IpAddr,
    },
    /// Two gateways of one family on one interface.
    #[error(
        "interface \"{interface}\" already has an {family} gateway: keep one per address family"
    )]
    DuplicateGateway {
        /// Interface.
        interface: String,
        /// "IPv4" or "IPv6".
        family: &'static str,
    },
    /// Two neighbours for the same address on the same interface.
    #[error("{address} on \"{interface}\" already has a MAC at line {first_line}: keep one entry")]
    DuplicateNeighbour {
        /// Interface.
        interface: String,
        /// Address.
        address: IpAddr,
        /// Where the first one is.
        first_line: usize,
    },
    /// A NAT or DR real server (or fallback) in another family than the VIP.
    #[error(
        "{method} real server {server} is not in the VIP's address family ({vip}): use a real server of the same family, or method \"tun\" (only tunnelling may cross families)"
    )]
    FamilyMismatch {
        /// Method.
        method: ForwardMethod,
        /// The VIP.
        vip: IpAddr,
        /// The server.
        server: IpAddr,
    },
    /// DR/TUN with a real port different from the virtual port.
    #[error(
        "{method} cannot change the port ({vport} → {rport}): remove \"port\" or set it to {vport}, or use method \"nat\""
    )]
    PortChange {
        /// Method.
        method: ForwardMethod,
        /// Virtual port.
        vport: u16,
        /// Real port.
        rport: u16,
    },
    /// A neighbour names an interface that is not defined.
    #[error("there is no interface \"{name}\": use one of the names under [[interfaces]]{known}")]
    UnknownInterface {
        /// The name used.
        name: String,
        /// ` (a, b)` or empty.
        known: String,
    },
    /// A port-0 service without persistence.
    #[error(
        "port 0 (every port) needs persistence, as ipvsadm requires: add a [services.persistence] table or give a port"
    )]
    ZeroPortNotPersistent,
    /// `l_threshold > u_threshold`.
    #[error(
        "l_threshold {lower} is above u_threshold {upper}: the kernel refuses it; make l_threshold ≤ u_threshold (a lower threshold needs an upper one)"
    )]
    ThresholdOrder {
        /// Lower.
        lower: u32,
        /// Upper.
        upper: u32,
    },
    /// An sh/mh flag on another scheduler.
    #[error(
        "\"{flag}\" only applies to scheduler \"{needs}\", not \"{scheduler}\": remove it or change the scheduler"
    )]
    FlagWithoutScheduler {
        /// Flag word.
        flag: &'static str,
        /// Scheduler it needs.
        needs: &'static str,
        /// Scheduler configured.
        scheduler: String,
    },
    /// A prefix length too long for the VIP's family, or a dotted mask on IPv6.
    #[error(
        "a /{prefix} netmask does not fit an {family} VIP: use a prefix length from 0 to {max}"
    )]
    NetmaskFamily {
        /// Prefix.
        prefix: u8,
        /// "IPv4"/"IPv6".
        family: &'static str,
        /// Maximum.
        max: u8,
    },
    /// A scheduler name that is empty.
    #[error("the scheduler name is empty: use an ipvsadm name such as \"wlc\", \"rr\" or \"mh\"")]
    EmptyScheduler,
    /// A `health` table that cannot be used.
    #[error("{0}")]
    Health(HealthProblem),
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the configuration: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Something in the file is wrong.
    #[error("{0}")]
    Invalid(Box<InvalidConfig>),
}

/// Where a configuration file is wrong, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{}:{}: {}{problem}", at.line, at.column, field_prefix(field))]
pub struct InvalidConfig {
    /// The file as given.
    pub file: String,
    /// Line and column.
    pub at: LineCol,
    /// The field path (`services[1].real_servers[0].weight`); empty for a
    /// syntax error outside any field.
    pub field: String,
    /// What is wrong and what to do.
    pub problem: Problem,
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

impl ConfigError {
    /// The problem, for an invalid file.
    #[must_use]
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::Invalid(invalid) => Some(&invalid.problem),
            Self::Read { .. } => None,
        }
    }

    /// The line, for an invalid file.
    #[must_use]
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Invalid(invalid) => Some(invalid.at.line),
            Self::Read { .. } => None,
        }
    }

    /// The field path, for an invalid file.
    #[must_use]
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid(invalid) => Some(&invalid.field),
            Self::Read { .. } => None,
        }
    }
}

// ---- parsing and validation -----------------------------------------------------

/// A field path under construction.
fn path(steps: &[PathStep]) -> Vec<PathStep> {
    steps.to_vec()
}

fn key(k: &str) -> PathStep {
    PathStep::Key(k.to_owned())
}

impl ClusterConfig {
    /// Reads and checks a configuration file.
    ///
    /// # Errors
    /// [`ConfigError::Read`] when the file cannot be read,
    /// [`ConfigError::Invalid`] when it is not a valid configuration.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let source = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &source)
    }

    /// Parses and checks configuration text; `file` names it in errors.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when it is not a valid configuration.
    pub fn parse(file: &str, source: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(source).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            ConfigError::Invalid(Box::new(InvalidConfig {
                file: file.to_owned(),
                at: line_col(source, offset),
                field: render_path(&path_at(source, offset)),
                problem: Problem::Value(e.message().trim_end().to_owned()),
            }))
        })?;
        match config.check(source) {
            Ok(()) => Ok(config),
            Err((steps, problem)) => Err(ConfigError::Invalid(Box::new(InvalidConfig {
                file: file.to_owned(),
                at: line_col(source, offset_of(source, &steps)),
                field: render_path(&steps),
                problem,
            }))),
        }
    }

    /// Writes the configuration as TOML in the file format.
    ///
    /// # Errors
    /// Only if serialisation itself fails (it does not for valid configs).
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }

    /// The effective protocol timeouts.
    #[must_use]
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts.effective()
    }

    /// Cross-field checks; the first failure with its field path.
    /// `source` is read only to name the line of a duplicate's first
    /// occurrence.
    fn check(&self, source: &str) -> Result<(), (Vec<PathStep>, Problem)> {
        let line_of = |p: &[PathStep]| line_col(source, offset_of(source, p)).line;

        for (i, iface) in self.interfaces.iter().enumerate() {
            if let Some(j) = self.interfaces[..i]
                .iter()
                .position(|o| o.name == iface.name)
            {
                return Err((
                    path(&[key("interfaces"), PathStep::Index(i), key("name")]),
                    Problem::DuplicateInterface {
                        name: iface.name.clone(),
                        first_line: line_of(&[key("interfaces"), PathStep::Index(j), key("name")]),
                    },
                ));
            }
            for (g, gateway) in iface.gateways.iter().enumerate() {
                let at = path(&[
                    key("interfaces"),
                    PathStep::Index(i),
                    key("gateways"),
                    PathStep::Index(g),
                ]);
                // Without addresses the live director takes them from the
                // kernel; the kernel then vouches for the gateway's route.
                if !iface.addresses.is_empty()
                    && !iface.addresses.iter().any(|n| n.contains(*gateway))
                {
                    return Err((
                        at,
                        Problem::GatewayNotOnLink {
                            interface: iface.name.clone(),
                            gateway: *gateway,
                        },
                    ));
                }
                if iface.gateways[..g]
                    .iter()
                    .any(|o| o.is_ipv4() == gateway.is_ipv4())
                {
                    let family = if gateway.is_ipv4() { "IPv4" } else { "IPv6" };
                    return Err((
                        at,
                        Problem::DuplicateGateway {
                            interface: iface.name.clone(),
                            family,
                        },
                    ));
                }
            }
        }

        for (i, svc) in self.services.iter().enumerate() {
            let at = |rest: &[PathStep]| {
                let mut p = vec![key("services"), PathStep::Index(i)];
                p.extend_from_slice(rest);
                p
            };
            if let Some(j) = self.services[..i]
                .iter()
                .position(|o| (o.proto, o.vip, o.port) == (svc.proto, svc.vip, svc.port))
            {
                return Err((
                    at(&[]),
                    Problem::DuplicateService {
                        proto: format!("{:?}", svc.proto).to_lowercase(),
                        vip: svc.vip,
                        port: svc.port,
                        first_line: line_of(&[key("services"), PathStep::Index(j)]),
                    },
                ));
            }
            if svc.scheduler.trim().is_empty() {
                return Err((at(&[key("scheduler")]), Problem::EmptyScheduler));
            }
            for (f, flag) in svc.sched_flags.iter().enumerate() {
                if svc.scheduler != flag.scheduler() {
                    return Err((
                        at(&[key("sched_flags"), PathStep::Index(f)]),
                        Problem::FlagWithoutScheduler {
                            flag: flag.name(),
                            needs: flag.scheduler(),
                            scheduler: svc.scheduler.clone(),
                        },
                    ));
                }
            }
            if svc.port == 0 && svc.persistence.is_none() {
                return Err((at(&[key("port")]), Problem::ZeroPortNotPersistent));
            }
            if let Some(Persistence {
                netmask: Some(prefix),
                ..
            }) = svc.persistence
            {
                let (family, max) = if svc.vip.is_ipv4() {
                    ("IPv4", 32)
                } else {
                    ("IPv6", 128)
                };
                if prefix > max {
                    return Err((
                        at(&[key("persistence"), key("netmask")]),
                        Problem::NetmaskFamily {
                            prefix,
                            family,
                            max,
                        },
                    ));
                }
            }
            let servers = svc
                .real_servers
                .iter()
                .enumerate()
                .map(|(r, rs)| (at(&[key("real_servers"), PathStep::Index(r)]), rs))
                .chain(svc.fallback.iter().map(|rs| (at(&[key("fallback")]), rs)));
            for (rs_path, rs) in servers {
                let field = |k: &str| {
                    let mut p = rs_path.clone();
                    p.push(key(k));
                    p
                };
                if rs.method != ForwardMethod::Tunnel && rs.address.is_ipv4() != svc.vip.is_ipv4() {
                    return Err((
                        field("address"),
                        Problem::FamilyMismatch {
                            method: rs.method,
                            vip: svc.vip,
                            server: rs.address,
                        },
                    ));
                }
                if let Some(rport) = rs.port
                    && rs.method != ForwardMethod::Nat
                    && rport != svc.port
                {
                    return Err((
                        field("port"),
                        Problem::PortChange {
                            method: rs.method,
                            vport: svc.port,
                            rport,
                        },
                    ));
                }
                if rs.l_threshold > rs.u_threshold {
                    return Err((
                        field("l_threshold"),
                        Problem::ThresholdOrder {
                            lower: rs.l_threshold,
                            upper: rs.u_threshold,
                        },
                    ));
                }
            }
            crate::health::config::check_service(svc, &at)
                .map_err(|(p, problem)| (p, Problem::Health(problem)))?;
            for (r, rs) in svc.real_servers.iter().enumerate() {
                let port = rs.effective_port(svc.port);
                if let Some(first) = svc.real_servers[..r]
                    .iter()
                    .position(|o| (o.address, o.effective_port(svc.port)) == (rs.address, port))
                {
                    return Err((
                        at(&[key("real_servers"), PathStep::Index(r)]),
                        Problem::DuplicateRealServer {
                            address: rs.address,
                            port,
                            first_line: line_of(&at(&[
                                key("real_servers"),
                                PathStep::Index(first),
                            ])),
                        },
                    ));
                }
            }
        }

        let names: Vec<&str> = self.interfaces.iter().map(|i| i.name.as_str()).collect();
        for (n, nb) in self.neighbours.iter().enumerate() {
            if !names.contains(&nb.interface.as_str()) {
                let known = if names.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", names.join(", "))
                };
                return Err((
                    path(&[key("neighbours"), PathStep::Index(n), key("interface")]),
                    Problem::UnknownInterface {
                        name: nb.interface.clone(),
                        known,
                    },
                ));
            }
            if let Some(j) = self.neighbours[..n].iter().position(|o| {
                (o.interface.as_str(), o.address) == (nb.interface.as_str(), nb.address)
            }) {
                return Err((
                    path(&[key("neighbours"), PathStep::Index(n)]),
                    Problem::DuplicateNeighbour {
                        interface: nb.interface.clone(),
                        address: nb.address,
                        first_line: line_of(&[key("neighbours"), PathStep::Index(j)]),
                    },
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    const EXAMPLE: &str = include_str!("../../../testbed/configs/nat-3rs.toml");

    /// A valid base: one interface per side, one NAT service with one server.
    fn base(extra: &str) -> String {
        format!(
            r#"[[interfaces]]
name = "c0"
role = "client"
mac = "02:00:00:00:01:01"

[[interfaces]]
name = "s0"
role = "server"
mac = "02:00:00:00:02:01"

[[services]]
proto = "tcp"
vip = "203.0.113.10"
port = 80

[[services.real_servers]]
address = "192.0.2.11"
method = "nat"
{extra}"#
        )
    }

    /// Parses `text` expecting an error; returns (line, field, problem, message).
    fn fail(text: &str) -> (usize, String, Problem, String) {
        let err = ClusterConfig::parse("cluster.toml", text).unwrap_err();
        let msg = err.to_string();
        match err {
            ConfigError::Invalid(invalid) => (invalid.at.line, invalid.field, invalid.problem, msg),
            ConfigError::Read { .. } => panic!("not a read error"),
        }
    }

    #[test]
    fn gateways_must_be_on_link_and_one_per_family() {
        let with = |gateways: &str| {
            base("").replacen(
                "mac = \"02:00:00:00:01:01\"",
                &format!("mac = \"02:00:00:00:01:01\"\naddresses = [\"198.51.100.1/24\", \"2001:db8:1::1/64\"]\ngateways = [{gateways}]"),
                1,
            )
        };
        assert!(
            ClusterConfig::parse(
                "cluster.toml",
                &with("\"198.51.100.254\", \"2001:db8:1::fe\"")
            )
            .is_ok()
        );
        let (line, field, problem, msg) = fail(&with("\"192.0.2.254\""));
        assert_eq!(
            (line, field.as_str()),
            (6, "interfaces[0].gateways[0]"),
            "{msg}"
        );
        assert!(matches!(problem, Problem::GatewayNotOnLink { .. }), "{msg}");
        let (_, field, problem, msg) = fail(&with("\"198.51.100.254\", \"198.51.100.253\""));
        assert_eq!(field, "interfaces[0].gateways[1]", "{msg}");
        assert!(
            matches!(problem, Problem::DuplicateGateway { family: "IPv4", .. }),
            "{msg}"
        );
    }

    #[test]
    fn the_example_parses_with_its_three_weighted_servers() {
        let c = ClusterConfig::parse("nat-3rs.toml", EXAMPLE).unwrap();
        assert_eq!(c.interfaces.len(), 2);
        assert_eq!(c.interfaces[0].role, InterfaceRole::Client);
        assert_eq!(c.interfaces[1].mac, Some(MacAddr([2, 0, 0, 0, 2, 1])));
        assert_eq!(c.interfaces[0].addresses[0].to_string(), "198.51.100.1/24");
        assert_eq!(c.conn_table.capacity, 1 << 20);
        assert_eq!(c.conn_table.max_destinations, 4096);
        assert_eq!(c.services.len(), 2);
        for svc in &c.services {
            assert_eq!(svc.scheduler, "wlc");
            assert_eq!(svc.port, 80);
            let weights: Vec<_> = svc.real_servers.iter().map(|r| r.weight).collect();
            assert_eq!(weights, [1, 2, 3]);
            assert!(
                svc.real_servers
                    .iter()
                    .all(|r| r.method == ForwardMethod::Nat)
            );
        }
        assert!(c.services[1].vip.is_ipv6());
        assert_eq!(c.neighbours.len(), 8);
        assert_eq!(c.timeouts().ipvsadm_triple(), (900, 120, 300));
        let file = ClusterConfig::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testbed/configs/nat-3rs.toml"
        )))
        .unwrap();
        assert_eq!(file, c);
    }

    #[test]
    fn defaults_fill_a_minimal_file_and_survive_a_round_trip() {
        let c = ClusterConfig::parse("min.toml", &base("")).unwrap();
        let svc = &c.services[0];
        assert_eq!(svc.scheduler, "wlc");
        assert!(svc.sched_flags.is_empty() && !svc.sloppy);
        assert_eq!(svc.persistence, None);
        assert_eq!(svc.fallback, None);
        let rs = &svc.real_servers[0];
        assert_eq!(
            (rs.port, rs.weight, rs.u_threshold, rs.l_threshold),
            (None, 1, 0, 0)
        );
        assert_eq!(rs.effective_port(80), 80);
        assert_eq!(c.interfaces[0].mtu, None);
        assert_eq!(c.interfaces[0].effective_mtu(), DEFAULT_MTU);
        assert_eq!(c.conn_table, ConnTableConfig::default());
        assert_eq!(c.timeouts, TimeoutsConfig::default());
        assert_eq!(c.timeouts(), Timeouts::default());
        let empty = ClusterConfig::parse("empty.toml", "").unwrap();
        assert!(empty.services.is_empty() && empty.interfaces.is_empty());
        for cfg in [c, empty, ClusterConfig::parse("x", EXAMPLE).unwrap()] {
            let text = cfg.to_toml().unwrap();
            assert_eq!(
                ClusterConfig::parse("again.toml", &text).unwrap(),
                cfg,
                "{text}"
            );
        }
    }

    #[test]
    fn a_live_interface_needs_only_its_name_and_role() {
        // The live director reads MAC, MTU, addresses and gateways from the
        // kernel; a gateway without addresses cannot be checked on-link here.
        let text =
            "[[interfaces]]\nname = \"eth0\"\nrole = \"client\"\ngateways = [\"198.51.100.254\"]\n";
        let c = ClusterConfig::parse("live.toml", text).unwrap();
        let iface = &c.interfaces[0];
        assert_eq!((iface.mac, iface.mtu), (None, None));
        assert!(iface.addresses.is_empty());
        assert_eq!(
            ClusterConfig::parse("again.toml", &c.to_toml().unwrap()).unwrap(),
            c
        );
    }

    #[test]
    fn every_optional_key_parses() {
        let text = r#"
[conn_table]
capacity = 1000

[timeouts]
tcp = 3600
tcpfin = 30
udp = 45
icmp = 10
[timeouts.tcp_states]
syn_recv = 20
established = 100
close = 5

[[services]]
proto = "udp"
vip = "2001:db8::10"
port = 0
scheduler = "mh"
sched_flags = ["mh-port", "mh-fallback"]
sloppy = true
persistence = { timeout = 600, netmask = 64 }
fallback = { address = "2001:db8::99", port = 0, method = "masq" }

[[services.real_servers]]
address = "192.0.2.11"
port = 0
method = "ipip"
weight = 0
u_threshold = 100
l_threshold = 50

[[services]]
proto = "tcp"
vip = "203.0.113.10"
port = 443
scheduler = "sh"
sched_flags = ["sh-port"]
persistence = { netmask = "255.255.255.0" }

[[services.real_servers]]
address = "192.0.2.12"
method = "Route"
"#;
        let c = ClusterConfig::parse("all.toml", text).unwrap();
        assert_eq!(c.conn_table.capacity, 1000);
        let t = c.timeouts();
        assert_eq!(
            t.ipvsadm_triple(),
            (3600, 30, 45),
            "tcp wins over tcp_states.established"
        );
        assert_eq!(t.tcp[TcpState::SynRecv as usize], 20);
        assert_eq!(t.tcp[TcpState::Close as usize], 5);
        assert_eq!(t.icmp, 10);
        let udp = &c.services[0];
        assert_eq!(udp.proto, ServiceProtocol::Udp);
        assert_eq!(udp.sched_flags, [SchedFlag::MhPort, SchedFlag::MhFallback]);
        assert_eq!(
            udp.persistence,
            Some(Persistence {
                timeout: 600,
                netmask: Some(64)
            })
        );
        assert_eq!(udp.fallback.as_ref().unwrap().method, ForwardMethod::Nat);
        assert_eq!(
            udp.real_servers[0].method,
            ForwardMethod::Tunnel,
            "TUN may cross families"
        );
        assert_eq!(udp.real_servers[0].weight, 0);
        let tcp = &c.services[1];
        assert_eq!(
            tcp.persistence,
            Some(Persistence {
                timeout: 360,
                netmask: Some(24)
            })
        );
        assert_eq!(tcp.real_servers[0].method, ForwardMethod::DirectRouting);
        let again = ClusterConfig::parse("again.toml", &c.to_toml().unwrap()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn the_issue_example_message_reads_as_specified() {
        let (line, field, problem, msg) = fail(&base("weight = -3\n"));
        assert_eq!(line, 19);
        assert_eq!(field, "services[0].real_servers[0].weight");
        assert!(matches!(problem, Problem::Value(_)));
        assert_eq!(
            msg,
            "cluster.toml:19:10: services[0].real_servers[0].weight: -3 is not a valid weight: use an integer from 0 to 65535"
        );
    }

    #[test]
    fn value_errors_name_line_field_and_remedy() {
        let cases: &[(&str, usize, &str, &str)] = &[
            (
                "weight = 70000\n",
                19,
                "services[0].real_servers[0].weight",
                "70000 is not a valid weight",
            ),
            (
                "port = 65536\n",
                19,
                "services[0].real_servers[0].port",
                "65536 is not a valid port",
            ),
            (
                "u_threshold = -1\n",
                19,
                "services[0].real_servers[0].u_threshold",
                "not a valid connection threshold",
            ),
            (
                "wieght = 3\n",
                19,
                "services[0].real_servers[0].wieght",
                "unknown field `wieght`",
            ),
            (
                "weight = \"heavy\"\n",
                19,
                "services[0].real_servers[0].weight",
                "invalid type",
            ),
        ];
        for (extra, line, field, words) in cases {
            let (l, f, problem, msg) = fail(&base(extra));
            assert!(matches!(problem, Problem::Value(_)), "{extra}");
            assert!(msg.contains(words), "{extra}: {msg}");
            assert_eq!((l, f.as_str()), (*line, *field), "{extra}: {msg}");
        }
    }

    #[test]
    fn bad_method_and_address_words_are_named() {
        let text = base("").replace("method = \"nat\"", "method = \"bounce\"");
        let (line, field, _, msg) = fail(&text);
        assert_eq!(
            (line, field.as_str()),
            (18, "services[0].real_servers[0].method"),
            "{msg}"
        );
        assert!(
            msg.contains("\"bounce\" is not a forwarding method: use \"nat\", \"dr\" or \"tun\""),
            "{msg}"
        );
        let text = base("").replace("192.0.2.11", "192.0.2.300");
        let (line, field, _, msg) = fail(&text);
        assert_eq!(
            (line, field.as_str()),
            (17, "services[0].real_servers[0].address"),
            "{msg}"
        );
        for (word, method) in [
            ("masq", ForwardMethod::Nat),
            ("Route", ForwardMethod::DirectRouting),
            ("gate", ForwardMethod::DirectRouting),
            ("tunnel", ForwardMethod::Tunnel),
            ("IPIP", ForwardMethod::Tunnel),
        ] {
            assert_eq!(parse_method(word), Some(method), "{word}");
        }
    }

    #[test]
    fn malformed_mac_names_its_interface_line() {
        let text = base("").replace("mac = \"02:00:00:00:02:01\"", "mac = \"02:00:00:00:02\"");
        let (line, field, _, msg) = fail(&text);
        assert_eq!((line, field.as_str()), (9, "interfaces[1].mac"), "{msg}");
        assert!(
            msg.contains("\"02:00:00:00:02\" is not a MAC address: write six hex pairs"),
            "{msg}"
        );
        for bad in [
            "02:00:00:00:02:0g",
            "02:00:00:00:02:01:03",
            "2:00:00:00:02:01",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        // The packet layer's parser also takes '-' separators.
        assert_eq!(
            "02-00-00-00-02-01".parse::<MacAddr>(),
            "02:00:00:00:02:01".parse::<MacAddr>()
        );
        assert_eq!(
            "02:AB:cd:00:00:01".parse::<MacAddr>().unwrap().to_string(),
            "02:ab:cd:00:00:01"
        );
    }

    #[test]
    fn bad_addresses_masks_and_mtus_are_value_errors() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "mac = \"02:00:00:00:02:01\"",
                "mac = \"02:00:00:00:02:01\"\naddresses = [\"192.0.2.1/33\"]",
                "bad prefix length: use 0 to 32",
            ),
            (
                "mac = \"02:00:00:00:02:01\"",
                "mac = \"02:00:00:00:02:01\"\naddresses = [\"server\"]",
                "is not an address",
            ),
            (
                "mac = \"02:00:00:00:02:01\"",
                "mac = \"02:00:00:00:02:01\"\nmtu = 40",
                "40 is not a valid MTU",
            ),
            (
                "port = 80\n",
                "port = 80\npersistence = { netmask = \"255.0.255.0\" }\n",
                "not contiguous",
            ),
            (
                "port = 80\n",
                "port = 80\npersistence = { timeout = 0 }\n",
                "0 is not a valid persistence timeout",
            ),
            (
                "role = \"server\"",
                "role = \"backend\"",
                "unknown variant `backend`",
            ),
        ];
        for (from, to, words) in cases {
            let text = base("").replacen(from, to, 1);
            assert_ne!(text, base(""));
            let (_, _, problem, msg) = fail(&text);
            assert!(matches!(problem, Problem::Value(_)));
            assert!(msg.contains(words), "{to}: {msg}");
        }
    }

    #[test]
    fn zero_capacity_is_refused_on_its_line() {
        let text = format!("{}\n[conn_table]\ncapacity = 0\n", base(""));
        let (line, field, _, msg) = fail(&text);
        assert_eq!((line, field.as_str()), (21, "conn_table.capacity"), "{msg}");
        assert!(
            msg.contains("capacity 0 cannot hold any connection: use at least 1"),
            "{msg}"
        );
    }

    #[test]
    fn max_destinations_out_of_range_is_refused_on_its_line() {
        let text = format!("{}\n[conn_table]\nmax_destinations = 0\n", base(""));
        let (line, field, _, msg) = fail(&text);
        assert_eq!(
            (line, field.as_str()),
            (21, "conn_table.max_destinations"),
            "{msg}"
        );
        assert!(
            msg.contains(
                "0 is not a valid number of destinations: use an integer from 1 to 1048576"
            ),
            "{msg}"
        );
    }

    #[test]
    fn syntax_errors_carry_their_line() {
        let text = base("weight = \n");
        let (line, _, problem, msg) = fail(&text);
        assert_eq!(line, 19, "{msg}");
        assert!(matches!(problem, Problem::Value(_)));
    }

    #[test]
    fn duplicate_service_points_at_both() {
        let text = format!(
            "{}\n[[services]]\nproto = \"tcp\"\nvip = \"203.0.113.10\"\nport = 80\n",
            base("")
        );
        let (line, field, problem, msg) = fail(&text);
        assert_eq!((line, field.as_str()), (20, "services[1]"), "{msg}");
        assert!(
            matches!(
                problem,
                Problem::DuplicateService {
                    first_line: 11,
                    port: 80,
                    ..
                }
            ),
            "{problem:?}"
        );
        assert!(msg.contains("already defined at line 11"), "{msg}");
        // Same VIP and port over UDP is another service.
        let udp = format!(
            "{}\n[[services]]\nproto = \"udp\"\nvip = \"203.0.113.10\"\nport = 80\n",
            base("")
        );
        assert!(ClusterConfig::parse("x", &udp).is_ok());
    }

    #[test]
    fn duplicate_real_server_counts_the_default_port() {
        let text = base(
            "\n[[services.real_servers]]\naddress = \"192.0.2.11\"\nport = 80\nmethod = \"nat\"\n",
        );
        let (line, field, problem, msg) = fail(&text);
        assert_eq!(
            (line, field.as_str()),
            (20, "services[0].real_servers[1]"),
            "{msg}"
        );
        assert!(
            matches!(
                problem,
                Problem::DuplicateRealServer {
                    first_line: 16,
                    port: 80,
                    ..
                }
            ),
            "{problem:?}"
        );
    }

    #[test]
    fn nat_and_dr_servers_must_share_the_vips_family() {
        for method in ["nat", "dr"] {
            let text = base("").replace(
                "address = \"192.0.2.11\"\nmethod = \"nat\"",
                &format!("address = \"2001:db8::11\"\nmethod = \"{method}\""),
            );
            let (line, field, problem, msg) = fail(&text);
            assert_eq!(
                (line, field.as_str()),
                (17, "services[0].real_servers[0].address"),
                "{msg}"
            );
            assert!(matches!(problem, Problem::FamilyMismatch { .. }));
            assert!(
                msg.contains("use a real server of the same family, or method \"tun\""),
                "{msg}"
            );
        }
        let tun = base("").replace(
            "address = \"192.0.2.11\"\nmethod = \"nat\"",
            "address = \"2001:db8::11\"\nmethod = \"tun\"",
        );
        assert!(ClusterConfig::parse("x", &tun).is_ok());
    }

    #[test]
    fn fallback_server_must_share_the_vips_family() {
        let text = base("").replace(
            "port = 80\n",
            "port = 80\nfallback = { address = \"2001:db8::99\", method = \"nat\" }\n",
        );
        let (line, field, problem, msg) = fail(&text);
        assert_eq!(
            (line, field.as_str()),
            (15, "services[0].fallback.address"),
            "{msg}"
        );
        assert!(matches!(problem, Problem::FamilyMismatch { .. }));
    }

    #[test]
    fn dr_and_tun_cannot_change_the_port() {
        for method in ["dr", "tun", "gate", "ipip"] {
            let text = base("").replace(
                "method = \"nat\"",
                &format!("method = \"{method}\"\nport = 8080"),
            );
            let (line, field, problem, msg) = fail(&text);
            assert_eq!(
                (line, field.as_str()),
                (19, "services[0].real_servers[0].port"),
                "{msg}"
            );
            assert!(matches!(
                problem,
                Problem::PortChange {
                    vport: 80,
                    rport: 8080,
                    ..
                }
            ));
            assert!(msg.contains("remove \"port\" or set it to 80"), "{msg}");
            let same = text.replace("port = 8080", "port = 80");
            assert!(ClusterConfig::parse("x", &same).is_ok());
        }
        let nat = base("port = 8080\n");
        assert!(
            ClusterConfig::parse("x", &nat).is_ok(),
            "NAT may change the port"
        );
    }

    #[test]
    fn neighbours_must_name_a_defined_interface_once() {
        let text = format!(
            "{}\n[[neighbours]]\ninterface = \"eth9\"\naddress = \"192.0.2.11\"\nmac = \"02:00:00:00:02:11\"\n",
            base("")
        );
        let (line, field, problem, msg) = fail(&text);
        assert_eq!(
            (line, field.as_str()),
            (21, "neighbours[0].interface"),
            "{msg}"
        );
        assert!(matches!(problem, Problem::UnknownInterface { .. }));
        assert!(
            msg.contains(
                "there is no interface \"eth9\": use one of the names under [[interfaces]] (c0, s0)"
            ),
            "{msg}"
        );
        let twice = format!(
            "{}\n[[neighbours]]\ninterface = \"s0\"\naddress = \"192.0.2.11\"\nmac = \"02:00:00:00:02:11\"\n\n[[neighbours]]\ninterface = \"s0\"\naddress = \"192.0.2.11\"\nmac = \"02:00:00:00:02:12\"\n",
            base("")
        );
        let (line, field, problem, _) = fail(&twice);
        assert_eq!((line, field.as_str()), (25, "neighbours[1]"));
        assert!(
            matches!(problem, Problem::DuplicateNeighbour { first_line: 20, .. }),
            "{problem:?}"
        );
    }

    #[test]
    fn duplicate_interface_names_are_refused() {
        let text = base("").replace("name = \"s0\"", "name = \"c0\"");
        let (line, field, problem, _) = fail(&text);
        assert_eq!((line, field.as_str()), (7, "interfaces[1].name"));
        assert!(
            matches!(problem, Problem::DuplicateInterface { first_line: 2, .. }),
            "{problem:?}"
        );
    }

    #[test]
    fn port_zero_needs_persistence() {
        let text = base("").replace("port = 80\n", "port = 0\n");
        let (line, field, problem, _) = fail(&text);
        assert_eq!((line, field.as_str()), (14, "services[0].port"));
        assert_eq!(problem, Problem::ZeroPortNotPersistent);
        let ok = text.replace("port = 0\n", "port = 0\npersistence = { timeout = 300 }\n");
        assert!(ClusterConfig::parse("x", &ok).is_ok());
    }

    #[test]
    fn thresholds_follow_the_kernels_order() {
        let (line, field, problem, _) = fail(&base("u_threshold = 10\nl_threshold = 20\n"));
        assert_eq!(
            (line, field.as_str()),
            (20, "services[0].real_servers[0].l_threshold")
        );
        assert_eq!(
            problem,
            Problem::ThresholdOrder {
                lower: 20,
                upper: 10
            }
        );
        let (_, _, problem, _) = fail(&base("l_threshold = 5\n"));
        assert_eq!(
            problem,
            Problem::ThresholdOrder { lower: 5, upper: 0 },
            "a lower threshold alone"
        );
    }

    #[test]
    fn scheduler_flags_need_their_scheduler() {
        let text = base("").replace("port = 80\n", "port = 80\nsched_flags = [\"sh-port\"]\n");
        let (line, field, problem, msg) = fail(&text);
        assert_eq!(
            (line, field.as_str()),
            (15, "services[0].sched_flags[0]"),
            "{msg}"
        );
        assert!(matches!(
            problem,
            Problem::FlagWithoutScheduler { needs: "sh", .. }
        ));
        let (_, _, problem, _) =
            fail(&base("").replace("port = 80\n", "port = 80\nsched_flags = [\"flag-9\"]\n"));
        assert!(matches!(problem, Problem::Value(_)));
        let (line, field, problem, _) =
            fail(&base("").replace("port = 80\n", "port = 80\nscheduler = \" \"\n"));
        assert_eq!(
            (line, field.as_str(), problem),
            (15, "services[0].scheduler", Problem::EmptyScheduler)
        );
    }

    #[test]
    fn ipv4_netmask_longer_than_32_is_refused() {
        let text = base("").replace("port = 80\n", "port = 80\npersistence = { netmask = 48 }\n");
        let (line, field, problem, _) = fail(&text);
        assert_eq!(
            (line, field.as_str()),
            (15, "services[0].persistence.netmask")
        );
        assert_eq!(
            problem,
            Problem::NetmaskFamily {
                prefix: 48,
                family: "IPv4",
                max: 32
            }
        );
    }

    #[test]
    fn an_unreadable_file_names_the_path() {
        let err = ClusterConfig::load(Path::new("/nonexistent/cluster.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(
            err.to_string()
                .starts_with("/nonexistent/cluster.toml: cannot read"),
            "{err}"
        );
        assert_eq!(err.line(), None);
    }

    #[test]
    fn ip_networks_contain_their_hosts() {
        let n: IpNet = "192.0.2.1/24".parse().unwrap();
        assert!(n.contains("192.0.2.200".parse().unwrap()));
        assert!(!n.contains("192.0.3.1".parse().unwrap()));
        let n6: IpNet = "2001:db8::1/64".parse().unwrap();
        assert!(n6.contains("2001:db8::ffff".parse().unwrap()));
        assert!(!n6.contains("192.0.2.1".parse().unwrap()));
        let host: IpNet = "192.0.2.1".parse().unwrap();
        assert_eq!(host.prefix_len, 32);
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.1".parse().unwrap()));
    }
}
