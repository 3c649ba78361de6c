//! The training loop: resume after an interruption ends with the parameters of an uninterrupted
//! run, a non-finite loss stops with the step and keeps the last good checkpoint, and corrupt or
//! truncated checkpoints are errors that leave the trainer as it was.

use burn::backend::{Autodiff, NdArray};
use burn::tensor::Tensor;
use score_core::{AnySde, GaussianMixture, NoiseKey, NoiseSource, VeSde};
use score_nets::{
    Parameterization, ScoreModel, TimeEmbeddingConfig, TimeMlp, TimeMlpConfig, param_values,
};
use score_train::{Checkpoint, EmaConfig, SdeLoss, TrainError, Trainer, TrainerConfig};

type B = Autodiff<NdArray<f32>>;
type Model = ScoreModel<B, TimeMlp<B>>;

fn model(seed: u64) -> Model {
    // The seed is part of the config: no global RNG that a parallel test could reseed.
    let net = TimeMlpConfig::new(2)
        .with_seed(seed)
        .with_hidden_size(16)
        .with_num_layers(2)
        .with_embedding(TimeEmbeddingConfig::new().with_dim(8))
        .init::<B>(&Default::default())
        .unwrap();
    let sde = VeSde::new(0.05, 5.0).unwrap();
    ScoreModel::new(net, AnySde::Ve(sde), Parameterization::Noise)
}

fn loss() -> SdeLoss<VeSde> {
    SdeLoss::new(VeSde::new(0.05, 5.0).unwrap()).unwrap()
}

fn data(step: u64) -> Tensor<B, 2> {
    GaussianMixture::ring(8, 4.0, 0.2).unwrap().sample::<B>(
        64,
        &NoiseSource::new(100),
        NoiseKey::new(step, 0),
        &Default::default(),
    )
}

fn config(dir: &std::path::Path) -> TrainerConfig {
    TrainerConfig::new()
        .with_steps(30)
        .with_learning_rate(1e-2)
        .with_warmup_steps(5)
        .with_ema(EmaConfig::new().with_decay(0.9))
        .with_seed(7)
        .with_checkpoint_path(Some(dir.join("run.ckpt")))
        .with_checkpoint_every(Some(10))
        .with_history_csv(Some(dir.join("history.csv")))
}

/// A fresh directory of its own (removed when dropped): no two tests or runs share a path.
fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn interrupted_and_resumed_run_ends_with_identical_parameters() {
    let tmp = temp_dir();
    let dir = tmp.path();
    // Uninterrupted: 30 steps without checkpoints.
    let mut full = Trainer::new(
        model(1),
        config(dir)
            .with_checkpoint_path(None)
            .with_history_csv(None),
    )
    .unwrap();
    full.fit(&loss(), data, &mut ()).unwrap();

    // Interrupted: a NaN batch at step 17 stops the run; the checkpoint on disk is step 10's.
    let mut first = Trainer::new(model(1), config(dir)).unwrap();
    let poisoned = |step: u64| {
        if step == 17 {
            data(step).mul_scalar(f32::NAN)
        } else {
            data(step)
        }
    };
    match first.fit(&loss(), poisoned, &mut ()) {
        Err(TrainError::NonFinite { step, loss }) => {
            assert_eq!(step, 17);
            assert!(loss.is_nan());
        }
        other => panic!("expected NonFinite at step 17, got {other:?}"),
    }
    assert_eq!(Checkpoint::read(dir.join("run.ckpt")).unwrap().step, 10);
    drop(first);

    // Resumed from a model built with another seed: every value comes from the checkpoint.
    let mut resumed = Trainer::resume_or_new(model(2), config(dir)).unwrap();
    assert_eq!(resumed.step(), 10);
    let report = resumed.fit(&loss(), data, &mut ()).unwrap();
    assert_eq!((report.step, report.steps_run), (30, 20));

    assert_eq!(
        param_values(resumed.model()),
        param_values(full.model()),
        "model parameters differ"
    );
    assert_eq!(
        param_values(resumed.ema()),
        param_values(full.ema()),
        "EMA parameters differ"
    );
    let losses = |t: &Trainer<B, Model>| {
        t.history()
            .iter()
            .map(|r| r.loss.to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(losses(&resumed), losses(&full), "loss histories differ");

    // The CSV holds a header and one row per step, including the steps before the resume.
    let csv = std::fs::read_to_string(dir.join("history.csv")).unwrap();
    assert_eq!(csv.lines().next(), Some("step,loss,lr,grad_norm,eval"));
    assert_eq!(csv.lines().count(), 31);
}

#[test]
fn corrupt_or_truncated_checkpoints_are_errors_and_change_nothing() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let cfg = config(dir).with_steps(3).with_checkpoint_every(None);
    let mut trainer = Trainer::new(model(3), cfg.clone()).unwrap();
    trainer.fit(&loss(), data, &mut ()).unwrap();
    let path = dir.join("run.ckpt");
    let good = std::fs::read(&path).unwrap();

    let fresh = Trainer::new(model(4), cfg.clone()).unwrap();
    let before = param_values(fresh.model());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() / 2].to_vec()),
        ("one byte short", good[..good.len() - 1].to_vec()),
        ("empty", Vec::new()),
        ("flipped byte", {
            let mut b = good.clone();
            let mid = b.len() / 2;
            b[mid] ^= 0x01;
            b
        }),
        (
            "not a checkpoint",
            b"hello, world, this is not a checkpoint file at all........".to_vec(),
        ),
    ];
    for (what, bytes) in cases {
        std::fs::write(&path, &bytes).unwrap();
        let mut t = Trainer::new(model(4), cfg.clone()).unwrap();
        let err = t.load_checkpoint(&path).unwrap_err();
        assert!(matches!(err, TrainError::Corrupt { .. }), "{what}: {err:?}");
        assert_eq!(t.step(), 0, "{what}");
        assert_eq!(
            param_values(t.model()),
            before,
            "{what}: parameters changed"
        );
        // resume_or_new refuses too, instead of starting from garbage.
        assert!(
            Trainer::resume_or_new(model(4), cfg.clone()).is_err(),
            "{what}"
        );
        println!("{what}: {err}");
    }

    // A valid file written for another architecture is caught when its records are decoded.
    std::fs::write(&path, &good).unwrap();
    let other = TimeMlpConfig::new(2)
        .with_seed(5)
        .with_hidden_size(8)
        .with_num_layers(1)
        .with_embedding(TimeEmbeddingConfig::new().with_dim(4))
        .init::<B>(&Default::default())
        .unwrap();
    let other = ScoreModel::new(other, AnySde::Ve(VeSde::default()), Parameterization::Noise);
    let mut t = Trainer::new(other, cfg.clone()).unwrap();
    let err = t.load_checkpoint(&path).unwrap_err();
    assert!(matches!(err, TrainError::Corrupt { .. }), "{err:?}");

    // The intact file loads.
    let mut t = Trainer::new(model(4), cfg).unwrap();
    t.load_checkpoint(&path).unwrap();
    assert_eq!(t.step(), 3);
    assert_eq!(param_values(t.model()), param_values(trainer.model()));
    let missing = Checkpoint::read(dir.join("missing.ckpt")).unwrap_err();
    assert!(matches!(missing, TrainError::Io { .. }));
}

#[test]
fn invalid_settings_are_rejected() {
    let bad = [
        TrainerConfig::new().with_learning_rate(0.0),
        TrainerConfig::new().with_grad_clip_norm(Some(-1.0)),
        TrainerConfig::new().with_checkpoint_every(Some(0)),
        TrainerConfig::new().with_ema(EmaConfig::new().with_decay(1.0)),
    ];
    for cfg in bad {
        assert!(matches!(
            Trainer::new(model(0), cfg),
            Err(TrainError::InvalidConfig { .. })
        ));
    }
    let cfg = TrainerConfig::new()
        .with_learning_rate(1.0)
        .with_warmup_steps(4);
    assert_eq!(cfg.learning_rate_at(0), 0.25);
    assert_eq!(cfg.learning_rate_at(3), 1.0);
    assert_eq!(cfg.learning_rate_at(100), 1.0);
}

#[test]
fn eval_hook_runs_on_schedule_and_lands_in_the_history_csv() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let cfg = config(dir)
        .with_steps(10)
        .with_checkpoint_path(None)
        .with_eval_every(Some(4));
    let mut trainer = Trainer::new(model(6), cfg).unwrap();
    let mut calls = Vec::new();
    let mut hook =
        |step: u64, _model: &ScoreModel<NdArray<f32>, TimeMlp<NdArray<f32>>>, _ema: &_| {
            calls.push(step);
            Some(step as f64 * 0.5)
        };
    trainer.fit(&loss(), data, &mut hook).unwrap();
    // After steps 4 and 8, and at the end (10).
    assert_eq!(calls, vec![4, 8, 10]);
    let evals: Vec<_> = trainer.history().iter().filter_map(|r| r.eval).collect();
    assert_eq!(evals, vec![2.0, 4.0, 5.0]);
    let csv = std::fs::read_to_string(dir.join("history.csv")).unwrap();
    assert!(csv.lines().nth(4).unwrap().ends_with(",2"), "{csv}");
    assert!(
        trainer
            .history()
            .iter()
            .all(|r| r.grad_norm.is_finite() && r.lr > 0.0)
    );
}

/// A loss whose value is finite (zero) but whose gradient is NaN: `d/dw √(0·w) = ∞·0`.
struct NanGradient;

impl score_train::Loss<B, Model, 2> for NanGradient {
    fn per_sample(
        &self,
        model: &Model,
        x0: Tensor<B, 2>,
        _noise: &NoiseSource,
        _step: u64,
    ) -> Tensor<B, 1> {
        let n = x0.dims()[0];
        let t = Tensor::<B, 1>::full([n], 0.5, &x0.device());
        let out = model.output(x0, t);
        out.mul_scalar(0.0).sqrt().sum_dim(1).squeeze_dim(1)
    }
}

#[test]
fn a_nan_gradient_with_a_finite_loss_is_reported_as_a_gradient_error() {
    let cfg = TrainerConfig::new().with_steps(3);
    let mut t = Trainer::new(model(8), cfg).unwrap();
    let before = param_values(t.model());
    match t.fit(&NanGradient, data, &mut ()) {
        Err(TrainError::NonFiniteGradient {
            step,
            loss,
            grad_norm,
        }) => {
            assert_eq!(step, 0);
            assert_eq!(loss, 0.0);
            assert!(grad_norm.is_nan());
        }
        other => panic!("expected NonFiniteGradient, got {other:?}"),
    }
    assert_eq!(
        param_values(t.model()),
        before,
        "no update after a NaN gradient"
    );
}

#[test]
fn adams_own_clipping_is_cleared_so_gradients_are_clipped_once() {
    // Adam's per-parameter clipping at 1e-6 would shrink every step to almost nothing, a change
    // far above f32 rounding; the trainer clears it, so both runs are bit-identical.
    use burn::grad_clipping::GradientClippingConfig;
    let base = TrainerConfig::new().with_steps(5).with_learning_rate(1e-2);
    let clipped = base.clone().with_adam(
        burn::optim::AdamConfig::new().with_grad_clipping(Some(GradientClippingConfig::Norm(1e-6))),
    );
    let mut a = Trainer::new(model(9), base).unwrap();
    a.fit(&loss(), data, &mut ()).unwrap();
    let mut b = Trainer::new(model(9), clipped).unwrap();
    b.fit(&loss(), data, &mut ()).unwrap();
    assert_eq!(param_values(a.model()), param_values(b.model()));
    assert_ne!(param_values(a.model()), param_values(&model(9)));
}
