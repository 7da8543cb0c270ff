//! `rollgate report status FLAG` against a real `rollgate serve`: a rollout
//! started with the CLI, real events, and the report printed as Markdown
//! (and as JSON with `--json`).

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ADMIN: &str = "report-test-admin";

fn rollgate(url: &str, args: &[&str]) -> Output {
    let mut command = Command::new(common::BIN);
    for var in ["ROLLGATE_SERVER", "ROLLGATE_TOKEN", "RUST_LOG"] {
        command.env_remove(var);
    }
    command
        .args(["--server", url, "--token", ADMIN])
        .args(args)
        .output()
        .expect("run rollgate")
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8")
}

#[test]
fn report_status_prints_the_rollout_as_markdown() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let (mut child, url) = common::spawn_serve(
        &[std::ffi::OsStr::new("--data-dir"), data.as_os_str()],
        ADMIN,
    );

    let config = dir.path().join("rollout.json");
    std::fs::write(
        &config,
        json!({
            "flags": [{"key": "calc-model", "type": "string", "off_variant": "simple",
                       "variants": {"simple": "simple", "advanced": "advanced"},
                       "default": {"serve": {"variant": "simple"}}}],
            "metrics": [{"key": "error_rate", "kind": "ratio", "numerator": "calc_error",
                         "denominator": "calc_request", "higher_is_better": false}],
            "rollouts": [{"flag": "calc-model", "treatment": "advanced", "control": "simple",
                          "description": "The new model <b>now</b>",
                          "phases": [{"name": "beta", "percent": 30, "duration": "1h"},
                                     {"name": "everyone", "percent": 100, "duration": "1h"}],
                          "success": [{"metric": "error_rate", "max": 0.5, "min_samples": 10}],
                          "guards": [{"metric": "error_rate", "max": 0.9, "min_samples": 10}]}]
        })
        .to_string(),
    )
    .expect("write config");
    ok(&rollgate(&url, &["apply", config.to_str().expect("path")]));
    ok(&rollgate(
        &url,
        &["rollout", "start", "calc-model", "--reason", "beta"],
    ));
    let secret = ok(&rollgate(
        &url,
        &[
            "token",
            "create",
            "--name",
            "app",
            "--kind",
            "client",
            "-e",
            "production",
        ],
    ));
    let secret = secret
        .trim()
        .lines()
        .last()
        .expect("secret")
        .trim()
        .to_owned();

    // Real events: an exposure and requests per unit, errors for some.
    let mut events = Vec::new();
    for i in 0..100 {
        let unit = format!("user-{i}");
        let variant = if i % 2 == 0 { "advanced" } else { "simple" };
        events.push(json!({"kind": "exposure", "flag": "calc-model", "variant": variant, "targetingKey": unit}));
        for k in 0..4 {
            events.push(json!({"kind": "track", "name": "calc_request", "targetingKey": unit}));
            if k == 0 && i % 5 == 0 {
                events.push(json!({"kind": "track", "name": "calc_error", "targetingKey": unit}));
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let reply = reqwest::Client::new()
            .post(format!("{url}/api/v1/events"))
            .bearer_auth(&secret)
            .json(&json!({ "events": events }))
            .send()
            .await
            .expect("send events");
        assert!(reply.status().is_success(), "{:?}", reply.text().await);
    });

    // The server folds events in the background: wait (polling, with a
    // deadline) until the gate has seen the treatment's units.
    let deadline = Instant::now() + Duration::from_secs(20);
    let report: Value = loop {
        let text = ok(&rollgate(
            &url,
            &["report", "status", "calc-model", "--json"],
        ));
        let report: Value = serde_json::from_str(&text).expect("--json prints JSON");
        if report["checks"][0]["units"].as_u64().unwrap_or(0) > 0 {
            break report;
        }
        assert!(
            Instant::now() < deadline,
            "no data reached the report: {report}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(report["kind"], "status");
    assert_eq!(report["rollout"]["phase"], "beta");
    assert_eq!(report["checks"][0]["units"], 50);

    let markdown = ok(&rollgate(&url, &["report", "status", "calc-model"]));
    for line in [
        "# Daily status: `calc-model` in `production`",
        "- Phase: `beta` (1 of 2), 30%",
        "## Gates",
        "| `error_rate` | `advanced` |",
        "## Key metrics: change since yesterday",
        "## Incidents",
        "The new model &lt;b&gt;now&lt;/b&gt;",
    ] {
        assert!(markdown.contains(line), "`{line}` missing:\n{markdown}");
    }
    let notes = ok(&rollgate(&url, &["report", "release-notes", "calc-model"]));
    assert!(notes.contains("# Release notes"), "{notes}");

    let missing = rollgate(&url, &["report", "review", "no-such-flag"]);
    assert_eq!(missing.status.code(), Some(1));
    let error = String::from_utf8_lossy(&missing.stderr);
    assert!(
        error.contains("no rollout plan") && error.contains("404"),
        "{error}"
    );

    child.kill().expect("stop the server");
    let _ = child.wait();
}
