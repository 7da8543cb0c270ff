//! `rollgate experiment …`: experiment definitions and their results.

use anyhow::anyhow;
use serde_json::{Value, json};

use crate::cli::{ExperimentCommand, Global};
use crate::client::Client;
use crate::{convert, output};

pub async fn run(
    client: &Client,
    global: &Global,
    command: ExperimentCommand,
) -> anyhow::Result<()> {
    let env = global.environment();
    match command {
        ExperimentCommand::List => list(client, global, env).await,
        ExperimentCommand::Get { key } => get(client, global, env, &key).await,
        ExperimentCommand::Results { key } => results(client, global, env, &key).await,
    }
}

/// Checks an experiment key given on the command line before it goes into a URL.
fn experiment_key(key: &str) -> anyhow::Result<&str> {
    stats::check_metric_key(key).map_err(|e| anyhow!("invalid experiment key: {e}"))?;
    Ok(key)
}

async fn list(client: &Client, global: &Global, env: &str) -> anyhow::Result<()> {
    let body = client
        .get(&["api", "v1", "experiments"], &[("environment", Some(env))])
        .await?;
    if global.json {
        return output::json(&body);
    }
    let experiments = output::items(&body, "experiments")?;
    if experiments.is_empty() {
        return output::line(&format!("no experiments in {env}"));
    }
    let rows: Vec<Vec<String>> = experiments
        .iter()
        .map(|e| {
            let arms = e["experiment"]["arms"]
                .as_array()
                .map(|arms| {
                    arms.iter()
                        .map(|a| output::field(a, "variant"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            vec![
                output::field(e, "key"),
                output::field(e, "flag"),
                arms,
                output::field(e, "version"),
                output::field(e, "updatedAt"),
            ]
        })
        .collect();
    output::print(&output::table(
        &["KEY", "FLAG", "ARMS (CONTROL FIRST)", "VERSION", "UPDATED"],
        &rows,
    ))
}

/// Prints the experiment as an `[[experiments]]` entry of a config file.
async fn get(client: &Client, global: &Global, env: &str, key: &str) -> anyhow::Result<()> {
    let record = client
        .get(
            &["api", "v1", "experiments", experiment_key(key)?],
            &[("environment", Some(env))],
        )
        .await?;
    if global.json {
        return output::json(&record);
    }
    let spec = record.get("experiment").cloned().unwrap_or(Value::Null);
    let header = format!(
        "# {key} in {env}: version {}, updated {} by {}\n\n",
        output::field(&record, "version"),
        output::field(&record, "updatedAt"),
        output::field(&record, "updatedBy"),
    );
    output::print(&(header + &convert::to_toml_document(&json!({ "experiments": [spec] }))?))
}

/// A share as a signed percentage: `+12.3%`.
fn percent(value: &Value) -> String {
    match value.as_f64() {
        Some(x) => format!("{:+.1}%", x * 100.0),
        None => "-".to_owned(),
    }
}

/// A p-value for a cell: 3 significant digits, `<0.0001` below that.
fn p_value(value: &Value) -> String {
    match value.as_f64() {
        Some(p) if p < 1e-4 => "<0.0001".to_owned(),
        Some(p) => format!("{p:.4}"),
        None => "-".to_owned(),
    }
}

async fn results(client: &Client, global: &Global, env: &str, key: &str) -> anyhow::Result<()> {
    let body = client
        .get(
            &["api", "v1", "experiments", experiment_key(key)?, "results"],
            &[("environment", Some(env))],
        )
        .await?;
    if global.json {
        return output::json(&body);
    }
    output::print(&render(&body))
}

/// The results as text: warnings first, then one table per metric.
fn render(body: &Value) -> String {
    let mut out = String::new();
    let flag_true = |name: &str| body[name].as_bool() == Some(true);
    let mut settings = vec![format!("alpha {}", output::number(&body["alpha"]))];
    settings.push(if flag_true("sequential") {
        "sequential (always-valid) intervals".to_owned()
    } else {
        "fixed-horizon intervals".to_owned()
    });
    if flag_true("cuped") {
        settings.push("CUPED".to_owned());
    }
    settings.push(format!("{} correction", output::field(body, "correction")));
    out.push_str(&format!(
        "{} — flag {} in {}; {}\n",
        output::field(body, "experiment"),
        output::field(body, "flag"),
        output::field(body, "environment"),
        settings.join(", ")
    ));
    let srm = &body["srm"];
    out.push_str(&format!(
        "sample ratio: {}{}\n",
        output::field(srm, "verdict"),
        srm["test"]["p_value"]
            .as_f64()
            .map(|p| format!(" (p = {p:.4})"))
            .unwrap_or_default()
    ));
    for warning in body["warnings"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "WARNING: {}\n",
            warning.as_str().unwrap_or_default()
        ));
    }
    let arms: Vec<Vec<String>> = body["arms"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            vec![
                output::field(a, "variant"),
                format!("{:.1}%", a["weight"].as_f64().unwrap_or(0.0) * 100.0),
                output::number(&a["units"]),
                output::number(&a["conflictingUnits"]),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&output::table(
        &["ARM", "PLANNED", "UNITS", "CONFLICTING"],
        &arms,
    ));
    for metric in body["metrics"].as_array().into_iter().flatten() {
        let better = if metric["higherIsBetter"].as_bool() == Some(false) {
            "lower is better"
        } else {
            "higher is better"
        };
        out.push_str(&format!(
            "\n{} ({}, {}, {}{})\n",
            output::field(metric, "metric"),
            output::field(metric, "kind"),
            output::field(metric, "role"),
            better,
            if metric["cuped"].as_bool() == Some(true) {
                ", CUPED"
            } else {
                ""
            }
        ));
        if let Some(note) = metric["note"].as_str() {
            out.push_str(&format!("{note}\n"));
        }
        let comparisons = metric["comparisons"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let rows: Vec<Vec<String>> = metric["arms"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, arm)| {
                let mut row = vec![
                    output::field(arm, "variant"),
                    output::number(&arm["units"]),
                    output::number(&arm["value"]),
                ];
                if i == 0 {
                    row.extend(["control".to_owned(), String::new(), String::new()]);
                    row.extend([String::new(), String::new(), String::new()]);
                    return row;
                }
                let c = comparisons.get(i - 1).cloned().unwrap_or(Value::Null);
                let lift = if c["relative"].is_object() {
                    &c["relative"]
                } else {
                    &c["absolute"]
                };
                let relative = c["relative"].is_object();
                let show = |v: &Value| {
                    if relative {
                        percent(v)
                    } else {
                        output::number(v)
                    }
                };
                row.push(show(&lift["estimate"]));
                row.push(match lift["ci"].as_array() {
                    Some(ci) if ci.len() == 2 => format!("[{}, {}]", show(&ci[0]), show(&ci[1])),
                    _ => "-".to_owned(),
                });
                row.push(p_value(&lift["pValue"]));
                row.push(p_value(&lift["pValueAdjusted"]));
                row.push(match c["chanceToBeatControl"].as_f64() {
                    Some(p) => format!("{:.1}%", p * 100.0),
                    None => "-".to_owned(),
                });
                row.push(match c["insufficient"].as_str() {
                    Some(why) => format!("{} ({why})", output::field(&c, "verdict")),
                    None => output::field(&c, "verdict"),
                });
                row
            })
            .collect();
        out.push_str(&output::table(
            &[
                "ARM",
                "UNITS",
                "VALUE",
                "LIFT",
                "INTERVAL",
                "P",
                "P ADJ",
                "BEATS CONTROL",
                "VERDICT",
            ],
            &rows,
        ));
    }
    if let Some(auto) = body["autoSelect"].as_object() {
        let choices: Vec<String> = auto
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| {
                let pair = c.as_array()?;
                Some(format!(
                    "{} {:.1}%",
                    pair.first()?.as_str()?,
                    pair.get(1)?.as_f64()? * 100.0
                ))
            })
            .collect();
        out.push_str(&format!(
            "\nautomatic selection in arm {} (probability best on {}): {}\n",
            auto.get("arm").and_then(Value::as_str).unwrap_or("-"),
            auto.get("metric").and_then(Value::as_str).unwrap_or("-"),
            choices.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn results_render_lifts_as_percentages_and_warnings_first() {
        let body = json!({
            "experiment": "e", "flag": "f", "environment": "production", "alpha": 0.05,
            "sequential": false, "cuped": false, "correction": "benjamini-hochberg",
            "warnings": ["Sample ratio mismatch: …"],
            "srm": {"verdict": "failed", "test": {"p_value": 0.00001}},
            "arms": [
                {"variant": "a", "weight": 0.5, "units": 1000, "conflictingUnits": 0},
                {"variant": "b", "weight": 0.5, "units": 1100, "conflictingUnits": 3}
            ],
            "metrics": [{
                "metric": "converted", "kind": "proportion", "role": "primary",
                "higherIsBetter": true, "cuped": false,
                "arms": [{"variant": "a", "units": 1000, "value": 0.1},
                         {"variant": "b", "units": 1100, "value": 0.12}],
                "comparisons": [{
                    "variant": "b",
                    "relative": {"estimate": 0.2, "ci": [0.05, 0.35], "pValue": 0.003, "pValueAdjusted": 0.006},
                    "chanceToBeatControl": 0.998, "verdict": "better"
                }]
            }]
        });
        let text = render(&body);
        let warning = text
            .find("WARNING: Sample ratio mismatch")
            .expect("warning");
        let table = text.find("converted (proportion").expect("metric");
        assert!(warning < table, "{text}");
        for expected in [
            "fixed-horizon intervals, benjamini-hochberg correction",
            "sample ratio: failed (p = 0.0000)",
            "50.0%",
            "+20.0%",
            "[+5.0%, +35.0%]",
            "0.0030",
            "0.0060",
            "99.8%",
            "better",
            "control",
        ] {
            assert!(text.contains(expected), "{expected} in\n{text}");
        }
    }
}
