//! Incidents over HTTP (`/api/v1/incidents…`): list, show with timeline and
//! links, and the lifecycle actions (acknowledge, note, status, escalate,
//! publish, resolve). Every change is announced to the channels that want
//! `incident_updated` / `incident_resolved` and serve the incident's level,
//! in the change's own transaction.
//!
//! Escalation: [`escalate_due`] moves every active, unacknowledged incident
//! that has been at its level for longer than its plan's `escalate_after` to
//! the next level. It takes the time as an argument; the controller calls it
//! on the leading replica every tick with the clock's time, and tests call
//! it with the time they want.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use store::{Incident, IncidentChange, IncidentFilter, TimelineEntry};
use utoipa::{IntoParams, ToSchema};

use crate::admin::rfc3339;
use crate::auth::Admin;
use crate::error::{ApiError, ApiPath, ApiQuery};
use crate::notify::Announcement;
use crate::state::AppState;

/// Who escalates an incident nobody acknowledged.
pub const ESCALATOR: &str = "controller";

/// Incidents listed at most by default, and at most at all.
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

// ---------------------------------------------------------------- records

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IncidentRecord {
    pub id: i64,
    pub environment: String,
    pub flag: String,
    /// `guard_rollback`, `guard_pause`, `gates_failed` or `manual_rollback`.
    pub kind: String,
    /// `critical`, `major` or `minor`.
    pub severity: String,
    /// `open`, `investigating`, `mitigated` or `resolved`.
    pub status: String,
    /// `L1`, `L2` or `L3`.
    pub level: String,
    pub title: String,
    pub opened_at: String,
    pub opened_by: String,
    /// Since when it has been at its level (escalation counts from here).
    pub level_since: String,
    pub acknowledged_at: Option<String>,
    pub acknowledged_by: Option<String>,
    /// What the public status page shows; absent while the incident is private.
    pub public_text: Option<String>,
    pub updated_at: String,
    pub resolved_at: Option<String>,
    pub resolution: Option<String>,
    /// What happened: the verdicts with values, intervals, limits and sample
    /// sizes, the phase and generation, and the flag version to return to.
    #[schema(value_type = Object)]
    pub evidence: Option<Value>,
}

impl From<Incident> for IncidentRecord {
    fn from(i: Incident) -> Self {
        IncidentRecord {
            id: i.id,
            environment: i.environment,
            flag: i.flag,
            kind: i.kind,
            severity: i.severity,
            status: i.status,
            level: i.level,
            title: i.title,
            opened_at: rfc3339(i.opened_at_ms),
            opened_by: i.opened_by,
            level_since: rfc3339(i.level_since_ms),
            acknowledged_at: i.acknowledged_at_ms.map(rfc3339),
            acknowledged_by: i.acknowledged_by,
            public_text: i.public_text,
            updated_at: rfc3339(i.updated_at_ms),
            resolved_at: i.resolved_at_ms.map(rfc3339),
            resolution: i.resolution,
            evidence: i.evidence,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimelineRecord {
    pub at: String,
    pub actor: String,
    /// `opened`, `acknowledged`, `note`, `status`, `escalated`, `published`,
    /// `unpublished` or `resolved`.
    pub action: String,
    pub text: Option<String>,
    /// The new status, the levels of an escalation, the flag version, …
    #[schema(value_type = Object)]
    pub detail: Option<Value>,
}

impl From<TimelineEntry> for TimelineRecord {
    fn from(e: TimelineEntry) -> Self {
        TimelineRecord {
            at: rfc3339(e.at_ms),
            actor: e.actor,
            action: e.action,
            text: e.text,
            detail: e.detail,
        }
    }
}

/// Where to look next: the rollout, the flag's versions around the
/// incident, the evidence.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IncidentLinks {
    /// `GET` the rollout's status.
    pub rollout: String,
    /// `GET` the flag's version history.
    pub flag_versions: String,
    /// The flag's version before the rollout (to return to).
    pub flag_version_before: Option<i64>,
    /// The flag's version as the step that opened the incident left it.
    pub flag_version_at: Option<i64>,
    /// `GET` the flag's version as the incident left it.
    pub flag_version: Option<String>,
    /// The rollout's generation (restarts count up) and phase.
    pub generation: Option<i64>,
    pub phase: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct IncidentDetail {
    #[serde(flatten)]
    pub incident: IncidentRecord,
    pub timeline: Vec<TimelineRecord>,
    pub links: IncidentLinks,
}

#[derive(Serialize, ToSchema)]
pub struct IncidentList {
    pub incidents: Vec<IncidentRecord>,
}

fn links(incident: &Incident, timeline: &[TimelineEntry]) -> IncidentLinks {
    let env = &incident.environment;
    let flag = &incident.flag;
    let evidence = incident.evidence.as_ref();
    let flag_version_at = timeline
        .iter()
        .find(|e| e.action == "opened")
        .and_then(|e| e.detail.as_ref())
        .and_then(|d| d["flagVersion"].as_i64());
    IncidentLinks {
        rollout: format!("/api/v1/rollouts/{flag}?environment={env}"),
        flag_versions: format!("/api/v1/flags/{flag}/versions?environment={env}"),
        flag_version_before: evidence.and_then(|e| e["restore_version"].as_i64()),
        flag_version_at,
        flag_version: flag_version_at
            .map(|v| format!("/api/v1/flags/{flag}/versions/{v}?environment={env}")),
        generation: evidence.and_then(|e| e["generation"].as_i64()),
        phase: evidence.and_then(|e| e["phase"].as_str().map(str::to_owned)),
    }
}

// ---------------------------------------------------------------- announcements

/// What a change to an incident tells the channels: `incident_resolved`
/// for a resolution, `incident_updated` for anything else, at the level the
/// incident is at after the change (an escalation reaches the next level's
/// channels).
pub fn announcement(incident: &Incident, entry: &TimelineEntry) -> Announcement {
    let resolved = entry.action == "resolved";
    let event = if resolved {
        "incident_resolved"
    } else {
        "incident_updated"
    };
    let what = match entry.action.as_str() {
        "acknowledged" => format!(
            "acknowledged by {}",
            incident.acknowledged_by.as_deref().unwrap_or(&entry.actor)
        ),
        "status" => format!("now {}", incident.status),
        "escalated" => format!("escalated to {}", incident.level),
        "published" => "published on the status page".to_owned(),
        "unpublished" => "removed from the status page".to_owned(),
        "resolved" => "resolved".to_owned(),
        _ => format!("note from {}", entry.actor),
    };
    let evidence = incident.evidence.as_ref();
    let mut summary = entry.text.clone().unwrap_or_default();
    if entry.action == "escalated" && summary.is_empty() {
        summary = format!("Escalated by {}.", entry.actor);
    }
    Announcement {
        event,
        environment: incident.environment.clone(),
        flag: incident.flag.clone(),
        phase: evidence.and_then(|e| e["phase"].as_str().map(str::to_owned)),
        percent: evidence.and_then(|e| e["percent"].as_f64()),
        level: store::SUPPORT_LEVELS
            .iter()
            .copied()
            .find(|l| *l == incident.level),
        title: format!(
            "Incident #{} on `{}` {what}: {}",
            incident.id, incident.flag, incident.title
        ),
        summary,
        trigger: None,
        evidence: Vec::new(),
        incident: Some(json!({
            "id": incident.id, "status": incident.status, "level": incident.level,
            "kind": incident.kind, "severity": incident.severity,
            "acknowledgedBy": incident.acknowledged_by,
            "change": {"action": entry.action, "by": entry.actor, "text": entry.text,
                       "detail": entry.detail},
        })),
        at_ms: entry.at_ms,
    }
}

/// Applies a change, announcing it in the same transaction, and wakes the
/// delivery worker when something was enqueued.
pub async fn change(
    state: &AppState,
    id: i64,
    change: &IncidentChange,
    actor: &str,
    now_ms: i64,
) -> Result<store::IncidentChanged, store::StoreError> {
    let environment = state.store.incident(id).await?.environment;
    let channels: Vec<store::ChannelSpec> = state
        .store
        .list_channels(&environment)
        .await?
        .into_iter()
        .map(|c| c.spec)
        .collect();
    let changed = state
        .store
        .change_incident(id, change, actor, now_ms, |incident, entry| {
            crate::notify::deliveries_for(&channels, &[announcement(incident, entry)])
        })
        .await?;
    if !changed.deliveries.is_empty() {
        crate::notify::wake_worker(state);
    }
    Ok(changed)
}

// ---------------------------------------------------------------- escalation

/// Escalates, at `now_ms`, every active incident nobody acknowledged that
/// has been at its level for at least its plan's `escalate_after` (30
/// minutes when the plan says nothing or is gone). Returns the ids
/// escalated. One level per call: the next escalation counts from this one.
pub async fn escalate_due(state: &AppState, now_ms: i64) -> Vec<i64> {
    let mut escalated = Vec::new();
    let environments = match state.store.list_environments().await {
        Ok(envs) => envs,
        Err(error) => {
            tracing::warn!(message = "Escalation could not list environments.", %error);
            return escalated;
        }
    };
    for env in environments {
        let open = match state
            .store
            .incidents(
                &env.key,
                &IncidentFilter {
                    active: true,
                    ..Default::default()
                },
            )
            .await
        {
            Ok(open) => open,
            Err(error) => {
                tracing::warn!(message = "Escalation could not list incidents.", environment = env.key, %error);
                continue;
            }
        };
        for incident in open {
            let top = store::SUPPORT_LEVELS.last().copied();
            if incident.acknowledged_at_ms.is_some() || Some(incident.level.as_str()) == top {
                continue;
            }
            let after_ms = escalate_after_ms(state, &env.key, &incident.flag).await;
            if now_ms - incident.level_since_ms < after_ms {
                continue;
            }
            let reason = format!(
                "not acknowledged within {} at {}",
                human_duration(after_ms),
                incident.level
            );
            let escalate = IncidentChange::Escalate {
                from: Some(incident.level.clone()),
                reason: Some(reason),
            };
            match change(state, incident.id, &escalate, ESCALATOR, now_ms).await {
                Ok(changed) => {
                    tracing::info!(
                        message = "Escalated an unacknowledged incident.",
                        id = incident.id,
                        level = changed.incident.level
                    );
                    escalated.push(incident.id);
                }
                // Acknowledged or escalated meanwhile: nothing to do.
                Err(store::StoreError::Conflict(_)) => {}
                Err(error) => {
                    tracing::warn!(message = "Could not escalate an incident.", id = incident.id, %error)
                }
            }
        }
    }
    escalated
}

async fn escalate_after_ms(state: &AppState, environment: &str, flag: &str) -> i64 {
    let spec = state
        .store
        .get_rollout(environment, flag)
        .await
        .ok()
        .flatten();
    spec.and_then(|r| r.spec.escalate_after)
        .and_then(|text| rollout::parse_duration_ms(&text).ok())
        .unwrap_or(rollout::DEFAULT_ESCALATE_AFTER_MS)
}

/// `30m`, `2h`, `90s`, `1d`: the largest unit that divides it.
fn human_duration(ms: i64) -> String {
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)] {
        if ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{}s", ms / 1_000)
}

// ---------------------------------------------------------------- HTTP

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct IncidentsQuery {
    /// Environment key; `production` when absent.
    pub environment: Option<String>,
    /// Only this flag's incidents.
    pub flag: Option<String>,
    /// `open`, `investigating`, `mitigated`, `resolved`, or `active` (every
    /// status but resolved). Every status when absent.
    pub status: Option<String>,
    /// `L1`, `L2` or `L3`.
    pub level: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/incidents", tag = "incidents", params(IncidentsQuery),
    responses((status = 200, body = IncidentList), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn list_incidents(
    State(state): State<Arc<AppState>>,
    _: Admin,
    ApiQuery(q): ApiQuery<IncidentsQuery>,
) -> Result<Json<IncidentList>, ApiError> {
    let env_query = crate::admin::EnvQuery {
        environment: q.environment.clone(),
        reason: None,
    };
    let env = crate::admin::existing_environment(&state, &env_query)?;
    let (status, active) = match q.status.as_deref() {
        None => (None, false),
        Some("active") => (None, true),
        Some(s) if store::INCIDENT_STATUSES.contains(&s) => (Some(s.to_owned()), false),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "status: unknown status `{other}`; use {} or active",
                store::INCIDENT_STATUSES.join(", ")
            )));
        }
    };
    if let Some(level) = &q.level
        && !store::SUPPORT_LEVELS.contains(&level.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "level: unknown support level `{level}`; use {}",
            store::SUPPORT_LEVELS.join(", ")
        )));
    }
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let incidents = state
        .store
        .incidents(
            env,
            &IncidentFilter {
                flag: q.flag,
                status,
                active,
                level: q.level,
                public: false,
                limit: Some(limit),
            },
        )
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(IncidentList { incidents }))
}

async fn detail(state: &AppState, id: i64) -> Result<IncidentDetail, ApiError> {
    let incident = state.store.incident(id).await?;
    let timeline = state.store.incident_timeline(id).await?;
    let links = links(&incident, &timeline);
    Ok(IncidentDetail {
        incident: incident.into(),
        timeline: timeline.into_iter().map(Into::into).collect(),
        links,
    })
}

#[utoipa::path(get, path = "/api/v1/incidents/{id}", tag = "incidents", params(("id" = i64, Path)),
    responses((status = 200, body = IncidentDetail), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_incident(
    State(state): State<Arc<AppState>>,
    _: Admin,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<IncidentDetail>, ApiError> {
    Ok(Json(detail(&state, id).await?))
}

/// The body of an action; which fields an action takes is in its
/// description, and any other field is refused.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    /// `note` (required), `publish` (required: the text for the public),
    /// `ack`, `status` and `escalate` (optional: a note / the reason).
    pub text: Option<String>,
    /// `status`: `investigating` or `mitigated`.
    pub status: Option<String>,
    /// `resolve` (required): what fixed it.
    pub resolution: Option<String>,
}

fn checked_text(
    field: &str,
    text: Option<String>,
    required: bool,
) -> Result<Option<String>, ApiError> {
    match text {
        None if required => Err(ApiError::bad_request(format!(
            "{field} is required for this action"
        ))),
        None => Ok(None),
        Some(t) if t.trim().is_empty() => {
            if required {
                Err(ApiError::bad_request(format!("{field} is empty")))
            } else {
                Ok(None)
            }
        }
        Some(t) if t.chars().count() > store::MAX_INCIDENT_TEXT => {
            Err(ApiError::bad_request(format!(
                "{field} is longer than {} characters",
                store::MAX_INCIDENT_TEXT
            )))
        }
        Some(t) => Ok(Some(t)),
    }
}

/// The change an action asks for, with its body checked.
fn parse_action(action: &str, body: ActionBody) -> Result<IncidentChange, ApiError> {
    let ActionBody {
        text,
        status,
        resolution,
    } = body;
    let refuse_extra = |field: &str, present: bool| {
        if present {
            Err(ApiError::bad_request(format!(
                "`{field}` does not apply to `{action}`"
            )))
        } else {
            Ok(())
        }
    };
    let change = match action {
        "ack" => IncidentChange::Acknowledge {
            note: checked_text("text", text, false)?,
        },
        "note" => IncidentChange::Note {
            text: checked_text("text", text, true)?.unwrap_or_default(),
        },
        "status" => {
            let status = status.clone().ok_or_else(|| {
                ApiError::bad_request("status is required: investigating or mitigated")
            })?;
            if ![store::INCIDENT_INVESTIGATING, store::INCIDENT_MITIGATED]
                .contains(&status.as_str())
            {
                return Err(ApiError::bad_request(format!(
                    "status: `{status}` is not a status to move to; use investigating or \
                     mitigated (resolve closes an incident)"
                )));
            }
            IncidentChange::Status {
                status,
                note: checked_text("text", text, false)?,
            }
        }
        "escalate" => IncidentChange::Escalate {
            from: None,
            reason: checked_text("text", text, false)?,
        },
        "publish" => IncidentChange::Publish {
            text: checked_text("text", text, true)?.unwrap_or_default(),
        },
        "unpublish" => {
            refuse_extra("text", text.is_some())?;
            IncidentChange::Unpublish
        }
        "resolve" => {
            refuse_extra("text", text.is_some())?;
            IncidentChange::Resolve {
                resolution: checked_text("resolution", resolution.clone(), true)?
                    .unwrap_or_default(),
            }
        }
        other => {
            return Err(ApiError::not_found(format!(
                "unknown incident action `{other}`; use ack, note, status, escalate, publish, \
                 unpublish or resolve"
            )));
        }
    };
    let takes_status = matches!(change, IncidentChange::Status { .. });
    let takes_resolution = matches!(change, IncidentChange::Resolve { .. });
    if !takes_status {
        refuse_extra("status", status.is_some())?;
    }
    if !takes_resolution {
        refuse_extra("resolution", resolution.is_some())?;
    }
    Ok(change)
}

#[utoipa::path(post, path = "/api/v1/incidents/{id}/{action}", tag = "incidents",
    params(("id" = i64, Path), ("action" = String, Path,
        description = "ack, note, status, escalate, publish, unpublish or resolve")),
    request_body = ActionBody,
    responses((status = 200, body = IncidentDetail), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn act(
    State(state): State<Arc<AppState>>,
    Admin(who): Admin,
    ApiPath((id, action)): ApiPath<(i64, String)>,
    body: Bytes,
) -> Result<Json<IncidentDetail>, ApiError> {
    let body: ActionBody = if body.iter().all(u8::is_ascii_whitespace) {
        ActionBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("invalid body: {e}"),
            )
        })?
    };
    let change_wanted = parse_action(&action, body)?;
    change(&state, id, &change_wanted, &who.name, crate::now_ms()).await?;
    Ok(Json(detail(&state, id).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident() -> Incident {
        Incident {
            id: 4,
            environment: "production".into(),
            flag: "calc-model".into(),
            kind: "guard_pause".into(),
            severity: "major".into(),
            title: "`complaint_rate` up".into(),
            evidence: Some(json!({"phase": "beta", "percent": 5.0, "generation": 1,
                                  "restore_version": 3})),
            opened_at_ms: 0,
            opened_by: "controller".into(),
            status: "open".into(),
            level: "L3".into(),
            level_since_ms: 10,
            acknowledged_at_ms: None,
            acknowledged_by: None,
            public_text: None,
            updated_at_ms: 10,
            resolved_at_ms: None,
            resolution: None,
        }
    }

    fn entry(action: &str, text: Option<&str>) -> TimelineEntry {
        TimelineEntry {
            id: 1,
            incident: 4,
            at_ms: 10,
            actor: "controller".into(),
            action: action.into(),
            text: text.map(str::to_owned),
            detail: Some(json!({"from": "L2", "to": "L3", "flagVersion": 9})),
        }
    }

    #[test]
    fn an_escalation_is_announced_at_the_new_level() {
        let a = announcement(
            &incident(),
            &entry("escalated", Some("not acknowledged within 30m at L2")),
        );
        assert_eq!(a.event, "incident_updated");
        assert_eq!(a.level, Some("L3"));
        assert_eq!(a.phase.as_deref(), Some("beta"));
        assert_eq!(
            a.title,
            "Incident #4 on `calc-model` escalated to L3: `complaint_rate` up"
        );
        assert_eq!(
            a.incident.as_ref().expect("incident")["change"]["by"],
            "controller"
        );
        let resolved = announcement(&incident(), &entry("resolved", Some("fixed")));
        assert_eq!(resolved.event, "incident_resolved");
    }

    #[test]
    fn links_name_the_rollout_and_the_flag_versions() {
        let l = links(&incident(), &[entry("opened", None)]);
        assert_eq!(
            l.rollout,
            "/api/v1/rollouts/calc-model?environment=production"
        );
        assert_eq!(l.flag_version_before, Some(3));
        assert_eq!(l.flag_version_at, Some(9));
        assert_eq!(
            l.flag_version.as_deref(),
            Some("/api/v1/flags/calc-model/versions/9?environment=production")
        );
    }

    #[test]
    fn actions_take_only_their_fields() {
        let body = |v: Value| serde_json::from_value::<ActionBody>(v).expect("body");
        assert!(parse_action("note", body(json!({}))).is_err());
        assert!(parse_action("note", body(json!({"text": "  "}))).is_err());
        assert!(parse_action("resolve", body(json!({"text": "x"}))).is_err());
        assert!(parse_action("ack", body(json!({"resolution": "x"}))).is_err());
        assert!(parse_action("status", body(json!({"status": "resolved"}))).is_err());
        assert!(parse_action("explode", body(json!({}))).is_err());
        let long = "x".repeat(store::MAX_INCIDENT_TEXT + 1);
        assert!(parse_action("note", body(json!({"text": long}))).is_err());
        assert_eq!(
            parse_action("status", body(json!({"status": "mitigated"}))).ok(),
            Some(IncidentChange::Status {
                status: "mitigated".into(),
                note: None
            })
        );
        assert_eq!(human_duration(30 * 60_000), "30m");
        assert_eq!(human_duration(90_000), "90s");
        assert_eq!(human_duration(2 * 3_600_000), "2h");
    }
}
