//! A dense layer with its activation, `y = act(x·W + b)`, on host `f32` slices in row-major
//! layout: one GEMM and one fused pass for bias and activation forward; one fused pass for the
//! activation's derivative and two GEMMs backward (`dW = xᵀ·dz`, `dx = dz·Wᵀ`, `db = Σ dz`).
//!
//! burn composes the same layer from a matmul, a broadcast add and, for SiLU, five elementwise
//! ops whose `tanh` is a scalar library call per element; in a small MLP's training step those
//! calls took more time than the matrix products.
//!
//! The GEMMs split their output, never the sum over `k`, and the bias gradient sums rows in a
//! fixed order, so results are bit-identical run to run for a given thread count.

use gemm::Parallelism;

use super::conv::{Mat, matmul};
use super::vmath;

/// The pointwise function after the affine map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenseAct {
    /// None: `y = x·W + b`.
    Identity,
    /// `z·σ(z)`.
    Silu,
    /// `tanh(z)`.
    Tanh,
}

/// The shape of one dense layer: input `[n, k]`, weight `[k, m]` (burn's `Linear` layout),
/// output `[n, m]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DenseGeom {
    /// Rows (the batch).
    pub n: usize,
    /// Input features.
    pub k: usize,
    /// Output features.
    pub m: usize,
    /// The activation.
    pub act: DenseAct,
}

/// Multiply–adds from which a product is split in two halves of its output rows, one per thread
/// (`rayon::join`, each half one single-threaded GEMM). On the seed MLP's 256 × 128 × 128
/// products (4.2e6) neither this split nor gemm's own threading beat one thread (the train
/// bench, interleaved: 2.11–2.51 ms a step single-threaded against 2.24–2.64 ms split), nor on
/// explicit score matching's 512 × 128 × 128 (8.4e6; `esm_exact_trace_loss_backward_adam`,
/// interleaved, 3 rounds: 4.90–5.50 ms single-threaded against 6.36–7.15 ms split), so only
/// larger products (a sampler's 10⁴-row batches) are split.
const PARALLEL_MIN_MACS: usize = 1 << 24;

/// `dst[m, n] = lhs[m, k] · rhs[k, n]`, its rows split over two threads when large enough.
pub(super) fn product(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    acc: bool,
    lhs: Mat<'_>,
    rhs: Mat<'_>,
) {
    if rayon::current_num_threads() < 2 || m < 2 || m * n * k < PARALLEL_MIN_MACS {
        matmul(m, n, k, dst, acc, lhs, rhs, Parallelism::None);
        return;
    }
    let mid = m / 2;
    let (top, bottom) = dst[..m * n].split_at_mut(mid * n);
    let lhs_bottom = Mat {
        data: &lhs.data[mid * lhs.rs..],
        ..lhs
    };
    rayon::join(
        || matmul(mid, n, k, top, acc, lhs, rhs, Parallelism::None),
        || {
            matmul(
                m - mid,
                n,
                k,
                bottom,
                acc,
                lhs_bottom,
                rhs,
                Parallelism::None,
            )
        },
    );
}

/// What the forward pass keeps for the backward pass.
#[derive(Debug, Clone)]
pub struct DenseSaved {
    /// The pre-activation `z = x·W + b` (empty for [`DenseAct::Identity`]).
    pub z: Vec<f32>,
}

/// `act(x·W + b)`, and the pre-activation when `save` is set and the activation needs it for
/// its derivative (a forward pass without a backward, as a sampler's, skips that copy).
pub fn dense_forward(
    g: &DenseGeom,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    save: bool,
) -> (Vec<f32>, DenseSaved) {
    let DenseGeom { n, k, m, act } = *g;
    assert_eq!(x.len(), n * k, "dense input");
    assert_eq!(w.len(), k * m, "dense weight");
    let mut y = vec![0.0f32; n * m];
    if let Some(b) = b {
        assert_eq!(b.len(), m, "dense bias");
        for row in y.chunks_exact_mut(m.max(1)) {
            row.copy_from_slice(b);
        }
    }
    let lhs = Mat {
        data: x,
        rs: k,
        cs: 1,
    };
    let rhs = Mat {
        data: w,
        rs: m,
        cs: 1,
    };
    product(n, m, k, &mut y, b.is_some(), lhs, rhs);
    let z = match act {
        DenseAct::Identity => Vec::new(),
        DenseAct::Silu => {
            let z = if save { y.clone() } else { Vec::new() };
            vmath::with_simd(|| y.iter_mut().for_each(|v| *v = vmath::silu(*v)));
            z
        }
        DenseAct::Tanh => {
            let z = if save { y.clone() } else { Vec::new() };
            vmath::with_simd(|| y.iter_mut().for_each(|v| *v = vmath::tanh(*v)));
            z
        }
    };
    (y, DenseSaved { z })
}

/// Gradients of one dense layer, each computed only where asked for.
#[derive(Debug, Default)]
pub struct DenseGrads {
    /// `∂L/∂x`, `[n, k]`.
    pub x: Option<Vec<f32>>,
    /// `∂L/∂W`, `[k, m]`.
    pub weight: Option<Vec<f32>>,
    /// `∂L/∂b`, `[m]`.
    pub bias: Option<Vec<f32>>,
}

/// The backward pass of [`dense_forward`] for the output gradient `dy`; `need` says which of
/// `[x, weight, bias]` to compute.
pub fn dense_backward(
    g: &DenseGeom,
    x: &[f32],
    w: &[f32],
    saved: &DenseSaved,
    mut dy: Vec<f32>,
    need: [bool; 3],
) -> DenseGrads {
    let DenseGeom { n, k, m, act } = *g;
    assert_eq!(dy.len(), n * m, "dense output gradient");
    vmath::with_simd(|| match act {
        DenseAct::Identity => {}
        DenseAct::Silu => dy
            .iter_mut()
            .zip(&saved.z)
            .for_each(|(d, &z)| *d *= vmath::silu_grad(z)),
        DenseAct::Tanh => dy.iter_mut().zip(&saved.z).for_each(|(d, &z)| {
            let t = vmath::tanh(z);
            *d *= 1.0 - t * t;
        }),
    });
    let dz = dy;
    let dzm = Mat {
        data: &dz,
        rs: m,
        cs: 1,
    };
    let x_grad = need[0].then(|| {
        assert_eq!(w.len(), k * m, "dense weight");
        let mut dx = vec![0.0f32; n * k];
        // Wᵀ[j, l] = W[l, j]
        let wt = Mat {
            data: w,
            rs: 1,
            cs: m,
        };
        product(n, k, m, &mut dx, false, dzm, wt);
        dx
    });
    let weight = need[1].then(|| {
        assert_eq!(x.len(), n * k, "dense input");
        let mut dw = vec![0.0f32; k * m];
        // xᵀ[i, l] = x[l, i]
        let xt = Mat {
            data: x,
            rs: 1,
            cs: k,
        };
        product(k, m, n, &mut dw, false, xt, dzm);
        dw
    });
    let bias = need[2].then(|| {
        let mut db = vec![0.0f32; m];
        vmath::with_simd(|| {
            for row in dz.chunks_exact(m.max(1)) {
                db.iter_mut().zip(row).for_each(|(a, &d)| *a += d);
            }
        });
        db
    });
    DenseGrads {
        x: x_grad,
        weight,
        bias,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixed values in [−1.5, 1.5].
    fn values(len: usize, seed: u64) -> Vec<f32> {
        crate::cpu_ops::testing::values(len, seed, 1.5)
    }

    fn act_f64(act: DenseAct, z: f64) -> f64 {
        match act {
            DenseAct::Identity => z,
            DenseAct::Silu => z / (1.0 + (-z).exp()),
            DenseAct::Tanh => z.tanh(),
        }
    }

    /// `Σ c ⊙ act(x·W + b)` in f64: the scalar whose gradients the backward pass must give.
    fn objective(g: &DenseGeom, x: &[f64], w: &[f64], b: &[f64], c: &[f64]) -> f64 {
        let mut s = 0.0;
        for i in 0..g.n {
            for j in 0..g.m {
                let z = b[j]
                    + (0..g.k)
                        .map(|l| x[i * g.k + l] * w[l * g.m + j])
                        .sum::<f64>();
                s += c[i * g.m + j] * act_f64(g.act, z);
            }
        }
        s
    }

    #[test]
    fn forward_and_backward_match_f64_and_central_differences() {
        for act in [DenseAct::Identity, DenseAct::Silu, DenseAct::Tanh] {
            for (n, k, m) in [(1, 1, 1), (7, 5, 3), (33, 130, 17)] {
                let g = DenseGeom { n, k, m, act };
                let (x, w, b, c) = (
                    values(n * k, 1),
                    values(k * m, 2),
                    values(m, 3),
                    values(n * m, 4),
                );
                let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
                let (xd, wd, bd, cd) = (f64s(&x), f64s(&w), f64s(&b), f64s(&c));
                let (y, saved) = dense_forward(&g, &x, &w, Some(&b), true);
                for i in 0..n {
                    for j in 0..m {
                        let z = bd[j] + (0..k).map(|l| xd[i * k + l] * wd[l * m + j]).sum::<f64>();
                        let want = act_f64(act, z);
                        // f32 sums of up to 130 products of size ≤ 2.25: ~1e-5 absolute.
                        assert!(
                            (y[i * m + j] as f64 - want).abs() < 2e-5,
                            "{g:?} y[{i},{j}]"
                        );
                    }
                }
                let grads = dense_backward(&g, &x, &w, &saved, c.clone(), [true; 3]);
                // Central differences of the f64 objective, step 1e-4: truncation O(h²) ≈ 1e-8,
                // so the bound is the f32 backward's own rounding.
                let h = 1e-4;
                let check = |name: &str, got: &[f32], which: usize| {
                    for (idx, &gv) in got.iter().enumerate().step_by(7) {
                        let mut p = [xd.clone(), wd.clone(), bd.clone()];
                        let mut q = [xd.clone(), wd.clone(), bd.clone()];
                        p[which][idx] += h;
                        q[which][idx] -= h;
                        let fd = (objective(&g, &p[0], &p[1], &p[2], &cd)
                            - objective(&g, &q[0], &q[1], &q[2], &cd))
                            / (2.0 * h);
                        assert!(
                            (gv as f64 - fd).abs() < 5e-5 * (1.0 + fd.abs()),
                            "{g:?} d{name}[{idx}] = {gv}, central difference {fd}"
                        );
                    }
                };
                check("x", grads.x.as_ref().unwrap(), 0);
                check("W", grads.weight.as_ref().unwrap(), 1);
                check("b", grads.bias.as_ref().unwrap(), 2);
                let none = dense_backward(&g, &x, &w, &saved, c.clone(), [false, true, false]);
                assert!(none.x.is_none() && none.bias.is_none());
                assert_eq!(none.weight, grads.weight);
            }
        }
    }

    #[test]
    fn no_bias_and_bit_identical_reruns() {
        let g = DenseGeom {
            n: 256,
            k: 130,
            m: 128,
            act: DenseAct::Silu,
        };
        let (x, w) = (values(g.n * g.k, 5), values(g.k * g.m, 6));
        let (y1, s1) = dense_forward(&g, &x, &w, None, true);
        let (y2, s2) = dense_forward(&g, &x, &w, None, true);
        assert_eq!(y1, y2);
        let d1 = dense_backward(&g, &x, &w, &s1, y1.clone(), [true; 3]);
        let d2 = dense_backward(&g, &x, &w, &s2, y2, [true; 3]);
        assert_eq!((d1.x, d1.weight, d1.bias), (d2.x, d2.weight, d2.bias));
        let zero_bias = vec![0.0f32; g.m];
        // Without `save` (a forward pass with no backward) the same output and no saved copy.
        let (y0, s0) = dense_forward(&g, &x, &w, Some(&zero_bias), false);
        assert_eq!(y0, y1);
        assert!(s0.z.is_empty() && s1.z.len() == y1.len());
    }
}
