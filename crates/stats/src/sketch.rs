//! A mergeable quantile sketch with a stated relative error, for quantile
//! metrics such as p95 latency.
//!
//! [`QuantileSketch`] wraps the DDSketch of the `sketches-ddsketch` crate
//! (Masson, Rim and Lee, "DDSketch: a fast and fully-mergeable quantile sketch
//! with relative-error guarantees", VLDB 2019). Sketches of disjoint sets of
//! values merge exactly — the merge of the sketches is the sketch of the union
//! — so per-minute sketches roll up into hours and days, and sketches written
//! by several processes add up, without losing the guarantee.
//!
//! Stored form: [`QuantileSketch::to_bytes`] writes DataDog's standard DDSketch
//! binary encoding (that of sketches-java's
//! `DDSketchWithExactSummaryStatistics`; `tests/sketch.rs` pins it with byte
//! vectors), which does not depend on the wrapped crate's private layout.

mod encoding;

use std::fmt;

use sketches_ddsketch::{Config, DDSketch};

/// The configuration every sketch has. It equals `sketches-ddsketch`'s
/// defaults, which its decoder assumes (a unit test checks it).
fn config() -> Config {
    Config::new(
        QuantileSketch::RELATIVE_ACCURACY,
        QuantileSketch::MAX_BINS,
        QuantileSketch::ZERO_THRESHOLD,
    )
}

/// Why a value, a merge or stored bytes were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SketchError {
    /// NaN or an infinity was added.
    #[error("a quantile sketch takes only finite values")]
    NonFiniteValue,
    /// The other sketch was built with a different relative accuracy.
    #[error("quantile sketches of different relative accuracy cannot be merged")]
    Incompatible,
    /// Stored bytes are not a sketch written by [`QuantileSketch::to_bytes`].
    #[error("not a stored quantile sketch: {0}")]
    InvalidBytes(String),
}

/// A mergeable sketch of a multiset of finite values that answers quantiles
/// within a relative error of [`QuantileSketch::RELATIVE_ACCURACY`] (1%).
///
/// **Guarantee.** Let `x₍ₖ₎` be the k-th smallest value added (1-based). Then
/// [`QuantileSketch::order_statistic`]`(k)` returns `x̂` with
///
/// ```text
/// |x̂ − x₍ₖ₎| ≤ α·|x₍ₖ₎|   (α = 0.01)   when |x₍ₖ₎| > ZERO_THRESHOLD (1e-9),
///  x̂ = 0  or  x̂ = x₍ₖ₎                when |x₍ₖ₎| ≤ ZERO_THRESHOLD,
/// ```
///
/// up to floating-point rounding (a value on a bin's edge is off by α itself,
/// plus an ulp or two), provided the magnitudes on each side of zero span at
/// most [`QuantileSketch::MAX_DYNAMIC_RANGE`] (10¹⁷). The smallest and largest
/// values are kept exactly. [`QuantileSketch::quantile`]`(q)` is
/// `order_statistic(⌈n·q⌉)`, so it has the same guarantee with respect to the
/// exact quantile `x₍⌈n·q⌉₎`. The guarantee is deterministic, not
/// probabilistic, and survives any sequence of merges and any round trip
/// through bytes; `tests/merge.rs` checks it. Beyond the dynamic range, the
/// smallest magnitudes are merged into larger bins and lose accuracy; the
/// largest never do.
///
/// Negative values and zero are supported: negative values have bins of their
/// own, mirrored around zero. NaN and infinities are refused.
///
/// Size: one bin per factor 1.0202 (2%) of the range the data spans (latencies
/// from 1 ms to 10 s use about 460 bins), at most [`QuantileSketch::MAX_BINS`]
/// per side; the stored form keeps only non-empty bins, a few bytes each.
///
/// ```
/// use stats::QuantileSketch;
///
/// let mut monday = QuantileSketch::new();
/// let mut tuesday = QuantileSketch::new();
/// for ms in 1..=50 {
///     monday.add(f64::from(ms)).unwrap();
///     tuesday.add(f64::from(ms + 50)).unwrap();
/// }
/// let mut week = QuantileSketch::from_bytes(&monday.to_bytes()).unwrap();
/// week.merge(&tuesday).unwrap();
/// let p95 = week.quantile(0.95).unwrap();
/// assert!((p95 - 95.0).abs() <= 0.01 * 95.0);
/// ```
#[derive(Clone)]
pub struct QuantileSketch {
    inner: DDSketch,
}

impl QuantileSketch {
    /// The relative accuracy α of every answer: 1%. See [`QuantileSketch`].
    pub const RELATIVE_ACCURACY: f64 = 0.01;

    /// Values of magnitude at most this are counted as exactly zero.
    pub const ZERO_THRESHOLD: f64 = 1e-9;

    /// Bins kept on each side of zero before the lowest ones are collapsed
    /// together; each bin spans a factor `(1 + α)/(1 − α)` of magnitudes.
    pub const MAX_BINS: u32 = 2048;

    /// The widest ratio of largest to smallest magnitude, on one side of zero,
    /// for which [`Self::MAX_BINS`] bins suffice and the guarantee holds:
    /// 10¹⁷. (2048 bins of factor 1.0202 span about 6·10¹⁷.) All magnitudes in
    /// `(1e-9, 1e8]` qualify.
    pub const MAX_DYNAMIC_RANGE: f64 = 1e17;

    /// An empty sketch with relative accuracy
    /// [`QuantileSketch::RELATIVE_ACCURACY`] (1%).
    pub fn new() -> Self {
        Self {
            inner: DDSketch::new(config()),
        }
    }

    /// Adds one value. Refuses NaN and infinities, which have no place in a
    /// quantile (and an infinity would wreck the sketch's bins).
    pub fn add(&mut self, value: f64) -> Result<(), SketchError> {
        if !value.is_finite() {
            return Err(SketchError::NonFiniteValue);
        }
        self.inner.add(value);
        Ok(())
    }

    /// Adds every value of `other`, which is left unchanged.
    ///
    /// Every sketch this crate makes or reads has the same accuracy, so this
    /// does not fail today; [`SketchError::Incompatible`] is there for the day
    /// a second accuracy exists.
    pub fn merge(&mut self, other: &QuantileSketch) -> Result<(), SketchError> {
        self.inner
            .merge(&other.inner)
            .map_err(|_| SketchError::Incompatible)
    }

    /// Number of values added.
    pub fn count(&self) -> u64 {
        self.inner.count() as u64
    }

    /// Whether no value was added.
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// The smallest value added, exactly; `None` when empty.
    pub fn min(&self) -> Option<f64> {
        self.inner.min()
    }

    /// The largest value added, exactly; `None` when empty.
    pub fn max(&self) -> Option<f64> {
        self.inner.max()
    }

    /// The `q`-quantile, defined as the order statistic `x₍⌈n·q⌉₎` (1-based,
    /// `⌈n·q⌉` computed in `f64` and clamped to `1..=n`; so `q = 0` gives the
    /// minimum and `q = 1` the maximum), within the relative error stated on
    /// [`QuantileSketch`]. `None` when empty or when `q` is not in `[0, 1]`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if !(0.0..=1.0).contains(&q) {
            return None;
        }
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((n as f64) * q).ceil() as u64;
        self.order_statistic(rank.clamp(1, n))
    }

    /// The `k`-th smallest value `x₍ₖ₎` (1-based), within the relative error
    /// stated on [`QuantileSketch`]; exact for `k = 1` and `k = n`. `None`
    /// unless `1 ≤ k ≤ n`.
    pub fn order_statistic(&self, k: u64) -> Option<f64> {
        let n = self.count();
        if k == 0 || k > n {
            return None;
        }
        if k == 1 {
            return self.min();
        }
        if k == n {
            return self.max();
        }
        // DDSketch answers `q` with the value at 0-based rank ⌊q·(n − 1)⌋.
        // Aiming at the middle of rank k − 1 keeps rounding from slipping to
        // a neighbour; `tests/merge.rs` checks every rank against sorted data.
        let q = ((k - 1) as f64 + 0.5) / (n - 1) as f64;
        self.inner.quantile(q).ok().flatten()
    }

    /// The sketch in DataDog's DDSketch binary encoding, for storage. Only
    /// non-empty bins are written; [`QuantileSketch::from_bytes`] reads it back
    /// exactly (for up to 2⁵³ values, beyond which the format's counts, which
    /// are doubles, are no longer exact).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.inner.to_java_bytes()
    }

    /// Reads a sketch written by [`QuantileSketch::to_bytes`]. Anything else —
    /// truncated or corrupt bytes, another accuracy, encoding features that
    /// `to_bytes` does not write — is refused with an error, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SketchError> {
        encoding::check(bytes, &config())?;
        let inner = DDSketch::from_java_bytes(bytes)
            .map_err(|error| SketchError::InvalidBytes(error.to_string()))?;
        Ok(Self { inner })
    }
}

impl Default for QuantileSketch {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for QuantileSketch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuantileSketch")
            .field("count", &self.count())
            .field("min", &self.min())
            .field("max", &self.max())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `DDSketch::from_java_bytes` rebuilds the configuration from the stored
    /// γ plus the crate's default bin limit and zero threshold; a decoded
    /// sketch merges with a new one only if those are ours.
    #[test]
    fn our_configuration_is_the_one_the_decoder_assumes() {
        assert_eq!(config(), Config::defaults());
    }

    /// γ = (1 + α)/(1 − α), and 2048 bins of it cover the stated dynamic range.
    #[test]
    fn the_dynamic_range_fits_in_the_bins() {
        let gamma = config().gamma;
        let alpha = QuantileSketch::RELATIVE_ACCURACY;
        let expected = (1.0 + alpha) / (1.0 - alpha);
        assert!((gamma - expected).abs() < 1e-15, "gamma {gamma}");
        // Values spanning a ratio r occupy at most ⌊log_γ r⌋ + 2 bins; one
        // more for rounding in the logarithm.
        let bins_needed = QuantileSketch::MAX_DYNAMIC_RANGE.ln() / gamma.ln() + 3.0;
        assert!(
            bins_needed <= f64::from(QuantileSketch::MAX_BINS),
            "{bins_needed} bins"
        );
        let latency_range = 1e8 / QuantileSketch::ZERO_THRESHOLD;
        assert!(latency_range <= QuantileSketch::MAX_DYNAMIC_RANGE);
    }
}
