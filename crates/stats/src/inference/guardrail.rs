//! Guardrails: is the treatment making a metric worse than allowed?
//!
//! Two kinds, each a one-sided question at level α in the "worse" direction
//! (up when `higher_is_worse`, the default; down otherwise):
//!
//! - **rate** (proportion metrics, such as an error rate): is the treatment's
//!   own rate beyond the `threshold` (say 2%)? Reported with the Wilson and
//!   the exact Clopper–Pearson one-sided bounds on the treatment's rate and
//!   the exact binomial p-value of "rate ≤ threshold"; a breach is the
//!   Clopper–Pearson bound beyond the threshold. Beside it, whether the
//!   treatment is worse than the control at all: the one-sided bound of the
//!   absolute lift, fixed-horizon and sequential, beyond 0.
//! - **relative** (any metric): is the relative lift beyond `threshold`
//!   (say +20% latency)? A breach is the one-sided bound of the relative
//!   lift beyond the threshold: `breach_fixed` for a single look,
//!   `breach_sequential` for the always-valid bound that a guard checking
//!   continuously must use; `any_regression_fixed` says whether the lift is
//!   significantly worse than 0 at all.

use serde::{Deserialize, Serialize};
use statrs::distribution::{Beta, Binomial, ContinuousCDF, DiscreteCDF};

use super::lift::OneSided;
use super::outcome::Outcome;
use super::summary::ProportionSummary;

fn default_true() -> bool {
    true
}

/// What a guardrail bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardrailKind {
    /// The treatment's own rate (proportion metrics).
    Rate,
    /// The relative lift over the control.
    Relative,
}

/// A guardrail on one metric of an experiment.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Guardrail {
    #[serde(rename = "type")]
    pub kind: GuardrailKind,
    /// A rate in `[0, 1]`, or a relative lift (0.2 = 20%), non-negative.
    pub threshold: f64,
    /// Whether larger values are worse (errors, latency). Default true.
    #[serde(default = "default_true")]
    pub higher_is_worse: bool,
}

/// The verdict of a guardrail on one treatment.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum GuardrailReport {
    Rate(RateGuardrail),
    Relative(RelativeGuardrail),
}

/// A rate guardrail's verdict. Bounds are one-sided at level α.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RateGuardrail {
    /// Always [`GuardrailKind::Rate`].
    #[serde(rename = "type")]
    pub kind: GuardrailKind,
    pub threshold: f64,
    pub higher_is_worse: bool,
    /// conversions / n of the treatment.
    pub treatment_rate: f64,
    pub wilson_one_sided_lower: f64,
    pub wilson_one_sided_upper: f64,
    pub clopper_pearson_one_sided_lower: f64,
    pub clopper_pearson_one_sided_upper: f64,
    /// P(a count at least this far in the worse direction | rate =
    /// threshold): small when the rate is beyond the threshold.
    pub exact_binomial_p_value: f64,
    /// The Clopper–Pearson bound on the better side of the rate is beyond
    /// the threshold.
    pub breach_clopper_pearson: bool,
    /// One-sided bounds of the absolute lift over the control.
    pub absolute_diff_fixed_lower: Outcome<f64>,
    pub absolute_diff_fixed_upper: Outcome<f64>,
    pub absolute_diff_seq_lower: Outcome<f64>,
    pub absolute_diff_seq_upper: Outcome<f64>,
    /// The fixed-horizon bound excludes "no worse than control".
    pub regression_vs_control_fixed: Outcome<bool>,
    /// The always-valid bound excludes "no worse than control".
    pub regression_vs_control_seq: Outcome<bool>,
}

/// A relative guardrail's verdict. Bounds are one-sided at level α.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RelativeGuardrail {
    /// Always [`GuardrailKind::Relative`].
    #[serde(rename = "type")]
    pub kind: GuardrailKind,
    pub threshold: f64,
    pub higher_is_worse: bool,
    pub relative_lift: f64,
    pub fixed_lower: f64,
    pub fixed_upper: f64,
    pub seq_lower: f64,
    pub seq_upper: f64,
    /// The fixed-horizon bound is beyond the threshold.
    pub breach_fixed: bool,
    /// The always-valid bound is beyond the threshold: the verdict for a
    /// guard that looks continuously.
    pub breach_sequential: bool,
    /// The fixed-horizon bound is beyond 0.
    pub any_regression_fixed: bool,
}

/// Whether `bound` lies beyond `limit` in the worse direction.
fn beyond(bound: f64, limit: f64, higher_is_worse: bool) -> bool {
    if higher_is_worse {
        bound > limit
    } else {
        bound < limit
    }
}

/// The rate guardrail for a treatment arm (`n ≥ 1`), given the one-sided
/// bounds of its absolute lift over the control.
pub(crate) fn rate_guardrail(
    guardrail: &Guardrail,
    treatment: &ProportionSummary,
    absolute: &Outcome<OneSided>,
    alpha: f64,
    z_one_sided: f64,
) -> RateGuardrail {
    let worse_up = guardrail.higher_is_worse;
    let n = treatment.n;
    let c = treatment.conversions;
    let nf = n as f64;
    let rate = c as f64 / nf;
    let z2 = z_one_sided * z_one_sided;
    let centre = rate + z2 / (2.0 * nf);
    let spread = z_one_sided * (rate * (1.0 - rate) / nf + z2 / (4.0 * nf * nf)).sqrt();
    let scale = 1.0 + z2 / nf;
    let clopper_pearson_lower = if c == 0 {
        0.0
    } else {
        beta_quantile(c as f64, (n - c) as f64 + 1.0, alpha)
    };
    let clopper_pearson_upper = if c == n {
        1.0
    } else {
        beta_quantile(c as f64 + 1.0, (n - c) as f64, 1.0 - alpha)
    };
    let threshold = guardrail.threshold;
    let binomial = Binomial::new(threshold, n).expect("threshold checked to lie in [0, 1]");
    let exact_binomial_p_value = if worse_up {
        // P(X ≥ c)
        if c == 0 { 1.0 } else { binomial.sf(c - 1) }
    } else {
        binomial.cdf(c)
    };
    let better_side_bound = if worse_up {
        clopper_pearson_lower
    } else {
        clopper_pearson_upper
    };
    let fixed_bound = absolute.clone().map(|b| {
        if worse_up {
            b.fixed_lower
        } else {
            b.fixed_upper
        }
    });
    let seq_bound = absolute
        .clone()
        .map(|b| if worse_up { b.seq_lower } else { b.seq_upper });
    RateGuardrail {
        kind: GuardrailKind::Rate,
        threshold,
        higher_is_worse: worse_up,
        treatment_rate: rate,
        wilson_one_sided_lower: (centre - spread) / scale,
        wilson_one_sided_upper: (centre + spread) / scale,
        clopper_pearson_one_sided_lower: clopper_pearson_lower,
        clopper_pearson_one_sided_upper: clopper_pearson_upper,
        exact_binomial_p_value,
        breach_clopper_pearson: beyond(better_side_bound, threshold, worse_up),
        absolute_diff_fixed_lower: absolute.clone().map(|b| b.fixed_lower),
        absolute_diff_fixed_upper: absolute.clone().map(|b| b.fixed_upper),
        absolute_diff_seq_lower: absolute.clone().map(|b| b.seq_lower),
        absolute_diff_seq_upper: absolute.clone().map(|b| b.seq_upper),
        regression_vs_control_fixed: fixed_bound.map(|b| beyond(b, 0.0, worse_up)),
        regression_vs_control_seq: seq_bound.map(|b| beyond(b, 0.0, worse_up)),
    }
}

/// The `p`-quantile of Beta(a, b).
fn beta_quantile(a: f64, b: f64, p: f64) -> f64 {
    Beta::new(a, b)
        .expect("positive shape parameters")
        .inverse_cdf(p)
}

/// The relative guardrail, given the relative lift and its one-sided
/// bounds.
pub(crate) fn relative_guardrail(
    guardrail: &Guardrail,
    relative_lift: f64,
    bounds: &OneSided,
) -> RelativeGuardrail {
    let worse_up = guardrail.higher_is_worse;
    let (limit, fixed, seq) = if worse_up {
        (guardrail.threshold, bounds.fixed_lower, bounds.seq_lower)
    } else {
        (-guardrail.threshold, bounds.fixed_upper, bounds.seq_upper)
    };
    RelativeGuardrail {
        kind: GuardrailKind::Relative,
        threshold: guardrail.threshold,
        higher_is_worse: worse_up,
        relative_lift,
        fixed_lower: bounds.fixed_lower,
        fixed_upper: bounds.fixed_upper,
        seq_lower: bounds.seq_lower,
        seq_upper: bounds.seq_upper,
        breach_fixed: beyond(fixed, limit, worse_up),
        breach_sequential: beyond(seq, limit, worse_up),
        any_regression_fixed: beyond(fixed, 0.0, worse_up),
    }
}
