//! `rollgate audit`: who changed what, when and why, newest first.

use super::flag_key;
use crate::cli::{AuditArgs, Global};
use crate::client::Client;
use crate::output;

pub async fn run(client: &Client, global: &Global, args: &AuditArgs) -> anyhow::Result<()> {
    let flag = args.flag.as_deref().map(flag_key).transpose()?;
    let limit = args.limit.map(|l| l.to_string());
    let params = [
        // Every environment unless `-e` names one.
        ("environment", global.environment.as_deref()),
        ("target_kind", flag.map(|_| "flag")),
        ("target_key", flag),
        ("limit", limit.as_deref()),
    ];
    let body = client.get(&["api", "v1", "audit"], &params).await?;
    if global.json {
        return output::json(&body);
    }
    let entries = output::items(&body, "entries")?;
    if entries.is_empty() {
        return output::line("no audit entries");
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                output::field(e, "id"),
                output::field(e, "at"),
                output::field(e, "actor"),
                output::field(e, "action"),
                output::field(e, "environment"),
                format!(
                    "{} {}",
                    output::field(e, "targetKind"),
                    output::field(e, "targetKey")
                ),
                output::field(e, "reason"),
            ]
        })
        .collect();
    output::print(&output::table(
        &[
            "ID",
            "TIME",
            "ACTOR",
            "ACTION",
            "ENVIRONMENT",
            "TARGET",
            "REASON",
        ],
        &rows,
    ))
}
