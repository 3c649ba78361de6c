//! An MLP's output `y = f(h₀)` together with the quadratic form `q = vᵀ·(∂y/∂x)·v` of its input
//! Jacobian, and their backward pass, on host `f32` slices: what explicit and sliced score
//! matching of a score network differentiate (`vᵀ J v` summed over basis vectors is the trace of
//! `J`), computed as one forward-mode sweep instead of a nested autodiff backward.
//!
//! The network is `zₖ = hₖ₋₁·Wₖ + bₖ`, `hₖ = act(zₖ)` for the `L` hidden layers and
//! `y = h_L·W_o + b_o`. The input `h₀` is `[x | e]` (its first `x_cols` columns are `x`; the
//! rest may carry a condition); `y` has `x_cols` columns. The tangent sweep is
//!
//! ```text
//! ṫ₀ = [v | 0],   żₖ = ṫₖ₋₁·Wₖ,   ṫₖ = act'(zₖ) ⊙ żₖ,   ẏ = ṫ_L·W_o,   q = Σⱼ vⱼ ẏⱼ,
//! ```
//!
//! and the backward, for `ȳ = ∂L/∂y` and `q̄ = ∂L/∂q`, with `ẏ̄ = q̄ ⊗ v`:
//!
//! ```text
//! ∂L/∂W_o = h_Lᵀ·ȳ + ṫ_Lᵀ·ẏ̄,   ∂L/∂b_o = Σₙ ȳ,   h̄_L = ȳ·W_oᵀ,   ṫ̄_L = ẏ̄·W_oᵀ,
//! ```
//!
//! then for `k = L, …, 1`:
//!
//! ```text
//! ż̄ₖ = ṫ̄ₖ ⊙ act'(zₖ),   z̄ₖ = h̄ₖ ⊙ act'(zₖ) + ṫ̄ₖ ⊙ żₖ ⊙ act''(zₖ),
//! ∂L/∂Wₖ = ṫₖ₋₁ᵀ·ż̄ₖ + hₖ₋₁ᵀ·z̄ₖ,   ∂L/∂bₖ = Σₙ z̄ₖ,   ṫ̄ₖ₋₁ = ż̄ₖ·Wₖᵀ,   h̄ₖ₋₁ = z̄ₖ·Wₖᵀ,
//! ```
//!
//! and `∂L/∂h₀ = h̄₀` (`v` is a constant). Two GEMMs a layer forward, four backward.
//!
//! The GEMMs split their output, never a sum, and row sums run in a fixed order, so results are
//! bit-identical run to run for a given thread count.

use super::energy::{
    MlpGeom, activate, column_sums, mul_ab, mul_abt, mul_add_assign, mul_assign, mul_atb, mul_into,
};

/// What the forward pass keeps for the backward pass, per hidden layer.
#[derive(Debug, Clone, Default)]
pub struct JvpSaved {
    /// `hₖ` for `k = 1, …, L` (the input `h₀` is kept by the caller).
    h: Vec<Vec<f32>>,
    /// `ṫₖ` for `k = 1, …, L`.
    t: Vec<Vec<f32>>,
    /// `żₖ ⊙ act''(zₖ)`.
    zc: Vec<Vec<f32>>,
    /// `act'(zₖ)`.
    a1: Vec<Vec<f32>>,
}

/// `[v | 0]` as an `[n, d]` matrix.
fn padded(v: &[f32], n: usize, d: usize, cols: usize) -> Vec<f32> {
    if cols == d {
        return v.to_vec();
    }
    let mut out = vec![0.0f32; n * d];
    for (row, vr) in out.chunks_exact_mut(d).zip(v.chunks_exact(cols)) {
        row[..cols].copy_from_slice(vr);
    }
    out
}

/// `y = f(h₀)` and `q = vᵀ(∂y/∂x)v` per row for the weights `ws[k]` (`[fan_in, width]`, burn's
/// `Linear` layout), biases `bs[k]`, output weight `w_out` (`[width_L, x_cols]`) and bias
/// `b_out`, with what the backward needs when `save`.
///
/// # Panics
/// If a slice's length does not match `g`.
#[allow(clippy::too_many_arguments)] // the network's parts, as the dense layer's
pub fn jvp_forward(
    g: &MlpGeom,
    h0: &[f32],
    v: &[f32],
    ws: &[&[f32]],
    bs: &[&[f32]],
    w_out: &[f32],
    b_out: &[f32],
    save: bool,
) -> (Vec<f32>, Vec<f32>, JvpSaved) {
    let (n, layers, xc) = (g.n, g.widths.len(), g.x_cols);
    assert!(layers >= 1, "MLP without hidden layers");
    assert!((1..=g.d).contains(&xc), "MLP x columns");
    assert_eq!(h0.len(), n * g.d, "MLP input");
    assert_eq!(v.len(), n * xc, "MLP tangent");
    assert!(ws.len() == layers && bs.len() == layers, "MLP layers");
    let m_last = g.widths[layers - 1];
    assert_eq!(w_out.len(), m_last * xc, "MLP output weight");
    assert_eq!(b_out.len(), xc, "MLP output bias");
    let mut saved = JvpSaved::default();
    let t0 = padded(v, n, g.d, xc);
    // hₖ and ṫₖ, the last of each the current layer's input (only the last is kept without
    // `save`).
    let (mut hs, mut ts): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (Vec::new(), Vec::new());
    for k in 0..layers {
        let (kin, m) = (g.fan_in(k), g.widths[k]);
        assert_eq!(ws[k].len(), kin * m, "MLP weight {k}");
        assert_eq!(bs[k].len(), m, "MLP bias {k}");
        let h = hs.last().map_or(h0, Vec::as_slice);
        let t = ts.last().map_or(&t0[..], Vec::as_slice);
        let mut z = vec![0.0f32; n * m];
        for row in z.chunks_exact_mut(m) {
            row.copy_from_slice(bs[k]);
        }
        mul_ab(&mut z, true, n, kin, m, h, ws[k]);
        let mut zdot = vec![0.0f32; n * m];
        mul_ab(&mut zdot, false, n, kin, m, t, ws[k]);
        let mut a1 = vec![0.0f32; n * m];
        let mut a2 = vec![0.0f32; n * m];
        activate(g.act, &mut z, &mut a1, &mut a2);
        let mut tk = vec![0.0f32; n * m];
        mul_into(&mut tk, &zdot, &a1);
        if save {
            // act'' is only needed as ż ⊙ act''.
            mul_assign(&mut a2, &zdot);
            saved.zc.push(a2);
            saved.a1.push(a1);
        } else {
            hs.clear();
            ts.clear();
        }
        hs.push(z);
        ts.push(tk);
    }
    let (h, t) = (&hs[hs.len() - 1], &ts[ts.len() - 1]);
    let mut y = vec![0.0f32; n * xc];
    for row in y.chunks_exact_mut(xc) {
        row.copy_from_slice(b_out);
    }
    mul_ab(&mut y, true, n, m_last, xc, h, w_out);
    let mut ydot = vec![0.0f32; n * xc];
    mul_ab(&mut ydot, false, n, m_last, xc, t, w_out);
    let q = ydot
        .chunks_exact(xc)
        .zip(v.chunks_exact(xc))
        .map(|(a, b)| a.iter().zip(b).map(|(p, q)| p * q).sum())
        .collect();
    if save {
        (saved.h, saved.t) = (hs, ts);
    }
    (y, q, saved)
}

/// Gradients of a loss through [`jvp_forward`].
#[derive(Debug, Default)]
pub struct JvpGrads {
    /// `∂L/∂h₀`, `[n, d]`, when asked for.
    pub input: Option<Vec<f32>>,
    /// `∂L/∂Wₖ` per hidden layer.
    pub weights: Vec<Vec<f32>>,
    /// `∂L/∂bₖ` per hidden layer.
    pub biases: Vec<Vec<f32>>,
    /// `∂L/∂W_o`, `[width_L, x_cols]`.
    pub w_out: Vec<f32>,
    /// `∂L/∂b_o`, `[x_cols]`.
    pub b_out: Vec<f32>,
}

/// The backward pass of [`jvp_forward`] for `ȳ` (`y_bar`, `[n, x_cols]`) and `q̄` (`q_bar`,
/// `[n]`), with the forward's inputs and what it saved (see the [module documentation](self)).
///
/// # Panics
/// If `saved` was not kept (`save = false`) or a length does not match `g`.
#[allow(clippy::too_many_arguments)] // the forward's inputs and the two output gradients
pub fn jvp_backward(
    g: &MlpGeom,
    h0: &[f32],
    v: &[f32],
    ws: &[&[f32]],
    w_out: &[f32],
    saved: &JvpSaved,
    y_bar: &[f32],
    q_bar: &[f32],
    need_input: bool,
) -> JvpGrads {
    let (n, layers, xc) = (g.n, g.widths.len(), g.x_cols);
    assert_eq!(saved.h.len(), layers, "MLP backward without saved state");
    assert_eq!(ws.len(), layers, "MLP layers");
    assert!(
        y_bar.len() == n * xc && q_bar.len() == n,
        "MLP output gradients"
    );
    let m_last = g.widths[layers - 1];
    // ẏ̄ = q̄ ⊗ v.
    let ydot_bar: Vec<f32> = v
        .chunks_exact(xc)
        .zip(q_bar)
        .flat_map(|(row, &qb)| row.iter().map(move |&a| a * qb))
        .collect();
    let mut w_out_grad = vec![0.0f32; m_last * xc];
    let (h_last, t_last) = (&saved.h[layers - 1], &saved.t[layers - 1]);
    mul_atb(&mut w_out_grad, false, n, m_last, xc, h_last, y_bar);
    mul_atb(&mut w_out_grad, true, n, m_last, xc, t_last, &ydot_bar);
    let b_out = column_sums(y_bar, xc);
    let mut hbar = vec![0.0f32; n * m_last];
    mul_abt(&mut hbar, false, n, m_last, xc, y_bar, w_out);
    let mut tbar = vec![0.0f32; n * m_last];
    mul_abt(&mut tbar, false, n, m_last, xc, &ydot_bar, w_out);
    let mut weights = vec![Vec::new(); layers];
    let mut biases = vec![Vec::new(); layers];
    let mut input = None;
    let t0 = padded(v, n, g.d, xc);
    for k in (0..layers).rev() {
        let (kin, m) = (g.fan_in(k), g.widths[k]);
        let (a1, zc) = (&saved.a1[k], &saved.zc[k]);
        // ż̄ = ṫ̄ ⊙ act'; z̄ = h̄ ⊙ act' + ṫ̄ ⊙ ż ⊙ act''.
        let mut zdot_bar = vec![0.0f32; n * m];
        mul_into(&mut zdot_bar, &tbar, a1);
        let mut zbar = vec![0.0f32; n * m];
        mul_into(&mut zbar, &hbar, a1);
        mul_add_assign(&mut zbar, &tbar, zc);
        let (h_in, t_in): (&[f32], &[f32]) = if k == 0 {
            (h0, &t0)
        } else {
            (&saved.h[k - 1], &saved.t[k - 1])
        };
        let mut dw = vec![0.0f32; kin * m];
        mul_atb(&mut dw, false, n, kin, m, t_in, &zdot_bar);
        mul_atb(&mut dw, true, n, kin, m, h_in, &zbar);
        weights[k] = dw;
        biases[k] = column_sums(&zbar, m);
        if k > 0 {
            let mut below = vec![0.0f32; n * kin];
            mul_abt(&mut below, false, n, kin, m, &zdot_bar, ws[k]);
            tbar = below;
        }
        if k > 0 || need_input {
            let mut below = vec![0.0f32; n * kin];
            mul_abt(&mut below, false, n, kin, m, &zbar, ws[k]);
            if k == 0 {
                input = Some(below);
            } else {
                hbar = below;
            }
        }
    }
    JvpGrads {
        input,
        weights,
        biases,
        w_out: w_out_grad,
        b_out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_ops::dense::DenseAct;
    use crate::cpu_ops::testing::{assert_gradients, f64s, geometries, mlp_params, values};

    fn act64(act: DenseAct, z: f64) -> f64 {
        match act {
            DenseAct::Identity => z,
            DenseAct::Silu => z / (1.0 + (-z).exp()),
            DenseAct::Tanh => z.tanh(),
        }
    }

    /// `[h₀, W₁, b₁, …, W_L, b_L, W_o, b_o]` in f64.
    type Params = Vec<Vec<f64>>;

    /// `y = f(h₀)` in f64.
    fn mlp64(g: &MlpGeom, p: &Params) -> Vec<f64> {
        let (n, layers) = (g.n, g.widths.len());
        let mut h = p[0].clone();
        let mut kin = g.d;
        for k in 0..layers {
            let m = g.widths[k];
            let (w, b) = (&p[1 + 2 * k], &p[2 + 2 * k]);
            h = (0..n * m)
                .map(|idx| {
                    let (i, j) = (idx / m, idx % m);
                    act64(
                        g.act,
                        b[j] + (0..kin).map(|l| h[i * kin + l] * w[l * m + j]).sum::<f64>(),
                    )
                })
                .collect();
            kin = m;
        }
        let (w, b) = (&p[1 + 2 * layers], &p[2 + 2 * layers]);
        let xc = g.x_cols;
        (0..n * xc)
            .map(|idx| {
                let (i, j) = (idx / xc, idx % xc);
                b[j] + (0..kin)
                    .map(|l| h[i * kin + l] * w[l * xc + j])
                    .sum::<f64>()
            })
            .collect()
    }

    /// `q = vᵀ(∂y/∂x)v` per row by central differences of `y` along `v` (step 1e-5 on a
    /// smooth f64 function: error ~1e-10).
    fn quad64(g: &MlpGeom, p: &Params, v: &[f64]) -> Vec<f64> {
        let eps = 1e-5;
        let shifted = |sign: f64| {
            let mut q = p.clone();
            for i in 0..g.n {
                for j in 0..g.x_cols {
                    q[0][i * g.d + j] += sign * eps * v[i * g.x_cols + j];
                }
            }
            mlp64(g, &q)
        };
        let (up, down) = (shifted(1.0), shifted(-1.0));
        (0..g.n)
            .map(|i| {
                (0..g.x_cols)
                    .map(|j| {
                        let idx = i * g.x_cols + j;
                        v[idx] * (up[idx] - down[idx]) / (2.0 * eps)
                    })
                    .sum()
            })
            .collect()
    }

    #[test]
    fn output_quadratic_form_and_gradients_match_f64_and_central_differences() {
        for g in geometries() {
            let (n, xc, layers) = (g.n, g.x_cols, g.widths.len());
            let p32 = mlp_params(&g, xc, true);
            let v = values(n * xc, 40, 1.0);
            let (ybar, qbar) = (values(n * xc, 50, 1.0), values(n, 51, 1.0));
            let ws: Vec<&[f32]> = (0..layers).map(|k| &p32[1 + 2 * k][..]).collect();
            let bs: Vec<&[f32]> = (0..layers).map(|k| &p32[2 + 2 * k][..]).collect();
            let (wo, bo) = (&p32[1 + 2 * layers], &p32[2 + 2 * layers]);
            let (y, q, saved) = jvp_forward(&g, &p32[0], &v, &ws, &bs, wo, bo, true);
            let p64: Params = p32.iter().map(|a| f64s(a)).collect();
            let v64 = f64s(&v);
            for (a, b) in y.iter().zip(mlp64(&g, &p64)) {
                assert!((*a as f64 - b).abs() < 2e-5 * (1.0 + b.abs()), "{g:?} y");
            }
            for (a, b) in q.iter().zip(quad64(&g, &p64, &v64)) {
                assert!(
                    (*a as f64 - b).abs() < 1e-4 * (1.0 + b.abs()),
                    "{g:?} q {a} {b}"
                );
            }
            let (y2, q2, _) = jvp_forward(&g, &p32[0], &v, &ws, &bs, wo, bo, false);
            assert_eq!((y2, q2), (y, q), "saving changes nothing");
            let grads = jvp_backward(&g, &p32[0], &v, &ws, wo, &saved, &ybar, &qbar, true);
            let mut got = vec![grads.input.clone().unwrap()];
            for k in 0..layers {
                got.push(grads.weights[k].clone());
                got.push(grads.biases[k].clone());
            }
            got.push(grads.w_out.clone());
            got.push(grads.b_out.clone());
            // L = Σ ȳ ⊙ y + Σ q̄ q, q itself by a nested difference of step 1e-5.
            let (yb64, qb64) = (f64s(&ybar), f64s(&qbar));
            let objective = |p: &[Vec<f64>]| {
                let p = p.to_vec();
                let y: f64 = mlp64(&g, &p).iter().zip(&yb64).map(|(a, b)| a * b).sum();
                let q: f64 = quad64(&g, &p, &v64)
                    .iter()
                    .zip(&qb64)
                    .map(|(a, b)| a * b)
                    .sum();
                y + q
            };
            assert_gradients(&format!("{g:?}"), &got, &p64, objective, 2e-4);
            let again = jvp_backward(&g, &p32[0], &v, &ws, wo, &saved, &ybar, &qbar, false);
            assert!(again.input.is_none());
            assert_eq!(again.weights, grads.weights, "bit-identical rerun");
        }
    }
}
