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
    fn wants_matches_names_and_the_wildcard() {
        assert!(channel("https://x.example/", &["rollback"]).wants("rollback"));
        assert!(!channel("https://x.example/", &["rollback"]).wants("phase_started"));
        assert!(channel("https://x.example/", &["*"]).wants("phase_started"));
    }
}
