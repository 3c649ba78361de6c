//! # score-data
//!
//! Datasets for score-based generative models (work in progress: the MNIST IDX reader and the
//! toy 2-D sets land here).

#![warn(missing_docs)]
