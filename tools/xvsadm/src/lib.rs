//! `xvs-adm`: the `xvsadm` program — ipvsadm's command language and
//! ipvsadm's output, for xvs.
//!
//! Issue #7 asks for a client of the director's control socket that an
//! operator can drive exactly like `ipvsadm` (v1.31): same options, same
//! listings, and `ipvsadm-save` output that `xvsadm -R` reads back. This
//! crate depends on `xvs-proto` (the control socket's messages and client)
//! and not on the director, so the binary links none of the data plane.
//! Its parts:
//!
//! - [`args`]: an ipvsadm command line → a typed [`Command`], with ipvsadm's
//!   defaults applied and ipvsadm's checks made (which options go with which
//!   command, ports, ranges, tunnel options) and its error wording.
//! - [`format`](mod@format): plain views of the table ([`ServiceView`], [`ServerView`],
//!   [`ConnectionView`], [`Timeouts`]) → the exact text of `ipvsadm -L`
//!   in each of its modes, `-c`, `--timeout` and `-S`.
//! - [`load`]: the director's load view → `-L --load` (xvs's own
//!   listing: configured and effective weights and the agents' reports).
//! - [`restore`]: `-R` input (ipvsadm-save output) → `Vec<Command>`, with
//!   the line number in every error.
//! - [`client`]: a parsed command → control-socket requests → ipvsadm's
//!   output and exit status, over any [`client::Transport`] (the binary's
//!   is the control socket; tests drive a director in their own process).
//!
//! Only the binary (`src/main.rs`) touches the socket, the terminal and the
//! name files; the [`format::Names`] trait lets it plug reverse lookups in
//! for listings without `-n`.
//!
//! Where ipvsadm's behaviour is odd (order-dependent defaults, a comment
//! syntax that never worked, a sort comparator that wraps), the submodule
//! docs say what xvsadm does and why.

#![forbid(unsafe_code)]

pub mod args;
pub mod client;
pub mod format;
pub mod load;
pub mod restore;

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};

pub use xvs_proto::{ForwardMethod, Protocol, ServiceId};

pub use args::{
    Command, DaemonSpec, DaemonState, ListOptions, ListTarget, ParseError, ServerSpec, ServiceSpec,
    parse_args,
};
pub use format::{
    Columns, ConnectionView, ListFormat, Names, Numeric, Rates, ServerView, ServiceView, Stats,
    TableInfo,
};
pub use restore::{LineError, RestoreError, RestoreLineError, parse_restore, parse_restore_with};

/// The scheduler a service gets when `-s` is not given.
pub const DEFAULT_SCHEDULER: &str = "wlc";

/// The persistence timeout of `-p` without a value, in seconds: ipvsadm's
/// `IPVS_SVC_PERSISTENT_TIMEOUT` (6 minutes). ipvsadm(8) says 300; the code
/// says 360, and the code is what operators get (ipvs-behaviour.md §4.2).
pub const DEFAULT_PERSISTENCE_TIMEOUT: u32 = 360;

/// The longest timeout ipvsadm accepts for `-p` and `--set`: 31 days.
pub const MAX_TIMEOUT: u32 = 31 * 86_400;

/// Connection timeouts in seconds, as `--set tcp tcpfin udp` sets them and
/// `--timeout` lists them. In a `--set` command 0 means "leave unchanged".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timeouts {
    /// ESTABLISHED TCP connections.
    pub tcp: u32,
    /// TCP connections in FIN_WAIT.
    pub tcp_fin: u32,
    /// UDP flows.
    pub udp: u32,
}

impl Default for Timeouts {
    /// The kernel's defaults (ipvs-behaviour.md §5.1): 900 120 300.
    fn default() -> Self {
        Self {
            tcp: 900,
            tcp_fin: 120,
            udp: 300,
        }
    }
}

/// A transport protocol as ipvsadm's grammar has it: one the director
/// serves ([`Protocol`], the workspace's one type for it) or SCTP, which
/// xvsadm parses, names and prints so that a table written by ipvsadm
/// reads back, and which the control socket is never asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpvsProtocol {
    /// `-t`, `-u`: TCP or UDP.
    Supported(Protocol),
    /// `--sctp-service`, `SCTP`. Not supported by the director yet.
    Sctp,
}

impl IpvsProtocol {
    /// TCP (`-t`).
    pub const TCP: Self = Self::Supported(Protocol::Tcp);
    /// UDP (`-u`).
    pub const UDP: Self = Self::Supported(Protocol::Udp);

    /// The name ipvsadm prints in listings (`TCP`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Supported(p) => p.ipvsadm_name(),
            Self::Sctp => "SCTP",
        }
    }

    /// The option that names a service of this protocol in `-S` output.
    pub fn save_option(self) -> &'static str {
        match self {
            Self::Supported(Protocol::Tcp) => "-t",
            Self::Supported(Protocol::Udp) => "-u",
            Self::Sctp => "--sctp-service",
        }
    }

    /// The IP protocol number; ipvsadm sorts services by it.
    pub fn number(self) -> u8 {
        match self {
            Self::Supported(p) => p.number(),
            Self::Sctp => 132,
        }
    }
}

/// The address family of a firewall-mark service (`-f N` is IPv4, `-f N -6`
/// IPv6); address-based services take theirs from the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddressFamily {
    /// `AF_INET`.
    Inet,
    /// `AF_INET6`.
    Inet6,
}

impl AddressFamily {
    /// The family of an address.
    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Self::Inet,
            IpAddr::V6(_) => Self::Inet6,
        }
    }
}

/// What identifies a virtual service, as ipvsadm's grammar has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceKey {
    /// A TCP or UDP service (`-t 203.0.113.10:80`, `-u [2001:db8::1]:53`):
    /// the director's [`ServiceId`]. Port 0 is a wildcard, allowed only
    /// for persistent services.
    Supported(ServiceId),
    /// An SCTP service (`--sctp-service 203.0.113.10:80`). Not supported by
    /// the director yet: parsed and printed like ipvsadm, refused before
    /// anything is sent.
    Sctp(SocketAddr),
    /// A firewall mark (`-f 7`, `-f 7 -6`). Not supported by the director
    /// yet: parsed and printed like ipvsadm, refused before anything is
    /// sent.
    Fwmark {
        /// The mark, 1 … 2³²−1.
        mark: u32,
        /// Which packets the mark applies to.
        family: AddressFamily,
    },
}

impl ServiceKey {
    /// The service of `protocol` at `addr`.
    pub fn address(protocol: IpvsProtocol, addr: SocketAddr) -> Self {
        match protocol {
            IpvsProtocol::Supported(proto) => Self::Supported(ServiceId {
                proto,
                vip: addr.ip(),
                port: addr.port(),
            }),
            IpvsProtocol::Sctp => Self::Sctp(addr),
        }
    }

    /// Protocol and virtual address of an address-based service; `None`
    /// for a firewall mark.
    pub fn protocol_addr(&self) -> Option<(IpvsProtocol, SocketAddr)> {
        match *self {
            Self::Supported(id) => Some((IpvsProtocol::Supported(id.proto), id.addr())),
            Self::Sctp(addr) => Some((IpvsProtocol::Sctp, addr)),
            Self::Fwmark { .. } => None,
        }
    }

    /// The service's address family.
    pub fn family(&self) -> AddressFamily {
        match *self {
            Self::Supported(id) => AddressFamily::of(id.vip),
            Self::Sctp(addr) => AddressFamily::of(addr.ip()),
            Self::Fwmark { family, .. } => family,
        }
    }

    /// The virtual port (0 for fwmark services).
    pub fn port(&self) -> u16 {
        self.protocol_addr().map_or(0, |(_, addr)| addr.port())
    }

    /// The protocol whose service names apply to the ports (fwmark
    /// services use TCP's, as ipvsadm does: it sets TCP as a placeholder).
    pub fn protocol(&self) -> IpvsProtocol {
        self.protocol_addr()
            .map_or(IpvsProtocol::TCP, |(protocol, _)| protocol)
    }
}

/// Persistence granularity (`-M`): which client addresses share a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Netmask {
    /// An IPv4 mask, as dotted quad (ipvsadm takes any address, contiguous
    /// or not, and the kernel ANDs with it).
    V4(Ipv4Addr),
    /// An IPv6 prefix length, 1 … 128.
    V6(u8),
}

impl Netmask {
    /// The default for a family: one client address (/32 or /128).
    pub fn host(family: AddressFamily) -> Self {
        match family {
            AddressFamily::Inet => Self::V4(Ipv4Addr::BROADCAST),
            AddressFamily::Inet6 => Self::V6(128),
        }
    }
}

impl fmt::Display for Netmask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(mask) => write!(f, "{mask}"),
            Self::V6(prefix) => write!(f, "{prefix}"),
        }
    }
}

/// Scheduler flags (`-b`): three bits whose meaning is the scheduler's.
/// `sh` and `mh` name the first two (`sh-fallback`, `sh-port`); every
/// scheduler accepts the generic `flag-1`, `flag-2`, `flag-3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SchedFlags(u8);

impl SchedFlags {
    /// No flag.
    pub const NONE: Self = Self(0);
    /// `flag-1` (kernel `IP_VS_SVC_F_SCHED1`): `sh-fallback`, `mh-fallback`.
    pub const FLAG_1: Self = Self(1);
    /// `flag-2` (`IP_VS_SVC_F_SCHED2`): `sh-port`, `mh-port`.
    pub const FLAG_2: Self = Self(2);
    /// `flag-3` (`IP_VS_SVC_F_SCHED3`).
    pub const FLAG_3: Self = Self(4);

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The flags as bits 0..=2 (`flag-1` = bit 0).
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Flags from bits 0..=2; higher bits are dropped.
    pub fn from_bits(bits: u8) -> Self {
        Self(bits & 0b111)
    }

    /// The flags as ipvsadm spells them for `scheduler`, comma-separated
    /// (`sh-fallback,sh-port`). For `sh` and `mh` only the two named flags
    /// exist: a `flag-3` there prints nothing, as in ipvsadm.
    pub fn names(self, scheduler: &str) -> String {
        let named: [(Self, &str); 3] = match scheduler {
            "sh" => [
                (Self::FLAG_1, "sh-fallback"),
                (Self::FLAG_2, "sh-port"),
                (Self::NONE, ""),
            ],
            "mh" => [
                (Self::FLAG_1, "mh-fallback"),
                (Self::FLAG_2, "mh-port"),
                (Self::NONE, ""),
            ],
            _ => [
                (Self::FLAG_1, "flag-1"),
                (Self::FLAG_2, "flag-2"),
                (Self::FLAG_3, "flag-3"),
            ],
        };
        named
            .iter()
            .filter(|(flag, _)| !flag.is_empty() && self.contains(*flag))
            .map(|(_, name)| *name)
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl core::ops::BitOr for SchedFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// Checksum option of a GUE or GRE tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TunnelChecksum {
    /// `--tun-nocsum`, shown as `-c` (the default).
    #[default]
    None,
    /// `--tun-csum`, shown as `+c`.
    Checksum,
    /// `--tun-remcsum` (GUE only), shown as `r+c`.
    Remote,
}

impl TunnelChecksum {
    /// The option that sets it.
    pub fn option(self) -> &'static str {
        match self {
            Self::None => "--tun-nocsum",
            Self::Checksum => "--tun-csum",
            Self::Remote => "--tun-remcsum",
        }
    }

    /// The short form of `--tun-info` listings.
    pub fn short(self) -> &'static str {
        match self {
            Self::None => "-c",
            Self::Checksum => "+c",
            Self::Remote => "r+c",
        }
    }
}

/// An encapsulation other than IP-in-IP for a tunnelled (`-i`) real
/// server: ipvsadm's `--tun-type gue|gre`. Not supported by the director
/// yet: parsed and printed like ipvsadm, refused before anything is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encapsulation {
    /// Generic UDP Encapsulation to `port`.
    Gue {
        /// UDP destination port, 1 … 65535.
        port: u16,
        /// Checksum option.
        checksum: TunnelChecksum,
    },
    /// GRE.
    Gre {
        /// Checksum option (no remote checksum offload for GRE).
        checksum: TunnelChecksum,
    },
}

impl Encapsulation {
    /// The `--tun-type` word.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gue { .. } => "gue",
            Self::Gre { .. } => "gre",
        }
    }
}

/// How packets reach a real server, as ipvsadm's grammar has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerMethod {
    /// `-m` (listed `Masq`), `-g` (`Route`, the default), `-i` with IP-in-IP
    /// (`Tunnel`): the director's [`ForwardMethod`].
    Supported(ForwardMethod),
    /// `-i` with `--tun-type gue|gre`; listed as `Tunnel`.
    Encapsulated(Encapsulation),
    /// A real server that is the director itself; listed as `Local`, saved
    /// as `-g`. Never produced by parsing.
    Local,
}

impl Default for ServerMethod {
    /// Direct routing, as ipvsadm's `-g` default.
    fn default() -> Self {
        Self::ROUTE
    }
}

impl ServerMethod {
    /// `-m`, NAT.
    pub const MASQ: Self = Self::Supported(ForwardMethod::Nat);
    /// `-g`, direct routing.
    pub const ROUTE: Self = Self::Supported(ForwardMethod::DirectRouting);
    /// `-i`, IP-in-IP tunnelling.
    pub const IPIP: Self = Self::Supported(ForwardMethod::Tunnel);

    /// The word of `-L` listings.
    pub fn name(self) -> &'static str {
        match self {
            Self::Supported(m) => m.ipvsadm_name(),
            Self::Encapsulated(_) => "Tunnel",
            Self::Local => "Local",
        }
    }

    /// The option of `-S` output (`Local` saves as `-g`).
    pub fn save_option(self) -> &'static str {
        match self {
            Self::Supported(ForwardMethod::Nat) => "-m",
            Self::Supported(ForwardMethod::Tunnel) | Self::Encapsulated(_) => "-i",
            Self::Supported(ForwardMethod::DirectRouting) | Self::Local => "-g",
        }
    }

    /// Whether packets are tunnelled (`-i`), whatever the encapsulation.
    pub fn is_tunnel(self) -> bool {
        matches!(
            self,
            Self::Supported(ForwardMethod::Tunnel) | Self::Encapsulated(_)
        )
    }

    /// The `--tun-type` word of a tunnelled server: `ipip`, `gue`, `gre`.
    pub fn tunnel_type(self) -> Option<&'static str> {
        match self {
            Self::Supported(ForwardMethod::Tunnel) => Some("ipip"),
            Self::Encapsulated(e) => Some(e.name()),
            Self::Supported(_) | Self::Local => None,
        }
    }
}
