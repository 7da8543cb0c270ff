//! `QuantileSketch`: the quantile definition on small data, the stored format
//! (pinned by byte vectors, so that a dependency upgrade cannot silently make
//! stored sketches unreadable), and refusal of bad values and bad bytes.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use sketches_ddsketch::{Config, DDSketch};
use stats::{QuantileSketch, SketchError};

fn sketch_of(values: &[f64]) -> QuantileSketch {
    let mut sketch = QuantileSketch::new();
    for &v in values {
        sketch.add(v).unwrap();
    }
    sketch
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// `(q, exact x₍⌈n·q⌉₎)` pairs: the sketch answers each within 1% (plus
/// floating-point rounding: a value on a bin's edge is off by exactly 1%), and
/// exactly at the minimum and maximum.
#[track_caller]
fn check_quantiles(values: &[f64], cases: &[(f64, f64)]) {
    let sketch = sketch_of(values);
    for &(q, exact) in cases {
        let estimate = sketch.quantile(q).unwrap();
        assert!(
            (estimate - exact).abs() <= (0.01 + 1e-12) * exact.abs(),
            "q = {q}: {estimate}, expected {exact} ± 1% for {values:?}"
        );
        if exact == values.iter().copied().fold(f64::INFINITY, f64::min)
            || exact == values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        {
            assert_eq!(estimate, exact, "q = {q}: the extremes are exact");
        }
    }
}

#[test]
fn quantiles_are_order_statistics_at_the_ceiling_of_n_q() {
    check_quantiles(
        &[40.0, 10.0, 30.0, 20.0],
        &[
            (0.0, 10.0),
            (0.25, 10.0),
            (0.26, 20.0),
            (0.5, 20.0),
            (0.75, 30.0),
            (0.76, 40.0),
            (1.0, 40.0),
        ],
    );
    let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
    check_quantiles(
        &hundred,
        &[
            (0.01, 1.0),
            (0.5, 50.0),
            (0.95, 95.0),
            (0.99, 99.0),
            (1.0, 100.0),
        ],
    );
}

#[test]
fn negative_values_and_zeros_are_supported() {
    check_quantiles(
        &[-5.0, 2.0, 0.0, -1.0, 0.0],
        &[
            (0.0, -5.0),
            (0.2, -5.0),
            (0.4, -1.0),
            (0.6, 0.0),
            (0.8, 0.0),
            (1.0, 2.0),
        ],
    );
}

#[test]
fn an_empty_sketch_answers_nothing() {
    let sketch = QuantileSketch::new();
    assert!(sketch.is_empty());
    assert_eq!(sketch.count(), 0);
    assert_eq!(sketch.min(), None);
    assert_eq!(sketch.max(), None);
    assert_eq!(sketch.quantile(0.5), None);
    assert_eq!(sketch.order_statistic(1), None);
}

#[test]
fn a_quantile_is_between_zero_and_one() {
    let sketch = sketch_of(&[1.0, 2.0, 3.0]);
    for q in [-0.1, 1.1, f64::NAN, f64::INFINITY] {
        assert_eq!(sketch.quantile(q), None, "q = {q}");
    }
    assert_eq!(sketch.order_statistic(0), None);
    assert_eq!(sketch.order_statistic(4), None);
}

#[test]
fn non_finite_values_are_refused_and_change_nothing() {
    let mut sketch = sketch_of(&[1.0, 2.0]);
    for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert_eq!(sketch.add(v), Err(SketchError::NonFiniteValue));
    }
    assert_eq!(sketch.count(), 2);
    assert_eq!(sketch.max(), Some(2.0));
}

/// Bytes written by sketches-java's `DDSketchWithExactSummaryStatistics`
/// (`LogarithmicMapping(0.01)`, `CollapsingLowestDenseStore(2048)`) for the
/// same values, as published with `sketches-ddsketch`. Equal bytes mean the
/// stored form is DataDog's standard one and has not moved.
const STORED: &[(&[f64], &str)] = &[
    (&[], "02fd4a815abf52f03f0000000000000000"),
    (
        &[1.0, 2.0, 3.0, 4.0, 5.0],
        "a00588000000000000f03f8c0000000000001440840000000000002e4002fd4a815abf52f03f00000000000000000505000244022802\
         1e021602",
    ),
    (
        &[-3.0, -1.0, 2.0, 5.0],
        "a084408800000000000008c08c000000000000144084000000000000084002fd4a815abf52f03f00000000000000000502440\
         25c02070200026c02",
    ),
    (
        &[0.0, 1.0, 2.0],
        "a0048800000000000000008c000000000000004084000000000000084002fd4a815abf52f03f000000000000000004020502\
         00024402",
    ),
];

#[test]
fn the_stored_form_is_datadogs_ddsketch_encoding() {
    for &(values, expected) in STORED {
        let sketch = sketch_of(values);
        assert_eq!(hex(&sketch.to_bytes()), expected, "{values:?}");
        let read = QuantileSketch::from_bytes(&unhex(expected)).unwrap();
        assert_eq!(read.count(), values.len() as u64);
        assert_eq!(read.to_bytes(), sketch.to_bytes(), "{values:?}");
        for k in 1..=read.count() {
            assert_eq!(read.order_statistic(k), sketch.order_statistic(k));
        }
    }
}

#[test]
fn a_sketch_of_another_accuracy_is_refused() {
    let mut other = DDSketch::new(Config::new(0.02, 2048, 1e-9));
    other.add(1.0);
    assert_eq!(
        QuantileSketch::from_bytes(&other.to_java_bytes()).unwrap_err(),
        SketchError::Incompatible
    );
}

#[test]
fn corrupt_bytes_are_refused() {
    assert!(QuantileSketch::from_bytes(&bin_at(0)).is_ok());
    let good = sketch_of(&[1.0, 2.0, 3.0, 4.0, 5.0]).to_bytes();
    let with = |at: usize, byte: u8| {
        let mut bytes = good.clone();
        bytes[at] = byte;
        bytes
    };
    let mapping = good.iter().position(|&b| b == 0x02).unwrap();
    let positive_bins = mapping + 17;
    assert_eq!(good[positive_bins], 0x05);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("nothing", vec![]),
        ("truncated", good[..good.len() - 1].to_vec()),
        ("a trailing byte", [good.as_slice(), &[0x02]].concat()),
        ("an unknown flag", with(0, 0xFF)),
        ("a count that does not match", with(1, 0x07)),
        ("no index mapping", good[..mapping].to_vec()),
        (
            "an empty store",
            [&good[..=positive_bins], &[0x00][..]].concat(),
        ),
        // Beyond f64::MAX, which is about 35,489 at 1%.
        ("a bin index no finite value has", bin_at(40_000)),
        ("a bin index beyond i32", bin_at(i64::from(i32::MAX) + 1)),
        ("a bin index below the zero threshold", bin_at(-2_000)),
        ("a bin count of zero", with(positive_bins + 3, 0x00)),
    ];
    for (what, bytes) in cases {
        match QuantileSketch::from_bytes(&bytes) {
            Err(SketchError::InvalidBytes(_)) => {}
            other => panic!("{what}: {other:?} for {}", hex(&bytes)),
        }
    }
}

/// The stored sketch of `[1.0]` with its one bin moved to `index`.
fn bin_at(index: i64) -> Vec<u8> {
    let good = sketch_of(&[1.0]).to_bytes();
    let bins = good.len() - 4;
    assert_eq!(
        good[bins..],
        [0x05, 0x01, 0x00, 0x02],
        "one bin at index 0, count 1"
    );
    // ZigZag, then seven bits a byte, least significant first.
    let mut zigzag = ((index << 1) ^ (index >> 63)) as u64;
    let mut varint = Vec::new();
    while zigzag >= 0x80 {
        varint.push(zigzag as u8 | 0x80);
        zigzag >>= 7;
    }
    varint.push(zigzag as u8);
    [&good[..bins + 2], &varint, &good[bins + 3..]].concat()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        rng_seed: RngSeed::Fixed(0x5eed_0004),
        ..ProptestConfig::default()
    })]

    /// Whatever a database hands back, reading it is an error or a sketch
    /// that answers, never a panic.
    #[test]
    fn reading_any_bytes_never_panics(bytes in vec(any::<u8>(), 0..64)) {
        if let Ok(sketch) = QuantileSketch::from_bytes(&bytes) {
            use_every_answer(&sketch);
        }
    }

    /// Valid bytes with one byte changed, inserted or cut off.
    #[test]
    fn reading_damaged_bytes_never_panics(
        values in vec(prop_oneof![Just(0.0), -1e6..1e6f64], 0..40),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        damage in 0..3u8,
    ) {
        let mut bytes = sketch_of(&values).to_bytes();
        let at = at.index(bytes.len());
        match damage {
            0 => bytes[at] = byte,
            1 => bytes.insert(at, byte),
            _ => bytes.truncate(at),
        }
        if let Ok(sketch) = QuantileSketch::from_bytes(&bytes) {
            use_every_answer(&sketch);
        }
    }
}

fn use_every_answer(sketch: &QuantileSketch) {
    let n = sketch.count();
    for k in [1, 2, n / 2, n.saturating_sub(1), n] {
        let _ = sketch.order_statistic(k);
    }
    for q in [0.0, 0.5, 0.95, 1.0] {
        let _ = sketch.quantile(q);
    }
    let mut merged = sketch_of(&[1.0, -2.0, 0.0]);
    merged.merge(sketch).unwrap();
    let _ = merged.quantile(0.5);
    let _ = QuantileSketch::from_bytes(&merged.to_bytes());
}
