//! CPU backend comparison: one MLP training step (batch 256, 2→128→128→2, SiLU,
//! forward + backward) and a 512² matmul, on NdArray and — with `--features flex` — on Flex.
//!
//! `cargo bench --bench backends --features flex` compares both in one run. Set
//! `SCORE_BENCH_FULL=1` for criterion's full sampling; the default is a short CI-sized run.

use burn::backend::{Autodiff, NdArray};
use burn::tensor::{Tensor, TensorData, activation::silu, backend::Backend};
use criterion::{Criterion, criterion_group, criterion_main};
use score_sde::score_core::{NoiseKey, NoiseSource};

fn mlp_step<B: Backend>(
    params: &[Tensor<Autodiff<B>, 2>],
    x: &Tensor<Autodiff<B>, 2>,
) -> TensorData {
    let mut h = x.clone();
    for (i, w) in params.iter().enumerate() {
        h = h.matmul(w.clone());
        if i + 1 < params.len() {
            h = silu(h);
        }
    }
    let loss = h.square().mean();
    let grads = loss.backward();
    // Reading the gradient back forces the whole step to run.
    params[0].grad(&grads).unwrap().into_data()
}

fn bench_backend<B: Backend>(c: &mut Criterion, name: &str) {
    let dev = B::Device::default();
    let noise = NoiseSource::new(0);
    let dims = [(2, 128), (128, 128), (128, 2)];
    let params: Vec<Tensor<Autodiff<B>, 2>> = dims
        .iter()
        .enumerate()
        .map(|(i, &(a, b))| {
            noise
                .normal::<Autodiff<B>, 2>([a, b], NoiseKey::new(0, i as u32), &dev)
                .mul_scalar(1.0 / (a as f64).sqrt())
                .require_grad()
        })
        .collect();
    let x = noise.normal::<Autodiff<B>, 2>([256, 2], NoiseKey::new(1, 0), &dev);
    c.bench_function(&format!("{name}/mlp_step_b256"), |b| {
        b.iter(|| mlp_step::<B>(&params, &x))
    });
    let a = noise.normal::<B, 2>([512, 512], NoiseKey::new(2, 0), &dev);
    let m = noise.normal::<B, 2>([512, 512], NoiseKey::new(2, 1), &dev);
    c.bench_function(&format!("{name}/matmul_512"), |b| {
        b.iter(|| a.clone().matmul(m.clone()).into_data())
    });
}

fn benches(c: &mut Criterion) {
    bench_backend::<NdArray<f32>>(c, "ndarray");
    #[cfg(feature = "flex")]
    bench_backend::<burn::backend::Flex>(c, "flex");
}

fn config() -> Criterion {
    if std::env::var_os("SCORE_BENCH_FULL").is_some() {
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
