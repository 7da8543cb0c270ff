//! `rollgate deliveries`: webhook deliveries to notification channels, with
//! their status, attempts and last error, newest first.

use crate::cli::{DeliveriesArgs, Global};
use crate::client::Client;
use crate::output;

pub async fn run(client: &Client, global: &Global, args: &DeliveriesArgs) -> anyhow::Result<()> {
    let limit = args.limit.map(|l| l.to_string());
    let params = [
        // Every environment unless `-e` names one.
        ("environment", global.environment.as_deref()),
        ("status", args.status.as_deref()),
        ("limit", limit.as_deref()),
    ];
    let body = client.get(&["api", "v1", "deliveries"], &params).await?;
    if global.json {
        return output::json(&body);
    }
    let deliveries = output::items(&body, "deliveries")?;
    if deliveries.is_empty() {
        return output::line("no deliveries");
    }
    let rows: Vec<Vec<String>> = deliveries
        .iter()
        .map(|d| {
            vec![
                output::field(d, "id"),
                output::field(d, "createdAt"),
                output::field(d, "environment"),
                output::field(d, "channel"),
                output::field(d, "event"),
                output::field(d, "status"),
                output::field(d, "attempts"),
                output::field(d, "nextAttemptAt"),
                output::field(d, "lastError"),
            ]
        })
        .collect();
    output::print(&output::table(
        &[
            "ID",
            "CREATED",
            "ENVIRONMENT",
            "CHANNEL",
            "EVENT",
            "STATUS",
            "ATTEMPTS",
            "NEXT ATTEMPT",
            "LAST ERROR",
        ],
        &rows,
    ))
}
