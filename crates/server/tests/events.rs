//! `POST /api/v1/events` against the real server and SQLite file.

mod common;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn stored_events(server: &common::TestServer) -> i64 {
    server
        .state
        .store
        .event_count("production")
        .await
        .expect("count events")
}

fn track(unit: &str, value: f64) -> Value {
    json!({"kind": "track", "name": "calc_request", "targetingKey": unit, "value": value,
           "timestamp": "2026-11-23T10:00:01Z", "attributes": {"cache_hit": true}})
}

async fn post_raw(
    server: &common::TestServer,
    token: &str,
    content_type: &str,
    body: String,
    idempotency_key: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = server
        .http
        .post(format!("{}/api/v1/events", server.url))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body);
    if let Some(key) = idempotency_key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

#[tokio::test]
async fn a_client_token_sends_a_batch_that_is_committed() {
    let server = common::start().await;
    assert_eq!(
        server.apply(common::typed_flags()).await.status,
        StatusCode::OK
    );
    let token = server.client_token("production").await;
    let batch = json!({"events": [
        {"kind": "exposure", "flag": "calc-model", "variant": "advanced", "targetingKey": "u-17", "timestamp": "2026-11-23T10:00:00Z"},
        track("u-17", 182.5),
    ]});
    let (status, _, body) =
        post_raw(&server, &token, "application/json", batch.to_string(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["accepted"].clone(), body["duplicate"].clone()),
        (json!(2), json!(false))
    );
    assert_eq!(stored_events(&server).await, 2, "acknowledged means stored");

    let ndjson = format!("{}\n{}\n", track("u-1", 1.0), track("u-2", 2.0));
    let (status, _, body) = post_raw(&server, &token, "application/x-ndjson", ndjson, None).await;
    assert_eq!(
        (status, body["accepted"].clone()),
        (StatusCode::OK, json!(2))
    );
    assert_eq!(stored_events(&server).await, 4);
}

#[tokio::test]
async fn an_invalid_event_rejects_the_whole_batch() {
    let server = common::start().await;
    server.apply(common::typed_flags()).await;
    let token = server.client_token("production").await;
    let cases = [
        (
            json!({"events": [track("u-1", 1.0), {"kind": "click", "targetingKey": "u"}]}),
            "events[1]: unknown kind `click`",
        ),
        (
            json!({"events": [track("u-1", 1.0), {"kind": "track", "name": "x"}]}),
            "events[1]: targetingKey is missing",
        ),
        (
            json!({"events": [{"kind": "track", "name": "x", "targetingKey": "u", "timestamp": "2999-01-01T00:00:00Z"}]}),
            "in the future",
        ),
        (
            json!({"events": [{"kind": "exposure", "flag": "calc-model", "variant": "fancy", "targetingKey": "u"}]}),
            "has no variant `fancy`",
        ),
        (
            json!({"events": [{"kind": "exposure", "flag": "nope", "variant": "on", "targetingKey": "u"}]}),
            "flag `nope` does not exist",
        ),
        (
            json!({"events": [{"kind": "track", "name": "x", "targetingKey": "u", "value": "slow"}]}),
            "value must be a number",
        ),
        (json!({"evnts": []}), "unknown field `evnts`"),
    ];
    for (batch, expected) in cases {
        let (status, _, body) =
            post_raw(&server, &token, "application/json", batch.to_string(), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{batch}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(expected),
            "{batch}: `{message}` should contain `{expected}`"
        );
    }
    let (status, _, _) = post_raw(
        &server,
        &token,
        "application/json",
        "{\"events\": [".into(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let too_many: Vec<Value> = (0..=ingest::MAX_BATCH_EVENTS)
        .map(|i| track(&format!("u-{i}"), 1.0))
        .collect();
    let (status, _, body) = post_raw(
        &server,
        &token,
        "application/json",
        json!({"events": too_many}).to_string(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (status, _, _) = post_raw(
        &server,
        &token,
        "text/plain",
        json!({"events": [track("u", 1.0)]}).to_string(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        stored_events(&server).await,
        0,
        "nothing of a rejected batch is stored"
    );
}

#[tokio::test]
async fn a_retried_batch_with_an_idempotency_key_counts_once() {
    let server = common::start().await;
    let token = server.client_token("production").await;
    let batch =
        json!({"events": [track("u-1", 1.0), track("u-2", 2.0), track("u-3", 3.0)]}).to_string();
    let (status, _, first) = post_raw(
        &server,
        &token,
        "application/json",
        batch.clone(),
        Some("batch-42"),
    )
    .await;
    assert_eq!(
        (status, first["duplicate"].clone()),
        (StatusCode::OK, json!(false))
    );
    let (status, _, second) = post_raw(
        &server,
        &token,
        "application/json",
        batch.clone(),
        Some("batch-42"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            second["duplicate"].clone(),
            second["batch"].clone(),
            second["accepted"].clone()
        ),
        (json!(true), first["batch"].clone(), json!(3))
    );
    assert_eq!(stored_events(&server).await, 3);
    post_raw(&server, &token, "application/json", batch, Some("batch-43")).await;
    assert_eq!(stored_events(&server).await, 6, "a new key is a new batch");
}

#[tokio::test]
async fn tokens_decide_where_events_go() {
    let server = common::start().await;
    let body = json!({"events": [track("u-1", 1.0)]});
    let reply = server
        .call(Method::POST, "/api/v1/events", None, Some(body.clone()))
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let token = server.client_token("production").await;
    let reply = server
        .call(
            Method::POST,
            "/api/v1/events?environment=staging",
            Some(&token),
            Some(body.clone()),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::FORBIDDEN,
        "a client token writes only to its own environment"
    );
    let reply = server
        .admin(
            Method::POST,
            "/api/v1/events?environment=nowhere",
            Some(body.clone()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = server
        .admin(Method::POST, "/api/v1/events", Some(body))
        .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "an admin token writes to production by default"
    );
}

#[tokio::test]
async fn ofrep_evaluations_record_exposures_by_themselves() {
    let server = common::start().await;
    let mut doc = common::typed_flags();
    // A flag can opt out of exposure recording.
    let flags = doc["flags"].as_array_mut().expect("flags");
    let quiet = flags
        .iter_mut()
        .find(|f| f["key"] == "new-checkout")
        .expect("new-checkout");
    quiet["record_exposures"] = json!(false);
    assert_eq!(server.apply(doc).await.status, StatusCode::OK);
    let token = server.client_token("production").await;
    for unit in ["u-1", "u-2", "u-1"] {
        let reply = server
            .eval(&token, "calc-model", json!({"targetingKey": unit}))
            .await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    // No targeting key, no unit to attribute: nothing to record.
    server.eval(&token, "calc-model", json!({})).await;
    let reply = server
        .eval(&token, "new-checkout", json!({"targetingKey": "u-9"}))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    server
        .state
        .ingest
        .flush_exposures()
        .await
        .expect("flush exposures");
    let batches = server
        .state
        .store
        .batches_after(0, 100)
        .await
        .expect("batches");
    let events: Vec<ingest::Event> = batches
        .iter()
        .flat_map(|b| serde_json::from_str::<Vec<ingest::Event>>(&b.events).expect("stored events"))
        .collect();
    let mut units: Vec<(String, String)> = events
        .iter()
        .map(|e| match e {
            ingest::Event::Exposure { flag, unit, .. } => (flag.clone(), unit.clone()),
            other => panic!("only exposures were recorded, got {other:?}"),
        })
        .collect();
    units.sort();
    assert_eq!(
        units,
        [
            ("calc-model".to_owned(), "u-1".to_owned()),
            ("calc-model".to_owned(), "u-2".to_owned())
        ],
        "a repeat is recorded once"
    );
}

#[tokio::test]
async fn events_add_up_to_per_unit_totals_by_variant() {
    let server = common::start().await;
    let mut doc = common::typed_flags();
    doc["metrics"] = json!([
        {"key": "error_rate", "kind": "ratio", "numerator": "calc_error", "denominator": "calc_request", "higher_is_better": false},
        {"key": "latency", "kind": "ratio", "numerator": {"event": "calc_request", "agg": "sum"}, "denominator": "calc_request"}
    ]);
    assert_eq!(server.apply(doc).await.status, StatusCode::OK);
    let token = server.client_token("production").await;

    // u-1 and u-2 see `advanced`, u-3 `simple`; u-2 is later also exposed to
    // `simple` (it stays `advanced`, marked); u-4 is never exposed.
    let exposure = |unit: &str, variant: &str| json!({"kind": "exposure", "flag": "calc-model", "variant": variant, "targetingKey": unit, "timestamp": "2026-11-23T10:00:00Z"});
    let request = |unit: &str, ms: f64| json!({"kind": "track", "name": "calc_request", "targetingKey": unit, "value": ms, "timestamp": "2026-11-23T10:05:00Z"});
    let error = |unit: &str| json!({"kind": "track", "name": "calc_error", "targetingKey": unit, "timestamp": "2026-11-23T10:05:00Z"});
    let batches = [
        json!({"events": [exposure("u-1", "advanced"), exposure("u-2", "advanced"), exposure("u-3", "simple")]}),
        json!({"events": [request("u-1", 100.0), request("u-1", 300.0), error("u-1"), request("u-2", 50.0)]}),
        json!({"events": [exposure("u-2", "simple"), request("u-3", 80.0), error("u-3"), error("u-3"), request("u-4", 1.0)]}),
    ];
    for batch in batches {
        let (status, _, body) =
            post_raw(&server, &token, "application/json", batch.to_string(), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    server.fold_all().await;

    let store = &server.state.store;
    let totals = |metric: &'static str| async move {
        store
            .unit_totals("production", "calc-model", metric)
            .await
            .expect("totals")
            .into_iter()
            .map(|t| (t.variant, t.unit, t.x, t.y))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        totals("error_rate").await,
        [
            ("advanced".to_owned(), "u-1".to_owned(), 1.0, 2.0),
            ("advanced".to_owned(), "u-2".to_owned(), 0.0, 1.0),
            ("simple".to_owned(), "u-3".to_owned(), 2.0, 1.0),
        ]
    );
    assert_eq!(
        totals("latency").await,
        [
            ("advanced".to_owned(), "u-1".to_owned(), 400.0, 2.0),
            ("advanced".to_owned(), "u-2".to_owned(), 50.0, 1.0),
            ("simple".to_owned(), "u-3".to_owned(), 80.0, 1.0),
        ]
    );
    let exposures = store
        .exposure_counts("production", "calc-model")
        .await
        .expect("exposures");
    let summary: Vec<(String, i64, i64)> = exposures
        .into_iter()
        .map(|e| (e.variant, e.units, e.conflicting))
        .collect();
    assert_eq!(
        summary,
        [("advanced".to_owned(), 2, 1), ("simple".to_owned(), 1, 0)]
    );

    // Folding again adds nothing: every batch counts exactly once.
    server.fold_all().await;
    assert_eq!(totals("error_rate").await.len(), 3);
    assert_eq!(totals("latency").await[0].2, 400.0);
}

#[tokio::test]
async fn series_totals_agree_with_a_brute_force_computation() {
    let server = common::start().await;
    let mut doc = common::typed_flags();
    doc["metrics"] = json!([
        {"key": "error_rate", "kind": "ratio", "numerator": "calc_error", "denominator": "calc_request", "higher_is_better": false},
        {"key": "latency_p95", "kind": "quantile", "event": "calc_request", "q": 0.95, "higher_is_better": false},
        {"key": "calcs_per_user", "kind": "mean", "event": "calc_request", "agg": "count"},
        {"key": "converted", "kind": "proportion", "event": "checkout"},
        {"key": "memory", "kind": "gauge", "event": "memory_mb", "higher_is_better": false},
        {"key": "uptime", "kind": "uptime", "event": "calc_request", "error_event": "calc_error", "max_error_rate": 0.2}
    ]);
    assert_eq!(
        server.apply(doc).await.status,
        StatusCode::OK,
        "flags and metrics apply"
    );
    let token = server.client_token("production").await;

    // 40 units alternate between the variants; unit i sends i % 5 + 1
    // requests with latencies that depend on the variant, every seventh
    // request fails, every third unit checks out.
    let mut events = Vec::new();
    let mut latencies: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    let mut requests: std::collections::BTreeMap<&str, f64> = Default::default();
    let mut errors: std::collections::BTreeMap<&str, f64> = Default::default();
    let mut converted: std::collections::BTreeMap<&str, f64> = Default::default();
    let mut n = 0;
    for i in 0..40 {
        let unit = format!("u-{i}");
        let variant = if i % 2 == 0 { "advanced" } else { "simple" };
        events.push(json!({"kind": "exposure", "flag": "calc-model", "variant": variant, "targetingKey": unit, "timestamp": "2026-11-23T10:00:00Z"}));
        for r in 0..(i % 5 + 1) {
            n += 1;
            let ms = f64::from(if variant == "advanced" {
                100 + 7 * i + r
            } else {
                150 + 3 * i + 11 * r
            });
            latencies.entry(variant).or_default().push(ms);
            *requests.entry(variant).or_default() += 1.0;
            let minute = 1 + (n % 3);
            let at = format!("2026-11-23T10:0{minute}:00Z");
            events.push(json!({"kind": "track", "name": "calc_request", "targetingKey": unit, "value": ms, "timestamp": at}));
            if n % 7 == 0 {
                *errors.entry(variant).or_default() += 1.0;
                events.push(json!({"kind": "track", "name": "calc_error", "targetingKey": unit, "timestamp": at}));
            }
        }
        if i % 3 == 0 {
            *converted.entry(variant).or_default() += 1.0;
            events.push(json!({"kind": "track", "name": "checkout", "targetingKey": unit, "timestamp": "2026-11-23T10:05:00Z"}));
            events.push(json!({"kind": "track", "name": "checkout", "targetingKey": unit, "timestamp": "2026-11-23T10:06:00Z"}));
        }
    }
    // Two service instances report the memory of the model they run.
    for (pod, variant, mb) in [
        ("pod-1", "advanced", 900.0),
        ("pod-1", "advanced", 1100.0),
        ("pod-2", "simple", 600.0),
    ] {
        events.push(json!({"kind": "track", "name": "memory_mb", "targetingKey": pod, "value": mb, "flag": "calc-model", "variant": variant, "timestamp": "2026-11-23T10:03:00Z"}));
    }
    for chunk in events.chunks(50) {
        let (status, _, body) = post_raw(
            &server,
            &token,
            "application/json",
            json!({"events": chunk}).to_string(),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    server.fold_all().await;

    let srv = &server;
    let series = |metric: &str, bucket: &str| {
        let path = format!(
            "/api/v1/metrics/{metric}/series?flag=calc-model&bucket={bucket}&from=2026-11-23T00:00:00Z&to=2026-11-24T00:00:00Z"
        );
        async move {
            let reply = srv.admin(Method::GET, &path, None).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
            reply.body
        }
    };
    let total = |body: &Value, variant: &str| -> Value {
        body["variants"]
            .as_array()
            .expect("variants")
            .iter()
            .find(|v| v["variant"] == variant)
            .expect("variant")["total"]
            .clone()
    };

    let error_rate = series("error_rate", "1m").await;
    for variant in ["advanced", "simple"] {
        let expected = errors[variant] / requests[variant];
        let got = total(&error_rate, variant)["value"]
            .as_f64()
            .expect("value");
        assert!(
            (got - expected).abs() < 1e-12,
            "{variant}: {got} vs {expected}"
        );
        assert_eq!(total(&error_rate, variant)["units"], json!(20));
        let points = error_rate["variants"]
            .as_array()
            .expect("variants")
            .iter()
            .find(|v| v["variant"] == variant)
            .expect("v")["points"]
            .clone();
        let y: f64 = points
            .as_array()
            .expect("points")
            .iter()
            .map(|p| p["y"].as_f64().expect("y"))
            .sum();
        assert_eq!(
            y, requests[variant],
            "the minute buckets add up to the total"
        );
    }

    let p95 = series("latency_p95", "1h").await;
    for variant in ["advanced", "simple"] {
        let mut values = latencies[variant].clone();
        values.sort_by(f64::total_cmp);
        let rank = (values.len() as f64 * 0.95).ceil() as usize;
        let exact = values[rank - 1];
        let got = total(&p95, variant)["value"].as_f64().expect("p95");
        assert!(
            (got - exact).abs() <= 0.01 * exact + 1e-9,
            "{variant}: sketch {got} vs exact {exact}"
        );
    }

    let mean = series("calcs_per_user", "1h").await;
    for variant in ["advanced", "simple"] {
        let got = total(&mean, variant)["value"].as_f64().expect("mean");
        assert!(
            (got - requests[variant] / 20.0).abs() < 1e-12,
            "{variant}: {got}"
        );
    }
    let proportion = series("converted", "1d").await;
    for variant in ["advanced", "simple"] {
        assert_eq!(
            total(&proportion, variant)["value"].as_f64(),
            Some(converted[variant] / 20.0),
            "{variant}"
        );
    }
    let memory = series("memory", "1h").await;
    assert_eq!(total(&memory, "advanced")["value"].as_f64(), Some(1000.0));
    let advanced_points = memory["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .find(|v| v["variant"] == "advanced")
        .expect("v")["points"]
        .clone();
    assert_eq!(advanced_points[0]["max"], json!(1100.0));
    assert_eq!(total(&memory, "simple")["value"].as_f64(), Some(600.0));

    let uptime = series("uptime", "1h").await;
    for variant in ["advanced", "simple"] {
        let value = total(&uptime, variant)["value"].as_f64().expect("uptime");
        assert!((0.0..=1.0).contains(&value), "{variant}: {value}");
    }

    let bad = server
        .admin(
            Method::GET,
            "/api/v1/metrics/error_rate/series?flag=calc-model&bucket=5m",
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let missing = server
        .admin(
            Method::GET,
            "/api/v1/metrics/nope/series?flag=calc-model",
            None,
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let no_flag = server
        .admin(Method::GET, "/api/v1/metrics/error_rate/series", None)
        .await;
    assert_eq!(no_flag.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after_and_stores_nothing_of_it() {
    use sqlx::Connection;
    if common::on_postgres() {
        // The stall below takes SQLite's write lock; the pipeline's 429 does
        // not depend on the backend.
        return;
    }
    let server = common::start_with_queue(1).await;
    let token = server.client_token("production").await;

    // Another connection holds SQLite's write lock: the writer stalls on its
    // first group and the one-batch queue fills behind it.
    let url = format!(
        "sqlite:{}",
        server.data_dir.path().join(store::SQLITE_FILE).display()
    );
    let mut blocker = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("second connection");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut blocker)
        .await
        .expect("take the write lock");

    const SENDERS: usize = 12;
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..SENDERS {
        let (http, url, token, done) = (
            server.http.clone(),
            server.url.clone(),
            token.clone(),
            done_tx.clone(),
        );
        tokio::spawn(async move {
            let body =
                json!({"events": [track(&format!("u-{i}"), 1.0), track(&format!("v-{i}"), 2.0)]});
            let response = http
                .post(format!("{url}/api/v1/events"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .expect("send");
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap_or_default().to_owned());
            let _ = done.send((response.status(), retry_after));
        });
    }
    // While the lock is held nothing can be committed, so every answer that
    // arrives now is a refusal. At most three batches wait: the writer's
    // group (the batch it received and the one it found queued) and one in
    // the queue behind it.
    let refusals_at_least = SENDERS - 3;
    let mut refused = 0;
    while refused < refusals_at_least {
        let (status, retry_after) = done_rx.recv().await.expect("an answer");
        assert_eq!(
            status,
            StatusCode::TOO_MANY_REQUESTS,
            "nothing commits while the database is locked"
        );
        assert_eq!(retry_after.as_deref(), Some("1"));
        refused += 1;
    }
    sqlx::query("ROLLBACK")
        .execute(&mut blocker)
        .await
        .expect("release the lock");
    drop(done_tx);
    let mut accepted = 0;
    while let Some((status, _)) = done_rx.recv().await {
        match status {
            StatusCode::OK => accepted += 1,
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(accepted + refused, SENDERS);
    assert!(
        accepted >= 1,
        "the batch the writer held is committed once the lock is released"
    );
    assert_eq!(
        stored_events(&server).await,
        2 * accepted as i64,
        "refused batches stored nothing"
    );
}
