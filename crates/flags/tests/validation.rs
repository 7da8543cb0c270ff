//! Validation: every problem a configuration can have is reported with the
//! subject (flag or segment), the path of the field and what is wrong, and one
//! bad flag rejects the whole set.
//!
//! Fixtures start from a valid flag and segment and change one thing, so each
//! case shows exactly what triggers the error.

use flags::{FlagSpec, SegmentSpec, ValidationError};
use serde_json::{Value, json};

/// A valid string flag `f` with variants `a` and `b`, one rule on the segment
/// `pro` and a 50/50 default split.
fn valid_flag() -> Value {
    json!({
        "key": "f", "type": "string", "off_variant": "a",
        "variants": {"a": "A", "b": "B"},
        "rules": [{"conditions": [{"segment": "pro"}], "serve": {"variant": "b"}}],
        "default": {"serve": {"split": {"a": 50, "b": 50}}}
    })
}

fn valid_segment() -> Value {
    json!({"key": "pro", "conditions": [{"attribute": "plan", "op": "eq", "value": "pro"}]})
}

#[track_caller]
fn errors(flags: Value, segments: Value) -> Vec<String> {
    let flags: Vec<FlagSpec> = serde_json::from_value(flags).expect("flag fixture deserializes");
    let segments: Vec<SegmentSpec> =
        serde_json::from_value(segments).expect("segment fixture deserializes");
    match flags::compile(&flags, &segments) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ValidationError::to_string).collect(),
    }
}

/// Applies `change` to the valid flag and checks the exact errors, each
/// rendered as `subject: field: message`.
#[track_caller]
fn check(change: impl FnOnce(&mut Value), expected: &[&str]) {
    let mut flag = valid_flag();
    change(&mut flag);
    assert_eq!(errors(json!([flag]), json!([valid_segment()])), expected);
}

/// Like [`check`] for a change to the segment.
#[track_caller]
fn check_segment(change: impl FnOnce(&mut Value), expected: &[&str]) {
    let mut segment = valid_segment();
    change(&mut segment);
    assert_eq!(errors(json!([valid_flag()]), json!([segment])), expected);
}

/// Sets the single condition of the flag's rule and checks the errors.
#[track_caller]
fn check_condition(condition: Value, expected: &[&str]) {
    check(
        |f| f["rules"][0]["conditions"] = json!([condition]),
        expected,
    );
}

#[test]
fn the_fixtures_are_valid() {
    assert_eq!(
        errors(json!([valid_flag()]), json!([valid_segment()])),
        Vec::<String>::new()
    );
}

#[test]
fn unknown_variants() {
    let known = "the flag's variants are `a`, `b`";
    check(
        |f| f["rules"][0]["serve"] = json!({"variant": "c"}),
        &[&format!(
            "flag `f`: rules[0].serve.variant: unknown variant `c`; {known}"
        )],
    );
    check(
        |f| f["default"]["serve"] = json!({"split": {"a": 50, "c": 50}}),
        &[&format!(
            "flag `f`: default.serve.split.c: unknown variant `c`; {known}"
        )],
    );
    check(
        |f| f["rules"][0]["serve"] = json!({"split": {"z": 100}}),
        &[&format!(
            "flag `f`: rules[0].serve.split.z: unknown variant `z`; {known}"
        )],
    );
    check(
        |f| f["off_variant"] = json!("off"),
        &[&format!(
            "flag `f`: off_variant: unknown variant `off`; {known}"
        )],
    );
    check(
        |f| f["default"]["serve"] = json!({"variant": "A"}),
        &[&format!(
            "flag `f`: default.serve.variant: unknown variant `A`; {known}"
        )],
    );
}

#[test]
fn serve_takes_a_variant_or_a_split() {
    check(
        |f| f["default"]["serve"] = json!({"variant": "a", "split": {"a": 100}}),
        &["flag `f`: default.serve: give either `variant` or `split`, not both"],
    );
    check(
        |f| f["rules"][0]["serve"] = json!({}),
        &["flag `f`: rules[0].serve: give `variant = \"…\"` or `split = { … }`"],
    );
    check(
        |f| f["default"]["serve"] = json!({"split": {}}),
        &["flag `f`: default.serve.split: a split needs at least one variant"],
    );
}

#[test]
fn split_rollouts() {
    check(
        |f| f["default"]["serve"]["rollout"] = json!(25),
        &[
            "flag `f`: default.serve.otherwise: a rollout below 100 needs `otherwise = \"…\"`, the variant of units outside it",
        ],
    );
    check(
        |f| {
            f["default"]["serve"]["rollout"] = json!(25);
            f["default"]["serve"]["otherwise"] = json!("c");
        },
        &[
            "flag `f`: default.serve.otherwise: unknown variant `c`; the flag's variants are `a`, `b`",
        ],
    );
    check(
        |f| {
            f["default"]["serve"]["rollout"] = json!(100.5);
            f["default"]["serve"]["otherwise"] = json!("a");
        },
        &[
            "flag `f`: default.serve.rollout: rollout 100.5 must be a percentage between 0 and 100 in steps of 0.001",
        ],
    );
    check(
        |f| f["default"]["serve"]["otherwise"] = json!("a"),
        &[
            "flag `f`: default.serve.otherwise: `otherwise` names what units outside a `rollout` get; give `rollout` too",
        ],
    );
    check(
        |f| {
            f["rules"][0]["serve"]["rollout"] = json!(10);
            f["rules"][0]["serve"]["otherwise"] = json!("a");
        },
        &[
            "flag `f`: rules[0].serve: `rollout` and `otherwise` apply to a `split`, not to a single `variant`",
        ],
    );
    // 100 and a valid rollout with `otherwise` are fine.
    check(|f| f["default"]["serve"]["rollout"] = json!(100), &[]);
    check(
        |f| {
            f["default"]["serve"]["rollout"] = json!(0.001);
            f["default"]["serve"]["otherwise"] = json!("a");
        },
        &[],
    );
}

#[test]
fn split_weights() {
    check(
        |f| f["default"]["serve"]["split"] = json!({"a": 50, "b": 40}),
        &["flag `f`: default.serve.split: weights sum to 90, not 100"],
    );
    check(
        |f| f["default"]["serve"]["split"] = json!({"a": 60, "b": 60}),
        &["flag `f`: default.serve.split: weights sum to 120, not 100"],
    );
    // 0.001% is one bucket; anything finer cannot be honoured.
    check(
        |f| f["default"]["serve"]["split"] = json!({"a": 50.0005, "b": 49.9995}),
        &[
            "flag `f`: default.serve.split.a: weight 50.0005 must be a percentage between 0 and 100 in steps of 0.001",
            "flag `f`: default.serve.split.b: weight 49.9995 must be a percentage between 0 and 100 in steps of 0.001",
        ],
    );
    check(
        |f| f["default"]["serve"]["split"] = json!({"a": -10, "b": 110}),
        &[
            "flag `f`: default.serve.split.a: weight -10 must be a percentage between 0 and 100 in steps of 0.001",
            "flag `f`: default.serve.split.b: weight 110 must be a percentage between 0 and 100 in steps of 0.001",
        ],
    );
    // Steps of 0.001 and zero weights are fine.
    check(
        |f| f["default"]["serve"]["split"] = json!({"a": 33.333, "b": 66.667}),
        &[],
    );
    check(
        |f| f["default"]["serve"]["split"] = json!({"a": 0, "b": 100}),
        &[],
    );
}

#[test]
fn variant_values_match_the_flag_type() {
    #[track_caller]
    fn check_type(flag_type: &str, value: Value, expected: &[&str]) {
        check(
            |f| {
                f["type"] = json!(flag_type);
                f["variants"] = json!({"a": value, "b": value});
                f["default"]["serve"] = json!({"variant": "a"});
            },
            expected,
        );
    }
    let mismatch = |flag_type: &str, value: &str| {
        vec![
            format!("flag `f`: variants.a: value {value} is not of the flag's type {flag_type}"),
            format!("flag `f`: variants.b: value {value} is not of the flag's type {flag_type}"),
        ]
    };
    for (flag_type, good, bad) in [
        (
            "boolean",
            json!(true),
            vec![json!("true"), json!(1), json!(null)],
        ),
        (
            "string",
            json!(""),
            vec![json!(1), json!(false), json!(["a"])],
        ),
        (
            "integer",
            json!(-3),
            vec![
                json!(1.5),
                json!("1"),
                json!(true),
                json!(18_446_744_073_709_551_615u64),
            ],
        ),
        (
            "float",
            json!(0.25),
            vec![json!("1.0"), json!(true), json!({})],
        ),
        (
            "object",
            json!({"k": [1, 2]}),
            vec![json!([1]), json!("{}"), json!(1)],
        ),
    ] {
        check_type(flag_type, good, &[]);
        for value in bad {
            let expected = mismatch(flag_type, &value.to_string());
            let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
            check_type(flag_type, value, &expected);
        }
    }
    // An integer is a valid float value (served as a float).
    check_type("float", json!(2), &[]);
}

#[test]
fn a_flag_needs_variants() {
    check(
        |f| {
            f["variants"] = json!({});
            f["rules"] = json!([]);
            f["default"]["serve"] = json!({"variant": "a"});
        },
        &[
            "flag `f`: variants: a flag needs at least one variant",
            "flag `f`: off_variant: unknown variant `a`; the flag's variants are none",
            "flag `f`: default.serve.variant: unknown variant `a`; the flag's variants are none",
        ],
    );
}

#[test]
fn keys() {
    // Index instead of the key when the key itself is what is wrong.
    check(
        |f| f["key"] = json!(""),
        &["flags[0]: key: must not be empty"],
    );
    check(
        |f| f["key"] = json!("new checkout"),
        &["flags[0]: key: `new checkout` contains ` `; use letters, digits, `-`, `_` and `.`"],
    );
    check(
        |f| f["key"] = json!("-x"),
        &["flags[0]: key: `-x` must start with a letter or digit"],
    );
    check(
        |f| f["key"] = json!("é"),
        &["flags[0]: key: `é` must start with a letter or digit"],
    );
    check(
        |f| f["key"] = json!("k".repeat(129)),
        &["flags[0]: key: is 129 characters long; at most 128 are allowed"],
    );
    check(|f| f["key"] = json!("k".repeat(128)), &[]);
    check(|f| f["key"] = json!("Calc_model.v2-beta"), &[]);
    check(
        |f| {
            f["variants"] = json!({"a": "A", "b": "B", "c d": "C"});
        },
        &[
            "flag `f`: variants.c d: variant name `c d` contains ` `; use letters, digits, `-`, `_` and `.`",
        ],
    );
    check_segment(
        |s| s["key"] = json!("power users"),
        &[
            "segments[0]: key: `power users` contains ` `; use letters, digits, `-`, `_` and `.`",
            // The flag refers to `pro`, which is no longer defined.
            "flag `f`: rules[0].conditions[0].segment: unknown segment `pro`",
        ],
    );
    assert_eq!(flags::check_key("ok-key"), Ok(()));
    assert_eq!(flags::MAX_KEY_LEN, 128);
}

#[test]
fn duplicate_keys() {
    assert_eq!(
        errors(
            json!([valid_flag(), valid_flag()]),
            json!([valid_segment()])
        ),
        ["flag `f`: key: is defined twice"]
    );
    assert_eq!(
        errors(
            json!([valid_flag()]),
            json!([valid_segment(), valid_segment()])
        ),
        ["segment `pro`: key: is defined twice"]
    );
}

#[test]
fn unknown_segment() {
    check_condition(
        json!({"segment": "ghosts"}),
        &["flag `f`: rules[0].conditions[0].segment: unknown segment `ghosts`"],
    );
}

#[test]
fn condition_shape() {
    check_condition(
        json!({"attribute": "plan", "op": "eq", "value": "pro", "values": ["pro"]}),
        &["flag `f`: rules[0].conditions[0]: give either `value` or `values`, not both"],
    );
    check_condition(
        json!({"attribute": "plan", "value": "pro"}),
        &[
            "flag `f`: rules[0].conditions[0].op: missing; one of eq, neq, in, not_in, contains, starts_with, ends_with, regex, lt, lte, gt, gte, semver_lt, semver_lte, semver_gt, semver_gte, before, after, exists",
        ],
    );
    check_condition(
        json!({"op": "eq", "value": "pro"}),
        &["flag `f`: rules[0].conditions[0]: a condition needs `attribute` and `op`, or `segment`"],
    );
    check_condition(
        json!({"attribute": "", "op": "exists"}),
        &["flag `f`: rules[0].conditions[0]: a condition needs `attribute` and `op`, or `segment`"],
    );
    check_condition(
        json!({}),
        &["flag `f`: rules[0].conditions[0]: a condition needs `attribute` and `op`, or `segment`"],
    );
    check_condition(
        json!({"segment": "pro", "attribute": "plan"}),
        &["flag `f`: rules[0].conditions[0]: a segment condition takes only `segment`"],
    );
}

#[test]
fn operator_values() {
    let cases: &[(Value, &str)] = &[
        // Count.
        (
            json!({"op": "eq", "values": ["a", "b"]}),
            "op `eq`: needs exactly one value, got 2",
        ),
        (json!({"op": "neq"}), "op `neq`: needs exactly one value"),
        (
            json!({"op": "lt", "values": []}),
            "op `lt`: needs exactly one value",
        ),
        (
            json!({"op": "in", "values": []}),
            "op `in`: needs at least one value",
        ),
        (
            json!({"op": "not_in"}),
            "op `not_in`: needs at least one value",
        ),
        (
            json!({"op": "contains"}),
            "op `contains`: needs at least one value",
        ),
        (
            json!({"op": "exists", "value": true}),
            "op `exists`: takes no value",
        ),
        (
            json!({"op": "semver_gte", "values": ["1.0.0", "2.0.0"]}),
            "op `semver_gte`: needs exactly one value, got 2",
        ),
        (
            json!({"op": "before", "values": []}),
            "op `before`: needs exactly one value",
        ),
        // Types.
        // `value = null` reads as no value at all.
        (
            json!({"op": "eq", "value": null}),
            "op `eq`: needs exactly one value",
        ),
        (
            json!({"op": "eq", "values": [null]}),
            "op `eq`: value null must be a string, number or boolean",
        ),
        (
            json!({"op": "in", "values": ["a", ["b"]]}),
            "op `in`: value [\"b\"] must be a string, number or boolean",
        ),
        (
            json!({"op": "not_in", "values": [{"a": 1}]}),
            "op `not_in`: value {\"a\":1} must be a string, number or boolean",
        ),
        (
            json!({"op": "starts_with", "values": [1]}),
            "op `starts_with`: value 1 must be a string",
        ),
        (
            json!({"op": "ends_with", "value": true}),
            "op `ends_with`: value true must be a string",
        ),
        (
            json!({"op": "contains", "values": ["a", 2]}),
            "op `contains`: value 2 must be a string",
        ),
        (
            json!({"op": "regex", "value": 7}),
            "op `regex`: value 7 must be a string",
        ),
        (
            json!({"op": "gte", "value": "5"}),
            "op `gte`: value \"5\" must be a number",
        ),
        (
            json!({"op": "semver_lt", "value": "1.2"}),
            "op `semver_lt`: value \"1.2\" must be a semantic version such as \"2.1.0\"",
        ),
        (
            json!({"op": "semver_gt", "value": 2}),
            "op `semver_gt`: value 2 must be a semantic version such as \"2.1.0\"",
        ),
        (
            json!({"op": "after", "value": "2026-11-23"}),
            "op `after`: value \"2026-11-23\" must be an RFC 3339 date such as \"2026-11-23T10:00:00Z\"",
        ),
        (
            json!({"op": "before", "value": 1_795_428_000}),
            "op `before`: value 1795428000 must be an RFC 3339 date such as \"2026-11-23T10:00:00Z\"",
        ),
    ];
    for (condition, message) in cases {
        let mut condition = condition.clone();
        condition["attribute"] = json!("attr");
        check_condition(
            condition,
            &[&format!(
                "flag `f`: rules[0].conditions[0].values: {message}"
            )],
        );
    }
}

#[test]
fn bad_regex() {
    let mut flag = valid_flag();
    flag["rules"][0]["conditions"] =
        json!([{"attribute": "email", "op": "regex", "values": ["^ok$", "(unclosed"]}]);
    let errors = errors(json!([flag]), json!([valid_segment()]));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with(
            "flag `f`: rules[0].conditions[0].values: op `regex`: bad regex `(unclosed`: "
        ),
        "{}",
        errors[0]
    );
}

#[test]
fn segments_cannot_reference_segments() {
    check_segment(
        |s| {
            s["conditions"] =
                json!([{"attribute": "plan", "op": "eq", "value": "pro"}, {"segment": "pro"}])
        },
        &[
            "segment `pro`: conditions[1]: a segment's conditions test attributes; segments cannot reference other segments",
        ],
    );
}

#[test]
fn segment_conditions_are_validated_like_rule_conditions() {
    check_segment(
        |s| {
            s["conditions"] =
                json!([{"attribute": "version", "op": "semver_gte", "value": "latest"}])
        },
        &[
            "segment `pro`: conditions[0].values: op `semver_gte`: value \"latest\" must be a semantic version such as \"2.1.0\"",
        ],
    );
}

#[test]
fn one_bad_flag_rejects_the_set_and_every_problem_is_reported() {
    let mut bad = valid_flag();
    bad["key"] = json!("bad");
    bad["off_variant"] = json!("nope");
    bad["rules"][0]["conditions"] = json!([{"attribute": "n", "op": "lt", "value": "x"}]);
    let mut good = valid_flag();
    good["key"] = json!("good");
    assert_eq!(
        errors(json!([good, bad]), json!([valid_segment()])),
        [
            "flag `bad`: off_variant: unknown variant `nope`; the flag's variants are `a`, `b`",
            "flag `bad`: rules[0].conditions[0].values: op `lt`: value \"x\" must be a number",
        ]
    );
}

#[test]
fn errors_carry_subject_field_and_message_separately() {
    let mut flag = valid_flag();
    flag["off_variant"] = json!("zzz");
    let flags: Vec<FlagSpec> = serde_json::from_value(json!([flag])).expect("deserializes");
    let errors = flags::compile(&flags, &[]).err().unwrap_or_default();
    let off = errors
        .iter()
        .find(|e| e.field == "off_variant")
        .expect("an off_variant error");
    assert_eq!(off.subject, "flag `f`");
    assert!(
        off.message.starts_with("unknown variant `zzz`"),
        "{}",
        off.message
    );
    // The rule's segment is unknown without the segment list.
    assert!(
        errors
            .iter()
            .any(|e| e.field == "rules[0].conditions[0].segment"),
        "{errors:?}"
    );
}

#[test]
fn unknown_fields_are_rejected_when_reading() {
    #[track_caller]
    fn rejects<T: serde::de::DeserializeOwned + std::fmt::Debug>(value: Value, mentions: &str) {
        match serde_json::from_value::<T>(value) {
            Ok(parsed) => panic!("accepted {parsed:?}"),
            Err(e) => assert!(e.to_string().contains(mentions), "{e}"),
        }
    }
    let mut flag = valid_flag();
    flag["rule"] = json!([]);
    rejects::<FlagSpec>(flag, "unknown field `rule`");
    let mut flag = valid_flag();
    flag["rules"][0]["conditions"][0]["operator"] = json!("eq");
    rejects::<FlagSpec>(flag, "unknown field `operator`");
    let mut flag = valid_flag();
    flag["type"] = json!("number");
    rejects::<FlagSpec>(flag, "unknown variant `number`");
    let mut flag = valid_flag();
    flag["rules"][0]["conditions"] = json!([{"attribute": "a", "op": "equals", "value": 1}]);
    rejects::<FlagSpec>(flag, "unknown variant `equals`");
    rejects::<SegmentSpec>(json!({"key": "s"}), "missing field `conditions`");
}
