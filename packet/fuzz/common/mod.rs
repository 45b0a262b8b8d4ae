//! Helpers shared by the fuzz targets: reading rewrite parameters from the
//! front of the input, and an independent checksum oracle (a full recompute
//! over the bytes, never the crate's incremental update) to compare the
//! rewrites against.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use xvs_packet::checksum;
use xvs_packet::parse::{Fragment, IpVersion};
use xvs_packet::{IpFrame, IpProtocol, Parsed, parse};

/// Splits `n` parameter bytes off the front of the input.
pub fn split(data: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (data.len() >= n).then(|| data.split_at(n))
}

/// An address of the family `v4` from 16 input bytes (the first 4 for IPv4).
pub fn addr(v4: bool, b: &[u8]) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    } else {
        let mut o = [0u8; 16];
        o.copy_from_slice(&b[..16]);
        IpAddr::V6(Ipv6Addr::from(o))
    }
}

pub fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The frame as an IP frame, if it parses as one.
pub fn parse_ip(frame: &[u8]) -> Option<IpFrame> {
    match parse(frame) {
        Ok(Parsed::Ip(ip)) => Some(ip),
        _ => None,
    }
}

/// Sum over a pseudo-header plus `data`, folded: 0xffff when the checksum
/// inside `data` is right.
fn verifies(pseudo: u32, data: &[u8]) -> bool {
    checksum::fold(checksum::combine(pseudo, checksum::sum(data))) == 0xffff
}

/// Whether the transport checksum of a whole (unfragmented) packet verifies,
/// recomputed from scratch. `None` when there is nothing to verify: a
/// fragment, a protocol without a checksum we know, an IPv4 UDP checksum of
/// 0 ("none"), or an ICMP error (its checksum is checked by
/// [`icmp_checksum_ok`]).
pub fn l4_checksum_ok(frame: &[u8], ip: &IpFrame) -> Option<bool> {
    if ip.fragment != Fragment::None {
        return None;
    }
    let seg = &frame[ip.l4_offset..ip.ip_end];
    let proto = l4_proto(frame, ip);
    match proto {
        IpProtocol::Tcp | IpProtocol::Udp | IpProtocol::Icmpv6 => {}
        IpProtocol::Icmp => return Some(verifies(0, seg)),
        _ => return None,
    }
    if proto == IpProtocol::Udp && ip.version == IpVersion::V4 && u16_at(seg, 6) == 0 {
        return None;
    }
    Some(verifies(pseudo(frame, ip, proto, seg.len()), seg))
}

/// The ICMP/ICMPv6 checksum of the message at `ip.l4_offset` verifies.
pub fn icmp_checksum_ok(frame: &[u8], ip: &IpFrame) -> bool {
    let seg = &frame[ip.l4_offset..ip.ip_end];
    match ip.version {
        IpVersion::V4 => verifies(0, seg),
        IpVersion::V6 => verifies(pseudo(frame, ip, IpProtocol::Icmpv6, seg.len()), seg),
    }
}

/// The transport protocol as written in the packet (the flow key of an ICMP
/// error carries the quoted packet's protocol instead).
pub fn l4_proto(frame: &[u8], ip: &IpFrame) -> IpProtocol {
    match (ip.icmp, ip.version) {
        (Some(_), IpVersion::V4) => IpProtocol::Icmp,
        (Some(_), IpVersion::V6) => IpProtocol::Icmpv6,
        (None, IpVersion::V4) => IpProtocol::from(frame[ip.l3_offset + 9]),
        (None, IpVersion::V6) => ip.flow.proto,
    }
}

fn pseudo(frame: &[u8], ip: &IpFrame, proto: IpProtocol, len: usize) -> u32 {
    let l3 = ip.l3_offset;
    match ip.version {
        IpVersion::V4 => {
            let a =
                |at: usize| Ipv4Addr::new(frame[at], frame[at + 1], frame[at + 2], frame[at + 3]);
            checksum::pseudo_header_v4(a(l3 + 12), a(l3 + 16), proto, len as u16)
        }
        IpVersion::V6 => {
            let a = |at: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&frame[at..at + 16]);
                Ipv6Addr::from(o)
            };
            checksum::pseudo_header_v6(&a(l3 + 8), &a(l3 + 24), proto, len as u32)
        }
    }
}

/// The quoted IPv4 header's checksum verifies (the parser does not check it).
pub fn quoted_v4_header_ok(frame: &[u8], ip: &IpFrame) -> Option<bool> {
    let q = ip.quoted?;
    if ip.version != IpVersion::V4 {
        return None;
    }
    Some(verifies(0, &frame[q.l3_offset..q.l4_offset]))
}
