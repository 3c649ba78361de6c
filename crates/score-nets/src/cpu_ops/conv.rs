//! 2-D convolution on host `f32` slices in NCHW layout: im2col + GEMM forward, and the two GEMM
//! backwards (weight gradient `dY · im2col(x)ᵀ`; input gradient, for stride 1, the forward
//! convolution of `dY` with the flipped, transposed kernel, and otherwise `col2im(Wᵀ · dY)`).
//! With stride 1 and both gradients wanted, the im2col matrix of `dY` serves both
//! (`backward_from_dy_columns`).
//!
//! 3×3 stride-1 convolutions with at least 16 channels in and out and outputs of 5×5 and up
//! (nearly all of a U-Net's) run Winograd's F(2×2, 3×3) instead (module `winograd`): 2.25×
//! fewer GEMM FLOPs, paid for with input and output transforms. Forward, and where the batch
//! gives wide enough GEMMs, backward: the input gradient as the transposed convolution (again
//! such a convolution), the weight gradient from the same transform of `dY`.
//!
//! With 33–64 output channels the forward GEMM writes its output channels-last and a tiled
//! transpose puts it back into NCHW; the weight gradient is computed transposed
//! (`dWᵀ = col · dYᵀ`) and transposed once at the end. Both orientations are the faster ones for
//! `gemm` on those shapes.
//!
//! Work is split over fixed chunks of the batch with rayon, and every reduction (the weight and
//! bias gradients) sums its per-chunk partials in chunk order, so the results do not depend on
//! how rayon schedules the chunks: outputs are bit-identical run to run.

use gemm::Parallelism;
use rayon::prelude::*;

use super::norm::lane_sum;
use super::winograd;

/// Samples per parallel task in the backward pass. Fixed (not derived from the thread count) so
/// that the order of the weight-gradient reduction, and hence its rounding, never changes.
const BACKWARD_CHUNK: usize = 4;

/// The shape of one convolution: input `[n, ci, h, w]`, weight `[co, ci, kh, kw]`, stride
/// `(sh, sw)`, zero padding `top, left, bottom, right`; dilation 1 and one group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub ci: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub co: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Vertical stride.
    pub sh: usize,
    /// Horizontal stride.
    pub sw: usize,
    /// Zero rows above.
    pub pt: usize,
    /// Zero columns on the left.
    pub pl: usize,
    /// Zero rows below.
    pub pb: usize,
    /// Zero columns on the right.
    pub pr: usize,
}

impl ConvGeom {
    /// Output height (meaningful when [`is_valid`](Self::is_valid)).
    pub fn oh(&self) -> usize {
        (self.h + self.pt + self.pb - self.kh) / self.sh + 1
    }

    /// Output width.
    pub fn ow(&self) -> usize {
        (self.w + self.pl + self.pr - self.kw) / self.sw + 1
    }

    /// Whether the geometry is one these kernels handle: every size and stride non-zero and the
    /// kernel no larger than the padded input.
    pub fn is_valid(&self) -> bool {
        let sizes = [
            self.n, self.ci, self.h, self.w, self.co, self.kh, self.kw, self.sh, self.sw,
        ];
        sizes.iter().all(|&s| s > 0)
            && self.h + self.pt + self.pb >= self.kh
            && self.w + self.pl + self.pr >= self.kw
    }

    fn hw(&self) -> usize {
        self.h * self.w
    }

    fn ohw(&self) -> usize {
        self.oh() * self.ow()
    }

    /// Rows of the im2col matrix: `ci · kh · kw`.
    fn k(&self) -> usize {
        self.ci * self.kh * self.kw
    }

    /// A 1×1, stride-1, unpadded convolution: the input already is its im2col matrix.
    fn pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.sh == 1
            && self.sw == 1
            && self.pt + self.pl + self.pb + self.pr == 0
    }
}

/// Visits, for every im2col row `(c, i, j)` and output row `oy`: `f(segment, input_row, j)` with
/// the offset of the `ow`-long segment of the column matrix and the offset of the input row it
/// reads (`None` for a padding row).
#[inline]
fn for_each_col_row(g: &ConvGeom, mut f: impl FnMut(usize, Option<usize>, usize)) {
    let (oh, ow) = (g.oh(), g.ow());
    let ohw = oh * ow;
    for c in 0..g.ci {
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = ((c * g.kh + i) * g.kw + j) * ohw;
                for oy in 0..oh {
                    let iy = (oy * g.sh + i) as isize - g.pt as isize;
                    let src =
                        (iy >= 0 && (iy as usize) < g.h).then(|| c * g.hw() + iy as usize * g.w);
                    f(row + oy * ow, src, j);
                }
            }
        }
    }
}

/// The output columns `[lo, hi)` of a row whose input column `ox·sw + j − pl` is inside `0..w`.
#[inline]
fn valid_cols(g: &ConvGeom, j: usize, ow: usize) -> (usize, usize) {
    // ox·sw + j ≥ pl  and  ox·sw + j < w + pl
    let lo = if g.pl > j {
        (g.pl - j).div_ceil(g.sw)
    } else {
        0
    };
    let hi = if g.w + g.pl > j {
        (g.w + g.pl - j).div_ceil(g.sw)
    } else {
        0
    };
    (lo.min(ow), hi.min(ow).max(lo.min(ow)))
}

/// `col[K, oh·ow] = im2col(xb)` for one sample `xb: [ci, h, w]`.
fn im2col(g: &ConvGeom, xb: &[f32], col: &mut [f32]) {
    if g.sh == 1 && g.sw == 1 && g.ow() == g.w {
        return im2col_same_width(g, xb, col);
    }
    let ow = g.ow();
    for_each_col_row(g, |dst, src, j| {
        let seg = &mut col[dst..dst + ow];
        let Some(src) = src else {
            seg.fill(0.0);
            return;
        };
        let row = &xb[src..src + g.w];
        let (lo, hi) = valid_cols(g, j, ow);
        seg[..lo].fill(0.0);
        seg[hi..].fill(0.0);
        if g.sw == 1 {
            let start = lo + j - g.pl;
            seg[lo..hi].copy_from_slice(&row[start..start + (hi - lo)]);
        } else {
            for (ox, v) in seg[lo..hi].iter_mut().enumerate() {
                *v = row[(lo + ox) * g.sw + j - g.pl];
            }
        }
    });
}

/// [`im2col`] for stride 1 where the output is as wide as the input (`pl + pr = kw − 1`, as in
/// every 3×3 "same" convolution of the U-Net). Then the im2col row of `(c, i, j)` is the input
/// channel shifted by `(i − pt)` rows and `(j − pl)` columns: its valid output rows are one
/// contiguous copy (a copy per output row made the short rows of 7–28 values cost more in
/// `memmove` calls than in bytes), after which the `|j − pl|` columns that crossed the left or
/// right edge of a row are set to zero.
fn im2col_same_width(g: &ConvGeom, xb: &[f32], col: &mut [f32]) {
    let (oh, w, hw) = (g.oh(), g.w, g.hw());
    let ohw = oh * w;
    for c in 0..g.ci {
        for i in 0..g.kh {
            // Output rows oy whose input row oy + i − pt lies inside 0..h.
            let oy_lo = g.pt.saturating_sub(i).min(oh);
            let oy_hi = (g.h + g.pt).saturating_sub(i).min(oh).max(oy_lo);
            for j in 0..g.kw {
                let dst = &mut col[((c * g.kh + i) * g.kw + j) * ohw..][..ohw];
                dst[..oy_lo * w].fill(0.0);
                dst[oy_hi * w..].fill(0.0);
                if oy_hi == oy_lo {
                    continue;
                }
                let shift = j as isize - g.pl as isize;
                let rows = &mut dst[oy_lo * w..oy_hi * w];
                // Input offset of output (oy_lo, 0): row oy_lo + i − pt, column `shift`.
                let src0 = (c * hw + (oy_lo + i - g.pt) * w) as isize + shift;
                let len = rows.len() as isize;
                // The first −shift (or last shift) values of the block read outside this
                // channel's rows: they are edge columns, zeroed below, so they are not copied.
                let (d_lo, d_hi) = (0isize.max(-shift), len - 0isize.max(shift));
                if d_lo < d_hi {
                    let src = (src0 + d_lo) as usize;
                    rows[d_lo as usize..d_hi as usize]
                        .copy_from_slice(&xb[src..src + (d_hi - d_lo) as usize]);
                }
                let (left, right) = ((-shift).clamp(0, w as isize), shift.clamp(0, w as isize));
                let (left, right) = (left as usize, right as usize);
                for row in rows.chunks_exact_mut(w) {
                    zero_edge(&mut row[..left]);
                    zero_edge(&mut row[w - right..]);
                }
            }
        }
    }
}

/// Zeroes the 0–2 edge values of an im2col row without a `memset` call each (a 3×3 kernel's
/// edge is one value; a call per row cost more than the row's copy).
#[inline(always)]
fn zero_edge(edge: &mut [f32]) {
    match edge {
        [] => {}
        [a] => *a = 0.0,
        [a, b] => (*a, *b) = (0.0, 0.0),
        _ => edge.fill(0.0),
    }
}

/// `dxb[ci, h, w] += col2im(col)` for one sample (the adjoint of [`im2col`]).
fn col2im(g: &ConvGeom, col: &[f32], dxb: &mut [f32]) {
    let ow = g.ow();
    for_each_col_row(g, |dst, src, j| {
        let Some(src) = src else { return };
        let seg = &col[dst..dst + ow];
        let row = &mut dxb[src..src + g.w];
        let (lo, hi) = valid_cols(g, j, ow);
        if g.sw == 1 {
            let start = lo + j - g.pl;
            for (d, s) in row[start..start + (hi - lo)].iter_mut().zip(&seg[lo..hi]) {
                *d += *s;
            }
        } else {
            for (ox, s) in seg[lo..hi].iter().enumerate() {
                row[(lo + ox) * g.sw + j - g.pl] += *s;
            }
        }
    });
}

/// A dense matrix operand: base slice, row stride and column stride (in elements).
#[derive(Clone, Copy)]
pub(super) struct Mat<'a> {
    pub(super) data: &'a [f32],
    pub(super) rs: usize,
    pub(super) cs: usize,
}

impl Mat<'_> {
    fn check(&self, rows: usize, cols: usize) {
        if rows > 0 && cols > 0 {
            assert!((rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len());
        }
    }
}

/// `dst[m, n] (row-major) = (accumulate ? dst : 0) + lhs[m, k] · rhs[k, n]`.
#[allow(clippy::too_many_arguments)] // gemm's own signature, one flag and the parallelism
pub(super) fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    lhs: Mat<'_>,
    rhs: Mat<'_>,
    par: Parallelism,
) {
    assert!(dst.len() >= m * n);
    lhs.check(m, k);
    rhs.check(k, n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    // SAFETY: the asserts above keep every index `gemm` touches inside the three slices, and
    // `dst` does not alias `lhs` or `rhs` (it is borrowed mutably).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// Thread parallelism inside one GEMM: none when the batch alone keeps every thread busy.
pub(super) fn inner_parallelism(tasks: usize) -> Parallelism {
    let threads = rayon::current_num_threads();
    if threads > 1 && tasks < threads {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    }
}

/// Forward convolution: `y[n, co, oh, ow]` from `x[n, ci, h, w]`, `w[co, ci, kh, kw]` and an
/// optional bias `[co]`. 3×3 stride-1 convolutions with 16 or more channels in and out and an
/// output of 5×5 or more run Winograd's minimal filtering F(2×2, 3×3) (16 multiplications a
/// 2×2 output block where im2col + GEMM does 36), the others im2col + GEMM.
pub fn conv2d_forward(g: &ConvGeom, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    assert!(g.is_valid(), "invalid convolution geometry {g:?}");
    assert_eq!(x.len(), g.n * g.ci * g.hw());
    assert_eq!(w.len(), g.co * g.k());
    if winograd::applies(g) {
        return winograd::forward(g, x, w, bias);
    }
    conv2d_forward_im2col(g, x, w, bias)
}

/// [`conv2d_forward`] by im2col + GEMM, whatever the shape.
pub(super) fn conv2d_forward_im2col(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    // The sizes are checked by `conv2d_forward`, its only caller outside the unit tests.
    let (k, hw, ohw) = (g.k(), g.hw(), g.ohw());
    let mut y = vec![0.0f32; g.n * g.co * ohw];
    let par = inner_parallelism(g.n);
    y.par_chunks_mut(g.co * ohw).enumerate().for_each_init(
        || (Vec::new(), Vec::new()),
        |(col, yt): &mut (Vec<f32>, Vec<f32>), (b, yb)| {
            let xb = &x[b * g.ci * hw..(b + 1) * g.ci * hw];
            let rhs = if g.pointwise() {
                xb
            } else {
                col.resize(k * ohw, 0.0);
                im2col(g, xb, col);
                col
            };
            gemm_from_col(g, rhs, w, bias, yb, yt, par);
        },
    );
    y
}

/// One sample of the forward convolution from its im2col matrix `col[K, ohw]` (or the input
/// itself, for a pointwise convolution): `yb[co, ohw] = W[co, K] · col + bias`. `yt` is scratch
/// for the channels-last orientation ([`channels_last_output`]).
fn gemm_from_col(
    g: &ConvGeom,
    col: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    yb: &mut [f32],
    yt: &mut Vec<f32>,
    par: Parallelism,
) {
    let (k, ohw) = (g.k(), g.ohw());
    if channels_last_output(g.co) {
        // Yᵀ[ohw, co] = colᵀ[ohw, K] · Wᵀ[K, co], then transposed into NCHW.
        yt.resize(ohw * g.co, 0.0);
        let colt = Mat {
            data: col,
            rs: 1,
            cs: ohw,
        };
        let wt = Mat {
            data: w,
            rs: 1,
            cs: k,
        };
        matmul(ohw, g.co, k, yt, false, colt, wt, par);
        transpose_add_bias(ohw, g.co, yt, yb, bias);
        return;
    }
    if let Some(bias) = bias {
        for (row, &bv) in yb.chunks_mut(ohw).zip(bias) {
            row.fill(bv);
        }
    }
    let lhs = Mat {
        data: w,
        rs: k,
        cs: 1,
    };
    let rhs = Mat {
        data: col,
        rs: ohw,
        cs: 1,
    };
    matmul(g.co, ohw, k, yb, bias.is_some(), lhs, rhs, par);
}

/// Whether the forward GEMM writes its output channels-last (`Yᵀ[ohw, co]`, transposed into
/// NCHW afterwards) rather than row by row. `gemm`'s AVX-512 kernel then covers the 33–64 output
/// channels with one 64-row tile: on this machine's U-Net shapes with 64 output channels
/// (`64 × 196 × 576`, `64 × 49 × 576`, `64 × 1024 × 576`) the GEMM and the transpose together ran
/// 5–18 % faster than the row-major GEMM, and with 32, 96, 128 or 192 channels they did not.
/// Fixed by the shape alone, so a given convolution always takes the same path (bit-identical
/// reruns).
fn channels_last_output(co: usize) -> bool {
    (33..=64).contains(&co)
}

/// `dst[o, p] = src[p, o] + bias[o]` (no bias: a plain transpose) for `src: [rows, cols]`, e.g.
/// `[ohw, co]`, in 16 × 16 tiles so that both sides stay in cache lines while they are read and
/// written.
fn transpose_add_bias(
    rows: usize,
    cols: usize,
    src: &[f32],
    dst: &mut [f32],
    bias: Option<&[f32]>,
) {
    const TILE: usize = 16;
    for p0 in (0..rows).step_by(TILE) {
        let p1 = (p0 + TILE).min(rows);
        for o0 in (0..cols).step_by(TILE) {
            for o in o0..(o0 + TILE).min(cols) {
                let b = bias.map_or(0.0, |b| b[o]);
                for (p, d) in (p0..p1).zip(&mut dst[o * rows + p0..o * rows + p1]) {
                    *d = src[p * cols + o] + b;
                }
            }
        }
    }
}

/// Gradients of a convolution; each is present when it was asked for.
#[derive(Debug, Default)]
pub struct ConvGrads {
    /// Input gradient `[n, ci, h, w]`.
    pub x: Option<Vec<f32>>,
    /// Weight gradient `[co, ci, kh, kw]`.
    pub weight: Option<Vec<f32>>,
    /// Bias gradient `[co]`.
    pub bias: Option<Vec<f32>>,
}

/// The geometry of the input gradient of a stride-1 convolution as a forward convolution of
/// `dy` (`[n, co, oh, ow]` → `[n, ci, h, w]`), or `None` where that does not apply (a stride
/// above 1, a padding wider than the kernel, a pointwise convolution, which needs no im2col).
pub(super) fn transposed_geometry(g: &ConvGeom) -> Option<ConvGeom> {
    let fits = g.sh == 1
        && g.sw == 1
        && !g.pointwise()
        && g.pt < g.kh
        && g.pb < g.kh
        && g.pl < g.kw
        && g.pr < g.kw;
    fits.then(|| ConvGeom {
        n: g.n,
        ci: g.co,
        h: g.oh(),
        w: g.ow(),
        co: g.ci,
        kh: g.kh,
        kw: g.kw,
        sh: 1,
        sw: 1,
        pt: g.kh - 1 - g.pt,
        pl: g.kw - 1 - g.pl,
        pb: g.kh - 1 - g.pb,
        pr: g.kw - 1 - g.pr,
    })
}

/// `w'[ci, co, i, j] = w[co, ci, kh − 1 − i, kw − 1 − j]`: the kernel of the transposed
/// convolution.
pub(super) fn flipped_transposed_kernel(g: &ConvGeom, w: &[f32]) -> Vec<f32> {
    let (kh, kw) = (g.kh, g.kw);
    let mut out = vec![0.0f32; w.len()];
    for o in 0..g.co {
        for c in 0..g.ci {
            let src = &w[(o * g.ci + c) * kh * kw..][..kh * kw];
            let dst = &mut out[(c * g.co + o) * kh * kw..][..kh * kw];
            for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                *d = *s;
            }
        }
    }
    out
}

/// Input and weight gradients of a stride-1 convolution from one im2col matrix per sample,
/// that of `dy` in the transposed geometry `gt`: `S[(co, i, j), q] = dy[co, q + (i, j) − pad']`
/// with `pad' = k − 1 − pad`. The input gradient is the transposed convolution `W'[ci, K'] · S`
/// (as [`conv2d_forward`] computes it), and since `x[c, q]` meets `dy[co, q − (a, b) + pad]`
/// under the weight `w[co, c, a, b]`, which is row `(co, kh − 1 − a, kw − 1 − b)` of `S`, the
/// weight gradient is `S · Xᵀ` with its rows read back flipped. The separate passes made a
/// second im2col matrix, of `x`, for the weight gradient.
fn backward_from_dy_columns(
    g: &ConvGeom,
    gt: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let (hw, ohw, kt) = (g.hw(), g.ohw(), gt.k());
    debug_assert_eq!((gt.ohw(), gt.ci, gt.co), (hw, g.co, g.ci));
    let wt = flipped_transposed_kernel(g, w);
    let par = inner_parallelism(g.n.div_ceil(BACKWARD_CHUNK));
    let mut dx = vec![0.0f32; g.n * g.ci * hw];
    // Per chunk of samples, the weight-gradient partial `[(co, i, j), ci]`; summed in chunk
    // order below, so the rounding does not depend on the thread count.
    let parts: Vec<Vec<f32>> = dx
        .par_chunks_mut(BACKWARD_CHUNK * g.ci * hw)
        .enumerate()
        .map(|(c, dxc)| {
            let mut part = vec![0.0f32; kt * g.ci];
            let (mut st, mut yt) = (Vec::new(), Vec::new());
            for (s, dxb) in dxc.chunks_mut(g.ci * hw).enumerate() {
                let b = c * BACKWARD_CHUNK + s;
                st.resize(kt * hw, 0.0);
                im2col(gt, &dy[b * g.co * ohw..(b + 1) * g.co * ohw], &mut st);
                gemm_from_col(gt, &st, &wt, None, dxb, &mut yt, par);
                // part[(co, i, j), ci] += S_b[K', hw] · X_bᵀ[hw, ci]
                let lhs = Mat {
                    data: &st,
                    rs: hw,
                    cs: 1,
                };
                let rhs = Mat {
                    data: &x[b * g.ci * hw..(b + 1) * g.ci * hw],
                    rs: 1,
                    cs: hw,
                };
                matmul(kt, g.ci, hw, &mut part, s > 0, lhs, rhs, par);
            }
            part
        })
        .collect();
    let sum = sum_in_order(kt * g.ci, parts.iter().map(Vec::as_slice));
    let (kh, kw) = (g.kh, g.kw);
    let mut dw = vec![0.0f32; g.co * g.k()];
    for o in 0..g.co {
        for c in 0..g.ci {
            for a in 0..kh {
                for b in 0..kw {
                    let row = (o * kh + kh - 1 - a) * kw + kw - 1 - b;
                    dw[((o * g.ci + c) * kh + a) * kw + b] = sum[row * g.ci + c];
                }
            }
        }
    }
    (dx, dw)
}

/// The elementwise sum of per-chunk partials of length `len`, added in the order given (chunk
/// order), so that its rounding never depends on how rayon scheduled the chunks.
pub(super) fn sum_in_order<'a>(len: usize, parts: impl Iterator<Item = &'a [f32]>) -> Vec<f32> {
    let mut sum = vec![0.0f32; len];
    for part in parts {
        for (d, p) in sum.iter_mut().zip(part) {
            *d += *p;
        }
    }
    sum
}

/// Backward convolution: the gradients of `Σ dy ⊙ conv(x, w, b)` with respect to `x`, `w` and
/// `b`, each computed only when its `need_*` flag is set.
pub fn conv2d_backward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    need_x: bool,
    need_weight: bool,
    need_bias: bool,
) -> ConvGrads {
    assert!(g.is_valid(), "invalid convolution geometry {g:?}");
    let (k, hw, ohw) = (g.k(), g.hw(), g.ohw());
    assert_eq!(x.len(), g.n * g.ci * hw);
    assert_eq!(w.len(), g.co * k);
    assert_eq!(dy.len(), g.n * g.co * ohw);
    let chunks = g.n.div_ceil(BACKWARD_CHUNK);
    let par = inner_parallelism(chunks);
    let mut grads = ConvGrads::default();
    // With stride 1 the input gradient is itself a convolution (of dy with the flipped,
    // transposed kernel): its GEMM then sums over co·kh·kw, not co, and writes ci·h·w values a
    // sample instead of the ci·kh·kw·h·w of Wᵀ·dY that col2im then scatters back.
    let transposed = need_x.then(|| transposed_geometry(g)).flatten();
    // Where the transposed convolution runs Winograd's F(2×2, 3×3), both gradients share the
    // transformed dy (`winograd::backward`). On the two U-Nets' 3×3 shapes that ran 1.07–1.38×
    // as fast as Winograd's input gradient beside an im2col weight gradient, which itself ran
    // 0.94–1.18× as fast as the shared im2col matrix of dy (`backward_from_dy_columns`).
    match transposed {
        Some(gt) if need_weight => {
            let (dx, dw) = if winograd::applies_to_backward(&gt) {
                winograd::backward(g, &gt, x, &flipped_transposed_kernel(g, w), dy)
            } else {
                backward_from_dy_columns(g, &gt, x, w, dy)
            };
            grads.x = Some(dx);
            grads.weight = Some(dw);
        }
        Some(gt) => {
            grads.x = Some(conv2d_forward(
                &gt,
                dy,
                &flipped_transposed_kernel(g, w),
                None,
            ));
        }
        None => {}
    }
    let need_x = need_x && transposed.is_none();
    let need_weight = need_weight && grads.weight.is_none();
    if need_x || need_weight {
        // Per chunk: the weight-gradient partial (transposed, `[K, co]`) and the chunk's input
        // gradient.
        let parts: Vec<(Vec<f32>, Vec<f32>)> = (0..chunks)
            .into_par_iter()
            .map(|c| {
                let samples = c * BACKWARD_CHUNK..((c + 1) * BACKWARD_CHUNK).min(g.n);
                let mut dw = if need_weight {
                    vec![0.0f32; k * g.co]
                } else {
                    Vec::new()
                };
                let mut dx = if need_x {
                    vec![0.0f32; samples.len() * g.ci * hw]
                } else {
                    Vec::new()
                };
                let mut col = Vec::new();
                let mut dcol = Vec::new();
                for (s, b) in samples.enumerate() {
                    let dyb = Mat {
                        data: &dy[b * g.co * ohw..(b + 1) * g.co * ohw],
                        rs: ohw,
                        cs: 1,
                    };
                    if need_weight {
                        let xb = &x[b * g.ci * hw..(b + 1) * g.ci * hw];
                        let colb: &[f32] = if g.pointwise() {
                            xb
                        } else {
                            col.resize(k * ohw, 0.0);
                            im2col(g, xb, &mut col);
                            &col
                        };
                        // dWᵀ[K, co] += col_b[K, ohw] · dY_bᵀ[ohw, co]: the transpose of
                        // dY_b · col_bᵀ, written with the co outputs of a row side by side,
                        // which runs 15–50 % faster in `gemm` on the U-Net's shapes than
                        // writing dW[co, K] row by row (`dW` is transposed once, below).
                        let lhs = Mat {
                            data: colb,
                            rs: ohw,
                            cs: 1,
                        };
                        let rhs = Mat {
                            data: dyb.data,
                            rs: 1,
                            cs: ohw,
                        };
                        matmul(k, g.co, ohw, &mut dw, s > 0, lhs, rhs, par);
                    }
                    if need_x {
                        // dcol[K, ohw] = Wᵀ[K, co] · dY_b[co, ohw]; dx_b = col2im(dcol)
                        let lhs = Mat {
                            data: w,
                            rs: 1,
                            cs: k,
                        };
                        let dxb = &mut dx[s * g.ci * hw..(s + 1) * g.ci * hw];
                        if g.pointwise() {
                            matmul(k, ohw, g.co, dxb, false, lhs, dyb, par);
                        } else {
                            dcol.resize(k * ohw, 0.0);
                            matmul(k, ohw, g.co, &mut dcol, false, lhs, dyb, par);
                            col2im(g, &dcol, dxb);
                        }
                    }
                }
                (dw, dx)
            })
            .collect();
        if need_weight {
            let dwt = sum_in_order(k * g.co, parts.iter().map(|(dw, _)| dw.as_slice()));
            let mut dw = vec![0.0f32; g.co * k];
            transpose_add_bias(k, g.co, &dwt, &mut dw, None);
            grads.weight = Some(dw);
        }
        if need_x {
            let mut dx = Vec::with_capacity(g.n * g.ci * hw);
            for (_, part) in &parts {
                dx.extend_from_slice(part);
            }
            grads.x = Some(dx);
        }
    }
    if need_bias {
        // Each row summed in eight lanes (a plain `sum` is one dependent add after another:
        // ~1.9 % of the MNIST U-Net's train step in `perf`), rows added in sample order.
        let mut db = vec![0.0f32; g.co];
        for dyb in dy.chunks(g.co * ohw) {
            for (d, row) in db.iter_mut().zip(dyb.chunks(ohw)) {
                *d += lane_sum(row, |v| v);
            }
        }
        grads.bias = Some(db);
    }
    grads
}
