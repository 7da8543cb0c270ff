//! Per-arm posteriors, the probability that each arm is best, and Thompson
//! sampling.
//!
//! P(arm k is best) `= ∫ f_k(x)·Π_{j≠k} F_j(x) dx` for independent posteriors
//! with densities `f` and distribution functions `F`, computed by adaptive
//! Gauss–Kronrod quadrature over `f_k`'s bulk (its mean ± 40 standard
//! deviations, clipped to its support: the mass outside is below 10⁻¹⁸) to an
//! absolute error below 10⁻¹⁰. These are also Thompson sampling's selection
//! probabilities: the chance that arm k's draw is the largest.
//!
//! - Gaussian (`gaussian_flat`): arm k's mean under a flat prior, N(m_k,
//!   v_k/n_k).
//! - Beta (`beta_uniform`), for proportions: Beta(1 + c, 1 + n − c), the
//!   posterior of a conversion rate under a uniform Beta(1, 1) prior. For two
//!   arms, P(treatment best) is the beta–binomial chance to beat control.
//!
//! [`thompson_choose`] draws one value from each posterior with a ChaCha8
//! generator seeded by the caller and serves the arm with the largest draw;
//! the same seed gives the same arm, so a decision can be replayed.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_distr::Distribution;
use serde::{Deserialize, Serialize};
use statrs::distribution::{Beta, Continuous, ContinuousCDF};

use super::distributions::{normal_cdf, normal_pdf};
use super::quadrature::integrate;
use super::summary::{InputError, ProportionSummary};

/// Standard deviations on each side of the mean that a posterior's bulk spans.
const BULK_SDS: f64 = 40.0;

/// Absolute error allowed in each P(best) integral.
const QUADRATURE_TOLERANCE: f64 = 1e-11;

/// One arm's posterior distribution of its metric.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum ArmPosterior {
    /// N(mean, sd²), `sd > 0`.
    Normal { mean: f64, sd: f64 },
    /// Beta(alpha, beta), `alpha, beta > 0`.
    Beta { alpha: f64, beta: f64 },
}

impl ArmPosterior {
    /// The posterior of a conversion rate under a uniform prior:
    /// Beta(1 + conversions, 1 + n − conversions).
    pub fn uniform_prior_proportion(summary: &ProportionSummary) -> Self {
        ArmPosterior::Beta {
            alpha: 1.0 + summary.conversions as f64,
            beta: 1.0 + summary.n.saturating_sub(summary.conversions) as f64,
        }
    }

    /// The posterior of a mean under a flat prior: N(mean, variance/n), from
    /// the unit variance.
    pub fn flat_prior_mean(n: u64, mean: f64, unit_variance: f64) -> Self {
        ArmPosterior::Normal {
            mean,
            sd: (unit_variance / n as f64).sqrt(),
        }
    }

    fn check(&self, arm: usize) -> Result<(), InputError> {
        let valid = match *self {
            ArmPosterior::Normal { mean, sd } => mean.is_finite() && sd.is_finite() && sd > 0.0,
            ArmPosterior::Beta { alpha, beta } => {
                alpha.is_finite() && beta.is_finite() && alpha > 0.0 && beta > 0.0
            }
        };
        if valid {
            Ok(())
        } else {
            Err(InputError::InvalidPosterior { arm })
        }
    }

    /// Where the density is not negligible.
    fn bulk(&self) -> (f64, f64) {
        match *self {
            ArmPosterior::Normal { mean, sd } => (mean - BULK_SDS * sd, mean + BULK_SDS * sd),
            ArmPosterior::Beta { alpha, beta } => {
                let total = alpha + beta;
                let mean = alpha / total;
                let sd = (alpha * beta / (total * total * (total + 1.0))).sqrt();
                (
                    (mean - BULK_SDS * sd).max(0.0),
                    (mean + BULK_SDS * sd).min(1.0),
                )
            }
        }
    }

    fn density(&self, x: f64) -> f64 {
        match *self {
            ArmPosterior::Normal { mean, sd } => normal_pdf((x - mean) / sd) / sd,
            ArmPosterior::Beta { alpha, beta } => beta_distribution(alpha, beta).pdf(x),
        }
    }

    fn cdf(&self, x: f64) -> f64 {
        match *self {
            ArmPosterior::Normal { mean, sd } => normal_cdf((x - mean) / sd),
            ArmPosterior::Beta { alpha, beta } => {
                if x <= 0.0 {
                    0.0
                } else if x >= 1.0 {
                    1.0
                } else {
                    beta_distribution(alpha, beta).cdf(x)
                }
            }
        }
    }

    fn draw(&self, rng: &mut ChaCha8Rng) -> f64 {
        match *self {
            ArmPosterior::Normal { mean, sd } => rand_distr::Normal::new(mean, sd)
                .expect("checked: finite mean, positive sd")
                .sample(rng),
            ArmPosterior::Beta { alpha, beta } => rand_distr::Beta::new(alpha, beta)
                .expect("checked: positive parameters")
                .sample(rng),
        }
    }
}

fn beta_distribution(alpha: f64, beta: f64) -> Beta {
    Beta::new(alpha, beta).expect("checked: positive parameters")
}

fn check_all(posteriors: &[ArmPosterior]) -> Result<(), InputError> {
    if posteriors.is_empty() {
        return Err(InputError::TooFewArms(0));
    }
    for (arm, posterior) in posteriors.iter().enumerate() {
        posterior.check(arm)?;
    }
    Ok(())
}

/// P(arm k has the largest value), for each arm, under independent
/// posteriors — Thompson sampling's selection probabilities. They sum to 1
/// up to the quadrature error (below 10⁻¹⁰ each).
pub fn probability_best(posteriors: &[ArmPosterior]) -> Result<Vec<f64>, InputError> {
    check_all(posteriors)?;
    Ok((0..posteriors.len())
        .map(|k| {
            let arm = &posteriors[k];
            let (lo, hi) = arm.bulk();
            let integrand = |x: f64| {
                let density = arm.density(x);
                if density == 0.0 {
                    return 0.0;
                }
                posteriors
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != k)
                    .fold(density, |product, (_, other)| product * other.cdf(x))
            };
            integrate(integrand, lo, hi, QUADRATURE_TOLERANCE).clamp(0.0, 1.0)
        })
        .collect())
}

/// The beta–binomial chance to beat control: P(p_T > p_C) with Beta(1, 1)
/// priors on both conversion rates.
pub fn chance_to_beat_control(control: &ProportionSummary, treatment: &ProportionSummary) -> f64 {
    let posteriors = [
        ArmPosterior::uniform_prior_proportion(control),
        ArmPosterior::uniform_prior_proportion(treatment),
    ];
    probability_best(&posteriors).expect("uniform-prior posteriors are valid")[1]
}

/// Thompson sampling: draws one value from each arm's posterior with a
/// ChaCha8 generator seeded by `seed`, and returns the index of the largest
/// draw (the lowest index on a tie). Arm k is chosen with probability
/// [`probability_best`]`[k]`; the same seed always gives the same arm.
pub fn thompson_choose(posteriors: &[ArmPosterior], seed: u64) -> Result<usize, InputError> {
    check_all(posteriors)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut best = (0, f64::NEG_INFINITY);
    for (arm, posterior) in posteriors.iter().enumerate() {
        let draw = posterior.draw(&mut rng);
        if draw > best.1 {
            best = (arm, draw);
        }
    }
    Ok(best.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_normals_reduce_to_a_closed_form() {
        let arms = [
            ArmPosterior::Normal {
                mean: 0.1,
                sd: 0.003,
            },
            ArmPosterior::Normal {
                mean: 0.11,
                sd: 0.004,
            },
        ];
        let p = probability_best(&arms).unwrap();
        let exact = normal_cdf(0.01 / (0.003f64.powi(2) + 0.004f64.powi(2)).sqrt());
        assert!((p[1] - exact).abs() < 1e-12, "{} vs {exact}", p[1]);
        assert!((p[0] + p[1] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn equal_betas_split_evenly() {
        let arm = ArmPosterior::Beta {
            alpha: 1.0,
            beta: 1001.0,
        };
        let p = probability_best(&[arm, arm, arm]).unwrap();
        for share in p {
            assert!((share - 1.0 / 3.0).abs() < 1e-10, "{share}");
        }
    }

    #[test]
    fn thompson_is_replayable_and_follows_the_probabilities() {
        let arms = [
            ArmPosterior::Beta {
                alpha: 11.0,
                beta: 91.0,
            },
            ArmPosterior::Beta {
                alpha: 15.0,
                beta: 87.0,
            },
            ArmPosterior::Normal {
                mean: 0.12,
                sd: 0.01,
            },
        ];
        assert_eq!(
            thompson_choose(&arms, 42).unwrap(),
            thompson_choose(&arms, 42).unwrap()
        );
        let draws = 4000;
        let mut counts = [0u32; 3];
        for seed in 0..draws {
            counts[thompson_choose(&arms, seed).unwrap()] += 1;
        }
        let p = probability_best(&arms).unwrap();
        for (count, p) in counts.iter().zip(p) {
            let share = f64::from(*count) / draws as f64;
            // Five binomial standard errors.
            let tolerance = 5.0 * (p * (1.0 - p) / draws as f64).sqrt() + 1e-3;
            assert!((share - p).abs() < tolerance, "{counts:?} vs {p}");
        }
    }

    #[test]
    fn invalid_posteriors_are_refused() {
        let arms = [ArmPosterior::Normal { mean: 0.0, sd: 0.0 }];
        assert_eq!(
            probability_best(&arms),
            Err(InputError::InvalidPosterior { arm: 0 })
        );
        assert!(thompson_choose(&[], 1).is_err());
    }
}
