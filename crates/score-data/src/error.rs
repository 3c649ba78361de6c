//! The crate's typed errors: every variant that comes from a file names the file, and every
//! variant that comes from a check carries the value expected and the value found.

use std::path::PathBuf;

/// Result with [`DataError`].
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// What went wrong while reading, checking or writing data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The directory that should hold a data set does not exist (or is not a directory).
    #[error("data directory {} does not exist or is not a directory", path.display())]
    MissingDirectory {
        /// The directory looked for.
        path: PathBuf,
    },

    /// A file that should exist does not; `path` is the first name tried, `tried` every name.
    #[error(
        "data file {} not found (tried {})",
        path.display(),
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    MissingFile {
        /// The file looked for.
        path: PathBuf,
        /// Every name tried (e.g. the raw and the `.gz` name).
        tried: Vec<PathBuf>,
    },

    /// An I/O error other than a missing file, while reading or writing `path`.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The file looks gzip-compressed (magic `1f 8b` or a `.gz` name) but does not decode.
    #[error("corrupt gzip stream in {}: {source}", path.display())]
    CorruptGzip {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: std::io::Error,
    },

    /// The file is shorter than its header says (or shorter than a header).
    #[error(
        "truncated IDX file {}: {what} needs {expected} bytes, found {found}",
        path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// What was being read (`"header"`, `"dimension sizes"`, `"data"`).
        what: &'static str,
        /// Bytes needed.
        expected: usize,
        /// Bytes present.
        found: usize,
    },

    /// The file is longer than its header says.
    #[error(
        "IDX file {} has trailing bytes: header says {expected} data bytes, found {found}",
        path.display()
    )]
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// Data bytes the header promises.
        expected: usize,
        /// Data bytes present.
        found: usize,
    },

    /// The magic number is not the one expected (first two bytes not zero, or the wrong
    /// dimension count for what is being read).
    #[error("bad IDX magic number in {}: expected {expected:#010x}, found {found:#010x}", path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The magic number wanted (e.g. `0x00000803` for MNIST images).
        expected: u32,
        /// The magic number read.
        found: u32,
    },

    /// The IDX type code is not `0x08` (unsigned byte), the only type this reader supports.
    #[error(
        "unsupported IDX type code in {}: expected 0x08 (unsigned byte), found {found:#04x}",
        path.display()
    )]
    UnsupportedType {
        /// The file.
        path: PathBuf,
        /// The type code read.
        found: u8,
    },

    /// The product of the dimension sizes does not fit in memory (`usize` overflow).
    #[error("IDX dimensions {dims:?} in {} overflow usize", path.display())]
    DimensionOverflow {
        /// The file.
        path: PathBuf,
        /// The dimension sizes read.
        dims: Vec<usize>,
    },

    /// An image file and its label file disagree on the number of records.
    #[error(
        "count mismatch: {} holds {images} images but {} holds {labels} labels",
        images_path.display(),
        labels_path.display()
    )]
    CountMismatch {
        /// The image file.
        images_path: PathBuf,
        /// Number of images.
        images: usize,
        /// The label file.
        labels_path: PathBuf,
        /// Number of labels.
        labels: usize,
    },

    /// A label is outside the classes of the data set.
    #[error("label {label} at index {index} in {} is not below {classes}", path.display())]
    BadLabel {
        /// The label file.
        path: PathBuf,
        /// Record index.
        index: usize,
        /// The label read.
        label: u8,
        /// Number of classes.
        classes: u8,
    },

    /// A record index past the end of a data set.
    #[error("index {index} out of range for a data set of {len} records")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// Number of records.
        len: usize,
    },

    /// Data whose length does not match the shape given for it (e.g. to the IDX writer).
    #[error("shape mismatch: dimensions {dims:?} need {expected} values, found {found}")]
    ShapeMismatch {
        /// The dimensions given.
        dims: Vec<usize>,
        /// Values they need.
        expected: usize,
        /// Values given.
        found: usize,
    },

    /// Dimensions the IDX format cannot encode (none, more than 255, or one above `u32::MAX`).
    #[error("IDX cannot encode dimensions {dims:?}: {reason}")]
    UnsupportedShape {
        /// The dimensions given.
        dims: Vec<usize>,
        /// Why not.
        reason: &'static str,
    },

    /// A parameter outside its valid range (e.g. a negative noise level).
    #[error("invalid parameter {name} = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// Value given.
        value: f64,
        /// What it must satisfy.
        reason: &'static str,
    },
}
