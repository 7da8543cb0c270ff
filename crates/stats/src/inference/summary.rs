//! The inputs of the inference engine: one summary per arm, in the form a
//! streaming store keeps — counts and power sums across randomization units,
//! or the values (or a sketch of them) for a quantile.
//!
//! Every summary merges by adding (the summary of two disjoint sets of units
//! is the sum of their summaries), and [`Moments`] converts into the mean and
//! ratio summaries, so the per-unit totals the store keeps feed in directly.
//! Each summary checks itself ([`InputError`]) before any arithmetic: a
//! negative count cannot be written (counts are `u64`), and non-finite sums,
//! negative sums of squares or more conversions than units are refused.

use serde::{Deserialize, Serialize};

use crate::{Moments, QuantileSketch};

/// Why an analysis was refused before it started: the inputs are malformed
/// (as opposed to well-formed but too thin, which is an
/// [`InsufficientData`](super::InsufficientData) inside the result).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum InputError {
    /// An experiment needs a control and at least one treatment.
    #[error("an experiment needs at least two arms (a control and a treatment), got {0}")]
    TooFewArms(usize),
    /// One planned weight per arm is needed.
    #[error("{weights} planned weights for {arms} arms")]
    WeightCountMismatch { arms: usize, weights: usize },
    /// Planned weights are finite and positive.
    #[error("arm {arm}: planned weight {weight} is not a finite positive number")]
    InvalidWeight { arm: usize, weight: f64 },
    /// A sum (or a value) is NaN or infinite.
    #[error("arm {arm}: {field} is not finite")]
    NonFinite { arm: usize, field: &'static str },
    /// A sum of squares is negative.
    #[error("arm {arm}: {field} is negative")]
    Negative { arm: usize, field: &'static str },
    /// More converted units than units.
    #[error("arm {arm}: {conversions} conversions among {n} units")]
    ConversionsExceedUnits {
        arm: usize,
        conversions: u64,
        n: u64,
    },
    /// A proportion-type CUPED sum outside `0..=n`.
    #[error("arm {arm}: {field} must lie between 0 and n for a proportion")]
    ProportionOutOfRange { arm: usize, field: &'static str },
    /// The quantile level ν must lie strictly between 0 and 1.
    #[error("the quantile level must lie strictly between 0 and 1, got {0}")]
    InvalidQuantileLevel(f64),
    /// A setting of [`AnalysisConfig`](super::AnalysisConfig) is out of range.
    #[error("invalid analysis setting: {0}")]
    InvalidConfig(&'static str),
    /// A rate guardrail (a bound on the treatment's own rate) needs a
    /// proportion metric.
    #[error("a rate guardrail applies to proportion metrics only")]
    RateGuardrailNeedsProportion,
    /// A guardrail threshold is NaN or infinite (or negative for a relative
    /// guardrail, outside `[0, 1]` for a rate).
    #[error("guardrail threshold {0} is out of range")]
    InvalidGuardrailThreshold(f64),
    /// A posterior's parameters are not finite and positive.
    #[error("arm {arm}: posterior parameters must be finite, with a positive spread")]
    InvalidPosterior { arm: usize },
}

/// A conversion metric in one arm: `conversions` of `n` units converted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProportionSummary {
    /// Units exposed.
    pub n: u64,
    /// Units that converted (at most `n`).
    pub conversions: u64,
}

impl ProportionSummary {
    /// Adds the units of `other` (disjoint from these).
    pub fn merge(&mut self, other: &Self) {
        self.n += other.n;
        self.conversions += other.conversions;
    }

    pub(crate) fn check(&self, arm: usize) -> Result<(), InputError> {
        if self.conversions > self.n {
            return Err(InputError::ConversionsExceedUnits {
                arm,
                conversions: self.conversions,
                n: self.n,
            });
        }
        Ok(())
    }
}

/// A mean-per-unit metric in one arm: `n` units with totals `yᵢ`, `sum = Σyᵢ`,
/// `sum_squares = Σyᵢ²`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MeanSummary {
    /// Units exposed.
    pub n: u64,
    /// Σy over units.
    pub sum: f64,
    /// Σy² over units.
    pub sum_squares: f64,
}

impl MeanSummary {
    /// Adds the units of `other` (disjoint from these).
    pub fn merge(&mut self, other: &Self) {
        self.n += other.n;
        self.sum += other.sum;
        self.sum_squares += other.sum_squares;
    }

    pub(crate) fn check(&self, arm: usize) -> Result<(), InputError> {
        check_finite(arm, "sum", self.sum)?;
        check_square_sum(arm, "sum_squares", self.sum_squares)
    }
}

impl From<&Moments> for MeanSummary {
    /// The mean of `x` per unit (`y` is ignored).
    fn from(moments: &Moments) -> Self {
        Self {
            n: moments.n,
            sum: moments.sum_x,
            sum_squares: moments.sum_x2,
        }
    }
}

/// A ratio metric in one arm (Σ numerator / Σ denominator over units, such
/// as errors per request), analysed by the delta method.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RatioSummary {
    /// Units exposed.
    pub n: u64,
    /// Σ of the units' numerator totals.
    pub num_sum: f64,
    /// Σ of their squares.
    pub num_sum_squares: f64,
    /// Σ of the units' denominator totals.
    pub den_sum: f64,
    /// Σ of their squares.
    pub den_sum_squares: f64,
    /// Σ of numerator × denominator, unit by unit.
    pub num_den_sum_products: f64,
}

impl RatioSummary {
    /// Adds the units of `other` (disjoint from these).
    pub fn merge(&mut self, other: &Self) {
        self.n += other.n;
        self.num_sum += other.num_sum;
        self.num_sum_squares += other.num_sum_squares;
        self.den_sum += other.den_sum;
        self.den_sum_squares += other.den_sum_squares;
        self.num_den_sum_products += other.num_den_sum_products;
    }

    pub(crate) fn check(&self, arm: usize) -> Result<(), InputError> {
        check_finite(arm, "num_sum", self.num_sum)?;
        check_square_sum(arm, "num_sum_squares", self.num_sum_squares)?;
        check_finite(arm, "den_sum", self.den_sum)?;
        check_square_sum(arm, "den_sum_squares", self.den_sum_squares)?;
        check_finite(arm, "num_den_sum_products", self.num_den_sum_products)
    }
}

impl From<&Moments> for RatioSummary {
    /// `x` is the numerator and `y` the denominator, unit by unit.
    fn from(moments: &Moments) -> Self {
        Self {
            n: moments.n,
            num_sum: moments.sum_x,
            num_sum_squares: moments.sum_x2,
            den_sum: moments.sum_y,
            den_sum_squares: moments.sum_y2,
            num_den_sum_products: moments.sum_xy,
        }
    }
}

/// What a CUPED metric, or its pre-exposure covariate, measures per unit; it
/// decides the unit variance: the sample variance for a mean, `p(1 − p)` for
/// a proportion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CupedValueType {
    /// A mean per unit.
    #[default]
    Mean,
    /// A 0/1 per unit.
    Proportion,
}

/// The types of a CUPED metric's post-exposure value and of its pre-exposure
/// covariate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CupedTypes {
    /// The metric, measured after exposure.
    pub post: CupedValueType,
    /// The covariate: the same metric before exposure.
    pub pre: CupedValueType,
}

/// A metric with a pre-exposure covariate in one arm, for CUPED: per unit,
/// `y` after exposure and `x` before.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CupedSummary {
    /// Units exposed.
    pub n: u64,
    /// Σy.
    pub post_sum: f64,
    /// Σy².
    pub post_sum_squares: f64,
    /// Σx.
    pub pre_sum: f64,
    /// Σx².
    pub pre_sum_squares: f64,
    /// Σxy.
    pub post_pre_sum_products: f64,
}

impl CupedSummary {
    /// Adds the units of `other` (disjoint from these).
    pub fn merge(&mut self, other: &Self) {
        self.n += other.n;
        self.post_sum += other.post_sum;
        self.post_sum_squares += other.post_sum_squares;
        self.pre_sum += other.pre_sum;
        self.pre_sum_squares += other.pre_sum_squares;
        self.post_pre_sum_products += other.post_pre_sum_products;
    }

    pub(crate) fn check(&self, arm: usize, types: CupedTypes) -> Result<(), InputError> {
        check_finite(arm, "post_sum", self.post_sum)?;
        check_square_sum(arm, "post_sum_squares", self.post_sum_squares)?;
        check_finite(arm, "pre_sum", self.pre_sum)?;
        check_square_sum(arm, "pre_sum_squares", self.pre_sum_squares)?;
        check_finite(arm, "post_pre_sum_products", self.post_pre_sum_products)?;
        let n = self.n as f64;
        for (kind, field, sum) in [
            (types.post, "post_sum", self.post_sum),
            (types.pre, "pre_sum", self.pre_sum),
        ] {
            if kind == CupedValueType::Proportion && !(0.0..=n).contains(&sum) {
                return Err(InputError::ProportionOutOfRange { arm, field });
            }
        }
        Ok(())
    }
}

/// The values of a quantile metric in one arm: the exact values, or a
/// [`QuantileSketch`] of them.
///
/// From a sketch, every order statistic the analysis reads (the quantile and
/// the ranks of its interval) carries the sketch's relative error of
/// [`QuantileSketch::RELATIVE_ACCURACY`] (1%); that error is not in the
/// reported standard errors. Mann–Whitney and Hodges–Lehmann need the exact
/// values and are left out for sketches.
#[derive(Clone, Debug)]
pub struct QuantileSample {
    source: QuantileSource,
}

#[derive(Clone, Debug)]
enum QuantileSource {
    /// Sorted ascending, all finite.
    Values(Vec<f64>),
    Sketch(QuantileSketch),
}

impl QuantileSample {
    /// The exact per-unit values, in any order. Refuses NaN and infinities
    /// (`arm` names the arm in the error).
    pub fn from_values(arm: usize, mut values: Vec<f64>) -> Result<Self, InputError> {
        if values.iter().any(|v| !v.is_finite()) {
            return Err(InputError::NonFinite {
                arm,
                field: "values",
            });
        }
        values.sort_by(f64::total_cmp);
        Ok(Self {
            source: QuantileSource::Values(values),
        })
    }

    /// A sketch of the per-unit values (1% relative error on every order
    /// statistic read from it).
    pub fn from_sketch(sketch: QuantileSketch) -> Self {
        Self {
            source: QuantileSource::Sketch(sketch),
        }
    }

    /// Number of units.
    pub fn len(&self) -> u64 {
        match &self.source {
            QuantileSource::Values(values) => values.len() as u64,
            QuantileSource::Sketch(sketch) => sketch.count(),
        }
    }

    /// Whether there are no units.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The exact values, sorted ascending, if this sample has them.
    pub fn sorted_values(&self) -> Option<&[f64]> {
        match &self.source {
            QuantileSource::Values(values) => Some(values),
            QuantileSource::Sketch(_) => None,
        }
    }

    /// The `k`-th smallest value, 1-based (`1 ≤ k ≤ n`); from a sketch, within
    /// its relative error.
    pub(crate) fn order_statistic(&self, k: u64) -> Option<f64> {
        match &self.source {
            QuantileSource::Values(values) => {
                let index = usize::try_from(k.checked_sub(1)?).ok()?;
                values.get(index).copied()
            }
            QuantileSource::Sketch(sketch) => sketch.order_statistic(k),
        }
    }
}

/// The mean of a per-unit value and its unit variance across units (`n ≥ 1`),
/// by its type: the sample variance (`n − 1`; 0 for one unit) for a mean,
/// `p(1 − p)` for a proportion. A variance that rounding took below 0 is 0.
pub(crate) fn mean_and_variance(
    kind: CupedValueType,
    n: u64,
    sum: f64,
    sum_squares: f64,
) -> (f64, f64) {
    let nf = n as f64;
    let mean = sum / nf;
    let variance = match kind {
        CupedValueType::Proportion => mean * (1.0 - mean),
        CupedValueType::Mean if n > 1 => (sum_squares - sum * sum / nf) / (nf - 1.0),
        CupedValueType::Mean => 0.0,
    };
    (mean, variance.max(0.0))
}

fn check_finite(arm: usize, field: &'static str, value: f64) -> Result<(), InputError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(InputError::NonFinite { arm, field })
    }
}

fn check_square_sum(arm: usize, field: &'static str, value: f64) -> Result<(), InputError> {
    check_finite(arm, field, value)?;
    if value < 0.0 {
        return Err(InputError::Negative { arm, field });
    }
    Ok(())
}
