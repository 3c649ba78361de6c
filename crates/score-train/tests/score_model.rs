//! Second-order losses read a score-nets `ScoreModel` directly: lifting the wrapper one autodiff
//! level works, and the loss equals the one read off the raw network when the network outputs
//! the score itself (`Parameterization::Score`, no scaling), for values and parameter gradients.

use burn::backend::{Autodiff, NdArray};
use burn::module::Module;
use burn::tensor::Tensor;
use score_core::{AnySde, NoiseSource, VpSde, tensor::to_f64};
use score_nets::{Parameterization, ScoreModel, TimeEmbeddingConfig, TimeMlpConfig};
use score_train::{AsOutput, ExplicitScoreMatching, Loss, SlicedScoreMatching};

type B = Autodiff<NdArray<f32>>;

#[test]
fn second_order_losses_read_a_score_model() {
    let dev = Default::default();
    let net = TimeMlpConfig::new(2)
        .with_seed(5)
        .with_hidden_size(16)
        .with_num_layers(2)
        .with_embedding(TimeEmbeddingConfig::new().with_dim(8))
        .init::<B>(&dev)
        .unwrap();
    let model = ScoreModel::new(
        net.clone(),
        AnySde::Vp(VpSde::default()),
        Parameterization::Score,
    );
    let x0 = NoiseSource::new(1).normal::<B, 2>([8, 2], score_core::NoiseKey::new(0, 0), &dev);
    let noise = NoiseSource::new(2);

    let esm = ExplicitScoreMatching::new().with_time(0.3);
    let via_model = esm.loss(&model, x0.clone(), &noise, 0);
    let via_net = esm.with_view(AsOutput).loss(&net, x0.clone(), &noise, 0);
    let (a, b) = (
        to_f64(via_model.clone().inner()),
        to_f64(via_net.clone().inner()),
    );
    // Same network, same inputs, same graph: equal up to f32 rounding of identical operations.
    assert!(
        (a[0] - b[0]).abs() <= 1e-6 * a[0].abs().max(1.0),
        "ESM {} vs {}",
        a[0],
        b[0]
    );

    // The gradient reaches the wrapped network's parameters, identically.
    let ga = via_model.backward();
    let gb = via_net.backward();
    let (mut grads_a, mut grads_b) = (Vec::new(), Vec::new());
    model.net.visit(&mut Collect {
        grads: &ga,
        out: &mut grads_a,
    });
    net.visit(&mut Collect {
        grads: &gb,
        out: &mut grads_b,
    });
    assert!(!grads_a.is_empty());
    assert_eq!(grads_a.len(), grads_b.len());
    for (u, v) in grads_a.iter().zip(&grads_b) {
        for (p, q) in u.iter().zip(v) {
            assert!(
                (p - q).abs() <= 1e-5 * p.abs().max(1e-3),
                "gradient {p} vs {q}"
            );
        }
    }

    // Sliced score matching through the wrapper is finite and matches the raw network too.
    let ssm = SlicedScoreMatching::new(2).unwrap().with_time(0.3);
    let s_model = to_f64(ssm.loss(&model, x0.clone(), &noise, 0).inner());
    let s_net = to_f64(ssm.with_view(AsOutput).loss(&net, x0, &noise, 0).inner());
    assert!((s_model[0] - s_net[0]).abs() <= 1e-6 * s_model[0].abs().max(1.0));
}

struct Collect<'a> {
    grads: &'a <B as burn::tensor::backend::AutodiffBackend>::Gradients,
    out: &'a mut Vec<Vec<f64>>,
}

impl burn::module::ModuleVisitor<B> for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
        if let Some(g) = param.val().grad(self.grads) {
            self.out.push(to_f64(g));
        }
    }
}

#[test]
fn a_loss_refuses_a_model_it_cannot_train() {
    use score_core::{CoreError, VeSde};
    use score_train::{SdeLoss, TrainError, Trainer, TrainerConfig};
    let dev = Default::default();
    let net = || {
        TimeMlpConfig::new(2)
            .with_hidden_size(8)
            .with_num_layers(1)
            .with_embedding(TimeEmbeddingConfig::new().with_dim(4))
            .init::<B>(&dev)
            .unwrap()
    };
    let data = |step: u64| {
        NoiseSource::new(3).normal::<B, 2>([16, 2], score_core::NoiseKey::new(step, 0), &dev)
    };
    let config = || TrainerConfig::new().with_steps(2);

    // ESM's default time is 0, where a noise-parameterised VP model divides by σ(0) = 0.
    let vp_noise = ScoreModel::new(net(), AnySde::Vp(VpSde::default()), Parameterization::Noise);
    let mut trainer = Trainer::new(vp_noise.clone(), config()).unwrap();
    match trainer.fit(&ExplicitScoreMatching::new(), data, &mut ()) {
        Err(TrainError::Core(CoreError::UndefinedAt { t, .. })) => assert_eq!(t, 0.0),
        other => panic!("expected UndefinedAt, got {other:?}"),
    }
    assert_eq!(trainer.step(), 0);
    // At t = 0.3 the same model trains; a score-parameterised one trains at t = 0 too.
    let mut trainer = Trainer::new(vp_noise, config()).unwrap();
    trainer
        .fit(&ExplicitScoreMatching::new().with_time(0.3), data, &mut ())
        .unwrap();
    let vp_score = ScoreModel::new(net(), AnySde::Vp(VpSde::default()), Parameterization::Score);
    let mut trainer = Trainer::new(vp_score, config()).unwrap();
    trainer
        .fit(&ExplicitScoreMatching::new(), data, &mut ())
        .unwrap();

    // An SDE loss for another SDE than the model's is an error naming both.
    let ve = |sigma_max| VeSde::new(0.01, sigma_max).unwrap();
    let model = ScoreModel::new(net(), AnySde::Ve(ve(50.0)), Parameterization::Noise);
    let mut trainer = Trainer::new(model.clone(), config()).unwrap();
    let err = trainer
        .fit(&SdeLoss::new(ve(10.0)).unwrap(), data, &mut ())
        .unwrap_err();
    assert!(
        matches!(&err, TrainError::Core(CoreError::SdeMismatch { expected, found, .. })
            if expected.contains("10.0") && found.contains("50.0")),
        "{err}"
    );
    let mut trainer = Trainer::new(model, config()).unwrap();
    trainer
        .fit(&SdeLoss::new(ve(50.0)).unwrap(), data, &mut ())
        .unwrap();
}
