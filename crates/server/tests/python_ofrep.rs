//! The published OpenFeature Python SDK with its OFREP provider, run as a real
//! process against the running server, with a client token.
//!
//! The Python side is `tests/python/ofrep_client.py`; the flags it resolves are
//! `examples/ofrep-types.toml`. `scripts/test` creates the virtual environment
//! and points `ROLLGATE_TEST_PYTHON` at its interpreter.

mod common;

use std::path::PathBuf;
use std::process::Stdio;

use common::start;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The interpreter with `openfeature-sdk` and `openfeature-provider-ofrep` installed.
const PYTHON_ENV: &str = "ROLLGATE_TEST_PYTHON";

fn workspace_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../"))
}

/// The interpreter to run, or `None` when this test should be skipped. CI must
/// never skip it silently. A relative path such as `.venv/bin/python` is taken
/// from the workspace root when it exists there, since tests run in the crate's
/// own folder.
fn python() -> Option<String> {
    match std::env::var(PYTHON_ENV) {
        Ok(python) if !python.is_empty() => {
            let in_root = workspace_root().join(&python);
            let relative = python.contains('/') && !python.starts_with('/');
            Some(if relative && in_root.exists() {
                in_root.display().to_string()
            } else {
                python
            })
        }
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "{PYTHON_ENV} is not set; run the tests through scripts/test, which sets up .venv and sets it"
            )
        }
        _ => {
            eprintln!(
                "notice: {PYTHON_ENV} is not set, so the Python OFREP client was not run; scripts/test sets it up"
            );
            None
        }
    }
}

#[tokio::test]
async fn the_python_sdk_resolves_the_example_flags_with_a_client_token() {
    let Some(python) = python() else { return };
    let root = workspace_root();

    let file = root.join("examples/ofrep-types.toml");
    let text =
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    let doc: Value =
        toml::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", file.display()));

    let server = start().await;
    let applied = server.apply(doc).await;
    assert_eq!(
        applied.status,
        StatusCode::OK,
        "apply {}: {}",
        file.display(),
        applied.text
    );

    let created = server
        .admin(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "python", "kind": "client", "environment": "production"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let secret = created.body["secret"].as_str().expect("secret").to_owned();

    let script = root.join("tests/python/ofrep_client.py");
    // The SDK blocks, so it runs off the runtime that serves its requests.
    let mut command = std::process::Command::new(&python);
    command
        .arg(&script)
        .arg(&server.url)
        .arg(&secret)
        .current_dir(&root)
        .stdin(Stdio::null());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the Python client's thread")
        .unwrap_or_else(|e| panic!("start {python} {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Shown with `--no-capture`; a failure shows it anyway.
    println!("{stdout}");
    assert!(
        output.status.success(),
        "{python} {} exited with {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        script.display(),
        output.status
    );

    server.stop().await;
}
