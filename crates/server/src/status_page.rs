//! The public status page: `GET /status` (HTML) and `GET /status.json`, with
//! no token. It lists the rollouts in progress (flag, the plan's description,
//! phase, percentage, since when) and the known issues: incidents a person
//! published (`public_text`), while they are not resolved.
//!
//! Invariant: nothing private reaches it. It reads only those fields; no
//! metric value, verdict, evidence, incident title, level, actor or token
//! ever does. An environment gets a heading only when it has something to
//! show, so environments with nothing public stay unnamed.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use maud::html;
use rollout::RolloutState;
use serde::Serialize;
use store::{IncidentFilter, StoreError};
use utoipa::ToSchema;

use crate::admin::rfc3339;
use crate::error::ApiError;
use crate::html;
use crate::state::AppState;

/// What `/status.json` answers.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicStatus {
    pub generated_at: String,
    /// Only environments with a rollout in progress or a known issue.
    pub environments: Vec<PublicEnvironment>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicEnvironment {
    pub environment: String,
    pub rollouts: Vec<PublicRollout>,
    pub known_issues: Vec<KnownIssue>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicRollout {
    pub flag: String,
    /// The plan's description.
    pub description: String,
    pub phase: String,
    pub percent: f64,
    /// When the current phase started.
    pub since: Option<String>,
    #[serde(skip)]
    since_ms: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KnownIssue {
    /// What a person wrote for the public.
    pub text: String,
    /// `open`, `investigating` or `mitigated`.
    pub status: String,
    pub opened_at: String,
    #[serde(skip)]
    opened_at_ms: i64,
}

/// Gathers what the page shows.
pub async fn gather(state: &AppState, now_ms: i64) -> Result<PublicStatus, StoreError> {
    let mut environments = Vec::new();
    for env in state.store.list_environments().await? {
        let plans = state.store.list_rollouts(&env.key).await?;
        let mut rollouts = Vec::new();
        for record in state.store.rollout_states(&env.key).await? {
            let Ok(rollout_state) = serde_json::from_str::<RolloutState>(&record.state) else {
                continue;
            };
            if !rollout_state.is_active() {
                continue;
            }
            let Some(plan) = plans.iter().find(|p| p.spec.flag == record.flag) else {
                continue;
            };
            let phases = &plan.spec.phases;
            let Some(phase) = phases.get(rollout_state.phase).or_else(|| phases.last()) else {
                continue;
            };
            rollouts.push(PublicRollout {
                flag: record.flag.clone(),
                description: plan.spec.description.clone(),
                phase: phase.name.clone(),
                percent: phase.percent,
                since: rollout_state.phase_started_ms.map(rfc3339),
                since_ms: rollout_state.phase_started_ms,
            });
        }
        rollouts.sort_by(|a, b| a.flag.cmp(&b.flag));
        let known_issues: Vec<KnownIssue> = state
            .store
            .incidents(
                &env.key,
                &IncidentFilter {
                    public: true,
                    active: true,
                    ..Default::default()
                },
            )
            .await?
            .into_iter()
            .filter_map(|i| {
                Some(KnownIssue {
                    text: i.public_text?,
                    status: i.status,
                    opened_at: rfc3339(i.opened_at_ms),
                    opened_at_ms: i.opened_at_ms,
                })
            })
            .collect();
        if !rollouts.is_empty() || !known_issues.is_empty() {
            environments.push(PublicEnvironment {
                environment: env.key,
                rollouts,
                known_issues,
            });
        }
    }
    Ok(PublicStatus {
        generated_at: rfc3339(now_ms),
        environments,
    })
}

#[utoipa::path(get, path = "/status.json", tag = "status", security(()),
    responses((status = 200, body = PublicStatus), (status = 503, body = crate::error::ErrorBody)))]
pub async fn status_json(
    State(state): State<Arc<AppState>>,
) -> Result<Json<PublicStatus>, ApiError> {
    Ok(Json(gather(&state, crate::now_ms()).await?))
}

#[utoipa::path(get, path = "/status", tag = "status", security(()),
    responses((status = 200, content_type = "text/html", body = String, description = "The status page")))]
pub async fn status_page(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let now = crate::now_ms();
    let status = gather(&state, now).await?;
    Ok(html::respond(html::page("Status", render(&status, now))))
}

fn render(status: &PublicStatus, now_ms: i64) -> maud::Markup {
    html! {
        p.muted { "As of " (html::time(now_ms)) "." }
        @if status.environments.is_empty() {
            p.ok { "No rollouts in progress and no known issues." }
        }
        @for env in &status.environments {
            h2 { (env.environment) }
            h3 { "Known issues" }
            @if env.known_issues.is_empty() {
                p.ok { "None." }
            } @else {
                table {
                    thead { tr { th { "Issue" } th { "Status" } th { "Since" } } }
                    tbody {
                        @for issue in &env.known_issues {
                            tr {
                                td { (issue.text) }
                                td class=(if issue.status == store::INCIDENT_MITIGATED { "ok" } else { "warn" }) { (issue.status) }
                                td { (html::time(issue.opened_at_ms)) }
                            }
                        }
                    }
                }
            }
            h3 { "Rollouts in progress" }
            @if env.rollouts.is_empty() {
                p.muted { "None." }
            } @else {
                table {
                    thead { tr { th { "Feature" } th { "Phase" } th { "Share" } th { "Since" } } }
                    tbody {
                        @for r in &env.rollouts {
                            tr {
                                td {
                                    code { (r.flag) }
                                    @if !r.description.is_empty() {
                                        br;
                                        span.muted { (r.description) }
                                    }
                                }
                                td { (r.phase) }
                                td { (r.percent) "%" }
                                td {
                                    @if let Some(ms) = r.since_ms { (html::time(ms)) } @else { "–" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
