//! The checkpoint file: a validated container for the model, its EMA, the optimiser state, the
//! step and the noise seed (the whole RNG state: [`NoiseSource`](score_core::NoiseSource) is
//! counter-based, so seed + step determine every later draw), plus the loss history.
//!
//! Layout (little-endian): magic `SCORECKP`, format version `u32`, step `u64`, seed `u64`, four
//! section lengths `u64` (model, EMA, optimiser, history), the sections, and an FNV-1a-64 checksum
//! of everything before it. Reading checks magic, version, total length and checksum before any
//! section is decoded, so a truncated or corrupted file gives [`TrainError::Corrupt`] and nothing
//! is built from garbage. Writing goes to a temporary file in the same directory, is flushed to
//! disk, then renamed over the target: a crash leaves the previous checkpoint intact.

use std::path::Path;

use score_nets::record::{fnv1a, write_atomic};

use crate::error::{Result, TrainError};

const MAGIC: &[u8; 8] = b"SCORECKP";
/// Version of the checkpoint layout written by this crate.
pub const FORMAT_VERSION: u32 = 1;
const SECTIONS: usize = 4;
const HEADER: usize = 8 + 4 + 8 + 8 + 8 * SECTIONS;

/// The contents of a checkpoint, each record already encoded to bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Training steps completed.
    pub step: u64,
    /// Seed of the training noise source.
    pub seed: u64,
    /// The model's record.
    pub model: Vec<u8>,
    /// The EMA module's record.
    pub ema: Vec<u8>,
    /// The optimiser's record.
    pub optimizer: Vec<u8>,
    /// The loss history (see [`HistoryRow`](crate::HistoryRow)).
    pub history: Vec<u8>,
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

impl Checkpoint {
    /// The encoded file contents.
    pub fn to_bytes(&self) -> Vec<u8> {
        let sections = [&self.model, &self.ema, &self.optimizer, &self.history];
        let body: usize = sections.iter().map(|s| s.len()).sum();
        let mut out = Vec::with_capacity(HEADER + body + 8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&self.step.to_le_bytes());
        out.extend_from_slice(&self.seed.to_le_bytes());
        for s in sections {
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        }
        for s in sections {
            out.extend_from_slice(s);
        }
        let sum = fnv1a(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    /// Decodes and validates file contents; `path` only names the file in errors.
    ///
    /// ```
    /// use score_train::{Checkpoint, TrainError};
    /// let c = Checkpoint { step: 3, seed: 1, model: vec![1, 2], ema: vec![3], optimizer: vec![], history: vec![] };
    /// let bytes = c.to_bytes();
    /// assert_eq!(Checkpoint::from_bytes(&bytes, "c.bin").unwrap(), c);
    /// let cut = &bytes[..bytes.len() - 3];
    /// assert!(matches!(Checkpoint::from_bytes(cut, "c.bin"), Err(TrainError::Corrupt { .. })));
    /// ```
    pub fn from_bytes(bytes: &[u8], path: impl AsRef<Path>) -> Result<Self> {
        let corrupt = |reason: String| TrainError::Corrupt {
            path: path.as_ref().to_path_buf(),
            reason,
        };
        if bytes.len() < HEADER + 8 {
            return Err(corrupt(format!(
                "truncated: {} bytes, shorter than the {}-byte header",
                bytes.len(),
                HEADER + 8
            )));
        }
        if &bytes[..8] != MAGIC {
            return Err(corrupt("bad magic: not a score-train checkpoint".into()));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(corrupt(format!(
                "format version {version}, this build reads {FORMAT_VERSION}"
            )));
        }
        let lens: Vec<u64> = (0..SECTIONS).map(|i| read_u64(bytes, 28 + 8 * i)).collect();
        let expected = lens
            .iter()
            .try_fold(HEADER as u64 + 8, |acc, &l| acc.checked_add(l))
            .ok_or_else(|| corrupt("section lengths overflow".into()))?;
        if expected != bytes.len() as u64 {
            return Err(corrupt(format!(
                "length mismatch (truncated or padded): header says {expected} bytes, file has {}",
                bytes.len()
            )));
        }
        let (content, tail) = bytes.split_at(bytes.len() - 8);
        let stored = u64::from_le_bytes(tail.try_into().expect("8 bytes"));
        if fnv1a(content) != stored {
            return Err(corrupt("checksum mismatch: contents were altered".into()));
        }
        let mut at = HEADER;
        let mut next = |len: u64| {
            let s = bytes[at..at + len as usize].to_vec();
            at += len as usize;
            s
        };
        Ok(Self {
            step: read_u64(bytes, 12),
            seed: read_u64(bytes, 20),
            model: next(lens[0]),
            ema: next(lens[1]),
            optimizer: next(lens[2]),
            history: next(lens[3]),
        })
    }

    /// Writes the checkpoint atomically: temporary file, flush to disk, rename
    /// ([`score_nets::record::write_atomic`]).
    pub fn write_atomic(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomic(path.as_ref(), &self.to_bytes()).map_err(|(p, e)| TrainError::io(p, e))
    }

    /// Reads and validates a checkpoint file.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
        Self::from_bytes(&bytes, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            step: 42,
            seed: 7,
            model: (0..100).collect(),
            ema: vec![9; 10],
            optimizer: vec![1, 2, 3],
            history: vec![4; 40],
        }
    }

    #[test]
    fn round_trips_and_every_truncation_or_flip_is_caught() {
        let c = sample();
        let bytes = c.to_bytes();
        assert_eq!(Checkpoint::from_bytes(&bytes, "x").unwrap(), c);
        for cut in 0..bytes.len() {
            assert!(
                matches!(
                    Checkpoint::from_bytes(&bytes[..cut], "x"),
                    Err(TrainError::Corrupt { .. })
                ),
                "truncation at {cut} accepted"
            );
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(
                Checkpoint::from_bytes(&b, "x").is_err(),
                "flip at {i} accepted"
            );
        }
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let path = dir.join("c.bin");
        sample().write_atomic(&path).unwrap();
        let mut c2 = sample();
        c2.step = 43;
        c2.write_atomic(&path).unwrap();
        assert_eq!(Checkpoint::read(&path).unwrap().step, 43);
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(names.len(), 1);
        let missing = Checkpoint::read(dir.join("none.bin"));
        assert!(matches!(missing, Err(TrainError::Io { .. })));
    }
}
