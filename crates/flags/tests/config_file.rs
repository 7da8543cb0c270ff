//! The configuration file format: the example a user writes (TOML) reads
//! into the spec types, compiles and evaluates as documented, keeps the order
//! that was written, and survives a JSON round trip.

use flags::{Context, FlagSpec, Reason, SegmentSpec, ServeSpec};
use serde::Deserialize;

/// The example from the documentation, verbatim.
const EXAMPLE: &str = r#"
environment = "production"
[[segments]]
key = "power-users"
conditions = [{ attribute = "plan", op = "in", values = ["pro", "enterprise"] }]

[[flags]]
key = "calc-model"
type = "string"
description = "Which calculation model serves a request"
enabled = true
off_variant = "simple"
variants = { simple = "simple", advanced = "advanced" }

[[flags.rules]]
name = "internal testers"
conditions = [{ attribute = "email", op = "ends_with", values = ["@example.com"] }]
serve = { variant = "advanced" }

[[flags.rules]]
conditions = [{ segment = "power-users" }]
serve = { split = { advanced = 5, simple = 95 } }

[flags.default]
serve = { variant = "simple" }
"#;

/// One environment's file, as `rollgate apply` reads it (flags and segments only).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvironmentFile {
    environment: String,
    segments: Vec<SegmentSpec>,
    flags: Vec<FlagSpec>,
}

fn example() -> EnvironmentFile {
    toml::from_str(EXAMPLE).expect("the documented example parses")
}

/// Users per group in the share check below.
const POWER_USERS: usize = 20_000;

#[test]
fn the_example_reads_compiles_and_evaluates() {
    let file = example();
    assert_eq!(file.environment, "production");
    let set = flags::compile(&file.flags, &file.segments).expect("the documented example compiles");

    // Internal testers get `advanced`, whatever their plan.
    for ctx in [
        Context::new("u-1").with("email", "ann@example.com"),
        Context::new("u-2")
            .with("email", "bob@example.com")
            .with("plan", "pro"),
        Context::default().with("email", "no-key@example.com"),
    ] {
        let eval = set.evaluate("calc-model", &ctx);
        assert_eq!(
            (eval.variant, eval.reason, eval.value),
            (
                Some("advanced"),
                Reason::TargetingMatch,
                Some(&"advanced".into())
            )
        );
    }

    // Everybody else who is not a power user gets `simple` by default.
    for ctx in [
        Context::new("u-3")
            .with("email", "carol@rollgate.dev")
            .with("plan", "free"),
        Context::new("u-4"),
        Context::new("u-5").with("plan", "Pro"),
    ] {
        let eval = set.evaluate("calc-model", &ctx);
        assert_eq!(
            (eval.variant, eval.reason),
            (Some("simple"), Reason::Default)
        );
    }

    // Power users: 5% get `advanced` by the split. The users are fixed, so the
    // share is too; it must be within 5 binomial standard deviations of 5%.
    let mut advanced = 0usize;
    for i in 0..POWER_USERS {
        let plan = if i % 2 == 0 { "pro" } else { "enterprise" };
        let ctx = Context::new(format!("user-{i}"))
            .with("plan", plan)
            .with("email", format!("user-{i}@customer.test"));
        let eval = set.evaluate("calc-model", &ctx);
        assert_eq!(eval.reason, Reason::Split);
        // Exactly the units whose bucket falls in the first 5% (5,000 buckets) of the flag's salt.
        let expected = if flags::bucket("calc-model", &format!("user-{i}")) < 5_000 {
            "advanced"
        } else {
            "simple"
        };
        assert_eq!(eval.variant, Some(expected), "user-{i}");
        advanced += usize::from(expected == "advanced");
    }
    let n = POWER_USERS as f64;
    let sigma = (n * 0.05 * 0.95).sqrt();
    let deviation = (advanced as f64 - n * 0.05).abs();
    assert!(
        deviation < 5.0 * sigma,
        "{advanced} of {POWER_USERS} power users got `advanced`"
    );

    // The split needs a unit.
    let eval = set.evaluate("calc-model", &Context::default().with("plan", "pro"));
    assert_eq!(
        eval.error.map(|e| e.code),
        Some(flags::ErrorCode::TargetingKeyMissing)
    );
}

#[test]
fn declared_order_is_kept() {
    let file = example();
    let flag = &file.flags[0];
    let split = flag.rules[1]
        .serve
        .split
        .as_ref()
        .expect("the second rule splits");
    // Buckets are laid out in this order, so it must survive parsing.
    assert_eq!(split.keys().collect::<Vec<_>>(), ["advanced", "simple"]);
    assert_eq!(
        flag.variants.keys().collect::<Vec<_>>(),
        ["simple", "advanced"]
    );
    assert_eq!(flag.rules[0].name.as_deref(), Some("internal testers"));
    assert_eq!(flag.rules[1].name, None);
    assert_eq!(flag.default.serve, ServeSpec::variant("simple"));
    assert_eq!(flag.bucketing_salt(), "calc-model");

    // The example happens to be in alphabetical order; written the other way
    // round, the order must still be the written one, because it decides
    // which buckets each arm owns.
    let reversed = EXAMPLE.replace(
        "{ advanced = 5, simple = 95 }",
        "{ simple = 95, advanced = 5 }",
    );
    let file: EnvironmentFile = toml::from_str(&reversed).expect("parses");
    let split = file.flags[0].rules[1]
        .serve
        .split
        .as_ref()
        .expect("the second rule splits");
    assert_eq!(split.keys().collect::<Vec<_>>(), ["simple", "advanced"]);
    let set = flags::compile(&file.flags, &file.segments).expect("compiles");
    for i in 0..2_000 {
        let unit = format!("user-{i}");
        let expected = if flags::bucket("calc-model", &unit) < 95_000 {
            "simple"
        } else {
            "advanced"
        };
        let eval = set.evaluate(
            "calc-model",
            &Context::new(unit.as_str()).with("plan", "pro"),
        );
        assert_eq!(eval.variant, Some(expected), "{unit}");
    }
}

#[test]
fn json_text_keeps_the_declared_order() {
    // Read straight from text into the spec, the order is kept. (Through a
    // `serde_json::Value` it would not be: its objects sort their keys unless
    // serde_json's `preserve_order` is on. The same goes for a database column
    // that normalises JSON, such as PostgreSQL's `jsonb`.)
    let text = r#"{"key": "f", "type": "string", "off_variant": "z",
        "variants": {"z": "Z", "a": "A"},
        "default": {"serve": {"split": {"z": 95, "a": 5}}}}"#;
    let flag: FlagSpec = serde_json::from_str(text).expect("parses");
    assert_eq!(flag.variants.keys().collect::<Vec<_>>(), ["z", "a"]);
    let split = flag.default.serve.split.as_ref().expect("splits");
    assert_eq!(split.keys().collect::<Vec<_>>(), ["z", "a"]);
    let json = serde_json::to_string(&flag).expect("serializes");
    assert!(json.contains(r#""split":{"z":95,"a":5}"#), "{json}");
}

#[test]
fn specs_survive_a_json_round_trip() {
    let file = example();
    for flag in &file.flags {
        let json = serde_json::to_string(flag).expect("serializes");
        let back: FlagSpec = serde_json::from_str(&json).expect("reads back");
        assert_eq!(&back, flag);
        // Whole weights are written as integers, as they were in the file.
        assert!(
            json.contains(r#""split":{"advanced":5,"simple":95}"#),
            "{json}"
        );
        // `enabled = true` is the default and is left out.
        assert!(!json.contains("enabled"), "{json}");
    }
    for segment in &file.segments {
        let json = serde_json::to_string(segment).expect("serializes");
        assert_eq!(
            &serde_json::from_str::<SegmentSpec>(&json).expect("reads back"),
            segment
        );
    }

    // Fractional weights, a salt, a disabled flag and every optional field too.
    let mut flag = file.flags[0].clone();
    flag.enabled = false;
    flag.salt = Some("calc-model-2026".into());
    flag.default.serve = ServeSpec::split([("simple", 33.333), ("advanced", 66.667)]);
    let back: FlagSpec = serde_json::from_value(serde_json::to_value(&flag).expect("serializes"))
        .expect("reads back");
    assert_eq!(back, flag);
    assert_eq!(back.bucketing_salt(), "calc-model-2026");
}
