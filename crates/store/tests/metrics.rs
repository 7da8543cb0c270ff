//! Metric definitions in the store: versioned, audited and validated like
//! flags and segments, in the same transaction.

use store::on_both_backends;
use store::test_support::TEST_ENVIRONMENT as ENV;

use serde_json::json;
use stats::MetricSpec;
use store::{ApplyOptions, AuditFilter, Change, ChangeAction, ItemKind, Store, StoreError};

fn metric(value: serde_json::Value) -> MetricSpec {
    serde_json::from_value(value).expect("metric spec")
}

fn error_rate() -> MetricSpec {
    metric(json!({
        "key": "error_rate", "kind": "ratio", "higher_is_better": false,
        "numerator": "calc_error", "denominator": "calc_request"
    }))
}

fn cache_hit_rate() -> MetricSpec {
    metric(json!({
        "key": "cache_hit_rate", "kind": "ratio",
        "numerator": {"event": "calc_request", "agg": "count", "filter": {"cache_hit": true}},
        "denominator": "calc_request"
    }))
}

fn p95(q: f64) -> MetricSpec {
    metric(json!({
        "key": "response_time_p95", "kind": "quantile", "event": "calc_request", "q": q,
        "higher_is_better": false
    }))
}

async fn apply(store: &Store, changes: Vec<Change>) -> Result<store::ApplyReport, StoreError> {
    store
        .apply(
            ENV,
            changes,
            "tester",
            Some("metrics"),
            ApplyOptions::default(),
        )
        .await
}

fn upserts() -> Vec<Change> {
    vec![
        Change::UpsertMetric(error_rate()),
        Change::UpsertMetric(cache_hit_rate()),
        Change::UpsertMetric(p95(0.95)),
    ]
}

async fn applying_metrics_twice_changes_nothing_the_second_time(store: Store) {
    let first = apply(&store, upserts()).await.expect("first apply");
    assert_eq!(first.revision, 1);
    assert!(first.changes.iter().all(|c| c.kind == ItemKind::Metric
        && c.action == ChangeAction::Created
        && c.version == Some(1)));

    let second = apply(&store, upserts()).await.expect("second apply");
    assert_eq!(second.revision, 1, "no new revision");
    assert!(
        second
            .changes
            .iter()
            .all(|c| c.action == ChangeAction::Unchanged && c.version == Some(1)),
        "{second:?}"
    );

    let listed = store.list_metrics(ENV).await.expect("list");
    let keys: Vec<&str> = listed.iter().map(|m| m.spec.key.as_str()).collect();
    assert_eq!(keys, ["cache_hit_rate", "error_rate", "response_time_p95"]);
    assert_eq!(listed[0].spec, cache_hit_rate());
    assert_eq!(listed[0].version, 1);
    assert_eq!(listed[0].updated_by, "tester");
    assert_eq!(
        store.load_metrics(ENV).await.expect("load"),
        vec![cache_hit_rate(), error_rate(), p95(0.95)]
    );
    let got = store
        .get_metric(ENV, "error_rate")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.spec, error_rate());
    assert!(store.get_metric(ENV, "nope").await.expect("get").is_none());
}

async fn an_invalid_metric_rejects_the_whole_change(store: Store) {
    let flag: flags::FlagSpec = serde_json::from_value(json!({
        "key": "calc-model", "type": "boolean", "off_variant": "off",
        "variants": {"on": true, "off": false}, "default": {"serve": {"variant": "on"}}
    }))
    .expect("flag spec");
    let error = apply(
        &store,
        vec![
            Change::UpsertFlag(flag),
            Change::UpsertMetric(error_rate()),
            Change::UpsertMetric(p95(1.5)),
        ],
    )
    .await
    .expect_err("refused");
    let StoreError::Invalid(problems) = error else {
        panic!("not a validation error: {error}");
    };
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].subject, "metric `response_time_p95`");
    assert_eq!(problems[0].field, "q");
    assert!(
        problems[0]
            .message
            .contains("must be between 0 and 1 exclusive"),
        "{}",
        problems[0].message
    );
    assert!(store.list_metrics(ENV).await.expect("list").is_empty());
    assert!(store.list_flags(ENV).await.expect("list").is_empty());
    let env = store
        .get_environment(ENV)
        .await
        .expect("env")
        .expect("exists");
    assert_eq!(env.revision, 0, "nothing committed");
}

async fn a_metric_named_twice_in_one_change_is_refused(store: Store) {
    let error = apply(
        &store,
        vec![
            Change::UpsertMetric(p95(0.95)),
            Change::UpsertMetric(p95(0.99)),
        ],
    )
    .await
    .expect_err("refused");
    assert!(
        error.to_string().contains("appears more than once"),
        "{error}"
    );
}

async fn metric_history_and_audit_record_every_change(store: Store) {
    apply(&store, vec![Change::UpsertMetric(p95(0.95))])
        .await
        .expect("create");
    let report = apply(&store, vec![Change::UpsertMetric(p95(0.99))])
        .await
        .expect("update");
    assert_eq!(
        (report.changes[0].action, report.changes[0].version),
        (ChangeAction::Updated, Some(2))
    );
    let report = apply(
        &store,
        vec![Change::DeleteMetric("response_time_p95".into())],
    )
    .await
    .expect("delete");
    assert_eq!(
        (report.changes[0].action, report.changes[0].version),
        (ChangeAction::Deleted, Some(3))
    );
    assert!(
        store
            .get_metric(ENV, "response_time_p95")
            .await
            .expect("get")
            .is_none()
    );
    let error = apply(
        &store,
        vec![Change::DeleteMetric("response_time_p95".into())],
    )
    .await
    .expect_err("already deleted");
    assert!(
        matches!(error, StoreError::NotFound { kind: "metric", .. }),
        "{error}"
    );

    // Re-created, it continues its numbering.
    let report = apply(&store, vec![Change::UpsertMetric(p95(0.9))])
        .await
        .expect("re-create");
    assert_eq!(
        (report.changes[0].action, report.changes[0].version),
        (ChangeAction::Created, Some(4))
    );

    let history = store
        .metric_history(ENV, "response_time_p95")
        .await
        .expect("history");
    let summary: Vec<(i64, Option<f64>)> = history
        .iter()
        .map(|v| (v.version, v.spec.as_ref().and_then(|s| s.q)))
        .collect();
    assert_eq!(
        summary,
        [(4, Some(0.9)), (3, None), (2, Some(0.99)), (1, Some(0.95))]
    );
    assert!(history.iter().all(|v| v.author == "tester"));
    assert!(
        history
            .iter()
            .all(|v| v.reason.as_deref() == Some("metrics"))
    );

    let audit = store
        .list_audit(AuditFilter {
            target_kind: Some("metric".into()),
            target_key: Some("response_time_p95".into()),
            ..Default::default()
        })
        .await
        .expect("audit");
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "metric.created",
            "metric.deleted",
            "metric.updated",
            "metric.created"
        ]
    );
    assert_eq!(
        audit[2].before.as_ref().map(|b| &b["q"]),
        Some(&json!(0.95))
    );
    assert_eq!(audit[2].after.as_ref().map(|a| &a["q"]), Some(&json!(0.99)));
    assert_eq!(audit[1].after, None);
}

async fn metrics_are_per_environment(store: Store) {
    store
        .create_environment("staging", "", "tester")
        .await
        .expect("staging");
    apply(&store, upserts()).await.expect("apply");
    assert!(
        store
            .list_metrics("staging")
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(store.list_metrics(ENV).await.expect("list").len(), 3);
}

on_both_backends!(
    applying_metrics_twice_changes_nothing_the_second_time,
    an_invalid_metric_rejects_the_whole_change,
    a_metric_named_twice_in_one_change_is_refused,
    metric_history_and_audit_record_every_change,
    metrics_are_per_environment,
);
