//! The analysis of one metric of an experiment: every arm against the
//! control (arm 0), with the SRM check, the corrections for the several
//! comparisons, and the probability that each arm is best.
//!
//! [`analyze`] checks its inputs ([`InputError`]) and then never fails: what
//! the data cannot support is an [`Outcome::Insufficient`] or a
//! [`LiftStatus::InsufficientData`] inside the result, with its reason.

use serde::Serialize;

use super::cuped::{CupedArm, CupedFit, cuped_fit};
use super::distributions::normal_sf;
use super::guardrail::{
    Guardrail, GuardrailKind, GuardrailReport, rate_guardrail, relative_guardrail,
};
use super::lift::{Levels, Lift, LiftInputs, lift, welch_dof};
use super::multiple_testing::{AdjustedPValues, adjust_p_values};
use super::outcome::{InsufficientData, LiftStatus, Outcome};
use super::posterior::{ArmPosterior, chance_to_beat_control, probability_best};
use super::quantile::{
    MannWhitney, QuantileEstimate, mann_whitney, quantile_estimate, quantile_refusal,
};
use super::srm::{Srm, sample_ratio_mismatch};
use super::summary::{
    CupedSummary, CupedTypes, CupedValueType, InputError, MeanSummary, ProportionSummary,
    QuantileSample, RatioSummary, mean_and_variance,
};

/// The settings of an analysis. `Default` gives the documented defaults.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct AnalysisConfig {
    /// Significance level α of every interval and test: 0.05. Two-sided
    /// intervals cover 1 − α, one-sided bounds are at α.
    pub alpha: f64,
    /// The confidence sequences' tuning parameter S: the number of units
    /// (control plus treatment) at which they are tightest. 5000.
    pub sequential_tuning: f64,
    /// SRM is declared below this p-value: 0.001.
    pub srm_threshold: f64,
    /// Standard deviation σ₀ of the proper prior N(0, σ₀²) on the relative
    /// lift: 0.3.
    pub relative_prior_sd: f64,
    /// Confidence of the Hodges–Lehmann interval: 0.98.
    pub hodges_lehmann_conf_level: f64,
    /// Compute P(best) and the beta–binomial chance to beat control, both by
    /// numerical integration: true. A caller that only reads the lifts (the
    /// rollout controller, every second) turns it off; those fields are then
    /// `None`.
    pub posteriors: bool,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        Self {
            alpha: 0.05,
            sequential_tuning: 5000.0,
            srm_threshold: 0.001,
            relative_prior_sd: 0.3,
            hodges_lehmann_conf_level: 0.98,
            posteriors: true,
        }
    }
}

impl AnalysisConfig {
    fn check(&self) -> Result<(), InputError> {
        let open_unit = |v: f64| v > 0.0 && v < 1.0;
        if !(self.alpha > 0.0 && self.alpha < 0.5) {
            return Err(InputError::InvalidConfig("alpha must lie in (0, 0.5)"));
        }
        if !(self.sequential_tuning.is_finite() && self.sequential_tuning > 0.0) {
            return Err(InputError::InvalidConfig(
                "sequential_tuning must be finite and positive",
            ));
        }
        if !open_unit(self.srm_threshold) {
            return Err(InputError::InvalidConfig(
                "srm_threshold must lie in (0, 1)",
            ));
        }
        if !(self.relative_prior_sd.is_finite() && self.relative_prior_sd > 0.0) {
            return Err(InputError::InvalidConfig(
                "relative_prior_sd must be finite and positive",
            ));
        }
        if !open_unit(self.hodges_lehmann_conf_level) {
            return Err(InputError::InvalidConfig(
                "hodges_lehmann_conf_level must lie in (0, 1)",
            ));
        }
        Ok(())
    }
}

/// One metric's data, arm by arm (arm 0 is the control).
#[derive(Clone, Debug)]
pub enum MetricData {
    Proportion(Vec<ProportionSummary>),
    Mean(Vec<MeanSummary>),
    Ratio(Vec<RatioSummary>),
    Cuped {
        types: CupedTypes,
        arms: Vec<CupedSummary>,
    },
    Quantile {
        /// The level ν (0.95 for p95).
        nu: f64,
        arms: Vec<QuantileSample>,
    },
}

impl MetricData {
    fn arm_count(&self) -> usize {
        match self {
            MetricData::Proportion(arms) => arms.len(),
            MetricData::Mean(arms) => arms.len(),
            MetricData::Ratio(arms) => arms.len(),
            MetricData::Cuped { arms, .. } => arms.len(),
            MetricData::Quantile { arms, .. } => arms.len(),
        }
    }

    fn units(&self) -> Vec<u64> {
        match self {
            MetricData::Proportion(arms) => arms.iter().map(|a| a.n).collect(),
            MetricData::Mean(arms) => arms.iter().map(|a| a.n).collect(),
            MetricData::Ratio(arms) => arms.iter().map(|a| a.n).collect(),
            MetricData::Cuped { arms, .. } => arms.iter().map(|a| a.n).collect(),
            MetricData::Quantile { arms, .. } => arms.iter().map(QuantileSample::len).collect(),
        }
    }

    fn check(&self) -> Result<(), InputError> {
        match self {
            MetricData::Proportion(arms) => {
                arms.iter().enumerate().try_for_each(|(i, a)| a.check(i))
            }
            MetricData::Mean(arms) => arms.iter().enumerate().try_for_each(|(i, a)| a.check(i)),
            MetricData::Ratio(arms) => arms.iter().enumerate().try_for_each(|(i, a)| a.check(i)),
            MetricData::Cuped { types, arms } => arms
                .iter()
                .enumerate()
                .try_for_each(|(i, a)| a.check(i, *types)),
            MetricData::Quantile { nu, .. } => {
                if *nu > 0.0 && *nu < 1.0 {
                    Ok(())
                } else {
                    Err(InputError::InvalidQuantileLevel(*nu))
                }
            }
        }
    }
}

/// What is observed of one metric of an experiment: its per-arm data, the
/// planned traffic weights (for the SRM check) and an optional guardrail.
#[derive(Clone, Debug)]
pub struct MetricObservations {
    /// Planned weight of each arm (any positive scale).
    pub weights: Vec<f64>,
    pub metric: MetricData,
    pub guardrail: Option<Guardrail>,
}

/// The analysis of one metric.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricAnalysis {
    /// Per arm; refused for an arm without units.
    pub arms: Vec<Outcome<ArmReport>>,
    pub srm: Outcome<Srm>,
    /// Arm i against the control is `comparisons[i − 1]`; refused when either
    /// arm has no units.
    pub comparisons: Vec<Outcome<Comparison>>,
    /// Holm and Benjamini–Hochberg over the comparisons' Welch p-values.
    pub multiple_testing: MultipleTesting,
    /// P(each arm is best); `None` for CUPED (θ is fitted per pair, so
    /// there is no joint posterior of all arms) and quantile metrics.
    pub prob_best: Option<ProbBest>,
}

/// One arm's summary statistics.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ArmReport {
    Plain(ArmStats),
    Cuped(CupedArmStats),
}

/// An arm's mean and unit variance.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ArmStats {
    pub n: u64,
    /// The metric: a rate, a mean, a ratio, or the quantile.
    pub mean: f64,
    /// The unit variance (across units): `p(1 − p)`, the sample variance,
    /// the delta-method variance of a ratio, or the quantile's.
    pub variance: f64,
    pub stddev: f64,
    /// The standard error of `mean`, `√(variance/n)`.
    pub se_mean: f64,
    /// For a quantile metric, how it was estimated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantile: Option<QuantileEstimate>,
}

/// An arm of a CUPED metric before adjustment (the adjustment depends on
/// the pair; see [`Comparison::cuped`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CupedArmStats {
    pub n: u64,
    pub unadjusted_mean: f64,
    pub unadjusted_variance: f64,
    pub pre_mean: f64,
    pub pre_variance: f64,
}

/// A treatment against the control.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    pub control_index: usize,
    pub treatment_index: usize,
    /// `m_T − m_C`.
    pub absolute: Lift,
    /// `(m_T − m_C)/|m_C|`.
    pub relative: Lift,
    /// CUPED metrics: the fit the lifts use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cuped: Option<CupedFit>,
    /// Proportion metrics: the classical pooled two-proportion z-test.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pooled_two_proportion_z: Option<Outcome<PooledZ>>,
    /// Proportion metrics: P(p_T > p_C) with Beta(1, 1) priors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta_binomial: Option<BetaBinomial>,
    /// Quantile metrics with exact values: rank test and shift.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mann_whitney: Option<Outcome<MannWhitney>>,
    /// When the metric has a guardrail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guardrail: Option<Outcome<GuardrailReport>>,
}

/// The pooled two-proportion z-test: `z = (p_T − p_C)/√(p̄(1 − p̄)(1/n_C +
/// 1/n_T))`, p̄ the pooled rate; two-sided p-value.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PooledZ {
    pub z: f64,
    pub p_value: f64,
}

/// The beta–binomial chance to beat control.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BetaBinomial {
    /// The prior on both rates: `"Beta(1,1)"`.
    pub prior: &'static str,
    pub chance_to_beat_control: f64,
}

/// Multiple-testing corrections over the comparisons (arm 1, 2, …).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MultipleTesting {
    pub absolute: AdjustedPValues,
    pub relative: AdjustedPValues,
}

/// P(each arm is best), by arm.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProbBest {
    /// Under flat priors: N(m_k, v_k/n_k). Refused when an arm has no units
    /// or zero variance.
    pub gaussian_flat: Outcome<Vec<f64>>,
    /// Proportion metrics: under Beta(1, 1) priors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta_uniform: Option<Vec<f64>>,
}

/// An arm reduced to what the lift formulas need.
#[derive(Clone, Copy, Debug)]
struct UnitStats {
    n: u64,
    mean: f64,
    variance: f64,
    /// Set when the arm's own estimate is not to be trusted.
    refusal: Option<InsufficientData>,
}

/// Analyses one metric of an observations. Fails only on malformed input.
pub fn analyze(
    observations: &MetricObservations,
    config: &AnalysisConfig,
) -> Result<MetricAnalysis, InputError> {
    config.check()?;
    let arm_count = observations.metric.arm_count();
    if arm_count < 2 {
        return Err(InputError::TooFewArms(arm_count));
    }
    if observations.weights.len() != arm_count {
        return Err(InputError::WeightCountMismatch {
            arms: arm_count,
            weights: observations.weights.len(),
        });
    }
    for (arm, &weight) in observations.weights.iter().enumerate() {
        if !(weight.is_finite() && weight > 0.0) {
            return Err(InputError::InvalidWeight { arm, weight });
        }
    }
    observations.metric.check()?;
    if let Some(guardrail) = &observations.guardrail {
        check_guardrail(guardrail, &observations.metric)?;
    }
    let levels = Levels::new(
        config.alpha,
        config.sequential_tuning,
        config.relative_prior_sd,
    );
    let srm = sample_ratio_mismatch(
        &observations.metric.units(),
        &observations.weights,
        config.srm_threshold,
    );
    let context = Context {
        config,
        levels: &levels,
        guardrail: observations.guardrail.as_ref(),
    };
    let (arms, comparisons, prob_best) = match &observations.metric {
        MetricData::Cuped { types, arms } => analyze_cuped(*types, arms, &context),
        metric => analyze_plain(metric, &context),
    };
    let p_values = |pick: fn(&Comparison) -> &Lift| -> Vec<Option<f64>> {
        comparisons
            .iter()
            .map(|comparison| {
                comparison
                    .value()
                    .and_then(|c| pick(c).welch_t.value().map(|w| w.p_value))
            })
            .collect()
    };
    let multiple_testing = MultipleTesting {
        absolute: adjust_p_values(&p_values(|c| &c.absolute)),
        relative: adjust_p_values(&p_values(|c| &c.relative)),
    };
    Ok(MetricAnalysis {
        arms,
        srm,
        comparisons,
        multiple_testing,
        prob_best,
    })
}

fn check_guardrail(guardrail: &Guardrail, metric: &MetricData) -> Result<(), InputError> {
    let threshold = guardrail.threshold;
    match guardrail.kind {
        GuardrailKind::Rate => {
            if !matches!(metric, MetricData::Proportion(_)) {
                return Err(InputError::RateGuardrailNeedsProportion);
            }
            if !(0.0..=1.0).contains(&threshold) {
                return Err(InputError::InvalidGuardrailThreshold(threshold));
            }
        }
        GuardrailKind::Relative => {
            if !(threshold.is_finite() && threshold >= 0.0) {
                return Err(InputError::InvalidGuardrailThreshold(threshold));
            }
        }
    }
    Ok(())
}

struct Context<'a> {
    config: &'a AnalysisConfig,
    levels: &'a Levels,
    guardrail: Option<&'a Guardrail>,
}

type Analysed = (
    Vec<Outcome<ArmReport>>,
    Vec<Outcome<Comparison>>,
    Option<ProbBest>,
);

/// Proportion, mean, ratio and quantile metrics: per-arm mean and unit
/// variance, then the common lift formulas.
fn analyze_plain(metric: &MetricData, context: &Context<'_>) -> Analysed {
    let alpha = context.config.alpha;
    let quantiles: Vec<Option<QuantileEstimate>> = match metric {
        MetricData::Quantile { nu, arms } => arms
            .iter()
            .map(|sample| quantile_estimate(sample, *nu, alpha))
            .collect(),
        _ => Vec::new(),
    };
    let stats: Vec<Outcome<UnitStats>> = (0..metric.arm_count())
        .map(|arm| {
            let stats = match metric {
                MetricData::Proportion(arms) => proportion_stats(&arms[arm]),
                MetricData::Mean(arms) => mean_stats(&arms[arm]),
                MetricData::Ratio(arms) => ratio_stats(&arms[arm]),
                MetricData::Quantile { .. } => quantiles[arm].as_ref().map(|q| UnitStats {
                    n: q.n_star,
                    mean: q.quantile_hat,
                    variance: q.variance,
                    refusal: quantile_refusal(arm, q, alpha),
                }),
                MetricData::Cuped { .. } => unreachable!("CUPED is analysed by analyze_cuped"),
            };
            match stats {
                Some(stats) => Outcome::Value(stats),
                None => Outcome::Insufficient(InsufficientData::EmptyArm { arm }),
            }
        })
        .collect();
    let arms = stats
        .iter()
        .enumerate()
        .map(|(arm, stats)| {
            stats.clone().map(|s| {
                ArmReport::Plain(ArmStats {
                    n: s.n,
                    mean: s.mean,
                    variance: s.variance,
                    stddev: s.variance.sqrt(),
                    se_mean: (s.variance / s.n as f64).sqrt(),
                    quantile: quantiles.get(arm).cloned().flatten(),
                })
            })
        })
        .collect();
    let comparisons = (1..stats.len())
        .map(|treatment| {
            let control = stats[0].clone().into_result()?;
            let treated = stats[treatment].clone().into_result()?;
            Ok(compare_plain(
                metric,
                (0, control),
                (treatment, treated),
                context,
            ))
        })
        .map(Outcome::from)
        .collect();
    let prob_best = match metric {
        _ if !context.config.posteriors => None,
        MetricData::Proportion(arms) => Some(ProbBest {
            gaussian_flat: gaussian_prob_best(&stats),
            beta_uniform: probability_best(
                &arms
                    .iter()
                    .map(ArmPosterior::uniform_prior_proportion)
                    .collect::<Vec<_>>(),
            )
            .ok(),
        }),
        MetricData::Mean(_) | MetricData::Ratio(_) => Some(ProbBest {
            gaussian_flat: gaussian_prob_best(&stats),
            beta_uniform: None,
        }),
        MetricData::Quantile { .. } | MetricData::Cuped { .. } => None,
    };
    (arms, comparisons, prob_best)
}

fn gaussian_prob_best(stats: &[Outcome<UnitStats>]) -> Outcome<Vec<f64>> {
    let mut posteriors = Vec::with_capacity(stats.len());
    for (arm, stats) in stats.iter().enumerate() {
        let stats = match stats {
            Outcome::Value(stats) => stats,
            Outcome::Insufficient(reason) => return Outcome::Insufficient(*reason),
        };
        if stats.variance <= 0.0 {
            return Outcome::Insufficient(InsufficientData::ZeroVariance { arm });
        }
        posteriors.push(ArmPosterior::flat_prior_mean(
            stats.n,
            stats.mean,
            stats.variance,
        ));
    }
    match probability_best(&posteriors) {
        Ok(p) => Outcome::Value(p),
        // Only non-finite inputs get here, which `analyze` has refused.
        Err(_) => Outcome::Insufficient(InsufficientData::ZeroStandardError),
    }
}

fn proportion_stats(arm: &ProportionSummary) -> Option<UnitStats> {
    (arm.n > 0).then(|| {
        let p = arm.conversions as f64 / arm.n as f64;
        UnitStats {
            n: arm.n,
            mean: p,
            variance: p * (1.0 - p),
            refusal: None,
        }
    })
}

fn mean_stats(arm: &MeanSummary) -> Option<UnitStats> {
    (arm.n > 0).then(|| {
        let (mean, variance) =
            mean_and_variance(CupedValueType::Mean, arm.n, arm.sum, arm.sum_squares);
        UnitStats {
            n: arm.n,
            mean,
            variance,
            refusal: None,
        }
    })
}

/// `r = S_M/S_D` and the delta-method unit variance `v_M/m_D² −
/// 2c_MD·m_M/m_D³ + m_M²v_D/m_D⁴`; both 0 when `S_D = 0` (no denominator: the
/// arm is then refused for zero variance).
fn ratio_stats(arm: &RatioSummary) -> Option<UnitStats> {
    if arm.n == 0 {
        return None;
    }
    let n = arm.n as f64;
    let kind = CupedValueType::Mean;
    let (m_num, v_num) = mean_and_variance(kind, arm.n, arm.num_sum, arm.num_sum_squares);
    let (m_den, v_den) = mean_and_variance(kind, arm.n, arm.den_sum, arm.den_sum_squares);
    let (mean, variance) = if arm.den_sum == 0.0 || m_den == 0.0 {
        (0.0, 0.0)
    } else {
        let covariance = if arm.n > 1 {
            (arm.num_den_sum_products - arm.num_sum * arm.den_sum / n) / (n - 1.0)
        } else {
            0.0
        };
        let variance = v_num / (m_den * m_den) - 2.0 * covariance * m_num / m_den.powi(3)
            + m_num * m_num * v_den / m_den.powi(4);
        (arm.num_sum / arm.den_sum, variance.max(0.0))
    };
    Some(UnitStats {
        n: arm.n,
        mean,
        variance,
        refusal: None,
    })
}

/// The first reason, in arm order, not to act on a lift between these arms.
fn arms_status(control: (usize, &UnitStats), treatment: (usize, &UnitStats)) -> LiftStatus {
    for (_, stats) in [control, treatment] {
        if let Some(reason) = stats.refusal {
            return LiftStatus::InsufficientData(reason);
        }
    }
    for (arm, stats) in [control, treatment] {
        if stats.variance <= 0.0 {
            return LiftStatus::InsufficientData(InsufficientData::ZeroVariance { arm });
        }
    }
    LiftStatus::Ok
}

fn compare_plain(
    metric: &MetricData,
    (control_index, control): (usize, UnitStats),
    (treatment_index, treatment): (usize, UnitStats),
    context: &Context<'_>,
) -> Comparison {
    let levels = context.levels;
    let absolute_status = arms_status((control_index, &control), (treatment_index, &treatment));
    let (m_c, m_t) = (control.mean, treatment.mean);
    let (n_c, n_t) = (control.n as f64, treatment.n as f64);
    let (v_c, v_t) = (control.variance, treatment.variance);
    let dof = welch_dof(
        (v_t, treatment.n),
        (v_c, control.n),
        InsufficientData::ZeroStandardError,
    );
    let units = control.n + treatment.n;
    let absolute = lift(
        LiftInputs {
            status: absolute_status,
            point: Outcome::Value((m_t - m_c, v_t / n_t + v_c / n_c)),
            welch_dof: dof.clone(),
            units,
            prior_variance: absolute_prior_variance(m_c, levels),
        },
        levels,
    );
    let relative_point = if m_c == 0.0 {
        Outcome::Insufficient(InsufficientData::ZeroBaseline)
    } else {
        let m_c2 = m_c * m_c;
        Outcome::Value((
            (m_t - m_c) / m_c.abs(),
            v_t / (m_c2 * n_t) + v_c * m_t * m_t / (m_c2 * m_c2 * n_c),
        ))
    };
    let relative = relative_lift(absolute_status, m_c, relative_point, dof, units, levels);
    let mut comparison = Comparison {
        control_index,
        treatment_index,
        absolute,
        relative,
        cuped: None,
        pooled_two_proportion_z: None,
        beta_binomial: None,
        mann_whitney: None,
        guardrail: None,
    };
    match metric {
        MetricData::Proportion(arms) => {
            let (c, t) = (&arms[control_index], &arms[treatment_index]);
            comparison.pooled_two_proportion_z = Some(pooled_z(c, t));
            comparison.beta_binomial = context.config.posteriors.then(|| BetaBinomial {
                prior: "Beta(1,1)",
                chance_to_beat_control: chance_to_beat_control(c, t),
            });
            comparison.guardrail = context.guardrail.map(|guardrail| match guardrail.kind {
                GuardrailKind::Rate => Outcome::Value(GuardrailReport::Rate(rate_guardrail(
                    guardrail,
                    t,
                    &comparison.absolute.one_sided,
                    context.config.alpha,
                    levels.z_one_sided,
                ))),
                GuardrailKind::Relative => relative_report(guardrail, &comparison.relative),
            });
        }
        MetricData::Quantile { arms, .. } => {
            let values = (
                arms[control_index].sorted_values(),
                arms[treatment_index].sorted_values(),
            );
            if let (Some(c), Some(t)) = values {
                comparison.mann_whitney =
                    Some(mann_whitney(c, t, context.config.hodges_lehmann_conf_level));
            }
            comparison.guardrail = context
                .guardrail
                .map(|guardrail| relative_report(guardrail, &comparison.relative));
        }
        _ => {
            comparison.guardrail = context
                .guardrail
                .map(|guardrail| relative_report(guardrail, &comparison.relative));
        }
    }
    comparison
}

/// The prior variance of the absolute lift: `(σ₀·m_C)²`, the relative prior
/// in the metric's units; refused when `m_C = 0`.
fn absolute_prior_variance(control_mean: f64, levels: &Levels) -> Outcome<f64> {
    if control_mean == 0.0 {
        Outcome::Insufficient(InsufficientData::ZeroBaseline)
    } else {
        Outcome::Value(levels.prior_sd * levels.prior_sd * control_mean * control_mean)
    }
}

fn relative_lift(
    absolute_status: LiftStatus,
    control_mean: f64,
    point: Outcome<(f64, f64)>,
    dof: Outcome<f64>,
    units: u64,
    levels: &Levels,
) -> Lift {
    let status = if control_mean == 0.0 {
        LiftStatus::InsufficientData(InsufficientData::ZeroBaseline)
    } else {
        absolute_status
    };
    lift(
        LiftInputs {
            status,
            point,
            welch_dof: dof,
            units,
            prior_variance: Outcome::Value(levels.prior_sd * levels.prior_sd),
        },
        levels,
    )
}

fn relative_report(guardrail: &Guardrail, relative: &Lift) -> Outcome<GuardrailReport> {
    relative.estimate.clone().and_then(|estimate| {
        relative.one_sided.clone().map(|bounds| {
            GuardrailReport::Relative(relative_guardrail(guardrail, estimate, &bounds))
        })
    })
}

fn pooled_z(control: &ProportionSummary, treatment: &ProportionSummary) -> Outcome<PooledZ> {
    let (n_c, n_t) = (control.n as f64, treatment.n as f64);
    let pooled = (control.conversions + treatment.conversions) as f64 / (n_c + n_t);
    let se = (pooled * (1.0 - pooled) * (1.0 / n_c + 1.0 / n_t)).sqrt();
    if se > 0.0 {
        let z = (treatment.conversions as f64 / n_t - control.conversions as f64 / n_c) / se;
        Outcome::Value(PooledZ {
            z,
            p_value: (2.0 * normal_sf(z.abs())).min(1.0),
        })
    } else {
        Outcome::Insufficient(InsufficientData::ZeroStandardError)
    }
}

/// CUPED: θ per control/treatment pair, then the adjusted lifts.
fn analyze_cuped(types: CupedTypes, arms: &[CupedSummary], context: &Context<'_>) -> Analysed {
    let levels = context.levels;
    let reports = arms
        .iter()
        .enumerate()
        .map(|(arm, summary)| {
            if summary.n == 0 {
                return Outcome::Insufficient(InsufficientData::EmptyArm { arm });
            }
            let (post_mean, post_variance) = mean_and_variance(
                types.post,
                summary.n,
                summary.post_sum,
                summary.post_sum_squares,
            );
            let (pre_mean, pre_variance) = mean_and_variance(
                types.pre,
                summary.n,
                summary.pre_sum,
                summary.pre_sum_squares,
            );
            Outcome::Value(ArmReport::Cuped(CupedArmStats {
                n: summary.n,
                unadjusted_mean: post_mean,
                unadjusted_variance: post_variance,
                pre_mean,
                pre_variance,
            }))
        })
        .collect();
    let comparisons = (1..arms.len())
        .map(|treatment_index| {
            let (control, treatment) = (&arms[0], &arms[treatment_index]);
            if control.n == 0 {
                return Outcome::Insufficient(InsufficientData::EmptyArm { arm: 0 });
            }
            if treatment.n == 0 {
                return Outcome::Insufficient(InsufficientData::EmptyArm {
                    arm: treatment_index,
                });
            }
            let fit = cuped_fit(types, control, treatment);
            let adjusted = |arm: &CupedArm| UnitStats {
                n: arm.n,
                mean: arm.adj_mean,
                variance: arm.adj_var,
                refusal: None,
            };
            let status = arms_status(
                (0, &adjusted(&fit.control)),
                (treatment_index, &adjusted(&fit.treatment)),
            );
            let dof = welch_dof(
                (fit.treatment.adj_var, fit.treatment.n),
                (fit.control.adj_var, fit.control.n),
                InsufficientData::ZeroStandardError,
            );
            let units = fit.control.n + fit.treatment.n;
            let base = fit.control.post_mean;
            let absolute = lift(
                LiftInputs {
                    status,
                    point: Outcome::Value(fit.absolute()),
                    welch_dof: dof.clone(),
                    units,
                    prior_variance: absolute_prior_variance(base, levels),
                },
                levels,
            );
            let relative_point = if base == 0.0 {
                Outcome::Insufficient(InsufficientData::ZeroBaseline)
            } else {
                Outcome::Value(fit.relative())
            };
            let relative = relative_lift(status, base, relative_point, dof, units, levels);
            let guardrail = context
                .guardrail
                .map(|guardrail| relative_report(guardrail, &relative));
            Outcome::Value(Comparison {
                control_index: 0,
                treatment_index,
                absolute,
                relative,
                cuped: Some(fit),
                pooled_two_proportion_z: None,
                beta_binomial: None,
                mann_whitney: None,
                guardrail,
            })
        })
        .collect();
    (reports, comparisons, None)
}
