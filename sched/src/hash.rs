//! The kernel's hash functions, bit for bit.
//!
//! * [`hash_32`] is `include/linux/hash.h`'s multiplicative hash of current
//!   kernels: multiply by `GOLDEN_RATIO_32` and keep the *high* bits. dh, sh,
//!   lblc and lblcr index their tables with it.
//! * [`hsiphash_u32`] is `hsiphash()` of a 4-byte value as a 64-bit kernel
//!   computes it: on 64-bit kernels "HalfSipHash-1-3" is really
//!   SipHash-1-3 (one compression round, three finalisation rounds) with the
//!   standard initialisation constants, truncated to 32 bits. mh builds and
//!   looks up its Maglev table with it; the message is the little-endian
//!   image of the u32, as x86_64 and arm64 store it.
//! * [`fold_addr`] turns an address into the u32 the schedulers hash: IPv4 in
//!   host order, IPv6 as the XOR of its four 32-bit words.

use core::net::IpAddr;

/// `GOLDEN_RATIO_32` of `include/linux/hash.h`.
pub const GOLDEN_RATIO_32: u32 = 0x61C8_8647;

/// The kernel's `hash_32(val, bits)`: the high `bits` bits of
/// `val * GOLDEN_RATIO_32` (mod 2^32). `bits` must be in 1..=32.
#[must_use]
pub const fn hash_32(val: u32, bits: u32) -> u32 {
    val.wrapping_mul(GOLDEN_RATIO_32) >> (32 - bits)
}

/// The address as schedulers hash it: IPv4 in host byte order; IPv6 folded
/// by XOR of its four 32-bit words (the kernel XORs the network-order words
/// and then converts, which is the same thing).
#[must_use]
pub fn fold_addr(addr: &IpAddr) -> u32 {
    match addr {
        IpAddr::V4(a) => u32::from(*a),
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            w(0) ^ w(4) ^ w(8) ^ w(12)
        }
    }
}

/// A 128-bit SipHash key as two 64-bit words (`hsiphash_key_t` on a 64-bit
/// kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipKey(pub u64, pub u64);

const fn rotl(x: u64, b: u32) -> u64 {
    x.rotate_left(b)
}

#[derive(Clone, Copy)]
struct SipState {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
}

impl SipState {
    const fn new(key: SipKey) -> Self {
        Self {
            v0: 0x736f_6d65_7073_6575 ^ key.0,
            v1: 0x646f_7261_6e64_6f6d ^ key.1,
            v2: 0x6c79_6765_6e65_7261 ^ key.0,
            v3: 0x7465_6462_7974_6573 ^ key.1,
        }
    }

    fn round(&mut self) {
        self.v0 = self.v0.wrapping_add(self.v1);
        self.v1 = rotl(self.v1, 13);
        self.v1 ^= self.v0;
        self.v0 = rotl(self.v0, 32);
        self.v2 = self.v2.wrapping_add(self.v3);
        self.v3 = rotl(self.v3, 16);
        self.v3 ^= self.v2;
        self.v0 = self.v0.wrapping_add(self.v3);
        self.v3 = rotl(self.v3, 21);
        self.v3 ^= self.v0;
        self.v2 = self.v2.wrapping_add(self.v1);
        self.v1 = rotl(self.v1, 17);
        self.v1 ^= self.v2;
        self.v2 = rotl(self.v2, 32);
    }
}

/// SipHash-c-d over `msg` (the standard byte-oriented definition); kept
/// general so that tests can check it against the SipHash-2-4 vectors.
#[must_use]
pub fn siphash(key: SipKey, msg: &[u8], c_rounds: u32, d_rounds: u32) -> u64 {
    let mut s = SipState::new(key);
    let mut chunks = msg.chunks_exact(8);
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let m = u64::from_le_bytes(w);
        s.v3 ^= m;
        for _ in 0..c_rounds {
            s.round();
        }
        s.v0 ^= m;
    }
    let mut b = (msg.len() as u64) << 56;
    for (i, byte) in chunks.remainder().iter().enumerate() {
        b |= u64::from(*byte) << (8 * i);
    }
    s.v3 ^= b;
    for _ in 0..c_rounds {
        s.round();
    }
    s.v0 ^= b;
    s.v2 ^= 0xff;
    for _ in 0..d_rounds {
        s.round();
    }
    s.v0 ^ s.v1 ^ s.v2 ^ s.v3
}

/// `hsiphash(&v, 4, key)` on a 64-bit little-endian kernel: SipHash-1-3 of
/// the four bytes of `v`, truncated to 32 bits. Specialised (no loop, no
/// slice) because mh calls it once per table probe.
#[must_use]
pub fn hsiphash_u32(v: u32, key: SipKey) -> u32 {
    let mut s = SipState::new(key);
    let b = (4u64 << 56) | u64::from(v);
    s.v3 ^= b;
    s.round();
    s.v0 ^= b;
    s.v2 ^= 0xff;
    s.round();
    s.round();
    s.round();
    (s.v0 ^ s.v1 ^ s.v2 ^ s.v3) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn hash_32_keeps_the_high_bits_of_the_golden_ratio_product() {
        // 1 * 0x61C88647 = 0x61C88647: high 8 bits 0x61.
        assert_eq!(hash_32(1, 8), 0x61);
        assert_eq!(hash_32(1, 10), 0x61C8_8647 >> 22);
        // 10.0.0.1 = 0x0A000001; product mod 2^32 = 0xD2A8_C0FF... computed
        // independently: 0x0A000001 * 0x61C88647 = 0x3D1D53EC6_61C88647 + ...
        let p = 0x0A00_0001u64 * 0x61C8_8647u64;
        assert_eq!(hash_32(0x0A00_0001, 8), ((p as u32) >> 24));
        assert_eq!(hash_32(0, 8), 0);
    }

    #[test]
    fn siphash_2_4_matches_the_reference_vectors() {
        // The SipHash paper's vectors: key 00..0f, messages 00, 00 01, ...;
        // they check the round function, the padding and the length byte
        // that the 1-3 variant shares.
        let key = SipKey(0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        let msg: Vec<u8> = (0u8..16).collect();
        assert_eq!(siphash(key, &msg[..0], 2, 4), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash(key, &msg[..1], 2, 4), 0x74f8_39c5_93dc_67fd);
        assert_eq!(siphash(key, &msg[..4], 2, 4), 0xcf27_94e0_2771_87b7);
        assert_eq!(siphash(key, &msg[..8], 2, 4), 0x93f5_f579_9a93_2462);
        assert_eq!(siphash(key, &msg[..15], 2, 4), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn hsiphash_u32_is_siphash_1_3_of_the_little_endian_bytes() {
        let key = SipKey(2_654_435_761, 2_654_435_761);
        for v in [0u32, 1, 0x0A00_0001, 0xdead_beef, u32::MAX] {
            assert_eq!(
                hsiphash_u32(v, key),
                siphash(key, &v.to_le_bytes(), 1, 3) as u32
            );
        }
        // Different keys give different hashes.
        assert_ne!(
            hsiphash_u32(7, key),
            hsiphash_u32(7, SipKey(2_654_446_892, 2_654_446_892))
        );
    }

    #[test]
    fn ipv6_folds_by_xor_of_words() {
        let a = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        assert_eq!(fold_addr(&a), 0x2001_0db8 ^ 1);
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(fold_addr(&b), 0x0A00_0001);
    }
}
