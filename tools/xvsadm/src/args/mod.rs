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
    AddressFamily, DEFAULT_PERSISTENCE_TIMEOUT, DEFAULT_SCHEDULER, Encapsulation, IpvsProtocol,
    MAX_TIMEOUT, Netmask, SchedFlags, ServerMethod, ServiceKey, Timeouts, TunnelChecksum,
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
    /// `--start-daemon`: start a role of the director's connection sync.
    StartDaemon(DaemonSpec),
    /// `--stop-daemon`: stop one.
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
    pub method: ServerMethod,
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
    /// `--load` (xvs): weights and the agents' reports, of every service
    /// or of one.
    Load(Option<ServiceKey>),
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
    /// `--mcast-interface` (left out: the director's `[sync]` or `[ha]`
    /// interface, else its client-side one; ipvsadm's is `eth0`).
    pub mcast_interface: Option<String>,
    /// `--syncid`, 0 … 255 (left out: `[sync]`'s, else 0).
    pub syncid: Option<u8>,
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
    fn port(&self, name: &str, protocol: IpvsProtocol) -> Option<u16>;
}

/// A [`Resolver`] that knows no names: numeric input only.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNames;

impl Resolver for NoNames {
    fn host(&self, _name: &str) -> Option<Ipv4Addr> {
        None
    }
    fn port(&self, _name: &str, _protocol: IpvsProtocol) -> Option<u16> {
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

mod collect;
mod options;
mod tokenizer;
mod values;

use collect::*;
use options::*;
use tokenizer::*;
use values::*;

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
        ServiceKey::address(IpvsProtocol::TCP, sock(addr))
    }

    fn udp(addr: &str) -> ServiceKey {
        ServiceKey::address(IpvsProtocol::UDP, sock(addr))
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
            method: ServerMethod::ROUTE,
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
        let v6 = ServiceKey::address(IpvsProtocol::UDP, sock("[2001:db8::1]:53"));
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
                    service(ServiceKey::address(
                        IpvsProtocol::TCP,
                        sock("[2001:db8::1]:0"),
                    )),
                    |s| s.persistent = Some(360),
                )),
            ),
            (
                "IPv6 prefix for -M",
                "-A -t [2001:db8::1]:80 -p 100 -M 64",
                Command::AddService(with(
                    service(ServiceKey::address(
                        IpvsProtocol::TCP,
                        sock("[2001:db8::1]:80"),
                    )),
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
                    r.method = ServerMethod::MASQ;
                    r.weight = 3;
                })),
            ),
            (
                "-r without port takes the service port",
                "-a -t 203.0.113.10:80 -r 192.168.1.11 -m",
                Command::AddServer(with(server(web, "192.168.1.11:80"), |r| {
                    r.method = ServerMethod::MASQ;
                })),
            ),
            (
                "-r before -t still takes the service port",
                "-a -r 192.168.1.11 -t 203.0.113.10:80 -m",
                Command::AddServer(with(server(web, "192.168.1.11:80"), |r| {
                    r.method = ServerMethod::MASQ;
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
                        r.method = ServerMethod::IPIP;
                        r.weight = 2;
                    },
                )),
            ),
            (
                "IPv6 server behind an IPv4 service, tunnelled",
                "-a -t 203.0.113.10:80 -r [2001:db8::2]:81 -i",
                Command::AddServer(with(server(web, "[2001:db8::2]:80"), |r| {
                    r.method = ServerMethod::IPIP;
                })),
            ),
            (
                "GUE tunnel",
                "-a -t 203.0.113.10:80 -r 192.168.1.11 -i --tun-type gue --tun-port 6080 --tun-csum",
                Command::AddServer(with(server(web, "192.168.1.11:80"), |r| {
                    r.method = ServerMethod::Encapsulated(Encapsulation::Gue {
                        port: 6080,
                        checksum: TunnelChecksum::Checksum,
                    });
                })),
            ),
            (
                "GRE tunnel",
                "-a -t 203.0.113.10:80 -r 192.168.1.11 -i --tun-type gre --tun-nocsum",
                Command::AddServer(with(server(web, "192.168.1.11:80"), |r| {
                    r.method = ServerMethod::Encapsulated(Encapsulation::Gre {
                        checksum: TunnelChecksum::None,
                    });
                })),
            ),
            (
                "clustered flag then valued option",
                "-a -t 203.0.113.10:80 -r 192.168.1.11 -mw 5",
                Command::AddServer(with(server(web, "192.168.1.11:80"), |r| {
                    r.method = ServerMethod::MASQ;
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
                    mcast_interface: Some("eth1".into()),
                    syncid: Some(5),
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
                    mcast_interface: None,
                    syncid: None,
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
            fn port(&self, name: &str, protocol: IpvsProtocol) -> Option<u16> {
                (name == "http" && protocol == IpvsProtocol::TCP).then_some(80)
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
