//! All of Rollgate's SQL: environments, flags and segments with their version
//! history, tokens, and the audit log, on SQLite (embedded, the default) or
//! PostgreSQL.
//!
//! One code path serves both databases: queries go through sqlx's `Any`
//! driver and are written in the SQL both accept (`$n` parameters,
//! `ON CONFLICT`, `RETURNING`). Only the migrations differ, one folder each.
//!
//! Invariants:
//! - A change is validated (through `flags::compile` and
//!   `stats::compile_metrics`) against exactly the state it is committed on,
//!   inside the same transaction; the store never holds a flag set or metric
//!   definitions that do not compile.
//! - Every committed change of a flag, segment or metric writes a version row
//!   and an audit entry in that same transaction. A change that changes
//!   nothing writes neither.
//! - Writes are serialised in-process, so SQLite never has to upgrade a read
//!   lock under contention.

mod aggregates;
mod audit;
mod backup;
mod channels;
mod cluster;
mod config;
mod deliveries;
mod error;
mod events;
mod incidents;
mod rollouts;
mod server_keys;
#[cfg(feature = "test-support")]
pub mod test_support;
mod tokens;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor, Row};

pub use aggregates::{
    BucketRow, CovariateRow, ExposureRow, FoldWrite, HistoryDelta, TotalDelta, UnitCovariate,
    UnitTotal, VariantExposures,
};
pub use audit::{AuditEntry, AuditFilter, DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT};
pub use backup::{AppliedMigration, BACKUP_FORMAT, BACKUP_FORMAT_VERSION, BackupSummary};
pub use channels::{
    CHANNEL_EVENTS, ChannelFormat, ChannelSpec, DEFAULT_DIGEST_AT, DEFAULT_TIMEZONE,
    DEFAULT_WEEKLY_ON, REDACTED_SECRET, SUPPORT_LEVELS, WEEKDAYS, check_channels,
    parse_time_of_day, parse_timezone, parse_weekday,
};
pub use cluster::{CHANGES_CHANNEL, CONTROLLER_LOCK, ChangeListener, ChangeNotice, Leadership};
pub use config::{
    AppliedChange, ApplyOptions, ApplyReport, Change, ChangeAction, FlagVersion, ItemKind,
    MetricVersion, StoredChannel, StoredExperiment, StoredFlag, StoredMetric, StoredRollout,
    StoredSegment, flag_view,
};
pub use deliveries::{
    DEFAULT_DELIVERY_LIMIT, DELIVERY_DELIVERED, DELIVERY_FAILED, DELIVERY_QUEUED, Delivery,
    DeliveryFilter, MAX_DELIVERY_LIMIT, NewDelivery,
};
pub use error::StoreError;
pub use events::{Appended, NewBatch, StoredBatch};
pub use incidents::{
    INCIDENT_INVESTIGATING, INCIDENT_MITIGATED, INCIDENT_OPEN, INCIDENT_RESOLVED,
    INCIDENT_STATUSES, Incident, IncidentChange, IncidentChanged, IncidentFilter,
    MAX_INCIDENT_TEXT, NewIncident, TimelineEntry,
};
pub use rollouts::{RolloutRecord, StepCommit, StepCommitted};
pub use tokens::{ActiveToken, TokenKind, TokenRecord, hash_token};

/// Name of the SQLite file inside the data directory.
pub const SQLITE_FILE: &str = "rollgate.db";

/// Longest time a statement waits for SQLite's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A handle on the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The database URL (for the connections of `cluster`: notices and
    /// the controller's lock live outside the pool).
    url: Option<Arc<str>>,
    /// Serialises writers (see the crate invariants).
    write: Arc<tokio::sync::Mutex<()>>,
}

/// One environment, e.g. `production` or `staging`.
#[derive(Clone, Debug, PartialEq)]
pub struct Environment {
    pub key: String,
    pub description: String,
    /// Grows by one with every committed change of the environment's flags, segments or metrics.
    pub revision: i64,
    pub created_at_ms: i64,
}

impl Store {
    /// Opens (creating if needed) the SQLite store in `data_dir`, in WAL mode
    /// with full fsync on commit, and runs the migrations.
    pub async fn open_sqlite(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Open(format!(
                "cannot create the data directory {}: {e}",
                data_dir.display()
            ))
        })?;
        let file = data_dir.join(SQLITE_FILE);
        Store::connect(&format!("sqlite:{}?mode=rwc", file.display())).await
    }

    /// Connects to `sqlite:PATH` or `postgres://…` and runs the migrations.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::Open(format!(
                "unsupported database URL `{url}`; use sqlite:PATH or postgres://…"
            )));
        };
        let options: AnyConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Open(format!("invalid database URL: {e}")))?;
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 10 })
            .acquire_timeout(BUSY_TIMEOUT)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the writer; FULL makes every
                        // commit durable before it is acknowledged (kill -9 safe).
                        let pragmas = format!(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = {};",
                            BUSY_TIMEOUT.as_millis()
                        );
                        conn.execute(pragmas.as_str()).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Open(format!("cannot open the database: {e}")))?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&pool)
            .await
            .map_err(|e| StoreError::Open(format!("database migration failed: {e}")))?;
        Ok(Store {
            pool,
            backend,
            url: Some(Arc::from(url)),
            write: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// Begins a write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so that the busy timeout applies: a deferred
    /// transaction that reads first fails at once, without waiting, when it
    /// later needs the lock while another connection holds it.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every connection; later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn list_environments(&self) -> Result<Vec<Environment>, StoreError> {
        let rows = sqlx::query(
            "SELECT key, description, revision, created_at_ms FROM environments ORDER BY key",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(environment_from_row).collect()
    }

    pub async fn get_environment(&self, key: &str) -> Result<Option<Environment>, StoreError> {
        let row = sqlx::query(
            "SELECT key, description, revision, created_at_ms FROM environments WHERE key = $1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(environment_from_row).transpose()
    }

    /// Creates an environment; `Conflict` if it exists.
    pub async fn create_environment(
        &self,
        key: &str,
        description: &str,
        actor: &str,
    ) -> Result<Environment, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        let inserted = sqlx::query(
            "INSERT INTO environments (key, description, revision, created_at_ms) VALUES ($1, $2, 0, $3) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(description)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "environment `{key}` already exists"
            )));
        }
        let env = Environment {
            key: key.to_owned(),
            description: description.to_owned(),
            revision: 0,
            created_at_ms: now,
        };
        let after = serde_json::json!({ "key": key, "description": description });
        audit::record(
            &mut tx,
            audit::NewEntry {
                actor,
                action: "environment.created",
                environment: Some(key),
                target_kind: "environment",
                target_key: key,
                before: None,
                after: Some(&after),
                reason: None,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(env)
    }

    /// Creates the environment if it does not exist (on first start).
    pub async fn ensure_environment(&self, key: &str) -> Result<(), StoreError> {
        match self.create_environment(key, "", "rollgate").await {
            Ok(_) | Err(StoreError::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn environment_from_row(row: &sqlx::any::AnyRow) -> Result<Environment, StoreError> {
    Ok(Environment {
        key: row.try_get("key")?,
        description: row.try_get("description")?,
        revision: row.try_get("revision")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
