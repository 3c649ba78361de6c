//! Discrete noise schedules as pure functions of their parameters, each validated and each
//! tested against its closed form.
//!
//! σ lists are returned largest first (the order in which samplers visit them); β lists in
//! forward-process order (t = 1 … N).

use crate::error::{CoreError, Result, ensure_positive, ensure_steps};

fn check_sigmas(sigma_min: f64, sigma_max: f64) -> Result<()> {
    if sigma_min.is_finite() && sigma_max.is_finite() && 0.0 < sigma_min && sigma_min < sigma_max {
        Ok(())
    } else {
        Err(CoreError::InvalidSchedule {
            sigma_min,
            sigma_max,
        })
    }
}

/// NCSN's geometric noise levels (Song & Ermon 2019, §4.2): `σ_i = σ_max · (σ_min/σ_max)^{i/(n−1)}`,
/// `i = 0 … n−1`, largest first.
///
/// ```
/// let s = score_core::schedule::geometric_sigmas(0.01, 1.0, 3).unwrap();
/// assert!((s[1] - 0.1).abs() < 1e-12);
/// ```
pub fn geometric_sigmas(sigma_min: f64, sigma_max: f64, n: usize) -> Result<Vec<f64>> {
    check_sigmas(sigma_min, sigma_max)?;
    ensure_steps("geometric sigma schedule", n, 2)?;
    let log_ratio = (sigma_min / sigma_max).ln();
    Ok((0..n)
        .map(|i| sigma_max * (log_ratio * i as f64 / (n - 1) as f64).exp())
        .collect())
}

/// DDPM's linear β schedule (Ho et al. 2020, §4): `n` values evenly spaced from `beta_start` to
/// `beta_end` (1e-4 → 0.02 over 1000 steps in the paper).
///
/// ```
/// let b = score_core::schedule::linear_betas(1e-4, 0.02, 1000).unwrap();
/// assert_eq!(b.len(), 1000);
/// assert!((b[999] - 0.02).abs() < 1e-15);
/// ```
pub fn linear_betas(beta_start: f64, beta_end: f64, n: usize) -> Result<Vec<f64>> {
    if !(beta_start.is_finite()
        && beta_end.is_finite()
        && 0.0 < beta_start
        && beta_start <= beta_end
        && beta_end < 1.0)
    {
        return Err(CoreError::InvalidBetas {
            beta_min: beta_start,
            beta_max: beta_end,
            discrete: true,
        });
    }
    ensure_steps("linear beta schedule", n, 2)?;
    let step = (beta_end - beta_start) / (n - 1) as f64;
    Ok((0..n).map(|i| beta_start + step * i as f64).collect())
}

/// The continuous time at which a network sees DDPM's step `i ∈ {0, …, n−1}` (0-based: `x_i`
/// carries the noise of `i + 1` forward steps, `ᾱ_i = Π_{j≤i}(1 − β_j)`): `t_i = (i + 1)/n`.
///
/// One convention for the whole workspace: score-train's `DdpmLoss` trains at these times and
/// score-sample's DDPM sampler queries at them. It lies in `(0, 1]`, so a noise-parameterised
/// model on the VP SDE never divides by `σ(0) = 0`, and the VP SDE whose discretisation gives
/// these betas has nearly the marginal `ᾱ_i` at `t_i`.
///
/// ```
/// use score_core::schedule::{ddpm_step, ddpm_time};
/// assert_eq!(ddpm_time(0, 1000), 1e-3);
/// assert_eq!(ddpm_time(999, 1000), 1.0);
/// assert_eq!(ddpm_step(ddpm_time(417, 1000), 1000), 417);
/// ```
pub fn ddpm_time(i: usize, n: usize) -> f64 {
    (i + 1) as f64 / n as f64
}

/// The step `i` whose [`ddpm_time`] is nearest to `t` (clamped to `0..n`).
pub fn ddpm_step(t: f64, n: usize) -> usize {
    ((t * n as f64).round().max(1.0) as usize).min(n) - 1
}

/// Largest β the cosine schedule allows; Nichol & Dhariwal clip at 0.999 to avoid a singularity
/// at the end of the process.
pub const COSINE_MAX_BETA: f64 = 0.999;

/// The cosine schedule of Nichol & Dhariwal 2021 (eq. 17): `ᾱ(t) = f(t)/f(0)` with
/// `f(t) = cos²(((t/n) + s)/(1 + s) · π/2)`, `β_t = min(1 − ᾱ(t)/ᾱ(t−1), 0.999)`.
///
/// Every ratio is formed in floating point, so no β can collapse to zero through integer division.
/// `s = 0.008` in the paper.
///
/// ```
/// let b = score_core::schedule::cosine_betas(1000, 0.008).unwrap();
/// assert!(b.iter().all(|&x| 0.0 < x && x < 1.0));
/// ```
pub fn cosine_betas(n: usize, s: f64) -> Result<Vec<f64>> {
    ensure_steps("cosine beta schedule", n, 1)?;
    ensure_positive("cosine offset s", s)?;
    let f = |t: f64| {
        let c = ((t / n as f64 + s) / (1.0 + s) * std::f64::consts::FRAC_PI_2).cos();
        c * c
    };
    Ok((1..=n)
        .map(|i| {
            let ratio = f(i as f64) / f((i - 1) as f64);
            (1.0 - ratio).min(COSINE_MAX_BETA)
        })
        .collect())
}

/// Karras et al. 2022 (eq. 5) noise levels: `σ_i = (σ_max^{1/ρ} + i/(n−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ`,
/// largest first (`ρ = 7` in the paper). Unlike k-diffusion no trailing zero is appended: a
/// sampler adds its own final step.
///
/// ```
/// let s = score_core::schedule::karras_sigmas(0.002, 80.0, 7.0, 10).unwrap();
/// assert!((s[0] - 80.0).abs() < 1e-9 && (s[9] - 0.002).abs() < 1e-12);
/// ```
pub fn karras_sigmas(sigma_min: f64, sigma_max: f64, rho: f64, n: usize) -> Result<Vec<f64>> {
    check_sigmas(sigma_min, sigma_max)?;
    ensure_positive("karras rho", rho)?;
    ensure_steps("karras sigma schedule", n, 2)?;
    let (lo, hi) = (sigma_min.powf(1.0 / rho), sigma_max.powf(1.0 / rho));
    Ok((0..n)
        .map(|i| (hi + i as f64 / (n - 1) as f64 * (lo - hi)).powf(rho))
        .collect())
}

/// Cumulative products `ᾱ_t = Π_{s≤t} (1 − β_s)`, accumulated in log space so that long
/// schedules lose no precision.
pub fn alphas_cumprod(betas: &[f64]) -> Vec<f64> {
    let mut log_acc = 0.0;
    betas
        .iter()
        .map(|&b| {
            log_acc += (-b).ln_1p();
            log_acc.exp()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn geometric_matches_closed_form() {
        let s = geometric_sigmas(0.01, 50.0, 11).unwrap();
        assert_relative_eq!(s[0], 50.0, max_relative = 1e-14);
        assert_relative_eq!(s[10], 0.01, max_relative = 1e-12);
        // Consecutive ratios are constant: (σ_min/σ_max)^(1/10).
        let r = (0.01f64 / 50.0).powf(0.1);
        for w in s.windows(2) {
            assert_relative_eq!(w[1] / w[0], r, max_relative = 1e-12);
        }
    }

    #[test]
    fn linear_matches_ddpm() {
        let b = linear_betas(1e-4, 0.02, 1000).unwrap();
        assert_relative_eq!(b[0], 1e-4);
        for i in [1usize, 17, 500, 998] {
            assert_relative_eq!(
                b[i],
                1e-4 + (0.02 - 1e-4) * i as f64 / 999.0,
                max_relative = 1e-12
            );
        }
    }

    #[test]
    fn cosine_matches_closed_form_and_stays_in_unit_interval() {
        let n = 1000;
        let b = cosine_betas(n, 0.008).unwrap();
        let f = |t: f64| {
            ((t / n as f64 + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
                .cos()
                .powi(2)
        };
        for i in [1usize, 10, 500, 999] {
            let expect = (1.0 - f(i as f64) / f(i as f64 - 1.0)).min(0.999);
            assert_relative_eq!(b[i - 1], expect, max_relative = 1e-12);
        }
        assert!(
            b.iter().all(|&x| x > 0.0 && x < 1.0),
            "every cosine beta lies in (0,1)"
        );
        // The integer-division bug yields mostly zeros; here even the first beta is clearly positive.
        assert!(b[0] > 1e-5, "first beta {}", b[0]);
        assert_eq!(*b.last().unwrap(), COSINE_MAX_BETA, "last beta is clipped");
        // ᾱ recovered from the betas equals f(t)/f(0) wherever no clipping happened.
        let abar = alphas_cumprod(&b);
        assert_relative_eq!(abar[499], f(500.0) / f(0.0), max_relative = 1e-10);
    }

    #[test]
    fn karras_matches_closed_form() {
        let s = karras_sigmas(0.002, 80.0, 7.0, 5).unwrap();
        let (lo, hi) = (0.002f64.powf(1.0 / 7.0), 80f64.powf(1.0 / 7.0));
        for (i, &v) in s.iter().enumerate() {
            assert_relative_eq!(
                v,
                (hi + i as f64 / 4.0 * (lo - hi)).powi(7),
                max_relative = 1e-12
            );
        }
        assert!(s.windows(2).all(|w| w[0] > w[1]));
    }

    #[test]
    fn alphas_cumprod_matches_direct_product() {
        let b = linear_betas(1e-4, 0.02, 50).unwrap();
        let a = alphas_cumprod(&b);
        let direct: f64 = b.iter().map(|x| 1.0 - x).product();
        assert_relative_eq!(a[49], direct, max_relative = 1e-12);
    }

    #[test]
    fn invalid_inputs_are_rejected_with_values() {
        assert_eq!(
            geometric_sigmas(1.0, 0.5, 10),
            Err(CoreError::InvalidSchedule {
                sigma_min: 1.0,
                sigma_max: 0.5
            })
        );
        assert!(matches!(
            karras_sigmas(-1.0, 80.0, 7.0, 10),
            Err(CoreError::InvalidSchedule { sigma_min, .. }) if sigma_min == -1.0
        ));
        assert_eq!(
            karras_sigmas(0.1, 80.0, 0.0, 10),
            Err(CoreError::NonPositive {
                name: "karras rho",
                value: 0.0
            })
        );
        assert_eq!(
            linear_betas(0.02, 1e-4, 10),
            Err(CoreError::InvalidBetas {
                beta_min: 0.02,
                beta_max: 1e-4,
                discrete: true
            })
        );
        assert!(matches!(
            linear_betas(1e-4, 1.5, 10),
            Err(CoreError::InvalidBetas { .. })
        ));
        assert_eq!(
            geometric_sigmas(0.01, 1.0, 1),
            Err(CoreError::TooFewSteps {
                what: "geometric sigma schedule",
                min: 2,
                got: 1
            })
        );
        assert!(matches!(
            cosine_betas(0, 0.008),
            Err(CoreError::TooFewSteps { got: 0, .. })
        ));
        assert!(matches!(
            cosine_betas(10, f64::NAN),
            Err(CoreError::NonPositive { .. })
        ));
        let msg = geometric_sigmas(1.0, 0.5, 10).unwrap_err().to_string();
        assert!(
            msg.contains("sigma_min = 1") && msg.contains("sigma_max = 0.5"),
            "{msg}"
        );
    }
}
