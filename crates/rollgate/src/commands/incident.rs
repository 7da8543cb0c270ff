//! `rollgate incident …`: the environment's incidents, and the people's side
//! of their lifecycle (acknowledge, note, investigate/mitigate, escalate,
//! publish on the status page, resolve). Every change answers with the
//! incident as it now is.

use serde_json::{Value, json};

use crate::cli::{Global, IncidentCommand, IncidentListArgs};
use crate::client::Client;
use crate::output;

pub async fn run(client: &Client, global: &Global, command: IncidentCommand) -> anyhow::Result<()> {
    let (id, action, body) = match command {
        IncidentCommand::List(args) => return list(client, global, &args).await,
        IncidentCommand::Show { id } => {
            let result = client
                .get(&["api", "v1", "incidents", &id.to_string()], &[])
                .await?;
            return show(global, &result);
        }
        IncidentCommand::Ack { id, note } => (id, "ack", json!({ "text": note })),
        IncidentCommand::Note { id, text } => (id, "note", json!({ "text": text })),
        IncidentCommand::Status { id, status, note } => {
            (id, "status", json!({ "status": status, "text": note }))
        }
        IncidentCommand::Escalate { id, reason } => (id, "escalate", json!({ "text": reason })),
        IncidentCommand::Publish { id, text } => (id, "publish", json!({ "text": text })),
        IncidentCommand::Unpublish { id } => (id, "unpublish", json!({})),
        IncidentCommand::Resolve { id, resolution } => {
            (id, "resolve", json!({ "resolution": resolution }))
        }
    };
    let body = without_nulls(body);
    let result = client
        .post(
            &["api", "v1", "incidents", &id.to_string(), action],
            &[],
            &body,
        )
        .await?;
    show(global, &result)
}

fn without_nulls(mut body: Value) -> Value {
    if let Some(fields) = body.as_object_mut() {
        fields.retain(|_, v| !v.is_null());
    }
    body
}

async fn list(client: &Client, global: &Global, args: &IncidentListArgs) -> anyhow::Result<()> {
    let limit = args.limit.map(|l| l.to_string());
    let status = match (&args.status, args.all) {
        (Some(status), _) => Some(status.as_str()),
        (None, true) => None,
        (None, false) => Some("active"),
    };
    let params = [
        ("environment", Some(global.environment())),
        ("flag", args.flag.as_deref()),
        ("status", status),
        ("level", args.level.as_deref()),
        ("limit", limit.as_deref()),
    ];
    let body = client.get(&["api", "v1", "incidents"], &params).await?;
    if global.json {
        return output::json(&body);
    }
    let incidents = output::items(&body, "incidents")?;
    if incidents.is_empty() {
        return output::line(match status {
            Some("active") => "no active incidents (--all shows resolved ones too)",
            _ => "no incidents",
        });
    }
    let rows: Vec<Vec<String>> = incidents
        .iter()
        .map(|i| {
            vec![
                output::field(i, "id"),
                output::field(i, "openedAt"),
                output::field(i, "flag"),
                output::field(i, "level"),
                output::field(i, "severity"),
                output::field(i, "status"),
                output::field(i, "acknowledgedBy"),
                output::field(i, "title"),
            ]
        })
        .collect();
    output::print(&output::table(
        &[
            "ID", "OPENED", "FLAG", "LEVEL", "SEVERITY", "STATUS", "ACK BY", "TITLE",
        ],
        &rows,
    ))
}

fn show(global: &Global, incident: &Value) -> anyhow::Result<()> {
    if global.json {
        return output::json(incident);
    }
    output::print(&render(incident))
}

/// An incident for people: the facts, the evidence, the timeline, the links.
fn render(i: &Value) -> String {
    let f = |name: &str| output::field(i, name);
    let mut out = format!("Incident {}: {}\n", f("id"), f("title"));
    out.push_str(&format!(
        "  {} · {} · {} · flag {} in {}\n",
        f("status"),
        f("level"),
        f("severity"),
        f("flag"),
        f("environment")
    ));
    out.push_str(&format!(
        "  opened {} by {}\n",
        f("openedAt"),
        f("openedBy")
    ));
    if !i["acknowledgedBy"].is_null() {
        out.push_str(&format!(
            "  acknowledged {} by {}\n",
            f("acknowledgedAt"),
            f("acknowledgedBy")
        ));
    }
    if !i["publicText"].is_null() {
        out.push_str(&format!("  public: {}\n", f("publicText")));
    }
    if !i["resolvedAt"].is_null() {
        out.push_str(&format!(
            "  resolved {}: {}\n",
            f("resolvedAt"),
            f("resolution")
        ));
    }
    let evidence = i["evidence"]["evidence"].as_array();
    if let Some(verdicts) = evidence.filter(|v| !v.is_empty()) {
        out.push_str("\nEvidence\n");
        for v in verdicts {
            let values: Vec<String> = v["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|x| {
                    format!(
                        "{} {} ({} units)",
                        output::field(x, "variant"),
                        output::number(&x["value"]),
                        output::field(x, "units")
                    )
                })
                .collect();
            out.push_str(&format!(
                "  {}: {}; limit {}\n",
                output::field(v, "metric"),
                values.join(", "),
                v["limit"]
            ));
        }
    }
    if let Some(timeline) = i["timeline"].as_array() {
        out.push_str("\nTimeline\n");
        for e in timeline {
            let text = match output::field(e, "text").as_str() {
                "-" => String::new(),
                text => format!(": {text}"),
            };
            let detail = match (&e["detail"]["from"], &e["detail"]["to"]) {
                (Value::String(from), Value::String(to)) => format!(" ({from} → {to})"),
                _ => String::new(),
            };
            out.push_str(&format!(
                "  {}  {} {}{detail}{text}\n",
                output::field(e, "at"),
                output::field(e, "actor"),
                output::field(e, "action"),
            ));
        }
    }
    let links = &i["links"];
    if links.is_object() {
        out.push_str("\nLinks\n");
        out.push_str(&format!("  rollout: {}\n", output::field(links, "rollout")));
        out.push_str(&format!(
            "  flag versions: {} (before the rollout: {}, at the incident: {})\n",
            output::field(links, "flagVersions"),
            output::field(links, "flagVersionBefore"),
            output::field(links, "flagVersionAt")
        ));
    }
    out
}
