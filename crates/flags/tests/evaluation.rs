//! Evaluation: every condition operator, segments, rule order, and the reason
//! and error code of every outcome.
//!
//! Each feature has one `check` helper and a table of cases, so adding a case
//! is one line. Flags are written as JSON, the way the admin API receives them.

use flags::{Context, ErrorCode, FlagSet, FlagSpec, FlagType, Reason, SegmentSpec};
use serde_json::{Value, json};

/// Compiles flags and segments written as JSON; panics with the validation
/// errors, because a test fixture that does not compile is a broken test.
#[track_caller]
fn flag_set(flags: Value, segments: Value) -> FlagSet {
    let flags: Vec<FlagSpec> = serde_json::from_value(flags).expect("flag fixture deserializes");
    let segments: Vec<SegmentSpec> =
        serde_json::from_value(segments).expect("segment fixture deserializes");
    match flags::compile(&flags, &segments) {
        Ok(set) => set,
        Err(errors) => panic!("fixture does not compile: {errors:#?}"),
    }
}

#[track_caller]
fn context(value: Value) -> Context {
    Context::from_json(value).expect("context fixture is an object")
}

/// A boolean flag `f` whose single rule (the given conditions) serves `true`
/// and whose default serves `false`: the served value says whether the rule matched.
fn one_rule_flag(conditions: Value, segments: Value) -> FlagSet {
    flag_set(
        json!([{
            "key": "f", "type": "boolean", "off_variant": "no",
            "variants": {"yes": true, "no": false},
            "rules": [{"conditions": conditions, "serve": {"variant": "yes"}}],
            "default": {"serve": {"variant": "no"}}
        }]),
        segments,
    )
}

/// Whether the rule of a [`one_rule_flag`] matched, checking that the reason
/// agrees with the value.
#[track_caller]
fn rule_matched(set: &FlagSet, ctx: &Context) -> bool {
    let eval = set.evaluate("f", ctx);
    assert_eq!(eval.error, None);
    match eval.value {
        Some(Value::Bool(true)) => {
            assert_eq!(eval.reason, Reason::TargetingMatch);
            true
        }
        Some(Value::Bool(false)) => {
            assert_eq!(eval.reason, Reason::Default);
            false
        }
        other => panic!("unexpected value {other:?}"),
    }
}

/// Checks one operator with one operand against attribute values.
///
/// `operand` is written as `values` when it is a JSON array, as `value`
/// otherwise, and left out when it is `null` (for `exists`). Every check also
/// asserts the rule that a missing attribute (absent, or `null`) never
/// matches, whatever the operator, including the negative ones.
#[track_caller]
fn check(op: &str, operand: Value, cases: &[(Value, bool)]) {
    let mut condition = json!({"attribute": "attr", "op": op});
    match &operand {
        Value::Null => {}
        Value::Array(_) => condition["values"] = operand.clone(),
        _ => condition["value"] = operand.clone(),
    }
    let set = one_rule_flag(json!([condition]), json!([]));
    for (attribute, expected) in cases {
        let ctx = context(json!({"targetingKey": "u-1", "attr": attribute}));
        assert_eq!(
            rule_matched(&set, &ctx),
            *expected,
            "`{op}` {operand} against attribute {attribute}"
        );
    }
    for missing in [
        json!({"targetingKey": "u-1"}),
        json!({"targetingKey": "u-1", "attr": null}),
        json!({}),
    ] {
        assert!(
            !rule_matched(&set, &context(missing.clone())),
            "`{op}` {operand} matched a context without the attribute: {missing}"
        );
    }
}

#[test]
fn eq() {
    check(
        "eq",
        json!("pro"),
        &[
            (json!("pro"), true),
            (json!("Pro"), false),
            (json!("pro "), false),
            (json!(["pro"]), false),
        ],
    );
    // Numbers compare by value, whether written as integers or floats.
    check(
        "eq",
        json!(1),
        &[
            (json!(1), true),
            (json!(1.0), true),
            (json!("1"), false),
            (json!(true), false),
        ],
    );
    check(
        "eq",
        json!(true),
        &[
            (json!(true), true),
            (json!(false), false),
            (json!("true"), false),
        ],
    );
    check("eq", json!(["pro"]), &[(json!("pro"), true)]);
}

#[test]
fn neq() {
    check(
        "neq",
        json!("pro"),
        &[
            (json!("free"), true),
            (json!("pro"), false),
            (json!(1), true),
            (json!(["pro"]), true),
        ],
    );
    check("neq", json!(2.5), &[(json!(2.5), false), (json!(2), true)]);
}

#[test]
fn in_list() {
    check(
        "in",
        json!(["pro", "enterprise"]),
        &[
            (json!("pro"), true),
            (json!("enterprise"), true),
            (json!("free"), false),
            (json!(["pro"]), false),
        ],
    );
    check(
        "in",
        json!([1, 2, true]),
        &[
            (json!(2.0), true),
            (json!(true), true),
            (json!(3), false),
            (json!("1"), false),
        ],
    );
}

#[test]
fn not_in_list() {
    check(
        "not_in",
        json!(["DE", "FR"]),
        &[
            (json!("NL"), true),
            (json!("DE"), false),
            (json!("de"), true),
            (json!(7), true),
        ],
    );
}

#[test]
fn contains() {
    // On a string attribute: substring.
    check(
        "contains",
        json!(["xample", "@test."]),
        &[
            (json!("user@example.com"), true),
            (json!("a@test.org"), true),
            (json!("user@rollgate.dev"), false),
            (json!(42), false),
        ],
    );
    // On a list attribute: the list has one of the values as an element.
    check(
        "contains",
        json!(["beta"]),
        &[
            (json!(["internal", "beta"]), true),
            (json!(["betamax"]), false),
            (json!([]), false),
            (json!([1, "beta"]), true),
            (json!({"beta": true}), false),
        ],
    );
    check(
        "contains",
        json!("beta"),
        &[(json!("alphabetagamma"), true), (json!("BETA"), false)],
    );
}

#[test]
fn starts_with() {
    check(
        "starts_with",
        json!(["user-", "admin-"]),
        &[
            (json!("user-1"), true),
            (json!("admin-x"), true),
            (json!("x-user-1"), false),
            (json!(["user-1"]), false),
        ],
    );
}

#[test]
fn ends_with() {
    check(
        "ends_with",
        json!(["@example.com"]),
        &[
            (json!("ann@example.com"), true),
            (json!("ann@example.com.evil"), false),
            (json!(7), false),
        ],
    );
}

#[test]
fn regex() {
    // Unanchored unless the pattern anchors itself; any pattern matching is enough.
    check(
        "regex",
        json!(["^user-\\d+$", "admin"]),
        &[
            (json!("user-42"), true),
            (json!("user-42x"), false),
            (json!("sysadmin"), true),
            (json!(42), false),
        ],
    );
    check(
        "regex",
        json!("b.t"),
        &[(json!("a bat"), true), (json!("bt"), false)],
    );
}

#[test]
fn numeric_comparisons() {
    let below_at_above = [
        (json!(4), "below"),
        (json!(5), "at"),
        (json!(5.0), "at"),
        (json!(5.5), "above"),
    ];
    for (op, holds) in [
        ("lt", ["below"].as_slice()),
        ("lte", ["below", "at"].as_slice()),
        ("gt", ["above"].as_slice()),
        ("gte", ["at", "above"].as_slice()),
    ] {
        let cases: Vec<(Value, bool)> = below_at_above
            .iter()
            .map(|(v, pos)| (v.clone(), holds.contains(pos)))
            .collect();
        check(op, json!(5), &cases);
        // Only numbers compare: a numeric string or a boolean is not a number.
        check(
            op,
            json!(5),
            &[
                (json!("4"), false),
                (json!("6"), false),
                (json!(true), false),
                (json!([4]), false),
            ],
        );
    }
    check(
        "lt",
        json!(-1.5),
        &[
            (json!(-2), true),
            (json!(-1.5), false),
            (json!(1e300), false),
            (json!(-1e300), true),
        ],
    );
}

#[test]
fn semver_comparisons() {
    let versions = [
        (json!("1.9.9"), "below"),
        (json!("2.0.0-rc.1"), "below"),
        (json!("v1.10.0"), "below"),
        (json!("2.0.0"), "at"),
        (json!("v2.0.0"), "at"),
        // Build metadata does not take part in precedence (SemVer 2.0.0, §10).
        (json!("2.0.0+build.7"), "at"),
        (json!("2.0.1"), "above"),
        (json!("10.0.0"), "above"),
        (json!("2.0.1-alpha"), "above"),
    ];
    for (op, holds) in [
        ("semver_lt", ["below"].as_slice()),
        ("semver_lte", ["below", "at"].as_slice()),
        ("semver_gt", ["above"].as_slice()),
        ("semver_gte", ["at", "above"].as_slice()),
    ] {
        let cases: Vec<(Value, bool)> = versions
            .iter()
            .map(|(v, pos)| (v.clone(), holds.contains(pos)))
            .collect();
        check(op, json!("2.0.0"), &cases);
        // The condition's version may carry the `v` too.
        check(op, json!("v2.0.0"), &cases);
        // What is not a version never compares.
        check(
            op,
            json!("2.0.0"),
            &[
                (json!("2.0"), false),
                (json!("2"), false),
                (json!("02.0.0"), false),
                (json!("latest"), false),
                (json!(2), false),
                (json!(""), false),
            ],
        );
    }
    // Pre-release precedence follows the specification.
    check(
        "semver_lt",
        json!("1.0.0-beta.11"),
        &[
            (json!("1.0.0-beta.2"), true),
            (json!("1.0.0-alpha.beta"), true),
            (json!("1.0.0-rc.1"), false),
            (json!("1.0.0"), false),
        ],
    );
    check(
        "semver_gt",
        json!("1.0.0-rc.1+build.1"),
        &[(json!("1.0.0-rc.1+build.2"), false), (json!("1.0.0"), true)],
    );
}

#[test]
fn date_comparisons() {
    let instant = "2026-11-23T10:00:00Z";
    // 2026-11-23T10:00:00Z is 1795428000 seconds after the Unix epoch.
    let cases_before = [
        (json!("2026-11-23T09:59:59Z"), true),
        (json!("2026-11-23T10:59:59+01:00"), true),
        (json!("2026-11-23T10:00:00Z"), false),
        (json!("2026-11-23T11:00:00+01:00"), false),
        (json!("2026-11-23T10:00:00.001Z"), false),
        (json!(1_795_427_999), true),
        (json!(1_795_427_999.999), true),
        (json!(1_795_428_000), false),
        (json!(-1), true),
        (json!(1e300), false),
        (json!("2026-11-23"), false),
        (json!("yesterday"), false),
        (json!(true), false),
    ];
    check("before", json!(instant), &cases_before);
    let cases_after = [
        (json!("2026-11-23T10:00:01Z"), true),
        (json!("2026-11-23T10:00:00Z"), false),
        (json!("2026-11-23T11:00:00+01:00"), false),
        // Sub-millisecond precision is kept: half a millisecond later is later.
        (json!("2026-11-23T10:00:00.0005Z"), true),
        (json!(1_795_428_000.5), true),
        (json!(1_795_428_000), false),
        (json!(1_795_428_001), true),
        (json!(1e300), true),
        (json!(-1e300), false),
        (json!("2026-11-24T00:00:00"), false),
        (json!([1_795_428_001]), false),
    ];
    check("after", json!(instant), &cases_after);
}

#[test]
fn exists() {
    check(
        "exists",
        Value::Null,
        &[
            (json!("x"), true),
            (json!(""), true),
            (json!(false), true),
            (json!(0), true),
            (json!([]), true),
            (json!({}), true),
        ],
    );
}

#[test]
fn targeting_key_is_an_attribute() {
    let set = one_rule_flag(
        json!([{"attribute": "targetingKey", "op": "starts_with", "values": ["staff-"]}]),
        json!([]),
    );
    assert!(rule_matched(
        &set,
        &context(json!({"targetingKey": "staff-7"}))
    ));
    assert!(!rule_matched(
        &set,
        &context(json!({"targetingKey": "user-7"}))
    ));
    assert!(!rule_matched(&set, &context(json!({}))));
}

#[test]
fn missing_attributes_never_match_negative_operators() {
    for condition in [
        json!({"attribute": "country", "op": "neq", "value": "DE"}),
        json!({"attribute": "country", "op": "not_in", "values": ["DE", "FR"]}),
    ] {
        let set = one_rule_flag(json!([condition]), json!([]));
        assert!(rule_matched(&set, &context(json!({"country": "NL"}))));
        assert!(
            !rule_matched(&set, &context(json!({"targetingKey": "u-1"}))),
            "{condition}"
        );
        assert!(
            !rule_matched(&set, &context(json!({"country": null}))),
            "{condition}"
        );
    }
}

/// Checks whether contexts are members of the segment `power-users` (plan pro or
/// enterprise, and country DE), used by the single rule of a flag.
#[track_caller]
fn check_segment(cases: &[(Value, bool)]) {
    let segments = json!([{
        "key": "power-users",
        "conditions": [
            {"attribute": "plan", "op": "in", "values": ["pro", "enterprise"]},
            {"attribute": "country", "op": "eq", "value": "DE"}
        ]
    }]);
    let set = one_rule_flag(json!([{"segment": "power-users"}]), segments);
    for (ctx, expected) in cases {
        assert_eq!(
            rule_matched(&set, &context(ctx.clone())),
            *expected,
            "{ctx}"
        );
    }
}

#[test]
fn segment_membership_needs_every_condition() {
    check_segment(&[
        (json!({"plan": "pro", "country": "DE"}), true),
        (
            json!({"plan": "enterprise", "country": "DE", "extra": 1}),
            true,
        ),
        (json!({"plan": "pro", "country": "FR"}), false),
        (json!({"plan": "free", "country": "DE"}), false),
        (json!({"plan": "pro"}), false),
        (json!({}), false),
    ]);
}

#[test]
fn rule_conditions_and_segments_combine_with_and() {
    let segments =
        json!([{"key": "pro", "conditions": [{"attribute": "plan", "op": "eq", "value": "pro"}]}]);
    let set = one_rule_flag(
        json!([{"segment": "pro"}, {"attribute": "beta", "op": "eq", "value": true}]),
        segments,
    );
    assert!(rule_matched(
        &set,
        &context(json!({"plan": "pro", "beta": true}))
    ));
    assert!(!rule_matched(
        &set,
        &context(json!({"plan": "pro", "beta": false}))
    ));
    assert!(!rule_matched(
        &set,
        &context(json!({"plan": "free", "beta": true}))
    ));
}

/// One expected outcome: the variant served (or `None` on an error), the
/// reason, and the error code.
type Outcome<'a> = (Option<&'a str>, Reason, Option<ErrorCode>);

/// Evaluates flag `f` of a set for each context and checks the outcome. A
/// served outcome must carry the variant's value; an error carries no value.
#[track_caller]
fn check_outcomes(set: &FlagSet, cases: &[(Value, Outcome<'_>)]) {
    for (ctx, (variant, reason, code)) in cases {
        let eval = set.evaluate("f", &context(ctx.clone()));
        assert_eq!(
            (
                eval.variant,
                eval.reason,
                eval.error.as_ref().map(|e| e.code)
            ),
            (*variant, *reason, *code),
            "context {ctx}: {eval:?}"
        );
        match &eval.error {
            Some(error) => {
                assert_eq!(eval.value, None);
                assert!(!error.message.is_empty());
            }
            None => assert!(eval.value.is_some()),
        }
    }
}

/// A string flag `f` with variants `a`, `b`, `c` (values `"A"`, `"B"`, `"C"`).
fn abc_flag(enabled: bool, rules: Value, default: Value) -> FlagSet {
    flag_set(
        json!([{
            "key": "f", "type": "string", "enabled": enabled, "off_variant": "c",
            "variants": {"a": "A", "b": "B", "c": "C"},
            "rules": rules,
            "default": {"serve": default}
        }]),
        json!([]),
    )
}

#[test]
fn first_matching_rule_wins() {
    let set = abc_flag(
        true,
        json!([
            {"conditions": [{"attribute": "plan", "op": "eq", "value": "pro"}], "serve": {"variant": "a"}},
            {"conditions": [{"attribute": "country", "op": "eq", "value": "DE"}], "serve": {"variant": "b"}},
            {"conditions": [{"attribute": "plan", "op": "exists"}], "serve": {"variant": "c"}}
        ]),
        json!({"variant": "c"}),
    );
    check_outcomes(
        &set,
        &[
            (
                json!({"plan": "pro", "country": "DE"}),
                (Some("a"), Reason::TargetingMatch, None),
            ),
            (
                json!({"plan": "free", "country": "DE"}),
                (Some("b"), Reason::TargetingMatch, None),
            ),
            (
                json!({"plan": "free"}),
                (Some("c"), Reason::TargetingMatch, None),
            ),
            (json!({"country": "FR"}), (Some("c"), Reason::Default, None)),
        ],
    );
}

#[test]
fn a_rule_without_conditions_matches_every_context() {
    let set = abc_flag(
        true,
        json!([{"serve": {"variant": "b"}}]),
        json!({"variant": "a"}),
    );
    check_outcomes(
        &set,
        &[(json!({}), (Some("b"), Reason::TargetingMatch, None))],
    );
}

#[test]
fn disabled_flags_serve_the_off_variant() {
    // Even a split that could not be evaluated without a targeting key is not reached.
    let set = abc_flag(
        false,
        json!([{"conditions": [{"attribute": "plan", "op": "eq", "value": "pro"}], "serve": {"variant": "a"}}]),
        json!({"split": {"a": 50, "b": 50}}),
    );
    check_outcomes(
        &set,
        &[
            (
                json!({"targetingKey": "u-1", "plan": "pro"}),
                (Some("c"), Reason::Disabled, None),
            ),
            (json!({}), (Some("c"), Reason::Disabled, None)),
        ],
    );
    assert_eq!(
        set.evaluate("f", &Context::default()).value,
        Some(&json!("C"))
    );
}

#[test]
fn reasons() {
    // No rules and one default variant: STATIC, whatever the context.
    let static_flag = abc_flag(true, json!([]), json!({"variant": "b"}));
    check_outcomes(
        &static_flag,
        &[
            (json!({}), (Some("b"), Reason::Static, None)),
            (
                json!({"targetingKey": "u-1", "plan": "pro"}),
                (Some("b"), Reason::Static, None),
            ),
        ],
    );

    // A rule that serves one variant: TARGETING_MATCH; no rule matched: DEFAULT.
    let targeted = abc_flag(
        true,
        json!([{"conditions": [{"attribute": "plan", "op": "eq", "value": "pro"}], "serve": {"variant": "a"}}]),
        json!({"variant": "b"}),
    );
    check_outcomes(
        &targeted,
        &[
            (
                json!({"plan": "pro"}),
                (Some("a"), Reason::TargetingMatch, None),
            ),
            (json!({"plan": "free"}), (Some("b"), Reason::Default, None)),
            (json!({}), (Some("b"), Reason::Default, None)),
        ],
    );

    // A split, of a rule or of the default (also without rules): SPLIT.
    let rule_split = abc_flag(
        true,
        json!([{"conditions": [{"attribute": "plan", "op": "eq", "value": "pro"}], "serve": {"split": {"a": 0, "b": 100}}}]),
        json!({"variant": "c"}),
    );
    check_outcomes(
        &rule_split,
        &[
            (
                json!({"targetingKey": "u-1", "plan": "pro"}),
                (Some("b"), Reason::Split, None),
            ),
            (
                json!({"targetingKey": "u-1"}),
                (Some("c"), Reason::Default, None),
            ),
        ],
    );
    let default_split = abc_flag(true, json!([]), json!({"split": {"a": 100}}));
    check_outcomes(
        &default_split,
        &[(
            json!({"targetingKey": "u-1"}),
            (Some("a"), Reason::Split, None),
        )],
    );
}

#[test]
fn reason_and_error_code_names_are_openfeature_names() {
    let names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        names,
        [
            "STATIC",
            "TARGETING_MATCH",
            "SPLIT",
            "DISABLED",
            "DEFAULT",
            "ERROR"
        ]
    );
    let codes = [
        (ErrorCode::FlagNotFound, "FLAG_NOT_FOUND"),
        (ErrorCode::TypeMismatch, "TYPE_MISMATCH"),
        (ErrorCode::TargetingKeyMissing, "TARGETING_KEY_MISSING"),
        (ErrorCode::ParseError, "PARSE_ERROR"),
        (ErrorCode::General, "GENERAL"),
    ];
    for (code, name) in codes {
        assert_eq!(code.as_str(), name);
    }
}

#[test]
fn unknown_flags_are_flag_not_found() {
    let set = abc_flag(true, json!([]), json!({"variant": "a"}));
    let eval = set.evaluate("no-such-flag", &Context::new("u-1"));
    assert_eq!(
        (eval.value, eval.variant, eval.reason),
        (None, None, Reason::Error)
    );
    let error = eval.error.expect("an error");
    assert_eq!(error.code, ErrorCode::FlagNotFound);
    assert!(error.message.contains("no-such-flag"), "{}", error.message);
    // A key differing only in case is another key.
    assert_eq!(
        set.evaluate("F", &Context::new("u-1")).reason,
        Reason::Error
    );
}

/// Evaluates a flag of each type through `evaluate_as` with each expected type.
#[track_caller]
fn check_type(flag_type: FlagType, value: Value, accepted: &[FlagType]) {
    let set = flag_set(
        json!([{"key": "f", "type": flag_type, "off_variant": "v", "variants": {"v": value}, "default": {"serve": {"variant": "v"}}}]),
        json!([]),
    );
    for expected in [
        FlagType::Boolean,
        FlagType::String,
        FlagType::Integer,
        FlagType::Float,
        FlagType::Object,
    ] {
        let eval = set.evaluate_as("f", &Context::default(), expected);
        if accepted.contains(&expected) {
            assert_eq!(
                (eval.reason, eval.error),
                (Reason::Static, None),
                "{flag_type} as {expected}"
            );
        } else {
            assert_eq!(eval.value, None, "{flag_type} as {expected}");
            assert_eq!(eval.reason, Reason::Error);
            assert_eq!(
                eval.error.map(|e| e.code),
                Some(ErrorCode::TypeMismatch),
                "{flag_type} as {expected}"
            );
        }
    }
    let eval = set.evaluate_as("missing", &Context::default(), flag_type);
    assert_eq!(eval.error.map(|e| e.code), Some(ErrorCode::FlagNotFound));
}

#[test]
fn evaluate_as_checks_the_type() {
    check_type(FlagType::Boolean, json!(true), &[FlagType::Boolean]);
    check_type(FlagType::String, json!("s"), &[FlagType::String]);
    // An integer is also a valid float.
    check_type(
        FlagType::Integer,
        json!(3),
        &[FlagType::Integer, FlagType::Float],
    );
    check_type(FlagType::Float, json!(0.5), &[FlagType::Float]);
    check_type(FlagType::Object, json!({"k": [1]}), &[FlagType::Object]);
}

#[test]
fn float_variants_are_served_as_floats() {
    let set = flag_set(
        json!([{"key": "f", "type": "float", "off_variant": "one", "variants": {"one": 1}, "default": {"serve": {"variant": "one"}}}]),
        json!([]),
    );
    let value = set.evaluate("f", &Context::default()).value.cloned();
    assert_eq!(value.as_ref().map(Value::is_f64), Some(true), "{value:?}");
    assert_eq!(serde_json::to_string(&value).ok().as_deref(), Some("1.0"));
}

#[test]
fn targeting_key_missing_only_when_a_split_is_reached() {
    let set = abc_flag(
        true,
        json!([
            {"conditions": [{"attribute": "plan", "op": "eq", "value": "pro"}], "serve": {"variant": "a"}},
            {"conditions": [{"attribute": "plan", "op": "eq", "value": "team"}], "serve": {"split": {"a": 50, "b": 50}}}
        ]),
        json!({"split": {"b": 50, "c": 50}}),
    );
    let missing = (None, Reason::Error, Some(ErrorCode::TargetingKeyMissing));
    check_outcomes(
        &set,
        &[
            // A rule that matches before any split serves without a key.
            (
                json!({"plan": "pro"}),
                (Some("a"), Reason::TargetingMatch, None),
            ),
            (json!({"plan": "team"}), missing),
            (json!({"plan": "free"}), missing),
            (json!({}), missing),
            (json!({"targetingKey": null}), missing),
            // An empty key identifies nobody: bucketing it would put every
            // anonymous caller into one bucket, so it counts as missing.
            (json!({"targetingKey": ""}), missing),
        ],
    );
    let served = set.evaluate(
        "f",
        &context(json!({"targetingKey": "u-1", "plan": "team"})),
    );
    assert_eq!((served.reason, served.error), (Reason::Split, None));
}

#[test]
fn splits_are_sticky_and_keyed_by_the_targeting_key_only() {
    let set = abc_flag(
        true,
        json!([]),
        json!({"split": {"a": 34, "b": 33, "c": 33}}),
    );
    for i in 0..200 {
        let key = format!("user-{i}");
        let plain = set.evaluate("f", &Context::new(key.as_str())).variant;
        let with_attributes = set
            .evaluate(
                "f",
                &Context::new(key.as_str()).with("plan", "pro").with("n", i),
            )
            .variant;
        assert_eq!(plain, with_attributes, "{key}");
        assert!(plain.is_some());
    }
}

#[test]
fn flag_sets_list_flags_in_key_order() {
    let set = flag_set(
        json!([
            {"key": "zeta", "type": "boolean", "off_variant": "off", "variants": {"off": false}, "default": {"serve": {"variant": "off"}}},
            {"key": "alpha", "type": "boolean", "enabled": false, "off_variant": "off", "variants": {"off": false}, "default": {"serve": {"variant": "off"}}}
        ]),
        json!([]),
    );
    let keys: Vec<&str> = set.iter().map(|f| f.key()).collect();
    assert_eq!(keys, ["alpha", "zeta"]);
    assert_eq!(set.len(), 2);
    assert!(!set.is_empty());
    let alpha = set.get("alpha").expect("alpha exists");
    assert_eq!(
        (alpha.flag_type(), alpha.enabled()),
        (FlagType::Boolean, false)
    );
    assert_eq!(alpha.evaluate(&Context::default()).reason, Reason::Disabled);
    assert!(flags::compile(&[], &[]).is_ok_and(|s| s.is_empty()));
}

#[test]
fn a_segment_without_conditions_contains_every_context() {
    let set = one_rule_flag(
        json!([{"segment": "everyone"}]),
        json!([{"key": "everyone", "conditions": []}]),
    );
    assert!(rule_matched(&set, &context(json!({}))));
    assert!(rule_matched(
        &set,
        &context(json!({"targetingKey": "u-1", "plan": "free"}))
    ));
}
