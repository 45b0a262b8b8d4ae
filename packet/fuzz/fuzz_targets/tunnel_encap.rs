//! VS/TUN encapsulation into headroom, then decapsulation.
//!
//! Input: `mode` (bit 0: IPv6 outer header; bit 1: source derived from the
//! flow inside a prefix; bit 2: a source of the other family), 16 bytes of
//! outer destination, 16 bytes of source or prefix, prefix length, TTL,
//! 2 bytes of IPv4 ident, headroom (0..=63 bytes), then the frame.
//!
//! Never panics. A successful encapsulation parses again as an IPIP/ip6ip6
//! packet to the tunnel's destination with the configured TTL, whose
//! payload is the original IP packet; decapsulating it gives the original
//! frame back (without Ethernet padding).
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use xvs_packet::parse::IpVersion;
use xvs_packet::rewrite::RewriteError;
use xvs_packet::tunnel::{OuterSource, Tunnel, decapsulate, encapsulate, outer_len};
use xvs_packet::{FlowOrigin, IpProtocol};

const PARAMS: usize = 1 + 16 + 16 + 1 + 1 + 2 + 1;

fuzz_target!(|data: &[u8]| {
    let Some((p, frame)) = common::split(data, PARAMS) else {
        return;
    };
    let Some(inner) = common::parse_ip(frame) else {
        return;
    };
    let outer_v4 = p[0] & 1 == 0;
    let from_flow = p[0] & 2 == 2;
    let mismatch = p[0] & 4 == 4;
    let dst = common::addr(outer_v4, &p[1..17]);
    let src_addr = common::addr(outer_v4 != mismatch, &p[17..33]);
    let src = if from_flow {
        OuterSource::FromFlow {
            prefix: src_addr,
            prefix_len: p[33],
        }
    } else {
        OuterSource::Fixed(src_addr)
    };
    let tunnel = Tunnel {
        dst,
        src,
        ttl: p[34],
    };
    let ident = common::u16_at(p, 35);
    let headroom = usize::from(p[37] % 64);

    let mut buf = vec![0u8; headroom + frame.len()];
    buf[headroom..].copy_from_slice(frame);
    let result = encapsulate(&mut buf, headroom, frame.len(), &inner, &tunnel, ident);
    let (start, len) = match result {
        Err(RewriteError::NoHeadroom) => {
            assert!(headroom < outer_len(dst));
            return;
        }
        Err(RewriteError::FamilyMismatch) => {
            assert!(mismatch && headroom >= outer_len(dst));
            return;
        }
        Err(e) => panic!("unexpected {e:?} for {inner:?}"),
        Ok(r) => r,
    };
    assert!(!mismatch, "a source of the other family was accepted");
    assert!(headroom >= outer_len(dst));
    assert_eq!(start, headroom - outer_len(dst));
    assert_eq!(len, inner.ip_end + outer_len(dst));

    let out = &buf[start..start + len];
    let outer = common::parse_ip(out).unwrap_or_else(|| {
        panic!(
            "encapsulated frame does not parse: {:?}",
            xvs_packet::parse(out)
        )
    });
    let want_proto = match inner.version {
        IpVersion::V4 => IpProtocol::Ipip,
        IpVersion::V6 => IpProtocol::Ipv6,
    };
    assert_eq!(outer.flow.proto, want_proto);
    assert_eq!(outer.origin, FlowOrigin::Packet);
    assert_eq!(outer.version == IpVersion::V4, outer_v4);
    assert_eq!(outer.flow.dst, dst);
    if let OuterSource::Fixed(s) = src {
        assert_eq!(outer.flow.src, s);
    }
    assert_eq!(outer.hop_limit, tunnel.ttl);
    assert_eq!(outer.vlan, inner.vlan);
    assert_eq!(outer.l4_offset - outer.l3_offset, outer_len(dst));
    assert_eq!(outer.ip_end, len);
    if outer_v4 {
        assert_eq!(outer.dont_frag, inner.dont_frag);
    }
    // The payload is the inner IP packet, untouched; MACs are untouched.
    assert_eq!(
        &out[outer.l4_offset..],
        &frame[inner.l3_offset..inner.ip_end]
    );
    assert_eq!(&out[..12], &frame[..12]);

    let mut back = out.to_vec();
    let (s2, l2) = decapsulate(&mut back, 0, &outer).expect("decapsulate");
    assert_eq!(&back[s2..s2 + l2], &frame[..inner.ip_end]);
});
