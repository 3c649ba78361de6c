//! Inverse problems on Gaussian targets, where everything is known in closed form.
//!
//! The scores are score-core's tensor scores: a correlated Gaussian `N(μ, RᵀΛR)` is a diagonal
//! `DiagGaussian` diffused by the SDE, seen through the orthogonal `R` (`common::Rotated`).
//!
//! The method's own law. With a Gaussian target the exact score is affine in `x`, and so is
//! every step of the samplers used here (the reverse-diffusion predictor, the annealed-Langevin
//! corrector whose step `2α(snr·σ_t)²` does not depend on the state, the replacement of the
//! known entries by `m(t)y + s(t)z`, the likelihood gradient of a linear observation). Each step
//! maps a Gaussian law to a Gaussian law, so the exact law of the sampler's output — mean and
//! covariance — follows from a recursion on the host (`MethodLaw`), with no Monte Carlo. The
//! tests check the samples against that law within their sampling error, and state the
//! method's bias (its law against the exact conditional or posterior) instead of tuning a
//! tolerance to it.
//!
//! Error budget: each test holds its statistics (2 means, 2 variances, 1 covariance) at a
//! family-wise 0.01, Bonferroni: two-sided level 0.002 per statistic (z ≈ 3.09).

mod common;

use burn::tensor::{Tensor, TensorData};
use common::*;
use score_core::{DiagGaussian, NoiseSource, Sde, VpSde, tensor::to_f64};
use score_eval::{chi_square_quantile, normal_quantile};
use score_sample::*;

/// Per-statistic level of every test here (module docs).
const LEVEL: f64 = 0.01 / 5.0;

/// Row-major `d × d` products.
fn matmul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut c = vec![0.0; d * d];
    for i in 0..d {
        for k in 0..d {
            for j in 0..d {
                c[i * d + j] += a[i * d + k] * b[k * d + j];
            }
        }
    }
    c
}

fn transpose(a: &[f64], d: usize) -> Vec<f64> {
    (0..d * d).map(|i| a[(i % d) * d + i / d]).collect()
}

fn matvec(a: &[f64], x: &[f64]) -> Vec<f64> {
    let d = x.len();
    (0..d)
        .map(|i| (0..d).map(|j| a[i * d + j] * x[j]).sum())
        .collect()
}

fn inv2(m: [f64; 4]) -> [f64; 4] {
    let det = m[0] * m[3] - m[1] * m[2];
    [m[3] / det, -m[1] / det, -m[2] / det, m[0] / det]
}

/// A Gaussian `N(μ, RᵀΛR)` with orthogonal `R`: its host description and its tensor score.
#[derive(Clone)]
struct Correlated {
    r: Vec<f64>,
    lambda: Vec<f64>,
    mu: Vec<f64>,
}

impl Correlated {
    fn d(&self) -> usize {
        self.mu.len()
    }
    fn cov(&self) -> Vec<f64> {
        let d = self.d();
        let l: Vec<f64> = (0..d * d)
            .map(|i| {
                if i % (d + 1) == 0 {
                    self.lambda[i / d]
                } else {
                    0.0
                }
            })
            .collect();
        matmul(&transpose(&self.r, d), &matmul(&l, &self.r, d), d)
    }
    /// score-core's exact tensor score under `sde`: the diagonal Gaussian `N(Rμ, Λ)` of `u = Rx`
    /// diffused, seen through `R`.
    fn score<S: Sde + Copy>(&self, sde: S) -> Rotated<score_core::Diffused<S>> {
        let u_mean = matvec(&self.r, &self.mu);
        let inner = DiagGaussian::new(u_mean, self.lambda.clone())
            .unwrap()
            .to_mixture()
            .diffused(sde);
        Rotated {
            inner,
            r: self.r.clone(),
            d: self.d(),
        }
    }
    /// The exact score at time `t` as an affine map `s(x) = S x + c`: `S = −Σ_t⁻¹`,
    /// `c = Σ_t⁻¹ m μ`, with `Σ_t⁻¹ = Rᵀ diag(1/(m²λ + s²)) R`.
    fn affine_score<S: Sde>(&self, sde: &S, t: f64) -> (Vec<f64>, Vec<f64>) {
        let d = self.d();
        let k = sde.marginal(t);
        let inv: Vec<f64> = (0..d * d)
            .map(|i| {
                if i % (d + 1) == 0 {
                    1.0 / (k.mean_coef.powi(2) * self.lambda[i / d] + k.std.powi(2))
                } else {
                    0.0
                }
            })
            .collect();
        let p = matmul(&transpose(&self.r, d), &matmul(&inv, &self.r, d), d);
        let m_mu: Vec<f64> = self.mu.iter().map(|v| k.mean_coef * v).collect();
        (p.iter().map(|v| -v).collect(), matvec(&p, &m_mu))
    }
}

/// A Gaussian law `N(mean, cov)` pushed through the samplers' affine steps (module docs).
struct MethodLaw {
    mean: Vec<f64>,
    cov: Vec<f64>,
}

impl MethodLaw {
    fn d(&self) -> usize {
        self.mean.len()
    }
    /// `x ← A x + b + √q·z`.
    fn affine(&mut self, a: &[f64], b: &[f64], q: f64) {
        let d = self.d();
        self.mean = matvec(a, &self.mean)
            .iter()
            .zip(b)
            .map(|(x, y)| x + y)
            .collect();
        self.cov = matmul(a, &matmul(&self.cov, &transpose(a, d), d), d);
        for i in 0..d {
            self.cov[i * d + i] += q;
        }
    }
    /// Known entries replaced by an independent `N(m·y, s²)`.
    fn replace(&mut self, known: &[usize], y: &[f64], m: f64, s: f64) {
        let d = self.d();
        for (&i, &yi) in known.iter().zip(y) {
            self.mean[i] = m * yi;
            for j in 0..d {
                self.cov[i * d + j] = 0.0;
                self.cov[j * d + i] = 0.0;
            }
            self.cov[i * d + i] = s * s;
        }
    }
    /// The step `x + ε·s(x) (+ noise)` with `s(x) = S x + c`: `A = I + εS`, `b = εc`.
    fn score_step(&mut self, s: &(Vec<f64>, Vec<f64>), scale: f64, shrink: f64, q: f64) {
        let d = self.d();
        let a: Vec<f64> = (0..d * d)
            .map(|i| {
                let id = if i % (d + 1) == 0 { shrink } else { 0.0 };
                id + scale * s.0[i]
            })
            .collect();
        let b: Vec<f64> = s.1.iter().map(|v| scale * v).collect();
        self.affine(&a, &b, q);
    }
}

/// The law of the [`PcSampler`] output (reverse diffusion, optional one-step annealed-Langevin
/// corrector, noise-free last step), with replacement of `known` entries by `y` when given, for
/// a score that is affine at every `t`.
fn method_law<S: Sde>(
    sde: &S,
    grid: &TimeGrid,
    score: impl Fn(f64) -> (Vec<f64>, Vec<f64>),
    corrector_snr: Option<f64>,
    inpaint: Option<(&[usize], &[f64])>,
    d: usize,
) -> MethodLaw {
    let prior_var = sde.prior_std().powi(2);
    let mut law = MethodLaw {
        mean: vec![0.0; d],
        cov: (0..d * d)
            .map(|i| if i % (d + 1) == 0 { prior_var } else { 0.0 })
            .collect(),
    };
    let project = |law: &mut MethodLaw, t: f64, noisy: bool| {
        if let Some((known, y)) = inpaint {
            let k = sde.marginal(t);
            law.replace(known, y, k.mean_coef, if noisy { k.std } else { 0.0 });
        }
    };
    project(&mut law, grid.start(), true);
    let steps = grid.steps();
    for (i, t, t_next) in grid.intervals() {
        let s = score(t);
        if let Some(snr) = corrector_snr {
            let alpha = (1.0 + sde.discretize(t, t - t_next).f).powi(2);
            let eps = 2.0 * alpha * (snr * sde.marginal(t).std).powi(2);
            law.score_step(&s, eps, 1.0, 2.0 * eps);
            project(&mut law, t, true);
        }
        let dz = sde.discretize(t, t - t_next);
        let last = i + 1 == steps;
        law.score_step(
            &s,
            dz.g * dz.g,
            1.0 - dz.f,
            if last { 0.0 } else { dz.g * dz.g },
        );
        project(&mut law, t_next, !last);
    }
    law
}

/// Checks the sample moments of the coordinates `unknown` of `x` (row-major, `d` per sample)
/// against `law` — each mean, each variance and each pairwise covariance at level [`LEVEL`] —
/// and returns the sample means.
fn check_against_law(
    what: &str,
    x: &[f64],
    d: usize,
    unknown: &[usize],
    law: &MethodLaw,
) -> Vec<f64> {
    let n = (x.len() / d) as f64;
    let col = |j: usize| x.chunks(d).map(move |p| p[j]);
    let m: Vec<f64> = unknown.iter().map(|&j| col(j).sum::<f64>() / n).collect();
    let cov = |a: usize, b: usize, ma: f64, mb: f64| {
        col(a)
            .zip(col(b))
            .map(|(u, v)| (u - ma) * (v - mb))
            .sum::<f64>()
            / (n - 1.0)
    };
    let z = -normal_quantile(LEVEL / 2.0);
    let c = |a: usize, b: usize| law.cov[a * d + b];
    let (lo, hi) = (
        chi_square_quantile(LEVEL / 2.0, n - 1.0).unwrap() / (n - 1.0),
        chi_square_quantile(1.0 - LEVEL / 2.0, n - 1.0).unwrap() / (n - 1.0),
    );
    for (k, &j) in unknown.iter().enumerate() {
        let (want_m, want_v) = (law.mean[j], c(j, j));
        let v = cov(j, j, m[k], m[k]);
        println!(
            "{what}: x[{j}] mean {:.4} (method {want_m:.4} ± {:.4}), variance {v:.4} (method {want_v:.4}, range [{:.4}, {:.4}])",
            m[k],
            z * (want_v / n).sqrt(),
            want_v * lo,
            want_v * hi
        );
        assert!(
            (m[k] - want_m).abs() <= z * (want_v / n).sqrt(),
            "{what}: mean of x[{j}]"
        );
        assert!(
            v >= want_v * lo && v <= want_v * hi,
            "{what}: variance of x[{j}]"
        );
    }
    for (ka, &a) in unknown.iter().enumerate() {
        for (kb, &b) in unknown.iter().enumerate().skip(ka + 1) {
            let got = cov(a, b, m[ka], m[kb]);
            // Sample covariance of a bivariate normal: variance (C_aa·C_bb + C_ab²)/n to first
            // order.
            let se = ((c(a, a) * c(b, b) + c(a, b).powi(2)) / n).sqrt();
            println!(
                "{what}: cov(x[{a}], x[{b}]) {got:.4} (method {:.4} ± {:.4})",
                c(a, b),
                z * se
            );
            assert!(
                (got - c(a, b)).abs() <= z * se,
                "{what}: covariance of x[{a}], x[{b}]"
            );
        }
    }
    m
}

/// The 2-D Gaussian of the tests: μ = (1, −1), Σ = [[1, 0.8], [0.8, 1]] = RᵀΛR with
/// R = [[1, 1], [1, −1]]/√2 (symmetric, orthogonal) and Λ = diag(1.8, 0.2).
fn g2() -> Correlated {
    let h = std::f64::consts::FRAC_1_SQRT_2;
    Correlated {
        r: vec![h, h, h, -h],
        lambda: vec![1.8, 0.2],
        mu: vec![1.0, -1.0],
    }
}

#[test]
fn the_rotated_tensor_score_is_the_correlated_gaussian_score() {
    // −Σ_t⁻¹(x − mμ) on the host against the tensor path, at a few points and times.
    let (g, sde, dev) = (g2(), VpSde::default(), Default::default());
    let score = g.score(sde);
    let x = vec![0.3, -2.0, 1.5, 0.7, -1.0, 4.0];
    for t in [1e-3, 0.3, 1.0] {
        let got = to_f64(score_core::ScoreFn::score(
            &score,
            score_core::tensor::from_f64::<B, 2>(&x, [3, 2], &dev),
            Tensor::full([3], t, &dev),
        ));
        let (s, c) = g.affine_score(&sde, t);
        for (p, q) in x.chunks(2).zip(got.chunks(2)) {
            let want: Vec<f64> = matvec(&s, p).iter().zip(&c).map(|(a, b)| a + b).collect();
            for j in 0..2 {
                assert!(
                    (q[j] - want[j]).abs() < 1e-4 * (1.0 + want[j].abs()),
                    "{q:?} vs {want:?}"
                );
            }
        }
    }
}

#[test]
fn inpainting_follows_its_law_on_a_correlated_gaussian() {
    let dev = Default::default();
    let n = 2000;
    let sde = VpSde::default();
    let g = g2();
    let a = 0.5;
    // x₂ | x₁ = a ~ N(μ₂ + Σ₂₁/Σ₁₁·(a − μ₁), Σ₂₂ − Σ₂₁²/Σ₁₁) = N(−1.4, 0.36).
    let (cm, cv) = (-1.0 + 0.8 * (a - 1.0), 1.0 - 0.64);
    let observed =
        Tensor::<B, 2>::from_data(TensorData::new([a as f32, 0.0].repeat(n), [n, 2]), &dev);
    let mask = Tensor::<B, 2>::from_data(TensorData::new([1.0f32, 0.0].repeat(n), [n, 2]), &dev);
    let snr = 0.16;
    let sampler = PcSamplerConfig::new()
        .with_predictor(PredictorKind::ReverseDiffusion)
        .with_corrector(CorrectorKind::AnnealedLangevin { snr, n_steps: 1 })
        .init(sde)
        .unwrap();
    let grid = TimeGrid::reverse(&sde, 1e-3, 200).unwrap();
    let out = Inpainter::new(sampler)
        .sample(&g.score(sde), &grid, observed, mask, &NoiseSource::new(21))
        .unwrap();
    let x = to_f64(out.x);
    assert!(
        x.chunks(2).all(|p| p[0] == a as f32 as f64),
        "known coordinate kept"
    );
    let law = method_law(
        &sde,
        &grid,
        |t| g.affine_score(&sde, t),
        Some(snr),
        Some((&[0], &[a])),
        2,
    );
    // The method's bias: replacement drives the unknown coordinate with a freshly noised copy of
    // the observation instead of the conditional law of x_t given y (Song et al. 2021, App. I.2).
    println!(
        "replacement inpainting: law of x₂ N({:.4}, {:.4}) against the exact conditional N({cm}, {cv}): bias {:+.4} in the mean, {:+.4} in the variance",
        law.mean[1],
        law.cov[3],
        law.mean[1] - cm,
        law.cov[3] - cv
    );
    let m = check_against_law("inpainting 2-D", &x, 2, &[1], &law);
    // Conditioning matters: the unconditional law of x₂, N(−1, 1), is far outside the
    // sampling error of the mean (z·√(0.36/n) ≈ 0.04).
    assert!(
        (m[0] - g.mu[1]).abs() > 10.0 * (cv / n as f64).sqrt(),
        "mean {}",
        m[0]
    );
}

#[test]
fn inpainting_follows_its_law_on_correlated_images() {
    // Rank 4: [n, 1, 2, 2] images whose 4 pixels are strongly correlated, N(0.5, RᵀΛR) with R
    // the normalised 4×4 Hadamard matrix and Λ = diag(1.6, 0.2, 0.15, 0.05): every pixel has
    // variance 0.5 and correlations 0.65–0.8 with the others. The top row is observed well
    // above the mean, so the bottom row's conditional law is far from its marginal.
    let dev = Default::default();
    let n = 2000;
    let sde = VpSde::default();
    let h = [
        1.0, 1.0, 1.0, 1.0, 1.0, -1.0, 1.0, -1.0, 1.0, 1.0, -1.0, -1.0, 1.0, -1.0, -1.0, 1.0,
    ];
    let g = Correlated {
        r: h.iter().map(|v| 0.5 * v).collect(),
        lambda: vec![1.6, 0.2, 0.15, 0.05],
        mu: vec![0.5; 4],
    };
    let y = [1.5, 1.3];
    let (known, unknown) = ([0usize, 1], [2usize, 3]);
    // Exact conditional: μ_U + Σ_UK Σ_KK⁻¹(y − μ_K), Σ_UU − Σ_UK Σ_KK⁻¹ Σ_KU.
    let s = g.cov();
    let at = |i: usize, j: usize| s[i * 4 + j];
    let kk_inv = inv2([at(0, 0), at(0, 1), at(1, 0), at(1, 1)]);
    let gain = |u: usize| {
        [
            at(u, 0) * kk_inv[0] + at(u, 1) * kk_inv[2],
            at(u, 0) * kk_inv[1] + at(u, 1) * kk_inv[3],
        ]
    };
    let cond_mean: Vec<f64> = unknown
        .iter()
        .map(|&u| {
            let k = gain(u);
            0.5 + k[0] * (y[0] - 0.5) + k[1] * (y[1] - 0.5)
        })
        .collect();
    let observed = Tensor::<B, 4>::from_data(
        TensorData::new([y[0] as f32, y[1] as f32, 0.0, 0.0].repeat(n), [n, 1, 2, 2]),
        &dev,
    );
    let mask = Tensor::<B, 4>::from_data(
        TensorData::new([1.0f32, 1.0, 0.0, 0.0].repeat(n), [n, 1, 2, 2]),
        &dev,
    );
    let snr = 0.16;
    let sampler = PcSamplerConfig::new()
        .with_predictor(PredictorKind::ReverseDiffusion)
        .with_corrector(CorrectorKind::AnnealedLangevin { snr, n_steps: 1 })
        .init(sde)
        .unwrap();
    let grid = TimeGrid::reverse(&sde, 1e-3, 200).unwrap();
    let out = Inpainter::new(sampler)
        .sample(&g.score(sde), &grid, observed, mask, &NoiseSource::new(22))
        .unwrap();
    assert_eq!(out.x.dims(), [n, 1, 2, 2]);
    let x = to_f64(out.x);
    assert!(
        x.chunks(4)
            .all(|p| p[0] == y[0] as f32 as f64 && p[1] == y[1] as f32 as f64),
        "known pixels kept"
    );
    let law = method_law(
        &sde,
        &grid,
        |t| g.affine_score(&sde, t),
        Some(snr),
        Some((&known, &y)),
        4,
    );
    for (k, &u) in unknown.iter().enumerate() {
        println!(
            "image inpainting: pixel {u}: method mean {:.4}, exact conditional {:.4} (bias {:+.4}), marginal 0.5",
            law.mean[u],
            cond_mean[k],
            law.mean[u] - cond_mean[k]
        );
    }
    let m = check_against_law("image inpainting", &x, 4, &unknown, &law);
    // Conditioning matters: every unknown pixel's mean is far from its marginal 0.5, by more
    // than 10 standard errors of the mean (√(0.5/n) ≈ 0.016).
    for (k, mean) in m.iter().enumerate() {
        assert!(
            (mean - 0.5).abs() > 10.0 * (0.5 / n as f64).sqrt(),
            "pixel {k}: {mean}"
        );
    }
}

/// The Kalman gain `K_t = mΣΣ_t⁻¹` (row-major 2×2), `m(t)` and the variance of `y` given `x_t`
/// for the observation `y = x₁ + N(0, σ_y²)` of [`g2`].
fn observation_gain(sde: &VpSde, t: f64, sy2: f64) -> ([f64; 4], f64, f64) {
    let g = g2();
    let s = g.cov();
    let k = sde.marginal(t);
    let m = k.mean_coef;
    let st = [
        m * m * s[0] + k.std.powi(2),
        m * m * s[1],
        m * m * s[2],
        m * m * s[3] + k.std.powi(2),
    ];
    let p = inv2(st);
    let kk = [
        m * (s[0] * p[0] + s[1] * p[2]),
        m * (s[0] * p[1] + s[1] * p[3]),
        m * (s[2] * p[0] + s[3] * p[2]),
        m * (s[2] * p[1] + s[3] * p[3]),
    ];
    // C₁₁ = Σ₁₁ − m·(KΣ)₁₁.
    let c11 = s[0] - m * (kk[0] * s[0] + kk[1] * s[2]);
    (kk, m, c11 + sy2)
}

#[test]
fn posterior_sampling_follows_its_law() {
    let dev = Default::default();
    let n = 2000;
    let sde = VpSde::default();
    let g = g2();
    // Observation y = x₁ + N(0, σ_y²) of the correlated Gaussian.
    let (y, sy2) = (2.0, 0.25);
    // Exact time-dependent likelihood p_t(y | x_t): x₀ | x_t is Gaussian with mean
    // μ + K(x_t − mμ) and covariance C = Σ − mKΣ, so y | x_t ~ N(h·E[x₀|x_t], hᵀCh + σ_y²) with
    // h = e₁, and ∇ log p_t(y | x_t) = Kᵀh·(y − h·E[x₀|x_t])/(hᵀCh + σ_y²), affine in x_t.
    let mu = g.mu.clone();
    let likelihood = move |x: Tensor<B, 2>, t: Tensor<B, 1>| {
        let (dims, dev) = (x.dims(), x.device());
        let (kk, m, var) = observation_gain(&sde, first(t), sy2);
        let mut v = to_f64(x);
        for pt in v.chunks_mut(2) {
            let e1 = mu[0] + kk[0] * (pt[0] - m * mu[0]) + kk[1] * (pt[1] - m * mu[1]);
            let r = (y - e1) / var;
            pt[0] = kk[0] * r;
            pt[1] = kk[1] * r;
        }
        score_core::tensor::from_f64(&v, dims, &dev)
    };
    let posterior = PosteriorScore::new(g.score(sde), likelihood);
    let sampler = PcSamplerConfig::new()
        .with_predictor(PredictorKind::ReverseDiffusion)
        .with_corrector(CorrectorKind::None)
        .init(sde)
        .unwrap();
    let grid = TimeGrid::reverse(&sde, 1e-3, 200).unwrap();
    let out = sampler
        .sample::<B, 2, _>(&posterior, &grid, [n, 2], &NoiseSource::new(23), &dev)
        .unwrap();
    let x = to_f64(out.x);
    // The same score as an affine map: prior part plus −(Kᵀh)(hᵀK)/var·x and its constant.
    let affine = |t: f64| {
        let (mut s, mut c) = g.affine_score(&sde, t);
        let (kk, m, var) = observation_gain(&sde, t, sy2);
        let row = [kk[0], kk[1]];
        let offset = y - g.mu[0] + m * (kk[0] * g.mu[0] + kk[1] * g.mu[1]);
        for i in 0..2 {
            c[i] += row[i] * offset / var;
            for j in 0..2 {
                s[i * 2 + j] -= row[i] * row[j] / var;
            }
        }
        (s, c)
    };
    let law = method_law(&sde, &grid, affine, None, None, 2);
    // Exact posterior of x₀: gain Σh/(Σ₁₁ + σ_y²) = (0.8, 0.64); mean μ + gain·(y − μ₁) =
    // (1.8, −0.36); covariance Σ − gain·hᵀΣ = [[0.2, 0.16], [0.16, 0.488]].
    println!(
        "posterior sampling: method law mean ({:.4}, {:.4}) cov [{:.4}, {:.4}, {:.4}]; exact (1.8, -0.36) [0.2, 0.16, 0.488]",
        law.mean[0], law.mean[1], law.cov[0], law.cov[1], law.cov[3]
    );
    check_against_law("posterior", &x, 2, &[0, 1], &law);
    // With the exact likelihood score the method's only bias is its discretisation, first
    // order in the step: the law at 10× the steps must sit at least 5× closer to the exact
    // posterior (a first-order method gives 10×; 5× leaves room for the next-order terms).
    let exact = ([1.8, -0.36], [0.2, 0.16, 0.16, 0.488]);
    let distance = |law: &MethodLaw| {
        let m = (0..2).map(|j| (law.mean[j] - exact.0[j]).abs());
        let c = (0..4).map(|j| (law.cov[j] - exact.1[j]).abs());
        m.chain(c).fold(0.0, f64::max)
    };
    let fine_grid = TimeGrid::reverse(&sde, 1e-3, 2000).unwrap();
    let fine = method_law(&sde, &fine_grid, affine, None, None, 2);
    let (coarse_bias, fine_bias) = (distance(&law), distance(&fine));
    println!("posterior: method bias {coarse_bias:.4} at 200 steps, {fine_bias:.5} at 2000");
    assert!(
        fine_bias < coarse_bias / 5.0,
        "{fine_bias} vs {coarse_bias}"
    );
}
