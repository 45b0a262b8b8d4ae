//! Test frames built by an independent implementation (etherparse), and an
//! independent checksum verifier, so that our parser and rewrites are never
//! checked only against themselves.

use std::net::IpAddr;
use std::string::{String, ToString};
use std::vec::Vec;

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

/// Parses a frame that must be IP.
pub fn ip(frame: &[u8]) -> crate::parse::IpFrame {
    match crate::parse::parse(frame) {
        Ok(crate::parse::Parsed::Ip(ip)) => ip,
        other => panic!("expected an IP frame, got {other:?}"),
    }
}

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

pub fn v4(s: &str) -> [u8; 4] {
    s.parse::<std::net::Ipv4Addr>().unwrap().octets()
}

pub fn v6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

/// What transport to put in a test frame.
#[derive(Clone, Copy, Debug)]
pub enum L4 {
    Syn { sport: u16, dport: u16 },
    Ack { sport: u16, dport: u16 },
    Udp { sport: u16, dport: u16 },
    EchoRequest { ident: u16 },
    EchoReply { ident: u16 },
}

/// An IPv4 frame client → director.
pub fn frame4(src: &str, dst: &str, l4: L4, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC).ipv4(v4(src), v4(dst), 64);
    with_transport(b, false, l4, payload)
}

/// An IPv6 frame client → director.
pub fn frame6(src: &str, dst: &str, l4: L4, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC).ipv6(v6(src), v6(dst), 64);
    with_transport(b, true, l4, payload)
}

/// Finishes a frame whose IP header is built; ICMP echo is ICMPv6's over IPv6.
fn with_transport(
    b: etherparse::PacketBuilderStep<etherparse::IpHeaders>,
    v6: bool,
    l4: L4,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    match l4 {
        L4::EchoRequest { ident } if v6 => b.icmpv6_echo_request(ident, 1).write(&mut out, payload),
        L4::EchoReply { ident } if v6 => b.icmpv6_echo_reply(ident, 1).write(&mut out, payload),
        L4::EchoRequest { ident } => b.icmpv4_echo_request(ident, 1).write(&mut out, payload),
        L4::EchoReply { ident } => b.icmpv4_echo_reply(ident, 1).write(&mut out, payload),
        L4::Syn { sport, dport } => b
            .tcp(sport, dport, 1000, 64240)
            .syn()
            .write(&mut out, payload),
        L4::Ack { sport, dport } => b
            .tcp(sport, dport, 1001, 64240)
            .ack(5001)
            .write(&mut out, payload),
        L4::Udp { sport, dport } => b.udp(sport, dport).write(&mut out, payload),
    }
    .unwrap();
    out
}

/// An ICMPv4 error from `src` to `dst` quoting `quoted` (an IP packet).
pub fn icmp4_error(
    src: &str,
    dst: &str,
    msg_type: u8,
    code: u8,
    rest: [u8; 4],
    quoted: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv4(v4(src), v4(dst), 64)
        .icmpv4_raw(msg_type, code, rest)
        .write(&mut out, quoted)
        .unwrap();
    out
}

/// An ICMPv6 error from `src` to `dst` quoting `quoted` (an IP packet).
pub fn icmp6_error(
    src: &str,
    dst: &str,
    msg_type: u8,
    code: u8,
    rest: [u8; 4],
    quoted: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv6(v6(src), v6(dst), 64)
        .icmpv6_raw(msg_type, code, rest)
        .write(&mut out, quoted)
        .unwrap();
    out
}

/// Verifies every checksum of an Ethernet frame with etherparse's own code:
/// the IPv4 header, TCP/UDP with their pseudo-header (an IPv4 UDP checksum
/// of 0 counts as "none"), ICMP and ICMPv6; and for an ICMP error whose quote
/// is a whole packet, the quoted packet's checksums too.
pub fn verify_checksums(frame: &[u8]) -> Result<(), String> {
    let sliced = SlicedPacket::from_ethernet(frame).map_err(|e| e.to_string())?;
    verify_sliced(&sliced)
}

fn verify_sliced(sliced: &SlicedPacket<'_>) -> Result<(), String> {
    let (src, dst): (IpAddr, IpAddr) = match &sliced.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            let stored = h.header_checksum();
            let computed = h.to_header().calc_header_checksum();
            if stored != computed {
                return Err(std::format!(
                    "IPv4 header checksum {stored:#06x}, expected {computed:#06x}"
                ));
            }
            (h.source_addr().into(), h.destination_addr().into())
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header();
            (h.source_addr().into(), h.destination_addr().into())
        }
        _ => return Err("not an IP frame".to_string()),
    };
    let check = |what: &str, stored: u16, computed: u16| {
        if stored == computed {
            Ok(())
        } else {
            Err(std::format!(
                "{what} checksum {stored:#06x}, expected {computed:#06x}"
            ))
        }
    };
    match (&sliced.transport, src, dst) {
        (Some(TransportSlice::Tcp(t)), IpAddr::V4(s), IpAddr::V4(d)) => check(
            "TCP",
            t.checksum(),
            t.calc_checksum_ipv4(s.octets(), d.octets()).unwrap(),
        ),
        (Some(TransportSlice::Tcp(t)), IpAddr::V6(s), IpAddr::V6(d)) => check(
            "TCP",
            t.checksum(),
            t.calc_checksum_ipv6(s.octets(), d.octets()).unwrap(),
        ),
        (Some(TransportSlice::Udp(u)), IpAddr::V4(s), IpAddr::V4(d)) => {
            if u.checksum() == 0 {
                return Ok(());
            }
            let computed =
                u.to_header()
                    .calc_checksum_ipv4_raw(s.octets(), d.octets(), u.payload());
            check("UDP", u.checksum(), computed.unwrap())
        }
        (Some(TransportSlice::Udp(u)), IpAddr::V6(s), IpAddr::V6(d)) => {
            let computed =
                u.to_header()
                    .calc_checksum_ipv6_raw(s.octets(), d.octets(), u.payload());
            check("UDP", u.checksum(), computed.unwrap())
        }
        (Some(TransportSlice::Icmpv4(i)), _, _) => {
            check(
                "ICMP",
                i.checksum(),
                i.icmp_type().calc_checksum(i.payload()),
            )?;
            verify_quote(8, i.slice())
        }
        (Some(TransportSlice::Icmpv6(i)), IpAddr::V6(s), IpAddr::V6(d)) => {
            if !i.is_checksum_valid(s.octets(), d.octets()) {
                return Err("ICMPv6 checksum does not verify".to_string());
            }
            verify_quote(8, i.slice())
        }
        (None, _, _) => Ok(()),
        (other, _, _) => Err(std::format!("unexpected transport {other:?}")),
    }
}

/// For ICMP errors: when the quote is a whole packet, verify it too.
fn verify_quote(header_len: usize, icmp: &[u8]) -> Result<(), String> {
    let t = icmp[0];
    let is_error = matches!(t, 1 | 2 | 3 | 4 | 11);
    if !is_error || header_len != 8 {
        return Ok(());
    }
    let quote = &icmp[8..];
    match SlicedPacket::from_ip(quote) {
        Ok(inner) if inner.transport.is_some() => {
            verify_sliced(&inner).map_err(|e| std::format!("quoted packet: {e}"))
        }
        _ => Ok(()),
    }
}
