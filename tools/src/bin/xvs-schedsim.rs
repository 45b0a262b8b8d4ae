//! `xvs-schedsim SCENARIO.json`: replays a scheduling scenario through the
//! xvs schedulers (the kernel's IPVS decisions) and prints, for each new
//! connection, the index of the chosen real server or -1.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use xvs_tools::schedsim;

/// Replay an IPVS scheduling scenario and print one chosen server index
/// (or -1) per new connection.
#[derive(Debug, Parser)]
#[command(name = "xvs-schedsim", version, after_long_help = schedsim::HELP_FORMAT)]
struct Args {
    /// Scenario file (JSON; `-` reads standard input). See --help for the format.
    scenario: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let text = if args.scenario.as_os_str() == "-" {
        let mut s = String::new();
        match std::io::Read::read_to_string(&mut std::io::stdin(), &mut s) {
            Ok(_) => s,
            Err(e) => {
                eprintln!("xvs-schedsim: cannot read standard input: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        match std::fs::read_to_string(&args.scenario) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("xvs-schedsim: cannot read {}: {e}", args.scenario.display());
                return ExitCode::from(2);
            }
        }
    };
    match schedsim::run(&text) {
        Ok(lines) => {
            let mut out = String::with_capacity(lines.len() * 3);
            for l in lines {
                out.push_str(&l.to_string());
                out.push('\n');
            }
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xvs-schedsim: {}: {e}", args.scenario.display());
            ExitCode::from(2)
        }
    }
}
