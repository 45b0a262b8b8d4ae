//! `xvs-director`: the live director. Reads the cluster configuration (or
//! a one-service quick start from the command line), attaches to the
//! interfaces, and forwards until SIGTERM or SIGINT.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use log::{error, info, warn};

use crossbeam::channel::{RecvTimeoutError, unbounded};
use xvs_director::config::ClusterConfig;
use xvs_director::control::plane::{
    ControlMsg, ControlPlane, DataPlaneHooks, HookError, LoadError,
};
use xvs_director::control::proto::DEFAULT_SOCKET;
use xvs_director::control::socket::{ConnSource, ControlSocket};
use xvs_director::control::table::ServiceTable;
use xvs_director::io::afxdp::{AfXdpIo, AfXdpOptions, ZeroCopy};
use xvs_director::io::mixed::MixedIo;
use xvs_director::io::packet::{KernelFilter, PacketIo, PacketOptions};
use xvs_director::io::queues::{self, PlanInterface, QueueCount, QueuePlan};
use xvs_director::io::xdp::{XdpAttachment, XdpProgram};
use xvs_director::io::{IoInterface, WorkerIo};
use xvs_director::kernel::{self, KernelInterface, NeighbourWatcher};
use xvs_director::pipeline::{Director, IfaceId};
use xvs_director::pipeline::{Neighbours, Snapshot};
use xvs_director::run::{
    self, Clock, InterfaceLock, Live, PartialChecksumNotice, PollMode, WorkerOptions,
    kernel_filter_rules, redirect_filter,
};

/// The xvs load-balancing director: a Linux Virtual Server in userspace.
///
/// Give it a cluster file (--config), or define one service on the
/// command line (--client-iface, --server-iface, --service, --real). It
/// takes over the frames for its virtual services on the interfaces it
/// drives and leaves everything else to the kernel. Stop it with Ctrl-C or
/// SIGTERM: it detaches cleanly and the host's networking is as before.
#[derive(Debug, Parser)]
#[command(name = "xvs-director", version, about, long_about)]
struct Args {
    /// The cluster configuration file (TOML; see director/CONFIG.md).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["client_iface", "server_iface", "service", "real"])]
    config: Option<PathBuf>,

    /// How frames reach the director: `xdp` (AF_XDP with our XDP program;
    /// fastest) or `packet` (AF_PACKET; for hosts or drivers without XDP).
    #[arg(long, value_enum, default_value_t = Backend::Xdp)]
    backend: Backend,

    /// The backend for one interface, overriding --backend for it:
    /// `NAME=xdp` or `NAME=packet` (repeat per interface). A worker then
    /// serves its AF_XDP and AF_PACKET interfaces together, copying the
    /// frames that cross from one to the other.
    #[arg(long, value_name = "NAME=BACKEND")]
    iface: Vec<String>,

    /// The receive queues served on each interface: `all` (every queue
    /// it has, as /sys/class/net/IFACE/queues lists them) or N (the first
    /// N: queues 0 to N-1). N is refused when an AF_XDP interface has more queues: a
    /// frame arriving on a queue without a socket goes to the kernel,
    /// which refuses a new connection to a VIP with a reset. AF_PACKET
    /// sees every queue; there N (without --workers) is the number of
    /// workers.
    #[arg(long, default_value_t = QueueCount::All, value_name = "all|N")]
    queues: QueueCount,

    /// Worker threads. Default: one per receive queue of the AF_XDP
    /// interface with the fewest, at most one per CPU; a worker serves
    /// several queues when there are more queues than workers.
    #[arg(long, value_name = "N")]
    workers: Option<u32>,

    /// `adaptive`: sleep when idle (right for machines shared with other
    /// work); `busy`: spin on the sockets for the lowest latency, one core
    /// per worker.
    #[arg(long, value_enum, default_value_t = Poll::Adaptive)]
    poll: Poll,

    /// AF_XDP zero-copy: `auto` uses it where the driver can, `on`
    /// insists, `off` always copies. Veth and most virtual NICs copy.
    #[arg(long, value_enum, default_value_t = ZeroCopyArg::Auto, value_name = "MODE")]
    zero_copy: ZeroCopyArg,

    /// Pin worker i to the i-th CPU in this comma-separated list.
    #[arg(long, value_delimiter = ',', value_name = "CPU,...")]
    cpus: Vec<usize>,

    /// Write the counters as JSON to this file every --stats-interval and
    /// at exit (replaced atomically, so readers never see half a file).
    #[arg(long, value_name = "PATH")]
    stats_file: Option<PathBuf>,

    /// Seconds between two writes of --stats-file.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    stats_interval: f64,

    /// The control socket xvsadm talks to (default: the config's
    /// `[control] socket`, else /run/xvs/control.sock).
    #[arg(long, value_name = "PATH")]
    control_socket: Option<PathBuf>,

    /// Serve Prometheus metrics at http://ADDR/metrics (off by default;
    /// overrides the config's `[control] metrics_listen`).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_listen: Option<std::net::SocketAddr>,

    /// Seconds between two counter lines in the log (0: none).
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    log_interval: f64,

    /// Quick start: the interface facing the clients.
    #[arg(long, value_name = "IFACE", requires_all = ["server_iface", "service"])]
    client_iface: Option<String>,

    /// Quick start: the interface facing the real servers.
    #[arg(long, value_name = "IFACE", requires = "client_iface")]
    server_iface: Option<String>,

    /// Quick start: the virtual service, `tcp:VIP:PORT` or `udp:VIP:PORT`
    /// (IPv6 in brackets: `tcp:[2001:db8::10]:80`).
    #[arg(long, value_name = "PROTO:VIP:PORT", requires = "client_iface")]
    service: Option<String>,

    /// Quick start: the scheduler, as ipvsadm names it (rr wrr lc wlc lblc
    /// lblcr dh sh sed nq mh fo ovf twos).
    #[arg(long, default_value = "wlc", value_name = "NAME")]
    scheduler: String,

    /// Quick start: a real server, `ADDR[:PORT][,nat|dr|tun][,weight=N]`
    /// (default: the service's port, NAT, weight 1). Repeat for each.
    #[arg(long, value_name = "SERVER", requires = "service")]
    real: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    Xdp,
    Packet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Poll {
    Adaptive,
    Busy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ZeroCopyArg {
    Auto,
    On,
    Off,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            error!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the quick-start configuration as TOML text and parses it with
/// the same validator as a file: identical rules, identical messages.
fn quick_start_config(args: &Args) -> Result<ClusterConfig, String> {
    let (Some(client), Some(server), Some(service)) =
        (&args.client_iface, &args.server_iface, &args.service)
    else {
        return Err(
            "give either --config FILE or a quick start: --client-iface, --server-iface, \
             --service and one --real per real server"
                .to_owned(),
        );
    };
    let (proto, rest) = service.split_once(':').ok_or_else(|| {
        format!("--service {service}: expected PROTO:VIP:PORT, e.g. tcp:203.0.113.10:80")
    })?;
    let (vip, port) = split_host_port(rest)
        .ok_or_else(|| format!("--service {service}: expected PROTO:VIP:PORT with a port"))?;
    let port = port.ok_or_else(|| format!("--service {service}: the port is missing"))?;
    let mut text = String::new();
    for (name, role) in [(client, "client"), (server, "server")] {
        text += &format!("[[interfaces]]\nname = {name:?}\nrole = \"{role}\"\n\n");
    }
    text += &format!(
        "[[services]]\nproto = {proto:?}\nvip = {vip:?}\nport = {port}\nscheduler = {:?}\n\n",
        args.scheduler
    );
    if args.real.is_empty() {
        return Err("--service needs at least one --real ADDR[:PORT]".to_owned());
    }
    for real in &args.real {
        let mut parts = real.split(',');
        let addr_port = parts.next().unwrap_or_default();
        let (addr, rport) = split_host_port(addr_port).ok_or_else(|| {
            format!("--real {real}: expected ADDR[:PORT][,nat|dr|tun][,weight=N]")
        })?;
        let mut method = "nat";
        let mut weight = 1u32;
        for part in parts {
            match part {
                "nat" | "dr" | "tun" => method = part,
                _ => {
                    let w = part
                        .strip_prefix("weight=")
                        .and_then(|w| w.parse().ok())
                        .ok_or_else(|| {
                            format!("--real {real}: {part:?} is neither nat/dr/tun nor weight=N")
                        })?;
                    weight = w;
                }
            }
        }
        text += &format!(
            "[[services.real_servers]]\naddress = {addr:?}\nport = {}\nmethod = \"{method}\"\nweight = {weight}\n\n",
            rport.unwrap_or(port)
        );
    }
    ClusterConfig::parse("(command line)", &text).map_err(|e| e.to_string())
}

/// `ADDR[:PORT]` or `[V6ADDR][:PORT]`.
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(p) => Some((host, Some(p.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match s.rsplit_once(':') {
        Some((host, p)) if !host.contains(':') => Some((host, Some(p.parse().ok()?))),
        _ => Some((s, None)),
    }
}

fn load_config(args: &Args) -> Result<ClusterConfig, String> {
    match &args.config {
        Some(path) => ClusterConfig::load(path).map_err(|e| e.to_string()),
        None => quick_start_config(args),
    }
}

fn run(args: &Args) -> Result<(), String> {
    let mut config = load_config(args)?;
    // What the configuration leaves out (MACs, MTUs, addresses, gateways)
    // comes from the kernel, as it is in this network namespace.
    let facts = kernel::discover(&mut config).map_err(|e| e.to_string())?;
    let clock = Clock::start();
    let seed = {
        use std::hash::{BuildHasher, RandomState};
        RandomState::new().hash_one(std::process::id())
    };
    let table = ServiceTable::from_config(&config, clock.now()).map_err(|e| e.to_string())?;
    let director = Arc::new(Director::with_snapshot(
        table.snapshot(),
        &config,
        seed,
        Arc::new(Neighbours::new()),
    ));

    let names: Vec<String> = config.interfaces.iter().map(|i| i.name.clone()).collect();
    let _locks = names
        .iter()
        .map(|n| InterfaceLock::take(n))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;

    let term = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&term))
            .map_err(|e| format!("installing the signal handler: {e}"))?;
    }
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup))
        .map_err(|e| format!("installing the signal handler: {e}"))?;

    // Which backend drives each interface: --backend, unless --iface says
    // otherwise for it.
    let backends = interface_backends(&names, args)?;
    let on = |b: Backend| -> Vec<(IfaceId, String)> {
        names
            .iter()
            .enumerate()
            .filter(|(i, _)| backends[*i] == b)
            .map(|(i, n)| (IfaceId(u16::try_from(i).unwrap_or(u16::MAX)), n.clone()))
            .collect()
    };
    let (xdp_ifaces, packet_ifaces) = (on(Backend::Xdp), on(Backend::Packet));
    let plan = plan_queues(&names, &backends, &facts, args)?;

    let mut xdp_ios: Vec<AfXdpIo> = Vec::new();
    let mut attachments: Vec<XdpAttachment> = Vec::new();
    let program = if xdp_ifaces.is_empty() {
        None
    } else {
        let mut program = XdpProgram::load().map_err(|e| e.to_string())?;
        program
            .set_filter(&redirect_filter(&director.state()))
            .map_err(|e| e.to_string())?;
        let options = AfXdpOptions {
            zero_copy: match args.zero_copy {
                ZeroCopyArg::Auto => ZeroCopy::Auto,
                ZeroCopyArg::On => ZeroCopy::On,
                ZeroCopyArg::Off => ZeroCopy::Off,
            },
            ..AfXdpOptions::default()
        };
        for worker in 0..plan.workers {
            let ifaces = queue_interfaces(&xdp_ifaces, &plan, worker);
            let io = AfXdpIo::open(&ifaces, options, &mut program).map_err(|e| e.to_string())?;
            xdp_ios.push(io);
        }
        for (_, name) in &xdp_ifaces {
            attachments.push(program.attach(name).map_err(|e| e.to_string())?);
        }
        Some(program)
    };

    let mut packet_ios: Vec<PacketIo> = Vec::new();
    let mut filter: Option<KernelFilter> = None;
    if !packet_ifaces.is_empty() {
        // The kernel gets a copy of every frame a packet socket sees: this
        // filter makes it drop the ones the director handles, after the
        // sockets have taken theirs.
        let (mut ifaces, rules) = kernel_filter_rules(&director.state());
        ifaces.retain(|f| packet_ifaces.iter().any(|(_, n)| *n == f.name));
        filter = Some(KernelFilter::install(&ifaces, &rules).map_err(|e| e.to_string())?);
        let options = PacketOptions::new(plan.workers);
        for worker in 0..plan.workers {
            let io = PacketIo::open(&io_interfaces(&packet_ifaces, worker), &options)
                .map_err(|e| e.to_string())?;
            packet_ios.push(io);
        }
    }

    let xdp_ids: Vec<IfaceId> = xdp_ifaces.iter().map(|(id, _)| *id).collect();
    let mut ios: Vec<Box<dyn WorkerIo>> = Vec::new();
    let mut packet_ios = packet_ios.into_iter();
    for xdp in xdp_ios {
        match packet_ios.next() {
            Some(packet) => ios.push(Box::new(MixedIo::new(xdp, packet, &xdp_ids))),
            None => ios.push(Box::new(xdp)),
        }
    }
    for packet in packet_ios {
        ios.push(Box::new(packet));
    }

    // Neighbours: learned from the kernel and followed; the real servers'
    // and gateways' are asked for at once.
    let mut watcher = NeighbourWatcher::spawn(
        Arc::clone(director.neighbours()),
        facts.iter().map(|k| (k.id, k.ifindex)).collect(),
        director.state().next_hops(),
    )
    .map_err(|e| e.to_string())?;

    let options = WorkerOptions {
        poll: match args.poll {
            Poll::Adaptive => PollMode::Adaptive,
            Poll::Busy => PollMode::Busy,
        },
        cpus: args.cpus.clone(),
    };
    // What the command line overrides counts as the running config's
    // value, so that a reload compares what is really in use.
    config.control.socket = Some(control_socket_path(args, &config));
    config.control.metrics_listen = args.metrics_listen.or(config.control.metrics_listen);

    // The control plane; the health checks and the passive reports start
    // with the workers (`run::start`: before them). Requests from the
    // control socket, the metrics endpoint and the checker reach this
    // thread through `to_main`.
    let (to_main, from_threads) = unbounded::<ControlMsg>();
    let health_sink = Arc::new(xvs_director::control::health::ChannelSink(to_main.clone()));
    let mut plane = ControlPlane::new(table, Arc::clone(&director), config.conn_table.capacity);
    let mut hooks = Hooks {
        program,
        filter: filter.take(),
        packet_ifaces: packet_ifaces.iter().map(|(_, n)| n.clone()).collect(),
        neighbours: Arc::clone(director.neighbours()),
    };
    let mut live = run::start(
        &mut plane,
        &config,
        health_sink,
        &mut hooks,
        clock,
        ios,
        &options,
    )
    .map_err(|e| e.to_string())?;
    for fact in &facts {
        info!("{fact}");
    }
    log_startup(&config, &director, &live, args);

    // The control socket xvsadm talks to, reloads (SIGHUP, autoreload),
    // metrics.
    let socket_path = control_socket_path(args, &config);
    let control_socket = ControlSocket::bind(
        &socket_path,
        to_main.clone(),
        ConnSource {
            director: Arc::clone(&director),
            clock,
        },
    )
    .map_err(|e| e.to_string())?;
    info!("control socket {}", control_socket.path().display());
    let metrics = match config.control.metrics_listen {
        Some(addr) => {
            let server = xvs_director::control::metrics::MetricsServer::bind(addr, to_main.clone())
                .map_err(|e| e.to_string())?;
            info!("metrics at http://{}/metrics", server.addr());
            Some(server)
        }
        None => None,
    };
    drop(to_main);
    let mut stamp_seen = args.config.as_deref().and_then(file_stamp);
    let mut checked_file_at = Instant::now();
    let mut reload = || -> Result<ClusterConfig, LoadError> {
        let Some(path) = &args.config else {
            return Err(LoadError::NoFile);
        };
        let mut config = ClusterConfig::load(path)?;
        kernel::discover(&mut config)?;
        config.control.socket = Some(control_socket_path(args, &config));
        config.control.metrics_listen = args.metrics_listen.or(config.control.metrics_listen);
        Ok(config)
    };

    let stats_every = Duration::from_secs_f64(args.stats_interval.max(0.1));
    let log_every = (args.log_interval > 0.0).then(|| Duration::from_secs_f64(args.log_interval));
    let mut stats_at = Instant::now();
    let mut log_at = Instant::now();
    let mut partial_notice = PartialChecksumNotice::default();
    // The XDP program's counters, as last read (a failed read is counted
    // and logged, not hidden).
    let mut xdp_counters = xvs_director::io::KernelCounter::new("the XDP program's counters");
    if let Some(path) = &args.stats_file {
        write_stats(path, &live, hooks.program.as_ref(), &mut xdp_counters);
    }
    let mut failure = None;
    while !term.load(Ordering::Relaxed) {
        match from_threads.recv_timeout(Duration::from_millis(100)) {
            Ok(ControlMsg::Request(pending)) => {
                // Applied only if its client still waits for the answer
                // (control::proto, "Timeouts"); the socket's thread logs
                // the ones dropped.
                if let Some((request, reply_to)) = pending.take() {
                    let (counters, _) = live.counters();
                    let reply =
                        plane.handle(&request, &counters, clock.now(), &mut reload, &mut hooks);
                    let _ = reply_to.send(reply);
                }
            }
            Ok(ControlMsg::Metrics(reply_to)) => {
                let (counters, io) = live.counters();
                let xdp = read_xdp_counters(hooks.program.as_ref(), &mut xdp_counters);
                let text = xvs_director::control::metrics::render(
                    &plane,
                    &counters,
                    &io,
                    xdp.as_ref(),
                    xdp_counters.failures(),
                    &live.worker_counters(),
                );
                let _ = reply_to.send(text);
            }
            Ok(ControlMsg::Health { target, up, reason }) => {
                plane.health_transition(&target, up, &reason, &mut hooks);
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
        }
        let mut reload_now = hup.swap(false, Ordering::Relaxed);
        if reload_now {
            info!("SIGHUP: reloading the configuration");
        }
        // `autoreload` follows the file: a reload may turn it on or off.
        let autoreload =
            args.config.is_some() && plane.running_config().is_some_and(|c| c.control.autoreload);
        if autoreload && checked_file_at.elapsed() >= Duration::from_secs(1) {
            checked_file_at = Instant::now();
            let stamp = args.config.as_deref().and_then(file_stamp);
            if stamp != stamp_seen {
                stamp_seen = stamp;
                info!("the configuration file changed: reloading");
                reload_now = true;
            }
        }
        if reload_now {
            match reload() {
                Ok(new) => match plane.reload(&new, clock.now(), &mut hooks) {
                    Ok(()) => info!("configuration reloaded"),
                    Err(e) => error!("reload refused, the running state is kept: {e}"),
                },
                Err(e) => error!("reload refused, the running state is kept: {e}"),
            }
        }
        {
            let (counters, _) = live.counters();
            plane.tick(&counters, clock.now());
            for iface in partial_notice.news(&counters, &director.state().interfaces) {
                info!(
                    "{}: frames arrive with partial TCP/UDP checksums (a sender's checksum offload is on); the director completes them before forwarding (counter partial_checksum_completed)",
                    iface.name
                );
            }
        }
        if let Some(f) = live.failure() {
            failure = Some(f);
            break;
        }
        if let Some(path) = &args.stats_file
            && stats_at.elapsed() >= stats_every
        {
            stats_at = Instant::now();
            write_stats(path, &live, hooks.program.as_ref(), &mut xdp_counters);
        }
        if let Some(every) = log_every
            && log_at.elapsed() >= every
        {
            log_at = Instant::now();
            log_counters(&live);
        }
    }
    drop(metrics);
    drop(control_socket);
    let program = hooks.program.take();
    filter = hooks.filter.take();
    info!("stopping: workers first, then the XDP program is detached");
    live.stop();
    drop(attachments);
    if let Some(filter) = filter.take()
        && let Err(e) = filter.remove()
    {
        warn!("removing the AF_PACKET kernel filter: {e}");
    }
    watcher.stop();
    let w = watcher.counters();
    info!(
        "neighbours: {} kernel updates applied, {} resolutions requested, {} requests lost",
        w.updates_applied,
        w.resolutions_requested,
        director.neighbours().requests_lost()
    );
    if let Some(path) = &args.stats_file {
        write_stats(path, &live, program.as_ref(), &mut xdp_counters);
    }
    drop(program);
    log_counters(&live);
    match failure {
        Some(f) => Err(format!("a worker stopped: {f}")),
        None => {
            info!("stopped cleanly");
            Ok(())
        }
    }
}

/// What follows a published state outside the pipeline: the XDP
/// program's maps, the AF_PACKET kernel filter, next-hop resolution.
struct Hooks {
    program: Option<XdpProgram>,
    filter: Option<KernelFilter>,
    packet_ifaces: Vec<String>,
    neighbours: Arc<Neighbours>,
}

impl DataPlaneHooks for Hooks {
    fn published(&mut self, snapshot: &Snapshot) -> Result<(), HookError> {
        // The first failure ends the update: the control plane then calls
        // again with the running state, which puts back whatever this one
        // changed.
        if let Some(program) = &mut self.program {
            program
                .set_filter(&redirect_filter(snapshot))
                .map_err(HookError::XdpMaps)?;
        }
        if let Some(filter) = &mut self.filter {
            let (mut ifaces, rules) = kernel_filter_rules(snapshot);
            ifaces.retain(|f| self.packet_ifaces.contains(&f.name));
            filter
                .update(&ifaces, &rules)
                .map_err(HookError::KernelFilter)?;
        }
        // New real servers' next hops are resolved now, not at their
        // first packet.
        for (iface, ip) in snapshot.next_hops() {
            if self.neighbours.reader().lookup(iface, ip).is_none() {
                self.neighbours.request(iface, ip);
            }
        }
        Ok(())
    }
}

/// The control socket's path: `--control-socket`, else the config's, else
/// the default.
fn control_socket_path(args: &Args, config: &ClusterConfig) -> PathBuf {
    args.control_socket
        .clone()
        .or_else(|| config.control.socket.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// What tells a file changed: its modification time and size.
fn file_stamp(path: &Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Counts each interface's receive queues and plans the workers and the
/// queues each serves (`xvs_director::io::queues`).
fn plan_queues(
    names: &[String],
    backends: &[Backend],
    facts: &[KernelInterface],
    args: &Args,
) -> Result<QueuePlan, String> {
    let cpus = std::thread::available_parallelism()
        .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX));
    let mut ifaces = Vec::with_capacity(names.len());
    for (name, backend) in names.iter().zip(backends) {
        let ifindex = facts
            .iter()
            .find(|f| f.name == *name)
            .map(|f| f.ifindex)
            .ok_or_else(|| format!("interface \"{name}\": the kernel did not report it"))?;
        let rx_queues = match (kernel::rx_queue_count(name, ifindex), args.queues) {
            (Ok(n), _) => n,
            // The operator said how many there are: trusted where they
            // cannot be counted.
            (Err(e), QueueCount::First(n)) => {
                warn!("{e}; assuming --queues {n}");
                n
            }
            (Err(e), QueueCount::All) => return Err(e.to_string()),
        };
        ifaces.push(PlanInterface {
            name: name.clone(),
            rx_queues,
            xdp: *backend == Backend::Xdp,
        });
    }
    let plan = queues::plan(&ifaces, args.queues, args.workers, cpus).map_err(|e| e.to_string())?;
    for (i, iface) in ifaces.iter().enumerate() {
        let served = if iface.xdp {
            format!("{} served by AF_XDP", plan.served(i))
        } else {
            "all seen by AF_PACKET".to_owned()
        };
        info!(
            "interface {}: {} receive queue(s), {served}; {} worker(s)",
            iface.name, iface.rx_queues, plan.workers
        );
    }
    Ok(plan)
}

/// Worker `worker`'s AF_XDP sockets: one per queue it serves on each
/// interface.
fn queue_interfaces(
    ifaces: &[(IfaceId, String)],
    plan: &QueuePlan,
    worker: u32,
) -> Vec<IoInterface> {
    ifaces
        .iter()
        .flat_map(|(id, name)| {
            plan.queues(worker, usize::from(id.0))
                .map(move |queue| IoInterface {
                    id: *id,
                    name: name.clone(),
                    queue,
                })
        })
        .collect()
}

/// One AF_PACKET socket per interface; `queue` only names the worker (the
/// fanout group, not a NIC queue, decides what it receives).
fn io_interfaces(ifaces: &[(IfaceId, String)], queue: u32) -> Vec<IoInterface> {
    ifaces
        .iter()
        .map(|(id, name)| IoInterface {
            id: *id,
            name: name.clone(),
            queue,
        })
        .collect()
}

/// The backend of each interface (in config order): `--backend`, or what
/// an `--iface NAME=BACKEND` says for it.
fn interface_backends(names: &[String], args: &Args) -> Result<Vec<Backend>, String> {
    let mut backends = vec![args.backend; names.len()];
    for spec in &args.iface {
        let (name, backend) = spec
            .split_once('=')
            .ok_or_else(|| format!("--iface {spec}: expected NAME=xdp or NAME=packet"))?;
        let backend = match backend {
            "xdp" => Backend::Xdp,
            "packet" => Backend::Packet,
            other => {
                return Err(format!(
                    "--iface {spec}: unknown backend {other:?}; use xdp or packet"
                ));
            }
        };
        let i = names.iter().position(|n| n == name).ok_or_else(|| {
            format!(
                "--iface {spec}: {name:?} is not one of the director's interfaces ({})",
                names.join(", ")
            )
        })?;
        backends[i] = backend;
    }
    Ok(backends)
}

fn log_startup(config: &ClusterConfig, director: &Director, live: &Live, args: &Args) {
    info!("xvs-director {} starting", env!("CARGO_PKG_VERSION"));
    for iface in &director.state().interfaces {
        let addrs: Vec<String> = iface.addresses.iter().map(|n| n.to_string()).collect();
        info!(
            "interface {} ({:?} side): mac {}, mtu {}, addresses [{}]",
            iface.name,
            iface.role,
            iface.mac,
            iface.mtu,
            addrs.join(", ")
        );
    }
    for line in live.descriptions() {
        info!("worker: {line}");
    }
    info!(
        "poll mode {:?}, connection table {} entries",
        args.poll, config.conn_table.capacity
    );
    for svc in &director.state().services {
        let servers: Vec<String> = svc
            .sched
            .servers()
            .iter()
            .map(|rs| format!("{}:{} w{}", rs.addr(), rs.port(), rs.weight()))
            .collect();
        info!(
            "service {:?} {}:{} {}: {}",
            svc.proto,
            svc.vip,
            svc.port,
            svc.sched.scheduler().name(),
            servers.join(", ")
        );
    }
}

fn log_counters(live: &Live) {
    let (c, io) = live.counters();
    let drops: u64 = c.drops.iter().sum();
    info!(
        "frames {} transmitted {} passed {} dropped {} (tx dropped {}, kernel rx dropped {})",
        c.frames, c.transmitted, c.passed, drops, io.tx_dropped, io.kernel_rx_dropped
    );
    let stats = live.stats_json();
    if let Some(services) = stats["services"].as_array() {
        for svc in services {
            let servers: Vec<String> = svc["real_servers"]
                .as_array()
                .map(|rs| {
                    rs.iter()
                        .map(|r| {
                            format!(
                                "{} conns {} active {}",
                                r["address"].as_str().unwrap_or("?"),
                                r["conns"],
                                r["active_conns"]
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            info!(
                "  {} {}:{}: conns {} | {}",
                svc["proto"].as_str().unwrap_or("?"),
                svc["vip"].as_str().unwrap_or("?"),
                svc["port"],
                svc["conns"],
                servers.join(" | ")
            );
        }
    }
    if let Some(drops) = stats["drops"].as_object()
        && !drops.is_empty()
    {
        let list: Vec<String> = drops.iter().map(|(k, v)| format!("{k} {v}")).collect();
        info!("  drops: {}", list.join(", "));
    }
    if let Some(by) = stats["partial_checksum_completed_by_interface"].as_object()
        && !by.is_empty()
    {
        let list: Vec<String> = by.iter().map(|(k, v)| format!("{k} {v}")).collect();
        info!("  partial checksums completed: {}", list.join(", "));
    }
}

/// The XDP program's counters (`None` without a program, or before a
/// first successful read).
fn read_xdp_counters(
    program: Option<&XdpProgram>,
    counter: &mut xvs_director::io::KernelCounter<xvs_director::io::xdp::XdpCounters>,
) -> Option<xvs_director::io::xdp::XdpCounters> {
    counter.read(program?.counters(), Instant::now())
}

fn write_stats(
    path: &Path,
    live: &Live,
    program: Option<&XdpProgram>,
    xdp_counters: &mut xvs_director::io::KernelCounter<xvs_director::io::xdp::XdpCounters>,
) {
    let mut doc = live.stats_json();
    if let Some(c) = read_xdp_counters(program, xdp_counters) {
        // As the metrics count them: a frame for the director that found no
        // socket on its queue went to the kernel.
        let delivered = c.to_director.saturating_sub(c.no_socket);
        doc["xdp"] = serde_json::json!({
            "frames": c.frames,
            "to_director": delivered,
            "no_socket": c.no_socket,
            "to_kernel": c.frames.saturating_sub(delivered),
            "read_failures": xdp_counters.failures(),
        });
    }
    let tmp = path.with_extension("tmp");
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            serde_json::to_writer(&mut f, &doc)?;
            f.write_all(b"\n")
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        warn!("writing the stats file {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("xvs-director").chain(list.iter().copied())).unwrap()
    }

    #[test]
    fn quick_start_builds_the_same_config_a_file_would() {
        let a = args(&[
            "--client-iface",
            "eth0",
            "--server-iface",
            "eth1",
            "--service",
            "tcp:[2001:db8::10]:443",
            "--scheduler",
            "wrr",
            "--real",
            "[2001:db8:5::11]",
            "--real",
            "[2001:db8:5::12]:443,dr,weight=3",
        ]);
        let c = quick_start_config(&a).unwrap();
        assert_eq!(c.interfaces.len(), 2);
        assert_eq!(c.interfaces[1].name, "eth1");
        let s = &c.services[0];
        assert_eq!(s.port, 443);
        assert_eq!(s.scheduler, "wrr");
        assert_eq!(s.real_servers.len(), 2);
        assert_eq!(s.real_servers[0].port, Some(443));
        assert_eq!(s.real_servers[1].weight, 3);
    }

    #[test]
    fn quick_start_mistakes_are_named() {
        let base = ["--client-iface", "a", "--server-iface", "b"];
        let with = |extra: &[&str]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            quick_start_config(&args(&v)).unwrap_err()
        };
        assert!(with(&["--service", "tcp:203.0.113.10"]).contains("port is missing"));
        assert!(with(&["--service", "tcp:203.0.113.10:80"]).contains("at least one --real"));
        let e = with(&[
            "--service",
            "tcp:203.0.113.10:80",
            "--real",
            "192.0.2.11,fast",
        ]);
        assert!(e.contains("\"fast\""), "{e}");
        let e = with(&["--service", "sctp:203.0.113.10:80", "--real", "192.0.2.11"]);
        assert!(e.contains("proto"), "{e}");
    }

    #[test]
    fn every_queue_is_served_unless_queues_says_otherwise() {
        let a = args(&["--config", "x.toml"]);
        assert_eq!((a.queues, a.workers), (QueueCount::All, None));
        let a = args(&["--config", "x.toml", "--queues", "2", "--workers", "1"]);
        assert_eq!((a.queues, a.workers), (QueueCount::First(2), Some(1)));
        assert_eq!(args(&["--queues", "all"]).queues, QueueCount::All);
        let e = Args::try_parse_from(["xvs-director", "--queues", "0"]).unwrap_err();
        assert!(e.to_string().contains("`all`"), "{e}");
    }

    #[test]
    fn config_file_and_quick_start_exclude_each_other() {
        let r = Args::try_parse_from(["xvs-director", "--config", "x.toml", "--client-iface", "a"]);
        assert!(r.is_err());
    }
}
