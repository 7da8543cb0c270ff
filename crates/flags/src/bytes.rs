//! Byte-level helpers for the hot path: equality and little-endian words of
//! short strings, without calls into libc and without panics (a read out of
//! bounds yields zeros).

/// Up to this length, [`same_bytes`] compares inline.
const INLINE_COMPARE_MAX_LEN: usize = 64;

/// Byte equality. Attribute names and values are short, and for a few bytes
/// a call into libc's `memcmp` (what `==` on slices becomes) costs several
/// times the comparison itself; this compares in machine words instead, the
/// last word overlapping the one before.
#[inline]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0 => true,
        1..4 => a.iter().zip(b).all(|(x, y)| x == y),
        4..8 => word32(a, 0) == word32(b, 0) && word32(a, n - 4) == word32(b, n - 4),
        8..=INLINE_COMPARE_MAX_LEN => {
            (0..n / 8).all(|i| word64(a, i * 8) == word64(b, i * 8))
                && word64(a, n - 8) == word64(b, n - 8)
        }
        _ => a == b,
    }
}

fn word32(s: &[u8], at: usize) -> Option<u32> {
    s.get(at..at + 4)
        .and_then(|w| w.try_into().ok())
        .map(u32::from_ne_bytes)
}

fn word64(s: &[u8], at: usize) -> Option<u64> {
    s.get(at..at + 8)
        .and_then(|w| w.try_into().ok())
        .map(u64::from_ne_bytes)
}

/// The little-endian word at `at`; the callers stay in bounds, and out of
/// bounds would read 0 rather than panic.
#[inline(always)]
pub(crate) fn le64(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|w| w.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

#[inline(always)]
pub(crate) fn le32(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 4)
        .and_then(|w| w.try_into().ok())
        .map_or(0, |w| u64::from(u32::from_le_bytes(w)))
}

/// The first 8 bytes as a little-endian word, zeros after fewer.
#[inline(always)]
pub(crate) fn head_word(bytes: &[u8]) -> u64 {
    match bytes.len() {
        8.. => le64(bytes, 0),
        // Two overlapping reads: the shared bytes are the same bytes.
        n @ 4..8 => le32(bytes, 0) | (le32(bytes, n - 4) << (8 * (n - 4))),
        _ => bytes
            .iter()
            .rev()
            .fold(0, |word, byte| (word << 8) | u64::from(*byte)),
    }
}

/// The last 8 bytes as a little-endian word, zeros before fewer.
#[inline(always)]
pub(crate) fn tail_word(bytes: &[u8]) -> u64 {
    let n = bytes.len();
    if n >= 8 {
        le64(bytes, n - 8)
    } else {
        head_word(bytes)
            .checked_shl(8 * (8 - n) as u32)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn same_bytes_is_equality() {
        let words = [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "abcde",
            "abcdefg",
            "abcdefgh",
            "abcdefghi",
            "é",
            "ü",
        ];
        for a in words {
            for b in words {
                assert_eq!(
                    same_bytes(a.as_bytes(), b.as_bytes()),
                    a == b,
                    "{a:?} {b:?}"
                );
            }
        }
    }

    #[test]
    fn words_are_little_endian_and_padded_with_zeros() {
        assert_eq!(head_word(b""), 0);
        assert_eq!(head_word(b"ab"), 0x6261);
        assert_eq!(head_word(b"abcde"), 0x65_6463_6261);
        assert_eq!(head_word(b"abcdefghij"), u64::from_le_bytes(*b"abcdefgh"));
        assert_eq!(tail_word(b""), 0);
        assert_eq!(tail_word(b"ab"), 0x6261 << 48);
        assert_eq!(tail_word(b"abcdefghij"), u64::from_le_bytes(*b"cdefghij"));
        assert_eq!(le64(b"abc", 0), 0, "out of bounds reads zeros");
    }

    proptest! {
        #[test]
        fn same_bytes_agrees_with_slice_equality(a in proptest::collection::vec(0u8..4, 0..80), flip in any::<prop::sample::Index>()) {
            prop_assert!(same_bytes(&a, &a));
            let mut b = a.clone();
            if !b.is_empty() {
                let i = flip.index(b.len());
                b[i] ^= 1;
                prop_assert!(!same_bytes(&a, &b));
            }
        }

        #[test]
        fn head_and_tail_words_hold_the_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..12)) {
            let mut head = [0u8; 8];
            let n = bytes.len().min(8);
            head[..n].copy_from_slice(&bytes[..n]);
            prop_assert_eq!(head_word(&bytes), u64::from_le_bytes(head));
            let mut tail = [0u8; 8];
            tail[8 - n..].copy_from_slice(&bytes[bytes.len() - n..]);
            prop_assert_eq!(tail_word(&bytes), u64::from_le_bytes(tail));
        }
    }
}
