//! Softmax over the last axis with a scale, `y = softmax(scale · x)` row by row, and its
//! backward: the attention weights of the U-Net's `AttentionBlock`. burn composes them from a
//! scalar division, a max, a subtraction, `exp` (the C library's scalar `expf`), a sum and a
//! division, each a pass over the `[n, hw, hw]` scores, and as many again backward; here each
//! direction is one pass a row, in [`vmath`]'s vectorised `exp`.
//!
//! Rows are split over tasks of fixed size and every sum runs in eight fixed lanes, so results
//! are bit-identical run to run.

use rayon::prelude::*;

use super::norm::{lane_sum, lane_sum2};
use super::{assume_written, output_buffer, vmath, written};

/// Values a task handles, about: rows are dealt to tasks in blocks of this many values.
const TASK_VALUES: usize = 1 << 16;

/// Values a task: whole rows, about [`TASK_VALUES`] of them.
fn task_block(cols: usize) -> usize {
    (TASK_VALUES / cols).max(1) * cols
}

fn check(len: usize, cols: usize, scale: f32) {
    assert!(cols > 0, "softmax over rows of 0 values");
    assert!(
        len.is_multiple_of(cols),
        "{len} values are not rows of {cols}"
    );
    assert!(
        scale > 0.0 && scale.is_finite(),
        "softmax scale {scale} must be positive and finite"
    );
}

/// The largest value of a row, in eight fixed lanes (`−∞` for an empty row; NaNs are skipped
/// here and come back through `exp`).
#[inline(always)]
fn lane_max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for ch in chunks {
        for (a, &x) in acc.iter_mut().zip(ch) {
            *a = a.max(x);
        }
    }
    for (a, &x) in acc.iter_mut().zip(rest) {
        *a = a.max(x);
    }
    acc.into_iter().fold(f32::NEG_INFINITY, f32::max)
}

/// `y = softmax(scale · x)` over each row of `cols` values of `x`: `exp(scale·x − m) / Σ exp(…)`
/// with `m` the row's largest `scale·x`, so no `exp` overflows.
///
/// # Panics
/// If `x` is not whole rows of `cols > 0` values, or `scale` is not positive and finite.
pub fn softmax_forward(x: &[f32], cols: usize, scale: f32) -> Vec<f32> {
    check(x.len(), cols, scale);
    let mut y = output_buffer(x.len());
    let block = task_block(cols);
    y.par_chunks_mut(block)
        .zip(x.par_chunks(block))
        .for_each(|(yb, xb)| {
            vmath::with_simd(
                #[inline(always)]
                || {
                    for (yr, xr) in yb.chunks_exact_mut(cols).zip(xb.chunks_exact(cols)) {
                        // scale > 0 and rounding is monotonic: max(scale·x) = scale·max(x).
                        let m = scale * lane_max(xr);
                        for (d, &v) in yr.iter_mut().zip(xr) {
                            d.write(vmath::exp(scale * v - m));
                        }
                        // SAFETY: the loop above wrote every value of the row.
                        let yr = unsafe { assume_written(yr) };
                        let inv = 1.0 / lane_sum(yr, |e| e);
                        for e in yr.iter_mut() {
                            *e *= inv;
                        }
                    }
                },
            )
        });
    // SAFETY: the blocks cover `y` and every row of each was written.
    unsafe { written(y) }
}

/// The backward of [`softmax_forward`] from its output `y` and `dy = ∂L/∂y`:
/// `∂L/∂x = scale · y ⊙ (dy − Σ_row dy ⊙ y)`.
///
/// # Panics
/// As [`softmax_forward`], and if `dy` is not as long as `y`.
pub fn softmax_backward(y: &[f32], dy: &[f32], cols: usize, scale: f32) -> Vec<f32> {
    check(y.len(), cols, scale);
    assert_eq!(dy.len(), y.len(), "dy does not match y");
    let mut dx = output_buffer(y.len());
    let block = task_block(cols);
    dx.par_chunks_mut(block)
        .zip(y.par_chunks(block).zip(dy.par_chunks(block)))
        .for_each(|(db, (yb, gb))| {
            vmath::with_simd(
                #[inline(always)]
                || {
                    let rows = db
                        .chunks_exact_mut(cols)
                        .zip(yb.chunks_exact(cols).zip(gb.chunks_exact(cols)));
                    for (dr, (yr, gr)) in rows {
                        let dot = lane_sum2(yr, gr, |a, b| a * b);
                        for ((d, &p), &g) in dr.iter_mut().zip(yr).zip(gr) {
                            d.write(scale * (p * (g - dot)));
                        }
                    }
                },
            )
        });
    // SAFETY: the blocks cover `dx` and every row of each was written.
    unsafe { written(dx) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_ops::testing::values;

    fn softmax_f64(x: &[f64], cols: usize, scale: f64) -> Vec<f64> {
        x.chunks(cols)
            .flat_map(|r| {
                let m = r.iter().map(|&v| scale * v).fold(f64::MIN, f64::max);
                let e: Vec<f64> = r.iter().map(|&v| (scale * v - m).exp()).collect();
                let s: f64 = e.iter().sum();
                e.into_iter().map(move |v| v / s)
            })
            .collect()
    }

    /// Forward against f64, and the backward against central differences of the f64 softmax
    /// in `L = Σ w ⊙ y`: rows of 1, 7, 33 and 300 values (lanes and remainders), scores up to
    /// ±40 (the max shift matters), two scales. Bounds: `exp` within 2 ulp and sums of ≤ 300
    /// terms in f32 keep y within ~1e-6 relative; the backward's central difference of step
    /// 1e-4 in f64 has truncation ~1e-8.
    #[test]
    fn matches_f64_and_central_differences() {
        for (i, &(rows, cols)) in [(3usize, 1usize), (4, 7), (2, 33), (3, 300)]
            .iter()
            .enumerate()
        {
            for scale in [1.0f32, 0.125] {
                let x = values(rows * cols, 10 + i as u64, 40.0);
                let y = softmax_forward(&x, cols, scale);
                let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
                let y64 = softmax_f64(&x64, cols, f64::from(scale));
                for (j, (a, r)) in y.iter().zip(&y64).enumerate() {
                    assert!(
                        (f64::from(*a) - r).abs() <= 2e-6 * r.max(1e-6),
                        "y[{j}] of {rows}x{cols}, scale {scale}: {a} vs {r}"
                    );
                }
                for r in y.chunks(cols) {
                    let s: f32 = r.iter().sum();
                    assert!((s - 1.0).abs() <= 1e-5, "row sums to {s}");
                }
                let w = values(rows * cols, 20 + i as u64, 1.0);
                let dx = softmax_backward(&y, &w, cols, scale);
                let loss = |x: &[f64]| -> f64 {
                    let y = softmax_f64(x, cols, f64::from(scale));
                    y.iter().zip(&w).map(|(a, &b)| a * f64::from(b)).sum()
                };
                let h = 1e-4;
                for k in 0..x.len() {
                    let (mut xp, mut xm) = (x64.clone(), x64.clone());
                    xp[k] += h;
                    xm[k] -= h;
                    let numeric = (loss(&xp) - loss(&xm)) / (2.0 * h);
                    assert!(
                        (f64::from(dx[k]) - numeric).abs() <= 1e-5 * (1.0 + numeric.abs()),
                        "dx[{k}] of {rows}x{cols}, scale {scale}: {} vs {numeric}",
                        dx[k]
                    );
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "must be positive")]
    fn rejects_a_negative_scale() {
        softmax_forward(&[1.0, 2.0], 2, -1.0);
    }
}
