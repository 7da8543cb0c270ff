//! Flags, segments, metric, experiment and rollout definitions: applying changes as one validated
//! transaction, their version history, and restoring an earlier version.

use std::collections::{HashMap, HashSet};

use flags::{FlagSpec, SegmentSpec, ValidationError};
use indexmap::IndexMap;
use rollout::RolloutSpec;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use stats::{ExperimentSpec, FlagView, MetricSpec};

use crate::audit::{self, NewEntry};
use crate::channels::{ChannelSpec, REDACTED_SECRET, check_channels};
use crate::{Store, StoreError, now_ms};

/// One change to an environment's configuration.
// Change sets are short-lived and moved once, so boxing the large variant
// would only add noise at every call site.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Change {
    /// Creates the flag, or replaces it whole.
    UpsertFlag(FlagSpec),
    DeleteFlag(String),
    UpsertSegment(SegmentSpec),
    DeleteSegment(String),
    /// Creates the metric definition, or replaces it whole.
    UpsertMetric(MetricSpec),
    DeleteMetric(String),
    /// Creates the experiment, or replaces it whole.
    UpsertExperiment(ExperimentSpec),
    DeleteExperiment(String),
    /// Creates the flag's rollout plan, or replaces it whole.
    UpsertRollout(RolloutSpec),
    /// Deletes the rollout plan of a flag.
    DeleteRollout(String),
    /// Creates the notification channel, or replaces it whole.
    UpsertChannel(ChannelSpec),
    DeleteChannel(String),
}

#[derive(Clone, Copy, Debug, Default)]
pub struct ApplyOptions {
    /// Validate and report what would change, but write nothing.
    pub dry_run: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemKind {
    Flag,
    Segment,
    Metric,
    Experiment,
    Rollout,
    Channel,
}

impl ItemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Flag => "flag",
            ItemKind::Segment => "segment",
            ItemKind::Metric => "metric",
            ItemKind::Experiment => "experiment",
            ItemKind::Rollout => "rollout",
            ItemKind::Channel => "channel",
        }
    }

    fn tables(self) -> (&'static str, &'static str) {
        match self {
            ItemKind::Flag => ("flags", "flag_versions"),
            ItemKind::Segment => ("segments", "segment_versions"),
            ItemKind::Metric => ("metrics", "metric_versions"),
            ItemKind::Experiment => ("experiments", "experiment_versions"),
            ItemKind::Rollout => ("rollouts", "rollout_versions"),
            ItemKind::Channel => ("channels", "channel_versions"),
        }
    }
}

impl std::fmt::Display for ItemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeAction {
    Created,
    Updated,
    Deleted,
    Unchanged,
}

impl ChangeAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeAction::Created => "created",
            ChangeAction::Updated => "updated",
            ChangeAction::Deleted => "deleted",
            ChangeAction::Unchanged => "unchanged",
        }
    }
}

impl std::fmt::Display for ChangeAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What applying did (or, on a dry run, would do) to one item.
#[derive(Clone, Debug, PartialEq)]
pub struct AppliedChange {
    pub kind: ItemKind,
    pub key: String,
    pub action: ChangeAction,
    /// The item's version after the change (the deleting version for a deletion).
    pub version: Option<i64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ApplyReport {
    pub changes: Vec<AppliedChange>,
    /// The environment's revision after the change.
    pub revision: i64,
    /// What the change did differently from what it asked, and why (a
    /// running rollout keeps serving its split).
    pub notes: Vec<String>,
}

impl ApplyReport {
    /// Whether anything was (or would be) written.
    pub fn changed(&self) -> bool {
        self.changes
            .iter()
            .any(|c| c.action != ChangeAction::Unchanged)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct StoredFlag {
    pub spec: FlagSpec,
    pub version: i64,
    pub updated_at_ms: i64,
    /// The token name of the last change.
    pub updated_by: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StoredSegment {
    pub spec: SegmentSpec,
    pub version: i64,
    pub updated_at_ms: i64,
    pub updated_by: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StoredExperiment {
    pub spec: ExperimentSpec,
    pub version: i64,
    pub updated_at_ms: i64,
    pub updated_by: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StoredRollout {
    pub spec: RolloutSpec,
    pub version: i64,
    pub updated_at_ms: i64,
    pub updated_by: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StoredChannel {
    /// The spec with its secret in clear: show [`ChannelSpec::redacted`].
    pub spec: ChannelSpec,
    pub version: i64,
    pub updated_at_ms: i64,
    pub updated_by: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StoredMetric {
    pub spec: MetricSpec,
    pub version: i64,
    pub updated_at_ms: i64,
    pub updated_by: String,
}

/// One entry of a metric definition's history.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricVersion {
    pub version: i64,
    /// The metric as of this version; `None` for the version that deleted it.
    pub spec: Option<MetricSpec>,
    pub author: String,
    pub reason: Option<String>,
    pub created_at_ms: i64,
}

/// One entry of a flag's history.
#[derive(Clone, Debug, PartialEq)]
pub struct FlagVersion {
    pub version: i64,
    /// The flag as of this version; `None` for the version that deleted it.
    pub spec: Option<FlagSpec>,
    pub author: String,
    pub reason: Option<String>,
    pub created_at_ms: i64,
}

/// A row of `flags`, `segments` or `metrics`, spec still as JSON text.
struct Current {
    spec: String,
    version: i64,
    updated_at_ms: i64,
    updated_by: String,
}

fn current_from_row(row: &AnyRow) -> Result<(String, Current), StoreError> {
    Ok((
        row.try_get("key")?,
        Current {
            spec: row.try_get("spec")?,
            version: row.try_get("version")?,
            updated_at_ms: row.try_get("updated_at_ms")?,
            updated_by: row.try_get("updated_by")?,
        },
    ))
}

fn parse<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// The canonical JSON text of a spec: what is stored and compared.
fn canonical<T: Serialize>(spec: &T) -> Result<String, StoreError> {
    serde_json::to_string(spec)
        .map_err(|e| StoreError::Corrupt(format!("cannot serialise a spec: {e}")))
}

async fn load_current(
    conn: &mut AnyConnection,
    kind: ItemKind,
    environment: &str,
) -> Result<IndexMap<String, Current>, StoreError> {
    let (table, _) = kind.tables();
    let rows = sqlx::query(&format!(
        "SELECT key, spec, version, updated_at_ms, updated_by FROM {table} WHERE environment = $1 ORDER BY key"
    ))
    .bind(environment)
    .fetch_all(conn)
    .await?;
    rows.iter().map(current_from_row).collect()
}

async fn environment_revision(
    conn: &mut AnyConnection,
    environment: &str,
) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT revision FROM environments WHERE key = $1")
        .bind(environment)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| StoreError::not_found("environment", environment))?;
    Ok(row.try_get("revision")?)
}

/// The next version number of an item: one past the newest in its history,
/// so a deleted and re-created flag continues its numbering.
async fn next_version(
    conn: &mut AnyConnection,
    kind: ItemKind,
    environment: &str,
    key: &str,
) -> Result<i64, StoreError> {
    let (_, versions) = kind.tables();
    let row = sqlx::query(&format!(
        "SELECT MAX(version) AS latest FROM {versions} WHERE environment = $1 AND key = $2"
    ))
    .bind(environment)
    .bind(key)
    .fetch_one(conn)
    .await?;
    let latest: Option<i64> = row.try_get("latest")?;
    Ok(latest.unwrap_or(0) + 1)
}

/// The current items of an environment, by kind.
struct Items {
    flags: IndexMap<String, Current>,
    segments: IndexMap<String, Current>,
    metrics: IndexMap<String, Current>,
    experiments: IndexMap<String, Current>,
    rollouts: IndexMap<String, Current>,
    channels: IndexMap<String, Current>,
}

impl Items {
    async fn load(conn: &mut AnyConnection, environment: &str) -> Result<Items, StoreError> {
        Ok(Items {
            flags: load_current(conn, ItemKind::Flag, environment).await?,
            segments: load_current(conn, ItemKind::Segment, environment).await?,
            metrics: load_current(conn, ItemKind::Metric, environment).await?,
            experiments: load_current(conn, ItemKind::Experiment, environment).await?,
            rollouts: load_current(conn, ItemKind::Rollout, environment).await?,
            channels: load_current(conn, ItemKind::Channel, environment).await?,
        })
    }

    fn of(&self, kind: ItemKind) -> &IndexMap<String, Current> {
        match kind {
            ItemKind::Flag => &self.flags,
            ItemKind::Segment => &self.segments,
            ItemKind::Metric => &self.metrics,
            ItemKind::Experiment => &self.experiments,
            ItemKind::Rollout => &self.rollouts,
            ItemKind::Channel => &self.channels,
        }
    }
}

/// One item's planned write.
struct Planned {
    kind: ItemKind,
    key: String,
    action: ChangeAction,
    before: Option<String>,
    after: Option<String>,
}

/// Who and why, for versions and audit entries.
pub(crate) struct Attribution<'a> {
    pub(crate) actor: &'a str,
    pub(crate) reason: Option<&'a str>,
    /// Overrides the audit action of updates (e.g. `flag.restored`).
    pub(crate) update_action: Option<&'a str>,
    /// The rollout controller's own change of the flag it rolls out; any
    /// other change leaves a running rollout's serving alone.
    pub(crate) rollout_step: bool,
}

impl Store {
    /// Applies `changes` to one environment in one transaction: all of them or,
    /// when any is invalid, none. Items whose new spec equals the stored one
    /// are reported `unchanged` and get no new version.
    pub async fn apply(
        &self,
        environment: &str,
        changes: Vec<Change>,
        actor: &str,
        reason: Option<&str>,
        options: ApplyOptions,
    ) -> Result<ApplyReport, StoreError> {
        let attribution = Attribution {
            actor,
            reason,
            update_action: None,
            rollout_step: false,
        };
        self.apply_attributed(environment, changes, &attribution, options)
            .await
    }

    async fn apply_attributed(
        &self,
        environment: &str,
        changes: Vec<Change>,
        who: &Attribution<'_>,
        options: ApplyOptions,
    ) -> Result<ApplyReport, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin_write().await?;
        let report = apply_in(&mut tx, environment, changes, who, options).await?;
        if options.dry_run || !report.changed() {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok(report)
    }
}

/// Applies `changes` inside the caller's write transaction, bumping the
/// environment's revision when anything changes (unless a dry run). The
/// caller commits, or rolls back a dry run.
pub(crate) async fn apply_in(
    tx: &mut AnyConnection,
    environment: &str,
    changes: Vec<Change>,
    who: &Attribution<'_>,
    options: ApplyOptions,
) -> Result<ApplyReport, StoreError> {
    {
        let revision = environment_revision(&mut *tx, environment).await?;
        let now_items = Items::load(&mut *tx, environment).await?;
        let mut notes = Vec::new();
        let changes = if who.rollout_step {
            changes
        } else {
            keep_rollout_serving(&mut *tx, environment, &now_items, changes, &mut notes).await?
        };

        let plan = plan_changes(changes, &now_items)?;

        let mut report = ApplyReport {
            changes: Vec::with_capacity(plan.len()),
            revision,
            notes,
        };
        let changed = plan.iter().any(|p| p.action != ChangeAction::Unchanged);
        if changed {
            report.revision += 1;
        }
        let now = now_ms();
        for p in &plan {
            let (table, versions) = p.kind.tables();
            let version = if p.action == ChangeAction::Unchanged {
                now_items.of(p.kind).get(&p.key).map(|c| c.version)
            } else {
                Some(next_version(&mut *tx, p.kind, environment, &p.key).await?)
            };
            report.changes.push(AppliedChange {
                kind: p.kind,
                key: p.key.clone(),
                action: p.action,
                version,
            });
            if options.dry_run || p.action == ChangeAction::Unchanged {
                continue;
            }
            let version = version.unwrap_or(1);
            match &p.after {
                Some(spec) => {
                    sqlx::query(&format!(
                        "INSERT INTO {table} (environment, key, version, spec, updated_at_ms, updated_by) \
                         VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (environment, key) DO UPDATE SET version = excluded.version, \
                         spec = excluded.spec, updated_at_ms = excluded.updated_at_ms, updated_by = excluded.updated_by"
                    ))
                    .bind(environment)
                    .bind(&p.key)
                    .bind(version)
                    .bind(spec)
                    .bind(now)
                    .bind(who.actor)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query(&format!(
                        "DELETE FROM {table} WHERE environment = $1 AND key = $2"
                    ))
                    .bind(environment)
                    .bind(&p.key)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            sqlx::query(&format!(
                "INSERT INTO {versions} (environment, key, version, spec, author, reason, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ))
            .bind(environment)
            .bind(&p.key)
            .bind(version)
            .bind(p.after.as_deref())
            .bind(who.actor)
            .bind(who.reason)
            .bind(now)
            .execute(&mut *tx)
            .await?;

            let action = match (p.action, who.update_action) {
                (ChangeAction::Updated, Some(action)) => action.to_owned(),
                (action, _) => format!("{}.{}", p.kind, action),
            };
            let before = p
                .before
                .as_deref()
                .map(|t| parse::<Value>("audit before", t))
                .transpose()?
                .map(|v| redact_secret(p.kind, v));
            let after = p
                .after
                .as_deref()
                .map(|t| parse::<Value>("audit after", t))
                .transpose()?
                .map(|v| redact_secret(p.kind, v));
            audit::record(
                &mut *tx,
                NewEntry {
                    actor: who.actor,
                    action: &action,
                    environment: Some(environment),
                    target_kind: p.kind.as_str(),
                    target_key: &p.key,
                    before: before.as_ref(),
                    after: after.as_ref(),
                    reason: who.reason,
                },
            )
            .await?;
        }
        if options.dry_run || !changed {
            return Ok(report);
        }
        sqlx::query("UPDATE environments SET revision = $1 WHERE key = $2")
            .bind(report.revision)
            .bind(environment)
            .execute(&mut *tx)
            .await?;
        Ok(report)
    }
}

impl Store {
    /// The environment's flags and segments as compiled by the server, with its revision.
    pub async fn load_environment(
        &self,
        environment: &str,
    ) -> Result<(Vec<FlagSpec>, Vec<SegmentSpec>, i64), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let revision = environment_revision(&mut conn, environment).await?;
        let flags = load_current(&mut conn, ItemKind::Flag, environment).await?;
        let segments = load_current(&mut conn, ItemKind::Segment, environment).await?;
        let flags = flags
            .values()
            .map(|c| parse("flag spec", &c.spec))
            .collect::<Result<_, _>>()?;
        let segments = segments
            .values()
            .map(|c| parse("segment spec", &c.spec))
            .collect::<Result<_, _>>()?;
        Ok((flags, segments, revision))
    }

    /// The environment's flags, by key.
    pub async fn list_flags(&self, environment: &str) -> Result<Vec<StoredFlag>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let current = load_current(&mut conn, ItemKind::Flag, environment).await?;
        current.into_values().map(stored_flag).collect()
    }

    pub async fn get_flag(
        &self,
        environment: &str,
        key: &str,
    ) -> Result<Option<StoredFlag>, StoreError> {
        let row = sqlx::query(
            "SELECT key, spec, version, updated_at_ms, updated_by FROM flags WHERE environment = $1 AND key = $2",
        )
        .bind(environment)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(|r| current_from_row(r).and_then(|(_, c)| stored_flag(c)))
            .transpose()
    }

    pub async fn list_segments(&self, environment: &str) -> Result<Vec<StoredSegment>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let current = load_current(&mut conn, ItemKind::Segment, environment).await?;
        current.into_values().map(stored_segment).collect()
    }

    pub async fn get_segment(
        &self,
        environment: &str,
        key: &str,
    ) -> Result<Option<StoredSegment>, StoreError> {
        let row = sqlx::query(
            "SELECT key, spec, version, updated_at_ms, updated_by FROM segments WHERE environment = $1 AND key = $2",
        )
        .bind(environment)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(|r| current_from_row(r).and_then(|(_, c)| stored_segment(c)))
            .transpose()
    }

    /// The environment's metric definitions, by key, as written.
    pub async fn load_metrics(&self, environment: &str) -> Result<Vec<MetricSpec>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        load_current(&mut conn, ItemKind::Metric, environment)
            .await?
            .values()
            .map(|c| parse("metric spec", &c.spec))
            .collect()
    }

    /// The environment's metric definitions, by key.
    pub async fn list_metrics(&self, environment: &str) -> Result<Vec<StoredMetric>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let current = load_current(&mut conn, ItemKind::Metric, environment).await?;
        current.into_values().map(stored_metric).collect()
    }

    pub async fn get_metric(
        &self,
        environment: &str,
        key: &str,
    ) -> Result<Option<StoredMetric>, StoreError> {
        let row = sqlx::query(
            "SELECT key, spec, version, updated_at_ms, updated_by FROM metrics WHERE environment = $1 AND key = $2",
        )
        .bind(environment)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(|r| current_from_row(r).and_then(|(_, c)| stored_metric(c)))
            .transpose()
    }

    /// The environment's experiments, by key.
    pub async fn list_experiments(
        &self,
        environment: &str,
    ) -> Result<Vec<StoredExperiment>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let current = load_current(&mut conn, ItemKind::Experiment, environment).await?;
        current.into_values().map(stored_experiment).collect()
    }

    pub async fn get_experiment(
        &self,
        environment: &str,
        key: &str,
    ) -> Result<Option<StoredExperiment>, StoreError> {
        let row = sqlx::query(
            "SELECT key, spec, version, updated_at_ms, updated_by FROM experiments WHERE environment = $1 AND key = $2",
        )
        .bind(environment)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(|r| current_from_row(r).and_then(|(_, c)| stored_experiment(c)))
            .transpose()
    }

    /// The environment's rollout plans, by flag.
    pub async fn list_rollouts(&self, environment: &str) -> Result<Vec<StoredRollout>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let current = load_current(&mut conn, ItemKind::Rollout, environment).await?;
        current.into_values().map(stored_rollout).collect()
    }

    /// The rollout plan of a flag.
    pub async fn get_rollout(
        &self,
        environment: &str,
        flag: &str,
    ) -> Result<Option<StoredRollout>, StoreError> {
        let row = sqlx::query(
            "SELECT key, spec, version, updated_at_ms, updated_by FROM rollouts WHERE environment = $1 AND key = $2",
        )
        .bind(environment)
        .bind(flag)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(|r| current_from_row(r).and_then(|(_, c)| stored_rollout(c)))
            .transpose()
    }

    /// The environment's notification channels, by key (secrets in clear).
    pub async fn list_channels(&self, environment: &str) -> Result<Vec<StoredChannel>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let current = load_current(&mut conn, ItemKind::Channel, environment).await?;
        current
            .into_values()
            .map(|c| {
                Ok(StoredChannel {
                    spec: parse("channel spec", &c.spec)?,
                    version: c.version,
                    updated_at_ms: c.updated_at_ms,
                    updated_by: c.updated_by,
                })
            })
            .collect()
    }

    /// Every version of a metric definition, newest first; empty when it never existed.
    pub async fn metric_history(
        &self,
        environment: &str,
        key: &str,
    ) -> Result<Vec<MetricVersion>, StoreError> {
        let rows = sqlx::query(
            "SELECT version, spec, author, reason, created_at_ms FROM metric_versions \
             WHERE environment = $1 AND key = $2 ORDER BY version DESC",
        )
        .bind(environment)
        .bind(key)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let spec: Option<String> = row.try_get("spec")?;
                Ok(MetricVersion {
                    version: row.try_get("version")?,
                    spec: spec
                        .as_deref()
                        .map(|t| parse("metric version spec", t))
                        .transpose()?,
                    author: row.try_get("author")?,
                    reason: row.try_get("reason")?,
                    created_at_ms: row.try_get("created_at_ms")?,
                })
            })
            .collect()
    }

    /// Every version of a flag, newest first; empty when it never existed.
    pub async fn flag_history(
        &self,
        environment: &str,
        key: &str,
    ) -> Result<Vec<FlagVersion>, StoreError> {
        let rows = sqlx::query(
            "SELECT version, spec, author, reason, created_at_ms FROM flag_versions \
             WHERE environment = $1 AND key = $2 ORDER BY version DESC",
        )
        .bind(environment)
        .bind(key)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(flag_version_from_row).collect()
    }

    pub async fn flag_version(
        &self,
        environment: &str,
        key: &str,
        version: i64,
    ) -> Result<Option<FlagVersion>, StoreError> {
        let row = sqlx::query(
            "SELECT version, spec, author, reason, created_at_ms FROM flag_versions \
             WHERE environment = $1 AND key = $2 AND version = $3",
        )
        .bind(environment)
        .bind(key)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(flag_version_from_row).transpose()
    }

    /// Makes an earlier version of a flag current again, as a new version
    /// (history is never rewritten). Restoring the current state changes nothing.
    pub async fn restore_flag(
        &self,
        environment: &str,
        key: &str,
        version: i64,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<ApplyReport, StoreError> {
        let old = self
            .flag_version(environment, key, version)
            .await?
            .ok_or_else(|| StoreError::not_found("flag version", &format!("{key}@{version}")))?;
        let spec = old.spec.ok_or_else(|| {
            StoreError::Conflict(format!(
                "version {version} of flag `{key}` is its deletion; restore a version before it"
            ))
        })?;
        let default_reason = format!("restored version {version}");
        let who = Attribution {
            actor,
            reason: Some(reason.unwrap_or(&default_reason)),
            update_action: Some("flag.restored"),
            rollout_step: false,
        };
        self.apply_attributed(
            environment,
            vec![Change::UpsertFlag(spec)],
            &who,
            ApplyOptions::default(),
        )
        .await
    }
}

fn stored_flag(c: Current) -> Result<StoredFlag, StoreError> {
    Ok(StoredFlag {
        spec: parse("flag spec", &c.spec)?,
        version: c.version,
        updated_at_ms: c.updated_at_ms,
        updated_by: c.updated_by,
    })
}

fn stored_segment(c: Current) -> Result<StoredSegment, StoreError> {
    Ok(StoredSegment {
        spec: parse("segment spec", &c.spec)?,
        version: c.version,
        updated_at_ms: c.updated_at_ms,
        updated_by: c.updated_by,
    })
}

fn stored_metric(c: Current) -> Result<StoredMetric, StoreError> {
    Ok(StoredMetric {
        spec: parse("metric spec", &c.spec)?,
        version: c.version,
        updated_at_ms: c.updated_at_ms,
        updated_by: c.updated_by,
    })
}

fn stored_experiment(c: Current) -> Result<StoredExperiment, StoreError> {
    Ok(StoredExperiment {
        spec: parse("experiment spec", &c.spec)?,
        version: c.version,
        updated_at_ms: c.updated_at_ms,
        updated_by: c.updated_by,
    })
}

fn stored_rollout(c: Current) -> Result<StoredRollout, StoreError> {
    Ok(StoredRollout {
        spec: parse("rollout spec", &c.spec)?,
        version: c.version,
        updated_at_ms: c.updated_at_ms,
        updated_by: c.updated_by,
    })
}

fn flag_version_from_row(row: &AnyRow) -> Result<FlagVersion, StoreError> {
    let spec: Option<String> = row.try_get("spec")?;
    Ok(FlagVersion {
        version: row.try_get("version")?,
        spec: spec
            .as_deref()
            .map(|t| parse("flag version spec", t))
            .transpose()?,
        author: row.try_get("author")?,
        reason: row.try_get("reason")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

/// The name of the flag rule a rollout adds for a phase's audience (the
/// server's `rollouts::AUDIENCE_RULE`).
const AUDIENCE_RULE: &str = "rollout audience";

/// A flag whose rollout is running (or held, or paused) keeps the default
/// rule and audience rule the rollout set, whatever a change says; the rest
/// of the change applies, and a note says so.
async fn keep_rollout_serving(
    conn: &mut AnyConnection,
    environment: &str,
    now_items: &Items,
    changes: Vec<Change>,
    notes: &mut Vec<String>,
) -> Result<Vec<Change>, StoreError> {
    let mut out = Vec::with_capacity(changes.len());
    for change in changes {
        let Change::UpsertFlag(mut spec) = change else {
            out.push(change);
            continue;
        };
        let active = match sqlx::query(
            "SELECT state FROM rollout_states WHERE environment = $1 AND flag = $2",
        )
        .bind(environment)
        .bind(&spec.key)
        .fetch_optional(&mut *conn)
        .await?
        {
            Some(row) => {
                let text: String = row.try_get("state")?;
                serde_json::from_str::<rollout::RolloutState>(&text)
                    .map_err(|e| StoreError::Corrupt(format!("rollout state: {e}")))?
                    .is_active()
            }
            None => false,
        };
        let current = now_items
            .flags
            .get(&spec.key)
            .map(|c| parse::<FlagSpec>("flag spec", &c.spec))
            .transpose()?;
        if let (true, Some(current)) = (active, current) {
            let owned = |rules: &[flags::RuleSpec]| {
                rules
                    .iter()
                    .filter(|r| r.name.as_deref() == Some(AUDIENCE_RULE))
                    .cloned()
                    .collect::<Vec<_>>()
            };
            let kept = owned(&current.rules);
            let asked_default = spec.default.serve != current.default.serve;
            let asked_rules = owned(&spec.rules) != kept;
            spec.rules
                .retain(|r| r.name.as_deref() != Some(AUDIENCE_RULE));
            spec.rules.extend(kept);
            spec.default.serve = current.default.serve.clone();
            if asked_default || asked_rules {
                notes.push(format!(
                    "flag `{}`: its rollout is running, so the rollout's split was kept;                      the rest of the change applies (use `rollgate rollout` to change the rollout)",
                    spec.key
                ));
            }
        }
        out.push(Change::UpsertFlag(spec));
    }
    Ok(out)
}

/// Works out, without writing, what each change does, and validates the
/// resulting flag set and metric definitions as a whole.
fn plan_changes(changes: Vec<Change>, now_items: &Items) -> Result<Vec<Planned>, StoreError> {
    let mut problems: Vec<ValidationError> = Vec::new();
    // The state after the changes, as canonical JSON text by key.
    let mut flags_next: HashMap<String, Option<String>> = HashMap::new();
    let mut segments_next: HashMap<String, Option<String>> = HashMap::new();
    let mut metrics_next: HashMap<String, Option<String>> = HashMap::new();
    let mut experiments_next: HashMap<String, Option<String>> = HashMap::new();
    let mut rollouts_next: HashMap<String, Option<String>> = HashMap::new();
    let mut channels_next: HashMap<String, Option<String>> = HashMap::new();
    let mut order: Vec<(ItemKind, String)> = Vec::new();

    for change in changes {
        let (kind, key, next) = match change {
            Change::UpsertFlag(spec) => (ItemKind::Flag, spec.key.clone(), Some(canonical(&spec)?)),
            Change::DeleteFlag(key) => (ItemKind::Flag, key, None),
            Change::UpsertSegment(spec) => {
                (ItemKind::Segment, spec.key.clone(), Some(canonical(&spec)?))
            }
            Change::DeleteSegment(key) => (ItemKind::Segment, key, None),
            Change::UpsertMetric(spec) => {
                (ItemKind::Metric, spec.key.clone(), Some(canonical(&spec)?))
            }
            Change::DeleteMetric(key) => (ItemKind::Metric, key, None),
            Change::UpsertExperiment(spec) => (
                ItemKind::Experiment,
                spec.key.clone(),
                Some(canonical(&spec)?),
            ),
            Change::DeleteExperiment(key) => (ItemKind::Experiment, key, None),
            Change::UpsertRollout(spec) => (
                ItemKind::Rollout,
                spec.flag.clone(),
                Some(canonical(&spec)?),
            ),
            Change::DeleteRollout(flag) => (ItemKind::Rollout, flag, None),
            Change::UpsertChannel(spec) => {
                (ItemKind::Channel, spec.key.clone(), Some(canonical(&spec)?))
            }
            Change::DeleteChannel(key) => (ItemKind::Channel, key, None),
        };
        let now = now_items.of(kind);
        let next_map = match kind {
            ItemKind::Flag => &mut flags_next,
            ItemKind::Segment => &mut segments_next,
            ItemKind::Metric => &mut metrics_next,
            ItemKind::Experiment => &mut experiments_next,
            ItemKind::Rollout => &mut rollouts_next,
            ItemKind::Channel => &mut channels_next,
        };
        if next.is_none() && !now.contains_key(&key) {
            return Err(StoreError::not_found(kind.as_str(), &key));
        }
        if next_map.insert(key.clone(), next).is_some() {
            problems.push(ValidationError {
                subject: format!("{kind} `{key}`"),
                field: "key".to_owned(),
                message: format!("the {kind} `{key}` appears more than once in one change"),
            });
            continue;
        }
        order.push((kind, key));
    }
    if !problems.is_empty() {
        return Err(StoreError::Invalid(problems));
    }

    let flag_specs = merged::<FlagSpec>(&now_items.flags, &flags_next)?;
    let segment_specs = merged::<SegmentSpec>(&now_items.segments, &segments_next)?;
    let metric_specs = merged::<MetricSpec>(&now_items.metrics, &metrics_next)?;
    let experiment_specs = merged::<ExperimentSpec>(&now_items.experiments, &experiments_next)?;
    let rollout_specs = merged::<RolloutSpec>(&now_items.rollouts, &rollouts_next)?;
    let channel_specs = merged::<ChannelSpec>(&now_items.channels, &channels_next)?;
    problems.extend(check_channels(&channel_specs));
    // Every check runs, so that a change with bad flags, metrics and
    // experiments hears of all its problems at once.
    if let Err(errors) = flags::compile(&flag_specs, &segment_specs) {
        problems.extend(errors);
    }
    let as_validation = |e: stats::MetricError| ValidationError {
        subject: e.subject,
        field: e.field,
        message: e.message,
    };
    match stats::compile_metrics(&metric_specs) {
        Ok(metrics) => {
            let mut views: HashMap<String, FlagView> = flag_specs
                .iter()
                .map(|f| (f.key.clone(), flag_view(f)))
                .collect();
            // A rollout phase that names an experiment serves its arms.
            for plan in &rollout_specs {
                for phase in &plan.phases {
                    let experiment = phase
                        .experiment
                        .as_ref()
                        .and_then(|key| experiment_specs.iter().find(|e| e.key == *key));
                    if let (Some(e), Some(view)) = (experiment, views.get_mut(&plan.flag))
                        && e.flag == plan.flag
                    {
                        view.splits.push(
                            e.arms
                                .iter()
                                .map(|a| (a.variant.clone(), a.weight))
                                .collect(),
                        );
                    }
                }
            }
            if let Err(errors) = stats::compile_experiments(&experiment_specs, &views, &metrics) {
                problems.extend(errors.into_iter().map(as_validation));
            }
            let flags: HashMap<String, Vec<String>> = flag_specs
                .iter()
                .map(|f| (f.key.clone(), f.variants.keys().cloned().collect()))
                .collect();
            let segments: HashSet<String> = segment_specs.iter().map(|s| s.key.clone()).collect();
            let context = rollout::PlanContext {
                flags: &flags,
                segments: &segments,
                metrics: &metrics,
                experiments: &experiment_specs,
            };
            if let Err(errors) = rollout::compile_rollouts(&rollout_specs, &context) {
                problems.extend(errors.into_iter().map(|e| ValidationError {
                    subject: e.subject,
                    field: e.field,
                    message: e.message,
                }));
            }
        }
        Err(errors) => problems.extend(errors.into_iter().map(as_validation)),
    }
    if !problems.is_empty() {
        return Err(StoreError::Invalid(problems));
    }

    order
        .into_iter()
        .map(|(kind, key)| {
            let now = now_items.of(kind);
            let next = match kind {
                ItemKind::Flag => &flags_next,
                ItemKind::Segment => &segments_next,
                ItemKind::Metric => &metrics_next,
                ItemKind::Experiment => &experiments_next,
                ItemKind::Rollout => &rollouts_next,
                ItemKind::Channel => &channels_next,
            };
            let before = now.get(&key).map(|c| c.spec.clone());
            let after = next.get(&key).cloned().flatten();
            let action = match (&before, &after) {
                (None, Some(_)) => ChangeAction::Created,
                (Some(_), None) => ChangeAction::Deleted,
                (Some(b), Some(a)) if same_spec(kind, b, a)? => ChangeAction::Unchanged,
                (Some(_), Some(_)) => ChangeAction::Updated,
                (None, None) => ChangeAction::Unchanged,
            };
            Ok(Planned {
                kind,
                key,
                action,
                before,
                after,
            })
        })
        .collect()
}

/// Whether two stored texts describe the same spec (the stored one may have
/// been written by an older serialisation).
fn same_spec(kind: ItemKind, stored: &str, next: &str) -> Result<bool, StoreError> {
    if stored == next {
        return Ok(true);
    }
    let stored = match kind {
        ItemKind::Flag => canonical(&parse::<FlagSpec>("flag spec", stored)?)?,
        ItemKind::Segment => canonical(&parse::<SegmentSpec>("segment spec", stored)?)?,
        ItemKind::Metric => canonical(&parse::<MetricSpec>("metric spec", stored)?)?,
        ItemKind::Experiment => canonical(&parse::<ExperimentSpec>("experiment spec", stored)?)?,
        ItemKind::Rollout => canonical(&parse::<RolloutSpec>("rollout spec", stored)?)?,
        ItemKind::Channel => canonical(&parse::<ChannelSpec>("channel spec", stored)?)?,
    };
    Ok(stored == next)
}

/// A channel's spec as the audit log shows it: without its secret.
fn redact_secret(kind: ItemKind, mut spec: Value) -> Value {
    if kind == ItemKind::Channel
        && let Some(secret) = spec.get_mut("secret")
    {
        *secret = Value::String(REDACTED_SECRET.to_owned());
    }
    spec
}

/// What an experiment needs to know of a flag: its variants and its splits.
pub fn flag_view(flag: &FlagSpec) -> FlagView {
    FlagView {
        variants: flag.variants.keys().cloned().collect(),
        splits: flag
            .rules
            .iter()
            .map(|r| &r.serve)
            .chain([&flag.default.serve])
            .filter_map(|serve| serve.split.as_ref())
            .map(|split| split.iter().map(|(v, w)| (v.clone(), w.0)).collect())
            .collect(),
    }
}

/// Current specs with the planned changes laid over them.
fn merged<T: DeserializeOwned>(
    now: &IndexMap<String, Current>,
    next: &HashMap<String, Option<String>>,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::with_capacity(now.len() + next.len());
    for (key, current) in now {
        match next.get(key) {
            Some(Some(text)) => out.push(parse("spec", text)?),
            Some(None) => {}
            None => out.push(parse("stored spec", &current.spec)?),
        }
    }
    for (key, text) in next {
        if let (false, Some(text)) = (now.contains_key(key), text) {
            out.push(parse("spec", text)?);
        }
    }
    Ok(out)
}
