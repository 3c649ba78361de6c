//! Saving and loading network weights with burn's recorders, checked.
//!
//! burn's `load_record` accepts a record whose tensors have other shapes than the module's
//! (it replaces the parameters silently) and its bincode byte recorder panics on corrupt input.
//! So the weights are encoded with [`NamedMpkBytesRecorder`] (full precision) inside a small
//! envelope — magic, format version, payload length and an FNV-1a checksum — written atomically
//! (temporary file, then rename), and loading compares every parameter's shape with the module's
//! before handing it back. A bad file gives a [`NetsError`], never a panic or a wrong model.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::backend::Backend;

use crate::error::{NetsError, Result};
use crate::layers::param_shapes;

const MAGIC: &[u8; 8] = b"SCORENET";
const VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 8 + 8;

type Rec = NamedMpkBytesRecorder<FullPrecisionSettings>;

/// FNV-1a, 64 bit: enough to tell a damaged file from an intact one (not a security measure).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

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
    let payload = Recorder::<B>::record(&Rec::default(), module.clone().into_record(), ())
        .map_err(|e| NetsError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("could not encode the record: {e}"),
        })?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, envelope(&payload)).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Loads weights saved by [`save_module`] into `module` (built from the same configuration) on
/// `device`.
///
/// # Errors
/// - [`NetsError::Io`] when the file cannot be read;
/// - [`NetsError::Corrupt`] when it is not an intact weight file or does not decode as a record
///   of this module type;
/// - [`NetsError::Incompatible`] when its structure differs from `module`'s (burn's loader
///   panics there; the panic is caught and its message reported, after the default panic hook
///   has printed it);
/// - [`NetsError::ShapeMismatch`] when its parameters' number or shapes differ from `module`'s.
pub fn load_module<B: Backend, M: Module<B>>(
    module: M,
    path: impl AsRef<Path>,
    device: &B::Device,
) -> Result<M> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(io(path))?;
    let payload = open_envelope(&bytes, path)?;
    load_payload(module, payload, path, device)
}

fn load_payload<B: Backend, M: Module<B>>(
    module: M,
    payload: &[u8],
    path: &Path,
    device: &B::Device,
) -> Result<M> {
    let corrupt = |reason: String| NetsError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let record: M::Record = Recorder::<B>::load(&Rec::default(), payload.to_vec(), device)
        .map_err(|e| corrupt(format!("does not decode as this module's record: {e}")))?;
    let expected = param_shapes(&module);
    // burn asserts (panics) when a record's structure differs from the module's, e.g. a Vec of
    // layers of another length; that is reported as an incompatible file.
    let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let m = module.load_record(record);
        let shapes = param_shapes(&m);
        (m, shapes)
    }));
    let (loaded, found) = loaded.map_err(|panic| {
        let reason = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("the record's structure differs from the module's");
        NetsError::Incompatible {
            path: path.to_path_buf(),
            reason: reason.split_whitespace().collect::<Vec<_>>().join(" "),
        }
    })?;
    if expected.len() != found.len() {
        return Err(NetsError::ShapeMismatch {
            path: path.to_path_buf(),
            param: "#count".into(),
            expected: vec![expected.len()],
            found: vec![found.len()],
        });
    }
    for ((name, e), (_, f)) in expected.into_iter().zip(found) {
        if e != f {
            return Err(NetsError::ShapeMismatch {
                path: path.to_path_buf(),
                param: name,
                expected: e,
                found: f,
            });
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TimeEmbeddingConfig, TimeMlp, TimeMlpConfig};
    use burn::backend::NdArray;
    use burn::tensor::Tensor;

    type B = NdArray<f32>;

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("score-nets-{}-{name}.bin", std::process::id()))
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
        let path = tmp("roundtrip");
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
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn wrong_shapes_are_an_error() {
        let dev = Default::default();
        let path = tmp("shapes");
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
            matches!(&err, NetsError::Incompatible { reason, .. } if reason.contains("length")),
            "{err}"
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn corrupt_and_missing_files_are_errors() {
        let dev = Default::default();
        let path = tmp("corrupt");
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
        std::fs::remove_file(&path).unwrap();
        let err = load_module(fresh(), tmp("missing"), &dev).unwrap_err();
        assert!(matches!(err, NetsError::Io { .. }), "{err}");
    }
}
