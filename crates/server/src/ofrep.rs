//! The OpenFeature Remote Evaluation Protocol (spec in `../shared/specs/ofrep/`,
//! mapping table in `docs/ofrep.md`).
//!
//! This is the hot path: it reads only the in-memory snapshot, never the store.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flags::{CompiledFlag, Context, ErrorCode, Evaluation, Reason};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::{self, AuthError, ENVIRONMENT_HEADER};
use crate::state::AppState;
use crate::telemetry::record_evaluation;

/// The body of both OFREP endpoints. `context` may be omitted (an empty
/// context); other fields are ignored for forward compatibility.
#[derive(Deserialize, Default)]
struct EvaluationRequest {
    #[serde(default)]
    context: Context,
}

/// An OFREP reason: the spec allows only these five.
pub fn ofrep_reason(reason: Reason) -> &'static str {
    match reason {
        Reason::Static => "STATIC",
        Reason::TargetingMatch => "TARGETING_MATCH",
        Reason::Split => "SPLIT",
        Reason::Disabled => "DISABLED",
        // OFREP has no DEFAULT; UNKNOWN is the honest choice and the precise
        // reason travels in `metadata.reason`.
        Reason::Default | Reason::Error => "UNKNOWN",
    }
}

/// An OFREP error code and HTTP status for an evaluation error.
pub fn ofrep_error(code: ErrorCode) -> (StatusCode, &'static str) {
    match code {
        ErrorCode::FlagNotFound => (StatusCode::NOT_FOUND, "FLAG_NOT_FOUND"),
        ErrorCode::TargetingKeyMissing => (StatusCode::BAD_REQUEST, "TARGETING_KEY_MISSING"),
        ErrorCode::ParseError => (StatusCode::BAD_REQUEST, "PARSE_ERROR"),
        // The server does not know the type the caller expects, so a type
        // mismatch cannot arise here; GENERAL is OFREP's catch-all.
        ErrorCode::TypeMismatch | ErrorCode::General => (StatusCode::BAD_REQUEST, "GENERAL"),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Success<'a> {
    key: &'a str,
    value: &'a Value,
    reason: &'static str,
    variant: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Metadata<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Metadata<'a> {
    /// Rollgate's own reason where OFREP has none (`DEFAULT`).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    /// The variant whose value an automatically selecting arm served.
    #[serde(skip_serializing_if = "Option::is_none")]
    selected_variant: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Failure<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    error_code: &'static str,
    error_details: &'a str,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Item<'a> {
    Success(Success<'a>),
    Failure(Failure<'a>),
}

fn item<'a>(key: &'a str, evaluation: &'a Evaluation<'a>) -> (StatusCode, Item<'a>) {
    match (&evaluation.error, evaluation.value, evaluation.variant) {
        (None, Some(value), Some(variant)) => {
            let reason = (evaluation.reason == Reason::Default).then(|| evaluation.reason.as_str());
            let metadata =
                (reason.is_some() || evaluation.selected.is_some()).then_some(Metadata {
                    reason,
                    selected_variant: evaluation.selected,
                });
            let success = Success {
                key,
                value,
                reason: ofrep_reason(evaluation.reason),
                variant,
                metadata,
            };
            (StatusCode::OK, Item::Success(success))
        }
        (Some(error), _, _) => {
            let (status, code) = ofrep_error(error.code);
            (
                status,
                Item::Failure(Failure {
                    key: Some(key),
                    error_code: code,
                    error_details: &error.message,
                }),
            )
        }
        _ => (
            StatusCode::BAD_REQUEST,
            Item::Failure(Failure {
                key: Some(key),
                error_code: "GENERAL",
                error_details: "evaluation produced no value",
            }),
        ),
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn failure(status: StatusCode, key: Option<&str>, code: &'static str, details: &str) -> Response {
    let body = serde_json::to_vec(&Failure {
        key,
        error_code: code,
        error_details: details,
    })
    .unwrap_or_default();
    json_response(status, body)
}

/// 401/403/413 and friends: OFREP's general error shape `{"errorDetails": …}`.
fn general_error(status: StatusCode, details: &str) -> Response {
    let body =
        serde_json::to_vec(&serde_json::json!({ "errorDetails": details })).unwrap_or_default();
    json_response(status, body)
}

/// Authenticates and parses a request; on failure, the OFREP response to send.
// The error is the response itself and is sent at once; boxing it would only
// add an allocation to every failed request.
#[allow(clippy::result_large_err)]
fn prepare(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    key: Option<&str>,
) -> Result<(String, Context), Response> {
    let principal = auth::authenticate(state, headers).map_err(|e| auth_error(&e))?;
    let requested = headers
        .get(ENVIRONMENT_HEADER)
        .and_then(|v| v.to_str().ok());
    let environment =
        auth::evaluation_environment(&principal, requested).map_err(|e| auth_error(&e))?;
    let body = body.map_err(|e| {
        let status = e.status();
        let details = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!(
                "the body is larger than the limit of {} bytes",
                crate::MAX_BODY_BYTES
            )
        } else {
            e.body_text()
        };
        general_error(status, &details)
    })?;
    let request: EvaluationRequest = if body.is_empty() {
        EvaluationRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            let code = if e.is_data() {
                "INVALID_CONTEXT"
            } else {
                "PARSE_ERROR"
            };
            failure(
                StatusCode::BAD_REQUEST,
                key,
                code,
                &format!("invalid request body: {e}"),
            )
        })?
    };
    Ok((environment, request.context))
}

fn auth_error(e: &AuthError) -> Response {
    match e {
        AuthError::Missing => general_error(
            StatusCode::UNAUTHORIZED,
            "missing token: send `Authorization: Bearer <token>` or `X-API-Key: <token>`",
        ),
        AuthError::Unknown => general_error(StatusCode::UNAUTHORIZED, "unknown or revoked token"),
        AuthError::Forbidden(message) => general_error(StatusCode::FORBIDDEN, message),
    }
}

pub async fn evaluate_flag(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (environment, context) = match prepare(&state, &headers, body, Some(&key)) {
        Ok(prepared) => prepared,
        Err(response) => return response,
    };
    let snapshot = state.snapshot(&environment);
    let evaluation = snapshot.flags.evaluate(&key, &context);
    let flag = snapshot.flags.get(&key);
    record_exposure(&state, &environment, flag, &evaluation, &context);
    let known = flag.map(|f| f.key());
    record_evaluation(
        &environment,
        known,
        evaluation.reason.as_str(),
        evaluation.error.as_ref().map(|e| e.code.as_str()),
    );
    let (status, item) = item(&key, &evaluation);
    match serde_json::to_vec(&item) {
        Ok(body) => json_response(status, body),
        Err(e) => general_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("could not encode the response: {e}"),
        ),
    }
}

/// Notes which variant the context's unit was served, so that a team that
/// only evaluates over OFREP still gets exposure data (see `ingest`).
fn record_exposure(
    state: &AppState,
    environment: &str,
    flag: Option<&CompiledFlag>,
    evaluation: &Evaluation<'_>,
    context: &Context,
) {
    if let (Some(flag), Some(unit), Some(variant), None) = (
        flag,
        context.targeting_key.as_deref(),
        evaluation.variant,
        &evaluation.error,
    ) && !unit.is_empty()
        && flag.record_exposures()
    {
        state
            .ingest
            .record_exposure(environment, flag.key(), variant, unit, crate::now_ms());
    }
}

#[derive(Serialize)]
struct Bulk<'a> {
    flags: Vec<Item<'a>>,
}

pub async fn evaluate_flags(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (environment, context) = match prepare(&state, &headers, body, None) {
        Ok(prepared) => prepared,
        Err(response) => return response.into_response(),
    };
    let snapshot = state.snapshot(&environment);
    let evaluations: Vec<(&CompiledFlag, Evaluation<'_>)> = snapshot
        .flags
        .iter()
        .map(|flag| (flag, flag.evaluate(&context)))
        .collect();
    for (flag, evaluation) in &evaluations {
        record_exposure(&state, &environment, Some(flag), evaluation, &context);
        let key = flag.key();
        record_evaluation(
            &environment,
            Some(key),
            evaluation.reason.as_str(),
            evaluation.error.as_ref().map(|e| e.code.as_str()),
        );
    }
    let bulk = Bulk {
        flags: evaluations
            .iter()
            .map(|(flag, evaluation)| item(flag.key(), evaluation).1)
            .collect(),
    };
    let body = match serde_json::to_vec(&bulk) {
        Ok(body) => body,
        Err(e) => {
            return general_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("could not encode the response: {e}"),
            );
        }
    };
    // The ETag is a digest of the response itself: it changes exactly when what
    // this context would be served changes.
    let etag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(&body));
    let etag_value = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0\""));
    if let Some(tags) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        && tags
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == etag || t == "*")
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response();
    }
    let mut response = json_response(StatusCode::OK, body);
    response.headers_mut().insert(header::ETAG, etag_value);
    response
}

/// OpenAPI description of the single-flag endpoint (the normative spec is OFREP's own).
#[utoipa::path(post, path = "/ofrep/v1/evaluate/flags/{key}", tag = "ofrep",
    params(("key" = String, Path, description = "flag key")),
    request_body(content = Object, description = "`{\"context\": {\"targetingKey\": \"…\", …}}`"),
    responses(
        (status = 200, description = "`{key, value, variant, reason}`"),
        (status = 400, description = "`{key, errorCode, errorDetails}`: INVALID_CONTEXT, PARSE_ERROR, TARGETING_KEY_MISSING, GENERAL"),
        (status = 401, description = "missing or unknown token"),
        (status = 403, description = "token not allowed in this environment"),
        (status = 404, description = "`{key, errorCode: FLAG_NOT_FOUND, errorDetails}`"),
    ))]
#[allow(dead_code)]
pub(crate) fn evaluate_flag_doc() {}

/// OpenAPI description of the bulk endpoint.
#[utoipa::path(post, path = "/ofrep/v1/evaluate/flags", tag = "ofrep",
    params(("If-None-Match" = Option<String>, Header, description = "ETag of an earlier response")),
    request_body(content = Object, description = "`{\"context\": {…}}`"),
    responses(
        (status = 200, description = "`{flags: [...]}` with an ETag header"),
        (status = 304, description = "nothing changed for this context"),
        (status = 400, description = "`{errorCode, errorDetails}`"),
        (status = 401, description = "missing or unknown token"),
    ))]
#[allow(dead_code)]
pub(crate) fn evaluate_flags_doc() {}
