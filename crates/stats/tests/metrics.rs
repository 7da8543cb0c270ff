//! Metric definitions: the file format of issue 3 parses and compiles to the
//! expected kinds, serialisation round-trips, and every invalid definition is
//! refused with the metric, the field and the problem named.

use serde::Deserialize;
use serde_json::{Map, Value, json};
use stats::{
    Aggregate, Metric, MetricError, MetricKind, MetricKindName, MetricSpec, Side, compile_metrics,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    metrics: Vec<MetricSpec>,
}

/// The metrics of issue 3, as written there.
const ISSUE_TOML: &str = r#"
[[metrics]]
key = "error_rate"
kind = "ratio"                       # Σ numerator / Σ denominator over units (delta method later)
numerator = "calc_error"
denominator = "calc_request"
higher_is_better = false

[[metrics]]
key = "cache_hit_rate"
kind = "ratio"
numerator = { event = "calc_request", agg = "count", filter = { cache_hit = true } }
denominator = "calc_request"

[[metrics]]
key = "response_time_mean"
kind = "ratio"
numerator = { event = "calc_request", agg = "sum" }   # event value = latency in ms
denominator = "calc_request"
higher_is_better = false

[[metrics]]
key = "response_time_p95"
kind = "quantile"
event = "calc_request"
q = 0.95
higher_is_better = false

[[metrics]]
key = "converted"
kind = "proportion"                  # share of exposed units that sent the event at least once
event = "checkout"

[[metrics]]
key = "calculations_per_user"
kind = "mean"                        # mean over exposed units of the per-unit sum (or count)
event = "calc_request"
agg = "count"                        # or "sum" of the event values
"#;

/// The kinds the issue adds in prose.
const MORE_KINDS_TOML: &str = r#"
[[metrics]]
key = "calculations"
kind = "count"
event = "calc_request"

[[metrics]]
key = "memory_mb"
kind = "gauge"
event = "memory_usage"
filter = { model = "advanced" }
higher_is_better = false

[[metrics]]
key = "retention_7d"
kind = "retention"
event = "session_start"
from_day = 7
to_day = 14

[[metrics]]
key = "uptime"
kind = "uptime"
event = "calc_request"
error_event = "calc_error"
max_error_rate = 0.01
"#;

fn parse(text: &str) -> Vec<MetricSpec> {
    toml::from_str::<File>(text)
        .unwrap_or_else(|e| panic!("{e}"))
        .metrics
}

fn side(event: &str, agg: Aggregate, filter: &[(&str, Value)]) -> Side {
    Side {
        event: event.to_owned(),
        agg,
        filter: filter
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    }
}

fn count(event: &str) -> Side {
    side(event, Aggregate::Count, &[])
}

#[track_caller]
fn compiled(text: &str) -> Vec<Metric> {
    compile_metrics(&parse(text)).unwrap_or_else(|errors| panic!("{errors:?}"))
}

#[test]
fn the_issue_metrics_compile_as_written() {
    let metrics = compiled(ISSUE_TOML);
    let got: Vec<(&str, bool, &MetricKind)> = metrics
        .iter()
        .map(|m| (m.key.as_str(), m.higher_is_better, &m.kind))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "error_rate",
                false,
                &MetricKind::Ratio {
                    numerator: count("calc_error"),
                    denominator: count("calc_request"),
                }
            ),
            (
                "cache_hit_rate",
                true,
                &MetricKind::Ratio {
                    numerator: side(
                        "calc_request",
                        Aggregate::Count,
                        &[("cache_hit", json!(true))]
                    ),
                    denominator: count("calc_request"),
                }
            ),
            (
                "response_time_mean",
                false,
                &MetricKind::Ratio {
                    numerator: side("calc_request", Aggregate::Sum, &[]),
                    denominator: count("calc_request"),
                }
            ),
            (
                "response_time_p95",
                false,
                &MetricKind::Quantile {
                    side: side("calc_request", Aggregate::Sum, &[]),
                    q: 0.95,
                }
            ),
            (
                "converted",
                true,
                &MetricKind::Proportion {
                    side: count("checkout")
                }
            ),
            (
                "calculations_per_user",
                true,
                &MetricKind::Mean {
                    side: count("calc_request")
                }
            ),
        ]
    );
}

#[test]
fn count_gauge_retention_and_uptime_compile() {
    let metrics = compiled(MORE_KINDS_TOML);
    let kinds: Vec<&MetricKind> = metrics.iter().map(|m| &m.kind).collect();
    assert_eq!(
        kinds,
        vec![
            &MetricKind::Count {
                side: count("calc_request")
            },
            &MetricKind::Gauge {
                side: side(
                    "memory_usage",
                    Aggregate::Sum,
                    &[("model", json!("advanced"))]
                )
            },
            &MetricKind::Retention {
                side: count("session_start"),
                from_day: 7,
                to_day: 14
            },
            &MetricKind::Uptime {
                requests: count("calc_request"),
                errors: count("calc_error"),
                max_error_rate: 0.01
            },
        ]
    );
    assert_eq!(metrics[3].kind.name(), MetricKindName::Uptime);
    let sides: Vec<&str> = metrics[3].sides().map(|s| s.event.as_str()).collect();
    assert_eq!(sides, ["calc_request", "calc_error"]);
}

#[test]
fn serialisation_round_trips_and_leaves_out_defaults() {
    for text in [ISSUE_TOML, MORE_KINDS_TOML] {
        let specs = parse(text);
        let json = serde_json::to_value(&specs).expect("serialises");
        let back: Vec<MetricSpec> = serde_json::from_value(json.clone()).expect("reads back");
        assert_eq!(back, specs);
        assert_eq!(serde_json::to_value(&back).expect("serialises"), json);
    }
    let specs = parse(ISSUE_TOML);
    assert_eq!(
        serde_json::to_value(&specs[0]).expect("serialises"),
        json!({"key": "error_rate", "kind": "ratio", "higher_is_better": false,
               "numerator": "calc_error", "denominator": "calc_request"})
    );
    assert_eq!(
        serde_json::to_value(&specs[1]).expect("serialises"),
        json!({"key": "cache_hit_rate", "kind": "ratio",
               "numerator": {"event": "calc_request", "agg": "count", "filter": {"cache_hit": true}},
               "denominator": "calc_request"})
    );
}

#[test]
fn filters_match_attribute_equalities() {
    let s = side(
        "calc_request",
        Aggregate::Count,
        &[
            ("cache_hit", json!(true)),
            ("tier", json!(1)),
            ("model", json!("advanced")),
        ],
    );
    let attrs = |v: Value| -> Map<String, Value> {
        match v {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    };
    let hit = attrs(json!({"cache_hit": true, "tier": 1.0, "model": "advanced", "extra": [1]}));
    assert!(s.matches("calc_request", &hit));
    assert!(!s.matches("calc_error", &hit));
    assert!(!s.matches(
        "calc_request",
        &attrs(json!({"cache_hit": false, "tier": 1, "model": "advanced"}))
    ));
    assert!(!s.matches(
        "calc_request",
        &attrs(json!({"cache_hit": true, "tier": "1", "model": "advanced"}))
    ));
    assert!(!s.matches(
        "calc_request",
        &attrs(json!({"cache_hit": true, "model": "advanced"}))
    ));
    assert!(count("x").matches("x", &Map::new()));
}

/// One invalid definition: the TOML of one `[[metrics]]` entry, and the
/// subject, field and a piece of the message of the error expected first.
#[track_caller]
fn check_invalid(entry: &str, subject: &str, field: &str, message: &str) {
    let text = format!("[[metrics]]\n{entry}\n");
    let errors: Vec<MetricError> = match toml::from_str::<File>(&text) {
        Ok(file) => compile_metrics(&file.metrics).expect_err("refused"),
        Err(e) => panic!("{entry}: does not parse: {e}"),
    };
    let found = errors
        .iter()
        .any(|e| e.subject == subject && e.field == field && e.message.contains(message));
    assert!(
        found,
        "{entry}\nexpected {subject}: {field}: …{message}…\ngot {errors:#?}"
    );
}

#[test]
fn invalid_definitions_name_the_metric_field_and_problem() {
    let cases: &[(&str, &str, &str, &str)] = &[
        // Keys.
        (
            "key = \"\"\nkind = \"count\"\nevent = \"e\"",
            "metrics[0]",
            "key",
            "must not be empty",
        ),
        (
            "key = \"a b\"\nkind = \"count\"\nevent = \"e\"",
            "metrics[0]",
            "key",
            "contains ` `",
        ),
        (
            "key = \"-x\"\nkind = \"count\"\nevent = \"e\"",
            "metrics[0]",
            "key",
            "must start with a letter or digit",
        ),
        // Fields that belong to another kind.
        (
            "key = \"r\"\nkind = \"ratio\"\nnumerator = \"a\"\ndenominator = \"b\"\nq = 0.5",
            "metric `r`",
            "q",
            "is not a field of a ratio metric",
        ),
        (
            "key = \"r\"\nkind = \"ratio\"\nnumerator = \"a\"\ndenominator = \"b\"\nevent = \"c\"",
            "metric `r`",
            "event",
            "is not a field of a ratio metric",
        ),
        (
            "key = \"r\"\nkind = \"ratio\"\nnumerator = \"a\"\ndenominator = \"b\"\nfilter = { x = 1 }",
            "metric `r`",
            "filter",
            "is not a field of a ratio metric",
        ),
        (
            "key = \"p\"\nkind = \"proportion\"\nevent = \"e\"\nagg = \"sum\"",
            "metric `p`",
            "agg",
            "is not a field of a proportion metric",
        ),
        (
            "key = \"q\"\nkind = \"quantile\"\nevent = \"e\"\nq = 0.5\nnumerator = \"a\"",
            "metric `q`",
            "numerator",
            "is not a field of a quantile metric",
        ),
        (
            "key = \"g\"\nkind = \"gauge\"\nevent = \"e\"\nfrom_day = 1",
            "metric `g`",
            "from_day",
            "is not a field of a gauge metric",
        ),
        (
            "key = \"c\"\nkind = \"count\"\nevent = \"e\"\nmax_error_rate = 0.1",
            "metric `c`",
            "max_error_rate",
            "is not a field of a count metric",
        ),
        // Missing fields.
        (
            "key = \"r\"\nkind = \"ratio\"\nnumerator = \"a\"",
            "metric `r`",
            "denominator",
            "a ratio metric needs `denominator`",
        ),
        (
            "key = \"q\"\nkind = \"quantile\"\nevent = \"e\"",
            "metric `q`",
            "q",
            "a quantile metric needs `q`",
        ),
        (
            "key = \"m\"\nkind = \"mean\"\nevent = \"e\"",
            "metric `m`",
            "agg",
            "a mean metric needs `agg`",
        ),
        (
            "key = \"p\"\nkind = \"proportion\"",
            "metric `p`",
            "event",
            "a proportion metric needs `event`",
        ),
        (
            "key = \"t\"\nkind = \"retention\"\nevent = \"e\"\nfrom_day = 7",
            "metric `t`",
            "to_day",
            "needs `to_day`",
        ),
        (
            "key = \"u\"\nkind = \"uptime\"\nevent = \"e\"\nmax_error_rate = 0.1",
            "metric `u`",
            "error_event",
            "needs `error_event`",
        ),
        // Values out of range.
        (
            "key = \"q\"\nkind = \"quantile\"\nevent = \"e\"\nq = 1.0",
            "metric `q`",
            "q",
            "must be between 0 and 1 exclusive",
        ),
        (
            "key = \"q\"\nkind = \"quantile\"\nevent = \"e\"\nq = 0",
            "metric `q`",
            "q",
            "must be between 0 and 1 exclusive",
        ),
        (
            "key = \"t\"\nkind = \"retention\"\nevent = \"e\"\nfrom_day = 7\nto_day = 7",
            "metric `t`",
            "to_day",
            "not after from_day 7",
        ),
        (
            "key = \"u\"\nkind = \"uptime\"\nevent = \"e\"\nerror_event = \"f\"\nmax_error_rate = 1.5",
            "metric `u`",
            "max_error_rate",
            "must be between 0 and 1",
        ),
        (
            "key = \"u\"\nkind = \"uptime\"\nevent = \"e\"\nerror_event = \"e\"\nmax_error_rate = 0.1",
            "metric `u`",
            "error_event",
            "is the same event as `event`",
        ),
        // Events and filters.
        (
            "key = \"c\"\nkind = \"count\"\nevent = \"\"",
            "metric `c`",
            "event",
            "must name an event",
        ),
        (
            "key = \"r\"\nkind = \"ratio\"\nnumerator = \"\"\ndenominator = \"b\"",
            "metric `r`",
            "numerator",
            "must name an event",
        ),
        (
            "key = \"r\"\nkind = \"ratio\"\nnumerator = { event = \" \" }\ndenominator = \"b\"",
            "metric `r`",
            "numerator.event",
            "must name an event",
        ),
        (
            "key = \"r\"\nkind = \"ratio\"\nnumerator = { event = \"a\", filter = { tags = [1] } }\ndenominator = \"b\"",
            "metric `r`",
            "numerator.filter.tags",
            "is a list",
        ),
        (
            "key = \"c\"\nkind = \"count\"\nevent = \"e\"\nfilter = { nested = { a = 1 } }",
            "metric `c`",
            "filter.nested",
            "is a table",
        ),
    ];
    for (entry, subject, field, message) in cases {
        check_invalid(entry, subject, field, message);
    }
}

#[test]
fn duplicate_keys_are_refused() {
    let specs = parse(
        "[[metrics]]\nkey = \"a\"\nkind = \"count\"\nevent = \"e\"\n\n[[metrics]]\nkey = \"a\"\nkind = \"count\"\nevent = \"f\"\n",
    );
    let errors = compile_metrics(&specs).expect_err("refused");
    assert_eq!(
        errors,
        vec![MetricError {
            subject: "metric `a`".to_owned(),
            field: "key".to_owned(),
            message: "is defined twice".to_owned(),
        }]
    );
    assert_eq!(errors[0].to_string(), "metric `a`: key: is defined twice");
}

#[test]
fn every_problem_of_every_metric_is_reported() {
    let specs = parse(
        "[[metrics]]\nkey = \"a\"\nkind = \"quantile\"\nevent = \"\"\nq = 2.0\n\n[[metrics]]\nkey = \"b\"\nkind = \"mean\"\nevent = \"e\"\n",
    );
    let errors = compile_metrics(&specs).expect_err("refused");
    let fields: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e.subject.as_str(), e.field.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            ("metric `a`", "event"),
            ("metric `a`", "q"),
            ("metric `b`", "agg")
        ]
    );
}

#[test]
fn serde_refuses_unknown_fields_kinds_and_aggregates() {
    for (entry, expected) in [
        (
            "key = \"a\"\nkind = \"count\"\nevent = \"e\"\nevnt = \"x\"",
            "unknown field `evnt`",
        ),
        (
            "key = \"a\"\nkind = \"median\"\nevent = \"e\"",
            "unknown variant `median`",
        ),
        (
            "key = \"a\"\nkind = \"mean\"\nevent = \"e\"\nagg = \"avg\"",
            "unknown variant `avg`",
        ),
        (
            "key = \"a\"\nkind = \"ratio\"\nnumerator = { event = \"e\", aggregate = \"sum\" }\ndenominator = \"d\"",
            "unknown field `aggregate`",
        ),
        (
            "key = \"a\"\nkind = \"ratio\"\nnumerator = 3\ndenominator = \"d\"",
            "an event name or a table",
        ),
    ] {
        let error = toml::from_str::<File>(&format!("[[metrics]]\n{entry}\n"))
            .err()
            .unwrap_or_else(|| panic!("{entry}: accepted"))
            .to_string();
        assert!(error.contains(expected), "{entry}: {error}");
    }
}

#[test]
fn json_sides_read_like_toml_ones() {
    let spec: MetricSpec = serde_json::from_value(json!({
        "key": "hits", "kind": "ratio",
        "numerator": {"event": "req", "filter": {"cache_hit": true}},
        "denominator": "req"
    }))
    .expect("reads");
    let metric = compile_metrics(&[spec]).expect("compiles").remove(0);
    assert_eq!(
        metric.kind,
        MetricKind::Ratio {
            numerator: side("req", Aggregate::Count, &[("cache_hit", json!(true))]),
            denominator: count("req"),
        }
    );
}
