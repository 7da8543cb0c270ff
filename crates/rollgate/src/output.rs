//! What commands print: plain text tables for people, the server's JSON for
//! scripts.

use std::io::{ErrorKind, Write};

use anyhow::Context as _;
use serde_json::Value;

/// Writes to standard output. A closed pipe (`rollgate audit | head`) is not
/// an error: the reader has all it wanted.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    match written {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to standard output"),
    }
}

/// Prints a line to standard output.
pub fn line(text: &str) -> anyhow::Result<()> {
    print(&format!("{text}\n"))
}

/// Prints JSON for scripts, pretty and with a final newline.
pub fn json(value: &Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("cannot format JSON")?;
    line(&text)
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut text = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// A field of a JSON record as text: strings without quotes (their control
/// characters escaped, see [`text`]), null as `-`.
pub fn field(record: &Value, name: &str) -> String {
    match record.get(name) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) if s.is_empty() => "-".to_owned(),
        Some(Value::String(s)) => text(s),
        Some(other) => other.to_string(),
    }
}

/// Text from users (reasons, notes, descriptions) made safe for a terminal:
/// control characters, escape sequences and line breaks included, are
/// shown escaped (`\u{1b}`, `\n`) instead of acting on the terminal or the
/// layout.
pub fn text(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The items of a list the server answered with (`{"flags": [...]}`).
pub fn items<'a>(body: &'a Value, name: &str) -> anyhow::Result<&'a [Value]> {
    body.get(name)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .with_context(|| format!("the server's answer has no `{name}` list; is the server the same version as this CLI?"))
}

/// A number for a table cell: up to 6 decimals, `-` when absent.
pub fn number(value: &Value) -> String {
    match value.as_f64() {
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{x:.0}"),
        Some(x) => format!("{x:.6}").trim_end_matches('0').to_owned(),
        None => "-".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn user_text_cannot_drive_the_terminal() {
        assert_eq!(text("plain, ünïcode"), "plain, ünïcode");
        assert_eq!(text("\u{1b}[2Jwiped\nnext"), "\\u{1b}[2Jwiped\\nnext");
        assert_eq!(field(&json!({"a": "x\ty"}), "a"), "x\\ty");
    }

    #[test]
    fn tables_align_on_the_widest_cell() {
        let rows = vec![vec![
            "calc-model".to_owned(),
            "string".to_owned(),
            "yes".to_owned(),
        ]];
        assert_eq!(
            table(&["KEY", "TYPE", "ENABLED"], &rows),
            "KEY         TYPE    ENABLED\ncalc-model  string  yes\n"
        );
    }

    #[test]
    fn fields_read_as_text() {
        let record = json!({"s": "x", "n": 3, "none": null, "empty": ""});
        assert_eq!(field(&record, "s"), "x");
        assert_eq!(field(&record, "n"), "3");
        assert_eq!(field(&record, "none"), "-");
        assert_eq!(field(&record, "empty"), "-");
        assert_eq!(field(&record, "absent"), "-");
    }
}
