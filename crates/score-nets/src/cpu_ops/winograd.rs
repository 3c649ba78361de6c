//! Winograd's minimal filtering F(2×2, 3×3) for 3×3, stride-1 convolutions (Lavin & Gray,
//! "Fast Algorithms for Convolutional Neural Networks", 2016).
//!
//! Each 2×2 block of output pixels is read from a 4×4 patch `d` of the input; with the kernel
//! `g` transformed once into `U = G g Gᵀ` and the patch into `V = Bᵀ d B`, the block is
//! `Aᵀ (U ⊙ V) A`. Summed over input channels, the elementwise product becomes 16 GEMMs (one per
//! position ξ of the 4×4 transform) of `U_ξ[co, ci] · V_ξ[ci, tiles]`: 16 multiplications a
//! block of four outputs where im2col + GEMM does 36, i.e. 2.25× fewer GEMM FLOPs, and the
//! transformed input holds 4 values a pixel where the im2col matrix holds 9.
//!
//! The transforms (F(2,3), with `B`, `G`, `A` as in the paper):
//!
//! ```text
//! Bᵀ = [1  0 −1  0]     G = [1    0    0 ]     Aᵀ = [1  1  1  0]
//!      [0  1  1  0]         [1/2  1/2  1/2]          [0  1 −1 −1]
//!      [0 −1  1  0]         [1/2 −1/2  1/2]
//!      [0  1  0 −1]         [0    0    1 ]
//! ```
//!
//! Their entries are 0, ±1 and ±½, so the extra rounding is a few ulps of the inputs: F(2,3) is
//! the variant that keeps f32 results within the tolerance the other kernels meet (larger tiles
//! such as F(4,3) trade accuracy for fewer multiplications).
//!
//! Work is split over fixed chunks of the batch, dealt to at most 8 tasks of consecutive chunks
//! (both fixed by the shape alone). The forward sums nothing across chunks; the backward's
//! weight gradient sums one partial a task, in task order. So outputs are bit-identical run to
//! run for a given thread count (which, as everywhere in `cpu_ops`, decides whether a GEMM
//! itself runs on several threads).
//!
//! The backward ([`backward`]) transforms `dy` once for both gradients: the input gradient is
//! the transposed convolution (again a 3×3 stride-1 one), and the weight gradient its adjoint.

use rayon::prelude::*;

use std::mem::MaybeUninit;

use super::conv::{ConvGeom, Mat, inner_parallelism, matmul, sum_in_order};
use super::{output_buffer, written};

/// The fewest input and output channels for which the Winograd path is taken: below this the 16
/// GEMMs are too thin (their inner dimension is the input channels) to beat im2col's one.
const MIN_CHANNELS: usize = 16;

/// Tiles (2×2 output blocks) a chunk aims at, summed over its samples (a chunk holds at least
/// one sample). Small enough that a chunk's transformed input and GEMM outputs stay near the
/// core's 1 MB L2 cache: on the U-Nets' shapes 128 tiles ran the forward up to 1.3× faster
/// than 512 (128 → 64 channels at 14×14, batch 64), and the backward about as fast as 256
/// (0.97–1.12×).
const TARGET_TILES: usize = 128;

/// The fewest chunks a batch of at least this many samples is split into, so that the
/// transforms, which run inside a chunk, keep every thread busy. A constant rather than the
/// thread count: the chunking, and with it `gemm`'s blocking, depends on the shape alone.
const MIN_CHUNKS: usize = 8;

/// The fewest 2×2 output tiles a sample for which the Winograd path is taken: with a 4×4
/// output (4 tiles) the per-sample transforms of short rows cost more than the saved FLOPs
/// (forward 0.85–0.89× as fast as im2col for 128 and 256 → 128 channels at batch 32–64, one
/// shape 1.18×).
const MIN_SAMPLE_TILES: usize = 9;

/// The fewest tile columns a chunk must have for [`backward`] to be taken: its weight gradient
/// sums over them, and thinner GEMMs lost to im2col (8×8 and 7×7 at batch 32, 64 columns:
/// 0.88× and 0.95×; the same shapes at batch 64, 128 columns: 1.18× and 1.15×).
const MIN_BACKWARD_COLUMNS: usize = 96;

/// Whether [`forward`] handles this convolution: a 3×3 kernel, stride 1, at least
/// [`MIN_CHANNELS`] channels in and out, paddings under the kernel size, and at least
/// [`MIN_SAMPLE_TILES`] output tiles a sample.
pub(super) fn applies(g: &ConvGeom) -> bool {
    let (th, tw) = tiles(g);
    g.kh == 3
        && g.kw == 3
        && g.sh == 1
        && g.sw == 1
        && g.ci >= MIN_CHANNELS
        && g.co >= MIN_CHANNELS
        && g.pt < 3
        && g.pl < 3
        && g.pb < 3
        && g.pr < 3
        && th * tw >= MIN_SAMPLE_TILES
}

/// Whether [`backward`] handles the convolution whose transposed convolution is `gt`: [`forward`]
/// handles `gt`, with at least [`MIN_BACKWARD_COLUMNS`] tile columns a chunk.
pub(super) fn applies_to_backward(gt: &ConvGeom) -> bool {
    let (th, tw) = tiles(gt);
    applies(gt) && chunk_samples(gt) * th * tw >= MIN_BACKWARD_COLUMNS
}

/// Samples a chunk: about [`TARGET_TILES`] tiles, at least one sample, and at least
/// [`MIN_CHUNKS`] chunks where the batch allows.
fn chunk_samples(g: &ConvGeom) -> usize {
    let (th, tw) = tiles(g);
    (TARGET_TILES / (th * tw)).clamp(1, g.n.div_ceil(MIN_CHUNKS))
}

/// How [`forward`] and [`backward`] split the batch of the convolution they run: chunks of
/// [`chunk_samples`] samples, dealt to at most [`MIN_CHUNKS`] tasks of consecutive chunks, each
/// running its chunks with one set of buffers (rayon's `for_each_init` made fresh ones, zeroed,
/// for every split).
struct Chunking {
    /// Tiles a sample.
    per_sample: usize,
    /// Samples a chunk.
    samples: usize,
    /// Chunks a task.
    per_group: usize,
    /// Threads inside each GEMM (several only when the tasks cannot keep them busy).
    par: gemm::Parallelism,
}

impl Chunking {
    fn of(g: &ConvGeom) -> Self {
        let (th, tw) = tiles(g);
        let samples = chunk_samples(g);
        let chunks = g.n.div_ceil(samples);
        let per_group = chunks.div_ceil(chunks.min(MIN_CHUNKS));
        Self {
            per_sample: th * tw,
            samples,
            per_group,
            par: inner_parallelism(chunks.div_ceil(per_group)),
        }
    }
}

/// Output tiles of one sample: `(rows, cols)` of 2×2 blocks covering `oh × ow`.
fn tiles(g: &ConvGeom) -> (usize, usize) {
    (g.oh().div_ceil(2), g.ow().div_ceil(2))
}

/// Forward convolution by F(2×2, 3×3): `y[n, co, oh, ow]` from `x[n, ci, h, w]`,
/// `w[co, ci, 3, 3]` and an optional bias, as [`super::conv::conv2d_forward`] defines it.
pub(super) fn forward(g: &ConvGeom, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    debug_assert!(applies(g) && g.is_valid());
    let (ci, co, hw) = (g.ci, g.co, g.h * g.w);
    let ohw = g.oh() * g.ow();
    let Chunking {
        per_sample,
        samples,
        per_group,
        par,
    } = Chunking::of(g);
    let u = kernel_transform(g, w);
    let mut y = output_buffer(g.n * co * ohw);
    y.par_chunks_mut(per_group * samples * co * ohw)
        .enumerate()
        .for_each(|(group, yg)| {
            let (mut v, mut m, mut scratch) = (Vec::new(), Vec::new(), Scratch::default());
            for (k, yc) in yg.chunks_mut(samples * co * ohw).enumerate() {
                let first = (group * per_group + k) * samples;
                let ns = yc.len() / (co * ohw);
                let cols = ns * per_sample;
                v.resize(16 * ci * cols, 0.0);
                for s in 0..ns {
                    let b = first + s;
                    let xb = &x[b * ci * hw..(b + 1) * ci * hw];
                    input_transform(g, xb, &mut v, s * per_sample, cols, &mut scratch);
                }
                m.resize(16 * co * cols, 0.0);
                for (xi, mx) in m.chunks_exact_mut(co * cols).enumerate() {
                    let lhs = Mat {
                        data: &u[xi * co * ci..(xi + 1) * co * ci],
                        rs: ci,
                        cs: 1,
                    };
                    let rhs = Mat {
                        data: &v[xi * ci * cols..(xi + 1) * ci * cols],
                        rs: cols,
                        cs: 1,
                    };
                    matmul(co, cols, ci, mx, false, lhs, rhs, par);
                }
                for (s, yb) in yc.chunks_exact_mut(co * ohw).enumerate() {
                    output_transform(g, &m, s * per_sample, cols, bias, yb, &mut scratch.out);
                }
            }
        });
    // SAFETY: the chunks cover `y`, and `output_transform` writes every value of each sample.
    unsafe { written(y) }
}

/// Input and weight gradients of a 3×3 stride-1 convolution `g` whose transposed convolution
/// `gt` (that of `dy` with the flipped, transposed kernel `wt`) [`applies`]; `dy` is transformed
/// once and serves both.
///
/// The input gradient is `gt`'s convolution, as [`forward`] computes it: per tile of the input
/// grid, `dX = Aᵀ [Σ_o U'[c, o] ⊙ V_dy[o]] A` with `U' = G w' Gᵀ`. The weight gradient is the
/// gradient of `L' = Σ x ⊙ dX` with respect to `w'` (which is `dW` flipped and transposed), and
/// since `⟨x, Aᵀ Z A⟩ = ⟨A x Aᵀ, Z⟩`, `∂L'/∂U'[c, o] = Σ_tiles (A x Aᵀ)[c] ⊙ V_dy[o]`: 16 GEMMs
/// summing over the tiles, then `∂L'/∂w' = Gᵀ (∂L'/∂U') G`. The im2col path builds a 9-row
/// matrix a pixel of `x` and sums 36 products a 2×2 block where this writes 4 values a pixel
/// and sums 16.
///
/// Returns `(dx, dw)`; the weight gradient's per-chunk partials are summed in chunk order.
pub(super) fn backward(
    g: &ConvGeom,
    gt: &ConvGeom,
    x: &[f32],
    wt: &[f32],
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    debug_assert!(applies(gt) && (gt.ci, gt.co, gt.oh(), gt.ow()) == (g.co, g.ci, g.h, g.w));
    let (c_in, c_out, hw, ohw) = (g.ci, g.co, g.h * g.w, g.oh() * g.ow());
    // A group accumulates its weight-gradient partial over its chunks, and the groups'
    // partials are summed in group order (one partial a chunk was up to 16 MB at batch 64).
    let Chunking {
        per_sample,
        samples,
        per_group,
        par,
    } = Chunking::of(gt);
    // U'[ξ, c, o]: gt's output channels are g's input channels.
    let u = kernel_transform(gt, wt);
    let mut dx = output_buffer(g.n * c_in * hw);
    let parts: Vec<Vec<f32>> = dx
        .par_chunks_mut(per_group * samples * c_in * hw)
        .enumerate()
        .map(|(group, dxg)| {
            let (mut v, mut m, mut xt) = (Vec::new(), Vec::new(), Vec::new());
            let mut scratch = Scratch::default();
            let mut part = vec![0.0f32; 16 * c_in * c_out];
            for (k, dxc) in dxg.chunks_mut(samples * c_in * hw).enumerate() {
                let first = (group * per_group + k) * samples;
                let ns = dxc.len() / (c_in * hw);
                let cols = ns * per_sample;
                v.resize(16 * c_out * cols, 0.0);
                xt.resize(16 * c_in * cols, 0.0);
                for s in 0..ns {
                    let b = first + s;
                    let dyb = &dy[b * c_out * ohw..(b + 1) * c_out * ohw];
                    input_transform(gt, dyb, &mut v, s * per_sample, cols, &mut scratch);
                    let xb = &x[b * c_in * hw..(b + 1) * c_in * hw];
                    let band = &mut scratch.band;
                    output_adjoint_transform(gt, xb, &mut xt, s * per_sample, cols, band);
                }
                m.resize(16 * c_in * cols, 0.0);
                // Per ξ: dX's M[c, tiles] = U'[c, o] · V_dy[o, tiles], and the weight-gradient
                // partial S[c, o] += X̃[c, tiles] · V_dy[o, tiles]ᵀ.
                for xi in 0..16 {
                    let vx = Mat {
                        data: &v[xi * c_out * cols..(xi + 1) * c_out * cols],
                        rs: cols,
                        cs: 1,
                    };
                    let lhs = Mat {
                        data: &u[xi * c_in * c_out..(xi + 1) * c_in * c_out],
                        rs: c_out,
                        cs: 1,
                    };
                    let mx = &mut m[xi * c_in * cols..(xi + 1) * c_in * cols];
                    matmul(c_in, cols, c_out, mx, false, lhs, vx, par);
                    let lhs = Mat {
                        data: &xt[xi * c_in * cols..(xi + 1) * c_in * cols],
                        rs: cols,
                        cs: 1,
                    };
                    let vxt = Mat {
                        data: vx.data,
                        rs: 1,
                        cs: cols,
                    };
                    let sx = &mut part[xi * c_in * c_out..(xi + 1) * c_in * c_out];
                    matmul(c_in, c_out, cols, sx, k > 0, lhs, vxt, par);
                }
                for (s, dxb) in dxc.chunks_exact_mut(c_in * hw).enumerate() {
                    output_transform(gt, &m, s * per_sample, cols, None, dxb, &mut scratch.out);
                }
            }
            part
        })
        .collect();
    let sum = sum_in_order(16 * c_in * c_out, parts.iter().map(Vec::as_slice));
    // dW[o, c, a, b] = (Gᵀ S[c, o] G)[2 − a, 2 − b].
    let mut dw = vec![0.0f32; c_out * c_in * 9];
    for c in 0..c_in {
        for o in 0..c_out {
            let at = |xi: usize| sum[xi * c_in * c_out + c * c_out + o];
            let d = kernel_adjoint(std::array::from_fn(at));
            let dst = &mut dw[(o * c_in + c) * 9..][..9];
            for (k, val) in dst.iter_mut().zip(d.iter().rev()) {
                *k = *val;
            }
        }
    }
    // SAFETY: the chunks cover `dx`, and `output_transform` writes every value of each sample.
    (unsafe { written(dx) }, dw)
}

/// `Gᵀ S G` (3 × 3, row-major) for a 4 × 4 `s` (row-major): the adjoint of
/// [`kernel_transform`]'s `g ↦ G g Gᵀ`.
fn kernel_adjoint(s: [f32; 16]) -> [f32; 9] {
    // Gᵀ = [1 ½ ½ 0; 0 ½ −½ 0; 0 ½ ½ 1] applied to the rows, then to the columns.
    let mut t = [[0.0f32; 4]; 3];
    for b in 0..4 {
        let (s0, s1, s2, s3) = (s[b], s[4 + b], s[8 + b], s[12 + b]);
        t[0][b] = s0 + 0.5 * (s1 + s2);
        t[1][b] = 0.5 * (s1 - s2);
        t[2][b] = 0.5 * (s1 + s2) + s3;
    }
    let mut out = [0.0f32; 9];
    for (i, ti) in t.iter().enumerate() {
        out[3 * i] = ti[0] + 0.5 * (ti[1] + ti[2]);
        out[3 * i + 1] = 0.5 * (ti[1] - ti[2]);
        out[3 * i + 2] = 0.5 * (ti[1] + ti[2]) + ti[3];
    }
    out
}

/// `xt[ξ, c, col0 + tile] = (A x Aᵀ)[ξ]` for every 2×2 block of one sample `xb[ci', oh, ow]` of
/// `g`'s output grid (zero past its edges): the adjoint of [`output_transform`], with
/// `A = [1 0; 1 1; 1 −1; 0 −1]`.
fn output_adjoint_transform(
    g: &ConvGeom,
    xb: &[f32],
    xt: &mut [f32],
    col0: usize,
    cols: usize,
    rows: &mut Vec<f32>,
) {
    let (oh, ow) = (g.oh(), g.ow());
    let (th, tw) = tiles(g);
    let stride = g.co * cols;
    // The block row's two pixel rows as even and odd columns (zero past the edges):
    // x00, x01, x10, x11 of every block side by side.
    rows.resize(4 * tw, 0.0);
    for (c, xc) in xb.chunks_exact(oh * ow).enumerate() {
        for ty in 0..th {
            for i in 0..2 {
                let y = 2 * ty + i;
                let (even, odd) = rows[2 * i * tw..(2 * i + 2) * tw].split_at_mut(tw);
                if y >= oh {
                    even.fill(0.0);
                    odd.fill(0.0);
                    continue;
                }
                let src = &xc[y * ow..(y + 1) * ow];
                split_row(src, even, odd);
                if ow % 2 == 1 {
                    odd[ow / 2] = 0.0;
                }
            }
            let (x00, rest) = rows.split_at(tw);
            let (x01, rest) = rest.split_at(tw);
            let (x10, x11) = rest.split_at(tw);
            let base = c * cols + col0 + ty * tw;
            // Rows of A x: (x0, x0 + x1, x0 − x1, −x1) for each column; then the same on each
            // row's pair (p, q): (p, p + q, p − q, −q).
            let mut out = xt[base..].chunks_mut(stride);
            let mut next4 = || -> [&mut [f32]; 4] { std::array::from_fn(|_| out.next().unwrap()) };
            adjoint_rows([x00, x01, x10, x11], next4(), |x0, _| x0);
            adjoint_rows([x00, x01, x10, x11], next4(), |x0, x1| x0 + x1);
            adjoint_rows([x00, x01, x10, x11], next4(), |x0, x1| x0 - x1);
            adjoint_rows([x00, x01, x10, x11], next4(), |_, x1| -x1);
        }
    }
}

/// Row `a` of `A x Aᵀ` for a row of blocks: `out[b][t]`, where row `a` of `A` combines a
/// block's two pixel rows as `f(x0, x1)` (`x = [x00, x01, x10, x11]`, each `tw` values).
#[inline(always)]
fn adjoint_rows(x: [&[f32]; 4], out: [&mut [f32]; 4], f: impl Fn(f32, f32) -> f32) {
    let tw = x[0].len();
    let [x00, x01, x10, x11] = x.map(|r| &r[..tw]);
    let [v0, v1, v2, v3] = out;
    let (v0, v1, v2, v3) = (&mut v0[..tw], &mut v1[..tw], &mut v2[..tw], &mut v3[..tw]);
    // Four tiles at a time as arrays, which compile to SSE operations without the runtime
    // aliasing checks that kept a plain loop over the four outputs scalar below 20 tiles.
    let step = |t: usize, n: usize, v: [&mut [f32]; 4]| {
        for k in 0..n {
            let p = f(x00[t + k], x10[t + k]);
            let q = f(x01[t + k], x11[t + k]);
            v[0][k] = p;
            v[1][k] = p + q;
            v[2][k] = p - q;
            v[3][k] = -q;
        }
    };
    let wide = tw / 4 * 4;
    for t in (0..wide).step_by(4) {
        let p: [f32; 4] = std::array::from_fn(|k| f(x00[t + k], x10[t + k]));
        let q: [f32; 4] = std::array::from_fn(|k| f(x01[t + k], x11[t + k]));
        v0[t..t + 4].copy_from_slice(&p);
        v1[t..t + 4].copy_from_slice(&std::array::from_fn::<f32, 4, _>(|k| p[k] + q[k]));
        v2[t..t + 4].copy_from_slice(&std::array::from_fn::<f32, 4, _>(|k| p[k] - q[k]));
        v3[t..t + 4].copy_from_slice(&std::array::from_fn::<f32, 4, _>(|k| -q[k]));
    }
    let n = tw - wide;
    step(
        wide,
        n,
        [
            &mut v0[wide..],
            &mut v1[wide..],
            &mut v2[wide..],
            &mut v3[wide..],
        ],
    );
}

/// `U[ξ, co, ci] = (G g Gᵀ)[ξ]` for every kernel `g = w[co, ci]`, ξ = 4·row + column.
fn kernel_transform(g: &ConvGeom, w: &[f32]) -> Vec<f32> {
    let (ci, co) = (g.ci, g.co);
    let mut u = vec![0.0f32; 16 * co * ci];
    for (kc, k) in w.chunks_exact(9).enumerate() {
        // t = G g (4 × 3), then U = t Gᵀ (4 × 4).
        let mut t = [[0.0f32; 3]; 4];
        for j in 0..3 {
            let (g0, g1, g2) = (k[j], k[3 + j], k[6 + j]);
            t[0][j] = g0;
            t[1][j] = 0.5 * (g0 + g1 + g2);
            t[2][j] = 0.5 * (g0 - g1 + g2);
            t[3][j] = g2;
        }
        for (a, ta) in t.iter().enumerate() {
            let row = [
                ta[0],
                0.5 * (ta[0] + ta[1] + ta[2]),
                0.5 * (ta[0] - ta[1] + ta[2]),
                ta[2],
            ];
            for (b, val) in row.into_iter().enumerate() {
                u[(a * 4 + b) * co * ci + kc] = val;
            }
        }
    }
    u
}

/// Per-thread buffers of [`input_transform`].
#[derive(Default)]
struct Scratch {
    /// One input channel, zero-padded to `(2·th + 2) × (2·tw + 2)` and stored as its even
    /// columns then its odd columns, row by row (`2 · (tw + 1)` values a row): the horizontal
    /// transform then reads contiguous slices instead of every other value.
    plane: Vec<f32>,
    /// `Bᵀ d` of one band of four plane rows, in the same even/odd layout.
    band: Vec<f32>,
    /// [`output_transform`]'s intermediate rows.
    out: Vec<f32>,
}

/// `v[ξ, c, col0 + tile] = (Bᵀ d B)[ξ]` of every 4×4 patch of one sample `xb[ci, h, w]`; `v` has
/// `cols` columns (the tiles of every sample of the chunk).
fn input_transform(
    g: &ConvGeom,
    xb: &[f32],
    v: &mut [f32],
    col0: usize,
    cols: usize,
    scratch: &mut Scratch,
) {
    let (th, tw) = tiles(g);
    // Tile (ty, tx) reads input rows 2ty − pt … 2ty − pt + 3: plane rows 2ty … 2ty + 3, and
    // plane columns 2tx … 2tx + 3: even columns tx, tx + 1 and odd columns tx, tx + 1.
    let (ph, half) = (2 * th + 2, tw + 1);
    let pw = 2 * half;
    let Scratch { plane, band, .. } = scratch;
    plane.resize(ph * pw, 0.0);
    band.resize(4 * pw, 0.0);
    let rows = g.h.min(ph.saturating_sub(g.pt));
    let width = g.w.min(pw.saturating_sub(g.pl));
    let stride = g.ci * cols;
    // Every channel writes the same plane positions: the padding stays zero.
    plane.fill(0.0);
    for (c, xc) in xb.chunks_exact(g.h * g.w).enumerate() {
        for iy in 0..rows {
            let (even, odd) = plane[(iy + g.pt) * pw..][..pw].split_at_mut(half);
            // Input column ix lands on plane column ix + pl: pairs of input columns fill one
            // even and one odd plane column each.
            let src = &xc[iy * g.w..][..width];
            let (first, second) = if g.pl.is_multiple_of(2) {
                (&mut even[g.pl / 2..], &mut odd[g.pl / 2..])
            } else {
                (&mut odd[g.pl / 2..], &mut even[g.pl / 2 + 1..])
            };
            split_row(src, first, second);
        }
        for ty in 0..th {
            let r = &plane[2 * ty * pw..(2 * ty + 4) * pw];
            let (r0, rest) = r.split_at(pw);
            let (r1, rest) = rest.split_at(pw);
            let (r2, r3) = rest.split_at(pw);
            let (t0, rest) = band.split_at_mut(pw);
            let (t1, rest) = rest.split_at_mut(pw);
            let (t2, t3) = rest.split_at_mut(pw);
            for q in 0..pw {
                let (d0, d1, d2, d3) = (r0[q], r1[q], r2[q], r3[q]);
                t0[q] = d0 - d2;
                t1[q] = d1 + d2;
                t2[q] = d2 - d1;
                t3[q] = d1 - d3;
            }
            let base = c * cols + col0 + ty * tw;
            for (a, ta) in band.chunks_exact(pw).enumerate() {
                // Patch columns 0…3 of tile tx: even[tx], odd[tx], even[tx + 1], odd[tx + 1].
                let (even, odd) = ta.split_at(half);
                let (e0, e1) = (&even[..tw], &even[1..][..tw]);
                let (o0, o1) = (&odd[..tw], &odd[1..][..tw]);
                let at = |b: usize| (a * 4 + b) * stride + base;
                let (v0, rest) = v[at(0)..at(3) + tw].split_at_mut(stride);
                let (v1, rest) = rest.split_at_mut(stride);
                let (v2, v3) = rest.split_at_mut(stride);
                let (v0, v1, v2, v3) = (&mut v0[..tw], &mut v1[..tw], &mut v2[..tw], &mut v3[..tw]);
                for tx in 0..tw {
                    v0[tx] = e0[tx] - e1[tx];
                    v1[tx] = o0[tx] + e1[tx];
                    v2[tx] = e1[tx] - o0[tx];
                    v3[tx] = o0[tx] - o1[tx];
                }
            }
        }
    }
}

/// `first[i] = src[2i]` and `second[i] = src[2i + 1]` for every value of `src` (`first` holds
/// at least `⌈len / 2⌉` values, `second` `⌊len / 2⌋`): eight values at a time by
/// [`deinterleave`], then pairs, then a last even value.
fn split_row(src: &[f32], first: &mut [f32], second: &mut [f32]) {
    let done = deinterleave(src, first, second);
    let mut pairs = src[2 * done..].chunks_exact(2);
    let rest = first[done..].iter_mut().zip(second[done..].iter_mut());
    for (p, (a, b)) in (&mut pairs).zip(rest) {
        *a = p[0];
        *b = p[1];
    }
    if let [last] = pairs.remainder() {
        first[src.len() / 2] = *last;
    }
}

/// Splits the first `8k` values of `src` into its even values, `first[..4k]`, and its odd ones,
/// `second[..4k]`, for as large a `k` as the three slices allow; returns `4k`.
fn deinterleave(src: &[f32], first: &mut [f32], second: &mut [f32]) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_loadu_ps, _mm_shuffle_ps, _mm_storeu_ps};
        let n = (src.len() / 8).min(first.len() / 4).min(second.len() / 4);
        for i in 0..n {
            // SAFETY: `8i + 8 ≤ src.len()` and `4i + 4` is at most `first.len()` and
            // `second.len()`, so every load and store stays inside its slice; SSE is part of
            // every x86-64 CPU.
            unsafe {
                let lo = _mm_loadu_ps(src.as_ptr().add(8 * i));
                let hi = _mm_loadu_ps(src.as_ptr().add(8 * i + 4));
                let even = _mm_shuffle_ps::<0b10_00_10_00>(lo, hi);
                let odd = _mm_shuffle_ps::<0b11_01_11_01>(lo, hi);
                _mm_storeu_ps(first.as_mut_ptr().add(4 * i), even);
                _mm_storeu_ps(second.as_mut_ptr().add(4 * i), odd);
            }
        }
        4 * n
    }
    #[cfg(not(target_arch = "x86_64"))]
    deinterleave_portable(src, first, second)
}

/// [`deinterleave`] without intrinsics: other architectures' path, and the x86-64 path's
/// oracle in the tests.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn deinterleave_portable(src: &[f32], first: &mut [f32], second: &mut [f32]) -> usize {
    let n = (src.len() / 8).min(first.len() / 4).min(second.len() / 4);
    for (p, (a, b)) in src
        .chunks_exact(8)
        .zip(first.chunks_exact_mut(4).zip(second.chunks_exact_mut(4)))
        .take(n)
    {
        a.copy_from_slice(&[p[0], p[2], p[4], p[6]]);
        b.copy_from_slice(&[p[1], p[3], p[5], p[7]]);
    }
    4 * n
}

/// `yb[co, oh, ow] = Aᵀ M A (+ bias)` for every tile of one sample, from the 16 GEMM outputs
/// `m[ξ, co, col0 + tile]` (`cols` columns), dropping the pixels of edge tiles past `oh × ow`.
fn output_transform(
    g: &ConvGeom,
    m: &[f32],
    col0: usize,
    cols: usize,
    bias: Option<&[f32]>,
    yb: &mut [MaybeUninit<f32>],
    scratch: &mut Vec<f32>,
) {
    let (oh, ow) = (g.oh(), g.ow());
    let (th, tw) = tiles(g);
    let stride = g.co * cols;
    scratch.resize(12 * th * tw, 0.0);
    // z = M A for every tile of the sample (8 rows of `p` values: z[a][0], z[a][1] for
    // a = 0…3), then the 2×2 outputs Y = Aᵀ z (4 rows: y[0][0], y[1][0], y[0][1], y[1][1]),
    // written out row of tiles by row of tiles.
    let p = th * tw;
    let (z, out) = scratch.split_at_mut(8 * p);
    for (k, yk) in yb.chunks_exact_mut(oh * ow).enumerate() {
        let bv = bias.map_or(0.0, |b| b[k]);
        let base = k * cols + col0;
        let mrow = |xi: usize| &m[xi * stride + base..][..p];
        for (a, za) in z.chunks_exact_mut(2 * p).enumerate() {
            let (z0, z1) = za.split_at_mut(p);
            let b = 4 * a;
            a_transform(
                [mrow(b), mrow(b + 1), mrow(b + 2), mrow(b + 3)],
                z0,
                z1,
                0.0,
            );
        }
        let zr = |i: usize| &z[i * p..(i + 1) * p];
        let (y0, y1) = out[..4 * p].split_at_mut(2 * p);
        let (y00, y10) = y0.split_at_mut(p);
        let (y01, y11) = y1.split_at_mut(p);
        a_transform([zr(0), zr(2), zr(4), zr(6)], y00, y10, bv);
        a_transform([zr(1), zr(3), zr(5), zr(7)], y01, y11, bv);
        for ty in 0..th {
            let (oy, t) = (2 * ty, ty * tw..(ty + 1) * tw);
            interleave(&y00[t.clone()], &y01[t.clone()], &mut yk[oy * ow..][..ow]);
            if oy + 1 < oh {
                interleave(&y10[t.clone()], &y11[t], &mut yk[(oy + 1) * ow..][..ow]);
            }
        }
    }
}

/// One `Aᵀ` step on rows of values: `o0 = i0 + i1 + i2 + bias`, `o1 = i1 − i2 − i3 + bias`.
#[inline(always)]
fn a_transform(i: [&[f32]; 4], o0: &mut [f32], o1: &mut [f32], bias: f32) {
    let n = o0.len();
    let (i0, i1, i2, i3) = (&i[0][..n], &i[1][..n], &i[2][..n], &i[3][..n]);
    let o1 = &mut o1[..n];
    for t in 0..n {
        o0[t] = i0[t] + i1[t] + i2[t] + bias;
        o1[t] = i1[t] - i2[t] - i3[t] + bias;
    }
}

/// `row[2i] = even[i]`, `row[2i + 1] = odd[i]`: every value `row` holds (`even` and `odd` have
/// at least `⌈len / 2⌉` and `⌊len / 2⌋` values).
#[inline]
fn interleave(even: &[f32], odd: &[f32], row: &mut [MaybeUninit<f32>]) {
    let half = row.len() / 2;
    let (even, odd) = (&even[..row.len() - half], &odd[..half]);
    let mut pairs = row.chunks_exact_mut(2);
    for ((p, &e), &o) in (&mut pairs).zip(even).zip(odd) {
        p[0].write(e);
        p[1].write(o);
    }
    if let [last] = pairs.into_remainder() {
        last.write(even[half]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_ops::conv::conv2d_forward_im2col;
    use crate::cpu_ops::testing::values;

    fn geom(ci: usize, co: usize, h: usize, w: usize, n: usize, pad: [usize; 4]) -> ConvGeom {
        ConvGeom {
            n,
            ci,
            h,
            w,
            co,
            kh: 3,
            kw: 3,
            sh: 1,
            sw: 1,
            pt: pad[0],
            pl: pad[1],
            pb: pad[2],
            pr: pad[3],
        }
    }

    /// Against im2col + GEMM on odd sizes (edge tiles cut off), asymmetric and zero padding,
    /// batch 1 and batches split over several chunks. The bound: both sides sum `9·ci` products
    /// of values in [−1, 1] in f32 (~1e-7 relative each); the transforms add a few ulps.
    #[test]
    fn matches_im2col() {
        let cases = [
            geom(16, 16, 7, 7, 1, [1, 1, 1, 1]),
            geom(17, 20, 9, 6, 3, [1, 1, 1, 1]),
            geom(16, 33, 7, 8, 2, [0, 0, 0, 0]),
            geom(20, 16, 6, 5, 2, [2, 0, 1, 2]),
            geom(32, 64, 28, 28, 5, [1, 1, 1, 1]),
            geom(64, 32, 5, 5, 70, [1, 1, 1, 1]),
            geom(16, 16, 5, 6, 1, [0, 2, 2, 0]),
        ];
        for (i, g) in cases.iter().enumerate() {
            assert!(applies(g) && g.is_valid(), "{g:?}");
            let x = values(g.n * g.ci * g.h * g.w, i as u64, 1.0);
            let w = values(g.co * g.ci * 9, 100 + i as u64, 1.0);
            let b = values(g.co, 200 + i as u64, 1.0);
            let fast = forward(g, &x, &w, Some(&b));
            let reference = conv2d_forward_im2col(g, &x, &w, Some(&b));
            assert_eq!(fast.len(), reference.len());
            let scale = (9 * g.ci) as f32;
            for (j, (a, r)) in fast.iter().zip(&reference).enumerate() {
                assert!(
                    (a - r).abs() <= 2e-6 * scale,
                    "{g:?} at {j}: winograd {a}, im2col {r}"
                );
            }
        }
    }

    /// `(dx, dw)` of `Σ dy ⊙ conv(x, w)` by the definition, in f64.
    fn direct_gradients(g: &ConvGeom, x: &[f32], w: &[f32], dy: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let (oh, ow) = (g.oh(), g.ow());
        let mut dx = vec![0.0f64; x.len()];
        let mut dw = vec![0.0f64; w.len()];
        for n in 0..g.n {
            for o in 0..g.co {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let d = f64::from(dy[((n * g.co + o) * oh + oy) * ow + ox]);
                        for c in 0..g.ci {
                            for a in 0..3 {
                                for b in 0..3 {
                                    let iy = (oy + a) as isize - g.pt as isize;
                                    let ix = (ox + b) as isize - g.pl as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize
                                    {
                                        continue;
                                    }
                                    let xi =
                                        ((n * g.ci + c) * g.h + iy as usize) * g.w + ix as usize;
                                    let wi = ((o * g.ci + c) * 3 + a) * 3 + b;
                                    dx[xi] += d * f64::from(w[wi]);
                                    dw[wi] += d * f64::from(x[xi]);
                                }
                            }
                        }
                    }
                }
            }
        }
        (dx, dw)
    }

    /// Both gradients of [`backward`] (called directly: `conv2d_backward` takes it only for
    /// chunks of 96 or more tile columns, which the last case has) against the definition. Bounds: the input gradient sums `9·co` products of values
    /// in [−1, 1], the weight gradient `n·oh·ow` of them, each in f32 (~1e-7 relative a term,
    /// the ½s of the transforms adding a few ulps); 2e-6 a term leaves a margin of ~10×.
    #[test]
    fn backward_matches_the_definition() {
        use crate::cpu_ops::conv::{
            conv2d_backward, flipped_transposed_kernel, transposed_geometry,
        };
        let cases = [
            geom(16, 16, 7, 7, 1, [1, 1, 1, 1]),
            geom(17, 20, 9, 6, 3, [1, 1, 1, 1]),
            geom(20, 16, 6, 5, 5, [2, 0, 1, 2]),
            geom(16, 24, 5, 8, 2, [0, 0, 0, 0]),
            geom(32, 32, 14, 14, 20, [1, 1, 1, 1]),
        ];
        assert!(applies_to_backward(
            &transposed_geometry(&cases[4]).unwrap()
        ));
        for (i, g) in cases.iter().enumerate() {
            let x = values(g.n * g.ci * g.h * g.w, 300 + i as u64, 1.0);
            let w = values(g.co * g.ci * 9, 400 + i as u64, 1.0);
            let dy = values(g.n * g.co * g.oh() * g.ow(), 500 + i as u64, 1.0);
            let (dx_ref, dw_ref) = direct_gradients(g, &x, &w, &dy);
            let gt = transposed_geometry(g).unwrap();
            assert!(applies(&gt));
            let (dx, dw) = backward(g, &gt, &x, &flipped_transposed_kernel(g, &w), &dy);
            if applies_to_backward(&gt) {
                let grads = conv2d_backward(g, &x, &w, &dy, true, true, false);
                assert_eq!(
                    (grads.x.unwrap(), grads.weight.unwrap()),
                    (dx.clone(), dw.clone())
                );
            }
            let check = |what: &str, fast: &[f32], reference: &[f64], terms: usize| {
                assert_eq!(fast.len(), reference.len());
                for (j, (a, r)) in fast.iter().zip(reference).enumerate() {
                    assert!(
                        (f64::from(*a) - r).abs() <= 2e-6 * terms as f64,
                        "{what} of {g:?} at {j}: winograd {a}, definition {r}"
                    );
                }
            };
            check("dx", &dx, &dx_ref, 9 * g.co);
            check("dw", &dw, &dw_ref, g.n * g.oh() * g.ow());
        }
    }

    /// Both paths of `deinterleave` against the definition, where the source, either
    /// destination or none is the shortest, and that nothing past the returned count is written.
    #[test]
    fn deinterleave_splits_even_and_odd_values() {
        for (len, fl, sl) in [
            (0, 0, 0),
            (7, 4, 4),
            (8, 4, 4),
            (16, 8, 8),
            (21, 12, 10),
            (40, 8, 16),
            (40, 16, 7),
        ] {
            let src: Vec<f32> = (0..len).map(|i| i as f32).collect();
            let (mut a, mut b) = (vec![-1.0f32; fl], vec![-1.0f32; sl]);
            let (mut pa, mut pb) = (a.clone(), b.clone());
            let done = deinterleave(&src, &mut a, &mut b);
            assert_eq!(done, deinterleave_portable(&src, &mut pa, &mut pb));
            assert_eq!(
                done,
                4 * (len / 8).min(fl / 4).min(sl / 4),
                "{len} {fl} {sl}"
            );
            assert_eq!((&a, &b), (&pa, &pb));
            for i in 0..done {
                assert_eq!((a[i], b[i]), ((2 * i) as f32, (2 * i + 1) as f32));
            }
            assert!(a[done..].iter().chain(&b[done..]).all(|&v| v == -1.0));
        }
    }

    #[test]
    fn thin_or_strided_convolutions_do_not_apply() {
        let g = geom(16, 16, 8, 8, 1, [1, 1, 1, 1]);
        assert!(applies(&g));
        assert!(!applies(&ConvGeom { ci: 3, ..g }));
        assert!(!applies(&ConvGeom { co: 8, ..g }));
        assert!(!applies(&ConvGeom { sh: 2, sw: 2, ..g }));
        assert!(!applies(&ConvGeom { kh: 1, kw: 1, ..g }));
        assert!(!applies(&ConvGeom { pt: 3, ..g }));
        // 4×4 outputs: 4 tiles a sample.
        assert!(!applies(&ConvGeom { h: 4, w: 4, ..g }));
        // Batch 32 of 8×8: 4 samples, 64 tile columns a chunk; batch 64: 128.
        let small = ConvGeom { n: 32, ..g };
        assert!(applies(&small) && !applies_to_backward(&small));
        assert!(applies_to_backward(&ConvGeom { n: 64, ..g }));
    }
}
