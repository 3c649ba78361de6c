//! The fused GroupNorm (+ shift, + SiLU) of `cpu_ops` against a direct f64 implementation and
//! its central differences, against burn's `GroupNorm` (values and the gradients of input,
//! shift, γ and β on Flex and NdArray), and run to run.

use burn::backend::{Autodiff, Flex, NdArray};
use burn::module::{AutodiffModule, Param};
use burn::nn::{GroupNorm, GroupNormConfig};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use score_nets::cpu_ops::norm::{NormGeom, group_norm_backward, group_norm_forward};
use score_nets::cpu_ops::{group_norm, with_reference_ops};

mod common;
use common::{assert_close, values};

/// `(n, c, h, w, groups)`: odd sizes, one group, one channel per group, batch 1.
const CASES: &[(usize, usize, usize, usize, usize)] = &[
    (2, 4, 3, 3, 2),
    (1, 6, 7, 7, 3),
    (3, 4, 2, 5, 1),
    (2, 3, 1, 1, 3),
    (2, 8, 4, 4, 4),
];

fn geom(case: (usize, usize, usize, usize, usize), silu: bool) -> NormGeom {
    let (n, c, h, w, groups) = case;
    NormGeom {
        n,
        c,
        hw: h * w,
        groups,
        eps: 1e-5,
        silu,
    }
}

/// The op written out directly in f64: the oracle.
fn forward_f64(g: &NormGeom, x: &[f64], s: &[f64], gamma: &[f64], beta: &[f64]) -> Vec<f64> {
    let pg = g.c / g.groups;
    let m = (pg * g.hw) as f64;
    let mut y = vec![0.0; x.len()];
    for b in 0..g.n {
        for grp in 0..g.groups {
            let idx = |c: usize, i: usize| (b * g.c + c) * g.hw + i;
            let v = |c: usize, i: usize| x[idx(c, i)] + s[b * g.c + c];
            let chans = grp * pg..(grp + 1) * pg;
            let mean = chans
                .clone()
                .flat_map(|c| (0..g.hw).map(move |i| (c, i)))
                .map(|(c, i)| v(c, i))
                .sum::<f64>()
                / m;
            let var = chans
                .clone()
                .flat_map(|c| (0..g.hw).map(move |i| (c, i)))
                .map(|(c, i)| (v(c, i) - mean).powi(2))
                .sum::<f64>()
                / m;
            for c in chans {
                for i in 0..g.hw {
                    let z = gamma[c] * (v(c, i) - mean) / (var + f64::from(g.eps)).sqrt() + beta[c];
                    y[idx(c, i)] = if g.silu { z / (1.0 + (-z).exp()) } else { z };
                }
            }
        }
    }
    y
}

fn wide(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// Inputs of one case: x (scaled and offset so the statistics matter), shift, γ, β.
fn inputs(g: &NormGeom, seed: u32) -> [Vec<f32>; 4] {
    let x = values(g.n * g.c * g.hw, seed)
        .iter()
        .map(|v| 2.0 * v + 0.5)
        .collect();
    let s = values(g.n * g.c, seed + 1);
    let gamma = values(g.c, seed + 2)
        .iter()
        .map(|v| 1.0 + 0.5 * v)
        .collect();
    let beta = values(g.c, seed + 3);
    [x, s, gamma, beta]
}

#[test]
fn host_forward_matches_the_f64_oracle() {
    for (i, &case) in CASES.iter().enumerate() {
        for silu in [true, false] {
            let g = geom(case, silu);
            let [x, s, gm, bt] = inputs(&g, i as u32 * 10);
            let (y, stats) = group_norm_forward(&g, &x, &s, &gm, &bt);
            let oracle = forward_f64(&g, &wide(&x), &wide(&s), &wide(&gm), &wide(&bt));
            for (j, (a, o)) in y.iter().zip(&oracle).enumerate() {
                // f32 statistics over ≤ 150 values: a few ulps of the O(1) outputs.
                assert!(
                    (f64::from(*a) - o).abs() <= 1e-5 * (1.0 + o.abs()),
                    "{case:?} silu {silu} y[{j}]: {a} vs {o}"
                );
            }
            assert_eq!(stats.mean.len(), g.n * g.groups);
            assert!(stats.rstd.iter().all(|r| r.is_finite() && *r > 0.0));
        }
    }
}

/// The analytic f32 backward against central differences of the f64 oracle of
/// `L = Σ r ⊙ y(x, s, γ, β)` (step 1e-4: truncation error ~1e-8, far below the f32 backward's
/// own rounding, which the bound 2e-4·(1 + |g|) covers).
#[test]
fn host_backward_matches_central_differences() {
    for (i, &case) in CASES.iter().enumerate() {
        for silu in [true, false] {
            let g = geom(case, silu);
            let [x, s, gm, bt] = inputs(&g, 100 + i as u32 * 10);
            let r = values(x.len(), 7 + i as u32);
            let grads = group_norm_backward(
                &g,
                &x,
                &s,
                &gm,
                &bt,
                &group_norm_forward(&g, &x, &s, &gm, &bt).1,
                &r,
                [true, true, true, true],
            );
            let base = [wide(&x), wide(&s), wide(&gm), wide(&bt)];
            let loss = |args: &[Vec<f64>; 4]| -> f64 {
                forward_f64(&g, &args[0], &args[1], &args[2], &args[3])
                    .iter()
                    .zip(&r)
                    .map(|(y, r)| y * f64::from(*r))
                    .sum()
            };
            let analytic = [
                grads.x.as_ref().unwrap(),
                grads.shift.as_ref().unwrap(),
                grads.gamma.as_ref().unwrap(),
                grads.beta.as_ref().unwrap(),
            ];
            for (which, name) in ["dx", "dshift", "dγ", "dβ"].iter().enumerate() {
                assert_eq!(analytic[which].len(), base[which].len(), "{name}");
                for j in 0..base[which].len() {
                    let eps = 1e-4;
                    let (mut plus, mut minus) = (base.clone(), base.clone());
                    plus[which][j] += eps;
                    minus[which][j] -= eps;
                    let numeric = (loss(&plus) - loss(&minus)) / (2.0 * eps);
                    let a = f64::from(analytic[which][j]);
                    assert!(
                        (numeric - a).abs() <= 2e-4 * (1.0 + a.abs()),
                        "{case:?} silu {silu} {name}[{j}]: analytic {a}, central difference {numeric}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_backward_computes_only_what_is_asked() {
    let g = geom(CASES[0], true);
    let [x, s, gm, bt] = inputs(&g, 3);
    let stats = group_norm_forward(&g, &x, &s, &gm, &bt).1;
    let all = group_norm_backward(&g, &x, &s, &gm, &bt, &stats, &x, [true; 4]);
    let some = group_norm_backward(&g, &x, &s, &gm, &bt, &stats, &x, [false, true, true, false]);
    assert!(some.x.is_none() && some.beta.is_none());
    assert_eq!(some.shift, all.shift);
    assert_eq!(some.gamma, all.gamma);
}

fn norm<B: Backend>(c: usize, groups: usize, seed: u32, dev: &B::Device) -> GroupNorm<B> {
    let mut norm = GroupNormConfig::new(groups, c).init::<B>(dev);
    let gamma: Vec<f32> = values(c, seed).iter().map(|v| 1.0 + 0.5 * v).collect();
    norm.gamma = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(gamma, [c]),
        dev,
    )));
    norm.beta = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(values(c, seed + 1), [c]),
        dev,
    )));
    norm
}

fn tensor<B: Backend, const D: usize>(
    shape: [usize; D],
    seed: u32,
    dev: &B::Device,
) -> Tensor<B, D> {
    let len = shape.iter().product();
    Tensor::from_data(TensorData::new(values(len, seed), shape), dev)
}

/// Values and gradients of the fused op against burn's composed ops, on `Autodiff<B>` and on
/// `B`, with and without the shift and the SiLU.
fn check_against_reference<B: Backend>(dev: &B::Device) {
    type A<B> = Autodiff<B>;
    for (i, &(n, c, h, w, groups)) in CASES.iter().enumerate() {
        for (silu, with_shift) in [(true, true), (true, false), (false, false)] {
            let what = format!("case {i} silu {silu} shift {with_shift}");
            let seed = 1000 + i as u32 * 10;
            let norm = norm::<A<B>>(c, groups, seed, dev);
            let x: Tensor<A<B>, 4> = tensor([n, c, h, w], seed + 2, dev)
                .mul_scalar(2.0)
                .add_scalar(0.5)
                .require_grad();
            let s: Tensor<A<B>, 2> = tensor([n, c], seed + 3, dev).require_grad();
            let shift = with_shift.then(|| s.clone());
            let fast = group_norm(&norm, x.clone(), shift.clone(), silu);
            let reference = with_reference_ops(|| group_norm(&norm, x.clone(), shift, silu));
            assert_close(&what, fast.clone().inner(), reference.clone().inner());
            let r: Tensor<A<B>, 4> = tensor([n, c, h, w], seed + 4, dev);
            let gf = (fast * r.clone()).sum().backward();
            let gr = (reference * r).sum().backward();
            let grad = |t: &Tensor<A<B>, 4>, g| t.grad(g).unwrap();
            assert_close(&format!("{what} dx"), grad(&x, &gf), grad(&x, &gr));
            if with_shift {
                assert_close(
                    &format!("{what} dshift"),
                    s.grad(&gf).unwrap(),
                    s.grad(&gr).unwrap(),
                );
            }
            let gamma = norm.gamma.as_ref().unwrap().val();
            let beta = norm.beta.as_ref().unwrap().val();
            assert_close(
                &format!("{what} dγ"),
                gamma.grad(&gf).unwrap(),
                gamma.grad(&gr).unwrap(),
            );
            assert_close(
                &format!("{what} dβ"),
                beta.grad(&gf).unwrap(),
                beta.grad(&gr).unwrap(),
            );
            // The plain backend's forward.
            let plain: GroupNorm<B> = norm.valid();
            let (x, s) = (x.inner(), s.inner());
            let shift = with_shift.then(|| s.clone());
            let fast = group_norm(&plain, x.clone(), shift.clone(), silu);
            let reference = with_reference_ops(|| group_norm(&plain, x, shift, silu));
            assert_close(&format!("{what} (no autodiff)"), fast, reference);
        }
    }
}

#[test]
fn fused_norm_matches_burn_on_flex() {
    check_against_reference::<Flex>(&Default::default());
}

#[test]
fn fused_norm_matches_burn_on_ndarray() {
    check_against_reference::<NdArray<f32>>(&Default::default());
}

#[test]
fn host_kernels_are_bit_identical_run_to_run() {
    let g = geom((5, 8, 7, 7, 4), true);
    let [x, s, gm, bt] = inputs(&g, 42);
    let run = || {
        let (y, stats) = group_norm_forward(&g, &x, &s, &gm, &bt);
        let d = group_norm_backward(&g, &x, &s, &gm, &bt, &stats, &y, [true; 4]);
        (y, d.x, d.shift, d.gamma, d.beta)
    };
    assert_eq!(run(), run());
}
