//! Experiment definitions: which flag's variants are compared, with what
//! planned weights, on which metrics, and how they are analysed.
//!
//! An experiment does not assign units itself: the flag does, with a split
//! (and, while the release grows, a `rollout` of that split). The experiment
//! names the split's variants as its arms, in the split's order, with the
//! same relative weights, so that the sample-ratio check compares the units
//! actually seen with the weights actually served. [`compile_experiments`]
//! checks that correspondence against a [`FlagView`] of each flag.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::metric::{Errors, Metric, MetricError, MetricKind, check_metric_key};

/// The fewest and the most arms an experiment has.
pub const MIN_ARMS: usize = 2;
pub const MAX_ARMS: usize = 8;
/// The significance level when none is given.
pub const DEFAULT_ALPHA: f64 = 0.05;

/// One experiment as written in a config file (`[[experiments]]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    pub key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The flag whose variants are the arms.
    pub flag: String,
    /// The arms, control first: each a variant of the flag with its planned
    /// weight (any positive numbers; only their proportions matter).
    pub arms: Vec<ArmSpec>,
    /// The metrics the experiment is run to move. With the secondary metrics
    /// they form the multiple-testing family (arms × metrics).
    pub primary_metrics: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secondary_metrics: Vec<String>,
    /// Metrics that must not get worse; tested one-sided on their own, left
    /// out of the multiple-testing family.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guardrail_metrics: Vec<String>,
    /// Two-sided significance level, in (0, 0.5).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Report always-valid (sequential) intervals and p-values, so that the
    /// results may be looked at any time without inflating false positives.
    #[serde(default)]
    pub sequential: bool,
    /// The confidence sequences' tuning parameter S: the number of units
    /// (control plus treatment) at which they are tightest; set it near the
    /// sample size at which a decision is expected. Valid at every look
    /// whatever its value.
    #[serde(default = "default_sequential_tuning")]
    pub sequential_tuning: f64,
    /// Reduce variance with CUPED, using each unit's value of the same metric
    /// before its first exposure to the flag as the covariate. Applies to
    /// `mean`, `count` and `proportion` metrics.
    #[serde(default)]
    pub cuped: bool,
    /// How p-values are adjusted across arms × primary and secondary metrics.
    #[serde(default)]
    pub correction: Correction,
    /// Thompson sampling inside one arm (the seed's "automatic model
    /// selection" group): that arm's units are served one of `among`,
    /// chosen with the probability that it is the best on `metric`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_select: Option<AutoSelectSpec>,
}

fn default_alpha() -> f64 {
    DEFAULT_ALPHA
}

/// The sequential tuning parameter when none is given.
pub const DEFAULT_SEQUENTIAL_TUNING: f64 = 5000.0;

fn default_sequential_tuning() -> f64 {
    DEFAULT_SEQUENTIAL_TUNING
}

/// An arm: a variant of the flag and its planned weight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArmSpec {
    pub variant: String,
    pub weight: f64,
}

/// The multiple-testing adjustment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Correction {
    /// Holm's step-down: controls the family-wise error rate.
    #[default]
    Holm,
    /// Benjamini–Hochberg: controls the false discovery rate.
    BenjaminiHochberg,
}

/// Thompson sampling inside one arm.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoSelectSpec {
    /// The arm whose units are served a chosen variant (e.g. `auto`). The
    /// arm keeps its planned weight, so the comparison of arms and the
    /// sample-ratio check stay valid.
    pub arm: String,
    /// The variants to choose among: other arms of the experiment, whose
    /// own data measures them (e.g. `simple`, `advanced`).
    pub among: Vec<String>,
    /// The metric that decides; one of the experiment's metrics.
    pub metric: String,
}

/// What an experiment needs to know of its flag.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlagView {
    /// The flag's variant names.
    pub variants: Vec<String>,
    /// Every split the flag serves (default and rules): variant → weight in
    /// percent, in the declared order.
    pub splits: Vec<Vec<(String, f64)>>,
}

/// A checked experiment: the spec, with its metrics resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Experiment {
    pub spec: ExperimentSpec,
    /// The primary and secondary metrics, in that order.
    pub tested: Vec<Metric>,
    pub guardrails: Vec<Metric>,
}

impl Experiment {
    /// The planned weights, normalised to sum to 1, in arm order.
    pub fn weights(&self) -> Vec<f64> {
        let total: f64 = self.spec.arms.iter().map(|a| a.weight).sum();
        self.spec.arms.iter().map(|a| a.weight / total).collect()
    }

    /// Whether the experiment applies CUPED to `metric`.
    pub fn cuped_applies(&self, metric: &Metric) -> bool {
        self.spec.cuped && cuped_supports(&metric.kind)
    }
}

/// Whether CUPED can adjust a metric of this kind (per-unit values with a
/// pre-exposure counterpart of the same kind).
pub fn cuped_supports(kind: &MetricKind) -> bool {
    matches!(
        kind,
        MetricKind::Mean { .. } | MetricKind::Count { .. } | MetricKind::Proportion { .. }
    )
}

/// Checks experiment definitions against the flags and metrics they name.
/// All or nothing: every problem is reported, naming the experiment, the
/// field and what is wrong.
pub fn compile_experiments(
    specs: &[ExperimentSpec],
    flags: &HashMap<String, FlagView>,
    metrics: &[Metric],
) -> Result<Vec<Experiment>, Vec<MetricError>> {
    let mut errors = Vec::new();
    let mut out = Vec::with_capacity(specs.len());
    let mut keys = HashSet::new();
    for (i, spec) in specs.iter().enumerate() {
        let mut errs = Errors {
            subject: format!("experiment `{}`", spec.key),
            out: &mut errors,
        };
        if let Err(message) = check_metric_key(&spec.key) {
            errs.subject = format!("experiments[{i}]");
            errs.push("key", message);
            continue;
        }
        if !keys.insert(spec.key.as_str()) {
            errs.push("key", "is defined twice");
            continue;
        }
        if let Some(experiment) = compile_experiment(spec, flags, metrics, &mut errs) {
            out.push(experiment);
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn compile_experiment(
    spec: &ExperimentSpec,
    flags: &HashMap<String, FlagView>,
    metrics: &[Metric],
    errs: &mut Errors<'_>,
) -> Option<Experiment> {
    let before = errs.out.len();
    check_arms(spec, flags.get(&spec.flag), errs);
    if !(spec.alpha > 0.0 && spec.alpha < 0.5) {
        errs.push(
            "alpha",
            format!("{} must be between 0 and 0.5 (e.g. 0.05)", spec.alpha),
        );
    }
    if !(spec.sequential_tuning.is_finite() && spec.sequential_tuning >= 1.0) {
        errs.push(
            "sequential_tuning",
            format!(
                "{} must be a number of units, at least 1 (e.g. the planned sample size)",
                spec.sequential_tuning
            ),
        );
    }
    if spec.primary_metrics.is_empty() {
        errs.push(
            "primary_metrics",
            "name at least one metric the experiment is run to move",
        );
    }
    let by_key: HashMap<&str, &Metric> = metrics.iter().map(|m| (m.key.as_str(), m)).collect();
    let mut seen = HashSet::new();
    let mut resolve = |field: &str, keys: &[String], errs: &mut Errors<'_>| -> Vec<Metric> {
        let mut found = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let at = format!("{field}[{i}]");
            if !seen.insert(key.clone()) {
                errs.push(&at, format!("metric `{key}` is listed twice"));
            } else if let Some(metric) = by_key.get(key.as_str()) {
                found.push((*metric).clone());
            } else {
                errs.push(&at, format!("no metric `{key}` is defined"));
            }
        }
        found
    };
    let mut tested = resolve("primary_metrics", &spec.primary_metrics, errs);
    tested.extend(resolve("secondary_metrics", &spec.secondary_metrics, errs));
    let guardrails = resolve("guardrail_metrics", &spec.guardrail_metrics, errs);
    if let Some(auto) = &spec.auto_select {
        check_auto_select(spec, auto, errs);
    }
    (errs.out.len() == before).then(|| Experiment {
        spec: spec.clone(),
        tested,
        guardrails,
    })
}

fn check_arms(spec: &ExperimentSpec, flag: Option<&FlagView>, errs: &mut Errors<'_>) {
    let arms = &spec.arms;
    if !(MIN_ARMS..=MAX_ARMS).contains(&arms.len()) {
        errs.push(
            "arms",
            format!(
                "has {} arms; an experiment has {MIN_ARMS} to {MAX_ARMS}, control first",
                arms.len()
            ),
        );
    }
    let mut variants = HashSet::new();
    for (i, arm) in arms.iter().enumerate() {
        if !(arm.weight.is_finite() && arm.weight > 0.0) {
            errs.push(
                &format!("arms[{i}].weight"),
                format!("{} must be a positive number", arm.weight),
            );
        }
        if !variants.insert(arm.variant.as_str()) {
            errs.push(
                &format!("arms[{i}].variant"),
                format!("variant `{}` is an arm twice", arm.variant),
            );
        }
    }
    let Some(flag) = flag else {
        errs.push("flag", format!("no flag `{}` is defined", spec.flag));
        return;
    };
    let mut unknown = false;
    for (i, arm) in arms.iter().enumerate() {
        if !flag.variants.contains(&arm.variant) {
            unknown = true;
            errs.push(
                &format!("arms[{i}].variant"),
                format!(
                    "flag `{}` has no variant `{}`; its variants are {}",
                    spec.flag,
                    arm.variant,
                    list(&flag.variants)
                ),
            );
        }
    }
    if unknown || arms.len() < MIN_ARMS {
        return;
    }
    if !flag.splits.iter().any(|split| serves_arms(split, arms)) {
        errs.push(
            "arms",
            format!(
                "flag `{}` has no split that serves exactly these arms in this order with these \
                 relative weights ({}); give the flag a split such as `split = {{ {} }}`",
                spec.flag,
                arms.iter()
                    .map(|a| format!("{} {}", a.variant, a.weight))
                    .collect::<Vec<_>>()
                    .join(", "),
                suggested_split(arms)
            ),
        );
    }
}

/// Whether a split's nonzero arms are `arms`, in order, with proportional
/// weights.
fn serves_arms(split: &[(String, f64)], arms: &[ArmSpec]) -> bool {
    let served: Vec<&(String, f64)> = split.iter().filter(|(_, w)| *w > 0.0).collect();
    if served.len() != arms.len() {
        return false;
    }
    let split_total: f64 = served.iter().map(|(_, w)| w).sum();
    let arm_total: f64 = arms.iter().map(|a| a.weight).sum();
    served.iter().zip(arms).all(|((variant, w), arm)| {
        *variant == arm.variant && (w / split_total - arm.weight / arm_total).abs() < 1e-6
    })
}

/// A split with the arms' proportions in percent (to 0.001).
fn suggested_split(arms: &[ArmSpec]) -> String {
    let total: f64 = arms.iter().map(|a| a.weight).sum();
    arms.iter()
        .map(|a| {
            let percent = (a.weight / total * 100_000.0).round() / 1000.0;
            format!("{} = {percent}", quoted_key(&a.variant))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn quoted_key(key: &str) -> String {
    if key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

fn check_auto_select(spec: &ExperimentSpec, auto: &AutoSelectSpec, errs: &mut Errors<'_>) {
    let arm_names: Vec<String> = spec.arms.iter().map(|a| a.variant.clone()).collect();
    if !arm_names.contains(&auto.arm) {
        errs.push(
            "auto_select.arm",
            format!(
                "`{}` is not an arm of the experiment; its arms are {}",
                auto.arm,
                list(&arm_names)
            ),
        );
    }
    if auto.among.len() < 2 {
        errs.push(
            "auto_select.among",
            "name at least two arms to choose among",
        );
    }
    let mut seen = HashSet::new();
    for (i, variant) in auto.among.iter().enumerate() {
        let at = format!("auto_select.among[{i}]");
        if *variant == auto.arm {
            errs.push(&at, "the selecting arm cannot choose itself");
        } else if !arm_names.contains(variant) {
            errs.push(
                &at,
                format!(
                    "`{variant}` is not an arm of the experiment; its arms are {}",
                    list(&arm_names)
                ),
            );
        } else if !seen.insert(variant) {
            errs.push(&at, format!("`{variant}` is listed twice"));
        }
    }
    let tested = spec
        .primary_metrics
        .iter()
        .chain(&spec.secondary_metrics)
        .chain(&spec.guardrail_metrics);
    if !tested.clone().any(|m| *m == auto.metric) {
        errs.push(
            "auto_select.metric",
            format!("`{}` is not one of the experiment's metrics", auto.metric),
        );
    }
}

fn list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
