//! The judge's files: the weights (`judge.mpk`, burn's named MessagePack record at full
//! precision) and beside them a manifest (`judge.json`) holding the training configuration, the
//! FNV-1a checksum of the weights file, and the figures measured when it was trained. Both are
//! written atomically; a missing, damaged or mismatched pair is a typed error, never a panic.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use super::net::JudgeNet;
use super::train::JudgeTrainingConfig;
use crate::error::EvalError;

/// File name of the weights.
pub const WEIGHTS_FILE: &str = "judge.mpk";
/// File name of the manifest.
pub const MANIFEST_FILE: &str = "judge.json";
/// Version of the manifest's layout.
const FORMAT: u32 = 1;

/// What is recorded beside the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version of this file.
    pub format: u32,
    /// The configuration the weights were trained with.
    pub config: JudgeTrainingConfig,
    /// FNV-1a (64 bit) of the weights file, as 16 hex digits.
    pub weights_fnv1a: String,
    /// Size of the weights file in bytes.
    pub weights_bytes: u64,
    /// Accuracy on the 10 000 MNIST test images, measured after training.
    pub test_accuracy: f64,
    /// Wall-clock training time in seconds.
    pub train_seconds: f64,
    /// The backend the judge was trained on (for the record).
    pub trained_on: String,
}

fn io(path: &Path, e: std::io::Error) -> EvalError {
    EvalError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Writes `net`'s weights and their manifest into `dir` (created if needed), atomically.
///
/// # Errors
/// [`EvalError::Io`] when a file cannot be written, [`EvalError::Corrupt`] when burn cannot
/// encode the record.
pub fn save<B: Backend>(
    dir: &Path,
    net: &JudgeNet<B>,
    config: &JudgeTrainingConfig,
    test_accuracy: f64,
    train_seconds: f64,
    trained_on: &str,
) -> crate::Result<Manifest> {
    let weights = dir.join(WEIGHTS_FILE);
    let bytes =
        score_nets::record::encode_module(net, &weights).map_err(|e| EvalError::Corrupt {
            path: weights.clone(),
            reason: e.to_string(),
        })?;
    let manifest = Manifest {
        format: FORMAT,
        config: config.clone(),
        weights_fnv1a: format!("{:016x}", score_nets::record::fnv1a(&bytes)),
        weights_bytes: bytes.len() as u64,
        test_accuracy,
        train_seconds,
        trained_on: trained_on.to_string(),
    };
    score_nets::record::write_atomic(&weights, &bytes).map_err(|(p, e)| io(&p, e))?;
    let json = serde_json::to_string_pretty(&manifest).map_err(|e| EvalError::Corrupt {
        path: dir.join(MANIFEST_FILE),
        reason: e.to_string(),
    })?;
    score_nets::record::write_atomic(&dir.join(MANIFEST_FILE), json.as_bytes())
        .map_err(|(p, e)| io(&p, e))?;
    Ok(manifest)
}

/// Reads the judge in `dir` onto `device`, checking that its manifest parses, was written for
/// `config`, and that the weights file has the recorded size and checksum and the network's
/// structure and shapes.
///
/// # Errors
/// [`EvalError::Io`] for a missing or unreadable file, [`EvalError::Corrupt`] for any mismatch.
pub fn load<B: Backend>(
    dir: &Path,
    config: &JudgeTrainingConfig,
    device: &B::Device,
) -> crate::Result<(JudgeNet<B>, Manifest)> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest_path).map_err(|e| io(&manifest_path, e))?;
    let corrupt = |path: &PathBuf, reason: String| EvalError::Corrupt {
        path: path.clone(),
        reason,
    };
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| corrupt(&manifest_path, format!("not a judge manifest: {e}")))?;
    if manifest.format != FORMAT {
        return Err(corrupt(
            &manifest_path,
            format!("layout version {} (expected {FORMAT})", manifest.format),
        ));
    }
    if &manifest.config != config {
        return Err(corrupt(
            &manifest_path,
            "written for another training configuration".to_string(),
        ));
    }
    let weights = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&weights).map_err(|e| io(&weights, e))?;
    if bytes.len() as u64 != manifest.weights_bytes {
        return Err(corrupt(
            &weights,
            format!(
                "{} bytes, the manifest records {}",
                bytes.len(),
                manifest.weights_bytes
            ),
        ));
    }
    let sum = format!("{:016x}", score_nets::record::fnv1a(&bytes));
    if sum != manifest.weights_fnv1a {
        return Err(corrupt(
            &weights,
            format!(
                "FNV-1a checksum {sum}, the manifest records {}",
                manifest.weights_fnv1a
            ),
        ));
    }
    let net = score_nets::record::load_module_record(
        config.net.init::<B>(device),
        &bytes,
        device,
        &weights,
    )
    .map_err(|e| corrupt(&weights, e.to_string()))?;
    Ok((net, manifest))
}
