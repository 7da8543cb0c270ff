//! Config documents between TOML and JSON.
//!
//! The server speaks JSON; people write TOML. Both directions keep the order of
//! keys, because order is meaning in a document (a split lays out its buckets
//! in the order written). TOML has no null, so nulls are left out on the way
//! to TOML: in the config format an absent field and a null one mean the same.

use std::fmt::Write as _;

use anyhow::{anyhow, bail};
use serde_json::{Map, Number, Value};
use toml::{Table, Value as TomlValue};

/// Tables nested deeper than this are written as `[sections]` instead of
/// `{ inline = { tables } }`, so that lines stay readable.
const MAX_INLINE_DEPTH: usize = 2;

/// The first level of tables whose key order must survive: below the
/// document's items (see [`sections`]).
const FIRST_ORDERED_LEVEL: usize = 2;

/// Top-level lists whose items keep their small tables inline, as they are
/// written by hand: `numerator = { event = "calc_request", filter = { cache_hit = true } }`.
const INLINE_ITEM_LISTS: &[&str] = &["metrics", "experiments", "rollouts"];

/// Parses a TOML document. A syntax error names the file, the line and the
/// column.
pub fn parse_toml(text: &str, name: &str) -> anyhow::Result<Value> {
    let table: Table = text.parse().map_err(|e: toml::de::Error| {
        let message = e.message().trim_end();
        match e.span() {
            Some(span) => {
                let (line, column) = line_and_column(text, span.start);
                anyhow!("{name}:{line}:{column}: invalid TOML at line {line}, column {column}: {message}")
            }
            None => anyhow!("{name}: invalid TOML: {message}"),
        }
    })?;
    table_to_json(table, "")
}

/// Parses a JSON document. A syntax error names the file, the line and the
/// column.
pub fn parse_json(text: &str, name: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).map_err(|e| {
        let (line, column) = (e.line(), e.column());
        anyhow!("{name}:{line}:{column}: invalid JSON at line {line}, column {column}: {e}")
    })
}

/// 1-based line and column (in characters) of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

fn table_to_json(table: Table, path: &str) -> anyhow::Result<Value> {
    let mut map = Map::with_capacity(table.len());
    for (key, value) in table {
        let child = join(path, &key);
        map.insert(key, toml_to_json(value, &child)?);
    }
    Ok(Value::Object(map))
}

/// A TOML value as JSON; dates and times become RFC 3339 strings.
fn toml_to_json(value: TomlValue, path: &str) -> anyhow::Result<Value> {
    Ok(match value {
        TomlValue::String(s) => Value::String(s),
        TomlValue::Integer(i) => Value::Number(i.into()),
        TomlValue::Float(f) => Value::Number(
            Number::from_f64(f)
                .ok_or_else(|| anyhow!("`{path}` is {f}; only finite numbers are allowed"))?,
        ),
        TomlValue::Boolean(b) => Value::Bool(b),
        TomlValue::Datetime(d) => Value::String(d.to_string()),
        TomlValue::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| toml_to_json(item, &format!("{path}[{i}]")))
                .collect::<anyhow::Result<_>>()?,
        ),
        TomlValue::Table(table) => table_to_json(table, path)?,
    })
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// A JSON value as TOML, or `None` for null. A null in an array has no TOML
/// form and is an error; a null in an object is left out.
pub fn json_to_toml(value: &Value, path: &str) -> anyhow::Result<Option<TomlValue>> {
    Ok(Some(match value {
        Value::Null => return Ok(None),
        Value::Bool(b) => TomlValue::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => TomlValue::Integer(i),
            (None, Some(f)) if n.is_f64() => TomlValue::Float(f),
            _ => bail!("`{path}` is {n}, larger than TOML integers allow; use --format json"),
        },
        Value::String(s) => TomlValue::String(s.clone()),
        Value::Array(items) => {
            let mut array = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let child = format!("{path}[{i}]");
                let item = json_to_toml(item, &child)?.ok_or_else(|| {
                    anyhow!("`{child}` is null, which TOML cannot express; use --format json")
                })?;
                array.push(item);
            }
            TomlValue::Array(array)
        }
        Value::Object(map) => {
            let mut table = Table::new();
            for (key, item) in map {
                if let Some(item) = json_to_toml(item, &join(path, key))? {
                    table.insert(key.clone(), item);
                }
            }
            TomlValue::Table(table)
        }
    }))
}

/// Writes a JSON object as a TOML document in the style of hand-written
/// config files: top-level lists of tables as `[[flags]]` sections, small
/// values inline.
pub fn to_toml_document(document: &Value) -> anyhow::Result<String> {
    let Some(TomlValue::Table(table)) = json_to_toml(document, "")? else {
        bail!("a TOML document must be a table, not {document}");
    };
    let mut out = String::new();
    write_section(&mut out, &mut Vec::new(), &table);
    // A document without top-level values starts with a section.
    Ok(out.trim_start_matches('\n').to_owned())
}

/// Writes the entries of one table: first its inline values, then its
/// sub-sections (a TOML key/value after a section header belongs to it).
fn write_section(out: &mut String, path: &mut Vec<String>, table: &Table) {
    let inline_items = matches!(&path[..], [list] if INLINE_ITEM_LISTS.contains(&list.as_str()));
    let sections = sections(table, path.len(), inline_items);
    for ((key, value), &section) in table.iter().zip(&sections) {
        if !section {
            let _ = writeln!(out, "{} = {value}", toml_key(key));
        }
    }
    for ((key, value), &section) in table.iter().zip(&sections) {
        if !section {
            continue;
        }
        path.push(toml_key(key));
        let header = path.join(".");
        match value {
            TomlValue::Table(inner) => {
                let _ = writeln!(out, "\n[{header}]");
                write_section(out, path, inner);
            }
            TomlValue::Array(items) => {
                for item in items {
                    let _ = writeln!(out, "\n[[{header}]]");
                    if let TomlValue::Table(inner) = item {
                        write_section(out, path, inner);
                    }
                }
            }
            _ => {}
        }
        path.pop();
    }
}

/// Which entries of a table at `level` get their own section. Sections are
/// written after inline values, which reorders keys. The document (level 0)
/// and its items (level 1, a flag or a segment) are records whose key order
/// carries no meaning; deeper tables may be maps whose order does (variants),
/// so there an entry is a section only if no inline value follows it.
fn sections(table: &Table, level: usize, inline_items: bool) -> Vec<bool> {
    let mut sections: Vec<bool> = table
        .values()
        .map(|value| is_section(value, level, inline_items))
        .collect();
    if level >= FIRST_ORDERED_LEVEL {
        let mut inline_follows = false;
        for section in sections.iter_mut().rev() {
            if !*section {
                inline_follows = true;
            } else if inline_follows {
                *section = false;
            }
        }
    }
    sections
}

/// Whether a value of a table at `level` (0 = the document) gets its own
/// section. Lists of tables that hold tables (flags, rules) do, as do the
/// documents' top-level lists (segments); tables do when they are deep, or
/// hold a table and belong to a top-level item (`[flags.default]`) that is
/// not one of [`INLINE_ITEM_LISTS`].
fn is_section(value: &TomlValue, level: usize, inline_items: bool) -> bool {
    match value {
        TomlValue::Table(_) => {
            let depth = table_depth(value);
            depth > MAX_INLINE_DEPTH || (level == 1 && depth > 1 && !inline_items)
        }
        TomlValue::Array(items) => {
            !items.is_empty()
                && items.iter().all(TomlValue::is_table)
                && (level == 0 || items.iter().any(|item| table_depth(item) > 1))
        }
        _ => false,
    }
}

/// How deeply tables nest in a value: a scalar is 0, `{ a = 1 }` is 1,
/// `{ a = { b = 1 } }` is 2; arrays count as their deepest item.
fn table_depth(value: &TomlValue) -> usize {
    match value {
        TomlValue::Table(table) => 1 + table.values().map(table_depth).max().unwrap_or(0),
        TomlValue::Array(items) => items.iter().map(table_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// A key as TOML writes it: bare when it can be, quoted otherwise.
fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        key.to_owned()
    } else {
        TomlValue::String(key.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const QUICKSTART: &str = include_str!("../../../examples/quickstart.toml");

    /// Parses TOML back and checks it is the JSON it was written from. The
    /// fixtures list inline values before sections, the order TOML writes
    /// them in, so that the text keeps the order of every key.
    #[track_caller]
    fn check_round_trip(document: Value) -> String {
        let text = to_toml_document(&document).expect("writes TOML");
        let back = parse_toml(&text, "out.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, document, "{text}");
        // `Value` equality ignores order; the text must keep it too.
        assert_eq!(back.to_string(), document.to_string(), "{text}");
        text
    }

    #[test]
    fn the_quickstart_is_written_back_as_it_reads() {
        let document = parse_toml(QUICKSTART, "quickstart.toml").expect("the quickstart parses");
        let text = check_round_trip(document);
        let expected = "environment = \"production\"\n\n".to_owned()
            + &QUICKSTART.replacen("environment = \"production\"\n", "", 1);
        assert_eq!(text.trim_end(), expected.trim_end());
    }

    #[test]
    fn order_of_keys_is_kept() {
        let document =
            parse_toml("z = 1\na = 2\nm = { y = 1, b = 2 }\n", "t.toml").expect("parses");
        assert_eq!(document.to_string(), r#"{"z":1,"a":2,"m":{"y":1,"b":2}}"#);
    }

    #[test]
    fn documents_of_every_shape_round_trip() {
        check_round_trip(json!({"environment": "staging", "segments": [], "flags": []}));
        check_round_trip(json!({"flags": [{
            "key": "obj", "type": "object", "off_variant": "off", "salt": "s",
            "variants": {"off": {}, "big": {"rows": 10, "nested": {"deep": {"deeper": [1, 2.5, "x"]}}}, "list": [{"a": 1}]},
            "rules": [{"conditions": [{"attribute": "app.version", "op": "semver_gte", "value": "1.2.0"}], "serve": {"variant": "big"}}],
            "default": {"serve": {"split": {"off": 33.5, "big": 66.5}}}
        }]}));
        check_round_trip(
            json!({"flags": [{"key": "last", "variants": {"a": 1, "deep": {"b": {"c": {"d": 1}}}}}]}),
        );
        check_round_trip(
            json!({"flags": [{"key": "k", "variants": {"with space": true, "dotted.key": false, "": 1, "quote\"": "a\nb"}}]}),
        );
    }

    #[test]
    fn metric_sides_stay_inline() {
        let document = json!({"metrics": [
            {"key": "error_rate", "kind": "ratio", "higher_is_better": false,
             "numerator": "calc_error", "denominator": "calc_request"},
            {"key": "cache_hit_rate", "kind": "ratio",
             "numerator": {"event": "calc_request", "agg": "count", "filter": {"cache_hit": true}},
             "denominator": {"event": "calc_request"}},
            {"key": "memory", "kind": "gauge", "event": "memory_usage", "filter": {"model": "advanced"}},
            {"key": "deep", "kind": "count", "event": "e", "filter": {"a": {"b": {"c": 1}}}}
        ]});
        let text = check_round_trip(document);
        assert!(
            text.contains(
                "numerator = { event = \"calc_request\", agg = \"count\", filter = { cache_hit = true } }\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("filter = { model = \"advanced\" }\n"),
            "{text}"
        );
        // Too deep for one line: a section, as elsewhere.
        assert!(
            text.contains("\n[metrics.filter]\na = { b = { c = 1 } }\n"),
            "{text}"
        );
    }

    #[test]
    fn nulls_are_left_out_of_tables_and_refused_in_arrays() {
        let text = to_toml_document(&json!({"a": null, "b": {"c": null, "d": 1}})).expect("writes");
        assert_eq!(
            parse_toml(&text, "t").expect("parses"),
            json!({"b": {"d": 1}})
        );
        let error =
            to_toml_document(&json!({"flags": [{"values": [1, null]}]})).expect_err("refused");
        assert!(error.to_string().contains("flags[0].values[1]"), "{error}");
    }

    #[test]
    fn syntax_errors_name_the_file_line_and_column() {
        let error = parse_toml("a = 1\nb = [1,\nc = 3\n", "bad.toml")
            .expect_err("refused")
            .to_string();
        assert!(
            error.starts_with("bad.toml:3:3: invalid TOML at line 3, column 3: "),
            "{error}"
        );
        let error = parse_json("{\n  \"a\": 1,\n}", "bad.json")
            .expect_err("refused")
            .to_string();
        assert!(
            error.starts_with("bad.json:3:1: invalid JSON at line 3, column 1"),
            "{error}"
        );
    }

    #[test]
    fn dates_become_strings() {
        let document = parse_toml("at = 2026-01-02T03:04:05Z\n", "t").expect("parses");
        assert_eq!(document, json!({"at": "2026-01-02T03:04:05Z"}));
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_and_column("ab\ncdé\nf", 0), (1, 1));
        assert_eq!(line_and_column("ab\ncdé\nf", 3), (2, 1));
        assert_eq!(line_and_column("ab\ncdé\nf", 8), (3, 1));
        assert_eq!(line_and_column("ab\ncdé\nf", 7), (2, 4));
    }
}
