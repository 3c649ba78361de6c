//! Probability-flow likelihoods against exact log-densities (score-core's diffused mixtures):
//! the exact-divergence path, the Hutchinson estimator's per-sample errors against its known
//! law, and bits per dimension of dequantised images.
//!
//! The Hutchinson oracle. With probes `v_k` held fixed along the path, the state `x_t` does not
//! depend on the probes, so probe `k`'s estimate differs from the exact one by
//! `v_kᵀ M v_k − tr M` with `M = −½∫_ε^T g(t)²·∇²log p_t(x_t) dt`, the Hessian of the exact
//! log-density integrated along the exact trajectory. `M` is computed here on the host (f64,
//! RK4 with 2000 steps along the same ODE), which gives each sample's error law exactly:
//!
//! - Rademacher probes in 2-D: `vᵀMv − tr M = 2M₁₂·v₁v₂ = ±2M₁₂`, so the mean over `K` probes
//!   has standard error `2|M₁₂|/√K`, and the estimator's own standard error (the probes'
//!   sample standard deviation over `√K`) can never exceed `2|M₁₂|/√(K − 1)`;
//! - Gaussian probes: `vᵀMv − tr M = Σ_j λ_j(w_j² − 1)` with `λ` the eigenvalues of `M` and
//!   `w ~ N(0, I)`, so the mean over `K` probes is `Σ_j λ_j(C_j/K − 1)` with independent
//!   `C_j ~ χ²_K`, standard error `√(2Σλ_j²/K)`.

mod common;

use burn::tensor::Tensor;
use common::*;
use score_core::{Diffused, GaussianMixture, NoiseKey, NoiseSource, Sde, VpSde, tensor::to_f64};
use score_eval::normal_quantile;
use score_sample::testing::ring;
use score_sample::*;

const EPS: f64 = 1e-5;

/// `∇²log p(x)` of a diagonal mixture in 2-D: `Σ_k r_k(−diag(1/v_k) + s_k s_kᵀ) − s sᵀ`, with
/// responsibilities `r_k`, component scores `s_k = −(x − μ_k)/v_k` and `s = Σ_k r_k s_k`.
fn hessian(p: &GaussianMixture, x: &[f64]) -> [[f64; 2]; 2] {
    let lp: Vec<f64> = (0..p.n_components())
        .map(|k| {
            let (mu, v) = (&p.means()[k], &p.variances()[k]);
            p.weights()[k].ln()
                - 0.5
                    * (0..2)
                        .map(|j| (x[j] - mu[j]).powi(2) / v[j] + v[j].ln())
                        .sum::<f64>()
        })
        .collect();
    let max = lp.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = lp.iter().map(|l| (l - max).exp()).sum();
    let mut h = [[0.0; 2]; 2];
    let mut s = [0.0; 2];
    for (k, l) in lp.iter().enumerate() {
        let r = (l - max).exp() / z;
        let (mu, v) = (&p.means()[k], &p.variances()[k]);
        let sk = [-(x[0] - mu[0]) / v[0], -(x[1] - mu[1]) / v[1]];
        for i in 0..2 {
            s[i] += r * sk[i];
            h[i][i] -= r / v[i];
            for j in 0..2 {
                h[i][j] += r * sk[i] * sk[j];
            }
        }
    }
    for i in 0..2 {
        for j in 0..2 {
            h[i][j] -= s[i] * s[j];
        }
    }
    h
}

/// `M = −½∫_ε^T g²·∇²log p_t(x_t) dt` along the exact probability-flow path from `x` (host RK4
/// in f64; the state and the three entries of the symmetric `M` integrated together).
fn probe_matrix(target: &Diffused<VpSde>, x: &[f64], steps: usize) -> [[f64; 2]; 2] {
    let sde = target.sde();
    let rhs = |t: f64, y: &[f64; 5]| -> [f64; 5] {
        let p = target.at(t).unwrap();
        let s = p.score_f64(&y[..2]);
        let (f, g) = (sde.drift_coef(t), sde.diffusion(t));
        let h = hessian(&p, &y[..2]);
        let c = -0.5 * g * g;
        [
            f * y[0] + c * s[0],
            f * y[1] + c * s[1],
            c * h[0][0],
            c * h[0][1],
            c * h[1][1],
        ]
    };
    let mut y = [x[0], x[1], 0.0, 0.0, 0.0];
    let dt = (sde.t_max() - EPS) / steps as f64;
    for i in 0..steps {
        let t = EPS + i as f64 * dt;
        let add = |a: &[f64; 5], b: &[f64; 5], c: f64| std::array::from_fn(|j| a[j] + c * b[j]);
        let k1 = rhs(t, &y);
        let k2 = rhs(t + dt / 2.0, &add(&y, &k1, dt / 2.0));
        let k3 = rhs(t + dt / 2.0, &add(&y, &k2, dt / 2.0));
        let k4 = rhs(t + dt, &add(&y, &k3, dt));
        y = std::array::from_fn(|j| y[j] + dt / 6.0 * (k1[j] + 2.0 * k2[j] + 2.0 * k3[j] + k4[j]));
    }
    [[y[2], y[3]], [y[3], y[4]]]
}

/// Eigenvalues of a symmetric 2×2 matrix.
fn eigenvalues(m: [[f64; 2]; 2]) -> [f64; 2] {
    let (tr, det) = (m[0][0] + m[1][1], m[0][0] * m[1][1] - m[0][1] * m[1][0]);
    let disc = (tr * tr / 4.0 - det).max(0.0).sqrt();
    [tr / 2.0 + disc, tr / 2.0 - disc]
}

/// `P(C > x)` for `C ~ χ²_K`, `K` even: `e^{−x/2}·Σ_{i<K/2} (x/2)^i/i!`.
fn chi2_even_sf(x: f64, k: usize) -> f64 {
    let h = x / 2.0;
    let (mut term, mut sum) = (1.0, 1.0);
    for i in 1..k / 2 {
        term *= h / i as f64;
        sum += term;
    }
    (-h).exp() * sum
}

/// The `s` with `2·P(|C/K − 1| > s) = alpha` for `C ~ χ²_K`, `K` even (bisection).
fn chi2_mean_deviation(alpha: f64, k: usize) -> f64 {
    let kf = k as f64;
    let tail = |s: f64| {
        let below = if s < 1.0 {
            1.0 - chi2_even_sf(kf * (1.0 - s), k)
        } else {
            0.0
        };
        2.0 * (chi2_even_sf(kf * (1.0 + s), k) + below)
    };
    let (mut lo, mut hi) = (0.0, 100.0);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if tail(mid) > alpha {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

#[test]
fn likelihood_matches_the_exact_log_density() {
    let dev = Default::default();
    let n = 48;
    let sde = VpSde::default();
    let target = ring().diffused(sde);
    let x = ring().sample::<B>(n, &NoiseSource::new(11), NoiseKey::new(0, 0), &dev);
    // The ODE computes log p_ε; compare with p_ε exactly.
    let exact = to_f64(target.log_prob(x.clone(), Tensor::full([n], EPS as f32, &dev)));
    let grid = TimeGrid::forward(&sde, EPS, 1).unwrap();
    // Tight tolerances: rtol = atol = 1e-6 (f32 state: ~1e-7 relative round-off per step).
    let tight = OdeSolver::Dopri5(AdaptiveConfig::new().with_rtol(1e-6).with_atol(1e-6));
    let lik = LikelihoodConfig::new()
        .with_solver(tight)
        .init(sde)
        .unwrap();
    let out = lik
        .log_prob::<A, 2, _>(&target, &grid, x, &NoiseSource::new(0))
        .unwrap();
    assert!(out.std_err.is_none());
    let errors: Vec<f64> = to_f64(out.log_prob)
        .iter()
        .zip(&exact)
        .map(|(a, b)| (a - b).abs())
        .collect();
    let mae = errors.iter().sum::<f64>() / n as f64;
    let worst = errors.iter().cloned().fold(0.0, f64::max);
    println!(
        "exact divergence: mean |error| {mae:.2e} nats, worst {worst:.2e} (NFE {}, log p ≈ {:.3})",
        out.nfe, exact[0]
    );
    // A solver tolerance of 1e-6 on a path whose log-density integrand is O(10): every sample
    // within 1e-2 nats.
    assert!(worst < 1e-2, "worst abs error {worst}");
}

/// Per-sample tolerance for the deterministic part of the Hutchinson error (the ODE solver's,
/// at the default rtol = atol = 1e-5: ten times the 1e-2 nats bound that the exact-divergence
/// test holds at 1e-6, where the worst error is ~1e-3).
const ODE_TOL: f64 = 2e-2;

#[test]
fn hutchinson_errors_follow_their_known_law_per_sample() {
    let dev = Default::default();
    let n = 48;
    let sde = VpSde::default();
    let target = ring().diffused(sde);
    let x = ring().sample::<B>(n, &NoiseSource::new(11), NoiseKey::new(0, 0), &dev);
    let xs = to_f64(x.clone());
    let exact = to_f64(target.log_prob(x.clone(), Tensor::full([n], EPS as f32, &dev)));
    let m: Vec<[[f64; 2]; 2]> = xs
        .chunks(2)
        .map(|p| probe_matrix(&target, p, 2000))
        .collect();
    let grid = TimeGrid::forward(&sde, EPS, 1).unwrap();

    // Rademacher, K = 16: known standard error 2|M₁₂|/√K per sample.
    let k = 16;
    let noise = NoiseSource::new(1);
    let hutch = LikelihoodConfig::new()
        .with_divergence(Divergence::Hutchinson {
            probe: ProbeKind::Rademacher,
            n_probes: k,
        })
        .init(sde)
        .unwrap();
    let out = hutch
        .log_prob::<A, 2, _>(&target, &grid, x.clone(), &noise)
        .unwrap();
    let se = to_f64(out.std_err.unwrap());
    let got = to_f64(out.log_prob);
    // The probes themselves (keys (0, k), as `Likelihood::log_prob` documents): the error each
    // sample must show is then known exactly, up to the ODE's own error.
    let probes: Vec<Vec<f64>> = (0..k)
        .map(|j| to_f64(noise.rademacher::<B, 2>([n, 2], NoiseKey::new(0, j as u32), &dev)))
        .collect();
    // Bonferroni over the 48 samples at a family-wise 0.01: |z| ≤ Φ⁻¹(1 − 0.01/96) ≈ 3.71.
    let z_crit = -normal_quantile(0.01 / (2.0 * n as f64));
    let mut worst_z: f64 = 0.0;
    for i in 0..n {
        let known_se = 2.0 * m[i][0][1].abs() / (k as f64).sqrt();
        let err = got[i] - exact[i];
        let predicted = probes
            .iter()
            .map(|v| 2.0 * m[i][0][1] * v[2 * i] * v[2 * i + 1])
            .sum::<f64>()
            / k as f64;
        worst_z = worst_z.max(err.abs() / known_se);
        assert!(
            err.abs() <= z_crit * known_se + ODE_TOL,
            "sample {i}: error {err:.4}, known SE {known_se:.4}"
        );
        assert!(
            (err - predicted).abs() <= ODE_TOL,
            "sample {i}: error {err:.4}, predicted from M and the probes {predicted:.4}"
        );
        // The probes' spread can never exceed 2|M₁₂|/√(K − 1); 5 % covers the host path's
        // difference from the solver's (both at tolerances ≤ 1e-5) and f32 round-off.
        let se_bound = 2.0 * m[i][0][1].abs() / ((k - 1) as f64).sqrt();
        assert!(
            se[i] <= 1.05 * se_bound + 1e-4,
            "sample {i}: reported SE {} above its bound {se_bound}",
            se[i]
        );
    }
    // The batch mean: its standard error is √(Σ SE_i²)/n with the known SEs; within 3 of them.
    let mean_err = got.iter().zip(&exact).map(|(a, b)| a - b).sum::<f64>() / n as f64;
    let se_mean = m
        .iter()
        .map(|m| (2.0 * m[0][1]).powi(2) / k as f64)
        .sum::<f64>()
        .sqrt()
        / n as f64;
    println!(
        "Rademacher K = {k}: worst |z| {worst_z:.2} (bound {z_crit:.2}); batch mean error {mean_err:.3e} ({:.2} SE); NFE {}",
        mean_err / se_mean,
        out.nfe
    );
    assert!(mean_err.abs() <= 3.0 * se_mean + ODE_TOL / (n as f64).sqrt());

    // Gaussian probes, K = 8, on the first 16 points. |Σ_j λ_j(C_j/K − 1)| exceeds
    // (|λ₁| + |λ₂|)·s only if one |C_j/K − 1| exceeds s, so with 2·P(|C/K − 1| > s) = α_i the
    // per-sample bound holds with probability ≥ 1 − α_i; Bonferroni over 16 samples at 0.01.
    let (k, n16) = (8, 16);
    let x16 = ring().sample::<B>(n16, &NoiseSource::new(11), NoiseKey::new(0, 0), &dev);
    let gauss = LikelihoodConfig::new()
        .with_divergence(Divergence::Hutchinson {
            probe: ProbeKind::Gaussian,
            n_probes: k,
        })
        .init(sde)
        .unwrap();
    let out = gauss
        .log_prob::<A, 2, _>(&target, &grid, x16, &NoiseSource::new(2))
        .unwrap();
    let got = to_f64(out.log_prob);
    let s = chi2_mean_deviation(0.01 / n16 as f64, k);
    for i in 0..n16 {
        let l = eigenvalues(m[i]);
        let known_se = (2.0 * (l[0] * l[0] + l[1] * l[1]) / k as f64).sqrt();
        let bound = (l[0].abs() + l[1].abs()) * s + ODE_TOL;
        let err = got[i] - exact[i];
        println!(
            "Gaussian K = {k}, sample {i}: error {err:+.3}, known SE {known_se:.3}, bound {bound:.3}"
        );
        assert!(err.abs() <= bound, "sample {i}: error {err} > {bound}");
    }
}

#[test]
fn bits_per_dim_of_a_gaussian_model_on_dequantised_pixels() {
    // 8-bit "images" [n, 1, 2, 2] dequantised to [−1, 1]; the model p_y = N(0, I). By hand:
    // bpd = −(log p_y + d·ln 2 − d·ln 256)/(d·ln 2).
    let dev = Default::default();
    let pixels = Tensor::<B, 4>::from_data(
        burn::tensor::TensorData::new(vec![0.0f32, 255.0, 128.0, 7.0], [1, 1, 2, 2]),
        &dev,
    );
    let deq = Dequantization::new().with_scale(2.0).with_shift(-1.0);
    deq.validate().unwrap();
    let y = deq
        .dequantize(pixels, &NoiseSource::new(0), NoiseKey::new(0, 0))
        .unwrap();
    let yv = to_f64(y.clone());
    for (v, k) in yv.iter().zip([0.0, 255.0, 128.0, 7.0]) {
        assert!(*v >= 2.0 * k / 256.0 - 1.0 && *v < 2.0 * (k + 1.0) / 256.0 - 1.0);
    }
    let d = 4.0;
    let log_p: f64 = yv
        .iter()
        .map(|v| -0.5 * v * v - 0.5 * (std::f64::consts::TAU).ln())
        .sum();
    let bpd = to_f64(
        deq.bits_per_dim(Tensor::<B, 1>::from_floats([log_p as f32], &dev), 4)
            .unwrap(),
    )[0];
    let by_hand = -(log_p + d * 2f64.ln() - d * 256f64.ln()) / (d * 2f64.ln());
    assert!((bpd - by_hand).abs() < 1e-5, "{bpd} vs {by_hand}");
    assert!(Dequantization::new().with_scale(0.0).validate().is_err());
}

#[test]
fn likelihood_of_images_in_bits_per_dim() {
    // Rank-4 data: 8-bit 2×2 images dequantised to [−1, 1], under a model whose density is known:
    // independent pixels N(0, 0.5²) diffused by VP. The ODE likelihood (exact divergence, 4
    // backward passes per evaluation) must give the exact bits/dim within 4e-3 bits, i.e.
    // 4e-3·4·ln 2 ≈ 1.1e-2 nats per image: the 1e-2-nat tolerance of the ring test.
    let dev = Default::default();
    let n = 8;
    let sde = VpSde::default();
    let model = score_core::DiagGaussian::new(vec![0.0; 4], vec![0.25; 4])
        .unwrap()
        .to_mixture()
        .diffused(sde);
    let pixels = NoiseSource::new(31)
        .uniform::<B, 4>([n, 1, 2, 2], NoiseKey::new(0, 0), &dev)
        .mul_scalar(256.0)
        .floor();
    let deq = Dequantization::new().with_scale(2.0).with_shift(-1.0);
    let y = deq
        .dequantize(pixels, &NoiseSource::new(32), NoiseKey::new(0, 0))
        .unwrap();
    let exact = deq
        .bits_per_dim(
            model.log_prob(y.clone(), Tensor::full([n], EPS as f32, &dev)),
            4,
        )
        .unwrap();
    let lik = LikelihoodConfig::new().init(sde).unwrap();
    let grid = TimeGrid::forward(&sde, EPS, 1).unwrap();
    let out = lik
        .log_prob::<A, 4, _>(&model, &grid, y, &NoiseSource::new(0))
        .unwrap();
    let got = to_f64(deq.bits_per_dim(out.log_prob, 4).unwrap());
    let exact = to_f64(exact);
    let worst = got
        .iter()
        .zip(&exact)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    println!(
        "images: bits/dim {:.4} (exact {:.4}), worst |error| {worst:.2e} bits",
        got[0], exact[0]
    );
    assert!(worst < 4e-3, "bits/dim error {worst}");
}
