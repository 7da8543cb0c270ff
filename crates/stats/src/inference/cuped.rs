//! CUPED (Deng et al., 2013): variance reduction with a pre-exposure
//! covariate.
//!
//! Each unit has its metric `y` after exposure and the same metric `x`
//! before. For a control/treatment pair, `θ = Cov(Y, X)/Var(X)` is fitted on
//! the two arms pooled as one sample (so the same adjustment applies to
//! both, and randomization keeps it unbiased); each arm's adjusted mean is
//! `ȳ − θx̄` and its adjusted unit variance `v_Y + θ²v_X − 2θc_XY`, smaller by
//! about the share of the metric's variance the covariate explains. `θ = 0`
//! (no adjustment) when `Var(X)` or `Var(Y)` is 0 on the pool.
//!
//! The absolute lift is the difference of adjusted means; the relative lift
//! divides it by the *unadjusted* control mean `|ȳ_C|`, with the full delta
//! method over the control's `(ȳ, x̄)`:
//! `Var = ṽ_T/(n_T·ȳ_C²) + [v_Y,C·ȳ_T²/ȳ_C² − 2θ·c_XY,C·ȳ_T/ȳ_C + θ²·v_X,C]/(n_C·ȳ_C²)`.

use serde::Serialize;

use super::summary::{CupedSummary, CupedTypes, mean_and_variance};

/// The CUPED fit of one control/treatment pair.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CupedFit {
    /// Cov(Y, X)/Var(X) on the pooled pair.
    pub theta: f64,
    pub control: CupedArm,
    pub treatment: CupedArm,
}

/// One arm of a CUPED fit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CupedArm {
    pub n: u64,
    /// ȳ.
    pub post_mean: f64,
    /// x̄.
    pub pre_mean: f64,
    /// v_Y, the unit variance of y.
    pub var_post: f64,
    /// v_X.
    pub var_pre: f64,
    /// c_XY, the sample covariance of x and y.
    pub cov: f64,
    /// ȳ − θx̄.
    pub adj_mean: f64,
    /// v_Y + θ²v_X − 2θc_XY.
    pub adj_var: f64,
}

fn covariance(n: u64, sum_a: f64, sum_b: f64, sum_products: f64) -> f64 {
    if n < 2 {
        return 0.0;
    }
    let nf = n as f64;
    (sum_products - sum_a * sum_b / nf) / (nf - 1.0)
}

/// Fits θ on the pooled pair and adjusts both arms (`n ≥ 1` in each: the
/// caller checks).
pub fn cuped_fit(types: CupedTypes, control: &CupedSummary, treatment: &CupedSummary) -> CupedFit {
    let mut pooled = *control;
    pooled.merge(treatment);
    let (_, pooled_post_variance) = mean_and_variance(
        types.post,
        pooled.n,
        pooled.post_sum,
        pooled.post_sum_squares,
    );
    let (_, pooled_pre_variance) =
        mean_and_variance(types.pre, pooled.n, pooled.pre_sum, pooled.pre_sum_squares);
    let theta = if pooled_pre_variance == 0.0 || pooled_post_variance == 0.0 {
        0.0
    } else {
        covariance(
            pooled.n,
            pooled.post_sum,
            pooled.pre_sum,
            pooled.post_pre_sum_products,
        ) / pooled_pre_variance
    };
    CupedFit {
        theta,
        control: adjust(types, control, theta),
        treatment: adjust(types, treatment, theta),
    }
}

fn adjust(types: CupedTypes, arm: &CupedSummary, theta: f64) -> CupedArm {
    let (post_mean, var_post) =
        mean_and_variance(types.post, arm.n, arm.post_sum, arm.post_sum_squares);
    let (pre_mean, var_pre) = mean_and_variance(types.pre, arm.n, arm.pre_sum, arm.pre_sum_squares);
    let cov = covariance(arm.n, arm.post_sum, arm.pre_sum, arm.post_pre_sum_products);
    // Non-negative in exact arithmetic (at least v_Y − c²/v_X ≥ 0).
    let adj_var = (var_post + theta * theta * var_pre - 2.0 * theta * cov).max(0.0);
    CupedArm {
        n: arm.n,
        post_mean,
        pre_mean,
        var_post,
        var_pre,
        cov,
        adj_mean: post_mean - theta * pre_mean,
        adj_var,
    }
}

impl CupedFit {
    /// The absolute lift and its variance.
    pub(crate) fn absolute(&self) -> (f64, f64) {
        let (c, t) = (&self.control, &self.treatment);
        (
            t.adj_mean - c.adj_mean,
            t.adj_var / t.n as f64 + c.adj_var / c.n as f64,
        )
    }

    /// The relative lift and its variance (delta method; `ȳ_C ≠ 0`).
    pub(crate) fn relative(&self) -> (f64, f64) {
        let (c, t) = (&self.control, &self.treatment);
        let base = c.post_mean;
        let base2 = base * base;
        let ratio = t.post_mean / base;
        let estimate = (t.adj_mean - c.adj_mean) / base.abs();
        let control_part = c.var_post * ratio * ratio - 2.0 * self.theta * c.cov * ratio
            + self.theta * self.theta * c.var_pre;
        let variance = t.adj_var / (t.n as f64 * base2) + control_part / (c.n as f64 * base2);
        (estimate, variance)
    }
}
