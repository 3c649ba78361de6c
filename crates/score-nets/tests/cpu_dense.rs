//! The fused dense layer (`act(x·W + b)`) and the host time features of `cpu_ops` against
//! burn's composed ops: values, and the gradients of input, weight and bias on `Autodiff` of
//! Flex and NdArray; a small MLP trained 20 Adam steps both ways. The host kernels alone are
//! checked against f64 and central differences in `cpu_ops::dense`'s unit tests; f64 backends
//! keep burn's ops, which `derivatives.rs` checks on `NdArray<f64>` (not here: burn 0.21 keeps
//! one default float type per NdArray device for the whole process, so `NdArray<f64>` beside
//! `NdArray<f32>` in one test binary would change the other tests' tensors).

use burn::backend::{Autodiff, Flex, NdArray};
use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use score_nets::cpu_ops::with_reference_ops;
use score_nets::{
    Activation, EmbeddingKind, TimeEmbeddingConfig, TimeMlp, TimeMlpConfig, dense, dense_act,
};

mod common;
use common::{assert_close, values};

fn tensor<B: Backend, const D: usize>(
    v: Vec<f32>,
    shape: [usize; D],
    dev: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(v, shape), dev)
}

/// A `Linear` with fixed weights in [−1, 1] (and bias when asked).
fn linear<B: Backend>(k: usize, m: usize, bias: bool, seed: u32, dev: &B::Device) -> Linear<B> {
    let mut l = LinearConfig::new(k, m).with_bias(bias).init::<B>(dev);
    l.weight = Param::from_tensor(tensor(values(k * m, seed), [k, m], dev));
    if bias {
        l.bias = Some(Param::from_tensor(tensor(values(m, seed + 1), [m], dev)));
    }
    l
}

/// `None`: the plain dense layer; otherwise the activation.
fn layer<B: Backend>(l: &Linear<B>, x: Tensor<B, 2>, act: Option<Activation>) -> Tensor<B, 2> {
    match act {
        Some(a) => dense_act(l, x, a),
        None => dense(l, x),
    }
}

/// Values and the gradients of `Σ c ⊙ layer(x)` with respect to x, W and b, fast against burn's
/// ops, on `Autodiff<B>`; and the forward on `B` itself.
fn check_against_reference<B: Backend>(dev: &B::Device) {
    type A<B> = Autodiff<B>;
    let acts = [
        None,
        Some(Activation::Silu),
        Some(Activation::Tanh),
        Some(Activation::Softplus),
    ];
    // Batch 1, odd sizes, the seed MLP's first layer (2 + 128 inputs).
    for (n, k, m) in [(1, 3, 5), (7, 13, 17), (64, 130, 128)] {
        for act in acts {
            for bias in [true, false] {
                let what = format!("{n}x{k}->{m} {act:?} bias {bias}");
                let l = linear::<A<B>>(k, m, bias, 11, dev);
                // Scaled so the activations see both their tails and their middle.
                let xv: Vec<f32> = values(n * k, 3).iter().map(|v| 3.0 * v).collect();
                let c = tensor::<A<B>, 2>(values(n * m, 5), [n, m], dev);
                let run = || {
                    let x = tensor::<A<B>, 2>(xv.clone(), [n, k], dev).require_grad();
                    let y = layer(&l, x.clone(), act);
                    let grads = (y.clone() * c.clone()).sum().backward();
                    let gx = x.grad(&grads).expect("input gradient");
                    let gw = l.weight.grad(&grads).expect("weight gradient");
                    let gb = l
                        .bias
                        .as_ref()
                        .map(|b| b.grad(&grads).expect("bias gradient"));
                    (y.inner(), gx, gw, gb)
                };
                let (y, gx, gw, gb) = run();
                let (ry, rgx, rgw, rgb) = with_reference_ops(run);
                assert_close(&format!("{what}: y"), y, ry);
                assert_close(&format!("{what}: dx"), gx, rgx);
                assert_close(&format!("{what}: dW"), gw, rgw);
                if let (Some(gb), Some(rgb)) = (gb, rgb) {
                    assert_close(&format!("{what}: db"), gb, rgb);
                }
                // The plain backend (a sampler's forward).
                let plain = linear::<B>(k, m, bias, 11, dev);
                let x = tensor::<B, 2>(xv.clone(), [n, k], dev);
                let fast = layer(&plain, x.clone(), act);
                let reference = with_reference_ops(|| layer(&plain, x, act));
                assert_close(&format!("{what}: plain y"), fast, reference);
            }
        }
    }
}

#[test]
fn fused_dense_matches_burn_on_flex() {
    check_against_reference::<Flex>(&Default::default());
}

#[test]
fn fused_dense_matches_burn_on_ndarray() {
    check_against_reference::<NdArray<f32>>(&Default::default());
}

/// Sinusoidal and Gaussian-Fourier features on the host against burn's `sin`/`cos`, with `t` up
/// to 1 (arguments up to 1000 for the sinusoidal scale); with `t` in a graph the composed ops
/// run and `t` gets its gradient.
#[test]
fn host_time_features_match_burn() {
    let dev = Default::default();
    let t: Vec<f32> = (0..97).map(|i| i as f32 / 96.0).collect();
    for kind in [
        EmbeddingKind::Sinusoidal {
            max_period: 10000.0,
            scale: 1000.0,
        },
        EmbeddingKind::GaussianFourier {
            scale: 16.0,
            seed: 3,
        },
    ] {
        let cfg = TimeEmbeddingConfig::new()
            .with_dim(64)
            .with_kind(kind.clone());
        let emb = cfg.init::<Flex>(&dev).unwrap();
        let tt = tensor::<Flex, 1>(t.clone(), [t.len()], &dev);
        let fast = emb.features(tt.clone());
        let reference = with_reference_ops(|| emb.features(tt));
        // f32 arguments up to 1000 rad: both sides are within ~1 ulp of the f32 argument's sine.
        assert_close(&format!("{kind:?}"), fast, reference);

        let emb = cfg.init::<Autodiff<Flex>>(&dev).unwrap();
        let tt = tensor::<Autodiff<Flex>, 1>(t.clone(), [t.len()], &dev);
        let fast = emb.forward(tt.clone());
        let reference = with_reference_ops(|| emb.forward(tt.clone()));
        assert_close(
            &format!("{kind:?} through the MLP"),
            fast.inner(),
            reference.inner(),
        );
        let tracked = tt.require_grad();
        let grads = emb.features(tracked.clone()).sum().backward();
        assert!(tracked.grad(&grads).is_some(), "{kind:?}: t's gradient");
    }
}

/// The seed MLP trained 20 Adam steps with the fast ops and with burn's: the same loss curve
/// within float tolerance.
#[test]
fn mlp_training_follows_the_reference_loss_curve() {
    type A = Autodiff<Flex>;
    let dev = Default::default();
    let train = || {
        let mut model: TimeMlp<A> = TimeMlpConfig::new(2)
            .with_hidden_size(64)
            .with_embedding(TimeEmbeddingConfig::new().with_dim(32))
            .init(&dev)
            .unwrap();
        let mut optim = AdamConfig::new().init::<A, TimeMlp<A>>();
        let n = 128;
        let x = tensor::<A, 2>(
            values(2 * n, 7).iter().map(|v| 3.0 * v).collect(),
            [n, 2],
            &dev,
        );
        let t = tensor::<A, 1>(
            values(n, 8).iter().map(|v| 0.5 + 0.5 * v).collect(),
            [n],
            &dev,
        );
        let target = tensor::<A, 2>(values(2 * n, 9), [n, 2], &dev);
        (0..20)
            .map(|_| {
                let loss = (model.forward(x.clone(), t.clone()) - target.clone())
                    .square()
                    .mean();
                let value = loss.clone().into_scalar();
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(1e-2, model.clone(), grads);
                value
            })
            .collect::<Vec<f32>>()
    };
    let fast = train();
    let reference = with_reference_ops(train);
    assert!(
        fast[19] < 0.8 * fast[0],
        "training lowers the loss: {fast:?}"
    );
    for (i, (a, b)) in fast.iter().zip(&reference).enumerate() {
        // Rounding differences of ~1e-7 grow through 20 Adam steps of size 1e-2; 1e-4 relative
        // is still far below the step-to-step change of the loss (~1e-2).
        assert!((a - b).abs() <= 1e-4 * b.abs(), "step {i}: {a} vs {b}");
    }
}
