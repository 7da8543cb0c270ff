//! Folding is additive: folding events in parts and adding the totals equals
//! folding them all at once, and both agree with a brute-force computation.

use std::collections::{BTreeMap, HashMap};

use ingest::Event;
use ingest::fold::{Exposures, Folded, TotalKey, fold, fold_tracking};
use proptest::prelude::*;
use serde_json::json;

fn metrics() -> Vec<stats::Metric> {
    let specs: Vec<stats::MetricSpec> = serde_json::from_value(json!([
        {"key": "error_rate", "kind": "ratio", "numerator": "calc_error", "denominator": "calc_request", "higher_is_better": false},
        {"key": "cache_hit_rate", "kind": "ratio",
         "numerator": {"event": "calc_request", "agg": "count", "filter": {"cache_hit": true}}, "denominator": "calc_request"},
        {"key": "latency_mean", "kind": "ratio", "numerator": {"event": "calc_request", "agg": "sum"}, "denominator": "calc_request"},
        {"key": "calcs", "kind": "mean", "event": "calc_request", "agg": "count"}
    ]))
    .expect("metric specs");
    stats::compile_metrics(&specs).expect("metrics compile")
}

/// Generated events: exposures to one flag with two variants, and track events.
fn event_strategy() -> impl Strategy<Value = Event> {
    let unit = (0u8..12).prop_map(|u| format!("u-{u}"));
    prop_oneof![
        (unit.clone(), prop::bool::ANY, 0i64..1000).prop_map(|(unit, treat, t)| Event::Exposure {
            flag: "calc-model".into(),
            variant: if treat { "advanced" } else { "simple" }.into(),
            unit,
            at_ms: t,
        }),
        (unit, 0u8..3, 0u32..500, prop::bool::ANY, 0i64..2000).prop_map(
            |(unit, kind, value, hit, t)| {
                let name = ["calc_request", "calc_error", "other"][usize::from(kind)];
                let mut attributes = serde_json::Map::new();
                attributes.insert("cache_hit".into(), json!(hit));
                Event::Track {
                    name: name.into(),
                    unit,
                    value: Some(f64::from(value)),
                    at_ms: t,
                    attributes,
                    flag: None,
                    variant: None,
                }
            }
        ),
    ]
}

fn totals(folded: &Folded) -> BTreeMap<TotalKey, (f64, f64, i64)> {
    folded
        .totals
        .iter()
        .map(|(k, d)| (k.clone(), (d.x, d.y, d.events)))
        .collect()
}

/// An independent reading of the rules: first exposure wins; a track event
/// counts when at or after the exposure (less the skew).
fn brute_force(events: &[Event]) -> BTreeMap<(String, String), (f64, f64)> {
    let mut first: HashMap<String, (String, i64)> = HashMap::new();
    let mut out: BTreeMap<(String, String), (f64, f64)> = BTreeMap::new();
    for e in events {
        match e {
            Event::Exposure {
                variant,
                unit,
                at_ms,
                ..
            } => {
                first
                    .entry(unit.clone())
                    .or_insert((variant.clone(), *at_ms));
            }
            Event::Track {
                name, unit, at_ms, ..
            } => {
                if let Some((variant, exposed_at)) = first.get(unit)
                    && *at_ms >= exposed_at - ingest::fold::ATTRIBUTION_SKEW_MS
                {
                    let entry = out.entry((variant.clone(), unit.clone())).or_default();
                    if name == "calc_error" {
                        entry.0 += 1.0;
                    }
                    if name == "calc_request" {
                        entry.1 += 1.0;
                    }
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn folding_in_parts_equals_folding_at_once(events in prop::collection::vec(event_strategy(), 0..200), cut in 0usize..200) {
        let metrics = metrics();
        let cut = cut.min(events.len());
        let mut known = Exposures::new();
        let all = fold(&events, &metrics, &mut known);

        let mut known = Exposures::new();
        let mut parts = fold(&events[..cut], &metrics, &mut known);
        parts.merge(fold(&events[cut..], &metrics, &mut known));

        let (a, b) = (totals(&all), totals(&parts));
        prop_assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        for (key, (x, y, n)) in &a {
            let (x2, y2, n2) = b[key];
            prop_assert!((x - x2).abs() < 1e-9 && (y - y2).abs() < 1e-9 && *n == n2, "{key:?}");
        }

        let expected = brute_force(&events);
        let got: BTreeMap<(String, String), (f64, f64)> = a
            .iter()
            .filter(|(k, _)| k.metric == "error_rate")
            .map(|(k, (x, y, _))| ((k.variant.clone(), k.unit.clone()), (*x, *y)))
            .collect();
        let expected: BTreeMap<_, _> = expected.into_iter().filter(|(_, (x, y))| *x > 0.0 || *y > 0.0).collect();
        prop_assert_eq!(got, expected);
    }
}

/// Brute force for CUPED's covariate of the `calcs` metric (count of
/// `calc_request`): per unit, its requests before its first exposure.
fn brute_force_covariates(events: &[Event]) -> BTreeMap<String, f64> {
    let mut requests: HashMap<String, f64> = HashMap::new();
    let mut out = BTreeMap::new();
    for e in events {
        match e {
            Event::Exposure { unit, .. } => {
                if !out.contains_key(unit) {
                    out.insert(unit.clone(), requests.get(unit).copied().unwrap_or(0.0));
                }
            }
            Event::Track { name, unit, .. } if name == "calc_request" => {
                *requests.entry(unit.clone()).or_default() += 1.0;
            }
            Event::Track { .. } => {}
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The pre-exposure value of a tracked metric: folded at once or in two
    /// parts (the second part's snapshots plus the first part's history, as
    /// the store adds them), it is each unit's events before its first
    /// exposure; the history is every matching event.
    #[test]
    fn covariates_are_the_history_before_first_exposure(events in prop::collection::vec(event_strategy(), 0..200), cut in 0usize..200) {
        let metrics = metrics();
        let calcs = metrics.iter().position(|m| m.key == "calcs").expect("calcs metric");
        // A ratio metric cannot be tracked and is ignored.
        let tracked = [calcs, 0];
        let cut = cut.min(events.len());
        let expected = brute_force_covariates(&events);
        let all = fold_tracking(&events, &metrics, &tracked, &mut Exposures::new());
        let mut known = Exposures::new();
        let mut parts = fold_tracking(&events[..cut], &metrics, &tracked, &mut known);
        parts.merge(fold_tracking(&events[cut..], &metrics, &tracked, &mut known));
        for folded in [&all, &parts] {
            let got: BTreeMap<String, f64> = folded
                .covariates
                .iter()
                .map(|c| {
                    assert_eq!(c.metric, "calcs");
                    (c.unit.clone(), c.before.x)
                })
                .collect();
            prop_assert_eq!(got.len(), folded.covariates.len(), "one covariate per unit");
            prop_assert_eq!(&got, &expected);
            let requests = events
                .iter()
                .filter(|e| matches!(e, Event::Track { name, .. } if name == "calc_request"))
                .count() as f64;
            let history: f64 = folded.history.values().map(|d| d.x).sum();
            prop_assert_eq!(history, requests);
        }
    }
}

#[test]
fn a_unit_in_two_variants_stays_with_its_first_and_is_marked() {
    let events = vec![
        Event::Exposure {
            flag: "f".into(),
            variant: "a".into(),
            unit: "u".into(),
            at_ms: 0,
        },
        Event::Exposure {
            flag: "f".into(),
            variant: "b".into(),
            unit: "u".into(),
            at_ms: 10,
        },
        Event::Track {
            name: "calc_request".into(),
            unit: "u".into(),
            value: Some(5.0),
            at_ms: 20,
            attributes: Default::default(),
            flag: None,
            variant: None,
        },
    ];
    let folded = fold(&events, &metrics(), &mut Exposures::new());
    assert_eq!(folded.exposures.len(), 2);
    assert!(!folded.exposures[0].conflicting && folded.exposures[1].conflicting);
    assert_eq!(
        folded.exposures[1].variant, "a",
        "the conflict row keeps the first variant"
    );
    assert!(folded.totals.keys().all(|k| k.variant == "a"));
}

#[test]
fn events_that_name_their_variant_are_attributed_to_it() {
    let events = vec![Event::Track {
        name: "calc_request".into(),
        unit: "pod-7".into(),
        value: Some(120.0),
        at_ms: 0,
        attributes: Default::default(),
        flag: Some("calc-model".into()),
        variant: Some("advanced".into()),
    }];
    let folded = fold(&events, &metrics(), &mut Exposures::new());
    let key = TotalKey {
        flag: "calc-model".into(),
        variant: "advanced".into(),
        metric: "latency_mean".into(),
        unit: "pod-7".into(),
    };
    assert_eq!(folded.totals[&key].x, 120.0);
    assert_eq!(folded.totals[&key].y, 1.0);
}
