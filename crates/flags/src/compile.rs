//! Validation: turns specs into the compiled form evaluation runs on, or into a
//! list of errors that each name the flag (or segment), the field and the
//! problem. Compilation is all-or-nothing: one bad flag rejects the set.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::DateTime;
use indexmap::IndexMap;
use regex::Regex;
use serde_json::{Number, Value};

use crate::bucket::{BUCKET_COUNT, split_boundaries, weight_units};
use crate::spec::{ConditionSpec, FlagSpec, FlagType, Op, SegmentSpec, ServeSpec};

/// Longest key of a flag, segment or variant.
pub const MAX_KEY_LEN: usize = 128;
/// Compiled size limit of one regex, so a hostile pattern cannot eat memory.
const REGEX_SIZE_LIMIT_BYTES: usize = 1 << 20;

/// One problem found in a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    /// `flag `calc-model``, `segment `power-users`` or `flags[3]` when the key itself is bad.
    pub subject: String,
    /// Path of the offending field inside the subject, e.g. `rules[1].serve.split`.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for ValidationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.subject, self.message)
        } else {
            write!(f, "{}: {}: {}", self.subject, self.field, self.message)
        }
    }
}

/// Checks a key of a flag, segment or variant: 1–128 characters of ASCII
/// letters, digits, `-`, `_` and `.`, starting with a letter or digit.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("must not be empty".into());
    }
    if key.len() > MAX_KEY_LEN {
        return Err(format!("is {} characters long; at most {MAX_KEY_LEN} are allowed", key.len()));
    }
    if !key.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(format!("`{key}` must start with a letter or digit"));
    }
    if let Some(c) = key.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
        return Err(format!("`{key}` contains `{c}`; use letters, digits, `-`, `_` and `.`"));
    }
    Ok(())
}

/// The evaluable form of one environment's flags.
#[derive(Debug, Default)]
pub struct FlagSet {
    pub(crate) flags: IndexMap<String, CompiledFlag>,
}

impl FlagSet {
    pub fn get(&self, key: &str) -> Option<&CompiledFlag> {
        self.flags.get(key)
    }

    /// Flags in key order.
    pub fn iter(&self) -> impl Iterator<Item = &CompiledFlag> {
        self.flags.values()
    }

    pub fn len(&self) -> usize {
        self.flags.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }
}

#[derive(Debug)]
pub struct CompiledFlag {
    pub(crate) key: String,
    pub(crate) flag_type: FlagType,
    pub(crate) enabled: bool,
    pub(crate) salt: String,
    pub(crate) off_variant: usize,
    pub(crate) variants: Vec<(String, Value)>,
    pub(crate) rules: Vec<CompiledRule>,
    pub(crate) default: CompiledServe,
}

impl CompiledFlag {
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn flag_type(&self) -> FlagType {
        self.flag_type
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub(crate) conditions: Vec<Cond>,
    pub(crate) serve: CompiledServe,
}

#[derive(Debug)]
pub(crate) enum CompiledServe {
    Variant(usize),
    /// Arm `i` serves variant `arms[i]` for buckets below `bounds[i]`.
    Split { bounds: Vec<u32>, arms: Vec<usize> },
}

#[derive(Debug)]
pub(crate) enum Cond {
    Segment(Arc<[Cond]>),
    Attr { attribute: String, test: Test },
}

#[derive(Debug)]
pub(crate) enum Test {
    Eq(Value),
    Neq(Value),
    In(Vec<Value>),
    NotIn(Vec<Value>),
    Contains(Vec<String>),
    StartsWith(Vec<String>),
    EndsWith(Vec<String>),
    Regex(Vec<Regex>),
    Number(Cmp, f64),
    Semver(Cmp, semver::Version),
    /// Milliseconds since the Unix epoch; `Lt` is `before`, `Gt` is `after`.
    Date(Cmp, i64),
    Exists,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cmp {
    Lt,
    Lte,
    Gt,
    Gte,
}

impl Cmp {
    pub(crate) fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Cmp::Lt => ord == Less,
            Cmp::Lte => ord != Greater,
            Cmp::Gt => ord == Greater,
            Cmp::Gte => ord != Less,
        }
    }
}

struct Errors<'a> {
    subject: String,
    out: &'a mut Vec<ValidationError>,
}

impl Errors<'_> {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.out.push(ValidationError {
            subject: self.subject.clone(),
            field: field.into(),
            message: message.into(),
        });
    }
}

/// Validates and compiles one environment's segments and flags.
pub fn compile(flags: &[FlagSpec], segments: &[SegmentSpec]) -> Result<FlagSet, Vec<ValidationError>> {
    let mut errors = Vec::new();

    let mut compiled_segments: HashMap<&str, Arc<[Cond]>> = HashMap::new();
    for (i, segment) in segments.iter().enumerate() {
        let mut errs = Errors { subject: format!("segment `{}`", segment.key), out: &mut errors };
        if let Err(e) = check_key(&segment.key) {
            errs.subject = format!("segments[{i}]");
            errs.push("key", e);
            continue;
        }
        if compiled_segments.contains_key(segment.key.as_str()) {
            errs.push("key", "is defined twice");
            continue;
        }
        let mut conds = Vec::with_capacity(segment.conditions.len());
        for (j, c) in segment.conditions.iter().enumerate() {
            let field = format!("conditions[{j}]");
            if c.segment.is_some() {
                errs.push(&field, "a segment's conditions test attributes; segments cannot reference other segments");
                continue;
            }
            if let Some(cond) = compile_condition(c, &field, &HashMap::new(), &mut errs) {
                conds.push(cond);
            }
        }
        compiled_segments.insert(&segment.key, conds.into());
    }

    let mut compiled = IndexMap::with_capacity(flags.len());
    for (i, flag) in flags.iter().enumerate() {
        let mut errs = Errors { subject: format!("flag `{}`", flag.key), out: &mut errors };
        if let Err(e) = check_key(&flag.key) {
            errs.subject = format!("flags[{i}]");
            errs.push("key", e);
            continue;
        }
        if compiled.contains_key(&flag.key) {
            errs.push("key", "is defined twice");
            continue;
        }
        if let Some(f) = compile_flag(flag, &compiled_segments, &mut errs) {
            compiled.insert(flag.key.clone(), f);
        }
    }

    if errors.is_empty() {
        compiled.sort_keys();
        Ok(FlagSet { flags: compiled })
    } else {
        Err(errors)
    }
}

fn compile_flag(
    flag: &FlagSpec,
    segments: &HashMap<&str, Arc<[Cond]>>,
    errs: &mut Errors<'_>,
) -> Option<CompiledFlag> {
    let before = errs.out.len();
    if flag.variants.is_empty() {
        errs.push("variants", "a flag needs at least one variant");
    }
    let mut variants = Vec::with_capacity(flag.variants.len());
    for (name, value) in &flag.variants {
        if let Err(e) = check_key(name) {
            errs.push(format!("variants.{name}"), format!("variant name {e}"));
            continue;
        }
        match check_variant_value(flag.flag_type, value) {
            Ok(v) => variants.push((name.clone(), v)),
            Err(e) => errs.push(format!("variants.{name}"), e),
        }
    }
    let index = |field: &str, name: &str, errs: &mut Errors<'_>| -> Option<usize> {
        let found = flag.variants.get_index_of(name);
        if found.is_none() {
            errs.push(field, format!("unknown variant `{name}`; the flag's variants are {}", list(flag.variants.keys())));
        }
        found
    };
    let off_variant = index("off_variant", &flag.off_variant, errs);

    let mut rules = Vec::with_capacity(flag.rules.len());
    for (i, rule) in flag.rules.iter().enumerate() {
        let mut conditions = Vec::with_capacity(rule.conditions.len());
        for (j, c) in rule.conditions.iter().enumerate() {
            if let Some(cond) = compile_condition(c, &format!("rules[{i}].conditions[{j}]"), segments, errs) {
                conditions.push(cond);
            }
        }
        if let Some(serve) = compile_serve(&rule.serve, &format!("rules[{i}].serve"), &index, errs) {
            rules.push(CompiledRule { conditions, serve });
        }
    }
    let default = compile_serve(&flag.default.serve, "default.serve", &index, errs);

    if errs.out.len() > before {
        return None;
    }
    Some(CompiledFlag {
        key: flag.key.clone(),
        flag_type: flag.flag_type,
        enabled: flag.enabled,
        salt: flag.bucketing_salt().to_owned(),
        off_variant: off_variant?,
        variants,
        rules,
        default: default?,
    })
}

fn list<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    if names.is_empty() { "none".into() } else { names.join(", ") }
}

/// Checks a variant value against the flag type. Float values are normalised to
/// floating-point numbers so that `1` is served as `1.0`.
fn check_variant_value(flag_type: FlagType, value: &Value) -> Result<Value, String> {
    let ok = match (flag_type, value) {
        (FlagType::Boolean, Value::Bool(_)) => true,
        (FlagType::String, Value::String(_)) => true,
        (FlagType::Integer, Value::Number(n)) => n.is_i64() || n.is_u64() && n.as_i64().is_some(),
        (FlagType::Float, Value::Number(n)) => {
            let f = n.as_f64().filter(|f| f.is_finite());
            return f
                .and_then(Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| format!("value {value} is not a finite float"));
        }
        (FlagType::Object, Value::Object(_)) => true,
        _ => false,
    };
    if ok {
        Ok(value.clone())
    } else {
        Err(format!("value {value} is not of the flag's type {flag_type}"))
    }
}

fn compile_serve(
    serve: &ServeSpec,
    field: &str,
    index: &dyn Fn(&str, &str, &mut Errors<'_>) -> Option<usize>,
    errs: &mut Errors<'_>,
) -> Option<CompiledServe> {
    match (&serve.variant, &serve.split) {
        (Some(v), None) => index(&format!("{field}.variant"), v, errs).map(CompiledServe::Variant),
        (None, Some(split)) => {
            let field = format!("{field}.split");
            if split.is_empty() {
                errs.push(&field, "a split needs at least one variant");
                return None;
            }
            let before = errs.out.len();
            let mut arms = Vec::with_capacity(split.len());
            let mut units = Vec::with_capacity(split.len());
            let mut total = 0u64;
            for (name, weight) in split {
                let arm = index(&format!("{field}.{name}"), name, errs);
                match weight_units(weight.0) {
                    Some(u) => {
                        total += u64::from(u);
                        units.push(u);
                    }
                    None => errs.push(
                        format!("{field}.{name}"),
                        format!("weight {} must be a percentage between 0 and 100 in steps of 0.001", weight.0),
                    ),
                }
                arms.extend(arm);
            }
            if errs.out.len() == before && total != u64::from(BUCKET_COUNT) {
                let sum: f64 = split.values().map(|w| w.0).sum();
                errs.push(&field, format!("weights sum to {sum}, not 100"));
            }
            if errs.out.len() > before {
                return None;
            }
            Some(CompiledServe::Split { bounds: split_boundaries(&units), arms })
        }
        (Some(_), Some(_)) => {
            errs.push(field, "give either `variant` or `split`, not both");
            None
        }
        (None, None) => {
            errs.push(field, "give `variant = \"…\"` or `split = { … }`");
            None
        }
    }
}

fn compile_condition(
    c: &ConditionSpec,
    field: &str,
    segments: &HashMap<&str, Arc<[Cond]>>,
    errs: &mut Errors<'_>,
) -> Option<Cond> {
    if let Some(segment) = &c.segment {
        if c.attribute.is_some() || c.op.is_some() || c.value.is_some() || c.values.is_some() {
            errs.push(field, "a segment condition takes only `segment`");
            return None;
        }
        return match segments.get(segment.as_str()) {
            Some(conds) => Some(Cond::Segment(conds.clone())),
            None => {
                errs.push(format!("{field}.segment"), format!("unknown segment `{segment}`"));
                None
            }
        };
    }
    let Some(attribute) = c.attribute.as_ref().filter(|a| !a.is_empty()) else {
        errs.push(field, "a condition needs `attribute` and `op`, or `segment`");
        return None;
    };
    let Some(op) = c.op else {
        errs.push(format!("{field}.op"), "missing; one of eq, neq, in, not_in, contains, starts_with, ends_with, regex, lt, lte, gt, gte, semver_lt, semver_lte, semver_gt, semver_gte, before, after, exists");
        return None;
    };
    let values: Vec<&Value> = match (&c.value, &c.values) {
        (Some(_), Some(_)) => {
            errs.push(field, "give either `value` or `values`, not both");
            return None;
        }
        (Some(v), None) => vec![v],
        (None, Some(vs)) => vs.iter().collect(),
        (None, None) => Vec::new(),
    };
    match build_test(op, &values) {
        Ok(test) => Some(Cond::Attr { attribute: attribute.clone(), test }),
        Err(e) => {
            errs.push(format!("{field}.values"), format!("op `{}`: {e}", op.as_str()));
            None
        }
    }
}

fn one<'v>(values: &[&'v Value]) -> Result<&'v Value, String> {
    match values {
        [v] => Ok(v),
        [] => Err("needs exactly one value".into()),
        _ => Err(format!("needs exactly one value, got {}", values.len())),
    }
}

fn scalars(values: &[&Value]) -> Result<Vec<Value>, String> {
    if values.is_empty() {
        return Err("needs at least one value".into());
    }
    values
        .iter()
        .map(|v| match v {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok((*v).clone()),
            other => Err(format!("value {other} must be a string, number or boolean")),
        })
        .collect()
}

fn strings(values: &[&Value]) -> Result<Vec<String>, String> {
    if values.is_empty() {
        return Err("needs at least one value".into());
    }
    values
        .iter()
        .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| format!("value {v} must be a string")))
        .collect()
}

/// Parses a version, tolerating a leading `v` (`v1.2.3`).
pub(crate) fn parse_semver(s: &str) -> Option<semver::Version> {
    semver::Version::parse(s.strip_prefix('v').unwrap_or(s)).ok()
}

/// Parses an RFC 3339 timestamp into milliseconds since the Unix epoch.
pub(crate) fn parse_date_ms(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s).ok().map(|d| d.timestamp_millis())
}

fn build_test(op: Op, values: &[&Value]) -> Result<Test, String> {
    let cmp = |op: Op| match op {
        Op::Lt | Op::SemverLt | Op::Before => Cmp::Lt,
        Op::Lte | Op::SemverLte => Cmp::Lte,
        Op::Gt | Op::SemverGt | Op::After => Cmp::Gt,
        _ => Cmp::Gte,
    };
    Ok(match op {
        Op::Eq => Test::Eq(scalars(&[one(values)?])?.remove(0)),
        Op::Neq => Test::Neq(scalars(&[one(values)?])?.remove(0)),
        Op::In => Test::In(scalars(values)?),
        Op::NotIn => Test::NotIn(scalars(values)?),
        Op::Contains => Test::Contains(strings(values)?),
        Op::StartsWith => Test::StartsWith(strings(values)?),
        Op::EndsWith => Test::EndsWith(strings(values)?),
        Op::Regex => Test::Regex(
            strings(values)?
                .iter()
                .map(|p| {
                    regex::RegexBuilder::new(p)
                        .size_limit(REGEX_SIZE_LIMIT_BYTES)
                        .build()
                        .map_err(|e| format!("bad regex `{p}`: {e}"))
                })
                .collect::<Result<_, _>>()?,
        ),
        Op::Lt | Op::Lte | Op::Gt | Op::Gte => {
            let v = one(values)?;
            let n = v.as_f64().filter(|n| n.is_finite()).ok_or_else(|| format!("value {v} must be a number"))?;
            Test::Number(cmp(op), n)
        }
        Op::SemverLt | Op::SemverLte | Op::SemverGt | Op::SemverGte => {
            let v = one(values)?;
            let version = v
                .as_str()
                .and_then(parse_semver)
                .ok_or_else(|| format!("value {v} must be a semantic version such as \"2.1.0\""))?;
            Test::Semver(cmp(op), version)
        }
        Op::Before | Op::After => {
            let v = one(values)?;
            let ms = v
                .as_str()
                .and_then(parse_date_ms)
                .ok_or_else(|| format!("value {v} must be an RFC 3339 date such as \"2026-11-23T10:00:00Z\""))?;
            Test::Date(cmp(op), ms)
        }
        Op::Exists => {
            if !values.is_empty() {
                return Err("takes no value".into());
            }
            Test::Exists
        }
    })
}
