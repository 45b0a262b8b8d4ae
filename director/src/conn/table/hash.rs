//! Seeded hashing of flow keys for the two indexes.

use super::*;

/// A folded 64×64→128 multiply: the high and low halves xor'ed.
#[inline(always)]
pub(super) fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Hasher {
    seed: [u64; 4],
}

impl Hasher {
    pub(super) fn new(seed: u64) -> Self {
        let mut s = seed;
        let mut next = || {
            // SplitMix64: spreads one seed into four independent keys.
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Self {
            seed: [next(), next(), next(), next()],
        }
    }

    /// Five key words → 64 bits.
    #[inline(always)]
    pub(super) fn hash(&self, w: [u64; 5]) -> u64 {
        let [s0, s1, s2, s3] = self.seed;
        let a = fold(w[0] ^ s0, w[1] ^ s1);
        let b = fold(w[2] ^ s2, w[3] ^ s3);
        let c = fold(w[4] ^ s1, a ^ s2);
        fold(b ^ s0, c ^ s3)
    }
}

/// A timer re-armed by a packet is left alone when it would move by less
/// than this (and less than a sixteenth of the timeout: see
/// [`rearm_slack`]).
pub(super) const REARM_SLACK_MS: Millis = 1_000;

/// The slack for re-arming a timer of `timeout`: a sixteenth of it, at
/// most [`REARM_SLACK_MS`].
pub(super) const fn rearm_slack(timeout: Millis) -> Millis {
    let s = timeout / 16;
    if s < REARM_SLACK_MS {
        s
    } else {
        REARM_SLACK_MS
    }
}
