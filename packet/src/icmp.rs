//! ICMP (RFC 792) and ICMPv6 (RFC 4443) messages.
//!
//! Both share one header layout — type, code, checksum, four bytes whose
//! meaning depends on the type (echo identifier and sequence, next-hop MTU)
//! — so one view serves both; the message types differ and have an enum
//! each. The checksums differ too: ICMPv6 covers a pseudo-header, ICMPv4
//! does not, which matters when NAT changes an address.
//!
//! The error types listed by [`V4Message::is_error`] and
//! [`V6Message::is_error`] are those IPVS relays to a connection: for IPv4
//! destination unreachable, source quench and time exceeded; for IPv6
//! destination unreachable, packet too big and time exceeded.

use crate::ipv4::be16;

/// Why an ICMP header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpError {
    /// Shorter than the 8-byte header.
    Truncated,
}

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQNO: Range<usize> = 6..8;
    pub const REST: Range<usize> = 4..8;
}

/// Length of the header (type, code, checksum, 4 bytes of rest-of-header).
pub const HEADER_LEN: usize = field::REST.end;
/// Offset of the checksum field.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

/// ICMPv4 message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V4Message {
    /// Echo reply (0).
    EchoReply,
    /// Destination unreachable (3); code 4 is "fragmentation needed".
    DstUnreachable,
    /// Source quench (4).
    SourceQuench,
    /// Redirect (5).
    Redirect,
    /// Echo request (8).
    EchoRequest,
    /// Time exceeded (11).
    TimeExceeded,
    /// Parameter problem (12).
    ParamProblem,
    /// Any other type.
    Unknown(u8),
}

impl From<u8> for V4Message {
    fn from(value: u8) -> Self {
        match value {
            0 => Self::EchoReply,
            3 => Self::DstUnreachable,
            4 => Self::SourceQuench,
            5 => Self::Redirect,
            8 => Self::EchoRequest,
            11 => Self::TimeExceeded,
            12 => Self::ParamProblem,
            other => Self::Unknown(other),
        }
    }
}

impl From<V4Message> for u8 {
    fn from(value: V4Message) -> Self {
        match value {
            V4Message::EchoReply => 0,
            V4Message::DstUnreachable => 3,
            V4Message::SourceQuench => 4,
            V4Message::Redirect => 5,
            V4Message::EchoRequest => 8,
            V4Message::TimeExceeded => 11,
            V4Message::ParamProblem => 12,
            V4Message::Unknown(other) => other,
        }
    }
}

impl V4Message {
    /// An error that quotes a packet and is relayed to its connection.
    #[must_use]
    pub fn is_error(self) -> bool {
        matches!(
            self,
            Self::DstUnreachable | Self::SourceQuench | Self::TimeExceeded
        )
    }
}

/// Code of "destination unreachable" meaning "fragmentation needed and DF set".
pub const V4_CODE_FRAG_NEEDED: u8 = 4;

/// ICMPv6 message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V6Message {
    /// Destination unreachable (1).
    DstUnreachable,
    /// Packet too big (2).
    PacketTooBig,
    /// Time exceeded (3).
    TimeExceeded,
    /// Parameter problem (4).
    ParamProblem,
    /// Echo request (128).
    EchoRequest,
    /// Echo reply (129).
    EchoReply,
    /// Neighbour solicitation (135).
    NeighbourSolicit,
    /// Neighbour advertisement (136).
    NeighbourAdvert,
    /// Any other type.
    Unknown(u8),
}

impl From<u8> for V6Message {
    fn from(value: u8) -> Self {
        match value {
            1 => Self::DstUnreachable,
            2 => Self::PacketTooBig,
            3 => Self::TimeExceeded,
            4 => Self::ParamProblem,
            128 => Self::EchoRequest,
            129 => Self::EchoReply,
            135 => Self::NeighbourSolicit,
            136 => Self::NeighbourAdvert,
            other => Self::Unknown(other),
        }
    }
}

impl From<V6Message> for u8 {
    fn from(value: V6Message) -> Self {
        match value {
            V6Message::DstUnreachable => 1,
            V6Message::PacketTooBig => 2,
            V6Message::TimeExceeded => 3,
            V6Message::ParamProblem => 4,
            V6Message::EchoRequest => 128,
            V6Message::EchoReply => 129,
            V6Message::NeighbourSolicit => 135,
            V6Message::NeighbourAdvert => 136,
            V6Message::Unknown(other) => other,
        }
    }
}

impl V6Message {
    /// An error that quotes a packet and is relayed to its connection.
    #[must_use]
    pub fn is_error(self) -> bool {
        matches!(
            self,
            Self::DstUnreachable | Self::PacketTooBig | Self::TimeExceeded
        )
    }
}

/// A view over an ICMP or ICMPv6 message.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer holding at least the header.
    pub fn new_checked(buffer: T) -> Result<Self, IcmpError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// After this succeeds no accessor can panic.
    pub fn check_len(&self) -> Result<(), IcmpError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(IcmpError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Type byte.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    /// Code byte.
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }
    /// Checksum as stored.
    pub fn checksum(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CHECKSUM])
    }
    /// Echo identifier.
    pub fn echo_ident(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::ECHO_IDENT])
    }
    /// Echo sequence number.
    pub fn echo_seq_no(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::ECHO_SEQNO])
    }
    /// Next-hop MTU of an ICMPv4 "fragmentation needed" (low 16 bits of the rest).
    pub fn v4_next_hop_mtu(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::ECHO_SEQNO])
    }
    /// MTU of an ICMPv6 "packet too big" (all 32 bits of the rest).
    pub fn v6_mtu(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::REST];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    /// Everything after the 8-byte header (the quoted packet of an error).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the type byte.
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }
    /// Sets the code byte.
    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }
    /// Stores a checksum value.
    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }
    /// Sets the echo identifier.
    pub fn set_echo_ident(&mut self, value: u16) {
        self.buffer.as_mut()[field::ECHO_IDENT].copy_from_slice(&value.to_be_bytes());
    }
    /// Sets the echo sequence number.
    pub fn set_echo_seq_no(&mut self, value: u16) {
        self.buffer.as_mut()[field::ECHO_SEQNO].copy_from_slice(&value.to_be_bytes());
    }
    /// Sets the 4 rest-of-header bytes as one 32-bit value (for ICMPv4
    /// frag-needed: the MTU in the low 16 bits; for ICMPv6 packet too big:
    /// the MTU).
    pub fn set_rest(&mut self, value: u32) {
        self.buffer.as_mut()[field::REST].copy_from_slice(&value.to_be_bytes());
    }
    /// Everything after the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_fields() {
        let msg = [8, 0, 0xf7, 0xfd, 0x12, 0x34, 0x00, 0x01, 0xaa];
        let p = Packet::new_checked(&msg[..]).unwrap();
        assert_eq!(V4Message::from(p.msg_type()), V4Message::EchoRequest);
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (0x1234, 1));
        assert_eq!(p.payload(), &[0xaa]);
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&msg[..len]).err(),
                Some(IcmpError::Truncated)
            );
        }
    }

    #[test]
    fn mtu_fields() {
        let frag_needed = [3, 4, 0, 0, 0, 0, 0x05, 0xdc];
        assert_eq!(
            Packet::new_unchecked(&frag_needed[..]).v4_next_hop_mtu(),
            1500
        );
        let ptb = [2, 0, 0, 0, 0, 0, 0x05, 0x00];
        assert_eq!(Packet::new_unchecked(&ptb[..]).v6_mtu(), 1280);
        let mut buf = [0u8; 8];
        Packet::new_unchecked(&mut buf[..]).set_rest(1400);
        assert_eq!(Packet::new_unchecked(&buf[..]).v6_mtu(), 1400);
    }

    #[test]
    fn error_types_follow_ipvs() {
        let v4: std::vec::Vec<u8> = (0..=255u8)
            .filter(|t| V4Message::from(*t).is_error())
            .collect();
        assert_eq!(v4, [3, 4, 11]);
        let v6: std::vec::Vec<u8> = (0..=255u8)
            .filter(|t| V6Message::from(*t).is_error())
            .collect();
        assert_eq!(v6, [1, 2, 3]);
        for t in 0..=255u8 {
            assert_eq!(u8::from(V4Message::from(t)), t);
            assert_eq!(u8::from(V6Message::from(t)), t);
        }
    }
}
