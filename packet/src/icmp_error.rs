//! ICMP errors at the director: rewriting an error that crosses VS/NAT, and
//! building "fragmentation needed" (ICMPv4) / "packet too big" (ICMPv6)
//! replies.
//!
//! Under NAT an error travels in one of two directions, and the quoted
//! packet always travelled the other way:
//! - from the server side towards the client ([`nat_error_outbound`]), e.g.
//!   a real server's "port unreachable": the outer source and the quoted
//!   destination become the VIP and virtual port, so that the client sees an
//!   error about the packet it sent;
//! - from the client side towards a real server ([`nat_error_inbound`]),
//!   e.g. a router's "fragmentation needed" about a reply: the outer
//!   destination and the quoted source become the real server.
//!
//! This is what IPVS's `ip_vs_nat_icmp` does, with one difference: IPVS
//! recomputes the whole ICMP checksum and leaves the quoted transport
//! checksum stale; we update the quoted TCP/UDP checksum when the quote
//! holds it (as netfilter's NAT does) and every checksum incrementally.

use core::net::IpAddr;

use crate::checksum;
use crate::ethernet::{self, EtherType};
use crate::icmp::{self, V4_CODE_FRAG_NEEDED};
use crate::ip::IpProtocol;
use crate::ipv4;
use crate::ipv6;
use crate::parse::{Fragment, IcmpKind, IpFrame, IpVersion};
use crate::rewrite::{AddrBytes, Endpoint, RewriteError, read16, update_field, write16};
use crate::{tcp, udp};

/// An error from the server side going to the client: outer source and
/// quoted destination become `vip:vport`.
pub fn nat_error_outbound(
    frame: &mut [u8],
    ip: &IpFrame,
    vip: IpAddr,
    vport: u16,
) -> Result<(), RewriteError> {
    rewrite_error(frame, ip, Endpoint::Source, vip, vport)
}

/// An error from the client side going to a real server: outer destination
/// and quoted source become `rs:rs_port`.
pub fn nat_error_inbound(
    frame: &mut [u8],
    ip: &IpFrame,
    rs: IpAddr,
    rs_port: u16,
) -> Result<(), RewriteError> {
    rewrite_error(frame, ip, Endpoint::Destination, rs, rs_port)
}

/// Rewrites the outer `end` of an ICMP error and the opposite end of the
/// packet it quotes.
pub fn rewrite_error(
    frame: &mut [u8],
    ip: &IpFrame,
    end: Endpoint,
    addr: IpAddr,
    port: u16,
) -> Result<(), RewriteError> {
    let (Some(quoted), Some(IcmpKind::Error { .. })) = (ip.quoted, ip.icmp) else {
        return Err(RewriteError::WrongKind);
    };
    let new = AddrBytes::of(addr);
    if new.version() != ip.version {
        return Err(RewriteError::FamilyMismatch);
    }
    let width = new.len();
    let icmp_csum = ip.l4_offset + icmp::CHECKSUM_OFFSET;
    // Every 16-bit word we change inside the ICMP message is added to this
    // running update of the ICMP checksum.
    let mut icmp_check = read16(frame, icmp_csum);
    let mut track = |frame: &mut [u8], at: usize, old: &[u8]| {
        icmp_check = checksum::update_bytes(icmp_check, old, &frame[at..at + old.len()]);
    };

    // The outer header.
    let outer_at = ip.l3_offset + end.addr_offset(ip.version);
    let mut old = AddrBytes::zeroed(ip.version);
    old.bytes_mut()
        .copy_from_slice(&frame[outer_at..outer_at + width]);
    frame[outer_at..outer_at + width].copy_from_slice(new.bytes());
    match ip.version {
        IpVersion::V4 => update_field(
            frame,
            ip.l3_offset + ipv4::CHECKSUM_OFFSET,
            old.bytes(),
            new.bytes(),
        ),
        // ICMPv6's checksum covers the outer addresses through its pseudo-header.
        IpVersion::V6 => track(frame, outer_at, old.bytes()),
    }

    // The quoted IP header.
    let q_end = end.other();
    let q_at = quoted.l3_offset + q_end.addr_offset(ip.version);
    let mut q_old = AddrBytes::zeroed(ip.version);
    q_old
        .bytes_mut()
        .copy_from_slice(&frame[q_at..q_at + width]);
    frame[q_at..q_at + width].copy_from_slice(new.bytes());
    track(frame, q_at, q_old.bytes());
    if ip.version == IpVersion::V4 {
        let at = quoted.l3_offset + ipv4::CHECKSUM_OFFSET;
        let before = [frame[at], frame[at + 1]];
        update_field(frame, at, q_old.bytes(), new.bytes());
        track(frame, at, &before);
    }

    // The quoted transport header: port, and its checksum when quoted.
    let l4 = quoted.l4_offset;
    let l4_csum = match quoted.protocol {
        IpProtocol::Tcp => Some(l4 + tcp::CHECKSUM_OFFSET),
        IpProtocol::Udp => Some(l4 + udp::CHECKSUM_OFFSET),
        IpProtocol::Icmpv6 => Some(l4 + icmp::CHECKSUM_OFFSET),
        _ => None,
    }
    .filter(|at| at + 2 <= ip.ip_end)
    // An IPv4 UDP checksum of 0 means none: it stays 0.
    .filter(|at| {
        !(quoted.protocol == IpProtocol::Udp
            && ip.version == IpVersion::V4
            && read16(frame, *at) == 0)
    });
    if let Some(at) = l4_csum {
        let before = [frame[at], frame[at + 1]];
        update_field(frame, at, q_old.bytes(), new.bytes());
        track(frame, at, &before);
    }
    if matches!(quoted.protocol, IpProtocol::Tcp | IpProtocol::Udp) {
        let at = l4 + if q_end == Endpoint::Source { 0 } else { 2 };
        let before = [frame[at], frame[at + 1]];
        let old_port = read16(frame, at);
        write16(frame, at, port);
        track(frame, at, &before);
        if let Some(csum) = l4_csum {
            let before = [frame[csum], frame[csum + 1]];
            let mut value = checksum::update_u16(read16(frame, csum), old_port, port);
            if quoted.protocol == IpProtocol::Udp {
                value = checksum::udp_nonzero(value);
            }
            write16(frame, csum, value);
            track(frame, csum, &before);
        }
    }
    write16(frame, icmp_csum, icmp_check);
    Ok(())
}

/// How much of the offending packet an ICMPv4 error quotes: as much as fits
/// in 576 bytes (RFC 1812 §4.3.2.3).
pub const V4_QUOTE_MAX: usize = 576 - ipv4::HEADER_LEN - icmp::HEADER_LEN;
/// How much an ICMPv6 error quotes: as much as fits in the minimum MTU of
/// 1280 bytes (RFC 4443 §2.4 (c)).
pub const V6_QUOTE_MAX: usize = 1280 - ipv6::HEADER_LEN - icmp::HEADER_LEN;

/// Builds, into `out`, the reply to a packet too big for the next hop:
/// ICMPv4 "fragmentation needed" (type 3 code 4) with the next-hop MTU, or
/// ICMPv6 "packet too big" with the MTU, from `src` (the VIP the packet was
/// sent to, as the kernel would answer) to the packet's sender, quoting the
/// packet. The Ethernet addresses are the offending frame's, swapped, and
/// its VLAN tag is kept. Returns the length of the reply frame.
///
/// Refuses ([`RewriteError::WrongKind`]) to answer an ICMP error or a later
/// fragment (RFC 1122 §3.2.2).
pub fn build_too_big(
    out: &mut [u8],
    frame: &[u8],
    ip: &IpFrame,
    mtu: u16,
    src: IpAddr,
) -> Result<usize, RewriteError> {
    if matches!(ip.icmp, Some(IcmpKind::Error { .. })) || ip.fragment == Fragment::Later {
        return Err(RewriteError::WrongKind);
    }
    let (ip_header, quote_max) = match ip.version {
        IpVersion::V4 => (ipv4::HEADER_LEN, V4_QUOTE_MAX),
        IpVersion::V6 => (ipv6::HEADER_LEN, V6_QUOTE_MAX),
    };
    let quote_len = ip.ip_len().min(quote_max);
    let l2 = ip.l3_offset;
    let icmp_len = icmp::HEADER_LEN + quote_len;
    let total = l2 + ip_header + icmp_len;
    let out = out.get_mut(..total).ok_or(RewriteError::BufferTooSmall)?;

    // Link layer: swap the MACs, keep the VLAN tag and EtherType.
    out[..l2].copy_from_slice(&frame[..l2]);
    let eth_in = ethernet::Frame::new_unchecked(frame);
    let mut eth = ethernet::Frame::new_unchecked(&mut out[..l2]);
    eth.set_dst_addr(eth_in.src_addr());
    eth.set_src_addr(eth_in.dst_addr());

    let icmp_at = l2 + ip_header;
    out[icmp_at + icmp::HEADER_LEN..]
        .copy_from_slice(&frame[ip.l3_offset..ip.l3_offset + quote_len]);
    let mut msg = icmp::Packet::new_unchecked(&mut out[icmp_at..]);
    msg.set_checksum(0);
    let icmp_len16 = icmp_len as u16;
    match (ip.version, src, ip.flow.src) {
        (IpVersion::V4, IpAddr::V4(src), IpAddr::V4(dst)) => {
            msg.set_msg_type(3);
            msg.set_msg_code(V4_CODE_FRAG_NEEDED);
            msg.set_rest(u32::from(mtu));
            let value = checksum::checksum(&out[icmp_at..]);
            write16(out, icmp_at + icmp::CHECKSUM_OFFSET, value);
            let mut h = ipv4::Packet::new_unchecked(&mut out[l2..icmp_at]);
            h.set_version_and_header_len(ipv4::HEADER_LEN);
            // Internetwork control precedence, as the kernel sends its ICMP.
            h.set_dscp_ecn(0xc0);
            h.set_total_len(ipv4::HEADER_LEN as u16 + icmp_len16);
            h.set_ident(0);
            h.set_flags_and_offset(false, false, 0);
            h.set_ttl(64);
            h.set_protocol(IpProtocol::Icmp);
            h.set_src_addr(src);
            h.set_dst_addr(dst);
            h.fill_checksum();
        }
        (IpVersion::V6, IpAddr::V6(src), IpAddr::V6(dst)) => {
            msg.set_msg_type(2);
            msg.set_msg_code(0);
            msg.set_rest(u32::from(mtu));
            let pseudo =
                checksum::pseudo_header_v6(&src, &dst, IpProtocol::Icmpv6, u32::from(icmp_len16));
            let value = checksum::finish(checksum::combine(pseudo, checksum::sum(&out[icmp_at..])));
            write16(out, icmp_at + icmp::CHECKSUM_OFFSET, value);
            let mut h = ipv6::Packet::new_unchecked(&mut out[l2..icmp_at]);
            h.set_version_tc_flow(0, 0);
            h.set_payload_len(icmp_len16);
            h.set_next_header(IpProtocol::Icmpv6);
            h.set_hop_limit(64);
            h.set_src_addr(&src);
            h.set_dst_addr(&dst);
        }
        _ => return Err(RewriteError::FamilyMismatch),
    }
    debug_assert!(matches!(
        ethernet::Frame::new_unchecked(&out[..]).ethertype(),
        EtherType::Ipv4 | EtherType::Ipv6 | EtherType::Vlan
    ));
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::FlowOrigin;
    use crate::testkit::*;

    fn addr(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn port_unreachable_from_a_real_server_reaches_the_client_as_from_the_vip() {
        // The director sent client:5000 -> rs 192.0.2.11:5353 (after NAT); the
        // real server answers port unreachable, quoting it whole.
        let sent = frame4(
            "198.51.100.7",
            "192.0.2.11",
            L4::Udp {
                sport: 5000,
                dport: 5353,
            },
            b"query",
        );
        let mut err = icmp4_error("192.0.2.11", "198.51.100.7", 3, 3, [0; 4], &sent[14..]);
        verify_checksums(&err).unwrap();
        let p = ip(&err);
        assert_eq!(p.origin, FlowOrigin::IcmpError);
        nat_error_outbound(&mut err, &p, addr("203.0.113.10"), 53).unwrap();
        verify_checksums(&err).expect("outer, ICMP, quoted IP and quoted UDP checksums");
        let after = ip(&err);
        // Keyed as the quote reversed: VIP:53 -> client:5000, the direction
        // of the connection's replies.
        assert_eq!(
            (after.flow.src, after.flow.sport),
            (addr("203.0.113.10"), 53)
        );
        assert_eq!(
            (after.flow.dst, after.flow.dport),
            (addr("198.51.100.7"), 5000)
        );
        let outer = ipv4::Packet::new_checked(&err[14..]).unwrap();
        assert_eq!(
            outer.src_addr(),
            "203.0.113.10".parse::<core::net::Ipv4Addr>().unwrap()
        );
    }

    #[test]
    fn frag_needed_from_the_client_side_reaches_the_real_server() {
        // rs reply after NAT: VIP:80 -> client:40000, quoted whole.
        let reply = frame4(
            "203.0.113.10",
            "198.51.100.7",
            L4::Ack {
                sport: 80,
                dport: 40000,
            },
            &[1; 30],
        );
        let mut err = icmp4_error(
            "198.51.100.254",
            "203.0.113.10",
            3,
            4,
            [0, 0, 0x04, 0xd8],
            &reply[14..],
        );
        let p = ip(&err);
        nat_error_inbound(&mut err, &p, addr("192.0.2.11"), 8080).unwrap();
        verify_checksums(&err).unwrap();
        let after = ip(&err);
        // The error now goes to the real server, about its own packet.
        assert_eq!(after.flow, p.flow.with_dst(addr("192.0.2.11"), 8080));
        let q = after.quoted.unwrap();
        let quoted = ipv4::Packet::new_unchecked(&err[q.l3_offset..]);
        assert_eq!(
            quoted.src_addr(),
            "192.0.2.11".parse::<core::net::Ipv4Addr>().unwrap()
        );
        assert!(quoted.verify_checksum());
    }

    #[test]
    fn quote_without_the_tcp_checksum_still_verifies() {
        // Only 8 bytes of TCP quoted: ports and sequence, no checksum field.
        let reply = frame4(
            "203.0.113.10",
            "198.51.100.7",
            L4::Ack {
                sport: 80,
                dport: 40000,
            },
            &[],
        );
        let mut err = icmp4_error(
            "198.51.100.254",
            "203.0.113.10",
            11,
            0,
            [0; 4],
            &reply[14..14 + 28],
        );
        let p = ip(&err);
        nat_error_inbound(&mut err, &p, addr("192.0.2.11"), 8080).unwrap();
        verify_checksums(&err).unwrap();
        assert_eq!(u16::from_be_bytes([err[42 + 20], err[42 + 21]]), 8080);
    }

    #[test]
    fn icmpv6_error_both_ways() {
        let sent = frame6(
            "2001:db8:1::7",
            "2001:db8:2::11",
            L4::Udp {
                sport: 5000,
                dport: 5353,
            },
            b"q",
        );
        let mut err = icmp6_error("2001:db8:2::11", "2001:db8:1::7", 1, 4, [0; 4], &sent[14..]);
        let p = ip(&err);
        nat_error_outbound(&mut err, &p, addr("2001:db8::10"), 53).unwrap();
        verify_checksums(&err).unwrap();
        let reply = frame6(
            "2001:db8::10",
            "2001:db8:1::7",
            L4::Ack {
                sport: 80,
                dport: 40000,
            },
            b"data",
        );
        let mut ptb = icmp6_error(
            "2001:db8:1::fe",
            "2001:db8::10",
            2,
            0,
            [0, 0, 5, 0],
            &reply[14..],
        );
        let p = ip(&ptb);
        nat_error_inbound(&mut ptb, &p, addr("2001:db8:2::11"), 8080).unwrap();
        verify_checksums(&ptb).unwrap();
    }

    #[test]
    fn quoted_echo_keeps_its_identifier() {
        let sent = frame4(
            "198.51.100.7",
            "192.0.2.11",
            L4::EchoRequest { ident: 99 },
            b"ping",
        );
        let mut err = icmp4_error("192.0.2.254", "198.51.100.7", 11, 0, [0; 4], &sent[14..]);
        let p = ip(&err);
        nat_error_outbound(&mut err, &p, addr("203.0.113.10"), 0).unwrap();
        verify_checksums(&err).unwrap();
        let after = ip(&err);
        assert_eq!(
            (after.flow.src, after.flow.dport),
            (addr("203.0.113.10"), 99)
        );
    }

    #[test]
    fn not_an_error_is_refused() {
        let mut f = frame4(
            "198.51.100.7",
            "203.0.113.10",
            L4::Syn {
                sport: 1,
                dport: 80,
            },
            b"",
        );
        let p = ip(&f);
        assert_eq!(
            nat_error_outbound(&mut f, &p, addr("203.0.113.10"), 80),
            Err(RewriteError::WrongKind)
        );
    }

    #[test]
    fn frag_needed_quotes_the_packet() {
        let big = frame4(
            "198.51.100.7",
            "203.0.113.10",
            L4::Ack {
                sport: 40000,
                dport: 80,
            },
            &[0xab; 1400],
        );
        let p = ip(&big);
        let mut out = [0u8; 700];
        let len = build_too_big(&mut out, &big, &p, 1480, addr("203.0.113.10")).unwrap();
        assert_eq!(len, 14 + 576);
        let reply = &out[..len];
        verify_checksums(reply).unwrap();
        assert_eq!(&reply[..6], &CLIENT_MAC);
        assert_eq!(&reply[6..12], &DIRECTOR_MAC);
        let r = ip(reply);
        assert_eq!(
            r.icmp,
            Some(IcmpKind::Error {
                msg_type: 3,
                code: 4
            })
        );
        // It is keyed like the connection's own traffic back to the client.
        assert_eq!(r.flow, p.flow.reversed());
        let msg = icmp::Packet::new_checked(&reply[34..]).unwrap();
        assert_eq!(msg.v4_next_hop_mtu(), 1480);
        assert_eq!(&msg.payload()[..V4_QUOTE_MAX], &big[14..14 + V4_QUOTE_MAX]);
    }

    #[test]
    fn packet_too_big_v6() {
        let big = frame6(
            "2001:db8:1::7",
            "2001:db8::10",
            L4::Ack {
                sport: 40000,
                dport: 80,
            },
            &[0xcd; 1400],
        );
        let p = ip(&big);
        let mut out = [0u8; 1600];
        let len = build_too_big(&mut out, &big, &p, 1280, addr("2001:db8::10")).unwrap();
        assert_eq!(len, 14 + 1280);
        verify_checksums(&out[..len]).unwrap();
        let r = ip(&out[..len]);
        assert_eq!(
            r.icmp,
            Some(IcmpKind::Error {
                msg_type: 2,
                code: 0
            })
        );
        assert_eq!(icmp::Packet::new_unchecked(&out[54..len]).v6_mtu(), 1280);
    }

    #[test]
    fn small_packets_are_quoted_whole_and_errors_get_no_error() {
        let small = frame4(
            "198.51.100.7",
            "203.0.113.10",
            L4::Udp {
                sport: 1,
                dport: 53,
            },
            b"abc",
        );
        let p = ip(&small);
        let mut out = [0u8; 600];
        let len = build_too_big(&mut out, &small, &p, 1000, addr("203.0.113.10")).unwrap();
        assert_eq!(len, 14 + 20 + 8 + small.len() - 14);
        verify_checksums(&out[..len]).unwrap();
        let e = ip(&out[..len]);
        let mut again = [0u8; 600];
        assert_eq!(
            build_too_big(&mut again, &out[..len], &e, 1000, addr("203.0.113.10")),
            Err(RewriteError::WrongKind)
        );
        assert_eq!(
            build_too_big(&mut [0u8; 40], &small, &p, 1000, addr("203.0.113.10")),
            Err(RewriteError::BufferTooSmall)
        );
    }
}
