//! Random draws for twos, injectable so that every decision can be replayed.
//!
//! The kernel draws with `get_random_u32_below(n)`. [`SplitMix64`] is a
//! small seeded generator for the director (one per worker); [`FixedDraws`]
//! replays given numbers (tests, `xvs-schedsim`).

/// A source of uniform draws.
pub trait RandomSource {
    /// A number in `0..bound` (`bound >= 1`).
    fn below(&mut self, bound: u32) -> u32;
}

/// SplitMix64: tiny, seeded, good enough for picking two servers.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator with this seed.
    #[must_use]
    pub const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl RandomSource for SplitMix64 {
    fn below(&mut self, bound: u32) -> u32 {
        // Multiply-shift (Lemire) on the high 32 bits: no division, bias
        // below 2^-32 per draw.
        (((self.next_u64() >> 32) * u64::from(bound)) >> 32) as u32
    }
}

/// Replays given draws, each taken modulo the bound; falls back to a seeded
/// [`SplitMix64`] when they run out.
#[derive(Debug, Clone)]
pub struct FixedDraws {
    draws: Vec<u32>,
    next: usize,
    fallback: SplitMix64,
}

impl FixedDraws {
    /// Replays `draws` in order.
    #[must_use]
    pub fn new(draws: Vec<u32>) -> Self {
        Self {
            draws,
            next: 0,
            fallback: SplitMix64::new(0),
        }
    }

    /// Replaces the queue of draws (what is left of the old one is dropped).
    pub fn set(&mut self, draws: &[u32]) {
        self.draws.clear();
        self.draws.extend_from_slice(draws);
        self.next = 0;
    }
}

impl RandomSource for FixedDraws {
    fn below(&mut self, bound: u32) -> u32 {
        match self.draws.get(self.next) {
            Some(&d) => {
                self.next += 1;
                d % bound.max(1)
            }
            None => self.fallback.below(bound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_seeded_and_in_range() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        let xs: Vec<u32> = (0..100).map(|_| a.below(7)).collect();
        let ys: Vec<u32> = (0..100).map(|_| b.below(7)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|&x| x < 7));
        // All values appear over 100 draws of 7.
        for v in 0..7 {
            assert!(xs.contains(&v), "{v} never drawn");
        }
    }

    #[test]
    fn fixed_draws_are_taken_modulo_the_bound() {
        let mut d = FixedDraws::new(vec![3, 12]);
        assert_eq!(d.below(10), 3);
        assert_eq!(d.below(10), 2);
        assert!(d.below(10) < 10);
    }
}
