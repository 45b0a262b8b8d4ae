//! Collecting the options of one command line, then applying ipvsadm's
//! defaults and rules to build the [`Command`](super::Command).

use super::*;

#[derive(Debug, Clone, Copy)]
pub(super) enum ServiceArg {
    Address {
        protocol: IpvsProtocol,
        ip: IpAddr,
        port: Option<u16>,
    },
    Fwmark {
        mark: u32,
        family: AddressFamily,
    },
}

impl ServiceArg {
    pub(super) fn key(self) -> ServiceKey {
        match self {
            Self::Address { protocol, ip, port } => {
                ServiceKey::address(protocol, SocketAddr::new(ip, port.unwrap_or(0)))
            }
            Self::Fwmark { mark, family } => ServiceKey::Fwmark { mark, family },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ForwardArg {
    Masq,
    Ipip,
    Route,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TunnelKindArg {
    Ipip,
    Gue,
    Gre,
}

impl TunnelKindArg {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Ipip => "ipip",
            Self::Gue => "gue",
            Self::Gre => "gre",
        }
    }

    /// Rules for `--tun-port`, `--tun-nocsum`, `--tun-csum`,
    /// `--tun-remcsum` (ipvsadm's `tunnel_types_v_options`).
    pub(super) fn rule(self, opt: Opt) -> Rule {
        match (self, opt) {
            (Self::Ipip, _) => Rule::Illegal,
            (Self::Gue, Opt::TunPort) => Rule::Required,
            (Self::Gue, _) => Rule::Exclusive,
            (Self::Gre, Opt::TunPort | Opt::TunRemcsum) => Rule::Illegal,
            (Self::Gre, _) => Rule::Exclusive,
        }
    }
}

pub(super) struct Collected {
    cmd: CommandKind,
    seen: u64,
    pub(super) positionals: Vec<String>,
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
    pub(super) daemon_state: Option<DaemonState>,
    mcast_interface: Option<String>,
    syncid: Option<u8>,
    mcast_group: Option<IpAddr>,
    mcast_port: Option<u16>,
    mcast_ttl: Option<u8>,
    sync_maxlen: Option<u16>,
}

impl Collected {
    pub(super) fn new(cmd: CommandKind) -> Self {
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

    pub(super) fn has(&self, opt: Opt) -> bool {
        self.seen & opt.bit() != 0
    }

    pub(super) fn take(
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
                    Spelling::Tcp => IpvsProtocol::TCP,
                    Spelling::Udp => IpvsProtocol::UDP,
                    _ => IpvsProtocol::Sctp,
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

    pub(super) fn take_other(&mut self, opt: Opt, value: Option<String>) -> Result<(), ParseError> {
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
            | Opt::Load
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
    pub(super) fn finish(mut self, resolver: &dyn Resolver) -> Result<Command, ParseError> {
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
                if let Some((protocol, addr)) = key.protocol_addr() {
                    if addr.port() == 0 && self.persistent.is_none() {
                        return Err(ParseError::ZeroPort);
                    }
                    if one_packet && protocol != IpvsProtocol::UDP {
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
                if !is_fwmark && (method == ServerMethod::ROUTE || method.is_tunnel()) {
                    server.set_port(service.port());
                }
                if AddressFamily::of(ip) != service.family() && !method.is_tunnel() {
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
                mcast_interface: self.mcast_interface.take().filter(|name| !name.is_empty()),
                syncid: self.syncid,
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
    pub(super) fn check_table(&self) -> Result<(), ParseError> {
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
    pub(super) fn forward_method(&self) -> Result<ServerMethod, ParseError> {
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
            ForwardArg::Masq => ServerMethod::MASQ,
            ForwardArg::Route => ServerMethod::ROUTE,
            ForwardArg::Ipip => match kind {
                TunnelKindArg::Ipip => ServerMethod::IPIP,
                TunnelKindArg::Gue => ServerMethod::Encapsulated(Encapsulation::Gue {
                    port: self.tun_port.unwrap_or(0),
                    checksum,
                }),
                TunnelKindArg::Gre => ServerMethod::Encapsulated(Encapsulation::Gre { checksum }),
            },
        })
    }

    pub(super) fn list(&self, service: Option<ServiceKey>) -> Result<Command, ParseError> {
        let any_of = |opts: &[Opt]| opts.iter().any(|opt| self.has(*opt));
        if (any_of(&[Opt::Connection, Opt::Timeout, Opt::Daemon])
            && any_of(&[Opt::Stats, Opt::Rate, Opt::Thresholds]))
            || (any_of(&[Opt::Timeout, Opt::Daemon]) && self.has(Opt::PersistentConn))
            || (self.has(Opt::Load)
                && any_of(&[
                    Opt::Connection,
                    Opt::Timeout,
                    Opt::Daemon,
                    Opt::Stats,
                    Opt::Rate,
                    Opt::Thresholds,
                    Opt::PersistentConn,
                    Opt::TunInfo,
                ]))
        {
            return Err(ParseError::ListConflict);
        }
        let target = if self.has(Opt::Load) {
            ListTarget::Load(service)
        } else if self.has(Opt::Connection) {
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
