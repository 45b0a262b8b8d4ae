//! `xvs-rewrite` over the committed sample capture: every written frame is
//! checked with etherparse (an independent implementation): it parses, goes
//! to the real server, and every checksum verifies.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a failure should panic"
)]

use std::path::PathBuf;
use std::process::Command;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_file::pcap::PcapReader;

fn sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testbed/captures/sample.pcap")
}

fn run(method: &str) -> (String, Vec<Vec<u8>>) {
    let out = std::env::temp_dir().join(format!(
        "xvs-rewrite-test-{method}-{}.pcap",
        std::process::id()
    ));
    let result = Command::new(env!("CARGO_BIN_EXE_xvs-rewrite"))
        .args([
            "--in",
            sample().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--method",
            method,
        ])
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let mut reader = PcapReader::new(std::fs::File::open(&out).unwrap()).unwrap();
    let mut frames = Vec::new();
    while let Some(p) = reader.next_packet() {
        frames.push(p.unwrap().data.into_owned());
    }
    std::fs::remove_file(&out).unwrap();
    (String::from_utf8(result.stdout).unwrap(), frames)
}

/// Verifies the L4 checksum of a TCP or UDP frame; returns the destination.
fn verify(frame: &[u8]) -> std::net::IpAddr {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let (src, dst): (std::net::IpAddr, std::net::IpAddr) = match &p.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            assert_eq!(
                h.header_checksum(),
                h.to_header().calc_header_checksum(),
                "IPv4 header checksum"
            );
            (h.source_addr().into(), h.destination_addr().into())
        }
        Some(NetSlice::Ipv6(ip)) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        _ => panic!("not IP"),
    };
    match (&p.transport, src, dst) {
        (Some(TransportSlice::Tcp(t)), std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
            assert_eq!(
                t.checksum(),
                t.calc_checksum_ipv4(s.octets(), d.octets()).unwrap()
            )
        }
        (Some(TransportSlice::Tcp(t)), std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
            assert_eq!(
                t.checksum(),
                t.calc_checksum_ipv6(s.octets(), d.octets()).unwrap()
            )
        }
        (Some(TransportSlice::Udp(u)), std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
            let c = u
                .to_header()
                .calc_checksum_ipv4_raw(s.octets(), d.octets(), u.payload())
                .unwrap();
            assert_eq!(u.checksum(), c)
        }
        (Some(TransportSlice::Icmpv4(i)), _, _) => {
            assert_eq!(i.checksum(), i.icmp_type().calc_checksum(i.payload()))
        }
        (other, _, _) => panic!("unexpected transport {other:?}"),
    }
    dst
}

#[test]
fn nat_rewrites_every_ip_frame_and_checksums_verify() {
    let (stdout, frames) = run("nat");
    // 11 frames: ARP passed, bad checksum and truncated frame dropped.
    assert_eq!(frames.len(), 8, "{stdout}");
    assert!(
        stdout.contains("#9   Arp: not IP, passed to the kernel"),
        "{stdout}"
    );
    assert!(
        stdout.contains("#10  dropped: IPv4 header: BadChecksum"),
        "{stdout}"
    );
    assert!(
        stdout.contains("#11  dropped: IPv4 header: BadTotalLen"),
        "{stdout}"
    );
    let mut to_rs = 0;
    for frame in &frames {
        let dst = verify(frame);
        let rs: [std::net::IpAddr; 2] = [
            "192.0.2.11".parse().unwrap(),
            "2001:db8:2::11".parse().unwrap(),
        ];
        // The ICMP error goes to the real server too (its outer destination).
        assert!(rs.contains(&dst), "destination {dst}");
        to_rs += 1;
    }
    assert_eq!(to_rs, 8);
}

#[test]
fn tun_adds_an_outer_header_to_the_real_server() {
    let (_, frames) = run("tun");
    assert_eq!(frames.len(), 8);
    let first = SlicedPacket::from_ethernet(&frames[0]).unwrap();
    match &first.net {
        Some(NetSlice::Ipv4(ip)) => {
            assert_eq!(ip.header().protocol(), etherparse::IpNumber::IPV4);
            assert_eq!(ip.header().destination(), [192, 0, 2, 11]);
            assert_eq!(
                ip.header().header_checksum(),
                ip.header().to_header().calc_header_checksum()
            );
        }
        other => panic!("expected an outer IPv4 header, got {other:?}"),
    }
}

#[test]
fn unreadable_input_is_a_clear_error() {
    let result = Command::new(env!("CARGO_BIN_EXE_xvs-rewrite"))
        .args(["--in", "/nonexistent.pcap", "--out", "/tmp/x.pcap"])
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(2));
    let err = String::from_utf8_lossy(&result.stderr);
    assert!(err.contains("cannot open /nonexistent.pcap"), "{err}");
}
