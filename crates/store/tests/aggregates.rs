//! Folds written to the aggregates, on both backends: time buckets with and
//! without a maximum, in any order.

use store::test_support::TEST_ENVIRONMENT as ENV;
use store::{BucketRow, FoldWrite, Store, on_both_backends};

fn bucket(metric: &str, start_ms: i64, x: f64, max_value: Option<f64>) -> BucketRow {
    BucketRow {
        flag: "calc-model".into(),
        variant: "advanced".into(),
        metric: metric.into(),
        resolution: "1m".into(),
        start_ms,
        x,
        y: 1.0,
        events: 1,
        max_value,
        sketch: None,
    }
}

fn fold(buckets: Vec<BucketRow>) -> FoldWrite {
    FoldWrite {
        environment: ENV.into(),
        exposures: Vec::new(),
        totals: Vec::new(),
        buckets,
        history: Vec::new(),
        covariates: Vec::new(),
    }
}

async fn buckets_with_and_without_a_maximum_interleave(store: Store) {
    // A count (no maximum) first, then a gauge (a maximum), then again: the
    // same statement with a NULL and with a value for the maximum, one after
    // the other on the same connection.
    let folds = [
        fold(vec![bucket("requests", 60_000, 1.0, None)]),
        fold(vec![bucket("memory_mb", 60_000, 512.0, Some(512.0))]),
        fold(vec![bucket("requests", 60_000, 2.0, None)]),
        fold(vec![bucket("memory_mb", 60_000, 700.0, Some(700.0))]),
        fold(vec![bucket("memory_mb", 120_000, 0.25, Some(0.25))]),
    ];
    for (i, f) in folds.into_iter().enumerate() {
        let from = i as i64;
        store
            .write_folds(&[f], from, from + 1)
            .await
            .unwrap_or_else(|e| panic!("fold {from}: {e}"));
    }
    let read = |metric: &'static str| {
        let store = store.clone();
        async move {
            store
                .metric_buckets(ENV, "calc-model", metric, "1m", 0, i64::MAX)
                .await
                .expect("read")
                .into_iter()
                .map(|b| (b.start_ms, b.x, b.max_value))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(read("requests").await, vec![(60_000, 3.0, None)]);
    assert_eq!(
        read("memory_mb").await,
        vec![(60_000, 1212.0, Some(700.0)), (120_000, 0.25, Some(0.25))]
    );
}

on_both_backends!(buckets_with_and_without_a_maximum_interleave);
