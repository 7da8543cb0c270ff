//! Signing in to the dashboard, the session cookie, and the CSRF check.
//!
//! A session is a signed cookie, not a row: `<token id>.<expires ms>.<nonce>.<mac>`,
//! where `mac` is HMAC-SHA256 under the server key `dashboard-session`
//! (made on first use and kept in the store, so every replica on one
//! database, and a restarted server, accept the same cookies). Each request
//! looks the token id up among the store's active tokens, so revoking the
//! token (on any replica) ends its sessions at once.
//!
//! The CSRF token of a session is another HMAC of the same payload, under a
//! different label: it is bound to the session, needs no storage, and a page
//! of another site can neither read nor compute it.

use std::sync::Arc;

use axum::Form;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use maud::html;
use serde::Deserialize;
use sha2::Sha256;
use store::{StoreError, TokenKind};

use super::{PageError, PageResult, see_other};
use crate::html;
use crate::state::AppState;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "rollgate_session";

/// How long a session lasts after signing in.
pub const SESSION_TTL_MS: i64 = 12 * 60 * 60 * 1000;

/// The name of the server key that signs sessions (`server_keys`).
const SESSION_KEY_NAME: &str = "dashboard-session";

/// Random bytes in each session, so two sign-ins never share a CSRF token.
const NONCE_BYTES: usize = 16;

/// A signed-in person: who, and the CSRF token their forms must carry.
#[derive(Clone, Debug)]
pub struct Session {
    pub token_id: i64,
    /// The token's name: the actor of every change made in this session.
    pub actor: String,
    pub csrf: String,
}

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8], label: &str, payload: &str) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(label.as_bytes());
    mac.update(b"\0");
    mac.update(payload.as_bytes());
    mac
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The cookie value of a new session of token `token_id`.
fn issue(key: &[u8], token_id: i64, now_ms: i64) -> String {
    let nonce: [u8; NONCE_BYTES] = rand::random();
    let payload = format!("{token_id}.{}.{}", now_ms + SESSION_TTL_MS, hex(&nonce));
    let tag = mac(key, "session", &payload).finalize().into_bytes();
    format!("{payload}.{}", hex(&tag))
}

/// The token id and CSRF token of a cookie value that is well signed and not
/// expired.
fn verify(key: &[u8], value: &str, now_ms: i64) -> Option<(i64, String)> {
    let (payload, tag) = value.rsplit_once('.')?;
    mac(key, "session", payload)
        .verify_slice(&unhex(tag)?)
        .ok()?;
    let mut parts = payload.split('.');
    let token_id: i64 = parts.next()?.parse().ok()?;
    let expires_ms: i64 = parts.next()?.parse().ok()?;
    if expires_ms <= now_ms {
        return None;
    }
    let csrf = hex(&mac(key, "csrf", payload).finalize().into_bytes());
    Some((token_id, csrf))
}

/// The value of cookie `name` in a request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// The session of a request: `None` without a valid cookie, or when its
/// token is revoked or no longer an admin token.
pub async fn session_of(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Session>, StoreError> {
    let Some(value) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let key = state.store.server_key(SESSION_KEY_NAME).await?;
    let Some((token_id, csrf)) = verify(&key, value, crate::now_ms()) else {
        return Ok(None);
    };
    let token = state
        .store
        .active_tokens()
        .await?
        .into_iter()
        .find(|t| t.record.id == token_id && t.record.kind == TokenKind::Admin);
    Ok(token.map(|t| Session {
        token_id,
        actor: t.record.name,
        csrf,
    }))
}

/// A page handler's signed-in person; without one, a redirect to `/signin`.
impl FromRequestParts<Arc<AppState>> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        match session_of(state, &parts.headers).await {
            Ok(Some(session)) => Ok(session),
            Ok(None) => Err(see_other("/signin")),
            Err(error) => Err(PageError::from(error).into_response()),
        }
    }
}

/// Whether a request may change something: it comes from a page of this
/// server (Origin, when the browser sends it, names this host; Sec-Fetch-Site
/// is not `cross-site`) and carries the session's CSRF token.
pub fn check_form(
    session: &Session,
    headers: &HeaderMap,
    csrf: Option<&str>,
) -> Result<(), PageError> {
    check_origin(headers)?;
    let given = csrf.unwrap_or_default().as_bytes();
    let expected = session.csrf.as_bytes();
    // Compared in constant time: the check does not tell how much matched.
    let same = given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return Err(PageError::forbidden(
            "This form is out of date or did not come from this dashboard (its security token \
             is missing or wrong); nothing was changed. Go back, reload the page and try again.",
        ));
    }
    Ok(())
}

/// Refuses a POST that a browser says comes from another site.
pub fn check_origin(headers: &HeaderMap) -> Result<(), PageError> {
    let cross =
        || PageError::forbidden("This request came from another site; nothing was changed.");
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return Err(cross());
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().map_err(|_| cross())?;
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .ok_or_else(cross)?;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(cross)?;
    if authority.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(cross())
    }
}

/// Whether the request reached us over https: through a proxy that ends TLS
/// and says so (`X-Forwarded-Proto: https`). The server itself speaks plain
/// http, usually on loopback, where a Secure cookie would never be sent back.
fn over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

fn session_cookie(value: &str, max_age_secs: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let cookie = format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    );
    // The value is ASCII (digits, dots, hex), so this cannot fail.
    HeaderValue::from_str(&cookie).expect("a session cookie is ASCII")
}

fn signin_page(status: StatusCode, error: Option<&str>) -> Response {
    let body = html! {
        @if let Some(error) = error {
            p.notice.bad role="alert" id="signin-error" { (error) }
        }
        form method="post" action="/signin" {
            label for="token" { "Admin token" }
            input type="password" id="token" name="token" required autocomplete="current-password"
                aria-describedby=[error.map(|_| "signin-error")];
            p.muted { "Create one with " code { "rollgate token create --kind admin" } "; the dashboard does not accept client tokens." }
            button type="submit" { "Sign in" }
        }
    };
    html::respond_dashboard(status, html::page("Sign in to Rollgate", body))
}

/// `GET /signin`: the form.
pub async fn signin_form() -> Response {
    signin_page(StatusCode::OK, None)
}

#[derive(Deserialize)]
pub struct SigninForm {
    #[serde(default)]
    token: String,
}

/// `POST /signin`: checks the token; an admin token gets a session cookie
/// and goes to `/`.
pub async fn signin(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<SigninForm>,
) -> PageResult {
    check_origin(&headers)?;
    let secret = form.token.trim();
    if secret.is_empty() {
        return Ok(signin_page(
            StatusCode::UNAUTHORIZED,
            Some("Enter an admin token."),
        ));
    }
    let hash = store::hash_token(secret);
    let token = state
        .store
        .active_tokens()
        .await?
        .into_iter()
        .find(|t| t.hash == hash);
    let token = match token {
        None => {
            return Ok(signin_page(
                StatusCode::UNAUTHORIZED,
                Some("That token is unknown or revoked."),
            ));
        }
        Some(t) if t.record.kind != TokenKind::Admin => {
            return Ok(signin_page(
                StatusCode::FORBIDDEN,
                Some("That is a client token; the dashboard needs an admin token."),
            ));
        }
        Some(t) => t,
    };
    let key = state.store.server_key(SESSION_KEY_NAME).await?;
    let value = issue(&key, token.record.id, crate::now_ms());
    let mut response = see_other("/");
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(&value, SESSION_TTL_MS / 1000, over_https(&headers)),
    );
    Ok(response)
}

#[derive(Deserialize)]
pub struct SignoutForm {
    csrf: Option<String>,
}

/// `POST /signout`: clears the cookie. The cookie's value stays valid until
/// it expires (sessions are not stored); revoking the token ends them all.
pub async fn signout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<SignoutForm>,
) -> PageResult {
    if let Some(session) = session_of(&state, &headers).await? {
        check_form(&session, &headers, form.csrf.as_deref())?;
    }
    let mut response = see_other("/signin");
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie("", 0, over_https(&headers)),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_session_verifies_until_it_expires() {
        let value = issue(KEY, 7, 1_000);
        let (id, csrf) = verify(KEY, &value, 2_000).expect("valid");
        assert_eq!(id, 7);
        assert_eq!(csrf.len(), 64);
        assert!(verify(KEY, &value, 1_000 + SESSION_TTL_MS).is_none());
    }

    #[test]
    fn a_changed_or_foreign_session_does_not_verify() {
        let value = issue(KEY, 7, 1_000);
        let forged = value.replacen('7', "8", 1);
        assert!(verify(KEY, &forged, 2_000).is_none());
        assert!(verify(b"another key", &value, 2_000).is_none());
        assert!(verify(KEY, "garbage", 2_000).is_none());
        assert!(verify(KEY, "", 2_000).is_none());
    }

    #[test]
    fn two_sessions_have_different_csrf_tokens() {
        let a = verify(KEY, &issue(KEY, 7, 1_000), 2_000).expect("valid");
        let b = verify(KEY, &issue(KEY, 7, 1_000), 2_000).expect("valid");
        assert_ne!(a.1, b.1);
    }

    #[test]
    fn origin_must_name_this_host() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(check_origin(&headers).is_ok(), "no Origin: allowed");
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(check_origin(&headers).is_ok());
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(check_origin(&headers).is_err());
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(check_origin(&headers).is_err());
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; rollgate_session=abc.def; b=2"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc.def"));
        assert_eq!(cookie(&headers, "c"), None);
    }
}
