//! Building blocks shared by the networks: activations, a twice-differentiable dense layer, a
//! hand-written layer normalisation, and [`materialize`] for burn's lazy parameters.
//!
//! Why a dense layer of our own: burn 0.21's fused `linear` op (what `nn::Linear::forward` calls)
//! has no second derivative ("Can't differentiate linear_x_backward"), while `matmul` and
//! broadcast `add` do. Energy nets (`s = −∇x E`) and explicit/sliced score matching differentiate
//! the network twice, so every network that may sit in such a loss computes `x·W + b` on the
//! `nn::Linear` parameters — same weights, same records, same initialisation.

use burn::config::Config;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::nn::Linear;
use burn::tensor::{Tensor, backend::Backend};
use score_core::{NoiseKey, NoiseSource};

use crate::cpu_ops::{self, dense::DenseAct};

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
    /// The fused host kernels' form of this activation, where they have it (not softplus).
    pub(crate) fn fused(self) -> Option<DenseAct> {
        match self {
            Self::Silu => Some(DenseAct::Silu),
            Self::Tanh => Some(DenseAct::Tanh),
            Self::Softplus => None,
        }
    }

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
///
/// On the CPU backends with the fast kernels (see [`crate::cpu_ops`]) and first-order autodiff,
/// the layer is one host op with its own backward.
pub fn dense<B: Backend>(linear: &Linear<B>, x: Tensor<B, 2>) -> Tensor<B, 2> {
    match cpu_ops::dense(linear, x, DenseAct::Identity) {
        Ok(y) => y,
        Err(x) => composed_dense(linear, x),
    }
}

fn composed_dense<B: Backend>(linear: &Linear<B>, x: Tensor<B, 2>) -> Tensor<B, 2> {
    let y = x.matmul(linear.weight.val());
    match &linear.bias {
        Some(b) => y + b.val().unsqueeze_dim(0),
        None => y,
    }
}

/// `act(x·W + b)`: [`dense`] followed by `act`, fused into one host op (one GEMM, one pass for
/// bias and activation, and its own backward) on the CPU backends with the fast kernels for
/// SiLU and tanh; composed from burn's ops everywhere else, and for softplus.
///
/// # Shapes
/// - `x`: `[n, d_input]`
/// - output: `[n, d_output]`
pub fn dense_act<B: Backend>(linear: &Linear<B>, x: Tensor<B, 2>, act: Activation) -> Tensor<B, 2> {
    let x = match act.fused() {
        Some(a) => match cpu_ops::dense(linear, x, a) {
            Ok(y) => return y,
            Err(x) => x,
        },
        None => x,
    };
    act.forward(composed_dense(linear, x))
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

/// Gives every dense and convolution layer of `module` values drawn from `seed`, and
/// materialises the other parameters: the network's initialisation becomes a pure function of
/// its configuration and `seed`.
///
/// burn 0.21's initialisers draw from one process-wide RNG per backend (`B::seed`), which any
/// other thread (a parallel test, a user's `Tensor::random`) can reseed or advance between two
/// builds, so the same config can give other weights under load. This redraws the layers that
/// burn initialises randomly from a counter-based [`NoiseSource`] instead, with burn's default
/// distribution for them (Kaiming-uniform with gain 1/√3, i.e. `U(−1/√fan_in, 1/√fan_in)` for
/// weight and bias alike, `fan_in` = input features of an `nn::Linear` in its default row
/// layout, or `in_channels/groups · kernel size` of an `nn::Conv1d`/`nn::Conv2d`). Parameters
/// initialised to constants (norm scales and offsets) and fixed random features drawn from their
/// own seed (Gaussian Fourier frequencies) keep their values. Every `init` of this crate calls
/// it with the config's `seed`.
///
/// ```
/// use burn::backend::NdArray;
/// use score_nets::{TimeMlpConfig, param_values, seeded_init};
/// let dev = Default::default();
/// let cfg = TimeMlpConfig::new(2).with_hidden_size(8).with_num_layers(1);
/// let a = cfg.init::<NdArray<f32>>(&dev).unwrap();
/// let b = seeded_init(cfg.clone().with_seed(1).init::<NdArray<f32>>(&dev).unwrap(), 0);
/// assert_eq!(param_values(&a), param_values(&b));
/// ```
pub fn seeded_init<B: Backend, M: Module<B>>(module: M, seed: u64) -> M {
    // A purpose of its own, so that weights never share noise with data drawn from the same seed.
    const INIT_PURPOSE: u64 = 0x1417;
    struct Seeded {
        noise: NoiseSource,
        index: u64,
        path: Vec<(String, String)>,
        fan_in: usize,
    }
    impl<B: Backend> ModuleMapper<B> for Seeded {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.path
                .push((name.to_string(), container_type.to_string()));
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, value, mapper) = param.consume();
            let Some((field, container)) = self.path.last() else {
                return Param::from_mapped_value(id, value, mapper);
            };
            let dims = value.dims();
            let fan_in = match (container.as_str(), field.as_str()) {
                ("Struct:Linear", "weight") => dims[0],
                ("Struct:Conv1d" | "Struct:Conv2d", "weight") => dims[1..].iter().product(),
                // burn builds the bias after the weight, with the weight's fan-in.
                ("Struct:Linear" | "Struct:Conv1d" | "Struct:Conv2d", "bias") => self.fan_in,
                _ => return Param::from_mapped_value(id, value, mapper),
            };
            self.fan_in = fan_in;
            let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
            let require_grad = value.is_require_grad();
            let fresh = self
                .noise
                .uniform::<B, D>(dims, NoiseKey::new(self.index, 0), &value.device())
                .mul_scalar(2.0 * bound)
                .sub_scalar(bound)
                .set_require_grad(require_grad);
            self.index += 1;
            Param::from_mapped_value(id, fresh, mapper)
        }
    }
    module.map(&mut Seeded {
        noise: NoiseSource::new(seed).derive(INIT_PURPOSE),
        index: 0,
        path: Vec::new(),
        fan_in: 1,
    })
}

/// Every float parameter's values, in visiting order, as f32 bits (exact comparison of two
/// modules: equal vectors mean bit-identical parameters).
pub fn param_values<B: Backend, M: Module<B>>(module: &M) -> Vec<u32> {
    struct Collect(Vec<u32>);
    impl<B: Backend> ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            let v = p.val().into_data().convert::<f32>();
            self.0.extend(v.iter::<f32>().map(f32::to_bits));
        }
    }
    let mut c = Collect(Vec::new());
    module.visit(&mut c);
    c.0
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

    #[test]
    fn seeded_init_ignores_the_global_rng_and_follows_burns_distribution() {
        use crate::{TimeMlpConfig, UNetConfig};
        let dev = Default::default();
        let cfg = TimeMlpConfig::new(3)
            .with_hidden_size(64)
            .with_num_layers(2);
        let a = param_values(&cfg.init::<B>(&dev).unwrap());
        // Another thread reseeds and draws from burn's global RNG while the same config is built
        // again: the weights must not move.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let noisy = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    #[allow(clippy::disallowed_methods)] // the disturbance under test
                    B::seed(&Default::default(), i);
                    let _ = Tensor::<B, 1>::random(
                        [64],
                        burn::tensor::Distribution::Default,
                        &Default::default(),
                    );
                    i += 1;
                }
            })
        };
        for _ in 0..20 {
            assert_eq!(param_values(&cfg.init::<B>(&dev).unwrap()), a);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        noisy.join().unwrap();
        assert_ne!(
            param_values(&cfg.clone().with_seed(1).init::<B>(&dev).unwrap()),
            a
        );

        // The first hidden layer: fan-in 3 + 128 (concatenated embedding), so U(±1/√131); its
        // 131·64 weights have variance bound²/3, with a relative standard error of
        // √(4/5 / 8384) ≈ 1 %: 5 % is five of them.
        let net = cfg.init::<B>(&dev).unwrap();
        let w = net.layers[0]
            .weight
            .val()
            .into_data()
            .convert::<f64>()
            .to_vec::<f64>()
            .unwrap();
        let bound = 1.0 / 131f64.sqrt();
        assert!(w.iter().all(|v| v.abs() <= bound));
        let var = w.iter().map(|v| v * v).sum::<f64>() / w.len() as f64;
        assert!(
            (var / (bound * bound / 3.0) - 1.0).abs() < 0.05,
            "variance {var}"
        );
        let b = net.layers[0]
            .bias
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .convert::<f64>();
        assert!(b.iter::<f64>().all(|v| v.abs() <= bound) && b.iter::<f64>().any(|v| v != 0.0));

        // GroupNorm scales stay one; convolutions get fan-in = in_channels · 3 · 3.
        let unet = UNetConfig::mnist().with_base_channels(8).with_groups(4);
        let u = unet.init::<B>(&dev).unwrap();
        assert!(
            u.norm_out
                .gamma
                .as_ref()
                .unwrap()
                .val()
                .into_data()
                .iter::<f32>()
                .all(|g| g == 1.0)
        );
        let conv_bound = 1.0 / 9f32.sqrt();
        let conv = u.conv_in.weight.val().into_data();
        assert!(conv.iter::<f32>().all(|v| v.abs() <= conv_bound));
        assert!(conv.iter::<f32>().any(|v| v.abs() > 0.5 * conv_bound));
        assert_eq!(
            param_values(&unet.init::<B>(&dev).unwrap()),
            param_values(&u)
        );
    }
}
