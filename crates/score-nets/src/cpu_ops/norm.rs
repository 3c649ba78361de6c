//! GroupNorm fused with a per-channel shift before it and an optional SiLU after it, on host
//! `f32` slices in NCHW layout, with its backward.
//!
//! The op is `y = act(γ_c · (v − μ_g) / √(σ²_g + ε) + β_c)` with `v = x + s[n, c]`, where `μ_g`
//! and `σ²_g` are the mean and (biased) variance of `v` over the `c/G · h·w` values of group `g`
//! of one sample, and `act` is SiLU or the identity: burn's `GroupNorm` (the shift is the U-Net's
//! time embedding, added just before its second norm). Composed from burn's ops this is about a
//! dozen tensor ops and as many autodiff nodes; here it is one pass for the statistics and one
//! for the output, and two for the backward.
//!
//! Work is split over samples with rayon, and the reductions across samples (the gradients of
//! `γ` and `β`) sum per-sample partials in sample order, so results are bit-identical run to
//! run. Sums inside a group use eight fixed lanes (vectorisable, fixed order).

use super::{assume_written, output_buffer, vmath, written};
use rayon::prelude::*;

/// The shape of one fused norm: input `[n, c, hw]` in `groups` groups of channels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormGeom {
    /// Batch size.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Spatial size `h · w`.
    pub hw: usize,
    /// Groups (divides `c`).
    pub groups: usize,
    /// Added to the variance.
    pub eps: f32,
    /// Whether SiLU follows the norm.
    pub silu: bool,
}

impl NormGeom {
    /// Whether these kernels handle the shape: sizes non-zero and the groups dividing the
    /// channels.
    pub fn is_valid(&self) -> bool {
        self.n > 0
            && self.c > 0
            && self.hw > 0
            && self.groups > 0
            && self.c.is_multiple_of(self.groups)
            && self.eps.is_finite()
            && self.eps >= 0.0
    }

    fn per_group(&self) -> usize {
        self.c / self.groups
    }

    /// Values in one group of one sample.
    fn group_len(&self) -> usize {
        self.per_group() * self.hw
    }

    fn sample_len(&self) -> usize {
        self.c * self.hw
    }
}

/// Sum of `f(x)` over a slice, in eight fixed lanes combined in a fixed order.
#[inline]
pub(super) fn lane_sum(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for ch in chunks {
        for (a, &x) in acc.iter_mut().zip(ch) {
            *a += f(x);
        }
    }
    for (a, &x) in acc.iter_mut().zip(rest) {
        *a += f(x);
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// Sum of `f(x, y)` over two slices of one length, in eight fixed lanes.
#[inline]
pub(super) fn lane_sum2(xs: &[f32], ys: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0.0f32; 8];
    let xc = xs.chunks_exact(8);
    let yc = ys.chunks_exact(8);
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (cx, cy) in xc.zip(yc) {
        for ((a, &x), &y) in acc.iter_mut().zip(cx).zip(cy) {
            *a += f(x, y);
        }
    }
    for ((a, &x), &y) in acc.iter_mut().zip(xr).zip(yr) {
        *a += f(x, y);
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// Mean and reciprocal standard deviation of every `(sample, group)` of `x + shift`, in that
/// order (`n · groups` of each).
fn statistics(g: &NormGeom, x: &[f32], shift: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (pg, hw, m) = (g.per_group(), g.hw, g.group_len() as f32);
    let stats: Vec<(f32, f32)> = x
        .par_chunks(g.sample_len())
        .enumerate()
        .flat_map_iter(|(b, xb)| {
            (0..g.groups).map(move |grp| {
                let channels = grp * pg..(grp + 1) * pg;
                let s = |c: usize| shift[b * g.c + c];
                let row = |c: usize| &xb[c * hw..(c + 1) * hw];
                // Two passes (mean, then squared deviations): no cancellation.
                let sum: f32 = channels
                    .clone()
                    .map(|c| lane_sum(row(c), |v| v) + s(c) * hw as f32)
                    .sum();
                let mean = sum / m;
                let sq: f32 = channels
                    .map(|c| {
                        let s = s(c);
                        lane_sum(row(c), |v| ((v + s) - mean) * ((v + s) - mean))
                    })
                    .sum();
                (mean, 1.0 / (sq / m + g.eps).sqrt())
            })
        })
        .collect();
    stats.into_iter().unzip()
}

/// The saved statistics of a forward pass, for [`group_norm_backward`].
#[derive(Clone, Debug)]
pub struct NormStats {
    /// Mean per `(sample, group)`.
    pub mean: Vec<f32>,
    /// `1 / √(σ² + ε)` per `(sample, group)`.
    pub rstd: Vec<f32>,
}

/// `y = act(γ · normalise(x + shift) + β)` with the statistics it used.
///
/// # Shapes
/// - `x`: `[n, c, hw]`, `shift`: `[n, c]`, `gamma`, `beta`: `[c]`; output like `x`.
pub fn group_norm_forward(
    g: &NormGeom,
    x: &[f32],
    shift: &[f32],
    gamma: &[f32],
    beta: &[f32],
) -> (Vec<f32>, NormStats) {
    assert!(g.is_valid(), "invalid norm geometry {g:?}");
    assert_eq!(x.len(), g.n * g.sample_len(), "x does not match {g:?}");
    assert_eq!(shift.len(), g.n * g.c, "shift does not match {g:?}");
    assert_eq!(
        (gamma.len(), beta.len()),
        (g.c, g.c),
        "γ, β do not match {g:?}"
    );
    let (mean, rstd) = statistics(g, x, shift);
    let mut y = output_buffer(x.len());
    let (pg, hw) = (g.per_group(), g.hw);
    y.par_chunks_mut(g.sample_len())
        .zip(x.par_chunks(g.sample_len()))
        .enumerate()
        .for_each(|(b, (yb, xb))| {
            for c in 0..g.c {
                let k = b * g.groups + c / pg;
                // z = ((x + s) − μ)·(r·γ) + β, in this order: x + s − μ is exactly 0 where a
                // group holds one value, as in burn's composed ops.
                let (s, mu) = (shift[b * g.c + c], mean[k]);
                let (a, o) = (rstd[k] * gamma[c], beta[c]);
                let (src, dst) = (&xb[c * hw..(c + 1) * hw], &mut yb[c * hw..(c + 1) * hw]);
                if g.silu {
                    // Branch-free SiLU (`vmath`), in AVX-512F or AVX2 where the CPU has it:
                    // libm's scalar `expf` was 4 % of the U-Net's train step.
                    vmath::with_simd(
                        #[inline(always)]
                        || {
                            for (d, &v) in dst.iter_mut().zip(src) {
                                d.write(vmath::silu(((v + s) - mu) * a + o));
                            }
                        },
                    );
                } else {
                    for (d, &v) in dst.iter_mut().zip(src) {
                        d.write(((v + s) - mu) * a + o);
                    }
                }
            }
        });
    // SAFETY: the samples' chunks cover `y`, and each is written channel by channel, every
    // value of every channel.
    (unsafe { written(y) }, NormStats { mean, rstd })
}

/// Gradients of [`group_norm_forward`]'s inputs; each is `None` where it was not asked for.
#[derive(Clone, Debug, Default)]
pub struct NormGrads {
    /// `∂L/∂x`, `[n, c, hw]`.
    pub x: Option<Vec<f32>>,
    /// `∂L/∂shift`, `[n, c]`.
    pub shift: Option<Vec<f32>>,
    /// `∂L/∂γ`, `[c]`.
    pub gamma: Option<Vec<f32>>,
    /// `∂L/∂β`, `[c]`.
    pub beta: Option<Vec<f32>>,
}

/// The backward of [`group_norm_forward`] given `dy = ∂L/∂y` and the forward's statistics.
/// `want` says which of `x`, `shift`, `γ`, `β` need a gradient.
#[allow(clippy::too_many_arguments)] // the forward's five inputs, its statistics, dy and the mask
pub fn group_norm_backward(
    g: &NormGeom,
    x: &[f32],
    shift: &[f32],
    gamma: &[f32],
    beta: &[f32],
    stats: &NormStats,
    dy: &[f32],
    want: [bool; 4],
) -> NormGrads {
    assert!(g.is_valid(), "invalid norm geometry {g:?}");
    assert_eq!(x.len(), g.n * g.sample_len(), "x does not match {g:?}");
    assert_eq!(dy.len(), x.len(), "dy does not match {g:?}");
    let (pg, hw, m) = (g.per_group(), g.hw, g.group_len() as f32);
    let [want_x, want_shift, want_gamma, want_beta] = want;
    let need_dx = want_x || want_shift;
    // dz, then dx̂ = dz·γ, then dx, in one buffer; per sample the shift's gradient and per
    // channel Σ dz·x̂ and Σ dz.
    let mut all = output_buffer(x.len());
    let per_sample: Vec<Partial> = all
        .par_chunks_mut(g.sample_len())
        .zip(x.par_chunks(g.sample_len()))
        .zip(dy.par_chunks(g.sample_len()))
        .enumerate()
        .map(|(b, ((buf, xb), dyb))| {
            let mut dgamma = vec![0.0f32; g.c];
            let mut dbeta = vec![0.0f32; g.c];
            for c in 0..g.c {
                let k = b * g.groups + c / pg;
                let (mu, r) = (stats.mean[k], stats.rstd[k]);
                let s = shift[b * g.c + c];
                let (a, o) = (r * gamma[c], beta[c]);
                let rng = c * hw..(c + 1) * hw;
                let (src, d_out, dst) = (&xb[rng.clone()], &dyb[rng.clone()], &mut buf[rng]);
                if g.silu {
                    vmath::with_simd(
                        #[inline(always)]
                        || {
                            for ((d, &v), &gy) in dst.iter_mut().zip(src).zip(d_out) {
                                d.write(gy * vmath::silu_grad(((v + s) - mu) * a + o));
                            }
                        },
                    );
                } else {
                    for (d, &gy) in dst.iter_mut().zip(d_out) {
                        d.write(gy);
                    }
                }
                // SAFETY: both branches just wrote every value of `dst` (`src`, `d_out` and
                // `dst` are one channel long).
                let dst = unsafe { assume_written(dst) };
                dgamma[c] = lane_sum2(dst, src, |dz, v| dz * ((v + s) - mu)) * r;
                dbeta[c] = lane_sum(dst, |dz| dz);
                if need_dx {
                    for d in dst.iter_mut() {
                        *d *= gamma[c];
                    }
                }
            }
            // SAFETY: the loop above wrote every channel of the sample.
            let buf = unsafe { assume_written(buf) };
            let mut dshift = Vec::new();
            if need_dx {
                for grp in 0..g.groups {
                    let k = b * g.groups + grp;
                    let (mu, r) = (stats.mean[k], stats.rstd[k]);
                    let channels = grp * pg..(grp + 1) * pg;
                    // Σ dx̂ and Σ dx̂·x̂ over the group.
                    let (mut sum, mut dot) = (0.0f32, 0.0f32);
                    for c in channels.clone() {
                        let rng = c * hw..(c + 1) * hw;
                        let s = shift[b * g.c + c];
                        sum += lane_sum(&buf[rng.clone()], |d| d);
                        dot +=
                            lane_sum2(&buf[rng.clone()], &xb[rng], |d, v| d * ((v + s) - mu)) * r;
                    }
                    let (mean_d, mean_dx) = (sum / m, dot / m);
                    for c in channels {
                        let rng = c * hw..(c + 1) * hw;
                        let s = shift[b * g.c + c];
                        for (d, &v) in buf[rng.clone()].iter_mut().zip(&xb[rng]) {
                            let xhat = ((v + s) - mu) * r;
                            *d = r * (*d - mean_d - xhat * mean_dx);
                        }
                    }
                }
                if want_shift {
                    dshift = (0..g.c)
                        .map(|c| lane_sum(&buf[c * hw..(c + 1) * hw], |d| d))
                        .collect();
                }
            }
            Partial {
                dshift,
                dgamma,
                dbeta,
            }
        })
        .collect();
    // Across samples in sample order: the same rounding whatever rayon's schedule.
    let total = |f: fn(&Partial) -> &[f32]| {
        let mut acc = vec![0.0f32; g.c];
        for p in &per_sample {
            for (a, v) in acc.iter_mut().zip(f(p)) {
                *a += v;
            }
        }
        acc
    };
    // SAFETY: the samples' chunks cover `all`, and each was written in full above.
    let all = unsafe { written(all) };
    NormGrads {
        x: want_x.then_some(all),
        shift: want_shift.then(|| per_sample.iter().flat_map(|p| &p.dshift).copied().collect()),
        gamma: want_gamma.then(|| total(|p| &p.dgamma)),
        beta: want_beta.then(|| total(|p| &p.dbeta)),
    }
}

/// One sample's share of the backward.
struct Partial {
    dshift: Vec<f32>,
    dgamma: Vec<f32>,
    dbeta: Vec<f32>,
}
