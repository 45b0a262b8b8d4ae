//! The director's XDP program, run by the kernel on crafted frames with
//! `BPF_PROG_TEST_RUN` (nothing attached, nothing sent): what it hands to
//! the director and what it leaves to the kernel. Needs root to load a BPF
//! program; skips with a message otherwise (`common/skip.rs`: a failure
//! under `XVS_REQUIRE_ALL=1`). A program that does not load fails.
#![expect(clippy::unwrap_used, reason = "test code")]

#[path = "common/skip.rs"]
mod skip;

use etherparse::{IcmpEchoHeader, Icmpv4Type, PacketBuilder};
use xvs_director::io::xdp::{RedirectFilter, XdpProgram};
use xvs_packet::IpProtocol;

const XDP_PASS: u32 = 2;
const LO: u32 = 1;
const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

const VIP: [u8; 4] = [203, 0, 113, 10];
const VIP_ANY_PORT: [u8; 4] = [203, 0, 113, 20];
const VIP6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0x0f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
const OTHER6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
];
const CLIENT: [u8; 4] = [198, 51, 100, 2];
const RS: [u8; 4] = [192, 0, 2, 11];
const DIRECTOR: [u8; 4] = [192, 0, 2, 1];

fn program() -> Option<XdpProgram> {
    if !skip::can_run("xdp_program", false, &[]) {
        return None;
    }
    let mut p = XdpProgram::load().unwrap();
    p.set_filter(&RedirectFilter {
        services: vec![
            (IpProtocol::Tcp, VIP.into(), 80),
            (IpProtocol::Udp, VIP_ANY_PORT.into(), 0),
            (IpProtocol::Tcp, VIP6.into(), 80),
        ],
        nat_real_servers: vec![(IpProtocol::Tcp, RS.into(), 80)],
        local_addresses: vec![DIRECTOR.into()],
    })
    .unwrap();
    Some(p)
}

/// Runs `frame` through the program: true when it went to the director.
fn to_director(p: &XdpProgram, frame: &[u8]) -> bool {
    let before = p.counters().unwrap();
    // Without a bound socket every frame ends as XDP_PASS: a director that
    // is not running never black-holes anything.
    assert_eq!(p.test_run(frame, LO).unwrap(), XDP_PASS);
    let after = p.counters().unwrap();
    assert_eq!(after.frames, before.frames + 1);
    after.to_director - before.to_director == 1
}

fn tcp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(src, dst, 64)
        .tcp(sport, dport, 1, 1024)
        .syn()
        .write(&mut out, &[])
        .unwrap();
    out
}

fn udp4(dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(CLIENT, dst, 64)
        .udp(40000, dport)
        .write(&mut out, b"hello")
        .unwrap();
    out
}

fn icmp4(src: [u8; 4], dst: [u8; 4], kind: Icmpv4Type) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(src, dst, 64)
        .icmpv4(kind)
        .write(&mut out, &[0; 28])
        .unwrap();
    out
}

fn tcp6(dst: [u8; 16]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(OTHER6, dst, 64)
        .tcp(40000, 80, 1, 1024)
        .syn()
        .write(&mut out, &[])
        .unwrap();
    out
}

/// Puts an 8-byte hop-by-hop options header in front of the transport header.
fn with_hop_by_hop(mut frame: Vec<u8>) -> Vec<u8> {
    let next = frame[14 + 6];
    frame[14 + 6] = 0;
    let payload = u16::from_be_bytes([frame[14 + 4], frame[14 + 5]]) + 8;
    frame[14 + 4..14 + 6].copy_from_slice(&payload.to_be_bytes());
    frame.splice(54..54, [next, 0, 1, 4, 0, 0, 0, 0]);
    frame
}

#[test]
fn service_traffic_goes_to_the_director_and_the_rest_to_the_kernel() {
    let Some(p) = program() else { return };
    let dest_unreachable =
        Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port);
    let echo = Icmpv4Type::EchoRequest(IcmpEchoHeader { id: 1, seq: 1 });

    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("TCP to a service", tcp4(CLIENT, VIP, 40000, 80), true),
        (
            "TCP to a VIP port with no service",
            tcp4(CLIENT, VIP, 40000, 81),
            false,
        ),
        (
            "UDP to a port-0 service, any port",
            udp4(VIP_ANY_PORT, 5353),
            true,
        ),
        ("UDP to a TCP-only VIP", udp4(VIP, 80), false),
        (
            "ping to a VIP: the kernel answers",
            icmp4(CLIENT, VIP, echo.clone()),
            false,
        ),
        (
            "an ICMP error to a VIP",
            icmp4(CLIENT, VIP, dest_unreachable.clone()),
            true,
        ),
        (
            "a NAT reply from a real server",
            tcp4(RS, CLIENT, 80, 40000),
            true,
        ),
        (
            "a health-check reply to the director",
            tcp4(RS, DIRECTOR, 80, 40000),
            false,
        ),
        (
            "a real server's other port",
            tcp4(RS, CLIENT, 22, 40000),
            false,
        ),
        (
            "an ICMP error from a real server to a client",
            icmp4(RS, CLIENT, dest_unreachable),
            true,
        ),
        (
            "a real server's ping to the director",
            icmp4(RS, DIRECTOR, echo),
            false,
        ),
        (
            "unrelated traffic",
            tcp4(CLIENT, [192, 0, 2, 99], 40000, 80),
            false,
        ),
        ("IPv6 TCP to a service", tcp6(VIP6), true),
        (
            "IPv6 with an extension header, to a VIP",
            with_hop_by_hop(tcp6(VIP6)),
            true,
        ),
        (
            "IPv6 with an extension header, elsewhere",
            with_hop_by_hop(tcp6(OTHER6)),
            false,
        ),
    ];
    for (what, frame, expected) in cases {
        assert_eq!(to_director(&p, &frame), expected, "{what}");
    }
}

#[test]
fn odd_frames_are_handled_without_reading_past_the_end() {
    let Some(p) = program() else { return };
    // A VLAN-tagged SYN to the service.
    let mut tagged = tcp4(CLIENT, VIP, 40000, 80);
    tagged.splice(12..12, [0x81, 0x00, 0x00, 0x07]);
    assert!(to_director(&p, &tagged), "802.1Q");
    // A later fragment to the VIP has no ports: the director counts it.
    let mut fragment = tcp4(CLIENT, VIP, 40000, 80);
    fragment[14 + 6..14 + 8].copy_from_slice(&100u16.to_be_bytes());
    assert!(to_director(&p, &fragment), "later fragment");
    // ARP goes to the kernel.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&MAC_A);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    assert!(!to_director(&p, &arp), "ARP");
    // Every truncation of a service frame, and of an IPv6 one, is passed
    // or redirected without a fault; the verifier proved the bounds, this
    // shows the decisions stay sane.
    for frame in [tcp4(CLIENT, VIP, 40000, 80), tcp6(VIP6)] {
        for len in 14..frame.len() {
            let _ = to_director(&p, &frame[..len]);
        }
        let transport = if frame[12] == 0x86 { 54 } else { 34 };
        assert!(!to_director(&p, &frame[..transport + 3]), "ports cut short");
    }
    // An IPv4 header that says it is longer than the frame.
    let mut lying = tcp4(CLIENT, VIP, 40000, 80);
    lying[14] = 0x4f;
    assert!(!to_director(&p, &lying), "IHL beyond the frame");
}

/// The no-socket counter's growth while `frame` runs through the program.
fn no_socket_after(p: &XdpProgram, frame: &[u8]) -> u64 {
    let before = p.counters().unwrap().no_socket;
    let _ = to_director(p, frame);
    p.counters().unwrap().no_socket - before
}

#[test]
fn a_frame_for_the_director_on_a_queue_without_a_socket_is_counted() {
    use std::os::fd::AsRawFd;
    let Some(mut p) = program() else { return };
    let syn = tcp4(CLIENT, VIP, 40000, 80);
    // An interface the director has no socket on at all.
    assert_eq!(no_socket_after(&p, &syn), 1, "unregistered interface");
    // What the kernel gets anyway is not counted.
    let unrelated = tcp4(CLIENT, [192, 0, 2, 99], 40000, 80);
    assert_eq!(no_socket_after(&p, &unrelated), 0, "kernel traffic");
    // An interface the director serves, on a queue it does not: the
    // interface is registered before its socket, and the kernel refuses a
    // descriptor that is not an AF_XDP socket, which leaves lo's queue 0
    // registered and empty — the redirect helper's fallback path.
    let not_a_socket = std::fs::File::open("/dev/null").unwrap();
    assert!(p.insert_socket("lo", 0, not_a_socket.as_raw_fd()).is_err());
    assert_eq!(no_socket_after(&p, &syn), 1, "registered, queue empty");
    assert_eq!(no_socket_after(&p, &unrelated), 0, "kernel traffic");
}
