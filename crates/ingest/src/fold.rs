//! Folding events into per-unit metric totals. Pure: no IO, no clock.
//!
//! Attribution: a track event counts for a flag's variant when it names the
//! flag and variant itself (a service instance reporting on the model it
//! runs), or else for the variant of the unit's first exposure to the flag,
//! when the event happened at or after that exposure (less
//! [`ATTRIBUTION_SKEW_MS`] for clock differences between hosts). A unit
//! exposed to two variants stays with its first and is marked conflicting.
//!
//! What a matching event adds to the unit's `(x, y)`, by metric kind:
//!
//! | kind | x | y |
//! |---|---|---|
//! | ratio | numerator side (count or Σ value) | denominator side |
//! | proportion, mean, count | the side (count or Σ value) | — |
//! | quantile, gauge | Σ value | number of values |
//! | retention | events inside `[from_day, to_day)` days after first exposure | — |
//! | uptime | error events | request events |

use std::collections::HashMap;

use serde_json::Value;
use stats::{Aggregate, Metric, MetricKind, QuantileSketch, Side};

use crate::event::Event;

/// Tolerance for events timestamped slightly before the unit's exposure.
pub const ATTRIBUTION_SKEW_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// A unit's first exposure to a flag.
#[derive(Clone, Debug, PartialEq)]
pub struct Exposed {
    pub flag: String,
    pub variant: String,
    pub first_at_ms: i64,
}

/// The exposures known so far: unit → its first exposure to each flag.
pub type Exposures = HashMap<String, Vec<Exposed>>;

/// Where a total belongs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TotalKey {
    pub flag: String,
    pub variant: String,
    pub metric: String,
    pub unit: String,
}

/// What a fold adds to one unit's total.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Delta {
    pub x: f64,
    pub y: f64,
    pub events: i64,
}

impl Delta {
    pub fn add(&mut self, other: &Delta) {
        self.x += other.x;
        self.y += other.y;
        self.events += other.events;
    }
}

/// The width of a time bucket. Buckets start at multiples of their width
/// since the Unix epoch (days in UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resolution {
    Minute,
    Hour,
    Day,
}

impl Resolution {
    pub const ALL: [Resolution; 3] = [Resolution::Minute, Resolution::Hour, Resolution::Day];

    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Minute => "1m",
            Resolution::Hour => "1h",
            Resolution::Day => "1d",
        }
    }

    pub fn parse(s: &str) -> Option<Resolution> {
        Resolution::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn width_ms(self) -> i64 {
        match self {
            Resolution::Minute => 60_000,
            Resolution::Hour => 3_600_000,
            Resolution::Day => DAY_MS,
        }
    }

    /// The start of the bucket holding `at_ms`.
    pub fn start(self, at_ms: i64) -> i64 {
        at_ms.div_euclid(self.width_ms()) * self.width_ms()
    }
}

/// Where a bucket total belongs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BucketKey {
    pub flag: String,
    pub variant: String,
    pub metric: String,
    pub resolution: Resolution,
    pub start_ms: i64,
}

/// What a fold adds to one time bucket of a variant.
#[derive(Clone, Debug, Default)]
pub struct BucketDelta {
    pub x: f64,
    pub y: f64,
    pub events: i64,
    /// The largest value (gauges).
    pub max: Option<f64>,
    /// The values (quantile metrics).
    pub sketch: Option<QuantileSketch>,
}

impl BucketDelta {
    /// Adds one event's contribution: the same sums as the unit's, plus the
    /// value itself for gauges (max) and quantiles (sketch).
    fn record(&mut self, kind: &MetricKind, delta: &Delta, value: Option<f64>) {
        self.x += delta.x;
        self.y += delta.y;
        self.events += delta.events;
        match (kind, value) {
            (MetricKind::Gauge { .. }, Some(v)) => {
                self.max = Some(self.max.map_or(v, |m| m.max(v)))
            }
            (MetricKind::Quantile { .. }, Some(v)) => {
                // Values are finite (checked at ingest), so adding cannot fail.
                let _ = self.sketch.get_or_insert_with(QuantileSketch::new).add(v);
            }
            _ => {}
        }
    }

    pub fn merge(&mut self, other: &BucketDelta) {
        self.x += other.x;
        self.y += other.y;
        self.events += other.events;
        self.max = match (self.max, other.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if let Some(theirs) = &other.sketch {
            match &mut self.sketch {
                // Sketches built here all share one configuration.
                Some(ours) => {
                    let _ = ours.merge(theirs);
                }
                None => self.sketch = Some(theirs.clone()),
            }
        }
    }
}

/// A new exposure (or a conflict with a known one) to write.
#[derive(Clone, Debug, PartialEq)]
pub struct NewExposure {
    pub flag: String,
    pub unit: String,
    pub variant: String,
    pub first_at_ms: i64,
    /// The unit was (also) exposed to a variant other than its first.
    pub conflicting: bool,
}

/// Where a unit's history of a metric belongs (`(unit, metric)`).
pub type HistoryKey = (String, String);

/// A unit's value of a metric before its first exposure to a flag, as far as
/// this fold saw it: the events of the fold before the exposure. The store
/// adds the unit's history from earlier folds (CUPED's covariate).
#[derive(Clone, Debug, PartialEq)]
pub struct Covariate {
    pub flag: String,
    pub metric: String,
    pub unit: String,
    pub before: Delta,
}

/// The result of folding events of one environment.
#[derive(Clone, Debug, Default)]
pub struct Folded {
    pub exposures: Vec<NewExposure>,
    pub totals: HashMap<TotalKey, Delta>,
    pub buckets: HashMap<BucketKey, BucketDelta>,
    /// Every matching event of the tracked metrics, per unit, exposed or not.
    pub history: HashMap<HistoryKey, Delta>,
    /// Snapshots of the history at new exposures.
    pub covariates: Vec<Covariate>,
}

impl Folded {
    /// Adds another fold's totals to these (exposures are appended). The
    /// other fold's covariates gain this fold's history, which happened
    /// before them.
    pub fn merge(&mut self, other: Folded) {
        self.exposures.extend(other.exposures);
        for mut covariate in other.covariates {
            if let Some(before) = self
                .history
                .get(&(covariate.unit.clone(), covariate.metric.clone()))
            {
                covariate.before.add(before);
            }
            self.covariates.push(covariate);
        }
        for (key, delta) in other.history {
            self.history.entry(key).or_default().add(&delta);
        }
        for (key, delta) in other.totals {
            self.totals.entry(key).or_default().add(&delta);
        }
        for (key, delta) in other.buckets {
            self.buckets.entry(key).or_default().merge(&delta);
        }
    }
}

/// Folds `events` (in order) into totals. `known` holds the exposures of
/// every unit of `events` that were folded before; it is updated with the
/// new ones, so consecutive folds see each other's exposures.
pub fn fold(events: &[Event], metrics: &[Metric], known: &mut Exposures) -> Folded {
    fold_tracking(events, metrics, &[], known)
}

/// [`fold`], also keeping the history of the metrics at `tracked` (indices
/// into `metrics`): every matching event of a unit, exposed or not, and at
/// each new exposure the unit's history so far ([`Folded::covariates`]) —
/// the pre-exposure value CUPED adjusts with. Only kinds with per-unit sums
/// (`mean`, `count`, `proportion`) can be tracked; others are ignored.
pub fn fold_tracking(
    events: &[Event],
    metrics: &[Metric],
    tracked: &[usize],
    known: &mut Exposures,
) -> Folded {
    let tracked: Vec<usize> = tracked
        .iter()
        .copied()
        .filter(|&m| m < metrics.len() && stats::experiment::cuped_supports(&metrics[m].kind))
        .collect();
    let mut out = Folded::default();
    let mut history: HashMap<String, Vec<Delta>> = HashMap::new();
    let mut acc = Accumulator::default();
    let mut hits: Vec<(usize, Delta)> = Vec::with_capacity(metrics.len());
    for event in events {
        match event {
            Event::Exposure {
                flag,
                variant,
                unit,
                at_ms,
            } => {
                let seen = known.entry(unit.clone()).or_default();
                match seen.iter().find(|e| e.flag == *flag) {
                    Some(first) if first.variant == *variant => {}
                    Some(first) => out.exposures.push(NewExposure {
                        flag: flag.clone(),
                        unit: unit.clone(),
                        variant: first.variant.clone(),
                        first_at_ms: first.first_at_ms,
                        conflicting: true,
                    }),
                    None => {
                        seen.push(Exposed {
                            flag: flag.clone(),
                            variant: variant.clone(),
                            first_at_ms: *at_ms,
                        });
                        let before = history.get(unit.as_str());
                        for &m in &tracked {
                            out.covariates.push(Covariate {
                                flag: flag.clone(),
                                metric: metrics[m].key.clone(),
                                unit: unit.clone(),
                                before: before.and_then(|b| b.get(m)).copied().unwrap_or_default(),
                            });
                        }
                        out.exposures.push(NewExposure {
                            flag: flag.clone(),
                            unit: unit.clone(),
                            variant: variant.clone(),
                            first_at_ms: *at_ms,
                            conflicting: false,
                        });
                    }
                }
            }
            Event::Track {
                name,
                unit,
                value,
                at_ms,
                attributes,
                flag,
                variant,
            } => {
                if !tracked.is_empty() {
                    let unexposed = Exposed {
                        flag: String::new(),
                        variant: String::new(),
                        first_at_ms: i64::MIN,
                    };
                    for &m in &tracked {
                        if let Some(delta) =
                            contribution(&metrics[m], name, *value, attributes, *at_ms, &unexposed)
                        {
                            let deltas = deltas_of(&mut history, unit);
                            if deltas.len() <= m {
                                deltas.resize(m + 1, Delta::default());
                            }
                            deltas[m].add(&delta);
                        }
                    }
                }
                let explicit;
                let attributions: &[Exposed] = match (flag, variant) {
                    (Some(flag), Some(variant)) => {
                        explicit = [Exposed {
                            flag: flag.clone(),
                            variant: variant.clone(),
                            first_at_ms: i64::MIN,
                        }];
                        &explicit
                    }
                    _ => known.get(unit).map(Vec::as_slice).unwrap_or_default(),
                };
                for exposed in attributions {
                    if *at_ms < exposed.first_at_ms.saturating_sub(ATTRIBUTION_SKEW_MS) {
                        continue;
                    }
                    let arm = acc.arm(exposed);
                    hits.clear();
                    for (m, metric) in metrics.iter().enumerate() {
                        if let Some(delta) =
                            contribution(metric, name, *value, attributes, *at_ms, exposed)
                        {
                            hits.push((m, delta));
                            acc.minutes
                                .entry((arm, m, Resolution::Minute.start(*at_ms)))
                                .or_default()
                                .record(&metric.kind, &delta, *value);
                        }
                    }
                    if hits.is_empty() {
                        continue;
                    }
                    // One lookup of the unit per event, not per metric.
                    let deltas = deltas_of(&mut acc.units, unit);
                    for (m, delta) in &hits {
                        let slot = arm * metrics.len() + m;
                        if deltas.len() <= slot {
                            deltas.resize(slot + 1, Delta::default());
                        }
                        deltas[slot].add(delta);
                    }
                }
            }
        }
    }
    acc.finish(metrics, &mut out);
    for (unit, deltas) in history {
        for (m, delta) in deltas.into_iter().enumerate() {
            if delta.events > 0 {
                out.history
                    .insert((unit.clone(), metrics[m].key.clone()), delta);
            }
        }
    }
    out
}

/// The deltas of `unit`, allocating its key only the first time.
fn deltas_of<'a>(units: &'a mut HashMap<String, Vec<Delta>>, unit: &str) -> &'a mut Vec<Delta> {
    if !units.contains_key(unit) {
        units.insert(unit.to_owned(), Vec::new());
    }
    units.get_mut(unit).expect("just inserted")
}

/// Totals while folding, keyed by small indices rather than strings, so an
/// event that adds to a known unit allocates nothing.
#[derive(Default)]
struct Accumulator {
    /// The (flag, variant) pairs seen, in order; an arm is an index here.
    arms: Vec<(String, String)>,
    /// unit → deltas, at `arm × metrics + metric index` (`events == 0`
    /// where nothing was added).
    units: HashMap<String, Vec<Delta>>,
    /// (arm, metric index, minute start) → bucket.
    minutes: HashMap<(usize, usize, i64), BucketDelta>,
}

impl Accumulator {
    /// The index of `exposed`'s flag and variant (there are few of them).
    fn arm(&mut self, exposed: &Exposed) -> usize {
        match self
            .arms
            .iter()
            .position(|(f, v)| *f == exposed.flag && *v == exposed.variant)
        {
            Some(i) => i,
            None => {
                self.arms
                    .push((exposed.flag.clone(), exposed.variant.clone()));
                self.arms.len() - 1
            }
        }
    }

    /// Moves the totals into `out` under their full keys, and rolls the
    /// minute buckets up into hours and days (sums add, maxima and sketches
    /// merge, so this equals recording every event at every resolution).
    fn finish(self, metrics: &[Metric], out: &mut Folded) {
        let arms = &self.arms;
        for (unit, deltas) in self.units {
            for (slot, delta) in deltas.iter().enumerate() {
                if delta.events == 0 {
                    continue;
                }
                let (flag, variant) = &arms[slot / metrics.len()];
                let key = TotalKey {
                    flag: flag.clone(),
                    variant: variant.clone(),
                    metric: metrics[slot % metrics.len()].key.clone(),
                    unit: unit.clone(),
                };
                out.totals.entry(key).or_default().add(delta);
            }
        }
        for ((arm, m, minute), bucket) in self.minutes {
            let (flag, variant) = &arms[arm];
            for resolution in Resolution::ALL {
                let key = BucketKey {
                    flag: flag.clone(),
                    variant: variant.clone(),
                    metric: metrics[m].key.clone(),
                    resolution,
                    start_ms: resolution.start(minute),
                };
                out.buckets.entry(key).or_default().merge(&bucket);
            }
        }
    }
}

fn amount(side: &Side, value: Option<f64>) -> f64 {
    match side.agg {
        Aggregate::Count => 1.0,
        Aggregate::Sum => value.unwrap_or(0.0),
    }
}

/// What one track event adds to one metric, if it matches.
fn contribution(
    metric: &Metric,
    name: &str,
    value: Option<f64>,
    attributes: &serde_json::Map<String, Value>,
    at_ms: i64,
    exposed: &Exposed,
) -> Option<Delta> {
    let hit = |side: &Side| side.matches(name, attributes);
    let delta = |x: f64, y: f64| Some(Delta { x, y, events: 1 });
    match &metric.kind {
        MetricKind::Ratio {
            numerator,
            denominator,
        } => {
            let (n, d) = (hit(numerator), hit(denominator));
            if !n && !d {
                return None;
            }
            let x = if n { amount(numerator, value) } else { 0.0 };
            let y = if d { amount(denominator, value) } else { 0.0 };
            delta(x, y)
        }
        MetricKind::Proportion { side }
        | MetricKind::Mean { side }
        | MetricKind::Count { side } => hit(side).then(|| Delta {
            x: amount(side, value),
            y: 0.0,
            events: 1,
        }),
        MetricKind::Quantile { side, .. } | MetricKind::Gauge { side } => match value {
            Some(v) if hit(side) => delta(v, 1.0),
            _ => None,
        },
        MetricKind::Retention {
            side,
            from_day,
            to_day,
        } => {
            if !hit(side) || exposed.first_at_ms == i64::MIN {
                return None;
            }
            let since = at_ms - exposed.first_at_ms;
            let inside =
                since >= i64::from(*from_day) * DAY_MS && since < i64::from(*to_day) * DAY_MS;
            inside.then_some(Delta {
                x: 1.0,
                y: 0.0,
                events: 1,
            })
        }
        MetricKind::Uptime {
            requests, errors, ..
        } => {
            let (r, e) = (hit(requests), hit(errors));
            if !r && !e {
                return None;
            }
            delta(if e { 1.0 } else { 0.0 }, if r { 1.0 } else { 0.0 })
        }
    }
}
