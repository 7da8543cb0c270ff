//! Quantile metrics (p95 latency): the quantile of each arm with the
//! variance of its estimate, and the rank tests that compare whole
//! distributions.
//!
//! **Order-statistic method.** With `n` units and level ν: the estimate is
//! `q̂ = x₍⌈nν⌉₎`; the ranks `L = ⌊nν − z√(nν(1 − ν))⌋` and `U = ⌈nν +
//! z√(nν(1 − ν))⌉` (clamped to `1..=n`, `z = z₍₁₋α/₂₎`) bound the quantile
//! with probability about 1 − α (the normal approximation of the binomial
//! count of units below it); so `(x₍U₎ − x₍L₎)/(2z)` estimates the standard
//! error of `q̂`, and the unit variance is `(n − 1)·((x₍U₎ − x₍L₎)/(2z))²`,
//! floored at 10⁻⁵ when `n ≥ 100` (a tie of `x₍L₎` and `x₍U₎` is not zero
//! uncertainty). The lifts then use the same formulas as means. When the
//! ranks had to be clamped (`n ≤ z²·ν/(1 − ν)` or `n ≤ z²·(1 − ν)/ν`: 380
//! units for a p99) the interval does not measure the spread, and the arm is
//! refused with [`InsufficientData::TooFewUnitsForQuantile`] (the numbers
//! are still reported).
//!
//! The exact distribution-free interval is reported beside it
//! (`binomial_ci`): ranks from the binomial quantiles, `l` the smallest `k`
//! with `P(B ≤ k) ≥ α/2` and `u` one more than the smallest `k` with
//! `P(B ≤ k) ≥ 1 − α/2`, `B ~ Bin(n, ν)`, and its exact coverage
//! `P(l ≤ B ≤ u − 1)`.
//!
//! From a [`QuantileSketch`](crate::QuantileSketch), every order statistic
//! is read from the sketch, within its 1% relative error.
//!
//! **Mann–Whitney and Hodges–Lehmann** (exact values only): `U` of the
//! treatment with mid-ranks for ties; its two-sided p-value from the normal
//! approximation with tie and continuity corrections; the Hodges–Lehmann
//! shift, the median of all `n_C·n_T` differences `y_T − x_C`, with the
//! distribution-free interval `[D₍C₎, D₍n_C·n_T + 1 − C₎]`, `C = ⌊n_C·n_T/2 −
//! z₍(1+γ)/2₎·√(n_C·n_T(n_C + n_T + 1)/12)⌋` at confidence γ (default 0.98).
//! The order statistics of the differences are found by selection, without
//! materialising all `n_C·n_T` of them.

use serde::Serialize;
use statrs::distribution::{Binomial, DiscreteCDF};

use super::distributions::{normal_quantile, normal_sf};
use super::outcome::{InsufficientData, Outcome};
use super::summary::QuantileSample;

/// Below this many units the variance floor does not apply.
const VARIANCE_FLOOR_MIN_UNITS: u64 = 100;

/// The floor on a quantile's unit variance.
const VARIANCE_FLOOR: f64 = 1e-5;

/// The quantile of one arm and the spread of its estimate.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QuantileEstimate {
    /// The level ν.
    pub nu: f64,
    /// Units the estimate rests on.
    pub n_star: u64,
    /// `x₍⌈nν⌉₎`.
    pub quantile_hat: f64,
    pub quantile_index_1based: u64,
    /// L.
    pub lower_index_1based: u64,
    /// U.
    pub upper_index_1based: u64,
    /// `x₍L₎`.
    pub quantile_lower: f64,
    /// `x₍U₎`.
    pub quantile_upper: f64,
    /// `(n − 1)·((x₍U₎ − x₍L₎)/(2z))²`.
    pub variance_init: f64,
    /// `variance_init`, floored.
    pub variance: f64,
    /// Whether the ranks had to be clamped (too few units): the arm is
    /// refused.
    pub zero_variance_guard: bool,
    pub binomial_ci: BinomialInterval,
}

/// The exact distribution-free interval for the quantile.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BinomialInterval {
    pub lower_index_1based: u64,
    pub upper_index_1based: u64,
    pub ci: [f64; 2],
    /// Its exact coverage.
    pub coverage: f64,
}

/// The ν-quantile of `sample` and its variance, at level `alpha` (for z).
pub fn quantile_estimate(sample: &QuantileSample, nu: f64, alpha: f64) -> Option<QuantileEstimate> {
    let n = sample.len();
    if n == 0 {
        return None;
    }
    let z = normal_quantile(1.0 - alpha / 2.0);
    let nf = n as f64;
    let centre = nf * nu;
    let spread = z * (centre * (1.0 - nu)).sqrt();
    let clamp = |rank: f64| (rank.max(1.0) as u64).clamp(1, n);
    let index = clamp(centre.ceil());
    let lower_raw = (centre - spread).floor();
    let upper_raw = (centre + spread).ceil();
    let (lower, upper) = (clamp(lower_raw), clamp(upper_raw));
    let quantile_lower = sample.order_statistic(lower)?;
    let quantile_upper = sample.order_statistic(upper)?;
    let width = (quantile_upper - quantile_lower) / (2.0 * z);
    let variance_init = (nf - 1.0) * width * width;
    let variance = if n >= VARIANCE_FLOOR_MIN_UNITS {
        variance_init.max(VARIANCE_FLOOR)
    } else {
        variance_init
    };
    Some(QuantileEstimate {
        nu,
        n_star: n,
        quantile_hat: sample.order_statistic(index)?,
        quantile_index_1based: index,
        lower_index_1based: lower,
        upper_index_1based: upper,
        quantile_lower,
        quantile_upper,
        variance_init,
        variance,
        zero_variance_guard: too_few_units(n, nu, z),
        binomial_ci: binomial_interval(sample, nu, alpha)?,
    })
}

/// Whether `n ≤ z²·ν/(1 − ν)` or `n ≤ z²·(1 − ν)/ν`: the normal-approximation
/// ranks reach past the sample's ends.
fn too_few_units(n: u64, nu: f64, z: f64) -> bool {
    n as f64 <= min_units_bound(nu, z)
}

fn min_units_bound(nu: f64, z: f64) -> f64 {
    z * z * (nu / (1.0 - nu)).max((1.0 - nu) / nu)
}

/// The refusal for an arm whose quantile interval was clamped.
pub(crate) fn quantile_refusal(
    arm: usize,
    estimate: &QuantileEstimate,
    alpha: f64,
) -> Option<InsufficientData> {
    estimate.zero_variance_guard.then(|| {
        let z = normal_quantile(1.0 - alpha / 2.0);
        InsufficientData::TooFewUnitsForQuantile {
            arm,
            n: estimate.n_star,
            min_units: min_units_bound(estimate.nu, z).floor() as u64 + 1,
        }
    })
}

fn binomial_interval(sample: &QuantileSample, nu: f64, alpha: f64) -> Option<BinomialInterval> {
    let n = sample.len();
    let binomial = Binomial::new(nu, n).ok()?;
    let cdf = |k: i64| -> f64 { if k < 0 { 0.0 } else { binomial.cdf(k as u64) } };
    let lower = smallest_k_with_cdf_at_least(&cdf, n, alpha / 2.0, nu);
    let upper = smallest_k_with_cdf_at_least(&cdf, n, 1.0 - alpha / 2.0, nu) + 1;
    let (lower, upper) = (lower.clamp(1, n), upper.clamp(1, n));
    Some(BinomialInterval {
        lower_index_1based: lower,
        upper_index_1based: upper,
        ci: [
            sample.order_statistic(lower)?,
            sample.order_statistic(upper)?,
        ],
        coverage: cdf(upper as i64 - 1) - cdf(lower as i64 - 1),
    })
}

/// The binomial quantile: the smallest `k` in `0..=n` with `P(B ≤ k) ≥ q`,
/// searched from the normal approximation.
fn smallest_k_with_cdf_at_least(cdf: &impl Fn(i64) -> f64, n: u64, q: f64, nu: f64) -> u64 {
    let nf = n as f64;
    let guess = (nf * nu + normal_quantile(q) * (nf * nu * (1.0 - nu)).sqrt()).round();
    let mut k = guess.clamp(0.0, nf) as i64;
    let n = n as i64;
    while k > 0 && cdf(k - 1) >= q {
        k -= 1;
    }
    while k < n && cdf(k) < q {
        k += 1;
    }
    k as u64
}

/// The Mann–Whitney test and the Hodges–Lehmann shift of the treatment
/// against the control.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MannWhitney {
    /// U of the treatment: the pairs in which the treatment's value is the
    /// larger, ties counting ½.
    #[serde(rename = "U_treatment")]
    pub u_treatment: f64,
    /// Two-sided, normal approximation with tie and continuity corrections.
    pub p_value: f64,
    /// The median of the differences treatment − control.
    pub hodges_lehmann: f64,
    pub conf_level: f64,
    /// The rank of the interval's lower end among the sorted differences.
    #[serde(rename = "C")]
    pub c: u64,
    pub hl_ci: [f64; 2],
}

/// Mann–Whitney and Hodges–Lehmann on sorted control and treatment values.
/// Refused when an arm is empty.
pub fn mann_whitney(control: &[f64], treatment: &[f64], conf_level: f64) -> Outcome<MannWhitney> {
    if control.is_empty() {
        return Outcome::Insufficient(InsufficientData::EmptyArm { arm: 0 });
    }
    if treatment.is_empty() {
        return Outcome::Insufficient(InsufficientData::EmptyArm { arm: 1 });
    }
    let (n_c, n_t) = (control.len() as f64, treatment.len() as f64);
    let total = n_c + n_t;
    let (rank_sum_treatment, tie_term) = treatment_rank_sum(control, treatment);
    let u_treatment = rank_sum_treatment - n_t * (n_t + 1.0) / 2.0;
    let pairs = n_c * n_t;
    let mean_u = pairs / 2.0;
    let sd_u = (pairs / 12.0 * ((total + 1.0) - tie_term / (total * (total - 1.0)))).sqrt();
    let p_value = if sd_u > 0.0 {
        let z = ((u_treatment - mean_u).abs() - 0.5) / sd_u;
        (2.0 * normal_sf(z)).min(1.0)
    } else {
        1.0
    };
    let pair_count = control.len() as u64 * treatment.len() as u64;
    let differences = PairwiseDifferences { control, treatment };
    let hodges_lehmann = if pair_count % 2 == 1 {
        differences.kth_smallest(pair_count / 2 + 1)
    } else {
        (differences.kth_smallest(pair_count / 2) + differences.kth_smallest(pair_count / 2 + 1))
            / 2.0
    };
    let z = normal_quantile((1.0 + conf_level) / 2.0);
    let c = (mean_u - z * (pairs * (total + 1.0) / 12.0).sqrt()).floor();
    let c = (c.max(1.0) as u64).min(pair_count.div_ceil(2));
    Outcome::Value(MannWhitney {
        u_treatment,
        p_value,
        hodges_lehmann,
        conf_level,
        c,
        hl_ci: [
            differences.kth_smallest(c),
            differences.kth_smallest(pair_count + 1 - c),
        ],
    })
}

/// The treatment's sum of mid-ranks in the pooled sample, and `Σ(t³ − t)`
/// over groups of tied values.
fn treatment_rank_sum(control: &[f64], treatment: &[f64]) -> (f64, f64) {
    let mut pooled: Vec<(f64, bool)> = control
        .iter()
        .map(|&v| (v, false))
        .chain(treatment.iter().map(|&v| (v, true)))
        .collect();
    pooled.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0;
    let mut tie_term = 0.0;
    let mut start = 0;
    while start < pooled.len() {
        let mut end = start + 1;
        while end < pooled.len() && pooled[end].0 == pooled[start].0 {
            end += 1;
        }
        // Ranks start + 1 ..= end share their mean.
        let mid_rank = (start + 1 + end) as f64 / 2.0;
        let in_treatment = pooled[start..end].iter().filter(|(_, t)| *t).count();
        rank_sum += mid_rank * in_treatment as f64;
        let tied = (end - start) as f64;
        tie_term += tied * tied * tied - tied;
        start = end;
    }
    (rank_sum, tie_term)
}

/// The multiset `{y − x : x in control, y in treatment}` of sorted inputs,
/// answering order statistics by selection: bisection on the value with a
/// linear-time count, then sorting the few differences left in the bracket.
struct PairwiseDifferences<'a> {
    control: &'a [f64],
    treatment: &'a [f64],
}

impl PairwiseDifferences<'_> {
    /// Differences few enough to sort directly.
    fn few(&self) -> u64 {
        4 * (self.control.len() + self.treatment.len()) as u64 + 1024
    }

    /// For each control value (ascending), how many treatment values `y`
    /// have `y − x ≤ t`: a prefix of the treatment values, growing with `x`.
    fn prefix_lengths(&self, t: f64) -> impl Iterator<Item = usize> + '_ {
        let mut j = 0;
        self.control.iter().map(move |&x| {
            while j < self.treatment.len() && self.treatment[j] - x <= t {
                j += 1;
            }
            j
        })
    }

    fn count_at_most(&self, t: f64) -> u64 {
        self.prefix_lengths(t).map(|j| j as u64).sum()
    }

    /// The k-th smallest difference, 1-based (`1 ≤ k ≤ n_C·n_T`).
    fn kth_smallest(&self, k: u64) -> f64 {
        let lowest = self.treatment[0] - self.control[self.control.len() - 1];
        let highest = self.treatment[self.treatment.len() - 1] - self.control[0];
        if self.count_at_most(lowest) >= k {
            return lowest;
        }
        // Invariant: count(lo) < k ≤ count(hi).
        let (mut lo, mut hi) = (lowest, highest);
        let mut below = self.count_at_most(lo);
        loop {
            let within = self.count_at_most(hi) - below;
            if within <= self.few() {
                let mut bracket: Vec<f64> = self
                    .prefix_lengths(lo)
                    .zip(self.prefix_lengths(hi))
                    .zip(self.control)
                    .flat_map(|((from, to), &x)| {
                        self.treatment[from..to].iter().map(move |&y| y - x)
                    })
                    .collect();
                bracket.sort_by(f64::total_cmp);
                return bracket[(k - below - 1) as usize];
            }
            let mid = lo + (hi - lo) / 2.0;
            if mid <= lo || mid >= hi {
                // No float between: every difference in the bracket is hi.
                return hi;
            }
            let at_mid = self.count_at_most(mid);
            if at_mid >= k {
                hi = mid;
            } else {
                lo = mid;
                below = at_mid;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_matches_sorting_all_differences() {
        let control: Vec<f64> = (0..200).map(|i| f64::from(i * 37 % 101) * 0.5).collect();
        let treatment: Vec<f64> = (0..150).map(|i| f64::from(i * 53 % 89) * 0.75).collect();
        let mut control_sorted = control.clone();
        control_sorted.sort_by(f64::total_cmp);
        let mut treatment_sorted = treatment.clone();
        treatment_sorted.sort_by(f64::total_cmp);
        let mut all: Vec<f64> = control_sorted
            .iter()
            .flat_map(|&x| treatment_sorted.iter().map(move |&y| y - x))
            .collect();
        all.sort_by(f64::total_cmp);
        let differences = PairwiseDifferences {
            control: &control_sorted,
            treatment: &treatment_sorted,
        };
        for k in [1, 2, 17, 1000, 14_999, 15_000, 15_001, 29_999, 30_000] {
            assert_eq!(differences.kth_smallest(k), all[k as usize - 1], "k = {k}");
        }
    }

    #[test]
    fn mid_ranks_and_ties() {
        // Pooled: 1 1 2 3 3 3 → ranks 1.5 1.5 3 5 5 5.
        let (rank_sum, ties) = treatment_rank_sum(&[1.0, 3.0], &[1.0, 2.0, 3.0, 3.0]);
        assert_eq!(rank_sum, 1.5 + 3.0 + 5.0 + 5.0);
        assert_eq!(ties, (8.0 - 2.0) + (27.0 - 3.0));
    }

    #[test]
    fn the_median_of_an_odd_sample() {
        let sample = QuantileSample::from_values(0, vec![5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        let estimate = quantile_estimate(&sample, 0.5, 0.05).unwrap();
        assert_eq!(estimate.quantile_index_1based, 3);
        assert_eq!(estimate.quantile_hat, 3.0);
        assert!(estimate.zero_variance_guard || estimate.lower_index_1based >= 1);
    }
}
