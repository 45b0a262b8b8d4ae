//! "Fragmentation needed" / "packet too big" replies built into a fixed
//! buffer.
//!
//! Input: 2 bytes of MTU, 16 bytes of source address, 2 bytes of output
//! buffer size (0..=1599 of a 1600-byte buffer), then the offending frame.
//!
//! Never panics. A reply that was built parses as an ICMP error keyed as
//! `p.flow.reversed()` (it travels back to the sender, about the packet it
//! sent), from `src`, with a correct ICMP checksum and the MTU in it.
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use xvs_packet::FlowOrigin;
use xvs_packet::icmp_error::build_too_big;
use xvs_packet::parse::{Fragment, IcmpKind, IpVersion};
use xvs_packet::rewrite::RewriteError;

fuzz_target!(|data: &[u8]| {
    let Some((params, frame)) = common::split(data, 20) else {
        return;
    };
    let Some(p) = common::parse_ip(frame) else {
        return;
    };
    let mtu = common::u16_at(params, 0);
    let src = common::addr(p.version == IpVersion::V4, &params[2..18]);
    let size = usize::from(common::u16_at(params, 18)) % 1600;
    let mut out = [0u8; 1600];

    let result = build_too_big(&mut out[..size], frame, &p, mtu, src);
    let refused = matches!(p.icmp, Some(IcmpKind::Error { .. })) || p.fragment == Fragment::Later;
    let n = match result {
        Err(RewriteError::WrongKind) => {
            assert!(refused);
            return;
        }
        Err(RewriteError::BufferTooSmall) => {
            assert!(!refused);
            return;
        }
        Err(e) => panic!("unexpected {e:?} for {p:?}"),
        Ok(n) => n,
    };
    assert!(
        !refused,
        "answered an ICMP error or a later fragment: {p:?}"
    );
    assert!(n <= size);
    let reply = &out[..n];
    let r = match xvs_packet::parse(reply) {
        Ok(xvs_packet::Parsed::Ip(r)) => r,
        other => panic!("reply does not parse: {other:?}\noffending: {p:?}"),
    };
    assert_eq!(r.origin, FlowOrigin::IcmpError);
    assert_eq!(r.flow, p.flow.reversed(), "offending: {p:?}\nreply: {r:?}");
    assert_eq!(r.vlan, p.vlan);
    assert_eq!(r.version, p.version);
    let (want_type, want_code) = match p.version {
        IpVersion::V4 => (3, 4),
        IpVersion::V6 => (2, 0),
    };
    assert_eq!(
        r.icmp,
        Some(IcmpKind::Error {
            msg_type: want_type,
            code: want_code
        })
    );
    let rest = &reply[r.l4_offset + 4..r.l4_offset + 8];
    assert_eq!(
        u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]),
        u32::from(mtu)
    );
    assert!(
        common::icmp_checksum_ok(reply, &r),
        "bad ICMP checksum: {r:?}"
    );
    // The quote is the start of the offending IP packet.
    let q = r.quoted.expect("quote");
    let quoted = &reply[q.l3_offset..r.ip_end];
    assert_eq!(quoted, &frame[p.l3_offset..p.l3_offset + quoted.len()]);
    assert_eq!(&reply[..6], &frame[6..12]);
    assert_eq!(&reply[6..12], &frame[..6]);
});
