//! The flag model as users write it (TOML or JSON) and as the store keeps it.
//!
//! These types only describe; [`crate::compile`] checks them and turns them into
//! the form evaluation runs on. Unknown fields are rejected so that a typo in a
//! configuration file is an error, not a silently ignored setting.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The type of every variant value of a flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlagType {
    Boolean,
    String,
    Integer,
    Float,
    Object,
}

impl FlagType {
    pub fn as_str(self) -> &'static str {
        match self {
            FlagType::Boolean => "boolean",
            FlagType::String => "string",
            FlagType::Integer => "integer",
            FlagType::Float => "float",
            FlagType::Object => "object",
        }
    }
}

impl std::fmt::Display for FlagType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn default_true() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// One feature flag.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagSpec {
    pub key: String,
    #[serde(rename = "type")]
    pub flag_type: FlagType,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// When false, every context gets `off_variant` with reason `DISABLED`.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub enabled: bool,
    pub off_variant: String,
    /// Variant name → value, in the order written.
    pub variants: IndexMap<String, Value>,
    /// Targeting rules, tried in order; the first whose conditions all hold wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleSpec>,
    /// What a context that matches no rule is served.
    pub default: DefaultSpec,
    /// Bucketing salt; the flag key when absent. Changing it reshuffles every unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    /// Whether evaluations served over OFREP record an exposure of the unit
    /// to the variant it got (on by default; exposures feed metrics).
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub record_exposures: bool,
}

impl FlagSpec {
    /// The salt bucketing uses for this flag.
    pub fn bucketing_salt(&self) -> &str {
        self.salt.as_deref().unwrap_or(&self.key)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultSpec {
    pub serve: ServeSpec,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub conditions: Vec<ConditionSpec>,
    pub serve: ServeSpec,
}

/// What a rule serves: exactly one of `variant` or `split`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Variant → weight in percent; weights sum to 100. Buckets are laid out in
    /// the order written, so growing the first variant only adds units to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<IndexMap<String, Weight>>,
    /// With a split: the percentage of units the split applies to; the rest
    /// get `otherwise`. Who is in is decided by a bucket under a salt of its
    /// own (`docs/bucketing.md`), so raising it only adds units and never
    /// moves a unit between the split's arms. Absent means 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Weight>,
    /// With `rollout`: the variant of units outside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otherwise: Option<String>,
}

impl ServeSpec {
    pub fn variant(name: impl Into<String>) -> Self {
        ServeSpec {
            variant: Some(name.into()),
            split: None,
            rollout: None,
            otherwise: None,
        }
    }

    pub fn split<I, S>(weights: I) -> Self
    where
        I: IntoIterator<Item = (S, f64)>,
        S: Into<String>,
    {
        ServeSpec {
            variant: None,
            split: Some(
                weights
                    .into_iter()
                    .map(|(k, w)| (k.into(), Weight(w)))
                    .collect(),
            ),
            rollout: None,
            otherwise: None,
        }
    }
}

/// A percentage weight. Serialized as an integer when it is whole, so an exported
/// file reads like the one that was applied.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Weight(pub f64);

impl Serialize for Weight {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let w = self.0;
        if w.fract() == 0.0 && (0.0..=1e15).contains(&w) {
            s.serialize_u64(w as u64)
        } else {
            s.serialize_f64(w)
        }
    }
}

/// One condition of a rule or a segment: either an attribute test
/// (`attribute`, `op`, `value`/`values`) or a segment reference (`segment`).
/// All fields are optional here so that validation can say precisely what is
/// missing instead of serde's "did not match any variant".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<Op>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<Value>>,
}

impl ConditionSpec {
    pub fn attribute(attribute: &str, op: Op, values: Vec<Value>) -> Self {
        ConditionSpec {
            attribute: Some(attribute.to_owned()),
            op: Some(op),
            values: Some(values),
            ..ConditionSpec::default()
        }
    }

    pub fn segment(key: &str) -> Self {
        ConditionSpec {
            segment: Some(key.to_owned()),
            ..ConditionSpec::default()
        }
    }
}

/// The comparison operators of a condition. The names are part of the file
/// format and must not change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Eq,
    Neq,
    In,
    NotIn,
    Contains,
    StartsWith,
    EndsWith,
    Regex,
    Lt,
    Lte,
    Gt,
    Gte,
    SemverLt,
    SemverLte,
    SemverGt,
    SemverGte,
    Before,
    After,
    Exists,
}

impl Op {
    pub const ALL: [Op; 19] = [
        Op::Eq,
        Op::Neq,
        Op::In,
        Op::NotIn,
        Op::Contains,
        Op::StartsWith,
        Op::EndsWith,
        Op::Regex,
        Op::Lt,
        Op::Lte,
        Op::Gt,
        Op::Gte,
        Op::SemverLt,
        Op::SemverLte,
        Op::SemverGt,
        Op::SemverGte,
        Op::Before,
        Op::After,
        Op::Exists,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Neq => "neq",
            Op::In => "in",
            Op::NotIn => "not_in",
            Op::Contains => "contains",
            Op::StartsWith => "starts_with",
            Op::EndsWith => "ends_with",
            Op::Regex => "regex",
            Op::Lt => "lt",
            Op::Lte => "lte",
            Op::Gt => "gt",
            Op::Gte => "gte",
            Op::SemverLt => "semver_lt",
            Op::SemverLte => "semver_lte",
            Op::SemverGt => "semver_gt",
            Op::SemverGte => "semver_gte",
            Op::Before => "before",
            Op::After => "after",
            Op::Exists => "exists",
        }
    }
}

/// A named, reusable list of conditions; a context is a member when all hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentSpec {
    pub key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub conditions: Vec<ConditionSpec>,
}
