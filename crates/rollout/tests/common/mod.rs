//! Shared fixtures of the rollout tests: the seed's metrics, the issue's
//! plan, a context with the `calc-model` flag, and observations built from
//! deterministic per-unit data.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};

use rollout::{Observations, Plan, PlanContext, RolloutSpec, VariantData, compile_rollouts};
use stats::{ArmSpec, ExperimentSpec, Metric, MetricSpec, QuantileSketch};

pub const DAY_MS: i64 = 86_400_000;
pub const FLAG: &str = "calc-model";
pub const TREATMENT: &str = "advanced";
pub const CONTROL: &str = "simple";

/// The plan of the issue, as written there.
pub const ISSUE_PLAN: &str = r#"
[[rollouts]]
flag = "calc-model"
treatment = "advanced"
control = "simple"
unit = "targetingKey"
advance = "auto"            # or "manual": wait for `rollgate rollout advance`
[[rollouts.phases]]
name = "beta"
percent = 5
duration = "14d"
audience = "power-users"    # optional segment
[[rollouts.phases]]
name = "controlled-expansion"
percent = 25
duration = "14d"
[[rollouts.phases]]
name = "general-availability"
percent = 100
duration = "14d"
[[rollouts.success]]        # gate: must hold at the end of every phase to advance
metric = "error_rate"
max = 0.01
[[rollouts.success]]
metric = "response_time_mean"
max = 200.0
[[rollouts.guards]]         # trigger: checked continuously while the rollout runs
metric = "error_rate"
max = 0.02                  # absolute: treatment above 2% is a regression
action = "rollback"
[[rollouts.guards]]
metric = "response_time_p95"
max_relative_increase = 0.20   # relative to control: more than 20% worse is a regression
action = "rollback"            # or "pause"
"#;

/// The seed's metrics, from `examples/seed-metrics.toml`.
pub fn seed_metrics() -> Vec<Metric> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/seed-metrics.toml"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let mut table: toml::Table = text.parse().expect("the seed metrics parse");
    let specs: Vec<MetricSpec> = table
        .remove("metrics")
        .expect("[[metrics]]")
        .try_into()
        .expect("metric specs");
    stats::compile_metrics(&specs).expect("the seed metrics compile")
}

/// The four-arm A/B test of the seed, control first.
pub fn model_ab() -> ExperimentSpec {
    ExperimentSpec {
        key: "model-ab".into(),
        description: String::new(),
        flag: FLAG.into(),
        arms: ["simple", "advanced", "choice", "auto"]
            .into_iter()
            .map(|variant| ArmSpec {
                variant: variant.into(),
                weight: 1.0,
            })
            .collect(),
        primary_metrics: vec!["error_rate".into()],
        secondary_metrics: Vec::new(),
        guardrail_metrics: Vec::new(),
        alpha: 0.05,
        sequential: true,
        sequential_tuning: 5000.0,
        cuped: false,
        correction: Default::default(),
        auto_select: None,
    }
}

/// What a plan is checked against: `calc-model` (and `other-flag`), the
/// segment `power-users`, the seed's metrics, `model-ab` and `other-ab`.
pub struct World {
    pub flags: HashMap<String, Vec<String>>,
    pub segments: HashSet<String>,
    pub metrics: Vec<Metric>,
    pub experiments: Vec<ExperimentSpec>,
}

impl World {
    pub fn new() -> Self {
        let variants = |names: &[&str]| names.iter().map(|s| s.to_string()).collect();
        let mut other_ab = model_ab();
        other_ab.key = "other-ab".into();
        other_ab.flag = "other-flag".into();
        World {
            flags: HashMap::from([
                (
                    FLAG.to_owned(),
                    variants(&["simple", "advanced", "choice", "auto"]),
                ),
                ("other-flag".to_owned(), variants(&["on", "off"])),
            ]),
            segments: HashSet::from(["power-users".to_owned()]),
            metrics: seed_metrics(),
            experiments: vec![model_ab(), other_ab],
        }
    }

    pub fn context(&self) -> PlanContext<'_> {
        PlanContext {
            flags: &self.flags,
            segments: &self.segments,
            metrics: &self.metrics,
            experiments: &self.experiments,
        }
    }
}

/// `[[rollouts]]` of a TOML document.
pub fn specs_from_toml(text: &str) -> Vec<RolloutSpec> {
    let mut table: toml::Table = text.parse().expect("the plan parses as TOML");
    table
        .remove("rollouts")
        .expect("[[rollouts]]")
        .try_into()
        .expect("rollout specs")
}

/// The issue's plan, as a spec.
pub fn issue_spec() -> RolloutSpec {
    specs_from_toml(ISSUE_PLAN).remove(0)
}

/// Compiles one spec against the [`World`]; panics with the errors.
pub fn compile(spec: RolloutSpec) -> Plan {
    let world = World::new();
    match compile_rollouts(&[spec], &world.context()) {
        Ok(mut plans) => plans.remove(0),
        Err(errors) => panic!(
            "the plan does not compile:\n{}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// The issue's plan, compiled.
pub fn issue_plan() -> Plan {
    compile(issue_spec())
}

/// The issue's plan with the seed's A/B test in its second phase.
pub fn experiment_plan() -> Plan {
    let mut spec = issue_spec();
    spec.phases[1].experiment = Some("model-ab".into());
    compile(spec)
}

/// A small deterministic generator (SplitMix64) for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.uniform() < p
    }
}

/// Per-unit requests and errors: each unit sends `requests` requests, each
/// failing with probability `rate`. Data for a ratio `errors / requests`.
pub fn error_data(rng: &mut Rng, units: u64, requests: u32, rate: f64) -> VariantData {
    VariantData::from_units((0..units).map(|_| {
        let errors = (0..requests).filter(|_| rng.bernoulli(rate)).count();
        (errors as f64, f64::from(requests))
    }))
}

/// Per-unit latency: `requests` requests each taking about `mean_ms`
/// (uniform within ±50%): the sum and the count per unit, and every value in
/// a sketch. Data for both `response_time_mean` and `response_time_p95`.
pub fn latency_data(rng: &mut Rng, units: u64, requests: u32, mean_ms: f64) -> VariantData {
    let mut sketch = QuantileSketch::new();
    let mut data = VariantData::from_units((0..units).map(|_| {
        let mut sum = 0.0;
        for _ in 0..requests {
            let value = mean_ms * (0.5 + rng.uniform());
            sketch.add(value).expect("a finite latency");
            sum += value;
        }
        (sum, f64::from(requests))
    }));
    data.sketch = Some(sketch);
    data
}

/// Observations of the issue's metrics for some variants: error rate (and
/// the proportion of units with an error), mean and p95 latency.
pub struct Arm {
    pub variant: &'static str,
    pub units: u64,
    pub error_rate: f64,
    pub latency_ms: f64,
}

pub fn observations(seed: u64, arms: &[Arm]) -> Observations {
    let mut rng = Rng::new(seed);
    let mut observations = Observations::new();
    for arm in arms {
        let errors = error_data(&mut rng, arm.units, 10, arm.error_rate);
        observations.insert("error_rate", arm.variant, errors.clone());
        let encounters = VariantData {
            units: errors.units,
            moments: errors.moments,
            active: errors.active,
            sketch: None,
            minutes: None,
        };
        observations.insert("error_encounters", arm.variant, encounters);
        let latency = latency_data(&mut rng, arm.units, 5, arm.latency_ms);
        observations.insert("response_time_mean", arm.variant, latency.clone());
        observations.insert("response_time_p95", arm.variant, latency);
    }
    observations
}

/// Healthy data: the treatment like the control, 0.5% errors, 150 ms.
pub fn healthy(units: u64) -> Observations {
    observations(
        7,
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
                error_rate: 0.005,
                latency_ms: 150.0,
            },
        ],
    )
}

/// The treatment fails 6% of requests (the control 0.5%).
pub fn error_regression(units: u64) -> Observations {
    observations(
        11,
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
                error_rate: 0.06,
                latency_ms: 150.0,
            },
        ],
    )
}

/// The seed plan of `examples/seed-rollout.toml`, compiled against its own
/// flags, segments and experiments and the seed's metrics.
pub fn seed_plan() -> Plan {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/seed-rollout.toml"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let mut table: toml::Table = text.parse().expect("the seed plan parses");
    let flags: HashMap<String, Vec<String>> = table["flags"]
        .as_array()
        .expect("[[flags]]")
        .iter()
        .map(|f| {
            let variants = f["variants"].as_table().expect("variants").keys().cloned();
            (
                f["key"].as_str().expect("a key").to_owned(),
                variants.collect(),
            )
        })
        .collect();
    let segments: HashSet<String> = table["segments"]
        .as_array()
        .expect("[[segments]]")
        .iter()
        .map(|s| s["key"].as_str().expect("a key").to_owned())
        .collect();
    let experiments: Vec<ExperimentSpec> = table
        .remove("experiments")
        .expect("[[experiments]]")
        .try_into()
        .expect("experiment specs");
    let specs: Vec<RolloutSpec> = table
        .remove("rollouts")
        .expect("[[rollouts]]")
        .try_into()
        .expect("rollout specs");
    let metrics = seed_metrics();
    let context = PlanContext {
        flags: &flags,
        segments: &segments,
        metrics: &metrics,
        experiments: &experiments,
    };
    compile_rollouts(&specs, &context)
        .expect("the seed plan compiles")
        .remove(0)
}
