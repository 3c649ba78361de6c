//! Glue shared by the score-sample integration tests (a module of each test binary, not a test
//! itself). The reusable fixtures — the ring, exact samples, the acceptance check — live in
//! `score_sample::testing`; what is here is test-only: backends, the SDE list, the sampler
//! family shared by `sde_samplers.rs` and `wrong_samplers.rs`, and a rotated-Gaussian score.

#![allow(dead_code)]

use std::sync::OnceLock;

use burn::backend::{Autodiff, NdArray};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use score_core::{AnySde, ScoreFn, SubVpSde, VeSde, VpSde, tensor::to_f64};
use score_sample::testing::{Bias, ErrorBudget, RingAcceptance, ring};
use score_sample::{AncestralVariance, CorrectorKind, PredictorKind};

pub type B = NdArray<f32>;
pub type A = Autodiff<B>;

/// Sample size of every ring check. At n = 2000 a mode's count has standard deviation
/// √(2000·⅛·⅞) ≈ 14.8, so a mode whose weight is 5 points too high (+100 expected points) is
/// 6.8 of them away; at 1000 it would be 4.8 and a Bonferroni-sized interval could miss it.
pub const N: usize = 2000;

/// The three SDEs. σ_max = 10 covers the ring's diameter (8), as in the PyTorch reference.
pub fn sdes() -> [AnySde; 3] {
    [
        AnySde::Ve(VeSde::new(0.01, 10.0).unwrap()),
        AnySde::Vp(VpSde::default()),
        AnySde::SubVp(SubVpSde::default()),
    ]
}

/// Short name of an SDE for messages and bias tables.
pub fn sde_name(sde: &AnySde) -> &'static str {
    match sde {
        AnySde::Ve(_) => "VE",
        AnySde::Vp(_) => "VP",
        AnySde::SubVp(_) => "sub-VP",
    }
}

/// The first entry of a `[n]` time tensor (the batch's common time).
pub fn first<Bk: Backend>(t: Tensor<Bk, 1>) -> f64 {
    to_f64(t)[0]
}

/// Whether this run measures biases instead of asserting (see `sde_samplers.rs`).
pub fn measuring_bias() -> bool {
    std::env::var_os("SCORE_SAMPLE_BIAS_TABLE").is_some()
}

/// The predictor–corrector configurations of `sde_samplers.rs`: name, predictor, corrector,
/// steps (100 steps with a corrector, 200 without: 200 score evaluations each).
pub fn pc_configs() -> [(&'static str, PredictorKind, CorrectorKind, usize); 6] {
    let lang = CorrectorKind::Langevin {
        snr: 0.16,
        n_steps: 1,
    };
    let ald = CorrectorKind::AnnealedLangevin {
        snr: 0.16,
        n_steps: 1,
    };
    [
        (
            "Euler-Maruyama",
            PredictorKind::EulerMaruyama,
            CorrectorKind::None,
            200,
        ),
        (
            "reverse diffusion",
            PredictorKind::ReverseDiffusion,
            CorrectorKind::None,
            200,
        ),
        (
            "ancestral (posterior var)",
            PredictorKind::Ancestral(AncestralVariance::Posterior),
            CorrectorKind::None,
            200,
        ),
        (
            "ancestral (forward var)",
            PredictorKind::Ancestral(AncestralVariance::Forward),
            CorrectorKind::None,
            200,
        ),
        (
            "reverse diffusion + Langevin",
            PredictorKind::ReverseDiffusion,
            lang,
            100,
        ),
        (
            "Euler-Maruyama + annealed Langevin",
            PredictorKind::EulerMaruyama,
            ald,
            100,
        ),
    ]
}

/// Seed of the predictor–corrector runs.
pub const PC_SEED: u64 = 7;
/// Seed of the DDPM runs.
pub const DDPM_SEED: u64 = 4;

/// Sampler runs checked in `sde_samplers.rs`: 6 PC configurations × 3 SDEs + 2 DDPM variances.
pub const SDE_RUNS: usize = 20;

/// The family-wise error rate of each test file.
pub const FWER: f64 = 0.05;

/// The acceptance check of `sde_samplers.rs` (and of `wrong_samplers.rs`, which must fail the
/// very same thresholds): FWER 0.05 over 20 runs. Per run: SW at level 0.05·0.4/20 = 1e-3
/// (999 floor replicates, threshold = their maximum), each of 8 mode counts at
/// 0.05·0.3/160 ≈ 9.4e-5 (exact binomial interval, about ±3.9 standard deviations), each of 4
/// shape statistics at 0.05·0.3/80 ≈ 1.9e-4 (two-sided, z ≈ 3.73).
/// Built once per test binary and shared by its tests.
pub fn sde_acceptance() -> &'static RingAcceptance {
    static CHECK: OnceLock<RingAcceptance> = OnceLock::new();
    CHECK.get_or_init(|| RingAcceptance::new(ring(), N, ErrorBudget::new(FWER, SDE_RUNS), true))
}

/// Known biases of the predictor–corrector samplers of [`pc_configs`] on the ring (radial mean
/// offset, relative radial and tangential variance changes), measured with
/// `SCORE_SAMPLE_BIAS_TABLE=1` (20,000 points, seed 77; see `sde_samplers.rs`).
pub fn pc_bias(sde: &str, config: &str) -> Bias {
    let b = Bias::measured;
    match (sde, config) {
        ("VE", "Euler-Maruyama") => b(-0.0022, -0.0181, 0.0026),
        ("VE", "reverse diffusion") => b(-0.0017, 0.0174, 0.0391),
        ("VE", "ancestral (posterior var)") => b(-0.0030, -0.0513, -0.0283),
        ("VE", "ancestral (forward var)") => b(-0.0017, 0.0174, 0.0391),
        ("VE", "reverse diffusion + Langevin") => b(0.0005, 0.0083, 0.0267),
        ("VE", "Euler-Maruyama + annealed Langevin") => b(-0.0024, -0.0088, 0.0009),
        ("VP", "Euler-Maruyama") => b(0.0053, -0.0150, -0.0089),
        ("VP", "reverse diffusion") => b(-0.0036, 0.0512, 0.0471),
        ("VP", "ancestral (posterior var)") => b(-0.0025, -0.1399, -0.1319),
        ("VP", "ancestral (forward var)") => b(-0.0022, 0.0418, 0.0498),
        ("VP", "reverse diffusion + Langevin") => b(-0.0057, 0.0359, 0.0501),
        ("VP", "Euler-Maruyama + annealed Langevin") => b(0.0098, -0.0558, -0.0453),
        ("sub-VP", "Euler-Maruyama") => b(0.0092, 0.0125, 0.0050),
        ("sub-VP", "reverse diffusion") => b(0.0092, 0.0125, 0.0050),
        ("sub-VP", "ancestral (posterior var)") => b(-0.0041, -0.0833, -0.0919),
        ("sub-VP", "ancestral (forward var)") => b(-0.0039, 0.0511, 0.0458),
        ("sub-VP", "reverse diffusion + Langevin") => b(0.0128, 0.0103, 0.0049),
        ("sub-VP", "Euler-Maruyama + annealed Langevin") => b(0.0207, 0.0051, 0.0140),
        _ => panic!("no measured bias for {sde} {config}"),
    }
}

/// The score of `x ↦ p(R x)` for an orthogonal `R` (row-major `d × d`) and a score `inner` of
/// `p`: `Rᵀ·s(R x)`. With `p` a diagonal Gaussian diffused by score-core, this is the exact
/// tensor score of a correlated Gaussian `N(Rᵀμ, Rᵀ diag(v) R)` under the same SDE (the SDE's
/// isotropic noise commutes with `R`). Samples of any rank are flattened to `d` per sample.
pub struct Rotated<F> {
    pub inner: F,
    pub r: Vec<f64>,
    pub d: usize,
}

impl<Bk: Backend, const D: usize, F: ScoreFn<Bk, 2>> ScoreFn<Bk, D> for Rotated<F> {
    fn score(&self, x: Tensor<Bk, D>, t: Tensor<Bk, 1>) -> Tensor<Bk, D> {
        let (dims, device) = (x.dims(), x.device());
        let n = dims[0];
        let data: Vec<f32> = self.r.iter().map(|&v| v as f32).collect();
        let r = Tensor::<Bk, 2>::from_data(TensorData::new(data, [self.d, self.d]), &device);
        // Rows are samples: u = x Rᵀ, and the score Rᵀ s(u) as rows is s(u) R.
        let u = x.reshape([n, self.d]).matmul(r.clone().transpose());
        self.inner.score(u, t).matmul(r).reshape(dims)
    }
}
