//! MNIST (LeCun, Cortes & Burges): loading the four IDX files, scaling pixels to floats, and
//! burn's [`Dataset`] and [`Batcher`] over them.
//!
//! The repository ships the files in `data/mnist/`; [`default_dir`] finds them, or the directory
//! named by [`MNIST_DIR_ENV`].
//!
//! ```
//! use score_data::mnist::{default_dir, Mnist, Scaling, Split};
//! use burn::backend::NdArray;
//! let test = Mnist::load(&default_dir(), Split::Test).unwrap();
//! assert_eq!((test.len(), test.rows, test.cols), (10_000, 28, 28));
//! assert_eq!(&test.labels[..3], &[7, 2, 1]);
//! let x = test.batch_tensor::<NdArray>(&[0, 1], Scaling::MinusOneOne, &Default::default());
//! assert_eq!(x.dims(), [2, 1, 28, 28]);
//! ```

use std::path::{Path, PathBuf};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

use crate::error::{DataError, Result};
use crate::idx::read_idx_u8_ndims;

/// The environment variable naming a directory that holds the four MNIST files; it overrides the
/// repository's `data/mnist` in [`default_dir`].
pub const MNIST_DIR_ENV: &str = "SCORE_SDE_MNIST_DIR";

/// Number of MNIST classes (digits 0–9).
pub const CLASSES: u8 = 10;

/// The directory to load MNIST from: `$SCORE_SDE_MNIST_DIR` when set (and not empty), otherwise
/// the repository's `data/mnist`, found from this crate's manifest directory at compile time.
pub fn default_dir() -> PathBuf {
    match std::env::var_os(MNIST_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist"),
    }
}

/// Which half of MNIST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// The 60,000 training records (`train-*` files).
    Train,
    /// The 10,000 test records (`t10k-*` files).
    Test,
}

impl Split {
    /// The file-name prefix: `train` or `t10k`.
    pub const fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }

    /// The image file's name without a `.gz` suffix, e.g. `train-images-idx3-ubyte`.
    pub fn images_file(self) -> String {
        format!("{}-images-idx3-ubyte", self.prefix())
    }

    /// The label file's name without a `.gz` suffix, e.g. `train-labels-idx1-ubyte`.
    pub fn labels_file(self) -> String {
        format!("{}-labels-idx1-ubyte", self.prefix())
    }
}

/// How a pixel byte `p ∈ {0, …, 255}` becomes a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scaling {
    /// `p / 255`, in `[0, 1]`.
    #[default]
    ZeroOne,
    /// `2 p / 255 − 1`, in `[−1, 1]` (the data range of DDPM and score-SDE image models).
    MinusOneOne,
}

impl Scaling {
    /// The float of pixel byte `p`.
    #[inline]
    pub fn apply(self, p: u8) -> f32 {
        let x = p as f32 / 255.0;
        match self {
            Scaling::ZeroOne => x,
            Scaling::MinusOneOne => 2.0 * x - 1.0,
        }
    }

    /// The inverse of [`Scaling::apply`], for writing generated samples back as bytes: clamps to
    /// the scaling's range and rounds to the nearest byte (NaN becomes 0).
    #[inline]
    pub fn to_u8(self, x: f32) -> u8 {
        let x = match self {
            Scaling::ZeroOne => x,
            Scaling::MinusOneOne => (x + 1.0) * 0.5,
        };
        // `as` saturates and maps NaN to 0, so this is total.
        (x.clamp(0.0, 1.0) * 255.0).round() as u8
    }
}

/// An MNIST split in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mnist {
    /// The images, `len() × rows × cols` bytes, row-major (image, row, column).
    pub images: Vec<u8>,
    /// One label per image, each below 10.
    pub labels: Vec<u8>,
    /// Rows per image (28).
    pub rows: usize,
    /// Columns per image (28).
    pub cols: usize,
}

impl Mnist {
    /// Loads `split` from `dir`, reading `<dir>/{train,t10k}-images-idx3-ubyte` and
    /// `…-labels-idx1-ubyte`, each either raw or with a `.gz` suffix (the raw name wins when
    /// both exist). Checks both headers, that the counts agree and every label is a digit.
    ///
    /// # Errors
    ///
    /// [`DataError::MissingDirectory`], [`DataError::MissingFile`], any error of
    /// [`read_idx_u8`](crate::idx::read_idx_u8) (with [`DataError::BadMagic`] unless the images
    /// are `0x00000803` and the labels `0x00000801`), [`DataError::CountMismatch`],
    /// [`DataError::BadLabel`]; each names the file.
    pub fn load(dir: &Path, split: Split) -> Result<Mnist> {
        if !dir.is_dir() {
            return Err(DataError::MissingDirectory {
                path: dir.to_path_buf(),
            });
        }
        let images_path = find_file(dir, &split.images_file())?;
        let labels_path = find_file(dir, &split.labels_file())?;
        let images = read_idx_u8_ndims(&images_path, 3)?;
        let labels = read_idx_u8_ndims(&labels_path, 1)?;
        let (n, rows, cols) = (images.dims[0], images.dims[1], images.dims[2]);
        if n != labels.dims[0] {
            return Err(DataError::CountMismatch {
                images_path,
                images: n,
                labels_path,
                labels: labels.dims[0],
            });
        }
        if let Some((index, &label)) = labels.data.iter().enumerate().find(|(_, l)| **l >= CLASSES)
        {
            return Err(DataError::BadLabel {
                path: labels_path,
                index,
                label,
                classes: CLASSES,
            });
        }
        Ok(Mnist {
            images: images.data,
            labels: labels.data,
            rows,
            cols,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels per image (`rows × cols`).
    pub fn image_len(&self) -> usize {
        self.rows * self.cols
    }

    /// Image `i`, `rows × cols` bytes, row-major.
    ///
    /// # Panics
    ///
    /// If `i >= len()`; [`Mnist::get_image`] is the checked form.
    pub fn image(&self, i: usize) -> &[u8] {
        let m = self.image_len();
        &self.images[i * m..(i + 1) * m]
    }

    /// Image `i`, or `None` past the end.
    pub fn get_image(&self, i: usize) -> Option<&[u8]> {
        let m = self.image_len();
        (i < self.len()).then(|| &self.images[i * m..(i + 1) * m])
    }

    /// The records at `indices`, in that order (repeats allowed).
    ///
    /// # Errors
    ///
    /// [`DataError::IndexOutOfRange`] for the first index `>= len()`.
    pub fn subset(&self, indices: &[usize]) -> Result<Mnist> {
        self.check_indices(indices)?;
        let mut images = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        Ok(Mnist {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            rows: self.rows,
            cols: self.cols,
        })
    }

    /// Every image as floats under `scaling`, `len() × rows × cols`, row-major.
    pub fn to_f32(&self, scaling: Scaling) -> Vec<f32> {
        self.images.iter().map(|&p| scaling.apply(p)).collect()
    }

    /// The images at `indices` as a `[n, 1, rows, cols]` tensor under `scaling`.
    ///
    /// # Panics
    ///
    /// If an index is `>= len()`; [`Mnist::try_batch_tensor`] is the checked form.
    pub fn batch_tensor<B: Backend>(
        &self,
        indices: &[usize],
        scaling: Scaling,
        device: &B::Device,
    ) -> Tensor<B, 4> {
        match self.try_batch_tensor(indices, scaling, device) {
            Ok(x) => x,
            Err(e) => panic!("Mnist::batch_tensor: {e}"),
        }
    }

    /// The images at `indices` as a `[n, 1, rows, cols]` tensor under `scaling`.
    ///
    /// # Errors
    ///
    /// [`DataError::IndexOutOfRange`] for the first index `>= len()`.
    pub fn try_batch_tensor<B: Backend>(
        &self,
        indices: &[usize],
        scaling: Scaling,
        device: &B::Device,
    ) -> Result<Tensor<B, 4>> {
        self.check_indices(indices)?;
        let mut x = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            x.extend(self.image(i).iter().map(|&p| scaling.apply(p)));
        }
        let shape = [indices.len(), 1, self.rows, self.cols];
        Ok(Tensor::from_data(TensorData::new(x, shape), device))
    }

    /// The labels at `indices` as an integer tensor `[n]`.
    ///
    /// # Errors
    ///
    /// [`DataError::IndexOutOfRange`] for the first index `>= len()`.
    pub fn labels_tensor<B: Backend>(
        &self,
        indices: &[usize],
        device: &B::Device,
    ) -> Result<Tensor<B, 1, Int>> {
        self.check_indices(indices)?;
        let y: Vec<i64> = indices.iter().map(|&i| self.labels[i] as i64).collect();
        Ok(Tensor::from_data(
            TensorData::new(y, [indices.len()]),
            device,
        ))
    }

    fn check_indices(&self, indices: &[usize]) -> Result<()> {
        let len = self.len();
        match indices.iter().find(|&&i| i >= len) {
            Some(&index) => Err(DataError::IndexOutOfRange { index, len }),
            None => Ok(()),
        }
    }
}

/// `<dir>/<name>` if it exists, else `<dir>/<name>.gz`.
fn find_file(dir: &Path, name: &str) -> Result<PathBuf> {
    let raw = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    if raw.is_file() {
        Ok(raw)
    } else if gz.is_file() {
        Ok(gz)
    } else {
        Err(DataError::MissingFile {
            path: raw.clone(),
            tried: vec![raw, gz],
        })
    }
}

/// One MNIST record, as burn's [`Dataset`] hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MnistItem {
    /// The image, `rows × cols` bytes, row-major.
    pub image: Vec<u8>,
    /// The digit, 0–9.
    pub label: u8,
}

impl Dataset<MnistItem> for Mnist {
    fn get(&self, index: usize) -> Option<MnistItem> {
        Some(MnistItem {
            image: self.get_image(index)?.to_vec(),
            label: self.labels[index],
        })
    }

    fn len(&self) -> usize {
        Mnist::len(self)
    }
}

/// A batch of MNIST records on a device.
#[derive(Debug, Clone)]
pub struct MnistBatch<B: Backend> {
    /// Images `[n, 1, rows, cols]`, scaled by the batcher's [`Scaling`].
    pub images: Tensor<B, 4>,
    /// Digits `[n]`.
    pub labels: Tensor<B, 1, Int>,
}

/// burn's [`Batcher`] for [`MnistItem`]s: stacks images into `[n, 1, rows, cols]` under a
/// [`Scaling`], and labels into `[n]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MnistBatcher {
    /// How pixels become floats.
    pub scaling: Scaling,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
}

impl MnistBatcher {
    /// A batcher for 28×28 MNIST images under `scaling`.
    pub const fn new(scaling: Scaling) -> Self {
        Self {
            scaling,
            rows: 28,
            cols: 28,
        }
    }

    /// A batcher for the image size of `data`, under `scaling`.
    pub const fn for_data(data: &Mnist, scaling: Scaling) -> Self {
        Self {
            scaling,
            rows: data.rows,
            cols: data.cols,
        }
    }
}

impl<B: Backend> Batcher<B, MnistItem, MnistBatch<B>> for MnistBatcher {
    /// # Panics
    ///
    /// If an item's image is not `rows × cols` bytes (items from a [`Mnist`] of the same image
    /// size always are).
    fn batch(&self, items: Vec<MnistItem>, device: &B::Device) -> MnistBatch<B> {
        let m = self.rows * self.cols;
        let n = items.len();
        let mut x = Vec::with_capacity(n * m);
        let mut y = Vec::with_capacity(n);
        for (i, item) in items.iter().enumerate() {
            assert_eq!(
                item.image.len(),
                m,
                "MnistBatcher: item {i} has {} pixels, the batcher expects {}×{}",
                item.image.len(),
                self.rows,
                self.cols
            );
            x.extend(item.image.iter().map(|&p| self.scaling.apply(p)));
            y.push(item.label as i64);
        }
        MnistBatch {
            images: Tensor::from_data(TensorData::new(x, [n, 1, self.rows, self.cols]), device),
            labels: Tensor::from_data(TensorData::new(y, [n]), device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_round_trips_every_byte() {
        for s in [Scaling::ZeroOne, Scaling::MinusOneOne] {
            for p in 0..=255u8 {
                assert_eq!(s.to_u8(s.apply(p)), p);
            }
        }
        assert_eq!(Scaling::MinusOneOne.apply(0), -1.0);
        assert_eq!(Scaling::MinusOneOne.apply(255), 1.0);
        assert_eq!(Scaling::ZeroOne.to_u8(f32::NAN), 0);
        assert_eq!(Scaling::MinusOneOne.to_u8(7.0), 255);
    }

    #[test]
    fn subset_checks_indices() {
        let m = Mnist {
            images: (0..8).collect(),
            labels: vec![3, 4],
            rows: 2,
            cols: 2,
        };
        let s = m.subset(&[1, 1, 0]).unwrap();
        assert_eq!(s.labels, [4, 4, 3]);
        assert_eq!(s.image(2), &[0, 1, 2, 3]);
        assert!(matches!(
            m.subset(&[0, 2]),
            Err(DataError::IndexOutOfRange { index: 2, len: 2 })
        ));
        assert_eq!(m.get_image(2), None);
        assert_eq!(Dataset::<MnistItem>::get(&m, 2), None);
    }
}
