//! `rollgate simulate`: a rollout plan's controller against synthetic
//! traffic on a virtual clock, without a server.
//!
//! The file is read and compiled here exactly as `apply` would have the
//! server check it (flags, segments, metrics, experiments, rollouts); the
//! simulation itself is `rollout::simulate`, pure and seeded. Runs are
//! spread over threads (each run's seed derives from `--seed` and its
//! number, so the result does not depend on how many threads ran them).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rollout::simulate::{
    Behaviour, DAY_MS, Detections, EventKind, MINUTE_MS, RunReport, Scenario, SimConfig, Spread,
    Summary, metric_sources,
};
use rollout::{Plan, PlanContext, RolloutSpec};
use serde_json::{Value, json};

use crate::cli::{Global, ScenarioName, SimulateArgs, WhenHeld};
use crate::{convert, output};

pub fn run(global: &Global, args: &SimulateArgs) -> anyhow::Result<()> {
    let (plan, salt) = load_plan(args)?;
    let scenario = scenario(args, &plan)?;
    let config = config(args, &plan, salt)?;
    let runs = args.runs.max(1) as usize;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, runs);
    let started = Instant::now();
    let reports = run_all(&plan, &scenario, &config, runs, threads)?;
    let elapsed = started.elapsed();
    let summary = rollout::summarize(&plan, &scenario, &config, &reports);
    if global.json {
        return output::json(&json_report(
            &plan, &scenario, &config, &reports, &summary, elapsed, threads,
        ));
    }
    output::print(&render(
        args, &plan, &scenario, &config, &reports, &summary, elapsed, threads,
    ))
}

/// Reads a config document (TOML or JSON by its extension).
fn read(path: &Path) -> anyhow::Result<Value> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {name}"))?;
    let json = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let document = if json {
        convert::parse_json(&text, &name)?
    } else {
        convert::parse_toml(&text, &name)?
    };
    if !document.is_object() {
        bail!(
            "{name}: a config document is a table with `flags`, `segments`, `metrics`, `experiments` and `rollouts`"
        );
    }
    Ok(document)
}

/// The items of a top-level list of a document, parsed; none when absent.
fn items<T: serde::de::DeserializeOwned>(
    document: &Value,
    name: &str,
    file: &Path,
) -> anyhow::Result<Vec<T>> {
    match document.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(value) => serde_json::from_value(value.clone())
            .with_context(|| format!("{}: `{name}` is not valid", file.display())),
    }
}

/// The plan to simulate, compiled, and its flag's bucketing salt.
fn load_plan(args: &SimulateArgs) -> anyhow::Result<(Plan, String)> {
    let document = read(&args.file)?;
    let file = args.file.as_path();
    let flag_specs: Vec<flags::FlagSpec> = items(&document, "flags", file)?;
    let segment_keys: HashSet<String> = document
        .get("segments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("key").and_then(Value::as_str).map(str::to_owned))
        .collect();
    let experiments: Vec<stats::ExperimentSpec> = items(&document, "experiments", file)?;
    let rollouts: Vec<RolloutSpec> = items(&document, "rollouts", file)?;
    let mut metric_specs: Vec<stats::MetricSpec> = items(&document, "metrics", file)?;
    if let Some(path) = &args.metrics {
        metric_specs.extend(items::<stats::MetricSpec>(&read(path)?, "metrics", path)?);
    }
    if rollouts.is_empty() {
        bail!("{}: has no [[rollouts]] to simulate", file.display());
    }
    if metric_specs.is_empty() {
        bail!(
            "{} has no [[metrics]]; name the file that defines them with --metrics (e.g. --metrics examples/seed-metrics.toml)",
            file.display()
        );
    }
    let metrics = stats::compile_metrics(&metric_specs).map_err(|errors| {
        anyhow!(
            "the metrics do not compile:\n  {}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n  ")
        )
    })?;
    let flags: HashMap<String, Vec<String>> = flag_specs
        .iter()
        .map(|f| (f.key.clone(), f.variants.keys().cloned().collect()))
        .collect();
    let context = PlanContext {
        flags: &flags,
        segments: &segment_keys,
        metrics: &metrics,
        experiments: &experiments,
    };
    let plans = rollout::compile_rollouts(&rollouts, &context).map_err(|errors| {
        anyhow!(
            "{}: the rollout plans do not compile:\n  {}",
            file.display(),
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n  ")
        )
    })?;
    let plan = match &args.flag {
        None => plans.into_iter().next(),
        Some(key) => plans.into_iter().find(|p| p.flag() == key),
    }
    .ok_or_else(|| {
        anyhow!(
            "{} has no rollout of flag `{}`",
            file.display(),
            args.flag.as_deref().unwrap_or_default()
        )
    })?;
    let salt = flag_specs
        .iter()
        .find(|f| f.key == plan.flag())
        .map_or_else(|| plan.flag().to_owned(), |f| f.bucketing_salt().to_owned());
    Ok((plan, salt))
}

fn probability(value: f64, what: &str) -> anyhow::Result<f64> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        bail!("{what} is {value}; it must be between 0 and 1 (0.04 for 4%)")
    }
}

fn positive(value: f64, what: &str) -> anyhow::Result<f64> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        bail!("{what} is {value}; it must be a positive number")
    }
}

/// The named scenario with the overrides of the command line.
fn scenario(args: &SimulateArgs, plan: &Plan) -> anyhow::Result<Scenario> {
    let name = match args.scenario {
        ScenarioName::Healthy => "healthy",
        ScenarioName::ErrorRegression => "error-regression",
        ScenarioName::LatencyRegression => "latency-regression",
        ScenarioName::LateErrorRegression => "late-error-regression",
    };
    let mut scenario =
        Scenario::preset(name).ok_or_else(|| anyhow!("unknown scenario `{name}`"))?;
    if let Some(rate) = args.control_error_rate {
        scenario.baseline.error_rate = probability(rate, "--control-error-rate")?;
    }
    if let Some(ms) = args.latency_ms {
        scenario.baseline.latency_mean_ms = positive(ms, "--latency-ms")?;
    }
    let baseline = scenario.baseline;
    let overridden = args.treatment_error_rate.is_some()
        || args.treatment_latency_factor.is_some()
        || args.regression_phase.is_some();
    if overridden && scenario.regression.is_none() {
        scenario.regression = Some(rollout::Regression {
            from_phase: 0,
            treatment: baseline,
        });
    }
    if let Some(regression) = &mut scenario.regression {
        // The preset's regression is relative to the preset's baseline.
        let factor = regression.treatment.latency_mean_ms / Behaviour::HEALTHY.latency_mean_ms;
        let error_rate = if regression.treatment.error_rate == Behaviour::HEALTHY.error_rate {
            baseline.error_rate
        } else {
            regression.treatment.error_rate
        };
        regression.treatment = Behaviour {
            error_rate: match args.treatment_error_rate {
                Some(rate) => probability(rate, "--treatment-error-rate")?,
                None => error_rate,
            },
            latency_mean_ms: baseline.latency_mean_ms
                * match args.treatment_latency_factor {
                    Some(f) => positive(f, "--treatment-latency-factor")?,
                    None => factor,
                },
            latency_sigma: baseline.latency_sigma,
        };
        if let Some(phase) = args.regression_phase {
            if phase == 0 || phase > plan.phases.len() {
                bail!(
                    "--regression-phase is {phase}; the plan's phases are 1 to {}",
                    plan.phases.len()
                );
            }
            regression.from_phase = phase - 1;
        }
    }
    Ok(scenario)
}

fn config(args: &SimulateArgs, plan: &Plan, salt: String) -> anyhow::Result<SimConfig> {
    let plan_days = plan.phases.iter().map(|p| p.duration_ms).sum::<i64>();
    let duration_ms = match args.days {
        Some(days) => i64::from(days) * DAY_MS,
        None => plan_days.max(MINUTE_MS),
    };
    let step_ms = rollout::parse_duration_ms(&args.step).map_err(|e| anyhow!("--step: {e}"))?;
    let config = SimConfig {
        requests_per_minute: args.traffic,
        users: args.users,
        audience_share: args.audience_share,
        duration_ms,
        step_ms,
        when_held: match args.when_held {
            WhenHeld::Wait => rollout::WhenHeld::Wait,
            WhenHeld::Advance => rollout::WhenHeld::Advance,
        },
        salt,
        request_event: args.request_event.clone(),
        error_event: args.error_event.clone(),
        seed: args.seed,
    };
    config.check().map_err(|e| anyhow!("{e}"))?;
    Ok(config)
}

/// Runs `runs` simulations on `threads` threads, with a progress bar on
/// standard error (hidden when it is not a terminal).
fn run_all(
    plan: &Plan,
    scenario: &Scenario,
    config: &SimConfig,
    runs: usize,
    threads: usize,
) -> anyhow::Result<Vec<RunReport>> {
    let style = |template: &str| {
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
    };
    if runs == 1 {
        let hours = (config.duration_ms / 3_600_000).max(1) as u64;
        let bar = ProgressBar::new(hours).with_style(style(
            "{spinner} simulated {pos}/{len} h [{bar:30}] {elapsed_precise}, {eta} left",
        ));
        let report = rollout::simulate::simulate_with_progress(plan, scenario, config, &mut |ms| {
            bar.set_position((ms / 3_600_000) as u64)
        })
        .map_err(|e| anyhow!("{e}"))?;
        bar.finish_and_clear();
        return Ok(vec![report]);
    }
    let bar = ProgressBar::new(runs as u64).with_style(style(
        "{spinner} runs {pos}/{len} [{bar:30}] {elapsed_precise}, {eta} left",
    ));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<RunReport>>> = Mutex::new(vec![None; runs]);
    let failure: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= runs {
                        break;
                    }
                    let mut config = config.clone();
                    config.seed = rollout::run_seed(config.seed, index as u64);
                    match rollout::simulate(plan, scenario, &config) {
                        Ok(report) => {
                            if let Ok(mut results) = results.lock() {
                                results[index] = Some(report);
                            }
                        }
                        Err(e) => {
                            if let Ok(mut failure) = failure.lock() {
                                *failure = Some(e.to_string());
                            }
                            break;
                        }
                    }
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    if let Some(message) = failure.into_inner().ok().flatten() {
        bail!("{message}");
    }
    let results = results
        .into_inner()
        .map_err(|_| anyhow!("a simulation thread panicked"))?;
    results
        .into_iter()
        .map(|r| r.ok_or_else(|| anyhow!("a simulation run did not finish")))
        .collect()
}

/// Virtual time as `2d 03:04`.
fn clock(ms: i64) -> String {
    let minutes = ms / MINUTE_MS;
    format!(
        "{}d {:02}:{:02}",
        minutes / 1440,
        minutes % 1440 / 60,
        minutes % 60
    )
}

/// Minutes as `42m`, `5h 10m` or `3d 4h`.
fn minutes_text(minutes: f64) -> String {
    let m = minutes.round() as i64;
    if m < 60 {
        format!("{m}m")
    } else if m < 1440 {
        format!("{}h {:02}m", m / 60, m % 60)
    } else {
        format!("{}d {}h", m / 1440, m % 1440 / 60)
    }
}

fn percent(part: usize, of: usize) -> String {
    if of == 0 {
        "-".to_owned()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / of as f64)
    }
}

fn behaviour_text(b: &Behaviour) -> String {
    format!(
        "{}% errors, {} ms mean latency",
        round(b.error_rate * 100.0, 3),
        round(b.latency_mean_ms, 1)
    )
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

fn spread_text(spread: Option<Spread>, show: fn(f64) -> String) -> String {
    match spread {
        Some(s) => format!(
            "median {}, p95 {}, max {}",
            show(s.median),
            show(s.p95),
            show(s.max)
        ),
        None => "-".to_owned(),
    }
}

fn count(value: f64) -> String {
    format!("{}", value.round() as i64)
}

fn scenario_text(scenario: &Scenario, plan: &Plan) -> String {
    let mut text = format!(
        "scenario `{}`: control {}",
        scenario.name,
        behaviour_text(&scenario.baseline)
    );
    match &scenario.regression {
        None => text.push_str("; the treatment the same"),
        Some(r) => text.push_str(&format!(
            "; the treatment {} from phase `{}` on",
            behaviour_text(&r.treatment),
            plan.phase(r.from_phase).name
        )),
    }
    text
}

fn detections_text(out: &mut String, d: &Detections, runs: usize, what: &str) {
    out.push_str(&format!(
        "  {what}: {} of {runs} runs ({}); false (no regression served): {} ({})\n",
        d.count,
        percent(d.count, runs),
        d.false_alarms,
        percent(d.false_alarms, runs)
    ));
    if d.count > 0 {
        let list = |items: &[(String, usize)]| {
            items
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "    by phase: {}; by metric: {}\n",
            list(&d.by_phase),
            list(&d.by_metric)
        ));
    }
    if d.detected > 0 {
        out.push_str(&format!(
            "    after the regression began: {}; within the phase it began in: {} ({} of the runs)\n",
            d.detected,
            d.detected_in_onset_phase,
            format_args!("{:.1}%", d.detected_in_onset_phase_rate * 100.0)
        ));
        out.push_str(&format!(
            "    time to rollback: {}\n",
            spread_text(d.delay_minutes, minutes_text)
        ));
        out.push_str(&format!(
            "    treatment requests to rollback: {}\n",
            spread_text(d.treatment_requests, count)
        ));
    }
}

#[allow(clippy::too_many_arguments)]
fn render(
    args: &SimulateArgs,
    plan: &Plan,
    scenario: &Scenario,
    config: &SimConfig,
    reports: &[RunReport],
    summary: &Summary,
    elapsed: Duration,
    threads: usize,
) -> String {
    let mut out = String::new();
    let phases = plan
        .phases
        .iter()
        .map(|p| format!("{} {}%", p.name, p.percent))
        .collect::<Vec<_>>()
        .join(" → ");
    out.push_str(&format!(
        "rollout of `{}` ({}): {phases}\n",
        plan.flag(),
        args.file.display()
    ));
    out.push_str(&format!("{}\n", scenario_text(scenario, plan)));
    out.push_str(&format!(
        "traffic: {} requests/min from {} units, audience share {}; controller every {}; up to {}; \
         when held: {}; seed {}\n",
        config.requests_per_minute,
        config.users,
        config.audience_share,
        minutes_text((config.step_ms / MINUTE_MS) as f64),
        minutes_text((config.duration_ms / MINUTE_MS) as f64),
        match config.when_held {
            rollout::WhenHeld::Wait => "wait",
            rollout::WhenHeld::Advance => "advance",
        },
        config.seed
    ));
    out.push_str("metrics the gates and guards read:\n");
    let sources = metric_sources(plan, config);
    let width = sources.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (metric, how) in &sources {
        out.push_str(&format!("  {metric:<width$}  {how}\n"));
    }
    let first = &reports[0];
    out.push_str(&format!(
        "\ntimeline{}:\n",
        if reports.len() > 1 {
            format!(" of run 1 (seed {})", first.seed)
        } else {
            String::new()
        }
    ));
    for event in &first.timeline {
        let kind = match event.kind {
            EventKind::PhaseStarted => "phase",
            EventKind::RegressionStarted => "regression",
            EventKind::Held => "held",
            EventKind::AdvancedByHand => "advance",
            EventKind::Paused => "paused",
            EventKind::GuardBreached => "guard",
            EventKind::RolledBack => "ROLLBACK",
            EventKind::Completed => "completed",
            EventKind::NaiveGuardFired => "naive",
            EventKind::Ended => "end",
        };
        out.push_str(&format!(
            "  {}  {:<10}  {:<11} {}\n",
            clock(event.at_ms),
            kind,
            event.phase,
            event.message
        ));
    }
    out.push_str(&format!(
        "  {} requests ({} to the treatment), {} controller steps\n",
        first.requests, first.treatment_requests, first.steps
    ));
    if reports.len() > 1 {
        let runs = summary.runs;
        out.push_str(&format!(
            "\nover {runs} runs ({:.1} s on {threads} threads):\n",
            elapsed.as_secs_f64()
        ));
        out.push_str(&format!(
            "  ended: {}\n",
            summary
                .statuses
                .iter()
                .map(|(s, n)| format!("{s} {n} ({})", percent(*n, runs)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        detections_text(&mut out, &summary.rollbacks, runs, "rollbacks");
        if let Some(f) = &summary.fixed_horizon {
            out.push_str(&format!(
                "  fixed-horizon one-sided test of `{}` ({}% against {}%, alpha {}, power {}): {} requests;\n    \
                 the guard's treatment requests to rollback over it: median {}, p95 {}\n",
                f.metric,
                round(f.error_rate * 100.0, 3),
                round(f.limit * 100.0, 3),
                f.alpha,
                f.power,
                f.sample_size.ceil(),
                f.median_ratio.map_or("-".to_owned(), |r| format!("{r:.2}×")),
                f.p95_ratio.map_or("-".to_owned(), |r| format!("{r:.2}×")),
            ));
        }
        detections_text(
            &mut out,
            &summary.naive,
            runs,
            "naive guard (point estimate beyond a rollback guard's limit, same looks and data)",
        );
        if let Some(f) = &summary.fixed_horizon
            && let Some(s) = summary.naive.treatment_requests
        {
            out.push_str(&format!(
                "    naive guard's treatment requests over the fixed-horizon sample: median {:.2}×\n",
                s.median / f.sample_size
            ));
        }
    }
    out
}

fn json_report(
    plan: &Plan,
    scenario: &Scenario,
    config: &SimConfig,
    reports: &[RunReport],
    summary: &Summary,
    elapsed: Duration,
    threads: usize,
) -> Value {
    let runs: Vec<Value> = reports
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut value = serde_json::to_value(r).unwrap_or(Value::Null);
            // Timelines of many runs are noise; the first run's is kept.
            if i > 0
                && let Some(object) = value.as_object_mut()
            {
                object.remove("timeline");
            }
            value
        })
        .collect();
    json!({
        "flag": plan.flag(),
        "phases": plan.phases,
        "scenario": scenario,
        "config": config,
        "metrics": metric_sources(plan, config)
            .into_iter()
            .map(|(metric, source)| json!({"metric": metric, "source": source}))
            .collect::<Vec<_>>(),
        "summary": summary,
        "elapsed_seconds": elapsed.as_secs_f64(),
        "threads": threads,
        "runs": runs,
    })
}
