//! The `xvsadm` program's logic: an ipvsadm command line → control-socket
//! requests → ipvsadm's output and exit status. The binary
//! (`src/main.rs`) only supplies the socket, the terminal and the
//! name lookups; tests drive [`run`] against a director in the same
//! process.
//!
//! # Exit status
//! As ipvsadm's: 0 on success; 2 for a command line ipvsadm would refuse
//! (and when the director cannot be reached: ipvsadm's "Can't initialize
//! ipvs"); 255 when the director refuses the change (ipvsadm returns -1
//! from `main` after printing the kernel's error).
//!
//! # Where xvsadm differs from ipvsadm
//! - `-R` applies the whole input as one change: all of it or, when a line
//!   fails, none of it (ipvsadm stops at the failing line with the lines
//!   before it applied).
//! - Firewall-mark services, SCTP, `--pe`, `-o` (one-packet scheduling),
//!   and GUE/GRE tunnels are refused with a sentence saying so: the
//!   director has no such feature yet.
//! - `--start-daemon` / `--stop-daemon` start and stop a role of the
//!   director's connection sync (it needs `[sync]` or `[ha]`'s key); the
//!   options left out keep the running sync's (or `[sync]`'s) values, and
//!   `--mcast-interface` left out means the director's sync interface, not
//!   ipvsadm's `eth0`.
//! - Names (without `-n`) come from `/etc/hosts` and `/etc/services` only;
//!   xvsadm never waits on DNS.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::collections::HashMap;

use xvs_proto::ForwardMethod;
use xvs_proto::control::client::{ClientError, ControlClient};
use xvs_proto::control::{
    ConnView, ControlError, DaemonParams, Persistence, Reply, Request, ServerParams, ServiceId,
    ServiceParams, SyncRoleName, TableView, TimeoutSet,
};

use super::args::{
    Command, DaemonState, ListTarget, Resolver, ServerSpec, ServiceSpec, parse_args_with,
};
use super::format::{
    self, ConnectionView, ListFormat, Names, Rates, ServerView, ServiceView, Stats, TableInfo,
};
use super::restore::parse_restore_with;
use super::{IpvsProtocol, Netmask, SchedFlags, ServerMethod, ServiceKey, Timeouts};

/// Exit status of a refused command line.
pub const EXIT_USAGE: i32 = 2;
/// Exit status of a change the director refused.
pub const EXIT_REFUSED: i32 = 255;

/// Why a request did not get the director's answer. Printed as it is,
/// with exit status 2 ([`EXIT_USAGE`]), as ipvsadm does when it cannot
/// talk to the kernel.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The director could not be reached: ipvsadm's words, then why.
    #[error("Can't initialize ipvs: {0}")]
    Unreachable(ClientError),
    /// The exchange failed; the message says whether the outcome of a
    /// change is unknown.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Printing a connection listing failed (`xvsadm -L -c | head`, say).
    #[error("writing the listing: {0}")]
    Output(std::io::Error),
}

/// A command the director cannot carry out, whatever its state (it has no
/// such feature yet): refused before anything is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{what} is not supported by xvs yet")]
pub struct Unsupported {
    /// What was asked for, as a phrase (`an SCTP service`).
    pub what: &'static str,
}

/// Something that carries requests to a director.
pub trait Transport {
    /// Sends `request`; the director's reply.
    ///
    /// # Errors
    /// The director could not be reached or its answer read.
    fn call(&mut self, request: Request) -> Result<Reply, TransportError>;

    /// Asks for the connection entries (`-L -c`) and hands `chunk` each
    /// batch as it arrives; the listing's last reply
    /// ([`Reply::ConnectionsEnd`] or the director's refusal).
    ///
    /// # Errors
    /// The director could not be reached, the listing broke off, or
    /// `chunk` failed (its error).
    fn connections(
        &mut self,
        chunk: &mut dyn FnMut(&[ConnView]) -> Result<(), TransportError>,
    ) -> Result<Reply, TransportError>;
}

impl Transport for ControlClient {
    fn call(&mut self, request: Request) -> Result<Reply, TransportError> {
        Ok(ControlClient::call(self, request)?)
    }

    fn connections(
        &mut self,
        chunk: &mut dyn FnMut(&[ConnView]) -> Result<(), TransportError>,
    ) -> Result<Reply, TransportError> {
        ControlClient::connections(self, chunk)
    }
}

/// What a run printed and its exit status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Exit status.
    pub status: i32,
}

impl Outcome {
    fn out(stdout: String) -> Self {
        Self {
            stdout,
            ..Self::default()
        }
    }

    fn fail(status: i32, stderr: impl Into<String>) -> Self {
        let mut stderr = stderr.into();
        if !stderr.ends_with('\n') {
            stderr.push('\n');
        }
        Self {
            stdout: String::new(),
            stderr,
            status,
        }
    }
}

/// Names from `/etc/hosts` and `/etc/services` (or any text in their
/// formats), both ways.
#[derive(Debug, Clone, Default)]
pub struct FileNames {
    host_by_addr: HashMap<IpAddr, String>,
    addr_by_host: HashMap<String, Ipv4Addr>,
    service_by_port: HashMap<(u16, IpvsProtocol), String>,
    port_by_service: HashMap<(String, IpvsProtocol), u16>,
}

impl FileNames {
    /// Names from the texts of a hosts file and a services file.
    #[must_use]
    pub fn parse(hosts: &str, services: &str) -> Self {
        let mut names = Self::default();
        for line in hosts.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let Some(addr) = words.next().and_then(|a| a.parse::<IpAddr>().ok()) else {
                continue;
            };
            let hosts: Vec<&str> = words.collect();
            if let Some(first) = hosts.first() {
                names
                    .host_by_addr
                    .entry(addr)
                    .or_insert_with(|| (*first).to_owned());
            }
            if let IpAddr::V4(v4) = addr {
                for h in hosts {
                    names.addr_by_host.entry(h.to_owned()).or_insert(v4);
                }
            }
        }
        for line in services.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let (Some(name), Some(port_proto)) = (words.next(), words.next()) else {
                continue;
            };
            let Some((port, proto)) = port_proto.split_once('/') else {
                continue;
            };
            let Ok(port) = port.parse::<u16>() else {
                continue;
            };
            let proto = match proto {
                "tcp" => IpvsProtocol::TCP,
                "udp" => IpvsProtocol::UDP,
                "sctp" => IpvsProtocol::Sctp,
                _ => continue,
            };
            names
                .service_by_port
                .entry((port, proto))
                .or_insert_with(|| name.to_owned());
            for alias in std::iter::once(name).chain(words) {
                names
                    .port_by_service
                    .entry((alias.to_owned(), proto))
                    .or_insert(port);
            }
        }
        names
    }

    /// The system's `/etc/hosts` and `/etc/services` (missing files mean
    /// no names).
    #[must_use]
    pub fn system() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        Self::parse(&read("/etc/hosts"), &read("/etc/services"))
    }
}

impl Names for FileNames {
    fn host(&self, addr: IpAddr) -> Option<String> {
        self.host_by_addr.get(&addr).cloned()
    }
    fn service(&self, port: u16, protocol: IpvsProtocol) -> Option<String> {
        self.service_by_port.get(&(port, protocol)).cloned()
    }
}

impl Resolver for FileNames {
    fn host(&self, name: &str) -> Option<Ipv4Addr> {
        self.addr_by_host.get(name).copied()
    }
    fn port(&self, name: &str, protocol: IpvsProtocol) -> Option<u16> {
        self.port_by_service
            .get(&(name.to_owned(), protocol))
            .copied()
    }
}

/// A command the director cannot carry out, whatever its state.
fn role_name(state: DaemonState) -> SyncRoleName {
    match state {
        DaemonState::Master => SyncRoleName::Master,
        DaemonState::Backup => SyncRoleName::Backup,
    }
}

fn unsupported(what: &'static str) -> Unsupported {
    Unsupported { what }
}

fn service_id(key: &ServiceKey) -> Result<ServiceId, Unsupported> {
    match *key {
        ServiceKey::Supported(id) => Ok(id),
        ServiceKey::Sctp(_) => Err(unsupported("an SCTP service")),
        ServiceKey::Fwmark { .. } => Err(unsupported("a firewall-mark service (-f)")),
    }
}

fn service_params(spec: &ServiceSpec) -> Result<ServiceParams, Unsupported> {
    let id = service_id(&spec.key)?;
    if spec.persistence_engine.is_some() {
        return Err(unsupported("a persistence engine (--pe)"));
    }
    if spec.one_packet {
        return Err(unsupported("one-packet scheduling (-o)"));
    }
    let persistence = spec.persistent.map(|timeout| {
        let (mask_v4, prefix_v6) = match spec.netmask {
            Netmask::V4(mask) => (u32::from(mask), 128),
            Netmask::V6(prefix) => (u32::MAX, prefix),
        };
        Persistence {
            timeout,
            mask_v4,
            prefix_v6,
        }
    });
    Ok(ServiceParams {
        id,
        scheduler: spec.scheduler.clone(),
        flags: spec.sched_flags.bits(),
        persistence,
        sloppy: false,
        fallback: None,
    })
}

fn server_params(spec: &ServerSpec) -> Result<(ServiceId, ServerParams), Unsupported> {
    let service = service_id(&spec.service)?;
    let method = match spec.method {
        ServerMethod::Supported(method) => method,
        ServerMethod::Local => ForwardMethod::DirectRouting,
        ServerMethod::Encapsulated(_) => return Err(unsupported("a GUE or GRE tunnel")),
    };
    Ok((
        service,
        ServerParams {
            addr: spec.server.ip(),
            port: spec.server.port(),
            method,
            weight: spec.weight,
            u_threshold: spec.u_threshold,
            l_threshold: spec.l_threshold,
        },
    ))
}

/// The request a changing command sends (`None` for the commands that
/// only read or print).
///
/// # Errors
/// A command the director cannot carry out (fwmark, SCTP, …).
pub fn change_request(command: &Command) -> Result<Option<Request>, Unsupported> {
    Ok(Some(match command {
        Command::AddService(spec) => Request::AddService(service_params(spec)?),
        Command::EditService(spec) => Request::EditService(service_params(spec)?),
        Command::DeleteService(key) => Request::DeleteService {
            id: service_id(key)?,
        },
        Command::Clear => Request::Clear,
        Command::AddServer(spec) => {
            let (service, server) = server_params(spec)?;
            Request::AddServer { service, server }
        }
        Command::EditServer(spec) => {
            let (service, server) = server_params(spec)?;
            Request::EditServer { service, server }
        }
        Command::DeleteServer { service, server } => Request::DeleteServer {
            service: service_id(service)?,
            addr: server.ip(),
            port: server.port(),
        },
        Command::Zero(key) => Request::Zero {
            service: key.as_ref().map(service_id).transpose()?,
        },
        Command::SetTimeouts(t) => Request::SetTimeouts(TimeoutSet {
            tcp: t.tcp,
            tcp_fin: t.tcp_fin,
            udp: t.udp,
        }),
        Command::StartDaemon(d) => Request::StartDaemon(DaemonParams {
            role: role_name(d.state),
            interface: d.mcast_interface.clone(),
            syncid: d.syncid,
            maxlen: d.sync_maxlen,
            group: d.mcast_group,
            port: d.mcast_port,
            ttl: d.mcast_ttl,
        }),
        Command::StopDaemon { state, .. } => Request::StopDaemon {
            role: role_name(*state),
        },
        Command::List(_)
        | Command::Save { .. }
        | Command::Restore
        | Command::Help
        | Command::Version => return Ok(None),
    }))
}

fn stats(s: xvs_proto::control::StatsView) -> Stats {
    Stats {
        conns: s.conns,
        inpkts: s.inpkts,
        outpkts: s.outpkts,
        inbytes: s.inbytes,
        outbytes: s.outbytes,
    }
}

fn rates(r: xvs_proto::control::RatesView) -> Rates {
    Rates {
        cps: r.cps,
        inpps: r.inpps,
        outpps: r.outpps,
        inbps: r.inbps,
        outbps: r.outbps,
    }
}

/// The director's table as listings show it.
#[must_use]
pub fn service_views(table: &TableView) -> Vec<ServiceView> {
    table
        .services
        .iter()
        .map(|s| {
            let id = s.params.id;
            let netmask = match (id.vip, s.params.persistence) {
                (IpAddr::V4(_), Some(p)) => Netmask::V4(Ipv4Addr::from(p.mask_v4)),
                (IpAddr::V6(_), Some(p)) => Netmask::V6(p.prefix_v6),
                (IpAddr::V4(_), None) => Netmask::V4(Ipv4Addr::BROADCAST),
                (IpAddr::V6(_), None) => Netmask::V6(128),
            };
            ServiceView {
                key: ServiceKey::Supported(id),
                scheduler: s.params.scheduler.clone(),
                sched_flags: SchedFlags::from_bits(s.params.flags),
                persistent: s.params.persistence.map(|p| p.timeout),
                netmask,
                persistence_engine: None,
                one_packet: false,
                servers: s
                    .servers
                    .iter()
                    .map(|rs| ServerView {
                        addr: SocketAddr::new(rs.params.addr, rs.params.port),
                        method: ServerMethod::Supported(rs.params.method),
                        weight: rs.params.weight,
                        configured_weight: rs.configured_weight,
                        active_conns: rs.active,
                        inactive_conns: rs.inactive,
                        persistent_conns: rs.persistent,
                        u_threshold: rs.params.u_threshold,
                        l_threshold: rs.params.l_threshold,
                        stats: stats(rs.stats),
                        rates: rates(rs.rates),
                    })
                    .collect(),
                stats: stats(s.stats),
                rates: rates(s.rates),
            }
        })
        .collect()
}

fn connection_view(c: &ConnView) -> ConnectionView {
    ConnectionView {
        protocol: IpvsProtocol::Supported(c.proto),
        client: SocketAddr::new(c.client.0, c.client.1),
        virtual_addr: SocketAddr::new(c.vip.0, c.vip.1),
        destination: SocketAddr::new(c.server.0, c.server.1),
        state: c.state.clone(),
        expires_secs: c.expires_secs,
        persistence_engine: None,
    }
}

/// The first line ipvsadm prints for a refusal, then ours.
fn refused(e: &ControlError) -> Outcome {
    Outcome::fail(
        EXIT_REFUSED,
        format!("{}\n{}", e.kind.ipvsadm_message(), e.message),
    )
}

/// A transport's failure is its own sentence: it says whether the
/// director was unreachable (ipvsadm's "Can't initialize ipvs") or the
/// outcome of a change is unknown.
fn call(transport: &mut dyn Transport, request: Request) -> Result<Reply, Outcome> {
    transport
        .call(request)
        .map_err(|e| Outcome::fail(EXIT_USAGE, e.to_string()))
}

fn table(transport: &mut dyn Transport) -> Result<TableView, Outcome> {
    match call(transport, Request::List)? {
        Reply::Table(t) => Ok(t),
        Reply::Error(e) => Err(refused(&e)),
        other => Err(Outcome::fail(
            EXIT_USAGE,
            format!("unexpected answer from the director: {other:?}"),
        )),
    }
}

/// ipvsadm's usage text.
pub const HELP: &str = "\
xvsadm: ipvsadm's commands for the xvs director (ipvsadm v1.31 syntax)
Usage:
  xvsadm -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags]
  xvsadm -D virtual-service
  xvsadm -C
  xvsadm -R
  xvsadm -S [-n]
  xvsadm -a|e virtual-service -r server-address [options]
  xvsadm -d virtual-service -r server-address
  xvsadm -L|l [virtual-service] [options]
  xvsadm -Z [virtual-service]
  xvsadm --set tcp tcpfin udp
  xvsadm -h

Commands:
  --add-service     -A        add virtual service with options
  --edit-service    -E        edit virtual service with options
  --delete-service  -D        delete virtual service
  --clear           -C        clear the whole table
  --restore         -R        restore rules from stdin (all or nothing)
  --save            -S        save rules to stdout
  --add-server      -a        add real server with options
  --edit-server     -e        edit real server with options
  --delete-server   -d        delete real server
  --list            -L|-l     list the table
  --zero            -Z        zero counters in a service or all services
  --set tcp tcpfin udp        set connection timeout values
  --help            -h        display this help message
  --version         -v        display the version

virtual-service:
  --tcp-service|-t  service-address   service-address is host[:port], IPv6 in brackets
  --udp-service|-u  service-address

Options:
  --scheduler    -s scheduler         rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|mh|fo|ovf|twos,
                                      the default scheduler is wlc.
  --persistent   -p [timeout]         persistent service (default 360 s)
  --netmask      -M netmask           persistent granularity mask
  --sched-flags  -b flags             flag-1,flag-2,flag-3, sh-fallback,sh-port, mh-fallback,mh-port
  --real-server  -r server-address    server-address is host (and port)
  --gatewaying   -g                   gatewaying (direct routing) (default)
  --ipip         -i                   ipip encapsulation (tunneling)
  --masquerading -m                   masquerading (NAT)
  --weight       -w weight            capacity of real server
  --u-threshold  -x uthreshold        upper threshold of connections
  --l-threshold  -y lthreshold        lower threshold of connections
  --connection   -c                   output of current IPVS connections
  --timeout                           output of timeout (tcp tcpfin udp)
  --stats                             output of statistics information
  --rate                              output of rate information
  --exact                             expand numbers (display exact values)
  --thresholds                        output of thresholds information
  --persistent-conn                   output of persistent connection info
  --nosort                            disable sorting output of service/server entries
  --sort                              does nothing, for backwards compatibility
  --numeric      -n                   numeric output of addresses and ports
  --load                              (xvs) configured and effective weights, and each
                                      real server's agent: state, report age, load figures

The director is reached at its control socket: /run/xvs/control.sock, or
the path in the XVSADM_SOCKET environment variable.
";

/// Runs one xvsadm command line (without the program name) against the
/// director behind `transport`; `stdin` is read only by `-R`.
pub fn run<S: AsRef<str>>(
    args: &[S],
    transport: &mut dyn Transport,
    stdin: &mut dyn FnMut() -> std::io::Result<String>,
    names: &FileNames,
) -> Outcome {
    let mut streamed = Vec::new();
    let mut outcome = run_to(args, transport, stdin, names, &mut streamed);
    outcome.stdout = String::from_utf8_lossy(&streamed).into_owned() + &outcome.stdout;
    outcome
}

/// [`run`], writing the connection listing (`-L -c`) to `out` as it
/// arrives instead of gathering it: a million entries are never held at
/// once. Everything else is in the outcome, to be printed after.
pub fn run_to<S: AsRef<str>>(
    args: &[S],
    transport: &mut dyn Transport,
    stdin: &mut dyn FnMut() -> std::io::Result<String>,
    names: &FileNames,
    out: &mut dyn std::io::Write,
) -> Outcome {
    let command = match parse_args_with(args, names) {
        Ok(c) => c,
        Err(e) => return Outcome::fail(EXIT_USAGE, e.to_string()),
    };
    let result = match &command {
        Command::Help => Ok(Outcome::out(HELP.to_owned())),
        Command::Version => Ok(Outcome::out(format!(
            "xvsadm {} (ipvsadm v1.31 compatible)\n",
            env!("CARGO_PKG_VERSION")
        ))),
        Command::List(options) => list(transport, options.target, &options.format, names, out),
        Command::Save { numeric } => table(transport).map(|t| {
            let views = service_views(&t);
            let numeric_names = format::Numeric;
            let names: &dyn Names = if *numeric { &numeric_names } else { names };
            Outcome::out(format::save(&views, *numeric, names))
        }),
        Command::Restore => restore(transport, stdin, names),
        other => match change_request(other) {
            Err(e) => Err(Outcome::fail(EXIT_USAGE, e.to_string())),
            Ok(None) => Ok(Outcome::default()),
            Ok(Some(request)) => match call(transport, request) {
                Ok(Reply::Done) => Ok(Outcome::default()),
                Ok(Reply::Error(e)) => Err(refused(&e)),
                Ok(other) => Err(Outcome::fail(
                    EXIT_USAGE,
                    format!("unexpected answer from the director: {other:?}"),
                )),
                Err(o) => Err(o),
            },
        },
    };
    result.unwrap_or_else(|o| o)
}

fn list(
    transport: &mut dyn Transport,
    target: ListTarget,
    format: &ListFormat,
    names: &FileNames,
    out: &mut dyn std::io::Write,
) -> Result<Outcome, Outcome> {
    let numeric_names = format::Numeric;
    let names: &dyn Names = if format.numeric {
        &numeric_names
    } else {
        names
    };
    match target {
        ListTarget::All => {
            let t = table(transport)?;
            let info = TableInfo {
                conn_table_size: t.conn_capacity,
                ..TableInfo::default()
            };
            Ok(Outcome::out(format::list_table(
                &info,
                &service_views(&t),
                format,
                names,
            )))
        }
        ListTarget::Service(key) => {
            let id = service_id(&key).map_err(|e| Outcome::fail(EXIT_USAGE, e.to_string()))?;
            let t = table(transport)?;
            let views = service_views(&t);
            let index = t.services.iter().position(|s| s.params.id == id);
            match index {
                Some(i) => Ok(Outcome::out(format::list_service(&views[i], format, names))),
                None => Err(Outcome::fail(EXIT_USAGE, "No such service")),
            }
        }
        ListTarget::Connections => list_connections(transport, format, names, out),
        ListTarget::Timeouts => match call(transport, Request::Timeouts)? {
            Reply::Timeouts(t) => Ok(Outcome::out(format::list_timeouts(&Timeouts {
                tcp: t.tcp,
                tcp_fin: t.tcp_fin,
                udp: t.udp,
            }))),
            Reply::Error(e) => Err(refused(&e)),
            other => Err(Outcome::fail(
                EXIT_USAGE,
                format!("unexpected answer from the director: {other:?}"),
            )),
        },
        // The sync's roles (ipvsadm's lines; nothing without `[sync]`, as
        // ipvsadm prints nothing when no daemon runs), then the HA
        // election, with `[ha]`, on a line of its own.
        ListTarget::Daemon => match call(transport, Request::Daemons)? {
            Reply::Daemons(view) => Ok(Outcome::out(format!(
                "{}{}",
                view.sync
                    .as_deref()
                    .map(format::sync_lines)
                    .unwrap_or_default(),
                view.ha.as_deref().map(format::ha_line).unwrap_or_default()
            ))),
            Reply::Error(e) => Err(refused(&e)),
            other => Err(Outcome::fail(
                EXIT_USAGE,
                format!("unexpected answer from the director: {other:?}"),
            )),
        },
        ListTarget::Load(key) => {
            let only = key
                .map(|k| service_id(&k))
                .transpose()
                .map_err(|e| Outcome::fail(EXIT_USAGE, e.to_string()))?;
            match call(transport, Request::Load)? {
                Reply::Load(view) => {
                    if let Some(id) = only
                        && !view.services.iter().any(|s| s.id == id)
                    {
                        return Err(Outcome::fail(EXIT_USAGE, "No such service"));
                    }
                    Ok(Outcome::out(crate::load::list_load(
                        &view,
                        only,
                        format.numeric,
                        names,
                    )))
                }
                Reply::Error(e) => Err(refused(&e)),
                other => Err(Outcome::fail(
                    EXIT_USAGE,
                    format!("unexpected answer from the director: {other:?}"),
                )),
            }
        }
    }
}

/// `-L -c`: the header once the director has begun to answer, then each
/// chunk's lines as it arrives.
fn list_connections(
    transport: &mut dyn Transport,
    format: &ListFormat,
    names: &dyn Names,
    out: &mut dyn std::io::Write,
) -> Result<Outcome, Outcome> {
    let mut header = Some(format::connections_header(format));
    let mut text = String::new();
    let mut reader_gone = false;
    let mut print = |entries: &[ConnView], text: &mut String| -> Result<(), TransportError> {
        text.clear();
        if let Some(h) = header.take() {
            text.push_str(&h);
        }
        for entry in entries {
            format::connection_line(text, &connection_view(entry), format, names);
        }
        out.write_all(text.as_bytes()).map_err(|e| {
            reader_gone = e.kind() == std::io::ErrorKind::BrokenPipe;
            TransportError::Output(e)
        })
    };
    let reply = transport.connections(&mut |entries| print(entries, &mut text));
    match reply {
        Ok(Reply::ConnectionsEnd { .. }) => {
            // An empty table: the header alone.
            print(&[], &mut text).map_err(|e| Outcome::fail(EXIT_USAGE, e.to_string()))?;
            Ok(Outcome::default())
        }
        Ok(Reply::Error(e)) => Err(refused(&e)),
        Ok(other) => Err(Outcome::fail(
            EXIT_USAGE,
            format!("unexpected answer from the director: {other:?}"),
        )),
        // `xvsadm -L -c | head`: the reader has what it wanted.
        Err(_) if reader_gone => Ok(Outcome::default()),
        Err(e) => Err(Outcome::fail(EXIT_USAGE, e.to_string())),
    }
}

fn restore(
    transport: &mut dyn Transport,
    stdin: &mut dyn FnMut() -> std::io::Result<String>,
    names: &FileNames,
) -> Result<Outcome, Outcome> {
    let input = stdin().map_err(|e| Outcome::fail(EXIT_USAGE, format!("reading stdin: {e}")))?;
    let commands =
        parse_restore_with(&input, names).map_err(|e| Outcome::fail(EXIT_USAGE, e.to_string()))?;
    let mut requests = Vec::with_capacity(commands.len());
    for (i, c) in commands.iter().enumerate() {
        match change_request(c) {
            Ok(Some(r)) => requests.push(r),
            Ok(None) => {}
            Err(e) => return Err(Outcome::fail(EXIT_USAGE, format!("command {}: {e}", i + 1))),
        }
    }
    match call(transport, Request::Batch { requests })? {
        Reply::Done => Ok(Outcome::default()),
        Reply::Error(e) => Err(refused(&e)),
        other => Err(Outcome::fail(
            EXIT_USAGE,
            format!("unexpected answer from the director: {other:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    fn entry(cport: u16) -> ConnView {
        ConnView {
            proto: xvs_proto::Protocol::Tcp,
            client: ("198.51.100.7".parse().unwrap(), cport),
            vip: ("203.0.113.10".parse().unwrap(), 80),
            server: ("192.0.2.11".parse().unwrap(), 80),
            state: "ESTABLISHED".to_owned(),
            expires_secs: 899,
        }
    }

    /// Delivers its chunks one by one, recording what had been printed
    /// when each was handed over.
    struct Chunked {
        chunks: Vec<Vec<ConnView>>,
        end: Reply,
        printed: Rc<RefCell<Vec<u8>>>,
        seen_before_chunk: Vec<usize>,
    }

    impl Transport for Chunked {
        fn call(&mut self, request: Request) -> Result<Reply, TransportError> {
            panic!("not expected: {request:?}")
        }

        fn connections(
            &mut self,
            chunk: &mut dyn FnMut(&[ConnView]) -> Result<(), TransportError>,
        ) -> Result<Reply, TransportError> {
            for c in &self.chunks {
                self.seen_before_chunk.push(self.printed.borrow().len());
                chunk(c)?;
            }
            Ok(self.end.clone())
        }
    }

    struct Shared(Rc<RefCell<Vec<u8>>>);

    impl std::io::Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn list(chunks: Vec<Vec<ConnView>>, end: Reply) -> (Outcome, String, Vec<usize>) {
        let printed = Rc::new(RefCell::new(Vec::new()));
        let mut t = Chunked {
            chunks,
            end,
            printed: Rc::clone(&printed),
            seen_before_chunk: Vec::new(),
        };
        let mut out = Shared(Rc::clone(&printed));
        let o = run_to(
            &["-L", "-n", "-c"],
            &mut t,
            &mut || Ok(String::new()),
            &FileNames::default(),
            &mut out,
        );
        let text = String::from_utf8(printed.borrow().clone()).unwrap();
        (o, text, t.seen_before_chunk)
    }

    const HEADER: &str = "IPVS connection entries\n\
        pro expire state       source             virtual            destination\n";

    #[test]
    fn connections_are_printed_chunk_by_chunk_as_they_arrive() {
        let (o, text, seen) = list(
            vec![vec![entry(1), entry(2)], vec![entry(3)]],
            Reply::ConnectionsEnd { count: 3 },
        );
        assert_eq!(o, Outcome::default(), "{}", o.stderr);
        let line = |p: u16| {
            let source = format!("198.51.100.7:{p}");
            format!("TCP 14:59  ESTABLISHED {source:<18} 203.0.113.10:80    192.0.2.11:80\n")
        };
        assert_eq!(text, format!("{HEADER}{}{}{}", line(1), line(2), line(3)));
        // The first chunk was out before the second arrived.
        assert_eq!(seen, [0, HEADER.len() + line(1).len() + line(2).len()]);
    }

    #[test]
    fn an_empty_table_lists_the_header_and_a_refusal_nothing() {
        let (o, text, _) = list(Vec::new(), Reply::ConnectionsEnd { count: 0 });
        assert_eq!((o.status, text.as_str()), (0, HEADER));
        let refusal = Reply::Error(ControlError::new(
            xvs_proto::control::ErrorKind::Invalid,
            "no",
        ));
        let (o, text, _) = list(Vec::new(), refusal);
        assert_eq!(o.status, EXIT_REFUSED);
        assert_eq!(text, "");
    }
}
