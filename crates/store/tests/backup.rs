//! Backups on real databases: a store filled through its public API is
//! backed up and restored into a new store of the same backend and of the
//! other one, which then answers the same and takes new writes; a restore
//! that cannot finish (a store with data, a cut or damaged file) writes
//! nothing.

use std::fmt::Debug;

use serde_json::{Value, json};
use store::on_both_backends;
use store::test_support::{Holder, TEST_ENVIRONMENT as ENV, TestDatabase};
use store::{
    ApplyOptions, AuditFilter, Backend, BucketRow, Change, CovariateRow, ExposureRow, FoldWrite,
    HistoryDelta, MAX_AUDIT_LIMIT, NewBatch, NewDelivery, NewIncident, StepCommit, Store,
    StoreError, TokenKind, TotalDelta,
};

const STAGING: &str = "staging";

fn flag(key: &str, serve: Value) -> flags::FlagSpec {
    serde_json::from_value(json!({
        "key": key, "type": "string", "off_variant": "simple",
        "description": "Which model — «quoted» and ünïcode",
        "variants": {"simple": "s", "advanced": "a", "choice": "c", "auto": "x"},
        "rules": [{"conditions": [{"segment": "power-users"}], "serve": {"variant": "advanced"}}],
        "default": {"serve": serve}
    }))
    .expect("flag spec")
}

fn experiment_flag() -> flags::FlagSpec {
    flag(
        "calc-model",
        json!({"split": {"simple": 25, "advanced": 25, "choice": 25, "auto": 25}}),
    )
}

fn segment() -> flags::SegmentSpec {
    serde_json::from_value(json!({
        "key": "power-users",
        "conditions": [{"attribute": "plan", "op": "in", "values": ["pro", "enterprise"]}]
    }))
    .expect("segment spec")
}

fn metrics() -> Vec<stats::MetricSpec> {
    [
        json!({"key": "converted", "kind": "proportion", "event": "checkout"}),
        json!({"key": "calcs", "kind": "mean", "event": "calc_request", "agg": "count"}),
        json!({"key": "error_rate", "kind": "ratio", "numerator": "calc_error",
               "denominator": "calc_request", "higher_is_better": false}),
    ]
    .into_iter()
    .map(|m| serde_json::from_value(m).expect("metric spec"))
    .collect()
}

fn experiment() -> stats::ExperimentSpec {
    serde_json::from_value(json!({
        "key": "calc-models", "flag": "calc-model",
        "arms": [
            {"variant": "simple", "weight": 1}, {"variant": "advanced", "weight": 1},
            {"variant": "choice", "weight": 1}, {"variant": "auto", "weight": 1}
        ],
        "primary_metrics": ["converted"], "secondary_metrics": ["calcs"],
        "guardrail_metrics": ["error_rate"], "cuped": true
    }))
    .expect("experiment spec")
}

fn rollout() -> rollout::RolloutSpec {
    serde_json::from_value(json!({
        "flag": "checkout", "treatment": "advanced", "control": "simple",
        "phases": [
            {"name": "beta", "percent": 5, "duration": "1d"},
            {"name": "everyone", "percent": 100, "duration": "2d"}
        ],
        "guards": [{"metric": "error_rate", "max": 0.05}]
    }))
    .expect("rollout spec")
}

async fn apply(store: &Store, environment: &str, changes: Vec<Change>, reason: Option<&str>) {
    store
        .apply(
            environment,
            changes,
            "tester",
            reason,
            ApplyOptions::default(),
        )
        .await
        .expect("apply");
}

/// A secret the filled store knows, to check that tokens still validate.
struct Filled {
    client_secret: String,
}

/// Writes something into every table through the public API.
async fn fill(store: &Store) -> Filled {
    let mut changes = vec![
        Change::UpsertSegment(segment()),
        Change::UpsertFlag(experiment_flag()),
        Change::UpsertFlag(flag("checkout", json!({"variant": "simple"}))),
        Change::UpsertFlag(flag("doomed", json!({"variant": "simple"}))),
    ];
    changes.extend(metrics().into_iter().map(Change::UpsertMetric));
    changes.push(Change::UpsertExperiment(experiment()));
    changes.push(Change::UpsertRollout(rollout()));
    changes.push(Change::UpsertChannel(
        serde_json::from_value(json!({
            "key": "ops", "url": "https://hooks.example.com/T0", "format": "slack",
            "secret": "s3cret", "events": ["rollback", "incident_opened"], "levels": ["L2", "L3"]
        }))
        .expect("channel"),
    ));
    apply(
        store,
        ENV,
        changes,
        Some("first \"version\"\nof everything"),
    )
    .await;
    apply(
        store,
        ENV,
        vec![
            Change::UpsertFlag(flag("checkout", json!({"variant": "choice"}))),
            Change::DeleteFlag("doomed".into()),
        ],
        None,
    )
    .await;
    store
        .create_environment(STAGING, "pre-production", "tester")
        .await
        .expect("staging");
    apply(
        store,
        STAGING,
        vec![
            Change::UpsertSegment(segment()),
            Change::UpsertFlag(flag("checkout", json!({"variant": "auto"}))),
        ],
        Some("staging too"),
    )
    .await;

    store
        .create_token("ops", TokenKind::Admin, None, "tester")
        .await
        .expect("admin token");
    let (_, client_secret) = store
        .create_token("checkout-service", TokenKind::Client, Some(ENV), "tester")
        .await
        .expect("client token");
    let (revoked, _) = store
        .create_token("old-service", TokenKind::Client, Some(STAGING), "tester")
        .await
        .expect("token");
    store
        .revoke_token(revoked.id, "tester")
        .await
        .expect("revoke");

    let batch = |key: Option<&str>, events: Value| NewBatch {
        environment: ENV.to_owned(),
        idempotency_key: key.map(str::to_owned),
        event_count: events.as_array().map_or(0, |e| e.len() as i64),
        events: events.to_string(),
    };
    store
        .append_batches(&[
            batch(
                Some("retry-1"),
                json!([{"kind": "track", "name": "checkout", "targetingKey": "u-1"}]),
            ),
            batch(
                None,
                json!([{"kind": "track", "name": "calc_request", "targetingKey": "u-2", "value": 182.5}]),
            ),
        ])
        .await
        .expect("events");
    let through = store.last_batch_id().await.expect("last batch");

    let mut sketch = stats::QuantileSketch::new();
    for value in [12.5, 180.0, 182.5, 2500.0] {
        sketch.add(value).expect("sketch");
    }
    let total = |flag: &str, variant: &str, unit: &str, x: f64, y: f64| TotalDelta {
        flag: flag.into(),
        variant: variant.into(),
        metric: "calcs".into(),
        unit: unit.into(),
        x,
        y,
        events: 3,
    };
    let bucket = |flag: &str, sketch: Option<Vec<u8>>, max_value: Option<f64>| BucketRow {
        flag: flag.into(),
        variant: "advanced".into(),
        metric: "calcs".into(),
        resolution: "1m".into(),
        start_ms: 1_700_000_040_000,
        x: 0.1 + 0.2,
        y: 1e-300,
        events: 4,
        max_value,
        sketch,
    };
    store
        .write_folds(
            &[FoldWrite {
                environment: ENV.into(),
                exposures: vec![
                    ExposureRow {
                        flag: "calc-model".into(),
                        unit: "u-1".into(),
                        variant: "advanced".into(),
                        first_at_ms: 1_700_000_000_000,
                        conflicting: false,
                    },
                    ExposureRow {
                        flag: "checkout".into(),
                        unit: "u-2".into(),
                        variant: "simple".into(),
                        first_at_ms: 1_700_000_000_001,
                        conflicting: true,
                    },
                ],
                totals: vec![
                    total("calc-model", "advanced", "u-1", 0.1 + 0.2, 1.0 / 3.0),
                    total("checkout", "simple", "u-2", 182.5, 1.0),
                    total("checkout", "advanced", "u-3", -2.75, 5e-324),
                ],
                buckets: vec![
                    bucket("calc-model", Some(sketch.to_bytes()), Some(2500.0)),
                    bucket("checkout", None, None),
                ],
                history: vec![HistoryDelta {
                    metric: "calcs".into(),
                    unit: "u-1".into(),
                    x: 7.25,
                    y: 2.0,
                    events: 2,
                }],
                covariates: vec![CovariateRow {
                    flag: "calc-model".into(),
                    metric: "calcs".into(),
                    unit: "u-1".into(),
                    x: 1.5,
                    y: 1.0,
                }],
            }],
            0,
            through,
        )
        .await
        .expect("fold");

    // The rollout's first phase: its state, an incident, and the window's
    // baseline copied from the checkout totals.
    store
        .commit_rollout_step_announcing(
            StepCommit {
                environment: ENV,
                flag: "checkout",
                read_version: None,
                state: r#"{"status":"running","phase":0}"#.to_owned(),
                flag_change: Some(flag(
                    "checkout",
                    json!({"split": {"advanced": 5, "simple": 95}}),
                )),
                incidents: vec![NewIncident {
                    kind: "guard".into(),
                    severity: "critical".into(),
                    level: "L2".into(),
                    title: "error_rate above 5%".into(),
                    summary: "Rolled back.".into(),
                    evidence: Some(json!({"metric": "error_rate", "interval": [0.06, 0.09]})),
                }],
                new_window: true,
                actor: "controller",
                reason: Some("phase beta"),
            },
            |incidents| {
                assert_eq!(incidents.len(), 1, "the step's incident has its id");
                vec![NewDelivery {
                    channel: "ops".into(),
                    event: "phase_started".into(),
                    body: r#"{"event":"phase_started"}"#.into(),
                }]
            },
        )
        .await
        .expect("rollout step");
    store
        .enqueue_scheduled(ENV, "ops", "daily_digest", 1_700_000_000_000, &[])
        .await
        .expect("schedule");
    store
        .server_key("dashboard-session")
        .await
        .expect("server key");
    Filled { client_secret }
}

/// Everything the store answers through its public API, labelled.
async fn answers(store: &Store) -> Vec<(String, String)> {
    fn note(out: &mut Vec<(String, String)>, what: String, value: &impl Debug) {
        out.push((what, format!("{value:#?}")));
    }
    let mut out = Vec::new();
    // Restored, not made anew: sessions signed before a restore still verify.
    let key = store
        .server_key("dashboard-session")
        .await
        .expect("server key");
    note(&mut out, "server key".into(), &key);
    let environments = store.list_environments().await.expect("environments");
    note(&mut out, "environments".into(), &environments);
    for env in environments.iter().map(|e| e.key.as_str()) {
        let flags = store.list_flags(env).await.expect("flags");
        note(&mut out, format!("{env} flags"), &flags);
        for key in ["calc-model", "checkout", "doomed"] {
            let history = store.flag_history(env, key).await.expect("history");
            note(&mut out, format!("{env} history of {key}"), &history);
        }
        note(
            &mut out,
            format!("{env} segments"),
            &store.list_segments(env).await.expect("segments"),
        );
        note(
            &mut out,
            format!("{env} metrics"),
            &store.list_metrics(env).await.expect("metrics"),
        );
        note(
            &mut out,
            format!("{env} history of calcs"),
            &store.metric_history(env, "calcs").await.expect("history"),
        );
        note(
            &mut out,
            format!("{env} experiments"),
            &store.list_experiments(env).await.expect("experiments"),
        );
        note(
            &mut out,
            format!("{env} rollouts"),
            &store.list_rollouts(env).await.expect("rollouts"),
        );
        note(
            &mut out,
            format!("{env} rollout states"),
            &store.rollout_states(env).await.expect("states"),
        );
        note(
            &mut out,
            format!("{env} channels"),
            &store.list_channels(env).await.expect("channels"),
        );
        note(
            &mut out,
            format!("{env} deliveries"),
            &store
                .deliveries(&store::DeliveryFilter {
                    environment: Some(env.to_owned()),
                    ..Default::default()
                })
                .await
                .expect("deliveries"),
        );
        note(
            &mut out,
            format!("{env} digest schedule"),
            &store
                .schedule_last_run(env, "ops", "daily_digest")
                .await
                .expect("schedule"),
        );
        for incident in store
            .incidents(env, &Default::default())
            .await
            .expect("incidents")
        {
            note(
                &mut out,
                format!("{env} timeline of incident {}", incident.id),
                &store
                    .incident_timeline(incident.id)
                    .await
                    .expect("timeline"),
            );
        }
        note(
            &mut out,
            format!("{env} incidents"),
            &store
                .incidents(env, &Default::default())
                .await
                .expect("incidents"),
        );
        note(
            &mut out,
            format!("{env} events"),
            &store.event_count(env).await.expect("events"),
        );
        for flag in ["calc-model", "checkout"] {
            note(
                &mut out,
                format!("{env} exposures of {flag}"),
                &store.exposure_counts(env, flag).await.expect("exposures"),
            );
            note(
                &mut out,
                format!("{env} totals of {flag}"),
                &store.unit_totals(env, flag, "calcs").await.expect("totals"),
            );
            note(
                &mut out,
                format!("{env} window of {flag}"),
                &store
                    .unit_totals_in_window(env, flag, "calcs")
                    .await
                    .expect("window"),
            );
            note(
                &mut out,
                format!("{env} covariates of {flag}"),
                &store
                    .unit_covariates(env, flag, "calcs")
                    .await
                    .expect("covariates"),
            );
            note(
                &mut out,
                format!("{env} buckets of {flag}"),
                &store
                    .metric_buckets(env, flag, "calcs", "1m", 0, i64::MAX)
                    .await
                    .expect("buckets"),
            );
        }
    }
    let audit = store
        .list_audit(AuditFilter {
            limit: Some(MAX_AUDIT_LIMIT),
            ..AuditFilter::default()
        })
        .await
        .expect("audit");
    note(&mut out, "audit".into(), &audit);
    note(
        &mut out,
        "tokens".into(),
        &store.list_tokens().await.expect("tokens"),
    );
    let hashes: Vec<String> = store
        .active_tokens()
        .await
        .expect("active tokens")
        .into_iter()
        .map(|t| t.hash)
        .collect();
    note(&mut out, "token hashes".into(), &hashes);
    note(
        &mut out,
        "aggregation progress".into(),
        &store.aggregation_progress().await.expect("progress"),
    );
    let batches: Vec<(i64, String, i64, i64, String)> = store
        .batches_after(0, 1000)
        .await
        .expect("batches")
        .into_iter()
        .map(|b| {
            (
                b.id,
                b.environment,
                b.received_at_ms,
                b.event_count,
                b.events,
            )
        })
        .collect();
    note(&mut out, "event batches".into(), &batches);
    out
}

#[track_caller]
fn assert_same_answers(expected: &[(String, String)], actual: &[(String, String)], what: &str) {
    assert_eq!(expected.len(), actual.len(), "{what}");
    for ((label, expected), (_, actual)) in expected.iter().zip(actual) {
        assert_eq!(expected, actual, "{what}: {label}");
    }
}

async fn backup(store: &Store) -> String {
    let mut file = Vec::new();
    store.backup(&mut file).await.expect("backup");
    String::from_utf8(file).expect("a backup is UTF-8")
}

/// The file without its header (which says when and from where).
fn rows_of(backup: &str) -> Vec<&str> {
    backup.lines().skip(1).collect()
}

/// A migrated store without any row, on `backend`; `None` when the
/// PostgreSQL tests are skipped.
async fn empty(backend: Backend) -> Option<(Holder, Store)> {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = Store::open_sqlite(dir.path()).await.expect("open store");
            Some((Holder::Sqlite(dir), store))
        }
        Backend::Postgres => {
            let database = TestDatabase::create().await?;
            let store = database.store().await.expect("open store");
            Some((Holder::Postgres(database), store))
        }
    }
}

/// New rows in every table with an id, on a restored store.
async fn write_after_restore(store: &Store) {
    let tokens = store.list_tokens().await.expect("tokens");
    let last_token = tokens.iter().map(|t| t.id).max().expect("tokens");
    let (token, _) = store
        .create_token("after-restore", TokenKind::Admin, None, "tester")
        .await
        .expect("a new token after the restore");
    assert_eq!(
        token.id,
        last_token + 1,
        "ids continue after the restored ones"
    );
    let revision = |store: &Store| {
        let store = store.clone();
        async move {
            store
                .get_environment(ENV)
                .await
                .expect("environment")
                .expect("exists")
                .revision
        }
    };
    let restored = revision(store).await;
    apply(
        store,
        ENV,
        vec![Change::UpsertFlag(flag(
            "fresh",
            json!({"variant": "simple"}),
        ))],
        None,
    )
    .await;
    assert_eq!(revision(store).await, restored + 1);
    let last_batch = store.last_batch_id().await.expect("last batch");
    let appended = store
        .append_batches(&[NewBatch {
            environment: ENV.into(),
            idempotency_key: Some("retry-1".into()),
            event_count: 1,
            events: "[]".into(),
        }])
        .await
        .expect("append");
    assert_eq!(
        appended,
        [store::Appended::Duplicate {
            id: 1,
            event_count: 1
        }],
        "the idempotency keys came along"
    );
    let appended = store
        .append_batches(&[NewBatch {
            environment: ENV.into(),
            idempotency_key: None,
            event_count: 0,
            events: "[]".into(),
        }])
        .await
        .expect("append");
    assert_eq!(appended, [store::Appended::Stored { id: last_batch + 1 }]);
    let state = store
        .rollout_state(ENV, "checkout")
        .await
        .expect("state")
        .expect("restored");
    let step = store
        .commit_rollout_step(StepCommit {
            environment: ENV,
            flag: "checkout",
            read_version: Some(state.version),
            state: r#"{"status":"rolled_back"}"#.to_owned(),
            flag_change: None,
            incidents: vec![NewIncident {
                kind: "manual".into(),
                severity: "critical".into(),
                level: "L3".into(),
                title: "rolled back by hand".into(),
                summary: "Rolled back by hand.".into(),
                evidence: None,
            }],
            new_window: false,
            actor: "tester",
            reason: None,
        })
        .await
        .expect("a rollout step after the restore");
    assert_eq!(step.version, state.version + 1);
    assert_eq!(step.incidents, [2], "incident ids continue");
}

async fn a_backup_restores_into_either_backend_and_answers_the_same(store: Store) {
    let filled = fill(&store).await;
    let expected = answers(&store).await;
    let file = backup(&store).await;
    let header: Value = serde_json::from_str(file.lines().next().expect("header")).expect("json");
    assert_eq!(header["format"], "rollgate-backup");
    assert_eq!(header["migration_version"], json!(store.latest_migration()));

    for backend in [Backend::Sqlite, Backend::Postgres] {
        let what = format!("{:?} → {backend:?}", store.backend());
        let Some((_holder, target)) = empty(backend).await else {
            continue;
        };
        let summary = target
            .restore(file.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{what}: restore failed: {e}"));
        assert_eq!(summary.backend, store.backend());
        assert!(
            summary.tables.iter().all(|(_, rows)| *rows > 0),
            "fill writes every table: {:?}",
            summary.tables
        );
        assert_same_answers(&expected, &answers(&target).await, &what);
        assert!(
            target
                .active_tokens()
                .await
                .expect("tokens")
                .iter()
                .any(|t| t.hash == store::hash_token(&filled.client_secret)),
            "{what}: the client token still validates"
        );
        // Row for row, in the same order, whatever the backend.
        assert_eq!(rows_of(&backup(&target).await), rows_of(&file), "{what}");
        write_after_restore(&target).await;
        target.close().await;
    }
}

async fn a_restore_into_a_store_with_data_is_refused_and_changes_nothing(store: Store) {
    fill(&store).await;
    let file = backup(&store).await;
    let before = answers(&store).await;
    match store.restore(file.as_bytes()).await {
        Err(StoreError::Conflict(message)) => assert!(
            message.contains("table `environments` has rows") && message.contains("empty"),
            "{message}"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_same_answers(&before, &answers(&store).await, "after the refusal");
    assert_eq!(
        backup(&store).await.lines().skip(1).collect::<Vec<_>>(),
        rows_of(&file)
    );
}

/// The file with its header changed by `change`.
fn with_header(file: &str, change: impl FnOnce(&mut Value)) -> String {
    let mut lines: Vec<String> = file.lines().map(str::to_owned).collect();
    let mut header: Value = serde_json::from_str(&lines[0]).expect("header");
    change(&mut header);
    lines[0] = header.to_string();
    lines.join("\n") + "\n"
}

async fn a_cut_or_damaged_backup_is_refused_and_changes_nothing(store: Store) {
    fill(&store).await;
    let expected = answers(&store).await;
    let file = backup(&store).await;
    let lines: Vec<&str> = file.lines().collect();
    let keep = |n: usize| lines[..n].join("\n") + "\n";
    // The last row of the file, in the last table: a damage found only
    // after every other row went in.
    let last_row = lines.len() - 2;
    assert!(
        !lines[last_row].starts_with(r#"{"table""#),
        "{}",
        lines[last_row]
    );
    let mut garbled = lines.clone();
    garbled[last_row] = r#"{"environment": "production", "flag": "#;
    let mut mistyped = lines.clone();
    let mistyped_row = lines[last_row].replacen(r#""x":"1.5""#, r#""x":"fast""#, 1);
    mistyped[last_row] = &mistyped_row;
    let mut renamed = lines.clone();
    let renamed_row = lines[last_row].replacen(r#""unit":"#, r#""units":"#, 1);
    renamed[last_row] = &renamed_row;

    let cases: Vec<(&str, String, &str)> = vec![
        ("an empty file", String::new(), "the file is empty"),
        (
            "no header",
            lines[1..].join("\n"),
            "line 1 is not the header of a Rollgate backup",
        ),
        (
            "another format",
            with_header(&file, |h| h["format"] = json!("pg_dump")),
            "a `pg_dump` file, not a Rollgate backup",
        ),
        (
            "a newer format",
            with_header(&file, |h| h["format_version"] = json!(2)),
            "format version 2",
        ),
        (
            "a newer schema",
            with_header(&file, |h| h["migration_version"] = json!(9999)),
            "newer Rollgate: its store is at migration 9999",
        ),
        ("only the header", keep(1), "incomplete"),
        ("no end line", keep(lines.len() - 1), "incomplete"),
        (
            "cut within the rows",
            keep(lines.len() * 2 / 3),
            "incomplete",
        ),
        (
            "cut within a line",
            file[..file.len() - 20].to_owned(),
            "is not JSON",
        ),
        (
            "a garbled row",
            garbled.join("\n"),
            "a row of `unit_covariates` is not a JSON object",
        ),
        (
            "a value of the wrong type",
            mistyped.join("\n"),
            r#"`unit_covariates.x`: expected a double, found the string "fast""#,
        ),
        (
            "a column the table line does not list",
            renamed.join("\n"),
            "lacks the column `unit`",
        ),
        (
            "text after the end",
            file.clone() + "{}\n",
            "text after the end line",
        ),
    ];

    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some((_holder, target)) = empty(backend).await else {
            continue;
        };
        for (what, bad, fragment) in &cases {
            match target.restore(bad.as_bytes()).await {
                Err(StoreError::Backup(message)) => {
                    assert!(message.contains(fragment), "{what}: {message}");
                }
                other => panic!("{what} into {backend:?}: expected a refusal, got {other:?}"),
            }
        }
        // Nothing was written: the store is still empty, so the whole
        // backup goes in.
        target
            .restore(file.as_bytes())
            .await
            .expect("the intact backup after the damaged ones");
        assert_same_answers(&expected, &answers(&target).await, &format!("{backend:?}"));
        target.close().await;
    }
}

on_both_backends!(
    a_backup_restores_into_either_backend_and_answers_the_same,
    a_restore_into_a_store_with_data_is_refused_and_changes_nothing,
    a_cut_or_damaged_backup_is_refused_and_changes_nothing,
);
