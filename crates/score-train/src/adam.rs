//! [`FusedAdam`]: burn-optim's Adam with its update run as one host pass per parameter on the
//! CPU backends (`score_nets::cpu_ops::adam_update`), bit-identical to burn's and with burn's
//! state, so checkpoints keep their format.
//!
//! burn's `Adam` updates each parameter with ~12 tensor ops (moments, square root, bias
//! correction, step), each a pass over memory and an allocation; for the small MLPs of the 2-D
//! work that was about a tenth of a training step.

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{
    Adam, AdamConfig, AdamState, AdaptiveMomentumState, LearningRate, SimpleOptimizer,
};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ops::Device;
use score_nets::cpu_ops::adam::AdamConsts;
use score_nets::cpu_ops::{adam_update, host_adam_supported};

/// Adam as burn-optim computes it, on the host where the backend allows (see the
/// [module documentation](self)).
#[derive(Clone)]
pub struct FusedAdam {
    burn: Adam,
    /// The constants, where the host pass applies: no AMSGrad and no weight decay.
    host: Option<AdamConsts>,
}

impl FusedAdam {
    /// Adam as `config` sets it. AMSGrad and weight decay keep burn's tensor ops.
    pub fn new(config: &AdamConfig) -> Self {
        Self {
            burn: config.build(),
            host: host_consts(config),
        }
    }

    /// The optimiser for a module, as `AdamConfig::init` builds burn's (without gradient
    /// clipping: set it on the adaptor if wanted).
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(
        config: &AdamConfig,
    ) -> OptimizerAdaptor<Self, M, B> {
        OptimizerAdaptor::from(Self::new(config))
    }
}

/// β₁, β₂ and ε of `config` (its fields are private; its serde form names them), or `None` where
/// the host pass does not apply.
fn host_consts(config: &AdamConfig) -> Option<AdamConsts> {
    let v = serde_json::to_value(config).ok()?;
    let plain = !v.get("amsgrad")?.as_bool()? && v.get("weight_decay").is_none_or(|w| w.is_null());
    let f = |name: &str| v.get(name)?.as_f64().map(|x| x as f32);
    plain.then_some(AdamConsts {
        beta_1: f("beta_1")?,
        beta_2: f("beta_2")?,
        epsilon: f("epsilon")?,
    })
}

impl<B: Backend> SimpleOptimizer<B> for FusedAdam {
    type State<const D: usize> = AdamState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let amsgrad_state = state
            .as_ref()
            .is_some_and(|s| s.momentum.max_moment_2.is_some());
        match &self.host {
            Some(c) if !amsgrad_state && host_adam_supported(&tensor) => {
                let (time, moments) = match state {
                    Some(s) => (
                        s.momentum.time + 1,
                        Some((s.momentum.moment_1, s.momentum.moment_2)),
                    ),
                    None => (1, None),
                };
                let (p, m, v) = adam_update(c, lr, time, tensor, grad, moments);
                let momentum = AdaptiveMomentumState::new(time, m, v);
                (p, Some(AdamState::new(momentum)))
            }
            _ => self.burn.step(lr, tensor, grad, state),
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device<B>) -> Self::State<D> {
        <Adam as SimpleOptimizer<B>>::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex, NdArray};
    use burn::module::Param;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::decay::WeightDecayConfig;
    use burn::optim::{GradientsParams, Optimizer};
    use burn::tensor::TensorData;

    /// Four steps of a small linear model under `FusedAdam` and under burn's `Adam`: the
    /// parameters agree bit for bit (the host pass does burn's arithmetic in burn's order).
    fn matches_burn_bit_for_bit<B: AutodiffBackend>() {
        let dev = Default::default();
        let fixed = |len: usize, seed: usize| -> Vec<f32> {
            (0..len)
                .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0) - 1.0)
                .collect()
        };
        let mut model = LinearConfig::new(3, 4).init::<B>(&dev);
        model.weight = Param::from_data(TensorData::new(fixed(12, 1), [3, 4]), &dev);
        model.bias = Some(Param::from_data(TensorData::new(fixed(4, 2), [4]), &dev));
        let x = Tensor::<B, 2>::from_data(TensorData::new(fixed(15, 3), [5, 3]), &dev);
        // The host pass is what runs here (else both sides would be burn's ops).
        assert!(host_adam_supported(&x.clone().inner()));
        let config = AdamConfig::new();
        let mut fused = FusedAdam::init::<B, Linear<B>>(&config);
        let mut reference = config.init::<B, Linear<B>>();
        let (mut a, mut b) = (model.clone(), model);
        for step in 0..4 {
            let grads_of = |m: &Linear<B>| {
                let loss = m.forward(x.clone()).square().sum();
                GradientsParams::from_grads(loss.backward(), m)
            };
            let (ga, gb) = (grads_of(&a), grads_of(&b));
            a = fused.step(1e-2, a, ga);
            b = reference.step(1e-2, b, gb);
            let bits = |m: &Linear<B>| {
                let mut v = m.weight.val().into_data().to_vec::<f32>().unwrap();
                v.extend(
                    m.bias
                        .as_ref()
                        .unwrap()
                        .val()
                        .into_data()
                        .to_vec::<f32>()
                        .unwrap(),
                );
                v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            };
            assert_eq!(bits(&a), bits(&b), "step {step}");
        }
    }

    #[test]
    fn matches_burn_adam_on_ndarray() {
        matches_burn_bit_for_bit::<Autodiff<NdArray<f32>>>();
    }

    #[test]
    fn matches_burn_adam_on_flex() {
        matches_burn_bit_for_bit::<Autodiff<Flex>>();
    }

    #[test]
    fn reads_the_constants_and_declines_what_it_does_not_fuse() {
        let c = host_consts(&AdamConfig::new().with_beta_1(0.8).with_epsilon(1e-8)).unwrap();
        assert_eq!((c.beta_1, c.beta_2, c.epsilon), (0.8, 0.999, 1e-8));
        assert!(host_consts(&AdamConfig::new().with_amsgrad(true)).is_none());
        let decay = AdamConfig::new().with_weight_decay(Some(WeightDecayConfig::new(1e-2)));
        assert!(host_consts(&decay).is_none());
        // Builds for a module, as burn's does.
        let _ = FusedAdam::init::<Autodiff<NdArray<f32>>, burn::nn::Linear<_>>(&AdamConfig::new());
    }
}
