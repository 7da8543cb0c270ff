//! How long one flag evaluation takes on the hot path that OFREP requests take.
//!
//! The flag is shaped like a typical production flag that falls through to a
//! percentage split: three targeting rules that each have to be checked and
//! fail (an `in` on a string attribute, a `semver_gte`, a two-condition
//! segment), then a default 34/33/33 split. Every rule failing is the slow
//! path: a rule that matches early returns sooner.
//!
//! Contexts (a targeting key and four attributes) are built up front and
//! cycled through, so that every evaluation hashes a different unit. With
//! 4096 contexts (~3 MB) they no longer fit the per-core cache, so that
//! figure includes fetching the context from memory; with 64 the contexts stay
//! in cache, as a context the server has just parsed does.
//!
//! Run with `cargo bench -p flags`; figures are in BENCHMARKS.md.

use divan::Bencher;
use flags::{
    ConditionSpec, Context, DefaultSpec, FlagSet, FlagSpec, FlagType, Op, RuleSpec, SegmentSpec,
    ServeSpec,
};
use serde_json::json;

const FLAG_KEY: &str = "checkout-flow";
/// The context counts benchmarked: cache-resident and not.
const CONTEXT_COUNTS: [usize; 2] = [64, 4096];
/// Many samples of many evaluations each: one evaluation is far below the
/// timer's precision, and this machine's speed wanders, so the median needs
/// a large base.
const SAMPLE_COUNT: u32 = 1000;
const SAMPLE_SIZE: u32 = 1000;
/// Flags in the set for the lookup benchmark, a large production environment.
const FILLER_FLAG_COUNT: usize = 200;

fn main() {
    divan::main();
}

fn checkout_flow() -> FlagSpec {
    FlagSpec {
        key: FLAG_KEY.into(),
        flag_type: FlagType::String,
        description: String::new(),
        enabled: true,
        off_variant: "control".into(),
        variants: [
            ("control", "control"),
            ("one-page", "one-page"),
            ("wizard", "wizard"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect(),
        rules: vec![
            RuleSpec {
                name: Some("enterprise".into()),
                conditions: vec![ConditionSpec::attribute(
                    "plan",
                    Op::In,
                    vec![json!("enterprise"), json!("internal")],
                )],
                serve: ServeSpec::variant("one-page"),
            },
            RuleSpec {
                name: Some("new apps".into()),
                conditions: vec![ConditionSpec::attribute(
                    "app_version",
                    Op::SemverGte,
                    vec![json!("9.0.0")],
                )],
                serve: ServeSpec::variant("wizard"),
            },
            RuleSpec {
                name: Some("beta".into()),
                conditions: vec![ConditionSpec::segment("beta-testers")],
                serve: ServeSpec::variant("wizard"),
            },
        ],
        default: DefaultSpec {
            serve: ServeSpec::split([("control", 34.0), ("one-page", 33.0), ("wizard", 33.0)]),
        },
        salt: None,
        record_exposures: true,
    }
}

fn beta_testers() -> SegmentSpec {
    SegmentSpec {
        key: "beta-testers".into(),
        description: String::new(),
        conditions: vec![
            // Holds for every benchmark context, so the second condition is checked too.
            ConditionSpec::attribute(
                "country",
                Op::In,
                vec![json!("DE"), json!("FR"), json!("NL")],
            ),
            ConditionSpec::attribute("email", Op::EndsWith, vec![json!("@rollgate.dev")]),
        ],
    }
}

/// A boolean flag without rules, to fill a flag set.
fn filler(i: usize) -> FlagSpec {
    FlagSpec {
        key: format!("filler-flag-{i}"),
        flag_type: FlagType::Boolean,
        description: String::new(),
        enabled: true,
        off_variant: "off".into(),
        variants: [("off".to_owned(), json!(false))].into_iter().collect(),
        rules: Vec::new(),
        default: DefaultSpec {
            serve: ServeSpec::variant("off"),
        },
        salt: None,
        record_exposures: true,
    }
}

fn compile(flags: &[FlagSpec]) -> FlagSet {
    match flags::compile(flags, &[beta_testers()]) {
        Ok(set) => set,
        Err(errors) => panic!("benchmark flags do not compile: {errors:?}"),
    }
}

fn contexts(count: usize) -> Vec<Context> {
    (0..count)
        .map(|i| {
            Context::new(format!("user-{i}"))
                .with("plan", if i % 3 == 0 { "pro" } else { "free" })
                .with("app_version", format!("2.{}.{}", i % 7, i % 13))
                .with("country", ["DE", "FR", "NL"][i % 3])
                .with("email", format!("user{i}@example.com"))
        })
        .collect()
}

/// Evaluates `key` for each context in turn.
fn bench_cycle(bencher: Bencher, set: &FlagSet, key: &str, contexts: &[Context]) {
    let mut next = 0usize;
    bencher
        .with_inputs(|| {
            next = (next + 1) % contexts.len();
            &contexts[next]
        })
        .bench_local_values(|ctx| set.evaluate(key, ctx).variant);
}

/// The headline figure: three failing rules, then the default split.
#[divan::bench(args = CONTEXT_COUNTS, sample_count = SAMPLE_COUNT, sample_size = SAMPLE_SIZE)]
fn evaluate_default_split(bencher: Bencher, context_count: usize) {
    let set = compile(&[checkout_flow()]);
    let contexts = contexts(context_count);
    // The benchmark measures the path it claims to.
    assert!(
        contexts
            .iter()
            .all(|c| set.evaluate(FLAG_KEY, c).reason == flags::Reason::Split)
    );
    bench_cycle(bencher, &set, FLAG_KEY, &contexts);
}

/// The same evaluation with the flag among many: adds the lookup by key.
#[divan::bench(sample_count = SAMPLE_COUNT, sample_size = SAMPLE_SIZE)]
fn evaluate_default_split_among_200_flags(bencher: Bencher) {
    let mut specs: Vec<FlagSpec> = (0..FILLER_FLAG_COUNT).map(filler).collect();
    specs.push(checkout_flow());
    let set = compile(&specs);
    bench_cycle(bencher, &set, FLAG_KEY, &contexts(CONTEXT_COUNTS[0]));
}

/// Computing a bucket alone: the share of the split in the figures above.
#[divan::bench(sample_count = SAMPLE_COUNT, sample_size = SAMPLE_SIZE)]
fn bucket(bencher: Bencher) {
    let units: Vec<String> = (0..CONTEXT_COUNTS[0])
        .map(|i| format!("user-{i}"))
        .collect();
    let mut next = 0usize;
    bencher
        .with_inputs(|| {
            next = (next + 1) % units.len();
            units[next].as_str()
        })
        .bench_local_values(|unit| flags::bucket(FLAG_KEY, unit));
}
