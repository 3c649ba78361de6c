//! # score-data
//!
//! Data for score-based generative models:
//!
//! - [`idx`]: the IDX format of MNIST — a reader for raw and gzip files that checks every header
//!   fact before trusting a length, and an atomic writer (for generated samples);
//! - [`mnist`]: the MNIST splits ([`Mnist`]), pixel [`Scaling`], burn's `Dataset` and `Batcher`
//!   ([`MnistBatcher`]); the repository ships the files in `data/mnist/` (CC BY-SA 3.0, see its
//!   README);
//! - [`toy`]: the 2-D sets of the score-matching literature — two moons, swiss roll, concentric
//!   rings, the ring of eight Gaussians and a three-Gaussian mixture;
//! - [`shuffle`]: seeded, resumable epoch orders;
//! - [`error`]: [`DataError`], whose variants name the file and the values expected and found.
//!
//! ```
//! use score_data::mnist::{default_dir, Mnist, Scaling, Split};
//! let test = Mnist::load(&default_dir(), Split::Test).unwrap();
//! assert_eq!(test.len(), 10_000);
//! assert_eq!(test.image(0).len(), 28 * 28);
//! let order = score_data::shuffled_indices(test.len(), 0, 0);
//! let batch = test.subset(&order[..64]).unwrap();
//! assert_eq!(batch.to_f32(Scaling::MinusOneOne).len(), 64 * 784);
//! ```

#![warn(missing_docs)]

pub mod error;
pub mod idx;
pub mod mnist;
pub mod shuffle;
pub mod toy;

pub use error::{DataError, Result};
pub use idx::{IdxU8, read_idx_u8, write_idx_u8};
pub use mnist::{Mnist, MnistBatch, MnistBatcher, MnistItem, Scaling, Split};
pub use shuffle::{shuffled_indices, shuffled_indices_from};
