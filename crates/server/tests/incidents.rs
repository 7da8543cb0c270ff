//! Incidents end to end, with a real webhook receiver on loopback: a guard's
//! rollback opens an L2 incident whose alerts arrive in order at the
//! channels serving L2; nobody acknowledges it, so at the plan's
//! `escalate_after` (an injected time) it escalates to L3 and the L3 channel
//! hears of it; people then acknowledge, mitigate, note, publish and resolve
//! it through the API, each change on the timeline and announced. An
//! acknowledged incident does not escalate. Bad requests change nothing.

mod common;

use common::receiver::{self, Receiver};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use server::notify::DeliveryPolicy;

const SECRET: &str = "incident-secret";
const MINUTE_MS: i64 = 60_000;

fn config(hook: &Receiver) -> Value {
    let alerts = json!([
        "rollback",
        "incident_opened",
        "incident_updated",
        "incident_resolved"
    ]);
    json!({
        "flags": [{
            "key": "calc-model", "type": "string", "off_variant": "simple",
            "variants": {"simple": "simple", "advanced": "advanced"},
            "default": {"serve": {"variant": "simple"}}
        }],
        "metrics": [
            {"key": "error_rate", "kind": "ratio", "numerator": "calc_error",
             "denominator": "calc_request", "higher_is_better": false}
        ],
        "rollouts": [{
            "flag": "calc-model", "treatment": "advanced", "control": "simple",
            "escalate_after": "10m",
            "phases": [
                {"name": "beta", "percent": 30, "duration": "1h"},
                {"name": "everyone", "percent": 100, "duration": "1h"}
            ],
            "guards": [{"metric": "error_rate", "max": 0.02, "action": "rollback",
                        "min_samples": 100}]
        }],
        "channels": [
            {"key": "all", "url": format!("{}/all", hook.url), "format": "json",
             "secret": SECRET, "events": ["*"]},
            {"key": "l2", "url": format!("{}/l2", hook.url), "format": "slack",
             "secret": SECRET, "events": alerts, "levels": ["L2"]},
            {"key": "l3", "url": format!("{}/l3", hook.url), "format": "json",
             "secret": SECRET, "events": alerts, "levels": ["L3"]}
        ]
    })
}

/// A server whose deliveries are retried after 10 ms: tests never wait
/// seconds.
async fn start() -> common::TestServer {
    common::start_with(server::ServerConfig {
        delivery: DeliveryPolicy {
            backoff_base_ms: 10,
            poll_interval_ms: 20,
            ..DeliveryPolicy::default()
        },
        ..server::ServerConfig::default()
    })
    .await
}

/// Applies the config, starts the rollout and rolls it back with a planted
/// error regression; returns the one incident.
async fn rolled_back(server: &common::TestServer, hook: &Receiver) -> Value {
    let applied = server.apply(config(hook)).await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.text);
    let token = server.client_token("production").await;
    server.start_rollout("calc-model").await;
    server
        .plant_error_regression(&token, "calc-model", 1_000)
        .await;
    let listed = server
        .admin(Method::GET, "/api/v1/incidents?status=active", None)
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    let incidents = listed.body["incidents"].as_array().expect("incidents");
    assert_eq!(incidents.len(), 1, "{}", listed.text);
    incidents[0].clone()
}

async fn act(server: &common::TestServer, id: i64, action: &str, body: Value) -> common::Reply {
    server
        .admin(
            Method::POST,
            &format!("/api/v1/incidents/{id}/{action}"),
            Some(body),
        )
        .await
}

#[tokio::test]
async fn an_unacknowledged_incident_escalates_to_l3_and_people_resolve_it() {
    let hook = receiver::start(0).await;
    let server = start().await;
    let incident = rolled_back(&server, &hook).await;
    let id = incident["id"].as_i64().expect("id");
    assert_eq!(incident["level"], "L2");
    assert_eq!(incident["status"], "open");
    assert_eq!(incident["kind"], "guard_rollback");

    // The rollback's alerts arrive in order, signed, each naming the incident.
    let all = hook.wait_for_at("all", 3).await;
    let events: Vec<&str> = all.iter().map(|r| r.event()).collect();
    assert_eq!(events, ["phase_started", "rollback", "incident_opened"]);
    assert!(all.iter().all(|r| r.signed_with(SECRET)));
    assert_eq!(all[1].json()["incident"]["id"], id);
    assert_eq!(all[2].json()["incident"]["level"], "L2");
    let l2 = hook.wait_for_at("l2", 2).await;
    let events: Vec<&str> = l2.iter().map(|r| r.event()).collect();
    assert_eq!(events, ["rollback", "incident_opened"]);
    assert!(l2[0].json()["blocks"].is_array(), "slack format");

    // Its detail: the timeline and the links to the rollout and flag versions.
    let detail = server
        .admin(Method::GET, &format!("/api/v1/incidents/{id}"), None)
        .await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.text);
    assert_eq!(detail.body["timeline"][0]["action"], "opened");
    assert_eq!(detail.body["timeline"][0]["actor"], "controller");
    assert_eq!(
        detail.body["links"]["rollout"],
        "/api/v1/rollouts/calc-model?environment=production"
    );
    let before = detail.body["links"]["flagVersionBefore"]
        .as_i64()
        .expect("version before");
    let at = detail.body["links"]["flagVersionAt"]
        .as_i64()
        .expect("version at");
    assert!(at > before, "{}", detail.text);
    let version = server
        .admin(
            Method::GET,
            detail.body["links"]["flagVersion"].as_str().expect("link"),
            None,
        )
        .await;
    assert_eq!(version.status, StatusCode::OK, "{}", version.text);
    assert_eq!(detail.body["evidence"]["phase"], "beta");

    // Not yet due; then due: L3, announced to the L3 channel.
    let opened = server.state.store.incident(id).await.expect("incident");
    let state = &server.state;
    let t = opened.level_since_ms;
    assert!(
        server::incidents::escalate_due(state, t + 10 * MINUTE_MS - 1)
            .await
            .is_empty()
    );
    assert_eq!(
        server::incidents::escalate_due(state, t + 10 * MINUTE_MS).await,
        [id]
    );
    let l3 = hook.wait_for_at("l3", 1).await;
    assert_eq!(l3[0].event(), "incident_updated");
    assert!(l3[0].signed_with(SECRET));
    let body = l3[0].json();
    assert_eq!(body["level"], "L3");
    assert_eq!(body["incident"]["change"]["action"], "escalated");
    assert!(
        body["title"]
            .as_str()
            .expect("title")
            .contains("escalated to L3"),
        "{body}"
    );
    // L3 is the top: nothing more to escalate, however long it waits.
    assert!(
        server::incidents::escalate_due(state, t + 1_000 * MINUTE_MS)
            .await
            .is_empty()
    );
    let escalated = server
        .admin(Method::GET, &format!("/api/v1/incidents/{id}"), None)
        .await;
    assert_eq!(escalated.body["level"], "L3");
    let entry = &escalated.body["timeline"][1];
    assert_eq!(entry["action"], "escalated");
    assert_eq!(entry["text"], "not acknowledged within 10m at L2");
    assert_eq!(entry["detail"], json!({"from": "L2", "to": "L3"}));

    // People take it from here.
    let acked = act(&server, id, "ack", json!({"text": "looking"})).await;
    assert_eq!(acked.status, StatusCode::OK, "{}", acked.text);
    assert_eq!(acked.body["acknowledgedBy"], common::ADMIN_NAME);
    let twice = act(&server, id, "ack", json!({})).await;
    assert_eq!(twice.status, StatusCode::CONFLICT, "{}", twice.text);
    assert!(
        twice.text.contains("already acknowledged"),
        "{}",
        twice.text
    );
    let mitigated = act(
        &server,
        id,
        "status",
        json!({"status": "mitigated", "text": "control served to everyone"}),
    )
    .await;
    assert_eq!(mitigated.body["status"], "mitigated", "{}", mitigated.text);
    let noted = act(&server, id, "note", json!({"text": "cause: cache key"})).await;
    assert_eq!(noted.status, StatusCode::OK, "{}", noted.text);
    let published = act(
        &server,
        id,
        "publish",
        json!({"text": "Some calculations were slow"}),
    )
    .await;
    assert_eq!(published.body["publicText"], "Some calculations were slow");
    let resolved = act(
        &server,
        id,
        "resolve",
        json!({"resolution": "fixed in 2.4.1"}),
    )
    .await;
    assert_eq!(resolved.status, StatusCode::OK, "{}", resolved.text);
    assert_eq!(resolved.body["status"], "resolved");
    let actions: Vec<&str> = resolved.body["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|e| e["action"].as_str().expect("action"))
        .collect();
    assert_eq!(
        actions,
        [
            "opened",
            "escalated",
            "acknowledged",
            "status",
            "note",
            "published",
            "resolved"
        ]
    );
    // The L3 channel hears every change now; the L2 channel no more.
    let l3 = hook.wait_for_at("l3", 6).await;
    assert_eq!(l3[5].event(), "incident_resolved");
    assert_eq!(l3[5].json()["incident"]["status"], "resolved");
    assert_eq!(hook.at("l2").len(), 2, "{:?}", hook.at("l2"));
    let after = act(&server, id, "escalate", json!({})).await;
    assert_eq!(after.status, StatusCode::CONFLICT, "{}", after.text);

    let audit = server
        .admin(Method::GET, "/api/v1/audit?target_kind=incident", None)
        .await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.text);
    let audited: Vec<&str> = audit.body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["action"].as_str().expect("action"))
        .collect();
    assert!(audited.contains(&"incident.resolved"), "{audited:?}");
    assert!(audited.contains(&"incident.escalated"), "{audited:?}");
    server.stop().await;
}

#[tokio::test]
async fn an_acknowledged_incident_does_not_escalate() {
    let hook = receiver::start(0).await;
    let server = start().await;
    let incident = rolled_back(&server, &hook).await;
    let id = incident["id"].as_i64().expect("id");
    let acked = act(&server, id, "ack", json!({})).await;
    assert_eq!(acked.status, StatusCode::OK, "{}", acked.text);
    let later = server::now_ms() + 24 * 60 * MINUTE_MS;
    assert!(
        server::incidents::escalate_due(&server.state, later)
            .await
            .is_empty()
    );
    // A person may still escalate it.
    let up = act(&server, id, "escalate", json!({"text": "needs a core dev"})).await;
    assert_eq!(up.status, StatusCode::OK, "{}", up.text);
    assert_eq!(up.body["level"], "L3");
    server.stop().await;
}

#[tokio::test]
async fn bad_incident_requests_are_refused_and_change_nothing() {
    let hook = receiver::start(0).await;
    let server = start().await;
    let incident = rolled_back(&server, &hook).await;
    let id = incident["id"].as_i64().expect("id");
    let path = |action: &str| format!("/api/v1/incidents/{id}/{action}");
    let raw = |action: &str, body: &str| {
        server
            .http
            .post(format!("{}{}", server.url, path(action)))
            .bearer_auth(common::ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
    };
    for (action, body, status, needle) in [
        (
            "explode",
            "{}",
            StatusCode::NOT_FOUND,
            "unknown incident action",
        ),
        (
            "note",
            "{\"text\": 5}",
            StatusCode::BAD_REQUEST,
            "invalid body",
        ),
        (
            "note",
            "{\"txt\": \"x\"}",
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        ("note", "{", StatusCode::BAD_REQUEST, "invalid body"),
        ("note", "{}", StatusCode::BAD_REQUEST, "text is required"),
        (
            "status",
            "{\"status\": \"resolved\"}",
            StatusCode::BAD_REQUEST,
            "investigating or mitigated",
        ),
        (
            "resolve",
            "{}",
            StatusCode::BAD_REQUEST,
            "resolution is required",
        ),
        (
            "ack",
            "{\"resolution\": \"x\"}",
            StatusCode::BAD_REQUEST,
            "does not apply",
        ),
        ("unpublish", "{}", StatusCode::CONFLICT, "is not public"),
    ] {
        let reply = raw(action, body).await.expect("reply");
        let got = reply.status();
        let text = reply.text().await.expect("text");
        assert_eq!(got, status, "{action} {body}: {text}");
        assert!(text.contains(needle), "{action} {body}: {text}");
    }
    let long = json!({"text": "x".repeat(store::MAX_INCIDENT_TEXT + 1)});
    assert_eq!(
        act(&server, id, "note", long).await.status,
        StatusCode::BAD_REQUEST
    );
    for (query, status) in [
        ("/api/v1/incidents/999999", StatusCode::NOT_FOUND),
        ("/api/v1/incidents/abc", StatusCode::BAD_REQUEST),
        ("/api/v1/incidents?status=weird", StatusCode::BAD_REQUEST),
        ("/api/v1/incidents?level=L9", StatusCode::BAD_REQUEST),
        ("/api/v1/incidents?limit=0", StatusCode::BAD_REQUEST),
        (
            "/api/v1/incidents?environment=nowhere",
            StatusCode::NOT_FOUND,
        ),
        ("/api/v1/incidents?bogus=1", StatusCode::BAD_REQUEST),
    ] {
        let reply = server.admin(Method::GET, query, None).await;
        assert_eq!(reply.status, status, "{query}: {}", reply.text);
        assert!(reply.body["error"]["message"].is_string(), "{query}");
    }
    let missing = act(&server, 999_999, "ack", json!({})).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text);
    let unauthenticated = server
        .call(Method::POST, &path("ack"), None, Some(json!({})))
        .await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);

    // Nothing changed: only the opening entry.
    let detail = server
        .admin(Method::GET, &format!("/api/v1/incidents/{id}"), None)
        .await;
    assert_eq!(
        detail.body["timeline"].as_array().expect("timeline").len(),
        1
    );
    assert_eq!(detail.body["status"], "open");
    assert!(detail.body["acknowledgedBy"].is_null());
    server.stop().await;
}
