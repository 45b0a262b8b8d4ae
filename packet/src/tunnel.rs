//! VS/TUN: encapsulate the client's IP packet in an outer IPv4 (protocol 4,
//! IPIP; or 41 for an IPv6 inner packet) or IPv6 (next header 4 or 41)
//! header addressed to the real server, which decapsulates it and answers
//! the client directly.
//!
//! The outer header is written into headroom in front of the frame: the
//! Ethernet header (and VLAN tag) moves back by the outer header's length
//! and the inner packet is not copied. The outer source can be fixed, or
//! derived from the inner flow inside a configured prefix (as Katran does)
//! so that a real server's NIC spreads tunnelled flows over its receive
//! queues by RSS — with one fixed source every flow would hash to one queue.
//! For an IPv6 outer header the flow label is derived from the inner flow
//! for the same reason. DF (IPv4 outer) follows the inner packet's DF; an
//! IPv6 inner packet is never fragmented on the way, so it sets DF.
//!
//! The MTU is the caller's business: see [`outer_len`] to size the result.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::ethernet::EtherType;
use crate::ip::IpProtocol;
use crate::ipv4;
use crate::ipv6;
use crate::parse::{IpFrame, IpVersion};
use crate::rewrite::RewriteError;

/// Where the outer source address comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OuterSource {
    /// Always this address (the director's own).
    Fixed(IpAddr),
    /// `prefix` with its host bits (beyond `prefix_len`) taken from a hash of
    /// the inner flow's client address and port.
    FromFlow {
        /// The prefix the sources are drawn from.
        prefix: IpAddr,
        /// Its length in bits.
        prefix_len: u8,
    },
}

/// How to encapsulate for one real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunnel {
    /// The real server's address (the outer destination); its family picks
    /// the outer header.
    pub dst: IpAddr,
    /// The outer source.
    pub src: OuterSource,
    /// Outer TTL / hop limit.
    pub ttl: u8,
}

/// Length of the outer header for a real server of this family.
#[must_use]
pub fn outer_len(dst: IpAddr) -> usize {
    match dst {
        IpAddr::V4(_) => ipv4::HEADER_LEN,
        IpAddr::V6(_) => ipv6::HEADER_LEN,
    }
}

/// A 32-bit hash of the inner client's address and port (the quantities
/// that tell flows apart at a real server), the kernel's golden-ratio
/// multiply over the folded words.
#[must_use]
pub fn flow_hash(client: IpAddr, client_port: u16) -> u32 {
    let folded = match client {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            w(0) ^ w(4) ^ w(8) ^ w(12)
        }
    };
    (folded ^ (u32::from(client_port) << 16 | u32::from(client_port))).wrapping_mul(0x61c8_8647)
}

fn source_address(src: OuterSource, hash: u32, family_v4: bool) -> Result<IpAddr, RewriteError> {
    match src {
        OuterSource::Fixed(addr) if addr.is_ipv4() == family_v4 => Ok(addr),
        OuterSource::FromFlow {
            prefix: IpAddr::V4(p),
            prefix_len,
        } if family_v4 => {
            let host_bits = 32u32.saturating_sub(u32::from(prefix_len));
            let mask = if host_bits >= 32 {
                u32::MAX
            } else {
                (1u32 << host_bits) - 1
            };
            Ok(IpAddr::V4(Ipv4Addr::from(
                (u32::from(p) & !mask) | (hash & mask),
            )))
        }
        OuterSource::FromFlow {
            prefix: IpAddr::V6(p),
            prefix_len,
        } if !family_v4 => {
            let host_bits = 128u32.saturating_sub(u32::from(prefix_len)).min(32);
            let mask = if host_bits >= 32 {
                u32::MAX
            } else {
                (1u32 << host_bits) - 1
            };
            let base = u128::from(p);
            let low = ((base as u32) & !mask) | (hash & mask);
            Ok(IpAddr::V6(Ipv6Addr::from(
                (base & !u128::from(u32::MAX)) | u128::from(low),
            )))
        }
        _ => Err(RewriteError::FamilyMismatch),
    }
}

/// Encapsulates the frame at `buf[start..start + len]` in place, writing the
/// outer header into the headroom before `start`. Returns the new start and
/// length of the frame. `ident` is the outer IPv4 identification (the
/// caller keeps a counter; unused for an IPv6 outer header).
///
/// Ethernet padding after the inner packet is dropped. The MAC addresses
/// are left as they were: the caller sets them for the next hop.
pub fn encapsulate(
    buf: &mut [u8],
    start: usize,
    len: usize,
    ip: &IpFrame,
    tunnel: &Tunnel,
    ident: u16,
) -> Result<(usize, usize), RewriteError> {
    let outer = outer_len(tunnel.dst);
    let new_start = start.checked_sub(outer).ok_or(RewriteError::NoHeadroom)?;
    if start + len > buf.len() || ip.ip_end > len {
        return Err(RewriteError::BufferTooSmall);
    }
    let inner_len = ip.ip_len();
    let l2 = ip.l3_offset;
    let hash = flow_hash(ip.flow.src, ip.flow.sport);
    let src = source_address(tunnel.src, hash, tunnel.dst.is_ipv4())?;
    let (inner_proto, tos) = match ip.version {
        IpVersion::V4 => (IpProtocol::Ipip, buf[start + l2 + 1]),
        IpVersion::V6 => {
            let b = &buf[start + l2..start + l2 + 2];
            (IpProtocol::Ipv6, (b[0] << 4) | (b[1] >> 4))
        }
    };
    // Move the link-layer header back; the inner packet stays where it is.
    buf.copy_within(start..start + l2, new_start);
    let ethertype_at = new_start + l2 - 2;
    let outer_at = new_start + l2;
    let header = &mut buf[outer_at..outer_at + outer];
    let ethertype = match (tunnel.dst, src) {
        (IpAddr::V4(dst), IpAddr::V4(src)) => {
            let total =
                u16::try_from(inner_len + outer).map_err(|_| RewriteError::BufferTooSmall)?;
            let mut p = ipv4::Packet::new_unchecked(&mut *header);
            p.set_version_and_header_len(ipv4::HEADER_LEN);
            p.set_dscp_ecn(tos);
            p.set_total_len(total);
            p.set_ident(ident);
            p.set_flags_and_offset(ip.dont_frag, false, 0);
            p.set_ttl(tunnel.ttl);
            p.set_protocol(inner_proto);
            p.set_src_addr(src);
            p.set_dst_addr(dst);
            p.fill_checksum();
            EtherType::Ipv4
        }
        (IpAddr::V6(dst), IpAddr::V6(src)) => {
            let payload = u16::try_from(inner_len).map_err(|_| RewriteError::BufferTooSmall)?;
            let mut p = ipv6::Packet::new_unchecked(&mut *header);
            p.set_version_tc_flow(tos, hash & 0x000f_ffff);
            p.set_payload_len(payload);
            p.set_next_header(inner_proto);
            p.set_hop_limit(tunnel.ttl);
            p.set_src_addr(&src);
            p.set_dst_addr(&dst);
            EtherType::Ipv6
        }
        _ => return Err(RewriteError::FamilyMismatch),
    };
    buf[ethertype_at..ethertype_at + 2].copy_from_slice(&u16::from(ethertype).to_be_bytes());
    Ok((new_start, l2 + outer + inner_len))
}

/// Removes the outer header of an encapsulated frame in place (what the
/// real-server side does; also used by tests to check the round trip).
/// `ip` is the parse of the encapsulated frame. Returns the new start and
/// length.
pub fn decapsulate(
    buf: &mut [u8],
    start: usize,
    ip: &IpFrame,
) -> Result<(usize, usize), RewriteError> {
    let inner_ether = match ip.flow.proto {
        IpProtocol::Ipip => EtherType::Ipv4,
        IpProtocol::Ipv6 => EtherType::Ipv6,
        _ => return Err(RewriteError::WrongKind),
    };
    let l2 = ip.l3_offset;
    let outer = ip.l4_offset - ip.l3_offset;
    let new_start = start + outer;
    buf.copy_within(start..start + l2, new_start);
    let at = new_start + l2 - 2;
    buf[at..at + 2].copy_from_slice(&u16::from(inner_ether).to_be_bytes());
    Ok((new_start, l2 + (ip.ip_end - ip.l4_offset)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;

    const HEADROOM: usize = 64;

    fn with_headroom(frame: &[u8]) -> std::vec::Vec<u8> {
        let mut buf = std::vec![0u8; HEADROOM];
        buf.extend_from_slice(frame);
        buf
    }

    fn tunnel_to(dst: &str) -> Tunnel {
        let dst: IpAddr = dst.parse().unwrap();
        let src = if dst.is_ipv4() {
            "192.0.2.1"
        } else {
            "2001:db8:2::1"
        };
        Tunnel {
            dst,
            src: OuterSource::Fixed(src.parse().unwrap()),
            ttl: 32,
        }
    }

    #[test]
    fn ipip_v4_in_v4_then_back() {
        let frame = frame4(
            "198.51.100.7",
            "203.0.113.10",
            L4::Syn {
                sport: 40000,
                dport: 80,
            },
            b"",
        );
        let p = ip(&frame);
        let mut buf = with_headroom(&frame);
        let (s, l) = encapsulate(
            &mut buf,
            HEADROOM,
            frame.len(),
            &p,
            &tunnel_to("192.0.2.11"),
            7,
        )
        .unwrap();
        assert_eq!((s, l), (HEADROOM - 20, frame.len() + 20));
        let out = &buf[s..s + l];
        verify_checksums(out).unwrap();
        let outer = ip(out);
        assert_eq!(outer.flow.proto, IpProtocol::Ipip);
        assert_eq!(outer.flow.dst, "192.0.2.11".parse::<IpAddr>().unwrap());
        assert_eq!(outer.hop_limit, 32);
        let o = ipv4::Packet::new_checked(&out[14..]).unwrap();
        assert!(o.dont_frag(), "DF follows the inner packet, which had it");
        assert_eq!(
            (o.ident(), o.total_len() as usize),
            (7, frame.len() - 14 + 20)
        );
        assert_eq!(&out[..12], &frame[..12], "MACs untouched");
        // Round trip.
        let mut back = out.to_vec();
        let (s2, l2) = decapsulate(&mut back, 0, &outer).unwrap();
        assert_eq!(&back[s2..s2 + l2], &frame[..]);
    }

    #[test]
    fn ip6ip6_with_flow_label_from_the_flow() {
        let frame = frame6(
            "2001:db8:1::7",
            "2001:db8::10",
            L4::Udp {
                sport: 5000,
                dport: 53,
            },
            b"q",
        );
        let p = ip(&frame);
        let mut buf = with_headroom(&frame);
        let t = tunnel_to("2001:db8:2::11");
        let (s, l) = encapsulate(&mut buf, HEADROOM, frame.len(), &p, &t, 0).unwrap();
        let out = &buf[s..s + l];
        let outer = ipv6::Packet::new_checked(&out[14..]).unwrap();
        assert_eq!(outer.next_header(), IpProtocol::Ipv6);
        assert_eq!(outer.flow_label(), flow_hash(p.flow.src, 5000) & 0xfffff);
        assert_eq!(usize::from(outer.payload_len()), frame.len() - 14);
        assert_eq!(&out[12..14], &[0x86, 0xdd]);
    }

    #[test]
    fn mixed_families_use_protocol_41_or_4() {
        let frame = frame6(
            "2001:db8:1::7",
            "2001:db8::10",
            L4::Syn {
                sport: 1,
                dport: 80,
            },
            b"",
        );
        let p = ip(&frame);
        let mut buf = with_headroom(&frame);
        let (s, l) = encapsulate(
            &mut buf,
            HEADROOM,
            frame.len(),
            &p,
            &tunnel_to("192.0.2.11"),
            1,
        )
        .unwrap();
        let out = &buf[s..s + l];
        verify_checksums(out).unwrap();
        assert_eq!(ip(out).flow.proto, IpProtocol::Ipv6);
        assert_eq!(&out[12..14], &[0x08, 0x00]);
    }

    #[test]
    fn source_from_flow_spreads_inside_the_prefix() {
        let prefix: IpAddr = "192.0.2.0".parse().unwrap();
        let src = OuterSource::FromFlow {
            prefix,
            prefix_len: 24,
        };
        let mut seen = std::collections::BTreeSet::new();
        for port in 40000..40064u16 {
            let frame = frame4(
                "198.51.100.7",
                "203.0.113.10",
                L4::Syn {
                    sport: port,
                    dport: 80,
                },
                b"",
            );
            let p = ip(&frame);
            let mut buf = with_headroom(&frame);
            let t = Tunnel {
                dst: "192.0.2.11".parse().unwrap(),
                src,
                ttl: 64,
            };
            let (s, _) = encapsulate(&mut buf, HEADROOM, frame.len(), &p, &t, 0).unwrap();
            let o = ipv4::Packet::new_unchecked(&buf[s + 14..]);
            assert_eq!(&o.src_addr().octets()[..3], &[192, 0, 2]);
            seen.insert(o.src_addr());
        }
        assert!(
            seen.len() > 32,
            "64 flows should land on many sources, got {}",
            seen.len()
        );
    }

    #[test]
    fn vlan_tag_moves_with_the_ethernet_header() {
        let f = frame4(
            "198.51.100.7",
            "203.0.113.10",
            L4::Syn {
                sport: 1,
                dport: 80,
            },
            b"",
        );
        let mut tagged = f[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x2a, 0x08, 0x00]);
        tagged.extend_from_slice(&f[14..]);
        let p = ip(&tagged);
        let mut buf = with_headroom(&tagged);
        let (s, l) = encapsulate(
            &mut buf,
            HEADROOM,
            tagged.len(),
            &p,
            &tunnel_to("192.0.2.11"),
            0,
        )
        .unwrap();
        let out = &buf[s..s + l];
        assert_eq!(&out[12..18], &[0x81, 0x00, 0x00, 0x2a, 0x08, 0x00]);
        let outer = ip(out);
        assert_eq!((outer.vlan, outer.flow.proto), (Some(42), IpProtocol::Ipip));
    }

    #[test]
    fn refusals() {
        let frame = frame4(
            "198.51.100.7",
            "203.0.113.10",
            L4::Syn {
                sport: 1,
                dport: 80,
            },
            b"",
        );
        let p = ip(&frame);
        let mut buf = with_headroom(&frame);
        let t = tunnel_to("192.0.2.11");
        assert_eq!(
            encapsulate(&mut buf, 19, frame.len(), &p, &t, 0),
            Err(RewriteError::NoHeadroom)
        );
        let bad = Tunnel {
            src: OuterSource::Fixed("2001:db8::1".parse().unwrap()),
            ..t
        };
        assert_eq!(
            encapsulate(&mut buf, HEADROOM, frame.len(), &p, &bad, 0),
            Err(RewriteError::FamilyMismatch)
        );
        assert_eq!(
            decapsulate(&mut buf, HEADROOM, &p),
            Err(RewriteError::WrongKind)
        );
    }
}
