//! TCP headers: ports, sequence numbers, flags and the checksum; options are
//! skipped by the data offset.

use crate::ipv4::{be16, be32};

/// Why a TCP header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpError {
    /// Shorter than the fixed header or than the data offset says.
    Truncated,
    /// Data offset below 5 (20 bytes).
    BadHeaderLen,
}

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ_NUM: Range<usize> = 4..8;
    pub const ACK_NUM: Range<usize> = 8..12;
    pub const FLAGS: Range<usize> = 12..14;
    pub const WINDOW: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
}

/// Length of the header without options.
pub const HEADER_LEN: usize = field::URGENT.end;
/// Offset of the checksum field.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

/// TCP flags as a bit set (the low 8 bits of the flags word).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;

    /// FIN set.
    #[must_use]
    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    /// SYN set.
    #[must_use]
    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    /// RST set.
    #[must_use]
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    /// ACK set.
    #[must_use]
    pub fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
}

/// A view over a TCP segment.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer whose header (with options) is whole.
    pub fn new_checked(buffer: T) -> Result<Self, TcpError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// After this succeeds no accessor can panic.
    pub fn check_len(&self) -> Result<(), TcpError> {
        self.check_within(self.buffer.as_ref().len())
    }

    /// [`Packet::check_len`] for a segment of `len` bytes of which this view
    /// may hold only the start: the receive path checks a view over the
    /// fixed 20-byte header against the length of the whole segment.
    pub(crate) fn check_within(&self, len: usize) -> Result<(), TcpError> {
        if len < HEADER_LEN || self.buffer.as_ref().len() < HEADER_LEN {
            return Err(TcpError::Truncated);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN {
            return Err(TcpError::BadHeaderLen);
        }
        if header_len > len {
            return Err(TcpError::Truncated);
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
    /// Sequence number.
    pub fn seq_number(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::SEQ_NUM])
    }
    /// Acknowledgement number.
    pub fn ack_number(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::ACK_NUM])
    }
    /// Header length in bytes (data offset × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::FLAGS.start] >> 4) * 4
    }
    /// Flags.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS.start + 1])
    }
    /// Window.
    pub fn window(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::WINDOW])
    }
    /// Checksum as stored.
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
    /// Sets the sequence number.
    pub fn set_seq_number(&mut self, value: u32) {
        self.buffer.as_mut()[field::SEQ_NUM].copy_from_slice(&value.to_be_bytes());
    }
    /// Sets the acknowledgement number.
    pub fn set_ack_number(&mut self, value: u32) {
        self.buffer.as_mut()[field::ACK_NUM].copy_from_slice(&value.to_be_bytes());
    }
    /// Sets the header length (a multiple of 4, 20..=60) and the flags.
    pub fn set_header_len_and_flags(&mut self, header_len: usize, flags: TcpFlags) {
        let b = &mut self.buffer.as_mut()[field::FLAGS];
        b[0] = ((header_len / 4) as u8) << 4;
        b[1] = flags.0;
    }
    /// Sets the window.
    pub fn set_window(&mut self, value: u16) {
        self.buffer.as_mut()[field::WINDOW].copy_from_slice(&value.to_be_bytes());
    }
    /// Stores a checksum value.
    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A SYN 40000 -> 80 with an MSS option (data offset 6).
    const SYN: [u8; 24] = [
        0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x60, 0x02, 0xfa,
        0xf0, 0x12, 0x34, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4,
    ];

    #[test]
    fn parse_fields() {
        let p = Packet::new_checked(&SYN[..]).unwrap();
        assert_eq!(p.src_port(), 40000);
        assert_eq!(p.dst_port(), 80);
        assert_eq!(p.seq_number(), 1);
        assert_eq!(p.header_len(), 24);
        assert!(p.flags().syn() && !p.flags().ack());
        assert_eq!(p.window(), 0xfaf0);
        assert_eq!(p.checksum(), 0x1234);
    }

    #[test]
    fn every_truncation_is_refused() {
        for len in 0..SYN.len() {
            assert_eq!(
                Packet::new_checked(&SYN[..len]).err(),
                Some(TcpError::Truncated),
                "{len}"
            );
        }
    }

    #[test]
    fn data_offset_below_five_is_refused() {
        let mut s = SYN;
        s[12] = 0x40;
        assert_eq!(
            Packet::new_checked(&s[..]).err(),
            Some(TcpError::BadHeaderLen)
        );
    }

    #[test]
    fn emit_then_parse() {
        let mut buf = [0u8; 20];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_src_port(1);
        p.set_dst_port(2);
        p.set_seq_number(3);
        p.set_ack_number(4);
        p.set_header_len_and_flags(20, TcpFlags(TcpFlags::FIN | TcpFlags::ACK));
        p.set_window(5);
        p.set_checksum(6);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(
            (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number()),
            (1, 2, 3, 4)
        );
        assert!(p.flags().fin() && p.flags().ack() && !p.flags().rst());
        assert_eq!((p.window(), p.checksum()), (5, 6));
    }
}
