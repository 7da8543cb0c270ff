//! Plan validation: [`compile_rollouts`] checks rollout specs against the
//! flags, segments, metrics and experiments they name and turns each into a
//! [`Plan`], with durations parsed, percentages on the bucket grid, the
//! arms each phase serves, and the gates' and guards' metrics resolved.
//!
//! Compilation is all-or-nothing, like the flag engine's: every problem of
//! every rollout is reported, each naming the rollout, the field and what is
//! wrong ([`PlanError`]).

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use stats::{ExperimentSpec, Metric, MetricKind};

use crate::spec::{
    DEFAULT_ESCALATE_AFTER_MS, GuardAction, RolloutSpec, SupportLevel, parse_duration_ms,
};

/// Units a gate or guard needs (in the treatment; for a relative guard in
/// the control too) when its `min_samples` is not given.
pub const DEFAULT_MIN_SAMPLES: u64 = 100;

/// Buckets of a whole split: percentages are whole numbers of 0.001%.
const SPLIT_UNITS: u32 = flags::BUCKET_COUNT;

/// What a plan is checked against: the environment's flags, segments,
/// metrics and experiments (after the change being applied).
#[derive(Clone, Copy, Debug)]
pub struct PlanContext<'a> {
    /// Flag key → its variant names.
    pub flags: &'a HashMap<String, Vec<String>>,
    /// Segment keys.
    pub segments: &'a HashSet<String>,
    /// The compiled metrics.
    pub metrics: &'a [Metric],
    /// The experiment definitions (checked on their own by
    /// `stats::compile_experiments`).
    pub experiments: &'a [ExperimentSpec],
}

/// One problem found in a rollout plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlanError {
    /// ``rollout `calc-model` ``, or `rollouts[2]` when the flag key cannot
    /// name the rollout (empty, or a second rollout of the same flag).
    pub subject: String,
    /// Path of the offending field, e.g. `phases[1].duration`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.subject, self.message)
        } else {
            write!(f, "{}: {}: {}", self.subject, self.field, self.message)
        }
    }
}

impl std::error::Error for PlanError {}

/// A checked rollout plan.
///
/// Only [`compile_rollouts`] makes one, so its invariants hold: at least one
/// phase, percentages in (0, 100] on the 0.001 grid and non-decreasing,
/// positive durations, arm weights summing to 100, and every gate and guard
/// on a metric of a kind it can judge.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The plan as written.
    pub spec: RolloutSpec,
    pub phases: Vec<Phase>,
    /// From `spec.success`, in order.
    pub gates: Vec<Gate>,
    /// From `spec.guards`, in order.
    pub guards: Vec<Guard>,
    /// How long an incident may stay unacknowledged before it escalates.
    pub escalate_after_ms: i64,
}

impl Plan {
    /// The flag the plan rolls out.
    pub fn flag(&self) -> &str {
        &self.spec.flag
    }

    /// Phase `index`, or the last phase when the index is past the end (a
    /// state saved under a longer version of the plan).
    ///
    /// # Panics
    ///
    /// If the plan has no phases, which [`compile_rollouts`] never returns.
    pub fn phase(&self, index: usize) -> &Phase {
        &self.phases[self.phase_index(index)]
    }

    /// The index [`Plan::phase`] resolves `index` to.
    pub fn phase_index(&self, index: usize) -> usize {
        index.min(self.phases.len().saturating_sub(1))
    }

    /// Whether `index` is the last phase (or past it).
    pub fn is_last_phase(&self, index: usize) -> bool {
        index + 1 >= self.phases.len()
    }

    /// The variants of a phase that the guards compare with the control: the
    /// treatment, or every arm of the phase's experiment but the control.
    pub fn compared_variants(&self, index: usize) -> Vec<&str> {
        self.phase(index)
            .arms
            .iter()
            .map(|(variant, _)| variant.as_str())
            .filter(|variant| *variant != self.spec.control)
            .collect()
    }
}

/// A checked phase.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Phase {
    pub name: String,
    /// Share of units in the rollout, in percent, on the 0.001 grid.
    pub percent: f64,
    /// The least time the phase lasts.
    pub duration_ms: i64,
    /// The segment the phase is limited to.
    pub audience: Option<String>,
    /// The experiment run during the phase.
    pub experiment: Option<String>,
    /// What units in the rollout get: variant and weight in percent, the
    /// weights summing to exactly 100 on the 0.001 grid. `[(treatment, 100)]`,
    /// or the experiment's arms in its order (control first) with its
    /// proportions.
    pub arms: Vec<(String, f64)>,
}

/// A limit on a metric.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// The variant's value must be at most this.
    Max(f64),
    /// The variant's value must be at least this.
    Min(f64),
    /// The variant may be at most this much higher than the control, as a
    /// fraction of the control's value (0.2 = 20%).
    MaxRelativeIncrease(f64),
    /// The variant may be at most this much lower than the control.
    MaxRelativeDecrease(f64),
}

impl Limit {
    /// Whether the limit is relative to the control.
    pub fn is_relative(&self) -> bool {
        matches!(
            self,
            Limit::MaxRelativeIncrease(_) | Limit::MaxRelativeDecrease(_)
        )
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Max(v) => write!(f, "max {v}"),
            Limit::Min(v) => write!(f, "min {v}"),
            Limit::MaxRelativeIncrease(v) => {
                write!(f, "at most {} above the control", percent_text(*v))
            }
            Limit::MaxRelativeDecrease(v) => {
                write!(f, "at most {} below the control", percent_text(*v))
            }
        }
    }
}

/// `0.2` as `20%`.
pub(crate) fn percent_text(fraction: f64) -> String {
    format!("{}%", round_to(fraction * 100.0, 6))
}

/// `value` rounded to `digits` decimals, for messages.
pub(crate) fn round_to(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// A checked success criterion: at the end of a phase the treatment's
/// estimate must meet `limit` (a `Max` or `Min`) with at least
/// `min_samples` units.
#[derive(Clone, Debug, PartialEq)]
pub struct Gate {
    pub metric: Metric,
    pub limit: Limit,
    pub min_samples: u64,
}

/// A checked rollback trigger.
#[derive(Clone, Debug, PartialEq)]
pub struct Guard {
    pub metric: Metric,
    pub limit: Limit,
    pub action: GuardAction,
    pub min_samples: u64,
    /// Its share of the phase's `alpha`, relative to the other guards'.
    pub weight: f64,
    /// The support level its incident starts at.
    pub level: SupportLevel,
}

/// Checks rollout specs and compiles them into plans. All or nothing: every
/// problem of every rollout is reported.
pub fn compile_rollouts(
    specs: &[RolloutSpec],
    ctx: &PlanContext<'_>,
) -> Result<Vec<Plan>, Vec<PlanError>> {
    let mut errors = Vec::new();
    let mut plans = Vec::with_capacity(specs.len());
    let mut first_of_flag: HashMap<&str, usize> = HashMap::new();
    for (i, spec) in specs.iter().enumerate() {
        let mut errs = Errors {
            subject: format!("rollout `{}`", spec.flag),
            out: &mut errors,
        };
        if spec.flag.trim().is_empty() {
            errs.subject = format!("rollouts[{i}]");
            errs.push("flag", "must name the flag to roll out; it is empty");
            continue;
        }
        if let Some(first) = first_of_flag.get(spec.flag.as_str()) {
            errs.subject = format!("rollouts[{i}]");
            errs.push(
                "flag",
                format!(
                    "flag `{}` already has a rollout (rollouts[{first}]); a flag has at most one",
                    spec.flag
                ),
            );
            continue;
        }
        first_of_flag.insert(&spec.flag, i);
        if let Some(plan) = compile_rollout(spec, ctx, &mut errs) {
            plans.push(plan);
        }
    }
    if errors.is_empty() {
        Ok(plans)
    } else {
        Err(errors)
    }
}

/// Collects the problems of one rollout.
struct Errors<'a> {
    subject: String,
    out: &'a mut Vec<PlanError>,
}

impl Errors<'_> {
    fn push(&mut self, field: &str, message: impl Into<String>) {
        self.out.push(PlanError {
            subject: self.subject.clone(),
            field: field.to_owned(),
            message: message.into(),
        });
    }
}

fn compile_rollout(
    spec: &RolloutSpec,
    ctx: &PlanContext<'_>,
    errs: &mut Errors<'_>,
) -> Option<Plan> {
    let before = errs.out.len();
    check_variants(spec, ctx, errs);
    if spec.unit != flags::TARGETING_KEY {
        errs.push(
            "unit",
            format!(
                "is `{}`; only `{}` is supported (bucketing hashes it)",
                spec.unit,
                flags::TARGETING_KEY
            ),
        );
    }
    if !(spec.alpha > 0.0 && spec.alpha < 0.5) {
        errs.push(
            "alpha",
            format!(
                "is {}; it must lie between 0 and 0.5 (e.g. 0.05)",
                spec.alpha
            ),
        );
    }
    if !(spec.sequential_tuning.is_finite() && spec.sequential_tuning >= 1.0) {
        errs.push(
            "sequential_tuning",
            format!(
                "is {}; it must be a number of units, at least 1 (e.g. 5000)",
                spec.sequential_tuning
            ),
        );
    }
    let escalate_after_ms = match spec.escalate_after.as_deref() {
        None => DEFAULT_ESCALATE_AFTER_MS,
        Some(text) => parse_duration_ms(text).unwrap_or_else(|e| {
            errs.push("escalate_after", e);
            DEFAULT_ESCALATE_AFTER_MS
        }),
    };
    if let Some(text) = &spec.announcement
        && text.trim().is_empty()
    {
        errs.push(
            "announcement",
            "is empty; write the text users should read at general availability, or leave it out",
        );
    }
    let phases = compile_phases(spec, ctx, errs);
    let metrics: HashMap<&str, &Metric> = ctx.metrics.iter().map(|m| (m.key.as_str(), m)).collect();
    let gates = compile_gates(spec, &metrics, errs);
    let guards = compile_guards(spec, &metrics, errs);
    (errs.out.len() == before).then(|| Plan {
        spec: spec.clone(),
        phases,
        gates,
        guards,
        escalate_after_ms,
    })
}

fn check_variants(spec: &RolloutSpec, ctx: &PlanContext<'_>, errs: &mut Errors<'_>) {
    let variants = ctx.flags.get(&spec.flag);
    if variants.is_none() {
        errs.push("flag", format!("no flag `{}` is defined", spec.flag));
    }
    for (field, variant, role) in [
        ("treatment", &spec.treatment, "the variant being rolled out"),
        ("control", &spec.control, "the variant everyone else gets"),
    ] {
        if variant.is_empty() {
            errs.push(field, format!("must name {role}; it is empty"));
        } else if let Some(variants) = variants
            && !variants.contains(variant)
        {
            errs.push(
                field,
                format!(
                    "flag `{}` has no variant `{variant}`; its variants are {}",
                    spec.flag,
                    list(variants)
                ),
            );
        }
    }
    if !spec.control.is_empty() && spec.control == spec.treatment {
        errs.push(
            "control",
            format!(
                "is `{}`, the same variant as `treatment`; a rollout moves units from the control \
                 to a different variant",
                spec.control
            ),
        );
    }
}

fn compile_phases(spec: &RolloutSpec, ctx: &PlanContext<'_>, errs: &mut Errors<'_>) -> Vec<Phase> {
    if spec.phases.is_empty() {
        errs.push(
            "phases",
            "a rollout needs at least one phase, e.g. `[[rollouts.phases]]` with name, percent \
             and duration",
        );
        return Vec::new();
    }
    let mut phases = Vec::with_capacity(spec.phases.len());
    let mut names: HashMap<&str, usize> = HashMap::new();
    // The last phase with a valid percentage, and the audience before.
    let mut previous_percent: Option<(usize, f64)> = None;
    for (i, phase) in spec.phases.iter().enumerate() {
        let at = |field: &str| format!("phases[{i}].{field}");
        if phase.name.trim().is_empty() {
            errs.push(&at("name"), "must not be empty");
        } else if let Some(first) = names.get(phase.name.as_str()) {
            errs.push(
                &at("name"),
                format!(
                    "`{}` is also the name of phases[{first}]; phase names are unique",
                    phase.name
                ),
            );
        } else {
            names.insert(&phase.name, i);
        }

        let percent = phase.percent;
        let units = if !(percent.is_finite() && percent > 0.0 && percent <= 100.0) {
            errs.push(
                &at("percent"),
                format!("is {percent}; it must be more than 0 and at most 100"),
            );
            None
        } else if let Some(units) = flags::weight_units(percent) {
            Some(units)
        } else {
            errs.push(
                &at("percent"),
                format!("is {percent}; percentages go in steps of 0.001"),
            );
            None
        };
        let percent = units.map(units_to_percent);
        if let Some(percent) = percent {
            if let Some((j, before)) = previous_percent
                && percent < before
            {
                errs.push(
                    &at("percent"),
                    format!(
                        "is {percent}, below the {before} of phases[{j}] (`{}`); percentages never \
                         decrease from phase to phase (a smaller share would take the treatment \
                         away from units that have it)",
                        spec.phases[j].name
                    ),
                );
            }
            previous_percent = Some((i, percent));
        }

        let duration_ms = match parse_duration_ms(&phase.duration) {
            Ok(ms) => Some(ms),
            Err(message) => {
                errs.push(&at("duration"), message);
                None
            }
        };

        if let Some(audience) = &phase.audience
            && !ctx.segments.contains(audience)
        {
            errs.push(
                &at("audience"),
                format!("no segment `{audience}` is defined"),
            );
        }
        if i > 0 {
            let earlier = &spec.phases[i - 1];
            let narrows = match (&earlier.audience, &phase.audience) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(a), Some(b)) => a != b,
            };
            if narrows {
                let had = earlier
                    .audience
                    .as_ref()
                    .map_or("everyone".to_owned(), |a| format!("segment `{a}`"));
                errs.push(
                    &at("audience"),
                    format!(
                        "is `{}`, but the phase before (`{}`) serves {had}; a later phase may keep \
                         its audience or drop it to reach everyone, never add or change one \
                         (units that have the treatment would lose it)",
                        phase.audience.as_deref().unwrap_or_default(),
                        earlier.name
                    ),
                );
            }
        }

        let arms = match &phase.experiment {
            None => Some(vec![(spec.treatment.clone(), 100.0)]),
            Some(key) => experiment_arms(spec, key, ctx, &at("experiment"), errs),
        };
        if let (Some(percent), Some(duration_ms), Some(arms)) = (percent, duration_ms, arms) {
            phases.push(Phase {
                name: phase.name.clone(),
                percent,
                duration_ms,
                audience: phase.audience.clone(),
                experiment: phase.experiment.clone(),
                arms,
            });
        }
    }
    phases
}

fn units_to_percent(units: u32) -> f64 {
    f64::from(units) * 100.0 / f64::from(SPLIT_UNITS)
}

/// The arms a phase's experiment serves, in percent, after checking that
/// the experiment fits the rollout.
fn experiment_arms(
    spec: &RolloutSpec,
    key: &str,
    ctx: &PlanContext<'_>,
    field: &str,
    errs: &mut Errors<'_>,
) -> Option<Vec<(String, f64)>> {
    let Some(experiment) = ctx.experiments.iter().find(|e| e.key == key) else {
        errs.push(field, format!("no experiment `{key}` is defined"));
        return None;
    };
    if experiment.flag != spec.flag {
        errs.push(
            field,
            format!(
                "experiment `{key}` is on flag `{}`; a phase's experiment must be on the \
                 rollout's flag `{}`",
                experiment.flag, spec.flag
            ),
        );
        return None;
    }
    let before = errs.out.len();
    match experiment.arms.first() {
        None => errs.push(field, format!("experiment `{key}` has no arms")),
        Some(first) if first.variant != spec.control => errs.push(
            field,
            format!(
                "experiment `{key}`'s control (its first arm) is `{}`; it must be the rollout's \
                 control `{}`",
                first.variant, spec.control
            ),
        ),
        Some(_) => {}
    }
    if !experiment.arms.is_empty() && !experiment.arms.iter().any(|a| a.variant == spec.treatment) {
        errs.push(
            field,
            format!(
                "experiment `{key}` has no arm `{}`; it must test the rollout's treatment, which \
                 the gates judge",
                spec.treatment
            ),
        );
    }
    if experiment
        .arms
        .iter()
        .any(|a| !(a.weight.is_finite() && a.weight > 0.0))
    {
        errs.push(
            field,
            format!("experiment `{key}` has an arm whose weight is not a positive number"),
        );
    }
    if errs.out.len() > before {
        return None;
    }
    let weights: Vec<f64> = experiment.arms.iter().map(|a| a.weight).collect();
    let units = split_units(&weights);
    if let Some(i) = units.iter().position(|u| *u == 0) {
        errs.push(
            field,
            format!(
                "experiment `{key}`'s arm `{}` would get less than 0.001% of the phase's units; \
                 make the weights less uneven",
                experiment.arms[i].variant
            ),
        );
        return None;
    }
    Some(
        experiment
            .arms
            .iter()
            .zip(units)
            .map(|(arm, units)| (arm.variant.clone(), units_to_percent(units)))
            .collect(),
    )
}

/// Positive weights as whole buckets summing to exactly [`SPLIT_UNITS`]:
/// each arm its floor, the remainder to the largest fractional parts (the
/// earlier arm on a tie).
fn split_units(weights: &[f64]) -> Vec<u32> {
    let total: f64 = weights.iter().sum();
    let exact: Vec<f64> = weights
        .iter()
        .map(|w| w / total * f64::from(SPLIT_UNITS))
        .collect();
    let mut units: Vec<u32> = exact.iter().map(|e| e.floor() as u32).collect();
    let assigned: u32 = units.iter().sum();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| {
        let (fa, fb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        fb.total_cmp(&fa).then(a.cmp(&b))
    });
    for &i in order
        .iter()
        .cycle()
        .take(SPLIT_UNITS.saturating_sub(assigned) as usize)
    {
        units[i] += 1;
    }
    units
}

/// What a metric kind allows: an absolute limit needs a value per unit and
/// a one-sample interval; a relative one needs the two-sample comparison.
fn kind_problem(metric: &Metric, relative: bool, gate: bool) -> Option<String> {
    match metric.kind {
        // A gate compares the treatment's share of healthy minutes with its
        // limit; a guard would need evidence, which minutes do not give.
        MetricKind::Uptime { .. } if gate => None,
        MetricKind::Uptime { .. } => Some(format!(
            "`{}` is an uptime metric, a share of minutes rather than a value per unit, with no \
             interval to fire on; make it a success criterion, and guard the error rate (a \
             ratio) instead",
            metric.key
        )),
        MetricKind::Quantile { .. } if !relative => Some(format!(
            "`{}` is a quantile metric, which has no value per unit to hold an absolute limit \
             against; compare it with the control in a guard (`max_relative_increase`)",
            metric.key
        )),
        _ => None,
    }
}

fn is_proportion(metric: &Metric) -> bool {
    matches!(
        metric.kind,
        MetricKind::Proportion { .. } | MetricKind::Retention { .. }
    )
}

/// Checks an absolute limit's value.
fn check_absolute(metric: Option<&Metric>, value: f64, field: &str, errs: &mut Errors<'_>) {
    if !value.is_finite() {
        errs.push(field, format!("is {value}; a limit is a finite number"));
    } else if let Some(metric) = metric
        && is_proportion(metric)
        && !(0.0..=1.0).contains(&value)
    {
        errs.push(
            field,
            format!(
                "is {value}; `{}` is a {} metric, a share between 0 and 1",
                metric.key,
                metric.kind.name()
            ),
        );
    }
}

fn check_min_samples(min_samples: Option<u64>, field: &str, errs: &mut Errors<'_>) -> u64 {
    match min_samples {
        Some(0) => {
            errs.push(field, "is 0; it must be at least 1");
            0
        }
        Some(n) => n,
        None => DEFAULT_MIN_SAMPLES,
    }
}

fn resolve_metric<'m>(
    metrics: &HashMap<&str, &'m Metric>,
    key: &str,
    field: &str,
    errs: &mut Errors<'_>,
) -> Option<&'m Metric> {
    let found = metrics.get(key).copied();
    if found.is_none() {
        errs.push(field, format!("no metric `{key}` is defined"));
    }
    found
}

fn compile_gates(
    spec: &RolloutSpec,
    metrics: &HashMap<&str, &Metric>,
    errs: &mut Errors<'_>,
) -> Vec<Gate> {
    let mut gates = Vec::with_capacity(spec.success.len());
    for (i, gate) in spec.success.iter().enumerate() {
        let at = |field: &str| format!("success[{i}].{field}");
        let metric = resolve_metric(metrics, &gate.metric, &at("metric"), errs);
        if let Some(problem) = metric.and_then(|m| kind_problem(m, false, true)) {
            errs.push(&at("metric"), problem);
        }
        let limit = match (gate.max, gate.min) {
            (Some(max), None) => {
                check_absolute(metric, max, &at("max"), errs);
                Some(Limit::Max(max))
            }
            (None, Some(min)) => {
                check_absolute(metric, min, &at("min"), errs);
                Some(Limit::Min(min))
            }
            (Some(_), Some(_)) => {
                errs.push(
                    &format!("success[{i}]"),
                    "has both `max` and `min`; a gate bounds one side (write two gates for a \
                     range)",
                );
                None
            }
            (None, None) => {
                errs.push(
                    &format!("success[{i}]"),
                    "has neither `max` nor `min`; give the limit the treatment's value must meet, \
                     e.g. `max = 0.01`",
                );
                None
            }
        };
        let min_samples = check_min_samples(gate.min_samples, &at("min_samples"), errs);
        if let (Some(metric), Some(limit)) = (metric, limit) {
            gates.push(Gate {
                metric: metric.clone(),
                limit,
                min_samples,
            });
        }
    }
    gates
}

fn compile_guards(
    spec: &RolloutSpec,
    metrics: &HashMap<&str, &Metric>,
    errs: &mut Errors<'_>,
) -> Vec<Guard> {
    let mut guards = Vec::with_capacity(spec.guards.len());
    for (i, guard) in spec.guards.iter().enumerate() {
        let at = |field: &str| format!("guards[{i}].{field}");
        let metric = resolve_metric(metrics, &guard.metric, &at("metric"), errs);
        let given: Vec<(&str, f64)> = [
            ("max", guard.max),
            ("min", guard.min),
            ("max_relative_increase", guard.max_relative_increase),
            ("max_relative_decrease", guard.max_relative_decrease),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect();
        let limit = match given.as_slice() {
            [(name, value)] => {
                let field = at(name);
                Some(match *name {
                    "max" => {
                        check_absolute(metric, *value, &field, errs);
                        Limit::Max(*value)
                    }
                    "min" => {
                        check_absolute(metric, *value, &field, errs);
                        Limit::Min(*value)
                    }
                    relative => {
                        if !(value.is_finite() && *value > 0.0) {
                            errs.push(
                                &field,
                                format!(
                                    "is {value}; it must be a positive fraction of the control's \
                                     value (0.2 for 20%)"
                                ),
                            );
                        }
                        if relative == "max_relative_increase" {
                            Limit::MaxRelativeIncrease(*value)
                        } else {
                            Limit::MaxRelativeDecrease(*value)
                        }
                    }
                })
            }
            [] => {
                errs.push(
                    &format!("guards[{i}]"),
                    "has no limit; give one of `max`, `min`, `max_relative_increase` or \
                     `max_relative_decrease`",
                );
                None
            }
            several => {
                let names: Vec<String> = several.iter().map(|(n, _)| format!("`{n}`")).collect();
                errs.push(
                    &format!("guards[{i}]"),
                    format!(
                        "has {}; a guard has exactly one limit (write one guard per limit)",
                        names.join(" and ")
                    ),
                );
                None
            }
        };
        if let (Some(metric), Some(limit)) = (metric, limit)
            && let Some(problem) = kind_problem(metric, limit.is_relative(), false)
        {
            errs.push(&at("metric"), problem);
        }
        let min_samples = check_min_samples(guard.min_samples, &at("min_samples"), errs);
        let weight = guard.weight.unwrap_or(1.0);
        if !(weight.is_finite() && weight > 0.0) {
            errs.push(
                &at("weight"),
                format!(
                    "is {weight}; it must be a positive share of the false-alarm budget \
                     (1 is the default, 4 is four times another guard's)"
                ),
            );
        }
        if let (Some(metric), Some(limit)) = (metric, limit) {
            guards.push(Guard {
                metric: metric.clone(),
                limit,
                action: guard.action,
                min_samples,
                weight,
                level: guard.level.unwrap_or_default(),
            });
        }
    }
    guards
}

fn list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_units_sum_to_the_whole_and_keep_proportions() {
        assert_eq!(split_units(&[1.0, 1.0, 1.0, 1.0]), vec![25_000; 4]);
        assert_eq!(split_units(&[1.0, 1.0, 1.0]), vec![33_334, 33_333, 33_333]);
        assert_eq!(split_units(&[2.0, 1.0]), vec![66_667, 33_333]);
        let units = split_units(&[0.3, 0.3, 0.4]);
        assert_eq!(units.iter().sum::<u32>(), SPLIT_UNITS);
        assert_eq!(units, vec![30_000, 30_000, 40_000]);
    }
}
