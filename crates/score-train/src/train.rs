//! The training loop: Adam ([`FusedAdam`]: burn's, run as one host pass per parameter on the CPU
//! backends) with learning-rate warm-up, global gradient-norm clipping, an EMA of
//! the weights, an evaluation hook, a progress bar, a CSV loss history, and checkpoints from which
//! an interrupted run resumes to exactly the parameters of an uninterrupted one.
//!
//! Determinism: the loss draws its noise from a [`NoiseSource`] keyed by the step, the data closure
//! receives the step, and the checkpoint stores the model, EMA and Adam moments at full precision
//! with the step and seed. Resuming rebuilds exactly the state the run had, so on a deterministic
//! backend (the CPU ones) the remaining steps repeat bit for bit.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::config::Config;
use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{Tensor, backend::AutodiffBackend, cast::ToElement};
use indicatif::{ProgressBar, ProgressStyle};
use score_core::NoiseSource;
use score_nets::{NetsError, param_shapes, record};

use crate::adam::FusedAdam;
use crate::checkpoint::Checkpoint;
use crate::ema::{Ema, EmaConfig};
use crate::error::TrainError;
use crate::loss::Loss;

/// Settings of [`Trainer`].
#[derive(Config, Debug)]
pub struct TrainerConfig {
    /// Total number of optimisation steps.
    #[config(default = 1000)]
    pub steps: u64,
    /// Peak learning rate of Adam.
    #[config(default = 2e-4)]
    pub learning_rate: f64,
    /// Steps of linear learning-rate warm-up (`lr · min(1, (step + 1)/warmup)`); 0 for none.
    #[config(default = 0)]
    pub warmup_steps: u64,
    /// Largest global gradient norm; larger gradients are rescaled to it (score_sde: 1.0).
    #[config(default = "Some(1.0)")]
    pub grad_clip_norm: Option<f64>,
    /// Adam's moments and ε. Its own gradient-clipping setting is overridden (cleared): clipping
    /// here is global, by [`grad_clip_norm`](Self::grad_clip_norm), applied once.
    #[config(default = "AdamConfig::new()")]
    pub adam: AdamConfig,
    /// EMA of the weights.
    #[config(default = "EmaConfig::new()")]
    pub ema: EmaConfig,
    /// Seed of the noise source the loss draws from.
    #[config(default = 0)]
    pub seed: u64,
    /// Where checkpoints go (one file, replaced atomically).
    #[config(default = "None")]
    pub checkpoint_path: Option<PathBuf>,
    /// Write a checkpoint every this many steps (and at the end), if a path is set.
    #[config(default = "None")]
    pub checkpoint_every: Option<u64>,
    /// Call the evaluation hook every this many steps (and at the end).
    #[config(default = "None")]
    pub eval_every: Option<u64>,
    /// Where to write the loss history as CSV (at every checkpoint and at the end).
    #[config(default = "None")]
    pub history_csv: Option<PathBuf>,
    /// Show a progress bar (steps/s, loss, ETA) on the terminal.
    #[config(default = false)]
    pub progress: bool,
}

impl TrainerConfig {
    /// Checks every setting.
    pub fn validate(&self) -> crate::Result<()> {
        crate::error::ensure_positive("learning_rate", self.learning_rate)?;
        if let Some(c) = self.grad_clip_norm {
            crate::error::ensure_positive("grad_clip_norm", c)?;
        }
        for (name, v) in [
            ("checkpoint_every", self.checkpoint_every),
            ("eval_every", self.eval_every),
        ] {
            if v == Some(0) {
                return Err(TrainError::invalid(name, 0, "must be at least 1"));
            }
        }
        self.ema.validate()
    }

    /// The learning rate at `step` (0-based) after warm-up.
    pub fn learning_rate_at(&self, step: u64) -> f64 {
        if self.warmup_steps == 0 {
            self.learning_rate
        } else {
            self.learning_rate * ((step + 1) as f64 / self.warmup_steps as f64).min(1.0)
        }
    }
}

/// One row of the loss history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistoryRow {
    /// The step (0-based) whose loss this is.
    pub step: u64,
    /// The loss before the update.
    pub loss: f64,
    /// Learning rate of the update.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// What the evaluation hook returned after this step, if it ran.
    pub eval: Option<f64>,
}

/// Called every `eval_every` steps with the step count, the model and its EMA (inner backend).
/// Closures `FnMut(u64, &M, &M) -> Option<f64>` implement it; the value goes to the history.
pub trait EvalHook<M> {
    /// Evaluates after `step` steps; the returned value is recorded.
    fn eval(&mut self, step: u64, model: &M, ema: &M) -> Option<f64>;
}

impl<M, F: FnMut(u64, &M, &M) -> Option<f64>> EvalHook<M> for F {
    fn eval(&mut self, step: u64, model: &M, ema: &M) -> Option<f64> {
        self(step, model, ema)
    }
}

/// What a call to [`Trainer::fit`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    /// Steps completed in total (including those before a resume).
    pub step: u64,
    /// Steps run by this call.
    pub steps_run: u64,
    /// Loss of the last step run, if any.
    pub last_loss: Option<f64>,
    /// Training steps per second in this call.
    pub steps_per_sec: f64,
}

/// The optimiser's record.
type OptimRecord<B, M> = <OptimizerAdaptor<FusedAdam, M, B> as Optimizer<M, B>>::Record;

/// A training run: model, optimiser, EMA, step and history. See the module docs.
///
/// ```
/// use burn::backend::{Autodiff, NdArray};
/// use burn::module::{Module, Param};
/// use burn::tensor::{Tensor, backend::Backend};
/// use score_core::{NoiseKey, NoiseSource, ScoreFn};
/// use score_train::{DenoisingScoreMatching, Trainer, TrainerConfig};
/// type B = Autodiff<NdArray<f32>>;
///
/// /// The score of N(0, c²I) with c learned: s(x) = −x·θ.
/// #[derive(Module, Debug)]
/// struct Precision<B: Backend> { theta: Param<Tensor<B, 1>> }
/// impl<B: Backend> ScoreFn<B, 2> for Precision<B> {
///     fn score(&self, x: Tensor<B, 2>, _t: Tensor<B, 1>) -> Tensor<B, 2> {
///         -x * self.theta.val().unsqueeze_dim(0)
///     }
/// }
/// let dev = Default::default();
/// let model = Precision::<B> { theta: Param::from_tensor(Tensor::ones([1], &dev)) };
/// // Adam's steps are about the learning rate in size, so 0.01 reaches θ* in ~100 steps and then
/// // wanders by well under the tolerance below.
/// let config = TrainerConfig::new().with_steps(400).with_learning_rate(0.01);
/// let mut trainer = Trainer::new(model, config).unwrap();
/// let data = |step: u64| NoiseSource::new(9).normal::<B, 2>([256, 2], NoiseKey::new(step, 0), &dev).mul_scalar(2.0);
/// let report = trainer.fit(&DenoisingScoreMatching::new(1.0).unwrap(), data, &mut ()).unwrap();
/// assert_eq!(report.step, 400);
/// // Data N(0, 4I) plus noise σ = 1: the optimal θ is 1/(4 + 1) = 0.2.
/// let theta = trainer.model().theta.val().into_scalar();
/// assert!((theta - 0.2).abs() < 0.03, "{theta}");
/// ```
pub struct Trainer<B: AutodiffBackend, M: AutodiffModule<B>> {
    config: TrainerConfig,
    model: M,
    optim: OptimizerAdaptor<FusedAdam, M, B>,
    ema: Ema<M::InnerModule>,
    step: u64,
    noise: NoiseSource,
    history: Vec<HistoryRow>,
    #[cfg(feature = "distributed")]
    parallel: Option<crate::distributed::DataParallel>,
}

/// The do-nothing evaluation hook.
impl<M> EvalHook<M> for () {
    fn eval(&mut self, _step: u64, _model: &M, _ema: &M) -> Option<f64> {
        None
    }
}

impl<B, M> Trainer<B, M>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + Clone,
{
    /// Starts a run at step 0. All of `model`'s parameters are initialised here (burn's lazy
    /// parameters would otherwise initialise separately in the EMA copy).
    pub fn new(model: M, config: TrainerConfig) -> crate::Result<Self> {
        config.validate()?;
        // `valid()` reads every parameter, which initialises the lazy ones in place.
        let ema = config.ema.init(model.valid())?;
        Ok(Self {
            optim: adam(&config),
            noise: NoiseSource::new(config.seed),
            config,
            model,
            ema,
            step: 0,
            history: Vec::new(),
            #[cfg(feature = "distributed")]
            parallel: None,
        })
    }

    /// Continues the run saved at `config.checkpoint_path` if that file exists, else starts anew.
    /// `model` must have the architecture of the saved one (its values are replaced).
    pub fn resume_or_new(model: M, config: TrainerConfig) -> crate::Result<Self> {
        let path = config.checkpoint_path.clone();
        let mut trainer = Self::new(model, config)?;
        if let Some(path) = path.filter(|p| p.exists()) {
            trainer.load_checkpoint(&path)?;
        }
        Ok(trainer)
    }

    /// The model being trained.
    pub fn model(&self) -> &M {
        &self.model
    }
    /// The EMA of the model's weights (inner backend: what samplers use).
    pub fn ema(&self) -> &M::InnerModule {
        self.ema.module()
    }
    /// Steps completed.
    pub fn step(&self) -> u64 {
        self.step
    }
    /// The settings.
    pub fn config(&self) -> &TrainerConfig {
        &self.config
    }
    /// The loss history so far (including steps before a resume).
    pub fn history(&self) -> &[HistoryRow] {
        &self.history
    }
    /// The noise source of the loss.
    pub fn noise(&self) -> NoiseSource {
        self.noise
    }

    /// Whether this trainer writes checkpoints, the history and runs the evaluation hook: always,
    /// but in a data-parallel run only worker 0.
    fn leads(&self) -> bool {
        #[cfg(feature = "distributed")]
        if let Some(dp) = &self.parallel {
            return dp.rank() == 0;
        }
        true
    }

    /// This worker's rows of the batch `x0` and the noise source seen from its first row (the
    /// whole batch and the trainer's source outside a data-parallel run).
    fn shard<const D: usize>(
        &self,
        x0: Tensor<B, D>,
    ) -> crate::Result<(Tensor<B, D>, NoiseSource)> {
        #[cfg(feature = "distributed")]
        if let Some(dp) = &self.parallel {
            let rows = dp.shard(x0.dims()[0])?;
            let noise = self.noise.with_sample_offset(rows.start as u64);
            return Ok((x0.narrow(0, rows.start, rows.len()), noise));
        }
        Ok((x0, self.noise))
    }

    /// Joins a data-parallel run as worker `dp.rank()` of `dp.world()` (module
    /// [`distributed`](crate::distributed)): registers with burn-collective, waiting for all
    /// workers, then takes worker 0's whole state (model, EMA, Adam moments, step, history, as
    /// it is: fresh or resumed), so all workers start identical. Settings that differ from
    /// worker 0's are a [`TrainError::Collective`] on every worker.
    ///
    /// From then on [`fit`](Self::fit) and [`train_step`](Self::train_step) take the whole
    /// batch of a step and train on this worker's shard of it; only worker 0 writes checkpoints
    /// and the history and calls the evaluation hook.
    #[cfg(feature = "distributed")]
    pub fn join(&mut self, dp: crate::distributed::DataParallel) -> crate::Result<()> {
        let device = self.model.devices().into_iter().next().unwrap_or_default();
        dp.register::<B::InnerBackend>(&device)?;
        let joined = self.take_worker0_state(&dp, &device);
        if let Err(TrainError::Collective {
            failure: crate::distributed::CollectiveFailure::Mismatch(_),
            ..
        }) = &joined
        {
            // Every worker reached the same verdict and is alive: leave together, so that the
            // process can join again. (After a time-out a peer may be gone: leaving could hang.)
            let _ = dp.finish::<B::InnerBackend>();
        }
        joined?;
        self.parallel = Some(dp);
        Ok(())
    }

    /// The part of [`join`](Self::join) after registering.
    #[cfg(feature = "distributed")]
    fn take_worker0_state(
        &mut self,
        dp: &crate::distributed::DataParallel,
        device: &B::Device,
    ) -> crate::Result<()> {
        let name = Path::new("worker 0's training state");
        let mine = if dp.rank() == 0 {
            Some(self.to_checkpoint(name)?.to_bytes())
        } else {
            None
        };
        let bytes = dp.share_bytes::<B::InnerBackend>(mine, self.settings_digest(), device)?;
        let restored = if dp.rank() != 0 {
            Checkpoint::from_bytes(&bytes, name).and_then(|c| self.restore(c, name))
        } else {
            Ok(())
        };
        // All workers learn whether every one of them took the state (a model of another
        // architecture on one worker must not leave the others waiting for its gradients).
        let agreed = dp.agree::<B::InnerBackend>(
            "taking worker 0's state",
            restored.is_ok(),
            "worker(s) {} could not load worker 0's state (another model?)",
            device,
        );
        restored?;
        agreed
    }

    /// Leaves the data-parallel run (closes the connection to the orchestrator); the trainer
    /// goes on as a single worker. Every worker calls it after its last step.
    #[cfg(feature = "distributed")]
    pub fn leave(&mut self) -> crate::Result<()> {
        match self.parallel.take() {
            Some(dp) => dp.finish::<B::InnerBackend>(),
            None => Ok(()),
        }
    }

    /// The data-parallel run this trainer is part of, if any.
    #[cfg(feature = "distributed")]
    pub fn data_parallel(&self) -> Option<&crate::distributed::DataParallel> {
        self.parallel.as_ref()
    }

    /// A digest of the settings every data-parallel worker must share.
    #[cfg(feature = "distributed")]
    fn settings_digest(&self) -> u64 {
        let c = &self.config;
        let text = format!(
            "{} {:e} {} {:?} {:?} {:?} {}",
            c.steps, c.learning_rate, c.warmup_steps, c.grad_clip_norm, c.adam, c.ema, c.seed
        );
        score_nets::record::fnv1a(text.as_bytes())
    }

    /// Trains from the current step up to `config.steps`. `data(step)` gives the batch of a step
    /// (a pure function of the step keeps runs reproducible).
    ///
    /// The loss first checks it can train this model ([`Loss::validate`]: times where the model
    /// is undefined, an SDE other than the model's); then a NaN or infinite loss stops training with [`TrainError::NonFinite`], a finite loss whose
    /// gradient norm is not finite with [`TrainError::NonFiniteGradient`], before that step's
    /// update; the last checkpoint written is left as it was.
    pub fn fit<L, F, H, const D: usize>(
        &mut self,
        loss: &L,
        mut data: F,
        eval: &mut H,
    ) -> crate::Result<TrainReport>
    where
        L: Loss<B, M, D>,
        F: FnMut(u64) -> Tensor<B, D>,
        H: EvalHook<M::InnerModule>,
    {
        loss.validate(&self.model)?;
        let start = (self.step, Instant::now());
        let bar = if self.leads() {
            self.progress_bar()
        } else {
            ProgressBar::hidden()
        };
        let mut last_loss = None;
        while self.step < self.config.steps {
            let row = self.train_step(loss, data(self.step))?;
            last_loss = Some(row.loss);
            self.history.push(row);
            bar.set_position(self.step);
            if self.step.is_multiple_of(10) || self.step == self.config.steps {
                bar.set_message(format!("{:.4}", row.loss));
            }
            let done = self.step == self.config.steps;
            if !self.leads() {
                continue;
            }
            if self
                .config
                .eval_every
                .is_some_and(|k| self.step.is_multiple_of(k))
                || done
            {
                let value = eval.eval(self.step, &self.model.valid(), self.ema.module());
                if let Some(last) = self.history.last_mut() {
                    last.eval = value;
                }
            }
            let every = self.config.checkpoint_every;
            if let Some(path) = self.config.checkpoint_path.clone()
                && (every.is_some_and(|k| self.step.is_multiple_of(k)) || done)
            {
                self.save_checkpoint(&path)?;
            }
        }
        bar.finish_and_clear();
        if let Some(path) = self.config.history_csv.as_ref().filter(|_| self.leads()) {
            self.write_history_csv(path)?;
        }
        let steps_run = self.step - start.0;
        Ok(TrainReport {
            step: self.step,
            steps_run,
            last_loss,
            steps_per_sec: steps_run as f64 / start.1.elapsed().as_secs_f64().max(1e-9),
        })
    }

    /// One optimisation step on batch `x0`: loss, backward, clipping, Adam, EMA. In a
    /// data-parallel run (`join`, feature `distributed`) `x0` is the whole batch of the step: this worker
    /// trains on its rows of it, and the gradients are averaged across workers before clipping.
    pub fn train_step<L, const D: usize>(
        &mut self,
        loss: &L,
        x0: Tensor<B, D>,
    ) -> crate::Result<HistoryRow>
    where
        L: Loss<B, M, D>,
    {
        let step = self.step;
        let (x0, noise) = self.shard(x0)?;
        let value = loss.loss(&self.model, x0, &noise, step);
        #[cfg(feature = "distributed")]
        if let Some(dp) = &self.parallel {
            // The shard's loss travels with the gradients: one all-reduce per step, and every
            // worker sees the batch's loss (a NaN on one worker stops them all at this step).
            let shard_loss = value.clone().inner().reshape([1]);
            let mut grads = GradientsParams::from_grads(value.backward(), &self.model);
            let loss_value = crate::distributed::all_reduce_grads::<B, M>(
                dp,
                &self.model,
                &mut grads,
                shard_loss,
            )?;
            return self.apply(step, loss_value, grads);
        }
        let loss_value = value.clone().into_scalar().to_f64();
        if !loss_value.is_finite() {
            return Err(TrainError::NonFinite {
                step,
                loss: loss_value,
            });
        }
        let grads = GradientsParams::from_grads(value.backward(), &self.model);
        self.apply(step, loss_value, grads)
    }

    /// Clipping, Adam and EMA for the gradients of `step`, whose loss was `loss_value`.
    fn apply(
        &mut self,
        step: u64,
        loss_value: f64,
        mut grads: GradientsParams,
    ) -> crate::Result<HistoryRow> {
        if !loss_value.is_finite() {
            return Err(TrainError::NonFinite {
                step,
                loss: loss_value,
            });
        }
        let grad_norm = global_grad_norm::<B, M>(&self.model, &grads);
        if !grad_norm.is_finite() {
            return Err(TrainError::NonFiniteGradient {
                step,
                loss: loss_value,
                grad_norm,
            });
        }
        if let Some(max) = self.config.grad_clip_norm
            && grad_norm > max
        {
            scale_grads::<B, M>(&self.model, &mut grads, max / grad_norm);
        }
        let lr = self.config.learning_rate_at(step);
        self.model = self.optim.step(lr, self.model.clone(), grads);
        self.ema.update(&self.model.valid(), step);
        self.step += 1;
        Ok(HistoryRow {
            step,
            loss: loss_value,
            lr,
            grad_norm,
            eval: None,
        })
    }

    fn progress_bar(&self) -> ProgressBar {
        if !self.config.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(self.config.steps);
        let style = ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} {per_sec} loss {msg} ETA {eta}",
        )
        .expect("a valid template");
        bar.set_style(style.progress_chars("=> "));
        bar.set_position(self.step);
        bar
    }

    /// Writes the current state to `path` atomically.
    pub fn save_checkpoint(&self, path: impl AsRef<Path>) -> crate::Result<()> {
        let path = path.as_ref();
        self.to_checkpoint(path)?.write_atomic(path)?;
        if let Some(csv) = &self.config.history_csv {
            self.write_history_csv(csv)?;
        }
        Ok(())
    }

    /// The current state as a checkpoint; `path` only names it in errors.
    fn to_checkpoint(&self, path: &Path) -> crate::Result<Checkpoint> {
        let corrupt = |e: NetsError| TrainError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("encoding failed: {e}"),
        };
        let checkpoint = Checkpoint {
            step: self.step,
            seed: self.noise.seed(),
            model: record::encode_module::<B, M>(&self.model, path).map_err(corrupt)?,
            ema: record::encode_module::<B::InnerBackend, M::InnerModule>(self.ema.module(), path)
                .map_err(corrupt)?,
            optimizer: record::encode_record::<B, OptimRecord<B, M>>(self.optim.to_record(), path)
                .map_err(corrupt)?,
            history: encode_history(&self.history),
        };
        Ok(checkpoint)
    }

    /// Replaces the state by the checkpoint at `path` after validating it; on any error the
    /// trainer is left unchanged.
    ///
    /// Every record is checked against this trainer's model before burn loads it (structure and
    /// shapes of the model and EMA records; the optimiser state's tensor shapes against the
    /// parameters'), so a file written for another architecture is a [`TrainError::Corrupt`],
    /// never a panic.
    pub fn load_checkpoint(&mut self, path: impl AsRef<Path>) -> crate::Result<()> {
        let path = path.as_ref();
        self.restore(Checkpoint::read(path)?, path)
    }

    /// Replaces the state by checkpoint `c` (see [`load_checkpoint`](Self::load_checkpoint));
    /// `path` names it in errors.
    fn restore(&mut self, c: Checkpoint, path: &Path) -> crate::Result<()> {
        let device = self.model.devices().into_iter().next().unwrap_or_default();
        let corrupt = |reason: String| TrainError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let history = decode_history(&c.history)
            .ok_or_else(|| corrupt("history section has a partial row".into()))?;
        let in_section = |what: &'static str| {
            move |e: NetsError| TrainError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("{what} record: {e}"),
            }
        };
        let model = record::load_module_record(self.model.clone(), &c.model, &device, path)
            .map_err(in_section("model"))?;
        let ema = record::load_module_record(self.ema.module().clone(), &c.ema, &device, path)
            .map_err(in_section("EMA"))?;
        // Adam's state is keyed by parameter ids, so its structure cannot be compared key by
        // key: the set of its moments' shapes must be the set of the parameters' shapes, which
        // rules out another architecture's state.
        let mut params: Vec<Vec<usize>> = param_shapes::<B, M>(&model)
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        let mut moments = record::record_shapes(&c.optimizer)
            .map_err(|e| corrupt(format!("optimizer record: {e}")))?;
        params.sort();
        moments.sort();
        // No moments at all is the state before the first step (a fresh run handed to
        // data-parallel workers).
        let fits = moments.is_empty()
            || moments.iter().all(|m| params.binary_search(m).is_ok())
                && params.iter().all(|p| moments.binary_search(p).is_ok());
        if !fits {
            return Err(corrupt(
                "optimizer record: its moments do not have this model's parameter shapes".into(),
            ));
        }
        let optim_record: OptimRecord<B, M> =
            record::decode_record::<B, OptimRecord<B, M>>(&c.optimizer, &device, path)
                .map_err(in_section("optimizer"))?;
        self.model = model;
        self.ema.set_module(ema);
        self.optim = adam::<B, M>(&self.config).load_record(optim_record);
        self.step = c.step;
        self.noise = NoiseSource::new(c.seed);
        self.history = history;
        Ok(())
    }

    /// Writes the loss history as CSV: `step,loss,lr,grad_norm,eval`.
    pub fn write_history_csv(&self, path: impl AsRef<Path>) -> crate::Result<()> {
        let path = path.as_ref();
        let mut out = String::from("step,loss,lr,grad_norm,eval\n");
        for r in &self.history {
            let eval = r.eval.map(|e| e.to_string()).unwrap_or_default();
            out.push_str(&format!(
                "{},{},{},{},{}\n",
                r.step, r.loss, r.lr, r.grad_norm, eval
            ));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        }
        std::fs::write(path, out).map_err(|e| TrainError::io(path, e))
    }
}

/// Decodes one record. The bytes passed the checkpoint's checksum, so they are what was written;
/// burn's decoder still panics if they were written for another architecture, which is caught
/// and reported as [`TrainError::Corrupt`].
fn encode_history(rows: &[HistoryRow]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 40);
    for r in rows {
        out.extend_from_slice(&r.step.to_le_bytes());
        for v in [r.loss, r.lr, r.grad_norm, r.eval.unwrap_or(f64::NAN)] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

fn decode_history(bytes: &[u8]) -> Option<Vec<HistoryRow>> {
    if !bytes.len().is_multiple_of(40) {
        return None;
    }
    let f = |c: &[u8], i: usize| f64::from_le_bytes(c[i..i + 8].try_into().expect("8 bytes"));
    Some(
        bytes
            .chunks(40)
            .map(|c| HistoryRow {
                step: u64::from_le_bytes(c[..8].try_into().expect("8 bytes")),
                loss: f(c, 8),
                lr: f(c, 16),
                grad_norm: f(c, 24),
                eval: Some(f(c, 32)).filter(|e| !e.is_nan()),
            })
            .collect(),
    )
}

/// `‖g‖₂` over all parameters' gradients together (one value read back).
pub fn global_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: &GradientsParams,
) -> f64 {
    struct Norm<'a, B: AutodiffBackend> {
        grads: &'a GradientsParams,
        sum: Option<Tensor<B::InnerBackend, 1>>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Norm<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
                let sq = g.square().sum();
                self.sum = Some(match self.sum.take() {
                    Some(s) => s + sq,
                    None => sq,
                });
            }
        }
    }
    let mut v = Norm::<B> { grads, sum: None };
    model.visit(&mut v);
    v.sum
        .map(|s| s.into_scalar().to_f64().sqrt())
        .unwrap_or(0.0)
}

/// Adam as configured, with its per-parameter clipping cleared: the trainer clips the global norm.
fn adam<B: AutodiffBackend, M: AutodiffModule<B>>(
    config: &TrainerConfig,
) -> OptimizerAdaptor<FusedAdam, M, B> {
    FusedAdam::init(&config.adam.clone().with_grad_clipping(None))
}

/// Multiplies every gradient by `factor` (global-norm clipping).
fn scale_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: &mut GradientsParams,
    factor: f64,
) {
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
                self.grads.register(param.id, g.mul_scalar(self.factor));
            }
        }
    }
    model.visit(&mut Scale { grads, factor });
}
