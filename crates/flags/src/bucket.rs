//! Sticky bucketing. The algorithm is frozen by `docs/bucketing.md` and the test
//! vectors in `tests/bucketing.rs`: changing anything here moves users between
//! variants, which is exactly what bucketing promises never to do.
//!
//! `bucket(salt, unit)` = `floor(xxh3_64(salt ":" unit) × BUCKET_COUNT / 2^64)`.

use xxhash_rust::xxh3::xxh3_64;

use crate::bytes::{head_word, le64, tail_word};

/// Number of buckets: one bucket is 0.001% of units.
pub const BUCKET_COUNT: u32 = 100_000;

/// Buckets per percentage point.
const UNITS_PER_PERCENT: f64 = BUCKET_COUNT as f64 / 100.0;

/// Between the salt and the unit in the hashed key.
const SEPARATOR: u8 = b':';

/// The bucket in `0..BUCKET_COUNT` of a randomization unit under a salt.
pub fn bucket(salt: &str, unit: &str) -> u32 {
    let hash = joined_xxh3_64(salt.as_bytes(), unit.as_bytes());
    // Multiply-shift maps the 64-bit hash onto the range without modulo bias.
    ((u128::from(hash) * u128::from(BUCKET_COUNT)) >> 64) as u32
}

/// `xxh3_64(salt ":" unit)`.
///
/// Keys of 17 to 240 bytes (nearly all: a flag key, a colon and a user id)
/// are hashed without writing the key out: XXH3 reads a key of that size in
/// 8-byte words, and [`JoinedKey`] produces each word from the salt and the
/// unit in registers. Copying both into a buffer and hashing that took three
/// times as long (14 ns against 5 ns per bucket on the benchmark machine):
/// the copies go through `memcpy`, and the hash reads the buffer back before
/// they have settled. The arithmetic below is XXH3's for those sizes with
/// seed 0 and the default secret, as in `xxhash-rust` and the reference C
/// library; tests check that it agrees with `xxh3_64` for every length.
fn joined_xxh3_64(salt: &[u8], unit: &[u8]) -> u64 {
    let key = JoinedKey::new(salt, unit);
    match key.len {
        XXH3_MID_MIN_LEN..=XXH3_MID_MAX_LEN => xxh3_17to128(&key),
        XXH3_LARGE_MID_MIN_LEN..=XXH3_LARGE_MID_MAX_LEN => xxh3_129to240(&key),
        _ => xxh3_64_written_out(salt, unit),
    }
}

/// XXH3 hashes keys of up to 16 bytes, of 17 to 128, of 129 to 240 and
/// longer ones in four different ways; the middle two are reproduced here.
const XXH3_SMALL_MAX_LEN: usize = 16;
const XXH3_MID_MIN_LEN: usize = XXH3_SMALL_MAX_LEN + 1;
const XXH3_MID_MAX_LEN: usize = 128;
const XXH3_LARGE_MID_MIN_LEN: usize = XXH3_MID_MAX_LEN + 1;
const XXH3_LARGE_MID_MAX_LEN: usize = 240;

/// `xxh3_64(salt ":" unit)` by writing the key out: for the short and the
/// long keys that [`joined_xxh3_64`] does not hash in place.
#[cold]
fn xxh3_64_written_out(salt: &[u8], unit: &[u8]) -> u64 {
    let len = salt.len() + 1 + unit.len();
    if len <= XXH3_SMALL_MAX_LEN {
        let mut buf = [0u8; XXH3_SMALL_MAX_LEN];
        buf[..salt.len()].copy_from_slice(salt);
        buf[salt.len()] = SEPARATOR;
        buf[salt.len() + 1..len].copy_from_slice(unit);
        xxh3_64(&buf[..len])
    } else {
        let mut key = Vec::with_capacity(len);
        key.extend_from_slice(salt);
        key.push(SEPARATOR);
        key.extend_from_slice(unit);
        xxh3_64(&key)
    }
}

/// The key `salt ":" unit`, read in little-endian 8-byte words without
/// being written out.
struct JoinedKey<'a> {
    salt: &'a [u8],
    unit: &'a [u8],
    len: usize,
    /// The last 8 bytes of `salt ":"` (zeros before a shorter one).
    prefix_tail: u64,
    /// The first 8 bytes of `unit` (zeros after a shorter one).
    unit_head: u64,
}

impl<'a> JoinedKey<'a> {
    fn new(salt: &'a [u8], unit: &'a [u8]) -> Self {
        JoinedKey {
            salt,
            unit,
            len: salt.len() + 1 + unit.len(),
            prefix_tail: (tail_word(salt) >> 8) | (u64::from(SEPARATOR) << 56),
            unit_head: head_word(unit),
        }
    }

    /// Bytes `at..at + 8` of the key; `at + 8` must not exceed its length.
    #[inline(always)]
    fn word(&self, at: usize) -> u64 {
        let prefix_len = self.salt.len() + 1;
        if at + 8 <= self.salt.len() {
            le64(self.salt, at)
        } else if at >= prefix_len {
            le64(self.unit, at - prefix_len)
        } else {
            // The last `from_prefix` bytes of `salt ":"`, then the unit's first.
            let from_prefix = (prefix_len - at) as u32;
            (self.prefix_tail >> (8 * (8 - from_prefix)))
                | self.unit_head.checked_shl(8 * from_prefix).unwrap_or(0)
        }
    }

    /// XXH3's `mix16B` of the key's bytes `at..at + 16` with seed 0.
    #[inline(always)]
    fn mix16(&self, at: usize, secret_at: usize) -> u64 {
        let lo = self.word(at) ^ le64(&XXH3_SECRET, secret_at);
        let hi = self.word(at + 8) ^ le64(&XXH3_SECRET, secret_at + 8);
        let product = u128::from(lo) * u128::from(hi);
        (product as u64) ^ ((product >> 64) as u64)
    }
}

/// XXH3_64 of a key of 17 to 128 bytes (`XXH3_len_17to128_64b`).
fn xxh3_17to128(key: &JoinedKey<'_>) -> u64 {
    let n = key.len;
    let mut acc = (n as u64).wrapping_mul(XXH_PRIME64_1);
    if n > 32 {
        if n > 64 {
            if n > 96 {
                acc = acc.wrapping_add(key.mix16(48, 96));
                acc = acc.wrapping_add(key.mix16(n - 64, 112));
            }
            acc = acc.wrapping_add(key.mix16(32, 64));
            acc = acc.wrapping_add(key.mix16(n - 48, 80));
        }
        acc = acc.wrapping_add(key.mix16(16, 32));
        acc = acc.wrapping_add(key.mix16(n - 32, 48));
    }
    acc = acc.wrapping_add(key.mix16(0, 0));
    acc = acc.wrapping_add(key.mix16(n - 16, 16));
    xxh3_avalanche(acc)
}

/// XXH3_64 of a key of 129 to 240 bytes (`XXH3_len_129to240_64b`).
fn xxh3_129to240(key: &JoinedKey<'_>) -> u64 {
    const FIRST_ROUNDS: usize = 8;
    const MID_SECRET_OFFSET: usize = 3;
    // `XXH3_SECRET_SIZE_MIN - XXH3_MIDSIZE_LASTOFFSET` in the reference.
    const LAST_SECRET_OFFSET: usize = XXH3_SECRET.len() - 17;
    let n = key.len;
    let mut acc = (n as u64).wrapping_mul(XXH_PRIME64_1);
    for round in 0..FIRST_ROUNDS {
        acc = acc.wrapping_add(key.mix16(16 * round, 16 * round));
    }
    acc = xxh3_avalanche(acc);
    for round in FIRST_ROUNDS..n / 16 {
        acc = acc
            .wrapping_add(key.mix16(16 * round, 16 * (round - FIRST_ROUNDS) + MID_SECRET_OFFSET));
    }
    acc = acc.wrapping_add(key.mix16(n - 16, LAST_SECRET_OFFSET));
    xxh3_avalanche(acc)
}

fn xxh3_avalanche(mut h: u64) -> u64 {
    h ^= h >> 37;
    h = h.wrapping_mul(0x1656_6791_9E37_79F9);
    h ^ (h >> 32)
}

const XXH_PRIME64_1: u64 = 0x9E37_79B1_85EB_CA87;

/// The first 136 bytes (`XXH3_SECRET_SIZE_MIN`) of XXH3's default secret,
/// all that keys of up to 240 bytes use.
const XXH3_SECRET: [u8; 136] = [
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
    0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
    0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
    0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
    0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
    0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
    0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
    0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
    0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3,
];

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

    /// The in-place hash is XXH3 itself, for every length it handles and
    /// the ones around them, with salts short and long.
    #[test]
    fn joined_hash_is_xxh3_of_the_written_out_key() {
        let text: Vec<u8> = (0..400u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for salt_len in [0, 1, 2, 7, 8, 9, 15, 16, 17, 40, 128, 200, 239, 250] {
            for unit_len in 0..=260 {
                let salt = &text[..salt_len];
                let unit = &text[100..100 + unit_len];
                let key = [salt, b":", unit].concat();
                assert_eq!(
                    joined_xxh3_64(salt, unit),
                    xxh3_64(&key),
                    "salt {salt_len} bytes, unit {unit_len} bytes"
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn joined_hash_agrees_with_xxh3(salt in proptest::collection::vec(proptest::num::u8::ANY, 0..140), unit in proptest::collection::vec(proptest::num::u8::ANY, 0..260)) {
            let key = [salt.as_slice(), b":", unit.as_slice()].concat();
            proptest::prop_assert_eq!(joined_xxh3_64(&salt, &unit), xxh3_64(&key));
        }
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
