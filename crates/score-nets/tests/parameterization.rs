//! The output parameterisations (score, noise, denoised, EDM-preconditioned) agree: for a Gaussian target the optimal ε-, x₀- and
//! score-outputs are known in closed form, and `ScoreModel` turns each into the same, exact score.
//! Also: `ScoreModel` on an autodiff backend keeps the graph to the network's parameters.

use burn::backend::{Autodiff, NdArray};
use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use score_core::tensor::per_sample;
use score_core::{
    AnySde, DiagGaussian, NoiseKey, NoiseSource, ScoreFn, Sde, SubVpSde, VeSde, VpSde,
};
use score_nets::{
    Parameterization, ScoreModel, TimeEmbeddingConfig, TimeMlp, TimeMlpConfig, TimeNet,
};

/// The tests run in f64: converting a denoised output, `−(x − m·x̂₀)/s²`, cancels `x` against
/// `m·x̂₀` and divides by `s² ≈ 1.4e-4` (VE near t = 0), which costs f32 about three digits — a
/// property of that parameterisation, not of the conversion code.
///
/// Every test of this binary uses the same element type on purpose: burn 0.21 keeps the default
/// float dtype per device in a process-wide registry, locked by the first tensor created, and
/// `NdArray<f32>` and `NdArray<f64>` share the device `Cpu` — so a concurrently running f32 test
/// would silently make this binary's "f64" tensors f32.
type F = NdArray<f64>;
type B = F;

/// What the oracle network outputs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Output {
    Score,
    ScaledScore,
    Noise,
    Denoised,
    /// EDM's `F` for this `σ_d`: the oracle undoes `c_in` on its input, forms the optimal
    /// denoiser and solves `D = c_skip·x/m + c_out·F` for `F` (Karras et al. 2022, eq. 7).
    Edm(f64),
}

/// The Bayes-optimal outputs for data `x₀ ~ N(μ, diag v)` perturbed by `sde`: with
/// `x = m·x₀ + s·ε` and `V = m²v + s²`, `E[ε | x] = s (x − mμ)/V`,
/// `E[x₀ | x] = μ + m v (x − mμ)/V`, and the score is `−(x − mμ)/V`.
#[derive(Module, Debug)]
struct Oracle<B: Backend> {
    #[module(skip)]
    mean: Vec<f64>,
    #[module(skip)]
    var: Vec<f64>,
    #[module(skip)]
    sde: AnySde,
    #[module(skip)]
    output: Output,
    _b: std::marker::PhantomData<B>,
}

impl<B: Backend> TimeNet<B, 2> for Oracle<B> {
    fn forward(&self, x: Tensor<B, 2>, t: Tensor<B, 1>) -> Tensor<B, 2> {
        let dev = x.device();
        let d = self.mean.len();
        let row = |v: &[f64]| Tensor::<B, 2>::from_data(TensorData::new(v.to_vec(), [1, d]), &dev);
        let (mu, var) = (row(&self.mean), row(&self.var));
        let (m, s) = self.sde.marginal_tensors(t);
        let (m, s) = (per_sample::<B, 2>(m), per_sample::<B, 2>(s));
        let (x, edm) = match self.output {
            Output::Edm(sd) => {
                let sigma2 = (s.clone() / m.clone()).square();
                let c_in = (m.clone() * sigma2.clone().add_scalar(sd * sd).sqrt()).recip();
                let c_skip = sigma2
                    .clone()
                    .add_scalar(sd * sd)
                    .recip()
                    .mul_scalar(sd * sd);
                let c_out =
                    sigma2.clone().sqrt().mul_scalar(sd) / sigma2.add_scalar(sd * sd).sqrt();
                (x / c_in, Some((c_skip, c_out)))
            }
            _ => (x, None),
        };
        let total = m.clone().square() * var.clone() + s.clone().square();
        let r = (x.clone() - m.clone() * mu.clone()) / total;
        match self.output {
            Output::Score => -r,
            Output::ScaledScore => -r * s,
            Output::Noise => r * s,
            Output::Denoised => mu + m * var * r,
            Output::Edm(_) => {
                let (c_skip, c_out) = edm.expect("set above");
                let d = mu + m.clone() * var * r;
                (d - x / m * c_skip) / c_out
            }
        }
    }
}

fn vals<Q: Backend, const D: usize>(x: Tensor<Q, D>) -> Vec<f64> {
    x.into_data().convert::<f64>().into_vec::<f64>().unwrap()
}

#[test]
fn three_parameterizations_give_the_same_exact_score() {
    let dev = Default::default();
    let mean = vec![1.5, -0.5];
    let var = vec![0.3, 2.0];
    let target = DiagGaussian::new(mean.clone(), var.clone())
        .unwrap()
        .to_mixture();
    let sdes = [
        AnySde::Ve(VeSde::default()),
        AnySde::Vp(VpSde::default()),
        AnySde::SubVp(SubVpSde::default()),
    ];
    let n = 64;
    let ts: Vec<f64> = (0..n)
        .map(|i| 0.02 + 0.96 * i as f64 / (n - 1) as f64)
        .collect();
    let t = Tensor::<F, 1>::from_data(TensorData::new(ts, [n]), &dev);
    for sde in sdes {
        let exact = target.clone().diffused(sde);
        let x = NoiseSource::new(5).normal::<F, 2>([n, 2], NoiseKey::new(0, 0), &dev) * 3.0;
        let want = vals(exact.score(x.clone(), t.clone()));
        let model = |output, p| {
            ScoreModel::new(
                Oracle::<F> {
                    mean: mean.clone(),
                    var: var.clone(),
                    sde,
                    output,
                    _b: std::marker::PhantomData,
                },
                sde,
                p,
            )
        };
        let models = [
            ("score", model(Output::Score, Parameterization::Score)),
            (
                "scaled score",
                model(Output::ScaledScore, Parameterization::Score).with_scale_by_std(true),
            ),
            ("noise", model(Output::Noise, Parameterization::Noise)),
            (
                "denoised",
                model(Output::Denoised, Parameterization::Denoised),
            ),
            (
                "edm",
                model(Output::Edm(0.7), Parameterization::Edm { sigma_data: 0.7 }),
            ),
        ];
        for (name, m) in models {
            let got = vals(m.score(x.clone(), t.clone()));
            for (g, w) in got.iter().zip(&want) {
                // m and s reach the tensors through f32 (score-core's from_f64), hence 1e-5.
                assert!(
                    (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                    "{sde:?} {name}: {g} vs exact {w}"
                );
            }
            // from_score inverts to_score.
            let (mc, s) = sde.marginal_tensors(t.clone());
            let p = m.parameterization();
            let out = m.output(x.clone(), t.clone());
            let back = p.from_score(
                p.to_score(
                    out.clone(),
                    x.clone(),
                    mc.clone(),
                    s.clone(),
                    m.scale_by_std(),
                ),
                x.clone(),
                mc,
                s,
                m.scale_by_std(),
            );
            for (a, b) in vals(back).iter().zip(vals(out)) {
                assert!((a - b).abs() <= 1e-9 * (1.0 + b.abs()), "{name} round trip");
            }
        }
    }
}

#[test]
fn score_model_trains_on_an_autodiff_backend() {
    type A = Autodiff<B>;
    let dev = Default::default();
    let net: TimeMlp<A> = TimeMlpConfig::new(2)
        .with_hidden_size(16)
        .with_num_layers(2)
        .with_embedding(TimeEmbeddingConfig::new().with_dim(8))
        .init(&dev)
        .unwrap();
    for p in [
        Parameterization::Score,
        Parameterization::Noise,
        Parameterization::Denoised,
        Parameterization::Edm { sigma_data: 0.5 },
    ] {
        let model = ScoreModel::new(net.clone(), AnySde::Vp(VpSde::default()), p);
        let x = Tensor::<A, 2>::ones([8, 2], &dev);
        let t = Tensor::<A, 1>::full([8], 0.3, &dev);
        let grads = model.score(x, t).square().sum().backward();
        let g = model
            .net
            .output
            .weight
            .grad(&grads)
            .expect("graph reaches the parameters");
        assert!(g.abs().sum().into_scalar() > 0.0);
        // The inference copy scores identically.
        let valid: ScoreModel<B, TimeMlp<B>> = model.valid();
        let xi = Tensor::<B, 2>::ones([8, 2], &dev);
        let ti = Tensor::<B, 1>::full([8], 0.3, &dev);
        let a = vals(valid.score(xi.clone(), ti.clone()));
        let b = vals(
            model
                .score(Tensor::from_inner(xi), Tensor::from_inner(ti))
                .inner(),
        );
        assert_eq!(a, b);
        assert_eq!(valid.parameterization(), p);
        assert_eq!(valid.sde(), &AnySde::Vp(VpSde::default()));
    }
}
