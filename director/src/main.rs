//! `xvs-director`: the live director. Reads the cluster configuration (or
//! a one-service quick start from the command line), attaches to the
//! interfaces, and forwards until SIGTERM or SIGINT. This file is the
//! command line: it fills [`DaemonOptions`] and hands over to
//! `xvs_director::daemon`, which starts, runs and stops the director.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use log::error;

use xvs_director::config::{ClusterConfig, ConfigError};
use xvs_director::daemon::{self, ConfigSource, Daemon, DaemonOptions};
use xvs_director::io::afxdp::ZeroCopy;
use xvs_director::io::queues::QueueCount;
use xvs_director::run::PollMode;

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

/// Why the director did not run, or stopped on a failure.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// The quick start's flags.
    #[error(transparent)]
    QuickStart(#[from] QuickStartError),
    /// The director itself.
    #[error(transparent)]
    Daemon(#[from] daemon::Error),
}

fn run(args: &Args) -> Result<(), Failure> {
    Daemon::start(daemon_options(args)?)?.run()?;
    Ok(())
}

/// What the daemon runs with, from the command line.
fn daemon_options(args: &Args) -> Result<DaemonOptions, QuickStartError> {
    let config = match &args.config {
        Some(path) => ConfigSource::File(path.clone()),
        None => ConfigSource::Given(Box::new(quick_start_config(args)?)),
    };
    Ok(DaemonOptions {
        config,
        backend: match args.backend {
            Backend::Xdp => daemon::Backend::Xdp,
            Backend::Packet => daemon::Backend::Packet,
        },
        interface_backends: args.iface.clone(),
        queues: args.queues,
        workers: args.workers,
        poll: match args.poll {
            Poll::Adaptive => PollMode::Adaptive,
            Poll::Busy => PollMode::Busy,
        },
        zero_copy: match args.zero_copy {
            ZeroCopyArg::Auto => ZeroCopy::Auto,
            ZeroCopyArg::On => ZeroCopy::On,
            ZeroCopyArg::Off => ZeroCopy::Off,
        },
        cpus: args.cpus.clone(),
        stats_file: args.stats_file.clone(),
        stats_interval: Duration::from_secs_f64(args.stats_interval.max(0.1)),
        control_socket: args.control_socket.clone(),
        metrics_listen: args.metrics_listen,
        log_interval: (args.log_interval > 0.0).then(|| Duration::from_secs_f64(args.log_interval)),
    })
}

/// What is wrong with the quick start's flags.
#[derive(Debug, thiserror::Error)]
enum QuickStartError {
    /// Neither a file nor the quick start's flags.
    #[error(
        "give either --config FILE or a quick start: --client-iface, --server-iface, \
         --service and one --real per real server"
    )]
    Missing,
    /// `--service` without two colons.
    #[error("--service {0}: expected PROTO:VIP:PORT, e.g. tcp:203.0.113.10:80")]
    ServiceSyntax(String),
    /// `--service` whose port does not parse.
    #[error("--service {0}: expected PROTO:VIP:PORT with a port")]
    ServicePort(String),
    /// `--service` without a port.
    #[error("--service {0}: the port is missing")]
    ServiceNoPort(String),
    /// No `--real`.
    #[error("--service needs at least one --real ADDR[:PORT]")]
    NoRealServer,
    /// A `--real` whose address does not parse.
    #[error("--real {0}: expected ADDR[:PORT][,nat|dr|tun][,weight=N]")]
    RealSyntax(String),
    /// A `--real` option that is neither a method nor a weight.
    #[error("--real {real}: {option:?} is neither nat/dr/tun nor weight=N")]
    RealOption {
        /// The `--real` given.
        real: String,
        /// The option not understood.
        option: String,
    },
    /// The configuration the flags make is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Builds the quick-start configuration as TOML text and parses it with
/// the same validator as a file: identical rules, identical messages.
fn quick_start_config(args: &Args) -> Result<ClusterConfig, QuickStartError> {
    let (Some(client), Some(server), Some(service)) =
        (&args.client_iface, &args.server_iface, &args.service)
    else {
        return Err(QuickStartError::Missing);
    };
    let (proto, rest) = service
        .split_once(':')
        .ok_or_else(|| QuickStartError::ServiceSyntax(service.clone()))?;
    let (vip, port) =
        split_host_port(rest).ok_or_else(|| QuickStartError::ServicePort(service.clone()))?;
    let port = port.ok_or_else(|| QuickStartError::ServiceNoPort(service.clone()))?;
    let mut text = String::new();
    for (name, role) in [(client, "client"), (server, "server")] {
        text += &format!("[[interfaces]]\nname = {name:?}\nrole = \"{role}\"\n\n");
    }
    text += &format!(
        "[[services]]\nproto = {proto:?}\nvip = {vip:?}\nport = {port}\nscheduler = {:?}\n\n",
        args.scheduler
    );
    if args.real.is_empty() {
        return Err(QuickStartError::NoRealServer);
    }
    for real in &args.real {
        let mut parts = real.split(',');
        let addr_port = parts.next().unwrap_or_default();
        let (addr, rport) =
            split_host_port(addr_port).ok_or_else(|| QuickStartError::RealSyntax(real.clone()))?;
        let mut method = "nat";
        let mut weight = 1u32;
        for part in parts {
            match part {
                "nat" | "dr" | "tun" => method = part,
                _ => {
                    let w = part
                        .strip_prefix("weight=")
                        .and_then(|w| w.parse().ok())
                        .ok_or_else(|| QuickStartError::RealOption {
                            real: real.clone(),
                            option: part.to_owned(),
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
    Ok(ClusterConfig::parse("(command line)", &text)?)
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
            quick_start_config(&args(&v)).unwrap_err().to_string()
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
