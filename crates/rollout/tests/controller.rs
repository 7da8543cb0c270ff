//! The controller's state machine: every command in every state (allowed
//! or refused, with its message), time-based progress, gates at the end of
//! a phase, guards that roll back or pause, pause/extend timing, restart,
//! completion, and states that survive being stored as JSON.

mod common;

use common::{
    Arm, CONTROL, DAY_MS, TREATMENT, error_regression, experiment_plan, healthy, issue_plan,
    issue_spec, observations,
};
use rollout::{
    Action, Advance, Check, Command, HoldReason, Incident, IncidentKind, Observations, PauseReason,
    Plan, RolloutState, Severity, Status, Step, desired_serve, step,
};

const T0: i64 = 1_700_000_000_000;
const HOUR_MS: i64 = 3_600_000;

#[track_caller]
fn ok(
    plan: &Plan,
    state: &RolloutState,
    data: &Observations,
    now: i64,
    command: Option<&Command>,
) -> Step {
    step(plan, state, data, now, command).unwrap_or_else(|e| panic!("refused: {e}"))
}

fn kinds(actions: &[Action]) -> Vec<&'static str> {
    actions
        .iter()
        .map(|a| match a {
            Action::Serve { .. } => "serve",
            Action::ServeControl { .. } => "serve_control",
            Action::ServeTreatment { .. } => "serve_treatment",
            Action::Notify { .. } => "notify",
            Action::OpenIncident(_) => "open_incident",
        })
        .collect()
}

fn incident(actions: &[Action]) -> &Incident {
    actions
        .iter()
        .find_map(|a| match a {
            Action::OpenIncident(incident) => Some(incident),
            _ => None,
        })
        .expect("an incident")
}

fn start() -> Command {
    Command::Start {
        flag_version: Some(7),
    }
}

fn rollback(reason: &str) -> Command {
    Command::Rollback {
        reason: reason.into(),
    }
}

fn serve(percent: f64, audience: Option<&str>) -> Action {
    Action::Serve {
        percent,
        arms: vec![(TREATMENT.to_owned(), 100.0)],
        otherwise: CONTROL.to_owned(),
        audience: audience.map(str::to_owned),
    }
}

/// A plan in a state, and the time to act at.
struct Fixture {
    plan: Plan,
    state: RolloutState,
    now: i64,
}

fn started(plan: &Plan) -> RolloutState {
    ok(
        plan,
        &RolloutState::new(),
        &Observations::new(),
        T0,
        Some(&start()),
    )
    .state
}

/// The issue's plan (or its manual version) in each state.
fn fixture(name: &str) -> Fixture {
    let plan = issue_plan();
    let none = Observations::new();
    let running = started(&plan);
    match name {
        "pending" => Fixture {
            plan,
            state: RolloutState::new(),
            now: T0,
        },
        "running" => Fixture {
            plan,
            state: running,
            now: T0 + DAY_MS,
        },
        "held (awaiting advance)" => {
            let mut spec = issue_spec();
            spec.advance = Advance::Manual;
            let plan = common::compile(spec);
            let state = started(&plan);
            let state = ok(&plan, &state, &healthy(2000), T0 + 14 * DAY_MS, None).state;
            assert_eq!(
                state.status,
                Status::Held {
                    why: HoldReason::AwaitingAdvance
                }
            );
            Fixture {
                plan,
                state,
                now: T0 + 14 * DAY_MS,
            }
        }
        "held (gates failed)" => {
            let state = ok(&plan, &running, &none, T0 + 14 * DAY_MS, None).state;
            assert!(matches!(
                state.status,
                Status::Held {
                    why: HoldReason::GatesFailed { .. }
                }
            ));
            Fixture {
                plan,
                state,
                now: T0 + 14 * DAY_MS,
            }
        }
        "paused" => {
            let pause = Command::Pause {
                reason: "investigating".into(),
            };
            let state = ok(&plan, &running, &none, T0 + DAY_MS, Some(&pause)).state;
            Fixture {
                plan,
                state,
                now: T0 + 2 * DAY_MS,
            }
        }
        "completed" => {
            let mut state = running;
            for _ in 0..3 {
                state = ok(&plan, &state, &none, T0 + DAY_MS, Some(&Command::Advance)).state;
            }
            assert!(matches!(state.status, Status::Completed { .. }));
            Fixture {
                plan,
                state,
                now: T0 + 2 * DAY_MS,
            }
        }
        "rolled_back" => {
            let state = ok(
                &plan,
                &running,
                &none,
                T0 + DAY_MS,
                Some(&rollback("critical bug")),
            )
            .state;
            Fixture {
                plan,
                state,
                now: T0 + 2 * DAY_MS,
            }
        }
        "aborted" => {
            let abort = Command::Abort {
                reason: "not needed".into(),
            };
            let state = ok(&plan, &running, &none, T0 + DAY_MS, Some(&abort)).state;
            Fixture {
                plan,
                state,
                now: T0 + 2 * DAY_MS,
            }
        }
        other => panic!("no fixture {other}"),
    }
}

fn command(name: &str) -> Command {
    match name {
        "start" => start(),
        "advance" => Command::Advance,
        "pause" => Command::Pause {
            reason: "looking into it".into(),
        },
        "resume" => Command::Resume,
        "rollback" => rollback("critical bug"),
        "restart" => Command::Restart { flag_version: None },
        "extend" => Command::Extend { by_ms: 3 * DAY_MS },
        "abort" => Command::Abort {
            reason: "not needed".into(),
        },
        other => panic!("no command {other}"),
    }
}

/// Allowed: the state after and the actions. Refused: the message.
enum Expect {
    To(&'static str, &'static [&'static str]),
    Refused(&'static str),
}

use Expect::{Refused, To};

const NOT_STARTED: &str = "the rollout of `calc-model` has not started; `start` starts it";
const RESTART_FIRST: &str =
    "`restart` is for a rolled-back or aborted rollout; roll it back or abort it first";
const ROLLED_BACK: &str = "the rollout of `calc-model` is rolled back; `restart` starts it again";
const ABORTED: &str = "the rollout of `calc-model` is aborted; `restart` starts it again";
const COMPLETED: &str =
    "the rollout of `calc-model` is completed; `rollback` returns everyone to the control";
const STOP: &[&str] = &["serve_control", "open_incident", "notify"];

#[test]
fn every_command_in_every_state() {
    let running = "the rollout of `calc-model` is running (phase `beta`, 1 of 3)";
    let awaiting = "the rollout of `calc-model` is held at the end of phase `beta`, 1 of 3, \
                    waiting for `advance`";
    let failed = "the rollout of `calc-model` is held at the end of phase `beta`, 1 of 3 because gates failed";
    let paused = "the rollout of `calc-model` is paused (phase `beta`, 1 of 3)";
    let table: Vec<(&str, &str, Expect)> = vec![
        ("pending", "start", To("running", &["serve", "notify"])),
        ("pending", "advance", Refused(NOT_STARTED)),
        ("pending", "pause", Refused(NOT_STARTED)),
        ("pending", "resume", Refused(NOT_STARTED)),
        ("pending", "rollback", Refused(NOT_STARTED)),
        ("pending", "restart", Refused(NOT_STARTED)),
        ("pending", "extend", Refused(NOT_STARTED)),
        ("pending", "abort", To("aborted", &["notify"])),
        ("running", "start", Refused("; it has started already")),
        ("running", "advance", To("running", &["serve", "notify"])),
        ("running", "pause", To("paused", &["notify"])),
        ("running", "resume", Refused("; it is not paused")),
        ("running", "rollback", To("rolled_back", STOP)),
        ("running", "restart", Refused(RESTART_FIRST)),
        ("running", "extend", To("running", &["notify"])),
        (
            "running",
            "abort",
            To("aborted", &["serve_control", "notify"]),
        ),
        (
            "held (awaiting advance)",
            "start",
            Refused("; it has started already"),
        ),
        (
            "held (awaiting advance)",
            "advance",
            To("running", &["serve", "notify"]),
        ),
        (
            "held (awaiting advance)",
            "pause",
            To("paused", &["notify"]),
        ),
        (
            "held (awaiting advance)",
            "resume",
            Refused("; it is not paused; `advance`, `extend` or `rollback` decides"),
        ),
        (
            "held (awaiting advance)",
            "rollback",
            To("rolled_back", STOP),
        ),
        ("held (awaiting advance)", "restart", Refused(RESTART_FIRST)),
        (
            "held (awaiting advance)",
            "extend",
            To("running", &["notify"]),
        ),
        (
            "held (awaiting advance)",
            "abort",
            To("aborted", &["serve_control", "notify"]),
        ),
        (
            "held (gates failed)",
            "start",
            Refused("; it has started already"),
        ),
        (
            "held (gates failed)",
            "advance",
            To("running", &["serve", "notify"]),
        ),
        ("held (gates failed)", "pause", To("paused", &["notify"])),
        (
            "held (gates failed)",
            "resume",
            Refused("; it is not paused; `advance`, `extend` or `rollback` decides"),
        ),
        ("held (gates failed)", "rollback", To("rolled_back", STOP)),
        ("held (gates failed)", "restart", Refused(RESTART_FIRST)),
        ("held (gates failed)", "extend", To("running", &["notify"])),
        (
            "held (gates failed)",
            "abort",
            To("aborted", &["serve_control", "notify"]),
        ),
        ("paused", "start", Refused("; it has started already")),
        ("paused", "advance", Refused("; `resume` it first")),
        ("paused", "pause", Refused("; `resume` continues it")),
        ("paused", "resume", To("running", &["notify"])),
        ("paused", "rollback", To("rolled_back", STOP)),
        ("paused", "restart", Refused(RESTART_FIRST)),
        ("paused", "extend", To("paused", &["notify"])),
        (
            "paused",
            "abort",
            To("aborted", &["serve_control", "notify"]),
        ),
        ("completed", "start", Refused(COMPLETED)),
        ("completed", "advance", Refused(COMPLETED)),
        ("completed", "pause", Refused(COMPLETED)),
        ("completed", "resume", Refused(COMPLETED)),
        ("completed", "rollback", To("rolled_back", STOP)),
        ("completed", "restart", Refused(COMPLETED)),
        ("completed", "extend", Refused(COMPLETED)),
        ("completed", "abort", Refused(COMPLETED)),
        ("rolled_back", "start", Refused(ROLLED_BACK)),
        ("rolled_back", "advance", Refused(ROLLED_BACK)),
        ("rolled_back", "pause", Refused(ROLLED_BACK)),
        ("rolled_back", "resume", Refused(ROLLED_BACK)),
        ("rolled_back", "rollback", Refused(ROLLED_BACK)),
        (
            "rolled_back",
            "restart",
            To("running", &["serve", "notify"]),
        ),
        ("rolled_back", "extend", Refused(ROLLED_BACK)),
        ("rolled_back", "abort", Refused(ROLLED_BACK)),
        ("aborted", "start", Refused(ABORTED)),
        ("aborted", "advance", Refused(ABORTED)),
        ("aborted", "pause", Refused(ABORTED)),
        ("aborted", "resume", Refused(ABORTED)),
        ("aborted", "rollback", Refused(ABORTED)),
        ("aborted", "restart", To("running", &["serve", "notify"])),
        ("aborted", "extend", Refused(ABORTED)),
        ("aborted", "abort", Refused(ABORTED)),
    ];
    assert_eq!(table.len(), 8 * 8, "every state × every command");
    for (state_name, command_name, expect) in table {
        let fixture = fixture(state_name);
        let command = command(command_name);
        let result = step(
            &fixture.plan,
            &fixture.state,
            &Observations::new(),
            fixture.now,
            Some(&command),
        );
        let case = format!("{command_name} when {state_name}");
        match (expect, result) {
            (To(status, actions), Ok(step)) => {
                assert_eq!(step.state.status.name(), status, "{case}");
                assert_eq!(kinds(&step.actions), actions, "{case}");
            }
            (Refused(message), Err(error)) => {
                let prefix = match state_name {
                    "running" => running,
                    "held (awaiting advance)" => awaiting,
                    "held (gates failed)" => failed,
                    "paused" => paused,
                    _ => "",
                };
                let expected = if message.starts_with(';') {
                    format!("{prefix}{message}")
                } else if message == RESTART_FIRST {
                    format!("{prefix}; {message}")
                } else {
                    message.to_owned()
                };
                assert_eq!(error.message, expected, "{case}");
                assert_eq!(error.to_string(), expected, "{case}");
                assert_eq!(error.command, command_name, "{case}");
            }
            (To(status, _), Err(error)) => panic!("{case}: expected {status}, refused: {error}"),
            (Refused(message), Ok(step)) => {
                panic!(
                    "{case}: expected refusal {message:?}, got {:?}",
                    step.state.status
                )
            }
        }
    }
}

#[test]
fn bad_arguments_are_refused() {
    let fixture = fixture("running");
    let none = Observations::new();
    let error = step(
        &fixture.plan,
        &fixture.state,
        &none,
        fixture.now,
        Some(&rollback(" ")),
    )
    .unwrap_err();
    assert_eq!(
        error.message,
        "`rollback` needs a reason (e.g. \"critical bug\"); it goes into the incident"
    );
    let extend = Command::Extend { by_ms: 0 };
    let error = step(
        &fixture.plan,
        &fixture.state,
        &none,
        fixture.now,
        Some(&extend),
    )
    .unwrap_err();
    assert_eq!(
        error.message,
        "`extend` needs a positive duration, e.g. \"3d\"; got 0 ms"
    );
}

#[test]
fn start_serves_the_first_phase_and_time_moves_the_rollout_on() {
    let plan = issue_plan();
    let data = healthy(3000);
    let step0 = ok(&plan, &RolloutState::new(), &data, T0, Some(&start()));
    assert_eq!(step0.actions[0], serve(5.0, Some("power-users")));
    let Action::Notify { message } = &step0.actions[1] else {
        panic!("a notification")
    };
    assert_eq!(
        message,
        "rollout of `calc-model` started: phase `beta` (1 of 3) serves `advanced` to 5% of \
         segment `power-users` for at least 14d"
    );
    let state = step0.state;
    assert_eq!(state.status, Status::Running);
    assert_eq!(state.phase, 0);
    assert_eq!(state.started_ms, Some(T0));
    assert_eq!(state.phase_started_ms, Some(T0));
    assert_eq!(state.phase_end_ms, Some(T0 + 14 * DAY_MS));
    assert_eq!(state.flag_version_before, Some(7));
    assert_eq!(state.remaining_ms(T0 + DAY_MS), Some(13 * DAY_MS));

    // Before the phase is over nothing happens, however good the data.
    let later = ok(&plan, &state, &data, T0 + 14 * DAY_MS - 1, None);
    assert_eq!(later.actions, vec![]);
    assert_eq!(later.state, state);
    assert_eq!(later.verdicts.len(), 4);

    // At its end, with every gate holding, the next phase.
    let next = ok(&plan, &state, &data, T0 + 14 * DAY_MS, None);
    assert_eq!(next.state.status, Status::Running);
    assert_eq!(next.state.phase, 1);
    assert_eq!(next.state.phase_started_ms, Some(T0 + 14 * DAY_MS));
    assert_eq!(next.state.phase_end_ms, Some(T0 + 28 * DAY_MS));
    assert_eq!(next.actions[0], serve(25.0, None));
    assert_eq!(kinds(&next.actions), ["serve", "notify"]);

    // Then general availability, then completion: everyone gets the treatment.
    let ga = ok(&plan, &next.state, &data, T0 + 28 * DAY_MS, None);
    assert_eq!(ga.actions[0], serve(100.0, None));
    let done = ok(&plan, &ga.state, &data, T0 + 42 * DAY_MS, None);
    assert_eq!(
        done.state.status,
        Status::Completed {
            at_ms: T0 + 42 * DAY_MS
        }
    );
    assert_eq!(
        done.actions[0],
        Action::ServeTreatment {
            treatment: TREATMENT.into(),
            audience: None
        }
    );
    // A completed rollout stays completed.
    let after = ok(
        &plan,
        &done.state,
        &error_regression(3000),
        T0 + 50 * DAY_MS,
        None,
    );
    assert_eq!(after.actions, vec![]);
    assert_eq!(after.state, done.state);
}

#[test]
fn completion_short_of_everyone_keeps_serving_the_last_phase() {
    let mut spec = issue_spec();
    spec.phases.truncate(2);
    let plan = common::compile(spec);
    let state = started(&plan);
    let state = ok(
        &plan,
        &state,
        &Observations::new(),
        T0,
        Some(&Command::Advance),
    )
    .state;
    let done = ok(
        &plan,
        &state,
        &Observations::new(),
        T0,
        Some(&Command::Advance),
    );
    assert!(matches!(done.state.status, Status::Completed { .. }));
    assert_eq!(kinds(&done.actions), ["notify"]);
    assert_eq!(
        done.actions,
        vec![Action::Notify {
            message: "rollout of `calc-model` completed by hand: the flag keeps serving phase \
                      `controlled-expansion` (25%)"
                .into()
        }]
    );
    assert_eq!(desired_serve(&plan, &done.state), Some(serve(25.0, None)));
}

#[test]
fn a_failed_gate_holds_the_rollout_with_an_incident() {
    let plan = issue_plan();
    let state = started(&plan);
    // 1.5% errors: the 1% gate fails (the 2% guard does not fire).
    let data = observations(
        6,
        &[
            Arm {
                variant: CONTROL,
                units: 3000,
                error_rate: 0.005,
                latency_ms: 150.0,
            },
            Arm {
                variant: TREATMENT,
                units: 3000,
                error_rate: 0.015,
                latency_ms: 150.0,
            },
        ],
    );
    let held = ok(&plan, &state, &data, T0 + 14 * DAY_MS, None);
    let Status::Held {
        why: HoldReason::GatesFailed { gates },
    } = &held.state.status
    else {
        panic!("held: {:?}", held.state.status)
    };
    assert_eq!(gates.len(), 1);
    assert!(
        gates[0].starts_with("`error_rate` of `advanced` is 0.01"),
        "{}",
        gates[0]
    );
    assert!(
        gates[0].ends_with(
            "(limit: max 0.01; 3000 units of `advanced`, 3000 units of `simple`): breached"
        ),
        "{}",
        gates[0]
    );
    assert_eq!(held.state.phase, 0);
    assert_eq!(kinds(&held.actions), ["open_incident", "notify"]);
    let incident = incident(&held.actions);
    assert_eq!(incident.kind, IncidentKind::GatesFailed);
    assert_eq!(incident.severity, Severity::Minor);
    assert_eq!(
        incident.title,
        "`calc-model` held after phase `beta`: gate `error_rate` (max 0.01) not met"
    );
    assert_eq!(incident.evidence.len(), 1);
    assert_eq!(incident.evidence[0].check, Check::Gate { index: 0 });
    assert_eq!(incident.phase, "beta");
    assert_eq!(incident.percent, 5.0);

    // Held means held: more steps do nothing, even when the data recover.
    for (now, data) in [
        (T0 + 15 * DAY_MS, &data),
        (T0 + 16 * DAY_MS, &healthy(3000)),
    ] {
        let again = ok(&plan, &held.state, data, now, None);
        assert_eq!(again.actions, vec![]);
        assert_eq!(again.state, held.state);
    }
    // A person decides: advance overrides the gates.
    let advanced = ok(
        &plan,
        &held.state,
        &data,
        T0 + 16 * DAY_MS,
        Some(&Command::Advance),
    );
    assert_eq!(advanced.state.phase, 1);
    assert_eq!(advanced.actions[0], serve(25.0, None));
}

#[test]
fn a_gate_without_enough_units_holds_too() {
    let plan = issue_plan();
    let state = started(&plan);
    let held = ok(&plan, &state, &healthy(50), T0 + 14 * DAY_MS, None);
    let incident = incident(&held.actions);
    assert_eq!(incident.evidence.len(), 2);
    assert_eq!(
        incident.title,
        "`calc-model` held after phase `beta`: gate `error_rate` (max 0.01) not met, gate \
         `response_time_mean` (max 200) not met"
    );
}

#[test]
fn manual_advance_waits_for_a_person_after_the_gates_hold() {
    let fixture = fixture("held (awaiting advance)");
    let plan = &fixture.plan;
    let state = started(plan);
    let held = ok(plan, &state, &healthy(2000), T0 + 14 * DAY_MS, None);
    assert_eq!(
        held.actions,
        vec![Action::Notify {
            message: "phase `beta` of the rollout of `calc-model` is done and its gates hold; \
                      `rollgate rollout advance` will go to phase `controlled-expansion`"
                .into()
        }]
    );
    let again = ok(plan, &held.state, &healthy(2000), T0 + 20 * DAY_MS, None);
    assert_eq!(again.actions, vec![]);
    let next = ok(
        plan,
        &held.state,
        &healthy(2000),
        T0 + 20 * DAY_MS,
        Some(&Command::Advance),
    );
    assert_eq!(next.state.phase, 1);
    assert_eq!(next.state.phase_end_ms, Some(T0 + 34 * DAY_MS));
    // Failing gates still open an incident in manual mode.
    let failed = ok(plan, &state, &Observations::new(), T0 + 14 * DAY_MS, None);
    assert_eq!(kinds(&failed.actions), ["open_incident", "notify"]);
}

#[test]
fn a_rollback_guard_serves_the_control_in_the_same_step() {
    let plan = issue_plan();
    let state = started(&plan);
    let rolled = ok(
        &plan,
        &state,
        &error_regression(2000),
        T0 + 3 * DAY_MS,
        None,
    );
    let Status::RolledBack { reason, at_ms } = &rolled.state.status else {
        panic!("rolled back: {:?}", rolled.state.status)
    };
    assert_eq!(*at_ms, T0 + 3 * DAY_MS);
    assert!(
        reason.starts_with("guard fired: `error_rate` of `advanced` is 0.0"),
        "{reason}"
    );
    assert_eq!(kinds(&rolled.actions), STOP);
    assert_eq!(
        rolled.actions[0],
        Action::ServeControl {
            control: CONTROL.into(),
            restore_version: Some(7)
        }
    );
    let incident = incident(&rolled.actions);
    assert_eq!(incident.kind, IncidentKind::GuardRollback);
    assert_eq!(incident.severity, Severity::Critical);
    assert_eq!(
        incident.title,
        "`calc-model` rolled back: `error_rate` of `advanced` breached its limit (max 0.02)"
    );
    assert_eq!(incident.restore_version, Some(7));
    assert_eq!(incident.opened_ms, T0 + 3 * DAY_MS);
    assert!(
        incident
            .summary
            .contains("The flag's version before the rollout was 7.")
    );
    // The evidence: metric, values and units per variant, interval, limit.
    assert_eq!(incident.evidence.len(), 1);
    let evidence = &incident.evidence[0];
    assert_eq!(evidence.metric, "error_rate");
    assert_eq!(evidence.limit, rollout::Limit::Max(0.02));
    assert_eq!(evidence.values.len(), 2);
    assert_eq!(
        (
            evidence.values[0].variant.as_str(),
            evidence.values[0].units
        ),
        (TREATMENT, 2000)
    );
    assert_eq!(
        (
            evidence.values[1].variant.as_str(),
            evidence.values[1].units
        ),
        (CONTROL, 2000)
    );
    assert!(evidence.values.iter().all(|v| v.value.is_some()));
    assert!(evidence.interval.as_ref().unwrap().lower.unwrap() > 0.02);
    assert_eq!(evidence.min_samples, 100);
    // Rolled back stays rolled back.
    let again = ok(
        &plan,
        &rolled.state,
        &error_regression(2000),
        T0 + 4 * DAY_MS,
        None,
    );
    assert_eq!(again.actions, vec![]);
}

#[test]
fn a_command_that_starts_a_phase_does_not_judge_the_window_before() {
    let plan = issue_plan();
    let first = ok(
        &plan,
        &RolloutState::new(),
        &error_regression(2000),
        T0,
        Some(&start()),
    );
    assert_eq!(first.state.status, Status::Running);
    // The next step judges the phase's own data.
    let next = ok(
        &plan,
        &first.state,
        &error_regression(2000),
        T0 + HOUR_MS,
        None,
    );
    assert_eq!(next.state.status.name(), "rolled_back");
}

#[test]
fn a_regression_in_any_arm_rolls_the_whole_rollout_back() {
    let plan = experiment_plan();
    let state = started(&plan);
    let expansion = ok(&plan, &state, &healthy(2000), T0 + 14 * DAY_MS, None);
    assert_eq!(
        expansion.actions[0],
        Action::Serve {
            percent: 25.0,
            arms: ["simple", "advanced", "choice", "auto"]
                .into_iter()
                .map(|v| (v.to_owned(), 25.0))
                .collect(),
            otherwise: CONTROL.into(),
            audience: None,
        }
    );
    let arm = |variant, error_rate| Arm {
        variant,
        units: 2000,
        error_rate,
        latency_ms: 150.0,
    };
    let data = observations(
        4,
        &[
            arm(CONTROL, 0.005),
            arm(TREATMENT, 0.005),
            arm("choice", 0.005),
            arm("auto", 0.07),
        ],
    );
    let rolled = ok(&plan, &expansion.state, &data, T0 + 15 * DAY_MS, None);
    assert_eq!(rolled.state.status.name(), "rolled_back");
    let incident = incident(&rolled.actions);
    assert_eq!(incident.phase, "controlled-expansion");
    assert_eq!(incident.evidence.len(), 1);
    assert_eq!(incident.evidence[0].variant, "auto");
    assert_eq!(kinds(&rolled.actions), STOP);
}

#[test]
fn a_pause_guard_holds_the_percentage_until_a_person_resumes() {
    let mut spec = issue_spec();
    spec.guards[1].action = rollout::GuardAction::Pause;
    let plan = common::compile(spec);
    let state = started(&plan);
    let slow = observations(
        3,
        &[
            Arm {
                variant: CONTROL,
                units: 3000,
                error_rate: 0.005,
                latency_ms: 150.0,
            },
            Arm {
                variant: TREATMENT,
                units: 3000,
                error_rate: 0.005,
                latency_ms: 240.0,
            },
        ],
    );
    let paused = ok(&plan, &state, &slow, T0 + 2 * DAY_MS, None);
    let Status::Paused {
        why,
        since_ms,
        held,
    } = &paused.state.status
    else {
        panic!("paused: {:?}", paused.state.status)
    };
    assert!(matches!(why, PauseReason::Guards { guards, .. } if guards == &[1]));
    assert_eq!((*since_ms, held), (T0 + 2 * DAY_MS, &None));
    // No serving action: the percentage stays.
    assert_eq!(kinds(&paused.actions), ["open_incident", "notify"]);
    let incident = incident(&paused.actions);
    assert_eq!(incident.kind, IncidentKind::GuardPause);
    assert_eq!(incident.severity, Severity::Major);
    assert_eq!(
        incident.title,
        "`calc-model` paused: `response_time_p95` of `advanced` breached its limit (+20%)"
    );
    assert_eq!(
        desired_serve(&plan, &paused.state),
        Some(serve(5.0, Some("power-users")))
    );

    // Paused: the clock stands still, the pause guard is quiet, time does
    // not end the phase.
    let still = ok(&plan, &paused.state, &slow, T0 + 30 * DAY_MS, None);
    assert_eq!(still.actions, vec![]);
    assert_eq!(
        paused.state.remaining_ms(T0 + 30 * DAY_MS),
        Some(12 * DAY_MS)
    );

    // Resumed a day later: the phase ends a day later, and the acknowledged
    // guard does not pause this phase again.
    let resumed = ok(
        &plan,
        &paused.state,
        &slow,
        T0 + 3 * DAY_MS,
        Some(&Command::Resume),
    );
    assert_eq!(resumed.state.status, Status::Running);
    assert_eq!(resumed.state.phase_end_ms, Some(T0 + 15 * DAY_MS));
    assert_eq!(resumed.state.paused_ms, DAY_MS);
    assert_eq!(resumed.state.acknowledged_guards, vec![1]);
    assert_eq!(kinds(&resumed.actions), ["notify"]);
    let quiet = ok(&plan, &resumed.state, &slow, T0 + 4 * DAY_MS, None);
    assert_eq!(quiet.actions, vec![]);
    // A rollback guard is never silenced, paused or not.
    let rolled = ok(
        &plan,
        &paused.state,
        &error_regression(3000),
        T0 + 3 * DAY_MS,
        None,
    );
    assert_eq!(rolled.state.status.name(), "rolled_back");
    // The next phase forgets the acknowledgement.
    let next = ok(&plan, &quiet.state, &healthy(3000), T0 + 15 * DAY_MS, None);
    assert_eq!(next.state.phase, 1);
    assert_eq!(next.state.acknowledged_guards, Vec::<usize>::new());
}

#[test]
fn a_pause_guard_on_a_held_rollout_returns_to_held_on_resume() {
    let mut spec = issue_spec();
    spec.guards[1].action = rollout::GuardAction::Pause;
    let plan = common::compile(spec);
    let state = started(&plan);
    let held = ok(&plan, &state, &Observations::new(), T0 + 14 * DAY_MS, None).state;
    let slow = observations(
        3,
        &[
            Arm {
                variant: CONTROL,
                units: 3000,
                error_rate: 0.005,
                latency_ms: 150.0,
            },
            Arm {
                variant: TREATMENT,
                units: 3000,
                error_rate: 0.005,
                latency_ms: 240.0,
            },
        ],
    );
    let paused = ok(&plan, &held, &slow, T0 + 15 * DAY_MS, None);
    assert!(matches!(
        paused.state.status,
        Status::Paused { held: Some(_), .. }
    ));
    let resumed = ok(
        &plan,
        &paused.state,
        &slow,
        T0 + 16 * DAY_MS,
        Some(&Command::Resume),
    );
    assert_eq!(resumed.state.status, held.status);
    assert_eq!(kinds(&resumed.actions), ["notify"]);
}

#[test]
fn extend_gives_a_phase_more_time() {
    let plan = issue_plan();
    let none = Observations::new();
    let extend = Command::Extend { by_ms: 2 * DAY_MS };
    // Running: the end moves by the extension.
    let state = started(&plan);
    let extended = ok(&plan, &state, &none, T0 + DAY_MS, Some(&extend));
    assert_eq!(extended.state.phase_end_ms, Some(T0 + 16 * DAY_MS));
    assert_eq!(
        extended.actions,
        vec![Action::Notify {
            message: "phase `beta` of the rollout of `calc-model` extended by 2d".into()
        }]
    );
    // Held (its end passed): the extension counts from now, and it runs again.
    let held = ok(&plan, &state, &none, T0 + 14 * DAY_MS, None).state;
    let extended = ok(&plan, &held, &none, T0 + 15 * DAY_MS, Some(&extend));
    assert_eq!(extended.state.status, Status::Running);
    assert_eq!(extended.state.phase_end_ms, Some(T0 + 17 * DAY_MS));
    let end = ok(
        &plan,
        &extended.state,
        &healthy(3000),
        T0 + 17 * DAY_MS,
        None,
    );
    assert_eq!(end.state.phase, 1);
    // Paused: the end moves, and resuming adds the pause on top.
    let pause = Command::Pause {
        reason: String::new(),
    };
    let paused = ok(&plan, &state, &none, T0 + DAY_MS, Some(&pause)).state;
    let paused = ok(&plan, &paused, &none, T0 + 2 * DAY_MS, Some(&extend)).state;
    assert_eq!(paused.status.name(), "paused");
    let resumed = ok(
        &plan,
        &paused,
        &none,
        T0 + 3 * DAY_MS,
        Some(&Command::Resume),
    )
    .state;
    assert_eq!(resumed.phase_end_ms, Some(T0 + 18 * DAY_MS));
}

#[test]
fn a_manual_rollback_records_the_reason_and_restart_begins_again() {
    let plan = issue_plan();
    let state = started(&plan);
    let state = ok(&plan, &state, &healthy(2000), T0 + 14 * DAY_MS, None).state;
    assert_eq!(state.phase, 1);
    let rolled = ok(
        &plan,
        &state,
        &healthy(2000),
        T0 + 15 * DAY_MS,
        Some(&rollback("critical bug")),
    );
    assert_eq!(
        rolled.state.status,
        Status::RolledBack {
            reason: "critical bug".into(),
            at_ms: T0 + 15 * DAY_MS
        }
    );
    let incident = incident(&rolled.actions);
    assert_eq!(incident.kind, IncidentKind::ManualRollback);
    assert_eq!(incident.severity, Severity::Critical);
    assert_eq!(
        incident.title,
        "`calc-model` rolled back by hand: critical bug"
    );
    assert_eq!(incident.evidence, vec![]);
    assert_eq!(incident.phase, "controlled-expansion");
    assert_eq!(
        incident.summary,
        "Rolled back in phase `controlled-expansion`: critical bug. Everyone now gets `simple`. \
         The flag's version before the rollout was 7."
    );

    let restart = Command::Restart {
        flag_version: Some(9),
    };
    let again = ok(
        &plan,
        &rolled.state,
        &healthy(2000),
        T0 + 20 * DAY_MS,
        Some(&restart),
    );
    assert_eq!(again.state.status, Status::Running);
    assert_eq!(again.state.generation, 1);
    assert_eq!(again.state.phase, 0);
    assert_eq!(again.state.started_ms, Some(T0 + 20 * DAY_MS));
    assert_eq!(again.state.phase_end_ms, Some(T0 + 34 * DAY_MS));
    assert_eq!(again.state.flag_version_before, Some(9));
    assert_eq!(again.actions[0], serve(5.0, Some("power-users")));
}

#[test]
fn desired_serve_follows_the_state() {
    for (name, expected) in [
        ("pending", None),
        ("running", Some(serve(5.0, Some("power-users")))),
        ("held (gates failed)", Some(serve(5.0, Some("power-users")))),
        ("paused", Some(serve(5.0, Some("power-users")))),
        (
            "completed",
            Some(Action::ServeTreatment {
                treatment: TREATMENT.into(),
                audience: None,
            }),
        ),
        (
            "rolled_back",
            Some(Action::ServeControl {
                control: CONTROL.into(),
                restore_version: Some(7),
            }),
        ),
    ] {
        let fixture = fixture(name);
        assert_eq!(
            desired_serve(&fixture.plan, &fixture.state),
            expected,
            "{name}"
        );
    }
    let fixture = fixture("aborted");
    assert_eq!(
        desired_serve(&fixture.plan, &fixture.state),
        Some(Action::ServeControl {
            control: CONTROL.into(),
            restore_version: Some(7),
        })
    );
    // Aborted before it started: the flag stays as it was.
    let abort = Command::Abort {
        reason: String::new(),
    };
    let never = ok(
        &fixture.plan,
        &RolloutState::new(),
        &Observations::new(),
        T0,
        Some(&abort),
    );
    assert_eq!(desired_serve(&fixture.plan, &never.state), None);
}

#[test]
fn a_stored_state_carries_on_after_a_restart_of_the_server() {
    let plan = issue_plan();
    let data = healthy(2000);
    let mut state = started(&plan);
    // Step, store as JSON, load, step: the same as stepping straight on.
    let mut direct = state.clone();
    for day in [1, 13, 14, 20, 28, 41, 42] {
        let now = T0 + day * DAY_MS;
        let json = serde_json::to_string(&state).unwrap();
        let loaded: RolloutState = serde_json::from_str(&json).unwrap();
        assert_eq!(loaded, state);
        state = ok(&plan, &loaded, &data, now, None).state;
        direct = ok(&plan, &direct, &data, now, None).state;
        assert_eq!(state, direct);
    }
    assert_eq!(state.status.name(), "completed");
    let json = serde_json::to_value(&state).unwrap();
    assert_eq!(
        json["status"],
        serde_json::json!({"kind": "completed", "at_ms": T0 + 42 * DAY_MS})
    );
    // Older states without the newer fields still load.
    let old: RolloutState = serde_json::from_str(r#"{"status": {"kind": "pending"}}"#).unwrap();
    assert_eq!(old, RolloutState::new());
}

#[test]
fn commands_and_actions_have_a_json_form() {
    let command: Command =
        serde_json::from_str(r#"{"command": "rollback", "reason": "critical bug"}"#).unwrap();
    assert_eq!(command, rollback("critical bug"));
    let command: Command = serde_json::from_str(r#"{"command": "start"}"#).unwrap();
    assert_eq!(command, Command::Start { flag_version: None });
    assert_eq!(
        serde_json::to_value(serve(5.0, Some("power-users"))).unwrap(),
        serde_json::json!({
            "action": "serve",
            "percent": 5.0,
            "arms": [["advanced", 100.0]],
            "otherwise": "simple",
            "audience": "power-users"
        })
    );
    let plan = issue_plan();
    let rolled = ok(
        &plan,
        &started(&plan),
        &error_regression(2000),
        T0 + DAY_MS,
        None,
    );
    let json = serde_json::to_value(&rolled.actions).unwrap();
    assert_eq!(json[1]["action"], "open_incident");
    assert_eq!(json[1]["kind"], "guard_rollback");
    assert_eq!(
        json[1]["evidence"][0]["check"],
        serde_json::json!({"kind": "guard", "index": 0, "action": "rollback"})
    );
    assert_eq!(
        json[1]["evidence"][0]["outcome"],
        serde_json::json!({"verdict": "breached"})
    );
    let back: Vec<Action> = serde_json::from_value(json).unwrap();
    assert_eq!(back, rolled.actions);
}

#[test]
fn a_state_saved_under_a_longer_plan_ends_at_the_last_phase() {
    let plan = issue_plan();
    let mut state = started(&plan);
    state.phase = 7;
    let done = ok(&plan, &state, &healthy(2000), T0 + 14 * DAY_MS, None);
    assert_eq!(done.state.status.name(), "completed");
    assert_eq!(done.state.phase, 7);
    assert_eq!(kinds(&done.actions), ["serve_treatment", "notify"]);
}

#[test]
fn time_before_the_start_of_a_phase_changes_nothing() {
    let plan = issue_plan();
    let state = started(&plan);
    let earlier = ok(&plan, &state, &healthy(2000), T0 - DAY_MS, None);
    assert_eq!(earlier.actions, vec![]);
    assert_eq!(earlier.state, state);
}

#[test]
fn a_check_names_its_gate_or_guard() {
    let plan = issue_plan();
    let step = ok(&plan, &started(&plan), &healthy(500), T0 + HOUR_MS, None);
    assert!(matches!(step.verdicts[0].check, Check::Gate { index: 0 }));
}

#[test]
fn an_incident_starts_at_the_support_level_of_what_opened_it() {
    let mut plan = issue_plan();
    let state = started(&plan);
    let level = |plan: &Plan, data: &Observations, now: i64, command: Option<&Command>| {
        incident(&ok(plan, &state, data, now, command).actions).level
    };
    // A guard without a level: L2.
    assert_eq!(
        level(&plan, &error_regression(2000), T0 + 3 * DAY_MS, None),
        rollout::SupportLevel::L2
    );
    // A rollback by hand is the seed's critical bug: L3.
    assert_eq!(
        level(
            &plan,
            &healthy(2000),
            T0 + DAY_MS,
            Some(&rollback("critical bug"))
        ),
        rollout::SupportLevel::L3
    );
    // Gates that do not hold at the end of a phase: L1.
    assert_eq!(
        level(&plan, &Observations::new(), T0 + 14 * DAY_MS, None),
        rollout::SupportLevel::L1
    );
    // The plan names L3 for the guard that fires.
    let fired = ok(
        &plan,
        &state,
        &error_regression(2000),
        T0 + 3 * DAY_MS,
        None,
    );
    let Check::Guard { index, .. } = incident(&fired.actions).evidence[0].check else {
        panic!("a guard fired")
    };
    plan.guards[index].level = rollout::SupportLevel::L3;
    assert_eq!(
        level(&plan, &error_regression(2000), T0 + 3 * DAY_MS, None),
        rollout::SupportLevel::L3
    );
}
