//! Evaluation never fails by panicking: for any valid flag set and any
//! context (arbitrary JSON attributes, missing, empty or odd targeting keys,
//! unicode, very long strings), `evaluate` returns, and its outcome is
//! consistent: an error carries no value, a value is one of the flag's
//! variants and of the flag's type.

use chrono::DateTime;
use flags::{
    Attributes, ConditionSpec, Context, DefaultSpec, FlagSpec, FlagType, Op, Reason, RuleSpec,
    SegmentSpec, ServeSpec,
};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value, json};

/// Attribute names the generated conditions and contexts share, so that
/// conditions find values often. `targetingKey` is an attribute too.
const ATTRIBUTES: [&str; 6] = ["plan", "version", "email", "created", "n", "targetingKey"];
const SEGMENTS: [&str; 2] = ["seg-a", "seg-b"];

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        odd_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(".{0,6}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Strings that exercise the parsers: versions, dates, unicode, long ones.
fn odd_string() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,12}",
        "v?[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(-[a-z0-9.]{1,6})?(\\+[a-z0-9]{1,4})?",
        "[0-9]{1,25}\\.[0-9]{1,25}\\.[0-9]{1,25}",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,12})?(Z|[+-][0-9]{2}:[0-9]{2})",
        "\\PC{0,40}",
        (1usize..5_000).prop_map(|n| "é".repeat(n)),
        Just(String::new()),
    ]
}

fn any_context() -> impl Strategy<Value = Context> {
    let key = prop_oneof![
        Just(None),
        Just(Some(String::new())),
        odd_string().prop_map(Some),
        (1usize..20_000).prop_map(|n| Some("k".repeat(n))),
    ];
    let attrs = vec(
        (
            prop_oneof![
                select(ATTRIBUTES.to_vec()).prop_map(str::to_owned),
                ".{0,8}"
            ],
            any_json(),
        ),
        0..24,
    );
    (key, attrs).prop_map(|(targeting_key, attrs)| {
        let mut attributes = Attributes::new();
        for (name, value) in attrs {
            if name != "targetingKey" {
                attributes.insert(name, value);
            }
        }
        Context {
            targeting_key,
            attributes,
        }
    })
}

/// A valid operand for an operator.
fn condition() -> impl Strategy<Value = ConditionSpec> {
    let scalar = prop_oneof![
        odd_string().prop_map(Value::String),
        any::<i32>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from)
    ];
    let string = odd_string().prop_map(Value::String);
    let version = (
        0u64..20,
        0u64..20,
        0u64..20,
        proptest::option::of("[a-z]{1,4}(\\.[1-9][0-9]?)?"),
    )
        .prop_map(|(a, b, c, pre)| {
            json!(format!(
                "{a}.{b}.{c}{}",
                pre.map(|p| format!("-{p}")).unwrap_or_default()
            ))
        });
    let date = (-62_000_000_000i64..250_000_000_000).prop_filter_map("in chrono's range", |secs| {
        DateTime::from_timestamp(secs, 0).map(|d| json!(d.to_rfc3339()))
    });
    let number = any::<f64>()
        .prop_filter("finite", |f| f.is_finite())
        .prop_map(Value::from);
    let regex = select(vec![
        "^user-",
        "example\\.com$",
        "(?i)PRO",
        "[0-9]+",
        "é|ü",
        "",
    ])
    .prop_map(Value::from);
    let attribute = select(ATTRIBUTES.to_vec());
    let test = prop_oneof![
        (select(vec![Op::Eq, Op::Neq]), scalar.clone()).prop_map(|(op, v)| (op, vec![v])),
        (select(vec![Op::In, Op::NotIn]), vec(scalar, 1..4)).prop_map(|(op, vs)| (op, vs)),
        (
            select(vec![Op::Contains, Op::StartsWith, Op::EndsWith]),
            vec(string, 1..3)
        ),
        vec(regex, 1..3).prop_map(|vs| (Op::Regex, vs)),
        (select(vec![Op::Lt, Op::Lte, Op::Gt, Op::Gte]), number).prop_map(|(op, v)| (op, vec![v])),
        (
            select(vec![
                Op::SemverLt,
                Op::SemverLte,
                Op::SemverGt,
                Op::SemverGte
            ]),
            version
        )
            .prop_map(|(op, v)| (op, vec![v])),
        (select(vec![Op::Before, Op::After]), date).prop_map(|(op, v)| (op, vec![v])),
        Just((Op::Exists, vec![])),
    ];
    (attribute, test)
        .prop_map(|(attribute, (op, values))| ConditionSpec::attribute(attribute, op, values))
}

fn rule_condition() -> impl Strategy<Value = ConditionSpec> {
    prop_oneof![4 => condition(), 1 => select(SEGMENTS.to_vec()).prop_map(ConditionSpec::segment)]
}

/// A value of the flag's type.
fn variant_value(flag_type: FlagType) -> BoxedStrategy<Value> {
    match flag_type {
        FlagType::Boolean => any::<bool>().prop_map(Value::from).boxed(),
        FlagType::String => odd_string().prop_map(Value::from).boxed(),
        FlagType::Integer => any::<i64>().prop_map(Value::from).boxed(),
        FlagType::Float => any::<i32>().prop_map(|n| json!(f64::from(n) / 7.0)).boxed(),
        FlagType::Object => btree_map("[a-z]{1,4}", any_json(), 0..3)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
            .boxed(),
    }
}

/// Serve one of `variants` (by index), or split over them with weights in
/// steps of 0.001 that sum to exactly 100.
fn serve(variant_count: usize) -> impl Strategy<Value = ServeSpec> {
    prop_oneof![
        (0..variant_count).prop_map(|i| ServeSpec::variant(format!("v{i}"))),
        vec(0u32..=100_000, variant_count - 1).prop_map(move |mut cuts| {
            cuts.sort_unstable();
            let mut previous = 0;
            let mut weights = Vec::with_capacity(variant_count);
            for (i, cut) in cuts.iter().chain(std::iter::once(&100_000)).enumerate() {
                weights.push((format!("v{i}"), f64::from(cut - previous) / 1000.0));
                previous = *cut;
            }
            ServeSpec::split(weights)
        }),
    ]
}

fn any_flag() -> impl Strategy<Value = FlagSpec> {
    let flag_type = select(vec![
        FlagType::Boolean,
        FlagType::String,
        FlagType::Integer,
        FlagType::Float,
        FlagType::Object,
    ]);
    (flag_type, 1usize..5)
        .prop_flat_map(|(flag_type, variant_count)| {
            let rule = (
                proptest::option::of(".{0,10}"),
                vec(rule_condition(), 0..4),
                serve(variant_count),
            )
                .prop_map(|(name, conditions, serve)| RuleSpec {
                    name,
                    conditions,
                    serve,
                });
            (
                Just(flag_type),
                vec(variant_value(flag_type), variant_count),
                vec(rule, 0..5),
                serve(variant_count),
                any::<bool>(),
                0..variant_count,
                proptest::option::of(prop_oneof![
                    ".{0,20}".boxed(),
                    (1usize..2_000).prop_map(|n| "s".repeat(n)).boxed()
                ]),
            )
        })
        .prop_map(
            |(flag_type, values, rules, default, enabled, off, salt)| FlagSpec {
                key: "f".into(),
                flag_type,
                description: String::new(),
                enabled,
                off_variant: format!("v{off}"),
                variants: values
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (format!("v{i}"), v))
                    .collect(),
                rules,
                default: DefaultSpec { serve: default },
                salt,
                record_exposures: true,
            },
        )
}

fn segments() -> impl Strategy<Value = Vec<SegmentSpec>> {
    vec(vec(condition(), 0..3), SEGMENTS.len()).prop_map(|conditions| {
        SEGMENTS
            .iter()
            .zip(conditions)
            .map(|(key, conditions)| SegmentSpec {
                key: (*key).into(),
                description: String::new(),
                conditions,
            })
            .collect()
    })
}

fn is_of_type(value: &Value, flag_type: FlagType) -> bool {
    match flag_type {
        FlagType::Boolean => value.is_boolean(),
        FlagType::String => value.is_string(),
        FlagType::Integer => value.is_i64(),
        FlagType::Float => value.is_f64(),
        FlagType::Object => value.is_object(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn evaluation_always_returns_a_consistent_outcome(
        flag in any_flag(),
        segments in segments(),
        contexts in vec(any_context(), 1..6),
    ) {
        let set = match flags::compile(std::slice::from_ref(&flag), &segments) {
            Ok(set) => set,
            Err(errors) => return Err(TestCaseError::fail(format!("generated a valid flag, got {errors:?}"))),
        };
        for ctx in &contexts {
            let eval = set.evaluate("f", ctx);
            match (&eval.error, eval.value, eval.variant) {
                (Some(error), None, None) => {
                    prop_assert_eq!(eval.reason, Reason::Error);
                    prop_assert!(!error.message.is_empty());
                }
                (None, Some(value), Some(variant)) => {
                    prop_assert_ne!(eval.reason, Reason::Error);
                    prop_assert_eq!(flag.variants.get(variant).map(|_| ()), Some(()));
                    prop_assert!(is_of_type(value, flag.flag_type), "{} is not {}", value, flag.flag_type);
                    if !flag.enabled {
                        prop_assert_eq!((eval.reason, variant), (Reason::Disabled, flag.off_variant.as_str()));
                    }
                }
                _ => prop_assert!(false, "inconsistent outcome {:?}", eval),
            }
            // Evaluation is a function of the flag and the context.
            prop_assert_eq!(set.evaluate("f", ctx), eval.clone());
            // A round trip through JSON, as the server receives contexts, changes nothing.
            if let Ok(text) = serde_json::to_string(ctx) {
                let back: Context = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(set.evaluate("f", &back), eval);
            }
            prop_assert_eq!(set.evaluate("missing", ctx).reason, Reason::Error);
        }
    }

    /// Any JSON at all is either a context or a clear error, never a panic.
    #[test]
    fn reading_a_context_never_panics(value in any_json()) {
        let from_value = Context::from_json(value.clone());
        let deserialized = serde_json::from_value::<Context>(value);
        prop_assert_eq!(from_value.is_ok(), deserialized.is_ok());
        if let (Ok(a), Ok(b)) = (from_value, deserialized) {
            prop_assert_eq!(a, b);
        }
    }
}
