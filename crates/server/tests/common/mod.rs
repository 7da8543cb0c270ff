//! Shared helpers for the server's integration tests: a real server on a
//! loopback port with a fresh store, and a small JSON client.
//!
//! The store is a SQLite file in a fresh data dir, or, with
//! `ROLLGATE_TEST_SERVER_BACKEND=postgres`, a fresh PostgreSQL database
//! (`store::test_support`): `scripts/test` runs this suite both ways.
#![allow(dead_code)]

pub mod browser;
pub mod receiver;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;

pub const ADMIN_TOKEN: &str = "test-admin-token";
/// The name of the token the server bootstraps from `ADMIN_TOKEN`.
pub const ADMIN_NAME: &str = "bootstrap-admin";

pub struct TestServer {
    pub url: String,
    pub http: reqwest::Client,
    pub data_dir: tempfile::TempDir,
    /// The PostgreSQL database, when the suite runs on PostgreSQL.
    pub database: Option<std::sync::Arc<store::test_support::TestDatabase>>,
    /// The running server's state, for tests that look behind the API.
    pub state: std::sync::Arc<server::state::AppState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub async fn start() -> TestServer {
    start_with(server::ServerConfig::default()).await
}

/// A server whose event queue holds `ingest_queue` batches.
pub async fn start_with_queue(ingest_queue: usize) -> TestServer {
    start_with(server::ServerConfig {
        ingest_queue,
        ..server::ServerConfig::default()
    })
    .await
}

/// A server with a fresh store, configured by `config`.
pub async fn start_with(config: server::ServerConfig) -> TestServer {
    let database = if on_postgres() {
        Some(std::sync::Arc::new(
            store::test_support::TestDatabase::create()
                .await
                .expect("ROLLGATE_TEST_DATABASE_URL for a PostgreSQL run"),
        ))
    } else {
        None
    };
    start_in_with(
        Stored {
            data_dir: tempfile::tempdir().expect("temp dir"),
            database,
        },
        &config,
    )
    .await
}

/// Whether this run of the suite is on PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var("ROLLGATE_TEST_SERVER_BACKEND").is_ok_and(|b| b == "postgres")
}

/// Where a server's data lives, kept across a restart.
pub struct Stored {
    pub data_dir: tempfile::TempDir,
    pub database: Option<std::sync::Arc<store::test_support::TestDatabase>>,
}

/// A server on existing data (a restart).
pub async fn start_in(stored: Stored, ingest_queue: usize) -> TestServer {
    let config = server::ServerConfig {
        ingest_queue,
        ..server::ServerConfig::default()
    };
    start_in_with(stored, &config).await
}

/// A server on existing data, configured by `config`.
pub async fn start_in_with(stored: Stored, config: &server::ServerConfig) -> TestServer {
    let Stored { data_dir, database } = stored;
    let store = match &database {
        Some(database) => database.store().await.expect("open store"),
        None => store::Store::open_sqlite(data_dir.path())
            .await
            .expect("open store"),
    };
    let state = server::prepare_with(store, Some(ADMIN_TOKEN), config)
        .await
        .expect("prepare server");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("local addr"));
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server::serve(listener, state.clone(), async {
        let _ = rx.await;
    }));
    TestServer {
        url,
        state,
        http: reqwest::Client::new(),
        data_dir,
        database,
        shutdown: Some(tx),
        task: Some(task),
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl TestServer {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.http.request(method, format!("{}{}", self.url, path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request reaches the server");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call(method, path, Some(ADMIN_TOKEN), body).await
    }

    pub async fn apply(&self, doc: Value) -> Reply {
        self.admin(Method::POST, "/api/v1/apply", Some(doc)).await
    }

    pub async fn eval(&self, token: &str, key: &str, context: Value) -> Reply {
        self.call(
            Method::POST,
            &format!("/ofrep/v1/evaluate/flags/{key}"),
            Some(token),
            Some(serde_json::json!({ "context": context })),
        )
        .await
    }

    pub async fn client_token(&self, environment: &str) -> String {
        let reply = self
            .admin(
                Method::POST,
                "/api/v1/tokens",
                Some(serde_json::json!({"name": "test-client", "kind": "client", "environment": environment})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        reply.body["secret"].as_str().expect("secret").to_owned()
    }

    /// Posts `events` in batches of 1,000 with `token`; each must be accepted.
    pub async fn send_events(&self, token: &str, events: &[Value]) {
        for chunk in events.chunks(1000) {
            let reply = self
                .call(
                    Method::POST,
                    "/api/v1/events",
                    Some(token),
                    Some(serde_json::json!({ "events": chunk })),
                )
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        }
    }

    /// Starts `flag`'s rollout; it must start.
    pub async fn start_rollout(&self, flag: &str) -> Reply {
        let started = self
            .admin(
                Method::POST,
                &format!("/api/v1/rollouts/{flag}/start"),
                Some(serde_json::json!({"reason": "beta"})),
            )
            .await;
        assert_eq!(started.status, StatusCode::OK, "{}", started.text);
        started
    }

    /// Plants a 10% error rate (`calc_error` per `calc_request`) in the
    /// treatment `advanced` of `flag`'s running rollout, over `units` units
    /// of which 1 in 20 errs on the control too, then folds and steps the
    /// controller: a guard on that rate rolls the rollout back.
    pub async fn plant_error_regression(&self, token: &str, flag: &str, units: usize) {
        let now = server::admin::rfc3339(server::now_ms());
        let mut events = Vec::new();
        for i in 0..units {
            let unit = format!("user-{i}");
            let reply = self
                .eval(token, flag, serde_json::json!({"targetingKey": unit}))
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
            let treated = reply.body["variant"] == "advanced";
            for k in 0..10 {
                events.push(serde_json::json!({"kind": "track", "name": "calc_request",
                    "targetingKey": unit, "timestamp": now}));
                if k == 0 && (treated || i % 20 == 0) {
                    events.push(serde_json::json!({"kind": "track", "name": "calc_error",
                        "targetingKey": unit, "timestamp": now}));
                }
            }
        }
        self.state.ingest.flush_exposures().await.expect("flush");
        self.send_events(token, &events).await;
        self.fold_all().await;
        server::rollouts::step_all(&self.state).await;
    }

    /// Folds everything stored so far (the background aggregator may race;
    /// a conflict just means it got there first).
    pub async fn fold_all(&self) {
        let mut cache = ingest::aggregator::ExposureCache::default();
        loop {
            match ingest::aggregator::fold_next(&self.state.store, &mut cache).await {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(store::StoreError::Conflict(_)) => cache.clear(),
                Err(error) => panic!("fold failed: {error}"),
            }
        }
    }

    pub async fn stop(self) {
        self.stop_keeping_data().await;
    }

    /// Stops the server and hands back its data, for a restart.
    pub async fn stop_keeping_data(mut self) -> Stored {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server stops cleanly");
        }
        let placeholder = tempfile::tempdir().expect("temp dir");
        Stored {
            data_dir: std::mem::replace(&mut self.data_dir, placeholder),
            database: self.database.take(),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Flags of every type, used by the OFREP tests.
pub fn typed_flags() -> Value {
    serde_json::json!({
        "environment": "production",
        "segments": [
            {"key": "power-users", "conditions": [{"attribute": "plan", "op": "in", "values": ["pro", "enterprise"]}]}
        ],
        "flags": [
            {"key": "new-checkout", "type": "boolean", "off_variant": "off",
             "variants": {"on": true, "off": false}, "default": {"serve": {"variant": "on"}}},
            {"key": "calc-model", "type": "string", "off_variant": "simple",
             "variants": {"simple": "simple", "advanced": "advanced"},
             "rules": [
                {"name": "internal testers", "conditions": [{"attribute": "email", "op": "ends_with", "values": ["@example.com"]}], "serve": {"variant": "advanced"}},
                {"conditions": [{"segment": "power-users"}], "serve": {"split": {"advanced": 50, "simple": 50}}}
             ],
             "default": {"serve": {"variant": "simple"}}},
            {"key": "max-items", "type": "integer", "off_variant": "few",
             "variants": {"few": 10, "many": 100}, "default": {"serve": {"variant": "many"}}},
            {"key": "discount-rate", "type": "float", "off_variant": "none",
             "variants": {"none": 0, "some": 1}, "default": {"serve": {"variant": "some"}}},
            {"key": "ui-config", "type": "object", "off_variant": "plain",
             "variants": {"plain": {"theme": "light"}, "fancy": {"theme": "dark", "columns": 3}},
             "default": {"serve": {"variant": "fancy"}}},
            {"key": "legacy-export", "type": "boolean", "enabled": false, "off_variant": "off",
             "variants": {"on": true, "off": false}, "default": {"serve": {"variant": "on"}}},
            {"key": "rollout", "type": "string", "off_variant": "a",
             "variants": {"a": "a", "b": "b"}, "default": {"serve": {"split": {"a": 50, "b": 50}}}}
        ]
    })
}
