//! Rollout plans as written in a config file (`[[rollouts]]`, one per flag).

use serde::{Deserialize, Serialize};

/// One staged rollout of a flag's treatment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutSpec {
    /// The flag; a flag has at most one rollout, so this is its key.
    pub flag: String,
    /// The variant being rolled out.
    pub treatment: String,
    /// The variant everyone else gets, and everyone after a rollback.
    pub control: String,
    /// The randomization unit: the context attribute that identifies a unit.
    /// Only `targetingKey` is supported (bucketing hashes it).
    #[serde(default = "default_unit")]
    pub unit: String,
    /// `auto`: advance when a phase's time is up and its gates hold;
    /// `manual`: wait for `rollgate rollout advance`.
    #[serde(default)]
    pub advance: Advance,
    /// Free text for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The phases, in order; percentages never decrease.
    pub phases: Vec<PhaseSpec>,
    /// Gates: must hold at the end of every phase to advance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub success: Vec<GateSpec>,
    /// Triggers: checked continuously while the rollout runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guards: Vec<GuardSpec>,
    /// The guards' false-alarm budget per phase, in (0, 0.5): under no
    /// regression, the chance that any guard fires during a phase, at any of
    /// its looks, is at most this. Default 0.05.
    #[serde(default = "default_alpha", skip_serializing_if = "is_default_alpha")]
    pub alpha: f64,
    /// The guards' confidence sequences are tightest at this many units
    /// (treatment plus control for a relative guard); valid at every look
    /// whatever its value. Default 5000.
    #[serde(
        default = "default_sequential_tuning",
        skip_serializing_if = "is_default_sequential_tuning"
    )]
    pub sequential_tuning: f64,
    /// How long an incident of this rollout may stay unacknowledged before
    /// it escalates to the next support level (`"30m"`, `"2h"`). Default
    /// 30 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalate_after: Option<String>,
    /// The feature announcement sent (event `feature_announcement`) when the
    /// rollout reaches general availability: the start of its last phase at
    /// 100%. Free text for users, e.g. release notes in two sentences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announcement: Option<String>,
}

/// How long an incident stays unacknowledged before it escalates, when the
/// plan does not say.
pub const DEFAULT_ESCALATE_AFTER_MS: i64 = 30 * 60 * 1_000;

/// The support levels of the seed: who looks at an incident.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum SupportLevel {
    /// Basic troubleshooting.
    L1,
    /// Technical investigation (the default for a guard's incident).
    #[default]
    L2,
    /// Core system issues: data accuracy, critical bugs.
    L3,
}

impl SupportLevel {
    pub const ALL: [SupportLevel; 3] = [SupportLevel::L1, SupportLevel::L2, SupportLevel::L3];

    pub fn as_str(self) -> &'static str {
        match self {
            SupportLevel::L1 => "L1",
            SupportLevel::L2 => "L2",
            SupportLevel::L3 => "L3",
        }
    }

    /// The level above; `None` at L3.
    pub fn next(self) -> Option<SupportLevel> {
        match self {
            SupportLevel::L1 => Some(SupportLevel::L2),
            SupportLevel::L2 => Some(SupportLevel::L3),
            SupportLevel::L3 => None,
        }
    }

    /// `L1`, `L2` or `L3`.
    pub fn parse(text: &str) -> Option<SupportLevel> {
        SupportLevel::ALL.into_iter().find(|l| l.as_str() == text)
    }
}

/// The guards' false-alarm budget per phase when none is given.
pub const DEFAULT_ALPHA: f64 = 0.05;
/// The confidence sequences' tuning parameter when none is given.
pub const DEFAULT_SEQUENTIAL_TUNING: f64 = 5000.0;

fn default_unit() -> String {
    "targetingKey".to_owned()
}

fn default_alpha() -> f64 {
    DEFAULT_ALPHA
}

fn is_default_alpha(alpha: &f64) -> bool {
    *alpha == DEFAULT_ALPHA
}

fn default_sequential_tuning() -> f64 {
    DEFAULT_SEQUENTIAL_TUNING
}

fn is_default_sequential_tuning(tuning: &f64) -> bool {
    *tuning == DEFAULT_SEQUENTIAL_TUNING
}

/// How a rollout moves from one phase to the next.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Advance {
    /// When the phase's time is up and every gate holds.
    #[default]
    Auto,
    /// When a person runs `rollgate rollout advance` (after the phase's time
    /// is up and its gates hold, the rollout waits, held, for them).
    Manual,
}

/// One phase: a share of units on the treatment for a time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseSpec {
    pub name: String,
    /// Percentage of units served the treatment (steps of 0.001).
    pub percent: f64,
    /// How long the phase lasts at least: a number with `s`, `m`, `h` or `d`
    /// (`"14d"`, `"90s"`).
    pub duration: String,
    /// A segment the phase is limited to (units outside it get control).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// An experiment run during this phase: the phase's units are split
    /// across its arms by their weights, the rollout's control as control.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<String>,
}

/// A success criterion (gate): the metric's estimate over the phase must meet
/// its limit, with at least `min_samples` units, for the phase to advance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    pub metric: String,
    /// The treatment's value must be at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// The treatment's value must be at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Units of the treatment needed before the gate can hold. Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<u64>,
}

/// A rollback trigger (guard), checked continuously.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardSpec {
    pub metric: String,
    /// Absolute: the treatment's value above this is a regression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Absolute: the treatment's value below this is a regression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Relative to control: more than this much higher (0.2 = 20%) is a
    /// regression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_relative_increase: Option<f64>,
    /// Relative to control: more than this much lower is a regression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_relative_decrease: Option<f64>,
    #[serde(default)]
    pub action: GuardAction,
    /// Units needed in the treatment (and, for a relative guard, in the
    /// control too) before the guard may fire. Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<u64>,
    /// This guard's share of the phase's false-alarm budget `alpha`,
    /// relative to the other guards' weights (default 1 each: an even
    /// split). A heavier guard runs at a larger level and so detects its
    /// regression with fewer units; the budget as a whole stays `alpha`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// The support level its incident starts at. Default L2; name L3 for
    /// core-system triggers such as data accuracy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<SupportLevel>,
}

/// What a guard does when it finds a regression.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuardAction {
    /// Serve the control to everyone, end the rollout, open an incident.
    #[default]
    Rollback,
    /// Hold the percentage, open an incident, wait for a person.
    Pause,
}

/// Parses a duration such as `90s`, `15m`, `12h` or `14d` into
/// milliseconds: a positive whole number and one unit letter.
pub fn parse_duration_ms(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let unit = text
        .chars()
        .last()
        .ok_or_else(|| "is empty; write a number and a unit, e.g. \"14d\"".to_owned())?;
    let ms: i64 = match unit {
        's' => 1_000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        _ => {
            return Err(format!(
                "`{text}` has no unit; write a number and one of s, m, h, d, e.g. \"14d\""
            ));
        }
    };
    let number = &text[..text.len() - 1];
    match number.parse::<i64>() {
        Ok(n) if n > 0 => n
            .checked_mul(ms)
            .ok_or_else(|| format!("`{text}` is too long")),
        _ => Err(format!(
            "`{text}` must be a positive whole number and one of s, m, h, d, e.g. \"14d\""
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_seconds_minutes_hours_and_days() {
        assert_eq!(parse_duration_ms("90s"), Ok(90_000));
        assert_eq!(parse_duration_ms("15m"), Ok(900_000));
        assert_eq!(parse_duration_ms("12h"), Ok(43_200_000));
        assert_eq!(parse_duration_ms("14d"), Ok(1_209_600_000));
        for bad in ["", "14", "d", "0d", "-1d", "1.5d", "14w", "1e3s"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
        assert!(parse_duration_ms("99999999999999999d").is_err());
    }
}
