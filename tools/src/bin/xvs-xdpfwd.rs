//! `xvs-xdpfwd`: the minimal AF_XDP forwarder — the director's I/O with a
//! fixed DNAT and nothing else, the floor for the director's overhead.
//!
//! The work is in [`xvs_tools::xdpfwd`]; this is its command line.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::Parser;
use xvs_tools::xdpfwd::{self, FwdArgs};

fn main() -> ExitCode {
    let args = FwdArgs::parse();
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&stop)) {
            eprintln!("xvs-xdpfwd: installing the signal handler: {e}");
            return ExitCode::from(2);
        }
    }
    let started = |mode: &str| {
        eprintln!(
            "xvs-xdpfwd: {mode}; UDP to {} -> {} ({}), out of {}",
            args.vip, args.to, args.to_mac, args.out_iface
        );
    };
    match xdpfwd::run(&args, &stop, started) {
        Ok(report) => {
            if args.json {
                println!("{}", report.to_json());
            } else {
                println!("{report}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xvs-xdpfwd: {e}");
            ExitCode::from(2)
        }
    }
}
