//! `rollgate token …`: API tokens. The server keeps only their hashes, so a
//! secret is shown once, when it is created.

use serde_json::{Value, json};

use crate::cli::{Global, TokenCommand, TokenKind};
use crate::client::Client;
use crate::output;

pub async fn run(client: &Client, global: &Global, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { name, kind } => create(client, global, &name, kind).await,
        TokenCommand::List => list(client, global).await,
        TokenCommand::Revoke { id } => revoke(client, global, id).await,
    }
}

async fn create(
    client: &Client,
    global: &Global,
    name: &str,
    kind: TokenKind,
) -> anyhow::Result<()> {
    let environment = match kind {
        // A client token works in one environment: `-e`, or production.
        TokenKind::Client => Some(global.environment()),
        // Admin tokens work everywhere; the server explains if `-e` was given.
        TokenKind::Admin => global.environment.as_deref(),
    };
    let mut body = json!({ "name": name, "kind": kind.as_str() });
    if let Some(environment) = environment {
        body["environment"] = json!(environment);
    }
    let created = client.post(&["api", "v1", "tokens"], &[], &body).await?;
    if global.json {
        return output::json(&created);
    }
    let token = created.get("token").unwrap_or(&Value::Null);
    let scope = match environment {
        Some(environment) if kind == TokenKind::Client => format!(" for {environment}"),
        _ => String::new(),
    };
    // The description goes to standard error so that standard output is the
    // secret alone: `TOKEN=$(rollgate token create …)`.
    eprintln!(
        "created {} token {} `{}`{scope}; its secret is shown only this once:",
        kind.as_str(),
        output::field(token, "id"),
        output::field(token, "name"),
    );
    output::line(&output::field(&created, "secret"))
}

async fn list(client: &Client, global: &Global) -> anyhow::Result<()> {
    let body = client.get(&["api", "v1", "tokens"], &[]).await?;
    if global.json {
        return output::json(&body);
    }
    let rows: Vec<Vec<String>> = output::items(&body, "tokens")?
        .iter()
        .map(|t| {
            vec![
                output::field(t, "id"),
                output::field(t, "name"),
                output::field(t, "kind"),
                output::field(t, "environment"),
                format!("…{}", output::field(t, "hint")),
                output::field(t, "createdAt"),
                output::field(t, "createdBy"),
                output::field(t, "revokedAt"),
            ]
        })
        .collect();
    output::print(&output::table(
        &[
            "ID",
            "NAME",
            "KIND",
            "ENVIRONMENT",
            "SECRET",
            "CREATED",
            "BY",
            "REVOKED",
        ],
        &rows,
    ))
}

async fn revoke(client: &Client, global: &Global, id: i64) -> anyhow::Result<()> {
    let id_text = id.to_string();
    let record = client
        .delete(&["api", "v1", "tokens", &id_text], &[])
        .await?;
    if global.json {
        return output::json(&record);
    }
    output::line(&format!(
        "revoked token {id} `{}`",
        output::field(&record, "name")
    ))
}
