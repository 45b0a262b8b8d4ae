//! The control socket's protocol: what `xvsadm` (and any other client)
//! sends the director and what it answers. Defined once, here: the
//! director serves it, `xvsadm` speaks it through [`client`].
//!
//! # Framing
//! One JSON document per line, each way: the client writes one
//! [`Envelope`] line, the director answers with one [`Reply`] line (a
//! connection listing: several, see below), and the client may send the
//! next request on the same connection. A request whose `version` is not
//! [`PROTOCOL_VERSION`] is answered with [`ErrorKind::Version`] and nothing
//! is changed (client and director are built together: use the `xvsadm` of
//! the director's release).
//!
//! Both directions are capped, so that neither side allocates without
//! bound for one message: the director reads at most [`MAX_REQUEST_BYTES`]
//! of a request line (a longer one is refused and the connection closed;
//! the client refuses to send one), and no reply line is longer than
//! [`MAX_REPLY_BYTES`]: the director serialises into a buffer of that size
//! and answers [`ErrorKind::TooLarge`] instead when it overflows, and the
//! client reads at most that much of a line.
//!
//! # Connection listings
//! [`Request::Connections`] is not answered by the control thread: the
//! client's own thread on the director walks the connection table (its
//! reads are lock-free) and writes [`Reply::ConnectionsChunk`] lines of at
//! most [`CONNECTIONS_PER_CHUNK`] entries each, then one
//! [`Reply::ConnectionsEnd`] with the number of entries sent. Memory per
//! listing is one chunk, whatever the table's size, and changes, reloads
//! and health transitions go on while a slow reader takes a million
//! entries. A listing is not a snapshot (neither is ipvsadm's
//! `/proc/net/ip_vs_conn`): a connection created or expired during the
//! walk may or may not be in it. Without the `ConnectionsEnd` line the
//! listing is incomplete, and the client says so.
//!
//! # Timeouts: a request is applied only while its client waits
//! The envelope carries `wait_ms`, how long the client waits for the answer
//! (the director uses at most [`MAX_WAIT_MS`]). A request is queued for the
//! control thread, which *takes* it before applying it; taking and giving
//! up are one atomic decision, so exactly one of these happens:
//!
//! - the control thread takes it within `wait_ms` while the client is still
//!   connected: it is applied (or refused) and answered, however long the
//!   application itself takes;
//! - `wait_ms` passes first: it is never applied, and the client is answered
//!   [`ErrorKind::NotApplied`] (nothing changed; try again);
//! - the client hangs up (or half-closes) first: it is never applied.
//!
//! The client waits `wait_ms` plus [`ANSWER_GRACE_MS`] before it gives up.
//! Only a control thread that took the request and then stalled beyond
//! that grace leaves the outcome unknown; the client says so plainly and
//! that `xvsadm -L -n` shows what is in force.
//!
//! # Semantics
//! The requests mirror ipvsadm's commands, with ipvsadm's defaults already
//! applied by the client. Every change is validated whole and applied
//! atomically: a refused request leaves the running state as it was.

pub mod client;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use crate::service::{ForwardMethod, Protocol, ServiceId};

/// The protocol's version; bumped on every incompatible change (2: the
/// envelope's `wait_ms`, streamed connection listings, capped replies; 3:
/// [`Request::Load`], which a version-2 director could only call
/// malformed; 4: [`Request::Daemons`]; 5: [`Request::StartDaemon`] and
/// [`Request::StopDaemon`]).
pub const PROTOCOL_VERSION: u32 = 5;

/// The longest request line the director reads.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// The longest reply line the director writes and a client reads.
pub const MAX_REPLY_BYTES: usize = 8 << 20;

/// Connection entries per [`Reply::ConnectionsChunk`]: at most a few
/// hundred bytes each, so a chunk stays far below [`MAX_REPLY_BYTES`].
pub const CONNECTIONS_PER_CHUNK: usize = 2048;

/// The longest a request waits for the control thread, whatever its
/// envelope asks (and what an envelope's `wait_ms` of 0 means).
pub const MAX_WAIT_MS: u32 = 60_000;

/// How much longer than its `wait_ms` a client waits for an answer: the
/// time the director has to apply a request it took and answer.
pub const ANSWER_GRACE_MS: u32 = 15_000;

/// The control socket's default path.
pub const DEFAULT_SOCKET: &str = "/run/xvs/control.sock";

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
    pub method: ForwardMethod,
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
    /// The real servers' configured and effective weights and their
    /// agents' last reports (`-L --load`).
    Load,
    /// The daemons beside the data path: the HA election (`-L --daemon`).
    Daemons,
    /// `--start-daemon master|backup`: start a role of the connection
    /// sync.
    StartDaemon(DaemonParams),
    /// `--stop-daemon master|backup`: stop a role of the connection sync.
    StopDaemon {
        /// The role.
        role: SyncRoleName,
    },
    /// Reload the config file (as SIGHUP does).
    Reload,
}

impl Request {
    /// True when the request changes the running state.
    #[must_use]
    pub fn is_change(&self) -> bool {
        !matches!(
            self,
            Self::List | Self::Connections | Self::Timeouts | Self::Load | Self::Daemons
        )
    }
}

/// A role of the connection sync (ipvsadm's daemon state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncRoleName {
    /// Sends this director's connections.
    Master,
    /// Receives the peer's.
    Backup,
}

/// `--start-daemon`'s options; what is left out keeps the running sync's
/// value (or `[sync]`'s, or ipvsadm's default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonParams {
    /// `master` or `backup`.
    pub role: SyncRoleName,
    /// `--mcast-interface`.
    pub interface: Option<String>,
    /// `--syncid`.
    pub syncid: Option<u8>,
    /// `--sync-maxlen`.
    pub maxlen: Option<u16>,
    /// `--mcast-group`.
    pub group: Option<IpAddr>,
    /// `--mcast-port`.
    pub port: Option<u16>,
    /// `--mcast-ttl`.
    pub ttl: Option<u8>,
}

/// A request as it travels: the protocol version, then the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub version: u32,
    /// How long the client waits for the answer, in milliseconds (0:
    /// [`MAX_WAIT_MS`]); a request the control thread has not taken by then
    /// is never applied. Defaulted so that an older client's envelope still
    /// reads, and is refused for its version rather than as malformed.
    #[serde(default)]
    pub wait_ms: u32,
    /// The request.
    pub request: Request,
}

/// Only the version of an envelope: what the director reads of a request
/// it cannot parse, to say "wrong version" rather than "malformed".
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct VersionOnly {
    /// The sender's [`PROTOCOL_VERSION`].
    pub version: u32,
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
    /// The answer would exceed [`MAX_REPLY_BYTES`]; nothing changed.
    TooLarge,
    /// The control thread did not take the request within the client's
    /// `wait_ms`: it was not applied and never will be.
    NotApplied,
    /// The director stopped after it took the request and before it
    /// answered: it may or may not have been applied.
    Unknown,
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
            Self::TooLarge => "Reply too large",
            Self::NotApplied => "Timed out, not applied",
            Self::Unknown => "Outcome unknown",
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
    /// The weight its operator (or the file) configured, when the weight
    /// in force (`params.weight`) follows its agent's load reports; what
    /// `-S` saves. Absent from older directors' answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configured_weight: Option<u32>,
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

/// The daemons beside the data path (`-L --daemon`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DaemonsView {
    /// The HA election, with `[ha]`.
    pub ha: Option<Box<HaView>>,
    /// The connection-state sync, with `[sync]` (absent from a director
    /// older than the sync).
    #[serde(default)]
    pub sync: Option<Box<SyncView>>,
}

/// The connection-state sync, as `-L --daemon` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SyncView {
    /// The master role runs (this director's connections are sent).
    pub master: bool,
    /// The backup role runs (the peer's are received).
    pub backup: bool,
    /// ipvsadm's daemon options: `mcast=IF, syncid=N, maxlen=…`.
    pub options: String,
    /// The peer, once heard (`address:port`).
    pub peer: Option<String>,
    /// Milliseconds since the peer was last heard.
    pub last_heard_ms: Option<u64>,
    /// The backup role holds the peer's whole table.
    pub in_sync: bool,
    /// Data messages sent, resent, dropped from the full queue.
    pub sent: u64,
    /// Resent for a Nack.
    pub resent: u64,
    /// Dropped unacknowledged from the full queue.
    pub dropped: u64,
    /// Waiting for an acknowledgement.
    pub queued: u64,
    /// How long the oldest of them has waited, ms.
    pub lag_ms: u64,
    /// Connection records sent.
    pub records_sent: u64,
    /// Whole tables sent.
    pub transfers_sent: u64,
    /// Data messages received.
    pub received: u64,
    /// Found missing.
    pub lost: u64,
    /// Of those, arrived later.
    pub repaired: u64,
    /// Whole tables received.
    pub transfers_received: u64,
    /// Connections inserted, updated, deleted by the peer's records.
    pub imported: u64,
    /// Records refused (unknown service or server, table full…).
    pub refused: u64,
    /// Events the workers' queues dropped (full): repaired by a refresh.
    pub feed_dropped: u64,
}

/// This director's virtual router, as `-L --daemon` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaView {
    /// The director's name.
    pub node: Option<String>,
    /// `init`, `backup`, `master` or `fault`.
    pub state: String,
    /// Milliseconds in that state.
    pub since_ms: u64,
    /// Why it entered it.
    pub reason: String,
    /// The virtual router id.
    pub vrid: u8,
    /// Its configured priority.
    pub priority: u8,
    /// `ipv4` or `ipv6`.
    pub family: String,
    /// The advert interface.
    pub interface: Option<String>,
    /// The adverts' source.
    pub source: Option<String>,
    /// `multicast` or `unicast`.
    pub mode: String,
    /// `hmac` or `none`.
    pub auth: String,
    /// The advert interval.
    pub advert_interval_ms: u64,
    /// The master heard last, when backup.
    pub master: Option<HaPeer>,
    /// Milliseconds since the last accepted advert.
    pub last_advert_ms: Option<u64>,
    /// The addresses held.
    pub held: Vec<String>,
}

/// A master as a backup hears it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaPeer {
    /// Its address.
    pub address: String,
    /// Its priority.
    pub priority: u8,
}

/// The agents' view of the table (`-L --load`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadView {
    /// Whether the director has `[agents]` (off: no weight follows load).
    pub agents: bool,
    /// Services, in the order they were added.
    pub services: Vec<LoadService>,
}

/// A virtual service in a load listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadService {
    /// Which service.
    pub id: ServiceId,
    /// Its configured real servers.
    pub servers: Vec<LoadServer>,
}

/// A real server in a load listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadServer {
    /// Address.
    pub addr: IpAddr,
    /// Port.
    pub port: u16,
    /// The weight the file or the operator configured.
    pub configured_weight: u32,
    /// The weight in force; `None`: out of the table (its health check or
    /// its agent's `maint` took it out).
    pub weight: Option<u32>,
    /// Its address's agent, once one has reported.
    pub agent: Option<AgentView>,
}

/// An agent's last accepted report, as `-L --load` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentView {
    /// The agent's name.
    pub identity: String,
    /// What it asks: `ready`, `drain` or `maint`.
    pub state: String,
    /// Milliseconds since the report was accepted.
    pub age_ms: u64,
    /// The capacity in force, permille of the configured weight.
    pub capacity_permille: u16,
    /// CPU utilisation, permille (`None`: the agent could not measure it;
    /// so for each figure).
    pub cpu_permille: Option<u16>,
    /// Memory utilisation, permille.
    pub memory_permille: Option<u16>,
    /// Packets received per second.
    pub rx_packets_per_s: Option<u32>,
    /// Packets sent per second.
    pub tx_packets_per_s: Option<u32>,
    /// Disk reads per second.
    pub disk_reads_per_s: Option<u32>,
    /// Disk writes per second.
    pub disk_writes_per_s: Option<u32>,
    /// The 1-minute load average × 100.
    pub load1_centi: Option<u32>,
    /// Established connections to the service ports.
    pub established: Option<u32>,
}

/// One connection entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnView {
    /// Protocol.
    pub proto: Protocol,
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
    /// Connection entries, at most [`CONNECTIONS_PER_CHUNK`]; more follow.
    ConnectionsChunk {
        /// The entries.
        entries: Vec<ConnView>,
    },
    /// The end of a connection listing.
    ConnectionsEnd {
        /// Entries sent in the chunks before it.
        count: u64,
    },
    /// Timeouts in seconds.
    Timeouts(TimeoutSet),
    /// The load listing.
    Load(LoadView),
    /// The daemons' listing.
    Daemons(DaemonsView),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_one_json_line() {
        let req = Envelope {
            version: PROTOCOL_VERSION,
            wait_ms: 1500,
            request: Request::AddServer {
                service: ServiceId {
                    proto: Protocol::Tcp,
                    vip: "2001:db8:f::10".parse().unwrap(),
                    port: 80,
                },
                server: ServerParams {
                    addr: "192.0.2.11".parse().unwrap(),
                    port: 80,
                    method: ForwardMethod::Nat,
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
    fn the_largest_chunk_of_connections_fits_a_reply_with_room_to_spare() {
        let longest: IpAddr = "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
        let entry = ConnView {
            proto: Protocol::Tcp,
            client: (longest, 65535),
            vip: (longest, 65535),
            server: (longest, 65535),
            state: "ESTABLISHED".to_owned(),
            expires_secs: u32::MAX,
        };
        let chunk = Reply::ConnectionsChunk {
            entries: vec![entry; CONNECTIONS_PER_CHUNK],
        };
        let len = serde_json::to_string(&chunk).unwrap().len();
        assert!(len * 4 < MAX_REPLY_BYTES, "{len} bytes");
    }
}
