//! Gates and guards on constructed observations: healthy data never fires,
//! a clear regression with enough units does, too few units never decide,
//! a relative guard compares with the control, and the one-sample
//! confidence sequence agrees with the engine's two-sample formula.

mod common;

use common::{
    Arm, CONTROL, Rng, TREATMENT, World, error_regression, experiment_plan, healthy, issue_plan,
    issue_spec, observations,
};
use rollout::{
    Check, GuardAction, Observations, Plan, VariantData, Verdict, VerdictOutcome, compile_rollouts,
    guard_alpha, judge, one_sided_sequence_half_width,
};
use stats::inference::{MeanSummary, MetricData};
use stats::{AnalysisConfig, MetricObservations};

fn gate(verdicts: &[Verdict], index: usize) -> &Verdict {
    verdicts
        .iter()
        .find(|v| v.check == Check::Gate { index })
        .expect("the gate's verdict")
}

fn guards(verdicts: &[Verdict], index: usize) -> Vec<&Verdict> {
    verdicts
        .iter()
        .filter(|v| matches!(v.check, Check::Guard { index: i, .. } if i == index))
        .collect()
}

fn guard(verdicts: &[Verdict], index: usize) -> &Verdict {
    let found = guards(verdicts, index);
    assert_eq!(found.len(), 1, "one compared variant");
    found[0]
}

fn insufficient(verdict: &Verdict) -> String {
    match &verdict.outcome {
        VerdictOutcome::InsufficientData { reason } => reason.clone(),
        other => panic!(
            "expected insufficient data, got {other:?}: {}",
            verdict.describe()
        ),
    }
}

#[test]
fn every_gate_and_guard_has_a_verdict_in_plan_order() {
    let verdicts = judge(&issue_plan(), 0, &healthy(2000));
    let checks: Vec<Check> = verdicts.iter().map(|v| v.check).collect();
    assert_eq!(
        checks,
        vec![
            Check::Gate { index: 0 },
            Check::Gate { index: 1 },
            Check::Guard {
                index: 0,
                action: GuardAction::Rollback
            },
            Check::Guard {
                index: 1,
                action: GuardAction::Rollback
            },
        ]
    );
    for verdict in &verdicts {
        assert_eq!(verdict.variant, TREATMENT);
        assert_eq!(
            verdict.outcome,
            VerdictOutcome::Holds,
            "{}",
            verdict.describe()
        );
        let variants: Vec<(&str, u64)> = verdict
            .values
            .iter()
            .map(|v| (v.variant.as_str(), v.units))
            .collect();
        assert_eq!(variants, vec![(TREATMENT, 2000), (CONTROL, 2000)]);
        assert!(verdict.values.iter().all(|v| v.value.is_some()));
    }
}

#[test]
fn healthy_data_never_fires_at_any_look() {
    let plan = issue_plan();
    for units in (100..=20_000).step_by(700) {
        for seed in 0..3 {
            let data = observations(
                seed,
                &[
                    Arm {
                        variant: CONTROL,
                        units,
                        error_rate: 0.01,
                        latency_ms: 150.0,
                    },
                    Arm {
                        variant: TREATMENT,
                        units,
                        error_rate: 0.01,
                        latency_ms: 150.0,
                    },
                ],
            );
            for verdict in judge(&plan, 0, &data) {
                if matches!(verdict.check, Check::Guard { .. }) {
                    assert!(
                        !verdict.is_breached(),
                        "{units} units: {}",
                        verdict.describe()
                    );
                }
            }
        }
    }
}

#[test]
fn a_clear_error_regression_fires_the_absolute_guard() {
    let verdicts = judge(&issue_plan(), 0, &error_regression(2000));
    let error_guard = guard(&verdicts, 0);
    assert!(error_guard.is_breached(), "{}", error_guard.describe());
    let value = error_guard.value.unwrap();
    assert!((0.05..0.07).contains(&value), "{value}");
    let interval = error_guard.interval.as_ref().unwrap();
    assert!(interval.always_valid);
    assert_eq!(interval.upper, None);
    let lower = interval.lower.unwrap();
    assert!(lower > 0.02 && lower < value, "{lower}");
    // Two rollback guards on one variant: each at α/2.
    assert!((interval.confidence - 0.975).abs() < 1e-12);
    // The latency guard sees no difference.
    assert_eq!(guard(&verdicts, 1).outcome, VerdictOutcome::Holds);
}

#[test]
fn too_few_units_never_fire() {
    // A third of the requests fail: a glaring regression, in 90 units.
    let data = observations(
        8,
        &[
            Arm {
                variant: CONTROL,
                units: 90,
                error_rate: 0.005,
                latency_ms: 150.0,
            },
            Arm {
                variant: TREATMENT,
                units: 90,
                error_rate: 0.3,
                latency_ms: 300.0,
            },
        ],
    );
    let plan = issue_plan();
    let verdicts = judge(&plan, 0, &data);
    for verdict in [guard(&verdicts, 0), guard(&verdicts, 1), gate(&verdicts, 0)] {
        assert_eq!(
            insufficient(verdict),
            "90 units of `advanced` so far; 100 are needed"
        );
    }
    // With min_samples lowered, the same data are enough.
    let mut spec = issue_spec();
    spec.guards[0].min_samples = Some(50);
    let plan = common::compile(spec);
    assert!(guard(&judge(&plan, 0, &data), 0).is_breached());
}

#[test]
fn no_data_is_insufficient_not_a_verdict() {
    let verdicts = judge(&issue_plan(), 0, &Observations::new());
    for verdict in &verdicts {
        assert_eq!(insufficient(verdict), "`advanced` has no units yet");
        assert_eq!(verdict.value, None);
    }
    // Units without a single request: the ratio has no denominator.
    let mut data = Observations::new();
    let idle = VariantData::from_units(vec![(0.0, 0.0); 500]);
    data.insert("error_rate", TREATMENT, idle.clone());
    data.insert("error_rate", CONTROL, idle);
    let verdicts = judge(&issue_plan(), 0, &data);
    assert_eq!(
        insufficient(gate(&verdicts, 0)),
        "`advanced` has no events for the denominator of `error_rate` yet"
    );
}

#[test]
fn the_relative_guard_compares_with_the_control() {
    let plan = issue_plan();
    let latency = |control_ms: f64, treatment_ms: f64| {
        observations(
            3,
            &[
                Arm {
                    variant: CONTROL,
                    units: 3000,
                    error_rate: 0.005,
                    latency_ms: control_ms,
                },
                Arm {
                    variant: TREATMENT,
                    units: 3000,
                    error_rate: 0.005,
                    latency_ms: treatment_ms,
                },
            ],
        )
    };
    // 50% slower than the control: fires.
    let verdicts = judge(&plan, 0, &latency(150.0, 225.0));
    let p95 = guard(&verdicts, 1);
    assert!(p95.is_breached(), "{}", p95.describe());
    let lift = p95.value.unwrap();
    assert!((0.45..0.55).contains(&lift), "{lift}");
    assert!(p95.interval.as_ref().unwrap().lower.unwrap() > 0.2);
    // The same treatment latency, with an equally slow control: no regression.
    let verdicts = judge(&plan, 0, &latency(225.0, 225.0));
    assert_eq!(guard(&verdicts, 1).outcome, VerdictOutcome::Holds);
    // 10% slower: within the 20% allowed.
    let verdicts = judge(&plan, 0, &latency(150.0, 165.0));
    assert_eq!(guard(&verdicts, 1).outcome, VerdictOutcome::Holds);
    // A relative error-rate guard likewise reads the control: 3% against 3%
    // holds, 3% against 1% fires, although an absolute 2% limit fires on both.
    let mut spec = issue_spec();
    spec.guards[0].max = None;
    spec.guards[0].max_relative_increase = Some(0.2);
    let relative = common::compile(spec);
    let errors = |control: f64| {
        observations(
            5,
            &[
                Arm {
                    variant: CONTROL,
                    units: 5000,
                    error_rate: control,
                    latency_ms: 150.0,
                },
                Arm {
                    variant: TREATMENT,
                    units: 5000,
                    error_rate: 0.03,
                    latency_ms: 150.0,
                },
            ],
        )
    };
    assert_eq!(
        guard(&judge(&relative, 0, &errors(0.03)), 0).outcome,
        VerdictOutcome::Holds
    );
    assert!(guard(&judge(&relative, 0, &errors(0.01)), 0).is_breached());
    assert!(guard(&judge(&plan, 0, &errors(0.03)), 0).is_breached());
}

#[test]
fn a_relative_guard_needs_control_units() {
    // At 100% nobody gets the control: a relative guard cannot judge.
    let plan = issue_plan();
    let mut data = observations(
        9,
        &[Arm {
            variant: TREATMENT,
            units: 4000,
            error_rate: 0.005,
            latency_ms: 400.0,
        }],
    );
    let verdicts = judge(&plan, 2, &data);
    assert_eq!(
        insufficient(guard(&verdicts, 1)),
        "the control `simple` has no value of `response_time_p95` to compare with"
    );
    assert_eq!(guard(&verdicts, 0).outcome, VerdictOutcome::Holds);
    // A small control is not enough either.
    let small = common::latency_data(&mut Rng::new(1), 40, 5, 150.0);
    data.insert("response_time_p95", CONTROL, small);
    assert_eq!(
        insufficient(guard(&judge(&plan, 2, &data), 1)),
        "40 units of `simple` so far; 100 are needed"
    );
}

#[test]
fn a_min_guard_fires_below_its_limit() {
    let mut spec = issue_spec();
    spec.guards[0].metric = "cache_hit_rate".into();
    spec.guards[0].max = None;
    spec.guards[0].min = Some(0.9);
    let plan = common::compile(spec);
    let hits = |rate: f64| {
        let mut rng = Rng::new(4);
        let mut data = Observations::new();
        data.insert(
            "cache_hit_rate",
            TREATMENT,
            common::error_data(&mut rng, 2000, 10, rate),
        );
        data.insert(
            "cache_hit_rate",
            CONTROL,
            common::error_data(&mut rng, 2000, 10, 0.95),
        );
        data
    };
    let low = judge(&plan, 0, &hits(0.8));
    let verdict = guard(&low, 0);
    assert!(verdict.is_breached(), "{}", verdict.describe());
    assert!(verdict.interval.as_ref().unwrap().upper.unwrap() < 0.9);
    assert_eq!(
        guard(&judge(&plan, 0, &hits(0.95)), 0).outcome,
        VerdictOutcome::Holds
    );
}

#[test]
fn guards_watch_every_arm_of_an_experiment_phase() {
    let plan = experiment_plan();
    let arm = |variant, error_rate| Arm {
        variant,
        units: 2000,
        error_rate,
        latency_ms: 150.0,
    };
    let data = observations(
        2,
        &[
            arm(CONTROL, 0.005),
            arm(TREATMENT, 0.005),
            arm("choice", 0.08),
            arm("auto", 0.005),
        ],
    );
    let verdicts = judge(&plan, 1, &data);
    let on_errors: Vec<(&str, bool)> = guards(&verdicts, 0)
        .iter()
        .map(|v| (v.variant.as_str(), v.is_breached()))
        .collect();
    assert_eq!(
        on_errors,
        vec![("advanced", false), ("choice", true), ("auto", false)]
    );
    // Two guards × three variants share the phase's 5%.
    assert!((guard_alpha(&plan, 1, 0) - 0.05 / 6.0).abs() < 1e-15);
    assert!((guard_alpha(&plan, 0, 1) - 0.05 / 2.0).abs() < 1e-15);
    // Weights split it unevenly: three quarters to the first guard.
    let mut spec = plan.spec.clone();
    spec.guards[0].weight = Some(3.0);
    let weighted = common::compile(spec);
    assert!((guard_alpha(&weighted, 1, 0) - 0.05 * 0.75 / 3.0).abs() < 1e-15);
    assert!((guard_alpha(&weighted, 0, 1) - 0.05 * 0.25).abs() < 1e-15);
    assert_eq!(guard_alpha(&weighted, 0, 2), 0.0, "no third guard");
    // Gates judge the treatment only.
    assert_eq!(gate(&verdicts, 0).variant, TREATMENT);
}

#[test]
fn gates_hold_fail_or_lack_samples() {
    let plan = issue_plan();
    let with = |error_rate: f64, latency_ms: f64, units: u64| {
        observations(
            6,
            &[
                Arm {
                    variant: CONTROL,
                    units,
                    error_rate: 0.005,
                    latency_ms: 150.0,
                },
                Arm {
                    variant: TREATMENT,
                    units,
                    error_rate,
                    latency_ms,
                },
            ],
        )
    };
    let verdicts = judge(&plan, 0, &with(0.004, 150.0, 3000));
    assert!(gate(&verdicts, 0).holds() && gate(&verdicts, 1).holds());
    let interval = gate(&verdicts, 1).interval.clone().unwrap();
    assert!(!interval.always_valid);
    assert!((interval.confidence - 0.95).abs() < 1e-12);
    assert!(interval.lower.unwrap() < 150.0 && 150.0 < interval.upper.unwrap());

    // 1.5% errors: above the 1% gate (a point estimate, not a test), below
    // the 2% guard.
    let verdicts = judge(&plan, 0, &with(0.015, 150.0, 3000));
    assert!(gate(&verdicts, 0).is_breached());
    assert!(gate(&verdicts, 1).holds());
    assert!(!guard(&verdicts, 0).is_breached());
    // 230 ms mean: the latency gate fails.
    let verdicts = judge(&plan, 0, &with(0.004, 230.0, 3000));
    assert!(gate(&verdicts, 0).holds());
    assert!(gate(&verdicts, 1).is_breached());
    // Good values, too few units.
    let verdicts = judge(&plan, 0, &with(0.004, 150.0, 99));
    assert_eq!(
        insufficient(gate(&verdicts, 0)),
        "99 units of `advanced` so far; 100 are needed"
    );
    // min_samples is the gate's own.
    let mut spec = issue_spec();
    spec.success[0].min_samples = Some(5000);
    let verdicts = judge(&common::compile(spec), 0, &with(0.004, 150.0, 3000));
    assert_eq!(
        insufficient(gate(&verdicts, 0)),
        "3000 units of `advanced` so far; 5000 are needed"
    );
    assert!(gate(&verdicts, 1).holds());
}

/// How a false-alarm run measures its guard.
#[derive(Clone, Copy)]
enum Watch {
    /// `engagement_sessions`, a mean (plug-in variance), one 0/1 value per
    /// unit.
    Mean,
    /// `error_rate`, a ratio of counts (the score bound), one to three
    /// requests per unit.
    Rate,
    /// The fixed-horizon one-sided z test, wrongly looked at often.
    FixedHorizon,
}

/// The proportion of 400 simulated rollouts, looked at every 200 units up
/// to 10 000, in which a guard whose treatment sits exactly at its limit
/// (2% errors) fires.
fn false_alarms(watch: Watch) -> f64 {
    let metric = match watch {
        Watch::Rate => "error_rate",
        Watch::Mean | Watch::FixedHorizon => "engagement_sessions",
    };
    let mut spec = issue_spec();
    spec.guards.truncate(1);
    spec.guards[0].metric = metric.into();
    spec.guards[0].max = Some(0.02);
    let plan = common::compile(spec);
    let alpha = guard_alpha(&plan, 0, 0);
    let z = stats::inference::normal_quantile(1.0 - alpha);
    let mut rng = Rng::new(2024);
    let runs = 400;
    let mut fired = 0;
    for _ in 0..runs {
        let mut data = VariantData::default();
        for _ in 0..50 {
            for unit in 0..200u32 {
                let requests = match watch {
                    Watch::Rate => 1 + unit % 3,
                    Watch::Mean | Watch::FixedHorizon => 1,
                };
                let errors = (0..requests).filter(|_| rng.bernoulli(0.02)).count();
                data.moments.add_unit(errors as f64, f64::from(requests));
                data.units += 1;
                data.active += u64::from(errors > 0);
            }
            let breached = match watch {
                Watch::Mean | Watch::Rate => {
                    let mut observations = Observations::new();
                    observations.insert(metric, TREATMENT, data.clone());
                    guard(&judge(&plan, 0, &observations), 0).is_breached()
                }
                Watch::FixedHorizon => {
                    let n = data.units as f64;
                    let p = data.active as f64 / n;
                    p - z * (p * (1.0 - p) / n).sqrt() > 0.02
                }
            };
            if breached {
                fired += 1;
                break;
            }
        }
    }
    f64::from(fired) / f64::from(runs)
}

#[test]
fn at_the_limit_a_guard_fires_at_most_alpha_of_the_time_however_often_it_looks() {
    let mean = false_alarms(Watch::Mean);
    let rate = false_alarms(Watch::Rate);
    let fixed = false_alarms(Watch::FixedHorizon);
    eprintln!("false alarms: always-valid mean {mean}, rate {rate}; fixed horizon {fixed}");
    // The budget of this plan's single guard is α = 0.05.
    assert!(mean <= 0.05, "always-valid on a mean: {mean}");
    assert!(rate <= 0.05, "always-valid score bound on a rate: {rate}");
    // The same data under a fixed-horizon test, checked at every look.
    assert!(fixed > 2.0 * 0.05, "fixed horizon: {fixed}");
}

#[test]
fn a_rate_guard_bounds_with_the_variance_at_the_candidate_value() {
    // 4% errors over 1 000 units of one request each, against a 2% limit.
    let mut spec = issue_spec();
    spec.guards.truncate(1);
    let plan = common::compile(spec);
    let mut data = VariantData::default();
    for unit in 0..1000 {
        data.moments
            .add_unit(if unit % 25 == 0 { 1.0 } else { 0.0 }, 1.0);
        data.units += 1;
    }
    let mut observations = Observations::new();
    observations.insert("error_rate", TREATMENT, data);
    let verdict = guard(&judge(&plan, 0, &observations), 0).clone();
    let lower = verdict.interval.as_ref().unwrap().lower.unwrap();
    // The bound solves (p − μ)² = k²·v·μ(1 − μ)/(p(1 − p)) for μ below p:
    // the half-width at μ with μ's own variance; here the unit variance v
    // is the sample variance p(1 − p)·n/(n − 1).
    let k = one_sided_sequence_half_width(1.0, 1000, guard_alpha(&plan, 0, 0), 5000.0);
    let p = 0.04;
    let design = 1000.0 / 999.0;
    let at = |mu: f64| k * (design * mu * (1.0 - mu)).sqrt();
    assert!(((p - lower) - at(lower)).abs() < 1e-9, "{lower}");
    // Tighter than the plug-in bound p − k·√v, and still below p.
    assert!(lower > p - at(p));
    assert!(lower < p);
}

#[test]
fn the_one_sample_sequence_is_the_engines_formula() {
    // The engine's two-sample one-sided sequence with V = v_T/n_T + v_C/n_C
    // and N = n_C + n_T is the one-sample formula with v = V·N and n = N.
    let arm = |n: u64, mean: f64, sd: f64| MeanSummary {
        n,
        sum: mean * n as f64,
        sum_squares: (n as f64 - 1.0) * sd * sd + n as f64 * mean * mean,
    };
    let (control, treatment) = (arm(1200, 10.0, 3.0), arm(800, 11.0, 4.0));
    for (alpha, tuning) in [(0.05, 5000.0), (0.01, 1000.0), (0.025, 20_000.0)] {
        let analysis = stats::analyze(
            &MetricObservations {
                weights: vec![1.0, 1.0],
                metric: MetricData::Mean(vec![control, treatment]),
                guardrail: None,
            },
            &AnalysisConfig {
                alpha,
                sequential_tuning: tuning,
                ..AnalysisConfig::default()
            },
        )
        .unwrap();
        let lift = &analysis.comparisons[0].value().unwrap().absolute;
        let estimate = *lift.estimate.value().unwrap();
        let variance = *lift.variance.value().unwrap();
        let bounds = lift.one_sided.value().unwrap();
        let half_width = one_sided_sequence_half_width(variance * 2000.0, 2000, alpha, tuning);
        assert!(((bounds.seq_upper - estimate) - half_width).abs() < 1e-12 * half_width);
        assert!(((estimate - bounds.seq_lower) - half_width).abs() < 1e-12 * half_width);
    }
    // Wider with less data, and never below the fixed-horizon bound.
    let z = stats::inference::normal_quantile(0.95);
    let mut previous = f64::INFINITY;
    for n in [10, 100, 1000, 10_000, 100_000] {
        let h = one_sided_sequence_half_width(1.0, n, 0.05, 5000.0);
        assert!(h < previous);
        assert!(h > z / (n as f64).sqrt());
        previous = h;
    }
}

#[test]
fn a_plan_with_its_own_alpha_uses_it() {
    let world = World::new();
    let mut spec = issue_spec();
    spec.alpha = 0.01;
    let plan: Plan = compile_rollouts(&[spec], &world.context())
        .unwrap()
        .remove(0);
    let verdicts = judge(&plan, 0, &error_regression(2000));
    let interval = guard(&verdicts, 0).interval.clone().unwrap();
    assert!((interval.confidence - 0.995).abs() < 1e-12);
    let gate_interval = gate(&verdicts, 1).interval.clone().unwrap();
    assert!((gate_interval.confidence - 0.99).abs() < 1e-12);
}

#[test]
fn an_uptime_gate_judges_the_share_of_healthy_minutes() {
    let mut spec = issue_spec();
    spec.success[0].metric = "uptime".into();
    spec.success[0].max = None;
    spec.success[0].min = Some(0.999);
    spec.success[0].min_samples = Some(60);
    let plan = common::compile(spec);
    let with = |served: u64, fine: u64| {
        let mut observations = healthy(2000);
        observations.insert(
            "uptime",
            TREATMENT,
            VariantData {
                minutes: Some(rollout::Minutes {
                    served,
                    healthy: fine,
                }),
                ..VariantData::default()
            },
        );
        judge(&plan, 0, &observations)
    };
    let verdicts = with(2000, 1999);
    let uptime = gate(&verdicts, 0);
    assert_eq!(
        uptime.outcome,
        VerdictOutcome::Holds,
        "{}",
        uptime.describe()
    );
    assert_eq!(uptime.value, Some(0.9995));
    assert_eq!(uptime.values[0].units, 2000, "minutes served");
    let verdicts = with(2000, 1990);
    assert_eq!(gate(&verdicts, 0).outcome, VerdictOutcome::Breached);
    let verdicts = with(30, 30);
    assert!(insufficient(gate(&verdicts, 0)).contains("30 minutes"));
}

#[test]
fn a_treatment_failing_every_request_fires_despite_no_spread() {
    // Every unit of the treatment: 2 requests, 2 errors. No variance at all.
    let with_units = |n: u64| {
        let mut observations = healthy(2000);
        observations.insert(
            "error_rate",
            TREATMENT,
            VariantData::from_units((0..n).map(|_| (2.0, 2.0))),
        );
        judge(&issue_plan(), 0, &observations)
    };
    let verdicts = with_units(500);
    let error_guard = guard(&verdicts, 0);
    assert!(error_guard.is_breached(), "{}", error_guard.describe());
    let interval = error_guard
        .interval
        .as_ref()
        .expect("the degenerate interval");
    assert_eq!((interval.lower, interval.upper), (Some(1.0), Some(1.0)));
    // Below min_samples it still waits.
    let verdicts = with_units(10);
    assert!(!guard(&verdicts, 0).is_breached());
}
