//! `xvs-pktgen`: a bounded UDP load generator and the counter that goes
//! with it, for the small-packet benchmark (issue #6).
//!
//! # Sending
//! One prebuilt frame per flow (flows differ in the source port only, so
//! each is its own 5-tuple and RSS or a scheduler can spread them), every
//! checksum complete: the director drops frames whose checksums are wrong,
//! and a veth carries no offload that would finish them. The frames leave
//! by a raw AF_PACKET socket (protocol 0, so it receives nothing;
//! `PACKET_QDISC_BYPASS`, so no qdisc and no transmit tap: `tcpdump` on the
//! sending side does not see them), in batches of [`SEND_BATCH`] per
//! `sendmmsg`, cycling over the flows. A run
//! always has both bounds, a frame count and a duration: a load generator
//! left running by a failed script must still stop.
//!
//! What the sender can know about loss: `sendmmsg` calls the kernel cut
//! short (partial sends) or refused for want of buffers (`ENOBUFS`,
//! retried), and the interface's own `tx_dropped` counter (on a veth, the
//! frames the peer's backlog had no room for). `PACKET_STATISTICS` counts
//! receive drops only.
//!
//! # Counting
//! The counter is a plain UDP socket bound to the port: it counts what the
//! kernel's stack delivered to an application, which is what a real server
//! behind a load balancer gets; frames lost on the way (bad checksums,
//! wrong MAC, no route) are not counted, as they should not be. The
//! socket drains with `recvmmsg`; so that a slow reader does not pass for
//! a slow network, the report also gives the namespace's UDP counters from
//! `/proc/net/snmp` over the run — datagrams the stack delivered to any
//! socket, those dropped because a socket buffer was full, and those
//! dropped for a bad checksum.

use std::fmt;
use std::io::IoSlice;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, LinkAddr, MsgFlags, MultiHeaders, SockFlag, SockType, SockaddrStorage, bind,
    recvmmsg, sendmmsg, setsockopt, socket, sockopt,
};
use nix::sys::time::TimeVal;
use serde_json::json;
use xvs_packet::checksum;
use xvs_packet::ethernet::{self, EtherType, MacAddr};
use xvs_packet::{IpProtocol, ipv4, ipv6, udp};

/// Smallest frame we send: Ethernet's minimum without the FCS.
pub const MIN_FRAME_LEN: usize = 60;
/// Largest frame we send: a 1500-byte MTU plus the Ethernet header.
pub const MAX_FRAME_LEN: usize = 1514;
/// Frames per `sendmmsg` (and datagrams per `recvmmsg`).
pub const SEND_BATCH: usize = 64;

/// Why the generator or the counter could not run. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum PktgenError {
    /// Source and destination are of different IP families.
    #[error(
        "--src {src} and --dst {dst} are of different IP families: give two IPv4 or two IPv6 addresses"
    )]
    FamilyMismatch {
        /// The source address.
        src: IpAddr,
        /// The destination address.
        dst: IpAddr,
    },
    /// The frame size cannot hold the headers, or is beyond the MTU.
    #[error(
        "--size {size}: a frame of this family must be {min} to {MAX_FRAME_LEN} bytes (without the FCS)"
    )]
    BadSize {
        /// What was asked for.
        size: usize,
        /// The least that holds Ethernet, IP and UDP headers (and 60).
        min: usize,
    },
    /// The flows would run past the last port.
    #[error(
        "--flows {flows} from --src-port {first}: source ports would pass 65535; lower one of them"
    )]
    TooManyFlows {
        /// First source port.
        first: u16,
        /// Number of flows.
        flows: u32,
    },
    /// A bad argument, already phrased.
    #[error("{0}")]
    Usage(String),
    /// A system call failed.
    #[error("{what} on {iface}: {source}{hint}")]
    Os {
        /// What was being done.
        what: &'static str,
        /// Which interface (or port).
        iface: String,
        /// The kernel's answer.
        source: Errno,
        /// What to do about it ("" or starting with ". ").
        hint: &'static str,
    },
}

const ROOT_HINT: &str = ". Raw packet sockets need root (CAP_NET_RAW)";

/// A destination MAC: given, or the kernel's neighbour entry for a next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DstMac {
    /// This address.
    Mac(MacAddr),
    /// Look up `--next-hop` in the kernel's neighbour table (`ip -j neigh`).
    Auto,
}

impl FromStr for DstMac {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "auto" {
            return Ok(Self::Auto);
        }
        s.parse().map(Self::Mac).map_err(|e| e.to_string())
    }
}

/// A `--duration`: seconds, fractions allowed, above 0 and at most a day.
pub(crate) fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err(format!("{s}: give a duration between 0 and 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The command line of `xvs-pktgen`.
#[derive(Debug, Parser)]
#[command(name = "xvs-pktgen", version, about, long_about = None, after_help = AFTER_HELP)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

const AFTER_HELP: &str = "\
Examples:
  xvs-pktgen send --iface veth0 --dst-mac 02:00:00:00:00:02 \\
      --src 198.51.100.2 --dst 198.51.100.1:9000 --flows 64 \\
      --count 10000000 --duration 10
  xvs-pktgen count --udp-port 9000 --duration 12

Both send bounds are required: the run stops at whichever comes first.
Checksums are complete (IPv4 header and UDP), as on a real wire.";

/// `send` or `count`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send UDP frames out of an interface (raw AF_PACKET, sendmmsg).
    Send(SendArgs),
    /// Count UDP datagrams the local stack delivers to a port.
    Count(CountArgs),
}

/// Arguments of `xvs-pktgen send`.
#[derive(Debug, Clone, Args)]
pub struct SendArgs {
    /// Interface to send from.
    #[arg(long, value_name = "IFACE")]
    pub iface: String,
    /// Source MAC [default: the interface's own].
    #[arg(long, value_name = "MAC")]
    pub src_mac: Option<MacAddr>,
    /// Destination MAC, or `auto`: the kernel's neighbour entry for
    /// --next-hop on --iface (`ip -j neigh`; ping it first if it is absent).
    #[arg(long, value_name = "MAC|auto")]
    pub dst_mac: DstMac,
    /// The next hop whose MAC `--dst-mac auto` looks up [default: --dst's address].
    #[arg(long, value_name = "IP")]
    pub next_hop: Option<IpAddr>,
    /// Source address (IPv4 or IPv6, as --dst).
    #[arg(long, value_name = "IP")]
    pub src: IpAddr,
    /// Destination address and UDP port (`[ADDR]:PORT` for IPv6).
    #[arg(long, value_name = "IP:PORT")]
    pub dst: SocketAddr,
    /// First source port; flow i uses SRC_PORT + i.
    #[arg(long, value_name = "PORT", default_value_t = 10_000)]
    pub src_port: u16,
    /// Distinct flows (source ports), sent round robin.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65_535))]
    pub flows: u32,
    /// Frame size in bytes, Ethernet header to the end of the UDP payload
    /// (no FCS): 64 is a minimum-size frame on the wire (68 with the FCS).
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    pub size: usize,
    /// Frames to send at most.
    #[arg(long, value_name = "N")]
    pub count: u64,
    /// Seconds to send at most.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub duration: Duration,
    /// Frames per second at most [default: as fast as the kernel takes them].
    #[arg(long, value_name = "PPS")]
    pub rate: Option<u64>,
    /// Pin the sender to this CPU.
    #[arg(long, value_name = "CPU")]
    pub cpu: Option<usize>,
    /// How frames leave: `packet` (a raw AF_PACKET socket, sendmmsg) or
    /// `xdp-live` (the kernel repeats each frame from an XDP program,
    /// `BPF_PROG_TEST_RUN` live frames: several times faster, in calls of
    /// about 0.25 s, one flow per call; on a veth the peer must run XDP or
    /// have GRO on).
    #[arg(long, value_enum, default_value_t = Engine::Packet)]
    pub engine: Engine,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// How `send` puts frames on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Engine {
    /// A raw AF_PACKET socket, [`SEND_BATCH`] frames per `sendmmsg`.
    #[default]
    Packet,
    /// `BPF_PROG_TEST_RUN` in live-frames mode
    /// ([`xvs_director::io::livegen`]): copies of one flow's frame for about
    /// [`LIVE_CALL`] per call, flows in turn.
    XdpLive,
}

/// Frames of the first live-frames call. Later calls are sized from the
/// speed seen so far to last about [`LIVE_CALL`]: every call costs the
/// kernel a page pool set-up and teardown that waits for an RCU grace
/// period (tens of milliseconds on the testbed machine, during which the
/// CPU idles), so short calls would measure that wait, not the path.
pub const LIVE_CHUNK: u64 = 65_536;
/// The length of one live-frames call the sender aims at: the grain of
/// the duration bound, of `--rate`, and of the turn of the flows.
pub const LIVE_CALL: Duration = Duration::from_millis(250);
/// Frames of one live-frames call at most.
const LIVE_CHUNK_MAX: u64 = 1 << 24;

/// Arguments of `xvs-pktgen count`.
#[derive(Debug, Clone, Args)]
pub struct CountArgs {
    /// Count only datagrams that arrived on this interface (SO_BINDTODEVICE).
    #[arg(long, value_name = "IFACE")]
    pub iface: Option<String>,
    /// UDP port to count on (bound on every address, IPv4 and IPv6).
    #[arg(long, value_name = "PORT")]
    pub udp_port: u16,
    /// Seconds to count for at most.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub duration: Duration,
    /// Stop as soon as this many datagrams were counted.
    #[arg(long, value_name = "N")]
    pub expect: Option<u64>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// What the frames look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSpec {
    /// Ethernet source.
    pub src_mac: MacAddr,
    /// Ethernet destination.
    pub dst_mac: MacAddr,
    /// IP source.
    pub src: IpAddr,
    /// IP destination and UDP port.
    pub dst: SocketAddr,
    /// Source port of the first flow.
    pub src_port: u16,
    /// Number of flows.
    pub flows: u32,
    /// Frame length without the FCS.
    pub size: usize,
}

impl FrameSpec {
    /// Checks that the frames can be built, before anything is opened.
    ///
    /// # Errors
    /// Mixed families, a size out of range, flows past port 65535.
    pub fn validate(&self) -> Result<(), PktgenError> {
        let l3 = match (self.src, self.dst.ip()) {
            (IpAddr::V4(_), IpAddr::V4(_)) => ipv4::HEADER_LEN,
            (IpAddr::V6(_), IpAddr::V6(_)) => ipv6::HEADER_LEN,
            (src, dst) => return Err(PktgenError::FamilyMismatch { src, dst }),
        };
        let min = (ethernet::HEADER_LEN + l3 + udp::HEADER_LEN).max(MIN_FRAME_LEN);
        if !(min..=MAX_FRAME_LEN).contains(&self.size) {
            return Err(PktgenError::BadSize {
                size: self.size,
                min,
            });
        }
        if self.flows == 0 || u32::from(self.src_port) + self.flows - 1 > 65_535 {
            return Err(PktgenError::TooManyFlows {
                first: self.src_port,
                flows: self.flows,
            });
        }
        Ok(())
    }

    /// One frame per flow, every checksum complete.
    ///
    /// # Errors
    /// As [`FrameSpec::validate`].
    pub fn frames(&self) -> Result<Vec<Vec<u8>>, PktgenError> {
        self.validate()?;
        Ok((0..self.flows)
            .map(|i| self.frame(self.src_port + i as u16))
            .collect())
    }

    /// The frame of the flow with this source port (spec validated).
    fn frame(&self, src_port: u16) -> Vec<u8> {
        let mut frame = vec![0u8; self.size];
        // A recognisable payload in captures.
        for (i, b) in frame.iter_mut().enumerate() {
            *b = b"xvs-pktgen "[i % 11];
        }
        let ethertype = if self.src.is_ipv4() {
            EtherType::Ipv4
        } else {
            EtherType::Ipv6
        };
        let mut eth = ethernet::Frame::new_unchecked(&mut frame[..]);
        eth.set_dst_addr(self.dst_mac);
        eth.set_src_addr(self.src_mac);
        eth.set_ethertype(ethertype);
        let l3 = ethernet::HEADER_LEN;
        let ip_len = self.size - l3;
        let (l4, pseudo) = match (self.src, self.dst.ip()) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let mut ip = ipv4::Packet::new_unchecked(&mut frame[l3..]);
                ip.set_version_and_header_len(ipv4::HEADER_LEN);
                ip.set_dscp_ecn(0);
                ip.set_total_len(ip_len as u16);
                ip.set_ident(0);
                ip.set_flags_and_offset(true, false, 0);
                ip.set_ttl(64);
                ip.set_protocol(IpProtocol::Udp);
                ip.set_src_addr(src);
                ip.set_dst_addr(dst);
                ip.fill_checksum();
                let udp_len = (ip_len - ipv4::HEADER_LEN) as u16;
                (
                    l3 + ipv4::HEADER_LEN,
                    checksum::pseudo_header_v4(src, dst, IpProtocol::Udp, udp_len),
                )
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let mut ip = ipv6::Packet::new_unchecked(&mut frame[l3..]);
                ip.set_version_tc_flow(0, 0);
                let udp_len = (ip_len - ipv6::HEADER_LEN) as u16;
                ip.set_payload_len(udp_len);
                ip.set_next_header(IpProtocol::Udp);
                ip.set_hop_limit(64);
                ip.set_src_addr(&src);
                ip.set_dst_addr(&dst);
                (
                    l3 + ipv6::HEADER_LEN,
                    checksum::pseudo_header_v6(&src, &dst, IpProtocol::Udp, u32::from(udp_len)),
                )
            }
            _ => unreachable!("validate() rejects mixed families"),
        };
        let udp_len = (self.size - l4) as u16;
        let mut datagram = udp::Packet::new_unchecked(&mut frame[l4..]);
        datagram.set_src_port(src_port);
        datagram.set_dst_port(self.dst.port());
        datagram.set_len(udp_len);
        datagram.set_checksum(0);
        let sum = checksum::combine(pseudo, checksum::sum(&frame[l4..]));
        let mut datagram = udp::Packet::new_unchecked(&mut frame[l4..]);
        datagram.set_checksum(checksum::udp_nonzero(checksum::finish(sum)));
        frame
    }
}

/// When to stop and how fast to go.
#[derive(Debug, Clone, Copy)]
pub struct SendBounds {
    /// Frames at most.
    pub count: u64,
    /// Time at most.
    pub duration: Duration,
    /// Frames per second at most.
    pub rate: Option<u64>,
}

/// What a send run did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SendReport {
    /// Frames the kernel accepted.
    pub sent: u64,
    /// From the first `sendmmsg` to the last one's return.
    pub elapsed: Duration,
    /// `sendmmsg` calls that sent fewer frames than offered.
    pub partial_sends: u64,
    /// `sendmmsg` calls refused with `ENOBUFS`/`EAGAIN` (retried).
    pub retries: u64,
    /// Growth of the interface's `tx_dropped` counter over the run (on a
    /// veth: frames the peer had no room for); `None` if unreadable.
    pub iface_tx_dropped: Option<u64>,
}

impl SendReport {
    /// Frames per second over the run.
    #[must_use]
    pub fn pps(&self) -> f64 {
        rate(self.sent, self.elapsed)
    }

    /// The report as JSON.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "sent": self.sent,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "pps": self.pps(),
            "partial_sends": self.partial_sends,
            "enobufs_retries": self.retries,
            "iface_tx_dropped": self.iface_tx_dropped,
        })
    }
}

impl fmt::Display for SendReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {} frames in {:.3} s: {:.3} Mpps; partial sends {}, ENOBUFS retries {}, interface tx_dropped {}",
            self.sent,
            self.elapsed.as_secs_f64(),
            self.pps() / 1e6,
            self.partial_sends,
            self.retries,
            self.iface_tx_dropped
                .map_or_else(|| "unknown".to_owned(), |d| d.to_string()),
        )
    }
}

fn rate(n: u64, over: Duration) -> f64 {
    let secs = over.as_secs_f64();
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

/// An interface's counter from sysfs (of the calling process's namespace).
fn iface_counter(iface: &str, name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/statistics/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The interface's own MAC address, from sysfs.
///
/// # Errors
/// No such interface in this network namespace.
pub fn iface_mac(iface: &str) -> Result<MacAddr, PktgenError> {
    let text =
        std::fs::read_to_string(format!("/sys/class/net/{iface}/address")).map_err(|_| {
            PktgenError::Usage(format!(
                "no interface {iface:?} in this network namespace (see `ip link`)"
            ))
        })?;
    text.trim().parse().map_err(|_| {
        PktgenError::Usage(format!(
            "{iface} has no Ethernet address ({:?})",
            text.trim()
        ))
    })
}

/// The MAC of `next_hop` in the kernel's neighbour table on `iface`, from
/// the JSON of `ip -j neigh show`.
///
/// # Errors
/// `ip` failed, or has no usable entry (the message says to ping first).
pub fn neighbour_mac(iface: &str, next_hop: IpAddr) -> Result<MacAddr, PktgenError> {
    let out = std::process::Command::new("ip")
        .args(["-j", "neigh", "show", &next_hop.to_string(), "dev", iface])
        .output()
        .map_err(|e| PktgenError::Usage(format!("running `ip -j neigh`: {e}")))?;
    if !out.status.success() {
        return Err(PktgenError::Usage(format!(
            "ip -j neigh show {next_hop} dev {iface}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    neighbour_mac_from_json(&String::from_utf8_lossy(&out.stdout)).ok_or_else(|| {
        PktgenError::Usage(format!(
            "no usable neighbour entry for {next_hop} on {iface}: ping it first, \
             or give --dst-mac"
        ))
    })
}

/// The `lladdr` of the first reachable-ish entry in `ip -j neigh` output.
fn neighbour_mac_from_json(text: &str) -> Option<MacAddr> {
    let entries: serde_json::Value = serde_json::from_str(text).ok()?;
    entries.as_array()?.iter().find_map(|e| {
        let states = e.get("state").and_then(|s| s.as_array());
        let failed = states.is_some_and(|s| {
            s.iter().any(|x| {
                x.as_str()
                    .is_some_and(|x| x == "FAILED" || x == "INCOMPLETE")
            })
        });
        if failed {
            return None;
        }
        e.get("lladdr")?.as_str()?.parse().ok()
    })
}

/// Resolves the command line into frames (MACs looked up as asked).
///
/// # Errors
/// Bad arguments, a missing interface or neighbour entry.
pub fn frame_spec(args: &SendArgs) -> Result<FrameSpec, PktgenError> {
    let src_mac = match args.src_mac {
        Some(mac) => mac,
        None => iface_mac(&args.iface)?,
    };
    let dst_mac = match args.dst_mac {
        DstMac::Mac(mac) => mac,
        DstMac::Auto => neighbour_mac(&args.iface, args.next_hop.unwrap_or(args.dst.ip()))?,
    };
    let spec = FrameSpec {
        src_mac,
        dst_mac,
        src: args.src,
        dst: args.dst,
        src_port: args.src_port,
        flows: args.flows,
        size: args.size,
    };
    spec.validate()?;
    Ok(spec)
}

/// Sends `frames` round robin out of `iface` until a bound is reached or
/// `stop` is set.
///
/// # Errors
/// The socket could not be made or bound (no root, no interface), or a
/// send failed for a reason other than a full queue.
pub fn send(
    iface: &str,
    frames: &[Vec<u8>],
    bounds: SendBounds,
    stop: &AtomicBool,
) -> Result<SendReport, PktgenError> {
    let os = |what: &'static str, hint: &'static str| {
        move |source: Errno| PktgenError::Os {
            what,
            iface: iface.to_owned(),
            source,
            hint,
        }
    };
    if frames.is_empty() {
        return Err(PktgenError::Usage("no frames to send".to_owned()));
    }
    let link: LinkAddr = nix::ifaddrs::getifaddrs()
        .map_err(os("listing interfaces", ""))?
        .filter(|a| a.interface_name == iface)
        .find_map(|a| a.address.and_then(|s| s.as_link_addr().copied()))
        .ok_or_else(|| {
            PktgenError::Usage(format!(
                "no interface {iface:?} in this network namespace (see `ip link`)"
            ))
        })?;
    // Protocol 0: the socket receives nothing, so it costs no tap.
    let fd = socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(os("opening a raw packet socket", ROOT_HINT))?;
    bind(fd.as_raw_fd(), &link).map_err(os("binding the packet socket", ""))?;
    // No qdisc and no transmit taps between us and the driver.
    xvs_director::io::packet::set_qdisc_bypass(fd.as_fd()).map_err(|e| {
        os("setting PACKET_QDISC_BYPASS", "")(Errno::from_raw(e.raw_os_error().unwrap_or(0)))
    })?;

    // The iovecs of frames K + BATCH long, so that a batch starting at any
    // flow is one contiguous slice: no per-batch set-up.
    let flows = frames.len();
    let iovs: Vec<[IoSlice<'_>; 1]> = (0..flows + SEND_BATCH)
        .map(|i| [IoSlice::new(&frames[i % flows])])
        .collect();
    let addrs = vec![None::<LinkAddr>; SEND_BATCH];
    let mut headers = MultiHeaders::<LinkAddr>::preallocate(SEND_BATCH, None);

    let dropped_before = iface_counter(iface, "tx_dropped");
    let mut report = SendReport::default();
    let start = Instant::now();
    let mut next = 0usize;
    while report.sent < bounds.count && !stop.load(Ordering::Relaxed) {
        let now = start.elapsed();
        if now >= bounds.duration {
            break;
        }
        let mut batch = (bounds.count - report.sent).min(SEND_BATCH as u64) as usize;
        if let Some(pps) = bounds.rate {
            let allowed = (now.as_secs_f64() * pps as f64) as u64 + 1;
            let room = allowed.saturating_sub(report.sent);
            if room == 0 {
                // Ahead of the rate: wait for one frame's worth of time.
                std::thread::sleep(
                    Duration::from_secs_f64(1.0 / pps.max(1) as f64).min(Duration::from_millis(1)),
                );
                continue;
            }
            batch = batch.min(room as usize);
        }
        match sendmmsg(
            fd.as_raw_fd(),
            &mut headers,
            &iovs[next..next + batch],
            &addrs[..batch],
            [],
            MsgFlags::empty(),
        ) {
            Ok(results) => {
                let n = results.count();
                if n < batch {
                    report.partial_sends += 1;
                }
                report.sent += n as u64;
                next = (next + n) % flows;
            }
            Err(Errno::ENOBUFS | Errno::EAGAIN) => {
                report.retries += 1;
                std::thread::yield_now();
            }
            Err(Errno::EINTR) => {}
            Err(e) => return Err(os("sending (sendmmsg)", "")(e)),
        }
    }
    report.elapsed = start.elapsed();
    report.iface_tx_dropped = dropped_before
        .zip(iface_counter(iface, "tx_dropped"))
        .map(|(a, b)| b.saturating_sub(a));
    Ok(report)
}

/// Sends `frames` out of `iface` from inside the kernel
/// ([`Engine::XdpLive`]): copies of one flow's frame for about
/// [`LIVE_CALL`] per call, the flows in turn, until a bound is reached or
/// `stop` is set. `sent` is the interface's own count of transmitted
/// frames over the run (on a veth, those its peer took); those it could
/// not pass on show in `iface_tx_dropped`. With a rate, each call
/// transmits a random share of its repetitions (see
/// [`xvs_director::io::livegen::LiveFrames::load_share`]), the share
/// corrected after each call towards the rate.
///
/// # Errors
/// The program could not be loaded (no root) or the kernel refused a run
/// (no interface, a kernel before 5.18).
pub fn send_live(
    iface: &str,
    frames: &[Vec<u8>],
    bounds: SendBounds,
    stop: &AtomicBool,
) -> Result<SendReport, PktgenError> {
    let os = |what: &'static str, hint: &'static str| {
        move |e: std::io::Error| PktgenError::Os {
            what,
            iface: iface.to_owned(),
            source: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
            hint,
        }
    };
    if frames.is_empty() {
        return Err(PktgenError::Usage("no frames to send".to_owned()));
    }
    let ifindex = nix::net::if_::if_nametoindex(iface).map_err(|_| {
        PktgenError::Usage(format!(
            "no interface {iface:?} in this network namespace (see `ip link`)"
        ))
    })?;
    let load = |frame: &[u8], share: f64| {
        // The share of repetitions transmitted, as the program's threshold.
        let threshold = (share * f64::from(u32::MAX)).clamp(0.0, f64::from(u32::MAX)) as u32;
        xvs_director::io::livegen::LiveFrames::load_share(frame, threshold).map_err(os(
            "loading the live-frames XDP program",
            ". It needs root (CAP_BPF, CAP_NET_ADMIN)",
        ))
    };
    // With --rate, a share of the repetitions is transmitted (the rest
    // dropped in the program, frame by frame, so the rate is smooth within
    // a call), corrected after every call from what the interface counted.
    let mut share = bounds.rate.map_or(1.0, |pps| {
        (pps as f64 / LIVE_FIRST_GUESS_PPS).clamp(MIN_SHARE, 1.0)
    });
    // One program per flow: each writes its own frame.
    let mut programs = frames
        .iter()
        .map(|f| load(f, share))
        .collect::<Result<Vec<_>, _>>()?;
    let dropped_before = iface_counter(iface, "tx_dropped");
    let tx_before = iface_counter(iface, "tx_packets");
    let mut report = SendReport::default();
    let start = Instant::now();
    let mut flow = 0usize;
    // Repetitions per call: a first guess, then from the speed seen.
    let mut size = LIVE_CHUNK;
    while report.sent < bounds.count && !stop.load(Ordering::Relaxed) {
        let now = start.elapsed();
        if now >= bounds.duration {
            break;
        }
        let left = bounds.duration - now;
        // Never aim past the duration bound by more than one grain.
        let aim = LIVE_CALL.min(left).max(Duration::from_millis(1));
        let wanted = ((bounds.count - report.sent) as f64 / share).ceil() as u64;
        let chunk = wanted.clamp(1, size);
        let repeat = u32::try_from(chunk).unwrap_or(u32::MAX);
        let call = Instant::now();
        let outcome = programs[flow].send(&frames[flow], ifindex, repeat);
        let took = call.elapsed();
        let completed = outcome.is_ok();
        match outcome {
            Ok(()) => {
                size = ((chunk as f64 / took.as_secs_f64().max(1e-6) * aim.as_secs_f64()) as u64)
                    .clamp(1, LIVE_CHUNK_MAX);
            }
            // A signal cut the run short; the interface's count says how
            // far it got.
            Err(e) if e.raw_os_error() == Some(Errno::EINTR as i32) => report.partial_sends += 1,
            Err(e) => return Err(os("sending (BPF_PROG_TEST_RUN, live frames)", LIVE_HINT)(e)),
        }
        report.sent = match (tx_before, iface_counter(iface, "tx_packets")) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ if completed => report.sent + (chunk as f64 * share) as u64,
            _ => report.sent,
        };
        if let Some(pps) = bounds.rate {
            let elapsed = start.elapsed().as_secs_f64();
            let achieved = report.sent as f64 / elapsed.max(1e-6);
            if achieved > 0.0 {
                let next = (share * pps as f64 / achieved).clamp(MIN_SHARE, 1.0);
                if (next - share).abs() > share * 0.01 {
                    share = next;
                    programs = frames
                        .iter()
                        .map(|f| load(f, share))
                        .collect::<Result<Vec<_>, _>>()?;
                }
            }
        }
        flow = (flow + 1) % frames.len();
    }
    report.elapsed = start.elapsed();
    report.iface_tx_dropped = dropped_before
        .zip(iface_counter(iface, "tx_dropped"))
        .map(|(a, b)| b.saturating_sub(a));
    Ok(report)
}

/// The full speed `--rate` starts from (frames the kernel repeats per
/// second with most of them dropped); corrected after the first call.
const LIVE_FIRST_GUESS_PPS: f64 = 5e6;
/// The smallest share of repetitions transmitted.
const MIN_SHARE: f64 = 1e-6;

const LIVE_HINT: &str = ". Live frames need Linux 5.18 or later; use --engine packet";

/// The namespace's UDP counters (`/proc/net/snmp`, the `Udp:` lines; IPv6
/// datagrams count there too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpCounters {
    /// Datagrams delivered to sockets (`InDatagrams`).
    pub delivered: u64,
    /// Datagrams dropped because a socket's buffer was full (`RcvbufErrors`).
    pub rcvbuf_errors: u64,
    /// Datagrams dropped for a bad checksum (`InCsumErrors`).
    pub csum_errors: u64,
    /// Datagrams to a port nobody listens on (`NoPorts`).
    pub no_ports: u64,
}

impl UdpCounters {
    /// Reads the counters of this process's network namespace (IPv4 and
    /// IPv6 summed); `None` if unreadable.
    #[must_use]
    pub fn read() -> Option<Self> {
        let v4 = std::fs::read_to_string("/proc/net/snmp").ok()?;
        let mut total = Self::parse_snmp(&v4, "Udp:")?;
        if let Ok(v6) = std::fs::read_to_string("/proc/net/snmp6") {
            total = total.plus(Self::parse_snmp6(&v6));
        }
        Some(total)
    }

    fn plus(self, o: Self) -> Self {
        Self {
            delivered: self.delivered + o.delivered,
            rcvbuf_errors: self.rcvbuf_errors + o.rcvbuf_errors,
            csum_errors: self.csum_errors + o.csum_errors,
            no_ports: self.no_ports + o.no_ports,
        }
    }

    /// Growth from `before` to `self`.
    #[must_use]
    pub fn since(self, before: Self) -> Self {
        Self {
            delivered: self.delivered.saturating_sub(before.delivered),
            rcvbuf_errors: self.rcvbuf_errors.saturating_sub(before.rcvbuf_errors),
            csum_errors: self.csum_errors.saturating_sub(before.csum_errors),
            no_ports: self.no_ports.saturating_sub(before.no_ports),
        }
    }

    /// `/proc/net/snmp`: a header line and a value line per protocol.
    fn parse_snmp(text: &str, proto: &str) -> Option<Self> {
        let mut lines = text.lines().filter(|l| l.starts_with(proto));
        let names: Vec<&str> = lines.next()?.split_whitespace().skip(1).collect();
        let values: Vec<&str> = lines.next()?.split_whitespace().skip(1).collect();
        let get = |name: &str| -> u64 {
            names
                .iter()
                .position(|n| *n == name)
                .and_then(|i| values.get(i)?.parse().ok())
                .unwrap_or(0)
        };
        Some(Self {
            delivered: get("InDatagrams"),
            rcvbuf_errors: get("RcvbufErrors"),
            csum_errors: get("InCsumErrors"),
            no_ports: get("NoPorts"),
        })
    }

    /// `/proc/net/snmp6`: one `Name value` pair per line.
    fn parse_snmp6(text: &str) -> Self {
        let get = |name: &str| -> u64 {
            text.lines()
                .filter_map(|l| l.split_once(char::is_whitespace))
                .find(|(n, _)| *n == name)
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0)
        };
        Self {
            delivered: get("Udp6InDatagrams"),
            rcvbuf_errors: get("Udp6RcvbufErrors"),
            csum_errors: get("Udp6InCsumErrors"),
            no_ports: get("Udp6NoPorts"),
        }
    }
}

/// What a count run saw.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CountReport {
    /// Datagrams this socket read.
    pub received: u64,
    /// From the first datagram to the last.
    pub window: Duration,
    /// The namespace's UDP counters over the run, if readable.
    pub udp: Option<UdpCounters>,
}

impl CountReport {
    /// Datagrams per second between the first and the last.
    #[must_use]
    pub fn pps(&self) -> f64 {
        rate(self.received, self.window)
    }

    /// The report as JSON.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "received": self.received,
            "window_s": self.window.as_secs_f64(),
            "pps": self.pps(),
            "udp_delivered": self.udp.map(|u| u.delivered),
            "udp_rcvbuf_errors": self.udp.map(|u| u.rcvbuf_errors),
            "udp_csum_errors": self.udp.map(|u| u.csum_errors),
            "udp_no_ports": self.udp.map(|u| u.no_ports),
        })
    }
}

impl fmt::Display for CountReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received {} datagrams in {:.3} s (first to last): {:.3} Mpps",
            self.received,
            self.window.as_secs_f64(),
            self.pps() / 1e6
        )?;
        if let Some(u) = self.udp {
            write!(
                f,
                "; namespace UDP: delivered {}, socket buffer full {}, bad checksum {}, no port {}",
                u.delivered, u.rcvbuf_errors, u.csum_errors, u.no_ports
            )?;
        }
        Ok(())
    }
}

/// Socket receive buffer asked for: bursts of a few ms at line rate.
const RCVBUF: usize = 32 << 20;

/// Counts datagrams to `args.udp_port` until the duration passes, the
/// expected count is reached, or `stop` is set.
///
/// # Errors
/// The port is taken, or the interface does not exist.
pub fn count(args: &CountArgs, stop: &AtomicBool) -> Result<CountReport, PktgenError> {
    let port = format!("UDP port {}", args.udp_port);
    let os = |what: &'static str, hint: &'static str| {
        let port = port.clone();
        move |source: Errno| PktgenError::Os {
            what,
            iface: port,
            source,
            hint,
        }
    };
    // [::]:port takes IPv4 too (v6only is off by default); a namespace
    // without IPv6 gets 0.0.0.0.
    let socket = std::net::UdpSocket::bind(("::", args.udp_port))
        .or_else(|_| std::net::UdpSocket::bind(("0.0.0.0", args.udp_port)))
        .map_err(|e| {
            PktgenError::Usage(format!(
                "binding UDP port {}: {e} (is another counter running?)",
                args.udp_port
            ))
        })?;
    if let Some(iface) = &args.iface {
        setsockopt(
            &socket,
            sockopt::BindToDevice,
            &std::ffi::OsString::from(iface),
        )
        .map_err(os(
            "binding to the interface (SO_BINDTODEVICE)",
            ". Is the name right?",
        ))?;
    }
    // Root may exceed rmem_max; others get what rmem_max allows.
    if setsockopt(&socket, sockopt::RcvBufForce, &RCVBUF).is_err() {
        let _ = setsockopt(&socket, sockopt::RcvBuf, &RCVBUF);
    }
    let before = UdpCounters::read();
    let mut buffers = vec![[0u8; 2048]; SEND_BATCH];
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(SEND_BATCH, None);
    let tick = TimeVal::new(0, 50_000);
    let start = Instant::now();
    let mut first: Option<Instant> = None;
    let mut last = start;
    let mut received = 0u64;
    let want = args.expect.unwrap_or(u64::MAX);
    // A timeout on the socket bounds every wait (recvmmsg's own timeout
    // only applies between datagrams).
    setsockopt(&socket, sockopt::ReceiveTimeout, &tick)
        .map_err(os("setting the receive timeout", ""))?;
    while received < want && start.elapsed() < args.duration && !stop.load(Ordering::Relaxed) {
        let mut iovs: Vec<[std::io::IoSliceMut<'_>; 1]> = buffers
            .iter_mut()
            .map(|b| [std::io::IoSliceMut::new(&mut b[..])])
            .collect();
        match recvmmsg(
            socket.as_fd().as_raw_fd(),
            &mut headers,
            iovs.iter_mut(),
            MsgFlags::MSG_WAITFORONE,
            None,
        ) {
            Ok(results) => {
                let n = results.count() as u64;
                if n > 0 {
                    let now = Instant::now();
                    first.get_or_insert(now);
                    last = now;
                    received += n;
                }
            }
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(e) => return Err(os("receiving (recvmmsg)", "")(e)),
        }
    }
    let udp = before.zip(UdpCounters::read()).map(|(b, a)| a.since(b));
    Ok(CountReport {
        received,
        window: first.map_or(Duration::ZERO, |f| last.duration_since(f)),
        udp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    fn spec(src: &str, dst: &str) -> FrameSpec {
        FrameSpec {
            src_mac: "02:00:00:00:00:01".parse().unwrap(),
            dst_mac: "02:00:00:00:00:02".parse().unwrap(),
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            src_port: 10_000,
            flows: 4,
            size: 64,
        }
    }

    /// Checks every checksum with etherparse's own implementation.
    fn assert_valid(frame: &[u8], want_sport: u16, want_dport: u16) {
        let sliced = SlicedPacket::from_ethernet(frame).unwrap();
        let Some(TransportSlice::Udp(udp)) = &sliced.transport else {
            panic!("not UDP: {sliced:?}");
        };
        assert_eq!(udp.source_port(), want_sport);
        assert_eq!(udp.destination_port(), want_dport);
        let payload = udp.payload();
        match &sliced.net {
            Some(NetSlice::Ipv4(ip)) => {
                let header = ip.header().to_header();
                assert_eq!(
                    header.header_checksum,
                    header.calc_header_checksum(),
                    "IPv4 header checksum"
                );
                let expected = udp
                    .to_header()
                    .calc_checksum_ipv4(&header, payload)
                    .unwrap();
                assert_eq!(udp.checksum(), expected, "UDP checksum");
                assert_eq!(
                    usize::from(header.total_len),
                    frame.len() - ethernet::HEADER_LEN
                );
            }
            Some(NetSlice::Ipv6(ip)) => {
                let header = ip.header().to_header();
                let expected = udp
                    .to_header()
                    .calc_checksum_ipv6(&header, payload)
                    .unwrap();
                assert_eq!(udp.checksum(), expected, "UDP checksum");
            }
            other => panic!("not IP: {other:?}"),
        }
        assert_ne!(udp.checksum(), 0);
    }

    #[test]
    fn ipv4_frames_have_valid_checksums_and_one_port_per_flow() {
        let frames = spec("198.51.100.2", "203.0.113.1:9000").frames().unwrap();
        assert_eq!(frames.len(), 4);
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(f.len(), 64);
            assert_valid(f, 10_000 + i as u16, 9000);
        }
    }

    #[test]
    fn ipv6_and_odd_sizes_have_valid_checksums() {
        for size in [62, 63, 64, 65, 128, 1514] {
            let mut s = spec("2001:db8::2", "[2001:db8::1]:53");
            s.size = size;
            let frames = s.frames().unwrap();
            assert_eq!(frames[0].len(), size);
            assert_valid(&frames[3], 10_003, 53);
        }
        for size in [60, 61, 99, 1514] {
            let mut s = spec("192.0.2.1", "192.0.2.9:1");
            s.size = size;
            assert_valid(&s.frames().unwrap()[0], 10_000, 1);
        }
    }

    #[test]
    fn bad_specs_are_refused_with_the_reason() {
        let mut s = spec("198.51.100.2", "[2001:db8::1]:9000");
        assert!(matches!(
            s.validate(),
            Err(PktgenError::FamilyMismatch { .. })
        ));
        s = spec("198.51.100.2", "203.0.113.1:9000");
        s.size = 59;
        assert!(matches!(
            s.validate(),
            Err(PktgenError::BadSize { min: 60, .. })
        ));
        s = spec("2001:db8::2", "[2001:db8::1]:53");
        s.size = 61;
        assert!(matches!(
            s.validate(),
            Err(PktgenError::BadSize { min: 62, .. })
        ));
        s = spec("198.51.100.2", "203.0.113.1:9000");
        s.src_port = 65_535;
        s.flows = 2;
        assert!(matches!(
            s.validate(),
            Err(PktgenError::TooManyFlows { .. })
        ));
        s.flows = 1;
        assert!(s.validate().is_ok());
    }

    #[test]
    fn send_needs_both_bounds() {
        let base = [
            "xvs-pktgen",
            "send",
            "--iface",
            "veth0",
            "--dst-mac",
            "02:00:00:00:00:02",
            "--src",
            "198.51.100.2",
            "--dst",
            "198.51.100.1:9000",
        ];
        let with = |extra: &[&str]| Cli::try_parse_from(base.iter().chain(extra));
        assert!(with(&["--count", "10"]).is_err());
        assert!(with(&["--duration", "1"]).is_err());
        assert!(with(&["--count", "10", "--duration", "0"]).is_err());
        let cli = with(&[
            "--count",
            "10",
            "--duration",
            "1.5",
            "--flows",
            "8",
            "--rate",
            "1000",
        ])
        .unwrap();
        let Command::Send(args) = cli.command else {
            panic!("not send");
        };
        assert_eq!(args.count, 10);
        assert_eq!(args.duration, Duration::from_millis(1500));
        assert_eq!(args.flows, 8);
        assert_eq!(args.rate, Some(1000));
        assert_eq!(args.size, 64);
        assert_eq!(
            args.dst_mac,
            DstMac::Mac("02:00:00:00:00:02".parse().unwrap())
        );
        assert!(with(&["--count", "1", "--duration", "1", "--flows", "0"]).is_err());
        assert_eq!(args.engine, Engine::Packet);
        let Command::Send(args) =
            with(&["--count", "1", "--duration", "1", "--engine", "xdp-live"])
                .unwrap()
                .command
        else {
            panic!("not send");
        };
        assert_eq!(args.engine, Engine::XdpLive);
        assert!(with(&["--count", "1", "--duration", "1", "--engine", "afxdp"]).is_err());
    }

    #[test]
    fn dst_mac_auto_and_count_arguments_parse() {
        assert_eq!("auto".parse::<DstMac>().unwrap(), DstMac::Auto);
        assert!("02:00".parse::<DstMac>().is_err());
        let cli = Cli::try_parse_from([
            "xvs-pktgen",
            "count",
            "--udp-port",
            "9000",
            "--duration",
            "3",
            "--expect",
            "10000",
        ])
        .unwrap();
        let Command::Count(args) = cli.command else {
            panic!("not count");
        };
        assert_eq!(args.udp_port, 9000);
        assert_eq!(args.expect, Some(10_000));
        assert!(args.iface.is_none());
        assert!(Cli::try_parse_from(["xvs-pktgen", "count", "--udp-port", "9000"]).is_err());
    }

    #[test]
    fn neighbour_json_skips_failed_entries() {
        let text = r#"[{"dst":"198.51.100.1","dev":"v0","state":["FAILED"]},
            {"dst":"198.51.100.1","dev":"v0","lladdr":"02:00:00:00:00:09","state":["REACHABLE"]}]"#;
        assert_eq!(
            neighbour_mac_from_json(text),
            Some("02:00:00:00:00:09".parse().unwrap())
        );
        assert_eq!(neighbour_mac_from_json("[]"), None);
        assert_eq!(neighbour_mac_from_json("not json"), None);
    }

    #[test]
    fn snmp_counters_parse_by_name() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
            Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors\n\
            Udp: 100 2 3 4 5 6 7\n";
        let c = UdpCounters::parse_snmp(snmp, "Udp:").unwrap();
        assert_eq!(
            c,
            UdpCounters {
                delivered: 100,
                rcvbuf_errors: 5,
                csum_errors: 7,
                no_ports: 2
            }
        );
        let snmp6 = "Udp6InDatagrams                 \t10\nUdp6NoPorts 1\nUdp6RcvbufErrors 2\n";
        let c6 = UdpCounters::parse_snmp6(snmp6);
        assert_eq!((c6.delivered, c6.no_ports, c6.rcvbuf_errors), (10, 1, 2));
        assert_eq!(c.plus(c6).since(c).delivered, 10);
    }
}
