//! The lift of a treatment over the control, and every interval and test
//! reported for it.
//!
//! One [`Lift`] is built from an estimate `Δ` with variance `V = se²` (its
//! Welch degrees of freedom `ν`, the units `N = n_C + n_T` behind it, and the
//! variance of a prior on it) whether `Δ` is the absolute lift `m_T − m_C` or
//! the relative lift `(m_T − m_C)/|m_C|`, so both get the same blocks:
//!
//! - `welch_t`: `t = Δ/se`, `Δ ± t₍₁₋α/₂, ν₎·se`, `p = 2·P(T_ν > |t|)`.
//!   The fixed-horizon test: valid only if looked at once, at a sample size
//!   fixed in advance.
//! - `z`: the same with the normal distribution.
//! - `sequential`: the always-valid confidence sequence of the normal mixture
//!   (equivalently mSPRT): with mixing variance `ρ² = (−2 ln α + ln(1 − 2 ln
//!   α))/S`, the half-width is `√(V·N)·√(2(Nρ² + 1)/(N²ρ²)·ln(√(Nρ² + 1)/α))`
//!   and the p-value `min(1, 1/E)` with `ln E = ρ²NΔ²/(2V(Nρ² + 1)) −
//!   ½ln(Nρ² + 1)`. The interval covers the true lift at every sample size
//!   simultaneously with probability 1 − α, so a guard may look after every
//!   batch of data without inflating its false alarms. The tuning parameter
//!   `S` ([`AnalysisConfig::sequential_tuning`](super::AnalysisConfig)) is the
//!   number of units at which the sequence is tightest: smaller `S` tightens
//!   it early and loosens it late. Default 5000.
//! - `one_sided`: one-sided bounds at level α: `Δ ∓ t₍₁₋α, ν₎·se` (fixed
//!   horizon) and the one-sided confidence sequence (ρ₁² from 2α,
//!   half-width `√(V·N·2(Nρ₁² + 1)/(N²ρ₁²)·ln(1 + √(Nρ₁² + 1)/(2α)))`).
//!   Guardrails test these.
//! - `bayes_flat`: the posterior under an improper flat prior, `N(Δ, se²)`.
//! - `bayes_prior`: the posterior under the proper prior `N(0, σ₀²)`, with
//!   `σ₀ = 0.3` on the relative lift (a lift beyond ±60% is a priori
//!   unlikely), and `σ₀ = 0.3·|m_C|` on the absolute lift, the same prior in
//!   the metric's units. Precisions add: `1/σ² = 1/σ₀² + 1/se²`,
//!   `μ = σ²·Δ/se²`. It shrinks small-sample lifts toward 0.
//!
//!   For either posterior `N(μ, σ²)`: the chance to win `Φ(μ/σ)`, the
//!   credible interval `μ ± z₍₁₋α/₂₎·σ`, and the expected loss of choosing
//!   each side: `risk_control = E[max(Δ, 0)] = μΦ(μ/σ) + σφ(μ/σ)`,
//!   `risk_treatment = E[max(−Δ, 0)] = σφ(μ/σ) − μΦ(−μ/σ)`.
//!
//! Refusals: with `se = 0` every block is
//! [`InsufficientData::ZeroStandardError`]; an undefined relative lift
//! (`m_C = 0`) refuses everything with [`InsufficientData::ZeroBaseline`], as
//! does the absolute prior, which is scaled by `m_C`.

use serde::Serialize;

use super::distributions::{
    normal_cdf, normal_pdf, normal_quantile, normal_sf, students_t_quantile, students_t_sf,
};
use super::outcome::{InsufficientData, LiftStatus, Outcome};

/// The constants of an analysis, derived once from its settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Levels {
    pub alpha: f64,
    /// z₍₁₋α/₂₎.
    pub z_two_sided: f64,
    /// z₍₁₋α₎.
    pub z_one_sided: f64,
    /// S.
    pub tuning: f64,
    /// ρ² of the two-sided confidence sequence.
    pub rho_squared: f64,
    /// ρ₁² of the one-sided confidence sequence (from 2α).
    pub rho_squared_one_sided: f64,
    /// σ₀ of the prior on the relative lift.
    pub prior_sd: f64,
}

impl Levels {
    pub fn new(alpha: f64, tuning: f64, prior_sd: f64) -> Self {
        Self {
            alpha,
            z_two_sided: normal_quantile(1.0 - alpha / 2.0),
            z_one_sided: normal_quantile(1.0 - alpha),
            tuning,
            rho_squared: mixing_variance(alpha, tuning),
            rho_squared_one_sided: mixing_variance(2.0 * alpha, tuning),
            prior_sd,
        }
    }
}

/// ρ² = (−2 ln α + ln(1 − 2 ln α))/S: the mixing variance that makes the
/// normal-mixture confidence sequence tightest at S units.
fn mixing_variance(alpha: f64, tuning: f64) -> f64 {
    let ln_alpha = alpha.ln();
    (-2.0 * ln_alpha + (1.0 - 2.0 * ln_alpha).ln()) / tuning
}

/// A lift (absolute or relative) with its intervals and tests. See the
/// module documentation for each block.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Lift {
    /// Whether to act on this lift: `"ok"`, or why not (the numbers are then
    /// arithmetic only).
    pub status: LiftStatus,
    /// Δ.
    pub estimate: Outcome<f64>,
    /// se² of Δ.
    pub variance: Outcome<f64>,
    /// se of Δ.
    pub se: Outcome<f64>,
    /// Welch–Satterthwaite degrees of freedom.
    pub welch_dof: Outcome<f64>,
    pub welch_t: Outcome<WelchT>,
    pub z: Outcome<ZTest>,
    pub sequential: Outcome<Sequential>,
    pub one_sided: Outcome<OneSided>,
    pub bayes_flat: Outcome<BayesFlat>,
    pub bayes_prior: Outcome<BayesPrior>,
}

/// Welch's t-test (fixed horizon).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WelchT {
    pub t_stat: f64,
    /// Two-sided 1 − α interval.
    pub ci: [f64; 2],
    /// Two-sided p-value.
    pub p_value: f64,
}

/// The normal-approximation test (fixed horizon).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ZTest {
    pub ci: [f64; 2],
    pub p_value: f64,
}

/// The always-valid confidence sequence and its p-value.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sequential {
    pub ci: [f64; 2],
    pub p_value: f64,
    /// Units behind the estimate, `n_C + n_T`.
    #[serde(rename = "N")]
    pub units: u64,
    /// S.
    pub tuning_parameter: f64,
    /// ρ (the square root of the mixing variance ρ²).
    pub rho: f64,
}

/// One-sided bounds at level α.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OneSided {
    pub fixed_lower: f64,
    pub fixed_upper: f64,
    pub seq_lower: f64,
    pub seq_upper: f64,
}

/// The posterior under a flat prior.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BayesFlat {
    /// P(lift > 0).
    pub chance_to_win: f64,
    /// Central 1 − α credible interval.
    pub ci: [f64; 2],
    /// Expected loss of keeping the control, E[max(Δ, 0)].
    pub risk_control: f64,
    /// Expected loss of shipping the treatment, E[max(−Δ, 0)].
    pub risk_treatment: f64,
}

/// The posterior under the proper prior N(0, σ₀²).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BayesPrior {
    pub prior_mean: f64,
    pub prior_variance: f64,
    pub post_mean: f64,
    pub post_sd: f64,
    pub chance_to_win: f64,
    pub ci: [f64; 2],
    pub risk_control: f64,
    pub risk_treatment: f64,
}

/// What a [`Lift`] is built from.
pub(crate) struct LiftInputs {
    pub status: LiftStatus,
    /// Δ and its variance.
    pub point: Outcome<(f64, f64)>,
    pub welch_dof: Outcome<f64>,
    pub units: u64,
    /// σ₀² of the proper prior.
    pub prior_variance: Outcome<f64>,
}

/// Builds every block of a lift.
pub(crate) fn lift(inputs: LiftInputs, levels: &Levels) -> Lift {
    let LiftInputs {
        status,
        point,
        welch_dof,
        units,
        prior_variance,
    } = inputs;
    let estimate = point.clone().map(|(estimate, _)| estimate);
    let variance = point.clone().map(|(_, variance)| variance);
    let se = variance.clone().map(f64::sqrt);
    // Inference needs se > 0.
    let usable = point.and_then(|(estimate, variance)| {
        if variance > 0.0 {
            Outcome::Value((estimate, variance))
        } else {
            Outcome::Insufficient(InsufficientData::ZeroStandardError)
        }
    });
    let welch_t = usable.clone().and_then(|(estimate, variance)| {
        welch_dof
            .clone()
            .map(|dof| welch_test(estimate, variance.sqrt(), dof, levels))
    });
    let z = usable
        .clone()
        .map(|(estimate, variance)| z_test(estimate, variance.sqrt(), levels));
    let sequential = usable
        .clone()
        .map(|(estimate, variance)| sequential(estimate, variance, units, levels));
    let one_sided = usable.clone().and_then(|(estimate, variance)| {
        welch_dof
            .clone()
            .map(|dof| one_sided(estimate, variance, dof, units, levels))
    });
    let bayes_flat = usable.clone().map(|(estimate, variance)| {
        let posterior = posterior_summary(estimate, variance.sqrt(), levels);
        BayesFlat {
            chance_to_win: posterior.chance_to_win,
            ci: posterior.ci,
            risk_control: posterior.risk_control,
            risk_treatment: posterior.risk_treatment,
        }
    });
    let bayes_prior = usable.and_then(|(estimate, variance)| {
        prior_variance.map(|prior_variance| {
            let post_variance = 1.0 / (1.0 / prior_variance + 1.0 / variance);
            let post_mean = post_variance * (estimate / variance);
            let post_sd = post_variance.sqrt();
            let posterior = posterior_summary(post_mean, post_sd, levels);
            BayesPrior {
                prior_mean: 0.0,
                prior_variance,
                post_mean,
                post_sd,
                chance_to_win: posterior.chance_to_win,
                ci: posterior.ci,
                risk_control: posterior.risk_control,
                risk_treatment: posterior.risk_treatment,
            }
        })
    });
    Lift {
        status,
        estimate,
        variance,
        se,
        welch_dof,
        welch_t,
        z,
        sequential,
        one_sided,
        bayes_flat,
        bayes_prior,
    }
}

/// Welch–Satterthwaite degrees of freedom from unit variances and counts:
/// `(a + b)²/(a²/(n_T − 1) + b²/(n_C − 1))` with `a = v_T/n_T`, `b = v_C/n_C`;
/// an arm with zero variance contributes nothing. Refused when neither arm
/// varies.
pub(crate) fn welch_dof(
    treatment: (f64, u64),
    control: (f64, u64),
    zero: InsufficientData,
) -> Outcome<f64> {
    let share = |(variance, n): (f64, u64)| variance / n as f64;
    let term = |(variance, n): (f64, u64)| {
        let a = share((variance, n));
        if a == 0.0 || n < 2 {
            0.0
        } else {
            a * a / (n - 1) as f64
        }
    };
    let denominator = term(treatment) + term(control);
    if denominator > 0.0 {
        let sum = share(treatment) + share(control);
        Outcome::Value(sum * sum / denominator)
    } else {
        Outcome::Insufficient(zero)
    }
}

fn welch_test(estimate: f64, se: f64, dof: f64, levels: &Levels) -> WelchT {
    let t_stat = estimate / se;
    let half_width = students_t_quantile(1.0 - levels.alpha / 2.0, dof) * se;
    WelchT {
        t_stat,
        ci: [estimate - half_width, estimate + half_width],
        p_value: (2.0 * students_t_sf(t_stat.abs(), dof)).min(1.0),
    }
}

fn z_test(estimate: f64, se: f64, levels: &Levels) -> ZTest {
    let half_width = levels.z_two_sided * se;
    ZTest {
        ci: [estimate - half_width, estimate + half_width],
        p_value: (2.0 * normal_sf((estimate / se).abs())).min(1.0),
    }
}

fn sequential(estimate: f64, variance: f64, units: u64, levels: &Levels) -> Sequential {
    let n = units as f64;
    let rho2 = levels.rho_squared;
    let spread = n * rho2 + 1.0;
    let half_width = (variance * n).sqrt()
        * (2.0 * spread / (n * n * rho2) * (spread.sqrt() / levels.alpha).ln()).sqrt();
    let ln_evidence =
        rho2 * n * estimate * estimate / (2.0 * variance * spread) - 0.5 * spread.ln();
    Sequential {
        ci: [estimate - half_width, estimate + half_width],
        p_value: (-ln_evidence).exp().min(1.0),
        units,
        tuning_parameter: levels.tuning,
        rho: rho2.sqrt(),
    }
}

fn one_sided(estimate: f64, variance: f64, dof: f64, units: u64, levels: &Levels) -> OneSided {
    let fixed = students_t_quantile(1.0 - levels.alpha, dof) * variance.sqrt();
    let n = units as f64;
    let rho2 = levels.rho_squared_one_sided;
    let spread = n * rho2 + 1.0;
    let seq = (variance * n * 2.0 * spread / (n * n * rho2)
        * (1.0 + spread.sqrt() / (2.0 * levels.alpha)).ln())
    .sqrt();
    OneSided {
        fixed_lower: estimate - fixed,
        fixed_upper: estimate + fixed,
        seq_lower: estimate - seq,
        seq_upper: estimate + seq,
    }
}

struct PosteriorSummary {
    chance_to_win: f64,
    ci: [f64; 2],
    risk_control: f64,
    risk_treatment: f64,
}

/// Chance to win, credible interval and risks of a normal posterior N(μ, σ²).
fn posterior_summary(mean: f64, sd: f64, levels: &Levels) -> PosteriorSummary {
    let x = mean / sd;
    let half_width = levels.z_two_sided * sd;
    let density = sd * normal_pdf(x);
    PosteriorSummary {
        chance_to_win: normal_cdf(x),
        ci: [mean - half_width, mean + half_width],
        risk_control: mean * normal_cdf(x) + density,
        risk_treatment: density - mean * normal_cdf(-x),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mixing_variance_of_the_defaults() {
        let levels = Levels::new(0.05, 5000.0, 0.3);
        // (−2 ln 0.05 + ln(1 − 2 ln 0.05))/5000
        let expected = (5.991464547107979 + 6.991464547107979_f64.ln()) / 5000.0;
        assert!((levels.rho_squared - expected).abs() < 1e-18);
    }

    #[test]
    fn zero_standard_error_refuses_every_block() {
        let levels = Levels::new(0.05, 5000.0, 0.3);
        let lift = lift(
            LiftInputs {
                status: LiftStatus::Ok,
                point: Outcome::Value((1.0, 0.0)),
                welch_dof: Outcome::Value(10.0),
                units: 20,
                prior_variance: Outcome::Value(0.09),
            },
            &levels,
        );
        assert_eq!(lift.se, Outcome::Value(0.0));
        assert!(matches!(
            lift.welch_t,
            Outcome::Insufficient(InsufficientData::ZeroStandardError)
        ));
        assert!(lift.z.is_insufficient());
        assert!(lift.sequential.is_insufficient());
        assert!(lift.one_sided.is_insufficient());
        assert!(lift.bayes_flat.is_insufficient());
        assert!(lift.bayes_prior.is_insufficient());
    }
}
