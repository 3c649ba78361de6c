//! Moving tensors of a CPU backend to host `f32` vectors and back, and the forward convolution
//! on them.

use burn::tensor::{Tensor, TensorData, backend::Backend};

use super::conv::{ConvGeom, conv2d_forward};
use super::norm::{NormGeom, NormStats, group_norm_forward};

/// The tensor's values as a host vector (no copy on Flex when the tensor is contiguous and
/// not shared).
pub(super) fn to_host<P: Backend, const D: usize>(t: Tensor<P, D>) -> Vec<f32> {
    t.into_data()
        .into_vec::<f32>()
        .expect("the fast CPU path only runs on f32 tensors")
}

/// A tensor of `P` from a host vector.
pub(super) fn from_host<P: Backend, const D: usize>(
    v: Vec<f32>,
    shape: [usize; D],
    dev: &P::Device,
) -> Tensor<P, D> {
    Tensor::from_data(TensorData::new(v, shape), dev)
}

/// `conv2d(x, w) + b` on the host, for a CPU backend `P`.
pub(super) fn conv2d<P: Backend>(
    g: ConvGeom,
    x: Tensor<P, 4>,
    w: Tensor<P, 4>,
    b: Option<Tensor<P, 1>>,
) -> Tensor<P, 4> {
    let dev = x.device();
    let y = conv2d_forward(&g, &to_host(x), &to_host(w), b.map(to_host).as_deref());
    from_host(y, [g.n, g.co, g.oh(), g.ow()], &dev)
}

/// The fused GroupNorm of [`super::norm`] on the host, for a CPU backend `P`, with the
/// statistics it used.
pub(super) fn group_norm<P: Backend>(
    g: NormGeom,
    x: Tensor<P, 4>,
    shift: Tensor<P, 2>,
    gamma: Tensor<P, 1>,
    beta: Tensor<P, 1>,
) -> (Tensor<P, 4>, NormStats) {
    let dev = x.device();
    let shape = x.dims();
    let (y, stats) = group_norm_forward(
        &g,
        &to_host(x),
        &to_host(shift),
        &to_host(gamma),
        &to_host(beta),
    );
    (from_host(y, shape, &dev), stats)
}
