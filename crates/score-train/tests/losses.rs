//! Each loss against the oracles of score-core: the exact score of an analytic target minimises it,
//! and single-σ DSM and the continuous loss hit their closed-form irreducible values.
//!
//! Monte-Carlo bounds are 4 standard errors (two-sided false-alarm rate 6e-5 for a normal
//! estimate); the seeds are fixed, so each test is deterministic.

mod common;

use burn::backend::NdArray;
use burn::tensor::{Tensor, backend::Backend};
use common::{host, mean_se};
use score_core::{
    DiagGaussian, GaussianMixture, Marginal, NoiseKey, NoiseSource, ScoreFn, Sde, VeSde, VpSde,
    schedule::{alphas_cumprod, ddpm_step, linear_betas},
};
use score_train::{
    DdpmLoss, DdpmTarget, DenoisingScoreMatching, Exact, ExplicitScoreMatching, Loss,
    MultiScaleDsm, Projection, Reduction, SdeLoss, SlicedEstimator, SlicedScoreMatching,
    TimeSampling, Weighting,
};

type B = NdArray<f32>;

/// `scale·s + shift`: a wrong score close to the right one.
#[derive(Debug, Clone)]
struct Perturbed<F> {
    inner: F,
    scale: f64,
    shift: f64,
}

impl<Bk: Backend, F: ScoreFn<Bk, 2>> ScoreFn<Bk, 2> for Perturbed<F> {
    fn score(&self, x: Tensor<Bk, 2>, t: Tensor<Bk, 1>) -> Tensor<Bk, 2> {
        self.inner
            .score(x, t)
            .mul_scalar(self.scale)
            .add_scalar(self.shift)
    }
}

impl<Bk: Backend, F: score_nets::TimeNet<Bk, 2>> score_nets::TimeNet<Bk, 2> for Perturbed<F> {
    fn forward(&self, x: Tensor<Bk, 2>, t: Tensor<Bk, 1>) -> Tensor<Bk, 2> {
        self.inner
            .forward(x, t)
            .mul_scalar(self.scale)
            .add_scalar(self.shift)
    }
}

fn perturb<F>(inner: F) -> Perturbed<F> {
    Perturbed {
        inner,
        scale: 1.2,
        shift: 0.3,
    }
}

/// DDPM's discrete marginals `(√ᾱ_i, √(1 − ᾱ_i))` at `t = ddpm_time(i, N)`, as an [`Sde`] so that the
/// mixture's exact perturbed score at DDPM's steps comes from `diffused`.
#[derive(Debug, Clone)]
struct DiscreteVp {
    alphas_cumprod: Vec<f64>,
}

impl Sde for DiscreteVp {
    fn t_max(&self) -> f64 {
        1.0
    }
    fn drift_coef(&self, _t: f64) -> f64 {
        0.0
    }
    fn diffusion(&self, _t: f64) -> f64 {
        0.0
    }
    fn marginal(&self, t: f64) -> Marginal {
        let ab = self.alphas_cumprod[ddpm_step(t, self.alphas_cumprod.len())];
        Marginal {
            mean_coef: ab.sqrt(),
            std: (1.0 - ab).sqrt(),
        }
    }
    fn prior_std(&self) -> f64 {
        1.0
    }
}

/// `ε̂ = −σ_t s*(x, t)`: the exact noise prediction.
#[derive(Debug, Clone)]
struct EpsFromScore<S: Sde + Clone> {
    target: score_core::Diffused<S>,
}

/// Read through `AsOutput` (the default view of `DdpmLoss`), like a network predicting ε.
impl<Bk: Backend, S: Sde + Clone> score_nets::TimeNet<Bk, 2> for EpsFromScore<S> {
    fn forward(&self, x: Tensor<Bk, 2>, t: Tensor<Bk, 1>) -> Tensor<Bk, 2> {
        let (_, std) = self.target.sde().marginal_tensors(t.clone());
        let s = ScoreFn::<Bk, 2>::score(&self.target, x, t);
        -s * std.unsqueeze_dim(1)
    }
}

/// Paired comparison: per-sample `loss(wrong) − loss(exact)` with the same data and noise must be
/// positive beyond 4 standard errors. Returns (mean difference, its standard error).
fn exact_wins<L, F, G>(loss: &L, exact: &F, wrong: &G, x0: Tensor<B, 2>, what: &str) -> (f64, f64)
where
    L: Loss<B, F, 2> + Loss<B, G, 2>,
{
    let noise = NoiseSource::new(11);
    let good = host(loss.per_sample(exact, x0.clone(), &noise, 5));
    let bad = host(loss.per_sample(wrong, x0, &noise, 5));
    let diff: Vec<f64> = bad.iter().zip(&good).map(|(b, g)| b - g).collect();
    let (m, se) = mean_se(&diff);
    let (g, _) = mean_se(&good);
    println!("{what}: exact {g:.4}, wrong − exact = {m:.4} ± {se:.4}");
    assert!(m > 4.0 * se, "{what}: wrong − exact = {m} ± {se}");
    (m, se)
}

#[test]
fn exact_score_beats_a_perturbed_one_for_every_loss() {
    let dev = Default::default();
    let ring = GaussianMixture::ring(8, 4.0, 0.2).unwrap();
    let ve = VeSde::new(0.1, 5.0).unwrap();
    // The perturbation costs about 0.17 per sample under ESM and SSM; the noisiest paired
    // difference (SSM with Gaussian projections) has a per-sample std of ~2.6, so at n = 8000 its
    // standard error is ~0.03 and the gap sits ~6 of them above zero (the check asks for 4).
    let n = 8000;
    let x0 = ring.sample::<B>(n, &NoiseSource::new(1), NoiseKey::new(0, 0), &dev);

    // Static losses look at p_t for one t: σ_t = 0.5 under the VE SDE.
    let t_half = (0.5f64 / 0.1).ln() / 50f64.ln();
    let exact = ring.diffused(ve);
    let wrong = perturb(exact.clone());
    let xt = ring.at(&ve, t_half).unwrap().sample::<B>(
        n,
        &NoiseSource::new(2),
        NoiseKey::new(0, 0),
        &dev,
    );

    // ESM: E[ESM(s) − ESM(s*)] = ½E‖s − s*‖² exactly (Hyvärinen 2005, Theorem 1), so the paired
    // per-sample difference minus ½‖s − s*‖² has mean 0 (checked within 4 standard errors).
    let esm = ExplicitScoreMatching::new()
        .with_view(Exact)
        .with_time(t_half);
    exact_wins(&esm, &exact, &wrong, xt.clone(), "ESM");
    let noise = NoiseSource::new(0);
    let d: Vec<f64> = {
        let good = host(esm.per_sample(&exact, xt.clone(), &noise, 0));
        let bad = host(esm.per_sample(&wrong, xt.clone(), &noise, 0));
        let t = Tensor::<B, 1>::full([n], t_half, &dev);
        let gap = (wrong.score(xt.clone(), t.clone()) - exact.score(xt.clone(), t))
            .square()
            .sum_dim(1)
            .reshape([n]);
        let gap = host(gap);
        (0..n).map(|i| bad[i] - good[i] - 0.5 * gap[i]).collect()
    };
    let (m, se) = mean_se(&d);
    assert!(m.abs() < 4.0 * se, "ESM identity off: {m} ± {se}");

    for (estimator, projection) in [
        (SlicedEstimator::Plain, Projection::Gaussian),
        (SlicedEstimator::VarianceReduced, Projection::Rademacher),
    ] {
        let ssm = SlicedScoreMatching::new(2)
            .unwrap()
            .with_estimator(estimator)
            .with_projection(projection)
            .with_view(Exact)
            .with_time(t_half);
        exact_wins(
            &ssm,
            &exact,
            &wrong,
            xt.clone(),
            &format!("SSM {estimator:?} {projection:?}"),
        );
    }

    let dsm = DenoisingScoreMatching::new(0.5)
        .unwrap()
        .with_view(Exact)
        .with_time(t_half);
    exact_wins(&dsm, &exact, &wrong, x0.clone(), "DSM σ=0.5");

    let ncsn = MultiScaleDsm::new(ve, 10).unwrap().with_view(Exact);
    exact_wins(&ncsn, &exact, &wrong, x0.clone(), "NCSN");

    let sde_ve = SdeLoss::new(ve).unwrap().with_view(Exact);
    exact_wins(&sde_ve, &exact, &wrong, x0.clone(), "SDE VE σ²");
    let vp = VpSde::default();
    let exact_vp = ring.diffused(vp);
    let sde_vp = SdeLoss::new(vp)
        .unwrap()
        .with_weighting(Weighting::Likelihood)
        .with_sampling(TimeSampling::Importance)
        .with_view(Exact);
    exact_wins(
        &sde_vp,
        &exact_vp,
        &perturb(exact_vp.clone()),
        x0.clone(),
        "SDE VP g² IS",
    );

    let ddpm_sde = DiscreteVp {
        alphas_cumprod: alphas_cumprod(&linear_betas(1e-4, 0.02, 1000).unwrap()),
    };
    let exact_ddpm = ring.diffused(ddpm_sde.clone());
    let ddpm = DdpmLoss::new(1e-4, 0.02, 1000).unwrap().with_view(Exact);
    assert_eq!(ddpm.target(), DdpmTarget::Score);
    exact_wins(
        &ddpm,
        &exact_ddpm,
        &perturb(exact_ddpm.clone()),
        x0.clone(),
        "DDPM score",
    );
    let eps = EpsFromScore { target: exact_ddpm };
    let ddpm_eps = DdpmLoss::new(1e-4, 0.02, 1000).unwrap();
    assert_eq!(ddpm_eps.target(), DdpmTarget::Epsilon);
    exact_wins(&ddpm_eps, &eps, &perturb(eps.clone()), x0, "DDPM ε");
}

/// The Gaussian target of the closed-form tests: `N((1, −0.5), diag(0.5, 2))`.
fn gaussian() -> DiagGaussian {
    DiagGaussian::new(vec![1.0, -0.5], vec![0.5, 2.0]).unwrap()
}

#[test]
fn dsm_at_one_sigma_matches_its_closed_form_constant() {
    // At the true score of q_σ = N(μ, v + σ²) the DSM loss is E‖ε/σ‖² − E‖∇log q_σ‖²
    // = Σ_j (1/σ² − 1/(v_j + σ²)), because E[∇log q(x̃|x) | x̃] = ∇log q_σ(x̃).
    let dev = Default::default();
    let sigma = 0.5;
    let g = gaussian();
    let constant: f64 = g
        .variance()
        .iter()
        .map(|v| 1.0 / (sigma * sigma) - 1.0 / (v + sigma * sigma))
        .sum();
    let ve = VeSde::new(0.01, 50.0).unwrap();
    let t = (sigma / 0.01f64).ln() / 5000f64.ln();
    let target = g.to_mixture().diffused(ve);
    let x0 = g
        .to_mixture()
        .sample::<B>(20_000, &NoiseSource::new(3), NoiseKey::new(0, 0), &dev);
    let dsm = DenoisingScoreMatching::new(sigma)
        .unwrap()
        .with_view(Exact)
        .with_time(t);
    let values = host(dsm.per_sample(&target, x0, &NoiseSource::new(4), 0));
    let (m, se) = mean_se(&values);
    println!("DSM σ = {sigma}: {m:.4} ± {se:.4}, closed form {constant:.4}");
    assert!((m - constant).abs() < 4.0 * se, "{m} ± {se} vs {constant}");
}

/// `∫ w(t) dt` over `[a, b]` by Simpson's rule in `u = ln t` (the integrands behave like `1/t`).
fn integrate_log(a: f64, b: f64, w: impl Fn(f64) -> f64) -> f64 {
    let k = 20_000;
    let (la, lb) = (a.ln(), b.ln());
    let h = (lb - la) / k as f64;
    let f = |u: f64| {
        let t = u.exp();
        w(t) * t
    };
    let mut s = f(la) + f(lb);
    for i in 1..k {
        s += f(la + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
    }
    s * h / 3.0
}

#[test]
fn continuous_loss_matches_its_closed_form_constant() {
    // At the true score, the per-time DSM value is Σ_j (1/σ_t² − 1/(a_t² v_j + σ_t²)) (as for
    // single-σ DSM with x scaled by a_t), so the loss is E_t[λ(t)/σ_t² Σ_j a_t² v_j/(a_t² v_j + σ_t²)].
    let dev = Default::default();
    let g = gaussian();
    let mixture = g.to_mixture();
    let n = 20_000;
    let x0 = mixture.sample::<B>(n, &NoiseSource::new(5), NoiseKey::new(0, 0), &dev);
    let eps = 1e-5;

    // VE, λ = σ², sum: with σ_t² = σ_min² e^{kt}, k = 2 ln(σ_max/σ_min), the antiderivative of
    // v/(v + σ_t²) is t − ln(v + σ_t²)/k: fully closed form.
    let ve = VeSde::new(0.01, 5.0).unwrap();
    let k = 2.0 * (5.0f64 / 0.01).ln();
    let anti = |v: f64, t: f64| t - (v + ve.sigma(t).powi(2)).ln() / k;
    let ve_constant: f64 = g
        .variance()
        .iter()
        .map(|&v| (anti(v, 1.0) - anti(v, eps)) / (1.0 - eps))
        .sum();
    let loss = SdeLoss::new(ve)
        .unwrap()
        .with_reduction(Reduction::Sum)
        .with_view(Exact);
    let values = host(loss.per_sample(&mixture.diffused(ve), x0.clone(), &NoiseSource::new(6), 0));
    let (m, se) = mean_se(&values);
    println!("SDE VE λ=σ² sum: {m:.4} ± {se:.4}, closed form {ve_constant:.4}");
    assert!(
        (m - ve_constant).abs() < 4.0 * se,
        "{m} ± {se} vs {ve_constant}"
    );

    // VP, λ = g² (likelihood weighting), sum: g²/σ² ~ 1/t near 0, so the t-integral is done by
    // Simpson's rule in ln t (20,000 panels: quadrature error far below the Monte-Carlo error).
    let vp = VpSde::default();
    let per_t = |t: f64| {
        let Marginal { mean_coef: a, std } = vp.marginal(t);
        let w = (vp.diffusion(t) / std).powi(2);
        w * g
            .variance()
            .iter()
            .map(|&v| a * a * v / (a * a * v + std * std))
            .sum::<f64>()
    };
    let vp_constant = integrate_log(eps, 1.0, per_t) / (1.0 - eps);
    let target = mixture.diffused(vp);
    let mut se_by_sampling = Vec::new();
    for sampling in [TimeSampling::Importance, TimeSampling::Uniform] {
        let loss = SdeLoss::new(vp)
            .unwrap()
            .with_weighting(Weighting::Likelihood)
            .with_reduction(Reduction::Sum)
            .with_sampling(sampling)
            .with_view(Exact);
        let values = host(loss.per_sample(&target, x0.clone(), &NoiseSource::new(7), 0));
        let (m, se) = mean_se(&values);
        println!("SDE VP λ=g² sum {sampling:?}: {m:.4} ± {se:.4}, quadrature {vp_constant:.4}");
        assert!(
            (m - vp_constant).abs() < 4.0 * se,
            "{sampling:?}: {m} ± {se} vs {vp_constant}"
        );
        se_by_sampling.push(se);
    }
    // Importance sampling ∝ λ/σ² makes the weight constant: its standard error must be well
    // below uniform sampling's (measured ratio is printed; a factor 2 is a loose floor).
    assert!(
        2.0 * se_by_sampling[0] < se_by_sampling[1],
        "importance sampling did not cut the variance: {se_by_sampling:?}"
    );
}

/// A model whose output is the constant `c` everywhere, read as a score or as a raw output.
#[derive(Debug, Clone, Copy)]
struct Constant(f32);

impl<Bk: Backend> ScoreFn<Bk, 2> for Constant {
    fn score(&self, x: Tensor<Bk, 2>, _t: Tensor<Bk, 1>) -> Tensor<Bk, 2> {
        x.ones_like().mul_scalar(self.0)
    }
}

impl<Bk: Backend> score_nets::TimeNet<Bk, 2> for Constant {
    fn forward(&self, x: Tensor<Bk, 2>, _t: Tensor<Bk, 1>) -> Tensor<Bk, 2> {
        x.ones_like().mul_scalar(self.0)
    }
}

/// The draws a loss makes at one step, recomputed on the host from the documented streams.
fn draws(noise: &NoiseSource, step: u64, n: usize, d: usize) -> (Vec<f64>, Vec<f64>) {
    use score_train::loss::streams;
    (
        noise.uniform_f64(n, 1, NoiseKey::new(step, streams::TIME)),
        noise.normal_f64(n, d, NoiseKey::new(step, streams::EPS)),
    )
}

/// Per-sample values against hand computations in f64: |f32 − f64| ≤ 1e-5 relative (sums of a
/// few f32 squares).
fn assert_values(what: &str, got: Vec<f64>, want: Vec<f64>) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * w.abs().max(1.0),
            "{what}, sample {i}: {g} vs {w}"
        );
    }
}

#[test]
fn loss_weightings_match_hand_computed_values() {
    let dev = Default::default();
    let (n, d, step) = (16, 3, 7);
    let noise = NoiseSource::new(21);
    let x0 = Tensor::<B, 2>::zeros([n, d], &dev);
    let (u, eps) = draws(&noise, step, n, d);
    let eps_row = |i: usize| &eps[i * d..(i + 1) * d];

    // NCSN with λ(σ) = σ^p, p = 1 and 2, model s ≡ 0.5: σ_i^p Σ_j (0.5 + ε_j/σ_i)²,
    // level i = ⌊u·L⌋.
    let sde = VeSde::new(0.1, 5.0).unwrap();
    for power in [1.0, 2.0] {
        let loss = MultiScaleDsm::new(sde, 6)
            .unwrap()
            .with_power(power)
            .unwrap();
        let sigmas = loss.sigmas().to_vec();
        let want = (0..n)
            .map(|i| {
                let s = sigmas[((u[i] * 6.0) as usize).min(5)];
                s.powf(power)
                    * eps_row(i)
                        .iter()
                        .map(|e| (0.5 + e / s).powi(2))
                        .sum::<f64>()
            })
            .collect();
        let got = host(loss.per_sample(&Constant(0.5), x0.clone(), &noise, step));
        assert_values(&format!("NCSN p = {power}"), got, want);
    }

    // DDPM over N = 10 betas, model output ≡ 0.5; step i = ⌊u·N⌋. ε target (raw output):
    // mean_j (0.5 − ε_j)²; score target (AsScore): mean_j (√(1 − ᾱ_i)·0.5 + ε_j)².
    let abar = alphas_cumprod(&linear_betas(1e-4, 0.2, 10).unwrap());
    let eps_loss = DdpmLoss::new(1e-4, 0.2, 10).unwrap();
    let want = (0..n)
        .map(|i| eps_row(i).iter().map(|e| (0.5 - e).powi(2)).sum::<f64>() / d as f64)
        .collect();
    let got = host(Loss::<B, _, 2>::per_sample(
        &eps_loss,
        &Constant(0.5),
        x0.clone(),
        &noise,
        step,
    ));
    assert_values("DDPM ε", got, want);
    let score_loss = eps_loss.with_view(score_train::AsScore);
    let want = (0..n)
        .map(|i| {
            let k = ((u[i] * 10.0) as usize).min(9);
            let s = (1.0 - abar[k]).sqrt();
            eps_row(i)
                .iter()
                .map(|e| (s * 0.5 + e).powi(2))
                .sum::<f64>()
                / d as f64
        })
        .collect();
    let got = host(Loss::<B, _, 2>::per_sample(
        &score_loss,
        &Constant(0.5),
        x0.clone(),
        &noise,
        step,
    ));
    assert_values("DDPM score", got, want);

    // The continuous loss on VE, t = eps + u(T − eps), model s ≡ 0.5: λ/σ² · Σ_j (σ·0.5 + ε_j)²,
    // divided by d under Reduction::Mean; λ = σ² gives factor 1, λ = g² gives g²/σ², EDM's
    // λ = (σ² + σ_d²)/(σσ_d)² gives (σ² + σ_d²)/σ_d² (VE: the scaled level is σ itself).
    for (weighting, reduction) in [
        (Weighting::SigmaSquared, Reduction::Mean),
        (Weighting::SigmaSquared, Reduction::Sum),
        (Weighting::Likelihood, Reduction::Mean),
        (Weighting::Edm { sigma_data: 0.5 }, Reduction::Mean),
    ] {
        let loss = SdeLoss::new(sde)
            .unwrap()
            .with_weighting(weighting)
            .with_reduction(reduction);
        let want = (0..n)
            .map(|i| {
                let t = 1e-5 + u[i] * (1.0 - 1e-5);
                let sigma = sde.sigma(t);
                let factor = match weighting {
                    Weighting::SigmaSquared => 1.0,
                    Weighting::Likelihood => (sde.diffusion(t) / sigma).powi(2),
                    Weighting::Edm { sigma_data } => {
                        (sigma * sigma + sigma_data * sigma_data) / (sigma_data * sigma_data)
                    }
                };
                let sum = eps_row(i)
                    .iter()
                    .map(|e| (sigma * 0.5 + e).powi(2))
                    .sum::<f64>();
                factor
                    * match reduction {
                        Reduction::Mean => sum / d as f64,
                        Reduction::Sum => sum,
                    }
            })
            .collect();
        let got = host(loss.per_sample(&Constant(0.5), x0.clone(), &noise, step));
        assert_values(&format!("SDE {weighting:?} {reduction:?}"), got, want);
    }
}
