//! `xvs-replay`: a capture through the director's per-frame pipeline, the
//! very function live workers run, with the transmitted frames written to a
//! pcapng file and, optionally, one verdict line per input frame.
//!
//! The work is in [`xvs_tools::replay`]; this is its command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use xvs_tools::replay::{ReplayFiles, replay};

const AFTER_HELP: &str = "\
Receiving interface:
  pcapng: the frame's interface number is the configured interface of that
  position ([[interfaces]] order; 0 = the first). Numbers past the configured
  interfaces are reported as unknown-interface and skipped.
  pcap: the configured interface whose MAC is the frame's destination MAC.
  Broadcast and multicast destinations (and frames shorter than a MAC) go to
  the first configured interface; any other destination is reported as
  unknown-interface and skipped.

Clock:
  The capture's timestamps, in ms since its first frame (the director starts
  at 0). Connection expiry runs whenever the clock advanced by 100 ms, and
  once at the end.

Output (--out):
  pcapng with one interface per configured interface, in config order, named
  as in the config; each transmitted frame on the interface it leaves by,
  with its input frame's timestamp.

Verdicts file (--verdicts), one line per input frame, tab-separated:
  N  VERDICT  REASON  REAL-SERVER
  N            the frame's number in the capture, from 1
  VERDICT      transmit:IFACE   sent out of IFACE (rewritten, encapsulated, or
                                an ICMP too-big reply to the sender)
               pass             handed to the kernel unchanged
               drop             dropped
               unknown-interface  no configured interface received it (skipped)
  REASON       the drop reason (e.g. ipv4_bad_checksum, no_connection), or -
  REAL-SERVER  the real server (or fallback) the frame went to or came from,
               ADDR:PORT or [ADDR]:PORT (ADDR alone when the port is kept), or -
  Examples:
    1\ttransmit:server0\t-\t192.0.2.13:80
    7\tdrop\tipv4_bad_checksum\t-
    9\tpass\t-\t-

Summary (stdout): frames read, transmitted per interface, passed, dropped per
reason, and per real server the connections scheduled and packets in/out.

Exit status: 0 on success, 2 when a file cannot be read or written, the
config is invalid, or the capture is damaged or not Ethernet.";

/// Replay a capture through the director's pipeline and write what it transmits.
#[derive(Debug, Parser)]
#[command(name = "xvs-replay", version, about, long_about = None, after_help = AFTER_HELP)]
struct Args {
    /// The cluster configuration (director/CONFIG.md); static `[[neighbours]]`
    /// give the next hops' MAC addresses, and every interface needs its `mac`
    /// (there is no kernel to read it from).
    #[arg(long, value_name = "CLUSTER.toml")]
    config: PathBuf,
    /// The capture to replay: pcap or pcapng (told apart by content), Ethernet.
    #[arg(long = "in", value_name = "IN.pcap|IN.pcapng")]
    input: PathBuf,
    /// Where to write the transmitted frames (pcapng).
    #[arg(long = "out", value_name = "OUT.pcapng")]
    output: PathBuf,
    /// Where to write one verdict line per input frame (format below).
    #[arg(long, value_name = "FILE")]
    verdicts: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let files = ReplayFiles {
        config: args.config,
        input: args.input,
        output: args.output,
        verdicts: args.verdicts,
    };
    match replay(&files) {
        Ok(done) => {
            print!("{}", done.report);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xvs-replay: {e}");
            ExitCode::from(2)
        }
    }
}
