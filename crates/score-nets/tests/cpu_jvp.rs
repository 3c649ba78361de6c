//! A `TimeMlp`'s output with the quadratic form `vᵀ(∂f/∂x)v` of its input Jacobian on the host
//! (`cpu_ops::mlp_output_and_quadratic_form`, `TimeNet::output_and_quadratic_form`) against
//! burn's nested autodiff: values, and the gradients a loss on both gives every parameter (the
//! time embedding's through burn's ops) and `x`, on `Autodiff` of Flex and NdArray; the plain
//! backend; and what the host path declines. The host kernels alone are checked against f64
//! and central differences in `cpu_ops::jvp`'s unit tests.

use burn::backend::{Autodiff, Flex, NdArray};
use burn::module::AutodiffModule;
use burn::tensor::{Tensor, TensorData, backend::Backend};
use score_nets::cpu_ops::with_reference_ops;
use score_nets::{Activation, Conditioning, TimeEmbeddingConfig, TimeMlp, TimeMlpConfig, TimeNet};

mod common;
use common::{assert_close, param_grads, values};

fn tensor<B: Backend, const D: usize>(
    v: Vec<f32>,
    shape: [usize; D],
    dev: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(v, shape), dev)
}

/// `f(x, t)` and `vᵀ(∂f/∂x)v` by nested autodiff: the network one level up, one backward pass
/// of `Σ f·v` in `x`.
fn nested<B: Backend>(
    model: &TimeMlp<Autodiff<B>>,
    x: Tensor<Autodiff<B>, 2>,
    t: Tensor<Autodiff<B>, 1>,
    v: Tensor<Autodiff<B>, 2>,
) -> (Tensor<Autodiff<B>, 2>, Tensor<Autodiff<B>, 1>) {
    type A2<B> = Autodiff<Autodiff<B>>;
    with_reference_ops(|| {
        let up = <TimeMlp<A2<B>> as AutodiffModule<A2<B>>>::from_inner(model.clone());
        let xo = Tensor::<A2<B>, 2>::from_inner(x).require_grad();
        let y = up.forward(xo.clone(), Tensor::from_inner(t));
        let grads = (y.clone() * Tensor::from_inner(v.clone())).sum().backward();
        let jtv = xo.grad(&grads).expect("the output depends on x");
        let q = (jtv * v).sum_dim(1).reshape([y.dims()[0]]);
        (y.inner(), q)
    })
}

fn check_against_nested_autodiff<B: Backend>(dev: &B::Device) {
    type A<B> = Autodiff<B>;
    // Batch 1, odd sizes, the seed MLP (3 × 128 after a 128-wide embedding and its MLP).
    for (n, hidden, layers, emb) in [(1, 5, 1, 4), (7, 17, 2, 6), (64, 128, 3, 128)] {
        for act in [Activation::Silu, Activation::Tanh] {
            let what = format!("n {n}, {layers} × {hidden} {act:?}");
            let model = TimeMlpConfig::new(2)
                .with_hidden_size(hidden)
                .with_num_layers(layers)
                .with_activation(act)
                .with_embedding(TimeEmbeddingConfig::new().with_dim(emb))
                .with_seed(4)
                .init::<A<B>>(dev)
                .unwrap();
            let xv: Vec<f32> = values(n * 2, 3).iter().map(|v| 2.5 * v).collect();
            let tv: Vec<f32> = values(n, 4).iter().map(|v| 0.5 + 0.5 * v).collect();
            let vv = values(n * 2, 6);
            let (c, e) = (
                tensor::<A<B>, 2>(values(n * 2, 7), [n, 2], dev),
                tensor::<A<B>, 1>(values(n, 8), [n], dev),
            );
            let run = |fast: bool| {
                let x = tensor::<A<B>, 2>(xv.clone(), [n, 2], dev).require_grad();
                let t = tensor::<A<B>, 1>(tv.clone(), [n], dev);
                let v = tensor::<A<B>, 2>(vv.clone(), [n, 2], dev);
                let (y, q) = if fast {
                    model
                        .output_and_quadratic_form(&x, &t, &v)
                        .unwrap_or_else(|| panic!("{what}: the host form applies"))
                } else {
                    nested(&model, x.clone(), t, v)
                };
                // A loss on both, as sliced score matching's ½|s|² + vᵀJv.
                let loss = (y.clone() * c.clone() + y.clone().square()).sum()
                    + (q.clone() * e.clone()).sum();
                let grads = loss.backward();
                let gx = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
                (
                    y.inner(),
                    q.inner(),
                    gx,
                    param_grads::<B, _>(&model, &grads),
                )
            };
            let (y, q, gx, gp) = run(true);
            let (ry, rq, rgx, rgp) = run(false);
            assert_close(&format!("{what}: y"), y, ry);
            assert_close(&format!("{what}: q"), q, rq);
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
            // The plain backend.
            let plain = model.valid();
            let x = tensor::<B, 2>(xv.clone(), [n, 2], dev);
            let t = tensor::<B, 1>(tv.clone(), [n], dev);
            let v = tensor::<B, 2>(vv.clone(), [n, 2], dev);
            let (y, _) = plain.output_and_quadratic_form(&x, &t, &v).unwrap();
            let reference = with_reference_ops(|| plain.forward(x, t));
            assert_close(&format!("{what}: plain y"), y, reference);
        }
    }
}

#[test]
fn host_quadratic_form_matches_nested_autodiff_on_flex() {
    check_against_nested_autodiff::<Flex>(&Default::default());
}

#[test]
fn host_quadratic_form_matches_nested_autodiff_on_ndarray() {
    check_against_nested_autodiff::<NdArray<f32>>(&Default::default());
}

/// Conditioning other than concatenation, softplus, an output narrower than `x`, a tracked `v`
/// and the reference ops: `None`, and autodiff computes it.
#[test]
fn host_quadratic_form_declines_what_it_does_not_compute() {
    type A = Autodiff<Flex>;
    let dev = Default::default();
    let x = Tensor::<A, 2>::zeros([3, 2], &dev);
    let t = Tensor::<A, 1>::zeros([3], &dev);
    let v = Tensor::<A, 2>::ones([3, 2], &dev);
    let cfg = TimeMlpConfig::new(2)
        .with_hidden_size(4)
        .with_embedding(TimeEmbeddingConfig::new().with_dim(4));
    let declines = |c: TimeMlpConfig| {
        let m = c.init::<A>(&dev).unwrap();
        m.output_and_quadratic_form(&x, &t, &v).is_none()
    };
    assert!(declines(cfg.clone().with_conditioning(Conditioning::Film)));
    assert!(declines(cfg.clone().with_activation(Activation::Softplus)));
    assert!(declines(cfg.clone().with_output_dim(Some(1))));
    let ok = cfg.init::<A>(&dev).unwrap();
    assert!(ok.output_and_quadratic_form(&x, &t, &v).is_some());
    // A `v` that needs its own gradient.
    let tracked_v = v.clone().require_grad();
    assert!(ok.output_and_quadratic_form(&x, &t, &tracked_v).is_none());
    assert!(with_reference_ops(|| ok.output_and_quadratic_form(&x, &t, &v)).is_none());
}
