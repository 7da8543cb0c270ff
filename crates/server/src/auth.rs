//! Tokens on the wire: `Authorization: Bearer <token>` (or OFREP's `X-API-Key`).
//! Missing or unknown token → 401; a token of the wrong kind or environment → 403.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use store::TokenKind;

use crate::error::ApiError;
use crate::state::{AppState, Principal};

/// The environment used when a request names none.
pub const DEFAULT_ENVIRONMENT: &str = "production";

/// Header an admin token may use to pick the environment of an OFREP request.
pub const ENVIRONMENT_HEADER: &str = "x-rollgate-environment";

/// The token secret of a request, if it carries one.
pub fn token_secret(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let mut parts = value.splitn(2, ' ');
        let scheme = parts.next().unwrap_or_default();
        if scheme.eq_ignore_ascii_case("bearer") {
            return parts.next().map(str::trim).filter(|s| !s.is_empty());
        }
        return None;
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

#[derive(Debug)]
pub enum AuthError {
    Missing,
    Unknown,
    Forbidden(String),
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing => ApiError::unauthorized(
                "missing token: send `Authorization: Bearer <token>` (create one with `rollgate token create`)",
            ),
            AuthError::Unknown => ApiError::unauthorized("unknown or revoked token"),
            AuthError::Forbidden(message) => ApiError::forbidden(message),
        }
    }
}

pub fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Arc<Principal>, AuthError> {
    let secret = token_secret(headers).ok_or(AuthError::Missing)?;
    state.principal(secret).ok_or(AuthError::Unknown)
}

/// The environment an evaluation request works in: a client token's own, or,
/// for an admin token, the one it asks for.
pub fn evaluation_environment(
    principal: &Principal,
    requested: Option<&str>,
) -> Result<String, AuthError> {
    match (principal.kind, &principal.environment) {
        (TokenKind::Client, Some(own)) => match requested {
            Some(other) if other != own => Err(AuthError::Forbidden(format!(
                "this client token belongs to environment `{own}`, not `{other}`"
            ))),
            _ => Ok(own.clone()),
        },
        (TokenKind::Client, None) => Err(AuthError::Forbidden(
            "this client token has no environment".into(),
        )),
        (TokenKind::Admin, _) => Ok(requested.unwrap_or(DEFAULT_ENVIRONMENT).to_owned()),
    }
}

/// An authenticated admin. Client tokens get 403.
pub struct Admin(pub Arc<Principal>);

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let principal = authenticate(state, &parts.headers)?;
        if principal.kind != TokenKind::Admin {
            return Err(ApiError::forbidden(
                "this endpoint needs an admin token; client tokens can only evaluate flags and send events",
            ));
        }
        Ok(Admin(principal))
    }
}
