//! IPv6 headers and the walk over extension headers to the upper layer.
//!
//! [`walk_extensions`] follows the next-header chain (hop-by-hop, routing,
//! fragment, destination options, AH) to the first header that is not an
//! extension, and reports where it starts and whether the packet is a
//! fragment. The walk is bounded: more than [`MAX_EXTENSIONS`] headers is
//! refused, so that a crafted chain cannot make us spend time on it.

use core::net::Ipv6Addr;

use crate::ip::IpProtocol;
use crate::ipv4::be16;

/// Why an IPv6 header or its extension chain was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6Error {
    /// Shorter than the fixed header.
    Truncated,
    /// Version field is not 6.
    BadVersion,
    /// Payload length beyond the frame (or a jumbogram, which we do not carry).
    BadPayloadLen,
    /// An extension header runs past the end of the packet.
    ExtensionTruncated,
    /// More extension headers than we are willing to walk.
    TooManyExtensions,
}

mod field {
    use core::ops::Range;
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;
/// Byte offset of the source address.
pub const SRC_ADDR_OFFSET: usize = field::SRC_ADDR.start;
/// Byte offset of the destination address.
pub const DST_ADDR_OFFSET: usize = field::DST_ADDR.start;
/// The most extension headers [`walk_extensions`] follows.
pub const MAX_EXTENSIONS: usize = 8;

/// A view over an IPv6 packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a whole received packet: see [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, Ipv6Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Fixed header present and version 6; the payload length is not
    /// checked (for headers quoted inside ICMPv6 errors).
    pub fn check_header_len(&self) -> Result<(), Ipv6Error> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Ipv6Error::Truncated);
        }
        if self.version() != 6 {
            return Err(Ipv6Error::BadVersion);
        }
        Ok(())
    }

    /// Header as in [`Packet::check_header_len`] and a payload length that
    /// fits the buffer. Afterwards no accessor can panic.
    pub fn check_len(&self) -> Result<(), Ipv6Error> {
        self.check_header_len()?;
        let payload_len = usize::from(self.payload_len());
        // A zero payload length with a hop-by-hop header means a jumbogram
        // (RFC 2675), which never crosses an Ethernet link we serve.
        if payload_len == 0 && self.next_header() == IpProtocol::HopByHop {
            return Err(Ipv6Error::BadPayloadLen);
        }
        if HEADER_LEN + payload_len > self.buffer.as_ref().len() {
            return Err(Ipv6Error::BadPayloadLen);
        }
        Ok(())
    }

    /// Version field.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    /// Traffic class.
    pub fn traffic_class(&self) -> u8 {
        let b = &self.buffer.as_ref()[field::VER_TC_FLOW];
        (b[0] << 4) | (b[1] >> 4)
    }

    /// Flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VER_TC_FLOW];
        u32::from_be_bytes([0, b[1] & 0x0f, b[2], b[3]])
    }

    /// Payload length (everything after the fixed header).
    pub fn payload_len(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::LENGTH])
    }

    /// Next header of the fixed header.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::NXT_HDR])
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        addr(&self.buffer.as_ref()[field::SRC_ADDR])
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        addr(&self.buffer.as_ref()[field::DST_ADDR])
    }

    /// Total length of the packet (header + payload length).
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version 6, traffic class and flow label.
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let word = (6u32 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&word.to_be_bytes());
    }

    /// Sets the payload length.
    pub fn set_payload_len(&mut self, value: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the next header.
    pub fn set_next_header(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::NXT_HDR] = value.into();
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, value: &Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&value.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, value: &Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&value.octets());
    }
}

fn addr(b: &[u8]) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&b[..16]);
    Ipv6Addr::from(octets)
}

/// What a fragment header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentInfo {
    /// Offset in bytes of this fragment's data.
    pub offset: u16,
    /// More fragments follow.
    pub more: bool,
    /// Identification.
    pub ident: u32,
}

/// Where the upper layer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// Protocol of the first non-extension header (or ESP / no-next-header,
    /// past which nothing is readable).
    pub protocol: IpProtocol,
    /// Its offset from the start of the IPv6 header.
    pub offset: usize,
    /// The fragment header, if one was crossed.
    pub fragment: Option<FragmentInfo>,
}

/// Walks the extension headers of the IPv6 packet at the start of
/// `packet` (whose fixed header has been checked), stopping at `end` (the
/// end of the packet, or of the quote for an ICMPv6 error).
pub fn walk_extensions(packet: &[u8], end: usize) -> Result<UpperLayer, Ipv6Error> {
    let end = end.min(packet.len());
    let mut next = IpProtocol::from(packet[field::NXT_HDR]);
    let mut offset = HEADER_LEN;
    let mut fragment = None;
    for _ in 0..=MAX_EXTENSIONS {
        let len = match next {
            IpProtocol::HopByHop | IpProtocol::Ipv6Route | IpProtocol::Ipv6Opts => {
                let hdr = packet.get(offset..offset + 2).filter(|_| offset + 2 <= end);
                let hdr = hdr.ok_or(Ipv6Error::ExtensionTruncated)?;
                (usize::from(hdr[1]) + 1) * 8
            }
            IpProtocol::Ah => {
                let hdr = packet.get(offset..offset + 2).filter(|_| offset + 2 <= end);
                let hdr = hdr.ok_or(Ipv6Error::ExtensionTruncated)?;
                (usize::from(hdr[1]) + 2) * 4
            }
            IpProtocol::Ipv6Frag => {
                let hdr = packet.get(offset..offset + 8).filter(|_| offset + 8 <= end);
                let hdr = hdr.ok_or(Ipv6Error::ExtensionTruncated)?;
                let off_flags = u16::from_be_bytes([hdr[2], hdr[3]]);
                fragment = Some(FragmentInfo {
                    offset: off_flags & 0xfff8,
                    more: off_flags & 1 == 1,
                    ident: u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]),
                });
                8
            }
            protocol => {
                return Ok(UpperLayer {
                    protocol,
                    offset,
                    fragment,
                });
            }
        };
        if offset + len > end {
            return Err(Ipv6Error::ExtensionTruncated);
        }
        next = IpProtocol::from(packet[offset]);
        offset += len;
    }
    Err(Ipv6Error::TooManyExtensions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(next: u8, payload: &[u8]) -> std::vec::Vec<u8> {
        let mut buf = std::vec![0u8; HEADER_LEN];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_version_tc_flow(0xb8, 0x12345);
        p.set_payload_len(payload.len() as u16);
        p.buffer[field::NXT_HDR] = next;
        p.set_hop_limit(64);
        p.set_src_addr(&"2001:db8::1".parse().unwrap());
        p.set_dst_addr(&"2001:db8::2".parse().unwrap());
        buf.extend_from_slice(payload);
        buf
    }

    #[test]
    fn fields_round_trip() {
        let buf = packet(6, &[0; 20]);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 20);
        assert_eq!(p.next_header(), IpProtocol::Tcp);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.total_len(), 60);
    }

    #[test]
    fn truncation_and_bad_lengths() {
        let buf = packet(17, &[0; 8]);
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&buf[..len]).err(),
                Some(Ipv6Error::Truncated)
            );
        }
        assert_eq!(
            Packet::new_checked(&buf[..HEADER_LEN + 7]).err(),
            Some(Ipv6Error::BadPayloadLen)
        );
        let mut v4 = buf.clone();
        v4[0] = 0x45;
        assert_eq!(
            Packet::new_checked(&v4[..]).err(),
            Some(Ipv6Error::BadVersion)
        );
        let jumbo = packet(0, &[]);
        assert_eq!(
            Packet::new_checked(&jumbo[..]).err(),
            Some(Ipv6Error::BadPayloadLen)
        );
    }

    #[test]
    fn walks_hop_by_hop_dest_opts_and_fragment() {
        // HBH (8 bytes) -> DestOpts (16 bytes) -> Fragment (first, M=1) -> UDP
        let mut ext = std::vec::Vec::new();
        ext.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        ext.extend_from_slice(&[44, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        ext.extend_from_slice(&[17, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef]);
        ext.extend_from_slice(&[0; 8]);
        let buf = packet(0, &ext);
        let upper = walk_extensions(&buf, buf.len()).unwrap();
        assert_eq!(upper.protocol, IpProtocol::Udp);
        assert_eq!(upper.offset, HEADER_LEN + 32);
        assert_eq!(
            upper.fragment,
            Some(FragmentInfo {
                offset: 0,
                more: true,
                ident: 0xdead_beef
            })
        );
    }

    #[test]
    fn later_fragment_offset_is_reported() {
        let ext = [6, 0, 0x05, 0xa8, 0, 0, 0, 1, 0, 0, 0, 0];
        let buf = packet(44, &ext);
        let upper = walk_extensions(&buf, buf.len()).unwrap();
        assert_eq!(
            upper.fragment.map(|f| (f.offset, f.more)),
            Some((1448, false))
        );
    }

    #[test]
    fn chains_that_run_off_the_end_are_refused() {
        // Hop-by-hop claims 16 bytes, only 8 are there.
        let buf = packet(0, &[6, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            walk_extensions(&buf, buf.len()),
            Err(Ipv6Error::ExtensionTruncated)
        );
        // Hop-by-hop with its length byte cut off.
        let buf = packet(0, &[6]);
        assert_eq!(
            walk_extensions(&buf, buf.len()),
            Err(Ipv6Error::ExtensionTruncated)
        );
        // Fragment header cut short.
        let buf = packet(44, &[6, 0, 0, 0]);
        assert_eq!(
            walk_extensions(&buf, buf.len()),
            Err(Ipv6Error::ExtensionTruncated)
        );
        // The end given by the caller counts, not the buffer's.
        let buf = packet(60, &[6, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            walk_extensions(&buf, buf.len() - 1),
            Err(Ipv6Error::ExtensionTruncated)
        );
    }

    #[test]
    fn endless_chains_are_refused() {
        let mut ext = std::vec::Vec::new();
        for _ in 0..=MAX_EXTENSIONS {
            ext.extend_from_slice(&[60, 0, 0, 0, 0, 0, 0, 0]);
        }
        let buf = packet(60, &ext);
        assert_eq!(
            walk_extensions(&buf, buf.len()),
            Err(Ipv6Error::TooManyExtensions)
        );
    }

    #[test]
    fn esp_and_no_next_stop_the_walk() {
        let buf = packet(50, &[0; 16]);
        assert_eq!(
            walk_extensions(&buf, buf.len()).unwrap().protocol,
            IpProtocol::Esp
        );
        let buf = packet(59, &[]);
        assert_eq!(
            walk_extensions(&buf, buf.len()).unwrap().protocol,
            IpProtocol::Ipv6NoNxt
        );
    }
}
