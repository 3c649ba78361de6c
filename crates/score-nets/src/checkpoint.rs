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

use crate::error::{NetsError, Result};
use crate::record::{encode_module, fnv1a, load_module_record, write_atomic};

const MAGIC: &[u8; 8] = b"SCORENET";
const VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 8 + 8;

fn envelope(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&fnv1a(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn open_envelope<'a>(bytes: &'a [u8], path: &Path) -> Result<&'a [u8]> {
    let corrupt = |reason: String| NetsError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(corrupt("not a score-nets weight file (bad magic)".into()));
    }
    let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(corrupt(format!(
            "format version {version}, this build reads {VERSION}"
        )));
    }
    let len = u64_at(12);
    let payload = &bytes[HEADER..];
    if payload.len() as u64 != len {
        return Err(corrupt(format!(
            "payload has {} bytes, header says {len} (truncated?)",
            payload.len()
        )));
    }
    let (want, got) = (u64_at(20), fnv1a(payload));
    if want != got {
        return Err(corrupt(format!(
            "checksum mismatch (stored {want:#018x}, computed {got:#018x})"
        )));
    }
    Ok(payload)
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
    write_atomic(path, &envelope(&payload)).map_err(|(p, source)| NetsError::Io { path: p, source })
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
    let payload = open_envelope(&bytes, path)?;
    load_module_record(module, payload, device, path)
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
        assert!(reason(&envelope(b"\x93\x01\x02\x03garbage")).contains("decode"));
        let err = load_module(fresh(), tmp(&dir, "missing"), &dev).unwrap_err();
        assert!(matches!(err, NetsError::Io { .. }), "{err}");
    }
}
