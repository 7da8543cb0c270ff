//! Running rollouts: the server side of the pure controller in the `rollout`
//! crate. A step reads the plan, the stored state and the metric data, asks
//! `rollout::step` what to do, and commits the new state, the flag change and
//! the incidents in one transaction (`Store::commit_rollout_step`), then
//! swaps the environment's snapshot so OFREP serves the change at once.
//!
//! Steps run every [`TICK`], right after every fold of new events, and for
//! every command a person sends (`POST /api/v1/rollouts/{flag}/{command}`).
//! Automatic steps are attributed to the actor [`CONTROLLER`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use flags::{ConditionSpec, FlagSpec, RuleSpec, ServeSpec, Weight};
use indexmap::IndexMap;
use rollout::{Action, Command, Minutes, Observations, Plan, RolloutState, VariantData};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use store::{NewIncident, StepCommit, StoreError};
use utoipa::{IntoParams, ToSchema};

use crate::admin::{EnvQuery, existing_environment, rfc3339};
use crate::auth::Admin;
use crate::error::{ApiError, ApiPath, ApiQuery};
use crate::state::AppState;

/// The actor of automatic steps in versions, incidents and the audit log.
pub const CONTROLLER: &str = "controller";
/// How often running rollouts are stepped when no new data arrives.
pub const TICK: Duration = Duration::from_secs(1);
/// The name of the flag rule a rollout adds for a phase's audience.
pub const AUDIENCE_RULE: &str = "rollout audience";

/// Why a step could not run.
#[derive(Debug)]
pub enum StepError {
    Store(StoreError),
    /// The command is not allowed now (a 409 with the controller's message).
    Command(rollout::CommandError),
    /// No plan, or a plan that no longer compiles.
    Plan(String),
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> Self {
        StepError::Store(e)
    }
}

impl From<StepError> for ApiError {
    fn from(e: StepError) -> Self {
        match e {
            StepError::Store(e) => e.into(),
            StepError::Command(e) => ApiError::conflict(e.message),
            StepError::Plan(message) => ApiError::not_found(message),
        }
    }
}

/// The flag as `action` leaves it; `None` for actions that do not touch it.
/// The rollout owns the default rule (and an audience rule it adds last);
/// the flag's own targeting rules stay above and keep applying.
pub fn flag_after(flag: &FlagSpec, action: &Action) -> Option<FlagSpec> {
    let mut next = flag.clone();
    next.rules
        .retain(|r| r.name.as_deref() != Some(AUDIENCE_RULE));
    let (serve, audience) = match action {
        Action::Serve {
            percent,
            arms,
            otherwise,
            audience,
        } => {
            let split: IndexMap<String, Weight> =
                arms.iter().map(|(v, w)| (v.clone(), Weight(*w))).collect();
            let serve = ServeSpec {
                variant: None,
                split: Some(split),
                rollout: Some(Weight(*percent)),
                otherwise: Some(otherwise.clone()),
            };
            (serve, audience.as_ref().map(|a| (a, otherwise)))
        }
        Action::ServeControl { control, .. } => (ServeSpec::variant(control.clone()), None),
        Action::ServeTreatment {
            treatment,
            audience,
        } => {
            let control = rollout_control(flag);
            (
                ServeSpec::variant(treatment.clone()),
                audience.as_ref().map(|a| (a, control)),
            )
        }
        Action::Notify { .. } | Action::OpenIncident(_) => return None,
    };
    match audience {
        Some((segment, outside)) => {
            next.rules.push(RuleSpec {
                name: Some(AUDIENCE_RULE.to_owned()),
                conditions: vec![ConditionSpec {
                    segment: Some(segment.clone()),
                    ..ConditionSpec::default()
                }],
                serve,
            });
            next.default.serve = ServeSpec::variant(outside.clone());
        }
        None => next.default.serve = serve,
    }
    Some(next)
}

/// The variant a completed rollout's audience rule leaves to everyone else:
/// what the default served before (a plain variant), else the off-variant.
fn rollout_control(flag: &FlagSpec) -> &String {
    flag.default
        .serve
        .variant
        .as_ref()
        .or(flag.default.serve.otherwise.as_ref())
        .unwrap_or(&flag.off_variant)
}

/// A plan, its stored state and that state's version.
pub struct Loaded {
    pub plan: Plan,
    pub state: RolloutState,
    pub version: Option<i64>,
    pub flag: Option<store::StoredFlag>,
}

/// Reads and compiles the rollout plan of `flag` with the state it is in.
pub async fn load(state: &AppState, environment: &str, flag: &str) -> Result<Loaded, StepError> {
    let store = &state.store;
    let spec = store
        .get_rollout(environment, flag)
        .await?
        .ok_or_else(|| {
            StepError::Plan(format!(
                "flag `{flag}` has no rollout plan in environment `{environment}`; add a [[rollouts]] entry and apply it"
            ))
        })?
        .spec;
    let (flag_specs, segment_specs, _) = store.load_environment(environment).await?;
    let metrics = stats::compile_metrics(&store.load_metrics(environment).await?)
        .map_err(|_| StepError::Plan("the stored metrics do not compile".into()))?;
    let experiments: Vec<stats::ExperimentSpec> = store
        .list_experiments(environment)
        .await?
        .into_iter()
        .map(|e| e.spec)
        .collect();
    let flags: HashMap<String, Vec<String>> = flag_specs
        .iter()
        .map(|f| (f.key.clone(), f.variants.keys().cloned().collect()))
        .collect();
    let segments: HashSet<String> = segment_specs.iter().map(|s| s.key.clone()).collect();
    let context = rollout::PlanContext {
        flags: &flags,
        segments: &segments,
        metrics: &metrics,
        experiments: &experiments,
    };
    let plan = rollout::compile_rollouts(std::slice::from_ref(&spec), &context)
        .map_err(|errors| {
            StepError::Plan(format!(
                "the rollout plan of `{flag}` no longer compiles: {}",
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        })?
        .pop()
        .ok_or_else(|| StepError::Plan(format!("flag `{flag}` has no rollout plan")))?;
    let (state_now, version) = match store.rollout_state(environment, flag).await? {
        Some(record) => (
            serde_json::from_str(&record.state)
                .map_err(|e| StoreError::Corrupt(format!("rollout state of `{flag}`: {e}")))?,
            Some(record.version),
        ),
        None => (RolloutState::new(), None),
    };
    Ok(Loaded {
        plan,
        state: state_now,
        version,
        flag: store.get_flag(environment, flag).await?,
    })
}

/// The data of every metric the plan's gates and guards read, per variant.
pub async fn observations(
    state: &AppState,
    environment: &str,
    plan: &Plan,
    since_ms: i64,
) -> Result<Observations, StoreError> {
    let specs = state.store.load_metrics(environment).await?;
    let metrics = stats::compile_metrics(&specs).unwrap_or_default();
    let wanted: HashSet<&str> = plan
        .spec
        .success
        .iter()
        .map(|g| g.metric.as_str())
        .chain(plan.spec.guards.iter().map(|g| g.metric.as_str()))
        .collect();
    let mut observations = Observations::new();
    for metric in metrics.iter().filter(|m| wanted.contains(m.key.as_str())) {
        if let stats::MetricKind::Uptime { max_error_rate, .. } = metric.kind {
            // Minutes are time buckets, so the window is exact: the phase's.
            let minutes = state
                .store
                .metric_buckets(
                    environment,
                    plan.flag(),
                    &metric.key,
                    "1m",
                    since_ms,
                    i64::MAX,
                )
                .await?;
            let mut per_variant: HashMap<String, Minutes> = HashMap::new();
            for b in minutes.iter().filter(|b| b.y > 0.0) {
                let m = per_variant.entry(b.variant.clone()).or_default();
                m.served += 1;
                if b.x / b.y <= max_error_rate {
                    m.healthy += 1;
                }
            }
            for (variant, minutes) in per_variant {
                observations.insert(
                    &metric.key,
                    &variant,
                    VariantData {
                        minutes: Some(minutes),
                        ..VariantData::default()
                    },
                );
            }
            continue;
        }
        let arms = ingest::arms::arm_data(
            &state.store,
            environment,
            plan.flag(),
            metric,
            false,
            Some(since_ms),
        )
        .await?;
        for (variant, arm) in arms {
            observations.insert(
                &metric.key,
                &variant,
                VariantData {
                    units: arm.units,
                    moments: arm.moments,
                    active: arm.active,
                    sketch: arm.sketch,
                    minutes: None,
                },
            );
        }
    }
    Ok(observations)
}

/// What a step did.
pub struct Stepped {
    pub step: rollout::Step,
    /// Whether anything was written.
    pub committed: bool,
}

/// Runs one step of a flag's rollout (with a person's command, or none) and
/// commits what it decides. A step computed over a state that changed
/// meanwhile is retried once on the new state.
pub async fn run_step(
    state: &AppState,
    environment: &str,
    flag: &str,
    command: Option<Command>,
    actor: &str,
    reason: Option<&str>,
) -> Result<Stepped, StepError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match try_step(state, environment, flag, command.clone(), actor, reason).await {
            Err(StepError::Store(StoreError::Conflict(_))) if attempts < 3 => continue,
            other => return other,
        }
    }
}

async fn try_step(
    state: &AppState,
    environment: &str,
    flag: &str,
    command: Option<Command>,
    actor: &str,
    reason: Option<&str>,
) -> Result<Stepped, StepError> {
    let loaded = load(state, environment, flag).await?;
    // Start and restart remember the flag's version to return to.
    let command = command.map(|c| match c {
        Command::Start { .. } => Command::Start {
            flag_version: loaded.flag.as_ref().map(|f| f.version as u64),
        },
        Command::Restart { .. } => Command::Restart {
            flag_version: loaded.flag.as_ref().map(|f| f.version as u64),
        },
        other => other,
    });
    let observations = observations(
        state,
        environment,
        &loaded.plan,
        loaded.state.phase_started_ms.unwrap_or(0),
    )
    .await?;
    let step = rollout::step(
        &loaded.plan,
        &loaded.state,
        &observations,
        crate::now_ms(),
        command.as_ref(),
    )
    .map_err(StepError::Command)?;
    if step.state == loaded.state && step.actions.is_empty() {
        return Ok(Stepped {
            step,
            committed: false,
        });
    }
    let mut flag_change: Option<FlagSpec> = None;
    let mut incidents = Vec::new();
    for action in &step.actions {
        match action {
            Action::OpenIncident(incident) => incidents.push(NewIncident {
                kind: to_text(&incident.kind),
                severity: to_text(&incident.severity),
                level: incident.level.as_str().to_owned(),
                title: incident.title.clone(),
                summary: incident.summary.clone(),
                evidence: serde_json::to_value(incident).ok(),
            }),
            Action::Notify { message } => {
                tracing::info!(message = "Rollout.", environment, flag, note = %message)
            }
            _ => {
                let current = flag_change
                    .as_ref()
                    .or(loaded.flag.as_ref().map(|f| &f.spec));
                if let Some(next) = current.and_then(|f| flag_after(f, action)) {
                    flag_change = Some(next);
                }
            }
        }
    }
    let state_json = serde_json::to_string(&step.state)
        .map_err(|e| StoreError::Corrupt(format!("rollout state: {e}")))?;
    let default_reason = command
        .as_ref()
        .map(|c| format!("rollout {}", c.name()))
        .unwrap_or_else(|| format!("rollout {}", step.state.status.name()));
    // What the step announces goes into its transaction: announced if and
    // only if committed.
    let channels: Vec<store::ChannelSpec> = state
        .store
        .list_channels(environment)
        .await?
        .into_iter()
        .map(|c| c.spec)
        .collect();
    let now = crate::now_ms();
    let mut enqueued = false;
    let announce = |incident_ids: &[i64]| {
        let announced = crate::notify::announcements(
            environment,
            &loaded.plan,
            &loaded.state,
            &step,
            incident_ids,
            actor,
            reason,
            now,
        );
        let deliveries = crate::notify::deliveries_for(&channels, &announced);
        enqueued = !deliveries.is_empty();
        deliveries
    };
    state
        .store
        .commit_rollout_step_announcing(
            StepCommit {
                environment,
                flag,
                read_version: loaded.version,
                state: state_json,
                flag_change,
                incidents,
                new_window: step.state.phase_started_ms != loaded.state.phase_started_ms
                    || step.state.generation != loaded.state.generation,
                actor,
                reason: Some(reason.unwrap_or(&default_reason)),
            },
            announce,
        )
        .await?;
    if enqueued {
        crate::notify::wake_worker(state);
    }
    if let Err(error) = state.refresh_selections(environment).await {
        tracing::warn!(message = "Could not refresh the flag snapshot after a rollout step.", environment, %error);
    }
    Ok(Stepped {
        step,
        committed: true,
    })
}

/// A serde enum's name (`critical`, `guard_rollback`).
fn to_text<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Steps every active rollout of every environment.
pub async fn step_all(state: &AppState) {
    let environments = match state.store.list_environments().await {
        Ok(envs) => envs,
        Err(error) => {
            tracing::warn!(message = "The rollout controller could not list environments.", %error);
            return;
        }
    };
    for env in environments {
        let records = match state.store.rollout_states(&env.key).await {
            Ok(records) => records,
            Err(error) => {
                tracing::warn!(message = "The rollout controller could not read states.", environment = env.key, %error);
                continue;
            }
        };
        for record in records {
            let active = serde_json::from_str::<RolloutState>(&record.state)
                .map(|s| s.is_active())
                .unwrap_or(false);
            if !active {
                continue;
            }
            if let Err(error) =
                run_step(state, &env.key, &record.flag, None, CONTROLLER, None).await
            {
                tracing::warn!(message = "A rollout step failed.", environment = env.key, flag = record.flag, error = ?error);
            }
        }
    }
}

/// Runs the controller: a step of every active rollout every [`TICK`] and
/// right after every fold of new events — on the one replica that leads
/// (`store::Leadership`). The others try to take the lead every tick, so
/// when the leader dies another continues from the stored state within a
/// tick or two.
pub fn spawn_controller(state: Arc<AppState>) {
    tokio::spawn(async move {
        let mut leadership: Option<store::Leadership> = None;
        loop {
            if let Some(lead) = &mut leadership
                && !lead.holds().await
            {
                tracing::warn!(message = "Lost the rollout controller's lock; standing by.");
                leadership = None;
            }
            if leadership.is_none() {
                match state.store.try_lead().await {
                    Ok(Some(lead)) => {
                        tracing::info!(message = "This replica runs the rollout controller.");
                        leadership = Some(lead);
                    }
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(message = "Could not try for the rollout controller's lock.", %error);
                    }
                }
            }
            state
                .leading
                .store(leadership.is_some(), std::sync::atomic::Ordering::Relaxed);
            if leadership.is_some() {
                step_all(&state).await;
                crate::incidents::escalate_due(&state, crate::now_ms()).await;
            }
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                () = state.ingest.folded() => {}
            }
        }
    });
}

impl std::fmt::Debug for Stepped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stepped")
            .field("status", &self.step.state.status.name())
            .field("committed", &self.committed)
            .finish()
    }
}

// ---------------------------------------------------------------- HTTP

/// A rollout's status: its state, where it is, every gate and guard with its
/// current value and verdict, and its incidents.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    pub flag: String,
    pub environment: String,
    /// `pending`, `running`, `held`, `paused`, `completed`, `rolled_back`, `aborted`.
    pub status: String,
    /// The stored state, as the controller keeps it.
    #[schema(value_type = Object)]
    pub state: RolloutState,
    pub phase: Option<String>,
    pub phase_index: usize,
    pub phases: usize,
    pub percent: Option<f64>,
    pub phase_started_at: Option<String>,
    pub phase_ends_at: Option<String>,
    /// Every gate and guard on the data so far.
    #[schema(value_type = Vec<Object>)]
    pub verdicts: Vec<rollout::Verdict>,
    pub incidents: Vec<IncidentRecord>,
    /// The plan as written.
    #[schema(value_type = Object)]
    pub plan: rollout::RolloutSpec,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IncidentRecord {
    pub id: i64,
    pub kind: String,
    pub severity: String,
    pub title: String,
    pub opened_at: String,
    pub opened_by: String,
    pub resolved_at: Option<String>,
    pub resolution: Option<String>,
    /// What happened: the verdicts with values, intervals, limits and sample
    /// sizes, and the flag version to return to.
    #[schema(value_type = Object)]
    pub evidence: Option<Value>,
}

impl From<store::Incident> for IncidentRecord {
    fn from(i: store::Incident) -> Self {
        IncidentRecord {
            id: i.id,
            kind: i.kind,
            severity: i.severity,
            title: i.title,
            opened_at: rfc3339(i.opened_at_ms),
            opened_by: i.opened_by,
            resolved_at: i.resolved_at_ms.map(rfc3339),
            resolution: i.resolution,
            evidence: i.evidence,
        }
    }
}

pub(crate) async fn status_of(
    state: &AppState,
    environment: &str,
    flag: &str,
    verdicts: Option<Vec<rollout::Verdict>>,
) -> Result<RolloutStatus, StepError> {
    let loaded = load(state, environment, flag).await?;
    let verdicts = match verdicts {
        Some(v) => v,
        None => {
            let observations = observations(
                state,
                environment,
                &loaded.plan,
                loaded.state.phase_started_ms.unwrap_or(0),
            )
            .await?;
            rollout::step(
                &loaded.plan,
                &loaded.state,
                &observations,
                crate::now_ms(),
                None,
            )
            .map(|s| s.verdicts)
            .unwrap_or_default()
        }
    };
    let started = loaded.state.status != rollout::Status::Pending;
    let phase = loaded.plan.phase(loaded.state.phase);
    Ok(RolloutStatus {
        flag: flag.to_owned(),
        environment: environment.to_owned(),
        status: loaded.state.status.name().to_owned(),
        phase: started.then(|| phase.name.clone()),
        phase_index: loaded.state.phase,
        phases: loaded.plan.phases.len(),
        percent: started.then_some(phase.percent),
        phase_started_at: loaded.state.phase_started_ms.map(rfc3339),
        phase_ends_at: loaded.state.phase_end_ms.map(rfc3339),
        verdicts,
        incidents: state
            .store
            .incidents(
                environment,
                &store::IncidentFilter {
                    flag: Some(flag.to_owned()),
                    ..Default::default()
                },
            )
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
        plan: loaded.plan.spec.clone(),
        state: loaded.state,
    })
}

#[utoipa::path(get, path = "/api/v1/rollouts/{flag}", tag = "rollouts", params(("flag" = String, Path), EnvQuery),
    responses((status = 200, body = RolloutStatus), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_rollout(
    State(state): State<Arc<AppState>>,
    _: Admin,
    ApiPath(flag): ApiPath<String>,
    ApiQuery(q): ApiQuery<EnvQuery>,
) -> Result<Json<RolloutStatus>, ApiError> {
    let env = existing_environment(&state, &q)?;
    Ok(Json(status_of(&state, env, &flag, None).await?))
}

/// The body of a command: why (stored with the state change, the flag
/// version and the audit entries) and, for `extend`, by how long.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandBody {
    pub reason: Option<String>,
    /// `extend`: a duration such as `"2d"` or `"90s"`.
    pub by: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CommandPath {
    pub flag: String,
    /// `start`, `advance`, `pause`, `resume`, `rollback`, `restart`, `extend` or `abort`.
    pub command: String,
}

#[utoipa::path(post, path = "/api/v1/rollouts/{flag}/{command}", tag = "rollouts",
    params(("flag" = String, Path), ("command" = String, Path, description = "start, advance, pause, resume, rollback, restart, extend or abort"), EnvQuery),
    request_body = CommandBody,
    responses((status = 200, body = RolloutStatus), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn command(
    State(state): State<Arc<AppState>>,
    Admin(who): Admin,
    ApiPath((flag, command)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<EnvQuery>,
    body: Bytes,
) -> Result<Json<RolloutStatus>, ApiError> {
    let env = existing_environment(&state, &q)?;
    let body: CommandBody = if body.iter().all(u8::is_ascii_whitespace) {
        CommandBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("invalid body: {e}"),
            )
        })?
    };
    let reason = body.reason.clone().or_else(|| q.reason.clone());
    let reason_text = reason.clone().unwrap_or_default();
    let command = match command.as_str() {
        "start" => Command::Start { flag_version: None },
        "advance" => Command::Advance,
        "pause" => Command::Pause {
            reason: reason_text,
        },
        "resume" => Command::Resume,
        "rollback" => {
            if reason_text.trim().is_empty() {
                return Err(ApiError::bad_request(
                    "say why with `reason` (e.g. \"critical bug\"): it goes into the incident",
                ));
            }
            Command::Rollback {
                reason: reason_text,
            }
        }
        "restart" => Command::Restart { flag_version: None },
        "extend" => {
            let by = body.by.as_deref().ok_or_else(|| {
                ApiError::bad_request("say by how long with `by`, e.g. {\"by\": \"2d\"}")
            })?;
            let by_ms = rollout::parse_duration_ms(by)
                .map_err(|e| ApiError::bad_request(format!("by: {e}")))?;
            Command::Extend { by_ms }
        }
        "abort" => Command::Abort {
            reason: reason_text,
        },
        other => {
            return Err(ApiError::not_found(format!(
                "unknown rollout command `{other}`; use start, advance, pause, resume, rollback, restart, extend or abort"
            )));
        }
    };
    let stepped = run_step(
        &state,
        env,
        &flag,
        Some(command),
        &who.name,
        reason.as_deref(),
    )
    .await?;
    Ok(Json(
        status_of(&state, env, &flag, Some(stepped.step.verdicts)).await?,
    ))
}
