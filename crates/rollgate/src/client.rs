//! A small JSON client for the server's HTTP API.
//!
//! Every failure becomes an error that says what to do next: start the
//! server, set the token, fix the file. Server errors of both shapes — the
//! admin API's `{"error": {code, message, details}}` and OFREP's
//! `{errorCode, errorDetails}` — are turned into a [`ServerError`].

use std::fmt;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

/// How long to wait for a connection before saying the server is unreachable.
const CONNECT_TIMEOUT_SECS: u64 = 5;

/// How long one request may take in all.
const REQUEST_TIMEOUT_SECS: u64 = 60;

/// Longest piece of an unexpected (non-JSON) body shown in an error.
const MAX_SHOWN_BODY_CHARS: usize = 200;

/// The header an admin token uses to choose the environment of an evaluation.
pub const ENVIRONMENT_HEADER: &str = "X-Rollgate-Environment";

/// Tells where the server is and who is asking.
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

/// A query parameter that is sent only when it has a value.
pub type Param<'a> = (&'a str, Option<&'a str>);

impl Client {
    /// Checks the server URL; nothing is sent yet.
    pub fn new(server: &str, token: Option<String>) -> anyhow::Result<Client> {
        let base = Url::parse(server).map_err(|e| {
            anyhow!("`{server}` is not a server URL ({e}); set --server or ROLLGATE_SERVER to e.g. http://127.0.0.1:8080")
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            bail!(
                "`{server}` is not a server URL; set --server or ROLLGATE_SERVER to e.g. http://127.0.0.1:8080"
            );
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(CONNECT_TIMEOUT_SECS))
            .timeout(Duration::from_secs(REQUEST_TIMEOUT_SECS))
            .user_agent(concat!("rollgate-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTP client")?;
        let token = token.filter(|t| !t.trim().is_empty());
        Ok(Client { http, base, token })
    }

    /// The URL of `segments` (each percent-encoded) below the server URL, with
    /// the parameters that have a value.
    fn url(&self, segments: &[&str], params: &[Param<'_>]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        let present: Vec<(&str, &str)> = params
            .iter()
            .filter_map(|(k, v)| v.map(|v| (*k, v)))
            .collect();
        if !present.is_empty() {
            url.query_pairs_mut().extend_pairs(present);
        }
        url
    }

    pub async fn get(&self, segments: &[&str], params: &[Param<'_>]) -> anyhow::Result<Value> {
        self.send(Method::GET, segments, params, None, None).await
    }

    pub async fn post(
        &self,
        segments: &[&str],
        params: &[Param<'_>],
        body: &Value,
    ) -> anyhow::Result<Value> {
        self.send(Method::POST, segments, params, Some(body), None)
            .await
    }

    pub async fn delete(&self, segments: &[&str], params: &[Param<'_>]) -> anyhow::Result<Value> {
        self.send(Method::DELETE, segments, params, None, None)
            .await
    }

    /// OFREP single-flag evaluation. `environment` goes in the header an admin
    /// token uses; a client token's own environment applies when it is `None`.
    pub async fn evaluate(
        &self,
        key: &str,
        environment: Option<&str>,
        context: &Value,
    ) -> anyhow::Result<Value> {
        let body = serde_json::json!({ "context": context });
        let segments = ["ofrep", "v1", "evaluate", "flags", key];
        self.send(Method::POST, &segments, &[], Some(&body), environment)
            .await
    }

    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        params: &[Param<'_>],
        body: Option<&Value>,
        environment: Option<&str>,
    ) -> anyhow::Result<Value> {
        let Some(token) = &self.token else {
            bail!(
                "no API token: pass --token or set ROLLGATE_TOKEN (an admin token, e.g. the server's ROLLGATE_ADMIN_TOKEN)"
            );
        };
        let url = self.url(segments, params);
        let mut request = self.http.request(method, url).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(environment) = environment {
            request = request.header(ENVIRONMENT_HEADER, environment);
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| self.unreachable(&e))?;
        let parsed: Option<Value> = serde_json::from_str(&text).ok();
        match parsed {
            Some(value) if status.is_success() => Ok(value),
            Some(value) => Err(ServerError::from_body(status, &value).into()),
            None => Err(anyhow!(
                "the server at {} answered HTTP {status} with a body that is not JSON ({}); is --server pointing at Rollgate?",
                self.base,
                shorten(&text)
            )),
        }
    }

    fn unreachable(&self, error: &reqwest::Error) -> anyhow::Error {
        let server = self.base.as_str().trim_end_matches('/');
        if error.is_timeout() {
            anyhow!(
                "the server at {server} did not answer in time; is it overloaded? check its log"
            )
        } else {
            anyhow!(
                "cannot reach the server at {server}: is `rollgate serve` running? set --server or ROLLGATE_SERVER ({})",
                innermost(error)
            )
        }
    }
}

/// The most specific cause of an error ("Connection refused"), as the outer
/// ones only repeat the URL.
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

fn shorten(text: &str) -> String {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return "empty".to_owned();
    }
    let mut shown: String = trimmed.chars().take(MAX_SHOWN_BODY_CHARS).collect();
    if shown.len() < trimmed.len() {
        shown.push('…');
    }
    format!("`{shown}`")
}

/// An error the server answered with.
#[derive(Debug)]
pub struct ServerError {
    pub status: StatusCode,
    /// The admin API's `code` (`validation_failed`) or OFREP's `errorCode` (`FLAG_NOT_FOUND`).
    pub code: Option<String>,
    pub message: String,
    pub details: Vec<Detail>,
}

/// One validation problem: which flag or segment, which field, what is wrong.
#[derive(Debug)]
pub struct Detail {
    pub subject: String,
    pub field: String,
    pub message: String,
}

impl ServerError {
    fn from_body(status: StatusCode, body: &Value) -> ServerError {
        let text = |v: &Value| v.as_str().map(str::to_owned);
        if let Some(error) = body.get("error") {
            let details = error
                .get("details")
                .and_then(Value::as_array)
                .map(|details| {
                    details
                        .iter()
                        .map(|d| Detail {
                            subject: d.get("subject").and_then(text).unwrap_or_default(),
                            field: d.get("field").and_then(text).unwrap_or_default(),
                            message: d.get("message").and_then(text).unwrap_or_default(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            return ServerError {
                status,
                code: error.get("code").and_then(text),
                message: error
                    .get("message")
                    .and_then(text)
                    .unwrap_or_else(|| error.to_string()),
                details,
            };
        }
        // OFREP: `{"key"?, "errorCode"?, "errorDetails"}`.
        ServerError {
            status,
            code: body.get("errorCode").and_then(text),
            message: body
                .get("errorDetails")
                .and_then(text)
                .unwrap_or_else(|| body.to_string()),
            details: Vec::new(),
        }
    }

    /// What the user can do about it, when the status says.
    fn hint(&self) -> Option<&'static str> {
        match self.status {
            StatusCode::UNAUTHORIZED => {
                Some("the server rejected the token; pass --token or set ROLLGATE_TOKEN")
            }
            StatusCode::FORBIDDEN => Some(
                "this token may not do that; pass an admin token with --token or ROLLGATE_TOKEN",
            ),
            StatusCode::SERVICE_UNAVAILABLE => {
                Some("the server cannot reach its database; retry shortly")
            }
            s if s.is_server_error() => Some("the server failed; its log says why"),
            _ => None,
        }
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (HTTP {}", self.message, self.status.as_u16())?;
        if let Some(code) = &self.code {
            write!(f, ", {code}")?;
        }
        f.write_str(")")?;
        // A single problem is already the message.
        let repeated = matches!(&self.details[..], [one] if self.message.contains(&one.message));
        if !repeated {
            for d in &self.details {
                match (d.subject.is_empty(), d.field.is_empty()) {
                    (false, false) => write!(f, "\n  {}: {}: {}", d.subject, d.field, d.message)?,
                    (false, true) => write!(f, "\n  {}: {}", d.subject, d.message)?,
                    _ => write!(f, "\n  {}", d.message)?,
                }
            }
        }
        if let Some(hint) = self.hint() {
            write!(f, "\n{hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ServerError {}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_are_percent_encoded_and_empty_params_left_out() {
        let client = Client::new("http://127.0.0.1:8080/", Some("t".into())).expect("valid URL");
        let url = client.url(
            &["api", "v1", "flags", "a/b c"],
            &[("environment", Some("staging")), ("q", None)],
        );
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8080/api/v1/flags/a%2Fb%20c?environment=staging"
        );
        let url = client.url(&["api", "v1", "flags"], &[("q", None)]);
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/api/v1/flags");
    }

    #[test]
    fn a_path_prefix_of_the_server_url_is_kept() {
        let client = Client::new("https://example.com/rollgate", None).expect("valid URL");
        let url = client.url(&["api", "v1", "export"], &[]);
        assert_eq!(url.as_str(), "https://example.com/rollgate/api/v1/export");
    }

    #[test]
    fn urls_without_a_scheme_are_refused() {
        for server in ["127.0.0.1:8080", "localhost:8080", "ftp://x", ""] {
            let error = Client::new(server, None)
                .err()
                .expect("refused")
                .to_string();
            assert!(error.contains("ROLLGATE_SERVER"), "{server}: {error}");
        }
    }

    #[test]
    fn validation_errors_list_every_detail() {
        let body = json!({"error": {"code": "validation_failed", "message": "2 problems; the first: a", "details": [
            {"subject": "flag `f`", "field": "rules[0].serve", "message": "a"},
            {"subject": "flag `f`", "field": "default.serve.split", "message": "weights sum to 90, not 100"},
        ]}});
        let error = ServerError::from_body(StatusCode::UNPROCESSABLE_ENTITY, &body).to_string();
        assert_eq!(
            error,
            "2 problems; the first: a (HTTP 422, validation_failed)\n  flag `f`: rules[0].serve: a\n  flag `f`: default.serve.split: weights sum to 90, not 100"
        );
    }

    #[test]
    fn ofrep_errors_and_auth_hints() {
        let body = json!({"errorDetails": "unknown or revoked token"});
        let error = ServerError::from_body(StatusCode::UNAUTHORIZED, &body).to_string();
        assert_eq!(
            error,
            "unknown or revoked token (HTTP 401)\nthe server rejected the token; pass --token or set ROLLGATE_TOKEN"
        );
        let body = json!({"key": "f", "errorCode": "FLAG_NOT_FOUND", "errorDetails": "flag `f` was not found"});
        let error = ServerError::from_body(StatusCode::NOT_FOUND, &body).to_string();
        assert_eq!(error, "flag `f` was not found (HTTP 404, FLAG_NOT_FOUND)");
    }
}
