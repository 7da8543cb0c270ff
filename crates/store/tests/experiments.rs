//! Experiment definitions in the store: validated against the flags and
//! metrics of the same change, versioned like every item; and CUPED's
//! pre-exposure values, kept only for a unit's first exposure.

use store::on_both_backends;
use store::test_support::TEST_ENVIRONMENT as ENV;

use serde_json::json;
use stats::{ExperimentSpec, MetricSpec};
use store::{
    ApplyOptions, Change, ChangeAction, CovariateRow, ExposureRow, FoldWrite, HistoryDelta, Store,
    StoreError,
};

fn flag() -> flags::FlagSpec {
    let mut spec: flags::FlagSpec = serde_json::from_value(json!({
        "key": "calc-model", "type": "string", "off_variant": "old",
        "variants": {"old": "v1", "simple": "s", "advanced": "a", "choice": "c", "auto": "x"},
        "default": {"serve": {"variant": "old"}}
    }))
    .expect("flag");
    let mut serve = flags::ServeSpec::split([
        ("simple", 25.0),
        ("advanced", 25.0),
        ("choice", 25.0),
        ("auto", 25.0),
    ]);
    serve.rollout = Some(flags::Weight(25.0));
    serve.otherwise = Some("old".into());
    spec.default.serve = serve;
    spec
}

fn metric(value: serde_json::Value) -> MetricSpec {
    serde_json::from_value(value).expect("metric spec")
}

fn metrics() -> Vec<MetricSpec> {
    vec![
        metric(json!({"key": "converted", "kind": "proportion", "event": "checkout"})),
        metric(json!({"key": "calcs", "kind": "mean", "event": "calc_request", "agg": "count"})),
        metric(
            json!({"key": "error_rate", "kind": "ratio", "numerator": "calc_error",
                      "denominator": "calc_request", "higher_is_better": false}),
        ),
    ]
}

fn experiment(change: impl FnOnce(&mut serde_json::Value)) -> ExperimentSpec {
    let mut value = json!({
        "key": "calc-models", "flag": "calc-model",
        "arms": [
            {"variant": "simple", "weight": 1}, {"variant": "advanced", "weight": 1},
            {"variant": "choice", "weight": 1}, {"variant": "auto", "weight": 1}
        ],
        "primary_metrics": ["converted"], "secondary_metrics": ["calcs"],
        "guardrail_metrics": ["error_rate"], "cuped": true, "sequential": true,
        "auto_select": {"arm": "auto", "among": ["simple", "advanced"], "metric": "converted"}
    });
    change(&mut value);
    serde_json::from_value(value).expect("experiment spec")
}

fn everything(experiment: ExperimentSpec) -> Vec<Change> {
    let mut changes = vec![Change::UpsertFlag(flag())];
    changes.extend(metrics().into_iter().map(Change::UpsertMetric));
    changes.push(Change::UpsertExperiment(experiment));
    changes
}

async fn apply(store: &Store, changes: Vec<Change>) -> Result<store::ApplyReport, StoreError> {
    store
        .apply(ENV, changes, "tester", None, ApplyOptions::default())
        .await
}

/// The problems of a rejected change, as `subject: field: message`.
async fn problems(store: &Store, changes: Vec<Change>) -> Vec<String> {
    match apply(store, changes).await {
        Err(StoreError::Invalid(errors)) => errors.iter().map(ToString::to_string).collect(),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

async fn an_experiment_is_stored_versioned_and_read_back(store: Store) {
    let report = apply(&store, everything(experiment(|_| {})))
        .await
        .expect("apply");
    assert!(
        report
            .changes
            .iter()
            .any(|c| c.kind == store::ItemKind::Experiment
                && c.action == ChangeAction::Created
                && c.version == Some(1))
    );
    let stored = store
        .get_experiment(ENV, "calc-models")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(stored.spec, experiment(|_| {}));
    assert_eq!(stored.spec.alpha, 0.05, "the default alpha");
    assert_eq!(stored.spec.sequential_tuning, 5000.0, "the default tuning");
    // Applying the same again changes nothing.
    let again = apply(&store, everything(experiment(|_| {})))
        .await
        .expect("apply");
    assert!(!again.changed());
    // A metric the experiment uses cannot be deleted from under it.
    let errors = problems(&store, vec![Change::DeleteMetric("calcs".into())]).await;
    assert_eq!(
        errors,
        ["experiment `calc-models`: secondary_metrics[0]: no metric `calcs` is defined"]
    );
    assert_eq!(store.list_experiments(ENV).await.expect("list").len(), 1);
}

async fn bad_experiments_are_rejected_with_every_problem_named(store: Store) {
    let cases: Vec<(ExperimentSpec, Vec<&str>)> = vec![
        (
            experiment(|e| e["flag"] = json!("nope")),
            vec!["experiment `calc-models`: flag: no flag `nope` is defined"],
        ),
        (
            experiment(|e| e["arms"][1]["weight"] = json!(3)),
            vec![
                "experiment `calc-models`: arms: flag `calc-model` has no split that serves exactly these arms in this order with these relative weights (simple 1, advanced 3, choice 1, auto 1); give the flag a split such as `split = { simple = 16.667, advanced = 50, choice = 16.667, auto = 16.667 }`",
            ],
        ),
        (
            experiment(|e| e["arms"][3]["variant"] = json!("turbo")),
            vec![
                "experiment `calc-models`: arms[3].variant: flag `calc-model` has no variant `turbo`; its variants are `old`, `simple`, `advanced`, `choice`, `auto`",
                "experiment `calc-models`: auto_select.arm: `auto` is not an arm of the experiment; its arms are `simple`, `advanced`, `choice`, `turbo`",
            ],
        ),
        (
            experiment(|e| {
                e["arms"] = json!([{"variant": "simple", "weight": 1}]);
                e["auto_select"] = json!(null);
            }),
            vec![
                "experiment `calc-models`: arms: has 1 arms; an experiment has 2 to 8, control first",
            ],
        ),
        (
            experiment(|e| {
                e["alpha"] = json!(0.7);
                e["sequential_tuning"] = json!(0);
                e["primary_metrics"] = json!([]);
                e["secondary_metrics"] = json!(["calcs", "calcs", "latency"]);
            }),
            vec![
                "experiment `calc-models`: alpha: 0.7 must be between 0 and 0.5 (e.g. 0.05)",
                "experiment `calc-models`: sequential_tuning: 0 must be a number of units, at least 1 (e.g. the planned sample size)",
                "experiment `calc-models`: primary_metrics: name at least one metric the experiment is run to move",
                "experiment `calc-models`: secondary_metrics[1]: metric `calcs` is listed twice",
                "experiment `calc-models`: secondary_metrics[2]: no metric `latency` is defined",
                "experiment `calc-models`: auto_select.metric: `converted` is not one of the experiment's metrics",
            ],
        ),
        (
            experiment(|e| e["auto_select"]["among"] = json!(["auto", "old"])),
            vec![
                "experiment `calc-models`: auto_select.among[0]: the selecting arm cannot choose itself",
                "experiment `calc-models`: auto_select.among[1]: `old` is not an arm of the experiment; its arms are `simple`, `advanced`, `choice`, `auto`",
            ],
        ),
    ];
    for (spec, expected) in cases {
        assert_eq!(problems(&store, everything(spec)).await, expected);
    }
    // Nothing of any rejected change was stored.
    assert!(store.list_experiments(ENV).await.expect("list").is_empty());
    assert!(store.list_flags(ENV).await.expect("list").is_empty());
}

fn exposure(unit: &str) -> ExposureRow {
    ExposureRow {
        flag: "calc-model".into(),
        unit: unit.into(),
        variant: "simple".into(),
        first_at_ms: 0,
        conflicting: false,
    }
}

fn history(unit: &str, x: f64) -> HistoryDelta {
    HistoryDelta {
        metric: "calcs".into(),
        unit: unit.into(),
        x,
        y: 0.0,
        events: 1,
    }
}

fn covariate(unit: &str, x: f64) -> CovariateRow {
    CovariateRow {
        flag: "calc-model".into(),
        metric: "calcs".into(),
        unit: unit.into(),
        x,
        y: 0.0,
    }
}

fn fold_write(
    exposures: Vec<ExposureRow>,
    history: Vec<HistoryDelta>,
    covariates: Vec<CovariateRow>,
) -> FoldWrite {
    FoldWrite {
        environment: ENV.into(),
        exposures,
        totals: Vec::new(),
        buckets: Vec::new(),
        history,
        covariates,
    }
}

async fn a_covariate_is_the_history_before_the_first_exposure_only(store: Store) {
    // Fold 1: u-1 does 3 calculations, unexposed; u-2 is exposed after 1 in the fold.
    let first = fold_write(
        vec![exposure("u-2")],
        vec![history("u-1", 3.0), history("u-2", 4.0)],
        vec![covariate("u-2", 1.0)],
    );
    store.write_folds(&[first], 0, 1).await.expect("fold 1");
    // Fold 2: u-1 is exposed after 2 more in this fold (history 3 before it);
    // u-2 shows up again as "new" (a cache miss) with a snapshot that must
    // not replace its first one.
    let second = fold_write(
        vec![exposure("u-1"), exposure("u-2")],
        vec![history("u-1", 5.0), history("u-2", 9.0)],
        vec![covariate("u-1", 2.0), covariate("u-2", 9.0)],
    );
    store.write_folds(&[second], 1, 2).await.expect("fold 2");
    let covariates: Vec<(String, f64)> = store
        .unit_covariates(ENV, "calc-model", "calcs")
        .await
        .expect("read")
        .into_iter()
        .map(|c| (c.unit, c.x))
        .collect();
    assert_eq!(covariates, [("u-1".into(), 5.0), ("u-2".into(), 1.0)]);
}

on_both_backends!(
    an_experiment_is_stored_versioned_and_read_back,
    bad_experiments_are_rejected_with_every_problem_named,
    a_covariate_is_the_history_before_the_first_exposure_only,
);
