//! Notification channels (`[[channels]]`): where the server announces what
//! rollouts do, in which body format, signed with which secret. Kept like the
//! other config items (versions, audit), validated as a whole on apply.

use flags::ValidationError;
use serde::{Deserialize, Serialize};

/// What the API, an export and the audit log show instead of a channel's
/// secret. Applying it for an existing channel keeps the stored secret.
pub const REDACTED_SECRET: &str = "[redacted]";

/// Every event a channel may ask for (`"*"` asks for all of them).
pub const CHANNEL_EVENTS: &[&str] = &[
    "phase_started",
    "phase_advanced",
    "rollout_held",
    "guard_warning",
    "rollback",
    "incident_opened",
    "incident_updated",
    "incident_resolved",
    "feature_announcement",
    "daily_digest",
    "weekly_report",
];

/// The support levels a channel may serve.
pub const SUPPORT_LEVELS: &[&str] = &["L1", "L2", "L3"];

/// A channel as written in a config document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    pub key: String,
    /// The webhook: an `http` or `https` URL.
    pub url: String,
    /// The body: `json` (Rollgate's own payload) or `slack`.
    #[serde(default)]
    pub format: ChannelFormat,
    /// The HMAC-SHA256 key of the `X-Rollgate-Signature` header.
    pub secret: String,
    /// The events the channel receives, by name, or `"*"` for all.
    pub events: Vec<String>,
    /// The support levels it serves (`L1`, `L2`, `L3`); every level when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub levels: Option<Vec<String>>,
    /// When the daily digest (and, on `weekly_on`, the weekly report) goes
    /// out: `HH:MM`, local time in `timezone`. Default [`DEFAULT_DIGEST_AT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_at: Option<String>,
    /// The IANA time zone of `digest_at` (`Europe/Berlin`). Default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The day of the weekly report (`monday` … `sunday`). Default monday.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly_on: Option<String>,
}

/// When the daily digest goes out when a channel does not say.
pub const DEFAULT_DIGEST_AT: &str = "09:00";
/// The time zone of a channel's schedule when it does not say.
pub const DEFAULT_TIMEZONE: &str = "UTC";
/// The day of the weekly report when a channel does not say.
pub const DEFAULT_WEEKLY_ON: &str = "monday";

/// The days `weekly_on` accepts, Monday first.
pub const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// `HH:MM` (24-hour, two digits each) as (hour, minute).
pub fn parse_time_of_day(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("`{text}` is not a time of day; write HH:MM in 24 hours, e.g. \"09:00\"");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let (hour, minute): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if hour > 23 || minute > 59 {
        return Err(bad());
    }
    Ok((hour, minute))
}

/// An IANA time zone name (`Europe/Berlin`, `UTC`).
pub fn parse_timezone(text: &str) -> Result<chrono_tz::Tz, String> {
    text.parse::<chrono_tz::Tz>().map_err(|_| {
        format!("`{text}` is not an IANA time zone name; write e.g. \"Europe/Berlin\" or \"UTC\"")
    })
}

/// A day of the week, by its English name in lower case.
pub fn parse_weekday(text: &str) -> Result<chrono::Weekday, String> {
    WEEKDAYS
        .iter()
        .position(|d| *d == text)
        .and_then(|i| chrono::Weekday::try_from(i as u8).ok())
        .ok_or_else(|| format!("`{text}` is not a day; use one of {}", WEEKDAYS.join(", ")))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelFormat {
    #[default]
    Json,
    Slack,
}

impl ChannelSpec {
    /// Whether the channel asked for `event`.
    pub fn wants(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == "*" || e == event)
    }

    /// The spec with its secret replaced by [`REDACTED_SECRET`].
    pub fn redacted(&self) -> ChannelSpec {
        ChannelSpec {
            secret: REDACTED_SECRET.to_owned(),
            ..self.clone()
        }
    }
}

/// Checks every channel; every problem names the channel and the field.
pub fn check_channels(channels: &[ChannelSpec]) -> Vec<ValidationError> {
    let mut problems = Vec::new();
    for channel in channels {
        let subject = format!("channel `{}`", channel.key);
        let mut problem = |field: String, message: String| {
            problems.push(ValidationError {
                subject: subject.clone(),
                field,
                message,
            })
        };
        if let Err(e) = flags::check_key(&channel.key) {
            problem("key".to_owned(), format!("key {e}"));
        }
        match url::Url::parse(&channel.url) {
            Ok(url) if !matches!(url.scheme(), "http" | "https") => problem(
                "url".to_owned(),
                format!("`{}` is not an http or https URL", channel.url),
            ),
            Ok(url) if url.host_str().is_none_or(str::is_empty) => {
                problem("url".to_owned(), format!("`{}` has no host", channel.url))
            }
            Ok(_) => {}
            Err(e) => problem(
                "url".to_owned(),
                format!("`{}` is not a valid URL: {e}", channel.url),
            ),
        }
        if channel.secret.trim().is_empty() {
            problem(
                "secret".to_owned(),
                "give the HMAC key that signs deliveries".to_owned(),
            );
        } else if channel.secret == REDACTED_SECRET {
            problem(
                "secret".to_owned(),
                format!(
                    "`{REDACTED_SECRET}` only keeps the secret of an existing channel; give the secret"
                ),
            );
        }
        if channel.events.is_empty() {
            problem(
                "events".to_owned(),
                "name at least one event, or \"*\" for all".to_owned(),
            );
        }
        for (i, event) in channel.events.iter().enumerate() {
            if event != "*" && !CHANNEL_EVENTS.contains(&event.as_str()) {
                problem(
                    format!("events[{i}]"),
                    format!(
                        "unknown event `{event}`; use \"*\" or one of {}",
                        CHANNEL_EVENTS.join(", ")
                    ),
                );
            }
        }
        if let Some(Err(e)) = channel.digest_at.as_deref().map(parse_time_of_day) {
            problem("digest_at".to_owned(), e);
        }
        if let Some(Err(e)) = channel.timezone.as_deref().map(parse_timezone) {
            problem("timezone".to_owned(), e);
        }
        if let Some(Err(e)) = channel.weekly_on.as_deref().map(parse_weekday) {
            problem("weekly_on".to_owned(), e);
        }
        for (i, level) in channel.levels.iter().flatten().enumerate() {
            if !SUPPORT_LEVELS.contains(&level.as_str()) {
                problem(
                    format!("levels[{i}]"),
                    format!(
                        "unknown support level `{level}`; use {}",
                        SUPPORT_LEVELS.join(", ")
                    ),
                );
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(url: &str, events: &[&str]) -> ChannelSpec {
        ChannelSpec {
            key: "ops".to_owned(),
            url: url.to_owned(),
            format: ChannelFormat::Slack,
            secret: "s3cret".to_owned(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            levels: Some(vec!["L2".to_owned(), "L3".to_owned()]),
            digest_at: None,
            timezone: None,
            weekly_on: None,
        }
    }

    fn fields(channels: &[ChannelSpec]) -> Vec<String> {
        check_channels(channels)
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_good_channel_passes_and_bad_fields_are_named() {
        assert!(fields(&[channel("https://hooks.example.com/T0", &["rollback"])]).is_empty());
        assert!(fields(&[channel("http://127.0.0.1:9/x", &["*"])]).is_empty());
        assert_eq!(
            fields(&[channel("ftp://x.example/", &["rollback"])]),
            ["url"]
        );
        assert_eq!(fields(&[channel("not a url", &["rollback"])]), ["url"]);
        assert_eq!(
            fields(&[channel("https://x.example/", &["rollback", "explosion"])]),
            ["events[1]"]
        );
        let mut bad_level = channel("https://x.example/", &["rollback"]);
        bad_level.levels = Some(vec!["L9".to_owned()]);
        assert_eq!(fields(&[bad_level]), ["levels[0]"]);
    }

    #[test]
    fn schedule_fields_are_checked_and_named() {
        let with = |digest_at: &str, timezone: &str, weekly_on: &str| {
            let mut c = channel("https://x.example/", &["daily_digest", "weekly_report"]);
            c.digest_at = Some(digest_at.to_owned());
            c.timezone = Some(timezone.to_owned());
            c.weekly_on = Some(weekly_on.to_owned());
            check_channels(&[c])
        };
        assert!(with("09:00", "Europe/Berlin", "monday").is_empty());
        assert!(with("23:59", "UTC", "sunday").is_empty());
        assert!(with("00:00", "America/New_York", "friday").is_empty());
        for (digest_at, timezone, weekly_on, field, says) in [
            ("9:00", "UTC", "monday", "digest_at", "HH:MM"),
            ("24:00", "UTC", "monday", "digest_at", "HH:MM"),
            ("09:60", "UTC", "monday", "digest_at", "HH:MM"),
            ("09:00:00", "UTC", "monday", "digest_at", "HH:MM"),
            ("noon", "UTC", "monday", "digest_at", "HH:MM"),
            ("09:00", "Europe/Springfield", "monday", "timezone", "IANA"),
            ("09:00", "+02:00", "monday", "timezone", "IANA"),
            ("09:00", "UTC", "Monday", "weekly_on", "monday, tuesday"),
            ("09:00", "UTC", "mon", "weekly_on", "monday, tuesday"),
        ] {
            let problems = with(digest_at, timezone, weekly_on);
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].field, field);
            assert_eq!(problems[0].subject, "channel `ops`");
            assert!(
                problems[0].message.contains(says),
                "{}",
                problems[0].message
            );
        }
        assert_eq!(parse_time_of_day("07:05"), Ok((7, 5)));
        assert_eq!(parse_weekday("wednesday"), Ok(chrono::Weekday::Wed));
    }

    #[test]
    fn schedule_fields_are_optional_and_unknown_fields_refused() {
        let parsed: ChannelSpec = serde_json::from_value(serde_json::json!({
            "key": "ops", "url": "https://x.example/", "secret": "s", "events": ["daily_digest"],
            "digest_at": "08:30", "timezone": "Europe/Berlin", "weekly_on": "friday"
        }))
        .expect("parses");
        assert_eq!(parsed.digest_at.as_deref(), Some("08:30"));
        let unknown = serde_json::from_value::<ChannelSpec>(serde_json::json!({
            "key": "ops", "url": "https://x.example/", "secret": "s", "events": ["daily_digest"],
            "digest_time": "08:30"
        }));
        assert!(unknown.is_err());
    }

    #[test]
    fn wants_matches_names_and_the_wildcard() {
        assert!(channel("https://x.example/", &["rollback"]).wants("rollback"));
        assert!(!channel("https://x.example/", &["rollback"]).wants("phase_started"));
        assert!(channel("https://x.example/", &["*"]).wants("phase_started"));
    }
}
