//! The inference engine against the reference cases of the statistics
//! oracle: results computed by an independent implementation (scipy,
//! statsmodels) and checked against GrowthBook's engine.
//!
//! The cases are read at run time, never copied into the repository: from
//! the folder named by `ROLLGATE_ORACLE_DIR` if set, else from
//! `../shared/oracle` beside the repository root. Every `*.json` file there
//! with a `cases` array is read, every case is analysed, and the expected
//! JSON is walked against the engine's serialized result, so that no
//! expected field goes unchecked; all mismatches are reported at once. A
//! missing folder or zero cases fails the test.
//!
//! Tolerances (the oracle's README): closed-form values 1e-9 relative;
//! p-values 1e-12 absolute, or log10 within 1e-6 below 1e-10; quadrature
//! (P(best), the beta–binomial chance) 1e-8 absolute; counts exactly. An
//! expected `null` must be a refusal. GrowthBook's statuses must match the
//! lift's status: `"ok"` exactly when every status is `ok`. Blocks named
//! `*_gbstats_0_8_0`, the `gbstats` statuses' bookkeeping and the
//! verification notes are informational.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use stats::inference::{
    AnalysisConfig, CupedSummary, CupedTypes, CupedValueType, Guardrail, MeanSummary, MetricData,
    MetricObservations, QuantileSample, RatioSummary, analyze,
};

/// Where the cases are: `ROLLGATE_ORACLE_DIR`, else `../shared/oracle`
/// relative to the repository root (two levels above this crate).
fn oracle_dir() -> PathBuf {
    match std::env::var_os("ROLLGATE_ORACLE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join("../shared/oracle"),
    }
}

struct OracleFile {
    path: PathBuf,
    meta: Value,
    cases: Vec<Value>,
}

fn read_oracle_files(dir: &Path) -> Vec<OracleFile> {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| {
        panic!(
            "the oracle folder {} cannot be read ({e}); set ROLLGATE_ORACLE_DIR or provide ../shared/oracle",
            dir.display()
        )
    });
    let mut paths: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|path| {
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let document: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
            let cases = document.get("cases")?.as_array()?.clone();
            Some(OracleFile {
                meta: document.get("meta").cloned().unwrap_or(Value::Null),
                path,
                cases,
            })
        })
        .collect()
}

/// The analysis settings the cases were computed with.
fn config_from(meta: &Value) -> AnalysisConfig {
    let number = |key: &str| meta.get(key).and_then(Value::as_f64);
    let defaults = AnalysisConfig::default();
    AnalysisConfig {
        alpha: number("alpha").unwrap_or(defaults.alpha),
        sequential_tuning: number("sequential_tuning_parameter")
            .unwrap_or(defaults.sequential_tuning),
        srm_threshold: number("srm_threshold").unwrap_or(defaults.srm_threshold),
        relative_prior_sd: meta
            .pointer("/proper_prior_on_relative_lift/sd")
            .and_then(Value::as_f64)
            .unwrap_or(defaults.relative_prior_sd),
        hodges_lehmann_conf_level: number("mann_whitney_conf_level")
            .unwrap_or(defaults.hodges_lehmann_conf_level),
        posteriors: true,
    }
}

fn parse<T: serde::de::DeserializeOwned>(value: &Value, what: &str) -> T {
    serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn cuped_type(name: &Value) -> CupedValueType {
    match name.as_str() {
        Some("mean") => CupedValueType::Mean,
        Some("proportion") => CupedValueType::Proportion,
        other => panic!("unknown CUPED type {other:?}"),
    }
}

/// The engine's input for a case.
fn observations(case: &Value) -> MetricObservations {
    let arms = case["arms"].as_array().expect("arms");
    let metric = match case["metric_type"].as_str().expect("metric_type") {
        "proportion" => MetricData::Proportion(parse(&case["arms"], "proportion arms")),
        "mean" => MetricData::Mean(parse::<Vec<MeanSummary>>(&case["arms"], "mean arms")),
        "ratio" => MetricData::Ratio(parse::<Vec<RatioSummary>>(&case["arms"], "ratio arms")),
        "cuped" => MetricData::Cuped {
            types: CupedTypes {
                post: cuped_type(&case["cuped_types"][0]),
                pre: cuped_type(&case["cuped_types"][1]),
            },
            arms: parse::<Vec<CupedSummary>>(&case["arms"], "CUPED arms"),
        },
        "quantile" => MetricData::Quantile {
            nu: case["nu"].as_f64().expect("nu"),
            arms: arms
                .iter()
                .enumerate()
                .map(|(arm, a)| {
                    let values: Vec<f64> = parse(&a["values"], "values");
                    assert_eq!(values.len() as u64, a["n"].as_u64().expect("n"));
                    QuantileSample::from_values(arm, values).expect("finite values")
                })
                .collect(),
        },
        other => panic!("unknown metric type {other}"),
    };
    MetricObservations {
        weights: parse(&case["weights"], "weights"),
        metric,
        guardrail: case
            .get("guardrail")
            .filter(|g| !g.is_null())
            .map(|g| parse::<Guardrail>(g, "guardrail")),
    }
}

/// How a number is compared.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Tolerance {
    ClosedForm,
    PValue,
    Quadrature,
}

const CLOSED_FORM_RELATIVE: f64 = 1e-9;
const P_VALUE_ABSOLUTE: f64 = 1e-12;
const P_VALUE_LOG10: f64 = 1e-6;
const SMALL_P_VALUE: f64 = 1e-10;
const QUADRATURE_ABSOLUTE: f64 = 1e-8;

/// Below the smallest normal f64, digits are lost to underflow in any
/// implementation; such values only have to be tiny on both sides.
const UNDERFLOW: f64 = f64::MIN_POSITIVE;

fn close(expected: f64, got: f64, tolerance: Tolerance) -> bool {
    if expected == got {
        return true;
    }
    let difference = (expected - got).abs();
    match tolerance {
        Tolerance::ClosedForm => {
            difference <= CLOSED_FORM_RELATIVE * expected.abs()
                || (expected.abs() < UNDERFLOW && got.abs() < UNDERFLOW)
        }
        Tolerance::PValue if expected >= SMALL_P_VALUE => difference <= P_VALUE_ABSOLUTE,
        Tolerance::PValue => {
            (expected < UNDERFLOW && got < UNDERFLOW)
                || (expected > 0.0
                    && got > 0.0
                    && (expected.log10() - got.log10()).abs() <= P_VALUE_LOG10)
        }
        Tolerance::Quadrature => difference <= QUADRATURE_ABSOLUTE,
    }
}

/// Keys that are notes about how the oracle was verified, or the values of
/// an older GrowthBook release kept for reference.
fn informational(key: &str) -> bool {
    key == "gbstats"
        || key == "gbstats_0_8_0_matches_primary"
        || key == "verified_gbstats_head"
        || key.ends_with("_gbstats_0_8_0")
}

/// Whether the engine refused to give a value: `null`, a tagged refusal, or
/// a block all of whose members are refusals.
fn is_refusal(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => {
            map.contains_key("insufficient_data") && map.len() == 1
                || (!map.is_empty() && map.values().all(is_refusal))
        }
        _ => false,
    }
}

struct Walk<'a> {
    case: &'a str,
    compared: usize,
    mismatches: Vec<String>,
}

impl Walk<'_> {
    fn mismatch(&mut self, path: &str, expected: &Value, got: Option<&Value>) {
        let got = got.map_or("(missing)".to_string(), Value::to_string);
        self.mismatches.push(format!(
            "{}: {path}: expected {expected}, got {got}",
            self.case
        ));
    }

    fn tolerance(path: &str, key: &str) -> Tolerance {
        if path.contains(".prob_best") || key == "chance_to_beat_control" {
            Tolerance::Quadrature
        } else if key.ends_with("p_value") || path.contains(".multiple_testing") {
            Tolerance::PValue
        } else {
            Tolerance::ClosedForm
        }
    }

    fn walk(&mut self, path: &str, key: &str, expected: &Value, got: Option<&Value>) {
        match expected {
            Value::Null => {
                self.compared += 1;
                if !got.is_some_and(is_refusal) {
                    self.mismatch(path, expected, got);
                }
            }
            Value::Bool(_) | Value::String(_) => {
                self.compared += 1;
                if got != Some(expected) {
                    self.mismatch(path, expected, got);
                }
            }
            Value::Number(number) => {
                self.compared += 1;
                let matches = match (number.as_u64(), got.and_then(Value::as_f64)) {
                    // Counts and indices: exactly.
                    (Some(count), _) if number.is_u64() && !key_is_real(key) => {
                        got.and_then(Value::as_u64) == Some(count)
                    }
                    (_, Some(g)) => close(
                        number.as_f64().expect("a number"),
                        g,
                        Self::tolerance(path, key),
                    ),
                    _ => false,
                };
                if !matches {
                    self.mismatch(path, expected, got);
                }
            }
            Value::Array(items) => match got.and_then(Value::as_array) {
                Some(got_items) if got_items.len() == items.len() => {
                    for (i, (e, g)) in items.iter().zip(got_items).enumerate() {
                        self.walk(&format!("{path}[{i}]"), key, e, Some(g));
                    }
                }
                _ => {
                    self.compared += 1;
                    self.mismatch(path, expected, got);
                }
            },
            Value::Object(map) => {
                let Some(got_map) = got.and_then(Value::as_object) else {
                    self.compared += 1;
                    self.mismatch(path, expected, got);
                    return;
                };
                self.statuses(path, map, got_map);
                for (child, e) in map {
                    if informational(child) {
                        continue;
                    }
                    self.walk(&format!("{path}.{child}"), child, e, got_map.get(child));
                }
                // A block the oracle leaves out as undefined must be refused.
                if key == "prob_best" {
                    for (child, g) in got_map {
                        if !map.contains_key(child) && !is_refusal(g) {
                            self.compared += 1;
                            self.mismatch(&format!("{path}.{child}"), &Value::Null, Some(g));
                        }
                    }
                }
            }
        }
    }

    /// GrowthBook's statuses on a lift: the engine's status is `"ok"`
    /// exactly when all of them are.
    fn statuses(&mut self, path: &str, expected: &Map<String, Value>, got: &Map<String, Value>) {
        let Some(statuses) = expected.get("gbstats").and_then(Value::as_object) else {
            return;
        };
        self.compared += 1;
        let all_ok = statuses.values().all(|s| s == "ok");
        let got_status = got.get("status");
        let engine_ok = got_status.is_some_and(|s| s == "ok");
        let engine_refused = got_status.is_some_and(|s| s.get("insufficient_data").is_some());
        if !(all_ok && engine_ok || !all_ok && engine_refused) {
            self.mismatch(
                &format!("{path}.status"),
                &Value::Object(statuses.clone()),
                got_status,
            );
        }
    }
}

/// Integer-valued expectations that are real numbers (a χ² of 0, a
/// p-value of 1) rather than counts.
fn key_is_real(key: &str) -> bool {
    !matches!(
        key,
        "n" | "df"
            | "N"
            | "C"
            | "users"
            | "control_index"
            | "treatment_index"
            | "n_star"
            | "quantile_index_1based"
            | "lower_index_1based"
            | "upper_index_1based"
    )
}

#[test]
fn oracle_cases_match() {
    let dir = oracle_dir();
    let files = read_oracle_files(&dir);
    let case_count: usize = files.iter().map(|f| f.cases.len()).sum();
    assert!(
        case_count > 0,
        "no oracle cases found in {} (files: {:?})",
        dir.display(),
        files.iter().map(|f| &f.path).collect::<Vec<_>>()
    );
    let mut compared = 0;
    let mut mismatches = Vec::new();
    for file in &files {
        let config = config_from(&file.meta);
        for case in &file.cases {
            let id = case["id"].as_str().unwrap_or("(no id)");
            let analysis = analyze(&observations(case), &config)
                .unwrap_or_else(|e| panic!("{id}: the engine refused the input: {e}"));
            let got = serde_json::to_value(&analysis).expect("the analysis serializes");
            let mut walk = Walk {
                case: id,
                compared: 0,
                mismatches: Vec::new(),
            };
            walk.walk("expected", "expected", &case["expected"], Some(&got));
            compared += walk.compared;
            mismatches.extend(walk.mismatches);
        }
    }
    eprintln!(
        "oracle: {case_count} cases in {} file(s) from {}, {compared} values compared, {} mismatches",
        files.len(),
        dir.display(),
        mismatches.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} of {compared} values differ from the oracle:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
