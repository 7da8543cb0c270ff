//! Exactly once across a crash: concurrent clients stream event batches to
//! the real binary, which is killed with SIGKILL once a fixed number of
//! batches has been acknowledged. After a restart on the same data directory
//! the clients retry every batch they hold no acknowledgement for, with the
//! same `Idempotency-Key`, as a real client would. Then the event log holds
//! every batch once, and the per-unit metric totals folded from it count
//! every attributed event once.
//!
//! Where the kill lands varies from run to run (before, during or after a
//! group commit; with the aggregator idle or mid-fold); no assertion depends
//! on it.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use common::BIN;
const ADMIN: &str = "crash-admin-token";
const ENVIRONMENT: &str = "production";
/// A flag of examples/quickstart.toml, with variants `simple` and `advanced`.
const FLAG: &str = "calc-model";
const VARIANTS: [&str; 2] = ["advanced", "simple"];
const EVENT: &str = "calc_request";
const COUNT_METRIC: &str = "requests";
const LATENCY_METRIC: &str = "response_time_mean";
const METRICS: &str = r#"
environment = "production"

[[metrics]]
key = "requests"
kind = "count"
event = "calc_request"

[[metrics]]
key = "response_time_mean"
kind = "ratio"
numerator = { event = "calc_request", agg = "sum" }
denominator = "calc_request"
higher_is_better = false
"#;

const CLIENTS: usize = 4;
const BATCHES_PER_CLIENT: usize = 40;
/// The server is killed when this many batches have been acknowledged. Below
/// `BATCHES_PER_CLIENT`, so the client that kills it still has batches to
/// send: the kill always lands while batches are streaming.
const KILL_AFTER_ACKS: usize = 30;
const EXPOSED_UNITS_PER_BATCH: usize = 30;
const REQUESTS_PER_EXPOSED_UNIT: usize = 5;
/// Track events of units never exposed to the flag: stored, never attributed.
const UNEXPOSED_REQUESTS_PER_BATCH: usize = 20;
const EVENTS_PER_BATCH: usize =
    EXPOSED_UNITS_PER_BATCH * (1 + REQUESTS_PER_EXPOSED_UNIT) + UNEXPOSED_REQUESTS_PER_BATCH;
/// A safety net against a hung connection, not a timing assumption.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

struct Server {
    child: Mutex<Child>,
    url: String,
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        let (child, url) =
            common::spawn_serve(&[OsStr::new("--data-dir"), data_dir.as_os_str()], ADMIN);
        Server {
            child: Mutex::new(child),
            url,
        }
    }

    fn apply(&self, file: &Path) {
        let output = Command::new(BIN)
            .arg("apply")
            .arg(file)
            .env("ROLLGATE_SERVER", &self.url)
            .env("ROLLGATE_TOKEN", ADMIN)
            .output()
            .expect("run the CLI");
        assert!(
            output.status.success(),
            "apply {} failed: {}\n{}",
            file.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Sends SIGKILL (`Child::kill` on Unix) and returns at once, so a
    /// client task can pull the plug in the middle of its stream.
    fn kill_9(&self) {
        self.child
            .lock()
            .expect("child lock")
            .kill()
            .expect("SIGKILL the server");
    }

    /// Kills the server (if it still runs) and waits until it is gone.
    fn kill_9_and_wait(&self) {
        let mut child = self.child.lock().expect("child lock");
        let _ = child.kill();
        child.wait().expect("wait for the server to exit");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(child) = self.child.get_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One batch a client sends, and what it adds to the metrics when stored.
struct Batch {
    idempotency_key: String,
    body: Value,
    exposed: Vec<ExposedUnit>,
}

/// A unit exposed in a batch. Units are unique to their batch, and a unit's
/// exposure precedes its track events in the batch, so its totals do not
/// depend on the order in which batches end up stored.
struct ExposedUnit {
    unit: String,
    variant: &'static str,
    latency_sum_ms: f64,
}

fn plan_batch(client: usize, index: usize) -> Batch {
    let mut events = Vec::with_capacity(EVENTS_PER_BATCH);
    let mut exposed = Vec::with_capacity(EXPOSED_UNITS_PER_BATCH);
    for u in 0..EXPOSED_UNITS_PER_BATCH {
        let unit = format!("c{client}-b{index}-u{u}");
        let variant = VARIANTS[(client + index + u) % VARIANTS.len()];
        events.push(
            json!({"kind": "exposure", "flag": FLAG, "variant": variant, "targetingKey": unit}),
        );
        let mut latency_sum_ms = 0.0;
        for r in 0..REQUESTS_PER_EXPOSED_UNIT {
            // Whole milliseconds, so sums are exact in f64.
            let latency_ms = (100 + (client * 31 + index * 7 + u * 3 + r) % 150) as f64;
            latency_sum_ms += latency_ms;
            events.push(json!({"kind": "track", "name": EVENT, "targetingKey": unit,
                "value": latency_ms, "attributes": {"cache_hit": r % 2 == 0}}));
        }
        exposed.push(ExposedUnit {
            unit,
            variant,
            latency_sum_ms,
        });
    }
    for a in 0..UNEXPOSED_REQUESTS_PER_BATCH {
        events.push(json!({"kind": "track", "name": EVENT,
            "targetingKey": format!("anonymous-c{client}-b{index}-{a}"), "value": 1.0}));
    }
    assert_eq!(events.len(), EVENTS_PER_BATCH);
    Batch {
        idempotency_key: format!("crash-c{client}-b{index}"),
        body: json!({ "events": events }),
        exposed,
    }
}

/// What a client knows about one of its batches when the server dies.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    /// Never sent: the client stopped before it.
    NotSent,
    /// Sent, but no 200 came back (it may or may not have been committed).
    Unanswered,
    Acknowledged {
        batch: i64,
    },
}

#[derive(Debug, Deserialize)]
struct Accepted {
    accepted: usize,
    batch: i64,
    duplicate: bool,
}

async fn send(http: &reqwest::Client, url: &str, batch: &Batch) -> Result<Accepted, String> {
    let response = http
        .post(format!("{url}/api/v1/events"))
        .bearer_auth(ADMIN)
        .header("Idempotency-Key", &batch.idempotency_key)
        .json(&batch.body)
        .send()
        .await
        .map_err(|e| format!("transport: {e}"))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?;
    if status != reqwest::StatusCode::OK {
        return Err(format!("{status}: {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("answer {text}: {e}"))
}

/// Streams `batches` in order as fast as the server answers, and stops at
/// the first batch that is not acknowledged (the server is gone). The client
/// whose acknowledgement is the `KILL_AFTER_ACKS`th kills the server.
async fn stream(
    http: reqwest::Client,
    server: Arc<Server>,
    batches: Arc<Vec<Batch>>,
    acks: Arc<AtomicUsize>,
    killed: Arc<AtomicBool>,
) -> Vec<Outcome> {
    let mut outcomes = vec![Outcome::NotSent; batches.len()];
    for (outcome, batch) in outcomes.iter_mut().zip(batches.iter()) {
        match send(&http, &server.url, batch).await {
            Ok(answer) => {
                assert_eq!(answer.accepted, EVENTS_PER_BATCH, "{answer:?}");
                assert!(!answer.duplicate, "a first send is not a duplicate");
                *outcome = Outcome::Acknowledged {
                    batch: answer.batch,
                };
                if acks.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER_ACKS {
                    server.kill_9();
                    killed.store(true, Ordering::SeqCst);
                }
            }
            Err(_) => {
                *outcome = Outcome::Unanswered;
                break;
            }
        }
    }
    outcomes
}

/// Retries, in order, every batch without an acknowledgement, with its own
/// key. Returns how many of the unanswered ones had been committed before
/// the crash (answered as duplicates).
async fn retry(
    http: reqwest::Client,
    url: String,
    batches: Arc<Vec<Batch>>,
    outcomes: Vec<Outcome>,
) -> usize {
    let mut committed_unanswered = 0;
    for (batch, outcome) in batches.iter().zip(outcomes) {
        if matches!(outcome, Outcome::Acknowledged { .. }) {
            continue;
        }
        let answer = send(&http, &url, batch)
            .await
            .unwrap_or_else(|e| panic!("retry of {}: {e}", batch.idempotency_key));
        assert_eq!(answer.accepted, EVENTS_PER_BATCH, "{answer:?}");
        match outcome {
            Outcome::NotSent => assert!(
                !answer.duplicate,
                "{} was never sent, yet the server had it",
                batch.idempotency_key
            ),
            Outcome::Unanswered => committed_unanswered += usize::from(answer.duplicate),
            Outcome::Acknowledged { .. } => unreachable!(),
        }
    }
    committed_unanswered
}

/// Per unit: (variant, x, y, events), as `unit_totals` stores them.
type Totals = BTreeMap<String, (String, f64, f64, i64)>;

/// The first differences between two sets of unit totals, for a readable failure.
fn differences(expected: &Totals, actual: &Totals) -> Vec<String> {
    let mut out = Vec::new();
    for (unit, want) in expected {
        match actual.get(unit) {
            None => out.push(format!("{unit}: missing, expected {want:?}")),
            Some(got) if got != want => {
                out.push(format!("{unit}: expected {want:?}, stored {got:?}"))
            }
            Some(_) => {}
        }
    }
    for (unit, got) in actual {
        if !expected.contains_key(unit) {
            out.push(format!("{unit}: unexpected total {got:?}"));
        }
    }
    out.truncate(10);
    out
}

#[test]
fn every_acknowledged_event_counts_once_after_sigkill() {
    let data = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(CLIENTS)
        .enable_all()
        .build()
        .expect("runtime");
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("HTTP client");

    let server = Arc::new(Server::start(data.path()));
    server.apply(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/quickstart.toml"
    )));
    let metrics = data.path().join("crash-metrics.toml");
    std::fs::write(&metrics, METRICS).expect("write the metrics file");
    server.apply(&metrics);

    // Stream until the server is killed.
    let plans: Vec<Arc<Vec<Batch>>> = (0..CLIENTS)
        .map(|c| Arc::new((0..BATCHES_PER_CLIENT).map(|b| plan_batch(c, b)).collect()))
        .collect();
    let acks = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let outcomes: Vec<Vec<Outcome>> = runtime.block_on(async {
        let clients: Vec<_> = plans
            .iter()
            .map(|plan| {
                tokio::spawn(stream(
                    http.clone(),
                    server.clone(),
                    plan.clone(),
                    acks.clone(),
                    killed.clone(),
                ))
            })
            .collect();
        let mut outcomes = Vec::new();
        for client in clients {
            outcomes.push(client.await.expect("client task"));
        }
        outcomes
    });
    assert!(
        killed.load(Ordering::SeqCst),
        "the clients stopped after {} acknowledgements, before the kill at {KILL_AFTER_ACKS}: {outcomes:?}",
        acks.load(Ordering::SeqCst)
    );
    server.kill_9_and_wait();
    let count =
        |wanted: fn(&Outcome) -> bool| outcomes.iter().flatten().filter(|o| wanted(o)).count();
    let acknowledged = count(|o| matches!(o, Outcome::Acknowledged { .. }));
    let unanswered = count(|o| *o == Outcome::Unanswered);
    let not_sent = count(|o| *o == Outcome::NotSent);
    assert!(acknowledged >= KILL_AFTER_ACKS);
    assert!(
        unanswered + not_sent > 0,
        "the kill landed after the last batch"
    );

    // Restart; the clients retry what they hold no acknowledgement for.
    let server = Server::start(data.path());
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("HTTP client");
    let committed_unanswered: usize = runtime.block_on(async {
        let retries: Vec<_> = plans
            .iter()
            .zip(&outcomes)
            .map(|(plan, outcomes)| {
                tokio::spawn(retry(
                    http.clone(),
                    server.url.clone(),
                    plan.clone(),
                    outcomes.clone(),
                ))
            })
            .collect();
        let mut committed = 0;
        for retry in retries {
            committed += retry.await.expect("retry task");
        }
        committed
    });

    // Acknowledged batches survived the kill: re-sending one (each client's
    // first and last, the last being the closest to the kill) stores nothing
    // and names the batch of the first answer.
    runtime.block_on(async {
        for (plan, outcomes) in plans.iter().zip(&outcomes) {
            let acked: Vec<(usize, i64)> = outcomes
                .iter()
                .enumerate()
                .filter_map(|(i, o)| match o {
                    Outcome::Acknowledged { batch } => Some((i, *batch)),
                    _ => None,
                })
                .collect();
            let picks = [acked.first(), acked.last()];
            for &(index, batch) in picks.into_iter().flatten() {
                let key = &plan[index].idempotency_key;
                let answer = send(&http, &server.url, &plan[index])
                    .await
                    .unwrap_or_else(|e| panic!("re-send of {key}: {e}"));
                assert!(answer.duplicate, "{key} was stored again: {answer:?}");
                assert_eq!(answer.batch, batch, "{key} names its first batch");
                assert_eq!(answer.accepted, EVENTS_PER_BATCH);
            }
        }
    });
    eprintln!(
        "before the kill: {acknowledged} acknowledged, {unanswered} unanswered \
         ({committed_unanswered} of them committed), {not_sent} not sent"
    );

    // Kill again (the aggregator may be mid-fold), then fold the rest here.
    server.kill_9_and_wait();
    let all_batches = CLIENTS * BATCHES_PER_CLIENT;
    runtime.block_on(async {
        let store = store::Store::open_sqlite(data.path())
            .await
            .expect("open the store");
        assert_eq!(
            store.event_count(ENVIRONMENT).await.expect("event count"),
            (all_batches * EVENTS_PER_BATCH) as i64,
            "every batch is stored exactly once"
        );
        let mut cache = ingest::aggregator::ExposureCache::default();
        while ingest::aggregator::fold_next(&store, &mut cache)
            .await
            .expect("fold")
            .is_some()
        {}
        assert_eq!(
            store.aggregation_progress().await.expect("progress"),
            store.last_batch_id().await.expect("last batch")
        );

        let requests = (
            REQUESTS_PER_EXPOSED_UNIT as f64,
            REQUESTS_PER_EXPOSED_UNIT as i64,
        );
        let exposed = || plans.iter().flat_map(|p| p.iter()).flat_map(|b| &b.exposed);
        let expected_count: Totals = exposed()
            .map(|e| {
                (
                    e.unit.clone(),
                    (e.variant.to_owned(), requests.0, 0.0, requests.1),
                )
            })
            .collect();
        let expected_latency: Totals = exposed()
            .map(|e| {
                let totals = (
                    e.variant.to_owned(),
                    e.latency_sum_ms,
                    requests.0,
                    requests.1,
                );
                (e.unit.clone(), totals)
            })
            .collect();
        for (metric, expected) in [
            (COUNT_METRIC, expected_count),
            (LATENCY_METRIC, expected_latency),
        ] {
            let actual: Totals = store
                .unit_totals(ENVIRONMENT, FLAG, metric)
                .await
                .expect("unit totals")
                .into_iter()
                .map(|t| (t.unit, (t.variant, t.x, t.y, t.events)))
                .collect();
            let events: i64 = actual.values().map(|t| t.3).sum();
            assert_eq!(
                events,
                (all_batches * EXPOSED_UNITS_PER_BATCH * REQUESTS_PER_EXPOSED_UNIT) as i64,
                "{metric}: attributed events, each once"
            );
            assert_eq!(
                differences(&expected, &actual),
                Vec::<String>::new(),
                "{metric}"
            );
        }

        let exposures = store
            .exposure_counts(ENVIRONMENT, FLAG)
            .await
            .expect("exposure counts");
        let per_variant = (all_batches * EXPOSED_UNITS_PER_BATCH / VARIANTS.len()) as i64;
        let exposures: Vec<_> = exposures
            .iter()
            .map(|v| (v.variant.as_str(), v.units, v.conflicting))
            .collect();
        assert_eq!(
            exposures,
            [("advanced", per_variant, 0), ("simple", per_variant, 0)]
        );
        store.close().await;
    });
}
