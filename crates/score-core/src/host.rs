//! Host kernels for the CPU backends (NdArray, Flex): work that burn would run as a chain of
//! small tensor ops, each with its own dispatch and allocation, done in one pass over the
//! samples, split across threads. Results depend on each sample alone, so they do not change
//! with the thread count or the batch.
//!
//! Only plain (non-autodiff) NdArray and Flex tensors take these paths, chosen by type at run
//! time; every other backend (GPU, `Autodiff<…>` for losses that differentiate the score) runs
//! the composed tensor ops, against which the tests check these kernels.

use burn::tensor::{Tensor, TensorData, backend::Backend};
use rayon::prelude::*;

/// Samples per parallel task: large enough that a task outweighs its scheduling.
const CHUNK: usize = 1024;

/// Whether `B` is a CPU backend whose tensors the host kernels may read and write.
pub(crate) fn is_host_backend<B: Backend>() -> bool {
    #[allow(unused_mut)]
    let mut host = false;
    #[cfg(feature = "ndarray")]
    {
        host |= same::<B, burn::backend::NdArray<f32>>();
    }
    #[cfg(feature = "flex")]
    {
        host |= same::<B, burn::backend::Flex>();
    }
    host
}

#[allow(dead_code)] // unused when no CPU backend feature is on
fn same<A: 'static, B: 'static>() -> bool {
    std::any::TypeId::of::<A>() == std::any::TypeId::of::<B>()
}

/// The values of a float tensor as f32, row-major.
pub(crate) fn values<B: Backend, const D: usize>(x: Tensor<B, D>) -> Vec<f32> {
    x.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("a float tensor converts to f32")
}

/// A tensor of `shape` holding `values`.
pub(crate) fn tensor<B: Backend, const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// The parameters of a diagonal Gaussian mixture as the kernel reads them.
pub(crate) struct MixtureParams<'a> {
    pub log_weights: &'a [f64],
    /// `[K][d]`
    pub means: &'a [Vec<f64>],
    /// `[K][d]`
    pub vars: &'a [Vec<f64>],
}

/// The score of the mixture diffused to per-sample kernels `(a_i, s_i)`: component `k` is
/// `N(a·μ_k, a²·v_k + s²)`, and `∇ log p = −Σ_k r_k (x − a·μ_k)/var_k` with responsibilities
/// `r = softmax_k(ln w_k − ½ Σ_d [(x_d − aμ_kd)²/var_kd + ln var_kd])`. Computed in f64 per
/// sample; components whose weight is below 1e-13 of the largest count as zero.
///
/// `x` is `[n, d]` row-major, `a` and `s` are `[n]`; the output is `[n, d]`.
pub(crate) fn mixture_score(p: &MixtureParams<'_>, x: &[f32], a: &[f32], s: &[f32]) -> Vec<f32> {
    let k = p.log_weights.len();
    let d = p.means[0].len();
    let n = a.len();
    debug_assert_eq!(x.len(), n * d);
    let mut out = vec![0f32; n * d];
    out.par_chunks_mut(CHUNK * d)
        .zip(x.par_chunks(CHUNK * d))
        .enumerate()
        .for_each(|(c, (out, x))| {
            // Per-task scratch. The kernel terms depend on (a, s) alone, which a sampler step
            // shares across the batch: they are recomputed only when (a, s) changes.
            let mut lp = vec![0f64; k];
            let mut scaled = vec![0f64; k * d];
            let mut inv_var = vec![0f64; k * d]; // 1 / (a²v + s²)
            let mut centre = vec![0f64; k * d]; // a·μ
            let mut offset = vec![0f64; k]; // ln w − ½ Σ_d ln var
            let mut cached: Option<(f32, f32)> = None;
            for (j, (o, xi)) in out.chunks_mut(d).zip(x.chunks(d)).enumerate() {
                let i = c * CHUNK + j;
                if cached != Some((a[i], s[i])) {
                    cached = Some((a[i], s[i]));
                    let (ai, si) = (a[i] as f64, s[i] as f64);
                    let (a2, s2) = (ai * ai, si * si);
                    for kk in 0..k {
                        let mut log_det = 0.0;
                        for dd in 0..d {
                            let var = p.vars[kk][dd] * a2 + s2;
                            inv_var[kk * d + dd] = 1.0 / var;
                            centre[kk * d + dd] = ai * p.means[kk][dd];
                            log_det += var.ln();
                        }
                        offset[kk] = p.log_weights[kk] - 0.5 * log_det;
                    }
                }
                let mut max = f64::NEG_INFINITY;
                for (kk, l) in lp.iter_mut().enumerate() {
                    let mut quad = 0.0;
                    for (dd, &xv) in xi.iter().enumerate() {
                        let m = kk * d + dd;
                        let diff = xv as f64 - centre[m];
                        let sc = diff * inv_var[m];
                        scaled[m] = sc;
                        quad += sc * diff;
                    }
                    *l = offset[kk] - 0.5 * quad;
                    max = max.max(*l);
                }
                // Responsibilities in f64 (an f32 exp was 1.3x faster overall, but its rounding,
                // amplified over 200 DDPM steps, broke the DDIM(η = 1) = DDPM identity test's
                // 1e-4). Components more than e^-30 (1e-13) below the largest change the score
                // by less than f32's output rounding, so they skip the exp.
                let mut total = 0.0;
                for l in lp.iter_mut() {
                    let z = *l - max;
                    *l = if z < -30.0 { 0.0 } else { z.exp() };
                    total += *l;
                }
                for (dd, od) in o.iter_mut().enumerate() {
                    let acc: f64 = (0..k).map(|kk| lp[kk] * scaled[kk * d + dd]).sum();
                    *od = (-acc / total) as f32;
                }
            }
        });
    out
}

/// Fills `out` (`n` rows of `per` values) in parallel tasks of [`CHUNK`] rows, calling
/// `fill(first_row, rows)` on each; each row's values depend on its index alone.
pub(crate) fn fill_row_blocks<F>(out: &mut [f32], per: usize, fill: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    if per == 0 {
        return;
    }
    out.par_chunks_mut(CHUNK * per)
        .enumerate()
        .for_each(|(c, rows)| fill(c * CHUNK, rows));
}
