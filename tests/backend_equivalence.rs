//! Backend swapping is tested, not assumed: the same computations run on the NdArray CPU backend
//! and on the backend the features select (`--features wgpu`, `cuda` or `flex`), and must agree
//! within f32 tolerance. With default features both sides are NdArray, and the test then checks
//! that two runs of the same seeded computation are identical.
//!
//! `scripts/wgpu-check.sh` runs this on wgpu (Mesa's software Vulkan driver on machines without a
//! GPU).

use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::Backend;
use score_sde::backend::Selected;
use score_sde::score_core::tensor::{from_f64, to_f64};
use score_sde::score_core::{
    AnySde, GaussianMixture, NoiseKey, NoiseSource, ScoreFn, Sde, SubVpSde, VeSde, VpSde,
};

/// Named outputs of one backend, all read back to the host.
type Outputs = Vec<(&'static str, Vec<f64>)>;

fn core_suite<B: Backend>() -> Outputs {
    let dev = B::Device::default();
    let noise = NoiseSource::new(2024);
    let mut out = Outputs::new();
    let ring = GaussianMixture::ring(8, 4.0, 0.2).unwrap();
    let x0 = ring.sample::<B>(256, &noise, NoiseKey::new(0, 0), &dev);
    out.push(("exact samples", to_f64(x0.clone())));
    let t_host: Vec<f64> = noise.uniform_f64(256, 1, NoiseKey::new(1, 0));
    let t = from_f64::<B, 1>(&t_host, [256], &dev);
    for (name, sde) in [
        ("ve", AnySde::Ve(VeSde::default())),
        ("vp", AnySde::Vp(VpSde::default())),
        ("subvp", AnySde::SubVp(SubVpSde::default())),
    ] {
        let eps = noise.normal::<B, 2>([256, 2], NoiseKey::new(2, 0), &dev);
        let xt = sde.perturb(x0.clone(), t.clone(), eps);
        let target = ring.diffused(sde);
        let s = target.score(xt.clone(), t.clone());
        let lp = target.log_prob(xt.clone(), t.clone());
        let drift = sde.probability_flow_drift(xt.clone(), s.clone(), 0.5);
        out.push((name, to_f64(xt.clone())));
        out.push(("score", to_f64(s)));
        out.push(("log_prob", to_f64(lp)));
        out.push(("pf drift", to_f64(drift)));
        out.push(("prior log_prob", to_f64(sde.prior_log_prob(xt))));
    }
    out
}

/// A two-layer SiLU network written with matmuls, and its parameter gradient by autodiff.
fn autodiff_suite<B: Backend>() -> Outputs {
    type A<B> = Autodiff<B>;
    let dev = B::Device::default();
    let noise = NoiseSource::new(7);
    let w1 = noise
        .normal::<A<B>, 2>([2, 32], NoiseKey::new(0, 0), &dev)
        .require_grad();
    let w2 = noise
        .normal::<A<B>, 2>([32, 2], NoiseKey::new(0, 1), &dev)
        .mul_scalar(0.2);
    let x = noise.normal::<A<B>, 2>([64, 2], NoiseKey::new(0, 2), &dev);
    let h = burn::tensor::activation::silu(x.matmul(w1.clone()));
    let y = h.matmul(w2);
    let loss = y.clone().square().mean();
    let grads = loss.backward();
    let g = w1.grad(&grads).unwrap();
    vec![("mlp output", to_f64(y.inner())), ("mlp grad", to_f64(g))]
}

fn compare(a: Outputs, b: Outputs) {
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert_eq!(x.len(), y.len(), "{name}: lengths");
        let scale = x.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        for (i, (u, v)) in x.iter().zip(y).enumerate() {
            // f32 kernels on different backends differ in summation order and transcendental
            // implementations: a few ulps per op, ~1e-5 relative after the dozen ops here.
            assert!(
                (u - v).abs() <= 1e-4 * scale,
                "{name}[{i}]: ndarray {u} vs selected backend {v}"
            );
        }
    }
}

#[test]
fn core_maths_agree_across_backends() {
    compare(core_suite::<NdArray<f32>>(), core_suite::<Selected>());
}

#[test]
fn autodiff_agrees_across_backends() {
    compare(
        autodiff_suite::<NdArray<f32>>(),
        autodiff_suite::<Selected>(),
    );
}
