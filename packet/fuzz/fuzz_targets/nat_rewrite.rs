//! NAT inbound/outbound with an address and port taken from the input.
//!
//! Input: `mode` (bit 0: outbound, bit 1: an address of the other family),
//! 16 address bytes (the first 4 for IPv4), a 2-byte port, then the frame.
//!
//! Never panics. After a successful rewrite of a packet's own flow (not an
//! ICMP error, which has its own rewrite): the frame parses again, carries
//! the new address and port at the rewritten end and the old ones at the
//! other, and every checksum that verified before (full recompute) still
//! verifies.
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use xvs_packet::parse::{Fragment, IcmpKind, IpVersion};
use xvs_packet::rewrite::{RewriteError, nat_inbound, nat_outbound};
use xvs_packet::{FlowOrigin, IpProtocol};

fuzz_target!(|data: &[u8]| {
    let Some((params, frame)) = common::split(data, 19) else {
        return;
    };
    let mut frame = frame.to_vec();
    let Some(before) = common::parse_ip(&frame) else {
        return;
    };
    let outbound = params[0] & 1 == 1;
    let other_family = params[0] & 2 == 2;
    let v4 = (before.version == IpVersion::V4) != other_family;
    let addr = common::addr(v4, &params[1..17]);
    let port = common::u16_at(params, 17);
    let l4_ok = common::l4_checksum_ok(&frame, &before);

    let result = if outbound {
        nat_outbound(&mut frame, &before, addr, port)
    } else {
        nat_inbound(&mut frame, &before, addr, port)
    };
    if before.origin == FlowOrigin::IcmpError {
        // An error's key names its quote; icmp_error_nat covers its rewrite.
        assert_eq!(result, Err(RewriteError::WrongKind));
        return;
    }
    if other_family {
        assert_eq!(result, Err(RewriteError::FamilyMismatch));
        return;
    }
    assert_eq!(result, Ok(()));

    let after = common::parse_ip(&frame)
        .unwrap_or_else(|| panic!("no longer parses: {:?}", xvs_packet::parse(&frame)));
    let ports = before.fragment != Fragment::Later
        && matches!(before.flow.proto, IpProtocol::Tcp | IpProtocol::Udp);
    let (mut want_sport, mut want_dport) = (before.flow.sport, before.flow.dport);
    if outbound {
        assert_eq!((after.flow.src, after.flow.dst), (addr, before.flow.dst));
        if ports {
            want_sport = port;
        }
    } else {
        assert_eq!((after.flow.src, after.flow.dst), (before.flow.src, addr));
        if ports {
            want_dport = port;
        }
    }
    assert_eq!(
        (after.flow.sport, after.flow.dport),
        (want_sport, want_dport)
    );
    assert_eq!(after.flow.proto, before.flow.proto);
    assert_eq!(
        (
            after.l4_offset,
            after.ip_end,
            after.fragment,
            after.hop_limit
        ),
        (
            before.l4_offset,
            before.ip_end,
            before.fragment,
            before.hop_limit
        )
    );
    if matches!(
        before.icmp,
        Some(IcmpKind::EchoRequest { .. } | IcmpKind::EchoReply { .. })
    ) {
        assert_eq!(after.icmp, before.icmp);
    }
    if l4_ok == Some(true) {
        assert_eq!(
            common::l4_checksum_ok(&frame, &after),
            Some(true),
            "transport checksum broken by the rewrite: {before:?}"
        );
    }
});
