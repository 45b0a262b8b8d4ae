//! `xvs-pktgen`: a bounded UDP load generator (`send`) and the counter
//! the receiving side runs (`count`), for the small-packet benchmark.
//!
//! The work is in [`xvs_tools::pktgen`]; this is its command line.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::Parser;
use xvs_tools::pktgen::{self, Cli, Command, SendBounds};

fn run(cli: Cli, stop: &AtomicBool) -> Result<(), pktgen::PktgenError> {
    match cli.command {
        Command::Send(args) => {
            let spec = pktgen::frame_spec(&args)?;
            let frames = spec.frames()?;
            if let Some(cpu) = args.cpu
                && let Err(e) = xvs_director::io::pin_to_cpu(cpu)
            {
                eprintln!("xvs-pktgen: not pinned to CPU {cpu}: {e}");
            }
            let bounds = SendBounds {
                count: args.count,
                duration: args.duration,
                rate: args.rate,
            };
            let report = match args.engine {
                pktgen::Engine::Packet => pktgen::send(&args.iface, &frames, bounds, stop)?,
                pktgen::Engine::XdpLive => pktgen::send_live(&args.iface, &frames, bounds, stop)?,
            };
            if args.json {
                println!("{}", report.to_json());
            } else {
                println!("{report}");
            }
        }
        Command::Count(args) => {
            let report = pktgen::count(&args, stop)?;
            if args.json {
                println!("{}", report.to_json());
            } else {
                println!("{report}");
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&stop)) {
            eprintln!("xvs-pktgen: installing the signal handler: {e}");
            return ExitCode::from(2);
        }
    }
    match run(cli, &stop) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xvs-pktgen: {e}");
            ExitCode::from(2)
        }
    }
}
