//! Typed refusals: what the engine returns instead of a number it cannot
//! stand behind.
//!
//! A statistic is either a value or [`Outcome::Insufficient`] with an
//! [`InsufficientData`] reason — never NaN, never a panic. In JSON a value is
//! the plain value and a refusal is `{"insufficient_data": {"reason": …}}`, so
//! a reader can tell "no number" from a number at a glance and learn why.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

/// A statistic, or the reason the data cannot support it.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome<T> {
    /// The statistic is defined and was computed.
    Value(T),
    /// The data do not define the statistic; the reason says which part is
    /// missing.
    Insufficient(InsufficientData),
}

impl<T> Outcome<T> {
    /// The value, if there is one.
    pub fn value(&self) -> Option<&T> {
        match self {
            Outcome::Value(value) => Some(value),
            Outcome::Insufficient(_) => None,
        }
    }

    /// The value, if there is one.
    pub fn into_value(self) -> Option<T> {
        match self {
            Outcome::Value(value) => Some(value),
            Outcome::Insufficient(_) => None,
        }
    }

    /// Whether the statistic was refused.
    pub fn is_insufficient(&self) -> bool {
        matches!(self, Outcome::Insufficient(_))
    }

    /// Applies `f` to the value; a refusal stays the same refusal.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Value(value) => Outcome::Value(f(value)),
            Outcome::Insufficient(reason) => Outcome::Insufficient(reason),
        }
    }

    /// Chains a computation that may itself refuse.
    pub fn and_then<U>(self, f: impl FnOnce(T) -> Outcome<U>) -> Outcome<U> {
        match self {
            Outcome::Value(value) => f(value),
            Outcome::Insufficient(reason) => Outcome::Insufficient(reason),
        }
    }

    /// As a `Result`, for `?`.
    pub fn into_result(self) -> Result<T, InsufficientData> {
        match self {
            Outcome::Value(value) => Ok(value),
            Outcome::Insufficient(reason) => Err(reason),
        }
    }
}

impl<T> From<Result<T, InsufficientData>> for Outcome<T> {
    fn from(result: Result<T, InsufficientData>) -> Self {
        match result {
            Ok(value) => Outcome::Value(value),
            Err(reason) => Outcome::Insufficient(reason),
        }
    }
}

impl<T: Serialize> Serialize for Outcome<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Outcome::Value(value) => value.serialize(serializer),
            Outcome::Insufficient(reason) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("insufficient_data", reason)?;
                map.end()
            }
        }
    }
}

/// Why the data cannot support a statistic. Arms are numbered as given, the
/// control being arm 0.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum InsufficientData {
    /// No unit has been counted at all.
    NoUnits,
    /// This arm has no units, so it has no mean.
    EmptyArm { arm: usize },
    /// The metric does not vary across this arm's units: all units equal
    /// (a conversion rate of 0% or 100%, a single unit, a ratio whose
    /// denominator sums to 0). Its standard error would claim a precision the
    /// data do not have (GrowthBook: `ZERO_NEGATIVE_VARIANCE`).
    ZeroVariance { arm: usize },
    /// The control's mean is 0, so a lift relative to it is undefined, and so
    /// is the prior on the absolute lift, which is scaled by it (GrowthBook:
    /// `ZERO_NEGATIVE_BASELINE_VARIATION`).
    ZeroBaseline,
    /// The estimate's variance is 0: nothing to divide by.
    ZeroStandardError,
    /// Too few units in this arm for the order-statistic interval of the
    /// quantile: the interval's rank `n·ν ± z·√(n·ν·(1 − ν))` runs past the
    /// smallest or largest unit, i.e. `n ≤ z²·ν/(1 − ν)` (or `z²·(1 − ν)/ν`).
    /// `min_units` is the smallest count that would do.
    TooFewUnitsForQuantile { arm: usize, n: u64, min_units: u64 },
}

/// Whether a lift may be acted on: `"ok"`, or refused with a reason while the
/// arithmetic is still reported for inspection.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LiftStatus {
    /// Every input the lift rests on is adequate.
    Ok,
    /// The numbers beside this status are arithmetic only; do not decide on
    /// them.
    InsufficientData(InsufficientData),
}

impl LiftStatus {
    /// Whether the lift may be acted on.
    pub fn is_ok(&self) -> bool {
        matches!(self, LiftStatus::Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_serializes_as_a_tagged_object() {
        let refused: Outcome<f64> =
            Outcome::Insufficient(InsufficientData::ZeroVariance { arm: 1 });
        assert_eq!(
            serde_json::to_value(&refused).unwrap(),
            serde_json::json!({"insufficient_data": {"reason": "zero_variance", "arm": 1}})
        );
        assert_eq!(
            serde_json::to_value(Outcome::Value(0.5)).unwrap(),
            serde_json::json!(0.5)
        );
        assert_eq!(
            serde_json::to_value(LiftStatus::Ok).unwrap(),
            serde_json::json!("ok")
        );
        assert_eq!(
            serde_json::to_value(LiftStatus::InsufficientData(InsufficientData::ZeroBaseline))
                .unwrap(),
            serde_json::json!({"insufficient_data": {"reason": "zero_baseline"}})
        );
    }
}
