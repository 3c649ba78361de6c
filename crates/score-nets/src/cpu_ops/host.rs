//! Moving tensors of a CPU backend to host `f32` vectors and back, and the forward convolution
//! on them.

use burn::tensor::{Tensor, TensorData, backend::Backend};

use super::conv::{ConvGeom, conv2d_forward};
use super::dense::{DenseGeom, DenseSaved, dense_forward};
use super::energy::{EnergySaved, MlpGeom, energy_score_forward};
use super::jvp::{JvpSaved, jvp_forward};
use super::norm::{NormGeom, NormStats, group_norm_forward};
use super::softmax::softmax_forward;

/// The tensor's values as a host vector (no copy on Flex when the tensor is contiguous and
/// not shared).
pub(super) fn to_host<P: Backend, const D: usize>(t: Tensor<P, D>) -> Vec<f32> {
    t.into_data()
        .into_vec::<f32>()
        .expect("the fast CPU path only runs on f32 tensors")
}

/// A tensor's values on the host: the tensor itself on Flex when it is contiguous (an `Arc`
/// clone, no copy, even when autodiff or a module shares it), a host copy otherwise.
pub(super) enum Values {
    /// A contiguous Flex tensor, read in place.
    #[cfg(feature = "flex")]
    Flex(burn_flex::FlexTensor),
    /// A host copy.
    Owned(Vec<f32>),
}

impl std::ops::Deref for Values {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match self {
            #[cfg(feature = "flex")]
            Values::Flex(t) => t
                .as_slice::<f32>()
                .expect("checked contiguous f32 in `values`"),
            Values::Owned(v) => v,
        }
    }
}

/// The tensor's values, without a copy where [`Values`] allows.
pub(super) fn values<P: Backend, const D: usize>(t: Tensor<P, D>) -> Values {
    #[cfg(feature = "flex")]
    if super::same::<P, burn::backend::Flex>() {
        let prim: burn_flex::FlexTensor = super::cast(t.clone().into_primitive().tensor());
        if prim.as_slice::<f32>().is_some() {
            return Values::Flex(prim);
        }
    }
    Values::Owned(to_host(t))
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
    let y = conv2d_forward(&g, &values(x), &values(w), b.map(values).as_deref());
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
        &values(x),
        &values(shift),
        &values(gamma),
        &values(beta),
    );
    (from_host(y, shape, &dev), stats)
}

/// `act(x·W + b)` on the host, for a CPU backend `P`, with what its backward needs when `save`.
pub(super) fn dense<P: Backend>(
    g: DenseGeom,
    x: Tensor<P, 2>,
    w: Tensor<P, 2>,
    b: Option<Tensor<P, 1>>,
    save: bool,
) -> (Tensor<P, 2>, DenseSaved) {
    let dev = x.device();
    let (x, w, b) = (values(x), values(w), b.map(values));
    let (y, saved) = dense_forward(&g, &x, &w, b.as_deref(), save);
    (from_host(y, [g.n, g.m], &dev), saved)
}

/// `[cos a | sin a]` (or `[sin a | cos a]`) with `a[i, j] = (t[i]·scale)·freqs[j]`, in `f32` as
/// burn's `mul_scalar` and `mul` round it, for a CPU backend `P`.
pub(super) fn sin_cos_features<P: Backend>(
    t: Tensor<P, 1>,
    scale: f64,
    freqs: Tensor<P, 1>,
    cos_first: bool,
) -> Tensor<P, 2> {
    let dev = t.device();
    let (t, f) = (to_host(t), to_host(freqs));
    let (n, half) = (t.len(), f.len());
    let scale = scale as f32;
    // `move` and inlined into the SIMD (AVX-512F or AVX2) copy, so that the inner loop
    // vectorises.
    let out = super::vmath::with_simd(
        #[inline(always)]
        move || {
            let mut out = vec![0.0f32; n * 2 * half];
            for (row, &ti) in out.chunks_exact_mut((2 * half).max(1)).zip(&t) {
                let (first, second) = row.split_at_mut(half);
                let (cos, sin) = if cos_first {
                    (first, second)
                } else {
                    (second, first)
                };
                let ts = ti * scale;
                for ((c, s), &fj) in cos.iter_mut().zip(sin.iter_mut()).zip(&f) {
                    (*s, *c) = super::vmath::sin_cos(ts * fj);
                }
            }
            out
        },
    );
    from_host(out, [n, 2 * half], &dev)
}

/// The parameters of an energy MLP on a CPU backend `P`: hidden weights and biases, output
/// weight (`[width_L, 1]`).
pub(super) struct EnergyParams<P: Backend> {
    pub(super) weights: Vec<Tensor<P, 2>>,
    pub(super) biases: Vec<Tensor<P, 1>>,
    pub(super) w_out: Tensor<P, 2>,
}

/// `−∇x E(x)` of an energy MLP on the host ([`super::energy`]), for a CPU backend `P`, with what
/// its backward needs when `save`.
pub(super) fn energy_score<P: Backend>(
    g: &MlpGeom,
    x: Tensor<P, 2>,
    params: EnergyParams<P>,
    save: bool,
) -> (Tensor<P, 2>, EnergySaved) {
    let dev = x.device();
    let ws: Vec<Values> = params.weights.into_iter().map(values).collect();
    let bs: Vec<Values> = params.biases.into_iter().map(values).collect();
    let w_out = values(params.w_out);
    let wr: Vec<&[f32]> = ws.iter().map(|v| &**v).collect();
    let br: Vec<&[f32]> = bs.iter().map(|v| &**v).collect();
    let (s, saved) = energy_score_forward(g, &values(x), &wr, &br, &w_out, save);
    (from_host(s, [g.n, g.x_cols], &dev), saved)
}

/// The parameters of an MLP with an output layer on a CPU backend `P`.
pub(super) struct MlpParams<P: Backend> {
    pub(super) weights: Vec<Tensor<P, 2>>,
    pub(super) biases: Vec<Tensor<P, 1>>,
    pub(super) w_out: Tensor<P, 2>,
    pub(super) b_out: Tensor<P, 1>,
}

/// `[y | q]` (`[n, x_cols + 1]`) of [`super::jvp`] on the host, for a CPU backend `P`, with what
/// its backward needs when `save`.
pub(super) fn output_and_quadratic_form<P: Backend>(
    g: &MlpGeom,
    h0: Tensor<P, 2>,
    v: &[f32],
    params: MlpParams<P>,
    save: bool,
) -> (Tensor<P, 2>, JvpSaved) {
    let dev = h0.device();
    let ws: Vec<Values> = params.weights.into_iter().map(values).collect();
    let bs: Vec<Values> = params.biases.into_iter().map(values).collect();
    let (wo, bo) = (values(params.w_out), values(params.b_out));
    let wr: Vec<&[f32]> = ws.iter().map(|v| &**v).collect();
    let br: Vec<&[f32]> = bs.iter().map(|v| &**v).collect();
    let (y, q, saved) = jvp_forward(g, &values(h0), v, &wr, &br, &wo, &bo, save);
    let xc = g.x_cols;
    let mut out = Vec::with_capacity(g.n * (xc + 1));
    for (row, qv) in y.chunks_exact(xc).zip(q) {
        out.extend_from_slice(row);
        out.push(qv);
    }
    (from_host(out, [g.n, xc + 1], &dev), saved)
}

/// `softmax(scale · x)` over the last axis on the host, for a CPU backend `P`.
pub(super) fn softmax<P: Backend>(x: Tensor<P, 3>, scale: f32) -> Tensor<P, 3> {
    let dev = x.device();
    let shape = x.dims();
    let y = softmax_forward(&values(x), shape[2], scale);
    from_host(y, shape, &dev)
}
