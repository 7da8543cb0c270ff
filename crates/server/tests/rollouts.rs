//! Staged rollouts end to end on a real server and SQLite file: a plan is
//! applied and started over HTTP, OFREP serves its percentage, events with a
//! planted error regression arrive over HTTP, and the controller rolls back:
//! OFREP serves the control to everyone, an incident holds the evidence, and
//! the audit log names the controller.

mod common;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const UNITS: usize = 1_000;

/// A plan over `calc-model` whose phases last `duration` each.
fn config(duration: &str) -> Value {
    json!({
        "flags": [{
            "key": "calc-model", "type": "string", "off_variant": "simple",
            "variants": {"simple": "simple", "advanced": "advanced"},
            "rules": [{"name": "internal", "conditions": [{"attribute": "email", "op": "ends_with", "values": ["@example.com"]}],
                       "serve": {"variant": "advanced"}}],
            "default": {"serve": {"variant": "simple"}}
        }],
        "metrics": [
            {"key": "error_rate", "kind": "ratio", "numerator": "calc_error",
             "denominator": "calc_request", "higher_is_better": false}
        ],
        "rollouts": [{
            "flag": "calc-model", "treatment": "advanced", "control": "simple",
            "phases": [
                {"name": "beta", "percent": 30, "duration": duration},
                {"name": "expansion", "percent": 60, "duration": duration},
                {"name": "everyone", "percent": 100, "duration": duration}
            ],
            "guards": [{"metric": "error_rate", "max": 0.02, "action": "rollback",
                        "min_samples": 100}]
        }]
    })
}

async fn command(server: &common::TestServer, name: &str, body: Value) -> common::Reply {
    server
        .admin(
            Method::POST,
            &format!("/api/v1/rollouts/calc-model/{name}"),
            Some(body),
        )
        .await
}

async fn served(server: &common::TestServer, token: &str, unit: &str) -> String {
    let reply = server
        .eval(token, "calc-model", json!({"targetingKey": unit}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body["variant"].as_str().expect("variant").to_owned()
}

#[tokio::test]
async fn a_planted_error_regression_rolls_the_release_back() {
    let server = common::start().await;
    let applied = server.apply(config("1h")).await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.text);
    let token = server.client_token("production").await;
    let units: Vec<String> = (0..UNITS).map(|i| format!("user-{i}")).collect();
    for unit in units.iter().take(20) {
        assert_eq!(
            served(&server, &token, unit).await,
            "simple",
            "before the start"
        );
    }

    let started = command(&server, "start", json!({"reason": "beta"})).await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.text);
    assert_eq!(started.body["status"], "running");
    assert_eq!(started.body["phase"], "beta");
    assert_eq!(started.body["percent"], json!(30.0));

    // OFREP serves the phase's percentage, sticky; targeting rules still apply.
    let mut arm = Vec::with_capacity(UNITS);
    for unit in &units {
        arm.push(served(&server, &token, unit).await);
    }
    let treated = arm.iter().filter(|v| *v == "advanced").count();
    assert!((240..360).contains(&treated), "{treated} of {UNITS} at 30%");
    let internal = server
        .eval(
            &token,
            "calc-model",
            json!({"targetingKey": "user-1", "email": "a@example.com"}),
        )
        .await;
    assert_eq!(internal.body["variant"], "advanced");
    server.state.ingest.flush_exposures().await.expect("flush");

    // Applying the flag file again leaves the rollout's split alone, and says so.
    let again = server.apply(config("1h")).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert!(
        again.text.contains("the rollout's split was kept"),
        "{}",
        again.text
    );
    assert_eq!(served(&server, &token, &units[0]).await, arm[0]);

    // The treatment fails 10% of calculations, the control 0.5%.
    let now = server::admin::rfc3339(server::now_ms());
    let mut events = Vec::new();
    for (i, unit) in units.iter().enumerate() {
        for k in 0..10 {
            events.push(json!({"kind": "track", "name": "calc_request", "targetingKey": unit, "timestamp": now}));
            let failing = if arm[i] == "advanced" {
                k == 0
            } else {
                k == 0 && i % 20 == 0
            };
            if failing {
                events.push(json!({"kind": "track", "name": "calc_error", "targetingKey": unit, "timestamp": now}));
            }
        }
    }
    server.send_events(&token, &events).await;
    server.fold_all().await;
    server::rollouts::step_all(&server.state).await;

    // Rolled back: control for everyone, at once.
    for (i, unit) in units.iter().enumerate() {
        assert_eq!(
            served(&server, &token, unit).await,
            "simple",
            "{unit} was {}",
            arm[i]
        );
    }
    let status = server
        .admin(Method::GET, "/api/v1/rollouts/calc-model", None)
        .await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.text);
    assert_eq!(status.body["status"], "rolled_back", "{}", status.text);
    let incident = &status.body["incidents"][0];
    assert_eq!(incident["openedBy"], "controller", "{incident}");
    assert_eq!(incident["kind"], "guard_rollback", "{incident}");
    let evidence = incident["evidence"]["evidence"][0].clone();
    assert_eq!(evidence["metric"], "error_rate", "{incident}");
    assert_eq!(evidence["outcome"]["verdict"], "breached", "{evidence}");
    let lower = evidence["interval"]["lower"]
        .as_f64()
        .expect("a lower bound");
    assert!(lower > 0.02, "{evidence}");
    let units_seen: u64 = evidence["values"]
        .as_array()
        .expect("values")
        .iter()
        .filter_map(|v| v["units"].as_u64())
        .sum();
    assert!(units_seen >= UNITS as u64 - 5, "{evidence}");

    // The audit log shows who did it.
    let audit = server
        .admin(Method::GET, "/api/v1/audit?actor=controller", None)
        .await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.text);
    let actions: Vec<&str> = audit.body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"incident.opened"), "{actions:?}");
    assert!(actions.contains(&"flag.updated"), "{actions:?}");

    // Nothing more to do on a rolled-back rollout; a restart brings the same
    // units back first.
    let refused = command(&server, "advance", json!({})).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
    let restarted = command(&server, "restart", json!({"reason": "fixed"})).await;
    assert_eq!(restarted.status, StatusCode::OK, "{}", restarted.text);
    // The new generation watches only its own data: the old regression does
    // not roll it back again.
    server::rollouts::step_all(&server.state).await;
    let status = server
        .admin(Method::GET, "/api/v1/rollouts/calc-model", None)
        .await;
    assert_eq!(status.body["status"], "running", "{}", status.text);
    for (i, unit) in units.iter().enumerate().take(200) {
        assert_eq!(served(&server, &token, unit).await, arm[i], "{unit}");
    }
    server.stop().await;
}

#[tokio::test]
async fn people_steer_a_rollout_and_bad_commands_are_refused() {
    let server = common::start().await;
    assert_eq!(server.apply(config("1h")).await.status, StatusCode::OK);
    let status = server
        .admin(Method::GET, "/api/v1/rollouts/calc-model", None)
        .await;
    assert_eq!(status.body["status"], "pending", "{}", status.text);
    let started = command(&server, "start", json!({})).await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.text);
    let advanced = command(&server, "advance", json!({"reason": "looks fine"})).await;
    assert_eq!(advanced.body["phase"], "expansion", "{}", advanced.text);
    let paused = command(&server, "pause", json!({"reason": "holiday"})).await;
    assert_eq!(paused.body["status"], "paused", "{}", paused.text);
    let resumed = command(&server, "resume", json!({})).await;
    assert_eq!(resumed.body["status"], "running", "{}", resumed.text);
    let extended = command(&server, "extend", json!({"by": "2d"})).await;
    assert_eq!(extended.status, StatusCode::OK, "{}", extended.text);
    for (body, expected) in [
        (json!({"by": "2 weeks"}), StatusCode::BAD_REQUEST),
        (json!({}), StatusCode::BAD_REQUEST),
        (json!({"by": "1d", "why": "x"}), StatusCode::BAD_REQUEST),
    ] {
        let reply = command(&server, "extend", body.clone()).await;
        assert_eq!(reply.status, expected, "{body}: {}", reply.text);
    }
    // A manual rollback needs a reason, and opens an incident.
    let bare = command(&server, "rollback", json!({})).await;
    assert_eq!(bare.status, StatusCode::BAD_REQUEST, "{}", bare.text);
    let rolled = command(&server, "rollback", json!({"reason": "critical bug"})).await;
    assert_eq!(rolled.body["status"], "rolled_back", "{}", rolled.text);
    assert_eq!(rolled.body["incidents"][0]["kind"], "manual_rollback");
    assert_eq!(rolled.body["incidents"][0]["openedBy"], common::ADMIN_NAME);
    let unknown = command(&server, "explode", json!({})).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text);
    let no_plan = server
        .admin(
            Method::POST,
            "/api/v1/rollouts/other/start",
            Some(json!({})),
        )
        .await;
    assert_eq!(no_plan.status, StatusCode::NOT_FOUND, "{}", no_plan.text);
    // A bad plan is refused whole, naming the field.
    let mut bad = config("1h");
    bad["rollouts"][0]["phases"][1]["duration"] = json!("2 weeks");
    bad["rollouts"][0]["treatment"] = json!("turbo");
    let reply = server.apply(bad).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert!(reply.text.contains("phases[1].duration"), "{}", reply.text);
    assert!(reply.text.contains("turbo"), "{}", reply.text);
    server.stop().await;
}

#[tokio::test]
async fn second_long_phases_advance_by_themselves_to_completion() {
    let server = common::start().await;
    assert_eq!(server.apply(config("1s")).await.status, StatusCode::OK);
    let token = server.client_token("production").await;
    let started = command(&server, "start", json!({})).await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.text);
    // The server's own controller advances each phase when its second is
    // up (no gates here); wait for it, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        let status = server
            .admin(Method::GET, "/api/v1/rollouts/calc-model", None)
            .await;
        let now = format!(
            "{}:{}",
            status.body["status"].as_str().unwrap_or("-"),
            status.body["phase"].as_str().unwrap_or("-")
        );
        if seen.last() != Some(&now) {
            seen.push(now.clone());
        }
        if status.body["status"] == "completed" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "stuck: {seen:?}");
        // Polling, not timing: the assertion waits for a state, however long it takes.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen.first().map(String::as_str),
        Some("running:beta"),
        "{seen:?}"
    );
    assert!(seen.iter().any(|s| s == "running:expansion"), "{seen:?}");
    // Completed at 100%: the treatment for everyone (targeting rules still first).
    for i in 0..50 {
        assert_eq!(
            served(&server, &token, &format!("user-{i}")).await,
            "advanced"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_rollout_carries_on_after_a_server_restart() {
    let server = common::start().await;
    assert_eq!(server.apply(config("1h")).await.status, StatusCode::OK);
    let started = command(&server, "start", json!({})).await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.text);
    let advanced = command(&server, "advance", json!({})).await;
    assert_eq!(advanced.body["phase"], "expansion", "{}", advanced.text);
    let token = server.client_token("production").await;
    let before: Vec<String> = served_to_first_units(&server, &token).await;
    let data_dir = server.stop_keeping_data().await;

    let server = common::start_in(data_dir, ingest::pipeline::QUEUE_BATCHES).await;
    let status = server
        .admin(Method::GET, "/api/v1/rollouts/calc-model", None)
        .await;
    assert_eq!(status.body["status"], "running", "{}", status.text);
    assert_eq!(status.body["phase"], "expansion");
    assert_eq!(
        status.body["phaseStartedAt"],
        advanced.body["phaseStartedAt"]
    );
    assert_eq!(status.body["phaseEndsAt"], advanced.body["phaseEndsAt"]);
    assert_eq!(
        served_to_first_units(&server, &token).await,
        before,
        "the same units, the same variants"
    );
    server.stop().await;
}

/// The variants served to the first 100 units.
async fn served_to_first_units(server: &common::TestServer, token: &str) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..100 {
        out.push(served(server, token, &format!("user-{i}")).await);
    }
    out
}

#[tokio::test]
async fn general_availability_sends_the_plans_feature_announcement() {
    let hook = common::receiver::start(0).await;
    let server = common::start().await;
    let mut doc = config("1h");
    doc["rollouts"][0]["announcement"] =
        json!("The advanced calculation model is now available to everyone.");
    doc["channels"] = json!([
        {"key": "news", "url": format!("{}/news", hook.url), "format": "json",
         "secret": "s", "events": ["feature_announcement"]},
        {"key": "ops", "url": format!("{}/ops", hook.url), "format": "slack",
         "secret": "s", "events": ["phase_started", "phase_advanced"]}
    ]);
    let applied = server.apply(doc).await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.text);
    for name in ["start", "advance"] {
        let reply = command(&server, name, json!({})).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }
    // Not yet at general availability: nothing for the news channel.
    let ops = hook.wait_for_at("ops", 2).await;
    assert!(hook.at("news").is_empty());
    let advanced = command(&server, "advance", json!({})).await;
    assert_eq!(advanced.body["phase"], "everyone", "{}", advanced.text);
    let news = hook.wait_for_at("news", 1).await;
    assert_eq!(news[0].event(), "feature_announcement");
    assert!(news[0].signed_with("s"));
    let body = news[0].json();
    assert_eq!(
        body["summary"],
        "The advanced calculation model is now available to everyone."
    );
    assert_eq!(body["percent"], 100.0);
    let events: Vec<&str> = ops.iter().map(|r| r.event()).collect();
    assert_eq!(events, ["phase_started", "phase_advanced"]);
    assert_eq!(
        hook.wait_for_at("ops", 3).await[2].event(),
        "phase_advanced"
    );
    server.stop().await;
}
