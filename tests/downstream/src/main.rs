//! A downstream user's program: it depends on `score-sde` alone (default features) and names
//! everything through the facade. It builds an exact mixture target, samples it, trains a small
//! score network for a few steps, samples the trained model and computes likelihoods, checking
//! each result against what the maths says. Last, it checks that a network's gradients survive
//! `backward()` calls on other threads: this crate builds the published burn-autodiff 0.21.0,
//! not the workspace's patched copy, so this is where the library's own guard
//! (`score_core::tensor::cat`, tracel-ai/burn#5573) is tested.

use score_sde::burn::module::{Module, ModuleVisitor, Param};
use score_sde::burn::tensor::Distribution;
use score_sde::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

type B = Selected;
type A = SelectedAutodiff;

/// Mean of each column of an `[n, 2]` tensor, on the host.
fn column_means(x: Tensor<B, 2>) -> [f64; 2] {
    let v: Vec<f32> = x.mean_dim(0).into_data().to_vec().expect("f32 data");
    [v[0] as f64, v[1] as f64]
}

fn to_vec(x: Tensor<B, 1>) -> Vec<f64> {
    let v: Vec<f32> = x.into_data().to_vec().expect("f32 data");
    v.into_iter().map(f64::from).collect()
}

/// The gradient of every parameter of `net` for `mean(net(x, t)²)` (`None` where it has none).
fn gradients(net: &TimeMlp<A>, x: &Tensor<A, 2>, t: &Tensor<A, 1>) -> Vec<Option<Vec<f32>>> {
    struct Collect<'a>(&'a <A as AutodiffBackend>::Gradients, Vec<Option<Vec<f32>>>);
    impl ModuleVisitor<A> for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<A, D>>) {
            let g = p
                .grad(self.0)
                .map(|g| g.into_data().to_vec::<f32>().expect("f32"));
            self.1.push(g);
        }
    }
    let loss = net.forward(x.clone(), t.clone()).powi_scalar(2).mean();
    let grads = loss.backward();
    let mut c = Collect(&grads, Vec::new());
    net.visit(&mut c);
    c.1
}

/// Two threads take gradients of their own `TimeMlp` 150 times each while two more run tiny
/// `backward()` calls; every round must give the gradients the same network gave before the
/// threads started. On burn-autodiff 0.21.0, with plain `Tensor::cat` in the network, 20 to 67
/// of the 300 rounds lost the time embedding's gradient (5 runs of tests/autodiff_threads.rs).
fn gradients_under_concurrent_backward() -> usize {
    let stop = Arc::new(AtomicBool::new(false));
    let sweepers: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let dev: Device<A> = Default::default();
                while !stop.load(Ordering::Relaxed) {
                    let z = Tensor::<A, 1>::ones([4], &dev).require_grad();
                    let _ = (z.clone() * z).sum().backward();
                }
            })
        })
        .collect();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(|| {
                let dev: Device<A> = Default::default();
                let net = TimeMlpConfig::new(2)
                    .with_hidden_size(64)
                    .init::<A>(&dev)
                    .expect("MLP config");
                let x = Tensor::<A, 2>::random([64, 2], Distribution::Default, &dev);
                let t = Tensor::<A, 1>::random([64], Distribution::Default, &dev);
                let want = gradients(&net, &x, &t);
                (0..150)
                    .filter(|_| {
                        let got = gradients(&net, &x, &t);
                        got.iter().zip(&want).any(|(g, w)| match (g, w) {
                            (Some(g), Some(w)) => g
                                .iter()
                                .zip(w)
                                .any(|(a, b)| (a - b).abs() > 1e-5 * (1.0 + b.abs())),
                            (g, w) => g.is_some() != w.is_some(),
                        })
                    })
                    .count()
            })
        })
        .collect();
    let wrong = workers.into_iter().map(|w| w.join().expect("worker")).sum();
    stop.store(true, Ordering::Relaxed);
    for s in sweepers {
        s.join().expect("sweeper");
    }
    wrong
}

fn main() {
    let device: Device<B> = Default::default();

    // 1. An exact target: three isotropic Gaussians, diffused by the VP SDE.
    let mixture = GaussianMixture::isotropic(
        vec![0.5, 0.3, 0.2],
        vec![vec![-2.0, 0.0], vec![2.0, 1.0], vec![0.0, -3.0]],
        vec![0.3, 0.5, 0.4],
    )
    .expect("a valid mixture");
    let sde = VpSde::default();
    let target = mixture.diffused(sde);
    let mean = mixture.mean(); // [-0.4, -0.3]
    let cov = mixture.covariance(); // row-major 2 × 2

    // 2. Sample it with the predictor–corrector sampler from the exact score.
    let n = 2000;
    let sampler = PcSamplerConfig::new().init(sde).expect("PC config");
    let grid = TimeGrid::reverse(&sde, 1e-3, 200).expect("grid");
    let out = sampler
        .generate(
            &target,
            &grid,
            Start::prior([n, 2], &device),
            &NoiseSource::new(7),
        )
        .expect("sampling the exact score");
    let got = column_means(out.x);
    for d in 0..2 {
        // Four standard errors of the mean from the target's own variance, plus 0.1 for the
        // sampler's discretisation bias at 200 steps (the workspace's sampler tests measure it
        // well below that on this kind of target).
        let bound = 4.0 * (cov[3 * d] / n as f64).sqrt() + 0.1;
        assert!(
            (got[d] - mean[d]).abs() < bound,
            "sample mean {got:?} against the mixture mean {mean:?} (bound {bound:.3})"
        );
    }
    println!("sampled {n} points; mean {got:.3?} (exact {mean:.3?})");

    // 3. Train a small time-conditioned MLP with the continuous-time loss for a few steps.
    let net = TimeMlpConfig::new(2)
        .with_hidden_size(32)
        .with_num_layers(2)
        .init::<A>(&device)
        .expect("MLP config");
    let model = ScoreModel::new(net, sde, Parameterization::Noise);
    // Defaults: λ(t) = σ(t)², t uniform on [ε, 1].
    let loss = SdeLoss::new(sde).expect("loss");
    let steps = 40;
    let config = TrainerConfig::new()
        .with_steps(steps)
        .with_learning_rate(3e-3)
        .with_ema(EmaConfig::new().with_decay(0.9));
    let mut trainer = Trainer::new(model, config).expect("trainer");
    let data =
        |step: u64| mixture.sample::<A>(256, &NoiseSource::new(1), NoiseKey::new(step, 0), &device);
    let report = trainer.fit(&loss, data, &mut ()).expect("training");
    assert_eq!(report.step, steps);
    let history = trainer.history();
    let first: f64 = history[..5].iter().map(|r| r.loss).sum::<f64>() / 5.0;
    let last: f64 = history[history.len() - 5..]
        .iter()
        .map(|r| r.loss)
        .sum::<f64>()
        / 5.0;
    assert!(
        last.is_finite() && last < first,
        "loss went from {first} to {last}"
    );
    println!(
        "trained {steps} steps; mean loss of the first five {first:.3}, of the last five {last:.3}"
    );

    // The EMA model lives on the inner backend and samples like any score.
    let fake = sampler
        .generate(
            trainer.ema(),
            &grid,
            Start::prior([64, 2], &device),
            &NoiseSource::new(8),
        )
        .expect("sampling the trained model");
    assert_eq!(fake.x.dims(), [64, 2]);

    // 4. Likelihood by the probability-flow ODE: with the exact score it is the exact log-density.
    let m = 16;
    let eps = 1e-3;
    let x = mixture.sample::<B>(m, &NoiseSource::new(11), NoiseKey::new(0, 0), &device);
    let exact = to_vec(target.log_prob(x.clone(), Tensor::full([m], eps as f32, &device)));
    let likelihood = LikelihoodConfig::new()
        .with_solver(OdeSolver::Dopri5(
            AdaptiveConfig::new().with_rtol(1e-5).with_atol(1e-5),
        ))
        .init(sde)
        .expect("likelihood config");
    let grid_up = TimeGrid::forward(&sde, eps, 1).expect("grid");
    let ode = likelihood
        .log_prob::<A, 2, _>(&target, &grid_up, x.clone(), &NoiseSource::new(0))
        .expect("likelihood of the exact score");
    let ode = to_vec(ode.log_prob);
    let worst = ode
        .iter()
        .zip(&exact)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    // The ODE solver's tolerance is 1e-5; 0.05 nats leaves room for f32 round-off along the path.
    assert!(
        worst < 0.05,
        "ODE log-density off the exact one by {worst} nats"
    );
    println!("exact-score likelihood within {worst:.2e} nats of the closed form");

    // The trained model has a likelihood too (finite; its value says how far 40 steps got).
    let trained = likelihood
        .log_prob::<A, 2, _>(trainer.model(), &grid_up, x, &NoiseSource::new(0))
        .expect("likelihood of the trained model");
    let trained = to_vec(trained.log_prob);
    assert!(trained.iter().all(|v| v.is_finite()));
    let mean_exact = exact.iter().sum::<f64>() / m as f64;
    let mean_trained = trained.iter().sum::<f64>() / m as f64;
    println!(
        "mean log-density: exact {mean_exact:.3}, model after {steps} steps {mean_trained:.3}"
    );

    // 5. Gradients stay whole beside `backward()` calls on other threads.
    let wrong = gradients_under_concurrent_backward();
    assert_eq!(wrong, 0, "{wrong} of 300 rounds lost or changed a gradient");
    println!("300 gradient rounds beside concurrent backward passes: all whole");
    println!("downstream: all checks passed");
}
