//! The simulated network between members: every message gets a delivery time (so messages
//! reorder), may be dropped or duplicated, and is lost on a link that is cut. Links are one
//! direction each, so partitions can be asymmetric.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::replica::random::Random;

/// How the network misbehaves.
#[derive(Clone, Debug)]
pub struct NetworkFaults {
    /// Messages dropped, per million.
    pub drop_per_million: u64,
    /// Messages delivered twice, per million.
    pub duplicate_per_million: u64,
    /// Usual one-way delay range.
    pub delay: (Duration, Duration),
    /// Messages delayed far longer (reordered past many others), per million.
    pub late_per_million: u64,
    /// How late a late message is, at most.
    pub late: Duration,
}

impl NetworkFaults {
    /// A network that never misbehaves (still with delays).
    pub fn calm() -> NetworkFaults {
        NetworkFaults {
            drop_per_million: 0,
            duplicate_per_million: 0,
            delay: (Duration::from_micros(100), Duration::from_micros(500)),
            late_per_million: 0,
            late: Duration::ZERO,
        }
    }

    /// Frequent trouble of every kind.
    pub fn rough() -> NetworkFaults {
        NetworkFaults {
            drop_per_million: 20_000,
            duplicate_per_million: 10_000,
            delay: (Duration::from_micros(100), Duration::from_millis(3)),
            late_per_million: 20_000,
            late: Duration::from_millis(300),
        }
    }
}

/// What the network does with one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Lost (dropped, or its link is cut).
    Lost { cut: bool },
    /// Delivered after each of these delays (two for a duplicate).
    Delivered(Vec<Duration>),
}

/// The links and their faults.
#[derive(Debug)]
pub struct Network {
    faults: NetworkFaults,
    /// Directed links that are cut: (from, to).
    cut: BTreeSet<(u64, u64)>,
}

impl Network {
    /// A network where every link works.
    pub fn new(faults: NetworkFaults) -> Network {
        Network {
            faults,
            cut: BTreeSet::new(),
        }
    }

    /// Decides a message's fate; only a `duplicable` one may arrive twice.
    pub fn send(&mut self, random: &mut Random, from: u64, to: u64, duplicable: bool) -> Fate {
        if self.cut.contains(&(from, to)) {
            return Fate::Lost { cut: true };
        }
        if random.chance(self.faults.drop_per_million, 1_000_000) {
            return Fate::Lost { cut: false };
        }
        let mut delays = vec![self.delay(random)];
        if duplicable && random.chance(self.faults.duplicate_per_million, 1_000_000) {
            delays.push(self.delay(random));
        }
        Fate::Delivered(delays)
    }

    fn delay(&self, random: &mut Random) -> Duration {
        let (low, high) = self.faults.delay;
        let mut delay =
            Duration::from_nanos(random.below(low.as_nanos() as u64, high.as_nanos() as u64 + 1));
        if random.chance(self.faults.late_per_million, 1_000_000) {
            delay += Duration::from_nanos(random.below(0, self.faults.late.as_nanos() as u64 + 1));
        }
        delay
    }

    /// Cuts the link from `from` to `to`.
    pub fn cut(&mut self, from: u64, to: u64) {
        self.cut.insert((from, to));
    }

    /// Cuts every link between `side` and the rest of `members`, both ways.
    pub fn isolate(&mut self, side: &[u64], members: &[u64]) {
        for a in side {
            for b in members.iter().filter(|b| !side.contains(b)) {
                self.cut(*a, *b);
                self.cut(*b, *a);
            }
        }
    }

    /// Every link works again.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// True when some link is cut.
    pub fn is_partitioned(&self) -> bool {
        !self.cut.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_link_loses_messages_one_way_only() {
        let mut random = Random::new(1);
        let mut network = Network::new(NetworkFaults::calm());
        network.cut(1, 2);
        assert_eq!(
            network.send(&mut random, 1, 2, true),
            Fate::Lost { cut: true }
        );
        assert!(
            matches!(network.send(&mut random, 2, 1, true), Fate::Delivered(d) if d.len() == 1)
        );
        network.isolate(&[3], &[1, 2, 3]);
        assert_eq!(
            network.send(&mut random, 3, 1, true),
            Fate::Lost { cut: true }
        );
        assert_eq!(
            network.send(&mut random, 2, 3, true),
            Fate::Lost { cut: true }
        );
        network.heal();
        assert!(!network.is_partitioned());
    }

    #[test]
    fn a_rough_network_drops_and_duplicates_some_messages() {
        let mut random = Random::new(2);
        let mut network = Network::new(NetworkFaults::rough());
        let fates: Vec<Fate> = (0..10_000)
            .map(|_| network.send(&mut random, 1, 2, true))
            .collect();
        let lost = fates
            .iter()
            .filter(|f| matches!(f, Fate::Lost { .. }))
            .count();
        let doubled = fates
            .iter()
            .filter(|f| matches!(f, Fate::Delivered(d) if d.len() == 2))
            .count();
        assert!((100..400).contains(&lost), "{lost}");
        assert!((40..200).contains(&doubled), "{doubled}");
    }
}
