//! Rollgate's statistics: the mergeable summaries that metrics are kept in,
//! and (later) the inference that experiments and guardrails run on them.
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
//!
//! Both merge: the summary of a union of disjoint parts is the merge of the
//! parts' summaries, in any order, which is what lets time buckets roll up and
//! several processes write the same metric. `tests/merge.rs` checks it.

pub mod metric;
mod moments;
mod sketch;

pub use metric::{
    Aggregate, MAX_METRIC_KEY_LEN, Metric, MetricError, MetricKind, MetricKindName, MetricSpec,
    Side, SideSpec, SideTable, check_metric_key, compile_metrics,
};
pub use moments::Moments;
pub use sketch::{QuantileSketch, SketchError};
