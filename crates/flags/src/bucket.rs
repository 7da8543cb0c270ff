//! Sticky bucketing. The algorithm is frozen by `docs/bucketing.md` and the test
//! vectors in `tests/bucketing.rs`: changing anything here moves users between
//! variants, which is exactly what bucketing promises never to do.
//!
//! `bucket(salt, unit)` = `floor(xxh3_64(salt ":" unit) × BUCKET_COUNT / 2^64)`.

use xxhash_rust::xxh3::xxh3_64;

/// Number of buckets: one bucket is 0.001% of units.
pub const BUCKET_COUNT: u32 = 100_000;

/// Buckets per percentage point.
const UNITS_PER_PERCENT: f64 = BUCKET_COUNT as f64 / 100.0;

/// Longest `salt:unit` hashed without a heap allocation.
const STACK_KEY_LEN: usize = 256;

/// The bucket in `0..BUCKET_COUNT` of a randomization unit under a salt.
pub fn bucket(salt: &str, unit: &str) -> u32 {
    let len = salt.len() + 1 + unit.len();
    let hash = if len <= STACK_KEY_LEN {
        let mut buf = [0u8; STACK_KEY_LEN];
        buf[..salt.len()].copy_from_slice(salt.as_bytes());
        buf[salt.len()] = b':';
        buf[salt.len() + 1..len].copy_from_slice(unit.as_bytes());
        xxh3_64(&buf[..len])
    } else {
        let mut key = String::with_capacity(len);
        key.push_str(salt);
        key.push(':');
        key.push_str(unit);
        xxh3_64(key.as_bytes())
    };
    // Multiply-shift maps the 64-bit hash onto the range without modulo bias.
    ((u128::from(hash) * u128::from(BUCKET_COUNT)) >> 64) as u32
}

/// A percentage as a whole number of buckets, or `None` when it is not a
/// multiple of the bucket size (0.001%) or lies outside 0..=100.
pub fn weight_units(percent: f64) -> Option<u32> {
    if !percent.is_finite() || !(0.0..=100.0).contains(&percent) {
        return None;
    }
    let units = (percent * UNITS_PER_PERCENT).round();
    if (units - percent * UNITS_PER_PERCENT).abs() > 1e-6 {
        return None;
    }
    Some(units as u32)
}

/// Exclusive upper bucket bound of each arm, in the order given: arm `i` owns
/// buckets `bounds[i-1]..bounds[i]`. Weights are in buckets and must sum to
/// `BUCKET_COUNT` (validation guarantees it); the last bound is always
/// `BUCKET_COUNT` so that every bucket has an arm.
pub fn split_boundaries(units: &[u32]) -> Vec<u32> {
    let mut acc = 0u32;
    let mut bounds: Vec<u32> = units
        .iter()
        .map(|u| {
            acc = acc.saturating_add(*u).min(BUCKET_COUNT);
            acc
        })
        .collect();
    if let Some(last) = bounds.last_mut() {
        *last = BUCKET_COUNT;
    }
    bounds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_convert_to_whole_buckets() {
        assert_eq!(weight_units(5.0), Some(5_000));
        assert_eq!(weight_units(33.333), Some(33_333));
        assert_eq!(weight_units(0.001), Some(1));
        assert_eq!(weight_units(100.0), Some(100_000));
        assert_eq!(weight_units(0.0005), None);
        assert_eq!(weight_units(-1.0), None);
        assert_eq!(weight_units(100.001), None);
        assert_eq!(weight_units(f64::NAN), None);
    }

    #[test]
    fn long_units_hash_like_short_ones_would() {
        let long = "u".repeat(400);
        let expected = {
            let key = format!("salt:{long}");
            ((u128::from(xxh3_64(key.as_bytes())) * u128::from(BUCKET_COUNT)) >> 64) as u32
        };
        assert_eq!(bucket("salt", &long), expected);
    }

    #[test]
    fn boundaries_cover_every_bucket() {
        assert_eq!(split_boundaries(&[5_000, 95_000]), vec![5_000, 100_000]);
        assert_eq!(
            split_boundaries(&[34_000, 33_000, 33_000]),
            vec![34_000, 67_000, 100_000]
        );
    }
}
