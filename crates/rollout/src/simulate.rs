//! The rollout simulator: the production controller ([`step`]) run against
//! synthetic traffic on a virtual clock, to see what a plan does with a
//! healthy release and with a regression — how often it rolls back a good
//! release, and how soon it catches a bad one — before a real one depends
//! on it.
//!
//! [`simulate`] runs one rollout: the plan, a [`Scenario`] (how the control
//! and the treatment behave), a [`SimConfig`] (traffic, duration, look
//! interval, seed). It is pure like the rest of the crate: no clock (time is
//! a counter of simulated minutes), no IO, and every random number comes
//! from the seed, so a seed replays the same run. [`summarize`] reduces many
//! runs (each seeded by [`run_seed`]) to rollback rates and detection
//! delays, and compares them with a naive guard and with the sample a
//! fixed-horizon test needs ([`fixed_horizon_sample_size`]).
//!
//! # The synthetic world
//!
//! - **Units.** A pool of `users` units (default 100,000), each with an
//!   activity weight drawn from Exponential(1): some users send many
//!   requests, most a few. Every request of a minute comes from a unit drawn
//!   in proportion to its weight, so a unit's totals grow over a phase as a
//!   real user's do, and the number of distinct units grows more slowly than
//!   the number of requests.
//! - **Assignment** uses the real sticky bucketing: unit `i` of a run has
//!   the key `sim-<run seed>-<i>`; it is in a phase's rollout when
//!   `flags::bucket(rollout_salt(salt), key)` is below the percentage and
//!   gets the arm its `flags::bucket(salt, key)` falls in, exactly as the
//!   flag engine serves the controller's [`Action::Serve`]. So raising the
//!   percentage only adds units, as in production.
//! - **Audience.** A phase's audience segment is modelled as a share of the
//!   units (`audience_share`, drawn per unit); units outside it get the
//!   control. With the default share of 1, every unit is in the audience and
//!   a 5% phase serves 5% of all units.
//! - **Traffic.** `requests_per_minute` requests every simulated minute
//!   (fractions carry over). Each request fails with its variant's error rate
//!   and takes a latency drawn from a log-normal distribution with its
//!   variant's mean (see [`Behaviour`]), independently.
//! - **Variants.** Arms of an experiment other than the treatment behave like
//!   the control; the treatment behaves like the control too until the
//!   scenario's regression begins (at the start of a given phase).
//!
//! # What the controller sees
//!
//! The controller is stepped every `step_ms` of virtual time (default one
//! minute; production steps every second) with the [`Observations`] of the
//! current phase: per-unit totals since the phase started, reset when the
//! state's `phase_started_ms` changes, and the serving changed when a step's
//! actions say so. Each metric the plan's gates and guards read is fed from
//! the traffic when the simulator can synthesize it from requests and errors
//! (the `request_event` and `error_event` of the config, `calc_request` and
//! `calc_error` by default, without filters):
//!
//! - a ratio of error events to requests (error rate): per-unit `(errors,
//!   requests)` moments;
//! - a ratio of the sum of request values to requests (mean latency):
//!   per-unit `(latency sum, requests)` moments;
//! - a quantile of request values (p95 latency): a sketch of every latency;
//! - a proportion of units with an error event: units with at least one;
//! - uptime over requests and errors: the phase's minutes per variant, each
//!   healthy when its error share is within the metric's budget.
//!
//! Every other metric (satisfaction, retention, cache hits, accuracy checks,
//! support tickets, …) has no model here: it is **synthetic healthy data**,
//! the same for every variant, with the variant's units as its units and a
//! value comfortably inside the plan's limits on that metric (halfway
//! between a `min` and a `max`; half a `max`; halfway from a `min` in
//! `[0, 1)` to 1, or twice a larger `min`), with a Bernoulli-like spread.
//! Its gates hold once there are enough units and its guards never fire.
//!
//! Differences from production worth knowing: units count in a window once
//! they send a request in it (production also counts units exposed earlier
//! without events, as `(0, 0)`, which leaves ratio estimates unchanged); the
//! sketch covers exactly the phase (production reads hourly sketches from the
//! phase's hour); a step sees every request up to its time (production's
//! aggregates lag by a fold).
//!
//! # Runs that stop
//!
//! A run ends at `duration_ms`, or earlier when the rollout completes, rolls
//! back or is aborted. A rollout held at the end of a phase (its gates did
//! not hold) waits, guards still watching, unless `when_held` is
//! [`WhenHeld::Advance`]: then a simulated person advances it at once, as
//! `rollgate rollout advance` would. A paused rollout stays paused.

mod population;

use std::fmt;

use serde::Serialize;
use stats::inference::normal_quantile;
use stats::{Metric, MetricKind, Moments, QuantileSketch, Side};

use crate::controller::{Action, Command, RolloutState, Status, step};
use crate::observe::{Minutes, Observations, VariantData};
use crate::plan::{Guard, Limit, Plan};
use crate::verdict::{Check, Verdict};
use population::{AliasTable, Draws, LatencyTable, UnitTotals, mix};

/// One simulated minute, the traffic's resolution.
pub const MINUTE_MS: i64 = 60_000;
/// One simulated day.
pub const DAY_MS: i64 = 86_400_000;
/// Units in the pool when none is given.
pub const DEFAULT_USERS: u32 = 100_000;
/// The log-scale spread of latencies when none is given: a p95 about 2.1
/// times the median.
pub const DEFAULT_LATENCY_SIGMA: f64 = 0.5;
/// The request event when none is given (the seed's).
pub const DEFAULT_REQUEST_EVENT: &str = "calc_request";
/// The error event when none is given (the seed's).
pub const DEFAULT_ERROR_EVENT: &str = "calc_error";

/// How a variant's requests behave.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Behaviour {
    /// The chance that a request fails.
    pub error_rate: f64,
    /// The mean latency of a request, in ms.
    pub latency_mean_ms: f64,
    /// The standard deviation of the latency's logarithm (log-normal).
    pub latency_sigma: f64,
}

impl Behaviour {
    /// A healthy service: 0.5% errors, 150 ms on average.
    pub const HEALTHY: Behaviour = Behaviour {
        error_rate: 0.005,
        latency_mean_ms: 150.0,
        latency_sigma: DEFAULT_LATENCY_SIGMA,
    };
}

/// A regression of the treatment.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Regression {
    /// The phase (index) from whose start the treatment behaves so; before
    /// it, the treatment behaves like the control.
    pub from_phase: usize,
    pub treatment: Behaviour,
}

/// What the simulated world is like.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scenario {
    pub name: String,
    /// The control's behaviour, and every variant's but a regressed
    /// treatment's.
    pub baseline: Behaviour,
    /// The treatment's regression; `None`: the treatment is like the control.
    pub regression: Option<Regression>,
}

/// The scenarios [`Scenario::preset`] knows, with what they mean.
pub const SCENARIOS: &[(&str, &str)] = &[
    ("healthy", "both variants at 0.5% errors and 150 ms"),
    (
        "error-regression",
        "the treatment fails 4% of requests from the first phase on",
    ),
    (
        "latency-regression",
        "the treatment is 30% slower from the first phase on",
    ),
    (
        "late-error-regression",
        "the treatment fails 4% of requests from the second phase on",
    ),
];

impl Scenario {
    /// A named scenario with its default parameters:
    /// - `healthy`: both variants at 0.5% errors and 150 ms;
    /// - `error-regression`: the treatment fails 4% of requests from the
    ///   first phase on;
    /// - `latency-regression`: the treatment is 30% slower from the first
    ///   phase on (mean and every quantile);
    /// - `late-error-regression`: the treatment fails 4% of requests from
    ///   the second phase on.
    pub fn preset(name: &str) -> Option<Scenario> {
        let baseline = Behaviour::HEALTHY;
        let errors = Behaviour {
            error_rate: 0.04,
            ..baseline
        };
        let regression = match name {
            "healthy" => None,
            "error-regression" => Some(Regression {
                from_phase: 0,
                treatment: errors,
            }),
            "latency-regression" => Some(Regression {
                from_phase: 0,
                treatment: Behaviour {
                    latency_mean_ms: baseline.latency_mean_ms * 1.3,
                    ..baseline
                },
            }),
            "late-error-regression" => Some(Regression {
                from_phase: 1,
                treatment: errors,
            }),
            _ => return None,
        };
        Some(Scenario {
            name: name.to_owned(),
            baseline,
            regression,
        })
    }

    /// How the treatment behaves in phase `phase`.
    fn treatment_in(&self, phase: usize) -> Behaviour {
        match &self.regression {
            Some(r) if phase >= r.from_phase => r.treatment,
            _ => self.baseline,
        }
    }
}

/// What a simulated person does when a rollout is held at the end of a
/// phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenHeld {
    /// Nothing: the rollout stays held (guards still watching) until the run
    /// ends.
    #[default]
    Wait,
    /// `advance` at once, overriding failed gates (and a manual plan's
    /// wait).
    Advance,
}

/// How a simulation runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimConfig {
    /// Requests per minute, all variants together.
    pub requests_per_minute: f64,
    /// Units in the pool.
    pub users: u32,
    /// Share of units in a phase's audience segment, in (0, 1].
    pub audience_share: f64,
    /// Simulated time at most.
    pub duration_ms: i64,
    /// The controller steps every this much virtual time: a whole number of
    /// minutes.
    pub step_ms: i64,
    pub when_held: WhenHeld,
    /// The flag's bucketing salt (its key unless the flag names one).
    pub salt: String,
    /// The event of a request (value: latency in ms).
    pub request_event: String,
    /// The event of a failed request.
    pub error_event: String,
    /// The run's seed.
    pub seed: u64,
}

impl SimConfig {
    /// A configuration for `plan`: `requests_per_minute`, over `days`, with
    /// the defaults for the rest (100,000 units, everyone in the audience,
    /// a step a minute, wait when held, the flag key as salt, the seed's
    /// events, seed 1).
    pub fn new(plan: &Plan, requests_per_minute: f64, days: i64) -> Self {
        SimConfig {
            requests_per_minute,
            users: DEFAULT_USERS,
            audience_share: 1.0,
            duration_ms: days.saturating_mul(DAY_MS),
            step_ms: MINUTE_MS,
            when_held: WhenHeld::Wait,
            salt: plan.flag().to_owned(),
            request_event: DEFAULT_REQUEST_EVENT.to_owned(),
            error_event: DEFAULT_ERROR_EVENT.to_owned(),
            seed: 1,
        }
    }

    /// What is wrong with the configuration, if anything.
    pub fn check(&self) -> Result<(), SimError> {
        let bad = |what: String| Err(SimError(what));
        if !(self.requests_per_minute.is_finite() && self.requests_per_minute > 0.0) {
            return bad(format!(
                "the traffic is {} requests per minute; it must be a positive number",
                self.requests_per_minute
            ));
        }
        if self.users == 0 {
            return bad("the pool needs at least one unit".to_owned());
        }
        if !(self.audience_share > 0.0 && self.audience_share <= 1.0) {
            return bad(format!(
                "the audience share is {}; it must be more than 0 and at most 1",
                self.audience_share
            ));
        }
        if self.duration_ms < MINUTE_MS {
            return bad("the simulation must last at least a minute".to_owned());
        }
        if self.step_ms < MINUTE_MS || self.step_ms % MINUTE_MS != 0 {
            return bad(format!(
                "the step is {} ms; it must be a whole number of minutes (traffic is simulated \
                 minute by minute)",
                self.step_ms
            ));
        }
        Ok(())
    }
}

/// A configuration or scenario the simulator cannot run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimError(pub String);

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SimError {}

/// The seed of run `index` of a simulation seeded `seed`: runs are
/// independent, and each can be replayed alone.
pub fn run_seed(seed: u64, index: u64) -> u64 {
    mix(seed, index)
}

/// What happened in a run, in virtual time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimelineEvent {
    pub at_ms: i64,
    pub kind: EventKind,
    /// The phase at the time.
    pub phase: String,
    pub message: String,
}

/// The kinds of [`TimelineEvent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The rollout started, or went to a new phase.
    PhaseStarted,
    /// The treatment's regression began.
    RegressionStarted,
    /// Held at the end of a phase (gates failed, or a manual plan).
    Held,
    /// Advanced by the simulated person.
    AdvancedByHand,
    /// A pause guard fired.
    Paused,
    /// A guard's verdict behind a rollback or pause: value, bound, units.
    GuardBreached,
    RolledBack,
    Completed,
    /// The naive guard (the point estimate beyond a limit) would have fired.
    NaiveGuardFired,
    /// The simulated time ran out.
    Ended,
}

/// When and on what a guard (or the naive guard) fired.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Detection {
    pub at_ms: i64,
    /// The phase's index and name.
    pub phase: usize,
    pub phase_name: String,
    /// The metric of the first guard that fired, and the variant.
    pub metric: String,
    pub variant: String,
    /// Whether the treatment's regression had begun.
    pub after_onset: bool,
    /// Time since the regression began (or since the start, without one).
    pub delay_ms: i64,
    /// Treatment requests since the regression began (or since the start).
    pub treatment_requests: u64,
}

/// One run's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunReport {
    pub seed: u64,
    /// The rollout's status at the end: `completed`, `rolled_back`, `held`,
    /// `paused`, `running`, …
    pub status: String,
    /// The phase at the end.
    pub phase: usize,
    pub phase_name: String,
    /// When the run ended (virtual time).
    pub end_ms: i64,
    /// When the treatment's regression began, if it did.
    pub onset_ms: Option<i64>,
    /// The controller's rollback, if any.
    pub rollback: Option<Detection>,
    /// The first time a naive guard — the point estimate beyond a rollback
    /// guard's limit with at least its `min_samples` units, checked at the
    /// same steps on the same data — would have rolled back.
    pub naive: Option<Detection>,
    /// Requests simulated, and the treatment's share of them.
    pub requests: u64,
    pub treatment_requests: u64,
    /// Controller steps taken.
    pub steps: u64,
    pub timeline: Vec<TimelineEvent>,
}

/// Where a metric's data come from in the simulation.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Source {
    ErrorRate,
    LatencyMean,
    LatencyQuantile,
    ErrorEncounters,
    Uptime { index: usize, max_error_rate: f64 },
    Background { value: f64 },
}

/// A metric the plan reads, and its source.
struct Feed {
    metric: Metric,
    source: Source,
}

fn plain(side: &Side, event: &str) -> bool {
    side.event == event && side.filter.is_empty()
}

/// Decides each gate's and guard's metric's source.
fn feeds(plan: &Plan, config: &SimConfig) -> Vec<Feed> {
    let mut metrics: Vec<&Metric> = Vec::new();
    for metric in plan
        .gates
        .iter()
        .map(|g| &g.metric)
        .chain(plan.guards.iter().map(|g| &g.metric))
    {
        if !metrics.iter().any(|m| m.key == metric.key) {
            metrics.push(metric);
        }
    }
    let (requests, errors) = (config.request_event.as_str(), config.error_event.as_str());
    let mut uptimes = 0;
    metrics
        .into_iter()
        .map(|metric| {
            use stats::Aggregate::{Count, Sum};
            let source = match &metric.kind {
                MetricKind::Ratio {
                    numerator,
                    denominator,
                } if plain(denominator, requests) && denominator.agg == Count => {
                    if plain(numerator, errors) && numerator.agg == Count {
                        Some(Source::ErrorRate)
                    } else if plain(numerator, requests) && numerator.agg == Sum {
                        Some(Source::LatencyMean)
                    } else {
                        None
                    }
                }
                MetricKind::Quantile { side, .. } if plain(side, requests) => {
                    Some(Source::LatencyQuantile)
                }
                MetricKind::Proportion { side } if plain(side, errors) => {
                    Some(Source::ErrorEncounters)
                }
                MetricKind::Uptime {
                    requests: r,
                    errors: e,
                    max_error_rate,
                } if plain(r, requests) && plain(e, errors) => {
                    uptimes += 1;
                    Some(Source::Uptime {
                        index: uptimes - 1,
                        max_error_rate: *max_error_rate,
                    })
                }
                _ => None,
            };
            Feed {
                metric: metric.clone(),
                source: source.unwrap_or(Source::Background {
                    value: healthy_value(plan, metric),
                }),
            }
        })
        .collect()
}

/// A value of `metric` comfortably inside every absolute limit the plan
/// puts on it (see the module documentation).
fn healthy_value(plan: &Plan, metric: &Metric) -> f64 {
    let limits = plan
        .gates
        .iter()
        .filter(|g| g.metric.key == metric.key)
        .map(|g| g.limit)
        .chain(
            plan.guards
                .iter()
                .filter(|g| g.metric.key == metric.key)
                .map(|g| g.limit),
        );
    let (mut lo, mut hi) = (f64::NEG_INFINITY, f64::INFINITY);
    for limit in limits {
        match limit {
            Limit::Min(v) => lo = lo.max(v),
            Limit::Max(v) => hi = hi.min(v),
            Limit::MaxRelativeIncrease(_) | Limit::MaxRelativeDecrease(_) => {}
        }
    }
    let value = match (lo.is_finite(), hi.is_finite()) {
        (true, true) => (lo + hi) / 2.0,
        (false, true) if hi > 0.0 => hi / 2.0,
        (false, true) => hi - 1.0,
        (true, false) if (0.0..1.0).contains(&lo) => (lo + 1.0) / 2.0,
        (true, false) if lo >= 1.0 => lo * 2.0,
        (true, false) => lo / 2.0,
        (false, false) => 0.5,
    };
    match metric.kind {
        MetricKind::Proportion { .. }
        | MetricKind::Retention { .. }
        | MetricKind::Uptime { .. } => value.clamp(0.0, 1.0),
        _ => value,
    }
}

/// Synthetic healthy data of a metric for a variant with `units` units.
fn background(metric: &Metric, value: f64, units: u64, minutes: u64) -> VariantData {
    let n = units as f64;
    match metric.kind {
        MetricKind::Proportion { .. } | MetricKind::Retention { .. } => {
            let active = (value * n).round() as u64;
            let mut moments = Moments::new();
            moments.n = units;
            moments.sum_x = active as f64;
            moments.sum_x2 = active as f64;
            VariantData {
                units,
                moments,
                active,
                ..VariantData::default()
            }
        }
        MetricKind::Uptime { .. } => VariantData {
            minutes: Some(Minutes {
                served: minutes,
                healthy: minutes,
            }),
            ..VariantData::default()
        },
        // A quantile outside the request event has no model: no data, so its
        // guards see insufficient data and never fire.
        MetricKind::Quantile { .. } => VariantData {
            units,
            ..VariantData::default()
        },
        _ => {
            // Each unit `(x, 1)` with mean `value` and a Bernoulli-like
            // spread (half the value outside [0, 1]).
            let variance = if value > 0.0 && value < 1.0 {
                value * (1.0 - value)
            } else {
                (value / 2.0).powi(2).max(1e-6)
            };
            let moments = Moments {
                n: units,
                sum_x: value * n,
                sum_x2: (value * value + variance) * n,
                sum_y: n,
                sum_y2: n,
                sum_xy: value * n,
            };
            VariantData {
                units,
                moments,
                active: if value > 0.0 { units } else { 0 },
                ..VariantData::default()
            }
        }
    }
}

/// One variant's data in the current window.
#[derive(Clone, Default)]
struct Window {
    /// Units with a request in the window.
    units: u64,
    /// Units with an error in the window.
    with_error: u64,
    /// Per unit `(errors, requests)`.
    errors: Moments,
    /// Per unit `(latency sum, requests)`.
    latency: Moments,
    sketch: QuantileSketch,
    /// Per uptime metric.
    minutes: Vec<Minutes>,
}

/// What the flag serves, as the units see it.
#[derive(Clone, Debug, PartialEq)]
enum Serving {
    Control,
    /// `bound`: rollout buckets below it are in; `arms`: (variant index,
    /// exclusive upper arm bucket).
    Split {
        bound: u32,
        arms: Vec<(u8, u32)>,
        audience: bool,
    },
    Treatment {
        audience: bool,
    },
}

const CONTROL: u8 = 0;
const TREATMENT: u8 = 1;

struct Sim<'a> {
    plan: &'a Plan,
    scenario: &'a Scenario,
    feeds: Vec<Feed>,
    /// Variant names; 0 the control, 1 the treatment, then other arms.
    variants: Vec<String>,
    draws: Draws,
    pick: AliasTable,
    rollout_bucket: Vec<u32>,
    arm_bucket: Vec<u32>,
    in_audience: Vec<bool>,
    unit_variant: Vec<u8>,
    totals: Vec<UnitTotals>,
    windows: Vec<Window>,
    uptime_budgets: Vec<f64>,
    /// Per variant: 2³² × the error rate, and the latency table.
    error_threshold: Vec<u64>,
    latency: Vec<LatencyTable>,
    requests: u64,
    /// Requests by variant since the start.
    variant_requests: Vec<u64>,
    /// Treatment requests when the regression began.
    onset: Option<(i64, u64)>,
    /// The phase whose behaviours are in force.
    behaviour_phase: usize,
    /// A minute's requests: unit, variant and the request's random bits
    /// (drawn in a first pass, so that the memory reads of many requests
    /// overlap).
    batch: Vec<(u32, u8, u64)>,
    timeline: Vec<TimelineEvent>,
}

impl<'a> Sim<'a> {
    fn new(plan: &'a Plan, scenario: &'a Scenario, config: &'a SimConfig) -> Self {
        let mut draws = Draws::new(config.seed);
        let users = config.users as usize;
        let mut weights: Vec<f64> = (0..users).map(|_| -draws.open_unit().ln()).collect();
        // The busiest units first: they take most requests, and kept
        // together they stay in the processor's caches (speed only; which
        // unit is busy is still random, as its buckets are).
        weights.sort_by(|a, b| b.total_cmp(a));
        let rollout_salt = flags::rollout_salt(&config.salt);
        let mut key = String::new();
        let (mut rollout_bucket, mut arm_bucket) =
            (Vec::with_capacity(users), Vec::with_capacity(users));
        for i in 0..users {
            key.clear();
            use std::fmt::Write as _;
            let _ = write!(key, "sim-{:016x}-{i}", config.seed);
            rollout_bucket.push(flags::bucket(&rollout_salt, &key));
            arm_bucket.push(flags::bucket(&config.salt, &key));
        }
        let in_audience = (0..users)
            .map(|_| config.audience_share >= 1.0 || draws.open_unit() < config.audience_share)
            .collect();
        let feeds = feeds(plan, config);
        let uptime_budgets = feeds
            .iter()
            .filter_map(|f| match f.source {
                Source::Uptime { max_error_rate, .. } => Some(max_error_rate),
                _ => None,
            })
            .collect();
        let mut sim = Sim {
            plan,
            scenario,
            feeds,
            variants: vec![plan.spec.control.clone(), plan.spec.treatment.clone()],
            draws,
            pick: AliasTable::new(&weights),
            rollout_bucket,
            arm_bucket,
            in_audience,
            unit_variant: vec![CONTROL; users],
            totals: vec![UnitTotals::default(); users],
            windows: Vec::new(),
            uptime_budgets,
            error_threshold: Vec::new(),
            latency: Vec::new(),
            requests: 0,
            variant_requests: Vec::new(),
            onset: None,
            behaviour_phase: 0,
            batch: Vec::new(),
            timeline: Vec::new(),
        };
        sim.fit_variants();
        sim
    }

    fn variant_index(&mut self, name: &str) -> u8 {
        match self.variants.iter().position(|v| v == name) {
            Some(i) => i as u8,
            None => {
                self.variants.push(name.to_owned());
                self.fit_variants();
                (self.variants.len() - 1) as u8
            }
        }
    }

    /// Sizes the per-variant state after a variant was added.
    fn fit_variants(&mut self) {
        let n = self.variants.len();
        let uptimes = self.uptime_budgets.len();
        self.windows.resize_with(n, || Window {
            minutes: vec![Minutes::default(); uptimes],
            ..Window::default()
        });
        self.variant_requests.resize(n, 0);
        self.set_behaviours(self.behaviour_phase);
    }

    /// The behaviours of phase `phase`.
    fn set_behaviours(&mut self, phase: usize) {
        self.behaviour_phase = phase;
        let n = self.variants.len();
        let baseline = self.scenario.baseline;
        let treatment = self.scenario.treatment_in(phase);
        let behaviours: Vec<Behaviour> = (0..n)
            .map(|v| {
                if v == TREATMENT as usize {
                    treatment
                } else {
                    baseline
                }
            })
            .collect();
        self.error_threshold = behaviours
            .iter()
            .map(|b| (b.error_rate.clamp(0.0, 1.0) * 4_294_967_296.0) as u64)
            .collect();
        self.latency = behaviours
            .iter()
            .map(|b| LatencyTable::log_normal(b.latency_mean_ms, b.latency_sigma))
            .collect();
    }

    /// Applies what the controller told the flag to serve.
    fn serve(&mut self, action: &Action) {
        let serving = match action {
            Action::Serve {
                percent,
                arms,
                audience,
                ..
            } => {
                let bound = flags::weight_units(*percent).unwrap_or(flags::BUCKET_COUNT);
                let units: Vec<u32> = arms
                    .iter()
                    .map(|(_, w)| flags::weight_units(*w).unwrap_or(0))
                    .collect();
                let bounds = flags::split_boundaries(&units);
                let arms = arms
                    .iter()
                    .zip(bounds)
                    .map(|((variant, _), bound)| (self.variant_index(variant), bound))
                    .collect();
                Serving::Split {
                    bound,
                    arms,
                    audience: audience.is_some(),
                }
            }
            Action::ServeControl { .. } => Serving::Control,
            Action::ServeTreatment { audience, .. } => Serving::Treatment {
                audience: audience.is_some(),
            },
            Action::Notify { .. } | Action::OpenIncident(_) => return,
        };
        for u in 0..self.unit_variant.len() {
            let in_audience = self.in_audience[u];
            self.unit_variant[u] = match &serving {
                Serving::Control => CONTROL,
                Serving::Treatment { audience } if *audience && !in_audience => CONTROL,
                Serving::Treatment { .. } => TREATMENT,
                Serving::Split { audience, .. } if *audience && !in_audience => CONTROL,
                Serving::Split { bound, .. } if self.rollout_bucket[u] >= *bound => CONTROL,
                Serving::Split { arms, .. } => {
                    let b = self.arm_bucket[u];
                    arms.iter()
                        .find(|(_, upper)| b < *upper)
                        .or(arms.last())
                        .map_or(CONTROL, |(v, _)| *v)
                }
            };
        }
    }

    /// Starts a new observation window (a new phase).
    fn reset_window(&mut self) {
        self.totals.fill(UnitTotals::default());
        let uptimes = self.uptime_budgets.len();
        for w in &mut self.windows {
            *w = Window {
                minutes: vec![Minutes::default(); uptimes],
                ..Window::default()
            };
        }
    }

    /// One minute of traffic.
    fn minute(&mut self, count: u64) {
        let variants = self.variants.len();
        let mut minute_requests = [0u64; 16];
        let mut minute_errors = [0u64; 16];
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear();
        for _ in 0..count {
            let u = self.pick.pick(self.draws.next_u64());
            let draw = self.draws.next_u64();
            batch.push((u as u32, 0, draw));
        }
        for (u, v, _) in &mut batch {
            *v = self.unit_variant[*u as usize];
        }
        for &(u, v, draw) in &batch {
            let (u, v) = (u as usize, v as usize);
            let failed = (draw >> 32) < self.error_threshold[v];
            let latency = self.latency[v].draw(draw as u32);
            let e = u64::from(failed);
            let totals = &mut self.totals[u];
            let window = &mut self.windows[v];
            let (r0, e0, l0) = (
                f64::from(totals.requests),
                f64::from(totals.errors),
                totals.latency_ms,
            );
            let (r1, e1, l1) = (r0 + 1.0, e0 + e as f64, l0 + latency);
            if totals.requests == 0 {
                window.units += 1;
                window.errors.n += 1;
                window.latency.n += 1;
            }
            if failed && totals.errors == 0 {
                window.with_error += 1;
            }
            let dy2 = 2.0 * r0 + 1.0;
            let m = &mut window.errors;
            m.sum_x += e as f64;
            m.sum_x2 += e1 * e1 - e0 * e0;
            m.sum_y += 1.0;
            m.sum_y2 += dy2;
            m.sum_xy += e1 * r1 - e0 * r0;
            let m = &mut window.latency;
            m.sum_x += latency;
            m.sum_x2 += latency * (l0 + l1);
            m.sum_y += 1.0;
            m.sum_y2 += dy2;
            m.sum_xy += l1 * r1 - l0 * r0;
            // A latency table's values are finite and positive.
            let _ = window.sketch.add(latency);
            totals.requests += 1;
            totals.errors += e as u32;
            totals.latency_ms = l1;
            if v < 16 {
                minute_requests[v] += 1;
                minute_errors[v] += e;
            }
        }
        self.batch = batch;
        self.requests += count;
        for v in 0..variants.min(16) {
            let requests = minute_requests[v];
            self.variant_requests[v] += requests;
            if requests == 0 {
                continue;
            }
            let share = minute_errors[v] as f64 / requests as f64;
            for (minutes, budget) in self.windows[v].minutes.iter_mut().zip(&self.uptime_budgets) {
                minutes.served += 1;
                if share <= *budget {
                    minutes.healthy += 1;
                }
            }
        }
    }

    /// The current window as the controller's observations.
    fn observations(&self, phase_minutes: u64) -> Observations {
        let mut observations = Observations::new();
        for feed in &self.feeds {
            for (v, name) in self.variants.iter().enumerate() {
                let w = &self.windows[v];
                if w.units == 0 && !matches!(feed.source, Source::Uptime { .. }) {
                    continue;
                }
                let data = match feed.source {
                    Source::ErrorRate => VariantData {
                        units: w.units,
                        moments: w.errors,
                        active: w.with_error,
                        ..VariantData::default()
                    },
                    Source::ErrorEncounters => VariantData {
                        units: w.units,
                        moments: w.errors,
                        active: w.with_error,
                        ..VariantData::default()
                    },
                    Source::LatencyMean => VariantData {
                        units: w.units,
                        moments: w.latency,
                        active: w.units,
                        ..VariantData::default()
                    },
                    Source::LatencyQuantile => VariantData {
                        units: w.units,
                        moments: w.latency,
                        active: w.units,
                        sketch: Some(w.sketch.clone()),
                        ..VariantData::default()
                    },
                    Source::Uptime { index, .. } => {
                        if w.minutes[index].served == 0 {
                            continue;
                        }
                        VariantData {
                            minutes: Some(w.minutes[index]),
                            ..VariantData::default()
                        }
                    }
                    Source::Background { value } => {
                        background(&feed.metric, value, w.units, phase_minutes)
                    }
                };
                observations.insert(&feed.metric.key, name, data);
            }
        }
        observations
    }

    fn event(&mut self, at_ms: i64, phase: usize, kind: EventKind, message: String) {
        self.timeline.push(TimelineEvent {
            at_ms,
            kind,
            phase: self.plan.phase(phase).name.clone(),
            message,
        });
    }

    fn treatment_requests(&self) -> u64 {
        self.variant_requests[TREATMENT as usize]
    }

    fn detection(&self, at_ms: i64, phase: usize, verdict: &Verdict) -> Detection {
        let (onset_ms, onset_requests) = self.onset.unwrap_or((0, 0));
        Detection {
            at_ms,
            phase,
            phase_name: self.plan.phase(phase).name.clone(),
            metric: verdict.metric.clone(),
            variant: verdict.variant.clone(),
            after_onset: self.onset.is_some(),
            delay_ms: at_ms - onset_ms,
            treatment_requests: self.treatment_requests() - onset_requests,
        }
    }
}

/// The first rollback guard whose point estimate is beyond its limit with
/// enough units: what a guard without a confidence bound would fire on.
fn naive_breach(verdicts: &[Verdict]) -> Option<&Verdict> {
    verdicts.iter().find(|v| {
        let Check::Guard { action, .. } = v.check else {
            return false;
        };
        if action != crate::spec::GuardAction::Rollback {
            return false;
        }
        let Some(value) = v.value else {
            return false;
        };
        let units = |i: usize| v.values.get(i).map_or(0, |x| x.units);
        let enough =
            units(0) >= v.min_samples && (!v.limit.is_relative() || units(1) >= v.min_samples);
        let beyond = match v.limit {
            Limit::Max(max) => value > max,
            Limit::Min(min) => value < min,
            Limit::MaxRelativeIncrease(limit) => value > limit,
            Limit::MaxRelativeDecrease(limit) => value < -limit,
        };
        enough && beyond
    })
}

/// Runs one simulated rollout of `plan` (see the module documentation).
pub fn simulate(
    plan: &Plan,
    scenario: &Scenario,
    config: &SimConfig,
) -> Result<RunReport, SimError> {
    simulate_with_progress(plan, scenario, config, &mut |_| {})
}

/// [`simulate`], calling `progress` with the virtual time every simulated
/// hour (for a progress bar).
pub fn simulate_with_progress(
    plan: &Plan,
    scenario: &Scenario,
    config: &SimConfig,
    progress: &mut dyn FnMut(i64),
) -> Result<RunReport, SimError> {
    config.check()?;
    let mut sim = Sim::new(plan, scenario, config);
    let guards_only = mid_phase_plan(plan, &sim.feeds);
    let start = step(
        plan,
        &RolloutState::new(),
        &Observations::new(),
        0,
        Some(&Command::Start { flag_version: None }),
    )
    .map_err(|e| SimError(e.message))?;
    let mut state = start.state;
    let mut steps = 1;
    let mut naive: Option<Detection> = None;
    let mut rollback: Option<Detection> = None;
    apply(&mut sim, &start.actions, 0, &state);
    sim.reset_window();
    enter_phase(&mut sim, &state, 0, true);
    let minutes = config.duration_ms / MINUTE_MS;
    let step_minutes = config.step_ms / MINUTE_MS;
    let mut carry = 0.0;
    let mut end_ms = 0;
    for minute in 1..=minutes {
        let now_ms = minute * MINUTE_MS;
        carry += config.requests_per_minute;
        let count = carry.floor();
        carry -= count;
        sim.minute(count as u64);
        end_ms = now_ms;
        if minute % 60 == 0 {
            progress(now_ms);
        }
        if minute % step_minutes != 0 {
            continue;
        }
        let phase_started = state.phase_started_ms.unwrap_or(0);
        let phase_minutes = ((now_ms - phase_started) / MINUTE_MS).max(0) as u64;
        let observations = sim.observations(phase_minutes);
        let phase_over =
            state.status == Status::Running && state.phase_end_ms.is_none_or(|end| now_ms >= end);
        let judged = if phase_over { plan } else { &guards_only };
        let outcome =
            step(judged, &state, &observations, now_ms, None).map_err(|e| SimError(e.message))?;
        steps += 1;
        let phase = plan.phase_index(state.phase);
        if naive.is_none()
            && let Some(verdict) = naive_breach(&outcome.verdicts)
        {
            let detection = sim.detection(now_ms, phase, verdict);
            sim.event(
                now_ms,
                phase,
                EventKind::NaiveGuardFired,
                format!(
                    "a naive guard (point estimate against the limit) would roll back here; the guard: {}",
                    verdict.describe()
                ),
            );
            naive = Some(detection);
        }
        if let Status::RolledBack { .. } = outcome.state.status
            && state.status != outcome.state.status
            && let Some(first) = outcome.verdicts.iter().find(|v| {
                v.is_breached()
                    && matches!(
                        v.check,
                        Check::Guard {
                            action: crate::spec::GuardAction::Rollback,
                            ..
                        }
                    )
            })
        {
            rollback = Some(sim.detection(now_ms, phase, first));
        }
        state = outcome.state;
        apply(&mut sim, &outcome.actions, now_ms, &state);
        enter_phase(&mut sim, &state, phase_started, false);
        if config.when_held == WhenHeld::Advance && matches!(state.status, Status::Held { .. }) {
            let advanced = step(
                plan,
                &state,
                &Observations::new(),
                now_ms,
                Some(&Command::Advance),
            )
            .map_err(|e| SimError(e.message))?;
            steps += 1;
            sim.event(
                now_ms,
                state.phase,
                EventKind::AdvancedByHand,
                "a person advances the held rollout (`rollgate rollout advance`)".to_owned(),
            );
            let phase_started = state.phase_started_ms.unwrap_or(0);
            state = advanced.state;
            apply(&mut sim, &advanced.actions, now_ms, &state);
            enter_phase(&mut sim, &state, phase_started, false);
        }
        if matches!(
            state.status,
            Status::Completed { .. } | Status::RolledBack { .. } | Status::Aborted { .. }
        ) {
            break;
        }
    }
    let phase = plan.phase_index(state.phase);
    if state.is_active() || state.status == Status::Pending {
        sim.event(
            end_ms,
            phase,
            EventKind::Ended,
            format!(
                "the simulated time is up; the rollout is {} in phase `{}`",
                state.status,
                plan.phase(phase).name
            ),
        );
    }
    Ok(RunReport {
        seed: config.seed,
        status: state.status.name().to_owned(),
        phase,
        phase_name: plan.phase(phase).name.clone(),
        end_ms,
        onset_ms: sim.onset.map(|(at, _)| at),
        rollback,
        naive,
        requests: sim.requests,
        treatment_requests: sim.treatment_requests(),
        steps,
        timeline: sim.timeline,
    })
}

/// The plan the steps in the middle of a phase run on: the same decisions
/// as `plan`'s for a fraction of the cost (each gate and guard is a full
/// analysis by the statistics engine, a few milliseconds for a proportion).
///
/// - Gates are judged only when a running phase's time is up (the
///   controller's decision 4); before that their verdicts change nothing, so
///   they are left out.
/// - A guard on synthetic healthy data never fires: its value is constant,
///   inside its absolute limit, and the same for every variant, so a
///   relative difference is zero. Such guards are left out too, with the
///   plan's `alpha` scaled by the kept guards' share of the weights, so
///   that every kept guard runs at exactly the level it runs at in the
///   whole plan (`verdict::guard_alpha`). Only done when no kept guard pauses:
///   a pause guard is remembered by its index, which must not move.
///
/// At the end of a phase, and whenever a command is given, the whole plan
/// is used.
fn mid_phase_plan(plan: &Plan, feeds: &[Feed]) -> Plan {
    let synthetic = |key: &str| {
        feeds
            .iter()
            .any(|f| f.metric.key == key && matches!(f.source, Source::Background { .. }))
    };
    let kept: Vec<_> = plan
        .guards
        .iter()
        .filter(|g| !synthetic(&g.metric.key))
        .cloned()
        .collect();
    let mut reduced = Plan {
        gates: Vec::new(),
        ..plan.clone()
    };
    let pauses = kept
        .iter()
        .any(|g| g.action == crate::spec::GuardAction::Pause);
    if !kept.is_empty() && kept.len() < plan.guards.len() && !pauses {
        let weights = |guards: &[Guard]| guards.iter().map(|g| g.weight).sum::<f64>();
        reduced.spec.alpha = plan.spec.alpha * weights(&kept) / weights(&plan.guards);
        reduced.guards = kept;
    }
    reduced
}

/// Records a step's actions on the timeline and applies the serving ones.
fn apply(sim: &mut Sim<'_>, actions: &[Action], now_ms: i64, state: &RolloutState) {
    let phase = sim.plan.phase_index(state.phase);
    for action in actions {
        match action {
            Action::Notify { message } => {
                let kind = match state.status {
                    Status::Running | Status::Pending => EventKind::PhaseStarted,
                    Status::Held { .. } => EventKind::Held,
                    Status::Paused { .. } => EventKind::Paused,
                    Status::Completed { .. } => EventKind::Completed,
                    Status::RolledBack { .. } | Status::Aborted { .. } => EventKind::RolledBack,
                };
                sim.event(now_ms, phase, kind, message.clone());
            }
            Action::OpenIncident(incident) => {
                for verdict in &incident.evidence {
                    let kind = match verdict.check {
                        Check::Guard { .. } => EventKind::GuardBreached,
                        Check::Gate { .. } => EventKind::Held,
                    };
                    sim.event(now_ms, phase, kind, verdict.describe());
                }
            }
            serving => sim.serve(serving),
        }
    }
}

/// After a step: a new phase starts a new window, and may start the
/// regression.
fn enter_phase(sim: &mut Sim<'_>, state: &RolloutState, phase_started_before: i64, first: bool) {
    let started = state.phase_started_ms.unwrap_or(0);
    let phase = sim.plan.phase_index(state.phase);
    if started == phase_started_before && !first {
        return;
    }
    sim.reset_window();
    if !state.is_active() {
        return;
    }
    sim.set_behaviours(phase);
    if let Some(regression) = &sim.scenario.regression
        && sim.onset.is_none()
        && phase >= regression.from_phase
    {
        sim.onset = Some((started, sim.treatment_requests()));
        let t = regression.treatment;
        let b = sim.scenario.baseline;
        sim.event(
            started,
            phase,
            EventKind::RegressionStarted,
            format!(
                "the treatment regresses: {:.3}% errors (control {:.3}%), {} ms mean latency \
                 (control {} ms)",
                t.error_rate * 100.0,
                b.error_rate * 100.0,
                t.latency_mean_ms,
                b.latency_mean_ms
            ),
        );
    }
}

/// A distribution's median and 95th percentile (linear interpolation
/// between order statistics).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub p95: f64,
    pub max: f64,
}

impl Spread {
    /// `None` for no values.
    pub fn of(values: &[f64]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let pos = q * (sorted.len() - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
        };
        Some(Spread {
            median: at(0.5),
            p95: at(0.95),
            max: sorted[sorted.len() - 1],
        })
    }
}

/// How soon rollbacks (of a guard, or of the naive guard) came.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Detections {
    /// Rollbacks (or naive firings) in all.
    pub count: usize,
    /// Share of runs.
    pub rate: f64,
    /// Of those, how many while no regression was served: false alarms.
    pub false_alarms: usize,
    pub false_alarm_rate: f64,
    /// After the regression began, and within the phase it began in.
    pub detected: usize,
    pub detected_in_onset_phase: usize,
    /// Share of the runs with a regression that were caught within the
    /// phase it began in.
    pub detected_in_onset_phase_rate: f64,
    /// Time from the regression's onset to the rollback, in minutes.
    pub delay_minutes: Option<Spread>,
    /// Treatment requests from the onset to the rollback.
    pub treatment_requests: Option<Spread>,
    /// By phase name, then by metric: how many.
    pub by_phase: Vec<(String, usize)>,
    pub by_metric: Vec<(String, usize)>,
}

fn detections(
    plan: &Plan,
    runs: &[RunReport],
    pick: fn(&RunReport) -> Option<&Detection>,
) -> Detections {
    let all: Vec<&Detection> = runs.iter().filter_map(pick).collect();
    let with_onset = runs.iter().filter(|r| r.onset_ms.is_some()).count();
    let onset_phase = |r: &RunReport| {
        r.onset_ms.and_then(|_| {
            r.timeline
                .iter()
                .find(|e| e.kind == EventKind::RegressionStarted)
                .map(|e| e.phase.clone())
        })
    };
    let detected: Vec<&Detection> = all.iter().copied().filter(|d| d.after_onset).collect();
    let in_onset_phase = runs
        .iter()
        .filter(|r| {
            pick(r).is_some_and(|d| d.after_onset && Some(&d.phase_name) == onset_phase(r).as_ref())
        })
        .count();
    let count_by = |key: fn(&Detection) -> String| {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for d in &all {
            let k = key(d);
            match counts.iter_mut().find(|(name, _)| *name == k) {
                Some((_, n)) => *n += 1,
                None => counts.push((k, 1)),
            }
        }
        counts
    };
    let mut by_phase = count_by(|d| d.phase_name.clone());
    by_phase.sort_by_key(|(name, _)| plan.phases.iter().position(|p| p.name == *name));
    let false_alarms = all.len() - detected.len();
    let share = |n: usize, of: usize| if of == 0 { 0.0 } else { n as f64 / of as f64 };
    Detections {
        count: all.len(),
        rate: share(all.len(), runs.len()),
        false_alarms,
        false_alarm_rate: share(false_alarms, runs.len()),
        detected: detected.len(),
        detected_in_onset_phase: in_onset_phase,
        detected_in_onset_phase_rate: share(in_onset_phase, with_onset),
        delay_minutes: Spread::of(
            &detected
                .iter()
                .map(|d| d.delay_ms as f64 / MINUTE_MS as f64)
                .collect::<Vec<_>>(),
        ),
        treatment_requests: Spread::of(
            &detected
                .iter()
                .map(|d| d.treatment_requests as f64)
                .collect::<Vec<_>>(),
        ),
        by_phase,
        by_metric: count_by(|d| d.metric.clone()),
    }
}

/// The fixed-horizon comparison: the requests a one-sided test needs to
/// tell the scenario's error rate from the guard's limit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FixedHorizon {
    /// The guard's metric and limit (the null) and the treatment's rate.
    pub metric: String,
    pub limit: f64,
    pub error_rate: f64,
    pub alpha: f64,
    pub power: f64,
    /// Requests needed.
    pub sample_size: f64,
    /// The guard's median (and 95th percentile) treatment requests until
    /// rollback, over `sample_size`.
    pub median_ratio: Option<f64>,
    pub p95_ratio: Option<f64>,
}

/// Over many runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub runs: usize,
    /// Runs by final status (`completed`, `rolled_back`, `held`, …).
    pub statuses: Vec<(String, usize)>,
    /// The controller's rollbacks.
    pub rollbacks: Detections,
    /// The naive guard's firings on the same runs.
    pub naive: Detections,
    /// Against a fixed-horizon test, when the scenario raises the error rate
    /// past an absolute guard's limit on it.
    pub fixed_horizon: Option<FixedHorizon>,
    /// Median requests and treatment requests per run.
    pub requests: Option<Spread>,
    pub treatment_requests: Option<Spread>,
}

/// Fixed-horizon level and power the comparison uses.
pub const FIXED_HORIZON_ALPHA: f64 = 0.05;
pub const FIXED_HORIZON_POWER: f64 = 0.8;

/// Requests a one-sided fixed-horizon test of one proportion at level
/// `alpha` needs to reject `p = p0` with probability `power` when the truth
/// is `p1 > p0`:
/// `n = ((z₁₋α √(p0(1 − p0)) + z_power √(p1(1 − p1))) / (p1 − p0))²`.
/// `None` unless `0 < p0 < p1 < 1`.
pub fn fixed_horizon_sample_size(p0: f64, p1: f64, alpha: f64, power: f64) -> Option<f64> {
    if !(p0 > 0.0
        && p0 < p1
        && p1 < 1.0
        && alpha > 0.0
        && alpha < 0.5
        && power > 0.0
        && power < 1.0)
    {
        return None;
    }
    let z_alpha = normal_quantile(1.0 - alpha);
    let z_power = normal_quantile(power);
    let n = (z_alpha * (p0 * (1.0 - p0)).sqrt() + z_power * (p1 * (1.0 - p1)).sqrt()) / (p1 - p0);
    Some(n * n)
}

/// Summarises runs of `plan` under `scenario` (see [`Summary`]).
pub fn summarize(
    plan: &Plan,
    scenario: &Scenario,
    config: &SimConfig,
    runs: &[RunReport],
) -> Summary {
    let mut statuses: Vec<(String, usize)> = Vec::new();
    for run in runs {
        match statuses.iter_mut().find(|(s, _)| *s == run.status) {
            Some((_, n)) => *n += 1,
            None => statuses.push((run.status.clone(), 1)),
        }
    }
    let rollbacks = detections(plan, runs, |r| r.rollback.as_ref());
    let naive = detections(plan, runs, |r| r.naive.as_ref());
    let fixed_horizon = scenario.regression.as_ref().and_then(|regression| {
        let feeds = feeds(plan, config);
        let p1 = regression.treatment.error_rate;
        plan.guards.iter().find_map(|guard| {
            let is_error_rate = feeds
                .iter()
                .any(|f| f.metric.key == guard.metric.key && f.source == Source::ErrorRate);
            let Limit::Max(p0) = guard.limit else {
                return None;
            };
            if !is_error_rate {
                return None;
            }
            let n = fixed_horizon_sample_size(p0, p1, FIXED_HORIZON_ALPHA, FIXED_HORIZON_POWER)?;
            let spread = rollbacks.treatment_requests;
            Some(FixedHorizon {
                metric: guard.metric.key.clone(),
                limit: p0,
                error_rate: p1,
                alpha: FIXED_HORIZON_ALPHA,
                power: FIXED_HORIZON_POWER,
                sample_size: n,
                median_ratio: spread.map(|s| s.median / n),
                p95_ratio: spread.map(|s| s.p95 / n),
            })
        })
    });
    let per_run = |f: fn(&RunReport) -> u64| {
        Spread::of(&runs.iter().map(|r| f(r) as f64).collect::<Vec<_>>())
    };
    Summary {
        runs: runs.len(),
        statuses,
        rollbacks,
        naive,
        fixed_horizon,
        requests: per_run(|r| r.requests),
        treatment_requests: per_run(|r| r.treatment_requests),
    }
}

/// Which metrics the simulator synthesizes from traffic and which are
/// synthetic healthy data, for the reader: `(metric, how)`.
pub fn metric_sources(plan: &Plan, config: &SimConfig) -> Vec<(String, String)> {
    feeds(plan, config)
        .into_iter()
        .map(|f| {
            let how = match f.source {
                Source::ErrorRate => "simulated: errors per request, per unit".to_owned(),
                Source::LatencyMean => "simulated: latency per request, per unit".to_owned(),
                Source::LatencyQuantile => "simulated: sketch of every latency".to_owned(),
                Source::ErrorEncounters => "simulated: units with an error".to_owned(),
                Source::Uptime { max_error_rate, .. } => format!(
                    "simulated: minutes with at most {}% errors",
                    max_error_rate * 100.0
                ),
                Source::Background { value } => {
                    format!("synthetic healthy data, {value} for every variant")
                }
            };
            (f.metric.key, how)
        })
        .collect()
}
