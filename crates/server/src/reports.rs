//! Reports on one flag's rollout, for people: the daily status, the weekly
//! report, the material of the bi-weekly review and the release notes
//! (`GET /api/v1/reports/{kind}/{flag}`, `rollgate report …`), and the digest
//! of every rollout in progress that the scheduler sends to channels
//! (`crate::schedule`).
//!
//! A report is gathered once ([`build`]) into a [`Report`], which is served
//! as JSON and rendered as Markdown ([`markdown`]). Every piece of text a
//! person wrote (descriptions, reasons, incident titles and resolutions,
//! token names) goes through [`md_text`] before it reaches Markdown, and
//! keys through [`md_code`], so no user text can add a heading, a link, an
//! image or raw HTML to a report.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use ingest::fold::Resolution;
use rollout::{Check, Plan, RolloutState, Status, Verdict, VerdictOutcome};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use store::{BucketRow, IncidentFilter, StoreError};
use utoipa::{IntoParams, ToSchema};

use crate::admin::rfc3339;
use crate::auth::{Admin, DEFAULT_ENVIRONMENT};
use crate::error::{ApiError, ApiPath, ApiQuery};
use crate::rollouts::StepError;
use crate::state::AppState;

/// One day, the period of the daily status.
pub const DAY_MS: i64 = 24 * 60 * 60 * 1_000;
/// One week, the period of the weekly report.
pub const WEEK_MS: i64 = 7 * DAY_MS;
/// Most flag versions and audit entries a report reads.
const MAX_HISTORY_ENTRIES: i64 = store::MAX_AUDIT_LIMIT;

/// The reports there are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportKind {
    /// The daily status: phase, gates, guards, incidents, metrics against yesterday.
    Status,
    /// The same over a week against the week before, and what happened in it.
    Weekly,
    /// The bi-weekly review: gates, experiment results, incidents, the decision.
    Review,
    /// What changed and when: the plan, the flag's versions, the incidents.
    ReleaseNotes,
}

impl ReportKind {
    pub const ALL: [ReportKind; 4] = [
        ReportKind::Status,
        ReportKind::Weekly,
        ReportKind::Review,
        ReportKind::ReleaseNotes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Status => "status",
            ReportKind::Weekly => "weekly",
            ReportKind::Review => "review",
            ReportKind::ReleaseNotes => "release-notes",
        }
    }

    pub fn parse(text: &str) -> Option<ReportKind> {
        ReportKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    fn title(self) -> &'static str {
        match self {
            ReportKind::Status => "Daily status",
            ReportKind::Weekly => "Weekly report",
            ReportKind::Review => "Review",
            ReportKind::ReleaseNotes => "Release notes",
        }
    }

    /// The period whose metrics are compared with the one before.
    fn period_ms(self) -> Option<i64> {
        match self {
            ReportKind::Status => Some(DAY_MS),
            ReportKind::Weekly => Some(WEEK_MS),
            ReportKind::Review | ReportKind::ReleaseNotes => None,
        }
    }
}

// ---------------------------------------------------------------- the report

/// A report on one flag's rollout. Sections a kind does not have are left out.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `status`, `weekly`, `review` or `release-notes`.
    pub kind: String,
    pub flag: String,
    pub environment: String,
    pub title: String,
    pub generated_at: String,
    pub rollout: RolloutSummary,
    /// Every gate and guard with its value, interval, limit and verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<Vec<CheckLine>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incidents: Option<Vec<IncidentLine>>,
    /// The windows the metrics compare.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// The plan's metrics per variant, this period against the one before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Vec<MetricChange>>,
    /// What happened (weekly: in the week; release notes: ever), oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub happenings: Option<Vec<Happening>>,
    /// Review: the results of the phase's experiment, as
    /// `GET /api/v1/experiments/{key}/results` gives them.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub experiment: Option<Value>,
    /// Review: what to do and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Release notes: the phases with their dates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phases: Option<Vec<PhaseLine>>,
    /// The whole report as Markdown (what `rollgate report` prints).
    pub markdown: String,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSummary {
    /// `pending`, `running`, `held`, `paused`, `completed`, `rolled_back`, `aborted`.
    pub status: String,
    /// Why it is held, paused, rolled back or aborted (may hold a person's reason).
    pub status_reason: Option<String>,
    pub description: String,
    pub treatment: String,
    pub control: String,
    pub phase: Option<String>,
    /// 1-based.
    pub phase_number: usize,
    pub phases: usize,
    pub percent: Option<f64>,
    pub phase_started_at: Option<String>,
    pub phase_ends_at: Option<String>,
    pub experiment: Option<String>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckLine {
    /// `gate` or `guard`.
    pub check: String,
    /// A guard's action: `rollback` or `pause`.
    pub action: Option<String>,
    pub metric: String,
    pub variant: String,
    /// The number compared with the limit (a fraction for relative limits).
    pub value: Option<f64>,
    pub relative: bool,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    /// Valid at every look (a guard's confidence sequence).
    pub always_valid: bool,
    /// The limit in words: `max 0.02`, `at most 20% above the control`.
    pub limit: String,
    /// `holds`, `breached` or `insufficient_data`.
    pub verdict: String,
    pub reason: Option<String>,
    /// Units of the variant judged.
    pub units: u64,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IncidentLine {
    pub id: i64,
    pub title: String,
    pub kind: String,
    pub severity: String,
    pub level: String,
    /// `open`, `investigating`, `mitigated` or `resolved`.
    pub status: String,
    pub acknowledged: bool,
    pub acknowledged_by: Option<String>,
    pub opened_at: String,
    pub resolved_at: Option<String>,
    pub resolution: Option<String>,
    /// Shown on `/status`.
    pub public: bool,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    /// The current period: `from` ≤ t < `to` (whole hours).
    pub from: String,
    pub to: String,
    /// The period before: `previousFrom` ≤ t < `from`.
    pub previous_from: String,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricChange {
    pub metric: String,
    pub variant: String,
    /// The value in the period, as the metric's series shows a bucket (a
    /// ratio or gauge x/y, a quantile from the merged sketch, else the sum).
    pub current: Option<f64>,
    pub previous: Option<f64>,
    pub change: Option<f64>,
    /// `change / previous`.
    pub relative_change: Option<f64>,
    pub current_events: i64,
    pub previous_events: i64,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Happening {
    pub at: String,
    #[serde(skip)]
    pub at_ms: i64,
    /// `phase_started`, `flag_version`, `plan_created`, `plan_updated`,
    /// `plan_deleted`, `incident_opened`, `incident_resolved`.
    pub event: String,
    /// What happened, in plain text.
    pub text: String,
    pub phase: Option<String>,
    pub flag_version: Option<i64>,
    pub incident: Option<i64>,
    pub actor: Option<String>,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// `advance`, `hold`, `roll_back`, or `none` once the rollout has ended.
    pub action: String,
    /// Why, one line each.
    pub reasons: Vec<String>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhaseLine {
    pub name: String,
    pub percent: f64,
    pub duration: String,
    pub audience: Option<String>,
    pub experiment: Option<String>,
    /// `done`, `current` or `planned`.
    pub state: String,
    /// When it started (done, current) or is planned to (planned).
    pub starts_at: Option<String>,
    /// When its time is up, or is planned to be.
    pub ends_at: Option<String>,
}

// ---------------------------------------------------------------- gathering

/// Gathers the `kind` report on `flag`'s rollout at `now_ms`.
pub async fn build(
    state: &AppState,
    environment: &str,
    flag: &str,
    kind: ReportKind,
    now_ms: i64,
) -> Result<Report, StepError> {
    let status = crate::rollouts::status_of(state, environment, flag, None).await?;
    let loaded = crate::rollouts::load(state, environment, flag).await?;
    let plan = &loaded.plan;
    let rollout = summary(plan, &loaded.state);
    let incidents = state
        .store
        .incidents(
            environment,
            &IncidentFilter {
                flag: Some(flag.to_owned()),
                ..Default::default()
            },
        )
        .await?;
    let checks: Vec<CheckLine> = status.verdicts.iter().map(check_line).collect();
    let mut report = Report {
        kind: kind.as_str().to_owned(),
        flag: flag.to_owned(),
        environment: environment.to_owned(),
        title: format!("{}: {flag} in {environment}", kind.title()),
        generated_at: rfc3339(now_ms),
        rollout,
        checks: None,
        incidents: None,
        window: None,
        metrics: None,
        happenings: None,
        experiment: None,
        decision: None,
        phases: None,
        markdown: String::new(),
    };
    let incident_lines: Vec<IncidentLine> = incidents.iter().map(incident_line).collect();
    match kind {
        ReportKind::Status | ReportKind::Weekly => {
            let period = kind.period_ms().unwrap_or(DAY_MS);
            let (window, metrics) =
                metric_changes(state, environment, plan, period, now_ms).await?;
            report.checks = Some(checks);
            report.window = Some(window);
            report.metrics = Some(metrics);
            if kind == ReportKind::Weekly {
                let all = happenings(state, environment, plan, &incidents).await?;
                report.happenings = Some(
                    all.into_iter()
                        .filter(|h| h.at_ms >= now_ms - WEEK_MS && h.at_ms <= now_ms)
                        .collect(),
                );
                // The incidents that were open at some time in the week.
                report.incidents = Some(
                    incident_lines
                        .into_iter()
                        .zip(&incidents)
                        .filter(|(_, i)| {
                            i.opened_at_ms <= now_ms
                                && i.resolved_at_ms.is_none_or(|r| r >= now_ms - WEEK_MS)
                        })
                        .map(|(line, _)| line)
                        .collect(),
                );
            } else {
                report.incidents = Some(incident_lines);
            }
        }
        ReportKind::Review => {
            let phase = plan.phase(loaded.state.phase);
            if let Some(key) = &phase.experiment
                && let Some(stored) = state.store.get_experiment(environment, key).await?
            {
                match ingest::experiment::results(&state.store, environment, &stored.spec).await {
                    Ok(results) => report.experiment = serde_json::to_value(results).ok(),
                    Err(ingest::experiment::ResultsError::Store(e)) => return Err(e.into()),
                    Err(ingest::experiment::ResultsError::Invalid(message)) => {
                        report.experiment = Some(serde_json::json!({
                            "experiment": key, "error": message
                        }));
                    }
                }
            }
            report.decision = Some(decide(&loaded.state, &status.verdicts, &incidents));
            report.checks = Some(checks);
            report.incidents = Some(incident_lines);
        }
        ReportKind::ReleaseNotes => {
            let all = happenings(state, environment, plan, &incidents).await?;
            report.phases = Some(phase_lines(plan, &loaded.state, &all));
            report.happenings = Some(all);
            report.incidents = Some(incident_lines);
        }
    }
    report.markdown = markdown(&report);
    Ok(report)
}

fn summary(plan: &Plan, state: &RolloutState) -> RolloutSummary {
    let started = state.status != Status::Pending;
    let phase = plan.phase(state.phase);
    let status_reason = match &state.status {
        Status::Held { why } => Some(match why {
            rollout::HoldReason::AwaitingAdvance => {
                "the phase is done and its gates hold; waiting for `advance`".to_owned()
            }
            rollout::HoldReason::GatesFailed { gates } => {
                format!("gates did not hold: {}", gates.join("; "))
            }
        }),
        Status::Paused { why, .. } => Some(match why {
            rollout::PauseReason::Manual { reason } => reason.clone(),
            rollout::PauseReason::Guards { summary, .. } => summary.clone(),
        }),
        Status::RolledBack { reason, .. } | Status::Aborted { reason, .. } => Some(reason.clone()),
        _ => None,
    };
    RolloutSummary {
        status: state.status.name().to_owned(),
        status_reason,
        description: plan.spec.description.clone(),
        treatment: plan.spec.treatment.clone(),
        control: plan.spec.control.clone(),
        phase: started.then(|| phase.name.clone()),
        phase_number: plan.phase_index(state.phase) + 1,
        phases: plan.phases.len(),
        percent: started.then_some(phase.percent),
        phase_started_at: state.phase_started_ms.map(rfc3339),
        phase_ends_at: state.phase_end_ms.map(rfc3339),
        experiment: phase.experiment.clone(),
    }
}

fn check_line(v: &Verdict) -> CheckLine {
    let (check, action) = match v.check {
        Check::Gate { .. } => ("gate", None),
        Check::Guard { action, .. } => (
            "guard",
            Some(
                match action {
                    rollout::GuardAction::Rollback => "rollback",
                    rollout::GuardAction::Pause => "pause",
                }
                .to_owned(),
            ),
        ),
    };
    let (verdict, reason) = match &v.outcome {
        VerdictOutcome::Holds => ("holds", None),
        VerdictOutcome::Breached => ("breached", None),
        VerdictOutcome::InsufficientData { reason } => ("insufficient_data", Some(reason.clone())),
    };
    CheckLine {
        check: check.to_owned(),
        action,
        metric: v.metric.clone(),
        variant: v.variant.clone(),
        value: v.value,
        relative: v.limit.is_relative(),
        lower: v.interval.as_ref().and_then(|i| i.lower),
        upper: v.interval.as_ref().and_then(|i| i.upper),
        always_valid: v.interval.as_ref().is_some_and(|i| i.always_valid),
        limit: v.limit.to_string(),
        verdict: verdict.to_owned(),
        reason,
        units: v
            .values
            .iter()
            .find(|x| x.variant == v.variant)
            .map_or(0, |x| x.units),
    }
}

fn incident_line(i: &store::Incident) -> IncidentLine {
    IncidentLine {
        id: i.id,
        title: i.title.clone(),
        kind: i.kind.clone(),
        severity: i.severity.clone(),
        level: i.level.clone(),
        status: i.status.clone(),
        acknowledged: i.acknowledged_at_ms.is_some(),
        acknowledged_by: i.acknowledged_by.clone(),
        opened_at: rfc3339(i.opened_at_ms),
        resolved_at: i.resolved_at_ms.map(rfc3339),
        resolution: i.resolution.clone(),
        public: i.public_text.is_some(),
    }
}

/// The two windows of `period_ms` that end with the current hour.
pub fn windows(period_ms: i64, now_ms: i64) -> (i64, i64, i64) {
    let to = Resolution::Hour.start(now_ms) + Resolution::Hour.width_ms();
    (to - 2 * period_ms, to - period_ms, to)
}

/// Every metric the plan's gates and guards read, per variant: the value in
/// the period that ends with the current hour and in the period before.
async fn metric_changes(
    state: &AppState,
    environment: &str,
    plan: &Plan,
    period_ms: i64,
    now_ms: i64,
) -> Result<(Window, Vec<MetricChange>), StoreError> {
    let (previous_from, from, to) = windows(period_ms, now_ms);
    let mut seen = HashSet::new();
    let metrics: Vec<&stats::Metric> = plan
        .gates
        .iter()
        .map(|g| &g.metric)
        .chain(plan.guards.iter().map(|g| &g.metric))
        .filter(|m| seen.insert(m.key.clone()))
        .collect();
    let mut out = Vec::new();
    for metric in metrics {
        let buckets = state
            .store
            .metric_buckets(
                environment,
                plan.flag(),
                &metric.key,
                Resolution::Hour.as_str(),
                previous_from,
                to,
            )
            .await?;
        // variant → (previous, current)
        let mut merged: BTreeMap<&str, (Option<BucketRow>, Option<BucketRow>)> = BTreeMap::new();
        for b in &buckets {
            let slot = merged.entry(b.variant.as_str()).or_default();
            let half = if b.start_ms >= from {
                &mut slot.1
            } else {
                &mut slot.0
            };
            match half {
                Some(sum) => merge_bucket(sum, b),
                None => *half = Some(b.clone()),
            }
        }
        // The plan's variants appear even without data.
        for variant in [plan.spec.control.as_str(), plan.spec.treatment.as_str()] {
            merged.entry(variant).or_default();
        }
        for (variant, (previous, current)) in merged {
            let value = |b: &Option<BucketRow>| {
                b.as_ref()
                    .and_then(|b| ingest::report::point_value(metric, b))
            };
            let (current_value, previous_value) = (value(&current), value(&previous));
            let change = current_value.zip(previous_value).map(|(c, p)| c - p);
            out.push(MetricChange {
                metric: metric.key.clone(),
                variant: variant.to_owned(),
                current: current_value,
                previous: previous_value,
                change,
                relative_change: change
                    .zip(previous_value)
                    .and_then(|(d, p)| (p != 0.0).then(|| d / p)),
                current_events: current.as_ref().map_or(0, |b| b.events),
                previous_events: previous.as_ref().map_or(0, |b| b.events),
            });
        }
    }
    Ok((
        Window {
            from: rfc3339(from),
            to: rfc3339(to),
            previous_from: rfc3339(previous_from),
        },
        out,
    ))
}

/// Adds bucket `b` to `sum`: sums, the larger max, the merged sketch.
fn merge_bucket(sum: &mut BucketRow, b: &BucketRow) {
    sum.x += b.x;
    sum.y += b.y;
    sum.events += b.events;
    sum.max_value = match (sum.max_value, b.max_value) {
        (Some(a), Some(c)) => Some(a.max(c)),
        (a, c) => a.or(c),
    };
    let decode = |bytes: &Option<Vec<u8>>| {
        bytes
            .as_deref()
            .and_then(|s| stats::QuantileSketch::from_bytes(s).ok())
    };
    sum.sketch = match (decode(&sum.sketch), decode(&b.sketch)) {
        (Some(mut a), Some(c)) => {
            let _ = a.merge(&c);
            Some(a.to_bytes())
        }
        (Some(a), None) | (None, Some(a)) => Some(a.to_bytes()),
        (None, None) => None,
    };
}

/// The phase a version of the flag serves: the plan's phase whose
/// percentage its default rule gives the treatment (the last phase when it
/// serves the treatment to everyone).
fn phase_served(plan: &Plan, flag: &flags::FlagSpec) -> Option<usize> {
    let serve = &flag.default.serve;
    if let Some(percent) = serve.rollout {
        return plan
            .phases
            .iter()
            .position(|p| (p.percent - percent.0).abs() < 1e-9);
    }
    if serve.variant.as_deref() == Some(plan.spec.treatment.as_str()) {
        return plan.phases.iter().rposition(|p| p.percent >= 100.0);
    }
    None
}

/// What a flag version serves, in plain words.
fn serving(flag: &flags::FlagSpec) -> String {
    let serve = &flag.default.serve;
    if !flag.enabled {
        return format!("off: everyone gets {}", flag.off_variant);
    }
    match (&serve.variant, &serve.split, serve.rollout) {
        (Some(variant), _, _) => format!("everyone else gets {variant}"),
        (None, Some(split), rollout) => {
            let arms: Vec<String> = split.iter().map(|(v, w)| format!("{v} {}%", w.0)).collect();
            let share = rollout.map_or(100.0, |r| r.0);
            let otherwise = serve
                .otherwise
                .as_ref()
                .map(|o| format!(", the rest {o}"))
                .unwrap_or_default();
            format!("{share}% of units get {}{otherwise}", arms.join(" / "))
        }
        _ => "the default rule".to_owned(),
    }
}

/// Everything the store remembers of the rollout, oldest first: the flag's
/// versions (with the phase each started), the plan's changes, incidents
/// opened and resolved.
async fn happenings(
    state: &AppState,
    environment: &str,
    plan: &Plan,
    incidents: &[store::Incident],
) -> Result<Vec<Happening>, StoreError> {
    let flag = plan.flag();
    let mut out = Vec::new();
    let mut versions = state.store.flag_history(environment, flag).await?;
    versions.truncate(MAX_HISTORY_ENTRIES as usize);
    versions.reverse();
    let mut previous_phase: Option<usize> = None;
    for v in versions {
        let phase = v.spec.as_ref().and_then(|s| phase_served(plan, s));
        let text = match &v.spec {
            Some(spec) => format!("flag version {}: {}", v.version, serving(spec)),
            None => format!("flag version {}: deleted", v.version),
        };
        out.push(Happening {
            at: rfc3339(v.created_at_ms),
            at_ms: v.created_at_ms,
            event: "flag_version".to_owned(),
            text,
            phase: None,
            flag_version: Some(v.version),
            incident: None,
            actor: Some(v.author.clone()),
            reason: v.reason.clone(),
        });
        if let Some(index) = phase
            && previous_phase != Some(index)
        {
            let p = &plan.phases[index];
            out.push(Happening {
                at: rfc3339(v.created_at_ms),
                at_ms: v.created_at_ms,
                event: "phase_started".to_owned(),
                text: format!("phase {} started: {}%", p.name, p.percent),
                phase: Some(p.name.clone()),
                flag_version: Some(v.version),
                incident: None,
                actor: Some(v.author.clone()),
                reason: v.reason.clone(),
            });
        }
        previous_phase = phase;
    }
    let plan_changes = state
        .store
        .list_audit(store::AuditFilter {
            environment: Some(environment.to_owned()),
            target_kind: Some("rollout".to_owned()),
            target_key: Some(flag.to_owned()),
            limit: Some(MAX_HISTORY_ENTRIES),
            ..Default::default()
        })
        .await?;
    for entry in plan_changes.into_iter().rev() {
        let event = match entry.action.as_str() {
            "rollout.created" => "plan_created",
            "rollout.updated" => "plan_updated",
            "rollout.deleted" => "plan_deleted",
            // Incidents are audited on the rollout too; they come below.
            _ => continue,
        };
        out.push(Happening {
            at: rfc3339(entry.at_ms),
            at_ms: entry.at_ms,
            event: event.to_owned(),
            text: format!("rollout plan {}", &event["plan_".len()..]),
            phase: None,
            flag_version: None,
            incident: None,
            actor: Some(entry.actor),
            reason: entry.reason,
        });
    }
    for i in incidents {
        out.push(Happening {
            at: rfc3339(i.opened_at_ms),
            at_ms: i.opened_at_ms,
            event: "incident_opened".to_owned(),
            text: format!(
                "incident {} opened ({}, {}): {}",
                i.id, i.severity, i.level, i.title
            ),
            phase: None,
            flag_version: None,
            incident: Some(i.id),
            actor: Some(i.opened_by.clone()),
            reason: None,
        });
        if let Some(at) = i.resolved_at_ms {
            out.push(Happening {
                at: rfc3339(at),
                at_ms: at,
                event: "incident_resolved".to_owned(),
                text: format!("incident {} resolved", i.id),
                phase: None,
                flag_version: None,
                incident: Some(i.id),
                actor: i.acknowledged_by.clone(),
                reason: i.resolution.clone(),
            });
        }
    }
    out.sort_by_key(|h| h.at_ms);
    Ok(out)
}

/// The plan's phases with when each started (from the flag's history and
/// the state) or is planned to start (from the current phase's end and the
/// durations).
fn phase_lines(plan: &Plan, state: &RolloutState, happenings: &[Happening]) -> Vec<PhaseLine> {
    let started = state.status != Status::Pending;
    let current = plan.phase_index(state.phase);
    let generation_start = state.started_ms.unwrap_or(0);
    let mut planned_from = state.phase_end_ms;
    plan.phases
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (state_word, starts, ends) = if !started || (i > current && state.is_active()) {
                let starts = planned_from;
                let ends = starts.map(|s| s + p.duration_ms);
                planned_from = ends;
                ("planned", starts, ends)
            } else if i == current {
                let word = if state.is_active() { "current" } else { "done" };
                (word, state.phase_started_ms, state.phase_end_ms)
            } else if i < current {
                let starts = happenings
                    .iter()
                    .filter(|h| h.event == "phase_started" && h.at_ms >= generation_start)
                    .find(|h| h.phase.as_deref() == Some(p.name.as_str()))
                    .map(|h| h.at_ms);
                ("done", starts, None)
            } else {
                ("skipped", None, None)
            };
            PhaseLine {
                name: p.name.clone(),
                percent: p.percent,
                duration: duration_text(p.duration_ms),
                audience: p.audience.clone(),
                experiment: p.experiment.clone(),
                state: state_word.to_owned(),
                starts_at: starts.map(rfc3339),
                ends_at: ends.map(rfc3339),
            }
        })
        .collect()
}

fn duration_text(ms: i64) -> String {
    for (unit, size) in [("d", DAY_MS), ("h", 3_600_000), ("m", 60_000)] {
        if ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{}s", ms / 1_000)
}

/// What the review should decide, from the verdicts and incidents: roll
/// back when a guard shows a regression; hold while a gate does not hold or
/// an incident is open; advance when every gate holds.
pub fn decide(
    state: &RolloutState,
    verdicts: &[Verdict],
    incidents: &[store::Incident],
) -> Decision {
    if !state.is_active() {
        let why = match state.status {
            Status::Pending => {
                "the rollout has not started; start it with `rollgate rollout start`"
            }
            _ => "the rollout has ended; nothing to decide",
        };
        return Decision {
            action: "none".to_owned(),
            reasons: vec![format!("status `{}`: {why}", state.status.name())],
        };
    }
    let breached_guards: Vec<String> = verdicts
        .iter()
        .filter(|v| matches!(v.check, Check::Guard { .. }) && v.is_breached())
        .map(|v| format!("guard {}", v.describe()))
        .collect();
    if !breached_guards.is_empty() {
        return Decision {
            action: "roll_back".to_owned(),
            reasons: breached_guards,
        };
    }
    let mut reasons: Vec<String> = verdicts
        .iter()
        .filter(|v| matches!(v.check, Check::Gate { .. }) && !v.holds())
        .map(|v| format!("gate {}", v.describe()))
        .collect();
    for i in incidents.iter().filter(|i| !i.is_resolved()) {
        reasons.push(format!(
            "incident {} is {} at {}: {}",
            i.id, i.status, i.level, i.title
        ));
    }
    if !reasons.is_empty() {
        return Decision {
            action: "hold".to_owned(),
            reasons,
        };
    }
    let gates = verdicts
        .iter()
        .filter(|v| matches!(v.check, Check::Gate { .. }))
        .count();
    let mut reasons = vec![if gates == 0 {
        "the plan has no gates, and no guard shows a regression".to_owned()
    } else {
        format!("all {gates} gate verdicts hold, and no guard shows a regression")
    }];
    if let Some(end) = state.phase_end_ms {
        reasons.push(format!(
            "the phase's minimum time is up at {}",
            rfc3339(end)
        ));
    }
    Decision {
        action: "advance".to_owned(),
        reasons,
    }
}

// ---------------------------------------------------------------- Markdown

/// User text made inert in Markdown: the characters that act inline
/// (emphasis, code, links, tables, HTML) are escaped, a character that would
/// open a block at the start of the text (a heading, a list, a quote) is
/// escaped there, and line breaks become spaces so that the text cannot
/// start a block of its own. Punctuation that means nothing inline (`.`,
/// `:`, `%`, …) is left as it is, so the raw Markdown stays readable.
pub fn md_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at_start = true;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' | '\n' => out.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '#' | '-' | '+' | '=' if at_start => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_ascii_digit() && at_start => {
                // `1. ` or `1) ` would open an ordered list.
                out.push(c);
                while let Some(d) = chars.next_if(char::is_ascii_digit) {
                    out.push(d);
                }
                if let Some(mark) = chars.next_if(|m| *m == '.' || *m == ')') {
                    out.push('\\');
                    out.push(mark);
                }
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
        if !c.is_whitespace() {
            at_start = false;
        }
    }
    out
}

/// A key or name as a code span; text with a backtick or a line break is
/// escaped instead, since a code span cannot hold it safely.
pub fn md_code(text: &str) -> String {
    if text.is_empty() || text.contains(['`', '\n', '\r']) || text.chars().any(char::is_control) {
        md_text(text)
    } else {
        format!("`{text}`")
    }
}

/// A number for people: up to 4 decimals, trailing zeros dropped.
pub fn number(value: f64) -> String {
    let text = format!("{value:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

fn opt_number(value: Option<f64>) -> String {
    value.map(number).unwrap_or_else(|| "–".to_owned())
}

fn percent_change(value: Option<f64>) -> String {
    value
        .map(|v| format!("{:+}%", number(v * 100.0).parse::<f64>().unwrap_or(0.0)))
        .unwrap_or_else(|| "–".to_owned())
}

/// The whole report as Markdown.
pub fn markdown(r: &Report) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# {}: {} in {}\n",
        ReportKind::parse(&r.kind).map_or("Report", ReportKind::title),
        md_code(&r.flag),
        md_code(&r.environment)
    );
    let _ = writeln!(md, "Generated at {}.\n", r.generated_at);
    rollout_section(&mut md, &r.rollout);
    if let Some(phases) = &r.phases {
        let _ = writeln!(md, "## Plan\n");
        let _ = writeln!(md, "| Phase | Percent | Duration | State | Starts | Ends |");
        let _ = writeln!(md, "|---|---|---|---|---|---|");
        for p in phases {
            let mut name = md_code(&p.name);
            if let Some(a) = &p.audience {
                let _ = write!(name, " (audience {})", md_code(a));
            }
            if let Some(e) = &p.experiment {
                let _ = write!(name, " (experiment {})", md_code(e));
            }
            let _ = writeln!(
                md,
                "| {name} | {}% | {} | {} | {} | {} |",
                number(p.percent),
                p.duration,
                p.state,
                p.starts_at.as_deref().unwrap_or("–"),
                p.ends_at.as_deref().unwrap_or("–")
            );
        }
        md.push('\n');
    }
    if let Some(checks) = &r.checks {
        checks_section(&mut md, checks);
    }
    if let Some(experiment) = &r.experiment {
        experiment_section(&mut md, experiment);
    }
    if let (Some(window), Some(metrics)) = (&r.window, &r.metrics) {
        let since = if r.kind == ReportKind::Weekly.as_str() {
            "last week"
        } else {
            "yesterday"
        };
        let _ = writeln!(md, "## Key metrics: change since {since}\n");
        let _ = writeln!(
            md,
            "From {} to {}, against {} to {}.\n",
            window.from, window.to, window.previous_from, window.from
        );
        if metrics.is_empty() {
            let _ = writeln!(md, "The plan has no gates or guards, so no metrics.\n");
        } else {
            let _ = writeln!(
                md,
                "| Metric | Variant | Now | Before | Change | Relative | Events (now / before) |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|---|");
            for m in metrics {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} / {} |",
                    md_code(&m.metric),
                    md_code(&m.variant),
                    opt_number(m.current),
                    opt_number(m.previous),
                    m.change
                        .map(|c| format!("{}{}", if c > 0.0 { "+" } else { "" }, number(c)))
                        .unwrap_or_else(|| "–".to_owned()),
                    percent_change(m.relative_change),
                    m.current_events,
                    m.previous_events
                );
            }
            md.push('\n');
        }
    }
    if let Some(happenings) = &r.happenings {
        let heading = if r.kind == ReportKind::Weekly.as_str() {
            "What happened this week"
        } else {
            "What changed and when"
        };
        let _ = writeln!(md, "## {heading}\n");
        if happenings.is_empty() {
            let _ = writeln!(md, "Nothing.\n");
        }
        for h in happenings {
            let _ = writeln!(md, "- {}: {}", h.at, happening_md(h));
        }
        if !happenings.is_empty() {
            md.push('\n');
        }
    }
    if let Some(incidents) = &r.incidents {
        incidents_section(&mut md, incidents);
    }
    if let Some(decision) = &r.decision {
        let action = match decision.action.as_str() {
            "advance" => "**Advance** to the next phase",
            "hold" => "**Hold** the current phase",
            "roll_back" => "**Roll back**",
            _ => "**Nothing to decide**",
        };
        let _ = writeln!(md, "## Decision\n\n{action}, because:\n");
        for reason in &decision.reasons {
            let _ = writeln!(md, "- {}", md_text(reason));
        }
        md.push('\n');
    }
    md
}

fn rollout_section(md: &mut String, s: &RolloutSummary) {
    let _ = writeln!(md, "## Rollout\n");
    if !s.description.is_empty() {
        let _ = writeln!(md, "{}\n", md_text(&s.description));
    }
    let _ = writeln!(md, "- Status: {}", s.status);
    if let Some(reason) = &s.status_reason {
        let _ = writeln!(md, "- Why: {}", md_text(reason));
    }
    let _ = writeln!(
        md,
        "- Treatment {} against control {}",
        md_code(&s.treatment),
        md_code(&s.control)
    );
    match (&s.phase, s.percent) {
        (Some(phase), Some(percent)) => {
            let _ = writeln!(
                md,
                "- Phase: {} ({} of {}), {}%",
                md_code(phase),
                s.phase_number,
                s.phases,
                number(percent)
            );
        }
        _ => {
            let _ = writeln!(md, "- Phase: not started ({} phases planned)", s.phases);
        }
    }
    if let Some(at) = &s.phase_started_at {
        let _ = writeln!(md, "- Phase started: {at}");
    }
    if let Some(at) = &s.phase_ends_at {
        let _ = writeln!(md, "- Phase time is up: {at}");
    }
    if let Some(e) = &s.experiment {
        let _ = writeln!(md, "- Experiment: {}", md_code(e));
    }
    md.push('\n');
}

fn checks_section(md: &mut String, checks: &[CheckLine]) {
    for (kind, heading) in [("gate", "Gates"), ("guard", "Guards")] {
        let lines: Vec<&CheckLine> = checks.iter().filter(|c| c.check == kind).collect();
        let _ = writeln!(md, "## {heading}\n");
        if lines.is_empty() {
            let _ = writeln!(md, "None in the plan.\n");
            continue;
        }
        let _ = writeln!(
            md,
            "| Metric | Variant | Value | Interval | Limit | Units | Verdict |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|");
        for c in lines {
            let show = |v: f64| {
                if c.relative {
                    format!("{}%", number(v * 100.0))
                } else {
                    number(v)
                }
            };
            let value = c.value.map(show).unwrap_or_else(|| "–".to_owned());
            let interval = if c.lower.is_none() && c.upper.is_none() {
                "–".to_owned()
            } else {
                format!(
                    "[{}, {}]{}",
                    c.lower.map(show).unwrap_or_else(|| "−∞".to_owned()),
                    c.upper.map(show).unwrap_or_else(|| "∞".to_owned()),
                    if c.always_valid { " always valid" } else { "" }
                )
            };
            let mut verdict = c.verdict.replace('_', " ");
            if let Some(reason) = &c.reason {
                let _ = write!(verdict, ": {}", md_text(reason));
            }
            if let Some(action) = &c.action {
                let _ = write!(verdict, " (on breach: {action})");
            }
            let _ = writeln!(
                md,
                "| {} | {} | {value} | {interval} | {} | {} | {verdict} |",
                md_code(&c.metric),
                md_code(&c.variant),
                md_text(&c.limit),
                c.units
            );
        }
        md.push('\n');
    }
}

fn incidents_section(md: &mut String, incidents: &[IncidentLine]) {
    let _ = writeln!(md, "## Incidents\n");
    if incidents.is_empty() {
        let _ = writeln!(md, "None.\n");
        return;
    }
    for i in incidents {
        let ack = match (&i.acknowledged_by, i.acknowledged) {
            (Some(by), true) => format!("acknowledged by {}", md_text(by)),
            (_, true) => "acknowledged".to_owned(),
            _ => "not acknowledged".to_owned(),
        };
        let _ = write!(
            md,
            "- #{} {}: {} ({}, {}, {ack}); opened {}",
            i.id,
            i.status,
            md_text(&i.title),
            md_text(&i.severity),
            md_text(&i.level),
            i.opened_at
        );
        if let Some(at) = &i.resolved_at {
            let _ = write!(md, ", resolved {at}");
        }
        if let Some(resolution) = &i.resolution {
            let _ = write!(md, ": {}", md_text(resolution));
        }
        if i.public {
            md.push_str(" (public)");
        }
        md.push('\n');
    }
    md.push('\n');
}

fn happening_md(h: &Happening) -> String {
    let mut line = match h.event.as_str() {
        "phase_started" => format!(
            "**phase {} started** ({})",
            md_code(h.phase.as_deref().unwrap_or("?")),
            md_text(h.text.rsplit(": ").next().unwrap_or(""))
        ),
        "incident_opened" => format!("**incident opened**: {}", md_text(&h.text)),
        "incident_resolved" => format!("**incident resolved**: {}", md_text(&h.text)),
        _ => md_text(&h.text),
    };
    if let Some(actor) = &h.actor {
        let _ = write!(line, ", by {}", md_text(actor));
    }
    if let Some(reason) = &h.reason {
        let _ = write!(line, " (reason: {})", md_text(reason));
    }
    line
}

fn experiment_section(md: &mut String, e: &Value) {
    let key = e["experiment"].as_str().unwrap_or("?");
    let _ = writeln!(md, "## Experiment {}\n", md_code(key));
    if let Some(error) = e["error"].as_str() {
        let _ = writeln!(md, "No results: {}\n", md_text(error));
        return;
    }
    if let Some(srm) = e["srm"]["verdict"].as_str() {
        let _ = writeln!(md, "- Sample ratio check: {}", md_text(srm));
    }
    for w in e["warnings"].as_array().into_iter().flatten() {
        let _ = writeln!(md, "- Warning: {}", md_text(w.as_str().unwrap_or("")));
    }
    md.push('\n');
    let _ = writeln!(
        md,
        "| Metric | Role | Variant | Relative lift | Interval | p (adjusted) | Verdict |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for m in e["metrics"].as_array().into_iter().flatten() {
        for c in m["comparisons"].as_array().into_iter().flatten() {
            let rel = &c["relative"];
            let (lift, interval, p) = if rel.is_object() {
                let pct = |v: &Value| {
                    v.as_f64()
                        .map(|x| format!("{}%", number(x * 100.0)))
                        .unwrap_or_else(|| "–".to_owned())
                };
                let p = rel["pValueAdjusted"]
                    .as_f64()
                    .or(rel["pValue"].as_f64())
                    .map(number)
                    .unwrap_or_else(|| "–".to_owned());
                (
                    pct(&rel["estimate"]),
                    format!("[{}, {}]", pct(&rel["ci"][0]), pct(&rel["ci"][1])),
                    p,
                )
            } else {
                ("–".to_owned(), "–".to_owned(), "–".to_owned())
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {lift} | {interval} | {p} | {} |",
                md_code(m["metric"].as_str().unwrap_or("?")),
                md_text(m["role"].as_str().unwrap_or("")),
                md_code(c["variant"].as_str().unwrap_or("?")),
                md_text(c["verdict"].as_str().unwrap_or(""))
            );
        }
    }
    md.push('\n');
}

// ---------------------------------------------------------------- HTTP

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// Environment key; `production` when absent.
    pub environment: Option<String>,
    /// `json` (default) or `markdown`.
    pub format: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/reports/{kind}/{flag}", tag = "reports",
    params(("kind" = String, Path, description = "status, weekly, review or release-notes"),
        ("flag" = String, Path), ReportQuery),
    responses((status = 200, body = Report, description = "The report; with `format=markdown`, its Markdown as text/markdown"),
        (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn report(
    State(state): State<Arc<AppState>>,
    _: Admin,
    ApiPath((kind, flag)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> Result<Response, ApiError> {
    let kind = ReportKind::parse(&kind).ok_or_else(|| {
        ApiError::not_found(format!(
            "unknown report `{kind}`; use {}",
            ReportKind::ALL.map(ReportKind::as_str).join(", ")
        ))
    })?;
    let markdown = match q.format.as_deref() {
        None | Some("json") => false,
        Some("markdown") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format: unknown format `{other}`; use json or markdown"
            )));
        }
    };
    let environment = q.environment.as_deref().unwrap_or(DEFAULT_ENVIRONMENT);
    if !state.has_environment(environment) {
        return Err(ApiError::not_found(format!(
            "environment `{environment}` was not found"
        )));
    }
    if flags::check_key(&flag).is_err() {
        return Err(ApiError::not_found(format!(
            "flag `{flag}` was not found in environment `{environment}`"
        )));
    }
    let report = build(&state, environment, &flag, kind, crate::now_ms()).await?;
    Ok(if markdown {
        (
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            report.markdown,
        )
            .into_response()
    } else {
        axum::Json(report).into_response()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_cannot_make_markdown_or_html() {
        let hostile =
            "<script>alert(1)</script>\n# Heading [link](javascript:x) ![img](y) *b* `c` | d";
        let safe = md_text(hostile);
        assert!(!safe.contains('<'), "{safe}");
        assert!(!safe.contains('\n'), "{safe}");
        // Every character that acts inline is escaped.
        let chars: Vec<char> = safe.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            if matches!(c, '[' | ']' | '*' | '`' | '|') {
                assert_eq!(
                    chars.get(i.wrapping_sub(1)),
                    Some(&'\\'),
                    "{c} at {i} in {safe}"
                );
            }
        }
        assert!(safe.starts_with("&lt;script&gt;alert(1)"), "{safe}");
        // What would open a block at the start is escaped there.
        assert_eq!(md_text("# Heading"), "\\# Heading");
        assert_eq!(md_text("  - item"), "  \\- item");
        assert_eq!(md_text("12. item"), "12\\. item");
        assert_eq!(md_text("Ready: 99.9% up - fine"), "Ready: 99.9% up - fine");
        assert_eq!(md_code("calc-model"), "`calc-model`");
        assert_eq!(md_code("a`b"), "a\\`b");
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(number(0.02), "0.02");
        assert_eq!(number(1.0), "1");
        assert_eq!(number(0.123456), "0.1235");
        assert_eq!(number(-0.00001), "0");
        assert_eq!(percent_change(Some(0.25)), "+25%");
        assert_eq!(percent_change(Some(-0.5)), "-50%");
    }

    #[test]
    fn windows_end_with_the_current_hour() {
        let now = 1_700_000_000_000; // 2023-11-14T22:13:20Z
        let (previous, from, to) = windows(DAY_MS, now);
        assert_eq!(rfc3339(to), "2023-11-14T23:00:00.000Z");
        assert_eq!(from, to - DAY_MS);
        assert_eq!(previous, to - 2 * DAY_MS);
    }

    #[test]
    fn durations_read_as_written() {
        assert_eq!(duration_text(14 * DAY_MS), "14d");
        assert_eq!(duration_text(90_000), "90s");
        assert_eq!(duration_text(7_200_000), "2h");
    }
}
