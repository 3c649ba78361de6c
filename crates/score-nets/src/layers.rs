//! Building blocks shared by the networks: activations, a twice-differentiable dense layer, a
//! hand-written layer normalisation, and [`materialize`] for burn's lazy parameters.
//!
//! Why a dense layer of our own: burn 0.21's fused `linear` op (what `nn::Linear::forward` calls)
//! has no second derivative ("Can't differentiate linear_x_backward"), while `matmul` and
//! broadcast `add` do. Energy nets (`s = −∇x E`) and explicit/sliced score matching differentiate
//! the network twice, so every network that may sit in such a loss computes `x·W + b` on the
//! `nn::Linear` parameters — same weights, same records, same initialisation.

use burn::config::Config;
use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::Linear;
use burn::tensor::{Tensor, backend::Backend};

/// A pointwise nonlinearity; each variant is composed of ops that burn can differentiate twice.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum Activation {
    /// `x·σ(x)` (a.k.a. swish), the default of the seeds' networks.
    Silu,
    /// `tanh(x)`.
    Tanh,
    /// `ln(1 + eˣ)`, written stably as `max(x, 0) + ln(1 + e^{−|x|})`; smooth, so useful for energies.
    Softplus,
}

impl Activation {
    /// Applies the nonlinearity elementwise.
    ///
    /// # Shapes
    /// - input and output: any, identical
    pub fn forward<B: Backend, const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            // x·σ(x) with σ(x) = (1 + tanh(x/2))/2: burn-ndarray evaluates `sigmoid` in f32 even
            // on NdArray<f64> (which spoils f64 derivative checks), and `tanh` saturates cleanly
            // where `1/(1 + e^{−x})` would give ∞·0 = NaN in its second derivative.
            Self::Silu => x.clone() * x.div_scalar(2.0).tanh().add_scalar(1.0).div_scalar(2.0),
            Self::Tanh => x.tanh(),
            Self::Softplus => {
                let relu = x.clone().clamp_min(0.0);
                relu + x.abs().neg().exp().log1p()
            }
        }
    }
}

/// `x·W + b` on the parameters of an `nn::Linear` (row layout, the default): the same map as
/// `Linear::forward`, built from `matmul` and `add` so that it is twice differentiable.
///
/// # Shapes
/// - `x`: `[n, d_input]`
/// - output: `[n, d_output]`
pub fn dense<B: Backend>(linear: &Linear<B>, x: Tensor<B, 2>) -> Tensor<B, 2> {
    let y = x.matmul(linear.weight.val());
    match &linear.bias {
        Some(b) => y + b.val().unsqueeze_dim(0),
        None => y,
    }
}

/// Normalises each row to zero mean and unit variance (LayerNorm without the affine part):
/// `(x − μ)/√(σ² + ε)`, written with basic tensor ops so it is twice differentiable on every
/// backend.
///
/// # Shapes
/// - `x`: `[n, d]`; output: `[n, d]`
pub fn layer_norm<B: Backend>(x: Tensor<B, 2>, epsilon: f64) -> Tensor<B, 2> {
    let mean = x.clone().mean_dim(1);
    let centered = x - mean;
    let var = centered.clone().square().mean_dim(1);
    centered / var.add_scalar(epsilon).sqrt()
}

/// Forces every lazily initialised parameter of `module` to take its value now.
///
/// burn 0.21 builds parameters lazily: a clone (or an autodiff lift) taken before first use
/// initialises separately, with other values and other ids. Every `init` of this crate calls this
/// before returning; call it yourself on modules built by hand.
pub fn materialize<B: Backend, M: Module<B>>(module: &M) {
    struct Touch;
    impl<B: Backend> ModuleVisitor<B> for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Touch);
}

/// Paths and shapes of every float parameter of a module, in visiting order.
pub fn param_shapes<B: Backend, M: Module<B>>(module: &M) -> Vec<(String, Vec<usize>)> {
    struct Shapes {
        path: Vec<String>,
        out: Vec<(String, Vec<usize>)>,
    }
    impl<B: Backend> ModuleVisitor<B> for Shapes {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.out
                .push((self.path.join("."), param.val().dims().to_vec()));
        }
    }
    let mut v = Shapes {
        path: Vec::new(),
        out: Vec::new(),
    };
    module.visit(&mut v);
    v.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::nn::LinearConfig;
    use burn::tensor::Tolerance;

    type B = NdArray<f32>;

    #[test]
    fn dense_matches_fused_linear() {
        let dev = Default::default();
        let lin = LinearConfig::new(3, 4).init::<B>(&dev);
        let x = Tensor::<B, 2>::random([5, 3], burn::tensor::Distribution::Default, &dev);
        let a = dense(&lin, x.clone());
        let b = lin.forward(x);
        assert_eq!(a.dims(), [5, 4]);
        a.into_data()
            .assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(1e-6));
    }

    #[test]
    fn layer_norm_and_activations() {
        let dev = Default::default();
        let x = Tensor::<B, 2>::from_floats([[1.0, 2.0, 3.0, 6.0], [-1.0, 0.0, 0.0, 1.0]], &dev);
        let y = layer_norm(x.clone(), 1e-5);
        let mean = y.clone().mean_dim(1).abs().max().into_scalar();
        let var = y.square().mean_dim(1);
        assert!(mean < 1e-6);
        var.into_data().assert_approx_eq::<f32>(
            &Tensor::<B, 2>::ones([2, 1], &dev).into_data(),
            Tolerance::absolute(1e-4),
        );
        let sp =
            Activation::Softplus.forward(Tensor::<B, 1>::from_floats([-30.0, 0.0, 30.0], &dev));
        sp.into_data().assert_approx_eq::<f32>(
            &Tensor::<B, 1>::from_floats([0.0, std::f32::consts::LN_2, 30.0], &dev).into_data(),
            Tolerance::absolute(1e-5),
        );
        let si = Activation::Silu.forward(x.clone());
        si.into_data().assert_approx_eq::<f32>(
            &burn::tensor::activation::silu(x.clone()).into_data(),
            Tolerance::absolute(1e-6),
        );
        let th = Activation::Tanh.forward(x);
        assert!(th.abs().max().into_scalar() <= 1.0);
    }
}
