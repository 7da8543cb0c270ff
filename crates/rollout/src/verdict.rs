//! Gates and guards judged on the observations of a phase: [`judge`]
//! returns one [`Verdict`] per gate and per guard and compared variant, with
//! the value, the interval, the limit, the units and the outcome — what the
//! controller decides on and what the status endpoint shows.
//!
//! # Gates
//!
//! A gate holds when the treatment's estimate over the phase meets its limit
//! (`max`: at most, `min`: at least) and the treatment has at least
//! `min_samples` units. It is judged once, when the phase's time is up, on
//! the point estimate; the verdict also shows the fixed-horizon two-sided
//! `1 − alpha` interval of the estimate for the reader.
//!
//! # Guards, and their error rate
//!
//! A guard looks at every step, so it must not use a fixed-horizon test:
//! checked every few seconds, a 5% test would fire on a healthy release
//! almost surely. It uses the always-valid one-sided confidence sequence of
//! the normal mixture instead (`../shared/oracle/README.md`, "Always-valid
//! confidence sequence"): the bound holds at every sample size
//! simultaneously, so looking after every batch costs nothing.
//!
//! - **Absolute** (`max`, `min`): the variant's own value. With `v` its unit
//!   variance (the engine's: `p(1 − p)` for a proportion, the sample variance
//!   for a mean, the delta-method variance for a ratio), `n` its units and
//!   `ρ₁² = (−2 ln 2α + ln(1 − 2 ln 2α))/S`, the one-sided half-width is
//!   `√(v·2(nρ₁² + 1)/(n²ρ₁²)·ln(1 + √(nρ₁² + 1)/(2α)))` — the engine's
//!   two-sample formula with `V·N = v`, `N = n`. A `max` guard fires when the
//!   lower bound `value − half-width` is above the limit; a `min` guard when
//!   the upper bound is below it.
//! - **Relative** (`max_relative_increase`, `max_relative_decrease`):
//!   `stats::analyze` on `[control, variant]`; the relative lift's one-sided
//!   always-valid bound (`one_sided.seq_lower` / `seq_upper`) must lie beyond
//!   the limit (above `+limit`, below `−limit`).
//!
//! Both also need `min_samples` units (a relative guard in the control as
//! well) and an input the engine accepts as adequate (`LiftStatus::Ok`, a
//! nonzero variance); otherwise the outcome is insufficient data and the
//! guard does not fire.
//!
//! **Error rate.** Each test is one-sided because only one direction is a
//! regression, so all of its error budget goes there. The phase's budget
//! `alpha` (default 0.05) is split (Bonferroni) over its tests, one per
//! guard and compared variant: guard `g` gets the share `w_g / Σw` of it by
//! its `weight` (default 1 each: an even split), and each of the `A`
//! variants compared with the control in the phase an equal part, so its
//! tests run at `alpha · w_g / (Σw · A)`. Hence: **when no variant
//! is beyond any guard's limit, the probability that any guard fires at any
//! look during a phase is at most `alpha`**, however often the controller
//! looks; for a whole rollout of `P` phases (each starting a fresh sequence
//! on its own data) at most `P·alpha`, and a restart starts a new budget.
//! A variant exactly at the limit is the worst case; one well inside it
//! fires far less often. The guarantee is asymptotic: it rests on the
//! normal approximation with a plug-in variance (hence `min_samples`), and,
//! for a relative guard, on the delta method.

use serde::{Deserialize, Serialize};
use stats::inference::{
    ArmReport, ArmStats, InsufficientData, LiftStatus, Outcome, normal_quantile,
};
use stats::{AnalysisConfig, Metric, MetricAnalysis, MetricObservations};

use crate::observe::{Observations, VariantData, lacks_denominator, metric_data};
use crate::plan::{Limit, Plan, percent_text};
use crate::spec::GuardAction;

/// The verdict on one gate, or on one guard for one variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Which gate or guard of the plan.
    pub check: Check,
    pub metric: String,
    /// The variant judged: the treatment, or an arm of the phase's
    /// experiment.
    pub variant: String,
    pub limit: Limit,
    /// The number compared with the limit: the variant's estimate, or for a
    /// relative limit its relative difference from the control (0.1 =
    /// +10%).
    pub value: Option<f64>,
    /// The interval the decision rests on (see [`Interval`]).
    pub interval: Option<Interval>,
    /// The variant's and the control's values and units.
    pub values: Vec<VariantValue>,
    /// Units needed before the check may decide.
    pub min_samples: u64,
    pub outcome: VerdictOutcome,
}

/// Which check a verdict is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Check {
    /// `success[index]` of the plan.
    Gate { index: usize },
    /// `guards[index]` of the plan.
    Guard { index: usize, action: GuardAction },
}

/// A variant's value of the metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VariantValue {
    pub variant: String,
    pub units: u64,
    /// `None` without units (or without a ratio's denominator).
    pub value: Option<f64>,
}

/// An interval: both bounds for a gate's fixed-horizon interval, one bound
/// for a guard's one-sided always-valid bound (the other side unbounded).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    /// The coverage, `1 − level`.
    pub confidence: f64,
    /// Valid at every look (a confidence sequence) rather than at one.
    pub always_valid: bool,
}

/// What a check concluded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum VerdictOutcome {
    /// A gate: the limit is met. A guard: no evidence of a regression.
    Holds,
    /// A gate: the limit is not met. A guard: the regression is shown with
    /// always-valid confidence; the guard fires.
    Breached,
    /// Too little data to decide; a gate then does not hold and a guard does
    /// not fire.
    InsufficientData { reason: String },
}

impl Verdict {
    /// Whether a gate holds or a guard sees no regression.
    pub fn holds(&self) -> bool {
        self.outcome == VerdictOutcome::Holds
    }

    /// Whether a gate fails or a guard fires.
    pub fn is_breached(&self) -> bool {
        self.outcome == VerdictOutcome::Breached
    }

    /// One line for people: metric, variant, value, limit, outcome.
    pub fn describe(&self) -> String {
        let value = match self.value {
            Some(v) if self.limit.is_relative() => format!("{:+}%", round6(v * 100.0)),
            Some(v) => format!("{}", round6(v)),
            None => "no value".to_owned(),
        };
        let units = self
            .values
            .iter()
            .map(|v| format!("{} units of `{}`", v.units, v.variant))
            .collect::<Vec<_>>()
            .join(", ");
        let bound = match &self.interval {
            Some(Interval {
                lower: Some(lower),
                upper: None,
                ..
            }) => format!(", lower bound {}", self.show(*lower)),
            Some(Interval {
                lower: None,
                upper: Some(upper),
                ..
            }) => format!(", upper bound {}", self.show(*upper)),
            _ => String::new(),
        };
        let outcome = match &self.outcome {
            VerdictOutcome::Holds => "holds".to_owned(),
            VerdictOutcome::Breached => "breached".to_owned(),
            VerdictOutcome::InsufficientData { reason } => format!("insufficient data: {reason}"),
        };
        format!(
            "`{}` of `{}` is {value}{bound} (limit: {}; {units}): {outcome}",
            self.metric, self.variant, self.limit
        )
    }

    fn show(&self, value: f64) -> String {
        if self.limit.is_relative() {
            format!("{:+}%", round6(value * 100.0))
        } else {
            format!("{}", round6(value))
        }
    }
}

fn round6(value: f64) -> f64 {
    crate::plan::round_to(value, 6)
}

/// The level guard `guard`'s test of each compared variant runs at during
/// a phase: the plan's `alpha` split over the guards by their weights, and
/// each guard's share evenly over the phase's compared variants.
pub fn guard_alpha(plan: &Plan, phase: usize, guard: usize) -> f64 {
    let total: f64 = plan.guards.iter().map(|g| g.weight).sum();
    let Some(weight) = plan.guards.get(guard).map(|g| g.weight) else {
        return 0.0;
    };
    let variants = plan.compared_variants(phase).len().max(1) as f64;
    plan.spec.alpha * weight / total / variants
}

/// Judges every gate (on the treatment) and every guard (on each variant
/// the phase compares with the control) on a phase's observations: gates
/// first, in plan order, then guards in plan order, each over the variants
/// in arm order.
pub fn judge(plan: &Plan, phase: usize, observations: &Observations) -> Vec<Verdict> {
    let empty = VariantData::default();
    let config = AnalysisConfig {
        sequential_tuning: plan.spec.sequential_tuning,
        // Verdicts read lifts only: skip the integrals.
        posteriors: false,
        ..AnalysisConfig::default()
    };
    // A few analyses per step (gates + guards × variants): cheap enough not
    // to share between checks of the same metric.
    let pair = |metric, variant, alpha| {
        let config = AnalysisConfig { alpha, ..config };
        Pair::new(plan, metric, variant, observations, &empty, &config)
    };
    let mut verdicts = Vec::new();
    let treatment = plan.spec.treatment.as_str();
    for (index, gate) in plan.gates.iter().enumerate() {
        let pair = pair(&gate.metric, treatment, plan.spec.alpha);
        verdicts.push(gate_verdict(
            plan,
            index,
            &gate.metric,
            gate.limit,
            gate.min_samples,
            &pair,
        ));
    }
    let variants = plan.compared_variants(phase);
    for (index, guard) in plan.guards.iter().enumerate() {
        let alpha = guard_alpha(plan, phase, index);
        for variant in &variants {
            let pair = pair(&guard.metric, variant, alpha);
            let check = Check::Guard {
                index,
                action: guard.action,
            };
            let verdict = if guard.limit.is_relative() {
                relative_verdict(plan, check, guard, variant, &pair, alpha)
            } else {
                absolute_verdict(plan, check, guard, variant, &pair, alpha)
            };
            verdicts.push(verdict);
        }
    }
    verdicts
}

/// A variant and the control for one metric, analysed.
struct Pair<'a> {
    metric: &'a Metric,
    control: &'a VariantData,
    variant: &'a VariantData,
    /// `stats::analyze` on `[control, variant]`, or why it could not run.
    analysis: Result<MetricAnalysis, String>,
}

impl<'a> Pair<'a> {
    fn new(
        plan: &Plan,
        metric: &'a Metric,
        variant: &str,
        observations: &'a Observations,
        empty: &'a VariantData,
        config: &AnalysisConfig,
    ) -> Self {
        let data = |name: &str| observations.get(&metric.key, name).unwrap_or(empty);
        let (control, variant) = (data(&plan.spec.control), data(variant));
        let analysis = match metric_data(metric, &[control, variant]) {
            None => Err(format!(
                "`{}` is a share of minutes, not a value per unit",
                metric.key
            )),
            Some(data) => stats::analyze(
                &MetricObservations {
                    // Only the SRM check reads the weights, and it is not
                    // used here: a rollout's shares are unequal by design.
                    weights: vec![1.0, 1.0],
                    metric: data,
                    guardrail: None,
                },
                config,
            )
            .map_err(|e| format!("the data of `{}` are malformed: {e}", metric.key)),
        };
        Pair {
            metric,
            control,
            variant,
            analysis,
        }
    }

    /// The engine's statistics of arm 0 (control) or 1 (variant).
    fn arm(&self, arm: usize) -> Option<&ArmStats> {
        let data = if arm == 0 { self.control } else { self.variant };
        if lacks_denominator(self.metric, data) {
            return None;
        }
        match self.analysis.as_ref().ok()?.arms.get(arm)? {
            Outcome::Value(ArmReport::Plain(stats)) => Some(stats),
            _ => None,
        }
    }

    fn values(&self, variant: &str, control: &str) -> Vec<VariantValue> {
        let value = |arm: usize, name: &str, data: &VariantData| VariantValue {
            variant: name.to_owned(),
            units: data.units,
            value: self.arm(arm).map(|s| s.mean),
        };
        vec![
            value(1, variant, self.variant),
            value(0, control, self.control),
        ]
    }

    /// Why the variant (arm 1) has no value, or `None` if it has one.
    fn no_value_reason(&self, variant: &str) -> Option<String> {
        if let Err(reason) = &self.analysis {
            return Some(reason.clone());
        }
        if self.variant.units == 0 {
            return Some(format!("`{variant}` has no units yet"));
        }
        if lacks_denominator(self.metric, self.variant) {
            return Some(format!(
                "`{variant}` has no events for the denominator of `{}` yet",
                self.metric.key
            ));
        }
        self.arm(1)
            .is_none()
            .then(|| format!("`{variant}` has no value of `{}` yet", self.metric.key))
    }
}

fn gate_verdict(
    plan: &Plan,
    index: usize,
    metric: &Metric,
    limit: Limit,
    min_samples: u64,
    pair: &Pair<'_>,
) -> Verdict {
    let variant = plan.spec.treatment.as_str();
    if let stats::MetricKind::Uptime { .. } = metric.kind {
        return uptime_gate_verdict(plan, index, metric, limit, min_samples, pair);
    }
    let stats = pair.arm(1);
    let z = normal_quantile(1.0 - plan.spec.alpha / 2.0);
    let interval = stats.filter(|s| s.variance > 0.0).map(|s| Interval {
        lower: Some(s.mean - z * s.se_mean),
        upper: Some(s.mean + z * s.se_mean),
        confidence: 1.0 - plan.spec.alpha,
        always_valid: false,
    });
    let outcome = match (pair.no_value_reason(variant), stats) {
        (Some(reason), _) => VerdictOutcome::InsufficientData { reason },
        (None, _) if pair.variant.units < min_samples => {
            too_few(variant, pair.variant.units, min_samples)
        }
        (None, Some(stats)) => {
            let met = match limit {
                Limit::Max(max) => stats.mean <= max,
                Limit::Min(min) => stats.mean >= min,
                // Validation gives gates absolute limits only.
                Limit::MaxRelativeIncrease(_) | Limit::MaxRelativeDecrease(_) => false,
            };
            if met {
                VerdictOutcome::Holds
            } else {
                VerdictOutcome::Breached
            }
        }
        (None, None) => VerdictOutcome::InsufficientData {
            reason: format!("`{variant}` has no value of `{}` yet", metric.key),
        },
    };
    Verdict {
        check: Check::Gate { index },
        metric: metric.key.clone(),
        variant: variant.to_owned(),
        limit,
        value: stats.map(|s| s.mean),
        interval,
        values: pair.values(variant, &plan.spec.control),
        min_samples,
        outcome,
    }
}

/// An uptime gate: the treatment's share of healthy minutes against the
/// limit, once it served in at least `min_samples` minutes (a point
/// estimate: minutes are not independent units, so there is no interval).
fn uptime_gate_verdict(
    plan: &Plan,
    index: usize,
    metric: &Metric,
    limit: Limit,
    min_samples: u64,
    pair: &Pair<'_>,
) -> Verdict {
    let variant = plan.spec.treatment.as_str();
    let minutes = pair.variant.minutes.unwrap_or_default();
    let value = minutes.share();
    let outcome = match value {
        _ if minutes.served < min_samples => VerdictOutcome::InsufficientData {
            reason: format!(
                "`{variant}` served in {} minutes so far; {min_samples} are needed",
                minutes.served
            ),
        },
        Some(share) => {
            let met = match limit {
                Limit::Max(max) => share <= max,
                Limit::Min(min) => share >= min,
                Limit::MaxRelativeIncrease(_) | Limit::MaxRelativeDecrease(_) => false,
            };
            if met {
                VerdictOutcome::Holds
            } else {
                VerdictOutcome::Breached
            }
        }
        None => VerdictOutcome::InsufficientData {
            reason: format!("`{variant}` has no value of `{}` yet", metric.key),
        },
    };
    let of = |name: &str, data: &VariantData| VariantValue {
        variant: name.to_owned(),
        units: data.minutes.map_or(0, |m| m.served),
        value: data.minutes.and_then(|m| m.share()),
    };
    Verdict {
        check: Check::Gate { index },
        metric: metric.key.clone(),
        variant: variant.to_owned(),
        limit,
        value,
        interval: None,
        values: vec![
            of(variant, pair.variant),
            of(&plan.spec.control, pair.control),
        ],
        min_samples,
        outcome,
    }
}

fn too_few(variant: &str, units: u64, min_samples: u64) -> VerdictOutcome {
    VerdictOutcome::InsufficientData {
        reason: format!("{units} units of `{variant}` so far; {min_samples} are needed"),
    }
}

fn absolute_verdict(
    plan: &Plan,
    check: Check,
    guard: &crate::plan::Guard,
    variant: &str,
    pair: &Pair<'_>,
    alpha: f64,
) -> Verdict {
    let stats = pair.arm(1);
    let bounds =
        stats.and_then(|s| absolute_bounds(&guard.metric, s, alpha, plan.spec.sequential_tuning));
    let (interval, bound) = match (stats, bounds, guard.limit) {
        (Some(_), Some((lower, _)), Limit::Max(_)) => (
            Some(Interval {
                lower: Some(lower),
                upper: None,
                confidence: 1.0 - alpha,
                always_valid: true,
            }),
            Some(lower),
        ),
        (Some(_), Some((_, upper)), _) => (
            Some(Interval {
                lower: None,
                upper: Some(upper),
                confidence: 1.0 - alpha,
                always_valid: true,
            }),
            Some(upper),
        ),
        // No spread: the interval is the value itself.
        (Some(s), None, _) if s.variance == 0.0 => (
            Some(Interval {
                lower: Some(s.mean),
                upper: Some(s.mean),
                confidence: 1.0 - alpha,
                always_valid: true,
            }),
            None,
        ),
        _ => (None, None),
    };
    let beyond = |x: f64| match guard.limit {
        Limit::Max(max) => x > max,
        Limit::Min(min) => x < min,
        Limit::MaxRelativeIncrease(_) | Limit::MaxRelativeDecrease(_) => false,
    };
    let outcome = if let Some(reason) = pair.no_value_reason(variant) {
        VerdictOutcome::InsufficientData { reason }
    } else if pair.variant.units < guard.min_samples {
        too_few(variant, pair.variant.units, guard.min_samples)
    } else {
        match (stats, bound) {
            (Some(_), Some(bound)) if beyond(bound) => VerdictOutcome::Breached,
            (Some(_), Some(_)) => VerdictOutcome::Holds,
            // No spread: within the limit is no evidence of a regression.
            (Some(s), None) if !beyond(s.mean) => VerdictOutcome::Holds,
            // No spread at all across at least `min_samples` units, every one
            // beyond the limit (a treatment that fails every request): the
            // value is its own bound; refusing would never roll it back.
            (Some(s), None) if s.n >= guard.min_samples => VerdictOutcome::Breached,
            _ => VerdictOutcome::InsufficientData {
                reason: format!(
                    "`{}` does not vary across the units of `{variant}` yet",
                    guard.metric.key
                ),
            },
        }
    };
    Verdict {
        check,
        metric: guard.metric.key.clone(),
        variant: variant.to_owned(),
        limit: guard.limit,
        value: stats.map(|s| s.mean),
        interval,
        values: pair.values(variant, &plan.spec.control),
        min_samples: guard.min_samples,
        outcome,
    }
}

fn relative_verdict(
    plan: &Plan,
    check: Check,
    guard: &crate::plan::Guard,
    variant: &str,
    pair: &Pair<'_>,
    alpha: f64,
) -> Verdict {
    let control = plan.spec.control.as_str();
    let relative = pair
        .analysis
        .as_ref()
        .ok()
        .and_then(|a| a.comparisons.first())
        .map(|c| c.clone().map(|c| c.relative));
    let value = relative
        .as_ref()
        .and_then(|r| r.value())
        .and_then(|r| r.estimate.value().copied());
    let bounds = relative
        .as_ref()
        .and_then(|r| r.value())
        .and_then(|r| r.one_sided.value().cloned());
    let (interval, beyond) = match (guard.limit, &bounds) {
        (Limit::MaxRelativeIncrease(limit), Some(b)) => (
            Some(Interval {
                lower: Some(b.seq_lower),
                upper: None,
                confidence: 1.0 - alpha,
                always_valid: true,
            }),
            b.seq_lower > limit,
        ),
        (Limit::MaxRelativeDecrease(limit), Some(b)) => (
            Some(Interval {
                lower: None,
                upper: Some(b.seq_upper),
                confidence: 1.0 - alpha,
                always_valid: true,
            }),
            b.seq_upper < -limit,
        ),
        _ => (None, false),
    };
    let outcome = if let Some(reason) = pair.no_value_reason(variant) {
        VerdictOutcome::InsufficientData { reason }
    } else if pair.control.units == 0 || pair.arm(0).is_none() {
        VerdictOutcome::InsufficientData {
            reason: format!(
                "the control `{control}` has no value of `{}` to compare with",
                guard.metric.key
            ),
        }
    } else if pair.variant.units < guard.min_samples {
        too_few(variant, pair.variant.units, guard.min_samples)
    } else if pair.control.units < guard.min_samples {
        too_few(control, pair.control.units, guard.min_samples)
    } else {
        match &relative {
            Some(Outcome::Value(lift)) => match lift.status {
                LiftStatus::InsufficientData(reason) => VerdictOutcome::InsufficientData {
                    reason: describe_insufficient(reason, &guard.metric.key, control, variant),
                },
                LiftStatus::Ok if bounds.is_none() => VerdictOutcome::InsufficientData {
                    reason: "the difference has no spread yet".to_owned(),
                },
                LiftStatus::Ok if beyond => VerdictOutcome::Breached,
                LiftStatus::Ok => VerdictOutcome::Holds,
            },
            Some(Outcome::Insufficient(reason)) => VerdictOutcome::InsufficientData {
                reason: describe_insufficient(*reason, &guard.metric.key, control, variant),
            },
            None => VerdictOutcome::InsufficientData {
                reason: "no comparison with the control".to_owned(),
            },
        }
    };
    Verdict {
        check,
        metric: guard.metric.key.clone(),
        variant: variant.to_owned(),
        limit: guard.limit,
        value,
        interval,
        values: pair.values(variant, control),
        min_samples: guard.min_samples,
        outcome,
    }
}

/// The engine's refusal in words; arm 0 is `control`, arm 1 `variant`.
fn describe_insufficient(
    reason: InsufficientData,
    metric: &str,
    control: &str,
    variant: &str,
) -> String {
    let name = |arm: usize| if arm == 0 { control } else { variant };
    match reason {
        InsufficientData::NoUnits => "no units yet".to_owned(),
        InsufficientData::EmptyArm { arm } => format!("`{}` has no units yet", name(arm)),
        InsufficientData::ZeroVariance { arm } => format!(
            "`{metric}` does not vary across the units of `{}` yet",
            name(arm)
        ),
        InsufficientData::ZeroBaseline => {
            format!("the control's `{metric}` is 0, so a change relative to it is undefined")
        }
        InsufficientData::ZeroStandardError => "the difference has no spread yet".to_owned(),
        InsufficientData::TooFewUnitsForQuantile { arm, n, min_units } => format!(
            "`{}` has {n} values; the quantile's interval needs at least {min_units}",
            name(arm)
        ),
    }
}

/// The half-width of the one-sided always-valid bound on a mean of `n`
/// units with unit variance `unit_variance`, at level `alpha`, with tuning
/// parameter `tuning` (the number of units at which it is tightest):
/// `√(v·2(nρ₁² + 1)/(n²ρ₁²)·ln(1 + √(nρ₁² + 1)/(2α)))` with
/// `ρ₁² = (−2 ln 2α + ln(1 − 2 ln 2α))/S`.
///
/// With probability at least `1 − alpha`, the mean stays below
/// `estimate + half-width` (and, separately, above `estimate − half-width`)
/// at every `n` at once — asymptotically, with the plug-in variance.
pub fn one_sided_sequence_half_width(unit_variance: f64, n: u64, alpha: f64, tuning: f64) -> f64 {
    let n = n as f64;
    let ln_two_alpha = (2.0 * alpha).ln();
    let rho2 = (-2.0 * ln_two_alpha + (1.0 - 2.0 * ln_two_alpha).ln()) / tuning;
    let spread = n * rho2 + 1.0;
    (unit_variance * 2.0 * spread / (n * n * rho2) * (1.0 + spread.sqrt() / (2.0 * alpha)).ln())
        .sqrt()
}

/// The one-sided always-valid bounds (each at level `alpha`) on a
/// variant's own value, or `None` without spread.
///
/// For a rate — a proportion, a retention, or a ratio of event counts
/// (errors per request), with a value strictly between 0 and 1 — the bounds
/// are of the score (Wilson) kind: a candidate value `μ` is excluded when
/// the estimate is beyond it by more than the half-width computed with the
/// variance the metric would have *at* `μ`, `v·μ(1 − μ)/(p(1 − p))` (the
/// observed unit variance `v` rescaled from the estimate `p` to `μ`, which
/// keeps the design effect of several requests per unit). Solving for `μ`
/// gives `(p + c/2 ± √(c·p(1 − p) + c²/4))/(1 + c)` with `c = k²·v/(p(1 − p))`
/// and `k` the half-width for unit variance 1. Near a small limit the
/// variance at the limit is far below the plug-in one (0.02·0.98 against
/// 0.04·0.96 for an error rate of 4% tested against 2%), so the guard
/// needs about half the units; the bound is as valid as the plug-in one
/// (both are asymptotic), and is the better one for proportions, as the
/// Wilson interval is for a fixed sample.
///
/// Anything else: `estimate ∓ k·√v`.
fn absolute_bounds(metric: &Metric, s: &ArmStats, alpha: f64, tuning: f64) -> Option<(f64, f64)> {
    if s.variance.is_nan() || s.variance <= 0.0 {
        return None;
    }
    let k = one_sided_sequence_half_width(1.0, s.n, alpha, tuning);
    let p = s.mean;
    if is_rate(metric) && p > 0.0 && p < 1.0 {
        let c = k * k * s.variance / (p * (1.0 - p));
        let centre = (p + c / 2.0) / (1.0 + c);
        let half = (c * p * (1.0 - p) + c * c / 4.0).sqrt() / (1.0 + c);
        Some((centre - half, centre + half))
    } else {
        let h = k * s.variance.sqrt();
        Some((p - h, p + h))
    }
}

/// Whether a metric's value is a share of events or units (between 0 and
/// 1, each counted event a success or not).
fn is_rate(metric: &Metric) -> bool {
    use stats::{Aggregate, MetricKind};
    match &metric.kind {
        MetricKind::Proportion { .. } | MetricKind::Retention { .. } => true,
        MetricKind::Ratio {
            numerator,
            denominator,
        } => numerator.agg == Aggregate::Count && denominator.agg == Aggregate::Count,
        _ => false,
    }
}

/// The text of a relative limit, for titles (`+20%`).
pub(crate) fn limit_text(limit: Limit) -> String {
    match limit {
        Limit::Max(v) => format!("max {v}"),
        Limit::Min(v) => format!("min {v}"),
        Limit::MaxRelativeIncrease(v) => format!("+{}", percent_text(v)),
        Limit::MaxRelativeDecrease(v) => format!("-{}", percent_text(v)),
    }
}
