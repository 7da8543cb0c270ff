//! Semantic-version comparison on the hot path. Most version attributes are
//! plain `MAJOR.MINOR.PATCH`; those are read in one pass over their bytes
//! instead of through the full parser.
//!
//! Reading a short version a word at a time (finding the dots and converting
//! the digits with multiplications) was tried and made a version condition
//! twice as slow on the benchmark machine: it takes no fewer instructions
//! than the loop and chains them one after another, while the loop's
//! branches are predicted and its work overlaps.

use std::cmp::Ordering;

use crate::compile::parse_semver;

/// How a version attribute ranks against a condition's version, by SemVer
/// precedence: build metadata is ignored (SemVer 2.0.0, §10), which
/// `semver::Version`'s `Ord` does not do. `None` when the attribute is not a
/// version.
pub(crate) fn semver_precedence(attr: &str, target: &semver::Version) -> Option<Ordering> {
    let bare = attr.strip_prefix('v').unwrap_or(attr);
    // Most attributes are plain `MAJOR.MINOR.PATCH`; comparing their numbers
    // directly spares a full parse on the hot path.
    if let Some(numbers) = plain_version(bare) {
        let ord = numbers.cmp(&(target.major, target.minor, target.patch));
        // A release ranks above the pre-releases of the same numbers.
        let pre = if target.pre.is_empty() {
            Ordering::Equal
        } else {
            Ordering::Greater
        };
        return Some(ord.then(pre));
    }
    parse_semver(attr).map(|a| a.cmp_precedence(target))
}

/// `MAJOR.MINOR.PATCH` with nothing after it, or `None` for anything else
/// (which then takes the full parser). Accepts only what `semver` accepts:
/// no leading zeros, numbers that fit `u64`.
fn plain_version(s: &str) -> Option<(u64, u64, u64)> {
    // One pass: `number` is the number being read, `digits` its length;
    // at each dot the numbers read so far shift left.
    let (mut major, mut minor, mut number) = (0u64, 0u64, 0u64);
    let (mut dots, mut digits) = (0u32, 0u32);
    for &b in s.as_bytes() {
        if b.is_ascii_digit() {
            if digits == 1 && number == 0 {
                return None; // a leading zero
            }
            number = number.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            digits += 1;
        } else if b == b'.' && digits > 0 && dots < 2 {
            (major, minor, number) = (minor, number, 0);
            dots += 1;
            digits = 0;
        } else {
            return None;
        }
    }
    (dots == 2 && digits > 0).then_some((major, minor, number))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_versions_are_read_and_others_left_to_the_parser() {
        type Numbers = Option<(u64, u64, u64)>;
        let cases: &[(&str, Numbers)] = &[
            ("0.0.0", Some((0, 0, 0))),
            ("2.6.12", Some((2, 6, 12))),
            ("10.4.1", Some((10, 4, 1))),
            ("18446744073709551615.0.1", Some((u64::MAX, 0, 1))),
            ("18446744073709551616.0.1", None),
            ("01.2.3", None),
            ("1.02.3", None),
            ("1.2.03", None),
            ("1..3", None),
            ("1.2.", None),
            (".1.2", None),
            ("1.2.3.4", None),
            ("1.2.3-rc.1", None),
            ("1.2.3+build", None),
            ("1.2.x", None),
            ("١.٢.٣", None),
        ];
        for (s, expected) in cases {
            assert_eq!(plain_version(s), *expected, "{s:?}");
        }
    }

    proptest! {
        /// The fast path accepts exactly the plain versions `semver` accepts,
        /// with the same numbers.
        #[test]
        fn plain_version_agrees_with_semver(s in "[0-9.]{0,12}|[0-9]{1,22}\\.[0-9]{1,3}\\.[0-9]{1,3}|0[0-9]\\.1\\.2|[0-9./:\\-a+ ]{5,8}") {
            let full = semver::Version::parse(&s).ok();
            let plain = full.as_ref().map(|v| (v.major, v.minor, v.patch));
            prop_assert_eq!(plain_version(&s), plain);
        }

        /// The fast path and the full parser rank versions alike.
        #[test]
        fn precedence_agrees_with_semver(
            attr in "v?[0-9]{1,2}\\.[0-9]{1,2}\\.[0-9]{1,2}(-(rc|alpha|[0-9]{1,2})(\\.[0-9]{1,2})?)?(\\+[a-z0-9]{1,4})?",
            target in "[0-9]{1,2}\\.[0-9]{1,2}\\.[0-9]{1,2}(-(rc|alpha|[0-9]{1,2}))?",
        ) {
            let target = semver::Version::parse(&target).map_err(|e| TestCaseError::reject(e.to_string()))?;
            let expected = parse_semver(&attr).map(|a| a.cmp_precedence(&target));
            prop_assert_eq!(semver_precedence(&attr, &target), expected);
        }
    }
}
