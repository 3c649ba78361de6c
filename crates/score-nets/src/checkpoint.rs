//! Saving and loading network weights with burn's recorders, checked.
//!
//! burn's `load_record` accepts a record whose tensors have other shapes than the module's
//! (it replaces the parameters silently), panics on a record of another structure, and its
//! bincode byte recorder panics on corrupt input. So the weights are encoded with the
//! self-describing [`FileRecorder`](crate::record::FileRecorder) (full precision) inside a small
//! envelope — magic, format version, payload length and an FNV-1a checksum — written atomically
//! (temporary file, flush, rename), and loading compares the record's structure and every
//! parameter's shape with the module's before burn sees it ([`crate::record`]). A bad file gives
//! a [`NetsError`], never a panic or a wrong model.

use std::path::Path;

use burn::module::Module;
use burn::tensor::backend::Backend;

use score_core::AnySde;
use serde::{Deserialize, Serialize};

use crate::error::{NetsError, Result};
use crate::model::{Parameterization, ScoreModel};
use crate::record::{encode_module, fnv1a, load_module_record, write_atomic};

const MAGIC: &[u8; 8] = b"SCORENET";
const VERSION: u32 = 2;
/// Magic, version, metadata length, payload length, checksum.
const HEADER: usize = 8 + 4 + 8 + 8 + 8;

/// The file: a header, a metadata section (JSON; empty for a bare module, the SDE and output
/// parameterisation for a [`ScoreModel`]) and the record, under one checksum.
fn envelope(meta: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(meta.len() + payload.len());
    body.extend_from_slice(meta);
    body.extend_from_slice(payload);
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(meta.len() as u64).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&fnv1a(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Checks a file and returns its (metadata, record) sections.
fn open_envelope<'a>(bytes: &'a [u8], path: &Path) -> Result<(&'a [u8], &'a [u8])> {
    let corrupt = |reason: String| NetsError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(corrupt("not a score-nets weight file (bad magic)".into()));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(corrupt(format!(
            "format version {version}, this build reads {VERSION}"
        )));
    }
    if bytes.len() < HEADER {
        return Err(corrupt(format!(
            "{} bytes, shorter than the {HEADER}-byte header (truncated?)",
            bytes.len()
        )));
    }
    let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
    let (meta_len, payload_len) = (u64_at(12), u64_at(20));
    let body = &bytes[HEADER..];
    if meta_len.checked_add(payload_len) != Some(body.len() as u64) {
        return Err(corrupt(format!(
            "body has {} bytes, header says {meta_len} + {payload_len} (truncated?)",
            body.len()
        )));
    }
    let (want, got) = (u64_at(28), fnv1a(body));
    if want != got {
        return Err(corrupt(format!(
            "checksum mismatch (stored {want:#018x}, computed {got:#018x})"
        )));
    }
    Ok(body.split_at(meta_len as usize))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> NetsError + '_ {
    move |source| NetsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `module`'s weights to `path`, atomically: a crash leaves either the old file or the
/// new one, never half of one.
///
/// ```
/// use burn::backend::NdArray;
/// use burn::tensor::Tensor;
/// use score_nets::{TimeMlpConfig, load_module, save_module};
/// type B = NdArray<f32>;
/// let dev = Default::default();
/// let cfg = TimeMlpConfig::new(2).with_hidden_size(16);
/// let net = cfg.init::<B>(&dev).unwrap();
/// let path = std::env::temp_dir().join(format!("score-nets-doc-{}.bin", std::process::id()));
/// save_module(&net, &path).unwrap();
/// let loaded = load_module(cfg.init::<B>(&dev).unwrap(), &path, &dev).unwrap();
/// let (x, t) = (Tensor::<B, 2>::ones([3, 2], &dev), Tensor::<B, 1>::ones([3], &dev));
/// assert_eq!(
///     net.forward(x.clone(), t.clone()).into_data(),
///     loaded.forward(x, t).into_data()
/// );
/// # std::fs::remove_file(&path).unwrap();
/// ```
pub fn save_module<B: Backend, M: Module<B>>(module: &M, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let payload = encode_module(module, path)?;
    write_atomic(path, &envelope(&[], &payload))
        .map_err(|(p, source)| NetsError::Io { path: p, source })
}

/// Loads weights saved by [`save_module`] into `module` (built from the same configuration) on
/// `device`.
///
/// # Errors
/// - [`NetsError::Io`] when the file cannot be read;
/// - [`NetsError::Corrupt`] when it is not an intact weight file or does not decode as a record
///   of this module type;
/// - [`NetsError::Incompatible`] when its structure differs from `module`'s (another number of
///   layers, say), found before burn's loader sees the record;
/// - [`NetsError::ShapeMismatch`] when its parameters' number or shapes differ from `module`'s.
pub fn load_module<B: Backend, M: Module<B>>(
    module: M,
    path: impl AsRef<Path>,
    device: &B::Device,
) -> Result<M> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(io(path))?;
    let (_, payload) = open_envelope(&bytes, path)?;
    load_module_record(module, payload, device, path)
}

/// What a [`ScoreModel`] file says about its network's output, beside the weights.
#[derive(Debug, Serialize, Deserialize)]
struct ScoreModelMeta {
    sde: AnySde,
    parameterization: Parameterization,
    scale_by_std: bool,
}

impl<B: Backend, M: Module<B>> ScoreModel<B, M> {
    /// Writes the network's weights together with the SDE and output parameterisation, so that
    /// one file gives a sampler-ready model ([`ScoreModel::load`]); atomic like [`save_module`].
    ///
    /// ```
    /// use burn::backend::NdArray;
    /// use score_core::{AnySde, VpSde};
    /// use score_nets::{Parameterization, ScoreModel, TimeMlpConfig};
    /// type B = NdArray<f32>;
    /// let dev = Default::default();
    /// let cfg = TimeMlpConfig::new(2).with_hidden_size(8).with_num_layers(1);
    /// let model = ScoreModel::new(cfg.init::<B>(&dev).unwrap(), AnySde::Vp(VpSde::default()), Parameterization::Noise);
    /// let dir = tempfile::tempdir().unwrap();
    /// model.save(dir.path().join("m.bin")).unwrap();
    /// let net = cfg.clone().with_seed(9).init::<B>(&dev).unwrap();
    /// let loaded = ScoreModel::load(net, dir.path().join("m.bin"), &dev).unwrap();
    /// assert_eq!(loaded.sde(), model.sde());
    /// assert_eq!(loaded.parameterization(), Parameterization::Noise);
    /// ```
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let meta = serde_json::to_vec(&ScoreModelMeta {
            sde: *self.sde(),
            parameterization: self.parameterization(),
            scale_by_std: self.scale_by_std(),
        })
        .map_err(|e| NetsError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("could not encode the model description: {e}"),
        })?;
        let payload = encode_module(&self.net, path)?;
        write_atomic(path, &envelope(&meta, &payload))
            .map_err(|(p, source)| NetsError::Io { path: p, source })
    }

    /// Loads a file written by [`ScoreModel::save`]: `net` (built from the same configuration)
    /// takes the weights, and the model takes the saved SDE and parameterisation.
    ///
    /// # Errors
    /// Those of [`load_module`], and [`NetsError::Corrupt`] when the file holds no model
    /// description (it was written by [`save_module`]) or an invalid one.
    pub fn load(net: M, path: impl AsRef<Path>, device: &B::Device) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(io(path))?;
        let (meta, payload) = open_envelope(&bytes, path)?;
        if meta.is_empty() {
            return Err(NetsError::Corrupt {
                path: path.to_path_buf(),
                reason: "a bare weight file (save_module) has no SDE or parameterisation; \
                         write it with ScoreModel::save"
                    .into(),
            });
        }
        let meta: ScoreModelMeta =
            serde_json::from_slice(meta).map_err(|e| NetsError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("invalid model description: {e}"),
            })?;
        let net = load_module_record(net, payload, device, path)?;
        Ok(ScoreModel::new(net, meta.sde, meta.parameterization)
            .with_scale_by_std(meta.scale_by_std))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TimeEmbeddingConfig, TimeMlp, TimeMlpConfig};
    use burn::backend::NdArray;
    use burn::tensor::Tensor;

    type B = NdArray<f32>;

    fn tmp(dir: &tempfile::TempDir, name: &str) -> std::path::PathBuf {
        dir.path().join(format!("{name}.bin"))
    }

    fn cfg(hidden: usize) -> TimeMlpConfig {
        TimeMlpConfig::new(2)
            .with_hidden_size(hidden)
            .with_num_layers(2)
            .with_embedding(TimeEmbeddingConfig::new().with_kind(
                crate::EmbeddingKind::GaussianFourier {
                    scale: 16.0,
                    seed: 9,
                },
            ))
    }

    fn out(net: &TimeMlp<B>) -> Vec<f32> {
        let dev = Default::default();
        let x = Tensor::<B, 2>::from_floats([[0.3, -1.2], [2.0, 0.5]], &dev);
        let t = Tensor::<B, 1>::from_floats([0.2, 0.8], &dev);
        net.forward(x, t).into_data().into_vec().unwrap()
    }

    #[test]
    fn save_then_load_reproduces_outputs_exactly() {
        let dev = Default::default();
        let net = cfg(16).init::<B>(&dev).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = tmp(&dir, "roundtrip");
        save_module(&net, &path).unwrap();
        // A fresh network (other random weights and other Fourier seed) takes the saved ones.
        let fresh = cfg(16)
            .with_embedding(TimeEmbeddingConfig::new().with_kind(
                crate::EmbeddingKind::GaussianFourier {
                    scale: 16.0,
                    seed: 1,
                },
            ))
            .init::<B>(&dev)
            .unwrap();
        assert_ne!(out(&fresh), out(&net));
        let loaded = load_module(fresh, &path, &dev).unwrap();
        assert_eq!(out(&loaded), out(&net));
    }

    #[test]
    fn wrong_shapes_are_an_error() {
        let dev = Default::default();
        let dir = tempfile::tempdir().unwrap();
        let path = tmp(&dir, "shapes");
        save_module(&cfg(16).init::<B>(&dev).unwrap(), &path).unwrap();
        let err = load_module(cfg(8).init::<B>(&dev).unwrap(), &path, &dev).unwrap_err();
        match &err {
            NetsError::ShapeMismatch {
                param,
                expected,
                found,
                ..
            } => {
                assert!(param.contains("layers"), "{err}");
                assert_ne!(expected, found);
            }
            other => panic!("expected a shape mismatch, got {other}"),
        }
        // Another number of layers.
        let err = load_module(
            cfg(16).with_num_layers(3).init::<B>(&dev).unwrap(),
            &path,
            &dev,
        )
        .unwrap_err();
        assert!(
            matches!(&err, NetsError::Incompatible { reason, .. } if reason.contains("length") && reason.contains("layers")),
            "{err}"
        );
    }

    #[test]
    fn corrupt_and_missing_files_are_errors() {
        let dev = Default::default();
        let dir = tempfile::tempdir().unwrap();
        let path = tmp(&dir, "corrupt");
        let fresh = || cfg(16).init::<B>(&dev).unwrap();
        save_module(&fresh(), &path).unwrap();
        let good = std::fs::read(&path).unwrap();
        let reason = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            match load_module(fresh(), &path, &dev) {
                Err(NetsError::Corrupt { reason, .. }) => reason,
                Err(e) => panic!("expected Corrupt, got {e}"),
                Ok(_) => panic!("a damaged file loaded"),
            }
        };
        let mut flipped = good.clone();
        let mid = HEADER + (good.len() - HEADER) / 2;
        flipped[mid] ^= 0x40;
        assert!(reason(&flipped).contains("checksum"));
        assert!(reason(&good[..good.len() - 10]).contains("truncated"));
        assert!(reason(b"PK\x03\x04 certainly not weights").contains("magic"));
        // An intact envelope around bytes that are not a record.
        assert!(reason(&envelope(&[], b"\x93\x01\x02\x03garbage")).contains("decode"));
        let err = load_module(fresh(), tmp(&dir, "missing"), &dev).unwrap_err();
        assert!(matches!(err, NetsError::Io { .. }), "{err}");
    }

    #[test]
    fn a_score_model_file_carries_its_sde_and_parameterisation() {
        use score_core::{AnySde, ScoreFn, VeSde};
        let dev = Default::default();
        let dir = tempfile::tempdir().unwrap();
        let sde = AnySde::Ve(VeSde::new(0.05, 7.0).unwrap());
        let model = ScoreModel::new(
            cfg(16).init::<B>(&dev).unwrap(),
            sde,
            Parameterization::Score,
        )
        .with_scale_by_std(true);
        let path = tmp(&dir, "model");
        model.save(&path).unwrap();
        let loaded =
            ScoreModel::load(cfg(16).with_seed(3).init::<B>(&dev).unwrap(), &path, &dev).unwrap();
        assert_eq!(*loaded.sde(), sde);
        assert_eq!(loaded.parameterization(), Parameterization::Score);
        assert!(loaded.scale_by_std());
        let x = Tensor::<B, 2>::from_floats([[0.3, -1.2], [2.0, 0.5]], &dev);
        let t = Tensor::<B, 1>::from_floats([0.2, 0.8], &dev);
        assert_eq!(
            model.score(x.clone(), t.clone()).into_data(),
            loaded.score(x, t).into_data()
        );
        // A bare weight file has no description; an invalid description is refused.
        let bare = tmp(&dir, "bare");
        save_module(&model.net, &bare).unwrap();
        let err = ScoreModel::load(cfg(16).init::<B>(&dev).unwrap(), &bare, &dev).unwrap_err();
        assert!(
            matches!(&err, NetsError::Corrupt { reason, .. } if reason.contains("ScoreModel::save")),
            "{err}"
        );
        let payload = encode_module(&model.net, &bare).unwrap();
        let meta = br#"{"sde":{"Ve":{"sigma_min":7.0,"sigma_max":0.05}},"parameterization":"Score","scale_by_std":false}"#;
        std::fs::write(&bare, envelope(meta, &payload)).unwrap();
        let err = ScoreModel::load(cfg(16).init::<B>(&dev).unwrap(), &bare, &dev).unwrap_err();
        assert!(
            matches!(&err, NetsError::Corrupt { reason, .. } if reason.contains("invalid model description")),
            "{err}"
        );
    }
}
