//! OFREP over a real socket: the responses, reasons, error codes and statuses of
//! `docs/ofrep.md`.

mod common;

use common::{ADMIN_TOKEN, start, typed_flags};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Evaluates one flag and checks status and the whole body.
async fn check(
    server: &common::TestServer,
    key: &str,
    context: Value,
    status: StatusCode,
    expected: Value,
) {
    let reply = server.eval(ADMIN_TOKEN, key, context).await;
    assert_eq!(reply.status, status, "{key}: {}", reply.text);
    assert_eq!(reply.body, expected, "{key}");
}

#[tokio::test]
async fn every_type_and_reason() {
    let server = start().await;
    assert_eq!(server.apply(typed_flags()).await.status, StatusCode::OK);
    let ok = StatusCode::OK;
    check(
        &server,
        "new-checkout",
        json!({"targetingKey": "u"}),
        ok,
        json!({"key": "new-checkout", "value": true, "variant": "on", "reason": "STATIC"}),
    )
    .await;
    check(
        &server,
        "max-items",
        json!({}),
        ok,
        json!({"key": "max-items", "value": 100, "variant": "many", "reason": "STATIC"}),
    )
    .await;
    check(&server, "ui-config", json!({}), ok,
        json!({"key": "ui-config", "value": {"theme": "dark", "columns": 3}, "variant": "fancy", "reason": "STATIC"})).await;
    check(
        &server,
        "legacy-export",
        json!({}),
        ok,
        json!({"key": "legacy-export", "value": false, "variant": "off", "reason": "DISABLED"}),
    )
    .await;
    check(&server, "calc-model", json!({"targetingKey": "u", "email": "ana@example.com"}), ok,
        json!({"key": "calc-model", "value": "advanced", "variant": "advanced", "reason": "TARGETING_MATCH"})).await;
    check(&server, "calc-model", json!({"targetingKey": "u", "plan": "free"}), ok,
        json!({"key": "calc-model", "value": "simple", "variant": "simple", "reason": "UNKNOWN", "metadata": {"reason": "DEFAULT"}})).await;

    // A float flag is served as a JSON float even when written as `1`.
    let reply = server.eval(ADMIN_TOKEN, "discount-rate", json!({})).await;
    assert!(reply.text.contains("\"value\":1.0"), "{}", reply.text);

    // Splits are sticky: the same key always gets the same variant; both arms occur.
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..40 {
        let context = json!({"targetingKey": format!("user-{i}"), "plan": "pro"});
        let first = server
            .eval(ADMIN_TOKEN, "calc-model", context.clone())
            .await;
        let again = server.eval(ADMIN_TOKEN, "calc-model", context).await;
        assert_eq!(first.body["reason"], "SPLIT");
        assert_eq!(first.body, again.body);
        seen.insert(
            first.body["variant"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert_eq!(
        seen.len(),
        2,
        "a 50/50 split over 40 keys serves both variants: {seen:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn errors_have_no_value() {
    let server = start().await;
    server.apply(typed_flags()).await;
    check(&server, "nope", json!({"targetingKey": "u"}), StatusCode::NOT_FOUND,
        json!({"key": "nope", "errorCode": "FLAG_NOT_FOUND", "errorDetails": "flag `nope` was not found"})).await;
    let reply = server
        .eval(ADMIN_TOKEN, "rollout", json!({"plan": "pro"}))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["errorCode"], "TARGETING_KEY_MISSING");
    assert!(reply.body.get("value").is_none());
    // A rule that matches before the split needs no targeting key.
    check(&server, "calc-model", json!({"email": "ana@example.com"}), StatusCode::OK,
        json!({"key": "calc-model", "value": "advanced", "variant": "advanced", "reason": "TARGETING_MATCH"})).await;

    let reply = server
        .eval(ADMIN_TOKEN, "calc-model", json!({"targetingKey": 17}))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["errorCode"], "INVALID_CONTEXT");
    let reply = server
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags/calc-model",
            Some(ADMIN_TOKEN),
            Some(json!({"context": [1, 2]})),
        )
        .await;
    assert_eq!(reply.body["errorCode"], "INVALID_CONTEXT", "{}", reply.text);

    let raw = server
        .http
        .post(format!("{}/ofrep/v1/evaluate/flags/calc-model", server.url))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("{\"context\": {")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    let body: Value = raw.json().await.unwrap();
    assert_eq!(body["errorCode"], "PARSE_ERROR");

    let huge = json!({"context": {"targetingKey": "u", "blob": "x".repeat(2 * 1024 * 1024)}});
    let reply = server
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags/calc-model",
            Some(ADMIN_TOKEN),
            Some(huge),
        )
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        reply.body["errorDetails"]
            .as_str()
            .unwrap_or_default()
            .contains("limit")
    );

    // The server keeps serving after all of that.
    assert_eq!(
        server
            .eval(ADMIN_TOKEN, "new-checkout", json!({}))
            .await
            .status,
        StatusCode::OK
    );
    server.stop().await;
}

#[tokio::test]
async fn tokens_decide_who_evaluates_where() {
    let server = start().await;
    server.apply(typed_flags()).await;
    let reply = server
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags/new-checkout",
            None,
            Some(json!({"context": {}})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.body["errorDetails"].is_string());
    let reply = server.eval("not-a-token", "new-checkout", json!({})).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    let client = server.client_token("production").await;
    assert_eq!(
        server.eval(&client, "new-checkout", json!({})).await.body["value"],
        true
    );
    // X-API-Key works too.
    let response = server
        .http
        .post(format!(
            "{}/ofrep/v1/evaluate/flags/new-checkout",
            server.url
        ))
        .header("x-api-key", &client)
        .json(&json!({"context": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // A client token cannot reach another environment.
    let response = server
        .http
        .post(format!(
            "{}/ofrep/v1/evaluate/flags/new-checkout",
            server.url
        ))
        .bearer_auth(&client)
        .header("x-rollgate-environment", "staging")
        .json(&json!({"context": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    server.stop().await;
}

#[tokio::test]
async fn bulk_with_etag() {
    let server = start().await;
    server.apply(typed_flags()).await;
    let context = json!({"context": {"targetingKey": "u-1", "plan": "free"}});
    let reply = server
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags",
            Some(ADMIN_TOKEN),
            Some(context.clone()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let flags = reply.body["flags"].as_array().expect("flags array");
    assert_eq!(flags.len(), 7);
    let by_key = |k: &str| {
        flags
            .iter()
            .find(|f| f["key"] == k)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(by_key("legacy-export")["reason"], "DISABLED");
    assert_eq!(by_key("max-items")["value"], 100);
    let etag = reply
        .headers
        .get("etag")
        .expect("etag")
        .to_str()
        .unwrap()
        .to_owned();

    let cached = server
        .http
        .post(format!("{}/ofrep/v1/evaluate/flags", server.url))
        .bearer_auth(ADMIN_TOKEN)
        .header("if-none-match", &etag)
        .json(&context)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(cached.text().await.unwrap(), "");

    // Another context gets another ETag; a missing targeting key is an item error, not a failure.
    let other = server
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags",
            Some(ADMIN_TOKEN),
            Some(json!({"context": {}})),
        )
        .await;
    assert_ne!(other.headers.get("etag").unwrap().to_str().unwrap(), etag);
    let rollout = other.body["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == "rollout")
        .cloned()
        .unwrap();
    assert_eq!(
        rollout,
        json!({"key": "rollout", "errorCode": "TARGETING_KEY_MISSING", "errorDetails": "flag `rollout` splits by percentage and needs a non-empty targetingKey"})
    );

    // A change to a flag changes the ETag.
    let reply = server
        .admin(Method::POST, "/api/v1/flags/max-items/disable", None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let changed = server
        .http
        .post(format!("{}/ofrep/v1/evaluate/flags", server.url))
        .bearer_auth(ADMIN_TOKEN)
        .header("if-none-match", &etag)
        .json(&context)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    server.stop().await;
}
