//! Exponential moving average of the weights (Polyak averaging), the copy that samplers use.

use burn::config::Config;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, backend::Backend};

use crate::error::TrainError;

/// How the EMA decay ramps up at the start of training.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum EmaWarmup {
    /// The configured decay from the first update.
    Constant,
    /// `min(decay, (1 + n)/(10 + n))` after `n` updates (TensorFlow's `num_updates` rule): early
    /// weights, which are far from the final ones, are forgotten quickly.
    Inverse,
}

/// EMA settings.
#[derive(Config, Debug)]
pub struct EmaConfig {
    /// Decay `β` of `θ_ema ← β θ_ema + (1 − β) θ`; score_sde uses 0.999 (0.9999 for images).
    #[config(default = 0.999)]
    pub decay: f64,
    /// Warm-up of the decay.
    #[config(default = "EmaWarmup::Inverse")]
    pub warmup: EmaWarmup,
}

impl EmaConfig {
    /// Checks `0 ≤ decay < 1`.
    pub fn validate(&self) -> crate::Result<()> {
        if (0.0..1.0).contains(&self.decay) {
            Ok(())
        } else {
            Err(TrainError::invalid(
                "ema.decay",
                self.decay,
                "must lie in [0, 1)",
            ))
        }
    }

    /// The decay applied at update number `n` (0-based).
    pub fn decay_at(&self, n: u64) -> f64 {
        match self.warmup {
            EmaWarmup::Constant => self.decay,
            EmaWarmup::Inverse => self.decay.min((1.0 + n as f64) / (10.0 + n as f64)),
        }
    }

    /// Starts an average at `module` (which must have all its parameters initialised).
    pub fn init<B: Backend, M: Module<B>>(&self, module: M) -> crate::Result<Ema<M>> {
        self.validate()?;
        Ok(Ema {
            config: self.clone(),
            module,
        })
    }
}

/// A moving average of a module's parameters; parameter ids match the averaged module's.
///
/// ```
/// use burn::backend::NdArray;
/// use burn::module::Param;
/// use burn::tensor::Tensor;
/// use score_train::{EmaConfig, EmaWarmup};
/// type B = NdArray<f32>;
/// let dev = Default::default();
/// let p = Param::from_tensor(Tensor::<B, 1>::zeros([2], &dev));
/// let mut ema = EmaConfig::new().with_decay(0.5).with_warmup(EmaWarmup::Constant).init(p.clone()).unwrap();
/// let moved = p.map(|t| t.add_scalar(1.0));
/// ema.update(&moved, 0);
/// assert_eq!(ema.module().val().into_data().to_vec::<f32>().unwrap(), vec![0.5, 0.5]);
/// ```
#[derive(Debug, Clone)]
pub struct Ema<M> {
    config: EmaConfig,
    module: M,
}

impl<M> Ema<M> {
    /// The averaged module.
    pub fn module(&self) -> &M {
        &self.module
    }
    /// Takes the averaged module out.
    pub fn into_module(self) -> M {
        self.module
    }
    /// Replaces the averaged module (used when resuming).
    pub fn set_module(&mut self, module: M) {
        self.module = module;
    }
    /// The settings.
    pub fn config(&self) -> &EmaConfig {
        &self.config
    }

    /// One update towards `current` with the decay of update number `n`.
    pub fn update<B: Backend>(&mut self, current: &M, n: u64)
    where
        M: Module<B>,
    {
        struct Collect<'a>(&'a mut GradientsParams);
        impl<B: Backend> ModuleVisitor<B> for Collect<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                self.0.register::<B, D>(param.id, param.val());
            }
        }
        struct Blend {
            values: GradientsParams,
            decay: f64,
        }
        impl<B: Backend> ModuleMapper<B> for Blend {
            fn map_float<const D: usize>(
                &mut self,
                param: Param<Tensor<B, D>>,
            ) -> Param<Tensor<B, D>> {
                let (id, avg, mapper) = param.consume();
                let avg = match self.values.remove::<B, D>(id) {
                    Some(cur) => avg
                        .mul_scalar(self.decay)
                        .add(cur.mul_scalar(1.0 - self.decay)),
                    None => avg,
                };
                Param::from_mapped_value(id, avg, mapper)
            }
        }
        let mut values = GradientsParams::new();
        current.visit(&mut Collect(&mut values));
        let decay = self.config.decay_at(n);
        let module = self.module.clone().map(&mut Blend { values, decay });
        self.module = module;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_ramps_the_decay_and_invalid_decays_are_rejected() {
        let c = EmaConfig::new().with_decay(0.999);
        assert!((c.decay_at(0) - 0.1).abs() < 1e-12);
        assert!((c.decay_at(90) - 91.0 / 100.0).abs() < 1e-12);
        assert_eq!(c.decay_at(1_000_000), 0.999);
        let constant = c.clone().with_warmup(EmaWarmup::Constant);
        assert_eq!(constant.decay_at(0), 0.999);
        assert!(EmaConfig::new().with_decay(1.0).validate().is_err());
        assert!(EmaConfig::new().with_decay(-0.1).validate().is_err());
    }
}
