//! Checks stored sketch bytes before `sketches-ddsketch` decodes them.
//!
//! The crate's decoder trusts its input: a corrupt bin index or count can make
//! it overflow or index out of bounds, which panics. Stored sketches come back
//! from a database, so [`check`] first walks the bytes and accepts only what
//! `DDSketch::to_java_bytes` writes for a sketch of our configuration. The
//! format is DataDog's DDSketch binary encoding (sketches-java's
//! `DDSketchWithExactSummaryStatistics.encode`): a sequence of flag bytes,
//! each followed by its payload.
//!
//! | flag   | payload                                       | written when     |
//! |--------|-----------------------------------------------|------------------|
//! | `0xA0` | count, VarDouble                              | count > 0        |
//! | `0x88` | min, f64 little-endian                        | count > 0        |
//! | `0x8C` | max, f64 little-endian                        | count > 0        |
//! | `0x84` | sum, f64 little-endian                        | sum ≠ 0          |
//! | `0x02` | logarithmic index mapping: γ, index offset (two f64 LE) | always |
//! | `0x04` | zero count, VarDouble                         | zero count > 0   |
//! | `0x05` | positive bins: VarLong n, then n × (ZigZag VarLong index delta, VarDouble count) | any positive bin |
//! | `0x07` | negative bins, as the positive ones           | any negative bin |
//!
//! VarLong is an unsigned LEB128-style integer of at most 9 bytes (the ninth
//! carries 8 bits); VarDouble is a double whose bits, taken relative to 1.0 and
//! rotated, are written most significant 7 bits first, so small whole numbers
//! take one byte.

use sketches_ddsketch::Config;

use super::{QuantileSketch, SketchError};

const FLAG_COUNT: u8 = 0xA0;
const FLAG_MIN: u8 = 0x88;
const FLAG_MAX: u8 = 0x8C;
const FLAG_SUM: u8 = 0x84;
const FLAG_INDEX_MAPPING_LOG: u8 = 0x02;
const FLAG_ZERO_COUNT: u8 = 0x04;
const FLAG_POSITIVE_BINS: u8 = 0x05;
const FLAG_NEGATIVE_BINS: u8 = 0x07;

/// Counts above 2⁵³ are not exact as doubles, and the format stores counts as
/// doubles. Far beyond any metric (9·10¹⁵ values).
const MAX_EXACT_COUNT: u64 = 1 << 53;

/// Accepts exactly the bytes `to_java_bytes` writes for a sketch with
/// `config`: known flags, each at most once; the same γ; bin indices that a
/// finite value can have, increasing; whole counts that add up to the stated
/// count; and a finite min and max when the sketch is not empty.
pub(super) fn check(bytes: &[u8], config: &Config) -> Result<(), SketchError> {
    let indices = config.key(QuantileSketch::ZERO_THRESHOLD)..=config.key(f64::MAX);
    let mut reader = Reader { rest: bytes };
    let mut seen: Vec<u8> = Vec::new();
    let mut stated_count = None;
    let mut min = None;
    let mut max = None;
    let mut has_mapping = false;
    let mut total: u64 = 0;

    while let Some(flag) = reader.next_flag() {
        if seen.contains(&flag) {
            return Err(invalid(format!("flag 0x{flag:02X} appears twice")));
        }
        seen.push(flag);
        match flag {
            FLAG_COUNT => stated_count = Some(reader.var_double()?),
            FLAG_MIN => min = Some(reader.f64_le()?),
            FLAG_MAX => max = Some(reader.f64_le()?),
            FLAG_SUM => {
                reader.f64_le()?;
            }
            FLAG_INDEX_MAPPING_LOG => {
                let gamma = reader.f64_le()?;
                let index_offset = reader.f64_le()?;
                if gamma.to_bits() != config.gamma.to_bits() || index_offset != 0.0 {
                    return Err(SketchError::Incompatible);
                }
                has_mapping = true;
            }
            FLAG_ZERO_COUNT => total = add_count(total, reader.var_double()?)?,
            FLAG_POSITIVE_BINS | FLAG_NEGATIVE_BINS => {
                let bins = reader.var_long()?;
                if bins == 0 || bins > u64::from(QuantileSketch::MAX_BINS) {
                    return Err(invalid(format!("{bins} bins")));
                }
                let mut index: i64 = 0;
                for bin in 0..bins {
                    let delta = reader.zigzag_var_long()?;
                    if bin > 0 && delta <= 0 {
                        return Err(invalid("bin indices do not increase"));
                    }
                    index = index
                        .checked_add(delta)
                        .filter(|index| {
                            i32::try_from(*index).is_ok_and(|index| indices.contains(&index))
                        })
                        .ok_or_else(|| invalid("a bin index out of range"))?;
                    total = add_count(total, reader.var_double()?)?;
                }
            }
            other => return Err(invalid(format!("unknown flag 0x{other:02X}"))),
        }
    }

    if !has_mapping {
        return Err(invalid("no index mapping"));
    }
    if total == 0 {
        if stated_count.is_some() || min.is_some() || max.is_some() {
            return Err(invalid("an empty sketch with a count, min or max"));
        }
        return Ok(());
    }
    if stated_count != Some(total as f64) {
        return Err(invalid("the count does not match the bins"));
    }
    match (min, max) {
        (Some(min), Some(max)) if min.is_finite() && max.is_finite() && min <= max => Ok(()),
        _ => Err(invalid("a missing or impossible min or max")),
    }
}

/// `total + count`, where `count` must be a whole number ≥ 1 and the total
/// stay exact.
fn add_count(total: u64, count: f64) -> Result<u64, SketchError> {
    if !(count >= 1.0 && count.fract() == 0.0 && count <= MAX_EXACT_COUNT as f64) {
        return Err(invalid(format!("a bin count of {count}")));
    }
    Some(total + count as u64)
        .filter(|total| *total <= MAX_EXACT_COUNT)
        .ok_or_else(|| invalid("more values than can be counted exactly"))
}

fn invalid(reason: impl Into<String>) -> SketchError {
    SketchError::InvalidBytes(reason.into())
}

fn truncated() -> SketchError {
    invalid("truncated")
}

/// Reads the encoding's primitives from the front of a byte slice.
struct Reader<'a> {
    rest: &'a [u8],
}

impl Reader<'_> {
    fn next_flag(&mut self) -> Option<u8> {
        let (&byte, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(byte)
    }

    fn byte(&mut self) -> Result<u8, SketchError> {
        self.next_flag().ok_or_else(truncated)
    }

    fn f64_le(&mut self) -> Result<f64, SketchError> {
        let (bytes, rest) = self.rest.split_first_chunk::<8>().ok_or_else(truncated)?;
        self.rest = rest;
        Ok(f64::from_le_bytes(*bytes))
    }

    /// Seven bits a byte, least significant first, while the high bit is set;
    /// the ninth byte carries eight.
    fn var_long(&mut self) -> Result<u64, SketchError> {
        let mut value = 0;
        for shift in (0..56).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7F) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Ok(value | u64::from(self.byte()?) << 56)
    }

    fn zigzag_var_long(&mut self) -> Result<i64, SketchError> {
        let encoded = self.var_long()?;
        Ok((encoded >> 1) as i64 ^ -((encoded & 1) as i64))
    }

    /// The bits of `value + 1` minus those of 1.0, rotated left by 6, written
    /// most significant 7 bits first while the high bit is set; the ninth byte
    /// carries eight.
    fn var_double(&mut self) -> Result<f64, SketchError> {
        let mut bits: u64 = 0;
        for shift in (1..=57).rev().step_by(7) {
            let byte = self.byte()?;
            if shift == 1 {
                bits |= u64::from(byte);
                break;
            }
            bits |= u64::from(byte & 0x7F) << shift;
            if byte < 0x80 {
                break;
            }
        }
        let bits = bits.rotate_right(6).wrapping_add(1.0f64.to_bits());
        Ok(f64::from_bits(bits) - 1.0)
    }
}
