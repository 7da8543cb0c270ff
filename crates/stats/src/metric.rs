//! Metric definitions: what users write next to their flags (`[[metrics]]`),
//! how it is checked, and the compiled form that ingestion and the statistics
//! work from.
//!
//! A metric is defined over tracked events. [`MetricSpec`] is the file format
//! (TOML or JSON): one flat record whose fields depend on its `kind`, with
//! every per-kind field optional so that validation can say precisely which
//! field is missing or does not belong, instead of serde's "did not match any
//! variant". [`compile_metrics`] checks a whole set and turns it into
//! [`Metric`]s, whose [`MetricKind`] holds exactly the fields of its kind.
//!
//! Serialisation leaves out defaults and absent fields, and keeps a side of a
//! ratio in the form it was written (a bare event name or a table), so an
//! exported definition reads like the applied one and applying it again
//! changes nothing.

use std::collections::HashSet;
use std::fmt;

use indexmap::IndexMap;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// Longest metric key; the same limit as flag keys.
pub const MAX_METRIC_KEY_LEN: usize = 128;

fn default_true() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// The kinds of metric. The names are part of the file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKindName {
    /// Σ numerator / Σ denominator over units (errors / requests).
    Ratio,
    /// Share of exposed units that sent the event at least once.
    Proportion,
    /// Mean over exposed units of the per-unit count or sum of the event.
    Mean,
    /// Events (or the sum of their values) per variant.
    Count,
    /// A quantile of the event's values (p95 latency), from a sketch.
    Quantile,
    /// Mean and max of reported values per variant over a window (memory, CPU).
    Gauge,
    /// Share of exposed units that send the event again in a window of days
    /// after their first exposure.
    Retention,
    /// Share of minutes in which the service sent events and its error rate
    /// stayed under a budget.
    Uptime,
}

impl MetricKindName {
    pub const ALL: [MetricKindName; 8] = [
        MetricKindName::Ratio,
        MetricKindName::Proportion,
        MetricKindName::Mean,
        MetricKindName::Count,
        MetricKindName::Quantile,
        MetricKindName::Gauge,
        MetricKindName::Retention,
        MetricKindName::Uptime,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MetricKindName::Ratio => "ratio",
            MetricKindName::Proportion => "proportion",
            MetricKindName::Mean => "mean",
            MetricKindName::Count => "count",
            MetricKindName::Quantile => "quantile",
            MetricKindName::Gauge => "gauge",
            MetricKindName::Retention => "retention",
            MetricKindName::Uptime => "uptime",
        }
    }
}

impl fmt::Display for MetricKindName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the events of one unit are folded into the unit's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    /// The number of matching events.
    Count,
    /// The sum of the matching events' values.
    Sum,
}

impl Aggregate {
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregate::Count => "count",
            Aggregate::Sum => "sum",
        }
    }
}

impl fmt::Display for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One metric as written in a config file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    pub key: String,
    pub kind: MetricKindName,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Whether a rise is good news (conversion) or bad (errors, latency).
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub higher_is_better: bool,
    /// `ratio`: the side summed on top.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numerator: Option<SideSpec>,
    /// `ratio`: the side summed below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denominator: Option<SideSpec>,
    /// Every kind but `ratio`: the event measured (for `uptime`, the
    /// service's request event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// `mean` (required) and `count` (default `count`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agg: Option<Aggregate>,
    /// Every kind but `ratio` (whose sides have their own): attribute
    /// equalities an event must satisfy to count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<IndexMap<String, Value>>,
    /// `quantile`: which one, strictly between 0 and 1 (0.95 for p95).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<f64>,
    /// `retention`: the first day after first exposure that counts (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_day: Option<u32>,
    /// `retention`: the day the window ends (exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_day: Option<u32>,
    /// `uptime`: the event a failed request sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_event: Option<String>,
    /// `uptime`: the largest share of errors among requests in a minute that
    /// still counts as up, between 0 and 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<f64>,
}

impl MetricSpec {
    /// A metric of `kind` with only its key set; fill in the fields of the kind.
    pub fn new(key: impl Into<String>, kind: MetricKindName) -> Self {
        MetricSpec {
            key: key.into(),
            kind,
            description: String::new(),
            higher_is_better: true,
            numerator: None,
            denominator: None,
            event: None,
            agg: None,
            filter: None,
            q: None,
            from_day: None,
            to_day: None,
            error_event: None,
            max_error_rate: None,
        }
    }
}

/// A side of a ratio as written: a bare event name (its count), or
/// `{ event, agg = "count" | "sum", filter = { attr = value } }`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SideSpec {
    Event(String),
    Table(SideTable),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SideTable {
    pub event: String,
    /// `count` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agg: Option<Aggregate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<IndexMap<String, Value>>,
}

impl SideSpec {
    pub fn event(&self) -> &str {
        match self {
            SideSpec::Event(event) => event,
            SideSpec::Table(table) => &table.event,
        }
    }
}

// By hand rather than `untagged`, so that a mistake inside the table (an
// unknown field, a bad `agg`) is reported as such.
impl<'de> Deserialize<'de> for SideSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SideVisitor;

        impl<'de> Visitor<'de> for SideVisitor {
            type Value = SideSpec;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an event name or a table `{ event, agg, filter }`")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<SideSpec, E> {
                Ok(SideSpec::Event(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<SideSpec, E> {
                Ok(SideSpec::Event(v))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SideSpec, A::Error> {
                SideTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(SideSpec::Table)
            }
        }

        deserializer.deserialize_any(SideVisitor)
    }
}

/// One problem found in metric definitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricError {
    /// `metric `error_rate``, or `metrics[3]` when the key itself is bad.
    pub subject: String,
    /// Path of the offending field, e.g. `q` or `numerator.filter.cache_hit`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for MetricError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.subject, self.message)
        } else {
            write!(f, "{}: {}: {}", self.subject, self.field, self.message)
        }
    }
}

impl std::error::Error for MetricError {}

/// A checked metric.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    pub key: String,
    pub description: String,
    pub higher_is_better: bool,
    pub kind: MetricKind,
}

/// What a metric computes, with exactly the inputs of its kind.
///
/// For `Quantile` and `Gauge` the side's events contribute their values
/// (`agg` is `Sum`); for `Proportion`, `Retention` and `Uptime` they
/// contribute their presence (`agg` is `Count`).
#[derive(Clone, Debug, PartialEq)]
pub enum MetricKind {
    Ratio {
        numerator: Side,
        denominator: Side,
    },
    Proportion {
        side: Side,
    },
    Mean {
        side: Side,
    },
    Count {
        side: Side,
    },
    Quantile {
        side: Side,
        /// Strictly between 0 and 1.
        q: f64,
    },
    Gauge {
        side: Side,
    },
    /// Units that send the event in `[from_day, to_day)` whole days after
    /// their first exposure, over exposed units.
    Retention {
        side: Side,
        from_day: u32,
        to_day: u32,
    },
    /// Minutes with requests whose error share is at most `max_error_rate`,
    /// over minutes with requests. The filter applies to both sides.
    Uptime {
        requests: Side,
        errors: Side,
        /// Between 0 and 1.
        max_error_rate: f64,
    },
}

impl MetricKind {
    pub fn name(&self) -> MetricKindName {
        match self {
            MetricKind::Ratio { .. } => MetricKindName::Ratio,
            MetricKind::Proportion { .. } => MetricKindName::Proportion,
            MetricKind::Mean { .. } => MetricKindName::Mean,
            MetricKind::Count { .. } => MetricKindName::Count,
            MetricKind::Quantile { .. } => MetricKindName::Quantile,
            MetricKind::Gauge { .. } => MetricKindName::Gauge,
            MetricKind::Retention { .. } => MetricKindName::Retention,
            MetricKind::Uptime { .. } => MetricKindName::Uptime,
        }
    }
}

impl Metric {
    /// Every side of the metric: one, or two for `Ratio` (numerator first)
    /// and `Uptime` (requests first).
    pub fn sides(&self) -> impl Iterator<Item = &Side> {
        let (first, second) = match &self.kind {
            MetricKind::Ratio {
                numerator,
                denominator,
            } => (numerator, Some(denominator)),
            MetricKind::Uptime {
                requests, errors, ..
            } => (requests, Some(errors)),
            MetricKind::Proportion { side }
            | MetricKind::Mean { side }
            | MetricKind::Count { side }
            | MetricKind::Quantile { side, .. }
            | MetricKind::Gauge { side }
            | MetricKind::Retention { side, .. } => (side, None),
        };
        std::iter::once(first).chain(second)
    }
}

/// Which events a metric reads and how a unit's events are folded.
#[derive(Clone, Debug, PartialEq)]
pub struct Side {
    pub event: String,
    pub agg: Aggregate,
    /// Attribute equalities an event must all satisfy; values are scalars.
    pub filter: Vec<(String, Value)>,
}

impl Side {
    /// Whether a tracked event counts towards this side: its name is the
    /// side's event and every filter attribute is present and equal (numbers
    /// compare by value, so 1 equals 1.0).
    pub fn matches(&self, event: &str, attributes: &Map<String, Value>) -> bool {
        event == self.event
            && self.filter.iter().all(|(name, wanted)| {
                attributes
                    .get(name)
                    .is_some_and(|got| scalar_eq(got, wanted))
            })
    }
}

fn scalar_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            },
        },
        _ => a == b,
    }
}

/// Checks metric definitions and compiles them. All or nothing: every
/// problem of every metric is reported, each naming the metric, the field and
/// what is wrong.
pub fn compile_metrics(specs: &[MetricSpec]) -> Result<Vec<Metric>, Vec<MetricError>> {
    let mut errors = Vec::new();
    let mut metrics = Vec::with_capacity(specs.len());
    let mut keys = HashSet::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let mut errs = Errors {
            subject: format!("metric `{}`", spec.key),
            out: &mut errors,
        };
        if let Err(message) = check_metric_key(&spec.key) {
            errs.subject = format!("metrics[{i}]");
            errs.push("key", message);
            continue;
        }
        if !keys.insert(spec.key.as_str()) {
            errs.push("key", "is defined twice");
            continue;
        }
        if let Some(metric) = compile_metric(spec, &mut errs) {
            metrics.push(metric);
        }
    }
    if errors.is_empty() {
        Ok(metrics)
    } else {
        Err(errors)
    }
}

/// Checks a metric key: 1–128 characters of ASCII letters, digits, `-`, `_`
/// and `.`, starting with a letter or digit (the rule of flag keys).
pub fn check_metric_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("must not be empty".into());
    }
    if key.len() > MAX_METRIC_KEY_LEN {
        return Err(format!(
            "is {} characters long; at most {MAX_METRIC_KEY_LEN} are allowed",
            key.len()
        ));
    }
    if !key.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(format!("`{key}` must start with a letter or digit"));
    }
    if let Some(c) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "`{key}` contains `{c}`; use letters, digits, `-`, `_` and `.`"
        ));
    }
    Ok(())
}

/// Collects the problems of one subject (a metric, an experiment).
pub(crate) struct Errors<'a> {
    pub(crate) subject: String,
    pub(crate) out: &'a mut Vec<MetricError>,
}

impl Errors<'_> {
    pub(crate) fn push(&mut self, field: &str, message: impl Into<String>) {
        self.out.push(MetricError {
            subject: self.subject.clone(),
            field: field.to_owned(),
            message: message.into(),
        });
    }
}

/// The per-kind fields of a spec, for "does not belong" checks.
const PER_KIND_FIELDS: [&str; 10] = [
    "numerator",
    "denominator",
    "event",
    "agg",
    "filter",
    "q",
    "from_day",
    "to_day",
    "error_event",
    "max_error_rate",
];

/// The per-kind fields a kind takes.
fn fields_of(kind: MetricKindName) -> &'static [&'static str] {
    match kind {
        MetricKindName::Ratio => &["numerator", "denominator"],
        MetricKindName::Proportion | MetricKindName::Gauge => &["event", "filter"],
        MetricKindName::Mean | MetricKindName::Count => &["event", "agg", "filter"],
        MetricKindName::Quantile => &["event", "filter", "q"],
        MetricKindName::Retention => &["event", "filter", "from_day", "to_day"],
        MetricKindName::Uptime => &["event", "filter", "error_event", "max_error_rate"],
    }
}

fn is_set(spec: &MetricSpec, field: &str) -> bool {
    match field {
        "numerator" => spec.numerator.is_some(),
        "denominator" => spec.denominator.is_some(),
        "event" => spec.event.is_some(),
        "agg" => spec.agg.is_some(),
        "filter" => spec.filter.is_some(),
        "q" => spec.q.is_some(),
        "from_day" => spec.from_day.is_some(),
        "to_day" => spec.to_day.is_some(),
        "error_event" => spec.error_event.is_some(),
        "max_error_rate" => spec.max_error_rate.is_some(),
        _ => false,
    }
}

/// What a missing required field needs, with an example.
fn missing_message(kind: MetricKindName, field: &str) -> String {
    let example = match field {
        "numerator" | "denominator" => {
            r#"an event name, or `{ event = "…", agg = "count" | "sum" }`"#
        }
        "event" => "the name of the tracked event",
        "agg" => "`count` (mean events per unit) or `sum` (mean of the per-unit sums of values)",
        "q" => "the quantile, e.g. 0.95",
        "from_day" | "to_day" => {
            "the window in days after first exposure, e.g. from_day = 7, to_day = 14"
        }
        "error_event" => "the event a failed request sends",
        "max_error_rate" => {
            "the largest error share of a minute that still counts as up, e.g. 0.01"
        }
        _ => "a value",
    };
    format!("a {kind} metric needs `{field}`: {example}")
}

fn compile_metric(spec: &MetricSpec, errs: &mut Errors<'_>) -> Option<Metric> {
    let kind = spec.kind;
    let allowed = fields_of(kind);
    let before = errs.out.len();
    for field in PER_KIND_FIELDS {
        if is_set(spec, field) && !allowed.contains(&field) {
            let users: Vec<&str> = MetricKindName::ALL
                .iter()
                .filter(|k| fields_of(**k).contains(&field))
                .map(|k| k.as_str())
                .collect();
            errs.push(
                field,
                format!(
                    "is not a field of a {kind} metric (it belongs to {} metrics)",
                    users.join(", ")
                ),
            );
        }
    }
    let required: &[&str] = match kind {
        MetricKindName::Ratio => &["numerator", "denominator"],
        MetricKindName::Proportion | MetricKindName::Gauge | MetricKindName::Count => &["event"],
        MetricKindName::Mean => &["event", "agg"],
        MetricKindName::Quantile => &["event", "q"],
        MetricKindName::Retention => &["event", "from_day", "to_day"],
        MetricKindName::Uptime => &["event", "error_event", "max_error_rate"],
    };
    for field in required {
        if !is_set(spec, field) {
            errs.push(field, missing_message(kind, field));
        }
    }
    if errs.out.len() > before {
        return None;
    }

    let kind = match kind {
        MetricKindName::Ratio => {
            let numerator = compile_side_spec(spec.numerator.as_ref()?, "numerator", errs);
            let denominator = compile_side_spec(spec.denominator.as_ref()?, "denominator", errs);
            MetricKind::Ratio {
                numerator: numerator?,
                denominator: denominator?,
            }
        }
        MetricKindName::Proportion => MetricKind::Proportion {
            side: single_side(spec, Aggregate::Count, errs)?,
        },
        MetricKindName::Mean => MetricKind::Mean {
            side: single_side(spec, spec.agg?, errs)?,
        },
        MetricKindName::Count => MetricKind::Count {
            side: single_side(spec, spec.agg.unwrap_or(Aggregate::Count), errs)?,
        },
        MetricKindName::Quantile => {
            let side = single_side(spec, Aggregate::Sum, errs);
            let q = spec.q?;
            if !(q.is_finite() && q > 0.0 && q < 1.0) {
                errs.push("q", format!("is {q}; it must be between 0 and 1 exclusive"));
            }
            MetricKind::Quantile { side: side?, q }
        }
        MetricKindName::Gauge => MetricKind::Gauge {
            side: single_side(spec, Aggregate::Sum, errs)?,
        },
        MetricKindName::Retention => {
            let side = single_side(spec, Aggregate::Count, errs);
            let (from_day, to_day) = (spec.from_day?, spec.to_day?);
            if from_day >= to_day {
                errs.push(
                    "to_day",
                    format!(
                        "is {to_day}, not after from_day {from_day}; the window [from_day, to_day) must hold at least one day"
                    ),
                );
            }
            MetricKind::Retention {
                side: side?,
                from_day,
                to_day,
            }
        }
        MetricKindName::Uptime => {
            let requests = single_side(spec, Aggregate::Count, errs);
            let error_event = spec.error_event.as_deref()?;
            if check_event(error_event, "error_event", errs)
                && spec.event.as_deref() == Some(error_event)
            {
                errs.push(
                    "error_event",
                    "is the same event as `event`; name the event a failed request sends",
                );
            }
            let max_error_rate = spec.max_error_rate?;
            if !(max_error_rate.is_finite() && (0.0..=1.0).contains(&max_error_rate)) {
                errs.push(
                    "max_error_rate",
                    format!("is {max_error_rate}; it must be between 0 and 1"),
                );
            }
            let requests = requests?;
            let errors = Side {
                event: spec.error_event.clone()?,
                agg: Aggregate::Count,
                filter: requests.filter.clone(),
            };
            MetricKind::Uptime {
                requests,
                errors,
                max_error_rate,
            }
        }
    };
    if errs.out.len() > before {
        return None;
    }
    Some(Metric {
        key: spec.key.clone(),
        description: spec.description.clone(),
        higher_is_better: spec.higher_is_better,
        kind,
    })
}

/// The side of a single-event kind: `event` and `filter` of the spec.
fn single_side(spec: &MetricSpec, agg: Aggregate, errs: &mut Errors<'_>) -> Option<Side> {
    let event = spec.event.as_deref()?;
    let event_ok = check_event(event, "event", errs);
    let filter = compile_filter(spec.filter.as_ref(), "filter", errs);
    Some(Side {
        event: event_ok.then(|| event.to_owned())?,
        agg,
        filter: filter?,
    })
}

fn compile_side_spec(side: &SideSpec, field: &str, errs: &mut Errors<'_>) -> Option<Side> {
    match side {
        SideSpec::Event(event) => check_event(event, field, errs).then(|| Side {
            event: event.clone(),
            agg: Aggregate::Count,
            filter: Vec::new(),
        }),
        SideSpec::Table(table) => {
            let event_ok = check_event(&table.event, &format!("{field}.event"), errs);
            let filter = compile_filter(table.filter.as_ref(), &format!("{field}.filter"), errs);
            Some(Side {
                event: event_ok.then(|| table.event.clone())?,
                agg: table.agg.unwrap_or(Aggregate::Count),
                filter: filter?,
            })
        }
    }
}

/// Whether an event name is usable; reports it when not.
fn check_event(event: &str, field: &str, errs: &mut Errors<'_>) -> bool {
    if event.trim().is_empty() {
        errs.push(field, "must name an event; it is empty");
        false
    } else if event.trim() != event {
        errs.push(
            field,
            format!("`{event}` has spaces around it; events are matched by exact name"),
        );
        false
    } else {
        true
    }
}

fn compile_filter(
    filter: Option<&IndexMap<String, Value>>,
    field: &str,
    errs: &mut Errors<'_>,
) -> Option<Vec<(String, Value)>> {
    let Some(filter) = filter else {
        return Some(Vec::new());
    };
    let mut ok = true;
    let mut out = Vec::with_capacity(filter.len());
    for (name, value) in filter {
        if name.is_empty() {
            errs.push(field, "has an empty attribute name");
            ok = false;
            continue;
        }
        match value {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                out.push((name.clone(), value.clone()));
            }
            other => {
                errs.push(
                    &format!("{field}.{name}"),
                    format!(
                        "is {}; a filter compares an attribute with a string, number or boolean",
                        describe(other)
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}
