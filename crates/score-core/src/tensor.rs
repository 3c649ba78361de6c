//! Rank-generic tensor helpers: per-sample broadcasting, host ↔ device transfers in f64, and the
//! finiteness check that samplers and losses use. Written once so that no SDE or sampler hard-codes
//! the rank of its data (points `[n, d]` and images `[n, c, h, w]` go through the same code).

use burn::tensor::{Tensor, TensorData, backend::Backend, cast::ToElement};

use crate::error::{CoreError, Result};

/// Reshapes per-sample values `[n]` to `[n, 1, …, 1]` (rank `D`) so they broadcast over the data.
///
/// # Shapes
/// - input: `[n]`
/// - output: `[n, 1, …, 1]` with `D` dimensions
pub fn per_sample<B: Backend, const D: usize>(v: Tensor<B, 1>) -> Tensor<B, D> {
    let n = v.dims()[0];
    let mut shape = [1usize; D];
    shape[0] = n;
    v.reshape(shape)
}

/// Uploads host values (computed in f64) as a float tensor of the given shape.
pub fn from_f64<B: Backend, const D: usize>(
    values: &[f64],
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    let data: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// Reads a float tensor back to the host as f64 values (row-major).
pub fn to_f64<B: Backend, const D: usize>(x: Tensor<B, D>) -> Vec<f64> {
    x.into_data()
        .convert::<f64>()
        .into_vec::<f64>()
        .expect("a float tensor converts to f64")
}

/// `Tensor::cat(tensors, dim)`, safe beside `backward()` calls on other threads.
///
/// burn-autodiff 0.21.0's `cat` lets go of its inputs before it registers its own step, and a
/// `backward()` finishing on another thread in that window can free an input's step, so that
/// whatever the input came from (a parameter, typically) gets no gradient at all
/// (tracel-ai/burn#5573). Holding a second handle to each input until `cat` has returned closes
/// that window on every backend; the handles are reference counts, no data is copied. This
/// workspace also builds a patched burn-autodiff (`vendor/README.md`), but crates that depend on
/// these crates get the published one, so every concatenation in the library goes through here.
///
/// ```
/// use burn::backend::NdArray;
/// use burn::tensor::Tensor;
/// use score_core::tensor::cat;
///
/// let dev = Default::default();
/// let a = Tensor::<NdArray, 2>::ones([2, 1], &dev);
/// let b = Tensor::<NdArray, 2>::zeros([2, 2], &dev);
/// let c = cat(vec![a, b], 1);
/// assert_eq!(c.dims(), [2, 3]);
/// assert_eq!(c.sum().into_scalar(), 2.0);
/// ```
pub fn cat<B: Backend, const D: usize>(tensors: Vec<Tensor<B, D>>, dim: usize) -> Tensor<B, D> {
    let inputs_alive = tensors.clone();
    let out = Tensor::cat(tensors, dim);
    drop(inputs_alive);
    out
}

/// A `[n]` tensor whose entries all equal `t` (the common time of a batch).
pub fn full_time<B: Backend>(t: f64, n: usize, device: &B::Device) -> Tensor<B, 1> {
    Tensor::full([n], t as f32, device)
}

/// Number of values per sample: the product of all but the first dimension.
pub fn sample_numel(dims: &[usize]) -> usize {
    dims[1..].iter().product()
}

/// Whether every entry of `x` is finite (no NaN, no ±∞). Reads one boolean back to the host.
pub fn all_finite<B: Backend, const D: usize>(x: &Tensor<B, D>) -> bool {
    x.clone().is_finite().all().into_scalar().to_bool()
}

/// `Ok(())` when every entry of `x` is finite, else [`CoreError::NonFinite`] naming the step and
/// time at which the value appeared (for samplers and training loops).
pub fn ensure_finite<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    step: usize,
    t: f64,
) -> Result<()> {
    if all_finite(x) {
        Ok(())
    } else {
        Err(CoreError::NonFinite { step, t })
    }
}

/// Per-sample sum over all but the batch dimension.
///
/// # Shapes
/// - input: `[n, …]`
/// - output: `[n]`
pub fn sum_per_sample<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, 1> {
    let n = x.dims()[0];
    x.reshape([n as i32, -1]).sum_dim(1).reshape([n])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    #[test]
    fn per_sample_broadcasts_over_any_rank() {
        let dev = Default::default();
        let v = Tensor::<B, 1>::from_floats([1.0, 2.0], &dev);
        let img = Tensor::<B, 4>::ones([2, 3, 4, 5], &dev);
        let out = img * per_sample::<B, 4>(v.clone());
        assert_eq!(out.dims(), [2, 3, 4, 5]);
        let s = to_f64(sum_per_sample(out));
        assert_eq!(s, vec![60.0, 120.0]);
        let pts = Tensor::<B, 2>::ones([2, 3], &dev) * per_sample::<B, 2>(v);
        assert_eq!(to_f64(pts), vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
    }

    #[test]
    fn finiteness_check_sees_nan_and_inf() {
        let dev = Default::default();
        assert!(all_finite(&Tensor::<B, 2>::ones([2, 2], &dev)));
        let bad = Tensor::<B, 1>::from_floats([1.0, f32::NAN], &dev);
        assert!(!all_finite(&bad));
        let inf = Tensor::<B, 1>::from_floats([f32::INFINITY, 0.0], &dev);
        assert!(!all_finite(&inf));
        assert_eq!(
            ensure_finite(&inf, 7, 0.25),
            Err(CoreError::NonFinite { step: 7, t: 0.25 })
        );
        assert_eq!(
            ensure_finite(&Tensor::<B, 1>::zeros([3], &dev), 0, 1.0),
            Ok(())
        );
    }
}
