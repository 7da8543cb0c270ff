//! Per-variant metric values from the aggregates: a series over time buckets
//! (for charts) and totals across units (for statistics).
//!
//! Totals cover everything folded so far and are computed across units from
//! `unit_totals`; exposed units without a matching event count as zeros, so
//! a mean or a proportion is over exposed units, not over active ones.

use std::collections::BTreeMap;

use stats::{Metric, MetricKind, Moments, QuantileSketch};
use store::{BucketRow, Store, StoreError};

use crate::fold::Resolution;

/// One time bucket of one variant.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub start_ms: i64,
    pub events: i64,
    pub x: f64,
    pub y: f64,
    /// The metric's value in this bucket (see [`point_value`]); `None` when undefined (0/0).
    pub value: Option<f64>,
    /// The largest value (gauges).
    pub max: Option<f64>,
}

/// A variant's value over all units.
#[derive(Clone, Debug, PartialEq)]
pub struct Total {
    /// Exposed units (or, for events that name their variant, units that sent any).
    pub units: u64,
    /// Units also exposed to another variant (counted for their first).
    pub conflicting: u64,
    pub events: i64,
    pub value: Option<f64>,
    /// Across-unit moments of the per-unit (x, y), zeros included.
    pub moments: Moments,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VariantSeries {
    pub variant: String,
    pub points: Vec<Point>,
    pub total: Total,
}

impl VariantSeries {
    fn empty(variant: &str) -> Self {
        VariantSeries {
            variant: variant.to_owned(),
            points: Vec::new(),
            total: Total {
                units: 0,
                conflicting: 0,
                events: 0,
                value: None,
                moments: Moments::new(),
            },
        }
    }
}

/// What `series` reports for one metric under one flag.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub resolution: Resolution,
    pub from_ms: i64,
    pub to_ms: i64,
    pub variants: Vec<VariantSeries>,
}

/// The metric's value in one bucket: a ratio or gauge is x/y, a quantile is
/// read from the bucket's sketch, uptime is the bucket's error rate, and a
/// mean, count, proportion or retention shows the bucket's sum.
pub fn point_value(metric: &Metric, bucket: &BucketRow) -> Option<f64> {
    let ratio = || (bucket.y != 0.0).then(|| bucket.x / bucket.y);
    match &metric.kind {
        MetricKind::Ratio { .. } | MetricKind::Gauge { .. } | MetricKind::Uptime { .. } => ratio(),
        MetricKind::Quantile { q, .. } => {
            let sketch = QuantileSketch::from_bytes(bucket.sketch.as_deref()?).ok()?;
            sketch.quantile(*q)
        }
        MetricKind::Mean { .. }
        | MetricKind::Count { .. }
        | MetricKind::Proportion { .. }
        | MetricKind::Retention { .. } => Some(bucket.x),
    }
}

/// The per-variant series of `metric` under `flag` between `from_ms` and
/// `to_ms` at `resolution`, with each variant's totals.
pub async fn series(
    store: &Store,
    environment: &str,
    metric: &Metric,
    flag: &str,
    resolution: Resolution,
    from_ms: i64,
    to_ms: i64,
) -> Result<Series, StoreError> {
    let buckets = store
        .metric_buckets(
            environment,
            flag,
            &metric.key,
            resolution.as_str(),
            from_ms,
            to_ms,
        )
        .await?;
    let arms = crate::arms::arm_data(store, environment, flag, metric, false, None).await?;

    let mut variants: BTreeMap<String, VariantSeries> = BTreeMap::new();
    for b in &buckets {
        variants
            .entry(b.variant.clone())
            .or_insert_with(|| VariantSeries::empty(&b.variant))
            .points
            .push(Point {
                start_ms: b.start_ms,
                events: b.events,
                x: b.x,
                y: b.y,
                value: point_value(metric, b),
                max: b.max_value,
            });
    }
    for arm in arms.values() {
        let v = variants
            .entry(arm.variant.clone())
            .or_insert_with(|| VariantSeries::empty(&arm.variant));
        let m = &arm.moments;
        v.total = Total {
            units: arm.units,
            conflicting: arm.conflicting,
            events: arm.events,
            value: None,
            moments: *m,
        };
        let n = m.n as f64;
        v.total.value = match &metric.kind {
            MetricKind::Ratio { .. } => m.ratio(),
            MetricKind::Mean { .. } => m.mean_x(),
            MetricKind::Count { .. } => Some(m.sum_x),
            MetricKind::Proportion { .. } | MetricKind::Retention { .. } => {
                (n > 0.0).then(|| arm.active as f64 / n)
            }
            MetricKind::Gauge { .. } => (m.sum_y != 0.0).then(|| m.sum_x / m.sum_y),
            MetricKind::Quantile { q, .. } => arm.sketch.as_ref().and_then(|s| s.quantile(*q)),
            MetricKind::Uptime { max_error_rate, .. } => {
                let minutes = store
                    .metric_buckets(
                        environment,
                        flag,
                        &metric.key,
                        Resolution::Minute.as_str(),
                        from_ms,
                        to_ms,
                    )
                    .await?;
                let served: Vec<&BucketRow> = minutes
                    .iter()
                    .filter(|b| b.variant == v.variant && b.y > 0.0)
                    .collect();
                let healthy = served
                    .iter()
                    .filter(|b| b.x / b.y <= *max_error_rate)
                    .count() as f64;
                (!served.is_empty()).then(|| healthy / served.len() as f64)
            }
        };
    }
    Ok(Series {
        resolution,
        from_ms,
        to_ms,
        variants: variants.into_values().collect(),
    })
}
