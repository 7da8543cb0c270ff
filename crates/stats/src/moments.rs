//! Mergeable per-variant summaries, computed across randomization units.
//!
//! The unit of analysis is the randomization unit (DESIGN.md, "Statistics done
//! right"): events are first summed per unit, and each unit then contributes
//! one pair `(x, y)` here — `x` the unit's total of the metric (or of a
//! ratio's numerator), `y` the unit's total of a ratio's denominator. Variances
//! are therefore across units, never across events.
//!
//! A [`Moments`] holds power sums only, so summaries of disjoint sets of units
//! (time buckets, processes, replicas) merge by adding, and a store can compute
//! one with plain SQL aggregates (`COUNT(*)`, `SUM(x)`, `SUM(x*x)`, …).
//!
//! CUPED's pre-exposure covariate sums will be a separate summary beside this
//! one, so that metrics without a covariate keep this size.

use serde::{Deserialize, Serialize};

/// Power sums over a set of units, each unit contributing `(x, y)`.
///
/// Every field is a plain sum, so two summaries of disjoint sets of units merge
/// by adding field by field ([`Moments::merge`]), in any order.
///
/// Precision: the sums are plain `f64` sums. Summing in another order (merging
/// parts) changes a sum by at most about `n · 2⁻⁵³ · Σ|term|`, far below 1e-9
/// of `Σ|term|` for any realistic `n`. Variances are computed from the sums as
/// `(Σx² − (Σx)²/n)/(n − 1)`, which loses about `log10(1 + mean²/variance)` of
/// the 16 significant digits: harmless for metric data (a latency of
/// 200 ± 1 ms keeps 11 digits).
///
/// For a mean metric, pass `y = 1` for every unit: then [`Moments::ratio`] is
/// the mean of `x` and [`Moments::ratio_variance`] the variance of that mean,
/// because the denominator does not vary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    /// Number of units.
    pub n: u64,
    /// Σx over units.
    pub sum_x: f64,
    /// Σx² over units.
    pub sum_x2: f64,
    /// Σy over units.
    pub sum_y: f64,
    /// Σy² over units.
    pub sum_y2: f64,
    /// Σxy over units.
    pub sum_xy: f64,
}

impl Moments {
    /// The summary of no units.
    pub const fn new() -> Self {
        Self {
            n: 0,
            sum_x: 0.0,
            sum_x2: 0.0,
            sum_y: 0.0,
            sum_y2: 0.0,
            sum_xy: 0.0,
        }
    }

    /// Adds one unit with total `x` (the metric, or a ratio's numerator) and
    /// total `y` (a ratio's denominator; 1 for a mean metric).
    ///
    /// `x` and `y` should be finite (ingestion rejects non-finite values); a
    /// non-finite one makes the sums, and every statistic, non-finite too.
    pub fn add_unit(&mut self, x: f64, y: f64) {
        self.n += 1;
        self.sum_x += x;
        self.sum_x2 += x * x;
        self.sum_y += y;
        self.sum_y2 += y * y;
        self.sum_xy += x * y;
    }

    /// Adds the units summarised by `other`, which must be disjoint from the
    /// units already here (a unit counted twice is two units).
    pub fn merge(&mut self, other: &Moments) {
        self.n += other.n;
        self.sum_x += other.sum_x;
        self.sum_x2 += other.sum_x2;
        self.sum_y += other.sum_y;
        self.sum_y2 += other.sum_y2;
        self.sum_xy += other.sum_xy;
    }

    /// Mean of `x` over units; `None` without units.
    pub fn mean_x(&self) -> Option<f64> {
        mean(self.n, self.sum_x)
    }

    /// Mean of `y` over units; `None` without units.
    pub fn mean_y(&self) -> Option<f64> {
        mean(self.n, self.sum_y)
    }

    /// Sample variance of `x` across units, with `n − 1` in the denominator;
    /// `None` with fewer than two units.
    ///
    /// For a proportion (`x` is 0 or 1) this is `n/(n − 1) · p(1 − p)`; the
    /// binomial `p(1 − p)` follows from [`Moments::mean_x`].
    pub fn variance_x(&self) -> Option<f64> {
        sample_covariance(self.n, self.sum_x, self.sum_x, self.sum_x2).map(clamp_to_zero)
    }

    /// Sample variance of `y` across units (`n − 1`); `None` with fewer than
    /// two units.
    pub fn variance_y(&self) -> Option<f64> {
        sample_covariance(self.n, self.sum_y, self.sum_y, self.sum_y2).map(clamp_to_zero)
    }

    /// Sample covariance of `x` and `y` across units (`n − 1`); `None` with
    /// fewer than two units.
    pub fn covariance_xy(&self) -> Option<f64> {
        sample_covariance(self.n, self.sum_x, self.sum_y, self.sum_xy)
    }

    /// Variance of the mean of `x`: `variance_x / n`; `None` with fewer than
    /// two units.
    pub fn mean_x_variance(&self) -> Option<f64> {
        Some(self.variance_x()? / self.n as f64)
    }

    /// The ratio metric `R = Σx / Σy` (equivalently x̄ / ȳ, the ratio of the
    /// means); `None` when `Σy = 0`.
    pub fn ratio(&self) -> Option<f64> {
        (self.sum_y != 0.0).then(|| self.sum_x / self.sum_y)
    }

    /// The per-unit variance of the ratio by the delta method:
    ///
    /// ```text
    /// v = (s²ₓ − 2·R·sₓᵧ + R²·s²ᵧ) / ȳ²
    /// ```
    ///
    /// with `R = Σx/Σy`, `ȳ = Σy/n`, and `s²ₓ`, `s²ᵧ`, `sₓᵧ` the sample
    /// variances and covariance across units ([`Moments::variance_x`],
    /// [`Moments::variance_y`], [`Moments::covariance_xy`]). It is the
    /// first-order Taylor expansion of `x̄/ȳ` around the true means; the
    /// numerator is the sample variance of the residuals `xᵢ − R·yᵢ`. Written
    /// with the means `m_x = x̄`, `m_y = ȳ` it is the familiar
    /// `s²ₓ/m_y² − 2·sₓᵧ·m_x/m_y³ + m_x²·s²ᵧ/m_y⁴`.
    ///
    /// Divide by `n` for the variance of the ratio itself
    /// ([`Moments::ratio_variance`]); the per-unit form is what Welch's degrees
    /// of freedom need. `None` with fewer than two units or when `Σy = 0`.
    pub fn ratio_unit_variance(&self) -> Option<f64> {
        let ratio = self.ratio()?;
        let mean_y = self.mean_y()?;
        let residual_variance = self.variance_x()? - 2.0 * ratio * self.covariance_xy()?
            + ratio * ratio * self.variance_y()?;
        // Non-negative in exact arithmetic (a variance); rounding may dip below.
        Some(clamp_to_zero(residual_variance) / (mean_y * mean_y))
    }

    /// Variance of the ratio of means `Σx/Σy` by the delta method:
    /// [`Moments::ratio_unit_variance`]` / n`. `None` with fewer than two units
    /// or when `Σy = 0`.
    pub fn ratio_variance(&self) -> Option<f64> {
        Some(self.ratio_unit_variance()? / self.n as f64)
    }
}

impl FromIterator<(f64, f64)> for Moments {
    /// The summary of units given as `(x, y)` pairs.
    fn from_iter<I: IntoIterator<Item = (f64, f64)>>(units: I) -> Self {
        let mut moments = Moments::new();
        for (x, y) in units {
            moments.add_unit(x, y);
        }
        moments
    }
}

fn mean(n: u64, sum: f64) -> Option<f64> {
    (n > 0).then(|| sum / n as f64)
}

/// `(Σab − Σa·Σb/n) / (n − 1)`; `None` for `n < 2`.
fn sample_covariance(n: u64, sum_a: f64, sum_b: f64, sum_ab: f64) -> Option<f64> {
    if n < 2 {
        return None;
    }
    let n = n as f64;
    Some((sum_ab - sum_a * sum_b / n) / (n - 1.0))
}

/// Raises a value that is non-negative in exact arithmetic back to 0 after
/// rounding took it below. Unlike `f64::max`, keeps a NaN visible.
fn clamp_to_zero(value: f64) -> f64 {
    if value < 0.0 { 0.0 } else { value }
}
