//! Each metric on cases whose answer is known in closed form, with fixed seeds. Statistical
//! bounds: the unbiased estimators (MMD²_u, energy distance) are checked through the mean of
//! `R` independent replicates, whose error is `t`-distributed with `R − 1` degrees of freedom
//! around the closed form; `|t| ≤ 5` with `R = 40` has a false-alarm probability below 1e-4.

use score_core::{GaussianMixture, NoiseKey, NoiseSource};
use score_eval::{
    Assignment, Bandwidth, SlicedWasserstein, binomial_interval, energy_distance, mmd2_unbiased,
    moment_errors, normal_cdf, occupancy, w1_1d, w2_squared_1d,
};

/// `n` draws of `N(mean, std²)` in 1-D.
fn normal(n: usize, mean: f64, std: f64, seed: u64) -> Vec<f64> {
    NoiseSource::new(seed)
        .normal_f64(n, 1, NoiseKey::new(0, 0))
        .into_iter()
        .map(|z| mean + std * z)
        .collect()
}

/// Mean and standard error of replicate values.
fn mean_se(v: &[f64]) -> (f64, f64) {
    let r = v.len() as f64;
    let m = v.iter().sum::<f64>() / r;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (r - 1.0);
    (m, (var / r).sqrt())
}

const R: u64 = 40;

/// `E|Z|` for `Z ~ N(μ, τ²)`: `τ√(2/π)·e^{−μ²/(2τ²)} + μ(1 − 2Φ(−μ/τ))`.
fn mean_abs_normal(mu: f64, tau: f64) -> f64 {
    tau * (2.0 / std::f64::consts::PI).sqrt() * (-mu * mu / (2.0 * tau * tau)).exp()
        + mu * (1.0 - 2.0 * normal_cdf(-mu / tau))
}

#[test]
fn w1_of_sorted_shifted_copies_is_the_shift() {
    // A Gaussian sample and the same sample shifted by δ: the quantile coupling pairs each point
    // with its own copy, so W1 = δ and W2² = δ² exactly (up to rounding).
    let a = normal(1000, 0.0, 1.0, 1);
    for delta in [0.1, 1.0, 3.5] {
        let b: Vec<f64> = a.iter().map(|x| x + delta).collect();
        assert!((w1_1d(&a, &b).unwrap() - delta).abs() < 1e-12);
        assert!((w2_squared_1d(&a, &b).unwrap() - delta * delta).abs() < 1e-11);
    }
    // Identical sets, in any dimension and any order of points.
    let ring = GaussianMixture::ring(8, 4.0, 0.2).unwrap();
    let x = ring.sample_f64(500, &NoiseSource::new(2), NoiseKey::new(0, 0));
    let reversed: Vec<f64> = x.chunks(2).rev().flatten().copied().collect();
    let sw = SlicedWasserstein::new(2, 64).unwrap();
    assert_eq!(sw.w2_squared(&x, &reversed).unwrap(), 0.0);
    assert_eq!(sw.w1(&x, &x).unwrap(), 0.0);
}

#[test]
fn energy_distance_between_shifted_gaussians_matches_its_closed_form() {
    // X ~ N(0, 1), Y ~ N(δ, 1): X − Y ~ N(−δ, 2) and X − X' ~ N(0, 2), so the energy distance
    // is 2E|N(δ, 2)| − 2E|N(0, 2)| = 2[E|N(δ, 2)| − 2/√π].
    for delta in [0.0, 0.5, 2.0] {
        let exact = 2.0 * (mean_abs_normal(delta, 2f64.sqrt()) - 2.0 / std::f64::consts::PI.sqrt());
        let reps: Vec<f64> = (0..R)
            .map(|r| {
                let a = normal(300, 0.0, 1.0, 100 + r);
                let b = normal(300, delta, 1.0, 200 + r);
                energy_distance(&a, &b, 1).unwrap()
            })
            .collect();
        let (m, se) = mean_se(&reps);
        println!("energy distance δ = {delta}: {m:.5} ± {se:.5} (closed form {exact:.5})");
        assert!(
            (m - exact).abs() <= 5.0 * se,
            "δ = {delta}: {m} vs {exact} (se {se})"
        );
    }
}

#[test]
fn mmd_between_shifted_gaussians_matches_its_closed_form() {
    // With k(x, y) = exp(−(x − y)²/(2h²)) and Z ~ N(μ, τ²), E k = h/√(h² + τ²)·e^{−μ²/(2(h² + τ²))}.
    // X ~ N(0, σ²), Y ~ N(δ, σ²): MMD² = 2h/√(h² + 2σ²)·(1 − e^{−δ²/(2(h² + 2σ²))}).
    let (sigma, h): (f64, f64) = (0.5, 0.7);
    for delta in [0.0f64, 0.3, 1.5] {
        let c = h * h + 2.0 * sigma * sigma;
        let exact = 2.0 * h / c.sqrt() * (1.0 - (-delta * delta / (2.0 * c)).exp());
        let reps: Vec<f64> = (0..R)
            .map(|r| {
                let a = normal(300, 0.0, sigma, 300 + r);
                let b = normal(300, delta, sigma, 400 + r);
                mmd2_unbiased(&a, &b, 1, Bandwidth::Fixed(h)).unwrap()
            })
            .collect();
        let (m, se) = mean_se(&reps);
        println!("MMD² δ = {delta}: {m:.6} ± {se:.6} (closed form {exact:.6})");
        assert!(
            (m - exact).abs() <= 5.0 * se,
            "δ = {delta}: {m} vs {exact} (se {se})"
        );
    }
    // The median heuristic on N(0, 1) vs N(0, 1): the median of |X − X'| with X − X' ~ N(0, 2)
    // is √2·Φ⁻¹(3/4) ≈ 0.9539; over the ~2·10⁶ pairs of 2000 points its sampling error is
    // ~1 %, so 5 % is a wide bound.
    let a = normal(1000, 0.0, 1.0, 5);
    let b = normal(1000, 0.0, 1.0, 6);
    let hm = score_eval::median_heuristic(&a, &b, 1).unwrap();
    assert!(
        (hm / 0.953_873_4 - 1.0).abs() < 0.05,
        "median bandwidth {hm}"
    );
}

#[test]
fn moment_errors_of_gaussian_samples_are_sampling_error() {
    // n draws of N(μ, σ²I) in d = 2: n|m̂ − μ|²/σ² ~ χ²₂, whose tail is e^{−x/2}: at
    // x = 2 ln 10⁶ ≈ 27.6 it has probability 10⁻⁶. The covariance error satisfies
    // E‖Ĉ − σ²I‖²_F = σ⁴(d² + d)/(n − 1) for Gaussian data, so by Markov's inequality it exceeds
    // √(1000·E) with probability below 10⁻³.
    let (n, sigma, mu) = (5000, 0.3, [1.0, -2.0]);
    let z = NoiseSource::new(9).normal_f64(n, 2, NoiseKey::new(0, 0));
    let x: Vec<f64> = z
        .chunks(2)
        .flat_map(|p| [mu[0] + sigma * p[0], mu[1] + sigma * p[1]])
        .collect();
    let s2 = sigma * sigma;
    let e = moment_errors(&x, 2, &mu, &[s2, 0.0, 0.0, s2]).unwrap();
    let mean_bound = (2.0 * 1e6f64.ln() * s2 / n as f64).sqrt();
    let cov_bound = (1000.0 * s2 * s2 * 6.0 / (n - 1) as f64).sqrt();
    println!(
        "mean error {:.4} (bound {mean_bound:.4}); covariance error {:.5} (bound {cov_bound:.5})",
        e.mean, e.covariance
    );
    assert!(e.mean < mean_bound && e.covariance < cov_bound);
    // A shifted, scaled set: the errors are the shift and the variance change (plus sampling
    // error, bounded as above).
    let y: Vec<f64> = x.iter().map(|v| 2.0 * v + 0.5).collect();
    let e = moment_errors(&y, 2, &mu, &[s2, 0.0, 0.0, s2]).unwrap();
    let shift = ((mu[0] + 0.5f64).powi(2) + (mu[1] + 0.5f64).powi(2)).sqrt();
    assert!(
        (e.mean - shift).abs() < 2.0 * mean_bound + 1e-12,
        "{}",
        e.mean
    );
    let cov_shift = (2.0f64).sqrt() * 3.0 * s2;
    assert!(
        (e.covariance - cov_shift).abs() < 4.0 * cov_bound,
        "{}",
        e.covariance
    );
}

#[test]
fn occupancy_of_exact_ring_samples_is_binomial() {
    // Exact samples of the 8-ring: each mode's count is Binomial(n, 1/8) (a point lands nearer
    // another mode with probability ~1e-14). Bonferroni over 8 modes at a family-wise 1e-4.
    let ring = GaussianMixture::ring(8, 4.0, 0.2).unwrap();
    let n = 4000;
    let x = ring.sample_f64(n, &NoiseSource::new(3), NoiseKey::new(0, 0));
    let (lo, hi) = binomial_interval(n, 0.125, 1e-4 / 8.0).unwrap();
    for rule in [Assignment::NearestMean, Assignment::MostLikely] {
        let counts = occupancy(&x, &ring, rule).unwrap();
        println!("{rule:?}: {counts:?} (interval [{lo}, {hi}])");
        assert_eq!(counts.iter().sum::<usize>(), n);
        assert!(counts.iter().all(|&c| (lo..=hi).contains(&c)), "{counts:?}");
    }
    // Moving the first mode's weight to 0.5 moves its count out of that interval.
    let mut w = vec![0.5 / 7.0; 8];
    w[0] = 0.5;
    let tilted = GaussianMixture::new(w, ring.means().to_vec(), ring.variances().to_vec()).unwrap();
    let y = tilted.sample_f64(n, &NoiseSource::new(3), NoiseKey::new(0, 0));
    let counts = occupancy(&y, &ring, Assignment::NearestMean).unwrap();
    assert!(counts[0] > hi, "{counts:?}");
}
