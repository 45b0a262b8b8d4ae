//! UDP headers.

use crate::ipv4::be16;

/// Why a UDP header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpError {
    /// Shorter than the header or than its length field says.
    Truncated,
    /// Length field below 8.
    BadLength,
}

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// Length of the header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;
/// Offset of the checksum field.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

/// A view over a UDP datagram.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer holding the whole datagram its length field describes.
    pub fn new_checked(buffer: T) -> Result<Self, UdpError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// After this succeeds no accessor can panic.
    pub fn check_len(&self) -> Result<(), UdpError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(UdpError::Truncated);
        }
        let length = usize::from(self.len());
        if length < HEADER_LEN {
            return Err(UdpError::BadLength);
        }
        if length > len {
            return Err(UdpError::Truncated);
        }
        Ok(())
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::SRC_PORT])
    }
    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::DST_PORT])
    }
    /// Length field (header + payload).
    #[expect(
        clippy::len_without_is_empty,
        reason = "a wire field, not a collection"
    )]
    pub fn len(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::LENGTH])
    }
    /// Checksum as stored (0 over IPv4 means none).
    pub fn checksum(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CHECKSUM])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port (checksum not updated).
    pub fn set_src_port(&mut self, value: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&value.to_be_bytes());
    }
    /// Sets the destination port (checksum not updated).
    pub fn set_dst_port(&mut self, value: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&value.to_be_bytes());
    }
    /// Sets the length field.
    pub fn set_len(&mut self, value: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&value.to_be_bytes());
    }
    /// Stores a checksum value.
    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DNS: [u8; 12] = [0xc3, 0x50, 0x00, 0x35, 0x00, 0x0c, 0xab, 0xcd, 1, 2, 3, 4];

    #[test]
    fn parse_fields() {
        let p = Packet::new_checked(&DNS[..]).unwrap();
        assert_eq!(
            (p.src_port(), p.dst_port(), p.len(), p.checksum()),
            (50000, 53, 12, 0xabcd)
        );
    }

    #[test]
    fn truncations_and_bad_lengths() {
        for len in 0..DNS.len() {
            assert_eq!(
                Packet::new_checked(&DNS[..len]).err(),
                Some(UdpError::Truncated),
                "{len}"
            );
        }
        let mut d = DNS;
        d[5] = 7;
        assert_eq!(Packet::new_checked(&d[..]).err(), Some(UdpError::BadLength));
    }

    #[test]
    fn emit_then_parse() {
        let mut buf = [0u8; 8];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_src_port(7);
        p.set_dst_port(9);
        p.set_len(8);
        p.set_checksum(0xffff);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(
            (p.src_port(), p.dst_port(), p.len(), p.checksum()),
            (7, 9, 8, 0xffff)
        );
    }
}
