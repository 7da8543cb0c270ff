//! Sample-ratio mismatch: are the observed arm sizes consistent with the
//! planned weights? If not, assignment or logging is broken, and no other
//! result of the experiment can be trusted.
//!
//! Pearson's χ² goodness of fit: `χ² = Σ(o_k − e_k)²/e_k` with
//! `e_k = w_k/Σw·Σo`, on `K − 1` degrees of freedom. A mismatch is declared
//! when `p < threshold` (default 0.001: the check runs on every analysis, so
//! it must rarely cry wolf).

use serde::Serialize;
use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::outcome::{InsufficientData, Outcome};

/// The SRM check of one experiment.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Srm {
    /// Observed units per arm.
    pub users: Vec<u64>,
    /// Planned weights, as given.
    pub weights: Vec<f64>,
    pub chi2: f64,
    /// K − 1.
    pub df: u64,
    pub p_value: f64,
    /// `p_value < threshold`.
    pub srm_detected: bool,
    pub threshold: f64,
}

/// The χ² test of observed `users` against planned `weights` (one per arm,
/// finite and positive, at least two arms: the caller checks). Refused when
/// no unit has been counted.
pub fn sample_ratio_mismatch(users: &[u64], weights: &[f64], threshold: f64) -> Outcome<Srm> {
    let total: u64 = users.iter().sum();
    if total == 0 {
        return Outcome::Insufficient(InsufficientData::NoUnits);
    }
    let weight_sum: f64 = weights.iter().sum();
    let chi2: f64 = users
        .iter()
        .zip(weights)
        .map(|(&observed, &weight)| {
            let expected = weight / weight_sum * total as f64;
            let deviation = observed as f64 - expected;
            deviation * deviation / expected
        })
        .sum();
    let df = users.len().saturating_sub(1) as u64;
    let p_value = ChiSquared::new(df as f64)
        .map(|distribution| distribution.sf(chi2))
        .unwrap_or(1.0);
    Outcome::Value(Srm {
        users: users.to_vec(),
        weights: weights.to_vec(),
        chi2,
        df,
        p_value,
        srm_detected: p_value < threshold,
        threshold,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skewed_split_is_detected() {
        let srm = sample_ratio_mismatch(&[10_500, 9_500], &[0.5, 0.5], 0.001)
            .into_value()
            .unwrap();
        assert!((srm.chi2 - 50.0).abs() < 1e-9);
        assert!(srm.srm_detected);
        let fine = sample_ratio_mismatch(&[10_010, 9_990], &[1.0, 1.0], 0.001)
            .into_value()
            .unwrap();
        assert!(!fine.srm_detected);
    }

    #[test]
    fn no_units_is_insufficient() {
        assert!(sample_ratio_mismatch(&[0, 0], &[0.5, 0.5], 0.001).is_insufficient());
    }
}
