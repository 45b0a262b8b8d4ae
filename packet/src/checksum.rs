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

/// True when a 20-byte IPv4 header (no options) sums to one's-complement
/// zero: what `checksum(header) == 0` says, for the header the receive path
/// sees nearly every time.
///
/// At a fixed length the header is added without a loop or a bounds check,
/// 64 bits at a time with end-around carry (an add and an add-with-carry):
/// 2^64 and 2^32 are 1 modulo 0xffff, as 2^16 is, so wider words give the
/// same sum in fewer additions. The words are read in the machine's byte
/// order: a one's-complement sum taken in swapped byte order is the byte
/// swap of the other (RFC 1071 §2(B)), and both the result sought (0xffff)
/// and the only sum that folds to 0 (all words zero) are their own byte
/// swaps, so the answer is the same and no byte swap is spent on it.
#[must_use]
#[inline(always)]
pub fn verifies_ipv4_header(header: &[u8; 20]) -> bool {
    // Constant ranges of a fixed-size array: the conversions cannot fail.
    let word = |at: usize| u64::from_ne_bytes(header[at..at + 8].try_into().unwrap_or_default());
    let last = u32::from_ne_bytes(header[16..20].try_into().unwrap_or_default());
    // A sum that carried is at most 2^bits - 2: adding the carry back
    // cannot overflow.
    let (sum, carry) = word(0).overflowing_add(word(8));
    let (sum, carry) = (sum + u64::from(carry)).overflowing_add(u64::from(last));
    let sum = sum + u64::from(carry);
    let (sum, carry) = (sum as u32).overflowing_add((sum >> 32) as u32);
    let sum = sum + u32::from(carry);
    let (sum, carry) = (sum as u16).overflowing_add((sum >> 16) as u16);
    sum + u16::from(carry) == 0xffff
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
        // Every constructor leaves at most 0x2fffd (a folded sum, or two
        // 16-bit words), so adding 16 bits cannot overflow and [`fold`]
        // takes any u32: no 64-bit fold is needed here.
        !fold(u32::from(!check) + self.0)
    }
}

/// RFC 1624 eqn. 3 for one 16-bit word: the checksum after `old` became `new`.
#[must_use]
pub fn update_u16(check: u16, old: u16, new: u16) -> u16 {
    Delta::of_u16(old, new).apply(check)
}

/// RFC 1624 eqn. 3 for an edit whose `~m + m'` terms the caller has already
/// added up, unfolded, in `delta` (below 2^62, so that the sum cannot
/// overflow): the checksum after the edit, given the one before.
///
/// The same value as building a [`Delta`] term by term and applying it:
/// every fold keeps both the sum's residue modulo 0xffff and whether it is
/// zero (only when every term is), and those two decide the result. One fold
/// at the end is cheaper than one per term, which matters on the rewrite
/// fast path.
///
/// Byte order: the checksum and every word of `delta` may instead be read
/// in the machine's byte order (`from_ne_bytes`, all at even offsets) and
/// the result stored with `to_ne_bytes`: the bytes stored are the same
/// (RFC 1071 §2(B); 0 and 0xffff, the values that matter for the zero rules,
/// are their own byte swaps). The fast paths do so and spend no byte swaps.
#[must_use]
#[inline]
pub(crate) fn apply_unfolded(check: u16, delta: u64) -> u16 {
    let sum = u64::from(!check) + delta;
    // Two end-around-carry additions (an add and an add-with-carry each):
    // neither `+ carry` can overflow, since a sum that carried is at most
    // 2 * max - 2^bits = max - 1.
    let (low, carry) = (sum as u32).overflowing_add((sum >> 32) as u32);
    let sum = low + u32::from(carry);
    let (low, carry) = (sum as u16).overflowing_add((sum >> 16) as u16);
    !(low + u16::from(carry))
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

    /// Values where folds and end-around carries change what they do.
    const EDGES16: [u16; 6] = [0, 1, 0x00ff, 0xfeff, 0xfffe, 0xffff];
    const EDGES32: [u32; 6] = [0, 1, 0x0000_ffff, 0xffff_0000, 0xffff_fffe, 0xffff_ffff];

    /// `apply` as it was written first, with a 64-bit fold of the sum.
    fn apply_with_combine(delta: Delta, check: u16) -> u16 {
        !fold(combine(u32::from(!check), delta.0))
    }

    #[test]
    fn apply_and_one_fold_agree_with_a_fold_per_word_at_the_edges() {
        for check in EDGES16 {
            for (old, new) in EDGES32.iter().flat_map(|o| EDGES32.map(|n| (*o, n))) {
                for (o16, n16) in EDGES16.iter().flat_map(|o| EDGES16.map(|n| (*o, n))) {
                    let delta = Delta::of_u32(old, new).plus(Delta::of_u16(o16, n16));
                    for d in [delta, Delta::of_u32(old, new), Delta::of_u16(o16, n16)] {
                        assert_eq!(d.apply(check), apply_with_combine(d, check));
                    }
                    let flat = u64::from(!old) + u64::from(new) + u64::from(!o16) + u64::from(n16);
                    assert_eq!(
                        apply_unfolded(check, flat),
                        delta.apply(check),
                        "{check:#x} {old:#x}->{new:#x} {o16:#x}->{n16:#x}"
                    );
                }
            }
        }
        // No edit leaves any checksum as it was, both zeros included.
        for check in EDGES16 {
            assert_eq!(Delta::default().apply(check), check);
        }
    }

    #[test]
    fn fixed_ipv4_header_sum_at_the_edges() {
        // All zero: the sum is 0, the checksum 0xffff, so it does not verify.
        assert!(!verifies_ipv4_header(&[0; 20]));
        assert_ne!(checksum(&[0; 20]), 0);
        // All ones: ten one's-complement zeros, which verify.
        assert!(verifies_ipv4_header(&[0xff; 20]));
        assert_eq!(checksum(&[0xff; 20]), 0);
        let capture = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert!(verifies_ipv4_header(&capture));
        for i in 0..20 {
            let mut bad = capture;
            bad[i] ^= 0x10;
            assert!(!verifies_ipv4_header(&bad), "byte {i} flipped");
        }
    }

    /// `apply_unfolded` over words read in little-endian order stores the
    /// same bytes as over big-endian words (what the fast paths rely on).
    fn stored_either_order(check: [u8; 2], old: [u8; 4], new: [u8; 4], o16: [u8; 2], n16: [u8; 2]) {
        let be = apply_unfolded(
            u16::from_be_bytes(check),
            u64::from(!u32::from_be_bytes(old))
                + u64::from(u32::from_be_bytes(new))
                + u64::from(!u16::from_be_bytes(o16))
                + u64::from(u16::from_be_bytes(n16)),
        );
        let le = apply_unfolded(
            u16::from_le_bytes(check),
            u64::from(!u32::from_le_bytes(old))
                + u64::from(u32::from_le_bytes(new))
                + u64::from(!u16::from_le_bytes(o16))
                + u64::from(u16::from_le_bytes(n16)),
        );
        assert_eq!(be.to_be_bytes(), le.to_le_bytes());
    }

    #[test]
    fn either_byte_order_stores_the_same_bytes_at_the_edges() {
        for check in EDGES16 {
            for old in EDGES32 {
                for new in EDGES32 {
                    for o16 in EDGES16 {
                        for n16 in EDGES16 {
                            stored_either_order(
                                check.to_be_bytes(),
                                old.to_be_bytes(),
                                new.to_be_bytes(),
                                o16.to_be_bytes(),
                                n16.to_be_bytes(),
                            );
                        }
                    }
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2048, ..Default::default() })]

        #[test]
        fn either_byte_order_stores_the_same_bytes(check: [u8; 2], old: [u8; 4], new: [u8; 4], o16: [u8; 2], n16: [u8; 2]) {
            stored_either_order(check, old, new, o16, n16);
        }

        /// The fixed-length, native-byte-order sum says what the full sum says.
        #[test]
        fn fixed_ipv4_header_sum_equals_the_full_sum(mut header: [u8; 20], fill: bool) {
            if fill {
                header[10..12].copy_from_slice(&[0, 0]);
                let value = checksum(&header);
                header[10..12].copy_from_slice(&value.to_be_bytes());
            }
            proptest::prop_assert_eq!(verifies_ipv4_header(&header), checksum(&header) == 0);
        }

        /// One fold over every changed word gives what a fold per word gives.
        #[test]
        fn one_fold_equals_a_fold_per_word(check: u16, old: u32, new: u32, o16: u16, n16: u16) {
            let delta = Delta::of_u32(old, new).plus(Delta::of_u16(o16, n16));
            proptest::prop_assert_eq!(delta.apply(check), apply_with_combine(delta, check));
            let flat = u64::from(!old) + u64::from(new) + u64::from(!o16) + u64::from(n16);
            proptest::prop_assert_eq!(apply_unfolded(check, flat), delta.apply(check));
        }
    }

    #[test]
    fn udp_zero_becomes_ffff() {
        assert_eq!(udp_nonzero(0), 0xffff);
        assert_eq!(udp_nonzero(0x1234), 0x1234);
    }
}
