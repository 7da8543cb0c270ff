//! Logical backups: every table of the store as JSON lines, in one format for
//! both backends, so that a backup of SQLite restores into PostgreSQL and the
//! other way round.
//!
//! A backup is UTF-8 text, one JSON object a line: a header, then each table
//! (a line naming it, its columns with their types and its number of rows,
//! then one object per row), then an end line:
//!
//! ```text
//! {"format":"rollgate-backup","format_version":1,"backend":"sqlite","migration_version":9,"created_at":"2025-01-02T03:04:05.678Z","created_at_ms":1735787045678}
//! {"table":"environments","columns":{"key":"text","description":"text","revision":"integer","created_at_ms":"integer"},"rows":1}
//! {"key":"production","description":"","revision":3,"created_at_ms":1735787000000}
//! …every other table the same way, parents before children…
//! {"end":"rollgate-backup","tables":23,"rows":1234}
//! ```
//!
//! A value is typed by its column: integers are JSON numbers, doubles are
//! strings of their shortest round-trip digits (`"0.1"`, `"-0.0"`, `"NaN"`,
//! `"inf"`; Rust's parser reads them back bit for bit), text is a string, a BLOB is a base64 string, a boolean is `true`/`false`, NULL is
//! `null`. Rows are in primary-key order (text compared bytewise on both
//! backends), so equal stores give equal files. `_sqlx_migrations` is not
//! copied: the store restored into has run its own migrations.
//!
//! Invariants:
//! - A backup is read in one transaction (on PostgreSQL `REPEATABLE READ READ
//!   ONLY`, on SQLite a read transaction over WAL), so it is one consistent
//!   state of the store even while a server writes to it.
//! - A restore writes everything or nothing (one transaction), only into a
//!   store without rows, and refuses a file that ends before its end line.
//! - [`TABLES`] names every table the migrations create, on both backends (a
//!   test checks it), so a new table cannot silently be left out of backups.

use std::collections::BTreeSet;
use std::fmt;
use std::io::{BufRead, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::TryStreamExt as _;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Connection as _, Row};

use crate::{Backend, POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS, Store, StoreError, now_ms};

/// The `format` of a backup's header and end line.
pub const BACKUP_FORMAT: &str = "rollgate-backup";

/// The layout of the file described above; a reader refuses newer ones.
pub const BACKUP_FORMAT_VERSION: u32 = 1;

/// Every table of the store, each after the tables its foreign keys name.
const TABLES: &[&str] = &[
    "environments",
    "flags",
    "flag_versions",
    "segments",
    "segment_versions",
    "metrics",
    "metric_versions",
    "experiments",
    "experiment_versions",
    "rollouts",
    "rollout_versions",
    "channels",
    "channel_versions",
    "rollout_states",
    "incidents",
    "incident_timeline",
    "deliveries",
    "channel_schedules",
    "tokens",
    "server_keys",
    "audit",
    "event_batches",
    "aggregation_progress",
    "exposures",
    "unit_totals",
    "unit_baselines",
    "metric_buckets",
    "unit_history",
    "unit_covariates",
];

/// Tables the migrations write rows into: a restore replaces those rows.
const SEEDED_TABLES: &[&str] = &["aggregation_progress"];

/// Where sqlx records the migrations it ran.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// Bound parameters per INSERT at most (SQLite's historical limit).
const PARAMETERS_PER_STATEMENT: usize = 999;

/// What a backup holds: what [`Store::backup`] wrote, or what
/// [`Store::restore`] loaded.
#[derive(Clone, Debug, PartialEq)]
pub struct BackupSummary {
    /// The backend of the store the backup was taken from.
    pub backend: Backend,
    /// The newest migration applied to that store.
    pub migration_version: i64,
    /// When the backup was taken.
    pub created_at_ms: i64,
    /// Every table with its number of rows, in the order of the file.
    pub tables: Vec<(String, u64)>,
}

impl BackupSummary {
    /// Rows of all tables together.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|(_, rows)| rows).sum()
    }

    /// When the backup was taken, in RFC 3339 (UTC, milliseconds).
    pub fn created_at(&self) -> String {
        rfc3339(self.created_at_ms)
    }
}

/// A migration recorded as applied in a database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedMigration {
    pub version: i64,
    pub description: String,
}

/// The first line of a backup.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    format_version: u32,
    /// `sqlite` or `postgres`.
    backend: String,
    migration_version: i64,
    /// RFC 3339, for people reading the file; `created_at_ms` is the value.
    created_at: String,
    created_at_ms: i64,
}

/// The line that starts a table.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableStart {
    table: String,
    columns: IndexMap<String, ColumnType>,
    rows: u64,
}

/// The last line: without it, a file is incomplete.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct End {
    end: String,
    tables: u64,
    rows: u64,
}

/// A column's type, as both backends can hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ColumnType {
    Integer,
    Double,
    Text,
    Blob,
    Bool,
}

impl ColumnType {
    /// The type of a column declared as `declared` on SQLite (after its rules
    /// of type affinity).
    fn from_sqlite(declared: &str) -> Option<ColumnType> {
        let declared = declared.to_ascii_uppercase();
        let has = |part: &str| declared.contains(part);
        if has("BOOL") {
            Some(ColumnType::Bool)
        } else if has("INT") {
            Some(ColumnType::Integer)
        } else if has("CHAR") || has("CLOB") || has("TEXT") {
            Some(ColumnType::Text)
        } else if has("BLOB") {
            Some(ColumnType::Blob)
        } else if has("REAL") || has("FLOA") || has("DOUB") {
            Some(ColumnType::Double)
        } else {
            None
        }
    }

    /// The type of a column of `data_type` (information_schema) on PostgreSQL.
    fn from_postgres(data_type: &str) -> Option<ColumnType> {
        match data_type {
            "bigint" | "integer" | "smallint" => Some(ColumnType::Integer),
            "double precision" | "real" => Some(ColumnType::Double),
            "text" | "character varying" | "character" => Some(ColumnType::Text),
            "bytea" => Some(ColumnType::Blob),
            "boolean" => Some(ColumnType::Bool),
            _ => None,
        }
    }

    /// Whether values written from a column of this type go into a column of
    /// type `target` unchanged. SQLite keeps booleans as integers.
    fn fits(self, target: ColumnType) -> bool {
        self == target
            || matches!(
                (self, target),
                (ColumnType::Integer, ColumnType::Bool) | (ColumnType::Bool, ColumnType::Integer)
            )
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ColumnType::Integer => "integer",
            ColumnType::Double => "double",
            ColumnType::Text => "text",
            ColumnType::Blob => "blob",
            ColumnType::Bool => "bool",
        })
    }
}

#[derive(Debug)]
struct Column {
    name: String,
    ty: ColumnType,
    /// Position in the primary key, from 1.
    key_position: Option<i64>,
    /// PostgreSQL `GENERATED ALWAYS AS IDENTITY`: an INSERT that gives its
    /// value must say `OVERRIDING SYSTEM VALUE`.
    identity: bool,
    /// Filled from a sequence on PostgreSQL (identity or serial), which a
    /// restore moves past the restored values.
    sequence: bool,
}

#[derive(Debug)]
struct Table {
    name: &'static str,
    columns: Vec<Column>,
}

/// One value of a row being restored, typed for the target column.
#[derive(Clone, Debug, PartialEq)]
enum Bound {
    Integer(Option<i64>),
    Double(Option<f64>),
    Text(Option<String>),
    Blob(Option<Vec<u8>>),
    Bool(Option<bool>),
}

impl Bound {
    fn bind<'q>(self, query: Query<'q, Any, AnyArguments<'q>>) -> Query<'q, Any, AnyArguments<'q>> {
        match self {
            Bound::Integer(v) => query.bind(v),
            Bound::Double(v) => query.bind(v),
            Bound::Text(v) => query.bind(v),
            Bound::Blob(v) => query.bind(v),
            Bound::Bool(v) => query.bind(v),
        }
    }
}

impl Store {
    /// Writes every table of the store to `writer` as a backup (see the
    /// module documentation), from one consistent snapshot, and says what it
    /// wrote. Writes to `writer` block: give it a buffered file or pipe.
    pub async fn backup(&self, mut writer: impl Write) -> Result<BackupSummary, StoreError> {
        let mut tx = match self.backend {
            // A deferred transaction reads one snapshot from its first read on.
            Backend::Sqlite => self.pool.begin().await?,
            Backend::Postgres => {
                self.pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?
            }
        };
        let migration_version = latest_applied(&mut tx).await?.ok_or_else(|| {
            StoreError::Corrupt(format!("`{MIGRATIONS_TABLE}` records no migration"))
        })?;
        let created_at_ms = now_ms();
        let header = Header {
            format: BACKUP_FORMAT.to_owned(),
            format_version: BACKUP_FORMAT_VERSION,
            backend: backend_name(self.backend).to_owned(),
            migration_version,
            created_at: rfc3339(created_at_ms),
            created_at_ms,
        };
        write_line(&mut writer, &header)?;
        let mut tables = Vec::with_capacity(TABLES.len());
        for &name in TABLES {
            let table = table_schema(&mut tx, self.backend, name).await?;
            let rows: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {}", quoted(name)))
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
            let start = TableStart {
                table: name.to_owned(),
                columns: table
                    .columns
                    .iter()
                    .map(|c| (c.name.clone(), c.ty))
                    .collect(),
                rows: u64::try_from(rows).unwrap_or_default(),
            };
            write_line(&mut writer, &start)?;
            let select = select_in_key_order(&table, self.backend);
            let mut stream = sqlx::query(&select).fetch(&mut *tx);
            let mut written = 0;
            while let Some(row) = stream.try_next().await? {
                write_line(&mut writer, &row_to_json(&row, &table)?)?;
                written += 1;
            }
            if written != start.rows {
                // Cannot happen inside one snapshot; a file saying otherwise
                // would not restore.
                return Err(StoreError::Corrupt(format!(
                    "table `{name}` counted {} rows but {written} were read",
                    start.rows
                )));
            }
            tables.push((name.to_owned(), written));
        }
        let end = End {
            end: BACKUP_FORMAT.to_owned(),
            tables: tables.len() as u64,
            rows: tables.iter().map(|(_, rows)| rows).sum(),
        };
        write_line(&mut writer, &end)?;
        writer.flush().map_err(cannot_write)?;
        tx.rollback().await?;
        Ok(BackupSummary {
            backend: self.backend,
            migration_version,
            created_at_ms,
            tables,
        })
    }

    /// Loads a backup (see the module documentation) into this store, which
    /// must be migrated and hold no rows, in one transaction: on any error
    /// nothing is written. Refuses a file that is not a complete backup, or
    /// that comes from a store with migrations newer than this binary's. On
    /// PostgreSQL, every id sequence continues after the restored ids.
    pub async fn restore(&self, reader: impl BufRead) -> Result<BackupSummary, StoreError> {
        let mut lines = reader.lines().enumerate();
        let header = read_header(&mut lines)?;
        let backend = match header.backend.as_str() {
            "sqlite" => Backend::Sqlite,
            "postgres" => Backend::Postgres,
            other => {
                return Err(StoreError::Backup(format!(
                    "line 1: the backup names an unknown backend `{other}` (expected sqlite or postgres)"
                )));
            }
        };
        let latest = self.latest_migration();
        if header.migration_version > latest {
            return Err(StoreError::Backup(format!(
                "the backup comes from a newer Rollgate: its store is at migration {}, this rollgate \
                 knows migrations up to {latest}; restore it with the version that wrote it or a newer one",
                header.migration_version
            )));
        }

        let _write = self.write.lock().await;
        let mut tx = self.begin_write().await?;
        ensure_empty(&mut tx).await?;
        for table in SEEDED_TABLES {
            sqlx::query(&format!("DELETE FROM {}", quoted(table)))
                .execute(&mut *tx)
                .await?;
        }

        let mut tables: Vec<(String, u64)> = Vec::new();
        let mut previous: Option<usize> = None;
        let end = loop {
            let Some((number, line)) = next_line(&mut lines)? else {
                return Err(StoreError::Backup(format!(
                    "the backup is incomplete: it ends {} without its end line; the file was cut \
                     short (take the backup again)",
                    match tables.last() {
                        Some((table, _)) => format!("after the rows of `{table}`"),
                        None => "after its header".to_owned(),
                    }
                )));
            };
            let value: Value = serde_json::from_str(&line).map_err(|e| {
                StoreError::Backup(format!(
                    "line {number} is not JSON ({e}); the file is damaged"
                ))
            })?;
            if value.get("end").is_some() {
                let end: End = serde_json::from_value(value).map_err(|e| {
                    StoreError::Backup(format!("line {number}: the end line is damaged: {e}"))
                })?;
                break (number, end);
            }
            let start: TableStart = serde_json::from_value(value).map_err(|e| {
                StoreError::Backup(format!(
                    "line {number}: expected the start of a table ({{\"table\": …, \"columns\": …, \
                     \"rows\": …}}) or the end line, found something else ({e}); the file is damaged"
                ))
            })?;
            let index = TABLES
                .iter()
                .position(|t| *t == start.table)
                .ok_or_else(|| {
                    StoreError::Backup(format!(
                        "line {number}: the backup has a table `{}` this Rollgate does not know",
                        start.table
                    ))
                })?;
            if previous.is_some_and(|p| p >= index) {
                return Err(StoreError::Backup(format!(
                    "line {number}: table `{}` is out of order (or repeated); a backup lists tables \
                     in the order {}",
                    start.table,
                    TABLES.join(", ")
                )));
            }
            previous = Some(index);
            let table = table_schema(&mut tx, self.backend, TABLES[index]).await?;
            let rows = restore_table(&mut tx, &mut lines, number, &start, &table).await?;
            tables.push((start.table, rows));
        };

        let (number, end) = end;
        let rows: u64 = tables.iter().map(|(_, rows)| rows).sum();
        if end.end != BACKUP_FORMAT || end.tables != tables.len() as u64 || end.rows != rows {
            return Err(StoreError::Backup(format!(
                "line {number}: the end line counts {} rows in {} tables, but the file holds {rows} \
                 rows in {} tables; the file is damaged",
                end.rows,
                end.tables,
                tables.len()
            )));
        }
        while let Some((number, line)) = next_line(&mut lines)? {
            if !line.trim().is_empty() {
                return Err(StoreError::Backup(format!(
                    "line {number}: text after the end line; the file is damaged"
                )));
            }
        }
        if self.backend == Backend::Postgres {
            continue_sequences(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(BackupSummary {
            backend,
            migration_version: header.migration_version,
            created_at_ms: header.created_at_ms,
            tables,
        })
    }

    /// The migrations recorded as applied to this store, oldest first.
    pub async fn applied_migrations(&self) -> Result<Vec<AppliedMigration>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        applied(&mut conn).await
    }

    /// The newest migration this binary has for the store's backend.
    pub fn latest_migration(&self) -> i64 {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.iter().map(|m| m.version).max().unwrap_or(0)
    }

    /// The migrations recorded as applied in the database at `url`
    /// (`sqlite:PATH` or `postgres://…`), read without migrating it: none for
    /// a database no Rollgate has opened yet.
    pub async fn recorded_migrations(url: &str) -> Result<Vec<AppliedMigration>, StoreError> {
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
        let mut conn = AnyConnection::connect(url)
            .await
            .map_err(|e| StoreError::Open(format!("cannot open the database: {e}")))?;
        let recorded = if table_names(&mut conn, backend)
            .await?
            .contains(MIGRATIONS_TABLE)
        {
            applied(&mut conn).await
        } else {
            Ok(Vec::new())
        };
        let _ = conn.close().await;
        recorded
    }
}

/// Restores the rows of the table `start` (on line `number`) opens; returns
/// how many.
async fn restore_table<I>(
    conn: &mut AnyConnection,
    lines: &mut I,
    number: usize,
    start: &TableStart,
    table: &Table,
) -> Result<u64, StoreError>
where
    I: Iterator<Item = (usize, std::io::Result<String>)>,
{
    let name = table.name;
    let mut targets: Vec<(&str, ColumnType)> = Vec::with_capacity(start.columns.len());
    for (column, ty) in &start.columns {
        let Some(target) = table.columns.iter().find(|c| c.name == *column) else {
            return Err(StoreError::Backup(format!(
                "line {number}: the backup has a column `{name}.{column}` this database does not \
                 have; the backup does not fit this version of Rollgate"
            )));
        };
        if !ty.fits(target.ty) {
            return Err(StoreError::Backup(format!(
                "line {number}: `{name}.{column}` holds {ty} values in the backup but is a {} \
                 column here",
                target.ty
            )));
        }
        targets.push((&target.name, target.ty));
    }
    if targets.is_empty() {
        return Err(StoreError::Backup(format!(
            "line {number}: table `{name}` lists no columns; the file is damaged"
        )));
    }
    let insert = Insert {
        table: name,
        columns: targets.iter().map(|(c, _)| *c).collect(),
        identity: table.columns.iter().any(|c| c.identity),
    };
    let rows_per_statement = (PARAMETERS_PER_STATEMENT / targets.len()).max(1);
    let mut batch: Vec<Vec<Bound>> = Vec::with_capacity(rows_per_statement);
    let mut first_line = number + 1;
    for read in 0..start.rows {
        let Some((number, line)) = next_line(lines)? else {
            return Err(StoreError::Backup(format!(
                "the backup is incomplete: it ends in the rows of `{name}` ({read} of {} read); \
                 the file was cut short (take the backup again)",
                start.rows
            )));
        };
        batch.push(parse_row(number, &line, name, &targets)?);
        if batch.len() == rows_per_statement {
            insert
                .run(conn, std::mem::take(&mut batch), first_line)
                .await?;
            first_line = number + 1;
        }
    }
    if !batch.is_empty() {
        insert.run(conn, batch, first_line).await?;
    }
    Ok(start.rows)
}

/// A multi-row INSERT of restored rows.
struct Insert<'a> {
    table: &'a str,
    columns: Vec<&'a str>,
    identity: bool,
}

impl Insert<'_> {
    async fn run(
        &self,
        conn: &mut AnyConnection,
        rows: Vec<Vec<Bound>>,
        first_line: usize,
    ) -> Result<(), StoreError> {
        let count = rows.len();
        let mut sql = format!(
            "INSERT INTO {} ({})",
            quoted(self.table),
            self.columns
                .iter()
                .map(|c| quoted(c))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if self.identity {
            sql.push_str(" OVERRIDING SYSTEM VALUE");
        }
        sql.push_str(" VALUES ");
        let mut parameter = 0;
        for r in 0..count {
            sql.push_str(if r == 0 { "(" } else { ", (" });
            for c in 0..self.columns.len() {
                parameter += 1;
                if c > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("${parameter}"));
            }
            sql.push(')');
        }
        // Not kept as a prepared statement: sqlx's `Any` driver binds a NULL
        // double as PostgreSQL `float4` (its `Real` and `Double` nulls are
        // swapped), and a statement prepared with that type refuses the
        // `float8` of a later row with a value. Prepared anew each time, a
        // statement takes the types of the values it is given.
        let mut query = sqlx::query(&sql).persistent(false);
        for value in rows.into_iter().flatten() {
            query = value.bind(query);
        }
        query.execute(&mut *conn).await.map_err(|e| {
            StoreError::Backup(format!(
                "cannot restore the rows of `{}` on lines {first_line}–{}: {e}",
                self.table,
                first_line + count - 1
            ))
        })?;
        Ok(())
    }
}

/// Reads and checks the header.
fn read_header<I>(lines: &mut I) -> Result<Header, StoreError>
where
    I: Iterator<Item = (usize, std::io::Result<String>)>,
{
    let not_a_backup = || {
        StoreError::Backup(format!(
            "line 1 is not the header of a Rollgate backup (a JSON object with \"format\": \
             \"{BACKUP_FORMAT}\"); is this the right file?"
        ))
    };
    let Some((_, line)) = next_line(lines)? else {
        return Err(StoreError::Backup(
            "the file is empty; it is not a Rollgate backup".to_owned(),
        ));
    };
    let value: Value = serde_json::from_str(&line).map_err(|_| not_a_backup())?;
    match value.get("format").and_then(Value::as_str) {
        Some(BACKUP_FORMAT) => {}
        Some(other) => {
            return Err(StoreError::Backup(format!(
                "the file is a `{other}` file, not a Rollgate backup (`{BACKUP_FORMAT}`)"
            )));
        }
        None => return Err(not_a_backup()),
    }
    let header: Header = serde_json::from_value(value).map_err(|e| {
        StoreError::Backup(format!(
            "line 1: the backup header is incomplete ({e}); the file is damaged"
        ))
    })?;
    if header.format_version != BACKUP_FORMAT_VERSION {
        return Err(StoreError::Backup(format!(
            "the backup has format version {}, this Rollgate reads version {BACKUP_FORMAT_VERSION}; \
             restore it with the version of Rollgate that wrote it or a newer one",
            header.format_version
        )));
    }
    Ok(header)
}

/// The next line with its number (from 1), `None` at the end of the file.
fn next_line<I>(lines: &mut I) -> Result<Option<(usize, String)>, StoreError>
where
    I: Iterator<Item = (usize, std::io::Result<String>)>,
{
    match lines.next() {
        None => Ok(None),
        Some((index, Ok(line))) => Ok(Some((index + 1, line))),
        Some((index, Err(e))) => Err(StoreError::Backup(format!(
            "cannot read line {} of the backup: {e}",
            index + 1
        ))),
    }
}

/// One row of `table` from its line: exactly the columns of its table line,
/// each converted to the type of the column here.
fn parse_row(
    number: usize,
    line: &str,
    table: &str,
    columns: &[(&str, ColumnType)],
) -> Result<Vec<Bound>, StoreError> {
    let mut object: Map<String, Value> = serde_json::from_str(line).map_err(|e| {
        StoreError::Backup(format!(
            "line {number}: a row of `{table}` is not a JSON object ({e}); the file is damaged"
        ))
    })?;
    let mut row = Vec::with_capacity(columns.len());
    for &(column, ty) in columns {
        let value = object.remove(column).ok_or_else(|| {
            StoreError::Backup(format!(
                "line {number}: a row of `{table}` lacks the column `{column}`; the file is damaged"
            ))
        })?;
        row.push(bound(value, ty).map_err(|problem| {
            StoreError::Backup(format!(
                "line {number}: `{table}.{column}`: {problem}; the file is damaged"
            ))
        })?);
    }
    if let Some(extra) = object.keys().next() {
        return Err(StoreError::Backup(format!(
            "line {number}: a row of `{table}` has a column `{extra}` its table line does not \
             list; the file is damaged"
        )));
    }
    Ok(row)
}

/// A value of the file as a value of a column of type `ty`.
fn bound(value: Value, ty: ColumnType) -> Result<Bound, String> {
    let wrong = |value: &Value| {
        let found = match value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        };
        format!("expected a value of type {ty}, found {found}")
    };
    Ok(match (ty, value) {
        (ColumnType::Integer, Value::Null) => Bound::Integer(None),
        (ColumnType::Double, Value::Null) => Bound::Double(None),
        (ColumnType::Text, Value::Null) => Bound::Text(None),
        (ColumnType::Blob, Value::Null) => Bound::Blob(None),
        (ColumnType::Bool, Value::Null) => Bound::Bool(None),
        (ColumnType::Integer, Value::Number(n)) => Bound::Integer(Some(
            n.as_i64()
                .ok_or_else(|| format!("expected an integer, found {n}"))?,
        )),
        (ColumnType::Integer, Value::Bool(b)) => Bound::Integer(Some(i64::from(b))),
        (ColumnType::Double, Value::Number(n)) => Bound::Double(Some(
            n.as_f64()
                .ok_or_else(|| format!("expected a double, found {n}"))?,
        )),
        (ColumnType::Double, Value::String(s)) => Bound::Double(Some(
            s.parse::<f64>()
                .map_err(|_| format!("expected a double, found the string {s:?}"))?,
        )),
        (ColumnType::Text, Value::String(s)) => Bound::Text(Some(s)),
        (ColumnType::Blob, Value::String(s)) => Bound::Blob(Some(
            BASE64
                .decode(s.as_bytes())
                .map_err(|e| format!("expected base64, {e}"))?,
        )),
        (ColumnType::Bool, Value::Bool(b)) => Bound::Bool(Some(b)),
        (ColumnType::Bool, Value::Number(n)) => Bound::Bool(Some(match n.as_i64() {
            Some(0) => false,
            Some(1) => true,
            _ => return Err(format!("expected a boolean, found {n}")),
        })),
        (_, value) => return Err(wrong(&value)),
    })
}

/// One row as a JSON object, each value typed by its column.
fn row_to_json(row: &AnyRow, table: &Table) -> Result<Value, StoreError> {
    let mut object = Map::with_capacity(table.columns.len());
    for (index, column) in table.columns.iter().enumerate() {
        let value = read_value(row, index, column.ty).map_err(|e| {
            StoreError::Corrupt(format!(
                "`{}.{}` cannot be read as {}: {e}",
                table.name, column.name, column.ty
            ))
        })?;
        object.insert(column.name.clone(), value);
    }
    Ok(Value::Object(object))
}

fn read_value(row: &AnyRow, index: usize, ty: ColumnType) -> Result<Value, sqlx::Error> {
    Ok(match ty {
        ColumnType::Integer => row
            .try_get::<Option<i64>, _>(index)?
            .map_or(Value::Null, Value::from),
        ColumnType::Double => row
            .try_get::<Option<f64>, _>(index)?
            .map_or(Value::Null, double_to_json),
        ColumnType::Text => row
            .try_get::<Option<String>, _>(index)?
            .map_or(Value::Null, Value::String),
        ColumnType::Blob => row
            .try_get::<Option<Vec<u8>>, _>(index)?
            .map_or(Value::Null, |bytes| Value::String(BASE64.encode(bytes))),
        ColumnType::Bool => match row.try_get::<Option<bool>, _>(index) {
            Ok(value) => value.map_or(Value::Null, Value::Bool),
            // SQLite keeps a boolean as the integer 0 or 1.
            Err(_) => row
                .try_get::<Option<i64>, _>(index)?
                .map_or(Value::Null, |i| Value::Bool(i != 0)),
        },
    })
}

/// A double as a string of its shortest round-trip digits (`"0.1"`,
/// `"-0.0"`, `"1e-300"`, `"NaN"`, `"inf"`): Rust's own parser reads it back
/// to the same bits, which serde_json's fast float parser does not promise,
/// and JSON has no NaN or infinities anyway.
fn double_to_json(x: f64) -> Value {
    Value::String(format!("{x:?}"))
}

fn write_line(writer: &mut impl Write, value: &impl Serialize) -> Result<(), StoreError> {
    serde_json::to_writer(&mut *writer, value)
        .map_err(|e| StoreError::Backup(format!("cannot write the backup: {e}")))?;
    writer.write_all(b"\n").map_err(cannot_write)
}

fn cannot_write(e: std::io::Error) -> StoreError {
    StoreError::Backup(format!("cannot write the backup: {e}"))
}

pub(crate) fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| format!("{ms} ms after the Unix epoch"))
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

/// An identifier quoted for both backends.
fn quoted(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// `SELECT` of every column of `table` in primary-key order, text compared
/// bytewise on both backends so that both write rows in the same order.
fn select_in_key_order(table: &Table, backend: Backend) -> String {
    let columns: Vec<String> = table.columns.iter().map(|c| quoted(&c.name)).collect();
    let mut key: Vec<&Column> = table
        .columns
        .iter()
        .filter(|c| c.key_position.is_some())
        .collect();
    key.sort_by_key(|c| c.key_position);
    if key.is_empty() {
        // Without a primary key, every column orders the rows.
        key = table.columns.iter().collect();
    }
    let order: Vec<String> = key
        .iter()
        .map(|c| match (backend, c.ty) {
            (Backend::Postgres, ColumnType::Text) => format!("{} COLLATE \"C\"", quoted(&c.name)),
            _ => quoted(&c.name),
        })
        .collect();
    format!(
        "SELECT {} FROM {} ORDER BY {}",
        columns.join(", "),
        quoted(table.name),
        order.join(", ")
    )
}

/// The newest migration recorded as applied; `None` when there is none.
async fn latest_applied(conn: &mut AnyConnection) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT MAX(version) AS version FROM {MIGRATIONS_TABLE} WHERE success"
    ))
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.try_get("version")?)
}

async fn applied(conn: &mut AnyConnection) -> Result<Vec<AppliedMigration>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT version, description FROM {MIGRATIONS_TABLE} WHERE success ORDER BY version"
    ))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(AppliedMigration {
                version: row.try_get("version")?,
                description: row.try_get("description")?,
            })
        })
        .collect()
}

/// Refuses, naming the first table with rows, unless the store holds only
/// what its migrations wrote.
async fn ensure_empty(conn: &mut AnyConnection) -> Result<(), StoreError> {
    for table in TABLES.iter().filter(|t| !SEEDED_TABLES.contains(t)) {
        let any = sqlx::query(&format!(
            "SELECT 1 AS present FROM {} LIMIT 1",
            quoted(table)
        ))
        .fetch_optional(&mut *conn)
        .await?;
        if any.is_some() {
            return Err(StoreError::Conflict(format!(
                "the store holds data (table `{table}` has rows): a backup restores only into a \
                 new, empty store, before a server first runs on it"
            )));
        }
    }
    Ok(())
}

/// Moves every PostgreSQL sequence behind an id column past the largest id,
/// so that new rows do not collide with restored ones.
async fn continue_sequences(conn: &mut AnyConnection) -> Result<(), StoreError> {
    for &name in TABLES {
        let table = table_schema(conn, Backend::Postgres, name).await?;
        for column in table.columns.iter().filter(|c| c.sequence) {
            sqlx::query(&format!(
                "SELECT setval(pg_get_serial_sequence($1, $2), COALESCE(MAX({}), 0) + 1, false) FROM {}",
                quoted(&column.name),
                quoted(name)
            ))
            .bind(name)
            .bind(&column.name)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// The names of the tables of the database (of the current schema on
/// PostgreSQL), SQLite's own excepted.
async fn table_names(
    conn: &mut AnyConnection,
    backend: Backend,
) -> Result<BTreeSet<String>, StoreError> {
    let sql = match backend {
        Backend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        }
        Backend::Postgres => {
            "SELECT CAST(table_name AS TEXT) AS name FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        }
    };
    let rows = sqlx::query(sql).fetch_all(&mut *conn).await?;
    rows.iter().map(|row| Ok(row.try_get("name")?)).collect()
}

/// The columns of `name` as the database has them.
async fn table_schema(
    conn: &mut AnyConnection,
    backend: Backend,
    name: &'static str,
) -> Result<Table, StoreError> {
    let unsupported = |column: &str, declared: &str| {
        StoreError::Corrupt(format!(
            "column `{name}.{column}` has the type `{declared}`, which backups do not support"
        ))
    };
    let mut columns = Vec::new();
    match backend {
        Backend::Sqlite => {
            let rows = sqlx::query("SELECT name, type, pk FROM pragma_table_info($1) ORDER BY cid")
                .bind(name)
                .fetch_all(&mut *conn)
                .await?;
            for row in &rows {
                let column: String = row.try_get("name")?;
                let declared: String = row.try_get("type")?;
                let pk: i64 = row.try_get("pk")?;
                columns.push(Column {
                    ty: ColumnType::from_sqlite(&declared)
                        .ok_or_else(|| unsupported(&column, &declared))?,
                    name: column,
                    key_position: (pk > 0).then_some(pk),
                    identity: false,
                    // INTEGER PRIMARY KEY AUTOINCREMENT keeps its counter in
                    // sqlite_sequence, which an INSERT moves past its value.
                    sequence: false,
                });
            }
        }
        Backend::Postgres => {
            let rows = sqlx::query(
                "SELECT CAST(column_name AS TEXT) AS name, CAST(data_type AS TEXT) AS type, \
                 CAST(is_identity AS TEXT) AS identity, \
                 CAST(COALESCE(column_default, '') AS TEXT) AS default_value \
                 FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND CAST(table_name AS TEXT) = $1 \
                 ORDER BY ordinal_position",
            )
            .bind(name)
            .fetch_all(&mut *conn)
            .await?;
            let key: Vec<String> = sqlx::query(
                "SELECT CAST(k.column_name AS TEXT) AS name \
                 FROM information_schema.table_constraints c \
                 JOIN information_schema.key_column_usage k \
                   ON k.constraint_schema = c.constraint_schema \
                  AND k.constraint_name = c.constraint_name \
                 WHERE c.table_schema = current_schema() AND CAST(c.table_name AS TEXT) = $1 \
                   AND c.constraint_type = 'PRIMARY KEY' \
                 ORDER BY k.ordinal_position",
            )
            .bind(name)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|row| row.try_get("name"))
            .collect::<Result<_, _>>()?;
            for row in &rows {
                let column: String = row.try_get("name")?;
                let declared: String = row.try_get("type")?;
                let identity = row.try_get::<String, _>("identity")? == "YES";
                let default: String = row.try_get("default_value")?;
                columns.push(Column {
                    ty: ColumnType::from_postgres(&declared)
                        .ok_or_else(|| unsupported(&column, &declared))?,
                    key_position: key.iter().position(|k| *k == column).map(|p| p as i64 + 1),
                    identity,
                    sequence: identity || default.starts_with("nextval("),
                    name: column,
                });
            }
        }
    }
    if columns.is_empty() {
        return Err(StoreError::Corrupt(format!(
            "the database has no table `{name}`; was it migrated by this version of Rollgate?"
        )));
    }
    Ok(Table { name, columns })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_number_their_migrations_alike() {
        // A backup says which migration its store was at; that number must
        // mean the same schema on both backends.
        let versions = |m: &sqlx::migrate::Migrator| -> Vec<(i64, String)> {
            m.iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect()
        };
        assert_eq!(versions(&SQLITE_MIGRATIONS), versions(&POSTGRES_MIGRATIONS));
    }

    #[test]
    fn values_go_in_with_the_type_of_the_target_column() {
        use serde_json::json;
        let cases = [
            (json!(42), ColumnType::Integer, Bound::Integer(Some(42))),
            (json!(true), ColumnType::Integer, Bound::Integer(Some(1))),
            (json!(1), ColumnType::Bool, Bound::Bool(Some(true))),
            (json!(false), ColumnType::Bool, Bound::Bool(Some(false))),
            (json!(0.1), ColumnType::Double, Bound::Double(Some(0.1))),
            (json!(3), ColumnType::Double, Bound::Double(Some(3.0))),
            (
                json!("inf"),
                ColumnType::Double,
                Bound::Double(Some(f64::INFINITY)),
            ),
            (
                json!("AAEC/w=="),
                ColumnType::Blob,
                Bound::Blob(Some(vec![0, 1, 2, 255])),
            ),
            (json!("x"), ColumnType::Text, Bound::Text(Some("x".into()))),
            (json!(null), ColumnType::Blob, Bound::Blob(None)),
        ];
        for (value, ty, expected) in cases {
            assert_eq!(bound(value.clone(), ty), Ok(expected), "{value} as {ty}");
        }
        let Ok(Bound::Double(Some(nan))) = bound(json!("NaN"), ColumnType::Double) else {
            panic!("NaN is a double");
        };
        assert!(nan.is_nan());
        let errors = [
            (
                json!("7"),
                ColumnType::Integer,
                "expected a value of type integer, found a string",
            ),
            (
                json!(1.5),
                ColumnType::Integer,
                "expected an integer, found 1.5",
            ),
            (json!(2), ColumnType::Bool, "expected a boolean, found 2"),
            (json!("not base64!"), ColumnType::Blob, "expected base64"),
            (json!({"a": 1}), ColumnType::Text, "found an object"),
        ];
        for (value, ty, message) in errors {
            let error = bound(value.clone(), ty).expect_err("refused");
            assert!(error.contains(message), "{value} as {ty}: {error}");
        }
    }

    #[test]
    fn doubles_survive_the_file_bit_for_bit() {
        for x in [
            0.1 + 0.2,
            1e-300,
            -0.0,
            f64::MAX,
            5e-324,
            1.0 / 3.0,
            123456.789,
        ] {
            let line = serde_json::to_string(&double_to_json(x)).expect("json");
            let back: Value = serde_json::from_str(&line).expect("parse");
            assert_eq!(
                bound(back, ColumnType::Double),
                Ok(Bound::Double(Some(x))),
                "{x:e} as {line}"
            );
            assert_eq!(x.is_sign_negative(), line.starts_with("\"-"), "{line}");
        }
        for x in [f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(
                bound(double_to_json(x), ColumnType::Double),
                Ok(Bound::Double(Some(x)))
            );
        }
    }

    #[test]
    fn column_types_are_read_from_both_schemas() {
        for (declared, ty) in [
            ("BIGINT", ColumnType::Integer),
            ("INTEGER", ColumnType::Integer),
            ("TEXT", ColumnType::Text),
            ("DOUBLE PRECISION", ColumnType::Double),
            ("BLOB", ColumnType::Blob),
            ("BOOLEAN", ColumnType::Bool),
        ] {
            assert_eq!(ColumnType::from_sqlite(declared), Some(ty), "{declared}");
        }
        for (declared, ty) in [
            ("bigint", ColumnType::Integer),
            ("text", ColumnType::Text),
            ("double precision", ColumnType::Double),
            ("bytea", ColumnType::Blob),
            ("boolean", ColumnType::Bool),
        ] {
            assert_eq!(ColumnType::from_postgres(declared), Some(ty), "{declared}");
        }
        assert_eq!(ColumnType::from_postgres("jsonb"), None);
    }

    #[cfg(feature = "test-support")]
    mod schema {
        use super::super::*;

        /// The tables `table`'s foreign keys name.
        async fn parents(
            conn: &mut AnyConnection,
            backend: Backend,
            table: &str,
        ) -> BTreeSet<String> {
            let sql = match backend {
                Backend::Sqlite => "SELECT \"table\" AS parent FROM pragma_foreign_key_list($1)",
                Backend::Postgres => {
                    "SELECT CAST(p.relname AS TEXT) AS parent FROM pg_constraint c \
                     JOIN pg_class t ON t.oid = c.conrelid JOIN pg_class p ON p.oid = c.confrelid \
                     WHERE c.contype = 'f' AND CAST(t.relname AS TEXT) = $1"
                }
            };
            sqlx::query(sql)
                .bind(table)
                .fetch_all(&mut *conn)
                .await
                .expect("foreign keys")
                .iter()
                .map(|row| row.try_get("parent").expect("parent"))
                .collect()
        }

        async fn the_backup_covers_every_table_the_migrations_create(store: Store) {
            let mut conn = store.pool.acquire().await.expect("connection");
            let mut created = table_names(&mut conn, store.backend).await.expect("tables");
            assert!(created.remove(MIGRATIONS_TABLE));
            let listed: BTreeSet<String> = TABLES.iter().map(|t| (*t).to_owned()).collect();
            assert_eq!(listed.len(), TABLES.len(), "a table is listed twice");
            assert_eq!(
                created, listed,
                "backup::TABLES must list exactly the tables the migrations create"
            );
            for (index, table) in TABLES.iter().enumerate() {
                for parent in parents(&mut conn, store.backend, table).await {
                    assert!(
                        TABLES[..index].contains(&parent.as_str()),
                        "`{table}` refers to `{parent}`, which backup::TABLES must list before it"
                    );
                }
                // Every column has a type a backup can carry.
                table_schema(&mut conn, store.backend, table)
                    .await
                    .expect("schema");
            }
        }

        crate::on_both_backends!(the_backup_covers_every_table_the_migrations_create);
    }
}
