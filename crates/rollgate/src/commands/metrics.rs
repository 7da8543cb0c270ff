//! `rollgate metrics …`: the metric definitions of an environment.

use anyhow::anyhow;
use serde_json::{Value, json};

use crate::cli::{Global, MetricsCommand};
use crate::client::Client;
use crate::{convert, output};

pub async fn run(client: &Client, global: &Global, command: MetricsCommand) -> anyhow::Result<()> {
    let env = global.environment();
    match command {
        MetricsCommand::List => list(client, global, env).await,
        MetricsCommand::Get { key } => get(client, global, env, &key).await,
        MetricsCommand::Show {
            key,
            flag,
            bucket,
            from,
            to,
        } => {
            show(
                client,
                global,
                env,
                &key,
                &flag,
                &bucket,
                from.as_deref(),
                to.as_deref(),
            )
            .await
        }
    }
}

/// Checks a metric key given on the command line before it goes into a URL.
fn metric_key(key: &str) -> anyhow::Result<&str> {
    stats::check_metric_key(key).map_err(|e| anyhow!("invalid metric key: {e}"))?;
    Ok(key)
}

/// What a metric reads, in one cell: `calc_error / calc_request`,
/// `p95 of calc_request`, `sum(calc_request)`.
fn reads(spec: &Value) -> String {
    let text = |name: &str| spec.get(name).and_then(Value::as_str).unwrap_or("-");
    let filtered = |table: &Value| {
        if table.get("filter").is_some_and(|f| f != &json!({})) {
            " filtered"
        } else {
            ""
        }
    };
    let side = |name: &str| match spec.get(name) {
        Some(Value::String(event)) => event.clone(),
        Some(table @ Value::Object(_)) => {
            let event = table.get("event").and_then(Value::as_str).unwrap_or("-");
            let agg = table.get("agg").and_then(Value::as_str).unwrap_or("count");
            format!("{agg}({event}){}", filtered(table))
        }
        _ => "-".to_owned(),
    };
    let event = text("event");
    let reads = match text("kind") {
        "ratio" => format!("{} / {}", side("numerator"), side("denominator")),
        "quantile" => {
            let q = spec.get("q").and_then(Value::as_f64).unwrap_or(f64::NAN);
            // 0.95 → p95, 0.999 → p99.9, without float noise.
            let percent = (q * 100.0 * 1e6).round() / 1e6;
            format!("p{percent} of {event}")
        }
        "mean" | "count" => format!("{}({event})", text_or(spec, "agg", "count")),
        "retention" => format!(
            "{event} on days {}–{}",
            output::field(spec, "from_day"),
            output::field(spec, "to_day")
        ),
        "uptime" => format!(
            "{event}, {} ≤ {}",
            text("error_event"),
            output::field(spec, "max_error_rate")
        ),
        _ => event.to_owned(),
    };
    reads + filtered(spec)
}

fn text_or<'a>(spec: &'a Value, name: &str, default: &'a str) -> &'a str {
    spec.get(name).and_then(Value::as_str).unwrap_or(default)
}

async fn list(client: &Client, global: &Global, env: &str) -> anyhow::Result<()> {
    let body = client
        .get(&["api", "v1", "metrics"], &[("environment", Some(env))])
        .await?;
    if global.json {
        return output::json(&body);
    }
    let metrics = output::items(&body, "metrics")?;
    if metrics.is_empty() {
        return output::line(&format!("no metrics in {env}"));
    }
    let rows: Vec<Vec<String>> = metrics
        .iter()
        .map(|m| {
            let better = match m.get("higherIsBetter").and_then(Value::as_bool) {
                Some(true) => "higher",
                Some(false) => "lower",
                None => "-",
            };
            vec![
                output::field(m, "key"),
                output::field(m, "kind"),
                reads(m.get("metric").unwrap_or(&Value::Null)),
                better.to_owned(),
                output::field(m, "version"),
                output::field(m, "updatedAt"),
                output::field(m, "updatedBy"),
            ]
        })
        .collect();
    output::print(&output::table(
        &["KEY", "KIND", "READS", "BETTER", "VERSION", "UPDATED", "BY"],
        &rows,
    ))
}

/// Prints the metric as a `[[metrics]]` entry of a config file, ready to paste.
async fn get(client: &Client, global: &Global, env: &str, key: &str) -> anyhow::Result<()> {
    let key = metric_key(key)?;
    let record = client
        .get(
            &["api", "v1", "metrics", key],
            &[("environment", Some(env))],
        )
        .await?;
    if global.json {
        return output::json(&record);
    }
    let spec = record.get("metric").cloned().unwrap_or(Value::Null);
    let header = format!(
        "# {key} in {env}: version {}, updated {} by {}\n\n",
        output::field(&record, "version"),
        output::field(&record, "updatedAt"),
        output::field(&record, "updatedBy"),
    );
    output::print(&(header + &convert::to_toml_document(&json!({ "metrics": [spec] }))?))
}

#[allow(clippy::too_many_arguments)]
async fn show(
    client: &Client,
    global: &Global,
    env: &str,
    key: &str,
    flag: &str,
    bucket: &str,
    from: Option<&str>,
    to: Option<&str>,
) -> anyhow::Result<()> {
    let body = client
        .get(
            &["api", "v1", "metrics", metric_key(key)?, "series"],
            &[
                ("environment", Some(env)),
                ("flag", Some(flag)),
                ("bucket", Some(bucket)),
                ("from", from),
                ("to", to),
            ],
        )
        .await?;
    if global.json {
        return output::json(&body);
    }
    let variants = output::items(&body, "variants")?;
    output::print(&format!(
        "{} ({}) by variant of {} — totals over all data; series {} to {} by {}\n",
        key,
        output::field(&body, "kind"),
        flag,
        output::field(&body, "from"),
        output::field(&body, "to"),
        output::field(&body, "bucket"),
    ))?;
    let rows: Vec<Vec<String>> = variants
        .iter()
        .map(|v| {
            let t = &v["total"];
            vec![
                output::field(v, "variant"),
                output::number(&t["value"]),
                output::number(&t["units"]),
                output::number(&t["conflictingUnits"]),
                output::number(&t["events"]),
            ]
        })
        .collect();
    output::print(&output::table(
        &["VARIANT", "VALUE", "UNITS", "CONFLICTING", "EVENTS"],
        &rows,
    ))?;
    for v in variants {
        let points = v["points"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if points.is_empty() {
            continue;
        }
        output::print(&format!("\n{}:\n", output::field(v, "variant")))?;
        let rows: Vec<Vec<String>> = points
            .iter()
            .map(|p| {
                vec![
                    output::field(p, "start"),
                    output::number(&p["value"]),
                    output::number(&p["events"]),
                ]
            })
            .collect();
        output::print(&output::table(&["START", "VALUE", "EVENTS"], &rows))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn what_a_metric_reads_fits_in_a_cell() {
        let cases = [
            (
                json!({"kind": "ratio", "numerator": "calc_error", "denominator": "calc_request"}),
                "calc_error / calc_request",
            ),
            (
                json!({"kind": "ratio", "numerator": {"event": "calc_request", "agg": "sum"}, "denominator": "calc_request"}),
                "sum(calc_request) / calc_request",
            ),
            (
                json!({"kind": "ratio", "numerator": {"event": "req", "filter": {"cache_hit": true}}, "denominator": "req"}),
                "count(req) filtered / req",
            ),
            (
                json!({"kind": "quantile", "event": "calc_request", "q": 0.95}),
                "p95 of calc_request",
            ),
            (
                json!({"kind": "mean", "event": "calc_request", "agg": "sum"}),
                "sum(calc_request)",
            ),
            (json!({"kind": "count", "event": "e"}), "count(e)"),
            (
                json!({"kind": "proportion", "event": "checkout"}),
                "checkout",
            ),
            (
                json!({"kind": "proportion", "event": "used", "filter": {"feature": "x"}}),
                "used filtered",
            ),
            (
                json!({"kind": "retention", "event": "session_start", "from_day": 7, "to_day": 14}),
                "session_start on days 7–14",
            ),
            (
                json!({"kind": "uptime", "event": "req", "error_event": "err", "max_error_rate": 0.01}),
                "req, err ≤ 0.01",
            ),
        ];
        for (spec, expected) in cases {
            assert_eq!(reads(&spec), expected, "{spec}");
        }
    }
}
