//! The issue's plan, written in TOML, parses with the toml crate and
//! compiles against the seed's metrics (`examples/seed-metrics.toml`) and
//! the segment `power-users`; the compiled plan holds what was written.

mod common;

use common::{DAY_MS, ISSUE_PLAN, World, experiment_plan, issue_plan, specs_from_toml};
use rollout::{Advance, GuardAction, Limit, compile_rollouts};

#[test]
fn the_issues_plan_compiles_against_the_seed_metrics() {
    let world = World::new();
    let specs = specs_from_toml(ISSUE_PLAN);
    let plans = compile_rollouts(&specs, &world.context()).expect("the issue's plan compiles");
    assert_eq!(plans.len(), 1);
    let plan = &plans[0];
    assert_eq!(plan.flag(), "calc-model");
    assert_eq!(plan.spec.advance, Advance::Auto);
    assert_eq!(plan.spec.alpha, 0.05);
    assert_eq!(plan.spec.sequential_tuning, 5000.0);

    let phases: Vec<(&str, f64, i64, Option<&str>)> = plan
        .phases
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.percent,
                p.duration_ms,
                p.audience.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        phases,
        vec![
            ("beta", 5.0, 14 * DAY_MS, Some("power-users")),
            ("controlled-expansion", 25.0, 14 * DAY_MS, None),
            ("general-availability", 100.0, 14 * DAY_MS, None),
        ]
    );
    for phase in &plan.phases {
        assert_eq!(phase.arms, vec![("advanced".to_owned(), 100.0)]);
        assert_eq!(phase.experiment, None);
    }

    let gates: Vec<(&str, Limit, u64)> = plan
        .gates
        .iter()
        .map(|g| (g.metric.key.as_str(), g.limit, g.min_samples))
        .collect();
    assert_eq!(
        gates,
        vec![
            ("error_rate", Limit::Max(0.01), 100),
            ("response_time_mean", Limit::Max(200.0), 100),
        ]
    );
    let guards: Vec<(&str, Limit, GuardAction)> = plan
        .guards
        .iter()
        .map(|g| (g.metric.key.as_str(), g.limit, g.action))
        .collect();
    assert_eq!(
        guards,
        vec![
            ("error_rate", Limit::Max(0.02), GuardAction::Rollback),
            (
                "response_time_p95",
                Limit::MaxRelativeIncrease(0.2),
                GuardAction::Rollback
            ),
        ]
    );
}

#[test]
fn an_experiment_phase_serves_the_arms_by_their_weights() {
    let plan = experiment_plan();
    let phase = &plan.phases[1];
    assert_eq!(phase.experiment.as_deref(), Some("model-ab"));
    assert_eq!(
        phase.arms,
        vec![
            ("simple".to_owned(), 25.0),
            ("advanced".to_owned(), 25.0),
            ("choice".to_owned(), 25.0),
            ("auto".to_owned(), 25.0),
        ]
    );
    assert_eq!(
        plan.compared_variants(1),
        vec!["advanced", "choice", "auto"]
    );
    assert_eq!(plan.compared_variants(0), vec!["advanced"]);
}

#[test]
fn uneven_weights_still_sum_to_a_whole_split() {
    let world = World::new();
    let mut experiments = world.experiments.clone();
    for (arm, weight) in experiments[0].arms.iter_mut().zip([1.0, 1.0, 1.0, 0.0]) {
        arm.weight = weight;
    }
    experiments[0].arms.pop();
    let context = rollout::PlanContext {
        experiments: &experiments,
        ..world.context()
    };
    let mut spec = common::issue_spec();
    spec.phases[1].experiment = Some("model-ab".into());
    let plan = compile_rollouts(&[spec], &context).unwrap().remove(0);
    assert_eq!(
        plan.phases[1].arms,
        vec![
            ("simple".to_owned(), 33.334),
            ("advanced".to_owned(), 33.333),
            ("choice".to_owned(), 33.333),
        ]
    );
}

#[test]
fn a_plan_written_back_reads_the_same() {
    let plan = issue_plan();
    let text = toml::to_string(&plan.spec).expect("a spec serializes");
    // Defaults stay out of the written form.
    assert!(!text.contains("alpha"), "{text}");
    assert!(!text.contains("sequential_tuning"), "{text}");
    let back: rollout::RolloutSpec = toml::from_str(&text).expect("and parses back");
    assert_eq!(back, plan.spec);
}

#[test]
fn unknown_fields_are_refused() {
    let text = ISSUE_PLAN.replace("advance = \"auto\"", "advance = \"auto\"\nspeed = 2");
    let mut table: toml::Table = text.parse().unwrap();
    let result: Result<Vec<rollout::RolloutSpec>, _> = table.remove("rollouts").unwrap().try_into();
    let message = result.unwrap_err().to_string();
    assert!(message.contains("unknown field `speed`"), "{message}");
}
