//! `rollgate migrate`, `backup` and `restore`, run as the real binary: a
//! store is created and migrated, backed up to a file (never over an existing
//! one unless forced) or to standard output, and moved from SQLite to a fresh
//! PostgreSQL database (`store::test_support`), where it answers the same.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};
use store::test_support::{TEST_ENVIRONMENT as ENV, TestDatabase};
use store::{ApplyOptions, Change, Store, TokenKind};

const BIN: &str = env!("CARGO_BIN_EXE_rollgate");

/// Runs `rollgate ARGS` with none of the caller's Rollgate settings.
fn rollgate(args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    for var in [
        "ROLLGATE_SERVER",
        "ROLLGATE_TOKEN",
        "ROLLGATE_ADMIN_TOKEN",
        "ROLLGATE_DATA_DIR",
        "ROLLGATE_DATABASE_URL",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command.args(args).output().expect("rollgate runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn ok(args: &[&str]) -> Output {
    let output = rollgate(args);
    assert!(
        output.status.success(),
        "`rollgate {}` failed ({}):\n{}{}",
        args.join(" "),
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    output
}

/// Checks that the run failed with exit code 1 and an error naming the problem.
#[track_caller]
fn fails(args: &[&str], fragments: &[&str]) {
    let output = rollgate(args);
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "`rollgate {}`:\n{}{stderr}",
        args.join(" "),
        text(&output.stdout)
    );
    for fragment in fragments {
        assert!(
            stderr.contains(fragment),
            "`rollgate {}`: {fragment:?} is not in:\n{stderr}",
            args.join(" ")
        );
    }
}

fn path(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

fn flag(key: &str, variant: &str) -> flags::FlagSpec {
    serde_json::from_value(json!({
        "key": key, "type": "string", "off_variant": "simple",
        "variants": {"simple": "simple", "advanced": "advanced"},
        "default": {"serve": {"variant": variant}}
    }))
    .expect("flag spec")
}

/// A SQLite store in `data_dir` with two flags (one changed twice) and a
/// client token; returns the token's secret.
async fn fill_sqlite(data_dir: &Path) -> String {
    let store = Store::open_sqlite(data_dir).await.expect("open store");
    store.ensure_environment(ENV).await.expect("environment");
    for (variant, reason) in [("simple", "first"), ("advanced", "second")] {
        store
            .apply(
                ENV,
                vec![
                    Change::UpsertFlag(flag("calc-model", variant)),
                    Change::UpsertFlag(flag("checkout", "simple")),
                ],
                "tester",
                Some(reason),
                ApplyOptions::default(),
            )
            .await
            .expect("apply");
    }
    let (_, secret) = store
        .create_token("checkout-service", TokenKind::Client, Some(ENV), "tester")
        .await
        .expect("token");
    store.close().await;
    secret
}

#[test]
fn migrate_creates_the_store_and_then_has_nothing_to_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let first = ok(&["migrate", "--data-dir", path(&data)]);
    let stdout = text(&first.stdout);
    assert!(
        stdout.contains("Applied") && stdout.contains("0001 foundation"),
        "{stdout}"
    );
    assert!(data.join(store::SQLITE_FILE).exists());
    let again = text(&ok(&["migrate", "--data-dir", path(&data)]).stdout);
    assert!(again.contains("No migration to apply."), "{again}");
    assert!(again.contains("Schema version: "), "{again}");
}

#[test]
fn backup_never_replaces_a_file_unless_forced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    ok(&["migrate", "--data-dir", path(&data)]);
    let file = dir.path().join("rg.backup");
    std::fs::write(&file, "keep me").expect("write");
    fails(
        &["backup", path(&file), "--data-dir", path(&data)],
        &["rg.backup exists", "--force"],
    );
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "keep me");

    let out = ok(&["backup", path(&file), "--force", "--data-dir", path(&data)]);
    assert!(text(&out.stdout).contains("Backed up"), "{out:?}");
    let backup = std::fs::read_to_string(&file).expect("read");
    let header: Value =
        serde_json::from_str(backup.lines().next().expect("header")).expect("JSON header");
    assert_eq!(header["format"], "rollgate-backup");
    assert_eq!(header["backend"], "sqlite");
    // Nothing is left beside it: the temporary file became the backup.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["data", "rg.backup"]);
}

#[tokio::test]
async fn backup_to_standard_output_restores_from_a_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    fill_sqlite(&data).await;
    let out = ok(&["backup", "-", "--data-dir", path(&data)]);
    let backup = text(&out.stdout);
    assert!(
        backup.starts_with(r#"{"format":"rollgate-backup""#),
        "{backup}"
    );
    assert!(backup.trim_end().ends_with('}'), "{backup}");
    // The summary goes to standard error, beside the backup.
    assert!(text(&out.stderr).contains("Backed up"), "{out:?}");

    let file = dir.path().join("piped.backup");
    std::fs::write(&file, &backup).expect("write");
    let copy = dir.path().join("copy");
    ok(&["restore", path(&file), "--data-dir", path(&copy)]);
    let restored = Store::open_sqlite(&copy).await.expect("open copy");
    assert_eq!(restored.list_flags(ENV).await.expect("flags").len(), 2);
    restored.close().await;
}

#[test]
fn a_file_that_is_not_a_backup_or_a_store_that_is_not_there_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "shopping list\n").expect("write");
    fails(
        &[
            "restore",
            path(&file),
            "--data-dir",
            path(&dir.path().join("data")),
        ],
        &["not the header of a Rollgate backup", "nothing was written"],
    );
    fails(
        &[
            "backup",
            path(&dir.path().join("rg.backup")),
            "--data-dir",
            path(&dir.path().join("mistyped")),
        ],
        &["there is no store in", "mistyped", "--data-dir"],
    );
    assert!(!dir.path().join("mistyped").exists());
    fails(
        &[
            "restore",
            path(&dir.path().join("missing.backup")),
            "--data-dir",
            path(&dir.path().join("data")),
        ],
        &["cannot open", "missing.backup"],
    );
}

#[tokio::test]
async fn a_sqlite_store_moves_to_postgresql() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let secret = fill_sqlite(&data).await;
    let file = dir.path().join("rg.backup");
    ok(&["backup", path(&file), "--data-dir", path(&data)]);

    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let out = ok(&["restore", path(&file), "--database-url", &database.url]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("Restored") && stdout.contains("from SQLite"),
        "{stdout}"
    );

    let source = Store::open_sqlite(&data).await.expect("open source");
    let target = Store::connect(&database.url).await.expect("open target");
    assert_eq!(
        target.list_flags(ENV).await.expect("flags"),
        source.list_flags(ENV).await.expect("flags")
    );
    assert_eq!(
        target
            .flag_history(ENV, "calc-model")
            .await
            .expect("history"),
        source
            .flag_history(ENV, "calc-model")
            .await
            .expect("history")
    );
    assert_eq!(
        target.get_environment(ENV).await.expect("environment"),
        source.get_environment(ENV).await.expect("environment")
    );
    assert!(
        target
            .active_tokens()
            .await
            .expect("tokens")
            .iter()
            .any(|t| t.hash == store::hash_token(&secret)),
        "the client token works on PostgreSQL"
    );
    // New rows get new ids: the sequences continue after the restored ones.
    let (token, _) = target
        .create_token("after-the-move", TokenKind::Admin, None, "tester")
        .await
        .expect("a new token");
    assert_eq!(token.id, 2);
    source.close().await;
    target.close().await;

    // The database now holds data: a second restore is refused.
    fails(
        &["restore", path(&file), "--database-url", &database.url],
        &["holds data", "nothing was written"],
    );
    let migrate = text(&ok(&["migrate", "--database-url", &database.url]).stdout);
    assert!(migrate.contains("No migration to apply."), "{migrate}");
}
