//! TTL/hop-limit decrement and VS/DR's MAC rewrite.
//!
//! Input: 6 bytes of real-server MAC, 6 bytes of our MAC, then the frame.
//!
//! Never panics. `decrement_hop_limit` refuses a TTL of 0 or 1; otherwise
//! the frame parses again with the TTL one less and everything else equal
//! (so the IPv4 header checksum was updated right). `direct_route` changes
//! only the MAC addresses.
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use xvs_packet::ethernet::MacAddr;
use xvs_packet::rewrite::{RewriteError, decrement_hop_limit, direct_route};

fuzz_target!(|data: &[u8]| {
    let Some((params, frame)) = common::split(data, 12) else {
        return;
    };
    let mut frame = frame.to_vec();
    let Some(before) = common::parse_ip(&frame) else {
        return;
    };
    let original = frame.clone();

    match decrement_hop_limit(&mut frame, &before) {
        Err(RewriteError::TtlExpired) => {
            assert!(before.hop_limit <= 1);
            assert_eq!(frame, original, "an expired packet was changed");
        }
        Err(e) => panic!("unexpected {e:?}"),
        Ok(()) => {
            assert!(before.hop_limit > 1);
            let after = common::parse_ip(&frame)
                .unwrap_or_else(|| panic!("no longer parses: {:?}", xvs_packet::parse(&frame)));
            let mut want = before;
            want.hop_limit -= 1;
            assert_eq!(after, want);
        }
    }

    let mut rs = [0u8; 6];
    rs.copy_from_slice(&params[..6]);
    let mut ours = [0u8; 6];
    ours.copy_from_slice(&params[6..12]);
    let routed = frame.clone();
    direct_route(&mut frame, MacAddr(rs), MacAddr(ours));
    assert_eq!(&frame[..6], &rs);
    assert_eq!(&frame[6..12], &ours);
    assert_eq!(&frame[12..], &routed[12..]);
    assert_eq!(common::parse_ip(&frame), common::parse_ip(&routed));
});
