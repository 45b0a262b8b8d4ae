//! The configuration as a model: every table and key, with its defaults
//! and (de)serialisation.

use super::*;

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
    /// The real-server agents' load reports (`[agents]`); off unless
    /// present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<AgentsConfig>,
    /// A primary and a backup director by VRRP (`[ha]`); off unless
    /// present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha: Option<HaConfig>,
    /// Connection-state sync with the other director of the pair
    /// (`[sync]`); off unless present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncConfig>,
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

pub(super) const fn default_capacity() -> u32 {
    1 << 20
}

pub(super) const fn default_max_destinations() -> u32 {
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

pub(super) const fn default_persistence() -> u32 {
    360
}

/// A virtual service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualService {
    /// `tcp` or `udp`.
    pub proto: Protocol,
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

impl VirtualService {
    /// What names the service: (protocol, VIP, port).
    #[must_use]
    pub const fn id(&self) -> ServiceId {
        ServiceId {
            proto: self.proto,
            vip: self.vip,
            port: self.port,
        }
    }
}

pub(super) fn default_scheduler() -> String {
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

pub(super) const fn default_method() -> ForwardMethod {
    ForwardMethod::DirectRouting
}

pub(super) const fn default_weight() -> u16 {
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

pub(super) mod opt_mac_text {
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

pub(super) mod mac_text {
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

/// `nat`/`dr`/`tun` and ipvsadm's words for them.
pub(super) mod method_serde {
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
