//! Properties of any run of the controller: whatever the commands, the
//! clock and the data, the percentage served never decreases except by a
//! rollback (or abort) to the control, every state round-trips through
//! JSON, a refused command changes nothing, and a step never panics.

mod common;

use std::sync::OnceLock;

use common::{Arm, CONTROL, DAY_MS, TREATMENT, error_regression, healthy, observations};
use proptest::prelude::*;
use rollout::{Action, Command, Observations, Plan, RolloutState, step};

/// The plans runs are drawn from: the issue's (auto), the same with the
/// A/B test in phase 2, and a manual one with a pause guard.
fn plans() -> &'static [Plan] {
    static PLANS: OnceLock<Vec<Plan>> = OnceLock::new();
    PLANS.get_or_init(|| {
        let mut manual = common::issue_spec();
        manual.advance = rollout::Advance::Manual;
        manual.guards[1].action = rollout::GuardAction::Pause;
        vec![
            common::issue_plan(),
            common::experiment_plan(),
            common::compile(manual),
        ]
    })
}

/// Data a step may see: none, healthy, an error regression, slower p95,
/// and a regression in one experiment arm.
fn data() -> &'static [Observations] {
    static DATA: OnceLock<Vec<Observations>> = OnceLock::new();
    DATA.get_or_init(|| {
        let arm = |variant, error_rate, latency_ms| Arm {
            variant,
            units: 1500,
            error_rate,
            latency_ms,
        };
        vec![
            Observations::new(),
            healthy(1500),
            error_regression(1500),
            observations(
                21,
                &[arm(CONTROL, 0.005, 150.0), arm(TREATMENT, 0.005, 260.0)],
            ),
            observations(
                22,
                &[
                    arm(CONTROL, 0.005, 150.0),
                    arm(TREATMENT, 0.005, 150.0),
                    arm("choice", 0.09, 150.0),
                    arm("auto", 0.005, 150.0),
                ],
            ),
        ]
    })
}

fn command() -> impl Strategy<Value = Option<Command>> {
    prop_oneof![
        4 => Just(None),
        1 => Just(Some(Command::Start { flag_version: Some(3) })),
        1 => Just(Some(Command::Advance)),
        1 => Just(Some(Command::Pause { reason: String::new() })),
        1 => Just(Some(Command::Resume)),
        1 => Just(Some(Command::Rollback { reason: "critical bug".into() })),
        1 => Just(Some(Command::Restart { flag_version: None })),
        1 => (-DAY_MS..5 * DAY_MS).prop_map(|by_ms| Some(Command::Extend { by_ms })),
        1 => Just(Some(Command::Abort { reason: String::new() })),
    ]
}

/// One step of a run: how far the clock moves, the command, the data.
fn moves() -> impl Strategy<Value = Vec<(i64, Option<Command>, usize)>> {
    prop::collection::vec((0..8 * DAY_MS, command(), 0..5usize), 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn served_percentages_only_fall_back_to_the_control(plan in 0..3usize, moves in moves()) {
        let plan = &plans()[plan];
        let mut state = RolloutState::new();
        let mut now = 1_700_000_000_000_i64;
        // The share of units served the rollout's arms; 0 is everyone on
        // the control (or the flag as it was).
        let mut served = 0.0_f64;
        for (elapsed, command, seen) in moves {
            now += elapsed;
            match step(plan, &state, &data()[seen], now, command.as_ref()) {
                Err(error) => {
                    prop_assert!(command.is_some());
                    prop_assert!(!error.message.is_empty());
                }
                Ok(step) => {
                    let mut serving_actions = 0;
                    for action in &step.actions {
                        match action {
                            Action::Serve { percent, arms, .. } => {
                                prop_assert!(
                                    *percent >= served,
                                    "{percent}% after {served}% ({:?})",
                                    step.state.status
                                );
                                let total: f64 = arms.iter().map(|(_, w)| w).sum();
                                prop_assert!((total - 100.0).abs() < 1e-9);
                                served = *percent;
                                serving_actions += 1;
                            }
                            Action::ServeTreatment { .. } => {
                                prop_assert!(served <= 100.0);
                                served = 100.0;
                                serving_actions += 1;
                            }
                            Action::ServeControl { .. } => {
                                prop_assert!(step.state.status.name() == "rolled_back"
                                    || step.state.status.name() == "aborted");
                                served = 0.0;
                                serving_actions += 1;
                            }
                            Action::Notify { message } => prop_assert!(!message.is_empty()),
                            Action::OpenIncident(incident) => {
                                prop_assert_eq!(&incident.flag, "calc-model");
                            }
                        }
                    }
                    prop_assert!(serving_actions <= 1);
                    // The state the server stores reads back the same.
                    let json = serde_json::to_string(&step.state).unwrap();
                    let back: RolloutState = serde_json::from_str(&json).unwrap();
                    prop_assert_eq!(&back, &step.state);
                    // Actions, too (they may be queued).
                    let json = serde_json::to_string(&step.actions).unwrap();
                    let back: Vec<Action> = serde_json::from_str(&json).unwrap();
                    prop_assert_eq!(back, step.actions);
                    if step.state.phase_end_ms.is_some() {
                        prop_assert!(step.state.phase_started_ms.is_some());
                    }
                    state = step.state;
                }
            }
        }
    }
}
