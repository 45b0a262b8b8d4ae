//! The Internet checksum: RFC 1071 full sum, RFC 1624 incremental update,
//! IPv4/IPv6 pseudo-headers, and UDP's zero rule.
//!
//! Rewrites in this crate never recompute a checksum from scratch: they
//! update it for the words they change (RFC 1624, eqn. 3:
//! `HC' = ~(~HC + ~m + m')`), which costs a few adds however long the
//! payload is. A property test in `rewrite` checks that the result always
//! equals a full recompute.
//!
//! UDP's zero rule: over IPv4 a UDP checksum of 0 means "none was computed";
//! such a datagram keeps 0 after a rewrite. A computed checksum of 0 is sent
//! as 0xffff (the other one's-complement zero). Over IPv6 the checksum is
//! mandatory, so the same 0 → 0xffff rule applies and 0 is never left alone.

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::ip::IpProtocol;

/// Adds `data` as big-endian 16-bit words (an odd last byte is padded with
/// zero) to a running 32-bit partial sum. The sum is unfolded: fold it with
/// [`fold`] when done. Safe for any frame size (carries are folded as we go).
#[must_use]
pub fn sum(data: &[u8]) -> u32 {
    // Adding big-endian 32-bit words and folding later gives the same
    // one's-complement sum as adding 16-bit words (end-around carry), in
    // half the additions; a u64 cannot overflow within any frame.
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    match *words.remainder() {
        [a, b, c] => acc += u64::from(u32::from_be_bytes([a, b, c, 0])),
        [a, b] => acc += u64::from(u16::from_be_bytes([a, b])) << 16,
        [a] => acc += u64::from(a) << 24,
        _ => {}
    }
    fold64(acc)
}

/// Folds a 64-bit partial sum into a 32-bit one of the same one's-complement
/// value (at most 0x2fffd), in fixed steps: no loop, no branch.
fn fold64(acc: u64) -> u32 {
    let a = (acc & 0xffff_ffff) + (acc >> 32);
    ((a & 0xffff) + ((a >> 16) & 0xffff) + (a >> 32)) as u32
}

/// Adds two partial sums.
#[must_use]
pub fn combine(a: u32, b: u32) -> u32 {
    fold64(u64::from(a) + u64::from(b))
}

/// Folds a partial sum into 16 bits with end-around carry (not inverted).
#[must_use]
pub fn fold(acc: u32) -> u16 {
    // Two end-around-carry steps always suffice for 32 bits: the first
    // leaves at most 0x1fffe, the second at most 0xffff.
    let a = (acc & 0xffff) + (acc >> 16);
    ((a & 0xffff) + (a >> 16)) as u16
}

/// The checksum of `data` (RFC 1071): the inverted folded sum. Computing it
/// over data that includes a correct checksum field gives 0.
#[must_use]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// Finishes a checksum from a partial sum: fold and invert.
#[must_use]
pub fn finish(acc: u32) -> u16 {
    !fold(acc)
}

/// Partial sum of the IPv4 pseudo-header (RFC 793 / RFC 768).
#[must_use]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: IpProtocol, length: u16) -> u32 {
    let s = src.octets();
    let d = dst.octets();
    u32::from(u16::from_be_bytes([s[0], s[1]]))
        + u32::from(u16::from_be_bytes([s[2], s[3]]))
        + u32::from(u16::from_be_bytes([d[0], d[1]]))
        + u32::from(u16::from_be_bytes([d[2], d[3]]))
        + u32::from(u8::from(proto))
        + u32::from(length)
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 §8.1).
#[must_use]
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, proto: IpProtocol, length: u32) -> u32 {
    let mut acc = sum(&src.octets());
    acc = combine(acc, sum(&dst.octets()));
    acc = combine(acc, (length >> 16) + (length & 0xffff));
    combine(acc, u32::from(u8::from(proto)))
}

/// The change an edit makes to a one's-complement sum, computed once and
/// applied to every checksum that covers the edited bytes (an address is
/// covered by the IPv4 header checksum and by the transport checksum
/// through its pseudo-header). RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`;
/// a `Delta` is the `~m + m'` part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delta(u32);

impl Delta {
    /// A 16-bit word changed from `old` to `new`.
    #[must_use]
    pub fn of_u16(old: u16, new: u16) -> Self {
        Self(u32::from(!old) + u32::from(new))
    }

    /// A 32-bit word (an IPv4 address) changed from `old` to `new`.
    #[must_use]
    pub fn of_u32(old: u32, new: u32) -> Self {
        // ~old complements both 16-bit halves at once.
        Self(fold64(u64::from(!old) + u64::from(new)))
    }

    /// A run of bytes at an even offset changed from `old` to `new`
    /// (same, even length).
    #[must_use]
    pub fn of_bytes(old: &[u8], new: &[u8]) -> Self {
        debug_assert_eq!(old.len(), new.len());
        let mut acc: u64 = 0;
        for (o, n) in old.chunks_exact(4).zip(new.chunks_exact(4)) {
            acc += u64::from(!u32::from_be_bytes([o[0], o[1], o[2], o[3]]));
            acc += u64::from(u32::from_be_bytes([n[0], n[1], n[2], n[3]]));
        }
        if old.len() % 4 == 2 {
            let (o, n) = (&old[old.len() - 2..], &new[new.len() - 2..]);
            acc += u64::from(!u16::from_be_bytes([o[0], o[1]]));
            acc += u64::from(u16::from_be_bytes([n[0], n[1]]));
        }
        Self(fold64(acc))
    }

    /// Both edits.
    #[must_use]
    pub fn plus(self, other: Self) -> Self {
        Self(combine(self.0, other.0))
    }

    /// The checksum after the edit, given the one before.
    #[must_use]
    pub fn apply(self, check: u16) -> u16 {
        !fold(combine(u32::from(!check), self.0))
    }
}

/// RFC 1624 eqn. 3 for one 16-bit word: the checksum after `old` became `new`.
#[must_use]
pub fn update_u16(check: u16, old: u16, new: u16) -> u16 {
    Delta::of_u16(old, new).apply(check)
}

/// RFC 1624 eqn. 3 for a run of bytes that changed from `old` to `new`
/// (addresses, ports). Both runs have the same even length and start at the
/// same even offset within the checksummed data.
#[must_use]
pub fn update_bytes(check: u16, old: &[u8], new: &[u8]) -> u16 {
    Delta::of_bytes(old, new).apply(check)
}

/// Applies UDP's rule to a freshly computed or updated checksum: a result
/// of 0 is transmitted as 0xffff.
#[must_use]
pub fn udp_nonzero(check: u16) -> u16 {
    if check == 0 { 0xffff } else { check }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 1071 §3 worked example: the words 0001 f203 f4f5 f6f7 sum to ddf2.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn folds_take_the_largest_sums() {
        // 2^32 - 1 and 2^64 - 1 are both multiples of 0xffff: one's
        // complement zero, which folds to 0xffff (never to 0 for a nonzero sum).
        assert_eq!(fold(u32::MAX), 0xffff);
        assert_eq!(fold(fold64(u64::MAX)), 0xffff);
        assert_eq!(fold(0x0001_ffff), 0x0001);
        assert_eq!(fold(fold64(0x0000_0001_0000_0000)), 0x0001);
        // Long runs of 0xff bytes take every carry path: compare with a
        // naive word-by-word sum with end-around carry.
        for len in [4096usize, 4097, 65535] {
            let data = std::vec![0xffu8; len];
            let mut naive: u32 = 0;
            for w in data.chunks(2) {
                naive += (u32::from(w[0]) << 8) | w.get(1).map_or(0, |b| u32::from(*b));
                naive = (naive & 0xffff) + (naive >> 16);
            }
            assert_eq!(fold(sum(&data)), naive as u16, "{len} bytes");
        }
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum(&[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
    }

    #[test]
    fn sum_is_independent_of_chunking() {
        let data: std::vec::Vec<u8> = (0..1001u32).map(|i| (i * 37 % 251) as u8).collect();
        let mut naive: u32 = 0;
        for w in data.chunks(2) {
            let hi = u32::from(w[0]) << 8;
            let lo = w.get(1).map_or(0, |b| u32::from(*b));
            naive += hi | lo;
        }
        assert_eq!(fold(sum(&data)), fold(naive));
    }

    // A real IPv4 header (from a capture): checksum field 0xb861.
    #[test]
    fn ipv4_header_from_capture() {
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&hdr), 0, "a correct header sums to zero");
        hdr[10] = 0;
        hdr[11] = 0;
        assert_eq!(checksum(&hdr), 0xb861);
    }

    #[test]
    fn incremental_update_matches_recompute() {
        let mut data = [0x45u8, 0x00, 0x12, 0x34, 0xab, 0xcd, 0x00, 0x00, 0xff, 0x01];
        let before = checksum(&data);
        let old = [data[4], data[5]];
        data[4] = 0x01;
        data[5] = 0x02;
        assert_eq!(update_bytes(before, &old, &data[4..6]), checksum(&data));
        assert_eq!(update_u16(before, 0xabcd, 0x0102), checksum(&data));
    }

    #[test]
    fn deltas_compose() {
        let mut data = [
            0x45u8, 0x00, 0x12, 0x34, 0xab, 0xcd, 0xef, 0x01, 0xff, 0x01, 0x77, 0x88,
        ];
        let before = checksum(&data);
        let old_addr = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
        let old_port = u16::from_be_bytes([data[10], data[11]]);
        data[4..8].copy_from_slice(&[192, 0, 2, 11]);
        data[10..12].copy_from_slice(&8080u16.to_be_bytes());
        let delta = Delta::of_u32(old_addr, u32::from_be_bytes([192, 0, 2, 11]))
            .plus(Delta::of_u16(old_port, 8080));
        assert_eq!(delta.apply(before), checksum(&data));
        let bytes = Delta::of_bytes(&old_addr.to_be_bytes(), &[192, 0, 2, 11])
            .plus(Delta::of_u16(old_port, 8080));
        assert_eq!(bytes.apply(before), checksum(&data));
    }

    #[test]
    fn pseudo_header_v6_counts_length_high_bits() {
        let a = Ipv6Addr::UNSPECIFIED;
        assert_eq!(
            fold(pseudo_header_v6(&a, &a, IpProtocol::Udp, 0x0001_0002)),
            0x0001 + 0x0002 + 17
        );
    }

    #[test]
    fn udp_zero_becomes_ffff() {
        assert_eq!(udp_nonzero(0), 0xffff);
        assert_eq!(udp_nonzero(0x1234), 0x1234);
    }
}
