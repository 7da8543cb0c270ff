//! `Moments` against hand-computed values: means, sample variances across
//! units, and the delta-method variance of a ratio of means.

use stats::Moments;

/// Relative tolerance for values computed by hand as exact fractions.
const TOLERANCE: f64 = 1e-12;

/// What a summary of units should report; `None` where the statistic is
/// undefined.
#[derive(Debug)]
struct Expected {
    mean_x: Option<f64>,
    variance_x: Option<f64>,
    variance_y: Option<f64>,
    covariance_xy: Option<f64>,
    ratio: Option<f64>,
    ratio_unit_variance: Option<f64>,
    ratio_variance: Option<f64>,
}

#[track_caller]
fn check(units: &[(f64, f64)], expected: Expected) {
    let moments: Moments = units.iter().copied().collect();
    assert_eq!(moments.n, units.len() as u64);
    let actual = [
        ("mean_x", moments.mean_x(), expected.mean_x),
        ("variance_x", moments.variance_x(), expected.variance_x),
        ("variance_y", moments.variance_y(), expected.variance_y),
        (
            "covariance_xy",
            moments.covariance_xy(),
            expected.covariance_xy,
        ),
        ("ratio", moments.ratio(), expected.ratio),
        (
            "ratio_unit_variance",
            moments.ratio_unit_variance(),
            expected.ratio_unit_variance,
        ),
        (
            "ratio_variance",
            moments.ratio_variance(),
            expected.ratio_variance,
        ),
    ];
    for (name, actual, expected) in actual {
        match (actual, expected) {
            (Some(a), Some(e)) => assert!(
                (a - e).abs() <= TOLERANCE * e.abs().max(1.0),
                "{name}: {a} but expected {e} for {units:?}"
            ),
            (a, e) => assert_eq!(a, e, "{name} for {units:?}"),
        }
    }
}

#[test]
fn ratio_of_one() {
    // Σx = 12, Σx² = 50, Σy = 12, Σy² = 40, Σxy = 42, n = 4.
    // s²ₓ = (50 − 36)/3, s²ᵧ = (40 − 36)/3, sₓᵧ = (42 − 36)/3, R = 1, ȳ = 3.
    // Residuals x − R·y = −1, 0, −1, 2: sample variance 6/3 = 2; / ȳ² = 2/9.
    check(
        &[(1.0, 2.0), (2.0, 2.0), (3.0, 4.0), (6.0, 4.0)],
        Expected {
            mean_x: Some(3.0),
            variance_x: Some(14.0 / 3.0),
            variance_y: Some(4.0 / 3.0),
            covariance_xy: Some(2.0),
            ratio: Some(1.0),
            ratio_unit_variance: Some(2.0 / 9.0),
            ratio_variance: Some(2.0 / 9.0 / 4.0),
        },
    );
}

#[test]
fn ratio_of_a_half() {
    // Σx = 4, Σy = 8, R = 1/2, ȳ = 2; s²ₓ = 2/3, s²ᵧ = 2, sₓᵧ = 1.
    // Residuals −1/2, 1/2, 0, 0: variance 1/6; / ȳ² = 1/24. In the means form:
    // s²ₓ/m_y² − 2·sₓᵧ·m_x/m_y³ + m_x²·s²ᵧ/m_y⁴ = 1/6 − 1/4 + 1/8 = 1/24.
    check(
        &[(0.0, 1.0), (1.0, 1.0), (1.0, 2.0), (2.0, 4.0)],
        Expected {
            mean_x: Some(1.0),
            variance_x: Some(2.0 / 3.0),
            variance_y: Some(2.0),
            covariance_xy: Some(1.0),
            ratio: Some(0.5),
            ratio_unit_variance: Some(1.0 / 24.0),
            ratio_variance: Some(1.0 / 96.0),
        },
    );
}

#[test]
fn a_mean_metric_is_a_ratio_over_one() {
    // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, Σ(x − 5)² = 32, sample variance 32/7.
    // With y = 1 the ratio is the mean and its variance that of the mean.
    let units = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0].map(|x| (x, 1.0));
    check(
        &units,
        Expected {
            mean_x: Some(5.0),
            variance_x: Some(32.0 / 7.0),
            variance_y: Some(0.0),
            covariance_xy: Some(0.0),
            ratio: Some(5.0),
            ratio_unit_variance: Some(32.0 / 7.0),
            ratio_variance: Some(4.0 / 7.0),
        },
    );
    let moments: Moments = units.into_iter().collect();
    assert_eq!(moments.mean_x_variance(), Some(4.0 / 7.0));
}

#[test]
fn a_proportion() {
    // 3 of 4 units converted: p = 3/4, sample variance n/(n − 1)·p(1 − p) = 1/4.
    check(
        &[(1.0, 1.0), (0.0, 1.0), (1.0, 1.0), (1.0, 1.0)],
        Expected {
            mean_x: Some(0.75),
            variance_x: Some(0.25),
            variance_y: Some(0.0),
            covariance_xy: Some(0.0),
            ratio: Some(0.75),
            ratio_unit_variance: Some(0.25),
            ratio_variance: Some(0.25 / 4.0),
        },
    );
}

#[test]
fn no_units_say_nothing() {
    check(
        &[],
        Expected {
            mean_x: None,
            variance_x: None,
            variance_y: None,
            covariance_xy: None,
            ratio: None,
            ratio_unit_variance: None,
            ratio_variance: None,
        },
    );
}

#[test]
fn one_unit_has_a_mean_but_no_variance() {
    check(
        &[(3.0, 2.0)],
        Expected {
            mean_x: Some(3.0),
            variance_x: None,
            variance_y: None,
            covariance_xy: None,
            ratio: Some(1.5),
            ratio_unit_variance: None,
            ratio_variance: None,
        },
    );
}

#[test]
fn a_zero_denominator_has_no_ratio() {
    check(
        &[(1.0, 0.0), (2.0, 0.0)],
        Expected {
            mean_x: Some(1.5),
            variance_x: Some(0.5),
            variance_y: Some(0.0),
            covariance_xy: Some(0.0),
            ratio: None,
            ratio_unit_variance: None,
            ratio_variance: None,
        },
    );
}

#[test]
fn rounding_never_makes_a_variance_negative() {
    for value in [0.1, 1e8 + 0.1, 123.456, -7.7e-3] {
        for n in 2..50 {
            let moments: Moments = (0..n).map(|_| (value, value)).collect();
            for variance in [
                moments.variance_x(),
                moments.variance_y(),
                moments.ratio_unit_variance(),
            ] {
                let variance = variance.expect("two or more units");
                assert!(
                    (0.0..=1e-6 * value * value).contains(&variance),
                    "{variance} for {n} units of {value}"
                );
            }
        }
    }
}

#[test]
fn merge_adds_field_by_field() {
    let mut left: Moments = [(1.0, 2.0), (2.0, 2.0)].into_iter().collect();
    let right: Moments = [(3.0, 4.0), (6.0, 4.0)].into_iter().collect();
    left.merge(&right);
    assert_eq!(
        left,
        Moments {
            n: 4,
            sum_x: 12.0,
            sum_x2: 50.0,
            sum_y: 12.0,
            sum_y2: 40.0,
            sum_xy: 42.0,
        }
    );
    let before = left;
    left.merge(&Moments::new());
    assert_eq!(left, before, "merging nothing changes nothing");
}

#[test]
fn serde_keeps_the_field_names() {
    let moments: Moments = [(1.0, 2.0), (2.0, 2.0)].into_iter().collect();
    let json = serde_json::to_value(moments).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "n": 2, "sum_x": 3.0, "sum_x2": 5.0, "sum_y": 4.0, "sum_y2": 8.0, "sum_xy": 6.0
        })
    );
    assert_eq!(serde_json::from_value::<Moments>(json).unwrap(), moments);
}
