//! Rollgate's own metrics in Prometheus text format at `/metrics`: requests and
//! latency per route, evaluations per flag and reason.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency histogram buckets, in seconds: evaluation is sub-millisecond, admin
/// writes wait for an fsync.
const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// How often raw histogram samples are folded into buckets, so memory stays
/// bounded even when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Telemetry {
    handle: PrometheusHandle,
}

impl Telemetry {
    /// The process-wide recorder (the `metrics` facade has one global recorder;
    /// several servers in one test process share it).
    pub fn global() -> Telemetry {
        static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
        let handle = HANDLE
            .get_or_init(|| {
                let builder = PrometheusBuilder::new()
                    .set_buckets_for_metric(
                        Matcher::Full("rollgate_http_request_duration_seconds".into()),
                        LATENCY_BUCKETS_SECONDS,
                    )
                    .expect("the bucket list is a non-empty constant");
                let recorder = builder.build_recorder();
                let handle = recorder.handle();
                spawn_upkeep(handle.clone());
                // Fails only if another recorder was installed first; then our
                // handle renders nothing, which is visible and harmless.
                if metrics::set_global_recorder(recorder).is_err() {
                    tracing::warn!(message = "A metrics recorder was already installed.");
                }
                handle
            })
            .clone();
        Telemetry { handle }
    }

    pub fn render(&self) -> String {
        self.handle.render()
    }
}

/// Folds raw histogram samples into buckets, so memory stays bounded even
/// when nobody scrapes. It runs on its own thread for the life of the process:
/// folding a second's worth of samples on a runtime worker would stall the
/// requests queued behind it.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                handle.run_upkeep();
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(message = "Could not start the metrics upkeep thread.", %error);
    }
}

/// Counts one evaluation. Unknown flag keys share one label value so that
/// callers cannot grow the number of series without bound.
pub fn record_evaluation(
    environment: &str,
    flag: Option<&str>,
    reason: &'static str,
    error: Option<&'static str>,
) {
    metrics::counter!(
        "rollgate_evaluations_total",
        "environment" => environment.to_owned(),
        "flag" => flag.unwrap_or("(unknown)").to_owned(),
        "reason" => reason,
        "error" => error.unwrap_or(""),
    )
    .increment(1);
}

/// Middleware: request count and latency per route.
pub async fn track_requests(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let route = route.unwrap_or_else(|| "unmatched".to_owned());
    let status = response.status().as_u16().to_string();
    metrics::counter!("rollgate_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("rollgate_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
