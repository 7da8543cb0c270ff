//! The HTML the server renders itself (the public `/status` page and the
//! dashboard): one page layout with a few lines of our own CSS, inline,
//! and no third-party assets.
//!
//! Pages are `maud` templates, compiled with the server. maud escapes every
//! interpolated value, so text from the store (descriptions, public incident
//! texts) is always shown as text, never as markup; nothing here uses
//! `PreEscaped` on anything but the constant stylesheet.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

/// The stylesheet of every page: system fonts, readable width, light and
/// dark colour schemes.
const CSS: &str = "\
:root{color-scheme:light dark;--fg:#1b1f24;--muted:#57606a;--line:#d0d7de;--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e}\
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#8d96a0;--line:#30363d;--ok:#3fb950;--warn:#d29922;--bad:#f85149}}\
body{font:16px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;color:var(--fg);max-width:52rem;margin:2rem auto;padding:0 1rem}\
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid var(--line)}\
h3{font-size:1.05rem}table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}\
.muted{color:var(--muted)}.ok{color:var(--ok)}.warn{color:var(--warn)}.bad{color:var(--bad)}\
code{font-size:.9em}footer{margin-top:3rem;font-size:.85rem}\
body{background:var(--bg)}:root{--bg:#ffffff;--accent:#0550ae}@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--accent:#79c0ff}}\
a{color:var(--accent)}:focus-visible{outline:3px solid var(--accent);outline-offset:2px}\
nav.top{display:flex;flex-wrap:wrap;gap:.5rem 1.25rem;align-items:center;border-bottom:1px solid var(--line);padding:.25rem 0 .5rem}\
nav.top .who{margin-left:auto}nav.top form{display:inline}\
label{display:block;font-weight:600;margin:.75rem 0 .25rem}label.check{display:flex;gap:.5rem;align-items:flex-start;font-weight:400}\
input,select,textarea,button{font:inherit;color:var(--fg)}\
input[type=text],input[type=password],input[type=search],select,textarea{box-sizing:border-box;width:100%;max-width:30rem;padding:.45rem;border:1px solid var(--muted);border-radius:4px;background:var(--bg)}\
button{margin-top:.75rem;padding:.45rem 1rem;min-height:2.5rem;border:1px solid var(--fg);border-radius:4px;background:var(--fg);color:var(--bg);cursor:pointer}\
button.link{margin:0;min-height:0;padding:0;border:0;background:none;color:var(--accent);text-decoration:underline}\
.notice{border-left:4px solid var(--line);padding:.5rem .75rem;margin:1rem 0}.notice.bad{border-color:var(--bad)}\
.scroll{overflow-x:auto}pre{overflow-x:auto;padding:.5rem;border:1px solid var(--line)}\
.filters{display:flex;flex-wrap:wrap;gap:0 1rem;align-items:flex-end}.filters>div{flex:1 1 12rem}\
@media (max-width:40rem){body{margin:1rem auto}th,td{padding:.3rem .25rem}}";

/// The Content-Security-Policy of server-rendered pages: nothing may load
/// or run but our inline stylesheet.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The Content-Security-Policy of the dashboard: as above, but its forms
/// may post to this server.
const DASHBOARD_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// A whole page: `title` in the head and as the heading, `body` below.
pub fn page(title: &str, body: Markup) -> Markup {
    page_with_nav(title, None, body)
}

/// A page of the signed-in dashboard: [`page`] with a navigation bar above
/// the heading.
pub fn page_with_nav(title: &str, nav: Option<Markup>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body {
                @if let Some(nav) = nav {
                    nav.top aria-label="Main" { (nav) }
                }
                h1 { (title) }
                (body)
                footer.muted { "Rollgate" }
            }
        }
    }
}

/// A date-time for people (`2026-01-05 09:00 UTC`) in a `<time>` element.
pub fn time(ms: i64) -> Markup {
    let at = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    html! {
        time datetime=(crate::admin::rfc3339(ms)) { (at.format("%Y-%m-%d %H:%M UTC").to_string()) }
    }
}

/// The page as a response, with headers that keep browsers from sniffing
/// it as something else or running anything in it.
pub fn respond(markup: Markup) -> Response {
    respond_with_policy(markup, CONTENT_SECURITY_POLICY)
}

/// A dashboard page as a response: [`respond`]'s headers, with forms
/// allowed to post back to this server, and `status`.
pub fn respond_dashboard(status: axum::http::StatusCode, markup: Markup) -> Response {
    let mut response = respond_with_policy(markup, DASHBOARD_CONTENT_SECURITY_POLICY);
    *response.status_mut() = status;
    response
}

fn respond_with_policy(markup: Markup, policy: &'static str) -> Response {
    let mut response = axum::response::Html(markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(policy),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolated_text_is_escaped() {
        let text = "<script>alert('x')</script> & \"q\"";
        let out = page(text, html! { p { (text) } }).into_string();
        assert!(!out.contains("<script>"), "{out}");
        assert!(
            out.contains("&lt;script&gt;alert('x')&lt;/script&gt; &amp; &quot;q&quot;"),
            "{out}"
        );
    }

    #[test]
    fn times_read_in_utc() {
        let out = time(1_700_000_000_000).into_string();
        assert!(out.contains("2023-11-14 22:13 UTC"), "{out}");
        assert!(
            out.contains("datetime=\"2023-11-14T22:13:20.000Z\""),
            "{out}"
        );
    }
}
