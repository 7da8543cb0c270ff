//! Metric definitions over a real socket: applied with the config document,
//! listed under `/api/v1/metrics`, exported and applied back unchanged, and
//! refused with a 422 that names metric, field and problem.

mod common;

use common::start;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const SEED_METRICS: &str = include_str!("../../../examples/seed-metrics.toml");

/// The example file as the JSON document `rollgate apply` would send.
fn seed_metrics() -> Value {
    let table: toml::Table = SEED_METRICS.parse().expect("seed-metrics.toml is TOML");
    serde_json::to_value(table).expect("TOML as JSON")
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

fn keys(list: &Value) -> Vec<String> {
    list["metrics"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| m["key"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_seed_metrics_apply_list_and_export_back_unchanged() {
    let server = start().await;
    let doc = seed_metrics();
    let count = doc["metrics"].as_array().map_or(0, Vec::len);
    assert!(count >= 20, "the example covers the seed's metrics");

    let first = server.apply(doc.clone()).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let created = actions(&first);
    assert_eq!(created.len(), count);
    assert!(
        created
            .iter()
            .all(|a| a.starts_with("metric ") && a.ends_with(" created")),
        "{created:?}"
    );
    let again = server.apply(doc.clone()).await;
    assert!(
        actions(&again).iter().all(|a| a.ends_with(" unchanged")),
        "{}",
        again.text
    );
    assert_eq!(again.body["revision"], first.body["revision"]);

    let list = server.admin(Method::GET, "/api/v1/metrics", None).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    let mut expected: Vec<String> = doc["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| m["key"].as_str().unwrap_or("").to_owned())
        .collect();
    expected.sort();
    assert_eq!(keys(&list.body), expected, "listed by key");

    let one = server
        .admin(Method::GET, "/api/v1/metrics/cache_hit_rate", None)
        .await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.text);
    assert_eq!(one.body["key"], "cache_hit_rate");
    assert_eq!(one.body["kind"], "ratio");
    assert_eq!(one.body["higherIsBetter"], true);
    assert_eq!(one.body["version"], 1);
    assert_eq!(one.body["updatedBy"], "bootstrap-admin");
    assert!(
        one.body["updatedAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert_eq!(
        one.body["metric"]["numerator"],
        json!({"event": "calc_request", "agg": "count", "filter": {"cache_hit": true}})
    );
    let p95 = server
        .admin(Method::GET, "/api/v1/metrics/response_time_p95", None)
        .await;
    assert_eq!(p95.body["higherIsBetter"], false);
    assert_eq!(
        p95.body["metric"],
        json!({"key": "response_time_p95", "kind": "quantile",
               "description": "95th percentile of the server response time, in ms",
               "higher_is_better": false, "event": "calc_request", "q": 0.95})
    );

    let exported = server.admin(Method::GET, "/api/v1/export", None).await;
    assert_eq!(exported.status, StatusCode::OK);
    // Exported by key, each as written.
    let mut written = doc["metrics"].as_array().cloned().unwrap_or_default();
    written.sort_by(|a, b| a["key"].as_str().cmp(&b["key"].as_str()));
    assert_eq!(exported.body["metrics"], Value::Array(written));
    let round = server.apply(exported.body.clone()).await;
    assert_eq!(round.status, StatusCode::OK, "{}", round.text);
    assert!(
        actions(&round).iter().all(|a| a.ends_with(" unchanged")),
        "{}",
        round.text
    );
    server.stop().await;
}

#[tokio::test]
async fn unknown_metrics_and_environments_are_404() {
    let server = start().await;
    let reply = server
        .admin(Method::GET, "/api/v1/metrics/nope", None)
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.body["error"]["code"], "not_found");
    assert!(reply.text.contains("metric `nope`"), "{}", reply.text);
    let reply = server
        .admin(Method::GET, "/api/v1/metrics?environment=nowhere", None)
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let empty = server.admin(Method::GET, "/api/v1/metrics", None).await;
    assert_eq!(empty.body, json!({"metrics": []}));
    let unauthorized = server
        .call(Method::GET, "/api/v1/metrics", None, None)
        .await;
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);
    let client = server.client_token("production").await;
    let forbidden = server
        .call(Method::GET, "/api/v1/metrics", Some(&client), None)
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    server.stop().await;
}

#[tokio::test]
async fn a_bad_metric_rejects_the_whole_document() {
    let server = start().await;
    let doc = json!({
        "flags": [{"key": "calc-model", "type": "boolean", "off_variant": "off",
                   "variants": {"on": true, "off": false}, "default": {"serve": {"variant": "on"}}}],
        "metrics": [
            {"key": "error_rate", "kind": "ratio", "numerator": "calc_error", "denominator": "calc_request"},
            {"key": "p95", "kind": "ratio", "numerator": "a", "denominator": "b", "q": 0.95}
        ]
    });
    let reply = server.apply(doc).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert_eq!(reply.body["error"]["code"], "validation_failed");
    assert_eq!(
        reply.body["error"]["details"],
        json!([{"subject": "metric `p95`", "field": "q",
                "message": "is not a field of a ratio metric (it belongs to quantile metrics)"}])
    );
    let export = server.admin(Method::GET, "/api/v1/export", None).await;
    assert_eq!(
        export.body,
        json!({"environment": "production", "segments": [], "flags": []}),
        "nothing was created"
    );

    // A field serde does not know is a 400 that names it.
    let reply = server
        .apply(json!({"metrics": [{"key": "x", "kind": "count", "event": "e", "evnt": "e"}]}))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    assert!(
        reply.text.contains("unknown field `evnt`"),
        "{}",
        reply.text
    );
    server.stop().await;
}

#[tokio::test]
async fn prune_deletes_unnamed_metrics_and_changes_are_audited() {
    let server = start().await;
    let doc = json!({"metrics": [
        {"key": "error_rate", "kind": "ratio", "numerator": "calc_error", "denominator": "calc_request"},
        {"key": "calculations", "kind": "count", "event": "calc_request"}
    ]});
    assert_eq!(server.apply(doc).await.status, StatusCode::OK);
    let update = json!({"metrics": [
        {"key": "error_rate", "kind": "ratio", "numerator": "calc_error", "denominator": "calc_request",
         "higher_is_better": false}
    ]});
    let reply = server
        .admin(
            Method::POST,
            "/api/v1/apply?prune=true&reason=fewer%20metrics",
            Some(update),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        actions(&reply),
        ["metric calculations deleted", "metric error_rate updated"]
    );
    let list = server.admin(Method::GET, "/api/v1/metrics", None).await;
    assert_eq!(keys(&list.body), ["error_rate"]);
    assert_eq!(list.body["metrics"][0]["version"], 2);

    let audit = server
        .admin(Method::GET, "/api/v1/audit?target_kind=metric", None)
        .await;
    let entries: Vec<(String, String, String)> = audit.body["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or("").to_owned(),
                e["targetKey"].as_str().unwrap_or("").to_owned(),
                e["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let entries: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|(a, k, r)| (a.as_str(), k.as_str(), r.as_str()))
        .collect();
    assert_eq!(
        entries,
        [
            ("metric.updated", "error_rate", "fewer metrics"),
            ("metric.deleted", "calculations", "fewer metrics"),
            ("metric.created", "calculations", ""),
            ("metric.created", "error_rate", ""),
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn the_openapi_document_lists_the_metric_endpoints() {
    let server = start().await;
    let doc = server.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(doc.status, StatusCode::OK);
    for path in ["/api/v1/metrics", "/api/v1/metrics/{key}"] {
        assert!(
            doc.body["paths"][path]["get"].is_object(),
            "{path} is missing"
        );
    }
    assert!(doc.body["components"]["schemas"]["MetricRecord"].is_object());
    server.stop().await;
}
