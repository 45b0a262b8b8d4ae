//! The AF_PACKET backend on a live kernel, in namespaces of its own.
//!
//! ```text
//!   netns xvsT-<pid>-<t>-dir                 netns xvsT-<pid>-<t>-peer
//!   ┌──────────────────────────┐            ┌──────────────────────────┐
//!   │ PacketIo on xvsT<n><t>d  │── veth ────│ xvsT<n><t>p  UDP sockets │
//!   │ 192.0.2.1/24             │            │ 192.0.2.2/24             │
//!   └──────────────────────────┘            └──────────────────────────┘
//! ```
//!
//! Needs root (namespaces, AF_PACKET), `ip`, and `nft` for the filter
//! test; skips with a message without them (`common::skip`: a failure
//! under `XVS_REQUIRE_ALL=1`). Anything else that goes wrong — a namespace
//! not made, a ruleset nft refuses — fails the test. Every wait is bounded;
//! the namespaces go away on drop, also when an assertion fails.
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed set-up is a failed test"
)]

mod common;

use std::cell::Cell;
use std::fs::File;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{ip, skip};
use nix::sched::{CloneFlags, setns};
use xvs_director::io::packet::{
    FilterInterface, FilterRule, KernelFilter, PacketIo, PacketOptions,
};
use xvs_director::io::{Burst, IoInterface, RxFrame, WorkerIo};
use xvs_director::pipeline::{DropReason, IfaceId, InterfaceRole, Verdict};
use xvs_packet::IpProtocol;

const DIRECTOR_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const PEER_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

/// Two namespaces joined by a veth pair; deleted on drop.
struct Testbed {
    dir_ns: String,
    peer_ns: String,
    dir_if: String,
    home: File,
}

impl Testbed {
    /// Builds the testbed, or says why it cannot (not root, no netns).
    fn new(tag: char) -> Result<Self, String> {
        let pid = std::process::id();
        let bed = Self {
            dir_ns: format!("xvsT-{pid}-{tag}-dir"),
            peer_ns: format!("xvsT-{pid}-{tag}-peer"),
            dir_if: format!("xvsT{}{tag}d", pid % 100_000),
            home: File::open("/proc/thread-self/ns/net").map_err(|e| e.to_string())?,
        };
        let peer_if = format!("xvsT{}{tag}p", pid % 100_000);
        ip(&["netns", "add", &bed.dir_ns])?;
        // From here on, Drop cleans up whatever was made.
        ip(&["netns", "add", &bed.peer_ns])?;
        ip(&[
            "link",
            "add",
            &bed.dir_if,
            "netns",
            &bed.dir_ns,
            "type",
            "veth",
            "peer",
            "name",
            &peer_if,
            "netns",
            &bed.peer_ns,
        ])?;
        ip(&[
            "-n",
            &bed.dir_ns,
            "addr",
            "add",
            "192.0.2.1/24",
            "dev",
            &bed.dir_if,
        ])?;
        ip(&[
            "-n",
            &bed.peer_ns,
            "addr",
            "add",
            "192.0.2.2/24",
            "dev",
            &peer_if,
        ])?;
        ip(&["-n", &bed.dir_ns, "link", "set", &bed.dir_if, "up"])?;
        ip(&["-n", &bed.peer_ns, "link", "set", &peer_if, "up"])?;
        Ok(bed)
    }

    /// Moves this thread into a namespace (sockets made afterwards live there).
    fn enter(&self, ns: &str) {
        let file = File::open(format!("/run/netns/{ns}")).unwrap();
        setns(&file, CloneFlags::CLONE_NEWNET).unwrap();
    }

    fn enter_director(&self) {
        self.enter(&self.dir_ns.clone());
    }

    fn enter_peer(&self) {
        self.enter(&self.peer_ns.clone());
    }

    fn interface(&self) -> IoInterface {
        IoInterface {
            id: IfaceId(0),
            name: self.dir_if.clone(),
            queue: 0,
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = setns(&self.home, CloneFlags::CLONE_NEWNET);
        let _ = ip(&["netns", "del", &self.dir_ns]);
        let _ = ip(&["netns", "del", &self.peer_ns]);
    }
}

/// The testbed, or `None` when this machine lacks root, namespaces or one
/// of `tools`. Once those are there, a testbed that cannot be built fails
/// the test.
fn testbed(test: &str, tag: char, tools: &[&str]) -> Option<Testbed> {
    if !skip::can_run(test, true, tools) {
        return None;
    }
    Some(Testbed::new(tag).unwrap_or_else(|why| panic!("building the namespace testbed: {why}")))
}

/// A `KernelFilter` for UDP to `DIRECTOR_ADDR:port` (none for `None`) on
/// the director's interface; an error fails the test.
fn filter(bed: &Testbed, port: Option<u16>) -> KernelFilter {
    let rules: Vec<FilterRule> = port
        .map(|port| FilterRule::ToService {
            proto: IpProtocol::Udp,
            vip: DIRECTOR_ADDR.into(),
            port,
        })
        .into_iter()
        .collect();
    KernelFilter::install(
        &[FilterInterface {
            name: bed.dir_if.clone(),
            role: InterfaceRole::Client,
        }],
        &rules,
    )
    .unwrap_or_else(|e| panic!("installing the nftables filter: {e}"))
}

/// A UDP/IPv4 datagram in an Ethernet frame: (dst port, payload).
fn udp_of(frame: &[u8]) -> Option<(u16, &[u8])> {
    if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] || frame[14 + 9] != 17 {
        return None;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let udp = frame.get(14 + ihl..)?;
    let dport = u16::from_be_bytes([udp[2], udp[3]]);
    let len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    Some((dport, udp.get(8..len)?))
}

/// True for an IPv4 frame sent by the director's namespace: what
/// `PACKET_IGNORE_OUTGOING` must keep away from the workers (the echoes and
/// the kernel's own port-unreachable answers).
fn from_director(frame: &[u8]) -> bool {
    frame.len() >= 34 && frame[12..14] == [0x08, 0x00] && frame[26..30] == DIRECTOR_ADDR.octets()
}

/// Turns a UDP/IPv4 frame around in place: MACs, addresses and ports
/// swapped (the IPv4 checksum stays valid), UDP checksum 0 (none).
fn echo(frame: &mut [u8]) {
    for i in 0..6 {
        frame.swap(i, 6 + i);
    }
    for i in 0..4 {
        frame.swap(14 + 12 + i, 14 + 16 + i);
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let udp = 14 + ihl;
    frame.swap(udp, udp + 2);
    frame.swap(udp + 1, udp + 3);
    frame[udp + 6] = 0;
    frame[udp + 7] = 0;
}

/// Adapts a per-frame decision to the burst contract of `run_burst`.
fn each(
    mut decide: impl FnMut(RxFrame<'_>) -> Verdict,
) -> impl FnMut(&mut dyn Burst, &mut [Verdict]) {
    move |burst, verdicts| {
        for (i, v) in verdicts.iter_mut().enumerate() {
            *v = decide(burst.frame(i));
        }
    }
}

/// Runs bursts until `done` says so or `limit` passes; false on time-out.
fn pump(
    io: &mut PacketIo,
    limit: Duration,
    decide: &mut dyn FnMut(RxFrame<'_>) -> Verdict,
    done: &mut dyn FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        io.run_burst(64, &mut each(&mut *decide)).unwrap();
        if done() {
            return true;
        }
        io.wait(Duration::from_millis(20)).unwrap();
    }
    false
}

fn peer_socket(connect_port: Option<u16>) -> UdpSocket {
    let socket = UdpSocket::bind(SocketAddrV4::new(PEER_ADDR, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    if let Some(port) = connect_port {
        socket
            .connect(SocketAddrV4::new(DIRECTOR_ADDR, port))
            .unwrap();
    }
    socket
}

/// Sends on a connected socket and tells whether the kernel on the other
/// side answered with port-unreachable (`true`) or stayed silent.
fn kernel_refuses(socket: &UdpSocket, payload: &[u8]) -> bool {
    socket.send(payload).unwrap();
    let mut buf = [0u8; 64];
    match socket.recv(&mut buf) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => true,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
        other => panic!("unexpected answer to a probe: {other:?}"),
    }
}

#[test]
fn receives_transmits_and_keeps_the_kernel_off_service_traffic() {
    let Some(bed) = testbed(
        "afpacket::receives_transmits_and_keeps_the_kernel_off_service_traffic",
        'a',
        &["ip", "nft"],
    ) else {
        return;
    };
    bed.enter_peer();
    let echo_socket = peer_socket(None);
    let probe_socket = peer_socket(Some(40_001));
    bed.enter_director();
    let mut io = PacketIo::open(&[bed.interface()], &PacketOptions::new(1)).unwrap();
    let described = io.describe();
    assert!(described.starts_with("AF_PACKET TPACKET_V3"), "{described}");
    assert!(described.contains(&bed.dir_if), "{described}");

    // 1. A frame from the peer reaches run_burst; its echo reaches the peer.
    echo_socket
        .send_to(b"xvs-echo", SocketAddrV4::new(DIRECTOR_ADDR, 40_000))
        .unwrap();
    let echoed = Cell::new(0);
    let outgoing = Cell::new(0);
    let mut decide = |f: RxFrame<'_>| {
        let frame = &mut f.buf[f.start..f.start + f.len];
        outgoing.set(outgoing.get() + u32::from(from_director(frame)));
        if udp_of(frame) == Some((40_000, b"xvs-echo")) {
            echoed.set(echoed.get() + 1);
            echo(frame);
            return Verdict::Transmit {
                iface: IfaceId(0),
                start: f.start,
                len: f.len,
            };
        }
        Verdict::PassToKernel
    };
    pump(&mut io, Duration::from_secs(5), &mut decide, &mut || {
        echoed.get() > 0
    });
    assert_eq!(
        echoed.get(),
        1,
        "the peer's datagram reached run_burst once"
    );
    let mut buf = [0u8; 64];
    let (n, from) = echo_socket
        .recv_from(&mut buf)
        .expect("the echo reached the peer");
    assert_eq!(&buf[..n], b"xvs-echo");
    assert_eq!(
        from,
        SocketAddr::V4(SocketAddrV4::new(DIRECTOR_ADDR, 40_000))
    );
    let stats = io.stats();
    assert!(stats.rx_frames >= 1 && stats.tx_frames == 1, "{stats:?}");
    assert_eq!(stats.tx_dropped, 0);

    // 2. Without the filter the kernel answers a datagram to a closed port…
    assert!(
        kernel_refuses(&probe_socket, b"probe-open"),
        "control: the kernel must answer"
    );

    // 3. …with it, the kernel stays silent while the backend still sees it.
    // A table left by a crashed run (never removed) is replaced.
    std::mem::forget(filter(&bed, None));
    let filter = filter(&bed, Some(40_001));
    assert!(
        !kernel_refuses(&probe_socket, b"probe-filtered"),
        "the filter must silence the kernel"
    );
    let tapped = Cell::new(false);
    let mut decide = |f: RxFrame<'_>| {
        outgoing.set(outgoing.get() + u32::from(from_director(&f.buf[f.start..f.start + f.len])));
        if udp_of(&f.buf[f.start..f.start + f.len]) == Some((40_001, b"probe-filtered")) {
            tapped.set(true);
        }
        Verdict::Drop(DropReason::NoConnection)
    };
    pump(&mut io, Duration::from_secs(5), &mut decide, &mut || {
        tapped.get()
    });
    assert!(
        tapped.get(),
        "the tap must see what the netdev ingress hook drops"
    );
    assert_eq!(
        outgoing.get(),
        0,
        "a worker must not receive outgoing frames"
    );

    // 4. Removing the filter gives the traffic back to the kernel.
    filter.remove().unwrap();
    assert!(
        kernel_refuses(&probe_socket, b"probe-again"),
        "the filter must be gone"
    );
    let tables = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&tables.stdout).contains("xvs_afpacket"));
}

/// Flows the fanout test sends.
const FLOWS: u16 = 64;

/// The fanout test's view of one received frame: counts it for its flow
/// (and the frames the director itself sent, which must never come back).
fn tally(f: &RxFrame<'_>, counts: &mut [u32], outgoing: &mut u32) -> Verdict {
    let frame = &f.buf[f.start..f.start + f.len];
    *outgoing += u32::from(from_director(frame));
    if let Some((port, b"xvs-fanout")) = udp_of(frame)
        && (41_000..41_000 + FLOWS).contains(&port)
    {
        counts[usize::from(port - 41_000)] += 1;
    }
    Verdict::PassToKernel
}

#[test]
fn fanout_gives_each_frame_to_exactly_one_worker() {
    let Some(bed) = testbed(
        "afpacket::fanout_gives_each_frame_to_exactly_one_worker",
        'f',
        &["ip"],
    ) else {
        return;
    };
    bed.enter_peer();
    let socket = peer_socket(None);
    bed.enter_director();
    let options = PacketOptions::new(2);
    let mut workers = [
        PacketIo::open(&[bed.interface()], &options).unwrap(),
        PacketIo::open(&[bed.interface()], &options).unwrap(),
    ];
    assert!(workers[0].describe().contains("fanout hash over 2 queues"));

    for i in 0..FLOWS {
        socket
            .send_to(b"xvs-fanout", SocketAddrV4::new(DIRECTOR_ADDR, 41_000 + i))
            .unwrap();
    }
    let mut seen = [[0u32; FLOWS as usize]; 2];
    let mut outgoing = 0u32;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && seen.iter().flatten().sum::<u32>() < u32::from(FLOWS) {
        for (w, io) in workers.iter_mut().enumerate() {
            let counts = &mut seen[w];
            io.run_burst(
                64,
                &mut each(|f: RxFrame<'_>| tally(&f, counts, &mut outgoing)),
            )
            .unwrap();
        }
        workers[0].wait(Duration::from_millis(10)).unwrap();
    }
    // Late duplicates would arrive within a retire timeout: look once more.
    std::thread::sleep(Duration::from_millis(20));
    for (w, io) in workers.iter_mut().enumerate() {
        let counts = &mut seen[w];
        io.run_burst(
            256,
            &mut each(|f: RxFrame<'_>| tally(&f, counts, &mut outgoing)),
        )
        .unwrap();
    }
    for port in 0..usize::from(FLOWS) {
        assert_eq!(seen[0][port] + seen[1][port], 1, "flow {port}: {seen:?}");
    }
    let per_worker: Vec<u32> = seen.iter().map(|s| s.iter().sum()).collect();
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "both workers get flows: {per_worker:?}"
    );
    assert_eq!(
        outgoing, 0,
        "the kernel's own answers must not reach the fanout group"
    );
}

/// Frames per second through a veth pair with `run_burst` echoing on both
/// ends (a ping-pong of `IN_FLIGHT` datagrams, each side on its own
/// thread, the kernel kept off by a `KernelFilter` in each namespace).
/// A measurement, not a check: run it with
/// `cargo test --release -p xvs-director --test afpacket -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: run by hand with --release"]
fn echo_rate() {
    const IN_FLIGHT: u16 = 4096;
    const RUN: Duration = Duration::from_secs(3);
    let Some(bed) = testbed("afpacket::echo_rate", 'r', &["ip", "nft"]) else {
        return;
    };
    let peer_if = bed.dir_if.replace("rd", "rp");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let filter_for = |name: &str, vip: Ipv4Addr, port: u16| {
        KernelFilter::install(
            &[FilterInterface {
                name: name.to_owned(),
                role: InterfaceRole::Client,
            }],
            &[FilterRule::ToService {
                proto: IpProtocol::Udp,
                vip: vip.into(),
                port,
            }],
        )
        .unwrap()
    };
    // Small blocks, so that they fill (and reach user space) long before
    // the retire timer fires: the measurement is then not latency-bound.
    let options = PacketOptions {
        rx_block_size: 1 << 16,
        rx_block_count: 64,
        ..PacketOptions::new(1)
    };
    let run_side = |ns: &str, name: &str| -> (u64, xvs_director::io::IoStats) {
        bed.enter(ns);
        let mut io = PacketIo::open(
            &[IoInterface {
                id: IfaceId(0),
                name: name.to_owned(),
                queue: 0,
            }],
            &options,
        )
        .unwrap();
        let mut echoed = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let n = io
                .run_burst(
                    64,
                    &mut each(|f: RxFrame<'_>| {
                        let frame = &mut f.buf[f.start..f.start + f.len];
                        if udp_of(frame).is_some_and(|(port, _)| port == 42_000 || port == 42_001) {
                            echoed += 1;
                            echo(frame);
                            return Verdict::Transmit {
                                iface: IfaceId(0),
                                start: f.start,
                                len: f.len,
                            };
                        }
                        Verdict::PassToKernel
                    }),
                )
                .unwrap();
            if n == 0 {
                io.wait(Duration::from_millis(10)).unwrap();
            }
        }
        (echoed, io.stats())
    };
    bed.enter_peer();
    let _peer_filter = filter_for(&peer_if, PEER_ADDR, 42_001);
    let seed = UdpSocket::bind(SocketAddrV4::new(PEER_ADDR, 42_001)).unwrap();
    bed.enter_director();
    let _dir_filter = filter_for(&bed.dir_if, DIRECTOR_ADDR, 42_000);
    let (director, peer) = std::thread::scope(|s| {
        let director = s.spawn(|| run_side(&bed.dir_ns, &bed.dir_if));
        let peer = s.spawn(|| run_side(&bed.peer_ns, &peer_if));
        std::thread::sleep(Duration::from_millis(200));
        for _ in 0..IN_FLIGHT {
            seed.send_to(&[0u8; 18], SocketAddrV4::new(DIRECTOR_ADDR, 42_000))
                .unwrap();
        }
        std::thread::sleep(RUN);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (director.join().unwrap(), peer.join().unwrap())
    });
    let total = director.0 + peer.0;
    eprintln!(
        "echo_rate: {:.3} Mframes/s echoed in total over {RUN:?} \
         (director {} / peer {}; director io {:?}; peer io {:?})",
        total as f64 / RUN.as_secs_f64() / 1e6,
        director.0,
        peer.0,
        director.1,
        peer.1
    );
    assert!(total > 0);
}
