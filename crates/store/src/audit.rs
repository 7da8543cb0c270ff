//! The audit log: who changed what, when, why, with the before and after.
//! Entries are written in the transaction of the change they describe.

use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Store, StoreError, now_ms};

/// Entries per page when the caller names no limit.
pub const DEFAULT_AUDIT_LIMIT: i64 = 100;
/// Most entries one page may hold.
pub const MAX_AUDIT_LIMIT: i64 = 1000;

#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    pub at_ms: i64,
    /// The token name that made the change.
    pub actor: String,
    /// `flag.updated`, `token.revoked`, …
    pub action: String,
    pub environment: Option<String>,
    /// `flag`, `segment`, `environment` or `token`.
    pub target_kind: String,
    pub target_key: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub reason: Option<String>,
}

/// Which entries to list, newest first; every field narrows.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub environment: Option<String>,
    pub target_kind: Option<String>,
    pub target_key: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Only entries with a smaller id (the next page).
    pub before_id: Option<i64>,
    pub limit: Option<i64>,
}

pub(crate) struct NewEntry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub environment: Option<&'a str>,
    pub target_kind: &'a str,
    pub target_key: &'a str,
    pub before: Option<&'a Value>,
    pub after: Option<&'a Value>,
    pub reason: Option<&'a str>,
}

pub(crate) async fn record(
    conn: &mut sqlx::AnyConnection,
    entry: NewEntry<'_>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit (at_ms, actor, action, environment, target_kind, target_key, before, after, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(now_ms())
    .bind(entry.actor)
    .bind(entry.action)
    .bind(entry.environment)
    .bind(entry.target_kind)
    .bind(entry.target_key)
    .bind(entry.before.map(Value::to_string))
    .bind(entry.after.map(Value::to_string))
    .bind(entry.reason)
    .execute(conn)
    .await?;
    Ok(())
}

impl Store {
    /// Lists audit entries, newest first.
    pub async fn list_audit(&self, filter: AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = filter
            .limit
            .unwrap_or(DEFAULT_AUDIT_LIMIT)
            .clamp(1, MAX_AUDIT_LIMIT);
        let rows = sqlx::query(
            "SELECT id, at_ms, actor, action, environment, target_kind, target_key, before, after, reason \
             FROM audit \
             WHERE ($1 IS NULL OR environment = $1) \
               AND ($2 IS NULL OR target_kind = $2) \
               AND ($3 IS NULL OR target_key = $3) \
               AND ($4 IS NULL OR actor = $4) \
               AND ($5 IS NULL OR action = $5) \
               AND ($6 IS NULL OR id < $6) \
             ORDER BY id DESC LIMIT $7",
        )
        .bind(filter.environment)
        .bind(filter.target_kind)
        .bind(filter.target_key)
        .bind(filter.actor)
        .bind(filter.action)
        .bind(filter.before_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }
}

fn entry_from_row(row: &AnyRow) -> Result<AuditEntry, StoreError> {
    let json = |column: &str| -> Result<Option<Value>, StoreError> {
        let text: Option<String> = row.try_get(column)?;
        text.map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| StoreError::Corrupt(format!("audit {column}: {e}")))
        })
        .transpose()
    };
    Ok(AuditEntry {
        id: row.try_get("id")?,
        at_ms: row.try_get("at_ms")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        environment: row.try_get("environment")?,
        target_kind: row.try_get("target_kind")?,
        target_key: row.try_get("target_key")?,
        before: json("before")?,
        after: json("after")?,
        reason: row.try_get("reason")?,
    })
}
