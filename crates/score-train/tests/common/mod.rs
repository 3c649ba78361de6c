//! Small models and helpers shared by the integration tests.
#![allow(dead_code)]

use burn::module::{Module, Param};
use burn::tensor::{Tensor, backend::Backend};
use score_core::{EnergyFn, NoiseKey, NoiseSource, ScoreFn, tensor::to_f64};

/// Layer shapes of a one-hidden-layer net on `[x, t]`, all parameters in one flat vector so that
/// a central difference perturbs one entry: `W1 [d+1, h]`, `b1 [h]`, `W2 [h, out]`, `b2 [out]`.
fn layer_sizes(d: usize, h: usize, out: usize) -> [usize; 4] {
    [(d + 1) * h, h, h * out, out]
}

/// `tanh([x, t]·W1 + b1)·W2 + b2` from the flat parameter vector; `matmul` and slicing only, so
/// twice (and thrice) differentiable.
fn forward<B: Backend>(
    theta: Tensor<B, 1>,
    d: usize,
    h: usize,
    out: usize,
    x: Tensor<B, 2>,
    t: Tensor<B, 1>,
) -> Tensor<B, 2> {
    let [a, b, c, e] = layer_sizes(d, h, out);
    let w1 = theta.clone().narrow(0, 0, a).reshape([d + 1, h]);
    let b1 = theta.clone().narrow(0, a, b).unsqueeze_dim(0);
    let w2 = theta.clone().narrow(0, a + b, c).reshape([h, out]);
    let b2 = theta.narrow(0, a + b + c, e).unsqueeze_dim(0);
    let n = x.dims()[0];
    let input = Tensor::cat(vec![x, t.reshape([n, 1])], 1);
    (input.matmul(w1) + b1).tanh().matmul(w2) + b2
}

fn init_theta<B: Backend>(len: usize, scale: f64, seed: u64, device: &B::Device) -> Tensor<B, 1> {
    NoiseSource::new(seed)
        .normal::<B, 2>([1, len], NoiseKey::new(0, 0), device)
        .reshape([len])
        .mul_scalar(scale)
}

/// A time-conditioned score network `R^d → R^d`.
#[derive(Module, Debug)]
pub struct TinyScore<B: Backend> {
    pub theta: Param<Tensor<B, 1>>,
    pub d: usize,
    pub h: usize,
}

impl<B: Backend> TinyScore<B> {
    pub fn new(d: usize, h: usize, seed: u64, device: &B::Device) -> Self {
        let len = layer_sizes(d, h, d).iter().sum();
        Self {
            theta: Param::from_tensor(init_theta(len, 0.5, seed, device)),
            d,
            h,
        }
    }
    pub fn with_theta(&self, theta: Tensor<B, 1>) -> Self {
        Self {
            theta: Param::from_tensor(theta),
            d: self.d,
            h: self.h,
        }
    }
}

impl<B: Backend> ScoreFn<B, 2> for TinyScore<B> {
    fn score(&self, x: Tensor<B, 2>, t: Tensor<B, 1>) -> Tensor<B, 2> {
        forward(self.theta.val(), self.d, self.h, self.d, x, t)
    }
}

/// A time-conditioned energy `E(x, t) = ½‖x‖²/4 + MLP(x, t)` (the quadratic keeps it normalisable).
#[derive(Module, Debug)]
pub struct TinyEnergy<B: Backend> {
    pub theta: Param<Tensor<B, 1>>,
    pub d: usize,
    pub h: usize,
}

impl<B: Backend> TinyEnergy<B> {
    pub fn new(d: usize, h: usize, seed: u64, device: &B::Device) -> Self {
        let len = layer_sizes(d, h, 1).iter().sum();
        Self {
            theta: Param::from_tensor(init_theta(len, 0.5, seed, device)),
            d,
            h,
        }
    }
    pub fn with_theta(&self, theta: Tensor<B, 1>) -> Self {
        Self {
            theta: Param::from_tensor(theta),
            d: self.d,
            h: self.h,
        }
    }
}

impl<B: Backend> EnergyFn<B, 2> for TinyEnergy<B> {
    fn energy(&self, x: Tensor<B, 2>, t: Tensor<B, 1>) -> Tensor<B, 1> {
        let n = x.dims()[0];
        let quad = x.clone().square().sum_dim(1).reshape([n]).mul_scalar(0.125);
        quad + forward(self.theta.val(), self.d, self.h, 1, x, t).reshape([n])
    }
}

/// The score of a Gaussian model `s(x) = −A x + b` with a learnable (not necessarily symmetric) `A`.
#[derive(Module, Debug)]
pub struct LinearScore<B: Backend> {
    pub a: Param<Tensor<B, 2>>,
    pub b: Param<Tensor<B, 1>>,
}

impl<B: Backend> ScoreFn<B, 2> for LinearScore<B> {
    fn score(&self, x: Tensor<B, 2>, _t: Tensor<B, 1>) -> Tensor<B, 2> {
        -x.matmul(self.a.val().transpose()) + self.b.val().unsqueeze_dim(0)
    }
}

/// Mean and standard error of per-sample values.
pub fn mean_se(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

/// Per-sample values of a `[n]` tensor on the host.
pub fn host<B: Backend>(x: Tensor<B, 1>) -> Vec<f64> {
    to_f64(x)
}
