//! Evaluation: the hot path. It never panics and never returns `Err`: every
//! outcome is an [`Evaluation`] with a reason, and on failure an error code.

use std::cmp::Ordering;

use serde_json::Value;

use crate::bucket::bucket;
use crate::compile::{
    Attribute, CompiledFlag, CompiledServe, Cond, FlagSet, Scalar, Test, parse_instant_ns,
    parse_semver, unix_seconds_ns,
};
use crate::context::{AttrRef, Context};
use crate::spec::FlagType;

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
            reason: Reason::Error,
            error: Some(EvalError { code, message }),
        }
    }
}

impl FlagSet {
    /// Evaluates a flag by key; an unknown key is `FLAG_NOT_FOUND`.
    pub fn evaluate(&self, key: &str, ctx: &Context) -> Evaluation<'_> {
        match self.flags.get(key) {
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
        match self.flags.get(key) {
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
        let attributes = Attributes::resolve(&self.attributes, ctx);
        for rule in &self.rules {
            if rule.conditions.iter().all(|c| holds(c, ctx, &attributes)) {
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

    fn serve(&self, serve: &CompiledServe, ctx: &Context, single: Reason) -> Evaluation<'_> {
        match serve {
            CompiledServe::Variant(v) => Evaluation::served(self, *v, single),
            CompiledServe::Split { bounds, arms } => {
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
                let b = bucket(&self.salt, unit);
                let arm = bounds
                    .iter()
                    .position(|bound| b < *bound)
                    .unwrap_or(bounds.len().saturating_sub(1));
                match arms.get(arm) {
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

/// Most flags read a few attributes and most contexts carry a few: then one
/// pass over the context finds them all.
const MAX_RESOLVED_ATTRIBUTES: usize = 8;
/// Above this many context attributes, a pass costs more than the lookups.
const MAX_CONTEXT_ATTRIBUTES_FOR_ONE_PASS: usize = 16;

/// The values of a flag's attribute slots for one context.
enum Attributes<'a> {
    /// Found in one pass over the context; `None` is absent or `null`.
    Resolved([Option<&'a Value>; MAX_RESOLVED_ATTRIBUTES]),
    /// Looked up per condition.
    OnDemand {
        names: &'a [String],
        ctx: &'a Context,
    },
}

impl<'a> Attributes<'a> {
    fn resolve(names: &'a [String], ctx: &'a Context) -> Self {
        if names.len() > MAX_RESOLVED_ATTRIBUTES
            || ctx.attributes.len() > MAX_CONTEXT_ATTRIBUTES_FOR_ONE_PASS
        {
            return Attributes::OnDemand { names, ctx };
        }
        let mut values = [None; MAX_RESOLVED_ATTRIBUTES];
        if !names.is_empty() {
            for (key, value) in &ctx.attributes {
                // Comparing strings compares lengths first, so most pairs cost one comparison.
                if let Some(slot) = names
                    .iter()
                    .position(|n| same_bytes(n.as_bytes(), key.as_bytes()))
                {
                    values[slot] = Some(value).filter(|v| !v.is_null());
                }
            }
        }
        Attributes::Resolved(values)
    }

    fn get(&self, slot: usize) -> Option<&'a Value> {
        match self {
            Attributes::Resolved(values) => values.get(slot).copied().flatten(),
            Attributes::OnDemand { names, ctx } => names.get(slot).and_then(|n| ctx.attribute(n)),
        }
    }
}

fn holds(cond: &Cond, ctx: &Context, attributes: &Attributes<'_>) -> bool {
    let value = match cond.attribute {
        Attribute::TargetingKey => ctx.targeting_key.as_deref().map(AttrRef::Str),
        Attribute::Slot(slot) => attributes.get(slot).map(AttrRef::Json),
    };
    // A missing attribute satisfies no test, not even a negative one: a
    // context that lacks `country` is not "outside DE", it is unknown.
    value.is_some_and(|v| test_holds(&cond.test, v))
}

impl Scalar {
    /// JSON equality, except that numbers compare by value (`1 == 1.0`).
    fn matches(&self, attr: AttrRef<'_>) -> bool {
        match self {
            Scalar::Str(expected) => attr
                .as_str()
                .is_some_and(|s| same_bytes(s.as_bytes(), expected.as_bytes())),
            Scalar::Num(expected) => attr.as_f64() == Some(*expected),
            Scalar::Bool(expected) => {
                matches!(attr, AttrRef::Json(Value::Bool(b)) if b == expected)
            }
        }
    }
}

fn test_holds(test: &Test, attr: AttrRef<'_>) -> bool {
    match test {
        Test::Eq(v) => v.matches(attr),
        Test::Neq(v) => !v.matches(attr),
        Test::In(vs) => vs.iter().any(|v| v.matches(attr)),
        Test::NotIn(vs) => !vs.iter().any(|v| v.matches(attr)),
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

/// How a version attribute ranks against a condition's version, by SemVer
/// precedence: build metadata is ignored (SemVer 2.0.0, §10), which
/// `semver::Version`'s `Ord` does not do. `None` when the attribute is not a
/// version.
fn semver_precedence(attr: &str, target: &semver::Version) -> Option<Ordering> {
    let bare = attr.strip_prefix('v').unwrap_or(attr);
    // Most attributes are plain `MAJOR.MINOR.PATCH`; comparing their numbers
    // directly spares a full parse on the hot path.
    if let Some(numbers) = plain_version(bare) {
        let ord = numbers.cmp(&(target.major, target.minor, target.patch));
        // A release ranks above the pre-releases of the same numbers.
        let pre = if target.pre.is_empty() {
            Ordering::Equal
        } else {
            Ordering::Greater
        };
        return Some(ord.then(pre));
    }
    parse_semver(attr).map(|a| a.cmp_precedence(target))
}

/// `MAJOR.MINOR.PATCH` with nothing after it, or `None` for anything else
/// (which then takes the full parser). Accepts only what `semver` accepts:
/// no leading zeros, numbers that fit `u64`.
fn plain_version(s: &str) -> Option<(u64, u64, u64)> {
    let mut rest = s.as_bytes();
    let mut number = |last: bool| -> Option<u64> {
        let end = rest
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(rest.len());
        let (digits, tail) = rest.split_at(end);
        let leading_zero = digits.len() > 1 && digits.starts_with(b"0");
        if digits.is_empty() || leading_zero {
            return None;
        }
        rest = match (last, tail) {
            (true, []) => tail,
            (false, [b'.', after @ ..]) => after,
            _ => return None,
        };
        digits.iter().try_fold(0u64, |n, d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
    };
    Some((number(false)?, number(false)?, number(true)?))
}

/// Up to this length, [`same_bytes`] compares inline.
const INLINE_COMPARE_MAX_LEN: usize = 64;

/// Byte equality. Attribute names and values are short, and for a few bytes
/// a call into libc's `memcmp` (what `==` on slices becomes) costs several
/// times the comparison itself; this compares in machine words instead, the
/// last word overlapping the one before.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0 => true,
        1..4 => a.iter().zip(b).all(|(x, y)| x == y),
        4..8 => word32(a, 0) == word32(b, 0) && word32(a, n - 4) == word32(b, n - 4),
        8..=INLINE_COMPARE_MAX_LEN => {
            (0..n / 8).all(|i| word64(a, i * 8) == word64(b, i * 8))
                && word64(a, n - 8) == word64(b, n - 8)
        }
        _ => a == b,
    }
}

fn word32(s: &[u8], at: usize) -> Option<u32> {
    s.get(at..at + 4)
        .and_then(|w| w.try_into().ok())
        .map(u32::from_ne_bytes)
}

fn word64(s: &[u8], at: usize) -> Option<u64> {
    s.get(at..at + 8)
        .and_then(|w| w.try_into().ok())
        .map(u64::from_ne_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn same_bytes_is_equality() {
        let words = [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "abcde",
            "abcdefg",
            "abcdefgh",
            "abcdefghi",
            "é",
            "ü",
        ];
        for a in words {
            for b in words {
                assert_eq!(
                    same_bytes(a.as_bytes(), b.as_bytes()),
                    a == b,
                    "{a:?} {b:?}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn same_bytes_agrees_with_slice_equality(a in proptest::collection::vec(0u8..4, 0..80), flip in any::<prop::sample::Index>()) {
            prop_assert!(same_bytes(&a, &a));
            let mut b = a.clone();
            if !b.is_empty() {
                let i = flip.index(b.len());
                b[i] ^= 1;
                prop_assert!(!same_bytes(&a, &b));
            }
        }

        /// The fast path accepts exactly the plain versions `semver` accepts,
        /// with the same numbers.
        #[test]
        fn plain_version_agrees_with_semver(s in "[0-9.]{0,12}|[0-9]{1,22}\\.[0-9]{1,3}\\.[0-9]{1,3}|0[0-9]\\.1\\.2") {
            let full = semver::Version::parse(&s).ok();
            let plain = full.as_ref().map(|v| (v.major, v.minor, v.patch));
            prop_assert_eq!(plain_version(&s), plain);
        }

        /// The fast path and the full parser rank versions alike.
        #[test]
        fn precedence_agrees_with_semver(
            attr in "v?[0-9]{1,2}\\.[0-9]{1,2}\\.[0-9]{1,2}(-(rc|alpha|[0-9]{1,2})(\\.[0-9]{1,2})?)?(\\+[a-z0-9]{1,4})?",
            target in "[0-9]{1,2}\\.[0-9]{1,2}\\.[0-9]{1,2}(-(rc|alpha|[0-9]{1,2}))?",
        ) {
            let target = semver::Version::parse(&target).map_err(|e| TestCaseError::reject(e.to_string()))?;
            let expected = parse_semver(&attr).map(|a| a.cmp_precedence(&target));
            prop_assert_eq!(semver_precedence(&attr, &target), expected);
        }
    }
}
