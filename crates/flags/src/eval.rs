//! Evaluation: the hot path. It never panics and never returns `Err`: every
//! outcome is an [`Evaluation`] with a reason, and on failure an error code.

use serde_json::Value;

use crate::bucket::bucket;
use crate::bytes::same_bytes;
use crate::compile::{
    Attribute, CompiledFlag, CompiledServe, Cond, FlagSet, ScalarSet, StringSet, Test,
    parse_instant_ns, unix_seconds_ns,
};
use crate::context::{AttrRef, Context};
use crate::spec::FlagType;
use crate::version::semver_precedence;

/// Why a value was served. The names are OpenFeature's resolution reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The flag has no targeting: every context gets the same value.
    Static,
    /// A targeting rule that serves one variant matched.
    TargetingMatch,
    /// A percentage split (of a rule or of the default) chose the variant.
    Split,
    /// The flag is switched off; the off-variant is served.
    Disabled,
    /// No rule matched; the default rule's single variant is served.
    Default,
    /// Evaluation failed; see the error code.
    Error,
}

impl Reason {
    pub const ALL: [Reason; 6] = [
        Reason::Static,
        Reason::TargetingMatch,
        Reason::Split,
        Reason::Disabled,
        Reason::Default,
        Reason::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Split => "SPLIT",
            Reason::Disabled => "DISABLED",
            Reason::Default => "DEFAULT",
            Reason::Error => "ERROR",
        }
    }
}

/// OpenFeature error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    FlagNotFound,
    TypeMismatch,
    TargetingKeyMissing,
    ParseError,
    General,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::TypeMismatch => "TYPE_MISMATCH",
            ErrorCode::TargetingKeyMissing => "TARGETING_KEY_MISSING",
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::General => "GENERAL",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalError {
    pub code: ErrorCode,
    pub message: String,
}

/// The outcome of evaluating one flag for one context. On an error there is no
/// value and no variant: the caller falls back to its code default.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation<'a> {
    pub value: Option<&'a Value>,
    pub variant: Option<&'a str>,
    /// When the variant's arm selects automatically: the variant whose
    /// value was served ([`FlagSet::select_automatically`]).
    pub selected: Option<&'a str>,
    pub reason: Reason,
    pub error: Option<EvalError>,
}

impl<'a> Evaluation<'a> {
    fn served(flag: &'a CompiledFlag, variant: usize, reason: Reason) -> Self {
        // Compilation only produces indexes into `variants`; `get` keeps this
        // total even if that invariant were ever broken.
        match flag.variants.get(variant) {
            Some((name, value)) => Evaluation {
                value: Some(value),
                variant: Some(name),
                selected: None,
                reason,
                error: None,
            },
            None => Evaluation::error(
                ErrorCode::General,
                format!("flag `{}` has no variant #{variant}", flag.key),
            ),
        }
    }

    pub fn error(code: ErrorCode, message: String) -> Self {
        Evaluation {
            value: None,
            variant: None,
            selected: None,
            reason: Reason::Error,
            error: Some(EvalError { code, message }),
        }
    }
}

impl FlagSet {
    /// Evaluates a flag by key; an unknown key is `FLAG_NOT_FOUND`.
    pub fn evaluate(&self, key: &str, ctx: &Context) -> Evaluation<'_> {
        match self.get(key) {
            Some(flag) => flag.evaluate(ctx),
            None => Evaluation::error(
                ErrorCode::FlagNotFound,
                format!("flag `{key}` was not found"),
            ),
        }
    }

    /// Evaluates a flag whose caller expects a type; another type is
    /// `TYPE_MISMATCH`. An integer flag satisfies a float request.
    pub fn evaluate_as(&self, key: &str, ctx: &Context, expected: FlagType) -> Evaluation<'_> {
        match self.get(key) {
            Some(flag)
                if flag.flag_type != expected
                    && !(expected == FlagType::Float && flag.flag_type == FlagType::Integer) =>
            {
                Evaluation::error(
                    ErrorCode::TypeMismatch,
                    format!("flag `{key}` is of type {}, not {expected}", flag.flag_type),
                )
            }
            _ => self.evaluate(key, ctx),
        }
    }
}

impl CompiledFlag {
    pub fn evaluate(&self, ctx: &Context) -> Evaluation<'_> {
        if !self.enabled {
            return Evaluation::served(self, self.off_variant, Reason::Disabled);
        }
        for rule in &self.rules {
            if rule.conditions.iter().all(|c| holds(c, ctx)) {
                return self.serve(&rule.serve, ctx, Reason::TargetingMatch);
            }
        }
        let fallthrough = if self.rules.is_empty() {
            Reason::Static
        } else {
            Reason::Default
        };
        self.serve(&self.default, ctx, fallthrough)
    }

    #[inline(always)]
    fn serve(&self, serve: &CompiledServe, ctx: &Context, single: Reason) -> Evaluation<'_> {
        match serve {
            CompiledServe::Variant(v) => Evaluation::served(self, *v, single),
            CompiledServe::Split {
                bounds,
                arms,
                rollout,
            } => {
                // An empty key identifies nobody: bucketing it would put every
                // caller without a key into one bucket, skewing the split.
                let Some(unit) = ctx.targeting_key.as_deref().filter(|k| !k.is_empty()) else {
                    return Evaluation::error(
                        ErrorCode::TargetingKeyMissing,
                        format!(
                            "flag `{}` splits by percentage and needs a non-empty targetingKey",
                            self.key
                        ),
                    );
                };
                if let Some(rollout) = rollout
                    && bucket(&self.rollout_salt, unit) >= rollout.bound
                {
                    return Evaluation::served(self, rollout.otherwise, Reason::Split);
                }
                let b = bucket(&self.salt, unit);
                let arm = bounds
                    .iter()
                    .position(|bound| b < *bound)
                    .unwrap_or(bounds.len().saturating_sub(1));
                match arms.get(arm) {
                    Some(v) if self.auto.as_ref().is_some_and(|a| a.arm == *v) => {
                        self.select(*v, unit)
                    }
                    Some(v) => Evaluation::served(self, *v, Reason::Split),
                    None => Evaluation::error(
                        ErrorCode::General,
                        format!("flag `{}` has an empty split", self.key),
                    ),
                }
            }
        }
    }
}

impl CompiledFlag {
    /// Serves a unit of the automatically selecting arm `arm` the value of
    /// its choice; the variant stays `arm`.
    fn select(&self, arm: usize, unit: &str) -> Evaluation<'_> {
        let mut evaluation = Evaluation::served(self, arm, Reason::Split);
        let Some(auto) = &self.auto else {
            return evaluation;
        };
        let b = bucket(&self.auto_salt, unit);
        let choice = auto
            .bounds
            .iter()
            .position(|bound| b < *bound)
            .and_then(|i| auto.variants.get(i))
            .and_then(|v| self.variants.get(*v));
        if let Some((name, value)) = choice {
            evaluation.value = Some(value);
            evaluation.selected = Some(name);
        }
        evaluation
    }
}

fn holds(cond: &Cond, ctx: &Context) -> bool {
    let value = match &cond.attribute {
        Attribute::TargetingKey => ctx.targeting_key.as_deref().map(AttrRef::Str),
        Attribute::Named(name) => ctx.attributes.find(name).map(AttrRef::Json),
    };
    // A missing attribute satisfies no test, not even a negative one: a
    // context that lacks `country` is not "outside DE", it is unknown.
    value.is_some_and(|v| test_holds(&cond.test, v))
}

impl ScalarSet {
    /// Whether the attribute equals one of the values: JSON equality, except
    /// that numbers compare by value (`1 == 1.0`).
    #[inline(always)]
    fn contains(&self, attr: AttrRef<'_>) -> bool {
        match attr {
            AttrRef::Str(s) => self.strings.contains(s),
            AttrRef::Json(Value::String(s)) => self.strings.contains(s),
            AttrRef::Json(Value::Number(n)) => {
                n.as_f64().is_some_and(|n| self.numbers.contains(&n))
            }
            AttrRef::Json(Value::Bool(b)) => self.booleans[usize::from(*b)],
            AttrRef::Json(_) => false,
        }
    }
}

impl StringSet {
    #[inline(always)]
    fn contains(&self, s: &str) -> bool {
        match self {
            StringSet::Scanned(strings) => strings
                .iter()
                .any(|expected| same_bytes(expected.as_bytes(), s.as_bytes())),
            StringSet::Hashed(strings) => strings.contains(s),
        }
    }
}

fn test_holds(test: &Test, attr: AttrRef<'_>) -> bool {
    match test {
        Test::In(set) => set.contains(attr),
        Test::NotIn(set) => !set.contains(attr),
        Test::Contains(needles) => match attr {
            // On a list attribute, `contains` asks whether the list has one of the values.
            AttrRef::Json(Value::Array(items)) => items.iter().any(|item| {
                item.as_str()
                    .is_some_and(|s| needles.iter().any(|n| n == s))
            }),
            _ => attr
                .as_str()
                .is_some_and(|s| needles.iter().any(|n| s.contains(n.as_str()))),
        },
        Test::StartsWith(ps) => attr.as_str().is_some_and(|s| {
            let s = s.as_bytes();
            ps.iter().any(|p| {
                s.get(..p.len())
                    .is_some_and(|head| same_bytes(head, p.as_bytes()))
            })
        }),
        Test::EndsWith(ps) => attr.as_str().is_some_and(|s| {
            let s = s.as_bytes();
            ps.iter().any(|p| {
                s.len()
                    .checked_sub(p.len())
                    .and_then(|at| s.get(at..))
                    .is_some_and(|tail| same_bytes(tail, p.as_bytes()))
            })
        }),
        Test::Regex(res) => attr
            .as_str()
            .is_some_and(|s| res.iter().any(|r| r.is_match(s))),
        Test::Number(cmp, n) => attr
            .as_f64()
            .and_then(|a| a.partial_cmp(n))
            .is_some_and(|o| cmp.holds(o)),
        Test::Semver(cmp, v) => attr
            .as_str()
            .and_then(|a| semver_precedence(a, v))
            .is_some_and(|o| cmp.holds(o)),
        Test::Date(cmp, ns) => {
            // A date attribute is an RFC 3339 string or Unix seconds.
            let at = match attr {
                AttrRef::Json(Value::Number(secs)) => unix_seconds_ns(secs),
                _ => attr.as_str().and_then(parse_instant_ns),
            };
            at.is_some_and(|a| cmp.holds(a.cmp(ns)))
        }
        Test::Exists => true,
    }
}
