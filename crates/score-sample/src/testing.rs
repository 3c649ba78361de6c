//! Test helpers: exact samples and the sliced Wasserstein-2 distance (moves to score-eval later).

use burn::tensor::{Tensor, backend::Backend};
use score_core::{
    Diffused, GaussianMixture, NoiseKey, NoiseSource, ScoreFn, Sde,
    tensor::{from_f64, to_f64},
};

/// Sliced Wasserstein-2 distance between two equally sized point sets `[n, d]` (row-major host
/// values), over `n_dirs` directions: for d = 2 evenly spaced angles on the half circle (a
/// deterministic quadrature of the sphere average), otherwise Gaussian directions.
pub fn sliced_w2(a: &[f64], b: &[f64], d: usize, n_dirs: usize) -> f64 {
    assert_eq!(a.len(), b.len(), "sliced W2 needs equal sample counts");
    let n = a.len() / d;
    let dirs: Vec<Vec<f64>> = if d == 2 {
        (0..n_dirs)
            .map(|k| {
                let th = std::f64::consts::PI * (k as f64 + 0.5) / n_dirs as f64;
                vec![th.cos(), th.sin()]
            })
            .collect()
    } else {
        let raw = NoiseSource::new(0x5eed).normal_f64(n_dirs, d, NoiseKey::new(0, 0));
        raw.chunks(d)
            .map(|v| {
                let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
                v.iter().map(|x| x / norm).collect()
            })
            .collect()
    };
    let project = |pts: &[f64], dir: &[f64]| {
        let mut p: Vec<f64> = pts
            .chunks(d)
            .map(|x| x.iter().zip(dir).map(|(a, b)| a * b).sum())
            .collect();
        p.sort_by(f64::total_cmp);
        p
    };
    let total: f64 = dirs
        .iter()
        .map(|dir| {
            let (pa, pb) = (project(a, dir), project(b, dir));
            pa.iter()
                .zip(&pb)
                .map(|(x, y)| (x - y).powi(2))
                .sum::<f64>()
                / n as f64
        })
        .sum();
    (total / n_dirs as f64).sqrt()
}

/// The 8-Gaussian ring of the issue: radius 4, std 0.2.
pub fn ring() -> GaussianMixture {
    GaussianMixture::ring(8, 4.0, 0.2).unwrap()
}

/// Exact samples of `target` (host, row-major), keyed by `seed`.
pub fn exact(target: &GaussianMixture, n: usize, seed: u64) -> Vec<f64> {
    target.sample_f64(n, &NoiseSource::new(seed), NoiseKey::new(0, 0))
}

/// Host copy of a `[n, d]` sample tensor.
pub fn host<B: Backend>(x: Tensor<B, 2>) -> Vec<f64> {
    to_f64(x)
}

/// SW2 of `got` to exact samples of `target`, and the baseline SW2 between two independent exact
/// sets of the same size.
pub fn sw2_vs_exact(target: &GaussianMixture, got: &[f64]) -> (f64, f64) {
    let d = target.dim();
    let n = got.len() / d;
    let ref1 = exact(target, n, 1001);
    let ref2 = exact(target, n, 2002);
    (sliced_w2(got, &ref1, d, 64), sliced_w2(&ref2, &ref1, d, 64))
}

/// The exact score of a diffused mixture evaluated on the host in f64 (the same formula as
/// score-core's `score_f64` oracle, `Σ_k r_k(x)·(−(x − m μ_k)/v_k)`, in one allocation-free
/// loop). Debug builds run burn's broadcasting kernels slowly; this keeps the sampler tests fast
/// while driving them with an exact score. The batch shares one time.
pub struct HostScore<S>(pub Diffused<S>);

impl<B: Backend, S: Sde, const D: usize> ScoreFn<B, D> for HostScore<S> {
    fn score(&self, x: Tensor<B, D>, t: Tensor<B, 1>) -> Tensor<B, D> {
        let t = first(t);
        mixture_score(&self.0.at(t).expect("t within the SDE's range"), x)
    }
}

fn mixture_score<B: Backend, const D: usize>(p: &GaussianMixture, x: Tensor<B, D>) -> Tensor<B, D> {
    let (dims, device) = (x.dims(), x.device());
    let d = p.dim();
    let k = p.n_components();
    let log_w: Vec<f64> = p
        .weights()
        .iter()
        .zip(p.variances())
        .map(|(w, v)| w.ln() - 0.5 * v.iter().map(|v| v.ln()).sum::<f64>())
        .collect();
    let mut xs = to_f64(x);
    let mut lp = vec![0.0; k];
    for pt in xs.chunks_mut(d) {
        let mut max = f64::NEG_INFINITY;
        for c in 0..k {
            let (mu, var) = (&p.means()[c], &p.variances()[c]);
            let mut q = 0.0;
            for j in 0..d {
                q += (pt[j] - mu[j]).powi(2) / var[j];
            }
            lp[c] = log_w[c] - 0.5 * q;
            max = max.max(lp[c]);
        }
        let mut z = 0.0;
        for l in lp.iter_mut() {
            *l = (*l - max).exp();
            z += *l;
        }
        let mut s = [0.0f64; 8];
        for (r, (mu, var)) in lp.iter().zip(p.means().iter().zip(p.variances())) {
            for j in 0..d {
                s[j] -= r / z * (pt[j] - mu[j]) / var[j];
            }
        }
        pt.copy_from_slice(&s[..d]);
    }
    from_f64(&xs, dims, &device)
}

/// A static mixture with host-evaluated exact score and energy (`−log p`), ignoring `t`.
pub struct HostTarget(pub GaussianMixture);

impl<B: Backend, const D: usize> ScoreFn<B, D> for HostTarget {
    fn score(&self, x: Tensor<B, D>, _t: Tensor<B, 1>) -> Tensor<B, D> {
        mixture_score(&self.0, x)
    }
}

impl<B: Backend, const D: usize> score_core::EnergyFn<B, D> for HostTarget {
    fn energy(&self, x: Tensor<B, D>, _t: Tensor<B, 1>) -> Tensor<B, 1> {
        let (n, device) = (x.dims()[0], x.device());
        let d = self.0.dim();
        let out: Vec<f64> = to_f64(x)
            .chunks(d)
            .map(|p| -self.0.log_prob_f64(p))
            .collect();
        from_f64(&out, [n], &device)
    }
}

/// Mean and standard deviation of the distance to the origin of 2-D points.
pub fn radial_stats(pts: &[f64]) -> (f64, f64) {
    let r: Vec<f64> = pts.chunks(2).map(|p| p[0].hypot(p[1])).collect();
    let n = r.len() as f64;
    let mean = r.iter().sum::<f64>() / n;
    let var = r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// The first entry of a `[n]` time tensor (the batch's common time).
pub fn first<B: Backend>(t: Tensor<B, 1>) -> f64 {
    to_f64(t)[0]
}
