//! Weights from elsewhere: score networks loaded from safetensors and PyTorch (`.pt`, `.pth`)
//! files with burn's own store crate (burn-store).
//!
//! Both formats are read as PyTorch writes them (`torch.save(model.state_dict(), …)`,
//! `safetensors.torch.save_file(…)`): burn-store's PyTorch adapter transposes `Linear` weights
//! (`[out, in]` → `[in, out]`) and renames norm parameters (`weight`/`bias` → `gamma`/`beta`);
//! a key mapping renames the network's own fields where PyTorch code names them otherwise.
//!
//! Loading is all or nothing: the tensors go into a copy of the module, which replaces the
//! original only when every parameter of the module was found with its shape and every tensor of
//! the file found its place. Otherwise the module is unchanged and the error names the file and
//! the offending tensors.
//!
//! ```no_run
//! use burn::backend::NdArray;
//! use score_nets::UNetConfig;
//!
//! let mut unet = UNetConfig::mnist().init::<NdArray<f32>>(&Default::default()).unwrap();
//! // A state dict saved from PyTorch code with the layer names of `UNET_PYTORCH_KEYS`.
//! let report = unet.import_pytorch_weights("unet.pt").unwrap();
//! println!("{} tensors loaded", report.applied);
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn_store::{
    ApplyError, ApplyResult, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};

use crate::error::{NetsError, Result};
use crate::unet::UNet;

/// The key mapping from a PyTorch U-Net's state dict to [`UNet`]'s fields: `(regex, replacement)`
/// pairs applied in order to every key of the file. PyTorch code (this repository's twin,
/// `benches/reference/torch_unet.py`) names the lists of levels `down`, `down_attn`, `up`,
/// `up_attn` and the bottleneck `mid1`, `mid_attn`, `mid2`; every other name (`conv_in`,
/// `embedding.mlp_in`, `norm1`, `conv1`, `time`, `skip`, `query`, …) is the same on both sides.
pub const UNET_PYTORCH_KEYS: &[(&str, &str)] = &[
    (r"^down\.", "down_blocks."),
    (r"^down_attn\.", "down_attention."),
    (r"^mid1\.", "mid_block1."),
    (r"^mid_attn\.", "mid_attention."),
    (r"^mid2\.", "mid_block2."),
    (r"^up\.", "up_blocks."),
    (r"^up_attn\.", "up_attention."),
];

/// A weight file's format, chosen by [`WeightFormat::from_path`] from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// safetensors (`.safetensors`).
    Safetensors,
    /// PyTorch's `torch.save` format (`.pt`, `.pth`, `.bin`): a zip archive or the legacy format.
    Pytorch,
}

impl WeightFormat {
    /// The format named by the file's extension; another extension is an error that names it.
    pub fn from_path(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("safetensors") => Ok(Self::Safetensors),
            Some("pt" | "pth" | "bin") => Ok(Self::Pytorch),
            other => Err(NetsError::Corrupt {
                path: path.to_path_buf(),
                reason: format!(
                    "unknown weight format (extension {:?}): expected .safetensors, .pt, .pth or .bin",
                    other.unwrap_or("")
                ),
            }),
        }
    }
}

/// What an import loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// The file read.
    pub path: PathBuf,
    /// Its format.
    pub format: WeightFormat,
    /// Number of tensors loaded into the module (every parameter of the module).
    pub applied: usize,
}

/// Loads the tensors of a safetensors or PyTorch file (format from the extension) into `module`,
/// renaming the file's keys with `key_map` (`(regex, replacement)` pairs, applied in order) and
/// adapting PyTorch's layouts. All or nothing: on any error the module is left as it was.
///
/// # Errors
/// - [`NetsError::Io`]: the file cannot be opened;
/// - [`NetsError::Corrupt`]: unknown extension, or a file the reader cannot parse (truncated,
///   not the format its extension says);
/// - [`NetsError::ShapeMismatch`]: a tensor whose shape differs from the parameter's;
/// - [`NetsError::Incompatible`]: parameters of the module missing from the file, or tensors of
///   the file with no parameter to go to (each listed by name), or a tensor of another dtype;
/// - [`NetsError::InvalidKeyMap`]: a pattern of `key_map` that is not a regex.
pub fn import_weights<B: Backend, M: Module<B> + Clone>(
    module: &mut M,
    path: impl AsRef<Path>,
    key_map: &[(&str, &str)],
) -> Result<ImportReport> {
    let path = path.as_ref();
    let format = WeightFormat::from_path(path)?;
    std::fs::metadata(path).map_err(|source| NetsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    for (pattern, _) in key_map {
        check_regex(pattern)?;
    }
    let mut candidate = module.clone();
    let result = match format {
        WeightFormat::Safetensors => {
            let mut store = SafetensorsStore::from_file(path)
                .with_from_adapter(PyTorchToBurnAdapter)
                .allow_partial(true)
                .validate(false)
                // Keep PyTorch's indices: its contiguous renumbering would shift the levels of
                // `down_attn` when level 0 has no attention (an empty ModuleList writes no key).
                .map_indices_contiguous(false);
            for (from, to) in key_map {
                store = store.with_key_remapping(*from, *to);
            }
            candidate
                .load_from(&mut store)
                .map_err(|e| corrupt(path, e))?
        }
        WeightFormat::Pytorch => {
            let mut store = PytorchStore::from_file(path)
                .allow_partial(true)
                .validate(false)
                // Keep PyTorch's indices: its contiguous renumbering would shift the levels of
                // `down_attn` when level 0 has no attention (an empty ModuleList writes no key).
                .map_indices_contiguous(false);
            for (from, to) in key_map {
                store = store.with_key_remapping(*from, *to);
            }
            candidate
                .load_from(&mut store)
                .map_err(|e| corrupt(path, e))?
        }
    };
    check_complete(path, &result)?;
    *module = candidate;
    Ok(ImportReport {
        path: path.to_path_buf(),
        format,
        applied: result.applied.len(),
    })
}

impl<B: Backend> UNet<B> {
    /// Loads a PyTorch U-Net's weights (safetensors or `torch.save` state dict, by extension)
    /// saved with the layer names of [`UNET_PYTORCH_KEYS`]; see [`import_weights`]. The network
    /// must have been built with the same configuration as the PyTorch one: any difference shows
    /// as missing, unused or misshapen tensors, and leaves `self` unchanged.
    pub fn import_pytorch_weights(&mut self, path: impl AsRef<Path>) -> Result<ImportReport> {
        import_weights(self, path, UNET_PYTORCH_KEYS)
    }
}

/// burn-store panics on an invalid pattern; check it first.
fn check_regex(pattern: &str) -> Result<()> {
    burn_store::KeyRemapper::new()
        .add_pattern(pattern, "")
        .map(|_| ())
        .map_err(|e| NetsError::InvalidKeyMap {
            pattern: pattern.to_string(),
            reason: e.to_string(),
        })
}

fn corrupt(path: &Path, e: impl std::fmt::Display) -> NetsError {
    NetsError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Names at most a handful of keys, with the count of the rest.
fn list(names: &[String]) -> String {
    const SHOWN: usize = 6;
    let mut s = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    s
}

fn check_complete(path: &Path, result: &ApplyResult) -> Result<()> {
    let path_buf = || path.to_path_buf();
    if let Some(e) = result.errors.first() {
        return Err(match e {
            ApplyError::ShapeMismatch {
                path: param,
                expected,
                found,
            } => NetsError::ShapeMismatch {
                path: path_buf(),
                param: param.clone(),
                expected: expected.to_vec(),
                found: found.to_vec(),
            },
            other => NetsError::Incompatible {
                path: path_buf(),
                reason: other.to_string(),
            },
        });
    }
    if !result.missing.is_empty() {
        let names: Vec<String> = result.missing.iter().map(|(p, _)| p.clone()).collect();
        return Err(NetsError::Incompatible {
            path: path_buf(),
            reason: format!(
                "{} parameter(s) of the module are not in the file (after the key mapping): {}",
                names.len(),
                list(&names)
            ),
        });
    }
    // burn-store 0.21 lists a norm's `weight`/`bias` as unused even when the PyTorch adapter
    // loaded them into `gamma`/`beta` under the alternative name; those are not unused.
    let applied: HashSet<&str> = result.applied.iter().map(String::as_str).collect();
    let consumed = |key: &str| {
        let renamed = if let Some(p) = key.strip_suffix(".weight") {
            format!("{p}.gamma")
        } else if let Some(p) = key.strip_suffix(".bias") {
            format!("{p}.beta")
        } else {
            return false;
        };
        applied.contains(renamed.as_str())
    };
    let unused: Vec<String> = result
        .unused
        .iter()
        .filter(|k| !consumed(k))
        .cloned()
        .collect();
    if !unused.is_empty() {
        return Err(NetsError::Incompatible {
            path: path_buf(),
            reason: format!(
                "{} tensor(s) of the file have no parameter in the module (after the key mapping): {}",
                unused.len(),
                list(&unused)
            ),
        });
    }
    Ok(())
}
