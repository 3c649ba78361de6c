//! The score `s = −∇x E` of an energy MLP, and its backward pass, on host `f32` slices: what an
//! energy network's denoising score matching differentiates, computed without nested autodiff.
//!
//! The network is `h₀ = x`, `zₖ = hₖ₋₁·Wₖ + bₖ`, `hₖ = act(zₖ)` for the `L` hidden layers, and
//! `E = h_L·w + c`. Its input gradient is one backward sweep,
//!
//! ```text
//! g_L = 1·wᵀ,   δₖ = gₖ ⊙ act'(zₖ),   gₖ₋₁ = δₖ·Wₖᵀ,   s = −g₀,
//! ```
//!
//! and a loss on `s` needs the reverse of that sweep and of the forward pass behind it. With
//! `v = ∂L/∂s` and `ḡ₀ = −v`, for `k = 1, …, L`:
//!
//! ```text
//! ∂L/∂Wₖ += ḡₖ₋₁ᵀ·δₖ,   δ̄ₖ = ḡₖ₋₁·Wₖ,   z̄ₖ = δ̄ₖ ⊙ gₖ ⊙ act''(zₖ),   ḡₖ = δ̄ₖ ⊙ act'(zₖ),
//! ```
//!
//! `∂L/∂w = Σₙ ḡ_L`, then down the forward pass, `k = L, …, 1`, with `h̄_L = 0`:
//!
//! ```text
//! z̄ₖ += h̄ₖ ⊙ act'(zₖ),   ∂L/∂Wₖ += hₖ₋₁ᵀ·z̄ₖ,   ∂L/∂bₖ = Σₙ z̄ₖ,   h̄ₖ₋₁ = z̄ₖ·Wₖᵀ,
//! ```
//!
//! and `∂L/∂x = h̄₀`. `c` has no effect on `s`, so it has no gradient. Forward this is two GEMMs
//! a layer (one for `z`, one for `g`), backward four, each as large as a dense layer's, where
//! burn's nested autodiff records and replays every elementwise op of both sweeps twice.
//!
//! The GEMMs split their output, never a sum, and row sums run in a fixed order, so results are
//! bit-identical run to run for a given thread count.

use super::conv::Mat;
use super::dense::{DenseAct, product};
use super::vmath;

/// The shape of an MLP on the host: input `[n, d]` whose first `x_cols` columns are `x` (the
/// rest may carry a condition), hidden widths `widths[k]`, one activation after every hidden
/// layer. For the energy score the output is a scalar and the score is taken in the `x`
/// columns; for the quadratic form ([`super::jvp`]) the output has `x_cols` columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MlpGeom {
    /// Rows (the batch).
    pub n: usize,
    /// Input features (`x` and any condition).
    pub d: usize,
    /// Leading input columns that are `x` (`1..=d`).
    pub x_cols: usize,
    /// Width of each hidden layer, input first (at least one).
    pub widths: Vec<usize>,
    /// The activation after every hidden layer.
    pub act: DenseAct,
}

impl MlpGeom {
    /// Input width of hidden layer `k` (0-based).
    pub fn fan_in(&self, k: usize) -> usize {
        if k == 0 { self.d } else { self.widths[k - 1] }
    }
}

/// What the score's forward pass keeps for its backward pass, per hidden layer `k` (0-based).
#[derive(Debug, Clone, Default)]
pub struct EnergySaved {
    /// `hₖ₋₁`, the layer's input, for `k ≥ 1` (the input `x` itself is kept by the caller).
    h: Vec<Vec<f32>>,
    /// `act'(zₖ)`.
    a1: Vec<Vec<f32>>,
    /// `gₖ ⊙ act''(zₖ)`.
    ga2: Vec<Vec<f32>>,
    /// `δₖ = gₖ ⊙ act'(zₖ)`.
    delta: Vec<Vec<f32>>,
}

/// `act(z)`, `act'(z)` and `act''(z)` for one element.
#[inline(always)]
fn act_derivs(act: DenseAct, z: f32) -> (f32, f32, f32) {
    match act {
        DenseAct::Identity => (z, 1.0, 0.0),
        DenseAct::Silu => {
            // σ = 1/(1 + e^{−z}) and 1 − σ = e^{−z}·σ, so that neither cancels for large |z|
            // (`exp` saturates its argument, so e^{−z} stays finite).
            let e = vmath::exp(-z);
            let s = 1.0 / (1.0 + e);
            let r = e * s;
            let a1 = s * (1.0 + z * r);
            let a2 = s * r * (2.0 + z * (r - s));
            (z * s, a1, a2)
        }
        DenseAct::Tanh => {
            let t = vmath::tanh(z);
            let a1 = 1.0 - t * t;
            (t, a1, -2.0 * t * a1)
        }
    }
}

/// `z ← act(z)`, `a1 ← act'(z)`, `a2 ← act''(z)`, one loop per activation (`move` and inlined
/// into the SIMD (AVX-512F or AVX2) copy, so that it vectorises).
pub(super) fn activate(act: DenseAct, z: &mut [f32], a1: &mut [f32], a2: &mut [f32]) {
    macro_rules! pass {
        ($act:expr) => {
            vmath::with_simd(
                #[inline(always)]
                move || {
                    for ((zv, d1), d2) in z.iter_mut().zip(a1.iter_mut()).zip(a2.iter_mut()) {
                        (*zv, *d1, *d2) = act_derivs($act, *zv);
                    }
                },
            )
        };
    }
    match act {
        DenseAct::Identity => pass!(DenseAct::Identity),
        DenseAct::Silu => pass!(DenseAct::Silu),
        DenseAct::Tanh => pass!(DenseAct::Tanh),
    }
}

fn rows(data: &[f32], cols: usize) -> Mat<'_> {
    Mat {
        data,
        rs: cols,
        cs: 1,
    }
}

/// The transpose of a row-major `[r, cols]` matrix, as a view.
fn transposed(data: &[f32], cols: usize) -> Mat<'_> {
    Mat {
        data,
        rs: 1,
        cs: cols,
    }
}

/// `dst (+)= a·b` for row-major `a` `[n, k]`, `b` `[k, m]`, `dst` `[n, m]` (added to when
/// `acc`).
pub(super) fn mul_ab(
    dst: &mut [f32],
    acc: bool,
    n: usize,
    k: usize,
    m: usize,
    a: &[f32],
    b: &[f32],
) {
    product(n, m, k, dst, acc, rows(a, k), rows(b, m));
}

/// `dst (+)= a·bᵀ` for row-major `a` `[n, k]`, `b` `[m, k]`, `dst` `[n, m]`.
pub(super) fn mul_abt(
    dst: &mut [f32],
    acc: bool,
    n: usize,
    m: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
) {
    product(n, m, k, dst, acc, rows(a, k), transposed(b, k));
}

/// `dst (+)= aᵀ·b` for row-major `a` `[n, k]`, `b` `[n, m]`, `dst` `[k, m]`.
pub(super) fn mul_atb(
    dst: &mut [f32],
    acc: bool,
    n: usize,
    k: usize,
    m: usize,
    a: &[f32],
    b: &[f32],
) {
    product(k, m, n, dst, acc, transposed(a, k), rows(b, m));
}

/// `s = −∇x E(x)` for the weights `ws[k]` (`[fan_in, width]`, burn's `Linear` layout), biases
/// `bs[k]` and output weight `w_out` (`[width_L]`), with what the backward needs when `save`.
///
/// # Panics
/// If a slice's length does not match `g`.
pub fn energy_score_forward(
    g: &MlpGeom,
    x: &[f32],
    ws: &[&[f32]],
    bs: &[&[f32]],
    w_out: &[f32],
    save: bool,
) -> (Vec<f32>, EnergySaved) {
    let (n, layers) = (g.n, g.widths.len());
    assert!(layers >= 1, "energy MLP without hidden layers");
    assert!((1..=g.d).contains(&g.x_cols), "energy score columns");
    assert_eq!(x.len(), n * g.d, "energy input");
    assert!(ws.len() == layers && bs.len() == layers, "energy layers");
    assert_eq!(w_out.len(), g.widths[layers - 1], "energy output weight");
    let mut saved = EnergySaved::default();
    let mut a1s = Vec::with_capacity(layers);
    let mut a2s = Vec::with_capacity(layers);
    // Forward: z, then act(z), act'(z), act''(z) in one pass; the last act(z) is not needed.
    let mut h = x.to_vec();
    for k in 0..layers {
        let (kin, m) = (g.fan_in(k), g.widths[k]);
        assert_eq!(ws[k].len(), kin * m, "energy weight {k}");
        assert_eq!(bs[k].len(), m, "energy bias {k}");
        let mut z = vec![0.0f32; n * m];
        for row in z.chunks_exact_mut(m) {
            row.copy_from_slice(bs[k]);
        }
        mul_ab(&mut z, true, n, kin, m, &h, ws[k]);
        let mut a1 = vec![0.0f32; n * m];
        let mut a2 = vec![0.0f32; n * m];
        activate(g.act, &mut z, &mut a1, &mut a2);
        let input = std::mem::replace(&mut h, z);
        if k > 0 && save {
            saved.h.push(input);
        }
        a1s.push(a1);
        a2s.push(a2);
    }
    // Backward sweep: g_L = rows of w, δ = g ⊙ act', g_{k-1} = δ·Wᵀ.
    let m_last = g.widths[layers - 1];
    let mut gk = vec![0.0f32; n * m_last];
    for row in gk.chunks_exact_mut(m_last) {
        row.copy_from_slice(w_out);
    }
    let mut deltas = vec![Vec::new(); layers];
    let mut ga2s = vec![Vec::new(); layers];
    for k in (0..layers).rev() {
        let (kin, m) = (g.fan_in(k), g.widths[k]);
        let (a1, a2) = (&a1s[k], &a2s[k]);
        let mut delta = vec![0.0f32; n * m];
        let mut ga2 = if save {
            vec![0.0f32; n * m]
        } else {
            Vec::new()
        };
        mul_into(&mut delta, &gk, a1);
        mul_into(&mut ga2, &gk, a2);
        let mut below = vec![0.0f32; n * kin];
        mul_abt(&mut below, false, n, kin, m, &delta, ws[k]);
        gk = below;
        deltas[k] = delta;
        ga2s[k] = ga2;
    }
    let (d, sc) = (g.d, g.x_cols);
    let mut gk = if sc == d {
        gk
    } else {
        gk.chunks_exact(d)
            .flat_map(|row| &row[..sc])
            .copied()
            .collect()
    };
    gk.iter_mut().for_each(|v| *v = -*v);
    if save {
        saved.a1 = a1s;
        saved.ga2 = ga2s;
        saved.delta = deltas;
    }
    (gk, saved)
}

/// Gradients of a loss through [`energy_score_forward`], each computed only where asked for.
#[derive(Debug, Default)]
pub struct EnergyGrads {
    /// `∂L/∂x`, `[n, d]`, when asked for.
    pub x: Option<Vec<f32>>,
    /// `∂L/∂Wₖ` per hidden layer.
    pub weights: Vec<Vec<f32>>,
    /// `∂L/∂bₖ` per hidden layer.
    pub biases: Vec<Vec<f32>>,
    /// `∂L/∂w` of the output weight, `[width_L]`.
    pub w_out: Vec<f32>,
}

/// Sums the rows of a row-major `[n, m]` matrix, in row order.
pub(super) fn column_sums(data: &[f32], m: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; m];
    let acc = &mut out[..];
    vmath::with_simd(
        #[inline(always)]
        move || {
            for row in data.chunks_exact(m) {
                acc.iter_mut().zip(row).for_each(|(a, &v)| *a += v);
            }
        },
    );
    out
}

/// `out = a ⊙ b` (nothing where `out` is empty).
pub(super) fn mul_into(out: &mut [f32], a: &[f32], b: &[f32]) {
    vmath::with_simd(
        #[inline(always)]
        move || {
            for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                *o = x * y;
            }
        },
    );
}

/// `out ⊙= a`.
pub(super) fn mul_assign(out: &mut [f32], a: &[f32]) {
    vmath::with_simd(
        #[inline(always)]
        move || {
            for (o, &x) in out.iter_mut().zip(a) {
                *o *= x;
            }
        },
    );
}

/// `out += a ⊙ b`.
pub(super) fn mul_add_assign(out: &mut [f32], a: &[f32], b: &[f32]) {
    vmath::with_simd(
        #[inline(always)]
        move || {
            for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                *o += x * y;
            }
        },
    );
}

/// The backward pass of [`energy_score_forward`] for `v = ∂L/∂s` (see the
/// [module documentation](self) for the sweep), with the forward's inputs and what it saved.
///
/// # Panics
/// If `saved` was not kept (`save = false`) or a length does not match `g`.
pub fn energy_score_backward(
    g: &MlpGeom,
    x: &[f32],
    ws: &[&[f32]],
    saved: &EnergySaved,
    v: &[f32],
    need_x: bool,
) -> EnergyGrads {
    let (n, layers) = (g.n, g.widths.len());
    assert_eq!(v.len(), n * g.x_cols, "energy score gradient");
    assert_eq!(
        saved.delta.len(),
        layers,
        "energy backward without saved state"
    );
    let mut weights = Vec::with_capacity(layers);
    let mut zbars = Vec::with_capacity(layers);
    // Up the score's backward sweep: ḡ₀ = −v, zero in the condition's columns.
    let mut gbar = vec![0.0f32; n * g.d];
    for (row, vr) in gbar.chunks_exact_mut(g.d).zip(v.chunks_exact(g.x_cols)) {
        row[..g.x_cols]
            .iter_mut()
            .zip(vr)
            .for_each(|(a, &b)| *a = -b);
    }
    for (k, &w) in ws.iter().enumerate() {
        let (kin, m) = (g.fan_in(k), g.widths[k]);
        let mut dw = vec![0.0f32; kin * m];
        mul_atb(&mut dw, false, n, kin, m, &gbar, &saved.delta[k]);
        weights.push(dw);
        let mut dbar = vec![0.0f32; n * m];
        mul_ab(&mut dbar, false, n, kin, m, &gbar, w);
        let mut zbar = vec![0.0f32; n * m];
        let (a1, ga2) = (&saved.a1[k], &saved.ga2[k]);
        mul_into(&mut zbar, &dbar, ga2);
        mul_assign(&mut dbar, a1);
        zbars.push(zbar);
        gbar = dbar;
    }
    let w_out = column_sums(&gbar, g.widths[layers - 1]);
    // Down the forward pass: h̄_L = 0.
    let mut biases = vec![Vec::new(); layers];
    let mut hbar: Option<Vec<f32>> = None;
    let mut x_grad = None;
    for k in (0..layers).rev() {
        let (kin, m) = (g.fan_in(k), g.widths[k]);
        let mut zbar = std::mem::take(&mut zbars[k]);
        if let Some(hb) = hbar.take() {
            let a1 = &saved.a1[k];
            mul_add_assign(&mut zbar, &hb, a1);
        }
        let input: &[f32] = if k == 0 { x } else { &saved.h[k - 1] };
        mul_atb(&mut weights[k], true, n, kin, m, input, &zbar);
        biases[k] = column_sums(&zbar, m);
        if k > 0 || need_x {
            let mut below = vec![0.0f32; n * kin];
            mul_abt(&mut below, false, n, kin, m, &zbar, ws[k]);
            if k == 0 {
                x_grad = Some(below);
            } else {
                hbar = Some(below);
            }
        }
    }
    EnergyGrads {
        x: x_grad,
        weights,
        biases,
        w_out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_ops::testing::{assert_gradients, f64s, geometries, mlp_params, values};

    fn act64(act: DenseAct, z: f64) -> (f64, f64) {
        match act {
            DenseAct::Identity => (z, 1.0),
            DenseAct::Silu => {
                let s = 1.0 / (1.0 + (-z).exp());
                (z * s, s * (1.0 + z * (1.0 - s)))
            }
            DenseAct::Tanh => (z.tanh(), 1.0 - z.tanh().powi(2)),
        }
    }

    /// The parameters as f64: `[x, W₁, b₁, …, W_L, b_L, w]`.
    type Params = Vec<Vec<f64>>;

    /// `s = −∇x E` in f64 (its first `x_cols` columns), by the textbook backward sweep.
    fn score64(g: &MlpGeom, p: &Params) -> Vec<f64> {
        let (n, layers) = (g.n, g.widths.len());
        let mut h = p[0].clone();
        let mut d1s = Vec::new();
        for k in 0..layers {
            let (kin, m) = (g.fan_in(k), g.widths[k]);
            let (w, b) = (&p[1 + 2 * k], &p[2 + 2 * k]);
            let mut next = vec![0.0; n * m];
            let mut d1 = vec![0.0; n * m];
            for i in 0..n {
                for j in 0..m {
                    let z = b[j] + (0..kin).map(|l| h[i * kin + l] * w[l * m + j]).sum::<f64>();
                    (next[i * m + j], d1[i * m + j]) = act64(g.act, z);
                }
            }
            h = next;
            d1s.push(d1);
        }
        let w_out = &p[1 + 2 * layers];
        let m_last = g.widths[layers - 1];
        let mut gk: Vec<f64> = (0..n * m_last).map(|i| w_out[i % m_last]).collect();
        for k in (0..layers).rev() {
            let (kin, m) = (g.fan_in(k), g.widths[k]);
            let w = &p[1 + 2 * k];
            let mut below = vec![0.0; n * kin];
            for i in 0..n {
                for l in 0..kin {
                    below[i * kin + l] = (0..m)
                        .map(|j| gk[i * m + j] * d1s[k][i * m + j] * w[l * m + j])
                        .sum();
                }
            }
            gk = below;
        }
        gk.chunks_exact(g.d)
            .flat_map(|row| &row[..g.x_cols])
            .map(|v| -v)
            .collect()
    }

    #[test]
    fn score_and_its_gradients_match_f64_and_central_differences() {
        for g in geometries() {
            let layers = g.widths.len();
            let p32 = mlp_params(&g, 1, false);
            let v = values(g.n * g.x_cols, 40, 1.0);
            let ws: Vec<&[f32]> = (0..layers).map(|k| &p32[1 + 2 * k][..]).collect();
            let bs: Vec<&[f32]> = (0..layers).map(|k| &p32[2 + 2 * k][..]).collect();
            let wo = &p32[1 + 2 * layers];
            let (s, saved) = energy_score_forward(&g, &p32[0], &ws, &bs, wo, true);
            let p64: Params = p32.iter().map(|a| f64s(a)).collect();
            for (i, (&a, b)) in s.iter().zip(score64(&g, &p64)).enumerate() {
                // f32 products over ≤ 8 terms of size ≤ 1.5: ~1e-6 absolute.
                assert!(
                    (a as f64 - b).abs() < 2e-5 * (1.0 + b.abs()),
                    "{g:?} s[{i}]"
                );
            }
            let (s2, _) = energy_score_forward(&g, &p32[0], &ws, &bs, wo, false);
            assert_eq!(s, s2, "saving changes nothing");
            let grads = energy_score_backward(&g, &p32[0], &ws, &saved, &v, true);
            let mut got = vec![grads.x.clone().unwrap()];
            for k in 0..layers {
                got.push(grads.weights[k].clone());
                got.push(grads.biases[k].clone());
            }
            got.push(grads.w_out.clone());
            // L = Σ v ⊙ s.
            let objective = |p: &[Vec<f64>]| {
                let s = score64(&g, &p.to_vec());
                s.iter().zip(&v).map(|(a, &b)| a * b as f64).sum::<f64>()
            };
            assert_gradients(&format!("{g:?}"), &got, &p64, objective, 1e-4);
            let again = energy_score_backward(&g, &p32[0], &ws, &saved, &v, false);
            assert!(again.x.is_none());
            assert_eq!(again.weights, grads.weights, "bit-identical rerun");
        }
    }

    #[test]
    fn second_derivative_of_silu_does_not_overflow() {
        for z in [-100.0f32, -20.0, -1.0, 0.0, 1.0, 20.0, 100.0] {
            let (y, a1, a2) = act_derivs(DenseAct::Silu, z);
            assert!(y.is_finite() && a1.is_finite() && a2.is_finite(), "{z}");
            let zd = z as f64;
            let s = 1.0 / (1.0 + (-zd).exp());
            let want = s * (1.0 - s) * (2.0 + zd * (1.0 - 2.0 * s));
            assert!(
                (a2 as f64 - want).abs() < 1e-6,
                "silu''({z}) = {a2}, want {want}"
            );
        }
    }
}
