//! The IDX file format of MNIST (LeCun et al.), unsigned-byte type only: a reader for raw and
//! gzip files that checks the header before trusting any length, and an atomic writer.
//!
//! Layout: a big-endian `u32` magic number `0x0000_TTNN` (type code `TT`, here always `0x08` for
//! unsigned bytes; `NN` dimensions), then `NN` big-endian `u32` dimension sizes, then exactly
//! their product of bytes, row-major. MNIST images are `0x00000803` (`[n, 28, 28]`), labels
//! `0x00000801` (`[n]`).
//!
//! ```
//! use score_data::idx::{read_idx_u8, write_idx_u8};
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("x-idx2-ubyte");
//! write_idx_u8(&path, &[2, 3], &[1, 2, 3, 4, 5, 6]).unwrap();
//! let idx = read_idx_u8(&path).unwrap();
//! assert_eq!(idx.dims, [2, 3]);
//! assert_eq!(idx.data, [1, 2, 3, 4, 5, 6]);
//! ```

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::error::{DataError, Result};

/// The IDX type code of unsigned bytes.
pub const TYPE_U8: u8 = 0x08;

/// The two bytes that open every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The magic number of an unsigned-byte IDX file with `ndims` dimensions
/// (`0x00000801` for MNIST labels, `0x00000803` for MNIST images).
pub const fn magic_u8(ndims: u8) -> u32 {
    ((TYPE_U8 as u32) << 8) | ndims as u32
}

/// The contents of an unsigned-byte IDX file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxU8 {
    /// Dimension sizes, outermost first.
    pub dims: Vec<usize>,
    /// The values, row-major; `data.len()` is the product of `dims`.
    pub data: Vec<u8>,
}

impl IdxU8 {
    /// The magic number this file has (or would have when written).
    pub fn magic(&self) -> u32 {
        magic_u8(self.dims.len() as u8)
    }
}

/// Reads an unsigned-byte IDX file, raw or gzip-compressed (recognised by its magic `1f 8b` or a
/// `.gz` name), and checks its magic number, type code and that the data length is exactly the
/// product of the dimensions.
///
/// # Errors
///
/// Every error names `path`: [`DataError::MissingFile`], [`DataError::Io`],
/// [`DataError::CorruptGzip`], [`DataError::BadMagic`], [`DataError::UnsupportedType`],
/// [`DataError::Truncated`], [`DataError::TrailingBytes`], [`DataError::DimensionOverflow`].
pub fn read_idx_u8(path: &Path) -> Result<IdxU8> {
    let bytes = read_maybe_gz(path)?;
    parse_idx_u8(&bytes, path)
}

/// Reads an unsigned-byte IDX file like [`read_idx_u8`] and also checks it has `ndims`
/// dimensions (so the magic number is [`magic_u8`]`(ndims)`).
///
/// # Errors
///
/// Those of [`read_idx_u8`]; [`DataError::BadMagic`] on a different dimension count.
pub fn read_idx_u8_ndims(path: &Path, ndims: u8) -> Result<IdxU8> {
    let bytes = read_maybe_gz(path)?;
    // Check the magic before parsing dimensions, so a labels file passed as images reports
    // the magic rather than a length.
    if let Some(head) = bytes.get(..4) {
        let found = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        if head[2] == TYPE_U8 && head[..2] == [0, 0] && head[3] != ndims {
            return Err(DataError::BadMagic {
                path: path.to_path_buf(),
                expected: magic_u8(ndims),
                found,
            });
        }
    }
    parse_idx_u8(&bytes, path)
}

/// The bytes of `path`, gunzipped when it is gzip.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = fs::read(path).map_err(|source| io_error(path, source))?;
    let named_gz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    if !(raw.starts_with(&GZIP_MAGIC) || named_gz) {
        return Ok(raw);
    }
    // MNIST's uncompressed files are ~5× their gzip size; reserving that avoids regrowth.
    let mut out = Vec::with_capacity(raw.len().saturating_mul(5));
    MultiGzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .map_err(|source| DataError::CorruptGzip {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(out)
}

/// Maps an I/O error on `path`, turning "not found" into [`DataError::MissingFile`].
fn io_error(path: &Path, source: std::io::Error) -> DataError {
    if source.kind() == std::io::ErrorKind::NotFound {
        DataError::MissingFile {
            path: path.to_path_buf(),
            tried: vec![path.to_path_buf()],
        }
    } else {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Parses the bytes of an unsigned-byte IDX file; `path` only names the file in errors.
///
/// # Errors
///
/// [`DataError::BadMagic`], [`DataError::UnsupportedType`], [`DataError::Truncated`],
/// [`DataError::TrailingBytes`], [`DataError::DimensionOverflow`], each naming `path`.
pub fn parse_idx_u8(bytes: &[u8], path: &Path) -> Result<IdxU8> {
    let path_buf = || path.to_path_buf();
    let Some(head) = bytes.get(..4) else {
        return Err(DataError::Truncated {
            path: path_buf(),
            what: "header",
            expected: 4,
            found: bytes.len(),
        });
    };
    let magic = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let (type_code, ndims) = (head[2], head[3]);
    if head[..2] != [0, 0] || ndims == 0 {
        return Err(DataError::BadMagic {
            path: path_buf(),
            // The nearest valid magic: same type, at least one dimension.
            expected: magic_u8(ndims.max(1)),
            found: magic,
        });
    }
    if type_code != TYPE_U8 {
        return Err(DataError::UnsupportedType {
            path: path_buf(),
            found: type_code,
        });
    }
    let header_len = 4 + 4 * ndims as usize;
    let Some(dim_bytes) = bytes.get(4..header_len) else {
        return Err(DataError::Truncated {
            path: path_buf(),
            what: "dimension sizes",
            expected: header_len,
            found: bytes.len(),
        });
    };
    let dims: Vec<usize> = dim_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let Some(expected) = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) else {
        return Err(DataError::DimensionOverflow {
            path: path_buf(),
            dims,
        });
    };
    let payload = &bytes[header_len..];
    if payload.len() < expected {
        return Err(DataError::Truncated {
            path: path_buf(),
            what: "data",
            expected,
            found: payload.len(),
        });
    }
    if payload.len() > expected {
        return Err(DataError::TrailingBytes {
            path: path_buf(),
            expected,
            found: payload.len(),
        });
    }
    Ok(IdxU8 {
        dims,
        data: payload.to_vec(),
    })
}

/// Writes `data` with shape `dims` as a raw (uncompressed) unsigned-byte IDX file, MNIST's own
/// format, so any IDX reader can load it (e.g. generated samples as `[n, 28, 28]`).
///
/// The bytes go to a temporary file in the same directory, which is flushed to disk and then
/// renamed over `path`: a crash leaves either the old file or the new one, never half of one.
///
/// # Errors
///
/// [`DataError::UnsupportedShape`] for no dimensions, more than 255, or one above `u32::MAX`;
/// [`DataError::ShapeMismatch`] when `data.len()` is not the product of `dims`;
/// [`DataError::Io`] (naming the file) when writing fails; a missing parent directory is
/// [`DataError::MissingDirectory`].
pub fn write_idx_u8(path: &Path, dims: &[usize], data: &[u8]) -> Result<()> {
    let shape_err = |reason| DataError::UnsupportedShape {
        dims: dims.to_vec(),
        reason,
    };
    if dims.is_empty() {
        return Err(shape_err("IDX needs at least one dimension"));
    }
    let ndims =
        u8::try_from(dims.len()).map_err(|_| shape_err("IDX allows at most 255 dimensions"))?;
    let mut header = Vec::with_capacity(4 + 4 * dims.len());
    header.extend_from_slice(&magic_u8(ndims).to_be_bytes());
    for &d in dims {
        let d = u32::try_from(d).map_err(|_| shape_err("IDX dimension sizes are u32"))?;
        header.extend_from_slice(&d.to_be_bytes());
    }
    let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if expected != Some(data.len()) {
        return Err(DataError::ShapeMismatch {
            dims: dims.to_vec(),
            expected: expected.unwrap_or(usize::MAX),
            found: data.len(),
        });
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(DataError::MissingDirectory { path: parent });
    }
    let file_name = path
        .file_name()
        .map_or_else(|| "idx".into(), |n| n.to_string_lossy().into_owned());
    let tmp = parent.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&header)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|source| {
        // Best effort: the temporary file is useless once the write failed.
        let _ = fs::remove_file(&tmp);
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(magic: u32, dims: &[u32]) -> Vec<u8> {
        let mut b = magic.to_be_bytes().to_vec();
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b
    }

    #[test]
    fn parses_a_well_formed_file() {
        let mut b = header(0x0803, &[2, 1, 2]);
        b.extend_from_slice(&[1, 2, 3, 4]);
        let idx = parse_idx_u8(&b, Path::new("m")).unwrap();
        assert_eq!(idx.dims, [2, 1, 2]);
        assert_eq!(idx.data, [1, 2, 3, 4]);
        assert_eq!(idx.magic(), 0x0803);
    }

    #[test]
    fn short_headers_are_truncated_not_panics() {
        for n in 0..4 {
            let b = header(0x0803, &[2, 1, 2]);
            assert!(matches!(
                parse_idx_u8(&b[..n], Path::new("m")),
                Err(DataError::Truncated { what: "header", .. })
            ));
        }
        let b = header(0x0803, &[2, 1, 2]);
        assert!(matches!(
            parse_idx_u8(&b[..9], Path::new("m")),
            Err(DataError::Truncated {
                what: "dimension sizes",
                expected: 16,
                found: 9,
                ..
            })
        ));
    }

    #[test]
    fn other_type_codes_and_zero_dims_are_rejected() {
        let b = header(0x0D01, &[1]);
        assert!(matches!(
            parse_idx_u8(&b, Path::new("m")),
            Err(DataError::UnsupportedType { found: 0x0D, .. })
        ));
        let b = header(0x0800, &[]);
        assert!(matches!(
            parse_idx_u8(&b, Path::new("m")),
            Err(DataError::BadMagic { .. })
        ));
    }

    #[test]
    fn overflowing_dimensions_are_an_error() {
        let b = header(0x0803, &[u32::MAX, u32::MAX, u32::MAX]);
        assert!(matches!(
            parse_idx_u8(&b, Path::new("m")),
            Err(DataError::DimensionOverflow { .. })
        ));
    }
}
