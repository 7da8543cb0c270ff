//! Sticky bucketing: the algorithm is frozen by test vectors, percentages only
//! ever add units as they grow, buckets are uniform and independent across
//! flags, and a split's realised shares match its weights.
//!
//! Nothing here is random: statistical checks run over the fixed units
//! `user-0` … `user-99999`, so they pass or fail the same way on every run.
//! Their thresholds are 0.999 quantiles, chosen when the checks were written;
//! a failure means the bucketing changed, not bad luck.

use flags::{
    BUCKET_COUNT, Context, FlagSet, FlagSpec, Reason, ServeSpec, bucket, split_boundaries,
    weight_units,
};
use proptest::prelude::*;
use serde_json::json;

/// The fixed population of the statistical checks.
const UNIT_COUNT: u32 = 100_000;

fn units() -> impl Iterator<Item = String> {
    (0..UNIT_COUNT).map(|i| format!("user-{i}"))
}

/// `(salt, unit, bucket)`. Computed from the implementation when the
/// algorithm was frozen and checked against an independent xxh3 (the C
/// reference, through Python's `xxhash`): `floor(xxh3_64(salt ":" unit) ×
/// 100000 / 2^64)`. Also listed in docs/bucketing.md. Never edit these: if
/// one fails, bucketing changed and every user would move.
const VECTORS: &[(&str, &str, u32)] = &[
    ("calc-model", "user-1", 22_758),
    ("calc-model", "user-2", 97_938),
    ("calc-model", "user-42", 80_580),
    ("calc-model", "", 44_229),
    ("checkout-flow", "user-1", 42_142),
    (
        "checkout-flow",
        "9f1c2e4a-6b7d-4f3e-9a1b-2c3d4e5f6a7b",
        52_835,
    ),
    ("new-onboarding", "ann@example.com", 37_923),
    ("new-onboarding", "Ann@example.com", 5_172),
    ("a", "b", 20_955),
    ("", "user-1", 46_042),
    ("flag", "ünïcødé-ユーザー", 33_566),
    ("salt:with:colons", "unit", 51_406),
];

#[test]
fn frozen_vectors() {
    for (salt, unit, expected) in VECTORS {
        assert_eq!(bucket(salt, unit), *expected, "bucket({salt:?}, {unit:?})");
    }
    // A key longer than the stack buffer takes the heap path; same algorithm.
    assert_eq!(bucket("rollout-2026", &"x".repeat(300)), 67_862);
    assert_eq!(BUCKET_COUNT, 100_000);
}

#[test]
fn a_flag_serves_by_the_frozen_buckets() {
    // 22,758 and 42,142 lie either side of a 30% boundary (30,000 buckets).
    let set = two_arm_flag("calc-model", None, 30_000);
    assert_eq!(served(&set, "user-1"), Some("treatment"));
    let set = two_arm_flag("checkout-flow", None, 30_000);
    assert_eq!(served(&set, "user-1"), Some("control"));
    // The salt replaces the key when given.
    let set = two_arm_flag("anything", Some("calc-model"), 22_759);
    assert_eq!(served(&set, "user-1"), Some("treatment"));
    let set = two_arm_flag("anything", Some("calc-model"), 22_758);
    assert_eq!(served(&set, "user-1"), Some("control"));
}

/// A boolean flag whose default splits `treatment` (first, `treatment_units`
/// buckets) and `control` (the rest).
fn two_arm_flag(key: &str, salt: Option<&str>, treatment_units: u32) -> FlagSet {
    let treatment = f64::from(treatment_units) / 1000.0;
    let control = f64::from(BUCKET_COUNT - treatment_units) / 1000.0;
    let mut spec: FlagSpec = serde_json::from_value(json!({
        "key": key, "type": "boolean", "off_variant": "control", "salt": salt,
        "variants": {"control": false, "treatment": true},
        "default": {"serve": {"variant": "control"}}
    }))
    .expect("flag deserializes");
    // Not through `json!`: a `serde_json::Value` object sorts its keys, and
    // the order of the arms is the point here.
    spec.default.serve = ServeSpec::split([("treatment", treatment), ("control", control)]);
    match flags::compile(&[spec], &[]) {
        Ok(set) => set,
        Err(errors) => panic!("{errors:?}"),
    }
}

fn served<'a>(set: &'a FlagSet, unit: &str) -> Option<&'a str> {
    let key = set
        .iter()
        .next()
        .map(|f| f.key().to_owned())
        .unwrap_or_default();
    let eval = set.evaluate(&key, &Context::new(unit));
    assert_eq!(eval.reason, Reason::Split, "{eval:?}");
    eval.variant
}

proptest! {
    /// Growing the first arm of a split only adds units to it, at the level
    /// of buckets and boundaries.
    #[test]
    fn growing_a_percentage_only_adds_units(
        salt in ".{0,40}",
        unit in ".{0,80}",
        (p1, p2) in (0..=BUCKET_COUNT, 0..=BUCKET_COUNT).prop_map(|(a, b)| (a.min(b), a.max(b))),
    ) {
        let b = bucket(&salt, &unit);
        prop_assert!(b < BUCKET_COUNT);
        let first_arm_end = |units: u32| split_boundaries(&[units, BUCKET_COUNT - units])[0];
        prop_assert_eq!(first_arm_end(p1), p1);
        if b < first_arm_end(p1) {
            prop_assert!(b < first_arm_end(p2));
        }
        // Percentages in steps of 0.001 convert to exactly those bucket counts.
        prop_assert_eq!(weight_units(f64::from(p1) / 1000.0), Some(p1));
    }

    /// The same property through a real flag: a unit served `treatment` at
    /// p1% is still served it at p2% ≥ p1%.
    #[test]
    fn growing_a_flag_rollout_only_adds_units(
        salt in ".{0,40}",
        unit in ".{1,80}",
        (p1, p2) in (0..=BUCKET_COUNT, 0..=BUCKET_COUNT).prop_map(|(a, b)| (a.min(b), a.max(b))),
    ) {
        let (set_p1, set_p2) = (two_arm_flag("rollout", Some(&salt), p1), two_arm_flag("rollout", Some(&salt), p2));
        let (at_p1, at_p2) = (served(&set_p1, &unit), served(&set_p2, &unit));
        if at_p1 == Some("treatment") {
            prop_assert_eq!(at_p2, Some("treatment"));
        }
        // And the flag agrees with the bucket.
        let expected = if bucket(&salt, &unit) < p1 { "treatment" } else { "control" };
        prop_assert_eq!(at_p1, Some(expected));
    }
}

#[test]
fn the_documented_rollout_only_adds_units() {
    // 5% → 25% → 100%, as in a staged release, over the fixed population.
    let stages: Vec<FlagSet> = [5_000, 25_000, 100_000]
        .iter()
        .map(|&u| two_arm_flag("new-checkout", None, u))
        .collect();
    let mut counts = [0u32; 3];
    for unit in units().take(20_000) {
        let served: Vec<bool> = stages
            .iter()
            .map(|s| served(s, &unit) == Some("treatment"))
            .collect();
        for (i, in_treatment) in served.iter().enumerate() {
            counts[i] += u32::from(*in_treatment);
        }
        assert!(
            !served[0] || served[1],
            "{unit} left the rollout going from 5% to 25%"
        );
        assert!(
            !served[1] || served[2],
            "{unit} left the rollout going from 25% to 100%"
        );
    }
    assert_eq!(counts[2], 20_000);
    assert!(counts[0] < counts[1]);
}

/// Pearson's statistic of observed counts against equal expected counts.
fn chi_square_uniform(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    let expected = total as f64 / counts.len() as f64;
    counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum()
}

/// 0.999 quantile of the chi-square distribution with 99 degrees of freedom
/// (100 bins). Computed from the regularized incomplete gamma function
/// (P(99/2, x/2) = 0.999, by bisection); statistical tables agree (148.23).
const CHI2_99_DOF_Q999: f64 = 148.230;
/// 0.999 quantile for 81 degrees of freedom ((10-1)×(10-1), a 10×10 table).
const CHI2_81_DOF_Q999: f64 = 126.083;
/// 0.999 quantile for 1 degree of freedom (a 2×2 table).
const CHI2_1_DOF_Q999: f64 = 10.828;

#[test]
fn buckets_are_uniform() {
    for salt in ["calc-model", "checkout-flow", "new-onboarding"] {
        let mut bins = [0u64; 100];
        for unit in units() {
            bins[(bucket(salt, &unit) / (BUCKET_COUNT / 100)) as usize] += 1;
        }
        let statistic = chi_square_uniform(&bins);
        assert!(
            statistic < CHI2_99_DOF_Q999,
            "salt {salt}: chi-square {statistic:.1} over 100 bins"
        );
    }
}

/// Pearson's statistic of independence for a contingency table.
fn chi_square_independence<const R: usize, const C: usize>(table: &[[u64; C]; R]) -> f64 {
    let total: u64 = table.iter().flatten().sum();
    let rows: Vec<u64> = table.iter().map(|r| r.iter().sum()).collect();
    let cols: Vec<u64> = (0..C).map(|j| table.iter().map(|r| r[j]).sum()).collect();
    let mut statistic = 0.0;
    for (i, row) in table.iter().enumerate() {
        for (j, &observed) in row.iter().enumerate() {
            let expected = rows[i] as f64 * cols[j] as f64 / total as f64;
            statistic += (observed as f64 - expected).powi(2) / expected;
        }
    }
    statistic
}

#[test]
fn buckets_are_independent_across_flags() {
    // Being in the first decile (or half) of one flag says nothing about where
    // the same unit lands in another flag.
    for (a, b) in [
        ("calc-model", "checkout-flow"),
        ("new-onboarding", "new-onboarding-v2"),
    ] {
        let mut deciles = [[0u64; 10]; 10];
        let mut halves = [[0u64; 2]; 2];
        for unit in units() {
            let (x, y) = (bucket(a, &unit), bucket(b, &unit));
            deciles[(x / 10_000) as usize][(y / 10_000) as usize] += 1;
            halves[(x / 50_000) as usize][(y / 50_000) as usize] += 1;
        }
        let statistic = chi_square_independence(&deciles);
        assert!(
            statistic < CHI2_81_DOF_Q999,
            "{a} × {b}: chi-square {statistic:.1} over deciles"
        );
        let statistic = chi_square_independence(&halves);
        assert!(
            statistic < CHI2_1_DOF_Q999,
            "{a} × {b}: chi-square {statistic:.2} over halves"
        );
    }
}

#[test]
fn split_shares_match_the_weights() {
    let spec: FlagSpec = serde_json::from_value(json!({
        "key": "checkout-flow", "type": "string", "off_variant": "a",
        "variants": {"a": "A", "b": "B", "c": "C"},
        "default": {"serve": {"split": {"a": 34, "b": 33, "c": 33}}}
    }))
    .expect("flag deserializes");
    let set = flags::compile(&[spec], &[]).expect("compiles");
    let mut counts = [0u32; 3];
    for unit in units() {
        match set
            .evaluate("checkout-flow", &Context::new(unit.as_str()))
            .variant
        {
            Some("a") => counts[0] += 1,
            Some("b") => counts[1] += 1,
            Some("c") => counts[2] += 1,
            other => panic!("{unit} was served {other:?}"),
        }
    }
    let n = f64::from(UNIT_COUNT);
    for (count, share) in counts.iter().zip([0.34, 0.33, 0.33]) {
        // Each count is binomial(n, share); 5 standard deviations is far
        // outside chance for a fixed population and far inside any bug that
        // shifts a boundary by more than a fraction of a percent.
        let sigma = (n * share * (1.0 - share)).sqrt();
        let deviation = (f64::from(*count) - n * share).abs();
        assert!(
            deviation < 5.0 * sigma,
            "{counts:?}: {count} against {share}"
        );
    }
}

#[test]
fn rule_splits_and_the_default_split_share_the_flag_salt() {
    // The same weights in a rule and in the default put a unit in the same
    // arm, whichever serves it: the salt is the flag's, not the rule's.
    let spec: FlagSpec = serde_json::from_value(json!({
        "key": "calc-model", "type": "string", "off_variant": "a",
        "variants": {"a": "A", "b": "B"},
        "rules": [{"conditions": [{"attribute": "plan", "op": "eq", "value": "pro"}], "serve": {"split": {"a": 20, "b": 80}}}],
        "default": {"serve": {"split": {"a": 20, "b": 80}}}
    }))
    .expect("flag deserializes");
    let set = flags::compile(&[spec], &[]).expect("compiles");
    for unit in units().take(5_000) {
        let by_rule = set.evaluate(
            "calc-model",
            &Context::new(unit.as_str()).with("plan", "pro"),
        );
        let by_default = set.evaluate("calc-model", &Context::new(unit.as_str()));
        assert_eq!(
            (by_rule.reason, by_default.reason),
            (Reason::Split, Reason::Split)
        );
        assert_eq!(by_rule.variant, by_default.variant, "{unit}");
        let expected = if bucket("calc-model", &unit) < 20_000 {
            "a"
        } else {
            "b"
        };
        assert_eq!(by_rule.variant, Some(expected));
    }
}

#[test]
fn arms_own_contiguous_ranges_in_declared_order() {
    assert_eq!(
        split_boundaries(&[34_000, 33_000, 33_000]),
        [34_000, 67_000, 100_000]
    );
    // Zero-weight arms own nothing.
    assert_eq!(split_boundaries(&[0, 100_000, 0]), [0, 100_000, 100_000]);
    assert_eq!(weight_units(33.333), Some(33_333));
    assert_eq!(weight_units(0.0005), None);
    // The same weights in another order give other units to each arm.
    let first_a = two_arm_flag("order", None, 40_000);
    for unit in units().take(1_000) {
        let b = bucket("order", &unit);
        assert_eq!(
            served(&first_a, &unit),
            Some(if b < 40_000 { "treatment" } else { "control" })
        );
    }
}

/// A 4-arm experiment flag (`simple` first, the control) whose split applies
/// to `rollout_units` buckets of units; the rest get `old`.
fn experiment_flag(rollout_units: u32) -> FlagSet {
    let mut spec: FlagSpec = serde_json::from_value(json!({
        "key": "calc-model", "type": "string", "off_variant": "old",
        "variants": {"old": "v1", "simple": "s", "advanced": "a", "choice": "c", "auto": "x"},
        "default": {"serve": {"variant": "old"}}
    }))
    .expect("flag deserializes");
    let mut serve = ServeSpec::split([
        ("simple", 25.0),
        ("advanced", 25.0),
        ("choice", 25.0),
        ("auto", 25.0),
    ]);
    serve.rollout = Some(flags::Weight(f64::from(rollout_units) / 1000.0));
    serve.otherwise = Some("old".into());
    spec.default.serve = serve;
    match flags::compile(&[spec], &[]) {
        Ok(set) => set,
        Err(errors) => panic!("{errors:?}"),
    }
}

proptest! {
    /// Raising a split's rollout only adds units to the split, and a unit
    /// inside keeps its arm whatever the rollout: who is in and which arm are
    /// decided by independent salts.
    #[test]
    fn a_rollout_adds_units_without_moving_arms(
        unit in ".{1,80}",
        (p1, p2) in (0..=BUCKET_COUNT, 0..=BUCKET_COUNT).prop_map(|(a, b)| (a.min(b), a.max(b))),
    ) {
        let (set_p1, set_p2, set_full) =
            (experiment_flag(p1), experiment_flag(p2), experiment_flag(BUCKET_COUNT));
        let (at_p1, at_p2) = (served(&set_p1, &unit), served(&set_p2, &unit));
        let at_full = served(&set_full, &unit);
        if at_p1 != Some("old") {
            prop_assert_eq!(at_p2, at_p1);
        }
        if at_p2 != Some("old") {
            prop_assert_eq!(at_p2, at_full);
        }
        let inside = bucket(&flags::rollout_salt("calc-model"), &unit) < p1;
        prop_assert_eq!(at_p1 != Some("old"), inside);
    }
}

#[test]
fn rollout_membership_is_independent_of_the_arm() {
    // Over the fixed population: at a 50% rollout, the 2 × 4 table of
    // (inside, arm-by-bucket) shows no dependence.
    let set = experiment_flag(50_000);
    let arms = ["simple", "advanced", "choice", "auto"];
    let mut table = [[0u64; 4]; 2];
    let mut inside = 0u64;
    for unit in units() {
        let arm = (bucket("calc-model", &unit) / 25_000) as usize;
        let served = served(&set, &unit);
        let row = usize::from(served != Some("old"));
        if row == 1 {
            inside += 1;
            assert_eq!(served, Some(arms[arm]), "{unit}");
        }
        table[row][arm] += 1;
    }
    const CHI2_3_DOF_Q999: f64 = 16.266;
    let statistic = chi_square_independence(&table);
    assert!(statistic < CHI2_3_DOF_Q999, "chi-square {statistic:.2}");
    // Within 5 binomial standard deviations of half.
    let sd = (f64::from(UNIT_COUNT) * 0.25).sqrt();
    assert!(
        (inside as f64 - 50_000.0).abs() < 5.0 * sd,
        "{inside} inside"
    );
}

#[test]
fn an_automatically_selecting_arm_keeps_its_variant_and_serves_the_choices() {
    let plain = experiment_flag(BUCKET_COUNT);
    let mut set = experiment_flag(BUCKET_COUNT);
    set.select_automatically(
        "calc-model",
        "auto",
        &[("simple".into(), 0.2), ("advanced".into(), 0.8)],
    )
    .expect("select");
    let (mut auto, mut advanced) = (0u32, 0u32);
    for unit in units() {
        let ctx = Context::new(unit.as_str());
        let (before, after) = (
            plain.evaluate("calc-model", &ctx),
            set.evaluate("calc-model", &ctx),
        );
        // Every unit keeps its arm; only the auto arm's value changes.
        assert_eq!(before.variant, after.variant, "{unit}");
        if after.variant != Some("auto") {
            assert_eq!(before, after, "{unit}");
            continue;
        }
        auto += 1;
        let selected = after.selected.expect("a choice");
        let value = if selected == "advanced" { "a" } else { "s" };
        assert_eq!(after.value, Some(&json!(value)), "{unit}");
        advanced += u32::from(selected == "advanced");
        // Sticky: the same unit gets the same choice again.
        assert_eq!(set.evaluate("calc-model", &ctx).selected, Some(selected));
    }
    // 80% of the arm, within 5 binomial standard deviations.
    let (n, share) = (f64::from(auto), 0.8);
    let sd = (n * share * (1.0 - share)).sqrt();
    assert!(
        (f64::from(advanced) - n * share).abs() < 5.0 * sd,
        "{advanced} of {auto} got advanced"
    );
    // A choice with probability 1 serves everyone in the arm.
    set.select_automatically("calc-model", "auto", &[("choice".into(), 3.0)])
        .expect("select");
    let unit = units()
        .find(|u| {
            set.evaluate("calc-model", &Context::new(u.as_str()))
                .variant
                == Some("auto")
        })
        .expect("a unit in the auto arm");
    let eval = set.evaluate("calc-model", &Context::new(unit.as_str()));
    assert_eq!(
        (eval.variant, eval.selected),
        (Some("auto"), Some("choice"))
    );
    // Bad selections are refused and keep the last one.
    for (flag, arm, choices) in [
        ("nope", "auto", vec![("simple".to_owned(), 1.0)]),
        ("calc-model", "turbo", vec![("simple".to_owned(), 1.0)]),
        ("calc-model", "auto", vec![("turbo".to_owned(), 1.0)]),
        ("calc-model", "auto", vec![("simple".to_owned(), f64::NAN)]),
        ("calc-model", "auto", vec![("simple".to_owned(), 0.0)]),
        ("calc-model", "auto", vec![]),
    ] {
        assert!(set.select_automatically(flag, arm, &choices).is_err());
    }
    let eval = set.evaluate("calc-model", &Context::new(unit.as_str()));
    assert_eq!(eval.selected, Some("choice"));
}
