//! Fixture tests: `{description, input frame, expected verdict, expected
//! output frame}`, run in order through one director so that later frames
//! meet the connections earlier ones opened. Expected frames are built by
//! etherparse (an independent implementation, checksums included) and
//! compared byte for byte.

use etherparse::PacketBuilder;

use super::*;
use crate::config::ClusterConfig;

const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x07];
const CLIENT_IF_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const SERVER_IF_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
const RS1_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x11];
const RS2_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x12];
const RS3_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x13];
const RS6_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x61];
const FALLBACK_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x99];

const CONFIG: &str = r#"
[conn_table]
capacity = 64

[[interfaces]]
name = "client0"
role = "client"
mac = "02:00:00:00:01:01"
addresses = ["198.51.100.1/24", "2001:db8:1::1/64"]

[[interfaces]]
name = "server0"
role = "server"
mac = "02:00:00:00:02:01"
mtu = 1400
addresses = ["192.0.2.1/24", "2001:db8:2::1/64"]

[[services]]
proto = "tcp"
vip = "203.0.113.10"
port = 80
scheduler = "rr"
[[services.real_servers]]
address = "192.0.2.11"
port = 8080
method = "nat"

[[services]]
proto = "udp"
vip = "203.0.113.10"
port = 53
scheduler = "rr"
[[services.real_servers]]
address = "192.0.2.11"
port = 5353
method = "nat"

[[services]]
proto = "tcp"
vip = "203.0.113.20"
port = 80
scheduler = "rr"
[[services.real_servers]]
address = "192.0.2.12"
method = "dr"

[[services]]
proto = "tcp"
vip = "203.0.113.30"
port = 80
scheduler = "rr"
[[services.real_servers]]
address = "192.0.2.13"
method = "tun"

[[services]]
proto = "tcp"
vip = "2001:db8::10"
port = 80
scheduler = "rr"
[[services.real_servers]]
address = "2001:db8:2::11"
port = 8080
method = "nat"

[[services]]
proto = "tcp"
vip = "203.0.113.40"
port = 80
scheduler = "wlc"
fallback = { address = "192.0.2.99", port = 80, method = "nat" }
[[services.real_servers]]
address = "192.0.2.14"
method = "nat"
weight = 0

[[neighbours]]
interface = "client0"
address = "198.51.100.7"
mac = "02:00:00:00:00:07"
[[neighbours]]
interface = "client0"
address = "2001:db8:1::7"
mac = "02:00:00:00:00:07"
[[neighbours]]
interface = "server0"
address = "192.0.2.11"
mac = "02:00:00:00:00:11"
[[neighbours]]
interface = "server0"
address = "192.0.2.12"
mac = "02:00:00:00:00:12"
[[neighbours]]
interface = "server0"
address = "192.0.2.13"
mac = "02:00:00:00:00:13"
[[neighbours]]
interface = "server0"
address = "2001:db8:2::11"
mac = "02:00:00:00:00:61"
[[neighbours]]
interface = "server0"
address = "192.0.2.99"
mac = "02:00:00:00:00:99"
"#;

const CLIENT: IfaceId = IfaceId(0);
const SERVER: IfaceId = IfaceId(1);

fn ip4(s: &str) -> [u8; 4] {
    s.parse::<std::net::Ipv4Addr>().unwrap().octets()
}

fn ip6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

/// A TCP frame over IPv4 or IPv6 (by the addresses' family); flags in
/// tcpdump's letters: S, A, F, R, P.
fn tcp(
    macs: ([u8; 6], [u8; 6]),
    src: &str,
    dst: &str,
    ports: (u16, u16),
    flags: &str,
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(macs.0, macs.1);
    let b = if src.contains(':') {
        eth.ipv6(ip6(src), ip6(dst), ttl)
    } else {
        eth.ipv4(ip4(src), ip4(dst), ttl)
    };
    let mut t = b.tcp(ports.0, ports.1, 1000, 64240);
    for f in flags.chars() {
        t = match f {
            'S' => t.syn(),
            'A' => t.ack(5000),
            'F' => t.fin(),
            'R' => t.rst(),
            'P' => t.psh(),
            _ => panic!("flag {f}"),
        };
    }
    let mut out = Vec::new();
    t.write(&mut out, payload).unwrap();
    out
}

fn udp4(
    macs: ([u8; 6], [u8; 6]),
    src: &str,
    dst: &str,
    ports: (u16, u16),
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(ip4(src), ip4(dst), ttl)
        .udp(ports.0, ports.1)
        .write(&mut out, payload)
        .unwrap();
    out
}

fn icmp4(
    macs: ([u8; 6], [u8; 6]),
    src: &str,
    dst: &str,
    ttl: u8,
    t: (u8, u8, [u8; 4]),
    quoted: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(ip4(src), ip4(dst), ttl)
        .icmpv4_raw(t.0, t.1, t.2)
        .write(&mut out, quoted)
        .unwrap();
    out
}

/// An expected transmission: the interface and the exact frame.
enum Expect {
    Transmit(IfaceId, Vec<u8>),
    Pass,
    Drop(DropReason),
}

struct Fixture {
    description: &'static str,
    rx: IfaceId,
    input: Vec<u8>,
    expect: Expect,
}

fn director() -> (Director, Worker) {
    let config = ClusterConfig::parse("fixtures.toml", CONFIG).unwrap();
    let d = Director::new(&config, 0, 7).unwrap();
    let w = d.worker(1);
    (d, w)
}

/// Fixtures in a receive burst, each in its own buffer.
struct FixtureBurst {
    bufs: Vec<(Vec<u8>, usize, IfaceId)>,
}

impl Burst for FixtureBurst {
    fn len(&self) -> usize {
        self.bufs.len()
    }

    fn frame(&mut self, i: usize) -> RxFrame<'_> {
        let (buf, len, rx) = &mut self.bufs[i];
        RxFrame {
            buf,
            start: HEADROOM,
            len: *len,
            rx: *rx,
        }
    }
}

/// Runs the fixtures twice, on two identical directors: one frame at a
/// time through [`Director::process`], and in bursts of
/// [`BURST_IN_TESTS`] through [`Director::process_burst`]; both must meet
/// every expectation. Returns the first director.
fn run(fixtures: &[Fixture]) -> (Director, Worker) {
    let (d, mut w) = director();
    for (i, f) in fixtures.iter().enumerate() {
        let mut buf = vec![0u8; HEADROOM + f.input.len()];
        buf[HEADROOM..].copy_from_slice(&f.input);
        let out = d.process(
            &mut w,
            &mut buf,
            HEADROOM,
            f.input.len(),
            f.rx,
            1000 + i as u64,
        );
        check(i, f, out.verdict, &buf);
    }
    let (bd, mut bw) = director();
    for (c, chunk) in fixtures.chunks(BURST_IN_TESTS).enumerate() {
        let first = c * BURST_IN_TESTS;
        let mut burst = FixtureBurst {
            bufs: chunk
                .iter()
                .map(|f| {
                    let mut buf = vec![0u8; HEADROOM + f.input.len()];
                    buf[HEADROOM..].copy_from_slice(&f.input);
                    (buf, f.input.len(), f.rx)
                })
                .collect(),
        };
        let mut out = [Outcome::of(Verdict::PassToKernel); MAX_BURST];
        // One clock reading per burst, as a live worker has.
        let n = bd.process_burst(&mut bw, &mut burst, 1000 + first as u64, &mut out);
        assert_eq!(n, chunk.len());
        for (j, f) in chunk.iter().enumerate() {
            check(first + j, f, out[j].verdict, &burst.bufs[j].0);
        }
    }
    assert_eq!(
        w.counters, bw.counters,
        "process and process_burst count alike"
    );
    (d, w)
}

/// Fixtures per burst in [`run`]: small, so that every fixture list spans
/// several bursts and some frames meet connections opened in the same one.
const BURST_IN_TESTS: usize = 4;

fn check(i: usize, f: &Fixture, verdict: Verdict, buf: &[u8]) {
    {
        match (&f.expect, verdict) {
            (
                Expect::Transmit(iface, frame),
                Verdict::Transmit {
                    iface: got,
                    start,
                    len,
                },
            ) => {
                assert_eq!(got, *iface, "#{i} {}: interface", f.description);
                let sent = &buf[start..start + len];
                assert_eq!(
                    sent,
                    &frame[..],
                    "#{i} {}: frame\n got  {sent:02x?}\n want {frame:02x?}",
                    f.description
                );
            }
            (Expect::Pass, Verdict::PassToKernel) => {}
            (Expect::Drop(want), Verdict::Drop(got)) => {
                assert_eq!(got, *want, "#{i} {}", f.description)
            }
            (_, got) => panic!("#{i} {}: unexpected verdict {got:?}", f.description),
        }
    }
}

const C4: &str = "198.51.100.7";
const C6: &str = "2001:db8:1::7";

#[test]
fn nat_tcp_connection_both_ways_and_teardown() {
    let (in_macs, out_macs) = ((CLIENT_MAC, CLIENT_IF_MAC), (SERVER_IF_MAC, RS1_MAC));
    let (rs_in, to_client) = ((RS1_MAC, SERVER_IF_MAC), (CLIENT_IF_MAC, CLIENT_MAC));
    let vip = "203.0.113.10";
    let rs = "192.0.2.11";
    let fixtures = [
        Fixture {
            description: "SYN to the VIP opens a connection: NAT to rs1:8080, TTL 64 -> 63",
            rx: CLIENT,
            input: tcp(in_macs, C4, vip, (40000, 80), "S", 64, b""),
            expect: Expect::Transmit(SERVER, tcp(out_macs, C4, rs, (40000, 8080), "S", 63, b"")),
        },
        Fixture {
            description: "SYN+ACK from rs1 goes back to the client as from the VIP",
            rx: SERVER,
            input: tcp(rs_in, rs, C4, (8080, 40000), "SA", 64, b""),
            expect: Expect::Transmit(CLIENT, tcp(to_client, vip, C4, (80, 40000), "SA", 63, b"")),
        },
        Fixture {
            description: "data from the client follows the connection",
            rx: CLIENT,
            input: tcp(
                in_macs,
                C4,
                vip,
                (40000, 80),
                "PA",
                64,
                b"GET / HTTP/1.1\r\n\r\n",
            ),
            expect: Expect::Transmit(
                SERVER,
                tcp(
                    out_macs,
                    C4,
                    rs,
                    (40000, 8080),
                    "PA",
                    63,
                    b"GET / HTTP/1.1\r\n\r\n",
                ),
            ),
        },
        Fixture {
            description: "FIN from the client",
            rx: CLIENT,
            input: tcp(in_macs, C4, vip, (40000, 80), "FA", 64, b""),
            expect: Expect::Transmit(SERVER, tcp(out_macs, C4, rs, (40000, 8080), "FA", 63, b"")),
        },
        Fixture {
            description: "FIN from rs1",
            rx: SERVER,
            input: tcp(rs_in, rs, C4, (8080, 40000), "FA", 64, b""),
            expect: Expect::Transmit(CLIENT, tcp(to_client, vip, C4, (80, 40000), "FA", 63, b"")),
        },
        Fixture {
            description: "an ACK of another flow with no connection is dropped",
            rx: CLIENT,
            input: tcp(in_macs, C4, vip, (40001, 80), "A", 64, b""),
            expect: Expect::Drop(DropReason::NoConnection),
        },
        Fixture {
            description: "a segment from a real server that is no reply of ours goes to the kernel",
            rx: SERVER,
            input: tcp(rs_in, rs, "192.0.2.1", (80, 50000), "SA", 64, b""),
            expect: Expect::Pass,
        },
    ];
    let (d, w) = run(&fixtures);
    let dest = d.state().services[0].dest_of[0];
    let c = *w.counters.dests.get(dest).unwrap();
    assert_eq!((c.conns, c.packets_in, c.packets_out), (1, 3, 2));
    let state = d.state();
    let servers = state.services[0].sched.servers();
    let rs1 = servers.iter().next().unwrap();
    assert_eq!(
        (rs1.active_conns(), rs1.inactive_conns()),
        (0, 1),
        "after FIN both ways the connection is inactive"
    );
}

#[test]
fn udp_and_an_icmp_error_from_the_real_server() {
    let vip = "203.0.113.10";
    let rs = "192.0.2.11";
    let query = udp4(
        (CLIENT_MAC, CLIENT_IF_MAC),
        C4,
        vip,
        (5000, 53),
        64,
        b"query",
    );
    let forwarded = udp4((SERVER_IF_MAC, RS1_MAC), C4, rs, (5000, 5353), 63, b"query");
    // rs1 answers port unreachable, quoting what it received.
    let unreachable = icmp4(
        (RS1_MAC, SERVER_IF_MAC),
        rs,
        C4,
        64,
        (3, 3, [0; 4]),
        &forwarded[14..],
    );
    // The client must see an error from the VIP about the datagram it sent
    // (the quote as the client sent it, but with the TTL rs1 saw).
    let mut quoted_as_sent = query[14..].to_vec();
    quoted_as_sent[8] = 63;
    let mut q = xvs_packet::ipv4::Packet::new_unchecked(&mut quoted_as_sent[..]);
    q.fill_checksum();
    let to_client = icmp4(
        (CLIENT_IF_MAC, CLIENT_MAC),
        vip,
        C4,
        63,
        (3, 3, [0; 4]),
        &quoted_as_sent,
    );
    let fixtures = [
        Fixture {
            description: "a UDP datagram opens a connection",
            rx: CLIENT,
            input: query,
            expect: Expect::Transmit(SERVER, forwarded),
        },
        Fixture {
            description: "port unreachable from rs1 reaches the client from the VIP, quote rewritten",
            rx: SERVER,
            input: unreachable,
            expect: Expect::Transmit(CLIENT, to_client),
        },
        Fixture {
            description: "an ICMP error about no connection of ours, to someone else, is dropped",
            rx: CLIENT,
            input: icmp4(
                (CLIENT_MAC, CLIENT_IF_MAC),
                C4,
                "203.0.113.10",
                64,
                (3, 3, [0; 4]),
                &udp4(
                    (CLIENT_MAC, CLIENT_IF_MAC),
                    "203.0.113.10",
                    C4,
                    (9, 9),
                    64,
                    b"x",
                )[14..],
            ),
            expect: Expect::Drop(DropReason::IcmpErrorNoConnection),
        },
    ];
    run(&fixtures);
}

#[test]
fn dr_changes_only_macs_and_ttl() {
    let vip = "203.0.113.20";
    let fixtures = [Fixture {
        description: "DR: the IP packet keeps the VIP; MACs to rs2; TTL decremented",
        rx: CLIENT,
        input: tcp(
            (CLIENT_MAC, CLIENT_IF_MAC),
            C4,
            vip,
            (40000, 80),
            "S",
            64,
            b"",
        ),
        expect: Expect::Transmit(
            SERVER,
            tcp((SERVER_IF_MAC, RS2_MAC), C4, vip, (40000, 80), "S", 63, b""),
        ),
    }];
    run(&fixtures);
}

/// `inner` (an Ethernet frame whose IPv4 packet has TTL 63) as TUN sends
/// it to rs3: outer IPv4 from server0's address to rs3, protocol 4, TTL =
/// inner's (63), DF as the inner packet (etherparse sets DF), ident 1 (the
/// first tunnel packet of a fresh worker).
fn ipip_to_rs3(inner: &[u8]) -> Vec<u8> {
    let mut outer = Vec::new();
    let mut h = etherparse::Ipv4Header::new(
        (inner.len() - 14) as u16,
        63,
        etherparse::IpNumber::IPV4,
        ip4("192.0.2.1"),
        ip4("192.0.2.13"),
    )
    .unwrap();
    h.identification = 1;
    h.dont_fragment = true;
    h.header_checksum = h.calc_header_checksum();
    etherparse::Ethernet2Header {
        source: SERVER_IF_MAC,
        destination: RS3_MAC,
        ether_type: etherparse::EtherType::IPV4,
    }
    .write(&mut outer)
    .unwrap();
    h.write(&mut outer).unwrap();
    outer.extend_from_slice(&inner[14..]);
    outer
}

#[test]
fn tun_encapsulates_to_the_real_server() {
    let vip = "203.0.113.30";
    let inner = tcp(
        (CLIENT_MAC, CLIENT_IF_MAC),
        C4,
        vip,
        (40000, 80),
        "S",
        63,
        b"",
    );
    let outer = ipip_to_rs3(&inner);
    let fixtures = [Fixture {
        description: "TUN: IPIP from server0's address to rs3, inner TTL decremented",
        rx: CLIENT,
        input: tcp(
            (CLIENT_MAC, CLIENT_IF_MAC),
            C4,
            vip,
            (40000, 80),
            "S",
            64,
            b"",
        ),
        expect: Expect::Transmit(SERVER, outer),
    }];
    run(&fixtures);
}

#[test]
fn ipv6_nat() {
    let fixtures = [Fixture {
        description: "NAT66: [2001:db8::10]:80 -> [2001:db8:2::11]:8080, hop limit decremented",
        rx: CLIENT,
        input: tcp(
            (CLIENT_MAC, CLIENT_IF_MAC),
            C6,
            "2001:db8::10",
            (40000, 80),
            "S",
            64,
            b"",
        ),
        expect: Expect::Transmit(
            SERVER,
            tcp(
                (SERVER_IF_MAC, RS6_MAC),
                C6,
                "2001:db8:2::11",
                (40000, 8080),
                "S",
                63,
                b"",
            ),
        ),
    }];
    run(&fixtures);
}

#[test]
fn fallback_when_every_real_server_is_quiesced() {
    let fixtures = [Fixture {
        description: "the only real server has weight 0: the fallback gets the connection",
        rx: CLIENT,
        input: tcp(
            (CLIENT_MAC, CLIENT_IF_MAC),
            C4,
            "203.0.113.40",
            (40000, 80),
            "S",
            64,
            b"",
        ),
        expect: Expect::Transmit(
            SERVER,
            tcp(
                (SERVER_IF_MAC, FALLBACK_MAC),
                C4,
                "192.0.2.99",
                (40000, 80),
                "S",
                63,
                b"",
            ),
        ),
    }];
    run(&fixtures);
}

#[test]
fn too_big_with_df_gets_frag_needed_from_the_vip() {
    // server0's MTU is 1400: a 1500-byte DF packet cannot pass.
    let vip = "203.0.113.10";
    let (syn, big) = (
        tcp(
            (CLIENT_MAC, CLIENT_IF_MAC),
            C4,
            vip,
            (40000, 80),
            "S",
            64,
            b"",
        ),
        tcp(
            (CLIENT_MAC, CLIENT_IF_MAC),
            C4,
            vip,
            (40000, 80),
            "PA",
            64,
            &[0x55; 1460],
        ),
    );
    let (d, mut w) = director();
    for (i, frame) in [syn, big.clone()].iter().enumerate() {
        let mut buf = vec![0u8; HEADROOM + 1600];
        buf[HEADROOM..HEADROOM + frame.len()].copy_from_slice(frame);
        let out = d.process(
            &mut w,
            &mut buf,
            HEADROOM,
            frame.len(),
            CLIENT,
            10 + i as u64,
        );
        if i == 0 {
            continue;
        }
        let Verdict::Transmit { iface, start, len } = out.verdict else {
            panic!("expected an ICMP reply, got {:?}", out.verdict);
        };
        assert_eq!(iface, CLIENT);
        let reply = &buf[start..start + len];
        let quote_len = 576 - 28;
        let expected = {
            let mut out = Vec::new();
            // The kernel's ICMP uses internetwork-control precedence, no DF.
            let mut h =
                etherparse::Ipv4Header::new(0, 64, etherparse::IpNumber::ICMP, ip4(vip), ip4(C4))
                    .unwrap();
            h.dscp = etherparse::IpDscp::try_new(0x30).unwrap();
            h.dont_fragment = false;
            let b = PacketBuilder::ethernet2(CLIENT_IF_MAC, CLIENT_MAC)
                .ip(etherparse::IpHeaders::Ipv4(h, Default::default()));
            b.icmpv4_raw(3, 4, [0, 0, 0x05, 0x78])
                .write(&mut out, &big[14..14 + quote_len])
                .unwrap();
            out
        };
        assert_eq!(reply, &expected[..]);
    }
    assert_eq!(w.counters.too_big_sent, 1);
}

#[test]
fn malformed_and_foreign_frames() {
    let vip = "203.0.113.10";
    let good = tcp(
        (CLIENT_MAC, CLIENT_IF_MAC),
        C4,
        vip,
        (40000, 80),
        "S",
        64,
        b"",
    );
    let mut bad_sum = good.clone();
    bad_sum[24] ^= 0xff;
    let mut ihl4 = good.clone();
    ihl4[14] = 0x44;
    let truncated_tcp = good[..14 + 20 + 10].to_vec();
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    let fixtures = [
        Fixture {
            description: "bad IPv4 header checksum",
            rx: CLIENT,
            input: bad_sum,
            expect: Expect::Drop(DropReason::Ipv4BadChecksum),
        },
        Fixture {
            description: "IHL below 5",
            rx: CLIENT,
            input: ihl4,
            expect: Expect::Drop(DropReason::Ipv4BadHeaderLen),
        },
        Fixture {
            description: "frame cut inside the TCP header",
            rx: CLIENT,
            input: truncated_tcp,
            expect: Expect::Drop(DropReason::Ipv4BadTotalLen),
        },
        Fixture {
            description: "a runt frame",
            rx: CLIENT,
            input: vec![0; 10],
            expect: Expect::Drop(DropReason::EthernetTruncated),
        },
        Fixture {
            description: "ARP goes to the kernel",
            rx: CLIENT,
            input: arp,
            expect: Expect::Pass,
        },
        Fixture {
            description: "traffic to the director's own address goes to the kernel",
            rx: CLIENT,
            input: tcp(
                (CLIENT_MAC, CLIENT_IF_MAC),
                C4,
                "198.51.100.1",
                (40000, 22),
                "S",
                64,
                b"",
            ),
            expect: Expect::Pass,
        },
        Fixture {
            description: "ICMP echo to the VIP is the director's own to answer",
            rx: CLIENT,
            input: {
                let mut out = Vec::new();
                PacketBuilder::ethernet2(CLIENT_MAC, CLIENT_IF_MAC)
                    .ipv4(ip4(C4), ip4(vip), 64)
                    .icmpv4_echo_request(1, 1)
                    .write(&mut out, b"ping")
                    .unwrap();
                out
            },
            expect: Expect::Pass,
        },
        Fixture {
            description: "a TTL of 1 cannot be forwarded",
            rx: CLIENT,
            input: tcp(
                (CLIENT_MAC, CLIENT_IF_MAC),
                C4,
                vip,
                (40009, 80),
                "S",
                1,
                b"",
            ),
            expect: Expect::Drop(DropReason::TtlExpired),
        },
    ];
    let (_, w) = run(&fixtures);
    assert_eq!(w.counters.dropped(DropReason::Ipv4BadChecksum), 1);
    assert_eq!(w.counters.passed, 3);
}

#[test]
fn full_table_forwards_dr_statelessly_and_refuses_nat() {
    let config = ClusterConfig::parse(
        "fixtures.toml",
        &CONFIG.replace("capacity = 64", "capacity = 1"),
    )
    .unwrap();
    let d = Director::new(&config, 0, 7).unwrap();
    let mut w = d.worker(1);
    let mut send = |frame: Vec<u8>| {
        let mut buf = vec![0u8; HEADROOM + frame.len()];
        buf[HEADROOM..].copy_from_slice(&frame);
        d.process(&mut w, &mut buf, HEADROOM, frame.len(), CLIENT, 5)
            .verdict
    };
    let dr_vip = "203.0.113.20";
    let first = send(tcp(
        (CLIENT_MAC, CLIENT_IF_MAC),
        C4,
        dr_vip,
        (40000, 80),
        "S",
        64,
        b"",
    ));
    assert!(matches!(first, Verdict::Transmit { .. }));
    // The table holds one connection: the next DR flow is forwarded without
    // an entry, and so is its next segment.
    let second = send(tcp(
        (CLIENT_MAC, CLIENT_IF_MAC),
        C4,
        dr_vip,
        (40001, 80),
        "S",
        64,
        b"",
    ));
    let third = send(tcp(
        (CLIENT_MAC, CLIENT_IF_MAC),
        C4,
        dr_vip,
        (40001, 80),
        "A",
        64,
        b"",
    ));
    assert!(matches!(second, Verdict::Transmit { .. }));
    assert!(matches!(third, Verdict::Transmit { .. }));
    // A NAT flow cannot do without its entry.
    let nat = send(tcp(
        (CLIENT_MAC, CLIENT_IF_MAC),
        C4,
        "203.0.113.10",
        (40002, 80),
        "S",
        64,
        b"",
    ));
    assert_eq!(nat, Verdict::Drop(DropReason::ConnTableFull));
    assert_eq!(w.counters.stateless, 2);
    assert_eq!(d.table().len(), 1);
    let state = d.state();
    let rs2 = state.services[2].sched.servers().iter().next().unwrap();
    assert_eq!(
        rs2.active_conns() + rs2.inactive_conns(),
        1,
        "the stateless flow is not counted on the server"
    );
    let rs1 = state.services[0].sched.servers().iter().next().unwrap();
    assert_eq!(
        rs1.active_conns() + rs1.inactive_conns(),
        0,
        "the refused NAT flow was unbound"
    );
}

#[test]
fn expired_connections_release_their_real_server() {
    let (d, mut w) = director();
    let frame = tcp(
        (CLIENT_MAC, CLIENT_IF_MAC),
        C4,
        "203.0.113.10",
        (40000, 80),
        "S",
        64,
        b"",
    );
    let mut buf = vec![0u8; HEADROOM + frame.len()];
    buf[HEADROOM..].copy_from_slice(&frame);
    d.process(&mut w, &mut buf, HEADROOM, frame.len(), CLIENT, 0);
    let state = d.state();
    let servers = state.services[0].sched.servers();
    assert_eq!(
        servers.iter().next().unwrap().active_conns(),
        1,
        "SYN_RECV counts as active"
    );
    // SYN_RECV times out after 60 s.
    assert_eq!(d.housekeeping(59_000, 1024), 0);
    assert_eq!(d.housekeeping(61_000, 1024), 1);
    assert_eq!(d.table().len(), 0);
    let rs1 = servers.iter().next().unwrap();
    assert_eq!((rs1.active_conns(), rs1.inactive_conns()), (0, 0));
}

/// Runs one frame through `d`; the verdict and the frame as it left.
fn once(d: &Director, w: &mut Worker, input: &[u8], rx: IfaceId, now: u64) -> (Verdict, Vec<u8>) {
    let mut buf = vec![0u8; HEADROOM + input.len()];
    buf[HEADROOM..].copy_from_slice(input);
    let out = d.process(w, &mut buf, HEADROOM, input.len(), rx, now);
    let sent = match out.verdict {
        Verdict::Transmit { start, len, .. } => buf[start..start + len].to_vec(),
        _ => Vec::new(),
    };
    (out.verdict, sent)
}

#[test]
fn an_unknown_next_hop_is_dropped_and_resolved_then_the_same_packet_goes() {
    let (d, mut w) = director();
    let rs2: IpAddr = "192.0.2.12".parse().unwrap();
    let forgotten = NeighbourChange::Forgotten {
        iface: SERVER,
        ip: rs2,
    };
    assert_eq!(d.neighbours().apply([forgotten]), 1);
    let vip = "203.0.113.20";
    let syn = tcp(
        (CLIENT_MAC, CLIENT_IF_MAC),
        C4,
        vip,
        (40001, 80),
        "S",
        64,
        b"",
    );
    let (verdict, _) = once(&d, &mut w, &syn, CLIENT, 1000);
    assert_eq!(verdict, Verdict::Drop(DropReason::NeighbourUnresolved));
    assert_eq!(w.counters.dropped(DropReason::NeighbourUnresolved), 1);
    assert_eq!(d.neighbours().next_request(), Some((SERVER, rs2)));
    // The client retransmits at once: still unresolved, asked only once.
    let (verdict, _) = once(&d, &mut w, &syn, CLIENT, 1001);
    assert_eq!(verdict, Verdict::Drop(DropReason::NeighbourUnresolved));
    assert_eq!(d.neighbours().next_request(), None);
    // A second later it asks again.
    let (verdict, _) = once(&d, &mut w, &syn, CLIENT, 2001);
    assert_eq!(verdict, Verdict::Drop(DropReason::NeighbourUnresolved));
    assert_eq!(d.neighbours().next_request(), Some((SERVER, rs2)));
    // The kernel answered: the same SYN now leaves for rs2.
    d.neighbours().apply([NeighbourChange::Learned {
        iface: SERVER,
        ip: rs2,
        mac: MacAddr(RS2_MAC),
    }]);
    let (verdict, sent) = once(&d, &mut w, &syn, CLIENT, 2002);
    assert!(
        matches!(verdict, Verdict::Transmit { iface: SERVER, .. }),
        "{verdict:?}"
    );
    let want = tcp((SERVER_IF_MAC, RS2_MAC), C4, vip, (40001, 80), "S", 63, b"");
    assert_eq!(sent, want);
}

/// Workers remember each real server's next-hop MAC between packets; a
/// changed or forgotten neighbour must reach the very next packet.
#[test]
fn a_real_servers_new_mac_reaches_the_next_packet_of_its_connection() {
    let (d, mut w) = director();
    // A NAT service: the frame that leaves names its real server.
    let vip = "203.0.113.10";
    let segment = |flags: &str| {
        tcp(
            (CLIENT_MAC, CLIENT_IF_MAC),
            C4,
            vip,
            (40003, 80),
            flags,
            64,
            b"",
        )
    };
    let (verdict, sent) = once(&d, &mut w, &segment("S"), CLIENT, 1000);
    assert!(matches!(verdict, Verdict::Transmit { .. }), "{verdict:?}");
    let server = IpAddr::from([sent[30], sent[31], sent[32], sent[33]]);
    let (_, sent) = once(&d, &mut w, &segment("A"), CLIENT, 1001);
    let old_mac: [u8; 6] = sent[..6].try_into().unwrap();
    let new_mac = [2, 0, 0, 0, 9, 9];
    assert_ne!(old_mac, new_mac);
    d.neighbours().apply([NeighbourChange::Learned {
        iface: SERVER,
        ip: server,
        mac: MacAddr(new_mac),
    }]);
    let (verdict, sent) = once(&d, &mut w, &segment("A"), CLIENT, 1002);
    assert!(matches!(verdict, Verdict::Transmit { .. }), "{verdict:?}");
    assert_eq!(sent[..6], new_mac, "the new MAC, at once");
    d.neighbours().apply([NeighbourChange::Forgotten {
        iface: SERVER,
        ip: server,
    }]);
    let (verdict, _) = once(&d, &mut w, &segment("A"), CLIENT, 1003);
    assert_eq!(verdict, Verdict::Drop(DropReason::NeighbourUnresolved));
}

#[test]
fn a_nat_reply_to_an_unknown_client_asks_for_the_client() {
    let (d, mut w) = director();
    let client: IpAddr = "198.51.100.8".parse().unwrap();
    let vip = "203.0.113.10";
    let syn = tcp(
        ([2, 0, 0, 0, 0, 8], CLIENT_IF_MAC),
        "198.51.100.8",
        vip,
        (40002, 80),
        "S",
        64,
        b"",
    );
    let (verdict, _) = once(&d, &mut w, &syn, CLIENT, 1000);
    assert!(
        matches!(verdict, Verdict::Transmit { iface: SERVER, .. }),
        "{verdict:?}"
    );
    let synack = tcp(
        (RS1_MAC, SERVER_IF_MAC),
        "192.0.2.11",
        "198.51.100.8",
        (8080, 40002),
        "SA",
        64,
        b"",
    );
    let (verdict, _) = once(&d, &mut w, &synack, SERVER, 1001);
    assert_eq!(verdict, Verdict::Drop(DropReason::NeighbourUnresolved));
    assert_eq!(d.neighbours().next_request(), Some((CLIENT, client)));
    d.neighbours().apply([NeighbourChange::Learned {
        iface: CLIENT,
        ip: client,
        mac: MacAddr([2, 0, 0, 0, 0, 8]),
    }]);
    let (verdict, sent) = once(&d, &mut w, &synack, SERVER, 1002);
    assert!(
        matches!(verdict, Verdict::Transmit { iface: CLIENT, .. }),
        "{verdict:?}"
    );
    let want = tcp(
        (CLIENT_IF_MAC, [2, 0, 0, 0, 0, 8]),
        vip,
        "198.51.100.8",
        (80, 40002),
        "SA",
        63,
        b"",
    );
    assert_eq!(sent, want);
}

/// The director and the control plane's table for the fixture config,
/// sharing one state (as the live director has them).
fn director_with_table() -> (Director, Worker, crate::control::table::ServiceTable) {
    let config = ClusterConfig::parse("fixtures.toml", CONFIG).unwrap();
    let table = crate::control::table::ServiceTable::from_config(&config, 0).unwrap();
    let d = Director::with_snapshot(table.snapshot(), &config, 7, Arc::new(Neighbours::new()));
    let w = d.worker(1);
    (d, w, table)
}

fn rs2_params(weight: u32) -> crate::control::proto::ServerParams {
    crate::control::proto::ServerParams {
        addr: "192.0.2.12".parse().unwrap(),
        port: 8080,
        method: crate::control::proto::ForwardMethod::Nat,
        weight,
        u_threshold: 0,
        l_threshold: 0,
    }
}

fn web_service() -> crate::control::proto::ServiceId {
    crate::control::proto::ServiceId {
        proto: crate::control::proto::Protocol::Tcp,
        vip: "203.0.113.10".parse().unwrap(),
        port: 80,
    }
}

/// The real server a frame was sent to (its destination MAC), if sent.
fn sent_to(v: Verdict, out: &[u8]) -> Option<[u8; 6]> {
    matches!(v, Verdict::Transmit { .. }).then(|| out[..6].try_into().unwrap())
}

#[test]
fn published_changes_reach_new_connections_and_spare_established_ones() {
    let (d, mut w, mut table) = director_with_table();
    let syn = |port: u16| {
        tcp(
            (CLIENT_MAC, CLIENT_IF_MAC),
            C4,
            "203.0.113.10",
            (port, 80),
            "S",
            64,
            b"",
        )
    };
    let ack = |port: u16| {
        tcp(
            (CLIENT_MAC, CLIENT_IF_MAC),
            C4,
            "203.0.113.10",
            (port, 80),
            "A",
            64,
            b"x",
        )
    };
    // One connection to rs1 before the change.
    let (v, out) = once(&d, &mut w, &syn(41000), CLIENT, 10);
    assert_eq!(sent_to(v, &out), Some(RS1_MAC));
    let dests_before = d.state().dests.len();

    // Add rs2 (rr: new connections alternate), publish.
    table.add_server(web_service(), &rs2_params(1)).unwrap();
    d.publish(table.snapshot());
    let mut seen = std::collections::HashSet::new();
    for port in 41001..41005 {
        let (v, out) = once(&d, &mut w, &syn(port), CLIENT, 20);
        seen.insert(sent_to(v, &out).expect("scheduled"));
    }
    assert_eq!(seen, [RS1_MAC, RS2_MAC].into_iter().collect());
    assert_eq!(d.state().dests.len(), dests_before + 1);
    // The worker's counters span every number from the start.
    assert_eq!(
        w.counters.dests.len(),
        DEFAULT_MAX_DESTINATIONS as usize,
        "counters by destination, fixed at start"
    );

    // Delete rs1: the established connection keeps going to it, new ones
    // all go to rs2.
    table
        .delete_server(web_service(), "192.0.2.11".parse().unwrap(), 8080)
        .unwrap();
    d.publish(table.snapshot());
    let (v, out) = once(&d, &mut w, &ack(41000), CLIENT, 30);
    assert_eq!(
        sent_to(v, &out),
        Some(RS1_MAC),
        "established connections drain"
    );
    for port in 42000..42004 {
        let (v, out) = once(&d, &mut w, &syn(port), CLIENT, 40);
        assert_eq!(sent_to(v, &out), Some(RS2_MAC));
    }

    // Re-adding rs1 revives its destination number and counters.
    let rs1 = crate::control::proto::ServerParams {
        addr: "192.0.2.11".parse().unwrap(),
        weight: 1,
        ..rs2_params(1)
    };
    let before = d.state().services[0].dest_of[0];
    table.add_server(web_service(), &rs1).unwrap();
    d.publish(table.snapshot());
    assert_eq!(d.state().services[0].dest_of[0], before);
    assert!(d.state().dests.get(before).unwrap().available);
    assert_eq!(d.state().dests.len(), dests_before + 1, "no new number");

    // With expire_nodest_conn, a deleted server's connections end at
    // their next packet.
    table
        .delete_server(web_service(), "192.0.2.11".parse().unwrap(), 8080)
        .unwrap();
    table.set_expire_nodest_conn(true);
    d.publish(table.snapshot());
    let (v, _) = once(&d, &mut w, &ack(41000), CLIENT, 50);
    assert_eq!(v, Verdict::Drop(DropReason::DestDeleted));
    let state = d.state();
    let rs1_now = state.services[0]
        .sched
        .servers()
        .get(xvs_sched::RealServerId(0))
        .unwrap();
    assert_eq!(
        rs1_now.active_conns() + rs1_now.inactive_conns(),
        2,
        "the expired connection released rs1 (two SYN_RECV ones remain)"
    );
}

#[test]
fn a_deleted_service_stops_scheduling_and_comes_back_with_its_numbers() {
    let (d, mut w, mut table) = director_with_table();
    let syn = tcp(
        (CLIENT_MAC, CLIENT_IF_MAC),
        C4,
        "203.0.113.10",
        (43000, 80),
        "S",
        64,
        b"",
    );
    table.delete_service(web_service()).unwrap();
    d.publish(table.snapshot());
    let (v, _) = once(&d, &mut w, &syn, CLIENT, 10);
    assert_eq!(v, Verdict::PassToKernel, "no service: the kernel's");
    let err = table.delete_service(web_service()).unwrap_err();
    assert_eq!(err.kind, crate::control::proto::ErrorKind::NoSuchService);
    let params = d.state().services[0].params.clone();
    table.add_service(&params, 20).unwrap();
    let rs1 = crate::control::proto::ServerParams {
        addr: "192.0.2.11".parse().unwrap(),
        ..rs2_params(1)
    };
    table.add_server(web_service(), &rs1).unwrap();
    d.publish(table.snapshot());
    let (v, out) = once(&d, &mut w, &syn, CLIENT, 30);
    assert_eq!(sent_to(v, &out), Some(RS1_MAC));
    assert_eq!(d.state().services.len(), 6, "the slot was revived");
}

#[derive(Debug, Default)]
struct Recorded(parking_lot::Mutex<Vec<(DestIndex, bool)>>);

impl PassiveSink for Recorded {
    fn report(&self, dest: DestIndex, failed: bool) {
        self.0.lock().push((dest, failed));
    }
}

#[test]
fn a_nat_server_s_answer_to_a_syn_is_a_passive_health_report() {
    let (d, mut w) = director();
    let sink = Arc::new(Recorded::default());
    d.set_passive_sink(Arc::clone(&sink) as Arc<dyn PassiveSink>);
    let syn = |port| {
        tcp(
            (CLIENT_MAC, CLIENT_IF_MAC),
            C4,
            "203.0.113.10",
            (port, 80),
            "S",
            64,
            b"",
        )
    };
    let answer = |port, flags| {
        tcp(
            (RS1_MAC, SERVER_IF_MAC),
            "192.0.2.11",
            C4,
            (8080, port),
            flags,
            64,
            b"",
        )
    };
    let dest = d.state().services[0].dest_of[0];
    // Refused twice: both reported.
    for port in [45000, 45001] {
        once(&d, &mut w, &syn(port), CLIENT, 10);
        once(&d, &mut w, &answer(port, "RA"), SERVER, 11);
    }
    // Accepted twice: reported once (the change), then silence.
    for port in [45002, 45003] {
        once(&d, &mut w, &syn(port), CLIENT, 20);
        once(&d, &mut w, &answer(port, "SA"), SERVER, 21);
    }
    // A later segment of an established connection is no report.
    once(&d, &mut w, &answer(45002, "A"), SERVER, 30);
    assert_eq!(
        *sink.0.lock(),
        vec![(dest, true), (dest, true), (dest, false)]
    );
}

#[test]
fn a_syn_on_a_closed_dr_connection_is_a_new_connection() {
    let (d, mut w) = director();
    let seg = |flags| {
        tcp(
            (CLIENT_MAC, CLIENT_IF_MAC),
            C4,
            "203.0.113.20",
            (46000, 80),
            flags,
            64,
            b"",
        )
    };
    // A DR connection opened, then closed by the client (FIN, ACK): the
    // director, seeing only the client's side, leaves it in FIN_WAIT.
    for flags in ["S", "A", "FA", "A"] {
        once(&d, &mut w, &seg(flags), CLIENT, 10);
    }
    let dest = d.state().services[2].dest_of[0];
    assert_eq!(w.counters.dests.get(dest).unwrap().conns, 1);
    // The client reuses the port: a new connection, scheduled and counted.
    let (v, _) = once(&d, &mut w, &seg("S"), CLIENT, 20);
    assert!(matches!(v, Verdict::Transmit { .. }));
    assert_eq!(w.counters.dests.get(dest).unwrap().conns, 2);
}

/// A receive burst that runs `hook` when the pipeline first asks for a
/// frame: after the worker took its snapshot for the burst, before it
/// decides any frame. What the hook publishes is newer than the burst's
/// snapshot.
struct HookBurst<'h> {
    frames: FixtureBurst,
    hook: Option<Box<dyn FnOnce() + 'h>>,
}

impl Burst for HookBurst<'_> {
    fn len(&self) -> usize {
        self.frames.len()
    }

    fn frame(&mut self, i: usize) -> RxFrame<'_> {
        if let Some(hook) = self.hook.take() {
            hook();
        }
        self.frames.frame(i)
    }
}

fn burst_of(frames: &[(&[u8], IfaceId)]) -> FixtureBurst {
    FixtureBurst {
        bufs: frames
            .iter()
            .map(|(f, rx)| {
                let mut buf = vec![0u8; HEADROOM + f.len()];
                buf[HEADROOM..].copy_from_slice(f);
                (buf, f.len(), *rx)
            })
            .collect(),
    }
}

/// A case of the test below: what it shows, the segments worker A sends,
/// the frame worker B meets, the interfaces it arrives on and leaves by,
/// and the MAC it must be sent to.
type StaleCase<'a> = (&'a str, &'a [&'a str], &'a [u8], IfaceId, IfaceId, [u8; 6]);

/// The interleaving of issue 14: worker B takes its snapshot for a burst;
/// the control plane publishes a new real server (a new destination
/// number); worker A opens a connection to it; B, still on the older
/// snapshot, meets a packet of that connection. Each packet kind reaches
/// the destination number by another path (reply counters, inbound
/// forwarding, a state change that moves the server's active count).
#[test]
fn a_worker_on_an_older_snapshot_follows_connections_to_newer_destinations() {
    let port = 44000;
    let client_seg = |flags| {
        tcp(
            (CLIENT_MAC, CLIENT_IF_MAC),
            C4,
            "203.0.113.10",
            (port, 80),
            flags,
            64,
            b"x",
        )
    };
    let syn_ack = tcp(
        (RS2_MAC, SERVER_IF_MAC),
        "192.0.2.12",
        C4,
        (8080, port),
        "SA",
        64,
        b"",
    );
    let ack = client_seg("A");
    let rst = client_seg("R");
    // What A sends on the new snapshot, then what B meets on the old one.
    let cases: &[StaleCase<'_>] = &[
        (
            "the server's SYN-ACK",
            &["S"],
            &syn_ack,
            SERVER,
            CLIENT,
            CLIENT_MAC,
        ),
        ("the client's ACK", &["S"], &ack, CLIENT, SERVER, RS2_MAC),
        // Established, then reset: the server's active count must drop.
        (
            "the client's RST",
            &["S", "A"],
            &rst,
            CLIENT,
            SERVER,
            RS2_MAC,
        ),
    ];
    for &(what, a_sends, frame, rx, tx, mac) in cases {
        let (d, mut a, mut table) = director_with_table();
        let mut b = d.worker(2);
        let dests_before = d.state().dests.len();
        let mut burst = HookBurst {
            frames: burst_of(&[(frame, rx)]),
            hook: Some(Box::new(|| {
                // rs1 goes, rs2 comes: A's SYN can only go to rs2, under a
                // destination number B's snapshot does not have.
                table
                    .delete_server(web_service(), "192.0.2.11".parse().unwrap(), 8080)
                    .unwrap();
                table.add_server(web_service(), &rs2_params(1)).unwrap();
                d.publish(table.snapshot());
                for flags in a_sends {
                    let (v, out) = once(&d, &mut a, &client_seg(flags), CLIENT, 10);
                    assert_eq!(sent_to(v, &out), Some(RS2_MAC), "{what}: A's {flags}");
                }
            })),
        };
        let mut out = [Outcome::of(Verdict::PassToKernel); 1];
        assert_eq!(d.process_burst(&mut b, &mut burst, 20, &mut out), 1);
        let new_dest = d.state().dests.len() - 1;
        assert_eq!(new_dest, dests_before, "{what}: rs2 got a new number");
        match out[0].verdict {
            Verdict::Transmit { iface, start, .. } => {
                assert_eq!(iface, tx, "{what}");
                assert_eq!(burst.frames.bufs[0].0[start..start + 6], mac, "{what}");
            }
            v => panic!("{what}: {v:?}"),
        }
        assert_eq!(out[0].dest, Some(new_dest as DestIndex), "{what}");
        let counted: u64 = b
            .counters
            .dests
            .iter()
            .enumerate()
            .map(|(i, c)| {
                assert!(i == new_dest || c.packets_in + c.packets_out == 0);
                c.packets_in + c.packets_out
            })
            .sum();
        assert_eq!(counted, 1, "{what}: B counted the packet for rs2");
        // The server's active/inactive counts followed the connection, B's
        // packet included: once the entry expires, both are back to 0.
        d.housekeeping(10_000_000, 1024);
        assert_eq!(d.table().len(), 0);
        let state = d.state();
        let rs2 = state.services[0]
            .sched
            .servers()
            .iter()
            .find(|s| s.addr() == "192.0.2.12".parse::<IpAddr>().unwrap())
            .unwrap();
        assert_eq!(
            (rs2.active_conns(), rs2.inactive_conns()),
            (0, 0),
            "{what}: rs2's counts"
        );
    }
}

/// What the test below asks of a worker thread.
enum Job {
    /// Open these client ports' connections (one SYN each) to `server`.
    Open { ports: Vec<u16>, server: [u8; 6] },
    /// Process `frames` in one burst, on the snapshot held when the burst
    /// starts: tell the main thread once it is taken (`taken`) and wait
    /// for `go` before deciding any frame. Every frame must be transmitted
    /// to the MAC given with it.
    Stale {
        frames: Vec<(Vec<u8>, IfaceId, [u8; 6])>,
        taken: std::sync::mpsc::Sender<()>,
        go: std::sync::mpsc::Receiver<()>,
    },
}

/// Two worker threads, the main thread publishing a new real server (a
/// new destination number) every round while one worker holds an older
/// snapshot for a burst: the other opens connections to the new server,
/// then the first meets them — the server's SYN-ACKs, the clients' ACKs
/// and RSTs — next to established connections of the round before. The
/// roles alternate. Every packet must go where its connection goes, no
/// worker may fail, and the real servers' counts and the per-destination
/// counters must add up.
#[test]
fn two_workers_follow_each_others_connections_while_servers_are_added() {
    use std::sync::mpsc::{Receiver, Sender, channel};
    use std::time::Duration;

    // 48 connections: the fixture table holds 64.
    const ROUNDS: u16 = 6;
    const FLOWS: u16 = 8;
    const WAIT: Duration = Duration::from_secs(20);
    let (d, _, mut table) = director_with_table();
    let server_mac = |r: u16| [2, 0, 0, 0, 0x20, r as u8];
    let server_addr = |r: u16| format!("192.0.2.{}", 100 + r);
    let port_of = |r: u16, k: u16| 45000 + r * FLOWS + k;
    let client = |port: u16, flags: &str| {
        tcp(
            (CLIENT_MAC, CLIENT_IF_MAC),
            C4,
            "203.0.113.10",
            (port, 80),
            flags,
            64,
            b"x",
        )
    };

    let run_worker = |mut w: Worker, jobs: Receiver<Job>, done: Sender<()>| {
        let mut now = 1_000;
        while let Ok(job) = jobs.recv() {
            now += 1;
            match job {
                Job::Open { ports, server } => {
                    for port in ports {
                        let (v, out) = once(&d, &mut w, &client(port, "S"), CLIENT, now);
                        assert_eq!(
                            sent_to(v, &out),
                            Some(server),
                            "SYN from port {port}: {v:?}"
                        );
                    }
                }
                Job::Stale { frames, taken, go } => {
                    let mut burst = HookBurst {
                        frames: burst_of(
                            &frames
                                .iter()
                                .map(|(f, rx, _)| (&f[..], *rx))
                                .collect::<Vec<_>>(),
                        ),
                        hook: Some(Box::new(move || {
                            taken.send(()).unwrap();
                            go.recv_timeout(WAIT).unwrap();
                        })),
                    };
                    let mut out = [Outcome::of(Verdict::PassToKernel); MAX_BURST];
                    let n = d.process_burst(&mut w, &mut burst, now, &mut out);
                    assert_eq!(n, frames.len());
                    for (i, (_, _, mac)) in frames.iter().enumerate() {
                        let Verdict::Transmit { start, .. } = out[i].verdict else {
                            panic!("stale burst frame {i}: {:?}", out[i].verdict);
                        };
                        assert_eq!(burst.frames.bufs[i].0[start..start + 6], *mac, "frame {i}");
                    }
                }
            }
            done.send(()).unwrap();
        }
        w.counters
    };

    let counters = std::thread::scope(|s| {
        let mut jobs = Vec::new();
        let mut done = Vec::new();
        let mut threads = Vec::new();
        for seed in [11, 12] {
            let (job_tx, job_rx) = channel();
            let (done_tx, done_rx) = channel();
            let w = d.worker(seed);
            let run = &run_worker;
            threads.push(s.spawn(move || run(w, job_rx, done_tx)));
            jobs.push(job_tx);
            done.push(done_rx);
        }
        let mut previous = ("192.0.2.11".to_string(), RS1_MAC);
        for r in 0..ROUNDS {
            let (stale, fresh) = ((r % 2) as usize, (1 - r % 2) as usize);
            let (addr, mac) = (server_addr(r), server_mac(r));
            let mut frames = Vec::new();
            for k in 0..FLOWS {
                let port = port_of(r, k);
                let reply = tcp((mac, SERVER_IF_MAC), &addr, C4, (8080, port), "SA", 64, b"");
                frames.push((reply, SERVER, CLIENT_MAC));
                frames.push((client(port, "A"), CLIENT, mac));
                if k % 2 == 0 {
                    frames.push((client(port, "R"), CLIENT, mac));
                }
                if r > 0 && k % 2 == 1 {
                    // Established, to the server deleted this round.
                    frames.push((client(port_of(r - 1, k), "A"), CLIENT, previous.1));
                }
            }
            let (taken_tx, taken_rx) = channel();
            let (go_tx, go_rx) = channel();
            jobs[stale]
                .send(Job::Stale {
                    frames,
                    taken: taken_tx,
                    go: go_rx,
                })
                .unwrap();
            taken_rx
                .recv_timeout(WAIT)
                .expect("the stale worker started");
            // The new server replaces the previous one: every new
            // connection goes to it, under a new destination number.
            let new = crate::control::proto::ServerParams {
                addr: addr.parse().unwrap(),
                ..rs2_params(1)
            };
            d.neighbours().apply([NeighbourChange::Learned {
                iface: SERVER,
                ip: new.addr,
                mac: MacAddr(mac),
            }]);
            table.add_server(web_service(), &new).unwrap();
            table
                .delete_server(web_service(), previous.0.parse().unwrap(), 8080)
                .unwrap();
            d.publish(table.snapshot());
            jobs[fresh]
                .send(Job::Open {
                    ports: (0..FLOWS).map(|k| port_of(r, k)).collect(),
                    server: mac,
                })
                .unwrap();
            done[fresh]
                .recv_timeout(WAIT)
                .expect("the fresh worker opened its connections");
            go_tx.send(()).unwrap();
            done[stale]
                .recv_timeout(WAIT)
                .expect("the stale worker decided its burst");
            previous = (addr, mac);
        }
        drop(jobs);
        threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect::<Vec<_>>()
    });

    let (rounds, flows) = (u64::from(ROUNDS), u64::from(FLOWS));
    let drops: u64 = counters.iter().flat_map(|c| c.drops.iter()).sum();
    assert_eq!(drops, 0);
    let total = |f: fn(&TrafficCounters) -> u64| -> u64 {
        counters.iter().flat_map(|c| c.dests.iter()).map(f).sum()
    };
    assert_eq!(total(|c| c.conns), rounds * flows);
    assert_eq!(total(|c| c.packets_out), rounds * flows, "SYN-ACKs");
    assert_eq!(
        total(|c| c.packets_in),
        rounds * (2 * flows + flows / 2) + (rounds - 1) * flows / 2,
        "SYNs, ACKs, RSTs and ACKs of the round before"
    );
    d.housekeeping(10_000_000, 1 << 16);
    assert_eq!(d.table().len(), 0);
    let state = d.state();
    for s in state.services[0].sched.servers().iter() {
        assert_eq!(
            (s.active_conns(), s.inactive_conns()),
            (0, 0),
            "{}: every connection released",
            s.addr()
        );
    }
}

/// `frame` as a local stack with transmit checksum offload hands it to a
/// veth: the TCP/UDP checksum field holds only the folded pseudo-header sum
/// (addresses, protocol, transport length), not complemented. Written out
/// here from RFC 793/8200, not through the packet crate.
fn with_partial_checksum(frame: &[u8]) -> Vec<u8> {
    let v6 = frame[12..14] == [0x86, 0xdd];
    let (l4, proto, addrs) = if v6 {
        (54, frame[20], &frame[22..54])
    } else {
        (
            14 + usize::from(frame[14] & 0x0f) * 4,
            frame[23],
            &frame[26..34],
        )
    };
    let len = (frame.len() - l4) as u32;
    let mut sum: u32 = addrs
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>()
        + u32::from(proto)
        + (len >> 16)
        + (len & 0xffff);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let at = l4 + if proto == 6 { 16 } else { 6 };
    let mut out = frame.to_vec();
    out[at..at + 2].copy_from_slice(&(sum as u16).to_be_bytes());
    assert_ne!(out, frame, "the full checksum is the partial one by chance");
    out
}

#[test]
fn partial_checksums_leave_completed_for_nat_dr_and_tun() {
    let (in_macs, out_macs) = ((CLIENT_MAC, CLIENT_IF_MAC), (SERVER_IF_MAC, RS1_MAC));
    let (rs_in, to_client) = ((RS1_MAC, SERVER_IF_MAC), (CLIENT_IF_MAC, CLIENT_MAC));
    let nat = "203.0.113.10";
    let rs = "192.0.2.11";
    let request = b"GET / HTTP/1.1\r\n\r\n";
    // TUN's expected frame: the inner packet with a full checksum, TTL 63,
    // in the outer header of `tun_encapsulates_to_the_real_server`.
    let inner = tcp(in_macs, C4, "203.0.113.30", (40002, 80), "S", 63, b"");
    let tunnelled = ipip_to_rs3(&inner);
    let partial = |f: Vec<u8>| with_partial_checksum(&f);
    let fixtures = [
        Fixture {
            description: "NAT: a SYN with a partial checksum reaches rs1 with a full one",
            rx: CLIENT,
            input: partial(tcp(in_macs, C4, nat, (40000, 80), "S", 64, b"")),
            expect: Expect::Transmit(SERVER, tcp(out_macs, C4, rs, (40000, 8080), "S", 63, b"")),
        },
        Fixture {
            description: "NAT: rs1's SYN+ACK with a partial checksum reaches the client with a full one",
            rx: SERVER,
            input: partial(tcp(rs_in, rs, C4, (8080, 40000), "SA", 64, b"")),
            expect: Expect::Transmit(CLIENT, tcp(to_client, nat, C4, (80, 40000), "SA", 63, b"")),
        },
        Fixture {
            description: "NAT: data with a partial checksum, the payload summed too",
            rx: CLIENT,
            input: partial(tcp(in_macs, C4, nat, (40000, 80), "PA", 64, request)),
            expect: Expect::Transmit(
                SERVER,
                tcp(out_macs, C4, rs, (40000, 8080), "PA", 63, request),
            ),
        },
        Fixture {
            description: "NAT: a full checksum goes on as before (not counted)",
            rx: CLIENT,
            input: tcp(in_macs, C4, nat, (40000, 80), "A", 64, b""),
            expect: Expect::Transmit(SERVER, tcp(out_macs, C4, rs, (40000, 8080), "A", 63, b"")),
        },
        Fixture {
            description: "NAT: UDP with a partial checksum (odd payload length)",
            rx: CLIENT,
            input: partial(udp4(in_macs, C4, nat, (40001, 53), 64, b"query")),
            expect: Expect::Transmit(SERVER, udp4(out_macs, C4, rs, (40001, 5353), 63, b"query")),
        },
        Fixture {
            description: "NAT66: a SYN with a partial checksum",
            rx: CLIENT,
            input: partial(tcp(in_macs, C6, "2001:db8::10", (40000, 80), "S", 64, b"")),
            expect: Expect::Transmit(
                SERVER,
                tcp(
                    (SERVER_IF_MAC, RS6_MAC),
                    C6,
                    "2001:db8:2::11",
                    (40000, 8080),
                    "S",
                    63,
                    b"",
                ),
            ),
        },
        Fixture {
            description: "DR: a SYN with a partial checksum leaves with a full one, the VIP kept",
            rx: CLIENT,
            input: partial(tcp(in_macs, C4, "203.0.113.20", (40002, 80), "S", 64, b"")),
            expect: Expect::Transmit(
                SERVER,
                tcp(
                    (SERVER_IF_MAC, RS2_MAC),
                    C4,
                    "203.0.113.20",
                    (40002, 80),
                    "S",
                    63,
                    b"",
                ),
            ),
        },
        Fixture {
            description: "TUN: the inner packet's partial checksum is completed",
            rx: CLIENT,
            input: partial(tcp(in_macs, C4, "203.0.113.30", (40002, 80), "S", 64, b"")),
            expect: Expect::Transmit(SERVER, tunnelled),
        },
    ];
    // The expected frames are etherparse's, checksums included: a
    // partial checksum forwarded as it came differs from them.
    let (_, w) = run(&fixtures);
    assert_eq!(
        w.counters.partial_checksum_completed[usize::from(CLIENT.0)],
        6,
        "every partial frame from the client counted, the full one not"
    );
    assert_eq!(
        w.counters.partial_checksum_completed[usize::from(SERVER.0)],
        1
    );
    assert_eq!(w.counters.partial_checksums_completed(), 7);
}
