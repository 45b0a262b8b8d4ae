//! `xvs-xdpfwd`: the minimal AF_XDP forwarder, the floor for the
//! director's own overhead in the small-packet benchmark (issue #6).
//!
//! It does I/O exactly as the director does — the director's XDP program
//! with one UDP service in its filter, [`AfXdpIo`] with one UMEM shared by
//! the in and out interfaces, bursts of [`MAX_BURST`], transmits flushed
//! once per burst, the same adaptive poll (spin, then sleep in `poll()`) —
//! and none of its logic: no parse beyond the fixed offsets the rewrite
//! needs, no connection table, no scheduler, no neighbour lookup. Every
//! frame the program redirects gets one fixed DNAT ([`Dnat`]): destination
//! address and port to `--to`, checksums updated incrementally (RFC 1624,
//! [`xvs_packet::checksum`]), destination MAC `--to-mac`, source MAC the
//! out interface's. The TTL is left alone: the director's NAT decrements
//! it, which is one more incremental update and part of its overhead.
//!
//! What xvs costs over this floor is then its pipeline: parsing and
//! validation, connection lookup and scheduling, counters.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use xvs_director::io::afxdp::{AfXdpIo, AfXdpOptions, ZeroCopy};
use xvs_director::io::xdp::{RedirectFilter, XdpProgram};
use xvs_director::io::{IoError, IoInterface, IoStats, WorkerIo};
use xvs_director::pipeline::{DropReason, IfaceId, MAX_BURST, Verdict};
use xvs_packet::checksum::{self, Delta};
use xvs_packet::ethernet::{self, MacAddr};
use xvs_packet::{IpProtocol, ipv4, ipv6, udp};

use crate::pktgen::iface_mac;

/// Empty rounds spun before sleeping (the director's `SPIN_ROUNDS`).
const SPIN_ROUNDS: u32 = 200;
/// Longest sleep before the stop flag is looked at (the director's `SLEEP`).
const SLEEP: Duration = Duration::from_millis(50);

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;

/// Why a frame was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unforwardable {
    /// Too short for the headers the rewrite touches.
    Truncated,
    /// Not UDP over IPv4 or IPv6 (without extension headers).
    NotUdp,
    /// Of the other IP family than `--to`.
    FamilyMismatch,
}

impl Unforwardable {
    /// The director's drop reason closest to it (the backend only frees
    /// the frame; the forwarder counts its own drops).
    #[must_use]
    pub fn drop_reason(self) -> DropReason {
        match self {
            Self::Truncated => DropReason::EthernetTruncated,
            Self::NotUdp => DropReason::NoConnection,
            Self::FamilyMismatch => DropReason::FamilyMismatch,
        }
    }
}

/// The one rewrite the forwarder does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dnat {
    /// New destination address and port.
    pub to: SocketAddr,
    /// New destination MAC.
    pub to_mac: MacAddr,
    /// New source MAC: the out interface's.
    pub out_mac: MacAddr,
}

fn read16(frame: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([frame[at], frame[at + 1]])
}

fn write16(frame: &mut [u8], at: usize, value: u16) {
    frame[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

impl Dnat {
    /// Rewrites `frame` in place: MACs, destination address and port,
    /// IPv4 header and UDP checksums (incrementally; a UDP checksum of 0
    /// over IPv4 stays 0).
    ///
    /// # Errors
    /// The frame is not UDP of `to`'s family, or too short; it is then
    /// unchanged.
    pub fn apply(&self, frame: &mut [u8]) -> Result<(), Unforwardable> {
        const L3: usize = ethernet::HEADER_LEN;
        if frame.len() < L3 {
            return Err(Unforwardable::Truncated);
        }
        let (l4, addr_delta) = match (read16(frame, 12), self.to.ip()) {
            (ETHERTYPE_IPV4, IpAddr::V4(to)) => {
                if frame.len() < L3 + ipv4::HEADER_LEN {
                    return Err(Unforwardable::Truncated);
                }
                let ihl = usize::from(frame[L3] & 0x0f) * 4;
                let l4 = L3 + ihl;
                if ihl < ipv4::HEADER_LEN || frame.len() < l4 + udp::HEADER_LEN {
                    return Err(Unforwardable::Truncated);
                }
                if frame[L3 + 9] != u8::from(IpProtocol::Udp) {
                    return Err(Unforwardable::NotUdp);
                }
                let at = L3 + ipv4::DST_ADDR_OFFSET;
                let old =
                    u32::from_be_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]]);
                frame[at..at + 4].copy_from_slice(&to.octets());
                let delta = Delta::of_u32(old, u32::from(to));
                let csum = L3 + ipv4::CHECKSUM_OFFSET;
                write16(frame, csum, delta.apply(read16(frame, csum)));
                (l4, delta)
            }
            (ETHERTYPE_IPV6, IpAddr::V6(to)) => {
                let l4 = L3 + ipv6::HEADER_LEN;
                if frame.len() < l4 + udp::HEADER_LEN {
                    return Err(Unforwardable::Truncated);
                }
                if frame[L3 + 6] != u8::from(IpProtocol::Udp) {
                    return Err(Unforwardable::NotUdp);
                }
                let at = L3 + ipv6::DST_ADDR_OFFSET;
                let mut old = [0u8; 16];
                old.copy_from_slice(&frame[at..at + 16]);
                frame[at..at + 16].copy_from_slice(&to.octets());
                (l4, Delta::of_bytes(&old, &to.octets()))
            }
            (ETHERTYPE_IPV4 | ETHERTYPE_IPV6, _) => return Err(Unforwardable::FamilyMismatch),
            _ => return Err(Unforwardable::NotUdp),
        };
        let port_at = l4 + 2;
        let old_port = read16(frame, port_at);
        write16(frame, port_at, self.to.port());
        let delta = addr_delta.plus(Delta::of_u16(old_port, self.to.port()));
        let csum = l4 + udp::CHECKSUM_OFFSET;
        let old = read16(frame, csum);
        if self.to.is_ipv6() || old != 0 {
            write16(frame, csum, checksum::udp_nonzero(delta.apply(old)));
        }
        frame[0..6].copy_from_slice(&self.to_mac.0);
        frame[6..12].copy_from_slice(&self.out_mac.0);
        Ok(())
    }
}

/// Busy-poll or sleep when idle, as the director's `--poll`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Poll {
    /// Spin briefly after the last frame, then sleep in `poll()`.
    #[default]
    Adaptive,
    /// Never sleep.
    Busy,
}

/// The command line of `xvs-xdpfwd`.
#[derive(Debug, Clone, Parser)]
#[command(name = "xvs-xdpfwd", version, about, long_about = None, after_help = AFTER_HELP)]
pub struct FwdArgs {
    /// Interface the frames arrive on (the director's XDP program is
    /// attached to it and redirects UDP to --vip to our socket).
    #[arg(long = "in", value_name = "IFACE")]
    pub in_iface: String,
    /// Interface to transmit on (may be the same as --in).
    #[arg(long = "out", value_name = "IFACE")]
    pub out_iface: String,
    /// The frames' destination: UDP to it is redirected, the rest goes to
    /// the kernel.
    #[arg(long, value_name = "IP:PORT")]
    pub vip: SocketAddr,
    /// New destination address and port.
    #[arg(long, value_name = "IP:PORT")]
    pub to: SocketAddr,
    /// New destination MAC (the sink's, or the next hop's).
    #[arg(long, value_name = "MAC")]
    pub to_mac: MacAddr,
    /// Stop after this many seconds [default: at SIGINT or SIGTERM].
    #[arg(long, value_name = "SECONDS", value_parser = crate::pktgen::parse_seconds)]
    pub duration: Option<Duration>,
    /// Queue to serve on both interfaces.
    #[arg(long, value_name = "Q", default_value_t = 0)]
    pub queue: u32,
    /// Pin the forwarding loop to this CPU.
    #[arg(long, value_name = "CPU")]
    pub cpu: Option<usize>,
    /// Idle behaviour.
    #[arg(long, value_enum, default_value_t = Poll::Adaptive)]
    pub poll: Poll,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

const AFTER_HELP: &str = "\
Example (gen -> fwd-in, fwd-out -> sink):
  xvs-xdpfwd --in veth1 --out veth2 --vip 198.51.100.1:9000 \\
      --to 203.0.113.2:9000 --to-mac 02:00:00:00:00:09 --duration 10

Needs root. AF_XDP runs in copy mode where the driver has no zero-copy
(veth). The report gives frames forwarded and Mpps between the first and the
last forwarded frame.";

/// Why the forwarder could not run.
#[derive(Debug, thiserror::Error)]
pub enum FwdError {
    /// Not root.
    #[error("xvs-xdpfwd needs root (CAP_NET_ADMIN, CAP_BPF, CAP_NET_RAW): run it with sudo")]
    NotRoot,
    /// `--vip` and `--to` are of different families.
    #[error("--vip {vip} and --to {to} are of different IP families")]
    FamilyMismatch {
        /// The service.
        vip: SocketAddr,
        /// The rewrite target.
        to: SocketAddr,
    },
    /// A missing interface, or another bad argument.
    #[error("{0}")]
    Usage(String),
    /// The I/O layer failed (its message says what to do).
    #[error(transparent)]
    Io(#[from] IoError),
}

/// What a forwarding run did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FwdReport {
    /// The I/O layer's counters (`tx_frames`: frames forwarded).
    pub io: IoStats,
    /// Frames the rewrite refused.
    pub unforwardable: u64,
    /// From the first forwarded burst to the last.
    pub window: Duration,
    /// Frames the XDP program saw on both interfaces, and how many it
    /// redirected to us (None: unreadable).
    pub xdp: Option<(u64, u64)>,
    /// AF_XDP mode, as the backend describes itself.
    pub mode: &'static str,
}

impl FwdReport {
    /// Frames forwarded per second between the first and the last.
    #[must_use]
    pub fn pps(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            self.io.tx_frames as f64 / secs
        } else {
            0.0
        }
    }

    /// The report as JSON.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "rx_frames": self.io.rx_frames,
            "forwarded": self.io.tx_frames,
            "tx_dropped": self.io.tx_dropped,
            "kernel_rx_dropped": self.io.kernel_rx_dropped,
            "unforwardable": self.unforwardable,
            "sleeps": self.io.sleeps,
            "window_s": self.window.as_secs_f64(),
            "pps": self.pps(),
            "xdp_frames": self.xdp.map(|x| x.0),
            "xdp_redirected": self.xdp.map(|x| x.1),
            "mode": self.mode,
        })
    }
}

impl fmt::Display for FwdReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "forwarded {} frames in {:.3} s (first to last): {:.3} Mpps (AF_XDP {} mode); \
             received {}, tx dropped {}, kernel rx dropped {}, unforwardable {}, sleeps {}",
            self.io.tx_frames,
            self.window.as_secs_f64(),
            self.pps() / 1e6,
            self.mode,
            self.io.rx_frames,
            self.io.tx_dropped,
            self.io.kernel_rx_dropped,
            self.unforwardable,
            self.io.sleeps,
        )?;
        if let Some((seen, redirected)) = self.xdp {
            write!(f, "; XDP program saw {seen}, redirected {redirected}")?;
        }
        Ok(())
    }
}

/// Sets up the program and sockets, forwards until `stop` is set or the
/// duration passes, and reports. `started` is called once the sockets
/// are ready (with the backend's description).
///
/// # Errors
/// Not root, a missing interface, or the kernel refused the program or
/// a socket.
pub fn run(
    args: &FwdArgs,
    stop: &AtomicBool,
    started: impl FnOnce(&str),
) -> Result<FwdReport, FwdError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(FwdError::NotRoot);
    }
    if args.vip.is_ipv4() != args.to.is_ipv4() {
        return Err(FwdError::FamilyMismatch {
            vip: args.vip,
            to: args.to,
        });
    }
    let usage = |e: crate::pktgen::PktgenError| FwdError::Usage(e.to_string());
    iface_mac(&args.in_iface).map_err(usage)?;
    let out_mac = iface_mac(&args.out_iface).map_err(usage)?;
    let dnat = Dnat {
        to: args.to,
        to_mac: args.to_mac,
        out_mac,
    };

    let mut program = XdpProgram::load()?;
    program.set_filter(&RedirectFilter {
        services: vec![(IpProtocol::Udp, args.vip.ip(), args.vip.port())],
        ..RedirectFilter::default()
    })?;
    let hairpin = args.in_iface == args.out_iface;
    let mut ifaces = vec![IoInterface {
        id: IfaceId(0),
        name: args.in_iface.clone(),
        queue: args.queue,
    }];
    if !hairpin {
        ifaces.push(IoInterface {
            id: IfaceId(1),
            name: args.out_iface.clone(),
            queue: args.queue,
        });
    }
    let out = ifaces[ifaces.len() - 1].id;
    let options = AfXdpOptions {
        zero_copy: ZeroCopy::Auto,
        ..AfXdpOptions::default()
    };
    let mut io = AfXdpIo::open(&ifaces, options, &mut program)?;
    let _attachments = ifaces
        .iter()
        .map(|i| program.attach(&i.name))
        .collect::<Result<Vec<_>, _>>()?;
    let description = io.describe();
    started(&description);
    if let Some(cpu) = args.cpu
        && let Err(e) = xvs_director::io::pin_to_cpu(cpu)
    {
        eprintln!("xvs-xdpfwd: not pinned to CPU {cpu}: {e}");
    }

    let start = Instant::now();
    let deadline = args.duration.map(|d| start + d);
    let mut unforwardable = 0u64;
    let mut first: Option<Instant> = None;
    let mut last = start;
    let mut idle = 0u32;
    let mut decide = |burst: &mut dyn xvs_director::io::Burst, verdicts: &mut [Verdict]| {
        for (i, verdict) in verdicts.iter_mut().enumerate() {
            let frame = burst.frame(i);
            let (start, len) = (frame.start, frame.len);
            *verdict = match frame.buf.get_mut(start..start + len).map(|f| dnat.apply(f)) {
                Some(Ok(())) => Verdict::Transmit {
                    iface: out,
                    start,
                    len,
                },
                Some(Err(why)) => {
                    unforwardable += 1;
                    Verdict::Drop(why.drop_reason())
                }
                None => {
                    unforwardable += 1;
                    Verdict::Drop(DropReason::EthernetTruncated)
                }
            };
        }
    };
    while !stop.load(Ordering::Relaxed) {
        if let Some(deadline) = deadline
            && Instant::now() >= deadline
        {
            break;
        }
        match io.run_burst(MAX_BURST, &mut decide)? {
            0 => {
                idle += 1;
                if args.poll == Poll::Adaptive && idle >= SPIN_ROUNDS {
                    idle = 0;
                    io.wait(SLEEP)?;
                }
            }
            _ => {
                idle = 0;
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
            }
        }
    }
    // Frames still in the tx ring complete within a moment; take them back
    // so that the counters are final.
    io.reclaim();
    let xdp = program.counters().ok().map(|c| (c.frames, c.to_director));
    Ok(FwdReport {
        io: io.stats(),
        unforwardable,
        window: first.map_or(Duration::ZERO, |f| last.duration_since(f)),
        xdp,
        mode: if description.contains("zero-copy") {
            "zero-copy"
        } else {
            "copy"
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pktgen::FrameSpec;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    fn frame(src: &str, dst: &str) -> Vec<u8> {
        FrameSpec {
            src_mac: "02:00:00:00:00:01".parse().unwrap(),
            dst_mac: "02:00:00:00:00:02".parse().unwrap(),
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            src_port: 40_000,
            flows: 1,
            size: 64,
        }
        .frames()
        .unwrap()
        .remove(0)
    }

    fn dnat(to: &str) -> Dnat {
        Dnat {
            to: to.parse().unwrap(),
            to_mac: "02:00:00:00:00:09".parse().unwrap(),
            out_mac: "02:00:00:00:00:03".parse().unwrap(),
        }
    }

    /// The destination, the MACs, and checksums etherparse recomputes.
    fn check(frame: &[u8], to: &str) {
        let to: SocketAddr = to.parse().unwrap();
        assert_eq!(&frame[0..6], &[2, 0, 0, 0, 0, 9]);
        assert_eq!(&frame[6..12], &[2, 0, 0, 0, 0, 3]);
        let sliced = SlicedPacket::from_ethernet(frame).unwrap();
        let Some(TransportSlice::Udp(udp)) = &sliced.transport else {
            panic!("not UDP");
        };
        assert_eq!(udp.destination_port(), to.port());
        assert_eq!(udp.source_port(), 40_000);
        match &sliced.net {
            Some(NetSlice::Ipv4(ip)) => {
                let h = ip.header().to_header();
                assert_eq!(IpAddr::from(h.destination), to.ip());
                assert_eq!(h.header_checksum, h.calc_header_checksum());
                let want = udp
                    .to_header()
                    .calc_checksum_ipv4(&h, udp.payload())
                    .unwrap();
                assert_eq!(udp.checksum(), want);
            }
            Some(NetSlice::Ipv6(ip)) => {
                let h = ip.header().to_header();
                assert_eq!(IpAddr::from(h.destination), to.ip());
                let want = udp
                    .to_header()
                    .calc_checksum_ipv6(&h, udp.payload())
                    .unwrap();
                assert_eq!(udp.checksum(), want);
            }
            _ => panic!("not IP"),
        }
    }

    #[test]
    fn dnat_rewrites_ipv4_with_valid_checksums() {
        for to in ["203.0.113.2:9000", "192.0.2.255:1", "255.255.255.255:65535"] {
            let mut f = frame("198.51.100.2", "198.51.100.1:9000");
            dnat(to).apply(&mut f).unwrap();
            check(&f, to);
        }
    }

    #[test]
    fn dnat_rewrites_ipv6_with_valid_checksums() {
        let to = "[2001:db8::9]:8080";
        let mut f = frame("2001:db8::2", "[2001:db8::1]:9000");
        dnat(to).apply(&mut f).unwrap();
        check(&f, to);
    }

    #[test]
    fn dnat_keeps_a_zero_ipv4_udp_checksum() {
        let mut f = frame("198.51.100.2", "198.51.100.1:9000");
        f[40..42].copy_from_slice(&[0, 0]);
        dnat("203.0.113.2:9000").apply(&mut f).unwrap();
        assert_eq!(&f[40..42], &[0, 0]);
    }

    #[test]
    fn dnat_refuses_what_it_cannot_rewrite_and_leaves_it_alone() {
        let v4 = frame("198.51.100.2", "198.51.100.1:9000");
        let cases: [(&str, Vec<u8>, &str, Unforwardable); 4] = [
            (
                "too short",
                v4[..40].to_vec(),
                "203.0.113.2:1",
                Unforwardable::Truncated,
            ),
            (
                "wrong family",
                v4.clone(),
                "[2001:db8::1]:1",
                Unforwardable::FamilyMismatch,
            ),
            (
                "TCP",
                {
                    let mut f = v4.clone();
                    f[23] = 6;
                    f
                },
                "203.0.113.2:1",
                Unforwardable::NotUdp,
            ),
            (
                "ARP",
                {
                    let mut f = v4.clone();
                    f[12..14].copy_from_slice(&[0x08, 0x06]);
                    f
                },
                "203.0.113.2:1",
                Unforwardable::NotUdp,
            ),
        ];
        for (what, mut f, to, want) in cases {
            let before = f.clone();
            assert_eq!(dnat(to).apply(&mut f), Err(want), "{what}");
            assert_eq!(f, before, "{what}: changed");
        }
    }

    #[test]
    fn arguments_parse_and_duration_is_optional() {
        let base = [
            "xvs-xdpfwd",
            "--in",
            "a",
            "--out",
            "b",
            "--vip",
            "198.51.100.1:9000",
            "--to",
            "203.0.113.2:9000",
            "--to-mac",
            "02:00:00:00:00:09",
        ];
        let args = FwdArgs::try_parse_from(base).unwrap();
        assert_eq!(args.duration, None);
        assert_eq!(args.poll, Poll::Adaptive);
        assert_eq!(args.queue, 0);
        let args =
            FwdArgs::try_parse_from(base.iter().chain(&["--duration", "2", "--poll", "busy"]))
                .unwrap();
        assert_eq!(args.duration, Some(Duration::from_secs(2)));
        assert_eq!(args.poll, Poll::Busy);
        assert!(FwdArgs::try_parse_from(&base[..9]).is_err());
        assert!(FwdArgs::try_parse_from(base.iter().chain(&["--duration", "-1"])).is_err());
    }
}
