//! Score networks: forward and forward + backward of the time-conditioned MLP (seed 000 defaults:
//! 2-D input, hidden 256×3, embedding 128; batch 256) and of the MNIST U-Net
//! (`UNetConfig::mnist()`, 1×28×28; batch 64), on NdArray and — with `--features flex` — Flex.
//!
//! The U-Net runs its convolutions on score-nets' fast CPU kernels (`cpu_ops`) where the backend
//! has them; the `*_burn_ops` entries time the same network on burn's own ops
//! (`with_reference_ops`), interleaved with the fast ones, for the speed-up.
//!
//! `cargo bench --bench nets [--features flex]`. Set `SCORE_BENCH_FULL=1` for criterion's full
//! sampling; the default is a short CI-sized run: 10 samples, the U-Net measured with flat
//! sampling (10 iterations: one forward + backward takes seconds on a CPU backend), and the
//! NdArray U-Net forward + backward — about 90 s an iteration on the 2-core machine here —
//! left to the full run. Every iteration reads its result back to the host, so the device has
//! finished before the clock stops.

use burn::backend::{Autodiff, NdArray};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use score_sde::score_core::{NoiseKey, NoiseSource};
use score_sde::score_nets::cpu_ops::with_reference_ops;
use score_sde::score_nets::{TimeMlp, TimeMlpConfig, UNet, UNetConfig};

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

fn benches(c: &mut Criterion) {
    bench_backend::<NdArray<f32>>(c, "ndarray", full());
    #[cfg(feature = "flex")]
    bench_backend::<burn::backend::Flex>(c, "flex", true);
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
