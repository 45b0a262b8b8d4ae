//! ARP for Ethernet and IPv4 (RFC 826): enough to read requests and to
//! build replies and gratuitous announcements, which the director sends when
//! it takes over a VIP.

use core::net::Ipv4Addr;

use crate::ethernet::{self, EtherType, MacAddr};
use crate::ipv4::be16;

/// Why an ARP packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpError {
    /// Shorter than an Ethernet/IPv4 ARP packet.
    Truncated,
    /// Not Ethernet hardware with IPv4 protocol addresses.
    Unsupported,
}

mod field {
    use core::ops::Range;
    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = field::TPA.end;
/// Length of a whole ARP frame (Ethernet header + ARP, before padding).
pub const FRAME_LEN: usize = ethernet::HEADER_LEN + PACKET_LEN;

/// ARP operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Request (1).
    Request,
    /// Reply (2).
    Reply,
    /// Any other value.
    Unknown(u16),
}

impl From<u16> for Operation {
    fn from(value: u16) -> Self {
        match value {
            1 => Self::Request,
            2 => Self::Reply,
            other => Self::Unknown(other),
        }
    }
}

impl From<Operation> for u16 {
    fn from(value: Operation) -> Self {
        match value {
            Operation::Request => 1,
            Operation::Reply => 2,
            Operation::Unknown(other) => other,
        }
    }
}

/// A view over an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer holding an Ethernet/IPv4 ARP packet.
    pub fn new_checked(buffer: T) -> Result<Self, ArpError> {
        let packet = Self::new_unchecked(buffer);
        if packet.buffer.as_ref().len() < PACKET_LEN {
            return Err(ArpError::Truncated);
        }
        let b = packet.buffer.as_ref();
        if be16(&b[field::HTYPE]) != 1
            || be16(&b[field::PTYPE]) != 0x0800
            || b[field::HLEN] != 6
            || b[field::PLEN] != 4
        {
            return Err(ArpError::Unsupported);
        }
        Ok(packet)
    }

    /// Operation.
    pub fn operation(&self) -> Operation {
        Operation::from(be16(&self.buffer.as_ref()[field::OPER]))
    }
    /// Sender hardware address.
    pub fn sender_mac(&self) -> MacAddr {
        mac(&self.buffer.as_ref()[field::SHA])
    }
    /// Sender protocol address.
    pub fn sender_ip(&self) -> Ipv4Addr {
        ip(&self.buffer.as_ref()[field::SPA])
    }
    /// Target hardware address.
    pub fn target_mac(&self) -> MacAddr {
        mac(&self.buffer.as_ref()[field::THA])
    }
    /// Target protocol address.
    pub fn target_ip(&self) -> Ipv4Addr {
        ip(&self.buffer.as_ref()[field::TPA])
    }
}

fn mac(b: &[u8]) -> MacAddr {
    let mut m = [0; 6];
    m.copy_from_slice(&b[..6]);
    MacAddr(m)
}

fn ip(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

/// Writes a whole Ethernet + ARP frame into `out` and returns its length
/// ([`FRAME_LEN`]), or `None` when `out` is too short.
#[must_use]
pub fn emit_frame(
    out: &mut [u8],
    operation: Operation,
    eth_dst: MacAddr,
    sender: (MacAddr, Ipv4Addr),
    target: (MacAddr, Ipv4Addr),
) -> Option<usize> {
    let out = out.get_mut(..FRAME_LEN)?;
    let mut frame = ethernet::Frame::new_unchecked(&mut *out);
    frame.set_dst_addr(eth_dst);
    frame.set_src_addr(sender.0);
    frame.set_ethertype(EtherType::Arp);
    let arp = &mut out[ethernet::HEADER_LEN..];
    arp[field::HTYPE].copy_from_slice(&1u16.to_be_bytes());
    arp[field::PTYPE].copy_from_slice(&0x0800u16.to_be_bytes());
    arp[field::HLEN] = 6;
    arp[field::PLEN] = 4;
    arp[field::OPER].copy_from_slice(&u16::from(operation).to_be_bytes());
    arp[field::SHA].copy_from_slice(&sender.0.0);
    arp[field::SPA].copy_from_slice(&sender.1.octets());
    arp[field::THA].copy_from_slice(&target.0.0);
    arp[field::TPA].copy_from_slice(&target.1.octets());
    Some(FRAME_LEN)
}

/// A gratuitous ARP announcing that `ip` is at `mac` (a broadcast request
/// whose sender and target address are both `ip`, RFC 5227 §3), as sent on
/// VIP takeover.
#[must_use]
pub fn emit_gratuitous(out: &mut [u8], mac: MacAddr, ip: Ipv4Addr) -> Option<usize> {
    emit_frame(
        out,
        Operation::Request,
        MacAddr::BROADCAST,
        (mac, ip),
        (MacAddr::ZERO, ip),
    )
}

/// A reply to `request` saying that its target address is at `our_mac`.
#[must_use]
pub fn emit_reply<T: AsRef<[u8]>>(
    out: &mut [u8],
    request: &Packet<T>,
    our_mac: MacAddr,
) -> Option<usize> {
    emit_frame(
        out,
        Operation::Reply,
        request.sender_mac(),
        (our_mac, request.target_ip()),
        (request.sender_mac(), request.sender_ip()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr([0x02, 0, 0x5e, 0, 0x53, 1]);

    #[test]
    fn gratuitous_arp_bytes() {
        let mut buf = [0u8; 64];
        let len = emit_gratuitous(&mut buf, MAC, Ipv4Addr::new(203, 0, 113, 10)).unwrap();
        assert_eq!(len, 42);
        let expected: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0x5e, 0, 0x53, 1, 0x08,
            0x06, // ethernet
            0, 1, 0x08, 0, 6, 4, 0, 1, // htype ptype hlen plen request
            0x02, 0, 0x5e, 0, 0x53, 1, 203, 0, 113, 10, // sender
            0, 0, 0, 0, 0, 0, 203, 0, 113, 10, // target
        ];
        assert_eq!(&buf[..len], &expected[..]);
    }

    #[test]
    fn reply_answers_the_request() {
        let asker = MacAddr([0x02, 0, 0, 0, 0, 9]);
        let mut req = [0u8; 42];
        emit_frame(
            &mut req,
            Operation::Request,
            MacAddr::BROADCAST,
            (asker, Ipv4Addr::new(198, 51, 100, 7)),
            (MacAddr::ZERO, Ipv4Addr::new(198, 51, 100, 1)),
        )
        .unwrap();
        let request = Packet::new_checked(&req[14..]).unwrap();
        assert_eq!(request.operation(), Operation::Request);
        let mut out = [0u8; 42];
        emit_reply(&mut out, &request, MAC).unwrap();
        let reply = Packet::new_checked(&out[14..]).unwrap();
        assert_eq!(reply.operation(), Operation::Reply);
        assert_eq!(reply.sender_mac(), MAC);
        assert_eq!(reply.sender_ip(), Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(reply.target_mac(), asker);
        assert_eq!(reply.target_ip(), Ipv4Addr::new(198, 51, 100, 7));
        assert_eq!(&out[..6], &asker.0);
    }

    #[test]
    fn short_or_foreign_arp_is_refused() {
        let mut buf = [0u8; 42];
        emit_gratuitous(&mut buf, MAC, Ipv4Addr::LOCALHOST).unwrap();
        for len in 0..PACKET_LEN {
            assert_eq!(
                Packet::new_checked(&buf[14..14 + len]).err(),
                Some(ArpError::Truncated)
            );
        }
        buf[14 + 5] = 16;
        assert_eq!(
            Packet::new_checked(&buf[14..]).err(),
            Some(ArpError::Unsupported)
        );
        assert!(emit_gratuitous(&mut [0u8; 41], MAC, Ipv4Addr::LOCALHOST).is_none());
    }
}
