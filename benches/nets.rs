//! Score networks: forward and forward + backward of the time-conditioned MLP (seed 000 defaults:
//! 2-D input, hidden 256×3, embedding 128; batch 256) and of the MNIST U-Net
//! (`UNetConfig::mnist()`, 1×28×28; batch 64), on NdArray and — with `--features flex` — Flex.
//!
//! The U-Net runs its convolutions on score-nets' fast CPU kernels (`cpu_ops`) where the backend
//! has them; the `*_burn_ops` entries time the same network on burn's own ops
//! (`with_reference_ops`), interleaved with the fast ones, for the speed-up.
//!
//! With Flex, the `train_step` entries time issue 8's targets as the PyTorch twin
//! `benches/reference/torch_unet.py` does (forward, loss, backward, Adam), for the MNIST U-Net
//! at batch 64 and the CIFAR-10 U-Net at batch 32 (also its forward);
//! `benches/reference/compare_unet.py` runs both sides interleaved and prints the ratios.
//!
//! Like the examples, the bench first calls `score_sde::memory::keep_freed_memory`, so that
//! glibc keeps the U-Net's freed buffers for the next iteration instead of returning them to the
//! kernel.
//!
//! `cargo bench --bench nets [--features flex]`. Set `SCORE_BENCH_FULL=1` for criterion's full
//! sampling; the default is a short CI-sized run: 10 samples, the U-Net measured with flat
//! sampling (10 iterations: one forward + backward takes seconds on a CPU backend), and the
//! NdArray U-Net forward + backward — about 90 s an iteration on the 2-core machine here —
//! left to the full run. Every iteration reads its result back to the host, so the device has
//! finished before the clock stops.

use burn::backend::{Autodiff, NdArray};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use score_sde::score_core::{NoiseKey, NoiseSource};
use score_sde::score_nets::cpu_ops::with_reference_ops;
use score_sde::score_nets::{TimeMlp, TimeMlpConfig, UNet, UNetConfig};
use score_sde::score_train::FusedAdam;

fn full() -> bool {
    std::env::var_os("SCORE_BENCH_FULL").is_some()
}

fn inputs<B: Backend, const D: usize>(
    shape: [usize; D],
    dev: &B::Device,
) -> (Tensor<B, D>, Tensor<B, 1>) {
    let noise = NoiseSource::new(0);
    let x = noise.normal::<B, D>(shape, NoiseKey::new(0, 0), dev);
    let t = noise.uniform::<B, 1>([shape[0]], NoiseKey::new(0, 1), dev);
    (x, t)
}

/// Loss `mean(out²)` backpropagated; reading one gradient back forces the whole step.
fn backward<B: Backend, const D: usize>(
    out: Tensor<Autodiff<B>, D>,
    weight: &Tensor<Autodiff<B>, D>,
) -> TensorData {
    let grads = out.square().mean().backward();
    weight.grad(&grads).expect("gradient").into_data()
}

/// `unet_backward`: whether to time the U-Net's forward + backward.
fn bench_backend<B: Backend>(c: &mut Criterion, name: &str, unet_backward: bool) {
    let dev = B::Device::default();
    let mut group = c.benchmark_group(name);

    let mlp_cfg = TimeMlpConfig::new(2);
    let mlp: TimeMlp<B> = mlp_cfg.init(&dev).expect("valid config");
    let (x, t) = inputs::<B, 2>([256, 2], &dev);
    group.bench_function("mlp_forward_b256", |b| {
        b.iter(|| mlp.forward(x.clone(), t.clone()).into_data())
    });
    let mlp: TimeMlp<Autodiff<B>> = mlp_cfg.init(&dev).expect("valid config");
    let (x, t) = inputs::<Autodiff<B>, 2>([256, 2], &dev);
    let w = mlp.layers[0].weight.val();
    group.bench_function("mlp_forward_backward_b256", |b| {
        b.iter(|| backward(mlp.forward(x.clone(), t.clone()), &w))
    });

    if !full() {
        group.sampling_mode(SamplingMode::Flat);
    }
    let unet: UNet<B> = UNetConfig::mnist().init(&dev).expect("valid config");
    let (x, t) = inputs::<B, 4>([64, 1, 28, 28], &dev);
    group.bench_function("unet_mnist_forward_b64", |b| {
        b.iter(|| unet.forward(x.clone(), t.clone()).into_data())
    });
    group.bench_function("unet_mnist_forward_b64_burn_ops", |b| {
        b.iter(|| with_reference_ops(|| unet.forward(x.clone(), t.clone()).into_data()))
    });
    if unet_backward {
        let unet: UNet<Autodiff<B>> = UNetConfig::mnist().init(&dev).expect("valid config");
        let (x, t) = inputs::<Autodiff<B>, 4>([64, 1, 28, 28], &dev);
        let w = unet.conv_in.weight.val();
        group.bench_function("unet_mnist_forward_backward_b64", |b| {
            b.iter(|| backward(unet.forward(x.clone(), t.clone()), &w))
        });
        group.bench_function("unet_mnist_forward_backward_b64_burn_ops", |b| {
            b.iter(|| with_reference_ops(|| backward(unet.forward(x.clone(), t.clone()), &w)))
        });
    }
    group.finish();
}

/// One training step as the PyTorch twin (`benches/reference/torch_unet.py`) times it: forward,
/// mean-square loss against the input, backward, Adam update (lr 2e-4, the trainer's `FusedAdam`); reading the output
/// bias back forces the whole step.
fn train_step<B: Backend>(
    net: UNet<Autodiff<B>>,
    opt: &mut impl Optimizer<UNet<Autodiff<B>>, Autodiff<B>>,
    x: &Tensor<Autodiff<B>, 4>,
    t: &Tensor<Autodiff<B>, 1>,
) -> UNet<Autodiff<B>> {
    let loss = (net.forward(x.clone(), t.clone()) - x.clone())
        .square()
        .mean();
    let grads = GradientsParams::from_grads(loss.backward(), &net);
    let net = opt.step(2e-4, net, grads);
    let bias = net.conv_out.bias.as_ref().expect("conv_out has a bias");
    std::hint::black_box(bias.val().into_data());
    net
}

/// Issue 8's targets beside the twin: the MNIST U-Net's train step at batch 64, and the
/// CIFAR-10 U-Net's forward and train step at batch 32.
fn bench_training<B: Backend>(c: &mut Criterion, name: &str) {
    let dev = B::Device::default();
    let mut group = c.benchmark_group(name);
    if !full() {
        group.sampling_mode(SamplingMode::Flat);
    }
    for (config, cfg, shape) in [
        ("mnist", UNetConfig::mnist(), [64, 1, 28, 28]),
        ("cifar10", UNetConfig::cifar10(), [32, 3, 32, 32]),
    ] {
        let batch = shape[0];
        if config == "cifar10" {
            let unet: UNet<B> = cfg.init(&dev).expect("valid config");
            let (x, t) = inputs::<B, 4>(shape, &dev);
            group.bench_function(format!("unet_{config}_forward_b{batch}"), |b| {
                b.iter(|| unet.forward(x.clone(), t.clone()).into_data())
            });
        }
        let mut net = Some(cfg.init::<Autodiff<B>>(&dev).expect("valid config"));
        // The trainer's Adam (burn's arithmetic as one host pass per parameter on the CPU
        // backends), against the twin's `torch.optim.Adam`.
        let mut opt = FusedAdam::init::<Autodiff<B>, UNet<Autodiff<B>>>(&AdamConfig::new());
        let (x, t) = inputs::<Autodiff<B>, 4>(shape, &dev);
        group.bench_function(format!("unet_{config}_train_step_b{batch}"), |b| {
            b.iter(|| {
                let n = net.take().expect("the network is put back after each step");
                net = Some(train_step(n, &mut opt, &x, &t));
            })
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    // As the examples do: freed activation buffers stay in the process (`score_sde::memory`).
    score_sde::memory::keep_freed_memory();
    bench_backend::<NdArray<f32>>(c, "ndarray", full());
    #[cfg(feature = "flex")]
    bench_backend::<burn::backend::Flex>(c, "flex", true);
    #[cfg(feature = "flex")]
    bench_training::<burn::backend::Flex>(c, "flex");
}

fn config() -> Criterion {
    if full() {
        Criterion::default()
    } else {
        Criterion::default()
            .sample_size(10)
            .warm_up_time(std::time::Duration::from_millis(200))
            .measurement_time(std::time::Duration::from_millis(800))
    }
}

criterion_group! { name = group; config = config(); targets = benches }
criterion_main!(group);
