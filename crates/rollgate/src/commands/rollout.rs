//! `rollgate rollout …`: start a flag's staged rollout, watch it, steer it.

use serde_json::{Value, json};

use crate::cli::{Global, RolloutArgs, RolloutCommand};
use crate::client::Client;
use crate::output;

use super::flag_key;

pub async fn run(client: &Client, global: &Global, command: RolloutCommand) -> anyhow::Result<()> {
    let env = global.environment();
    let (name, args, by) = match command {
        RolloutCommand::Status { flag } => return status(client, global, env, &flag).await,
        RolloutCommand::Start(args) => ("start", args, None),
        RolloutCommand::Advance(args) => ("advance", args, None),
        RolloutCommand::Pause(args) => ("pause", args, None),
        RolloutCommand::Resume(args) => ("resume", args, None),
        RolloutCommand::Rollback(args) => ("rollback", args, None),
        RolloutCommand::Restart(args) => ("restart", args, None),
        RolloutCommand::Abort(args) => ("abort", args, None),
        RolloutCommand::Extend { flag, by, reason } => {
            ("extend", RolloutArgs { flag, reason }, Some(by))
        }
    };
    let mut body = json!({});
    if let Some(reason) = &args.reason {
        body["reason"] = json!(reason);
    }
    if let Some(by) = by {
        body["by"] = json!(by);
    }
    let result = client
        .post(
            &["api", "v1", "rollouts", flag_key(&args.flag)?, name],
            &[("environment", Some(env))],
            &body,
        )
        .await?;
    if global.json {
        return output::json(&result);
    }
    output::print(&render(&result))
}

async fn status(client: &Client, global: &Global, env: &str, flag: &str) -> anyhow::Result<()> {
    let result = client
        .get(
            &["api", "v1", "rollouts", flag_key(flag)?],
            &[("environment", Some(env))],
        )
        .await?;
    if global.json {
        return output::json(&result);
    }
    output::print(&render(&result))
}

/// A limit as written: `max 0.02`, `max_relative_increase 0.2`.
fn limit(value: &Value) -> String {
    match value.as_object().and_then(|o| o.iter().next()) {
        Some((kind, v)) => format!("{kind} {}", output::number(v)),
        None => output::number(value),
    }
}

fn interval(value: &Value) -> String {
    if !value.is_object() {
        return "-".to_owned();
    }
    let bound = |v: &Value| {
        if v.is_null() {
            "…".to_owned()
        } else {
            output::number(v)
        }
    };
    let kind = if value["always_valid"].as_bool() == Some(true) {
        " always-valid"
    } else {
        ""
    };
    format!(
        "[{}, {}]{kind}",
        bound(&value["lower"]),
        bound(&value["upper"])
    )
}

/// The status as text: where the rollout is, each check, the incidents.
fn render(status: &Value) -> String {
    let mut out = format!(
        "rollout of {} in {}: {}",
        output::field(status, "flag"),
        output::field(status, "environment"),
        output::field(status, "status"),
    );
    if let Some(phase) = status["phase"].as_str() {
        out.push_str(&format!(
            ", phase {} of {} ({phase}, {}%)",
            status["phaseIndex"].as_u64().unwrap_or(0) + 1,
            output::field(status, "phases"),
            output::number(&status["percent"]),
        ));
    }
    out.push('\n');
    if let Some(start) = status["phaseStartedAt"].as_str() {
        out.push_str(&format!(
            "phase started {start}, ends {}\n",
            status["phaseEndsAt"].as_str().unwrap_or("-")
        ));
    }
    let verdicts = status["verdicts"].as_array().cloned().unwrap_or_default();
    if !verdicts.is_empty() {
        let rows: Vec<Vec<String>> = verdicts
            .iter()
            .map(|v| {
                let check = match v["check"]["kind"].as_str() {
                    Some("guard") => format!("guard ({})", output::field(&v["check"], "action")),
                    Some(kind) => kind.to_owned(),
                    None => "-".to_owned(),
                };
                let units: Vec<String> = v["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|x| {
                        format!(
                            "{} {}",
                            output::field(x, "variant"),
                            output::number(&x["units"])
                        )
                    })
                    .collect();
                let verdict = match v["outcome"]["verdict"].as_str() {
                    Some("insufficient_data") => format!(
                        "insufficient data ({})",
                        v["outcome"]["reason"].as_str().unwrap_or("-")
                    ),
                    Some(other) => other.to_owned(),
                    None => "-".to_owned(),
                };
                vec![
                    check,
                    output::field(v, "metric"),
                    output::field(v, "variant"),
                    limit(&v["limit"]),
                    output::number(&v["value"]),
                    interval(&v["interval"]),
                    units.join(", "),
                    verdict,
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&output::table(
            &[
                "CHECK", "METRIC", "VARIANT", "LIMIT", "VALUE", "INTERVAL", "UNITS", "VERDICT",
            ],
            &rows,
        ));
    }
    let incidents = status["incidents"].as_array().cloned().unwrap_or_default();
    if !incidents.is_empty() {
        out.push_str("\nincidents:\n");
        for i in incidents {
            out.push_str(&format!(
                "#{} {} {} [{}] {} (by {})\n",
                output::field(&i, "id"),
                output::field(&i, "openedAt"),
                output::field(&i, "severity"),
                output::field(&i, "kind"),
                output::field(&i, "title"),
                output::field(&i, "openedBy"),
            ));
        }
    }
    out
}
