//! Two replicas of the real binary on one PostgreSQL database (a fresh one,
//! `store::test_support`): a config change made on one is served by the
//! other; events sent to both add up, exactly once; exactly one replica runs
//! the rollout controller, and when it is killed with SIGKILL the other takes
//! over and rolls a planted regression back exactly once.
//!
//! Waiting is polling for a state with a generous deadline (a safety net
//! against a hang, not a timing assumption); nothing here asserts how fast.

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use store::test_support::TestDatabase;

const ADMIN: &str = "replica-admin-token";
const UNITS: usize = 600;
/// How long a state may take to appear before the test gives up.
const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

/// One `rollgate serve` process on the shared database.
struct Replica {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Replica {
    /// Starts a replica on a free loopback port.
    fn start(database_url: &str) -> Replica {
        let (child, url) = common::spawn_serve(&["--database-url", database_url], ADMIN);
        Replica {
            child,
            url,
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Value {
        let (status, body) = self.try_call(method, path, token, body).await;
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    async fn try_call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the replica answers");
        let status = response.status();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn served(&self, token: &str, unit: &str) -> String {
        let body = self
            .call(
                Method::POST,
                "/ofrep/v1/evaluate/flags/calc-model",
                token,
                Some(json!({"context": {"targetingKey": unit}})),
            )
            .await;
        body["variant"].as_str().expect("variant").to_owned()
    }

    async fn leads(&self) -> bool {
        let text = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("body");
        text.lines().any(|l| l == "rollgate_controller_leader 1")
    }

    async fn status(&self) -> Value {
        self.call(Method::GET, "/api/v1/rollouts/calc-model", ADMIN, None)
            .await
    }

    async fn send(&self, token: &str, events: &[Value]) {
        for chunk in events.chunks(1000) {
            self.call(
                Method::POST,
                "/api/v1/events",
                token,
                Some(json!({ "events": chunk })),
            )
            .await;
        }
    }

    fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it holds; panics with `what` after [`DEADLINE`].
async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < DEADLINE, "gave up waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

fn config(default_variant: &str) -> Value {
    json!({
        "flags": [{
            "key": "calc-model", "type": "string", "off_variant": "simple",
            "variants": {"simple": "simple", "advanced": "advanced"},
            "default": {"serve": {"variant": "simple"}}
        }, {
            "key": "banner", "type": "string", "off_variant": "off",
            "variants": {"off": "off", "blue": "blue", "green": "green"},
            "default": {"serve": {"variant": default_variant}}
        }],
        "metrics": [
            {"key": "requests", "kind": "count", "event": "calc_request"},
            {"key": "error_rate", "kind": "ratio", "numerator": "calc_error",
             "denominator": "calc_request", "higher_is_better": false}
        ],
        "rollouts": [{
            "flag": "calc-model", "treatment": "advanced", "control": "simple",
            "phases": [
                {"name": "beta", "percent": 50, "duration": "1h"},
                {"name": "everyone", "percent": 100, "duration": "1h"}
            ],
            "guards": [{"metric": "error_rate", "max": 0.02, "action": "rollback",
                        "min_samples": 100}]
        }]
    })
}

/// Exposures of `units` to the variants served, then `requests` requests
/// each, the treatment's first `failing` of them failing.
fn events(units: &[(String, String)], requests: usize, failing: usize) -> Vec<Value> {
    let now = server::admin::rfc3339(server::now_ms());
    let mut events = Vec::new();
    for (unit, variant) in units {
        events.push(
            json!({"kind": "exposure", "flag": "calc-model", "variant": variant,
                           "targetingKey": unit, "timestamp": now}),
        );
        for k in 0..requests {
            events.push(
                json!({"kind": "track", "name": "calc_request", "targetingKey": unit,
                               "timestamp": now}),
            );
            if variant == "advanced" && k < failing {
                events.push(
                    json!({"kind": "track", "name": "calc_error", "targetingKey": unit,
                                   "timestamp": now}),
                );
            }
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_config_events_and_one_controller() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let mut a = Replica::start(&database.url);
    let mut b = Replica::start(&database.url);

    // A change applied on A is served by B.
    a.call(Method::POST, "/api/v1/apply", ADMIN, Some(config("blue")))
        .await;
    let token = a
        .call(
            Method::POST,
            "/api/v1/tokens",
            ADMIN,
            Some(json!({"name": "client", "kind": "client", "environment": "production"})),
        )
        .await["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let banner = |replica: &Replica| {
        let (http, url, token) = (replica.http.clone(), replica.url.clone(), token.clone());
        async move {
            let response = http
                .post(format!("{url}/ofrep/v1/evaluate/flags/banner"))
                .bearer_auth(&token)
                .json(&json!({"context": {"targetingKey": "u"}}))
                .send()
                .await
                .expect("eval");
            if response.status() != StatusCode::OK {
                return String::new();
            }
            let body: Value = response.json().await.expect("json");
            body["variant"].as_str().unwrap_or_default().to_owned()
        }
    };
    wait_for("B to serve A's first config", || async {
        banner(&b).await == "blue"
    })
    .await;
    b.call(Method::POST, "/api/v1/apply", ADMIN, Some(config("green")))
        .await;
    wait_for("A to serve B's change", || async {
        banner(&a).await == "green"
    })
    .await;

    // Exactly one replica runs the controller.
    wait_for("a leader", || async { a.leads().await || b.leads().await }).await;
    assert!(
        !(a.leads().await && b.leads().await),
        "two replicas lead at once"
    );

    // Start the rollout on the follower: the command is stored, the leader
    // runs the steps, and both serve the split.
    let (leader, follower) = if a.leads().await {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    follower
        .call(
            Method::POST,
            "/api/v1/rollouts/calc-model/start",
            ADMIN,
            Some(json!({"reason": "beta"})),
        )
        .await;
    let units: Vec<String> = (0..UNITS).map(|i| format!("user-{i}")).collect();
    wait_for("both replicas to serve the beta split", || async {
        let unit = &units[0];
        let mut treated = 0;
        for u in units.iter().take(40) {
            if leader.served(&token, u).await == "advanced" {
                treated += 1;
            }
        }
        treated > 0 && leader.served(&token, unit).await == follower.served(&token, unit).await
    })
    .await;
    let mut served = Vec::with_capacity(UNITS);
    for unit in &units {
        served.push((unit.clone(), follower.served(&token, unit).await));
    }

    // Healthy traffic, half through each replica: every event counted once.
    let healthy = events(&served, 4, 0);
    let (first, second) = healthy.split_at(healthy.len() / 2);
    leader.send(&token, first).await;
    follower.send(&token, second).await;
    let inspector = database.store().await.expect("open the shared store");
    let sent = healthy
        .iter()
        .filter(|e| e["name"] == "calc_request")
        .count() as f64;
    wait_for("the healthy requests to be folded", || async {
        let totals = inspector
            .unit_totals("production", "calc-model", "requests")
            .await
            .expect("totals");
        totals.iter().map(|t| t.x).sum::<f64>() == sent
    })
    .await;
    let totals = inspector
        .unit_totals("production", "calc-model", "requests")
        .await
        .expect("totals");
    assert_eq!(totals.len(), UNITS, "every unit attributed once");
    assert!(totals.iter().all(|t| t.x == 4.0), "4 requests per unit");
    assert_eq!(
        leader.status().await["status"],
        "running",
        "healthy: no rollback"
    );

    // The leader dies; the follower takes over.
    leader.kill_9();
    wait_for("the follower to take the lead", || async {
        follower.leads().await
    })
    .await;

    // A planted regression (the treatment fails 1 request in 4) reaches the
    // survivor; its controller rolls back.
    follower.send(&token, &events(&served, 4, 1)).await;
    wait_for("the rollback", || async {
        follower.status().await["status"] == "rolled_back"
    })
    .await;
    for (unit, _) in served.iter().take(100) {
        assert_eq!(follower.served(&token, unit).await, "simple", "{unit}");
    }

    // The killed replica comes back as a follower; nothing is applied twice.
    let again = Replica::start(&database.url);
    wait_for("the restarted replica to serve the rollback", || async {
        again.served(&token, &served[0].0).await == "simple"
    })
    .await;
    let status = again.status().await;
    assert_eq!(status["status"], "rolled_back", "{status}");
    let incidents = status["incidents"].as_array().expect("incidents");
    let rollbacks = incidents
        .iter()
        .filter(|i| i["kind"] == "guard_rollback")
        .count();
    assert_eq!(rollbacks, 1, "{incidents:?}");
    let audit = again
        .call(Method::GET, "/api/v1/audit?actor=controller", ADMIN, None)
        .await;
    let opened = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == "incident.opened")
        .count();
    assert_eq!(opened, 1, "{audit}");
    inspector.close().await;
}

/// A TCP proxy in front of PostgreSQL that can cut every connection and
/// refuse new ones, like a network partition, and heal again.
struct Proxy {
    port: u16,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    async fn start(target: std::net::SocketAddr) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("address").port();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let gate = open.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !gate.load(Ordering::SeqCst) {
                    // Refused: the connection closes at once.
                    continue;
                }
                let mut cuts = cuts.clone();
                // Only cuts after this connection opened end it.
                cuts.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Proxy { port, open, cut }
    }

    /// Drops every open connection and refuses new ones.
    fn partition(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn heal(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_database_keeps_evaluation_up_and_ingest_honest() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let mut url = url::Url::parse(&database.url).expect("URL");
    let host = url.host_str().expect("host").to_owned();
    let target = tokio::net::lookup_host((host.as_str(), url.port().unwrap_or(5432)))
        .await
        .expect("resolve")
        .next()
        .expect("an address");
    let proxy = Proxy::start(target).await;
    url.set_host(Some("127.0.0.1")).expect("host");
    url.set_port(Some(proxy.port)).expect("port");
    let replica = Replica::start(url.as_str());
    replica
        .call(Method::POST, "/api/v1/apply", ADMIN, Some(config("blue")))
        .await;
    let eval = || async {
        replica
            .try_call(
                Method::POST,
                "/ofrep/v1/evaluate/flags/banner",
                ADMIN,
                Some(json!({"context": {"targetingKey": "u"}})),
            )
            .await
    };
    assert_eq!(eval().await.1["variant"], "blue");
    let batch = |n: usize| {
        let now = server::admin::rfc3339(server::now_ms());
        let events: Vec<Value> = (0..n)
            .map(|i| json!({"kind": "track", "name": "calc_request", "targetingKey": format!("u-{i}"), "timestamp": now}))
            .collect();
        json!({ "events": events })
    };

    proxy.partition();
    // Evaluation serves the last known flags.
    for _ in 0..20 {
        let (status, body) = eval().await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["variant"], "blue");
    }
    // Ingest says so instead of losing data: 503 with Retry-After.
    let response = replica
        .http
        .post(format!("{}/api/v1/events", replica.url))
        .bearer_auth(ADMIN)
        .json(&batch(10))
        .send()
        .await
        .expect("ingest answers");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    // So does a config change, which changes nothing.
    let (status, body) = replica
        .try_call(Method::POST, "/api/v1/apply", ADMIN, Some(config("off")))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(eval().await.1["variant"], "blue");

    // The database returns: everything works again, and nothing was lost
    // or half-written.
    proxy.heal();
    wait_for("ingest to accept again", || async {
        replica
            .try_call(Method::POST, "/api/v1/events", ADMIN, Some(batch(10)))
            .await
            .0
            == StatusCode::OK
    })
    .await;
    let inspector = database.store().await.expect("open the store");
    // Track events only: the exposures the evaluations above recorded are
    // stored too, whenever their buffer flushes.
    let tracked: i64 = inspector
        .batches_after(0, 10_000)
        .await
        .expect("batches")
        .iter()
        .filter(|b| b.events.contains("calc_request"))
        .map(|b| b.event_count)
        .sum();
    assert_eq!(
        tracked, 10,
        "the refused batch was not stored, the accepted one once"
    );
    replica
        .call(Method::POST, "/api/v1/apply", ADMIN, Some(config("off")))
        .await;
    assert_eq!(eval().await.1["variant"], "off");
    inspector.close().await;
}
