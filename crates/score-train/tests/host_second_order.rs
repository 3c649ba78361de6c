//! The second-order losses on the CPU backends' host ops against the same losses on burn's
//! nested autodiff (`with_reference_ops`): energy DSM and multi-scale DSM through
//! `EnergyFn::direct_score`, explicit and sliced score matching of a `TimeMlp` read as its
//! output through `TimeNet::output_and_quadratic_form`. Same loss, same gradient for every
//! parameter, on `Autodiff<Flex>` and `Autodiff<NdArray<f32>>`.

use burn::backend::{Autodiff, Flex, NdArray};
use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, backend::Backend};
use score_core::{EnergyFn, GaussianMixture, NoiseKey, NoiseSource, VeSde};
use score_nets::cpu_ops::with_reference_ops;
use score_nets::{
    EnergyMlpConfig, NoiseConditionalEnergyConfig, TimeEmbeddingConfig, TimeMlpConfig,
};
use score_train::{
    AsEnergy, AsOutput, DenoisingScoreMatching, ExplicitScoreMatching, LiftedScoreView, Loss,
    MultiScaleDsm, Projection, SlicedEstimator, SlicedScoreMatching,
};

/// Every parameter's gradient, in visiting order (`None` where it has none).
fn param_grads<A: AutodiffBackend, M: AutodiffModule<A>>(
    model: &M,
    grads: &A::Gradients,
) -> Vec<Option<Vec<f32>>> {
    struct Collect<'a, A: AutodiffBackend>(&'a A::Gradients, Vec<Option<Vec<f32>>>);
    impl<A: AutodiffBackend> ModuleVisitor<A> for Collect<'_, A> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<A, D>>) {
            let g = p
                .grad(self.0)
                .map(|g| g.into_data().convert::<f32>().to_vec::<f32>().unwrap());
            self.1.push(g);
        }
    }
    let mut c = Collect::<A>(grads, Vec::new());
    model.visit(&mut c);
    c.1
}

/// The loss and its parameter gradients with the host ops and with burn's nested autodiff: the
/// same, within f32 rounding of differently ordered sums.
fn same_both_ways<A, M, L>(what: &str, model: &M, loss: &L)
where
    A: AutodiffBackend,
    M: AutodiffModule<A>,
    L: Loss<A, M, 2>,
{
    let x0 = GaussianMixture::ring(8, 4.0, 0.2).unwrap().sample::<A>(
        96,
        &NoiseSource::new(1),
        NoiseKey::new(0, 0),
        &Default::default(),
    );
    let noise = NoiseSource::new(2);
    let run = || {
        let l = loss.loss(model, x0.clone(), &noise, 3);
        let value = l.clone().into_scalar();
        let value: f32 = burn::tensor::ElementConversion::elem(value);
        (value, param_grads::<A, M>(model, &l.backward()))
    };
    let (value, grads) = run();
    let (want, want_grads) = with_reference_ops(run);
    assert!(
        (value - want).abs() <= 1e-5 * (1.0 + want.abs()),
        "{what}: loss {value} against {want}"
    );
    assert_eq!(grads.len(), want_grads.len());
    for (i, (g, w)) in grads.into_iter().zip(want_grads).enumerate() {
        match (g, w) {
            (Some(g), Some(w)) => {
                let scale = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let diff = g
                    .iter()
                    .zip(&w)
                    .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
                // f32 sums in different orders: a few ulps of the largest entry.
                assert!(
                    diff <= 1e-5 * (1.0 + scale),
                    "{what}: parameter {i} differs by {diff} (scale {scale})"
                );
            }
            (g, w) => assert_eq!(
                g.is_some(),
                w.is_some(),
                "{what}: parameter {i} has a gradient on one side only"
            ),
        }
    }
}

fn check<P: Backend>() {
    type A<P> = Autodiff<P>;
    let dev = Default::default();
    let energy = EnergyMlpConfig::new(2)
        .with_num_layers(2)
        .init::<A<P>>(&dev)
        .unwrap();
    let dsm = DenoisingScoreMatching::new(0.5)
        .unwrap()
        .with_view(AsEnergy);
    same_both_ways("energy DSM", &energy, &dsm);
    let ve = VeSde::new(0.01, 10.0).unwrap();
    let nc = NoiseConditionalEnergyConfig::new(2)
        .init::<A<P>>(&dev)
        .unwrap();
    let ncsn = MultiScaleDsm::new(ve, 10).unwrap().with_view(AsEnergy);
    same_both_ways("noise-conditional energy NCSN", &nc, &ncsn);
    let mlp = TimeMlpConfig::new(2)
        .with_hidden_size(64)
        .with_num_layers(3)
        .with_embedding(TimeEmbeddingConfig::new().with_dim(32))
        .init::<A<P>>(&dev)
        .unwrap();
    // The host paths apply to these models (so the comparisons below compare two paths).
    let (x, t) = (
        Tensor::<A<P>, 2>::ones([4, 2], &dev),
        Tensor::zeros([4], &dev),
    );
    assert!(energy.direct_score(&x, &t).is_some());
    assert!(nc.direct_score(&x, &t).is_some());
    assert!(AsOutput.direct_quadratic_form(&mlp, &x, &t, &x).is_some());
    let esm = ExplicitScoreMatching::new()
        .with_view(AsOutput)
        .with_time(0.3);
    same_both_ways("ESM", &mlp, &esm);
    for (projection, estimator) in [
        (Projection::Gaussian, SlicedEstimator::VarianceReduced),
        (Projection::Rademacher, SlicedEstimator::Plain),
    ] {
        let ssm = SlicedScoreMatching::new(2)
            .unwrap()
            .with_projection(projection)
            .with_estimator(estimator)
            .with_view(AsOutput);
        same_both_ways(&format!("SSM {projection:?} {estimator:?}"), &mlp, &ssm);
    }
}

#[test]
fn host_second_order_losses_match_nested_autodiff_on_flex() {
    check::<Flex>();
}

#[test]
fn host_second_order_losses_match_nested_autodiff_on_ndarray() {
    check::<NdArray<f32>>();
}
