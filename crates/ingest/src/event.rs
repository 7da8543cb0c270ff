//! Events as applications send them, and the checks a batch must pass before
//! anything of it is stored.
//!
//! A batch is all-or-nothing: the first invalid event rejects it, and the
//! error names that event by its position (`events[3]`, or the line of an
//! NDJSON body) and says what is wrong.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Most events one batch may hold.
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// How far in the future a timestamp may lie (clock skew between hosts).
pub const MAX_FUTURE_SKEW_MS: i64 = 5 * 60 * 1000;
/// Longest event name, flag key or variant name.
pub const MAX_NAME_LEN: usize = 128;
/// Longest targeting key.
pub const MAX_UNIT_LEN: usize = 256;
/// Most attributes on one track event.
pub const MAX_ATTRIBUTES: usize = 64;

/// One validated event, in the form it is stored in (short field names: a
/// batch is kept as one JSON text).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", try_from = "StoredEvent")]
pub enum Event {
    /// This unit was served this variant of this flag.
    #[serde(rename = "e")]
    Exposure {
        #[serde(rename = "f")]
        flag: String,
        #[serde(rename = "v")]
        variant: String,
        #[serde(rename = "u")]
        unit: String,
        #[serde(rename = "t")]
        at_ms: i64,
    },
    /// Something the unit did, with an optional value (a latency, an amount).
    #[serde(rename = "t")]
    Track {
        #[serde(rename = "n")]
        name: String,
        #[serde(rename = "u")]
        unit: String,
        #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
        value: Option<f64>,
        #[serde(rename = "t")]
        at_ms: i64,
        #[serde(rename = "a", default, skip_serializing_if = "Map::is_empty")]
        attributes: Map<String, Value>,
        /// Set when the sender knows the variant it runs (e.g. a service
        /// instance reporting the memory of the model it serves).
        #[serde(rename = "f", default, skip_serializing_if = "Option::is_none")]
        flag: Option<String>,
        #[serde(rename = "v", default, skip_serializing_if = "Option::is_none")]
        variant: Option<String>,
    },
}

impl Event {
    pub fn unit(&self) -> &str {
        match self {
            Event::Exposure { unit, .. } | Event::Track { unit, .. } => unit,
        }
    }

    pub fn at_ms(&self) -> i64 {
        match self {
            Event::Exposure { at_ms, .. } | Event::Track { at_ms, .. } => *at_ms,
        }
    }
}

/// The stored form read back field by field: serde's derived reader of an
/// internally tagged enum buffers every event before choosing the variant,
/// which made reading batches back the aggregator's largest cost.
#[derive(Deserialize)]
struct StoredEvent {
    k: StoredKind,
    u: String,
    t: i64,
    f: Option<String>,
    v: Option<String>,
    n: Option<String>,
    x: Option<f64>,
    #[serde(default)]
    a: Map<String, Value>,
}

#[derive(Deserialize)]
enum StoredKind {
    #[serde(rename = "e")]
    Exposure,
    #[serde(rename = "t")]
    Track,
}

impl TryFrom<StoredEvent> for Event {
    type Error = &'static str;

    fn try_from(e: StoredEvent) -> Result<Event, Self::Error> {
        Ok(match e.k {
            StoredKind::Exposure => Event::Exposure {
                flag: e.f.ok_or("an exposure without a flag")?,
                variant: e.v.ok_or("an exposure without a variant")?,
                unit: e.u,
                at_ms: e.t,
            },
            StoredKind::Track => Event::Track {
                name: e.n.ok_or("a track event without a name")?,
                unit: e.u,
                value: e.x,
                at_ms: e.t,
                attributes: e.a,
                flag: e.f,
                variant: e.v,
            },
        })
    }
}

/// Why a batch was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The body is not a batch at all.
    #[error("{0}")]
    Body(String),
    /// One event is wrong; `at` names it (`events[3]` or `line 4`).
    #[error("{at}: {message}")]
    Event { at: String, message: String },
    #[error("the batch holds {0} events; at most {MAX_BATCH_EVENTS} are allowed, so split it")]
    TooLarge(usize),
    #[error("the batch holds no events")]
    Empty,
}

/// What the sender wrote; every field optional so that the checks, not
/// serde, say what is missing. Strings borrow from the body where they hold
/// no escapes, so a valid event costs few allocations.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WireEvent<'a> {
    #[serde(borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    flag: Option<Cow<'a, str>>,
    #[serde(borrow)]
    variant: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    targeting_key: Option<Value>,
    value: Option<Value>,
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    attributes: Option<Map<String, Value>>,
}

/// The batch's envelope; each event stays unparsed text until it is checked
/// on its own, so an error can name the event.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireBatch<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

/// Checks an exposure's flag and variant against the environment's flags:
/// `Err(message)` when the flag is unknown or has no such variant.
pub type ExposureCheck<'a> = &'a dyn Fn(&str, &str) -> Result<(), String>;

/// Parses and validates a `{"events": […]}` body.
pub fn parse_json_batch(
    body: &[u8],
    now_ms: i64,
    check: ExposureCheck<'_>,
) -> Result<Vec<Event>, BatchError> {
    let batch: WireBatch = serde_json::from_slice(body)
        .map_err(|e| BatchError::Body(format!("the body must be {{\"events\": [...]}}: {e}")))?;
    if batch.events.len() > MAX_BATCH_EVENTS {
        return Err(BatchError::TooLarge(batch.events.len()));
    }
    let events = batch
        .events
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            event(raw.get(), now_ms, check).map_err(|message| BatchError::Event {
                at: format!("events[{i}]"),
                message,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if events.is_empty() {
        return Err(BatchError::Empty);
    }
    Ok(events)
}

/// Parses and validates an NDJSON body: one event object per line.
pub fn parse_ndjson_batch(
    body: &[u8],
    now_ms: i64,
    check: ExposureCheck<'_>,
) -> Result<Vec<Event>, BatchError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| BatchError::Body(format!("the body is not UTF-8: {e}")))?;
    let mut events = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if events.len() == MAX_BATCH_EVENTS {
            let total = events.len()
                + text
                    .lines()
                    .skip(i)
                    .filter(|l| !l.trim().is_empty())
                    .count();
            return Err(BatchError::TooLarge(total));
        }
        let at = || format!("line {}", i + 1);
        let raw: &RawValue = serde_json::from_str(line).map_err(|e| BatchError::Event {
            at: at(),
            message: format!("malformed JSON: {e}"),
        })?;
        events.push(
            event(raw.get(), now_ms, check)
                .map_err(|message| BatchError::Event { at: at(), message })?,
        );
    }
    if events.is_empty() {
        return Err(BatchError::Empty);
    }
    Ok(events)
}

/// Checks one event, given as the JSON text of a syntactically valid value.
fn event(text: &str, now_ms: i64, check: ExposureCheck<'_>) -> Result<Event, String> {
    if !text.trim_start().starts_with('{') {
        return Err("an event must be a JSON object".to_owned());
    }
    let wire: WireEvent = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let unit = match wire.targeting_key {
        None | Some(Value::Null) => return Err("targetingKey is missing".to_owned()),
        Some(Value::String(s)) if s.is_empty() => return Err("targetingKey is empty".to_owned()),
        Some(Value::String(s)) if s.len() > MAX_UNIT_LEN => {
            return Err(format!("targetingKey is longer than {MAX_UNIT_LEN} bytes"));
        }
        Some(Value::String(s)) => s,
        Some(_) => return Err("targetingKey must be a string".to_owned()),
    };
    let at_ms = match wire.timestamp {
        None => now_ms,
        Some(text) => {
            let at = chrono::DateTime::parse_from_rfc3339(&text)
                .map_err(|e| format!("timestamp `{text}` is not an RFC 3339 date-time: {e}"))?
                .timestamp_millis();
            if at > now_ms + MAX_FUTURE_SKEW_MS {
                return Err(format!(
                    "timestamp `{text}` is more than {} minutes in the future; check the sender's clock",
                    MAX_FUTURE_SKEW_MS / 60_000
                ));
            }
            at
        }
    };
    let name_field = |field: &str, value: Option<Cow<'_, str>>| -> Result<Option<String>, String> {
        match value {
            Some(v) if v.is_empty() => Err(format!("{field} is empty")),
            Some(v) if v.len() > MAX_NAME_LEN => {
                Err(format!("{field} is longer than {MAX_NAME_LEN} bytes"))
            }
            other => Ok(other.map(Cow::into_owned)),
        }
    };
    let flag = name_field("flag", wire.flag)?;
    let variant = name_field("variant", wire.variant)?;
    let name = name_field("name", wire.name)?;
    match wire.kind.as_deref() {
        Some("exposure") => {
            if wire.value.is_some() || wire.attributes.is_some() || name.is_some() {
                return Err(
                    "an exposure has only flag, variant, targetingKey and timestamp".to_owned(),
                );
            }
            let flag = flag.ok_or("an exposure needs `flag`")?;
            let variant = variant.ok_or("an exposure needs `variant`")?;
            check(&flag, &variant)?;
            Ok(Event::Exposure {
                flag,
                variant,
                unit,
                at_ms,
            })
        }
        Some("track") => {
            let name = name.ok_or("a track event needs `name`")?;
            let value = match wire.value {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) => match n.as_f64() {
                    Some(x) if x.is_finite() => Some(x),
                    _ => return Err(format!("value {n} is not a finite number")),
                },
                Some(other) => return Err(format!("value must be a number, not {other}")),
            };
            let attributes = wire.attributes.unwrap_or_default();
            if attributes.len() > MAX_ATTRIBUTES {
                return Err(format!("at most {MAX_ATTRIBUTES} attributes are allowed"));
            }
            match (&flag, &variant) {
                (Some(f), Some(v)) => check(f, v)?,
                (None, None) => {}
                _ => {
                    return Err("`flag` and `variant` go together: give both or neither".to_owned());
                }
            }
            Ok(Event::Track {
                name,
                unit,
                value,
                at_ms,
                attributes,
                flag,
                variant,
            })
        }
        Some(other) => Err(format!("unknown kind `{other}`; use `exposure` or `track`")),
        None => Err("kind is missing; use `exposure` or `track`".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // 2026-11-25T00:00:00Z
    const NOW: i64 = 1_795_564_800_000;

    fn any_flag(_: &str, _: &str) -> Result<(), String> {
        Ok(())
    }

    fn parse(events: Value) -> Result<Vec<Event>, BatchError> {
        parse_json_batch(
            json!({ "events": events }).to_string().as_bytes(),
            NOW,
            &any_flag,
        )
    }

    #[test]
    fn the_issue_examples_parse() {
        let events = parse(json!([
            {"kind":"exposure","flag":"calc-model","variant":"advanced","targetingKey":"u-17","timestamp":"2026-11-23T10:00:00Z"},
            {"kind":"track","name":"calc_request","targetingKey":"u-17","value":182.5,"timestamp":"2026-11-23T10:00:01Z","attributes":{"cache_hit":true}}
        ]))
        .expect("valid");
        assert_eq!(
            events[0],
            Event::Exposure {
                flag: "calc-model".into(),
                variant: "advanced".into(),
                unit: "u-17".into(),
                at_ms: 1_795_428_000_000
            }
        );
        match &events[1] {
            Event::Track {
                name,
                value,
                attributes,
                at_ms,
                ..
            } => {
                assert_eq!(
                    (name.as_str(), *value, *at_ms),
                    ("calc_request", Some(182.5), 1_795_428_001_000)
                );
                assert_eq!(attributes["cache_hit"], json!(true));
            }
            other => panic!("expected a track event, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_event_and_the_problem() {
        let cases = [
            (
                json!([{"kind":"track","name":"a","targetingKey":"u"}, {"kind":"click","targetingKey":"u"}]),
                "events[1]: unknown kind `click`",
            ),
            (
                json!([{"kind":"track","name":"a"}]),
                "events[0]: targetingKey is missing",
            ),
            (
                json!([{"kind":"track","name":"a","targetingKey":7}]),
                "events[0]: targetingKey must be a string",
            ),
            (
                json!([{"kind":"track","name":"a","targetingKey":"u","value":"fast"}]),
                "events[0]: value must be a number",
            ),
            (
                json!([{"kind":"track","name":"a","targetingKey":"u","timestamp":"2099-01-01T00:00:00Z"}]),
                "in the future",
            ),
            (
                json!([{"kind":"track","name":"a","targetingKey":"u","timestamp":"yesterday"}]),
                "not an RFC 3339",
            ),
            (
                json!([{"kind":"exposure","flag":"f","targetingKey":"u"}]),
                "needs `variant`",
            ),
            (
                json!([{"kind":"track","name":"a","targetingKey":"u","colour":"red"}]),
                "unknown field `colour`",
            ),
            (
                json!([{"kind":"track","name":"a","targetingKey":"u","flag":"f"}]),
                "give both or neither",
            ),
            (json!([]), "no events"),
        ];
        for (events, expected) in cases {
            let error = parse(events.clone())
                .expect_err(&format!("{events} must be rejected"))
                .to_string();
            assert!(
                error.contains(expected),
                "{events}: `{error}` should contain `{expected}`"
            );
        }
    }

    #[test]
    fn huge_numbers_are_rejected_not_stored_as_infinity() {
        let body = br#"{"events":[{"kind":"track","name":"a","targetingKey":"u","value":1e999}]}"#;
        assert!(parse_json_batch(body, NOW, &any_flag).is_err());
    }

    #[test]
    fn oversized_batches_are_rejected() {
        let events: Vec<Value> = (0..=MAX_BATCH_EVENTS)
            .map(|i| json!({"kind":"track","name":"a","targetingKey":format!("u{i}")}))
            .collect();
        assert_eq!(
            parse(Value::Array(events)),
            Err(BatchError::TooLarge(MAX_BATCH_EVENTS + 1))
        );
    }

    #[test]
    fn exposures_are_checked_against_the_flags() {
        let check = |flag: &str, variant: &str| {
            if flag == "calc-model" && variant == "simple" {
                Ok(())
            } else {
                Err(format!("flag `{flag}` has no variant `{variant}`"))
            }
        };
        let body = json!({"events":[{"kind":"exposure","flag":"calc-model","variant":"fancy","targetingKey":"u"}]}).to_string();
        let error = parse_json_batch(body.as_bytes(), NOW, &check)
            .expect_err("unknown variant")
            .to_string();
        assert_eq!(error, "events[0]: flag `calc-model` has no variant `fancy`");
    }

    #[test]
    fn ndjson_errors_name_the_line() {
        let body = "{\"kind\":\"track\",\"name\":\"a\",\"targetingKey\":\"u\"}\n\n{\"kind\":\"track\",\"name\":\"a\"}\n";
        let error = parse_ndjson_batch(body.as_bytes(), NOW, &any_flag)
            .expect_err("line 3 is bad")
            .to_string();
        assert_eq!(error, "line 3: targetingKey is missing");
        let ok = parse_ndjson_batch(
            b"{\"kind\":\"track\",\"name\":\"a\",\"targetingKey\":\"u\"}\n",
            NOW,
            &any_flag,
        )
        .expect("valid");
        assert_eq!(ok.len(), 1);
    }

    #[test]
    fn the_stored_form_round_trips() {
        let events = parse(json!([
            {"kind":"exposure","flag":"f","variant":"on","targetingKey":"u-1"},
            {"kind":"track","name":"mem","targetingKey":"pod-7","value":512,"flag":"f","variant":"on","attributes":{"gpu":"a100"}},
            {"kind":"track","name":"click","targetingKey":"u-1","timestamp":"2026-11-24T00:00:00Z"}
        ]))
        .expect("valid");
        let text = serde_json::to_string(&events).expect("serialise");
        assert_eq!(
            serde_json::from_str::<Vec<Event>>(&text).expect("parse"),
            events
        );
        // Batches already stored keep reading back: the form is fixed.
        let stored =
            r#"[{"k":"e","f":"f","v":"on","u":"u-1","t":5},{"k":"t","n":"click","u":"u-1","t":6}]"#;
        assert_eq!(
            serde_json::from_str::<Vec<Event>>(stored).expect("parse"),
            vec![
                Event::Exposure {
                    flag: "f".into(),
                    variant: "on".into(),
                    unit: "u-1".into(),
                    at_ms: 5
                },
                Event::Track {
                    name: "click".into(),
                    unit: "u-1".into(),
                    value: None,
                    at_ms: 6,
                    attributes: Map::new(),
                    flag: None,
                    variant: None
                },
            ]
        );
        assert_eq!(
            serde_json::to_string(&events[2..]).expect("serialise"),
            r#"[{"k":"t","n":"click","u":"u-1","t":1795478400000}]"#
        );
        assert!(serde_json::from_str::<Vec<Event>>(r#"[{"k":"e","u":"u","t":1}]"#).is_err());
    }
}
