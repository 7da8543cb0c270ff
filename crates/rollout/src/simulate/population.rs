//! The simulator's synthetic users and their requests: a seeded generator,
//! the pool of units with their activity and buckets, the choice of a unit
//! per request (Vose's alias method, O(1) per draw), and latencies drawn
//! from a table of a log-normal distribution's quantiles.
//!
//! Everything here draws from the generator handed in, which the run seeds
//! from its own seed: the same seed gives the same units, requests, errors
//! and latencies, whatever else runs beside it.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use stats::inference::normal_quantile;

/// The run's generator: ChaCha8, seeded by the run's seed (the same generator
/// the statistics engine's Thompson sampling uses).
pub(crate) struct Draws(ChaCha8Rng);

impl Draws {
    pub(crate) fn new(seed: u64) -> Self {
        Draws(ChaCha8Rng::seed_from_u64(seed))
    }

    #[inline(always)]
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in (0, 1): never 0, so its logarithm is finite.
    pub(crate) fn open_unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
}

/// SplitMix64's finaliser: independent-looking seeds from consecutive
/// numbers (run `i` of a simulation seeded `s` gets `mix(s, i)`).
pub(crate) fn mix(seed: u64, index: u64) -> u64 {
    let mut z = seed
        .wrapping_add(index.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Picks units in proportion to their weights in O(1) per draw (Vose's
/// alias method): one 64-bit draw gives the slot (high half) and the coin
/// (low half).
pub(crate) struct AliasTable {
    /// Chance, in 2⁻³², that slot `i` keeps its own unit.
    keep: Vec<u32>,
    alias: Vec<u32>,
}

impl AliasTable {
    /// A table over `weights`, which must be positive and finite (and not
    /// more than `u32::MAX` of them).
    pub(crate) fn new(weights: &[f64]) -> Self {
        let n = weights.len();
        let total: f64 = weights.iter().sum();
        let mut scaled: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let mut keep = vec![u32::MAX; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            keep[s] = (scaled[s] * 4_294_967_296.0).min(u32::MAX as f64) as u32;
            alias[s] = l as u32;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // What is left is 1 up to rounding: such slots keep their own unit.
        AliasTable { keep, alias }
    }

    #[inline(always)]
    pub(crate) fn pick(&self, draw: u64) -> usize {
        let slot = (((draw >> 32) * self.keep.len() as u64) >> 32) as usize;
        if (draw as u32) < self.keep[slot] {
            slot
        } else {
            self.alias[slot] as usize
        }
    }
}

/// Points of the latency table: equal-probability quantiles.
const LATENCY_POINTS: usize = 4096;
/// Bits of a draw that pick the table point; the next bits interpolate.
const LATENCY_INDEX_BITS: u32 = 12;

/// Latencies of a log-normal distribution with a given mean and log-scale
/// spread `sigma`: a draw picks one of [`LATENCY_POINTS`] equal-probability
/// quantiles (at the midpoints `(k + ½)/4096`) and interpolates linearly to
/// the next one, so values are continuous between the 0.012% and 99.988%
/// quantiles and the far tails are cut off. The table is built once per
/// behaviour; a draw costs a few instructions instead of an `exp`.
#[derive(Clone)]
pub(crate) struct LatencyTable {
    points: Vec<f64>,
}

impl LatencyTable {
    pub(crate) fn log_normal(mean_ms: f64, sigma: f64) -> Self {
        let mu = mean_ms.ln() - sigma * sigma / 2.0;
        let points = (0..=LATENCY_POINTS)
            .map(|k| {
                let k = k.min(LATENCY_POINTS - 1);
                let p = (k as f64 + 0.5) / LATENCY_POINTS as f64;
                (mu + sigma * normal_quantile(p)).exp()
            })
            .collect();
        LatencyTable { points }
    }

    /// A latency from 32 random bits.
    #[inline(always)]
    pub(crate) fn draw(&self, bits: u32) -> f64 {
        let index = (bits >> (32 - LATENCY_INDEX_BITS)) as usize;
        let fraction =
            f64::from(bits & ((1 << (32 - LATENCY_INDEX_BITS)) - 1)) / f64::from(1u32 << 20);
        let (a, b) = (self.points[index], self.points[index + 1]);
        a + (b - a) * fraction
    }
}

/// A unit's totals within the current phase's window.
#[derive(Clone, Copy, Default)]
pub(crate) struct UnitTotals {
    pub(crate) requests: u32,
    pub(crate) errors: u32,
    pub(crate) latency_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alias_table_picks_in_proportion_to_weight() {
        let table = AliasTable::new(&[1.0, 2.0, 3.0, 4.0]);
        let mut draws = Draws::new(3);
        let mut counts = [0u32; 4];
        for _ in 0..400_000 {
            counts[table.pick(draws.next_u64())] += 1;
        }
        for (i, count) in counts.iter().enumerate() {
            let expected = 40_000.0 * (i + 1) as f64;
            assert!(
                (f64::from(*count) - expected).abs() < 0.02 * expected,
                "{counts:?}"
            );
        }
    }

    #[test]
    fn latencies_have_the_mean_and_spread_asked_for() {
        let table = LatencyTable::log_normal(150.0, 0.5);
        let mut draws = Draws::new(5);
        let n = 400_000;
        let mut values: Vec<f64> = (0..n)
            .map(|_| table.draw(draws.next_u64() as u32))
            .collect();
        let mean = values.iter().sum::<f64>() / n as f64;
        assert!((mean - 150.0).abs() < 1.0, "{mean}");
        values.sort_by(f64::total_cmp);
        // p95 of the log-normal: exp(mu + 1.6449 sigma).
        let p95 = (150f64.ln() - 0.125 + 1.644_854 * 0.5).exp();
        let seen = values[(0.95 * n as f64) as usize];
        assert!((seen / p95 - 1.0).abs() < 0.01, "{seen} vs {p95}");
    }

    #[test]
    fn run_seeds_differ() {
        let seeds: std::collections::HashSet<u64> = (0..1000).map(|i| mix(1, i)).collect();
        assert_eq!(seeds.len(), 1000);
        assert_ne!(mix(1, 0), mix(2, 0));
    }
}
