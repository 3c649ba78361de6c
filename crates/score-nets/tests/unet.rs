//! U-Net shapes on 28×28 (MNIST configuration) and 32×32, its blocks, its parameter count, its
//! validation, and its use through `ScoreModel` on an autodiff backend.

use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::tensor::Tensor;
use score_core::{NoiseKey, NoiseSource};
use score_nets::{
    AttentionBlockConfig, NetsError, ResBlockConfig, TimeEmbeddingConfig, UNet, UNetConfig,
};

/// Flex, not NdArray: burn-ndarray's kernels are generic over the element type, so they are
/// instantiated in this (unoptimised, debug) test crate and run a 3×3 convolution ~300× slower
/// than Flex, whose kernels are compiled, optimised, in burn-flex.
type B = Flex;

/// Parameter count of `UNetConfig::mnist()`, reported in the crate docs.
const MNIST_PARAMS: usize = 719_841;

#[test]
fn mnist_unet_shapes_and_parameter_count() {
    let dev = Default::default();
    let net: UNet<B> = UNetConfig::mnist().init(&dev).unwrap();
    let n = net.num_params();
    eprintln!("MNIST U-Net parameters: {n}");
    assert_eq!(n, MNIST_PARAMS);
    let x = Tensor::<B, 4>::ones([2, 1, 28, 28], &dev);
    let t = Tensor::<B, 1>::from_floats([0.1, 0.9], &dev);
    let out = net.forward(x, t);
    assert_eq!(out.dims(), [2, 1, 28, 28]);
    assert!(out.is_finite().all().into_scalar());
}

fn small_32() -> UNetConfig {
    UNetConfig::new()
        .with_in_channels(3)
        .with_base_channels(8)
        .with_channel_mults(vec![1, 2, 2, 2])
        .with_num_res_blocks(2)
        .with_upsample_conv(true)
        .with_attention_levels(vec![1])
        .with_groups(4)
        .with_embedding(
            TimeEmbeddingConfig::new()
                .with_dim(8)
                .with_out_dim(Some(16)),
        )
}

#[test]
fn unet_on_32x32_and_odd_sizes() {
    let dev = Default::default();
    let net: UNet<B> = small_32().init(&dev).unwrap();
    let t = Tensor::<B, 1>::from_floats([0.5, 0.2], &dev);
    for (h, w) in [(32, 32), (28, 28), (13, 9)] {
        let out = net.forward(Tensor::<B, 4>::ones([2, 3, h, w], &dev), t.clone());
        assert_eq!(out.dims(), [2, 3, h, w]);
    }
    let cifar = UNetConfig::cifar10();
    assert!(cifar.validate().is_ok());
}

#[test]
fn blocks_have_the_documented_shapes() {
    let dev = Default::default();
    let res = ResBlockConfig::new(8, 16, 12)
        .with_groups(4)
        .init::<B>(&dev)
        .unwrap();
    let out = res.forward(
        Tensor::ones([3, 8, 5, 7], &dev),
        Tensor::ones([3, 12], &dev),
    );
    assert_eq!(out.dims(), [3, 16, 5, 7]);
    let attn = AttentionBlockConfig::new(8)
        .with_groups(4)
        .init::<B>(&dev)
        .unwrap();
    assert_eq!(
        attn.forward(Tensor::ones([3, 8, 5, 7], &dev)).dims(),
        [3, 8, 5, 7]
    );
}

#[test]
fn invalid_unet_configs_are_rejected() {
    let dev = Default::default();
    let err = UNetConfig::new()
        .with_groups(5)
        .init::<B>(&dev)
        .unwrap_err();
    assert!(
        matches!(
            err,
            NetsError::GroupsDoNotDivide {
                channels: 32,
                groups: 5,
                ..
            }
        ),
        "{err}"
    );
    let err = UNetConfig::new()
        .with_attention_levels(vec![3])
        .init::<B>(&dev)
        .unwrap_err();
    assert!(
        matches!(
            err,
            NetsError::InvalidLevel {
                level: 3,
                levels: 3
            }
        ),
        "{err}"
    );
    let err = UNetConfig::new()
        .with_channel_mults(vec![])
        .init::<B>(&dev)
        .unwrap_err();
    assert!(matches!(err, NetsError::ZeroSize { .. }), "{err}");
    let err = ResBlockConfig::new(6, 8, 4).init::<B>(&dev).unwrap_err();
    assert!(
        matches!(
            err,
            NetsError::GroupsDoNotDivide {
                channels: 6,
                groups: 8,
                ..
            }
        ),
        "{err}"
    );
}

/// Per-parameter gradient L1 norms (path, norm) of `Σ r·out` for fixed random weights `r`, over
/// every trainable parameter.
fn gradient_norms(
    net: &UNet<Autodiff<B>>,
    x: Tensor<Autodiff<B>, 4>,
    t: Tensor<Autodiff<B>, 1>,
) -> Vec<(String, f64)> {
    use burn::module::{ModuleVisitor, Param};
    type A = Autodiff<B>;
    let out = net.forward(x, t);
    let r = NoiseSource::new(5).normal::<A, 4>(out.dims(), NoiseKey::new(0, 0), &out.device());
    let grads = (out * r).sum().backward();
    struct Norms<'a> {
        grads: &'a <A as burn::tensor::backend::AutodiffBackend>::Gradients,
        path: Vec<String>,
        out: Vec<(String, f64)>,
    }
    impl ModuleVisitor<A> for Norms<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<A, D>>) {
            if !p.is_require_grad() {
                return; // fixed features (Gaussian Fourier frequencies)
            }
            let norm = p
                .grad(self.grads)
                .map_or(0.0, |g| g.abs().sum().into_scalar() as f64);
            self.out.push((self.path.join("."), norm));
        }
    }
    let mut v = Norms {
        grads: &grads,
        path: Vec::new(),
        out: Vec::new(),
    };
    net.visit(&mut v);
    v.out
}

#[test]
fn every_unet_parameter_gets_a_gradient_and_the_output_depends_on_t() {
    type A = Autodiff<B>;
    let dev = Default::default();
    // Attention at level 1 and in the middle, two blocks per level, upsampling convolutions: every
    // kind of parameter the U-Net has.
    let net: UNet<A> = small_32().with_in_channels(1).init(&dev).unwrap();
    let x = NoiseSource::new(1).normal::<A, 4>([2, 1, 16, 16], NoiseKey::new(0, 0), &dev);
    let t = Tensor::<A, 1>::from_floats([0.3, 0.7], &dev);
    let norms = gradient_norms(&net, x.clone(), t.clone());
    assert_eq!(
        norms.len(),
        score_nets::param_shapes(&net).len(),
        "every parameter visited"
    );
    let dead: Vec<_> = norms
        .iter()
        .filter(|(_, g)| g.is_nan() || *g <= 0.0)
        .collect();
    assert!(dead.is_empty(), "parameters without gradient: {dead:?}");
    for part in [
        "embedding.mlp_in",
        "down_attention",
        "mid_attention",
        "up_blocks",
        "time",
        "upsample",
    ] {
        assert!(
            norms.iter().any(|(p, _)| p.contains(part)),
            "no parameter under {part}"
        );
    }

    // The output moves with t (the time embedding reaches it), at the same x.
    let a = net.forward(x.clone(), t.clone());
    let b = net.forward(x, Tensor::<A, 1>::from_floats([0.8, 0.1], &dev));
    let diff = (a - b).abs().max().into_scalar();
    assert!(diff > 1e-3, "output barely depends on t: {diff}");
}

#[test]
fn cutting_a_skip_connection_changes_the_output() {
    let dev = Default::default();
    let cfg = small_32().with_in_channels(1);
    let net: UNet<B> = cfg.init(&dev).unwrap();
    let x = NoiseSource::new(2).normal::<B, 4>([2, 1, 16, 16], NoiseKey::new(0, 0), &dev);
    let t = Tensor::<B, 1>::from_floats([0.4, 0.6], &dev);
    let base = net.forward(x.clone(), t.clone());
    let levels = cfg.channel_mults.len();
    for j in 0..levels {
        // Up level j reads the skip of down level `levels − 1 − j`, concatenated after `h`:
        // zero the weights that read those channels (3×3 conv and 1×1 projection).
        let skip_ch = cfg.base_channels * cfg.channel_mults[levels - 1 - j];
        let mut cut = net.clone();
        let block = &mut cut.up_blocks[j][0];
        let cut_inputs = |w: Tensor<B, 4>| {
            let [co, ci, kh, kw] = w.dims();
            w.slice_assign(
                [0..co, ci - skip_ch..ci, 0..kh, 0..kw],
                Tensor::zeros([co, skip_ch, kh, kw], &dev),
            )
        };
        block.conv1.weight = block.conv1.weight.clone().map(cut_inputs);
        if let Some(skip) = &mut block.skip {
            skip.weight = skip.weight.clone().map(cut_inputs);
        }
        let diff = (cut.forward(x.clone(), t.clone()) - base.clone())
            .abs()
            .max()
            .into_scalar();
        assert!(
            diff > 1e-4,
            "up level {j}: cutting its skip changed nothing ({diff})"
        );
    }
}

#[test]
fn unet_save_then_load_reproduces_outputs_exactly() {
    let dev = Default::default();
    let cfg = small_32();
    let net: UNet<B> = cfg.init(&dev).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("unet.bin");
    score_nets::save_module(&net, &path).unwrap();
    let loaded: UNet<B> = score_nets::load_module(cfg.init(&dev).unwrap(), &path, &dev).unwrap();
    let x = Tensor::<B, 4>::random([2, 3, 32, 32], burn::tensor::Distribution::Default, &dev);
    let t = Tensor::<B, 1>::from_floats([0.5, 0.2], &dev);
    assert_eq!(
        net.forward(x.clone(), t.clone()).into_data(),
        loaded.forward(x, t).into_data()
    );
    // A U-Net with other widths refuses the file.
    let other: UNet<B> = cfg.with_base_channels(12).init(&dev).unwrap();
    let err = score_nets::load_module(other, &path, &dev).unwrap_err();
    assert!(matches!(err, NetsError::ShapeMismatch { .. }), "{err}");
    std::fs::remove_file(&path).unwrap();
}
