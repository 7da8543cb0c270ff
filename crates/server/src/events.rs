//! `POST /api/v1/events`: applications send exposures and tracked events.
//!
//! A 2xx means every event of the batch is committed; a batch is
//! all-or-nothing; `Idempotency-Key` makes a retried batch count once; a full
//! queue answers 429 with Retry-After rather than buffering without bound.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use ingest::{BatchError, SubmitError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth;
use crate::error::{ApiError, ApiQuery};
use crate::state::AppState;

/// Largest accepted events body (a full batch of 10,000 events fits).
pub const MAX_EVENTS_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 200;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// With an admin token: the environment (default `production`). A client
    /// token always writes to its own.
    pub environment: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct EventsAccepted {
    /// Events committed by this request (or, for a repeated idempotency key, by the first).
    pub accepted: usize,
    /// The stored batch.
    pub batch: i64,
    /// True when the `Idempotency-Key` was seen before and nothing new was stored.
    pub duplicate: bool,
}

#[utoipa::path(post, path = "/api/v1/events", tag = "events", params(EventsQuery),
    request_body(content = Object, description = "`{\"events\": [...]}`, or NDJSON with `Content-Type: application/x-ndjson`"),
    responses((status = 200, body = EventsAccepted), (status = 400, body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody)))]
pub async fn ingest(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<EventsAccepted>, ApiError> {
    let principal = auth::authenticate(&state, &headers)?;
    let environment = auth::evaluation_environment(&principal, q.environment.as_deref())?;
    if !state.has_environment(&environment) {
        return Err(ApiError::not_found(format!(
            "environment `{environment}` was not found"
        )));
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the body is larger than {MAX_EVENTS_BODY_BYTES} bytes; send smaller batches"
                ),
            )
        } else {
            ApiError::bad_request(e.body_text())
        }
    })?;
    let idempotency_key = idempotency_key(&headers)?;
    let ndjson = match content_type(&headers) {
        Some("application/json") => false,
        Some("application/x-ndjson") => true,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send `Content-Type: application/json` ({\"events\": [...]}) or `application/x-ndjson`",
            ));
        }
    };

    let snapshot = state.snapshot(&environment);
    let check = |flag: &str, variant: &str| match snapshot.flags.get(flag) {
        None => Err(format!(
            "flag `{flag}` does not exist in environment `{environment}`"
        )),
        Some(f) if !f.has_variant(variant) => Err(format!(
            "flag `{flag}` has no variant `{variant}`; its variants are {}",
            f.variant_names()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Some(_) => Ok(()),
    };
    let now = crate::now_ms();
    let parsed = if ndjson {
        ingest::parse_ndjson_batch(&body, now, &check)
    } else {
        ingest::parse_json_batch(&body, now, &check)
    };
    let events = parsed.map_err(|e| match e {
        BatchError::TooLarge(_) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            e.to_string(),
        ),
        other => ApiError::new(StatusCode::BAD_REQUEST, "invalid_event", other.to_string()),
    })?;

    let receipt = state
        .ingest
        .submit(&environment, idempotency_key, &events)
        .await
        .map_err(|e| match e {
            SubmitError::Overloaded => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", e.to_string())
            }
            SubmitError::Closed | SubmitError::Failed(_) => {
                tracing::error!(message = "An event batch was not stored.", error = %e);
                ApiError::unavailable("the events could not be stored; retry shortly")
            }
        })?;
    Ok(Json(EventsAccepted {
        accepted: receipt.accepted,
        batch: receipt.batch_id,
        duplicate: receipt.duplicate,
    }))
}

fn content_type(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or_default().trim())
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII"))?
        .trim();
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(ApiError::bad_request(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters"
        )));
    }
    Ok(Some(key.to_owned()))
}
