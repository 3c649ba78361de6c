//! Derivative oracles in f64: ESM and SSM parameter gradients equal central differences, and
//! SSM-VR's expectation equals ESM's on a Gaussian model.
//!
//! A separate test binary from the f32 tests: burn 0.21 fixes a device's default float dtype at
//! its first tensor, per process, and NdArray's f32 and f64 backends share the CPU device.

mod common;

use burn::backend::{Autodiff, NdArray};
use burn::module::Param;
use burn::tensor::Tensor;
use burn::tensor::TensorData;
use common::{LinearScore, TinyEnergy, TinyScore, host, mean_se};
use score_core::{GaussianMixture, NoiseKey, NoiseSource, ScoreFn};
use score_train::{
    AsEnergy, DenoisingScoreMatching, ExplicitScoreMatching, Loss, Projection, SlicedEstimator,
    SlicedScoreMatching,
};

type B64 = NdArray<f64>;
type A64 = Autodiff<NdArray<f64>>;

/// θ as an f64 tensor (score-core's `from_f64` uploads f32, which would round θ ± h).
fn theta_tensor(theta: &[f64], dev: &burn::backend::ndarray::NdArrayDevice) -> Tensor<A64, 1> {
    Tensor::from_data(TensorData::new(theta.to_vec(), [theta.len()]), dev)
}

/// Central differences of `f` at `theta` for entries `idx`, step `h`.
fn central_differences(
    theta: &[f64],
    idx: &[usize],
    h: f64,
    f: impl Fn(&[f64]) -> f64,
) -> Vec<f64> {
    idx.iter()
        .map(|&k| {
            let mut p = theta.to_vec();
            p[k] += h;
            let up = f(&p);
            p[k] -= 2.0 * h;
            let down = f(&p);
            (up - down) / (2.0 * h)
        })
        .collect()
}

fn assert_grads_close(auto: &[f64], fd: &[f64], what: &str) {
    // f64 throughout: central differences with h = 1e-5 carry O(h²) ≈ 1e-10 truncation and
    // O(ε/h) ≈ 1e-11 rounding error, so 1e-6 relative (plus 1e-8 absolute) is ample.
    for (i, (a, f)) in auto.iter().zip(fd).enumerate() {
        assert!(
            (a - f).abs() <= 1e-6 * a.abs().max(f.abs()) + 1e-8,
            "{what}: entry {i}: autodiff {a} vs central difference {f}"
        );
    }
    println!(
        "{what}: {} gradient entries match (e.g. {:.6} vs {:.6})",
        auto.len(),
        auto[0],
        fd[0]
    );
}

/// Gradient check of one loss on one model family: autodiff of the loss w.r.t. θ vs central
/// differences, same data and noise.
fn check_gradient<M, L>(what: &str, loss: &L, build: impl Fn(Tensor<A64, 1>) -> M, theta: Vec<f64>)
where
    L: Loss<A64, M, 2>,
    M: burn::module::Module<A64>,
{
    let dev = Default::default();
    let x0 = GaussianMixture::ring(4, 1.5, 0.3).unwrap().sample::<A64>(
        16,
        &NoiseSource::new(8),
        NoiseKey::new(0, 0),
        &dev,
    );
    let noise = NoiseSource::new(9);
    let len = theta.len();
    let eval = |th: &[f64]| -> f64 {
        let m = build(theta_tensor(th, &dev));
        loss.loss(&m, x0.clone(), &noise, 3).into_scalar()
    };
    let theta_t = theta_tensor(&theta, &dev).require_grad();
    let model = build(theta_t.clone());
    let grads = loss.loss(&model, x0.clone(), &noise, 3).backward();
    let auto = host(theta_t.grad(&grads).expect("θ has a gradient"));
    let idx: Vec<usize> = (0..len).step_by(len / 12 + 1).collect();
    let fd = central_differences(&theta, &idx, 1e-5, eval);
    let auto: Vec<f64> = idx.iter().map(|&k| auto[k]).collect();
    assert_grads_close(&auto, &fd, what);
}

#[test]
fn esm_and_ssm_parameter_gradients_equal_central_differences() {
    let dev = Default::default();
    let score = TinyScore::<A64>::new(2, 6, 1, &dev);
    let energy = TinyEnergy::<A64>::new(2, 6, 2, &dev);
    let theta_s = host(score.theta.val());
    let theta_e = host(energy.theta.val());
    // The models hold θ as a plain tensor (not a Param leaf) so that the gradient w.r.t. θ is
    // the one the loss sends to the parameters.
    let as_score = |th: Tensor<A64, 1>| TinyScore::<A64> {
        theta: Param::from_tensor(th),
        d: 2,
        h: 6,
    };
    let as_energy = |th: Tensor<A64, 1>| TinyEnergy::<A64> {
        theta: Param::from_tensor(th),
        d: 2,
        h: 6,
    };
    let esm = ExplicitScoreMatching::new().with_time(0.3);
    check_gradient("ESM score net", &esm, as_score, theta_s.clone());
    check_gradient(
        "ESM energy net",
        &esm.with_view(AsEnergy),
        as_energy,
        theta_e.clone(),
    );
    let ssm = SlicedScoreMatching::new(3).unwrap().with_time(0.3);
    check_gradient(
        "SSM score net, Gaussian",
        &ssm.with_estimator(SlicedEstimator::Plain),
        as_score,
        theta_s.clone(),
    );
    check_gradient(
        "SSM-VR score net, Rademacher",
        &ssm.with_projection(Projection::Rademacher),
        as_score,
        theta_s,
    );
    check_gradient(
        "SSM-VR energy net",
        &ssm.with_view(AsEnergy),
        as_energy,
        theta_e.clone(),
    );
    let dsm = DenoisingScoreMatching::new(0.3)
        .unwrap()
        .with_view(AsEnergy);
    check_gradient("DSM energy net", &dsm, as_energy, theta_e);
}

#[test]
fn ssm_vr_expectation_equals_esm_on_a_gaussian_model() {
    // s(x) = −Ax + b is the score of a Gaussian model. ESM = ½‖s‖² − tr A exactly; SSM-VR
    // replaces tr(∂s/∂x) = −tr A by −vᵀAv, whose mean over v is −tr A and whose variance for
    // Gaussian v is 2‖A_sym‖_F². With p projections and n samples the standard error of the
    // mean difference is √(2‖A_sym‖_F²/(np)); the bound is 4 of those.
    let dev = Default::default();
    let a: [[f64; 2]; 2] = [[1.5, 0.25], [-0.25, 0.75]];
    let model = LinearScore::<B64> {
        a: Param::from_tensor(Tensor::from_floats(a, &dev)),
        b: Param::from_tensor(Tensor::from_floats([0.1, -0.2], &dev)),
    };
    let (n, p) = (2000, 8);
    let x0 = NoiseSource::new(12).normal::<B64, 2>([n, 2], NoiseKey::new(0, 0), &dev);
    let noise = NoiseSource::new(13);
    let esm = host(ExplicitScoreMatching::new().per_sample(&model, x0.clone(), &noise, 0));
    let trace_a = a[0][0] + a[1][1];
    let sym_f2 = a[0][0] * a[0][0] + a[1][1] * a[1][1] + 0.5 * (a[0][1] + a[1][0]).powi(2);
    let bound = 4.0 * (2.0 * sym_f2 / (n * p) as f64).sqrt();
    let ssm = SlicedScoreMatching::new(p).unwrap();
    for estimator in [SlicedEstimator::VarianceReduced, SlicedEstimator::Plain] {
        let vals = host(
            ssm.with_estimator(estimator)
                .per_sample(&model, x0.clone(), &noise, 0),
        );
        let diff: Vec<f64> = vals.iter().zip(&esm).map(|(s, e)| s - e).collect();
        let (m, se) = mean_se(&diff);
        println!("{estimator:?} − ESM = {m:.4} ± {se:.4} (analytic VR bound {bound:.4})");
        match estimator {
            SlicedEstimator::VarianceReduced => assert!(m.abs() < bound, "{m} vs {bound}"),
            // The plain estimator also carries ½((vᵀs)² − ‖s‖²), whose variance depends on s:
            // bounded by its own empirical standard error.
            _ => assert!(m.abs() < 4.0 * se, "{m} ± {se}"),
        }
    }
    // ESM itself is exact here: ½‖s‖² − tr A per sample.
    let s = host(
        model
            .score(x0, Tensor::zeros([n], &dev))
            .square()
            .sum_dim(1)
            .reshape([n]),
    );
    for (e, s2) in esm.iter().zip(&s) {
        assert!(
            (e - (0.5 * s2 - trace_a)).abs() < 1e-9,
            "{e} vs {}",
            0.5 * s2 - trace_a
        );
    }
}
