//! The controller: a rollout's [`RolloutState`] and the pure [`step`]
//! function that moves it.
//!
//! ```text
//!            start                 time up, gates hold (auto) / advance
//! pending ─────────► running(0) ─────────────────────────────► running(1) … ──► completed
//!                     │  ▲   │ time up: gates fail, or manual advance
//!          pause guard│  │   ▼
//!          or `pause` │  │ held ── advance ──► next phase (or completed)
//!                     ▼  │resume   └─ extend ──► running, later end
//!                    paused
//!  running / held / paused ── rollback guard or `rollback` ──► rolled_back ── restart ──► running(0)
//!  pending / running / held / paused ── `abort` ──► aborted ── restart ──► running(0)
//!  completed ── `rollback` ──► rolled_back
//! ```
//!
//! The server calls [`step`] every few seconds (and with a [`Command`] when
//! a person acts), applies the returned [`Action`]s and stores the new state
//! in the same transaction. Nothing here reads a clock: `now_ms` comes in,
//! and every time the state keeps is a stored timestamp, so a restarted
//! server carries on where it stopped and a simulator can replay a rollout
//! on a virtual clock.
//!
//! Decisions, in order, within one step:
//! 1. The command, if any. One a state does not allow is a [`CommandError`]
//!    and changes nothing. A command that starts a phase (`start`,
//!    `restart`, `advance`) ends the step: the observations passed in
//!    describe the window before it.
//! 2. While the treatment is served (running, held, paused): a rollback
//!    guard that fires, on any variant, rolls the whole rollout back — the
//!    flag serves the control to everyone in this same step, and an
//!    incident records the evidence and the flag version to return to.
//! 3. Otherwise a pause guard that fires (not yet acknowledged in this
//!    phase) pauses: the percentage stays, an incident is opened.
//! 4. Running and the phase's time up: the gates are judged. All hold →
//!    the next phase (`advance = "auto"`) or held awaiting `advance`
//!    (`manual`); any fails or lacks data → held, with an incident naming the
//!    gates, until a person advances, extends or rolls back.
//!
//! Timing: a phase ends at `phase_end_ms`, set to start + duration when it
//! starts. Time paused does not count: `resume` moves the end later by the
//! pause's length. `extend` moves the end later by the given duration; for a
//! held phase (whose end has passed) the extension counts from now. A
//! phase's clock starts when the phase does, so a restart runs every phase
//! in full again.
//!
//! Completion: after the last phase, if it served the treatment to 100% of
//! its audience without an experiment, the flag is told to serve the
//! treatment as a plain variant ([`Action::ServeTreatment`]), to everyone
//! (or everyone in the audience): the release is done and the split can go.
//! If the last phase stopped short of 100% or ran an experiment, completion
//! leaves the flag serving what that phase served: the plan's author chose
//! to stop there.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::observe::Observations;
use crate::plan::{Phase, Plan};
use crate::spec::{Advance, GuardAction, SupportLevel};
use crate::verdict::{Check, Verdict, judge};

/// Where a rollout is. Stored by the server as JSON; every field but
/// `status` has a default, so states written by older versions still load.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RolloutState {
    pub status: Status,
    /// Index of the current phase (the last one served, once stopped).
    #[serde(default)]
    pub phase: usize,
    /// How many times the rollout was restarted.
    #[serde(default)]
    pub generation: u32,
    /// When this generation started.
    #[serde(default)]
    pub started_ms: Option<i64>,
    /// When the current phase started: the start of the observation window.
    #[serde(default)]
    pub phase_started_ms: Option<i64>,
    /// When the current phase's time is up, with pauses and extensions
    /// accounted for.
    #[serde(default)]
    pub phase_end_ms: Option<i64>,
    /// Time spent paused in the current phase.
    #[serde(default)]
    pub paused_ms: i64,
    /// Pause guards a person acknowledged by resuming: they are still judged
    /// and shown, but do not pause the current phase again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acknowledged_guards: Vec<usize>,
    /// The flag's version before the rollout first changed it, given by the
    /// server with `start` (or `restart`): the version to return to after a
    /// rollback.
    #[serde(default)]
    pub flag_version_before: Option<u64>,
}

impl RolloutState {
    /// A rollout that has not started.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether units in the rollout get the treatment (or an experiment's
    /// arms) now: running, held or paused.
    pub fn is_active(&self) -> bool {
        matches!(
            self.status,
            Status::Running | Status::Held { .. } | Status::Paused { .. }
        )
    }

    /// Time left in the current phase at `now_ms` (negative once it is up);
    /// `None` unless running, held or paused. While paused, the clock stands
    /// still.
    pub fn remaining_ms(&self, now_ms: i64) -> Option<i64> {
        let end = self.phase_end_ms?;
        match &self.status {
            Status::Running | Status::Held { .. } => Some(end.saturating_sub(now_ms)),
            Status::Paused { since_ms, .. } => Some(end.saturating_sub(*since_ms)),
            _ => None,
        }
    }
}

/// The states of a rollout.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Status {
    /// Not started; the flag is as it was.
    #[default]
    Pending,
    /// In `phase`, waiting for its time to be up.
    Running,
    /// At the end of `phase`, waiting for a person.
    Held { why: HoldReason },
    /// Percentage held by a person or a pause guard.
    Paused {
        why: PauseReason,
        since_ms: i64,
        /// The rollout was held when it was paused; `resume` returns to it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        held: Option<HoldReason>,
    },
    /// Every phase done.
    Completed { at_ms: i64 },
    /// Everyone gets the control, after a regression or by hand.
    RolledBack { reason: String, at_ms: i64 },
    /// Called off by hand; everyone gets the control.
    Aborted { reason: String, at_ms: i64 },
}

impl Status {
    /// The state's name: `pending`, `running`, `held`, `paused`,
    /// `completed`, `rolled_back`, `aborted`.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Held { .. } => "held",
            Status::Paused { .. } => "paused",
            Status::Completed { .. } => "completed",
            Status::RolledBack { .. } => "rolled_back",
            Status::Aborted { .. } => "aborted",
        }
    }
}

/// Why a rollout is held.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HoldReason {
    /// `advance = "manual"`: the phase is done and its gates hold.
    AwaitingAdvance,
    /// Gates that did not hold at the end of the phase, described.
    GatesFailed { gates: Vec<String> },
}

/// Why a rollout is paused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PauseReason {
    /// By a person.
    Manual { reason: String },
    /// By these pause guards (indexes into the plan's guards).
    Guards { guards: Vec<usize>, summary: String },
}

/// What a person can tell the controller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Start phase 1. `flag_version`: the flag's version now, to return to
    /// after a rollback.
    Start {
        #[serde(default)]
        flag_version: Option<u64>,
    },
    /// Go to the next phase now (or complete after the last), whatever the
    /// time and the gates: a person's decision.
    Advance,
    /// Hold the percentage until `resume`.
    Pause {
        #[serde(default)]
        reason: String,
    },
    /// Continue a paused rollout; the phase's end moves later by the pause.
    Resume,
    /// Serve the control to everyone and open an incident.
    Rollback { reason: String },
    /// Start a rolled-back or aborted rollout again from phase 1. The
    /// flag's salt is untouched, so the same units come back first.
    Restart {
        #[serde(default)]
        flag_version: Option<u64>,
    },
    /// Give the current phase more time (a held phase: from now).
    Extend { by_ms: i64 },
    /// Call the rollout off; everyone gets the control.
    Abort {
        #[serde(default)]
        reason: String,
    },
}

impl Command {
    /// The command's name as the CLI spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Start { .. } => "start",
            Command::Advance => "advance",
            Command::Pause { .. } => "pause",
            Command::Resume => "resume",
            Command::Rollback { .. } => "rollback",
            Command::Restart { .. } => "restart",
            Command::Extend { .. } => "extend",
            Command::Abort { .. } => "abort",
        }
    }
}

/// A command the current state does not allow, or with a bad argument.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    /// The refused command's name.
    pub command: String,
    /// What is wrong and what would work, e.g. "the rollout of `calc-model`
    /// is rolled back; `restart` starts it again".
    pub message: String,
}

/// What one step decided.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    /// The state to store.
    pub state: RolloutState,
    /// What the server must do, in order, in the same transaction as storing
    /// the state.
    pub actions: Vec<Action>,
    /// Every gate and guard on the observations given, for the status
    /// endpoint.
    pub verdicts: Vec<Verdict>,
}

/// What the server must do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Serve the rollout: `percent` of units (decided by the flag's rollout
    /// bucket, `flags::rollout_salt`) get `arms` (by the flag's own salt),
    /// the rest get `otherwise`; with an `audience`, only units in that
    /// segment are in the rollout and everyone else gets `otherwise`. Never
    /// change the flag's salt: keeping it is what makes a larger percentage
    /// only add units, and a restart bring the same units back first.
    Serve {
        /// Share of units in the rollout, in percent (0.001 grid).
        percent: f64,
        /// Variants and weights in percent (summing to 100) inside the
        /// rollout: `[(treatment, 100)]` or an experiment's arms.
        arms: Vec<(String, f64)>,
        /// The control.
        otherwise: String,
        audience: Option<String>,
    },
    /// Serve the control to everyone: the rollout stopped. `restore_version`
    /// is the flag's version from before the rollout, if the server gave it.
    ServeControl {
        control: String,
        restore_version: Option<u64>,
    },
    /// The rollout completed at 100%: serve the treatment as a plain variant
    /// to everyone (in the audience, if the last phase had one).
    ServeTreatment {
        treatment: String,
        audience: Option<String>,
    },
    /// Tell the people watching the rollout.
    Notify { message: String },
    /// Open an incident.
    OpenIncident(Incident),
}

/// An incident the controller opens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub kind: IncidentKind,
    pub severity: Severity,
    /// The support level it starts at: the highest level of the guards that
    /// fired (default L2), L1 for gates that did not hold, L3 for a rollback
    /// by hand (the seed's critical bug).
    #[serde(default)]
    pub level: SupportLevel,
    pub title: String,
    /// What happened and what the controller did.
    pub summary: String,
    pub flag: String,
    /// The phase it happened in, and its percentage.
    pub phase: String,
    pub percent: f64,
    pub generation: u32,
    /// The verdicts that caused it (breached guards, failed gates), each with
    /// metric, values and units per variant, interval and limit. Empty for
    /// a rollback by hand.
    pub evidence: Vec<Verdict>,
    /// The flag version from before the rollout, to return to.
    pub restore_version: Option<u64>,
    pub opened_ms: i64,
}

/// What opened an incident.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// A rollback guard fired; the rollout was rolled back.
    GuardRollback,
    /// A pause guard fired; the rollout was paused.
    GuardPause,
    /// Gates did not hold at the end of a phase; the rollout is held.
    GatesFailed,
    /// A person rolled the rollout back.
    ManualRollback,
}

/// How urgent an incident is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// A regression reached users and the release was rolled back.
    Critical,
    /// A regression holds the release until someone looks.
    Major,
    /// A phase did not meet its success criteria; the release waits.
    Minor,
}

/// Moves a rollout one step: applies `command` (if any), judges the gates
/// and guards on `observations` (the current phase's data) and lets time
/// pass to `now_ms`. Returns the new state, the actions to apply and every
/// verdict; a command the state does not allow is an error and changes
/// nothing. Stepping again with nothing new changes nothing.
pub fn step(
    plan: &Plan,
    state: &RolloutState,
    observations: &Observations,
    now_ms: i64,
    command: Option<&Command>,
) -> Result<Step, CommandError> {
    let mut controller = Controller {
        plan,
        state: state.clone(),
        actions: Vec::new(),
        now_ms,
    };
    let phase_started = match command {
        Some(command) => controller.command(command)?,
        None => false,
    };
    let verdicts = judge(plan, plan.phase_index(controller.state.phase), observations);
    if !phase_started {
        controller.automatic(&verdicts);
    }
    Ok(Step {
        state: controller.state,
        actions: controller.actions,
        verdicts,
    })
}

/// What the flag should serve in `state`: the action that brings a flag in
/// line with it, for a server that starts up or checks for drift. `None`
/// while pending (the flag is as it was).
pub fn desired_serve(plan: &Plan, state: &RolloutState) -> Option<Action> {
    match &state.status {
        Status::Pending => None,
        Status::Running | Status::Held { .. } | Status::Paused { .. } => {
            Some(serve(plan, plan.phase(state.phase)))
        }
        Status::Completed { .. } => {
            let last = plan.phase(state.phase);
            Some(completion_serve(plan, last).unwrap_or_else(|| serve(plan, last)))
        }
        // Aborted before it started: the flag was never touched.
        Status::Aborted { .. } if state.started_ms.is_none() => None,
        Status::RolledBack { .. } | Status::Aborted { .. } => Some(serve_control(plan, state)),
    }
}

fn serve(plan: &Plan, phase: &Phase) -> Action {
    Action::Serve {
        percent: phase.percent,
        arms: phase.arms.clone(),
        otherwise: plan.spec.control.clone(),
        audience: phase.audience.clone(),
    }
}

fn serve_control(plan: &Plan, state: &RolloutState) -> Action {
    Action::ServeControl {
        control: plan.spec.control.clone(),
        restore_version: state.flag_version_before,
    }
}

/// `ServeTreatment` when the last phase reached 100% without an experiment.
fn completion_serve(plan: &Plan, last: &Phase) -> Option<Action> {
    (last.percent >= 100.0 && last.experiment.is_none()).then(|| Action::ServeTreatment {
        treatment: plan.spec.treatment.clone(),
        audience: last.audience.clone(),
    })
}

struct Controller<'a> {
    plan: &'a Plan,
    state: RolloutState,
    actions: Vec<Action>,
    now_ms: i64,
}

impl Controller<'_> {
    fn flag(&self) -> &str {
        self.plan.flag()
    }

    fn phase(&self) -> &Phase {
        self.plan.phase(self.state.phase)
    }

    fn notify(&mut self, message: String) {
        self.actions.push(Action::Notify { message });
    }

    /// Applies a command; returns whether it started a phase.
    fn command(&mut self, command: &Command) -> Result<bool, CommandError> {
        use Status::*;
        let refused = || refusal(self.plan, &self.state, command);
        match (command, &self.state.status) {
            (Command::Start { flag_version }, Pending) => {
                self.state.started_ms = Some(self.now_ms);
                self.state.flag_version_before = *flag_version;
                self.start_phase(0);
                let message = format!(
                    "rollout of `{}` started: {}",
                    self.flag(),
                    self.describe_phase()
                );
                self.notify(message);
                Ok(true)
            }
            (Command::Advance, Running | Held { .. }) => {
                self.advance(true);
                Ok(true)
            }
            (Command::Pause { reason }, Running | Held { .. }) => {
                let why = PauseReason::Manual {
                    reason: reason.clone(),
                };
                self.pause(why);
                let message = format!(
                    "rollout of `{}` paused by hand in phase `{}`{}",
                    self.flag(),
                    self.phase().name,
                    reason_suffix(reason)
                );
                self.notify(message);
                Ok(false)
            }
            (Command::Resume, Paused { .. }) => {
                self.resume();
                Ok(false)
            }
            (
                Command::Rollback { reason },
                Running | Held { .. } | Paused { .. } | Completed { .. },
            ) => {
                if reason.trim().is_empty() {
                    return Err(CommandError {
                        command: command.name().to_owned(),
                        message: "`rollback` needs a reason (e.g. \"critical bug\"); it goes into \
                                  the incident"
                            .to_owned(),
                    });
                }
                self.rollback(reason.clone(), IncidentKind::ManualRollback, Vec::new());
                Ok(false)
            }
            (Command::Restart { flag_version }, RolledBack { .. } | Aborted { .. }) => {
                self.state.generation = self.state.generation.saturating_add(1);
                self.state.started_ms = Some(self.now_ms);
                if flag_version.is_some() {
                    self.state.flag_version_before = *flag_version;
                }
                self.start_phase(0);
                let message = format!(
                    "rollout of `{}` restarted (generation {}): {}",
                    self.flag(),
                    self.state.generation,
                    self.describe_phase()
                );
                self.notify(message);
                Ok(true)
            }
            (Command::Extend { by_ms }, Running | Held { .. } | Paused { .. }) => {
                if *by_ms <= 0 {
                    return Err(CommandError {
                        command: command.name().to_owned(),
                        message: format!(
                            "`extend` needs a positive duration, e.g. \"3d\"; got {by_ms} ms"
                        ),
                    });
                }
                self.extend(*by_ms);
                Ok(false)
            }
            (Command::Abort { reason }, Pending | Running | Held { .. } | Paused { .. }) => {
                let was_serving = self.state.is_active();
                self.state.status = Aborted {
                    reason: reason.clone(),
                    at_ms: self.now_ms,
                };
                if was_serving {
                    self.actions.push(serve_control(self.plan, &self.state));
                }
                let message = format!(
                    "rollout of `{}` aborted{}; everyone gets `{}`",
                    self.flag(),
                    reason_suffix(reason),
                    self.plan.spec.control
                );
                self.notify(message);
                Ok(false)
            }
            _ => Err(refused()),
        }
    }

    /// The automatic part of a step: guards, then time and gates.
    fn automatic(&mut self, verdicts: &[Verdict]) {
        if !self.state.is_active() {
            return;
        }
        let fired = |action: GuardAction, acknowledged: &[usize]| -> Vec<Verdict> {
            verdicts
                .iter()
                .filter(|v| v.is_breached())
                .filter(|v| {
                    matches!(v.check, Check::Guard { index, action: a }
                        if a == action && !acknowledged.contains(&index))
                })
                .cloned()
                .collect()
        };
        let rollbacks = fired(GuardAction::Rollback, &[]);
        if let Some(first) = rollbacks.first() {
            let reason = format!("guard fired: {}", first.describe());
            self.rollback(reason, IncidentKind::GuardRollback, rollbacks);
            return;
        }
        if !matches!(self.state.status, Status::Paused { .. }) {
            let pauses = fired(GuardAction::Pause, &self.state.acknowledged_guards);
            if !pauses.is_empty() {
                self.pause_by_guards(pauses);
                return;
            }
        }
        if self.state.status == Status::Running
            && self.state.phase_end_ms.is_none_or(|end| self.now_ms >= end)
        {
            self.end_of_phase(verdicts);
        }
    }

    fn start_phase(&mut self, index: usize) {
        let index = self.plan.phase_index(index);
        let phase = self.plan.phase(index);
        self.state.status = Status::Running;
        self.state.phase = index;
        self.state.phase_started_ms = Some(self.now_ms);
        self.state.phase_end_ms = Some(self.now_ms.saturating_add(phase.duration_ms));
        self.state.paused_ms = 0;
        self.state.acknowledged_guards.clear();
        self.actions.push(serve(self.plan, phase));
    }

    /// "phase `beta` (1 of 3) serves `advanced` to 5% of segment
    /// `power-users` for at least 14d".
    fn describe_phase(&self) -> String {
        let phase = self.phase();
        let what = match &phase.experiment {
            None => format!("`{}`", self.plan.spec.treatment),
            Some(key) => format!(
                "experiment `{key}` ({})",
                phase
                    .arms
                    .iter()
                    .map(|(v, w)| format!("`{v}` {w}%"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let whom = match &phase.audience {
            None => "of units".to_owned(),
            Some(segment) => format!("of segment `{segment}`"),
        };
        format!(
            "phase `{}` ({} of {}) serves {what} to {}% {whom} for at least {}",
            phase.name,
            self.plan.phase_index(self.state.phase) + 1,
            self.plan.phases.len(),
            phase.percent,
            duration_text(phase.duration_ms)
        )
    }

    /// To the next phase, or completion after the last.
    fn advance(&mut self, by_hand: bool) {
        let how = if by_hand {
            "advanced by hand"
        } else {
            "advanced"
        };
        let current = self.plan.phase_index(self.state.phase);
        if self.plan.is_last_phase(current) {
            self.complete(by_hand);
            return;
        }
        self.start_phase(current + 1);
        let message = format!(
            "rollout of `{}` {how}: {}",
            self.flag(),
            self.describe_phase()
        );
        self.notify(message);
    }

    fn complete(&mut self, by_hand: bool) {
        self.state.status = Status::Completed { at_ms: self.now_ms };
        self.state.acknowledged_guards.clear();
        let last = self.phase();
        let serving = completion_serve(self.plan, last);
        let what = if serving.is_some() {
            format!("everyone gets `{}`", self.plan.spec.treatment)
        } else {
            format!(
                "the flag keeps serving phase `{}` ({}%)",
                last.name, last.percent
            )
        };
        let message = format!(
            "rollout of `{}` completed{}: {what}",
            self.flag(),
            if by_hand { " by hand" } else { "" }
        );
        self.actions.extend(serving);
        self.notify(message);
    }

    fn pause(&mut self, why: PauseReason) {
        let held = match &self.state.status {
            Status::Held { why } => Some(why.clone()),
            _ => None,
        };
        self.state.status = Status::Paused {
            why,
            since_ms: self.now_ms,
            held,
        };
    }

    fn pause_by_guards(&mut self, evidence: Vec<Verdict>) {
        let mut guards: Vec<usize> = evidence
            .iter()
            .filter_map(|v| match v.check {
                Check::Guard { index, .. } => Some(index),
                Check::Gate { .. } => None,
            })
            .collect();
        guards.dedup();
        let summary = evidence
            .iter()
            .map(Verdict::describe)
            .collect::<Vec<_>>()
            .join("; ");
        self.pause(PauseReason::Guards {
            guards,
            summary: summary.clone(),
        });
        let title = format!("`{}` paused: {}", self.flag(), headline(&evidence[0]));
        let summary = format!(
            "A pause guard fired in phase `{}`; the rollout holds at {}% until someone resumes, \
             extends or rolls it back. {summary}",
            self.phase().name,
            self.phase().percent
        );
        self.open_incident(
            IncidentKind::GuardPause,
            Severity::Major,
            title.clone(),
            summary,
            evidence,
        );
        self.notify(title);
    }

    fn resume(&mut self) {
        let Status::Paused {
            why,
            since_ms,
            held,
        } = std::mem::take(&mut self.state.status)
        else {
            return;
        };
        let paused = self.now_ms.saturating_sub(since_ms).max(0);
        self.state.paused_ms = self.state.paused_ms.saturating_add(paused);
        self.state.phase_end_ms = self
            .state
            .phase_end_ms
            .map(|end| end.saturating_add(paused));
        if let PauseReason::Guards { guards, .. } = &why {
            for guard in guards {
                if !self.state.acknowledged_guards.contains(guard) {
                    self.state.acknowledged_guards.push(*guard);
                }
            }
        }
        self.state.status = match held {
            Some(why) => Status::Held { why },
            None => Status::Running,
        };
        let message = format!(
            "rollout of `{}` resumed in phase `{}` after {} paused",
            self.flag(),
            self.phase().name,
            duration_text(paused)
        );
        self.notify(message);
    }

    fn extend(&mut self, by_ms: i64) {
        let now = self.now_ms;
        let end = self.state.phase_end_ms.unwrap_or(now);
        let from_now = |end: i64| end.max(now).saturating_add(by_ms);
        match &mut self.state.status {
            Status::Held { .. } => {
                self.state.phase_end_ms = Some(from_now(end));
                self.state.status = Status::Running;
            }
            Status::Paused { held, .. } if held.is_some() => {
                *held = None;
                self.state.phase_end_ms = Some(from_now(end));
            }
            _ => self.state.phase_end_ms = Some(end.saturating_add(by_ms)),
        }
        let message = format!(
            "phase `{}` of the rollout of `{}` extended by {}",
            self.phase().name,
            self.flag(),
            duration_text(by_ms)
        );
        self.notify(message);
    }

    fn end_of_phase(&mut self, verdicts: &[Verdict]) {
        let failed: Vec<Verdict> = verdicts
            .iter()
            .filter(|v| matches!(v.check, Check::Gate { .. }) && !v.holds())
            .cloned()
            .collect();
        if failed.is_empty() {
            match self.plan.spec.advance {
                Advance::Auto => self.advance(false),
                Advance::Manual => {
                    self.state.status = Status::Held {
                        why: HoldReason::AwaitingAdvance,
                    };
                    let next = if self.plan.is_last_phase(self.state.phase) {
                        "complete it".to_owned()
                    } else {
                        format!(
                            "go to phase `{}`",
                            self.plan.phase(self.state.phase + 1).name
                        )
                    };
                    let message = format!(
                        "phase `{}` of the rollout of `{}` is done and its gates hold; \
                         `rollgate rollout advance` will {next}",
                        self.phase().name,
                        self.flag()
                    );
                    self.notify(message);
                }
            }
            return;
        }
        let gates: Vec<String> = failed.iter().map(Verdict::describe).collect();
        self.state.status = Status::Held {
            why: HoldReason::GatesFailed {
                gates: gates.clone(),
            },
        };
        let title = format!(
            "`{}` held after phase `{}`: {}",
            self.flag(),
            self.phase().name,
            failed
                .iter()
                .map(|v| format!("gate `{}` ({}) not met", v.metric, v.limit))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let summary = format!(
            "At the end of phase `{}` these success criteria did not hold: {}. The rollout holds \
             at {}% until someone advances (overriding them), extends the phase or rolls back.",
            self.phase().name,
            gates.join("; "),
            self.phase().percent
        );
        self.open_incident(
            IncidentKind::GatesFailed,
            Severity::Minor,
            title.clone(),
            summary,
            failed,
        );
        self.notify(title);
    }

    fn rollback(&mut self, reason: String, kind: IncidentKind, evidence: Vec<Verdict>) {
        let phase = self.phase().name.clone();
        self.state.status = Status::RolledBack {
            reason: reason.clone(),
            at_ms: self.now_ms,
        };
        self.state.acknowledged_guards.clear();
        self.actions.push(serve_control(self.plan, &self.state));
        let title = match evidence.first() {
            Some(first) => format!("`{}` rolled back: {}", self.flag(), headline(first)),
            None => format!("`{}` rolled back by hand: {reason}", self.flag()),
        };
        let restore = match self.state.flag_version_before {
            Some(version) => format!(" The flag's version before the rollout was {version}."),
            None => String::new(),
        };
        let summary = format!(
            "Rolled back in phase `{phase}`: {reason}. Everyone now gets `{}`.{restore}",
            self.plan.spec.control
        );
        self.open_incident(kind, Severity::Critical, title.clone(), summary, evidence);
        self.notify(title);
    }

    fn open_incident(
        &mut self,
        kind: IncidentKind,
        severity: Severity,
        title: String,
        summary: String,
        evidence: Vec<Verdict>,
    ) {
        let level = match kind {
            IncidentKind::GatesFailed => SupportLevel::L1,
            IncidentKind::ManualRollback => SupportLevel::L3,
            IncidentKind::GuardRollback | IncidentKind::GuardPause => evidence
                .iter()
                .filter_map(|v| match v.check {
                    Check::Guard { index, .. } => self.plan.guards.get(index).map(|g| g.level),
                    Check::Gate { .. } => None,
                })
                .max()
                .unwrap_or_default(),
        };
        let phase = self.phase();
        let incident = Incident {
            kind,
            severity,
            level,
            title,
            summary,
            flag: self.flag().to_owned(),
            phase: phase.name.clone(),
            percent: phase.percent,
            generation: self.state.generation,
            evidence,
            restore_version: self.state.flag_version_before,
            opened_ms: self.now_ms,
        };
        self.actions.push(Action::OpenIncident(incident));
    }
}

/// "`error_rate` of `advanced` breached max 0.02".
fn headline(verdict: &Verdict) -> String {
    format!(
        "`{}` of `{}` breached its limit ({})",
        verdict.metric,
        verdict.variant,
        crate::verdict::limit_text(verdict.limit)
    )
}

fn reason_suffix(reason: &str) -> String {
    if reason.trim().is_empty() {
        String::new()
    } else {
        format!(" ({})", reason.trim())
    }
}

/// A duration in the largest unit that divides it: `14d`, `36h`, `90s`.
pub(crate) fn duration_text(ms: i64) -> String {
    const UNITS: [(i64, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ];
    for (size, unit) in UNITS {
        if ms != 0 && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// The refusal of `command` in `state`: what the rollout is doing and what
/// would work.
fn refusal(plan: &Plan, state: &RolloutState, command: &Command) -> CommandError {
    let phase = plan.phase(state.phase);
    let position = format!(
        "phase `{}`, {} of {}",
        phase.name,
        plan.phase_index(state.phase) + 1,
        plan.phases.len()
    );
    let restart_first =
        "`restart` is for a rolled-back or aborted rollout; roll it back or abort it first";
    let (what, hint): (String, &str) = match (&state.status, command) {
        (Status::Pending, _) => ("has not started".into(), "`start` starts it"),
        (Status::Running, Command::Start { .. }) => {
            (format!("is running ({position})"), "it has started already")
        }
        (Status::Running, Command::Resume) => {
            (format!("is running ({position})"), "it is not paused")
        }
        (Status::Running, _) => (format!("is running ({position})"), restart_first),
        (Status::Held { why }, command) => {
            let what = match why {
                HoldReason::AwaitingAdvance => {
                    format!("is held at the end of {position}, waiting for `advance`")
                }
                HoldReason::GatesFailed { .. } => {
                    format!("is held at the end of {position} because gates failed")
                }
            };
            let hint = match command {
                Command::Start { .. } => "it has started already",
                Command::Resume => "it is not paused; `advance`, `extend` or `rollback` decides",
                _ => restart_first,
            };
            (what, hint)
        }
        (Status::Paused { .. }, command) => {
            let hint = match command {
                Command::Start { .. } => "it has started already",
                Command::Advance => "`resume` it first",
                Command::Pause { .. } => "`resume` continues it",
                _ => restart_first,
            };
            (format!("is paused ({position})"), hint)
        }
        (Status::Completed { .. }, _) => (
            "is completed".into(),
            "`rollback` returns everyone to the control",
        ),
        (Status::RolledBack { .. }, _) => ("is rolled back".into(), "`restart` starts it again"),
        (Status::Aborted { .. }, _) => ("is aborted".into(), "`restart` starts it again"),
    };
    CommandError {
        command: command.name().to_owned(),
        message: format!("the rollout of `{}` {what}; {hint}", plan.flag()),
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
