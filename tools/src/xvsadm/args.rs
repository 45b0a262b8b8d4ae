//! ipvsadm's command line → a typed [`Command`].
//!
//! # Grammar (ipvsadm 1.31, which parses with popt)
//! - The **first option is the command** (`-A -E -D -C -R -S -a -e -d -L -l
//!   -Z --set --start-daemon --stop-daemon -h -v/--version`); anything else
//!   first is an error. No arguments at all means `-L` (ipvsadm lists the
//!   table, with name resolution).
//! - Short options cluster (`-Ln`, `-lnc`, `-At 10.0.0.1:80`); an option
//!   that takes a value takes the rest of its cluster (`-w3`) or else the
//!   next word, whatever it looks like (`-w -1` is a weight of `-1`, refused).
//!   Long options take `--opt value` or `--opt=value`. `--` ends options.
//! - `-p|--persistent` has an **optional** value: `-p300`, `--persistent=300`,
//!   or the next word when that word does not start with `-`; otherwise the
//!   timeout is [`DEFAULT_PERSISTENCE_TIMEOUT`] (360 s: ipvsadm's code, not
//!   the 300 of its man page; ipvs-behaviour.md §4.2).
//! - Words that are not options are collected: `--set` takes three of them,
//!   any other is "unexpected argument".
//! - Each option may be given once ("multiple 'weight' options specified");
//!   `-t`, `-u`, `--sctp-service` and `-f` are one option
//!   (`service-address`), as are `-g`, `-i`, `-m` (`forwarding-method`).
//! - Which options a command accepts, needs, or takes only one of, follows
//!   ipvsadm's table, with its messages ("Illegal 'weight' option with the
//!   'add-service' command"). Defaults are applied as ipvsadm applies them,
//!   so `-e` without `-w` means weight 1, DR, thresholds 0 (§8.2).
//!
//! The parser is hand-written rather than clap-derived: clap cannot express
//! "the next word is this option's value only if it does not start with
//! `-`" for `-p`, it would accept options before the command, and its
//! errors and conflict rules are not ipvsadm's. A small popt-like tokenizer
//! plus ipvsadm's option table is shorter than bending clap.
//!
//! # Where xvsadm differs from ipvsadm, and why
//! - **No name resolution.** Addresses are numeric (IPv4 dotted quad, IPv6
//!   in brackets with a port, or bare without one), ports are decimal. The
//!   [`Resolver`] hook lets the binary add host and service names later;
//!   [`parse_args`] uses none. `inet_aton`'s odd forms (`10.1`, hex) and
//!   `strtol`'s (`+80`, leading blanks) are refused.
//! - **Order-independent defaults.** ipvsadm fills a real server's missing
//!   port with the service port known *when `-r` is read*, and reads `-M`
//!   as IPv4 or IPv6 by the family known *when `-M` is read*; xvsadm uses
//!   the final service, so `-a -r 10.0.0.2 -t 10.0.0.1:80 -m` gets port 80.
//! - `[1.2.3.4]:80` (IPv4 in brackets) is refused; ipvsadm silently drops
//!   the port.
//! - A second command (`-L -A`) says "multiple commands specified", the
//!   message ipvsadm means to give (popt makes it say "invalid option").
//! - `-M` for IPv6 needs a plain number 1…128 (ipvsadm uses `atoi`).
//! - Scheduler and persistence-engine names longer than the kernel's 15
//!   characters are refused rather than truncated.
//! - `--stop-daemon` with a bad state says "illegal stop-daemon parameter
//!   specified" (ipvsadm prints its start-daemon typo).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::format::{Columns, ListFormat};
use super::{
    AddressFamily, DEFAULT_PERSISTENCE_TIMEOUT, DEFAULT_SCHEDULER, ForwardMethod, MAX_TIMEOUT,
    Netmask, Protocol, SchedFlags, ServiceKey, Timeouts, TunnelChecksum, TunnelType,
};

/// The longest scheduler or persistence-engine name the kernel stores
/// (`IP_VS_SCHEDNAME_MAXLEN` − 1).
pub const MAX_NAME_LEN: usize = 15;

/// C's `INT_MAX`: the largest threshold ipvsadm accepts.
const INT_MAX: u64 = 2_147_483_647;

/// One ipvsadm invocation, with ipvsadm's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `-A`: add a virtual service.
    AddService(ServiceSpec),
    /// `-E`: edit a virtual service. Every field is sent, with defaults
    /// for those not given (ipvsadm's semantics).
    EditService(ServiceSpec),
    /// `-D`: delete a virtual service and its real servers.
    DeleteService(ServiceKey),
    /// `-C`: delete every service.
    Clear,
    /// `-a`: add a real server.
    AddServer(ServerSpec),
    /// `-e`: edit a real server; every field is sent (`-e` without `-w`
    /// sets weight 1).
    EditServer(ServerSpec),
    /// `-d`: delete a real server.
    DeleteServer {
        /// The service it belongs to.
        service: ServiceKey,
        /// Its address and port (the service port when `-r` gave none).
        server: SocketAddr,
    },
    /// `-L`/`-l`: list.
    List(ListOptions),
    /// `-Z`: zero the counters of one service, or of all.
    Zero(Option<ServiceKey>),
    /// `--set tcp tcpfin udp`: 0 leaves a timeout unchanged.
    SetTimeouts(Timeouts),
    /// `-S`: print the table as commands.
    Save {
        /// `-n`: no name resolution.
        numeric: bool,
    },
    /// `-R`: read commands from standard input ([`super::restore`]).
    Restore,
    /// `--start-daemon`: start a connection-sync daemon. Not supported by
    /// the director yet.
    StartDaemon(DaemonSpec),
    /// `--stop-daemon`: stop one. Not supported by the director yet.
    StopDaemon {
        /// Which daemon.
        state: DaemonState,
        /// `--syncid` (accepted and ignored by the kernel on stop).
        syncid: Option<u8>,
    },
    /// `-h`/`--help`.
    Help,
    /// `-v`/`--version`.
    Version,
}

/// A virtual service as `-A` and `-E` give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Which service.
    pub key: ServiceKey,
    /// `-s`, [`DEFAULT_SCHEDULER`] when absent or empty.
    pub scheduler: String,
    /// `-p`: persistence timeout in seconds, `None` = not persistent.
    pub persistent: Option<u32>,
    /// `-M`: persistence granularity, /32 or /128 when absent.
    pub netmask: Netmask,
    /// `--pe`: persistence engine (the kernel knows `sip`).
    pub persistence_engine: Option<String>,
    /// `-o`: one-packet scheduling (UDP and fwmark services only).
    pub one_packet: bool,
    /// `-b`.
    pub sched_flags: SchedFlags,
}

/// A real server as `-a` and `-e` give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// The service it belongs to.
    pub service: ServiceKey,
    /// Its address and port. The port is the service port when `-r` gave
    /// none, and always the service port for `-g`/`-i` on a non-fwmark
    /// service (the packet's port is not rewritten there).
    pub server: SocketAddr,
    /// `-g` (default), `-i` with its `--tun-*` options, or `-m`.
    pub method: ForwardMethod,
    /// `-w`, 0 … 65535, default 1.
    pub weight: u32,
    /// `-x`, 0 = none.
    pub u_threshold: u32,
    /// `-y`, 0 = none.
    pub l_threshold: u32,
}

/// What `-L` lists and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOptions {
    /// The table, one service, connections, timeouts or daemons.
    pub target: ListTarget,
    /// Columns and number/name formatting.
    pub format: ListFormat,
}

/// What `-L` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListTarget {
    /// Every service (`-L`).
    All,
    /// One service (`-L -t 10.0.0.1:80`): no version header.
    Service(ServiceKey),
    /// `-c`: connection entries.
    Connections,
    /// `--timeout`.
    Timeouts,
    /// `--daemon`.
    Daemon,
}

/// Master or backup sync daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DaemonState {
    /// Sends updates.
    Master,
    /// Receives them.
    Backup,
}

/// `--start-daemon` and its options (ipvs-behaviour.md §8.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSpec {
    /// `master` or `backup`.
    pub state: DaemonState,
    /// `--mcast-interface`, default `eth0`.
    pub mcast_interface: String,
    /// `--syncid`, 0 … 255, default 0.
    pub syncid: u8,
    /// `--sync-maxlen`, 1 … 65507.
    pub sync_maxlen: Option<u16>,
    /// `--mcast-group` (a multicast address).
    pub mcast_group: Option<IpAddr>,
    /// `--mcast-port`.
    pub mcast_port: Option<u16>,
    /// `--mcast-ttl`, 1 … 255.
    pub mcast_ttl: Option<u8>,
}

/// A command line ipvsadm would refuse, worded as ipvsadm words it where it
/// has a message of its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The first option is not a command.
    #[error(
        "no command given: the first option must be a command (-A -E -D -C -R -S -a -e -d -L \
         -Z --set --start-daemon --stop-daemon -h --version); try `xvsadm -h'"
    )]
    NoCommand,
    /// A second command option.
    #[error("multiple commands specified")]
    MultipleCommands,
    /// An option ipvsadm does not have.
    #[error("{0}: unknown option")]
    UnknownOption(String),
    /// An option that needs a value ended the line.
    #[error("{0}: missing argument")]
    MissingArgument(String),
    /// `--flag=value` for an option without a value.
    #[error("{0}: option does not take an argument")]
    UnwantedArgument(String),
    /// The same option twice.
    #[error("multiple '{0}' options specified")]
    MultipleOptions(&'static str),
    /// A word that is no option's value.
    #[error("unexpected argument {0}")]
    UnexpectedArgument(String),
    /// A compulsory option is absent.
    #[error("You need to supply the '{option}' option for the '{command}' command")]
    MissingOption {
        /// ipvsadm's name of the option.
        option: &'static str,
        /// ipvsadm's name of the command.
        command: &'static str,
    },
    /// An option the command does not take.
    #[error("Illegal '{option}' option with the '{command}' command")]
    IllegalOption {
        /// ipvsadm's name of the option.
        option: &'static str,
        /// ipvsadm's name of the command.
        command: &'static str,
    },
    /// Two options of which the command takes one.
    #[error("The option '{option}' conflicts with the '{other}' option in the '{command}' command")]
    ConflictingOptions {
        /// The later option.
        option: &'static str,
        /// The earlier one.
        other: &'static str,
        /// ipvsadm's name of the command.
        command: &'static str,
    },
    /// `-L` with `-c/--timeout/--daemon` and a column option.
    #[error("options conflicts in the list command")]
    ListConflict,
    /// `-t/-u/--sctp-service` value.
    #[error("illegal virtual server address[:port] specified")]
    BadServiceAddress,
    /// `-r` value.
    #[error("illegal real server address[:port] specified")]
    BadServerAddress,
    /// `-f` value.
    #[error("invalid fwmark value `{0}' specified")]
    BadFwmark(String),
    /// `-6` before `-f`.
    #[error("-6 used before -f")]
    Ipv6BeforeFwmark,
    /// `-p` or `--set` value.
    #[error("invalid timeout value `{0}' specified")]
    BadTimeout(String),
    /// `--set` with fewer than three values.
    #[error("--set option requires 3 timeout values")]
    SetNeedsThreeTimeouts,
    /// IPv4 `-M` value.
    #[error("illegal virtual server persistent mask specified")]
    BadNetmask,
    /// IPv6 `-M` value.
    #[error("illegal ipv6 netmask specified")]
    BadIpv6Netmask,
    /// `-w` value.
    #[error("illegal weight specified")]
    BadWeight,
    /// `-x` value.
    #[error("illegal u_threshold specified")]
    BadUThreshold,
    /// `-y` value.
    #[error("illegal l_threshold specified")]
    BadLThreshold,
    /// A `-b` word ipvsadm does not know.
    #[error("invalid scheduler flag `{0}'")]
    BadSchedFlag(String),
    /// `sh-*` without `-s sh`, `mh-*` without `-s mh`.
    #[error("incompatible scheduler flag `{0}'")]
    IncompatibleSchedFlag(String),
    /// A name longer than the kernel stores.
    #[error("{what} name `{name}' is longer than {MAX_NAME_LEN} characters")]
    NameTooLong {
        /// "scheduler" or "persistence engine".
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// `-A/-E` of a port-0 service without `-p`.
    #[error("Zero port specified for non-persistent service")]
    ZeroPort,
    /// `-o` on a TCP or SCTP service.
    #[error("One-Packet Scheduling is only for UDP virtual services")]
    OnePacketNotUdp,
    /// A real server of another family than its service, not tunnelled.
    #[error("Different address family is allowed only for tunneling servers")]
    DifferentFamily,
    /// `--tun-*` with `-g` or `-m`.
    #[error("Tunnel options conflict with forward method")]
    TunnelOptionsWithoutTunnel,
    /// `--tun-type` value.
    #[error("illegal tunnel type specified")]
    BadTunnelType,
    /// `--tun-port` value.
    #[error("illegal tunnel port specified")]
    BadTunnelPort,
    /// `--tun-type gue` without `--tun-port`.
    #[error("You need to supply the '{option}' option for the '{tunnel}' tunnel type")]
    MissingTunnelOption {
        /// The option.
        option: &'static str,
        /// The tunnel type.
        tunnel: &'static str,
    },
    /// A `--tun-*` option the tunnel type does not take.
    #[error("Illegal '{option}' option with the '{tunnel}' tunnel type")]
    IllegalTunnelOption {
        /// The option.
        option: &'static str,
        /// The tunnel type.
        tunnel: &'static str,
    },
    /// Two checksum options.
    #[error(
        "The option '{option}' conflicts with the '{other}' option in the '{tunnel}' tunnel type"
    )]
    ConflictingTunnelOptions {
        /// The later option.
        option: &'static str,
        /// The earlier one.
        other: &'static str,
        /// The tunnel type.
        tunnel: &'static str,
    },
    /// `--start-daemon` value.
    #[error("illegal start-daemon parameter specified")]
    BadStartDaemon,
    /// `--stop-daemon` value.
    #[error("illegal stop-daemon parameter specified")]
    BadStopDaemon,
    /// `--syncid` value.
    #[error("illegal syncid specified")]
    BadSyncid,
    /// `--mcast-group` value.
    #[error("invalid {family} mcast-group `{value}'")]
    BadMcastGroup {
        /// "IPv4" or "IPv6".
        family: &'static str,
        /// The value given.
        value: String,
    },
    /// `--mcast-port` value.
    #[error("illegal mcast-port specified")]
    BadMcastPort,
    /// `--mcast-ttl` value.
    #[error("illegal mcast-ttl specified")]
    BadMcastTtl,
    /// `--sync-maxlen` value.
    #[error("illegal sync-maxlen specified")]
    BadSyncMaxlen,
}

/// Host and service names for addresses and ports that are not numeric.
/// ipvsadm resolves with `gethostbyname` (IPv4 only) and `getservbyname`.
pub trait Resolver {
    /// An IPv4 address for a host name.
    fn host(&self, name: &str) -> Option<Ipv4Addr>;
    /// A port for a service name (`http`) under a protocol.
    fn port(&self, name: &str, protocol: Protocol) -> Option<u16>;
}

/// A [`Resolver`] that knows no names: numeric input only.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNames;

impl Resolver for NoNames {
    fn host(&self, _name: &str) -> Option<Ipv4Addr> {
        None
    }
    fn port(&self, _name: &str, _protocol: Protocol) -> Option<u16> {
        None
    }
}

/// Parses an ipvsadm command line (without the program name), numeric
/// addresses and ports only.
pub fn parse_args<S: AsRef<str>>(args: &[S]) -> Result<Command, ParseError> {
    parse_args_with(args, &NoNames)
}

/// [`parse_args`] with host and service names looked up by `resolver`.
pub fn parse_args_with<S: AsRef<str>>(
    args: &[S],
    resolver: &dyn Resolver,
) -> Result<Command, ParseError> {
    if args.is_empty() {
        // ipvsadm with no argument lists the table, resolving names.
        return Ok(Command::List(ListOptions {
            target: ListTarget::All,
            format: ListFormat::default(),
        }));
    }
    let mut tokens = Tokenizer::new(args);
    let first = match tokens.next_token()? {
        Some(Token::Option { id, value, .. }) => (id, value),
        _ => return Err(ParseError::NoCommand),
    };
    let cmd = match first.0 {
        OptId::Cmd(CommandKind::Help) => return Ok(Command::Help),
        OptId::Cmd(CommandKind::Version) => return Ok(Command::Version),
        OptId::Cmd(cmd) => cmd,
        OptId::Opt(_) | OptId::Sort | OptId::Ipv6 => return Err(ParseError::NoCommand),
    };
    let mut state = Collected::new(cmd);
    match cmd {
        CommandKind::StartDaemon => {
            state.daemon_state = Some(daemon_state(
                first.1.as_deref(),
                ParseError::BadStartDaemon,
            )?)
        }
        CommandKind::StopDaemon => {
            state.daemon_state = Some(daemon_state(first.1.as_deref(), ParseError::BadStopDaemon)?)
        }
        _ => {}
    }
    while let Some(token) = tokens.next_token()? {
        match token {
            Token::Positional(word) => state.positionals.push(word),
            Token::Option { id, value, .. } => state.take(id, value, resolver)?,
        }
    }
    state.finish(resolver)
}

// ---------------------------------------------------------------------------
// Tokenizer: popt's view of argv.

/// The commands, in ipvsadm's order (which its messages name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CommandKind {
    AddService,
    EditService,
    DeleteService,
    Flush,
    List,
    AddServer,
    DeleteServer,
    EditServer,
    SetTimeouts,
    StartDaemon,
    StopDaemon,
    Restore,
    Save,
    Zero,
    Help,
    Version,
}

impl CommandKind {
    /// ipvsadm's name for the command in its messages.
    fn name(self) -> &'static str {
        match self {
            Self::AddService => "add-service",
            Self::EditService => "edit-service",
            Self::DeleteService => "delete-service",
            Self::Flush => "flush",
            Self::List => "list",
            Self::AddServer => "add-server",
            Self::DeleteServer => "delete-server",
            Self::EditServer => "edit-server",
            Self::SetTimeouts => "set",
            Self::StartDaemon => "start-daemon",
            Self::StopDaemon => "stop-daemon",
            Self::Restore => "restore",
            Self::Save => "save",
            Self::Zero => "zero",
            Self::Help => "help",
            Self::Version => "version",
        }
    }
}

/// The options ipvsadm checks against its command table, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Numeric,
    Connection,
    Service,
    Scheduler,
    Persistent,
    Netmask,
    Server,
    Forward,
    Weight,
    UThreshold,
    LThreshold,
    McastInterface,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    Syncid,
    Exact,
    Ops,
    Pe,
    SchedFlags,
    McastGroup,
    McastPort,
    McastTtl,
    SyncMaxlen,
    TunInfo,
    TunType,
    TunPort,
    TunNocsum,
    TunCsum,
    TunRemcsum,
}

impl Opt {
    const ALL: [Self; 34] = [
        Self::Numeric,
        Self::Connection,
        Self::Service,
        Self::Scheduler,
        Self::Persistent,
        Self::Netmask,
        Self::Server,
        Self::Forward,
        Self::Weight,
        Self::UThreshold,
        Self::LThreshold,
        Self::McastInterface,
        Self::Timeout,
        Self::Daemon,
        Self::Stats,
        Self::Rate,
        Self::Thresholds,
        Self::PersistentConn,
        Self::NoSort,
        Self::Syncid,
        Self::Exact,
        Self::Ops,
        Self::Pe,
        Self::SchedFlags,
        Self::McastGroup,
        Self::McastPort,
        Self::McastTtl,
        Self::SyncMaxlen,
        Self::TunInfo,
        Self::TunType,
        Self::TunPort,
        Self::TunNocsum,
        Self::TunCsum,
        Self::TunRemcsum,
    ];

    fn bit(self) -> u64 {
        1 << (self as u32)
    }

    /// ipvsadm's name for the option in its messages.
    fn name(self) -> &'static str {
        match self {
            Self::Numeric => "numeric",
            Self::Connection => "connection",
            Self::Service => "service-address",
            Self::Scheduler => "scheduler",
            Self::Persistent => "persistent",
            Self::Netmask => "netmask",
            Self::Server => "real-server",
            Self::Forward => "forwarding-method",
            Self::Weight => "weight",
            Self::UThreshold => "u-threshold",
            Self::LThreshold => "l-threshold",
            Self::McastInterface => "mcast-interface",
            Self::Timeout => "timeout",
            Self::Daemon => "daemon",
            Self::Stats => "stats",
            Self::Rate => "rate",
            Self::Thresholds => "thresholds",
            Self::PersistentConn => "persistent-conn",
            Self::NoSort => "nosort",
            Self::Syncid => "syncid",
            Self::Exact => "exact",
            Self::Ops => "ops",
            Self::Pe => "pe",
            Self::SchedFlags => "sched-flags",
            Self::McastGroup => "mcast-group",
            Self::McastPort => "mcast-port",
            Self::McastTtl => "mcast-ttl",
            Self::SyncMaxlen => "sync-maxlen",
            Self::TunInfo => "tun-info",
            Self::TunType => "tun-type",
            Self::TunPort => "tun-port",
            Self::TunNocsum => "tun-nocsum",
            Self::TunCsum => "tun-csum",
            Self::TunRemcsum => "tun-remcsum",
        }
    }
}

/// How a command treats an option (ipvsadm's `commands_v_options`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Required,
    Illegal,
    /// At most one of the command's `Exclusive` options.
    Exclusive,
    Optional,
}

fn rule(cmd: CommandKind, opt: Opt) -> Rule {
    use Opt as O;
    use Rule::{Exclusive, Illegal, Optional, Required};
    match cmd {
        CommandKind::AddService | CommandKind::EditService => match opt {
            O::Service => Required,
            O::Scheduler | O::Persistent | O::Netmask | O::Ops | O::Pe | O::SchedFlags => Optional,
            _ => Illegal,
        },
        CommandKind::DeleteService => match opt {
            O::Service => Required,
            _ => Illegal,
        },
        CommandKind::List => match opt {
            O::Connection | O::Service | O::Timeout | O::Daemon => Exclusive,
            O::Numeric
            | O::Stats
            | O::Rate
            | O::Thresholds
            | O::PersistentConn
            | O::NoSort
            | O::Syncid
            | O::Exact
            | O::TunInfo => Optional,
            _ => Illegal,
        },
        CommandKind::AddServer | CommandKind::EditServer => match opt {
            O::Service | O::Server => Required,
            O::Forward
            | O::Weight
            | O::UThreshold
            | O::LThreshold
            | O::TunType
            | O::TunPort
            | O::TunNocsum
            | O::TunCsum
            | O::TunRemcsum => Optional,
            _ => Illegal,
        },
        CommandKind::DeleteServer => match opt {
            O::Service | O::Server => Required,
            _ => Illegal,
        },
        CommandKind::StartDaemon => match opt {
            O::McastInterface
            | O::Syncid
            | O::McastGroup
            | O::McastPort
            | O::McastTtl
            | O::SyncMaxlen => Optional,
            _ => Illegal,
        },
        CommandKind::StopDaemon => match opt {
            O::Syncid => Optional,
            _ => Illegal,
        },
        CommandKind::Save => match opt {
            O::Numeric => Optional,
            _ => Illegal,
        },
        CommandKind::Zero => match opt {
            O::Service => Optional,
            _ => Illegal,
        },
        CommandKind::Flush
        | CommandKind::SetTimeouts
        | CommandKind::Restore
        | CommandKind::Help
        | CommandKind::Version => Illegal,
    }
}

/// What an option word stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OptId {
    Cmd(CommandKind),
    /// An option, with the variant of the option class when one class has
    /// several spellings (`-t`/`-u`, `-g`/`-i`/`-m`).
    Opt(Spelling),
    /// `--sort`: a no-op kept for compatibility.
    Sort,
    /// `-6`: the fwmark service is IPv6.
    Ipv6,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spelling {
    Tcp,
    Udp,
    Sctp,
    Fwmark,
    Masq,
    Ipip,
    Gatewaying,
    Other(Opt),
}

impl Spelling {
    fn class(self) -> Opt {
        match self {
            Self::Tcp | Self::Udp | Self::Sctp | Self::Fwmark => Opt::Service,
            Self::Masq | Self::Ipip | Self::Gatewaying => Opt::Forward,
            Self::Other(opt) => opt,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arity {
    None,
    Required,
    /// `-p`: the next word only if it does not start with `-`.
    Optional,
}

struct OptSpec {
    long: &'static str,
    short: Option<char>,
    arity: Arity,
    id: OptId,
}

const fn spec(long: &'static str, short: Option<char>, arity: Arity, id: OptId) -> OptSpec {
    OptSpec {
        long,
        short,
        arity,
        id,
    }
}

const fn cmd(long: &'static str, short: Option<char>, kind: CommandKind) -> OptSpec {
    spec(long, short, Arity::None, OptId::Cmd(kind))
}

const fn flag(long: &'static str, short: Option<char>, opt: Opt) -> OptSpec {
    spec(long, short, Arity::None, OptId::Opt(Spelling::Other(opt)))
}

const fn valued(long: &'static str, short: Option<char>, opt: Opt) -> OptSpec {
    spec(
        long,
        short,
        Arity::Required,
        OptId::Opt(Spelling::Other(opt)),
    )
}

/// ipvsadm 1.31's options.
const OPTIONS: &[OptSpec] = &[
    cmd("add-service", Some('A'), CommandKind::AddService),
    cmd("edit-service", Some('E'), CommandKind::EditService),
    cmd("delete-service", Some('D'), CommandKind::DeleteService),
    cmd("clear", Some('C'), CommandKind::Flush),
    cmd("list", Some('L'), CommandKind::List),
    cmd("list", Some('l'), CommandKind::List),
    cmd("zero", Some('Z'), CommandKind::Zero),
    cmd("add-server", Some('a'), CommandKind::AddServer),
    cmd("edit-server", Some('e'), CommandKind::EditServer),
    cmd("delete-server", Some('d'), CommandKind::DeleteServer),
    cmd("set", None, CommandKind::SetTimeouts),
    cmd("help", Some('h'), CommandKind::Help),
    cmd("version", Some('v'), CommandKind::Version),
    cmd("restore", Some('R'), CommandKind::Restore),
    cmd("save", Some('S'), CommandKind::Save),
    spec(
        "start-daemon",
        None,
        Arity::Required,
        OptId::Cmd(CommandKind::StartDaemon),
    ),
    spec(
        "stop-daemon",
        None,
        Arity::Required,
        OptId::Cmd(CommandKind::StopDaemon),
    ),
    spec(
        "tcp-service",
        Some('t'),
        Arity::Required,
        OptId::Opt(Spelling::Tcp),
    ),
    spec(
        "udp-service",
        Some('u'),
        Arity::Required,
        OptId::Opt(Spelling::Udp),
    ),
    spec(
        "sctp-service",
        None,
        Arity::Required,
        OptId::Opt(Spelling::Sctp),
    ),
    spec(
        "fwmark-service",
        Some('f'),
        Arity::Required,
        OptId::Opt(Spelling::Fwmark),
    ),
    valued("scheduler", Some('s'), Opt::Scheduler),
    spec(
        "persistent",
        Some('p'),
        Arity::Optional,
        OptId::Opt(Spelling::Other(Opt::Persistent)),
    ),
    valued("netmask", Some('M'), Opt::Netmask),
    valued("real-server", Some('r'), Opt::Server),
    spec(
        "masquerading",
        Some('m'),
        Arity::None,
        OptId::Opt(Spelling::Masq),
    ),
    spec("ipip", Some('i'), Arity::None, OptId::Opt(Spelling::Ipip)),
    spec(
        "gatewaying",
        Some('g'),
        Arity::None,
        OptId::Opt(Spelling::Gatewaying),
    ),
    valued("weight", Some('w'), Opt::Weight),
    valued("u-threshold", Some('x'), Opt::UThreshold),
    valued("l-threshold", Some('y'), Opt::LThreshold),
    flag("numeric", Some('n'), Opt::Numeric),
    flag("connection", Some('c'), Opt::Connection),
    valued("mcast-interface", None, Opt::McastInterface),
    valued("syncid", None, Opt::Syncid),
    flag("timeout", None, Opt::Timeout),
    flag("daemon", None, Opt::Daemon),
    flag("stats", None, Opt::Stats),
    flag("rate", None, Opt::Rate),
    flag("thresholds", None, Opt::Thresholds),
    flag("persistent-conn", None, Opt::PersistentConn),
    flag("nosort", None, Opt::NoSort),
    spec("sort", None, Arity::None, OptId::Sort),
    flag("exact", Some('X'), Opt::Exact),
    spec("ipv6", Some('6'), Arity::None, OptId::Ipv6),
    flag("ops", Some('o'), Opt::Ops),
    valued("pe", None, Opt::Pe),
    valued("sched-flags", Some('b'), Opt::SchedFlags),
    valued("mcast-group", None, Opt::McastGroup),
    valued("mcast-port", None, Opt::McastPort),
    valued("mcast-ttl", None, Opt::McastTtl),
    valued("sync-maxlen", None, Opt::SyncMaxlen),
    flag("tun-info", None, Opt::TunInfo),
    valued("tun-type", None, Opt::TunType),
    valued("tun-port", None, Opt::TunPort),
    flag("tun-nocsum", None, Opt::TunNocsum),
    flag("tun-csum", None, Opt::TunCsum),
    flag("tun-remcsum", None, Opt::TunRemcsum),
];

#[derive(Debug)]
enum Token {
    Option { id: OptId, value: Option<String> },
    Positional(String),
}

struct Tokenizer<'a, S> {
    args: &'a [S],
    next: usize,
    /// The rest of a short-option cluster being read, and its word.
    cluster: Option<(String, String)>,
    /// After `--`: every word is positional.
    only_positionals: bool,
}

impl<'a, S: AsRef<str>> Tokenizer<'a, S> {
    fn new(args: &'a [S]) -> Self {
        Self {
            args,
            next: 0,
            cluster: None,
            only_positionals: false,
        }
    }

    fn take_word(&mut self) -> Option<&'a str> {
        let word = self.args.get(self.next)?.as_ref();
        self.next += 1;
        Some(word)
    }

    /// The value of an option whose own word is used up.
    fn next_value(&mut self, arity: Arity, word: &str) -> Result<Option<String>, ParseError> {
        match arity {
            Arity::None => Ok(None),
            Arity::Required => match self.take_word() {
                Some(value) => Ok(Some(value.to_owned())),
                None => Err(ParseError::MissingArgument(word.to_owned())),
            },
            Arity::Optional => match self.args.get(self.next).map(AsRef::as_ref) {
                Some(value) if !value.starts_with('-') => {
                    self.next += 1;
                    Ok(Some(value.to_owned()))
                }
                _ => Ok(None),
            },
        }
    }

    fn next_token(&mut self) -> Result<Option<Token>, ParseError> {
        if let Some((rest, word)) = self.cluster.take() {
            return self.short(&rest, &word).map(Some);
        }
        let Some(word) = self.take_word() else {
            return Ok(None);
        };
        if self.only_positionals {
            return Ok(Some(Token::Positional(word.to_owned())));
        }
        if word == "--" {
            self.only_positionals = true;
            return self.next_token();
        }
        if let Some(long) = word.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (long, None),
            };
            let Some(spec) = OPTIONS.iter().find(|spec| spec.long == name) else {
                return Err(ParseError::UnknownOption(word.to_owned()));
            };
            let value = match (inline, spec.arity) {
                (Some(_), Arity::None) => {
                    return Err(ParseError::UnwantedArgument(word.to_owned()));
                }
                (Some(value), _) => Some(value.to_owned()),
                (None, arity) => self.next_value(arity, word)?,
            };
            return Ok(Some(Token::Option { id: spec.id, value }));
        }
        if word.len() > 1 && word.starts_with('-') {
            return self.short(&word[1..], word).map(Some);
        }
        Ok(Some(Token::Positional(word.to_owned())))
    }

    /// The first option of a short cluster `rest` (from argv word `word`).
    fn short(&mut self, rest: &str, word: &str) -> Result<Token, ParseError> {
        let mut chars = rest.chars();
        let Some(letter) = chars.next() else {
            return Err(ParseError::UnknownOption(word.to_owned()));
        };
        let tail = chars.as_str();
        let Some(spec) = OPTIONS.iter().find(|spec| spec.short == Some(letter)) else {
            return Err(ParseError::UnknownOption(word.to_owned()));
        };
        let value = match spec.arity {
            Arity::None => {
                if !tail.is_empty() {
                    self.cluster = Some((tail.to_owned(), word.to_owned()));
                }
                None
            }
            _ if !tail.is_empty() => Some(tail.to_owned()),
            arity => self.next_value(arity, word)?,
        };
        Ok(Token::Option { id: spec.id, value })
    }
}

// ---------------------------------------------------------------------------
// Collecting the options of one command line.

/// A service as written, before defaults.
#[derive(Debug, Clone, Copy)]
enum ServiceArg {
    Address {
        protocol: Protocol,
        ip: IpAddr,
        port: Option<u16>,
    },
    Fwmark {
        mark: u32,
        family: AddressFamily,
    },
}

impl ServiceArg {
    fn key(self) -> ServiceKey {
        match self {
            Self::Address { protocol, ip, port } => ServiceKey::Address {
                protocol,
                addr: SocketAddr::new(ip, port.unwrap_or(0)),
            },
            Self::Fwmark { mark, family } => ServiceKey::Fwmark { mark, family },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ForwardArg {
    Masq,
    Ipip,
    Route,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TunnelKindArg {
    Ipip,
    Gue,
    Gre,
}

impl TunnelKindArg {
    fn name(self) -> &'static str {
        match self {
            Self::Ipip => "ipip",
            Self::Gue => "gue",
            Self::Gre => "gre",
        }
    }

    /// Rules for `--tun-port`, `--tun-nocsum`, `--tun-csum`,
    /// `--tun-remcsum` (ipvsadm's `tunnel_types_v_options`).
    fn rule(self, opt: Opt) -> Rule {
        match (self, opt) {
            (Self::Ipip, _) => Rule::Illegal,
            (Self::Gue, Opt::TunPort) => Rule::Required,
            (Self::Gue, _) => Rule::Exclusive,
            (Self::Gre, Opt::TunPort | Opt::TunRemcsum) => Rule::Illegal,
            (Self::Gre, _) => Rule::Exclusive,
        }
    }
}

struct Collected {
    cmd: CommandKind,
    seen: u64,
    positionals: Vec<String>,
    service: Option<ServiceArg>,
    scheduler: Option<String>,
    persistent: Option<u32>,
    netmask: Option<String>,
    server: Option<String>,
    forward: Option<ForwardArg>,
    weight: Option<u32>,
    u_threshold: Option<u32>,
    l_threshold: Option<u32>,
    pe: Option<String>,
    sched_flags: Option<String>,
    tun_type: Option<TunnelKindArg>,
    tun_port: Option<u16>,
    daemon_state: Option<DaemonState>,
    mcast_interface: Option<String>,
    syncid: Option<u8>,
    mcast_group: Option<IpAddr>,
    mcast_port: Option<u16>,
    mcast_ttl: Option<u8>,
    sync_maxlen: Option<u16>,
}

impl Collected {
    fn new(cmd: CommandKind) -> Self {
        Self {
            cmd,
            seen: 0,
            positionals: Vec::new(),
            service: None,
            scheduler: None,
            persistent: None,
            netmask: None,
            server: None,
            forward: None,
            weight: None,
            u_threshold: None,
            l_threshold: None,
            pe: None,
            sched_flags: None,
            tun_type: None,
            tun_port: None,
            daemon_state: None,
            mcast_interface: None,
            syncid: None,
            mcast_group: None,
            mcast_port: None,
            mcast_ttl: None,
            sync_maxlen: None,
        }
    }

    fn has(&self, opt: Opt) -> bool {
        self.seen & opt.bit() != 0
    }

    fn take(
        &mut self,
        id: OptId,
        value: Option<String>,
        resolver: &dyn Resolver,
    ) -> Result<(), ParseError> {
        let spelling = match id {
            OptId::Cmd(_) => return Err(ParseError::MultipleCommands),
            OptId::Sort => return Ok(()),
            OptId::Ipv6 => {
                return match &mut self.service {
                    Some(ServiceArg::Fwmark { family, .. }) => {
                        *family = AddressFamily::Inet6;
                        Ok(())
                    }
                    _ => Err(ParseError::Ipv6BeforeFwmark),
                };
            }
            OptId::Opt(spelling) => spelling,
        };
        let opt = spelling.class();
        if self.has(opt) {
            return Err(ParseError::MultipleOptions(opt.name()));
        }
        self.seen |= opt.bit();
        match spelling {
            Spelling::Tcp | Spelling::Udp | Spelling::Sctp => {
                let protocol = match spelling {
                    Spelling::Tcp => Protocol::Tcp,
                    Spelling::Udp => Protocol::Udp,
                    _ => Protocol::Sctp,
                };
                let text = value.unwrap_or_default();
                let (ip, port) = parse_host_port(&text, protocol, resolver)
                    .ok_or(ParseError::BadServiceAddress)?;
                self.service = Some(ServiceArg::Address { protocol, ip, port });
            }
            Spelling::Fwmark => {
                let text = value.unwrap_or_default();
                let mark = parse_number(&text, 1, u32::MAX.into())
                    .ok_or_else(|| ParseError::BadFwmark(text.clone()))?;
                self.service = Some(ServiceArg::Fwmark {
                    mark: mark as u32,
                    family: AddressFamily::Inet,
                });
            }
            Spelling::Masq => self.forward = Some(ForwardArg::Masq),
            Spelling::Ipip => self.forward = Some(ForwardArg::Ipip),
            Spelling::Gatewaying => self.forward = Some(ForwardArg::Route),
            Spelling::Other(opt) => self.take_other(opt, value)?,
        }
        Ok(())
    }

    fn take_other(&mut self, opt: Opt, value: Option<String>) -> Result<(), ParseError> {
        // `-p` is the one option whose value may be absent; every other
        // option with a value got one from the tokenizer.
        if opt == Opt::Persistent {
            self.persistent = Some(match value {
                None => DEFAULT_PERSISTENCE_TIMEOUT,
                Some(text) => parse_timeout(&text, 1)?,
            });
            return Ok(());
        }
        let text = value.unwrap_or_default();
        match opt {
            Opt::Scheduler => self.scheduler = Some(check_name("scheduler", text)?),
            Opt::Netmask => self.netmask = Some(text),
            Opt::Server => self.server = Some(text),
            Opt::Weight => {
                self.weight =
                    Some(parse_number(&text, 0, 65_535).ok_or(ParseError::BadWeight)? as u32);
            }
            Opt::UThreshold => {
                self.u_threshold =
                    Some(parse_number(&text, 0, INT_MAX).ok_or(ParseError::BadUThreshold)? as u32);
            }
            Opt::LThreshold => {
                self.l_threshold =
                    Some(parse_number(&text, 0, INT_MAX).ok_or(ParseError::BadLThreshold)? as u32);
            }
            Opt::McastInterface => self.mcast_interface = Some(text),
            Opt::Syncid => {
                self.syncid = Some(parse_number(&text, 0, 255).ok_or(ParseError::BadSyncid)? as u8);
            }
            Opt::Pe => self.pe = Some(check_name("persistence engine", text)?),
            Opt::SchedFlags => self.sched_flags = Some(text),
            Opt::McastGroup => self.mcast_group = Some(parse_mcast_group(&text)?),
            Opt::McastPort => {
                self.mcast_port =
                    Some(parse_number(&text, 1, 65_535).ok_or(ParseError::BadMcastPort)? as u16);
            }
            Opt::McastTtl => {
                self.mcast_ttl =
                    Some(parse_number(&text, 1, 255).ok_or(ParseError::BadMcastTtl)? as u8);
            }
            Opt::SyncMaxlen => {
                self.sync_maxlen = Some(
                    parse_number(&text, 1, 65_535 - 20 - 8).ok_or(ParseError::BadSyncMaxlen)?
                        as u16,
                );
            }
            Opt::TunType => {
                self.tun_type = Some(match text.as_str() {
                    "ipip" => TunnelKindArg::Ipip,
                    "gue" => TunnelKindArg::Gue,
                    "gre" => TunnelKindArg::Gre,
                    _ => return Err(ParseError::BadTunnelType),
                });
            }
            Opt::TunPort => {
                self.tun_port =
                    Some(parse_number(&text, 1, 65_535).ok_or(ParseError::BadTunnelPort)? as u16);
            }
            // Flags: being seen is all they say.
            Opt::Numeric
            | Opt::Connection
            | Opt::Timeout
            | Opt::Daemon
            | Opt::Stats
            | Opt::Rate
            | Opt::Thresholds
            | Opt::PersistentConn
            | Opt::NoSort
            | Opt::Exact
            | Opt::Ops
            | Opt::TunInfo
            | Opt::TunNocsum
            | Opt::TunCsum
            | Opt::TunRemcsum => {}
            // Spelled through `Spelling`, never `Other`; `-p` is above.
            Opt::Service | Opt::Forward | Opt::Persistent => {}
        }
        Ok(())
    }

    /// ipvsadm's checks after the options are read, in its order, then the
    /// command.
    fn finish(mut self, resolver: &dyn Resolver) -> Result<Command, ParseError> {
        let mut positionals = core::mem::take(&mut self.positionals).into_iter();
        let timeouts = if self.cmd == CommandKind::SetTimeouts {
            match (positionals.next(), positionals.next(), positionals.next()) {
                (Some(tcp), Some(tcp_fin), Some(udp)) => Some(Timeouts {
                    tcp: parse_timeout(&tcp, 0)?,
                    tcp_fin: parse_timeout(&tcp_fin, 0)?,
                    udp: parse_timeout(&udp, 0)?,
                }),
                _ => return Err(ParseError::SetNeedsThreeTimeouts),
            }
        } else {
            None
        };
        if let Some(extra) = positionals.next() {
            return Err(ParseError::UnexpectedArgument(extra));
        }
        let scheduler = match self.scheduler.take() {
            Some(name) if !name.is_empty() => name,
            _ => DEFAULT_SCHEDULER.to_owned(),
        };
        let sched_flags = match self.sched_flags.as_deref() {
            Some(list) if !list.is_empty() => parse_sched_flags(&scheduler, list)?,
            _ => SchedFlags::NONE,
        };
        self.check_table()?;

        let service = self.service.map(ServiceArg::key);
        // The table check above guarantees a service where one is required.
        let required = || ParseError::MissingOption {
            option: Opt::Service.name(),
            command: self.cmd.name(),
        };
        match self.cmd {
            CommandKind::AddService | CommandKind::EditService => {
                let key = service.ok_or_else(required)?;
                let one_packet = self.has(Opt::Ops);
                if let ServiceKey::Address { protocol, addr } = key {
                    if addr.port() == 0 && self.persistent.is_none() {
                        return Err(ParseError::ZeroPort);
                    }
                    if one_packet && protocol != Protocol::Udp {
                        return Err(ParseError::OnePacketNotUdp);
                    }
                }
                let netmask = match self.netmask.as_deref() {
                    None => Netmask::host(key.family()),
                    Some(text) => parse_netmask(text, key.family(), resolver)?,
                };
                let spec = ServiceSpec {
                    key,
                    scheduler,
                    persistent: self.persistent,
                    netmask,
                    persistence_engine: self.pe.take(),
                    one_packet,
                    sched_flags,
                };
                Ok(if self.cmd == CommandKind::AddService {
                    Command::AddService(spec)
                } else {
                    Command::EditService(spec)
                })
            }
            CommandKind::DeleteService => Ok(Command::DeleteService(service.ok_or_else(required)?)),
            CommandKind::Flush => Ok(Command::Clear),
            CommandKind::AddServer | CommandKind::EditServer | CommandKind::DeleteServer => {
                let service = service.ok_or_else(required)?;
                let text = self.server.as_deref().unwrap_or_default();
                let (ip, port) = parse_host_port(text, service.protocol(), resolver)
                    .ok_or(ParseError::BadServerAddress)?;
                let mut server = SocketAddr::new(ip, port.unwrap_or(service.port()));
                if self.cmd == CommandKind::DeleteServer {
                    return Ok(Command::DeleteServer { service, server });
                }
                let method = self.forward_method()?;
                let is_fwmark = matches!(service, ServiceKey::Fwmark { .. });
                if !is_fwmark && matches!(method, ForwardMethod::Route | ForwardMethod::Tunnel(_)) {
                    server.set_port(service.port());
                }
                if AddressFamily::of(ip) != service.family()
                    && !matches!(method, ForwardMethod::Tunnel(_))
                {
                    return Err(ParseError::DifferentFamily);
                }
                let spec = ServerSpec {
                    service,
                    server,
                    method,
                    weight: self.weight.unwrap_or(1),
                    u_threshold: self.u_threshold.unwrap_or(0),
                    l_threshold: self.l_threshold.unwrap_or(0),
                };
                Ok(if self.cmd == CommandKind::AddServer {
                    Command::AddServer(spec)
                } else {
                    Command::EditServer(spec)
                })
            }
            CommandKind::List => self.list(service),
            CommandKind::Zero => Ok(Command::Zero(service)),
            CommandKind::SetTimeouts => Ok(Command::SetTimeouts(timeouts.unwrap_or_default())),
            CommandKind::Save => Ok(Command::Save {
                numeric: self.has(Opt::Numeric),
            }),
            CommandKind::Restore => Ok(Command::Restore),
            CommandKind::StartDaemon => Ok(Command::StartDaemon(DaemonSpec {
                state: self.daemon_state.unwrap_or(DaemonState::Master),
                mcast_interface: self
                    .mcast_interface
                    .take()
                    .filter(|name| !name.is_empty())
                    .unwrap_or_else(|| "eth0".to_owned()),
                syncid: self.syncid.unwrap_or(0),
                sync_maxlen: self.sync_maxlen,
                mcast_group: self.mcast_group,
                mcast_port: self.mcast_port,
                mcast_ttl: self.mcast_ttl,
            })),
            CommandKind::StopDaemon => Ok(Command::StopDaemon {
                state: self.daemon_state.unwrap_or(DaemonState::Master),
                syncid: self.syncid,
            }),
            CommandKind::Help => Ok(Command::Help),
            CommandKind::Version => Ok(Command::Version),
        }
    }

    /// ipvsadm's `generic_opt_check`: options in table order, first fault.
    fn check_table(&self) -> Result<(), ParseError> {
        let command = self.cmd.name();
        let mut exclusive: Option<Opt> = None;
        for opt in Opt::ALL {
            let given = self.has(opt);
            match (rule(self.cmd, opt), given) {
                (Rule::Required, false) => {
                    return Err(ParseError::MissingOption {
                        option: opt.name(),
                        command,
                    });
                }
                (Rule::Illegal, true) => {
                    return Err(ParseError::IllegalOption {
                        option: opt.name(),
                        command,
                    });
                }
                (Rule::Exclusive, true) => match exclusive {
                    None => exclusive = Some(opt),
                    Some(other) => {
                        return Err(ParseError::ConflictingOptions {
                            option: opt.name(),
                            other: other.name(),
                            command,
                        });
                    }
                },
                _ => {}
            }
        }
        Ok(())
    }

    /// The forwarding method with its tunnel options checked (ipvsadm's
    /// "Tunnel options conflict" and `tunnel_opt_check`).
    fn forward_method(&self) -> Result<ForwardMethod, ParseError> {
        let tunnel_opts = [
            Opt::TunType,
            Opt::TunPort,
            Opt::TunNocsum,
            Opt::TunCsum,
            Opt::TunRemcsum,
        ];
        let forward = self.forward.unwrap_or(ForwardArg::Route);
        if forward != ForwardArg::Ipip && tunnel_opts.iter().any(|opt| self.has(*opt)) {
            return Err(ParseError::TunnelOptionsWithoutTunnel);
        }
        let kind = self.tun_type.unwrap_or(TunnelKindArg::Ipip);
        let mut exclusive: Option<Opt> = None;
        for opt in [Opt::TunPort, Opt::TunNocsum, Opt::TunCsum, Opt::TunRemcsum] {
            match (kind.rule(opt), self.has(opt)) {
                (Rule::Required, false) => {
                    return Err(ParseError::MissingTunnelOption {
                        option: opt.name(),
                        tunnel: kind.name(),
                    });
                }
                (Rule::Illegal, true) => {
                    return Err(ParseError::IllegalTunnelOption {
                        option: opt.name(),
                        tunnel: kind.name(),
                    });
                }
                (Rule::Exclusive, true) => match exclusive {
                    None => exclusive = Some(opt),
                    Some(other) => {
                        return Err(ParseError::ConflictingTunnelOptions {
                            option: opt.name(),
                            other: other.name(),
                            tunnel: kind.name(),
                        });
                    }
                },
                _ => {}
            }
        }
        let checksum = if self.has(Opt::TunCsum) {
            TunnelChecksum::Checksum
        } else if self.has(Opt::TunRemcsum) {
            TunnelChecksum::Remote
        } else {
            TunnelChecksum::None
        };
        Ok(match forward {
            ForwardArg::Masq => ForwardMethod::Masq,
            ForwardArg::Route => ForwardMethod::Route,
            ForwardArg::Ipip => ForwardMethod::Tunnel(match kind {
                TunnelKindArg::Ipip => TunnelType::Ipip,
                TunnelKindArg::Gue => TunnelType::Gue {
                    port: self.tun_port.unwrap_or(0),
                    checksum,
                },
                TunnelKindArg::Gre => TunnelType::Gre { checksum },
            }),
        })
    }

    fn list(&self, service: Option<ServiceKey>) -> Result<Command, ParseError> {
        let any_of = |opts: &[Opt]| opts.iter().any(|opt| self.has(*opt));
        if (any_of(&[Opt::Connection, Opt::Timeout, Opt::Daemon])
            && any_of(&[Opt::Stats, Opt::Rate, Opt::Thresholds]))
            || (any_of(&[Opt::Timeout, Opt::Daemon]) && self.has(Opt::PersistentConn))
        {
            return Err(ParseError::ListConflict);
        }
        let target = if self.has(Opt::Connection) {
            ListTarget::Connections
        } else if let Some(key) = service {
            ListTarget::Service(key)
        } else if self.has(Opt::Timeout) {
            ListTarget::Timeouts
        } else if self.has(Opt::Daemon) {
            ListTarget::Daemon
        } else {
            ListTarget::All
        };
        // ipvsadm's print_title picks the first of these that is set.
        let columns = if self.has(Opt::Stats) {
            Columns::Stats
        } else if self.has(Opt::Rate) {
            Columns::Rate
        } else if self.has(Opt::Thresholds) {
            Columns::Thresholds
        } else if self.has(Opt::PersistentConn) {
            Columns::PersistentConn
        } else if self.has(Opt::TunInfo) {
            Columns::TunInfo
        } else {
            Columns::Default
        };
        Ok(Command::List(ListOptions {
            target,
            format: ListFormat {
                numeric: self.has(Opt::Numeric),
                exact: self.has(Opt::Exact),
                sort: !self.has(Opt::NoSort),
                columns,
            },
        }))
    }
}

fn daemon_state(value: Option<&str>, error: ParseError) -> Result<DaemonState, ParseError> {
    match value {
        Some("master") => Ok(DaemonState::Master),
        Some("backup") => Ok(DaemonState::Backup),
        _ => Err(error),
    }
}

fn check_name(what: &'static str, name: String) -> Result<String, ParseError> {
    if name.len() > MAX_NAME_LEN {
        return Err(ParseError::NameTooLong { what, name });
    }
    Ok(name)
}

/// A decimal number in `min..=max` (ipvsadm's `string_to_number`, without
/// `strtol`'s leading blanks and sign).
fn parse_number(text: &str, min: u64, max: u64) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u64 = text.parse().ok()?;
    (min..=max).contains(&value).then_some(value)
}

fn parse_timeout(text: &str, min: u64) -> Result<u32, ParseError> {
    parse_number(text, min, MAX_TIMEOUT.into())
        .map(|value| value as u32)
        .ok_or_else(|| ParseError::BadTimeout(text.to_owned()))
}

/// `host[:port]`, `[v6]:port` or a bare IPv6 address (ipvsadm's
/// `parse_service`). `None` when ipvsadm would say "illegal … specified".
fn parse_host_port(
    text: &str,
    protocol: Protocol,
    resolver: &dyn Resolver,
) -> Option<(IpAddr, Option<u16>)> {
    // All digits (or empty) is a port without a host.
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (ip, port): (IpAddr, Option<&str>) = if let Some(inner) = text.strip_prefix('[') {
        let (host, after) = inner.split_once(']')?;
        let port = after.strip_prefix(':')?;
        (IpAddr::V6(host.parse::<Ipv6Addr>().ok()?), Some(port))
    } else if let Ok(v6) = text.parse::<Ipv6Addr>() {
        (IpAddr::V6(v6), None)
    } else {
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        };
        let v4 = match host.parse::<Ipv4Addr>() {
            Ok(v4) => v4,
            Err(_) => resolver.host(host)?,
        };
        (IpAddr::V4(v4), port)
    };
    let port = match port {
        None => None,
        Some(text) => Some(match parse_number(text, 0, 65_535) {
            Some(port) => port as u16,
            None => resolver.port(text, protocol)?,
        }),
    };
    Some((ip, port))
}

fn parse_netmask(
    text: &str,
    family: AddressFamily,
    resolver: &dyn Resolver,
) -> Result<Netmask, ParseError> {
    match family {
        AddressFamily::Inet => text
            .parse::<Ipv4Addr>()
            .ok()
            .or_else(|| resolver.host(text))
            .map(Netmask::V4)
            .ok_or(ParseError::BadNetmask),
        AddressFamily::Inet6 => parse_number(text, 1, 128)
            .map(|prefix| Netmask::V6(prefix as u8))
            .ok_or(ParseError::BadIpv6Netmask),
    }
}

/// `-b flag,flag`: ipvsadm's `parse_sched_flags`.
fn parse_sched_flags(scheduler: &str, list: &str) -> Result<SchedFlags, ParseError> {
    let mut flags = SchedFlags::NONE;
    for word in list.split(',') {
        let (flag, only_for) = match word {
            "flag-1" => (SchedFlags::FLAG_1, None),
            "flag-2" => (SchedFlags::FLAG_2, None),
            "flag-3" => (SchedFlags::FLAG_3, None),
            "sh-fallback" => (SchedFlags::FLAG_1, Some("sh")),
            "sh-port" => (SchedFlags::FLAG_2, Some("sh")),
            "mh-fallback" => (SchedFlags::FLAG_1, Some("mh")),
            "mh-port" => (SchedFlags::FLAG_2, Some("mh")),
            _ => return Err(ParseError::BadSchedFlag(word.to_owned())),
        };
        if only_for.is_some_and(|name| name != scheduler) {
            return Err(ParseError::IncompatibleSchedFlag(word.to_owned()));
        }
        flags = flags | flag;
    }
    Ok(flags)
}

fn parse_mcast_group(text: &str) -> Result<IpAddr, ParseError> {
    if text.contains(':') {
        match text.parse::<Ipv6Addr>() {
            Ok(group) if group.is_multicast() => Ok(IpAddr::V6(group)),
            _ => Err(ParseError::BadMcastGroup {
                family: "IPv6",
                value: text.to_owned(),
            }),
        }
    } else {
        match text.parse::<Ipv4Addr>() {
            Ok(group) if group.is_multicast() => Ok(IpAddr::V4(group)),
            _ => Err(ParseError::BadMcastGroup {
                family: "IPv4",
                value: text.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn words(line: &str) -> Vec<&str> {
        line.split_whitespace().collect()
    }

    fn parse(line: &str) -> Result<Command, ParseError> {
        parse_args(&words(line))
    }

    fn sock(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn tcp(addr: &str) -> ServiceKey {
        ServiceKey::Address {
            protocol: Protocol::Tcp,
            addr: sock(addr),
        }
    }

    fn udp(addr: &str) -> ServiceKey {
        ServiceKey::Address {
            protocol: Protocol::Udp,
            addr: sock(addr),
        }
    }

    fn fwmark(mark: u32, family: AddressFamily) -> ServiceKey {
        ServiceKey::Fwmark { mark, family }
    }

    /// A service with ipvsadm's defaults.
    fn service(key: ServiceKey) -> ServiceSpec {
        ServiceSpec {
            key,
            scheduler: "wlc".to_owned(),
            persistent: None,
            netmask: Netmask::host(key.family()),
            persistence_engine: None,
            one_packet: false,
            sched_flags: SchedFlags::NONE,
        }
    }

    /// A real server with ipvsadm's defaults (DR, weight 1).
    fn server(service: ServiceKey, addr: &str) -> ServerSpec {
        ServerSpec {
            service,
            server: sock(addr),
            method: ForwardMethod::Route,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
        }
    }

    fn list(target: ListTarget, numeric: bool, columns: Columns) -> Command {
        Command::List(ListOptions {
            target,
            format: ListFormat {
                numeric,
                exact: false,
                sort: true,
                columns,
            },
        })
    }

    fn with<T>(mut value: T, change: impl FnOnce(&mut T)) -> T {
        change(&mut value);
        value
    }

    #[test]
    fn valid_command_lines() {
        let web = tcp("203.0.113.10:80");
        let v6 = ServiceKey::Address {
            protocol: Protocol::Udp,
            addr: sock("[2001:db8::1]:53"),
        };
        let cases: Vec<(&str, &str, Command)> = vec![
            (
                "add with scheduler",
                "-A -t 203.0.113.10:80 -s rr",
                Command::AddService(with(service(web), |s| s.scheduler = "rr".into())),
            ),
            (
                "default scheduler is wlc",
                "-A -t 203.0.113.10:80",
                Command::AddService(service(web)),
            ),
            (
                "long options",
                "--add-service --tcp-service 203.0.113.10:80 --scheduler rr",
                Command::AddService(with(service(web), |s| s.scheduler = "rr".into())),
            ),
            (
                "-p without value at the end: 360 s",
                "-A -t 203.0.113.10:80 -p",
                Command::AddService(with(service(web), |s| s.persistent = Some(360))),
            ),
            (
                "-p followed by an option: 360 s",
                "-A -t 203.0.113.10:80 -p -s rr",
                Command::AddService(with(service(web), |s| {
                    s.persistent = Some(360);
                    s.scheduler = "rr".into();
                })),
            ),
            (
                "-p with a separate value",
                "-A -t 203.0.113.10:80 -p 600 -s rr",
                Command::AddService(with(service(web), |s| {
                    s.persistent = Some(600);
                    s.scheduler = "rr".into();
                })),
            ),
            (
                "-p with an attached value",
                "-A -t 203.0.113.10:80 -p600",
                Command::AddService(with(service(web), |s| s.persistent = Some(600))),
            ),
            (
                "--persistent=value",
                "-A -t 203.0.113.10:80 --persistent=2678400",
                Command::AddService(with(service(web), |s| s.persistent = Some(2_678_400))),
            ),
            (
                "--persistent without value",
                "-A -t 203.0.113.10:80 --persistent",
                Command::AddService(with(service(web), |s| s.persistent = Some(360))),
            ),
            (
                "port 0 is fine when persistent; IPv4 mask",
                "-A -t 203.0.113.10:0 -p -M 255.255.255.0",
                Command::AddService(with(service(tcp("203.0.113.10:0")), |s| {
                    s.persistent = Some(360);
                    s.netmask = Netmask::V4("255.255.255.0".parse().unwrap());
                })),
            ),
            (
                "no port at all means port 0",
                "-A -t 203.0.113.10 -p 30",
                Command::AddService(with(service(tcp("203.0.113.10:0")), |s| {
                    s.persistent = Some(30);
                })),
            ),
            (
                "IPv6 in brackets, sh flags",
                "-A -u [2001:db8::1]:53 -s sh -b sh-fallback,sh-port",
                Command::AddService(with(service(v6), |s| {
                    s.scheduler = "sh".into();
                    s.sched_flags = SchedFlags::FLAG_1 | SchedFlags::FLAG_2;
                })),
            ),
            (
                "-b before -s is checked against the final scheduler",
                "-A -u [2001:db8::1]:53 -b mh-port -s mh",
                Command::AddService(with(service(v6), |s| {
                    s.scheduler = "mh".into();
                    s.sched_flags = SchedFlags::FLAG_2;
                })),
            ),
            (
                "generic flags",
                "-A -t 203.0.113.10:80 -b flag-3,flag-1",
                Command::AddService(with(service(web), |s| {
                    s.sched_flags = SchedFlags::FLAG_1 | SchedFlags::FLAG_3;
                })),
            ),
            (
                "bare IPv6 address: no port",
                "-A -t 2001:db8::1 -p",
                Command::AddService(with(
                    service(ServiceKey::Address {
                        protocol: Protocol::Tcp,
                        addr: sock("[2001:db8::1]:0"),
                    }),
                    |s| s.persistent = Some(360),
                )),
            ),
            (
                "IPv6 prefix for -M",
                "-A -t [2001:db8::1]:80 -p 100 -M 64",
                Command::AddService(with(
                    service(ServiceKey::Address {
                        protocol: Protocol::Tcp,
                        addr: sock("[2001:db8::1]:80"),
                    }),
                    |s| {
                        s.persistent = Some(100);
                        s.netmask = Netmask::V6(64);
                    },
                )),
            ),
            (
                "fwmark service",
                "-A -f 7 -s sh -b sh-port",
                Command::AddService(with(service(fwmark(7, AddressFamily::Inet)), |s| {
                    s.scheduler = "sh".into();
                    s.sched_flags = SchedFlags::FLAG_2;
                })),
            ),
            (
                "IPv6 fwmark service",
                "-A -f 4294967295 -6 -s rr",
                Command::AddService(with(service(fwmark(u32::MAX, AddressFamily::Inet6)), |s| {
                    s.scheduler = "rr".into()
                })),
            ),
            (
                "one-packet scheduling on UDP, persistence engine",
                "-A -u 203.0.113.10:5060 -o -p 60 --pe sip",
                Command::AddService(with(service(udp("203.0.113.10:5060")), |s| {
                    s.one_packet = true;
                    s.persistent = Some(60);
                    s.persistence_engine = Some("sip".into());
                })),
            ),
            (
                "combined command and service option",
                "-At 203.0.113.10:80",
                Command::AddService(service(web)),
            ),
            (
                "value attached to the short option",
                "-A -t203.0.113.10:80",
                Command::AddService(service(web)),
            ),
            (
                "--opt=value",
                "-A --tcp-service=203.0.113.10:80",
                Command::AddService(service(web)),
            ),
            (
                "edit sends defaults for what is not given",
                "-E -t 203.0.113.10:80 -s rr",
                Command::EditService(with(service(web), |s| s.scheduler = "rr".into())),
            ),
            (
                "delete service",
                "-D -t 203.0.113.10:80",
                Command::DeleteService(web),
            ),
            ("clear", "-C", Command::Clear),
            ("clear, long", "--clear", Command::Clear),
            (
                "NAT server keeps its port",
                "-a -t 203.0.113.10:80 -r 192.168.1.11:8080 -m -w 3",
                Command::AddServer(with(server(web, "192.168.1.11:8080"), |r| {
                    r.method = ForwardMethod::Masq;
                    r.weight = 3;
                })),
            ),
            (
                "-r without port takes the service port",
                "-a -t 203.0.113.10:80 -r 192.168.1.11 -m",
                Command::AddServer(with(server(web, "192.168.1.11:80"), |r| {
                    r.method = ForwardMethod::Masq;
                })),
            ),
            (
                "-r before -t still takes the service port",
                "-a -r 192.168.1.11 -t 203.0.113.10:80 -m",
                Command::AddServer(with(server(web, "192.168.1.11:80"), |r| {
                    r.method = ForwardMethod::Masq;
                })),
            ),
            (
                "DR forces the service port",
                "-a -t 203.0.113.10:80 -r 192.168.1.11:8080 -g",
                Command::AddServer(server(web, "192.168.1.11:80")),
            ),
            (
                "DR is the default",
                "-a -t 203.0.113.10:80 -r 192.168.1.11:8080",
                Command::AddServer(server(web, "192.168.1.11:80")),
            ),
            (
                "fwmark: DR keeps the given port",
                "-a -f 7 -r 192.168.1.11:8080 -g",
                Command::AddServer(server(fwmark(7, AddressFamily::Inet), "192.168.1.11:8080")),
            ),
            (
                "fwmark: no port is port 0",
                "-a -f 7 -r 192.168.1.13 -i -w 2",
                Command::AddServer(with(
                    server(fwmark(7, AddressFamily::Inet), "192.168.1.13:0"),
                    |r| {
                        r.method = ForwardMethod::Tunnel(TunnelType::Ipip);
                        r.weight = 2;
                    },
                )),
            ),
            (
                "IPv6 server behind an IPv4 service, tunnelled",
                "-a -t 203.0.113.10:80 -r [2001:db8::2]:81 -i",
                Command::AddServer(with(server(web, "[2001:db8::2]:80"), |r| {
                    r.method = ForwardMethod::Tunnel(TunnelType::Ipip);
                })),
            ),
            (
                "GUE tunnel",
                "-a -t 203.0.113.10:80 -r 192.168.1.11 -i --tun-type gue --tun-port 6080 --tun-csum",
                Command::AddServer(with(server(web, "192.168.1.11:80"), |r| {
                    r.method = ForwardMethod::Tunnel(TunnelType::Gue {
                        port: 6080,
                        checksum: TunnelChecksum::Checksum,
                    });
                })),
            ),
            (
                "GRE tunnel",
                "-a -t 203.0.113.10:80 -r 192.168.1.11 -i --tun-type gre --tun-nocsum",
                Command::AddServer(with(server(web, "192.168.1.11:80"), |r| {
                    r.method = ForwardMethod::Tunnel(TunnelType::Gre {
                        checksum: TunnelChecksum::None,
                    });
                })),
            ),
            (
                "clustered flag then valued option",
                "-a -t 203.0.113.10:80 -r 192.168.1.11 -mw 5",
                Command::AddServer(with(server(web, "192.168.1.11:80"), |r| {
                    r.method = ForwardMethod::Masq;
                    r.weight = 5;
                })),
            ),
            (
                "weight 0 (quiesced)",
                "-a -t 203.0.113.10:80 -r 192.168.1.11 -w0",
                Command::AddServer(with(server(web, "192.168.1.11:80"), |r| r.weight = 0)),
            ),
            (
                "edit server: thresholds, defaults for the rest",
                "-e -t 203.0.113.10:80 -r 192.168.1.11 -x 100 -y 50",
                Command::EditServer(with(server(web, "192.168.1.11:80"), |r| {
                    r.u_threshold = 100;
                    r.l_threshold = 50;
                })),
            ),
            (
                "delete server keeps the given port",
                "-d -t 203.0.113.10:80 -r 192.168.1.11:8080",
                Command::DeleteServer {
                    service: web,
                    server: sock("192.168.1.11:8080"),
                },
            ),
            (
                "no argument lists with names",
                "",
                list(ListTarget::All, false, Columns::Default),
            ),
            ("-L", "-L", list(ListTarget::All, false, Columns::Default)),
            ("-l", "-l", list(ListTarget::All, false, Columns::Default)),
            (
                "--list --sort",
                "--list --sort",
                list(ListTarget::All, false, Columns::Default),
            ),
            ("-Ln", "-Ln", list(ListTarget::All, true, Columns::Default)),
            (
                "-lnc",
                "-lnc",
                list(ListTarget::Connections, true, Columns::Default),
            ),
            (
                "-c --persistent-conn",
                "-L -c --persistent-conn",
                list(ListTarget::Connections, false, Columns::PersistentConn),
            ),
            (
                "--stats wins over --rate",
                "-L --rate -n --stats",
                list(ListTarget::All, true, Columns::Stats),
            ),
            (
                "--rate",
                "-L --rate",
                list(ListTarget::All, false, Columns::Rate),
            ),
            (
                "--thresholds wins over --persistent-conn",
                "-L --persistent-conn --thresholds",
                list(ListTarget::All, false, Columns::Thresholds),
            ),
            (
                "--tun-info",
                "-Ln --tun-info",
                list(ListTarget::All, true, Columns::TunInfo),
            ),
            (
                "one service",
                "-L -n -t 203.0.113.10:80",
                list(ListTarget::Service(web), true, Columns::Default),
            ),
            (
                "--timeout",
                "-L --timeout",
                list(ListTarget::Timeouts, false, Columns::Default),
            ),
            (
                "--daemon",
                "-L --daemon",
                list(ListTarget::Daemon, false, Columns::Default),
            ),
            (
                "--exact and --nosort",
                "-L --exact --nosort",
                Command::List(ListOptions {
                    target: ListTarget::All,
                    format: ListFormat {
                        numeric: false,
                        exact: true,
                        sort: false,
                        columns: Columns::Default,
                    },
                }),
            ),
            ("zero all", "-Z", Command::Zero(None)),
            (
                "zero one",
                "-Z -t 203.0.113.10:80",
                Command::Zero(Some(web)),
            ),
            (
                "--set",
                "--set 900 120 300",
                Command::SetTimeouts(Timeouts {
                    tcp: 900,
                    tcp_fin: 120,
                    udp: 300,
                }),
            ),
            (
                "--set with zeros (keep)",
                "--set 0 0 2678400",
                Command::SetTimeouts(Timeouts {
                    tcp: 0,
                    tcp_fin: 0,
                    udp: 2_678_400,
                }),
            ),
            ("save", "-S", Command::Save { numeric: false }),
            ("save numeric", "-Sn", Command::Save { numeric: true }),
            ("save long", "--save -n", Command::Save { numeric: true }),
            ("restore", "-R", Command::Restore),
            ("help", "-h", Command::Help),
            ("help ignores the rest", "--help --bogus", Command::Help),
            ("version", "--version", Command::Version),
            ("-v", "-v", Command::Version),
            (
                "start daemon",
                "--start-daemon master --mcast-interface eth1 --syncid 5 --mcast-group 239.1.2.3 --mcast-port 8849 --mcast-ttl 2 --sync-maxlen 1400",
                Command::StartDaemon(DaemonSpec {
                    state: DaemonState::Master,
                    mcast_interface: "eth1".into(),
                    syncid: 5,
                    sync_maxlen: Some(1400),
                    mcast_group: Some("239.1.2.3".parse().unwrap()),
                    mcast_port: Some(8849),
                    mcast_ttl: Some(2),
                }),
            ),
            (
                "start daemon, defaults",
                "--start-daemon backup",
                Command::StartDaemon(DaemonSpec {
                    state: DaemonState::Backup,
                    mcast_interface: "eth0".into(),
                    syncid: 0,
                    sync_maxlen: None,
                    mcast_group: None,
                    mcast_port: None,
                    mcast_ttl: None,
                }),
            ),
            (
                "stop daemon",
                "--stop-daemon backup",
                Command::StopDaemon {
                    state: DaemonState::Backup,
                    syncid: None,
                },
            ),
        ];
        for (description, line, expected) in cases {
            assert_eq!(parse(line), Ok(expected), "{description}: {line}");
        }
        // Empty words cannot come from split_whitespace: ipvsadm ignores an
        // empty -b and takes an empty -s as the default scheduler.
        assert_eq!(
            parse_args(&["-A", "-t", "203.0.113.10:80", "-b", ""]),
            Ok(Command::AddService(service(web)))
        );
        assert_eq!(
            parse_args(&["-A", "-t", "203.0.113.10:80", "-s", ""]),
            Ok(Command::AddService(service(web))),
            "an empty scheduler is ipvsadm's default"
        );
    }

    #[test]
    fn invalid_command_lines() {
        use ParseError as E;
        let r = "-a -t 203.0.113.10:80 -r 192.168.1.11";
        let cases: Vec<(&str, String, ParseError)> = vec![
            ("option before command", "-n -L".into(), E::NoCommand),
            ("no option at all", "foo".into(), E::NoCommand),
            ("two commands", "-L -A".into(), E::MultipleCommands),
            ("two commands clustered", "-LA".into(), E::MultipleCommands),
            (
                "unknown short",
                "-L -q".into(),
                E::UnknownOption("-q".into()),
            ),
            (
                "unknown in a cluster",
                "-Lnq".into(),
                E::UnknownOption("-Lnq".into()),
            ),
            (
                "unknown long",
                "--bogus".into(),
                E::UnknownOption("--bogus".into()),
            ),
            (
                "long options are not abbreviated",
                "--add -t 203.0.113.10:80".into(),
                E::UnknownOption("--add".into()),
            ),
            (
                "missing value",
                "-A -t".into(),
                E::MissingArgument("-t".into()),
            ),
            (
                "missing value, long",
                "-A --tcp-service".into(),
                E::MissingArgument("--tcp-service".into()),
            ),
            (
                "flag with a value",
                "-L --numeric=yes".into(),
                E::UnwantedArgument("--numeric=yes".into()),
            ),
            (
                "two services",
                "-A -t 203.0.113.10:80 -u 203.0.113.10:53".into(),
                E::MultipleOptions("service-address"),
            ),
            (
                "two methods",
                format!("{r} -m -g"),
                E::MultipleOptions("forwarding-method"),
            ),
            (
                "stray word",
                "-A -t 203.0.113.10:80 extra".into(),
                E::UnexpectedArgument("extra".into()),
            ),
            (
                "-p takes a following word as its value",
                "-A -t 203.0.113.10:80 -p foo".into(),
                E::BadTimeout("foo".into()),
            ),
            (
                "-p 0",
                "-A -t 203.0.113.10:80 -p 0".into(),
                E::BadTimeout("0".into()),
            ),
            (
                "-p over 31 days",
                "-A -t 203.0.113.10:80 -p 2678401".into(),
                E::BadTimeout("2678401".into()),
            ),
            (
                "--persistent= is an empty value",
                "-A -t 203.0.113.10:80 --persistent=".into(),
                E::BadTimeout(String::new()),
            ),
            (
                "no service",
                "-A -s rr".into(),
                E::MissingOption {
                    option: "service-address",
                    command: "add-service",
                },
            ),
            (
                "no real server",
                "-a -t 203.0.113.10:80 -w 2".into(),
                E::MissingOption {
                    option: "real-server",
                    command: "add-server",
                },
            ),
            (
                "weight on a service",
                "-A -t 203.0.113.10:80 -w 3".into(),
                E::IllegalOption {
                    option: "weight",
                    command: "add-service",
                },
            ),
            (
                "weight on delete",
                "-d -t 203.0.113.10:80 -r 192.168.1.11 -w 2".into(),
                E::IllegalOption {
                    option: "weight",
                    command: "delete-server",
                },
            ),
            (
                "save with -c",
                "-S -c".into(),
                E::IllegalOption {
                    option: "connection",
                    command: "save",
                },
            ),
            (
                "clear with -n",
                "-C -n".into(),
                E::IllegalOption {
                    option: "numeric",
                    command: "flush",
                },
            ),
            (
                "two exclusive list targets",
                "-L -c --timeout".into(),
                E::ConflictingOptions {
                    option: "timeout",
                    other: "connection",
                    command: "list",
                },
            ),
            (
                "service and -c",
                "-L -t 203.0.113.10:80 -c".into(),
                E::ConflictingOptions {
                    option: "service-address",
                    other: "connection",
                    command: "list",
                },
            ),
            ("-c with --stats", "-L -c --stats".into(), E::ListConflict),
            (
                "--timeout with --persistent-conn",
                "-L --timeout --persistent-conn".into(),
                E::ListConflict,
            ),
            ("port only", "-A -t 80".into(), E::BadServiceAddress),
            (
                "service name (no resolver)",
                "-A -t 203.0.113.10:http".into(),
                E::BadServiceAddress,
            ),
            (
                "host name (no resolver)",
                "-A -t www.example:80".into(),
                E::BadServiceAddress,
            ),
            (
                "IPv6 in brackets without port",
                "-A -t [2001:db8::1] -p".into(),
                E::BadServiceAddress,
            ),
            (
                "IPv6 in brackets, empty port",
                "-A -t [2001:db8::1]: -p".into(),
                E::BadServiceAddress,
            ),
            (
                "IPv4 in brackets",
                "-A -t [192.0.2.1]:80".into(),
                E::BadServiceAddress,
            ),
            (
                "port too large",
                "-A -t 203.0.113.10:65536".into(),
                E::BadServiceAddress,
            ),
            (
                "unterminated bracket",
                "-A -t [2001:db8::1:80".into(),
                E::BadServiceAddress,
            ),
            (
                "bad real server",
                "-a -t 203.0.113.10:80 -r 300.1.1.1".into(),
                E::BadServerAddress,
            ),
            ("fwmark 0", "-A -f 0".into(), E::BadFwmark("0".into())),
            (
                "fwmark too large",
                "-A -f 4294967296".into(),
                E::BadFwmark("4294967296".into()),
            ),
            (
                "fwmark not a number",
                "-A -f x".into(),
                E::BadFwmark("x".into()),
            ),
            ("-6 before -f", "-A -6 -f 7".into(), E::Ipv6BeforeFwmark),
            (
                "-6 on an address service",
                "-A -t 203.0.113.10:80 -6".into(),
                E::Ipv6BeforeFwmark,
            ),
            (
                "--set with two",
                "--set 1 2".into(),
                E::SetNeedsThreeTimeouts,
            ),
            (
                "--set with a word",
                "--set 1 2 x".into(),
                E::BadTimeout("x".into()),
            ),
            (
                "--set with four",
                "--set 1 2 3 4".into(),
                E::UnexpectedArgument("4".into()),
            ),
            (
                "bad IPv4 mask",
                "-A -t 203.0.113.10:80 -p -M 255.255.255.300".into(),
                E::BadNetmask,
            ),
            (
                "IPv6 prefix too long",
                "-A -t [2001:db8::1]:80 -p -M 129".into(),
                E::BadIpv6Netmask,
            ),
            (
                "IPv6 prefix 0",
                "-A -t [2001:db8::1]:80 -p -M 0".into(),
                E::BadIpv6Netmask,
            ),
            ("weight too large", format!("{r} -w 65536"), E::BadWeight),
            ("negative weight", format!("{r} -w -1"), E::BadWeight),
            ("bad u-threshold", format!("{r} -x abc"), E::BadUThreshold),
            (
                "l-threshold over INT_MAX",
                format!("{r} -y 2147483648"),
                E::BadLThreshold,
            ),
            (
                "unknown scheduler flag",
                "-A -t 203.0.113.10:80 -b bogus".into(),
                E::BadSchedFlag("bogus".into()),
            ),
            (
                "empty item in the flag list",
                "-A -t 203.0.113.10:80 -b flag-1,,flag-2".into(),
                E::BadSchedFlag(String::new()),
            ),
            (
                "sh flag on rr",
                "-A -t 203.0.113.10:80 -s rr -b sh-port".into(),
                E::IncompatibleSchedFlag("sh-port".into()),
            ),
            (
                "mh flag on the default scheduler",
                "-A -t 203.0.113.10:80 -b mh-fallback".into(),
                E::IncompatibleSchedFlag("mh-fallback".into()),
            ),
            (
                "scheduler name too long",
                "-A -t 203.0.113.10:80 -s abcdefghijklmnop".into(),
                E::NameTooLong {
                    what: "scheduler",
                    name: "abcdefghijklmnop".into(),
                },
            ),
            (
                "zero port, not persistent",
                "-A -t 203.0.113.10:0".into(),
                E::ZeroPort,
            ),
            (
                "no port, not persistent",
                "-E -t 203.0.113.10".into(),
                E::ZeroPort,
            ),
            (
                "ops on TCP",
                "-A -t 203.0.113.10:80 -o".into(),
                E::OnePacketNotUdp,
            ),
            (
                "IPv6 server for NAT on IPv4",
                "-a -t 203.0.113.10:80 -r [2001:db8::2]:80 -m".into(),
                E::DifferentFamily,
            ),
            (
                "IPv4 server on an IPv6 fwmark",
                "-a -f 7 -6 -r 192.168.1.11 -g".into(),
                E::DifferentFamily,
            ),
            (
                "tunnel option with NAT",
                format!("{r} -m --tun-type gue"),
                E::TunnelOptionsWithoutTunnel,
            ),
            (
                "tunnel option with the default DR",
                format!("{r} --tun-csum"),
                E::TunnelOptionsWithoutTunnel,
            ),
            (
                "gue needs a port",
                format!("{r} -i --tun-type gue"),
                E::MissingTunnelOption {
                    option: "tun-port",
                    tunnel: "gue",
                },
            ),
            (
                "ipip takes no port",
                format!("{r} -i --tun-port 5"),
                E::IllegalTunnelOption {
                    option: "tun-port",
                    tunnel: "ipip",
                },
            ),
            (
                "two checksum options",
                format!("{r} -i --tun-type gue --tun-port 5 --tun-remcsum --tun-csum"),
                E::ConflictingTunnelOptions {
                    option: "tun-remcsum",
                    other: "tun-csum",
                    tunnel: "gue",
                },
            ),
            (
                "gre has no remote checksum",
                format!("{r} -i --tun-type gre --tun-remcsum"),
                E::IllegalTunnelOption {
                    option: "tun-remcsum",
                    tunnel: "gre",
                },
            ),
            (
                "unknown tunnel type",
                format!("{r} -i --tun-type vxlan"),
                E::BadTunnelType,
            ),
            (
                "tunnel port 0",
                format!("{r} -i --tun-port 0"),
                E::BadTunnelPort,
            ),
            (
                "tunnel option on a service",
                "-A -t 203.0.113.10:80 --tun-type gue".into(),
                E::IllegalOption {
                    option: "tun-type",
                    command: "add-service",
                },
            ),
            (
                "daemon state",
                "--start-daemon slave".into(),
                E::BadStartDaemon,
            ),
            (
                "stop daemon state",
                "--stop-daemon x".into(),
                E::BadStopDaemon,
            ),
            (
                "syncid range",
                "--start-daemon master --syncid 256".into(),
                E::BadSyncid,
            ),
            (
                "unicast group",
                "--start-daemon master --mcast-group 10.0.0.1".into(),
                E::BadMcastGroup {
                    family: "IPv4",
                    value: "10.0.0.1".into(),
                },
            ),
            (
                "unicast IPv6 group",
                "--start-daemon master --mcast-group 2001:db8::1".into(),
                E::BadMcastGroup {
                    family: "IPv6",
                    value: "2001:db8::1".into(),
                },
            ),
            (
                "mcast port 0",
                "--start-daemon master --mcast-port 0".into(),
                E::BadMcastPort,
            ),
            (
                "mcast ttl 0",
                "--start-daemon master --mcast-ttl 0".into(),
                E::BadMcastTtl,
            ),
            (
                "sync maxlen too big",
                "--start-daemon master --sync-maxlen 65508".into(),
                E::BadSyncMaxlen,
            ),
        ];
        for (description, line, expected) in cases {
            assert_eq!(parse(&line), Err(expected), "{description}: {line}");
        }
    }

    #[test]
    fn errors_read_as_ipvsadm_writes_them() {
        let message = |line: &str| parse(line).unwrap_err().to_string();
        assert_eq!(
            message("-A -t 203.0.113.10:0"),
            "Zero port specified for non-persistent service"
        );
        assert_eq!(
            message("-A -t 203.0.113.10:80 -w 3"),
            "Illegal 'weight' option with the 'add-service' command"
        );
        assert_eq!(
            message("-a -t 203.0.113.10:80"),
            "You need to supply the 'real-server' option for the 'add-server' command"
        );
        assert_eq!(
            message("-L -c --timeout"),
            "The option 'timeout' conflicts with the 'connection' option in the 'list' command"
        );
        assert_eq!(
            message("-A -t 203.0.113.10:80 -p x"),
            "invalid timeout value `x' specified"
        );
        assert_eq!(
            message("-A -t 203.0.113.10:80 -t 203.0.113.10:81"),
            "multiple 'service-address' options specified"
        );
        assert_eq!(
            message("-A -t nowhere"),
            "illegal virtual server address[:port] specified"
        );
        assert_eq!(message("-L -q"), "-q: unknown option");
        assert_eq!(message("-A -t"), "-t: missing argument");
        assert!(message("-n").contains("first option must be a command"));
    }

    #[test]
    fn resolver_supplies_names() {
        struct Fixed;
        impl Resolver for Fixed {
            fn host(&self, name: &str) -> Option<Ipv4Addr> {
                (name == "web.example").then(|| Ipv4Addr::new(203, 0, 113, 10))
            }
            fn port(&self, name: &str, protocol: Protocol) -> Option<u16> {
                (name == "http" && protocol == Protocol::Tcp).then_some(80)
            }
        }
        assert_eq!(
            parse_args_with(&words("-A -t web.example:http"), &Fixed),
            Ok(Command::AddService(service(tcp("203.0.113.10:80"))))
        );
        assert_eq!(
            parse_args_with(&words("-A -u web.example:http"), &Fixed),
            Err(ParseError::BadServiceAddress),
            "service names are per protocol"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 2048,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0xa4_95ad),
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        })]

        /// Whatever words come in, the parser answers without panicking.
        #[test]
        fn never_panics(picks in proptest::collection::vec(0usize..40, 0..10)) {
            const VOCABULARY: [&str; 40] = [
                "-A", "-E", "-D", "-C", "-a", "-e", "-d", "-L", "-Ln", "-lnc", "-Z", "-S", "-R",
                "--set", "-t", "-u", "-f", "-6", "-s", "-p", "-M", "-r", "-g", "-i", "-m", "-w",
                "-x", "-y", "--tun-type", "--tun-port", "-b", "10.0.0.1:80", "[::1]:80", "gue",
                "sh-port", "0", "360", "--", "-", "",
            ];
            let args: Vec<&str> = picks.iter().map(|&i| VOCABULARY[i]).collect();
            let _ = parse_args(&args);
        }
    }
}
