//! The store on a real SQLite file in a fresh directory and on a fresh
//! PostgreSQL database.

use store::on_both_backends;
use store::test_support::TEST_ENVIRONMENT as ENV;

use flags::{FlagSpec, SegmentSpec};
use serde_json::json;
use store::{ApplyOptions, AuditFilter, Change, ChangeAction, Store, StoreError, TokenKind};

fn flag(key: &str, split: serde_json::Value) -> FlagSpec {
    serde_json::from_value(json!({
        "key": key,
        "type": "string",
        "off_variant": "simple",
        "variants": {"simple": "simple", "advanced": "advanced"},
        "rules": [{"conditions": [{"segment": "power-users"}], "serve": {"split": split}}],
        "default": {"serve": {"variant": "simple"}}
    }))
    .expect("flag spec")
}

fn segment() -> SegmentSpec {
    serde_json::from_value(json!({
        "key": "power-users",
        "conditions": [{"attribute": "plan", "op": "in", "values": ["pro", "enterprise"]}]
    }))
    .expect("segment spec")
}

fn upserts(split: serde_json::Value) -> Vec<Change> {
    vec![
        Change::UpsertSegment(segment()),
        Change::UpsertFlag(flag("calc-model", split)),
    ]
}

/// A store on a SQLite file, with the directory of its file.
async fn sqlite_dir() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_sqlite(dir.path()).await.expect("open store");
    store.ensure_environment(ENV).await.expect("environment");
    (dir, store)
}

async fn apply(store: &Store, changes: Vec<Change>) -> Result<store::ApplyReport, StoreError> {
    store
        .apply(
            ENV,
            changes,
            "tester",
            Some("because"),
            ApplyOptions::default(),
        )
        .await
}

async fn applying_twice_changes_nothing_the_second_time(store: Store) {
    let first = apply(&store, upserts(json!({"advanced": 5, "simple": 95})))
        .await
        .expect("first apply");
    assert_eq!(first.revision, 1);
    assert!(
        first
            .changes
            .iter()
            .all(|c| c.action == ChangeAction::Created && c.version == Some(1))
    );

    let second = apply(&store, upserts(json!({"advanced": 5, "simple": 95})))
        .await
        .expect("second apply");
    assert_eq!(second.revision, 1, "no new revision");
    assert!(
        second
            .changes
            .iter()
            .all(|c| c.action == ChangeAction::Unchanged && c.version == Some(1))
    );
    assert_eq!(
        store
            .flag_history(ENV, "calc-model")
            .await
            .expect("history")
            .len(),
        1
    );
    let audit = store
        .list_audit(AuditFilter {
            target_kind: Some("flag".into()),
            ..Default::default()
        })
        .await
        .expect("audit");
    assert_eq!(audit.len(), 1, "one audit entry for the one real change");
}

async fn the_order_of_a_split_is_part_of_the_flag(store: Store) {
    // Reordering a split moves units between variants, so it is a change.
    apply(&store, upserts(json!({"advanced": 5, "simple": 95})))
        .await
        .expect("apply");
    let report = apply(&store, upserts(json!({"simple": 95, "advanced": 5})))
        .await
        .expect("reorder");
    let flag_change = report
        .changes
        .iter()
        .find(|c| c.key == "calc-model")
        .expect("flag change");
    assert_eq!(
        (flag_change.action, flag_change.version),
        (ChangeAction::Updated, Some(2))
    );
    let stored = store
        .get_flag(ENV, "calc-model")
        .await
        .expect("get")
        .expect("exists");
    let split_order: Vec<&String> = match &stored.spec.rules[0].serve.split {
        Some(split) => split.keys().collect(),
        None => panic!("the rule serves a split"),
    };
    assert_eq!(split_order, ["simple", "advanced"]);
}

async fn an_invalid_change_is_rejected_whole(store: Store) {
    let mut changes = upserts(json!({"advanced": 5, "simple": 95}));
    changes.push(Change::UpsertFlag(flag(
        "broken",
        json!({"advanced": 5, "simple": 90}),
    )));
    match apply(&store, changes).await {
        Err(StoreError::Invalid(errors)) => {
            assert!(
                errors
                    .iter()
                    .any(|e| e.subject.contains("broken") && e.message.contains("100")),
                "{errors:?}"
            );
        }
        other => panic!("expected a validation error, got {other:?}"),
    }
    assert!(
        store.list_flags(ENV).await.expect("list").is_empty(),
        "nothing was written"
    );
    assert!(store.list_segments(ENV).await.expect("list").is_empty());
    assert_eq!(
        store.list_environments().await.expect("envs")[0].revision,
        0
    );
}

async fn deleting_a_segment_in_use_is_refused(store: Store) {
    apply(&store, upserts(json!({"advanced": 5, "simple": 95})))
        .await
        .expect("apply");
    match apply(&store, vec![Change::DeleteSegment("power-users".into())]).await {
        Err(StoreError::Invalid(errors)) => {
            assert!(errors.iter().any(|e| e.message.contains("power-users")))
        }
        other => panic!("expected a validation error, got {other:?}"),
    }
    assert!(
        store
            .get_segment(ENV, "power-users")
            .await
            .expect("get")
            .is_some()
    );
}

async fn dry_runs_report_without_writing(store: Store) {
    let report = store
        .apply(
            ENV,
            upserts(json!({"advanced": 5, "simple": 95})),
            "tester",
            None,
            ApplyOptions { dry_run: true },
        )
        .await
        .expect("dry run");
    assert!(report.changed());
    assert!(
        report
            .changes
            .iter()
            .all(|c| c.action == ChangeAction::Created)
    );
    assert!(store.list_flags(ENV).await.expect("list").is_empty());
    assert!(
        store
            .list_audit(AuditFilter::default())
            .await
            .expect("audit")
            .iter()
            .all(|e| e.target_kind == "environment")
    );
}

async fn history_survives_deletion_and_restore_makes_a_new_version(store: Store) {
    apply(&store, upserts(json!({"advanced": 5, "simple": 95})))
        .await
        .expect("v1");
    apply(&store, upserts(json!({"advanced": 25, "simple": 75})))
        .await
        .expect("v2");
    let deleted = apply(&store, vec![Change::DeleteFlag("calc-model".into())])
        .await
        .expect("v3 deletes");
    assert_eq!(
        (deleted.changes[0].action, deleted.changes[0].version),
        (ChangeAction::Deleted, Some(3))
    );
    assert!(
        store
            .get_flag(ENV, "calc-model")
            .await
            .expect("get")
            .is_none()
    );

    let history = store
        .flag_history(ENV, "calc-model")
        .await
        .expect("history");
    assert_eq!(
        history.iter().map(|v| v.version).collect::<Vec<_>>(),
        [3, 2, 1]
    );
    assert!(
        history[0].spec.is_none(),
        "the deleting version has no spec"
    );
    assert_eq!(
        (history[1].author.as_str(), history[1].reason.as_deref()),
        ("tester", Some("because"))
    );

    match store
        .restore_flag(ENV, "calc-model", 3, "tester", None)
        .await
    {
        Err(StoreError::Conflict(message)) => assert!(message.contains("deletion")),
        other => panic!("restoring a deletion must fail, got {other:?}"),
    }
    let restored = store
        .restore_flag(ENV, "calc-model", 1, "operator", None)
        .await
        .expect("restore v1");
    assert_eq!(
        (restored.changes[0].action, restored.changes[0].version),
        (ChangeAction::Created, Some(4))
    );
    let current = store
        .get_flag(ENV, "calc-model")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        current.spec,
        flag("calc-model", json!({"advanced": 5, "simple": 95}))
    );
    assert_eq!(
        (current.version, current.updated_by.as_str()),
        (4, "operator")
    );
    assert_eq!(
        store
            .flag_version(ENV, "calc-model", 4)
            .await
            .expect("v4")
            .expect("exists")
            .reason
            .as_deref(),
        Some("restored version 1")
    );

    // Restoring what is current writes nothing.
    let again = store
        .restore_flag(ENV, "calc-model", 1, "operator", None)
        .await
        .expect("restore again");
    assert!(!again.changed());
}

async fn restore_over_an_existing_flag_is_audited_as_a_restore(store: Store) {
    apply(&store, upserts(json!({"advanced": 5, "simple": 95})))
        .await
        .expect("v1");
    apply(&store, upserts(json!({"advanced": 50, "simple": 50})))
        .await
        .expect("v2");
    store
        .restore_flag(ENV, "calc-model", 1, "operator", Some("error spike"))
        .await
        .expect("restore");
    let entries = store
        .list_audit(AuditFilter {
            target_key: Some("calc-model".into()),
            ..Default::default()
        })
        .await
        .expect("audit");
    let newest = &entries[0];
    assert_eq!(
        (
            newest.action.as_str(),
            newest.actor.as_str(),
            newest.reason.as_deref()
        ),
        ("flag.restored", "operator", Some("error spike"))
    );
    let weight = |v: &Option<serde_json::Value>| {
        v.as_ref()
            .map(|v| v["rules"][0]["serve"]["split"]["advanced"].clone())
    };
    assert_eq!(
        (weight(&newest.before), weight(&newest.after)),
        (Some(json!(50)), Some(json!(5)))
    );
    assert_eq!(
        entries
            .iter()
            .map(|e| e.action.as_str())
            .collect::<Vec<_>>(),
        ["flag.restored", "flag.updated", "flag.created"]
    );
}

async fn audit_pages_and_filters(store: Store) {
    for percent in 1..=5 {
        apply(
            &store,
            upserts(json!({"advanced": percent, "simple": 100 - percent})),
        )
        .await
        .expect("apply");
    }
    let page = store
        .list_audit(AuditFilter {
            limit: Some(2),
            ..Default::default()
        })
        .await
        .expect("page 1");
    assert_eq!(page.len(), 2);
    let next = store
        .list_audit(AuditFilter {
            limit: Some(2),
            before_id: Some(page[1].id),
            ..Default::default()
        })
        .await
        .expect("page 2");
    assert!(next.iter().all(|e| e.id < page[1].id));
    let by_actor = store
        .list_audit(AuditFilter {
            actor: Some("nobody".into()),
            ..Default::default()
        })
        .await
        .expect("filter");
    assert!(by_actor.is_empty());
    let segment_entries = store
        .list_audit(AuditFilter {
            target_kind: Some("segment".into()),
            ..Default::default()
        })
        .await
        .expect("filter");
    assert_eq!(
        segment_entries.len(),
        1,
        "the segment was created once and never changed"
    );
}

#[tokio::test]
async fn tokens_are_stored_hashed_and_revocable() {
    let (dir, store) = sqlite_dir().await;
    assert!(
        store
            .bootstrap_admin_token("first-secret")
            .await
            .expect("bootstrap")
    );
    assert!(
        !store
            .bootstrap_admin_token("second-secret")
            .await
            .expect("bootstrap again"),
        "only on an empty store"
    );

    let (record, secret) = store
        .create_token("checkout", TokenKind::Client, Some(ENV), "bootstrap-admin")
        .await
        .expect("create");
    assert_eq!(
        (record.kind, record.environment.as_deref()),
        (TokenKind::Client, Some(ENV))
    );
    assert!(secret.ends_with(&record.hint));
    let active = store.active_tokens().await.expect("active");
    assert!(
        active
            .iter()
            .any(|t| t.hash == store::hash_token(&secret) && t.record.id == record.id)
    );

    store.close().await;
    let bytes = [
        std::fs::read(dir.path().join(store::SQLITE_FILE)).unwrap_or_default(),
        std::fs::read(dir.path().join(format!("{}-wal", store::SQLITE_FILE))).unwrap_or_default(),
    ]
    .concat();
    let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(contains(&store::hash_token(&secret)), "the hash is stored");
    assert!(
        !contains(&secret) && !contains("first-secret"),
        "no secret is stored in plain text"
    );

    let store = Store::open_sqlite(dir.path()).await.expect("reopen");
    let revoked = store
        .revoke_token(record.id, "bootstrap-admin")
        .await
        .expect("revoke");
    assert!(revoked.revoked_at_ms.is_some());
    assert!(
        store
            .active_tokens()
            .await
            .expect("active")
            .iter()
            .all(|t| t.record.id != record.id)
    );
    assert!(matches!(
        store.revoke_token(9999, "x").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .create_token("ghost", TokenKind::Client, Some("nowhere"), "x")
            .await,
        Err(StoreError::NotFound {
            kind: "environment",
            ..
        })
    ));
}

async fn environments_are_created_once(store: Store) {
    store
        .create_environment("staging", "pre-production", "tester")
        .await
        .expect("create");
    assert!(matches!(
        store.create_environment("staging", "", "tester").await,
        Err(StoreError::Conflict(_))
    ));
    let keys: Vec<String> = store
        .list_environments()
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, ["production", "staging"]);
    assert!(matches!(
        apply_to(&store, "nowhere").await,
        Err(StoreError::NotFound {
            kind: "environment",
            ..
        })
    ));
}

async fn apply_to(store: &Store, env: &str) -> Result<store::ApplyReport, StoreError> {
    store
        .apply(
            env,
            upserts(json!({"advanced": 5, "simple": 95})),
            "t",
            None,
            ApplyOptions::default(),
        )
        .await
}

#[tokio::test]
async fn the_file_is_in_wal_mode_and_survives_reopening() {
    let (dir, store) = sqlite_dir().await;
    apply(&store, upserts(json!({"advanced": 5, "simple": 95})))
        .await
        .expect("apply");
    drop(store);
    let store = Store::open_sqlite(dir.path()).await.expect("reopen");
    let (flags, segments, revision) = store.load_environment(ENV).await.expect("load");
    assert_eq!((flags.len(), segments.len(), revision), (1, 1, 1));
    assert!(
        dir.path()
            .join(format!("{}-wal", store::SQLITE_FILE))
            .exists(),
        "a WAL file beside the database"
    );
}

async fn concurrent_writers_are_serialised(store: Store) {
    apply(&store, vec![Change::UpsertSegment(segment())])
        .await
        .expect("segment");
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let changes = vec![Change::UpsertFlag(flag(
                    &format!("flag-{i}"),
                    json!({"advanced": 5, "simple": 95}),
                ))];
                apply(&store, changes).await
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("join").expect("apply");
    }
    assert_eq!(store.list_flags(ENV).await.expect("list").len(), 8);
    assert_eq!(
        store.list_environments().await.expect("envs")[0].revision,
        9
    );
}

on_both_backends!(
    applying_twice_changes_nothing_the_second_time,
    the_order_of_a_split_is_part_of_the_flag,
    an_invalid_change_is_rejected_whole,
    deleting_a_segment_in_use_is_refused,
    dry_runs_report_without_writing,
    history_survives_deletion_and_restore_makes_a_new_version,
    restore_over_an_existing_flag_is_audited_as_a_restore,
    audit_pages_and_filters,
    environments_are_created_once,
    concurrent_writers_are_serialised,
);
