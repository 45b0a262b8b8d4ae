//! `xvs-agent`: the real server's side of an xvs cluster.
#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use xvs_agent::agent::{Agent, RUN_DIR};
use xvs_agent::plan::{DecapMode, ForwardMethod, SetupOptions};
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !is_root() {
        eprintln!(
            "xvs-agent: error: must run as root: it changes addresses, sysctls and XDP programs"
        );
        return ExitCode::FAILURE;
    }
    let mut agent = Agent::new(Host, cli.run_dir);
    let result = match cli.command {
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
