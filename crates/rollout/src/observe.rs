//! What the controller sees of the world: per metric and per variant of the
//! rollout's flag, the data the server reads from the aggregates (the same
//! as `ingest::arms::ArmData`), and how a metric's kind turns it into the
//! statistics engine's summaries.
//!
//! The window: the data of the current phase, i.e. of units exposed and
//! events sent since [`RolloutState::phase_started_ms`]. Gates judge "the
//! estimate over the phase", and each phase's guards start a confidence
//! sequence of their own (their error rate is stated per phase).
//!
//! [`RolloutState::phase_started_ms`]: crate::RolloutState::phase_started_ms

use std::collections::HashMap;

use stats::inference::{MeanSummary, MetricData, ProportionSummary, QuantileSample, RatioSummary};
use stats::{Metric, MetricKind, Moments, QuantileSketch};

/// Per metric key, per variant: what has been observed in the current
/// phase. A variant without data may be left out; it counts as no units.
#[derive(Clone, Debug, Default)]
pub struct Observations {
    pub metrics: HashMap<String, HashMap<String, VariantData>>,
}

impl Observations {
    /// No data at all.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the data of `variant` for `metric`.
    pub fn insert(&mut self, metric: &str, variant: &str, data: VariantData) -> &mut Self {
        self.metrics
            .entry(metric.to_owned())
            .or_default()
            .insert(variant.to_owned(), data);
        self
    }

    /// The data of `variant` for `metric`, if any was given.
    pub fn get(&self, metric: &str, variant: &str) -> Option<&VariantData> {
        self.metrics.get(metric)?.get(variant)
    }
}

/// One variant's data for one metric (what `ingest::arms::ArmData` holds).
#[derive(Clone, Debug, Default)]
pub struct VariantData {
    /// Exposed units.
    pub units: u64,
    /// Across-unit moments of each unit's `(x, y)`: `x` the unit's total of
    /// the metric (a ratio's numerator), `y` a ratio's denominator; exposed
    /// units without events count as `(0, 0)`.
    pub moments: Moments,
    /// Units with `x > 0` (a proportion's conversions).
    pub active: u64,
    /// Quantile metrics: a sketch of the values.
    pub sketch: Option<QuantileSketch>,
    /// Uptime metrics: the minutes in which the variant served requests, and
    /// of those the minutes within the error budget.
    pub minutes: Option<Minutes>,
}

/// An uptime metric's minutes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Minutes {
    pub served: u64,
    pub healthy: u64,
}

impl Minutes {
    /// The share of served minutes that were healthy; `None` before any.
    pub fn share(&self) -> Option<f64> {
        (self.served > 0).then(|| self.healthy as f64 / self.served as f64)
    }
}

impl VariantData {
    /// The data of units given as `(x, y)` pairs: units, moments and active
    /// units from the same list. (Quantile metrics also need a sketch.)
    pub fn from_units(units: impl IntoIterator<Item = (f64, f64)>) -> Self {
        let mut data = VariantData::default();
        for (x, y) in units {
            data.moments.add_unit(x, y);
            if x > 0.0 {
                data.active += 1;
            }
        }
        data.units = data.moments.n;
        data
    }
}

/// The engine's summaries of a metric for these variants, in order (the
/// control first), as `ingest::experiment::metric_data` makes them without
/// CUPED: proportion and retention count active units among exposed units;
/// mean and count take the mean of `x`; ratio and gauge the delta-method
/// ratio `Σx/Σy`; quantile reads the sketch. `None` for uptime, which has no
/// value per unit.
pub(crate) fn metric_data(metric: &Metric, variants: &[&VariantData]) -> Option<MetricData> {
    Some(match &metric.kind {
        MetricKind::Proportion { .. } | MetricKind::Retention { .. } => MetricData::Proportion(
            variants
                .iter()
                .map(|v| ProportionSummary {
                    n: v.units,
                    conversions: v.active.min(v.units),
                })
                .collect(),
        ),
        MetricKind::Mean { .. } | MetricKind::Count { .. } => MetricData::Mean(
            variants
                .iter()
                .map(|v| MeanSummary::from(&v.moments))
                .collect(),
        ),
        MetricKind::Ratio { .. } | MetricKind::Gauge { .. } => MetricData::Ratio(
            variants
                .iter()
                .map(|v| RatioSummary::from(&v.moments))
                .collect(),
        ),
        MetricKind::Quantile { q, .. } => MetricData::Quantile {
            nu: *q,
            arms: variants
                .iter()
                .map(|v| QuantileSample::from_sketch(v.sketch.clone().unwrap_or_default()))
                .collect(),
        },
        MetricKind::Uptime { .. } => return None,
    })
}

/// Whether the metric is a ratio of sums whose denominator is zero for this
/// variant: no value yet.
pub(crate) fn lacks_denominator(metric: &Metric, data: &VariantData) -> bool {
    matches!(
        metric.kind,
        MetricKind::Ratio { .. } | MetricKind::Gauge { .. }
    ) && data.moments.sum_y == 0.0
}
