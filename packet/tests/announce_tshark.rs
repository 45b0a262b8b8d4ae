//! The takeover announcements against tshark: the gratuitous ARP and the
//! unsolicited neighbour advertisement we build decode as such, with a good
//! ICMPv6 checksum.
#![expect(clippy::unwrap_used, reason = "test code")]

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use common::{skip, tshark};
use xvs_packet::announce::{gratuitous_arp, unsolicited_na};

const MAC: [u8; 6] = [0x02, 0, 0x5e, 0, 0x53, 0x0b];

#[test]
fn tshark_decodes_our_announcements() {
    let test = "tshark_decodes_our_announcements";
    if !skip::on_path("tshark") {
        skip::skip(
            test,
            "`tshark` on PATH (install it: testbed/lib/common.sh's XVS_PACKAGES)",
        );
        return;
    }
    let v4 = Ipv4Addr::new(203, 0, 113, 10);
    let v6: Ipv6Addr = "2001:db8:5::1".parse().unwrap();
    let frames = [
        gratuitous_arp(MAC, v4).to_vec(),
        unsolicited_na(MAC, v6).to_vec(),
    ];
    let (text, verbose) = tshark(
        "announce-tshark",
        &frames,
        &[
            "-T",
            "fields",
            "-E",
            "separator=,",
            "-E",
            "occurrence=f",
            "-e",
            "arp.isgratuitous",
            "-e",
            "arp.src.proto_ipv4",
            "-e",
            "arp.src.hw_mac",
            "-e",
            "arp.dst.hw_mac",
            "-e",
            "icmpv6.type",
            "-e",
            "icmpv6.nd.na.flag.r",
            "-e",
            "icmpv6.nd.na.flag.s",
            "-e",
            "icmpv6.nd.na.flag.o",
            "-e",
            "icmpv6.nd.na.target_address",
            "-e",
            "icmpv6.opt.linkaddr",
            "-e",
            "icmpv6.checksum.status",
            "-e",
            "ipv6.hlim",
            "-e",
            "ipv6.dst",
        ],
    );
    let lines: Vec<&str> = text.lines().collect();
    let mac = "02:00:5e:00:53:0b";
    // Booleans print as 1/0 (or True/False in newer tshark); normalise.
    let line = |i: usize| -> String {
        lines[i]
            .split(',')
            .map(|f| match f {
                "True" => "1",
                "False" => "0",
                other => other,
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(
        line(0),
        format!("1,203.0.113.10,{mac},00:00:00:00:00:00,,,,,,,,,"),
        "the gratuitous ARP"
    );
    assert_eq!(
        line(1),
        format!(",,,,136,0,0,1,2001:db8:5::1,{mac},1,255,ff02::1"),
        "the unsolicited NA (checksum status 1: Good)"
    );
    assert!(verbose.contains("[Is gratuitous: True]"), "{verbose}");
    assert!(verbose.contains("[Checksum Status: Good]"), "{verbose}");
    assert!(!verbose.contains("Malformed"), "{verbose}");
}
