//! The VRRP codec against the outside world: adverts captured from
//! keepalived decode field by field with a good checksum, and adverts we
//! build are decoded by tshark as valid VRRPv3 with a good checksum.
//!
//! The captures are made by `tests/fixtures/capture-keepalived.sh`
//! (keepalived 2.2.7, Debian's; see `tests/fixtures/README.md`).
#![expect(clippy::unwrap_used, reason = "test code")]

mod common;

use common::{skip, tshark};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use xvs_packet::ethernet;
use xvs_packet::vrrp::{
    self, Addresses, Advert, AuthKey, Family, MULTICAST_V4, MULTICAST_V6, Signing,
};

/// The frames of a classic pcap file (either byte order, micro- or
/// nanosecond timestamps), whole.
fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.len() >= 24, "{}: no pcap header", path.display());
    let magic = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
    let little = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        other => panic!("{}: not a pcap file (magic {other:#x})", path.display()),
    };
    let u32_at = |at: usize| {
        let b: [u8; 4] = bytes[at..at + 4].try_into().unwrap();
        if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    assert_eq!(u32_at(20), 1, "link type Ethernet");
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let captured = u32_at(at + 8) as usize;
        let original = u32_at(at + 12) as usize;
        assert_eq!(
            captured,
            original,
            "frame {} cut by the snap length",
            frames.len()
        );
        frames.push(bytes[at + 16..at + 16 + captured].to_vec());
        at += 16 + captured;
    }
    assert_eq!(at, bytes.len(), "trailing bytes");
    frames
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// What a capture must hold: every frame a valid advert of this router,
/// and at least `min` of them at its priority.
struct Expected {
    file: &'static str,
    vrid: u8,
    priority: u8,
    interval_cs: u16,
    addresses: [IpAddr; 2],
    group: IpAddr,
    min: usize,
}

fn check_capture(want: &Expected) {
    let frames = read_pcap(&fixture(want.file));
    let mut at_priority = 0;
    let mut stopping = 0;
    for (i, frame) in frames.iter().enumerate() {
        let eth = ethernet::Frame::new_checked(&frame[..]).unwrap();
        let advert =
            vrrp::receive(eth.payload()).unwrap_or_else(|e| panic!("{} frame {i}: {e}", want.file));
        let p = &advert.packet;
        assert_eq!(p.version(), 3);
        assert_eq!(p.kind(), vrrp::TYPE_ADVERTISEMENT);
        assert_eq!(p.vrid(), want.vrid, "frame {i}");
        assert_eq!(p.max_advert_interval(), want.interval_cs, "frame {i}");
        assert_eq!(p.reserved(), 0);
        assert_eq!(p.address_count(), 2);
        assert_eq!(p.addresses().collect::<Vec<_>>(), want.addresses.to_vec());
        assert!(p.trailer().is_none(), "keepalived 2.2.7 has no auth_hmac");
        assert_eq!(advert.dst, want.group);
        assert!(p.verify_checksum(advert.src, advert.dst), "frame {i}");
        // The checksum covers the pseudo-header: another source fails it.
        let other = match advert.src {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        assert!(!p.verify_checksum(other, advert.dst));
        match p.priority() {
            0 => stopping += 1,
            prio => {
                assert_eq!(prio, want.priority, "frame {i}");
                at_priority += 1;
            }
        }
    }
    assert!(
        at_priority >= want.min,
        "{}: {at_priority} adverts",
        want.file
    );
    // keepalived was stopped by the script: its last word is priority 0.
    assert!(stopping >= 1, "{}: no priority-0 advert", want.file);
}

#[test]
fn keepalived_ipv4_adverts_decode_with_a_good_checksum() {
    check_capture(&Expected {
        file: "keepalived-vrrp3-v4.pcap",
        vrid: 51,
        priority: 150,
        interval_cs: 100,
        addresses: [
            "192.0.2.100".parse().unwrap(),
            "192.0.2.101".parse().unwrap(),
        ],
        group: IpAddr::V4(MULTICAST_V4),
        min: 2,
    });
}

#[test]
fn keepalived_ipv6_adverts_decode_with_a_good_checksum() {
    check_capture(&Expected {
        file: "keepalived-vrrp3-v6.pcap",
        vrid: 52,
        priority: 200,
        interval_cs: 50,
        addresses: [
            "2001:db8::100".parse().unwrap(),
            "2001:db8::101".parse().unwrap(),
        ],
        group: IpAddr::V6(MULTICAST_V6),
        min: 4,
    });
}

/// Our adverts, unsigned and signed, IPv4 and IPv6, as frames.
fn our_frames() -> Vec<(String, Vec<u8>)> {
    let key = AuthKey::new(1, &[0x5a; 32]).unwrap();
    let v4 = [Ipv4Addr::new(192, 0, 2, 100), Ipv4Addr::new(192, 0, 2, 101)];
    let v6: [Ipv6Addr; 1] = ["2001:db8::100".parse().unwrap()];
    let mut frames = Vec::new();
    for (family, addresses, src, dst) in [
        (
            "v4",
            Addresses::V4(&v4),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            IpAddr::V4(MULTICAST_V4),
        ),
        (
            "v6",
            Addresses::V6(&v6),
            "fe80::1".parse().unwrap(),
            IpAddr::V6(MULTICAST_V6),
        ),
    ] {
        for (how, signing) in [
            ("unsigned", Signing::None),
            (
                "signed",
                Signing::Hmac {
                    key: &key,
                    sequence: 1_790_000_000u64 << 32,
                },
            ),
        ] {
            let advert = Advert {
                vrid: 51,
                priority: 150,
                max_advert_interval: 100,
                addresses,
            };
            let mut buf = [0u8; 256];
            let n = vrrp::emit_frame(
                &advert,
                src,
                dst,
                vrrp::multicast_mac(dst).unwrap(),
                &signing,
                &mut buf,
            )
            .unwrap();
            frames.push((format!("{family} {how}"), buf[..n].to_vec()));
        }
    }
    frames
}

#[test]
fn tshark_decodes_our_adverts_as_valid_vrrp3() {
    let test = "tshark_decodes_our_adverts_as_valid_vrrp3";
    if !skip::on_path("tshark") {
        skip::skip(
            test,
            "`tshark` on PATH (install it: testbed/lib/common.sh's XVS_PACKAGES)",
        );
        return;
    }
    let frames = our_frames();
    let (text, verbose) = tshark(
        "vrrp-tshark",
        &frames.iter().map(|(_, f)| f.clone()).collect::<Vec<_>>(),
        &[
            "-o",
            "vrrp.v3_checksum_as_in_v2:FALSE",
            "-T",
            "fields",
            "-E",
            "separator=,",
            "-e",
            "vrrp.version",
            "-e",
            "vrrp.type",
            "-e",
            "vrrp.virt_rtr_id",
            "-e",
            "vrrp.prio",
            "-e",
            "vrrp.short_adver_int",
            "-e",
            "vrrp.checksum.status",
        ],
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), frames.len(), "{text}");
    for ((what, _), line) in frames.iter().zip(&lines) {
        // Version 3, advertisement, VRID 51, priority 150, 100 cs, and a
        // checksum status of 1: "Good" (0 is "Bad", 2 "Unverified").
        // But for a signed IPv4 advert: keepalived (and we, to pair with
        // it) sums the message only over IPv4, where this tshark (4.0,
        // older than auth_hmac) sums the trailer too, and says "Bad". Over
        // IPv6 the checksum covers the trailer on both sides.
        let want = if what == "v4 signed" {
            "3,1,51,150,100,0"
        } else {
            "3,1,51,150,100,1"
        };
        assert_eq!(*line, want, "{what}: {line}");
    }
    assert_eq!(
        verbose
            .matches("Virtual Router Redundancy Protocol")
            .count(),
        frames.len()
    );
    assert_eq!(
        verbose.matches("[Checksum Status: Good]").count(),
        frames.len() - 1,
        "{verbose}"
    );
    assert!(!verbose.contains("Malformed"), "{verbose}");
}

#[test]
fn our_frames_decode_here_too() {
    for (what, frame) in our_frames() {
        let eth = ethernet::Frame::new_checked(&frame[..]).unwrap();
        let family = match eth.ethertype() {
            ethernet::EtherType::Ipv4 => Family::V4,
            _ => Family::V6,
        };
        assert_eq!(eth.src_addr(), vrrp::virtual_mac(family, 51), "{what}");
        let advert = vrrp::receive(eth.payload()).unwrap();
        assert_eq!(advert.packet.family(), family);
        assert_eq!(advert.packet.trailer().is_some(), what.ends_with(" signed"));
    }
}
