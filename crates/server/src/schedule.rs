//! Scheduled messages: the daily digest and the weekly report, sent to the
//! channels that want the events `daily_digest` and `weekly_report`, at the
//! channel's `digest_at` local time in its `timezone` (the weekly report on
//! `weekly_on`).
//!
//! What is due is pure: [`latest_scheduled_ms`] and [`due_ms`] take the
//! time as an argument, so tests inject the clock. [`run_due`] reads the
//! store, builds the bodies and enqueues each scheduled time at most once
//! (`Store::enqueue_scheduled` remembers the last time sent per channel and
//! event, in the transaction that enqueues); [`spawn`] calls it every
//! [`SCHEDULE_TICK`] on the replica that leads the rollout controller.
//!
//! Never a backlog: only the latest scheduled time at or before now is
//! sent, and not if it passed before the channel was last written.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{Datelike, Days, NaiveDate, NaiveTime, TimeZone, Weekday};
use chrono_tz::Tz;
use rollout::RolloutState;
use serde_json::{Value, json};
use store::{ChannelFormat, ChannelSpec, NewDelivery, StoreError};

use crate::admin::rfc3339;
use crate::reports::{self, Report, ReportKind};
use crate::state::AppState;

/// How often the leader looks for due digests.
pub const SCHEDULE_TICK: Duration = Duration::from_secs(30);
/// The event of the daily digest.
pub const DAILY_DIGEST: &str = "daily_digest";
/// The event of the weekly report.
pub const WEEKLY_REPORT: &str = "weekly_report";
/// Most rollouts a Slack body lists (Slack takes at most 50 blocks).
const MAX_SLACK_ROLLOUTS: usize = 40;
/// Most characters of a Slack text block.
const MAX_SLACK_TEXT_CHARS: usize = 3_000;

/// When a channel's scheduled messages go out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    pub at: NaiveTime,
    pub timezone: Tz,
    pub weekly_on: Weekday,
}

impl Schedule {
    /// The channel's schedule, its defaults filled in.
    pub fn of(channel: &ChannelSpec) -> Result<Schedule, String> {
        let (hour, minute) = store::parse_time_of_day(
            channel
                .digest_at
                .as_deref()
                .unwrap_or(store::DEFAULT_DIGEST_AT),
        )?;
        Ok(Schedule {
            at: NaiveTime::from_hms_opt(hour, minute, 0).ok_or("no such time")?,
            timezone: store::parse_timezone(
                channel
                    .timezone
                    .as_deref()
                    .unwrap_or(store::DEFAULT_TIMEZONE),
            )?,
            weekly_on: store::parse_weekday(
                channel
                    .weekly_on
                    .as_deref()
                    .unwrap_or(store::DEFAULT_WEEKLY_ON),
            )?,
        })
    }
}

/// The instant `time` on `date` in `tz`. A time the clocks skip (spring
/// forward) is the same time on the clock before the change, i.e. as late
/// after the change as it would have been; a time that occurs twice (fall
/// back) is its first occurrence.
fn local_instant(tz: Tz, date: NaiveDate, time: NaiveTime) -> Option<i64> {
    let local = date.and_time(time);
    if let Some(at) = tz.from_local_datetime(&local).earliest() {
        return Some(at.timestamp_millis());
    }
    // In a gap: the offset in force before it, applied to the wall time.
    for hours in 1..=3 {
        let before = local - chrono::Duration::hours(hours);
        if let Some(at) = tz.from_local_datetime(&before).earliest() {
            return Some(at.timestamp_millis() + hours * 3_600_000);
        }
    }
    None
}

/// The latest instant at or before `now_ms` at which `event` (the daily
/// digest or the weekly report) is scheduled.
pub fn latest_scheduled_ms(schedule: &Schedule, event: &str, now_ms: i64) -> Option<i64> {
    let now = chrono::DateTime::from_timestamp_millis(now_ms)?;
    let today = now.with_timezone(&schedule.timezone).date_naive();
    // Two weeks back covers a weekly schedule whatever the offsets.
    (0..=14u64)
        .filter_map(|back| today.checked_sub_days(Days::new(back)))
        .filter(|date| event != WEEKLY_REPORT || date.weekday() == schedule.weekly_on)
        .filter_map(|date| local_instant(schedule.timezone, date, schedule.at))
        .find(|at| *at <= now_ms)
}

/// The scheduled time to send now, if any: the latest one at or before
/// `now_ms`, unless it was sent (`last_run_ms`) or passed before the channel
/// was last written (`channel_since_ms`).
pub fn due_ms(
    schedule: &Schedule,
    event: &str,
    now_ms: i64,
    last_run_ms: Option<i64>,
    channel_since_ms: i64,
) -> Option<i64> {
    let at = latest_scheduled_ms(schedule, event, now_ms)?;
    if at < channel_since_ms || last_run_ms.is_some_and(|last| last >= at) {
        return None;
    }
    Some(at)
}

/// A digest of an environment: one report per rollout in progress.
pub struct Digest {
    pub event: &'static str,
    pub environment: String,
    pub title: String,
    pub markdown: String,
    pub reports: Vec<Report>,
    pub at_ms: i64,
}

/// Builds the digest (`daily_digest`: the status of every rollout in
/// progress; `weekly_report`: their weekly reports) at `now_ms`.
pub async fn digest(
    state: &AppState,
    environment: &str,
    event: &'static str,
    run_ms: i64,
    now_ms: i64,
) -> Result<Digest, StoreError> {
    let kind = if event == WEEKLY_REPORT {
        ReportKind::Weekly
    } else {
        ReportKind::Status
    };
    let mut reports = Vec::new();
    for record in state.store.rollout_states(environment).await? {
        let active = serde_json::from_str::<RolloutState>(&record.state)
            .map(|s| s.is_active())
            .unwrap_or(false);
        if !active {
            continue;
        }
        match reports::build(state, environment, &record.flag, kind, now_ms).await {
            Ok(report) => reports.push(report),
            Err(crate::rollouts::StepError::Store(e)) => return Err(e),
            Err(error) => {
                tracing::warn!(message = "A rollout was left out of a digest.", environment, flag = record.flag, error = ?error);
            }
        }
    }
    reports.sort_by(|a, b| a.flag.cmp(&b.flag));
    let what = if kind == ReportKind::Weekly {
        "Weekly report"
    } else {
        "Daily digest"
    };
    let title = format!(
        "{what} for {environment}: {} rollout{} in progress",
        reports.len(),
        if reports.len() == 1 { "" } else { "s" }
    );
    let mut markdown = format!("# {}\n\n", reports::md_text(&title));
    if reports.is_empty() {
        markdown.push_str("No rollouts in progress.\n");
    }
    for report in &reports {
        // One level down: each report's headings under the digest's. User
        // text never starts a line (reports flatten it), so only ours move.
        for line in report.markdown.lines() {
            if line.starts_with('#') {
                markdown.push('#');
            }
            markdown.push_str(line);
            markdown.push('\n');
        }
    }
    Ok(Digest {
        event,
        environment: environment.to_owned(),
        title,
        markdown,
        reports,
        at_ms: run_ms,
    })
}

/// The body of a digest in a channel's format.
pub fn body(format: ChannelFormat, d: &Digest) -> String {
    match format {
        ChannelFormat::Json => json_body(d),
        ChannelFormat::Slack => slack_body(d),
    }
    .to_string()
}

/// Rollgate's payload (`docs/notifications.md`): the Markdown as `text`,
/// the reports as `report`.
pub fn json_body(d: &Digest) -> Value {
    json!({
        "version": crate::notify::PAYLOAD_VERSION,
        "event": d.event,
        "environment": d.environment,
        "title": d.title,
        "text": d.markdown,
        "report": { "rollouts": d.reports },
        "at": rfc3339(d.at_ms),
    })
}

/// Slack's mrkdwn treats `&`, `<` and `>` as control characters (links,
/// mentions); everything else shows as written.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// One rollout in a few Slack lines: phase, status, checks, incidents.
fn slack_rollout(r: &Report) -> String {
    let s = &r.rollout;
    let phase = match (&s.phase, s.percent) {
        (Some(p), Some(pct)) => format!("phase `{p}` ({}%)", reports::number(pct)),
        _ => "not started".to_owned(),
    };
    let mut lines = vec![format!("*`{}`*: {phase}, {}", r.flag, s.status)];
    if let Some(checks) = &r.checks {
        for kind in ["gate", "guard"] {
            let of_kind: Vec<_> = checks.iter().filter(|c| c.check == kind).collect();
            if of_kind.is_empty() {
                continue;
            }
            let count = |v: &str| of_kind.iter().filter(|c| c.verdict == v).count();
            lines.push(format!(
                "{kind}s: {} hold, {} breached, {} without enough data",
                count("holds"),
                count("breached"),
                count("insufficient_data")
            ));
        }
    }
    if let Some(metrics) = &r.metrics {
        for m in metrics {
            let change = m
                .relative_change
                .map(|c| format!(" ({:+}%)", (c * 1000.0).round() / 10.0))
                .unwrap_or_default();
            lines.push(format!(
                "`{}` of `{}`: {}{change}",
                m.metric,
                m.variant,
                m.current
                    .map(reports::number)
                    .unwrap_or_else(|| "–".to_owned())
            ));
        }
    }
    if let Some(incidents) = &r.incidents {
        let open = incidents.iter().filter(|i| i.status != "resolved").count();
        lines.push(format!(
            "incidents: {open} open, {} in all",
            incidents.len()
        ));
    }
    slack_escape(&lines.join("\n"))
}

/// A Slack-compatible body: `text` (the title) and `blocks`.
pub fn slack_body(d: &Digest) -> Value {
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&d.title, 150)}}),
    ];
    if d.reports.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": "No rollouts in progress."}}));
    }
    for r in d.reports.iter().take(MAX_SLACK_ROLLOUTS) {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": truncate(&slack_rollout(r), MAX_SLACK_TEXT_CHARS)}}));
    }
    if d.reports.len() > MAX_SLACK_ROLLOUTS {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": format!("and {} more", d.reports.len() - MAX_SLACK_ROLLOUTS)}}));
    }
    blocks.push(json!({"type": "context", "elements": [
        {"type": "mrkdwn", "text": format!("Rollgate · {} · {}", d.event, rfc3339(d.at_ms))}
    ]}));
    json!({ "text": slack_escape(&d.title), "blocks": blocks })
}

/// Enqueues every digest and weekly report due at `now_ms`, at most once
/// per channel and scheduled time; returns how many were enqueued.
pub async fn run_due(state: &AppState, now_ms: i64) -> Result<usize, StoreError> {
    let mut enqueued = 0;
    for env in state.store.list_environments().await? {
        let channels = state.store.list_channels(&env.key).await?;
        // Built once per environment and event, for every channel due.
        let mut digests: Vec<(&'static str, i64, Digest)> = Vec::new();
        for channel in &channels {
            let spec = &channel.spec;
            let schedule = match Schedule::of(spec) {
                Ok(schedule) => schedule,
                Err(error) => {
                    tracing::warn!(
                        message = "A channel's schedule is invalid.",
                        environment = env.key,
                        channel = spec.key,
                        error
                    );
                    continue;
                }
            };
            for event in [DAILY_DIGEST, WEEKLY_REPORT] {
                if !spec.wants(event) {
                    continue;
                }
                let last = state
                    .store
                    .schedule_last_run(&env.key, &spec.key, event)
                    .await?;
                let Some(run_ms) = due_ms(&schedule, event, now_ms, last, channel.updated_at_ms)
                else {
                    continue;
                };
                let position = digests
                    .iter()
                    .position(|(e, at, _)| *e == event && *at == run_ms);
                let index = match position {
                    Some(i) => i,
                    None => {
                        let d = digest(state, &env.key, event, run_ms, now_ms).await?;
                        digests.push((event, run_ms, d));
                        digests.len() - 1
                    }
                };
                let delivery = NewDelivery {
                    channel: spec.key.clone(),
                    event: event.to_owned(),
                    body: body(spec.format, &digests[index].2),
                };
                if state
                    .store
                    .enqueue_scheduled(&env.key, &spec.key, event, run_ms, &[delivery])
                    .await?
                {
                    enqueued += 1;
                }
            }
        }
    }
    if enqueued > 0 {
        crate::notify::wake_worker(state);
    }
    Ok(enqueued)
}

/// Runs [`run_due`] every [`SCHEDULE_TICK`] while this replica leads the
/// rollout controller (`AppState::leading`), so one replica sends.
pub fn spawn(state: Arc<AppState>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SCHEDULE_TICK);
        loop {
            tick.tick().await;
            if !state.leading.load(Ordering::Relaxed) {
                continue;
            }
            if let Err(error) = run_due(&state, crate::now_ms()).await {
                tracing::warn!(message = "Could not send the scheduled digests.", %error);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(text)
            .expect("RFC 3339")
            .timestamp_millis()
    }

    fn schedule(at: &str, timezone: &str, weekly_on: &str) -> Schedule {
        let (h, m) = store::parse_time_of_day(at).expect("time");
        Schedule {
            at: NaiveTime::from_hms_opt(h, m, 0).expect("time"),
            timezone: store::parse_timezone(timezone).expect("zone"),
            weekly_on: store::parse_weekday(weekly_on).expect("day"),
        }
    }

    /// (schedule, event, now) → the latest scheduled instant.
    fn check(s: &Schedule, event: &str, now: &str, expected: &str) {
        assert_eq!(
            latest_scheduled_ms(s, event, ms(now)).map(rfc3339),
            Some(expected.to_owned()),
            "{event} at {now}"
        );
    }

    #[test]
    fn daily_times_follow_the_zone_across_daylight_saving_changes() {
        let berlin = schedule("09:00", "Europe/Berlin", "monday");
        // Spring forward on 2025-03-30: 09:00 is 08:00Z before, 07:00Z after.
        check(
            &berlin,
            DAILY_DIGEST,
            "2025-03-30T07:30:00Z",
            "2025-03-30T07:00:00.000Z",
        );
        check(
            &berlin,
            DAILY_DIGEST,
            "2025-03-30T06:59:00Z",
            "2025-03-29T08:00:00.000Z",
        );
        check(
            &berlin,
            DAILY_DIGEST,
            "2025-03-30T07:00:00Z",
            "2025-03-30T07:00:00.000Z",
        );
        // Fall back on 2025-10-26: 07:00Z before, 08:00Z after.
        check(
            &berlin,
            DAILY_DIGEST,
            "2025-10-26T07:59:00Z",
            "2025-10-25T07:00:00.000Z",
        );
        check(
            &berlin,
            DAILY_DIGEST,
            "2025-10-26T08:00:00Z",
            "2025-10-26T08:00:00.000Z",
        );
    }

    #[test]
    fn skipped_and_repeated_local_times_happen_once() {
        let early = schedule("02:30", "Europe/Berlin", "monday");
        // 02:30 does not exist on 2025-03-30: it is 03:30 CEST, 01:30Z.
        check(
            &early,
            DAILY_DIGEST,
            "2025-03-30T01:45:00Z",
            "2025-03-30T01:30:00.000Z",
        );
        check(
            &early,
            DAILY_DIGEST,
            "2025-03-30T01:29:00Z",
            "2025-03-29T01:30:00.000Z",
        );
        // 02:30 happens twice on 2025-10-26 (00:30Z and 01:30Z): the first.
        check(
            &early,
            DAILY_DIGEST,
            "2025-10-26T01:45:00Z",
            "2025-10-26T00:30:00.000Z",
        );
        let sent = ms("2025-10-26T00:30:00Z");
        assert_eq!(
            due_ms(
                &early,
                DAILY_DIGEST,
                ms("2025-10-26T01:45:00Z"),
                Some(sent),
                0
            ),
            None
        );
    }

    #[test]
    fn weekly_reports_fall_on_their_day() {
        let new_york = schedule("09:00", "America/New_York", "monday");
        // The US springs forward on Sunday 2025-03-09.
        check(
            &new_york,
            WEEKLY_REPORT,
            "2025-03-10T13:30:00Z",
            "2025-03-10T13:00:00.000Z",
        );
        check(
            &new_york,
            WEEKLY_REPORT,
            "2025-03-10T12:59:00Z",
            "2025-03-03T14:00:00.000Z",
        );
        check(
            &new_york,
            WEEKLY_REPORT,
            "2025-03-16T23:00:00Z",
            "2025-03-10T13:00:00.000Z",
        );
        let utc = schedule("09:00", "UTC", "friday");
        check(
            &utc,
            WEEKLY_REPORT,
            "2025-01-06T12:00:00Z",
            "2025-01-03T09:00:00.000Z",
        );
        check(
            &utc,
            DAILY_DIGEST,
            "2025-01-06T08:00:00Z",
            "2025-01-05T09:00:00.000Z",
        );
    }

    #[test]
    fn defaults_are_nine_utc_on_monday() {
        let channel: ChannelSpec = serde_json::from_value(json!({
            "key": "ops", "url": "https://x.example/", "secret": "s", "events": ["daily_digest"]
        }))
        .expect("channel");
        assert_eq!(
            Schedule::of(&channel),
            Ok(schedule("09:00", "UTC", "monday"))
        );
    }

    #[test]
    fn only_the_latest_time_is_due_and_only_once() {
        let s = schedule("09:00", "UTC", "monday");
        let now = ms("2025-01-08T12:00:00Z");
        let latest = ms("2025-01-08T09:00:00Z");
        // First run: the latest time only, no backlog.
        assert_eq!(due_ms(&s, DAILY_DIGEST, now, None, 0), Some(latest));
        // Sent already.
        assert_eq!(due_ms(&s, DAILY_DIGEST, now, Some(latest), 0), None);
        // Last sent days ago: still only the latest.
        let old = ms("2025-01-02T09:00:00Z");
        assert_eq!(due_ms(&s, DAILY_DIGEST, now, Some(old), 0), Some(latest));
        // The channel was written after 09:00 today: nothing until tomorrow.
        let written = ms("2025-01-08T10:00:00Z");
        assert_eq!(due_ms(&s, DAILY_DIGEST, now, None, written), None);
        let tomorrow = ms("2025-01-09T09:00:00Z");
        assert_eq!(
            due_ms(&s, DAILY_DIGEST, tomorrow, None, written),
            Some(tomorrow)
        );
    }

    #[test]
    fn slack_text_cannot_mention_or_link() {
        assert_eq!(
            slack_escape("<!channel> & <http://x|y>"),
            "&lt;!channel&gt; &amp; &lt;http://x|y&gt;"
        );
    }
}
