//! The controller's state of each rollout and the incidents it opens: a
//! step's new state, its flag change and its incidents commit together, in
//! one transaction, and only over the state the step was computed from.

use flags::FlagSpec;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::config::{Attribution, apply_in};
use crate::deliveries::{NewDelivery, enqueue_in};
use crate::incidents::{NewIncident, open_in};
use crate::{ApplyOptions, Change, Store, StoreError, now_ms};

/// A rollout's stored state (the rollout crate's state as JSON).
#[derive(Clone, Debug, PartialEq)]
pub struct RolloutRecord {
    pub flag: String,
    pub state: String,
    /// Bumped by every write; a step names the version it read.
    pub version: i64,
    pub updated_at_ms: i64,
}

/// One controller step (or manual command) to commit.
#[derive(Clone, Debug)]
pub struct StepCommit<'a> {
    pub environment: &'a str,
    pub flag: &'a str,
    /// The version of the state the step was computed from; `None` when
    /// there was none.
    pub read_version: Option<i64>,
    /// The new state, as JSON.
    pub state: String,
    /// The flag as the step leaves it, when it changes the flag.
    pub flag_change: Option<FlagSpec>,
    pub incidents: Vec<NewIncident>,
    /// The step starts a phase: the flag's per-unit totals as they are now
    /// become the start of its observation window
    /// ([`Store::unit_totals_in_window`]).
    pub new_window: bool,
    /// Who: `controller` for automatic steps, the token's name for commands.
    pub actor: &'a str,
    pub reason: Option<&'a str>,
}

/// What a committed step wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct StepCommitted {
    /// The state's new version.
    pub version: i64,
    /// The environment's revision after the flag change, when there was one.
    pub revision: Option<i64>,
    /// The ids of the incidents opened.
    pub incidents: Vec<i64>,
}

fn record_from_row(row: &AnyRow) -> Result<RolloutRecord, StoreError> {
    Ok(RolloutRecord {
        flag: row.try_get("flag")?,
        state: row.try_get("state")?,
        version: row.try_get("version")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

impl Store {
    /// The stored state of a flag's rollout; `None` before it first started.
    pub async fn rollout_state(
        &self,
        environment: &str,
        flag: &str,
    ) -> Result<Option<RolloutRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT flag, state, version, updated_at_ms FROM rollout_states \
             WHERE environment = $1 AND flag = $2",
        )
        .bind(environment)
        .bind(flag)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    /// Every stored rollout state of an environment, by flag.
    pub async fn rollout_states(
        &self,
        environment: &str,
    ) -> Result<Vec<RolloutRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT flag, state, version, updated_at_ms FROM rollout_states \
             WHERE environment = $1 ORDER BY flag",
        )
        .bind(environment)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    /// Commits a step: the flag change (validated, versioned and audited like
    /// any change), the new state and the incidents, all or nothing. Fails
    /// with `Conflict`, writing nothing, when the stored state is no longer
    /// the one the step read (another step or command got there first).
    pub async fn commit_rollout_step(
        &self,
        step: StepCommit<'_>,
    ) -> Result<StepCommitted, StoreError> {
        self.commit_rollout_step_announcing(step, |_| Vec::new())
            .await
    }

    /// [`Store::commit_rollout_step`] that also enqueues the deliveries
    /// announcing the step, in the same transaction: a step that commits is
    /// announced, and one that does not is not. `announce` gets the ids of
    /// the incidents the step opened, so that the announcements can name
    /// them.
    pub async fn commit_rollout_step_announcing(
        &self,
        step: StepCommit<'_>,
        announce: impl FnOnce(&[i64]) -> Vec<NewDelivery>,
    ) -> Result<StepCommitted, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin_write().await?;
        let stored: Option<i64> =
            sqlx::query("SELECT version FROM rollout_states WHERE environment = $1 AND flag = $2")
                .bind(step.environment)
                .bind(step.flag)
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| row.try_get("version"))
                .transpose()?;
        if stored != step.read_version {
            return Err(StoreError::Conflict(format!(
                "the rollout of `{}` changed while this step was computed; try again",
                step.flag
            )));
        }
        let who = Attribution {
            actor: step.actor,
            reason: step.reason,
            update_action: None,
            rollout_step: true,
        };
        let revision = match step.flag_change.clone() {
            Some(flag) => {
                let report = apply_in(
                    &mut tx,
                    step.environment,
                    vec![Change::UpsertFlag(flag)],
                    &who,
                    ApplyOptions::default(),
                )
                .await?;
                report.changed().then_some(report.revision)
            }
            None => None,
        };
        // The flag's version as the step leaves it: an incident links to it.
        let flag_version: Option<i64> =
            sqlx::query("SELECT version FROM flags WHERE environment = $1 AND key = $2")
                .bind(step.environment)
                .bind(step.flag)
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| row.try_get("version"))
                .transpose()?;
        if step.new_window {
            sqlx::query("DELETE FROM unit_baselines WHERE environment = $1 AND flag = $2")
                .bind(step.environment)
                .bind(step.flag)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO unit_baselines (environment, flag, variant, metric, unit, x, y, events) \
                 SELECT environment, flag, variant, metric, unit, x, y, events FROM unit_totals \
                 WHERE environment = $1 AND flag = $2",
            )
            .bind(step.environment)
            .bind(step.flag)
            .execute(&mut *tx)
            .await?;
        }
        let now = now_ms();
        let version = stored.unwrap_or(0) + 1;
        sqlx::query(
            "INSERT INTO rollout_states (environment, flag, state, version, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (environment, flag) DO UPDATE SET state = excluded.state, \
             version = excluded.version, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(step.environment)
        .bind(step.flag)
        .bind(&step.state)
        .bind(version)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let mut incidents = Vec::with_capacity(step.incidents.len());
        for incident in &step.incidents {
            let id = open_in(&mut tx, &step, incident, flag_version, now).await?;
            incidents.push(id);
        }
        let deliveries = announce(&incidents);
        enqueue_in(&mut tx, step.environment, &deliveries).await?;
        tx.commit().await?;
        Ok(StepCommitted {
            version,
            revision,
            incidents,
        })
    }
}
