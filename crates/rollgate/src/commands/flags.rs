//! `rollgate flags …`: list, inspect, switch, look back at and restore flags.

use serde_json::{Value, json};

use super::flag_key;
use crate::cli::{FlagsCommand, Global, ReasonArgs};
use crate::client::Client;
use crate::{convert, output};

pub async fn run(client: &Client, global: &Global, command: FlagsCommand) -> anyhow::Result<()> {
    let env = global.environment();
    match command {
        FlagsCommand::List => list(client, global, env).await,
        FlagsCommand::Get { key } => get(client, global, env, &key).await,
        FlagsCommand::Enable(args) => set_enabled(client, global, env, &args, true).await,
        FlagsCommand::Disable(args) => set_enabled(client, global, env, &args, false).await,
        FlagsCommand::History { key } => history(client, global, env, &key).await,
        FlagsCommand::Restore {
            key,
            version,
            reason,
        } => restore(client, global, env, &key, version, reason.as_deref()).await,
        FlagsCommand::Delete(args) => delete(client, global, env, &args).await,
    }
}

/// `{"reason": …}`, or `{}` when there is none.
fn reason_body(reason: Option<&str>) -> Value {
    match reason {
        Some(reason) => json!({ "reason": reason }),
        None => json!({}),
    }
}

fn yes_no(record: &Value, name: &str) -> String {
    match record.get(name).and_then(Value::as_bool) {
        Some(true) => "yes".to_owned(),
        Some(false) => "no".to_owned(),
        None => "-".to_owned(),
    }
}

async fn list(client: &Client, global: &Global, env: &str) -> anyhow::Result<()> {
    let body = client
        .get(&["api", "v1", "flags"], &[("environment", Some(env))])
        .await?;
    if global.json {
        return output::json(&body);
    }
    let flags = output::items(&body, "flags")?;
    if flags.is_empty() {
        return output::line(&format!("no flags in {env}"));
    }
    let rows: Vec<Vec<String>> = flags
        .iter()
        .map(|f| {
            vec![
                output::field(f, "key"),
                output::field(f, "type"),
                yes_no(f, "enabled"),
                output::field(f, "version"),
                output::field(f, "updatedAt"),
                output::field(f, "updatedBy"),
            ]
        })
        .collect();
    output::print(&output::table(
        &["KEY", "TYPE", "ENABLED", "VERSION", "UPDATED", "BY"],
        &rows,
    ))
}

/// Prints the flag as a `[[flags]]` entry of a config file, ready to paste.
async fn get(client: &Client, global: &Global, env: &str, key: &str) -> anyhow::Result<()> {
    let key = flag_key(key)?;
    let record = client
        .get(&["api", "v1", "flags", key], &[("environment", Some(env))])
        .await?;
    if global.json {
        return output::json(&record);
    }
    let spec = record.get("flag").cloned().unwrap_or(Value::Null);
    let header = format!(
        "# {key} in {env}: version {}, updated {} by {}\n\n",
        output::field(&record, "version"),
        output::field(&record, "updatedAt"),
        output::field(&record, "updatedBy"),
    );
    output::print(&(header + &convert::to_toml_document(&json!({ "flags": [spec] }))?))
}

async fn set_enabled(
    client: &Client,
    global: &Global,
    env: &str,
    args: &ReasonArgs,
    on: bool,
) -> anyhow::Result<()> {
    let key = flag_key(&args.key)?;
    let action = if on { "enable" } else { "disable" };
    let body = reason_body(args.reason.as_deref());
    let record = client
        .post(
            &["api", "v1", "flags", key, action],
            &[("environment", Some(env))],
            &body,
        )
        .await?;
    if global.json {
        return output::json(&record);
    }
    output::line(&format!(
        "flag {key} {action}d in {env} (version {})",
        output::field(&record, "version")
    ))
}

async fn history(client: &Client, global: &Global, env: &str, key: &str) -> anyhow::Result<()> {
    let key = flag_key(key)?;
    let body = client
        .get(
            &["api", "v1", "flags", key, "versions"],
            &[("environment", Some(env))],
        )
        .await?;
    if global.json {
        return output::json(&body);
    }
    let rows: Vec<Vec<String>> = output::items(&body, "versions")?
        .iter()
        .map(|v| {
            let state = match v.get("flag") {
                None | Some(Value::Null) => "deleted".to_owned(),
                Some(flag) if flag.get("enabled") == Some(&Value::Bool(false)) => {
                    "disabled".to_owned()
                }
                Some(_) => "enabled".to_owned(),
            };
            vec![
                output::field(v, "version"),
                output::field(v, "createdAt"),
                output::field(v, "author"),
                state,
                output::field(v, "reason"),
            ]
        })
        .collect();
    output::print(&output::table(
        &["VERSION", "TIME", "AUTHOR", "STATE", "REASON"],
        &rows,
    ))
}

async fn restore(
    client: &Client,
    global: &Global,
    env: &str,
    key: &str,
    version: i64,
    reason: Option<&str>,
) -> anyhow::Result<()> {
    let key = flag_key(key)?;
    let version_text = version.to_string();
    let segments = [
        "api",
        "v1",
        "flags",
        key,
        "versions",
        version_text.as_str(),
        "restore",
    ];
    let record = client
        .post(
            &segments,
            &[("environment", Some(env))],
            &reason_body(reason),
        )
        .await?;
    if global.json {
        return output::json(&record);
    }
    output::line(&format!(
        "flag {key} restored to version {version} in {env} (now version {})",
        output::field(&record, "version")
    ))
}

async fn delete(
    client: &Client,
    global: &Global,
    env: &str,
    args: &ReasonArgs,
) -> anyhow::Result<()> {
    let key = flag_key(&args.key)?;
    let params = [
        ("environment", Some(env)),
        ("reason", args.reason.as_deref()),
    ];
    let body = client.delete(&["api", "v1", "flags", key], &params).await?;
    if global.json {
        return output::json(&body);
    }
    let env_option = if global.environment.is_some() {
        format!(" -e {env}")
    } else {
        String::new()
    };
    match body.get("version").and_then(Value::as_i64) {
        Some(version) if version > 1 => output::line(&format!(
            "flag {key} deleted from {env} (version {version}); `rollgate flags restore {key} {}{env_option}` brings it back",
            version - 1
        )),
        _ => output::line(&format!("flag {key} deleted from {env}")),
    }
}
