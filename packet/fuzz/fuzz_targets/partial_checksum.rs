//! Completing a partial TCP/UDP checksum (a sender's checksum offload).
//!
//! Input: a frame.
//!
//! Never panics. A frame it does not complete is left byte for byte as it
//! was; one it completes differs only in its transport checksum field, and
//! a TCP segment then verifies. Completing again changes nothing (a full
//! checksum that happens to equal the pseudo-header sum is recomputed to
//! itself).
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use xvs_packet::IpProtocol;
use xvs_packet::offload::complete_partial_checksum;

fuzz_target!(|data: &[u8]| {
    let Some(ip) = common::parse_ip(data) else {
        return;
    };
    let mut frame = data.to_vec();
    if !complete_partial_checksum(&mut frame, &ip) {
        assert_eq!(frame, data, "a frame not completed was changed");
        return;
    }
    let csum_at = ip.l4_offset
        + match common::l4_proto(data, &ip) {
            IpProtocol::Tcp => 16,
            IpProtocol::Udp => 6,
            other => panic!("completed a {other:?} packet"),
        };
    for (i, (a, b)) in frame.iter().zip(data).enumerate() {
        if !(csum_at..csum_at + 2).contains(&i) {
            assert_eq!(a, b, "byte {i} outside the checksum field changed");
        }
    }
    if common::l4_proto(data, &ip) == IpProtocol::Tcp {
        assert_eq!(common::l4_checksum_ok(&frame, &ip), Some(true));
    }
    let once = frame.clone();
    let _ = complete_partial_checksum(&mut frame, &ip);
    assert_eq!(frame, once, "completing twice changed the frame");
});
