//! Rollgate's HTTP surface: OFREP evaluation, the admin API, `/openapi.json`,
//! health checks and `/metrics`.
//!
//! Architecture invariant: only this crate knows HTTP and wire JSON. Handlers
//! call the `flags` engine on in-memory snapshots (evaluation) or the `store`
//! (everything else); they hold no SQL and no evaluation logic of their own.

pub mod admin;
pub mod auth;
pub mod dashboard;
pub mod error;
pub mod events;
pub mod feedback;
pub mod html;
pub mod incidents;
pub mod notify;
pub mod ofrep;
pub mod openapi;
pub mod reports;
pub mod rollouts;
pub mod schedule;
pub mod series;
pub mod state;
pub mod status_page;
pub mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use store::Store;
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::ApiError;
use crate::state::AppState;
use crate::telemetry::Telemetry;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How often every environment's snapshot is compared with the store, as a
/// safety net for changes the process did not see (e.g. made by another tool).
const RESYNC_INTERVAL: Duration = Duration::from_secs(10);

/// How long to wait before listening again after the change notices failed.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// Opens the store and prepares the shared state: the `production`
/// environment on an empty store, the bootstrap admin token, the snapshots.
pub async fn prepare(store: Store, admin_token: Option<&str>) -> anyhow::Result<Arc<AppState>> {
    prepare_with(store, admin_token, &ServerConfig::default()).await
}

/// How one server runs, beyond its store: what `rollgate serve`'s flags and
/// the tests choose. Each server's state keeps its own, so two servers in one
/// process do not share it.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Event batches that may wait to be written; beyond it, senders get 429.
    pub ingest_queue: usize,
    /// How webhook deliveries are retried.
    pub delivery: notify::DeliveryPolicy,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            ingest_queue: ingest::pipeline::QUEUE_BATCHES,
            delivery: notify::DeliveryPolicy::default(),
        }
    }
}

/// [`prepare`] with a [`ServerConfig`].
pub async fn prepare_with(
    store: Store,
    admin_token: Option<&str>,
    config: &ServerConfig,
) -> anyhow::Result<Arc<AppState>> {
    store.ensure_environment(auth::DEFAULT_ENVIRONMENT).await?;
    if let Some(secret) = admin_token
        && store.bootstrap_admin_token(secret).await?
    {
        tracing::info!(message = "Created the bootstrap admin token from ROLLGATE_ADMIN_TOKEN.");
    }
    let telemetry = Telemetry::global();
    Ok(AppState::load(store, telemetry, config).await?)
}

/// Serves on a bound listener until `shutdown` resolves. Tests use this with a
/// port-0 listener.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    spawn_resync(state.clone());
    spawn_change_listener(state.clone());
    rollouts::spawn_controller(state.clone());
    schedule::spawn(state.clone());
    notify::spawn_worker(state.clone());
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    tracing::info!(message = "Rollgate stopped.");
    Ok(())
}

fn spawn_resync(state: Arc<AppState>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RESYNC_INTERVAL);
        tick.tick().await;
        loop {
            tick.tick().await;
            resync_all(&state).await;
        }
    });
}

/// Compares every environment's snapshot and the tokens with the store, and
/// reloads what is stale; recomputes the automatic selections.
async fn resync_all(state: &AppState) {
    let environments = match state.store.list_environments().await {
        Ok(envs) => envs,
        Err(error) => {
            tracing::warn!(message = "Resync could not list environments.", %error);
            return;
        }
    };
    for env in environments {
        // Every resync recomputes automatic selections from the latest data;
        // the snapshot is rebuilt when stale or changed.
        let stale =
            state.snapshot(&env.key).revision != env.revision || !state.has_environment(&env.key);
        if let Err(error) = state.resync_environment(&env.key, stale).await {
            tracing::warn!(message = "Resync could not reload an environment.", environment = env.key, %error);
        }
    }
    if let Err(error) = state.reload_tokens().await {
        tracing::warn!(message = "Resync could not reload tokens.", %error);
    }
}

/// On PostgreSQL, reloads what other replicas change as soon as they commit
/// it (the store's change notices); after a lost connection, everything.
/// The periodic resync stays as the safety net.
fn spawn_change_listener(state: Arc<AppState>) {
    tokio::spawn(async move {
        loop {
            let mut listener = match state.store.listen_changes().await {
                Ok(Some(listener)) => listener,
                // SQLite: one process, nothing to hear.
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(message = "Cannot listen for changes of other replicas; retrying.", %error);
                    tokio::time::sleep(LISTEN_RETRY).await;
                    continue;
                }
            };
            // Changes committed before the subscription are caught here.
            resync_all(&state).await;
            loop {
                match listener.next().await {
                    Ok(Some(store::ChangeNotice::Environment(key))) => {
                        let current = state.store.get_environment(&key).await;
                        let stale = match &current {
                            Ok(Some(env)) => state.snapshot(&key).revision != env.revision,
                            _ => true,
                        };
                        if stale && let Err(error) = state.reload_environment(&key).await {
                            tracing::warn!(message = "Could not reload a changed environment.", environment = key, %error);
                        }
                    }
                    Ok(Some(store::ChangeNotice::Tokens)) => {
                        if let Err(error) = state.reload_tokens().await {
                            tracing::warn!(message = "Could not reload changed tokens.", %error);
                        }
                    }
                    Ok(None) => {
                        tracing::warn!(
                            message = "Lost the change notices' connection; reloading everything."
                        );
                        resync_all(&state).await;
                    }
                    Err(error) => {
                        tracing::warn!(message = "Change notices failed; listening again.", %error);
                        tokio::time::sleep(LISTEN_RETRY).await;
                        break;
                    }
                }
            }
        }
    });
}

/// Resolves on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(message = "Cannot listen for ctrl-c.", %error);
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(message = "Cannot listen for SIGTERM.", %error);
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!(message = "Shutting down: finishing in-flight requests.");
}

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Every route of the server.
pub fn router(state: Arc<AppState>) -> Router {
    use admin::*;
    let api = Router::new()
        .route(
            "/environments",
            get(list_environments).post(create_environment),
        )
        .route("/apply", post(apply))
        .route("/export", get(export))
        .route("/flags", get(list_flags).post(create_flag))
        .route(
            "/flags/{key}",
            get(get_flag).put(put_flag).delete(delete_flag),
        )
        .route("/flags/{key}/enable", post(enable_flag))
        .route("/flags/{key}/disable", post(disable_flag))
        .route("/flags/{key}/versions", get(flag_history))
        .route("/flags/{key}/versions/{version}", get(flag_version))
        .route(
            "/flags/{key}/versions/{version}/restore",
            post(restore_flag),
        )
        .route("/segments", get(list_segments))
        .route(
            "/segments/{key}",
            get(get_segment).put(put_segment).delete(delete_segment),
        )
        .route("/metrics", get(list_metrics))
        .route("/metrics/{key}", get(get_metric))
        .route("/metrics/{key}/series", get(series::series))
        .route("/experiments", get(list_experiments))
        .route("/experiments/{key}", get(get_experiment))
        .route("/experiments/{key}/results", get(experiment_results))
        .route("/rollouts/{flag}", get(rollouts::get_rollout))
        .route("/rollouts/{flag}/{command}", post(rollouts::command))
        .route("/reports/{kind}/{flag}", get(reports::report))
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}", axum::routing::delete(revoke_token))
        .route("/audit", get(list_audit))
        .route("/deliveries", get(notify::list_deliveries))
        .route("/incidents", get(incidents::list_incidents))
        .route("/incidents/{id}", get(incidents::get_incident))
        .route("/incidents/{id}/{action}", post(incidents::act))
        .route(
            "/events",
            post(events::ingest).layer(DefaultBodyLimit::max(events::MAX_EVENTS_BODY_BYTES)),
        )
        .route(
            "/feedback",
            post(feedback::submit).layer(DefaultBodyLimit::max(feedback::MAX_FEEDBACK_BODY_BYTES)),
        );
    Router::new()
        .route("/ofrep/v1/evaluate/flags/{key}", post(ofrep::evaluate_flag))
        .route("/ofrep/v1/evaluate/flags", post(ofrep::evaluate_flags))
        .nest("/api/v1", api)
        .route("/openapi.json", get(openapi::document))
        .route("/status", get(status_page::status_page))
        .route("/status.json", get(status_page::status_json))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(dashboard::routes())
        .fallback(admin::not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(telemetry::track_requests))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal("the server hit a bug while handling this request; it keeps serving")
                .into_response()
        }))
        .with_state(state)
}

async fn method_not_allowed() -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not accept that method",
    )
    .into_response()
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the store answers too.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.store.ping().await {
        Ok(()) => "ready".into_response(),
        Err(error) => {
            tracing::warn!(message = "Readiness check failed.", %error);
            ApiError::unavailable("the database is unavailable").into_response()
        }
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    // Per replica, not per process-wide recorder: whether this one runs the
    // rollout controller.
    let leading = state.leading.load(std::sync::atomic::Ordering::Relaxed);
    let body = format!(
        "{}# HELP rollgate_controller_leader 1 when this replica runs the rollout controller.\n\
         # TYPE rollgate_controller_leader gauge\nrollgate_controller_leader {}\n",
        state.telemetry.render(),
        u8::from(leading)
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
