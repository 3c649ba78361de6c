//! The energy MLP's host score (`cpu_ops::energy_mlp_score`, `EnergyFn::direct_score`) against
//! burn's nested autodiff of the energy: the score's values, and the gradients a loss on the
//! score gives the parameters and `x` (second derivatives of `E`), on `Autodiff` of Flex and
//! NdArray, for `EnergyMlp` and the concatenation-conditioned `NoiseConditionalEnergy`; the
//! plain-backend score a sampler uses; and a 20-step denoising score matching run
//! both ways. The host kernels alone are checked against f64 and central differences in
//! `cpu_ops::energy`'s unit tests.

use burn::backend::{Autodiff, Flex, NdArray};
use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use score_core::{EnergyFn, energy_score};
use score_nets::cpu_ops::with_reference_ops;
use score_nets::{
    Activation, EnergyMlp, EnergyMlpConfig, NoiseConditionalEnergy, NoiseConditionalEnergyConfig,
};

mod common;
use common::{assert_close, param_grads, values};

fn tensor<B: Backend, const D: usize>(
    v: Vec<f32>,
    shape: [usize; D],
    dev: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(v, shape), dev)
}

/// The score of `model` on `Autodiff<B>` by burn's nested autodiff: the energy on
/// `Autodiff<Autodiff<B>>` with the same parameters (ids included), differentiated in `x`.
fn nested_score<B: Backend>(
    model: &EnergyMlp<Autodiff<B>>,
    x: Tensor<Autodiff<B>, 2>,
) -> Tensor<Autodiff<B>, 2> {
    let twice =
        <EnergyMlp<Autodiff<Autodiff<B>>> as AutodiffModule<Autodiff<Autodiff<B>>>>::from_inner(
            model.clone(),
        );
    let t = Tensor::zeros([x.dims()[0]], &x.device());
    with_reference_ops(|| energy_score::<Autodiff<Autodiff<B>>, _, 2>(&twice, x, t))
}

/// Every gradient a loss on the score gives: `x`, then `W`, `b` per hidden layer, then the
/// output weight.
fn all_grads<B: Backend>(
    model: &EnergyMlp<Autodiff<B>>,
    x: &Tensor<Autodiff<B>, 2>,
    loss: Tensor<Autodiff<B>, 1>,
) -> Vec<Tensor<B, 2>> {
    let grads = loss.backward();
    let mut out = vec![x.grad(&grads).expect("x gradient")];
    for l in &model.layers {
        out.push(l.weight.grad(&grads).expect("weight gradient"));
        let b = l
            .bias
            .as_ref()
            .unwrap()
            .grad(&grads)
            .expect("bias gradient");
        out.push(b.unsqueeze_dim(0));
    }
    out.push(
        model
            .output
            .weight
            .grad(&grads)
            .expect("output weight gradient"),
    );
    // The output bias shifts E, not its gradient: neither side gives it one.
    assert!(model.output.bias.as_ref().unwrap().grad(&grads).is_none());
    out
}

fn check_against_nested_autodiff<B: Backend>(dev: &B::Device) {
    type A<B> = Autodiff<B>;
    // Batch 1, odd sizes, seed 001's network (3 × 128) and the twin's (2 × 128).
    for (n, d, hidden, layers) in [
        (1, 2, 5, 1),
        (7, 3, 17, 2),
        (64, 2, 128, 3),
        (33, 2, 128, 2),
    ] {
        for act in [Activation::Silu, Activation::Tanh] {
            let what = format!("n {n}, d {d}, {layers} × {hidden} {act:?}");
            let model = EnergyMlpConfig::new(d)
                .with_hidden_size(hidden)
                .with_num_layers(layers)
                .with_activation(act)
                .with_seed(7)
                .init::<A<B>>(dev)
                .unwrap();
            // Scaled so the activations see both their tails and their middle.
            let xv: Vec<f32> = values(n * d, 3).iter().map(|v| 2.5 * v).collect();
            let c = tensor::<A<B>, 2>(values(n * d, 5), [n, d], dev);
            let x = tensor::<A<B>, 2>(xv.clone(), [n, d], dev).require_grad();
            let t = Tensor::zeros([n], dev);
            let fast = model
                .direct_score(&x, &t)
                .unwrap_or_else(|| panic!("{what}: the host score applies"));
            let reference = nested_score(&model, x.clone());
            assert_close(
                &format!("{what}: s"),
                fast.clone().inner(),
                reference.clone().inner(),
            );
            // A loss on the score: linear and quadratic terms, as DSM's (s + ε/σ)².
            let loss = |s: Tensor<A<B>, 2>| (s.clone() * c.clone() + s.square()).sum();
            let got = all_grads(&model, &x, loss(fast));
            let want = all_grads(&model, &x, loss(reference));
            for (i, (g, w)) in got.into_iter().zip(want).enumerate() {
                assert_close(&format!("{what}: gradient {i}"), g, w);
            }
            // The plain backend (a sampler's score), and `energy_score` taking the host path.
            let plain = model.valid();
            let xp = tensor::<B, 2>(xv, [n, d], dev);
            let s = plain.direct_score(&xp, &Tensor::zeros([n], dev)).unwrap();
            let via = energy_score::<A<B>, _, 2>(&model, xp.clone(), Tensor::zeros([n], dev));
            let reference = with_reference_ops(|| {
                energy_score::<A<B>, _, 2>(&model, xp, Tensor::zeros([n], dev))
            });
            assert_close(&format!("{what}: plain s"), s, reference.clone());
            assert_close(&format!("{what}: energy_score"), via, reference);
        }
    }
}

/// The noise-conditional energy (`[x | emb(σ)]` into the MLP): the host score in the columns
/// of `x` against nested autodiff, with every parameter's gradient (the embedding's through
/// burn's ops) and `x`'s.
fn check_noise_conditional<B: Backend>(dev: &B::Device) {
    type A<B> = Autodiff<B>;
    for (n, layers) in [(1, 1), (9, 2), (64, 3)] {
        let what = format!("n {n}, {layers} layers");
        let model = NoiseConditionalEnergyConfig::new(2)
            .with_hidden_size(32)
            .with_num_layers(layers)
            .with_seed(5)
            .init::<A<B>>(dev)
            .unwrap();
        let xv: Vec<f32> = values(n * 2, 8).iter().map(|v| 2.5 * v).collect();
        let tv: Vec<f32> = values(n, 9).iter().map(|v| 1.1 + v).collect();
        let c = tensor::<A<B>, 2>(values(n * 2, 10), [n, 2], dev);
        let run = |fast: bool| {
            let x = tensor::<A<B>, 2>(xv.clone(), [n, 2], dev).require_grad();
            let t = tensor::<A<B>, 1>(tv.clone(), [n], dev);
            let s = if fast {
                model
                    .direct_score(&x, &t)
                    .unwrap_or_else(|| panic!("{what}: the host score applies"))
            } else {
                let twice =
                    <NoiseConditionalEnergy<A<A<B>>> as AutodiffModule<A<A<B>>>>::from_inner(
                        model.clone(),
                    );
                with_reference_ops(|| energy_score::<A<A<B>>, _, 2>(&twice, x.clone(), t))
            };
            let grads = (s.clone() * c.clone() + s.clone().square())
                .sum()
                .backward();
            let gx = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
            (s.inner(), gx, param_grads::<B, _>(&model, &grads))
        };
        let (s, gx, gp) = run(true);
        let (rs, rgx, rgp) = run(false);
        assert_close(&format!("{what}: s"), s, rs);
        let as_t = |v: Vec<f32>| tensor::<B, 1>(v.clone(), [v.len()], dev);
        assert_close(&format!("{what}: dx"), as_t(gx), as_t(rgx));
        assert_eq!(gp.len(), rgp.len());
        for (i, (g, r)) in gp.into_iter().zip(rgp).enumerate() {
            match (g, r) {
                (Some(g), Some(r)) => {
                    assert_close(&format!("{what}: parameter {i}"), as_t(g), as_t(r))
                }
                (g, r) => assert_eq!(
                    g.is_some(),
                    r.is_some(),
                    "{what}: parameter {i} has a gradient on one side only"
                ),
            }
        }
    }
}

#[test]
fn host_noise_conditional_energy_score_matches_nested_autodiff() {
    check_noise_conditional::<Flex>(&Default::default());
    check_noise_conditional::<NdArray<f32>>(&Default::default());
}

#[test]
fn host_energy_score_matches_nested_autodiff_on_flex() {
    check_against_nested_autodiff::<Flex>(&Default::default());
}

#[test]
fn host_energy_score_matches_nested_autodiff_on_ndarray() {
    check_against_nested_autodiff::<NdArray<f32>>(&Default::default());
}

/// Where the host path does not apply (softplus, no hidden bias, more than four layers), the
/// score is `None` and autodiff computes it.
#[test]
fn host_energy_score_declines_what_it_does_not_compute() {
    type A = Autodiff<Flex>;
    let dev = Default::default();
    let x = Tensor::<A, 2>::zeros([3, 2], &dev);
    let t = Tensor::<A, 1>::zeros([3], &dev);
    let cfg = EnergyMlpConfig::new(2).with_hidden_size(4);
    let softplus = cfg.clone().with_activation(Activation::Softplus);
    assert!(
        softplus
            .init::<A>(&dev)
            .unwrap()
            .direct_score(&x, &t)
            .is_none()
    );
    let deep = cfg.clone().with_num_layers(5).init::<A>(&dev).unwrap();
    assert!(deep.direct_score(&x, &t).is_none());
    let mut no_bias = cfg.init::<A>(&dev).unwrap();
    no_bias.layers[0].bias = None;
    assert!(no_bias.direct_score(&x, &t).is_none());
    let ok = EnergyMlpConfig::new(2)
        .with_hidden_size(4)
        .init::<A>(&dev)
        .unwrap();
    assert!(ok.direct_score(&x, &t).is_some());
    assert!(with_reference_ops(|| ok.direct_score(&x, &t)).is_none());
}

/// Denoising score matching of seed 001's energy MLP for 20 Adam steps with the host score and
/// with nested autodiff: the same loss curve.
#[test]
fn dsm_training_follows_the_nested_autodiff_curve() {
    type A = Autodiff<Flex>;
    let dev = Default::default();
    let (n, sigma) = (128, 0.5f32);
    let run = || {
        let mut model = EnergyMlpConfig::new(2)
            .with_seed(3)
            .init::<A>(&dev)
            .unwrap();
        let mut optim = AdamConfig::new().init::<A, EnergyMlp<A>>();
        let mut curve = Vec::new();
        for step in 0..20u32 {
            let x0 = tensor::<A, 2>(
                values(n * 2, 100 + step).iter().map(|v| 3.0 * v).collect(),
                [n, 2],
                &dev,
            );
            let eps = tensor::<A, 2>(values(n * 2, 200 + step), [n, 2], &dev);
            let xt = x0 + eps.clone().mul_scalar(sigma);
            let s = match model.direct_score(&xt, &Tensor::zeros([n], &dev)) {
                Some(s) => s,
                None => nested_score(&model, xt),
            };
            let loss = (s + eps.div_scalar(sigma))
                .square()
                .sum()
                .div_scalar(n as f32);
            curve.push(loss.clone().into_scalar());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-3, model, grads);
        }
        curve
    };
    let fast = run();
    let reference = with_reference_ops(run);
    assert!(fast[19] < fast[0], "the loss falls: {fast:?}");
    for (i, (a, b)) in fast.iter().zip(&reference).enumerate() {
        // f32 sums in different orders over 20 steps: 1e-4 relative.
        assert!((a - b).abs() <= 1e-4 * b.abs(), "step {i}: {a} against {b}");
    }
}
