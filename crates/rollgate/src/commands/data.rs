//! `rollgate migrate`, `backup` and `restore`: the commands that open the
//! store themselves (like `serve`, with `--data-dir` or `--database-url`)
//! instead of talking to a server. A backup of either backend restores into
//! the other, which is how a store moves from SQLite to PostgreSQL
//! (docs/operations.md).

use std::fs::File;
use std::io::{BufReader, BufWriter, ErrorKind, Write as _};
use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use store::{AppliedMigration, Backend, BackupSummary, Store};

use super::serve::{describe, open_store};
use crate::cli::{BackupArgs, DatabaseArgs, MigrateArgs, RestoreArgs};
use crate::output;

/// FILE meaning standard output (`backup`) or standard input (`restore`).
const STDIO: &str = "-";

/// Opens the store, which runs its pending migrations, and says which ran.
pub fn migrate(args: &MigrateArgs) -> anyhow::Result<()> {
    block_on(async {
        let before = recorded_migrations(&args.database).await?;
        let store = open_store(&args.database).await?;
        let applied = store.applied_migrations().await;
        let latest = store.latest_migration();
        store.close().await;
        let applied = applied.context("cannot read the migrations the store recorded")?;
        let new: Vec<&AppliedMigration> = applied
            .iter()
            .filter(|m| !before.iter().any(|b| b.version == m.version))
            .collect();
        output::line(&format!("Store: {}", describe(&args.database)))?;
        if new.is_empty() {
            output::line("No migration to apply.")?;
        } else {
            output::line(&format!("Applied {} migration(s):", new.len()))?;
            for migration in new {
                output::line(&format!(
                    "  {:04} {}",
                    migration.version, migration.description
                ))?;
            }
        }
        let current = applied.last().map_or(0, |m| m.version);
        output::line(&format!(
            "Schema version: {current} (the newest this rollgate knows is {latest})."
        ))
    })
}

/// Writes a backup to FILE (through a temporary file renamed into place) or
/// to standard output.
pub fn backup(args: &BackupArgs) -> anyhow::Result<()> {
    let to_stdout = args.file.as_os_str() == STDIO;
    if args.database.database_url.is_none() {
        // Opening would create an empty store: a mistyped directory must
        // not give an empty backup.
        let file = args.database.data_dir.join(store::SQLITE_FILE);
        if !file.exists() {
            bail!(
                "there is no store in {} ({} is missing); name the store's directory with \
                 --data-dir or ROLLGATE_DATA_DIR, or its database with --database-url",
                args.database.data_dir.display(),
                store::SQLITE_FILE
            );
        }
    }
    if !to_stdout && !args.force && args.file.exists() {
        bail!("{} exists; pass --force to replace it", args.file.display());
    }
    block_on(async {
        let store = open_store(&args.database).await?;
        let written = if to_stdout {
            backup_to_stdout(&store).await
        } else {
            backup_to_file(&store, &args.file, args.force).await
        };
        store.close().await;
        let summary = written?;
        let text = format!(
            "Backed up {} to {}: {}\n{}",
            describe(&args.database),
            if to_stdout {
                "standard output".to_owned()
            } else {
                args.file.display().to_string()
            },
            summary_line(&summary),
            output::table(&["TABLE", "ROWS"], &table_rows(&summary))
        );
        if to_stdout {
            // Standard output carries the backup itself.
            eprint!("{text}");
            Ok(())
        } else {
            output::print(&text)
        }
    })
}

/// Loads a backup from FILE or standard input into an empty store.
pub fn restore(args: &RestoreArgs) -> anyhow::Result<()> {
    let from_stdin = args.file.as_os_str() == STDIO;
    // Before the store is opened (and perhaps created): a wrong path changes nothing.
    let file = if from_stdin {
        None
    } else {
        Some(
            File::open(&args.file)
                .with_context(|| format!("cannot open {}", args.file.display()))?,
        )
    };
    let source = if from_stdin {
        "standard input".to_owned()
    } else {
        args.file.display().to_string()
    };
    block_on(async {
        let store = open_store(&args.database).await?;
        let restored = match file {
            Some(file) => store.restore(BufReader::new(file)).await,
            None => store.restore(std::io::stdin().lock()).await,
        };
        store.close().await;
        let summary = restored.with_context(|| {
            format!(
                "cannot restore {source} into {}; nothing was written",
                describe(&args.database)
            )
        })?;
        output::print(&format!(
            "Restored {source} into {}: {}\n{}",
            describe(&args.database),
            summary_line(&summary),
            output::table(&["TABLE", "ROWS"], &table_rows(&summary))
        ))
    })
}

/// The migrations recorded in the store `database` names before it is
/// opened (which migrates it); none for a store that does not exist yet.
async fn recorded_migrations(database: &DatabaseArgs) -> anyhow::Result<Vec<AppliedMigration>> {
    let url = match &database.database_url {
        Some(url) => url.clone(),
        None => {
            let file = database.data_dir.join(store::SQLITE_FILE);
            if !file.exists() {
                return Ok(Vec::new());
            }
            // `mode=rw`: read what is there, create nothing.
            format!("sqlite:{}?mode=rw", file.display())
        }
    };
    Store::recorded_migrations(&url)
        .await
        .with_context(|| format!("cannot open the database {}", describe(database)))
}

async fn backup_to_stdout(store: &Store) -> anyhow::Result<BackupSummary> {
    let mut writer = BufWriter::new(std::io::stdout().lock());
    let summary = store
        .backup(&mut writer)
        .await
        .context("cannot write the backup to standard output")?;
    writer
        .flush()
        .context("cannot write the backup to standard output")?;
    Ok(summary)
}

/// Writes the backup to a temporary file beside `path`, flushes it to disk,
/// and renames it to `path`: a crash leaves the old file or the whole new
/// one, never half a backup under that name.
async fn backup_to_file(store: &Store, path: &Path, force: bool) -> anyhow::Result<BackupSummary> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} names no file", path.display()))?;
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".partial")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let summary = {
        let mut writer = BufWriter::new(temp.as_file_mut());
        let summary = store
            .backup(&mut writer)
            .await
            .context("cannot back up the store")?;
        writer
            .flush()
            .with_context(|| format!("cannot write the backup to {}", dir.display()))?;
        summary
    };
    temp.as_file()
        .sync_all()
        .with_context(|| format!("cannot flush the backup to disk in {}", dir.display()))?;
    let persisted = if force {
        temp.persist(path)
    } else {
        // Fails rather than replace a file that appeared meanwhile.
        temp.persist_noclobber(path)
    };
    match persisted {
        Ok(_) => {}
        Err(e) if e.error.kind() == ErrorKind::AlreadyExists => bail!(
            "{} appeared while the backup was written; pass --force to replace it",
            path.display()
        ),
        Err(e) => {
            return Err(e.error).with_context(|| format!("cannot create {}", path.display()));
        }
    }
    sync_directory(dir)?;
    Ok(summary)
}

/// Makes the rename itself durable.
#[cfg(unix)]
fn sync_directory(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot flush the directory {} to disk", dir.display()))
}

#[cfg(not(unix))]
fn sync_directory(_dir: &Path) -> anyhow::Result<()> {
    Ok(())
}

fn summary_line(summary: &BackupSummary) -> String {
    let backend = match summary.backend {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "PostgreSQL",
    };
    let rows = summary.rows();
    format!(
        "{rows} {} in {} tables, taken {} from {backend} at schema version {}.",
        if rows == 1 { "row" } else { "rows" },
        summary.tables.len(),
        summary.created_at(),
        summary.migration_version
    )
}

fn table_rows(summary: &BackupSummary) -> Vec<Vec<String>> {
    summary
        .tables
        .iter()
        .map(|(table, rows)| vec![table.clone(), rows.to_string()])
        .collect()
}

/// Runs a command on a single-threaded runtime: one store, one thing at a time.
fn block_on<T>(future: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(future)
}
