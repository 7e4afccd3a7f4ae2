//! The replica's randomness, from a seed it is given: the same seed and inputs make the same
//! choices, so a simulated cluster replays exactly. (SplitMix64: small, fast, and good enough
//! to spread election timeouts; nothing here needs a cryptographic generator.)

/// A seeded pseudo-random sequence.
#[derive(Clone, Debug)]
pub struct Random {
    state: u64,
}

impl Random {
    /// The sequence of `seed`.
    pub fn new(seed: u64) -> Random {
        Random { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..high` (`low` when the range is empty).
    pub fn below(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        low + self.next_u64() % (high - low)
    }

    /// True with probability `numerator / denominator`.
    pub fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        denominator != 0 && self.next_u64() % denominator < numerator
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence_and_ranges_hold() {
        let mut a = Random::new(7);
        let mut b = Random::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
            let (n, m) = (a.below(10, 20), b.below(10, 20));
            assert_eq!(n, m);
            assert!((10..20).contains(&n));
        }
        assert_eq!(a.below(5, 5), 5);
        assert!(!a.chance(1, 0));
        assert_ne!(Random::new(1).next_u64(), Random::new(2).next_u64());
    }
}
