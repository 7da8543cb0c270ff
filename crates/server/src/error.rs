//! Errors of the admin API and their JSON shape: `{"error": {"code", "message", "details"?}}`.
//!
//! Every way a request can be wrong maps to a 4xx with a stable `code` users can
//! search for. A 5xx is a bug, except `unavailable` (503 with Retry-After) while
//! the database cannot be reached.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Seconds a client should wait before retrying while the database is down.
pub const RETRY_AFTER_SECS: u32 = 2;
/// Seconds a sender should wait after a 429 (ingestion is behind).
pub const OVERLOAD_RETRY_AFTER_SECS: u32 = 1;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<Detail>,
}

/// One validation problem: which flag or segment, which field, what is wrong.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Detail {
    pub subject: String,
    pub field: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn validation(errors: &[flags::ValidationError]) -> Self {
        let message = match errors {
            [one] => one.to_string(),
            _ => format!(
                "{} problems; the first: {}",
                errors.len(),
                errors.first().map(|e| e.to_string()).unwrap_or_default()
            ),
        };
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "validation_failed",
            message,
            details: errors
                .iter()
                .map(|e| Detail {
                    subject: e.subject.clone(),
                    field: e.field.clone(),
                    message: e.message.clone(),
                })
                .collect(),
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorObject {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<Detail>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry = match self.status {
            StatusCode::SERVICE_UNAVAILABLE => Some(RETRY_AFTER_SECS),
            StatusCode::TOO_MANY_REQUESTS => Some(OVERLOAD_RETRY_AFTER_SECS),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorObject {
                code: self.code.to_owned(),
                message: self.message,
                details: self.details,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> Self {
        use store::StoreError as E;
        match e {
            E::NotFound { kind, key } => {
                ApiError::not_found(format!("{kind} `{key}` was not found"))
            }
            E::Conflict(message) => ApiError::conflict(message),
            E::Invalid(errors) => ApiError::validation(&errors),
            other => {
                tracing::error!(message = "Store request failed.", error = %other);
                ApiError::unavailable("the database is unavailable; retry shortly")
            }
        }
    }
}

/// Maps axum's JSON rejections onto our error shape, naming the problem.
pub fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with `Content-Type: application/json`",
        ),
        JsonRejection::JsonSyntaxError(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("malformed JSON: {}", source_text(&e)),
        ),
        JsonRejection::JsonDataError(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("invalid body: {}", source_text(&e)),
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the body is larger than the limit of {} bytes",
                    crate::MAX_BODY_BYTES
                ),
            )
        }
        other => ApiError::new(other.status(), "bad_request", other.body_text()),
    }
}

/// The innermost error message (serde's, with the path and line/column).
fn source_text(e: &dyn std::error::Error) -> String {
    let mut current: &dyn std::error::Error = e;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// `Json` with our error shape on rejection.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| ApiJson(v))
            .map_err(json_rejection)
    }
}

/// `Query` with our error shape on rejection.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| {
                ApiError::bad_request(format!("invalid query string: {}", source_text(&e)))
            })
    }
}

/// `Path` with our error shape on rejection.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e: PathRejection| {
                ApiError::bad_request(format!("invalid path: {}", e.body_text()))
            })
    }
}
