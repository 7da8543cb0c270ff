//! Validation: turns specs into the compiled form evaluation runs on, or into a
//! list of errors that each name the flag (or segment), the field and the
//! problem. Compilation is all-or-nothing: one bad flag rejects the set.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};

use chrono::DateTime;
use regex::Regex;
use serde_json::{Number, Value};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::bucket::{BUCKET_COUNT, split_boundaries, weight_units};
use crate::bytes::same_bytes;
use crate::context::{AttributeName, TARGETING_KEY};
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
        return Err(format!(
            "is {} characters long; at most {MAX_KEY_LEN} are allowed",
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

/// The evaluable form of one environment's flags.
#[derive(Debug, Default)]
pub struct FlagSet {
    /// In key order, keys unique.
    flags: Vec<CompiledFlag>,
    /// Open-addressing hash table (linear probing) of positions in `flags`,
    /// by `xxh3_64` of the key; a power of two in size, at most half full,
    /// and empty when `flags` is.
    index: Box<[u32]>,
}

/// A free slot of [`FlagSet::index`].
const EMPTY_SLOT: u32 = u32::MAX;

impl FlagSet {
    /// Indexes flags that have unique keys.
    fn new(mut flags: Vec<CompiledFlag>) -> Self {
        flags.sort_by(|a, b| a.key.cmp(&b.key));
        let size = if flags.is_empty() {
            0
        } else {
            (2 * flags.len()).next_power_of_two()
        };
        let mut index = vec![EMPTY_SLOT; size].into_boxed_slice();
        for (position, flag) in flags.iter().enumerate() {
            let mut slot = Self::home_slot(&flag.key, size);
            while index[slot] != EMPTY_SLOT {
                slot = (slot + 1) & (size - 1);
            }
            // Compilation would run out of memory long before 2^32 flags.
            index[slot] = u32::try_from(position).unwrap_or(EMPTY_SLOT);
        }
        FlagSet { flags, index }
    }

    fn home_slot(key: &str, size: usize) -> usize {
        (xxh3_64(key.as_bytes()) as usize) & size.wrapping_sub(1)
    }
}

/// Hashes strings with xxh3 instead of the default SipHash, which costs a
/// noticeable share of an evaluation. A keyed hash defends a table against
/// keys chosen to collide; here administrators choose the keys (the values of
/// an `in` list) and callers only look them up, so a fixed seed is safe.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FixedKeyHash;

impl BuildHasher for FixedKeyHash {
    type Hasher = FixedKeyHasher;

    fn build_hasher(&self) -> FixedKeyHasher {
        FixedKeyHasher(0)
    }
}

pub(crate) struct FixedKeyHasher(u64);

impl Hasher for FixedKeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxh3_64_with_seed(bytes, self.0);
    }

    /// `str` hashes its bytes and then a `0xff` terminator: mixing that in
    /// with a multiply spares a second pass of xxh3.
    fn write_u8(&mut self, byte: u8) {
        self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl FlagSet {
    #[inline]
    pub fn get(&self, key: &str) -> Option<&CompiledFlag> {
        // An environment with one flag is common enough (and a benchmark's
        // favourite) to skip hashing the key.
        if let [only] = self.flags.as_slice() {
            return Some(only).filter(|flag| same_bytes(flag.key.as_bytes(), key.as_bytes()));
        }
        self.find(key)
    }

    fn find(&self, key: &str) -> Option<&CompiledFlag> {
        let same_key = |flag: &&CompiledFlag| same_bytes(flag.key.as_bytes(), key.as_bytes());
        let size = self.index.len();
        let mut slot = Self::home_slot(key, size);
        // The table is at most half full, so probing reaches a free slot.
        loop {
            let position = *self.index.get(slot)?;
            if position == EMPTY_SLOT {
                return None;
            }
            let flag = self.flags.get(position as usize)?;
            if same_key(&flag) {
                return Some(flag);
            }
            slot = (slot + 1) & (size - 1);
        }
    }

    /// Flags in key order.
    pub fn iter(&self) -> impl Iterator<Item = &CompiledFlag> {
        self.flags.iter()
    }

    pub fn len(&self) -> usize {
        self.flags.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }

    /// Automatic selection inside one arm of a split (the seed's "automatic
    /// model selection" group, driven by Thompson sampling): a unit that a
    /// split puts into variant `arm` keeps `arm` as its variant — so its
    /// exposures and metrics count for that arm, whose weight stays as
    /// planned — but is served the value of one of `choices`, each with its
    /// probability. The choice is sticky per unit while the probabilities
    /// stay the same: `bucket(salt + "/auto", unit)` against cumulative
    /// ranges of the probabilities, in the order given (rounded to whole
    /// buckets, largest remainders first). Probabilities need not sum to 1;
    /// they are normalised. Replaces an earlier selection of the flag.
    pub fn select_automatically(
        &mut self,
        flag: &str,
        arm: &str,
        choices: &[(String, f64)],
    ) -> Result<(), String> {
        let position = self
            .flags
            .iter()
            .position(|f| f.key == flag)
            .ok_or_else(|| format!("flag `{flag}` was not found"))?;
        let compiled = &mut self.flags[position];
        let index = |name: &str| {
            compiled
                .variants
                .iter()
                .position(|(n, _)| n == name)
                .ok_or_else(|| format!("flag `{flag}` has no variant `{name}`"))
        };
        let arm = index(arm)?;
        let mut variants = Vec::with_capacity(choices.len());
        for (name, p) in choices {
            if !(p.is_finite() && *p >= 0.0) {
                return Err(format!("the probability of `{name}` is {p}"));
            }
            variants.push(index(name)?);
        }
        let total: f64 = choices.iter().map(|(_, p)| p).sum();
        if choices.is_empty() || total <= 0.0 {
            return Err("automatic selection needs a choice with a positive probability".into());
        }
        let units = whole_buckets(choices.iter().map(|(_, p)| p / total));
        compiled.auto = Some(AutoSelect {
            arm,
            variants,
            bounds: split_boundaries(&units),
        });
        Ok(())
    }
}

/// Shares (summing to 1) as whole buckets summing to [`BUCKET_COUNT`]: each
/// share rounded down, the remaining buckets to the largest remainders.
fn whole_buckets(shares: impl Iterator<Item = f64>) -> Vec<u32> {
    let exact: Vec<f64> = shares.map(|s| s * f64::from(BUCKET_COUNT)).collect();
    let mut units: Vec<u32> = exact.iter().map(|e| e.floor() as u32).collect();
    let mut left = BUCKET_COUNT.saturating_sub(units.iter().sum());
    let mut order: Vec<usize> = (0..exact.len()).collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    for i in order.into_iter().cycle() {
        if left == 0 {
            break;
        }
        units[i] += 1;
        left -= 1;
    }
    units
}

/// An arm whose units are served the value of a chosen variant.
#[derive(Debug)]
pub(crate) struct AutoSelect {
    /// The arm (a variant index) whose units are served a choice.
    pub(crate) arm: usize,
    /// Choice `i` serves `variants[i]` for buckets below `bounds[i]`.
    pub(crate) variants: Vec<usize>,
    pub(crate) bounds: Vec<u32>,
}

#[derive(Debug)]
pub struct CompiledFlag {
    pub(crate) key: String,
    pub(crate) flag_type: FlagType,
    pub(crate) enabled: bool,
    pub(crate) salt: String,
    /// The salt that decides who is inside a split's `rollout`:
    /// [`rollout_salt`] of `salt`.
    pub(crate) rollout_salt: String,
    /// The salt of automatic selection: [`auto_salt`] of `salt`.
    pub(crate) auto_salt: String,
    pub(crate) record_exposures: bool,
    pub(crate) off_variant: usize,
    pub(crate) variants: Vec<(String, Value)>,
    pub(crate) rules: Vec<CompiledRule>,
    pub(crate) default: CompiledServe,
    /// Set by [`FlagSet::select_automatically`], never by compiling.
    pub(crate) auto: Option<AutoSelect>,
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

    /// Whether OFREP evaluations of this flag record exposures.
    pub fn record_exposures(&self) -> bool {
        self.record_exposures
    }

    /// Whether the flag has a variant of this name.
    pub fn has_variant(&self, name: &str) -> bool {
        self.variants.iter().any(|(n, _)| n == name)
    }

    /// The variant names, in the order written.
    pub fn variant_names(&self) -> impl Iterator<Item = &str> {
        self.variants.iter().map(|(n, _)| n.as_str())
    }
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    /// All must hold. A segment's conditions are spliced in where the
    /// segment is referenced: "all of (a, all of (b, c))" is "all of (a, b,
    /// c)", in the same order, and a flat list evaluates without recursion.
    pub(crate) conditions: Vec<Cond>,
    pub(crate) serve: CompiledServe,
}

#[derive(Debug)]
pub(crate) enum CompiledServe {
    Variant(usize),
    /// Arm `i` serves variant `arms[i]` for buckets below `bounds[i]`.
    Split {
        bounds: Vec<u32>,
        arms: Vec<usize>,
        /// Units outside a rollout below 100%.
        rollout: Option<Rollout>,
    },
}

/// The part of a split's units it applies to: units whose bucket under the
/// rollout salt is below `bound`; the others get `otherwise`.
#[derive(Debug)]
pub(crate) struct Rollout {
    pub(crate) bound: u32,
    pub(crate) otherwise: usize,
}

/// An attribute test. A segment's conditions are validated once and copied
/// into every rule that references the segment.
#[derive(Clone, Debug)]
pub(crate) struct Cond {
    pub(crate) attribute: Attribute,
    pub(crate) test: Test,
}

/// The attribute a condition reads: `targetingKey` lives in its own field of
/// the context, other attributes in [`Context::attributes`](crate::Context).
#[derive(Clone, Debug)]
pub(crate) enum Attribute {
    TargetingKey,
    Named(AttributeName),
}

impl Attribute {
    fn new(name: &str) -> Self {
        if name == TARGETING_KEY {
            Attribute::TargetingKey
        } else {
            Attribute::Named(AttributeName::new(name))
        }
    }
}

/// The values of `eq`, `neq` (a set of one), `in` and `not_in`, by type: an
/// attribute is only compared with the values of its own type. Numbers are
/// kept as `f64` so that `1` and `1.0` are equal, as they are in JSON.
#[derive(Clone, Debug, Default)]
pub(crate) struct ScalarSet {
    pub(crate) strings: StringSet,
    pub(crate) numbers: Vec<f64>,
    /// Whether `false` (index 0) and `true` (index 1) are in the set.
    pub(crate) booleans: [bool; 2],
}

/// Above this many strings, a set is hashed instead of scanned. A scan
/// compares lengths first, so it mostly skips reading the strings, and for a
/// short list it is quicker than hashing the attribute.
const SCANNED_STRINGS_MAX: usize = 16;

#[derive(Clone, Debug)]
pub(crate) enum StringSet {
    Scanned(Vec<Box<str>>),
    Hashed(HashSet<Box<str>, FixedKeyHash>),
}

impl Default for StringSet {
    fn default() -> Self {
        StringSet::Scanned(Vec::new())
    }
}

impl StringSet {
    fn new(strings: Vec<Box<str>>) -> Self {
        if strings.len() > SCANNED_STRINGS_MAX {
            StringSet::Hashed(strings.into_iter().collect())
        } else {
            StringSet::Scanned(strings)
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Test {
    In(ScalarSet),
    NotIn(ScalarSet),
    Contains(Vec<String>),
    StartsWith(Vec<String>),
    EndsWith(Vec<String>),
    Regex(Vec<Regex>),
    Number(Cmp, f64),
    Semver(Cmp, semver::Version),
    /// Nanoseconds since the Unix epoch; `Lt` is `before`, `Gt` is `after`.
    Date(Cmp, i128),
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
pub fn compile(
    flags: &[FlagSpec],
    segments: &[SegmentSpec],
) -> Result<FlagSet, Vec<ValidationError>> {
    let mut errors = Vec::new();

    let mut compiled_segments: HashMap<&str, Vec<Cond>> = HashMap::new();
    for (i, segment) in segments.iter().enumerate() {
        let mut errs = Errors {
            subject: format!("segment `{}`", segment.key),
            out: &mut errors,
        };
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
            if let Some(test) = compile_attr_test(c, &field, &mut errs) {
                conds.push(test);
            }
        }
        compiled_segments.insert(&segment.key, conds);
    }

    let mut compiled = Vec::with_capacity(flags.len());
    let mut compiled_keys = HashSet::with_capacity(flags.len());
    for (i, flag) in flags.iter().enumerate() {
        let mut errs = Errors {
            subject: format!("flag `{}`", flag.key),
            out: &mut errors,
        };
        if let Err(e) = check_key(&flag.key) {
            errs.subject = format!("flags[{i}]");
            errs.push("key", e);
            continue;
        }
        if compiled_keys.contains(flag.key.as_str()) {
            errs.push("key", "is defined twice");
            continue;
        }
        if let Some(f) = compile_flag(flag, &compiled_segments, &mut errs) {
            compiled_keys.insert(flag.key.as_str());
            compiled.push(f);
        }
    }

    if errors.is_empty() {
        Ok(FlagSet::new(compiled))
    } else {
        Err(errors)
    }
}

fn compile_flag(
    flag: &FlagSpec,
    segments: &HashMap<&str, Vec<Cond>>,
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
            errs.push(
                field,
                format!(
                    "unknown variant `{name}`; the flag's variants are {}",
                    list(flag.variants.keys())
                ),
            );
        }
        found
    };
    let off_variant = index("off_variant", &flag.off_variant, errs);

    let mut rules = Vec::with_capacity(flag.rules.len());
    for (i, rule) in flag.rules.iter().enumerate() {
        let mut conditions = Vec::with_capacity(rule.conditions.len());
        for (j, c) in rule.conditions.iter().enumerate() {
            let field = format!("rules[{i}].conditions[{j}]");
            compile_condition(c, &field, segments, &mut conditions, errs);
        }
        if let Some(serve) = compile_serve(&rule.serve, &format!("rules[{i}].serve"), &index, errs)
        {
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
        rollout_salt: rollout_salt(flag.bucketing_salt()),
        auto_salt: auto_salt(flag.bucketing_salt()),
        auto: None,
        record_exposures: flag.record_exposures,
        off_variant: off_variant?,
        variants,
        rules,
        default: default?,
    })
}

fn list<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
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
        Err(format!(
            "value {value} is not of the flag's type {flag_type}"
        ))
    }
}

fn compile_serve(
    serve: &ServeSpec,
    field: &str,
    index: &dyn Fn(&str, &str, &mut Errors<'_>) -> Option<usize>,
    errs: &mut Errors<'_>,
) -> Option<CompiledServe> {
    match (&serve.variant, &serve.split) {
        (Some(v), None) => {
            if serve.rollout.is_some() || serve.otherwise.is_some() {
                errs.push(
                    field,
                    "`rollout` and `otherwise` apply to a `split`, not to a single `variant`",
                );
            }
            index(&format!("{field}.variant"), v, errs).map(CompiledServe::Variant)
        }
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
                        format!(
                            "weight {} must be a percentage between 0 and 100 in steps of 0.001",
                            weight.0
                        ),
                    ),
                }
                arms.extend(arm);
            }
            if errs.out.len() == before && total != u64::from(BUCKET_COUNT) {
                let sum: f64 = split.values().map(|w| w.0).sum();
                errs.push(&field, format!("weights sum to {sum}, not 100"));
            }
            let rollout = compile_rollout(serve, field.trim_end_matches(".split"), index, errs);
            if errs.out.len() > before {
                return None;
            }
            Some(CompiledServe::Split {
                bounds: split_boundaries(&units),
                arms,
                rollout,
            })
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

/// The salt under which a flag with bucketing salt `salt` decides who is
/// inside a split's rollout: `salt + "/rollout"`. Independent of the salt
/// that picks the arm, so changing the rollout never moves a unit between
/// arms (`docs/bucketing.md`).
pub fn rollout_salt(salt: &str) -> String {
    format!("{salt}/rollout")
}

/// The salt under which units of an automatically selecting arm are given
/// their choice: `salt + "/auto"`.
pub fn auto_salt(salt: &str) -> String {
    format!("{salt}/auto")
}

/// The `rollout` and `otherwise` of a split; `None` when all units are in.
fn compile_rollout(
    serve: &ServeSpec,
    field: &str,
    index: &dyn Fn(&str, &str, &mut Errors<'_>) -> Option<usize>,
    errs: &mut Errors<'_>,
) -> Option<Rollout> {
    let bound = match serve.rollout {
        None => None,
        Some(weight) => match weight_units(weight.0) {
            Some(units) => Some(units),
            None => {
                errs.push(
                    format!("{field}.rollout"),
                    format!(
                        "rollout {} must be a percentage between 0 and 100 in steps of 0.001",
                        weight.0
                    ),
                );
                return None;
            }
        },
    };
    match (bound, &serve.otherwise) {
        (None, None) => None,
        (None, Some(_)) => {
            errs.push(
                format!("{field}.otherwise"),
                "`otherwise` names what units outside a `rollout` get; give `rollout` too",
            );
            None
        }
        (Some(bound), None) if bound < BUCKET_COUNT => {
            errs.push(
                format!("{field}.otherwise"),
                "a rollout below 100 needs `otherwise = \"…\"`, the variant of units outside it",
            );
            None
        }
        (Some(_), None) => None,
        (Some(bound), Some(otherwise)) => {
            let otherwise = index(&format!("{field}.otherwise"), otherwise, errs)?;
            (bound < BUCKET_COUNT).then_some(Rollout { bound, otherwise })
        }
    }
}

/// Compiles a condition of a flag's rule, a segment reference or an
/// attribute test, onto the end of the rule's conditions.
fn compile_condition(
    c: &ConditionSpec,
    field: &str,
    segments: &HashMap<&str, Vec<Cond>>,
    conditions: &mut Vec<Cond>,
    errs: &mut Errors<'_>,
) {
    let Some(segment) = &c.segment else {
        conditions.extend(compile_attr_test(c, field, errs));
        return;
    };
    if c.attribute.is_some() || c.op.is_some() || c.value.is_some() || c.values.is_some() {
        errs.push(field, "a segment condition takes only `segment`");
        return;
    }
    match segments.get(segment.as_str()) {
        Some(tests) => conditions.extend(tests.iter().cloned()),
        None => errs.push(
            format!("{field}.segment"),
            format!("unknown segment `{segment}`"),
        ),
    }
}

/// Compiles an attribute test (`attribute`, `op`, `value`/`values`).
fn compile_attr_test(c: &ConditionSpec, field: &str, errs: &mut Errors<'_>) -> Option<Cond> {
    let Some(attribute) = c.attribute.as_ref().filter(|a| !a.is_empty()) else {
        errs.push(
            field,
            "a condition needs `attribute` and `op`, or `segment`",
        );
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
        Ok(test) => Some(Cond {
            attribute: Attribute::new(attribute),
            test,
        }),
        Err(e) => {
            errs.push(
                format!("{field}.values"),
                format!("op `{}`: {e}", op.as_str()),
            );
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

fn scalars(values: &[&Value]) -> Result<ScalarSet, String> {
    if values.is_empty() {
        return Err("needs at least one value".into());
    }
    let mut strings = Vec::new();
    let mut set = ScalarSet::default();
    for value in values {
        match value {
            Value::String(s) => strings.push(s.as_str().into()),
            Value::Bool(b) => set.booleans[usize::from(*b)] = true,
            Value::Number(n) => set.numbers.push(
                n.as_f64()
                    .ok_or_else(|| format!("value {n} is not a representable number"))?,
            ),
            other => return Err(format!("value {other} must be a string, number or boolean")),
        }
    }
    set.strings = StringSet::new(strings);
    Ok(set)
}

fn strings(values: &[&Value]) -> Result<Vec<String>, String> {
    if values.is_empty() {
        return Err("needs at least one value".into());
    }
    values
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("value {v} must be a string"))
        })
        .collect()
}

/// Parses a version, tolerating a leading `v` (`v1.2.3`).
pub(crate) fn parse_semver(s: &str) -> Option<semver::Version> {
    semver::Version::parse(s.strip_prefix('v').unwrap_or(s)).ok()
}

const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// Parses an RFC 3339 timestamp into nanoseconds since the Unix epoch. Full
/// precision, so that a time half a millisecond later is later.
pub(crate) fn parse_instant_ns(s: &str) -> Option<i128> {
    DateTime::parse_from_rfc3339(s).ok().map(|d| {
        i128::from(d.timestamp()) * NANOS_PER_SECOND + i128::from(d.timestamp_subsec_nanos())
    })
}

/// Unix seconds as nanoseconds since the epoch. Whole seconds are exact;
/// fractions are as exact as `f64` allows; huge values saturate, which keeps
/// the order (`1e300` is after every date).
pub(crate) fn unix_seconds_ns(n: &Number) -> Option<i128> {
    if let Some(secs) = n.as_i64() {
        return Some(i128::from(secs) * NANOS_PER_SECOND);
    }
    n.as_f64()
        .filter(|f| f.is_finite())
        .map(|secs| (secs * NANOS_PER_SECOND as f64) as i128)
}

fn build_test(op: Op, values: &[&Value]) -> Result<Test, String> {
    let cmp = |op: Op| match op {
        Op::Lt | Op::SemverLt | Op::Before => Cmp::Lt,
        Op::Lte | Op::SemverLte => Cmp::Lte,
        Op::Gt | Op::SemverGt | Op::After => Cmp::Gt,
        _ => Cmp::Gte,
    };
    Ok(match op {
        Op::Eq => Test::In(scalars(&[one(values)?])?),
        Op::Neq => Test::NotIn(scalars(&[one(values)?])?),
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
            let n = v
                .as_f64()
                .filter(|n| n.is_finite())
                .ok_or_else(|| format!("value {v} must be a number"))?;
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
            let ns = v.as_str().and_then(parse_instant_ns).ok_or_else(|| {
                format!("value {v} must be an RFC 3339 date such as \"2026-11-23T10:00:00Z\"")
            })?;
            Test::Date(cmp(op), ns)
        }
        Op::Exists => {
            if !values.is_empty() {
                return Err("takes no value".into());
            }
            Test::Exists
        }
    })
}
