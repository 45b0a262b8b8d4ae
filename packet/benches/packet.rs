//! Per-frame costs of the packet layer on realistic frames (built here with
//! etherparse): parsing, the NAT rewrites, IPIP encapsulation and the ICMP
//! error rewrite; the director's cost per VRRP advertisement (build and
//! sign one, check and verify one, refuse a forged one); and per sync
//! message of the default `--sync-maxlen` (1472 bytes) full of connection
//! upserts (build and sign one; check, verify and read one), from which
//! the cost per synced connection follows. Issue 2's targets on the
//! testbed machine: parse + NAT inbound ≤ 30 ns, encapsulation ≤ 40 ns.
//!
//! Run: `cargo bench -p xvs-packet --bench packet -- --warm-up-time 1 --measurement-time 3`
//!
//! The rewrites work in place on one buffer, iteration after iteration. The
//! NAT and ICMP-error rewrites leave a frame that is valid input to the same
//! rewrite (the destination is already the real server, and is written
//! again, with every checksum update done in full), so nothing is reset.
//! Encapsulation moves the Ethernet header into the headroom and writes
//! the outer header over the old one: each iteration restores the 14-byte
//! Ethernet header first, and that copy is included in its time.

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use etherparse::{PacketBuilder, TcpOptionElement};
use xvs_packet::IpProtocol;
use xvs_packet::icmp_error::nat_error_outbound;
use xvs_packet::rewrite::nat_inbound;
use xvs_packet::sync::{self, ConnKey, ConnState, Flags, Header, Kind, MaxLen, MessageBuilder};
use xvs_packet::tunnel::{OuterSource, Tunnel, encapsulate};
use xvs_packet::vrrp::{self, Addresses, Advert, AuthKey, Family, Signing};
use xvs_packet::{FrameKind, IpFrame, Parsed, parse, parse_into};

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

fn v4(s: &str) -> [u8; 4] {
    s.parse::<std::net::Ipv4Addr>()
        .expect("IPv4 address")
        .octets()
}

fn v6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>()
        .expect("IPv6 address")
        .octets()
}

fn addr(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// The options of a Linux SYN: MSS, SACK permitted, timestamps, NOP, window
/// scale (20 bytes), which make a 74-byte IPv4 frame.
fn syn_options() -> [TcpOptionElement; 5] {
    [
        TcpOptionElement::MaximumSegmentSize(1460),
        TcpOptionElement::SelectiveAcknowledgementPermitted,
        TcpOptionElement::Timestamp(0x1234_5678, 0),
        TcpOptionElement::Noop,
        TcpOptionElement::WindowScale(7),
    ]
}

/// A 74-byte TCP SYN, client → VIP, over IPv4.
fn syn_v4() -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv4(v4("198.51.100.7"), v4("203.0.113.10"), 64)
        .tcp(40000, 80, 1000, 64240)
        .syn()
        .options(&syn_options())
        .expect("TCP options")
        .write(&mut out, &[])
        .expect("frame");
    assert_eq!(out.len(), 74);
    out
}

/// A 66-byte TCP ACK (timestamps only), client → VIP, over IPv4.
fn ack_v4() -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv4(v4("198.51.100.7"), v4("203.0.113.10"), 64)
        .tcp(40000, 80, 1001, 64240)
        .ack(5001)
        .options(&[
            TcpOptionElement::Noop,
            TcpOptionElement::Noop,
            TcpOptionElement::Timestamp(0x1234_5679, 0x0abc_def0),
        ])
        .expect("TCP options")
        .write(&mut out, &[])
        .expect("frame");
    assert_eq!(out.len(), 66);
    out
}

/// A 94-byte TCP SYN, client → VIP, over IPv6.
fn syn_v6() -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv6(v6("2001:db8:1::7"), v6("2001:db8::10"), 64)
        .tcp(40000, 443, 1000, 64240)
        .syn()
        .options(&syn_options())
        .expect("TCP options")
        .write(&mut out, &[])
        .expect("frame");
    assert_eq!(out.len(), 94);
    out
}

/// A real server's "port unreachable" to the client, quoting the 5-byte UDP
/// datagram the director had sent it after NAT (client:5000 → rs:5353).
fn port_unreachable_v4() -> Vec<u8> {
    let mut sent = Vec::new();
    PacketBuilder::ipv4(v4("198.51.100.7"), v4("192.0.2.11"), 63)
        .udp(5000, 5353)
        .write(&mut sent, b"query")
        .expect("quoted datagram");
    let mut out = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv4(v4("192.0.2.11"), v4("198.51.100.7"), 64)
        .icmpv4_raw(3, 3, [0; 4])
        .write(&mut out, &sent)
        .expect("frame");
    out
}

fn ip(frame: &[u8]) -> IpFrame {
    match parse(frame) {
        Ok(Parsed::Ip(ip)) => ip,
        other => panic!("expected an IP frame, got {other:?}"),
    }
}

fn benches(c: &mut Criterion) {
    let rs4 = addr("192.0.2.11");
    let rs6 = addr("2001:db8:2::11");

    let syn4 = syn_v4();
    c.bench_function("parse_tcp_v4", |b| {
        b.iter(|| black_box(parse(black_box(&syn4[..]))))
    });

    let syn6 = syn_v6();
    c.bench_function("parse_tcp_v6", |b| {
        b.iter(|| black_box(parse(black_box(&syn6[..]))))
    });

    // What the director does per packet of an established NAT connection.
    let mut ack4 = ack_v4();
    assert_eq!(
        nat_inbound(&mut ack4.clone(), &ip(&ack4), rs4, 8080),
        Ok(())
    );
    c.bench_function("parse_and_nat_inbound_v4", |b| {
        b.iter(|| {
            let frame = black_box(&mut ack4[..]);
            let Ok(Parsed::Ip(p)) = parse(frame) else {
                panic!("not an IP frame")
            };
            black_box(nat_inbound(frame, &p, black_box(rs4), black_box(8080)))
        })
    });

    // The same with the worker's own IpFrame filled in place (the
    // pipeline's form): no ~100-byte result copied out.
    let mut parsed = IpFrame::default();
    c.bench_function("parse_into_tcp_v4", |b| {
        b.iter(|| black_box(parse_into(black_box(&syn4[..]), &mut parsed)))
    });
    c.bench_function("parse_into_and_nat_inbound_v4", |b| {
        b.iter(|| {
            let frame = black_box(&mut ack4[..]);
            let Ok(FrameKind::Ip) = parse_into(frame, &mut parsed) else {
                panic!("not an IP frame")
            };
            black_box(nat_inbound(frame, &parsed, black_box(rs4), black_box(8080)))
        })
    });

    // The rewrite alone, on a frame parsed once.
    let mut ack4 = ack_v4();
    let p4 = ip(&ack4);
    c.bench_function("nat_inbound_v4", |b| {
        b.iter(|| {
            black_box(nat_inbound(
                black_box(&mut ack4[..]),
                black_box(&p4),
                black_box(rs4),
                black_box(8080),
            ))
        })
    });
    let mut syn6 = syn_v6();
    let p6 = ip(&syn6);
    c.bench_function("nat_inbound_v6", |b| {
        b.iter(|| {
            black_box(nat_inbound(
                black_box(&mut syn6[..]),
                black_box(&p6),
                black_box(rs6),
                black_box(8080),
            ))
        })
    });

    // IPIP with the outer source drawn from a /24 by the flow hash (the
    // RSS-friendly configuration, the dearer one); parsed once.
    const HEADROOM: usize = 64;
    let frame = syn_v4();
    let p = ip(&frame);
    let mut buf = vec![0u8; HEADROOM + frame.len()];
    buf[HEADROOM..].copy_from_slice(&frame);
    let eth: [u8; 14] = frame[..14].try_into().expect("Ethernet header");
    let tunnel = Tunnel {
        dst: rs4,
        src: OuterSource::FromFlow {
            prefix: addr("192.0.2.0"),
            prefix_len: 24,
        },
        ttl: 64,
    };
    let mut check = buf.clone();
    assert_eq!(
        encapsulate(&mut check, HEADROOM, frame.len(), &p, &tunnel, 0),
        Ok((HEADROOM - 20, frame.len() + 20))
    );
    let mut ident = 0u16;
    c.bench_function("ipip_encapsulate_v4", |b| {
        b.iter(|| {
            let buf = black_box(&mut buf[..]);
            buf[HEADROOM..HEADROOM + 14].copy_from_slice(&eth);
            ident = ident.wrapping_add(1);
            black_box(encapsulate(
                buf,
                HEADROOM,
                frame.len(),
                black_box(&p),
                black_box(&tunnel),
                ident,
            ))
        })
    });

    let mut err = port_unreachable_v4();
    let vip = addr("203.0.113.10");
    assert_eq!(
        nat_error_outbound(&mut err.clone(), &ip(&err), vip, 53),
        Ok(())
    );
    c.bench_function("icmp_error_nat", |b| {
        b.iter(|| {
            let frame = black_box(&mut err[..]);
            let Ok(Parsed::Ip(p)) = parse(frame) else {
                panic!("not an IP frame")
            };
            black_box(nat_error_outbound(frame, &p, black_box(vip), black_box(53)))
        })
    });
}

/// One signed IPv4 advert for two addresses, as a director sends it every
/// advert interval; then the receiver's whole check of it.
fn vrrp_benches(c: &mut Criterion) {
    let key = AuthKey::new(1, &[0x5a; 32]).expect("a 32-byte key");
    let vips = [
        "203.0.113.10".parse().expect("an address"),
        "203.0.113.11".parse().expect("an address"),
    ];
    let advert = Advert {
        vrid: 51,
        priority: 150,
        max_advert_interval: 100,
        addresses: Addresses::V4(&vips),
    };
    let (src, dst) = (addr("198.51.100.10"), addr("224.0.0.18"));
    let signing = Signing::Hmac {
        key: &key,
        sequence: 1,
    };
    let mut buf = [0u8; 128];
    c.bench_function("vrrp_emit_signed_v4", |b| {
        b.iter(|| black_box(advert.emit(black_box(src), dst, &signing, &mut buf)))
    });
    let len = advert.emit(src, dst, &signing, &mut buf).expect("it fits");
    let signed = buf[..len].to_vec();
    let check = |message: &[u8]| {
        let packet = vrrp::Packet::new_checked(message, Family::V4).ok()?;
        packet.verify_checksum(src, dst).then_some(())?;
        packet.verify_hmac(src, &key).ok()
    };
    assert_eq!(check(&signed), Some(()));
    c.bench_function("vrrp_check_and_verify_v4", |b| {
        b.iter(|| black_box(check(black_box(&signed))))
    });
    let mut forged = signed.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1; // the tag's last byte: the checksum does not cover it
    assert_eq!(check(&forged), None);
    c.bench_function("vrrp_refuse_forged_v4", |b| {
        b.iter(|| black_box(check(black_box(&forged))))
    });
}

/// A connection as the master syncs it: `n` varies the client's port.
fn upsert(n: u16, client: &str, vip: &str, server: &str) -> sync::Record {
    sync::Record::Upsert(ConnState {
        key: ConnKey {
            proto: IpProtocol::Tcp,
            client: addr(client),
            cport: 10_000 + n,
            vip: addr(vip),
            vport: 443,
            template: false,
        },
        real_server: addr(server),
        rport: 443,
        method: 0,
        tcp_state: 1,
        active: true,
        no_output: false,
        timeout_ms: 900_000,
    })
}

/// A data message of 1472 bytes filled with IPv4 (47) or IPv6 (21)
/// upserts, built and signed; then the receiver's check, verification and
/// reading of every record.
fn sync_benches(c: &mut Criterion) {
    let key = AuthKey::new(1, &[0x5a; 32]).expect("a 32-byte key");
    let header = Header {
        kind: Kind::Data,
        syncid: 0,
        flags: Flags::EMPTY,
        epoch: 0x1234_5678,
        sequence: 1,
        peer_epoch: 0x9abc_def0,
        ack: 0,
    };
    for (name, client, vip, server) in [
        ("v4", "198.51.100.7", "203.0.113.1", "192.0.2.11"),
        ("v6", "2001:db8:1::7", "2001:db8:2::1", "2001:db8:3::11"),
    ] {
        let records: Vec<_> = (0..64).map(|n| upsert(n, client, vip, server)).collect();
        let mut buf = [0u8; 1472];
        let build = |buf: &mut [u8]| {
            let mut b = MessageBuilder::new(buf, MaxLen::DEFAULT, &header).ok()?;
            let taken = records.iter().take_while(|r| b.push(r)).count();
            Some((taken, b.sign(&key)))
        };
        let (count, len) = build(&mut buf).expect("a message");
        println!("sync_{name}: {count} upserts in {len} bytes");
        c.bench_function(&format!("sync_build_and_sign_full_{name}"), |b| {
            b.iter(|| black_box(build(black_box(&mut buf))))
        });
        let message = buf[..len].to_vec();
        let read = |m: &[u8]| {
            let packet = sync::Packet::new_checked(m).ok()?;
            packet.verify(&key).ok()?;
            Some(packet.records().fold(0, |n, r| {
                black_box(r);
                n + 1
            }))
        };
        assert_eq!(read(&message), Some(count));
        c.bench_function(&format!("sync_check_verify_read_full_{name}"), |b| {
            b.iter(|| black_box(read(black_box(&message))))
        });
    }
}

criterion_group!(packet, benches, vrrp_benches, sync_benches);
criterion_main!(packet);
