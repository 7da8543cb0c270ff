//! Fresh PostgreSQL databases for tests (feature `test-support`): every test
//! gets a database of its own, created from `ROLLGATE_TEST_DATABASE_URL` and
//! dropped when the test ends, so tests run in parallel without seeing each
//! other's rows.
//!
//! Without the variable the PostgreSQL tests skip, saying so, except under
//! `CI=true`, where they fail: CI must not pass by testing one backend.
//!
//! [`on_both_backends!`](crate::on_both_backends) runs a test on both: on a
//! real SQLite file in a fresh directory and on a fresh PostgreSQL database.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Connection as _;
use sqlx::Executor as _;

use crate::{Store, StoreError};

/// The variable naming a PostgreSQL server (any database on it) whose user
/// may create databases.
pub const TEST_DATABASE_URL_VAR: &str = "ROLLGATE_TEST_DATABASE_URL";

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A database created for one test; dropped (with its connections) on drop.
#[derive(Debug)]
pub struct TestDatabase {
    /// The URL of the new database.
    pub url: String,
    admin_url: String,
    name: String,
}

impl TestDatabase {
    /// Creates an empty database, or `None` (after saying why on standard
    /// error) when `ROLLGATE_TEST_DATABASE_URL` is unset outside CI.
    ///
    /// # Panics
    /// When the variable is unset under `CI=true`, or the server refuses.
    pub async fn create() -> Option<TestDatabase> {
        let admin_url = match std::env::var(TEST_DATABASE_URL_VAR) {
            Ok(url) if !url.trim().is_empty() => url,
            _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
                "{TEST_DATABASE_URL_VAR} is not set: under CI=true the PostgreSQL tests must run \
                 (.ci/run sets it to the server on 127.0.0.1:5432)"
            ),
            _ => {
                eprintln!(
                    "skipping a PostgreSQL test: set {TEST_DATABASE_URL_VAR}=postgres://… to run it"
                );
                return None;
            }
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "rollgate_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {TEST_DATABASE_URL_VAR}: {e}"));
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
        let _ = admin.close().await;
        let mut url = url::Url::parse(&admin_url)
            .unwrap_or_else(|e| panic!("{TEST_DATABASE_URL_VAR} is not a URL: {e}"));
        url.set_path(&name);
        Some(TestDatabase {
            url: url.to_string(),
            admin_url,
            name,
        })
    }

    /// A store on the new database, migrated.
    pub async fn store(&self) -> Result<Store, StoreError> {
        Store::connect(&self.url).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop runs inside the test's runtime, which cannot be blocked on:
        // a thread of its own with a runtime of its own does the work.
        let done = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await.ok()?;
                admin.execute(drop.as_str()).await.ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        if !matches!(done, Ok(Some(()))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

/// The environment every test store starts with.
pub const TEST_ENVIRONMENT: &str = "production";

/// What keeps a test's database alive; dropping it removes the database.
#[derive(Debug)]
pub enum Holder {
    Sqlite(tempfile::TempDir),
    Postgres(TestDatabase),
}

/// A migrated store with the `production` environment on a SQLite file in
/// a fresh directory.
///
/// # Panics
/// When the store cannot be opened.
pub async fn sqlite() -> (Holder, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_sqlite(dir.path()).await.expect("open store");
    store
        .ensure_environment(TEST_ENVIRONMENT)
        .await
        .expect("environment");
    (Holder::Sqlite(dir), store)
}

/// The same on a fresh PostgreSQL database; `None` when the PostgreSQL
/// tests are skipped ([`TestDatabase::create`]).
///
/// # Panics
/// When the store cannot be opened.
pub async fn postgres() -> Option<(Holder, Store)> {
    let database = TestDatabase::create().await?;
    let store = database.store().await.expect("open store");
    store
        .ensure_environment(TEST_ENVIRONMENT)
        .await
        .expect("environment");
    Some((Holder::Postgres(database), store))
}

/// Runs each named `async fn NAME(store: Store)` of the calling module as
/// two tests, `sqlite::NAME` and `postgres::NAME`, each on a fresh store
/// with the `production` environment.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (_holder, store) = $crate::test_support::sqlite().await;
                    super::$name(store.clone()).await;
                    store.close().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some((_holder, store)) = $crate::test_support::postgres().await else {
                        return;
                    };
                    super::$name(store.clone()).await;
                    store.close().await;
                }
            )*
        }
    };
}
