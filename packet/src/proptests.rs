//! Property tests across the crate: parse never panics on any bytes; every
//! rewrite leaves every checksum equal to a full recompute (checked by
//! etherparse's code, not ours); and what a rewrite set is what a parse
//! reads back.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::vec::Vec;

use proptest::prelude::*;

use crate::icmp_error::{build_too_big, nat_error_inbound, nat_error_outbound};
use crate::ip::IpProtocol;
use crate::parse::{IpVersion, Parsed, parse};
use crate::rewrite::{
    Endpoint, decrement_hop_limit, nat_inbound, nat_outbound, rewrite_endpoint,
    rewrite_endpoint_any,
};
use crate::testkit::*;
use crate::tunnel::{OuterSource, Tunnel, decapsulate, encapsulate};

fn l4() -> impl Strategy<Value = L4> {
    prop_oneof![
        (any::<u16>(), any::<u16>()).prop_map(|(sport, dport)| L4::Syn { sport, dport }),
        (any::<u16>(), any::<u16>()).prop_map(|(sport, dport)| L4::Ack { sport, dport }),
        (any::<u16>(), any::<u16>()).prop_map(|(sport, dport)| L4::Udp { sport, dport }),
        any::<u16>().prop_map(|ident| L4::EchoRequest { ident }),
        any::<u16>().prop_map(|ident| L4::EchoReply { ident }),
    ]
}

/// A random valid frame of either family with a random payload.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        l4(),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(is_v4, s4, d4, s6, d6, l4, payload)| {
            if is_v4 {
                frame4(
                    &Ipv4Addr::from(s4).to_string(),
                    &Ipv4Addr::from(d4).to_string(),
                    l4,
                    &payload,
                )
            } else {
                frame6(
                    &Ipv6Addr::from(s6).to_string(),
                    &Ipv6Addr::from(d6).to_string(),
                    l4,
                    &payload,
                )
            }
        })
}

fn addr_like(version: IpVersion, raw: [u8; 16]) -> IpAddr {
    match version {
        IpVersion::V4 => IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])),
        IpVersion::V6 => IpAddr::V6(Ipv6Addr::from(raw)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse(&bytes);
    }

    /// Valid frames with random bytes flipped: the parser either refuses
    /// them or returns offsets that every rewrite can use without panicking.
    #[test]
    fn damaged_frames_never_panic(mut f in frame(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6), addr in any::<[u8; 16]>(), port in any::<u16>()) {
        for (at, value) in flips {
            let i = at.index(f.len());
            f[i] = value;
        }
        if let Ok(Parsed::Ip(p)) = parse(&f) {
            let a = addr_like(p.version, addr);
            let _ = nat_inbound(&mut f.clone(), &p, a, port);
            let _ = nat_outbound(&mut f.clone(), &p, a, port);
            let _ = nat_error_inbound(&mut f.clone(), &p, a, port);
            let _ = nat_error_outbound(&mut f.clone(), &p, a, port);
            let _ = decrement_hop_limit(&mut f.clone(), &p);
            let mut out = [0u8; 1400];
            let _ = build_too_big(&mut out, &f, &p, 1280, a);
            let mut buf = std::vec![0u8; 64];
            buf.extend_from_slice(&f);
            let t = Tunnel { dst: a, src: OuterSource::Fixed(a), ttl: 64 };
            let _ = encapsulate(&mut buf, 64, f.len(), &p, &t, 0);
        }
    }

    /// NAT in both directions: every checksum equals a full recompute and the
    /// new address and port read back.
    #[test]
    fn nat_checksums_equal_full_recompute(mut f in frame(), addr in any::<[u8; 16]>(), port in any::<u16>(), inbound in any::<bool>()) {
        let p = ip(&f);
        let a = addr_like(p.version, addr);
        if inbound {
            nat_inbound(&mut f, &p, a, port).unwrap();
        } else {
            nat_outbound(&mut f, &p, a, port).unwrap();
        }
        prop_assert_eq!(verify_checksums(&f), Ok(()));
        let after = ip(&f);
        let is_echo = p.icmp.is_some();
        if inbound {
            prop_assert_eq!(after.flow.dst, a);
            prop_assert_eq!(after.flow.src, p.flow.src);
            prop_assert_eq!(after.flow.dport, if is_echo { p.flow.dport } else { port });
        } else {
            prop_assert_eq!(after.flow.src, a);
            prop_assert_eq!(after.flow.sport, if is_echo { p.flow.sport } else { port });
        }
    }

    /// IPv4 TCP/UDP takes `rewrite_endpoint`'s fast path: byte for byte
    /// what the general path writes, whichever end, and whatever the stored
    /// checksums were (0 and 0xffff included, where one's-complement
    /// arithmetic has two zeros and UDP's zero rule applies).
    #[test]
    fn v4_fast_rewrite_equals_the_general_path(
        f in frame(),
        addr in any::<[u8; 4]>(),
        port in any::<u16>(),
        source in any::<bool>(),
        ip_check in prop_oneof![Just(0u16), Just(0xffff), any::<u16>()],
        l4_check in prop_oneof![Just(0u16), Just(0xffff), any::<u16>()],
    ) {
        let p = ip(&f);
        prop_assume!(p.version == IpVersion::V4);
        let mut f = f;
        f[p.l3_offset + 10..p.l3_offset + 12].copy_from_slice(&ip_check.to_be_bytes());
        let l4_at = match p.flow.proto {
            IpProtocol::Tcp => Some(p.l4_offset + 16),
            IpProtocol::Udp => Some(p.l4_offset + 6),
            _ => None,
        };
        if let Some(at) = l4_at {
            f[at..at + 2].copy_from_slice(&l4_check.to_be_bytes());
        }
        let end = if source { Endpoint::Source } else { Endpoint::Destination };
        let a = IpAddr::V4(Ipv4Addr::from(addr));
        let (mut fast, mut general) = (f.clone(), f.clone());
        rewrite_endpoint(&mut fast, &p, end, a, port).unwrap();
        rewrite_endpoint_any(&mut general, &p, end, a, port).unwrap();
        prop_assert_eq!(fast, general);
    }

    #[test]
    fn ttl_decrement_keeps_checksums(mut f in frame(), ttl in 2u8..=255) {
        let p0 = ip(&f);
        if p0.version == IpVersion::V4 {
            let mut h = crate::ipv4::Packet::new_unchecked(&mut f[14..]);
            h.set_ttl(ttl);
            h.fill_checksum();
        } else {
            f[14 + 7] = ttl;
        }
        let p = ip(&f);
        decrement_hop_limit(&mut f, &p).unwrap();
        prop_assert_eq!(verify_checksums(&f), Ok(()));
        prop_assert_eq!(ip(&f).hop_limit, ttl - 1);
    }

    /// ICMP errors quoting a random packet, cut at a random length of at
    /// least the IP header + 8 bytes: rewritten either way, the outer, ICMP,
    /// quoted IP and (when quoted whole) quoted transport checksums verify.
    #[test]
    fn icmp_error_nat_checksums(sent in frame(), cut in any::<prop::sample::Index>(), addr in any::<[u8; 16]>(), port in any::<u16>(), outbound in any::<bool>()) {
        let s = ip(&sent);
        prop_assume!(s.icmp.is_none());
        let quoted = &sent[14..];
        let min = s.l4_offset - 14 + 8;
        let len = min + cut.index(quoted.len() - min + 1);
        let mut err = match s.version {
            IpVersion::V4 => icmp4_error("192.0.2.254", "198.51.100.7", 3, 3, [0; 4], &quoted[..len]),
            IpVersion::V6 => icmp6_error("2001:db8::fe", "2001:db8::7", 1, 4, [0; 4], &quoted[..len]),
        };
        let p = ip(&err);
        let a = addr_like(p.version, addr);
        if outbound {
            nat_error_outbound(&mut err, &p, a, port).unwrap();
        } else {
            nat_error_inbound(&mut err, &p, a, port).unwrap();
        }
        prop_assert_eq!(verify_checksums(&err), Ok(()));
        let after = ip(&err);
        // The error is keyed as its quote reversed; the rewritten quote end
        // is the error's other end.
        if outbound {
            prop_assert_eq!((after.flow.src, after.flow.sport), (a, port));
        } else {
            prop_assert_eq!((after.flow.dst, after.flow.dport), (a, port));
        }
    }

    /// Encapsulation round trip and outer checksums, both families and mixed.
    #[test]
    fn tunnel_round_trip(f in frame(), outer_v4 in any::<bool>(), raw in any::<[u8; 16]>(), ttl in 1u8..=255) {
        let p = ip(&f);
        let version = if outer_v4 { IpVersion::V4 } else { IpVersion::V6 };
        let dst = addr_like(version, raw);
        let src = addr_like(version, [7; 16]);
        let mut buf = std::vec![0u8; 40];
        buf.extend_from_slice(&f);
        let t = Tunnel { dst, src: OuterSource::Fixed(src), ttl };
        let (s, l) = encapsulate(&mut buf, 40, f.len(), &p, &t, 1).unwrap();
        let outer = ip(&buf[s..s + l]);
        prop_assert_eq!(outer.flow.dst, dst);
        prop_assert_eq!(outer.hop_limit, ttl);
        if outer_v4 {
            prop_assert!(crate::ipv4::Packet::new_checked(&buf[s + 14..s + l]).unwrap().verify_checksum());
        }
        let mut back = buf[s..s + l].to_vec();
        let (s2, l2) = decapsulate(&mut back, 0, &outer).unwrap();
        prop_assert_eq!(&back[s2..s2 + l2], &f[..]);
    }
}
