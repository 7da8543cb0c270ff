//! Plan validation: every mistake a user can make in `[[rollouts]]` is
//! reported with the rollout, the field and a message, checked exactly.

mod common;

use common::{FLAG, World, issue_spec};
use rollout::{GuardSpec, PlanError, RolloutSpec, compile_rollouts};

/// Compiles the issue's plan after `change` and compares the errors with
/// `expected` (subject, field, message), in order.
#[track_caller]
fn check(change: impl FnOnce(&mut Vec<RolloutSpec>), expected: &[(&str, &str, &str)]) {
    let world = World::new();
    let mut specs = vec![issue_spec()];
    change(&mut specs);
    let got: Vec<(String, String, String)> = match compile_rollouts(&specs, &world.context()) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .into_iter()
            .map(|e| (e.subject, e.field, e.message))
            .collect(),
    };
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(s, f, m)| (s.to_string(), f.to_string(), m.to_string()))
        .collect();
    assert_eq!(got, expected);
}

const ROLLOUT: &str = "rollout `calc-model`";

fn guard(metric: &str) -> GuardSpec {
    GuardSpec {
        metric: metric.into(),
        max: None,
        min: None,
        max_relative_increase: None,
        max_relative_decrease: None,
        action: Default::default(),
        min_samples: None,
        weight: None,
        level: None,
    }
}

#[test]
fn the_issues_plan_is_valid() {
    check(|_| {}, &[]);
}

#[test]
fn the_flag_must_exist_and_have_one_rollout() {
    check(
        |s| s[0].flag = "calc-modle".into(),
        &[(
            "rollout `calc-modle`",
            "flag",
            "no flag `calc-modle` is defined",
        )],
    );
    check(
        |s| s[0].flag = String::new(),
        &[(
            "rollouts[0]",
            "flag",
            "must name the flag to roll out; it is empty",
        )],
    );
    check(
        |s| s.push(s[0].clone()),
        &[(
            "rollouts[1]",
            "flag",
            "flag `calc-model` already has a rollout (rollouts[0]); a flag has at most one",
        )],
    );
}

#[test]
fn treatment_and_control_are_distinct_variants_of_the_flag() {
    check(
        |s| s[0].treatment = "advancd".into(),
        &[(
            ROLLOUT,
            "treatment",
            "flag `calc-model` has no variant `advancd`; its variants are `simple`, `advanced`, \
             `choice`, `auto`",
        )],
    );
    check(
        |s| s[0].control = String::new(),
        &[(
            ROLLOUT,
            "control",
            "must name the variant everyone else gets; it is empty",
        )],
    );
    check(
        |s| s[0].control = "advanced".into(),
        &[(
            ROLLOUT,
            "control",
            "is `advanced`, the same variant as `treatment`; a rollout moves units from the \
             control to a different variant",
        )],
    );
}

#[test]
fn the_unit_is_the_targeting_key() {
    check(
        |s| s[0].unit = "userId".into(),
        &[(
            ROLLOUT,
            "unit",
            "is `userId`; only `targetingKey` is supported (bucketing hashes it)",
        )],
    );
}

#[test]
fn a_rollout_has_phases_with_unique_names() {
    check(
        |s| s[0].phases.clear(),
        &[(
            ROLLOUT,
            "phases",
            "a rollout needs at least one phase, e.g. `[[rollouts.phases]]` with name, percent \
             and duration",
        )],
    );
    check(
        |s| s[0].phases[1].name = " ".into(),
        &[(ROLLOUT, "phases[1].name", "must not be empty")],
    );
    check(
        |s| s[0].phases[2].name = "beta".into(),
        &[(
            ROLLOUT,
            "phases[2].name",
            "`beta` is also the name of phases[0]; phase names are unique",
        )],
    );
}

#[test]
fn percentages_lie_on_the_grid_and_never_decrease() {
    for (percent, message) in [
        (0.0, "is 0; it must be more than 0 and at most 100"),
        (-5.0, "is -5; it must be more than 0 and at most 100"),
        (100.5, "is 100.5; it must be more than 0 and at most 100"),
        (f64::NAN, "is NaN; it must be more than 0 and at most 100"),
        (5.0005, "is 5.0005; percentages go in steps of 0.001"),
    ] {
        check(
            |s| s[0].phases[0].percent = percent,
            &[(ROLLOUT, "phases[0].percent", message)],
        );
    }
    check(
        |s| s[0].phases[2].percent = 20.0,
        &[(
            ROLLOUT,
            "phases[2].percent",
            "is 20, below the 25 of phases[1] (`controlled-expansion`); percentages never \
             decrease from phase to phase (a smaller share would take the treatment away from \
             units that have it)",
        )],
    );
    // Equal is fine, and so is the grid's finest step.
    check(
        |s| {
            s[0].phases[0].percent = 0.001;
            s[0].phases[2].percent = 25.0;
        },
        &[],
    );
}

#[test]
fn durations_parse() {
    for (duration, message) in [
        (
            "14w",
            "`14w` has no unit; write a number and one of s, m, h, d, e.g. \"14d\"",
        ),
        (
            "0d",
            "`0d` must be a positive whole number and one of s, m, h, d, e.g. \"14d\"",
        ),
        ("", "is empty; write a number and a unit, e.g. \"14d\""),
    ] {
        check(
            |s| s[0].phases[1].duration = duration.into(),
            &[(ROLLOUT, "phases[1].duration", message)],
        );
    }
}

#[test]
fn audiences_exist_and_only_widen() {
    check(
        |s| s[0].phases[0].audience = Some("power-user".into()),
        &[(
            ROLLOUT,
            "phases[0].audience",
            "no segment `power-user` is defined",
        )],
    );
    check(
        |s| s[0].phases[1].audience = Some("power-users".into()),
        &[],
    );
    check(
        |s| s[0].phases[2].audience = Some("power-users".into()),
        &[(
            ROLLOUT,
            "phases[2].audience",
            "is `power-users`, but the phase before (`controlled-expansion`) serves everyone; a \
             later phase may keep its audience or drop it to reach everyone, never add or change \
             one (units that have the treatment would lose it)",
        )],
    );
}

#[test]
fn a_phase_experiment_exists_on_the_flag_with_the_rollouts_control_first() {
    let at = "phases[1].experiment";
    check(|s| s[0].phases[1].experiment = Some("model-ab".into()), &[]);
    check(
        |s| s[0].phases[1].experiment = Some("model-abc".into()),
        &[(ROLLOUT, at, "no experiment `model-abc` is defined")],
    );
    check(
        |s| s[0].phases[1].experiment = Some("other-ab".into()),
        &[(
            ROLLOUT,
            at,
            "experiment `other-ab` is on flag `other-flag`; a phase's experiment must be on the \
             rollout's flag `calc-model`",
        )],
    );
    // The same experiment, with the roles of the variants changed.
    check(
        |s| {
            s[0].control = "choice".into();
            s[0].phases[1].experiment = Some("model-ab".into());
        },
        &[(
            ROLLOUT,
            at,
            "experiment `model-ab`'s control (its first arm) is `simple`; it must be the \
             rollout's control `choice`",
        )],
    );
}

#[test]
fn a_phase_experiment_tests_the_treatment() {
    let world = World::new();
    let mut experiments = world.experiments.clone();
    experiments[0].arms.remove(1);
    let context = rollout::PlanContext {
        experiments: &experiments,
        ..world.context()
    };
    let mut spec = issue_spec();
    spec.phases[1].experiment = Some("model-ab".into());
    let errors = compile_rollouts(&[spec], &context).unwrap_err();
    assert_eq!(
        errors,
        vec![PlanError {
            subject: ROLLOUT.into(),
            field: "phases[1].experiment".into(),
            message: "experiment `model-ab` has no arm `advanced`; it must test the rollout's \
                      treatment, which the gates judge"
                .into(),
        }]
    );
}

#[test]
fn gates_name_a_metric_and_exactly_one_side() {
    check(
        |s| s[0].success[0].metric = "error-rate".into(),
        &[(
            ROLLOUT,
            "success[0].metric",
            "no metric `error-rate` is defined",
        )],
    );
    check(
        |s| s[0].success[0].min = Some(0.0),
        &[(
            ROLLOUT,
            "success[0]",
            "has both `max` and `min`; a gate bounds one side (write two gates for a range)",
        )],
    );
    check(
        |s| s[0].success[1].max = None,
        &[(
            ROLLOUT,
            "success[1]",
            "has neither `max` nor `min`; give the limit the treatment's value must meet, e.g. \
             `max = 0.01`",
        )],
    );
    check(
        |s| s[0].success[1].max = Some(f64::INFINITY),
        &[(
            ROLLOUT,
            "success[1].max",
            "is inf; a limit is a finite number",
        )],
    );
    check(
        |s| s[0].success[0].min_samples = Some(0),
        &[(
            ROLLOUT,
            "success[0].min_samples",
            "is 0; it must be at least 1",
        )],
    );
}

#[test]
fn gates_need_a_value_per_unit() {
    check(
        |s| s[0].success[1].metric = "response_time_p95".into(),
        &[(
            ROLLOUT,
            "success[1].metric",
            "`response_time_p95` is a quantile metric, which has no value per unit to hold an \
             absolute limit against; compare it with the control in a guard \
             (`max_relative_increase`)",
        )],
    );
    // Uptime is a success criterion (the seed's 99.9%), judged on minutes.
    check(
        |s| {
            s[0].success[1].metric = "uptime".into();
            s[0].success[1].max = None;
            s[0].success[1].min = Some(0.999);
        },
        &[],
    );
    check(
        |s| {
            s[0].success[1].metric = "retention_7d".into();
            s[0].success[1].max = None;
            s[0].success[1].min = Some(70.0);
        },
        &[(
            ROLLOUT,
            "success[1].min",
            "is 70; `retention_7d` is a retention metric, a share between 0 and 1",
        )],
    );
    // Every kind with a value per unit will do.
    for metric in [
        "error_encounters",
        "engagement_sessions",
        "support_tickets",
        "cache_hit_rate",
        "memory_usage_mb",
        "retention_7d",
    ] {
        check(
            |s| {
                s[0].success[1].metric = metric.into();
                s[0].success[1].max = Some(0.5);
            },
            &[],
        );
    }
}

#[test]
fn guards_have_exactly_one_limit() {
    check(
        |s| s[0].guards.push(guard("error_rate")),
        &[(
            ROLLOUT,
            "guards[2]",
            "has no limit; give one of `max`, `min`, `max_relative_increase` or \
             `max_relative_decrease`",
        )],
    );
    check(
        |s| s[0].guards[0].max_relative_increase = Some(0.2),
        &[(
            ROLLOUT,
            "guards[0]",
            "has `max` and `max_relative_increase`; a guard has exactly one limit (write one \
             guard per limit)",
        )],
    );
    check(
        |s| s[0].guards[0].metric = "errors".into(),
        &[(ROLLOUT, "guards[0].metric", "no metric `errors` is defined")],
    );
    check(
        |s| s[0].guards[1].min_samples = Some(0),
        &[(
            ROLLOUT,
            "guards[1].min_samples",
            "is 0; it must be at least 1",
        )],
    );
    check(
        |s| s[0].guards[0].max = Some(f64::NAN),
        &[(
            ROLLOUT,
            "guards[0].max",
            "is NaN; a limit is a finite number",
        )],
    );
    for bad in [0.0, -1.0, f64::INFINITY] {
        check(
            |s| s[0].guards[1].weight = Some(bad),
            &[(
                ROLLOUT,
                "guards[1].weight",
                &format!(
                    "is {bad}; it must be a positive share of the false-alarm budget (1 is the \
                     default, 4 is four times another guard's)"
                ),
            )],
        );
    }
}

#[test]
fn relative_limits_are_positive_fractions() {
    for (value, shown) in [(0.0, "0"), (-0.2, "-0.2"), (f64::INFINITY, "inf")] {
        check(
            |s| s[0].guards[1].max_relative_increase = Some(value),
            &[(
                ROLLOUT,
                "guards[1].max_relative_increase",
                &format!(
                    "is {shown}; it must be a positive fraction of the control's value (0.2 for \
                     20%)"
                ),
            )],
        );
    }
    check(
        |s| {
            s[0].guards[1].max_relative_increase = None;
            s[0].guards[1].max_relative_decrease = Some(0.0);
        },
        &[(
            ROLLOUT,
            "guards[1].max_relative_decrease",
            "is 0; it must be a positive fraction of the control's value (0.2 for 20%)",
        )],
    );
}

#[test]
fn guards_use_metrics_that_fit_their_limit() {
    check(
        |s| {
            s[0].guards[1].max_relative_increase = None;
            s[0].guards[1].max = Some(300.0);
        },
        &[(
            ROLLOUT,
            "guards[1].metric",
            "`response_time_p95` is a quantile metric, which has no value per unit to hold an \
             absolute limit against; compare it with the control in a guard \
             (`max_relative_increase`)",
        )],
    );
    check(
        |s| {
            s[0].guards[1].metric = "uptime".into();
        },
        &[(
            ROLLOUT,
            "guards[1].metric",
            "`uptime` is an uptime metric, a share of minutes rather than a value per unit, \
             with no interval to fire on; make it a success criterion, and guard the error \
             rate (a ratio) instead",
        )],
    );
    check(
        |s| {
            s[0].guards[0].metric = "error_encounters".into();
            s[0].guards[0].max = Some(2.0);
        },
        &[(
            ROLLOUT,
            "guards[0].max",
            "is 2; `error_encounters` is a proportion metric, a share between 0 and 1",
        )],
    );
}

#[test]
fn the_false_alarm_budget_and_tuning_are_in_range() {
    check(
        |s| s[0].alpha = 0.7,
        &[(
            ROLLOUT,
            "alpha",
            "is 0.7; it must lie between 0 and 0.5 (e.g. 0.05)",
        )],
    );
    check(
        |s| s[0].sequential_tuning = 0.0,
        &[(
            ROLLOUT,
            "sequential_tuning",
            "is 0; it must be a number of units, at least 1 (e.g. 5000)",
        )],
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    check(
        |s| {
            s[0].unit = "userId".into();
            s[0].phases[0].duration = "2w".into();
            s[0].success[0].metric = "nope".into();
            let mut second = s[0].clone();
            second.flag = String::new();
            s.push(second);
        },
        &[
            (
                ROLLOUT,
                "unit",
                "is `userId`; only `targetingKey` is supported (bucketing hashes it)",
            ),
            (
                ROLLOUT,
                "phases[0].duration",
                "`2w` has no unit; write a number and one of s, m, h, d, e.g. \"14d\"",
            ),
            (ROLLOUT, "success[0].metric", "no metric `nope` is defined"),
            (
                "rollouts[1]",
                "flag",
                "must name the flag to roll out; it is empty",
            ),
        ],
    );
}

#[test]
fn an_error_reads_subject_field_message() {
    let error = PlanError {
        subject: format!("rollout `{FLAG}`"),
        field: "phases[1].duration".into(),
        message: "is empty".into(),
    };
    assert_eq!(
        error.to_string(),
        "rollout `calc-model`: phases[1].duration: is empty"
    );
    let error = PlanError {
        field: String::new(),
        ..error
    };
    assert_eq!(error.to_string(), "rollout `calc-model`: is empty");
}

#[test]
fn escalation_delays_are_durations_and_announcements_have_text() {
    check(
        |s| s[0].escalate_after = Some("30".into()),
        &[(
            ROLLOUT,
            "escalate_after",
            "`30` has no unit; write a number and one of s, m, h, d, e.g. \"14d\"",
        )],
    );
    check(
        |s| s[0].announcement = Some("  ".into()),
        &[(
            ROLLOUT,
            "announcement",
            "is empty; write the text users should read at general availability, or leave it out",
        )],
    );
    check(|s| s[0].escalate_after = Some("2h".into()), &[]);
}
