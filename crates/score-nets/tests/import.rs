//! Weights from PyTorch: a small U-Net's weights exported from the PyTorch twin
//! (`benches/reference/torch_unet.py`, written by `tests/fixtures/make_unet_fixture.py`) load
//! into [`UNet`] from both the `.pt` and the `.safetensors` file, and the network then reproduces
//! PyTorch's outputs on the fixture's inputs. Bad files and wrong configurations are typed
//! errors that leave the module unchanged.

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use score_nets::{
    NetsError, TimeEmbeddingConfig, UNET_PYTORCH_KEYS, UNet, UNetConfig, WeightFormat,
    import_weights,
};

type B = Flex;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The configuration of the fixture's PyTorch network.
fn small() -> UNetConfig {
    UNetConfig::new()
        .with_in_channels(2)
        .with_base_channels(8)
        .with_channel_mults(vec![1, 2])
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

struct Io {
    x: Tensor<B, 4>,
    t: Tensor<B, 1>,
    out: Vec<f32>,
    parameters: usize,
}

fn io() -> Io {
    let text = std::fs::read_to_string(fixture("unet_small_io.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let floats = |k: &str| -> Vec<f32> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let shape: Vec<usize> = v["x_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let dev = Default::default();
    let t = floats("t");
    Io {
        x: Tensor::from_data(
            TensorData::new(floats("x"), [shape[0], shape[1], shape[2], shape[3]]),
            &dev,
        ),
        t: Tensor::from_data(TensorData::new(t.clone(), [t.len()]), &dev),
        out: floats("out"),
        parameters: v["parameters"].as_u64().unwrap() as usize,
    }
}

fn values(x: Tensor<B, 4>) -> Vec<f32> {
    x.into_data().to_vec().unwrap()
}

/// Loads the fixture in `format` and checks the outputs against PyTorch's.
fn reproduces_pytorch(file: &str, format: WeightFormat) {
    let io = io();
    let mut unet = small().init::<B>(&Default::default()).unwrap();
    assert_eq!(unet.num_params(), io.parameters, "parameter count");
    let before = values(unet.forward(io.x.clone(), io.t.clone()));
    let report = unet.import_pytorch_weights(fixture(file)).unwrap();
    assert_eq!(report.format, format);
    // 170 tensors in the state dict, every one a parameter of the U-Net.
    assert_eq!(report.applied, 170);
    let got = values(unet.forward(io.x, io.t));
    // f32 through ~30 layers on both sides, different summation orders: differences of a few
    // 1e-6 relative to outputs of size ~1. 1e-4 absolute is far below any wiring mistake (a
    // transposed or swapped tensor changes outputs by O(0.1), see `before`).
    let scale = io.out.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(&io.out)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        worst < 1e-4 * scale.max(1.0),
        "worst difference {worst} (output scale {scale})"
    );
    let moved = before
        .iter()
        .zip(&io.out)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        moved > 1e-2,
        "the freshly initialised net already matched ({moved})"
    );
}

#[test]
fn pytorch_state_dict_reproduces_pytorch_outputs() {
    reproduces_pytorch("unet_small.pt", WeightFormat::Pytorch);
}

#[test]
fn safetensors_reproduces_pytorch_outputs() {
    reproduces_pytorch("unet_small.safetensors", WeightFormat::Safetensors);
}

/// A few parameters of `unet`, flattened (first and last convolutions, a norm's scale, the
/// embedding's first layer), to check that a failed import changed nothing.
fn parameters(unet: &UNet<B>) -> Vec<f32> {
    let mut out = values(unet.conv_in.weight.val());
    out.extend(values(unet.conv_out.weight.val()));
    let gamma: Vec<f32> = unet
        .mid_block1
        .norm1
        .gamma
        .as_ref()
        .unwrap()
        .val()
        .into_data()
        .to_vec()
        .unwrap();
    out.extend(gamma);
    let w: Vec<f32> = unet
        .embedding
        .mlp_in
        .as_ref()
        .unwrap()
        .weight
        .val()
        .into_data()
        .to_vec()
        .unwrap();
    out.extend(w);
    out
}

#[test]
fn a_missing_file_is_an_io_error_naming_it() {
    let mut unet = small().init::<B>(&Default::default()).unwrap();
    let err = unet
        .import_pytorch_weights(fixture("no_such_file.pt"))
        .unwrap_err();
    match &err {
        NetsError::Io { path, .. } => assert!(path.ends_with("no_such_file.pt")),
        other => panic!("expected Io, got {other:?}"),
    }
    assert!(err.to_string().contains("no_such_file.pt"));
}

#[test]
fn an_unknown_extension_is_named() {
    let mut unet = small().init::<B>(&Default::default()).unwrap();
    let err = unet
        .import_pytorch_weights(fixture("unet_small_io.json"))
        .unwrap_err();
    assert!(matches!(err, NetsError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("\"json\""), "{err}");
}

#[test]
fn truncated_files_are_corrupt_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["unet_small.pt", "unet_small.safetensors"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let cut = dir.path().join(name);
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let mut unet = small().init::<B>(&Default::default()).unwrap();
        let before = parameters(&unet);
        let err = unet.import_pytorch_weights(&cut).unwrap_err();
        assert!(matches!(err, NetsError::Corrupt { .. }), "{name}: {err:?}");
        assert!(err.to_string().contains(name), "{err}");
        assert_eq!(parameters(&unet), before, "{name}: the module changed");
    }
}

#[test]
fn another_configuration_is_a_shape_mismatch_and_changes_nothing() {
    // Base width 16 instead of 8: same keys, other shapes.
    let mut unet = small()
        .with_base_channels(16)
        .init::<B>(&Default::default())
        .unwrap();
    let before = parameters(&unet);
    let err = unet
        .import_pytorch_weights(fixture("unet_small.pt"))
        .unwrap_err();
    match &err {
        NetsError::ShapeMismatch {
            param,
            expected,
            found,
            ..
        } => {
            assert_ne!(expected, found);
            assert!(!param.is_empty());
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
    assert_eq!(parameters(&unet), before, "the module changed");
}

#[test]
fn missing_and_unused_tensors_are_listed() {
    // Without attention at level 1, the file's `down_attn.1.*` tensors have nowhere to go.
    let mut unet = small()
        .with_attention_levels(vec![])
        .init::<B>(&Default::default())
        .unwrap();
    let err = unet
        .import_pytorch_weights(fixture("unet_small.safetensors"))
        .unwrap_err();
    assert!(matches!(err, NetsError::Incompatible { .. }), "{err:?}");
    assert!(err.to_string().contains("down_attention.1.0"), "{err}");
    // Attention at level 0 as well: its parameters are not in the file.
    let mut unet = small()
        .with_attention_levels(vec![0, 1])
        .init::<B>(&Default::default())
        .unwrap();
    let err = unet
        .import_pytorch_weights(fixture("unet_small.pt"))
        .unwrap_err();
    assert!(matches!(err, NetsError::Incompatible { .. }), "{err:?}");
    assert!(err.to_string().contains("down_attention.0.0"), "{err}");
    // Without the key mapping, nothing of the levels lines up.
    let mut unet = small().init::<B>(&Default::default()).unwrap();
    let err = import_weights(&mut unet, fixture("unet_small.pt"), &[]).unwrap_err();
    assert!(
        err.to_string()
            .contains("156 parameter(s) of the module are not in the file"),
        "{err}"
    );
    assert_eq!(UNET_PYTORCH_KEYS.len(), 7);
}

#[test]
fn an_invalid_key_pattern_is_a_typed_error() {
    let mut unet = small().init::<B>(&Default::default()).unwrap();
    let err =
        import_weights(&mut unet, fixture("unet_small.pt"), &[("(unclosed", "x")]).unwrap_err();
    assert!(
        matches!(&err, NetsError::InvalidKeyMap { pattern, .. } if pattern == "(unclosed"),
        "{err:?}"
    );
}
