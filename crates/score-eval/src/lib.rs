//! # score-eval
//!
//! Sample-quality metrics for score-based generative models.

#![warn(missing_docs)]
