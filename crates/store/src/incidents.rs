//! Incidents: opened by the controller in a rollout step's transaction
//! ([`crate::Store::commit_rollout_step`]), then moved through their
//! lifecycle by people and by escalation. Every change appends to the
//! incident's timeline, writes an audit entry and enqueues the deliveries
//! announcing it, all in one transaction.
//!
//! Invariants: a resolved incident changes no more (a note is still
//! allowed); `level_since_ms` is when the incident reached its level, so
//! escalation counts from there; an acknowledged incident does not escalate
//! by itself.

use serde_json::{Value, json};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::audit::{self, NewEntry};
use crate::channels::SUPPORT_LEVELS;
use crate::deliveries::{NewDelivery, enqueue_in};
use crate::{StepCommit, Store, StoreError};

pub const INCIDENT_OPEN: &str = "open";
pub const INCIDENT_INVESTIGATING: &str = "investigating";
pub const INCIDENT_MITIGATED: &str = "mitigated";
pub const INCIDENT_RESOLVED: &str = "resolved";
/// The lifecycle, in order.
pub const INCIDENT_STATUSES: [&str; 4] = [
    INCIDENT_OPEN,
    INCIDENT_INVESTIGATING,
    INCIDENT_MITIGATED,
    INCIDENT_RESOLVED,
];

/// The longest note, resolution or public text, in characters.
pub const MAX_INCIDENT_TEXT: usize = 4_000;

/// An incident to open.
#[derive(Clone, Debug, PartialEq)]
pub struct NewIncident {
    /// `guard_rollback`, `guard_pause`, `gates_failed`, `manual_rollback`.
    pub kind: String,
    pub severity: String,
    /// `L1`, `L2` or `L3`.
    pub level: String,
    pub title: String,
    /// What happened and what was done, for the timeline's first entry.
    pub summary: String,
    /// The controller's incident: evidence, phase, generation, the flag
    /// version to return to.
    pub evidence: Option<Value>,
}

/// An incident as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Incident {
    pub id: i64,
    pub environment: String,
    pub flag: String,
    pub kind: String,
    pub severity: String,
    pub title: String,
    pub evidence: Option<Value>,
    pub opened_at_ms: i64,
    pub opened_by: String,
    /// `open`, `investigating`, `mitigated` or `resolved`.
    pub status: String,
    /// `L1`, `L2` or `L3`.
    pub level: String,
    pub level_since_ms: i64,
    pub acknowledged_at_ms: Option<i64>,
    pub acknowledged_by: Option<String>,
    /// What `/status` shows; `None`: the incident is private.
    pub public_text: Option<String>,
    pub updated_at_ms: i64,
    pub resolved_at_ms: Option<i64>,
    pub resolution: Option<String>,
}

impl Incident {
    pub fn is_resolved(&self) -> bool {
        self.status == INCIDENT_RESOLVED
    }
}

/// One line of an incident's timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct TimelineEntry {
    pub id: i64,
    pub incident: i64,
    pub at_ms: i64,
    pub actor: String,
    /// `opened`, `acknowledged`, `note`, `status`, `escalated`, `published`,
    /// `unpublished` or `resolved`.
    pub action: String,
    pub text: Option<String>,
    pub detail: Option<Value>,
}

/// A change to an incident.
#[derive(Clone, Debug, PartialEq)]
pub enum IncidentChange {
    /// Someone has it: stops escalation.
    Acknowledge {
        note: Option<String>,
    },
    Note {
        text: String,
    },
    /// To `investigating` or `mitigated` (resolving is [`Resolve`]).
    ///
    /// [`Resolve`]: IncidentChange::Resolve
    Status {
        status: String,
        note: Option<String>,
    },
    /// To the next level. `from`: only if the incident is still at this
    /// level (an automatic escalation names the level it judged).
    Escalate {
        from: Option<String>,
        reason: Option<String>,
    },
    /// Shown on `/status` with this text, written for the public.
    Publish {
        text: String,
    },
    Unpublish,
    Resolve {
        resolution: String,
    },
}

impl IncidentChange {
    /// The timeline's action word.
    pub fn action(&self) -> &'static str {
        match self {
            IncidentChange::Acknowledge { .. } => "acknowledged",
            IncidentChange::Note { .. } => "note",
            IncidentChange::Status { .. } => "status",
            IncidentChange::Escalate { .. } => "escalated",
            IncidentChange::Publish { .. } => "published",
            IncidentChange::Unpublish => "unpublished",
            IncidentChange::Resolve { .. } => "resolved",
        }
    }
}

/// Which incidents to list, newest first.
#[derive(Clone, Debug, Default)]
pub struct IncidentFilter {
    pub flag: Option<String>,
    /// One status; or, with `active`, every status but `resolved`.
    pub status: Option<String>,
    pub active: bool,
    pub level: Option<String>,
    /// Only incidents with a public text.
    pub public: bool,
    pub limit: Option<i64>,
}

const COLUMNS: &str = "id, environment, flag, kind, severity, title, evidence, opened_at_ms, \
                       opened_by, status, level, level_since_ms, acknowledged_at_ms, \
                       acknowledged_by, public_text, updated_at_ms, resolved_at_ms, resolution";

fn incident_from_row(row: &AnyRow) -> Result<Incident, StoreError> {
    let evidence: Option<String> = row.try_get("evidence")?;
    Ok(Incident {
        id: row.try_get("id")?,
        environment: row.try_get("environment")?,
        flag: row.try_get("flag")?,
        kind: row.try_get("kind")?,
        severity: row.try_get("severity")?,
        title: row.try_get("title")?,
        evidence: json_column(evidence, "incident evidence")?,
        opened_at_ms: row.try_get("opened_at_ms")?,
        opened_by: row.try_get("opened_by")?,
        status: row.try_get("status")?,
        level: row.try_get("level")?,
        level_since_ms: row.try_get("level_since_ms")?,
        acknowledged_at_ms: row.try_get("acknowledged_at_ms")?,
        acknowledged_by: row.try_get("acknowledged_by")?,
        public_text: row.try_get("public_text")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        resolved_at_ms: row.try_get("resolved_at_ms")?,
        resolution: row.try_get("resolution")?,
    })
}

fn entry_from_row(row: &AnyRow) -> Result<TimelineEntry, StoreError> {
    let detail: Option<String> = row.try_get("detail")?;
    Ok(TimelineEntry {
        id: row.try_get("id")?,
        incident: row.try_get("incident")?,
        at_ms: row.try_get("at_ms")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        text: row.try_get("text")?,
        detail: json_column(detail, "incident timeline detail")?,
    })
}

fn json_column(text: Option<String>, what: &str) -> Result<Option<Value>, StoreError> {
    text.as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

async fn fetch_in(conn: &mut AnyConnection, id: i64) -> Result<Incident, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM incidents WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("incident", &id.to_string()))?;
    incident_from_row(&row)
}

async fn append_in(
    conn: &mut AnyConnection,
    incident: i64,
    at_ms: i64,
    actor: &str,
    action: &str,
    text: Option<&str>,
    detail: Option<&Value>,
) -> Result<TimelineEntry, StoreError> {
    let row = sqlx::query(
        "INSERT INTO incident_timeline (incident, at_ms, actor, action, text, detail) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(incident)
    .bind(at_ms)
    .bind(actor)
    .bind(action)
    .bind(text)
    .bind(detail.map(Value::to_string))
    .fetch_one(&mut *conn)
    .await?;
    Ok(TimelineEntry {
        id: row.try_get("id")?,
        incident,
        at_ms,
        actor: actor.to_owned(),
        action: action.to_owned(),
        text: text.map(str::to_owned),
        detail: detail.cloned(),
    })
}

/// Opens an incident inside the caller's write transaction: the row, the
/// timeline's first entry (with the flag's version as the step left it) and
/// the audit entry. Returns its id.
pub(crate) async fn open_in(
    conn: &mut AnyConnection,
    step: &StepCommit<'_>,
    incident: &NewIncident,
    flag_version: Option<i64>,
    now_ms: i64,
) -> Result<i64, StoreError> {
    let (environment, flag, actor) = (step.environment, step.flag, step.actor);
    let row = sqlx::query(
        "INSERT INTO incidents (environment, flag, kind, severity, title, evidence, opened_at_ms, \
         opened_by, status, level, level_since_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $7, $7) RETURNING id",
    )
    .bind(environment)
    .bind(flag)
    .bind(&incident.kind)
    .bind(&incident.severity)
    .bind(&incident.title)
    .bind(incident.evidence.as_ref().map(Value::to_string))
    .bind(now_ms)
    .bind(actor)
    .bind(INCIDENT_OPEN)
    .bind(&incident.level)
    .fetch_one(&mut *conn)
    .await?;
    let id: i64 = row.try_get("id")?;
    let detail = json!({
        "severity": incident.severity, "level": incident.level, "flagVersion": flag_version,
    });
    append_in(
        conn,
        id,
        now_ms,
        actor,
        "opened",
        Some(&incident.summary),
        Some(&detail),
    )
    .await?;
    let after = json!({
        "id": id, "kind": incident.kind, "severity": incident.severity,
        "level": incident.level, "title": incident.title, "evidence": incident.evidence,
    });
    audit::record(
        conn,
        NewEntry {
            actor,
            action: "incident.opened",
            environment: Some(environment),
            target_kind: "rollout",
            target_key: flag,
            before: None,
            after: Some(&after),
            reason: step.reason,
        },
    )
    .await?;
    Ok(id)
}

/// What a change did: the incident after it and its timeline entry.
#[derive(Clone, Debug, PartialEq)]
pub struct IncidentChanged {
    pub incident: Incident,
    pub entry: TimelineEntry,
    /// The ids of the deliveries enqueued.
    pub deliveries: Vec<i64>,
}

fn refuse(message: String) -> StoreError {
    StoreError::Conflict(message)
}

/// Checks `change` against the incident as it is and applies it to a copy.
fn apply(
    incident: &Incident,
    change: &IncidentChange,
    actor: &str,
    now_ms: i64,
) -> Result<(Incident, Option<String>, Value), StoreError> {
    let id = incident.id;
    let mut after = incident.clone();
    after.updated_at_ms = now_ms;
    if incident.is_resolved() && !matches!(change, IncidentChange::Note { .. }) {
        return Err(refuse(format!(
            "incident {id} is resolved; only notes can be added to it"
        )));
    }
    let acknowledge = |after: &mut Incident| {
        if after.acknowledged_at_ms.is_none() {
            after.acknowledged_at_ms = Some(now_ms);
            after.acknowledged_by = Some(actor.to_owned());
        }
    };
    let (text, detail) = match change {
        IncidentChange::Acknowledge { note } => {
            if let (Some(by), Some(at)) = (&incident.acknowledged_by, incident.acknowledged_at_ms) {
                return Err(refuse(format!(
                    "incident {id} was already acknowledged by {by} at {}",
                    crate::backup::rfc3339(at)
                )));
            }
            acknowledge(&mut after);
            (note.clone(), json!({ "level": incident.level }))
        }
        IncidentChange::Note { text } => (Some(text.clone()), Value::Null),
        IncidentChange::Status { status, note } => {
            if ![INCIDENT_INVESTIGATING, INCIDENT_MITIGATED].contains(&status.as_str()) {
                return Err(refuse(format!(
                    "an incident moves to `investigating` or `mitigated` here (resolve it to \
                     close it), not to `{status}`"
                )));
            }
            if *status == incident.status {
                return Err(refuse(format!("incident {id} is already {status}")));
            }
            after.status = status.clone();
            // Whoever investigates or mitigates it has it.
            acknowledge(&mut after);
            (
                note.clone(),
                json!({ "from": incident.status, "to": status }),
            )
        }
        IncidentChange::Escalate { from, reason } => {
            if let Some(from) = from
                && *from != incident.level
            {
                return Err(refuse(format!(
                    "incident {id} is at {} now, not {from}",
                    incident.level
                )));
            }
            let next = SUPPORT_LEVELS
                .iter()
                .position(|l| *l == incident.level)
                .and_then(|i| SUPPORT_LEVELS.get(i + 1))
                .ok_or_else(|| {
                    refuse(format!(
                        "incident {id} is at {}, the highest support level",
                        incident.level
                    ))
                })?;
            after.level = (*next).to_owned();
            after.level_since_ms = now_ms;
            (
                reason.clone(),
                json!({ "from": incident.level, "to": next }),
            )
        }
        IncidentChange::Publish { text } => {
            after.public_text = Some(text.clone());
            (Some(text.clone()), Value::Null)
        }
        IncidentChange::Unpublish => {
            if incident.public_text.is_none() {
                return Err(refuse(format!("incident {id} is not public")));
            }
            after.public_text = None;
            (None, Value::Null)
        }
        IncidentChange::Resolve { resolution } => {
            after.status = INCIDENT_RESOLVED.to_owned();
            after.resolved_at_ms = Some(now_ms);
            after.resolution = Some(resolution.clone());
            acknowledge(&mut after);
            (
                Some(resolution.clone()),
                json!({ "from": incident.status, "to": INCIDENT_RESOLVED }),
            )
        }
    };
    Ok((after, text, detail))
}

impl Store {
    /// One incident.
    pub async fn incident(&self, id: i64) -> Result<Incident, StoreError> {
        let mut conn = self.pool.acquire().await?;
        fetch_in(&mut conn, id).await
    }

    /// An incident's timeline, oldest first.
    pub async fn incident_timeline(&self, id: i64) -> Result<Vec<TimelineEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, incident, at_ms, actor, action, text, detail FROM incident_timeline \
             WHERE incident = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// The incidents of an environment that pass `filter`, newest first.
    pub async fn incidents(
        &self,
        environment: &str,
        filter: &IncidentFilter,
    ) -> Result<Vec<Incident>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM incidents WHERE environment = $1");
        let mut binds: Vec<&str> = Vec::new();
        if let Some(flag) = &filter.flag {
            sql.push_str(&format!(" AND flag = ${}", binds.len() + 2));
            binds.push(flag);
        }
        if let Some(status) = &filter.status {
            sql.push_str(&format!(" AND status = ${}", binds.len() + 2));
            binds.push(status);
        } else if filter.active {
            sql.push_str(&format!(" AND status <> '{INCIDENT_RESOLVED}'"));
        }
        if let Some(level) = &filter.level {
            sql.push_str(&format!(" AND level = ${}", binds.len() + 2));
            binds.push(level);
        }
        if filter.public {
            sql.push_str(" AND public_text IS NOT NULL");
        }
        sql.push_str(" ORDER BY opened_at_ms DESC, id DESC");
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(" LIMIT {}", limit.max(1)));
        }
        let mut query = sqlx::query(&sql).bind(environment);
        for value in binds {
            query = query.bind(value);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(incident_from_row).collect()
    }

    /// Applies `change` to incident `id` by `actor` at `now_ms`: the
    /// incident, a timeline entry, an audit entry and the deliveries that
    /// `announce` builds from the changed incident, in one transaction.
    /// Fails with `Conflict`, changing nothing, when the incident's state
    /// does not allow the change (resolved, acknowledged twice, at L3, …).
    pub async fn change_incident(
        &self,
        id: i64,
        change: &IncidentChange,
        actor: &str,
        now_ms: i64,
        announce: impl FnOnce(&Incident, &TimelineEntry) -> Vec<NewDelivery>,
    ) -> Result<IncidentChanged, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin_write().await?;
        let before = fetch_in(&mut tx, id).await?;
        let (after, text, detail) = apply(&before, change, actor, now_ms)?;
        sqlx::query(
            "UPDATE incidents SET status = $1, level = $2, level_since_ms = $3, \
             acknowledged_at_ms = $4, acknowledged_by = $5, public_text = $6, updated_at_ms = $7, \
             resolved_at_ms = $8, resolution = $9 WHERE id = $10",
        )
        .bind(&after.status)
        .bind(&after.level)
        .bind(after.level_since_ms)
        .bind(after.acknowledged_at_ms)
        .bind(after.acknowledged_by.as_deref())
        .bind(after.public_text.as_deref())
        .bind(after.updated_at_ms)
        .bind(after.resolved_at_ms)
        .bind(after.resolution.as_deref())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let detail = (!detail.is_null()).then_some(detail);
        let entry = append_in(
            &mut tx,
            id,
            now_ms,
            actor,
            change.action(),
            text.as_deref(),
            detail.as_ref(),
        )
        .await?;
        let summary = |i: &Incident| {
            json!({
                "status": i.status, "level": i.level,
                "acknowledgedBy": i.acknowledged_by, "public": i.public_text.is_some(),
            })
        };
        let (was, is) = (summary(&before), summary(&after));
        let action = format!("incident.{}", change.action());
        let key = id.to_string();
        audit::record(
            &mut tx,
            NewEntry {
                actor,
                action: &action,
                environment: Some(&before.environment),
                target_kind: "incident",
                target_key: &key,
                before: Some(&was),
                after: Some(&is),
                reason: text.as_deref(),
            },
        )
        .await?;
        let deliveries = announce(&after, &entry);
        let ids = enqueue_in(&mut tx, &before.environment, &deliveries).await?;
        tx.commit().await?;
        Ok(IncidentChanged {
            incident: after,
            entry,
            deliveries: ids,
        })
    }

    /// The scheduled time a channel's `event` (daily digest, weekly report)
    /// was last sent for; `None` before the first.
    pub async fn schedule_last_run(
        &self,
        environment: &str,
        channel: &str,
        event: &str,
    ) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "SELECT last_run_ms FROM channel_schedules \
             WHERE environment = $1 AND channel = $2 AND event = $3",
        )
        .bind(environment)
        .bind(channel)
        .bind(event)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("last_run_ms")).transpose()?)
    }

    /// Records that a channel's `event` was sent for the scheduled time
    /// `run_ms` and enqueues `deliveries`, in one transaction; does nothing
    /// and returns false when that time (or a later one) was already sent.
    pub async fn enqueue_scheduled(
        &self,
        environment: &str,
        channel: &str,
        event: &str,
        run_ms: i64,
        deliveries: &[NewDelivery],
    ) -> Result<bool, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin_write().await?;
        let last: Option<i64> = sqlx::query(
            "SELECT last_run_ms FROM channel_schedules \
             WHERE environment = $1 AND channel = $2 AND event = $3",
        )
        .bind(environment)
        .bind(channel)
        .bind(event)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get("last_run_ms"))
        .transpose()?;
        if last.is_some_and(|last| last >= run_ms) {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO channel_schedules (environment, channel, event, last_run_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (environment, channel, event) \
             DO UPDATE SET last_run_ms = excluded.last_run_ms",
        )
        .bind(environment)
        .bind(channel)
        .bind(event)
        .bind(run_ms)
        .execute(&mut *tx)
        .await?;
        enqueue_in(&mut tx, environment, deliveries).await?;
        tx.commit().await?;
        Ok(true)
    }
}
