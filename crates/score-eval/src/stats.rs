//! The small amount of distribution theory that acceptance bounds need: normal tails and
//! quantiles, chi-square quantiles, exact binomial acceptance intervals, and the Monte Carlo
//! test threshold from replicates of a statistic under the null.

use crate::error::{EvalError, Result, positive, probability};

const SQRT_PI: f64 = 1.772_453_850_905_516;

/// The complementary error function `erfc(x) = 2/√π ∫ₓ^∞ e^{−u²} du`, to ~1e-15 relative
/// accuracy: the series `erf(x) = 2x/√π·e^{−x²}·Σ (2x²)ⁿ/(1·3·…·(2n+1))` (positive terms, no
/// cancellation) below 2.5, the continued fraction `erfc(x) = e^{−x²}/√π · 1/(x + ½/(x + 1/(x +
/// 3/2/(x + …))))` above (Abramowitz & Stegun 7.1.6 and 7.1.14).
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    if x < 2.5 {
        let x2 = x * x;
        let (mut term, mut sum, mut n) = (x, x, 0.0);
        while term > 1e-17 * sum {
            n += 1.0;
            term *= 2.0 * x2 / (2.0 * n + 1.0);
            sum += term;
        }
        1.0 - 2.0 / SQRT_PI * (-x2).exp() * sum
    } else {
        let mut t = x;
        for k in (1..=120).rev() {
            t = x + 0.5 * k as f64 / t;
        }
        (-x * x).exp() / SQRT_PI / t
    }
}

/// `P(Z > x)` for a standard normal `Z` (accurate in the far tail, where `1 − Φ(x)` is not).
pub fn normal_sf(x: f64) -> f64 {
    0.5 * erfc(x / std::f64::consts::SQRT_2)
}

/// `Φ(x) = P(Z ≤ x)` for a standard normal `Z`.
pub fn normal_cdf(x: f64) -> f64 {
    normal_sf(-x)
}

/// `Φ⁻¹(p)`, `p ∈ (0, 1)`: Acklam's rational approximation refined by two Halley steps on
/// [`normal_cdf`] (relative error ~1e-15). For an upper tail probability `q` use
/// `-normal_quantile(q)`, which stays accurate where `1 − q` would round.
pub fn normal_quantile(p: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) {
        return match p {
            0.0 => f64::NEG_INFINITY,
            1.0 => f64::INFINITY,
            _ => f64::NAN,
        };
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        let r = (-2.0 * q.ln()).sqrt();
        (((((C[0] * r + C[1]) * r + C[2]) * r + C[3]) * r + C[4]) * r + C[5])
            / ((((D[0] * r + D[1]) * r + D[2]) * r + D[3]) * r + 1.0)
    };
    let mut x = if p < 0.024_25 {
        tail(p)
    } else if p > 1.0 - 0.024_25 {
        -tail(1.0 - p)
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    };
    for _ in 0..2 {
        // Halley's step on Φ(x) − p, with the error taken from the nearer tail.
        let e = if x < 0.0 {
            normal_cdf(x) - p
        } else {
            (1.0 - p) - normal_sf(x)
        };
        let u = e * (2.0 * std::f64::consts::PI).sqrt() * (0.5 * x * x).exp();
        x -= u / (1.0 + 0.5 * x * u);
    }
    x
}

/// The `p`-quantile of the chi-square law with `df` degrees of freedom by the Wilson–Hilferty
/// cube-root normal approximation, `df·(1 − 2/(9df) + z·√(2/(9df)))³` with `z = Φ⁻¹(p)`. Its
/// relative error is below 1e-3 for `df ≥ 100` and tail probabilities down to 1e-6, which is
/// what sample-variance bounds at hundreds of points need.
pub fn chi_square_quantile(p: f64, df: f64) -> Result<f64> {
    probability("p", p)?;
    positive("df", df)?;
    let c = 2.0 / (9.0 * df);
    let z = if p > 0.5 {
        -normal_quantile(1.0 - p)
    } else {
        normal_quantile(p)
    };
    Ok(df * (1.0 - c + z * c.sqrt()).powi(3).max(0.0))
}

/// `ln k!` for `k = 0..=n`.
fn ln_factorials(n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n + 1);
    let mut acc = 0.0;
    out.push(0.0);
    for k in 1..=n {
        acc += (k as f64).ln();
        out.push(acc);
    }
    out
}

/// The probabilities `P(X = k)`, `k = 0..=n`, of `X ~ Binomial(n, p)`.
pub fn binomial_pmf(n: usize, p: f64) -> Result<Vec<f64>> {
    probability("p", p)?;
    let lf = ln_factorials(n);
    let (lp, lq) = (p.ln(), (-p).ln_1p());
    Ok((0..=n)
        .map(|k| (lf[n] - lf[k] - lf[n - k] + k as f64 * lp + (n - k) as f64 * lq).exp())
        .collect())
}

/// The equal-tailed acceptance interval `[lo, hi]` of `X ~ Binomial(n, p)` at level `alpha`:
/// the largest `lo` with `P(X < lo) ≤ α/2` and the smallest `hi` with `P(X > hi) ≤ α/2`, so that
/// `P(X ∉ [lo, hi]) ≤ α` exactly (no normal approximation).
///
/// ```
/// // Binomial(10, ½): P(X ≤ 1) = 11/1024 ≈ 0.0107, P(X ≤ 2) = 56/1024 ≈ 0.055.
/// let (lo, hi) = score_eval::binomial_interval(10, 0.5, 0.05).unwrap();
/// assert_eq!((lo, hi), (2, 8));
/// ```
pub fn binomial_interval(n: usize, p: f64, alpha: f64) -> Result<(usize, usize)> {
    probability("alpha", alpha)?;
    let pmf = binomial_pmf(n, p)?;
    // Tails summed from their ends, so small tail probabilities keep their precision.
    let mut lo = 0;
    let mut below = 0.0; // P(X < lo)
    while lo < n && below + pmf[lo] <= alpha / 2.0 {
        below += pmf[lo];
        lo += 1;
    }
    let mut hi = n;
    let mut above = 0.0; // P(X > hi)
    while hi > 0 && above + pmf[hi] <= alpha / 2.0 {
        above += pmf[hi];
        hi -= 1;
    }
    Ok((lo, hi))
}

/// The threshold of a one-sided Monte Carlo test (Barnard 1963; Davison & Hinkley 1997, §4.2)
/// at level `alpha` from `B` replicates of the statistic under the null: the `k`-th smallest
/// replicate with `k = B + 1 − ⌊α(B + 1)⌋`. If the observed statistic is exchangeable with the
/// replicates under the null (drawn the same way, independently given whatever they share), it
/// exceeds this threshold with probability `⌊α(B + 1)⌋/(B + 1) ≤ α`, whatever the law of the
/// statistic. Needs `B ≥ (1 − α)/α` replicates ([`EvalError::TooFewReplicates`] otherwise).
///
/// ```
/// // 19 replicates resolve α = 0.05: the threshold is their maximum.
/// let reps: Vec<f64> = (0..19).map(|i| i as f64).collect();
/// assert_eq!(score_eval::monte_carlo_threshold(&reps, 0.05).unwrap(), 18.0);
/// assert!(score_eval::monte_carlo_threshold(&reps[..18], 0.05).is_err());
/// ```
pub fn monte_carlo_threshold(replicates: &[f64], alpha: f64) -> Result<f64> {
    probability("alpha", alpha)?;
    let b = replicates.len();
    // ⌊α(B + 1)⌋ with a relative nudge, so that α(B + 1) = 1 computed as 0.999… still counts.
    let j = (alpha * (b + 1) as f64 * (1.0 + 1e-12)).floor() as usize;
    if j == 0 {
        return Err(EvalError::TooFewReplicates {
            alpha,
            needed: monte_carlo_replicates(alpha),
            got: b,
        });
    }
    if let Some((index, &value)) = replicates.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(EvalError::NonFinite {
            what: "Monte Carlo replicates",
            index,
            value,
        });
    }
    let mut sorted = replicates.to_vec();
    sorted.sort_by(f64::total_cmp);
    Ok(sorted[b - j])
}

/// The smallest number of replicates [`monte_carlo_threshold`] accepts at level `alpha`:
/// `⌈(1 − α)/α⌉`.
pub fn monte_carlo_replicates(alpha: f64) -> usize {
    ((1.0 - alpha) / alpha * (1.0 - 1e-12)).ceil() as usize
}

/// The Monte Carlo p-value `(1 + #{replicates ≥ t})/(B + 1)` of an observed statistic `t`.
pub fn monte_carlo_p_value(replicates: &[f64], t: f64) -> f64 {
    let above = replicates.iter().filter(|&&r| r >= t).count();
    (1 + above) as f64 / (replicates.len() + 1) as f64
}

/// The exact (Clopper–Pearson) `1 − alpha` confidence interval of a binomial proportion after
/// `k` successes in `n` trials: the `p` for which `P(X ≥ k) = α/2` and `P(X ≤ k) = α/2` under
/// `X ~ Binomial(n, p)` (0 and 1 at the ends), found by bisection on [`binomial_pmf`]'s tails.
///
/// ```
/// // No success in 10 trials: the upper end solves (1 − p)¹⁰ = 0.025.
/// let (lo, hi) = score_eval::stats::clopper_pearson(0, 10, 0.05).unwrap();
/// assert_eq!(lo, 0.0);
/// assert!((hi - (1.0 - 0.025f64.powf(0.1))).abs() < 1e-12);
/// ```
///
/// # Errors
/// [`EvalError::InvalidParameter`] for `alpha` outside `(0, 1)`, `n = 0` or `k > n`.
pub fn clopper_pearson(k: usize, n: usize, alpha: f64) -> Result<(f64, f64)> {
    probability("alpha", alpha)?;
    if n == 0 || k > n {
        return Err(EvalError::InvalidParameter {
            name: "k",
            value: k as f64,
            reason: "needs n > 0 trials and k <= n successes",
        });
    }
    // The p in (0, 1) where `above(p)` switches from false to true (bisection to rounding).
    let solve = |above: &dyn Fn(f64) -> bool| {
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if mid <= lo || mid >= hi {
                break;
            }
            if above(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        0.5 * (lo + hi)
    };
    // Tails summed from their far ends, as in `binomial_interval`; P(X ≥ k) grows with p,
    // P(X ≤ k) falls.
    let tail = |p: f64, upper: bool| -> f64 {
        binomial_pmf(n, p).map_or(f64::NAN, |pmf| {
            if upper {
                pmf[k..].iter().rev().sum()
            } else {
                pmf[..=k].iter().sum()
            }
        })
    };
    let lo = if k == 0 {
        0.0
    } else {
        solve(&|p| tail(p, true) >= alpha / 2.0)
    };
    let hi = if k == n {
        1.0
    } else {
        solve(&|p| tail(p, false) <= alpha / 2.0)
    };
    Ok((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn erfc_matches_reference_values() {
        // Reference values from the closed forms' tables (Abramowitz & Stegun 7.1, to 16 digits).
        for (x, want) in [
            (0.0, 1.0),
            (0.5, 0.479_500_122_186_953_5),
            (1.0, 0.157_299_207_050_285_1),
            (2.0, 4.677_734_981_047_266e-3),
            (2.5, 4.069_520_174_449_59e-4),
            (3.0, 2.209_049_699_858_544e-5),
            (5.0, 1.537_459_794_428_035e-12),
            (-1.0, 1.842_700_792_949_715),
        ] {
            assert_relative_eq!(erfc(x), want, max_relative = 1e-13);
        }
    }

    #[test]
    fn normal_quantile_inverts_the_cdf() {
        assert_relative_eq!(
            normal_quantile(0.975),
            1.959_963_984_540_054,
            epsilon = 1e-13
        );
        assert_relative_eq!(normal_quantile(0.5), 0.0, epsilon = 1e-15);
        assert_relative_eq!(
            normal_quantile(1e-10),
            -6.361_340_902_404_056,
            epsilon = 1e-10
        );
        for p in [1e-12, 1e-6, 0.001, 0.02, 0.3, 0.7, 0.99, 0.999_999] {
            let x = normal_quantile(p);
            let back = if x < 0.0 {
                normal_cdf(x)
            } else {
                1.0 - normal_sf(x)
            };
            assert_relative_eq!(back, p, max_relative = 1e-12);
        }
        assert_eq!(normal_quantile(0.0), f64::NEG_INFINITY);
        assert!(normal_quantile(1.5).is_nan());
    }

    #[test]
    fn chi_square_quantiles_match_tables() {
        // χ²₀.₉₉₉(100) = 149.449, χ²₀.₀₀₁(100) = 61.918, χ²₀.₉₉(1000) = 1106.969 (standard
        // tables).
        assert_relative_eq!(
            chi_square_quantile(0.999, 100.0).unwrap(),
            149.449,
            max_relative = 1e-3
        );
        assert_relative_eq!(
            chi_square_quantile(0.001, 100.0).unwrap(),
            61.918,
            max_relative = 1e-3
        );
        assert_relative_eq!(
            chi_square_quantile(0.99, 1000.0).unwrap(),
            1106.969,
            max_relative = 1e-4
        );
        assert!(chi_square_quantile(1.0, 10.0).is_err());
    }

    #[test]
    fn binomial_intervals_are_exact() {
        let pmf = binomial_pmf(40, 0.3).unwrap();
        assert_relative_eq!(pmf.iter().sum::<f64>(), 1.0, epsilon = 1e-12);
        assert_relative_eq!(pmf[0], 0.7f64.powi(40), max_relative = 1e-12);
        for (n, p, alpha) in [(40, 0.3, 0.05), (2000, 0.125, 1e-4), (7, 0.5, 0.2)] {
            let pmf = binomial_pmf(n, p).unwrap();
            let (lo, hi) = binomial_interval(n, p, alpha).unwrap();
            let below: f64 = pmf[..lo].iter().sum();
            let above: f64 = pmf[hi + 1..].iter().sum();
            // Each tail within α/2, and one more value on either side would break it.
            assert!(below <= alpha / 2.0 && above <= alpha / 2.0);
            assert!(below + pmf[lo] > alpha / 2.0 && above + pmf[hi] > alpha / 2.0);
        }
    }

    #[test]
    fn monte_carlo_thresholds_hold_their_level() {
        // Exchangeability: the observed statistic is equally likely to take any rank among the
        // B + 1 values, so with B = 99 and α = 0.05 it exceeds the 95th smallest replicate in
        // exactly 5 of the 100 rank positions.
        let reps: Vec<f64> = (0..99).map(|i| (i as f64 * 0.37).sin()).collect();
        let t = monte_carlo_threshold(&reps, 0.05).unwrap();
        let mut all = reps.clone();
        all.push(f64::INFINITY);
        all.sort_by(f64::total_cmp);
        let rejected = all.iter().filter(|&&v| v > t).count();
        assert_eq!(rejected, 5);
        assert_eq!(monte_carlo_replicates(0.05), 19);
        assert_eq!(monte_carlo_replicates(0.001), 999);
        assert!(matches!(
            monte_carlo_threshold(&reps[..10], 0.05),
            Err(EvalError::TooFewReplicates {
                needed: 19,
                got: 10,
                ..
            })
        ));
        assert_relative_eq!(monte_carlo_p_value(&reps, f64::INFINITY), 0.01);
        assert_relative_eq!(monte_carlo_p_value(&reps, f64::NEG_INFINITY), 1.0);
    }
}
