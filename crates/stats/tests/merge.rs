//! Merging is what lets time buckets roll up and several processes write the
//! same metric, so it is checked as a property: split a set of units (or
//! values) into arbitrary parts, summarise each part, merge the summaries in
//! an arbitrary order, and compare with the summary of everything at once.
//!
//! The properties are deterministic guarantees, not statistical claims, so no
//! input can make them fail by chance; the seed is fixed anyway so that every
//! run checks the same cases.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use stats::{Moments, QuantileSketch};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        rng_seed: RngSeed::Fixed(0x5eed_0003),
        ..ProptestConfig::default()
    }
}

/// Parts of a set, with an order to merge them in.
fn parts_in_any_order<T: Clone + std::fmt::Debug>(
    element: impl Strategy<Value = T> + Clone,
    max_part_len: usize,
) -> impl Strategy<Value = (Vec<Vec<T>>, Vec<usize>)> {
    vec(vec(element, 0..max_part_len), 1..8).prop_flat_map(|parts| {
        let order = Just((0..parts.len()).collect::<Vec<_>>()).prop_shuffle();
        (Just(parts), order)
    })
}

/// A unit's totals: a numerator that may be negative (a deviation) and a
/// non-negative denominator.
fn unit() -> impl Strategy<Value = (f64, f64)> + Clone {
    (
        prop_oneof![-1e6..1e6f64, (0u32..50).prop_map(f64::from)],
        prop_oneof![0.0..1e3f64, (0u32..50).prop_map(f64::from)],
    )
}

/// Values across the range a sketch covers: zeros, magnitudes from below the
/// zero threshold up to 10⁸ of either sign, and repeated small whole numbers.
fn value() -> impl Strategy<Value = f64> + Clone {
    prop_oneof![
        Just(0.0),
        (-10.0..8.0f64, any::<bool>()).prop_map(|(exponent, negative)| {
            let magnitude = 10f64.powf(exponent);
            if negative { -magnitude } else { magnitude }
        }),
        (1u32..500).prop_map(f64::from),
    ]
}

/// `|merged − whole| ≤ 1e-9 · scale`, where `scale` is the sum of the terms'
/// magnitudes: summation order moves a sum by rounding, relative to that.
#[track_caller]
fn assert_close(name: &str, merged: f64, whole: f64, scale: f64) {
    assert!(
        (merged - whole).abs() <= 1e-9 * scale,
        "{name}: merged {merged}, at once {whole}, scale {scale}"
    );
}

/// The guarantee of `QuantileSketch`, with room for floating-point rounding
/// in the sketch's logarithms (1e-12 relative).
fn within_guarantee(estimate: f64, exact: f64) -> bool {
    if exact.abs() <= QuantileSketch::ZERO_THRESHOLD {
        estimate == 0.0 || estimate == exact
    } else {
        (estimate - exact).abs() <= (QuantileSketch::RELATIVE_ACCURACY + 1e-12) * exact.abs()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn merged_moments_equal_moments_of_all_units((parts, order) in parts_in_any_order(unit(), 40)) {
        let all: Vec<(f64, f64)> = parts.iter().flatten().copied().collect();
        let whole: Moments = all.iter().copied().collect();

        let mut merged = Moments::new();
        for &part in &order {
            merged.merge(&parts[part].iter().copied().collect());
        }

        prop_assert_eq!(merged.n, whole.n);
        prop_assert_eq!(merged.n, all.len() as u64);
        let scale = |term: fn(f64, f64) -> f64| all.iter().map(|&(x, y)| term(x, y).abs()).sum::<f64>();
        assert_close("Σx", merged.sum_x, whole.sum_x, scale(|x, _| x));
        assert_close("Σx²", merged.sum_x2, whole.sum_x2, scale(|x, _| x * x));
        assert_close("Σy", merged.sum_y, whole.sum_y, scale(|_, y| y));
        assert_close("Σy²", merged.sum_y2, whole.sum_y2, scale(|_, y| y * y));
        assert_close("Σxy", merged.sum_xy, whole.sum_xy, scale(|x, y| x * y));
    }

    #[test]
    fn merged_sketches_answer_like_one_sketch_of_all_values(
        (parts, order) in parts_in_any_order(value(), 60),
    ) {
        let mut all: Vec<f64> = parts.iter().flatten().copied().collect();
        let mut whole = QuantileSketch::new();
        for &v in &all {
            whole.add(v).unwrap();
        }

        // Each part goes through storage, as a time bucket or another
        // process's sketch would.
        let mut merged = QuantileSketch::new();
        for &part in &order {
            let mut sketch = QuantileSketch::new();
            for &v in &parts[part] {
                sketch.add(v).unwrap();
            }
            let stored = QuantileSketch::from_bytes(&sketch.to_bytes()).unwrap();
            merged.merge(&stored).unwrap();
        }

        all.sort_by(f64::total_cmp);
        let n = all.len() as u64;
        prop_assert_eq!(merged.count(), n);
        prop_assert_eq!(merged.min(), all.first().copied());
        prop_assert_eq!(merged.max(), all.last().copied());
        prop_assert_eq!(merged.order_statistic(0), None);
        prop_assert_eq!(merged.order_statistic(n + 1), None);
        for k in 1..=n {
            let exact = all[k as usize - 1];
            let estimate = merged.order_statistic(k).unwrap();
            prop_assert!(
                within_guarantee(estimate, exact),
                "x₍{}₎ of {}: estimate {} for exact {}", k, n, estimate, exact
            );
            prop_assert_eq!(Some(estimate), whole.order_statistic(k), "k = {}", k);
        }
        for q in [0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0] {
            if n == 0 {
                prop_assert_eq!(merged.quantile(q), None);
                continue;
            }
            let rank = ((n as f64) * q).ceil().clamp(1.0, n as f64) as u64;
            let estimate = merged.quantile(q).unwrap();
            prop_assert_eq!(Some(estimate), merged.order_statistic(rank));
            prop_assert!(within_guarantee(estimate, all[rank as usize - 1]), "q = {}", q);
        }
    }
}
