//! What an invalid file reports: the [`Problem`], and the [`ConfigError`]
//! that names the file, line, column and field path.

use super::*;

/// What is wrong at one place of the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// `[agents]` without a key.
    #[error(
        "no key: reports are accepted only when signed with a key listed here; add keys = [{{ id = 1, file = \"/etc/xvs/agent.key\" }}] (the agents' key_id and key file)"
    )]
    NoAgentKey,
    /// Two keys with one id.
    #[error("key id {id} is already listed at line {first_line}: give each key its own id")]
    DuplicateAgentKey {
        /// The id.
        id: u32,
        /// Where the first one is.
        first_line: usize,
    },
    /// A key file that cannot be used.
    #[error("{0}")]
    AgentKey(KeyProblem),
    /// `[ha]` cannot run as written.
    #[error("{0}")]
    Ha(HaProblem),
    /// `[sync]` cannot run as written.
    #[error("{0}")]
    Sync(SyncProblem),
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
