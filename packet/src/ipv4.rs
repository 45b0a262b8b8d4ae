//! IPv4 headers, with options.
//!
//! The header length comes from IHL and options are skipped, never read as
//! payload. A frame may carry Ethernet padding after the datagram: the
//! datagram ends at `total_len`, not at the end of the buffer.
//!
//! Two checks exist: [`Packet::check_len`] for a datagram received whole
//! (header and total length must fit the buffer), and
//! [`Packet::check_header_len`] for a header quoted inside an ICMP error,
//! where the quote is cut short of the original's total length.

use core::net::Ipv4Addr;

use crate::checksum;
use crate::ip::IpProtocol;

/// Why an IPv4 header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv4Error {
    /// Shorter than the fixed header, or than IHL says.
    Truncated,
    /// Version field is not 4.
    BadVersion,
    /// IHL below 5 (20 bytes).
    BadHeaderLen,
    /// Total length below the header length or beyond the frame.
    BadTotalLen,
    /// Header checksum does not verify.
    BadChecksum,
}

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// Length of the header without options.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// Byte offset of the header checksum (for incremental updates by callers).
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;
/// Byte offset of the source address.
pub const SRC_ADDR_OFFSET: usize = field::SRC_ADDR.start;
/// Byte offset of the destination address.
pub const DST_ADDR_OFFSET: usize = field::DST_ADDR.start;

/// A view over an IPv4 datagram.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a whole received datagram: see [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, Ipv4Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the fixed header, IHL and version, without looking at the
    /// total length: for headers quoted inside ICMP errors. Afterwards every
    /// header accessor is safe; [`Packet::payload`] is not.
    pub fn check_header_len(&self) -> Result<(), Ipv4Error> {
        self.check_header_within(self.buffer.as_ref().len())
    }

    /// [`Packet::check_header_len`] for a datagram of `len` bytes of which
    /// this view may hold only the start: the receive path checks a view
    /// over the fixed 20-byte header (whose accessors the compiler knows
    /// cannot go out of bounds) against the length of the whole frame.
    pub(crate) fn check_header_within(&self, len: usize) -> Result<(), Ipv4Error> {
        if len < HEADER_LEN || self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Ipv4Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Ipv4Error::BadVersion);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN {
            return Err(Ipv4Error::BadHeaderLen);
        }
        if header_len > len {
            return Err(Ipv4Error::Truncated);
        }
        Ok(())
    }

    /// Checks a whole datagram: header as in [`Packet::check_header_len`],
    /// and a total length that covers the header and fits the buffer.
    /// Afterwards no accessor can panic.
    pub fn check_len(&self) -> Result<(), Ipv4Error> {
        self.check_within(self.buffer.as_ref().len())
    }

    /// [`Packet::check_len`] for a datagram of `len` bytes of which this
    /// view may hold only the start (see [`Packet::check_header_within`]).
    pub(crate) fn check_within(&self, len: usize) -> Result<(), Ipv4Error> {
        self.check_header_within(len)?;
        let total = usize::from(self.total_len());
        if total < self.header_len() || total > len {
            return Err(Ipv4Error::BadTotalLen);
        }
        Ok(())
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version field (4 for a valid header).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// DSCP and ECN byte.
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Total length of the datagram.
    pub fn total_len(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::LENGTH])
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::IDENT])
    }

    /// Don't-fragment flag.
    pub fn dont_frag(&self) -> bool {
        self.buffer.as_ref()[field::FLG_OFF.start] & 0x40 != 0
    }

    /// More-fragments flag.
    pub fn more_frags(&self) -> bool {
        self.buffer.as_ref()[field::FLG_OFF.start] & 0x20 != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (be16(&self.buffer.as_ref()[field::FLG_OFF]) & 0x1fff) << 3
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload.
    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// Header checksum as stored.
    pub fn checksum(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        addr(&self.buffer.as_ref()[field::SRC_ADDR])
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        addr(&self.buffer.as_ref()[field::DST_ADDR])
    }

    /// True when the header checksum verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        let data = self.buffer.as_ref();
        match data.first_chunk::<HEADER_LEN>() {
            // No options (IHL 5): summed at a fixed length.
            Some(header) if header[field::VER_IHL] & 0x0f == 5 => {
                checksum::verifies_ipv4_header(header)
            }
            _ => sums_to_zero(&data[..self.header_len()]),
        }
    }

    /// The options (may be empty).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// The payload: from the end of the header to the total length.
    /// Only after [`Packet::check_len`].
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version 4 and the header length (a multiple of 4, 20..=60).
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((header_len / 4) as u8 & 0x0f);
    }

    /// Sets DSCP and ECN.
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value;
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, value: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the identification.
    pub fn set_ident(&mut self, value: u16) {
        self.buffer.as_mut()[field::IDENT].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets flags (DF, MF) and the fragment offset (in bytes, a multiple of 8).
    pub fn set_flags_and_offset(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let value =
            (u16::from(dont_frag) << 14) | (u16::from(more_frags) << 13) | ((offset >> 3) & 0x1fff);
        self.buffer.as_mut()[field::FLG_OFF].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the time to live (checksum not updated).
    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    /// Sets the protocol (checksum not updated).
    pub fn set_protocol(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = value.into();
    }

    /// Stores a checksum value.
    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the source address (checksum not updated).
    pub fn set_src_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&value.octets());
    }

    /// Sets the destination address (checksum not updated).
    pub fn set_dst_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&value.octets());
    }

    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let len = self.header_len();
        let value = checksum::checksum(&self.buffer.as_ref()[..len]);
        self.set_checksum(value);
    }
}

/// The general case of [`Packet::verify_checksum`], kept out of line so
/// that the common case stays small enough to inline.
#[inline(never)]
fn sums_to_zero(header: &[u8]) -> bool {
    checksum::checksum(header) == 0
}

pub(crate) fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

pub(crate) fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn addr(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::from(be32(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    // 192.168.0.1 -> 192.168.0.199, UDP, DF, TTL 64, total 0x73 (from a capture),
    // followed by the first four bytes of its payload.
    const HEADER: [u8; 24] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7, 1, 2, 3, 4,
    ];

    #[test]
    fn parse_header_fields() {
        let p = Packet::new_unchecked(&HEADER[..]);
        p.check_header_len().unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 0x73);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::Udp);
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(192, 168, 0, 199));
        assert!(p.verify_checksum());
        // The quoted-header check passes; the whole-datagram check sees that
        // 0x73 bytes are claimed and only 24 are present.
        assert_eq!(p.check_len(), Err(Ipv4Error::BadTotalLen));
    }

    #[test]
    fn every_truncation_of_the_header_is_refused() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_unchecked(&HEADER[..len]).check_header_len(),
                Err(Ipv4Error::Truncated),
                "length {len}"
            );
        }
    }

    #[test]
    fn ihl_below_five_is_refused() {
        for ihl in 0..5u8 {
            let mut h = HEADER;
            h[0] = 0x40 | ihl;
            assert_eq!(
                Packet::new_unchecked(&h[..]).check_header_len(),
                Err(Ipv4Error::BadHeaderLen)
            );
        }
    }

    #[test]
    fn options_are_skipped_not_read_as_payload() {
        // IHL 6: one 4-byte option (NOP NOP NOP EOL), payload after it.
        let mut d = [0u8; 28];
        d[..20].copy_from_slice(&HEADER[..20]);
        d[0] = 0x46;
        d[2..4].copy_from_slice(&28u16.to_be_bytes());
        d[20..24].copy_from_slice(&[1, 1, 1, 0]);
        d[24..28].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let mut p = Packet::new_unchecked(&mut d[..]);
        p.fill_checksum();
        let p = Packet::new_checked(&d[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert!(p.verify_checksum());
    }

    /// The same header with and without a 4-byte option: the 20-byte one
    /// takes the fixed-length sum, the other the general one; both accept a
    /// correct checksum and refuse any flipped bit in the summed bytes.
    #[test]
    fn verify_with_and_without_options_agree() {
        let mut plain = [0u8; 24];
        plain[..20].copy_from_slice(&HEADER[..20]);
        plain[20..].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]); // payload
        let mut with_option = plain;
        with_option[0] = 0x46;
        with_option[20..].copy_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
        Packet::new_unchecked(&mut with_option[..]).fill_checksum();
        for (buf, header_len) in [(plain, 20), (with_option, 24)] {
            let p = Packet::new_unchecked(&buf[..]);
            assert_eq!(p.header_len(), header_len);
            assert!(p.verify_checksum());
            assert_eq!(
                p.verify_checksum(),
                checksum::checksum(&buf[..header_len]) == 0
            );
            for byte in 0..header_len {
                for bit in 0..8 {
                    let mut bad = buf;
                    bad[byte] ^= 1 << bit;
                    let p = Packet::new_unchecked(&bad[..]);
                    if p.header_len() > bad.len() {
                        continue; // IHL flipped beyond the buffer
                    }
                    assert_eq!(
                        p.verify_checksum(),
                        checksum::checksum(&bad[..p.header_len()]) == 0,
                        "byte {byte} bit {bit}"
                    );
                    if p.header_len() == header_len {
                        assert!(!p.verify_checksum(), "byte {byte} bit {bit}");
                    }
                }
            }
        }
        // The payload after a 20-byte header is not summed.
        let mut other_payload = plain;
        other_payload[20..].copy_from_slice(&[0; 4]);
        assert!(Packet::new_unchecked(&other_payload[..]).verify_checksum());
    }

    proptest::proptest! {
        /// Whatever the IHL, the buffer's length and the bytes, the fast
        /// verify says what the RFC 1071 sum over the header says.
        #[test]
        fn verify_equals_the_full_sum(
            mut buf in proptest::collection::vec(proptest::prelude::any::<u8>(), 20..=64),
            ihl in 5u8..=15,
            fill: bool,
        ) {
            buf[0] = 0x40 | ihl;
            let header_len = usize::from(ihl) * 4;
            proptest::prop_assume!(header_len <= buf.len());
            if fill {
                Packet::new_unchecked(&mut buf[..]).fill_checksum();
            }
            let p = Packet::new_unchecked(&buf[..]);
            proptest::prop_assert_eq!(
                p.verify_checksum(),
                checksum::checksum(&buf[..header_len]) == 0
            );
            if fill {
                proptest::prop_assert!(p.verify_checksum());
            }
        }
    }

    #[test]
    fn ihl_beyond_buffer_is_truncated() {
        let mut h = HEADER;
        h[0] = 0x4f; // 60-byte header in a 24-byte buffer
        assert_eq!(
            Packet::new_unchecked(&h[..]).check_header_len(),
            Err(Ipv4Error::Truncated)
        );
    }

    #[test]
    fn bad_version_and_total_length() {
        let mut h = HEADER;
        h[0] = 0x65;
        assert_eq!(
            Packet::new_checked(&h[..]).err(),
            Some(Ipv4Error::BadVersion)
        );
        let mut h = HEADER;
        h[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            Packet::new_checked(&h[..]).err(),
            Some(Ipv4Error::BadTotalLen)
        );
        let mut h = HEADER;
        h[2..4].copy_from_slice(&24u16.to_be_bytes());
        assert!(Packet::new_checked(&h[..]).is_ok());
    }

    #[test]
    fn emit_then_parse() {
        let mut buf = [0u8; 20];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_version_and_header_len(20);
        p.set_total_len(20);
        p.set_ident(0x1234);
        p.set_flags_and_offset(false, true, 1480);
        p.set_ttl(3);
        p.set_protocol(IpProtocol::Tcp);
        p.set_src_addr(Ipv4Addr::new(198, 51, 100, 1));
        p.set_dst_addr(Ipv4Addr::new(203, 0, 113, 10));
        p.fill_checksum();
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(p.more_frags());
        assert!(!p.dont_frag());
        assert_eq!(p.frag_offset(), 1480);
        assert_eq!(p.ident(), 0x1234);
        assert!(p.verify_checksum());
    }
}
