//! The control socket's protocol: what `xvsadm` (and any other client)
//! sends the director and what it answers. Defined once, here; the tools
//! crate imports it.
//!
//! # Framing
//! One JSON document per line, each way: the client writes one
//! [`Envelope`] line, the director answers with one [`Reply`] line, and the
//! client may send the next request on the same connection. A request whose
//! `version` is not [`PROTOCOL_VERSION`] is answered with
//! [`ErrorKind::Version`] and nothing is changed. Requests longer than
//! [`MAX_REQUEST_BYTES`] are refused.
//!
//! # Semantics
//! The requests mirror ipvsadm's commands, with ipvsadm's defaults already
//! applied by the client. Every change is validated whole and applied
//! atomically: a refused request leaves the running state as it was.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The protocol's version; bumped on every incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// The longest request line the director reads.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// The control socket's default path.
pub const DEFAULT_SOCKET: &str = "/run/xvs/control.sock";

/// A virtual service's transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP (`-t`).
    Tcp,
    /// UDP (`-u`).
    Udp,
}

/// What names a virtual service: protocol, virtual address, port (0:
/// every port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceId {
    /// Protocol.
    pub proto: Proto,
    /// Virtual address.
    pub vip: IpAddr,
    /// Virtual port.
    pub port: u16,
}

impl std::fmt::Display for ServiceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proto = match self.proto {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        };
        match self.vip {
            IpAddr::V4(a) => write!(f, "{proto} {a}:{}", self.port),
            IpAddr::V6(a) => write!(f, "{proto} [{a}]:{}", self.port),
        }
    }
}

/// A real server's forwarding method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// VS/NAT (`-m`).
    Nat,
    /// VS/DR (`-g`).
    Dr,
    /// VS/TUN (`-i`, IPIP or ip6ip6).
    Tun,
}

impl From<crate::ForwardMethod> for Method {
    fn from(m: crate::ForwardMethod) -> Self {
        match m {
            crate::ForwardMethod::Nat => Self::Nat,
            crate::ForwardMethod::DirectRouting => Self::Dr,
            crate::ForwardMethod::Tunnel => Self::Tun,
        }
    }
}

impl From<Method> for crate::ForwardMethod {
    fn from(m: Method) -> Self {
        match m {
            Method::Nat => Self::Nat,
            Method::Dr => Self::DirectRouting,
            Method::Tun => Self::Tunnel,
        }
    }
}

/// Persistence (`-p`, `-M`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persistence {
    /// Template timeout in seconds.
    pub timeout: u32,
    /// IPv4 client mask (`-M 255.255.255.0` = `0xffffff00`).
    pub mask_v4: u32,
    /// IPv6 client prefix length.
    pub prefix_v6: u8,
}

/// Scheduler flags (`-b`): bit 0 `flag-1` (`sh-fallback`, `mh-fallback`),
/// bit 1 `flag-2` (`sh-port`, `mh-port`), bit 2 `flag-3`.
pub type SchedFlagBits = u8;

/// A virtual service as `-A` and `-E` give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceParams {
    /// Which service.
    pub id: ServiceId,
    /// Scheduler name (an ipvsadm name).
    pub scheduler: String,
    /// Scheduler flags.
    #[serde(default)]
    pub flags: SchedFlagBits,
    /// Persistence, if any.
    #[serde(default)]
    pub persistence: Option<Persistence>,
    /// Schedule on any TCP segment without RST, not only SYN (config only;
    /// ipvsadm has no option for it and `-E` keeps it).
    #[serde(default)]
    pub sloppy: bool,
    /// The server used while no real server can be scheduled (config only;
    /// `-E` keeps it).
    #[serde(default)]
    pub fallback: Option<ServerParams>,
}

/// A real server as `-a` and `-e` give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerParams {
    /// Address.
    pub addr: IpAddr,
    /// Port (0: the packet's port is kept).
    pub port: u16,
    /// Forwarding method.
    pub method: Method,
    /// Weight, 0 … 65535 (0: no new connections).
    pub weight: u32,
    /// Upper connection threshold (0: none).
    #[serde(default)]
    pub u_threshold: u32,
    /// Lower connection threshold (0: none).
    #[serde(default)]
    pub l_threshold: u32,
}

/// Connection timeouts in seconds (`--set tcp tcpfin udp`; 0 = unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutSet {
    /// ESTABLISHED.
    pub tcp: u32,
    /// FIN_WAIT.
    pub tcp_fin: u32,
    /// UDP.
    pub udp: u32,
}

/// One request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// `-A`.
    AddService(ServiceParams),
    /// `-E`.
    EditService(ServiceParams),
    /// `-D`.
    DeleteService {
        /// Which service.
        id: ServiceId,
    },
    /// `-C`.
    Clear,
    /// `-a`.
    AddServer {
        /// The service.
        service: ServiceId,
        /// The server.
        server: ServerParams,
    },
    /// `-e`.
    EditServer {
        /// The service.
        service: ServiceId,
        /// The server (found by address and port).
        server: ServerParams,
    },
    /// `-d`.
    DeleteServer {
        /// The service.
        service: ServiceId,
        /// Address.
        addr: IpAddr,
        /// Port.
        port: u16,
    },
    /// `-Z`: zero the counters of one service, or of every service.
    Zero {
        /// The service, or every one.
        service: Option<ServiceId>,
    },
    /// `--set`.
    SetTimeouts(TimeoutSet),
    /// Several changes applied as one: all or none (`-R`).
    Batch {
        /// The changes, in order.
        requests: Vec<Request>,
    },
    /// The whole table with counters and rates (`-L`, `-S`).
    List,
    /// Connection entries (`-L -c`).
    Connections,
    /// Current timeouts (`-L --timeout`).
    Timeouts,
    /// Reload the config file (as SIGHUP does).
    Reload,
}

impl Request {
    /// True when the request changes the running state.
    #[must_use]
    pub fn is_change(&self) -> bool {
        !matches!(self, Self::List | Self::Connections | Self::Timeouts)
    }
}

/// A request as it travels: the protocol version, then the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub version: u32,
    /// The request.
    pub request: Request,
}

/// Why a request was refused, as ipvsadm distinguishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// `-A` of a service that exists (EEXIST).
    ServiceExists,
    /// `-E`, `-D`, `-Z` of a service that does not (ESRCH).
    NoSuchService,
    /// `-a`, `-e`, `-d` on a service that does not exist (ESRCH).
    ServiceNotDefined,
    /// `-a` of a server that exists (EEXIST).
    DestinationExists,
    /// `-e`, `-d` of a server that does not exist (ENOENT).
    NoSuchDestination,
    /// An unknown scheduler (ENOENT).
    SchedulerNotFound,
    /// Values the director refuses (EINVAL): ranges, families, routes.
    Invalid,
    /// The protocol version differs.
    Version,
    /// The request could not be read.
    Malformed,
    /// A reload failed: the file is invalid, or changes what only a
    /// restart applies (the running state is kept).
    Reload,
    /// The kernel's side of the data plane (XDP maps, nftables) could not
    /// follow the change, so it was rolled back.
    DataPlane,
}

impl ErrorKind {
    /// The message ipvsadm prints for this error (`ipvs_strerror`).
    #[must_use]
    pub fn ipvsadm_message(self) -> &'static str {
        match self {
            Self::ServiceExists => "Service already exists",
            Self::NoSuchService => "No such service",
            Self::ServiceNotDefined => "Service not defined",
            Self::DestinationExists => "Destination already exists",
            Self::NoSuchDestination => "No such destination",
            Self::SchedulerNotFound => "Scheduler or persistence engine not found",
            Self::Invalid => {
                "Invalid operation.  Possibly wrong module version, address not unicast, ..."
            }
            Self::Version => "Protocol version mismatch",
            Self::Malformed => "Malformed request",
            Self::Reload => "Reload failed",
            Self::DataPlane => "The data plane could not follow the change",
        }
    }
}

/// A refusal: its kind and a sentence saying what and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ControlError {
    /// The kind (what ipvsadm would have reported).
    pub kind: ErrorKind,
    /// What was refused and what to do.
    pub message: String,
}

impl ControlError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// Cumulative counters of a service or real server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsView {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets client → server.
    pub inpkts: u64,
    /// Packets server → client (NAT only).
    pub outpkts: u64,
    /// Bytes client → server.
    pub inbytes: u64,
    /// Bytes server → client.
    pub outbytes: u64,
}

/// Rates per second, smoothed as IPVS's estimator smooths them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatesView {
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

/// A real server in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerState {
    /// Its parameters.
    pub params: ServerParams,
    /// Active connections.
    pub active: u32,
    /// Inactive connections.
    pub inactive: u32,
    /// Persistence templates pointing at it.
    pub persistent: u32,
    /// Counters since the last `-Z`.
    pub stats: StatsView,
    /// Rates.
    pub rates: RatesView,
}

/// A virtual service in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceState {
    /// Its parameters.
    pub params: ServiceParams,
    /// Real servers, in the scheduler's order (newest first, as IPVS).
    pub servers: Vec<ServerState>,
    /// Counters since the last `-Z` (every real server's, deleted ones
    /// included, as IPVS keeps them in the service's).
    pub stats: StatsView,
    /// Rates.
    pub rates: RatesView,
}

/// The table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableView {
    /// Connection-table capacity (listed where ipvsadm shows `size=`).
    pub conn_capacity: u32,
    /// Services, in the order they were added.
    pub services: Vec<ServiceState>,
}

/// One connection entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnView {
    /// Protocol.
    pub proto: Proto,
    /// Client address and port.
    pub client: (IpAddr, u16),
    /// Virtual address and port.
    pub vip: (IpAddr, u16),
    /// Real server address and port.
    pub server: (IpAddr, u16),
    /// State name as IPVS prints it (`ESTABLISHED`, `UDP`, …).
    pub state: String,
    /// Seconds until it expires.
    pub expires_secs: u32,
}

/// What the director answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// The change was applied.
    Done,
    /// The change was refused; nothing changed.
    Error(ControlError),
    /// The table.
    Table(TableView),
    /// Connection entries.
    Connections {
        /// The entries.
        entries: Vec<ConnView>,
    },
    /// Timeouts in seconds.
    Timeouts(TimeoutSet),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_one_json_line() {
        let req = Envelope {
            version: PROTOCOL_VERSION,
            request: Request::AddServer {
                service: ServiceId {
                    proto: Proto::Tcp,
                    vip: "2001:db8:f::10".parse().unwrap(),
                    port: 80,
                },
                server: ServerParams {
                    addr: "192.0.2.11".parse().unwrap(),
                    port: 80,
                    method: Method::Nat,
                    weight: 3,
                    u_threshold: 0,
                    l_threshold: 0,
                },
            },
        };
        let line = serde_json::to_string(&req).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<Envelope>(&line).unwrap(), req);
        let reply = Reply::Error(ControlError::new(ErrorKind::NoSuchService, "x"));
        let line = serde_json::to_string(&reply).unwrap();
        assert_eq!(serde_json::from_str::<Reply>(&line).unwrap(), reply);
    }

    #[test]
    fn service_ids_print_as_ipvsadm_lists_them() {
        let id = ServiceId {
            proto: Proto::Udp,
            vip: "2001:db8::1".parse().unwrap(),
            port: 53,
        };
        assert_eq!(id.to_string(), "UDP [2001:db8::1]:53");
    }
}
