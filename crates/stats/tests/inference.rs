//! Properties of the inference engine that hold for every input, checked on
//! generated data (proptest, fixed seed), and an A/A simulation: with no
//! true difference, fixed-horizon Welch p-values are uniform.
//!
//! - Every p-value lies in [0, 1], adjusted ones no lower than raw ones;
//!   every interval contains its estimate; P(best) sums to 1.
//! - Merging arm summaries and then analysing equals analysing the data
//!   summarised at once.
//! - Malformed input is a typed error; thin data a typed refusal.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_distr::{Distribution, Normal};
use serde_json::Value;
use stats::inference::{
    AnalysisConfig, ArmPosterior, InputError, InsufficientData, Lift, LiftStatus, MeanSummary,
    MetricAnalysis, MetricData, MetricObservations, Outcome, ProportionSummary, QuantileSample,
    RatioSummary, analyze, quantile_estimate, thompson_choose,
};
use stats::{Moments, QuantileSketch};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 64,
        rng_seed: RngSeed::Fixed(0x5eed_1f00),
        ..ProptestConfig::default()
    }
}

fn run(metric: MetricData) -> MetricAnalysis {
    let arms = match &metric {
        MetricData::Proportion(a) => a.len(),
        MetricData::Mean(a) => a.len(),
        MetricData::Ratio(a) => a.len(),
        MetricData::Cuped { arms, .. } => arms.len(),
        MetricData::Quantile { arms, .. } => arms.len(),
    };
    analyze(
        &MetricObservations {
            weights: vec![1.0; arms],
            metric,
            guardrail: None,
        },
        &AnalysisConfig::default(),
    )
    .expect("valid input")
}

/// A unit's value: mostly moderate, sometimes repeated.
fn unit_value() -> impl Strategy<Value = f64> + Clone {
    prop_oneof![0.0..100.0f64, (0u32..5).prop_map(f64::from)]
}

fn mean_summary(values: &[f64]) -> MeanSummary {
    let moments: Moments = values.iter().map(|&x| (x, 1.0)).collect();
    MeanSummary::from(&moments)
}

/// Units of 2–4 arms, each with 1–60 units.
fn mean_arms() -> impl Strategy<Value = Vec<Vec<f64>>> {
    vec(vec(unit_value(), 1..60), 2..5)
}

fn proportion_arms() -> impl Strategy<Value = Vec<ProportionSummary>> {
    vec(
        (0u64..5000).prop_flat_map(|n| {
            (Just(n), 0..=n).prop_map(|(n, conversions)| ProportionSummary { n, conversions })
        }),
        2..5,
    )
}

fn in_unit_interval(p: f64) -> bool {
    (0.0..=1.0).contains(&p)
}

/// Every `p_value` (and adjusted p-value) anywhere in the result.
fn p_values(value: &Value, key: &str, out: &mut Vec<(String, f64)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                p_values(v, k, out);
            }
        }
        Value::Array(items) => {
            for v in items {
                p_values(v, key, out);
            }
        }
        Value::Number(n) if key.ends_with("p_value") || key == "holm" || key == "raw" => {
            out.push((key.to_string(), n.as_f64().unwrap()));
        }
        Value::Number(n) if key == "benjamini_hochberg" => {
            out.push((key.to_string(), n.as_f64().unwrap()));
        }
        _ => {}
    }
}

fn contains(ci: [f64; 2], x: f64) -> bool {
    ci[0] <= x && x <= ci[1]
}

fn check_lift(lift: &Lift) -> Result<(), TestCaseError> {
    let Some(&estimate) = lift.estimate.value() else {
        prop_assert!(lift.welch_t.is_insufficient());
        return Ok(());
    };
    if let Some(w) = lift.welch_t.value() {
        prop_assert!(contains(w.ci, estimate), "welch {:?} {estimate}", w.ci);
    }
    if let Some(z) = lift.z.value() {
        prop_assert!(contains(z.ci, estimate));
    }
    if let Some(s) = lift.sequential.value() {
        prop_assert!(contains(s.ci, estimate));
    }
    if let Some(o) = lift.one_sided.value() {
        prop_assert!(o.fixed_lower <= estimate && estimate <= o.fixed_upper);
        prop_assert!(o.seq_lower <= estimate && estimate <= o.seq_upper);
    }
    if let Some(b) = lift.bayes_flat.value() {
        prop_assert!(contains(b.ci, estimate));
        prop_assert!(in_unit_interval(b.chance_to_win));
        prop_assert!(b.risk_control >= 0.0 && b.risk_treatment >= 0.0);
    }
    if let Some(b) = lift.bayes_prior.value() {
        prop_assert!(contains(b.ci, b.post_mean));
        prop_assert!(in_unit_interval(b.chance_to_win));
        // Shrinkage toward the prior mean 0.
        prop_assert!(b.post_mean.abs() <= estimate.abs() * (1.0 + 1e-12));
    }
    Ok(())
}

/// Paths of `null`s outside the places where `null` means "undefined" (the
/// multiple-testing lists, an inapplicable P(best)). serde_json writes NaN
/// as `null`, so this finds any NaN that slipped out instead of a refusal.
fn stray_nulls(value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Null => out.push(path.to_string()),
        Value::Object(map) => {
            for (k, v) in map {
                if k != "multiple_testing" && !(k == "prob_best" && v.is_null()) {
                    stray_nulls(v, &format!("{path}.{k}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                stray_nulls(v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn check_analysis(analysis: &MetricAnalysis) -> Result<(), TestCaseError> {
    let json = serde_json::to_value(analysis).unwrap();
    let mut nulls = Vec::new();
    stray_nulls(&json, "analysis", &mut nulls);
    prop_assert!(nulls.is_empty(), "NaN or null at {nulls:?}");
    let mut found = Vec::new();
    p_values(&json, "", &mut found);
    for (key, p) in &found {
        prop_assert!(in_unit_interval(*p), "{key} = {p}");
    }
    for comparison in analysis.comparisons.iter().filter_map(Outcome::value) {
        check_lift(&comparison.absolute)?;
        check_lift(&comparison.relative)?;
    }
    for corrected in [
        &analysis.multiple_testing.absolute,
        &analysis.multiple_testing.relative,
    ] {
        for ((raw, holm), bh) in corrected
            .raw
            .iter()
            .zip(&corrected.holm)
            .zip(&corrected.benjamini_hochberg)
        {
            if let (Some(raw), Some(holm), Some(bh)) = (raw, holm, bh) {
                prop_assert!(holm >= raw && bh >= raw && holm >= bh);
            }
        }
    }
    if let Some(best) = &analysis.prob_best {
        for p in best
            .gaussian_flat
            .value()
            .into_iter()
            .chain(best.beta_uniform.as_ref())
        {
            let total: f64 = p.iter().sum();
            prop_assert!((total - 1.0).abs() < 1e-8, "P(best) sums to {total}");
        }
    }
    Ok(())
}

/// Numbers equal to 1e-9 relative (1e-12 absolute near 0), everything else
/// exactly.
fn assert_close(a: &Value, b: &Value, path: &str) -> Result<(), TestCaseError> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            prop_assert!(
                (x - y).abs() <= 1e-9 * x.abs().max(y.abs()) || (x - y).abs() <= 1e-12,
                "{path}: {x} vs {y}"
            );
        }
        (Value::Object(x), Value::Object(y)) => {
            prop_assert_eq!(x.len(), y.len(), "{}", path);
            for (k, v) in x {
                assert_close(v, &y[k], &format!("{path}.{k}"))?;
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            prop_assert_eq!(x.len(), y.len(), "{}", path);
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                assert_close(v, w, &format!("{path}[{i}]"))?;
            }
        }
        _ => prop_assert_eq!(a, b, "{}", path),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mean_results_are_coherent(arms in mean_arms()) {
        let summaries = arms.iter().map(|a| mean_summary(a)).collect();
        check_analysis(&run(MetricData::Mean(summaries)))?;
    }

    #[test]
    fn proportion_results_are_coherent(arms in proportion_arms()) {
        check_analysis(&run(MetricData::Proportion(arms)))?;
    }

    #[test]
    fn ratio_results_are_coherent(
        arms in vec(vec((unit_value(), 0u32..6), 1..60), 2..4)
    ) {
        let summaries = arms
            .iter()
            .map(|units| {
                let moments: Moments = units.iter().map(|&(x, y)| (x, f64::from(y))).collect();
                RatioSummary::from(&moments)
            })
            .collect();
        check_analysis(&run(MetricData::Ratio(summaries)))?;
    }

    /// Summaries of parts, merged, analyse like the summary of the whole.
    #[test]
    fn merged_summaries_analyse_like_the_whole(
        arms in vec(vec(vec(unit_value(), 0..30), 1..4), 2..4)
    ) {
        let whole: Vec<MeanSummary> = arms
            .iter()
            .map(|parts| mean_summary(&parts.concat()))
            .collect();
        let merged: Vec<MeanSummary> = arms
            .iter()
            .map(|parts| {
                parts.iter().fold(MeanSummary::default(), |mut total, part| {
                    total.merge(&mean_summary(part));
                    total
                })
            })
            .collect();
        let whole = serde_json::to_value(run(MetricData::Mean(whole))).unwrap();
        let merged = serde_json::to_value(run(MetricData::Mean(merged))).unwrap();
        assert_close(&whole, &merged, "analysis")?;
    }

    #[test]
    fn merged_proportions_analyse_exactly_like_the_whole(
        parts in vec(vec((0u64..2000, 0u64..2000), 1..4), 2..4)
    ) {
        let arms: Vec<Vec<ProportionSummary>> = parts
            .iter()
            .map(|arm| {
                arm.iter()
                    .map(|&(a, b)| ProportionSummary { n: a.max(b), conversions: a.min(b) })
                    .collect()
            })
            .collect();
        let merged: Vec<ProportionSummary> = arms
            .iter()
            .map(|arm| {
                arm.iter().fold(ProportionSummary::default(), |mut total, part| {
                    total.merge(part);
                    total
                })
            })
            .collect();
        let whole: Vec<ProportionSummary> = arms
            .iter()
            .map(|arm| ProportionSummary {
                n: arm.iter().map(|p| p.n).sum(),
                conversions: arm.iter().map(|p| p.conversions).sum(),
            })
            .collect();
        prop_assert_eq!(run(MetricData::Proportion(merged)), run(MetricData::Proportion(whole)));
    }

    /// From a sketch, the quantile and its interval's ends are within the
    /// sketch's 1% of the exact order statistics.
    #[test]
    fn sketch_quantiles_are_within_one_percent(
        values in vec(1.0..1e4f64, 1..400),
        nu in prop_oneof![Just(0.5), Just(0.95), Just(0.99), 0.01..0.99f64],
    ) {
        let mut sketch = QuantileSketch::new();
        for &v in &values {
            sketch.add(v).unwrap();
        }
        let exact = QuantileSample::from_values(0, values).unwrap();
        let sketched = QuantileSample::from_sketch(sketch);
        let e = quantile_estimate(&exact, nu, 0.05).unwrap();
        let s = quantile_estimate(&sketched, nu, 0.05).unwrap();
        prop_assert_eq!(e.quantile_index_1based, s.quantile_index_1based);
        for (x, y) in [
            (e.quantile_hat, s.quantile_hat),
            (e.quantile_lower, s.quantile_lower),
            (e.quantile_upper, s.quantile_upper),
        ] {
            prop_assert!((x - y).abs() <= 0.01 * x.abs() * (1.0 + 1e-9), "{x} vs {y}");
        }
    }
}

/// Kolmogorov–Smirnov statistic of a sample against U(0, 1).
fn ks_uniform(mut sample: Vec<f64>) -> f64 {
    sample.sort_by(f64::total_cmp);
    let n = sample.len() as f64;
    sample
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let below = i as f64 / n;
            let at = (i + 1) as f64 / n;
            (at - p).max(p - below)
        })
        .fold(0.0, f64::max)
}

/// 2,000 A/A experiments from a fixed seed (unequal arm sizes and spreads,
/// so Welch's correction matters): the fixed-horizon Welch p-values are
/// uniform by a Kolmogorov–Smirnov test at α = 0.001. Deterministic, since
/// the generator is seeded.
#[test]
fn welch_p_values_are_uniform_in_a_a_experiments() {
    const EXPERIMENTS: usize = 2000;
    const KS_ALPHA: f64 = 0.001;
    let mut rng = ChaCha8Rng::seed_from_u64(0x00aa_2000);
    let control = Normal::new(10.0, 2.0).unwrap();
    let treatment = Normal::new(10.0, 4.0).unwrap();
    let mut p_values = Vec::with_capacity(EXPERIMENTS);
    for _ in 0..EXPERIMENTS {
        let c: Vec<f64> = (0..40).map(|_| control.sample(&mut rng)).collect();
        let t: Vec<f64> = (0..25).map(|_| treatment.sample(&mut rng)).collect();
        let analysis = run(MetricData::Mean(vec![mean_summary(&c), mean_summary(&t)]));
        let comparison = analysis.comparisons[0]
            .value()
            .expect("both arms have units");
        p_values.push(
            comparison
                .absolute
                .welch_t
                .value()
                .expect("a defined test")
                .p_value,
        );
    }
    let statistic = ks_uniform(p_values);
    // Asymptotic critical value √(−ln(α/2)/2)/√n.
    let critical = (-(KS_ALPHA / 2.0).ln() / 2.0).sqrt() / (EXPERIMENTS as f64).sqrt();
    assert!(
        statistic < critical,
        "KS statistic {statistic} ≥ {critical}: Welch p-values are not uniform under A/A"
    );
}

#[test]
fn malformed_input_is_a_typed_error() {
    let config = AnalysisConfig::default();
    let with = |metric: MetricData, weights: Vec<f64>| {
        analyze(
            &MetricObservations {
                weights,
                metric,
                guardrail: None,
            },
            &config,
        )
        .err()
    };
    let arm = |n, conversions| ProportionSummary { n, conversions };
    assert_eq!(
        with(MetricData::Proportion(vec![arm(10, 1)]), vec![1.0]),
        Some(InputError::TooFewArms(1))
    );
    assert_eq!(
        with(
            MetricData::Proportion(vec![arm(10, 11), arm(10, 1)]),
            vec![1.0, 1.0]
        ),
        Some(InputError::ConversionsExceedUnits {
            arm: 0,
            conversions: 11,
            n: 10
        })
    );
    assert_eq!(
        with(
            MetricData::Proportion(vec![arm(10, 1), arm(10, 1)]),
            vec![1.0, -1.0]
        ),
        Some(InputError::InvalidWeight {
            arm: 1,
            weight: -1.0
        })
    );
    let mean = |sum, sum_squares| MeanSummary {
        n: 3,
        sum,
        sum_squares,
    };
    assert_eq!(
        with(
            MetricData::Mean(vec![mean(1.0, 1.0), mean(f64::NAN, 1.0)]),
            vec![1.0, 1.0]
        ),
        Some(InputError::NonFinite {
            arm: 1,
            field: "sum"
        })
    );
    assert_eq!(
        with(
            MetricData::Mean(vec![mean(1.0, -1.0), mean(1.0, 1.0)]),
            vec![1.0, 1.0]
        ),
        Some(InputError::Negative {
            arm: 0,
            field: "sum_squares"
        })
    );
    assert_eq!(
        QuantileSample::from_values(2, vec![1.0, f64::INFINITY]).err(),
        Some(InputError::NonFinite {
            arm: 2,
            field: "values"
        })
    );
    let bad_alpha = AnalysisConfig {
        alpha: 1.5,
        ..AnalysisConfig::default()
    };
    assert!(matches!(
        analyze(
            &MetricObservations {
                weights: vec![1.0, 1.0],
                metric: MetricData::Proportion(vec![arm(10, 1), arm(10, 2)]),
                guardrail: None,
            },
            &bad_alpha
        ),
        Err(InputError::InvalidConfig(_))
    ));
    assert!(
        thompson_choose(
            &[ArmPosterior::Beta {
                alpha: 0.0,
                beta: 1.0
            }],
            7
        )
        .is_err()
    );
}

#[test]
fn thin_data_is_a_typed_refusal_never_nan() {
    let analysis = run(MetricData::Proportion(vec![
        ProportionSummary {
            n: 0,
            conversions: 0,
        },
        ProportionSummary {
            n: 100,
            conversions: 0,
        },
    ]));
    assert_eq!(
        analysis.arms[0],
        Outcome::Insufficient(InsufficientData::EmptyArm { arm: 0 })
    );
    assert_eq!(
        analysis.comparisons[0],
        Outcome::Insufficient(InsufficientData::EmptyArm { arm: 0 })
    );
    let analysis = run(MetricData::Proportion(vec![
        ProportionSummary {
            n: 100,
            conversions: 0,
        },
        ProportionSummary {
            n: 100,
            conversions: 3,
        },
    ]));
    let comparison = analysis.comparisons[0].value().unwrap();
    assert_eq!(
        comparison.relative.estimate,
        Outcome::Insufficient(InsufficientData::ZeroBaseline)
    );
    assert_eq!(
        comparison.absolute.status,
        LiftStatus::InsufficientData(InsufficientData::ZeroVariance { arm: 0 })
    );
    let mut nulls = Vec::new();
    stray_nulls(
        &serde_json::to_value(&analysis).unwrap(),
        "analysis",
        &mut nulls,
    );
    assert!(nulls.is_empty(), "NaN or null at {nulls:?}");
}

#[test]
fn without_posteriors_the_lifts_are_the_same_and_the_integrals_are_skipped() {
    let observations = MetricObservations {
        weights: vec![1.0, 1.0],
        metric: MetricData::Proportion(vec![
            ProportionSummary {
                n: 1000,
                conversions: 100,
            },
            ProportionSummary {
                n: 1000,
                conversions: 130,
            },
        ]),
        guardrail: None,
    };
    let full = analyze(&observations, &AnalysisConfig::default()).expect("analysis");
    let lean = analyze(
        &observations,
        &AnalysisConfig {
            posteriors: false,
            ..AnalysisConfig::default()
        },
    )
    .expect("analysis");
    assert!(full.prob_best.is_some() && lean.prob_best.is_none());
    let (full, lean) = (
        full.comparisons[0].value().expect("comparison"),
        lean.comparisons[0].value().expect("comparison"),
    );
    assert!(full.beta_binomial.is_some() && lean.beta_binomial.is_none());
    assert_eq!(full.absolute, lean.absolute);
    assert_eq!(full.relative, lean.relative);
}
