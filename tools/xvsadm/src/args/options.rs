//! The option table (names, short letters, arity) and ipvsadm's rules
//! matrix: which options each command requires, refuses, or takes one of.

/// The commands, in ipvsadm's order (which its messages name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CommandKind {
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
    pub(super) fn name(self) -> &'static str {
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
pub(super) enum Opt {
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
    Load,
}

impl Opt {
    pub(super) const ALL: [Self; 35] = [
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
        Self::Load,
    ];

    pub(super) fn bit(self) -> u64 {
        1 << (self as u32)
    }

    /// ipvsadm's name for the option in its messages.
    pub(super) fn name(self) -> &'static str {
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
            Self::Load => "load",
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
pub(super) enum Rule {
    Required,
    Illegal,
    /// At most one of the command's `Exclusive` options.
    Exclusive,
    Optional,
}

pub(super) fn rule(cmd: CommandKind, opt: Opt) -> Rule {
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
            | O::TunInfo
            | O::Load => Optional,
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
pub(super) enum OptId {
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
pub(super) enum Spelling {
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
    pub(super) fn class(self) -> Opt {
        match self {
            Self::Tcp | Self::Udp | Self::Sctp | Self::Fwmark => Opt::Service,
            Self::Masq | Self::Ipip | Self::Gatewaying => Opt::Forward,
            Self::Other(opt) => opt,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arity {
    None,
    Required,
    /// `-p`: the next word only if it does not start with `-`.
    Optional,
}

pub(super) struct OptSpec {
    pub(super) long: &'static str,
    pub(super) short: Option<char>,
    pub(super) arity: Arity,
    pub(super) id: OptId,
}

pub(super) const fn spec(
    long: &'static str,
    short: Option<char>,
    arity: Arity,
    id: OptId,
) -> OptSpec {
    OptSpec {
        long,
        short,
        arity,
        id,
    }
}

pub(super) const fn cmd(long: &'static str, short: Option<char>, kind: CommandKind) -> OptSpec {
    spec(long, short, Arity::None, OptId::Cmd(kind))
}

pub(super) const fn flag(long: &'static str, short: Option<char>, opt: Opt) -> OptSpec {
    spec(long, short, Arity::None, OptId::Opt(Spelling::Other(opt)))
}

pub(super) const fn valued(long: &'static str, short: Option<char>, opt: Opt) -> OptSpec {
    spec(
        long,
        short,
        Arity::Required,
        OptId::Opt(Spelling::Other(opt)),
    )
}

/// ipvsadm 1.31's options.
pub(super) const OPTIONS: &[OptSpec] = &[
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
    flag("load", None, Opt::Load),
    valued("tun-type", None, Opt::TunType),
    valued("tun-port", None, Opt::TunPort),
    flag("tun-nocsum", None, Opt::TunNocsum),
    flag("tun-csum", None, Opt::TunCsum),
    flag("tun-remcsum", None, Opt::TunRemcsum),
];
