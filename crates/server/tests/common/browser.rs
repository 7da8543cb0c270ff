//! A browser for the dashboard's in-process tests: no redirects followed,
//! one cookie (the session), forms posted URL-encoded, and the CSRF token
//! read from a page.

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};

use super::TestServer;

/// A browser without redirects and with one cookie jar slot: the session.
pub struct Browser<'a> {
    pub server: &'a TestServer,
    pub http: reqwest::Client,
    pub cookie: Option<String>,
}

pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub fn set_cookie(&self) -> Option<&str> {
        self.headers.get(SET_COOKIE).and_then(|v| v.to_str().ok())
    }

    /// The CSRF token of the first form on the page.
    pub fn csrf(&self) -> String {
        let start = self
            .text
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no CSRF field in {}", self.text))
            + "name=\"csrf\" value=\"".len();
        let end = start + self.text[start..].find('"').expect("end of value");
        self.text[start..end].to_owned()
    }
}

pub fn form_encode(fields: &[(&str, &str)]) -> String {
    fn encode(value: &str) -> String {
        value
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl<'a> Browser<'a> {
    pub fn new(server: &'a TestServer) -> Self {
        Browser {
            server,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            cookie: None,
        }
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Page {
        let request = match &self.cookie {
            Some(cookie) => request.header("cookie", cookie),
            None => request,
        };
        let response = request.send().await.expect("request reaches the server");
        Page {
            status: response.status(),
            headers: response.headers().clone(),
            text: response.text().await.expect("body"),
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        self.send(self.http.get(format!("{}{path}", self.server.url)))
            .await
    }

    pub fn post(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.server.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_encode(fields))
    }

    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.send(self.post(path, fields)).await
    }

    /// Signs in with `token`; it must work.
    pub async fn sign_in(&mut self, token: &str) {
        let page = self.post_form("/signin", &[("token", token)]).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
        assert_eq!(page.location(), "/");
        let cookie = page.set_cookie().expect("a session cookie");
        let pair = cookie.split(';').next().expect("name=value");
        self.cookie = Some(pair.to_owned());
    }

    /// A signed-in page's CSRF token (from its sign-out form).
    pub async fn csrf(&self) -> String {
        let page = self.get("/flags").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        page.csrf()
    }
}
