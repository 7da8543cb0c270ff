//! Rollgate's staged rollouts: a plan takes a flag's treatment from a few
//! percent of units to everyone in phases, advancing when its gates hold and
//! rolling back (or pausing) when a guard finds a regression.
//!
//! Architecture invariant: this crate does no IO, reads no clock and draws no
//! random numbers. The controller is a pure step function: the plan, the
//! current state, the metric observations and `now` in; the new state and the
//! actions to apply out. The server applies the actions and persists the
//! state; the simulator runs the same function on a virtual clock.
//! `tests/tidy.rs` enforces it.
//!
//! What is here, in the order a rollout meets it:
//! - [`spec`]: the plans users write (`[[rollouts]]`), with durations.
//! - [`plan`]: [`compile_rollouts`] checks specs against the environment's
//!   flags, segments, metrics and experiments ([`PlanContext`]) and
//!   compiles them into [`Plan`]s; every mistake is a [`PlanError`] naming
//!   the rollout, the field and the problem.
//! - [`observe`]: [`Observations`], the per-metric, per-variant data of the
//!   current phase that the server reads from the aggregates.
//! - [`verdict`]: [`judge`] evaluates gates (the treatment's estimate
//!   against its limit at the end of a phase) and guards (always-valid
//!   one-sided confidence sequences, so they may look at every step); the
//!   guards' false-alarm rate is stated there.
//! - [`controller`]: [`RolloutState`] and [`step`], the state machine
//!   pending → running(phase i) → completed, with held, paused,
//!   rolled back and aborted, driven by time, verdicts and [`Command`]s, and
//!   returning [`Action`]s for the server.
//! - [`simulate`]: the same [`step`] on a virtual clock against synthetic
//!   traffic from a seed: how often a plan rolls back a healthy release and
//!   how soon it catches a regression (`rollgate simulate`).

pub mod controller;
pub mod observe;
pub mod plan;
pub mod simulate;
pub mod spec;
pub mod verdict;

pub use controller::{
    Action, Command, CommandError, HoldReason, Incident, IncidentKind, PauseReason, RolloutState,
    Severity, Status, Step, desired_serve, step,
};
pub use observe::{Minutes, Observations, VariantData};
pub use plan::{
    DEFAULT_MIN_SAMPLES, Gate, Guard, Limit, Phase, Plan, PlanContext, PlanError, compile_rollouts,
};
pub use simulate::{
    Behaviour, Regression, RunReport, Scenario, SimConfig, SimError, Summary, WhenHeld,
    fixed_horizon_sample_size, run_seed, simulate, summarize,
};
pub use spec::{
    Advance, DEFAULT_ALPHA, DEFAULT_ESCALATE_AFTER_MS, DEFAULT_SEQUENTIAL_TUNING, GateSpec,
    GuardAction, GuardSpec, PhaseSpec, RolloutSpec, SupportLevel, parse_duration_ms,
};
pub use verdict::{
    Check, Interval, VariantValue, Verdict, VerdictOutcome, guard_alpha, judge,
    one_sided_sequence_half_width,
};
