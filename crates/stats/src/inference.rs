//! The inference engine: from per-arm summaries to lifts with intervals,
//! tests, posteriors and guardrail verdicts.
//!
//! Entry point: [`analyze`] takes the [`MetricObservations`] of one metric
//! of an experiment — a summary per arm ([`ProportionSummary`], [`MeanSummary`],
//! [`RatioSummary`], [`CupedSummary`], or a [`QuantileSample`]) and the
//! planned weights — and returns a [`MetricAnalysis`]: per-arm
//! statistics, the SRM check, each treatment against the control (arm 0)
//! as absolute and relative [`Lift`]s, the CUPED fit, the beta–binomial
//! chance to beat control, Mann–Whitney, guardrails, Holm and
//! Benjamini–Hochberg corrections, and P(best). The pieces are public too:
//! [`adjust_p_values`] for corrections across arms × metrics,
//! [`probability_best`] and [`thompson_choose`] for bandits,
//! [`sample_ratio_mismatch`], [`mann_whitney`], the t distribution.
//!
//! The formulas follow `../shared/oracle/README.md`, and `tests/oracle.rs`
//! checks every number against its reference cases.
//!
//! Refusals: malformed input is an [`InputError`]; data too thin for a
//! statistic give [`Outcome::Insufficient`] (no number) or
//! [`LiftStatus::InsufficientData`] (numbers reported, not to be acted on),
//! each with an [`InsufficientData`] reason. Never NaN, never a panic.

mod analysis;
mod cuped;
mod distributions;
mod guardrail;
mod lift;
mod multiple_testing;
mod outcome;
mod posterior;
mod quadrature;
mod quantile;
mod srm;
mod summary;

pub use analysis::{
    AnalysisConfig, ArmReport, ArmStats, BetaBinomial, Comparison, CupedArmStats, MetricAnalysis,
    MetricData, MetricObservations, MultipleTesting, PooledZ, ProbBest, analyze,
};
pub use cuped::{CupedArm, CupedFit, cuped_fit};
pub use distributions::{
    normal_cdf, normal_quantile, normal_sf, students_t_quantile, students_t_sf,
};
pub use guardrail::{Guardrail, GuardrailKind, GuardrailReport, RateGuardrail, RelativeGuardrail};
pub use lift::{BayesFlat, BayesPrior, Lift, OneSided, Sequential, WelchT, ZTest};
pub use multiple_testing::{AdjustedPValues, adjust_p_values};
pub use outcome::{InsufficientData, LiftStatus, Outcome};
pub use posterior::{ArmPosterior, chance_to_beat_control, probability_best, thompson_choose};
pub use quantile::{
    BinomialInterval, MannWhitney, QuantileEstimate, mann_whitney, quantile_estimate,
};
pub use srm::{Srm, sample_ratio_mismatch};
pub use summary::{
    CupedSummary, CupedTypes, CupedValueType, InputError, MeanSummary, ProportionSummary,
    QuantileSample, RatioSummary,
};
