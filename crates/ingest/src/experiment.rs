//! Experiment results: each metric's per-arm data from the aggregates
//! ([`crate::arms`]), analysed by the statistics engine
//! ([`stats::inference`]) arm by arm against the control, with p-values
//! adjusted across arms × primary and secondary metrics, the sample-ratio
//! check on exposed units, and the warnings a reader must see first.
//!
//! Also the choice probabilities of an automatically selecting arm
//! (Thompson sampling): the probability that each choice is the best on the
//! experiment's metric, from its own arm's data.

use std::collections::BTreeMap;

use serde::Serialize;
use stats::inference::{
    ArmPosterior, ArmReport, Comparison, CupedSummary, CupedTypes, CupedValueType,
    InsufficientData, Lift, LiftStatus, MeanSummary, MetricData, Outcome, ProportionSummary,
    QuantileSample, RatioSummary, Srm, adjust_p_values, probability_best, sample_ratio_mismatch,
};
use stats::{
    AnalysisConfig, Correction, ExperimentSpec, Metric, MetricAnalysis, MetricKind,
    MetricObservations, QuantileSketch,
};
use store::{Store, StoreError};

use crate::arms::{ArmData, arm_data};

/// Below this many exposed units in an arm, results come with a warning that
/// they cannot say much yet.
pub const MIN_UNITS_PER_ARM: u64 = 100;
/// The sample-ratio check fails below this p-value.
pub const SRM_THRESHOLD: f64 = 0.001;

/// Everything `GET /api/v1/experiments/{key}/results` reports.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentResults {
    pub experiment: String,
    pub flag: String,
    pub environment: String,
    pub alpha: f64,
    pub sequential: bool,
    pub sequential_tuning: f64,
    pub cuped: bool,
    pub correction: Correction,
    /// Read these first: a failed SRM check, arms too small, units seen in
    /// two arms.
    pub warnings: Vec<String>,
    pub srm: SrmVerdict,
    pub arms: Vec<ArmSummary>,
    pub metrics: Vec<MetricResult>,
    /// The current choice probabilities of the automatically selecting arm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_select: Option<AutoSelection>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SrmVerdict {
    /// `ok`, `failed` or `insufficient data`.
    pub verdict: &'static str,
    /// The χ² test of exposed units against the planned weights.
    pub test: Outcome<Srm>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArmSummary {
    pub variant: String,
    /// Planned share of the experiment's units.
    pub weight: f64,
    /// Exposed units.
    pub units: u64,
    /// Of those, units also exposed to another arm (counted for their first).
    pub conflicting_units: u64,
    pub control: bool,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    pub metric: String,
    pub kind: String,
    /// `primary`, `secondary` or `guardrail`.
    pub role: &'static str,
    pub higher_is_better: bool,
    /// Whether CUPED adjusted this metric.
    pub cuped: bool,
    /// Why the metric has no comparisons, when it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub arms: Vec<ArmValue>,
    pub comparisons: Vec<ComparisonResult>,
    /// The engine's full output (field names as in the statistics oracle).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analysis: Option<MetricAnalysis>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArmValue {
    pub variant: String,
    pub units: u64,
    /// The metric's value in this arm (for CUPED metrics, unadjusted).
    pub value: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComparisonResult {
    pub variant: String,
    /// Relative lift over the control (0.1 = +10%), with its interval and
    /// p-value: sequential (always valid) when the experiment says so.
    pub relative: Option<Estimate>,
    /// Absolute difference from the control, likewise.
    pub absolute: Option<Estimate>,
    /// P(the treatment is better than the control), normal approximation with
    /// a flat prior, in the metric's good direction.
    pub chance_to_beat_control: Option<f64>,
    /// Guardrails: whether the one-sided bound shows harm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub harm_detected: Option<bool>,
    /// `better`, `worse`, `inconclusive` or `insufficient data`.
    pub verdict: &'static str,
    /// Why the data cannot support a decision, when they cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insufficient: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Estimate {
    pub estimate: f64,
    pub ci: [f64; 2],
    pub p_value: f64,
    /// Adjusted across arms × primary and secondary metrics (absent for
    /// guardrails, which are not in the family).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value_adjusted: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoSelection {
    pub arm: String,
    pub metric: String,
    /// Each choice with the probability that it is the best so far.
    pub choices: Vec<(String, f64)>,
}

/// Why results cannot be computed at all.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
}

/// The environment's compiled metrics, by key.
async fn metrics_of(
    store: &Store,
    environment: &str,
) -> Result<BTreeMap<String, Metric>, ResultsError> {
    let specs = store.load_metrics(environment).await?;
    let metrics = stats::compile_metrics(&specs).map_err(|errors| {
        ResultsError::Invalid(format!(
            "the stored metrics do not compile: {}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ))
    })?;
    Ok(metrics.into_iter().map(|m| (m.key.clone(), m)).collect())
}

/// Computes the results of an experiment from everything folded so far.
pub async fn results(
    store: &Store,
    environment: &str,
    spec: &ExperimentSpec,
) -> Result<ExperimentResults, ResultsError> {
    let metrics = metrics_of(store, environment).await?;
    let config = AnalysisConfig {
        alpha: spec.alpha,
        sequential_tuning: spec.sequential_tuning,
        ..AnalysisConfig::default()
    };
    let weights: Vec<f64> = spec.arms.iter().map(|a| a.weight).collect();
    let total_weight: f64 = weights.iter().sum();

    let mut roles: Vec<(&Metric, &'static str)> = Vec::new();
    for (keys, role) in [
        (&spec.primary_metrics, "primary"),
        (&spec.secondary_metrics, "secondary"),
        (&spec.guardrail_metrics, "guardrail"),
    ] {
        for key in keys {
            let metric = metrics.get(key).ok_or_else(|| {
                ResultsError::Invalid(format!("metric `{key}` of the experiment is not defined"))
            })?;
            roles.push((metric, role));
        }
    }

    let exposures = store.exposure_counts(environment, &spec.flag).await?;
    let arms: Vec<ArmSummary> = spec
        .arms
        .iter()
        .enumerate()
        .map(|(i, arm)| {
            let seen = exposures.iter().find(|e| e.variant == arm.variant);
            ArmSummary {
                variant: arm.variant.clone(),
                weight: arm.weight / total_weight,
                units: seen.map_or(0, |e| e.units.max(0) as u64),
                conflicting_units: seen.map_or(0, |e| e.conflicting.max(0) as u64),
                control: i == 0,
            }
        })
        .collect();
    let units: Vec<u64> = arms.iter().map(|a| a.units).collect();
    let srm = sample_ratio_mismatch(&units, &weights, SRM_THRESHOLD);
    let mut warnings = Vec::new();
    let srm_verdict = match &srm {
        Outcome::Value(test) if test.srm_detected => {
            warnings.push(format!(
                "Sample ratio mismatch: exposed units {:?} do not match the planned weights \
                 (χ² = {:.2}, p = {:.2e} < {SRM_THRESHOLD}). Assignment or exposure logging is \
                 broken somewhere; do not trust these results until it is found.",
                units, test.chi2, test.p_value
            ));
            "failed"
        }
        Outcome::Value(_) => "ok",
        Outcome::Insufficient(_) => "insufficient data",
    };
    let small: Vec<String> = arms
        .iter()
        .filter(|a| a.units < MIN_UNITS_PER_ARM)
        .map(|a| format!("{} ({} units)", a.variant, a.units))
        .collect();
    if !small.is_empty() {
        warnings.push(format!(
            "Samples are too small to say anything yet: {} (fewer than {MIN_UNITS_PER_ARM} \
             exposed units per arm).",
            small.join(", ")
        ));
    }
    let conflicting: u64 = arms.iter().map(|a| a.conflicting_units).sum();
    if conflicting > 0 {
        warnings.push(format!(
            "{conflicting} units were exposed to more than one arm; each counts for its first."
        ));
    }

    let mut results = Vec::with_capacity(roles.len());
    for (metric, role) in &roles {
        let cuped = spec.cuped && stats::experiment::cuped_supports(&metric.kind);
        let data = arm_data(store, environment, &spec.flag, metric, cuped, None).await?;
        let ordered: Vec<Option<&ArmData>> =
            spec.arms.iter().map(|a| data.get(&a.variant)).collect();
        results.push(metric_result(
            metric, role, cuped, spec, &weights, &ordered, &config,
        )?);
    }
    adjust(&mut results, spec);

    let auto_select = match &spec.auto_select {
        Some(auto) => Some(AutoSelection {
            arm: auto.arm.clone(),
            metric: auto.metric.clone(),
            choices: selection_probabilities(store, environment, spec).await?,
        }),
        None => None,
    };
    Ok(ExperimentResults {
        experiment: spec.key.clone(),
        flag: spec.flag.clone(),
        environment: environment.to_owned(),
        alpha: spec.alpha,
        sequential: spec.sequential,
        sequential_tuning: spec.sequential_tuning,
        cuped: spec.cuped,
        correction: spec.correction,
        warnings,
        srm: SrmVerdict {
            verdict: srm_verdict,
            test: srm,
        },
        arms,
        metrics: results,
        auto_select,
    })
}

/// The data of one metric in the engine's terms; `None` for kinds the
/// engine does not compare (uptime is a share of minutes, not of units).
fn metric_data(
    metric: &Metric,
    cuped: bool,
    arms: &[Option<&ArmData>],
) -> Result<Option<MetricData>, ResultsError> {
    let moments = |a: &Option<&ArmData>| a.map(|a| a.moments).unwrap_or_default();
    let cuped_summary = |a: &Option<&ArmData>| {
        let m = a.and_then(|a| a.cuped).unwrap_or_default();
        CupedSummary {
            n: m.n,
            post_sum: m.sum_x,
            post_sum_squares: m.sum_x2,
            pre_sum: m.sum_y,
            pre_sum_squares: m.sum_y2,
            post_pre_sum_products: m.sum_xy,
        }
    };
    let cuped_data = |kind: CupedValueType| MetricData::Cuped {
        types: CupedTypes {
            post: kind,
            pre: kind,
        },
        arms: arms.iter().map(cuped_summary).collect(),
    };
    Ok(Some(match &metric.kind {
        MetricKind::Proportion { .. } | MetricKind::Retention { .. } if cuped => {
            cuped_data(CupedValueType::Proportion)
        }
        MetricKind::Proportion { .. } | MetricKind::Retention { .. } => MetricData::Proportion(
            arms.iter()
                .map(|a| ProportionSummary {
                    n: a.map_or(0, |a| a.units),
                    conversions: a.map_or(0, |a| a.active.min(a.units)),
                })
                .collect(),
        ),
        MetricKind::Mean { .. } | MetricKind::Count { .. } if cuped => {
            cuped_data(CupedValueType::Mean)
        }
        MetricKind::Mean { .. } | MetricKind::Count { .. } => MetricData::Mean(
            arms.iter()
                .map(|a| MeanSummary::from(&moments(a)))
                .collect(),
        ),
        MetricKind::Ratio { .. } | MetricKind::Gauge { .. } => MetricData::Ratio(
            arms.iter()
                .map(|a| RatioSummary::from(&moments(a)))
                .collect(),
        ),
        MetricKind::Quantile { q, .. } => MetricData::Quantile {
            nu: *q,
            arms: arms
                .iter()
                .map(|a| {
                    QuantileSample::from_sketch(
                        a.and_then(|a| a.sketch.clone())
                            .unwrap_or_else(QuantileSketch::new),
                    )
                })
                .collect(),
        },
        MetricKind::Uptime { .. } => return Ok(None),
    }))
}

fn metric_result(
    metric: &Metric,
    role: &'static str,
    cuped: bool,
    spec: &ExperimentSpec,
    weights: &[f64],
    arms: &[Option<&ArmData>],
    config: &AnalysisConfig,
) -> Result<MetricResult, ResultsError> {
    let mut result = MetricResult {
        metric: metric.key.clone(),
        kind: metric.kind.name().to_string(),
        role,
        higher_is_better: metric.higher_is_better,
        cuped,
        note: None,
        arms: Vec::new(),
        comparisons: Vec::new(),
        analysis: None,
    };
    let Some(data) = metric_data(metric, cuped, arms)? else {
        result.note = Some(
            "uptime is a share of minutes, not a value per unit: it is shown per arm but not \
             tested"
                .into(),
        );
        result.arms = spec
            .arms
            .iter()
            .zip(arms)
            .map(|(arm, data)| ArmValue {
                variant: arm.variant.clone(),
                units: data.map_or(0, |d| d.units),
                value: None,
            })
            .collect();
        return Ok(result);
    };
    let observations = MetricObservations {
        weights: weights.to_vec(),
        metric: data,
        guardrail: None,
    };
    let analysis = stats::analyze(&observations, config)
        .map_err(|e| ResultsError::Invalid(format!("metric `{}`: {e}", metric.key)))?;
    result.arms = spec
        .arms
        .iter()
        .zip(arms)
        .zip(&analysis.arms)
        .map(|((arm, data), report)| ArmValue {
            variant: arm.variant.clone(),
            units: data.map_or(0, |d| d.units),
            value: match report {
                Outcome::Value(ArmReport::Plain(stats)) => Some(stats.mean),
                Outcome::Value(ArmReport::Cuped(stats)) => Some(stats.unadjusted_mean),
                Outcome::Insufficient(_) => None,
            },
        })
        .collect();
    let guardrail = role == "guardrail";
    result.comparisons = spec
        .arms
        .iter()
        .skip(1)
        .zip(&analysis.comparisons)
        .map(|(arm, comparison)| {
            compare(
                &arm.variant,
                comparison,
                metric.higher_is_better,
                spec.sequential,
                guardrail,
            )
        })
        .collect();
    result.analysis = Some(analysis);
    Ok(result)
}

/// The interval and p-value a reader decides on: the confidence sequence's
/// when the experiment is sequential, Welch's otherwise.
fn estimate(lift: &Lift, sequential: bool) -> Option<Estimate> {
    let estimate = *lift.estimate.value()?;
    let (ci, p_value) = if sequential {
        let s = lift.sequential.value()?;
        (s.ci, s.p_value)
    } else {
        let t = lift.welch_t.value()?;
        (t.ci, t.p_value)
    };
    Some(Estimate {
        estimate,
        ci,
        p_value,
        p_value_adjusted: None,
    })
}

fn reason(insufficient: &InsufficientData) -> String {
    match insufficient {
        InsufficientData::NoUnits => "no units yet".into(),
        InsufficientData::EmptyArm { arm } => format!("arm {arm} has no units yet"),
        InsufficientData::ZeroVariance { arm } => {
            format!("the metric does not vary across the units of arm {arm} yet")
        }
        InsufficientData::ZeroBaseline => {
            "the control's value is 0, so a relative lift is undefined".into()
        }
        InsufficientData::ZeroStandardError => "the estimate has no variance yet".into(),
        InsufficientData::TooFewUnitsForQuantile { arm, n, min_units } => {
            format!("arm {arm} has {n} values; the quantile's interval needs at least {min_units}")
        }
    }
}

fn compare(
    variant: &str,
    comparison: &Outcome<Comparison>,
    higher_is_better: bool,
    sequential: bool,
    guardrail: bool,
) -> ComparisonResult {
    let mut out = ComparisonResult {
        variant: variant.to_owned(),
        relative: None,
        absolute: None,
        chance_to_beat_control: None,
        harm_detected: None,
        verdict: "insufficient data",
        insufficient: None,
    };
    let comparison = match comparison {
        Outcome::Value(c) => c,
        Outcome::Insufficient(why) => {
            out.insufficient = Some(reason(why));
            return out;
        }
    };
    out.relative = estimate(&comparison.relative, sequential);
    out.absolute = estimate(&comparison.absolute, sequential);
    out.chance_to_beat_control = comparison.absolute.bayes_flat.value().map(|b| {
        if higher_is_better {
            b.chance_to_win
        } else {
            1.0 - b.chance_to_win
        }
    });
    // The relative lift decides; where it is refused (a control of 0), the
    // absolute one does.
    let (lift, decided) = match (&comparison.relative.status, &out.relative) {
        (LiftStatus::Ok, Some(_)) => (&comparison.relative, out.relative.as_ref()),
        _ => (&comparison.absolute, out.absolute.as_ref()),
    };
    if let LiftStatus::InsufficientData(why) = &lift.status {
        out.insufficient = Some(reason(why));
        return out;
    }
    let Some(decided) = decided else {
        out.insufficient = Some("the comparison is not defined yet".into());
        return out;
    };
    if guardrail {
        // One-sided for harm: the bound on the good side already lies on the
        // bad side of 0.
        let harm = lift.one_sided.value().map(|b| {
            let (lower, upper) = if sequential {
                (b.seq_lower, b.seq_upper)
            } else {
                (b.fixed_lower, b.fixed_upper)
            };
            if higher_is_better {
                upper < 0.0
            } else {
                lower > 0.0
            }
        });
        out.harm_detected = harm;
        out.verdict = match harm {
            Some(true) => "worse",
            Some(false) => "inconclusive",
            None => "insufficient data",
        };
        return out;
    }
    out.verdict = direction(decided.ci, higher_is_better);
    out
}

/// `better` or `worse` when the interval excludes 0, else `inconclusive`.
fn direction(ci: [f64; 2], higher_is_better: bool) -> &'static str {
    let up = ci[0] > 0.0;
    let down = ci[1] < 0.0;
    match (up, down, higher_is_better) {
        (true, _, true) | (_, true, false) => "better",
        (true, _, false) | (_, true, true) => "worse",
        _ => "inconclusive",
    }
}

/// Adjusts the p-values of the primary and secondary metrics together
/// (arms × metrics) and re-decides on the adjusted ones: a comparison is
/// better or worse only when its adjusted p-value is below α.
fn adjust(results: &mut [MetricResult], spec: &ExperimentSpec) {
    let mut family: Vec<(usize, usize, bool)> = Vec::new();
    let mut raw = Vec::new();
    for (m, result) in results.iter().enumerate() {
        if result.role == "guardrail" {
            continue;
        }
        for (c, comparison) in result.comparisons.iter().enumerate() {
            let relative = comparison.relative.is_some();
            let decided = comparison
                .relative
                .as_ref()
                .or(comparison.absolute.as_ref());
            if let Some(estimate) = decided {
                family.push((m, c, relative));
                raw.push(Some(estimate.p_value));
            }
        }
    }
    let adjusted = adjust_p_values(&raw);
    let chosen = match spec.correction {
        Correction::Holm => adjusted.holm,
        Correction::BenjaminiHochberg => adjusted.benjamini_hochberg,
    };
    for ((m, c, relative), p) in family.into_iter().zip(chosen) {
        let higher_is_better = results[m].higher_is_better;
        let comparison = &mut results[m].comparisons[c];
        let estimate = if relative {
            comparison.relative.as_mut()
        } else {
            comparison.absolute.as_mut()
        };
        if let Some(estimate) = estimate {
            estimate.p_value_adjusted = p;
            if comparison.verdict != "insufficient data" {
                comparison.verdict = match p {
                    Some(p) if p < spec.alpha => direction(estimate.ci, higher_is_better),
                    _ => "inconclusive",
                };
            }
        }
    }
}

/// The probability that each of the automatically selecting arm's choices
/// is the best on its metric, from the choices' own arms: Beta posteriors
/// (uniform prior) for proportions, normal ones (flat prior) otherwise.
/// Equal while any choice lacks the data for a posterior.
pub async fn selection_probabilities(
    store: &Store,
    environment: &str,
    spec: &ExperimentSpec,
) -> Result<Vec<(String, f64)>, StoreError> {
    let Some(auto) = &spec.auto_select else {
        return Ok(Vec::new());
    };
    let equal = || {
        let share = 1.0 / auto.among.len().max(1) as f64;
        auto.among.iter().map(|v| (v.clone(), share)).collect()
    };
    let specs = store.load_metrics(environment).await?;
    let Some(metric) = stats::compile_metrics(&specs)
        .ok()
        .and_then(|ms| ms.into_iter().find(|m| m.key == auto.metric))
    else {
        return Ok(equal());
    };
    let data = arm_data(store, environment, &spec.flag, &metric, false, None).await?;
    let sign = if metric.higher_is_better { 1.0 } else { -1.0 };
    let mut posteriors = Vec::with_capacity(auto.among.len());
    for variant in &auto.among {
        let Some(arm) = data.get(variant) else {
            return Ok(equal());
        };
        let posterior = match &metric.kind {
            MetricKind::Proportion { .. } | MetricKind::Retention { .. }
                if metric.higher_is_better =>
            {
                ArmPosterior::uniform_prior_proportion(&ProportionSummary {
                    n: arm.units,
                    conversions: arm.active.min(arm.units),
                })
            }
            MetricKind::Proportion { .. } | MetricKind::Retention { .. } => {
                let n = arm.units as f64;
                let p = (arm.active.min(arm.units) as f64 + 1.0) / (n + 2.0);
                ArmPosterior::Normal {
                    mean: -p,
                    sd: (p * (1.0 - p) / (n + 3.0)).sqrt(),
                }
            }
            MetricKind::Ratio { .. } | MetricKind::Gauge { .. } => {
                match (arm.moments.ratio(), arm.moments.ratio_variance()) {
                    (Some(mean), Some(v)) if v > 0.0 => ArmPosterior::Normal {
                        mean: sign * mean,
                        sd: v.sqrt(),
                    },
                    _ => return Ok(equal()),
                }
            }
            _ => match (arm.moments.mean_x(), arm.moments.mean_x_variance()) {
                (Some(mean), Some(v)) if v > 0.0 => ArmPosterior::Normal {
                    mean: sign * mean,
                    sd: v.sqrt(),
                },
                _ => return Ok(equal()),
            },
        };
        posteriors.push(posterior);
    }
    Ok(match probability_best(&posteriors) {
        Ok(p) if p.iter().all(|x| x.is_finite() && *x >= 0.0) => {
            auto.among.iter().cloned().zip(p).collect()
        }
        _ => equal(),
    })
}
