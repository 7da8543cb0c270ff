//! `rollgate eval KEY --context JSON`: one OFREP evaluation, as an
//! application would make it.

use anyhow::{anyhow, bail};
use serde_json::Value;

use super::flag_key;
use crate::cli::{EvalArgs, Global};
use crate::client::Client;
use crate::output;

/// A context to show in error messages.
const CONTEXT_EXAMPLE: &str = r#"--context '{"targetingKey":"u-1","plan":"pro"}'"#;

pub async fn run(client: &Client, global: &Global, args: &EvalArgs) -> anyhow::Result<()> {
    let key = flag_key(&args.key)?;
    let context: Value = serde_json::from_str(&args.context)
        .map_err(|e| anyhow!("--context is not valid JSON ({e}); e.g. {CONTEXT_EXAMPLE}"))?;
    if !context.is_object() {
        bail!("--context must be a JSON object; e.g. {CONTEXT_EXAMPLE}");
    }
    // With `-e` an admin token picks the environment; a client token uses its own.
    let result = client
        .evaluate(key, global.environment.as_deref(), &context)
        .await?;
    if let Some(code) = result.get("errorCode") {
        bail!(
            "{} ({})",
            output::field(&result, "errorDetails"),
            code.as_str().unwrap_or("error")
        );
    }
    if global.json {
        return output::json(&result);
    }
    output::line(&describe(&result))
}

/// `advanced  (variant advanced, reason TARGETING_MATCH)`. OFREP has no
/// `DEFAULT` reason; the server sends it as `metadata.reason`, shown here.
fn describe(result: &Value) -> String {
    let value = match result.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "-".to_owned(),
    };
    let reason = result
        .get("metadata")
        .and_then(|m| m.get("reason"))
        .and_then(Value::as_str)
        .map_or_else(|| output::field(result, "reason"), str::to_owned);
    format!(
        "{value}  (variant {}, reason {reason})",
        output::field(result, "variant")
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn evaluations_read_as_value_variant_and_reason() {
        let result = json!({"key": "f", "value": "advanced", "variant": "advanced", "reason": "TARGETING_MATCH"});
        assert_eq!(
            describe(&result),
            "advanced  (variant advanced, reason TARGETING_MATCH)"
        );
        let result = json!({"key": "f", "value": {"rows": 10}, "variant": "big", "reason": "UNKNOWN", "metadata": {"reason": "DEFAULT"}});
        assert_eq!(
            describe(&result),
            r#"{"rows":10}  (variant big, reason DEFAULT)"#
        );
    }
}
