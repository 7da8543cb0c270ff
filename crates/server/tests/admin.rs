//! The admin API over a real socket: config as code, versions, tokens, audit,
//! and every kind of bad input getting a 4xx that names the problem.

mod common;

use common::{ADMIN_TOKEN, start, typed_flags};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn quickstart() -> Value {
    json!({
        "environment": "production",
        "segments": [{"key": "power-users", "conditions": [{"attribute": "plan", "op": "in", "values": ["pro", "enterprise"]}]}],
        "flags": [{
            "key": "calc-model", "type": "string", "description": "Which calculation model serves a request",
            "enabled": true, "off_variant": "simple", "variants": {"simple": "simple", "advanced": "advanced"},
            "rules": [
                {"name": "internal testers", "conditions": [{"attribute": "email", "op": "ends_with", "values": ["@example.com"]}], "serve": {"variant": "advanced"}},
                {"conditions": [{"segment": "power-users"}], "serve": {"split": {"advanced": 5, "simple": 95}}}
            ],
            "default": {"serve": {"variant": "simple"}}
        }]
    })
}

fn actions(reply: &common::Reply) -> Vec<String> {
    reply.body["changes"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    format!(
                        "{} {} {}",
                        c["kind"].as_str().unwrap_or(""),
                        c["key"].as_str().unwrap_or(""),
                        c["action"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn apply_is_idempotent_and_export_round_trips() {
    let server = start().await;
    let first = server.apply(quickstart()).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(
        actions(&first),
        ["segment power-users created", "flag calc-model created"]
    );
    let again = server.apply(quickstart()).await;
    assert_eq!(
        actions(&again),
        ["segment power-users unchanged", "flag calc-model unchanged"]
    );
    assert_eq!(again.body["revision"], first.body["revision"]);

    let exported = server.admin(Method::GET, "/api/v1/export", None).await;
    assert_eq!(exported.status, StatusCode::OK);
    let round = server.apply(exported.body.clone()).await;
    assert_eq!(
        actions(&round),
        ["segment power-users unchanged", "flag calc-model unchanged"]
    );
    let history = server
        .admin(Method::GET, "/api/v1/flags/calc-model/versions", None)
        .await;
    assert_eq!(history.body["versions"].as_array().map(Vec::len), Some(1));
    server.stop().await;
}

/// A bad document is rejected whole with 422 naming flag, field and problem; nothing changes.
async fn check_rejected(server: &common::TestServer, doc: Value, field: &str, message: &str) {
    let before = server.admin(Method::GET, "/api/v1/export", None).await.body;
    let reply = server.apply(doc).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert_eq!(reply.body["error"]["code"], "validation_failed");
    let details = reply.body["error"]["details"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        details.iter().any(|d| d["subject"] == "flag `calc-model`"
            && d["field"] == field
            && d["message"].as_str().unwrap_or_default().contains(message)),
        "expected {field}: {message} in {}",
        reply.text
    );
    assert_eq!(
        server.admin(Method::GET, "/api/v1/export", None).await.body,
        before,
        "nothing changed"
    );
}

#[tokio::test]
async fn bad_documents_change_nothing() {
    let server = start().await;
    server.apply(quickstart()).await;
    let mut doc = quickstart();
    doc["flags"][0]["rules"][0]["serve"]["variant"] = json!("turbo");
    // Another good flag in the same document must not be created either.
    doc["flags"].as_array_mut().unwrap().push(json!({"key": "other", "type": "boolean", "off_variant": "off", "variants": {"off": false}, "default": {"serve": {"variant": "off"}}}));
    check_rejected(
        &server,
        doc,
        "rules[0].serve.variant",
        "unknown variant `turbo`",
    )
    .await;

    let mut doc = quickstart();
    doc["flags"][0]["rules"][0]["conditions"][0] =
        json!({"attribute": "email", "op": "regex", "values": ["(unclosed"]});
    check_rejected(&server, doc, "rules[0].conditions[0].values", "bad regex").await;

    let mut doc = quickstart();
    doc["flags"][0]["rules"][1]["serve"]["split"] = json!({"advanced": 5, "simple": 90});
    check_rejected(&server, doc, "rules[1].serve.split", "sum to 95, not 100").await;

    let mut doc = quickstart();
    doc["flags"][0]["rules"][1]["conditions"][0] = json!({"segment": "ghosts"});
    check_rejected(
        &server,
        doc,
        "rules[1].conditions[0].segment",
        "unknown segment `ghosts`",
    )
    .await;

    let mut doc = quickstart();
    doc["flags"][0]["variants"]["advanced"] = json!(42);
    check_rejected(
        &server,
        doc,
        "variants.advanced",
        "not of the flag's type string",
    )
    .await;

    // Unknown keys and wrong types are 400s that name the field.
    let mut doc = quickstart();
    doc["flags"][0]["colour"] = json!("blue");
    let reply = server.apply(doc).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{}",
        reply.text
    );
    let mut doc = quickstart();
    doc["flags"][0]["enabled"] = json!("yes");
    let reply = server.apply(doc).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"]["code"], "invalid_json");

    let raw = server
        .http
        .post(format!("{}/api/v1/apply", server.url))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("{\"flags\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    let body: Value = raw.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json");

    let raw = server
        .http
        .post(format!("{}/api/v1/apply", server.url))
        .bearer_auth(ADMIN_TOKEN)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let huge = json!({"flags": [], "segments": [{"key": "big", "description": "x".repeat(2 * 1024 * 1024), "conditions": []}]});
    let reply = server.apply(huge).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.body["error"]["code"], "payload_too_large");

    let reply = server.admin(Method::GET, "/api/v1/flags/nope", None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.body["error"]["code"], "not_found");
    let reply = server
        .admin(Method::GET, "/api/v1/no-such-thing", None)
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = server.admin(Method::PATCH, "/api/v1/flags", None).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    let reply = server
        .admin(Method::GET, "/api/v1/flags/calc-model/versions/abc", None)
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = server
        .admin(Method::GET, "/api/v1/flags?environment=mars", None)
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = server
        .admin(Method::GET, "/api/v1/audit?limit=0", None)
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    server.stop().await;
}

#[tokio::test]
async fn versions_restore_and_audit() {
    let server = start().await;
    server.apply(quickstart()).await;
    let reply = server
        .admin(
            Method::POST,
            "/api/v1/flags/calc-model/disable",
            Some(json!({"reason": "error spike"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        (reply.body["enabled"].clone(), reply.body["version"].clone()),
        (json!(false), json!(2))
    );
    assert_eq!(
        server
            .eval(ADMIN_TOKEN, "calc-model", json!({"targetingKey": "u"}))
            .await
            .body["reason"],
        "DISABLED"
    );
    // Disabling again changes nothing.
    let reply = server
        .admin(Method::POST, "/api/v1/flags/calc-model/disable", None)
        .await;
    assert_eq!(reply.body["version"], 2);

    let history = server
        .admin(Method::GET, "/api/v1/flags/calc-model/versions", None)
        .await;
    let versions = history.body["versions"].as_array().unwrap().clone();
    assert_eq!(versions.len(), 2);
    assert_eq!(
        (
            versions[0]["version"].clone(),
            versions[0]["reason"].clone(),
            versions[0]["author"].clone()
        ),
        (json!(2), json!("error spike"), json!("bootstrap-admin"))
    );

    let restored = server
        .admin(
            Method::POST,
            "/api/v1/flags/calc-model/versions/1/restore",
            Some(json!({"reason": "back to stable"})),
        )
        .await;
    assert_eq!(restored.status, StatusCode::OK, "{}", restored.text);
    assert_eq!(
        (
            restored.body["version"].clone(),
            restored.body["enabled"].clone()
        ),
        (json!(3), json!(true))
    );
    let v1 = server
        .admin(Method::GET, "/api/v1/flags/calc-model/versions/1", None)
        .await;
    assert_eq!(v1.body["flag"], restored.body["flag"]);
    assert_eq!(
        server
            .eval(
                ADMIN_TOKEN,
                "calc-model",
                json!({"targetingKey": "u", "email": "a@example.com"})
            )
            .await
            .body["value"],
        "advanced"
    );
    let reply = server
        .admin(
            Method::POST,
            "/api/v1/flags/calc-model/versions/99/restore",
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);

    let audit = server
        .admin(Method::GET, "/api/v1/audit?target_key=calc-model", None)
        .await;
    let entries = audit.body["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 3, "{}", audit.text);
    assert_eq!(entries[1]["reason"], "error spike");
    assert_eq!(
        entries[1]["before"]["enabled"],
        Value::Null,
        "before: enabled is the default, so it is omitted"
    );
    assert_eq!(entries[1]["after"]["enabled"], false);
    assert_eq!(entries[0]["actor"], "bootstrap-admin");

    let deleted = server
        .admin(
            Method::DELETE,
            "/api/v1/flags/calc-model?reason=cleanup",
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text);
    assert_eq!(
        server
            .eval(ADMIN_TOKEN, "calc-model", json!({}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // The power-users segment can go now that nothing references it.
    let reply = server
        .admin(Method::DELETE, "/api/v1/segments/power-users", None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    server.stop().await;
}

#[tokio::test]
async fn tokens_are_scoped_and_hashed() {
    let server = start().await;
    server.apply(typed_flags()).await;
    let reply = server.call(Method::GET, "/api/v1/flags", None, None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body["error"]["code"], "unauthorized");

    let client = server.client_token("production").await;
    let reply = server
        .call(
            Method::POST,
            "/api/v1/apply",
            Some(&client),
            Some(typed_flags()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.body["error"]["code"], "forbidden");

    let reply = server
        .admin(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "x", "kind": "client"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = server
        .admin(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "x", "kind": "root"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = server
        .admin(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "x", "kind": "client", "environment": "mars"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);

    let tokens = server.admin(Method::GET, "/api/v1/tokens", None).await;
    assert!(!tokens.text.contains(&client), "secrets are never listed");
    let id = tokens.body["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "client")
        .unwrap()["id"]
        .clone();
    let revoked = server
        .admin(Method::DELETE, &format!("/api/v1/tokens/{id}"), None)
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    assert_eq!(
        server.eval(&client, "new-checkout", json!({})).await.status,
        StatusCode::UNAUTHORIZED
    );

    // The secret is stored nowhere in the data dir.
    for entry in std::fs::read_dir(server.data_dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(client.len()).any(|w| w == client.as_bytes()));
        assert!(
            !bytes
                .windows(ADMIN_TOKEN.len())
                .any(|w| w == ADMIN_TOKEN.as_bytes())
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn environments_are_separate() {
    let server = start().await;
    let reply = server
        .admin(
            Method::POST,
            "/api/v1/environments",
            Some(json!({"key": "staging"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(
        server
            .admin(
                Method::POST,
                "/api/v1/environments",
                Some(json!({"key": "staging"}))
            )
            .await
            .status,
        StatusCode::CONFLICT
    );
    let mut doc = typed_flags();
    doc["environment"] = json!("staging");
    assert_eq!(server.apply(doc).await.status, StatusCode::OK);
    let staging = server.client_token("staging").await;
    assert_eq!(
        server
            .eval(&staging, "new-checkout", json!({}))
            .await
            .status,
        StatusCode::OK
    );
    let production = server.client_token("production").await;
    assert_eq!(
        server
            .eval(&production, "new-checkout", json!({}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let reply = server
        .admin(
            Method::POST,
            "/api/v1/apply?environment=production",
            Some(json!({"environment": "staging"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    server.stop().await;
}

#[tokio::test]
async fn service_endpoints() {
    let server = start().await;
    server.apply(typed_flags()).await;
    server.eval(ADMIN_TOKEN, "new-checkout", json!({})).await;
    assert_eq!(
        server
            .call(Method::GET, "/healthz", None, None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        server.call(Method::GET, "/readyz", None, None).await.status,
        StatusCode::OK
    );
    let metrics = server.call(Method::GET, "/metrics", None, None).await;
    assert!(
        metrics.text.contains("rollgate_evaluations_total{"),
        "{}",
        metrics.text
    );
    assert!(metrics.text.contains("flag=\"new-checkout\""));
    assert!(metrics.text.contains("rollgate_http_requests_total{"));
    assert!(
        metrics
            .text
            .contains("rollgate_http_request_duration_seconds_bucket{")
    );
    let doc = server.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(
        doc.body["openapi"].as_str().map(|v| v.starts_with("3.")),
        Some(true)
    );
    for path in [
        "/api/v1/apply",
        "/api/v1/flags/{key}",
        "/api/v1/tokens",
        "/api/v1/audit",
        "/ofrep/v1/evaluate/flags/{key}",
    ] {
        assert!(
            doc.body["paths"].get(path).is_some(),
            "{path} is documented"
        );
    }
    server.stop().await;
}
