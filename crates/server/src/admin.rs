//! The admin JSON API under `/api/v1`: environments, flags, segments, versions,
//! metric definitions, the config document (apply / export), tokens and the
//! audit log.
//!
//! Handlers translate between wire JSON and the store; validation of flags,
//! segments and metrics happens in the store's transaction (through
//! `flags::compile` and `stats::compile_metrics`), so a change is checked
//! against exactly the state it is committed on.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat};
use flags::{FlagSpec, SegmentSpec};
use serde::{Deserialize, Serialize};
use stats::{ExperimentSpec, MetricSpec};
use store::{ApplyOptions, ApplyReport, Change, TokenKind};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Admin, DEFAULT_ENVIRONMENT};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

type AppResult<T> = Result<T, ApiError>;
type Shared = State<Arc<AppState>>;

/// RFC 3339 in UTC from Unix milliseconds.
pub fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EnvQuery {
    /// Environment key; `production` when absent.
    pub environment: Option<String>,
    /// Why (for mutations without a body).
    pub reason: Option<String>,
}

impl EnvQuery {
    fn environment(&self) -> &str {
        self.environment.as_deref().unwrap_or(DEFAULT_ENVIRONMENT)
    }
}

/// The environment must exist for reads and edits.
pub(crate) fn existing_environment<'a>(state: &AppState, q: &'a EnvQuery) -> AppResult<&'a str> {
    let env = q.environment();
    if state.has_environment(env) {
        Ok(env)
    } else {
        Err(ApiError::not_found(format!(
            "environment `{env}` was not found; create it with POST /api/v1/environments"
        )))
    }
}

/// A body that may be absent or `{"reason": "…"}`.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    pub reason: Option<String>,
}

fn optional_reason(body: &Bytes, q: &EnvQuery) -> AppResult<Option<String>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(q.reason.clone());
    }
    let parsed: ReasonBody = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("invalid body: {e}"),
        )
    })?;
    Ok(parsed.reason.or_else(|| q.reason.clone()))
}

async fn refresh(state: &AppState, environment: &str) {
    // Also recomputes automatic selections, so a new experiment's apply at once.
    if let Err(error) = state.refresh_selections(environment).await {
        // The change is committed; the periodic resync will pick it up.
        tracing::warn!(message = "Could not refresh the flag snapshot after a change.", environment, %error);
    }
}

// ---------------------------------------------------------------- environments

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentRecord {
    pub key: String,
    pub description: String,
    pub revision: i64,
    pub created_at: String,
}

impl From<store::Environment> for EnvironmentRecord {
    fn from(e: store::Environment) -> Self {
        EnvironmentRecord {
            key: e.key,
            description: e.description,
            revision: e.revision,
            created_at: rfc3339(e.created_at_ms),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct EnvironmentList {
    pub environments: Vec<EnvironmentRecord>,
}

#[utoipa::path(get, path = "/api/v1/environments", tag = "environments", responses((status = 200, body = EnvironmentList)))]
pub async fn list_environments(State(state): Shared, _: Admin) -> AppResult<Json<EnvironmentList>> {
    let environments = state
        .store
        .list_environments()
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(EnvironmentList { environments }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEnvironment {
    pub key: String,
    #[serde(default)]
    pub description: String,
}

#[utoipa::path(post, path = "/api/v1/environments", tag = "environments", request_body = NewEnvironment,
    responses((status = 201, body = EnvironmentRecord), (status = 409, body = crate::error::ErrorBody)))]
pub async fn create_environment(
    State(state): Shared,
    Admin(who): Admin,
    ApiJson(body): ApiJson<NewEnvironment>,
) -> AppResult<(StatusCode, Json<EnvironmentRecord>)> {
    flags::check_key(&body.key)
        .map_err(|e| ApiError::bad_request(format!("environment key {e}")))?;
    let env = state
        .store
        .create_environment(&body.key, &body.description, &who.name)
        .await?;
    refresh(&state, &env.key).await;
    Ok((StatusCode::CREATED, Json(env.into())))
}

// ---------------------------------------------------------------- flags

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlagRecord {
    pub key: String,
    #[serde(rename = "type")]
    pub flag_type: String,
    pub description: String,
    pub enabled: bool,
    pub version: i64,
    pub updated_at: String,
    pub updated_by: String,
    /// The flag as in the config file.
    #[schema(value_type = Object)]
    pub flag: FlagSpec,
}

impl From<store::StoredFlag> for FlagRecord {
    fn from(f: store::StoredFlag) -> Self {
        FlagRecord {
            key: f.spec.key.clone(),
            flag_type: f.spec.flag_type.to_string(),
            description: f.spec.description.clone(),
            enabled: f.spec.enabled,
            version: f.version,
            updated_at: rfc3339(f.updated_at_ms),
            updated_by: f.updated_by,
            flag: f.spec,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct FlagList {
    pub flags: Vec<FlagRecord>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FlagListQuery {
    pub environment: Option<String>,
    /// Case-insensitive substring of the key or description.
    pub q: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/flags", tag = "flags", params(FlagListQuery), responses((status = 200, body = FlagList)))]
pub async fn list_flags(
    State(state): Shared,
    _: Admin,
    ApiQuery(q): ApiQuery<FlagListQuery>,
) -> AppResult<Json<FlagList>> {
    let env_q = EnvQuery {
        environment: q.environment,
        reason: None,
    };
    let env = existing_environment(&state, &env_q)?;
    let needle = q.q.map(|s| s.to_lowercase());
    let flags = state
        .store
        .list_flags(env)
        .await?
        .into_iter()
        .filter(|f| {
            needle.as_deref().is_none_or(|n| {
                f.spec.key.to_lowercase().contains(n)
                    || f.spec.description.to_lowercase().contains(n)
            })
        })
        .map(Into::into)
        .collect();
    Ok(Json(FlagList { flags }))
}

async fn stored_flag(state: &AppState, env: &str, key: &str) -> AppResult<store::StoredFlag> {
    state.store.get_flag(env, key).await?.ok_or_else(|| {
        ApiError::not_found(format!("flag `{key}` was not found in environment `{env}`"))
    })
}

#[utoipa::path(get, path = "/api/v1/flags/{key}", tag = "flags", params(("key" = String, Path), EnvQuery),
    responses((status = 200, body = FlagRecord), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_flag(
    State(state): Shared,
    _: Admin,
    ApiPath(key): ApiPath<String>,
    ApiQuery(q): ApiQuery<EnvQuery>,
) -> AppResult<Json<FlagRecord>> {
    let env = existing_environment(&state, &q)?;
    Ok(Json(stored_flag(&state, env, &key).await?.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlagBody {
    #[schema(value_type = Object)]
    pub flag: FlagSpec,
    pub reason: Option<String>,
}

/// Applies changes to one environment and refreshes its snapshot.
async fn commit(
    state: &AppState,
    env: &str,
    changes: Vec<Change>,
    actor: &str,
    reason: Option<&str>,
    dry_run: bool,
) -> AppResult<ApplyReport> {
    let report = state
        .store
        .apply(env, changes, actor, reason, ApplyOptions { dry_run })
        .await?;
    if !dry_run {
        refresh(state, env).await;
    }
    Ok(report)
}

#[utoipa::path(post, path = "/api/v1/flags", tag = "flags", params(EnvQuery), request_body = FlagBody,
    responses((status = 201, body = FlagRecord), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub async fn create_flag(
    State(state): Shared,
    Admin(who): Admin,
    ApiQuery(q): ApiQuery<EnvQuery>,
    ApiJson(body): ApiJson<FlagBody>,
) -> AppResult<(StatusCode, Json<FlagRecord>)> {
    let env = existing_environment(&state, &q)?;
    let key = body.flag.key.clone();
    if state.store.get_flag(env, &key).await?.is_some() {
        return Err(ApiError::conflict(format!(
            "flag `{key}` already exists; use PUT /api/v1/flags/{key} to change it"
        )));
    }
    commit(
        &state,
        env,
        vec![Change::UpsertFlag(body.flag)],
        &who.name,
        body.reason.as_deref(),
        false,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(stored_flag(&state, env, &key).await?.into()),
    ))
}

#[utoipa::path(put, path = "/api/v1/flags/{key}", tag = "flags", params(("key" = String, Path), EnvQuery), request_body = FlagBody,
    responses((status = 200, body = FlagRecord), (status = 422, body = crate::error::ErrorBody)))]
pub async fn put_flag(
    State(state): Shared,
    Admin(who): Admin,
    ApiPath(key): ApiPath<String>,
    ApiQuery(q): ApiQuery<EnvQuery>,
    ApiJson(body): ApiJson<FlagBody>,
) -> AppResult<Json<FlagRecord>> {
    let env = existing_environment(&state, &q)?;
    if body.flag.key != key {
        return Err(ApiError::bad_request(format!(
            "the body's flag key `{}` differs from the path's `{key}`",
            body.flag.key
        )));
    }
    let reason = body.reason.or(q.reason.clone());
    commit(
        &state,
        env,
        vec![Change::UpsertFlag(body.flag)],
        &who.name,
        reason.as_deref(),
        false,
    )
    .await?;
    Ok(Json(stored_flag(&state, env, &key).await?.into()))
}

#[derive(Serialize, ToSchema)]
pub struct Deleted {
    pub deleted: String,
    pub version: Option<i64>,
}

#[utoipa::path(delete, path = "/api/v1/flags/{key}", tag = "flags", params(("key" = String, Path), EnvQuery),
    responses((status = 200, body = Deleted), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_flag(
    State(state): Shared,
    Admin(who): Admin,
    ApiPath(key): ApiPath<String>,
    ApiQuery(q): ApiQuery<EnvQuery>,
) -> AppResult<Json<Deleted>> {
    let env = existing_environment(&state, &q)?;
    let report = commit(
        &state,
        env,
        vec![Change::DeleteFlag(key.clone())],
        &who.name,
        q.reason.as_deref(),
        false,
    )
    .await?;
    let version = report.changes.first().and_then(|c| c.version);
    Ok(Json(Deleted {
        deleted: key,
        version,
    }))
}

async fn set_enabled(
    state: Arc<AppState>,
    who: &str,
    key: &str,
    q: &EnvQuery,
    body: &Bytes,
    enabled: bool,
) -> AppResult<Json<FlagRecord>> {
    let env = existing_environment(&state, q)?;
    let reason = optional_reason(body, q)?;
    let mut spec = stored_flag(&state, env, key).await?.spec;
    spec.enabled = enabled;
    commit(
        &state,
        env,
        vec![Change::UpsertFlag(spec)],
        who,
        reason.as_deref(),
        false,
    )
    .await?;
    Ok(Json(stored_flag(&state, env, key).await?.into()))
}

#[utoipa::path(post, path = "/api/v1/flags/{key}/enable", tag = "flags", params(("key" = String, Path), EnvQuery),
    request_body(content = ReasonBody, description = "optional"), responses((status = 200, body = FlagRecord)))]
pub async fn enable_flag(
    State(state): Shared,
    Admin(who): Admin,
    ApiPath(key): ApiPath<String>,
    ApiQuery(q): ApiQuery<EnvQuery>,
    body: Bytes,
) -> AppResult<Json<FlagRecord>> {
    set_enabled(state, &who.name, &key, &q, &body, true).await
}

#[utoipa::path(post, path = "/api/v1/flags/{key}/disable", tag = "flags", params(("key" = String, Path), EnvQuery),
    request_body(content = ReasonBody, description = "optional"), responses((status = 200, body = FlagRecord)))]
pub async fn disable_flag(
    State(state): Shared,
    Admin(who): Admin,
    ApiPath(key): ApiPath<String>,
    ApiQuery(q): ApiQuery<EnvQuery>,
    body: Bytes,
) -> AppResult<Json<FlagRecord>> {
    set_enabled(state, &who.name, &key, &q, &body, false).await
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionRecord {
    pub version: i64,
    /// The flag at this version; null when this version deleted it.
    #[schema(value_type = Option<Object>)]
    pub flag: Option<FlagSpec>,
    pub author: String,
    pub reason: Option<String>,
    pub created_at: String,
}

impl From<store::FlagVersion> for VersionRecord {
    fn from(v: store::FlagVersion) -> Self {
        VersionRecord {
            version: v.version,
            flag: v.spec,
            author: v.author,
            reason: v.reason,
            created_at: rfc3339(v.created_at_ms),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct VersionList {
    pub versions: Vec<VersionRecord>,
}

#[utoipa::path(get, path = "/api/v1/flags/{key}/versions", tag = "flags", params(("key" = String, Path), EnvQuery),
    responses((status = 200, body = VersionList), (status = 404, body = crate::error::ErrorBody)))]
pub async fn flag_history(
    State(state): Shared,
    _: Admin,
    ApiPath(key): ApiPath<String>,
    ApiQuery(q): ApiQuery<EnvQuery>,
) -> AppResult<Json<VersionList>> {
    let env = existing_environment(&state, &q)?;
    let versions: Vec<VersionRecord> = state
        .store
        .flag_history(env, &key)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    if versions.is_empty() {
        return Err(ApiError::not_found(format!(
            "flag `{key}` has no history in environment `{env}`"
        )));
    }
    Ok(Json(VersionList { versions }))
}

#[utoipa::path(get, path = "/api/v1/flags/{key}/versions/{version}", tag = "flags",
    params(("key" = String, Path), ("version" = i64, Path), EnvQuery),
    responses((status = 200, body = VersionRecord), (status = 404, body = crate::error::ErrorBody)))]
pub async fn flag_version(
    State(state): Shared,
    _: Admin,
    ApiPath((key, version)): ApiPath<(String, i64)>,
    ApiQuery(q): ApiQuery<EnvQuery>,
) -> AppResult<Json<VersionRecord>> {
    let env = existing_environment(&state, &q)?;
    let v = state
        .store
        .flag_version(env, &key, version)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("flag `{key}` has no version {version}")))?;
    Ok(Json(v.into()))
}

#[utoipa::path(post, path = "/api/v1/flags/{key}/versions/{version}/restore", tag = "flags",
    params(("key" = String, Path), ("version" = i64, Path), EnvQuery),
    request_body(content = ReasonBody, description = "optional"),
    responses((status = 200, body = FlagRecord), (status = 404, body = crate::error::ErrorBody)))]
pub async fn restore_flag(
    State(state): Shared,
    Admin(who): Admin,
    ApiPath((key, version)): ApiPath<(String, i64)>,
    ApiQuery(q): ApiQuery<EnvQuery>,
    body: Bytes,
) -> AppResult<Json<FlagRecord>> {
    let env = existing_environment(&state, &q)?;
    let reason = optional_reason(&body, &q)?;
    state
        .store
        .restore_flag(env, &key, version, &who.name, reason.as_deref())
        .await?;
    refresh(&state, env).await;
    Ok(Json(stored_flag(&state, env, &key).await?.into()))
}

// ---------------------------------------------------------------- segments

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SegmentRecord {
    pub key: String,
    pub description: String,
    pub version: i64,
    pub updated_at: String,
    pub updated_by: String,
    #[schema(value_type = Object)]
    pub segment: SegmentSpec,
}

impl From<store::StoredSegment> for SegmentRecord {
    fn from(s: store::StoredSegment) -> Self {
        SegmentRecord {
            key: s.spec.key.clone(),
            description: s.spec.description.clone(),
            version: s.version,
            updated_at: rfc3339(s.updated_at_ms),
            updated_by: s.updated_by,
            segment: s.spec,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SegmentList {
    pub segments: Vec<SegmentRecord>,
}

#[utoipa::path(get, path = "/api/v1/segments", tag = "segments", params(EnvQuery), responses((status = 200, body = SegmentList)))]
pub async fn list_segments(
    State(state): Shared,
    _: Admin,
    ApiQuery(q): ApiQuery<EnvQuery>,
) -> AppResult<Json<SegmentList>> {
    let env = existing_environment(&state, &q)?;
    let segments = state
        .store
        .list_segments(env)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(SegmentList { segments }))
}

async fn stored_segment(state: &AppState, env: &str, key: &str) -> AppResult<store::StoredSegment> {
    state.store.get_segment(env, key).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "segment `{key}` was not found in environment `{env}`"
        ))
    })
}

#[utoipa::path(get, path = "/api/v1/segments/{key}", tag = "segments", params(("key" = String, Path), EnvQuery),
    responses((status = 200, body = SegmentRecord), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_segment(
    State(state): Shared,
    _: Admin,
    ApiPath(key): ApiPath<String>,
    ApiQuery(q): ApiQuery<EnvQuery>,
) -> AppResult<Json<SegmentRecord>> {
    let env = existing_environment(&state, &q)?;
    Ok(Json(stored_segment(&state, env, &key).await?.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentBody {
    #[schema(value_type = Object)]
    pub segment: SegmentSpec,
    pub reason: Option<String>,
}

#[utoipa::path(put, path = "/api/v1/segments/{key}", tag = "segments", params(("key" = String, Path), EnvQuery), request_body = SegmentBody,
    responses((status = 200, body = SegmentRecord), (status = 422, body = crate::error::ErrorBody)))]
pub async fn put_segment(
    State(state): Shared,
    Admin(who): Admin,
    ApiPath(key): ApiPath<String>,
    ApiQuery(q): ApiQuery<EnvQuery>,
    ApiJson(body): ApiJson<SegmentBody>,
) -> AppResult<Json<SegmentRecord>> {
    let env = existing_environment(&state, &q)?;
    if body.segment.key != key {
        return Err(ApiError::bad_request(format!(
            "the body's segment key `{}` differs from the path's `{key}`",
            body.segment.key
        )));
    }
    let reason = body.reason.or(q.reason.clone());
    commit(
        &state,
        env,
        vec![Change::UpsertSegment(body.segment)],
        &who.name,
        reason.as_deref(),
        false,
    )
    .await?;
    Ok(Json(stored_segment(&state, env, &key).await?.into()))
}

#[utoipa::path(delete, path = "/api/v1/segments/{key}", tag = "segments", params(("key" = String, Path), EnvQuery),
    responses((status = 200, body = Deleted), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub async fn delete_segment(
    State(state): Shared,
    Admin(who): Admin,
    ApiPath(key): ApiPath<String>,
    ApiQuery(q): ApiQuery<EnvQuery>,
) -> AppResult<Json<Deleted>> {
    let env = existing_environment(&state, &q)?;
    let report = commit(
        &state,
        env,
        vec![Change::DeleteSegment(key.clone())],
        &who.name,
        q.reason.as_deref(),
        false,
    )
    .await?;
    let version = report.changes.first().and_then(|c| c.version);
    Ok(Json(Deleted {
        deleted: key,
        version,
    }))
}

// ---------------------------------------------------------------- metrics

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricRecord {
    pub key: String,
    /// `ratio`, `proportion`, `mean`, `count`, `quantile`, `gauge`, `retention` or `uptime`.
    pub kind: String,
    pub description: String,
    pub higher_is_better: bool,
    pub version: i64,
    pub updated_at: String,
    pub updated_by: String,
    /// The metric as in the config file.
    #[schema(value_type = Object)]
    pub metric: MetricSpec,
}

impl From<store::StoredMetric> for MetricRecord {
    fn from(m: store::StoredMetric) -> Self {
        MetricRecord {
            key: m.spec.key.clone(),
            kind: m.spec.kind.to_string(),
            description: m.spec.description.clone(),
            higher_is_better: m.spec.higher_is_better,
            version: m.version,
            updated_at: rfc3339(m.updated_at_ms),
            updated_by: m.updated_by,
            metric: m.spec,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct MetricList {
    pub metrics: Vec<MetricRecord>,
}

#[utoipa::path(get, path = "/api/v1/metrics", tag = "metrics", params(EnvQuery), responses((status = 200, body = MetricList)))]
pub async fn list_metrics(
    State(state): Shared,
    _: Admin,
    ApiQuery(q): ApiQuery<EnvQuery>,
) -> AppResult<Json<MetricList>> {
    let env = existing_environment(&state, &q)?;
    let metrics = state
        .store
        .list_metrics(env)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(MetricList { metrics }))
}

#[utoipa::path(get, path = "/api/v1/metrics/{key}", tag = "metrics", params(("key" = String, Path), EnvQuery),
    responses((status = 200, body = MetricRecord), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_metric(
    State(state): Shared,
    _: Admin,
    ApiPath(key): ApiPath<String>,
    ApiQuery(q): ApiQuery<EnvQuery>,
) -> AppResult<Json<MetricRecord>> {
    let env = existing_environment(&state, &q)?;
    let metric = state.store.get_metric(env, &key).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "metric `{key}` was not found in environment `{env}`"
        ))
    })?;
    Ok(Json(metric.into()))
}

// ---------------------------------------------------------------- experiments

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentRecord {
    pub key: String,
    pub flag: String,
    pub description: String,
    pub version: i64,
    pub updated_at: String,
    pub updated_by: String,
    /// The experiment as in the config file.
    #[schema(value_type = Object)]
    pub experiment: ExperimentSpec,
}

impl From<store::StoredExperiment> for ExperimentRecord {
    fn from(e: store::StoredExperiment) -> Self {
        ExperimentRecord {
            key: e.spec.key.clone(),
            flag: e.spec.flag.clone(),
            description: e.spec.description.clone(),
            version: e.version,
            updated_at: rfc3339(e.updated_at_ms),
            updated_by: e.updated_by,
            experiment: e.spec,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ExperimentList {
    pub experiments: Vec<ExperimentRecord>,
}

#[utoipa::path(get, path = "/api/v1/experiments", tag = "experiments", params(EnvQuery), responses((status = 200, body = ExperimentList)))]
pub async fn list_experiments(
    State(state): Shared,
    _: Admin,
    ApiQuery(q): ApiQuery<EnvQuery>,
) -> AppResult<Json<ExperimentList>> {
    let env = existing_environment(&state, &q)?;
    let experiments = state
        .store
        .list_experiments(env)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(ExperimentList { experiments }))
}

#[utoipa::path(get, path = "/api/v1/experiments/{key}", tag = "experiments", params(("key" = String, Path), EnvQuery),
    responses((status = 200, body = ExperimentRecord), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_experiment(
    State(state): Shared,
    _: Admin,
    ApiPath(key): ApiPath<String>,
    ApiQuery(q): ApiQuery<EnvQuery>,
) -> AppResult<Json<ExperimentRecord>> {
    let env = existing_environment(&state, &q)?;
    let experiment = state
        .store
        .get_experiment(env, &key)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "experiment `{key}` was not found in environment `{env}`"
            ))
        })?;
    Ok(Json(experiment.into()))
}

#[utoipa::path(get, path = "/api/v1/experiments/{key}/results", tag = "experiments", params(("key" = String, Path), EnvQuery),
    responses((status = 200, description = "Per arm and metric: value, lift with CI, p-values (raw and adjusted), chance to beat control, sample sizes, the SRM verdict and warnings"),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn experiment_results(
    State(state): Shared,
    _: Admin,
    ApiPath(key): ApiPath<String>,
    ApiQuery(q): ApiQuery<EnvQuery>,
) -> AppResult<Json<ingest::experiment::ExperimentResults>> {
    let env = existing_environment(&state, &q)?;
    let experiment = state
        .store
        .get_experiment(env, &key)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "experiment `{key}` was not found in environment `{env}`"
            ))
        })?;
    match ingest::experiment::results(&state.store, env, &experiment.spec).await {
        Ok(results) => Ok(Json(results)),
        Err(ingest::experiment::ResultsError::Store(e)) => Err(e.into()),
        Err(ingest::experiment::ResultsError::Invalid(message)) => Err(ApiError::conflict(message)),
    }
}

// ---------------------------------------------------------------- apply / export

/// The file format of `rollgate apply`, as JSON.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigDocument {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub segments: Vec<SegmentSpec>,
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub flags: Vec<FlagSpec>,
    /// Metric definitions; left out of an export when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub metrics: Vec<MetricSpec>,
    /// Experiment definitions; left out of an export when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub experiments: Vec<ExperimentSpec>,
    /// Rollout plans, one per flag; left out of an export when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub rollouts: Vec<rollout::RolloutSpec>,
    /// Notification channels; their secrets are exported as `[redacted]`,
    /// which applied again keeps the stored secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub channels: Vec<store::ChannelSpec>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ApplyQuery {
    pub environment: Option<String>,
    /// Validate and report, but change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Also delete flags, segments, metrics, experiments and rollout plans the document does not name.
    #[serde(default)]
    pub prune: bool,
    pub reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ApplyResult {
    pub environment: String,
    pub revision: i64,
    pub dry_run: bool,
    pub changes: Vec<ChangeRecord>,
    /// What the change did differently from what it asked, and why (a
    /// running rollout keeps its split).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ChangeRecord {
    /// `flag`, `segment`, `metric`, `experiment` or `rollout`.
    pub kind: String,
    pub key: String,
    /// `created`, `updated`, `deleted` or `unchanged`.
    pub action: String,
    pub version: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/apply", tag = "config", params(ApplyQuery), request_body = ConfigDocument,
    responses((status = 200, body = ApplyResult), (status = 422, body = crate::error::ErrorBody)))]
pub async fn apply(
    State(state): Shared,
    Admin(who): Admin,
    ApiQuery(q): ApiQuery<ApplyQuery>,
    ApiJson(doc): ApiJson<ConfigDocument>,
) -> AppResult<Json<ApplyResult>> {
    let env = match (&q.environment, &doc.environment) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::bad_request(format!(
                "the document is for environment `{b}` but the request names `{a}`"
            )));
        }
        (Some(e), _) | (None, Some(e)) => e.clone(),
        (None, None) => DEFAULT_ENVIRONMENT.to_owned(),
    };
    flags::check_key(&env).map_err(|e| ApiError::bad_request(format!("environment key {e}")))?;
    if !state.has_environment(&env) {
        if q.dry_run {
            return Err(ApiError::not_found(format!(
                "environment `{env}` was not found"
            )));
        }
        // Config as code: a file that names a new environment creates it.
        match state.store.create_environment(&env, "", &who.name).await {
            Ok(_) | Err(store::StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut changes: Vec<Change> = Vec::new();
    if q.prune {
        let named_flags: std::collections::HashSet<&str> =
            doc.flags.iter().map(|f| f.key.as_str()).collect();
        let named_segments: std::collections::HashSet<&str> =
            doc.segments.iter().map(|s| s.key.as_str()).collect();
        for f in state.store.list_flags(&env).await? {
            if !named_flags.contains(f.spec.key.as_str()) {
                changes.push(Change::DeleteFlag(f.spec.key));
            }
        }
        for s in state.store.list_segments(&env).await? {
            if !named_segments.contains(s.spec.key.as_str()) {
                changes.push(Change::DeleteSegment(s.spec.key));
            }
        }
        let named_metrics: std::collections::HashSet<&str> =
            doc.metrics.iter().map(|m| m.key.as_str()).collect();
        for m in state.store.list_metrics(&env).await? {
            if !named_metrics.contains(m.spec.key.as_str()) {
                changes.push(Change::DeleteMetric(m.spec.key));
            }
        }
        let named_experiments: std::collections::HashSet<&str> =
            doc.experiments.iter().map(|e| e.key.as_str()).collect();
        for e in state.store.list_experiments(&env).await? {
            if !named_experiments.contains(e.spec.key.as_str()) {
                changes.push(Change::DeleteExperiment(e.spec.key));
            }
        }
        let named_rollouts: std::collections::HashSet<&str> =
            doc.rollouts.iter().map(|r| r.flag.as_str()).collect();
        for r in state.store.list_rollouts(&env).await? {
            if !named_rollouts.contains(r.spec.flag.as_str()) {
                changes.push(Change::DeleteRollout(r.spec.flag));
            }
        }
        let named_channels: std::collections::HashSet<&str> =
            doc.channels.iter().map(|c| c.key.as_str()).collect();
        for c in state.store.list_channels(&env).await? {
            if !named_channels.contains(c.spec.key.as_str()) {
                changes.push(Change::DeleteChannel(c.spec.key));
            }
        }
    }
    changes.extend(doc.segments.into_iter().map(Change::UpsertSegment));
    changes.extend(doc.flags.into_iter().map(Change::UpsertFlag));
    changes.extend(doc.metrics.into_iter().map(Change::UpsertMetric));
    changes.extend(doc.experiments.into_iter().map(Change::UpsertExperiment));
    changes.extend(doc.rollouts.into_iter().map(Change::UpsertRollout));
    if !doc.channels.is_empty() {
        // An exported channel comes back with its secret redacted: keep the
        // stored one.
        let stored = state.store.list_channels(&env).await?;
        changes.extend(doc.channels.into_iter().map(|mut channel| {
            if channel.secret == store::REDACTED_SECRET
                && let Some(current) = stored.iter().find(|c| c.spec.key == channel.key)
            {
                channel.secret = current.spec.secret.clone();
            }
            Change::UpsertChannel(channel)
        }));
    }
    let report = commit(
        &state,
        &env,
        changes,
        &who.name,
        q.reason.as_deref(),
        q.dry_run,
    )
    .await?;
    Ok(Json(ApplyResult {
        environment: env,
        revision: report.revision,
        dry_run: q.dry_run,
        changes: report
            .changes
            .into_iter()
            .map(|c| ChangeRecord {
                kind: c.kind.to_string(),
                key: c.key,
                action: c.action.to_string(),
                version: c.version,
            })
            .collect(),
        notes: report.notes,
    }))
}

#[utoipa::path(get, path = "/api/v1/export", tag = "config", params(EnvQuery), responses((status = 200, body = ConfigDocument)))]
pub async fn export(
    State(state): Shared,
    _: Admin,
    ApiQuery(q): ApiQuery<EnvQuery>,
) -> AppResult<Json<ConfigDocument>> {
    let env = existing_environment(&state, &q)?;
    let segments = state
        .store
        .list_segments(env)
        .await?
        .into_iter()
        .map(|s| s.spec)
        .collect();
    let flags = state
        .store
        .list_flags(env)
        .await?
        .into_iter()
        .map(|f| f.spec)
        .collect();
    let metrics = state.store.load_metrics(env).await?;
    let experiments = state
        .store
        .list_experiments(env)
        .await?
        .into_iter()
        .map(|e| e.spec)
        .collect();
    let rollouts = state
        .store
        .list_rollouts(env)
        .await?
        .into_iter()
        .map(|r| r.spec)
        .collect();
    let channels = state
        .store
        .list_channels(env)
        .await?
        .into_iter()
        .map(|c| c.spec.redacted())
        .collect();
    Ok(Json(ConfigDocument {
        environment: Some(env.to_owned()),
        segments,
        flags,
        metrics,
        experiments,
        rollouts,
        channels,
    }))
}

// ---------------------------------------------------------------- tokens

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    pub id: i64,
    pub name: String,
    /// `admin` or `client`.
    pub kind: String,
    pub environment: Option<String>,
    /// The last characters of the secret, to tell tokens apart.
    pub hint: String,
    pub created_at: String,
    pub created_by: String,
    pub revoked_at: Option<String>,
}

impl From<store::TokenRecord> for TokenRecord {
    fn from(t: store::TokenRecord) -> Self {
        TokenRecord {
            id: t.id,
            name: t.name,
            kind: t.kind.to_string(),
            environment: t.environment,
            hint: t.hint,
            created_at: rfc3339(t.created_at_ms),
            created_by: t.created_by,
            revoked_at: t.revoked_at_ms.map(rfc3339),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenRecord>,
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", responses((status = 200, body = TokenList)))]
pub async fn list_tokens(State(state): Shared, _: Admin) -> AppResult<Json<TokenList>> {
    let tokens = state
        .store
        .list_tokens()
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(TokenList { tokens }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub name: String,
    /// `admin` or `client`.
    pub kind: String,
    /// Required for client tokens; absent for admin tokens.
    pub environment: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    pub token: TokenRecord,
    /// Shown once; only its hash is stored.
    pub secret: String,
}

/// Longest token name.
const MAX_TOKEN_NAME_LEN: usize = 100;

#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 400, body = crate::error::ErrorBody)))]
pub async fn create_token(
    State(state): Shared,
    Admin(who): Admin,
    ApiJson(body): ApiJson<NewToken>,
) -> AppResult<(StatusCode, Json<CreatedToken>)> {
    let name = body.name.trim();
    if name.is_empty() || name.len() > MAX_TOKEN_NAME_LEN {
        return Err(ApiError::bad_request(format!(
            "token name must be 1 to {MAX_TOKEN_NAME_LEN} characters"
        )));
    }
    let kind = match body.kind.as_str() {
        "admin" => TokenKind::Admin,
        "client" => TokenKind::Client,
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown token kind `{other}`; use `admin` or `client`"
            )));
        }
    };
    match (kind, body.environment.as_deref()) {
        (TokenKind::Admin, Some(_)) => {
            return Err(ApiError::bad_request(
                "admin tokens work in every environment; omit `environment`",
            ));
        }
        (TokenKind::Client, None) => {
            return Err(ApiError::bad_request(
                "a client token needs an `environment`",
            ));
        }
        (TokenKind::Client, Some(env)) if !state.has_environment(env) => {
            return Err(ApiError::not_found(format!(
                "environment `{env}` was not found"
            )));
        }
        _ => {}
    }
    let (record, secret) = state
        .store
        .create_token(name, kind, body.environment.as_deref(), &who.name)
        .await?;
    if let Err(error) = state.reload_tokens().await {
        tracing::warn!(message = "Could not refresh the token cache.", %error);
    }
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: record.into(),
            secret,
        }),
    ))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens", params(("id" = i64, Path)),
    responses((status = 200, body = TokenRecord), (status = 404, body = crate::error::ErrorBody)))]
pub async fn revoke_token(
    State(state): Shared,
    Admin(who): Admin,
    ApiPath(id): ApiPath<i64>,
) -> AppResult<Json<TokenRecord>> {
    let record = state.store.revoke_token(id, &who.name).await?;
    if let Err(error) = state.reload_tokens().await {
        tracing::warn!(message = "Could not refresh the token cache.", %error);
    }
    Ok(Json(record.into()))
}

// ---------------------------------------------------------------- audit

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub environment: Option<String>,
    pub target_kind: Option<String>,
    pub target_key: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Entries older than this id (pagination).
    pub before: Option<i64>,
    /// At most this many entries (default 100, at most 1000).
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub environment: Option<String>,
    pub target_kind: String,
    pub target_key: String,
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
    pub reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditList {
    pub entries: Vec<AuditRecord>,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery), responses((status = 200, body = AuditList)))]
pub async fn list_audit(
    State(state): Shared,
    _: Admin,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> AppResult<Json<AuditList>> {
    if let Some(limit) = q.limit
        && !(1..=store::MAX_AUDIT_LIMIT).contains(&limit)
    {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {}",
            store::MAX_AUDIT_LIMIT
        )));
    }
    let filter = store::AuditFilter {
        environment: q.environment,
        target_kind: q.target_kind,
        target_key: q.target_key,
        actor: q.actor,
        action: q.action,
        before_id: q.before,
        limit: q.limit,
    };
    let entries = state
        .store
        .list_audit(filter)
        .await?
        .into_iter()
        .map(|e| AuditRecord {
            id: e.id,
            at: rfc3339(e.at_ms),
            actor: e.actor,
            action: e.action,
            environment: e.environment,
            target_kind: e.target_kind,
            target_key: e.target_key,
            before: e.before,
            after: e.after,
            reason: e.reason,
        })
        .collect();
    Ok(Json(AuditList { entries }))
}

/// Unknown routes: JSON 404 rather than an empty body.
pub async fn not_found() -> Response {
    ApiError::not_found("no such endpoint; see /openapi.json").into_response()
}
