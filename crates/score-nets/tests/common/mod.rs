//! Helpers shared by the fast-CPU-kernel tests (`cpu_conv.rs`, `cpu_norm.rs`, `cpu_dense.rs`,
//! `cpu_energy.rs`, `cpu_jvp.rs`, `cpu_softmax.rs`).

use burn::backend::Autodiff;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::AutodiffBackend;
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

/// Every parameter's gradient in `grads`, in visiting order (`None` where it has none).
#[allow(dead_code)] // used by the second-order tests only
pub fn param_grads<B: Backend, M: Module<Autodiff<B>>>(
    model: &M,
    grads: &<Autodiff<B> as AutodiffBackend>::Gradients,
) -> Vec<Option<Vec<f32>>> {
    struct Collect<'a, B: Backend>(
        &'a <Autodiff<B> as AutodiffBackend>::Gradients,
        Vec<Option<Vec<f32>>>,
    );
    impl<B: Backend> ModuleVisitor<Autodiff<B>> for Collect<'_, B> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<Autodiff<B>, D>>) {
            let g = p
                .grad(self.0)
                .map(|g| g.into_data().to_vec::<f32>().unwrap());
            self.1.push(g);
        }
    }
    let mut c = Collect::<B>(grads, Vec::new());
    model.visit(&mut c);
    c.1
}
