//! pnet's datalink channel against our TPACKET_V3 backend ([`PacketIo`]),
//! measured in one run on one veth pair: the measurement the issue asked
//! for ("pnet, or TPACKET_V3 if pnet is too slow — measure").
//!
//! ```text
//!   netns xvsP-<pid>-rx                      netns xvsP-<pid>-tx
//!   ┌────────────────────────────────┐      ┌─────────────────────────────┐
//!   │ receiver on xvsP<n>r (CPU 1):  │      │ sender on xvsP<n>s (CPU 0): │
//!   │  (a) pnet rx.next()            │◀veth─│  raw AF_PACKET, sendmmsg    │
//!   │  (b) PacketIo::run_burst       │─────▶│  64-byte UDP frames         │
//!   │  (c) either, echoing back      │      │                             │
//!   │ 198.51.100.1/24                │      │ 198.51.100.2/24             │
//!   └────────────────────────────────┘      └─────────────────────────────┘
//! ```
//!
//! In both namespaces an nft netdev ingress rule (the director's
//! [`KernelFilter`]) drops the probes and the echoes after the packet
//! taps, as on a director: the IP stacks stay out of the measurement.
//!
//! The sender is the same for every variant: [`FRAMES`] frames of
//! [`FRAME_LEN`] bytes, 64 per `sendmmsg`, as fast as the kernel takes
//! them (bounded by [`SEND_LIMIT`]). Each variant runs [`RUNS`] times,
//! alternating pnet and `PacketIo`, and the summary gives min/median/max.
//!
//! What is counted: frames the receiver saw (a UDP frame from the sender
//! to the probe port), the time from its first to its last such frame, and
//! the CPU time (user + system, `getrusage(RUSAGE_THREAD)`) of the
//! receiving thread over the whole run, per frame received. The kernel's
//! receive work (veth, the packet taps, the IP stack) runs in the
//! sender's softirq, not in the receiver's thread; so does the taps'
//! wake-up of a sleeping reader.
//!
//! pnet is used with its default configuration except for a read timeout
//! (100 ms, so that its loop can stop when the sender is done; it only
//! changes the `poll()` argument). Its defaults are what an adopter gets:
//! promiscuous mode, one `poll()` + `recvfrom()` per frame, one `poll()` +
//! `sendto()` per transmitted frame, and its socket sees the frames it
//! sends (no `PACKET_IGNORE_OUTGOING`), which the echo loop must skip.
//!
//! Run by hand, as root, with
//! `cargo test -p xvs-director --release --test afpacket_vs_pnet -- --ignored --nocapture`;
//! skips with a message where namespaces cannot be made. The namespaces
//! go away on drop, also when a thread panics.
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed set-up is a failed test"
)]

use std::fs::File;
use std::io::IoSlice;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::socket::{
    AddressFamily, LinkAddr, MsgFlags, MultiHeaders, SockFlag, SockType, bind, sendmmsg, socket,
};
use xvs_director::io::packet::{
    FilterInterface, FilterRule, KernelFilter, PacketIo, PacketOptions,
};
use xvs_director::io::{Burst, IoInterface, RxFrame, WorkerIo, pin_to_cpu};
use xvs_director::pipeline::{IfaceId, InterfaceRole, Verdict};
use xvs_packet::IpProtocol;

mod common;
use common::ip;

/// Frames sent per measurement.
const FRAMES: u64 = 200_000;
/// Bytes per frame as handed to the socket (Ethernet header to the end of
/// the UDP payload; 68 on the wire with the FCS).
const FRAME_LEN: usize = 64;
/// Measurements per variant.
const RUNS: usize = 3;
/// Longest the sender may take for [`FRAMES`].
const SEND_LIMIT: Duration = Duration::from_secs(10);
/// A receiver stops once the sender is done and nothing came for this long.
const DRAIN: Duration = Duration::from_millis(300);
/// Frames per `sendmmsg`.
const SEND_BATCH: usize = 64;

const RX_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const TX_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const RX_MAC: [u8; 6] = [0x02, 0x00, 0xc6, 0x33, 0x64, 0x01];
const TX_MAC: [u8; 6] = [0x02, 0x00, 0xc6, 0x33, 0x64, 0x02];
const PROBE_PORT: u16 = 43_000;
const SOURCE_PORT: u16 = 43_001;

const SENDER_CPU: usize = 0;
const RECEIVER_CPU: usize = 1;

/// The two namespaces and the veth pair between them; deleted on drop.
struct Bed {
    rx_ns: String,
    tx_ns: String,
    rx_if: String,
    tx_if: String,
}

impl Bed {
    fn new() -> Result<Self, String> {
        let pid = std::process::id();
        let bed = Self {
            rx_ns: format!("xvsP-{pid}-rx"),
            tx_ns: format!("xvsP-{pid}-tx"),
            rx_if: format!("xvsP{}r", pid % 100_000),
            tx_if: format!("xvsP{}s", pid % 100_000),
        };
        ip(&["netns", "add", &bed.rx_ns])?;
        // From here on, Drop cleans up whatever was made.
        ip(&["netns", "add", &bed.tx_ns])?;
        let mac = |m: [u8; 6]| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        ip(&[
            "link",
            "add",
            &bed.rx_if,
            "address",
            &mac(RX_MAC),
            "netns",
            &bed.rx_ns,
            "type",
            "veth",
            "peer",
            "name",
            &bed.tx_if,
            "address",
            &mac(TX_MAC),
            "netns",
            &bed.tx_ns,
        ])?;
        ip(&[
            "-n",
            &bed.rx_ns,
            "addr",
            "add",
            "198.51.100.1/24",
            "dev",
            &bed.rx_if,
        ])?;
        ip(&[
            "-n",
            &bed.tx_ns,
            "addr",
            "add",
            "198.51.100.2/24",
            "dev",
            &bed.tx_if,
        ])?;
        ip(&["-n", &bed.rx_ns, "link", "set", &bed.rx_if, "up"])?;
        ip(&["-n", &bed.tx_ns, "link", "set", &bed.tx_if, "up"])?;
        bed.keep_kernel_off(&bed.rx_ns, &bed.rx_if, RX_ADDR, PROBE_PORT)?;
        bed.keep_kernel_off(&bed.tx_ns, &bed.tx_if, TX_ADDR, SOURCE_PORT)?;
        Ok(bed)
    }

    /// Drops UDP to `addr:port` at `ifname`'s ingress hook, after the packet
    /// taps, as the director's [`KernelFilter`] does: the IP stack of
    /// neither namespace spends time on the probes or the echoes.
    fn keep_kernel_off(
        &self,
        ns: &str,
        ifname: &str,
        addr: Ipv4Addr,
        port: u16,
    ) -> Result<(), String> {
        std::thread::scope(|s| {
            s.spawn(|| {
                Self::enter(ns);
                let filter = KernelFilter::install(
                    &[FilterInterface {
                        name: ifname.to_owned(),
                        role: InterfaceRole::Client,
                    }],
                    &[FilterRule::ToService {
                        proto: IpProtocol::Udp,
                        vip: addr.into(),
                        port,
                    }],
                )
                .map_err(|e| e.to_string())?;
                // The table goes with the namespace; removing it from a
                // destructor on another thread would reach the wrong one.
                std::mem::forget(filter);
                Ok(())
            })
            .join()
            .unwrap()
        })
    }

    /// Moves the calling thread into `ns` (sockets made afterwards live there).
    fn enter(ns: &str) {
        let file = File::open(format!("/run/netns/{ns}")).unwrap();
        setns(&file, CloneFlags::CLONE_NEWNET).unwrap();
    }

    /// The receive counter of the sender's interface, read from a thread
    /// of its own inside the sender's namespace.
    fn returned_frames(&self) -> u64 {
        std::thread::scope(|s| {
            s.spawn(|| {
                Self::enter(&self.tx_ns);
                let dev = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap();
                let prefix = format!("{}:", self.tx_if);
                let line = dev
                    .lines()
                    .map(str::trim_start)
                    .find(|l| l.starts_with(&prefix))
                    .unwrap();
                line[prefix.len()..]
                    .split_whitespace()
                    .nth(1)
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .join()
            .unwrap()
        })
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.rx_ns]);
        let _ = ip(&["netns", "del", &self.tx_ns]);
    }
}

/// RFC 1071 sum over an IPv4 header.
/// The sender's frame: UDP from `TX_ADDR:SOURCE_PORT` to `RX_ADDR:PROBE_PORT`.
fn probe_frame() -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&RX_MAC);
    f[6..12].copy_from_slice(&TX_MAC);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = (FRAME_LEN - 14) as u16;
    f[14] = 0x45;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&TX_ADDR.octets());
    f[30..34].copy_from_slice(&RX_ADDR.octets());
    let checksum = xvs_packet::checksum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&checksum.to_be_bytes());
    f[34..36].copy_from_slice(&SOURCE_PORT.to_be_bytes());
    f[36..38].copy_from_slice(&PROBE_PORT.to_be_bytes());
    f[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    f[42..].fill(0x5a);
    f
}

/// True for a frame of the sender's (not an echo, ARP or ICMP).
fn is_probe(frame: &[u8]) -> bool {
    frame.len() >= 42
        && frame[12..14] == [0x08, 0x00]
        && frame[23] == 17
        && frame[26..30] == TX_ADDR.octets()
        && frame[14] == 0x45
        && frame[36..38] == PROBE_PORT.to_be_bytes()
}

/// Turns a probe around in place: MACs, addresses and ports swapped.
fn echo(frame: &mut [u8]) {
    for i in 0..6 {
        frame.swap(i, 6 + i);
    }
    for i in 0..4 {
        frame.swap(26 + i, 30 + i);
    }
    frame.swap(34, 36);
    frame.swap(35, 37);
}

/// User and system time of the calling thread.
fn thread_cpu() -> (Duration, Duration) {
    let usage = getrusage(UsageWho::RUSAGE_THREAD).unwrap();
    let micros = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    (micros(usage.user_time()), micros(usage.system_time()))
}

/// CPU time of the calling thread since `start` (from [`thread_cpu`]):
/// (user + system, system).
fn cpu_since(start: (Duration, Duration)) -> (Duration, Duration) {
    let (user, sys) = thread_cpu();
    let sys = sys.saturating_sub(start.1);
    (user.saturating_sub(start.0) + sys, sys)
}

/// What one receiver (or echoer) saw.
#[derive(Debug, Default)]
struct Tally {
    /// Probes received.
    frames: u64,
    /// Echoes handed to the kernel successfully.
    echoed: u64,
    /// Echoes the backend could not send.
    echo_failed: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    /// User + system time of the receiving thread.
    cpu: Duration,
    /// The system part of `cpu`.
    cpu_sys: Duration,
}

impl Tally {
    fn hit(&mut self) {
        let now = Instant::now();
        self.frames += 1;
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    fn rate(&self, count: u64) -> f64 {
        match (self.first, self.last) {
            (Some(first), Some(last)) if last > first => {
                count as f64 / (last - first).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

/// When a receive loop must stop: all frames seen, or the sender done and
/// the line quiet for [`DRAIN`], or a hard deadline.
struct StopRule<'a> {
    sender_done: &'a AtomicBool,
    deadline: Instant,
}

impl StopRule<'_> {
    fn new(sender_done: &AtomicBool) -> StopRule<'_> {
        StopRule {
            sender_done,
            deadline: Instant::now() + SEND_LIMIT + Duration::from_secs(5),
        }
    }

    fn stop(&self, tally: &Tally, quiet_since: Instant) -> bool {
        let now = Instant::now();
        now >= self.deadline
            || (tally.frames >= FRAMES && tally.echoed + tally.echo_failed >= tally.frames)
            || (self.sender_done.load(Ordering::Acquire)
                && now.duration_since(tally.last.unwrap_or(quiet_since).max(quiet_since)) >= DRAIN)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Receiver {
    Pnet,
    PacketIo,
}

/// pnet's datalink channel: `rx.next()` per frame; with `echo`, one
/// `tx.send_to()` per probe.
fn run_pnet(ifname: &str, echo_back: bool, ready: &mpsc::Sender<()>, rule: &StopRule) -> Tally {
    let iface = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == ifname)
        .unwrap();
    let config = pnet_datalink::Config {
        read_timeout: Some(Duration::from_millis(100)),
        ..pnet_datalink::Config::default()
    };
    let pnet_datalink::Channel::Ethernet(mut tx, mut rx) =
        pnet_datalink::channel(&iface, config).unwrap()
    else {
        panic!("pnet gave a channel that is not Ethernet");
    };
    let mut tally = Tally::default();
    let mut buf = [0u8; 2048];
    ready.send(()).unwrap();
    let quiet_since = Instant::now();
    let cpu = thread_cpu();
    while !rule.stop(&tally, quiet_since) {
        match rx.next() {
            Ok(frame) if is_probe(frame) => {
                tally.hit();
                if echo_back {
                    let len = frame.len().min(buf.len());
                    buf[..len].copy_from_slice(&frame[..len]);
                    echo(&mut buf[..len]);
                    match tx.send_to(&buf[..len], None) {
                        Some(Ok(())) => tally.echoed += 1,
                        _ => tally.echo_failed += 1,
                    }
                }
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("pnet rx: {e}"),
        }
    }
    (tally.cpu, tally.cpu_sys) = cpu_since(cpu);
    tally
}

/// Our backend with its default options: `run_burst` of 64, `wait()`
/// when nothing is there; with `echo`, a `Transmit` verdict per probe.
fn run_packet_io(
    ifname: &str,
    echo_back: bool,
    ready: &mpsc::Sender<()>,
    rule: &StopRule,
) -> Tally {
    let mut io = PacketIo::open(
        &[IoInterface {
            id: IfaceId(0),
            name: ifname.to_owned(),
            queue: 0,
        }],
        &PacketOptions::new(1),
    )
    .unwrap();
    let mut tally = Tally::default();
    ready.send(()).unwrap();
    let quiet_since = Instant::now();
    let cpu = thread_cpu();
    while !rule.stop(&tally, quiet_since) {
        let mut decide = |burst: &mut dyn Burst, verdicts: &mut [Verdict]| {
            for (i, v) in verdicts.iter_mut().enumerate() {
                let f: RxFrame<'_> = burst.frame(i);
                let frame = &mut f.buf[f.start..f.start + f.len];
                *v = Verdict::PassToKernel;
                if is_probe(frame) {
                    tally.hit();
                    if echo_back {
                        echo(frame);
                        *v = Verdict::Transmit {
                            iface: IfaceId(0),
                            start: f.start,
                            len: f.len,
                        };
                    }
                }
            }
        };
        if io.run_burst(64, &mut decide).unwrap() == 0 {
            io.wait(Duration::from_millis(10)).unwrap();
        }
    }
    (tally.cpu, tally.cpu_sys) = cpu_since(cpu);
    if echo_back {
        let stats = io.stats();
        tally.echoed = stats.tx_frames;
        tally.echo_failed = stats.tx_dropped;
    }
    tally
}

/// What the sender did.
#[derive(Debug)]
struct Sent {
    frames: u64,
    elapsed: Duration,
    /// `sendmmsg` calls that failed transiently (and were retried).
    retries: u64,
}

/// Sends [`FRAMES`] probes out of `ifname` from a raw AF_PACKET socket,
/// [`SEND_BATCH`] per `sendmmsg`. The socket has protocol 0: it receives
/// nothing, so it costs the kernel no tap on the echoes.
fn send_probes(ifname: &str) -> Sent {
    let link: LinkAddr = nix::ifaddrs::getifaddrs()
        .unwrap()
        .filter(|a| a.interface_name == ifname)
        .find_map(|a| a.address.and_then(|s| s.as_link_addr().copied()))
        .unwrap();
    let fd = socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(fd.as_raw_fd(), &link).unwrap();
    let frame = probe_frame();
    let iovs: Vec<[IoSlice<'_>; 1]> = (0..SEND_BATCH).map(|_| [IoSlice::new(&frame)]).collect();
    let addrs = vec![None::<LinkAddr>; SEND_BATCH];
    let mut headers = MultiHeaders::<LinkAddr>::preallocate(SEND_BATCH, None);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut retries = 0u64;
    while sent < FRAMES && start.elapsed() < SEND_LIMIT {
        let batch = (FRAMES - sent).min(SEND_BATCH as u64) as usize;
        match sendmmsg(
            fd.as_raw_fd(),
            &mut headers,
            &iovs[..batch],
            &addrs[..batch],
            [],
            MsgFlags::empty(),
        ) {
            Ok(results) => sent += results.count() as u64,
            Err(nix::errno::Errno::ENOBUFS | nix::errno::Errno::EAGAIN) => retries += 1,
            Err(e) => panic!("sendmmsg on {ifname}: {e}"),
        }
    }
    Sent {
        frames: sent,
        elapsed: start.elapsed(),
        retries,
    }
}

/// One measurement: a receiver (or echoer) in the receiving namespace on
/// one CPU, the sender in the other namespace on the other.
fn measure(bed: &Bed, receiver: Receiver, echo_back: bool) -> (Sent, Tally, u64) {
    let returned_before = bed.returned_frames();
    let sender_done = AtomicBool::new(false);
    let (ready_tx, ready_rx) = mpsc::channel();
    let (sent, tally) = std::thread::scope(|s| {
        let rx = s.spawn(|| {
            Bed::enter(&bed.rx_ns);
            if let Err(e) = pin_to_cpu(RECEIVER_CPU) {
                eprintln!("receiver not pinned: {e}");
            }
            let rule = StopRule::new(&sender_done);
            match receiver {
                Receiver::Pnet => run_pnet(&bed.rx_if, echo_back, &ready_tx, &rule),
                Receiver::PacketIo => run_packet_io(&bed.rx_if, echo_back, &ready_tx, &rule),
            }
        });
        let tx = s.spawn(|| {
            /// Tells the receiver that the sender is done, also on a panic.
            struct Done<'a>(&'a AtomicBool);
            impl Drop for Done<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Release);
                }
            }
            let _done = Done(&sender_done);
            let ready_rx = ready_rx;
            ready_rx
                .recv_timeout(Duration::from_secs(5))
                .expect("the receiver came up");
            // Let the receiver reach its loop before the flood starts.
            std::thread::sleep(Duration::from_millis(50));
            Bed::enter(&bed.tx_ns);
            if let Err(e) = pin_to_cpu(SENDER_CPU) {
                eprintln!("sender not pinned: {e}");
            }
            send_probes(&bed.tx_if)
        });
        let sent = tx.join().unwrap();
        (sent, rx.join().unwrap())
    });
    let returned = bed.returned_frames() - returned_before;
    (sent, tally, returned)
}

fn min_median_max(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        values[0],
        values[values.len() / 2],
        values[values.len() - 1],
    )
}

fn summary(name: &str, unit: &str, values: Vec<f64>) {
    let (min, median, max) = min_median_max(values);
    eprintln!("  {name:<34} min {min:>10.3}  median {median:>10.3}  max {max:>10.3}  {unit}");
}

fn label(receiver: Receiver) -> &'static str {
    match receiver {
        Receiver::Pnet => "pnet",
        Receiver::PacketIo => "PacketIo (TPACKET_V3)",
    }
}

#[test]
#[ignore = "a measurement: run by hand, as root, with --release"]
fn pnet_against_tpacket_v3() {
    if !common::skip::can_run("afpacket_vs_pnet", true, &["ip", "nft"]) {
        return;
    }
    let bed = Bed::new().unwrap_or_else(|why| panic!("building the namespaces: {why}"));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!(
        "pnet against TPACKET_V3: {FRAMES} frames of {FRAME_LEN} bytes per run, \
         {RUNS} runs per variant, load average before: {}",
        load.trim()
    );
    let receivers = [Receiver::Pnet, Receiver::PacketIo];
    for echo_back in [false, true] {
        let mut results: [Vec<(Sent, Tally, u64)>; 2] = [Vec::new(), Vec::new()];
        for run in 0..RUNS {
            for (k, &receiver) in receivers.iter().enumerate() {
                let (sent, tally, returned) = measure(&bed, receiver, echo_back);
                eprintln!(
                    "  run {run} {:<8} {:<22} sent {} in {:.3} s ({:.3} Mf/s, {} retries); \
                     received {} ({:.3} Mf/s), echoed {} (failed {}), returned {}, \
                     cpu {:.3} s ({:.0}% system) = {:.0} ns/frame",
                    if echo_back { "echo" } else { "receive" },
                    label(receiver),
                    sent.frames,
                    sent.elapsed.as_secs_f64(),
                    sent.frames as f64 / sent.elapsed.as_secs_f64() / 1e6,
                    sent.retries,
                    tally.frames,
                    tally.rate(tally.frames) / 1e6,
                    tally.echoed,
                    tally.echo_failed,
                    returned,
                    tally.cpu.as_secs_f64(),
                    100.0 * tally.cpu_sys.as_secs_f64() / tally.cpu.as_secs_f64().max(1e-9),
                    tally.cpu.as_nanos() as f64 / tally.frames.max(1) as f64,
                );
                assert!(sent.frames > 0, "the sender sent nothing");
                assert!(tally.frames > 0, "{} received nothing", label(receiver));
                results[k].push((sent, tally, returned));
            }
        }
        eprintln!(
            "{} (min / median / max of {RUNS}):",
            if echo_back {
                "echo: receive + transmit back"
            } else {
                "receive only"
            }
        );
        for (k, &receiver) in receivers.iter().enumerate() {
            let runs = &results[k];
            let name = label(receiver);
            let per = |f: &dyn Fn(&(Sent, Tally, u64)) -> f64| runs.iter().map(f).collect();
            summary(
                &format!("{name}: sender"),
                "Mframes/s",
                per(&|(s, _, _)| s.frames as f64 / s.elapsed.as_secs_f64() / 1e6),
            );
            summary(
                &format!("{name}: received"),
                "Mframes/s",
                per(&|(_, t, _)| t.rate(t.frames) / 1e6),
            );
            summary(
                &format!("{name}: lost"),
                "% of sent",
                per(&|(s, t, _)| {
                    100.0 * (s.frames - t.frames.min(s.frames)) as f64 / s.frames as f64
                }),
            );
            summary(
                &format!("{name}: receiver CPU"),
                "ns/frame",
                per(&|(_, t, _)| t.cpu.as_nanos() as f64 / t.frames.max(1) as f64),
            );
            summary(
                &format!("{name}: of which system"),
                "%",
                per(&|(_, t, _)| 100.0 * t.cpu_sys.as_secs_f64() / t.cpu.as_secs_f64().max(1e-9)),
            );
            if echo_back {
                summary(
                    &format!("{name}: echoed"),
                    "Mframes/s",
                    per(&|(_, t, _)| t.rate(t.echoed) / 1e6),
                );
                summary(
                    &format!("{name}: echoes back at sender"),
                    "% of sent",
                    per(&|(s, _, r)| 100.0 * *r as f64 / s.frames as f64),
                );
            }
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("load average after: {}", load.trim());
}
