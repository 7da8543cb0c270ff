//! Rollgate's statistics: the mergeable summaries that metrics are kept in,
//! and the inference that experiments and guardrails run on them.
//!
//! Architecture invariant: this crate does no IO, reads no clock and draws no
//! random numbers; where randomness is needed, a seed comes in as an argument.
//! `tests/tidy.rs` enforces it.
//!
//! What is here:
//! - [`Moments`]: per-variant power sums across randomization units (n, Σx,
//!   Σx², Σy, Σy², Σxy), with means, sample variances and the delta-method
//!   variance of a ratio metric.
//! - [`QuantileSketch`]: a DDSketch with 1% relative error, mergeable and
//!   storable as bytes.
//! - [`metric`]: the metric definitions users write, and their validation.
//! - [`inference`]: the analysis of an experiment's metric from per-arm
//!   summaries — absolute and relative lifts with Welch, z, always-valid
//!   (sequential) and Bayesian intervals, CUPED, quantiles, SRM, guardrails,
//!   multiple-testing corrections, P(best) and Thompson sampling — with
//!   typed refusals where the data cannot support a number. Checked against
//!   the reference cases in `../shared/oracle/` by `tests/oracle.rs`.
//! - [`experiment`]: experiment definitions (arms, metrics, analysis
//!   settings), checked against the flags and metrics they name.
//!
//! Both merge: the summary of a union of disjoint parts is the merge of the
//! parts' summaries, in any order, which is what lets time buckets roll up and
//! several processes write the same metric. `tests/merge.rs` checks it.

pub mod experiment;
pub mod inference;
pub mod metric;
mod moments;
mod sketch;

pub use experiment::{
    ArmSpec, AutoSelectSpec, Correction, Experiment, ExperimentSpec, FlagView, compile_experiments,
};
pub use inference::{AnalysisConfig, MetricAnalysis, MetricObservations, analyze};
pub use metric::{
    Aggregate, MAX_METRIC_KEY_LEN, Metric, MetricError, MetricKind, MetricKindName, MetricSpec,
    Side, SideSpec, SideTable, check_metric_key, compile_metrics,
};
pub use moments::Moments;
pub use sketch::{QuantileSketch, SketchError};
