//! Corrections for testing several hypotheses at once (arms × metrics), so
//! that "some p < 0.05" does not become likely by chance alone.
//!
//! Both take a list of raw p-values, `None` where a test is undefined;
//! undefined ones are excluded (they neither count toward `m` nor get an
//! adjusted value). With `m` defined p-values sorted ascending,
//! `p₍₁₎ ≤ … ≤ p₍ₘ₎`:
//!
//! - Holm (controls the family-wise error rate, the chance of any false
//!   positive): `p̃₍ᵢ₎ = max_{j ≤ i} min(1, (m − j + 1)·p₍ⱼ₎)`.
//! - Benjamini–Hochberg (controls the false discovery rate, the expected
//!   share of false positives among the rejections; less strict):
//!   `p̃₍ᵢ₎ = min_{j ≥ i} min(1, m/j·p₍ⱼ₎)`.
//!
//! Reject hypothesis `i` at level α when `p̃ᵢ < α`. The function is general:
//! pass all comparisons of all metrics of an experiment together.

use serde::Serialize;

/// Raw and adjusted p-values, in the order given.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AdjustedPValues {
    pub raw: Vec<Option<f64>>,
    pub holm: Vec<Option<f64>>,
    pub benjamini_hochberg: Vec<Option<f64>>,
}

/// Holm and Benjamini–Hochberg adjustments of `raw`. Values that are `None`,
/// NaN or outside [0, 1] are undefined: excluded, and `None` in the output.
pub fn adjust_p_values(raw: &[Option<f64>]) -> AdjustedPValues {
    let mut defined: Vec<(usize, f64)> = raw
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.filter(|p| (0.0..=1.0).contains(p)).map(|p| (i, p)))
        .collect();
    defined.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    let m = defined.len();
    let mut holm = vec![None; raw.len()];
    let mut running_max: f64 = 0.0;
    for (rank, &(index, p)) in defined.iter().enumerate() {
        running_max = running_max.max(((m - rank) as f64 * p).min(1.0));
        holm[index] = Some(running_max);
    }
    let mut benjamini_hochberg = vec![None; raw.len()];
    let mut running_min: f64 = 1.0;
    for (rank, &(index, p)) in defined.iter().enumerate().rev() {
        running_min = running_min.min((m as f64 / (rank + 1) as f64 * p).min(1.0));
        benjamini_hochberg[index] = Some(running_min);
    }
    AdjustedPValues {
        raw: raw
            .iter()
            .map(|p| p.filter(|p| (0.0..=1.0).contains(p)))
            .collect(),
        holm,
        benjamini_hochberg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: &[Option<f64>], expected: &[Option<f64>]) -> bool {
        got.len() == expected.len()
            && got.iter().zip(expected).all(|(g, e)| match (g, e) {
                (Some(g), Some(e)) => (g - e).abs() < 1e-15,
                (None, None) => true,
                _ => false,
            })
    }

    /// Worked by hand: m = 4 defined values.
    #[test]
    fn a_worked_example() {
        let raw = [Some(0.01), Some(0.04), None, Some(0.03), Some(0.005)];
        let adjusted = adjust_p_values(&raw);
        // Sorted: 0.005, 0.01, 0.03, 0.04.
        // Holm: 4·0.005 = 0.02, 3·0.01 = 0.03, 2·0.03 = 0.06, max(0.06, 0.04).
        assert!(close(
            &adjusted.holm,
            &[Some(0.03), Some(0.06), None, Some(0.06), Some(0.02)]
        ));
        // BH: 0.04·4/4 = 0.04, 0.03·4/3 = 0.04, 0.01·4/2 = 0.02, 0.005·4/1 = 0.02.
        assert!(close(
            &adjusted.benjamini_hochberg,
            &[Some(0.02), Some(0.04), None, Some(0.04), Some(0.02)]
        ));
    }

    #[test]
    fn a_single_p_value_is_unchanged() {
        let adjusted = adjust_p_values(&[None, Some(0.2)]);
        assert_eq!(adjusted.holm, vec![None, Some(0.2)]);
        assert_eq!(adjusted.benjamini_hochberg, vec![None, Some(0.2)]);
    }
}
