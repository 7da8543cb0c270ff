//! Architecture invariants of the flag engine, checked on every `cargo test`:
//! it does no IO, reads no clock and draws no random numbers, so that every
//! evaluation can be replayed. Checked two ways: its dependencies are an
//! allowlist of IO-free crates, and its source names none of the paths that
//! would break the rule. Every source file also starts with a module doc.

use std::fs;
use std::path::{Path, PathBuf};

/// Dependencies the engine may have. Each is IO-free; adding one is a design
/// decision, to be made here on purpose.
const ALLOWED_DEPENDENCIES: &[&str] = &[
    "chrono",
    "indexmap",
    "regex",
    "semver",
    "serde",
    "serde_json",
    "xxhash-rust",
];

/// chrono features that reach for the system clock or the OS.
const FORBIDDEN_CHRONO_FEATURES: &[&str] = &["clock", "std", "now", "default", "wasmbind"];

/// Paths that mean IO, the clock, the environment or randomness.
const FORBIDDEN_PATHS: &[&str] = &[
    "std::fs",
    "std::net",
    "std::process",
    "std::env",
    "std::time",
    "std::io",
    "std::thread",
    "SystemTime",
    "Instant",
    "thread_rng",
    "rand::",
    "getrandom",
    "tokio",
    "Utc::now",
    "Local::now",
];

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[track_caller]
fn read_toml(path: &Path) -> toml::Table {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn table<'a>(value: Option<&'a toml::Value>, what: &str) -> &'a toml::Table {
    value
        .and_then(toml::Value::as_table)
        .unwrap_or_else(|| panic!("{what} is missing or not a table"))
}

fn features(dep: Option<&toml::Value>) -> Vec<String> {
    dep.and_then(|d| d.get("features"))
        .and_then(toml::Value::as_array)
        .map(|fs| {
            fs.iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn dependencies_are_io_free() {
    let manifest = read_toml(&crate_dir().join("Cargo.toml"));
    let deps = table(manifest.get("dependencies"), "[dependencies]");
    let unexpected: Vec<&String> = deps
        .keys()
        .filter(|name| !ALLOWED_DEPENDENCIES.contains(&name.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "the flags crate must stay free of IO, clocks and randomness; {unexpected:?} is not on the allowlist in tests/tidy.rs"
    );
    for section in ["build-dependencies", "target"] {
        assert!(
            manifest.get(section).is_none(),
            "the flags crate must not have [{section}]"
        );
    }
    assert!(
        !crate_dir().join("build.rs").exists(),
        "the flags crate must not have a build script"
    );
}

#[test]
fn chrono_cannot_read_the_clock() {
    let manifest = read_toml(&crate_dir().join("Cargo.toml"));
    let local = table(manifest.get("dependencies"), "[dependencies]").get("chrono");
    let inherits = local
        .and_then(|c| c.get("workspace"))
        .and_then(toml::Value::as_bool)
        == Some(true);

    let mut enabled = features(local);
    if inherits {
        let root = read_toml(&crate_dir().join("../../Cargo.toml"));
        let workspace_deps = table(
            root.get("workspace").and_then(|w| w.get("dependencies")),
            "[workspace.dependencies]",
        );
        let chrono = workspace_deps
            .get("chrono")
            .expect("the workspace defines chrono");
        assert_eq!(
            chrono
                .get("default-features")
                .and_then(toml::Value::as_bool),
            Some(false),
            "chrono's default features include `clock`; the workspace must set default-features = false"
        );
        enabled.extend(features(Some(chrono)));
    } else if let Some(chrono) = local {
        assert_eq!(
            chrono
                .get("default-features")
                .and_then(toml::Value::as_bool),
            Some(false),
            "chrono's default features include `clock`; set default-features = false"
        );
    }
    let forbidden: Vec<&String> = enabled
        .iter()
        .filter(|f| FORBIDDEN_CHRONO_FEATURES.contains(&f.as_str()))
        .collect();
    assert!(
        forbidden.is_empty(),
        "chrono features {forbidden:?} reach for the clock or the OS"
    );
}

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    source_files(&crate_dir().join("src"), &mut files);
    files.sort();
    assert!(
        files.len() >= 5,
        "expected the engine's sources, found {files:?}"
    );
    files
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            (path, text)
        })
        .collect()
}

#[test]
fn no_io_clock_or_randomness_in_the_source() {
    let mut found = Vec::new();
    for (path, text) in sources() {
        for (number, line) in text.lines().enumerate() {
            for forbidden in FORBIDDEN_PATHS {
                if line.contains(forbidden) {
                    found.push(format!(
                        "{}:{}: `{forbidden}`: {}",
                        path.display(),
                        number + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "the flags crate does no IO, reads no clock and draws no random numbers:\n{}",
        found.join("\n")
    );
}

#[test]
fn every_source_file_starts_with_a_module_doc() {
    let undocumented: Vec<String> = sources()
        .into_iter()
        .filter(|(_, text)| !text.starts_with("//!"))
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert!(
        undocumented.is_empty(),
        "these files do not start with a `//!` module doc: {undocumented:?}"
    );
}
