//! The controller's writes: a step's flag change, state and incidents commit
//! together, only over the state the step read, and are audited under the
//! step's actor.

use store::on_both_backends;
use store::test_support::TEST_ENVIRONMENT as ENV;

use serde_json::json;
use store::{ApplyOptions, AuditFilter, Change, NewIncident, StepCommit, Store, StoreError};

fn flag(serve: serde_json::Value) -> flags::FlagSpec {
    serde_json::from_value(json!({
        "key": "calc-model", "type": "string", "off_variant": "simple",
        "variants": {"simple": "s", "advanced": "a"},
        "default": {"serve": serve}
    }))
    .expect("flag")
}

fn step<'a>(
    read_version: Option<i64>,
    state: &str,
    flag_change: Option<flags::FlagSpec>,
) -> StepCommit<'a> {
    StepCommit {
        environment: ENV,
        flag: "calc-model",
        read_version,
        state: state.to_owned(),
        flag_change,
        incidents: Vec::new(),
        new_window: false,
        actor: "controller",
        reason: Some("phase beta"),
    }
}

async fn a_step_commits_its_flag_change_state_and_incidents_together(store: Store) {
    store
        .apply(
            ENV,
            vec![Change::UpsertFlag(flag(json!({"variant": "simple"})))],
            "admin",
            None,
            ApplyOptions::default(),
        )
        .await
        .expect("apply");
    assert!(
        store
            .rollout_state(ENV, "calc-model")
            .await
            .expect("read")
            .is_none()
    );

    // Start: 5% treatment.
    let five = flag(json!({"split": {"advanced": 5, "simple": 95}}));
    let started = store
        .commit_rollout_step(step(None, r#"{"status":"running"}"#, Some(five.clone())))
        .await
        .expect("start");
    assert_eq!(started.version, 1);
    assert_eq!(started.revision, Some(2));
    let stored = store
        .get_flag(ENV, "calc-model")
        .await
        .expect("read")
        .expect("flag");
    assert_eq!(stored.spec, five);
    assert_eq!(stored.updated_by, "controller");

    // A step computed from a stale state writes nothing.
    let stale = store
        .commit_rollout_step(step(
            None,
            r#"{"status":"paused"}"#,
            Some(flag(json!({"variant": "simple"}))),
        ))
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    assert_eq!(
        store
            .get_flag(ENV, "calc-model")
            .await
            .expect("read")
            .expect("flag")
            .spec,
        five
    );

    // Roll back: control for everyone, an incident with its evidence.
    let mut rollback = step(
        Some(1),
        r#"{"status":"rolled_back"}"#,
        Some(flag(json!({"variant": "simple"}))),
    );
    rollback.incidents.push(NewIncident {
        kind: "guard".into(),
        severity: "critical".into(),
        level: "L2".into(),
        title: "error_rate above 2%".into(),
        summary: "Rolled back in phase `beta`.".into(),
        evidence: Some(json!({"metric": "error_rate", "limit": 0.02, "interval": [0.03, 0.05]})),
    });
    let rolled = store.commit_rollout_step(rollback).await.expect("rollback");
    assert_eq!(rolled.version, 2);
    assert_eq!(rolled.incidents.len(), 1);
    let state = store
        .rollout_state(ENV, "calc-model")
        .await
        .expect("read")
        .expect("state");
    assert_eq!(
        (state.state.as_str(), state.version),
        (r#"{"status":"rolled_back"}"#, 2)
    );
    let incidents = store
        .incidents(ENV, &by_flag("calc-model"))
        .await
        .expect("incidents");
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].id, rolled.incidents[0]);
    assert_eq!(incidents[0].opened_by, "controller");
    assert_eq!(
        incidents[0].evidence.as_ref().expect("evidence")["limit"],
        json!(0.02)
    );
    assert!(
        store
            .incidents(ENV, &by_flag("other"))
            .await
            .expect("incidents")
            .is_empty()
    );

    // The audit log says the controller did it, and why.
    let audit = store
        .list_audit(AuditFilter {
            actor: Some("controller".into()),
            ..AuditFilter::default()
        })
        .await
        .expect("audit");
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["incident.opened", "flag.updated", "flag.updated"]);
    assert!(
        audit
            .iter()
            .all(|e| e.reason.as_deref() == Some("phase beta"))
    );

    // A step without a flag change only moves the state.
    let quiet = store
        .commit_rollout_step(step(Some(2), r#"{"status":"rolled_back","note":1}"#, None))
        .await
        .expect("state only");
    assert_eq!((quiet.version, quiet.revision), (3, None));
}

async fn an_invalid_flag_change_of_a_step_writes_nothing(store: Store) {
    let bad = flag(json!({"split": {"advanced": 5, "simple": 90}}));
    let result = store
        .commit_rollout_step(step(None, r#"{"status":"running"}"#, Some(bad)))
        .await;
    assert!(matches!(result, Err(StoreError::Invalid(_))), "{result:?}");
    assert!(
        store
            .rollout_state(ENV, "calc-model")
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        store
            .get_flag(ENV, "calc-model")
            .await
            .expect("read")
            .is_none()
    );
}

async fn a_new_window_counts_only_what_came_after_it(store: Store) {
    let fold = |x: f64, unit: &str| store::FoldWrite {
        environment: ENV.into(),
        exposures: Vec::new(),
        totals: vec![store::TotalDelta {
            flag: "calc-model".into(),
            variant: "advanced".into(),
            metric: "errors".into(),
            unit: unit.into(),
            x,
            y: 10.0,
            events: 11,
        }],
        buckets: Vec::new(),
        history: Vec::new(),
        covariates: Vec::new(),
    };
    store
        .write_folds(&[fold(5.0, "u-1")], 0, 1)
        .await
        .expect("fold");
    let mut start = step(None, r#"{"status":"running"}"#, None);
    start.new_window = true;
    store.commit_rollout_step(start).await.expect("start");
    let window = store
        .unit_totals_in_window(ENV, "calc-model", "errors")
        .await
        .expect("window");
    assert!(
        window.is_empty(),
        "nothing since the window opened: {window:?}"
    );
    store
        .write_folds(&[fold(1.0, "u-1"), fold(2.0, "u-2")], 1, 2)
        .await
        .expect("fold");
    let window: Vec<(String, f64, f64, i64)> = store
        .unit_totals_in_window(ENV, "calc-model", "errors")
        .await
        .expect("window")
        .into_iter()
        .map(|t| (t.unit, t.x, t.y, t.events))
        .collect();
    assert_eq!(
        window,
        [("u-1".into(), 1.0, 10.0, 11), ("u-2".into(), 2.0, 10.0, 11)]
    );
    // The running totals are untouched.
    let all = store
        .unit_totals(ENV, "calc-model", "errors")
        .await
        .expect("totals");
    assert_eq!(all[0].x, 6.0);
}

on_both_backends!(
    a_step_commits_its_flag_change_state_and_incidents_together,
    an_invalid_flag_change_of_a_step_writes_nothing,
    a_new_window_counts_only_what_came_after_it,
);

fn by_flag(flag: &str) -> store::IncidentFilter {
    store::IncidentFilter {
        flag: Some(flag.to_owned()),
        ..Default::default()
    }
}
