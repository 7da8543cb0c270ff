//! Reports, the public status page and the scheduled digests, end to end: a
//! real server, real events (exposures and tracked events, some of them a
//! day old), a rollout that runs and one that a person rolls back with a
//! hostile reason, incidents published and kept private, and a webhook
//! receiver on loopback for the digests. The scheduler runs at an injected
//! time.

mod common;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use server::admin::rfc3339;
use server::schedule::{DAILY_DIGEST, Schedule, WEEKLY_REPORT, latest_scheduled_ms};

const SECRET: &str = "digest-secret";
const UNITS: usize = 200;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Hostile text where people write free text.
const HOSTILE_DESCRIPTION: &str =
    "New calc <script>alert(1)</script> **bold** [x](javascript:alert(2))\n# injected heading";
const HOSTILE_REASON: &str = "<img src=x onerror=alert(3)> [click](javascript:alert(4))";
const PUBLIC_TEXT: &str = "Search is slow <b>for some</b> users & we're on it";

fn config(channels: Value) -> Value {
    json!({
        "flags": [
            {"key": "calc-model", "type": "string", "off_variant": "simple",
             "variants": {"simple": "simple", "advanced": "advanced"},
             "default": {"serve": {"variant": "simple"}}},
            {"key": "legacy-search", "type": "boolean", "off_variant": "off",
             "variants": {"on": true, "off": false},
             "default": {"serve": {"variant": "off"}}}
        ],
        "metrics": [
            {"key": "error_rate", "kind": "ratio", "numerator": "calc_error",
             "denominator": "calc_request", "higher_is_better": false}
        ],
        "rollouts": [
            {"flag": "calc-model", "treatment": "advanced", "control": "simple",
             "description": HOSTILE_DESCRIPTION,
             "phases": [
                {"name": "beta", "percent": 30, "duration": "1h"},
                {"name": "everyone", "percent": 100, "duration": "1h"}
             ],
             "success": [{"metric": "error_rate", "max": 0.5, "min_samples": 10}],
             "guards": [{"metric": "error_rate", "max": 0.9, "action": "rollback", "min_samples": 10}]},
            {"flag": "legacy-search", "treatment": "on", "control": "off",
             "description": "Retire the old search",
             "phases": [{"name": "pilot", "percent": 10, "duration": "1d"}]}
        ],
        "channels": channels
    })
}

/// Events the test sends: one exposure per unit a day and a bit ago, five
/// requests per unit then and five now, errors at different rates.
struct Traffic {
    events: Vec<Value>,
    /// variant → (errors, requests) a day ago and now.
    yesterday: std::collections::BTreeMap<String, (f64, f64)>,
    today: std::collections::BTreeMap<String, (f64, f64)>,
}

fn traffic(now_ms: i64) -> Traffic {
    let then = rfc3339(now_ms - 30 * HOUR_MS);
    let now = rfc3339(now_ms);
    let mut t = Traffic {
        events: Vec::new(),
        yesterday: Default::default(),
        today: Default::default(),
    };
    for i in 0..UNITS {
        let unit = format!("user-{i}");
        let variant = if i % 2 == 0 { "advanced" } else { "simple" };
        t.events.push(
            json!({"kind": "exposure", "flag": "calc-model", "variant": variant,
                             "targetingKey": unit, "timestamp": then}),
        );
        for (at, errs, tally) in [
            (&then, i % 5 == 0, &mut t.yesterday),
            (&now, i % 3 == 0, &mut t.today),
        ] {
            let slot = tally.entry(variant.to_owned()).or_default();
            for k in 0..5 {
                t.events
                    .push(json!({"kind": "track", "name": "calc_request",
                                     "targetingKey": unit, "timestamp": at}));
                slot.1 += 1.0;
                if k == 0 && errs {
                    t.events.push(json!({"kind": "track", "name": "calc_error",
                                         "targetingKey": unit, "timestamp": at}));
                    slot.0 += 1.0;
                }
            }
        }
    }
    t
}

/// A server with both rollouts: `calc-model` running in `beta` with a day
/// of traffic, `legacy-search` rolled back twice by a person, its first
/// incident published.
async fn scenario(channels: Value) -> (common::TestServer, Traffic) {
    let server = common::start().await;
    let applied = server.apply(config(channels)).await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.text);
    server.start_rollout("calc-model").await;
    let token = server.client_token("production").await;
    let traffic = traffic(server::now_ms());
    server.send_events(&token, &traffic.events).await;
    server.fold_all().await;
    server::rollouts::step_all(&server.state).await;

    server.start_rollout("legacy-search").await;
    for again in [false, true] {
        if again {
            let restart = server
                .admin(Method::POST, "/api/v1/rollouts/legacy-search/restart", None)
                .await;
            assert_eq!(restart.status, StatusCode::OK, "{}", restart.text);
        }
        let rolled = server
            .admin(
                Method::POST,
                "/api/v1/rollouts/legacy-search/rollback",
                Some(json!({"reason": HOSTILE_REASON})),
            )
            .await;
        assert_eq!(rolled.status, StatusCode::OK, "{}", rolled.text);
    }
    let incidents = server
        .state
        .store
        .incidents(
            "production",
            &store::IncidentFilter {
                flag: Some("legacy-search".to_owned()),
                ..Default::default()
            },
        )
        .await
        .expect("incidents");
    assert_eq!(incidents.len(), 2, "{incidents:?}");
    // Newest first: publish the older one; the newer stays private.
    server
        .state
        .store
        .change_incident(
            incidents[1].id,
            &store::IncidentChange::Publish {
                text: PUBLIC_TEXT.to_owned(),
            },
            "tester",
            server::now_ms(),
            |_, _| Vec::new(),
        )
        .await
        .expect("publish");
    (server, traffic)
}

async fn report(server: &common::TestServer, kind: &str, flag: &str) -> Value {
    let reply = server
        .admin(Method::GET, &format!("/api/v1/reports/{kind}/{flag}"), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body
}

async fn markdown(server: &common::TestServer, kind: &str, flag: &str) -> String {
    let reply = server
        .admin(
            Method::GET,
            &format!("/api/v1/reports/{kind}/{flag}?format=markdown"),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(
        reply.headers[reqwest::header::CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .starts_with("text/markdown"),
        "{:?}",
        reply.headers
    );
    reply.text
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 1e-9)
}

/// No raw HTML or Markdown link from user text.
fn assert_inert(md: &str) {
    // Neither HTML, nor a link, nor emphasis, nor a heading of the user's.
    for raw in [
        "<script",
        "<img",
        "[click](",
        "[x](",
        "**bold**",
        "\n# injected",
    ] {
        assert!(!md.contains(raw), "`{raw}` in:\n{md}");
    }
    // Where the hostile text is, it is there escaped.
    if md.contains("click") {
        assert!(md.contains("\\[click\\]"), "{md}");
    }
    if md.contains("bold") {
        assert!(md.contains("\\*\\*bold\\*\\*"), "{md}");
    }
}

#[tokio::test]
async fn each_report_has_its_sections_and_values_and_escapes_user_text() {
    let (server, traffic) = scenario(json!([])).await;

    // The daily status.
    let status = report(&server, "status", "calc-model").await;
    assert_eq!(status["kind"], "status");
    assert_eq!(status["rollout"]["status"], "running", "{status}");
    assert_eq!(status["rollout"]["phase"], "beta");
    assert!(close(&status["rollout"]["percent"], 30.0));
    assert_eq!(status["rollout"]["description"], HOSTILE_DESCRIPTION);
    let checks = status["checks"].as_array().expect("checks");
    let gate = checks.iter().find(|c| c["check"] == "gate").expect("gate");
    let guard = checks
        .iter()
        .find(|c| c["check"] == "guard")
        .expect("guard");
    assert_eq!(gate["metric"], "error_rate");
    assert_eq!(gate["verdict"], "holds", "{gate}");
    assert_eq!(gate["limit"], "max 0.5");
    assert_eq!(guard["verdict"], "holds", "{guard}");
    assert_eq!(guard["action"], "rollback");
    // A guard on a maximum fires when its always-valid lower bound passes it.
    assert!(guard["lower"].is_number(), "{guard}");
    assert_eq!(guard["alwaysValid"], true);
    assert_eq!(status["incidents"], json!([]));
    let metrics = status["metrics"].as_array().expect("metrics");
    for (variant, (errors, requests)) in &traffic.today {
        let m = metrics
            .iter()
            .find(|m| m["metric"] == "error_rate" && m["variant"] == variant.as_str())
            .expect("metric line");
        let (y_errors, y_requests) = traffic.yesterday[variant];
        let (now, before) = (errors / requests, y_errors / y_requests);
        assert!(close(&m["current"], now), "{m}");
        assert!(close(&m["previous"], before), "{m}");
        assert!(close(&m["change"], now - before), "{m}");
        assert!(close(&m["relativeChange"], (now - before) / before), "{m}");
    }
    let md = markdown(&server, "status", "calc-model").await;
    for section in [
        "# Daily status: `calc-model` in `production`",
        "## Rollout",
        "- Phase: `beta` (1 of 2), 30%",
        "## Gates",
        "## Guards",
        "## Key metrics: change since yesterday",
        "## Incidents",
        "| `error_rate` | `advanced` |",
    ] {
        assert!(md.contains(section), "`{section}` missing:\n{md}");
    }
    assert!(md.contains("&lt;script&gt;alert(1)"), "{md}");
    assert_inert(&md);

    // The weekly report: the phase that started this week.
    let weekly = report(&server, "weekly", "calc-model").await;
    let happened = weekly["happenings"].as_array().expect("happenings");
    assert!(
        happened
            .iter()
            .any(|h| h["event"] == "phase_started" && h["phase"] == "beta"),
        "{weekly}"
    );
    let md = markdown(&server, "weekly", "calc-model").await;
    for section in [
        "# Weekly report",
        "## Key metrics: change since last week",
        "## What happened this week",
        "**phase `beta` started**",
    ] {
        assert!(md.contains(section), "`{section}` missing:\n{md}");
    }
    assert_inert(&md);

    // The review: gates hold, no guard fires, no incident: advance.
    let review = report(&server, "review", "calc-model").await;
    assert_eq!(review["decision"]["action"], "advance", "{review}");
    let md = markdown(&server, "review", "calc-model").await;
    assert!(md.contains("## Decision\n\n**Advance**"), "{md}");
    // Rolled back: the rollout has ended, nothing to decide.
    let review = report(&server, "review", "legacy-search").await;
    assert_eq!(review["decision"]["action"], "none", "{review}");
    assert_eq!(review["incidents"].as_array().map(Vec::len), Some(2));

    // Release notes: the plan, the versions with the person's reason, the incidents.
    let notes = report(&server, "release-notes", "legacy-search").await;
    assert_eq!(notes["phases"][0]["name"], "pilot");
    let happened = notes["happenings"].as_array().expect("happenings");
    assert!(
        happened.iter().any(|h| h["event"] == "incident_opened"),
        "{notes}"
    );
    assert!(
        happened
            .iter()
            .any(|h| h["event"] == "flag_version" && h["reason"] == HOSTILE_REASON),
        "{notes}"
    );
    assert!(
        happened.iter().any(|h| h["event"] == "plan_created"),
        "{notes}"
    );
    let md = markdown(&server, "release-notes", "legacy-search").await;
    for section in [
        "# Release notes: `legacy-search` in `production`",
        "## Plan",
        "| `pilot` | 10% | 1d |",
        "## What changed and when",
        "**incident opened**",
        "&lt;img src=x onerror=alert(3)&gt;",
    ] {
        assert!(md.contains(section), "`{section}` missing:\n{md}");
    }
    assert_inert(&md);
    if std::env::var_os("ROLLGATE_TEST_SHOW_REPORTS").is_some() {
        eprintln!("{md}\n{}", markdown(&server, "status", "calc-model").await);
    }
    server.stop().await;
}

#[tokio::test]
async fn bad_reports_are_refused_with_clear_errors() {
    let server = common::start().await;
    let applied = server.apply(config(json!([]))).await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.text);
    for (path, status, says) in [
        (
            "/api/v1/reports/monthly/calc-model",
            StatusCode::NOT_FOUND,
            "status, weekly, review, release-notes",
        ),
        (
            "/api/v1/reports/status/calc-model?format=pdf",
            StatusCode::BAD_REQUEST,
            "json or markdown",
        ),
        (
            "/api/v1/reports/status/nope",
            StatusCode::NOT_FOUND,
            "no rollout plan",
        ),
        (
            "/api/v1/reports/status/calc-model?environment=nowhere",
            StatusCode::NOT_FOUND,
            "nowhere",
        ),
        (
            "/api/v1/reports/status/calc-model?colour=red",
            StatusCode::BAD_REQUEST,
            "colour",
        ),
    ] {
        let reply = server.admin(Method::GET, path, None).await;
        assert_eq!(reply.status, status, "{path}: {}", reply.text);
        let message = reply.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{path}: {}", reply.text);
    }
    let anonymous = server
        .call(Method::GET, "/api/v1/reports/status/calc-model", None, None)
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let doc = server.call(Method::GET, "/openapi.json", None, None).await;
    assert!(doc.body["paths"]["/api/v1/reports/{kind}/{flag}"]["get"].is_object());
    assert!(doc.body["paths"]["/status.json"]["get"].is_object());
    server.stop().await;
}

#[tokio::test]
async fn the_status_page_shows_public_issues_and_rollouts_and_nothing_private() {
    let (server, _) = scenario(json!([])).await;
    let private = server
        .state
        .store
        .incidents(
            "production",
            &store::IncidentFilter {
                flag: Some("legacy-search".to_owned()),
                ..Default::default()
            },
        )
        .await
        .expect("incidents");
    let page = server.call(Method::GET, "/status", None, None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.headers[reqwest::header::CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );
    let html = page.text;
    assert!(
        html.contains("Search is slow &lt;b&gt;for some&lt;/b&gt; users &amp; we're on it"),
        "{html}"
    );
    assert!(!html.contains("<b>"), "{html}");
    assert!(
        html.contains("calc-model") && html.contains("beta") && html.contains("30%"),
        "{html}"
    );
    assert!(html.contains("New calc &lt;script&gt;"), "{html}");
    assert!(!html.contains("<script"), "{html}");
    // Nothing private: no incident titles, evidence, metrics, reasons or actors.
    for secret in [
        private[0].title.as_str(),
        private[1].title.as_str(),
        "error_rate",
        "onerror",
        "tester",
        common::ADMIN_NAME,
        common::ADMIN_TOKEN,
        "legacy-search",
    ] {
        assert!(!html.contains(secret), "`{secret}` on the page:\n{html}");
    }
    let json = server.call(Method::GET, "/status.json", None, None).await;
    assert_eq!(json.status, StatusCode::OK);
    let envs = json.body["environments"].as_array().expect("environments");
    assert_eq!(envs.len(), 1, "{}", json.text);
    assert_eq!(envs[0]["environment"], "production");
    assert_eq!(envs[0]["knownIssues"].as_array().map(Vec::len), Some(1));
    assert_eq!(envs[0]["knownIssues"][0]["text"], PUBLIC_TEXT);
    assert_eq!(envs[0]["knownIssues"][0]["status"], "open");
    assert_eq!(envs[0]["rollouts"][0]["flag"], "calc-model");
    assert_eq!(envs[0]["rollouts"][0]["phase"], "beta");
    for secret in ["error_rate", "evidence", "onerror", "tester", "level"] {
        assert!(!json.text.contains(secret), "`{secret}` in {}", json.text);
    }
    server.stop().await;
}

// ---------------------------------------------------------------- the schedule

#[tokio::test]
async fn digests_go_out_once_per_channel_and_scheduled_time_signed() {
    let hook = common::receiver::start(0).await;
    let url = hook.url_for("hook");
    let real_now = server::now_ms();
    // A digest time half a day away from the real clock, so that the
    // server's own scheduler never finds one due while the test runs; the
    // test's clock is a day and two hours ahead.
    let hour = (chrono::DateTime::from_timestamp_millis(real_now)
        .expect("now")
        .format("%H")
        .to_string()
        .parse::<u32>()
        .expect("hour")
        + 12)
        % 24;
    let digest_at = format!("{hour:02}:00");
    let now = real_now + DAY_MS + 2 * HOUR_MS;
    let utc: store::ChannelSpec = serde_json::from_value(json!({
        "key": "digest-json", "url": url, "format": "json", "secret": SECRET,
        "events": ["daily_digest", "weekly_report"], "digest_at": digest_at,
    }))
    .expect("channel");
    let daily_utc = latest_scheduled_ms(&Schedule::of(&utc).expect("schedule"), DAILY_DIGEST, now)
        .expect("a daily time");
    // The weekly report falls on the day of that digest.
    let weekday = chrono::DateTime::from_timestamp_millis(daily_utc)
        .expect("time")
        .format("%A")
        .to_string()
        .to_lowercase();
    let berlin = json!({
        "key": "digest-slack", "url": url, "format": "slack", "secret": SECRET,
        "events": ["daily_digest"], "digest_at": digest_at, "timezone": "Europe/Berlin",
    });
    let berlin_spec: store::ChannelSpec = serde_json::from_value(berlin.clone()).expect("channel");
    let daily_berlin = latest_scheduled_ms(
        &Schedule::of(&berlin_spec).expect("schedule"),
        DAILY_DIGEST,
        now,
    )
    .expect("a daily time");
    let channels = json!([
        {"key": "digest-json", "url": url, "format": "json", "secret": SECRET,
         "events": ["daily_digest", "weekly_report"], "digest_at": digest_at, "weekly_on": weekday},
        berlin,
    ]);
    let (server, _) = scenario(channels).await;

    let sent = server::schedule::run_due(&server.state, now)
        .await
        .expect("run");
    assert_eq!(sent, 3, "daily json, weekly json, daily slack");
    for again in [now, now + 60_000, now + 10 * 60_000] {
        let sent = server::schedule::run_due(&server.state, again)
            .await
            .expect("run");
        assert_eq!(sent, 0, "nothing new at {}", rfc3339(again));
    }
    let got = hook.wait_for_at("hook", 3).await;
    assert_eq!(got.len(), 3, "{got:?}");
    let mut daily_json = None;
    for r in &got {
        assert!(r.signed_with(SECRET));
        let body = r.json();
        let event = r.event();
        if body.get("blocks").is_some() {
            assert_eq!(event, DAILY_DIGEST);
            let text = body.to_string();
            assert!(text.contains("calc-model"), "{text}");
            assert!(text.contains(&rfc3339(daily_berlin)), "{text}");
        } else if event == DAILY_DIGEST {
            daily_json = Some(body);
        } else {
            assert_eq!(event, WEEKLY_REPORT);
            assert_eq!(body["event"], WEEKLY_REPORT);
            assert_eq!(body["at"], rfc3339(daily_utc));
            assert_eq!(body["report"]["rollouts"][0]["kind"], "weekly");
        }
    }
    let body = daily_json.expect("the json daily digest");
    assert_eq!(body["version"], 1);
    assert_eq!(body["environment"], "production");
    assert_eq!(body["at"], rfc3339(daily_utc));
    assert_eq!(
        body["title"],
        "Daily digest for production: 1 rollout in progress"
    );
    // Only the rollout in progress: calc-model, not the rolled-back legacy-search.
    let rollouts = body["report"]["rollouts"].as_array().expect("rollouts");
    assert_eq!(rollouts.len(), 1);
    assert_eq!(rollouts[0]["flag"], "calc-model");
    assert_eq!(rollouts[0]["rollout"]["phase"], "beta");
    let text = body["text"].as_str().expect("text");
    assert!(
        text.contains("## Daily status: `calc-model` in `production`"),
        "{text}"
    );
    assert_inert(text);

    // A day later: the daily digests again, not the weekly report.
    let sent = server::schedule::run_due(&server.state, now + DAY_MS)
        .await
        .expect("run");
    assert_eq!(sent, 2);
    hook.wait_for_at("hook", 5).await;
    let deliveries = server
        .admin(
            Method::GET,
            "/api/v1/deliveries?environment=production",
            None,
        )
        .await;
    let scheduled: Vec<(&str, &str)> = deliveries.body["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .filter_map(|d| Some((d["channel"].as_str()?, d["event"].as_str()?)))
        .filter(|(_, e)| *e == DAILY_DIGEST || *e == WEEKLY_REPORT)
        .collect();
    assert_eq!(scheduled.len(), 5, "{scheduled:?}");
    server.stop().await;
}
