//! Backend swapping is tested, not assumed: the same computations run on the NdArray CPU backend
//! and on every other backend the features enable (`--features flex,wgpu,cuda`), and must agree
//! within f32 tolerance. NdArray runs each suite twice: a seeded run must repeat exactly. The
//! U-Net suite holds the CPU backends' host kernels (convolution, GroupNorm + SiLU, skip
//! concatenation, with their backwards) to burn's own ops, which wgpu and CUDA run.
//!
//! `scripts/wgpu-check.sh` runs this on wgpu (Mesa's software Vulkan driver on machines without a
//! GPU).

use burn::backend::{Autodiff, NdArray};
use burn::module::AutodiffModule;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use score_sde::score_core::tensor::{from_f64, to_f64};
use score_sde::score_core::{
    AnySde, GaussianMixture, NoiseKey, NoiseSource, ScoreFn, Sde, SubVpSde, VeSde, VpSde,
};
use score_sde::score_nets::{
    TimeEmbeddingConfig, TimeMlpConfig, UNetConfig, load_module, save_module,
};
use score_sde::score_sample::{PcSamplerConfig, TimeGrid};

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

/// A time-conditioned MLP with the same weights on both backends (saved from NdArray, loaded on
/// the other), and a short predictor–corrector run on the exact ring score.
fn model_and_sampler_suite<B: Backend>(weights: &std::path::Path) -> Outputs {
    let dev = B::Device::default();
    let noise = NoiseSource::new(3);
    let cfg = TimeMlpConfig::new(2)
        .with_hidden_size(64)
        .with_num_layers(2);
    let net = load_module(cfg.init::<B>(&dev).unwrap(), weights, &dev).unwrap();
    let x = noise.normal::<B, 2>([128, 2], NoiseKey::new(0, 0), &dev);
    let t = noise.uniform::<B, 1>([128], NoiseKey::new(0, 1), &dev);
    let y = net.forward(x, t);

    let sde = VeSde::new(0.01, 10.0).unwrap();
    let target = GaussianMixture::ring(8, 4.0, 0.2).unwrap().diffused(sde);
    let grid = TimeGrid::reverse(&sde, 1e-3, 20).unwrap();
    let out = PcSamplerConfig::new()
        .init(sde)
        .unwrap()
        .sample::<B, 2, _>(&target, &grid, [256, 2], &noise, &dev)
        .unwrap();
    vec![("mlp forward", to_f64(y)), ("pc samples", to_f64(out.x))]
}

/// A small U-Net with every kind of layer the MNIST and CIFAR-10 networks have (3×3 and
/// stride-2 convolutions, GroupNorm + SiLU, skip concatenation, upsampling convolutions,
/// attention), the same weights on every backend: its output, and the gradients of `Σ y²`
/// for the input and for three parameters. On NdArray and Flex these run the library's host
/// kernels (`score_nets::cpu_ops`), on wgpu and CUDA burn's own ops, so this is where the two
/// implementations are held to each other.
fn unet_suite<B: Backend>(weights: &std::path::Path) -> Outputs {
    type A<B> = Autodiff<B>;
    let dev = B::Device::default();
    let noise = NoiseSource::new(5);
    let net = load_module(unet_config().init::<A<B>>(&dev).unwrap(), weights, &dev).unwrap();
    let x = noise
        .normal::<A<B>, 4>([2, 1, 12, 12], NoiseKey::new(0, 0), &dev)
        .require_grad();
    let t = noise.uniform::<A<B>, 1>([2], NoiseKey::new(0, 1), &dev);
    let y = net.forward(x.clone(), t.clone());
    let grads = y.clone().square().sum().backward();
    let grad = |p: Option<Tensor<B, 4>>| to_f64(p.expect("a gradient"));
    let plain = net.valid().forward(x.clone().inner(), t.inner());
    vec![
        ("unet forward", to_f64(plain)),
        ("unet output", to_f64(y.inner())),
        ("unet d input", grad(x.grad(&grads))),
        ("unet d conv_in", grad(net.conv_in.weight.grad(&grads))),
        ("unet d down", grad(net.downsample[0].weight.grad(&grads))),
        (
            "unet d norm γ",
            to_f64(net.norm_out.gamma.as_ref().unwrap().grad(&grads).unwrap()),
        ),
    ]
}

fn unet_config() -> UNetConfig {
    UNetConfig::new()
        .with_base_channels(8)
        .with_channel_mults(vec![1, 2])
        .with_upsample_conv(true)
        .with_attention_levels(vec![1])
        .with_groups(4)
        .with_embedding(
            TimeEmbeddingConfig::new()
                .with_dim(8)
                .with_out_dim(Some(16)),
        )
}

#[cfg(any(feature = "flex", feature = "wgpu", feature = "cuda"))]
fn compare(backend: &str, tolerance: f64, a: &Outputs, b: Outputs) {
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert_eq!(x.len(), y.len(), "{backend} {name}: lengths");
        let scale = x.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let worst = x
            .iter()
            .zip(y)
            .map(|(u, v)| (u - v).abs())
            .fold(0.0, f64::max);
        println!("{backend:>8} {name:<16} max |diff| = {worst:.2e} (scale {scale:.2e})");
        for (i, (u, v)) in x.iter().zip(y).enumerate() {
            assert!(
                (u - v).abs() <= tolerance * scale,
                "{backend} {name}[{i}]: ndarray {u} vs {v}"
            );
        }
    }
}

/// f32 kernels on different backends differ in summation order and transcendental
/// implementations: a few ulps per op, ~1e-5 relative after the dozen ops of a suite.
#[cfg(any(feature = "flex", feature = "wgpu"))]
const F32_TOLERANCE: f64 = 1e-4;
/// CUDA's f32 matmul runs on TF32 tensor cores (10-bit mantissa, 2^-11 ≈ 4.9e-4 relative per
/// rounded input), so matmul outputs agree to ~1e-3 (measured 1.5e-3 on an H200).
#[cfg(feature = "cuda")]
const TF32_TOLERANCE: f64 = 5e-3;

/// Runs a suite on NdArray (twice: seeded runs must repeat exactly) and on every other backend
/// the features enable, comparing each with the first NdArray run.
macro_rules! on_every_backend {
    ($suite:ident $(, $arg:expr)*) => {{
        let reference = $suite::<NdArray<f32>>($($arg),*);
        let again = $suite::<NdArray<f32>>($($arg),*);
        assert_eq!(reference, again, "a seeded computation must repeat exactly");
        #[cfg(feature = "flex")]
        compare("flex", F32_TOLERANCE, &reference, $suite::<burn::backend::Flex>($($arg),*));
        #[cfg(feature = "wgpu")]
        compare("wgpu", F32_TOLERANCE, &reference, $suite::<burn::backend::Wgpu>($($arg),*));
        #[cfg(feature = "cuda")]
        compare("cuda", TF32_TOLERANCE, &reference, $suite::<burn::backend::Cuda>($($arg),*));
    }};
}

#[test]
fn core_maths_agree_across_backends() {
    on_every_backend!(core_suite);
}

#[test]
fn networks_and_samplers_agree_across_backends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mlp.bin");
    let cfg = TimeMlpConfig::new(2)
        .with_hidden_size(64)
        .with_num_layers(2);
    let net = cfg.init::<NdArray<f32>>(&Default::default()).unwrap();
    save_module(&net, &path).unwrap();
    on_every_backend!(model_and_sampler_suite, &path);
}

#[test]
fn autodiff_agrees_across_backends() {
    on_every_backend!(autodiff_suite);
}

#[test]
fn unet_and_its_gradients_agree_across_backends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("unet.bin");
    let net = unet_config()
        .init::<NdArray<f32>>(&Default::default())
        .unwrap();
    save_module(&net, &path).unwrap();
    on_every_backend!(unet_suite, &path);
    // NdArray once more with burn's own ops instead of the host kernels: the CPU-only check of
    // what the wgpu and CUDA legs compare.
    #[cfg(any(feature = "flex", feature = "wgpu"))]
    compare(
        "ndarray, burn's ops",
        F32_TOLERANCE,
        &unet_suite::<NdArray<f32>>(&path),
        score_sde::score_nets::cpu_ops::with_reference_ops(|| unet_suite::<NdArray<f32>>(&path)),
    );
}
