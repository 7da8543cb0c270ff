//! Architecture invariants of the rollout crate, checked on every
//! `cargo test`: it does no IO, reads no clock and draws no random numbers,
//! so that every decision of the controller can be replayed and the
//! simulator runs the code production runs. Checked two ways: its
//! dependencies are an allowlist of IO-free crates, and its source names none
//! of the paths that would break the rule. Every source file also starts
//! with a module doc.

use std::fs;
use std::path::{Path, PathBuf};

/// Dependencies the crate may have. Each is IO-free; adding one is a design
/// decision, to be made here on purpose.
const ALLOWED_DEPENDENCIES: &[&str] = &[
    // The flag engine: bucketing constants and the percentage grid.
    "flags",
    "indexmap",
    // The simulator's generator, seeded by the caller (as in `stats`); its
    // default features, which reach for OS entropy, stay off in the
    // workspace manifest.
    "rand_chacha",
    "serde",
    "serde_json",
    // The statistics engine the guards and gates judge with.
    "stats",
    "thiserror",
];

/// Paths that mean IO, the clock, the environment, or randomness.
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
    "rand::",
    "thread_rng",
    "from_entropy",
    "from_os_rng",
    "OsRng",
    "getrandom",
    "tokio",
    "chrono",
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

#[test]
fn dependencies_are_io_free() {
    let manifest = read_toml(&crate_dir().join("Cargo.toml"));
    let deps = manifest
        .get("dependencies")
        .and_then(toml::Value::as_table)
        .expect("[dependencies] is a table");
    let unexpected: Vec<&String> = deps
        .keys()
        .filter(|name| !ALLOWED_DEPENDENCIES.contains(&name.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "the rollout crate must stay free of IO, clocks and randomness; {unexpected:?} is not on the allowlist in tests/tidy.rs"
    );
    for section in ["build-dependencies", "target"] {
        assert!(
            manifest.get(section).is_none(),
            "the rollout crate must not have [{section}]"
        );
    }
    assert!(
        !crate_dir().join("build.rs").exists(),
        "the rollout crate must not have a build script"
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
        files.len() >= 3,
        "expected the crate's sources, found {files:?}"
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
        "the rollout crate does no IO, reads no clock and draws no random numbers:\n{}",
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
