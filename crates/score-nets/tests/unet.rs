//! U-Net shapes on 28×28 (MNIST configuration) and 32×32, its blocks, its parameter count, its
//! validation, and its use through `ScoreModel` on an autodiff backend.

use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::tensor::Tensor;
use score_core::{AnySde, ScoreFn, VeSde};
use score_nets::{
    AttentionBlockConfig, NetsError, Parameterization, ResBlockConfig, ScoreModel,
    TimeEmbeddingConfig, UNet, UNetConfig,
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

#[test]
fn unet_score_model_backpropagates_to_every_level() {
    type A = Autodiff<B>;
    let dev = Default::default();
    let net: UNet<A> = small_32().with_in_channels(1).init(&dev).unwrap();
    let model = ScoreModel::new(net, AnySde::Ve(VeSde::default()), Parameterization::Score)
        .with_scale_by_std(true);
    let x = Tensor::<A, 4>::ones([2, 1, 28, 28], &dev);
    let t = Tensor::<A, 1>::from_floats([0.3, 0.7], &dev);
    let s = model.score(x, t);
    assert_eq!(s.dims(), [2, 1, 28, 28]);
    let grads = s.square().mean().backward();
    for w in [
        &model.net.conv_in.weight,
        &model.net.mid_block1.conv1.weight,
        &model.net.conv_out.weight,
    ] {
        assert!(w.grad(&grads).is_some());
    }
    let emb = model.net.embedding.mlp_in.as_ref().unwrap();
    assert!(emb.weight.grad(&grads).is_some());
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
