//! `GET /api/v1/metrics/{key}/series`: a metric's per-variant values under a
//! flag, over time buckets (for charts) and in total across units.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use chrono::DateTime;
use ingest::fold::Resolution;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::admin::rfc3339;
use crate::auth::{Admin, DEFAULT_ENVIRONMENT};
use crate::error::{ApiError, ApiPath, ApiQuery};
use crate::state::AppState;

/// Most buckets one request may span.
pub const MAX_BUCKETS: i64 = 10_000;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SeriesQuery {
    pub environment: Option<String>,
    /// The flag whose variants are compared.
    pub flag: String,
    /// RFC 3339; default: 6 hours (1m), 7 days (1h) or 90 days (1d) before `to`.
    pub from: Option<String>,
    /// RFC 3339; default: the end of the current bucket.
    pub to: Option<String>,
    /// `1m`, `1h` (default) or `1d`.
    pub bucket: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeriesPoint {
    pub start: String,
    pub events: i64,
    pub x: f64,
    pub y: f64,
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// A variant's value across all units folded so far, with the moments the
/// statistics need.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeriesTotal {
    pub units: u64,
    pub conflicting_units: u64,
    pub events: i64,
    pub value: Option<f64>,
    pub sum_x: f64,
    pub sum_x2: f64,
    pub sum_y: f64,
    pub sum_y2: f64,
    pub sum_xy: f64,
}

#[derive(Serialize, ToSchema)]
pub struct VariantSeries {
    pub variant: String,
    pub total: SeriesTotal,
    pub points: Vec<SeriesPoint>,
}

#[derive(Serialize, ToSchema)]
pub struct SeriesResponse {
    pub metric: String,
    pub kind: String,
    pub flag: String,
    pub bucket: String,
    pub from: String,
    pub to: String,
    pub variants: Vec<VariantSeries>,
}

fn parse_time(field: &str, text: &str) -> Result<i64, ApiError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            ApiError::bad_request(format!(
                "`{field}` must be an RFC 3339 date-time, e.g. 2026-11-23T10:00:00Z: {e}"
            ))
        })
}

#[utoipa::path(get, path = "/api/v1/metrics/{key}/series", tag = "metrics", params(("key" = String, Path), SeriesQuery),
    responses((status = 200, body = SeriesResponse), (status = 404, body = crate::error::ErrorBody)))]
pub async fn series(
    State(state): State<Arc<AppState>>,
    _: Admin,
    ApiPath(key): ApiPath<String>,
    ApiQuery(q): ApiQuery<SeriesQuery>,
) -> Result<Json<SeriesResponse>, ApiError> {
    let environment = q.environment.as_deref().unwrap_or(DEFAULT_ENVIRONMENT);
    if !state.has_environment(environment) {
        return Err(ApiError::not_found(format!(
            "environment `{environment}` was not found"
        )));
    }
    let stored = state
        .store
        .get_metric(environment, &key)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "metric `{key}` was not found in environment `{environment}`"
            ))
        })?;
    let metric = stats::compile_metrics(std::slice::from_ref(&stored.spec))
        .ok()
        .and_then(|m| m.into_iter().next())
        .ok_or_else(|| {
            ApiError::conflict(format!(
                "stored metric `{key}` does not compile; apply it again"
            ))
        })?;
    if state.snapshot(environment).flags.get(&q.flag).is_none() {
        return Err(ApiError::not_found(format!(
            "flag `{}` was not found in environment `{environment}`",
            q.flag
        )));
    }
    let resolution = match q.bucket.as_deref() {
        None => Resolution::Hour,
        Some(text) => Resolution::parse(text).ok_or_else(|| {
            ApiError::bad_request(format!("bucket `{text}` is unknown; use 1m, 1h or 1d"))
        })?,
    };
    let width = resolution.width_ms();
    let to = match &q.to {
        Some(text) => parse_time("to", text)?,
        None => resolution.start(crate::now_ms()) + width,
    };
    let from = match &q.from {
        Some(text) => parse_time("from", text)?,
        None => {
            to - width
                * match resolution {
                    Resolution::Minute => 6 * 60,
                    Resolution::Hour => 7 * 24,
                    Resolution::Day => 90,
                }
        }
    };
    if from >= to {
        return Err(ApiError::bad_request("`from` must be before `to`"));
    }
    if (to - from) / width > MAX_BUCKETS {
        return Err(ApiError::bad_request(format!(
            "the range spans more than {MAX_BUCKETS} buckets of {}; use a coarser bucket or a shorter range",
            resolution.as_str()
        )));
    }
    let series = ingest::report::series(
        &state.store,
        environment,
        &metric,
        &q.flag,
        resolution,
        from,
        to,
    )
    .await?;
    Ok(Json(SeriesResponse {
        metric: key,
        kind: metric.kind.name().as_str().to_owned(),
        flag: q.flag,
        bucket: resolution.as_str().to_owned(),
        from: rfc3339(from),
        to: rfc3339(to),
        variants: series
            .variants
            .into_iter()
            .map(|v| VariantSeries {
                variant: v.variant,
                total: SeriesTotal {
                    units: v.total.units,
                    conflicting_units: v.total.conflicting,
                    events: v.total.events,
                    value: v.total.value,
                    sum_x: v.total.moments.sum_x,
                    sum_x2: v.total.moments.sum_x2,
                    sum_y: v.total.moments.sum_y,
                    sum_y2: v.total.moments.sum_y2,
                    sum_xy: v.total.moments.sum_xy,
                },
                points: v
                    .points
                    .into_iter()
                    .map(|p| SeriesPoint {
                        start: rfc3339(p.start_ms),
                        events: p.events,
                        x: p.x,
                        y: p.y,
                        value: p.value,
                        max: p.max,
                    })
                    .collect(),
            })
            .collect(),
    }))
}
