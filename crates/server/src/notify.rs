//! Notifications: what a rollout step announces, the bodies sent to channels
//! (`json`, our documented payload, or `slack`), and the delivery worker that
//! POSTs queued deliveries, signed, retrying with exponential backoff.
//!
//! The controller enqueues deliveries in the transaction of the step they
//! announce (`Store::commit_rollout_step_announcing`) and wakes the worker;
//! the worker runs on its own task, so a slow or dead receiver never holds up
//! a step or a request. Deliveries live in the store, so a restart resumes
//! them; a claim leases each one to a single sender (see `store::deliveries`).
//!
//! Building announcements and bodies is pure (unit-tested below); only
//! [`spawn_worker`] does IO.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use rollout::{Action, IncidentKind, RolloutState, Status, Step, SupportLevel, Verdict};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::Sha256;
use store::{ChannelFormat, ChannelSpec, Delivery, NewDelivery};

use crate::admin::rfc3339;
use crate::state::AppState;

/// The header with `sha256=<hex HMAC-SHA256(secret, body)>`.
pub const SIGNATURE_HEADER: &str = "X-Rollgate-Signature";
/// The header naming the event (`rollback`, …).
pub const EVENT_HEADER: &str = "X-Rollgate-Event";
/// The header with the delivery's id (the same on every retry).
pub const DELIVERY_HEADER: &str = "X-Rollgate-Delivery";

/// The version of the `json` payload's layout.
pub const PAYLOAD_VERSION: u32 = 1;

/// How deliveries are retried. Each server has its own
/// (`ServerConfig::delivery`, kept in its `AppState`); `rollgate serve
/// --delivery-backoff-ms` sets the base, tests shorten it so that they never
/// wait seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// The wait after the first failed attempt; it doubles after each.
    pub backoff_base_ms: i64,
    /// The longest wait between two attempts.
    pub backoff_cap_ms: i64,
    /// After this long since it was enqueued, a delivery that fails again is
    /// given up (`failed`).
    pub give_up_after_ms: i64,
    /// How long a sender holds a claimed delivery before another may claim it.
    pub lease_ms: i64,
    /// How long one attempt may take.
    pub request_timeout_ms: u64,
    /// How often the worker looks for due deliveries when nothing wakes it.
    pub poll_interval_ms: u64,
}

/// The wait after a delivery's first failed attempt unless configured.
pub const DEFAULT_BACKOFF_BASE_MS: i64 = 1_000;

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            backoff_base_ms: DEFAULT_BACKOFF_BASE_MS,
            backoff_cap_ms: 60 * 60 * 1_000,
            give_up_after_ms: 24 * 60 * 60 * 1_000,
            lease_ms: 60_000,
            request_timeout_ms: 10_000,
            poll_interval_ms: 1_000,
        }
    }
}

impl DeliveryPolicy {
    /// The wait after the `attempts`-th failed attempt (1, 2, …):
    /// base · 2^(attempts−1), at most the cap.
    pub fn backoff_ms(&self, attempts: i64) -> i64 {
        let doublings = attempts.saturating_sub(1).clamp(0, 40) as u32;
        self.backoff_base_ms
            .saturating_mul(1_i64 << doublings)
            .min(self.backoff_cap_ms)
    }

    /// When to try again after the `attempts`-th failure at `now_ms` of a
    /// delivery enqueued at `created_at_ms`; `None`: give up.
    pub fn retry_at_ms(&self, attempts: i64, created_at_ms: i64, now_ms: i64) -> Option<i64> {
        let at = now_ms + self.backoff_ms(attempts);
        (at - created_at_ms <= self.give_up_after_ms).then_some(at)
    }
}

/// Tells `state`'s delivery worker that deliveries were enqueued. The wake-up
/// belongs to the server's state, so two servers in one process (tests) never
/// wake each other's worker.
pub fn wake_worker(state: &AppState) {
    state.deliveries_enqueued.notify_one();
}

// ---------------------------------------------------------------- announcements

/// Something to tell the channels that want its event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Announcement {
    /// The event's name (`store::CHANNEL_EVENTS`).
    pub event: &'static str,
    pub environment: String,
    pub flag: String,
    pub phase: Option<String>,
    pub percent: Option<f64>,
    /// The support level it concerns; `None`: every channel that wants the
    /// event hears it, whatever levels it serves.
    pub level: Option<&'static str>,
    /// One line.
    pub title: String,
    /// What happened and what the controller did.
    pub summary: String,
    /// What caused it: the guard (metric, variant, limit, value, interval)
    /// or the person and their reason.
    pub trigger: Option<Value>,
    /// The verdicts behind it, with values and units per variant.
    pub evidence: Vec<Verdict>,
    /// The incident it concerns: id, status, level, kind, severity, who
    /// acknowledged it, and the timeline entry that changed it.
    pub incident: Option<Value>,
    pub at_ms: i64,
}

/// What a committed step announces, in order: a phase that started or
/// advanced (and, at general availability, the plan's feature
/// announcement), a hold, a rollback (with its trigger and evidence), then
/// every incident it opened (and a pause guard's warning). `incident_ids`
/// are the stored ids of the step's incidents, in the order of its actions.
#[allow(clippy::too_many_arguments)]
pub fn announcements(
    environment: &str,
    plan: &rollout::Plan,
    before: &RolloutState,
    step: &Step,
    incident_ids: &[i64],
    actor: &str,
    reason: Option<&str>,
    now_ms: i64,
) -> Vec<Announcement> {
    let after = &step.state;
    let flag = plan.flag();
    let phase = plan.phase(after.phase);
    let notes: Vec<&str> = step
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Notify { message } => Some(message.as_str()),
            _ => None,
        })
        .collect();
    let base = |event: &'static str, level: Option<&'static str>, title: String| Announcement {
        event,
        environment: environment.to_owned(),
        flag: flag.to_owned(),
        phase: Some(phase.name.clone()),
        percent: Some(phase.percent),
        level,
        title,
        summary: notes.join("\n"),
        trigger: None,
        evidence: Vec::new(),
        incident: None,
        at_ms: now_ms,
    };
    let mut out = Vec::new();
    let phase_moved =
        after.phase_started_ms != before.phase_started_ms || after.generation != before.generation;
    if phase_moved && matches!(after.status, Status::Running) {
        let advanced = after.generation == before.generation
            && after.phase > before.phase
            && before.status != Status::Pending;
        let (event, verb) = if advanced {
            ("phase_advanced", "advanced to")
        } else {
            ("phase_started", "started")
        };
        out.push(base(
            event,
            None,
            format!(
                "Rollout of `{flag}` {verb} phase `{}` ({}%)",
                phase.name, phase.percent
            ),
        ));
        let last = plan.phase_index(after.phase) + 1 == plan.phases.len();
        if let (true, true, Some(text)) = (last, phase.percent >= 100.0, &plan.spec.announcement) {
            let mut a = base(
                "feature_announcement",
                None,
                format!("`{flag}` is now available to everyone"),
            );
            a.summary = text.clone();
            out.push(a);
        }
    }
    let incidents: Vec<(&rollout::Incident, Option<i64>)> = step
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::OpenIncident(incident) => Some(incident),
            _ => None,
        })
        .enumerate()
        .map(|(i, incident)| (incident, incident_ids.get(i).copied()))
        .collect();
    let opened = |incident: &rollout::Incident, id: Option<i64>| {
        json!({
            "id": id, "status": store::INCIDENT_OPEN, "level": incident.level.as_str(),
            "kind": incident.kind, "severity": incident.severity, "acknowledgedBy": null,
        })
    };
    let was_held = matches!(before.status, Status::Held { .. });
    if matches!(after.status, Status::Held { .. }) && !was_held {
        let gates = incidents
            .iter()
            .find(|(i, _)| i.kind == IncidentKind::GatesFailed);
        let mut a = base(
            "rollout_held",
            gates.map(|(i, _)| i.level.as_str()),
            format!(
                "Rollout of `{flag}` is held at phase `{}` ({}%)",
                phase.name, phase.percent
            ),
        );
        a.evidence = step
            .verdicts
            .iter()
            .filter(|v| !v.holds() && matches!(v.check, rollout::Check::Gate { .. }))
            .cloned()
            .collect();
        a.incident = gates.map(|(i, id)| opened(i, *id));
        out.push(a);
    }
    let was_rolled_back = matches!(before.status, Status::RolledBack { .. });
    if let (Status::RolledBack { reason: why, .. }, false) = (&after.status, was_rolled_back) {
        let found = incidents.iter().find(|(i, _)| {
            matches!(
                i.kind,
                IncidentKind::GuardRollback | IncidentKind::ManualRollback
            )
        });
        let incident = found.map(|(i, _)| *i);
        let evidence = incident.map(|i| i.evidence.clone()).unwrap_or_default();
        let trigger = match incident.map(|i| i.kind) {
            Some(IncidentKind::GuardRollback) => guard_trigger(plan, &evidence),
            _ => json!({
                "kind": "manual",
                "by": actor,
                "reason": reason.unwrap_or(why),
            }),
        };
        let mut a = base(
            "rollback",
            Some(incident.map_or(SupportLevel::L2, |i| i.level).as_str()),
            format!(
                "Rollout of `{flag}` rolled back in phase `{}` ({}%): {why}",
                phase.name, phase.percent
            ),
        );
        if let Some(incident) = incident {
            a.summary = incident.summary.clone();
        }
        a.trigger = Some(trigger);
        a.evidence = evidence;
        a.incident = found.map(|(i, id)| opened(i, *id));
        out.push(a);
    }
    for (incident, id) in incidents {
        let mut a = base(
            "incident_opened",
            Some(incident.level.as_str()),
            format!("Incident on `{flag}`: {}", incident.title),
        );
        a.incident = Some(opened(incident, id));
        a.summary = incident.summary.clone();
        a.phase = Some(incident.phase.clone());
        a.percent = Some(incident.percent);
        a.evidence = incident.evidence.clone();
        if incident.kind == IncidentKind::GuardPause {
            a.trigger = Some(guard_trigger(plan, &incident.evidence));
            let mut warning = a.clone();
            warning.event = "guard_warning";
            warning.title = format!("Guard warning on `{flag}`: {}", incident.title);
            out.push(warning);
        }
        out.push(a);
    }
    out
}

/// The guards that fired, as a trigger: metric, variant, limit, value and
/// interval of each.
fn guard_trigger(plan: &rollout::Plan, evidence: &[Verdict]) -> Value {
    let guards: Vec<Value> = evidence
        .iter()
        .filter(|v| matches!(v.check, rollout::Check::Guard { .. }))
        .map(|v| {
            json!({
                "metric": v.metric,
                "variant": v.variant,
                "limit": v.limit,
                "value": v.value,
                "interval": v.interval,
            })
        })
        .collect();
    json!({ "kind": "guard", "flag": plan.flag(), "guards": guards })
}

/// One delivery per channel that wants the announcement (and serves its level).
pub fn deliveries_for(
    channels: &[ChannelSpec],
    announcements: &[Announcement],
) -> Vec<NewDelivery> {
    let mut out = Vec::new();
    for a in announcements {
        for channel in channels.iter().filter(|c| serves(c, a)) {
            out.push(NewDelivery {
                channel: channel.key.clone(),
                event: a.event.to_owned(),
                body: body(channel.format, a),
            });
        }
    }
    out
}

fn serves(channel: &ChannelSpec, a: &Announcement) -> bool {
    let level_ok = match (&channel.levels, a.level) {
        (Some(levels), Some(level)) => levels.iter().any(|l| l == level),
        _ => true,
    };
    channel.wants(a.event) && level_ok
}

/// The body in the channel's format.
pub fn body(format: ChannelFormat, a: &Announcement) -> String {
    match format {
        ChannelFormat::Json => json_body(a),
        ChannelFormat::Slack => slack_body(a),
    }
    .to_string()
}

/// Rollgate's own payload (`docs/notifications.md`).
pub fn json_body(a: &Announcement) -> Value {
    json!({
        "version": PAYLOAD_VERSION,
        "event": a.event,
        "environment": a.environment,
        "flag": a.flag,
        "phase": a.phase,
        "percent": a.percent,
        "level": a.level,
        "title": a.title,
        "summary": a.summary,
        "trigger": a.trigger,
        "evidence": a.evidence,
        "incident": a.incident,
        "at": rfc3339(a.at_ms),
    })
}

/// A Slack-compatible body: `text` (the notification's line) and `blocks`.
pub fn slack_body(a: &Announcement) -> Value {
    let mut fields = vec![
        format!("*Flag*\n`{}`", a.flag),
        format!("*Environment*\n{}", a.environment),
    ];
    if let Some(phase) = &a.phase {
        let percent = a.percent.map(|p| format!(" ({p}%)")).unwrap_or_default();
        fields.push(format!("*Phase*\n{phase}{percent}"));
    }
    if let Some(level) = a.level {
        fields.push(format!("*Level*\n{level}"));
    }
    if let Some(incident) = &a.incident {
        let id = incident["id"]
            .as_i64()
            .map(|id| format!(" #{id}"))
            .unwrap_or_default();
        let status = incident["status"].as_str().unwrap_or("open");
        fields.push(format!("*Incident{id}*\n{status}"));
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&a.title, 150)}}),
        json!({"type": "section", "fields": fields.iter()
            .map(|f| json!({"type": "mrkdwn", "text": f})).collect::<Vec<_>>()}),
    ];
    if !a.summary.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&a.summary, 3000)}}));
    }
    if let Some(trigger) = &a.trigger {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": truncate(&format!("*Trigger*\n{}", trigger_text(trigger)), 3000)}}));
    }
    if !a.evidence.is_empty() {
        let lines: Vec<String> = a.evidence.iter().map(evidence_line).collect();
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": truncate(&format!("*Evidence*\n{}", lines.join("\n")), 3000)}}));
    }
    blocks.push(json!({"type": "context", "elements": [
        {"type": "mrkdwn", "text": format!("Rollgate · {} · {}", a.event, rfc3339(a.at_ms))}
    ]}));
    json!({ "text": a.title, "blocks": blocks })
}

fn trigger_text(trigger: &Value) -> String {
    match trigger["kind"].as_str() {
        Some("manual") => format!(
            "rolled back by {}: {}",
            trigger["by"].as_str().unwrap_or("someone"),
            trigger["reason"].as_str().unwrap_or("")
        ),
        _ => trigger["guards"]
            .as_array()
            .map(|guards| {
                guards
                    .iter()
                    .map(|g| {
                        format!(
                            "guard `{}` on `{}`: limit {}, value {}, interval {}",
                            g["metric"].as_str().unwrap_or("?"),
                            g["variant"].as_str().unwrap_or("?"),
                            g["limit"],
                            g["value"],
                            g["interval"]
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default(),
    }
}

fn evidence_line(v: &Verdict) -> String {
    let values: Vec<String> = v
        .values
        .iter()
        .map(|x| {
            let value = x.value.map(|n| format!("{n:.4}")).unwrap_or("–".to_owned());
            format!("{} {value} ({} units)", x.variant, x.units)
        })
        .collect();
    let interval = v
        .interval
        .as_ref()
        .map(|i| {
            let bound = |b: Option<f64>| b.map(|n| format!("{n:.4}")).unwrap_or("–".to_owned());
            format!(", interval [{}, {}]", bound(i.lower), bound(i.upper))
        })
        .unwrap_or_default();
    format!(
        "• `{}`: {}; limit {}{interval}",
        v.metric,
        values.join(", "),
        serde_json::to_string(&v.limit).unwrap_or_default()
    )
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

// ---------------------------------------------------------------- the worker

/// Deliveries one worker sends at once, at most.
const MAX_IN_FLIGHT: usize = 32;

/// Runs the delivery worker: claims what is due and sends each delivery on a
/// task of its own, then sleeps until the next delivery is due, something is
/// enqueued, a send finishes, or the poll interval passes. A slow receiver
/// holds up only its own deliveries: an alert enqueued meanwhile is claimed
/// and sent at once.
pub fn spawn_worker(state: Arc<AppState>) {
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let policy = state.delivery;
        let mut sending = tokio::task::JoinSet::new();
        loop {
            let room = MAX_IN_FLIGHT.saturating_sub(sending.len());
            if room == 0 {
                sending.join_next().await;
                continue;
            }
            match state
                .store
                .claim_due_deliveries(crate::now_ms(), policy.lease_ms, room as i64)
                .await
            {
                Ok(claimed) => {
                    let claimed_all_room = claimed.len() == room;
                    for delivery in claimed {
                        let (state, http) = (state.clone(), http.clone());
                        sending
                            .spawn(async move { attempt(&state, &http, delivery, policy).await });
                    }
                    if claimed_all_room {
                        // More may be due: claim again once there is room.
                        continue;
                    }
                }
                Err(error) => {
                    tracing::warn!(message = "Could not claim webhook deliveries.", %error);
                }
            }
            let mut wait_ms = policy.poll_interval_ms;
            if let Ok(Some(due)) = state.store.next_delivery_due_ms().await {
                wait_ms = wait_ms.min((due - crate::now_ms()).max(0) as u64);
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
                () = state.deliveries_enqueued.notified() => {}
                Some(_) = sending.join_next(), if !sending.is_empty() => {}
            }
        }
    });
}

/// One attempt at a claimed delivery, recorded in the store.
async fn attempt(state: &AppState, http: &reqwest::Client, d: Delivery, policy: DeliveryPolicy) {
    let channel = match state.store.list_channels(&d.environment).await {
        Ok(channels) => channels.into_iter().find(|c| c.spec.key == d.channel),
        Err(error) => {
            tracing::warn!(message = "Could not read a delivery's channel.", id = d.id, %error);
            return;
        }
    };
    let outcome = match &channel {
        None => Err((format!("channel `{}` no longer exists", d.channel), false)),
        Some(channel) => send(http, &channel.spec, &d, policy).await,
    };
    let now = crate::now_ms();
    let recorded = match outcome {
        Ok(()) => state.store.mark_delivered(d.id, now).await,
        Err((error, retry)) => {
            let attempts = d.attempts + 1;
            let retry_at = retry
                .then(|| policy.retry_at_ms(attempts, d.created_at_ms, now))
                .flatten();
            tracing::info!(
                message = "A webhook delivery failed.",
                id = d.id,
                channel = d.channel,
                attempts,
                error,
                given_up = retry_at.is_none()
            );
            state
                .store
                .mark_attempt_failed(d.id, &error, retry_at)
                .await
        }
    };
    if let Err(error) = recorded {
        tracing::warn!(message = "Could not record a delivery attempt.", id = d.id, %error);
    }
}

/// POSTs the delivery; `Err((why, worth retrying))`.
async fn send(
    http: &reqwest::Client,
    channel: &ChannelSpec,
    d: &Delivery,
    policy: DeliveryPolicy,
) -> Result<(), (String, bool)> {
    let response = http
        .post(&channel.url)
        .timeout(Duration::from_millis(policy.request_timeout_ms))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(
            SIGNATURE_HEADER,
            signature(&channel.secret, d.body.as_bytes()),
        )
        .header(EVENT_HEADER, &d.event)
        .header(DELIVERY_HEADER, d.id.to_string())
        .body(d.body.clone())
        .send()
        .await
        .map_err(|e| (format!("request failed: {e}"), true))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err((
            format!("the receiver answered HTTP {}", status.as_u16()),
            true,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollback() -> Announcement {
        Announcement {
            event: "rollback",
            environment: "production".to_owned(),
            flag: "calc-model".to_owned(),
            phase: Some("beta".to_owned()),
            percent: Some(30.0),
            level: Some("L2"),
            title: "Rollout of `calc-model` rolled back in phase `beta` (30%): guard".to_owned(),
            summary: "error_rate above 0.02".to_owned(),
            trigger: Some(json!({"kind": "guard", "flag": "calc-model", "guards": [
                {"metric": "error_rate", "variant": "advanced", "limit": {"max": 0.02},
                 "value": 0.1, "interval": {"lower": 0.08, "upper": null}}
            ]})),
            evidence: Vec::new(),
            incident: Some(json!({"id": 7, "status": "open", "level": "L2"})),
            at_ms: 1_700_000_000_000,
        }
    }

    fn channel(format: ChannelFormat, events: &[&str], levels: Option<&[&str]>) -> ChannelSpec {
        ChannelSpec {
            key: "ops".to_owned(),
            url: "https://hooks.example.com/x".to_owned(),
            format,
            secret: "s".to_owned(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            levels: levels.map(|l| l.iter().map(|x| (*x).to_owned()).collect()),
            digest_at: None,
            timezone: None,
            weekly_on: None,
        }
    }

    #[test]
    fn the_json_body_names_flag_phase_trigger_and_time() {
        let body = json_body(&rollback());
        assert_eq!(body["version"], 1);
        assert_eq!(body["event"], "rollback");
        assert_eq!(body["flag"], "calc-model");
        assert_eq!(body["phase"], "beta");
        assert_eq!(body["percent"], 30.0);
        assert_eq!(body["trigger"]["guards"][0]["metric"], "error_rate");
        assert_eq!(body["at"], "2023-11-14T22:13:20.000Z");
    }

    #[test]
    fn the_slack_body_has_text_and_blocks_with_the_trigger() {
        let body = slack_body(&rollback());
        assert_eq!(body["text"], rollback().title);
        let blocks = body["blocks"].as_array().expect("blocks");
        assert_eq!(blocks[0]["type"], "header");
        let all = body.to_string();
        assert!(all.contains("guard `error_rate` on `advanced`"), "{all}");
        assert!(all.contains("beta (30%)"), "{all}");
        let manual = Announcement {
            trigger: Some(json!({"kind": "manual", "by": "alice", "reason": "critical bug"})),
            ..rollback()
        };
        assert!(
            slack_body(&manual)
                .to_string()
                .contains("rolled back by alice: critical bug")
        );
    }

    #[test]
    fn channels_get_the_events_and_levels_they_asked_for() {
        let a = [rollback()];
        let wants = |c: ChannelSpec| deliveries_for(&[c], &a).len();
        assert_eq!(wants(channel(ChannelFormat::Json, &["rollback"], None)), 1);
        assert_eq!(
            wants(channel(ChannelFormat::Json, &["*"], Some(&["L2", "L3"]))),
            1
        );
        assert_eq!(
            wants(channel(ChannelFormat::Json, &["phase_started"], None)),
            0
        );
        assert_eq!(
            wants(channel(ChannelFormat::Json, &["rollback"], Some(&["L3"]))),
            0
        );
        let slack = deliveries_for(&[channel(ChannelFormat::Slack, &["*"], None)], &a);
        let body: Value = serde_json::from_str(&slack[0].body).expect("json");
        assert!(body["blocks"].is_array());
    }

    #[test]
    fn the_signature_is_hmac_sha256_in_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_gives_up_after_the_bound() {
        let policy = DeliveryPolicy::default();
        assert_eq!(policy.backoff_ms(1), 1_000);
        assert_eq!(policy.backoff_ms(2), 2_000);
        assert_eq!(policy.backoff_ms(3), 4_000);
        assert_eq!(policy.backoff_ms(100), 3_600_000);
        assert_eq!(policy.retry_at_ms(1, 0, 10), Some(1_010));
        assert_eq!(policy.retry_at_ms(30, 0, 24 * 3_600_000), None);
    }
}

// ---------------------------------------------------------------- HTTP

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// Only this environment's deliveries; every environment when absent.
    pub environment: Option<String>,
    /// `queued`, `delivered` or `failed`.
    pub status: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    pub limit: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRecord {
    pub id: i64,
    pub environment: String,
    pub channel: String,
    pub event: String,
    /// `queued`, `delivered` or `failed`.
    pub status: String,
    /// Attempts made so far.
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: String,
    /// When the next attempt is due (while queued).
    pub next_attempt_at: Option<String>,
    pub delivered_at: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryRecord>,
}

#[utoipa::path(get, path = "/api/v1/deliveries", tag = "notifications", params(DeliveriesQuery),
    responses((status = 200, body = DeliveryList), (status = 400, body = crate::error::ErrorBody)))]
pub async fn list_deliveries(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    _: crate::auth::Admin,
    crate::error::ApiQuery(q): crate::error::ApiQuery<DeliveriesQuery>,
) -> Result<axum::Json<DeliveryList>, crate::error::ApiError> {
    use crate::error::ApiError;
    if let Some(status) = &q.status
        && ![
            store::DELIVERY_QUEUED,
            store::DELIVERY_DELIVERED,
            store::DELIVERY_FAILED,
        ]
        .contains(&status.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "status: unknown status `{status}`; use queued, delivered or failed"
        )));
    }
    if let Some(limit) = q.limit
        && !(1..=store::MAX_DELIVERY_LIMIT).contains(&limit)
    {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {}",
            store::MAX_DELIVERY_LIMIT
        )));
    }
    let deliveries = state
        .store
        .deliveries(&store::DeliveryFilter {
            environment: q.environment,
            status: q.status,
            limit: q.limit,
        })
        .await?
        .into_iter()
        .map(|d| DeliveryRecord {
            next_attempt_at: (d.status == store::DELIVERY_QUEUED)
                .then(|| rfc3339(d.next_attempt_at_ms)),
            id: d.id,
            environment: d.environment,
            channel: d.channel,
            event: d.event,
            status: d.status,
            attempts: d.attempts,
            last_error: d.last_error,
            created_at: rfc3339(d.created_at_ms),
            delivered_at: d.delivered_at_ms.map(rfc3339),
        })
        .collect();
    Ok(axum::Json(DeliveryList { deliveries }))
}
