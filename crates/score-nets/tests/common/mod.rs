//! Helpers shared by the fast-CPU-kernel tests (`cpu_conv.rs`, `cpu_norm.rs`).

use burn::tensor::{Tensor, backend::Backend};

/// A fixed pseudo-random vector in [−1, 1] (xorshift; no global RNG).
pub fn values(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Largest absolute difference of two tensors, and the largest magnitude of the second.
pub fn max_abs_diff<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> (f32, f32) {
    let a = a.into_data().to_vec::<f32>().unwrap();
    let b = b.into_data().to_vec::<f32>().unwrap();
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    let scale = b.iter().map(|y| y.abs()).fold(0.0f32, f32::max);
    (diff, scale)
}

/// Both sides are f32 with differently ordered sums: a few ulps of the largest value.
pub fn assert_close<B: Backend, const D: usize>(what: &str, a: Tensor<B, D>, b: Tensor<B, D>) {
    let (diff, scale) = max_abs_diff(a, b);
    assert!(
        diff <= 1e-5 * (1.0 + scale),
        "{what}: max |fast − reference| = {diff} (scale {scale})"
    );
}
