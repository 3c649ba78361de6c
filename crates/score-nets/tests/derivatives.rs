//! Derivative oracles, on `NdArray<f64>` so that central differences are accurate to ~1e-9:
//! the energy score equals the central difference of the energy; the second-order paths (a loss
//! built on −∇x E, and the score MLP's input-Jacobian trace) give parameter gradients equal to
//! central differences in that parameter.

use burn::backend::{Autodiff, NdArray};
use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use score_core::{AutodiffScore, EnergyFn, NoiseKey, NoiseSource, ScoreFn, energy_score};
use score_nets::{
    Conditioning, EnergyMlp, EnergyMlpConfig, NoiseConditionalEnergy, NoiseConditionalEnergyConfig,
    TimeEmbeddingConfig, TimeMlp, TimeMlpConfig, TimeNet,
};

type Base = NdArray<f64>;
type Inner = Autodiff<Base>;
type Outer = Autodiff<Inner>;

fn vals<B: burn::tensor::backend::Backend, const D: usize>(x: Tensor<B, D>) -> Vec<f64> {
    x.into_data().convert::<f64>().into_vec::<f64>().unwrap()
}

fn points(n: usize, d: usize, key: u64) -> Tensor<Base, 2> {
    let v = NoiseSource::new(11).normal_f64(n, d, NoiseKey::new(key, 0));
    Tensor::from_data(TensorData::new(v, [n, d]), &Default::default())
}

fn times(n: usize) -> Tensor<Base, 1> {
    let v: Vec<f64> = (0..n).map(|i| 0.1 + 0.8 * i as f64 / n as f64).collect();
    Tensor::from_data(TensorData::new(v, [n]), &Default::default())
}

/// Adds `h` to entry `entry` (row-major) of the `index`-th float parameter.
struct Perturb {
    index: usize,
    entry: usize,
    h: f64,
    seen: usize,
}

impl ModuleMapper<Base> for Perturb {
    fn map_float<const D: usize>(
        &mut self,
        param: Param<Tensor<Base, D>>,
    ) -> Param<Tensor<Base, D>> {
        let here = self.seen == self.index;
        self.seen += 1;
        if !here {
            return param;
        }
        let (entry, h) = (self.entry, self.h);
        param.map(|t| {
            let dims = t.dims();
            let mut delta = vec![0.0; dims.iter().product()];
            delta[entry] = h;
            let delta =
                Tensor::<Base, D>::from_data(TensorData::new(delta, dims.to_vec()), &t.device());
            t + delta
        })
    }
}

fn perturbed<M: Module<Base>>(m: &M, index: usize, entry: usize, h: f64) -> M {
    m.clone().map(&mut Perturb {
        index,
        entry,
        h,
        seen: 0,
    })
}

/// Entry `entry` of the gradient of the `index`-th float parameter.
fn grad_entry<M: Module<Inner>>(
    m: &M,
    grads: &<Inner as AutodiffBackend>::Gradients,
    index: usize,
    entry: usize,
) -> f64 {
    struct G<'a> {
        grads: &'a <Inner as AutodiffBackend>::Gradients,
        index: usize,
        entry: usize,
        seen: usize,
        out: Option<f64>,
    }
    impl ModuleVisitor<Inner> for G<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Inner, D>>) {
            if self.seen == self.index {
                let g = param.val().grad(self.grads).map(|g| vals(g)[self.entry]);
                self.out = Some(g.unwrap_or(0.0));
            }
            self.seen += 1;
        }
    }
    let mut v = G {
        grads,
        index,
        entry,
        seen: 0,
        out: None,
    };
    m.visit(&mut v);
    v.out.expect("parameter index in range")
}

fn assert_close(a: f64, b: f64, rel: f64, what: &str) {
    let tol = rel * (1.0 + a.abs().max(b.abs()));
    assert!(
        (a - b).abs() <= tol,
        "{what}: autodiff {a} vs central difference {b}"
    );
}

#[test]
fn energy_score_is_the_central_difference_of_the_energy() {
    let dev = Default::default();
    let plain: EnergyMlp<Inner> = EnergyMlpConfig::new(3)
        .with_hidden_size(16)
        .init(&dev)
        .unwrap();
    let cond: NoiseConditionalEnergy<Inner> = NoiseConditionalEnergyConfig::new(3)
        .with_hidden_size(16)
        .init(&dev)
        .unwrap();
    let x = points(5, 3, 0);
    let t = times(5);
    fn check<E: EnergyFn<Inner, 2> + AutodiffModule<Inner>>(
        e: E,
        x: Tensor<Base, 2>,
        t: Tensor<Base, 1>,
    ) where
        E::InnerModule: EnergyFn<Base, 2>,
    {
        let inner = e.valid();
        let s = vals(AutodiffScore::<_, Inner>::new(e).score(x.clone(), t.clone()));
        let h = 1e-5;
        let (n, d) = (5, 3);
        for i in 0..d {
            let mut dx = vec![0.0; n * d];
            for r in 0..n {
                dx[r * d + i] = h;
            }
            let dx = Tensor::<Base, 2>::from_data(TensorData::new(dx, [n, d]), &x.device());
            let ep = vals(inner.energy(x.clone() + dx.clone(), t.clone()));
            let em = vals(inner.energy(x.clone() - dx, t.clone()));
            for r in 0..n {
                let fd = -(ep[r] - em[r]) / (2.0 * h);
                assert_close(s[r * d + i], fd, 1e-7, "energy score");
            }
        }
    }
    check(plain, x.clone(), t.clone());
    check(cond, x, t);
}

/// Denoising loss on the energy score at a fixed noise level: mean ‖−∇x E(x̃) + ε/σ‖².
fn energy_dsm_loss<A: AutodiffBackend, E: EnergyFn<A, 2>>(
    e: &E,
    x: Tensor<A::InnerBackend, 2>,
    eps: Tensor<A::InnerBackend, 2>,
    t: Tensor<A::InnerBackend, 1>,
    sigma: f64,
) -> Tensor<A::InnerBackend, 1> {
    let noisy = x + eps.clone().mul_scalar(sigma);
    let s = energy_score::<A, E, 2>(e, noisy, t);
    (s + eps.div_scalar(sigma)).square().sum_dim(1).mean()
}

#[test]
fn second_order_energy_loss_gradient_matches_central_difference() {
    let dev = Default::default();
    let energy: NoiseConditionalEnergy<Inner> = NoiseConditionalEnergyConfig::new(2)
        .with_hidden_size(12)
        .init(&dev)
        .unwrap();
    let x = points(6, 2, 1);
    let eps = points(6, 2, 2);
    let t = times(6);
    let sigma = 0.5;
    // Analytic: lift the model one autodiff level up; the score is an Inner tensor that depends
    // on the parameters.
    let lifted: NoiseConditionalEnergy<Outer> = AutodiffModule::from_inner(energy.clone());
    let loss = energy_dsm_loss::<Outer, _>(
        &lifted,
        Tensor::from_inner(x.clone()),
        Tensor::from_inner(eps.clone()),
        Tensor::from_inner(t.clone()),
        sigma,
    );
    let grads = loss.backward();
    let base = energy.valid();
    let n_params = base.num_params();
    assert!(n_params > 0);
    // Parameters in visiting order: embedding map (weight, bias), hidden layers (weight, bias)…,
    // output (weight, bias). The output bias does not move ∇x E: its gradient is 0 both ways.
    for (index, entry) in [(0, 3), (2, 5), (4, 7), (6, 1), (7, 0)] {
        let analytic = grad_entry(&energy, &grads, index, entry);
        let h = 1e-5;
        let lp = |m: NoiseConditionalEnergy<Base>| {
            let m: NoiseConditionalEnergy<Inner> = AutodiffModule::from_inner(m);
            vals(energy_dsm_loss::<Inner, _>(
                &m,
                x.clone(),
                eps.clone(),
                t.clone(),
                sigma,
            ))[0]
        };
        let fd = (lp(perturbed(&base, index, entry, h)) - lp(perturbed(&base, index, entry, -h)))
            / (2.0 * h);
        assert_close(analytic, fd, 1e-6, &format!("param {index}[{entry}]"));
        if index == 7 {
            assert!(analytic.abs() < 1e-12);
        } else {
            assert!(analytic.abs() > 1e-8, "param {index} should matter");
        }
    }
    // The plain energy net goes through the same path.
    let plain: EnergyMlp<Inner> = EnergyMlpConfig::new(2)
        .with_hidden_size(8)
        .init(&dev)
        .unwrap();
    let lifted: EnergyMlp<Outer> = AutodiffModule::from_inner(plain.clone());
    let grads = energy_dsm_loss::<Outer, _>(
        &lifted,
        Tensor::from_inner(x.clone()),
        Tensor::from_inner(eps.clone()),
        Tensor::from_inner(t.clone()),
        sigma,
    )
    .backward();
    let analytic = grad_entry(&plain, &grads, 0, 1);
    let base = plain.valid();
    let lp = |m: EnergyMlp<Base>| {
        let m: EnergyMlp<Inner> = AutodiffModule::from_inner(m);
        vals(energy_dsm_loss::<Inner, _>(
            &m,
            x.clone(),
            eps.clone(),
            t.clone(),
            sigma,
        ))[0]
    };
    let fd = (lp(perturbed(&base, 0, 1, 1e-5)) - lp(perturbed(&base, 0, 1, -1e-5))) / 2e-5;
    assert_close(analytic, fd, 1e-6, "plain energy");
}

/// `tr ∂s/∂x` per sample, by one backward pass per input dimension on the autodiff backend `A`;
/// the result lives on `A`'s inner backend (and depends on the parameters when that is autodiff).
fn jacobian_trace<A: AutodiffBackend, M: TimeNet<A, 2>>(
    net: &M,
    x: Tensor<A::InnerBackend, 2>,
    t: Tensor<A::InnerBackend, 1>,
) -> Tensor<A::InnerBackend, 1> {
    let [n, d] = x.dims();
    let mut trace = Tensor::<A::InnerBackend, 1>::zeros([n], &x.device());
    for i in 0..d {
        let xo = Tensor::<A, 2>::from_inner(x.clone()).require_grad();
        let s = net.forward(xo.clone(), Tensor::from_inner(t.clone()));
        let grads = s.narrow(1, i, 1).sum().backward();
        let g = xo.grad(&grads).expect("s depends on x");
        trace = trace + g.narrow(1, i, 1).squeeze_dim(1);
    }
    trace
}

/// Explicit score matching (Hyvärinen 2005): mean of `tr ∂s/∂x + ½‖s‖²`.
fn esm_loss<A: AutodiffBackend, M: TimeNet<A, 2>, N: TimeNet<A::InnerBackend, 2>>(
    lifted: &M,
    net: &N,
    x: Tensor<A::InnerBackend, 2>,
    t: Tensor<A::InnerBackend, 1>,
) -> Tensor<A::InnerBackend, 1> {
    let tr = jacobian_trace::<A, M>(lifted, x.clone(), t.clone());
    let s = net.forward(x, t);
    (tr + s.square().sum_dim(1).squeeze_dim(1).mul_scalar(0.5)).mean()
}

#[test]
fn score_mlp_jacobian_trace_gradient_matches_central_difference() {
    let dev = Default::default();
    let x = points(4, 2, 3);
    let t = times(4);
    for conditioning in [
        Conditioning::Concat,
        Conditioning::Add,
        Conditioning::Film,
        Conditioning::AdaNorm,
    ] {
        let net: TimeMlp<Inner> = TimeMlpConfig::new(2)
            .with_hidden_size(8)
            .with_num_layers(2)
            .with_conditioning(conditioning)
            .with_embedding(TimeEmbeddingConfig::new().with_dim(8))
            .init(&dev)
            .unwrap();
        let base = net.valid();
        // The trace itself equals the central difference of the score in x.
        let lifted_base: TimeMlp<Inner> = AutodiffModule::from_inner(base.clone());
        let tr = vals(jacobian_trace::<Inner, _>(
            &lifted_base,
            x.clone(),
            t.clone(),
        ));
        let h = 1e-5;
        let mut fd_tr = [0.0; 4];
        for i in 0..2 {
            let mut dx = vec![0.0; 8];
            for r in 0..4 {
                dx[r * 2 + i] = h;
            }
            let dx = Tensor::<Base, 2>::from_data(TensorData::new(dx, [4, 2]), &dev);
            let sp = vals(base.forward(x.clone() + dx.clone(), t.clone()));
            let sm = vals(base.forward(x.clone() - dx, t.clone()));
            for r in 0..4 {
                fd_tr[r] += (sp[r * 2 + i] - sm[r * 2 + i]) / (2.0 * h);
            }
        }
        for r in 0..4 {
            assert_close(tr[r], fd_tr[r], 1e-7, &format!("{conditioning:?} trace"));
        }
        // Its parameter gradient, by nested autodiff, equals central differences in θ.
        let lifted: TimeMlp<Outer> = AutodiffModule::from_inner(net.clone());
        let grads = esm_loss::<Outer, _, _>(
            &lifted,
            &net,
            Tensor::from_inner(x.clone()),
            Tensor::from_inner(t.clone()),
        )
        .backward();
        let n_layers_params = 4; // embedding MLP: two layers with weight and bias
        for (index, entry) in [(0, 2), (n_layers_params, 1), (n_layers_params + 2, 5)] {
            let analytic = grad_entry(&net, &grads, index, entry);
            let value = |m: TimeMlp<Base>| {
                let lifted: TimeMlp<Inner> = AutodiffModule::from_inner(m.clone());
                vals(esm_loss::<Inner, _, _>(&lifted, &m, x.clone(), t.clone()))[0]
            };
            let fd = (value(perturbed(&base, index, entry, h))
                - value(perturbed(&base, index, entry, -h)))
                / (2.0 * h);
            assert_close(
                analytic,
                fd,
                1e-6,
                &format!("{conditioning:?} param {index}"),
            );
            assert!(
                analytic.abs() > 1e-9,
                "{conditioning:?} param {index} should matter"
            );
        }
    }
}
