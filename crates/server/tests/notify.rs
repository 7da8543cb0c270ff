//! Notification channels end to end: a real webhook receiver on loopback,
//! a channel pointing at it, a rollout that a planted error regression rolls
//! back. The rollback alert arrives signed and names the flag, the phase, the
//! trigger and the evidence; a receiver that fails twice gets the delivery on
//! the third attempt; `GET /api/v1/deliveries` shows attempts and status;
//! two servers in one process keep their own retry policy and wake-up.

mod common;

use std::time::{Duration, Instant};

use common::receiver;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use server::notify::DeliveryPolicy;

const UNITS: usize = 1_000;
const SECRET: &str = "webhook-secret";

/// A server whose deliveries are retried after 10 ms, 20 ms, …: the test
/// never waits seconds.
fn fast_retries() -> server::ServerConfig {
    with_policy(DeliveryPolicy {
        backoff_base_ms: 10,
        poll_interval_ms: 20,
        ..DeliveryPolicy::default()
    })
}

fn with_policy(delivery: DeliveryPolicy) -> server::ServerConfig {
    server::ServerConfig {
        delivery,
        ..server::ServerConfig::default()
    }
}

fn config(url: &str, format: &str, events: Value) -> Value {
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
            "phases": [
                {"name": "beta", "percent": 30, "duration": "1h"},
                {"name": "everyone", "percent": 100, "duration": "1h"}
            ],
            "guards": [{"metric": "error_rate", "max": 0.02, "action": "rollback",
                        "min_samples": 100}]
        }],
        "channels": [{
            "key": "ops", "url": url, "format": format, "secret": SECRET,
            "events": events, "levels": ["L2", "L3"]
        }]
    })
}

/// Starts the rollout and plants a 10% error rate in the treatment; the
/// controller's next step rolls it back.
async fn roll_back_on_a_regression(server: &common::TestServer) {
    let token = server.client_token("production").await;
    server.start_rollout("calc-model").await;
    server
        .plant_error_regression(&token, "calc-model", UNITS)
        .await;
    let status = server
        .admin(Method::GET, "/api/v1/rollouts/calc-model", None)
        .await;
    assert_eq!(status.body["status"], "rolled_back", "{}", status.text);
}

#[tokio::test]
async fn a_rollback_alert_arrives_signed_and_names_flag_phase_trigger_and_evidence() {
    let hook = receiver::start(0).await;
    let server = common::start_with(fast_retries()).await;
    let applied = server
        .apply(config(
            &hook.url_for("hook"),
            "json",
            json!(["rollback", "phase_started"]),
        ))
        .await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.text);

    roll_back_on_a_regression(&server).await;
    let got = hook.wait_for_at("hook", 2).await;
    let events: Vec<&str> = got.iter().map(|r| r.event()).collect();
    assert_eq!(events, ["phase_started", "rollback"]);
    let alert = &got[1];
    assert!(alert.signed_with(SECRET));
    assert!(!alert.signed_with("another secret"));
    assert!(alert.headers.contains_key("x-rollgate-delivery"));

    let body: Value = serde_json::from_str(&alert.body).expect("json body");
    assert_eq!(body["event"], "rollback");
    assert_eq!(body["flag"], "calc-model");
    assert_eq!(body["phase"], "beta");
    assert_eq!(body["percent"], 30.0);
    assert_eq!(body["trigger"]["kind"], "guard", "{body}");
    let guard = &body["trigger"]["guards"][0];
    assert_eq!(guard["metric"], "error_rate", "{body}");
    assert_eq!(guard["limit"]["max"], 0.02, "{body}");
    assert!(guard["value"].as_f64().expect("value") > 0.02, "{body}");
    assert!(
        guard["interval"]["lower"].as_f64().expect("lower") > 0.02,
        "{body}"
    );
    assert_eq!(body["evidence"][0]["outcome"]["verdict"], "breached");
    assert!(
        body["evidence"][0]["values"]
            .as_array()
            .expect("values")
            .len()
            >= 2
    );

    let listed = server
        .admin(Method::GET, "/api/v1/deliveries?status=delivered", None)
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    let deliveries = listed.body["deliveries"].as_array().expect("deliveries");
    assert_eq!(deliveries.len(), 2, "{}", listed.text);
    assert_eq!(deliveries[0]["event"], "rollback");
    assert_eq!(deliveries[0]["attempts"], 1);
    // The secret is never shown.
    let export = server.admin(Method::GET, "/api/v1/export", None).await;
    assert_eq!(export.body["channels"][0]["secret"], "[redacted]");
    assert!(!export.text.contains(SECRET));
    let audit = server.admin(Method::GET, "/api/v1/audit", None).await;
    assert!(!audit.text.contains(SECRET), "{}", audit.text);
    server.stop().await;
}

#[tokio::test]
async fn a_receiver_that_fails_twice_gets_the_delivery_on_the_third_attempt() {
    let hook = receiver::start(2).await;
    let server = common::start_with(fast_retries()).await;
    let applied = server
        .apply(config(&hook.url_for("hook"), "slack", json!(["*"])))
        .await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.text);
    // Re-applying the export keeps the stored secret behind `[redacted]`.
    let export = server.admin(Method::GET, "/api/v1/export", None).await;
    let again = server.apply(export.body.clone()).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert!(
        again.body["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .all(|c| c["action"] == "unchanged"),
        "{}",
        again.text
    );

    server.start_rollout("calc-model").await;
    let got = hook.wait_for_at("hook", 3).await;
    assert!(got.iter().all(|r| r.body == got[0].body), "the same body");
    let ids: Vec<_> = got
        .iter()
        .map(|r| r.headers["x-rollgate-delivery"].clone())
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "the same delivery");
    let slack: Value = serde_json::from_str(&got[2].body).expect("json");
    assert!(slack["text"].as_str().expect("text").contains("calc-model"));
    assert!(slack["blocks"].is_array());

    let deadline = Instant::now() + Duration::from_secs(10);
    let delivered = loop {
        let listed = server.admin(Method::GET, "/api/v1/deliveries", None).await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
        let first = listed.body["deliveries"][0].clone();
        if first["status"] == "delivered" {
            break first;
        }
        assert!(Instant::now() < deadline, "{}", listed.text);
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(delivered["event"], "phase_started");
    assert_eq!(delivered["attempts"], 3, "{delivered}");
    assert_eq!(delivered["channel"], "ops");
    server.stop().await;
}

/// Waits (polling, with a deadline) until `server`'s newest delivery is no
/// longer queued, and returns it.
async fn settled(server: &common::TestServer) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = server.admin(Method::GET, "/api/v1/deliveries", None).await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
        let newest = listed.body["deliveries"][0].clone();
        if newest["status"] != "queued" && !newest.is_null() {
            return newest;
        }
        assert!(Instant::now() < deadline, "{}", listed.text);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Each server keeps its own retry policy and its own wake-up: one that gives
/// up at the first failure and one that retries run side by side in one
/// process. Their poll interval is far beyond the test's deadline, so each
/// first attempt leaves only because that server's own worker was woken.
#[tokio::test]
async fn two_servers_in_one_process_keep_their_own_policy_and_wake_up() {
    const NEVER_POLL_MS: u64 = 3_600_000;
    let patient_hook = receiver::start(2).await;
    let impatient_hook = receiver::start(usize::MAX).await;
    let patient = common::start_with(with_policy(DeliveryPolicy {
        backoff_base_ms: 10,
        poll_interval_ms: NEVER_POLL_MS,
        ..DeliveryPolicy::default()
    }))
    .await;
    let impatient = common::start_with(with_policy(DeliveryPolicy {
        give_up_after_ms: 0,
        poll_interval_ms: NEVER_POLL_MS,
        ..DeliveryPolicy::default()
    }))
    .await;
    for (server, hook) in [(&patient, &patient_hook), (&impatient, &impatient_hook)] {
        let applied = server
            .apply(config(&hook.url_for("hook"), "json", json!(["*"])))
            .await;
        assert_eq!(applied.status, StatusCode::OK, "{}", applied.text);
    }
    patient.start_rollout("calc-model").await;
    impatient.start_rollout("calc-model").await;

    let delivered = settled(&patient).await;
    assert_eq!(delivered["status"], "delivered", "{delivered}");
    assert_eq!(delivered["attempts"], 3, "{delivered}");
    assert_eq!(patient_hook.at("hook").len(), 3);
    let failed = settled(&impatient).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["attempts"], 1, "{failed}");
    assert!(
        failed["lastError"]
            .as_str()
            .expect("lastError")
            .contains("500"),
        "{failed}"
    );
    assert_eq!(impatient_hook.at("hook").len(), 1);
    patient.stop().await;
    impatient.stop().await;
}

#[tokio::test]
async fn a_bad_channel_is_refused_naming_the_problem() {
    let server = common::start().await;
    let base = config("https://hooks.example.com/T0", "json", json!(["rollback"]));
    let with_channel = |change: &dyn Fn(&mut Value)| {
        let mut doc = base.clone();
        change(&mut doc["channels"][0]);
        doc
    };
    let cases: Vec<(Value, &str)> = vec![
        (with_channel(&|c| c["colour"] = json!("red")), "colour"),
        (
            with_channel(&|c| c["url"] = json!("ftp://hooks.example.com/")),
            "url",
        ),
        (with_channel(&|c| c["url"] = json!("not a url")), "url"),
        (
            with_channel(&|c| c["events"] = json!(["rollback", "explosion"])),
            "explosion",
        ),
        (with_channel(&|c| c["levels"] = json!(["L9"])), "L9"),
    ];
    for (doc, named) in cases {
        let reply = server.apply(doc).await;
        assert!(reply.status.is_client_error(), "{named}: {}", reply.text);
        assert!(reply.text.contains(named), "{named}: {}", reply.text);
    }
    // Nothing of a refused document was written.
    let export = server.admin(Method::GET, "/api/v1/export", None).await;
    assert!(export.body.get("channels").is_none(), "{}", export.text);
    let bad_status = server
        .admin(Method::GET, "/api/v1/deliveries?status=lost", None)
        .await;
    assert_eq!(bad_status.status, StatusCode::BAD_REQUEST);
    server.stop().await;
}
