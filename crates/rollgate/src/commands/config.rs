//! `rollgate apply` and `rollgate export`: config as code.
//!
//! A file is parsed here (so a syntax error points at its line and nothing is
//! sent) and validated by the server (so the rules are checked against the
//! state they are committed on). The server applies a document whole or not
//! at all.

use std::io::Read as _;
use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use serde_json::Value;

use crate::cli::{ApplyArgs, ExportArgs, Format, Global};
use crate::client::Client;
use crate::{convert, output};

/// The path that means standard input.
const STDIN_PATH: &str = "-";

pub async fn apply(client: &Client, global: &Global, args: &ApplyArgs) -> anyhow::Result<()> {
    let (name, text, format) = read_document(&args.file, args.format)?;
    let document = match format {
        Format::Toml => convert::parse_toml(&text, &name)?,
        Format::Json => convert::parse_json(&text, &name)?,
    };
    if !document.is_object() {
        bail!(
            "{name}: a config document is a table with `environment`, `segments`, `flags`, `metrics` and `experiments`"
        );
    }
    let params = [
        // The document's own `environment` applies unless `-e` names one.
        ("environment", global.environment.as_deref()),
        ("dry_run", args.dry_run.then_some("true")),
        ("prune", args.prune.then_some("true")),
        ("reason", args.reason.as_deref()),
    ];
    let result = client
        .post(&["api", "v1", "apply"], &params, &document)
        .await
        .with_context(|| format!("{name} was not applied"))?;
    if global.json {
        return output::json(&result);
    }
    output::print(&apply_summary(&result)?)
}

/// One line per change, then what happened as a whole.
fn apply_summary(result: &Value) -> anyhow::Result<String> {
    let changes = output::items(result, "changes")?;
    let environment = output::field(result, "environment");
    let revision = output::field(result, "revision");
    let dry_run = result
        .get("dry_run")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut text = String::new();
    let mut changed = 0;
    for change in changes {
        let action = output::field(change, "action");
        if action != "unchanged" {
            changed += 1;
        }
        text.push_str(&format!(
            "{} {}: {action}",
            output::field(change, "kind"),
            output::field(change, "key")
        ));
        if let Some(version) = change.get("version").and_then(Value::as_i64) {
            text.push_str(&format!(" (version {version})"));
        }
        text.push('\n');
    }
    for note in result
        .get("notes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        text.push_str(&format!("note: {}\n", note.as_str().unwrap_or_default()));
    }
    let plural = if changed == 1 { "" } else { "s" };
    text.push_str(&if dry_run {
        format!("dry run: nothing changed ({changed} change{plural} would be applied to {environment})\n")
    } else if changed == 0 {
        format!("nothing to change in {environment} (revision {revision})\n")
    } else {
        format!("{changed} change{plural} applied to {environment} (revision {revision})\n")
    });
    Ok(text)
}

/// The file's display name, its text and its format.
fn read_document(path: &Path, format: Option<Format>) -> anyhow::Result<(String, String, Format)> {
    if path.as_os_str() == STDIN_PATH {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the document from standard input")?;
        return Ok(("<stdin>".to_owned(), text, format.unwrap_or(Format::Toml)));
    }
    let name = path.display().to_string();
    let format = format.or_else(|| format_of(path)).ok_or_else(|| {
        anyhow!(
            "cannot tell the format of {name}: name it .toml or .json, or pass --format toml|json"
        )
    })?;
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {name}"))?;
    Ok((name, text, format))
}

/// The format a file's extension names.
fn format_of(path: &Path) -> Option<Format> {
    let extension = path.extension()?.to_str()?.to_ascii_lowercase();
    match extension.as_str() {
        "toml" => Some(Format::Toml),
        "json" => Some(Format::Json),
        _ => None,
    }
}

pub async fn export(client: &Client, global: &Global, args: &ExportArgs) -> anyhow::Result<()> {
    let format = args
        .format
        .or(global.json.then_some(Format::Json))
        .or_else(|| args.output.as_deref().and_then(format_of))
        .unwrap_or(Format::Toml);
    let document = client
        .get(
            &["api", "v1", "export"],
            &[("environment", Some(global.environment()))],
        )
        .await?;
    let text = match format {
        Format::Toml => convert::to_toml_document(&document)?,
        Format::Json => {
            serde_json::to_string_pretty(&document).context("cannot format JSON")? + "\n"
        }
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {} to {}", global.environment(), path.display());
            Ok(())
        }
        None => output::print(&text),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn summaries_count_real_changes() {
        let result = json!({"environment": "production", "revision": 3, "dry_run": false, "changes": [
            {"kind": "segment", "key": "power-users", "action": "unchanged", "version": 1},
            {"kind": "flag", "key": "calc-model", "action": "created", "version": 1},
        ]});
        assert_eq!(
            apply_summary(&result).expect("a summary"),
            "segment power-users: unchanged (version 1)\nflag calc-model: created (version 1)\n1 change applied to production (revision 3)\n"
        );
        let result = json!({"environment": "staging", "revision": 3, "dry_run": true, "changes": [
            {"kind": "flag", "key": "a", "action": "updated", "version": 2},
            {"kind": "flag", "key": "b", "action": "deleted", "version": null},
        ]});
        assert_eq!(
            apply_summary(&result).expect("a summary"),
            "flag a: updated (version 2)\nflag b: deleted\ndry run: nothing changed (2 changes would be applied to staging)\n"
        );
        let result =
            json!({"environment": "production", "revision": 3, "dry_run": false, "changes": []});
        assert_eq!(
            apply_summary(&result).expect("a summary"),
            "nothing to change in production (revision 3)\n"
        );
    }

    #[test]
    fn formats_come_from_extensions() {
        assert_eq!(format_of(Path::new("a/b.toml")), Some(Format::Toml));
        assert_eq!(format_of(Path::new("b.JSON")), Some(Format::Json));
        assert_eq!(format_of(Path::new("b.yaml")), None);
        assert_eq!(format_of(Path::new("b")), None);
    }
}
