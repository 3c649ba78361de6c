//! Fast CPU kernels for the U-Net, chosen at run time inside score-nets.
//!
//! burn 0.21's CPU convolutions are slow on the U-Net's shapes, and its default convolution
//! backward computes the weight gradient as another convolution with the batch as channels.
//! This module computes a 2-D convolution as im2col + GEMM (the `gemm` crate that burn-flex
//! uses) with the two GEMM backwards, on host `f32` slices ([`conv`]), and registers it as an
//! op with its own backward on `Autodiff<P>` (burn's backend-extension pattern).
//!
//! [`conv2d`] takes burn's [`Conv2d`] module — the parameters, and so the record format, stay
//! burn's — and picks the fast path when the backend is one of the CPU backends compiled in
//! (`Flex`, `NdArray<f32>`, and `Autodiff` of each, with the crate features `flex` /
//! `ndarray`), the tensors are `f32`, the padding explicit or valid, and dilation and groups
//! are one. Every other case (wgpu, CUDA, nested autodiff, f64, …) runs burn's `Conv2d::forward`
//! unchanged, so no bound leaks into users' code.
//!
//! [`group_norm`] does the same for burn's [`GroupNorm`], fused with the per-channel shift before
//! it and the SiLU after it that the U-Net's residual blocks use.
//!
//! [`cat_channels`] concatenates two NCHW tensors along the channels with a backward that hands
//! each input a contiguous gradient of its own (burn's `cat` hands out strided views).
//!
//! [`scaled_softmax`] computes attention weights, `softmax(scale · x)` over the last axis, in
//! one pass a row each way ([`softmax`](mod@softmax)) where burn composes six ops.
//!
//! [`dense()`] does it for a dense layer on burn's [`Linear`] parameters with its activation
//! (`act(x·W + b)`, SiLU, tanh or none): the layers of the MLPs and of the time embeddings.
//! [`sin_cos_features`] computes the sinusoidal and Fourier time features with a vectorised
//! sine and cosine ([`vmath`]) where the C library's are scalar calls.
//!
//! [`adam_update`] runs Adam's update of one parameter as one host pass, for an optimiser to
//! call on the CPU backends (score-train's trainer does).
//!
//! The dense layer's backward is first-order only; a second-order loss that differentiates the
//! network on `Autodiff<Autodiff<P>>`, which is not one of the backends above, keeps burn's
//! twice-differentiable ops. Two second-order quantities have their own host ops instead, whose
//! backward is the hand-derived second derivative, so no nesting is needed:
//! [`energy_mlp_score`] (the score `−∇x E` of an energy MLP, for denoising score matching of
//! energy networks) and [`mlp_output_and_quadratic_form`] (an MLP's output with `vᵀ(∂f/∂x)v`,
//! for explicit and sliced score matching).
//!
//! The kernels are deterministic for a given thread count: work is split over fixed chunks of
//! the batch and reductions sum their partials in a fixed order.

pub mod adam;
pub mod conv;
pub mod dense;
pub mod energy;
pub mod jvp;
pub mod norm;
pub mod softmax;
pub mod vmath;
mod winograd;

/// An output buffer of `len` values for a kernel that writes every one of them before
/// [`written`] hands the buffer on: unlike `vec![0.0; len]`, nothing zeroes it first (the C
/// library's `calloc` zeroed such buffers with a `memset` that was 4 % of the MNIST U-Net's
/// forward pass).
fn output_buffer(len: usize) -> Vec<std::mem::MaybeUninit<f32>> {
    let mut v = Vec::with_capacity(len);
    v.resize_with(len, std::mem::MaybeUninit::uninit);
    v
}

/// The values of an [`output_buffer`], as the `Vec<f32>` it was allocated for.
///
/// # Safety
///
/// Every element of `v` has been written.
unsafe fn written(v: Vec<std::mem::MaybeUninit<f32>>) -> Vec<f32> {
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: `MaybeUninit<f32>` has the size and alignment of `f32`, the caller vouches that
    // every element is initialised, and the allocation is handed over whole (pointer, length
    // and capacity), never to be freed through `v`.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<f32>(), v.len(), v.capacity()) }
}

/// A part of an [`output_buffer`] as the `f32`s it now holds, for a kernel that reads back what
/// it wrote.
///
/// # Safety
///
/// Every element of `s` has been written.
unsafe fn assume_written(s: &mut [std::mem::MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: same layout, and the caller vouches that every element is initialised.
    unsafe { &mut *(s as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) }
}

/// Fixed pseudo-random test values shared by the kernels' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    /// `len` values in `[−scale, scale]` from a small LCG seeded by `seed` (no global RNG).
    pub(crate) fn values(len: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
            })
            .collect()
    }

    /// The MLP shapes the second-order kernels are tested on, for each activation: batch 1 and
    /// width 1, two and three layers, and an input with a condition column beside `x`.
    pub(crate) fn geometries() -> Vec<super::MlpGeom> {
        use super::dense::DenseAct;
        let mut out = Vec::new();
        for act in [DenseAct::Silu, DenseAct::Tanh, DenseAct::Identity] {
            for (n, d, x_cols, widths) in [
                (1, 1, 1, vec![1]),
                (5, 2, 2, vec![7, 4]),
                (6, 3, 3, vec![6, 5, 8]),
                (4, 3, 2, vec![5, 3]),
            ] {
                out.push(super::MlpGeom {
                    n,
                    d,
                    x_cols,
                    widths,
                    act,
                });
            }
        }
        out
    }

    /// `[h₀, W₁, b₁, …, W_L, b_L, W_o]` for `g` with an output layer `out` wide (and `b_o`
    /// when `out_bias`), fixed values.
    pub(crate) fn mlp_params(g: &super::MlpGeom, out: usize, out_bias: bool) -> Vec<Vec<f32>> {
        let mut p = vec![values(g.n * g.d, 1, 1.5)];
        for (k, &m) in g.widths.iter().enumerate() {
            p.push(values(g.fan_in(k) * m, 10 + k as u64, 0.9));
            p.push(values(m, 20 + k as u64, 0.5));
        }
        p.push(values(g.widths[g.widths.len() - 1] * out, 30, 0.9));
        if out_bias {
            p.push(values(out, 31, 0.5));
        }
        p
    }

    /// Asserts that `got[i]` is the gradient of `objective` in `p[i]`, by central differences
    /// of step 1e-4 in f64 (truncation O(h²) ≈ 1e-8, so `bound` is the f32 kernels' rounding).
    pub(crate) fn assert_gradients(
        what: &str,
        got: &[Vec<f32>],
        p: &[Vec<f64>],
        objective: impl Fn(&[Vec<f64>]) -> f64,
        bound: f64,
    ) {
        let h = 1e-4;
        assert_eq!(got.len(), p.len(), "{what}: gradients");
        for (which, gv) in got.iter().enumerate() {
            assert_eq!(gv.len(), p[which].len(), "{what}: gradient {which}");
            for (idx, &gval) in gv.iter().enumerate() {
                let (mut up, mut down) = (p.to_vec(), p.to_vec());
                up[which][idx] += h;
                down[which][idx] -= h;
                let fd = (objective(&up) - objective(&down)) / (2.0 * h);
                assert!(
                    (gval as f64 - fd).abs() < bound * (1.0 + fd.abs()),
                    "{what}: gradient {which}[{idx}] = {gval}, central difference {fd}"
                );
            }
        }
    }

    /// `f32` values as `f64`.
    pub(crate) fn f64s(a: &[f32]) -> Vec<f64> {
        a.iter().map(|&b| b as f64).collect()
    }
}

#[cfg(any(feature = "flex", feature = "ndarray"))]
mod autodiff;
#[cfg(any(feature = "flex", feature = "ndarray"))]
mod host;

use std::cell::Cell;

use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear, PaddingConfig2d};
use burn::tensor::{DType, Tensor, activation, backend::Backend};

use conv::ConvGeom;
use dense::{DenseAct, DenseGeom};
use energy::MlpGeom;
use norm::NormGeom;

thread_local! {
    static REFERENCE_ONLY: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the fast CPU path switched off on this thread, so that every op in it is
/// burn's own: the reference the fast path is tested against. Nested calls are fine.
pub fn with_reference_ops<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            REFERENCE_ONLY.with(|r| r.set(self.0));
        }
    }
    let _restore = Restore(REFERENCE_ONLY.with(|r| r.replace(true)));
    f()
}

/// Whether the fast path may be used on this thread (it is, outside [`with_reference_ops`]).
pub fn fast_ops_enabled() -> bool {
    !REFERENCE_ONLY.with(Cell::get)
}

/// The geometry of `conv` applied to `x`, where the host kernels can compute it.
fn geometry<B: Backend>(conv: &Conv2d<B>, x: &Tensor<B, 4>) -> Option<ConvGeom> {
    if conv.dilation != [1, 1] || conv.groups != 1 || x.dtype() != DType::F32 {
        return None;
    }
    let w = conv.weight.val();
    if w.dtype() != DType::F32 {
        return None;
    }
    let [n, ci, h, wd] = x.dims();
    let [co, wci, kh, kw] = w.dims();
    let (pt, pl, pb, pr) = match conv.padding {
        PaddingConfig2d::Valid => (0, 0, 0, 0),
        PaddingConfig2d::Explicit(t, l, b, r) => (t, l, b, r),
        PaddingConfig2d::Same => return None,
    };
    let g = ConvGeom {
        n,
        ci,
        h,
        w: wd,
        co,
        kh,
        kw,
        sh: conv.stride[0],
        sw: conv.stride[1],
        pt,
        pl,
        pb,
        pr,
    };
    (wci == ci && g.is_valid()).then_some(g)
}

#[cfg(any(feature = "flex", feature = "ndarray"))]
fn same<B: 'static, P: 'static>() -> bool {
    std::any::TypeId::of::<B>() == std::any::TypeId::of::<P>()
}

/// `T` as `U`, where the caller has checked with [`same`] that they are one type.
#[cfg(any(feature = "flex", feature = "ndarray"))]
fn cast<T: 'static, U: 'static>(t: T) -> U {
    let any: Box<dyn std::any::Any> = Box::new(t);
    *any.downcast::<U>().expect("cast between identical types")
}

/// Runs the host convolution if `B` is the CPU backend `P` or `Autodiff<P>`; otherwise gives
/// the input back.
#[cfg(any(feature = "flex", feature = "ndarray"))]
fn try_backend<B: Backend, P: Backend>(
    g: ConvGeom,
    conv: &Conv2d<B>,
    x: Tensor<B, 4>,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    use burn::backend::Autodiff;
    let w = || conv.weight.val();
    let b = || conv.bias.as_ref().map(|b| b.val());
    if same::<B, P>() {
        Ok(cast(host::conv2d::<P>(
            g,
            cast(x),
            cast(w()),
            b().map(cast),
        )))
    } else if same::<B, Autodiff<P>>() {
        let dev = x.device();
        let b = b().unwrap_or_else(|| Tensor::zeros([g.co], &dev));
        Ok(cast(autodiff::conv2d::<P>(g, cast(x), cast(w()), cast(b))))
    } else {
        Err(x)
    }
}

/// `conv.forward(x)`, on the host kernels of [`conv`] where the backend and the convolution
/// allow it (see the [module documentation](self)), otherwise burn's own op.
///
/// # Shapes
/// - `x`: `[n, in_channels, h, w]`; output `[n, out_channels, h', w']` as burn's `Conv2d`.
pub fn conv2d<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    if !fast_ops_enabled() {
        return conv.forward(x);
    }
    let Some(g) = geometry(conv, &x) else {
        return conv.forward(x);
    };
    #[cfg(feature = "flex")]
    let x = match try_backend::<B, burn::backend::Flex>(g, conv, x) {
        Ok(y) => return y,
        Err(x) => x,
    };
    #[cfg(feature = "ndarray")]
    let x = match try_backend::<B, burn::backend::NdArray<f32>>(g, conv, x) {
        Ok(y) => return y,
        Err(x) => x,
    };
    let _ = g;
    conv.forward(x)
}

/// `Tensor::cat(vec![a, b], 1)` for two NCHW tensors (the U-Net's skip concatenation). On
/// `Autodiff` of the CPU backends it is an op whose backward gives each input a contiguous
/// gradient of its own, where burn's `cat` gives strided views of the output's gradient, which
/// Flex then adds to the input's other gradients element by element (4 % of the MNIST U-Net's
/// train step). Every other backend, and `f64`, runs burn's `cat`.
///
/// # Shapes
/// - `a`: `[n, ca, h, w]`, `b`: `[n, cb, h, w]`; output `[n, ca + cb, h, w]`.
pub fn cat_channels<B: Backend>(a: Tensor<B, 4>, b: Tensor<B, 4>) -> Tensor<B, 4> {
    #[cfg(any(feature = "flex", feature = "ndarray"))]
    {
        let [n, _, h, w] = a.dims();
        let [nb, _, hb, wb] = b.dims();
        let fits = fast_ops_enabled()
            && (n, h, w) == (nb, hb, wb)
            && a.dtype() == DType::F32
            && b.dtype() == DType::F32;
        if fits {
            use burn::backend::Autodiff;
            #[cfg(feature = "flex")]
            if same::<B, Autodiff<burn::backend::Flex>>() {
                return cast(autodiff::cat_channels::<burn::backend::Flex>(
                    cast(a),
                    cast(b),
                ));
            }
            #[cfg(feature = "ndarray")]
            if same::<B, Autodiff<burn::backend::NdArray<f32>>>() {
                return cast(autodiff::cat_channels::<burn::backend::NdArray<f32>>(
                    cast(a),
                    cast(b),
                ));
            }
        }
    }
    score_core::tensor::cat(vec![a, b], 1)
}

/// The geometry of the fused norm of `norm` on `x`, where the host kernels can compute it.
fn norm_geometry<B: Backend>(
    norm: &GroupNorm<B>,
    x: &Tensor<B, 4>,
    shift: Option<&Tensor<B, 2>>,
    silu: bool,
) -> Option<NormGeom> {
    let [n, c, h, w] = x.dims();
    let (gamma, beta) = (norm.gamma.as_ref()?, norm.beta.as_ref()?);
    let f32s = x.dtype() == DType::F32
        && gamma.val().dtype() == DType::F32
        && beta.val().dtype() == DType::F32
        && shift.is_none_or(|s| s.dtype() == DType::F32 && s.dims() == [n, c]);
    let g = NormGeom {
        n,
        c,
        hw: h * w,
        groups: norm.num_groups,
        eps: norm.epsilon as f32,
        silu,
    };
    (norm.affine && f32s && norm.num_channels == c && g.is_valid()).then_some(g)
}

/// Runs the host norm if `B` is the CPU backend `P` or `Autodiff<P>`; otherwise gives the
/// inputs back.
#[cfg(any(feature = "flex", feature = "ndarray"))]
#[allow(clippy::type_complexity)] // the inputs handed back unchanged
fn try_norm<B: Backend, P: Backend>(
    g: NormGeom,
    norm: &GroupNorm<B>,
    x: Tensor<B, 4>,
    shift: Option<Tensor<B, 2>>,
) -> Result<Tensor<B, 4>, (Tensor<B, 4>, Option<Tensor<B, 2>>)> {
    use burn::backend::Autodiff;
    let is_plain = same::<B, P>();
    if !is_plain && !same::<B, Autodiff<P>>() {
        return Err((x, shift));
    }
    let params = |p: &Option<burn::module::Param<Tensor<B, 1>>>| {
        p.as_ref().expect("checked by norm_geometry").val()
    };
    let (gamma, beta) = (params(&norm.gamma), params(&norm.beta));
    let shift = shift.unwrap_or_else(|| Tensor::zeros([g.n, g.c], &x.device()));
    if is_plain {
        let (y, _) = host::group_norm::<P>(g, cast(x), cast(shift), cast(gamma), cast(beta));
        Ok(cast(y))
    } else {
        Ok(cast(autodiff::group_norm::<P>(
            g,
            cast(x),
            cast(shift),
            cast(gamma),
            cast(beta),
        )))
    }
}

/// `act(norm(x + shift))`, with `shift: [n, c]` broadcast over the image and `act` SiLU when
/// `silu` is set (the identity otherwise): fused on the host kernels of [`norm`] where the
/// backend and the norm allow it (an affine norm, `f32`; see the [module documentation](self)),
/// otherwise composed from burn's ops.
///
/// # Shapes
/// - `x`: `[n, c, h, w]`, `shift`: `[n, c]`; output `[n, c, h, w]`.
pub fn group_norm<B: Backend>(
    norm: &GroupNorm<B>,
    x: Tensor<B, 4>,
    shift: Option<Tensor<B, 2>>,
    silu: bool,
) -> Tensor<B, 4> {
    let fast = if fast_ops_enabled() {
        norm_geometry(norm, &x, shift.as_ref(), silu)
    } else {
        None
    };
    #[allow(unused_mut)] // without a CPU backend feature nothing reassigns them
    let (mut x, mut shift) = (x, shift);
    if let Some(g) = fast {
        #[cfg(feature = "flex")]
        {
            (x, shift) = match try_norm::<B, burn::backend::Flex>(g, norm, x, shift) {
                Ok(y) => return y,
                Err(back) => back,
            };
        }
        #[cfg(feature = "ndarray")]
        {
            (x, shift) = match try_norm::<B, burn::backend::NdArray<f32>>(g, norm, x, shift) {
                Ok(y) => return y,
                Err(back) => back,
            };
        }
        let _ = g;
    }
    let x = match shift {
        Some(s) => x + s.unsqueeze_dims::<4>(&[2, 3]),
        None => x,
    };
    let y = norm.forward(x);
    if silu { activation::silu(y) } else { y }
}

/// The geometry of `act(linear(x))`, where the host kernels can compute it.
fn dense_geometry<B: Backend>(
    linear: &Linear<B>,
    x: &Tensor<B, 2>,
    act: DenseAct,
) -> Option<DenseGeom> {
    let w = linear.weight.val();
    let f32s = x.dtype() == DType::F32
        && w.dtype() == DType::F32
        && linear
            .bias
            .as_ref()
            .is_none_or(|b| b.val().dtype() == DType::F32);
    let [n, k] = x.dims();
    let [wk, m] = w.dims();
    (f32s && wk == k).then_some(DenseGeom { n, k, m, act })
}

/// Runs the host dense layer if `B` is the CPU backend `P` or `Autodiff<P>`; otherwise gives
/// the input back.
#[cfg(any(feature = "flex", feature = "ndarray"))]
fn try_dense<B: Backend, P: Backend>(
    g: DenseGeom,
    linear: &Linear<B>,
    x: Tensor<B, 2>,
) -> Result<Tensor<B, 2>, Tensor<B, 2>> {
    use burn::backend::Autodiff;
    let w = || linear.weight.val();
    let b = || linear.bias.as_ref().map(|b| b.val());
    if same::<B, P>() {
        Ok(cast(
            host::dense::<P>(g, cast(x), cast(w()), b().map(cast), false).0,
        ))
    } else if same::<B, Autodiff<P>>() {
        let dev = x.device();
        let b = b().unwrap_or_else(|| Tensor::zeros([g.m], &dev));
        Ok(cast(autodiff::dense::<P>(g, cast(x), cast(w()), cast(b))))
    } else {
        Err(x)
    }
}

/// `act(x·W + b)` on the parameters of `linear` (row layout, as `layers::dense`), on the host
/// kernels of [`dense`](mod@dense) where the backend allows it (see the
/// [module documentation](self)); otherwise `Err` gives `x` back for the composed ops.
///
/// # Shapes
/// - `x`: `[n, d_input]`; output `[n, d_output]`.
pub fn dense<B: Backend>(
    linear: &Linear<B>,
    x: Tensor<B, 2>,
    act: DenseAct,
) -> Result<Tensor<B, 2>, Tensor<B, 2>> {
    if !fast_ops_enabled() {
        return Err(x);
    }
    let Some(g) = dense_geometry(linear, &x, act) else {
        return Err(x);
    };
    #[cfg(feature = "flex")]
    let x = match try_dense::<B, burn::backend::Flex>(g, linear, x) {
        Ok(y) => return Ok(y),
        Err(x) => x,
    };
    #[cfg(feature = "ndarray")]
    let x = match try_dense::<B, burn::backend::NdArray<f32>>(g, linear, x) {
        Ok(y) => return Ok(y),
        Err(x) => x,
    };
    let _ = g;
    Err(x)
}

/// Hidden layers the host energy-MLP score takes (its autodiff op has one parent count per depth).
const ENERGY_MAX_LAYERS: usize = 4;

/// The widths of the hidden `layers` on an input of `d` features, where the host kernels take
/// them: 1 to [`ENERGY_MAX_LAYERS`] layers, each with a bias, chained, in `f32`.
fn hidden_widths<B: Backend>(layers: &[Linear<B>], d: usize) -> Option<Vec<usize>> {
    if layers.is_empty() || layers.len() > ENERGY_MAX_LAYERS {
        return None;
    }
    let mut widths = Vec::with_capacity(layers.len());
    let mut fan_in = d;
    for l in layers {
        let w = l.weight.val();
        let b = l.bias.as_ref()?.val();
        let [wk, m] = w.dims();
        if wk != fan_in || b.dims() != [m] || w.dtype() != DType::F32 || b.dtype() != DType::F32 {
            return None;
        }
        widths.push(m);
        fan_in = m;
    }
    Some(widths)
}

/// The geometry of the energy MLP `layers` → `output` applied to `x`, where the host kernels can
/// compute its score.
fn energy_geometry<B: Backend>(
    layers: &[Linear<B>],
    output: &Linear<B>,
    act: DenseAct,
    x: &Tensor<B, 2>,
    x_cols: usize,
) -> Option<MlpGeom> {
    let [n, d] = x.dims();
    if x.dtype() != DType::F32 || !(1..=d).contains(&x_cols) {
        return None;
    }
    let widths = hidden_widths(layers, d)?;
    let wo = output.weight.val();
    let last = *widths.last()?;
    (wo.dims() == [last, 1] && wo.dtype() == DType::F32).then_some(MlpGeom {
        n,
        d,
        x_cols,
        widths,
        act,
    })
}

/// Runs the host energy-MLP score if `B` is the CPU backend `P` or `Autodiff<P>`.
#[cfg(any(feature = "flex", feature = "ndarray"))]
fn try_energy<B: Backend, P: Backend>(
    g: &MlpGeom,
    layers: &[Linear<B>],
    output: &Linear<B>,
    x: &Tensor<B, 2>,
) -> Option<Tensor<B, 2>> {
    use burn::backend::Autodiff;
    let bias = |l: &Linear<B>| l.bias.as_ref().expect("checked by energy_geometry").val();
    if same::<B, P>() {
        let params = host::EnergyParams::<P> {
            weights: layers.iter().map(|l| cast(l.weight.val())).collect(),
            biases: layers.iter().map(|l| cast(bias(l))).collect(),
            w_out: cast(output.weight.val()),
        };
        let (s, _) = host::energy_score::<P>(g, cast(x.clone()), params, false);
        Some(cast(s))
    } else if same::<B, Autodiff<P>>() {
        let params = autodiff::TrackedEnergyParams::<P> {
            weights: layers.iter().map(|l| cast(l.weight.val())).collect(),
            biases: layers.iter().map(|l| cast(bias(l))).collect(),
            w_out: cast(output.weight.val()),
        };
        let (g, x) = (g.clone(), cast(x.clone()));
        let s = match layers.len() {
            1 => autodiff::energy_score::<P, 4>(g, x, params),
            2 => autodiff::energy_score::<P, 6>(g, x, params),
            3 => autodiff::energy_score::<P, 8>(g, x, params),
            4 => autodiff::energy_score::<P, 10>(g, x, params),
            _ => unreachable!("energy_geometry admits 1..={ENERGY_MAX_LAYERS} layers"),
        };
        Some(cast(s))
    } else {
        None
    }
}

/// The score of the energy MLP whose hidden layers `layers` are each followed by `act` and whose
/// scalar output layer is `output`: `−∂E/∂input` in the first `x_cols` columns of `input`
/// (all of them for `E(x)`; those of `x` for an input `[x | e]` that carries a condition `e`),
/// on the host kernels of [`energy`](mod@energy) where the backend allows it (see the
/// [module documentation](self)); `None` where autodiff of the energy must compute it.
///
/// On `Autodiff<P>` the score is one op whose backward gives the parameters and `x` the
/// gradients of a loss on the score (second derivatives of `E`, computed without nested
/// autodiff); the output layer's bias has no effect on the score and gets no gradient. The op is
/// first order: a loss that differentiates the score again in `x` (explicit score matching of an
/// energy) keeps nested autodiff.
///
/// Taken for 1 to 4 hidden layers with biases, `f32` values and SiLU, tanh or no activation.
///
/// # Shapes
/// - `input`: `[n, d]`; output `[n, x_cols]`.
pub fn energy_mlp_score<B: Backend>(
    layers: &[Linear<B>],
    output: &Linear<B>,
    act: DenseAct,
    input: &Tensor<B, 2>,
    x_cols: usize,
) -> Option<Tensor<B, 2>> {
    if !fast_ops_enabled() {
        return None;
    }
    let g = energy_geometry(layers, output, act, input, x_cols)?;
    #[cfg(feature = "flex")]
    if let Some(s) = try_energy::<B, burn::backend::Flex>(&g, layers, output, input) {
        return Some(s);
    }
    #[cfg(feature = "ndarray")]
    if let Some(s) = try_energy::<B, burn::backend::NdArray<f32>>(&g, layers, output, input) {
        return Some(s);
    }
    let _ = (g, layers, output, input);
    None
}

/// The geometry of the MLP `layers` → `output` on `input` with `x_cols` columns of `x`, where
/// the host quadratic-form kernels can compute it.
fn jvp_geometry<B: Backend>(
    layers: &[Linear<B>],
    output: &Linear<B>,
    act: DenseAct,
    input: &Tensor<B, 2>,
    x_cols: usize,
) -> Option<MlpGeom> {
    let [n, d] = input.dims();
    if input.dtype() != DType::F32 || !(1..=d).contains(&x_cols) {
        return None;
    }
    let widths = hidden_widths(layers, d)?;
    let (wo, bo) = (output.weight.val(), output.bias.as_ref()?.val());
    let last = *widths.last()?;
    let f32s = wo.dtype() == DType::F32 && bo.dtype() == DType::F32;
    (f32s && wo.dims() == [last, x_cols] && bo.dims() == [x_cols]).then_some(MlpGeom {
        n,
        d,
        x_cols,
        widths,
        act,
    })
}

/// Runs the host output and quadratic form (`[y | q]`) if `B` is the CPU backend `P` or
/// `Autodiff<P>`.
#[cfg(any(feature = "flex", feature = "ndarray"))]
fn try_jvp<B: Backend, P: Backend>(
    g: &MlpGeom,
    layers: &[Linear<B>],
    output: &Linear<B>,
    input: &Tensor<B, 2>,
    v: &Tensor<B, 2>,
) -> Option<Tensor<B, 2>> {
    use burn::backend::Autodiff;
    let bias = |l: &Linear<B>| l.bias.as_ref().expect("checked by jvp_geometry").val();
    let host_v = || {
        v.clone()
            .into_data()
            .into_vec::<f32>()
            .expect("checked f32 by the caller")
    };
    if same::<B, P>() {
        let params = host::MlpParams::<P> {
            weights: layers.iter().map(|l| cast(l.weight.val())).collect(),
            biases: layers.iter().map(|l| cast(bias(l))).collect(),
            w_out: cast(output.weight.val()),
            b_out: cast(bias(output)),
        };
        let v = host_v();
        let (y, _) =
            host::output_and_quadratic_form::<P>(g, cast(input.clone()), &v, params, false);
        Some(cast(y))
    } else if same::<B, Autodiff<P>>() {
        // `v` is read as a constant: a `v` in a graph would lose its gradient, so autodiff
        // computes that case.
        let constant = cast::<_, Tensor<Autodiff<P>, 2>>(v.clone())
            .into_primitive()
            .tensor()
            .node
            .requirement
            .is_none();
        if !constant {
            return None;
        }
        let params = autodiff::TrackedMlpParams::<P> {
            weights: layers.iter().map(|l| cast(l.weight.val())).collect(),
            biases: layers.iter().map(|l| cast(bias(l))).collect(),
            w_out: cast(output.weight.val()),
            b_out: cast(bias(output)),
        };
        let (g, h0, v) = (g.clone(), cast(input.clone()), host_v());
        let y = match layers.len() {
            1 => autodiff::output_and_quadratic_form::<P, 5>(g, h0, v, params),
            2 => autodiff::output_and_quadratic_form::<P, 7>(g, h0, v, params),
            3 => autodiff::output_and_quadratic_form::<P, 9>(g, h0, v, params),
            4 => autodiff::output_and_quadratic_form::<P, 11>(g, h0, v, params),
            _ => unreachable!("hidden_widths admits 1..={ENERGY_MAX_LAYERS} layers"),
        };
        Some(cast(y))
    } else {
        None
    }
}

/// The output `y = f(input)` of the MLP whose hidden layers `layers` are each followed by `act`
/// and whose output layer is `output`, and the quadratic form `q = vᵀ·(∂y/∂x)·v` of its
/// Jacobian in `x`, the first `v.dims()[1]` columns of `input` (the rest may carry a
/// condition), on the host kernels of [`jvp`](mod@jvp) where the backend allows it (see the
/// [module documentation](self)); `None` where autodiff must compute them.
///
/// Summed over the basis vectors, `q` is the Jacobian's trace (explicit score matching); for
/// random `v` it is sliced score matching's projection. On `Autodiff<P>` both come from one op
/// whose backward gives the parameters and `input` their gradients (second derivatives of the
/// network, without nested autodiff); `v` is a constant (a `v` that needs a gradient is left
/// to autodiff). The output layer must be as wide as
/// `x`. Taken for 1 to 4 hidden layers with biases, `f32` values and SiLU, tanh or no
/// activation.
///
/// # Shapes
/// - `input`: `[n, d]`, `v`: `[n, x_cols]` with `x_cols ≤ d`; outputs `[n, x_cols]` and `[n]`.
pub fn mlp_output_and_quadratic_form<B: Backend>(
    layers: &[Linear<B>],
    output: &Linear<B>,
    act: DenseAct,
    input: &Tensor<B, 2>,
    v: &Tensor<B, 2>,
) -> Option<(Tensor<B, 2>, Tensor<B, 1>)> {
    if !fast_ops_enabled() || v.dtype() != DType::F32 || v.dims()[0] != input.dims()[0] {
        return None;
    }
    let x_cols = v.dims()[1];
    let g = jvp_geometry(layers, output, act, input, x_cols)?;
    let both = {
        #[cfg(feature = "flex")]
        let both = try_jvp::<B, burn::backend::Flex>(&g, layers, output, input, v);
        #[cfg(not(feature = "flex"))]
        let both = None;
        #[cfg(feature = "ndarray")]
        let both = both
            .or_else(|| try_jvp::<B, burn::backend::NdArray<f32>>(&g, layers, output, input, v));
        both
    };
    let both = both?;
    let n = g.n;
    let y = both.clone().narrow(1, 0, x_cols);
    let q = both.narrow(1, x_cols, 1).reshape([n]);
    Some((y, q))
}

/// The host features if `B` is the CPU backend `P`, or `Autodiff<P>` with neither input in a
/// graph (the features are then a constant of the graph).
#[cfg(any(feature = "flex", feature = "ndarray"))]
fn try_features<B: Backend, P: Backend>(
    t: &Tensor<B, 1>,
    scale: f64,
    freqs: &Tensor<B, 1>,
    cos_first: bool,
) -> Option<Tensor<B, 2>> {
    use burn::backend::Autodiff;
    if same::<B, P>() {
        let y = host::sin_cos_features::<P>(cast(t.clone()), scale, cast(freqs.clone()), cos_first);
        Some(cast(y))
    } else if same::<B, Autodiff<P>>() {
        let t: Tensor<Autodiff<P>, 1> = cast(t.clone());
        let f: Tensor<Autodiff<P>, 1> = cast(freqs.clone());
        let untracked = |x: &Tensor<Autodiff<P>, 1>| {
            x.clone()
                .into_primitive()
                .tensor()
                .node
                .requirement
                .is_none()
        };
        if !(untracked(&t) && untracked(&f)) {
            return None;
        }
        let y = host::sin_cos_features::<P>(t.inner(), scale, f.inner(), cos_first);
        Some(cast(Tensor::<Autodiff<P>, 2>::from_inner(y)))
    } else {
        None
    }
}

/// `[cos a | sin a]` (`cos_first`) or `[sin a | cos a]` with `a = (t·scale) ⊗ freqs`, on the
/// host where the backend is a CPU backend with the fast kernels and neither `t` nor `freqs`
/// needs a gradient; `None` where burn's `sin`/`cos` must compute it.
///
/// # Shapes
/// - `t`: `[n]`, `freqs`: `[half]`; output `[n, 2·half]`.
pub fn sin_cos_features<B: Backend>(
    t: &Tensor<B, 1>,
    scale: f64,
    freqs: &Tensor<B, 1>,
    cos_first: bool,
) -> Option<Tensor<B, 2>> {
    if !fast_ops_enabled() || t.dtype() != DType::F32 || freqs.dtype() != DType::F32 {
        return None;
    }
    #[cfg(feature = "flex")]
    if let Some(y) = try_features::<B, burn::backend::Flex>(t, scale, freqs, cos_first) {
        return Some(y);
    }
    #[cfg(feature = "ndarray")]
    if let Some(y) = try_features::<B, burn::backend::NdArray<f32>>(t, scale, freqs, cos_first) {
        return Some(y);
    }
    let _ = (t, scale, freqs, cos_first);
    None
}

/// Runs the host softmax if `B` is the CPU backend `P` or `Autodiff<P>`; otherwise gives the
/// input back.
#[cfg(any(feature = "flex", feature = "ndarray"))]
fn try_softmax<B: Backend, P: Backend>(
    x: Tensor<B, 3>,
    scale: f32,
) -> Result<Tensor<B, 3>, Tensor<B, 3>> {
    use burn::backend::Autodiff;
    if same::<B, P>() {
        Ok(cast(host::softmax::<P>(cast(x), scale)))
    } else if same::<B, Autodiff<P>>() {
        Ok(cast(autodiff::softmax::<P>(cast(x), scale)))
    } else {
        Err(x)
    }
}

/// `softmax(scale · x)` over the last axis (attention weights from scores `x` and
/// `scale = 1/√d`): one host pass a row each way ([`softmax`](mod@softmax)) where the backend is
/// a CPU backend with the fast kernels and `x` is `f32`, otherwise burn's
/// `activation::softmax(x · scale, 2)`.
///
/// # Panics
/// If `scale` is not positive and finite, or the last axis is empty.
///
/// # Shapes
/// - `x`: `[n, rows, cols]`; output the same.
///
/// ```
/// use burn::backend::NdArray;
/// use burn::tensor::Tensor;
/// use score_nets::cpu_ops::scaled_softmax;
///
/// let x = Tensor::<NdArray, 3>::from_floats([[[0.0, 2.0_f32.ln()]]], &Default::default());
/// let y: Vec<f32> = scaled_softmax(x, 1.0).into_data().to_vec().unwrap();
/// assert!((y[0] - 1.0 / 3.0).abs() < 1e-6 && (y[1] - 2.0 / 3.0).abs() < 1e-6);
/// ```
pub fn scaled_softmax<B: Backend>(x: Tensor<B, 3>, scale: f64) -> Tensor<B, 3> {
    assert!(
        scale > 0.0 && scale.is_finite(),
        "softmax scale {scale} must be positive and finite"
    );
    assert!(x.dims()[2] > 0, "softmax over an empty axis");
    #[allow(unused_mut)] // without a CPU backend feature nothing reassigns it
    let mut x = x;
    if fast_ops_enabled() && x.dtype() == DType::F32 {
        #[cfg(feature = "flex")]
        {
            x = match try_softmax::<B, burn::backend::Flex>(x, scale as f32) {
                Ok(y) => return y,
                Err(x) => x,
            };
        }
        #[cfg(feature = "ndarray")]
        {
            x = match try_softmax::<B, burn::backend::NdArray<f32>>(x, scale as f32) {
                Ok(y) => return y,
                Err(x) => x,
            };
        }
    }
    burn::tensor::activation::softmax(x.mul_scalar(scale), 2)
}

/// Whether `B` is one of the backends the host kernels run on (`Flex`, `NdArray<f32>` and
/// `Autodiff` of each, as compiled in) and they are not switched off on this thread
/// ([`with_reference_ops`]): a cheap check before preparing a fast op's inputs.
pub fn host_ops_backend<B: Backend>() -> bool {
    if !fast_ops_enabled() {
        return false;
    }
    #[cfg(feature = "flex")]
    {
        use burn::backend::{Autodiff, Flex};
        if same::<B, Flex>() || same::<B, Autodiff<Flex>>() {
            return true;
        }
    }
    #[cfg(feature = "ndarray")]
    {
        use burn::backend::{Autodiff, NdArray};
        if same::<B, NdArray<f32>>() || same::<B, Autodiff<NdArray<f32>>>() {
            return true;
        }
    }
    false
}

/// Whether [`adam_update`] runs on the host for this tensor: `B` is one of the CPU backends
/// compiled in (`Flex`, `NdArray<f32>`; the inner backend of a training step) and the tensor is
/// `f32`. Elsewhere (GPU backends, f64) an optimiser should keep burn's tensor ops.
pub fn host_adam_supported<B: Backend, const D: usize>(t: &Tensor<B, D>) -> bool {
    if !fast_ops_enabled() || t.dtype() != DType::F32 {
        return false;
    }
    #[cfg(feature = "flex")]
    if same::<B, burn::backend::Flex>() {
        return true;
    }
    #[cfg(feature = "ndarray")]
    if same::<B, burn::backend::NdArray<f32>>() {
        return true;
    }
    false
}

/// Adam's step `time` (1 for the first) of `param` with gradient `grad` and the moments
/// `(m, v)` of the step before (none at the first step): the new parameter and moments, computed
/// in one host pass ([`adam::adam_step`]) with burn-optim's arithmetic, bit for bit.
///
/// # Panics
/// If the shapes differ, or the values are not `f32` (check [`host_adam_supported`] first).
#[allow(clippy::type_complexity)] // the parameter and its two moments
pub fn adam_update<B: Backend, const D: usize>(
    consts: &adam::AdamConsts,
    lr: f64,
    time: usize,
    param: Tensor<B, D>,
    grad: Tensor<B, D>,
    moments: Option<(Tensor<B, D>, Tensor<B, D>)>,
) -> (Tensor<B, D>, Tensor<B, D>, Tensor<B, D>) {
    let dev = param.device();
    let shape = param.dims();
    assert_eq!(grad.dims(), shape, "Adam: gradient shape");
    let to_host = |t: Tensor<B, D>| {
        t.into_data()
            .into_vec::<f32>()
            .expect("Adam on the host needs f32 tensors")
    };
    let mut p = to_host(param);
    let g = to_host(grad);
    let (mut m, mut v, time) = match moments {
        Some((m, v)) => (to_host(m), to_host(v), time),
        None => (vec![0.0; p.len()], vec![0.0; p.len()], 1),
    };
    // burn's `mul_scalar(lr)` rounds the f64 learning rate to the element type.
    adam::adam_step(consts, lr as f32, time, &mut p, &g, &mut m, &mut v);
    let back =
        |x: Vec<f32>| Tensor::<B, D>::from_data(burn::tensor::TensorData::new(x, shape), &dev);
    (back(p), back(m), back(v))
}
