//! Experiments end to end over HTTP on a real server and SQLite file: a
//! 4-arm experiment whose units are assigned by OFREP evaluations (which
//! record the exposures), events with a planted effect sent through
//! `POST /api/v1/events`, and the results endpoint, which must find the
//! effect, agree with a brute-force count, pass the sample-ratio check,
//! adjust with CUPED, and steer the automatic arm to the better model.

mod common;

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ARMS: [&str; 4] = ["simple", "advanced", "choice", "auto"];
const UNITS: usize = 4_000;

fn config() -> Value {
    json!({
        "flags": [{
            "key": "calc-model", "type": "string", "off_variant": "current",
            "variants": {"current": "current", "simple": "simple", "advanced": "advanced",
                         "choice": "choice", "auto": "auto"},
            "default": {"serve": {"split": {"simple": 25, "advanced": 25, "choice": 25, "auto": 25},
                                  "rollout": 80, "otherwise": "current"}}
        }],
        "metrics": [
            {"key": "converted", "kind": "proportion", "event": "checkout"},
            {"key": "calcs", "kind": "mean", "event": "calc_request", "agg": "count"},
            {"key": "error_rate", "kind": "ratio", "numerator": "calc_error",
             "denominator": "calc_request", "higher_is_better": false}
        ],
        "experiments": [{
            "key": "calc-models", "flag": "calc-model",
            "arms": [{"variant": "simple", "weight": 1}, {"variant": "advanced", "weight": 1},
                     {"variant": "choice", "weight": 1}, {"variant": "auto", "weight": 1}],
            "primary_metrics": ["converted"], "secondary_metrics": ["calcs"],
            "guardrail_metrics": ["error_rate"], "cuped": true,
            "sequential": true, "sequential_tuning": 2000,
            "auto_select": {"arm": "auto", "among": ["simple", "advanced"], "metric": "converted"}
        }]
    })
}

/// A deterministic stand-in for chance: unit `i` falls below `share`.
fn below(i: usize, salt: usize, share: f64) -> bool {
    ((i * 7919 + salt * 104_729) % 1000) as f64 / 1000.0 < share
}

fn track(unit: &str, name: &str, timestamp: &str) -> Value {
    json!({"kind": "track", "name": name, "targetingKey": unit, "timestamp": timestamp})
}

async fn send(server: &common::TestServer, token: &str, events: Vec<Value>) {
    for chunk in events.chunks(1000) {
        let reply = server
            .call(
                Method::POST,
                "/api/v1/events",
                Some(token),
                Some(json!({ "events": chunk })),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }
}

fn metric<'a>(results: &'a Value, key: &str) -> &'a Value {
    results["metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .find(|m| m["metric"] == key)
        .unwrap_or_else(|| panic!("metric {key} in {results}"))
}

fn comparison<'a>(metric: &'a Value, variant: &str) -> &'a Value {
    metric["comparisons"]
        .as_array()
        .expect("comparisons")
        .iter()
        .find(|c| c["variant"] == variant)
        .unwrap_or_else(|| panic!("comparison {variant} in {metric}"))
}

#[tokio::test]
async fn a_four_arm_experiment_finds_its_planted_effect() {
    let server = common::start().await;
    let applied = server.apply(config()).await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.text);
    let token = server.client_token("production").await;

    // Before exposure: every unit's activity (CUPED's covariate).
    let units: Vec<String> = (0..UNITS).map(|i| format!("user-{i}")).collect();
    // Exposures are stamped when OFREP serves them: events are timed around now.
    let an_hour_ago = server::admin::rfc3339(server::now_ms() - 3_600_000);
    let activity = |i: usize| i % 7;
    let mut before = Vec::new();
    for (i, unit) in units.iter().enumerate() {
        for _ in 0..activity(i) {
            before.push(track(unit, "calc_request", &an_hour_ago));
        }
    }
    send(&server, &token, before).await;
    server.fold_all().await;

    // Exposure: the application evaluates the flag over OFREP.
    let mut served: BTreeMap<String, usize> = BTreeMap::new();
    let mut arm_of = Vec::with_capacity(UNITS);
    for unit in &units {
        let reply = server
            .eval(&token, "calc-model", json!({"targetingKey": unit}))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let variant = reply.body["variant"].as_str().expect("variant").to_owned();
        *served.entry(variant.clone()).or_default() += 1;
        arm_of.push(variant);
    }
    server
        .state
        .ingest
        .flush_exposures()
        .await
        .expect("flush exposures");
    let outside = served.get("current").copied().unwrap_or(0);
    assert!(
        (600..1000).contains(&outside),
        "about 20% outside the rollout: {served:?}"
    );

    let now = server::admin::rfc3339(server::now_ms());
    // After exposure: `advanced` converts at 30%, the others at 10%, and
    // calculates 2 more times per unit; calculations follow the unit's past.
    let mut after = Vec::new();
    let mut conversions: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (i, unit) in units.iter().enumerate() {
        let arm = arm_of[i].as_str();
        if arm == "current" {
            continue;
        }
        let rate = if arm == "advanced" { 0.3 } else { 0.1 };
        let converted = below(i, 1, rate);
        let entry = conversions
            .entry(ARMS[ARMS.iter().position(|a| *a == arm).expect("arm")])
            .or_default();
        entry.0 += 1;
        entry.1 += u64::from(converted);
        if converted {
            after.push(track(unit, "checkout", &now));
        }
        let calcs =
            activity(i) + if arm == "advanced" { 2 } else { 0 } + usize::from(below(i, 2, 0.5));
        for _ in 0..calcs {
            after.push(track(unit, "calc_request", &now));
        }
        if below(i, 3, 0.02) {
            after.push(track(unit, "calc_error", &now));
        }
    }
    send(&server, &token, after).await;
    server.fold_all().await;

    let reply = server
        .admin(Method::GET, "/api/v1/experiments/calc-models/results", None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let results = &reply.body;
    assert_eq!(results["srm"]["verdict"], "ok", "{results}");
    assert_eq!(results["warnings"], json!([]), "{results}");

    // Sample sizes and values agree with a count of what was served and sent.
    for arm in results["arms"].as_array().expect("arms") {
        let variant = arm["variant"].as_str().expect("variant");
        assert_eq!(arm["units"], json!(served[variant]), "{arm}");
    }
    let converted = metric(results, "converted");
    for arm in converted["arms"].as_array().expect("arms") {
        let variant = arm["variant"].as_str().expect("variant");
        let (n, c) = conversions[variant];
        let value = arm["value"].as_f64().expect("value");
        assert!((value - c as f64 / n as f64).abs() < 1e-12, "{arm}");
    }

    // The planted effect is found, with an interval around the true +200%,
    // and nothing else is.
    // Sequential: the always-valid interval, with the experiment's tuning.
    let sequential = &converted["analysis"]["comparisons"][0]["relative"]["sequential"];
    assert_eq!(
        sequential["tuning_parameter"],
        json!(2000.0),
        "{sequential}"
    );
    assert_eq!(results["sequentialTuning"], json!(2000.0));
    let advanced = comparison(converted, "advanced");
    assert_eq!(advanced["verdict"], "better", "{advanced}");
    let lift = &advanced["relative"];
    let ci = lift["ci"].as_array().expect("ci");
    assert!(
        ci[0].as_f64().expect("lo") > 0.0 && ci[0].as_f64().expect("lo") < 2.0,
        "{lift}"
    );
    assert!(ci[1].as_f64().expect("hi") > 2.0, "{lift}");
    assert!(
        lift["pValueAdjusted"].as_f64().expect("adjusted") >= lift["pValue"].as_f64().expect("raw")
    );
    assert!(advanced["chanceToBeatControl"].as_f64().expect("chance") > 0.99);
    for variant in ["choice", "auto"] {
        assert_eq!(
            comparison(converted, variant)["verdict"],
            "inconclusive",
            "{variant}"
        );
    }

    // CUPED: the covariate is the unit's pre-exposure activity, which
    // predicts its calculations, so θ ≈ 1 and the adjusted variance is far
    // smaller than the raw one.
    let calcs = metric(results, "calcs");
    assert_eq!(calcs["cuped"], true);
    assert_eq!(comparison(calcs, "advanced")["verdict"], "better");
    let fit = &calcs["analysis"]["comparisons"][0]["cuped"];
    let theta = fit["theta"].as_f64().expect("theta");
    assert!((theta - 1.0).abs() < 0.1, "{fit}");
    let control = &fit["control"];
    assert!(
        control["adj_var"].as_f64().expect("adjusted")
            < 0.2 * control["var_post"].as_f64().expect("raw"),
        "{fit}"
    );
    // The pre-exposure means are the planted activity (0..6, mean 3).
    assert!(
        (control["pre_mean"].as_f64().expect("pre") - 3.0).abs() < 0.3,
        "{fit}"
    );

    // The guardrail sees no harm: errors were planted evenly.
    let errors = metric(results, "error_rate");
    assert_eq!(errors["role"], "guardrail");
    for variant in ["advanced", "choice", "auto"] {
        assert_eq!(
            comparison(errors, variant)["harmDetected"],
            false,
            "{variant}"
        );
    }

    // Thompson sampling: `advanced` is almost surely best on conversions, so
    // the automatic arm's units are served its value, and stay `auto`.
    let choices = results["autoSelect"]["choices"]
        .as_array()
        .expect("choices");
    let advanced_p = choices
        .iter()
        .find(|c| c[0] == "advanced")
        .and_then(|c| c[1].as_f64())
        .expect("advanced's probability");
    assert!(advanced_p > 0.999, "{choices:?}");
    server
        .state
        .refresh_selections("production")
        .await
        .expect("refresh selections");
    let mut auto_units = 0;
    for (i, unit) in units
        .iter()
        .enumerate()
        .filter(|(i, _)| arm_of[*i] == "auto")
    {
        let reply = server
            .eval(&token, "calc-model", json!({"targetingKey": unit}))
            .await;
        assert_eq!(reply.body["variant"], "auto", "{i}: {}", reply.text);
        assert_eq!(reply.body["value"], "advanced", "{}", reply.text);
        assert_eq!(reply.body["metadata"]["selectedVariant"], "advanced");
        auto_units += 1;
    }
    assert!(auto_units > 500);
    server.stop().await;
}

#[tokio::test]
async fn experiments_are_listed_exported_and_refused_when_wrong() {
    let server = common::start().await;
    assert_eq!(server.apply(config()).await.status, StatusCode::OK);
    let list = server.admin(Method::GET, "/api/v1/experiments", None).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["experiments"][0]["key"], "calc-models");
    assert_eq!(list.body["experiments"][0]["flag"], "calc-model");
    let export = server.admin(Method::GET, "/api/v1/export", None).await;
    assert_eq!(
        export.body["experiments"][0]["arms"][0]["variant"], "simple",
        "{}",
        export.text
    );
    // Results of an experiment without data: every arm too small, said so.
    let empty = server
        .admin(Method::GET, "/api/v1/experiments/calc-models/results", None)
        .await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.text);
    let warnings = empty.body["warnings"].to_string();
    assert!(warnings.contains("too small"), "{warnings}");
    let first = comparison(metric(&empty.body, "converted"), "advanced");
    assert_eq!(first["verdict"], "insufficient data", "{first}");
    // Unknown experiments are 404; a bad experiment is a 422 naming it, and
    // nothing changes.
    let missing = server
        .admin(Method::GET, "/api/v1/experiments/nope/results", None)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let mut bad = config();
    bad["experiments"][0]["arms"][1]["variant"] = json!("turbo");
    bad["experiments"][0]["alpha"] = json!(0.9);
    let reply = server.apply(bad).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert!(reply.text.contains("arms[1].variant"), "{}", reply.text);
    assert!(reply.text.contains("alpha"), "{}", reply.text);
    let after = server
        .admin(Method::GET, "/api/v1/experiments/calc-models", None)
        .await;
    assert_eq!(after.body["experiment"]["arms"][1]["variant"], "advanced");
    assert_eq!(after.body["version"], 1);
    // Unknown fields are named.
    let mut unknown = config();
    unknown["experiments"][0]["arm_weights"] = json!([1, 1]);
    let reply = server.apply(unknown).await;
    assert_eq!(reply.status.as_u16() / 100, 4, "{}", reply.text);
    assert!(reply.text.contains("arm_weights"), "{}", reply.text);
    server.stop().await;
}
