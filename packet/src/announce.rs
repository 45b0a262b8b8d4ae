//! The frames a director sends when it takes addresses over: a gratuitous
//! ARP for each IPv4 address and an unsolicited neighbour advertisement
//! for each IPv6 one, so that the neighbours on the link move their entry
//! for that address to this director's MAC at once rather than when their
//! entry expires.
//!
//! Contract: each function returns one whole Ethernet frame, built without
//! I/O from the interface's MAC and the address; the caller sends it as it
//! is (an AF_PACKET socket), so the frame leaves whether or not the kernel
//! still holds the address as tentative. Both follow what keepalived sends:
//! - ARP (RFC 5227 §3): a broadcast request whose sender and target
//!   protocol addresses are both the address and whose target hardware
//!   address is zero — a request rather than a reply, since every host
//!   processes requests.
//! - NA (RFC 4861 §7.2.6): from the address itself to all nodes (ff02::1),
//!   hop limit 255 (receivers refuse anything less: it proves the sender is
//!   on the link), Override set so that an existing entry is replaced,
//!   Solicited clear (nobody asked) and Router clear (a director is no
//!   router to the clients), with the target link-layer address option.

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::checksum;
use crate::ethernet::{self, EtherType, MacAddr};
use crate::icmp;
use crate::ip::IpProtocol;
use crate::{arp, ipv6};

/// Length of a gratuitous ARP frame (Ethernet + ARP, unpadded).
pub const ARP_FRAME_LEN: usize = arp::FRAME_LEN;

/// Length of the neighbour advertisement message: ICMPv6 header, target,
/// one 8-byte target link-layer address option.
const NA_LEN: usize = icmp::HEADER_LEN + 16 + 8;

/// Length of an unsolicited neighbour advertisement frame.
pub const NA_FRAME_LEN: usize = ethernet::HEADER_LEN + ipv6::HEADER_LEN + NA_LEN;

/// All-nodes multicast (RFC 4291 §2.7.1), the destination of an
/// unsolicited neighbour advertisement.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The Ethernet address of [`ALL_NODES`] (RFC 2464 §7).
pub const ALL_NODES_MAC: MacAddr = MacAddr([0x33, 0x33, 0, 0, 0, 1]);

/// ICMPv6 type of a neighbour advertisement.
const TYPE_NEIGHBOUR_ADVERT: u8 = 136;

/// Flags word of the advertisement: Router (bit 31), Solicited (30),
/// Override (29). Only Override is set.
const FLAG_OVERRIDE: u32 = 1 << 29;

/// Option type of the target link-layer address (RFC 4861 §4.6.1).
const OPTION_TARGET_LINK_ADDRESS: u8 = 2;

/// Hop limit of every neighbour discovery message.
const ND_HOP_LIMIT: u8 = 255;

mod field {
    use core::ops::Range;
    /// Offsets in the NA message, after the ICMPv6 header.
    pub const TARGET: Range<usize> = 8..24;
    pub const OPTION_TYPE: usize = 24;
    pub const OPTION_LEN: usize = 25;
    pub const OPTION_MAC: Range<usize> = 26..32;
}

/// Gratuitous ARP: an ARP request for `addr` from `addr` (target MAC zero),
/// Ethernet broadcast from `mac`.
#[must_use]
pub fn gratuitous_arp(mac: [u8; 6], addr: Ipv4Addr) -> [u8; ARP_FRAME_LEN] {
    let mut frame = [0; ARP_FRAME_LEN];
    // The buffer is exactly FRAME_LEN long: emit_gratuitous always fits.
    let _ = arp::emit_gratuitous(&mut frame, MacAddr(mac), addr);
    frame
}

/// Unsolicited neighbour advertisement for `addr`: Ethernet to
/// 33:33:00:00:00:01, IPv6 from `addr` to ff02::1, hop limit 255, ICMPv6
/// 136 with Override set (Solicited, Router clear), target `addr`, option 2
/// (target link-layer address) = `mac`, checksum computed.
#[must_use]
pub fn unsolicited_na(mac: [u8; 6], addr: Ipv6Addr) -> [u8; NA_FRAME_LEN] {
    let mut frame = [0; NA_FRAME_LEN];
    let mut eth = ethernet::Frame::new_unchecked(&mut frame[..]);
    eth.set_dst_addr(ALL_NODES_MAC);
    eth.set_src_addr(MacAddr(mac));
    eth.set_ethertype(EtherType::Ipv6);
    let mut ip = ipv6::Packet::new_unchecked(eth.payload_mut());
    ip.set_version_tc_flow(0, 0);
    ip.set_payload_len(NA_LEN as u16);
    ip.set_next_header(IpProtocol::Icmpv6);
    ip.set_hop_limit(ND_HOP_LIMIT);
    ip.set_src_addr(&addr);
    ip.set_dst_addr(&ALL_NODES);
    let na = &mut frame[ethernet::HEADER_LEN + ipv6::HEADER_LEN..];
    let mut message = icmp::Packet::new_unchecked(&mut *na);
    message.set_msg_type(TYPE_NEIGHBOUR_ADVERT);
    message.set_msg_code(0);
    message.set_checksum(0);
    message.set_rest(FLAG_OVERRIDE);
    na[field::TARGET].copy_from_slice(&addr.octets());
    na[field::OPTION_TYPE] = OPTION_TARGET_LINK_ADDRESS;
    na[field::OPTION_LEN] = 1; // in units of 8 bytes
    na[field::OPTION_MAC].copy_from_slice(&mac);
    let pseudo = checksum::pseudo_header_v6(&addr, &ALL_NODES, IpProtocol::Icmpv6, NA_LEN as u32);
    let sum = checksum::finish(checksum::combine(pseudo, checksum::sum(na)));
    icmp::Packet::new_unchecked(na).set_checksum(sum);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0, 0x5e, 0, 0x53, 0x0b];

    #[test]
    fn gratuitous_arp_is_a_broadcast_request_from_and_for_the_address() {
        let addr = Ipv4Addr::new(203, 0, 113, 10);
        let frame = gratuitous_arp(MAC, addr);
        let eth = ethernet::Frame::new_checked(&frame[..]).unwrap();
        assert_eq!(eth.dst_addr(), MacAddr::BROADCAST);
        assert_eq!(eth.src_addr(), MacAddr(MAC));
        assert_eq!(eth.ethertype(), EtherType::Arp);
        let request = arp::Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(request.operation(), arp::Operation::Request);
        assert_eq!(request.sender_mac(), MacAddr(MAC));
        assert_eq!(request.sender_ip(), addr);
        assert_eq!(request.target_mac(), MacAddr::ZERO);
        assert_eq!(request.target_ip(), addr);
        // Hardware Ethernet (1), protocol IPv4, lengths 6 and 4.
        assert_eq!(&frame[14..20], &[0, 1, 0x08, 0x00, 6, 4]);
    }

    #[test]
    fn unsolicited_na_field_by_field() {
        let addr: Ipv6Addr = "2001:db8:5::1".parse().unwrap();
        let frame = unsolicited_na(MAC, addr);
        assert_eq!(frame.len(), 86);
        let eth = ethernet::Frame::new_checked(&frame[..]).unwrap();
        assert_eq!(eth.dst_addr(), MacAddr([0x33, 0x33, 0, 0, 0, 1]));
        assert_eq!(eth.src_addr(), MacAddr(MAC));
        assert_eq!(eth.ethertype(), EtherType::Ipv6);
        let ip = ipv6::Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(ip.version(), 6);
        assert_eq!((ip.traffic_class(), ip.flow_label()), (0, 0));
        assert_eq!(ip.payload_len(), 32);
        assert_eq!(ip.next_header(), IpProtocol::Icmpv6);
        assert_eq!(ip.hop_limit(), 255);
        assert_eq!(ip.src_addr(), addr);
        assert_eq!(ip.dst_addr(), "ff02::1".parse::<Ipv6Addr>().unwrap());
        let na = &frame[54..];
        let message = icmp::Packet::new_checked(na).unwrap();
        assert_eq!(
            icmp::V6Message::from(message.msg_type()),
            icmp::V6Message::NeighbourAdvert
        );
        assert_eq!(message.msg_code(), 0);
        // R = 0, S = 0, O = 1, then 29 reserved bits.
        assert_eq!(&na[4..8], &[0x20, 0, 0, 0]);
        assert_eq!(&na[8..24], &addr.octets());
        assert_eq!(&na[24..26], &[2, 1], "target link-layer address, 8 bytes");
        assert_eq!(&na[26..32], &MAC);
        // The checksum covers the pseudo-header: the whole sum is zero.
        let pseudo = checksum::pseudo_header_v6(
            &ip.src_addr(),
            &ip.dst_addr(),
            IpProtocol::Icmpv6,
            u32::from(ip.payload_len()),
        );
        assert_ne!(message.checksum(), 0);
        assert_eq!(
            checksum::finish(checksum::combine(pseudo, checksum::sum(na))),
            0
        );
    }

    #[test]
    fn the_na_checksum_changes_with_the_address_and_the_mac() {
        let a: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let b: Ipv6Addr = "2001:db8::11".parse().unwrap();
        let sum = |mac, addr| {
            let f = unsolicited_na(mac, addr);
            icmp::Packet::new_checked(&f[54..]).unwrap().checksum()
        };
        assert_ne!(sum(MAC, a), sum(MAC, b));
        assert_ne!(sum(MAC, a), sum([2, 0, 0, 0, 0, 1], a));
    }
}
