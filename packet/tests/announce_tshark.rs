//! The takeover announcements against tshark: the gratuitous ARP and the
//! unsolicited neighbour advertisement we build decode as such, with a good
//! ICMPv6 checksum.
#![expect(clippy::unwrap_used, reason = "test code")]

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;

use common::{skip, write_pcap};
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
    let dir = std::env::temp_dir().join(format!("xvs-announce-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("announce.pcap");
    write_pcap(&pcap, &frames);
    let fields = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&pcap)
        .args(["-T", "fields", "-E", "separator=,", "-E", "occurrence=f"])
        .args(["-e", "arp.isgratuitous", "-e", "arp.src.proto_ipv4"])
        .args(["-e", "arp.src.hw_mac", "-e", "arp.dst.hw_mac"])
        .args(["-e", "icmpv6.type", "-e", "icmpv6.nd.na.flag.r"])
        .args(["-e", "icmpv6.nd.na.flag.s", "-e", "icmpv6.nd.na.flag.o"])
        .args(["-e", "icmpv6.nd.na.target_address"])
        .args(["-e", "icmpv6.opt.linkaddr", "-e", "icmpv6.checksum.status"])
        .args(["-e", "ipv6.hlim", "-e", "ipv6.dst"])
        .output()
        .unwrap();
    let verbose = Command::new("tshark")
        .args(["-n", "-V", "-r"])
        .arg(&pcap)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let stderr = String::from_utf8_lossy(&fields.stderr);
    assert!(fields.status.success(), "tshark: {stderr}");
    let text = String::from_utf8(fields.stdout).unwrap();
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
    let verbose = String::from_utf8(verbose.stdout).unwrap();
    assert!(verbose.contains("[Is gratuitous: True]"), "{verbose}");
    assert!(verbose.contains("[Checksum Status: Good]"), "{verbose}");
    assert!(!verbose.contains("Malformed"), "{verbose}");
}
