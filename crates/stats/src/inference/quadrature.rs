//! Adaptive Gauss–Kronrod quadrature (the 7-point Gauss and 15-point Kronrod
//! pair of QUADPACK's `qk15`), for the integrals of P(best) and the
//! beta–binomial chance to beat control.
//!
//! Written here because none of the crate's allowed dependencies integrates
//! numerically, and the method is short and standard: each panel is
//! integrated with both rules; where they differ by more than the panel's
//! share of the tolerance, the panel is halved. The integrands here are
//! smooth (densities times distribution functions), for which the 15-point
//! rule is exact to degree 22 and the error estimate `|K15 − G7|` is very
//! pessimistic.

/// Kronrod nodes on [−1, 1] (the non-negative half, descending); the odd
/// indices are the 7-point Gauss nodes.
const NODES: [f64; 8] = [
    0.991_455_371_120_812_6,
    0.949_107_912_342_758_5,
    0.864_864_423_359_769_1,
    0.741_531_185_599_394_4,
    0.586_087_235_467_691_1,
    0.405_845_151_377_397_2,
    0.207_784_955_007_898_5,
    0.0,
];

/// Kronrod weights for [`NODES`].
const KRONROD_WEIGHTS: [f64; 8] = [
    0.022_935_322_010_529_22,
    0.063_092_092_629_978_55,
    0.104_790_010_322_250_18,
    0.140_653_259_715_525_92,
    0.169_004_726_639_267_9,
    0.190_350_578_064_785_4,
    0.204_432_940_075_298_9,
    0.209_482_141_084_727_83,
];

/// Gauss weights for `NODES[1]`, `NODES[3]`, `NODES[5]`, `NODES[7]`.
const GAUSS_WEIGHTS: [f64; 4] = [
    0.129_484_966_168_869_7,
    0.279_705_391_489_276_7,
    0.381_830_050_505_118_9,
    0.417_959_183_673_469_4,
];

/// Panels the range is first cut into, so that a narrow peak cannot fall
/// between the nodes of a single panel.
const INITIAL_PANELS: usize = 16;

/// Deepest halving of a panel (a panel 2⁻⁴⁰ of its initial width).
const MAX_DEPTH: u32 = 40;

/// ∫ₐᵇ f(x) dx to within about `tolerance` (absolute), for smooth `f`.
pub(crate) fn integrate(f: impl Fn(f64) -> f64, a: f64, b: f64, tolerance: f64) -> f64 {
    if b <= a {
        return 0.0;
    }
    let width = (b - a) / INITIAL_PANELS as f64;
    let panel_tolerance = tolerance / INITIAL_PANELS as f64;
    (0..INITIAL_PANELS)
        .map(|i| {
            let lo = a + width * i as f64;
            let hi = if i + 1 == INITIAL_PANELS {
                b
            } else {
                lo + width
            };
            adaptive(&f, lo, hi, panel_tolerance, 0)
        })
        .sum()
}

fn adaptive(f: &impl Fn(f64) -> f64, a: f64, b: f64, tolerance: f64, depth: u32) -> f64 {
    let (kronrod, gauss) = kronrod_gauss(f, a, b);
    if (kronrod - gauss).abs() <= tolerance || depth >= MAX_DEPTH {
        return kronrod;
    }
    let mid = a + (b - a) / 2.0;
    adaptive(f, a, mid, tolerance / 2.0, depth + 1)
        + adaptive(f, mid, b, tolerance / 2.0, depth + 1)
}

/// The 15-point Kronrod and 7-point Gauss estimates of ∫ₐᵇ f.
fn kronrod_gauss(f: &impl Fn(f64) -> f64, a: f64, b: f64) -> (f64, f64) {
    let centre = (a + b) / 2.0;
    let half = (b - a) / 2.0;
    let mut kronrod = 0.0;
    let mut gauss = 0.0;
    for (i, (&node, &weight)) in NODES.iter().zip(&KRONROD_WEIGHTS).enumerate() {
        let values = if node == 0.0 {
            f(centre)
        } else {
            f(centre - half * node) + f(centre + half * node)
        };
        kronrod += weight * values;
        if i % 2 == 1 {
            gauss += GAUSS_WEIGHTS[i / 2] * values;
        }
    }
    (kronrod * half, gauss * half)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rules are exact for polynomials up to their degree: 22 for
    /// Kronrod, 13 for Gauss. This pins the constants.
    #[test]
    fn the_rules_integrate_polynomials_exactly() {
        for degree in 0..=22 {
            let (kronrod, gauss) = kronrod_gauss(&|x: f64| x.powi(degree), -1.0, 1.0);
            let exact = if degree % 2 == 0 {
                2.0 / f64::from(degree + 1)
            } else {
                0.0
            };
            assert!(
                (kronrod - exact).abs() < 1e-15,
                "Kronrod, degree {degree}: {kronrod} vs {exact}"
            );
            if degree <= 13 {
                assert!(
                    (gauss - exact).abs() < 1e-15,
                    "Gauss, degree {degree}: {gauss} vs {exact}"
                );
            }
        }
    }

    #[test]
    fn a_narrow_peak_is_found() {
        // A normal density of sd 1e-4 at 0.3, integrated over [0, 1].
        let sd = 1e-4;
        let density = |x: f64| {
            let z = (x - 0.3) / sd;
            (-0.5 * z * z).exp() / (sd * (2.0 * std::f64::consts::PI).sqrt())
        };
        let integral = integrate(density, 0.29, 0.31, 1e-12);
        assert!((integral - 1.0).abs() < 1e-11, "{integral}");
    }
}
