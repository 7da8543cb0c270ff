//! Feedback over HTTP: scores and complaints are events attributed to the
//! unit's variant, so a complaint-rate guard fires on them — the seed's
//! "significant user complaints" trigger pauses the rollout.

mod common;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const UNITS: usize = 1_200;

fn config() -> Value {
    json!({
        "flags": [{
            "key": "calc-model", "type": "string", "off_variant": "simple",
            "variants": {"simple": "simple", "advanced": "advanced"},
            "default": {"serve": {"variant": "simple"}}
        }],
        "metrics": [
            {"key": "complaint_rate", "kind": "proportion", "event": "complaint",
             "higher_is_better": false},
            {"key": "satisfaction_score", "kind": "ratio",
             "numerator": {"event": "satisfaction_survey", "agg": "sum"},
             "denominator": "satisfaction_survey"}
        ],
        "rollouts": [{
            "flag": "calc-model", "treatment": "advanced", "control": "simple",
            "phases": [{"name": "beta", "percent": 50, "duration": "1h"},
                       {"name": "everyone", "percent": 100, "duration": "1h"}],
            "guards": [{"metric": "complaint_rate", "max_relative_increase": 0.5,
                        "action": "pause", "min_samples": 100}]
        }]
    })
}

async fn feedback(server: &common::TestServer, token: &str, body: Value) -> common::Reply {
    server
        .call(Method::POST, "/api/v1/feedback", Some(token), Some(body))
        .await
}

#[tokio::test]
async fn complaints_from_the_treatment_pause_the_rollout() {
    let server = common::start().await;
    let applied = server.apply(config()).await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.text);
    let token = server.client_token("production").await;
    server.start_rollout("calc-model").await;

    // Units are served (OFREP records their exposures)...
    let mut served = Vec::with_capacity(UNITS);
    for i in 0..UNITS {
        let reply = server
            .eval(
                &token,
                "calc-model",
                json!({"targetingKey": format!("user-{i}")}),
            )
            .await;
        served.push(reply.body["variant"].as_str().expect("variant").to_owned());
    }
    server.state.ingest.flush_exposures().await.expect("flush");
    // ...then give feedback: two in five of the treatment complain, one in
    // ten of the control.
    let mut treated = 0;
    for (i, variant) in served.iter().enumerate() {
        let unit = format!("user-{i}");
        let complains = if variant == "advanced" {
            treated += 1;
            i % 5 < 2
        } else {
            i % 10 == 0
        };
        let mut body = json!({"targetingKey": unit, "score": if complains { 2 } else { 5 }});
        if complains {
            body["complaint"] = json!({"category": "wrong_result",
                                       "text": "<script>alert('2+2=5')</script>"});
        }
        let reply = feedback(&server, &token, body).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert_eq!(reply.body["accepted"], if complains { 2 } else { 1 });
    }
    assert!((480..720).contains(&treated), "{treated} treated at 50%");
    server.fold_all().await;
    server::rollouts::step_all(&server.state).await;

    let status = server
        .admin(Method::GET, "/api/v1/rollouts/calc-model", None)
        .await;
    assert_eq!(status.body["status"], "paused", "{}", status.text);
    let incident = &status.body["incidents"][0];
    assert_eq!(incident["kind"], "guard_pause", "{incident}");
    assert_eq!(
        incident["evidence"]["evidence"][0]["metric"], "complaint_rate",
        "{incident}"
    );

    // The scores are a metric too, per variant.
    let series = server
        .admin(
            Method::GET,
            "/api/v1/metrics/satisfaction_score/series?flag=calc-model",
            None,
        )
        .await;
    assert_eq!(series.status, StatusCode::OK, "{}", series.text);
    let value = |variant: &str| {
        series.body["variants"]
            .as_array()
            .expect("variants")
            .iter()
            .find(|v| v["variant"] == variant)
            .and_then(|v| v["total"]["value"].as_f64())
            .expect("a value")
    };
    assert!(value("advanced") < value("simple"), "{}", series.text);
}

#[tokio::test]
async fn bad_feedback_is_refused_and_stores_nothing() {
    let server = common::start().await;
    let applied = server.apply(config()).await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.text);
    let token = server.client_token("production").await;
    for (body, status, fragment) in [
        (json!({"targetingKey": "u"}), 400, "give a `score`"),
        (
            json!({"targetingKey": "u", "score": 9}),
            400,
            "it must be 1 to 5",
        ),
        (json!({"targetingKey": "u", "score": "5"}), 400, "score"),
        (
            json!({"targetingKey": "u", "score": 5, "mood": "great"}),
            400,
            "unknown field `mood`",
        ),
        (json!({"score": 5}), 400, "targetingKey"),
        (
            json!({"targetingKey": "u", "complaint": {"category": "x", "text": "a".repeat(20_000)}}),
            413,
            "",
        ),
    ] {
        let reply = feedback(&server, &token, body.clone()).await;
        assert_eq!(reply.status.as_u16(), status, "{body}: {}", reply.text);
        assert!(reply.text.contains(fragment), "{body}: {}", reply.text);
    }
    let anonymous = server
        .call(
            Method::POST,
            "/api/v1/feedback",
            None,
            Some(json!({"targetingKey": "u", "score": 5})),
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        server
            .state
            .store
            .event_count("production")
            .await
            .expect("count"),
        0
    );
}
