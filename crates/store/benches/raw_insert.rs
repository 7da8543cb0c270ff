//! Raw batched SQLite inserts of track events, one row per event: the rate the
//! HTTP ingest path (`benches/load/events.sh`) is compared with.
//!
//! The rows are the ones `benches/load/events.lua` sends (event `i` is for unit
//! `u-(i % 10000)`), written with the server's durability (WAL,
//! `synchronous = FULL`), 1,000 rows per transaction, by one writer, through
//! sqlx's SQLite driver. Two ways of writing a transaction are measured:
//!
//! - `multi-row`: one `INSERT … VALUES (…), (…), …` of 1,000 rows (6,000 bound
//!   parameters), prepared once and reused;
//! - `prepared`: 1,000 executions of a prepared single-row `INSERT`.
//!
//! ```sh
//! cargo bench -p store --bench raw_insert -- [--events N] [--dir DIR] [--method multi-row|prepared|both]
//! ```
//!
//! Prints one `raw_insert_result` line per method. Run without `--bench` (as
//! `cargo test --all-targets` does) it inserts a few thousand rows only, as a
//! smoke test.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, Row, SqliteConnection};

/// Rows committed by one transaction (the HTTP benchmark's batch size).
const EVENTS_PER_TRANSACTION: usize = 1_000;
/// Distinct units the events are spread over.
const UNITS: usize = 10_000;
/// Events inserted when `--events` is not given.
const DEFAULT_EVENTS: usize = 1_000_000;
/// Events inserted in smoke-test mode (no `--bench` argument).
const SMOKE_EVENTS: usize = 2 * EVENTS_PER_TRANSACTION;
const ENVIRONMENT: &str = "production";
const EVENT_NAME: &str = "calc_request";

const SCHEMA: &str = "CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    environment TEXT NOT NULL,
    name        TEXT NOT NULL,
    unit        TEXT NOT NULL,
    value       REAL,
    ts          INTEGER NOT NULL,
    attributes  TEXT NOT NULL
)";
const INSERT_ONE: &str =
    "INSERT INTO events (environment, name, unit, value, ts, attributes) VALUES (?, ?, ?, ?, ?, ?)";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    MultiRow,
    Prepared,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::MultiRow => "multi-row",
            Method::Prepared => "prepared",
        }
    }
}

struct Config {
    events: usize,
    dir: Option<PathBuf>,
    methods: Vec<Method>,
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // cargo-nextest asks a test binary for its tests; this one has none.
    if args.iter().any(|a| a == "--list") {
        return Ok(());
    }
    let config = parse_args(&args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(&config))
}

fn parse_args(args: &[String]) -> Result<Config, Box<dyn Error>> {
    let mut config = Config {
        events: if args.iter().any(|a| a == "--bench") {
            DEFAULT_EVENTS
        } else {
            SMOKE_EVENTS
        },
        dir: None,
        methods: vec![Method::MultiRow, Method::Prepared],
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--bench" => {}
            "--events" => config.events = value()?.replace('_', "").parse()?,
            "--dir" => config.dir = Some(PathBuf::from(value()?)),
            "--method" => {
                config.methods = match value()?.as_str() {
                    "multi-row" => vec![Method::MultiRow],
                    "prepared" => vec![Method::Prepared],
                    "both" => vec![Method::MultiRow, Method::Prepared],
                    other => return Err(format!("unknown method `{other}`").into()),
                }
            }
            other => return Err(format!("unknown argument `{other}`").into()),
        }
    }
    // Whole transactions only.
    config.events = config.events.div_ceil(EVENTS_PER_TRANSACTION).max(1) * EVENTS_PER_TRANSACTION;
    Ok(config)
}

async fn run(config: &Config) -> Result<(), Box<dyn Error>> {
    let temp;
    let dir = match &config.dir {
        Some(dir) => dir.as_path(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path()
        }
    };
    let units: Vec<String> = (0..UNITS).map(|u| format!("u-{u}")).collect();
    for &method in &config.methods {
        let file = dir.join(format!("raw-insert-{}.db", method.name()));
        let elapsed = insert_events(&file, method, config.events, &units).await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
        }
        let elapsed = elapsed?;
        println!(
            "raw_insert_result method={} events={} seconds={:.2} events_per_s={:.0}",
            method.name(),
            config.events,
            elapsed.as_secs_f64(),
            config.events as f64 / elapsed.as_secs_f64()
        );
    }
    Ok(())
}

/// Inserts `events` rows into a new database at `file`; returns the time from
/// the first `BEGIN` to the last `COMMIT`.
async fn insert_events(
    file: &Path,
    method: Method,
    events: usize,
    units: &[String],
) -> Result<Duration, Box<dyn Error>> {
    let options = SqliteConnectOptions::new()
        .filename(file)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    let mut conn = SqliteConnection::connect_with(&options).await?;
    sqlx::query(SCHEMA).execute(&mut conn).await?;
    let multi_row = multi_row_insert(EVENTS_PER_TRANSACTION);

    let start = Instant::now();
    for first in (0..events).step_by(EVENTS_PER_TRANSACTION) {
        let ts = now_ms();
        let rows = first..first + EVENTS_PER_TRANSACTION;
        let mut tx = conn.begin().await?;
        match method {
            Method::MultiRow => {
                let mut insert = sqlx::query(&multi_row);
                for i in rows {
                    insert = insert
                        .bind(ENVIRONMENT)
                        .bind(EVENT_NAME)
                        .bind(units[i % UNITS].as_str())
                        .bind(value(i))
                        .bind(ts)
                        .bind(attributes(i));
                }
                insert.execute(&mut *tx).await?;
            }
            Method::Prepared => {
                for i in rows {
                    sqlx::query(INSERT_ONE)
                        .bind(ENVIRONMENT)
                        .bind(EVENT_NAME)
                        .bind(units[i % UNITS].as_str())
                        .bind(value(i))
                        .bind(ts)
                        .bind(attributes(i))
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
    }
    let elapsed = start.elapsed();

    let stored: i64 = sqlx::query("SELECT COUNT(*) AS n FROM events")
        .fetch_one(&mut conn)
        .await?
        .try_get("n")?;
    if stored != events as i64 {
        return Err(format!("{stored} rows stored, {events} inserted").into());
    }
    conn.close().await?;
    Ok(elapsed)
}

fn multi_row_insert(rows: usize) -> String {
    let mut sql =
        String::from("INSERT INTO events (environment, name, unit, value, ts, attributes) VALUES ");
    for row in 0..rows {
        if row > 0 {
            sql.push(',');
        }
        sql.push_str("(?, ?, ?, ?, ?, ?)");
    }
    sql
}

/// The value events.lua sends with event `i`.
fn value(i: usize) -> f64 {
    ((i * 37) % 5000) as f64 / 10.0
}

/// The attributes events.lua sends with event `i`.
fn attributes(i: usize) -> &'static str {
    if i.is_multiple_of(4) {
        r#"{"cache_hit":false}"#
    } else {
        r#"{"cache_hit":true}"#
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
