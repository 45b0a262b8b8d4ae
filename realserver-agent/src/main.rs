//! `xvs-agent`: the real server's side of an xvs cluster.
#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::{Parser, Subcommand, ValueEnum};
use xvs_agent::agent::{Agent, RUN_DIR};
use xvs_agent::plan::{DecapMode, ForwardMethod, SetupOptions};
use xvs_agent::run::config::{Config, DEFAULT_CONFIG};
use xvs_agent::run::{current_state, run, write_state};
use xvs_agent::system::{Host, is_root};

/// The xvs real-server agent.
#[derive(Debug, Parser)]
#[command(name = "xvs-agent", version, about, long_about = None)]
struct Cli {
    /// Where the record of what setup changed, and the XDP object, are kept.
    #[arg(long, global = true, value_name = "DIR", default_value = RUN_DIR)]
    run_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Report this server's load to the directors, every interval, until
    /// SIGTERM or SIGINT.
    ///
    /// Each report (one UDP datagram to each director, port 7405 unless the
    /// config names another) carries CPU and memory in use, packets
    /// received and sent per second, disk reads and writes per second, the
    /// 1-minute load average, established connections to the service
    /// ports and the state asked for (ready, drain, maint), signed with
    /// HMAC-SHA256 under the cluster key, whose file must be readable by its
    /// owner only (chmod 600).
    /// Logs go to standard error; RUST_LOG sets the level (default info).
    /// With [haproxy] listen in the config it also answers HAProxy's
    /// agent-check on that TCP address.
    Run {
        /// The configuration file.
        #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Set the state this agent reports: writes the state file that
    /// `xvs-agent run` reads before each report.
    ///
    /// What each asks for: ready: in service, weight following load;
    /// drain: weight 0, the established connections finish; maint: out of
    /// service, as if its health check failed. HAProxy's agent-check and
    /// xvs-director (with [agents] in its config) act on it. Without STATE,
    /// prints the state in force. The state file (state_file in the config,
    /// /run/xvs-agent/state by default) outlives a restart of the daemon,
    /// not a reboot.
    State {
        /// The configuration file (for state_file and the default state).
        #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// ready, drain or maint.
        #[arg(value_enum)]
        state: Option<StateArg>,
    },
    /// Prepare this host to be a real server for VS/DR or VS/TUN.
    ///
    /// Puts each VIP on lo as a host address (/32, /128) so that this host
    /// accepts packets for the VIP and answers from it, and makes sure it
    /// never answers ARP for a VIP (net.ipv4.conf.{all,lo,IFACE}:
    /// arp_ignore=1, arp_announce=2): only the director may. IPv6 needs no
    /// setting: neighbour discovery does not answer for an address on lo.
    ///
    /// With --method tun it also sets up decapsulation of the director's
    /// IP-in-IP packets: kernel tunnel devices xvs-tun4 (ipip) and xvs-tun6
    /// (ip6tnl) with rp_filter off, or, when this kernel has no tunnel
    /// modules, an XDP program on --iface that strips the outer header.
    ///
    /// Running setup again changes nothing; teardown undoes it. What was
    /// changed is recorded in RUN_DIR/state.json.
    Setup {
        /// A virtual address this host serves (repeat for several; IPv4 or IPv6).
        #[arg(long = "vip", value_name = "ADDR", required = true)]
        vips: Vec<IpAddr>,
        /// How the director forwards to this host: dr (MAC rewrite on a shared
        /// link) or tun (IP-in-IP to this host's address).
        #[arg(long, value_enum)]
        method: MethodArg,
        /// The interface facing the director (gets the ARP sysctls too; the
        /// XDP decapsulation is attached to it).
        #[arg(long, value_name = "IFACE")]
        iface: Option<String>,
        /// How to decapsulate VS/TUN packets: auto (kernel tunnel devices if
        /// this kernel has them, else XDP on --iface), xdp, or kernel.
        #[arg(long, value_enum, value_name = "HOW")]
        decap: Option<DecapArg>,
    },
    /// Undo what setup did: remove the VIPs it added, restore the sysctls it
    /// changed, delete its tunnel devices and detach its XDP program.
    ///
    /// Only what the state file records is touched. With --iface, our XDP
    /// program is also detached from IFACE when the record of it was lost.
    Teardown {
        /// An interface to detach xvs-agent's XDP program from, recorded or not.
        #[arg(long, value_name = "IFACE")]
        iface: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StateArg {
    /// In service; weight follows load.
    Ready,
    /// Weight 0; established connections finish.
    Drain,
    /// Out of service.
    Maint,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum MethodArg {
    /// VS/DR, direct routing.
    Dr,
    /// VS/TUN, IP tunnelling.
    Tun,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DecapArg {
    /// Kernel tunnel devices when possible, else XDP.
    Auto,
    /// The XDP program on --iface.
    Xdp,
    /// Kernel tunnel devices only.
    Kernel,
}

/// `xvs-agent run`: the report loop until SIGTERM or SIGINT.
fn run_daemon(config: &std::path::Path) -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&stop)) {
            log::error!("cannot handle signal {signal}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let result = Config::load(config)
        .map_err(xvs_agent::run::RunError::from)
        .and_then(|c| run(&c, &stop));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `xvs-agent state [STATE]`.
fn set_state(config: &std::path::Path, state: Option<StateArg>) -> ExitCode {
    let config = match Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xvs-agent: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(state) = state else {
        return match current_state(&config.state_file, config.state) {
            Ok(s) => {
                println!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("xvs-agent: error: {e}");
                ExitCode::FAILURE
            }
        };
    };
    let state = match state {
        StateArg::Ready => xvs_packet::load_report::AgentState::Ready,
        StateArg::Drain => xvs_packet::load_report::AgentState::Drain,
        StateArg::Maint => xvs_packet::load_report::AgentState::Maint,
    };
    match write_state(&config.state_file, state) {
        Ok(()) => {
            println!(
                "{state}: sent with the next report (within {} ms)",
                config.interval.as_millis()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "xvs-agent: error: cannot write {}: {e}",
                config.state_file.display()
            );
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        Command::Run { config } => return run_daemon(&config),
        Command::State { config, state } => return set_state(&config, state),
        other => other,
    };
    if !is_root() {
        eprintln!(
            "xvs-agent: error: must run as root: it changes addresses, sysctls and XDP programs"
        );
        return ExitCode::FAILURE;
    }
    let mut agent = Agent::new(Host, cli.run_dir);
    let result = match command {
        Command::Setup {
            vips,
            method,
            iface,
            decap,
        } => agent.setup(&SetupOptions {
            vips,
            method: match method {
                MethodArg::Dr => ForwardMethod::DirectRouting,
                MethodArg::Tun => ForwardMethod::Tunnel,
            },
            iface,
            decap: decap.map(|d| match d {
                DecapArg::Auto => DecapMode::Auto,
                DecapArg::Xdp => DecapMode::Xdp,
                DecapArg::Kernel => DecapMode::Kernel,
            }),
        }),
        Command::Teardown { iface } => agent.teardown(iface.as_deref()),
        Command::Run { .. } | Command::State { .. } => unreachable!("handled above"),
    };
    for line in &agent.messages {
        println!("{line}");
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xvs-agent: error: {e}");
            ExitCode::FAILURE
        }
    }
}
