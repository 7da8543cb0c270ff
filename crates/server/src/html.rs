//! The HTML the server renders itself (the public `/status` page now, the
//! dashboard later): one page layout with a few lines of our own CSS, inline,
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
code{font-size:.9em}footer{margin-top:3rem;font-size:.85rem}";

/// The Content-Security-Policy of server-rendered pages: nothing may load
/// or run but our inline stylesheet.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A whole page: `title` in the head and as the heading, `body` below.
pub fn page(title: &str, body: Markup) -> Markup {
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
    let mut response = axum::response::Html(markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
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
