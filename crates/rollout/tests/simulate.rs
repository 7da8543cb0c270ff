//! The simulator: the production controller on a virtual clock against
//! synthetic traffic. Fixed seeds; plans with short phases so that a debug
//! build runs every test in seconds.

mod common;

use common::*;
use rollout::simulate::{EventKind, MINUTE_MS, RunReport};
use rollout::{
    Plan, Scenario, SimConfig, WhenHeld, fixed_horizon_sample_size, run_seed, simulate, summarize,
};

/// The issue's plan (two gates, two guards, a `power-users` beta) with
/// phases of `duration` each.
fn short_issue_plan(duration: &str) -> Plan {
    let mut spec = issue_spec();
    for phase in &mut spec.phases {
        phase.duration = duration.to_owned();
    }
    compile(spec)
}

fn config(plan: &Plan, requests_per_minute: f64, minutes: i64, seed: u64) -> SimConfig {
    let mut config = SimConfig::new(plan, requests_per_minute, 1);
    config.duration_ms = minutes * MINUTE_MS;
    config.users = 20_000;
    config.seed = seed;
    config
}

fn run(plan: &Plan, scenario: &str, config: &SimConfig) -> RunReport {
    let scenario = Scenario::preset(scenario).expect("a known scenario");
    simulate(plan, &scenario, config).expect("the simulation runs")
}

fn kinds(report: &RunReport) -> Vec<EventKind> {
    report.timeline.iter().map(|e| e.kind).collect()
}

#[test]
fn a_healthy_rollout_goes_through_every_phase_and_completes() {
    let plan = short_issue_plan("2h");
    let mut config = config(&plan, 1000.0, 7 * 60, 1);
    config.step_ms = 5 * MINUTE_MS;
    let report = run(&plan, "healthy", &config);
    assert_eq!(report.status, "completed", "{:#?}", report.timeline);
    assert_eq!(report.phase_name, "general-availability");
    assert_eq!(report.end_ms, 6 * 60 * MINUTE_MS, "three phases of 2h");
    assert!(report.rollback.is_none());
    assert_eq!(report.onset_ms, None);
    let phases: Vec<&str> = report
        .timeline
        .iter()
        .filter(|e| e.kind == EventKind::PhaseStarted)
        .map(|e| e.phase.as_str())
        .collect();
    assert_eq!(
        phases,
        ["beta", "controlled-expansion", "general-availability"]
    );
    assert_eq!(kinds(&report).last(), Some(&EventKind::Completed));
    // 5% of units in the beta, 25% next, everyone last: the treatment's
    // share of the 360,000 requests is about (5 + 25 + 100)/300.
    assert_eq!(report.requests, 360_000);
    let share = report.treatment_requests as f64 / report.requests as f64;
    assert!((share - 130.0 / 300.0).abs() < 0.03, "{share}");
}

#[test]
fn an_error_regression_of_the_seed_plan_is_rolled_back_within_the_beta() {
    let plan = seed_plan();
    let mut config = SimConfig::new(&plan, 1000.0, 1);
    config.seed = run_seed(1, 0);
    let report = run(&plan, "error-regression", &config);
    assert_eq!(report.status, "rolled_back");
    let rollback = report.rollback.as_ref().expect("a rollback");
    assert_eq!(rollback.phase_name, "beta");
    assert_eq!(rollback.metric, "error_rate");
    assert_eq!(rollback.variant, "advanced");
    assert!(rollback.after_onset);
    assert_eq!(report.onset_ms, Some(0));
    // Caught within hours, not days, on a few thousand treatment requests.
    assert!(rollback.delay_ms <= 3 * 60 * MINUTE_MS, "{rollback:?}");
    assert!(
        (200..10_000).contains(&rollback.treatment_requests),
        "{rollback:?}"
    );
    assert_eq!(report.end_ms, rollback.at_ms, "a rollback ends the run");
    let at = |kind| report.timeline.iter().position(|e| e.kind == kind);
    assert!(at(EventKind::GuardBreached) < at(EventKind::RolledBack));
    // The naive guard fires on the same data, sooner.
    let naive = report.naive.as_ref().expect("the naive guard fires");
    assert!(naive.at_ms <= rollback.at_ms);
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let plan = seed_plan();
    let mut config = SimConfig::new(&plan, 1000.0, 1);
    config.users = 20_000;
    config.seed = 42;
    let first = run(&plan, "error-regression", &config);
    let again = run(&plan, "error-regression", &config);
    assert_eq!(first, again);
    config.seed = 43;
    let other = run(&plan, "error-regression", &config);
    assert_ne!(first.rollback, other.rollback);
}

#[test]
fn a_late_regression_is_caught_in_the_phase_it_begins_in() {
    let plan = short_issue_plan("2h");
    let mut config = config(&plan, 1000.0, 6 * 60, 3);
    config.step_ms = 2 * MINUTE_MS;
    let report = run(&plan, "late-error-regression", &config);
    assert_eq!(
        report.onset_ms,
        Some(120 * MINUTE_MS),
        "at the second phase"
    );
    let rollback = report.rollback.as_ref().expect("a rollback");
    assert_eq!(rollback.phase_name, "controlled-expansion");
    assert!(rollback.after_onset);
    assert_eq!(rollback.delay_ms, rollback.at_ms - 120 * MINUTE_MS);
    let started = report
        .timeline
        .iter()
        .find(|e| e.kind == EventKind::RegressionStarted)
        .expect("the regression is on the timeline");
    assert_eq!(started.phase, "controlled-expansion");
}

#[test]
fn a_held_rollout_waits_unless_a_person_advances_it() {
    // A gate no treatment meets: mean latency at most 100 ms.
    let mut spec = issue_spec();
    for phase in &mut spec.phases {
        phase.duration = "1h".to_owned();
    }
    spec.success[1].max = Some(100.0);
    let plan = compile(spec);
    let mut config = config(&plan, 600.0, 4 * 60, 5);
    config.step_ms = 5 * MINUTE_MS;
    let waiting = run(&plan, "healthy", &config);
    assert_eq!(waiting.status, "held");
    assert_eq!(waiting.phase_name, "beta");
    assert!(kinds(&waiting).contains(&EventKind::Held));
    assert_eq!(kinds(&waiting).last(), Some(&EventKind::Ended));

    config.when_held = WhenHeld::Advance;
    let advanced = run(&plan, "healthy", &config);
    assert_eq!(advanced.status, "completed", "{:#?}", advanced.timeline);
    let by_hand = kinds(&advanced)
        .iter()
        .filter(|k| **k == EventKind::AdvancedByHand)
        .count();
    assert_eq!(by_hand, 3, "once per phase");
}

#[test]
fn the_audience_share_limits_the_beta() {
    let plan = short_issue_plan("1h");
    let mut config = config(&plan, 1000.0, 60, 9);
    config.step_ms = 10 * MINUTE_MS;
    config.audience_share = 0.2;
    let report = run(&plan, "healthy", &config);
    // 5% of the 20% of units in `power-users`: about 1% of requests.
    let share = report.treatment_requests as f64 / report.requests as f64;
    assert!((0.004..0.02).contains(&share), "{share}");
}

#[test]
fn runs_summarise_into_rollback_rates_and_delays() {
    let plan = seed_plan();
    let scenario = Scenario::preset("error-regression").expect("a scenario");
    let mut config = SimConfig::new(&plan, 1000.0, 1);
    config.users = 20_000;
    let runs: Vec<RunReport> = (0..6)
        .map(|i| {
            let mut config = config.clone();
            config.seed = run_seed(7, i);
            simulate(&plan, &scenario, &config).expect("the simulation runs")
        })
        .collect();
    let summary = summarize(&plan, &scenario, &config, &runs);
    assert_eq!(summary.runs, 6);
    assert_eq!(summary.rollbacks.count, 6);
    assert_eq!(summary.rollbacks.false_alarms, 0);
    assert_eq!(summary.rollbacks.detected_in_onset_phase, 6);
    assert_eq!(summary.rollbacks.detected_in_onset_phase_rate, 1.0);
    let requests = summary.rollbacks.treatment_requests.expect("delays");
    assert!(requests.median <= requests.p95 && requests.p95 <= requests.max);
    let fixed = summary.fixed_horizon.as_ref().expect("an error-rate guard");
    assert_eq!((fixed.limit, fixed.error_rate), (0.02, 0.04));
    // An always-valid bound at a Bonferroni share of alpha needs more than
    // a single fixed-horizon look, but not orders of magnitude more.
    let ratio = fixed.median_ratio.expect("a ratio");
    assert!((1.0..8.0).contains(&ratio), "{ratio}");
    let naive = summary
        .naive
        .treatment_requests
        .expect("the naive guard fires");
    assert!(naive.median < requests.median);
}

#[test]
fn the_fixed_horizon_sample_size_is_the_textbook_one() {
    // ((1.6449·√(0.02·0.98) + 0.8416·√(0.04·0.96)) / 0.02)² = 390.5
    let n = fixed_horizon_sample_size(0.02, 0.04, 0.05, 0.8).expect("a size");
    assert!((n - 390.5).abs() < 0.5, "{n}");
    assert_eq!(fixed_horizon_sample_size(0.04, 0.02, 0.05, 0.8), None);
    assert_eq!(fixed_horizon_sample_size(0.02, 0.04, 0.0, 0.8), None);
}

#[test]
fn bad_configurations_are_refused() {
    let plan = short_issue_plan("1h");
    let scenario = Scenario::preset("healthy").expect("a scenario");
    for change in [
        (|c: &mut SimConfig| c.step_ms = 90_000) as fn(&mut SimConfig),
        |c| c.requests_per_minute = 0.0,
        |c| c.users = 0,
        |c| c.audience_share = 1.5,
        |c| c.duration_ms = 1_000,
    ] {
        let mut config = config(&plan, 100.0, 60, 1);
        change(&mut config);
        assert!(simulate(&plan, &scenario, &config).is_err(), "{config:?}");
    }
    assert!(Scenario::preset("meteor-strike").is_none());
}
