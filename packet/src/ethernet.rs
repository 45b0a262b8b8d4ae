//! Ethernet II frames and one 802.1Q VLAN tag.
//!
//! The view covers the 14-byte header; the payload is everything after it
//! (including any padding the sender added to reach 60 bytes, which the IP
//! layer ignores by its own length field).

use core::fmt;
use core::str::FromStr;

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: Self = Self([0xff; 6]);
    /// 00:00:00:00:00:00.
    pub const ZERO: Self = Self([0; 6]);

    /// True for group (multicast and broadcast) addresses.
    #[must_use]
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a MAC address string was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacParseError;

impl fmt::Display for MacParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a MAC address: write six hex pairs separated by ':' or '-', e.g. 02:00:5e:00:53:01")
    }
}

impl core::error::Error for MacParseError {}

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let part = parts.next().ok_or(MacParseError)?;
            if part.len() != 2 {
                return Err(MacParseError);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| MacParseError)?;
        }
        if parts.next().is_some() {
            return Err(MacParseError);
        }
        Ok(Self(out))
    }
}

/// The EtherType field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EtherType {
    /// IPv4 (0x0800).
    Ipv4,
    /// ARP (0x0806).
    Arp,
    /// 802.1Q VLAN tag (0x8100).
    Vlan,
    /// IPv6 (0x86dd).
    Ipv6,
    /// Any other value, carried as it is.
    Unknown(u16),
}

impl From<u16> for EtherType {
    fn from(value: u16) -> Self {
        match value {
            0x0800 => Self::Ipv4,
            0x0806 => Self::Arp,
            0x8100 => Self::Vlan,
            0x86dd => Self::Ipv6,
            other => Self::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(value: EtherType) -> Self {
        match value {
            EtherType::Ipv4 => 0x0800,
            EtherType::Arp => 0x0806,
            EtherType::Vlan => 0x8100,
            EtherType::Ipv6 => 0x86dd,
            EtherType::Unknown(other) => other,
        }
    }
}

/// Why an Ethernet or VLAN header could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EthernetError {
    /// Shorter than the header.
    Truncated,
}

mod field {
    use core::ops::Range;
    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
}

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = field::ETHERTYPE.end;

/// A view over an Ethernet II frame.
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer that holds at least the header.
    pub fn new_checked(buffer: T) -> Result<Self, EthernetError> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// After this succeeds no accessor can panic.
    pub fn check_len(&self) -> Result<(), EthernetError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(EthernetError::Truncated)
        } else {
            Ok(())
        }
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC.
    pub fn dst_addr(&self) -> MacAddr {
        let mut mac = [0; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[field::DESTINATION]);
        MacAddr(mac)
    }

    /// Source MAC.
    pub fn src_addr(&self) -> MacAddr {
        let mut mac = [0; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[field::SOURCE]);
        MacAddr(mac)
    }

    /// EtherType.
    pub fn ethertype(&self) -> EtherType {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        EtherType::from(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Everything after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination MAC.
    pub fn set_dst_addr(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&mac.0);
    }

    /// Sets the source MAC.
    pub fn set_src_addr(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&mac.0);
    }

    /// Sets the EtherType.
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&u16::from(ethertype).to_be_bytes());
    }

    /// Everything after the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// An 802.1Q tag: the 4 bytes after the outer EtherType 0x8100.
pub mod vlan {
    use super::{EtherType, EthernetError};

    mod field {
        use core::ops::Range;
        pub const TCI: Range<usize> = 0..2;
        pub const ETHERTYPE: Range<usize> = 2..4;
    }

    /// Length of the tag.
    pub const HEADER_LEN: usize = field::ETHERTYPE.end;

    /// A view over an 802.1Q tag.
    #[derive(Debug, Clone)]
    pub struct Tag<T: AsRef<[u8]>> {
        buffer: T,
    }

    impl<T: AsRef<[u8]>> Tag<T> {
        /// Wraps a buffer without checking its length.
        pub const fn new_unchecked(buffer: T) -> Self {
            Self { buffer }
        }

        /// Wraps a buffer that holds at least the tag.
        pub fn new_checked(buffer: T) -> Result<Self, EthernetError> {
            if buffer.as_ref().len() < HEADER_LEN {
                return Err(EthernetError::Truncated);
            }
            Ok(Self { buffer })
        }

        /// VLAN id (12 bits).
        pub fn vlan_id(&self) -> u16 {
            let b = &self.buffer.as_ref()[field::TCI];
            u16::from_be_bytes([b[0], b[1]]) & 0x0fff
        }

        /// Priority code point (3 bits).
        pub fn priority(&self) -> u8 {
            self.buffer.as_ref()[field::TCI.start] >> 5
        }

        /// The EtherType of what the tag carries.
        pub fn ethertype(&self) -> EtherType {
            let b = &self.buffer.as_ref()[field::ETHERTYPE];
            EtherType::from(u16::from_be_bytes([b[0], b[1]]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: [u8; 16] = [
        0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x08, 0x00, 0xaa, 0xbb,
    ];

    #[test]
    fn parse_fields() {
        let f = Frame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(f.dst_addr(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(f.src_addr(), MacAddr([2, 0, 0, 0, 0, 2]));
        assert_eq!(f.ethertype(), EtherType::Ipv4);
        assert_eq!(f.payload(), &[0xaa, 0xbb]);
    }

    #[test]
    fn every_truncation_is_refused() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Frame::new_checked(&FRAME[..len]).err(),
                Some(EthernetError::Truncated),
                "length {len}"
            );
        }
    }

    #[test]
    fn emit_fields() {
        let mut buf = [0u8; 14];
        let mut f = Frame::new_unchecked(&mut buf[..]);
        f.set_dst_addr(MacAddr([2, 0, 0, 0, 0, 1]));
        f.set_src_addr(MacAddr([2, 0, 0, 0, 0, 2]));
        f.set_ethertype(EtherType::Ipv6);
        assert_eq!(&buf[..], &[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xdd]);
    }

    #[test]
    fn mac_text_round_trip() {
        let mac: MacAddr = "02:00:5e:00:53:01".parse().unwrap();
        assert_eq!(mac.to_string(), "02:00:5e:00:53:01");
        assert_eq!("02-00-5e-00-53-01".parse::<MacAddr>(), Ok(mac));
        for bad in [
            "",
            "02:00:5e:00:53",
            "02:00:5e:00:53:01:02",
            "2:00:5e:00:53:01",
            "zz:00:5e:00:53:01",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn vlan_tag_fields() {
        let tag = vlan::Tag::new_checked(&[0xa0, 0x64, 0x86, 0xdd][..]).unwrap();
        assert_eq!(tag.vlan_id(), 100);
        assert_eq!(tag.priority(), 5);
        assert_eq!(tag.ethertype(), EtherType::Ipv6);
        assert!(vlan::Tag::new_checked(&[0u8; 3][..]).is_err());
    }
}
