//! `rollgate report status|weekly|review|release-notes FLAG`: the server's
//! reports on a flag's rollout, printed as Markdown (`--json`: the report as
//! the server gives it, Markdown included).

use anyhow::anyhow;

use crate::cli::{Global, ReportCommand};
use crate::client::Client;
use crate::output;

use super::flag_key;

pub async fn run(client: &Client, global: &Global, command: ReportCommand) -> anyhow::Result<()> {
    let (kind, flag) = match &command {
        ReportCommand::Status { flag } => ("status", flag),
        ReportCommand::Weekly { flag } => ("weekly", flag),
        ReportCommand::Review { flag } => ("review", flag),
        ReportCommand::ReleaseNotes { flag } => ("release-notes", flag),
    };
    let body = client
        .get(
            &["api", "v1", "reports", kind, flag_key(flag)?],
            &[
                ("environment", Some(global.environment())),
                ("format", Some("json")),
            ],
        )
        .await?;
    if global.json {
        return output::json(&body);
    }
    let markdown = body["markdown"]
        .as_str()
        .ok_or_else(|| anyhow!("the server's report has no Markdown; is it a Rollgate server?"))?;
    output::print(markdown)
}
