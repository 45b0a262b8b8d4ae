//! ICMP errors under NAT: the outer header and the quoted packet rewritten
//! both ways.
//!
//! Input: `mode` (bit 0: inbound, towards a real server; bit 1: an address
//! of the other family), 16 address bytes, a 2-byte port, then the frame.
//!
//! Never panics. Frames that are not ICMP errors are refused (`WrongKind`).
//! After a successful rewrite the frame parses again as an ICMP error whose
//! key (the reverse of the quoted packet's) carries the new address and
//! port at the rewritten end; the ICMP checksum, and the quoted IPv4
//! header checksum, verify if they did before (full recompute).
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use xvs_packet::icmp_error::{nat_error_inbound, nat_error_outbound};
use xvs_packet::parse::{IcmpKind, IpVersion};
use xvs_packet::rewrite::RewriteError;
use xvs_packet::{FlowOrigin, IpProtocol};

fuzz_target!(|data: &[u8]| {
    let Some((params, frame)) = common::split(data, 19) else {
        return;
    };
    let mut frame = frame.to_vec();
    let Some(before) = common::parse_ip(&frame) else {
        return;
    };
    let inbound = params[0] & 1 == 1;
    let other_family = params[0] & 2 == 2;
    let v4 = (before.version == IpVersion::V4) != other_family;
    let addr = common::addr(v4, &params[1..17]);
    let port = common::u16_at(params, 17);
    let is_error = matches!(before.icmp, Some(IcmpKind::Error { .. }));
    let icmp_ok = is_error && common::icmp_checksum_ok(&frame, &before);
    let quoted_ok = common::quoted_v4_header_ok(&frame, &before);

    let result = if inbound {
        nat_error_inbound(&mut frame, &before, addr, port)
    } else {
        nat_error_outbound(&mut frame, &before, addr, port)
    };
    if !is_error {
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
    assert_eq!(after.origin, FlowOrigin::IcmpError);
    assert_eq!(after.icmp, before.icmp);
    assert_eq!(after.quoted, before.quoted);
    let ports = matches!(before.flow.proto, IpProtocol::Tcp | IpProtocol::Udp);
    let mut want = before.flow;
    if inbound {
        want.dst = addr;
        if ports {
            want.dport = port;
        }
    } else {
        want.src = addr;
        if ports {
            want.sport = port;
        }
    }
    assert_eq!(after.flow, want, "before: {before:?}");
    if icmp_ok {
        assert!(
            common::icmp_checksum_ok(&frame, &after),
            "ICMP checksum broken by the rewrite: {before:?}"
        );
    }
    if quoted_ok == Some(true) {
        assert_eq!(
            common::quoted_v4_header_ok(&frame, &after),
            Some(true),
            "quoted IPv4 header checksum broken: {before:?}"
        );
    }
});
