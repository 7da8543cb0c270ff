//! What the statistics need of each variant of a flag for one metric, read
//! from the aggregates: across-unit moments (exposed units without events
//! count as zeros), the number of units with any, the quantile sketch, and
//! for CUPED the moments of (value, pre-exposure value) pairs.

use std::collections::{BTreeMap, HashMap};

use stats::{Metric, MetricKind, Moments, QuantileSketch};
use store::{Store, StoreError};

use crate::fold::Resolution;

/// One variant's data for one metric.
#[derive(Clone, Debug)]
pub struct ArmData {
    pub variant: String,
    /// Exposed units (or, for events that name their variant, units that sent any).
    pub units: u64,
    /// Units also exposed to another variant (counted for their first).
    pub conflicting: u64,
    pub events: i64,
    /// Across-unit moments of the per-unit `(x, y)`, zeros included.
    pub moments: Moments,
    /// Units with `x > 0` (a proportion's conversions).
    pub active: u64,
    /// All values (quantile metrics), merged from the daily buckets.
    pub sketch: Option<QuantileSketch>,
    /// CUPED: across exposed units, `x` the unit's value and `y` its value
    /// before its first exposure (for a proportion both are 0/1).
    pub cuped: Option<Moments>,
}

impl ArmData {
    fn new(variant: &str) -> Self {
        ArmData {
            variant: variant.to_owned(),
            units: 0,
            conflicting: 0,
            events: 0,
            moments: Moments::new(),
            active: 0,
            sketch: None,
            cuped: None,
        }
    }
}

/// The data of every variant of `flag` that has exposures or events for
/// `metric`, by variant. With `cuped`, also the CUPED moments (for the kinds
/// that support it). With a `window` (the start of a rollout phase, in ms),
/// only what happened since: per-unit totals since the flag's rollout window
/// began (`Store::unit_totals_in_window`), sketches from the hourly buckets
/// since the start of that hour; every exposed unit still counts.
pub async fn arm_data(
    store: &Store,
    environment: &str,
    flag: &str,
    metric: &Metric,
    cuped: bool,
    window: Option<i64>,
) -> Result<BTreeMap<String, ArmData>, StoreError> {
    let units = match window {
        Some(_) => {
            store
                .unit_totals_in_window(environment, flag, &metric.key)
                .await?
        }
        None => store.unit_totals(environment, flag, &metric.key).await?,
    };
    let exposures = store.exposure_counts(environment, flag).await?;
    let mut arms: BTreeMap<String, ArmData> = BTreeMap::new();
    for e in &exposures {
        let arm = arms
            .entry(e.variant.clone())
            .or_insert_with(|| ArmData::new(&e.variant));
        arm.units = e.units.max(0) as u64;
        arm.conflicting = e.conflicting.max(0) as u64;
    }
    for u in &units {
        let arm = arms
            .entry(u.variant.clone())
            .or_insert_with(|| ArmData::new(&u.variant));
        arm.moments.add_unit(u.x, u.y);
        arm.events += u.events;
        if u.x > 0.0 {
            arm.active += 1;
        }
    }
    for arm in arms.values_mut() {
        // Exposed units without events are units with x = y = 0.
        if arm.units > arm.moments.n {
            arm.moments.n = arm.units;
        } else {
            arm.units = arm.moments.n;
        }
    }
    let (sketch_resolution, sketch_from) = match window {
        Some(since) => (Resolution::Hour, Resolution::Hour.start(since)),
        None => (Resolution::Day, i64::MIN),
    };
    if let MetricKind::Quantile { .. } = metric.kind {
        let days = store
            .metric_buckets(
                environment,
                flag,
                &metric.key,
                sketch_resolution.as_str(),
                sketch_from,
                i64::MAX,
            )
            .await?;
        for b in &days {
            let Some(bytes) = &b.sketch else { continue };
            let sketch = QuantileSketch::from_bytes(bytes)
                .map_err(|e| StoreError::Corrupt(format!("a quantile sketch: {e}")))?;
            let arm = arms
                .entry(b.variant.clone())
                .or_insert_with(|| ArmData::new(&b.variant));
            match &mut arm.sketch {
                Some(all) => all
                    .merge(&sketch)
                    .map_err(|e| StoreError::Corrupt(format!("a quantile sketch: {e}")))?,
                None => arm.sketch = Some(sketch),
            }
        }
    }
    if cuped && stats::experiment::cuped_supports(&metric.kind) {
        let indicator = matches!(metric.kind, MetricKind::Proportion { .. });
        let value = |x: f64| {
            if indicator {
                f64::from(u8::from(x > 0.0))
            } else {
                x
            }
        };
        let post: HashMap<&str, f64> = units.iter().map(|u| (u.unit.as_str(), u.x)).collect();
        let pre: HashMap<String, f64> = store
            .unit_covariates(environment, flag, &metric.key)
            .await?
            .into_iter()
            .map(|c| (c.unit, c.x))
            .collect();
        // Only units that were exposed: CUPED pairs each with its own past.
        for (unit, variant) in store.exposed_units(environment, flag).await? {
            let Some(arm) = arms.get_mut(&variant) else {
                continue;
            };
            let x = value(post.get(unit.as_str()).copied().unwrap_or(0.0));
            let y = value(pre.get(&unit).copied().unwrap_or(0.0));
            arm.cuped.get_or_insert_with(Moments::new).add_unit(x, y);
        }
    }
    Ok(arms)
}
