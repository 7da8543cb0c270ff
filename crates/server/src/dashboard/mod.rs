//! The web dashboard: server-rendered pages under `/` for people signed in
//! with an admin token (`docs/dashboard.md`).
//!
//! `auth.rs` is sign-in, the session cookie and the CSRF check; `flags.rs`
//! the flag list, a flag's page, toggling and restoring versions. Every
//! change goes through the same store calls as the admin API, with the
//! signed-in token's name as the actor, so it is validated, versioned and
//! audited the same way.
//!
//! Invariant: every state-changing request is a POST whose form carries the
//! session's CSRF token, checked (with the Origin header) before anything
//! else is read; user text is only ever interpolated by maud, which escapes it.

pub mod auth;
mod flags;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use store::StoreError;

use crate::error::ApiError;
use crate::html;
use crate::state::AppState;

pub use auth::Session;

/// The dashboard's routes, merged into the server's router.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(flags::list))
        .route("/flags", get(flags::list))
        .route("/flags/{key}", get(flags::show))
        .route(
            "/flags/{key}/toggle",
            get(flags::confirm_toggle).post(flags::toggle),
        )
        .route("/flags/{key}/versions/{version}", get(flags::version))
        .route(
            "/flags/{key}/versions/{version}/restore",
            post(flags::restore),
        )
        .route("/signin", get(auth::signin_form).post(auth::signin))
        .route("/signout", post(auth::signout))
}

/// A signed-in page: the navigation bar (with the sign-out button, which
/// carries the CSRF token), `title` and `body`.
fn page(session: &Session, title: &str, body: Markup) -> Markup {
    let nav = html! {
        a href="/flags" { "Flags" }
        a href="/rollouts" { "Rollouts" }
        a href="/experiments" { "Experiments" }
        a href="/incidents" { "Incidents" }
        a href="/audit" { "Audit" }
        a href="/channels" { "Channels" }
        a href="/deliveries" { "Deliveries" }
        a href="/status" { "Public status" }
        span.who.muted { "Signed in as " strong { (session.actor) } }
        form method="post" action="/signout" {
            input type="hidden" name="csrf" value=(session.csrf);
            button.link type="submit" { "Sign out" }
        }
    };
    html::page_with_nav(title, Some(nav), body)
}

/// What a dashboard request can fail with: a status and a message for
/// people, shown on an error page.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub message: String,
}

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        PageError {
            status,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError::new(e.status, e.message)
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error").to_owned();
        let body = html! {
            p.notice.bad role="alert" { (self.message) }
            p { a href="/flags" { "Back to the flags" } }
        };
        let mut response = html::respond_dashboard(self.status, html::page(&title, body));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(crate::error::RETRY_AFTER_SECS),
            );
        }
        response
    }
}

type PageResult = Result<Response, PageError>;

/// A 303 to `location` (after a POST, so that reloading does not repeat it).
fn see_other(location: &str) -> Response {
    axum::response::Redirect::to(location).into_response()
}

/// Percent-encodes a path segment or query value.
fn encode(value: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_keeps_unreserved_characters_only() {
        assert_eq!(encode("calc-model_2.x~"), "calc-model_2.x~");
        assert_eq!(encode("a b/c?d&e"), "a%20b%2Fc%3Fd%26e");
    }
}
